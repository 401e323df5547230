/* ACME renewal information (RFC 9773): the window after an install, its re-check, what a renewal replaces. */
#include "acme.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"

#define ARI_USER_AGENT "certsync/0.1.0"
#define ARI_RETRY_FAILED 3600	/* a window that could not be asked for is asked again after this */
#define ARI_RETRY_DEFAULT 21600 /* an answer without Retry-After: asked again after this (RFC 9773 §4.3) */

/* ---------- choosing the point ---------- */

int64_t acme_ari_pick(int64_t start, int64_t end, uint64_t r)
{
	uint64_t span;

	if (end <= start)
		return start;
	span = (uint64_t)(end - start) + 1;
	return start + (int64_t)(r % span);
}

static void ari_set_time(struct state_cert *rec, const char *key, int64_t t)
{
	char v[32];

	if (t <= 0) {
		state_cert_set_id(rec, key, NULL);
		return;
	}
	snprintf(v, sizeof(v), "%" PRId64, t);
	state_cert_set_id(rec, key, v);
}

/* Forgets what was recorded about the window of a certificate that is no longer the installed one. */
static void ari_clear(struct state_cert *rec)
{
	static const char *const keys[] = {ACME_ID_ARI_ID,   ACME_ID_ARI_START,	 ACME_ID_ARI_END, ACME_ID_ARI_AT,
					   ACME_ID_ARI_NEXT, PLAN_ID_ARI_SERIAL, ACME_ID_REPLACES};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		state_cert_set_id(rec, keys[i], NULL);
}

/*
 * Asks the CA for rec's window (rec records the ARI id) and records it: the
 * point is kept while it stays inside the window, else chosen anew. A
 * failure is logged and asked again after ARI_RETRY_FAILED. Returns 1 when
 * rec changed.
 */
static int ari_ask(struct acme_client *c, const struct log_ctx *lc, struct state_cert *rec, int64_t now)
{
	const struct acme_directory *dir = NULL;
	struct acme_renewal_info ri;
	const char *id = state_cert_id(rec, ACME_ID_ARI_ID);
	int64_t at = state_cert_id_time(rec, ACME_ID_ARI_AT);
	uint64_t r = 0;
	int rc;

	memset(&ri, 0, sizeof(ri));
	if (!id)
		return 0;
	if (acme_client_directory(c, &dir) == 0 && !dir->renewal_info) {
		/* The CA offers no renewal information: renewBefore alone decides, nothing to ask again. */
		state_cert_set_id(rec, ACME_ID_ARI_NEXT, NULL);
		return 1;
	}
	if (dir && (rc = acme_ari_get(c, id, &ri)) == 0 && ri.end < ri.start)
		rc = cs_error(CS_EINVALID, "renewalInfo for %s: the suggested window ends before it starts", id);
	if (!dir || rc) {
		log_emit(LV_WARN, lc, "renewal information (ARI) not available, asked again in %ds: %s",
			 ARI_RETRY_FAILED, cs_errmsg());
		ari_set_time(rec, ACME_ID_ARI_NEXT, now + ARI_RETRY_FAILED);
		acme_renewal_info_free(&ri);
		return 1;
	}
	if (!at || at < ri.start || at > ri.end) {
		if (crypto_random(&r, sizeof(r)))
			r = (uint64_t)util_mono_ms() ^ util_hash_str(rec->name); /* the RNG failed: still spread */
		at = acme_ari_pick(ri.start, ri.end, r);
	}
	ari_set_time(rec, ACME_ID_ARI_START, ri.start);
	ari_set_time(rec, ACME_ID_ARI_END, ri.end);
	ari_set_time(rec, ACME_ID_ARI_AT, at);
	ari_set_time(rec, ACME_ID_ARI_NEXT, ri.retry_after > now ? ri.retry_after : now + ARI_RETRY_DEFAULT);
	{
		char s[32], e[32], a[32];

		util_fmt_time(ri.start, s);
		util_fmt_time(ri.end, e);
		util_fmt_time(at, a);
		log_emit(LV_INFO, lc, "renewal window suggested by the CA (ARI): %s → %s; renewing at %s%s%s", s, e, a,
			 ri.explanation ? "; explanation: " : "", ri.explanation ? ri.explanation : "");
	}
	acme_renewal_info_free(&ri);
	return 1;
}

void acme_ari_after_install(struct step_ctx *ctx, struct acme *a, struct acme_client *c, const char *cert_pem,
			    size_t len)
{
	struct state_cert *rec = ctx->rec;
	char *id = NULL;

	(void)a;
	ari_clear(rec);
	if (acme_ari_cert_id(cert_pem, len, &id)) {
		log_emit(LV_WARN, &ctx->log, "no renewal information (ARI) for this certificate: %s", cs_errmsg());
		return;
	}
	state_cert_set_id(rec, ACME_ID_ARI_ID, id);
	state_cert_set_id(rec, PLAN_ID_ARI_SERIAL, rec->serial);
	free(id);
	ari_ask(c, &ctx->log, rec, ctx->now);
}

char *acme_ari_replaces(const struct step_ctx *ctx)
{
	const struct state_cert *rec = ctx->rec;
	const char *v = state_cert_id(rec, ACME_ID_REPLACES);

	if (v)
		return xstrdup(v); /* journaled by an earlier attempt of this order */
	/* Only a renewal replaces: a new spec or issuer is another certificate, not its successor. */
	if (ctx->kind != CHANGE_RENEW || !rec->serial ||
	    !util_streq(state_cert_id(rec, PLAN_ID_ARI_SERIAL), rec->serial))
		return NULL;
	return xstrdup(state_cert_id(rec, ACME_ID_ARI_ID));
}

/* ---------- certsync run: asking again ---------- */

int64_t acme_ari_upkeep_due(const struct issuer *is, const struct state_cert *rec)
{
	(void)is;
	if (rec->phase != PHASE_READY || !rec->serial || !state_cert_id(rec, ACME_ID_ARI_ID) ||
	    !util_streq(state_cert_id(rec, PLAN_ID_ARI_SERIAL), rec->serial))
		return 0;
	return state_cert_id_time(rec, ACME_ID_ARI_NEXT);
}

int acme_ari_upkeep(const struct issuer *is, struct state_cert *rec, int64_t now)
{
	struct acme *a = is->priv;
	struct acme_client *c = NULL, *own = NULL;
	struct acme_client_opts o;
	struct log_ctx lc = {rec->name, is->name, "ari", NULL};
	int changed;

	pthread_mutex_lock(&a->mu);
	c = a->client;
	pthread_mutex_unlock(&a->mu);
	if (!c) {
		/* renewalInfo needs no account: a client of its own, not the run's session. */
		memset(&o, 0, sizeof(o));
		o.issuer = a->name;
		o.directory = a->directory;
		o.ca_file = a->ca_file;
		o.timeout = a->timeout;
		o.user_agent = ARI_USER_AGENT;
		if (acme_client_new(&o, &own)) {
			log_emit(LV_WARN, &lc, "renewal information (ARI) not asked, again in %ds: %s",
				 ARI_RETRY_FAILED, cs_errmsg());
			ari_set_time(rec, ACME_ID_ARI_NEXT, now + ARI_RETRY_FAILED);
			return 1;
		}
		c = own;
	}
	changed = ari_ask(c, &lc, rec, now);
	acme_client_free(own);
	return changed;
}
