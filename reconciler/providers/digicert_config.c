/* The digicert issuer's config (certsync.yaml) and its checks on manifests. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../util/err.h"
#include "../../util/util.h"
#include "digicert.h"

static const char *const dc_products[] = {"ssl_dv_geotrust",
					  "ssl_dv_rapidssl",
					  "wildcard_dv_geotrust",
					  "wildcard_dv_rapidssl",
					  "cloud_dv_geotrust",
					  "ssl_dv_geotrust_flex",
					  NULL};
static const char *const dc_hashes[] = {"sha256", "sha384", "sha512", NULL};
static const char *const dc_payments[] = {"balance", "card", "profile", "wire_transfer", NULL};
static const char *const dc_method_names[DC_METHOD__MAX] = {"dns-txt-token", "http-token"};

const char *digicert_method_name(enum digicert_method m)
{
	return dc_method_names[m];
}

/* ---------- config ---------- */

void digicert_config_free(void *priv)
{
	struct digicert *dc = priv;

	if (!dc)
		return;
	digicert_session_end(dc);
	free(dc->name);
	config_cred_free(&dc->api_key);
	free(dc->base_url);
	free(dc->ca_file);
	free(dc->product);
	free(dc->signature_hash);
	free(dc->payment_method);
	free(dc->dns_issuer);
	free(dc->webroot);
	pthread_mutex_destroy(&dc->mu);
	pthread_mutex_destroy(&dc->file_mu);
	free(dc);
}

static int in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list[i]; i++)
		if (!strcmp(s, list[i]))
			return 1;
	return 0;
}

/* A string field that must be one of list. */
static void one_of(const struct ynode *v, const char *file, const char *what, const char *const *list, const char *hint,
		   struct diags *d, char **out)
{
	const char *s;

	if (ynode_string(v, file, what, d, &s))
		return;
	if (!in_list(s, list)) {
		diags_add(d, file, v->line, v->col, "%s: \"%s\" is not one of %s", what, s, hint);
		return;
	}
	free(*out);
	*out = xstrdup(s);
}

static void dc_parse_base_url(struct digicert *dc, const struct ynode *v, const char *file, struct diags *d)
{
	const char *s;

	if (ynode_string(v, file, "baseURL", d, &s))
		return;
	free(dc->base_url);
	if (!strcasecmp(s, "US") || !strcasecmp(s, "EU")) {
		dc->base_url = xstrdup(strcasecmp(s, "EU") ? DIGICERT_US_URL : DIGICERT_EU_URL);
		return;
	}
	if (strncmp(s, "https://", 8) && strncmp(s, "http://127.", 11) && strncmp(s, "http://localhost", 16))
		diags_add(d, file, v->line, v->col,
			  "baseURL: must be https:// (plain http only to loopback), US or EU");
	dc->base_url = xstrdup(s);
	while (util_has_suffix(dc->base_url, "/"))
		dc->base_url[strlen(dc->base_url) - 1] = '\0';
}

/* orderValidity: years (1-3) as a number, or a duration ("397d") in days. */
static void dc_parse_validity(struct digicert *dc, const struct ynode *v, const char *file, struct diags *d)
{
	int64_t n;

	if (v->type == YNODE_SCALAR && v->str && strspn(v->str, "0123456789") == strlen(v->str)) {
		if (!ynode_int(v, file, "orderValidity", 1, 3, d, &n))
			dc->validity_years = (int)n;
		return;
	}
	if (ynode_duration(v, file, "orderValidity", d, &n))
		return;
	if (n % 86400 || n / 86400 > 1095)
		diags_add(d, file, v->line, v->col, "orderValidity: give whole days up to 1095d, or years 1-3");
	dc->validity_days = (int)(n / 86400);
	dc->validity_years = 0;
}

static int dc_parse_method(const char *s, enum digicert_method *out)
{
	for (int i = 0; i < DC_METHOD__MAX; i++) {
		if (!strcmp(s, dc_method_names[i])) {
			*out = (enum digicert_method)i;
			return 0;
		}
	}
	return CS_EINVALID;
}

static void dc_parse_label(struct digicert *dc, const struct ynode *v, const char *file, struct diags *d)
{
	const char *s;

	if (ynode_string(v, file, "validation.label", d, &s))
		return;
	if (strcmp(s, "@") && strcmp(s, "_dnsauth"))
		diags_add(d, file, v->line, v->col, "validation.label: \"%s\" is not \"@\" or \"_dnsauth\"", s);
	dc->dnsauth_label = !strcmp(s, "_dnsauth");
}

/* validation.dns: an issuer name, or {issuer, label}. */
static void dc_parse_dns(struct digicert *dc, const struct ynode *v, const char *file, struct diags *d)
{
	static const char *const keys[] = {"issuer", "label", NULL};
	const struct ynode *n = v, *l;
	const char *s;

	if (v->type == YNODE_MAP) {
		ynode_check_keys(v, keys, file, "validation.dns", d);
		if (!(n = ynode_get(v, "issuer"))) {
			diags_add(d, file, v->line, v->col, "validation.dns: issuer is required");
			return;
		}
		if ((l = ynode_get(v, "label")))
			dc_parse_label(dc, l, file, d);
	}
	if (ynode_string(n, file, "validation.dns", d, &s))
		return;
	dc->dns_issuer = xstrdup(s);
	dc->dns_line = n->line;
	dc->dns_col = n->col;
}

static void dc_parse_validation(struct digicert *dc, const struct ynode *v, const char *file, struct diags *d)
{
	static const char *const keys[] = {"method", "dns", "label", "webroot", "http", NULL};
	static const char *const http_keys[] = {"webroot", NULL};
	const struct ynode *f, *w = NULL;
	const char *s;

	if (ynode_expect(v, YNODE_MAP, file, "validation", d))
		return;
	ynode_check_keys(v, keys, file, "validation", d);
	if ((f = ynode_get(v, "method")) && !ynode_string(f, file, "validation.method", d, &s) &&
	    dc_parse_method(s, &dc->method))
		diags_add(d, file, f->line, f->col, "validation.method: \"%s\" is not dns-txt-token or http-token", s);
	if ((f = ynode_get(v, "dns")))
		dc_parse_dns(dc, f, file, d);
	if ((f = ynode_get(v, "label")))
		dc_parse_label(dc, f, file, d);
	if ((f = ynode_get(v, "http")) && !ynode_expect(f, YNODE_MAP, file, "validation.http", d)) {
		ynode_check_keys(f, http_keys, file, "validation.http", d);
		w = ynode_get(f, "webroot");
	}
	if ((f = ynode_get(v, "webroot")))
		w = f;
	if (w && !ynode_string(w, file, "validation.webroot", d, &s))
		dc->webroot = config_resolve_path(file, s);
}

/* The method's own settings must be there: a DNS driver for dns-txt-token, a webroot for http-token. */
static void dc_check_method_config(struct digicert *dc, const struct ynode *node, const char *file, const char *what,
				   struct diags *d)
{
	if (dc->method == DC_DNS_TXT && !dc->dns_issuer)
		diags_add(d, file, node->line, node->col,
			  "%s: validation.dns is required for dns-txt-token (a dnsimple issuer that places the TXT "
			  "records)",
			  what);
	if (dc->method == DC_HTTP && !dc->webroot)
		diags_add(d, file, node->line, node->col, "%s: validation.webroot is required for http-token", what);
}

int digicert_config_parse(const struct ynode *node, const char *file, const char *name, struct diags *d, void **priv)
{
	static const char *const keys[] = {"type",
					   "apiKey",
					   "baseURL",
					   "product",
					   "orderValidity",
					   "signatureHash",
					   "skipApproval",
					   "paymentMethod",
					   "validation",
					   "caFile",
					   "pollInterval",
					   "timeout",
					   NULL};
	struct digicert *dc = xcalloc(1, sizeof(*dc));
	char *what = xasprintf("issuers.%s", name);
	const struct ynode *v;
	size_t before = d->n;
	const char *s;

	pthread_mutex_init(&dc->mu, NULL);
	pthread_mutex_init(&dc->file_mu, NULL);
	dc->name = xstrdup(name);
	dc->base_url = xstrdup(DIGICERT_US_URL);
	dc->product = xstrdup("ssl_dv_geotrust");
	dc->signature_hash = xstrdup("sha256");
	dc->validity_years = 1;
	dc->skip_approval = 1;
	dc->poll_min = 30;
	dc->poll_max = 3600;
	dc->timeout = 60;
	ynode_check_keys(node, keys, file, what, d);
	if ((v = ynode_get(node, "apiKey")))
		config_parse_cred(v, file, "apiKey", 0, d, &dc->api_key);
	else
		diags_add(d, file, node->line, node->col,
			  "%s: apiKey is required ({env: DIGICERT_API_KEY} or {file: PATH})", what);
	if ((v = ynode_get(node, "baseURL")))
		dc_parse_base_url(dc, v, file, d);
	if ((v = ynode_get(node, "product")))
		one_of(v, file, "product", dc_products,
		       "ssl_dv_geotrust, ssl_dv_rapidssl, wildcard_dv_geotrust, wildcard_dv_rapidssl, "
		       "cloud_dv_geotrust, "
		       "ssl_dv_geotrust_flex",
		       d, &dc->product);
	if ((v = ynode_get(node, "orderValidity")))
		dc_parse_validity(dc, v, file, d);
	if ((v = ynode_get(node, "signatureHash")))
		one_of(v, file, "signatureHash", dc_hashes, "sha256, sha384, sha512", d, &dc->signature_hash);
	if ((v = ynode_get(node, "skipApproval")))
		ynode_bool(v, file, "skipApproval", d, &dc->skip_approval);
	if ((v = ynode_get(node, "paymentMethod")))
		one_of(v, file, "paymentMethod", dc_payments, "balance, card, profile, wire_transfer", d,
		       &dc->payment_method);
	if ((v = ynode_get(node, "validation")))
		dc_parse_validation(dc, v, file, d);
	dc_check_method_config(dc, v ? v : node, file, what, d);
	if ((v = ynode_get(node, "caFile")) && !ynode_string(v, file, "caFile", d, &s))
		dc->ca_file = config_resolve_path(file, s);
	if ((v = ynode_get(node, "pollInterval")))
		ynode_duration(v, file, "pollInterval", d, &dc->poll_min);
	if ((v = ynode_get(node, "timeout")))
		ynode_duration(v, file, "timeout", d, &dc->timeout);
	free(what);
	if (d->n > before) {
		digicert_config_free(dc);
		return CS_EINVALID;
	}
	*priv = dc;
	return 0;
}

void digicert_config_check(const struct config *cfg, const struct issuer *is, const char *file, struct diags *d)
{
	const struct digicert *dc = is->priv;
	const struct issuer *dns;

	if (!dc->dns_issuer)
		return;
	dns = config_issuer(cfg, dc->dns_issuer);
	if (!dns)
		diags_add(d, file, dc->dns_line, dc->dns_col, "issuers.%s.validation.dns: no issuer named \"%s\"",
			  is->name, dc->dns_issuer);
	else if (!dns->ops->dns)
		diags_add(
			d, file, dc->dns_line, dc->dns_col,
			"issuers.%s.validation.dns: issuer \"%s\" (type %s) cannot place DNS records; name a dnsimple "
			"or rfc2136 issuer",
			is->name, dc->dns_issuer, dns->ops->type);
}

/* ---------- manifests ---------- */

enum digicert_method digicert_spec_method(const struct digicert *dc, const struct cert_spec *s)
{
	enum digicert_method m = dc->method;

	if (s && s->validation)
		dc_parse_method(s->validation, &m);
	return m;
}

void digicert_check_spec(const struct issuer *is, const struct cert_spec *s, struct diags *d)
{
	const struct digicert *dc = is->priv;
	enum digicert_method m = digicert_spec_method(dc, s);
	int wildcard = 0;

	for (size_t i = 0; i < s->n_dns; i++)
		wildcard |= !strncmp(s->dns_names[i], "*.", 2);
	if (wildcard && m == DC_HTTP)
		diags_add(d, s->file, s->line, s->col,
			  "certificate \"%s\": wildcard names need DNS validation (dns-txt-token); http-token proves "
			  "only "
			  "exact host names (issuer %s)",
			  s->name, is->name);
	if (wildcard && !strncmp(dc->product, "ssl_dv_", 7) && strcmp(dc->product, "ssl_dv_geotrust_flex"))
		diags_add(d, s->file, s->line, s->col,
			  "certificate \"%s\": product %s has no wildcards (use wildcard_dv_*, cloud_dv_geotrust or "
			  "ssl_dv_geotrust_flex) (issuer %s)",
			  s->name, dc->product, is->name);
	if (m == DC_DNS_TXT && !dc->dns_issuer)
		diags_add(d, s->file, s->line, s->col,
			  "certificate \"%s\": dns-txt-token needs issuers.%s.validation.dns in the config", s->name,
			  is->name);
	if (m == DC_HTTP && !dc->webroot)
		diags_add(d, s->file, s->line, s->col,
			  "certificate \"%s\": http-token needs issuers.%s.validation.webroot in the config", s->name,
			  is->name);
}
