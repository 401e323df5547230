/*
 * The Certificate schema as field tables: one table per map, one row per
 * field (name, type, required, where it is stored, range, reader, nested
 * table). spec.c walks them; the readers here hold only what a table row
 * cannot say.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/util.h"
#include "internal.h"

#define STORE(member) .store = 1, .offset = offsetof(struct cert_spec, member)
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

#define MIN_DURATION 3600    /* 1h */
#define MIN_RENEW_BEFORE 300 /* 5m */
#define MAX_COMMON_NAME 64   /* X.509 ub-common-name */

/* ---------- the document ---------- */

static void f_api_version(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	if (strcmp(v->str, "certsync/v1")) {
		doc_diag(c, n, "%s: \"%s\" is not supported (certsync/v1)", what, v->str);
		c->wrong_api = 1;
	}
}

static void f_kind(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	if (!strcmp(v->str, "Certificate"))
		return;
	if (!strcasecmp(v->str, "Certificate"))
		doc_diag(c, n, "%s: \"%s\" is not supported (did you mean \"Certificate\"?)", what, v->str);
	else
		doc_diag(c, n, "%s: \"%s\" is not supported (only Certificate)", what, v->str);
	c->wrong_api = 1;
}

/* ---------- metadata ---------- */

static void f_name(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	const char *why = names_check_object_name(v->str);

	if (why) {
		doc_diag(c, n, "%s: \"%s\" is not a valid name: %s", what, v->str, why);
		return;
	}
	c->s->name = xstrdup(v->str);
	c->s->line = n->line;
	c->s->col = n->col;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct label *)a)->key, ((const struct label *)b)->key);
}

/* One label; 0 and *out filled, or -1 (reported). */
static int label_read(struct doc *c, const struct ynode *k, const struct ynode *v, const char *what, struct label *out)
{
	const char *key, *value, *why;

	if (ynode_string(k, c->file, what, c->d, &key)) {
		c->errors++;
		return -1;
	}
	if ((why = names_check_label_key(key))) {
		doc_diag(c, k, "%s: key \"%s\" %s", what, key, why);
		return -1;
	}
	if (v->type != YNODE_SCALAR) {
		doc_diag(c, v, "%s.%s: expected a string, got %s", what, key, ynode_kind(v));
		return -1;
	}
	value = ynode_is_null(v) ? "" : v->str;
	if ((why = names_check_label_value(value))) {
		doc_diag(c, v, "%s.%s: value \"%s\" %s", what, key, value, why);
		return -1;
	}
	out->key = xstrdup(key);
	out->value = xstrdup(value);
	return 0;
}

static void f_labels(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	struct cert_spec *s = c->s;
	int dups = ynode_check_dups(n, c->file, c->d);

	(void)v;
	c->errors += dups;
	s->labels = xcalloc(n->n + 1, sizeof(*s->labels));
	for (size_t i = 0; i < n->n; i++)
		if (!label_read(c, n->kv[2 * i], n->kv[2 * i + 1], what, &s->labels[s->n_labels]))
			s->n_labels++;
	qsort(s->labels, s->n_labels, sizeof(*s->labels), label_cmp);
}

/* Annotations are for people and other tools: any string keys and values, otherwise ignored. */
static void f_annotations(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)v;
	c->errors += ynode_check_dups(n, c->file, c->d);
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *key = n->kv[2 * i], *val = n->kv[2 * i + 1];
		const char *ks;

		if (ynode_string(key, c->file, what, c->d, &ks))
			c->errors++;
		else if (val->type != YNODE_SCALAR)
			doc_diag(c, val, "%s.%s: expected a string, got %s", what, ks, ynode_kind(val));
	}
}

/* ---------- spec ---------- */

static void f_issuer(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)what;
	(void)v;
	c->s->issuer_line = n->line;
	c->s->issuer_col = n->col;
}

static void f_common_name(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	const char *why = manifest_check_dns_name(v->str, 1);

	if (why) {
		doc_diag(c, n, "%s: \"%s\" is not a valid DNS name: %s", what, v->str, why);
		return;
	}
	c->s->common_name = names_normalise_dns(v->str);
	if (strlen(c->s->common_name) > MAX_COMMON_NAME) {
		doc_diag(c, n,
			 "%s: \"%s\" is longer than 64 characters, the X.509 limit for a common name (list it in "
			 "dnsNames and leave commonName out)",
			 what, v->str);
		return;
	}
	c->s->common_name_set = 1;
	c->cn = n;
}

static void f_dns_names(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	struct cert_spec *s = c->s;

	(void)v;
	if (n->n > MANIFEST_MAX_DNS_NAMES) {
		doc_diag(c, n, "%s: %zu names; the limit is %d", what, n->n, MANIFEST_MAX_DNS_NAMES);
		return;
	}
	/* room for the commonName, added when the names are normalised */
	s->dns_names = xcalloc(n->n + 2, sizeof(*s->dns_names));
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *item = n->items[i];
		const char *why = NULL;
		char *where;

		if (item->type == YNODE_SCALAR && !ynode_is_null(item) &&
		    !(why = manifest_check_dns_name(item->str, 1))) {
			s->dns_names[s->n_dns++] = names_normalise_dns(item->str);
			continue;
		}
		/* the index only costs a printf when there is something to say */
		where = xasprintf("%s[%zu]", what, i);
		if (why)
			doc_diag(c, item, "%s: \"%s\" is not a valid DNS name: %s", where, item->str, why);
		else
			doc_diag(c, item, "%s: expected a string, got %s", where, ynode_kind(item));
		free(where);
	}
	c->names = n;
}

static void f_domain(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	const char *why = manifest_check_dns_name(v->str, 0);

	if (why)
		doc_diag(c, n, "%s: \"%s\" is not a valid domain: %s", what, v->str, why);
	else
		c->s->domain = names_normalise_dns(v->str);
}

static void f_auto_renew(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)n;
	(void)what;
	c->s->auto_renew = (int)v->num;
	c->s->auto_renew_set = 1;
}

static void f_suspend(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)n;
	(void)what;
	c->s->suspend = (int)v->num;
}

static void f_duration(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)what;
	(void)v;
	c->duration = n;
}

static void f_renew_before(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)what;
	(void)v;
	c->renew = n;
}

static void spec_finish(struct doc *c, const struct ynode *map)
{
	struct cert_spec *s = c->s;
	const struct ynode *names = ynode_get(map, "dnsNames");

	int other = ynode_get(map, "ipAddresses") || ynode_get(map, "uris") || ynode_get(map, "emailAddresses");

	if (!ynode_get(map, "commonName") && (!names || (names->type == YNODE_SEQ && !names->n)) && !other)
		doc_diag(c, names ? names : map,
			 "spec: at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required");
	if (c->path_len && !s->is_ca)
		doc_diag(c, c->path_len, "spec.pathLen: only a CA certificate has a path length (set isCA: true)");
	if (c->duration && c->renew && s->renew_before >= s->duration)
		doc_diag(c, c->renew, "spec.renewBefore: %s must be shorter than spec.duration (%s)", c->renew->str,
			 c->duration->str);
	if (!s->key_size)
		s->key_size = s->key_alg == KEYALG_RSA ? 2048 : 256;
}

/* ---------- spec.privateKey ---------- */

static void f_algorithm(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	if (!strcasecmp(v->str, "RSA")) {
		c->s->key_alg = KEYALG_RSA;
	} else if (!strcasecmp(v->str, "ECDSA")) {
		c->s->key_alg = KEYALG_ECDSA;
	} else {
		doc_diag(c, n, "%s: \"%s\" is not supported (RSA, ECDSA)", what, v->str);
		c->alg_ok = 0;
	}
}

static void f_size(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)what;
	c->s->key_size = (int)v->num;
	c->size = n;
}

static void f_rotation(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	if (!strcasecmp(v->str, "Always"))
		c->s->rotation = ROTATE_ALWAYS;
	else if (!strcasecmp(v->str, "Never"))
		c->s->rotation = ROTATE_NEVER;
	else
		doc_diag(c, n, "%s: \"%s\" is not supported (Always, Never)", what, v->str);
}

static void key_finish(struct doc *c, const struct ynode *map)
{
	static const int rsa[] = {2048, 3072, 4096, 0}, ecdsa[] = {256, 384, 0};
	const struct cert_spec *s = c->s;
	const int *ok = s->key_alg == KEYALG_RSA ? rsa : ecdsa;
	size_t i;

	(void)map;
	if (!c->size || !c->alg_ok)
		return;
	for (i = 0; ok[i] && ok[i] != s->key_size; i++)
		;
	if (!ok[i])
		doc_diag(c, c->size, "spec.privateKey.size: %d is not a valid %s key size (%s)", s->key_size,
			 s->key_alg == KEYALG_RSA ? "RSA" : "ECDSA",
			 s->key_alg == KEYALG_RSA ? "2048, 3072, 4096" : "256, 384");
}

/* ---------- spec.validation, spec.output ---------- */

static void f_method(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	if (strcmp(v->str, "dns-txt-token") && strcmp(v->str, "http-token"))
		doc_diag(c, n, "%s: \"%s\" is not supported (dns-txt-token, http-token)", what, v->str);
	else
		c->s->validation = xstrdup(v->str);
}

static void f_directory(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	const char *why = manifest_check_relpath(v->str);

	if (why) {
		doc_diag(c, n, "%s: \"%s\" is not a valid output directory: %s", what, v->str, why);
		return;
	}
	c->s->output_dir = names_clean_path(v->str);
	c->s->output_line = n->line;
	c->s->output_col = n->col;
}

/* ---------- the tables ---------- */

static const struct field key_fields[] = {
	{.name = "algorithm", .type = FT_STRING, .read = f_algorithm},
	{.name = "size", .type = FT_INT, .min = 1, .max = 65536, .read = f_size},
	{.name = "rotationPolicy", .type = FT_STRING, .read = f_rotation},
};
static const struct ftable key_table = {"spec.privateKey", key_fields, N_OF(key_fields), key_finish};

static const struct field validation_fields[] = {
	{.name = "method", .type = FT_STRING, .read = f_method},
};
static const struct ftable validation_table = {"spec.validation", validation_fields, N_OF(validation_fields), NULL};

static const struct field output_fields[] = {
	{.name = "directory", .type = FT_STRING, .read = f_directory},
	{.name = "formats", .type = FT_SEQ, .read = fields_formats},
};
static const struct ftable output_table = {"spec.output", output_fields, N_OF(output_fields), NULL};

static const struct field spec_fields[] = {
	{.name = "issuer", .type = FT_STRING, .required = 1, STORE(issuer), .read = f_issuer},
	{.name = "commonName", .type = FT_STRING, .read = f_common_name},
	{.name = "dnsNames", .type = FT_SEQ, .read = f_dns_names},
	{.name = "domain", .type = FT_STRING, .read = f_domain},
	{.name = "autoRenew", .type = FT_BOOL, .read = f_auto_renew},
	{.name = "suspend", .type = FT_BOOL, .read = f_suspend},
	{.name = "duration", .type = FT_DURATION, .min = MIN_DURATION, STORE(duration), .read = f_duration},
	{.name = "renewBefore",
	 .type = FT_DURATION,
	 .min = MIN_RENEW_BEFORE,
	 STORE(renew_before),
	 .read = f_renew_before},
	{.name = "privateKey", .type = FT_MAP, .sub = &key_table},
	{.name = "validation", .type = FT_MAP, .sub = &validation_table},
	{.name = "output", .type = FT_MAP, .sub = &output_table},
	{.name = "ipAddresses", .type = FT_SEQ, .read = fields_ip_addresses},
	{.name = "uris", .type = FT_SEQ, .read = fields_uris},
	{.name = "emailAddresses", .type = FT_SEQ, .read = fields_emails},
	{.name = "subject", .type = FT_MAP, .sub = &fields_subject},
	{.name = "usages", .type = FT_SEQ, .read = fields_usages},
	{.name = "isCA", .type = FT_BOOL, .read = fields_is_ca},
	{.name = "pathLen", .type = FT_INT, .min = 0, .max = 32, .read = fields_path_len},
	/* cert-manager's spellings: one error saying how certsync spells them */
	{.name = "secretName", .type = FT_ANY, .read = fields_pasted},
	{.name = "additionalOutputFormats", .type = FT_ANY, .read = fields_pasted},
	{.name = "issuerRef", .type = FT_ANY, .read = fields_pasted},
};
static const struct ftable spec_table = {"spec", spec_fields, N_OF(spec_fields), spec_finish};

static const struct field metadata_fields[] = {
	{.name = "name", .type = FT_STRING, .required = 1, .read = f_name},
	{.name = "labels", .type = FT_MAP, .read = f_labels},
	{.name = "annotations", .type = FT_MAP, .read = f_annotations},
};
static const struct ftable metadata_table = {"metadata", metadata_fields, N_OF(metadata_fields), NULL};

/* apiVersion and kind come first: when they name another schema the rest is not read. */
static const struct field document_fields[] = {
	{.name = "apiVersion", .type = FT_STRING, .required = 1, .read = f_api_version},
	{.name = "kind", .type = FT_STRING, .required = 1, .read = f_kind},
	{.name = "metadata", .type = FT_MAP, .required = 1, .sub = &metadata_table},
	{.name = "spec", .type = FT_MAP, .required = 1, .sub = &spec_table},
};
const struct ftable fields_document = {NULL, document_fields, N_OF(document_fields), NULL};
