/* PostgreSQL connection helpers against a real server (make unit starts one): describe, errors, migrations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../state/pgconn.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "testutil.h"

static void test_describe_never_shows_the_password(void **unused)
{
	char out[256];

	(void)unused;
	pgconn_describe("postgresql://alice:s3cretpass@db.example:6543/certs?sslmode=require", out, sizeof(out));
	assert_non_null(strstr(out, "host=db.example"));
	assert_non_null(strstr(out, "port=6543"));
	assert_non_null(strstr(out, "dbname=certs"));
	assert_non_null(strstr(out, "user=alice"));
	assert_null(strstr(out, "s3cretpass"));
	pgconn_describe("host=h1 password=kv-secret-1 dbname=x", out, sizeof(out));
	assert_non_null(strstr(out, "host=h1"));
	assert_null(strstr(out, "kv-secret-1"));
	pgconn_describe("postgresql://[bad", out, sizeof(out));
	assert_string_equal(out, "postgres (unparsable URL)");
}

static void test_schema_names(void **unused)
{
	(void)unused;
	assert_true(pgconn_schema_valid("certsync"));
	assert_true(pgconn_schema_valid("_x9"));
	assert_false(pgconn_schema_valid(""));
	assert_false(pgconn_schema_valid("Certsync"));
	assert_false(pgconn_schema_valid("a-b"));
	assert_false(pgconn_schema_valid("x\"; DROP"));
	assert_false(pgconn_schema_valid("pg_catalog"));
	assert_false(pgconn_schema_valid("9a"));
}

static void test_a_server_that_is_not_there_is_transient_and_names_no_password(void **unused)
{
	PGconn *c = NULL;

	(void)unused;
	/* Port 1 on loopback: nothing listens there. */
	assert_int_equal(
		pgconn_open("postgresql://u:pw-never-shown@127.0.0.1:1/db?connect_timeout=2", "postgres test", &c),
		CS_ETRANSIENT);
	assert_null(c);
	assert_non_null(strstr(cs_errmsg(), "postgres test: cannot connect"));
	assert_null(strstr(cs_errmsg(), "pw-never-shown"));
	assert_int_equal(pgconn_open("postgresql://[bad", "x", &c), CS_EINVALID);
}

/* A refused login reads as the server said it, without libpq's "FATAL:  " and without the password. */
static void test_a_refused_login_is_one_clean_line(void **unused)
{
	const char *url = test_pg_url(), *colon = strchr(url + strlen("postgresql://"), ':'), *at = strchr(url, '@');
	char *bad;
	PGconn *c = NULL;

	(void)unused;
	assert_non_null(colon);
	assert_non_null(at);
	bad = xasprintf("%.*s:wrong-pw-never-shown%s", (int)(colon - url), url, at);
	assert_int_equal(pgconn_open(bad, "postgres test", &c), CS_ETRANSIENT);
	assert_null(c);
	assert_non_null(strstr(cs_errmsg(), "failed: password authentication failed for user"));
	assert_null(strstr(cs_errmsg(), "FATAL"));
	assert_null(strstr(cs_errmsg(), "wrong-pw-never-shown"));
	assert_null(strchr(cs_errmsg(), '\n'));
	free(bad);
	assert_int_equal(pgconn_open(test_pg_url(), "test", &c), 0);
	assert_int_equal(pgconn_exec(c, "test", NULL, "SELECT * FROM no_such_table", 0, NULL), CS_ERROR);
	assert_non_null(strstr(cs_errmsg(), "test: relation \"no_such_table\" does not exist"));
	assert_null(strstr(cs_errmsg(), "ERROR:"));
	PQfinish(c);
}

static void test_migrate_is_idempotent_and_refuses_a_newer_schema(void **unused)
{
	char *schema = test_pg_schema(), *sql;
	PGconn *c = NULL;
	PGresult *r;

	(void)unused;
	assert_int_equal(pgconn_open(test_pg_url(), "test", &c), 0);
	assert_int_equal(pgconn_migrate(c, schema, "test"), 0);
	assert_int_equal(pgconn_migrate(c, schema, "test"), 0);
	sql = xasprintf("SELECT count(*), max(version) FROM \"%s\".migrations", schema);
	assert_int_equal(pgconn_exec(c, "test", &r, sql, 0, NULL), 0);
	assert_int_equal(atoi(PQgetvalue(r, 0, 0)), PGCONN_SCHEMA_VERSION);
	assert_int_equal(atoi(PQgetvalue(r, 0, 1)), PGCONN_SCHEMA_VERSION);
	PQclear(r);
	free(sql);
	sql = xasprintf("SELECT epoch FROM \"%s\".lease WHERE id = 1 AND expires_at < now()", schema);
	assert_int_equal(pgconn_exec(c, "test", &r, sql, 0, NULL), 0);
	assert_int_equal(PQntuples(r), 1);
	assert_string_equal(PQgetvalue(r, 0, 0), "0");
	PQclear(r);
	free(sql);
	sql = xasprintf("INSERT INTO \"%s\".migrations (version) VALUES (99)", schema);
	assert_int_equal(pgconn_exec(c, "test", NULL, sql, 0, NULL), 0);
	assert_int_equal(pgconn_migrate(c, schema, "test"), CS_ECONFLICT);
	assert_non_null(strstr(cs_errmsg(), "newer certsync"));
	free(sql);
	/* A failing statement: CS_ERROR with its SQLSTATE. */
	assert_int_equal(pgconn_exec(c, "test", NULL, "SELECT * FROM no_such_table", 0, NULL), CS_ERROR);
	assert_string_equal(pgconn_last_sqlstate(), "42P01");
	assert_non_null(strstr(cs_errmsg(), "SQLSTATE 42P01"));
	assert_int_equal(pgconn_migrate(c, "Bad-Name", "test"), CS_EINVALID);
	PQfinish(c);
	free(schema);
}

/* The statements of script as pgconn_stmt_len cuts them, joined by '|'. */
static char *split(const char *script)
{
	struct buf b = BUF_INIT;

	for (;;) {
		size_t n = pgconn_stmt_len(script);

		buf_append(&b, script, n);
		if (!script[n])
			break;
		buf_puts(&b, "|");
		script += n + 1;
	}
	return b.data ? b.data : xstrdup("");
}

static void assert_split(const char *script, const char *want)
{
	char *got = split(script);

	assert_string_equal(got, want);
	free(got);
}

static void test_scripts_split_on_semicolons_outside_quotes(void **unused)
{
	(void)unused;
	assert_split("", "");
	assert_split("SELECT 1", "SELECT 1");
	assert_split("SELECT 1;SELECT 2;", "SELECT 1|SELECT 2|");
	assert_split("SELECT 'a;b';SELECT 'it''s; fine'", "SELECT 'a;b'|SELECT 'it''s; fine'");
	assert_split("CREATE TABLE \"x;y\" (a int);SELECT 1", "CREATE TABLE \"x;y\" (a int)|SELECT 1");
	/* function bodies: $$ and tagged dollar quotes, with ';' and other quotes inside */
	assert_split("CREATE FUNCTION f() RETURNS int AS $$ BEGIN PERFORM 1; RETURN 2; END $$;SELECT 3",
		     "CREATE FUNCTION f() RETURNS int AS $$ BEGIN PERFORM 1; RETURN 2; END $$|SELECT 3");
	assert_split("DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$;SELECT 1",
		     "DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$|SELECT 1");
	assert_split("DO $a$ x $b$; $a$;x", "DO $a$ x $b$; $a$|x");
	/* $1 is a parameter, not a quote; a lone $ is nothing */
	assert_split("SELECT $1;SELECT $2::int, 'x';SELECT $", "SELECT $1|SELECT $2::int, 'x'|SELECT $");
	/* an unterminated quote runs to the end */
	assert_split("SELECT 'a;b", "SELECT 'a;b");
	assert_split("SELECT $$ a; b", "SELECT $$ a; b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_describe_never_shows_the_password),
		cmocka_unit_test(test_schema_names),
		cmocka_unit_test(test_a_server_that_is_not_there_is_transient_and_names_no_password),
		cmocka_unit_test(test_a_refused_login_is_one_clean_line),
		cmocka_unit_test(test_migrate_is_idempotent_and_refuses_a_newer_schema),
		cmocka_unit_test(test_scripts_split_on_semicolons_outside_quotes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
