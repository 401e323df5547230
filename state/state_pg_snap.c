/*
 * The PostgreSQL backend's local decoded snapshot (docs/state.md): after a
 * load that fetched and decoded every row, the state and the rows' digests
 * are kept in <cacheDir>/state-pg-<id>.snap with the file backend's snapshot
 * writer (state_snap.c), keyed by the database's identity and the header row
 * exactly as it was read with those rows. The next load reads the header row
 * alone; when it is still that row, the records come from the snapshot and
 * no row is fetched.
 *
 * Exact because every certsync write (save, journal, the source alone,
 * clear) changes the header row in the transaction that changes the rows:
 * its serial (compare-and-swap), its updated_at, and PostgreSQL gives the
 * new row version a new xmin; and since schema version 3 (pgconn.c) the
 * triggers on certs and removed do the same for SQL run on the rows by hand.
 * The key is the hash of all of them with every other header column, and
 * the lineage and serial in the clear. Anything
 * wrong with the snapshot (missing, foreign, stale, damaged, unreadable) is
 * a full load that writes it anew; a cache directory that cannot be written
 * only means no snapshot. Nothing secret is in it: the rows hold no key
 * material (private keys are in the key store's table, encrypted), and the
 * file name and key hash the server's address, never its password.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"
#include "state_int.h"
#include "state_pg_int.h"
#include "state_pg_store.h"

#define STATE_PG_SNAP_TAG "certsync-pg-snapshot\n" /* what the identity hash starts with */

/* 64 bits of a SHA-256. */
static uint64_t state_pg_snap_h64(const struct buf *b)
{
	unsigned char sha[32];
	uint64_t v;

	crypto_sha256(b->data ? b->data : "", b->len, sha);
	memcpy(&v, sha, sizeof(v));
	return v;
}

/* A field into b with its length in front (so that no two lists of fields hash alike). */
static void state_pg_snap_field(struct buf *b, const char *v, int len)
{
	buf_printf(b, "%d:", v ? len : -1);
	if (v)
		buf_append(b, v, (size_t)len);
}

void state_pg_snap_init(struct state_pg *pg, const char *cache_dir)
{
	struct buf id = BUF_INIT;
	const char *v[4];

	free(pg->snap_path);
	free(pg->snap_dir);
	pg->snap_path = pg->snap_dir = NULL;
	if (!cache_dir || !*cache_dir || !pg->conn)
		return;
	/* the server as libpq reached it (PG* variables included), the role and the schema */
	v[0] = PQhost(pg->conn);
	v[1] = PQport(pg->conn);
	v[2] = PQdb(pg->conn);
	v[3] = PQuser(pg->conn);
	buf_puts(&id, STATE_PG_SNAP_TAG);
	for (int i = 0; i < 4; i++)
		state_pg_snap_field(&id, v[i], v[i] ? (int)strlen(v[i]) : 0);
	state_pg_snap_field(&id, pg->schema, (int)strlen(pg->schema));
	pg->snap_id = state_pg_snap_h64(&id);
	pg->snap_dir = xstrdup(cache_dir);
	pg->snap_path = xasprintf("%s/state-pg-%016llx.snap", cache_dir, (unsigned long long)pg->snap_id);
	buf_free(&id);
}

/* The key of the header row hdr (row 0; lineage and serial in columns 1 and 2, see state_pg_read.c). */
static void state_pg_snap_key(const struct state_pg *pg, const PGresult *hdr, struct state_snap_key *key)
{
	struct buf row = BUF_INIT;

	memset(key, 0, sizeof(*key));
	for (int c = 0; c < PQnfields(hdr); c++)
		state_pg_snap_field(&row, PQgetisnull(hdr, 0, c) ? NULL : PQgetvalue(hdr, 0, c),
				    PQgetlength(hdr, 0, c));
	key->dev = pg->snap_id;
	key->ino = state_pg_snap_h64(&row);
	snprintf(key->lineage, sizeof(key->lineage), "%s", PQgetvalue(hdr, 0, 1));
	key->serial = strtoull(PQgetvalue(hdr, 0, 2), NULL, 10);
	buf_free(&row);
}

/* The digests kept in the snapshot: a SHA-256 per record, in name order. */
static int state_pg_snap_digests(const struct state *st, const struct buf *extra, struct state_pg_digest **out,
				 size_t *n_out)
{
	struct state_cert **list;
	struct state_pg_digest *d;
	size_t n;

	if (extra->len != state_cert_count(st) * 32)
		return -1;
	list = state_cert_list(st, &n);
	d = xcalloc(n + 1, sizeof(*d));
	for (size_t i = 0; i < n; i++) {
		d[i].name = xstrdup(list[i]->name);
		memcpy(d[i].sha, extra->data + 32 * i, 32);
	}
	free(list);
	*out = d;
	*n_out = n;
	return 0;
}

int state_pg_snap_load(struct state_pg *pg, const PGresult *hdr, struct state **out, struct state_pg_digest **dig,
		       size_t *n_dig)
{
	struct state_snap_key key;
	struct buf extra = BUF_INIT;
	struct state *st = NULL;
	int rc;

	if (!pg->snap_path || PQntuples(hdr) != 1)
		return 1;
	state_pg_snap_key(pg, hdr, &key);
	if ((rc = state_snap_read_x(pg->snap_path, &key, &st, &extra))) {
		if (rc != CS_ENOTFOUND)
			log_debug("state: snapshot not used, reading every row of %s: %s", pg->where, cs_errmsg());
		return 1;
	}
	if (state_pg_snap_digests(st, &extra, dig, n_dig)) {
		log_debug("state: snapshot not used, reading every row of %s: %s: its digests do not match its records",
			  pg->where, pg->snap_path);
		state_free(st);
		buf_free(&extra);
		return 1;
	}
	buf_free(&extra);
	log_debug("state: %s (serial %llu) read from its snapshot %s", pg->where, (unsigned long long)key.serial,
		  pg->snap_path);
	*out = st;
	return 0;
}

void state_pg_snap_save(struct state_pg *pg, const PGresult *hdr, const struct state *st,
			const struct state_pg_digest *dig, size_t n_dig)
{
	struct state_snap_key key;
	struct buf extra = BUF_INIT;

	if (!pg->snap_path || PQntuples(hdr) != 1)
		return; /* no directory, or nothing written yet (a fresh state has a new lineage each load) */
	state_pg_snap_key(pg, hdr, &key);
	if (strcmp(key.lineage, st->lineage) || key.serial != st->serial || n_dig != state_cert_count(st))
		return;
	buf_reserve(&extra, n_dig * 32);
	for (size_t i = 0; i < n_dig; i++)
		buf_append(&extra, dig[i].sha, 32);
	if (fsutil_mkdir_p(pg->snap_dir, 0700) || state_snap_write_x(pg->snap_path, st, &key, &extra))
		log_debug("state: no snapshot of %s written: %s", pg->where, cs_errmsg());
	buf_free(&extra);
}
