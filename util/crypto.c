/* Cryptography: the only file that includes OpenSSL (keys, CSRs, signing, hashes, PEM). */
#include "crypto.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "util.h"

struct crypto_key {
	EVP_PKEY *pkey;
};

struct crypto_cert {
	X509 *x;
};

struct crypto_sha256_ctx {
	EVP_MD_CTX *md;
};

/* The OpenSSL reason for the last failure (and clears the queue). */
static const char *ossl_reason(void)
{
	static _Thread_local char buf[256];
	unsigned long e = ERR_get_error();

	if (!e)
		snprintf(buf, sizeof(buf), "unknown OpenSSL error");
	else
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

void crypto_wipe(void *p, size_t n)
{
	if (p && n)
		OPENSSL_cleanse(p, n);
}

int crypto_random(void *out, size_t n)
{
	if (RAND_bytes(out, (int)n) != 1)
		return cs_error(CS_ERROR, "random number generator failed: %s", ossl_reason());
	return 0;
}

int crypto_uuid(char out[37])
{
	unsigned char b[16];
	int rc = crypto_random(b, sizeof(b));

	if (rc)
		return rc;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
		 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void crypto_sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;

	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void crypto_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char d[32];

	crypto_sha256(data, len, d);
	hex(d, 32, out);
}

struct crypto_sha256_ctx *crypto_sha256_begin(void)
{
	struct crypto_sha256_ctx *c = xcalloc(1, sizeof(*c));

	c->md = EVP_MD_CTX_new();
	if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
		abort();
	return c;
}

void crypto_sha256_update(struct crypto_sha256_ctx *c, const void *data, size_t len)
{
	EVP_DigestUpdate(c->md, data, len);
}

void crypto_sha256_end_hex(struct crypto_sha256_ctx *c, char out[65])
{
	unsigned char d[32];
	unsigned int n = 32;

	EVP_DigestFinal_ex(c->md, d, &n);
	hex(d, 32, out);
	EVP_MD_CTX_free(c->md);
	free(c);
}

void crypto_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, unsigned char out[32])
{
	unsigned int n = 32;

	HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &n);
}

/* ---------- keys ---------- */

int crypto_key_generate(enum crypto_alg alg, int size, struct crypto_key **out)
{
	EVP_PKEY *pk = NULL;

	if (alg == CRYPTO_RSA && (size == 2048 || size == 3072 || size == 4096))
		pk = EVP_RSA_gen((unsigned)size);
	else if (alg == CRYPTO_ECDSA && (size == 256 || size == 384))
		pk = EVP_EC_gen(size == 256 ? "P-256" : "P-384");
	else
		return cs_error(CS_EINVALID, "unsupported key: %s %d", alg == CRYPTO_RSA ? "RSA" : "ECDSA", size);
	if (!pk)
		return cs_error(CS_ERROR, "key generation failed: %s", ossl_reason());
	*out = xcalloc(1, sizeof(**out));
	(*out)->pkey = pk;
	return 0;
}

int crypto_key_from_pem(const char *pem, size_t len, const char *what, struct crypto_key **out)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	if (!pk) {
		ERR_clear_error();
		return cs_error(CS_EINVALID, "%s: not a PEM private key", what);
	}
	*out = xcalloc(1, sizeof(**out));
	(*out)->pkey = pk;
	return 0;
}

/* Copies a memory BIO into out. */
static int bio_to_buf(BIO *b, struct buf *out)
{
	char *p = NULL;
	long n = BIO_get_mem_data(b, &p);

	return n > 0 ? buf_append(out, p, (size_t)n) : cs_error(CS_ERROR, "empty PEM output");
}

int crypto_key_to_pem(const struct crypto_key *key, struct buf *out)
{
	BIO *b = BIO_new(BIO_s_secmem());
	int rc;

	if (!b)
		b = BIO_new(BIO_s_mem());
	if (!b || PEM_write_bio_PrivateKey(b, key->pkey, NULL, NULL, 0, NULL, NULL) != 1)
		rc = cs_error(CS_ERROR, "writing a private key: %s", ossl_reason());
	else
		rc = bio_to_buf(b, out);
	BIO_free(b);
	return rc;
}

void crypto_key_describe(const struct crypto_key *key, enum crypto_alg *alg, int *size)
{
	*alg = EVP_PKEY_base_id(key->pkey) == EVP_PKEY_RSA ? CRYPTO_RSA : CRYPTO_ECDSA;
	*size = EVP_PKEY_get_bits(key->pkey);
}

void crypto_key_free(struct crypto_key *key)
{
	if (!key)
		return;
	EVP_PKEY_free(key->pkey);
	free(key);
}

/* ---------- certificates ---------- */

static struct crypto_cert *cert_wrap(X509 *x)
{
	struct crypto_cert *c = xcalloc(1, sizeof(*c));

	c->x = x;
	return c;
}

void crypto_cert_free(struct crypto_cert *cert)
{
	if (!cert)
		return;
	X509_free(cert->x);
	free(cert);
}

void crypto_certs_free(struct crypto_cert **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		crypto_cert_free(v[i]);
	free(v);
}

int crypto_certs_from_pem(const char *pem, size_t len, const char *what, struct crypto_cert ***out, size_t *n)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	struct crypto_cert **v = NULL;
	size_t cnt = 0, cap = 0;
	X509 *x;

	while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		util_grow(&v, &cap, cnt + 1, sizeof(*v));
		v[cnt++] = cert_wrap(x);
	}
	ERR_clear_error();
	BIO_free(b);
	if (!cnt) {
		free(v);
		return cs_error(CS_EINVALID, "%s: no PEM certificate found", what);
	}
	*out = v;
	*n = cnt;
	return 0;
}

int crypto_cert_from_pem(const char *pem, size_t len, const char *what, struct crypto_cert **out)
{
	struct crypto_cert **v = NULL;
	size_t n = 0;
	int rc = crypto_certs_from_pem(pem, len, what, &v, &n);

	if (rc)
		return rc;
	*out = v[0];
	v[0] = NULL;
	crypto_certs_free(v, n);
	return 0;
}

int crypto_cert_to_pem(const struct crypto_cert *cert, struct buf *out)
{
	BIO *b = BIO_new(BIO_s_mem());
	int rc;

	if (!b || PEM_write_bio_X509(b, cert->x) != 1)
		rc = cs_error(CS_ERROR, "writing a certificate: %s", ossl_reason());
	else
		rc = bio_to_buf(b, out);
	BIO_free(b);
	return rc;
}

static int64_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

static char *name_cn(const X509_NAME *nm)
{
	int i = nm ? X509_NAME_get_index_by_NID(nm, NID_commonName, -1) : -1;
	const ASN1_STRING *s;
	unsigned char *utf8 = NULL;
	int n;
	char *r;

	if (i < 0)
		return NULL;
	s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i));
	n = ASN1_STRING_to_UTF8(&utf8, s);
	if (n < 0)
		return NULL;
	r = xstrndup((char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return r;
}

void crypto_cert_info_free(struct crypto_cert_info *info)
{
	free(info->subject_cn);
	free(info->issuer_cn);
	for (size_t i = 0; i < info->n_dns; i++)
		free(info->dns_names[i]);
	free(info->dns_names);
	memset(info, 0, sizeof(*info));
}

int crypto_cert_info(const struct crypto_cert *cert, struct crypto_cert_info *out)
{
	X509 *x = cert->x;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	BIGNUM *bn = sn ? ASN1_INTEGER_to_BN(sn, NULL) : NULL;
	char *bnhex = bn ? BN_bn2hex(bn) : NULL;
	GENERAL_NAMES *sans;

	memset(out, 0, sizeof(*out));
	if (bnhex) {
		const char *p = bnhex;

		while (*p == '0' && p[1])
			p++;
		snprintf(out->serial, sizeof(out->serial), "%s", p);
		for (char *q = out->serial; *q; q++)
			if (*q >= 'A' && *q <= 'F')
				*q = (char)(*q - 'A' + 'a');
	}
	OPENSSL_free(bnhex);
	BN_free(bn);
	X509_digest(x, EVP_sha256(), md, &mdlen);
	hex(md, mdlen, out->fingerprint);
	out->not_before = asn1_time(X509_get0_notBefore(x));
	out->not_after = asn1_time(X509_get0_notAfter(x));
	out->subject_cn = name_cn(X509_get_subject_name(x));
	out->issuer_cn = name_cn(X509_get_issuer_name(x));
	out->is_ca = X509_check_ca(x) > 0;
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (sans) {
		int n = sk_GENERAL_NAME_num(sans);

		out->dns_names = xcalloc((size_t)n + 1, sizeof(char *));
		for (int i = 0; i < n; i++) {
			GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

			if (g->type == GEN_DNS)
				out->dns_names[out->n_dns++] =
					xstrndup((const char *)ASN1_STRING_get0_data(g->d.dNSName),
						 (size_t)ASN1_STRING_length(g->d.dNSName));
		}
		GENERAL_NAMES_free(sans);
	}
	ERR_clear_error();
	return 0;
}

int crypto_cert_matches_key(const struct crypto_cert *cert, const struct crypto_key *key)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert->x);
	int r = pub && EVP_PKEY_eq(pub, key->pkey) == 1;

	ERR_clear_error();
	return r;
}

int crypto_cert_signed_by(const struct crypto_cert *cert, const struct crypto_cert *issuer)
{
	EVP_PKEY *pub = X509_get0_pubkey(issuer->x);
	int r = pub && X509_verify(cert->x, pub) == 1;

	ERR_clear_error();
	return r;
}

/* ---------- building certificates ---------- */

static GENERAL_NAMES *sans_build(const char *const *sans, size_t n)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();

	for (size_t i = 0; gens && i < n; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		if (!g || !s || !ASN1_STRING_set(s, sans[i], (int)strlen(sans[i]))) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(s);
			GENERAL_NAMES_free(gens);
			return NULL;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		sk_GENERAL_NAME_push(gens, g);
	}
	return gens;
}

static int set_cn(X509_NAME *nm, const char *cn)
{
	return X509_NAME_add_entry_by_NID(nm, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) == 1;
}

static const EVP_MD *sig_md(EVP_PKEY *k)
{
	if (EVP_PKEY_base_id(k) == EVP_PKEY_EC && EVP_PKEY_get_bits(k) > 256)
		return EVP_sha384();
	return EVP_sha256();
}

int crypto_csr_create(const struct crypto_key *key, const char *cn, const char *const *sans, size_t n_sans,
		      struct buf *pem_out)
{
	X509_REQ *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	GENERAL_NAMES *gens = sans_build(sans, n_sans);
	X509_EXTENSION *ext = NULL;
	BIO *b = BIO_new(BIO_s_mem());
	int rc = 0;

	if (!req || !exts || !gens || !b || X509_REQ_set_version(req, 0) != 1 ||
	    !set_cn(X509_REQ_get_subject_name(req), cn) || X509_REQ_set_pubkey(req, key->pkey) != 1 ||
	    !(ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens)) || !sk_X509_EXTENSION_push(exts, ext) ||
	    X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_sign(req, key->pkey, sig_md(key->pkey)) <= 0 ||
	    PEM_write_bio_X509_REQ(b, req) != 1) {
		if (exts && ext && sk_X509_EXTENSION_num(exts) == 0)
			X509_EXTENSION_free(ext);
		rc = cs_error(CS_ERROR, "creating a CSR for %s: %s", cn, ossl_reason());
	} else {
		rc = bio_to_buf(b, pem_out);
	}
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	X509_REQ_free(req);
	BIO_free(b);
	return rc;
}

static int set_serial(X509 *x)
{
	unsigned char r[16];
	BIGNUM *bn;
	int ok;

	if (crypto_random(r, sizeof(r)))
		return 0;
	r[0] &= 0x7f; /* positive */
	r[0] |= 0x01; /* and never short */
	bn = BN_bin2bn(r, sizeof(r), NULL);
	ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!e)
		return 0;
	ok = X509_add_ext(x, e, -1) == 1;
	X509_EXTENSION_free(e);
	return ok;
}

/* The common body of every certificate we make: version, serial, validity, key. */
static X509 *cert_base(EVP_PKEY *pub, int64_t not_before, int64_t not_after)
{
	X509 *x = X509_new();

	if (!x || X509_set_version(x, 2) != 1 || !set_serial(x) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) || X509_set_pubkey(x, pub) != 1) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static int leaf_exts(X509 *x, X509 *issuer, EVP_PKEY *pub, GENERAL_NAMES *gens)
{
	const char *ku = EVP_PKEY_base_id(pub) == EVP_PKEY_RSA ? "critical,digitalSignature,keyEncipherment"
							       : "critical,digitalSignature";

	return add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
	       add_ext(x, issuer, NID_key_usage, ku) &&
	       add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth") &&
	       add_ext(x, issuer, NID_subject_key_identifier, "hash") &&
	       add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") &&
	       (!gens || X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1);
}

int crypto_sign_csr(const struct crypto_cert *ca_cert, const struct crypto_key *ca_key, const char *csr_pem,
		    size_t csr_len, int64_t not_before, int64_t not_after, struct crypto_cert **out)
{
	BIO *b = BIO_new_mem_buf(csr_pem, (int)csr_len);
	X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pub = req ? X509_REQ_get0_pubkey(req) : NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	X509 *x = NULL;
	int rc = 0;

	BIO_free(b);
	if (!req || !pub) {
		ERR_clear_error();
		rc = cs_error(CS_EINVALID, "the CSR cannot be parsed");
		goto out;
	}
	if (X509_REQ_verify(req, pub) != 1) {
		ERR_clear_error();
		rc = cs_error(CS_EINVALID, "the CSR's signature is not valid");
		goto out;
	}
	exts = X509_REQ_get_extensions(req);
	for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);

		if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
			gens = X509V3_EXT_d2i(e);
	}
	x = cert_base(pub, not_before, not_after);
	if (!x || X509_set_subject_name(x, X509_REQ_get_subject_name(req)) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca_cert->x)) != 1 || !leaf_exts(x, ca_cert->x, pub, gens) ||
	    X509_sign(x, ca_key->pkey, sig_md(ca_key->pkey)) <= 0) {
		rc = cs_error(CS_ERROR, "signing a certificate: %s", ossl_reason());
		goto out;
	}
	*out = cert_wrap(x);
	x = NULL;
out:
	X509_free(x);
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	return rc;
}

int crypto_ca_create(const struct crypto_key *key, const char *cn, int64_t not_before, int64_t not_after,
		     struct crypto_cert **out)
{
	X509 *x = cert_base(key->pkey, not_before, not_after);

	if (!x || !set_cn(X509_get_subject_name(x), cn) || X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
	    !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
	    !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") ||
	    !add_ext(x, x, NID_subject_key_identifier, "hash") ||
	    !add_ext(x, x, NID_authority_key_identifier, "keyid:always") ||
	    X509_sign(x, key->pkey, sig_md(key->pkey)) <= 0) {
		X509_free(x);
		return cs_error(CS_ERROR, "creating a CA certificate: %s", ossl_reason());
	}
	*out = cert_wrap(x);
	return 0;
}

int crypto_self_signed(const struct crypto_key *key, const char *cn, const char *const *sans, size_t n_sans,
		       int64_t not_before, int64_t not_after, struct crypto_cert **out)
{
	GENERAL_NAMES *gens = sans_build(sans, n_sans);
	X509 *x = cert_base(key->pkey, not_before, not_after);
	int rc = 0;

	if (!gens || !x || !set_cn(X509_get_subject_name(x), cn) ||
	    X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 || !leaf_exts(x, x, key->pkey, gens) ||
	    X509_sign(x, key->pkey, sig_md(key->pkey)) <= 0) {
		X509_free(x);
		rc = cs_error(CS_ERROR, "creating a self-signed certificate: %s", ossl_reason());
	} else {
		*out = cert_wrap(x);
	}
	GENERAL_NAMES_free(gens);
	return rc;
}
