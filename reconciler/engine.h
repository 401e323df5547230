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
	int parallelism;    /* worker threads (default 4) */
	int64_t wait;	    /* seconds to keep polling pending steps (apply --wait) */
	volatile int *stop; /* set by a signal: finish the current step, take no more work */
};

struct engine_result {
	size_t done;	 /* changes completed */
	size_t pending;	 /* waiting on the provider (resumed by the next apply) */
	size_t failed;	 /* failed this run (transient or permanent) */
	size_t deferred; /* paid changes over the cap */
	size_t skipped;	 /* not started (stop requested) */
};

/*
 * Applies the plan's changes. specs are the desired specs (looked up by
 * name). The state must be locked by the caller; every step is journaled
 * through be. Returns 0 when the engine ran (see res for outcomes), or an
 * error that stopped it (state could not be written).
 */
int engine_apply(const struct config *cfg, struct state_backend *be, struct state *st, const struct plan *plan,
		 struct cert_spec *const *specs, size_t n_specs, const struct engine_opts *opts,
		 struct engine_result *res);

#endif
