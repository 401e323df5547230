/*
 * The pipeline shared by validate, plan, apply and run: manifests at a
 * commit (parsed once per blob id) → desired set; desired × state × outputs
 * (× provider refresh) → plan.
 */
#ifndef CS_RECONCILER_RECONCILE_H
#define CS_RECONCILER_RECONCILE_H

#include <stddef.h>

#include "../manifests/manifest.h"
#include "../state/state.h"
#include "../util/diag.h"
#include "config.h"
#include "plan/plan.h"
#include "source/gitsrc.h"

/* Parsed manifests by blob id, kept across reconciles (the daemon) or for one run (the CLI). */
struct spec_cache;
struct spec_cache *spec_cache_new(void);
void spec_cache_free(struct spec_cache *c);

/* The desired set at one commit. */
struct desired {
	char commit[41];
	size_t n_files;
	struct cert_spec **specs;
	size_t n_specs;		  /* valid specs, sorted by name (borrowed from the cache) */
	size_t n_invalid;	  /* documents or certificates left out for errors */
	struct diags diags;	  /* every problem, sorted by file:line:col */
	struct spec_cache *owned; /* the private cache when none was given */
	/* With a caller's cache and no problem: the set checks, kept for reconcile_desired_next. */
	struct manifest_set_index *index;
};

/*
 * Reads and checks the manifests under cfg->source.path at commit. Files
 * whose blob id is in cache are not parsed again; an empty or absent cache
 * is first filled from the parse cache file (source.cacheDir), which gets
 * what was parsed. Problems go to out->diags; returns an error only when
 * the source itself failed.
 */
int reconcile_desired(const struct config *cfg, struct gitsrc *g, const char *commit, struct spec_cache *cache,
		      struct desired *out);

/*
 * The desired set at commit from prev, the set at prev->commit read with the
 * same cfg and cache: only the manifests git's tree diff names are looked
 * up, parsed and checked, and the sorted specs are merged. Falls back to
 * reconcile_desired (the whole tree) when prev had problems, the new files
 * have any, or the diff cannot be made: the result is the same either way.
 * On success prev's index moves to out (prev stays usable otherwise; free
 * it with desired_free as before).
 */
int reconcile_desired_next(const struct config *cfg, struct gitsrc *g, const char *commit, struct spec_cache *cache,
			   struct desired *prev, struct desired *out);
void desired_free(struct desired *d);

struct reconcile_opts {
	int refresh; /* ask providers about recorded certificates */
	int retry_failed;
	int64_t now;
	/* The outputs already observed (reconcile_observe on the same state), or NULL. */
	const enum output_status *observed;
	/* state_cert_list of the state, when the caller has it (one sort per pass), or NULL. */
	struct state_cert *const *recorded;
	size_t n_recorded;
};

/*
 * Observes every recorded certificate's outputs on disk, in
 * state_cert_list order (caller frees; *n may be NULL). Needs only the
 * state, so a caller can run it while the manifests load.
 */
enum output_status *reconcile_observe(const struct config *cfg, const struct state *st, size_t *n);

/*
 * The same over recs (state_cert_list order) for certsync run: w
 * (outwatch.h; NULL: all checked) checks again only the certificates whose
 * directories had events since its last look; now (unix s) times its
 * periodic full check.
 */
struct outwatch;
enum output_status *reconcile_observe_watched(const struct config *cfg, struct state_cert *const *recs, size_t n,
					      struct outwatch *w, int64_t now);

/* How many of outs are OUTPUT_OK_BY_CONTENT. */
size_t reconcile_outputs_moved(const enum output_status *outs, size_t n);

/*
 * For apply and run after they observed: records the new signatures of the
 * outputs found OUTPUT_OK_BY_CONTENT (outputs_restamp), so a copied or
 * restored output root costs one hashing, not one per plan. Returns how
 * many records changed (the caller saves the state).
 */
size_t reconcile_restamp_outputs(const struct config *cfg, struct state_cert *const *recs, size_t n,
				 const enum output_status *outs, int64_t now);

/* Observes outputs (and the providers with refresh) and diffs. */
int reconcile_plan(const struct config *cfg, const char *repo, const char *ref, const struct desired *des,
		   const struct state *st, int has_state, const struct reconcile_opts *o, struct plan **out);

/*
 * A pull-request plan: base (the merge base's desired set) against head,
 * with head's validation errors; paid orders over policy.maxPaidOrders are
 * an error. st (may be NULL) adds renewals due and pending work.
 */
int reconcile_pr_plan(const struct config *cfg, const char *repo, const char *ref, const struct desired *base,
		      const struct desired *head, const struct state *st, int64_t now, struct plan **out);

/*
 * source.verify: checks that commit carries a good signature by one of
 * source.verify.keys (a no-op without source.verify). *signer (may be NULL;
 * caller frees) names the key. CS_EAUTH with a message naming the commit
 * and the signing key, or "unsigned": such a commit is never applied.
 */
int reconcile_verify_head(const struct config *cfg, struct gitsrc *g, const char *commit, char **signer);

/*
 * Provider upkeep that is due for ready certificates (provider_ops.upkeep:
 * ACME asks the CA's renewal window again once its Retry-After passed), for
 * apply and run before they plan; stop (may be NULL) ends it early. The
 * state must be locked by the caller. Returns how many records changed (to
 * be saved).
 */
size_t reconcile_upkeep(const struct config *cfg, struct state *st, int64_t now, volatile int *stop);

/* The same over recs (state_cert_list of the state) when the caller has them. */
size_t reconcile_upkeep_recs(const struct config *cfg, struct state_cert *const *recs, size_t n, int64_t now,
			     volatile int *stop);

/* Opens the configured source (URL or path) with the config's cache dir, token, SSH key and CA file. */
int reconcile_open_source(const struct config *cfg, struct gitsrc **out);

#endif
