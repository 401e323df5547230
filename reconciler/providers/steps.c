/* Step helpers shared by the drivers: numeric provider ids, moving on, polling later. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../util/err.h"
#include "../../util/http.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../provider.h"

long long step_id_num(const struct state_cert *rec, const char *key)
{
	const char *v = state_cert_id(rec, key);

	return v ? strtoll(v, NULL, 10) : 0;
}

void step_set_id_num(struct state_cert *rec, const char *key, long long v)
{
	char b[32];

	if (!v) {
		state_cert_set_id(rec, key, NULL);
		return;
	}
	snprintf(b, sizeof(b), "%lld", v);
	state_cert_set_id(rec, key, b);
}

void step_resume_point(const char *const *const *seqs, size_t n, const char *step, const char *const **seq,
		       size_t *start)
{
	*start = 0;
	for (size_t k = 0; step && k < n; k++)
		for (size_t i = 0; seqs[k][i]; i++)
			if (!strcmp(seqs[k][i], step)) {
				*seq = seqs[k];
				*start = i;
				return;
			}
}

void step_next(struct step_ctx *ctx, const char *step, enum step_status *st)
{
	state_str_set(&ctx->rec->step, step);
	*st = STEP_CONTINUE;
}

void step_poll_later(struct step_ctx *ctx, const char *polls_key, int64_t min, int64_t max, enum step_status *st)
{
	long long polls = step_id_num(ctx->rec, polls_key);
	int64_t wait = min;

	for (long long i = 0; i < polls && wait < max; i++)
		wait *= 2;
	if (wait > max)
		wait = max;
	step_set_id_num(ctx->rec, polls_key, polls + 1);
	ctx->wait_until = ctx->now + wait;
	*st = STEP_WAIT;
}

int step_reinstall_or(struct step_ctx *ctx, const char *fallback, enum step_status *st)
{
	int rc = engine_reinstall(ctx);

	if (rc == CS_ENOTFOUND) {
		log_emit(LV_INFO, &ctx->log, "%s (a record from an older certsync?); falling back to %s", cs_errmsg(),
			 fallback);
		step_next(ctx, fallback, st);
		return 0;
	}
	if (rc)
		return rc;
	*st = STEP_DONE;
	return 0;
}

/* ---------- the in-flight rule for paid requests (docs/architecture.md, "Crash safety") ---------- */

#define INTENT_LANDS_BY "lands_by"
#define INTENT_SENT_AT "sent_at"

int64_t step_intent_settle(int64_t timeout)
{
	return timeout > STEP_SETTLE_MIN ? timeout : STEP_SETTLE_MIN;
}

static char *intent_key(const char *prefix)
{
	return xasprintf("%s.%s", prefix, INTENT_LANDS_BY);
}

static char *intent_sent_key(const char *prefix)
{
	return xasprintf("%s.%s", prefix, INTENT_SENT_AT);
}

void step_intent_begin(struct step_ctx *ctx, const char *prefix, int64_t timeout)
{
	char *k = intent_key(prefix), *s = intent_sent_key(prefix);

	/* From the send, not from the step's start: a wait for the domain's lock or a list can take long. */
	ctx->now = util_now();
	step_set_id_num(ctx->rec, k, (long long)(ctx->now + timeout + step_intent_settle(timeout)));
	step_set_id_num(ctx->rec, s, (long long)ctx->now);
	free(k);
	free(s);
}

/* The paid request's send hook (http_set_send_hook): a later send moves the landing time, durably first. */
struct intent_send {
	struct step_ctx *ctx;
	const char *prefix;
	int64_t timeout;
};

static __thread struct intent_send intent_send;

static int intent_resend(void *arg)
{
	struct intent_send *is = arg;

	step_intent_begin(is->ctx, is->prefix, is->timeout);
	return engine_journal(is->ctx);
}

void step_intent_send_hook(struct step_ctx *ctx, const char *prefix, int64_t timeout)
{
	if (!ctx) {
		http_set_send_hook(NULL, NULL);
		return;
	}
	intent_send.ctx = ctx;
	intent_send.prefix = prefix;
	intent_send.timeout = timeout;
	http_set_send_hook(intent_resend, &intent_send);
}

void step_intent_clear(struct step_ctx *ctx, const char *prefix)
{
	char *k = intent_key(prefix), *s = intent_sent_key(prefix);

	step_set_id_num(ctx->rec, k, 0);
	step_set_id_num(ctx->rec, s, 0);
	free(k);
	free(s);
}

/* Waits on the monotonic clock: a wall-clock jump during the wait neither shortens nor stretches it. */
int step_sleep_until(struct step_ctx *ctx, int64_t when)
{
	const struct timespec slice = {0, 200 * 1000 * 1000};
	int64_t left = when - util_now();
	int64_t end = util_mono_ms() + (left > 0 ? left : 0) * 1000;

	while (util_mono_ms() < end) {
		if (engine_stop_requested(ctx))
			return cs_error(CS_ETRANSIENT, "%s: stopped while waiting", ctx->rec->name);
		nanosleep(&slice, NULL);
	}
	ctx->now = util_now();
	return 0;
}

int step_intent_wait(struct step_ctx *ctx, const char *prefix, int64_t timeout)
{
	char *k = intent_key(prefix);
	long long lands_by = step_id_num(ctx->rec, k), sent_at;
	int rc = 0;

	if (!lands_by) {
		/* An intent journaled before the rule recorded its deadline: count from now. */
		lands_by = (long long)(ctx->now + timeout + step_intent_settle(timeout));
		step_set_id_num(ctx->rec, k, lands_by);
		rc = engine_journal(ctx);
	}
	free(k);
	k = intent_sent_key(prefix);
	sent_at = step_id_num(ctx->rec, k);
	free(k);
	if (!rc && sent_at && ctx->now < sent_at && lands_by > sent_at) {
		/* The clock went back since the send: the whole window, from now. */
		log_emit(LV_WARN, &ctx->log, "the clock is %llds behind the time the paid request was sent",
			 (long long)(sent_at - ctx->now));
		lands_by = ctx->now + (lands_by - sent_at);
	}
	if (rc || ctx->now >= lands_by)
		return rc;
	log_emit(LV_INFO, &ctx->log,
		 "a paid request sent earlier may still reach the provider; looking for it in %llds, before "
		 "anything is sent again",
		 (long long)(lands_by - ctx->now));
	return step_sleep_until(ctx, lands_by);
}

int step_remove_tokens(struct step_ctx *ctx, size_t upto,
		       int (*remove)(struct step_ctx *, const struct state_token *, void *), void *arg,
		       const char *what)
{
	char *first_err = NULL;
	int rc = 0;

	for (size_t i = upto; i-- > 0;) {
		int r = remove(ctx, &ctx->rec->tokens[i], arg);

		if (r) {
			if (!first_err)
				first_err = xstrdup(cs_errmsg());
			rc = r;
			continue;
		}
		state_cert_remove_token(ctx->rec, i);
	}
	if (rc)
		cs_error(CS_ETRANSIENT, "%s: could not remove %s (kept in state, retried): %s", ctx->rec->name, what,
			 first_err);
	free(first_err);
	return rc ? CS_ETRANSIENT : 0;
}
