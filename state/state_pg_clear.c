/*
 * Emptying the stored state for `state migrate --force` (state_pg.h): one
 * fenced transaction turns every record into a tombstone and drops the
 * header, so that the next save writes a header of any lineage.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/err.h"
#include "../util/util.h"
#include "state_pg.h"
#include "state_pg_store.h"

/* The statements of the clear, inside BEGIN after the fence. */
static int state_pg_clear_body(struct state_pg *pg)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	char *tomb = xasprintf("WITH h AS (SELECT coalesce(max(serial), 0) + 1 AS serial FROM %s),"
			       " d AS (DELETE FROM %s RETURNING name)"
			       " INSERT INTO %s (name, removed_serial) SELECT d.name, h.serial FROM d, h"
			       " ON CONFLICT (name) DO UPDATE SET removed_serial = excluded.removed_serial",
			       s->t_header, s->t_certs, s->t_removed);
	char *head = xasprintf("DELETE FROM %s", s->t_header);
	int rc;

	/* No NOTIFY: the save that follows sends one, with the serial other replicas expect. */
	if (!(rc = pgconn_exec(pg->conn, pg->where, NULL, tomb, 0, NULL)))
		rc = pgconn_exec(pg->conn, pg->where, NULL, head, 0, NULL);
	free(tomb);
	free(head);
	return rc;
}

int state_pg_clear(struct state_backend *be)
{
	struct state_pg *pg = state_pg_of(be);
	int rc;

	pthread_mutex_lock(&pg->mu);
	if ((rc = state_pg_ready(pg)))
		goto out;
	if ((rc = pgconn_exec(pg->conn, pg->where, NULL, "BEGIN", 0, NULL)))
		goto out;
	if (!(rc = state_pg_fence(pg, pg->conn)) && !(rc = state_pg_clear_body(pg)))
		rc = pgconn_exec(pg->conn, pg->where, NULL, "COMMIT", 0, NULL);
	if (rc && !state_pg_lost(pg))
		PQclear(PQexec(pg->conn, "ROLLBACK"));
	if (state_pg_lost(pg))
		state_pg_drop(pg); /* the next write reconnects (and its compare-and-swap tells what committed) */
	/* Whatever happened, what this process knew of the rows is no longer to be trusted. */
	state_pg_dig_clear(state_pg_store_of(pg));
out:
	pthread_mutex_unlock(&pg->mu);
	return rc;
}
