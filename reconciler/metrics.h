/*
 * The daemon's metrics (DESIGN §5): one process-wide registry, updated by the
 * loop, the HTTP client observer and the webhook path, rendered in the
 * Prometheus text format (version 0.0.4) with the certsync_ prefix and
 * cert-manager's shapes (docs/metrics.md). Thread-safe; no library types.
 */
#ifndef CS_RECONCILER_METRICS_H
#define CS_RECONCILER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"

/* Distinct label sets kept per counter family; more are folded into one "other" series. */
#define METRICS_MAX_SERIES 256

/* One certificate's gauges (a snapshot the loop takes after each reconcile). */
struct metrics_cert {
	char *name, *issuer;
	char *issuer_kind;    /* the issuer's type ("ca", "dnsimple", ...): cert-manager's issuer_kind label */
	int ready;	      /* 1 True, 0 False, -1 Unknown */
	int64_t not_before;   /* 0 = no certificate installed */
	int64_t not_after;    /* expiration */
	int64_t renewal_time; /* when a renewal becomes due (jitter included), 0 = unknown */
	int64_t last_success; /* last completed change, 0 = never */
	int64_t next_attempt; /* pending step's next try, 0 = none */
	int failed_attempts;  /* of the current step; at least 1 for a failed certificate */
	int64_t last_failure; /* when a step last failed, 0 = never (or cleared by a success) */
	int failing;	      /* failed, or its current step failed and backs off */
	char *fail_class;     /* with failing: "config", "transient", "rejected", "verification" or "unknown" */
};

void metrics_cert_clear(struct metrics_cert *c);

/*
 * Forgets everything (tests, and a fresh daemon), then registers at zero
 * every counter series whose labels are known before any event (reconciles
 * and fetches by result, forged and unknown-provider webhooks), so rate()
 * and alerts see them from the first scrape.
 */
void metrics_reset(void);

/*
 * Registers at zero the webhook series of a provider type that takes
 * webhooks whose labels are known in advance (outcomes malformed, oversized
 * and queue_full, event "unknown"). Idempotent.
 */
void metrics_webhook_provider(const char *provider);

/* An HTTP request to a provider: op is "provider operation" (http_request.op), status 0 = no response. */
void metrics_provider_request(const char *op, long status);

/* The rate-limit budget a provider reported (op as above: the provider is its first word). */
void metrics_provider_ratelimit(const char *op, long limit, long remaining, int64_t reset);

/*
 * The estimated finish of the apply in progress (unix seconds) and whether
 * a provider's rate budget bounds it; finish 0: no apply in progress (the
 * gauges are absent). The engine sets it with each estimate.
 */
void metrics_set_apply_eta(double finish, int rate_bound);

/* A webhook delivery: provider type, event name (bounded by the caller) and outcome. */
void metrics_webhook_event(const char *provider, const char *event, const char *outcome);

/* A reconcile pass that applied changes: result "success" or "failure", duration in seconds. */
void metrics_reconcile(const char *result, double seconds);

/* A source fetch at `when`: ok or not; revision "branch@sha1:<hex>" of the last good commit (NULL = none). */
void metrics_fetch(int ok, int64_t when, const char *revision);

/* source.verify: the head commit was verified (1) or refused (0); -1 = verification off (no series). */
void metrics_source_verified(int verified, const char *head);

/* source.suspend in effect (1) or not (0). */
void metrics_source_suspended(int suspended);

/* The loop completed a pass at `when` (unix s, fractional); /healthz fails after bound_s without another. */
void metrics_set_loop(double when, int64_t bound_s);

/* Readiness and the state's serial, as gauges. */
void metrics_set_ready(int ready);
void metrics_set_state_serial(uint64_t serial);

/*
 * A replica on a shared state backend: whether it leads, how often the
 * leader changed as it saw it, and its lag behind the shared state (seconds
 * since the oldest shared change it has not installed yet; 0 in sync).
 * Rendered only once set (a file-backend run has no replicas).
 */
void metrics_set_replica(int leader, uint64_t leader_changes, double lag_seconds);

/* Replaces the per-certificate snapshot; takes ownership of v (and its strings). */
void metrics_set_certs(struct metrics_cert *v, size_t n);

/* Appends the whole exposition to out. 0, or CS_EINVALID when out's cap is reached. */
int metrics_render(struct buf *out);

/* Escapes a label value for the text format (\\, \", \n) into out. */
void metrics_escape_label(struct buf *out, const char *value);

#endif
