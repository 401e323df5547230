/*
 * Output directories (DESIGN §5): each certificate's files are written into
 * a fresh hidden directory and published by an atomic symlink swap, so a
 * reader never sees a new certificate with an old key.
 *
 *   <root>/<dir>            -> .<base>.<gen>   (symlink, relative)
 *   <root>/.<base>.<gen>/   tls.crt (leaf + intermediates), tls.key (0600), ca.crt
 */
#ifndef CS_RECONCILER_OUTPUTS_H
#define CS_RECONCILER_OUTPUTS_H

#include "../state/state.h"
#include "../util/buf.h"
#include "plan/plan.h"

#define OUTPUT_MAX_FILE (1024 * 1024)

/*
 * Writes cert/key/ca into a new generation of root/dir and swaps the symlink.
 * Refuses a dir that resolves outside root (symlinked parents) and an
 * existing path there that certsync did not create (CS_EINVALID,
 * CS_ECONFLICT: permanent). A local write failure (ENOSPC, EROFS, EACCES,
 * ENOTDIR) is CS_ETRANSIENT with the path and the system's reason, and leaves
 * the published generation as it was. Records the generation and the files'
 * signature and hash in rec; removes the previous generation.
 */
int outputs_publish(const char *root, const char *dir, const struct buf *cert, const struct buf *key,
		    const struct buf *ca, struct state_cert *rec);

/* Whether rec's installed files are present and unaltered (cheap stat check first, hash on doubt). */
enum output_status outputs_check(const char *root, const struct state_cert *rec);

/* The same against root opened once with outputs_root_open (-1 if it could not be: all missing). */
int outputs_root_open(const char *root);
enum output_status outputs_check_at(int rootfd, const char *root, const struct state_cert *rec);

/* Deletes rec's published directory and symlink (only what certsync created). */
int outputs_remove(const char *root, const struct state_cert *rec);

/* Reads the installed tls.key of root/dir into out (caller wipes). CS_ENOTFOUND if absent. */
int outputs_read_key(const char *root, const char *dir, struct buf *out);

#endif
