/* DigiCert CertCentral Services API v2 calls: bodies, replies, errors, AuthKey (digicert.md §1, §2, §5-§7). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/http.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "digicert.h"

#ifndef CERTSYNC_VERSION
#define CERTSYNC_VERSION "0.1.0"
#endif

/* ---------- pure helpers ---------- */

void digicert_order_clear(struct digicert_order *o)
{
	free(o->status);
	free(o->chain);
	memset(o, 0, sizeof(*o));
}

char *digicert_order_body(const struct digicert *dc, const struct digicert_order_req *r)
{
	json_t *body = json_object(), *cert = json_object(), *names = json_array(), *validity = json_object();
	char *out;

	json_object_set_new(cert, "common_name", json_string(r->common_name));
	for (size_t i = 0; i < r->n_dns; i++)
		if (strcmp(r->dns_names[i], r->common_name))
			json_array_append_new(names, json_string(r->dns_names[i]));
	if (json_array_size(names))
		json_object_set(cert, "dns_names", names);
	/* The exact string the token's HMAC covered (§3.3). */
	json_object_set_new(cert, "csr", json_string(r->csr));
	json_object_set_new(cert, "signature_hash", json_string(dc->signature_hash));
	json_object_set_new(cert, "server_platform", json_pack("{s:i}", "id", -1));
	json_object_set_new(body, "certificate", cert);
	if (dc->validity_days)
		json_object_set_new(validity, "days", json_integer(dc->validity_days));
	else
		json_object_set_new(validity, "years", json_integer(dc->validity_years ? dc->validity_years : 1));
	json_object_set_new(body, "order_validity", validity);
	json_object_set_new(body, "dcv_method", json_string(r->dcv_method));
	json_object_set_new(body, "use_auth_key", json_true());
	if (r->auth_key_id)
		json_object_set_new(body, "auth_key_id", json_string(r->auth_key_id));
	json_object_set_new(body, "skip_approval", json_boolean(dc->skip_approval));
	if (dc->payment_method)
		json_object_set_new(body, "payment_method", json_string(dc->payment_method));
	if (r->alternative_order_id)
		json_object_set_new(body, "alternative_order_id", json_string(r->alternative_order_id));
	if (r->renewal_of)
		json_object_set_new(body, "renewal_of_order_id", json_integer(r->renewal_of));
	out = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(names);
	json_decref(body);
	return out;
}

static long long json_id(const json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_string(v)) /* tolerate ids sent as strings */
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

/* Joins certificate_chain[].pem, each ending in a newline. NULL when empty. */
static char *chain_join(const json_t *chain)
{
	struct buf b = BUF_INIT;
	json_t *v;
	size_t i;

	json_array_foreach (chain, i, v) {
		const char *pem = json_string_value(json_object_get(v, "pem"));
		size_t n = pem ? strlen(pem) : 0;

		if (!n)
			continue;
		buf_append(&b, pem, n);
		if (pem[n - 1] != '\n')
			buf_append(&b, "\n", 1);
	}
	return b.len ? buf_detach(&b) : (buf_free(&b), NULL);
}

static void order_from_json(const json_t *o, struct digicert_order *out)
{
	const json_t *cert = json_object_get(o, "certificate");
	const char *status = json_string_value(json_object_get(o, "status"));

	if (!status)
		status = json_string_value(json_object_get(o, "order_status")); /* check-dcv */
	out->id = json_id(json_object_get(o, "id"));
	out->certificate_id = json_id(json_object_get(o, "certificate_id"));
	if (!out->certificate_id && json_is_object(cert))
		out->certificate_id = json_id(json_object_get(cert, "id"));
	out->status = status ? xstrdup(status) : NULL;
	out->chain = chain_join(json_object_get(o, "certificate_chain"));
}

int digicert_parse_order(const char *body, size_t len, const char *what, struct digicert_order *out)
{
	json_error_t je;
	json_t *j = json_loadb(body ? body : "", len, 0, &je);

	memset(out, 0, sizeof(*out));
	if (!json_is_object(j)) {
		json_decref(j);
		return cs_error(CS_ETRANSIENT, "%s: the answer is not a JSON object", what);
	}
	order_from_json(j, out);
	json_decref(j);
	if (!out->id && !out->status) {
		digicert_order_clear(out);
		return cs_error(CS_ETRANSIENT, "%s: the answer has no order id", what);
	}
	return 0;
}

int digicert_parse_order_list(const char *body, size_t len, const char *alt, struct digicert_order *out)
{
	json_error_t je;
	json_t *j = json_loadb(body ? body : "", len, 0, &je), *orders = json_object_get(j, "orders"), *v;
	size_t i;
	int rc = CS_ENOTFOUND;

	memset(out, 0, sizeof(*out));
	if (!json_is_array(orders)) {
		json_decref(j);
		return cs_error(CS_ETRANSIENT, "list orders: the answer has no \"orders\" list");
	}
	json_array_foreach (orders, i, v) {
		const char *a = json_string_value(json_object_get(v, "alternative_order_id"));

		/* The list was filtered by alt; an entry that names another id is not ours. */
		if (a && strcmp(a, alt))
			continue;
		order_from_json(v, out);
		if (out->id) {
			rc = 0;
			break;
		}
		digicert_order_clear(out);
	}
	json_decref(j);
	return rc;
}

int digicert_error_first(const char *body, size_t len, char *code, size_t code_len, char *msg, size_t msg_len)
{
	json_error_t je;
	json_t *j = body && len ? json_loadb(body, len, 0, &je) : NULL;
	json_t *e = json_array_get(json_object_get(j, "errors"), 0);
	const char *c = json_string_value(json_object_get(e, "code"));
	const char *m = json_string_value(json_object_get(e, "message"));

	snprintf(code, code_len, "%s", c ? c : "");
	snprintf(msg, msg_len, "%s", m ? m : "");
	json_decref(j);
	return c != NULL;
}

int digicert_code_is(const char *code, const char *base)
{
	size_t n = strlen(base);

	return code && !strncmp(code, base, n) && (code[n] == '\0' || code[n] == '|');
}

void digicert_error_text(const char *body, size_t len, char *out, size_t n)
{
	json_error_t je;
	json_t *j = body && len ? json_loadb(body, len, 0, &je) : NULL, *e;
	size_t i;

	out[0] = '\0';
	json_array_foreach (json_object_get(j, "errors"), i, e) {
		const char *c = json_string_value(json_object_get(e, "code"));
		const char *m = json_string_value(json_object_get(e, "message"));
		char *item;

		if (!c && !m)
			continue;
		item = xasprintf("%s%s%s", c ? c : "", c && m ? ": " : "", m ? m : "");
		provider_text_append(out, n, "; ", item);
		free(item);
	}
	if (!out[0])
		snprintf(out, n, "no error code in the answer");
	json_decref(j);
}

int digicert_fail(const char *issuer, const char *op, long status, const char *body, size_t len)
{
	char text[1024];
	int rc;

	digicert_error_text(body, len, text, sizeof(text));
	switch (status) {
	case 401:
		rc = cs_error(CS_EAUTH, "issuer %s: DigiCert refused the API key (%s: HTTP 401 %s)", issuer, op, text);
		break;
	case 403:
		rc = cs_error(CS_EAUTH, "issuer %s: the DigiCert API key lacks a permission (%s: HTTP 403 %s)", issuer,
			      op, text);
		break;
	case 404: rc = cs_error(CS_ENOTFOUND, "issuer %s: %s: HTTP 404 %s", issuer, op, text); break;
	case 429:
		rc = cs_error(CS_ETRANSIENT, "issuer %s: %s: rate limited by DigiCert (HTTP 429 %s); backing off",
			      issuer, op, text);
		break;
	default:
		rc = cs_error(status >= 500 || status < 100 ? CS_ETRANSIENT : CS_EINVALID, "issuer %s: %s: HTTP %ld %s",
			      issuer, op, status, text);
		break;
	}
	return provider_http_fail_class(status, rc);
}

int digicert_status_terminal(const char *status)
{
	static const char *const t[] = {"rejected", "canceled", "revoked", "expired", NULL};

	for (size_t i = 0; status && t[i]; i++)
		if (!strcmp(status, t[i]))
			return 1;
	return 0;
}

int digicert_split_chain(const char *pem, size_t len, struct buf *cert, struct buf *ca)
{
	return crypto_split_chain(pem, len, "DigiCert certificate chain", cert, ca);
}

/* ---------- session ---------- */

int digicert_session(struct digicert *dc)
{
	struct http_client_opts ho;
	struct buf key = BUF_INIT;
	char what[160];
	int rc = 0;

	pthread_mutex_lock(&dc->mu);
	if (dc->open)
		goto out;
	snprintf(what, sizeof(what), "issuer %s: apiKey", dc->name);
	if ((rc = config_cred_read(&dc->api_key, what, &key)))
		goto out;
	if (!key.len || strpbrk(key.data, "\r\n")) {
		rc = cs_error(CS_EAUTH, "issuer %s: apiKey is empty or spans several lines", dc->name);
		goto out;
	}
	log_add_secret(key.data);
	memset(&ho, 0, sizeof(ho));
	ho.user_agent = "certsync/" CERTSYNC_VERSION;
	ho.ca_file = dc->ca_file;
	ho.timeout_ms = dc->timeout * 1000;
	if ((rc = http_client_new(&ho, &dc->http)))
		goto out;
	dc->devkey = xasprintf("X-DC-DEVKEY: %s", key.data);
	dc->open = 1;
out:
	pthread_mutex_unlock(&dc->mu);
	buf_wipe(&key);
	/* a missing env var or file, a too-open file: fixed in the configuration, retried once it is */
	return rc ? provider_fail(STATE_FAIL_CONFIG, rc) : 0;
}

static void wipe_str(char **s)
{
	if (*s)
		crypto_wipe(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

void digicert_session_end(struct digicert *dc)
{
	pthread_mutex_lock(&dc->mu);
	wipe_str(&dc->devkey);
	wipe_str(&dc->auth_key);
	free(dc->auth_key_id);
	dc->auth_key_id = NULL;
	dc->auth_key_select = 0;
	http_client_free(dc->http);
	dc->http = NULL;
	dc->open = 0;
	pthread_mutex_unlock(&dc->mu);
}

/* ---------- requests ---------- */

struct dc_reply {
	long status;
	struct buf body; /* 2xx only */
};

/*
 * One API call. path is relative to the base URL (no secrets). Returns 0
 * with the body for 2xx, else the mapped error (out->status kept).
 */
static int dc_call_q(struct digicert *dc, const char *op, const char *method, const char *path, const char *body,
		     enum http_retry retry, long quiet, struct dc_reply *out)
{
	struct http_request req;
	struct http_response res;
	char *url = xasprintf("%s/%s", dc->base_url, path);
	int rc;

	memset(out, 0, sizeof(*out));
	http_request_json(&req, op, method, url, dc->devkey, body, retry);
	rc = http_do(dc->http, &req, &res);
	out->status = res.status;
	if (rc == CS_ETRANSIENT && res.status == 429)
		rc = digicert_fail(dc->name, op, 429, res.body.data, res.body.len);
	else if (rc)
		provider_http_fail_class(res.status, cs_error(rc, "issuer %s: %s", dc->name, cs_errmsg()));
	else if (res.status < 200 || res.status >= 300)
		rc = digicert_fail(dc->name, op, res.status, res.body.data, res.body.len);
	else if (res.status != 204 && http_is_html(&res))
		rc = cs_error(CS_ETRANSIENT, "issuer %s: %s: HTTP %ld with an HTML page instead of JSON", dc->name, op,
			      res.status);
	if (!rc) {
		out->body = res.body;
		memset(&res.body, 0, sizeof(res.body));
	} else if (res.status || rc == CS_ETRANSIENT) {
		provider_log_failure(dc->name, res.request_id, res.status, quiet && res.status == quiet);
	}
	http_response_free(&res);
	free(url);
	return rc;
}

/* dc_call_q with every failure logged at warn (404 at debug). */
static int dc_call(struct digicert *dc, const char *op, const char *method, const char *path, const char *body,
		   enum http_retry retry, struct dc_reply *out)
{
	return dc_call_q(dc, op, method, path, body, retry, 0, out);
}

static void reply_free(struct dc_reply *r)
{
	buf_free(&r->body);
}

/* ---------- AuthKey (§2) ---------- */

/* Takes the key from a {"auth_key_id","auth_key"} object. */
static int take_key(struct digicert *dc, const json_t *o, int select)
{
	const char *k = json_string_value(json_object_get(o, "auth_key"));
	const json_t *id = json_object_get(o, "auth_key_id");

	if (!k || !*k)
		return 0;
	dc->auth_key = xstrdup(k);
	log_add_secret(dc->auth_key);
	dc->auth_key_id = json_is_string(id) ? xstrdup(json_string_value(id)) : xasprintf("%lld", json_id(id));
	dc->auth_key_select = select;
	return 1;
}

/* Picks from GET /account/auth-keys: the permanent key, else the one lasting longest (then named in orders). */
static int auth_key_from_list(struct digicert *dc, const struct dc_reply *r)
{
	json_error_t je;
	json_t *j = json_loadb(r->body.data, r->body.len, 0, &je), *keys = json_object_get(j, "auth_keys"), *v;
	const json_t *best = NULL;
	const char *best_exp = NULL;
	size_t i;
	int found = 0;

	json_array_foreach (keys, i, v) {
		const char *exp = json_string_value(json_object_get(v, "expiration_datetime"));

		if (!json_string_value(json_object_get(v, "auth_key")))
			continue;
		if (!exp) {
			found = take_key(dc, v, 0);
			break;
		}
		if (!best || strcmp(exp, best_exp) > 0) {
			best = v;
			best_exp = exp;
		}
	}
	if (!found && best)
		found = take_key(dc, best, 1);
	if (j) {
		/* the reply held the keys: wipe them before the JSON is freed */
		json_array_foreach (keys, i, v) {
			json_t *k = json_object_get(v, "auth_key");

			if (json_is_string(k))
				crypto_wipe((void *)json_string_value(k), json_string_length(k));
		}
	}
	json_decref(j);
	return found;
}

static int auth_key_from_object(struct digicert *dc, const struct dc_reply *r)
{
	json_error_t je;
	json_t *j = json_loadb(r->body.data, r->body.len, 0, &je), *k;
	int found = take_key(dc, j, 0);

	if ((k = json_object_get(j, "auth_key")) && json_is_string(k))
		crypto_wipe((void *)json_string_value(k), json_string_length(k));
	json_decref(j);
	return found;
}

int digicert_auth_key(struct digicert *dc)
{
	struct dc_reply r;
	int rc;

	pthread_mutex_lock(&dc->mu);
	if (dc->auth_key) {
		pthread_mutex_unlock(&dc->mu);
		return 0;
	}
	rc = dc_call(dc, "digicert listAuthKeys", "GET", "account/auth-keys", NULL, HTTP_RETRY_SAFE, &r);
	if (!rc && auth_key_from_list(dc, &r))
		goto out;
	buf_wipe(&r.body);
	if (rc && rc != CS_ENOTFOUND)
		goto out;
	/* None yet: create the permanent key; one made meanwhile is read instead (auth_key_exists_for_account). */
	rc = dc_call_q(dc, "digicert createAuthKey", "POST", "account/auth-key", NULL, HTTP_RETRY_NEVER, 400, &r);
	if (rc == CS_EINVALID && r.status == 400 && strstr(cs_errmsg(), "auth_key_exists_for_account")) {
		log_info("issuer %s: DigiCert says an AuthKey exists; reading it", dc->name);
		rc = dc_call(dc, "digicert getAuthKey", "GET", "account/auth-key", NULL, HTTP_RETRY_SAFE, &r);
	} else if (!rc) {
		log_info("issuer %s: created a DigiCert AuthKey", dc->name);
	}
	if (!rc && !auth_key_from_object(dc, &r))
		rc = cs_error(CS_ETRANSIENT, "issuer %s: DigiCert returned no AuthKey", dc->name);
out:
	buf_wipe(&r.body);
	pthread_mutex_unlock(&dc->mu);
	return rc;
}

/* ---------- orders (§5, §6, §7.5) ---------- */

int digicert_order_create(struct digicert *dc, const struct digicert_order_req *r, struct digicert_order *out)
{
	struct dc_reply rep;
	char *body = digicert_order_body(dc, r), *path = xasprintf("order/certificate/%s", r->product);
	int rc = dc_call(dc, "digicert orderCertificate", "POST", path, body, HTTP_RETRY_NEVER, &rep);

	if (!rc)
		rc = digicert_parse_order(rep.body.data, rep.body.len, "digicert orderCertificate", out);
	reply_free(&rep);
	free(body);
	free(path);
	return rc;
}

int digicert_order_info(struct digicert *dc, long long id, struct digicert_order *out)
{
	struct dc_reply rep;
	char *path = xasprintf("order/certificate/%lld", id);
	int rc = dc_call(dc, "digicert orderInfo", "GET", path, NULL, HTTP_RETRY_SAFE, &rep);

	if (!rc)
		rc = digicert_parse_order(rep.body.data, rep.body.len, "digicert orderInfo", out);
	reply_free(&rep);
	free(path);
	return rc;
}

int digicert_order_find(struct digicert *dc, const char *alt, struct digicert_order *out)
{
	struct dc_reply rep;
	char *path = xasprintf("order/certificate?filters[alternative_order_id]=%s&sort=-date_created&limit=100", alt);
	int rc = dc_call(dc, "digicert listOrders", "GET", path, NULL, HTTP_RETRY_SAFE, &rep);

	if (!rc)
		rc = digicert_parse_order_list(rep.body.data, rep.body.len, alt, out);
	reply_free(&rep);
	free(path);
	return rc;
}

int digicert_check_dcv(struct digicert *dc, long long id, struct digicert_order *out)
{
	struct dc_reply rep;
	char *path = xasprintf("order/certificate/%lld/check-dcv", id);
	int rc = dc_call_q(dc, "digicert checkDcv", "PUT", path, NULL, HTTP_RETRY_SAFE, 400, &rep);

	memset(out, 0, sizeof(*out));
	if (rc == CS_EINVALID && rep.status == 400) {
		/* invalid_dns_txt / file_random_value_not_found: the token is not seen yet; keep waiting */
		log_debug("issuer %s: check-dcv for order %lld: %s", dc->name, id, cs_errmsg());
		rc = 1;
	} else if (!rc) {
		rc = digicert_parse_order(rep.body.data, rep.body.len, "digicert checkDcv", out);
	}
	reply_free(&rep);
	free(path);
	return rc;
}

int digicert_download(struct digicert *dc, long long certificate_id, struct buf *cert, struct buf *ca)
{
	struct dc_reply rep;
	char *path = xasprintf("certificate/%lld/download/format/pem_all", certificate_id);
	int rc = dc_call(dc, "digicert downloadCertificate", "GET", path, NULL, HTTP_RETRY_SAFE, &rep);

	if (!rc)
		rc = digicert_split_chain(rep.body.data, rep.body.len, cert, ca);
	if (rc == CS_EINVALID && rep.status >= 200 && rep.status < 300)
		rc = cs_error(CS_ETRANSIENT, "issuer %s: downloadCertificate %lld: %s", dc->name, certificate_id,
			      cs_errmsg());
	reply_free(&rep);
	free(path);
	return rc;
}

/* ---------- validate: credentials and the API key's user ---------- */

int digicert_user_me(struct digicert *dc, char *label, size_t label_len)
{
	struct dc_reply rep;
	json_error_t je;
	json_t *j, *container;
	const char *user;
	long long id, account, cid;
	int rc = dc_call(dc, "digicert userMe", "GET", "user/me", NULL, HTTP_RETRY_SAFE, &rep);

	if (rc)
		return rc;
	j = json_loadb(rep.body.data, rep.body.len, 0, &je);
	id = json_id(json_object_get(j, "id"));
	if (!json_is_object(j) || !id) {
		rc = cs_error(CS_ETRANSIENT, "issuer %s: GET user/me: the answer has no user id", dc->name);
	} else {
		user = json_string_value(json_object_get(j, "username"));
		account = json_id(json_object_get(j, "account_id"));
		container = json_object_get(j, "container");
		cid = json_id(json_object_get(container, "id"));
		snprintf(label, label_len, "DigiCert user %s (id %lld)", user ? user : "?", id);
		if (account)
			snprintf(label + strlen(label), label_len - strlen(label), ", account %lld", account);
		if (cid)
			snprintf(label + strlen(label), label_len - strlen(label), ", container %lld", cid);
	}
	json_decref(j);
	reply_free(&rep);
	return rc;
}

void digicert_check(const struct issuer *is, int online, struct provider_check *out)
{
	struct digicert *dc = is->priv;
	char what[160], label[300];
	size_t n0 = out->n_problems;

	snprintf(what, sizeof(what), "issuer %s: apiKey", dc->name);
	provider_check_cred(out, &dc->api_key, what);
	if (dc->ca_file && access(dc->ca_file, R_OK))
		provider_check_problem(out, "issuer %s: caFile %s: %s", dc->name, dc->ca_file, strerror(errno));
	if (dc->webroot && !strstr(dc->webroot, "{host}") && access(dc->webroot, W_OK))
		provider_check_problem(out, "issuer %s: validation.webroot %s: %s", dc->name, dc->webroot,
				       strerror(errno));
	if (!online || out->n_problems > n0)
		return;
	if (digicert_session(dc) || digicert_user_me(dc, label, sizeof(label)))
		provider_check_problem(out, "%s", cs_errmsg());
	else
		provider_check_note(out, "%s", label);
	digicert_session_end(dc);
}

/* 1 if st shows that this issuer has used the account's AuthKey (a token placed, an order made). */
static int digicert_auth_key_known(const struct issuer *is, const struct state *st)
{
	static const char *const used[] = {"digicert.token", "digicert.order_id", "digicert.installed_order_id", NULL};
	struct state_cert **recs;
	size_t n = 0;
	int known = 0;

	if (!st)
		return 0;
	if (state_account_get(st, is->name, "auth_key_id"))
		return 1;
	recs = state_cert_list(st, &n);
	for (size_t i = 0; i < n && !known; i++) {
		if (!recs[i]->issuer || strcmp(recs[i]->issuer, is->name))
			continue;
		for (size_t k = 0; used[k] && !known; k++)
			known = state_cert_id(recs[i], used[k]) != NULL;
	}
	free(recs);
	return known;
}

void digicert_account_plan(const struct config *cfg, const struct issuer *is, const struct state *st, char ***lines,
			   size_t *n)
{
	(void)cfg;
	if (!digicert_auth_key_known(is, st))
		provider_account_line(lines, n,
				      "issuer %s: create an AuthKey for the DigiCert account (once, if the account "
				      "has none; it signs the request tokens)",
				      is->name);
}
