/*
 * Manifests: YAML documents (libyaml, owned by manifests/yaml.c) into a node
 * tree with positions, then `Certificate` documents into typed cert_specs
 * through field tables, then checks across the whole set.
 */
#ifndef CS_MANIFESTS_MANIFEST_H
#define CS_MANIFESTS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "../util/diag.h"

/* ---------- limits (DESIGN §7) ---------- */

#define MANIFEST_MAX_FILE_BYTES (1024 * 1024)
#define MANIFEST_MAX_DOCS 1000
#define MANIFEST_MAX_DEPTH 64
#define MANIFEST_MAX_NAME 253 /* metadata.name, DNS-1123 subdomain */
#define MANIFEST_MAX_DNS_NAMES 100

/* ---------- YAML node tree (also used by the config parser) ---------- */

enum ynode_type { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ, YNODE__MAX };

struct ynode {
	enum ynode_type type;
	int line, col; /* 1-based position of the node's first character */
	char *str;     /* scalars: the value (NUL-terminated, UTF-8) */
	size_t len;
	int quoted;	      /* scalars: written with quotes (so "yes" stays a string) */
	struct ynode **kv;    /* maps: keys and values alternating (kv[2i] key, kv[2i+1] value) */
	struct ynode **items; /* sequences: the elements */
	size_t n;	      /* maps: number of pairs; sequences: number of items */
};

struct ydoc {
	struct ynode *root; /* NULL for an empty document */
	int line, col;	    /* where the document starts */
};

struct yfile {
	char *path; /* as given (used in every diagnostic) */
	struct ydoc *docs;
	size_t n_docs;
};

/*
 * Parses a YAML stream into documents. Enforces the limits above, rejects
 * anchors, aliases, tags other than the core ones, and invalid UTF-8.
 * Every problem becomes a diagnostic "path:line:col: message" in d; the
 * documents parsed before a syntax error are kept. Returns 0 when no
 * diagnostic was added, CS_EINVALID otherwise. *out is always set (free it).
 */
int manifest_yaml_parse(const char *path, const char *data, size_t len, struct yfile **out, struct diags *d);
void manifest_yaml_free(struct yfile *f);

/* Map lookup: the value node for key, or NULL. */
const struct ynode *ynode_get(const struct ynode *map, const char *key);

/*
 * Reports every key of map not in `allowed` (NULL-terminated) as
 * "unknown field \"x\" in <where> (did you mean \"y\"?)", and every duplicate key.
 * Returns the number of problems.
 */
int ynode_check_keys(const struct ynode *map, const char *const *allowed, const char *file, const char *where,
		     struct diags *d);

/*
 * Typed reads with diagnostics: "path:line:col: <what>: expected a string, got a map".
 * Each returns 0 or CS_EINVALID (diagnostic added).
 */
int ynode_string(const struct ynode *n, const char *file, const char *what, struct diags *d, const char **out);
int ynode_bool(const struct ynode *n, const char *file, const char *what, struct diags *d, int *out);
int ynode_int(const struct ynode *n, const char *file, const char *what, int64_t min, int64_t max, struct diags *d,
	      int64_t *out);
int ynode_duration(const struct ynode *n, const char *file, const char *what, struct diags *d, int64_t *out);
/* A map or a sequence check: 0 if n has the type, else a diagnostic and CS_EINVALID. */
int ynode_expect(const struct ynode *n, enum ynode_type t, const char *file, const char *what, struct diags *d);

/* ---------- Certificate specs ---------- */

enum key_alg { KEYALG_RSA, KEYALG_ECDSA, KEYALG__MAX };
enum key_rotation { ROTATE_ALWAYS, ROTATE_NEVER, ROTATE__MAX };

struct label {
	char *key;
	char *value;
};

/*
 * One `Certificate` document, validated and normalised. Normalisation:
 * DNS names lowercased, trailing dot dropped, de-duplicated and sorted, and
 * commonName added to them (commonName defaults to the first dnsName);
 * durations in seconds; algorithm as an enum; output directory cleaned.
 */
struct cert_spec {
	char *name;    /* metadata.name */
	char *file;    /* file the document came from (path inside the repo) */
	int line, col; /* position of the document's metadata.name value */
	struct label *labels;
	size_t n_labels; /* sorted by key */
	char *issuer;
	int issuer_line, issuer_col;
	char *common_name;
	int common_name_set; /* commonName was written (else it is the first dnsName) */
	char **dns_names;
	size_t n_dns;	      /* normalised set, includes common_name */
	char *domain;	      /* NULL when not given */
	int auto_renew;	      /* 0/1 */
	int auto_renew_set;   /* 1 if the manifest said it */
	int suspend;	      /* spec.suspend: nothing is planned for it (Flux's suspend); not part of hash */
	int64_t duration;     /* requested lifetime in seconds; 0 = issuer default */
	int64_t renew_before; /* seconds; 0 = one third of the lifetime */
	enum key_alg key_alg;
	int key_size;
	enum key_rotation rotation;
	char *validation; /* validation.method; NULL = issuer default */
	char *output_dir; /* relative, cleaned ("a/b"); default metadata.name */
	int output_line, output_col;
	/*
	 * SHA-256 (hex) of the fields whose change needs a new certificate:
	 * issuer, commonName (when written), the set of dnsNames, domain, key
	 * algorithm and size, duration, validation method. Cosmetic edits (order,
	 * case, trailing dots, "720h" vs "30d") do not move it.
	 */
	char hash[65];
};

void cert_spec_free(struct cert_spec *s);

/*
 * Parses the `Certificate` documents of one parsed YAML file. Checks
 * apiVersion/kind, the schema (field tables: unknown fields, wrong types,
 * required fields), names, durations, DNS names, key sizes, relative output
 * paths. Specs with errors are not returned; their problems are in d.
 * *out is an array of n specs (free each, then the array).
 */
int manifest_specs_from_yaml(const struct yfile *f, struct cert_spec ***out, size_t *n, struct diags *d);

/* Convenience: manifest_yaml_parse + manifest_specs_from_yaml for one file's bytes. */
int manifest_parse_file(const char *path, const char *data, size_t len, struct cert_spec ***out, size_t *n,
			struct diags *d);

/* What the set check needs to know about the installation (from config). */
struct manifest_ctx {
	/* 1 if an issuer of that name is configured. */
	int (*issuer_exists)(void *arg, const char *issuer);
	/* The issuer's own checks on a spec (e.g. domain constraints); adds diagnostics. May be NULL. */
	void (*issuer_check)(void *arg, const struct cert_spec *s, struct diags *d);
	void *arg;
	/*
	 * The i-th configured issuer name, NULL past the last: lists them and
	 * suggests the closest in "unknown issuer" messages. May be NULL.
	 */
	const char *(*issuer_at)(void *arg, size_t i);
};

/*
 * Checks across documents: duplicate metadata.name (both locations named),
 * two certificates writing the same output directory or one inside the
 * other's (both named), unknown issuers (with the configured ones and a
 * suggestion), and the issuer's own checks for the others. Linear in n
 * (hash tables). Returns the number of problems (diagnostics added).
 * Specs with problems are flagged in bad[i] = 1 (array of n, caller-owned;
 * other entries are left as they were).
 */
int manifest_check_set(struct cert_spec *const *specs, size_t n, const struct manifest_ctx *ctx, unsigned char *bad,
		       struct diags *d);

/* Validation helpers shared with the config parser. 0 if valid, else a reason string. */
const char *manifest_check_dns_name(const char *name, int allow_wildcard);
const char *manifest_check_relpath(const char *path);

#endif
