/*
 * The apply's estimate of its finish (pure): from the provider requests
 * still to send, the provider's rate budget (X-RateLimit-* as the HTTP
 * client last saw it) and the pace the workers keep, when the last
 * request is answered. Rate-bound when a spent budget makes the apply wait
 * for a window; latency-bound otherwise.
 */
#ifndef CS_RECONCILER_ENGINE_ETA_H
#define CS_RECONCILER_ENGINE_ETA_H

#include <stddef.h>
#include <stdint.h>

#include "provider.h"

struct engine_eta {
	double finish;	 /* unix seconds (fractional) */
	int rate_bound;	 /* at least one window's budget runs out before its requests are sent */
	double requests; /* the requests the estimate counts */
};

/*
 * The finish of `requests` more requests sent at `per_second` (the pace
 * the workers keep when nothing holds them back; > 0) from `now`, under b
 * (b->have = 0: no limit). A fixed window: b->remaining (plus b->inflight,
 * which `requests` counts) are left until b->reset, then b->limit per
 * b->window seconds, each window starting when the last one ends.
 */
void engine_eta_finish(double now, double requests, double per_second, const struct provider_budget *b,
		       struct engine_eta *out);

/*
 * The correction of a provider's per-step guess by what the apply has
 * seen: requests actually sent over the requests the guess says the steps
 * done so far took, smoothed (a prior of `weight` requests at 1) and
 * bounded to [0.5, 4].
 */
double engine_eta_correction(double sent, double guessed, double weight);

/*
 * "2026-12-05T16:45:12Z (in 1m05s)" for finish seen from now into out (n
 * >= 64).
 */
void engine_eta_format(double finish, double now, char *out, size_t n);

#endif
