/* JOSE for ACME: base64url, the JWK and thumbprint of a key, flattened JWS (ES256/ES384/ES512/RS256), the EAB JWS. */
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto_int.h"
#include "err.h"
#include "jose.h"
#include "util.h"

/* An EC curve as JOSE names it: by its bit size, with the coordinate size and the JWS algorithm. */
struct jose_curve {
	int bits;
	const char *crv;
	size_t coord; /* bytes of x, y, r and s */
	const char *alg;
};

static const struct jose_curve jose_curves[] = {
	{256, "P-256", 32, "ES256"},
	{384, "P-384", 48, "ES384"},
	{521, "P-521", 66, "ES512"},
};

static const struct jose_curve *jose_curve_of(const EVP_PKEY *pk)
{
	int bits = EVP_PKEY_get_bits(pk);

	if (!EVP_PKEY_is_a(pk, "EC"))
		return NULL;
	for (size_t i = 0; i < sizeof(jose_curves) / sizeof(jose_curves[0]); i++)
		if (jose_curves[i].bits == bits)
			return &jose_curves[i];
	return NULL;
}

/* ---------- base64url ---------- */

static const char jose_b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *jose_b64url(const void *data, size_t n)
{
	const unsigned char *p = data;
	char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];

		*o++ = jose_b64_chars[v >> 18 & 63];
		*o++ = jose_b64_chars[v >> 12 & 63];
		*o++ = jose_b64_chars[v >> 6 & 63];
		*o++ = jose_b64_chars[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)p[i] << 16;

		*o++ = jose_b64_chars[v >> 18 & 63];
		*o++ = jose_b64_chars[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;

		*o++ = jose_b64_chars[v >> 18 & 63];
		*o++ = jose_b64_chars[v >> 12 & 63];
		*o++ = jose_b64_chars[v >> 6 & 63];
	}
	*o = '\0';
	return out;
}

static int jose_b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

int jose_b64url_decode(const char *s, struct buf *out)
{
	size_t len = strlen(s), pad = 0, i;
	unsigned acc = 0;
	int bits = 0;

	while (pad < len && pad < 2 && s[len - 1 - pad] == '=')
		pad++;
	if (pad && len % 4)
		return cs_error(CS_EINVALID, "not base64url: padding makes the length %zu, not a multiple of 4", len);
	len -= pad;
	if (len % 4 == 1)
		return cs_error(CS_EINVALID, "not base64url: %zu characters cannot encode whole bytes", len);
	buf_clear(out);
	for (i = 0; i < len; i++) {
		int v = jose_b64_value((unsigned char)s[i]);
		unsigned char byte;

		if (v < 0) {
			buf_clear(out);
			return cs_error(CS_EINVALID, "not base64url: unexpected character at offset %zu", i);
		}
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			byte = (unsigned char)(acc >> bits);
			if (buf_append(out, &byte, 1))
				return CS_EINVALID;
		}
	}
	if (!out->data)
		buf_append(out, "", 0);
	return 0;
}

/* ---------- JWK ---------- */

/* Appends "name":"base64url(bn, padded to size bytes; size 0: minimal)" to b. */
static int jose_put_bn(struct buf *b, const EVP_PKEY *pk, const char *param, const char *name, size_t size)
{
	BIGNUM *bn = NULL;
	unsigned char *raw = NULL;
	char *enc = NULL;
	int n, rc = 0;

	if (!EVP_PKEY_get_bn_param(pk, param, &bn)) {
		rc = crypto_ossl_fail(CS_ERROR, "reading the key's %s", name);
		goto out;
	}
	n = size ? (int)size : BN_num_bytes(bn);
	if (n <= 0)
		n = 1; /* a zero exponent cannot happen, but keep the encoding well-formed */
	raw = xcalloc((size_t)n, 1);
	if (BN_bn2binpad(bn, raw, n) < 0) {
		rc = crypto_ossl_fail(CS_ERROR, "encoding the key's %s", name);
		goto out;
	}
	enc = jose_b64url(raw, (size_t)n);
	buf_printf(b, "\"%s\":\"%s\"", name, enc);
out:
	BN_free(bn);
	free(raw);
	free(enc);
	return rc;
}

char *jose_jwk(const struct crypto_key *key)
{
	const EVP_PKEY *pk = key->pkey;
	const struct jose_curve *cv = jose_curve_of(pk);
	struct buf b = BUF_INIT;
	int rc;

	if (cv) {
		buf_printf(&b, "{\"crv\":\"%s\",\"kty\":\"EC\",", cv->crv);
		if (!(rc = jose_put_bn(&b, pk, OSSL_PKEY_PARAM_EC_PUB_X, "x", cv->coord))) {
			buf_puts(&b, ",");
			rc = jose_put_bn(&b, pk, OSSL_PKEY_PARAM_EC_PUB_Y, "y", cv->coord);
		}
	} else if (EVP_PKEY_is_a(pk, "RSA")) {
		buf_puts(&b, "{");
		if (!(rc = jose_put_bn(&b, pk, OSSL_PKEY_PARAM_RSA_E, "e", 0))) {
			buf_puts(&b, ",\"kty\":\"RSA\",");
			rc = jose_put_bn(&b, pk, OSSL_PKEY_PARAM_RSA_N, "n", 0);
		}
	} else {
		rc = cs_error(CS_EINVALID, "the key is neither RSA nor EC P-256/P-384/P-521: no JWS algorithm");
	}
	if (rc) {
		buf_free(&b);
		return NULL;
	}
	buf_puts(&b, "}");
	return buf_detach(&b);
}

int jose_thumbprint(const struct crypto_key *key, char out[44])
{
	char *jwk = jose_jwk(key), *enc;
	unsigned char h[32];

	if (!jwk)
		return CS_ERROR;
	crypto_sha256(jwk, strlen(jwk), h);
	enc = jose_b64url(h, sizeof(h));
	memcpy(out, enc, 44);
	free(enc);
	free(jwk);
	return 0;
}

const char *jose_alg(const struct crypto_key *key)
{
	const struct jose_curve *cv = jose_curve_of(key->pkey);

	if (cv)
		return cv->alg;
	return EVP_PKEY_is_a(key->pkey, "RSA") ? "RS256" : NULL;
}

/* ---------- JWS ---------- */

/* Turns a DER ECDSA signature into JOSE's fixed-size r‖s (RFC 7518 §3.4). out holds 2 * size bytes. */
static int jose_ecdsa_raw(const unsigned char *der, size_t len, size_t size, unsigned char *out)
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	const BIGNUM *r, *s;
	int rc = 0;

	if (!sig)
		return crypto_ossl_fail(CS_ERROR, "decoding an ECDSA signature");
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, out, (int)size) < 0 || BN_bn2binpad(s, out + size, (int)size) < 0)
		rc = crypto_ossl_fail(CS_ERROR, "encoding an ECDSA signature");
	ECDSA_SIG_free(sig);
	return rc;
}

/* Signs input with key (the digest its algorithm uses): *out (caller frees) is the base64url signature. */
static int jose_sign_input(const struct crypto_key *key, const char *input, char **out)
{
	const struct jose_curve *cv = jose_curve_of(key->pkey);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *sig = NULL, raw[2 * 66];
	size_t n = 0;
	int rc = 0;

	if (!md || EVP_DigestSignInit(md, NULL, crypto_sig_md(key->pkey), NULL, key->pkey) != 1 ||
	    EVP_DigestSign(md, NULL, &n, (const unsigned char *)input, strlen(input)) != 1) {
		rc = crypto_ossl_fail(CS_ERROR, "signing a JWS");
		goto out;
	}
	sig = xmalloc(n);
	if (EVP_DigestSign(md, sig, &n, (const unsigned char *)input, strlen(input)) != 1) {
		rc = crypto_ossl_fail(CS_ERROR, "signing a JWS");
		goto out;
	}
	if (cv) {
		if ((rc = jose_ecdsa_raw(sig, n, cv->coord, raw)))
			goto out;
		*out = jose_b64url(raw, 2 * cv->coord);
	} else {
		*out = jose_b64url(sig, n);
	}
out:
	EVP_MD_CTX_free(md);
	free(sig);
	return rc;
}

/* {"protected":p,"payload":pl,"signature":sig} */
static char *jose_flattened(const char *prot, const char *payload, const char *sig)
{
	return xasprintf("{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", prot, payload, sig);
}

int jose_sign(const struct crypto_key *key, const char *kid, const char *nonce, const char *url, const char *payload,
	      char **out)
{
	const char *alg = jose_alg(key);
	struct buf hdr = BUF_INIT;
	char *jwk = NULL, *prot = NULL, *pl = NULL, *input = NULL, *sig = NULL;
	int rc = 0;

	if (!alg) {
		rc = cs_error(CS_EINVALID, "the account key is neither RSA nor EC P-256/P-384/P-521");
		goto out;
	}
	buf_printf(&hdr, "{\"alg\":\"%s\",", alg);
	if (kid) {
		buf_puts(&hdr, "\"kid\":");
		buf_json_str(&hdr, kid);
	} else {
		if (!(jwk = jose_jwk(key))) {
			rc = CS_ERROR;
			goto out;
		}
		buf_printf(&hdr, "\"jwk\":%s", jwk);
	}
	if (nonce) {
		buf_puts(&hdr, ",\"nonce\":");
		buf_json_str(&hdr, nonce);
	}
	buf_puts(&hdr, ",\"url\":");
	buf_json_str(&hdr, url);
	buf_puts(&hdr, "}");
	prot = jose_b64url(hdr.data, hdr.len);
	pl = jose_b64url(payload ? payload : "", payload ? strlen(payload) : 0);
	input = xasprintf("%s.%s", prot, pl);
	if ((rc = jose_sign_input(key, input, &sig)))
		goto out;
	*out = jose_flattened(prot, pl, sig);
out:
	buf_free(&hdr);
	free(jwk);
	free(prot);
	free(pl);
	free(input);
	free(sig);
	return rc;
}

char *jose_eab(const struct crypto_key *account_key, const char *eab_kid, const unsigned char *hmac_key,
	       size_t hmac_len, const char *url)
{
	struct buf hdr = BUF_INIT;
	char *jwk = jose_jwk(account_key), *prot = NULL, *pl = NULL, *input = NULL, *sig = NULL, *out = NULL;
	unsigned char mac[32];

	if (!jwk)
		goto out;
	buf_puts(&hdr, "{\"alg\":\"HS256\",\"kid\":");
	buf_json_str(&hdr, eab_kid);
	buf_puts(&hdr, ",\"url\":");
	buf_json_str(&hdr, url);
	buf_puts(&hdr, "}");
	prot = jose_b64url(hdr.data, hdr.len);
	pl = jose_b64url(jwk, strlen(jwk));
	input = xasprintf("%s.%s", prot, pl);
	crypto_hmac_sha256(hmac_key, hmac_len, input, strlen(input), mac);
	sig = jose_b64url(mac, sizeof(mac));
	crypto_wipe(mac, sizeof(mac));
	out = jose_flattened(prot, pl, sig);
out:
	buf_free(&hdr);
	free(jwk);
	free(prot);
	free(pl);
	free(input);
	free(sig);
	return out;
}

/* ---------- challenges ---------- */

char *jose_key_authorization(const char *token, const char thumbprint[44])
{
	return xasprintf("%s.%.43s", token, thumbprint);
}

void jose_dns01_value(const char *key_authorization, char out[44])
{
	unsigned char h[32];
	char *enc;

	crypto_sha256(key_authorization, strlen(key_authorization), h);
	enc = jose_b64url(h, sizeof(h));
	memcpy(out, enc, 44);
	free(enc);
}

/* ---------- certificates ---------- */

int jose_pem_to_der(const char *pem, size_t len, const char *label, struct buf *out)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long n = 0;
	int rc = CS_EINVALID;

	if (!b || len > INT_MAX)
		goto out;
	while (PEM_read_bio(b, &name, &header, &data, &n) == 1) {
		if (!strcmp(name, label)) {
			buf_clear(out);
			rc = buf_append(out, data, (size_t)n) ? CS_EINVALID : 0;
			break;
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		name = header = NULL;
		data = NULL;
	}
out:
	ERR_clear_error();
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(b);
	return rc ? cs_error(rc, "no PEM block \"%s\" in the text", label) : 0;
}

/* The content octets of a DER INTEGER (after its tag and length). */
static int jose_integer_content(const ASN1_INTEGER *a, struct buf *out)
{
	unsigned char *der = NULL;
	int n = i2d_ASN1_INTEGER(a, &der);
	size_t off = 2;

	if (n < 3) {
		OPENSSL_free(der);
		return crypto_ossl_fail(CS_EINVALID, "encoding the certificate's serial number");
	}
	if (der[1] & 0x80) /* long form: 0x8k then k length bytes */
		off = 2 + (der[1] & 0x7f);
	buf_clear(out);
	if (off < (size_t)n)
		buf_append(out, der + off, (size_t)n - off);
	OPENSSL_free(der);
	return off < (size_t)n ? 0 : cs_error(CS_EINVALID, "the certificate's serial number is empty");
}

int jose_ari_cert_id(const char *cert_pem, size_t len, char **out)
{
	struct crypto_cert *cert = NULL;
	const ASN1_OCTET_STRING *aki;
	struct buf serial = BUF_INIT;
	char *a = NULL, *s = NULL;
	int rc;

	if ((rc = crypto_cert_from_pem(cert_pem, len, "the certificate", &cert)))
		return rc;
	aki = X509_get0_authority_key_id(cert->x);
	if (!aki || ASN1_STRING_length(aki) <= 0) {
		rc = cs_error(CS_EINVALID, "the certificate has no authority key identifier: no ARI identifier");
		goto out;
	}
	if ((rc = jose_integer_content(X509_get0_serialNumber(cert->x), &serial)))
		goto out;
	a = jose_b64url(ASN1_STRING_get0_data(aki), (size_t)ASN1_STRING_length(aki));
	s = jose_b64url(serial.data, serial.len);
	*out = xasprintf("%s.%s", a, s);
out:
	crypto_cert_free(cert);
	buf_free(&serial);
	free(a);
	free(s);
	return rc;
}
