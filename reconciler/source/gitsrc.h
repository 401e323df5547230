/*
 * The git source (libgit2, owned by gitsrc.c and gitsrc_tree.c): opens a local
 * repository or a bare clone of a remote one kept in a cache directory,
 * resolves a ref to a commit, lists and reads manifest blobs from the
 * commit's tree (never a working tree), and lists files changed between two
 * commits.
 */
#ifndef CS_RECONCILER_SOURCE_GITSRC_H
#define CS_RECONCILER_SOURCE_GITSRC_H

#include <stddef.h>

#include "../../util/buf.h"

#define GITSRC_MAX_FILES 100000

struct gitsrc;

struct gitsrc_opts {
	const char *repo;      /* local path (worktree or bare) or URL: file://, git://, https://, http://, ssh://,
				  user@host:path */
	const char *cache_dir; /* where remote repositories are cloned (bare); required for URLs */
	const char *token;     /* https token (sent as basic auth password), may be NULL; never logged */
	const char *ca_file;   /* CA bundle for https, may be NULL; process-wide, replaces the system bundle */
	/* SSH remotes only: */
	const char *ssh_key; /* deploy key (private key PEM/OpenSSH text); never logged, copied and wiped on free */
	const char *ssh_passphrase; /* its passphrase, may be NULL */
	const char *known_hosts;    /* known_hosts text; required: an unknown or changed host key is refused */
};

/*
 * Opens the source. For a URL: clones it bare into cache_dir (a directory
 * name derived from the URL, credentials stripped) on first use, then
 * fetches on every open. For a local path: opens it as is (no fetch).
 * Errors name the repository (URL without credentials) and libgit2's message.
 * CS_ENOTFOUND (no repository at a local path), CS_EINVALID (unsupported
 * scheme, no cache_dir, bad ca_file), or the codes of gitsrc_fetch.
 */
int gitsrc_open(const struct gitsrc_opts *opts, struct gitsrc **out);
void gitsrc_free(struct gitsrc *g);

/* Releases libgit2's global state at exit, after the last gitsrc is freed (a later open initialises it again). */
void gitsrc_global_shutdown(void);

/*
 * Fetches again (remote repositories only; a no-op for local ones). On
 * failure the clone keeps the previous revision. CS_ETRANSIENT on network
 * errors, CS_EAUTH when the server refuses the credentials (the token is
 * offered 3 times at most), CS_ERROR for a bad server certificate.
 */
int gitsrc_fetch(struct gitsrc *g);

/*
 * Resolves ref (branch name, tag, full or abbreviated commit id, "HEAD", or
 * any revparse expression) to a commit id (40 hex + NUL). For remote
 * repositories a branch name resolves to the fetched remote branch.
 * CS_ENOTFOUND with a message naming the ref.
 */
int gitsrc_resolve(struct gitsrc *g, const char *ref, char out[41]);

/*
 * The merge base of two commits (for PR plans). Here and below, a commit
 * argument is a full commit id or anything gitsrc_resolve accepts.
 */
int gitsrc_merge_base(struct gitsrc *g, const char *a, const char *b, char out[41]);

struct gitsrc_file {
	char *path;   /* path inside the repository ("certificates/web/a.yaml") */
	char oid[41]; /* blob id */
	size_t size;
};

/*
 * Lists the *.yaml / *.yml blobs under dir (recursive; "" or "." = the whole
 * tree) at commit, sorted by path. A missing dir is CS_ENOTFOUND with a
 * message. Symlinks and submodules are skipped. *out is freed with gitsrc_files_free.
 */
int gitsrc_list(struct gitsrc *g, const char *commit, const char *dir, struct gitsrc_file **out, size_t *n);

/*
 * gitsrc_list without reading each blob's header: a size the previous
 * listing did not see is GITSRC_SIZE_UNKNOWN (a cold listing of 10,000 loose
 * objects would open every one). For a caller that reads few blobs, each with
 * gitsrc_read_blob (which checks the size itself) or gitsrc_blob_size.
 */
#define GITSRC_SIZE_UNKNOWN ((size_t)-1)
int gitsrc_list_lazy(struct gitsrc *g, const char *commit, const char *dir, struct gitsrc_file **out, size_t *n);

/* A blob's size (from the last listing or its header). CS_ENOTFOUND if there is no such blob. */
int gitsrc_blob_size_of(struct gitsrc *g, const char *oid, size_t *size);
void gitsrc_files_free(struct gitsrc_file *v, size_t n);

/*
 * Reads a blob into out (bounded by max, 0 = no bound: CS_EINVALID
 * "path: file is N bytes; the limit is M" if larger, checked before copying).
 * out is overwritten (pass an empty buffer), caller frees with buf_free.
 */
int gitsrc_read_blob(struct gitsrc *g, const char *oid, const char *path, size_t max, struct buf *out);

/*
 * Lists the paths under dir whose blob changed between two commits (added,
 * modified, deleted, renamed: both sides), sorted, no duplicates.
 */
int gitsrc_changed(struct gitsrc *g, const char *from, const char *to, const char *dir, char ***paths, size_t *n);
void gitsrc_paths_free(char **paths, size_t n);

/* A manifest file that changed between two commits: a side is NULL where there is no manifest. */
struct gitsrc_delta {
	char *old_path, *new_path;
	char old_oid[41], new_oid[41];
};

/*
 * The manifests (the files gitsrc_list lists) under dir that were added,
 * removed or changed from one commit to the other, in git's diff order.
 * A rename is a removal plus an addition (one delta or two); a change of
 * mode alone is not listed. Subtrees that are the same object on both sides
 * are never opened, so a one-file commit costs one path, not the tree.
 * *out is freed with gitsrc_deltas_free.
 */
int gitsrc_diff_manifests(struct gitsrc *g, const char *from, const char *to, const char *dir,
			  struct gitsrc_delta **out, size_t *n);
void gitsrc_deltas_free(struct gitsrc_delta *v, size_t n);

/* The repository as displayed: a URL without credentials, or the local path. */
const char *gitsrc_display(const struct gitsrc *g);

/*
 * The signature of a commit (a full id or anything gitsrc_resolve accepts):
 * the armored signature (the gpgsig header) and the signed data (the commit
 * object without it), both NUL-terminated, caller frees with buf_free.
 * CS_ENOTFOUND when the commit is not signed (no message: the caller says it).
 */
int gitsrc_commit_signature(struct gitsrc *g, const char *commit, struct buf *sig, struct buf *data);

/* ---------- commit signature verification (gitsrc_verify.c) ---------- */

/*
 * Verifies sig over data with the trusted public keys (keys: text holding
 * ASCII-armored OpenPGP public key blocks and/or SSH public key lines, as in
 * authorized_keys). OpenPGP signatures are checked by gpg with a temporary
 * GNUPGHOME holding only these keys (never the user's keyring); SSH
 * signatures by `ssh-keygen -Y verify` with an allowed_signers file built
 * from the keys, namespace "git". On success *signer (caller frees) names
 * the key ("OpenPGP key 0123ABCD… (uid)", "SSH key SHA256:…"). Otherwise
 * CS_EAUTH with a message naming commit (first 12 hex) and the signing key
 * when known; CS_ERROR when gpg or ssh-keygen cannot run.
 */
int gitsrc_verify_signature(const char *commit, const char *sig, size_t sig_len, const char *data, size_t data_len,
			    const char *keys, char **signer);

/* ---------- SSH remotes (gitsrc_ssh.c, pure) ---------- */

#define GITSRC_FP_LEN 64

/* "user@host:path" as git reads it (a colon before the first slash, no scheme). */
int gitsrc_is_scp_like(const char *s);

/* ssh://, ssh+git://, git+ssh:// or scp-like. */
int gitsrc_is_ssh_url(const char *s);

/* A URL ("scheme://") or an scp-like remote: anything that is not a local path. */
int gitsrc_is_remote(const char *s);

struct gitsrc_ssh_url {
	char *user; /* NULL when the URL names none */
	char *host; /* lower-cased, without brackets */
	unsigned port;
	char *path;
};

/* Splits an SSH URL. CS_EINVALID with a message for anything else (a password in it too). */
int gitsrc_ssh_parse(const char *url, struct gitsrc_ssh_url *out);
void gitsrc_ssh_url_free(struct gitsrc_ssh_url *u);

/* OpenSSH's fingerprint form: "SHA256:" + base64 without padding. */
void gitsrc_ssh_fingerprint(const unsigned char sha256[32], char out[GITSRC_FP_LEN]);

/*
 * Checks a server's host key against known_hosts text for host (port 22:
 * "host", else "[host]:port"; plain, wildcard, negated and hashed names;
 * @revoked honoured; @cert-authority lines never match). The key is the raw
 * blob (key, key_len) or, when key is NULL, its SHA-256. 0 when a line has
 * this key; -1 with why (naming host and fingerprint) when the host is
 * unknown, known with another key, or the key is revoked.
 */
int gitsrc_known_hosts_check(const char *known_hosts, const char *host, unsigned port, const unsigned char *key,
			     size_t key_len, const unsigned char *sha256, char *why, size_t why_len);

#endif
