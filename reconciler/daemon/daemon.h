/*
 * `certsync run` (DESIGN §5): one foreground loop that follows the git
 * branch, reconciles when there is a reason (new commit, renewal due,
 * pending or failed step due, webhook, SIGHUP, SIGUSR1, an explicit retry by
 * SIGUSR2 or POST /retry), serves webhooks, health and metrics, and stops
 * cleanly on SIGTERM/SIGINT. /readyz is 200 only while every desired
 * certificate is ready; /healthz fails when the loop stalls.
 */
#ifndef CS_RECONCILER_DAEMON_H
#define CS_RECONCILER_DAEMON_H

#include <stdint.h>

#include "../../state/state.h"
#include "../config.h"

struct daemon_opts {
	/*
	 * Loads the config again (SIGHUP). Logs its own diagnostics; returns 0
	 * with *out, or an error (the old config stays).
	 */
	int (*load_config)(void *arg, struct config **out);
	void *load_arg;
	int parallelism;   /* engine workers (default 4) */
	int allow_partial; /* apply the valid certificates of a revision with invalid manifests */
};

/*
 * Runs until SIGTERM/SIGINT. Takes ownership of cfg. Returns 0 after a clean
 * stop (state saved), or an error that kept it from starting (state locked,
 * port in use), already logged.
 */
int daemon_run(struct config *cfg, const struct daemon_opts *o);

/*
 * The deterministic renewal jitter of a certificate (seconds added to its
 * renewal time): up to 2% of the lifetime, at most 6 h, and never more than
 * a quarter of the renew-before window, so a fleet issued on one day does
 * not renew in one burst.
 */
int64_t daemon_renewal_jitter(const char *name, int64_t not_before, int64_t not_after, int64_t renew_at);

/* Seconds a pass may take beyond three intervals before /healthz fails. */
#define DAEMON_LIVENESS_GRACE 60

/*
 * The /healthz bound: how long the loop may go without completing a pass.
 * server.livenessTimeout when set, else 3 x source.interval + 60 s (a pass
 * ends at least once per interval, as the loop fetches every interval).
 */
int64_t daemon_liveness_bound(const struct config *cfg);

/* The metrics/readiness revision string: "<ref>@sha1:<commit>" (Flux's form). Caller frees. */
char *daemon_revision(const char *ref, const char *commit);

#endif
