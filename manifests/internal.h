/*
 * Internal to manifests/: what yaml.c, yfast.c, ynode.c, names.c, fields.c,
 * spec.c and set.c share. Nothing outside manifests/ (except its unit test)
 * includes this header.
 */
#ifndef CS_MANIFESTS_INTERNAL_H
#define CS_MANIFESTS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

/* ---------- node trees (ynode.c) ---------- */

/*
 * Node memory: every node and string of one yfile comes from the file's
 * arena, so building is a pointer bump and freeing is a few free() calls
 * (manifest_yaml_free). Nodes must not outlive their yfile.
 */
/* A new yfile (path copied) with its own arena. */
struct yfile *ytree_file_new(const char *path);
/* Appends an empty document at line:col and returns it. */
struct ydoc *ytree_doc_add(struct yfile *f, int line, int col);
/* Nodes allocated from f's arena; the scalar's text is copied (len bytes, NUL added). */
struct ynode *ytree_scalar(struct yfile *f, int line, int col, const char *s, size_t len, int quoted);
struct ynode *ytree_collection(struct yfile *f, enum ynode_type t, int line, int col);
/* Gives a collection its children: n nodes for a sequence, 2n (key, value) for a map; copied. */
void ytree_set_children(struct yfile *f, struct ynode *c, struct ynode *const *v, size_t count);
/* Drops documents from index keep onwards (a syntax error ends the stream). */
void ytree_truncate(struct yfile *f, size_t keep);

/* 1 for a YAML null written plainly: "", "~", "null", "Null", "NULL". */
int ynode_is_null(const struct ynode *n);
/* "a string", "a map", "a list" ... for messages. */
const char *ynode_kind(const struct ynode *n);
/* Reports duplicate keys of a map ("duplicate key ... (first at line L)"); returns how many. */
int ynode_check_dups(const struct ynode *map, const char *file, struct diags *d);

/* ---------- the two YAML readers (yaml.c, yfast.c) ---------- */

/* UTF-8 and character-set check of a whole file; 0, or 1 with the first problem reported. */
int manifest_text_check(const char *path, const char *data, size_t len, struct diags *d);

/*
 * The fast reader: a strict subset of block YAML (what manifests almost
 * always are). Returns 1 with *out set when the whole text is inside the
 * subset and the tree is exactly what libyaml would give; 0 (nothing
 * allocated) when anything is outside it, and the caller uses libyaml.
 * It never reports diagnostics: every problem is libyaml's to describe.
 */
int manifest_yfast_parse(const char *path, const char *data, size_t len, struct yfile **out);

/* The libyaml reader (all of YAML, every diagnostic). Same contract as manifest_yaml_parse. */
int manifest_ylib_parse(const char *path, const char *data, size_t len, struct yfile **out, struct diags *d);

/* 1 (default) to try the fast reader first; tests turn it off to compare the two (not thread-safe). */
void manifest_yaml_set_fast(int on);

/* ---------- names and paths (names.c) ---------- */

/* Kubernetes object name (DNS-1123 subdomain): NULL if valid, else why not. */
const char *names_check_object_name(const char *s);
/* Kubernetes label key ([prefix/]name) and value: NULL if valid, else why not. */
const char *names_check_label_key(const char *s);
const char *names_check_label_value(const char *s);
/* A DNS name lowercased with its trailing dot dropped (caller frees). */
char *names_normalise_dns(const char *s);
/* A path that passed manifest_check_relpath without "./", "//" or a trailing "/" (caller frees). */
char *names_clean_path(const char *p);

/* ---------- documents → specs (spec.c, fields.c) ---------- */

/* One document being read: where its diagnostics go and what was seen so far. */
struct doc {
	const char *file;
	struct diags *d;
	struct cert_spec *s;
	int errors;    /* diagnostics added for this document */
	int wrong_api; /* apiVersion or kind names another schema: the body is not read */
	/* nodes kept for the checks across fields, after every field is read */
	const struct ynode *cn, *names, *duration, *renew, *size, *path_len;
	int alg_ok;
};

void doc_diag(struct doc *c, const struct ynode *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

enum ftype { FT_STRING, FT_BOOL, FT_INT, FT_DURATION, FT_MAP, FT_SEQ, FT_ANY, FT__MAX }; /* FT_ANY: the reader judges */

/* A field's value after the generic typed read. */
struct fvalue {
	const char *str; /* FT_STRING */
	int64_t num;	 /* FT_BOOL (0/1), FT_INT, FT_DURATION (seconds) */
};

struct ftable;

/*
 * One field of a map: its name and type, whether it is required, where a
 * plain value is stored in struct cert_spec (`store`), the accepted range
 * (FT_INT, FT_DURATION: min; 0 = none), a reader for what the generic read
 * cannot do, and for maps with fixed keys the nested table.
 */
struct field {
	const char *name;
	enum ftype type;
	int required;
	int store;
	size_t offset;
	int64_t min, max;
	void (*read)(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
	const struct ftable *sub;
};

struct ftable {
	const char *where; /* path prefix for messages: "spec.privateKey"; NULL for the document */
	const struct field *v;
	size_t n;
	/* checks across this map's fields, after they are read; may be NULL */
	void (*finish)(struct doc *c, const struct ynode *map);
};

/* The top of a Certificate document (fields.c). */
extern const struct ftable fields_document;

/* The X.509 profile and output formats (fields_x509.c): readers for fields.c's rows. */
extern const struct ftable fields_subject;
void fields_ip_addresses(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
void fields_uris(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
void fields_emails(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
void fields_usages(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
void fields_is_ca(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
void fields_path_len(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
void fields_formats(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);
/* A field of cert-manager's Certificate that certsync spells otherwise: one error with the way to write it. */
void fields_pasted(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v);

/* Reads map n through table t (spec.c): unknown keys, required fields, types, readers, finish. */
void doc_read_map(struct doc *c, const struct ynode *n, const struct ftable *t);

#endif
