/*
 * Hooks from config (never from manifests): hooks.onChange, run after each
 * certificate is installed, and hooks.afterApply, run once per apply or
 * `run` pass that installed anything (N renewals, one reload).
 */
#ifndef CS_RECONCILER_HOOKS_H
#define CS_RECONCILER_HOOKS_H

#include "../state/state.h"
#include "config.h"

/*
 * Runs hooks.onChange (if configured) with CERTSYNC_CERT_NAME,
 * CERTSYNC_CERT_DIR, CERTSYNC_CERT_DOMAINS, CERTSYNC_EVENT=installed and
 * certbot's deploy-hook names RENEWED_LINEAGE (the directory) and
 * RENEWED_DOMAINS (the DNS names, space-separated; from spec, which may be
 * NULL) in its environment, waiting at most hooks.timeout (then killed).
 * Returns 0, or an error (logged) when the command failed, timed out or
 * could not start.
 */
int hooks_on_change(const struct config *cfg, const char *name, const char *output_dir, const struct cert_spec *spec);

/*
 * The record id that says a certificate was published since hooks.afterApply
 * last ran successfully (value "1"). engine_install sets it when the hook is
 * configured, so it is journaled with the install and survives a crash.
 */
#define HOOKS_ID_AFTER_APPLY "hooks.after_apply"

/* Marks rec as owing hooks.afterApply (when one is configured). */
void hooks_after_apply_mark(const struct config *cfg, struct state_cert *rec);

/*
 * Runs hooks.afterApply once for every record of st that owes it (none: does
 * nothing), with CERTSYNC_EVENT=afterApply, CERTSYNC_CHANGED (names),
 * CERTSYNC_CHANGED_DIRS (absolute output directories),
 * CERTSYNC_CHANGED_DOMAINS (the union of their DNS names, from specs, sorted
 * by name; may be NULL), all space-separated in name order,
 * CERTSYNC_CHANGED_COUNT and CERTSYNC_OUTPUT_ROOT. A list longer than
 * HOOKS_LIST_MAX bytes is cut after a whole entry and CERTSYNC_CHANGED_TRUNCATED=1
 * is set. On success the marks are cleared; *cleared (may be NULL) gets how
 * many records changed (the caller saves or journals them). Marks left by a
 * config that no longer has the hook are cleared without running anything.
 * Returns 0, or the hook's error (logged; the marks stay: it is owed).
 */
#define HOOKS_LIST_MAX (64 * 1024)
int hooks_after_apply(const struct config *cfg, struct state *st, struct cert_spec *const *specs, size_t n_specs,
		      size_t *cleared);

/*
 * A process-wide stop flag (the daemon's SIGTERM): once *flag is set, a
 * running hook gets at most 5 more seconds before it is killed (and then
 * counts as failed, so it is owed). NULL removes it.
 */
void hooks_set_stop_flag(volatile int *flag);

#endif
