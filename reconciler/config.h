/*
 * The operator's config (certsync.yaml, DESIGN §1): trusted with credentials,
 * endpoints, paths and hooks. Parsed with the manifests' YAML tree so errors
 * read the same (file:line:col), all of them in one run.
 */
#ifndef CS_RECONCILER_CONFIG_H
#define CS_RECONCILER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "../manifests/manifest.h"
#include "../util/buf.h"
#include "../util/diag.h"

/* A credential reference: {env: NAME}, {file: PATH}, or a literal (non-secret values only). */
enum cred_kind { CRED_NONE, CRED_LITERAL, CRED_ENV, CRED_FILE, CRED__MAX };

struct cred {
	enum cred_kind kind;
	char *ref;   /* env name, absolute file path, or the literal */
	char *where; /* "certsync.yaml:12:5" for messages */
};

/*
 * Reads a credential into out (which the caller must buf_wipe). Files must
 * not be group/world readable; a trailing newline is stripped. Errors name
 * the reference and `what`, never the value. A credential that is missing,
 * unreadable, too open or empty is CS_EAUTH: a configuration problem, which
 * the engine records as failure class "config" (retried once it is fixed).
 */
int config_cred_read(const struct cred *c, const char *what, struct buf *out);

/*
 * Reads public data given like a credential (source.knownHosts,
 * source.verify.keys): no mode check, up to 1 MiB, the text kept as is.
 * CS_EINVALID naming the reference and `what` when it is missing or empty.
 */
int config_public_read(const struct cred *c, const char *what, struct buf *out);

struct provider_ops;

struct issuer {
	char *name;
	const struct provider_ops *ops;
	void *priv; /* the provider's parsed config (ops->config_free) */
	int line, col;
};

struct config {
	char *path; /* the config file */
	char *dir;  /* its directory (relative paths resolve against it) */
	struct {
		char *repo; /* URL, or absolute local path */
		char *ref;
		char *path; /* manifests folder inside the repo ("" = root) */
		int64_t interval;
		struct cred token;
		char *cache_dir;
		char *ca_file;
		struct cred ssh_key;	    /* SSH remotes: the deploy key (a secret) */
		struct cred ssh_passphrase; /* its passphrase (a secret), optional */
		struct cred known_hosts;    /* SSH remotes: required; {file} or {env}, not a secret */
		struct {
			int on;		  /* source.verify given: the head must carry a good signature */
			struct cred keys; /* trusted public keys (OpenPGP armored and/or SSH lines), not a secret */
		} verify;
		struct cred receiver_secret; /* POST /webhooks/git/<secret>: a push triggers a fetch (a secret) */
		int suspend;		     /* run neither fetches nor applies */
	} source;
	char *state_path; /* file backend: the state file (NULL with postgres unless given for state migrate) */
	struct {
		enum { STATE_BACKEND_FILE, STATE_BACKEND_POSTGRES } backend; /* state.backend, default file */
		struct cred url;		     /* postgres: libpq URI or key=value string (a secret) */
		char *schema;			     /* postgres: default "certsync" */
		struct cred encryption_key;	     /* postgres: base64 of 32 bytes; the key store's AES-256-GCM key */
		struct cred previous_encryption_key; /* optional: still opens entries written before a rotation */
		int64_t lease_ms;		     /* postgres: leader lease, default 15000 */
		char *replica_id;		     /* postgres: names this process in the lease (default host:pid) */
	} state;
	char *key_dir; /* 0700 key directory: the key store (state/keystore.h) and pending orders' keys */
	char *output_root;
	struct {
		int64_t keep_previous; /* output.keepPreviousFor: seconds a replaced generation stays (default 60) */
		struct cred pkcs12_password; /* output.pkcs12Password: for output.formats keystore.p12 (a secret) */
	} output;
	struct issuer *issuers;
	size_t n_issuers;
	struct {
		char *listen;
		char *public_url;
		struct cred webhook_secret;
		struct cred admin_token;  /* guards POST /retry (Authorization: Bearer); none = endpoint off */
		int64_t liveness_timeout; /* /healthz bound without a completed pass; 0 = 3 x source.interval + 60 s */
	} server;
	struct {
		int prune;
		int max_paid_orders;
	} policy;
	struct {
		char **on_change;
		size_t n_on_change; /* argv */
		char **after_apply;
		size_t n_after_apply; /* argv: once per apply/pass that installed anything */
		int64_t timeout;
	} hooks;
};

/*
 * Loads and validates the config. Every problem is a diagnostic in d;
 * returns CS_EINVALID if there was any (then *out is NULL), CS_ENOTFOUND if
 * the file does not exist.
 */
int config_load(const char *path, struct config **out, struct diags *d);

/*
 * Modes of config_load_mode: CONFIG_PR_PLAN is for plan --base (a PR plan
 * compares manifests only), where only "issuers" is required: a CI job
 * needs no source (the checkout is the repository), state or output.
 */
enum { CONFIG_PR_PLAN = 1 };
int config_load_mode(const char *path, int mode, struct config **out, struct diags *d);

/* Builds a config from YAML text (tests); `path` names it in diagnostics. */
int config_parse(const char *path, const char *data, size_t len, struct config **out, struct diags *d);
int config_parse_mode(const char *path, const char *data, size_t len, int mode, struct config **out, struct diags *d);

void config_free(struct config *c);

/*
 * Parses a credential node: a map {env: NAME} or {file: PATH} (relative to
 * the config file), or — only when allow_literal — a plain scalar. Adds a
 * diagnostic and returns CS_EINVALID otherwise.
 */
int config_parse_cred(const struct ynode *n, const char *file, const char *what, int allow_literal, struct diags *d,
		      struct cred *out);
void config_cred_free(struct cred *c);

/* A path from the config file, made absolute against the config file's directory. Caller frees. */
char *config_resolve_path(const char *config_file, const char *path);

/* The issuer named name, or NULL. */
const struct issuer *config_issuer(const struct config *c, const char *name);

/* Applies command-line overrides (any may be NULL). Paths are taken relative to the cwd. */
void config_override(struct config *c, const char *repo, const char *ref, const char *path, const char *state,
		     const char *output_root);

#endif
