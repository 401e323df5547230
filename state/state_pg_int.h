/*
 * Inside the PostgreSQL backend: shared by state_pg.c (connection, schema
 * and migrations, load/save/journal/refresh, listener) and
 * state_pg_lease.c (the leader lease, its renewal thread, fencing).
 *
 * Schema: see pgconn_migrate (state/pgconn.h): header, certs, removed,
 * lease (version 1); keys, keycheck (version 2, used by keystore_pg.c);
 * the hand-edit triggers on certs and removed (version 3).
 */
#ifndef CS_STATE_STATE_PG_INT_H
#define CS_STATE_STATE_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>

#include "state.h"
#include "pgconn.h"
#include "state_pg.h"

struct state_pg_lease; /* state_pg_lease.c */

struct state_pg {
	struct state_backend base; /* first: the ops are handed a struct state_backend * */
	char *conninfo;		   /* a secret */
	char *schema;		   /* validated identifier */
	char *where;		   /* pgconn_describe(conninfo) + " schema " + schema, for messages */
	char *replica_id;
	int64_t lease_ms;
	pthread_mutex_t mu; /* serialises use of conn */
	PGconn *conn;	    /* load/save/journal/refresh (reconnected on loss) */
	struct state_pg_lease *lease;
	void *store; /* state_pg.c's bookkeeping (per-record digests, serial read, listener) */
	/* the local decoded snapshot (state_pg_snap.c): NULL path without a cache directory */
	char *snap_dir, *snap_path;
	uint64_t snap_id; /* hash of the server, database, role and schema */
};

/* A new connection to pg's server (pgconn_open with pg->where). */
int state_pg_connect(struct state_pg *pg, PGconn **out);

/* ---------- state_pg_lease.c ---------- */

/* Allocates the lease bookkeeping (no connection yet). */
struct state_pg_lease *state_pg_lease_new(struct state_pg *pg);
void state_pg_lease_free(struct state_pg_lease *l);

/*
 * ops->lock: takes the lease at once when it is free or expired (by the
 * database's clock), epoch + 1, and starts the renewal thread (its own
 * connection, every lease/3). CS_ELOCKED naming the holder (operation,
 * host, replica, pid, since, expires in) when another process holds it.
 * Called again while still leading: CS_ERROR; after the lease was lost
 * (leading() 0): ends the lost one as unlock() does and asks for a new epoch.
 */
int state_pg_lease_lock(struct state_pg *pg, const char *operation);
/* ops->unlock: stops renewing and releases the lease (expires now) so that another replica takes it at once. */
void state_pg_lease_unlock(struct state_pg *pg);
int state_pg_lease_leading(struct state_pg *pg);
uint64_t state_pg_lease_epoch(struct state_pg *pg);
int state_pg_lease_holder(struct state_pg *pg, char *desc, size_t n);

/*
 * Inside a write transaction on conn (state_pg.c's save/journal; run its
 * statements with pgconn_exec): locks the
 * lease row and checks it is still this process's (holder, epoch, not
 * expired by the database clock). CS_EFENCED ("this process is no longer
 * the leader: ... now held by ...") otherwise; the caller rolls back.
 */
int state_pg_fence(struct state_pg *pg, PGconn *conn);

#endif
