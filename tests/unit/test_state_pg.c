/*
 * The PostgreSQL state backend's storage against a real server (make unit
 * starts one): round trip, row-level writes, compare-and-swap, journal,
 * refresh, the listener, kicks, damaged rows, reconnecting.
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
#include "../../state/state_pg_int.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "pgfix.h"
#include "testutil.h"

#define T0 INT64_C(1795411863) /* 2026-11-23T05:31:03Z */

/* ---------- helpers ---------- */

static struct state_backend *open_pg(const char *schema, const char *replica)
{
	return pgfix_open(schema, replica, NULL);
}

static PGconn *raw_conn(void)
{
	PGconn *c = NULL;

	assert_int_equal(pgconn_open(test_pg_url(), "test", &c), 0);
	return c;
}

/* The first value of a query's first row ("" when no row); caller frees. */
static char *sql1(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sql1(PGconn *c, const char *fmt, ...)
{
	va_list ap;
	char *sql, *v;
	PGresult *r = NULL;

	va_start(ap, fmt);
	sql = xvasprintf(fmt, ap);
	va_end(ap);
	if (pgconn_exec(c, "test", &r, sql, 0, NULL))
		fail_msg("%s: %s", sql, cs_errmsg());
	v = xstrdup(PQntuples(r) && PQnfields(r) ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	free(sql);
	return v;
}

static long long sql_int(PGconn *c, const char *sql)
{
	char *v = sql1(c, "%s", sql);
	long long n = strtoll(v, NULL, 10);

	free(v);
	return n;
}

static void fill_cert(struct state_cert *c, int k)
{
	char tmp[64];
	struct state_token t = {"dns-txt-token", "www.pizza.company", "_dnsauth.www.pizza.company",
				"rec-1",	 "dnsimple",	      T0};

	state_str_set(&c->issuer, "digicert");
	state_str_set(&c->provider, "digicert");
	snprintf(tmp, sizeof(tmp), "spec-%d", k);
	state_str_set(&c->spec_hash, tmp);
	state_str_set(&c->output_dir, "shop/www");
	c->phase = PHASE_PENDING;
	state_str_set(&c->change, "renew");
	state_str_set(&c->step, "order");
	c->attempts = 2;
	c->next_try = T0 + 60;
	state_cert_set_id(c, "order_id", "12345");
	state_cert_set_id(c, "alternative_order_id", "a1b2 \"quoted\" \\ back");
	snprintf(tmp, sizeof(tmp), "%x", 0xabc000 + k);
	state_str_set(&c->serial, tmp);
	c->not_before = T0 - 86400;
	c->not_after = T0 + 90 * 86400;
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		c->out_sig[i].size = 1000 + i;
		c->out_sig[i].mtime_ns = INT64_C(1795410663123456789) + i;
		c->out_sig[i].ino = 77 + i;
	}
	state_cert_add_token(c, &t);
	state_cert_set_error(c, T0 + 5, "order refused: \"quota\"\nline two \xc3\xa9");
	c->failure_class = xstrdup(STATE_FAIL_TRANSIENT);
	state_cert_event(c, T0 - 10, "renew started: %s", "expires soon");
	state_cert_event(c, T0, "step %s failed", "order");
}

/* A state with every kind of data: records, source, accounts, webhook ids. */
static struct state *full_state(int n)
{
	struct state *st = state_new();
	char name[32];

	state_set_source(st, "https://git.example/certs.git", "main", "0123abcd");
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "c%02d.example", i);
		fill_cert(state_cert_put(st, name), i);
	}
	state_account_set(st, "digicert", "auth_key_id", "k-1");
	state_account_set(st, "dnsimple", "account_id", "1010");
	state_webhook_seen(st, "req-1");
	state_webhook_seen(st, "req-\"2\"");
	return st;
}

/*
 * Waits until the listener of be received a kick for name (sent after what
 * the test wants processed: notices arrive in commit order on one connection).
 */
static void wait_kick(struct state_backend *be, struct pgfix_counter *cnt, const char *name)
{
	for (int want = 1; want < 1000; want++) {
		char **names = NULL;
		size_t n = 0;
		int found;

		pgfix_counter_wait(cnt, want);
		assert_int_equal(state_take_kicks(be, &names, &n), 0);
		found = pgfix_has_name(names, n, name);
		pgfix_free_names(names, n);
		if (found)
			return;
	}
	fail_msg("the kick for %s never arrived", name);
}

/* ---------- tests ---------- */

static void test_a_fresh_database_loads_as_an_empty_state(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *be = open_pg(schema, "a");
	struct state *st = NULL;
	char **names = NULL;
	size_t n = 9;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_cert_count(st), 0);
	assert_int_equal(st->serial, 0);
	assert_int_equal(strlen(st->lineage), 36);
	assert_true(state_shared(be));
	/* nothing stored: a refresh finds nothing */
	assert_int_equal(state_refresh(be, st, &names, &n), 0);
	assert_int_equal(n, 0);
	state_free(st);
	state_backend_free(be);
	free(schema);
}

static void test_round_trip_of_a_full_state_encodes_as_the_file_backend(void **unused)
{
	char *schema = test_pg_schema(), *dir = test_mkdtemp(), *path = xasprintf("%s/state.json", dir);
	struct state_backend *a = open_pg(schema, "a"), *b = open_pg(schema, "b"), *file = NULL;
	struct state *st = full_state(3), *got = NULL, *from_file = NULL;
	struct buf text = BUF_INIT;
	char *want;

	(void)unused;
	assert_int_equal(state_lock(a, "apply"), 0);
	assert_int_equal(state_save(a, st), 0);
	assert_int_equal(st->serial, 1);
	assert_int_equal(state_load(b, &got), 0);
	test_assert_same_state(st, got);
	assert_string_equal(got->lineage, st->lineage);
	assert_int_equal(got->n_webhook_ids, 2);
	assert_string_equal(state_account_get(got, "dnsimple", "account_id"), "1010");
	/* the same state saved by the file backend: the same document */
	st->serial = 0;
	assert_int_equal(state_file_open(path, &file), 0);
	assert_int_equal(state_save(file, st), 0);
	assert_int_equal(fsutil_read_file(path, STATE_MAX_BYTES, &text), 0);
	want = test_state_json(got);
	assert_string_equal(text.data, want);
	assert_int_equal(state_load(file, &from_file), 0);
	test_assert_same_state(from_file, got);
	free(want);
	buf_free(&text);
	state_free(st);
	state_free(got);
	state_free(from_file);
	state_backend_free(a);
	state_backend_free(b);
	state_backend_free(file);
	test_rmdir(dir);
	free(path);
	free(schema);
}

static void test_save_writes_only_the_records_that_changed(void **unused)
{
	char *schema = test_pg_schema(), *v;
	struct state_backend *be = open_pg(schema, "a");
	struct state *st = NULL, *again = NULL;
	PGconn *c = raw_conn();
	char sql[512];

	(void)unused;
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_load(be, &st), 0);
	for (int i = 0; i < 5; i++) {
		char name[16];

		snprintf(name, sizeof(name), "r%d", i);
		fill_cert(state_cert_put(st, name), i);
	}
	assert_int_equal(state_save(be, st), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial = 1", schema);
	assert_int_equal(sql_int(c, sql), 5);

	/* one record changed: one row written at serial 2 */
	state_cert_get(st, "r3")->attempts = 9;
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(st->serial, 2);
	snprintf(sql, sizeof(sql), "SELECT string_agg(name, ',') FROM \"%s\".certs WHERE changed_serial = 2", schema);
	v = sql1(c, "%s", sql);
	assert_string_equal(v, "r3");
	free(v);

	/* nothing changed: only the header moves */
	assert_int_equal(state_save(be, st), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial = 3", schema);
	assert_int_equal(sql_int(c, sql), 0);
	snprintf(sql, sizeof(sql), "SELECT serial FROM \"%s\".header", schema);
	assert_int_equal(sql_int(c, sql), 3);

	/* a removal: the row goes, a tombstone says when */
	assert_int_equal(state_cert_remove(st, "r1"), 0);
	assert_int_equal(state_save(be, st), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs", schema);
	assert_int_equal(sql_int(c, sql), 4);
	snprintf(sql, sizeof(sql), "SELECT removed_serial FROM \"%s\".removed WHERE name = 'r1'", schema);
	assert_int_equal(sql_int(c, sql), 4);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial = 4", schema);
	assert_int_equal(sql_int(c, sql), 0);

	/* a state loaded from a clean backend saves nothing but the header either */
	state_backend_free(be);
	be = open_pg(schema, "a2");
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_load(be, &again), 0);
	test_assert_same_state(again, st);
	assert_int_equal(state_save(be, again), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial = 5", schema);
	assert_int_equal(sql_int(c, sql), 0);

	PQfinish(c);
	state_free(st);
	state_free(again);
	state_backend_free(be);
	free(schema);
}

static void test_a_serial_moved_by_another_writer_is_a_conflict(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *be = open_pg(schema, "a");
	struct state *st = full_state(2);
	PGconn *c = raw_conn();
	char sql[256];

	(void)unused;
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_save(be, st), 0);
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".header SET serial = serial + 5", schema);
	free(sql1(c, "%s", sql));
	state_cert_get(st, "c00.example")->attempts = 7;
	assert_int_equal(state_save(be, st), CS_ECONFLICT);
	assert_non_null(strstr(cs_errmsg(), "changed under this process (serial 6, this process read 1)"));
	assert_non_null(strstr(cs_errmsg(), schema));
	assert_int_equal(st->serial, 1);
	assert_int_equal(state_journal(be, st, "c00.example", state_cert_get(st, "c00.example")), CS_ECONFLICT);
	assert_int_equal(st->serial, 1);
	/* nothing of the refused writes landed */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial > 1", schema);
	assert_int_equal(sql_int(c, sql), 0);
	/* another lineage in the database is a conflict too, and says so */
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".header SET serial = 1, lineage = 'other-lineage'", schema);
	free(sql1(c, "%s", sql));
	assert_int_equal(state_save(be, st), CS_ECONFLICT);
	assert_non_null(strstr(cs_errmsg(), "lineage other-lineage"));
	PQfinish(c);
	state_free(st);
	state_backend_free(be);
	free(schema);
}

static void test_a_write_without_the_lease_is_fenced(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *be = open_pg(schema, "a");
	struct state *st = full_state(1);
	PGconn *c = raw_conn();
	char sql[256];

	(void)unused;
	assert_int_equal(state_save(be, st), CS_EFENCED);
	assert_int_equal(st->serial, 0);
	assert_int_equal(state_journal(be, st, "c00.example", NULL), CS_EFENCED);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".header", schema);
	assert_int_equal(sql_int(c, sql), 0);
	PQfinish(c);
	state_free(st);
	state_backend_free(be);
	free(schema);
}

static void test_journal_writes_one_record_and_a_removal(void **unused)
{
	char *schema = test_pg_schema(), *v;
	struct state_backend *a = open_pg(schema, "a"), *b = open_pg(schema, "b");
	struct state *st = full_state(3), *got = NULL;
	struct state_cert *rec;
	struct buf doc = BUF_INIT;
	PGconn *c = raw_conn();
	char sql[256];

	(void)unused;
	assert_int_equal(state_lock(a, "apply"), 0);
	assert_int_equal(state_save(a, st), 0);
	rec = state_cert_get(st, "c01.example");
	state_cert_set_id(rec, "intent", "order:c01");
	assert_int_equal(state_journal(a, st, "c01.example", rec), 0);
	assert_int_equal(st->serial, 2);
	snprintf(sql, sizeof(sql), "SELECT doc FROM \"%s\".certs WHERE name = 'c01.example' AND changed_serial = 2",
		 schema);
	v = sql1(c, "%s", sql);
	state_cert_to_json(rec, 0, &doc);
	assert_string_equal(v, doc.data);
	free(v);
	/* a new record, then a removal */
	fill_cert(state_cert_put(st, "new.example"), 9);
	assert_int_equal(state_journal(a, st, "new.example", state_cert_get(st, "new.example")), 0);
	assert_int_equal(state_cert_remove(st, "c02.example"), 0);
	assert_int_equal(state_journal(a, st, "c02.example", NULL), 0);
	assert_int_equal(st->serial, 4);
	snprintf(sql, sizeof(sql), "SELECT removed_serial FROM \"%s\".removed WHERE name = 'c02.example'", schema);
	assert_int_equal(sql_int(c, sql), 4);
	assert_int_equal(state_load(b, &got), 0);
	test_assert_same_state(got, st);
	/* a save after journals writes nothing the journals wrote */
	assert_int_equal(state_save(a, st), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial = 5", schema);
	assert_int_equal(sql_int(c, sql), 0);
	buf_free(&doc);
	PQfinish(c);
	state_free(st);
	state_free(got);
	state_backend_free(a);
	state_backend_free(b);
	free(schema);
}

/* state_note_source: the header's source and serial alone, fenced and compare-and-swapped; others see it. */
static void test_note_source_writes_the_header_alone(void **unused)
{
	static const char c2[] = "2222222222222222222222222222222222222222";
	static const char c3[] = "3333333333333333333333333333333333333333";
	char *schema = test_pg_schema(), *v;
	struct state_backend *a = open_pg(schema, "a"), *b = open_pg(schema, "b");
	struct state *st = full_state(3), *got = NULL;
	char **names = NULL;
	size_t n = 0;
	PGconn *c = raw_conn();
	char sql[256];

	(void)unused;
	assert_int_equal(state_lock(a, "run"), 0);
	assert_int_equal(state_save(a, st), 0);
	assert_int_equal(state_load(b, &got), 0);
	assert_int_equal(state_note_source(a, st, "https://git.example/certs.git", "main", c2), 0);
	assert_int_equal(st->serial, 2);
	snprintf(sql, sizeof(sql), "SELECT serial || ' ' || source_commit FROM \"%s\".header", schema);
	v = sql1(c, "%s", sql);
	assert_string_equal(v, "2 2222222222222222222222222222222222222222");
	free(v);
	/* no record row written, accounts and webhook ids kept */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial = 2", schema);
	assert_int_equal(sql_int(c, sql), 0);
	/* a reader refreshes the header: the source, nothing else changed */
	assert_int_equal(state_refresh(b, got, &names, &n), 0);
	assert_int_equal(n, 0);
	pgfix_free_names(names, n);
	test_assert_same_state(got, st);
	state_free(got);
	got = NULL;
	assert_int_equal(state_load(b, &got), 0);
	test_assert_same_state(got, st);
	/* a save after it writes no record either (the digests still describe the rows) */
	assert_int_equal(state_save(a, st), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".certs WHERE changed_serial = 3", schema);
	assert_int_equal(sql_int(c, sql), 0);
	/* another writer moved the serial: a conflict, nothing written */
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".header SET serial = serial + 5", schema);
	free(sql1(c, "%s", sql));
	assert_int_equal(state_note_source(a, st, "https://git.example/certs.git", "main", c3), CS_ECONFLICT);
	assert_int_equal(st->serial, 3);
	snprintf(sql, sizeof(sql), "SELECT source_commit FROM \"%s\".header", schema);
	v = sql1(c, "%s", sql);
	assert_string_equal(v, c2);
	free(v);
	/* without the lease: fenced */
	state_unlock(a);
	st->serial = 8;
	assert_int_equal(state_note_source(a, st, "https://git.example/certs.git", "main", c3), CS_EFENCED);
	v = sql1(c, "%s", sql);
	assert_string_equal(v, c2);
	free(v);
	PQfinish(c);
	state_free(st);
	state_free(got);
	state_backend_free(a);
	state_backend_free(b);
	free(schema);
}

static void test_refresh_brings_in_another_writers_changes(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *leader = open_pg(schema, "leader"), *follower = open_pg(schema, "follower");
	struct state *mine = full_state(3), *theirs = NULL;
	char **names = NULL;
	size_t n = 0;

	(void)unused;
	assert_int_equal(state_lock(leader, "run"), 0);
	assert_int_equal(state_save(leader, mine), 0);
	assert_int_equal(state_load(follower, &theirs), 0);
	/* nothing changed: nothing read */
	assert_int_equal(state_refresh(follower, theirs, &names, &n), 0);
	assert_int_equal(n, 0);
	/* an insert, an update and a removal, by save and by journal */
	fill_cert(state_cert_put(mine, "added.example"), 7);
	state_cert_get(mine, "c00.example")->attempts = 5;
	assert_int_equal(state_cert_remove(mine, "c02.example"), 0);
	state_account_set(mine, "digicert", "auth_key_id", "k-2");
	state_webhook_seen(mine, "req-3");
	assert_int_equal(state_save(leader, mine), 0);
	state_cert_get(mine, "c01.example")->attempts = 6;
	assert_int_equal(state_journal(leader, mine, "c01.example", state_cert_get(mine, "c01.example")), 0);
	assert_int_equal(state_refresh(follower, theirs, &names, &n), 0);
	assert_int_equal(n, 4);
	assert_true(pgfix_has_name(names, n, "added.example"));
	assert_true(pgfix_has_name(names, n, "c00.example"));
	assert_true(pgfix_has_name(names, n, "c01.example"));
	assert_true(pgfix_has_name(names, n, "c02.example"));
	pgfix_free_names(names, n);
	test_assert_same_state(theirs, mine);
	/* and again: nothing */
	assert_int_equal(state_refresh(follower, theirs, &names, &n), 0);
	assert_int_equal(n, 0);
	/* a removed name put back is a change, not a removal */
	fill_cert(state_cert_put(mine, "c02.example"), 2);
	assert_int_equal(state_journal(leader, mine, "c02.example", state_cert_get(mine, "c02.example")), 0);
	assert_int_equal(state_refresh(follower, theirs, &names, &n), 0);
	assert_int_equal(n, 1);
	pgfix_free_names(names, n);
	test_assert_same_state(theirs, mine);
	state_free(mine);
	state_free(theirs);
	state_backend_free(leader);
	state_backend_free(follower);
	free(schema);
}

static void test_refresh_after_another_lineage_replaces_everything(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *a = open_pg(schema, "a"), *b = open_pg(schema, "b");
	struct state *first = full_state(2), *seen = NULL, *other = full_state(1);
	char **names = NULL;
	size_t n = 0;
	PGconn *c = raw_conn();
	char sql[256];

	(void)unused;
	assert_int_equal(state_lock(a, "apply"), 0);
	assert_int_equal(state_save(a, first), 0);
	assert_int_equal(state_load(b, &seen), 0);
	/* as `state migrate --force` would: the rows and header replaced by another lineage */
	snprintf(sql, sizeof(sql), "DELETE FROM \"%s\".header", schema);
	free(sql1(c, "%s", sql));
	other->serial = 0;
	assert_int_equal(state_save(a, other), 0);
	assert_int_equal(state_refresh(b, seen, &names, &n), 0);
	assert_true(pgfix_has_name(names, n, "c01.example"));
	pgfix_free_names(names, n);
	test_assert_same_state(seen, other);
	PQfinish(c);
	state_free(first);
	state_free(seen);
	state_free(other);
	state_backend_free(a);
	state_backend_free(b);
	free(schema);
}

static void test_on_change_fires_for_other_writers_not_our_own(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *a = open_pg(schema, "a"), *b = open_pg(schema, "b");
	struct pgfix_counter cnt = PGFIX_COUNTER_INIT;
	struct state *st = full_state(2), *bst = NULL;

	(void)unused;
	state_on_change(a, pgfix_counter_bump, &cnt);
	state_on_change(a, pgfix_counter_bump, &cnt); /* once only */
	assert_int_equal(state_lock(a, "apply"), 0);
	assert_int_equal(state_save(a, st), 0); /* our own: no wake-up */
	assert_int_equal(state_journal(a, st, "c00.example", state_cert_get(st, "c00.example")), 0);
	state_unlock(a);
	assert_int_equal(state_lock(b, "apply"), 0);
	assert_int_equal(state_load(b, &bst), 0);
	assert_int_equal(state_journal(b, bst, "c01.example", NULL), 0);
	assert_int_equal(state_kick(b, "sentinel.example"), 0);
	/* notices arrive in commit order: once b's kick is in, a's two writes were seen and did not count */
	wait_kick(a, &cnt, "sentinel.example");
	assert_int_equal(pgfix_counter_wait(&cnt, 2), 2);
	state_on_change(a, NULL, NULL);
	state_free(st);
	state_free(bst);
	state_backend_free(a);
	state_backend_free(b);
	free(schema);
}

static void test_kicks_reach_the_other_process_deduplicated(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *leader = open_pg(schema, "leader"), *follower = open_pg(schema, "follower");
	struct pgfix_counter cnt = PGFIX_COUNTER_INIT;
	char **names = NULL;
	size_t n = 0;

	(void)unused;
	state_on_change(leader, pgfix_counter_bump, &cnt);
	assert_int_equal(state_kick(follower, "www.example"), 0);
	assert_int_equal(state_kick(follower, "www.example"), 0);
	assert_int_equal(state_kick(follower, "api.example"), 0);
	assert_int_equal(state_kick(follower, "Bad Name"), CS_EINVALID);
	assert_int_equal(state_kick(follower, ""), CS_EINVALID);
	assert_int_equal(pgfix_counter_wait(&cnt, 3), 3);
	assert_int_equal(state_take_kicks(leader, &names, &n), 0);
	assert_int_equal(n, 2);
	assert_true(pgfix_has_name(names, n, "www.example"));
	assert_true(pgfix_has_name(names, n, "api.example"));
	pgfix_free_names(names, n);
	assert_int_equal(state_take_kicks(leader, &names, &n), 0);
	assert_int_equal(n, 0);
	/* the kicker's own kicks are not its own work */
	assert_int_equal(state_kick(leader, "self.example"), 0);
	assert_int_equal(state_kick(follower, "other.example"), 0);
	assert_int_equal(pgfix_counter_wait(&cnt, 4), 4);
	assert_int_equal(state_take_kicks(leader, &names, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "other.example");
	pgfix_free_names(names, n);
	state_backend_free(leader);
	state_backend_free(follower);
	free(schema);
}

static void test_a_damaged_row_is_refused_with_its_place(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *be = open_pg(schema, "a");
	struct state *st = full_state(2), *got = NULL;
	PGconn *c = raw_conn();
	char sql[256];

	(void)unused;
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_save(be, st), 0);
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".certs SET doc = '{\"phase\": 7}' WHERE name = 'c01.example'", schema);
	free(sql1(c, "%s", sql));
	assert_int_equal(state_load(be, &got), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), schema));
	assert_non_null(strstr(cs_errmsg(), "certificates.\"c01.example\".phase: expected"));
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".certs SET doc = '{\"phase\": \"ready\",' WHERE name = 'c01.example'",
		 schema);
	free(sql1(c, "%s", sql));
	assert_int_equal(state_load(be, &got), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificates.\"c01.example\":1:"));
	assert_non_null(strstr(cs_errmsg(), "not valid JSON"));
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".header SET accounts = '{\"x\": 5}'", schema);
	free(sql1(c, "%s", sql));
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".certs SET doc = '{\"phase\": \"ready\"}'", schema);
	free(sql1(c, "%s", sql));
	assert_int_equal(state_load(be, &got), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "header"));
	assert_non_null(strstr(cs_errmsg(), "accounts"));
	assert_null(got);
	PQfinish(c);
	state_free(st);
	state_backend_free(be);
	free(schema);
}

static void test_a_read_is_not_blocked_by_an_open_write(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *be = open_pg(schema, "a"), *reader = open_pg(schema, "r");
	struct state *st = full_state(2), *got = NULL;
	PGconn *c = raw_conn();
	char sql[256];

	(void)unused;
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_save(be, st), 0);
	/* a writer in the middle of a transaction holds the header and a row */
	free(sql1(c, "BEGIN"));
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".header SET serial = 99", schema);
	free(sql1(c, "%s", sql));
	snprintf(sql, sizeof(sql), "UPDATE \"%s\".certs SET changed_serial = 99", schema);
	free(sql1(c, "%s", sql));
	assert_int_equal(state_load(reader, &got), 0);
	assert_int_equal(got->serial, 1);
	test_assert_same_state(got, st);
	free(sql1(c, "ROLLBACK"));
	PQfinish(c);
	state_free(st);
	state_free(got);
	state_backend_free(be);
	state_backend_free(reader);
	free(schema);
}

static void test_a_lost_connection_is_reopened_and_the_listener_says_so(void **unused)
{
	char *schema = test_pg_schema();
	struct state_backend *be = open_pg(schema, "a"), *other = open_pg(schema, "b");
	struct pgfix_counter cnt = PGFIX_COUNTER_INIT;
	struct state *st = full_state(2), *got = NULL;
	PGconn *c = raw_conn();
	int pid;

	(void)unused;
	state_on_change(be, pgfix_counter_bump, &cnt);
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_save(be, st), 0);
	/* the server drops the backend's connection: the next write reconnects and goes through */
	pid = PQbackendPID(((struct state_pg *)be)->conn);
	free(sql1(c, "SELECT pg_terminate_backend(%d)", pid));
	state_cert_get(st, "c01.example")->attempts = 4;
	assert_int_equal(state_journal(be, st, "c01.example", state_cert_get(st, "c01.example")), 0);
	assert_int_equal(state_load(other, &got), 0);
	test_assert_same_state(got, st);
	state_free(got);
	/* the listener's connection dropped: it reconnects and wakes the daemon (a change may be missed) */
	free(sql1(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"certsync_%s\"'",
		  schema));
	assert_int_equal(pgfix_counter_wait(&cnt, 1), 1);
	/* and listens again */
	assert_int_equal(state_kick(other, "x.example"), 0);
	assert_int_equal(pgfix_counter_wait(&cnt, 2), 2);
	/* reads reconnect too */
	pid = PQbackendPID(((struct state_pg *)be)->conn);
	free(sql1(c, "SELECT pg_terminate_backend(%d)", pid));
	assert_int_equal(state_load(be, &got), 0);
	test_assert_same_state(got, st);
	state_free(got);
	PQfinish(c);
	state_free(st);
	state_backend_free(be);
	state_backend_free(other);
	free(schema);
}

/* tests/pg/pgtest.sh on the server make unit started (CERTSYNC_TEST_PG_DIR). */
static void pgtest(const char *cmd, const char *dir, const char *port)
{
	char *line = xasprintf("sh %s/tests/pg/pgtest.sh %s %s %s >/dev/null", test_srcdir(), cmd, dir, port);

	assert_int_equal(system(line), 0);
	free(line);
}

static void test_a_stopped_server_is_transient_and_a_restarted_one_is_reconnected(void **unused)
{
	const char *dir = getenv("CERTSYNC_TEST_PG_DIR");
	char *schema = test_pg_schema(), *portfile, *port, *where;
	struct state_backend *be, *other;
	struct pgfix_counter cnt = PGFIX_COUNTER_INIT;
	struct state *st = full_state(2), *got = NULL;
	struct buf text = BUF_INIT;
	struct state_cert *c;

	(void)unused;
	if (!dir || !*dir)
		fail_msg("CERTSYNC_TEST_PG_DIR is not set: run the unit tests with make unit");
	portfile = xasprintf("%s/port", dir);
	assert_int_equal(fsutil_read_file(portfile, 64, &text), 0);
	port = xstrndup(text.data, strcspn(text.data, "\n"));
	where = xasprintf("host=127.0.0.1 port=%s", port);
	be = open_pg(schema, "a");
	other = open_pg(schema, "b");
	state_on_change(be, pgfix_counter_bump, &cnt);
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_save(be, st), 0);

	pgtest("stop", dir, "");
	c = state_cert_get(st, "c01.example");
	c->attempts = 8;
	assert_int_equal(state_journal(be, st, c->name, c), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), where));
	assert_non_null(strstr(cs_errmsg(), schema));
	assert_int_equal(st->serial, 1);
	assert_int_equal(state_load(other, &got), CS_ETRANSIENT);
	assert_null(got);

	pgtest("start", dir, port);
	/* the listener comes back by itself and wakes the daemon: changes may have been missed */
	assert_true(pgfix_counter_wait(&cnt, 1) >= 1);
	assert_int_equal(state_journal(be, st, c->name, c), 0);
	assert_int_equal(st->serial, 2);
	assert_int_equal(state_load(other, &got), 0);
	test_assert_same_state(got, st);
	state_free(got);
	buf_free(&text);
	free(portfile);
	free(port);
	free(where);
	state_free(st);
	state_backend_free(be);
	state_backend_free(other);
	free(schema);
}

static void test_open_refuses_a_bad_schema_and_names_an_absent_server(void **unused)
{
	struct state_pg_opts o = {test_pg_url(), "Bad-Name", 15000, NULL, NULL};
	struct state_pg_opts down = {"postgresql://u:pw-never-shown@127.0.0.1:1/db?connect_timeout=2", NULL, 0, NULL,
				     NULL};
	struct state_backend *be = NULL;

	(void)unused;
	assert_int_equal(state_pg_open(&o, &be), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "Bad-Name"));
	assert_int_equal(state_pg_open(&down, &be), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "host=127.0.0.1 port=1"));
	assert_non_null(strstr(cs_errmsg(), "schema certsync"));
	assert_null(strstr(cs_errmsg(), "pw-never-shown"));
	assert_null(be);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_fresh_database_loads_as_an_empty_state),
		cmocka_unit_test(test_round_trip_of_a_full_state_encodes_as_the_file_backend),
		cmocka_unit_test(test_save_writes_only_the_records_that_changed),
		cmocka_unit_test(test_a_serial_moved_by_another_writer_is_a_conflict),
		cmocka_unit_test(test_a_write_without_the_lease_is_fenced),
		cmocka_unit_test(test_journal_writes_one_record_and_a_removal),
		cmocka_unit_test(test_note_source_writes_the_header_alone),
		cmocka_unit_test(test_refresh_brings_in_another_writers_changes),
		cmocka_unit_test(test_refresh_after_another_lineage_replaces_everything),
		cmocka_unit_test(test_on_change_fires_for_other_writers_not_our_own),
		cmocka_unit_test(test_kicks_reach_the_other_process_deduplicated),
		cmocka_unit_test(test_a_damaged_row_is_refused_with_its_place),
		cmocka_unit_test(test_a_read_is_not_blocked_by_an_open_write),
		cmocka_unit_test(test_a_lost_connection_is_reopened_and_the_listener_says_so),
		cmocka_unit_test(test_a_stopped_server_is_transient_and_a_restarted_one_is_reconnected),
		cmocka_unit_test(test_open_refuses_a_bad_schema_and_names_an_absent_server),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
