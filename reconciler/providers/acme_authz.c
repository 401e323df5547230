/*
 * The acme issuer's authorize step: the order's authorizations (valid ones
 * reused), each answer journaled then placed (all before any propagation
 * check: a name and its wildcard share one TXT name), the CA told, and the
 * order polled (Retry-After honoured; else 250 ms doubling inside the step
 * for up to INLINE_POLL_MS, then parked up to pollInterval). A failed
 * challenge is reported whole and a new order follows at the next attempt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "acme.h"

#define INLINE_POLL_MS 3000 /* polls inside a step before it parks (the engine's waits are whole seconds) */
#define FIRST_POLL_MS 250
#define RETRY_AFTER_MAX 86400 /* a longer Retry-After is taken as a day */

/* ---------- polling ---------- */

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

	if (retry_after > ctx->now + RETRY_AFTER_MAX)
		retry_after = ctx->now + RETRY_AFTER_MAX;
	if (retry_after > ctx->now)
		wait = (retry_after - util_now()) * 1000;
	if (wait < 0)
		wait = 0;
	if (spent + wait > INLINE_POLL_MS) {
		if (retry_after > ctx->now) {
			ctx->wait_until = retry_after;
			*st = STEP_WAIT;
		} else {
			step_poll_later(ctx, ACME_ID_POLLS, 1, a->poll_max, st);
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
		/* a failed challenge is transient (the answer may not have been visible yet); caa is not */
		code = what ? acme_challenge_problem_class(p, &cls) : acme_problem_class(p, &cls);
	}
	acme_order_forget(ctx);
	state_cert_event(ctx->rec, ctx->now, "ACME order failed: %s", text);
	if (acme_solve_remove_all(ctx)) /* kept in state: the next attempt removes them */
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	return provider_fail(cls,
			     cs_error(code,
				      "%s: ACME order %s is invalid%s%s: %s; a new order follows at the "
				      "next attempt",
				      ctx->rec->name, o->url ? o->url : "", what ? ": " : "", what ? what : "", text));
}

/* ---------- authorize ---------- */

/* One authorization whose challenge this step answers. */
struct pending_chal {
	const struct acme_solver *solver;
	char *name; /* "*.x" for a wildcard */
	char *url;
	char *token;
	char *location; /* where place_one put the answer */
	int respond;	/* the challenge is "pending": tell the CA once the answer is out */
};

static void pending_free(struct pending_chal *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].url);
		free(p[i].token);
		free(p[i].location);
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

/* An authorization the CA will not show: the order is forgotten (a new one costs nothing). */
static int unreadable(struct step_ctx *ctx, const char *url)
{
	char *why = xstrdup(cs_errmsg());
	int rc;

	acme_order_forget(ctx);
	if (acme_solve_remove_all(ctx))
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	rc = provider_fail(STATE_FAIL_TRANSIENT,
			   cs_error(CS_ETRANSIENT, "%s: ACME authorization %s cannot be read (%s); a new order follows",
				    ctx->rec->name, url, why));
	free(why);
	return rc;
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
		if ((rc = acme_authz_get(c, o->authorizations[i], &az))) {
			if (rc == CS_ENOTFOUND || rc == CS_EINVALID) /* gone or refused: this order cannot finish */
				rc = unreadable(ctx, o->authorizations[i]);
			break;
		}
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
static int place_one(struct step_ctx *ctx, struct acme_client *c, struct pending_chal *p)
{
	char *ka = jose_key_authorization(p->token, acme_client_thumbprint(c)), *ref = NULL;
	struct state_token t;
	struct state_token *rt;
	long at;
	int rc;

	if ((rc = acme_solve_intent(ctx, p->solver, p->name, p->token, ka, &t)))
		goto out;
	p->location = xstrdup(t.location);
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
		if ((rc = acme_solve_place(ctx, p->solver, rt, ka, &ref))) {
			if (rc != CS_ETRANSIENT && !ctx->rec->tokens[at].placed_at) {
				/* refused (credentials, a zone it does not serve): nothing was made to remove later */
				state_cert_remove_token(ctx->rec, (size_t)at);
				if (engine_journal(ctx))
					rc = CS_ETRANSIENT;
			}
			goto out;
		}
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
		char *ka, value[44];

		if (!ps[i].respond || ps[i].solver->kind != ACME_DNS01 || !ps[i].location)
			continue;
		ka = jose_key_authorization(ps[i].token, acme_client_thumbprint(c));
		jose_dns01_value(ka, value);
		rc = acme_solve_wait_dns(ctx, ps[i].solver, ps[i].location, value);
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
int acme_order_read(struct step_ctx *ctx, struct acme_client *c, struct acme_order *o)
{
	const char *url = state_cert_id(ctx->rec, ACME_ID_ORDER);
	int rc;

	memset(o, 0, sizeof(*o));
	rc = acme_order_get(c, url, o);
	if (rc == CS_ENOTFOUND || rc == CS_EINVALID) {
		/* expired and dropped, or refused to us: it can never be finalized; a new order costs nothing */
		char *why = xstrdup(cs_errmsg());

		acme_order_free(o);
		acme_order_forget(ctx);
		rc = provider_fail(STATE_FAIL_TRANSIENT,
				   cs_error(CS_ETRANSIENT, "%s: ACME order %s cannot be read (%s); a new order follows",
					    ctx->rec->name, url, why));
		free(why);
	}
	return rc;
}

/* Polls the order inside the step until it leaves status (or parks). rc; *o holds the last answer. */
int acme_order_wait(struct step_ctx *ctx, struct acme *a, struct acme_client *c, const char *status,
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
		if ((rc = acme_order_read(ctx, c, o)))
			return rc;
	}
	return 0;
}

/* An order that went invalid: the failed challenge's problem when an authorization shows one. */
int acme_order_invalid(struct step_ctx *ctx, struct acme_client *c, const struct acme_order *o)
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

int acme_step_authorize(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	struct pending_chal *ps = NULL;
	struct acme_order o;
	size_t n = 0;
	int rc, parked;

	if (!state_cert_id(ctx->rec, ACME_ID_ORDER)) {
		step_next(ctx, "order", st);
		return 0;
	}
	if ((rc = acme_order_read(ctx, c, &o)))
		return rc;
	if (is_status(o.status, "pending")) {
		/* the order is still "pending" right after the answers: the wait sleeps before it reads it again */
		if ((rc = collect_authz(ctx, a, c, &o, &ps, &n)) || (rc = answer_all(ctx, c, ps, n)) ||
		    (rc = acme_order_wait(ctx, a, c, "pending", &o, st, &parked)) || parked)
			goto out;
	}
	if (is_status(o.status, "invalid")) {
		rc = acme_order_invalid(ctx, c, &o);
		goto out;
	}
	state_cert_set_id(ctx->rec, ACME_ID_POLLS, NULL);
	log_emit(LV_INFO, &ctx->log, "ACME order is %s", o.status ? o.status : "?");
	/* Journaled by the engine before finalize runs: a resumed finalize reads the order first. */
	step_next(ctx, "finalize", st);
out:
	pending_free(ps, n);
	acme_order_free(&o);
	return rc;
}
