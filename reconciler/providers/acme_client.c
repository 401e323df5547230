/* The ACME protocol client's core: the directory, the nonce pool, signed requests with badNonce retry, the account. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "acme_client_int.h"
#include "acme_wire.h"

int acme_client_new(const struct acme_client_opts *o, struct acme_client **out)
{
	struct http_client_opts ho;
	struct acme_client *c = xcalloc(1, sizeof(*c));
	int rc;

	memset(&ho, 0, sizeof(ho));
	ho.user_agent = o->user_agent;
	ho.ca_file = o->ca_file;
	ho.timeout_ms = (o->timeout > 0 ? o->timeout : 60) * 1000;
	c->issuer = xstrdup(o->issuer);
	c->directory_url = xstrdup(o->directory);
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->dir_mu, NULL);
	if (!(rc = http_client_new(&ho, &c->http))) {
		ho.max_retries = -1;
		rc = http_client_new(&ho, &c->http_post);
	}
	if (rc) {
		rc = provider_fail(STATE_FAIL_CONFIG, cs_error(rc, "issuer %s: %s", o->issuer, cs_errmsg()));
		acme_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void acme_client_free(struct acme_client *c)
{
	if (!c)
		return;
	http_client_free(c->http);
	http_client_free(c->http_post);
	acme_directory_free(&c->dir);
	for (size_t i = 0; i < c->n_nonces; i++)
		free(c->nonces[i]);
	free(c->issuer);
	free(c->directory_url);
	free(c->kid);
	free(c->orders_url);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->dir_mu);
	free(c);
}

/* ---------- plain GETs ---------- */

int acme_client_get(struct acme_client *c, const char *op, const char *url, const char *accept,
		    struct http_response *res)
{
	struct http_request req;
	char *acc = xasprintf("Accept: %s", accept ? accept : "application/json");
	int rc;

	memset(&req, 0, sizeof(req));
	req.op = op;
	req.method = "GET";
	req.url = url;
	req.headers[0] = acc;
	req.retry = HTTP_RETRY_SAFE;
	rc = http_do(c->http, &req, res);
	free(acc);
	acme_nonce_keep(c, res);
	if (rc && !(rc == CS_ETRANSIENT && res->status >= 400)) /* no answer; a 429 or 5xx is read below */
		return provider_http_fail_class(res->status, cs_error(rc, "issuer %s: %s", c->issuer, cs_errmsg()));
	if (res->status < 200 || res->status >= 300)
		return acme_client_fail(c, op, url, res, NULL);
	return 0;
}

/* ---------- directory ---------- */

int acme_client_directory(struct acme_client *c, const struct acme_directory **out)
{
	struct acme_wire w = {c->issuer, "acme directory", c->directory_url};
	struct http_response res;
	int rc = 0;

	pthread_mutex_lock(&c->dir_mu);
	if (c->have_dir)
		goto out;
	if ((rc = acme_client_get(c, "acme directory", c->directory_url, NULL, &res))) {
		/* a directory URL that answers 4xx is a wrong URL in the configuration, not "not found" */
		if (res.status >= 400 && res.status < 500 && res.status != 429)
			rc = provider_fail(
				STATE_FAIL_CONFIG,
				cs_error(CS_EINVALID, "%s (is `directory` the CA's ACME directory URL?)", cs_errmsg()));
	} else if ((rc = acme_directory_parse(&w, res.body.data, res.body.len, &c->dir))) {
		provider_fail(STATE_FAIL_TRANSIENT, rc);
	} else {
		c->have_dir = 1;
	}
	http_response_free(&res);
out:
	pthread_mutex_unlock(&c->dir_mu);
	if (!rc)
		*out = &c->dir;
	return rc;
}

/* ---------- the nonce pool ---------- */

/* 1 when n is a plausible nonce: base64url, bounded (RFC 8555 §6.5.1). */
static int nonce_ok(const char *n)
{
	size_t len = strlen(n);

	return len && len <= ACME_MAX_NONCE_LEN &&
	       strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == len;
}

void acme_nonce_keep(struct acme_client *c, const struct http_response *res)
{
	const char *n = http_response_header(res, "replay-nonce", 0);

	if (!n || !nonce_ok(n))
		return;
	pthread_mutex_lock(&c->mu);
	if (c->n_nonces == ACME_MAX_NONCES) { /* the oldest is the likeliest to have expired */
		free(c->nonces[0]);
		memmove(c->nonces, c->nonces + 1, (ACME_MAX_NONCES - 1) * sizeof(c->nonces[0]));
		c->n_nonces--;
	}
	c->nonces[c->n_nonces++] = xstrdup(n);
	pthread_mutex_unlock(&c->mu);
}

size_t acme_nonce_count(struct acme_client *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->n_nonces;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* A fresh nonce (caller frees): the newest of the pool, else one from newNonce. */
static int nonce_take(struct acme_client *c, char **out)
{
	const struct acme_directory *d;
	struct http_response res;
	const char *n;
	int rc;

	pthread_mutex_lock(&c->mu);
	if (c->n_nonces) {
		*out = c->nonces[--c->n_nonces];
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	pthread_mutex_unlock(&c->mu);
	if ((rc = acme_client_directory(c, &d)))
		return rc;
	rc = acme_client_get(c, "acme newNonce", d->new_nonce, NULL, &res);
	n = http_response_header(&res, "replay-nonce", 0);
	if (!rc && (!n || !nonce_ok(n))) {
		struct acme_wire w = {c->issuer, "acme newNonce", d->new_nonce};

		rc = provider_fail(STATE_FAIL_TRANSIENT, acme_wire_fail(&w, "no usable Replay-Nonce header"));
	}
	if (!rc) {
		/* acme_client_get pooled it: take it back out (another thread may have been quicker) */
		pthread_mutex_lock(&c->mu);
		*out = c->n_nonces ? c->nonces[--c->n_nonces] : xstrdup(n);
		pthread_mutex_unlock(&c->mu);
	}
	http_response_free(&res);
	return rc;
}

/* ---------- errors ---------- */

int acme_client_fail(struct acme_client *c, const char *op, const char *url, const struct http_response *res,
		     struct acme_problem *prob)
{
	struct acme_problem p;
	const char *cls;
	char path[256], text[1536];
	int rc, code;

	acme_url_path(url, path, sizeof(path));
	if (res->status && res->content_type && strstr(res->content_type, "json") &&
	    !acme_problem_parse(res->body.data, res->body.len, res->status, &p)) {
		acme_problem_text(&p, text, sizeof(text));
		code = acme_problem_class(&p, &cls);
		rc = provider_fail(cls, cs_error(code, "issuer %s: %s %s: %s", c->issuer, op, path, text));
		if (prob)
			*prob = p;
		else
			acme_problem_free(&p);
		return rc;
	}
	if (prob)
		memset(prob, 0, sizeof(*prob));
	if (res->status == 0) /* no answer at all: http_do's message says why */
		return provider_fail(STATE_FAIL_TRANSIENT,
				     cs_error(CS_ETRANSIENT, "issuer %s: %s %s: no answer", c->issuer, op, path));
	if (http_is_html(res))
		snprintf(text, sizeof(text), "an HTML page");
	else
		snprintf(text, sizeof(text), "%.200s", res->body.len ? res->body.data : "an empty body");
	for (char *q = text; *q; q++)
		if ((unsigned char)*q < 0x20)
			*q = ' ';
	code = res->status == 401 || res->status == 403	  ? CS_EAUTH
	       : res->status == 404			  ? CS_ENOTFOUND
	       : res->status == 429 || res->status >= 500 ? CS_ETRANSIENT
							  : CS_EINVALID;
	return provider_http_fail_class(
		res->status, cs_error(code, "issuer %s: %s %s: HTTP %ld: %s", c->issuer, op, path, res->status, text));
}

/* ---------- signed requests ---------- */

/* One signed POST under kid (NULL: with the jwk). 0 when an answer arrived, whatever its status. */
static int post_once(struct acme_client *c, const struct crypto_key *key, const char *kid, const char *op,
		     const char *url, const char *payload, const char *accept, struct http_response *res)
{
	struct http_request req;
	char *nonce = NULL, *jws = NULL, *acc = xasprintf("Accept: %s", accept ? accept : "application/json");
	int rc;

	memset(res, 0, sizeof(*res));
	if ((rc = nonce_take(c, &nonce)))
		goto out;
	if ((rc = jose_sign(key, kid, nonce, url, payload, &jws))) {
		rc = provider_fail(STATE_FAIL_CONFIG, cs_error(rc, "issuer %s: %s: %s", c->issuer, op, cs_errmsg()));
		goto out;
	}
	memset(&req, 0, sizeof(req));
	req.op = op;
	req.method = "POST";
	req.url = url;
	req.headers[0] = "Content-Type: application/jose+json";
	req.headers[1] = acc;
	req.body = jws;
	req.body_len = strlen(jws);
	req.retry = HTTP_RETRY_NEVER; /* a replayed JWS is refused anyway (its nonce is spent) */
	rc = http_do(c->http_post, &req, res);
	acme_nonce_keep(c, res);
	if (rc && (!res->status || rc != CS_ETRANSIENT)) /* no answer, or one too large to read */
		rc = provider_http_fail_class(res->status == 200 ? 0 : res->status,
					      cs_error(rc, "issuer %s: %s", c->issuer, cs_errmsg()));
	else
		rc = 0; /* an answer arrived (a 429 or 5xx too): the caller reads the status */
out:
	free(nonce);
	free(jws);
	free(acc);
	return rc;
}

/* 1 when res is a badNonce problem. */
static int is_bad_nonce(const struct http_response *res)
{
	struct acme_problem p;
	int bad;

	if (res->status != 400 || acme_problem_parse(res->body.data, res->body.len, res->status, &p))
		return 0;
	bad = acme_problem_is(&p, "badNonce");
	acme_problem_free(&p);
	return bad;
}

int acme_client_post_key(struct acme_client *c, const struct crypto_key *key, const char *kid, const char *op,
			 const char *url, const char *payload, const char *accept, struct http_response *res,
			 struct acme_problem *prob)
{
	int rc;

	if (prob)
		memset(prob, 0, sizeof(*prob));
	for (int attempt = 0;; attempt++) {
		if ((rc = post_once(c, key, kid, op, url, payload, accept, res)))
			break;
		if (res->status >= 200 && res->status < 300)
			return 0;
		if (attempt >= ACME_BADNONCE_RETRIES || !is_bad_nonce(res))
			break;
		log_debug("issuer %s: %s: badNonce, signing again with a fresh nonce (%d/%d)", c->issuer, op,
			  attempt + 1, ACME_BADNONCE_RETRIES);
		http_response_free(res);
	}
	if (!rc)
		rc = acme_client_fail(c, op, url, res, prob);
	http_response_free(res); /* status and retry_after stay readable */
	return rc;
}

int acme_client_post(struct acme_client *c, const char *op, const char *url, const char *payload, const char *accept,
		     struct http_response *res, struct acme_problem *prob)
{
	const struct crypto_key *key;
	char *kid;
	int rc;

	pthread_mutex_lock(&c->mu);
	key = c->key;
	kid = xstrdup(c->kid);
	pthread_mutex_unlock(&c->mu);
	if (!kid) {
		memset(res, 0, sizeof(*res));
		if (prob)
			memset(prob, 0, sizeof(*prob));
		return cs_error(CS_ERROR, "issuer %s: %s before the ACME account was registered", c->issuer, op);
	}
	rc = acme_client_post_key(c, key, kid, op, url, payload, accept, res, prob);
	free(kid);
	return rc;
}

/* ---------- the account ---------- */

/* The settings the directory demands before registering. */
static int account_preflight(struct acme_client *c, const struct acme_directory *d, const struct acme_account_req *r)
{
	if (r->only_existing)
		return 0;
	if (d->eab_required && !r->eab_kid)
		return provider_fail(STATE_FAIL_CONFIG,
				     cs_error(CS_EINVALID,
					      "issuer %s: the ACME server %s requires an external account binding: set "
					      "externalAccountBinding {keyID, hmacKey} with the values the CA gives",
					      c->issuer, c->directory_url));
	if (d->terms_of_service && !r->terms_agreed)
		return provider_fail(STATE_FAIL_CONFIG,
				     cs_error(CS_EINVALID,
					      "issuer %s: the ACME server has terms of service (%.300s): read them and "
					      "set termsOfServiceAgreed: true",
					      c->issuer, d->terms_of_service));
	return 0;
}

static char *account_payload(const struct acme_client *c, const struct acme_directory *d,
			     const struct acme_account_req *r)
{
	struct buf b = BUF_INIT;
	char *eab;

	buf_puts(&b, "{");
	if (r->email) {
		char *mailto = xasprintf("mailto:%s", r->email);

		buf_puts(&b, "\"contact\":[");
		buf_json_str(&b, mailto);
		buf_puts(&b, "],");
		free(mailto);
	}
	if (r->terms_agreed)
		buf_puts(&b, "\"termsOfServiceAgreed\":true,");
	if (r->only_existing)
		buf_puts(&b, "\"onlyReturnExisting\":true,");
	if (r->eab_kid && r->eab_hmac &&
	    (eab = jose_eab(r->key, r->eab_kid, (const unsigned char *)r->eab_hmac->data, r->eab_hmac->len,
			    d->new_account))) {
		buf_printf(&b, "\"externalAccountBinding\":%s,", eab);
		free(eab);
	}
	(void)c;
	if (b.len > 1)
		b.len--; /* the last comma */
	buf_puts(&b, "}");
	return buf_detach(&b);
}

int acme_client_account(struct acme_client *c, const struct acme_account_req *r, char **url)
{
	const struct acme_directory *d;
	struct http_response res;
	struct acme_wire w = {c->issuer, "acme newAccount", NULL};
	char *payload = NULL, *kid = NULL, *orders = NULL, tp[44];
	const char *loc;
	int rc;

	memset(&res, 0, sizeof(res));
	if ((rc = acme_client_directory(c, &d)) || (rc = account_preflight(c, d, r)))
		return rc;
	if (r->eab_kid && (!r->eab_hmac || !r->eab_hmac->len))
		return provider_fail(
			STATE_FAIL_CONFIG,
			cs_error(CS_EINVALID, "issuer %s: externalAccountBinding.hmacKey is empty", c->issuer));
	if ((rc = jose_thumbprint(r->key, tp)))
		return provider_fail(STATE_FAIL_CONFIG,
				     cs_error(rc, "issuer %s: account key: %s", c->issuer, cs_errmsg()));
	w.url = d->new_account;
	payload = account_payload(c, d, r);
	rc = acme_client_post_key(c, r->key, NULL, "acme newAccount", d->new_account, payload, NULL, &res, NULL);
	if (payload)
		crypto_wipe(payload, strlen(payload)); /* holds the EAB MAC */
	if (rc)
		goto out;
	loc = http_response_header(&res, "location", 0);
	if (!loc || !(kid = acme_url_resolve(d->new_account, loc))) {
		rc = provider_fail(STATE_FAIL_TRANSIENT, acme_wire_fail(&w, "no usable Location (the account URL)"));
		goto out;
	}
	if ((rc = acme_account_parse(&w, res.body.data, res.body.len, &orders)))
		goto out;
	pthread_mutex_lock(&c->mu);
	c->key = r->key;
	free(c->kid);
	c->kid = kid;
	free(c->orders_url);
	c->orders_url = orders;
	memcpy(c->thumbprint, tp, sizeof(tp));
	pthread_mutex_unlock(&c->mu);
	log_debug("issuer %s: ACME account %s (%s)", c->issuer, kid, res.status == 201 ? "registered" : "found");
	if (url)
		*url = xstrdup(kid);
	kid = orders = NULL;
out:
	free(payload);
	free(kid);
	free(orders);
	http_response_free(&res);
	return rc;
}

const char *acme_client_thumbprint(const struct acme_client *c)
{
	return c->thumbprint[0] ? c->thumbprint : NULL;
}
