/*
 * The extra output formats (output.formats): DER encodings, the chain's
 * intermediates, PKCS#12 keystores (PBES2 AES-256-CBC with PBKDF2
 * hmacWithSHA256, SHA-256 MAC). Part of the crypto family (crypto_int.h).
 */
#include <limits.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "crypto_int.h"
#include "err.h"
#include "util.h"

#define P12_ITER 10000 /* PBKDF2 and MAC iterations: what Java's keytool and OpenSSL 3 use, or more */

/* Appends a DER blob from i2d-style output. */
static int out_der(unsigned char *der, int n, const char *what, struct buf *out)
{
	int rc;

	if (n <= 0 || !der)
		return crypto_ossl_fail(CS_ERROR, "encoding %s as DER", what);
	rc = buf_append(out, der, (size_t)n);
	OPENSSL_cleanse(der, (size_t)n);
	OPENSSL_free(der);
	return rc;
}

int crypto_out_cert_der(const char *pem, size_t len, struct buf *out)
{
	struct crypto_cert *c = NULL;
	unsigned char *der = NULL;
	int rc;

	if ((rc = crypto_cert_from_pem(pem, len, "tls.crt", &c)))
		return rc;
	rc = out_der(der, i2d_X509(c->x, &der), "the certificate", out);
	crypto_cert_free(c);
	return rc;
}

int crypto_out_key_der(const char *pem, size_t len, struct buf *out)
{
	struct crypto_key *k = NULL;
	unsigned char *der = NULL;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	int rc;

	if ((rc = crypto_key_from_pem(pem, len, "tls.key", &k)))
		return rc;
	if (!(p8 = EVP_PKEY2PKCS8(k->pkey)))
		rc = crypto_ossl_fail(CS_ERROR, "encoding the private key as PKCS#8");
	else
		rc = out_der(der, i2d_PKCS8_PRIV_KEY_INFO(p8, &der), "the private key", out);
	PKCS8_PRIV_KEY_INFO_free(p8);
	crypto_key_free(k);
	return rc;
}

int crypto_out_intermediates(const char *pem, size_t len, struct buf *out)
{
	struct crypto_cert **v = NULL;
	size_t n = 0;
	int rc;

	if ((rc = crypto_certs_from_pem(pem, len, "tls.crt", &v, &n)))
		return rc;
	for (size_t i = 1; i < n && !rc; i++)
		rc = crypto_cert_to_pem(v[i], out);
	crypto_certs_free(v, n);
	return rc;
}

/* Pushes every certificate of pem (from index `from`) onto sk; the stack takes references. */
static int out_push_certs(STACK_OF(X509) * sk, const char *pem, size_t len, const char *what, size_t from)
{
	struct crypto_cert **v = NULL;
	size_t n = 0;
	int rc;

	if (!len)
		return 0;
	if ((rc = crypto_certs_from_pem(pem, len, what, &v, &n)))
		return rc;
	for (size_t i = from; i < n && !rc; i++) {
		if (!X509_up_ref(v[i]->x))
			rc = crypto_ossl_fail(CS_ERROR, "building the keystore");
		else if (!sk_X509_push(sk, v[i]->x)) {
			X509_free(v[i]->x);
			rc = crypto_ossl_fail(CS_ERROR, "building the keystore");
		}
	}
	crypto_certs_free(v, n);
	return rc;
}

int crypto_out_pkcs12(const char *key_pem, size_t key_len, const char *chain_pem, size_t chain_len, const char *ca_pem,
		      size_t ca_len, const char *password, const char *friendly, struct buf *out)
{
	struct crypto_key *k = NULL;
	struct crypto_cert *leaf = NULL;
	STACK_OF(X509) *ca = NULL;
	PKCS12 *p12 = NULL;
	unsigned char *der = NULL;
	int rc;

	if ((rc = crypto_key_from_pem(key_pem, key_len, "tls.key", &k)) ||
	    (rc = crypto_cert_from_pem(chain_pem, chain_len, "tls.crt", &leaf)))
		goto out;
	if (!(ca = sk_X509_new_null())) {
		rc = crypto_ossl_fail(CS_ERROR, "building the keystore");
		goto out;
	}
	/* the intermediates, then ca.crt's certificates (cert-manager's keystore.p12 holds the CA too) */
	if ((rc = out_push_certs(ca, chain_pem, chain_len, "tls.crt", 1)) ||
	    (rc = out_push_certs(ca, ca_pem, ca_len, "ca.crt", 0)))
		goto out;
	/* MAC left out here (-1) and added below with SHA-256: PKCS12_create's default MAC digest is SHA-1. */
	p12 = PKCS12_create_ex(password, friendly, k->pkey, leaf->x, ca, NID_aes_256_cbc, NID_aes_256_cbc, P12_ITER, -1,
			       0, NULL, NULL);
	if (!p12 || PKCS12_set_mac(p12, password, -1, NULL, 0, P12_ITER, EVP_sha256()) != 1) {
		rc = crypto_ossl_fail(CS_ERROR, "building the PKCS#12 keystore");
		goto out;
	}
	rc = out_der(der, i2d_PKCS12(p12, &der), "the keystore", out);
out:
	PKCS12_free(p12);
	sk_X509_pop_free(ca, X509_free);
	crypto_cert_free(leaf);
	crypto_key_free(k);
	ERR_clear_error();
	return rc;
}
