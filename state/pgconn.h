/*
 * The PostgreSQL connection helpers shared by the state backend
 * (state_pg*.c) and the encrypted key store (keystore_pg.c): connecting
 * with libpq (URI or key=value; PGHOST, PGPASSWORD, PGSSLMODE… apply as for
 * psql), running statements with their errors classified, describing a
 * server without its password, and the schema's versioned migrations.
 */
#ifndef CS_STATE_PGCONN_H
#define CS_STATE_PGCONN_H

#include <libpq-fe.h>
#include <stddef.h>

#define PGCONN_WHERE_MAX 256
#define PGCONN_SCHEMA_MAX 63
#define PGCONN_CHANNEL_MAX 63 /* PostgreSQL identifiers (NAMEDATALEN - 1) */
#define PGCONN_TAG_MAX 64     /* the longest dollar-quote tag pgconn_stmt_len matches ("$body$") */

/*
 * The setting certsync's write transactions set (transaction-local, with
 * the fence: state_pg_fence) so that the schema's hand-edit triggers
 * (version 3) leave its statements alone.
 */
#define PGCONN_WRITER_SETTING "certsync.writer"

/*
 * "postgres host=db port=5432 dbname=certsync user=certsync": the server a
 * conninfo names (libpq defaults and PG* variables filled in), never its
 * password or any other parameter. A conninfo libpq cannot parse gives
 * "postgres (unparsable URL)".
 */
void pgconn_describe(const char *conninfo, char *out, size_t n);

/* 1 when schema is a plain identifier certsync accepts: [a-z_][a-z0-9_]{0,62}. */
int pgconn_schema_valid(const char *schema);

/*
 * A libpq message as certsync shows it, into out (n bytes): its first line
 * only, without the server's severity prefixes ("FATAL:  "), and password
 * (when not NULL and 4+ characters) masked wherever it appears.
 */
void pgconn_clean(const char *msg, const char *password, char *out, size_t n);

/*
 * Connects (application_name "certsync", connect_timeout 10 s unless the
 * conninfo sets them). CS_EINVALID when the conninfo does not parse,
 * CS_ETRANSIENT when the server cannot be reached or refuses the login;
 * messages name `where` and libpq's text with any password cut out.
 */
int pgconn_open(const char *conninfo, const char *where, PGconn **out);

/*
 * Runs sql with text params ($1…) on conn; *res (NULL when not wanted) gets
 * the result for the caller to PQclear(). Errors: CS_ETRANSIENT when the
 * connection is gone or SQLSTATE is of class 08 (connection), 40001/40P01
 * (serialization, deadlock), 57P0x (shutdown), 53xxx (resources);
 * CS_ERROR otherwise. Messages: "<where>: <first line of the error> (SQLSTATE x)".
 */
int pgconn_exec(PGconn *conn, const char *where, PGresult **res, const char *sql, int n_params,
		const char *const *params);

/* The SQLSTATE of the last error pgconn_exec met on this thread ("" when none). */
const char *pgconn_last_sqlstate(void);

/*
 * Creates the schema when missing and brings it to the current version
 * (PGCONN_SCHEMA_VERSION), one transaction per migration, serialised between
 * processes by an advisory lock. A schema newer than this binary knows is
 * CS_ECONFLICT ("written by a newer certsync"). Idempotent.
 *
 * Version 1 (all in the schema):
 *   migrations(version int primary key, applied_at timestamptz)
 *   header(id int primary key check (id = 1), version int, lineage text, serial bigint,
 *          source_url text, source_ref text, source_commit text,
 *          accounts text, webhook_ids text, updated_at timestamptz)   -- no row until the first write
 *   certs(name text primary key, doc text not null, changed_serial bigint not null)
 *   removed(name text primary key, removed_serial bigint not null)    -- tombstones for refresh
 *   lease(id int primary key check (id = 1), holder text, host text, pid int, operation text,
 *         epoch bigint not null, acquired_at timestamptz, renewed_at timestamptz,
 *         expires_at timestamptz)                                       -- one row: epoch 0, expired
 * Version 2 (the key store):
 *   keys(cert text, slot text, sealed bytea not null, key_id text not null,
 *        stored_at timestamptz not null default now(), primary key (cert, slot))
 *   keycheck(id int primary key check (id = 1), key_id text not null, sealed bytea not null)
 * Version 3 (a hand edit is seen; PostgreSQL 13 or later): on certs, for a
 * statement without PGCONN_WRITER_SETTING = 'on' (SQL by hand), triggers
 * that move the header row in the same transaction — serial + 1 and
 * updated_at once per transaction (not when the header row was already
 * written in it, as a certsync write that lost the setting has done) and a
 * NOTIFY on the channel — set changed_serial of the rows written to that
 * serial and leave a tombstone in removed for each row deleted, renamed
 * or truncated; on removed, one that touches the header row (updated_at).
 *   functions note_edit(), note_edited_row(), note_gone_row(), note_removed_edit()
 *   triggers certs.hand_edit, certs.hand_edited_row, certs.hand_gone_row, removed.hand_edit
 */
#define PGCONN_SCHEMA_VERSION 3
int pgconn_migrate(PGconn *conn, const char *schema, const char *where);

/*
 * The schema's change channel (LISTEN/NOTIFY): "certsync_<schema>", or for a
 * schema too long for an identifier its first 37 characters and a hash.
 */
void pgconn_channel(const char *schema, char out[PGCONN_CHANNEL_MAX + 1]);

/*
 * The length of script's first statement: up to its first ';' outside
 * '…' strings (a doubled '' inside is fine), "…" identifiers and dollar
 * quotes ($$…$$, $tag$…$tag$; "$1" is a parameter, not a quote), without
 * that ';'; the whole of script when there is none. An unterminated quote
 * runs to the end. No comments, no E'…' backslash escapes (the migrations
 * use neither).
 */
size_t pgconn_stmt_len(const char *script);

/* "\"schema\".table" for statements (schema already validated). Caller frees. */
char *pgconn_table(const char *schema, const char *table);

#endif
