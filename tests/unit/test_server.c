/* The daemon's HTTP server, metrics renderer and scheduling helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../reconciler/daemon/daemon.h"
#include "../../reconciler/metrics.h"
#include "../../reconciler/server/http_server.h"
#include "../../util/buf.h"
#include "../../util/http.h"
#include "../../util/util.h"

/* ---------- webhook path and secret ---------- */

static void test_webhook_path_splits_provider_and_secret(void **s)
{
	const char *p, *sec;
	size_t pl, sl;

	(void)s;
	assert_true(server_parse_webhook_path("/webhooks/dnsimple/s3cr3t", &p, &pl, &sec, &sl));
	assert_int_equal(pl, 8);
	assert_memory_equal(p, "dnsimple", 8);
	assert_int_equal(sl, 6);
	assert_string_equal(sec, "s3cr3t");
	assert_true(server_parse_webhook_path("/webhooks/dns-prod_2/x", &p, &pl, &sec, &sl));
	assert_int_equal(pl, 10);
}

static void test_webhook_path_rejects_everything_else(void **s)
{
	static const char *const bad[] = {
		"/webhooks/dnsimple/",	      /* no secret */
		"/webhooks/dnsimple",	      /* no secret segment */
		"/webhooks//secret",	      /* no provider */
		"/webhooks/DNSimple/secret",  /* provider is lower case */
		"/webhooks/dns.imple/secret", /* no dots */
		"/webhooks/dnsimple/sec/ret", /* one segment only */
		"/webhooks/dnsimple/sec?x=1", /* no query */
		"/webhook/dnsimple/secret",   /* wrong prefix */
		"/metrics",
		"",
		NULL,
	};
	const char *p, *sec;
	size_t pl, sl;
	char longp[128];

	(void)s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(server_parse_webhook_path(bad[i], &p, &pl, &sec, &sl));
	snprintf(longp, sizeof(longp), "/webhooks/%064d/secret", 0);
	assert_false(server_parse_webhook_path(longp, &p, &pl, &sec, &sl));
}

static void test_secret_compare_needs_the_exact_secret(void **s)
{
	(void)s;
	assert_true(server_secret_equal("abcdef", 6, "abcdef", 6));
	assert_false(server_secret_equal("abcdeg", 6, "abcdef", 6));
	assert_false(server_secret_equal("abcde", 5, "abcdef", 6));
	assert_false(server_secret_equal("abcdefg", 7, "abcdef", 6));
	assert_false(server_secret_equal("", 0, "abcdef", 6));
	assert_false(server_secret_equal("", 0, "", 0)); /* no secret configured: nothing matches */
}

static void test_retry_path_and_bearer_token(void **s)
{
	const char *name = "x";
	char longn[300];

	(void)s;
	assert_true(server_parse_retry_path("/retry", &name));
	assert_null(name);
	assert_true(server_parse_retry_path("/retry/shop-www.v2", &name));
	assert_string_equal(name, "shop-www.v2");
	assert_false(server_parse_retry_path("/retry/", &name));
	assert_false(server_parse_retry_path("/retry/Shop", &name));
	assert_false(server_parse_retry_path("/retry/a/b", &name));
	assert_false(server_parse_retry_path("/retry/a?x=1", &name));
	assert_false(server_parse_retry_path("/retryx", &name));
	assert_false(server_parse_retry_path("/webhooks/retry", &name));
	memset(longn, 'a', sizeof(longn));
	memcpy(longn, "/retry/", 7);
	longn[7 + SERVER_MAX_NAME + 1] = 0;
	assert_false(server_parse_retry_path(longn, &name));
	longn[7 + SERVER_MAX_NAME] = 0;
	assert_true(server_parse_retry_path(longn, &name));
	assert_string_equal(server_bearer_token("Bearer tok-1"), "tok-1");
	assert_string_equal(server_bearer_token("bearer  tok-1"), "tok-1");
	assert_null(server_bearer_token("Basic dXNlcjpwYXNz"));
	assert_null(server_bearer_token("Bearer "));
	assert_null(server_bearer_token(NULL));
}

static void test_liveness_bound_follows_the_interval(void **s)
{
	struct config cfg;

	(void)s;
	memset(&cfg, 0, sizeof(cfg));
	cfg.source.interval = 60;
	assert_int_equal(daemon_liveness_bound(&cfg), 3 * 60 + DAEMON_LIVENESS_GRACE);
	cfg.source.interval = 3600;
	assert_int_equal(daemon_liveness_bound(&cfg), 3 * 3600 + DAEMON_LIVENESS_GRACE);
	cfg.server.liveness_timeout = 90;
	assert_int_equal(daemon_liveness_bound(&cfg), 90);
}

/* ---------- metrics ---------- */

static const char *find_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0))
			return p;
	return NULL;
}

static char *render(void)
{
	struct buf b = BUF_INIT;

	assert_int_equal(metrics_render(&b), 0);
	return buf_detach(&b);
}

static void test_metrics_render_certificate_gauges(void **s)
{
	struct metrics_cert *c = xcalloc(2, sizeof(*c));
	char *text;

	(void)s;
	metrics_reset();
	c[0].name = xstrdup("shop-www");
	c[0].issuer = xstrdup("dns");
	c[0].issuer_kind = xstrdup("dnsimple"); /* c[1] has none: "unknown" */
	c[0].ready = 1;
	c[0].not_before = 1000;
	c[0].not_after = 2000;
	c[0].renewal_time = 1700;
	c[0].last_success = 1100;
	c[1].name = xstrdup("new");
	c[1].issuer = xstrdup("internal");
	c[1].ready = -1;
	c[1].next_attempt = 1234;
	c[1].failed_attempts = 2;
	c[1].last_failure = 1200;
	c[1].failing = 1;
	c[1].fail_class = xstrdup("config");
	metrics_set_certs(c, 2);
	text = render();
	assert_non_null(find_line(text, "certsync_certificate_expiration_timestamp_seconds{name=\"shop-www\",issuer="
					"\"dns\",issuer_name=\"dns\",issuer_kind=\"dnsimple\"} 2000"));
	assert_non_null(find_line(text, "certsync_certificate_renewal_timestamp_seconds{name=\"shop-www\",issuer="
					"\"dns\",issuer_name=\"dns\",issuer_kind=\"dnsimple\"} 1700"));
	assert_non_null(find_line(text, "certsync_certificate_ready_status{name=\"shop-www\",issuer=\"dns\",issuer_"
					"name=\"dns\",issuer_kind=\"dnsimple\",condition=\"True\"} 1"));
	assert_non_null(find_line(text, "certsync_certificate_ready_status{name=\"shop-www\",issuer=\"dns\",issuer_"
					"name=\"dns\",issuer_kind=\"dnsimple\",condition=\"False\"} 0"));
	assert_non_null(find_line(text, "certsync_certificate_ready_status{name=\"new\",issuer=\"internal\",issuer_"
					"name=\"internal\",issuer_kind=\"unknown\",condition=\"Unknown\"} 1"));
	assert_non_null(find_line(text, "certsync_certificate_next_attempt_timestamp_seconds{name=\"new\",issuer="
					"\"internal\",issuer_name=\"internal\",issuer_kind=\"unknown\"} 1234"));
	assert_non_null(find_line(text, "certsync_certificate_failed_attempts{name=\"new\",issuer=\"internal\",issuer_"
					"name=\"internal\",issuer_kind=\"unknown\"} 2"));
	assert_non_null(find_line(text, "certsync_certificate_last_failure_timestamp_seconds{name=\"new\",issuer="
					"\"internal\",issuer_name=\"internal\",issuer_kind=\"unknown\"} 1200"));
	assert_null(strstr(text, "certsync_certificate_last_failure_timestamp_seconds{name=\"shop-www\""));
	assert_non_null(find_line(text, "certsync_certificate_failing{name=\"new\",issuer=\"internal\",issuer_name="
					"\"internal\",issuer_kind=\"unknown\",class=\"config\"} 1"));
	assert_non_null(find_line(text, "certsync_certificate_failing{name=\"shop-www\",issuer=\"dns\",issuer_name="
					"\"dns\",issuer_kind=\"dnsimple\",class=\"none\"} 0"));
	/* no certificate yet: no expiry series for it */
	assert_null(strstr(text, "certsync_certificate_expiration_timestamp_seconds{name=\"new\""));
	free(text);
	metrics_reset();
}

static void test_metrics_counters_histogram_and_source(void **s)
{
	char *text;

	(void)s;
	metrics_reset();
	metrics_provider_request("dnsimple listCertificates", 200);
	metrics_provider_request("dnsimple listCertificates", 200);
	metrics_provider_request("dnsimple getCertificate", 0);
	metrics_webhook_event("dnsimple", "certificate.issue", "accepted");
	metrics_reconcile("success", 0.07);
	metrics_reconcile("failure", 400);
	metrics_fetch(1, 1700000000, "main@sha1:0123456789abcdef0123456789abcdef01234567");
	metrics_fetch(0, 1700000060, NULL);
	metrics_provider_ratelimit("dnsimple listCertificates", 2400, 2390, 1700003600);
	metrics_provider_ratelimit("dnsimple getCertificate", 2400, 2389, 1700003600);
	text = render();
	assert_non_null(find_line(text, "certsync_provider_ratelimit_remaining{provider=\"dnsimple\"} 2389"));
	assert_non_null(find_line(text, "certsync_provider_ratelimit_limit{provider=\"dnsimple\"} 2400"));
	assert_non_null(find_line(
		text, "certsync_provider_ratelimit_reset_timestamp_seconds{provider=\"dnsimple\"} 1700003600"));
	assert_non_null(find_line(text, "certsync_provider_requests_total{provider=\"dnsimple\",operation="
					"\"listCertificates\",code=\"200\"} 2"));
	assert_non_null(find_line(text, "certsync_provider_requests_total{provider=\"dnsimple\",operation="
					"\"getCertificate\",code=\"none\"} 1"));
	assert_non_null(find_line(text, "certsync_webhook_events_total{provider=\"dnsimple\",event=\"certificate."
					"issue\",outcome=\"accepted\"} 1"));
	assert_non_null(find_line(text, "certsync_reconcile_total{result=\"success\"} 1"));
	/* cumulative buckets: 0.07 s is in le=0.1 but not le=0.05; 400 s only in +Inf */
	assert_non_null(find_line(text, "certsync_reconcile_duration_seconds_bucket{le=\"0.05\"} 0"));
	assert_non_null(find_line(text, "certsync_reconcile_duration_seconds_bucket{le=\"0.1\"} 1"));
	assert_non_null(find_line(text, "certsync_reconcile_duration_seconds_bucket{le=\"300\"} 1"));
	assert_non_null(find_line(text, "certsync_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2"));
	assert_non_null(find_line(text, "certsync_reconcile_duration_seconds_count 2"));
	/* a failed fetch keeps the last good revision */
	assert_non_null(find_line(
		text, "certsync_source_info{revision=\"main@sha1:0123456789abcdef0123456789abcdef01234567\"} 1"));
	assert_non_null(find_line(text, "certsync_source_fetch_ok 0"));
	assert_non_null(find_line(text, "certsync_source_last_fetch_timestamp_seconds 1700000060"));
	assert_non_null(find_line(text, "certsync_source_last_successful_fetch_timestamp_seconds 1700000000"));
	assert_non_null(find_line(text, "# TYPE certsync_reconcile_total counter"));
	assert_non_null(find_line(text, "# TYPE certsync_reconcile_duration_seconds histogram"));
	free(text);
	metrics_reset();
}

static void test_metrics_every_family_has_one_help_and_type(void **s)
{
	char *text, *p, *line;
	size_t n_type = 0, n_help = 0;

	(void)s;
	metrics_reset();
	metrics_webhook_event("dnsimple", "other", "ignored");
	text = render();
	for (p = text; (line = strstr(p, "# TYPE ")); p = line + 1) {
		char name[128], again[140];

		n_type++;
		assert_int_equal(sscanf(line, "# TYPE %127s", name), 1);
		snprintf(again, sizeof(again), "# TYPE %s ", name);
		assert_null(strstr(line + 1, again)); /* a second TYPE line is a parse error for Prometheus */
		assert_true(!strncmp(name, "certsync_", 9) || !strncmp(name, "process_", 8));
	}
	for (p = text; (line = strstr(p, "# HELP ")); p = line + 1)
		n_help++;
	assert_true(n_type > 15);
	assert_int_equal(n_type, n_help);
	assert_int_equal(text[strlen(text) - 1], '\n');
	free(text);
	metrics_reset();
}

static void test_metrics_escape_labels_and_cap_series(void **s)
{
	struct buf b = BUF_INIT;
	char *text, op[64];
	size_t series = 0;

	(void)s;
	metrics_escape_label(&b, "a\"b\\c\nd");
	assert_string_equal(b.data, "a\\\"b\\\\c\\nd");
	buf_free(&b);
	metrics_reset();
	for (int i = 0; i < METRICS_MAX_SERIES + 50; i++) {
		snprintf(op, sizeof(op), "dnsimple op%d", i);
		metrics_provider_request(op, 200);
	}
	text = render();
	for (char *p = text; (p = strstr(p, "\ncertsync_provider_requests_total{")); p++)
		series++;
	assert_int_equal(series, METRICS_MAX_SERIES + 1);
	assert_non_null(find_line(
		text, "certsync_provider_requests_total{provider=\"other\",operation=\"other\",code=\"other\"} 50"));
	free(text);
	metrics_reset();
}

/* ---------- scheduling helpers ---------- */

static void test_renewal_jitter_is_deterministic_small_and_spread(void **s)
{
	int64_t nb = 1700000000, na = nb + 90 * 86400, at = na - 30 * 86400;
	int64_t j1 = daemon_renewal_jitter("shop-www", nb, na, at);
	int distinct = 0;

	(void)s;
	assert_int_equal(j1, daemon_renewal_jitter("shop-www", nb, na, at));
	assert_true(j1 >= 0 && j1 <= 6 * 3600);
	for (int i = 0; i < 20; i++) {
		char name[32];

		snprintf(name, sizeof(name), "cert-%d", i);
		distinct += daemon_renewal_jitter(name, nb, na, at) != j1;
	}
	assert_true(distinct >= 18);
	/* a short renew window bounds it: a quarter of one hour at most */
	assert_true(daemon_renewal_jitter("shop-www", nb, na, na - 3600) <= 900);
	assert_int_equal(daemon_renewal_jitter("x", nb, na, na), 0);
}

static void test_revision_is_flux_style(void **s)
{
	char *r = daemon_revision("refs/heads/main", "abc");

	(void)s;
	assert_string_equal(r, "main@sha1:abc");
	free(r);
	r = daemon_revision("v1.2", "def");
	assert_string_equal(r, "v1.2@sha1:def");
	free(r);
}

/* ---------- the live server ---------- */

static long request(struct http_client *c, const char *method, const char *url, const char *body, size_t len,
		    struct buf *out)
{
	struct http_request rq;
	struct http_response rs;
	long status;

	memset(&rq, 0, sizeof(rq));
	memset(&rs, 0, sizeof(rs));
	rq.op = "test request";
	rq.method = method;
	rq.url = url;
	rq.body = body;
	rq.body_len = len;
	rq.retry = HTTP_RETRY_NEVER;
	http_do(c, &rq, &rs); /* 5xx is CS_ETRANSIENT: the status is what is tested */
	status = rs.status;
	if (out)
		buf_append(out, rs.body.data ? rs.body.data : "", rs.body.len);
	http_response_free(&rs);
	return status;
}

static void test_server_queues_webhooks_and_answers_probes(void **s)
{
	struct http_server_opts o = {"127.0.0.1:0", NULL, NULL};
	struct http_server *srv = NULL;
	struct http_client *c = NULL;
	struct http_client_opts co;
	struct webhook_delivery got[4];
	struct buf b = BUF_INIT;
	char url[128], base[64];
	char *big = xcalloc(1, SERVER_MAX_WEBHOOK_BODY + 2);

	(void)s;
	memset(&co, 0, sizeof(co));
	co.max_retries = 0;
	assert_int_equal(http_client_new(&co, &c), 0);
	assert_int_equal(http_server_start(&o, &srv), 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", http_server_port(srv));
	http_server_set_secret(srv, "right");
	snprintf(url, sizeof(url), "%s/webhooks/dnsimple/right", base);
	assert_int_equal(request(c, "POST", url, "{\"a\":1}", 7, NULL), 200);
	snprintf(url, sizeof(url), "%s/webhooks/dnsimple/wrong", base);
	assert_int_equal(request(c, "POST", url, "{}", 2, NULL), 404);
	memset(big, 'x', SERVER_MAX_WEBHOOK_BODY + 1);
	snprintf(url, sizeof(url), "%s/webhooks/dnsimple/right", base);
	assert_int_equal(request(c, "POST", url, big, SERVER_MAX_WEBHOOK_BODY + 1, NULL), 413);
	assert_int_equal(request(c, "POST", url, big, SERVER_MAX_WEBHOOK_BODY, NULL), 200);
	assert_int_equal(http_server_take(srv, got, 4), 2);
	assert_string_equal(got[0].provider, "dnsimple");
	assert_int_equal(got[0].len, 7);
	assert_memory_equal(got[0].body, "{\"a\":1}", 7);
	assert_int_equal(got[1].len, SERVER_MAX_WEBHOOK_BODY);
	free(got[0].body);
	free(got[1].body);
	assert_int_equal(http_server_take(srv, got, 4), 0);
	/* A full queue: no room comes (the loop takes nothing), so after a short wait the answer is 503; room again,
	 * 200. */
	for (int i = 0; i < SERVER_MAX_QUEUE; i++)
		assert_int_equal(request(c, "POST", url, "{}", 2, NULL), 200);
	assert_int_equal(request(c, "POST", url, "{}", 2, NULL), 503);
	assert_int_equal(http_server_take(srv, got, 1), 1);
	free(got[0].body);
	assert_int_equal(request(c, "POST", url, "{}", 2, NULL), 200);
	for (size_t n; (n = http_server_take(srv, got, 4)) > 0;)
		for (size_t i = 0; i < n; i++)
			free(got[i].body);
	/* webhooks off: even the old secret is refused */
	http_server_set_secret(srv, NULL);
	assert_int_equal(request(c, "POST", url, "{}", 2, NULL), 404);
	snprintf(url, sizeof(url), "%s/healthz", base);
	assert_int_equal(request(c, "GET", url, NULL, 0, NULL), 200);
	snprintf(url, sizeof(url), "%s/readyz", base);
	assert_int_equal(request(c, "GET", url, NULL, 0, NULL), 503);
	http_server_set_ready(srv, 1, "{\"revision\":\"main@sha1:abc\"}");
	assert_int_equal(request(c, "GET", url, NULL, 0, &b), 200);
	assert_non_null(strstr(b.data, "main@sha1:abc"));
	snprintf(url, sizeof(url), "%s/metrics", base);
	assert_int_equal(request(c, "GET", url, NULL, 0, NULL), 200);
	snprintf(url, sizeof(url), "%s/metrics", base);
	assert_int_equal(request(c, "DELETE", url, NULL, 0, NULL), 405);
	http_server_stop(srv);
	http_client_free(c);
	buf_free(&b);
	free(big);
	metrics_reset();
}

static void test_server_method_table_gives_405_with_allow(void **s)
{
	const char *allow;

	(void)s;
	assert_true(server_method_allowed("/healthz", "GET", &allow));
	assert_true(server_method_allowed("/metrics", "HEAD", &allow));
	assert_false(server_method_allowed("/metrics", "POST", &allow));
	assert_string_equal(allow, "GET, HEAD");
	assert_false(server_method_allowed("/readyz", "GE", &allow)); /* whole words only */
	assert_false(server_method_allowed("/webhooks/dnsimple/x", "GET", &allow));
	assert_string_equal(allow, "POST");
	assert_true(server_method_allowed("/webhooks/dnsimple/x", "POST", &allow));
	assert_false(server_method_allowed("/retry/shop-www", "PUT", &allow));
	assert_string_equal(allow, "POST");
	assert_false(server_method_allowed("/retry", "GET", &allow));
	assert_false(server_method_allowed("/.well-known/acme-challenge/tok", "POST", &allow));
	assert_string_equal(allow, "GET, HEAD");
	/* not an endpoint: the handlers say 404 */
	assert_true(server_method_allowed("/nothing", "DELETE", &allow));
	assert_null(allow);
	assert_true(server_method_allowed("/healthzz", "POST", &allow));
}

static long post_auth(struct http_client *c, const char *url, const char *auth, struct buf *out)
{
	struct http_request rq;
	struct http_response rs;
	long status;

	memset(&rq, 0, sizeof(rq));
	memset(&rs, 0, sizeof(rs));
	rq.op = "test retry";
	rq.method = "POST";
	rq.url = url;
	rq.headers[0] = auth;
	rq.retry = HTTP_RETRY_NEVER;
	http_do(c, &rq, &rs);
	status = rs.status;
	if (out)
		buf_append(out, rs.body.data ? rs.body.data : "", rs.body.len);
	http_response_free(&rs);
	return status;
}

static void test_server_retry_endpoint_needs_the_admin_token(void **s)
{
	struct http_server_opts o = {"127.0.0.1:0", NULL, NULL};
	struct http_server *srv = NULL;
	struct http_client *c = NULL;
	struct http_client_opts co;
	struct retry_request r;
	struct buf b = BUF_INIT;
	char url[128], base[64];

	(void)s;
	memset(&co, 0, sizeof(co));
	co.max_retries = 0;
	assert_int_equal(http_client_new(&co, &c), 0);
	assert_int_equal(http_server_start(&o, &srv), 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", http_server_port(srv));
	snprintf(url, sizeof(url), "%s/retry/www", base);
	/* no token configured: the endpoint is off */
	assert_int_equal(post_auth(c, url, "Authorization: Bearer anything", NULL), 404);
	http_server_set_admin_token(srv, "adm-secret");
	assert_int_equal(post_auth(c, url, NULL, NULL), 401);
	assert_int_equal(post_auth(c, url, "Authorization: Bearer adm-secreT", NULL), 401);
	assert_int_equal(post_auth(c, url, "Authorization: Basic adm-secret", NULL), 401);
	assert_false(http_server_take_retries(srv, &r));
	assert_int_equal(post_auth(c, url, "Authorization: Bearer adm-secret", &b), 202);
	assert_non_null(strstr(b.data, "\"www\""));
	assert_int_equal(post_auth(c, url, "Authorization: Bearer adm-secret", NULL), 202); /* deduplicated */
	snprintf(url, sizeof(url), "%s/retry/BAD", base);
	assert_int_equal(post_auth(c, url, "Authorization: Bearer adm-secret", NULL), 400);
	assert_true(http_server_take_retries(srv, &r));
	assert_false(r.all);
	assert_int_equal(r.n_names, 1);
	assert_string_equal(r.names[0], "www");
	retry_request_free(&r);
	snprintf(url, sizeof(url), "%s/retry", base);
	assert_int_equal(post_auth(c, url, "Authorization: Bearer adm-secret", NULL), 202);
	assert_true(http_server_take_retries(srv, &r));
	assert_true(r.all);
	assert_int_equal(r.n_names, 0);
	retry_request_free(&r);
	/* the queue of names is bounded */
	for (int i = 0; i < SERVER_MAX_RETRY_NAMES; i++) {
		snprintf(url, sizeof(url), "%s/retry/n%d", base, i);
		assert_int_equal(post_auth(c, url, "Authorization: Bearer adm-secret", NULL), 202);
	}
	snprintf(url, sizeof(url), "%s/retry/one-more", base);
	assert_int_equal(post_auth(c, url, "Authorization: Bearer adm-secret", NULL), 503);
	assert_true(http_server_take_retries(srv, &r));
	assert_int_equal(r.n_names, SERVER_MAX_RETRY_NAMES);
	retry_request_free(&r);
	/* liveness: a beat without a bound never fails; /healthz says ok */
	http_server_beat(srv, 0);
	snprintf(url, sizeof(url), "%s/healthz", base);
	assert_int_equal(request(c, "GET", url, NULL, 0, NULL), 200);
	http_server_stop(srv);
	http_client_free(c);
	buf_free(&b);
}

static void test_server_refuses_a_bad_listen_address(void **s)
{
	struct http_server_opts o = {"localhost", NULL, NULL};
	struct http_server *srv = NULL;

	(void)s;
	assert_int_not_equal(http_server_start(&o, &srv), 0);
	o.listen = "example.com:80";
	assert_int_not_equal(http_server_start(&o, &srv), 0);
	assert_null(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_webhook_path_splits_provider_and_secret),
		cmocka_unit_test(test_webhook_path_rejects_everything_else),
		cmocka_unit_test(test_secret_compare_needs_the_exact_secret),
		cmocka_unit_test(test_retry_path_and_bearer_token),
		cmocka_unit_test(test_liveness_bound_follows_the_interval),
		cmocka_unit_test(test_metrics_render_certificate_gauges),
		cmocka_unit_test(test_metrics_counters_histogram_and_source),
		cmocka_unit_test(test_metrics_every_family_has_one_help_and_type),
		cmocka_unit_test(test_metrics_escape_labels_and_cap_series),
		cmocka_unit_test(test_renewal_jitter_is_deterministic_small_and_spread),
		cmocka_unit_test(test_revision_is_flux_style),
		cmocka_unit_test(test_server_queues_webhooks_and_answers_probes),
		cmocka_unit_test(test_server_retry_endpoint_needs_the_admin_token),
		cmocka_unit_test(test_server_refuses_a_bad_listen_address),
		cmocka_unit_test(test_server_method_table_gives_405_with_allow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
