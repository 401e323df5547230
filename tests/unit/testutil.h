/* Helpers shared by the unit tests: temp dirs, files, golden comparisons. */
#ifndef CS_TESTS_UNIT_TESTUTIL_H
#define CS_TESTS_UNIT_TESTUTIL_H

#include <stddef.h>

/* A fresh directory under $TMPDIR (caller frees the string; test_rmdir removes it). */
char *test_mkdtemp(void);
void test_rmdir(char *dir);

/* Writes a file (mode) under dir; returns its path (caller frees). */
char *test_write(const char *dir, const char *name, const char *text, int mode);

/* The source tree root: $CERTSYNC_SRCDIR or ".". */
const char *test_srcdir(void);

/*
 * Compares text with the golden file at srcdir/rel. With
 * CERTSYNC_UPDATE_GOLDEN=1 the golden file is (re)written instead. Fails the
 * test with a unified diff on mismatch.
 */
void test_golden(const char *rel, const char *text, size_t len);

#endif
