/* The apply's finish estimate: fixed rate-limit windows, the workers' pace, the correction of guesses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../reconciler/engine_eta.h"

static struct provider_budget budget(long limit, long remaining, int64_t reset, int64_t window)
{
	struct provider_budget b;

	memset(&b, 0, sizeof(b));
	b.have = 1;
	b.limit = limit;
	b.remaining = remaining;
	b.reset = reset;
	b.window = window;
	return b;
}

static void assert_near(double got, double want)
{
	if (got < want - 1e-6 || got > want + 1e-6)
		fail_msg("got %.6f, want %.6f", got, want);
}

/* No limit reported: requests over the pace. */
static void test_eta_without_a_limit_is_latency_bound(void **state)
{
	struct engine_eta e;

	(void)state;
	engine_eta_finish(1000.0, 400, 80.0, NULL, &e);
	assert_near(e.finish, 1005.0);
	assert_false(e.rate_bound);
}

/* Enough budget left in the window: latency-bound, even with a limit. */
static void test_eta_within_the_budget_is_latency_bound(void **state)
{
	struct provider_budget b = budget(2400, 2000, 4600, 3600);
	struct engine_eta e;

	(void)state;
	engine_eta_finish(1000.0, 500, 50.0, &b, &e);
	assert_near(e.finish, 1010.0);
	assert_false(e.rate_bound);
}

/* DNSimple's hour: 300 requests, 100 left until 1600, then 2400 per hour: the rest at 1600 plus 200 / pace. */
static void test_eta_waits_for_the_window_when_the_budget_runs_out(void **state)
{
	struct provider_budget b = budget(2400, 100, 1600, 3600);
	struct engine_eta e;

	(void)state;
	engine_eta_finish(1000.0, 300, 10.0, &b, &e);
	assert_true(e.rate_bound);
	assert_near(e.finish, 1620.0);
}

/* Several whole windows: 50 per 10 s, 301 requests, 49 left until 1010: 5 more windows, the last one partial. */
static void test_eta_counts_whole_windows(void **state)
{
	struct provider_budget b = budget(50, 49, 1010, 10);
	struct engine_eta e;

	(void)state;
	engine_eta_finish(1000.0, 301, 100.0, &b, &e);
	assert_true(e.rate_bound);
	/* 252 after the first window: 5 windows of 50 (1010 .. 1050), then 2 at 1060 */
	assert_near(e.finish, 1060.0 + 2 / 100.0);
}

/* Requests in flight were taken from the budget and are counted in the requests: they go back in. */
static void test_eta_counts_requests_in_flight_once(void **state)
{
	struct provider_budget b = budget(50, 0, 1010, 10);
	struct engine_eta e;

	(void)state;
	b.inflight = 4;
	engine_eta_finish(1000.0, 4, 100.0, &b, &e);
	assert_false(e.rate_bound);
	assert_near(e.finish, 1000.04);
}

/* A window that has ended: the next request opens a fresh one at once. */
static void test_eta_after_the_reset_starts_a_fresh_window(void **state)
{
	struct provider_budget b = budget(50, 0, 990, 10);
	struct engine_eta e;

	(void)state;
	engine_eta_finish(1000.0, 60, 100.0, &b, &e);
	assert_true(e.rate_bound);
	assert_near(e.finish, 1010.0 + 10 / 100.0);
}

/* Workers too slow to spend a window's budget: the limit never binds. */
static void test_eta_slow_workers_are_not_rate_bound(void **state)
{
	struct provider_budget b = budget(50, 50, 1010, 10);
	struct engine_eta e;

	(void)state;
	engine_eta_finish(1000.0, 40, 2.0, &b, &e);
	assert_false(e.rate_bound);
	assert_near(e.finish, 1020.0);
}

static void test_eta_correction_is_smoothed_and_bounded(void **state)
{
	(void)state;
	assert_near(engine_eta_correction(0, 0, 10), 1.0);
	assert_near(engine_eta_correction(30, 10, 10), 2.0);
	assert_near(engine_eta_correction(1000, 10, 10), 4.0);
	assert_near(engine_eta_correction(0, 1000, 10), 0.5);
}

static void test_eta_format_names_the_time_and_the_wait(void **state)
{
	char out[64];

	(void)state;
	engine_eta_format(1764952000.0 + 65.2, 1764952000.0, out, sizeof(out));
	assert_string_equal(out, "2025-12-05T16:27:45Z (in 1m6s)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eta_without_a_limit_is_latency_bound),
		cmocka_unit_test(test_eta_within_the_budget_is_latency_bound),
		cmocka_unit_test(test_eta_waits_for_the_window_when_the_budget_runs_out),
		cmocka_unit_test(test_eta_counts_whole_windows),
		cmocka_unit_test(test_eta_counts_requests_in_flight_once),
		cmocka_unit_test(test_eta_after_the_reset_starts_a_fresh_window),
		cmocka_unit_test(test_eta_slow_workers_are_not_rate_bound),
		cmocka_unit_test(test_eta_correction_is_smoothed_and_bounded),
		cmocka_unit_test(test_eta_format_names_the_time_and_the_wait),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
