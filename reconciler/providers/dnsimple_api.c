/* DNSimple API v2 calls: requests, envelopes, errors (../shared/api/dnsimple.md §1, §2, §5). */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "dnsimple.h"

#ifndef CERTSYNC_VERSION
#define CERTSYNC_VERSION "0.1.0"
#endif

void dnsimple_cert_clear(struct dnsimple_cert *c)
{
	free(c->state);
	free(c->name);
	free(c->common_name);
	for (size_t i = 0; i < c->n_alt; i++)
		free(c->alt[i]);
	free(c->alt);
	memset(c, 0, sizeof(*c));
}

/* ---------- session ---------- */

int dnsimple_session(struct dnsimple *d)
{
	struct http_client_opts ho;
	struct buf acc = BUF_INIT, tok = BUF_INIT;
	char what[160];
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	if (d->open)
		goto out;
	snprintf(what, sizeof(what), "issuer %s: account", d->name);
	if ((rc = config_cred_read(&d->account, what, &acc)))
		goto out;
	if (!acc.len || strspn(acc.data, "0123456789") != acc.len) {
		rc = cs_error(CS_EAUTH, "issuer %s: account must be the numeric DNSimple account id", d->name);
		goto out;
	}
	snprintf(what, sizeof(what), "issuer %s: token", d->name);
	if ((rc = config_cred_read(&d->token, what, &tok)))
		goto out;
	log_add_secret(tok.data);
	memset(&ho, 0, sizeof(ho));
	ho.user_agent = "certsync/" CERTSYNC_VERSION;
	ho.ca_file = d->ca_file;
	ho.timeout_ms = d->timeout * 1000;
	if ((rc = http_client_new(&ho, &d->http)))
		goto out;
	d->account_id = xstrdup(acc.data);
	d->auth = xasprintf("Authorization: Bearer %s", tok.data);
	d->open = 1;
out:
	pthread_mutex_unlock(&d->mu);
	buf_free(&acc);
	buf_wipe(&tok);
	/* a missing env var or file, a too-open file: fixed in the configuration, retried once it is */
	return rc ? provider_fail(STATE_FAIL_CONFIG, rc) : 0;
}

void dnsimple_session_end(struct dnsimple *d)
{
	pthread_mutex_lock(&d->mu);
	if (d->auth)
		crypto_wipe(d->auth, strlen(d->auth));
	free(d->auth);
	free(d->account_id);
	d->auth = d->account_id = NULL;
	http_client_free(d->http);
	d->http = NULL;
	for (size_t i = 0; i < d->n_lists; i++) {
		for (size_t k = 0; k < d->lists[i].n; k++)
			dnsimple_cert_clear(&d->lists[i].v[k]);
		free(d->lists[i].v);
		free(d->lists[i].domain);
	}
	free(d->lists);
	d->lists = NULL;
	d->n_lists = 0;
	for (size_t i = 0; i < d->n_acct_zones; i++)
		free(d->acct_zones[i]);
	free(d->acct_zones);
	d->acct_zones = NULL;
	d->n_acct_zones = 0;
	d->acct_zones_listed = 0;
	d->open = 0;
	pthread_mutex_unlock(&d->mu);
}

/* ---------- requests ---------- */

struct dnsimple_reply {
	long status;
	json_t *json; /* the whole body, NULL when empty */
	json_t *data; /* borrowed: json["data"] */
};

static void reply_free(struct dnsimple_reply *r)
{
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

/* One field's messages: an array of strings (or of {message} objects, batch), or a plain string. */
static void dnsimple_field_text(const char *field, const json_t *v, char *out, size_t n, int *fields)
{
	const char *sep = (*fields)++ ? "; " : ": ";
	size_t i;
	json_t *m;
	int first = 1;

	if (json_is_string(v)) {
		char *item = xasprintf("%s: %s", field, json_string_value(v));

		provider_text_append(out, n, sep, item);
		free(item);
		return;
	}
	json_array_foreach (v, i, m) {
		const char *text =
			json_is_string(m) ? json_string_value(m) : json_string_value(json_object_get(m, "message"));
		char *item;

		if (!text)
			continue;
		item = first ? xasprintf("%s: %s", field, text) : xstrdup(text);
		provider_text_append(out, n, first ? sep : ", ", item);
		free(item);
		first = 0;
	}
}

/* The error text of a DNSimple error body: the message, then every message of every field (§5.1). */
static void dnsimple_error_text_json(const json_t *j, char *out, size_t n)
{
	const char *msg = json_string_value(json_object_get(j, "message"));
	json_t *errs = json_object_get(j, "errors"), *v;
	const char *field;
	int fields = 0;

	out[0] = '\0';
	provider_text_append(out, n, "", msg ? msg : "no message");
	if (!json_is_object(errs))
		return;
	json_object_foreach (errs, field, v)
		dnsimple_field_text(field, v, out, n, &fields);
}

void dnsimple_error_text(const char *body, size_t len, char *out, size_t n)
{
	json_error_t je;
	json_t *j = body && len ? json_loadb(body, len, 0, &je) : NULL;

	if (json_is_object(j))
		dnsimple_error_text_json(j, out, n);
	else
		snprintf(out, n, "%s", len ? "the error body is not JSON" : "no error body");
	json_decref(j);
}

/*
 * Maps a non-2xx reply to a code and a message naming the issuer and the
 * operation. 412 (plan gating) and validation messages are quoted verbatim,
 * every field message of them. Codes: 401/403 CS_EAUTH (config), 404
 * CS_ENOTFOUND, 428/429/5xx CS_ETRANSIENT, other 4xx CS_EINVALID (rejected).
 */
static int dnsimple_fail(struct dnsimple *d, const char *op, const struct dnsimple_reply *r)
{
	char text[1024];
	int rc;

	if (r->json)
		dnsimple_error_text_json(r->json, text, sizeof(text));
	else
		snprintf(text, sizeof(text), "no error body");
	switch (r->status) {
	case 401:
		rc = cs_error(CS_EAUTH, "issuer %s: DNSimple refused the credentials (%s: HTTP 401 %s)", d->name, op,
			      text);
		break;
	case 403:
		rc = cs_error(CS_EAUTH, "issuer %s: the DNSimple token lacks a permission (%s: HTTP 403 %s)", d->name,
			      op, text);
		break;
	case 404: rc = cs_error(CS_ENOTFOUND, "issuer %s: %s: HTTP 404 %s", d->name, op, text); break;
	case 428:
	case 429: rc = cs_error(CS_ETRANSIENT, "issuer %s: %s: HTTP %ld %s", d->name, op, r->status, text); break;
	default:
		rc = cs_error(r->status >= 500 ? CS_ETRANSIENT : CS_EINVALID, "issuer %s: %s: HTTP %ld %s", d->name, op,
			      r->status, text);
		break;
	}
	return provider_http_fail_class(r->status, rc);
}

/*
 * One API call. path is relative to /v2/ (already formatted, no secrets).
 * Returns 0 with the reply for 2xx, the mapped error otherwise (then only
 * out->status is kept).
 */
static int dnsimple_call(struct dnsimple *d, const char *op, const char *method, const char *path, json_t *body,
			 enum http_retry retry, struct dnsimple_reply *out)
{
	struct http_request req;
	struct http_response res;
	char *url = xasprintf("%s/v2/%s", d->base_url, path);
	char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_error_t je;
	int rc;

	memset(out, 0, sizeof(*out));
	http_request_json(&req, op, method, url, d->auth, payload, retry);
	rc = http_do(d->http, &req, &res);
	out->status = res.status;
	if (rc) {
		if (rc == CS_ETRANSIENT || rc == CS_EINVALID)
			cs_error(rc, "issuer %s: %s", d->name, cs_errmsg());
		provider_http_fail_class(res.status, rc);
		goto out;
	}
	if (res.body.len) {
		out->json = json_loadb(res.body.data, res.body.len, 0, &je);
		if (!out->json && res.status >= 200 && res.status < 300) {
			rc = cs_error(CS_ETRANSIENT, "issuer %s: %s: HTTP %ld with a body that is not JSON (%s%s)",
				      d->name, op, res.status, http_is_html(&res) ? "HTML page; " : "", je.text);
			goto out;
		}
		out->data = json_object_get(out->json, "data");
	}
	if (res.status < 200 || res.status >= 300) {
		rc = dnsimple_fail(d, op, out);
		goto out;
	}
	if (res.status != 204 && res.body.len && !out->data) {
		rc = cs_error(CS_ETRANSIENT, "issuer %s: %s: response has no \"data\"", d->name, op);
		goto out;
	}
out:
	if (rc && (res.status || rc == CS_ETRANSIENT))
		provider_log_failure(d->name, res.request_id, res.status, 0);
	if (rc) {
		/* callers only look at the status of a failed call */
		json_decref(out->json);
		out->json = out->data = NULL;
	}
	http_response_free(&res);
	free(payload);
	free(url);
	return rc;
}

/* ---------- parsing ---------- */

static int dnsimple_time(const json_t *v, int64_t *out)
{
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return CS_EINVALID;
	return util_parse_time(json_string_value(v), out) ? CS_EINVALID : 0;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *lower_dup(const char *s)
{
	char *p = xstrdup(s);

	for (char *q = p; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return p;
}

int dnsimple_parse_cert(const void *json_obj, const char *what, struct dnsimple_cert *out)
{
	const json_t *o = json_obj, *alt, *id = json_object_get(o, "id");
	const char *state = json_string_value(json_object_get(o, "state"));
	const char *cn = json_string_value(json_object_get(o, "common_name"));
	const char *name = json_string_value(json_object_get(o, "name"));
	json_t *v;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(o) || !json_is_integer(id) || !state)
		return cs_error(CS_ETRANSIENT, "%s: certificate without an integer id or a state", what);
	out->id = json_integer_value(id);
	out->state = xstrdup(state);
	out->name = xstrdup(name ? name : "");
	out->common_name = lower_dup(cn ? cn : "");
	out->auto_renew = json_is_true(json_object_get(o, "auto_renew"));
	if (dnsimple_time(json_object_get(o, "expires_at"), &out->expires_at)) {
		dnsimple_cert_clear(out);
		return cs_error(CS_ETRANSIENT, "%s: certificate %lld has a bad expires_at", what,
				(long long)json_integer_value(id));
	}
	alt = json_object_get(o, "alternate_names");
	if (json_is_array(alt)) {
		out->alt = xcalloc(json_array_size(alt) + 1, sizeof(char *));
		json_array_foreach (alt, i, v) {
			if (json_is_string(v))
				out->alt[out->n_alt++] = lower_dup(json_string_value(v));
		}
		qsort(out->alt, out->n_alt, sizeof(char *), str_cmp);
	}
	return 0;
}

/* ---------- certificates ---------- */

static struct dnsimple_list *dnsimple_list_slot(struct dnsimple *d, const char *domain)
{
	for (size_t i = 0; i < d->n_lists; i++)
		if (!strcmp(d->lists[i].domain, domain))
			return &d->lists[i];
	d->lists = xrealloc(d->lists, (d->n_lists + 1) * sizeof(*d->lists));
	memset(&d->lists[d->n_lists], 0, sizeof(*d->lists));
	d->lists[d->n_lists].domain = xstrdup(domain);
	return &d->lists[d->n_lists++];
}

static int dnsimple_fetch_list(struct dnsimple *d, const char *domain, struct dnsimple_list *l)
{
	size_t cap = 0;
	int rc = 0;

	for (long page = 1; page <= DNSIMPLE_MAX_PAGES; page++) {
		struct dnsimple_reply r;
		char *path = xasprintf("%s/domains/%s/certificates?sort=id:desc&per_page=100&page=%ld", d->account_id,
				       domain, page);
		json_t *pg, *v;
		long long total_pages;
		size_t i;

		rc = dnsimple_call(d, "dnsimple listCertificates", "GET", path, NULL, HTTP_RETRY_SAFE, &r);
		free(path);
		if (rc)
			return rc;
		if (!json_is_array(r.data)) {
			reply_free(&r);
			return cs_error(CS_ETRANSIENT, "issuer %s: listCertificates: \"data\" is not a list", d->name);
		}
		json_array_foreach (r.data, i, v) {
			util_grow(&l->v, &cap, l->n + 1, sizeof(*l->v));
			if ((rc = dnsimple_parse_cert(v, "listCertificates", &l->v[l->n]))) {
				reply_free(&r);
				return rc;
			}
			l->n++;
		}
		pg = json_object_get(r.json, "pagination");
		/* No pagination object: a single page (§5.3). */
		total_pages = json_is_object(pg) ? json_integer_value(json_object_get(pg, "total_pages")) : 0;
		reply_free(&r);
		if (page >= total_pages)
			break;
	}
	return 0;
}

void dnsimple_list_clear(struct dnsimple_list *l)
{
	for (size_t k = 0; k < l->n; k++)
		dnsimple_cert_clear(&l->v[k]);
	free(l->v);
	free(l->domain);
	memset(l, 0, sizeof(*l));
}

static void dnsimple_cert_copy(const struct dnsimple_cert *c, struct dnsimple_cert *out)
{
	*out = *c;
	out->state = xstrdup(c->state);
	out->name = xstrdup(c->name);
	out->common_name = xstrdup(c->common_name);
	out->alt = xcalloc(c->n_alt + 1, sizeof(char *));
	for (size_t i = 0; i < c->n_alt; i++)
		out->alt[i] = xstrdup(c->alt[i]);
}

/* Drops the cached certificates of l (under d->mu). */
static void dnsimple_list_empty(struct dnsimple_list *l)
{
	for (size_t k = 0; k < l->n; k++)
		dnsimple_cert_clear(&l->v[k]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int dnsimple_list_certs(struct dnsimple *d, const char *domain, const struct dnsimple_order *o, int fresh,
			struct dnsimple_list *out)
{
	struct dnsimple_list *l;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&d->mu);
	l = dnsimple_list_slot(d, domain);
	if (fresh || l->stale || !l->v) {
		dnsimple_list_empty(l);
		l->stale = 0;
		rc = dnsimple_fetch_list(d, domain, l);
		if (!rc && !l->v)
			l->v = xcalloc(1, sizeof(*l->v)); /* fetched, and empty */
	}
	if (!rc) {
		out->domain = xstrdup(domain);
		out->v = xcalloc(l->n + 1, sizeof(*out->v));
		for (size_t k = 0; k < l->n; k++)
			if (!o || dnsimple_matches(&l->v[k], o))
				dnsimple_cert_copy(&l->v[k], &out->v[out->n++]);
	} else {
		dnsimple_list_empty(l); /* a half-fetched list is not a cache: the next caller fetches again */
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

void dnsimple_list_bought(struct dnsimple *d, const struct dnsimple_order *o, int ok, long long id)
{
	struct dnsimple_list *l;
	struct dnsimple_cert *c;

	pthread_mutex_lock(&d->mu);
	l = dnsimple_list_slot(d, o->domain);
	if (!ok || !l->v) {
		l->stale = 1;
		goto out;
	}
	/* Newest first, as DNSimple lists them. */
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	memmove(&l->v[1], &l->v[0], l->n * sizeof(*l->v));
	l->n++;
	c = &l->v[0];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->state = xstrdup("new");
	c->name = xstrdup(o->name);
	c->common_name = xstrdup(o->common_name);
	c->alt = xcalloc(o->n_alt + 1, sizeof(char *));
	for (size_t i = 0; i < o->n_alt; i++)
		c->alt[i] = xstrdup(o->alt[i]);
	c->n_alt = o->n_alt;
out:
	pthread_mutex_unlock(&d->mu);
}

pthread_mutex_t *dnsimple_order_lock(struct dnsimple *d, const struct dnsimple_order *o)
{
	uint32_t h = 2166136261u; /* FNV-1a over what dnsimple_matches compares */

	for (const char *p = o->common_name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (size_t i = 0; i < o->n_alt; i++) {
		h = (h ^ 0xffu) * 16777619u;
		for (const char *p = o->alt[i]; *p; p++)
			h = (h ^ (unsigned char)*p) * 16777619u;
	}
	return &d->buy_locks[h % DNSIMPLE_BUY_LOCKS];
}

int dnsimple_get_cert(struct dnsimple *d, const char *domain, long long id, struct dnsimple_cert *out)
{
	struct dnsimple_reply r;
	char *path = xasprintf("%s/domains/%s/certificates/%lld", d->account_id, domain, id);
	int rc = dnsimple_call(d, "dnsimple getCertificate", "GET", path, NULL, HTTP_RETRY_SAFE, &r);

	if (!rc)
		rc = dnsimple_parse_cert(r.data, "getCertificate", out);
	reply_free(&r);
	free(path);
	return rc;
}

static json_t *dnsimple_names_json(const struct dnsimple_order *o)
{
	json_t *a = json_array();

	for (size_t i = 0; i < o->n_alt; i++)
		json_array_append_new(a, json_string(o->alt[i]));
	return a;
}

int dnsimple_purchase(struct dnsimple *d, const struct dnsimple_order *o, int auto_renew, long long *cert_id)
{
	struct dnsimple_reply r;
	json_t *body = json_object(), *cid;
	char *path = xasprintf("%s/domains/%s/certificates/letsencrypt", d->account_id, o->domain);
	int rc;

	/* name is always sent ("" included); contact_id never (§6.1). */
	json_object_set_new(body, "name", json_string(o->name));
	json_object_set_new(body, "alternate_names", dnsimple_names_json(o));
	json_object_set_new(body, "auto_renew", json_boolean(auto_renew));
	json_object_set_new(body, "signature_algorithm", json_string(d->sig_alg));
	rc = dnsimple_call(d, "dnsimple purchaseLetsencryptCertificate", "POST", path, body, HTTP_RETRY_NEVER, &r);
	if (!rc) {
		cid = json_object_get(r.data, "certificate_id");
		if (!json_is_integer(cid))
			cid = json_object_get(r.data, "id");
		if (json_is_integer(cid))
			*cert_id = json_integer_value(cid);
		else
			rc = cs_error(CS_ETRANSIENT,
				      "issuer %s: purchaseLetsencryptCertificate: no certificate_id in the response",
				      d->name);
	}
	reply_free(&r);
	json_decref(body);
	free(path);
	return rc;
}

int dnsimple_issue(struct dnsimple *d, const char *domain, long long id, struct dnsimple_cert *out)
{
	struct dnsimple_reply r;
	json_t *body = json_object();
	char *path = xasprintf("%s/domains/%s/certificates/letsencrypt/%lld/issue", d->account_id, domain, id);
	int rc = dnsimple_call(d, "dnsimple issueLetsencryptCertificate", "POST", path, body, HTTP_RETRY_NEVER, &r);

	if (!rc)
		rc = dnsimple_parse_cert(r.data, "issueLetsencryptCertificate", out);
	reply_free(&r);
	json_decref(body);
	free(path);
	return rc;
}

int dnsimple_renew_purchase(struct dnsimple *d, const char *domain, long long old_id, int auto_renew,
			    long long *renewal_id, long long *new_id)
{
	struct dnsimple_reply r;
	json_t *body = json_object(), *rid, *nid;
	char *path = xasprintf("%s/domains/%s/certificates/letsencrypt/%lld/renewals", d->account_id, domain, old_id);
	int rc;

	json_object_set_new(body, "auto_renew", json_boolean(auto_renew));
	json_object_set_new(body, "signature_algorithm", json_string(d->sig_alg));
	rc = dnsimple_call(d, "dnsimple purchaseRenewalLetsencryptCertificate", "POST", path, body, HTTP_RETRY_NEVER,
			   &r);
	if (!rc) {
		rid = json_object_get(r.data, "id");
		nid = json_object_get(r.data, "new_certificate_id");
		if (json_is_integer(rid) && json_is_integer(nid)) {
			*renewal_id = json_integer_value(rid);
			*new_id = json_integer_value(nid);
		} else {
			rc = cs_error(CS_ETRANSIENT,
				      "issuer %s: purchaseRenewalLetsencryptCertificate: no id/new_certificate_id",
				      d->name);
		}
	}
	reply_free(&r);
	json_decref(body);
	free(path);
	return rc;
}

int dnsimple_renew_issue(struct dnsimple *d, const char *domain, long long old_id, long long renewal_id,
			 struct dnsimple_cert *out)
{
	struct dnsimple_reply r;
	json_t *body = json_object();
	char *path = xasprintf("%s/domains/%s/certificates/letsencrypt/%lld/renewals/%lld/issue", d->account_id, domain,
			       old_id, renewal_id);
	int rc = dnsimple_call(d, "dnsimple issueRenewalLetsencryptCertificate", "POST", path, body, HTTP_RETRY_NEVER,
			       &r);

	if (!rc)
		rc = dnsimple_parse_cert(r.data, "issueRenewalLetsencryptCertificate", out);
	reply_free(&r);
	json_decref(body);
	free(path);
	return rc;
}

/* Appends a PEM block, adding the newline a chain entry may lack (§2.9). */
static void pem_append(struct buf *b, const char *pem)
{
	size_t n = strlen(pem);

	buf_append(b, pem, n);
	if (n && pem[n - 1] != '\n')
		buf_append(b, "\n", 1);
}

int dnsimple_download(struct dnsimple *d, const char *domain, long long id, struct material *m)
{
	struct dnsimple_reply r;
	char *path = xasprintf("%s/domains/%s/certificates/%lld/download", d->account_id, domain, id);
	const char *server, *root, *key;
	json_t *chain, *v;
	size_t i;
	int rc;

	rc = dnsimple_call(d, "dnsimple downloadCertificate", "GET", path, NULL, HTTP_RETRY_SAFE, &r);
	free(path);
	if (rc)
		goto out;
	server = json_string_value(json_object_get(r.data, "server"));
	root = json_string_value(json_object_get(r.data, "root")); /* may be null */
	chain = json_object_get(r.data, "chain");
	if (!server || !json_is_array(chain)) {
		rc = cs_error(CS_ETRANSIENT, "issuer %s: downloadCertificate: missing \"server\" or \"chain\"",
			      d->name);
		goto out;
	}
	buf_clear(&m->cert);
	buf_clear(&m->ca);
	pem_append(&m->cert, server);
	json_array_foreach (chain, i, v) {
		if (json_is_string(v))
			pem_append(&m->cert, json_string_value(v));
	}
	/* ca.crt: the root when DNSimple gives it, else the top of the chain. */
	if (root)
		pem_append(&m->ca, root);
	else if (json_array_size(chain))
		pem_append(&m->ca, json_string_value(json_array_get(chain, json_array_size(chain) - 1)));
	reply_free(&r);
	path = xasprintf("%s/domains/%s/certificates/%lld/private_key", d->account_id, domain, id);
	rc = dnsimple_call(d, "dnsimple getCertificatePrivateKey", "GET", path, NULL, HTTP_RETRY_SAFE, &r);
	free(path);
	if (rc)
		goto out;
	key = json_string_value(json_object_get(r.data, "private_key"));
	if (!key) {
		rc = cs_error(CS_ETRANSIENT, "issuer %s: getCertificatePrivateKey: missing \"private_key\"", d->name);
		goto out;
	}
	buf_clear(&m->key);
	pem_append(&m->key, key);
out:
	if (r.json) {
		/* the reply held the key: wipe the JSON string before it is freed */
		json_t *k = json_object_get(r.data, "private_key");

		if (json_is_string(k))
			crypto_wipe((void *)json_string_value(k), json_string_length(k));
	}
	reply_free(&r);
	return rc;
}

/* ---------- paginated lists (§5.3) ---------- */

int dnsimple_list_pages(struct dnsimple *d, const char *op, const char *path, int (*item)(const void *json, void *arg),
			void *arg)
{
	int rc = 0, stop = 0;

	for (long page = 1; page <= DNSIMPLE_MAX_PAGES && !stop; page++) {
		struct dnsimple_reply r;
		char *url = xasprintf("%s%cper_page=100&page=%ld", path, strchr(path, '?') ? '&' : '?', page);
		json_t *pg, *v;
		long long total_pages;
		size_t i;

		rc = dnsimple_call(d, op, "GET", url, NULL, HTTP_RETRY_SAFE, &r);
		free(url);
		if (rc)
			return rc;
		if (!json_is_array(r.data)) {
			reply_free(&r);
			return cs_error(CS_ETRANSIENT, "issuer %s: %s: \"data\" is not a list", d->name, op);
		}
		json_array_foreach (r.data, i, v) {
			if ((stop = item(v, arg)))
				break;
		}
		pg = json_object_get(r.json, "pagination");
		total_pages = json_is_object(pg) ? json_integer_value(json_object_get(pg, "total_pages")) : 0;
		reply_free(&r);
		if (page >= total_pages)
			break;
	}
	return stop < 0 ? stop : 0;
}

/* ---------- zone records: the DNS driver (§3) ---------- */

/* Unquotes TXT content as DNSimple returns it ("\"abc\"" → abc). Caller frees. */
static char *txt_unquote(const char *s)
{
	size_t n = strlen(s);
	char *out, *o;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return xstrdup(s);
	out = o = xmalloc(n);
	for (size_t i = 1; i + 1 < n; i++) {
		if (s[i] == '\\' && i + 2 < n)
			i++;
		*o++ = s[i];
	}
	*o = '\0';
	return out;
}

/* The id of the TXT record name/value in one page of records, or 0. */
static long long dnsimple_txt_match(const json_t *data, const char *name, const char *value)
{
	long long id = 0;
	json_t *v;
	size_t i;

	json_array_foreach (data, i, v) {
		const char *n = json_string_value(json_object_get(v, "name"));
		const char *c = json_string_value(json_object_get(v, "content"));
		char *plain = c ? txt_unquote(c) : NULL;

		if (n && !strcmp(n, name) && plain && !strcmp(plain, value) &&
		    json_is_integer(json_object_get(v, "id")))
			id = json_integer_value(json_object_get(v, "id"));
		free(plain);
		if (id)
			break;
	}
	return id;
}

/*
 * Finds the id of the TXT record name/value in zone, filtered by name at the
 * API (the apex, "", is filtered here: an empty name= is not a filter, §3.3)
 * and following every page (§5.3). CS_ENOTFOUND if there is none.
 */
static int dnsimple_txt_find(struct dnsimple *d, const char *zone, const char *name, const char *value, long long *id)
{
	int rc = 0;

	*id = 0;
	for (long page = 1; page <= DNSIMPLE_MAX_PAGES && !*id; page++) {
		struct dnsimple_reply r;
		char *path = xasprintf("%s/zones/%s/records?type=TXT&per_page=100&page=%ld%s%s", d->account_id, zone,
				       page, *name ? "&name=" : "", name);
		json_t *pg;
		long long total_pages;

		rc = dnsimple_call(d, "dnsimple listZoneRecords", "GET", path, NULL, HTTP_RETRY_SAFE, &r);
		free(path);
		if (rc)
			return rc;
		if (!json_is_array(r.data)) {
			reply_free(&r);
			return cs_error(CS_ETRANSIENT, "issuer %s: listZoneRecords: \"data\" is not a list", d->name);
		}
		*id = dnsimple_txt_match(r.data, name, value);
		pg = json_object_get(r.json, "pagination");
		total_pages = json_is_object(pg) ? json_integer_value(json_object_get(pg, "total_pages")) : 0;
		reply_free(&r);
		if (page >= total_pages)
			break;
	}
	if (!*id)
		return cs_error(CS_ENOTFOUND, "issuer %s: TXT record %s%s%s not found", d->name, name, *name ? "." : "",
				zone);
	return 0;
}

/* The zone of fqdn (configured or the account's, caller frees) and the record name relative to it. */
static int dnsimple_zone_and_name(struct dnsimple *d, const char *fqdn, char **zone, char **name)
{
	size_t fl = strlen(fqdn), zl;
	int rc;

	if ((rc = dnsimple_zone_of(d, fqdn, zone)))
		return rc;
	zl = strlen(*zone);
	*name = zl == fl ? xstrdup("") : xstrndup(fqdn, fl - zl - 1);
	return 0;
}

/*
 * After a create that did not give an id (rc its result): the record may be
 * there anyway. Found: 0. Not found: the create's own error (code, message
 * and class) when it failed, else the lookup's.
 */
static int dnsimple_txt_lookup_after(struct dnsimple *d, const char *zone, const char *name, const char *value, int rc,
				     long long *id)
{
	const char *cls = rc ? provider_fail_class_take() : NULL;
	char *create_err = rc ? xstrdup(cs_errmsg()) : NULL;
	int frc = dnsimple_txt_find(d, zone, name, value, id);

	if (frc == 0) {
		rc = 0;
	} else if (rc) {
		cs_error(rc, "%s", create_err);
		if (cls)
			provider_fail(cls, rc);
	} else {
		rc = frc;
	}
	free(create_err);
	return rc;
}

int dnsimple_txt_create(const struct issuer *is, const char *fqdn, const char *value, char **ref)
{
	struct dnsimple *d = is->priv;
	struct dnsimple_reply r;
	char *zone = NULL, *name = NULL, *path = NULL;
	json_t *body = NULL;
	long long id = 0;
	int rc;

	if ((rc = dnsimple_session(d)) || (rc = dnsimple_zone_and_name(d, fqdn, &zone, &name)))
		goto out;
	body = json_object();
	json_object_set_new(body, "name", json_string(name)); /* always sent, "" for the apex (§6.10) */
	json_object_set_new(body, "type", json_string("TXT"));
	json_object_set_new(body, "content", json_string(value));
	json_object_set_new(body, "ttl", json_integer(60));
	path = xasprintf("%s/zones/%s/records", d->account_id, zone);
	rc = dnsimple_call(d, "dnsimple createZoneRecord", "POST", path, body, HTTP_RETRY_NEVER, &r);
	if (!rc && json_is_integer(json_object_get(r.data, "id"))) {
		id = json_integer_value(json_object_get(r.data, "id"));
	} else if (!rc || (r.status == 400 && strstr(cs_errmsg(), "already exists")) || rc == CS_ETRANSIENT) {
		/* "Matching record already exists" (§6.11), or an answer we lost: look it up. */
		rc = dnsimple_txt_lookup_after(d, zone, name, value, rc, &id);
	}
	reply_free(&r);
	if (!rc)
		*ref = xasprintf("%s/%lld", zone, id);
out:
	json_decref(body);
	free(zone);
	free(name);
	free(path);
	return rc;
}

int dnsimple_txt_delete(const struct issuer *is, const char *fqdn, const char *value, const char *ref)
{
	struct dnsimple *d = is->priv;
	struct dnsimple_reply r;
	char *zone = NULL, *name = NULL, *path = NULL;
	long long id = 0;
	int rc;

	if ((rc = dnsimple_session(d)))
		return rc;
	if (ref && strchr(ref, '/')) {
		zone = xstrndup(ref, (size_t)(strchr(ref, '/') - ref));
		id = strtoll(strchr(ref, '/') + 1, NULL, 10);
	}
	if (!id) {
		free(zone);
		zone = NULL;
		if ((rc = dnsimple_zone_and_name(d, fqdn, &zone, &name)))
			goto out;
		rc = dnsimple_txt_find(d, zone, name, value, &id);
		if (rc == CS_ENOTFOUND)
			rc = 0; /* already gone */
		if (rc || !id)
			goto out;
	}
	path = xasprintf("%s/zones/%s/records/%lld", d->account_id, zone, id);
	rc = dnsimple_call(d, "dnsimple deleteZoneRecord", "DELETE", path, NULL, HTTP_RETRY_SAFE, &r);
	if (rc == CS_ENOTFOUND)
		rc = 0;
	reply_free(&r);
out:
	free(zone);
	free(name);
	free(path);
	return rc;
}

/* ---------- webhooks (§4) ---------- */

int dnsimple_ensure_webhook(const struct issuer *is, const char *url)
{
	struct dnsimple *d = is->priv;
	struct dnsimple_reply r;
	json_t *v, *body;
	char *path;
	size_t i;
	int rc, found = 0;

	if ((rc = dnsimple_session(d)))
		return rc;
	path = xasprintf("%s/webhooks", d->account_id);
	rc = dnsimple_call(d, "dnsimple listWebhooks", "GET", path, NULL, HTTP_RETRY_SAFE, &r);
	if (rc)
		goto out;
	json_array_foreach (r.data, i, v) {
		const char *u = json_string_value(json_object_get(v, "url"));

		if (u && !strcmp(u, url)) {
			found = 1;
			if (json_is_string(json_object_get(v, "suppressed_at")))
				log_warn("issuer %s: DNSimple suppressed certsync's webhook at %s; clear it in the "
					 "DNSimple UI",
					 d->name, json_string_value(json_object_get(v, "suppressed_at")));
		}
	}
	reply_free(&r);
	if (found)
		goto out;
	body = json_object();
	json_object_set_new(body, "url", json_string(url));
	rc = dnsimple_call(d, "dnsimple createWebhook", "POST", path, body, HTTP_RETRY_NEVER, &r);
	json_decref(body);
	reply_free(&r);
	if (!rc)
		log_info("issuer %s: registered the DNSimple webhook", d->name);
out:
	free(path);
	return rc;
}

/* ---------- validate: credentials and whoami (§1.4, §1.5) ---------- */

int dnsimple_whoami(struct dnsimple *d, long long *account_id, char *label, size_t label_len)
{
	struct dnsimple_reply r;
	json_t *acc, *user;
	int rc = dnsimple_call(d, "dnsimple whoami", "GET", "whoami", NULL, HTTP_RETRY_SAFE, &r);

	*account_id = 0;
	snprintf(label, label_len, "%s", "");
	if (rc)
		return rc;
	acc = json_object_get(r.data, "account");
	user = json_object_get(r.data, "user");
	if (json_is_object(acc) && json_is_integer(json_object_get(acc, "id"))) {
		const char *name = json_string_value(json_object_get(acc, "name"));

		*account_id = json_integer_value(json_object_get(acc, "id"));
		snprintf(label, label_len, "%s", name ? name : "");
	} else if (json_is_object(user)) {
		const char *email = json_string_value(json_object_get(user, "email"));

		snprintf(label, label_len, "user %s", email ? email : "?");
	} else {
		rc = cs_error(CS_ETRANSIENT, "issuer %s: whoami: neither an account nor a user in the answer", d->name);
	}
	reply_free(&r);
	return rc;
}

void dnsimple_check(const struct issuer *is, int online, struct provider_check *out)
{
	struct dnsimple *d = is->priv;
	struct buf acc = BUF_INIT;
	char what[160], label[200];
	long long id = 0;
	size_t n0 = out->n_problems;

	snprintf(what, sizeof(what), "issuer %s: account", d->name);
	if (config_cred_read(&d->account, what, &acc))
		provider_check_problem(out, "%s", cs_errmsg());
	else if (!acc.len || strspn(acc.data, "0123456789") != acc.len)
		provider_check_problem(out, "issuer %s: account must be the numeric DNSimple account id", d->name);
	snprintf(what, sizeof(what), "issuer %s: token", d->name);
	provider_check_cred(out, &d->token, what);
	if (d->ca_file && access(d->ca_file, R_OK))
		provider_check_problem(out, "issuer %s: caFile %s: %s", d->name, d->ca_file, strerror(errno));
	if (!online || out->n_problems > n0)
		goto out;
	if (dnsimple_session(d) || dnsimple_whoami(d, &id, label, sizeof(label))) {
		provider_check_problem(out, "%s", cs_errmsg());
	} else if (id && acc.data && id != strtoll(acc.data, NULL, 10)) {
		provider_check_problem(out,
				       "issuer %s: GET %s/v2/whoami: the token belongs to DNSimple account %lld (%s), "
				       "not the configured account %s",
				       d->name, d->base_url, id, label, acc.data);
	} else if (id) {
		provider_check_note(out, "DNSimple account %lld (%s)", id, label);
	} else {
		provider_check_note(out, "DNSimple %s (a user token: account %s not checked)", label, acc.data);
	}
	dnsimple_session_end(d);
out:
	buf_free(&acc);
}

void dnsimple_account_plan(const struct config *cfg, const struct issuer *is, const struct state *st, char ***lines,
			   size_t *n)
{
	(void)st;
	if (cfg->server.public_url && *cfg->server.public_url)
		provider_account_line(lines, n,
				      "issuer %s: certsync run registers a webhook with the DNSimple account for "
				      "server.publicURL (once, if the account has none for it)",
				      is->name);
}
