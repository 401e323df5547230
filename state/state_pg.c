/*
 * The PostgreSQL state backend: a header row and a row per record (state
 * and digests of what is stored here, opening, the ops). Writes are in
 * state_pg_write.c, reads in state_pg_read.c, the listener in
 * state_pg_listen.c, the lease in state_pg_lease.c.
 */
#include "state_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/util.h"
#include "state_int.h"
#include "state_pg_int.h"
#include "state_pg_store.h"

/* ---------- the connection ---------- */

int state_pg_connect(struct state_pg *pg, PGconn **out)
{
	return pgconn_open(pg->conninfo, pg->where, out);
}

int state_pg_ready(struct state_pg *pg)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	unsigned slot;
	int rc;

	if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
		return 0;
	state_pg_drop(pg);
	if ((rc = state_pg_connect(pg, &pg->conn)))
		return rc;
	slot = atomic_fetch_add(&s->own_next, 1) % STATE_PG_OWN_PIDS;
	atomic_store(&s->own_pid[slot], PQbackendPID(pg->conn));
	return 0;
}

int state_pg_lost(struct state_pg *pg)
{
	return !pg->conn || PQstatus(pg->conn) != CONNECTION_OK;
}

void state_pg_drop(struct state_pg *pg)
{
	PQfinish(pg->conn);
	pg->conn = NULL;
}

/* ---------- digests of what is stored ---------- */

void state_pg_sha(const char *doc, size_t len, unsigned char out[32])
{
	crypto_sha256(doc, len, out);
}

/* Index of name in s->dig, or where it would go. */
static size_t state_pg_dig_search(const struct state_pg_store *s, const char *name, int *found)
{
	return util_bsearch_name(s->dig, s->n_dig, sizeof(*s->dig), name, found);
}

struct state_pg_digest *state_pg_dig_find(struct state_pg_store *s, const char *name)
{
	int found;
	size_t i = state_pg_dig_search(s, name, &found);

	return found ? &s->dig[i] : NULL;
}

void state_pg_dig_set(struct state_pg_store *s, const char *name, const unsigned char *sha)
{
	int found;
	size_t i = state_pg_dig_search(s, name, &found);

	if (found && sha) {
		memcpy(s->dig[i].sha, sha, 32);
	} else if (found) {
		free(s->dig[i].name);
		memmove(&s->dig[i], &s->dig[i + 1], (s->n_dig - i - 1) * sizeof(*s->dig));
		s->n_dig--;
	} else if (sha) {
		s->dig = xrealloc(s->dig, (s->n_dig + 1) * sizeof(*s->dig));
		memmove(&s->dig[i + 1], &s->dig[i], (s->n_dig - i) * sizeof(*s->dig));
		s->dig[i].name = xstrdup(name);
		memcpy(s->dig[i].sha, sha, 32);
		s->n_dig++;
	}
}

int state_pg_dig_usable(const struct state_pg_store *s, const struct state *st)
{
	return s->dig_valid && s->dig_serial == st->serial && !strcmp(s->dig_lineage, st->lineage);
}

void state_pg_dig_clear(struct state_pg_store *s)
{
	for (size_t i = 0; i < s->n_dig; i++)
		free(s->dig[i].name);
	free(s->dig);
	s->dig = NULL;
	s->n_dig = 0;
	s->dig_valid = 0;
}

/* ---------- the backend ---------- */

static int state_pg_lock(struct state_backend *be, const char *operation)
{
	return state_pg_lease_lock(state_pg_of(be), operation);
}

static void state_pg_unlock(struct state_backend *be)
{
	state_pg_lease_unlock(state_pg_of(be));
}

static int state_pg_leading(struct state_backend *be)
{
	return state_pg_lease_leading(state_pg_of(be));
}

static uint64_t state_pg_epoch(struct state_backend *be)
{
	return state_pg_lease_epoch(state_pg_of(be));
}

static int state_pg_holder(struct state_backend *be, char *desc, size_t n)
{
	return state_pg_lease_holder(state_pg_of(be), desc, n);
}

static void state_pg_free(struct state_backend *be)
{
	struct state_pg *pg = state_pg_of(be);
	struct state_pg_store *s;

	if (!pg)
		return;
	s = state_pg_store_of(pg);
	state_pg_listen_stop(pg);
	state_pg_lease_free(pg->lease);
	state_pg_drop(pg);
	state_pg_dig_clear(s);
	for (size_t i = 0; i < s->n_kicks; i++)
		free(s->kicks[i]);
	free(s->kicks);
	free(s->t_header);
	free(s->t_certs);
	free(s->t_removed);
	pthread_mutex_destroy(&s->mu);
	free(s);
	pthread_mutex_destroy(&pg->mu);
	if (pg->conninfo)
		memset(pg->conninfo, 0, strlen(pg->conninfo)); /* it may hold a password */
	free(pg->conninfo);
	free(pg->schema);
	free(pg->where);
	free(pg->replica_id);
	free(pg->snap_dir);
	free(pg->snap_path);
	free(pg);
}

static const struct state_backend_ops state_pg_ops = {
	.name = "postgres",
	.lock = state_pg_lock,
	.unlock = state_pg_unlock,
	.load = state_pg_load,
	.save = state_pg_save,
	.journal = state_pg_journal,
	.note_source = state_pg_note_source,
	.keep_snapshot = state_pg_keep_snapshot,
	.free = state_pg_free,
	.leading = state_pg_leading,
	.epoch = state_pg_epoch,
	.on_change = state_pg_on_change,
	.kick = state_pg_kick,
	.take_kicks = state_pg_take_kicks,
	.take_foreign = state_pg_take_foreign,
	.refresh = state_pg_refresh,
	.holder = state_pg_holder,
};

static struct state_pg *state_pg_alloc(const struct state_pg_opts *o)
{
	struct state_pg *pg = xcalloc(1, sizeof(*pg));
	struct state_pg_store *s = xcalloc(1, sizeof(*s));
	char where[PGCONN_WHERE_MAX], host[256] = "unknown";

	pg->base.ops = &state_pg_ops;
	pg->conninfo = xstrdup(o->conninfo);
	pg->schema = xstrdup(o->schema);
	pgconn_describe(o->conninfo, where, sizeof(where));
	pg->where = xasprintf("%s schema %s", where, o->schema);
	if (o->replica_id && *o->replica_id) {
		pg->replica_id = xstrdup(o->replica_id);
	} else {
		if (gethostname(host, sizeof(host)) == 0)
			host[sizeof(host) - 1] = '\0';
		pg->replica_id = xasprintf("%s:%ld", host, (long)getpid());
	}
	pg->lease_ms = o->lease_ms > 0 ? o->lease_ms : STATE_PG_DEFAULT_LEASE_MS;
	pthread_mutex_init(&pg->mu, NULL);
	pgconn_channel(o->schema, s->channel);
	s->t_header = pgconn_table(o->schema, "header");
	s->t_certs = pgconn_table(o->schema, "certs");
	s->t_removed = pgconn_table(o->schema, "removed");
	s->wake[0] = s->wake[1] = -1;
	pthread_mutex_init(&s->mu, NULL);
	pg->store = s;
	return pg;
}

int state_pg_open(const struct state_pg_opts *o, struct state_backend **out)
{
	const char *schema = o->schema && *o->schema ? o->schema : STATE_PG_DEFAULT_SCHEMA;
	struct state_pg_opts opts = *o;
	struct state_pg *pg = NULL;
	int rc;

	if (!pgconn_schema_valid(schema))
		return cs_error(CS_EINVALID, "state.schema \"%s\": use lowercase letters, digits and _ (not pg_…)",
				schema);
	if (!o->conninfo)
		return cs_error(CS_EINVALID, "state.url is not set (the PostgreSQL server to keep the state on)");
	opts.schema = schema;
	pg = state_pg_alloc(&opts);
	if ((rc = state_pg_ready(pg)) || (rc = pgconn_migrate(pg->conn, pg->schema, pg->where)))
		goto out;
	state_pg_snap_init(pg, o->cache_dir);
	pg->lease = state_pg_lease_new(pg);
	*out = &pg->base;
	pg = NULL;
out:
	if (pg)
		state_pg_free(&pg->base);
	return rc;
}
