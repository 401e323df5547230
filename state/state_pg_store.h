/*
 * Inside the PostgreSQL backend's storage (state_pg.c, state_pg_read.c,
 * state_pg_listen.c): what is stored as this process last read or wrote it
 * (a digest per record, so a save writes only the records that changed), the
 * statements, the change channel and the listener.
 */
#ifndef CS_STATE_STATE_PG_STORE_H
#define CS_STATE_STATE_PG_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../util/buf.h"
#include "state_pg_int.h"

#define STATE_PG_KICKS_MAX 1000 /* names kept between two take_kicks calls */
#define STATE_PG_OWN_PIDS 4	/* this process's recent server pids (its connection is re-opened on loss) */
#define STATE_PG_CHUNK_ROWS 512 /* records per upsert statement */
#define STATE_PG_CHANNEL_MAX PGCONN_CHANNEL_MAX

/* One stored record: its name and the SHA-256 of the doc text in its row. */
struct state_pg_digest {
	char *name;
	unsigned char sha[32];
};

struct state_pg_store {
	char channel[STATE_PG_CHANNEL_MAX + 1]; /* "certsync_<schema>": changes (payload: serial) and kicks */
	char *t_header, *t_certs, *t_removed;	/* quoted table names */

	/*
	 * What the rows hold at serial dig_serial of lineage dig_lineage, sorted
	 * by name; valid only while dig_valid. Under pg->mu.
	 */
	struct state_pg_digest *dig;
	size_t n_dig;
	int dig_valid;
	uint64_t dig_serial;
	char dig_lineage[37];

	_Atomic int own_pid[STATE_PG_OWN_PIDS]; /* PQbackendPID of pg->conn, newest in own_pid[next % N] */
	_Atomic unsigned own_next;

	/* the listener (state_pg_listen.c) */
	pthread_mutex_t mu; /* fn, arg, kicks, started */
	void (*fn)(void *arg);
	void *arg;
	char **kicks;
	size_t n_kicks;
	_Atomic int foreign; /* another process committed, or the listener reconnected, since take_foreign */
	int started;
	pthread_t thread;
	int wake[2]; /* self-pipe: a byte asks the listener to stop */
	PGconn *lconn;
};

static inline struct state_pg *state_pg_of(struct state_backend *be)
{
	return (struct state_pg *)be;
}

static inline struct state_pg_store *state_pg_store_of(struct state_pg *pg)
{
	return pg->store;
}

/* ---------- state_pg.c ---------- */

/* Makes sure pg->conn is connected (re-opens it when lost). Caller holds pg->mu. */
int state_pg_ready(struct state_pg *pg);
/* 1 when pg->conn was lost (the last statement's error was the connection's). */
int state_pg_lost(struct state_pg *pg);
/* Drops pg->conn (after a loss), so that state_pg_ready re-opens it. */
void state_pg_drop(struct state_pg *pg);

/* SHA-256 of a doc text. */
void state_pg_sha(const char *doc, size_t len, unsigned char out[32]);
/* The digest entry for name (NULL when absent), and setting/removing one (sha NULL removes). */
struct state_pg_digest *state_pg_dig_find(struct state_pg_store *s, const char *name);
void state_pg_dig_set(struct state_pg_store *s, const char *name, const unsigned char *sha);
void state_pg_dig_clear(struct state_pg_store *s);
/* 1 when the digests describe the rows st was read at (so unchanged records need no write). */
int state_pg_dig_usable(const struct state_pg_store *s, const struct state *st);

/* ---------- state_pg_write.c ---------- */

int state_pg_save(struct state_backend *be, struct state *st);
int state_pg_journal(struct state_backend *be, struct state *st, const char *name, const struct state_cert *rec);
/* ops->note_source: the header's source columns and serial alone (fenced, compare-and-swap, NOTIFY). */
int state_pg_note_source(struct state_backend *be, struct state *st);

/* ---------- state_pg_read.c ---------- */

int state_pg_load(struct state_backend *be, struct state **out);
void state_pg_keep_snapshot(struct state_backend *be, const struct state *st);
int state_pg_refresh(struct state_backend *be, struct state *st, char ***changed, size_t *n_changed);

/* ---------- state_pg_snap.c ---------- */

/* Names the snapshot file for pg's database (pg->conn connected) in cache_dir (NULL or "": no snapshot). */
void state_pg_snap_init(struct state_pg *pg, const char *cache_dir);
/*
 * The state and its row digests (sorted by name) from the snapshot when it
 * was made from exactly the header row hdr (row 0, columns as state_pg_read.c
 * selects them for a load): 0. Anything else (no snapshot, a stale, foreign
 * or damaged one): 1, read the rows.
 */
int state_pg_snap_load(struct state_pg *pg, const PGresult *hdr, struct state **out, struct state_pg_digest **dig,
		       size_t *n_dig);
/*
 * The snapshot for the next load (best effort) of st and its row digests dig,
 * when hdr (row 0) is st's header row: after a load that read hdr and the
 * rows, or after this process's own last write (state_pg_keep_snapshot).
 */
void state_pg_snap_save(struct state_pg *pg, const PGresult *hdr, const struct state *st,
			const struct state_pg_digest *dig, size_t n_dig);

/* ---------- state_pg_listen.c ---------- */

void state_pg_on_change(struct state_backend *be, void (*fn)(void *arg), void *arg);
int state_pg_kick(struct state_backend *be, const char *name);
int state_pg_take_kicks(struct state_backend *be, char ***names, size_t *n);
int state_pg_take_foreign(struct state_backend *be);
/* Stops the listener thread (if it runs) and closes its connection. */
void state_pg_listen_stop(struct state_pg *pg);

#endif
