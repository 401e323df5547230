/*
 * The leader lease of the PostgreSQL state backend: one row (lease, id = 1)
 * that elects the single process allowed to write the state and call
 * providers, with an epoch that fences every write of a deposed leader.
 *
 * Why a lease row and not a session advisory lock: an advisory lock lives
 * as long as its session, and a session outlives a paused or partitioned
 * process (the server only notices after TCP keepalives, minutes later), so
 * it cannot bound failover; nor does it give a number that increases with
 * each new holder for writes to carry. The row gives both, and who holds it
 * (host, replica, pid, operation, since) is plain data for messages.
 *
 * Taking (lock): one UPDATE that succeeds only when the row has expired by
 * the DATABASE clock (clock_timestamp(), the only clock all replicas share);
 * it sets this handle's token (replica id + '#' + 64 random bits, so two
 * handles of one process or two processes with one replica id never match
 * each other), epoch + 1 and expires_at = now() + lease. A live lease is
 * CS_ELOCKED at once with who holds it; lock() never waits for it. An own
 * expired lease is never re-taken silently: lock() again means a new epoch.
 *
 * Renewing: a thread with its own connection, every lease/3, extends the
 * row only while it is still this handle's (token, epoch) and unexpired. Its
 * libpq calls are asynchronous (poll with a deadline and a wake-up pipe), so
 * a dead network never holds the thread and unlock() joins it at once.
 *
 * leading() trusts only this process's monotonic clock (CLOCK_BOOTTIME,
 * which counts a suspend too): it is 1 while the last successful renewal
 * STARTED less than a lease ago. The server computed
 * its expiry from its now(), which is later than that start, so this process
 * stops leading no later than the database would let another take over;
 * wall-clock jumps on either side change nothing. A renewal that finds the
 * row gone (0 rows) deposes the handle for good; connection errors are
 * retried until the window closes, then the handle is deposed too.
 *
 * Fencing: every write transaction of state_pg.c first runs
 * state_pg_fence(), which takes the row FOR SHARE only while it is still
 * this handle's and unexpired (clock_timestamp()). A takeover UPDATE must
 * wait for that row lock, so it is ordered after the write commits; and the
 * fence sets idle_in_transaction_session_timeout to one lease for that
 * transaction, so a leader paused in the middle of a write (SIGSTOP) loses
 * its session, and with it the row lock, within a lease. It also sets
 * certsync.writer for the transaction: the schema's hand-edit triggers
 * (pgconn.h, version 3) leave certsync's own statements alone.
 */
#include "state_pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/log.h"
#include "../util/util.h"

#define LEASE_TOKEN_RANDOM 8 /* bytes of randomness in a holder token */
#define LEASE_OP_MIN_MS 5000 /* bounds on how long lock/holder/unlock wait for the server */
#define LEASE_OP_MAX_MS 10000
#define LEASE_FIELD_MAX 128 /* bytes of a row field shown in messages */

enum lease_health { LEASE_RENEWING, LEASE_FAILING };

struct state_pg_lease {
	struct state_pg *pg;
	char *token; /* this handle's holder value */
	char host[256];
	char *password; /* of the conninfo, cut out of libpq's messages; wiped on free */
	char *sql_take, *sql_renew, *sql_release, *sql_describe, *sql_fence;

	pthread_mutex_t mu; /* guards the fields below (leading/epoch are called from any thread) */
	int held;	    /* lock() succeeded and unlock() has not run */
	int deposed;	    /* the lease was found taken, or not renewed in time: leading() is 0 until unlock */
	uint64_t epoch;
	int64_t renewed_mono; /* lease_clock_ms() when the last successful take/renewal started */
	int running;	      /* the renewal thread was started and not yet joined */
	pthread_t thread;
	int wake[2]; /* unlock() writes a byte: every wait of the renewal thread returns */

	pthread_mutex_t cmu; /* serialises conn (lock, holder, release) */
	PGconn *conn;
	PGconn *rconn; /* the renewal thread's while it runs; opened by lock() before the take, kept between locks */
};

/* ---------- asynchronous libpq with a deadline and a wake-up fd ---------- */

/*
 * The lease's clock: CLOCK_BOOTTIME, monotonic like CLOCK_MONOTONIC but
 * also counting time the machine spent suspended, which the database's
 * clock counts too: a leader that wakes from a suspend longer than its lease
 * sees at once that it no longer leads.
 */
static int64_t lease_clock_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long lock(), holder() and the release in unlock() wait for the server. */
static int64_t lease_op_ms(const struct state_pg_lease *l)
{
	int64_t ms = l->pg->lease_ms;

	return ms < LEASE_OP_MIN_MS ? LEASE_OP_MIN_MS : ms > LEASE_OP_MAX_MS ? LEASE_OP_MAX_MS : ms;
}

/*
 * Waits for events on fd (none when fd < 0). 1 ready, 0 the deadline
 * (monotonic ms) passed, -1 wake (when >= 0) became readable: stop.
 */
static int lease_wait(int fd, short events, int wake, int64_t deadline)
{
	for (;;) {
		struct pollfd p[2];
		int64_t left = deadline - lease_clock_ms();
		nfds_t n = 0;
		int r;

		if (wake >= 0)
			p[n++] = (struct pollfd){.fd = wake, .events = POLLIN};
		if (fd >= 0)
			p[n++] = (struct pollfd){.fd = fd, .events = events};
		r = poll(p, n, left <= 0 ? 0 : left > 1000 ? 1000 : (int)left);
		if (r < 0 && errno != EINTR)
			return 0;
		if (r > 0 && wake >= 0 && p[0].revents)
			return -1;
		if (r > 0)
			return 1;
		if (left <= 0)
			return 0;
	}
}

/* libpq's message, first line, with the conninfo's password cut out. */
static void lease_clean(const struct state_pg_lease *l, const char *msg, char *out, size_t n)
{
	pgconn_clean(msg, l->password, out, n);
}

static void lease_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Classifies a failed result like pgconn_exec; 55P03 (lock_timeout) is transient too. */
static int lease_code(PGconn *c, const char *sqlstate)
{
	static const char *const transient[] = {"08", "57P0", "53", "40001", "40P01", "55P03"};

	if (PQstatus(c) != CONNECTION_OK)
		return CS_ETRANSIENT;
	for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
		if (!strncmp(sqlstate, transient[i], strlen(transient[i])))
			return CS_ETRANSIENT;
	return CS_ERROR;
}

/*
 * Runs sql on c without blocking past the deadline or a wake-up. *res (when
 * wanted) gets a successful result for the caller to PQclear(); sqlstate
 * gets the error's SQLSTATE ("" when none). A timeout leaves c unusable: the
 * caller drops it.
 */
static int lease_exec(struct state_pg_lease *l, PGconn *c, int wake, int64_t deadline, const char *sql, int n_params,
		      const char *const *params, PGresult **res, char sqlstate[6])
{
	PGresult *last = NULL, *r;
	char clean[512];
	const char *st;
	int rc, w;

	sqlstate[0] = '\0';
	if (res)
		*res = NULL;
	if (!PQsendQueryParams(c, sql, n_params, NULL, params, NULL, NULL, 0))
		goto lost;
	for (;;) {
		while (!PQisBusy(c)) {
			if (!(r = PQgetResult(c)))
				goto done;
			PQclear(last);
			last = r;
		}
		if ((w = lease_wait(PQsocket(c), POLLIN, wake, deadline)) <= 0) {
			PQclear(last);
			return cs_error(CS_ETRANSIENT, "%s: %s", l->pg->where,
					w < 0 ? "stopped waiting for the server" : "the server did not answer in time");
		}
		if (!PQconsumeInput(c))
			goto lost;
	}
done:
	if (last && (PQresultStatus(last) == PGRES_COMMAND_OK || PQresultStatus(last) == PGRES_TUPLES_OK)) {
		if (res)
			*res = last;
		else
			PQclear(last);
		return 0;
	}
	st = last ? PQresultErrorField(last, PG_DIAG_SQLSTATE) : NULL;
	snprintf(sqlstate, 6, "%s", st ? st : "");
	lease_clean(l, last && *PQresultErrorMessage(last) ? PQresultErrorMessage(last) : PQerrorMessage(c), clean,
		    sizeof(clean));
	rc = cs_error(lease_code(c, sqlstate), "%s: %s%s%s%s", l->pg->where, clean, *sqlstate ? " (SQLSTATE " : "",
		      sqlstate, *sqlstate ? ")" : "");
	PQclear(last);
	return rc;
lost:
	PQclear(last);
	lease_clean(l, PQerrorMessage(c), clean, sizeof(clean));
	return cs_error(CS_ETRANSIENT, "%s: %s", l->pg->where, *clean ? clean : "connection lost");
}

/*
 * A new connection (application_name certsync, as pgconn_open) whose
 * lock_timeout is lock_ms; an error at the deadline or on a wake-up.
 */
static int lease_connect(struct state_pg_lease *l, int wake, int64_t deadline, int64_t lock_ms, PGconn **out)
{
	const char *keys[] = {"application_name", "dbname", NULL};
	const char *vals[] = {"certsync", l->pg->conninfo, NULL};
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
	PGconn *c = PQconnectStartParams(keys, vals, 1);
	char clean[512], sql[64], state[6];
	int rc;

	*out = NULL;
	if (!c)
		return cs_error(CS_ERROR, "%s: cannot connect: out of memory", l->pg->where);
	while (PQstatus(c) != CONNECTION_BAD && ps != PGRES_POLLING_OK && ps != PGRES_POLLING_FAILED) {
		if (lease_wait(PQsocket(c), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, wake, deadline) <= 0) {
			PQfinish(c);
			return cs_error(CS_ETRANSIENT, "%s: cannot connect: no answer in time", l->pg->where);
		}
		ps = PQconnectPoll(c);
	}
	if (PQstatus(c) != CONNECTION_OK) {
		lease_clean(l, PQerrorMessage(c), clean, sizeof(clean));
		PQfinish(c);
		return cs_error(CS_ETRANSIENT, "%s: cannot connect: %s", l->pg->where, clean);
	}
	PQsetNoticeProcessor(c, lease_quiet, NULL);
	snprintf(sql, sizeof(sql), "SET lock_timeout = %" PRId64, lock_ms);
	if ((rc = lease_exec(l, c, wake, deadline, sql, 0, NULL, NULL, state))) {
		PQfinish(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---------- who holds it ---------- */

/* What the lease row says (lease_describe). */
struct lease_seen {
	int exists;	/* the row is there (migrations create it) */
	int live;	/* held and not expired by the database clock */
	int own;	/* held by this handle's token */
	uint64_t epoch; /* the row's epoch */
	char desc[512]; /* "op on host (replica r, pid n) since T; its lease ends in S s" when live, else "" */
};

/* desc = "op on host (replica r, pid n) since T; its lease ends in S s" from row 0 of sql_describe. */
static void lease_format(PGresult *r, char *desc, size_t n)
{
	const char *holder = PQgetvalue(r, 0, 0), *hash = strrchr(holder, '#');
	size_t replica_len = hash ? (size_t)(hash - holder) : strlen(holder);
	int64_t since = strtoll(PQgetvalue(r, 0, 4), NULL, 10), left_ms = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
	char when[32];

	if (replica_len > LEASE_FIELD_MAX)
		replica_len = LEASE_FIELD_MAX;
	util_fmt_time(since, when);
	snprintf(desc, n, "%.*s on %.*s (replica %.*s, pid %.16s) since %s; its lease ends in %.1f s", LEASE_FIELD_MAX,
		 PQgetisnull(r, 0, 3) ? "?" : PQgetvalue(r, 0, 3), LEASE_FIELD_MAX,
		 PQgetisnull(r, 0, 1) ? "?" : PQgetvalue(r, 0, 1), (int)replica_len, holder,
		 PQgetisnull(r, 0, 2) ? "?" : PQgetvalue(r, 0, 2), when, (double)left_ms / 1000.0);
}

static void lease_seen_of(const struct state_pg_lease *l, PGresult *r, struct lease_seen *out)
{
	memset(out, 0, sizeof(*out));
	if (PQntuples(r) != 1 || PQnfields(r) != 8)
		return;
	out->exists = 1;
	out->live = !strcmp(PQgetvalue(r, 0, 7), "t");
	out->own = !PQgetisnull(r, 0, 0) && !strcmp(PQgetvalue(r, 0, 0), l->token);
	out->epoch = strtoull(PQgetvalue(r, 0, 6), NULL, 10);
	if (out->live)
		lease_format(r, out->desc, sizeof(out->desc));
}

static int lease_describe(struct state_pg_lease *l, PGconn *c, int wake, int64_t deadline, struct lease_seen *out)
{
	PGresult *r = NULL;
	char state[6];
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = lease_exec(l, c, wake, deadline, l->sql_describe, 0, NULL, &r, state)))
		return rc;
	lease_seen_of(l, r, out);
	PQclear(r);
	return 0;
}

/* 1 when c cannot run another statement: lost, or a statement given up on is still running. */
static int lease_broken(PGconn *c)
{
	return PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) == PQTRANS_ACTIVE;
}

/* The caller-side connection, (re)opened when missing or broken. The caller holds cmu. */
static int lease_conn(struct state_pg_lease *l, int64_t deadline)
{
	if (l->conn && !lease_broken(l->conn))
		return 0;
	PQfinish(l->conn);
	l->conn = NULL;
	return lease_connect(l, -1, deadline, lease_op_ms(l) / 2, &l->conn);
}

/*
 * A statement on the caller-side connection (caller holds cmu), tried again
 * on a fresh connection when the cached one turns out to be lost (a server
 * restarted since its last use).
 */
static int lease_call(struct state_pg_lease *l, const char *sql, int n_params, const char *const *params,
		      PGresult **res, char sqlstate[6])
{
	int64_t deadline = lease_clock_ms() + lease_op_ms(l);
	int rc = 0;

	sqlstate[0] = '\0';
	for (int tries = 0; tries < 2; tries++) {
		if ((rc = lease_conn(l, deadline)))
			return rc;
		rc = lease_exec(l, l->conn, -1, deadline, sql, n_params, params, res, sqlstate);
		if (!rc || PQstatus(l->conn) == CONNECTION_OK)
			return rc; /* only a lost session is worth a second try (a timeout used the time up) */
	}
	return rc;
}

/* lease_describe on the caller-side connection (caller holds cmu), with lease_call's second try. */
static int lease_look(struct state_pg_lease *l, struct lease_seen *out)
{
	PGresult *r = NULL;
	char state[6];
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = lease_call(l, l->sql_describe, 0, NULL, &r, state)))
		return rc;
	lease_seen_of(l, r, out);
	PQclear(r);
	return 0;
}

int state_pg_lease_holder(struct state_pg *pg, char *desc, size_t n)
{
	struct state_pg_lease *l = pg->lease;
	struct lease_seen seen;
	int rc;

	if (n)
		desc[0] = '\0';
	pthread_mutex_lock(&l->cmu);
	if (!(rc = lease_look(l, &seen)) && n)
		snprintf(desc, n, "%s", seen.desc);
	pthread_mutex_unlock(&l->cmu);
	return rc;
}

/* ---------- the renewal thread ---------- */

static void lease_u64(uint64_t v, char out[24])
{
	snprintf(out, 24, "%" PRIu64, v);
}

/* One renewal: 1 renewed, 0 the row is no longer this handle's, < 0 an error (rconn dropped). */
static int lease_renew_once(struct state_pg_lease *l, const char *epoch, int64_t deadline)
{
	char ms[24], state[6];
	const char *params[3] = {l->token, epoch, ms};
	PGresult *r = NULL;
	int rc;

	lease_u64((uint64_t)l->pg->lease_ms, ms);
	if (!l->rconn && (rc = lease_connect(l, l->wake[0], deadline, l->pg->lease_ms, &l->rconn)))
		return rc;
	if ((rc = lease_exec(l, l->rconn, l->wake[0], deadline, l->sql_renew, 3, params, &r, state))) {
		/* A statement that timed out or a lost session: go on with a new connection. */
		PQfinish(l->rconn);
		l->rconn = NULL;
		return rc;
	}
	rc = !strcmp(PQcmdTuples(r), "1");
	PQclear(r);
	return rc;
}

/* The thread ends: the lease is lost (taken, or not renewed in time). */
static void lease_depose(struct state_pg_lease *l)
{
	pthread_mutex_lock(&l->mu);
	l->deposed = 1;
	pthread_mutex_unlock(&l->mu);
}

static int lease_stopping(struct state_pg_lease *l)
{
	struct pollfd p = {.fd = l->wake[0], .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

/* Every lease/3 while held; retries errors until the lease window closes; logs once per change of health. */
static void *lease_run(void *arg)
{
	struct state_pg_lease *l = arg;
	const int64_t lease = l->pg->lease_ms, period = lease / 3 > 0 ? lease / 3 : 1;
	const int64_t retry = period / 3 > 20 ? period / 3 : 20;
	enum lease_health health = LEASE_RENEWING;
	struct lease_seen seen;
	char epoch[24];
	int64_t last, next;

	pthread_mutex_lock(&l->mu);
	lease_u64(l->epoch, epoch);
	last = l->renewed_mono;
	pthread_mutex_unlock(&l->mu);
	next = last + period;
	while (lease_wait(-1, 0, l->wake[0], next) == 0) {
		int64_t start = lease_clock_ms(), end = last + lease;
		int r;

		if (start >= end) {
			log_error("%s: the leader lease (epoch %s) was not renewed within %" PRId64
				  " ms: this process stops leading",
				  l->pg->where, epoch, lease);
			lease_depose(l);
			break;
		}
		r = lease_renew_once(l, epoch, end);
		if (r == 1) {
			pthread_mutex_lock(&l->mu);
			l->renewed_mono = start;
			pthread_mutex_unlock(&l->mu);
			if (health == LEASE_FAILING)
				log_info("%s: the leader lease (epoch %s) is renewed again", l->pg->where, epoch);
			health = LEASE_RENEWING;
			last = start;
			next = start + period;
			continue;
		}
		if (r == 0) {
			lease_depose(l);
			if (lease_describe(l, l->rconn, l->wake[0], lease_clock_ms() + period, &seen))
				seen.desc[0] = '\0';
			log_error("%s: the leader lease (epoch %s) is no longer this process's: %s%s", l->pg->where,
				  epoch, *seen.desc ? "now held by " : "it expired", seen.desc);
			break;
		}
		if (lease_stopping(l))
			break;
		if (health == LEASE_RENEWING)
			log_warn("cannot renew the leader lease (epoch %s): %s; retrying for the %" PRId64
				 " ms it has left",
				 epoch, cs_errmsg(), end - lease_clock_ms() > 0 ? end - lease_clock_ms() : 0);
		health = LEASE_FAILING;
		next = lease_clock_ms() + retry;
	}
	/* Kept for the next lock() when it can still be used. */
	if (l->rconn && lease_broken(l->rconn)) {
		PQfinish(l->rconn);
		l->rconn = NULL;
	}
	return NULL;
}

/* ---------- lock, unlock, leading ---------- */

/* Expires this handle's lease (epoch) now so that another replica takes it at once. Caller holds cmu. */
static int lease_release_locked(struct state_pg_lease *l, uint64_t epoch)
{
	char ep[24], state[6];
	const char *params[2] = {l->token, ep};

	lease_u64(epoch, ep);
	return lease_call(l, l->sql_release, 2, params, NULL, state);
}

static void lease_release(struct state_pg_lease *l, uint64_t epoch)
{
	pthread_mutex_lock(&l->cmu);
	if (lease_release_locked(l, epoch))
		log_warn("cannot release the leader lease (epoch %" PRIu64 "): %s; it ends by itself within %" PRId64
			 " ms",
			 epoch, cs_errmsg(), l->pg->lease_ms);
	pthread_mutex_unlock(&l->cmu);
}

static void lease_drain(struct state_pg_lease *l)
{
	char b[64];

	while (read(l->wake[0], b, sizeof(b)) > 0)
		;
}

/*
 * The take statement, then the holder when it did not take. *epoch > 0 when
 * taken; *start is when the statement that took it was sent. Caller holds cmu.
 */
static int lease_take(struct state_pg_lease *l, const char *operation, uint64_t *epoch, int64_t *start)
{
	char pid[24], ms[24], state[6];
	const char *params[5] = {l->token, l->host, pid, operation, ms};
	struct lease_seen seen;
	PGresult *r = NULL;
	int rc = 0;

	lease_u64((uint64_t)getpid(), pid);
	lease_u64((uint64_t)l->pg->lease_ms, ms);
	*epoch = 0;
	/* A lease freed between the take and the look at its holder is taken again: a few rounds at most. */
	for (int tries = 0; tries < 3; tries++) {
		*start = lease_clock_ms();
		rc = lease_call(l, l->sql_take, 5, params, &r, state);
		if (rc && !strcmp(state, "55P03"))
			return cs_error(CS_ELOCKED,
					"the state in %s is locked: the last leader's lease has ended but its last "
					"write is still open (the server cuts it off within %" PRId64 " ms); try again",
					l->pg->where, l->pg->lease_ms);
		if (rc)
			return rc;
		if (PQntuples(r) == 1) {
			*epoch = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
			PQclear(r);
			return 0;
		}
		PQclear(r);
		if ((rc = lease_look(l, &seen)))
			return rc;
		if (!seen.exists)
			return cs_error(CS_ERROR, "%s: the lease row (id 1) is missing from the lease table",
					l->pg->where);
		/*
		 * This handle's own: left by an unlock whose release did not reach
		 * the server (or a take whose answer was lost). Nothing of this
		 * process writes under it (not held), so expire it and take a new epoch.
		 */
		if (seen.live && seen.own && !(rc = lease_release_locked(l, seen.epoch)))
			continue;
		if (rc)
			return rc;
		if (seen.live)
			return cs_error(CS_ELOCKED, "the state in %s is locked by %s", l->pg->where, seen.desc);
	}
	return cs_error(CS_ELOCKED, "the state in %s is locked: its lease keeps changing hands; try again",
			l->pg->where);
}

/* Caller holds mu. */
static int lease_leading_locked(const struct state_pg_lease *l)
{
	return l->held && !l->deposed && lease_clock_ms() - l->renewed_mono < l->pg->lease_ms;
}

static void lease_unlock(struct state_pg_lease *l)
{
	uint64_t epoch;
	int running, deposed;
	char b = 1;

	pthread_mutex_lock(&l->mu);
	if (!l->held) {
		pthread_mutex_unlock(&l->mu);
		return;
	}
	/* Not leading from here on, before anything else happens. */
	l->held = 0;
	running = l->running;
	l->running = 0;
	deposed = l->deposed;
	epoch = l->epoch;
	l->epoch = 0;
	pthread_mutex_unlock(&l->mu);
	if (running) {
		if (write(l->wake[1], &b, 1) < 0)
			log_warn("%s: cannot wake the lease renewal thread: %s", l->pg->where, strerror(errno));
		pthread_join(l->thread, NULL);
	}
	pthread_mutex_lock(&l->mu);
	deposed |= l->deposed;
	l->deposed = 0;
	pthread_mutex_unlock(&l->mu);
	lease_drain(l);
	if (!deposed)
		lease_release(l, epoch);
}

int state_pg_lease_lock(struct state_pg *pg, const char *operation)
{
	struct state_pg_lease *l = pg->lease;
	uint64_t epoch = 0;
	int64_t start = 0;
	int rc;

	pthread_mutex_lock(&l->mu);
	rc = l->held ? lease_leading_locked(l) ? 2 : 1 : 0;
	pthread_mutex_unlock(&l->mu);
	if (rc == 2)
		return cs_error(CS_ERROR, "%s: this process holds the lease already (unlock it first)", pg->where);
	if (rc == 1)
		lease_unlock(l); /* lost (taken or lapsed): ended properly, then a new epoch is asked for */
	if (l->wake[0] < 0)
		return cs_error(CS_ERROR, "%s: cannot start the lease renewal: no pipe", pg->where);
	/*
	 * The renewal thread's own connection (renewals never queue behind the
	 * caller's statements), opened before the take so that no part of the
	 * lease is spent connecting.
	 */
	if (l->rconn && lease_broken(l->rconn)) {
		PQfinish(l->rconn);
		l->rconn = NULL;
	}
	if (!l->rconn && (rc = lease_connect(l, -1, lease_clock_ms() + lease_op_ms(l), pg->lease_ms, &l->rconn)))
		return rc;
	pthread_mutex_lock(&l->cmu);
	rc = lease_take(l, operation, &epoch, &start);
	pthread_mutex_unlock(&l->cmu);
	if (rc)
		return rc;
	lease_drain(l);
	pthread_mutex_lock(&l->mu);
	l->held = 1;
	l->deposed = 0;
	l->epoch = epoch;
	l->renewed_mono = start;
	l->running = pthread_create(&l->thread, NULL, lease_run, l) == 0;
	if (!l->running) {
		l->held = 0;
		l->epoch = 0;
	}
	pthread_mutex_unlock(&l->mu);
	if (!l->running) {
		rc = cs_error(CS_ERROR, "%s: cannot start the lease renewal thread", pg->where);
		lease_release(l, epoch);
		return rc;
	}
	log_debug("%s: took the leader lease (epoch %" PRIu64 ") for %s", pg->where, epoch, operation);
	return 0;
}

void state_pg_lease_unlock(struct state_pg *pg)
{
	lease_unlock(pg->lease);
}

int state_pg_lease_leading(struct state_pg *pg)
{
	struct state_pg_lease *l = pg->lease;
	int leading;

	pthread_mutex_lock(&l->mu);
	leading = lease_leading_locked(l);
	pthread_mutex_unlock(&l->mu);
	return leading;
}

uint64_t state_pg_lease_epoch(struct state_pg *pg)
{
	struct state_pg_lease *l = pg->lease;
	uint64_t epoch;

	pthread_mutex_lock(&l->mu);
	epoch = lease_leading_locked(l) ? l->epoch : 0;
	pthread_mutex_unlock(&l->mu);
	return epoch;
}

/* ---------- fencing ---------- */

int state_pg_fence(struct state_pg *pg, PGconn *conn)
{
	struct state_pg_lease *l = pg->lease;
	char ep[24], ms[24], desc[512], lapsed[64] = "";
	struct lease_seen seen;
	const char *params[3] = {l->token, ep, ms};
	PGresult *r = NULL;
	int held, deposed, fresh, rc;

	pthread_mutex_lock(&l->mu);
	held = l->held;
	deposed = l->deposed;
	fresh = lease_clock_ms() - l->renewed_mono < pg->lease_ms;
	lease_u64(l->epoch, ep);
	pthread_mutex_unlock(&l->mu);
	if (!held)
		return cs_error(CS_EFENCED, "this process does not hold the lease of %s: it may not write", pg->where);
	if (!deposed && fresh) {
		lease_u64((uint64_t)pg->lease_ms, ms);
		if ((rc = pgconn_exec(conn, pg->where, &r, l->sql_fence, 3, params)))
			return rc;
		rc = PQntuples(r);
		PQclear(r);
		if (rc == 1)
			return 0;
		lease_depose(l);
	} else if (!deposed) {
		snprintf(lapsed, sizeof(lapsed), "its lease was not renewed within %" PRId64 " ms", pg->lease_ms);
	}
	/* Who has it now, for the message (best effort: the caller rolls back anyway). */
	desc[0] = '\0';
	if (!pgconn_exec(conn, pg->where, &r, l->sql_describe, 0, NULL)) {
		lease_seen_of(l, r, &seen);
		snprintf(desc, sizeof(desc), "%s", seen.desc);
		PQclear(r);
	}
	return cs_error(CS_EFENCED, "this process is no longer the leader of %s (epoch %s): %s%s", pg->where, ep,
			*desc	  ? "now held by "
			: *lapsed ? lapsed
				  : "its lease has expired",
			desc);
}

/* ---------- new, free ---------- */

static char *lease_password(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", NULL);
	char *pw = NULL;

	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "password") && o->val && *o->val)
			pw = xstrdup(o->val);
	PQconninfoFree(opts);
	return pw;
}

static void lease_sql(struct state_pg_lease *l)
{
	char *t = pgconn_table(l->pg->schema, "lease");

	l->sql_take = xasprintf(
		"UPDATE %s SET holder = $1, host = $2, pid = $3::int, operation = $4, epoch = epoch + 1,"
		" acquired_at = now(), renewed_at = now(), expires_at = now() + $5::bigint * interval '1 millisecond'"
		" WHERE id = 1 AND expires_at <= clock_timestamp() RETURNING epoch",
		t);
	l->sql_renew =
		xasprintf("UPDATE %s SET renewed_at = now(),"
			  " expires_at = now() + $3::bigint * interval '1 millisecond'"
			  " WHERE id = 1 AND holder = $1 AND epoch = $2::bigint AND expires_at > clock_timestamp()",
			  t);
	l->sql_release =
		xasprintf("UPDATE %s SET expires_at = clock_timestamp()"
			  " WHERE id = 1 AND holder = $1 AND epoch = $2::bigint AND expires_at > clock_timestamp()",
			  t);
	l->sql_describe =
		xasprintf("SELECT holder, host, pid, operation, "
			  " CASE WHEN isfinite(acquired_at) THEN extract(epoch FROM acquired_at)::bigint ELSE 0 END,"
			  " CASE WHEN isfinite(expires_at) AND expires_at > clock_timestamp()"
			  " THEN (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint ELSE 0 END, epoch,"
			  " holder IS NOT NULL AND expires_at > clock_timestamp() FROM %s WHERE id = 1",
			  t);
	/* The row lock orders a takeover after this write; a paused writer loses its session within a lease. */
	l->sql_fence =
		xasprintf("SELECT set_config('idle_in_transaction_session_timeout', $3, true),"
			  " set_config('" PGCONN_WRITER_SETTING "', 'on', true) FROM %s"
			  " WHERE id = 1 AND holder = $1 AND epoch = $2::bigint AND expires_at > clock_timestamp()"
			  " FOR SHARE",
			  t);
	free(t);
}

struct state_pg_lease *state_pg_lease_new(struct state_pg *pg)
{
	struct state_pg_lease *l = xcalloc(1, sizeof(*l));
	unsigned char rnd[LEASE_TOKEN_RANDOM];
	char hex[2 * LEASE_TOKEN_RANDOM + 1];

	l->pg = pg;
	if (crypto_random(rnd, sizeof(rnd))) {
		/* No RNG: still distinct per handle and process. */
		uint64_t x = (uint64_t)lease_clock_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)l;

		memcpy(rnd, &x, sizeof(rnd));
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	if (pg->replica_id && *pg->replica_id)
		l->token = xasprintf("%s#%s", pg->replica_id, hex);
	else
		l->token = xasprintf("pid-%ld#%s", (long)getpid(), hex);
	if (gethostname(l->host, sizeof(l->host)))
		snprintf(l->host, sizeof(l->host), "?");
	l->host[sizeof(l->host) - 1] = '\0';
	l->password = lease_password(pg->conninfo);
	lease_sql(l);
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->cmu, NULL);
	if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK))
		l->wake[0] = l->wake[1] = -1;
	return l;
}

void state_pg_lease_free(struct state_pg_lease *l)
{
	if (!l)
		return;
	lease_unlock(l);
	PQfinish(l->conn);
	PQfinish(l->rconn);
	if (l->wake[0] >= 0) {
		close(l->wake[0]);
		close(l->wake[1]);
	}
	if (l->password) {
		explicit_bzero(l->password, strlen(l->password));
		free(l->password);
	}
	free(l->token);
	free(l->sql_take);
	free(l->sql_renew);
	free(l->sql_release);
	free(l->sql_describe);
	free(l->sql_fence);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->cmu);
	free(l);
}
