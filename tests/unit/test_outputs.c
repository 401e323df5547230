/*
 * Outputs: a replaced generation stays output.keepPreviousFor and then goes
 * (outputs_gc reads each parent directory once, dotted names included), the
 * formats are written into the same generation and checked like the rest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../manifests/manifest.h"
#include "../../reconciler/outputs.h"
#include "../../state/state.h"
#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

/* A self-signed certificate and its key as PEM. */
static void material(struct buf *cert, struct buf *key)
{
	struct crypto_key *k = NULL;
	struct crypto_cert *c = NULL;
	const char *names[] = {"a.example.test"};
	int64_t now = util_now();

	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &k), 0);
	assert_int_equal(crypto_self_signed(k, names[0], names, 1, now - 60, now + 86400, &c), 0);
	assert_int_equal(crypto_cert_to_pem(c, cert), 0);
	assert_int_equal(crypto_key_to_pem(k, key), 0);
	crypto_key_free(k);
	crypto_cert_free(c);
}

/* How many generation directories of base are in dir. */
static int generations(const char *dir, const char *base)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t bl = strlen(base);
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] == '.' && !strncmp(e->d_name + 1, base, bl) && e->d_name[bl + 1] == '.')
			n++;
	closedir(d);
	return n;
}

static void test_previous_generation_kept_then_collected(void **state)
{
	char *dir = test_mkdtemp(), *parent = fsutil_join(dir, "shop");
	struct state *st = state_new();
	struct state_cert *rec = state_cert_put(st, "www");
	struct buf cert = BUF_INIT, key = BUF_INIT;
	struct output_files f;
	int64_t next = 0;

	(void)state;
	material(&cert, &key);
	memset(&f, 0, sizeof(f));
	f.cert = f.ca = &cert;
	f.key = &key;
	state_str_set(&rec->output_dir, "shop/www.example.test");
	for (int i = 0; i < 3; i++)
		assert_int_equal(outputs_publish(dir, rec->output_dir, &f, 60, rec), 0);
	assert_int_equal(generations(parent, "www.example.test"), 3); /* two replaced, both within 60 s */
	assert_int_equal(outputs_check(dir, rec), OUTPUT_OK);
	assert_int_equal(outputs_gc(dir, st, 60, util_now(), &next), 0);
	assert_true(next > util_now() && next <= util_now() + 61);
	assert_int_equal(outputs_gc(dir, st, 60, util_now() + 61, &next), 2);
	assert_int_equal(next, 0);
	assert_int_equal(generations(parent, "www.example.test"), 1);
	assert_int_equal(outputs_check(dir, rec), OUTPUT_OK);
	/* 0: at once, as before the grace period */
	assert_int_equal(outputs_publish(dir, rec->output_dir, &f, 0, rec), 0);
	assert_int_equal(generations(parent, "www.example.test"), 1);
	buf_free(&cert);
	buf_wipe(&key);
	state_free(st);
	free(parent);
	test_rmdir(dir);
}

static void test_formats_are_checked_like_the_rest(void **state)
{
	char *dir = test_mkdtemp(), *p = NULL;
	struct state *st = state_new();
	struct state_cert *rec = state_cert_put(st, "a");
	struct buf cert = BUF_INIT, key = BUF_INIT, got = BUF_INIT;
	struct output_files f;
	int rootfd;

	(void)state;
	material(&cert, &key);
	memset(&f, 0, sizeof(f));
	f.cert = f.ca = &cert;
	f.key = &key;
	f.formats = (1u << OUTFMT_COMBINED) | (1u << OUTFMT_CERT_DER);
	state_str_set(&rec->output_dir, "a");
	assert_int_equal(outputs_publish(dir, "a", &f, 60, rec), 0);
	assert_string_equal(state_cert_id(rec, OUTPUTS_ID_FORMATS), "combined.pem,tls.der");
	rootfd = outputs_root_open(dir);
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_OK);
	p = xasprintf("%s/a/combined.pem", dir);
	assert_int_equal(fsutil_read_file(p, 1 << 20, &got), 0);
	assert_true(got.len == key.len + cert.len && !memcmp(got.data, key.data, key.len));
	/* a format file altered in place is noticed, deleted too */
	assert_int_equal(fsutil_write_atomic(p, "x", 1, 0600), 0);
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_ALTERED);
	unlink(p);
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_MISSING);
	/* keystore.p12 without a password is a configuration error, and nothing is published */
	f.formats = 1u << OUTFMT_P12;
	assert_int_equal(outputs_publish(dir, "a", &f, 60, rec), CS_EAUTH);
	assert_string_equal(state_cert_id(rec, OUTPUTS_ID_FORMATS), "combined.pem,tls.der");
	close(rootfd);
	buf_wipe(&got);
	buf_free(&cert);
	buf_wipe(&key);
	free(p);
	state_free(st);
	test_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_previous_generation_kept_then_collected),
		cmocka_unit_test(test_formats_are_checked_like_the_rest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
