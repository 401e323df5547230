/* Shared unit-test helpers (linked into every test binary). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../state/state.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

char *test_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *t = xasprintf("%s/certsync-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");

	if (!mkdtemp(t))
		fail_msg("mkdtemp failed");
	return t;
}

void test_rmdir(char *dir)
{
	if (dir)
		fsutil_rm_rf(dir);
	free(dir);
}

char *test_write(const char *dir, const char *name, const char *text, int mode)
{
	char *p = fsutil_join(dir, name);
	char *parent = fsutil_dirname(p);

	fsutil_mkdir_p(parent, 0755);
	free(parent);
	unlink(p);
	assert_int_equal(fsutil_write_new(p, text, strlen(text), (mode_t)mode), 0);
	chmod(p, (mode_t)mode);
	return p;
}

const char *test_srcdir(void)
{
	const char *s = getenv("CERTSYNC_SRCDIR");

	return s && *s ? s : ".";
}

void test_golden(const char *rel, const char *text, size_t len)
{
	char *path = fsutil_join(test_srcdir(), rel);
	struct buf want = BUF_INIT;
	const char *upd = getenv("CERTSYNC_UPDATE_GOLDEN");

	if (upd && !strcmp(upd, "1")) {
		char *dir = fsutil_dirname(path);

		fsutil_mkdir_p(dir, 0755);
		free(dir);
		assert_int_equal(fsutil_write_atomic(path, text, len, 0644), 0);
		free(path);
		return;
	}
	if (fsutil_read_file(path, 0, &want)) {
		free(path);
		fail_msg("golden file %s missing (run with CERTSYNC_UPDATE_GOLDEN=1 to create it)", rel);
	}
	if (want.len != len || memcmp(want.data, text, len)) {
		char *got = xasprintf("%s.got", path);
		char *cmd;

		fsutil_write_atomic(got, text, len, 0644);
		cmd = xasprintf("diff -u '%s' '%s' >&2", path, got);
		if (system(cmd) == -1)
			perror("diff");
		free(cmd);
		free(got);
		buf_free(&want);
		free(path);
		fail_msg("output differs from golden file %s", rel);
	}
	buf_free(&want);
	free(path);
}

const char *test_pg_url(void)
{
	const char *u = getenv("CERTSYNC_TEST_PG_URL");

	if (!u || !*u) {
		fprintf(stderr,
			"CERTSYNC_TEST_PG_URL is not set: run the unit tests with make unit (it starts PostgreSQL)\n");
		abort();
	}
	return u;
}

char *test_pg_schema(void)
{
	static unsigned counter;
	char *s = xasprintf("t_%ld_%u_%u", (long)getpid(), (unsigned)time(NULL) % 100000u, counter++);

	return s;
}

struct state_backend *test_state_open(const char *path)
{
	struct state_backend *be = NULL;

	if (state_file_open(path, &be))
		fail_msg("cannot open the state %s: %s", path, cs_errmsg());
	return be;
}

struct state *test_state_load(const char *path)
{
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL;

	if (state_load(be, &st))
		fail_msg("load failed: %s", cs_errmsg());
	state_backend_free(be);
	return st;
}

void test_state_save(const char *path, struct state *st)
{
	struct state_backend *be = test_state_open(path);

	if (state_save(be, st))
		fail_msg("save failed: %s", cs_errmsg());
	state_backend_free(be);
}

char *test_state_json(const struct state *st)
{
	struct buf b = BUF_INIT;

	state_to_json(st, &b);
	return buf_detach(&b);
}

void test_assert_same_state(const struct state *a, const struct state *b)
{
	char *ja = test_state_json(a), *jb = test_state_json(b);

	if (strcmp(ja, jb))
		fail_msg("the states differ:\n%.600s\n---\n%.600s", ja, jb);
	free(ja);
	free(jb);
}
