/*
 * The acme issuer (RFC 8555, docs/acme.md). Steps:
 *
 *   create/replace/renew: prepare → order → authorize → finalize → download → install → cleanup
 *   reinstall: reinstall (from the key store; no request) [→ download → install for older records]
 *
 * Crash safety: the key and CSR are in the key store before the order; the
 * order URL is journaled as soon as newOrder answers (and "ordering" before
 * it is sent, so a lost answer is looked for in the account's orders); every
 * challenge answer is journaled before it is placed; the step "finalize" is
 * journaled before the finalize request, and a resumed finalize reads the
 * order first. ACME certificates are free: no step is paid.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "acme.h"

#ifndef CERTSYNC_VERSION
#define CERTSYNC_VERSION "0.1.0"
#endif

#define ID_ORDER "acme.order"			       /* the order URL */
#define ID_ORDERING "acme.ordering"		       /* "1" while a newOrder is out (its answer not journaled) */
#define ID_CERT "acme.certificate"		       /* the valid order's certificate URL */
#define ID_INSTALLED_CERT "acme.installed_certificate" /* the installed certificate's URL (free download) */
#define ID_POLLS "acme.polls"
#define SLOT_ACCOUNT "account-key"
#define INLINE_POLL_MS 3000 /* polls inside a step before it parks (the engine's waits are whole seconds) */
#define FIRST_POLL_MS 250
#define LOST_ORDER_LOOKS 50 /* orders of the account read when an order's answer was lost */

/* ---------- plan ---------- */

static const char *const seq_order[] = {"prepare",  "order",   "authorize", "finalize",
					"download", "install", "cleanup",   NULL};
static const char *const seq_reinstall[] = {"reinstall", "download", "install", NULL};

/* "www.example.com: http-01 webroot /var/www/acme; *.example.com: dns-01 via corpdns" */
static void plan_detail(const struct acme *a, const struct cert_spec *s, char *out, size_t n)
{
	out[0] = '\0';
	for (size_t i = 0; s && i < s->n_dns; i++) {
		const struct acme_solver *sv = acme_solver_for(a, s->dns_names[i]);
		char how[256], item[PLAN_DETAIL_MAX];

		if (sv)
			acme_solver_describe(sv, how, sizeof(how));
		else
			snprintf(how, sizeof(how), "no solver");
		snprintf(item, sizeof(item), "%s: %s", s->dns_names[i], how);
		provider_text_append(out, n, "; ", item);
	}
}

static int acme_plan(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
		     const struct state_cert *rec, struct plan_steps *out)
{
	const char *const *seq = kind == CHANGE_REINSTALL ? seq_reinstall : seq_order;
	size_t start = 0;

	memset(out, 0, sizeof(*out));
	if (kind == CHANGE_RESUME && rec && rec->step) {
		const char *const *seqs[] = {seq_order, seq_reinstall};

		for (size_t k = 0; k < 2; k++) {
			for (start = 0; seqs[k][start] && strcmp(seqs[k][start], rec->step); start++)
				;
			if (seqs[k][start]) {
				seq = seqs[k];
				break;
			}
		}
		if (!seq[start])
			start = 0;
	}
	for (size_t i = start; seq[i] && out->n < PLAN_MAX_STEPS; i++) {
		out->steps[out->n++] = seq[i];
		if (!strcmp(seq[i], "reinstall"))
			break; /* download is only the fallback for records without a key store entry */
	}
	if (seq == seq_order && !(kind == CHANGE_RESUME && start > 2))
		plan_detail(is->priv, s, out->detail, sizeof(out->detail));
	return 0;
}

/* ---------- the session: account key and account ---------- */

static int session_key(struct acme *a, const struct acme_keys *k, struct crypto_key **out)
{
	struct buf pem = BUF_INIT;
	char what[160];
	int rc = k->get(k->arg, SLOT_ACCOUNT, &pem);

	snprintf(what, sizeof(what), "issuer %s: the ACME account key", a->name);
	if (rc == CS_ENOTFOUND && !k->put) {
		rc = cs_error(CS_ENOTFOUND, "issuer %s has no ACME account in the key store yet", a->name);
	} else if (rc == CS_ENOTFOUND) {
		/* Stored before the CA ever sees it: a crash after newAccount still finds the same account. */
		if (!(rc = crypto_key_generate(a->account_alg, a->account_size, out)) &&
		    !(rc = crypto_key_to_pem(*out, &pem)) && !(rc = k->put(k->arg, SLOT_ACCOUNT, &pem)))
			log_info("issuer %s: generated the ACME account key (kept in the key store)", a->name);
		if (rc) {
			crypto_key_free(*out);
			*out = NULL;
		}
	} else if (!rc) {
		rc = crypto_key_from_pem(pem.data, pem.len, what, out);
	}
	buf_wipe(&pem);
	return rc;
}

/* The EAB HMAC key, base64url-decoded (a secret: the caller wipes it). */
static int eab_key(const struct acme *a, struct buf *out)
{
	struct buf raw = BUF_INIT;
	char what[160];
	int rc;

	snprintf(what, sizeof(what), "issuer %s: externalAccountBinding.hmacKey", a->name);
	if ((rc = config_cred_read(&a->eab_hmac, what, &raw)))
		return rc;
	if (jose_b64url_decode(raw.data, out) || !out->len)
		rc = provider_fail(STATE_FAIL_CONFIG,
				   cs_error(CS_EAUTH, "%s is not base64url (give it as the CA shows it)", what));
	buf_wipe(&raw);
	return rc;
}

static int session_open(struct acme *a, const struct acme_keys *k)
{
	struct acme_client_opts o;
	struct acme_account_req r;
	struct crypto_key *key = NULL;
	struct buf hmac = BUF_INIT;
	char *url = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	o.issuer = a->name;
	o.directory = a->directory;
	o.ca_file = a->ca_file;
	o.timeout = a->timeout;
	o.user_agent = "certsync/" CERTSYNC_VERSION;
	if ((rc = session_key(a, k, &key)))
		return rc;
	if (a->eab_kid && (rc = eab_key(a, &hmac)))
		goto out;
	if ((rc = acme_client_new(&o, &a->client)))
		goto out;
	memset(&r, 0, sizeof(r));
	r.key = key;
	r.email = a->email;
	r.terms_agreed = a->terms_agreed;
	r.only_existing = !k->put;
	r.eab_kid = a->eab_kid;
	r.eab_hmac = a->eab_kid ? &hmac : NULL;
	if ((rc = acme_client_account(a->client, &r, &url))) {
		acme_client_free(a->client);
		a->client = NULL;
		goto out;
	}
	log_debug("issuer %s: ACME account %s", a->name, url ? url : "?");
	a->account_key = key;
	key = NULL;
out:
	buf_wipe(&hmac);
	crypto_key_free(key);
	free(url);
	return rc;
}

int acme_session_with(struct acme *a, const struct acme_keys *k, struct acme_client **out)
{
	int rc = 0;

	pthread_mutex_lock(&a->mu);
	if (!a->client)
		rc = session_open(a, k);
	if (!rc)
		*out = a->client;
	pthread_mutex_unlock(&a->mu);
	return rc;
}

static int keys_get(void *arg, const char *slot, struct buf *out)
{
	return engine_issuer_secret_get(arg, slot, out);
}

static int keys_put(void *arg, const char *slot, const struct buf *data)
{
	return engine_issuer_secret_put(arg, slot, data);
}

int acme_session(struct step_ctx *ctx, struct acme *a, struct acme_client **out)
{
	struct acme_keys k = {keys_get, keys_put, ctx};

	return acme_session_with(a, &k, out);
}

void acme_session_end(struct acme *a)
{
	pthread_mutex_lock(&a->mu);
	acme_client_free(a->client);
	a->client = NULL;
	crypto_key_free(a->account_key);
	a->account_key = NULL;
	pthread_mutex_unlock(&a->mu);
}

/* ---------- helpers ---------- */

/* Sleeps ms in short slices; CS_ETRANSIENT when a stop is requested. */
static int nap(struct step_ctx *ctx, int64_t ms)
{
	int64_t end = util_mono_ms() + ms;

	while (util_mono_ms() < end) {
		int64_t left = end - util_mono_ms();
		struct timespec ts = {0, (long)((left > 50 ? 50 : left) * 1000000)};

		if (engine_stop_requested(ctx))
			return cs_error(CS_ETRANSIENT, "%s: stopped while waiting for the CA", ctx->rec->name);
		nanosleep(&ts, NULL);
	}
	ctx->now = util_now();
	return 0;
}

/*
 * Inline polling inside a step: *delay_ms starts at 0 (first call sets
 * FIRST_POLL_MS) and doubles; honours retry_after (absolute seconds).
 * Returns 1 after sleeping (poll again), 0 when the step should park
 * instead (ctx->wait_until and *st set), or CS_ETRANSIENT when stopped.
 */
static int poll_again(struct step_ctx *ctx, struct acme *a, int64_t start_ms, int64_t *delay_ms, int64_t retry_after,
		      enum step_status *st)
{
	int64_t spent = util_mono_ms() - start_ms, wait = *delay_ms ? *delay_ms * 2 : FIRST_POLL_MS;
	int rc;

	if (retry_after > ctx->now)
		wait = (retry_after - util_now()) * 1000;
	if (wait < 0)
		wait = 0;
	if (spent + wait > INLINE_POLL_MS) {
		if (retry_after > ctx->now) {
			ctx->wait_until = retry_after;
			*st = STEP_WAIT;
		} else {
			step_poll_later(ctx, ID_POLLS, 1, a->poll_max, st);
		}
		return 0;
	}
	*delay_ms = wait;
	if ((rc = nap(ctx, wait)))
		return rc;
	return 1;
}

static int is_status(const char *s, const char *want)
{
	return s && !strcmp(s, want);
}

/* The CSR of the pending order as DER (the PEM body decoded). */
static int csr_der(const struct buf *pem, struct buf *der)
{
	const char *p = strstr(pem->data ? pem->data : "", "-----BEGIN"), *end;
	struct buf b64 = BUF_INIT;
	int rc;

	if (!p || !(p = strchr(p, '\n')) || !(end = strstr(p, "-----END")))
		return cs_error(CS_EINVALID, "the pending CSR is not PEM");
	for (; p < end; p++) {
		char ch = *p == '+' ? '-' : *p == '/' ? '_' : *p;

		if (ch != '\n' && ch != '\r' && ch != '=' && ch != ' ')
			buf_append(&b64, &ch, 1);
	}
	buf_append(&b64, "", 1);
	rc = jose_b64url_decode(b64.data, der);
	buf_free(&b64);
	return rc;
}

/* Splits the PEM chain into tls.crt (leaf + intermediates) and ca.crt (self-signed roots, else the top). */
static int split_chain(const char *pem, size_t len, struct buf *cert, struct buf *ca)
{
	struct crypto_cert **v = NULL;
	size_t n = 0, roots = 0;
	int rc;

	if ((rc = crypto_certs_from_pem(pem, len, "ACME certificate chain", &v, &n)))
		return rc;
	while (roots < n - 1 && crypto_cert_signed_by(v[n - 1 - roots], v[n - 1 - roots]))
		roots++;
	buf_clear(cert);
	buf_clear(ca);
	for (size_t i = 0; i < n - roots && !rc; i++)
		rc = crypto_cert_to_pem(v[i], cert);
	for (size_t i = roots ? n - roots : n - 1; i < n && !rc; i++)
		rc = crypto_cert_to_pem(v[i], ca);
	crypto_certs_free(v, n);
	return rc;
}

/* Removes the placed answers [0, n); keeps (for a later retry) those whose removal fails. */
static int remove_tokens(struct step_ctx *ctx)
{
	char *first_err = NULL;
	int rc = 0;

	for (size_t i = ctx->rec->n_tokens; i-- > 0;) {
		int r = acme_solve_remove(ctx, &ctx->rec->tokens[i]);

		if (r) {
			if (!first_err)
				first_err = xstrdup(cs_errmsg());
			rc = r;
			continue;
		}
		state_cert_remove_token(ctx->rec, i);
	}
	if (rc)
		cs_error(CS_ETRANSIENT, "%s: could not remove a challenge answer (kept in state, retried): %s",
			 ctx->rec->name, first_err);
	free(first_err);
	return rc ? CS_ETRANSIENT : 0;
}

static int remove_pending(struct step_ctx *ctx)
{
	return engine_pending_del(ctx, NULL);
}

/* Forgets the order (a new one follows at the next attempt). */
static void forget_order(struct step_ctx *ctx)
{
	state_cert_set_id(ctx->rec, ID_ORDER, NULL);
	state_cert_set_id(ctx->rec, ID_CERT, NULL);
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	state_str_set(&ctx->rec->step, "order");
}

/*
 * An order that went invalid: its problem (or the failed challenge's, when
 * the caller found one) in full; the next attempt places a new order.
 */
static int order_failed(struct step_ctx *ctx, const struct acme_order *o, const struct acme_problem *p,
			const char *what)
{
	const char *cls = STATE_FAIL_TRANSIENT;
	char text[1536] = "no problem document";
	int code = CS_ETRANSIENT;

	if (!p || !p->type)
		p = &o->error;
	if (p->type) {
		acme_problem_text(p, text, sizeof(text));
		code = acme_problem_class(p, &cls);
	}
	if (what) /* a failed challenge is transient: the answer may not have been visible yet */
		code = CS_ETRANSIENT, cls = STATE_FAIL_TRANSIENT;
	forget_order(ctx);
	state_cert_event(ctx->rec, ctx->now, "ACME order failed: %s", text);
	return provider_fail(cls,
			     cs_error(code,
				      "%s: ACME order %s is invalid%s%s: %s; a new order follows at the "
				      "next attempt",
				      ctx->rec->name, o->url ? o->url : "", what ? ": " : "", what ? what : "", text));
}

/* ---------- steps ---------- */

/* The key for this order: the installed one when rotation is Never and it still fits, else a new one. */
static int order_key(struct step_ctx *ctx, struct crypto_key **out)
{
	const struct cert_spec *s = ctx->spec;
	enum crypto_alg want = s->key_alg == KEYALG_RSA ? CRYPTO_RSA : CRYPTO_ECDSA, alg;
	struct buf kp = BUF_INIT;
	int size;

	if (s->rotation == ROTATE_NEVER && engine_installed_key(ctx, &kp) == 0 &&
	    crypto_key_from_pem(kp.data, kp.len, "installed key", out) == 0) {
		crypto_key_describe(*out, &alg, &size);
		buf_wipe(&kp);
		if (alg == want && size == s->key_size)
			return 0;
		crypto_key_free(*out);
		*out = NULL;
	}
	buf_wipe(&kp);
	return crypto_key_generate(want, s->key_size, out);
}

static int step_prepare(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	const struct cert_spec *s = ctx->spec;
	struct crypto_key *key = NULL;
	struct buf kp = BUF_INIT, csr = BUF_INIT;
	int rc;

	(void)a;
	(void)c;
	if ((rc = order_key(ctx, &key)) || (rc = crypto_key_to_pem(key, &kp)) ||
	    (rc = crypto_csr_create(key, s->common_name, (const char *const *)s->dns_names, s->n_dns, &csr)))
		goto out;
	/* The key must outlive the order, on any replica: in the key store, never in state. */
	if ((rc = engine_pending_put(ctx, "key", &kp)) || (rc = engine_pending_put(ctx, "csr", &csr)))
		goto out;
	forget_order(ctx);
	state_cert_set_id(ctx->rec, ID_ORDERING, NULL);
	step_next(ctx, "order", st);
out:
	buf_wipe(&kp);
	buf_free(&csr);
	crypto_key_free(key);
	return rc;
}

/* 1 when the order is for exactly names (as a set, case-insensitive). */
static int same_names(const struct acme_order *o, const struct cert_spec *s)
{
	if (o->n_identifiers != s->n_dns)
		return 0;
	for (size_t i = 0; i < s->n_dns; i++) {
		size_t k = 0;

		while (k < o->n_identifiers && strcasecmp(o->identifiers[k], s->dns_names[i]))
			k++;
		if (k == o->n_identifiers)
			return 0;
	}
	return 1;
}

/*
 * A newOrder whose answer was lost (killed before it was journaled): the
 * account's orders list, newest first, for one still usable with exactly
 * these names. 0 with *url, CS_ENOTFOUND when there is none (or no list).
 */
static int find_lost_order(struct step_ctx *ctx, struct acme_client *c, char **url)
{
	char **urls = NULL;
	size_t n = 0, looked = 0;
	int rc = acme_account_orders(c, &urls, &n);

	if (rc == CS_ENOTFOUND)
		log_emit(LV_INFO, &ctx->log, "the CA keeps no orders list; the lost order expires on its own");
	for (size_t i = n; !rc && i-- > 0 && looked++ < LOST_ORDER_LOOKS;) {
		struct acme_order o;

		memset(&o, 0, sizeof(o));
		if ((rc = acme_order_get(c, urls[i], &o)))
			break;
		if ((is_status(o.status, "pending") || is_status(o.status, "ready") ||
		     is_status(o.status, "processing") || is_status(o.status, "valid")) &&
		    same_names(&o, ctx->spec))
			*url = xstrdup(urls[i]);
		acme_order_free(&o);
		if (*url)
			break;
	}
	if (!rc && !*url)
		rc = CS_ENOTFOUND;
	for (size_t i = 0; i < n; i++)
		free(urls[i]);
	free(urls);
	return rc;
}

/* The step after an order in this status. */
static const char *after_order(const char *status)
{
	if (is_status(status, "pending"))
		return "authorize";
	return "finalize"; /* ready, processing, valid (finalize reads it first), invalid (finalize reports it) */
}

static int adopt_lost_order(struct step_ctx *ctx, struct acme_client *c, enum step_status *st)
{
	char *url = NULL;
	int rc = find_lost_order(ctx, c, &url);

	if (rc)
		return rc;
	log_emit(LV_INFO, &ctx->log, "adopting ACME order %s (its answer was lost) instead of ordering again", url);
	state_cert_event(ctx->rec, ctx->now, "adopted ACME order %s", url);
	state_cert_set_id(ctx->rec, ID_ORDER, url);
	state_cert_set_id(ctx->rec, ID_ORDERING, NULL);
	free(url);
	step_next(ctx, "authorize", st);
	return 0;
}

static int step_order(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	const struct cert_spec *s = ctx->spec;
	struct acme_order o;
	char *replaces = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	if (state_cert_id(ctx->rec, ID_ORDER)) {
		step_next(ctx, "authorize", st);
		return 0;
	}
	if (ctx->rec->n_tokens && remove_tokens(ctx)) /* a failed order's answers */
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	if (state_cert_id(ctx->rec, ID_ORDERING) && (rc = adopt_lost_order(ctx, c, st)) != CS_ENOTFOUND)
		return rc;
	/* Write-ahead: a crash before the answer is journaled looks for the order first. */
	state_cert_set_id(ctx->rec, ID_ORDERING, "1");
	if ((rc = engine_journal(ctx)))
		return rc;
	replaces = acme_ari_replaces(ctx);
	rc = acme_order_new(c, s->dns_names, s->n_dns, a->profile, replaces, &o);
	if (rc)
		goto out;
	state_cert_set_id(ctx->rec, ID_ORDER, o.url);
	state_cert_set_id(ctx->rec, ID_ORDERING, NULL);
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	state_cert_event(ctx->rec, ctx->now, "ACME order %s (%s)%s%s", o.url, o.status ? o.status : "?",
			 replaces ? " replacing " : "", replaces ? replaces : "");
	if ((rc = engine_journal(ctx)))
		goto out;
	log_emit(LV_INFO, &ctx->log, "ACME order %s is %s", o.url, o.status ? o.status : "?");
	step_next(ctx, after_order(o.status), st);
out:
	free(replaces);
	acme_order_free(&o);
	return rc;
}

/* ---------- authorize ---------- */

/* One authorization whose challenge this step answers. */
struct pending_chal {
	const struct acme_solver *solver;
	char *name; /* "*.x" for a wildcard */
	char *url;
	char *token;
	int respond; /* the challenge is "pending": tell the CA once the answer is out */
};

static void pending_free(struct pending_chal *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].url);
		free(p[i].token);
	}
	free(p);
}

/* The challenge of the solver's type in a, or NULL. */
static const struct acme_challenge *pick_challenge(const struct acme_authz *az, const struct acme_solver *s)
{
	const char *type = s->kind == ACME_DNS01 ? "dns-01" : "http-01";

	for (size_t i = 0; i < az->n_challenges; i++)
		if (is_status(az->challenges[i].type, type))
			return &az->challenges[i];
	return NULL;
}

/* The first invalid challenge's problem in az, for the message (NULL when none has one). */
static const struct acme_challenge *failed_challenge(const struct acme_authz *az)
{
	for (size_t i = 0; i < az->n_challenges; i++)
		if (is_status(az->challenges[i].status, "invalid") || az->challenges[i].error.type)
			return &az->challenges[i];
	return NULL;
}

/* Reads the order's authorizations; fills *out with those still to be answered. */
static int collect_authz(struct step_ctx *ctx, struct acme *a, struct acme_client *c, const struct acme_order *o,
			 struct pending_chal **out, size_t *n)
{
	int rc = 0;

	*out = xcalloc(o->n_authorizations + 1, sizeof(**out));
	*n = 0;
	for (size_t i = 0; i < o->n_authorizations && !rc; i++) {
		struct acme_authz az;
		const struct acme_challenge *ch;
		char *name;

		memset(&az, 0, sizeof(az));
		if ((rc = acme_authz_get(c, o->authorizations[i], &az)))
			break;
		name = az.wildcard ? xasprintf("*.%s", az.identifier) : xstrdup(az.identifier);
		if (is_status(az.status, "valid")) {
			log_emit(LV_DEBUG, &ctx->log, "%s: authorization already valid (reused)", name);
		} else if (!is_status(az.status, "pending")) {
			char *what = xasprintf("the authorization of %s is %s", name, az.status ? az.status : "?");

			ch = failed_challenge(&az);
			rc = order_failed(ctx, o, ch ? &ch->error : NULL, what);
			free(what);
		} else {
			const struct acme_solver *s = acme_solver_for(a, name);

			if (!s)
				rc = provider_fail(STATE_FAIL_CONFIG,
						   cs_error(CS_EINVALID, "%s: no solver of issuer %s matches %s",
							    ctx->rec->name, a->name, name));
			else if (!(ch = pick_challenge(&az, s)))
				rc = provider_fail(STATE_FAIL_REJECTED,
						   cs_error(CS_EINVALID, "%s: the CA offers no %s challenge for %s",
							    ctx->rec->name,
							    s->kind == ACME_DNS01 ? "dns-01" : "http-01", name));
			else if (is_status(ch->status, "pending") || is_status(ch->status, "processing")) {
				struct pending_chal *p = &(*out)[(*n)++];

				p->solver = s;
				p->name = xstrdup(name);
				p->url = xstrdup(ch->url);
				p->token = xstrdup(ch->token);
				p->respond = is_status(ch->status, "pending");
			}
		}
		free(name);
		acme_authz_free(&az);
	}
	return rc;
}

/* The index of a token equal to t (method, location and value) in the record, or -1. */
static long find_token(const struct state_cert *rec, const struct state_token *t)
{
	size_t vl = strcspn(t->ref ? t->ref : "", " ");

	for (size_t i = 0; i < rec->n_tokens; i++) {
		const struct state_token *o = &rec->tokens[i];

		if (util_streq(o->method, t->method) && util_streq(o->location, t->location) && o->ref && t->ref &&
		    !strncmp(o->ref, t->ref, vl) && (o->ref[vl] == ' ' || !o->ref[vl]))
			return (long)i;
	}
	return -1;
}

/* Journals then places the answer to p's challenge (once: an answer placed earlier stays). */
static int place_one(struct step_ctx *ctx, struct acme_client *c, const struct pending_chal *p)
{
	char *ka = jose_key_authorization(p->token, acme_client_thumbprint(c)), *ref = NULL;
	struct state_token t;
	struct state_token *rt;
	long at;
	int rc;

	if ((rc = acme_solve_intent(ctx, p->solver, p->name, p->token, ka, &t)))
		goto out;
	at = find_token(ctx->rec, &t);
	if (at < 0 || !ctx->rec->tokens[at].placed_at) {
		if (at < 0) {
			if (ctx->rec->n_tokens >= STATE_MAX_TOKENS) {
				rc = cs_error(CS_ETRANSIENT, "%s: too many challenge answers recorded (%zu)",
					      ctx->rec->name, ctx->rec->n_tokens);
				goto out;
			}
			state_cert_add_token(ctx->rec, &t);
			at = (long)ctx->rec->n_tokens - 1;
		}
		/* Write-ahead: journaled before it is placed, so a crash still knows what to remove. */
		if ((rc = engine_journal(ctx)))
			goto out;
		rt = &ctx->rec->tokens[at];
		log_emit(LV_DEBUG, &ctx->log, "placing the %s answer for %s at %s", rt->method, p->name, rt->location);
		if ((rc = acme_solve_place(ctx, p->solver, rt, ka, &ref)))
			goto out;
		rt = &ctx->rec->tokens[at];
		state_str_set(&rt->ref, ref);
		rt->placed_at = ctx->now;
		rc = engine_journal(ctx);
	}
out:
	free(t.method);
	free(t.name);
	free(t.location);
	free(t.ref);
	free(t.issuer);
	free(ka);
	free(ref);
	return rc;
}

/* Waits until every dns-01 answer placed for ps is visible on the zone's servers. */
static int wait_dns(struct step_ctx *ctx, struct acme_client *c, const struct pending_chal *ps, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++) {
		char *ka, value[44], *loc;
		struct state_token t;

		if (!ps[i].respond || ps[i].solver->kind != ACME_DNS01)
			continue;
		ka = jose_key_authorization(ps[i].token, acme_client_thumbprint(c));
		jose_dns01_value(ka, value);
		if (!(rc = acme_solve_intent(ctx, ps[i].solver, ps[i].name, ps[i].token, ka, &t))) {
			loc = t.location;
			rc = acme_solve_wait_dns(ctx, ps[i].solver, loc, value);
			free(t.method);
			free(t.name);
			free(t.location);
			free(t.ref);
			free(t.issuer);
		}
		free(ka);
	}
	return rc;
}

/* Places every answer (all before any check: a name and its wildcard share one TXT name), waits, responds. */
static int answer_all(struct step_ctx *ctx, struct acme_client *c, struct pending_chal *ps, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++)
		if (ps[i].respond)
			rc = place_one(ctx, c, &ps[i]);
	if (!rc)
		rc = wait_dns(ctx, c, ps, n);
	for (size_t i = 0; i < n && !rc; i++) {
		if (!ps[i].respond)
			continue;
		if ((rc = acme_challenge_respond(c, ps[i].url, NULL)))
			break;
		log_emit(LV_DEBUG, &ctx->log, "asked the CA to validate %s", ps[i].name);
	}
	return rc;
}

/* Reads the order; handles gone (new order). */
static int get_order(struct step_ctx *ctx, struct acme_client *c, struct acme_order *o)
{
	const char *url = state_cert_id(ctx->rec, ID_ORDER);
	int rc;

	memset(o, 0, sizeof(*o));
	rc = acme_order_get(c, url, o);
	if (rc == CS_ENOTFOUND) {
		forget_order(ctx);
		return cs_error(CS_ETRANSIENT, "%s: ACME order %s is gone at the CA; a new order follows",
				ctx->rec->name, url);
	}
	return rc;
}

/* Polls the order inside the step until it leaves status (or parks). rc; *o holds the last answer. */
static int poll_order(struct step_ctx *ctx, struct acme *a, struct acme_client *c, const char *status,
		      struct acme_order *o, enum step_status *st, int *parked)
{
	int64_t start = util_mono_ms(), delay = 0;
	int rc;

	*parked = 0;
	while (is_status(o->status, status)) {
		int64_t ra = o->retry_after;

		if ((rc = poll_again(ctx, a, start, &delay, ra, st)) <= 0) {
			*parked = rc == 0;
			return rc;
		}
		acme_order_free(o);
		if ((rc = get_order(ctx, c, o)))
			return rc;
	}
	return 0;
}

/* An order that went invalid: the failed challenge's problem when an authorization shows one. */
static int invalid_order(struct step_ctx *ctx, struct acme_client *c, const struct acme_order *o)
{
	for (size_t i = 0; i < o->n_authorizations; i++) {
		const struct acme_challenge *ch;
		struct acme_authz az;
		int rc;

		memset(&az, 0, sizeof(az));
		if (acme_authz_get(c, o->authorizations[i], &az) == 0 && !is_status(az.status, "valid") &&
		    (ch = failed_challenge(&az))) {
			char *what = xasprintf("%s challenge for %s%s failed", ch->type ? ch->type : "?",
					       az.wildcard ? "*." : "", az.identifier ? az.identifier : "?");

			rc = order_failed(ctx, o, &ch->error, what);
			free(what);
			acme_authz_free(&az);
			return rc;
		}
		acme_authz_free(&az);
	}
	return order_failed(ctx, o, NULL, NULL);
}

static int step_authorize(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	struct pending_chal *ps = NULL;
	struct acme_order o;
	size_t n = 0;
	int rc, parked;

	if (!state_cert_id(ctx->rec, ID_ORDER)) {
		step_next(ctx, "order", st);
		return 0;
	}
	if ((rc = get_order(ctx, c, &o)))
		return rc;
	if (is_status(o.status, "pending")) {
		if ((rc = collect_authz(ctx, a, c, &o, &ps, &n)) || (rc = answer_all(ctx, c, ps, n)))
			goto out;
		acme_order_free(&o);
		if ((rc = get_order(ctx, c, &o)) || (rc = poll_order(ctx, a, c, "pending", &o, st, &parked)) || parked)
			goto out;
	}
	if (is_status(o.status, "invalid")) {
		rc = invalid_order(ctx, c, &o);
		goto out;
	}
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	log_emit(LV_INFO, &ctx->log, "ACME order is %s", o.status ? o.status : "?");
	/* Journaled by the engine before finalize runs: a resumed finalize reads the order first. */
	step_next(ctx, "finalize", st);
out:
	pending_free(ps, n);
	acme_order_free(&o);
	return rc;
}

/* ---------- finalize, download, install ---------- */

static int finalize_order(struct step_ctx *ctx, struct acme_client *c, struct acme_order *o)
{
	struct buf pem = BUF_INIT, der = BUF_INIT;
	struct acme_order after;
	int rc;

	memset(&after, 0, sizeof(after));
	if ((rc = engine_pending_get(ctx, "csr", &pem)))
		return rc;
	if ((rc = csr_der(&pem, &der)))
		goto out;
	log_emit(LV_INFO, &ctx->log, "finalizing ACME order %s", o->url ? o->url : "");
	rc = acme_order_finalize(c, o, &der, &after);
	if (rc == CS_ECONFLICT) /* orderNotReady right after "ready": the CA's view moved; read it again later */
		rc = cs_error(CS_ETRANSIENT, "%s", cs_errmsg());
	if (rc)
		goto out;
	acme_order_free(o);
	*o = after;
	memset(&after, 0, sizeof(after));
out:
	acme_order_free(&after);
	buf_free(&pem);
	buf_free(&der);
	return rc;
}

/*
 * Reads the order before anything (a resumed finalize may have been sent
 * already): ready → finalize; processing → poll; valid → download;
 * pending → authorize; invalid → a new order at the next attempt.
 */
static int step_finalize(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	struct acme_order o;
	int rc, parked = 0;

	if (!state_cert_id(ctx->rec, ID_ORDER)) {
		step_next(ctx, "order", st);
		return 0;
	}
	if ((rc = get_order(ctx, c, &o)))
		return rc;
	if (is_status(o.status, "pending")) {
		step_next(ctx, "authorize", st);
		goto out;
	}
	if (is_status(o.status, "ready") && (rc = finalize_order(ctx, c, &o)))
		goto out;
	if ((rc = poll_order(ctx, a, c, "processing", &o, st, &parked)) || parked)
		goto out;
	if (!is_status(o.status, "valid") || !o.certificate) {
		rc = is_status(o.status, "invalid")
			     ? invalid_order(ctx, c, &o)
			     : cs_error(CS_ETRANSIENT, "%s: ACME order %s is %s after finalize", ctx->rec->name,
					o.url ? o.url : "", o.status ? o.status : "without a status");
		goto out;
	}
	state_cert_set_id(ctx->rec, ID_CERT, o.certificate);
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	step_next(ctx, "download", st);
out:
	acme_order_free(&o);
	return rc;
}

/* Takes the chain into ctx->mat with the pending key (a reinstall: the installed one). */
static int take_material(struct step_ctx *ctx, const struct buf *chain, int reinstall)
{
	int rc;

	material_wipe(&ctx->mat);
	material_init(&ctx->mat);
	if ((rc = split_chain(chain->data, chain->len, &ctx->mat.cert, &ctx->mat.ca)))
		return rc;
	rc = engine_pending_get(ctx, "key", &ctx->mat.key);
	if (rc == CS_ENOTFOUND && reinstall)
		rc = engine_installed_key(ctx, &ctx->mat.key);
	if (rc == CS_ENOTFOUND) {
		/* The key is lost (a wiped key store): the certificate is useless; a new order is free. */
		forget_order(ctx);
		state_str_set(&ctx->rec->step, "prepare");
		return cs_error(CS_ETRANSIENT,
				"%s: the private key of the ACME order is gone from the key store; "
				"ordering again",
				ctx->rec->name);
	}
	return rc;
}

static int step_download(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	const char *url = state_cert_id(ctx->rec, ID_CERT);
	int reinstall = !url;
	struct buf pem = BUF_INIT;
	int rc;

	if (reinstall)
		url = state_cert_id(ctx->rec, ID_INSTALLED_CERT);
	if (!url) {
		step_next(ctx, state_cert_id(ctx->rec, ID_ORDER) ? "finalize" : "prepare", st);
		return 0;
	}
	if ((rc = acme_download(c, url, a->preferred_chain, &pem)) || (rc = take_material(ctx, &pem, reinstall)))
		goto out;
	step_next(ctx, "install", st);
out:
	buf_free(&pem);
	return rc;
}

/* An install that fails (a full disk: retried from the key store) must not leave the answers out meanwhile. */
static int install_failed(struct step_ctx *ctx, int rc)
{
	char *msg = xstrdup(cs_errmsg());

	if (ctx->rec->n_tokens && remove_tokens(ctx))
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	rc = cs_error(rc, "%s", msg);
	free(msg);
	return rc;
}

/* ARI after an install: with the run's session when there is one (never fails the install). */
static void after_install(struct step_ctx *ctx, struct acme *a, const struct buf *cert)
{
	struct acme_client *c = NULL;

	if (acme_session(ctx, a, &c)) {
		log_emit(LV_WARN, &ctx->log, "renewal information not asked: %s", cs_errmsg());
		return;
	}
	acme_ari_after_install(ctx, a, c, cert->data, cert->len);
}

static int step_install(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	struct buf cert = BUF_INIT;
	int rc;

	(void)c;
	if (!material_present(&ctx->mat) && engine_pending_material(ctx)) {
		step_next(ctx, "download", st); /* resumed: the chain was only in memory */
		return 0;
	}
	buf_append(&cert, ctx->mat.cert.data, ctx->mat.cert.len);
	if ((rc = engine_install(ctx))) {
		rc = install_failed(ctx, rc);
		goto out;
	}
	if (state_cert_id(ctx->rec, ID_CERT))
		state_cert_set_id(ctx->rec, ID_INSTALLED_CERT, state_cert_id(ctx->rec, ID_CERT));
	state_cert_set_id(ctx->rec, ID_ORDER, NULL);
	state_cert_set_id(ctx->rec, ID_CERT, NULL);
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	after_install(ctx, a, &cert);
	/* The pending key goes only once the record says so (killed in between, cleanup removes it). */
	step_next(ctx, "cleanup", st);
	if ((rc = engine_journal(ctx)))
		goto out;
	remove_pending(ctx); /* a failure here is retried by the cleanup step */
out:
	buf_free(&cert);
	return rc;
}

static int step_cleanup(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	int rc;

	(void)a;
	(void)c;
	if ((rc = remove_pending(ctx)) || (rc = remove_tokens(ctx)))
		return rc; /* CS_ETRANSIENT: the next apply tries again */
	log_emit(LV_DEBUG, &ctx->log, "removed the challenge answers and the pending key");
	*st = STEP_DONE;
	return 0;
}

/* Lost outputs: the installed certificate and key from the key store, with no request to the CA. */
static int step_reinstall(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	(void)a;
	(void)c;
	return step_reinstall_or(ctx, "download", st);
}

typedef int (*acme_step_fn)(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st);

static const struct {
	const char *name;
	acme_step_fn run;
	int needs_session;
} acme_steps[] = {
	{"prepare", step_prepare, 0},	{"order", step_order, 1},	  {"authorize", step_authorize, 1},
	{"finalize", step_finalize, 1}, {"download", step_download, 1},	  {"install", step_install, 0},
	{"cleanup", step_cleanup, 0},	{"reinstall", step_reinstall, 0},
};

static int acme_step(struct step_ctx *ctx, enum step_status *st)
{
	struct acme *a = ctx->issuer->priv;
	const char *step = ctx->rec->step ? ctx->rec->step : "";

	for (size_t i = 0; i < sizeof(acme_steps) / sizeof(acme_steps[0]); i++) {
		struct acme_client *c = NULL;
		int rc;

		if (strcmp(step, acme_steps[i].name))
			continue;
		if (acme_steps[i].needs_session && (rc = acme_session(ctx, a, &c)))
			return rc;
		return acme_steps[i].run(ctx, a, c, st);
	}
	return cs_error(CS_EINVALID, "%s: the acme issuer has no step \"%s\"", ctx->rec->name, step);
}

/*
 * Removal: placed answers and a pending key go too (an open order is left
 * to expire). Revocation on removal (revokeOnRemove) belongs to acme_ari.c.
 */
static int acme_release(struct step_ctx *ctx)
{
	int rc = remove_tokens(ctx);

	if (!rc)
		rc = remove_pending(ctx);
	return rc;
}

static void acme_end_run(const struct issuer *is)
{
	acme_session_end(is->priv);
}

/* ---------- validate ---------- */

static void check_files(const struct acme *a, struct provider_check *out)
{
	if (a->ca_file && access(a->ca_file, R_OK))
		provider_check_problem(out, "issuer %s: caFile %s cannot be read", a->name, a->ca_file);
	if (a->eab_kid) {
		struct buf k = BUF_INIT;

		if (eab_key(a, &k))
			provider_check_problem(out, "%s", cs_errmsg());
		buf_wipe(&k);
	}
	for (size_t i = 0; i < a->n_solvers; i++) {
		const struct acme_solver *s = &a->solvers[i];

		if (s->kind == ACME_HTTP01_WEBROOT && !strstr(s->webroot, "{host}") && access(s->webroot, W_OK))
			provider_check_problem(out, "issuer %s: solvers[%zu]: webroot %s is not a writable directory",
					       a->name, i, s->webroot);
	}
}

/* The directory, and what it asks that the config does not give. Opens no account. */
static void check_directory(const struct acme *a, struct provider_check *out)
{
	struct acme_client_opts o;
	const struct acme_directory *dir;
	struct acme_client *c = NULL;
	int listed = 0;

	memset(&o, 0, sizeof(o));
	o.issuer = a->name;
	o.directory = a->directory;
	o.ca_file = a->ca_file;
	o.timeout = a->timeout;
	o.user_agent = "certsync/" CERTSYNC_VERSION;
	if (acme_client_new(&o, &c) || acme_client_directory(c, &dir)) {
		provider_check_problem(out, "issuer %s: %s", a->name, cs_errmsg());
		goto out;
	}
	if (dir->eab_required && !a->eab_kid)
		provider_check_problem(out, "issuer %s: the CA requires externalAccountBinding (keyID, hmacKey)",
				       a->name);
	if (dir->terms_of_service && !a->terms_agreed)
		provider_check_problem(out,
				       "issuer %s: the CA has terms of service (%s): set termsOfServiceAgreed: true",
				       a->name, dir->terms_of_service);
	for (size_t i = 0; a->profile && i < dir->n_profiles; i++)
		listed |= !strcmp(dir->profiles[i], a->profile);
	if (a->profile && !listed)
		provider_check_problem(out, "issuer %s: the CA lists no profile \"%s\"", a->name, a->profile);
	if (!out->n_problems)
		provider_check_note(out, "ACME directory %s%s", a->directory,
				    dir->renewal_info ? " (with renewal information)" : "");
out:
	acme_client_free(c);
}

static void acme_check(const struct issuer *is, int online, struct provider_check *out)
{
	const struct acme *a = is->priv;

	check_files(a, out);
	if (online && !out->n_problems)
		check_directory(a, out);
}

const struct provider_ops provider_acme = {
	.type = "acme",
	.config_parse = acme_config_parse,
	.config_free = acme_config_free,
	.config_check = acme_config_check,
	.check_spec = acme_check_spec,
	.plan = acme_plan,
	.step = acme_step,
	.refresh = NULL, /* an issued order tells nothing new; revocation shows in ARI (acme_ari.c) */
	.release = acme_release,
	.extra_names = NULL,
	.webhook = NULL,
	.dns = NULL,
	.end_run = acme_end_run,
	.check = acme_check,
	.account_plan = NULL,
};
