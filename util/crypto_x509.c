/* Cryptography, OpenSSL's owner (with crypto.c): certificates and CSRs — parse, inspect, create, sign. */
#include "crypto.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include "crypto_int.h"
#include "err.h"
#include "util.h"

#define CN_MAX 64 /* ub-common-name (RFC 5280) */

static const char PEM_CERT_BEGIN[] = "-----BEGIN CERTIFICATE-----";
static const char PEM_CERT_END[] = "-----END CERTIFICATE-----";

static const struct ext_spec ca_exts[] = {
	{NID_basic_constraints, "critical,CA:TRUE"},
	{NID_key_usage, "critical,keyCertSign,cRLSign"},
	{NID_subject_key_identifier, "hash"},
	{NID_authority_key_identifier, "keyid:always"},
};

/* ---------- parsing ---------- */

struct crypto_cert *crypto_x509_wrap(X509 *x)
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
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		crypto_cert_free(v[i]);
	free(v);
}

/*
 * Finds the next BEGIN..END CERTIFICATE block in [*p, end) and advances *p
 * past it. Scanning for the markers ourselves (rather than letting OpenSSL
 * read line by line) accepts chains glued without a newline between
 * "-----END CERTIFICATE-----" and the next BEGIN, and skips any text around
 * the blocks. Returns 1 (found), 0 (no more) or -1 (BEGIN without END).
 */
static int pem_next_cert(const char **p, const char *end, const char **blk, size_t *blen)
{
	const char *b, *e;

	if (!*p || *p >= end)
		return 0;
	if (!(b = memmem(*p, (size_t)(end - *p), PEM_CERT_BEGIN, sizeof(PEM_CERT_BEGIN) - 1)))
		return 0;
	if (!(e = memmem(b, (size_t)(end - b), PEM_CERT_END, sizeof(PEM_CERT_END) - 1)))
		return -1;
	e += sizeof(PEM_CERT_END) - 1;
	*blk = b;
	*blen = (size_t)(e - b);
	*p = e;
	return 1;
}

/* Parses one certificate block; idx (1-based) and what name it in errors. */
static int cert_parse_block(const char *blk, size_t blen, const char *what, size_t idx, struct crypto_cert **out)
{
	BIO *b = NULL;
	X509 *x = NULL;
	int rc = 0;

	if (blen > INT_MAX) {
		rc = cs_error(CS_EINVALID, "%s: certificate %zu is too large", what, idx);
		goto out;
	}
	if (!(b = BIO_new_mem_buf(blk, (int)blen)) || !(x = PEM_read_bio_X509(b, NULL, crypto_no_passphrase, NULL))) {
		rc = crypto_ossl_fail(CS_EINVALID, "%s: certificate %zu cannot be parsed", what, idx);
		goto out;
	}
	*out = crypto_x509_wrap(x);
	x = NULL;
out:
	X509_free(x);
	BIO_free(b);
	return rc;
}

int crypto_certs_from_pem(const char *pem, size_t len, const char *what, struct crypto_cert ***out, size_t *n)
{
	struct crypto_cert **v = NULL;
	const char *p = pem, *end = pem ? pem + len : NULL, *blk = NULL;
	size_t cnt = 0, cap = 0, blen = 0;
	int found, rc = 0;

	while ((found = pem_next_cert(&p, end, &blk, &blen)) == 1) {
		util_grow(&v, &cap, cnt + 1, sizeof(*v));
		if ((rc = cert_parse_block(blk, blen, what, cnt + 1, &v[cnt])))
			goto out;
		cnt++;
	}
	if (found < 0) {
		rc = cs_error(CS_EINVALID, "%s: certificate %zu has no END CERTIFICATE line", what, cnt + 1);
		goto out;
	}
	if (!cnt) {
		rc = cs_error(CS_EINVALID, "%s: no PEM certificate found", what);
		goto out;
	}
	*out = v;
	*n = cnt;
	v = NULL;
	cnt = 0;
out:
	crypto_certs_free(v, cnt);
	return rc;
}

int crypto_cert_from_pem(const char *pem, size_t len, const char *what, struct crypto_cert **out)
{
	const char *p = pem, *end = pem ? pem + len : NULL, *blk = NULL;
	size_t blen = 0;

	switch (pem_next_cert(&p, end, &blk, &blen)) {
	case 1: return cert_parse_block(blk, blen, what, 1, out);
	case 0: return cs_error(CS_EINVALID, "%s: no PEM certificate found", what);
	default: return cs_error(CS_EINVALID, "%s: certificate 1 has no END CERTIFICATE line", what);
	}
}

int crypto_cert_to_pem(const struct crypto_cert *cert, struct buf *out)
{
	BIO *b = NULL;
	char *p = NULL;
	long n;
	int rc = 0;

	if (!(b = BIO_new(BIO_s_mem())) || PEM_write_bio_X509(b, cert->x) != 1) {
		rc = crypto_ossl_fail(CS_ERROR, "writing a certificate as PEM");
		goto out;
	}
	if ((n = BIO_get_mem_data(b, &p)) <= 0) {
		rc = cs_error(CS_ERROR, "writing a certificate as PEM: no output");
		goto out;
	}
	rc = buf_append(out, p, (size_t)n);
out:
	BIO_free(b);
	return rc;
}

/* ---------- inspecting ---------- */

void crypto_cert_info_free(struct crypto_cert_info *info)
{
	if (!info)
		return;
	free(info->subject_cn);
	free(info->issuer_cn);
	for (size_t i = 0; i < info->n_dns; i++)
		free(info->dns_names[i]);
	free(info->dns_names);
	for (size_t i = 0; i < info->n_others; i++)
		free(info->others[i]);
	free(info->others);
	memset(info, 0, sizeof(*info));
}

/* Serial as lowercase hex without leading zeros ("-" first if a broken issuer made it negative). */
static int info_serial(X509 *x, char out[130])
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	BIGNUM *bn = NULL;
	char *h = NULL;
	const char *digits;
	size_t at = 0;
	int rc = 0;

	if (!sn || !(bn = ASN1_INTEGER_to_BN(sn, NULL)) || !(h = BN_bn2hex(bn))) {
		rc = crypto_ossl_fail(CS_EINVALID, "reading the certificate's serial number");
		goto out;
	}
	digits = h;
	if (*digits == '-')
		out[at++] = *digits++;
	while (digits[0] == '0' && digits[1])
		digits++;
	if (at + strlen(digits) >= 130) {
		rc = cs_error(CS_EINVALID, "the certificate's serial number is longer than 64 bytes");
		goto out;
	}
	for (; *digits; digits++)
		out[at++] = (char)(*digits >= 'A' && *digits <= 'F' ? *digits - 'A' + 'a' : *digits);
	out[at] = '\0';
out:
	OPENSSL_free(h);
	BN_free(bn);
	return rc;
}

static int asn1_time_unix(const ASN1_TIME *t, const char *which, int64_t *out)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return crypto_ossl_fail(CS_EINVALID, "reading the certificate's %s date", which);
	*out = (int64_t)timegm(&tm);
	return 0;
}

/* The first commonName of a name as a UTF-8 string (caller frees), or NULL. */
static char *name_cn(const X509_NAME *nm)
{
	int i = nm ? X509_NAME_get_index_by_NID(nm, NID_commonName, -1) : -1;
	unsigned char *utf8 = NULL;
	char *r = NULL;
	int n;

	if (i < 0)
		goto out;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)));
	if (n < 0 || (n > 0 && memchr(utf8, '\0', (size_t)n)))
		goto out;
	r = xstrndup(n > 0 ? (const char *)utf8 : "", (size_t)n);
out:
	OPENSSL_free(utf8);
	ERR_clear_error();
	return r;
}

/* A SAN other than a DNS name, as "IP:...", "URI:..." or "email:..." into info->others (others are skipped). */
static int info_other_name(const GENERAL_NAME *g, struct crypto_cert_info *info)
{
	const ASN1_STRING *v;
	char ip[INET6_ADDRSTRLEN];
	const char *tag;
	int len;

	switch (g->type) {
	case GEN_IPADD:
		v = g->d.iPAddress;
		len = ASN1_STRING_length(v);
		if ((len != 4 && len != 16) ||
		    !inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(v), ip, sizeof(ip)))
			return cs_error(CS_EINVALID, "the certificate has an IP address SAN of %d bytes", len);
		info->others[info->n_others++] = xasprintf("IP:%s", ip);
		return 0;
	case GEN_URI:
		tag = "URI";
		v = g->d.uniformResourceIdentifier;
		break;
	case GEN_EMAIL:
		tag = "email";
		v = g->d.rfc822Name;
		break;
	default: return 0;
	}
	len = ASN1_STRING_length(v);
	if (len < 0 || (len && memchr(ASN1_STRING_get0_data(v), '\0', (size_t)len)))
		return cs_error(CS_EINVALID, "the certificate has a %s SAN containing a NUL byte", tag);
	info->others[info->n_others++] = xasprintf("%s:%.*s", tag, len, (const char *)ASN1_STRING_get0_data(v));
	return 0;
}

/* Copies the SAN dNSNames of x, in order, into info. */
static int info_dns_names(X509 *x, struct crypto_cert_info *info)
{
	GENERAL_NAMES *gens = NULL;
	int crit = -1, n, rc = 0;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	if (!gens) {
		if (crit == -2)
			rc = cs_error(CS_EINVALID, "the certificate has more than one subjectAltName extension");
		else if (crit != -1)
			rc = crypto_ossl_fail(CS_EINVALID, "reading the certificate's subjectAltName extension");
		goto out;
	}
	n = sk_GENERAL_NAME_num(gens);
	info->dns_names = xcalloc((size_t)n + 1, sizeof(char *));
	info->others = xcalloc((size_t)n + 1, sizeof(char *));
	for (int i = 0; i < n; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const char *s;
		size_t len;

		if (g->type != GEN_DNS) {
			if ((rc = info_other_name(g, info)))
				goto out;
			continue;
		}
		s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
		len = (size_t)ASN1_STRING_length(g->d.dNSName);
		if (len && memchr(s, '\0', len)) {
			rc = cs_error(CS_EINVALID, "the certificate has a DNS name containing a NUL byte");
			goto out;
		}
		info->dns_names[info->n_dns++] = xstrndup(len ? s : "", len);
	}
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

int crypto_cert_info(const struct crypto_cert *cert, struct crypto_cert_info *out)
{
	struct crypto_cert_info info;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc = 0;

	memset(&info, 0, sizeof(info));
	if ((rc = info_serial(cert->x, info.serial)) ||
	    (rc = asn1_time_unix(X509_get0_notBefore(cert->x), "notBefore", &info.not_before)) ||
	    (rc = asn1_time_unix(X509_get0_notAfter(cert->x), "notAfter", &info.not_after)) ||
	    (rc = info_dns_names(cert->x, &info)))
		goto out;
	if (X509_digest(cert->x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
		rc = crypto_ossl_fail(CS_ERROR, "computing the certificate's SHA-256 fingerprint");
		goto out;
	}
	crypto_hex(md, mdlen, info.fingerprint);
	info.subject_cn = name_cn(X509_get_subject_name(cert->x));
	info.issuer_cn = name_cn(X509_get_issuer_name(cert->x));
	info.is_ca = (X509_get_extension_flags(cert->x) & EXFLAG_CA) != 0; /* basicConstraints CA:TRUE */
	*out = info;
	memset(&info, 0, sizeof(info));
out:
	crypto_cert_info_free(&info);
	ERR_clear_error();
	return rc;
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

/* ---------- building ---------- */

/* Refuses a commonName over 64 characters up front (OpenSSL's "string too long" does not say which). */
int crypto_x509_check_cn(const char *cn)
{
	size_t chars = 0;

	for (const char *p = cn; p && *p; p++)
		chars += ((unsigned char)*p & 0xc0) != 0x80; /* count UTF-8 lead bytes */
	if (chars > CN_MAX)
		return cs_error(CS_EINVALID, "common name \"%s\" is longer than %d characters", cn, CN_MAX);
	return 0;
}

static int name_set_cn(X509_NAME *nm, const char *cn)
{
	return !cn ||
	       X509_NAME_add_entry_by_NID(nm, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) == 1;
}

/* A GENERAL_NAMES of dNSNames, or NULL (OpenSSL error queued). */
static GENERAL_NAMES *sans_build(const char *const *sans, size_t n)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *g = NULL;
	ASN1_IA5STRING *s = NULL;

	for (size_t i = 0; gens && i < n; i++) {
		if (!(g = GENERAL_NAME_new()) || !(s = ASN1_IA5STRING_new()) ||
		    ASN1_STRING_set(s, sans[i], (int)strlen(sans[i])) != 1)
			goto fail;
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		s = NULL;
		if (!sk_GENERAL_NAME_push(gens, g))
			goto fail;
		g = NULL;
	}
	return gens;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(g);
	GENERAL_NAMES_free(gens);
	return NULL;
}

static int add_ext(X509 *x, X509 *issuer, const struct ext_spec *spec)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e = NULL;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	if (!(e = X509V3_EXT_nconf_nid(NULL, &ctx, spec->nid, spec->value)))
		return 0;
	ok = X509_add_ext(x, e, -1) == 1;
	X509_EXTENSION_free(e);
	return ok;
}

int crypto_x509_add_exts(X509 *x, X509 *issuer, const struct ext_spec *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!add_ext(x, issuer, &v[i]))
			return 0;
	return 1;
}

/*
 * The TLS leaf profile. AKI is "keyid,issuer": the issuer's key id, or its
 * name and serial when an operator's CA certificate has no SKI. The SAN is
 * critical when the subject is empty (RFC 5280 4.2.1.6).
 */
static int leaf_exts(X509 *x, X509 *issuer, const GENERAL_NAMES *gens)
{
	int rsa = EVP_PKEY_is_a(X509_get0_pubkey(x), "RSA");
	const struct ext_spec v[] = {
		{NID_basic_constraints, "critical,CA:FALSE"},
		{NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature"},
		{NID_ext_key_usage, "serverAuth,clientAuth"},
		{NID_subject_key_identifier, "hash"},
		{NID_authority_key_identifier, "keyid,issuer"},
	};
	int crit = X509_NAME_entry_count(X509_get_subject_name(x)) == 0;

	return crypto_x509_add_exts(x, issuer, v, sizeof(v) / sizeof(v[0])) &&
	       (!gens || sk_GENERAL_NAME_num(gens) == 0 ||
		X509_add1_ext_i2d(x, NID_subject_alt_name, (void *)gens, crit, X509V3_ADD_DEFAULT) == 1);
}

/* 128 random bits as a positive serial number. */
static int set_serial(X509 *x)
{
	unsigned char r[16];
	BIGNUM *bn = NULL;
	int ok = 0;

	do {
		if (crypto_random(r, sizeof(r)))
			goto out;
		BN_free(bn);
		if (!(bn = BN_bin2bn(r, sizeof(r), NULL)))
			goto out;
	} while (BN_is_zero(bn));
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
out:
	BN_free(bn);
	return ok;
}

/* Version 3, a random serial, validity and the subject's public key: what every certificate we make has. */
X509 *crypto_x509_base(EVP_PKEY *pub, int64_t not_before, int64_t not_after)
{
	X509 *x = X509_new();

	if (!x || X509_set_version(x, X509_VERSION_3) != 1 || !set_serial(x) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) || X509_set_pubkey(x, pub) != 1) {
		X509_free(x);
		return NULL;
	}
	return x;
}

int crypto_x509_check_validity(int64_t not_before, int64_t not_after)
{
	if (not_after <= not_before)
		return cs_error(CS_EINVALID, "certificate validity ends (%lld) before it begins (%lld)",
				(long long)not_after, (long long)not_before);
	return 0;
}

int crypto_csr_create(const struct crypto_key *key, const char *cn, const char *const *sans, size_t n_sans,
		      struct buf *pem_out)
{
	X509_REQ *req = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	X509_EXTENSION *ext = NULL;
	BIO *b = NULL;
	char *p = NULL;
	long n;
	int rc = 0;

	if ((rc = crypto_x509_check_cn(cn)))
		goto out;
	if (!cn && !n_sans) {
		rc = cs_error(CS_EINVALID, "a CSR needs a common name or a DNS name");
		goto out;
	}
	if (!(req = X509_REQ_new()) || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
	    !name_set_cn(X509_REQ_get_subject_name(req), cn) || X509_REQ_set_pubkey(req, key->pkey) != 1)
		goto fail;
	if (n_sans) {
		if (!(gens = sans_build(sans, n_sans)) || !(exts = sk_X509_EXTENSION_new_null()) ||
		    !(ext = X509V3_EXT_i2d(NID_subject_alt_name, !cn, gens)) || !sk_X509_EXTENSION_push(exts, ext))
			goto fail;
		ext = NULL; /* owned by exts */
		if (X509_REQ_add_extensions(req, exts) != 1)
			goto fail;
	}
	if (X509_REQ_sign(req, key->pkey, EVP_sha256()) <= 0 || !(b = BIO_new(BIO_s_mem())) ||
	    PEM_write_bio_X509_REQ(b, req) != 1 || (n = BIO_get_mem_data(b, &p)) <= 0)
		goto fail;
	rc = buf_append(pem_out, p, (size_t)n);
	goto out;
fail:
	rc = crypto_ossl_fail(CS_ERROR, "creating a CSR for %s", cn ? cn : sans[0]);
out:
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	X509_REQ_free(req);
	BIO_free(b);
	return rc;
}

/* Parses a CSR and checks its self-signature: the requester holds the key. */
static int csr_read(const char *pem, size_t len, X509_REQ **out)
{
	BIO *b = NULL;
	X509_REQ *req = NULL;
	EVP_PKEY *pub;
	int rc = 0;

	if (len > INT_MAX) {
		rc = cs_error(CS_EINVALID, "the CSR is too large");
		goto out;
	}
	if (!(b = BIO_new_mem_buf(len ? pem : "", (int)len)) ||
	    !(req = PEM_read_bio_X509_REQ(b, NULL, crypto_no_passphrase, NULL)) || !(pub = X509_REQ_get0_pubkey(req))) {
		rc = crypto_ossl_fail(CS_EINVALID, "the CSR cannot be parsed");
		goto out;
	}
	if (X509_REQ_verify(req, pub) != 1) {
		rc = crypto_ossl_fail(CS_EINVALID, "the CSR's signature does not verify");
		goto out;
	}
	*out = req;
	req = NULL;
out:
	X509_REQ_free(req);
	BIO_free(b);
	return rc;
}

/* Gives x the CSR's commonName as its whole subject; *gens gets the CSR's SAN (NULL if none). */
static int csr_names(X509_REQ *req, X509 *x, GENERAL_NAMES **gens)
{
	const X509_NAME *rn = X509_REQ_get_subject_name(req);
	X509_NAME *sn = X509_get_subject_name(x);
	STACK_OF(X509_EXTENSION) *exts = NULL;
	int crit = -1, rc = 0;

	for (int i = -1; (i = X509_NAME_get_index_by_NID(rn, NID_commonName, i)) >= 0;) {
		if (X509_NAME_add_entry(sn, X509_NAME_get_entry(rn, i), -1, 0) != 1) {
			rc = crypto_ossl_fail(CS_ERROR, "copying the CSR's subject");
			goto out;
		}
	}
	exts = X509_REQ_get_extensions(req);
	*gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL) : NULL;
	if (!*gens && crit == -2) {
		rc = cs_error(CS_EINVALID, "the CSR has more than one subjectAltName extension");
		goto out;
	}
	if (!*gens && crit != -1) {
		rc = crypto_ossl_fail(CS_EINVALID, "the CSR's subjectAltName extension cannot be parsed");
		goto out;
	}
	if (X509_NAME_entry_count(sn) == 0 && (!*gens || sk_GENERAL_NAME_num(*gens) == 0))
		rc = cs_error(CS_EINVALID, "the CSR names neither a common name nor a subjectAltName");
out:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ERR_clear_error();
	return rc;
}

/* Refuses to sign with a CA whose certificate and key disagree, or that is no CA at all. */
int crypto_x509_check_ca(const struct crypto_cert *ca_cert, const struct crypto_key *ca_key)
{
	if (X509_check_ca(ca_cert->x) <= 0)
		return cs_error(CS_EINVALID, "the issuing certificate is not a CA certificate");
	if (!crypto_cert_matches_key(ca_cert, ca_key))
		return cs_error(CS_EINVALID, "the CA key does not match the CA certificate");
	return 0;
}

int crypto_sign_csr(const struct crypto_cert *ca_cert, const struct crypto_key *ca_key, const char *csr_pem,
		    size_t csr_len, int64_t not_before, int64_t not_after, struct crypto_cert **out)
{
	X509_REQ *req = NULL;
	GENERAL_NAMES *gens = NULL;
	X509 *x = NULL;
	int rc = 0;

	if ((rc = crypto_x509_check_validity(not_before, not_after)) || (rc = crypto_x509_check_ca(ca_cert, ca_key)) ||
	    (rc = csr_read(csr_pem, csr_len, &req)))
		goto out;
	if (!(x = crypto_x509_base(X509_REQ_get0_pubkey(req), not_before, not_after))) {
		rc = crypto_ossl_fail(CS_ERROR, "signing a certificate");
		goto out;
	}
	if ((rc = csr_names(req, x, &gens)))
		goto out;
	if (X509_set_issuer_name(x, X509_get_subject_name(ca_cert->x)) != 1 || !leaf_exts(x, ca_cert->x, gens) ||
	    X509_sign(x, ca_key->pkey, crypto_sig_md(ca_key->pkey)) <= 0) {
		rc = crypto_ossl_fail(CS_ERROR, "signing a certificate");
		goto out;
	}
	*out = crypto_x509_wrap(x);
	x = NULL;
out:
	X509_free(x);
	GENERAL_NAMES_free(gens);
	X509_REQ_free(req);
	return rc;
}

int crypto_ca_create(const struct crypto_key *key, const char *cn, int64_t not_before, int64_t not_after,
		     struct crypto_cert **out)
{
	X509 *x = NULL;
	int rc = 0;

	if ((rc = crypto_x509_check_validity(not_before, not_after)) || (rc = crypto_x509_check_cn(cn)))
		goto out;
	if (!cn || !*cn) {
		rc = cs_error(CS_EINVALID, "a CA certificate needs a common name");
		goto out;
	}
	if (!(x = crypto_x509_base(key->pkey, not_before, not_after)) || !name_set_cn(X509_get_subject_name(x), cn) ||
	    X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
	    !crypto_x509_add_exts(x, x, ca_exts, sizeof(ca_exts) / sizeof(ca_exts[0])) ||
	    X509_sign(x, key->pkey, crypto_sig_md(key->pkey)) <= 0) {
		rc = crypto_ossl_fail(CS_ERROR, "creating the CA certificate %s", cn);
		goto out;
	}
	*out = crypto_x509_wrap(x);
	x = NULL;
out:
	X509_free(x);
	return rc;
}

int crypto_self_signed(const struct crypto_key *key, const char *cn, const char *const *sans, size_t n_sans,
		       int64_t not_before, int64_t not_after, struct crypto_cert **out)
{
	GENERAL_NAMES *gens = NULL;
	X509 *x = NULL;
	int rc = 0;

	if ((rc = crypto_x509_check_validity(not_before, not_after)) || (rc = crypto_x509_check_cn(cn)))
		goto out;
	if (!cn && !n_sans) {
		rc = cs_error(CS_EINVALID, "a certificate needs a common name or a DNS name");
		goto out;
	}
	if (!(gens = sans_build(sans, n_sans)) || !(x = crypto_x509_base(key->pkey, not_before, not_after)) ||
	    !name_set_cn(X509_get_subject_name(x), cn) || X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
	    !leaf_exts(x, x, gens) || X509_sign(x, key->pkey, crypto_sig_md(key->pkey)) <= 0) {
		rc = crypto_ossl_fail(CS_ERROR, "creating a self-signed certificate for %s", cn ? cn : sans[0]);
		goto out;
	}
	*out = crypto_x509_wrap(x);
	x = NULL;
out:
	X509_free(x);
	GENERAL_NAMES_free(gens);
	return rc;
}

int crypto_split_chain(const char *pem, size_t len, const char *what, struct buf *cert, struct buf *ca)
{
	struct crypto_cert **v = NULL;
	size_t n = 0, roots = 0;
	int rc;

	if ((rc = crypto_certs_from_pem(pem, len, what, &v, &n)))
		return rc;
	/* Roots sit at the end of the chain; a chain without one gives its top as the trust anchor. */
	while (roots < n - 1 && crypto_cert_signed_by(v[n - 1 - roots], v[n - 1 - roots]))
		roots++;
	buf_clear(cert);
	buf_clear(ca);
	for (size_t i = 0; i < n - roots && !rc; i++)
		rc = crypto_cert_to_pem(v[i], cert);
	for (size_t i = roots ? n - roots : n - 1; i < n && !rc; i++)
		rc = crypto_cert_to_pem(v[i], ca);
	crypto_certs_free(v, n);
	return rc;
}
