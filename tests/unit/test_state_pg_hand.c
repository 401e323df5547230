/*
 * A hand edit of the PostgreSQL state (schema version 3, state/pgconn.c)
 * against a real server (make unit starts one): SQL on certs or removed run
 * by anything but certsync (a plain libpq connection, as psql would) moves
 * the header row, so the next load reads the edited rows instead of the
 * local snapshot; it takes the serial one up once per transaction, marks
 * the rows and tombstones with it and NOTIFYs, so a replica's refresh
 * brings it in and a concurrent writer's compare-and-swap fails as for any
 * other writer. certsync's own writes fire no trigger; a write that lost
 * its setting (an older certsync still running during an upgrade) moves the
 * serial only as it meant to. A schema at version 2 migrates to 3 with its
 * data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../state/pgconn.h"
#include "../../state/state.h"
#include "../../state/state_pg.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "pgfix.h"
#include "testutil.h"

#define T0 PGFIX_T0

/* ---------- helpers ---------- */

static struct state_backend *open_pg(const char *schema, const char *cache_dir)
{
	return pgfix_open(schema, "hand-test", cache_dir);
}

static PGconn *raw(void)
{
	PGconn *c = NULL;

	if (pgconn_open(test_pg_url(), "test", &c))
		fail_msg("connect: %s", cs_errmsg());
	return c;
}

/* Runs one statement on c ("@S" is the quoted schema); its first value as a number (0 when no row). */
static long long sqlv(PGconn *c, const char *schema, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static long long sqlv(PGconn *c, const char *schema, const char *fmt, ...)
{
	struct buf q = BUF_INIT;
	PGresult *r = NULL;
	long long v = 0;
	va_list ap;
	char *text, *p, *s;

	va_start(ap, fmt);
	text = xvasprintf(fmt, ap);
	va_end(ap);
	for (s = text; (p = strstr(s, "@S")); s = p + 2) {
		buf_append(&q, s, (size_t)(p - s));
		buf_printf(&q, "\"%s\"", schema);
	}
	buf_puts(&q, s);
	if (pgconn_exec(c, "test", &r, q.data, 0, NULL))
		fail_msg("%s: %s", q.data, cs_errmsg());
	if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	buf_free(&q);
	free(text);
	return v;
}

/* A load through a new backend (as a new certsync process would). */
static struct state *load_fresh(const char *schema, const char *cache_dir)
{
	struct state_backend *be = open_pg(schema, cache_dir);
	struct state *st = NULL;

	if (state_load(be, &st))
		fail_msg("state_load: %s", cs_errmsg());
	state_backend_free(be);
	return st;
}

static int attempts(const struct state *st, const char *name)
{
	const struct state_cert *c = state_cert_get(st, name);

	if (!c)
		fail_msg("%s is not in the state", name);
	return c->attempts;
}

/*
 * Sets c04's attempts as certsync would (certsync.writer set: the header row
 * stays): only a load from the rows sees it, a load from the snapshot does
 * not.
 */
static void mark_rows(PGconn *c, const char *schema, int n)
{
	sqlv(c, schema, "SET " PGCONN_WRITER_SETTING " = 'on'");
	sqlv(c, schema,
	     "UPDATE @S.certs SET doc = jsonb_set(doc::jsonb, '{attempts}', '%d')::text WHERE name = 'c04.example'", n);
	sqlv(c, schema, "RESET " PGCONN_WRITER_SETTING);
}

/* ---------- tests ---------- */

/*
 * After a save and a snapshot, each kind of hand edit (certs: UPDATE,
 * DELETE, INSERT, TRUNCATE; removed: INSERT, DELETE, TRUNCATE) is what the
 * next load returns, and that load made a new snapshot that the one after
 * uses.
 */
static void test_a_hand_edit_is_seen_by_the_next_load(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state_backend *w = open_pg(schema, NULL);
	struct state *st = pgfix_make_state(6), *got;
	PGconn *c = raw();
	long long serial;

	(void)unused;
	assert_int_equal(state_lock(w, "apply"), 0);
	assert_int_equal(state_save(w, st), 0);
	state_free(load_fresh(schema, dir)); /* the rows; a snapshot is written */
	mark_rows(c, schema, 1);
	got = load_fresh(schema, dir);
	assert_int_equal(attempts(got, "c04.example"), 0); /* the snapshot: certsync's own edit is not a hand edit */
	state_free(got);
	serial = sqlv(c, schema, "SELECT serial FROM @S.header");

	/* UPDATE of a doc: another valid record */
	sqlv(c, schema,
	     "UPDATE @S.certs SET doc = jsonb_set(doc::jsonb, '{attempts}', '42')::text WHERE name = 'c01.example'");
	got = load_fresh(schema, dir);
	assert_int_equal(attempts(got, "c01.example"), 42);
	assert_int_equal(attempts(got, "c04.example"), 1); /* read from the rows */
	assert_int_equal(got->serial, serial + 1);
	state_free(got);
	mark_rows(c, schema, 2);
	got = load_fresh(schema, dir); /* the snapshot that load wrote */
	assert_int_equal(attempts(got, "c01.example"), 42);
	assert_int_equal(attempts(got, "c04.example"), 1);
	state_free(got);

	/* DELETE */
	sqlv(c, schema, "DELETE FROM @S.certs WHERE name = 'c02.example'");
	got = load_fresh(schema, dir);
	assert_null(state_cert_get(got, "c02.example"));
	assert_int_equal(state_cert_count(got), 5);
	assert_int_equal(attempts(got, "c04.example"), 2);
	assert_int_equal(got->serial, serial + 2);
	state_free(got);

	/* INSERT (a copy of a record under another name; the changed_serial given is replaced) */
	sqlv(c, schema,
	     "INSERT INTO @S.certs (name, doc, changed_serial) SELECT 'copy.example', doc, 0 FROM @S.certs"
	     " WHERE name = 'c03.example'");
	mark_rows(c, schema, 3);
	got = load_fresh(schema, dir);
	assert_non_null(state_cert_get(got, "copy.example"));
	assert_int_equal(attempts(got, "c04.example"), 3);
	state_free(got);
	assert_int_equal(sqlv(c, schema, "SELECT changed_serial FROM @S.certs WHERE name = 'copy.example'"),
			 serial + 3);

	/* removed alone (no record changes): the header row moves all the same, the rows are read */
	for (int k = 0; k < 3; k++) {
		static const char *const edits[] = {
			"INSERT INTO @S.removed (name, removed_serial) VALUES ('old.example', 1)",
			"DELETE FROM @S.removed WHERE name = 'old.example'",
			"TRUNCATE @S.removed",
		};

		mark_rows(c, schema, 10 + k);
		sqlv(c, schema, "%s", edits[k]);
		got = load_fresh(schema, dir);
		assert_int_equal(attempts(got, "c04.example"), 10 + k);
		assert_int_equal(got->serial, serial + 3); /* no record changed: the serial stays */
		state_free(got);
	}

	/* TRUNCATE certs */
	sqlv(c, schema, "TRUNCATE @S.certs");
	got = load_fresh(schema, dir);
	assert_int_equal(state_cert_count(got), 0);
	assert_int_equal(got->serial, serial + 4);
	state_free(got);
	assert_int_equal(sqlv(c, schema, "SELECT count(*) FROM @S.removed WHERE removed_serial = %lld", serial + 4), 6);

	PQfinish(c);
	state_backend_free(w);
	state_free(st);
	test_rmdir(dir);
	free(schema);
}

/* Counting triggers of the test's own: header row updates and removed row writes, per transaction. */
static void count_writes(PGconn *c, const char *schema)
{
	sqlv(c, schema, "CREATE TABLE @S.t_count (what text PRIMARY KEY, n int NOT NULL)");
	sqlv(c, schema, "INSERT INTO @S.t_count VALUES ('header', 0), ('removed', 0)");
	sqlv(c, schema,
	     "CREATE FUNCTION @S.t_bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	     " UPDATE @S.t_count SET n = n + 1 WHERE what = TG_TABLE_NAME; RETURN NULL; END $$");
	sqlv(c, schema, "CREATE TRIGGER t_count AFTER UPDATE ON @S.header FOR EACH ROW EXECUTE FUNCTION @S.t_bump()");
	sqlv(c, schema,
	     "CREATE TRIGGER t_count AFTER INSERT OR UPDATE ON @S.removed FOR EACH ROW EXECUTE FUNCTION @S.t_bump()");
}

static void assert_counts(PGconn *c, const char *schema, long long header, long long removed)
{
	assert_int_equal(sqlv(c, schema, "SELECT n FROM @S.t_count WHERE what = 'header'"), header);
	assert_int_equal(sqlv(c, schema, "SELECT n FROM @S.t_count WHERE what = 'removed'"), removed);
}

/*
 * certsync's writes (save, journal, a journal removal, the source alone, a
 * save with a removal) update the header row once each and write each
 * tombstone once: the triggers stay out of them. A hand edit then adds its
 * one header update and its tombstone.
 */
static void test_certsyncs_own_writes_fire_no_trigger(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *w = open_pg(schema, NULL);
	struct state *st = pgfix_make_state(4);
	PGconn *c = raw();

	(void)unused;
	assert_int_equal(state_lock(w, "apply"), 0);
	assert_int_equal(state_save(w, st), 0); /* the header row is inserted: no update */
	count_writes(c, schema);
	state_cert_get(st, "c00.example")->attempts = 3;
	assert_int_equal(state_save(w, st), 0);
	assert_counts(c, schema, 1, 0);
	state_cert_get(st, "c01.example")->attempts = 4;
	assert_int_equal(state_journal(w, st, "c01.example", state_cert_get(st, "c01.example")), 0);
	assert_counts(c, schema, 2, 0);
	assert_int_equal(state_cert_remove(st, "c02.example"), 0);
	assert_int_equal(state_journal(w, st, "c02.example", NULL), 0);
	assert_counts(c, schema, 3, 1);
	assert_int_equal(state_note_source(w, st, "https://git.example/certs.git", "main", "4567cdef"), 0);
	assert_counts(c, schema, 4, 1);
	assert_int_equal(state_cert_remove(st, "c03.example"), 0);
	pgfix_fill_cert(state_cert_put(st, "new.example"), 9);
	assert_int_equal(state_save(w, st), 0);
	assert_counts(c, schema, 5, 2);
	assert_int_equal(sqlv(c, schema, "SELECT serial FROM @S.header"), (long long)st->serial);
	assert_int_equal(sqlv(c, schema, "SELECT count(*) FROM @S.certs WHERE changed_serial = %llu",
			      (unsigned long long)st->serial),
			 1);

	/* a hand edit: one header update, one tombstone */
	sqlv(c, schema, "DELETE FROM @S.certs WHERE name = 'c00.example'");
	assert_counts(c, schema, 6, 3);
	assert_int_equal(sqlv(c, schema, "SELECT serial FROM @S.header"), (long long)st->serial + 1);
	PQfinish(c);
	state_backend_free(w);
	state_free(st);
	free(schema);
}

/*
 * Several hand statements in one transaction take the serial up once, and
 * every row they write or remove carries that serial; a rename leaves a
 * tombstone for the old name.
 */
static void test_one_hand_transaction_is_one_serial(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *w = open_pg(schema, NULL);
	struct state *st = pgfix_make_state(5);
	PGconn *c = raw();
	long long s;

	(void)unused;
	assert_int_equal(state_lock(w, "apply"), 0);
	assert_int_equal(state_save(w, st), 0);
	s = (long long)st->serial;
	sqlv(c, schema, "BEGIN");
	sqlv(c, schema, "DELETE FROM @S.certs WHERE name = 'c00.example'");
	sqlv(c, schema, "UPDATE @S.certs SET doc = doc WHERE name = 'c01.example'");
	sqlv(c, schema, "UPDATE @S.certs SET name = 'renamed.example' WHERE name = 'c02.example'");
	sqlv(c, schema, "COMMIT");
	assert_int_equal(sqlv(c, schema, "SELECT serial FROM @S.header"), s + 1);
	assert_int_equal(sqlv(c, schema,
			      "SELECT count(*) FROM @S.certs WHERE changed_serial = %lld AND name IN"
			      " ('c01.example', 'renamed.example')",
			      s + 1),
			 2);
	assert_int_equal(sqlv(c, schema,
			      "SELECT count(*) FROM @S.removed WHERE removed_serial = %lld AND name IN"
			      " ('c00.example', 'c02.example')",
			      s + 1),
			 2);
	PQfinish(c);
	state_backend_free(w);
	state_free(st);
	free(schema);
}

/*
 * A replica following the state (on_change, refresh) hears of a hand edit
 * (NOTIFY) and its refresh brings in exactly the rows edited.
 */
static void test_a_replica_refresh_brings_in_a_hand_edit(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *w = open_pg(schema, NULL), *f = open_pg(schema, NULL);
	struct pgfix_counter cnt = PGFIX_COUNTER_INIT;
	struct state *st = pgfix_make_state(5), *seen = NULL, *want;
	PGconn *c = raw();
	char **names = NULL;
	size_t n = 0;

	(void)unused;
	assert_int_equal(state_lock(w, "run"), 0);
	assert_int_equal(state_save(w, st), 0);
	state_unlock(w);
	assert_int_equal(state_load(f, &seen), 0);
	state_on_change(f, pgfix_counter_bump, &cnt);
	sqlv(c, schema, "BEGIN");
	sqlv(c, schema,
	     "UPDATE @S.certs SET doc = jsonb_set(doc::jsonb, '{attempts}', '42')::text WHERE name = 'c01.example'");
	sqlv(c, schema, "DELETE FROM @S.certs WHERE name = 'c02.example'");
	sqlv(c, schema,
	     "INSERT INTO @S.certs (name, doc, changed_serial) SELECT 'copy.example', doc, 0 FROM @S.certs"
	     " WHERE name = 'c03.example'");
	sqlv(c, schema, "COMMIT");
	assert_true(pgfix_counter_wait(&cnt, 1) >= 1);
	assert_int_equal(state_refresh(f, seen, &names, &n), 0);
	assert_int_equal(n, 3);
	assert_true(pgfix_has_name(names, n, "c01.example"));
	assert_true(pgfix_has_name(names, n, "c02.example"));
	assert_true(pgfix_has_name(names, n, "copy.example"));
	pgfix_free_names(names, n);
	want = load_fresh(schema, NULL);
	test_assert_same_state(seen, want);
	assert_int_equal(seen->serial, st->serial + 1);
	assert_int_equal(attempts(seen, "c01.example"), 42);
	state_free(want);

	/* TRUNCATE: every record leaves */
	sqlv(c, schema, "TRUNCATE @S.certs");
	assert_int_equal(state_refresh(f, seen, &names, &n), 0);
	assert_int_equal(n, 5);
	pgfix_free_names(names, n);
	assert_int_equal(state_cert_count(seen), 0);
	state_on_change(f, NULL, NULL);
	PQfinish(c);
	state_backend_free(w);
	state_backend_free(f);
	state_free(st);
	state_free(seen);
	free(schema);
}

/*
 * The leader (the one writer) hears of a commit by another process
 * (state_take_foreign: then it reads the state again), not of its own
 * commits nor of a follower's kick.
 */
static void test_a_leader_hears_a_foreign_commit_not_its_own_or_a_kick(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *l = open_pg(schema, NULL), *f = open_pg(schema, NULL);
	struct pgfix_counter cnt = PGFIX_COUNTER_INIT;
	struct state *st = pgfix_make_state(3);
	PGconn *c = raw();
	char **names = NULL;
	size_t n = 0;

	(void)unused;
	assert_int_equal(state_lock(l, "run"), 0);
	state_on_change(l, pgfix_counter_bump, &cnt);
	(void)state_take_foreign(l);
	assert_int_equal(state_save(l, st), 0); /* its own commit: a NOTIFY it ignores */
	assert_int_equal(state_kick(f, "c01.example"), 0);
	/* notifications come in order: once the kick is here, the save's came before it */
	assert_int_equal(pgfix_counter_wait(&cnt, 1), 1);
	assert_int_equal(state_take_kicks(l, &names, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "c01.example");
	pgfix_free_names(names, n);
	assert_int_equal(state_take_foreign(l), 0);

	sqlv(c, schema, "DELETE FROM @S.certs WHERE name = 'c02.example'");
	assert_int_equal(pgfix_counter_wait(&cnt, 2), 2);
	assert_int_equal(state_take_foreign(l), 1);
	assert_int_equal(state_take_foreign(l), 0); /* taken */
	assert_int_equal(state_take_foreign(NULL), 0);
	state_on_change(l, NULL, NULL);
	state_unlock(l);
	PQfinish(c);
	state_backend_free(l);
	state_backend_free(f);
	state_free(st);
	free(schema);
}

/*
 * A writer holding the state from before a hand edit: its next write fails
 * as for another writer (the serial moved), and after a load it writes
 * again; no later snapshot hides the edit.
 */
static void test_a_writer_behind_a_hand_edit_gets_a_conflict(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state_backend *w = open_pg(schema, dir);
	struct state *st = pgfix_make_state(4), *again = NULL, *got;
	PGconn *c = raw();

	(void)unused;
	assert_int_equal(state_lock(w, "run"), 0);
	assert_int_equal(state_save(w, st), 0);
	sqlv(c, schema, "DELETE FROM @S.certs WHERE name = 'c01.example'");
	state_cert_get(st, "c00.example")->attempts = 2;
	assert_int_equal(state_journal(w, st, "c00.example", state_cert_get(st, "c00.example")), CS_ECONFLICT);
	assert_non_null(strstr(cs_errmsg(), "changed under this process"));
	state_keep_snapshot(w, st); /* not the header row's state: nothing kept */
	got = load_fresh(schema, dir);
	assert_null(state_cert_get(got, "c01.example"));
	state_free(got);
	assert_int_equal(state_load(w, &again), 0);
	assert_null(state_cert_get(again, "c01.example"));
	state_cert_get(again, "c00.example")->attempts = 2;
	assert_int_equal(state_journal(w, again, "c00.example", state_cert_get(again, "c00.example")), 0);
	PQfinish(c);
	state_backend_free(w);
	state_free(st);
	state_free(again);
	test_rmdir(dir);
	free(schema);
}

/*
 * A certsync write without the writer setting (an older certsync still
 * running while the schema went to version 3): its statements update the
 * header row first, so the triggers find it already this transaction's and
 * move nothing further: the serial is the one it wrote, and its next
 * compare-and-swap holds. The statements are state_pg_write.c's shapes.
 */
static void test_a_write_that_lost_its_setting_moves_the_serial_once(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *w = open_pg(schema, NULL);
	struct state *st = pgfix_make_state(3), *got = NULL;
	PGconn *c = raw();
	long long s;

	(void)unused;
	assert_int_equal(state_lock(w, "apply"), 0);
	assert_int_equal(state_save(w, st), 0);
	s = (long long)st->serial;
	/* a save: the header's compare-and-swap, then the rows and the removals */
	sqlv(c, schema, "BEGIN");
	sqlv(c, schema, "UPDATE @S.header SET serial = %lld, updated_at = now() WHERE serial = %lld", s + 1, s);
	sqlv(c, schema,
	     "INSERT INTO @S.certs (name, doc, changed_serial) SELECT 'c00.example', doc, %lld FROM @S.certs"
	     " WHERE name = 'c01.example' ON CONFLICT (name) DO UPDATE SET doc = excluded.doc,"
	     " changed_serial = excluded.changed_serial",
	     s + 1);
	sqlv(c, schema,
	     "WITH d AS (DELETE FROM @S.certs WHERE name = 'c02.example' RETURNING name) INSERT INTO @S.removed"
	     " (name, removed_serial) SELECT name, %lld FROM d ON CONFLICT (name) DO UPDATE"
	     " SET removed_serial = excluded.removed_serial",
	     s + 1);
	sqlv(c, schema, "COMMIT");
	assert_int_equal(sqlv(c, schema, "SELECT serial FROM @S.header"), s + 1);
	/* a journal write and a journal removal: one statement each */
	sqlv(c, schema,
	     "WITH w AS (UPDATE @S.header SET serial = %lld, updated_at = now() WHERE serial = %lld RETURNING serial),"
	     " c AS (INSERT INTO @S.certs (name, doc, changed_serial) SELECT 'c01.example', doc, w.serial"
	     " FROM @S.certs, w WHERE name = 'c00.example' ON CONFLICT (name) DO UPDATE SET doc = excluded.doc,"
	     " changed_serial = excluded.changed_serial)"
	     " SELECT serial FROM w",
	     s + 2, s + 1);
	assert_int_equal(sqlv(c, schema, "SELECT serial FROM @S.header"), s + 2);
	sqlv(c, schema,
	     "WITH w AS (UPDATE @S.header SET serial = %lld, updated_at = now() WHERE serial = %lld RETURNING serial),"
	     " d AS (DELETE FROM @S.certs WHERE name = 'c01.example' AND EXISTS (SELECT 1 FROM w)),"
	     " t AS (INSERT INTO @S.removed (name, removed_serial) SELECT 'c01.example', serial FROM w"
	     " ON CONFLICT (name) DO UPDATE SET removed_serial = excluded.removed_serial)"
	     " SELECT serial FROM w",
	     s + 3, s + 2);
	assert_int_equal(sqlv(c, schema, "SELECT serial FROM @S.header"), s + 3);
	assert_int_equal(sqlv(c, schema, "SELECT max(changed_serial) FROM @S.certs"), s + 1);
	assert_int_equal(sqlv(c, schema, "SELECT removed_serial FROM @S.removed WHERE name = 'c01.example'"), s + 3);
	/* certsync, having read that state, writes on with its compare-and-swap */
	assert_int_equal(state_load(w, &got), 0);
	assert_int_equal(got->serial, (uint64_t)(s + 3));
	assert_int_equal(state_cert_count(got), 1);
	assert_int_equal(state_save(w, got), 0);
	PQfinish(c);
	state_backend_free(w);
	state_free(st);
	state_free(got);
	free(schema);
}

/* A schema at version 2 (as certsync before the triggers left it) migrates to 3 on the next open and keeps its data. */
static void test_a_version_2_schema_migrates_to_3_with_its_data(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp();
	struct state_backend *w = open_pg(schema, NULL), *be;
	struct state *st = pgfix_make_state(4), *got;
	PGconn *c = raw();
	const char *triggers = "SELECT count(*) FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid"
			       " JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = '%s'"
			       " AND t.tgname LIKE 'hand_%%'";

	(void)unused;
	assert_int_equal(state_lock(w, "apply"), 0);
	assert_int_equal(state_save(w, st), 0);
	state_backend_free(w);
	assert_int_equal(sqlv(c, schema, triggers, schema), 4);
	/* back to version 2: what migration 3 added goes */
	sqlv(c, schema,
	     "DROP FUNCTION @S.note_edit(), @S.note_edited_row(), @S.note_gone_row(), @S.note_removed_edit() CASCADE");
	sqlv(c, schema, "DELETE FROM @S.migrations WHERE version = 3");
	assert_int_equal(sqlv(c, schema, triggers, schema), 0);
	assert_int_equal(sqlv(c, schema, "SELECT max(version) FROM @S.migrations"), 2);

	be = open_pg(schema, dir); /* migrates */
	assert_int_equal(sqlv(c, schema, "SELECT max(version) FROM @S.migrations"), PGCONN_SCHEMA_VERSION);
	assert_int_equal(sqlv(c, schema, triggers, schema), 4);
	assert_int_equal(state_load(be, &got), 0);
	test_assert_same_state(got, st);
	assert_int_equal(got->serial, st->serial);
	state_free(got);
	state_free(load_fresh(schema, dir)); /* a snapshot */
	sqlv(c, schema, "DELETE FROM @S.certs WHERE name = 'c03.example'");
	got = load_fresh(schema, dir);
	assert_null(state_cert_get(got, "c03.example"));
	assert_int_equal(state_cert_count(got), 3);
	state_free(got);
	PQfinish(c);
	state_backend_free(be);
	state_free(st);
	test_rmdir(dir);
	free(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_hand_edit_is_seen_by_the_next_load),
		cmocka_unit_test(test_certsyncs_own_writes_fire_no_trigger),
		cmocka_unit_test(test_one_hand_transaction_is_one_serial),
		cmocka_unit_test(test_a_replica_refresh_brings_in_a_hand_edit),
		cmocka_unit_test(test_a_leader_hears_a_foreign_commit_not_its_own_or_a_kick),
		cmocka_unit_test(test_a_writer_behind_a_hand_edit_gets_a_conflict),
		cmocka_unit_test(test_a_write_that_lost_its_setting_moves_the_serial_once),
		cmocka_unit_test(test_a_version_2_schema_migrates_to_3_with_its_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
