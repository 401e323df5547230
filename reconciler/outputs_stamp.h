/*
 * The publication stamp: <output.root>/.certsync-published, rewritten
 * atomically (temp file, rename; no fsync) each time a certificate's outputs are
 * published. A systemd .path unit with PathChanged= on it sees every
 * publication, however deep the output directory (inotify does not recurse).
 * Content: one line "<unix time> <output directory>" of the last one.
 */
#ifndef CS_RECONCILER_OUTPUTS_STAMP_H
#define CS_RECONCILER_OUTPUTS_STAMP_H

#define OUTPUTS_STAMP_NAME ".certsync-published"

/*
 * Rewrites the stamp after dir (relative to root) was published. A failure
 * is logged as a warning and returned (CS_ERROR with the path and reason);
 * the publication itself stands either way.
 */
int outputs_stamp(const char *root, const char *dir);

#endif
