/*
 * Issuing a certificate from a profile (the built-in CA's manifests): the
 * subject's attributes, DNS/IP/URI/email SANs, key usages, extended key
 * usages, and CA certificates with a path length. Part of the crypto family.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto_int.h"
#include "err.h"
#include "util.h"

/* Appends one GENERAL_NAME of type to gens; 1 on success. */
static int issue_gen_push(GENERAL_NAMES *gens, int type, const char *value)
{
	GENERAL_NAME *g = NULL;
	ASN1_STRING *s = NULL;

	if (type == GEN_IPADD) {
		if (!(s = a2i_IPADDRESS(value)))
			return 0;
	} else if (!(s = ASN1_IA5STRING_new()) || ASN1_STRING_set(s, value, (int)strlen(value)) != 1) {
		goto fail;
	}
	if (!(g = GENERAL_NAME_new()))
		goto fail;
	GENERAL_NAME_set0_value(g, type, s);
	s = NULL;
	if (!sk_GENERAL_NAME_push(gens, g))
		goto fail;
	return 1;
fail:
	ASN1_STRING_free(s);
	GENERAL_NAME_free(g);
	return 0;
}

/* The SAN: DNS names, IP addresses, URIs, email addresses, in that order; NULL on failure. */
static GENERAL_NAMES *issue_sans(const struct crypto_profile *p)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	const struct {
		int type;
		const char *const *v;
		size_t n;
	} lists[] = {{GEN_DNS, p->dns, p->n_dns},
		     {GEN_IPADD, p->ips, p->n_ips},
		     {GEN_URI, p->uris, p->n_uris},
		     {GEN_EMAIL, p->emails, p->n_emails}};

	for (size_t l = 0; gens && l < sizeof(lists) / sizeof(lists[0]); l++)
		for (size_t i = 0; i < lists[l].n; i++)
			if (!issue_gen_push(gens, lists[l].type, lists[l].v[i])) {
				GENERAL_NAMES_free(gens);
				return NULL;
			}
	return gens;
}

/* The subject: the profile's attributes in order, then the commonName. */
static int issue_subject(X509 *x, const struct crypto_profile *p)
{
	X509_NAME *nm = X509_get_subject_name(x);

	for (size_t i = 0; i < p->n_subject; i++)
		if (X509_NAME_add_entry_by_txt(nm, p->subject_attrs[i], MBSTRING_UTF8,
					       (const unsigned char *)p->subject_values[i], -1, -1, 0) != 1)
			return crypto_ossl_fail(CS_EINVALID, "subject %s \"%s\"", p->subject_attrs[i],
						p->subject_values[i]);
	if (p->cn &&
	    X509_NAME_add_entry_by_NID(nm, NID_commonName, MBSTRING_UTF8, (const unsigned char *)p->cn, -1, -1, 0) != 1)
		return crypto_ossl_fail(CS_EINVALID, "subject commonName \"%s\"", p->cn);
	return 0;
}

/* basicConstraints, key usage, extended key usage, SKI, AKI and the SAN (critical when the subject is empty). */
static int issue_exts(X509 *x, X509 *issuer, const struct crypto_profile *p, const GENERAL_NAMES *gens)
{
	int rsa = EVP_PKEY_is_a(X509_get0_pubkey(x), "RSA");
	char bc[64];
	const char *ku = p->key_usage, *eku = p->ext_key_usage;
	struct ext_spec v[5];
	size_t n = 0;

	if (p->is_ca && p->path_len >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", p->path_len);
	else
		snprintf(bc, sizeof(bc), "critical,CA:%s", p->is_ca ? "TRUE" : "FALSE");
	if (!ku)
		ku = p->is_ca ? "critical,digitalSignature,keyCertSign,cRLSign"
		     : rsa    ? "critical,digitalSignature,keyEncipherment"
			      : "critical,digitalSignature";
	if (!eku)
		eku = p->is_ca ? "" : "serverAuth,clientAuth";
	v[n++] = (struct ext_spec){NID_basic_constraints, bc};
	if (*ku)
		v[n++] = (struct ext_spec){NID_key_usage, ku};
	if (*eku)
		v[n++] = (struct ext_spec){NID_ext_key_usage, eku};
	v[n++] = (struct ext_spec){NID_subject_key_identifier, "hash"};
	v[n++] = (struct ext_spec){NID_authority_key_identifier, "keyid,issuer"};
	return crypto_x509_add_exts(x, issuer, v, n) &&
	       (sk_GENERAL_NAME_num(gens) == 0 ||
		X509_add1_ext_i2d(x, NID_subject_alt_name, (void *)gens,
				  X509_NAME_entry_count(X509_get_subject_name(x)) == 0, X509V3_ADD_DEFAULT) == 1);
}

int crypto_issue(const struct crypto_cert *ca_cert, const struct crypto_key *ca_key, const struct crypto_key *key,
		 const struct crypto_profile *p, int64_t not_before, int64_t not_after, struct crypto_cert **out)
{
	GENERAL_NAMES *gens = NULL;
	X509 *x = NULL;
	const char *what = p->cn ? p->cn : p->n_dns ? p->dns[0] : "a certificate";
	int rc;

	if ((rc = crypto_x509_check_validity(not_before, not_after)) || (rc = crypto_x509_check_cn(p->cn)) ||
	    (ca_cert && (rc = crypto_x509_check_ca(ca_cert, ca_key))))
		goto out;
	if (!p->cn && !p->n_subject && !(p->n_dns + p->n_ips + p->n_uris + p->n_emails)) {
		rc = cs_error(CS_EINVALID, "a certificate needs a subject or a subjectAltName");
		goto out;
	}
	if (!(gens = issue_sans(p))) {
		rc = crypto_ossl_fail(CS_EINVALID, "the subjectAltName of %s", what);
		goto out;
	}
	if (!(x = crypto_x509_base(key->pkey, not_before, not_after))) {
		rc = crypto_ossl_fail(CS_ERROR, "creating %s", what);
		goto out;
	}
	if ((rc = issue_subject(x, p)))
		goto out;
	if (X509_set_issuer_name(x, ca_cert ? X509_get_subject_name(ca_cert->x) : X509_get_subject_name(x)) != 1 ||
	    !issue_exts(x, ca_cert ? ca_cert->x : x, p, gens) ||
	    X509_sign(x, ca_cert ? ca_key->pkey : key->pkey, crypto_sig_md(ca_cert ? ca_key->pkey : key->pkey)) <= 0) {
		rc = crypto_ossl_fail(CS_ERROR, "signing %s", what);
		goto out;
	}
	*out = crypto_x509_wrap(x);
	x = NULL;
out:
	X509_free(x);
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
	return rc;
}
