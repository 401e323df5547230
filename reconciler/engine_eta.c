/* The apply's estimate of its finish: fixed rate-limit windows, window by window. */
#include "engine_eta.h"

#include <stdio.h>
#include <string.h>

#include "../util/util.h"

/* ceil and floor of a non-negative x (no libm). */
static int64_t eta_ceil(double x)
{
	int64_t i = (int64_t)x;

	return (double)i < x ? i + 1 : i;
}

static double eta_floor(double x)
{
	return (double)(int64_t)x;
}

void engine_eta_finish(double now, double requests, double per_second, const struct provider_budget *b,
		       struct engine_eta *out)
{
	double t = now, left = requests, budget, reset, cap, full;
	int64_t n;

	memset(out, 0, sizeof(*out));
	out->requests = requests;
	if (left <= 0 || per_second <= 0) {
		out->finish = now;
		return;
	}
	if (!b || !b->have || b->limit <= 0 || b->window <= 0) {
		out->finish = now + left / per_second;
		return;
	}
	budget = (double)(b->remaining > 0 ? b->remaining : 0) + (double)(b->inflight > 0 ? b->inflight : 0);
	reset = (double)b->reset;
	if (reset <= t) { /* the window is over: the next request opens a fresh one */
		budget = (double)b->limit;
		reset = eta_floor(t) + (double)b->window;
	}
	/* The current window: what is left of its budget, at the workers' pace, before it ends. */
	cap = (reset - t) * per_second;
	if (left <= budget && left <= cap) {
		out->finish = t + left / per_second;
		return;
	}
	if (budget <= cap)
		out->rate_bound = 1;
	left -= budget < cap ? budget : cap;
	t = reset;
	/* Whole windows: limit requests each, unless the workers cannot send that many in one. */
	full = (double)b->window * per_second;
	if ((double)b->limit >= full) {
		out->finish = t + left / per_second;
		return;
	}
	out->rate_bound = 1;
	n = eta_ceil(left / (double)b->limit) - 1;
	if (n > 0) {
		t += (double)n * (double)b->window;
		left -= (double)n * (double)b->limit;
	}
	out->finish = t + left / per_second;
}

double engine_eta_correction(double sent, double guessed, double weight)
{
	double f = (sent + weight) / (guessed + weight);

	return f < 0.5 ? 0.5 : f > 4 ? 4 : f;
}

void engine_eta_format(double finish, double now, char *out, size_t n)
{
	char when[32], in[32];
	int64_t secs = finish > now ? eta_ceil(finish - now) : 0;

	util_fmt_time((int64_t)(finish + 0.5), when);
	util_fmt_duration(secs > 0 ? secs : 0, in);
	snprintf(out, n, "%s (in %s)", when, in);
}
