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
};

/* A certificate whose output files were found missing or altered at the last look. */
struct daemon_outnote {
	char *name;
	enum output_status status;
};

/* One reconcile pass: plan, keep what is due, apply, save. */
void daemon_pass(struct daemon *d);

/* Handles the queued webhook deliveries (names go to d->forced). */
void daemon_webhooks(struct daemon *d);

/* Runs owed on-change hooks whose retry time has come (all of them with force: SIGUSR1). */
void daemon_hooks(struct daemon *d, int64_t now, int force);

/* Queues an explicit retry: one certificate, or every failed one (name NULL). */
void daemon_retry(struct daemon *d, const char *name);

/* Frees the pass's bookkeeping (forced and retried names, output notes). */
void daemon_pass_free(struct daemon *d);

/* Recomputes d->next_due, the per-certificate metrics and readiness. */
void daemon_observe(struct daemon *d, int64_t now);

/* Registers the webhook URL with every issuer that can (server.publicURL). */
void daemon_register_webhooks(struct daemon *d);

#endif
