/* What an ACME server answers, parsed from untrusted JSON with every field type-checked and bounded. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/util.h"
#include "acme_wire.h"

#define ACME_MAX_STATUS 32

int acme_wire_fail(const struct acme_wire *w, const char *fmt, ...)
{
	char what[512], path[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	acme_url_path(w->url, path, sizeof(path));
	return cs_error(CS_ETRANSIENT, "issuer %s: %s %s: malformed answer from the ACME server: %s", w->issuer, w->op,
			path, what);
}

void acme_url_path(const char *url, char *out, size_t n)
{
	const char *p = url ? strstr(url, "://") : NULL;
	size_t len;

	p = p ? strchr(p + 3, '/') : url;
	if (!p)
		p = "/";
	len = strcspn(p, "?#");
	snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), p);
}

/* 1 when s is a bounded http(s) URL without spaces or control characters. */
static int url_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > ACME_MAX_URL || (strncmp(s, "https://", 8) && strncmp(s, "http://", 7)))
		return 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

char *acme_url_resolve(const char *base, const char *ref)
{
	const char *host, *slash;
	char *out;

	if (!ref || !*ref)
		return NULL;
	if (ref[0] == '/' && ref[1] != '/' && base && (host = strstr(base, "://"))) {
		slash = strchr(host + 3, '/');
		out = xasprintf("%.*s%s", (int)(slash ? (size_t)(slash - base) : strlen(base)), base, ref);
	} else {
		out = xstrdup(ref);
	}
	if (!url_ok(out)) {
		free(out);
		return NULL;
	}
	return out;
}

/* ---------- Link headers (RFC 8288) ---------- */

/* 1 when the space-separated rel list (quotes removed) holds rel. */
static int rel_has(const char *list, size_t n, const char *rel)
{
	size_t rl = strlen(rel), i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && list[j] != ' ')
			j++;
		if (j - i == rl && !strncasecmp(list + i, rel, rl))
			return 1;
		i = j + 1;
	}
	return 0;
}

/* Parses the parameters after "<…>" up to the entry's end (a comma outside quotes); *end gets that end. */
static int link_params_have(const char *p, const char *rel, const char **end)
{
	int found = 0;

	while (*p && *p != ',') {
		const char *name, *val;
		size_t nlen, vlen;

		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		name = p;
		while (*p && *p != '=' && *p != ';' && *p != ',')
			p++;
		nlen = (size_t)(p - name);
		while (nlen && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
			nlen--;
		if (*p != '=')
			continue;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '"') {
			val = ++p;
			while (*p && *p != '"')
				p += p[0] == '\\' && p[1] ? 2 : 1;
			vlen = (size_t)(p - val);
			if (*p == '"')
				p++;
		} else {
			val = p;
			while (*p && *p != ';' && *p != ',')
				p++;
			vlen = (size_t)(p - val);
			while (vlen && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
				vlen--;
		}
		if (nlen == 3 && !strncasecmp(name, "rel", 3) && rel_has(val, vlen, rel))
			found = 1;
		while (*p == ' ' || *p == '\t')
			p++;
	}
	*end = p;
	return found;
}

size_t acme_links(const struct http_response *res, const char *base, const char *rel, char **out, size_t max)
{
	const char *v;
	size_t got = 0, seen = 0;

	for (size_t h = 0; (v = http_response_header(res, "link", h)) && got < max; h++) {
		const char *p = v;

		while (*p && got < max && seen++ < ACME_MAX_LINKS) {
			const char *start, *close, *end;
			char *target, *url;

			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			if (*p != '<' || !(close = strchr(p, '>')))
				break; /* not a Link value: stop reading this header */
			start = p + 1;
			if (!link_params_have(close + 1, rel, &end)) {
				p = end;
				continue;
			}
			p = end;
			target = xstrndup(start, (size_t)(close - start));
			if ((url = acme_url_resolve(base, target)))
				out[got++] = url;
			free(target);
		}
	}
	return got;
}

/* ---------- typed, bounded field reads ---------- */

/* A string member: absent is *out = NULL (an error when required); longer than max or not a string is an error. */
static int get_str(const struct acme_wire *w, const json_t *o, const char *key, int required, size_t max, char **out)
{
	const json_t *v = json_object_get(o, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return required ? acme_wire_fail(w, "no \"%s\"", key) : 0;
	if (!json_is_string(v))
		return acme_wire_fail(w, "\"%s\" is not a string", key);
	if (json_string_length(v) > max)
		return acme_wire_fail(w, "\"%s\" is longer than %zu bytes", key, max);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return acme_wire_fail(w, "\"%s\" holds a NUL byte", key);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int get_url(const struct acme_wire *w, const json_t *o, const char *key, int required, char **out)
{
	int rc = get_str(w, o, key, required, ACME_MAX_URL, out);

	if (!rc && *out && !url_ok(*out)) {
		free(*out);
		*out = NULL;
		return acme_wire_fail(w, "\"%s\" is not an http(s) URL", key);
	}
	return rc;
}

/* A status member that must be one of allowed. */
static int get_status(const struct acme_wire *w, const json_t *o, const char *const *allowed, char **out)
{
	int rc = get_str(w, o, "status", 1, ACME_MAX_STATUS, out);

	for (size_t i = 0; !rc && allowed[i]; i++)
		if (!strcmp(*out, allowed[i]))
			return 0;
	if (!rc) {
		rc = acme_wire_fail(w, "unknown status \"%s\"", *out);
		free(*out);
		*out = NULL;
	}
	return rc;
}

static int get_time(const struct acme_wire *w, const json_t *o, const char *key, int64_t *out)
{
	char *s = NULL;
	int rc = get_str(w, o, key, 0, 64, &s);

	*out = 0;
	if (!rc && s && util_parse_time(s, out))
		rc = acme_wire_fail(w, "\"%s\" is not an RFC 3339 time", key);
	free(s);
	return rc;
}

/* An optional problem member (an order's or a challenge's "error"). */
static int get_problem(const struct acme_wire *w, const json_t *o, const char *key, struct acme_problem *out)
{
	const json_t *v = json_object_get(o, key);
	char *text;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!v || json_is_null(v))
		return 0;
	text = json_dumps(v, JSON_COMPACT);
	rc = text ? acme_problem_parse(text, strlen(text), 0, out) : CS_EINVALID;
	free(text);
	return rc ? acme_wire_fail(w, "\"%s\" is not a problem document", key) : 0;
}

/* An array member of URLs (at most max). */
static int get_urls(const struct acme_wire *w, const json_t *o, const char *key, size_t max, char ***out, size_t *n)
{
	const json_t *a = json_object_get(o, key), *v;
	size_t i;

	*out = NULL;
	*n = 0;
	if (!json_is_array(a))
		return acme_wire_fail(w, "\"%s\" is not a list", key);
	if (json_array_size(a) > max)
		return acme_wire_fail(w, "\"%s\" lists %zu entries, more than %zu", key, json_array_size(a), max);
	*out = xcalloc(json_array_size(a) + 1, sizeof(**out));
	json_array_foreach (a, i, v) {
		if (!json_is_string(v) || !url_ok(json_string_value(v)))
			return acme_wire_fail(w, "\"%s\"[%zu] is not an http(s) URL", key, i);
		(*out)[(*n)++] = xstrdup(json_string_value(v));
	}
	return 0;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Loads body as a JSON object. */
static int load_object(const struct acme_wire *w, const char *body, size_t len, json_t **out)
{
	json_error_t je;

	*out = body && len ? json_loadb(body, len, 0, &je) : NULL;
	if (json_is_object(*out))
		return 0;
	json_decref(*out);
	*out = NULL;
	return acme_wire_fail(w, "not a JSON object");
}

/* ---------- directory ---------- */

static int directory_meta(const struct acme_wire *w, const json_t *meta, struct acme_directory *d)
{
	const json_t *v, *item, *eab = json_object_get(meta, "externalAccountRequired");
	const char *name;
	size_t i;
	int rc;

	if (!meta)
		return 0;
	if (!json_is_object(meta))
		return acme_wire_fail(w, "\"meta\" is not an object");
	if ((rc = get_str(w, meta, "termsOfService", 0, ACME_MAX_URL, &d->terms_of_service)))
		return rc;
	if (eab && !json_is_boolean(eab))
		return acme_wire_fail(w, "\"meta.externalAccountRequired\" is not a boolean");
	d->eab_required = json_is_true(eab);
	if ((v = json_object_get(meta, "profiles")) && !json_is_object(v))
		return acme_wire_fail(w, "\"meta.profiles\" is not an object");
	if (json_object_size(v)) {
		d->profiles = xcalloc(ACME_MAX_META, sizeof(*d->profiles));
		json_object_foreach ((json_t *)v, name, item) {
			if (d->n_profiles < ACME_MAX_META && strlen(name) <= 64)
				d->profiles[d->n_profiles++] = xstrdup(name);
		}
	}
	if ((v = json_object_get(meta, "caaIdentities")) && !json_is_array(v))
		return acme_wire_fail(w, "\"meta.caaIdentities\" is not a list");
	if (json_array_size(v)) {
		d->caa_identities = xcalloc(ACME_MAX_META, sizeof(*d->caa_identities));
		json_array_foreach (v, i, item) {
			if (d->n_caa_identities < ACME_MAX_META && json_is_string(item) &&
			    json_string_length(item) <= ACME_MAX_IDENT)
				d->caa_identities[d->n_caa_identities++] = xstrdup(json_string_value(item));
		}
	}
	return 0;
}

int acme_directory_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_directory *out)
{
	struct acme_directory d;
	json_t *j;
	int rc;

	memset(&d, 0, sizeof(d));
	if ((rc = load_object(w, body, len, &j)))
		return rc;
	if ((rc = get_url(w, j, "newNonce", 1, &d.new_nonce)) ||
	    (rc = get_url(w, j, "newAccount", 1, &d.new_account)) ||
	    (rc = get_url(w, j, "newOrder", 1, &d.new_order)) ||
	    (rc = get_url(w, j, "revokeCert", 0, &d.revoke_cert)) ||
	    (rc = get_url(w, j, "keyChange", 0, &d.key_change)) ||
	    (rc = get_url(w, j, "renewalInfo", 0, &d.renewal_info)) ||
	    (rc = directory_meta(w, json_object_get(j, "meta"), &d))) {
		acme_directory_free(&d);
		goto out;
	}
	*out = d;
out:
	json_decref(j);
	return rc;
}

void acme_directory_free(struct acme_directory *d)
{
	free(d->new_nonce);
	free(d->new_account);
	free(d->new_order);
	free(d->revoke_cert);
	free(d->key_change);
	free(d->renewal_info);
	free(d->terms_of_service);
	free_strv(d->profiles, d->n_profiles);
	free_strv(d->caa_identities, d->n_caa_identities);
	memset(d, 0, sizeof(*d));
}

/* ---------- account ---------- */

int acme_account_parse(const struct acme_wire *w, const char *body, size_t len, char **orders)
{
	static const char *const st[] = {"valid", "deactivated", "revoked", NULL};
	char *status = NULL;
	json_t *j;
	int rc;

	*orders = NULL;
	if ((rc = load_object(w, body, len, &j)))
		return rc;
	if ((rc = get_status(w, j, st, &status)) || (rc = get_url(w, j, "orders", 0, orders)))
		goto out;
	if (strcmp(status, "valid"))
		rc = provider_fail(
			STATE_FAIL_CONFIG,
			cs_error(CS_EAUTH,
				 "issuer %s: the ACME account of this key is %s: the CA will not use it "
				 "again; remove the issuer's account key from the key store to register anew",
				 w->issuer, status));
out:
	if (rc) {
		free(*orders);
		*orders = NULL;
	}
	free(status);
	json_decref(j);
	return rc;
}

/* ---------- orders ---------- */

static int order_identifiers(const struct acme_wire *w, const json_t *o, struct acme_order *out)
{
	const json_t *a = json_object_get(o, "identifiers"), *v;
	size_t i;

	if (!json_is_array(a))
		return acme_wire_fail(w, "\"identifiers\" is not a list");
	if (json_array_size(a) > ACME_MAX_AUTHZ)
		return acme_wire_fail(w, "%zu identifiers, more than %d", json_array_size(a), ACME_MAX_AUTHZ);
	out->identifiers = xcalloc(json_array_size(a) + 1, sizeof(*out->identifiers));
	json_array_foreach (a, i, v) {
		const json_t *val = json_object_get(v, "value");

		if (!json_is_string(val) || !json_string_length(val) || json_string_length(val) > ACME_MAX_IDENT ||
		    strlen(json_string_value(val)) != json_string_length(val))
			return acme_wire_fail(w, "identifiers[%zu] has no usable \"value\"", i);
		out->identifiers[out->n_identifiers++] = xstrdup(json_string_value(val));
	}
	return 0;
}

int acme_order_payload(const char *issuer, char *const *names, size_t n, const char *profile, const char *replaces,
		       char **out)
{
	struct buf b = BUF_INIT;

	if (!n || n > ACME_MAX_AUTHZ)
		return cs_error(CS_EINVALID, "issuer %s: an ACME order holds 1 to %d names, not %zu", issuer,
				ACME_MAX_AUTHZ, n);
	buf_puts(&b, "{\"identifiers\":[");
	for (size_t i = 0; i < n; i++) {
		if (!names[i][0] || strlen(names[i]) > ACME_MAX_IDENT) {
			buf_free(&b);
			return cs_error(CS_EINVALID, "issuer %s: \"%.80s\" is not a DNS name an ACME order can hold",
					issuer, names[i]);
		}
		buf_puts(&b, i ? ",{\"type\":\"dns\",\"value\":" : "{\"type\":\"dns\",\"value\":");
		buf_json_str(&b, names[i]);
		buf_puts(&b, "}");
	}
	buf_puts(&b, "]");
	if (profile) {
		buf_puts(&b, ",\"profile\":");
		buf_json_str(&b, profile);
	}
	if (replaces) {
		buf_puts(&b, ",\"replaces\":");
		buf_json_str(&b, replaces);
	}
	buf_puts(&b, "}");
	*out = buf_detach(&b);
	return 0;
}

int acme_order_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_order *out)
{
	static const char *const st[] = {"pending", "ready", "processing", "valid", "invalid", NULL};
	json_t *j;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = load_object(w, body, len, &j)))
		return rc;
	if ((rc = get_status(w, j, st, &out->status)) || (rc = get_time(w, j, "expires", &out->expires)) ||
	    (rc = order_identifiers(w, j, out)) ||
	    (rc = get_urls(w, j, "authorizations", ACME_MAX_AUTHZ, &out->authorizations, &out->n_authorizations)) ||
	    (rc = get_url(w, j, "finalize", 1, &out->finalize)) ||
	    (rc = get_url(w, j, "certificate", 0, &out->certificate)) ||
	    (rc = get_str(w, j, "replaces", 0, 512, &out->replaces)) ||
	    (rc = get_str(w, j, "profile", 0, 64, &out->profile)) || (rc = get_problem(w, j, "error", &out->error)))
		goto out;
	if (!strcmp(out->status, "valid") && !out->certificate)
		rc = acme_wire_fail(w, "the order is valid but has no \"certificate\" URL");
out:
	if (rc)
		acme_order_free(out);
	json_decref(j);
	return rc;
}

void acme_order_free(struct acme_order *o)
{
	if (!o)
		return;
	free(o->url);
	free(o->status);
	free_strv(o->identifiers, o->n_identifiers);
	free_strv(o->authorizations, o->n_authorizations);
	free(o->finalize);
	free(o->certificate);
	free(o->replaces);
	free(o->profile);
	acme_problem_free(&o->error);
	memset(o, 0, sizeof(*o));
}

/* ---------- authorizations and challenges ---------- */

/* A token is base64url (RFC 8555 §8.3: at least 128 bits of entropy): nothing that could leave a web root. */
static int token_ok(const char *t)
{
	size_t n = strlen(t);

	if (n < 16 || n > ACME_MAX_TOKEN)
		return 0;
	return strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

static int challenge_fill(const struct acme_wire *w, const json_t *o, struct acme_challenge *c)
{
	static const char *const st[] = {"pending", "processing", "valid", "invalid", NULL};
	int rc;

	memset(c, 0, sizeof(*c));
	if (!json_is_object(o))
		return acme_wire_fail(w, "a challenge is not an object");
	if ((rc = get_str(w, o, "type", 1, 64, &c->type)) || (rc = get_url(w, o, "url", 1, &c->url)) ||
	    (rc = get_status(w, o, st, &c->status)) || (rc = get_str(w, o, "token", 0, ACME_MAX_TOKEN, &c->token)) ||
	    (rc = get_problem(w, o, "error", &c->error)))
		return rc;
	if (c->token && !token_ok(c->token))
		return acme_wire_fail(w, "the %s challenge's token is not base64url of 16 to %d characters", c->type,
				      ACME_MAX_TOKEN);
	return 0;
}

int acme_challenge_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_challenge *out)
{
	json_t *j;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = load_object(w, body, len, &j)))
		return rc;
	if ((rc = challenge_fill(w, j, out)))
		acme_challenge_free(out);
	json_decref(j);
	return rc;
}

void acme_challenge_free(struct acme_challenge *c)
{
	if (!c)
		return;
	free(c->type);
	free(c->url);
	free(c->token);
	free(c->status);
	acme_problem_free(&c->error);
	memset(c, 0, sizeof(*c));
}

static int authz_challenges(const struct acme_wire *w, const json_t *o, struct acme_authz *out)
{
	const json_t *a = json_object_get(o, "challenges"), *v;
	size_t i;
	int rc;

	if (!json_is_array(a))
		return acme_wire_fail(w, "\"challenges\" is not a list");
	if (json_array_size(a) > ACME_MAX_CHALLENGES)
		return acme_wire_fail(w, "%zu challenges, more than %d", json_array_size(a), ACME_MAX_CHALLENGES);
	out->challenges = xcalloc(json_array_size(a) + 1, sizeof(*out->challenges));
	json_array_foreach (a, i, v) {
		rc = challenge_fill(w, v, &out->challenges[out->n_challenges]);
		out->n_challenges++; /* freed with the authz, even half-filled */
		if (rc)
			return rc;
	}
	return 0;
}

int acme_authz_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_authz *out)
{
	static const char *const st[] = {"pending", "valid", "invalid", "deactivated", "expired", "revoked", NULL};
	const json_t *ident, *wc;
	char *type = NULL;
	json_t *j;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = load_object(w, body, len, &j)))
		return rc;
	ident = json_object_get(j, "identifier");
	wc = json_object_get(j, "wildcard");
	if (!json_is_object(ident)) {
		rc = acme_wire_fail(w, "no \"identifier\" object");
		goto out;
	}
	if ((rc = get_str(w, ident, "type", 1, 32, &type)) ||
	    (rc = get_str(w, ident, "value", 1, ACME_MAX_IDENT, &out->identifier)) ||
	    (rc = get_status(w, j, st, &out->status)) || (rc = get_time(w, j, "expires", &out->expires)) ||
	    (rc = authz_challenges(w, j, out)))
		goto out;
	if (!*out->identifier || strcmp(type, "dns")) {
		rc = acme_wire_fail(w, "the identifier is not a dns name");
		goto out;
	}
	if (wc && !json_is_boolean(wc)) {
		rc = acme_wire_fail(w, "\"wildcard\" is not a boolean");
		goto out;
	}
	out->wildcard = json_is_true(wc);
out:
	if (rc)
		acme_authz_free(out);
	free(type);
	json_decref(j);
	return rc;
}

void acme_authz_free(struct acme_authz *a)
{
	if (!a)
		return;
	free(a->identifier);
	free(a->status);
	for (size_t i = 0; i < a->n_challenges; i++)
		acme_challenge_free(&a->challenges[i]);
	free(a->challenges);
	memset(a, 0, sizeof(*a));
}

/* ---------- orders list ---------- */

int acme_orders_page_parse(const struct acme_wire *w, const char *body, size_t len, char ***urls, size_t *n)
{
	char **page = NULL;
	size_t n_page = 0;
	json_t *j;
	int rc;

	if ((rc = load_object(w, body, len, &j)))
		return rc;
	if ((rc = get_urls(w, j, "orders", ACME_MAX_ORDER_URLS, &page, &n_page)))
		goto out;
	if (*n + n_page > ACME_MAX_ORDER_URLS) {
		rc = acme_wire_fail(w, "the orders list holds more than %d orders", ACME_MAX_ORDER_URLS);
		goto out;
	}
	*urls = xrealloc(*urls, (*n + n_page + 1) * sizeof(**urls));
	memcpy(*urls + *n, page, n_page * sizeof(*page));
	*n += n_page;
	n_page = 0;
out:
	free_strv(page, n_page);
	json_decref(j);
	return rc;
}

/* ---------- renewal information ---------- */

int acme_renewal_info_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_renewal_info *out)
{
	const json_t *win;
	json_t *j;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = load_object(w, body, len, &j)))
		return rc;
	win = json_object_get(j, "suggestedWindow");
	if (!json_is_object(win)) {
		rc = acme_wire_fail(w, "no \"suggestedWindow\" object");
		goto out;
	}
	if ((rc = get_time(w, win, "start", &out->start)) || (rc = get_time(w, win, "end", &out->end)) ||
	    (rc = get_url(w, j, "explanationURL", 0, &out->explanation)))
		goto out;
	if (!out->start || !out->end || out->end <= out->start)
		rc = acme_wire_fail(w, "the suggested window has no start and end, or ends before it starts");
out:
	if (rc)
		acme_renewal_info_free(out);
	json_decref(j);
	return rc;
}

void acme_renewal_info_free(struct acme_renewal_info *r)
{
	if (!r)
		return;
	free(r->explanation);
	memset(r, 0, sizeof(*r));
}

int64_t acme_retry_after_clamp(int64_t retry_after, int64_t now)
{
	if (!retry_after)
		return now + ACME_ARI_DEFAULT_RETRY;
	if (retry_after < now + ACME_RETRY_AFTER_MIN)
		return now + ACME_RETRY_AFTER_MIN;
	if (retry_after > now + ACME_RETRY_AFTER_MAX)
		return now + ACME_RETRY_AFTER_MAX;
	return retry_after;
}
