/* Secret redaction: registered credentials and credential-shaped text never reach errors, state or logs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../state/state.h"
#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/redact.h"
#include "testutil.h"

static int teardown(void **state)
{
	(void)state;
	redact_clear();
	return 0;
}

static void expect_redacted(const char *in, const char *want)
{
	char *got = redact_dup(in);

	assert_string_equal(got, want);
	free(got);
}

static void test_redact_registered_secret_everywhere_it_appears(void **state)
{
	(void)state;
	redact_add("tok-0123456789");
	expect_redacted("a tok-0123456789 b tok-0123456789", "a [REDACTED] b [REDACTED]");
	expect_redacted("no secret here", "no secret here");
	redact_clear();
	expect_redacted("a tok-0123456789", "a tok-0123456789");
}

static void test_redact_parts_and_case_of_a_secret(void **state)
{
	(void)state;
	redact_add("SECRETTOKEN0123456789abcdef");
	/* a provider quoting the token cut short, case-folded, or its tail */
	expect_redacted("token SECRETTOKEN0123456789abcde rejected", "token [REDACTED] rejected");
	expect_redacted("token secrettoken0123456789ABCDEF rejected", "token [REDACTED] rejected");
	expect_redacted("key …0123456789abcdef", "key …[REDACTED]");
	/* the usual mask (4 characters each side) and prose stay */
	expect_redacted("token SECR…cdef, the secret token", "token SECR…cdef, the secret token");
	redact_clear();
}

static void test_redact_short_values_are_not_secrets(void **state)
{
	(void)state;
	redact_add("abc"); /* replacing every "abc" would mangle names and serials */
	redact_add(NULL);
	redact_add("");
	expect_redacted("abc.example.com", "abc.example.com");
}

static void test_redact_credential_shapes_without_registration(void **state)
{
	(void)state;
	expect_redacted("HTTP 400 invalid request from token Bearer abcdef123456",
			"HTTP 400 invalid request from token Bearer [REDACTED]");
	expect_redacted("sent Authorization: Bearer abcdef123456, then failed",
			"sent Authorization: [REDACTED], then failed");
	expect_redacted("{\"authorization\":\"Basic dXNlcjpwYXNz\"}", "{\"authorization\":\"[REDACTED]\"}");
	expect_redacted("X-DC-DEVKEY: ABCDEFGHIJKLMNOP", "X-DC-DEVKEY: [REDACTED]");
	/* Prose is left alone: "bearer of", "Authorization failed" (no header separator). */
	expect_redacted("the bearer of bad news", "the bearer of bad news");
	expect_redacted("Authorization failed for this account", "Authorization failed for this account");
	expect_redacted("issuer dns: token: environment variable DNSIMPLE_TOKEN is not set",
			"issuer dns: token: environment variable DNSIMPLE_TOKEN is not set");
}

static void test_redact_inplace_cuts_to_the_buffer(void **state)
{
	char small[24];

	(void)state;
	snprintf(small, sizeof(small), "x Bearer abcdefghijkl");
	redact_inplace(small, sizeof(small));
	assert_string_equal(small, "x Bearer [REDACTED]");
	snprintf(small, sizeof(small), "Bearer abcdefgh tail!!");
	redact_inplace(small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_null(strstr(small, "abcdefgh"));
}

static void test_redact_error_messages_state_and_logs(void **state)
{
	struct state_cert c;
	char *logged = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&logged, &len);

	(void)state;
	memset(&c, 0, sizeof(c));
	log_add_secret("s3cret-value-42");
	cs_error(CS_EINVALID, "provider said: s3cret-value-42 is wrong (Bearer zzzzzzzzzz)");
	assert_null(strstr(cs_errmsg(), "s3cret-value-42"));
	assert_null(strstr(cs_errmsg(), "zzzzzzzzzz"));
	state_cert_set_error(&c, 1, "HTTP 400 echo s3cret-value-42");
	assert_string_equal(c.last_error, "HTTP 400 echo [REDACTED]");
	state_cert_event(&c, 1, "failed: Authorization: Bearer s3cret-value-42");
	assert_null(strstr(c.history[0].what, "s3cret"));
	log_setup(LOGF_JSON, LV_INFO, mem);
	log_error("token %s and Bearer %s", "s3cret-value-42", "yyyyyyyyyy");
	fflush(mem);
	assert_null(strstr(logged, "s3cret-value-42"));
	assert_null(strstr(logged, "yyyyyyyyyy"));
	assert_non_null(strstr(logged, "[REDACTED]"));
	log_setup(LOGF_TEXT, LV_INFO, NULL);
	fclose(mem);
	free(logged);
	free(c.last_error);
	free(c.history[0].what);
	free(c.history);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_redact_registered_secret_everywhere_it_appears, teardown),
		cmocka_unit_test_teardown(test_redact_parts_and_case_of_a_secret, teardown),
		cmocka_unit_test_teardown(test_redact_short_values_are_not_secrets, teardown),
		cmocka_unit_test_teardown(test_redact_credential_shapes_without_registration, teardown),
		cmocka_unit_test_teardown(test_redact_inplace_cuts_to_the_buffer, teardown),
		cmocka_unit_test_teardown(test_redact_error_messages_state_and_logs, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
