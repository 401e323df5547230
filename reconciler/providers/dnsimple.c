/*
 * The dnsimple issuer: Let's Encrypt certificates bought and issued through
 * DNSimple (seed 1). Steps:
 *
 *   create/replace: find → purchase (paid, write-ahead) → issue → await → download → install
 *   renew, autoRenew false: renew-purchase (paid, write-ahead) → renew-issue → await → download → install
 *   renew, autoRenew true: find-renewal → download → install
 *   reinstall: reinstall (from the key store; no request) [→ download → install for older records]
 *
 * "find" is also the crash recovery of a purchase: it lists the domain's
 * certificates and adopts one for the same names instead of buying again.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "dnsimple.h"

#define ID_INSTALLED "dnsimple.certificate_id"
#define ID_PENDING "dnsimple.pending_id"
#define ID_RENEWAL "dnsimple.renewal_id"
#define ID_INTENT "dnsimple.purchase_intent"
#define ID_INTENT_RULE "dnsimple.intent" /* the in-flight rule's keys (steps.c) */
#define ID_DOMAIN "dnsimple.domain"
#define ID_CN "dnsimple.common_name"
#define ID_POLLS "dnsimple.polls"
#define AUTO_RENEW_WARN (20 * 86400)

/* ---------- config ---------- */

static void dnsimple_free(void *priv)
{
	struct dnsimple *d = priv;

	if (!d)
		return;
	dnsimple_session_end(d);
	free(d->name);
	config_cred_free(&d->account);
	config_cred_free(&d->token);
	free(d->base_url);
	free(d->ca_file);
	free(d->sig_alg);
	for (size_t i = 0; i < d->n_zones; i++)
		free(d->zones[i]);
	free(d->zones);
	for (size_t i = 0; i < DNSIMPLE_BUY_LOCKS; i++)
		pthread_mutex_destroy(&d->buy_locks[i]);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

static void dnsimple_parse_zones(struct dnsimple *d, const struct ynode *v, const char *file, struct diags *dg)
{
	if (ynode_expect(v, YNODE_SEQ, file, "zones", dg))
		return;
	d->zones = xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++) {
		const char *z, *why;

		if (ynode_string(v->items[i], file, "zones", dg, &z))
			continue;
		if ((why = manifest_check_dns_name(z, 0))) {
			diags_add(dg, file, v->items[i]->line, v->items[i]->col, "zones: \"%s\": %s", z, why);
			continue;
		}
		d->zones[d->n_zones] = xstrdup(z);
		for (char *p = d->zones[d->n_zones]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		d->n_zones++;
	}
}

static int dnsimple_config(const struct ynode *node, const char *file, const char *name, struct diags *dg, void **priv)
{
	static const char *const keys[] = {
		"type",	 "account", "token",	    "baseURL", "sandbox",    "signatureAlgorithm",
		"zones", "caFile",  "pollInterval", "timeout", "rateWindow", NULL};
	struct dnsimple *d = xcalloc(1, sizeof(*d));
	char *what = xasprintf("issuers.%s", name);
	const struct ynode *v;
	size_t before = dg->n;
	const char *s;
	int sandbox = 0;

	pthread_mutex_init(&d->mu, NULL);
	for (size_t i = 0; i < DNSIMPLE_BUY_LOCKS; i++)
		pthread_mutex_init(&d->buy_locks[i], NULL);
	d->name = xstrdup(name);
	d->sig_alg = xstrdup("ECDSA");
	d->poll_min = 15;
	d->poll_max = 600;
	ynode_check_keys(node, keys, file, what, dg);
	if ((v = ynode_get(node, "account")))
		config_parse_cred(v, file, "account", 1, dg, &d->account);
	else
		diags_add(dg, file, node->line, node->col,
			  "%s: account is required (the numeric id, or {env: DNSIMPLE_ACCOUNT})", what);
	if ((v = ynode_get(node, "token")))
		config_parse_cred(v, file, "token", 0, dg, &d->token);
	else
		diags_add(dg, file, node->line, node->col,
			  "%s: token is required ({env: DNSIMPLE_TOKEN} or {file: PATH})", what);
	if ((v = ynode_get(node, "sandbox")))
		ynode_bool(v, file, "sandbox", dg, &sandbox);
	if ((v = ynode_get(node, "baseURL")) && !ynode_string(v, file, "baseURL", dg, &s)) {
		if (strncmp(s, "https://", 8) && strncmp(s, "http://127.", 11) && strncmp(s, "http://localhost", 16))
			diags_add(dg, file, v->line, v->col, "baseURL: must be https:// (plain http only to loopback)");
		d->base_url = xstrdup(s);
		while (util_has_suffix(d->base_url, "/"))
			d->base_url[strlen(d->base_url) - 1] = '\0';
		if (util_has_suffix(d->base_url, "/v2"))
			d->base_url[strlen(d->base_url) - 3] = '\0';
	}
	if (!d->base_url)
		d->base_url = xstrdup(sandbox ? DNSIMPLE_SANDBOX_URL : DNSIMPLE_DEFAULT_URL);
	if ((v = ynode_get(node, "signatureAlgorithm")) && !ynode_string(v, file, "signatureAlgorithm", dg, &s)) {
		if (strcasecmp(s, "ECDSA") && strcasecmp(s, "RSA"))
			diags_add(dg, file, v->line, v->col, "signatureAlgorithm: \"%s\" is not ECDSA or RSA", s);
		free(d->sig_alg);
		d->sig_alg = xstrdup(strcasecmp(s, "RSA") ? "ECDSA" : "RSA");
	}
	if ((v = ynode_get(node, "zones")))
		dnsimple_parse_zones(d, v, file, dg);
	if ((v = ynode_get(node, "caFile")) && !ynode_string(v, file, "caFile", dg, &s))
		d->ca_file = config_resolve_path(file, s);
	if ((v = ynode_get(node, "pollInterval")))
		ynode_duration(v, file, "pollInterval", dg, &d->poll_min);
	d->timeout = 60;
	if ((v = ynode_get(node, "timeout")))
		ynode_duration(v, file, "timeout", dg, &d->timeout);
	d->rate_window = 3600; /* "X-RateLimit-Limit: maximum requests per hour" */
	if ((v = ynode_get(node, "rateWindow")) && !ynode_duration(v, file, "rateWindow", dg, &d->rate_window) &&
	    (d->rate_window < 1 || d->rate_window > 86400))
		diags_add(dg, file, v->line, v->col, "rateWindow: must be between 1s and 24h");
	free(what);
	if (dg->n > before) {
		dnsimple_free(d);
		return CS_EINVALID;
	}
	*priv = d;
	return 0;
}

/* ---------- mapping (pure) ---------- */

void dnsimple_order_free(struct dnsimple_order *o)
{
	free(o->domain);
	free(o->name);
	free(o->common_name);
	for (size_t i = 0; i < o->n_alt; i++)
		free(o->alt[i]);
	free(o->alt);
	memset(o, 0, sizeof(*o));
}

/* 1 if name is domain or under it. */
static int in_domain(const char *name, const char *domain)
{
	size_t n = strlen(name), dl = strlen(domain);

	return n >= dl && !strcmp(name + n - dl, domain) && (n == dl || name[n - dl - 1] == '.');
}

int dnsimple_map(const struct cert_spec *s, char *const *zones, size_t n_zones, struct dnsimple_order *out, char *err,
		 size_t errlen)
{
	const char *domain = s->domain;
	size_t cl, dl;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; !domain && i < n_zones; i++)
		if (in_domain(s->common_name, zones[i]))
			domain = zones[i];
	for (size_t i = 0; !s->domain && i < n_zones; i++)
		if (in_domain(s->common_name, zones[i]) && strlen(zones[i]) > strlen(domain))
			domain = zones[i];
	if (!domain) {
		snprintf(err, errlen, "spec.domain is required (or list the DNSimple zones in the issuer config)");
		return CS_EINVALID;
	}
	for (size_t i = 0; i < s->n_dns; i++) {
		if (!in_domain(s->dns_names[i], domain)) {
			snprintf(err, errlen, "%s is not within the DNSimple domain %s", s->dns_names[i], domain);
			return CS_EINVALID;
		}
	}
	cl = strlen(s->common_name);
	dl = strlen(domain);
	out->domain = xstrdup(domain);
	out->common_name = xstrdup(s->common_name);
	out->name = cl == dl ? xstrdup("") : xstrndup(s->common_name, cl - dl - 1);
	out->alt = xcalloc(s->n_dns + 1, sizeof(char *));
	for (size_t i = 0; i < s->n_dns; i++) {
		const char *n = s->dns_names[i];

		if (!strcmp(n, s->common_name))
			continue;
		/* "www" covers the apex too (§2.3): it is not an alternate name. */
		if (!strcmp(out->name, "www") && !strcmp(n, domain))
			continue;
		out->alt[out->n_alt++] = xstrdup(n);
	}
	return 0; /* spec dns_names are sorted, so alt is sorted */
}

int dnsimple_matches(const struct dnsimple_cert *c, const struct dnsimple_order *o)
{
	if (strcmp(c->common_name, o->common_name) || c->n_alt != o->n_alt)
		return 0;
	for (size_t i = 0; i < o->n_alt; i++)
		if (strcmp(c->alt[i], o->alt[i]))
			return 0;
	return 1;
}

int dnsimple_state_terminal(const char *state)
{
	static const char *const t[] = {"failed", "cancelled", "refunded", "rejected", NULL};

	for (size_t i = 0; t[i]; i++)
		if (!strcmp(state, t[i]))
			return 1;
	return 0;
}

int dnsimple_state_pending(const char *state)
{
	return strcmp(state, "issued") && !dnsimple_state_terminal(state);
}

static void dnsimple_check_spec(const struct issuer *is, const struct cert_spec *s, struct diags *dg)
{
	const struct dnsimple *d = is->priv;
	struct dnsimple_order o;
	char err[256];

	if (dnsimple_map(s, d->zones, d->n_zones, &o, err, sizeof(err)))
		diags_add(dg, s->file, s->line, s->col, "certificate \"%s\": %s (issuer %s)", s->name, err, is->name);
	else if (s->validation)
		diags_add(dg, s->file, s->line, s->col,
			  "certificate \"%s\": spec.validation does not apply to issuer %s (DNSimple validates itself)",
			  s->name, is->name);
	dnsimple_order_free(&o);
}

/* ---------- plan ---------- */

static const char *const seq_create[] = {"find", "purchase", "issue", "await", "download", "install", NULL};
static const char *const seq_renew[] = {"renew-purchase", "renew-issue", "await", "download", "install", NULL};
static const char *const seq_auto[] = {"find-renewal", "download", "install", NULL};
static const char *const seq_reinstall[] = {"reinstall", "download", "install", NULL};

static const char *const *dnsimple_sequence(enum change_kind kind, const struct cert_spec *s, const char *change)
{
	if (kind == CHANGE_RESUME && change && plan_change_parse(change, &kind))
		kind = CHANGE_CREATE;
	switch (kind) {
	case CHANGE_RENEW: return s && s->auto_renew ? seq_auto : seq_renew;
	case CHANGE_REINSTALL: return seq_reinstall;
	default: return seq_create;
	}
}

static int dnsimple_plan(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
			 const struct state_cert *rec, struct plan_steps *out)
{
	const char *const *seq = dnsimple_sequence(kind, s, rec ? rec->change : NULL);
	size_t start = 0;

	(void)is;
	memset(out, 0, sizeof(*out));
	if (kind == CHANGE_RESUME && rec && rec->step) {
		while (seq[start] && strcmp(seq[start], rec->step))
			start++;
		if (!seq[start]) {
			seq = seq_create; /* a step of another sequence (e.g. find after a failed renewal) */
			for (start = 0; seq[start] && strcmp(seq[start], rec->step); start++)
				;
			if (!seq[start])
				start = 0;
		}
	}
	for (size_t i = start; seq[i] && out->n < PLAN_MAX_STEPS; i++) {
		out->steps[out->n++] = seq[i];
		if (!strcmp(seq[i], "purchase") || !strcmp(seq[i], "renew-purchase"))
			out->paid = 1;
		if (!strcmp(seq[i], "reinstall"))
			break; /* download is only the fallback for records without a key store entry */
	}
	if (out->paid)
		out->product = "letsencrypt";
	return 0;
}

/* ---------- steps ---------- */

/* Picks what to do with a DNSimple certificate we hold or adopted. */
static int dnsimple_follow(struct step_ctx *ctx, const struct dnsimple_cert *c, enum step_status *st)
{
	step_set_id_num(ctx->rec, ID_PENDING, c->id);
	if (!strcmp(c->state, "issued"))
		step_next(ctx, "download", st);
	else if (!strcmp(c->state, "new"))
		step_next(ctx, "issue", st);
	else if (dnsimple_state_terminal(c->state)) {
		state_str_set(&ctx->rec->step, "find");
		state_cert_set_id(ctx->rec, ID_PENDING, NULL); /* --retry-failed looks again, then buys */
		ctx->fail_class = STATE_FAIL_REJECTED;
		return cs_error(CS_EINVALID,
				"DNSimple certificate %lld for %s is %s: not purchased again; change the manifest or "
				"apply --retry-failed",
				c->id, c->common_name, c->state);
	} else
		step_next(ctx, "await", st);
	return 0;
}

/* The certificate of l to adopt for o: the newest issued one, else the newest still in progress (NULL if none). */
static const struct dnsimple_cert *dnsimple_best(struct step_ctx *ctx, const struct dnsimple_list *l,
						 const struct dnsimple_order *o)
{
	const struct dnsimple_cert *best = NULL;
	long long installed = step_id_num(ctx->rec, ID_INSTALLED);

	for (size_t i = 0; i < l->n; i++) {
		const struct dnsimple_cert *c = &l->v[i];

		if (c->id == installed || dnsimple_state_terminal(c->state) || !dnsimple_matches(c, o))
			continue;
		if (!strcmp(c->state, "issued") && c->expires_at && c->expires_at < ctx->now + 86400)
			continue; /* about to expire: not worth adopting */
		/* the list is newest first */
		if (!best || (!strcmp(c->state, "issued") && strcmp(best->state, "issued")))
			best = c;
	}
	return best;
}

static int dnsimple_adopt(struct step_ctx *ctx, const struct dnsimple_cert *c, enum step_status *st)
{
	log_emit(LV_INFO, &ctx->log, "adopting DNSimple certificate %lld (%s) instead of buying another", c->id,
		 c->state);
	state_cert_event(ctx->rec, ctx->now, "adopted DNSimple certificate %lld (%s)", c->id, c->state);
	state_cert_set_id(ctx->rec, ID_INTENT, NULL);
	step_intent_clear(ctx, ID_INTENT_RULE);
	return dnsimple_follow(ctx, c, st);
}

/*
 * Looks for a certificate to adopt. After a purchase intent this is the
 * purchase's crash recovery and follows the in-flight rule: it looks only
 * once the first request can no longer land, and buys again only after two
 * empty looks a settle margin apart.
 */
static int step_find(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o, enum step_status *st)
{
	struct dnsimple_list l;
	const struct dnsimple_cert *best = NULL;
	int intent = state_cert_id(ctx->rec, ID_INTENT) != NULL;
	int rc;

	ctx->read_only = 1; /* a look: the engine journals with the next step */
	state_cert_set_id(ctx->rec, ID_DOMAIN, o->domain);
	state_cert_set_id(ctx->rec, ID_CN, o->common_name);
	if (intent && (rc = step_intent_wait(ctx, ID_INTENT_RULE, d->timeout)))
		return rc;
	for (int look = 0;; look++) {
		if ((rc = dnsimple_list_certs(d, o->domain, o, intent, &l)))
			return rc;
		if ((best = dnsimple_best(ctx, &l, o)) || !intent || look == 1)
			break;
		dnsimple_list_clear(&l);
		log_emit(LV_INFO, &ctx->log,
			 "the purchase sent at %s is not at DNSimple; looking once more in %llds before buying",
			 state_cert_id(ctx->rec, ID_INTENT), (long long)step_intent_settle(d->timeout));
		if ((rc = step_sleep_until(ctx, ctx->now + step_intent_settle(d->timeout))))
			return rc;
	}
	if (best) {
		rc = dnsimple_adopt(ctx, best, st);
	} else {
		if (intent) {
			log_emit(LV_WARN, &ctx->log,
				 "the purchase sent at %s never reached DNSimple (two looks after it could have "
				 "landed); buying",
				 state_cert_id(ctx->rec, ID_INTENT));
			state_cert_set_id(ctx->rec, ID_INTENT, NULL);
			step_intent_clear(ctx, ID_INTENT_RULE);
		}
		step_next(ctx, "purchase", st);
	}
	dnsimple_list_clear(&l);
	return rc;
}

/*
 * Buys under the order's lock, on the run's list as it stands under it
 * (every certificate this process bought since the first look is in it, and
 * a purchase of unknown outcome made it stale, so it is listed again): a
 * certificate another worker just bought for the same names, or a lost
 * purchase that landed since, is adopted, never bought twice. Orders for
 * other names buy in parallel.
 */
static int step_purchase(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o, enum step_status *st)
{
	pthread_mutex_t *mu = dnsimple_order_lock(d, o);
	const struct dnsimple_cert *best;
	struct dnsimple_list l;
	long long id = 0;
	char when[32];
	int rc;

	pthread_mutex_lock(mu);
	if ((rc = dnsimple_list_certs(d, o->domain, o, 0, &l)))
		goto out;
	if ((best = dnsimple_best(ctx, &l, o))) {
		rc = dnsimple_adopt(ctx, best, st);
		goto out;
	}
	/* Write-ahead: a crash from here on is recovered by "find", never by a blind second purchase. */
	util_fmt_time(ctx->now, when);
	state_cert_set_id(ctx->rec, ID_INTENT, when);
	step_intent_begin(ctx, ID_INTENT_RULE, d->timeout);
	state_str_set(&ctx->rec->step, "find");
	if ((rc = engine_journal(ctx)))
		goto out;
	log_emit(LV_INFO, &ctx->log, "purchasing a DNSimple certificate");
	step_intent_send_hook(ctx, ID_INTENT_RULE, d->timeout);
	rc = dnsimple_purchase(d, o, ctx->spec->auto_renew, &id);
	step_intent_send_hook(NULL, NULL, 0);
	dnsimple_list_bought(d, o, rc == 0, id);
	if (rc)
		goto out; /* the step stays "find": a retry looks (by the in-flight rule) before it buys */
	log_emit(LV_INFO, &ctx->log, "purchased DNSimple certificate %lld", id);
	step_set_id_num(ctx->rec, ID_PENDING, id);
	state_cert_set_id(ctx->rec, ID_INTENT, NULL);
	step_intent_clear(ctx, ID_INTENT_RULE);
	state_cert_event(ctx->rec, ctx->now, "purchased DNSimple certificate %lld", id);
	step_next(ctx, "issue", st);
out:
	pthread_mutex_unlock(mu);
	dnsimple_list_clear(&l);
	return rc;
}

static int step_issue(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o, enum step_status *st)
{
	struct dnsimple_cert c;
	long long id = step_id_num(ctx->rec, ID_PENDING);
	int rc = dnsimple_issue(d, o->domain, id, &c);

	if (rc == CS_EINVALID || rc == CS_ETRANSIENT) {
		/* Already issuing (a lost answer, or a concurrent issue)? Ask. */
		int grc = dnsimple_get_cert(d, o->domain, id, &c);

		if (grc)
			return rc;
		if (!strcmp(c.state, "new")) {
			dnsimple_cert_clear(&c);
			return rc;
		}
	} else if (rc) {
		return rc;
	}
	step_set_id_num(ctx->rec, ID_POLLS, 0);
	rc = dnsimple_follow(ctx, &c, st);
	if (!rc && !strcmp(ctx->rec->step, "await"))
		step_poll_later(ctx, ID_POLLS, d->poll_min, d->poll_max, st);
	dnsimple_cert_clear(&c);
	return rc;
}

static int step_await(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o, enum step_status *st)
{
	struct dnsimple_cert c;
	int rc = dnsimple_get_cert(d, o->domain, step_id_num(ctx->rec, ID_PENDING), &c);

	ctx->read_only = 1; /* a GET: the engine journals with the next step */
	if (rc == CS_ENOTFOUND) {
		long long gone = step_id_num(ctx->rec, ID_PENDING);

		/* Never bought again silently: --retry-failed (or run's explicit retry) looks again, then buys. */
		state_str_set(&ctx->rec->step, "find");
		state_cert_set_id(ctx->rec, ID_PENDING, NULL);
		state_cert_set_id(ctx->rec, ID_POLLS, NULL);
		state_cert_event(ctx->rec, ctx->now, "pending DNSimple certificate %lld is gone (HTTP 404)", gone);
		ctx->fail_class = STATE_FAIL_REJECTED;
		return cs_error(
			CS_EINVALID,
			"%s: the pending DNSimple certificate %lld is gone at DNSimple (HTTP 404); not purchased "
			"again without you: apply --retry-failed buys a new one",
			ctx->rec->name, gone);
	}
	if (rc)
		return rc;
	rc = dnsimple_follow(ctx, &c, st);
	if (!rc && !strcmp(ctx->rec->step, "await"))
		step_poll_later(ctx, ID_POLLS, d->poll_min, d->poll_max, st);
	dnsimple_cert_clear(&c);
	return rc;
}

static int step_download(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o, enum step_status *st)
{
	long long id = step_id_num(ctx->rec, ID_PENDING) ? step_id_num(ctx->rec, ID_PENDING)
							 : step_id_num(ctx->rec, ID_INSTALLED);
	int rc = dnsimple_download(d, o->domain, id, &ctx->mat);

	ctx->read_only = 1; /* GETs into memory: install journals */
	if (rc == CS_ETRANSIENT && cs_errmsg()[0] && strstr(cs_errmsg(), "HTTP 428")) {
		/* Not issued yet after all (§2.9): back to waiting. */
		state_str_set(&ctx->rec->step, "await");
		step_poll_later(ctx, ID_POLLS, d->poll_min, d->poll_max, st);
		return 0;
	}
	if (rc)
		return rc;
	step_next(ctx, "install", st);
	return 0;
}

/* Lost outputs: the installed certificate and key from the key store, with no request to DNSimple. */
static int step_reinstall(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o,
			  enum step_status *st)
{
	(void)d;
	(void)o;
	return step_reinstall_or(ctx, "download", st);
}

static int step_install(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o, enum step_status *st)
{
	long long id = step_id_num(ctx->rec, ID_PENDING);
	int rc;

	(void)d;
	(void)o;
	if (!material_present(&ctx->mat) && engine_pending_material(ctx)) {
		step_next(ctx, "download", st); /* resumed: the material was only in memory */
		return 0;
	}
	if ((rc = engine_install(ctx)))
		return rc;
	if (id)
		step_set_id_num(ctx->rec, ID_INSTALLED, id);
	state_cert_set_id(ctx->rec, ID_PENDING, NULL);
	state_cert_set_id(ctx->rec, ID_RENEWAL, NULL);
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	*st = STEP_DONE;
	return 0;
}

static int step_renew_purchase(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o,
			       enum step_status *st)
{
	long long old = step_id_num(ctx->rec, ID_INSTALLED), renewal = 0, fresh = 0;
	char when[32];
	int rc;

	if (!old) {
		step_next(ctx, "find", st);
		return 0;
	}
	util_fmt_time(ctx->now, when);
	state_cert_set_id(ctx->rec, ID_INTENT, when);
	step_intent_begin(ctx, ID_INTENT_RULE, d->timeout);
	state_str_set(&ctx->rec->step, "find"); /* recovery adopts the renewal's new certificate */
	if ((rc = engine_journal(ctx)))
		return rc;
	log_emit(LV_INFO, &ctx->log, "purchasing a DNSimple renewal of certificate %lld", old);
	step_intent_send_hook(ctx, ID_INTENT_RULE, d->timeout);
	rc = dnsimple_renew_purchase(d, o->domain, old, ctx->spec->auto_renew, &renewal, &fresh);
	step_intent_send_hook(NULL, NULL, 0);
	if (rc)
		return rc;
	log_emit(LV_INFO, &ctx->log, "purchased DNSimple renewal %lld (certificate %lld)", renewal, fresh);
	step_set_id_num(ctx->rec, ID_RENEWAL, renewal);
	step_set_id_num(ctx->rec, ID_PENDING, fresh);
	state_cert_set_id(ctx->rec, ID_INTENT, NULL);
	step_intent_clear(ctx, ID_INTENT_RULE);
	state_cert_event(ctx->rec, ctx->now, "purchased DNSimple renewal %lld (certificate %lld)", renewal, fresh);
	step_next(ctx, "renew-issue", st);
	return 0;
}

static int step_renew_issue(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o,
			    enum step_status *st)
{
	struct dnsimple_cert c;
	int rc = dnsimple_renew_issue(d, o->domain, step_id_num(ctx->rec, ID_INSTALLED),
				      step_id_num(ctx->rec, ID_RENEWAL), &c);

	if (rc == CS_EINVALID || rc == CS_ETRANSIENT) {
		/* Already issuing (a lost answer, or a crash after the request)? The new certificate's state says. */
		int grc = dnsimple_get_cert(d, o->domain, step_id_num(ctx->rec, ID_PENDING), &c);

		if (grc)
			return rc;
		if (!strcmp(c.state, "new")) {
			dnsimple_cert_clear(&c);
			return rc; /* the step stays renew-issue */
		}
	} else if (rc) {
		return rc;
	}
	step_set_id_num(ctx->rec, ID_POLLS, 0);
	rc = dnsimple_follow(ctx, &c, st);
	if (!rc && !strcmp(ctx->rec->step, "await"))
		step_poll_later(ctx, ID_POLLS, d->poll_min, d->poll_max, st);
	dnsimple_cert_clear(&c);
	return rc;
}

static int step_find_renewal(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o,
			     enum step_status *st)
{
	struct dnsimple_list l;
	const struct dnsimple_cert *best = NULL;
	long long installed = step_id_num(ctx->rec, ID_INSTALLED);
	int rc;

	ctx->read_only = 1; /* a look: the engine journals with the next step */
	if ((rc = dnsimple_list_certs(d, o->domain, o, 1, &l)))
		return rc;
	for (size_t i = 0; i < l.n; i++) {
		const struct dnsimple_cert *c = &l.v[i];

		if (c->id != installed && !strcmp(c->state, "issued") && dnsimple_matches(c, o) &&
		    c->expires_at > ctx->rec->not_after && (!best || c->expires_at > best->expires_at))
			best = c;
	}
	if (best) {
		log_emit(LV_INFO, &ctx->log, "installing DNSimple's automatic renewal (certificate %lld)", best->id);
		step_set_id_num(ctx->rec, ID_PENDING, best->id);
		step_next(ctx, "download", st);
		dnsimple_list_clear(&l);
		return 0;
	}
	dnsimple_list_clear(&l);
	if (ctx->rec->not_after - ctx->now < AUTO_RENEW_WARN)
		log_emit(LV_WARN, &ctx->log,
			 "DNSimple has not auto-renewed this certificate and it expires in %lld days",
			 (long long)((ctx->rec->not_after - ctx->now) / 86400));
	ctx->wait_until = ctx->now + 6 * 3600;
	*st = STEP_WAIT;
	return 0;
}

typedef int (*dnsimple_step_fn)(struct step_ctx *ctx, struct dnsimple *d, const struct dnsimple_order *o,
				enum step_status *st);

static const struct {
	const char *name;
	dnsimple_step_fn run;
} dnsimple_steps[] = {
	{"find", step_find},
	{"purchase", step_purchase},
	{"issue", step_issue},
	{"await", step_await},
	{"download", step_download},
	{"install", step_install},
	{"reinstall", step_reinstall},
	{"renew-purchase", step_renew_purchase},
	{"renew-issue", step_renew_issue},
	{"find-renewal", step_find_renewal},
};

static int dnsimple_step(struct step_ctx *ctx, enum step_status *st)
{
	struct dnsimple *d = ctx->issuer->priv;
	struct dnsimple_order o;
	const char *step = ctx->rec->step ? ctx->rec->step : "";
	dnsimple_step_fn run = NULL;
	char err[256];
	int rc;

	for (size_t i = 0; i < sizeof(dnsimple_steps) / sizeof(dnsimple_steps[0]) && !run; i++)
		if (!strcmp(step, dnsimple_steps[i].name))
			run = dnsimple_steps[i].run;
	if (!run)
		return cs_error(CS_EINVALID, "%s: the dnsimple issuer has no step \"%s\"", ctx->rec->name, step);
	if (dnsimple_map(ctx->spec, d->zones, d->n_zones, &o, err, sizeof(err)))
		return cs_error(CS_EINVALID, "%s: %s", ctx->rec->name, err);
	/* install and reinstall need no session: the material is in memory or in the key store */
	rc = strcmp(step, "install") && strcmp(step, "reinstall") ? dnsimple_session(d) : 0;
	if (!rc)
		rc = run(ctx, d, &o, st);
	dnsimple_order_free(&o);
	return rc;
}

/* DNSimple's "www" certificate covers the apex too (§2.3), whether or not the manifest lists it. */
static void dnsimple_extra_names(const struct issuer *is, const struct cert_spec *s, char ***out, size_t *n)
{
	const struct dnsimple *d = is->priv;
	struct dnsimple_order o;
	char err[256];

	*out = NULL;
	*n = 0;
	if (dnsimple_map(s, d->zones, d->n_zones, &o, err, sizeof(err)) == 0 && !strcmp(o.name, "www")) {
		*out = xcalloc(2, sizeof(char *));
		(*out)[(*n)++] = xstrdup(o.domain);
	}
	dnsimple_order_free(&o);
}

/* ---------- refresh ---------- */

static int dnsimple_refresh(const struct issuer *is, const struct state_cert *rec, int64_t now,
			    struct plan_drift *drift)
{
	struct dnsimple *d = is->priv;
	const char *domain = state_cert_id(rec, ID_DOMAIN);
	long long id = step_id_num(rec, ID_INSTALLED);
	struct dnsimple_cert c;
	int rc;

	(void)now;
	if (!domain || !id)
		return 0;
	if ((rc = dnsimple_session(d)))
		return rc;
	rc = dnsimple_get_cert(d, domain, id, &c);
	if (rc == CS_ENOTFOUND) {
		drift->what = xasprintf("DNSimple certificate %lld is gone", id);
		drift->needs_new = 1;
		return 0;
	}
	if (rc)
		return rc;
	if (dnsimple_state_terminal(c.state)) {
		drift->what = xasprintf("DNSimple certificate %lld is %s", id, c.state);
		drift->needs_new = 1;
	} else if (c.expires_at && rec->not_after && c.expires_at != rec->not_after) {
		drift->what =
			xasprintf("DNSimple certificate %lld expires at a different time than the installed one", id);
	}
	dnsimple_cert_clear(&c);
	return 0;
}

/* Provider requests per step, for the finish estimate (find's list is cached: one per run). */
static const struct {
	const char *step;
	int requests;
} dnsimple_step_requests[] = {
	{"find", 0},	{"purchase", 1},  {"issue", 1},		 {"await", 1},	     {"download", 2},
	{"install", 0}, {"reinstall", 0}, {"renew-purchase", 1}, {"renew-issue", 1}, {"find-renewal", 1},
};

static int dnsimple_step_cost(const char *step)
{
	for (size_t i = 0; i < sizeof(dnsimple_step_requests) / sizeof(dnsimple_step_requests[0]); i++)
		if (!strcmp(step, dnsimple_step_requests[i].step))
			return dnsimple_step_requests[i].requests;
	return 1;
}

static int dnsimple_requests_left(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
				  const struct state_cert *rec)
{
	const char *const *seq = dnsimple_sequence(kind, s, rec ? rec->change : NULL);
	size_t i = 0;
	int n = 0;

	(void)is;
	if (kind == CHANGE_REMOVE)
		return 0;
	if (rec && rec->step) {
		while (seq[i] && strcmp(seq[i], rec->step))
			i++;
		if (!seq[i]) {
			seq = seq_create; /* a step of another sequence (find after a failed renewal) */
			for (i = 0; seq[i] && strcmp(seq[i], rec->step); i++)
				;
			if (!seq[i])
				i = 0;
		}
	}
	for (; seq[i]; i++)
		n += dnsimple_step_cost(seq[i]);
	return n;
}

static void dnsimple_budget(const struct issuer *is, struct provider_budget *out)
{
	struct dnsimple *d = is->priv;
	struct http_ratelimit rl;
	struct http_client_stats hs;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&d->mu);
	out->window = d->rate_window;
	if (d->http) {
		http_client_ratelimit(d->http, &rl);
		http_client_stats(d->http, &hs);
		out->have = rl.have && rl.limit > 0;
		out->limit = rl.limit;
		out->remaining = rl.remaining;
		out->reset = rl.reset;
		out->sent = hs.answered + hs.inflight;
		out->inflight = hs.inflight;
		out->busy_ms = hs.busy_ms;
		out->waited_ms = hs.waited_ms;
	}
	pthread_mutex_unlock(&d->mu);
}

static void dnsimple_end_run(const struct issuer *is)
{
	dnsimple_session_end(is->priv);
}

static const struct dns_driver dnsimple_dns = {
	.txt_create = dnsimple_txt_create,
	.txt_delete = dnsimple_txt_delete,
	.zone_for = dnsimple_dns_zone_for,
};

const struct provider_ops provider_dnsimple = {
	.type = "dnsimple",
	.config_parse = dnsimple_config,
	.config_free = dnsimple_free,
	.check_spec = dnsimple_check_spec,
	.plan = dnsimple_plan,
	.step = dnsimple_step,
	.refresh = dnsimple_refresh,
	.release = NULL,
	.extra_names = dnsimple_extra_names,
	.webhook = dnsimple_webhook,
	.ensure_webhook = dnsimple_ensure_webhook,
	.dns = &dnsimple_dns,
	.end_run = dnsimple_end_run,
	.check = dnsimple_check,
	.account_plan = dnsimple_account_plan,
	.requests_left = dnsimple_requests_left,
	.budget = dnsimple_budget,
};

/* ---------- import (state import) ---------- */

int dnsimple_import(const struct issuer *is, const struct cert_spec *spec, struct state_cert *rec, long long id)
{
	const struct dnsimple *d = is->priv;
	struct dnsimple_order o;
	char err[512];

	if (dnsimple_map(spec, d->zones, d->n_zones, &o, err, sizeof(err)))
		return cs_error(CS_EINVALID, "%s: %s", spec->name, err);
	state_cert_set_id(rec, ID_DOMAIN, o.domain);
	state_cert_set_id(rec, ID_CN, o.common_name);
	step_set_id_num(rec, ID_PENDING, id);
	step_set_id_num(rec, ID_POLLS, 0);
	/* "await" asks DNSimple for the certificate and follows its state: issued → download → install. */
	state_str_set(&rec->step, "await");
	dnsimple_order_free(&o);
	return 0;
}
