/* Cryptography, OpenSSL's owner (with crypto_x509.c): errors, hashes, randomness, private keys. */
#include "crypto.h"
#include "libversion.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto_int.h"
#include "err.h"
#include "util.h"

struct crypto_sha256_ctx {
	EVP_MD_CTX *md;
};

/* The key kinds certsync generates; everything else is refused. */
static const struct key_kind {
	enum crypto_alg alg;
	int size;
	const char *type;  /* OpenSSL key type */
	const char *group; /* EC curve, NULL for RSA */
} key_kinds[] = {
	{CRYPTO_RSA, 2048, "RSA", NULL},    {CRYPTO_RSA, 3072, "RSA", NULL},	{CRYPTO_RSA, 4096, "RSA", NULL},
	{CRYPTO_ECDSA, 256, "EC", "P-256"}, {CRYPTO_ECDSA, 384, "EC", "P-384"},
};

static const char *const alg_names[CRYPTO__MAX] = {[CRYPTO_RSA] = "RSA", [CRYPTO_ECDSA] = "ECDSA"};

/* The EC curves a loaded key may use (a CA key may be P-521; certsync never generates one). */
static const char *const ec_groups[] = {"prime256v1", "P-256", "secp384r1", "P-384", "secp521r1", "P-521"};

/* ---------- shared helpers ---------- */

/*
 * The first error of the queue says what went wrong, except that OpenSSL 3's
 * decoder framework puts a bare "unsupported" first when it could not decode
 * an input; the more useful ASN.1 reason ("wrong tag") then follows it.
 */
int crypto_ossl_fail(int code, const char *fmt, ...)
{
	unsigned long e = ERR_get_error(), next;
	const char *reason;
	char what[512];
	va_list ap;

	while (e && ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER && (next = ERR_get_error()))
		e = next;
	reason = e ? ERR_reason_error_string(e) : NULL;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return cs_error(code, "%s: %s", what, reason ? reason : "unknown OpenSSL error");
}

void crypto_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

const EVP_MD *crypto_sig_md(const EVP_PKEY *key)
{
	int bits = EVP_PKEY_get_bits(key);

	if (!EVP_PKEY_is_a(key, "EC") || bits <= 256)
		return EVP_sha256();
	return bits <= 384 ? EVP_sha384() : EVP_sha512();
}

int crypto_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	if (u)
		*(int *)u = 1;
	return -1;
}

/* Hashing cannot fail short of a broken OpenSSL install; like xmalloc, give up loudly. */
static void must(int ok, const char *what)
{
	if (ok)
		return;
	fprintf(stderr, "certsync: fatal: %s failed in OpenSSL\n", what);
	abort();
}

void crypto_wipe(void *p, size_t n)
{
	if (p && n)
		OPENSSL_cleanse(p, n);
}

int crypto_random(void *out, size_t n)
{
	unsigned char *p = out;

	while (n) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n;

		if (RAND_bytes(p, chunk) != 1)
			return crypto_ossl_fail(CS_ERROR, "the random number generator failed");
		p += chunk;
		n -= (size_t)chunk;
	}
	return 0;
}

int crypto_uuid(char out[37])
{
	unsigned char b[16];
	char h[33];
	int rc;

	if ((rc = crypto_random(b, sizeof(b))))
		return rc;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	crypto_hex(b, sizeof(b), h);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
	return 0;
}

/* ---------- hashes ---------- */

void crypto_sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;

	must(EVP_Digest(len ? data : "", len, out, &n, EVP_sha256(), NULL) == 1, "SHA-256");
}

void crypto_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char d[32];

	crypto_sha256(data, len, d);
	crypto_hex(d, sizeof(d), out);
}

struct crypto_sha256_ctx *crypto_sha256_begin(void)
{
	struct crypto_sha256_ctx *c = xcalloc(1, sizeof(*c));

	c->md = EVP_MD_CTX_new();
	must(c->md && EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) == 1, "SHA-256");
	return c;
}

void crypto_sha256_update(struct crypto_sha256_ctx *c, const void *data, size_t len)
{
	if (len)
		must(EVP_DigestUpdate(c->md, data, len) == 1, "SHA-256");
}

void crypto_sha256_end_hex(struct crypto_sha256_ctx *c, char out[65])
{
	unsigned char d[32];
	unsigned int n = 32;

	must(EVP_DigestFinal_ex(c->md, d, &n) == 1, "SHA-256");
	crypto_hex(d, sizeof(d), out);
	EVP_MD_CTX_free(c->md);
	free(c);
}

void crypto_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, unsigned char out[32])
{
	size_t n = 0;

	must(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key_len ? key : "", key_len, msg_len ? msg : "", msg_len,
		       out, 32, &n) != NULL &&
		     n == 32,
	     "HMAC-SHA256");
}

/* Only for OpenSSH's hashed known_hosts names (|1|salt|hash), which are defined with HMAC-SHA1. */
void crypto_hmac_sha1(const void *key, size_t key_len, const void *msg, size_t msg_len, unsigned char out[20])
{
	size_t n = 0;

	must(EVP_Q_mac(NULL, "HMAC", NULL, "SHA1", NULL, key_len ? key : "", key_len, msg_len ? msg : "", msg_len, out,
		       20, &n) != NULL &&
		     n == 20,
	     "HMAC-SHA1");
}

/* ---------- private keys ---------- */

static struct crypto_key *key_wrap(EVP_PKEY *pk)
{
	struct crypto_key *k = xcalloc(1, sizeof(*k));

	k->pkey = pk;
	return k;
}

int crypto_key_generate(enum crypto_alg alg, int size, struct crypto_key **out)
{
	const struct key_kind *kind = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;
	OSSL_PARAM params[2];
	size_t bits = (size_t)size;
	int rc = 0;

	for (size_t i = 0; i < sizeof(key_kinds) / sizeof(key_kinds[0]); i++)
		if (key_kinds[i].alg == alg && key_kinds[i].size == size)
			kind = &key_kinds[i];
	if (!kind) {
		rc = cs_error(CS_EINVALID, "unsupported key: %s %d",
			      (unsigned)alg < CRYPTO__MAX ? alg_names[alg] : "unknown algorithm", size);
		goto out;
	}
	if (kind->group)
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)kind->group, 0);
	else
		params[0] = OSSL_PARAM_construct_size_t(OSSL_PKEY_PARAM_RSA_BITS, &bits);
	params[1] = OSSL_PARAM_construct_end();
	if (!(ctx = EVP_PKEY_CTX_new_from_name(NULL, kind->type, NULL)) || EVP_PKEY_keygen_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_params(ctx, params) != 1 || EVP_PKEY_generate(ctx, &pk) != 1) {
		rc = crypto_ossl_fail(CS_ERROR, "generating a %s %d key", alg_names[alg], size);
		goto out;
	}
	*out = key_wrap(pk);
	pk = NULL;
out:
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* Refuses key types certsync cannot sign with (Ed25519, RSA-PSS, odd curves). */
static int key_check_type(EVP_PKEY *pk, const char *what)
{
	char group[64];

	if (EVP_PKEY_is_a(pk, "RSA"))
		return 0;
	if (!EVP_PKEY_is_a(pk, "EC"))
		return cs_error(CS_EINVALID, "%s: unsupported private key type %s (RSA or ECDSA expected)", what,
				EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "unknown");
	if (EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) != 1) {
		ERR_clear_error();
		return cs_error(CS_EINVALID, "%s: the EC key has no named curve", what);
	}
	for (size_t i = 0; i < sizeof(ec_groups) / sizeof(ec_groups[0]); i++)
		if (!strcmp(group, ec_groups[i]))
			return 0;
	return cs_error(CS_EINVALID, "%s: unsupported EC curve %s (P-256, P-384 or P-521 expected)", what, group);
}

int crypto_key_from_pem(const char *pem, size_t len, const char *what, struct crypto_key **out)
{
	BIO *b = NULL;
	EVP_PKEY *pk = NULL;
	int asked = 0, rc = 0;

	if (len > INT_MAX) {
		rc = cs_error(CS_EINVALID, "%s: too large for a private key", what);
		goto out;
	}
	if (!len || !memmem(pem, len, "-----BEGIN ", 11)) {
		rc = cs_error(CS_EINVALID, "%s: not a PEM private key: no BEGIN line", what);
		goto out;
	}
	if (!(b = BIO_new_mem_buf(pem, (int)len))) {
		rc = crypto_ossl_fail(CS_ERROR, "%s: reading a private key", what);
		goto out;
	}
	/* the callback keeps OpenSSL from prompting on the terminal for an encrypted key */
	if (!(pk = PEM_read_bio_PrivateKey(b, NULL, crypto_no_passphrase, &asked))) {
		if (asked) {
			ERR_clear_error();
			rc = cs_error(CS_EINVALID, "%s: the private key is encrypted; certsync needs it unencrypted",
				      what);
		} else {
			rc = crypto_ossl_fail(CS_EINVALID, "%s: not a PEM private key", what);
		}
		goto out;
	}
	if ((rc = key_check_type(pk, what)))
		goto out;
	*out = key_wrap(pk);
	pk = NULL;
out:
	EVP_PKEY_free(pk);
	BIO_free(b);
	ERR_clear_error();
	return rc;
}

/*
 * Appends secret bytes to out so that no unwiped copy is left behind: if out
 * must grow, the old and new contents go into one fresh allocation and the
 * old one is wiped (a plain realloc would free the old bytes as they are).
 */
static int append_secret(struct buf *out, const char *p, size_t n)
{
	struct buf grown;
	size_t total = out->len + n;
	char *joined = NULL;
	int rc = 0;

	if (out->data && out->cap > total)
		return buf_append(out, p, n);
	buf_init(&grown, out->max);
	joined = xmalloc(total + 1);
	if (out->len)
		memcpy(joined, out->data, out->len);
	memcpy(joined + out->len, p, n);
	if ((rc = buf_append(&grown, joined, total))) {
		buf_wipe(&grown);
		goto out;
	}
	buf_wipe(out);
	*out = grown;
out:
	crypto_wipe(joined, total);
	free(joined);
	return rc;
}

int crypto_key_to_pem(const struct crypto_key *key, struct buf *out)
{
	BIO *b = NULL;
	char *p = NULL;
	long n;
	int rc = 0;

	/* a secure-memory BIO is cleansed when freed */
	if (!(b = BIO_new(BIO_s_secmem())) ||
	    PEM_write_bio_PKCS8PrivateKey(b, key->pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		rc = crypto_ossl_fail(CS_ERROR, "writing a private key as PEM");
		goto out;
	}
	if ((n = BIO_get_mem_data(b, &p)) <= 0) {
		rc = cs_error(CS_ERROR, "writing a private key as PEM: no output");
		goto out;
	}
	rc = append_secret(out, p, (size_t)n);
out:
	BIO_free(b);
	return rc;
}

void crypto_key_describe(const struct crypto_key *key, enum crypto_alg *alg, int *size)
{
	*alg = EVP_PKEY_is_a(key->pkey, "RSA") ? CRYPTO_RSA : CRYPTO_ECDSA;
	*size = EVP_PKEY_get_bits(key->pkey);
}

void crypto_key_free(struct crypto_key *key)
{
	if (!key)
		return;
	EVP_PKEY_free(key->pkey); /* OpenSSL clears the private components as it frees them */
	OPENSSL_cleanse(key, sizeof(*key));
	free(key);
}

void libversion_openssl(char *out, size_t n)
{
	snprintf(out, n, "%s", OpenSSL_version(OPENSSL_VERSION));
}
