/*
 * Certificate documents → typed, normalised cert_specs: walks the field
 * tables of fields.c over each document, then normalises and hashes.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/util.h"
#include "internal.h"

#define MAX_FIELDS 32 /* per table */

void doc_diag(struct doc *c, const struct ynode *n, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	diags_add(c->d, c->file, n ? n->line : 0, n ? n->col : 0, "%s", msg);
	free(msg);
	c->errors++;
}

/* The field's storage in the spec (only for rows with `store`). */
static void *field_slot(struct doc *c, const struct field *f)
{
	return (char *)c->s + f->offset;
}

/* The generic typed read of one field; 0 with *v filled, or -1 (reported). */
static int field_read_value(struct doc *c, const struct field *f, const struct ynode *n, const char *what,
			    struct fvalue *v)
{
	char min[32];
	int b;

	switch (f->type) {
	case FT_STRING: return ynode_string(n, c->file, what, c->d, &v->str) ? -1 : 0;
	case FT_BOOL:
		if (ynode_bool(n, c->file, what, c->d, &b))
			return -1;
		v->num = b;
		return 0;
	case FT_INT: return ynode_int(n, c->file, what, f->min, f->max, c->d, &v->num) ? -1 : 0;
	case FT_DURATION:
		if (ynode_duration(n, c->file, what, c->d, &v->num))
			return -1;
		if (v->num < f->min) {
			util_fmt_duration(f->min, min);
			diags_add(c->d, c->file, n->line, n->col, "%s: %s is shorter than the minimum of %s", what,
				  n->str, min);
			return -1;
		}
		return 0;
	case FT_MAP: return ynode_expect(n, YNODE_MAP, c->file, what, c->d) ? -1 : 0;
	case FT_SEQ: return ynode_expect(n, YNODE_SEQ, c->file, what, c->d) ? -1 : 0;
	case FT_ANY: return 0;
	default: assert(!"field type"); return -1;
	}
}

static void field_store(struct doc *c, const struct field *f, const struct fvalue *v)
{
	switch (f->type) {
	case FT_STRING: *(char **)field_slot(c, f) = xstrdup(v->str); break;
	case FT_BOOL:
	case FT_INT: *(int *)field_slot(c, f) = (int)v->num; break;
	case FT_DURATION: *(int64_t *)field_slot(c, f) = v->num; break;
	default: assert(!"only scalars are stored"); break;
	}
}

static void field_read(struct doc *c, const struct field *f, const struct ynode *n, const char *what)
{
	struct fvalue v = {NULL, 0};

	if (field_read_value(c, f, n, what, &v)) {
		c->errors++;
		return;
	}
	if (f->store)
		field_store(c, f, &v);
	if (f->sub)
		doc_read_map(c, n, f->sub);
	if (f->read)
		f->read(c, n, what, &v);
}

/* "where.name" into what (no printf: this runs for every field of every document). */
static void field_path(char *what, size_t size, const char *where, const char *name)
{
	size_t a = where ? strlen(where) : 0, b = strlen(name);

	assert(a + b + 2 <= size);
	(void)size; /* only the assert reads it */
	if (a) {
		memcpy(what, where, a);
		what[a++] = '.';
	}
	memcpy(what + a, name, b + 1);
}

void doc_read_map(struct doc *c, const struct ynode *n, const struct ftable *t)
{
	const struct ynode *val[MAX_FIELDS] = {NULL};
	const char *allowed[MAX_FIELDS + 1];
	char what[128];
	int unknown = 0;

	assert(t->n <= MAX_FIELDS && n->type == YNODE_MAP);
	/* one pass over the keys: each to its row (the first occurrence wins), noting strays */
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kv[2 * i];
		size_t j = 0;

		if (k->type == YNODE_SCALAR)
			for (; j < t->n && strcmp(k->str, t->v[j].name); j++)
				;
		if (k->type != YNODE_SCALAR || j == t->n)
			unknown = 1;
		else if (!val[j])
			val[j] = n->kv[2 * i + 1];
	}
	for (size_t j = 0; j < t->n && !c->wrong_api; j++) {
		const struct field *f = &t->v[j];

		field_path(what, sizeof(what), t->where, f->name);
		if (val[j])
			field_read(c, f, val[j], what);
		else if (f->required && t->where)
			doc_diag(c, n, "%s: missing required field \"%s\"", t->where, f->name);
		else if (f->required)
			doc_diag(c, n, "missing required field \"%s\"", f->name);
	}
	if (c->wrong_api)
		return; /* another schema: its fields are not ours to judge */
	if (unknown) {
		for (size_t j = 0; j < t->n; j++)
			allowed[j] = t->v[j].name;
		allowed[t->n] = NULL;
		c->errors += ynode_check_keys(n, allowed, c->file, t->where ? t->where : "the document", c->d);
	} else {
		c->errors += ynode_check_dups(n, c->file, c->d);
	}
	if (t->finish)
		t->finish(c, n);
}

/* ---------- normalisation and the hash ---------- */

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* commonName defaults to the first dnsName as written; then the set is sorted, de-duplicated, and holds it. */
static void spec_normalise(struct cert_spec *s)
{
	size_t k = 0;

	if (!s->dns_names)
		s->dns_names = xcalloc(2, sizeof(*s->dns_names));
	if (!s->common_name && s->n_dns)
		s->common_name = xstrdup(s->dns_names[0]);
	if (s->common_name)
		s->dns_names[s->n_dns++] = xstrdup(s->common_name);
	qsort(s->dns_names, s->n_dns, sizeof(*s->dns_names), str_cmp);
	for (size_t i = 0; i < s->n_dns; i++) {
		if (k && !strcmp(s->dns_names[k - 1], s->dns_names[i]))
			free(s->dns_names[i]);
		else
			s->dns_names[k++] = s->dns_names[i];
	}
	s->n_dns = k;
	if (!s->output_dir)
		s->output_dir = xstrdup(s->name);
}

static void hash_number(struct buf *b, const char *tag, int64_t v)
{
	char num[24], *p = num + sizeof(num);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	buf_puts(b, tag);
	buf_append(b, " ", 1);
	buf_append(b, p, (size_t)(num + sizeof(num) - p));
}

/* Appends "tag len:value\n": the length prefix keeps ("a","bc") and ("ab","c") apart. */
static void hash_field(struct buf *b, const char *tag, const char *value)
{
	size_t len = value ? strlen(value) : 0;

	hash_number(b, tag, (int64_t)len);
	buf_append(b, ":", 1);
	buf_append(b, value ? value : "", len);
	buf_append(b, "\n", 1);
}

/* The X.509 profile, each part only when written: manifests without them keep their hash. */
static void spec_hash_list(struct buf *b, const char *tag, char *const *v, size_t n)
{
	if (!n)
		return;
	hash_number(b, tag, (int64_t)n);
	buf_append(b, "\n", 1);
	for (size_t i = 0; i < n; i++)
		hash_field(b, "-", v[i]);
}

static void spec_hash_x509(struct buf *b, const struct cert_spec *s)
{
	spec_hash_list(b, "ipAddresses", s->ips, s->n_ips);
	spec_hash_list(b, "uris", s->uris, s->n_uris);
	spec_hash_list(b, "emailAddresses", s->emails, s->n_emails);
	for (size_t i = 0; i < s->n_subject; i++) {
		hash_number(b, "subject", (int64_t)s->subject[i].attr);
		hash_field(b, "", s->subject[i].value);
	}
	if (s->usages) {
		hash_number(b, "usages", (int64_t)s->usages);
		buf_append(b, "\n", 1);
	}
	if (s->is_ca) {
		hash_number(b, "isCA pathLen", (int64_t)s->path_len);
		buf_append(b, "\n", 1);
	}
}

/*
 * The canonical text of what needs a new certificate when it changes.
 * A defaulted commonName is left out: it follows the order of dnsNames,
 * which is cosmetic (and the name is in the set anyway).
 */
static void spec_hash(struct cert_spec *s)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "certsync-spec-v1\n");
	hash_field(&b, "issuer", s->issuer);
	hash_field(&b, "commonName", s->common_name_set ? s->common_name : NULL);
	hash_number(&b, "dnsNames", (int64_t)s->n_dns);
	buf_append(&b, "\n", 1);
	for (size_t i = 0; i < s->n_dns; i++)
		hash_field(&b, "-", s->dns_names[i]);
	hash_field(&b, "domain", s->domain);
	hash_field(&b, "key", s->key_alg == KEYALG_RSA ? "RSA" : "ECDSA");
	hash_number(&b, "keySize", s->key_size);
	buf_append(&b, "\n", 1);
	hash_number(&b, "duration", s->duration);
	buf_append(&b, "\n", 1);
	hash_field(&b, "validation", s->validation);
	spec_hash_x509(&b, s);
	crypto_sha256_hex(b.data, b.len, s->hash);
	buf_free(&b);
}

void cert_spec_free(struct cert_spec *s)
{
	if (!s)
		return;
	if (s->packed) {
		free(s);
		return;
	}
	free(s->name);
	free(s->file);
	for (size_t i = 0; i < s->n_labels; i++) {
		free(s->labels[i].key);
		free(s->labels[i].value);
	}
	free(s->labels);
	free(s->issuer);
	free(s->common_name);
	for (size_t i = 0; i < s->n_dns; i++)
		free(s->dns_names[i]);
	free(s->dns_names);
	free(s->domain);
	free(s->validation);
	free(s->output_dir);
	for (size_t i = 0; i < s->n_ips; i++)
		free(s->ips[i]);
	free(s->ips);
	for (size_t i = 0; i < s->n_uris; i++)
		free(s->uris[i]);
	free(s->uris);
	for (size_t i = 0; i < s->n_emails; i++)
		free(s->emails[i]);
	free(s->emails);
	for (size_t i = 0; i < s->n_subject; i++)
		free(s->subject[i].value);
	free(s->subject);
	free(s);
}

/* ---------- documents ---------- */

/* Reads one document; the spec, or NULL when it is empty or has problems (reported). */
static struct cert_spec *spec_read_document(const char *file, const struct ydoc *yd, size_t index, struct diags *d)
{
	const struct ynode *root = yd->root;
	struct cert_spec *s = NULL;
	struct doc c;

	if (!root || ynode_is_null(root))
		return NULL; /* an empty document: a stray "---" */
	if (root->type != YNODE_MAP) {
		diags_add(d, file, root->line, root->col, "document %zu: expected a Certificate (a map), got %s",
			  index + 1, root->type == YNODE_SEQ ? "a list" : "a scalar");
		return NULL;
	}
	memset(&c, 0, sizeof(c));
	c.file = file;
	c.d = d;
	c.alg_ok = 1;
	c.s = s = xcalloc(1, sizeof(*s));
	s->file = xstrdup(file);
	s->key_alg = KEYALG_ECDSA;
	s->rotation = ROTATE_ALWAYS;
	s->path_len = -1;
	doc_read_map(&c, root, &fields_document);
	if (c.errors || c.wrong_api) {
		cert_spec_free(s);
		return NULL;
	}
	spec_normalise(s);
	spec_hash(s);
	return s;
}

int manifest_specs_from_yaml(const struct yfile *f, struct cert_spec ***out, size_t *n, struct diags *d)
{
	size_t before = d->n;

	*out = xcalloc(f->n_docs + 1, sizeof(**out));
	*n = 0;
	for (size_t i = 0; i < f->n_docs; i++) {
		struct cert_spec *s = spec_read_document(f->path, &f->docs[i], i, d);

		if (s)
			(*out)[(*n)++] = s;
	}
	return d->n > before ? CS_EINVALID : 0;
}

int manifest_parse_file(const char *path, const char *data, size_t len, struct cert_spec ***out, size_t *n,
			struct diags *d)
{
	struct yfile *f = NULL;
	size_t before = d->n;

	manifest_yaml_parse(path, data, len, &f, d);
	manifest_specs_from_yaml(f, out, n, d);
	manifest_yaml_free(f);
	return d->n > before ? CS_EINVALID : 0;
}
