/*
 * The apply engine: drives each certificate of a plan through its provider
 * steps, journaling the record after every step, certificates in parallel,
 * one failure never stopping the others.
 */
#ifndef CS_RECONCILER_ENGINE_H
#define CS_RECONCILER_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "../manifests/manifest.h"
#include "../state/state.h"
#include "config.h"
#include "plan/plan.h"

struct engine_opts {
	int parallelism;       /* worker threads (default 4) */
	int64_t wait;	       /* seconds to keep polling pending steps (apply --wait) */
	volatile int *stop;    /* set by a signal: finish the current step, take no more work */
	struct keystore *keys; /* the key store (backends_open_keystore); NULL: the file store under cfg->key_dir */
};

struct engine_result {
	size_t done;	 /* changes completed */
	size_t pending;	 /* waiting on the provider (resumed by the next apply) */
	size_t failed;	 /* failed this run (transient or permanent) */
	size_t deferred; /* paid changes over the cap */
	size_t skipped;	 /* not started (stop requested) */
};

/*
 * Applies the plan's changes. Every failed step records the certificate's
 * failure_class, last_error, attempts + 1 and next_try (capped exponential
 * backoff: 30 s doubled per attempt, at most 1 h, plus up to 25 % jitter) for
 * every class; success (or the provider accepting a request) clears them.
 * A transient failure leaves the record pending, any other makes it failed.
 * specs are the desired specs (looked up by name). The state must be locked
 * by the caller; every step is journaled through be. Returns 0 when the
 * engine ran (see res for outcomes), or an error that stopped it (state could
 * not be written: the message names the first cause, from whichever worker
 * met it).
 */
int engine_apply(const struct config *cfg, struct state_backend *be, struct state *st, const struct plan *plan,
		 struct cert_spec *const *specs, size_t n_specs, const struct engine_opts *opts,
		 struct engine_result *res);

/*
 * The checks engine_install makes before it publishes, alone: ctx->mat
 * holds the certificate of ctx->rec (as recorded) for ctx->spec, with
 * ctx->issuer, ctx->cfg and ctx->now set (ctx->engine may be NULL). A
 * follower replica verifies what it installs from the shared key store so.
 */
struct step_ctx;
int engine_verify(struct step_ctx *ctx);

/*
 * The failure class (STATE_FAIL_*) of a failed step: the driver's when it
 * named one (step_ctx.fail_class), else from the code: CS_EAUTH (a
 * credential missing, unreadable, too open, or refused) is config,
 * CS_ETRANSIENT is transient, anything else is rejected.
 */
const char *engine_failure_class(int rc, const char *driver_class);

#endif
