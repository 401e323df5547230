/* Cryptography, OpenSSL's owner (with crypto.c and crypto_x509.c): certificate chain verification. */
#include "crypto.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crypto_int.h"
#include "err.h"

/* "CN=..., O=..." of x's subject, bounded, for a message. */
static void verify_subject(X509 *x, char *out, size_t len)
{
	if (!x || !X509_NAME_oneline(X509_get_subject_name(x), out, (int)len))
		snprintf(out, len, "?");
}

int crypto_cert_verify_chain(const char *chain_pem, size_t chain_len, const char *ca_pem, size_t ca_len, int64_t at)
{
	struct crypto_cert **chain = NULL, **anchors = NULL;
	size_t n_chain = 0, n_anchors = 0;
	X509_STORE *store = NULL;
	X509_STORE_CTX *vctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	X509_VERIFY_PARAM *param;
	char subject[256];
	int rc;

	if (!ca_pem || !ca_len)
		return cs_error(CS_EINVALID, "ca.crt is empty: there is no trust anchor to verify the chain against");
	if ((rc = crypto_certs_from_pem(chain_pem, chain_len, "tls.crt", &chain, &n_chain)) ||
	    (rc = crypto_certs_from_pem(ca_pem, ca_len, "ca.crt", &anchors, &n_anchors)))
		goto out;
	if (!(store = X509_STORE_new()) || !(untrusted = sk_X509_new_null()) || !(vctx = X509_STORE_CTX_new())) {
		rc = crypto_ossl_fail(CS_ERROR, "setting up certificate verification");
		goto out;
	}
	for (size_t i = 0; i < n_anchors; i++) {
		if (X509_STORE_add_cert(store, anchors[i]->x) != 1) {
			rc = crypto_ossl_fail(CS_EINVALID, "ca.crt: certificate %zu cannot be a trust anchor", i + 1);
			goto out;
		}
	}
	/* The stack borrows the intermediates: chain owns them until the end. */
	for (size_t i = 1; i < n_chain; i++) {
		if (!sk_X509_push(untrusted, chain[i]->x)) {
			rc = crypto_ossl_fail(CS_ERROR, "setting up certificate verification");
			goto out;
		}
	}
	if (X509_STORE_CTX_init(vctx, store, chain[0]->x, untrusted) != 1) {
		rc = crypto_ossl_fail(CS_ERROR, "setting up certificate verification");
		goto out;
	}
	param = X509_STORE_CTX_get0_param(vctx);
	/* ca.crt may hold an intermediate (DNSimple gives no root): it ends the chain as well as a root does. */
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
	if (at)
		X509_VERIFY_PARAM_set_time(param, (time_t)at);
	else
		X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME);
	if (X509_verify_cert(vctx) != 1) {
		int err = X509_STORE_CTX_get_error(vctx), depth = X509_STORE_CTX_get_error_depth(vctx);

		verify_subject(X509_STORE_CTX_get_current_cert(vctx), subject, sizeof(subject));
		rc = cs_error(CS_EINVALID, "the chain does not verify from the leaf to ca.crt: %s (depth %d, %s)",
			      X509_verify_cert_error_string(err), depth, subject);
	}
out:
	ERR_clear_error();
	X509_STORE_CTX_free(vctx);
	sk_X509_free(untrusted);
	X509_STORE_free(store);
	crypto_certs_free(chain, n_chain);
	crypto_certs_free(anchors, n_anchors);
	return rc;
}

/* 1 if a and b are the same DNS name (ASCII case-insensitive, a trailing dot ignored). */
static int name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la && a[la - 1] == '.')
		la--;
	if (lb && b[lb - 1] == '.')
		lb--;
	return la == lb && !strncasecmp(a, b, la);
}

int crypto_names_contain(const char *const *set, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] && name_eq(set[i], name))
			return 1;
	return 0;
}
