/*
 * The PostgreSQL state backend (docs/state.md): a header row and a row per
 * certificate in one schema, written with compare-and-swap on the serial
 * read; a lease row elects the one process that may write and call
 * providers, and every write carries its epoch (a fencing token), so a
 * deposed leader's write is refused by the database. LISTEN/NOTIFY tells
 * the other replicas of each change. The client is libpq: PGHOST,
 * PGPASSWORD, PGSSLMODE and the other standard variables work as for psql.
 */
#ifndef CS_STATE_STATE_PG_H
#define CS_STATE_STATE_PG_H

#include <stdint.h>

#include "state.h"

#define STATE_PG_DEFAULT_SCHEMA "certsync"
#define STATE_PG_DEFAULT_LEASE_MS 15000

struct state_pg_opts {
	const char *conninfo;	/* libpq URI or key=value string: a secret (may hold a password), never in a message */
	const char *schema;	/* created when missing, migrated to the current version */
	int64_t lease_ms;	/* the leader lease (default STATE_PG_DEFAULT_LEASE_MS) */
	const char *replica_id; /* names this process in the lease row (default: host name and pid) */
	const char *cache_dir;	/* where the local decoded snapshot is kept (state_pg_snap.c); NULL: none */
};

/*
 * Connects, creates or migrates the schema and returns the backend. Errors
 * name the server (host, port, database; never the password) and the libpq
 * message; a server that cannot be reached is CS_ETRANSIENT.
 */
int state_pg_open(const struct state_pg_opts *o, struct state_backend **out);

/*
 * Empties the stored state of be (a postgres backend whose lock the caller
 * holds): every record (leaving tombstones, so other replicas' refresh sees
 * the removals) and the header, in one fenced transaction; the next save
 * writes a new header, with any lineage. For `state migrate --force`.
 */
int state_pg_clear(struct state_backend *be);

#endif
