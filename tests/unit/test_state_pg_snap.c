/*
 * The PostgreSQL backend's local decoded snapshot (state/state_pg_snap.c)
 * against a real server (make unit starts one): a load after a load reads the
 * snapshot, not the rows; every write by another process (save, journal, a
 * removal, the source alone, a clear and a new lineage) is seen by the next
 * load; a damaged, foreign or stale snapshot is not used and is rebuilt; a
 * cache directory that cannot be written is no error.
 *
 * How a test tells a snapshot load from a row load: it edits a row behind
 * certsync's back (SQL run with certsync.writer set, so the header row stays
 * as it was: what a hand edit did before schema version 3). A load from the
 * rows sees the edit, a load from the snapshot does not. Hand edits proper
 * (which the triggers make visible) are test_state_pg_hand.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../state/pgconn.h"
#include "../../state/state.h"
#include "../../state/state_pg.h"
#include "../../state/state_pg_int.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "pgfix.h"
#include "testutil.h"

#define T0 PGFIX_T0

/* ---------- helpers ---------- */

static struct state_backend *open_pg(const char *schema, const char *cache_dir)
{
	return pgfix_open(schema, "snap-test", cache_dir);
}

static const char *snap_path(struct state_backend *be)
{
	return ((struct state_pg *)be)->snap_path;
}

/*
 * Runs SQL on a connection of its own; unseen: as certsync's own writes run
 * (certsync.writer set), so the schema's hand-edit triggers leave the
 * header row alone.
 */
static void sql_as(int unseen, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql_as(int unseen, const char *fmt, ...)
{
	PGconn *c = NULL;
	va_list ap;
	char *q;

	va_start(ap, fmt);
	q = xvasprintf(fmt, ap);
	va_end(ap);
	assert_int_equal(pgconn_open(test_pg_url(), "test", &c), 0);
	if (unseen && pgconn_exec(c, "test", NULL, "SET " PGCONN_WRITER_SETTING " = 'on'", 0, NULL))
		fail_msg("SET: %s", cs_errmsg());
	if (pgconn_exec(c, "test", NULL, q, 0, NULL))
		fail_msg("%s: %s", q, cs_errmsg());
	PQfinish(c);
	free(q);
}

static struct state *make_state(int n)
{
	struct state *st = pgfix_make_state(n);

	state_account_set(st, "dnsimple", "account_id", "1010");
	state_webhook_seen(st, "req-1");
	return st;
}

/* A load through a new backend on schema (as a new certsync process would). */
static struct state *load_fresh(const char *schema, const char *cache_dir)
{
	struct state_backend *be = open_pg(schema, cache_dir);
	struct state *st = NULL;

	if (state_load(be, &st))
		fail_msg("state_load: %s", cs_errmsg());
	state_backend_free(be);
	return st;
}

/*
 * A row edit that leaves the header row alone (made as if by certsync, so
 * the hand-edit triggers stay quiet): only a load from the rows sees it.
 */
static void edit_row_behind_our_back(const char *schema, const char *name)
{
	sql_as(1, "UPDATE \"%s\".certs SET doc = jsonb_set(doc::jsonb, '{attempts}', '42')::text WHERE name = '%s'",
	       schema, name);
}

/* 1 when st was read from the snapshot (the edit above is not in it), 0 when from the rows. */
static int from_snapshot(const struct state *st, const char *name)
{
	const struct state_cert *c = state_cert_get(st, name);

	assert_non_null(c);
	return c->attempts != 42;
}

/* A schema holding make_state(n), saved by a writer backend with no cache (returned locked). */
static struct state_backend *seeded(const char *schema, int n, struct state **st)
{
	struct state_backend *w = open_pg(schema, NULL);

	*st = make_state(n);
	assert_int_equal(state_lock(w, "apply"), 0);
	assert_int_equal(state_save(w, *st), 0);
	return w;
}

/* ---------- tests ---------- */

static void test_a_second_load_reads_the_snapshot_and_equals_the_rows(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state *st = NULL, *a = NULL, *b = NULL;
	struct state_backend *w = seeded(schema, 20, &st), *be;
	struct stat sb;

	(void)unused;
	a = load_fresh(schema, dir); /* the rows; the snapshot is written */
	test_assert_same_state(a, st);
	be = open_pg(schema, dir);
	assert_non_null(snap_path(be));
	assert_int_equal(stat(snap_path(be), &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_ptr_equal(strstr(snap_path(be), dir), snap_path(be));
	edit_row_behind_our_back(schema, "c03.example");
	assert_int_equal(state_load(be, &b), 0);
	assert_true(from_snapshot(b, "c03.example"));
	test_assert_same_state(b, st);
	assert_string_equal(b->lineage, st->lineage);
	assert_int_equal(b->serial, st->serial);
	state_backend_free(be);
	state_backend_free(w);
	state_free(st);
	state_free(a);
	state_free(b);
	test_rmdir(dir);
	free(schema);
}

/*
 * The digests of the rows come back with the snapshot: a save after a
 * snapshot load writes the one record that changed, not every row.
 */
static void test_a_save_after_a_snapshot_load_writes_only_what_changed(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state *st = NULL, *got = NULL;
	struct state_backend *w = seeded(schema, 10, &st), *be;
	PGconn *c = NULL;
	PGresult *r = NULL;
	char *q;

	(void)unused;
	state_backend_free(w);
	state_free(load_fresh(schema, dir));
	be = open_pg(schema, dir);
	assert_int_equal(state_lock(be, "apply"), 0);
	edit_row_behind_our_back(schema, "c09.example");
	assert_int_equal(state_load(be, &got), 0);
	assert_true(from_snapshot(got, "c09.example"));
	state_cert_get(got, "c04.example")->attempts = 3;
	assert_int_equal(state_save(be, got), 0);
	assert_int_equal(pgconn_open(test_pg_url(), "test", &c), 0);
	q = xasprintf("SELECT string_agg(name, ',') FROM \"%s\".certs WHERE changed_serial = %llu", schema,
		      (unsigned long long)got->serial);
	assert_int_equal(pgconn_exec(c, "test", &r, q, 0, NULL), 0);
	assert_string_equal(PQgetvalue(r, 0, 0), "c04.example");
	PQclear(r);
	PQfinish(c);
	free(q);
	state_backend_free(be);
	state_free(st);
	state_free(got);
	test_rmdir(dir);
	free(schema);
}

/* The next load through the snapshot's cache equals what the writer holds (and reads rows, not the snapshot). */
static void assert_next_load_is(const char *schema, const char *dir, const struct state *want)
{
	struct state *got = load_fresh(schema, dir);

	test_assert_same_state(got, want);
	assert_string_equal(got->lineage, want->lineage);
	assert_int_equal(got->serial, want->serial);
	state_free(got);
}

static void test_every_write_by_another_process_is_seen_by_the_next_load(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state *st = NULL;
	struct state_backend *w = seeded(schema, 6, &st);
	struct state_cert *rec;

	(void)unused;
	state_free(load_fresh(schema, dir)); /* a snapshot at the first serial */

	/* a journal write (what apply does per step) */
	rec = state_cert_get(st, "c02.example");
	rec->attempts = 5;
	state_str_set(&rec->step, "order");
	assert_int_equal(state_journal(w, st, "c02.example", rec), 0);
	assert_next_load_is(schema, dir, st);

	/* a journal removal (state rm) */
	assert_int_equal(state_cert_remove(st, "c01.example"), 0);
	assert_int_equal(state_journal(w, st, "c01.example", NULL), 0);
	assert_next_load_is(schema, dir, st);

	/* the source alone (run following a commit that changes no certificate) */
	assert_int_equal(state_note_source(w, st, "https://git.example/certs.git", "main", "4567cdef"), 0);
	assert_string_equal(st->source_commit, "4567cdef");
	assert_next_load_is(schema, dir, st);

	/* a full save with a new record, a changed one and a removal */
	pgfix_fill_cert(state_cert_put(st, "new.example"), 99);
	state_cert_get(st, "c00.example")->attempts = 7;
	assert_int_equal(state_cert_remove(st, "c05.example"), 0);
	assert_int_equal(state_save(w, st), 0);
	assert_next_load_is(schema, dir, st);

	/* an account and a webhook id (header columns only) */
	state_account_set(st, "dnsimple", "account_id", "2020");
	state_webhook_seen(st, "req-2");
	assert_int_equal(state_save(w, st), 0);
	assert_next_load_is(schema, dir, st);

	state_backend_free(w);
	state_free(st);
	test_rmdir(dir);
	free(schema);
}

/*
 * A state cleared and written again (state migrate --force) with the same
 * lineage and serial as the one the snapshot was made from, other records:
 * the header row is another row, the snapshot is not used.
 */
static void test_the_same_lineage_and_serial_written_again_is_not_the_snapshot(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state *st = NULL, *got = NULL;
	struct state_backend *w = seeded(schema, 4, &st);
	uint64_t serial = st->serial;

	(void)unused;
	state_free(load_fresh(schema, dir));
	assert_int_equal(state_pg_clear(w), 0);
	st->serial = serial - 1; /* written again: the same lineage at the same serial */
	state_cert_get(st, "c00.example")->attempts = 9;
	assert_int_equal(state_save(w, st), 0);
	assert_int_equal(st->serial, serial);
	got = load_fresh(schema, dir);
	assert_int_equal(state_cert_get(got, "c00.example")->attempts, 9);
	test_assert_same_state(got, st);
	state_backend_free(w);
	state_free(st);
	state_free(got);
	test_rmdir(dir);
	free(schema);
}

/* The snapshot file's bytes (fails the test when it cannot be read). */
static void read_snap(const char *path, struct buf *b)
{
	buf_init(b, 0);
	if (fsutil_read_file(path, 1u << 30, b))
		fail_msg("%s: %s", path, cs_errmsg());
}

static void write_snap(const char *path, const struct buf *b)
{
	assert_int_equal(fsutil_write_atomic(path, b->data, b->len, 0600), 0);
}

static void test_a_damaged_snapshot_is_ignored_and_rebuilt(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state *st = NULL, *got = NULL;
	struct state_backend *w = seeded(schema, 8, &st), *be = open_pg(schema, dir);
	struct buf good, bad;
	const char *path = snap_path(be);
	size_t cuts[] = {0, 7, 100, 0};

	(void)unused;
	state_free(load_fresh(schema, dir));
	read_snap(path, &good);
	cuts[3] = good.len - 1;
	edit_row_behind_our_back(schema, "c05.example"); /* so a row load shows itself */
	for (int k = 0; k < 6; k++) {
		/*
		 * the file cut short at several places, a byte flipped inside the
		 * records and strings, or in the row digests at the end
		 */
		buf_init(&bad, 0);
		buf_append(&bad, good.data, k < 4 ? cuts[k] : good.len);
		if (k == 4)
			bad.data[good.len / 2] ^= 0x20;
		if (k == 5)
			bad.data[good.len - 5] ^= 0x01;
		write_snap(path, &bad);
		buf_free(&bad);
		assert_int_equal(state_load(be, &got), 0);
		assert_false(from_snapshot(got, "c05.example"));
		state_free(got);
		got = NULL;
		/* rebuilt from the rows: the next load reads it */
		sql_as(1,
		       "UPDATE \"%s\".certs SET doc = jsonb_set(doc::jsonb, '{attempts}', '0')::text WHERE name = "
		       "'c05.example'",
		       schema);
		assert_int_equal(state_load(be, &got), 0);
		assert_int_equal(state_cert_get(got, "c05.example")->attempts, 42);
		state_free(got);
		got = NULL;
		edit_row_behind_our_back(schema, "c05.example");
	}
	/* not a file at all: a directory in its place */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(state_load(be, &got), 0);
	assert_false(from_snapshot(got, "c05.example"));
	state_free(got);
	buf_free(&good);
	state_backend_free(be);
	state_backend_free(w);
	state_free(st);
	test_rmdir(dir);
	free(schema);
}

/*
 * Two schemas holding the same lineage and serial with other records (one
 * state migrated twice, one copy changed): the snapshot of one, copied to
 * the other's name, is not used for it.
 */
static void test_a_snapshot_of_another_schema_is_not_used(void **unused)
{
	char *s1 = test_pg_schema(), *s2 = test_pg_schema(), *dir = test_mkdtemp();
	struct state *st = NULL, *got = NULL;
	struct state_backend *w1 = seeded(s1, 5, &st), *w2 = open_pg(s2, NULL), *b1 = open_pg(s1, dir),
			     *b2 = open_pg(s2, dir);
	struct buf snap1;

	(void)unused;
	assert_string_not_equal(snap_path(b1), snap_path(b2));
	st->serial--; /* the same lineage and serial in s2, one record other */
	state_cert_get(st, "c01.example")->attempts = 4;
	assert_int_equal(state_lock(w2, "apply"), 0);
	assert_int_equal(state_save(w2, st), 0);
	state_free(load_fresh(s1, dir));
	read_snap(snap_path(b1), &snap1);
	write_snap(snap_path(b2), &snap1);
	assert_int_equal(state_load(b2, &got), 0);
	assert_int_equal(state_cert_get(got, "c01.example")->attempts, 4);
	test_assert_same_state(got, st);
	buf_free(&snap1);
	state_free(got);
	state_backend_free(b1);
	state_backend_free(b2);
	state_backend_free(w1);
	state_backend_free(w2);
	state_free(st);
	test_rmdir(dir);
	free(s1);
	free(s2);
}

static void test_a_cache_directory_that_cannot_be_written_is_no_error(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp(), *file = test_write(dir, "plain-file", "x", 0600);
	char *below = fsutil_join(file, "cache");
	struct state *st = NULL, *got = NULL;
	struct state_backend *w = seeded(schema, 3, &st), *be = open_pg(schema, below);

	(void)unused;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(state_load(be, &got), 0);
		test_assert_same_state(got, st);
		state_free(got);
		got = NULL;
	}
	assert_false(fsutil_exists(snap_path(be)));
	state_backend_free(be);
	/* no cache directory at all: no snapshot, the rows every time */
	be = open_pg(schema, NULL);
	assert_null(snap_path(be));
	assert_int_equal(state_load(be, &got), 0);
	test_assert_same_state(got, st);
	state_free(got);
	state_backend_free(be);
	state_backend_free(w);
	state_free(st);
	free(below);
	free(file);
	test_rmdir(dir);
	free(schema);
}

/* A database where nothing was written yet: no snapshot (a fresh state has a new lineage each time). */
static void test_an_empty_database_makes_no_snapshot(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state_backend *be = open_pg(schema, dir);
	struct state *got = NULL;

	(void)unused;
	assert_int_equal(state_load(be, &got), 0);
	assert_int_equal(state_cert_count(got), 0);
	assert_false(fsutil_exists(snap_path(be)));
	state_free(got);
	state_backend_free(be);
	test_rmdir(dir);
	free(schema);
}

/*
 * A writer keeps the snapshot of what it saved last (apply's end, run
 * stopping): the next process reads it, not the rows, and finds exactly
 * that state; a writer whose state another process has since moved past
 * keeps none, and the next load reads the rows.
 */
static void test_a_writer_keeps_the_snapshot_of_what_it_wrote_last(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state_backend *w = open_pg(schema, dir), *other;
	struct state *st = make_state(12), *b, *o = NULL;
	struct stat sb;

	(void)unused;
	assert_int_equal(state_lock(w, "apply"), 0);
	assert_int_equal(state_save(w, st), 0);
	state_cert_get(st, "c04.example")->attempts = 3;
	assert_int_equal(state_journal(w, st, "c04.example", state_cert_get(st, "c04.example")), 0);
	assert_int_equal(state_save(w, st), 0);
	assert_int_not_equal(stat(snap_path(w), &sb), 0); /* a save alone writes none */
	state_keep_snapshot(w, st);
	assert_int_equal(stat(snap_path(w), &sb), 0);
	edit_row_behind_our_back(schema, "c03.example");
	b = load_fresh(schema, dir);
	assert_true(from_snapshot(b, "c03.example"));
	test_assert_same_state(b, st);
	assert_int_equal(b->serial, st->serial);
	state_free(b);

	/* another process writes after w's last save: what w keeps then is not the state */
	state_unlock(w);
	other = open_pg(schema, NULL);
	assert_int_equal(state_lock(other, "apply"), 0);
	assert_int_equal(state_load(other, &o), 0);
	state_cert_get(o, "c05.example")->attempts = 9;
	assert_int_equal(state_save(other, o), 0);
	state_unlock(other);
	unlink(snap_path(w));
	state_keep_snapshot(w, st);
	assert_int_not_equal(stat(snap_path(w), &sb), 0);
	b = load_fresh(schema, dir);
	assert_false(from_snapshot(b, "c03.example"));
	assert_int_equal(state_cert_get(b, "c05.example")->attempts, 9);
	state_free(b);

	state_backend_free(other);
	state_backend_free(w);
	state_free(st);
	state_free(o);
	test_rmdir(dir);
	free(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_second_load_reads_the_snapshot_and_equals_the_rows),
		cmocka_unit_test(test_a_save_after_a_snapshot_load_writes_only_what_changed),
		cmocka_unit_test(test_every_write_by_another_process_is_seen_by_the_next_load),
		cmocka_unit_test(test_the_same_lineage_and_serial_written_again_is_not_the_snapshot),
		cmocka_unit_test(test_a_damaged_snapshot_is_ignored_and_rebuilt),
		cmocka_unit_test(test_a_snapshot_of_another_schema_is_not_used),
		cmocka_unit_test(test_a_cache_directory_that_cannot_be_written_is_no_error),
		cmocka_unit_test(test_an_empty_database_makes_no_snapshot),
		cmocka_unit_test(test_a_writer_keeps_the_snapshot_of_what_it_wrote_last),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
