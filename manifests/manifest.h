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

struct buf;

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

/* spec.output.formats: files written beside tls.crt, tls.key and ca.crt, in the same generation. */
enum out_format {
	OUTFMT_CHAIN,	 /* chain.pem: the intermediates only (tls.crt without the leaf) */
	OUTFMT_COMBINED, /* combined.pem: key, then leaf and intermediates (HAProxy, cert-manager's CombinedPEM) */
	OUTFMT_P12,	 /* keystore.p12: PKCS#12, password from config output.pkcs12Password */
	OUTFMT_KEY_DER,	 /* key.der: the key as PKCS#8 DER */
	OUTFMT_CERT_DER, /* tls.der: the leaf as DER */
	OUTFMT__MAX
};
extern const char *const manifest_format_files[OUTFMT__MAX];
#define MANIFEST_FORMATS_TEXT 96
/* "chain.pem,keystore.p12" for a set of 1 << OUTFMT_* bits, in table order; "" for none. */
void manifest_formats_text(unsigned formats, char out[MANIFEST_FORMATS_TEXT]);

/*
 * The X.509 fields beyond names a manifest may ask for (cert-manager's
 * names). Each is a capability bit (1 << XF_*) an issuer must have
 * (provider_ops.x509_fields); validate refuses the others at the field.
 */
enum x509_field { XF_IP, XF_URI, XF_EMAIL, XF_SUBJECT, XF_USAGES, XF_ISCA, XF__MAX };
extern const char *const manifest_x509_field_names[XF__MAX]; /* "ipAddresses", ... */

/* spec.subject attributes (cert-manager's X509Subject), in certificate order. */
enum subject_attr { SUBJ_C, SUBJ_ST, SUBJ_L, SUBJ_STREET, SUBJ_POSTAL, SUBJ_O, SUBJ_OU, SUBJ_SERIAL, SUBJ__MAX };

struct subject_entry {
	enum subject_attr attr;
	char *value;
};

/* spec.usages (cert-manager's KeyUsage names): key usages, then extended key usages. */
enum usage {
	USAGE_DIGITAL_SIGNATURE, /* "digital signature", "signing" */
	USAGE_CONTENT_COMMITMENT,
	USAGE_KEY_ENCIPHERMENT,
	USAGE_KEY_AGREEMENT,
	USAGE_DATA_ENCIPHERMENT,
	USAGE_CERT_SIGN,
	USAGE_CRL_SIGN,
	USAGE_ENCIPHER_ONLY,
	USAGE_DECIPHER_ONLY,
	USAGE_ANY, /* extended from here */
	USAGE_SERVER_AUTH,
	USAGE_CLIENT_AUTH,
	USAGE_CODE_SIGNING,
	USAGE_EMAIL_PROTECTION, /* "email protection", "s/mime" */
	USAGE_IPSEC_END_SYSTEM,
	USAGE_IPSEC_TUNNEL,
	USAGE_IPSEC_USER,
	USAGE_TIMESTAMPING,
	USAGE_OCSP_SIGNING,
	USAGE_MICROSOFT_SGC,
	USAGE_NETSCAPE_SGC,
	USAGE__MAX
};
#define USAGE_FIRST_EXTENDED USAGE_ANY

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
	unsigned formats; /* output.formats: 1 << OUTFMT_* */
	int formats_line, formats_col;
	/* The X.509 profile (issuers with the capability only): each list normalised, sorted, unique. */
	char **ips; /* ipAddresses, as inet_ntop writes them */
	size_t n_ips;
	char **uris;
	size_t n_uris;
	char **emails; /* emailAddresses, the domain part lowercased */
	size_t n_emails;
	struct subject_entry *subject; /* sorted by attribute, then as written */
	size_t n_subject;
	unsigned usages; /* 1 << USAGE_*; 0 = the issuer's default profile */
	int is_ca;
	int path_len;	      /* isCA's pathLen; -1 = none */
	int xpos[XF__MAX][2]; /* line, col of each X.509 field written (0 = not written) */
	/*
	 * SHA-256 (hex) of the fields whose change needs a new certificate:
	 * issuer, commonName (when written), the set of dnsNames, domain, key
	 * algorithm and size, duration, validation method, and the X.509
	 * profile fields when written. Cosmetic edits (order,
	 * case, trailing dots, "720h" vs "30d") do not move it.
	 */
	char hash[65];
	int packed; /* one block from cert_spec_unpack: cert_spec_free frees the block, not each field */
};

void cert_spec_free(struct cert_spec *s);

/*
 * A spec as bytes (appended to b) and back, for the on-disk parse cache.
 * unpack checks every count and length against len and returns NULL for a
 * damaged record; the spec it returns is one allocation (packed = 1).
 */
void cert_spec_pack(const struct cert_spec *s, struct buf *b);
struct cert_spec *cert_spec_unpack(const void *data, size_t len);

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

/*
 * The set checks kept from one revision to the next (run): the names, the
 * output directories and their parents of a set manifest_check_set found
 * clean, so a revision that removes a few specs and adds a few checks only
 * those. Keys are borrowed from the specs: remove a spec before freeing it.
 */
struct manifest_set_index;
struct manifest_set_index *manifest_set_index_new(struct cert_spec *const *specs, size_t n);

/*
 * Whether (the indexed set - removed) + added is clean: no duplicate name,
 * no output directory shared or inside another's, and every added spec
 * passes the issuer checks of ctx. 1 when clean: idx then describes the new
 * set. 0 when manifest_check_set would report something: idx is unchanged
 * (the caller checks the whole set, for the messages). removed are specs of
 * the indexed set; added are not in it.
 */
int manifest_set_index_update(struct manifest_set_index *idx, struct cert_spec *const *removed, size_t n_removed,
			      struct cert_spec *const *added, size_t n_added, const struct manifest_ctx *ctx);
void manifest_set_index_free(struct manifest_set_index *idx);

/* Validation helpers shared with the config parser. 0 if valid, else a reason string. */
const char *manifest_check_dns_name(const char *name, int allow_wildcard);
const char *manifest_check_relpath(const char *path);

#endif
