/*
 * The PostgreSQL state backend's writes: one transaction that checks the
 * lease (fencing) and compare-and-swaps the header serial, writing only the
 * records whose encoding changed, and tells the other replicas (NOTIFY,
 * delivered on commit). A connection lost mid-write is re-opened once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/err.h"
#include "../util/util.h"
#include "state_int.h"
#include "state_pg_int.h"
#include "state_pg_store.h"

static int state_pg_exec(struct state_pg *pg, PGresult **res, const char *sql, int n, const char *const *params)
{
	return pgconn_exec(pg->conn, pg->where, res, sql, n, params);
}

/* ---------- one write transaction ---------- */

/*
 * A write: its statements (run inside BEGIN, after the fence) and the
 * serials it moves the header between.
 */
struct state_pg_write {
	int (*body)(struct state_pg *pg, struct state_pg_write *w);
	const struct state *st;
	uint64_t old_serial, new_serial;
	void *ctx;
};

/* The header's serial and lineage now ("" when there is no header). */
static int state_pg_header_now(struct state_pg *pg, uint64_t *serial, char lineage[37])
{
	struct state_pg_store *s = state_pg_store_of(pg);
	char *sql = xasprintf("SELECT serial, lineage FROM %s WHERE id = 1", s->t_header);
	PGresult *r = NULL;
	int rc = state_pg_exec(pg, &r, sql, 0, NULL);

	free(sql);
	if (rc)
		return rc;
	*serial = 0;
	lineage[0] = '\0';
	if (PQntuples(r) == 1) {
		*serial = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
		snprintf(lineage, 37, "%s", PQgetvalue(r, 0, 1));
	}
	PQclear(r);
	return 0;
}

/* The compare-and-swap found another serial or lineage: say which. */
static int state_pg_conflict(struct state_pg *pg, const struct state *st)
{
	uint64_t serial;
	char lineage[37];
	int rc = state_pg_header_now(pg, &serial, lineage);

	if (rc)
		return rc;
	if (*lineage && strcmp(lineage, st->lineage))
		return cs_error(CS_ECONFLICT,
				"the state in %s has lineage %s, not this process's %s: another state was put there",
				pg->where, lineage, st->lineage);
	return cs_error(CS_ECONFLICT,
			"the state in %s changed under this process (serial %llu, this process read %llu)", pg->where,
			(unsigned long long)serial, (unsigned long long)st->serial);
}

/* BEGIN, fence, body, COMMIT on pg->conn. *committing is set once COMMIT was sent. */
static int state_pg_txn(struct state_pg *pg, struct state_pg_write *w, int *committing)
{
	int rc;

	*committing = 0;
	if ((rc = state_pg_exec(pg, NULL, "BEGIN", 0, NULL)) || (rc = state_pg_fence(pg, pg->conn)) ||
	    (rc = w->body(pg, w)))
		goto out;
	*committing = 1;
	rc = state_pg_exec(pg, NULL, "COMMIT", 0, NULL);
out:
	if (rc && !state_pg_lost(pg))
		PQclear(PQexec(pg->conn, "ROLLBACK"));
	return rc;
}

/*
 * Runs a write (pg->mu held). A lost connection is re-opened once: the write
 * is repeated when it certainly did not commit, and when COMMIT itself was
 * cut off, the header tells whether it did (its serial is ours, or still the
 * one read).
 */
static int state_pg_run(struct state_pg *pg, struct state_pg_write *w)
{
	int rc, committing = 0;
	uint64_t serial;
	char lineage[37];

	for (int attempt = 0;; attempt++) {
		if ((rc = state_pg_ready(pg)))
			return rc;
		rc = state_pg_txn(pg, w, &committing);
		if (!rc || !state_pg_lost(pg) || attempt)
			return rc;
		state_pg_drop(pg);
		if ((rc = state_pg_ready(pg)))
			return rc;
		if (!committing)
			continue;
		if ((rc = state_pg_header_now(pg, &serial, lineage)))
			return rc;
		if (serial == w->new_serial && !strcmp(lineage, w->st->lineage))
			return 0; /* it committed before the connection went */
		if (serial != w->old_serial && *lineage)
			return state_pg_conflict(pg, w->st);
	}
}

/* ---------- statements ---------- */

/* A PostgreSQL text[] literal of n strings: {"a","b\"c"}. */
static void state_pg_array(struct buf *b, const char *const *v, size_t n)
{
	buf_puts(b, "{");
	for (size_t i = 0; i < n; i++) {
		const char *p = v[i], *run = p;

		buf_puts(b, i ? ",\"" : "\"");
		for (; *p; p++) {
			if (*p != '"' && *p != '\\')
				continue;
			buf_append(b, run, (size_t)(p - run));
			buf_append(b, "\\", 1);
			run = p;
		}
		buf_append(b, run, (size_t)(p - run));
		buf_puts(b, "\"");
	}
	buf_puts(b, "}");
}

#define STATE_PG_HEADER_INSERT                                                                                         \
	"INSERT INTO %s AS h (id, version, lineage, serial, source_url, source_ref, source_commit, accounts,"          \
	" webhook_ids, updated_at) VALUES (1, $1::int, $2, $3::bigint, $4, $5, $6, $7, $8, now())"

/* The header parameters $1..$10 (see STATE_PG_HEADER_INSERT, then the serial read and the channel). */
struct state_pg_hparams {
	char version[16], serial[24], old[24];
	struct buf accounts, hooks;
	const char *v[10];
};

static void state_pg_hparams_init(struct state_pg_hparams *h, struct state_pg *pg, const struct state *st,
				  uint64_t new_serial, int with_lists)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->version, sizeof(h->version), "%d", st->version);
	snprintf(h->serial, sizeof(h->serial), "%llu", (unsigned long long)new_serial);
	snprintf(h->old, sizeof(h->old), "%llu", (unsigned long long)st->serial);
	if (with_lists) {
		state_accounts_to_json(st, &h->accounts);
		state_webhooks_to_json(st, &h->hooks);
	}
	h->v[0] = h->version;
	h->v[1] = st->lineage;
	h->v[2] = h->serial;
	h->v[3] = st->source_url;
	h->v[4] = st->source_ref;
	h->v[5] = st->source_commit;
	h->v[6] = with_lists ? h->accounts.data : NULL;
	h->v[7] = with_lists ? h->hooks.data : NULL;
	h->v[8] = h->old;
	h->v[9] = state_pg_store_of(pg)->channel;
}

static void state_pg_hparams_free(struct state_pg_hparams *h)
{
	buf_free(&h->accounts);
	buf_free(&h->hooks);
}

/* ---------- save ---------- */

/* What a save writes: the records whose doc changed, and the names to remove. */
struct state_pg_delta {
	const char **up_name, **up_doc;
	struct buf *docs; /* one per record written (owned) */
	size_t n_up;
	const char **rm;
	size_t n_rm;
	const char **all; /* every name, when the digests are not usable (all rows rewritten) */
	size_t n_all;
	unsigned char (*sha)[32]; /* of every record in list order */
	struct state_cert **list;
	size_t n;
};

static void state_pg_delta_free(struct state_pg_delta *d)
{
	for (size_t i = 0; i < d->n_up; i++)
		buf_free(&d->docs[i]);
	free(d->docs);
	free(d->up_name);
	free(d->up_doc);
	free(d->rm);
	free(d->all);
	free(d->sha);
	free(d->list);
}

/* Encodes every record and keeps those whose digest differs from the stored row's. */
static void state_pg_delta_build(struct state_pg_store *s, const struct state *st, struct state_pg_delta *d)
{
	int usable = state_pg_dig_usable(s, st);
	struct buf doc = BUF_INIT;
	size_t j = 0;

	memset(d, 0, sizeof(*d));
	d->list = state_cert_list(st, &d->n);
	d->sha = xmalloc((d->n + 1) * sizeof(*d->sha));
	d->docs = xmalloc((d->n + 1) * sizeof(*d->docs));
	d->up_name = xmalloc((d->n + 1) * sizeof(*d->up_name));
	d->up_doc = xmalloc((d->n + 1) * sizeof(*d->up_doc));
	d->rm = xmalloc((s->n_dig + 1) * sizeof(*d->rm));
	if (!usable)
		d->all = xmalloc((d->n + 1) * sizeof(*d->all));
	for (size_t i = 0; i < d->n; i++) {
		const char *name = d->list[i]->name;
		int stored = 0;

		buf_clear(&doc);
		state_cert_to_json(d->list[i], 0, &doc);
		state_pg_sha(doc.data, doc.len, d->sha[i]);
		/* both sorted by name: a merge */
		for (; usable && j < s->n_dig && strcmp(s->dig[j].name, name) < 0; j++)
			d->rm[d->n_rm++] = s->dig[j].name;
		if (usable && j < s->n_dig && !strcmp(s->dig[j].name, name))
			stored = !memcmp(s->dig[j++].sha, d->sha[i], 32);
		if (!usable)
			d->all[d->n_all++] = name;
		if (stored)
			continue;
		d->docs[d->n_up] = doc;
		memset(&doc, 0, sizeof(doc));
		d->up_name[d->n_up] = name;
		d->up_doc[d->n_up] = d->docs[d->n_up].data;
		d->n_up++;
	}
	for (; usable && j < s->n_dig; j++)
		d->rm[d->n_rm++] = s->dig[j].name;
	buf_free(&doc);
}

/*
 * Runs a statement whose header compare-and-swap returns one row when it
 * took: no row is a conflict (another writer moved the serial). Frees sql.
 */
static int state_pg_exec_cas(struct state_pg *pg, struct state_pg_write *w, char *sql, int n, const char *const *v)
{
	PGresult *r = NULL;
	int rc = state_pg_exec(pg, &r, sql, n, v);

	if (!rc && PQntuples(r) != 1)
		rc = state_pg_conflict(pg, w->st);
	PQclear(r);
	free(sql);
	return rc;
}

/*
 * The header row written under the compare-and-swap on serial and lineage
 * (with NOTIFY): `set` lists the columns taken from the new values.
 */
static int state_pg_write_header(struct state_pg *pg, struct state_pg_write *w, const char *set)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	struct state_pg_hparams h;
	char *sql =
		xasprintf("WITH w AS (" STATE_PG_HEADER_INSERT " ON CONFLICT (id) DO UPDATE SET %s, updated_at = now()"
			  " WHERE h.serial = $9::bigint AND h.lineage = $2 RETURNING serial)"
			  " SELECT pg_notify($10, serial::text) FROM w",
			  s->t_header, set);
	int rc;

	state_pg_hparams_init(&h, pg, w->st, w->new_serial, 1);
	rc = state_pg_exec_cas(pg, w, sql, 10, h.v);
	state_pg_hparams_free(&h);
	return rc;
}

static int state_pg_save_header(struct state_pg *pg, struct state_pg_write *w)
{
	return state_pg_write_header(pg, w,
				     "version = excluded.version, serial = excluded.serial,"
				     " source_url = excluded.source_url, source_ref = excluded.source_ref,"
				     " source_commit = excluded.source_commit, accounts = excluded.accounts,"
				     " webhook_ids = excluded.webhook_ids");
}

/* Upserts the changed records, STATE_PG_CHUNK_ROWS per statement. */
static int state_pg_save_rows(struct state_pg *pg, struct state_pg_write *w, const struct state_pg_delta *d)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	char *sql = xasprintf("INSERT INTO %s (name, doc, changed_serial) SELECT n, d, $3::bigint"
			      " FROM unnest($1::text[], $2::text[]) AS u(n, d) ON CONFLICT (name) DO UPDATE"
			      " SET doc = excluded.doc, changed_serial = excluded.changed_serial",
			      s->t_certs);
	struct buf names = BUF_INIT, docs = BUF_INIT;
	char serial[24];
	int rc = 0;

	snprintf(serial, sizeof(serial), "%llu", (unsigned long long)w->new_serial);
	for (size_t i = 0; i < d->n_up && !rc; i += STATE_PG_CHUNK_ROWS) {
		size_t k = d->n_up - i < STATE_PG_CHUNK_ROWS ? d->n_up - i : STATE_PG_CHUNK_ROWS;
		const char *v[3];

		buf_clear(&names);
		buf_clear(&docs);
		state_pg_array(&names, d->up_name + i, k);
		state_pg_array(&docs, d->up_doc + i, k);
		v[0] = names.data;
		v[1] = docs.data;
		v[2] = serial;
		rc = state_pg_exec(pg, NULL, sql, 3, v);
	}
	buf_free(&names);
	buf_free(&docs);
	free(sql);
	return rc;
}

/*
 * Deletes the records st no longer has and leaves a tombstone for each (so
 * refresh sees the removal): the names known removed, or, without usable
 * digests, every row whose name is not in st.
 */
static int state_pg_save_removals(struct state_pg *pg, struct state_pg_write *w, const struct state_pg_delta *d)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	struct buf names = BUF_INIT;
	char serial[24], *sql;
	const char *v[2];
	int rc;

	if (!d->all && !d->n_rm)
		return 0;
	sql = xasprintf("WITH d AS (DELETE FROM %s WHERE %s RETURNING name) INSERT INTO %s (name, removed_serial)"
			" SELECT name, $2::bigint FROM d ON CONFLICT (name) DO UPDATE"
			" SET removed_serial = excluded.removed_serial",
			s->t_certs, d->all ? "NOT (name = ANY($1::text[]))" : "name = ANY($1::text[])", s->t_removed);
	snprintf(serial, sizeof(serial), "%llu", (unsigned long long)w->new_serial);
	if (d->all)
		state_pg_array(&names, d->all, d->n_all);
	else
		state_pg_array(&names, d->rm, d->n_rm);
	v[0] = names.data;
	v[1] = serial;
	rc = state_pg_exec(pg, NULL, sql, 2, v);
	buf_free(&names);
	free(sql);
	return rc;
}

static int state_pg_save_body(struct state_pg *pg, struct state_pg_write *w)
{
	const struct state_pg_delta *d = w->ctx;
	int rc;

	/* the header first: its row lock orders concurrent writers, and a stale serial stops here */
	if ((rc = state_pg_save_header(pg, w)) || (rc = state_pg_save_rows(pg, w, d)))
		return rc;
	return state_pg_save_removals(pg, w, d);
}

/* After a committed save: the digests are the rows now. */
static void state_pg_save_done(struct state_pg_store *s, const struct state *st, const struct state_pg_delta *d)
{
	state_pg_dig_clear(s);
	s->dig = xmalloc((d->n + 1) * sizeof(*s->dig));
	for (size_t i = 0; i < d->n; i++) {
		s->dig[i].name = xstrdup(d->list[i]->name);
		memcpy(s->dig[i].sha, d->sha[i], 32);
	}
	s->n_dig = d->n;
	s->dig_valid = 1;
	s->dig_serial = st->serial;
	memcpy(s->dig_lineage, st->lineage, sizeof(s->dig_lineage));
}

int state_pg_save(struct state_backend *be, struct state *st)
{
	struct state_pg *pg = state_pg_of(be);
	struct state_pg_store *s = state_pg_store_of(pg);
	struct state_pg_delta d;
	struct state_pg_write w = {state_pg_save_body, st, st->serial, st->serial + 1, &d};
	int rc;

	pthread_mutex_lock(&pg->mu);
	state_pg_delta_build(s, st, &d);
	if ((rc = state_pg_run(pg, &w)))
		goto out;
	st->serial = w.new_serial;
	state_pg_save_done(s, st, &d);
out:
	pthread_mutex_unlock(&pg->mu);
	state_pg_delta_free(&d);
	return rc;
}

/* ---------- journal ---------- */

struct state_pg_entry {
	const char *name;
	const struct buf *doc; /* NULL for a removal */
};

static int state_pg_journal_body(struct state_pg *pg, struct state_pg_write *w)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	const struct state_pg_entry *e = w->ctx;
	struct state_pg_hparams h;
	const char *v[12];
	char *sql;
	int rc;

	/* One statement: the header's compare-and-swap, the row (or its removal and tombstone), the notice. */
	if (e->doc)
		sql = xasprintf("WITH w AS (" STATE_PG_HEADER_INSERT
				" ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, updated_at = now()"
				" WHERE h.serial = $9::bigint AND h.lineage = $2 RETURNING serial),"
				" c AS (INSERT INTO %s (name, doc, changed_serial) SELECT $11, $12, serial FROM w"
				" ON CONFLICT (name) DO UPDATE SET doc = excluded.doc,"
				" changed_serial = excluded.changed_serial)"
				" SELECT pg_notify($10, serial::text) FROM w",
				s->t_header, s->t_certs);
	else
		sql = xasprintf("WITH w AS (" STATE_PG_HEADER_INSERT
				" ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, updated_at = now()"
				" WHERE h.serial = $9::bigint AND h.lineage = $2 RETURNING serial),"
				" d AS (DELETE FROM %s WHERE name = $11 AND EXISTS (SELECT 1 FROM w)),"
				" t AS (INSERT INTO %s (name, removed_serial) SELECT $11, serial FROM w"
				" ON CONFLICT (name) DO UPDATE SET removed_serial = excluded.removed_serial)"
				" SELECT pg_notify($10, serial::text) FROM w",
				s->t_header, s->t_certs, s->t_removed);
	state_pg_hparams_init(&h, pg, w->st, w->new_serial, 0);
	memcpy(v, h.v, sizeof(h.v));
	v[10] = e->name;
	v[11] = e->doc ? e->doc->data : NULL;
	rc = state_pg_exec_cas(pg, w, sql, e->doc ? 12 : 11, v);
	state_pg_hparams_free(&h);
	return rc;
}

/*
 * Runs w as the next write of st (w->st; serial + 1) under pg->mu. The
 * record digests follow the one row it changed (name, with sha; sha NULL:
 * removed), or none (name NULL); they are dropped when they were not in
 * step with the state.
 */
static int state_pg_write_next(struct state_pg *pg, struct state *st, struct state_pg_write *w, const char *name,
			       const unsigned char *sha)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	int rc, usable;

	pthread_mutex_lock(&pg->mu);
	w->old_serial = st->serial;
	w->new_serial = st->serial + 1;
	usable = state_pg_dig_usable(s, st);
	if (!(rc = state_pg_run(pg, w))) {
		st->serial = w->new_serial;
		if (!usable) {
			state_pg_dig_clear(s);
		} else {
			if (name)
				state_pg_dig_set(s, name, sha);
			s->dig_serial = st->serial;
		}
	}
	pthread_mutex_unlock(&pg->mu);
	return rc;
}

int state_pg_journal(struct state_backend *be, struct state *st, const char *name, const struct state_cert *rec)
{
	struct state_pg *pg = state_pg_of(be);
	struct buf doc = BUF_INIT;
	struct state_pg_entry e = {name, rec ? &doc : NULL};
	struct state_pg_write w = {state_pg_journal_body, st, 0, 0, &e};
	unsigned char sha[32];
	int rc;

	if (rec) {
		state_cert_to_json(rec, 0, &doc);
		state_pg_sha(doc.data, doc.len, sha);
	}
	rc = state_pg_write_next(pg, st, &w, name, rec ? sha : NULL);
	buf_free(&doc);
	return rc;
}

/* ---------- the source alone ---------- */

static int state_pg_note_source_body(struct state_pg *pg, struct state_pg_write *w)
{
	return state_pg_write_header(pg, w,
				     "serial = excluded.serial, source_url = excluded.source_url,"
				     " source_ref = excluded.source_ref, source_commit = excluded.source_commit");
}

int state_pg_note_source(struct state_backend *be, struct state *st)
{
	struct state_pg_write w = {state_pg_note_source_body, st, 0, 0, NULL};

	if (!st->serial)
		return state_pg_save(be, st); /* nothing stored yet: the header and every record */
	return state_pg_write_next(state_pg_of(be), st, &w, NULL, NULL);
}
