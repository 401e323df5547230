/*
 * The daemon under systemd (Type=notify): READY=1 after the loop's first
 * turn, a STATUS= line whenever the summary changes, WATCHDOG=1 pings while
 * the loop keeps completing passes (the /healthz criterion), STOPPING=1.
 */
#include "notify.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/sdnotify.h"
#include "../../util/util.h"
#include "daemon_int.h"

#define NOTIFY_STATUS_MAX 240

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int running, stop, ready_sent, warned, stalled;
	uint64_t usec;
	int64_t beat_ms, bound_ms; /* the loop's last completed pass (monotonic ms) and the /healthz bound */
	char status[NOTIFY_STATUS_MAX + 1];
} N = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* A failed send is logged once (a socket that went away must not flood the log). */
static void notify_send(const char *msg)
{
	if (sdnotify_send(msg) && !N.warned) {
		N.warned = 1;
		log_warn("systemd notification failed: %s", cs_errmsg());
	}
}

/* Pings at half the interval while the last pass is within the liveness bound; stops pinging when it is not. */
static void *notify_watchdog(void *arg)
{
	struct timespec ts;

	(void)arg;
	pthread_mutex_lock(&N.mu);
	while (!N.stop) {
		int64_t since = util_mono_ms() - N.beat_ms;
		int ok = since <= N.bound_ms;

		if (ok) {
			N.stalled = 0;
			notify_send("WATCHDOG=1");
		} else if (!N.stalled) {
			char msg[128];

			N.stalled = 1;
			snprintf(msg, sizeof(msg), "STATUS=stalled: no pass completed for %llds (bound %llds)",
				 (long long)(since / 1000), (long long)(N.bound_ms / 1000));
			notify_send(msg);
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(N.usec / 2 / 1000000);
		ts.tv_nsec += (long)(N.usec / 2 % 1000000) * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&N.cv, &N.mu, &ts);
	}
	pthread_mutex_unlock(&N.mu);
	return NULL;
}

void daemon_notify_start(void)
{
	pthread_mutex_lock(&N.mu);
	N.stop = N.ready_sent = N.warned = N.stalled = 0;
	N.status[0] = 0;
	N.beat_ms = util_mono_ms();
	N.bound_ms = INT64_MAX / 2;
	N.usec = sdnotify_watchdog_usec();
	pthread_mutex_unlock(&N.mu);
	if (!N.usec)
		return;
	if (pthread_create(&N.thread, NULL, notify_watchdog, NULL)) {
		log_warn("systemd watchdog: cannot start its thread; no WATCHDOG=1 pings");
		return;
	}
	N.running = 1;
	log_info("systemd watchdog: pinging every %llu ms while passes complete", (unsigned long long)(N.usec / 2000));
}

void daemon_notify_beat(int64_t bound_s)
{
	pthread_mutex_lock(&N.mu);
	N.beat_ms = util_mono_ms();
	N.bound_ms = bound_s * 1000;
	pthread_mutex_unlock(&N.mu);
}

/* "<rev>: N certificates, R ready, P pending, F failed", or why the source is not being served. */
static void notify_summary(const struct daemon *d, char *out, size_t cap)
{
	size_t n = 0, by[PHASE__MAX] = {0};
	struct state_cert **recs = d->st ? state_cert_list(d->st, &n) : NULL;
	char *rev = d->commit[0] ? daemon_revision(d->cfg->source.ref, d->commit) : NULL;
	const char *role = d->shared ? (d->leader ? " (leader)" : " (follower)") : "";

	for (size_t i = 0; i < n; i++)
		if (recs[i]->phase < PHASE__MAX)
			by[recs[i]->phase]++;
	free(recs);
	if (!d->fetch_ok) {
		char *red = log_redacted(d->fetch_error ? d->fetch_error : "not fetched yet");

		snprintf(out, cap, "source fetch failed%s (serving %s): %s", role, rev ? rev : "no revision yet", red);
		free(red);
	} else {
		snprintf(out, cap, "%s%s: %zu certificates, %zu ready, %zu pending, %zu failed", rev ? rev : "?", role,
			 d->have_des ? d->des.n_specs : 0, by[PHASE_READY], by[PHASE_PENDING], by[PHASE_FAILED]);
	}
	free(rev);
}

void daemon_notify_turn(const struct daemon *d)
{
	char status[NOTIFY_STATUS_MAX + 1], msg[NOTIFY_STATUS_MAX + 32];
	int first;

	notify_summary(d, status, sizeof(status));
	pthread_mutex_lock(&N.mu);
	first = !N.ready_sent;
	if (!first && !strcmp(status, N.status)) {
		pthread_mutex_unlock(&N.mu);
		return;
	}
	N.ready_sent = 1;
	memcpy(N.status, status, sizeof(status));
	snprintf(msg, sizeof(msg), "%sSTATUS=%s", first ? "READY=1\n" : "", status);
	notify_send(msg);
	pthread_mutex_unlock(&N.mu);
}

void daemon_notify_stop(void)
{
	pthread_mutex_lock(&N.mu);
	N.stop = 1;
	pthread_cond_broadcast(&N.cv);
	pthread_mutex_unlock(&N.mu);
	if (N.running)
		pthread_join(N.thread, NULL);
	N.running = 0;
	notify_send("STOPPING=1\nSTATUS=stopping: saving state");
}
