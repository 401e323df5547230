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

/* ---------- shared by crypto_x509.c and crypto_issue.c ---------- */

/* One X.509v3 extension in OpenSSL's configuration syntax. */
struct ext_spec {
	int nid;
	const char *value;
};

/* Wraps x (owned by the result). */
struct crypto_cert *crypto_x509_wrap(X509 *x);
/* Version 3, a random 128-bit serial, validity and pub: what every certificate we make has; NULL on failure. */
X509 *crypto_x509_base(EVP_PKEY *pub, int64_t not_before, int64_t not_after);
/* Adds the extensions (issuer: for AKI); 1 on success (else OpenSSL's error is queued). */
int crypto_x509_add_exts(X509 *x, X509 *issuer, const struct ext_spec *v, size_t n);
/* CS_EINVALID for a commonName over 64 characters, a validity that ends before it begins, a CA that is none. */
int crypto_x509_check_cn(const char *cn);
int crypto_x509_check_validity(int64_t not_before, int64_t not_after);
int crypto_x509_check_ca(const struct crypto_cert *ca_cert, const struct crypto_key *ca_key);

#endif
