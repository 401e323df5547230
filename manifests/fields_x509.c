/*
 * The Certificate fields beyond names and keys, with cert-manager's names:
 * ipAddresses, uris, emailAddresses, subject, usages, isCA/pathLen, and
 * spec.output.formats. Readers for fields.c's tables; what an issuer may
 * issue is checked later, per issuer (manifest_ctx.issuer_check).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/buf.h"
#include "../util/util.h"
#include "internal.h"

#define MAX_LIST 100	   /* items per list (as dnsNames) */
#define MAX_URI 1024	   /* bytes of one URI SAN */
#define MAX_EMAIL 254	   /* RFC 5321 path limit */
#define MAX_SUBJECT_VAL 64 /* X.520 upper bound of most attributes (ub-organization-name ...) */

const char *const manifest_format_files[OUTFMT__MAX] = {"chain.pem", "combined.pem", "keystore.p12", "key.der",
							"tls.der"};

const char *const manifest_x509_field_names[XF__MAX] = {"ipAddresses", "uris",	 "emailAddresses",
							"subject",     "usages", "isCA"};

void manifest_formats_text(unsigned formats, char out[MANIFEST_FORMATS_TEXT])
{
	size_t at = 0;

	out[0] = '\0';
	for (int i = 0; i < OUTFMT__MAX; i++) {
		size_t n = strlen(manifest_format_files[i]);

		if (!(formats & (1u << i)))
			continue;
		if (at)
			out[at++] = ',';
		memcpy(out + at, manifest_format_files[i], n + 1);
		at += n;
	}
}

static int x_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts and de-duplicates a list of strings in place. */
static void x_sort_unique(char **v, size_t *n)
{
	size_t k = 0;

	qsort(v, *n, sizeof(*v), x_str_cmp);
	for (size_t i = 0; i < *n; i++) {
		if (k && !strcmp(v[k - 1], v[i]))
			free(v[i]);
		else
			v[k++] = v[i];
	}
	*n = k;
}

static void x_mark(struct doc *c, enum x509_field f, const struct ynode *n)
{
	c->s->xpos[f][0] = n->line;
	c->s->xpos[f][1] = n->col;
}

/* The string of item i of a list, or NULL (reported). */
static const char *x_item(struct doc *c, const struct ynode *item, const char *what, size_t i)
{
	char *where;

	if (item->type == YNODE_SCALAR && !ynode_is_null(item) && item->len)
		return item->str;
	where = xasprintf("%s[%zu]", what, i);
	doc_diag(c, item, "%s: expected a non-empty string, got %s", where, ynode_kind(item));
	free(where);
	return NULL;
}

/* Reads a list through check (returns the normalised value, or NULL with *why set); sorted and unique. */
static void x_list(struct doc *c, const struct ynode *n, const char *what, char *(*check)(const char *, const char **),
		   char ***out, size_t *n_out)
{
	if (n->n > MAX_LIST) {
		doc_diag(c, n, "%s: %zu entries; the limit is %d", what, n->n, MAX_LIST);
		return;
	}
	*out = xcalloc(n->n + 1, sizeof(**out));
	for (size_t i = 0; i < n->n; i++) {
		const char *s = x_item(c, n->items[i], what, i), *why = NULL;
		char *v;

		if (!s)
			continue;
		if ((v = check(s, &why))) {
			(*out)[(*n_out)++] = v;
			continue;
		}
		doc_diag(c, n->items[i], "%s[%zu]: \"%s\" %s", what, i, s, why);
	}
	x_sort_unique(*out, n_out);
}

static char *x_check_ip(const char *s, const char **why)
{
	unsigned char bin[16];
	char text[INET6_ADDRSTRLEN];

	if (inet_pton(AF_INET, s, bin) == 1 && inet_ntop(AF_INET, bin, text, sizeof(text)))
		return xstrdup(text);
	if (inet_pton(AF_INET6, s, bin) == 1 && inet_ntop(AF_INET6, bin, text, sizeof(text)))
		return xstrdup(text);
	*why = "is not an IPv4 or IPv6 address";
	return NULL;
}

/* Printable ASCII without spaces (what a SAN's IA5String should hold). */
static int x_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

static char *x_check_uri(const char *s, const char **why)
{
	size_t scheme = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");

	if (strlen(s) > MAX_URI)
		*why = "is longer than 1024 characters";
	else if (!x_printable(s))
		*why = "holds a space, a control or a non-ASCII character (percent-encode it)";
	else if (!scheme || s[scheme] != ':' || !s[scheme + 1] || !((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z'))
		*why = "is not an absolute URI (scheme:rest, e.g. spiffe://cluster.local/ns/web/sa/api)";
	else
		return xstrdup(s);
	return NULL;
}

static char *x_check_email(const char *s, const char **why)
{
	const char *at = strrchr(s, '@');
	char *v, *dom;

	if (strlen(s) > MAX_EMAIL) {
		*why = "is longer than 254 characters";
		return NULL;
	}
	if (!at || at == s || !x_printable(s) || memchr(s, '@', (size_t)(at - s))) {
		*why = "is not an email address (local@domain, ASCII)";
		return NULL;
	}
	if ((*why = manifest_check_dns_name(at + 1, 0)))
		return NULL;
	v = xstrdup(s);
	for (dom = v + (at - s) + 1; *dom; dom++)
		*dom = (char)(*dom >= 'A' && *dom <= 'Z' ? *dom - 'A' + 'a' : *dom);
	return v;
}

void fields_ip_addresses(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)v;
	x_mark(c, XF_IP, n);
	x_list(c, n, what, x_check_ip, &c->s->ips, &c->s->n_ips);
}

void fields_uris(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)v;
	x_mark(c, XF_URI, n);
	x_list(c, n, what, x_check_uri, &c->s->uris, &c->s->n_uris);
}

void fields_emails(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)v;
	x_mark(c, XF_EMAIL, n);
	x_list(c, n, what, x_check_email, &c->s->emails, &c->s->n_emails);
}

/* ---------- subject ---------- */

static void x_subject_add(struct doc *c, const struct ynode *item, const char *what, size_t i, enum subject_attr a)
{
	const char *s = x_item(c, item, what, i);
	struct cert_spec *sp = c->s;
	size_t chars = 0;

	if (!s)
		return;
	for (const char *p = s; *p; p++) {
		chars += ((unsigned char)*p & 0xc0) != 0x80;
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			doc_diag(c, item, "%s[%zu]: holds a control character", what, i);
			return;
		}
	}
	if (a == SUBJ_C && (strlen(s) != 2 || !strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ", s[0] & ~0x20) ||
			    !strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ", s[1] & ~0x20))) {
		doc_diag(c, item, "%s[%zu]: \"%s\" is not a two-letter country code (ISO 3166, e.g. DE)", what, i, s);
		return;
	}
	if (chars > MAX_SUBJECT_VAL) {
		doc_diag(c, item, "%s[%zu]: longer than %d characters, the X.509 limit", what, i, MAX_SUBJECT_VAL);
		return;
	}
	sp->subject = xrealloc(sp->subject, (sp->n_subject + 1) * sizeof(*sp->subject));
	sp->subject[sp->n_subject].attr = a;
	sp->subject[sp->n_subject].value = xstrdup(s);
	if (a == SUBJ_C)
		for (char *p = sp->subject[sp->n_subject].value; *p; p++)
			*p = (char)(*p & ~0x20);
	sp->n_subject++;
}

static void x_subject_list(struct doc *c, const struct ynode *n, const char *what, enum subject_attr a)
{
	x_mark(c, XF_SUBJECT, n);
	if (n->n > MAX_LIST) {
		doc_diag(c, n, "%s: %zu entries; the limit is %d", what, n->n, MAX_LIST);
		return;
	}
	for (size_t i = 0; i < n->n; i++)
		x_subject_add(c, n->items[i], what, i, a);
}

#define SUBJECT_READER(fn, attr)                                                                                       \
	static void fn(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)                 \
	{                                                                                                              \
		(void)v;                                                                                               \
		x_subject_list(c, n, what, attr);                                                                      \
	}
SUBJECT_READER(f_organizations, SUBJ_O)
SUBJECT_READER(f_units, SUBJ_OU)
SUBJECT_READER(f_countries, SUBJ_C)
SUBJECT_READER(f_localities, SUBJ_L)
SUBJECT_READER(f_provinces, SUBJ_ST)
SUBJECT_READER(f_streets, SUBJ_STREET)
SUBJECT_READER(f_postal, SUBJ_POSTAL)

static void f_subject_serial(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	x_mark(c, XF_SUBJECT, n);
	(void)v;
	x_subject_add(c, n, what, 0, SUBJ_SERIAL);
}

static int x_subject_cmp(const void *a, const void *b)
{
	const struct subject_entry *x = a, *y = b;

	if (x->attr != y->attr)
		return x->attr < y->attr ? -1 : 1;
	return strcmp(x->value, y->value);
}

static void subject_finish(struct doc *c, const struct ynode *map)
{
	struct cert_spec *s = c->s;

	(void)map;
	/* a set per attribute: order and repeats are cosmetic */
	if (s->n_subject)
		qsort(s->subject, s->n_subject, sizeof(*s->subject), x_subject_cmp);
	for (size_t i = 1; i < s->n_subject;) {
		if (s->subject[i].attr == s->subject[i - 1].attr &&
		    !strcmp(s->subject[i].value, s->subject[i - 1].value)) {
			free(s->subject[i].value);
			memmove(&s->subject[i], &s->subject[i + 1], (s->n_subject - i - 1) * sizeof(*s->subject));
			s->n_subject--;
		} else {
			i++;
		}
	}
}

static const struct field subject_fields[] = {
	{.name = "organizations", .type = FT_SEQ, .read = f_organizations},
	{.name = "organizationalUnits", .type = FT_SEQ, .read = f_units},
	{.name = "countries", .type = FT_SEQ, .read = f_countries},
	{.name = "localities", .type = FT_SEQ, .read = f_localities},
	{.name = "provinces", .type = FT_SEQ, .read = f_provinces},
	{.name = "streetAddresses", .type = FT_SEQ, .read = f_streets},
	{.name = "postalCodes", .type = FT_SEQ, .read = f_postal},
	{.name = "serialNumber", .type = FT_STRING, .read = f_subject_serial},
};
const struct ftable fields_subject = {"spec.subject", subject_fields,
				      sizeof(subject_fields) / sizeof(subject_fields[0]), subject_finish};

/* ---------- usages, isCA ---------- */

static const struct {
	const char *name;
	enum usage u;
} usage_names[] = {
	{"signing", USAGE_DIGITAL_SIGNATURE},
	{"digital signature", USAGE_DIGITAL_SIGNATURE},
	{"content commitment", USAGE_CONTENT_COMMITMENT},
	{"key encipherment", USAGE_KEY_ENCIPHERMENT},
	{"key agreement", USAGE_KEY_AGREEMENT},
	{"data encipherment", USAGE_DATA_ENCIPHERMENT},
	{"cert sign", USAGE_CERT_SIGN},
	{"crl sign", USAGE_CRL_SIGN},
	{"encipher only", USAGE_ENCIPHER_ONLY},
	{"decipher only", USAGE_DECIPHER_ONLY},
	{"any", USAGE_ANY},
	{"server auth", USAGE_SERVER_AUTH},
	{"client auth", USAGE_CLIENT_AUTH},
	{"code signing", USAGE_CODE_SIGNING},
	{"email protection", USAGE_EMAIL_PROTECTION},
	{"s/mime", USAGE_EMAIL_PROTECTION},
	{"ipsec end system", USAGE_IPSEC_END_SYSTEM},
	{"ipsec tunnel", USAGE_IPSEC_TUNNEL},
	{"ipsec user", USAGE_IPSEC_USER},
	{"timestamping", USAGE_TIMESTAMPING},
	{"ocsp signing", USAGE_OCSP_SIGNING},
	{"microsoft sgc", USAGE_MICROSOFT_SGC},
	{"netscape sgc", USAGE_NETSCAPE_SGC},
};
#define N_USAGE_NAMES (sizeof(usage_names) / sizeof(usage_names[0]))

/* The closest usage name (for "did you mean"), or NULL. */
static const char *x_usage_suggest(const char *s)
{
	const char *best = NULL;
	size_t bd = 4;

	for (size_t i = 0; i < N_USAGE_NAMES; i++) {
		size_t d = util_edit_distance(s, usage_names[i].name);

		if (d < bd) {
			bd = d;
			best = usage_names[i].name;
		}
	}
	return best;
}

void fields_usages(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)v;
	x_mark(c, XF_USAGES, n);
	if (!n->n)
		doc_diag(c, n, "%s: empty list (leave usages out for the issuer's default profile)", what);
	for (size_t i = 0; i < n->n; i++) {
		const char *s = x_item(c, n->items[i], what, i), *hint;
		size_t j;

		if (!s)
			continue;
		for (j = 0; j < N_USAGE_NAMES && strcasecmp(s, usage_names[j].name); j++)
			;
		if (j < N_USAGE_NAMES) {
			c->s->usages |= 1u << usage_names[j].u;
			continue;
		}
		if ((hint = x_usage_suggest(s)))
			doc_diag(c, n->items[i], "%s[%zu]: \"%s\" is not a usage (did you mean \"%s\"?)", what, i, s,
				 hint);
		else
			doc_diag(c, n->items[i],
				 "%s[%zu]: \"%s\" is not a usage (cert-manager's names: digital signature, key "
				 "encipherment, server auth, client auth, cert sign, ...)",
				 what, i, s);
	}
}

void fields_is_ca(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)what;
	c->s->is_ca = (int)v->num;
	if (v->num)
		x_mark(c, XF_ISCA, n);
}

void fields_path_len(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	(void)what;
	c->s->path_len = (int)v->num;
	c->path_len = n;
}

/* ---------- output.formats ---------- */

void fields_formats(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	static const struct {
		const char *alias, *hint;
	} aliases[] = {
		{"CombinedPEM", "combined.pem"}, {"DER", "key.der"},	  {"tls-combined.pem", "combined.pem"},
		{"PKCS12", "keystore.p12"},	 {"fullchain.pem", NULL}, {"privkey.pem", NULL},
	};

	(void)v;
	c->s->formats_line = n->line;
	c->s->formats_col = n->col;
	for (size_t i = 0; i < n->n; i++) {
		const char *s = x_item(c, n->items[i], what, i), *hint = NULL;
		int j;

		if (!s)
			continue;
		for (j = 0; j < OUTFMT__MAX && strcmp(s, manifest_format_files[j]); j++)
			;
		if (j < OUTFMT__MAX) {
			c->s->formats |= 1u << j;
			continue;
		}
		for (size_t k = 0; k < sizeof(aliases) / sizeof(aliases[0]); k++)
			if (!strcasecmp(s, aliases[k].alias))
				hint = aliases[k].hint ? aliases[k].hint : "tls.crt/tls.key";
		if (hint)
			doc_diag(c, n->items[i],
				 "%s[%zu]: \"%s\" is not a format certsync writes (did you mean \"%s\"?)", what, i, s,
				 hint);
		else
			doc_diag(c, n->items[i],
				 "%s[%zu]: \"%s\" is not a format certsync writes (chain.pem, combined.pem, "
				 "keystore.p12, key.der, tls.der)",
				 what, i, s);
	}
}

/* ---------- fields of other tools, pasted ---------- */

void fields_pasted(struct doc *c, const struct ynode *n, const char *what, const struct fvalue *v)
{
	static const struct {
		const char *field, *hint;
	} hints[] = {
		{"spec.secretName",
		 "certsync writes files, not Kubernetes Secrets: name the directory under the output root with "
		 "spec.output.directory (e.g. output: {directory: %s})"},
		{"spec.additionalOutputFormats",
		 "write the extra files with spec.output.formats (combined.pem, key.der, tls.der, chain.pem, "
		 "keystore.p12)"},
		{"spec.issuerRef", "name a configured issuer with spec.issuer (a plain string)"},
	};

	(void)v;
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
		if (strcmp(what, hints[i].field))
			continue;
		if (i == 0 && n->type == YNODE_SCALAR && !names_check_object_name(n->str)) {
			char *h = xasprintf(hints[i].hint, n->str);

			doc_diag(c, n, "%s is cert-manager's field: %s", what, h);
			free(h);
		} else {
			doc_diag(c, n, "%s is cert-manager's field: %s", what,
				 i == 0 ? "certsync writes files, not "
					  "Kubernetes Secrets: name the directory under the output root with "
					  "spec.output.directory"
					: hints[i].hint);
		}
		return;
	}
}
