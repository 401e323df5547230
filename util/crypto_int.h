/* Private to util/crypto*.c: the OpenSSL objects behind crypto.h's opaque types. Never include elsewhere. */
#ifndef CS_UTIL_CRYPTO_INT_H
#define CS_UTIL_CRYPTO_INT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crypto.h"

struct crypto_key {
	EVP_PKEY *pkey; /* always an RSA or EC (P-256/P-384/P-521) key pair */
};

struct crypto_cert {
	X509 *x;
};

/*
 * Sets this thread's error to "<fmt...>: <OpenSSL reason>" from the first
 * entry of OpenSSL's error queue, clears the queue, and returns code.
 */
int crypto_ossl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes n bytes as lowercase hex plus a NUL into out (2n + 1 bytes). */
void crypto_hex(const unsigned char *in, size_t n, char *out);

/* The digest a signature by key uses: SHA-256 for RSA and P-256, SHA-384 for P-384, SHA-512 above. */
const EVP_MD *crypto_sig_md(const EVP_PKEY *key);

/* A PEM password callback that never prompts: records in *(int *)u that a passphrase was asked for. */
int crypto_no_passphrase(char *buf, int size, int rwflag, void *u);

#endif
