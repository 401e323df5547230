/* ACME orders, authorizations, challenges and certificate download (RFC 8555 §7.1.3, §7.4, §7.5, §7.4.2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "acme_client_int.h"
#include "acme_wire.h"

/* Parse failures of an answer are transient (the server may answer sanely next time). */
static int wire_failed(int rc)
{
	return rc == CS_ETRANSIENT ? provider_fail(STATE_FAIL_TRANSIENT, rc) : rc;
}

/* ---------- orders ---------- */

/* Parses the order of a 2xx answer into out, with its URL and Retry-After. */
static int order_from(struct acme_client *c, const char *op, const char *req_url, const char *order_url,
		      const struct http_response *res, struct acme_order *out)
{
	struct acme_wire w = {c->issuer, op, req_url};
	int rc = acme_order_parse(&w, res->body.data, res->body.len, out);

	if (rc)
		return wire_failed(rc);
	out->url = xstrdup(order_url);
	out->retry_after = res->retry_after;
	return 0;
}

int acme_order_new(struct acme_client *c, char *const *names, size_t n, const char *profile, const char *replaces,
		   struct acme_order *out)
{
	const struct acme_directory *d;
	struct acme_wire w = {c->issuer, "acme newOrder", NULL};
	struct http_response res;
	char *payload = NULL, *url = NULL;
	const char *loc;
	int rc;

	if ((rc = acme_order_payload(c->issuer, names, n, profile, replaces, &payload)) ||
	    (rc = acme_client_directory(c, &d)))
		goto done;
	w.url = d->new_order;
	if ((rc = acme_client_post(c, "acme newOrder", d->new_order, payload, NULL, &res, NULL)))
		goto out;
	loc = http_response_header(&res, "location", 0);
	if (!loc || !(url = acme_url_resolve(d->new_order, loc))) {
		rc = wire_failed(acme_wire_fail(&w, "no usable Location (the order URL)"));
		goto out;
	}
	rc = order_from(c, "acme newOrder", d->new_order, url, &res, out);
out:
	http_response_free(&res);
done:
	free(payload);
	free(url);
	return rc;
}

int acme_order_get(struct acme_client *c, const char *url, struct acme_order *out)
{
	struct http_response res;
	int rc = acme_client_post(c, "acme getOrder", url, NULL, NULL, &res, NULL);

	if (!rc)
		rc = order_from(c, "acme getOrder", url, url, &res, out);
	http_response_free(&res);
	return rc;
}

int acme_order_finalize(struct acme_client *c, const struct acme_order *o, const struct buf *csr_der,
			struct acme_order *out)
{
	struct http_response res;
	char *csr = jose_b64url(csr_der->data, csr_der->len), *payload = xasprintf("{\"csr\":\"%s\"}", csr);
	int rc;

	if (!o->finalize) {
		rc = cs_error(CS_EINVALID, "issuer %s: the order %s has no finalize URL", c->issuer, o->url);
		goto out;
	}
	/* orderNotReady is CS_ECONFLICT through the problem table: the caller reads the order again */
	if (!(rc = acme_client_post(c, "acme finalize", o->finalize, payload, NULL, &res, NULL)))
		rc = order_from(c, "acme finalize", o->finalize, o->url, &res, out);
	http_response_free(&res);
out:
	free(csr);
	free(payload);
	return rc;
}

int acme_account_orders(struct acme_client *c, char ***urls, size_t *n)
{
	char **got = NULL, *page, *next = NULL;
	size_t n_got = 0;
	int rc = 0;

	pthread_mutex_lock(&c->mu);
	page = xstrdup(c->orders_url);
	pthread_mutex_unlock(&c->mu);
	if (!page)
		return cs_error(CS_ENOTFOUND, "issuer %s: the ACME server lists no orders for the account", c->issuer);
	for (int pages = 0; page && !rc; pages++) {
		struct acme_wire w = {c->issuer, "acme listOrders", page};
		struct http_response res;

		if (pages == ACME_MAX_ORDER_PAGES) {
			log_warn(
				"issuer %s: the account's orders list has more than %d pages; read the first ones only",
				c->issuer, ACME_MAX_ORDER_PAGES);
			break;
		}
		if (!(rc = acme_client_post(c, "acme listOrders", page, NULL, NULL, &res, NULL)) &&
		    !(rc = wire_failed(acme_orders_page_parse(&w, res.body.data, res.body.len, &got, &n_got))) &&
		    acme_links(&res, page, "next", &next, 1) && !strcmp(next, page)) {
			free(next); /* a page naming itself as the next one */
			next = NULL;
		}
		http_response_free(&res);
		free(page);
		page = next;
		next = NULL;
	}
	free(page);
	if (rc) {
		for (size_t i = 0; i < n_got; i++)
			free(got[i]);
		free(got);
		return rc;
	}
	*urls = got ? got : xcalloc(1, sizeof(*got));
	*n = n_got;
	return 0;
}

/* ---------- authorizations and challenges ---------- */

int acme_authz_get(struct acme_client *c, const char *url, struct acme_authz *out)
{
	struct acme_wire w = {c->issuer, "acme getAuthorization", url};
	struct http_response res;
	int rc = acme_client_post(c, "acme getAuthorization", url, NULL, NULL, &res, NULL);

	if (!rc && !(rc = wire_failed(acme_authz_parse(&w, res.body.data, res.body.len, out))))
		out->retry_after = res.retry_after;
	http_response_free(&res);
	return rc;
}

int acme_challenge_respond(struct acme_client *c, const char *url, struct acme_challenge *out)
{
	struct acme_wire w = {c->issuer, "acme respondChallenge", url};
	struct http_response res;
	struct acme_challenge ch;
	int rc = acme_client_post(c, "acme respondChallenge", url, "{}", NULL, &res, NULL);

	if (!rc && !(rc = wire_failed(acme_challenge_parse(&w, res.body.data, res.body.len, &ch)))) {
		if (out)
			*out = ch;
		else
			acme_challenge_free(&ch);
	}
	http_response_free(&res);
	return rc;
}

/* ---------- certificate download ---------- */

#define ACME_PEM_CHAIN "application/pem-certificate-chain"

/* The issuer CN of the chain's topmost certificate (*cn NULL when it has none). CS_ETRANSIENT if no chain. */
static int chain_top_issuer(const struct acme_wire *w, const struct http_response *res, char **cn)
{
	struct crypto_cert **v = NULL;
	struct crypto_cert_info info;
	size_t n = 0;
	int rc;

	*cn = NULL;
	if (crypto_certs_from_pem(res->body.data, res->body.len, "the certificate chain", &v, &n) || !n)
		return wire_failed(acme_wire_fail(w, "not a PEM certificate chain"));
	memset(&info, 0, sizeof(info));
	if (!(rc = crypto_cert_info(v[n - 1], &info))) {
		*cn = info.issuer_cn;
		info.issuer_cn = NULL;
	}
	crypto_cert_info_free(&info);
	crypto_certs_free(v, n);
	return rc;
}

/* Downloads one chain (POST-as-GET): res filled, *issuer_cn the topmost certificate's issuer CN. */
static int download_one(struct acme_client *c, const char *url, struct http_response *res, char **issuer_cn)
{
	struct acme_wire w = {c->issuer, "acme downloadCertificate", url};
	int rc = acme_client_post(c, "acme downloadCertificate", url, NULL, ACME_PEM_CHAIN, res, NULL);

	if (!rc)
		rc = chain_top_issuer(&w, res, issuer_cn);
	return rc;
}

int acme_download(struct acme_client *c, const char *cert_url, const char *preferred, struct buf *pem)
{
	struct http_response res, alt_res;
	char *alts[ACME_MAX_ALTERNATES], *cn = NULL, *alt_cn = NULL;
	size_t n_alts = 0;
	const struct buf *chosen;
	int rc;

	memset(&alt_res, 0, sizeof(alt_res));
	if ((rc = download_one(c, cert_url, &res, &cn)))
		goto out;
	chosen = &res.body;
	if (preferred && !util_streq(cn, preferred))
		n_alts = acme_links(&res, cert_url, "alternate", alts, ACME_MAX_ALTERNATES);
	for (size_t i = 0; i < n_alts && chosen == &res.body; i++) {
		http_response_free(&alt_res);
		free(alt_cn);
		alt_cn = NULL;
		/* an alternate that fails to download is skipped: the default chain is still good */
		if (download_one(c, alts[i], &alt_res, &alt_cn))
			log_warn("%s", cs_errmsg());
		else if (util_streq(alt_cn, preferred))
			chosen = &alt_res.body;
	}
	if (preferred && chosen == &res.body && !util_streq(cn, preferred))
		log_info("issuer %s: no chain offered tops out at \"%s\"; keeping the default chain (issuer %s)",
			 c->issuer, preferred, cn ? cn : "without a CN");
	buf_clear(pem);
	rc = buf_append(pem, chosen->data, chosen->len);
out:
	for (size_t i = 0; i < n_alts; i++)
		free(alts[i]);
	http_response_free(&res);
	http_response_free(&alt_res);
	free(cn);
	free(alt_cn);
	return rc;
}
