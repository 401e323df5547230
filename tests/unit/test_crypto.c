/* Crypto: keys, CSRs, signing, chains, certificate facts and hashes, cross-checked with the openssl CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "testutil.h"

#define DAY 86400

static int64_t T0; /* a minute ago, set in main: the openssl CLI checks validity against the clock */

struct ca {
	struct crypto_key *key;
	struct crypto_cert *cert;
};

static void make_ca(struct ca *ca, enum crypto_alg alg, int size, const char *cn)
{
	ca->key = NULL;
	ca->cert = NULL;
	assert_int_equal(crypto_key_generate(alg, size, &ca->key), 0);
	assert_int_equal(crypto_ca_create(ca->key, cn, T0 - 3600, T0 + 3650 * DAY, &ca->cert), 0);
}

static void free_ca(struct ca *ca)
{
	crypto_key_free(ca->key);
	crypto_cert_free(ca->cert);
}

static struct crypto_key *new_key(enum crypto_alg alg, int size)
{
	struct crypto_key *k = NULL;

	assert_int_equal(crypto_key_generate(alg, size, &k), 0);
	assert_non_null(k);
	return k;
}

/* Issues a leaf for names (CN = names[0]) through a CSR signed by ca, valid [T0, T0 + 90 days]. */
static struct crypto_cert *issue(const struct ca *ca, const struct crypto_key *key, const char *const *names, size_t n)
{
	struct buf csr = BUF_INIT;
	struct crypto_cert *leaf = NULL;

	assert_int_equal(crypto_csr_create(key, names[0], names, n, &csr), 0);
	assert_non_null(strstr(csr.data, "-----BEGIN CERTIFICATE REQUEST-----"));
	assert_int_equal(crypto_sign_csr(ca->cert, ca->key, csr.data, csr.len, T0, T0 + 90 * DAY, &leaf), 0);
	assert_non_null(leaf);
	buf_free(&csr);
	return leaf;
}

static char *cert_pem(const struct crypto_cert *c)
{
	struct buf b = BUF_INIT;

	assert_int_equal(crypto_cert_to_pem(c, &b), 0);
	assert_true(b.len > 0 && b.data[b.len - 1] == '\n');
	return buf_detach(&b);
}

/* Writes a certificate as PEM into dir/name; returns the path (caller frees). */
static char *write_cert(const char *dir, const char *name, const struct crypto_cert *c)
{
	char *pem = cert_pem(c);
	char *path = test_write(dir, name, pem, 0644);

	free(pem);
	return path;
}

/* Runs a shell command (stderr folded in) and returns its output with trailing whitespace trimmed. */
static char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *run(const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	char chunk[512], *cmd, *full;
	va_list ap;
	FILE *p;
	size_t n;

	va_start(ap, fmt);
	cmd = xvasprintf(fmt, ap);
	va_end(ap);
	full = xasprintf("%s 2>&1", cmd);
	assert_non_null(p = popen(full, "r"));
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		assert_int_equal(buf_append(&b, chunk, n), 0);
	pclose(p);
	free(full);
	free(cmd);
	while (b.len && isspace((unsigned char)b.data[b.len - 1]))
		b.data[--b.len] = '\0';
	return buf_detach(&b);
}

/* Lowercases s and drops every character in `drop`, in place. */
static char *squash(char *s, const char *drop)
{
	char *w = s;

	for (char *r = s; *r; r++)
		if (!strchr(drop, *r))
			*w++ = (char)tolower((unsigned char)*r);
	*w = '\0';
	return s;
}

static void assert_lower_hex(const char *s)
{
	assert_true(*s);
	for (; *s; s++)
		assert_non_null(strchr("0123456789abcdef", *s));
}

/* ---------- keys ---------- */

static void test_crypto_each_key_kind_round_trips_through_pkcs8_pem(void **state)
{
	static const struct {
		enum crypto_alg alg;
		int size;
	} kinds[] = {
		{CRYPTO_RSA, 2048}, {CRYPTO_RSA, 3072}, {CRYPTO_RSA, 4096}, {CRYPTO_ECDSA, 256}, {CRYPTO_ECDSA, 384}};

	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct crypto_key *k = new_key(kinds[i].alg, kinds[i].size), *back = NULL;
		struct buf pem = BUF_INIT, again = BUF_INIT;
		enum crypto_alg alg;
		int size;

		crypto_key_describe(k, &alg, &size);
		assert_int_equal(alg, kinds[i].alg);
		assert_int_equal(size, kinds[i].size);
		assert_int_equal(crypto_key_to_pem(k, &pem), 0);
		assert_true(strncmp(pem.data, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
		assert_int_equal(crypto_key_from_pem(pem.data, pem.len, "test", &back), 0);
		crypto_key_describe(back, &alg, &size);
		assert_int_equal(alg, kinds[i].alg);
		assert_int_equal(size, kinds[i].size);
		assert_int_equal(crypto_key_to_pem(back, &again), 0);
		assert_int_equal(again.len, pem.len);
		assert_memory_equal(again.data, pem.data, pem.len);
		buf_wipe(&pem);
		buf_wipe(&again);
		crypto_key_free(k);
		crypto_key_free(back);
	}
}

static void test_crypto_key_pem_appends_to_what_the_buffer_holds(void **state)
{
	struct crypto_key *k = new_key(CRYPTO_ECDSA, 256);
	struct buf b = BUF_INIT, capped = BUF_INIT;

	(void)state;
	assert_int_equal(buf_puts(&b, "prefix\n"), 0);
	assert_int_equal(crypto_key_to_pem(k, &b), 0);
	assert_true(strncmp(b.data, "prefix\n-----BEGIN PRIVATE KEY-----\n", 35) == 0);
	assert_non_null(strstr(b.data, "-----END PRIVATE KEY-----\n"));
	assert_int_equal(strlen(b.data), b.len);
	buf_init(&capped, 64);
	assert_int_equal(crypto_key_to_pem(k, &capped), CS_EINVALID);
	assert_int_equal(capped.len, 0);
	buf_wipe(&b);
	buf_wipe(&capped);
	crypto_key_free(k);
}

static void test_crypto_refuses_unsupported_key_sizes(void **state)
{
	struct crypto_key *k = NULL;

	(void)state;
	assert_int_equal(crypto_key_generate(CRYPTO_RSA, 1024, &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "unsupported key: RSA 1024");
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 521, &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "unsupported key: ECDSA 521");
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 2048, &k), CS_EINVALID);
	assert_int_equal(crypto_key_generate(CRYPTO_RSA, 256, &k), CS_EINVALID);
	assert_int_equal(crypto_key_generate(CRYPTO__MAX, 256, &k), CS_EINVALID);
	assert_null(k);
}

static void test_crypto_reads_pkcs1_and_sec1_keys(void **state)
{
	char *dir = test_mkdtemp();
	char *rsa = xasprintf("%s/rsa.pem", dir), *ec = xasprintf("%s/ec.pem", dir);
	char *out, *pem;
	struct crypto_key *k = NULL;
	enum crypto_alg alg;
	int size;

	(void)state;
	out = run("openssl genrsa -traditional -out %s 2048 2>&1 && cat %s", rsa, rsa);
	pem = strstr(out, "-----BEGIN RSA PRIVATE KEY-----");
	assert_non_null(pem);
	assert_int_equal(crypto_key_from_pem(pem, strlen(pem), "rsa.pem", &k), 0);
	crypto_key_describe(k, &alg, &size);
	assert_int_equal(alg, CRYPTO_RSA);
	assert_int_equal(size, 2048);
	crypto_key_free(k);
	k = NULL;
	crypto_wipe(out, strlen(out));
	free(out);
	out = run("openssl ecparam -name secp384r1 -genkey -noout -out %s 2>&1 && cat %s", ec, ec);
	pem = strstr(out, "-----BEGIN EC PRIVATE KEY-----");
	assert_non_null(pem);
	assert_int_equal(crypto_key_from_pem(pem, strlen(pem), "ec.pem", &k), 0);
	crypto_key_describe(k, &alg, &size);
	assert_int_equal(alg, CRYPTO_ECDSA);
	assert_int_equal(size, 384);
	crypto_key_free(k);
	crypto_wipe(out, strlen(out));
	free(out);
	free(rsa);
	free(ec);
	test_rmdir(dir);
}

static void test_crypto_refuses_garbage_encrypted_and_foreign_keys(void **state)
{
	static const char broken[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
	struct crypto_key *k = NULL;
	char *out;

	(void)state;
	assert_int_equal(crypto_key_from_pem("garbage", 7, "tls.key", &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "tls.key: not a PEM private key: no BEGIN line");
	assert_int_equal(crypto_key_from_pem("", 0, "empty.key", &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "empty.key: not a PEM private key: no BEGIN line");
	assert_int_equal(crypto_key_from_pem(broken, strlen(broken), "tls.key", &k), CS_EINVALID);
	assert_true(strncmp(cs_errmsg(), "tls.key: not a PEM private key: ", 32) == 0);
	assert_true(strlen(cs_errmsg()) > 32); /* OpenSSL's reason follows */

	/* an encrypted key is refused, without prompting for a passphrase */
	out = run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 -pass pass:secret "
		  "</dev/null");
	assert_non_null(strstr(out, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
	assert_int_equal(crypto_key_from_pem(out, strlen(out), "enc.key", &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "enc.key: the private key is encrypted; certsync needs it unencrypted");
	free(out);

	out = run("openssl genpkey -algorithm ED25519");
	assert_non_null(strstr(out, "-----BEGIN PRIVATE KEY-----"));
	assert_int_equal(crypto_key_from_pem(out, strlen(out), "ed.key", &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "ed.key: unsupported private key type ED25519 (RSA or ECDSA expected)");
	free(out);

	out = run("openssl ecparam -name secp256k1 -genkey -noout");
	assert_non_null(strstr(out, "-----BEGIN EC PRIVATE KEY-----"));
	assert_int_equal(crypto_key_from_pem(out, strlen(out), "k1.key", &k), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "k1.key: unsupported EC curve secp256k1 (P-256, P-384 or P-521 expected)");
	free(out);
	assert_null(k);
}

/* ---------- CSRs and signing ---------- */

static void test_crypto_csr_carries_the_cn_and_every_san(void **state)
{
	const char *names[] = {"www.example.com", "example.com", "*.api.example.com"};
	char *dir = test_mkdtemp();
	struct crypto_key *key = new_key(CRYPTO_RSA, 2048);
	struct buf csr = BUF_INIT;
	struct ca ca;
	struct crypto_cert *leaf = NULL;
	struct crypto_cert_info info;
	char *path, *out;

	(void)state;
	assert_int_equal(crypto_csr_create(key, names[0], names, 3, &csr), 0);
	path = test_write(dir, "req.pem", csr.data, 0644);
	out = run("openssl req -in %s -noout -verify -text", path);
	assert_non_null(strstr(out, "verify OK"));
	assert_non_null(strstr(out, "Subject: CN = www.example.com"));
	assert_non_null(strstr(out, "DNS:www.example.com, DNS:example.com, DNS:*.api.example.com"));
	assert_non_null(strstr(out, "sha256WithRSAEncryption"));
	free(out);

	/* the CA copies exactly those names into the certificate */
	make_ca(&ca, CRYPTO_ECDSA, 256, "test CA");
	assert_int_equal(crypto_sign_csr(ca.cert, ca.key, csr.data, csr.len, T0, T0 + DAY, &leaf), 0);
	assert_int_equal(crypto_cert_info(leaf, &info), 0);
	assert_string_equal(info.subject_cn, "www.example.com");
	assert_int_equal(info.n_dns, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(info.dns_names[i], names[i]);
	crypto_cert_info_free(&info);
	crypto_cert_free(leaf);
	free_ca(&ca);
	free(path);
	buf_free(&csr);
	crypto_key_free(key);
	test_rmdir(dir);
}

static void test_crypto_signed_leaf_verifies_against_its_ca_only(void **state)
{
	const char *names[] = {"www.example.com"};
	struct ca ca, other;
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf;

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 256, "test CA");
	make_ca(&other, CRYPTO_ECDSA, 256, "test CA"); /* same name, different key */
	leaf = issue(&ca, key, names, 1);
	assert_true(crypto_cert_signed_by(leaf, ca.cert));
	assert_false(crypto_cert_signed_by(leaf, other.cert));
	assert_false(crypto_cert_signed_by(leaf, leaf));
	assert_true(crypto_cert_signed_by(ca.cert, ca.cert));
	assert_false(crypto_cert_signed_by(ca.cert, other.cert));
	crypto_cert_free(leaf);
	crypto_key_free(key);
	free_ca(&ca);
	free_ca(&other);
}

static void test_crypto_leaf_matches_its_key_only(void **state)
{
	const char *names[] = {"www.example.com"};
	struct ca ca;
	struct crypto_key *key = new_key(CRYPTO_RSA, 2048), *stranger = new_key(CRYPTO_RSA, 2048);
	struct crypto_key *ec = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf;

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 384, "test CA");
	leaf = issue(&ca, key, names, 1);
	assert_true(crypto_cert_matches_key(leaf, key));
	assert_false(crypto_cert_matches_key(leaf, stranger));
	assert_false(crypto_cert_matches_key(leaf, ec));
	assert_false(crypto_cert_matches_key(leaf, ca.key));
	assert_true(crypto_cert_matches_key(ca.cert, ca.key));
	crypto_cert_free(leaf);
	crypto_key_free(key);
	crypto_key_free(stranger);
	crypto_key_free(ec);
	free_ca(&ca);
}

/* An openssl CLI date ("notAfter=2026-11-23 05:31:03Z", -dateopt iso_8601) as unix seconds. */
static int64_t cli_date(const char *path, const char *which)
{
	char *out = run("openssl x509 -in %s -noout -%s -dateopt iso_8601", path, which);
	char *eq = strchr(out, '='), *sp;
	int64_t t = 0;

	assert_non_null(eq);
	if ((sp = strchr(eq, ' ')))
		*sp = 'T';
	assert_int_equal(util_parse_time(eq + 1, &t), 0);
	free(out);
	return t;
}

static void test_crypto_info_fields_agree_with_the_openssl_cli(void **state)
{
	const char *names[] = {"info.example.com", "alt.example.com"};
	char *dir = test_mkdtemp();
	struct ca ca;
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf;
	struct crypto_cert_info info, cainfo;
	char *path, *out, *serial, *want;

	(void)state;
	make_ca(&ca, CRYPTO_RSA, 2048, "Info Test CA");
	leaf = issue(&ca, key, names, 2);
	assert_int_equal(crypto_cert_info(leaf, &info), 0);
	assert_int_equal(info.not_before, T0);
	assert_int_equal(info.not_after, T0 + 90 * DAY);
	assert_string_equal(info.subject_cn, "info.example.com");
	assert_string_equal(info.issuer_cn, "Info Test CA");
	assert_false(info.is_ca);
	assert_int_equal(info.n_dns, 2);
	assert_string_equal(info.dns_names[1], "alt.example.com");
	assert_lower_hex(info.serial);
	assert_true(info.serial[0] != '0');
	assert_true(strlen(info.serial) >= 16); /* 128 random bits: short only with negligible luck */
	assert_int_equal(strlen(info.fingerprint), 64);
	assert_lower_hex(info.fingerprint);

	path = write_cert(dir, "leaf.pem", leaf);
	out = run("openssl x509 -in %s -noout -fingerprint -sha256", path);
	want = xasprintf("sha256 fingerprint=%s", info.fingerprint);
	assert_string_equal(squash(out, ":"), want);
	free(want);
	free(out);
	out = run("openssl x509 -in %s -noout -serial", path);
	serial = squash(out, "") + strlen("serial=");
	while (serial[0] == '0' && serial[1])
		serial++;
	assert_string_equal(serial, info.serial);
	free(out);
	assert_int_equal(cli_date(path, "startdate"), info.not_before);
	assert_int_equal(cli_date(path, "enddate"), info.not_after);

	assert_int_equal(crypto_cert_info(ca.cert, &cainfo), 0);
	assert_true(cainfo.is_ca);
	assert_string_equal(cainfo.subject_cn, "Info Test CA");
	assert_string_equal(cainfo.issuer_cn, "Info Test CA");
	assert_int_equal(cainfo.n_dns, 0);
	assert_string_not_equal(cainfo.serial, info.serial);
	assert_string_not_equal(cainfo.fingerprint, info.fingerprint);

	crypto_cert_info_free(&cainfo);
	crypto_cert_info_free(&info);
	crypto_cert_info_free(&info); /* a second free is harmless */
	free(path);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	free_ca(&ca);
	test_rmdir(dir);
}

/* openssl verify (strict, TLS server purpose) accepts the leaf; the extensions are the TLS leaf profile. */
static void check_cli_verify(enum crypto_alg alg, int ca_size, int leaf_size, const char *sigalg)
{
	const char *names[] = {"leaf.example.com", "www.leaf.example.com"};
	char *dir = test_mkdtemp();
	struct ca ca, other;
	struct crypto_key *key = new_key(alg, leaf_size);
	struct crypto_cert *leaf;
	char *capath, *otherpath, *leafpath, *out;

	make_ca(&ca, alg, ca_size, "cli CA");
	make_ca(&other, alg, ca_size, "cli CA");
	leaf = issue(&ca, key, names, 2);
	capath = write_cert(dir, "ca.pem", ca.cert);
	otherpath = write_cert(dir, "other.pem", other.cert);
	leafpath = write_cert(dir, "leaf.pem", leaf);
	out = run("openssl verify -x509_strict -purpose sslserver -CAfile %s %s", capath, leafpath);
	assert_string_equal(out + strlen(leafpath), ": OK");
	free(out);
	out = run("openssl verify -x509_strict -purpose sslclient -CAfile %s %s", capath, leafpath);
	assert_string_equal(out + strlen(leafpath), ": OK");
	free(out);
	out = run("openssl verify -CAfile %s %s", otherpath, leafpath);
	assert_null(strstr(out, ": OK"));
	free(out);

	out = run("openssl x509 -in %s -noout -text", leafpath);
	assert_non_null(strstr(out, "X509v3 Basic Constraints: critical\n                CA:FALSE"));
	assert_non_null(strstr(out, "X509v3 Key Usage: critical"));
	assert_non_null(
		strstr(out, alg == CRYPTO_RSA ? "Digital Signature, Key Encipherment\n" : "Digital Signature\n"));
	assert_non_null(strstr(out, "TLS Web Server Authentication, TLS Web Client Authentication"));
	assert_non_null(strstr(out, "X509v3 Subject Key Identifier"));
	assert_non_null(strstr(out, "X509v3 Authority Key Identifier"));
	assert_non_null(strstr(out, "DNS:leaf.example.com, DNS:www.leaf.example.com"));
	assert_non_null(strstr(out, "Subject: CN = leaf.example.com"));
	assert_non_null(strstr(out, "Issuer: CN = cli CA"));
	assert_non_null(strstr(out, sigalg));
	free(out);

	out = run("openssl x509 -in %s -noout -text", capath);
	assert_non_null(strstr(out, "X509v3 Basic Constraints: critical\n                CA:TRUE"));
	assert_non_null(strstr(out, "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"));
	assert_non_null(strstr(out, "X509v3 Subject Key Identifier"));
	assert_non_null(strstr(out, "X509v3 Authority Key Identifier"));
	free(out);

	free(capath);
	free(otherpath);
	free(leafpath);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	free_ca(&ca);
	free_ca(&other);
	test_rmdir(dir);
}

static void test_crypto_openssl_cli_verifies_an_rsa_leaf(void **state)
{
	(void)state;
	check_cli_verify(CRYPTO_RSA, 2048, 2048, "Signature Algorithm: sha256WithRSAEncryption");
}

static void test_crypto_openssl_cli_verifies_an_ecdsa_leaf(void **state)
{
	(void)state;
	check_cli_verify(CRYPTO_ECDSA, 256, 256, "Signature Algorithm: ecdsa-with-SHA256");
}

static void test_crypto_p384_ca_signs_with_sha384(void **state)
{
	(void)state;
	check_cli_verify(CRYPTO_ECDSA, 384, 256, "Signature Algorithm: ecdsa-with-SHA384");
}

/* An operator's CA certificate without a subjectKeyIdentifier (made by the openssl CLI) still signs. */
static void test_crypto_signs_with_an_operator_ca_lacking_a_key_identifier(void **state)
{
	const char *names[] = {"legacy.example.com"};
	char *dir = test_mkdtemp();
	char *cnf = test_write(dir, "ca.cnf",
			       "[req]\ndistinguished_name=dn\nx509_extensions=v3\nprompt=no\n[dn]\nCN=legacy CA\n"
			       "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n"
			       "subjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n",
			       0644);
	char *out, *leafpath, *capath;
	struct ca ca = {NULL, NULL};
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf;

	(void)state;
	out = run("cd %s && openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
		  "-config ca.cnf -days 10 -out ca.pem >/dev/null && cat ca.key ca.pem",
		  dir);
	assert_int_equal(crypto_key_from_pem(out, strlen(out), "ca.key", &ca.key), 0);
	assert_int_equal(crypto_cert_from_pem(out, strlen(out), "ca.pem", &ca.cert), 0);
	crypto_wipe(out, strlen(out));
	free(out);
	out = run("openssl x509 -in %s/ca.pem -noout -text", dir);
	assert_null(strstr(out, "Subject Key Identifier"));
	free(out);

	leaf = issue(&ca, key, names, 1);
	assert_true(crypto_cert_signed_by(leaf, ca.cert));
	leafpath = write_cert(dir, "leaf.pem", leaf);
	capath = xasprintf("%s/ca.pem", dir);
	out = run("openssl verify -purpose sslserver -CAfile %s %s", capath, leafpath);
	assert_string_equal(out + strlen(leafpath), ": OK");
	free(out);
	out = run("openssl x509 -in %s -noout -text", leafpath);
	assert_non_null(strstr(out, "X509v3 Authority Key Identifier"));
	assert_non_null(strstr(out, "DirName:/CN=legacy CA"));
	free(out);
	free(capath);
	free(leafpath);
	free(cnf);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	free_ca(&ca);
	test_rmdir(dir);
}

static void test_crypto_self_signed_leaf_is_its_own_issuer(void **state)
{
	const char *names[] = {"self.example.com", "other.example.com"};
	char *dir = test_mkdtemp();
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 384), *stranger = new_key(CRYPTO_ECDSA, 384);
	struct crypto_cert *cert = NULL;
	struct crypto_cert_info info;
	char *path, *out;

	(void)state;
	assert_int_equal(crypto_self_signed(key, names[0], names, 2, T0, T0 + DAY, &cert), 0);
	assert_true(crypto_cert_signed_by(cert, cert));
	assert_true(crypto_cert_matches_key(cert, key));
	assert_false(crypto_cert_matches_key(cert, stranger));
	assert_int_equal(crypto_cert_info(cert, &info), 0);
	assert_string_equal(info.subject_cn, "self.example.com");
	assert_string_equal(info.issuer_cn, "self.example.com");
	assert_false(info.is_ca);
	assert_int_equal(info.n_dns, 2);
	assert_string_equal(info.dns_names[1], "other.example.com");
	assert_int_equal(info.not_before, T0);
	assert_int_equal(info.not_after, T0 + DAY);
	path = write_cert(dir, "self.pem", cert);
	out = run("openssl x509 -in %s -noout -text", path);
	assert_non_null(strstr(out, "CA:FALSE"));
	assert_non_null(strstr(out, "TLS Web Server Authentication"));
	assert_non_null(strstr(out, "ecdsa-with-SHA384"));
	free(out);
	free(path);
	crypto_cert_info_free(&info);
	crypto_cert_free(cert);
	crypto_key_free(key);
	crypto_key_free(stranger);
	test_rmdir(dir);
}

/* Changes one base64 digit a few bytes before the end of the DER: inside the signature value. */
static void flip_signature_bit(char *pem)
{
	char *p = strstr(pem, "-----END");
	int seen = 0;

	assert_non_null(p);
	while (--p > pem && seen < 6)
		if (*p != '\n' && *p != '\r' && *p != '=')
			seen++;
	p++;
	*p = *p == 'A' ? 'B' : 'A';
}

static void test_crypto_tampered_csr_is_refused(void **state)
{
	const char *names[] = {"www.example.com"};
	struct ca ca;
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf = NULL;
	struct buf csr = BUF_INIT;

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 256, "test CA");
	assert_int_equal(crypto_csr_create(key, names[0], names, 1, &csr), 0);
	flip_signature_bit(csr.data);
	assert_int_equal(crypto_sign_csr(ca.cert, ca.key, csr.data, csr.len, T0, T0 + DAY, &leaf), CS_EINVALID);
	assert_true(strncmp(cs_errmsg(), "the CSR's signature does not verify: ", 37) == 0);
	assert_null(leaf);
	assert_int_equal(crypto_sign_csr(ca.cert, ca.key, "nope", 4, T0, T0 + DAY, &leaf), CS_EINVALID);
	assert_true(strncmp(cs_errmsg(), "the CSR cannot be parsed: ", 26) == 0);
	assert_null(leaf);
	buf_free(&csr);
	crypto_key_free(key);
	free_ca(&ca);
}

static void test_crypto_sign_csr_refuses_a_wrong_ca_key_a_leaf_issuer_and_inverted_validity(void **state)
{
	const char *names[] = {"www.example.com"};
	struct ca ca;
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf = NULL, *got = NULL;
	struct buf csr = BUF_INIT;

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 256, "test CA");
	assert_int_equal(crypto_csr_create(key, names[0], names, 1, &csr), 0);
	assert_int_equal(crypto_sign_csr(ca.cert, key, csr.data, csr.len, T0, T0 + DAY, &got), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "the CA key does not match the CA certificate");
	leaf = issue(&ca, key, names, 1);
	assert_int_equal(crypto_sign_csr(leaf, key, csr.data, csr.len, T0, T0 + DAY, &got), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "the issuing certificate is not a CA certificate");
	assert_int_equal(crypto_sign_csr(ca.cert, ca.key, csr.data, csr.len, T0, T0, &got), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "validity ends"));
	assert_int_equal(crypto_self_signed(key, names[0], names, 1, T0 + DAY, T0, &got), CS_EINVALID);
	assert_int_equal(crypto_ca_create(key, "x", T0 + DAY, T0, &got), CS_EINVALID);
	assert_null(got);
	crypto_cert_free(leaf);
	buf_free(&csr);
	crypto_key_free(key);
	free_ca(&ca);
}

static void test_crypto_refuses_a_common_name_over_64_characters(void **state)
{
	char cn[80];
	const char *names[] = {cn};
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *c = NULL;
	struct buf csr = BUF_INIT;

	(void)state;
	memset(cn, 'a', 65);
	memcpy(cn + 65, ".example.com", 13);
	assert_int_equal(crypto_csr_create(key, cn, names, 1, &csr), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "is longer than 64 characters"));
	assert_int_equal(csr.len, 0);
	assert_int_equal(crypto_self_signed(key, cn, names, 1, T0, T0 + DAY, &c), CS_EINVALID);
	assert_null(c);
	/* 64 characters exactly is fine */
	memcpy(cn + 52, ".example.com", 13);
	assert_int_equal(crypto_self_signed(key, cn, names, 1, T0, T0 + DAY, &c), 0);
	crypto_cert_free(c);
	crypto_key_free(key);
}

/* ---------- PEM certificates and chains ---------- */

/* Parses text as a chain and checks the certificates are A, B, C in that order. */
static void check_chain_abc(const char *text)
{
	static const char *const cns[] = {"A", "B", "C"};
	struct crypto_cert **v = NULL, *first = NULL;
	struct crypto_cert_info info;
	size_t n = 0;

	assert_int_equal(crypto_certs_from_pem(text, strlen(text), "chain", &v, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(crypto_cert_info(v[i], &info), 0);
		assert_string_equal(info.subject_cn, cns[i]);
		crypto_cert_info_free(&info);
	}
	assert_int_equal(crypto_cert_from_pem(text, strlen(text), "chain", &first), 0);
	assert_int_equal(crypto_cert_info(first, &info), 0);
	assert_string_equal(info.subject_cn, "A");
	crypto_cert_info_free(&info);
	crypto_cert_free(first);
	crypto_certs_free(v, n);
}

/* Removes every newline that directly follows "-----END CERTIFICATE-----". */
static char *glue(const char *pem)
{
	struct buf b = BUF_INIT;
	const char *p = pem, *e;

	while ((e = strstr(p, "-----END CERTIFICATE-----\n"))) {
		buf_append(&b, p, (size_t)(e - p) + 25);
		p = e + 26;
	}
	buf_puts(&b, p);
	return buf_detach(&b);
}

static void test_crypto_parses_chains_with_and_without_newlines(void **state)
{
	struct ca a, b, c;
	struct buf pem = BUF_INIT, noisy = BUF_INIT, crlf = BUF_INIT;
	char *glued;

	(void)state;
	make_ca(&a, CRYPTO_ECDSA, 256, "A");
	make_ca(&b, CRYPTO_ECDSA, 256, "B");
	make_ca(&c, CRYPTO_ECDSA, 256, "C");
	crypto_cert_to_pem(a.cert, &pem);
	crypto_cert_to_pem(b.cert, &pem);
	crypto_cert_to_pem(c.cert, &pem);
	check_chain_abc(pem.data);

	/* no newline between END and the next BEGIN, nor after the last END */
	glued = glue(pem.data);
	assert_null(strstr(glued, "-----END CERTIFICATE-----\n"));
	assert_non_null(strstr(glued, "-----END CERTIFICATE----------BEGIN CERTIFICATE-----"));
	check_chain_abc(glued);

	/* text around and between the blocks, CRLF line ends, blank lines */
	buf_puts(&noisy, "subject=CN = A\r\n");
	crypto_cert_to_pem(a.cert, &noisy);
	buf_puts(&noisy, "\n\n# intermediate\n");
	crypto_cert_to_pem(b.cert, &noisy);
	crypto_cert_to_pem(c.cert, &crlf);
	for (size_t i = 0; i < crlf.len; i++)
		buf_puts(&noisy, crlf.data[i] == '\n' ? "\r\n" : (char[]){crlf.data[i], '\0'});
	buf_puts(&noisy, "trailing words");
	check_chain_abc(noisy.data);

	free(glued);
	buf_free(&pem);
	buf_free(&noisy);
	buf_free(&crlf);
	free_ca(&a);
	free_ca(&b);
	free_ca(&c);
}

static void test_crypto_refuses_garbage_and_broken_certificate_pem(void **state)
{
	static const char bogus[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
	struct ca a;
	struct buf pem = BUF_INIT;
	struct crypto_cert **v = NULL, *one = NULL;
	size_t n = 0;
	char *body;

	(void)state;
	assert_int_equal(crypto_certs_from_pem("junk", 4, "chain.pem", &v, &n), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "chain.pem: no PEM certificate found");
	assert_int_equal(crypto_cert_from_pem("", 0, "tls.crt", &one), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "tls.crt: no PEM certificate found");
	assert_int_equal(crypto_cert_from_pem(bogus, strlen(bogus), "tls.crt", &one), CS_EINVALID);
	assert_true(strncmp(cs_errmsg(), "tls.crt: certificate 1 cannot be parsed: ", 41) == 0);

	/* a good certificate followed by a truncated one, then by a corrupted one */
	make_ca(&a, CRYPTO_ECDSA, 256, "A");
	crypto_cert_to_pem(a.cert, &pem);
	buf_append(&pem, pem.data, 100);
	assert_int_equal(crypto_certs_from_pem(pem.data, pem.len, "chain.pem", &v, &n), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "chain.pem: certificate 2 has no END CERTIFICATE line");
	buf_clear(&pem);
	crypto_cert_to_pem(a.cert, &pem);
	crypto_cert_to_pem(a.cert, &pem);
	body = strstr(pem.data + 30, "-----BEGIN CERTIFICATE-----\n") + 28;
	body[0] = body[0] == '!' ? '?' : '!';
	assert_int_equal(crypto_certs_from_pem(pem.data, pem.len, "chain.pem", &v, &n), CS_EINVALID);
	assert_true(strncmp(cs_errmsg(), "chain.pem: certificate 2 cannot be parsed: ", 43) == 0);
	/* only the first certificate matters to crypto_cert_from_pem */
	assert_int_equal(crypto_cert_from_pem(pem.data, pem.len, "tls.crt", &one), 0);
	assert_true(crypto_cert_matches_key(one, a.key));
	assert_null(v);
	crypto_cert_free(one);
	buf_free(&pem);
	free_ca(&a);
}

/* ---------- hashes, randomness ---------- */

/* ---------- chain verification ---------- */

/* A root and an intermediate made by the openssl CLI (a real three-level chain): *inter signs, PEMs returned. */
static void make_intermediate(const char *dir, struct ca *inter, char **root_pem, char **inter_pem)
{
	char *cnf = test_write(dir, "x.cnf",
			       "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=chain test\n"
			       "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
			       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
			       0644);
	char *out =
		run("cd %s && openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		    "-keyout root.key -subj /CN=chain-root -config x.cnf -extensions ca -days 30 -out root.pem "
		    ">/dev/null && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
		    "int.key -subj /CN=chain-intermediate -config x.cnf -out int.csr >/dev/null && openssl x509 -req "
		    "-in int.csr -CA root.pem -CAkey root.key -CAcreateserial -extfile x.cnf -extensions ca -days 30 "
		    "-out int.pem >/dev/null 2>&1 && cat int.key",
		    dir);
	char *p;

	assert_int_equal(crypto_key_from_pem(out, strlen(out), "int.key", &inter->key), 0);
	crypto_wipe(out, strlen(out));
	free(out);
	*root_pem = run("cat %s/root.pem", dir);
	*inter_pem = run("cat %s/int.pem", dir);
	assert_int_equal(crypto_cert_from_pem(*inter_pem, strlen(*inter_pem), "int.pem", &inter->cert), 0);
	p = *inter_pem;
	*inter_pem = xasprintf("%s\n", p);
	free(p);
	p = *root_pem;
	*root_pem = xasprintf("%s\n", p);
	free(p);
	free(cnf);
}

static void test_crypto_verify_chain_through_an_intermediate_to_the_root_or_the_intermediate(void **state)
{
	const char *names[] = {"www.example.com"};
	char *dir = test_mkdtemp(), *root_pem, *inter_pem, *leaf_pem, *bundle;
	struct ca inter = {NULL, NULL};
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf;

	(void)state;
	make_intermediate(dir, &inter, &root_pem, &inter_pem);
	leaf = issue(&inter, key, names, 1);
	leaf_pem = cert_pem(leaf);
	bundle = xasprintf("%s%s", leaf_pem, inter_pem);
	/* leaf + intermediate in tls.crt, the root in ca.crt */
	assert_int_equal(crypto_cert_verify_chain(bundle, strlen(bundle), root_pem, strlen(root_pem), util_now()), 0);
	/* ca.crt holding only the intermediate (DNSimple gives no root): a partial chain is enough */
	assert_int_equal(crypto_cert_verify_chain(leaf_pem, strlen(leaf_pem), inter_pem, strlen(inter_pem), util_now()),
			 0);
	/* without the intermediate anywhere, the leaf does not reach the root */
	assert_int_equal(crypto_cert_verify_chain(leaf_pem, strlen(leaf_pem), root_pem, strlen(root_pem), util_now()),
			 CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "does not verify from the leaf to ca.crt"));
	assert_non_null(strstr(cs_errmsg(), "unable to get local issuer certificate"));
	/* an empty ca.crt is no trust anchor */
	assert_int_equal(crypto_cert_verify_chain(bundle, strlen(bundle), "", 0, util_now()), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "ca.crt is empty"));
	free(bundle);
	free(leaf_pem);
	free(root_pem);
	free(inter_pem);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	free_ca(&inter);
	test_rmdir(dir);
}

static void test_crypto_verify_chain_refuses_another_ca_and_checks_the_dates(void **state)
{
	const char *names[] = {"www.example.com"};
	struct ca ca, other;
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *leaf;
	char *leaf_pem, *ca_pem, *other_pem;

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 256, "right CA");
	make_ca(&other, CRYPTO_ECDSA, 256, "other CA");
	leaf = issue(&ca, key, names, 1); /* valid [T0, T0 + 90 days] */
	leaf_pem = cert_pem(leaf);
	ca_pem = cert_pem(ca.cert);
	other_pem = cert_pem(other.cert);
	assert_int_equal(crypto_cert_verify_chain(leaf_pem, strlen(leaf_pem), ca_pem, strlen(ca_pem), T0 + DAY), 0);
	/* a broken chain: the leaf is not signed by ca.crt's CA */
	assert_int_equal(crypto_cert_verify_chain(leaf_pem, strlen(leaf_pem), other_pem, strlen(other_pem), T0 + DAY),
			 CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "depth 0"));
	/* checked at a time after notAfter: expired; before notBefore: not yet valid; at 0: dates not checked */
	assert_int_equal(crypto_cert_verify_chain(leaf_pem, strlen(leaf_pem), ca_pem, strlen(ca_pem), T0 + 91 * DAY),
			 CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificate has expired"));
	assert_int_equal(crypto_cert_verify_chain(leaf_pem, strlen(leaf_pem), ca_pem, strlen(ca_pem), T0 - DAY),
			 CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "not yet valid"));
	assert_int_equal(crypto_cert_verify_chain(leaf_pem, strlen(leaf_pem), ca_pem, strlen(ca_pem), 0), 0);
	/* garbage in tls.crt is a parse error naming the file */
	assert_int_equal(crypto_cert_verify_chain("junk", 4, ca_pem, strlen(ca_pem), T0), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "tls.crt"));
	free(leaf_pem);
	free(ca_pem);
	free(other_pem);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	free_ca(&ca);
	free_ca(&other);
}

static void test_crypto_self_signed_leaf_verifies_against_itself(void **state)
{
	const char *names[] = {"self.example.com"};
	struct crypto_key *key = new_key(CRYPTO_ECDSA, 256);
	struct crypto_cert *cert = NULL;
	char *pem;

	(void)state;
	assert_int_equal(crypto_self_signed(key, names[0], names, 1, T0, T0 + 30 * DAY, &cert), 0);
	pem = cert_pem(cert);
	assert_int_equal(crypto_cert_verify_chain(pem, strlen(pem), pem, strlen(pem), T0 + DAY), 0);
	free(pem);
	crypto_cert_free(cert);
	crypto_key_free(key);
}

static void test_crypto_names_compare_as_dns_names(void **state)
{
	const char *const set[] = {"www.Example.com", "*.example.com", "example.com."};

	(void)state;
	assert_true(crypto_names_contain(set, 3, "www.example.com"));
	assert_true(crypto_names_contain(set, 3, "WWW.EXAMPLE.COM."));
	assert_true(crypto_names_contain(set, 3, "*.example.com"));
	assert_true(crypto_names_contain(set, 3, "example.com"));
	assert_false(crypto_names_contain(set, 3, "api.example.com")); /* a wildcard is compared as written */
	assert_false(crypto_names_contain(set, 3, "example.co"));
	assert_false(crypto_names_contain(NULL, 0, "example.com"));
}

static void test_crypto_sha256_known_vectors(void **state)
{
	static const char abc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	unsigned char raw[32];
	char h[65], raw_hex[65];
	struct crypto_sha256_ctx *c;

	(void)state;
	crypto_sha256_hex("abc", 3, h);
	assert_string_equal(h, abc);
	crypto_sha256("abc", 3, raw);
	for (int i = 0; i < 32; i++)
		snprintf(raw_hex + 2 * i, 3, "%02x", raw[i]);
	assert_string_equal(raw_hex, abc);
	crypto_sha256_hex(NULL, 0, h);
	assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	c = crypto_sha256_begin();
	crypto_sha256_update(c, "a", 1);
	crypto_sha256_update(c, NULL, 0);
	crypto_sha256_update(c, "bc", 2);
	crypto_sha256_end_hex(c, h);
	assert_string_equal(h, abc);
}

static void test_crypto_hmac_sha256_rfc4231_case_2(void **state)
{
	unsigned char mac[32];
	char h[65];

	(void)state;
	crypto_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	for (int i = 0; i < 32; i++)
		snprintf(h + 2 * i, 3, "%02x", mac[i]);
	assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_crypto_uuid_is_a_random_version_4_uuid(void **state)
{
	char u1[37], u2[37];

	(void)state;
	assert_int_equal(crypto_uuid(u1), 0);
	assert_int_equal(crypto_uuid(u2), 0);
	assert_int_equal(strlen(u1), 36);
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			assert_int_equal(u1[i], '-');
		else
			assert_non_null(strchr("0123456789abcdef", u1[i]));
	}
	assert_int_equal(u1[14], '4');
	assert_non_null(strchr("89ab", u1[19]));
	assert_string_not_equal(u1, u2);
}

static void test_crypto_random_and_wipe(void **state)
{
	unsigned char a[64], b[64], zero[64];

	(void)state;
	memset(zero, 0, sizeof(zero));
	assert_int_equal(crypto_random(a, sizeof(a)), 0);
	assert_int_equal(crypto_random(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, zero, sizeof(a));
	crypto_wipe(a, sizeof(a));
	assert_memory_equal(a, zero, sizeof(a));
	crypto_wipe(NULL, 0);
}

/* ---------- threads ---------- */

struct worker {
	const struct ca *ca;
	int ok;
};

/* Each thread makes keys, CSRs and certificates against one shared CA and provokes its own errors. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const char *names[] = {"thread.example.com"};

	w->ok = 1;
	for (int i = 0; i < 8 && w->ok; i++) {
		struct crypto_key *key = NULL, *bad = NULL;
		struct crypto_cert *leaf = NULL;
		struct buf csr = BUF_INIT;

		w->ok = crypto_key_generate(CRYPTO_ECDSA, 256, &key) == 0 &&
			crypto_csr_create(key, names[0], names, 1, &csr) == 0 &&
			crypto_sign_csr(w->ca->cert, w->ca->key, csr.data, csr.len, T0, T0 + DAY, &leaf) == 0 &&
			crypto_cert_signed_by(leaf, w->ca->cert) && crypto_cert_matches_key(leaf, key) &&
			crypto_key_from_pem("x", 1, "thread.key", &bad) == CS_EINVALID &&
			strncmp(cs_errmsg(), "thread.key: ", 12) == 0;
		buf_free(&csr);
		crypto_cert_free(leaf);
		crypto_key_free(key);
	}
	return NULL;
}

static void test_crypto_is_safe_to_use_from_several_threads(void **state)
{
	struct ca ca;
	struct worker w[4];
	pthread_t t[4];

	(void)state;
	make_ca(&ca, CRYPTO_ECDSA, 256, "thread CA");
	for (int i = 0; i < 4; i++) {
		w[i].ca = &ca;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_true(w[i].ok);
	}
	free_ca(&ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crypto_each_key_kind_round_trips_through_pkcs8_pem),
		cmocka_unit_test(test_crypto_key_pem_appends_to_what_the_buffer_holds),
		cmocka_unit_test(test_crypto_refuses_unsupported_key_sizes),
		cmocka_unit_test(test_crypto_reads_pkcs1_and_sec1_keys),
		cmocka_unit_test(test_crypto_refuses_garbage_encrypted_and_foreign_keys),
		cmocka_unit_test(test_crypto_csr_carries_the_cn_and_every_san),
		cmocka_unit_test(test_crypto_signed_leaf_verifies_against_its_ca_only),
		cmocka_unit_test(test_crypto_leaf_matches_its_key_only),
		cmocka_unit_test(test_crypto_info_fields_agree_with_the_openssl_cli),
		cmocka_unit_test(test_crypto_openssl_cli_verifies_an_rsa_leaf),
		cmocka_unit_test(test_crypto_openssl_cli_verifies_an_ecdsa_leaf),
		cmocka_unit_test(test_crypto_p384_ca_signs_with_sha384),
		cmocka_unit_test(test_crypto_signs_with_an_operator_ca_lacking_a_key_identifier),
		cmocka_unit_test(test_crypto_self_signed_leaf_is_its_own_issuer),
		cmocka_unit_test(test_crypto_tampered_csr_is_refused),
		cmocka_unit_test(test_crypto_sign_csr_refuses_a_wrong_ca_key_a_leaf_issuer_and_inverted_validity),
		cmocka_unit_test(test_crypto_refuses_a_common_name_over_64_characters),
		cmocka_unit_test(test_crypto_parses_chains_with_and_without_newlines),
		cmocka_unit_test(test_crypto_refuses_garbage_and_broken_certificate_pem),
		cmocka_unit_test(test_crypto_verify_chain_through_an_intermediate_to_the_root_or_the_intermediate),
		cmocka_unit_test(test_crypto_verify_chain_refuses_another_ca_and_checks_the_dates),
		cmocka_unit_test(test_crypto_self_signed_leaf_verifies_against_itself),
		cmocka_unit_test(test_crypto_names_compare_as_dns_names),
		cmocka_unit_test(test_crypto_sha256_known_vectors),
		cmocka_unit_test(test_crypto_hmac_sha256_rfc4231_case_2),
		cmocka_unit_test(test_crypto_uuid_is_a_random_version_4_uuid),
		cmocka_unit_test(test_crypto_random_and_wipe),
		cmocka_unit_test(test_crypto_is_safe_to_use_from_several_threads),
	};

	T0 = util_now() - 60;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
