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
 * The URL of the PostgreSQL server `make unit` started (CERTSYNC_TEST_PG_URL,
 * tests/pg/pgtest.sh). A test that needs it fails when it is not set: run
 * the unit tests through make. test_pg_schema gives a fresh schema name
 * ("t_<random>") for one test; caller frees.
 */
const char *test_pg_url(void);
char *test_pg_schema(void);

/*
 * Compares text with the golden file at srcdir/rel. With
 * CERTSYNC_UPDATE_GOLDEN=1 the golden file is (re)written instead. Fails the
 * test with a unified diff on mismatch.
 */
void test_golden(const char *rel, const char *text, size_t len);

/* ---------- the file state backend ---------- */

struct state;
struct state_backend;

/* The file backend at path (fails the test when it cannot open). */
struct state_backend *test_state_open(const char *path);
/* Loads / saves the state at path through a backend of its own (fails the test with the error). */
struct state *test_state_load(const char *path);
void test_state_save(const char *path, struct state *st);
/* The state's JSON (the encoding is stable and covers every field: equal JSON, equal states). Caller frees. */
char *test_state_json(const struct state *st);
void test_assert_same_state(const struct state *a, const struct state *b);

#endif
