/* The metrics registry and its Prometheus text rendering. */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/err.h"
#include "../util/util.h"
#include "metrics_process.h"

#ifndef CERTSYNC_VERSION
#define CERTSYNC_VERSION "0.1.0"
#endif

/* A labelled counter family: label sets ("a=\"x\",b=\"y\"") in insertion order. */
struct counter {
	char **labels;
	double *v;
	size_t n, cap;
};

static const double reconcile_buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
#define N_BUCKETS (sizeof(reconcile_buckets) / sizeof(reconcile_buckets[0]))
#define METRICS_MAX_PROVIDERS 16

static struct {
	pthread_mutex_t mu;
	struct counter provider_requests, webhook_events, reconciles, fetches;
	uint64_t hist_counts[N_BUCKETS];
	uint64_t hist_count;
	double hist_sum;
	int64_t last_fetch, last_good_fetch;
	int fetch_ok, ready;
	int verified;  /* source.verify: 1 head verified, 0 head refused, -1 verification off */
	int suspended; /* source.suspend */
	char *verify_head;
	char *revision;
	uint64_t serial;
	int replica, leader; /* replica: metrics_set_replica was called */
	uint64_t leader_changes;
	double lag;
	double loop_last;
	int64_t loop_bound;
	double apply_eta; /* 0: no apply in progress with an estimate */
	int apply_rate_bound;
	struct metrics_cert *certs;
	size_t n_certs;
	struct {
		char provider[32];
		long limit, remaining;
		int64_t reset;
	} rl[METRICS_MAX_PROVIDERS];
	size_t n_rl;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER, .verified = -1};

void metrics_cert_clear(struct metrics_cert *c)
{
	free(c->name);
	free(c->issuer);
	free(c->issuer_kind);
	free(c->fail_class);
	memset(c, 0, sizeof(*c));
}

static void counter_free(struct counter *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->labels[i]);
	free(c->labels);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static void counter_add(struct counter *c, const char *const *kv, const char *const *other_kv, double d);

/* The outcomes of a delivery to a known provider that are counted before its event is read (event "unknown"). */
static const char *const webhook_early_outcomes[] = {"malformed", "oversized", "queue_full", NULL};

/* The series known before any event, at zero (the caller holds M.mu). */
static void metrics_zero_series(void)
{
	static const char *const results[] = {"success", "failure"};
	const char *forged[] = {"provider", "any", "event", "unknown", "outcome", "forged", NULL};
	const char *unknown[] = {"provider", "unknown", "event", "unknown", "outcome", "unknown_provider", NULL};

	for (size_t i = 0; i < 2; i++) {
		const char *kv[] = {"result", results[i], NULL};

		counter_add(&M.reconciles, kv, NULL, 0);
		counter_add(&M.fetches, kv, NULL, 0);
	}
	counter_add(&M.webhook_events, forged, NULL, 0);
	counter_add(&M.webhook_events, unknown, NULL, 0);
}

void metrics_webhook_provider(const char *provider)
{
	pthread_mutex_lock(&M.mu);
	for (size_t i = 0; webhook_early_outcomes[i]; i++) {
		const char *kv[] = {"provider", provider, "event", "unknown", "outcome", webhook_early_outcomes[i],
				    NULL};

		counter_add(&M.webhook_events, kv, NULL, 0);
	}
	pthread_mutex_unlock(&M.mu);
}

void metrics_reset(void)
{
	pthread_mutex_lock(&M.mu);
	counter_free(&M.provider_requests);
	counter_free(&M.webhook_events);
	counter_free(&M.reconciles);
	counter_free(&M.fetches);
	memset(M.hist_counts, 0, sizeof(M.hist_counts));
	M.hist_count = 0;
	M.hist_sum = 0;
	M.last_fetch = M.last_good_fetch = 0;
	M.fetch_ok = M.ready = 0;
	M.verified = -1;
	M.suspended = 0;
	free(M.verify_head);
	M.verify_head = NULL;
	free(M.revision);
	M.revision = NULL;
	M.serial = 0;
	M.replica = M.leader = 0;
	M.leader_changes = 0;
	M.lag = 0;
	M.loop_last = 0;
	M.loop_bound = 0;
	M.apply_eta = 0;
	M.apply_rate_bound = 0;
	M.n_rl = 0;
	for (size_t i = 0; i < M.n_certs; i++)
		metrics_cert_clear(&M.certs[i]);
	free(M.certs);
	M.certs = NULL;
	M.n_certs = 0;
	metrics_zero_series();
	pthread_mutex_unlock(&M.mu);
}

void metrics_escape_label(struct buf *out, const char *value)
{
	for (const char *p = value ? value : ""; *p; p++) {
		if (*p == '\\')
			buf_puts(out, "\\\\");
		else if (*p == '"')
			buf_puts(out, "\\\"");
		else if (*p == '\n')
			buf_puts(out, "\\n");
		else
			buf_append(out, p, 1);
	}
}

/* Builds `k1="v1",k2="v2"` from NULL-terminated key/value pairs. Caller frees. */
static char *labels_make(const char *const *kv)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; kv[i]; i += 2) {
		buf_printf(&b, "%s%s=\"", i ? "," : "", kv[i]);
		metrics_escape_label(&b, kv[i + 1]);
		buf_puts(&b, "\"");
	}
	return buf_detach(&b);
}

/* Adds d to the series with these labels (the caller holds M.mu). Past the cap: the "other" series. */
static void counter_add(struct counter *c, const char *const *kv, const char *const *other_kv, double d)
{
	char *l = labels_make(kv);

	for (size_t i = 0; i < c->n; i++) {
		if (!strcmp(c->labels[i], l)) {
			c->v[i] += d;
			free(l);
			return;
		}
	}
	if (c->n >= METRICS_MAX_SERIES && other_kv) {
		free(l);
		counter_add(c, other_kv, NULL, d);
		return;
	}
	if (c->n >= METRICS_MAX_SERIES + 1) {
		free(l);
		return;
	}
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 8;
		c->labels = xrealloc(c->labels, c->cap * sizeof(*c->labels));
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	c->labels[c->n] = l;
	c->v[c->n++] = d;
}

/* The provider of an HTTP client op ("dnsimple listCertificates" -> "dnsimple"); returns the operation. */
static const char *op_split(const char *op, char provider[32])
{
	const char *sp = op ? strchr(op, ' ') : NULL;

	snprintf(provider, 32, "%.*s", sp ? (int)(sp - op) : 7, sp ? op : "unknown");
	return sp ? sp + 1 : "request";
}

void metrics_set_apply_eta(double finish, int rate_bound)
{
	pthread_mutex_lock(&M.mu);
	M.apply_eta = finish > 0 ? finish : 0;
	M.apply_rate_bound = finish > 0 && rate_bound;
	pthread_mutex_unlock(&M.mu);
}

void metrics_provider_ratelimit(const char *op, long limit, long remaining, int64_t reset)
{
	char provider[32];
	size_t i;

	op_split(op, provider);
	pthread_mutex_lock(&M.mu);
	for (i = 0; i < M.n_rl && strcmp(M.rl[i].provider, provider); i++)
		;
	if (i < METRICS_MAX_PROVIDERS) {
		memcpy(M.rl[i].provider, provider, sizeof(provider));
		M.rl[i].limit = limit;
		M.rl[i].remaining = remaining;
		M.rl[i].reset = reset;
		if (i == M.n_rl)
			M.n_rl++;
	}
	pthread_mutex_unlock(&M.mu);
}

void metrics_provider_request(const char *op, long status)
{
	char provider[32], code[24];
	const char *operation = op_split(op, provider);

	if (status > 0)
		snprintf(code, sizeof(code), "%ld", status);
	else
		snprintf(code, sizeof(code), "none");
	{
		const char *kv[] = {"provider", provider, "operation", operation, "code", code, NULL};
		const char *other[] = {"provider", "other", "operation", "other", "code", "other", NULL};

		pthread_mutex_lock(&M.mu);
		counter_add(&M.provider_requests, kv, other, 1);
		pthread_mutex_unlock(&M.mu);
	}
}

void metrics_webhook_event(const char *provider, const char *event, const char *outcome)
{
	const char *kv[] = {"provider", provider, "event", event, "outcome", outcome, NULL};
	const char *other[] = {"provider", provider, "event", "other", "outcome", outcome, NULL};

	pthread_mutex_lock(&M.mu);
	counter_add(&M.webhook_events, kv, other, 1);
	pthread_mutex_unlock(&M.mu);
}

void metrics_reconcile(const char *result, double seconds)
{
	const char *kv[] = {"result", result, NULL};

	pthread_mutex_lock(&M.mu);
	counter_add(&M.reconciles, kv, NULL, 1);
	for (size_t i = 0; i < N_BUCKETS; i++)
		if (seconds <= reconcile_buckets[i])
			M.hist_counts[i]++;
	M.hist_count++;
	M.hist_sum += seconds;
	pthread_mutex_unlock(&M.mu);
}

void metrics_source_verified(int verified, const char *head)
{
	pthread_mutex_lock(&M.mu);
	M.verified = verified;
	free(M.verify_head);
	M.verify_head = xstrdup(head);
	pthread_mutex_unlock(&M.mu);
}

void metrics_source_suspended(int suspended)
{
	pthread_mutex_lock(&M.mu);
	M.suspended = suspended;
	pthread_mutex_unlock(&M.mu);
}

void metrics_fetch(int ok, int64_t when, const char *revision)
{
	const char *kv[] = {"result", ok ? "success" : "failure", NULL};

	pthread_mutex_lock(&M.mu);
	counter_add(&M.fetches, kv, NULL, 1);
	M.last_fetch = when;
	M.fetch_ok = ok;
	if (ok)
		M.last_good_fetch = when;
	if (revision && !util_streq(revision, M.revision)) {
		free(M.revision);
		M.revision = xstrdup(revision);
	}
	pthread_mutex_unlock(&M.mu);
}

void metrics_set_ready(int ready)
{
	pthread_mutex_lock(&M.mu);
	M.ready = ready;
	pthread_mutex_unlock(&M.mu);
}

void metrics_set_loop(double when, int64_t bound_s)
{
	pthread_mutex_lock(&M.mu);
	M.loop_last = when;
	M.loop_bound = bound_s;
	pthread_mutex_unlock(&M.mu);
}

void metrics_set_replica(int leader, uint64_t leader_changes, double lag_seconds)
{
	pthread_mutex_lock(&M.mu);
	M.replica = 1;
	M.leader = leader;
	M.leader_changes = leader_changes;
	M.lag = lag_seconds;
	pthread_mutex_unlock(&M.mu);
}

void metrics_set_state_serial(uint64_t serial)
{
	pthread_mutex_lock(&M.mu);
	M.serial = serial;
	pthread_mutex_unlock(&M.mu);
}

void metrics_set_certs(struct metrics_cert *v, size_t n)
{
	struct metrics_cert *old;
	size_t n_old;

	pthread_mutex_lock(&M.mu);
	old = M.certs;
	n_old = M.n_certs;
	M.certs = v;
	M.n_certs = n;
	pthread_mutex_unlock(&M.mu);
	for (size_t i = 0; i < n_old; i++)
		metrics_cert_clear(&old[i]);
	free(old);
}

/* ---------- rendering ---------- */

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_counter(struct buf *b, const char *name, const char *help, const struct counter *c)
{
	family(b, name, "counter", help);
	for (size_t i = 0; i < c->n; i++)
		buf_printf(b, "%s{%s} %.17g\n", name, c->labels[i], c->v[i]);
}

/*
 * A certificate's labels: certsync's name and issuer, and cert-manager's issuer_name and issuer_kind (the
 * issuer's type), so its dashboards and alerts work unchanged.
 */
static void cert_labels(struct buf *b, const struct metrics_cert *c)
{
	buf_puts(b, "name=\"");
	metrics_escape_label(b, c->name);
	buf_puts(b, "\",issuer=\"");
	metrics_escape_label(b, c->issuer);
	buf_puts(b, "\",issuer_name=\"");
	metrics_escape_label(b, c->issuer);
	buf_puts(b, "\",issuer_kind=\"");
	metrics_escape_label(b, c->issuer_kind ? c->issuer_kind : "unknown");
	buf_puts(b, "\"");
}

/* name{name="...",issuer="..."<extra>} value, for every certificate where pick() gives a value. */
static void render_cert_gauge(struct buf *b, const char *name, const char *help,
			      int (*pick)(const struct metrics_cert *, double *))
{
	double v;

	family(b, name, "gauge", help);
	for (size_t i = 0; i < M.n_certs; i++) {
		if (!pick(&M.certs[i], &v))
			continue;
		buf_printf(b, "%s{", name);
		cert_labels(b, &M.certs[i]);
		buf_printf(b, "} %.17g\n", v);
	}
}

static int pick_expiry(const struct metrics_cert *c, double *v)
{
	*v = (double)c->not_after;
	return c->not_after > 0;
}

static int pick_not_before(const struct metrics_cert *c, double *v)
{
	*v = (double)c->not_before;
	return c->not_before > 0;
}

static int pick_renewal(const struct metrics_cert *c, double *v)
{
	*v = (double)c->renewal_time;
	return c->renewal_time > 0;
}

static int pick_last_success(const struct metrics_cert *c, double *v)
{
	*v = (double)c->last_success;
	return c->last_success > 0;
}

static int pick_next_attempt(const struct metrics_cert *c, double *v)
{
	*v = (double)c->next_attempt;
	return c->next_attempt > 0;
}

static int pick_last_failure(const struct metrics_cert *c, double *v)
{
	*v = (double)c->last_failure;
	return c->last_failure > 0;
}

static int pick_failed(const struct metrics_cert *c, double *v)
{
	*v = c->failed_attempts;
	return 1;
}

static void render_ready(struct buf *b)
{
	static const char *const conds[] = {"True", "False", "Unknown"};

	family(b, "certsync_certificate_ready_status", "gauge",
	       "The ready condition of the certificate (1 for the current condition, 0 for the others).");
	for (size_t i = 0; i < M.n_certs; i++) {
		int cur = M.certs[i].ready > 0 ? 0 : M.certs[i].ready == 0 ? 1 : 2;

		for (int k = 0; k < 3; k++) {
			buf_puts(b, "certsync_certificate_ready_status{");
			cert_labels(b, &M.certs[i]);
			buf_printf(b, ",condition=\"%s\"} %d\n", conds[k], k == cur);
		}
	}
}

/* 1 with the failure class while a certificate fails (or backs off a failed step), else 0 with class "none". */
static void render_failing(struct buf *b)
{
	family(b, "certsync_certificate_failing", "gauge",
	       "1 while the certificate is failed or its current step failed (label class: config, transient, "
	       "rejected, "
	       "verification, unknown), else 0 (class none).");
	for (size_t i = 0; i < M.n_certs; i++) {
		const struct metrics_cert *c = &M.certs[i];

		buf_puts(b, "certsync_certificate_failing{");
		cert_labels(b, c);
		buf_puts(b, ",class=\"");
		metrics_escape_label(b, c->failing && c->fail_class ? c->fail_class : "none");
		buf_printf(b, "\"} %d\n", c->failing ? 1 : 0);
	}
}

static void render_certs(struct buf *b)
{
	render_cert_gauge(b, "certsync_certificate_expiration_timestamp_seconds",
			  "The date after which the installed certificate expires (notAfter), in unix seconds.",
			  pick_expiry);
	render_cert_gauge(b, "certsync_certificate_not_before_timestamp_seconds",
			  "The installed certificate's notBefore, in unix seconds.", pick_not_before);
	render_cert_gauge(b, "certsync_certificate_renewal_timestamp_seconds",
			  "When certsync will renew the certificate (renewBefore and jitter applied), in unix seconds.",
			  pick_renewal);
	render_ready(b);
	render_cert_gauge(b, "certsync_certificate_last_success_timestamp_seconds",
			  "When the last change of the certificate completed, in unix seconds.", pick_last_success);
	render_cert_gauge(b, "certsync_certificate_next_attempt_timestamp_seconds",
			  "When the pending or failing step of the certificate is tried next, in unix seconds.",
			  pick_next_attempt);
	render_cert_gauge(b, "certsync_certificate_last_failure_timestamp_seconds",
			  "When a step of the certificate last failed (cleared by a success), in unix seconds.",
			  pick_last_failure);
	render_cert_gauge(
		b, "certsync_certificate_failed_attempts",
		"Failed attempts of the certificate's current step (at least 1 when it is failed, 0 when none "
		"failed).",
		pick_failed);
	render_failing(b);
}

static void render_histogram(struct buf *b)
{
	family(b, "certsync_reconcile_duration_seconds", "histogram",
	       "Duration of reconcile passes that applied changes.");
	for (size_t i = 0; i < N_BUCKETS; i++)
		buf_printf(b, "certsync_reconcile_duration_seconds_bucket{le=\"%g\"} %llu\n", reconcile_buckets[i],
			   (unsigned long long)M.hist_counts[i]);
	buf_printf(b, "certsync_reconcile_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
		   (unsigned long long)M.hist_count);
	buf_printf(b, "certsync_reconcile_duration_seconds_sum %.17g\n", M.hist_sum);
	buf_printf(b, "certsync_reconcile_duration_seconds_count %llu\n", (unsigned long long)M.hist_count);
}

static void render_source(struct buf *b)
{
	family(b, "certsync_source_info", "gauge",
	       "The revision being served (branch@sha1:<hex>, the last good fetch), always 1.");
	if (M.revision) {
		buf_puts(b, "certsync_source_info{revision=\"");
		metrics_escape_label(b, M.revision);
		buf_puts(b, "\"} 1\n");
	}
	family(b, "certsync_source_last_fetch_timestamp_seconds", "gauge",
	       "When the source was last fetched (successfully or not), in unix seconds.");
	if (M.last_fetch)
		buf_printf(b, "certsync_source_last_fetch_timestamp_seconds %lld\n", (long long)M.last_fetch);
	family(b, "certsync_source_last_successful_fetch_timestamp_seconds", "gauge",
	       "When the source was last fetched successfully, in unix seconds.");
	if (M.last_good_fetch)
		buf_printf(b, "certsync_source_last_successful_fetch_timestamp_seconds %lld\n",
			   (long long)M.last_good_fetch);
	family(b, "certsync_source_fetch_ok", "gauge",
	       "1 if the last fetch of the source succeeded, 0 if it failed (the last good revision is served).");
	buf_printf(b, "certsync_source_fetch_ok %d\n", M.fetch_ok);
	render_counter(b, "certsync_source_fetches_total", "Source fetches by result.", &M.fetches);
	family(b, "certsync_source_suspended", "gauge",
	       "1 while source.suspend is true (run neither fetches nor applies).");
	buf_printf(b, "certsync_source_suspended %d\n", M.suspended);
	if (M.verified >= 0) {
		family(b, "certsync_source_verified", "gauge",
		       "source.verify: 1 if the fetched head commit carries a good signature by a trusted key, 0 if it "
		       "was refused (the last verified revision is served); label head: that commit.");
		buf_puts(b, "certsync_source_verified{head=\"");
		metrics_escape_label(b, M.verify_head ? M.verify_head : "");
		buf_printf(b, "\"} %d\n", M.verified);
	}
}

static void render_ratelimits(struct buf *b)
{
	family(b, "certsync_provider_ratelimit_limit", "gauge",
	       "The request budget per window the provider last reported (X-RateLimit-Limit).");
	for (size_t i = 0; i < M.n_rl; i++)
		buf_printf(b, "certsync_provider_ratelimit_limit{provider=\"%s\"} %ld\n", M.rl[i].provider,
			   M.rl[i].limit);
	family(b, "certsync_provider_ratelimit_remaining", "gauge",
	       "Requests left in the provider's current window, as last reported (X-RateLimit-Remaining).");
	for (size_t i = 0; i < M.n_rl; i++)
		buf_printf(b, "certsync_provider_ratelimit_remaining{provider=\"%s\"} %ld\n", M.rl[i].provider,
			   M.rl[i].remaining);
	family(b, "certsync_provider_ratelimit_reset_timestamp_seconds", "gauge",
	       "When the provider's current rate-limit window resets, in unix seconds.");
	for (size_t i = 0; i < M.n_rl; i++)
		buf_printf(b, "certsync_provider_ratelimit_reset_timestamp_seconds{provider=\"%s\"} %lld\n",
			   M.rl[i].provider, (long long)M.rl[i].reset);
}

int metrics_render(struct buf *out)
{
	struct buf b = BUF_INIT;
	int rc;

	pthread_mutex_lock(&M.mu);
	family(&b, "certsync_build_info", "gauge", "certsync's version, always 1.");
	buf_printf(&b, "certsync_build_info{version=\"%s\"} 1\n", CERTSYNC_VERSION);
	family(&b, "certsync_ready", "gauge",
	       "1 when /readyz answers 200: a pass completed, the state is writable and every certificate is ready.");
	buf_printf(&b, "certsync_ready %d\n", M.ready);
	family(&b, "certsync_loop_last_pass_timestamp_seconds", "gauge",
	       "When the loop last completed a pass (woke, reconciled what was due, went back to sleep), in unix "
	       "seconds.");
	if (M.loop_last > 0)
		buf_printf(&b, "certsync_loop_last_pass_timestamp_seconds %.3f\n", M.loop_last);
	family(&b, "certsync_loop_liveness_bound_seconds", "gauge",
	       "How long the loop may go without completing a pass before /healthz fails.");
	buf_printf(&b, "certsync_loop_liveness_bound_seconds %lld\n", (long long)M.loop_bound);
	render_certs(&b);
	render_counter(&b, "certsync_reconcile_total", "Reconcile passes that applied changes, by result.",
		       &M.reconciles);
	render_histogram(&b);
	render_counter(&b, "certsync_provider_requests_total",
		       "HTTP requests to providers by provider, operation and status code (none = no response).",
		       &M.provider_requests);
	render_ratelimits(&b);
	if (M.apply_eta > 0) {
		family(&b, "certsync_apply_estimated_finish_timestamp_seconds", "gauge",
		       "When the apply in progress should finish, from the requests left, the providers' rate "
		       "budgets and the pace so far (absent when no apply is in progress).");
		buf_printf(&b, "certsync_apply_estimated_finish_timestamp_seconds %.3f\n", M.apply_eta);
		family(&b, "certsync_apply_rate_limited", "gauge",
		       "1 while the estimate is rate-bound (a provider's spent budget holds the apply), 0 while it "
		       "is latency-bound.");
		buf_printf(&b, "certsync_apply_rate_limited %d\n", M.apply_rate_bound);
	}
	render_counter(&b, "certsync_webhook_events_total", "Webhook deliveries by provider, event and outcome.",
		       &M.webhook_events);
	render_source(&b);
	family(&b, "certsync_state_serial", "gauge", "The serial of the state last written.");
	buf_printf(&b, "certsync_state_serial %llu\n", (unsigned long long)M.serial);
	if (M.replica) {
		family(&b, "certsync_leader", "gauge",
		       "1 while this replica holds the shared state's lease (calls providers, writes the state).");
		buf_printf(&b, "certsync_leader %d\n", M.leader);
		family(&b, "certsync_leader_changes_total", "counter",
		       "Leader changes this replica saw (it took the lease, lost it, or another replica took it).");
		buf_printf(&b, "certsync_leader_changes_total %llu\n", (unsigned long long)M.leader_changes);
		family(&b, "certsync_state_lag_seconds", "gauge",
		       "Seconds since the oldest shared state change this replica has not installed yet (0 in sync).");
		buf_printf(&b, "certsync_state_lag_seconds %.3f\n", M.lag);
	}
	pthread_mutex_unlock(&M.mu);
	metrics_render_process(&b);
	rc = buf_append(out, b.data ? b.data : "", b.len);
	buf_free(&b);
	return rc;
}
