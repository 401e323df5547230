/* AES-256-GCM for secrets at rest: nonce || ciphertext || tag, associated data binding each value to its place. */
#include "aead.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "err.h"

#define AEAD_KEY_B64_MAX 256 /* a configured key is 44 characters; anything far longer is not one */

/* Runs the cipher over n bytes of in into out (in and out may be the same); 0 or -1. */
static int aead_update(EVP_CIPHER_CTX *c, unsigned char *out, const unsigned char *in, size_t n)
{
	while (n > 0) {
		int chunk = n > INT_MAX / 2 ? INT_MAX / 2 : (int)n, got = 0;

		if (EVP_CipherUpdate(c, out, &got, in, chunk) != 1 || got != chunk)
			return -1;
		out += chunk;
		in += chunk;
		n -= (size_t)chunk;
	}
	return 0;
}

/* Feeds the associated data (no output). */
static int aead_aad(EVP_CIPHER_CTX *c, const void *aad, size_t aad_len)
{
	const unsigned char *p = aad;

	while (aad_len > 0) {
		int chunk = aad_len > INT_MAX / 2 ? INT_MAX / 2 : (int)aad_len, got = 0;

		if (EVP_CipherUpdate(c, NULL, &got, p, chunk) != 1)
			return -1;
		p += chunk;
		aad_len -= (size_t)chunk;
	}
	return 0;
}

/* A context set up for AES-256-GCM with key and nonce, encrypting (enc 1) or decrypting (0). NULL on failure. */
static EVP_CIPHER_CTX *aead_ctx(const unsigned char *key, const unsigned char *nonce, int enc)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	if (!c)
		return NULL;
	if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, AEAD_NONCE_LEN, NULL) != 1 ||
	    EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1) {
		EVP_CIPHER_CTX_free(c);
		return NULL;
	}
	return c;
}

int aead_seal(const unsigned char key[AEAD_KEY_LEN], const void *aad, size_t aad_len, const void *pt, size_t pt_len,
	      struct buf *out)
{
	size_t start = out->len;
	unsigned char *p;
	EVP_CIPHER_CTX *c = NULL;
	int fin = 0, rc;

	if ((rc = buf_reserve(out, AEAD_OVERHEAD + pt_len)))
		return rc;
	p = (unsigned char *)out->data + start;
	if (RAND_bytes(p, AEAD_NONCE_LEN) != 1 || !(c = aead_ctx(key, p, 1)) || aead_aad(c, aad, aad_len) ||
	    aead_update(c, p + AEAD_NONCE_LEN, pt, pt_len) ||
	    EVP_CipherFinal_ex(c, p + AEAD_NONCE_LEN + pt_len, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_LEN, p + AEAD_NONCE_LEN + pt_len) != 1) {
		OPENSSL_cleanse(p, AEAD_OVERHEAD + pt_len);
		out->data[start] = '\0';
		EVP_CIPHER_CTX_free(c);
		return cs_error(CS_ERROR, "AES-256-GCM encryption failed (OpenSSL)");
	}
	EVP_CIPHER_CTX_free(c);
	out->len = start + AEAD_OVERHEAD + pt_len;
	out->data[out->len] = '\0';
	return 0;
}

int aead_open(const unsigned char key[AEAD_KEY_LEN], const void *aad, size_t aad_len, const void *in, size_t in_len,
	      struct buf *out)
{
	const unsigned char *nonce = in, *ct = nonce + AEAD_NONCE_LEN, *tag;
	unsigned char tagcopy[AEAD_TAG_LEN];
	size_t start = out->len, ct_len;
	unsigned char *p;
	EVP_CIPHER_CTX *c = NULL;
	int fin = 0, ok, rc;

	if (!in || in_len < AEAD_OVERHEAD)
		return cs_error(CS_EINVALID, "sealed value is truncated (%zu bytes)", in_len);
	ct_len = in_len - AEAD_OVERHEAD;
	tag = ct + ct_len;
	if ((rc = buf_reserve(out, ct_len)))
		return rc == CS_EINVALID ? rc : cs_error(CS_EINVALID, "sealed value too large");
	/* Decrypted in place at the end of out: no plaintext copy elsewhere; wiped when the tag fails. */
	p = (unsigned char *)out->data + start;
	memcpy(tagcopy, tag, AEAD_TAG_LEN); /* the ctrl takes a non-const pointer */
	ok = (c = aead_ctx(key, nonce, 0)) && !aead_aad(c, aad, aad_len) && !aead_update(c, p, ct, ct_len) &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_LEN, tagcopy) == 1 &&
	     EVP_CipherFinal_ex(c, p + ct_len, &fin) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		OPENSSL_cleanse(p, ct_len);
		out->data[start] = '\0';
		return cs_error(CS_EINVALID, "sealed value does not open (tampered, truncated, or another key)");
	}
	out->len = start + ct_len;
	out->data[out->len] = '\0';
	return 0;
}

/* The value of a base64 character, or -1. */
static int aead_b64(unsigned char ch)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = ch ? strchr(alphabet, ch) : NULL;

	return p ? (int)(p - alphabet) : -1;
}

static int aead_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Decodes standard base64 (padding optional) into out (cap n); *got the byte count. -1 on a bad character. */
static int aead_b64_decode(const char *s, size_t len, unsigned char *out, size_t n, size_t *got)
{
	unsigned int acc = 0;
	size_t bits = 0, o = 0, pad = 0;

	for (size_t i = 0; i < len; i++) {
		int v;

		if (s[i] == '=') {
			pad++;
			continue;
		}
		if (pad || (v = aead_b64((unsigned char)s[i])) < 0)
			return -1; /* data after padding, or not base64 */
		acc = ((acc << 6) | (unsigned int)v) & 0xfffu;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < n)
				out[o] = (unsigned char)(acc >> bits);
			o++;
		}
	}
	if (pad > 2 || (pad && (len % 4) != 0) || bits >= 6)
		return -1;
	*got = o;
	return 0;
}

int aead_key_decode(const char *text, size_t len, const char *what, unsigned char key[AEAD_KEY_LEN])
{
	unsigned char tmp[AEAD_KEY_LEN];
	size_t got = 0;

	while (len && aead_space(text[0]))
		text++, len--;
	while (len && aead_space(text[len - 1]))
		len--;
	if (len == 0)
		return cs_error(CS_EINVALID,
				"%s is empty: it must be 32 random bytes, base64 (openssl rand -base64 32)", what);
	if (len > AEAD_KEY_B64_MAX || aead_b64_decode(text, len, tmp, sizeof(tmp), &got)) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return cs_error(CS_EINVALID,
				"%s is not base64: it must be 32 random bytes, base64 (openssl rand -base64 32)", what);
	}
	if (got != AEAD_KEY_LEN) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return cs_error(CS_EINVALID,
				"%s decodes to %zu bytes: it must be 32 random bytes, base64 (openssl rand -base64 32)",
				what, got);
	}
	memcpy(key, tmp, AEAD_KEY_LEN);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return 0;
}
