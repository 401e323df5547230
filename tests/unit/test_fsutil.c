/*
 * fsutil_copy_atomic (the state's backup): the copy is the source byte for
 * byte with the mode asked, in the kernel on one filesystem and by hand
 * across two; a missing, oversized or non-regular source leaves the
 * destination as it was, and no temp file stays behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

/* A file of n random bytes at path; returns them (caller frees). */
static struct buf random_file(const char *path, size_t n)
{
	struct buf b = BUF_INIT;

	buf_reserve(&b, n);
	assert_int_equal(crypto_random(b.data, n), 0);
	b.len = n;
	assert_int_equal(fsutil_write_atomic(path, b.data, b.len, 0644), 0);
	return b;
}

static void assert_file_is(const char *path, const struct buf *want)
{
	struct buf got = BUF_INIT;

	assert_int_equal(fsutil_read_file(path, 64u << 20, &got), 0);
	assert_int_equal(got.len, want->len);
	assert_memory_equal(got.data, want->data, want->len);
	buf_free(&got);
}

/* Only these names in dir (no "<name>.tmp.<pid>.<n>" left). */
static void assert_only(const char *dir, const char *a, const char *b)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, a) && strcmp(e->d_name, b))
			fail_msg("unexpected %s in %s", e->d_name, dir);
	closedir(d);
}

static void test_copy_is_the_source_with_the_mode_asked(void **unused)
{
	char *dir = test_mkdtemp(), *src = fsutil_join(dir, "state.json"), *dst = fsutil_join(dir, "state.json.backup");
	struct buf want = random_file(src, (3u << 20) + 12345), old = BUF_INIT;
	struct stat st;
	mode_t mask;

	(void)unused;
	mask = umask(0077); /* the mode asked, whatever the umask */
	assert_int_equal(fsutil_copy_atomic(src, dst, 64u << 20, 0640), 0);
	umask(mask);
	assert_file_is(dst, &want);
	assert_int_equal(stat(dst, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_only(dir, "state.json", "state.json.backup");

	/* the destination is replaced whole: a shorter source leaves nothing of the longer copy */
	buf_free(&want);
	want = random_file(src, 100);
	assert_int_equal(fsutil_copy_atomic(src, dst, 64u << 20, 0600), 0);
	assert_file_is(dst, &want);

	/* refused sources leave the destination as it was */
	old = want;
	want = (struct buf)BUF_INIT;
	assert_int_equal(fsutil_copy_atomic(src, dst, 99, 0600), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "100 bytes; the limit is 99"));
	assert_file_is(dst, &old);
	assert_int_equal(unlink(src), 0);
	assert_int_equal(fsutil_copy_atomic(src, dst, 64u << 20, 0600), CS_ENOTFOUND);
	assert_file_is(dst, &old);
	assert_int_equal(mkdir(src, 0700), 0);
	assert_int_equal(fsutil_copy_atomic(src, dst, 64u << 20, 0600), CS_ERROR);
	assert_non_null(strstr(cs_errmsg(), "not a regular file"));
	assert_file_is(dst, &old);
	assert_int_equal(rmdir(src), 0);
	assert_only(dir, "state.json.backup", "-");
	buf_free(&old);
	free(src);
	free(dst);
	test_rmdir(dir);
}

/* From another filesystem (/dev/shm, a tmpfs, when there is one): copy_file_range says EXDEV, the bytes go by hand. */
static void test_copy_across_filesystems(void **unused)
{
	char *dir = test_mkdtemp(), *dst = fsutil_join(dir, "copy");
	char *src = xasprintf("/dev/shm/certsync-test-fsutil.%ld", (long)getpid());
	struct stat a, b;
	struct buf want;

	(void)unused;
	if (stat("/dev/shm", &a) || stat(dir, &b) || a.st_dev == b.st_dev) {
		free(src);
		free(dst);
		test_rmdir(dir);
		skip();
	}
	want = random_file(src, (1u << 20) + 7);
	assert_int_equal(fsutil_copy_atomic(src, dst, 64u << 20, 0640), 0);
	assert_file_is(dst, &want);
	assert_int_equal(stat(dst, &b), 0);
	assert_int_equal(b.st_mode & 07777, 0640);
	unlink(src);
	buf_free(&want);
	free(src);
	free(dst);
	test_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_is_the_source_with_the_mode_asked),
		cmocka_unit_test(test_copy_across_filesystems),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
