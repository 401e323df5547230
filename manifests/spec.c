/*
 * Certificate documents → typed, normalised cert_specs through field tables,
 * then checks across the whole set (duplicates, issuers, output paths).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/util.h"
#include "manifest.h"

#define MIN_DURATION 3600
#define MIN_RENEW_BEFORE 300

/* A document being read: where diagnostics go, and whether it had errors. */
struct doc {
	const char *file;
	struct diags *d;
	struct cert_spec *s;
	int errors;
	const struct ynode *cn_node, *names_node, *duration_node, *renew_node, *size_node;
};

static void doc_diag(struct doc *c, const struct ynode *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void doc_diag(struct doc *c, const struct ynode *n, const char *fmt, ...)
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

/* Reads a string field, counting a type error against the document. */
static const char *doc_string(struct doc *c, const struct ynode *n, const char *what)
{
	const char *s;

	if (ynode_string(n, c->file, what, c->d, &s)) {
		c->errors++;
		return NULL;
	}
	return s;
}

static char *lower(const char *s)
{
	char *p = xstrdup(s);
	size_t n = strlen(p);

	for (size_t i = 0; i < n; i++)
		p[i] = (char)tolower((unsigned char)p[i]);
	if (n && p[n - 1] == '.')
		p[n - 1] = '\0';
	return p;
}

/* ---------- spec fields ---------- */

static void f_issuer(struct doc *c, const struct ynode *n)
{
	const char *s = doc_string(c, n, "spec.issuer");

	if (!s)
		return;
	c->s->issuer = xstrdup(s);
	c->s->issuer_line = n->line;
	c->s->issuer_col = n->col;
}

static void f_common_name(struct doc *c, const struct ynode *n)
{
	const char *s = doc_string(c, n, "spec.commonName"), *why;

	if (!s)
		return;
	if ((why = manifest_check_dns_name(s, 1))) {
		doc_diag(c, n, "spec.commonName: \"%s\" is not a valid DNS name: %s", s, why);
		return;
	}
	c->cn_node = n;
	c->s->common_name = lower(s);
	c->s->common_name_set = 1;
}

static void f_dns_names(struct doc *c, const struct ynode *n)
{
	if (ynode_expect(n, YNODE_SEQ, c->file, "spec.dnsNames", c->d)) {
		c->errors++;
		return;
	}
	if (n->n > MANIFEST_MAX_DNS_NAMES) {
		doc_diag(c, n, "spec.dnsNames: %zu names; the limit is %d", n->n, MANIFEST_MAX_DNS_NAMES);
		return;
	}
	c->names_node = n;
	c->s->dns_names = xcalloc(n->n + 2, sizeof(char *));
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *item = n->items[i];
		const char *s = doc_string(c, item, "spec.dnsNames"), *why;

		if (!s)
			continue;
		if ((why = manifest_check_dns_name(s, 1))) {
			doc_diag(c, item, "spec.dnsNames: \"%s\" is not a valid DNS name: %s", s, why);
			continue;
		}
		c->s->dns_names[c->s->n_dns++] = lower(s);
	}
}

static void f_domain(struct doc *c, const struct ynode *n)
{
	const char *s = doc_string(c, n, "spec.domain"), *why;

	if (!s)
		return;
	if ((why = manifest_check_dns_name(s, 0))) {
		doc_diag(c, n, "spec.domain: \"%s\" is not a valid domain: %s", s, why);
		return;
	}
	c->s->domain = lower(s);
}

static void f_auto_renew(struct doc *c, const struct ynode *n)
{
	if (ynode_bool(n, c->file, "spec.autoRenew", c->d, &c->s->auto_renew))
		c->errors++;
	else
		c->s->auto_renew_set = 1;
}

static void f_duration(struct doc *c, const struct ynode *n)
{
	if (ynode_duration(n, c->file, "spec.duration", c->d, &c->s->duration)) {
		c->errors++;
	} else if (c->s->duration < MIN_DURATION) {
		doc_diag(c, n, "spec.duration: %s is shorter than the minimum of 1h", n->str);
	}
	c->duration_node = n;
}

static void f_renew_before(struct doc *c, const struct ynode *n)
{
	if (ynode_duration(n, c->file, "spec.renewBefore", c->d, &c->s->renew_before)) {
		c->errors++;
	} else if (c->s->renew_before < MIN_RENEW_BEFORE) {
		doc_diag(c, n, "spec.renewBefore: %s is shorter than the minimum of 5m", n->str);
	}
	c->renew_node = n;
}

static void f_private_key(struct doc *c, const struct ynode *n)
{
	static const char *const keys[] = {"algorithm", "size", "rotationPolicy", NULL};
	const struct ynode *v;
	const char *s;
	int64_t size;

	if (ynode_expect(n, YNODE_MAP, c->file, "spec.privateKey", c->d)) {
		c->errors++;
		return;
	}
	c->errors += ynode_check_keys(n, keys, c->file, "spec.privateKey", c->d);
	if ((v = ynode_get(n, "algorithm")) && (s = doc_string(c, v, "spec.privateKey.algorithm"))) {
		if (!strcasecmp(s, "RSA"))
			c->s->key_alg = KEYALG_RSA;
		else if (!strcasecmp(s, "ECDSA"))
			c->s->key_alg = KEYALG_ECDSA;
		else
			doc_diag(c, v, "spec.privateKey.algorithm: \"%s\" is not supported (RSA, ECDSA)", s);
	}
	c->s->key_size = c->s->key_alg == KEYALG_RSA ? 2048 : 256;
	if ((v = ynode_get(n, "size"))) {
		if (ynode_int(v, c->file, "spec.privateKey.size", 1, 65536, c->d, &size)) {
			c->errors++;
		} else {
			c->s->key_size = (int)size;
			c->size_node = v;
		}
	}
	if ((v = ynode_get(n, "rotationPolicy")) && (s = doc_string(c, v, "spec.privateKey.rotationPolicy"))) {
		if (!strcasecmp(s, "Always"))
			c->s->rotation = ROTATE_ALWAYS;
		else if (!strcasecmp(s, "Never"))
			c->s->rotation = ROTATE_NEVER;
		else
			doc_diag(c, v, "spec.privateKey.rotationPolicy: \"%s\" is not Always or Never", s);
	}
}

static void f_validation(struct doc *c, const struct ynode *n)
{
	static const char *const keys[] = {"method", NULL};
	const struct ynode *v;
	const char *s;

	if (ynode_expect(n, YNODE_MAP, c->file, "spec.validation", c->d)) {
		c->errors++;
		return;
	}
	c->errors += ynode_check_keys(n, keys, c->file, "spec.validation", c->d);
	if ((v = ynode_get(n, "method")) && (s = doc_string(c, v, "spec.validation.method"))) {
		if (strcmp(s, "dns-txt-token") && strcmp(s, "http-token"))
			doc_diag(c, v, "spec.validation.method: \"%s\" is not dns-txt-token or http-token", s);
		else
			c->s->validation = xstrdup(s);
	}
}

/* Collapses "./", "//" and a trailing "/" (the path is already known to be safe). */
static char *clean_path(const char *p)
{
	char *out = xmalloc(strlen(p) + 1), *o = out;

	while (*p) {
		size_t l = strcspn(p, "/");

		if (l && !(l == 1 && p[0] == '.')) {
			if (o != out)
				*o++ = '/';
			memcpy(o, p, l);
			o += l;
		}
		p += l;
		while (*p == '/')
			p++;
	}
	*o = '\0';
	return out;
}

static void f_output(struct doc *c, const struct ynode *n)
{
	static const char *const keys[] = {"directory", NULL};
	const struct ynode *v;
	const char *s, *why;

	if (ynode_expect(n, YNODE_MAP, c->file, "spec.output", c->d)) {
		c->errors++;
		return;
	}
	c->errors += ynode_check_keys(n, keys, c->file, "spec.output", c->d);
	if ((v = ynode_get(n, "directory")) && (s = doc_string(c, v, "spec.output.directory"))) {
		if ((why = manifest_check_relpath(s))) {
			doc_diag(c, v, "spec.output.directory: \"%s\": %s", s, why);
			return;
		}
		c->s->output_dir = clean_path(s);
		if (!*c->s->output_dir) {
			doc_diag(c, v, "spec.output.directory: \"%s\" names the output root itself", s);
			free(c->s->output_dir);
			c->s->output_dir = NULL;
			return;
		}
		c->s->output_line = v->line;
		c->s->output_col = v->col;
	}
}

struct field {
	const char *name;
	int required;
	void (*read)(struct doc *c, const struct ynode *n);
};

static const struct field spec_fields[] = {
	{"issuer", 1, f_issuer},
	{"commonName", 0, f_common_name},
	{"dnsNames", 0, f_dns_names},
	{"domain", 0, f_domain},
	{"autoRenew", 0, f_auto_renew},
	{"duration", 0, f_duration},
	{"renewBefore", 0, f_renew_before},
	{"privateKey", 0, f_private_key},
	{"validation", 0, f_validation},
	{"output", 0, f_output},
};

#define N_SPEC_FIELDS (sizeof(spec_fields) / sizeof(spec_fields[0]))

/* ---------- metadata ---------- */

static const char *check_object_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > MANIFEST_MAX_NAME)
		return "must be 1 to 253 characters";
	if (!isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return "must start and end with a lowercase letter or digit";
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-' || s[i] == '.'))
			return "only lowercase letters, digits, '-' and '.' are allowed";
	return NULL;
}

static const char *check_label_part(const char *s, int allow_empty, int allow_prefix)
{
	const char *name = s, *slash = allow_prefix ? strchr(s, '/') : NULL;
	size_t n;

	if (slash) {
		char *prefix = xstrndup(s, (size_t)(slash - s));
		const char *why = manifest_check_dns_name(prefix, 0);

		free(prefix);
		if (why)
			return "the prefix before '/' must be a DNS name";
		name = slash + 1;
	}
	n = strlen(name);
	if (!n)
		return allow_empty ? NULL : "must not be empty";
	if (n > 63)
		return "must be at most 63 characters";
	if (!isalnum((unsigned char)name[0]) || !isalnum((unsigned char)name[n - 1]))
		return "must start and end with a letter or digit";
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("-_.", name[i]))
			return "only letters, digits, '-', '_' and '.' are allowed";
	return NULL;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct label *)a)->key, ((const struct label *)b)->key);
}

static void read_labels(struct doc *c, const struct ynode *n)
{
	if (ynode_expect(n, YNODE_MAP, c->file, "metadata.labels", c->d)) {
		c->errors++;
		return;
	}
	c->s->labels = xcalloc(n->n + 1, sizeof(struct label));
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kv[2 * i], *v = n->kv[2 * i + 1];
		const char *ks = doc_string(c, k, "metadata.labels"), *why;
		const char *vs = v->type == YNODE_SCALAR ? v->str : NULL;

		if (!ks)
			continue;
		if ((why = check_label_part(ks, 0, 1))) {
			doc_diag(c, k, "metadata.labels: key \"%s\" %s", ks, why);
			continue;
		}
		if (!vs) {
			doc_diag(c, v, "metadata.labels.%s: expected a string, got %s", ks,
				 v->type == YNODE_MAP ? "a map" : "a list");
			continue;
		}
		if ((why = check_label_part(vs, 1, 0))) {
			doc_diag(c, v, "metadata.labels.%s: value \"%s\" %s", ks, vs, why);
			continue;
		}
		c->s->labels[c->s->n_labels].key = xstrdup(ks);
		c->s->labels[c->s->n_labels].value = xstrdup(vs);
		c->s->n_labels++;
	}
	qsort(c->s->labels, c->s->n_labels, sizeof(struct label), label_cmp);
	for (size_t i = 1; i < c->s->n_labels; i++)
		if (!strcmp(c->s->labels[i].key, c->s->labels[i - 1].key))
			c->errors++; /* already reported as a duplicate key */
}

static void read_annotations(struct doc *c, const struct ynode *n)
{
	if (ynode_expect(n, YNODE_MAP, c->file, "metadata.annotations", c->d)) {
		c->errors++;
		return;
	}
	for (size_t i = 0; i < n->n; i++)
		if (n->kv[2 * i + 1]->type != YNODE_SCALAR)
			doc_diag(c, n->kv[2 * i + 1], "metadata.annotations: values must be strings");
}

static void read_metadata(struct doc *c, const struct ynode *n)
{
	static const char *const keys[] = {"name", "labels", "annotations", NULL};
	const struct ynode *v;
	const char *s, *why;

	if (ynode_expect(n, YNODE_MAP, c->file, "metadata", c->d)) {
		c->errors++;
		return;
	}
	c->errors += ynode_check_keys(n, keys, c->file, "metadata", c->d);
	if (!(v = ynode_get(n, "name"))) {
		doc_diag(c, n, "metadata: missing required field \"name\"");
	} else if ((s = doc_string(c, v, "metadata.name"))) {
		if ((why = check_object_name(s)))
			doc_diag(c, v, "metadata.name: \"%s\" is not a valid name: %s", s, why);
		else
			c->s->name = xstrdup(s);
		c->s->line = v->line;
		c->s->col = v->col;
	}
	if ((v = ynode_get(n, "labels")))
		read_labels(c, v);
	if ((v = ynode_get(n, "annotations")))
		read_annotations(c, v);
}

/* ---------- normalisation ---------- */

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void normalise_names(struct cert_spec *s)
{
	size_t k = 0;

	if (!s->dns_names)
		s->dns_names = xcalloc(2, sizeof(char *));
	if (!s->common_name && s->n_dns)
		s->common_name = xstrdup(s->dns_names[0]);
	if (s->common_name) {
		int present = 0;

		for (size_t i = 0; i < s->n_dns && !present; i++)
			present = !strcmp(s->dns_names[i], s->common_name);
		if (!present)
			s->dns_names[s->n_dns++] = xstrdup(s->common_name);
	}
	qsort(s->dns_names, s->n_dns, sizeof(char *), str_cmp);
	for (size_t i = 0; i < s->n_dns; i++) {
		if (k && !strcmp(s->dns_names[k - 1], s->dns_names[i]))
			free(s->dns_names[i]);
		else
			s->dns_names[k++] = s->dns_names[i];
	}
	s->n_dns = k;
}

static void spec_hash(struct cert_spec *s)
{
	struct crypto_sha256_ctx *h = crypto_sha256_begin();
	char num[64];

	/* Each field is tagged and terminated by a byte no value can contain. */
	crypto_sha256_update(h, "issuer=", 7);
	crypto_sha256_update(h, s->issuer, strlen(s->issuer) + 1);
	/* A defaulted common name follows the order of dnsNames, which is cosmetic. */
	crypto_sha256_update(h, "cn=", 3);
	if (s->common_name_set)
		crypto_sha256_update(h, s->common_name, strlen(s->common_name));
	crypto_sha256_update(h, "\0", 1);
	crypto_sha256_update(h, "dns=", 4);
	for (size_t i = 0; i < s->n_dns; i++)
		crypto_sha256_update(h, s->dns_names[i], strlen(s->dns_names[i]) + 1);
	crypto_sha256_update(h, "\n", 1);
	crypto_sha256_update(h, "domain=", 7);
	if (s->domain)
		crypto_sha256_update(h, s->domain, strlen(s->domain));
	crypto_sha256_update(h, "\0", 1);
	snprintf(num, sizeof(num), "key=%d/%d\nduration=%lld\n", (int)s->key_alg, s->key_size, (long long)s->duration);
	crypto_sha256_update(h, num, strlen(num));
	crypto_sha256_update(h, "validation=", 11);
	if (s->validation)
		crypto_sha256_update(h, s->validation, strlen(s->validation));
	crypto_sha256_update(h, "\0", 1);
	crypto_sha256_end_hex(h, s->hash);
}

/* Checks across fields once every field has been read. */
static void check_spec(struct doc *c, const struct ynode *spec_node)
{
	struct cert_spec *s = c->s;

	if (!s->common_name && !s->n_dns && !c->errors) {
		doc_diag(c, spec_node, "spec: give commonName or dnsNames (at least one name)");
		return;
	}
	if (c->size_node) {
		int ok = s->key_alg == KEYALG_RSA ? (s->key_size == 2048 || s->key_size == 3072 || s->key_size == 4096)
						  : (s->key_size == 256 || s->key_size == 384);

		if (!ok)
			doc_diag(c, c->size_node, "spec.privateKey.size: %d is not a valid %s key size (%s)",
				 s->key_size, s->key_alg == KEYALG_RSA ? "RSA" : "ECDSA",
				 s->key_alg == KEYALG_RSA ? "2048, 3072, 4096" : "256, 384");
	}
	if (s->duration && s->renew_before && s->renew_before >= s->duration)
		doc_diag(c, c->renew_node, "spec.renewBefore: must be shorter than spec.duration");
}

void cert_spec_free(struct cert_spec *s)
{
	if (!s)
		return;
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
	free(s);
}

/* Reads one document; returns the spec or NULL (problems reported). */
static struct cert_spec *read_document(const char *file, const struct ydoc *yd, size_t index, struct diags *d)
{
	static const char *const top_keys[] = {"apiVersion", "kind", "metadata", "spec", NULL};
	static const char *spec_keys[N_SPEC_FIELDS + 1];
	const struct ynode *root = yd->root, *v, *spec;
	struct doc c;
	const char *s;

	if (!spec_keys[0])
		for (size_t i = 0; i < N_SPEC_FIELDS; i++)
			spec_keys[i] = spec_fields[i].name;
	memset(&c, 0, sizeof(c));
	c.file = file;
	c.d = d;
	if (!root || (root->type == YNODE_SCALAR && !root->quoted &&
		      (!*root->str || !strcmp(root->str, "~") || !strcmp(root->str, "null"))))
		return NULL; /* an empty document (a trailing ---) */
	if (root->type != YNODE_MAP) {
		diags_add(d, file, root->line, root->col, "document %zu: expected a Certificate (a map), got %s",
			  index + 1, root->type == YNODE_SEQ ? "a list" : "a scalar");
		return NULL;
	}
	c.s = xcalloc(1, sizeof(*c.s));
	c.s->file = xstrdup(file);
	c.s->key_alg = KEYALG_ECDSA;
	c.s->key_size = 256;
	c.s->line = root->line;
	c.s->col = root->col;
	c.errors += ynode_check_keys(root, top_keys, file, "the document", d);
	if (!(v = ynode_get(root, "apiVersion")))
		doc_diag(&c, root, "missing required field \"apiVersion\" (certsync/v1)");
	else if ((s = doc_string(&c, v, "apiVersion")) && strcmp(s, "certsync/v1"))
		doc_diag(&c, v, "apiVersion: \"%s\" is not supported (certsync/v1)", s);
	if (!(v = ynode_get(root, "kind")))
		doc_diag(&c, root, "missing required field \"kind\" (Certificate)");
	else if ((s = doc_string(&c, v, "kind")) && strcmp(s, "Certificate"))
		doc_diag(&c, v, "kind: \"%s\" is not supported (only Certificate)", s);
	if ((v = ynode_get(root, "metadata")))
		read_metadata(&c, v);
	else
		doc_diag(&c, root, "missing required field \"metadata\"");
	if (!(spec = ynode_get(root, "spec"))) {
		doc_diag(&c, root, "missing required field \"spec\"");
	} else if (ynode_expect(spec, YNODE_MAP, file, "spec", d)) {
		c.errors++;
	} else {
		c.errors += ynode_check_keys(spec, spec_keys, file, "spec", d);
		for (size_t i = 0; i < N_SPEC_FIELDS; i++) {
			const struct ynode *fv = ynode_get(spec, spec_fields[i].name);

			if (fv)
				spec_fields[i].read(&c, fv);
			else if (spec_fields[i].required)
				doc_diag(&c, spec, "spec: missing required field \"%s\"", spec_fields[i].name);
		}
		check_spec(&c, spec);
	}
	if (c.errors) {
		cert_spec_free(c.s);
		return NULL;
	}
	normalise_names(c.s);
	if (!c.s->output_dir)
		c.s->output_dir = xstrdup(c.s->name);
	spec_hash(c.s);
	return c.s;
}

int manifest_specs_from_yaml(const struct yfile *f, struct cert_spec ***out, size_t *n, struct diags *d)
{
	size_t before = d->n;

	*out = xcalloc(f->n_docs + 1, sizeof(**out));
	*n = 0;
	for (size_t i = 0; i < f->n_docs; i++) {
		struct cert_spec *s = read_document(f->path, &f->docs[i], i, d);

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

/* ---------- the whole set ---------- */

struct slot {
	const char *key;
	size_t index;
};

/* An open-addressing table of strings → first index. */
struct table {
	struct slot *v;
	size_t cap;
};

static void table_init(struct table *t, size_t n)
{
	t->cap = 16;
	while (t->cap < 2 * n + 2)
		t->cap *= 2;
	t->v = xcalloc(t->cap, sizeof(*t->v));
}

/* Inserts key; returns the index of an earlier equal key, or (size_t)-1. */
static size_t table_put(struct table *t, const char *key, size_t index)
{
	size_t h = util_hash_str(key) & (t->cap - 1);

	while (t->v[h].key) {
		if (!strcmp(t->v[h].key, key))
			return t->v[h].index;
		h = (h + 1) & (t->cap - 1);
	}
	t->v[h].key = key;
	t->v[h].index = index;
	return (size_t)-1;
}

static size_t table_get(const struct table *t, const char *key)
{
	size_t h = util_hash_str(key) & (t->cap - 1);

	while (t->v[h].key) {
		if (!strcmp(t->v[h].key, key))
			return t->v[h].index;
		h = (h + 1) & (t->cap - 1);
	}
	return (size_t)-1;
}

int manifest_check_set(struct cert_spec *const *specs, size_t n, const struct manifest_ctx *ctx, unsigned char *bad,
		       struct diags *d)
{
	struct table names, dirs;
	size_t before = d->n;

	table_init(&names, n);
	table_init(&dirs, n);
	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = specs[i];
		size_t prev = table_put(&names, s->name, i);

		if (prev != (size_t)-1) {
			const struct cert_spec *p = specs[prev];

			diags_add(d, s->file, s->line, s->col,
				  "duplicate certificate name \"%s\" (also defined at %s:%d:%d)", s->name, p->file,
				  p->line, p->col);
			diags_add(d, p->file, p->line, p->col,
				  "duplicate certificate name \"%s\" (also defined at %s:%d:%d)", p->name, s->file,
				  s->line, s->col);
			bad[i] = bad[prev] = 1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = specs[i];
		size_t prev = table_put(&dirs, s->output_dir, i);

		if (prev != (size_t)-1 && !bad[i]) {
			diags_add(d, s->file, s->output_line ? s->output_line : s->line,
				  s->output_line ? s->output_col : s->col,
				  "output directory \"%s\" is also used by certificate \"%s\" (%s:%d)", s->output_dir,
				  specs[prev]->name, specs[prev]->file, specs[prev]->line);
			bad[i] = 1;
		}
	}
	/* One certificate's directory may not sit inside another's. */
	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = specs[i];
		char *p = xstrdup(s->output_dir), *slash;

		while ((slash = strrchr(p, '/'))) {
			size_t other;

			*slash = '\0';
			other = table_get(&dirs, p);
			if (other != (size_t)-1 && other != i) {
				diags_add(
					d, s->file, s->output_line ? s->output_line : s->line,
					s->output_line ? s->output_col : s->col,
					"output directory \"%s\" is inside the output directory of certificate \"%s\"",
					s->output_dir, specs[other]->name);
				bad[i] = 1;
				break;
			}
		}
		free(p);
	}
	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = specs[i];
		size_t e = d->n;

		if (!ctx || !ctx->issuer_exists)
			continue;
		if (!ctx->issuer_exists(ctx->arg, s->issuer)) {
			diags_add(d, s->file, s->issuer_line, s->issuer_col,
				  "spec.issuer: unknown issuer \"%s\" (not in the config)", s->issuer);
			bad[i] = 1;
			continue;
		}
		if (ctx->issuer_check)
			ctx->issuer_check(ctx->arg, s, d);
		if (d->n > e)
			bad[i] = 1;
	}
	free(names.v);
	free(dirs.v);
	return (int)(d->n - before);
}
