/*
 * The PostgreSQL state backend's reads: load (one read-only snapshot, so a
 * plan neither blocks nor is blocked by the leader) and refresh (only what
 * changed since the serial a state was read at; one round trip).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/err.h"
#include "../util/util.h"
#include "state_int.h"
#include "state_pg_int.h"
#include "state_pg_store.h"

/* Where the header's columns sit in a result. */
struct state_pg_hcols {
	int version, lineage, serial, url, ref, commit, accounts, hooks;
};

static const struct state_pg_hcols state_pg_load_cols = {0, 1, 2, 3, 4, 5, 6, 7};
static const struct state_pg_hcols state_pg_refresh_cols = {4, 2, 1, 5, 6, 7, 8, 9};

static const char *state_pg_val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static void state_pg_kstr(struct buf *b, const char *key, const char *v, int *first)
{
	if (!v)
		return;
	buf_puts(b, *first ? "\"" : ",\"");
	buf_puts(b, key);
	buf_puts(b, "\":");
	buf_json_str(b, v);
	*first = 0;
}

/*
 * The header row as a state without records: put back together as a state
 * document and decoded by state_from_json, so that every field is checked
 * as it is in a state file.
 */
static int state_pg_header(struct state_pg *pg, const PGresult *r, int row, const struct state_pg_hcols *c,
			   struct state **out)
{
	const char *acc = state_pg_val(r, row, c->accounts), *hooks = state_pg_val(r, row, c->hooks);
	char *origin = xasprintf("%s header", pg->where);
	struct buf doc = BUF_INIT;
	struct state *st = NULL;
	int rc, first = 1;

	buf_printf(&doc, "{\"version\":%s,\"lineage\":", PQgetvalue(r, row, c->version));
	buf_json_str(&doc, PQgetvalue(r, row, c->lineage));
	buf_printf(&doc, ",\"serial\":%s,\"source\":{", PQgetvalue(r, row, c->serial));
	state_pg_kstr(&doc, "url", state_pg_val(r, row, c->url), &first);
	state_pg_kstr(&doc, "ref", state_pg_val(r, row, c->ref), &first);
	state_pg_kstr(&doc, "commit", state_pg_val(r, row, c->commit), &first);
	buf_printf(&doc, "},\"accounts\":%s,\"webhook_ids\":%s}", acc && *acc ? acc : "{}",
		   hooks && *hooks ? hooks : "[]");
	if ((rc = state_from_json(doc.data, doc.len, origin, &st)))
		goto out;
	if (state_cert_count(st)) {
		rc = cs_error(CS_EINVALID, "%s: accounts or webhook_ids is not what certsync writes", origin);
		goto out;
	}
	*out = st;
	st = NULL;
out:
	state_free(st);
	buf_free(&doc);
	free(origin);
	return rc;
}

/* One record row; errors name the schema and the certificate. */
static int state_pg_record(struct state_pg *pg, const char *name, const char *doc, size_t len, struct state_cert **out)
{
	if (!*name)
		return cs_error(CS_EINVALID, "%s: a certificate row has an empty name", pg->where);
	return state_cert_from_json(doc, len, pg->where, name, out);
}

static int state_pg_dig_cmp(const void *a, const void *b)
{
	return strcmp(((const struct state_pg_digest *)a)->name, ((const struct state_pg_digest *)b)->name);
}

/* ---------- load ---------- */

/*
 * The header row for a load: state_pg_load_cols, then what changes with every
 * write of it besides the serial (the row version's xmin, updated_at), which
 * the local snapshot's key covers too (state_pg_snap.c).
 */
static char *state_pg_header_sql(const struct state_pg_store *s)
{
	return xasprintf("SELECT version::text, lineage, serial::text, source_url, source_ref, source_commit,"
			 " accounts, webhook_ids, xmin::text,"
			 " floor(extract(epoch FROM updated_at) * 1000000)::bigint::text FROM %s WHERE id = 1",
			 s->t_header);
}

/* Reads header and rows in one REPEATABLE READ READ ONLY transaction. */
static int state_pg_read_rows(struct state_pg *pg, PGresult **hdr, PGresult **rows)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	char *q1 = state_pg_header_sql(s);
	char *q2 = xasprintf("SELECT name, doc FROM %s", s->t_certs);
	int rc;

	*hdr = *rows = NULL;
	if (!(rc = pgconn_exec(pg->conn, pg->where, NULL, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0,
			       NULL)) &&
	    !(rc = pgconn_exec(pg->conn, pg->where, hdr, q1, 0, NULL)) &&
	    !(rc = pgconn_exec(pg->conn, pg->where, rows, q2, 0, NULL)))
		rc = pgconn_exec(pg->conn, pg->where, NULL, "COMMIT", 0, NULL);
	if (rc) {
		if (!state_pg_lost(pg))
			PQclear(PQexec(pg->conn, "ROLLBACK"));
		PQclear(*hdr);
		PQclear(*rows);
		*hdr = *rows = NULL;
	}
	free(q1);
	free(q2);
	return rc;
}

/* Decodes what state_pg_read_rows read; *dig (sorted by name) gets a digest per row. */
static int state_pg_assemble(struct state_pg *pg, const PGresult *hdr, const PGresult *rows, struct state **out,
			     struct state_pg_digest **dig)
{
	int n = PQntuples(rows), rc = 0;
	struct state_pg_digest *d = xcalloc((size_t)n + 1, sizeof(*d));
	struct state *st = NULL;
	size_t total = 0;

	if (PQntuples(hdr) == 1)
		rc = state_pg_header(pg, hdr, 0, &state_pg_load_cols, &st);
	else
		st = state_new(); /* nothing written yet: a fresh state, as a missing state file */
	if (rc)
		goto out;
	state_cert_reserve(st, (size_t)n);
	for (int i = 0; i < n && !rc; i++) {
		const char *name = PQgetvalue(rows, i, 0), *doc = PQgetvalue(rows, i, 1);
		size_t len = (size_t)PQgetlength(rows, i, 1);
		struct state_cert *c = NULL;

		if ((total += len) > STATE_MAX_BYTES) {
			rc = cs_error(CS_EINVALID, "%s: the records pass %u bytes, the state's limit", pg->where,
				      STATE_MAX_BYTES);
			break;
		}
		if ((rc = state_pg_record(pg, name, doc, len, &c)))
			break;
		state_cert_adopt(st, c);
		d[i].name = xstrdup(name);
		state_pg_sha(doc, len, d[i].sha);
	}
	if (rc)
		goto out;
	qsort(d, (size_t)n, sizeof(*d), state_pg_dig_cmp);
	*out = st;
	*dig = d;
	st = NULL;
	d = NULL;
out:
	for (int i = 0; d && i < n; i++)
		free(d[i].name);
	free(d);
	state_free(st);
	return rc;
}

/* The digests become dig (n of them, sorted by name): the rows as st was read. */
static void state_pg_dig_take(struct state_pg_store *s, const struct state *st, struct state_pg_digest *dig, size_t n)
{
	state_pg_dig_clear(s);
	s->dig = dig;
	s->n_dig = n;
	s->dig_valid = 1;
	s->dig_serial = st->serial;
	memcpy(s->dig_lineage, st->lineage, sizeof(s->dig_lineage));
}

/*
 * The header row alone (one statement, consistent by itself) and, when the
 * local snapshot was made from exactly that row, the state from it: 0 with
 * *out, 1 when the rows must be read, or an error of the statement.
 */
static int state_pg_read_snap(struct state_pg *pg, struct state **out)
{
	struct state_pg_digest *dig = NULL;
	PGresult *hdr = NULL;
	char *sql;
	size_t n = 0;
	int rc;

	if (!pg->snap_path)
		return 1;
	sql = state_pg_header_sql(state_pg_store_of(pg));
	rc = pgconn_exec(pg->conn, pg->where, &hdr, sql, 0, NULL);
	free(sql);
	if (!rc && !(rc = state_pg_snap_load(pg, hdr, out, &dig, &n)))
		state_pg_dig_take(state_pg_store_of(pg), *out, dig, n);
	PQclear(hdr);
	return rc;
}

/*
 * Reads the whole state (pg->mu held): from the local snapshot when it is
 * the header row's, else every row (and the snapshot is written for the next
 * load). The digests become the rows read.
 */
static int state_pg_read_all(struct state_pg *pg, struct state **out)
{
	PGresult *hdr = NULL, *rows = NULL;
	struct state_pg_digest *dig = NULL;
	struct state *st = NULL;
	size_t n;
	int rc;

	for (int attempt = 0;; attempt++) {
		if ((rc = state_pg_ready(pg)))
			return rc;
		if ((rc = state_pg_read_snap(pg, out)) <= 0 && (!rc || !state_pg_lost(pg) || attempt))
			return rc;
		if (rc == 1)
			rc = state_pg_read_rows(pg, &hdr, &rows);
		if (!rc || !state_pg_lost(pg) || attempt)
			break;
		state_pg_drop(pg); /* a read is always safe to repeat */
	}
	if (rc)
		return rc;
	rc = state_pg_assemble(pg, hdr, rows, &st, &dig);
	n = (size_t)PQntuples(rows);
	PQclear(rows); /* decoded: the 10 MB of text need not be at the peak with the snapshot being written */
	if (!rc) {
		state_pg_dig_take(state_pg_store_of(pg), st, dig, n);
		state_pg_snap_save(pg, hdr, st, dig, n);
		*out = st;
	}
	PQclear(hdr);
	return rc;
}

int state_pg_load(struct state_backend *be, struct state **out)
{
	struct state_pg *pg = state_pg_of(be);
	int rc;

	pthread_mutex_lock(&pg->mu);
	rc = state_pg_read_all(pg, out);
	pthread_mutex_unlock(&pg->mu);
	return rc;
}

/*
 * After this process's last write: the snapshot of st as written, when the
 * digests are the rows of st's serial and the header row is still that
 * serial's (state_pg_snap_save checks lineage and serial against it). The
 * first plan after an apply then reads the header row alone.
 */
void state_pg_keep_snapshot(struct state_backend *be, const struct state *st)
{
	struct state_pg *pg = state_pg_of(be);
	struct state_pg_store *s = state_pg_store_of(pg);
	PGresult *hdr = NULL;
	char *sql;

	pthread_mutex_lock(&pg->mu);
	if (pg->snap_path && pg->conn && state_pg_dig_usable(s, st)) {
		sql = state_pg_header_sql(s);
		if (!pgconn_exec(pg->conn, pg->where, &hdr, sql, 0, NULL))
			state_pg_snap_save(pg, hdr, st, s->dig, s->n_dig);
		else
			cs_error_clear(); /* best effort: the next load reads the rows */
		PQclear(hdr);
		free(sql);
	}
	pthread_mutex_unlock(&pg->mu);
}

/* ---------- refresh ---------- */

/* Names that changed, for the caller. */
struct state_pg_names {
	char **v;
	size_t n, cap;
};

static void state_pg_names_add(struct state_pg_names *nm, const char *name)
{
	util_grow(&nm->v, &nm->cap, nm->n + 1, sizeof(*nm->v));
	nm->v[nm->n++] = xstrdup(name);
}

static void state_pg_names_free(struct state_pg_names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->v[i]);
	free(nm->v);
}

/*
 * Another lineage was put in the database, or its serial went back (a
 * restore): st becomes the stored state, all of it.
 */
static int state_pg_refresh_all(struct state_pg *pg, struct state *st, struct state_pg_names *nm)
{
	struct state *fresh = NULL, tmp;
	struct state_cert **v;
	size_t n;
	int rc;

	if ((rc = state_pg_read_all(pg, &fresh)))
		return rc;
	v = state_cert_list(st, &n);
	for (size_t i = 0; i < n; i++)
		if (!state_cert_get(fresh, v[i]->name))
			state_pg_names_add(nm, v[i]->name);
	free(v);
	v = state_cert_list(fresh, &n);
	for (size_t i = 0; i < n; i++)
		state_pg_names_add(nm, v[i]->name);
	free(v);
	tmp = *st;
	*st = *fresh;
	*fresh = tmp;
	state_free(fresh);
	return 0;
}

/* The header's fields (not its records) into st. */
static void state_pg_take_header(struct state *st, struct state *h)
{
	struct state_account *acc = st->accounts;
	size_t n_acc = st->n_accounts;

	st->version = h->version;
	st->serial = h->serial;
	state_set_source(st, h->source_url, h->source_ref, h->source_commit);
	st->accounts = h->accounts;
	st->n_accounts = h->n_accounts;
	h->accounts = acc;
	h->n_accounts = n_acc;
	for (size_t i = 0; i < h->n_webhook_ids; i++)
		state_webhook_seen(st, h->webhook_ids[i]);
}

/* Applies a refresh result: header row 'h', changed records 'c', removed names 'r'. */
static int state_pg_refresh_apply(struct state_pg *pg, struct state *st, const PGresult *r, struct state_pg_names *nm)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	int n = PQntuples(r), rc = 0, usable = state_pg_dig_usable(s, st);
	struct state_cert **recs = xcalloc((size_t)n + 1, sizeof(*recs));
	struct state *h = NULL;

	/* everything decoded before st is touched: a bad row leaves st as it was */
	for (int i = 0; i < n && !rc; i++) {
		const char *k = PQgetvalue(r, i, 0);

		if (*k == 'h')
			rc = state_pg_header(pg, r, i, &state_pg_refresh_cols, &h);
		else if (*k == 'c')
			rc = state_pg_record(pg, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3),
					     &recs[i]);
	}
	if (rc)
		goto out;
	for (int i = 0; i < n; i++) {
		const char *k = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 2);
		unsigned char sha[32];

		if (*k == 'h')
			continue;
		state_pg_names_add(nm, name);
		if (*k == 'c') {
			state_pg_sha(PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3), sha);
			state_cert_adopt(st, recs[i]);
			recs[i] = NULL;
		} else if (state_cert_get(st, name)) {
			state_cert_remove(st, name);
		}
		if (usable)
			state_pg_dig_set(s, name, *k == 'c' ? sha : NULL);
	}
	if (h)
		state_pg_take_header(st, h);
	if (usable)
		s->dig_serial = st->serial;
out:
	for (int i = 0; i < n; i++)
		state_cert_free(recs[i]);
	free(recs);
	state_free(h);
	return rc;
}

/* The header when it moved, the records changed and the names removed since serial $1, in one statement. */
static int state_pg_refresh_query(struct state_pg *pg, const struct state *st, PGresult **r)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	char serial[24], *sql;
	const char *v[2] = {serial, st->lineage};
	int rc;

	snprintf(serial, sizeof(serial), "%llu", (unsigned long long)st->serial);
	sql = xasprintf("SELECT 'h' AS k, serial, lineage, NULL::text, version::text, source_url, source_ref,"
			" source_commit, accounts, webhook_ids FROM %s WHERE id = 1 AND (serial <> $1::bigint OR"
			" lineage <> $2)"
			" UNION ALL SELECT 'c', changed_serial, name, doc, NULL, NULL, NULL, NULL, NULL, NULL FROM %s"
			" WHERE changed_serial > $1::bigint"
			" UNION ALL SELECT 'r', removed_serial, r.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
			" FROM %s r WHERE removed_serial > $1::bigint AND NOT EXISTS (SELECT 1 FROM %s c"
			" WHERE c.name = r.name)",
			s->t_header, s->t_certs, s->t_removed, s->t_certs);
	for (int attempt = 0;; attempt++) {
		if ((rc = state_pg_ready(pg)))
			break;
		rc = pgconn_exec(pg->conn, pg->where, r, sql, 2, v);
		if (!rc || !state_pg_lost(pg) || attempt)
			break;
		state_pg_drop(pg);
	}
	free(sql);
	return rc;
}

/* 1 when the header row of r says st cannot be brought forward record by record. */
static int state_pg_refresh_diverged(const PGresult *r, const struct state *st)
{
	for (int i = 0; i < PQntuples(r); i++) {
		if (*PQgetvalue(r, i, 0) != 'h')
			continue;
		return strcmp(PQgetvalue(r, i, 2), st->lineage) || strtoull(PQgetvalue(r, i, 1), NULL, 10) < st->serial;
	}
	return 0;
}

int state_pg_refresh(struct state_backend *be, struct state *st, char ***changed, size_t *n_changed)
{
	struct state_pg *pg = state_pg_of(be);
	struct state_pg_names nm = {NULL, 0, 0};
	PGresult *r = NULL;
	int rc;

	*changed = NULL;
	*n_changed = 0;
	pthread_mutex_lock(&pg->mu);
	if ((rc = state_pg_refresh_query(pg, st, &r)))
		goto out;
	if (state_pg_refresh_diverged(r, st))
		rc = state_pg_refresh_all(pg, st, &nm);
	else
		rc = state_pg_refresh_apply(pg, st, r, &nm);
	if (rc)
		goto out;
	*changed = nm.v;
	*n_changed = nm.n;
	nm.v = NULL;
	nm.n = 0;
out:
	pthread_mutex_unlock(&pg->mu);
	PQclear(r);
	state_pg_names_free(&nm);
	return rc;
}
