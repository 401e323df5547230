/* Crypto: keys, CSRs, signing, chains, fingerprints and hashes, cross-checked with the openssl CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

static int64_t T0; /* now, set in main: the openssl CLI checks validity against the clock */

struct ca {
	struct crypto_key *key;
	struct crypto_cert *cert;
};

static void make_ca(struct ca *ca, enum crypto_alg alg, int size, const char *cn)
{
	assert_int_equal(crypto_key_generate(alg, size, &ca->key), 0);
	assert_int_equal(crypto_ca_create(ca->key, cn, T0 - 3600, T0 + 86400 * 3650, &ca->cert), 0);
}

static void free_ca(struct ca *ca)
{
	crypto_key_free(ca->key);
	crypto_cert_free(ca->cert);
}

/* Issues a leaf for names through a CSR signed by ca. */
static struct crypto_cert *issue(struct ca *ca, struct crypto_key *key, const char *const *names, size_t n)
{
	struct buf csr = BUF_INIT;
	struct crypto_cert *leaf = NULL;

	assert_int_equal(crypto_csr_create(key, names[0], names, n, &csr), 0);
	assert_non_null(strstr(csr.data, "BEGIN CERTIFICATE REQUEST"));
	assert_int_equal(crypto_sign_csr(ca->cert, ca->key, csr.data, csr.len, T0, T0 + 90 * 86400, &leaf), 0);
	buf_free(&csr);
	return leaf;
}

/* Runs a shell command and returns its stdout (trimmed). */
static char *run(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	struct buf b = BUF_INIT;
	char chunk[512];
	size_t n;

	assert_non_null(p);
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		buf_append(&b, chunk, n);
	pclose(p);
	while (b.len && isspace((unsigned char)b.data[b.len - 1]))
		b.data[--b.len] = '\0';
	return buf_detach(&b);
}

static void test_crypto_keys_round_trip_through_pem(void **state)
{
	static const struct {
		enum crypto_alg alg;
		int size;
	} kinds[] = {{CRYPTO_RSA, 2048}, {CRYPTO_RSA, 3072}, {CRYPTO_ECDSA, 256}, {CRYPTO_ECDSA, 384}};

	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct crypto_key *k = NULL, *back = NULL;
		struct buf pem = BUF_INIT;
		enum crypto_alg alg;
		int size;

		assert_int_equal(crypto_key_generate(kinds[i].alg, kinds[i].size, &k), 0);
		assert_int_equal(crypto_key_to_pem(k, &pem), 0);
		assert_non_null(strstr(pem.data, "BEGIN PRIVATE KEY"));
		assert_int_equal(crypto_key_from_pem(pem.data, pem.len, "test", &back), 0);
		crypto_key_describe(back, &alg, &size);
		assert_int_equal(alg, kinds[i].alg);
		assert_int_equal(size, kinds[i].size);
		buf_wipe(&pem);
		crypto_key_free(k);
		crypto_key_free(back);
	}
}

static void test_crypto_refuses_unsupported_keys(void **state)
{
	struct crypto_key *k = NULL;

	(void)state;
	assert_int_equal(crypto_key_generate(CRYPTO_RSA, 1024, &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "unsupported key: RSA 1024");
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 521, &k), CS_EINVALID);
	assert_int_equal(crypto_key_from_pem("garbage", 7, "tls.key", &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "tls.key: not a PEM private key");
}

static void test_crypto_signed_leaf_has_all_sans_and_verifies(void **state)
{
	const char *names[] = {"www.example.com", "example.com", "*.api.example.com"};
	struct ca ca, other;
	struct crypto_key *key = NULL, *stranger = NULL;
	struct crypto_cert *leaf;
	struct crypto_cert_info info;

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 256, "test CA");
	make_ca(&other, CRYPTO_ECDSA, 256, "other CA");
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &stranger), 0);
	leaf = issue(&ca, key, names, 3);
	assert_int_equal(crypto_cert_info(leaf, &info), 0);
	assert_int_equal(info.n_dns, 3);
	assert_string_equal(info.dns_names[2], "*.api.example.com");
	assert_string_equal(info.subject_cn, "www.example.com");
	assert_string_equal(info.issuer_cn, "test CA");
	assert_int_equal(info.not_before, T0);
	assert_int_equal(info.not_after, T0 + 90 * 86400);
	assert_false(info.is_ca);
	assert_true(strlen(info.serial) > 0);
	assert_int_equal(strlen(info.fingerprint), 64);
	assert_true(crypto_cert_signed_by(leaf, ca.cert));
	assert_false(crypto_cert_signed_by(leaf, other.cert));
	assert_true(crypto_cert_matches_key(leaf, key));
	assert_false(crypto_cert_matches_key(leaf, stranger));
	crypto_cert_info_free(&info);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	crypto_key_free(stranger);
	free_ca(&ca);
	free_ca(&other);
}

static void test_crypto_tampered_csr_is_refused(void **state)
{
	const char *names[] = {"www.example.com"};
	struct ca ca;
	struct crypto_key *key = NULL;
	struct crypto_cert *leaf = NULL;
	struct buf csr = BUF_INIT;
	char *b64;

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 256, "test CA");
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	assert_int_equal(crypto_csr_create(key, names[0], names, 1, &csr), 0);
	/* flip a character inside the base64 body near the end (the signature) */
	b64 = strstr(csr.data, "-----END") - 10;
	*b64 = *b64 == 'A' ? 'B' : 'A';
	assert_int_not_equal(crypto_sign_csr(ca.cert, ca.key, csr.data, csr.len, T0, T0 + 86400, &leaf), 0);
	assert_null(leaf);
	assert_int_equal(crypto_sign_csr(ca.cert, ca.key, "nope", 4, T0, T0 + 86400, &leaf), CS_EINVALID);
	buf_free(&csr);
	crypto_key_free(key);
	free_ca(&ca);
}

static void test_crypto_openssl_cli_agrees(void **state)
{
	const char *names[] = {"rsa.example.com", "alt.example.com"};
	char *dir = test_mkdtemp();
	struct ca ca;
	struct crypto_key *key = NULL;
	struct crypto_cert *leaf;
	struct crypto_cert_info info;
	struct buf a = BUF_INIT, b = BUF_INIT;
	char *leafp, *cap, *cmd, *out, want[100];

	(void)state;
	make_ca(&ca, CRYPTO_RSA, 2048, "rsa CA");
	assert_int_equal(crypto_key_generate(CRYPTO_RSA, 2048, &key), 0);
	leaf = issue(&ca, key, names, 2);
	crypto_cert_to_pem(leaf, &a);
	crypto_cert_to_pem(ca.cert, &b);
	leafp = test_write(dir, "leaf.pem", a.data, 0644);
	cap = test_write(dir, "ca.pem", b.data, 0644);
	cmd = xasprintf("openssl verify -CAfile %s %s 2>&1", cap, leafp);
	out = run(cmd);
	assert_non_null(strstr(out, ": OK"));
	free(cmd);
	free(out);
	cmd = xasprintf("openssl x509 -in %s -noout -fingerprint -sha256 | tr -d ':' | tr 'A-F' 'a-f'", leafp);
	out = run(cmd);
	crypto_cert_info(leaf, &info);
	snprintf(want, sizeof(want), "sha256 fingerprint=%s", info.fingerprint);
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	assert_string_equal(out, want);
	free(cmd);
	free(out);
	crypto_cert_info_free(&info);
	buf_free(&a);
	buf_free(&b);
	free(leafp);
	free(cap);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	free_ca(&ca);
	test_rmdir(dir);
}

static void test_crypto_parses_chains_with_and_without_newlines(void **state)
{
	struct ca a, b, c;
	struct buf pem = BUF_INIT, glued = BUF_INIT;
	struct crypto_cert **v = NULL;
	size_t n = 0;

	(void)state;
	make_ca(&a, CRYPTO_ECDSA, 256, "A");
	make_ca(&b, CRYPTO_ECDSA, 256, "B");
	make_ca(&c, CRYPTO_ECDSA, 256, "C");
	crypto_cert_to_pem(a.cert, &pem);
	crypto_cert_to_pem(b.cert, &pem);
	crypto_cert_to_pem(c.cert, &pem);
	assert_int_equal(crypto_certs_from_pem(pem.data, pem.len, "chain", &v, &n), 0);
	assert_int_equal(n, 3);
	crypto_certs_free(v, n);
	/* a chain whose last entry lacks the trailing newline (as DNSimple returns them) */
	buf_append(&glued, pem.data, pem.len - 1);
	assert_int_equal(crypto_certs_from_pem(glued.data, glued.len, "chain", &v, &n), 0);
	assert_int_equal(n, 3);
	crypto_certs_free(v, n);
	assert_int_equal(crypto_certs_from_pem("junk", 4, "chain.pem", &v, &n), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "chain.pem: no PEM certificate found");
	buf_free(&pem);
	buf_free(&glued);
	free_ca(&a);
	free_ca(&b);
	free_ca(&c);
}

static void test_crypto_self_signed_leaf(void **state)
{
	const char *names[] = {"self.example.com"};
	struct crypto_key *key = NULL;
	struct crypto_cert *cert = NULL;
	struct crypto_cert_info info;

	(void)state;
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 384, &key), 0);
	assert_int_equal(crypto_self_signed(key, names[0], names, 1, T0, T0 + 86400, &cert), 0);
	assert_true(crypto_cert_signed_by(cert, cert));
	crypto_cert_info(cert, &info);
	assert_string_equal(info.issuer_cn, "self.example.com");
	crypto_cert_info_free(&info);
	crypto_cert_free(cert);
	crypto_key_free(key);
}

static void test_crypto_hashes_and_ids(void **state)
{
	unsigned char mac[32];
	char hex[65], uuid[37];
	struct crypto_sha256_ctx *c;

	(void)state;
	crypto_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	c = crypto_sha256_begin();
	crypto_sha256_update(c, "a", 1);
	crypto_sha256_update(c, "bc", 2);
	crypto_sha256_end_hex(c, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	crypto_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	assert_int_equal(crypto_uuid(uuid), 0);
	assert_int_equal(strlen(uuid), 36);
	assert_int_equal(uuid[14], '4');
	assert_true(strchr("89ab", uuid[19]) != NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crypto_keys_round_trip_through_pem),
		cmocka_unit_test(test_crypto_refuses_unsupported_keys),
		cmocka_unit_test(test_crypto_signed_leaf_has_all_sans_and_verifies),
		cmocka_unit_test(test_crypto_tampered_csr_is_refused),
		cmocka_unit_test(test_crypto_openssl_cli_agrees),
		cmocka_unit_test(test_crypto_parses_chains_with_and_without_newlines),
		cmocka_unit_test(test_crypto_self_signed_leaf),
		cmocka_unit_test(test_crypto_hashes_and_ids),
	};

	T0 = util_now() - 60;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
