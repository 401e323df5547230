/* DigiCert request tokens: the three vectors of ../shared/api/digicert.md §3.4, base36, timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../reconciler/providers/digicert.h"

#define KEY "EXAMPLE-AUTHKEY-0123456789abcdef"
#define TS "20240115093000"

static void token(const char *csr, char out[DIGICERT_TOKEN_LEN + 1])
{
	digicert_request_token(KEY, strlen(KEY), TS, csr, strlen(csr), out);
}

static void test_digicert_token_vector_1_needs_padding(void **state)
{
	char t[DIGICERT_TOKEN_LEN + 1];

	(void)state;
	token("MIIBexampleCSR2", t);
	assert_string_equal(t, "2024011509300000gws7ia1e31c5nl07bmxi4f4fk6en28a909rx8x8f4txz3vxl");
	assert_int_equal(strlen(t), 64);
}

static void test_digicert_token_vector_2(void **state)
{
	char t[DIGICERT_TOKEN_LEN + 1];

	(void)state;
	token("MIIBexampleCSRbase64bodyNoHeaders", t);
	assert_string_equal(t, "202401150930005m2l3538g1vt4g40i7em7in9adjpg760lzeul3yl3tjz4oyk4j");
}

static void test_digicert_token_vector_3_pem_shaped(void **state)
{
	char t[DIGICERT_TOKEN_LEN + 1];

	(void)state;
	token("-----BEGIN CERTIFICATE REQUEST-----\nMIIBexample\n-----END CERTIFICATE REQUEST-----\n", t);
	assert_string_equal(t, "202401150930002eu14qqrq8kwji8mdss4ib8hnwq7jrw1q74qc987l4yz3xz897");
}

static void test_digicert_base36_edges(void **state)
{
	unsigned char zero[32] = {0}, max[32];
	char out[DIGICERT_B36_LEN + 1];

	(void)state;
	digicert_base36(zero, out);
	assert_string_equal(out, "00000000000000000000000000000000000000000000000000");
	memset(max, 0xff, sizeof(max));
	digicert_base36(max, out); /* 2^256 - 1 still fits in 50 digits */
	assert_int_equal(strlen(out), 50);
	assert_int_equal(out[0], '6');
	zero[31] = 35;
	digicert_base36(zero, out);
	assert_string_equal(out + 49, "z");
}

static void test_digicert_timestamp_is_utc(void **state)
{
	char ts[DIGICERT_TS_LEN + 1];

	(void)state;
	digicert_timestamp(1705311000, ts); /* 2024-01-15T09:30:00Z */
	assert_string_equal(ts, TS);
	assert_int_equal(digicert_token_time("202401150930005m2l3538g1vt4g40i7em7in9adjpg760lzeul3yl3tjz4oyk4j"),
			 1705311000);
	assert_int_equal(digicert_token_time("short"), 0);
	assert_int_equal(digicert_token_time("2024x1150930005m2l3538g1vt4g40i7em7in9adjpg760lzeul3yl3tjz4oyk4j"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digicert_token_vector_1_needs_padding),
		cmocka_unit_test(test_digicert_token_vector_2),
		cmocka_unit_test(test_digicert_token_vector_3_pem_shaped),
		cmocka_unit_test(test_digicert_base36_edges),
		cmocka_unit_test(test_digicert_timestamp_is_utc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
