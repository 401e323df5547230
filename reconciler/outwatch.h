/*
 * Output checks that follow change (certsync run): inotify on the output
 * root, every certificate's parent directories and its published generation
 * directory, so a pass checks again only the certificates whose directories
 * had events since the last look; the others keep their last result.
 *
 * Everything is checked (stat, as reconcile_observe does) at the first look,
 * after the kernel's event queue overflowed, for a certificate whose
 * directories are not all watched yet or whose record changed (a new
 * generation), every OUTWATCH_FULL_EVERY seconds (changes inotify cannot see:
 * writes through a shared mapping or through a hard link outside the output
 * tree), and always when watching is off: CERTSYNC_OUTWATCH=off, an output
 * root on a network or FUSE file system, no inotify, or the watch limit
 * reached (fs.inotify.max_user_watches, or CERTSYNC_OUTWATCH_MAX watches of
 * certsync's own). Each of those is logged once.
 */
#ifndef CS_RECONCILER_OUTWATCH_H
#define CS_RECONCILER_OUTWATCH_H

#include <stddef.h>
#include <stdint.h>

#include "../state/state.h"
#include "plan/plan.h"

#define OUTWATCH_FULL_EVERY 600 /* seconds between full checks, whatever the events say */

struct outwatch;

/*
 * Checks recs[0..n) on disk into outs: by their signatures (stat), or with
 * deep (their directories had events) by their contents too, since an edit
 * in place may keep size and mtime.
 */
typedef void (*outwatch_check_fn)(void *arg, const char *root, struct state_cert *const *recs, size_t n,
				  enum output_status *outs, int deep);

/* A watcher of root (always returned; it checks everything when watching is off). */
struct outwatch *outwatch_new(const char *root);
void outwatch_free(struct outwatch *w);

/* The output root it watches. */
const char *outwatch_root(const struct outwatch *w);

/*
 * Observes recs (state_cert_list order: sorted by name) into outs: drains
 * the events, watches the directories of the certificates it checks (before
 * checking them, so a change after the check is an event at the next look)
 * and calls check on those only (deep for those with events). now is for
 * the periodic full check. Returns how many certificates were checked.
 */
size_t outwatch_observe(struct outwatch *w, struct state_cert *const *recs, size_t n, enum output_status *outs,
			int64_t now, outwatch_check_fn check, void *arg);

/* Whether inotify is in use (0: every look checks everything). */
int outwatch_active(const struct outwatch *w);

#endif
