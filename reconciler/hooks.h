/* On-change hooks from config (never from manifests): a command run after a certificate is installed. */
#ifndef CS_RECONCILER_HOOKS_H
#define CS_RECONCILER_HOOKS_H

#include "config.h"

/*
 * Runs hooks.onChange (if configured) with CERTSYNC_CERT_NAME,
 * CERTSYNC_CERT_DIR and CERTSYNC_EVENT=installed in its environment, waiting
 * at most hooks.timeout (then killed). Returns 0, or an error (logged) when
 * the command failed, timed out or could not start.
 */
int hooks_on_change(const struct config *cfg, const char *name, const char *output_dir);

/*
 * A process-wide stop flag (the daemon's SIGTERM): once *flag is set, a
 * running hook gets at most 5 more seconds before it is killed (and then
 * counts as failed, so it is owed). NULL removes it.
 */
void hooks_set_stop_flag(volatile int *flag);

#endif
