/* The daemon's private state, shared by daemon.c (loop, signals, source) and pass.c (reconcile, webhooks, status). */
#ifndef CS_RECONCILER_DAEMON_INT_H
#define CS_RECONCILER_DAEMON_INT_H

#include <signal.h>
#include <stdint.h>

#include "daemon.h"
#include "../reconcile.h"
#include "../server/http_server.h"
#include "../source/gitsrc.h"

struct daemon {
	volatile sig_atomic_t *stop; /* set by the SIGTERM/SIGINT handler (daemon.c); read by pass.c and workers */
	struct config *cfg;
	const struct daemon_opts *opts;
	struct state_backend *be;
	struct state *st;
	int has_state;
	struct gitsrc *git;
	struct spec_cache *cache;
	struct desired des;
	int have_des;
	char commit[41]; /* the last good revision */
	char *fetch_error;
	int fetch_ok;
	/* source.verify: the last head refused (not verified again until it moves) and why */
	char rejected[41];
	char *verify_error;
	int suspend_logged; /* source.suspend: said once */
	struct http_server *srv;
	int64_t next_fetch;
	int64_t next_due;  /* earliest future time something is due (0 = nothing) */
	int first_done;	   /* a complete reconcile pass happened */
	int state_ok;	   /* the last state write succeeded and its directory is writable */
	int dirty;	   /* state changed outside the engine (webhook ids): save it */
	int64_t next_save; /* dirty state is written at most every DAEMON_SAVE_EVERY seconds */
	int kick;	   /* reconcile now (start, new commit, SIGUSR1, interval tick) */
	int force;	   /* SIGUSR1, SIGHUP: ignore backoff */
	int retry_all;	   /* explicit retry (SIGUSR2, POST /retry): failed certificates too, like --retry-failed */
	char **retry;	   /* explicit retry of these certificates (POST /retry/<name>) */
	size_t n_retry, cap_retry;
	int64_t last_plan;		 /* `now` of the last pass's plan: due times up to it were considered */
	struct daemon_outnote *outnotes; /* recorded certificates whose outputs are not as installed, by name */
	size_t n_outnotes;
	char budget_commit[41]; /* the revision paid_used counts for */
	int paid_used;		/* paid creates/replaces applied for it (policy.maxPaidOrders per revision) */
	int budget_warned;
	int lost_state; /* started with no state but a backup: paid changes wait for the operator (restart) */
	int lost_warned;
	char **forced; /* certificates a webhook asked about: ignore their backoff */
	size_t n_forced, cap_forced;
	/* Replicas on a shared state backend (replica.c); with the file backend shared is 0 and leader 1. */
	struct keystore *keys;	 /* the configured key store (shared backend only; NULL: the engine's default) */
	int shared;		 /* the state backend is shared: there are leader and followers */
	int leader;		 /* this process holds the lease: it alone plans, calls providers and writes */
	int need_load;		 /* follower: the shared state must be read again in full */
	int sync_all;		 /* follower: check every record against the local outputs */
	int64_t next_lease_ms;	 /* follower: next try at the lease (monotonic ms) */
	int64_t next_sync;	 /* follower: the periodic full reread (unix s) */
	int64_t lag_since_ms;	 /* follower: a shared change not installed yet was first seen then (0 = in sync) */
	uint64_t leader_changes; /* leader changes seen (certsync_leader_changes_total) */
	int changed;		 /* set by the backend's listener thread: the shared state changed or a kick came */
	int reload;		 /* leader: a state write failed; read the state again before the next pass */
	int fenced;		 /* a state write came back CS_EFENCED: follow at the next look */
	char follow_commit[41];	 /* follower: the leader's revision last fetched for */
	char synced_commit[41];	 /* follower: the revision its last sync had the manifests of */
	char holder[512];	 /* who leads, as last logged */
	struct state *local;	 /* follower: what this replica installed into its own output root, by name */
	struct state *warned;	 /* follower: per certificate, the serial whose failed install was logged */
	char **lagging;		 /* follower: shared records not installed yet (retried at the next sync) */
	size_t n_lagging, cap_lagging;
	/* hooks.afterApply (pass.c): a failed run is owed and retried with backoff */
	int after_owed;		   /* some record may owe it (set at start and after a failure) */
	int after_fresh;	   /* follower: a certificate was installed since the last run */
	int after_attempts;	   /* failed runs in a row */
	int64_t after_next;	   /* no retry before (unix s; 0 = now) */
	int64_t outputs_gc_at;	   /* the next time a kept previous generation expires (0 = none known) */
	struct outwatch *outwatch; /* leader: inotify on the output root, so a pass stats only what changed */
};

/* A certificate whose output files were found missing or altered at the last look. */
struct daemon_outnote {
	char *name;
	enum output_status status;
};

/* Wakes the loop (async-signal-safe: a byte into the wake pipe). */
void daemon_poke(void);

/* The desired spec of that name (NULL when the manifests have none). */
const struct cert_spec *daemon_spec(const struct daemon *d, const char *name);

/* Reconcile this certificate at the next pass, its backoff ignored (a webhook asked). */
void daemon_force(struct daemon *d, const char *name);

/* One reconcile pass: plan, keep what is due, apply, save. */
void daemon_pass(struct daemon *d);
/* The process CPU time (us): a pass's own cost, apart from the wall time other processes take on a busy host. */
int64_t daemon_cpu_us(void);

/* Handles the queued webhook deliveries (names go to d->forced). */
void daemon_webhooks(struct daemon *d);

/* Runs owed on-change hooks whose retry time has come (all of them with force: SIGUSR1). */
void daemon_hooks(struct daemon *d, int64_t now, int force);

/*
 * Runs hooks.afterApply for st's records that owe it: at once with force (a
 * pass or follower sync installed something), else only when a failed run is
 * owed and its backoff (30 s doubling to 1 h) has passed. 1 if a record changed.
 */
int daemon_after_apply(struct daemon *d, struct state *st, int64_t now, int force);

/*
 * Removes replaced output generations once output.keepPreviousFor has passed
 * (when d->outputs_gc_at is due); _soon schedules that after a publish.
 */
void daemon_outputs_gc(struct daemon *d, int64_t now);
void daemon_outputs_gc_soon(struct daemon *d, int64_t now);

/* Queues an explicit retry: one certificate, or every failed one (name NULL). */
void daemon_retry(struct daemon *d, const char *name);

/* Frees the pass's bookkeeping (forced and retried names, output notes). */
void daemon_pass_free(struct daemon *d);

/* Recomputes d->next_due, the per-certificate metrics and readiness. */
void daemon_observe(struct daemon *d, int64_t now);

/* Registers the webhook URL with every issuer that can (server.publicURL). */
void daemon_register_webhooks(struct daemon *d);

/* Runs owed on-change hooks of st's records (the local outputs' when a follower); 1 if a record changed. */
int daemon_hooks_in(struct daemon *d, struct state *st, int64_t now, int force);

/* ---------- replicas (replica.c) ---------- */

/*
 * Opens the configured state backend and key store and takes the role: the
 * file backend locks or fails (as always); a shared backend leads when it
 * gets the lease and follows (logging who leads) when another holds it.
 */
int daemon_replica_open(struct daemon *d);

/*
 * Once per loop turn, before anything else: a leader that lost its lease (or
 * had a write fenced) becomes a follower; a follower tries the lease when
 * due, reads the shared changes and installs them into its own outputs; the
 * leader takes the kicks forwarded by followers.
 */
void daemon_replica_step(struct daemon *d);

/* A write came back CS_EFENCED (or the lease was lost): become a follower now. */
void daemon_replica_fenced(struct daemon *d);

/* The next wake-up a shared backend needs (monotonic ms from now), or -1. */
int64_t daemon_replica_wait_ms(const struct daemon *d);

/* A follower's /readyz view of a certificate: NULL when its local outputs hold the recorded certificate. */
const char *daemon_replica_not_ready(const struct daemon *d, const struct state_cert *r);

/* Publishes the replica metrics; adds "role" and "leader" to a /readyz body. */
void daemon_replica_observe(struct daemon *d, struct buf *readyz);

/* Releases the lease and the key store. */
void daemon_replica_close(struct daemon *d);

#endif
