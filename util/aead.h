/*
 * Authenticated encryption for secrets at rest (the shared key store):
 * AES-256-GCM through OpenSSL EVP, a random 96-bit nonce per value. A sealed
 * value is nonce || ciphertext || tag; the associated data binds it to where
 * it belongs (certificate name and serial), so a value moved to another row
 * does not open.
 */
#ifndef CS_UTIL_AEAD_H
#define CS_UTIL_AEAD_H

#include <stddef.h>

#include "buf.h"

#define AEAD_KEY_LEN 32
#define AEAD_NONCE_LEN 12
#define AEAD_TAG_LEN 16
#define AEAD_OVERHEAD (AEAD_NONCE_LEN + AEAD_TAG_LEN)

/* Appends nonce || ciphertext || tag of pt to out. CS_ERROR only when OpenSSL fails. */
int aead_seal(const unsigned char key[AEAD_KEY_LEN], const void *aad, size_t aad_len, const void *pt, size_t pt_len,
	      struct buf *out);

/*
 * Appends the plaintext of a sealed value to out (a secret: buf_wipe it).
 * CS_EINVALID when it does not open: tampered, truncated, another key or
 * other associated data (out is left as it was).
 */
int aead_open(const unsigned char key[AEAD_KEY_LEN], const void *aad, size_t aad_len, const void *in, size_t in_len,
	      struct buf *out);

/*
 * Decodes a configured key: base64 of exactly AEAD_KEY_LEN bytes (surrounding
 * whitespace ignored). CS_EINVALID with a message naming `what` (never the value).
 */
int aead_key_decode(const char *text, size_t len, const char *what, unsigned char key[AEAD_KEY_LEN]);

#endif
