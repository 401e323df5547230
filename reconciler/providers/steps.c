/* Step helpers shared by the drivers: numeric provider ids, moving on, polling later. */
#include <stdio.h>
#include <stdlib.h>

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
