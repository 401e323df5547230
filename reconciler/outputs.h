/*
 * Output directories (DESIGN §5): each certificate's files are written into
 * a fresh hidden directory and published by an atomic symlink swap, so a
 * reader never sees a new certificate with an old key. The previous
 * generation stays output.keepPreviousFor (default 60 s) after the swap, so
 * a reader that resolved the link before it can still open its files
 * (docs/run.md, "Reading the outputs safely").
 *
 *   <root>/<dir>            -> .<base>.<gen>   (symlink, relative)
 *   <root>/.<base>.<gen>/   tls.crt (leaf + intermediates), tls.key (0600), ca.crt,
 *                           and the spec's output.formats (chain.pem, combined.pem, ...)
 */
#ifndef CS_RECONCILER_OUTPUTS_H
#define CS_RECONCILER_OUTPUTS_H

#include "../state/state.h"
#include "../util/buf.h"
#include "config.h"
#include "plan/plan.h"

#define OUTPUT_MAX_FILE (1024 * 1024)

/* Record ids: the formats written with the installed generation ("chain.pem,keystore.p12") and their signatures. */
#define OUTPUTS_ID_FORMATS "outputs.formats"
#define OUTPUTS_ID_FORMAT_SIGS "outputs.format_sigs"

/* What one generation holds. */
struct output_files {
	const struct buf *cert, *key, *ca;
	unsigned formats;	  /* 1 << OUTFMT_* beside the three */
	const char *p12_password; /* OUTFMT_P12: the keystore's password */
	const char *name;	  /* OUTFMT_P12: the friendly name of the key entry */
};

/*
 * Writes cert/key/ca into a new generation of root/dir and swaps the symlink.
 * Refuses a dir that resolves outside root (symlinked parents) and an
 * existing path there that certsync did not create (CS_EINVALID,
 * CS_ECONFLICT: permanent). A local write failure (ENOSPC, EROFS, EACCES,
 * ENOTDIR) is CS_ETRANSIENT with the path and the system's reason, and leaves
 * the published generation as it was. Records the generation and the files'
 * signature and hash in rec; removes the previous generation.
 */
int outputs_publish(const char *root, const char *dir, const struct output_files *f, int64_t keep_previous,
		    struct state_cert *rec);

/*
 * outputs_publish into dir (NULL: s's output directory) for spec s with cfg's root, output.keepPreviousFor and
 * output.pkcs12Password (read only when s asks for keystore.p12: a missing
 * or unreadable password is CS_EAUTH, a configuration failure).
 */
int outputs_publish_spec(const struct config *cfg, const struct cert_spec *s, const char *dir, const struct buf *cert,
			 const struct buf *key, const struct buf *ca, struct state_cert *rec);

/*
 * Removes the generations of recs' output directories that were replaced
 * more than keep_previous seconds before now (and leftovers of a crash);
 * never the published one. *next (may be NULL) gets the earliest time a kept
 * one expires (0: none). Returns how many directories were removed.
 */
size_t outputs_gc(const char *root, const struct state *st, int64_t keep_previous, int64_t now, int64_t *next);

/*
 * Whether rec's installed files are present and unaltered (cheap stat check
 * first, hash on doubt): OUTPUT_OK_BY_CONTENT when the hash shows them
 * unaltered but their signatures moved.
 */
enum output_status outputs_check(const char *root, const struct state_cert *rec);

/*
 * The same, hashing the files even when their signatures match: for a
 * directory with events, where an edit may have kept size and mtime.
 */
enum output_status outputs_check_deep(const char *root, const struct state_cert *rec);

/* The same against root opened once with outputs_root_open (-1 if it could not be: all missing). */
int outputs_root_open(const char *root);
enum output_status outputs_check_at(int rootfd, const char *root, const struct state_cert *rec);

/*
 * After OUTPUT_OK_BY_CONTENT (the output root copied or restored, a file
 * touched: every later check would hash the files again): records in rec
 * the signatures its files have now, when the link still names its
 * generation and their content is what was installed. Files modified less
 * than OUTPUTS_RESTAMP_SETTLE seconds before now (unix s) are left for a
 * later look: a second write within the same timestamp tick would keep the
 * signature taken now. Returns 1 when rec changed (the caller saves it).
 */
#define OUTPUTS_RESTAMP_SETTLE 2
int outputs_restamp(const char *root, struct state_cert *rec, int64_t now);

/* Deletes rec's published directory and symlink (only what certsync created). */
int outputs_remove(const char *root, const struct state_cert *rec);

/* Reads the installed tls.key of root/dir into out (caller wipes). CS_ENOTFOUND if absent. */
int outputs_read_key(const char *root, const char *dir, struct buf *out);

#endif
