/*
 * The PostgreSQL state backend's listener: a thread with its own connection
 * LISTENing on the schema's channel, which wakes the daemon when another
 * process commits a change or kicks a certificate, and after it had to
 * reconnect (a change may have been missed while it was away).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/err.h"
#include "../util/util.h"
#include "state_pg_int.h"
#include "state_pg_store.h"

#define STATE_PG_KICK_PREFIX "kick:"
#define STATE_PG_NAME_MAX 253	     /* certificate names: DNS-1123 subdomains */
#define STATE_PG_BACKOFF_MIN_MS 100  /* first wait before reconnecting */
#define STATE_PG_BACKOFF_MAX_MS 5000 /* the wait grows to this and stays there */

/* A certificate name as manifests allow them: [a-z0-9.-], 1 to 253 characters. */
static int state_pg_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > STATE_PG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '.' ||
		      name[i] == '-'))
			return 0;
	return 1;
}

static int state_pg_own(struct state_pg_store *s, int pid)
{
	for (int i = 0; i < STATE_PG_OWN_PIDS; i++)
		if (pid && atomic_load(&s->own_pid[i]) == pid)
			return 1;
	return 0;
}

/* Records a kicked name (deduplicated, at most STATE_PG_KICKS_MAX until taken). */
static void state_pg_kick_add(struct state_pg_store *s, const char *name)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n_kicks; i++)
		if (!strcmp(s->kicks[i], name))
			goto out;
	if (s->n_kicks < STATE_PG_KICKS_MAX) {
		s->kicks = xrealloc(s->kicks, (s->n_kicks + 1) * sizeof(*s->kicks));
		s->kicks[s->n_kicks++] = xstrdup(name);
	}
	/* past the bound the leader's periodic pass reconciles everything anyway */
out:
	pthread_mutex_unlock(&s->mu);
}

static void state_pg_wake_daemon(struct state_pg_store *s)
{
	void (*fn)(void *);
	void *arg;

	pthread_mutex_lock(&s->mu);
	fn = s->fn;
	arg = s->arg;
	pthread_mutex_unlock(&s->mu);
	if (fn)
		fn(arg);
}

/* A connection that LISTENs on the channel. */
static int state_pg_listen_open(struct state_pg *pg, PGconn **out)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	char *sql = xasprintf("LISTEN \"%s\"", s->channel);
	PGconn *c = NULL;
	int rc;

	if (!(rc = state_pg_connect(pg, &c)) && !(rc = pgconn_exec(c, pg->where, NULL, sql, 0, NULL))) {
		*out = c;
		c = NULL;
	}
	PQfinish(c);
	free(sql);
	return rc;
}

/* Handles the notifications read so far: fn once for each from another process. */
static void state_pg_notices(struct state_pg *pg, PGconn *c)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	PGnotify *n;

	while ((n = PQnotifies(c))) {
		const char *p = n->extra ? n->extra : "";
		int other = !state_pg_own(s, n->be_pid);

		if (other && !strncmp(p, STATE_PG_KICK_PREFIX, strlen(STATE_PG_KICK_PREFIX))) {
			if (state_pg_name_valid(p + strlen(STATE_PG_KICK_PREFIX)))
				state_pg_kick_add(s, p + strlen(STATE_PG_KICK_PREFIX));
		} else if (other) {
			atomic_store(&s->foreign, 1); /* a commit (payload: its serial) */
		}
		PQfreemem(n);
		if (other)
			state_pg_wake_daemon(s);
	}
}

/* Waits for the server's socket (fd >= 0) or the stop byte, up to ms (-1: no limit). 1 when asked to stop. */
static int state_pg_wait(struct state_pg_store *s, int fd, int ms)
{
	struct pollfd p[2] = {{s->wake[0], POLLIN, 0}, {fd, POLLIN, 0}};
	int r;

	while ((r = poll(p, fd >= 0 ? 2 : 1, ms)) < 0 && errno == EINTR)
		;
	return r > 0 && (p[0].revents & POLLIN);
}

static void *state_pg_listen_main(void *arg)
{
	struct state_pg *pg = arg;
	struct state_pg_store *s = state_pg_store_of(pg);
	PGconn *c = s->lconn;
	int backoff = STATE_PG_BACKOFF_MIN_MS;

	s->lconn = NULL;
	for (;;) {
		if (!c) {
			if (state_pg_wait(s, -1, backoff))
				break;
			if (state_pg_listen_open(pg, &c)) {
				backoff = backoff * 2 > STATE_PG_BACKOFF_MAX_MS ? STATE_PG_BACKOFF_MAX_MS : backoff * 2;
				continue;
			}
			backoff = STATE_PG_BACKOFF_MIN_MS;
			atomic_store(&s->foreign, 1);
			state_pg_wake_daemon(s); /* changes may have been committed while it was away */
		}
		if (state_pg_wait(s, PQsocket(c), -1))
			break;
		if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = NULL;
			continue;
		}
		state_pg_notices(pg, c);
	}
	PQfinish(c);
	return NULL;
}

/* Starts the listener once (s->mu held). Its first LISTEN happens before this returns when the server is up. */
static void state_pg_listen_start(struct state_pg *pg)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	sigset_t all, old;
	int rc;

	if (s->started)
		return;
	if (pipe(s->wake)) {
		fprintf(stderr, "certsync: cannot create a pipe for the state listener: %s\n", strerror(errno));
		abort();
	}
	fcntl(s->wake[0], F_SETFD, FD_CLOEXEC);
	fcntl(s->wake[1], F_SETFD, FD_CLOEXEC);
	if (state_pg_listen_open(pg, &s->lconn))
		s->lconn = NULL; /* the thread keeps trying, with backoff */
	/* the thread inherits a full mask: process signals go to the threads that act on them */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&s->thread, NULL, state_pg_listen_main, pg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		fprintf(stderr, "certsync: cannot start the state listener thread: %s\n", strerror(rc));
		abort();
	}
	s->started = 1;
}

void state_pg_listen_stop(struct state_pg *pg)
{
	struct state_pg_store *s = state_pg_store_of(pg);
	char b = 1;

	if (!s->started)
		return;
	while (write(s->wake[1], &b, 1) < 0 && errno == EINTR)
		;
	pthread_join(s->thread, NULL);
	close(s->wake[0]);
	close(s->wake[1]);
	s->wake[0] = s->wake[1] = -1;
	s->started = 0;
}

void state_pg_on_change(struct state_backend *be, void (*fn)(void *arg), void *arg)
{
	struct state_pg *pg = state_pg_of(be);
	struct state_pg_store *s = state_pg_store_of(pg);

	pthread_mutex_lock(&s->mu);
	s->fn = fn;
	s->arg = arg;
	if (fn)
		state_pg_listen_start(pg);
	pthread_mutex_unlock(&s->mu);
}

int state_pg_kick(struct state_backend *be, const char *name)
{
	struct state_pg *pg = state_pg_of(be);
	struct state_pg_store *s = state_pg_store_of(pg);
	char payload[sizeof(STATE_PG_KICK_PREFIX) + STATE_PG_NAME_MAX];
	const char *v[2] = {s->channel, payload};
	int rc;

	if (!name || !state_pg_name_valid(name))
		return cs_error(CS_EINVALID, "cannot ask the leader to reconcile \"%.80s\": not a certificate name",
				name ? name : "");
	snprintf(payload, sizeof(payload), "%s%s", STATE_PG_KICK_PREFIX, name);
	pthread_mutex_lock(&pg->mu);
	for (int attempt = 0;; attempt++) {
		if ((rc = state_pg_ready(pg)))
			break;
		rc = pgconn_exec(pg->conn, pg->where, NULL, "SELECT pg_notify($1, $2)", 2, v);
		if (!rc || !state_pg_lost(pg) || attempt)
			break;
		state_pg_drop(pg); /* a kick twice is the same kick */
	}
	pthread_mutex_unlock(&pg->mu);
	return rc;
}

int state_pg_take_foreign(struct state_backend *be)
{
	return atomic_exchange(&state_pg_store_of(state_pg_of(be))->foreign, 0);
}

int state_pg_take_kicks(struct state_backend *be, char ***names, size_t *n)
{
	struct state_pg *pg = state_pg_of(be);
	struct state_pg_store *s = state_pg_store_of(pg);

	pthread_mutex_lock(&s->mu);
	state_pg_listen_start(pg); /* kicks arrive through the listener */
	*names = s->kicks;
	*n = s->n_kicks;
	s->kicks = NULL;
	s->n_kicks = 0;
	pthread_mutex_unlock(&s->mu);
	return 0;
}
