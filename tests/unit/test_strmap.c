/*
 * The string-keyed table: random adds and removes against a plain array
 * (tombstones keep every chain reachable, rebuilds keep every key and value),
 * keys looked up by a prefix length, borrowed and owned keys, a zeroed table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/strmap.h"

#define KEYS 3000

static void test_random_adds_and_removes_match_a_plain_array(void **state)
{
	static char keys[KEYS][16];
	static int in[KEYS];
	struct strmap m;
	size_t live = 0;

	(void)state;
	srand(11);
	strmap_init(&m, 8, 1);
	for (int i = 0; i < KEYS; i++)
		snprintf(keys[i], sizeof(keys[i]), "k/%d", i);
	for (int round = 0; round < 60000; round++) {
		int k = rand() % KEYS;
		struct strmap_slot *s = strmap_get(&m, keys[k], strlen(keys[k]));

		assert_int_equal(s != NULL, in[k]);
		if (s)
			assert_int_equal(s->num, (size_t)k * 3);
		if (!in[k] && rand() % 3) {
			s = strmap_put(&m, keys[k], strlen(keys[k]));
			assert_int_equal(s->num, 0);
			assert_ptr_not_equal(s->key, keys[k]); /* owned: a copy */
			s->num = (size_t)k * 3;
			in[k] = 1;
			live++;
		} else if (in[k] && rand() % 2) {
			strmap_del(&m, s);
			in[k] = 0;
			live--;
		}
		assert_int_equal(m.n, live);
		assert_true(m.used * 2 <= m.cap); /* tombstones never fill the table */
	}
	for (int k = 0; k < KEYS; k++)
		assert_int_equal(strmap_get(&m, keys[k], strlen(keys[k])) != NULL, in[k]);
	strmap_free(&m);
	assert_null(m.v);
}

static void test_keys_are_found_by_a_prefix_of_a_longer_string(void **state)
{
	struct strmap m;
	const char *path = "a/b/c";

	(void)state;
	memset(&m, 0, sizeof(m)); /* a zeroed table is an empty one */
	assert_null(strmap_get(&m, "a", 1));
	m.owns_keys = 1;
	strmap_put(&m, path, 3)->flag = 1; /* "a/b" */
	assert_non_null(strmap_get(&m, "a/b", 3));
	assert_int_equal(strmap_get(&m, path, 3)->flag, 1);
	assert_null(strmap_get(&m, path, 1));
	assert_null(strmap_get(&m, path, 5));
	assert_null(strmap_get(&m, "a/bc", 4));
	assert_int_equal(m.n, 1);
	/* the same key again: the same slot */
	assert_ptr_equal(strmap_put(&m, "a/b", 3), strmap_get(&m, path, 3));
	assert_int_equal(m.n, 1);
	strmap_free(&m);
}

static void test_borrowed_keys_are_not_copied(void **state)
{
	struct strmap m;
	const char *name = "web";
	struct strmap_slot *s;

	(void)state;
	strmap_init(&m, 100, 0);
	s = strmap_put(&m, name, strlen(name));
	assert_ptr_equal(s->key, name);
	s->ptr = &m;
	assert_ptr_equal(strmap_get(&m, "web", 3)->ptr, &m);
	strmap_del(&m, s);
	assert_null(strmap_get(&m, "web", 3));
	assert_int_equal(m.n, 0);
	strmap_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_adds_and_removes_match_a_plain_array),
		cmocka_unit_test(test_keys_are_found_by_a_prefix_of_a_longer_string),
		cmocka_unit_test(test_borrowed_keys_are_not_copied),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
