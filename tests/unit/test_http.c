/* The HTTP client against a local fake server: headers, retries, caps, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../util/err.h"
#include "../../util/http.h"
#include "../../util/util.h"
#include "testutil.h"

static pid_t server_pid;
static int server_stdin = -1;
static int port;
static struct http_client *client;

static char *url(const char *path)
{
	return xasprintf("http://127.0.0.1:%d%s", port, path);
}

static int start_server(void **state)
{
	int in[2], out[2];
	char line[64] = "";
	FILE *f;
	char *script = xasprintf("%s/tests/unit/fake_http.py", test_srcdir());
	struct http_client_opts o = {"certsync-test/1", NULL, 2000, 2000, 3, 5, 0};

	(void)state;
	if (pipe(in) || pipe(out))
		return -1;
	server_pid = fork();
	if (server_pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl("/usr/bin/python3", "python3", script, (char *)NULL);
		_exit(127);
	}
	free(script);
	close(in[0]);
	close(out[1]);
	server_stdin = in[1];
	f = fdopen(out[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "PORT %d", &port) != 1)
		return -1;
	fclose(f);
	return http_client_new(&o, &client);
}

static int stop_server(void **state)
{
	(void)state;
	http_client_free(client);
	close(server_stdin);
	kill(server_pid, SIGTERM);
	waitpid(server_pid, NULL, 0);
	return 0;
}

static int get(const char *path, enum http_retry retry, struct http_response *res)
{
	char *u = url(path);
	struct http_request req = {"test op", "GET", u, {"Authorization: Bearer sekrit-token", NULL}, NULL, 0, retry};
	int rc = http_do(client, &req, res);

	free(u);
	return rc;
}

static void test_http_reads_body_and_headers_case_insensitively(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/json", HTTP_RETRY_SAFE, &res), 0);
	assert_int_equal(res.status, 200);
	assert_string_equal(res.body.data, "{\"ok\":true}");
	assert_true(res.rl.have);
	assert_int_equal(res.rl.limit, 2400);
	assert_int_equal(res.rl.remaining, 2399);
	assert_int_equal(res.rl.reset, 1900000000);
	assert_string_equal(res.request_id, "req-42");
	assert_string_equal(res.content_type, "application/json");
	/* Every header is kept, repeated ones in order, found by any case. */
	assert_string_equal(http_response_header(&res, "LINK", 0), "<https://a.test/1>;rel=\"alternate\"");
	assert_string_equal(http_response_header(&res, "link", 1), "<https://a.test/2>; rel=\"alternate\"");
	assert_null(http_response_header(&res, "link", 2));
	assert_string_equal(http_response_header(&res, "x-request-id", 0), "req-42");
	http_response_free(&res);
}

/* A failed answer's request id is kept for the log line; each attempt starts without one. */
static void test_http_request_id_of_failed_answers(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/status/400", HTTP_RETRY_SAFE, &res), 0);
	assert_int_equal(res.status, 400);
	assert_string_equal(res.request_id, "req-400");
	http_response_free(&res);
	assert_null(res.request_id);
	assert_int_equal(get("/flaky/rid/9", HTTP_RETRY_NEVER, &res), CS_ETRANSIENT);
	assert_int_equal(res.status, 503);
	assert_string_equal(res.request_id, "flaky-1");
	http_response_free(&res);
	/* retried: the id is the answering attempt's (the 200 has none), never a stale one */
	assert_int_equal(get("/flaky/rid2/1", HTTP_RETRY_SAFE, &res), 0);
	assert_int_equal(res.attempts, 2);
	assert_null(res.request_id);
	http_response_free(&res);
}

static void test_http_empty_2xx_body_is_fine(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/empty", HTTP_RETRY_SAFE, &res), 0);
	assert_int_equal(res.status, 200);
	assert_int_equal(res.body.len, 0);
	assert_non_null(res.body.data);
	http_response_free(&res);
}

static void test_http_4xx_is_returned_not_retried(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/status/404", HTTP_RETRY_SAFE, &res), 0);
	assert_int_equal(res.status, 404);
	assert_int_equal(res.attempts, 1);
	http_response_free(&res);
}

static void test_http_retries_5xx_for_safe_requests(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/flaky/a/2", HTTP_RETRY_SAFE, &res), 0);
	assert_int_equal(res.status, 200);
	assert_int_equal(res.attempts, 3);
	http_response_free(&res);
}

static void test_http_never_repeats_unsafe_requests_on_5xx(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/flaky/b/2", HTTP_RETRY_NEVER, &res), CS_ETRANSIENT);
	assert_int_equal(res.attempts, 1);
	assert_non_null(strstr(cs_errmsg(), "HTTP 503"));
	assert_true(res.retry_after > 0);
	http_response_free(&res);
}

static void test_http_honours_retry_after_on_429(void **state)
{
	struct http_response res;
	int64_t t0 = util_mono_ms();

	(void)state;
	assert_int_equal(get("/ratelimited/x", HTTP_RETRY_NEVER, &res), 0);
	assert_int_equal(res.status, 200);
	assert_int_equal(res.attempts, 2);
	assert_true(util_mono_ms() - t0 >= 900);
	http_response_free(&res);
}

static int hook_calls, hook_rc;

static int count_hook(void *arg)
{
	(void)arg;
	hook_calls++;
	return hook_rc;
}

/* A paid request sent again after a 429's wait tells its hook first (the in-flight deadline moves). */
static void test_http_send_hook_runs_before_a_later_send_only(void **state)
{
	struct http_response res;

	(void)state;
	hook_calls = hook_rc = 0;
	http_set_send_hook(count_hook, NULL);
	assert_int_equal(get("/json", HTTP_RETRY_NEVER, &res), 0);
	assert_int_equal(hook_calls, 0); /* the first send is journaled by the caller */
	http_response_free(&res);
	assert_int_equal(get("/ratelimited/hook1", HTTP_RETRY_NEVER, &res), 0);
	assert_int_equal(res.attempts, 2);
	assert_int_equal(hook_calls, 1);
	http_response_free(&res);
	/* the hook cannot journal: the request is not sent again */
	hook_rc = cs_error(CS_ERROR, "journal failed");
	assert_int_equal(get("/ratelimited/hook2", HTTP_RETRY_NEVER, &res), CS_ERROR);
	assert_int_equal(res.attempts, 1);
	assert_int_equal(hook_calls, 2);
	http_response_free(&res);
	http_set_send_hook(NULL, NULL);
}

static int gate_allow, gate_calls; /* the gate says yes to its first gate_allow calls */

static int lease_gate(void *arg)
{
	(void)arg;
	return gate_calls++ < gate_allow;
}

/* GET path with the lease gate allowing its first `allow` calls; the gate is removed before returning. */
static int gated_get(const char *path, int allow, struct http_response *res)
{
	int rc;

	gate_allow = allow;
	gate_calls = 0;
	http_set_gate(lease_gate, NULL);
	rc = get(path, HTTP_RETRY_SAFE, res);
	http_set_gate(NULL, NULL);
	return rc;
}

static int server_count(const char *path)
{
	struct http_response res;
	char *p = xasprintf("/count%s", path);
	int n = -1;

	if (get(p, HTTP_RETRY_SAFE, &res) == 0 && res.body.data)
		sscanf(strstr(res.body.data, ":") + 1, "%d", &n);
	http_response_free(&res);
	free(p);
	return n;
}

/*
 * The lease gate is asked before every attempt and again by curl with the
 * connection made, right before the request goes out: a refusal at either
 * point sends nothing (CS_EFENCED), also when the lease lapses between retries.
 */
static void test_http_gate_refuses_before_every_send(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(gated_get("/json/fenced", 0, &res), CS_EFENCED);
	assert_int_equal(res.attempts, 0);
	assert_int_equal(gate_calls, 1);
	assert_non_null(strstr(cs_errmsg(), "lease"));
	http_response_free(&res);
	assert_int_equal(server_count("/json/fenced"), 0);
	/* the lease lapses while the connection is made: refused on the connection */
	assert_int_equal(gated_get("/json/onconn", 1, &res), CS_EFENCED);
	assert_int_equal(res.attempts, 0);
	assert_int_equal(gate_calls, 2);
	http_response_free(&res);
	assert_int_equal(server_count("/json/onconn"), 0);
	/* one attempt gets a 503; the lease lapses before the retry, which never reaches the server */
	assert_int_equal(gated_get("/flaky/gate/5", 2, &res), CS_EFENCED);
	assert_int_equal(res.attempts, 1);
	http_response_free(&res);
	assert_int_equal(server_count("/flaky/gate/5"), 1);
	/* without a gate, and with one that allows, requests go out as before */
	assert_int_equal(gated_get("/json/open", 100, &res), 0);
	assert_int_equal(res.status, 200);
	http_response_free(&res);
}

static void test_http_long_retry_after_date_is_returned_not_slept(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/retry-date", HTTP_RETRY_SAFE, &res), CS_ETRANSIENT);
	assert_int_equal(res.attempts, 1);
	assert_int_equal(res.retry_after, 4083955200); /* 2099-06-01T00:00:00Z */
	http_response_free(&res);
}

static void test_http_html_error_page_is_named(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/html502", HTTP_RETRY_NEVER, &res), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "HTTP 502 (HTML error page)"));
	assert_non_null(strstr(cs_errmsg(), "test op: GET /html502"));
	assert_true(http_is_html(&res));
	http_response_free(&res);
}

static void test_http_timeout_is_transient_and_secret_free(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/slow", HTTP_RETRY_NEVER, &res), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "/slow"));
	assert_null(strstr(cs_errmsg(), "sekrit"));
	http_response_free(&res);
}

static void test_http_body_cap(void **state)
{
	struct http_response res;

	(void)state;
	assert_int_equal(get("/big", HTTP_RETRY_SAFE, &res), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "larger than"));
	http_response_free(&res);
}

static void test_http_post_sends_body_and_headers(void **state)
{
	char *u = url("/echo");
	const char *body = "{\"name\":\"www\"}";
	struct http_request req = {"echo",
				   "POST",
				   u,
				   {"Authorization: Bearer t0ken", "Content-Type: application/json", NULL},
				   body,
				   strlen(body),
				   HTTP_RETRY_NEVER};
	struct http_response res;

	(void)state;
	assert_int_equal(http_do(client, &req, &res), 0);
	assert_non_null(strstr(res.body.data, "\"method\": \"POST\""));
	assert_non_null(strstr(res.body.data, "www"));
	assert_non_null(strstr(res.body.data, "Bearer t0ken"));
	assert_non_null(strstr(res.body.data, "certsync-test/1"));
	http_response_free(&res);
	free(u);
}

static void test_http_connection_refused_is_transient(void **state)
{
	struct http_request req = {"refused", "GET", "http://127.0.0.1:1/x", {NULL}, NULL, 0, HTTP_RETRY_NEVER};
	struct http_response res;
	struct http_client *c = NULL;
	struct http_client_opts o = {NULL, NULL, 500, 500, -1, 1, 0};

	(void)state;
	assert_int_equal(http_client_new(&o, &c), 0);
	assert_int_equal(http_do(c, &req, &res), CS_ETRANSIENT);
	assert_int_equal(res.attempts, 1);
	http_response_free(&res);
	http_client_free(c);
}

static void test_http_parse_retry_after(void **state)
{
	(void)state;
	assert_int_equal(http_parse_retry_after("120", 1000), 1120);
	assert_int_equal(http_parse_retry_after(" 5 ", 1000), 1005);
	assert_int_equal(http_parse_retry_after("Mon, 01 Jun 2026 00:00:00 GMT", 0), 1780272000);
	assert_int_equal(http_parse_retry_after("soon", 0), 0);
	assert_int_equal(http_parse_retry_after("-3", 0), 0);
	assert_int_equal(http_parse_retry_after("", 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_reads_body_and_headers_case_insensitively),
		cmocka_unit_test(test_http_request_id_of_failed_answers),
		cmocka_unit_test(test_http_empty_2xx_body_is_fine),
		cmocka_unit_test(test_http_4xx_is_returned_not_retried),
		cmocka_unit_test(test_http_retries_5xx_for_safe_requests),
		cmocka_unit_test(test_http_never_repeats_unsafe_requests_on_5xx),
		cmocka_unit_test(test_http_honours_retry_after_on_429),
		cmocka_unit_test(test_http_send_hook_runs_before_a_later_send_only),
		cmocka_unit_test(test_http_gate_refuses_before_every_send),
		cmocka_unit_test(test_http_long_retry_after_date_is_returned_not_slept),
		cmocka_unit_test(test_http_html_error_page_is_named),
		cmocka_unit_test(test_http_timeout_is_transient_and_secret_free),
		cmocka_unit_test(test_http_body_cap),
		cmocka_unit_test(test_http_post_sends_body_and_headers),
		cmocka_unit_test(test_http_connection_refused_is_transient),
		cmocka_unit_test(test_http_parse_retry_after),
	};

	return cmocka_run_group_tests(tests, start_server, stop_server);
}
