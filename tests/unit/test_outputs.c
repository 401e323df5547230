/*
 * Outputs: a replaced generation stays output.keepPreviousFor and then goes
 * (outputs_gc reads each parent directory once, dotted names included), the
 * formats are written into the same generation and checked like the rest,
 * and files copied or touched with their content unchanged are recorded
 * again once (outputs_restamp) instead of being read by every check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Fresh material in cert/key, described by f with formats, published as rec's directory "a" under dir. */
static void publish_a(const char *dir, struct state_cert *rec, unsigned formats, struct buf *cert, struct buf *key,
		      struct output_files *f)
{
	material(cert, key);
	memset(f, 0, sizeof(*f));
	f->cert = f->ca = cert;
	f->key = key;
	f->formats = formats;
	state_str_set(&rec->output_dir, "a");
	assert_int_equal(outputs_publish(dir, "a", f, 60, rec), 0);
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
	publish_a(dir, rec, (1u << OUTFMT_COMBINED) | (1u << OUTFMT_CERT_DER), &cert, &key, &f);
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

/* path rewritten with the same bytes as a new inode (what cp -a of the output root does), mtime 60 s back. */
static void recopy(const char *path)
{
	struct buf b = BUF_INIT;
	struct timespec ts[2] = {{0, UTIME_OMIT}, {util_now() - 60, 0}};
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(fsutil_read_file(path, 1 << 20, &b), 0);
	assert_int_equal(fsutil_write_atomic(path, b.data, b.len, st.st_mode & 07777), 0);
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	buf_wipe(&b);
}

static void test_copied_outputs_are_recorded_again(void **state)
{
	char *dir = test_mkdtemp(), *p;
	struct state *st = state_new();
	struct state_cert *rec = state_cert_put(st, "a");
	struct buf cert = BUF_INIT, key = BUF_INIT;
	struct state_filesig before[STATE_OUT_FILES];
	struct output_files f;
	const char *files[] = {"tls.crt", "tls.key", "ca.crt", "combined.pem"};
	char *fsigs;
	int rootfd;

	(void)state;
	publish_a(dir, rec, 1u << OUTFMT_COMBINED, &cert, &key, &f);
	rootfd = outputs_root_open(dir);
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_OK);
	assert_int_equal(outputs_restamp(dir, rec, util_now() + 10), 0); /* nothing moved: nothing to record */
	memcpy(before, rec->out_sig, sizeof(before));
	fsigs = xstrdup(state_cert_id(rec, OUTPUTS_ID_FORMAT_SIGS));
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		p = xasprintf("%s/a/%s", dir, files[i]);
		recopy(p);
		free(p);
	}
	/* as installed, shown by the content: every check would read the files again */
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_OK_BY_CONTENT);
	assert_int_equal(outputs_check_deep(dir, rec), OUTPUT_OK_BY_CONTENT);
	assert_int_equal(outputs_restamp(dir, rec, util_now() + 10), 1);
	assert_memory_not_equal(before, rec->out_sig, sizeof(before));
	assert_string_not_equal(fsigs, state_cert_id(rec, OUTPUTS_ID_FORMAT_SIGS));
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_OK);
	assert_int_equal(outputs_restamp(dir, rec, util_now() + 10), 0);
	/* touched only (mtime moved, same inode): the same */
	p = xasprintf("%s/a/tls.key", dir);
	{
		struct timespec ts[2] = {{0, UTIME_OMIT}, {util_now() - 30, 0}};

		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_OK_BY_CONTENT);
	/* written in the last seconds (the settle time): left for a later look */
	assert_int_equal(outputs_restamp(dir, rec, util_now() - 30 + OUTPUTS_RESTAMP_SETTLE - 1), 0);
	assert_int_equal(outputs_restamp(dir, rec, util_now()), 1);
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_OK);
	/* an edit in place that keeps the size is altered, and never recorded as installed */
	memcpy(before, rec->out_sig, sizeof(before));
	{
		struct buf b = BUF_INIT;

		assert_int_equal(fsutil_read_file(p, 1 << 20, &b), 0);
		b.data[b.len / 2] ^= 1;
		assert_int_equal(fsutil_write_atomic(p, b.data, b.len, 0600), 0);
		buf_wipe(&b);
	}
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_ALTERED);
	assert_int_equal(outputs_restamp(dir, rec, util_now() + 10), 0);
	assert_memory_equal(before, rec->out_sig, sizeof(before));
	assert_int_equal(outputs_check_at(rootfd, dir, rec), OUTPUT_ALTERED);
	free(p);
	free(fsigs);
	close(rootfd);
	buf_free(&cert);
	buf_wipe(&key);
	state_free(st);
	test_rmdir(dir);
}

/* A link re-pointed at a copy of the generation is altered (not ours), and its files are not recorded. */
static void test_repointed_link_is_not_recorded(void **state)
{
	char *dir = test_mkdtemp(), *gen, *copy, *link, *cmd;
	struct state *st = state_new();
	struct state_cert *rec = state_cert_put(st, "a");
	struct buf cert = BUF_INIT, key = BUF_INIT;
	struct state_filesig before[STATE_OUT_FILES];
	struct output_files f;

	(void)state;
	publish_a(dir, rec, 0, &cert, &key, &f);
	memcpy(before, rec->out_sig, sizeof(before));
	gen = xasprintf("%s/%s", dir, rec->out_generation);
	copy = xasprintf("%s/.a.copy00000000", dir);
	link = xasprintf("%s/a", dir);
	cmd = xasprintf("cp -a '%s' '%s' && touch -d '1 minute ago' '%s'/*", gen, copy, copy);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(unlink(link), 0);
	assert_int_equal(symlink(".a.copy00000000", link), 0);
	assert_int_equal(outputs_check(dir, rec), OUTPUT_ALTERED);
	assert_int_equal(outputs_restamp(dir, rec, util_now() + 10), 0);
	assert_memory_equal(before, rec->out_sig, sizeof(before));
	free(gen);
	free(copy);
	free(link);
	free(cmd);
	buf_free(&cert);
	buf_wipe(&key);
	state_free(st);
	test_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_previous_generation_kept_then_collected),
		cmocka_unit_test(test_formats_are_checked_like_the_rest),
		cmocka_unit_test(test_copied_outputs_are_recorded_again),
		cmocka_unit_test(test_repointed_link_is_not_recorded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
