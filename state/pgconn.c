/* PostgreSQL connections for the state backend and the key store: connect, run, classify errors, migrate. */
#include "pgconn.h"
#include "../util/libversion.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/err.h"
#include "../util/util.h"

static _Thread_local char pgconn_sqlstate[6];

/* ---------- describing a server ---------- */

static const char *pgconn_opt(const PQconninfoOption *opts, const char *key)
{
	for (const PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, key))
			return o->val && *o->val ? o->val : NULL;
	return NULL;
}

void pgconn_describe(const char *conninfo, char *out, size_t n)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", NULL);
	PQconninfoOption *defs = PQconndefaults();
	static const char *const keys[] = {"host", "port", "dbname", "user"};
	size_t used;

	if (!n)
		goto out;
	if (!opts) {
		snprintf(out, n, "postgres (unparsable URL)");
		goto out;
	}
	used = (size_t)snprintf(out, n, "postgres");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && used < n; i++) {
		const char *v = pgconn_opt(opts, keys[i]);

		if (!v)
			v = pgconn_opt(defs, keys[i]); /* PGHOST, PGPORT, ... and libpq's own defaults */
		if (v)
			used += (size_t)snprintf(out + used, n - used, " %s=%s", keys[i], v);
	}
out:
	PQconninfoFree(opts);
	PQconninfoFree(defs);
}

int pgconn_schema_valid(const char *schema)
{
	size_t n = schema ? strlen(schema) : 0;

	if (n == 0 || n > PGCONN_SCHEMA_MAX || !((schema[0] >= 'a' && schema[0] <= 'z') || schema[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!((schema[i] >= 'a' && schema[i] <= 'z') || (schema[i] >= '0' && schema[i] <= '9') ||
		      schema[i] == '_'))
			return 0;
	return strncmp(schema, "pg_", 3) != 0;
}

void pgconn_channel(const char *schema, char out[PGCONN_CHANNEL_MAX + 1])
{
	if (strlen("certsync_") + strlen(schema) <= PGCONN_CHANNEL_MAX)
		snprintf(out, PGCONN_CHANNEL_MAX + 1, "certsync_%s", schema);
	else
		snprintf(out, PGCONN_CHANNEL_MAX + 1, "certsync_%.37s_%016llx", schema,
			 (unsigned long long)util_hash_str(schema));
}

char *pgconn_table(const char *schema, const char *table)
{
	return xasprintf("\"%s\".%s", schema, table);
}

/* ---------- connecting and running ---------- */

/* The server's severity prefixes libpq puts before its messages ("FATAL:  password ..."): noise to an operator. */
static void pgconn_unprefix(char *out)
{
	static const char *const sev[] = {"FATAL:  ", "ERROR:  ", "PANIC:  "};
	char *p;

	for (size_t i = 0; i < sizeof(sev) / sizeof(sev[0]); i++)
		while ((p = strstr(out, sev[i])))
			memmove(p, p + strlen(sev[i]), strlen(p + strlen(sev[i])) + 1);
}

/* libpq's message, first line only, without severity prefixes, with the password of the conninfo (if it appears) cut
 * out. */
void pgconn_clean(const char *msg, const char *password, char *out, size_t n)
{
	const char *nl = strchr(msg, '\n');
	size_t len = nl ? (size_t)(nl - msg) : strlen(msg);
	char *p;

	snprintf(out, n, "%.*s", (int)len, msg);
	pgconn_unprefix(out);
	if (password && strlen(password) >= 4)
		while ((p = strstr(out, password)))
			memset(p, '*', strlen(password));
}

/* NOTICEs ("already exists, skipping") are not for the operator. */
static void pgconn_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int pgconn_open(const char *conninfo, const char *where, PGconn **out)
{
	/* Defaults first: the conninfo (expanded from dbname) overrides them. */
	const char *keys[] = {"application_name", "connect_timeout", "dbname", NULL};
	const char *vals[] = {"certsync", "10", conninfo, NULL};
	PQconninfoOption *opts;
	char *errmsg = NULL, clean[512];
	const char *pw;
	PGconn *c;
	int rc;

	*out = NULL;
	if (!(opts = PQconninfoParse(conninfo ? conninfo : "", &errmsg))) {
		pgconn_clean(errmsg ? errmsg : "out of memory", NULL, clean, sizeof(clean));
		PQfreemem(errmsg);
		return cs_error(CS_EINVALID, "state.url does not parse as a PostgreSQL URL or key=value string: %s",
				clean);
	}
	c = PQconnectdbParams(keys, vals, 1);
	if (c && PQstatus(c) == CONNECTION_OK) {
		PQsetNoticeProcessor(c, pgconn_quiet, NULL);
		PQconninfoFree(opts);
		*out = c;
		return 0;
	}
	pw = pgconn_opt(opts, "password");
	pgconn_clean(c ? PQerrorMessage(c) : "out of memory", pw, clean, sizeof(clean));
	rc = cs_error(CS_ETRANSIENT, "%s: cannot connect: %s", where, clean);
	PQconninfoFree(opts);
	PQfinish(c);
	return rc;
}

const char *pgconn_last_sqlstate(void)
{
	return pgconn_sqlstate;
}

static int pgconn_transient(PGconn *conn, const char *state)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return 1;
	return !strncmp(state, "08", 2) || !strcmp(state, "40001") || !strcmp(state, "40P01") ||
	       !strncmp(state, "57P0", 4) || !strncmp(state, "53", 2);
}

int pgconn_exec(PGconn *conn, const char *where, PGresult **res, const char *sql, int n_params,
		const char *const *params)
{
	PGresult *r;
	ExecStatusType st;
	const char *state;
	char clean[512];
	int rc;

	if (res)
		*res = NULL;
	pgconn_sqlstate[0] = '\0';
	r = PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0);
	st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		if (res)
			*res = r;
		else
			PQclear(r);
		return 0;
	}
	state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	snprintf(pgconn_sqlstate, sizeof(pgconn_sqlstate), "%s", state ? state : "");
	pgconn_clean(r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(conn), NULL, clean,
		     sizeof(clean));
	rc = cs_error(pgconn_transient(conn, pgconn_sqlstate) ? CS_ETRANSIENT : CS_ERROR, "%s: %s%s%s%s", where, clean,
		      *pgconn_sqlstate ? " (SQLSTATE " : "", pgconn_sqlstate, *pgconn_sqlstate ? ")" : "");
	PQclear(r);
	return rc;
}

/* ---------- migrations ---------- */

/* The trigger condition of migration 3: the statement is not one of certsync's own writes. */
#define PGCONN_NOT_CERTSYNC "current_setting('" PGCONN_WRITER_SETTING "', true) IS DISTINCT FROM 'on'"

/*
 * Each entry runs with @S replaced by the quoted schema and @C by its change
 * channel; its ';'-separated statements (pgconn_stmt_len) run in order.
 */
static const char *const pgconn_migrations[] = {
	/* 1: the state and the lease */
	"CREATE TABLE @S.header (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL, lineage text NOT NULL,"
	" serial bigint NOT NULL, source_url text, source_ref text, source_commit text, accounts text,"
	" webhook_ids text, updated_at timestamptz NOT NULL DEFAULT now());"
	"CREATE TABLE @S.certs (name text PRIMARY KEY, doc text NOT NULL, changed_serial bigint NOT NULL);"
	"CREATE INDEX certs_changed ON @S.certs (changed_serial);"
	"CREATE TABLE @S.removed (name text PRIMARY KEY, removed_serial bigint NOT NULL);"
	"CREATE TABLE @S.lease (id int PRIMARY KEY CHECK (id = 1), holder text, host text, pid int,"
	" operation text, epoch bigint NOT NULL, acquired_at timestamptz, renewed_at timestamptz,"
	" expires_at timestamptz);"
	"INSERT INTO @S.lease (id, epoch, expires_at) VALUES (1, 0, '-infinity')",
	/* 2: the key store */
	"CREATE TABLE @S.keys (cert text NOT NULL, slot text NOT NULL, sealed bytea NOT NULL,"
	" key_id text NOT NULL, stored_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (cert, slot));"
	"CREATE TABLE @S.keycheck (id int PRIMARY KEY CHECK (id = 1), key_id text NOT NULL, sealed bytea NOT NULL)",
	/*
	 * 3: a change to certs or removed that certsync did not make (SQL by
	 * hand) moves the header row in its transaction, as a certsync write
	 * does: a statement on certs takes the serial one up (once per
	 * transaction: not when the header row is already this transaction's,
	 * which is also what a certsync write that lost its setting finds),
	 * marks the rows it writes with it, leaves tombstones for the rows it
	 * removes and NOTIFYs; one on removed only touches the row (no record
	 * changes). certsync's writes set certsync.writer (the fence) and fire
	 * none of them.
	 */
	"CREATE FUNCTION @S.note_edit() RETURNS trigger LANGUAGE plpgsql AS $$"
	" DECLARE s bigint;"
	" BEGIN"
	" UPDATE @S.header SET serial = serial + 1, updated_at = now()"
	" WHERE id = 1 AND xmin <> pg_current_xact_id()::xid RETURNING serial INTO s;"
	" IF s IS NOT NULL THEN PERFORM pg_notify('@C', s::text); END IF;"
	" IF TG_OP = 'TRUNCATE' THEN"
	" INSERT INTO @S.removed (name, removed_serial) SELECT c.name, h.serial FROM @S.certs c, @S.header h"
	" WHERE h.id = 1 ON CONFLICT (name) DO UPDATE SET removed_serial = excluded.removed_serial;"
	" END IF;"
	" RETURN NULL;"
	" END $$;"
	"CREATE FUNCTION @S.note_edited_row() RETURNS trigger LANGUAGE plpgsql AS $$"
	" BEGIN"
	" NEW.changed_serial := coalesce((SELECT serial FROM @S.header WHERE id = 1), NEW.changed_serial, 0);"
	" RETURN NEW;"
	" END $$;"
	"CREATE FUNCTION @S.note_gone_row() RETURNS trigger LANGUAGE plpgsql AS $$"
	" BEGIN"
	" IF TG_OP = 'DELETE' OR OLD.name IS DISTINCT FROM NEW.name THEN"
	" INSERT INTO @S.removed (name, removed_serial) SELECT OLD.name, serial FROM @S.header WHERE id = 1"
	" ON CONFLICT (name) DO UPDATE SET removed_serial = excluded.removed_serial;"
	" END IF;"
	" RETURN NULL;"
	" END $$;"
	"CREATE FUNCTION @S.note_removed_edit() RETURNS trigger LANGUAGE plpgsql AS $$"
	" BEGIN"
	" UPDATE @S.header SET updated_at = now() WHERE id = 1 AND xmin <> pg_current_xact_id()::xid;"
	" RETURN NULL;"
	" END $$;"
	"CREATE TRIGGER hand_edit BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @S.certs"
	" FOR EACH STATEMENT WHEN (" PGCONN_NOT_CERTSYNC ") EXECUTE FUNCTION @S.note_edit();"
	"CREATE TRIGGER hand_edited_row BEFORE INSERT OR UPDATE ON @S.certs"
	" FOR EACH ROW WHEN (" PGCONN_NOT_CERTSYNC ") EXECUTE FUNCTION @S.note_edited_row();"
	"CREATE TRIGGER hand_gone_row AFTER DELETE OR UPDATE OF name ON @S.certs"
	" FOR EACH ROW WHEN (" PGCONN_NOT_CERTSYNC ") EXECUTE FUNCTION @S.note_gone_row();"
	"CREATE TRIGGER hand_edit AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @S.removed"
	" FOR EACH STATEMENT WHEN (" PGCONN_NOT_CERTSYNC ") EXECUTE FUNCTION @S.note_removed_edit()",
};

/* script with every "@S" replaced by the quoted schema q and every "@C" by the channel ch. Caller frees. */
static char *pgconn_subst(const char *script, const char *q, const char *ch)
{
	struct buf b = BUF_INIT;
	const char *p;

	while ((p = strchr(script, '@'))) {
		buf_append(&b, script, (size_t)(p - script));
		if (p[1] == 'S' || p[1] == 'C') {
			buf_puts(&b, p[1] == 'S' ? q : ch);
			script = p + 2;
		} else {
			buf_append(&b, p, 1);
			script = p + 1;
		}
	}
	buf_puts(&b, script);
	return b.data;
}

/* The length of a dollar-quote opening tag at p ("$$", "$body$"), 0 when p does not open one ("$1", "$"). */
static size_t pgconn_dollar_tag(const char *p)
{
	size_t n = 1;

	if (p[1] >= '0' && p[1] <= '9')
		return 0;
	while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= '0' && p[n] <= '9') ||
	       p[n] == '_')
		n++;
	return p[n] == '$' ? n + 1 : 0;
}

size_t pgconn_stmt_len(const char *script)
{
	const char *p = script, *end;
	size_t tag;

	while (*p && *p != ';') {
		if (*p == '\'' || *p == '"') {
			/* a doubled quote inside is two quoted runs in a row: the same scan */
			end = strchr(p + 1, *p);
			p = end ? end + 1 : p + strlen(p);
		} else if (*p == '$' && (tag = pgconn_dollar_tag(p))) {
			char close[PGCONN_TAG_MAX + 1];

			snprintf(close, sizeof(close), "%.*s", (int)(tag < PGCONN_TAG_MAX ? tag : PGCONN_TAG_MAX), p);
			end = tag <= PGCONN_TAG_MAX ? strstr(p + tag, close) : NULL;
			p = end ? end + tag : p + strlen(p);
		} else {
			p++;
		}
	}
	return (size_t)(p - script);
}

/* One simple-query run (several statements), errors classified like pgconn_exec. */
static int pgconn_simple(PGconn *conn, const char *where, const char *sql)
{
	return pgconn_exec(conn, where, NULL, sql, 0, NULL);
}

static int pgconn_run_script(PGconn *conn, const char *where, const char *script)
{
	/* PQexecParams takes one statement: split on the ';' outside quotes and dollar quotes (function bodies). */
	int rc = 0;

	while (*script && !rc) {
		size_t n = pgconn_stmt_len(script);
		char *stmt = xstrndup(script, n);

		if (stmt[strspn(stmt, " \t\n")])
			rc = pgconn_simple(conn, where, stmt);
		free(stmt);
		script += n + (script[n] == ';');
	}
	return rc;
}

static int pgconn_version(PGconn *conn, const char *where, const char *q, int *version)
{
	char *sql = xasprintf("SELECT coalesce(max(version), 0) FROM %s.migrations", q);
	PGresult *r;
	int rc = pgconn_exec(conn, where, &r, sql, 0, NULL);

	free(sql);
	if (rc)
		return rc;
	*version = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return 0;
}

/*
 * 1 when the schema is at version `latest` already: one statement, no lock
 * (what nearly every start finds; the migration transaction costs six round
 * trips and the schema lock). Quiet: any error is the full path's to report.
 */
static int pgconn_current(PGconn *conn, const char *q, int latest)
{
	char *sql = xasprintf("SELECT coalesce(max(version), 0) FROM %s.migrations", q);
	PGresult *r = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
	int current = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
		      strtol(PQgetvalue(r, 0, 0), NULL, 10) == latest;

	PQclear(r);
	free(sql);
	return current;
}

int pgconn_migrate(PGconn *conn, const char *schema, const char *where)
{
	const int latest = (int)(sizeof(pgconn_migrations) / sizeof(pgconn_migrations[0]));
	char q[PGCONN_SCHEMA_MAX + 3], ch[PGCONN_CHANNEL_MAX + 1], *sql = NULL;
	const char *params[1] = {schema};
	int rc, version = 0;

	if (!pgconn_schema_valid(schema))
		return cs_error(CS_EINVALID, "state.schema \"%s\": use lowercase letters, digits and _ (not pg_…)",
				schema);
	snprintf(q, sizeof(q), "\"%s\"", schema);
	pgconn_channel(schema, ch);
	if (pgconn_current(conn, q, latest))
		return 0;
	if ((rc = pgconn_simple(conn, where, "BEGIN")))
		return rc;
	/* One migrator at a time per schema: the others wait here, then find nothing to do. */
	if ((rc = pgconn_exec(conn, where, NULL, "SELECT pg_advisory_xact_lock(hashtext('certsync:' || $1))", 1,
			      params)))
		goto out;
	sql = xasprintf("CREATE SCHEMA IF NOT EXISTS %s", q);
	if ((rc = pgconn_simple(conn, where, sql)))
		goto out;
	free(sql);
	sql = xasprintf("CREATE TABLE IF NOT EXISTS %s.migrations (version int PRIMARY KEY, applied_at timestamptz NOT "
			"NULL DEFAULT now())",
			q);
	if ((rc = pgconn_simple(conn, where, sql)) || (rc = pgconn_version(conn, where, q, &version)))
		goto out;
	if (version > latest) {
		rc = cs_error(CS_ECONFLICT,
			      "%s: schema \"%s\" is at version %d, written by a newer certsync (this one knows %d)",
			      where, schema, version, latest);
		goto out;
	}
	for (int v = version + 1; v <= latest && !rc; v++) {
		char num[16];
		const char *vp[1] = {num};
		char *script = NULL;

		free(sql);
		sql = xasprintf("INSERT INTO %s.migrations (version) VALUES ($1)", q);
		snprintf(num, sizeof(num), "%d", v);
		script = pgconn_subst(pgconn_migrations[v - 1], q, ch);
		rc = pgconn_run_script(conn, where, script);
		free(script);
		if (!rc)
			rc = pgconn_exec(conn, where, NULL, sql, 1, vp);
	}
out:
	free(sql);
	if (rc) {
		PQclear(PQexec(conn, "ROLLBACK"));
		return rc;
	}
	return pgconn_simple(conn, where, "COMMIT");
}

void libversion_libpq(char *out, size_t n)
{
	int v = PQlibVersion();

	snprintf(out, n, "libpq %d.%d", v / 10000, v % 10000);
}
