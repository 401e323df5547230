/* The key store's file backend: round trips, modes, damage, pruning, names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../state/keystore.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

static void item(struct keystore_item *it, const char *key, const char *cert, const char *ca)
{
	keystore_item_init(it);
	buf_puts(&it->key, key);
	buf_puts(&it->cert, cert);
	buf_puts(&it->ca, ca);
}

static int mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (int)(st.st_mode & 07777);
}

static void test_keystore_round_trips_key_chain_and_ca_in_0600_files_under_0700_dirs(void **state)
{
	char *dir = test_mkdtemp(), *keys = fsutil_join(dir, "keys"), *p;
	struct keystore *ks = keystore_open_dir(keys);
	struct keystore_item in, out;

	(void)state;
	/* sections may hold anything, newlines and "ca 3" lines included */
	item(&in, "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", "leaf\nca 3\nchain\n", "");
	assert_int_equal(keystore_put(ks, "shop-www", "1a2b", &in), 0);
	assert_int_equal(keystore_get(ks, "shop-www", "1a2b", &out), 0);
	assert_string_equal(out.key.data, in.key.data);
	assert_string_equal(out.cert.data, in.cert.data);
	assert_int_equal(out.ca.len, 0);
	keystore_item_wipe(&out);
	assert_int_equal(mode_of(keys), 0700);
	p = fsutil_join(keys, "store");
	assert_int_equal(mode_of(p), 0700);
	free(p);
	p = fsutil_join(keys, "store/shop-www");
	assert_int_equal(mode_of(p), 0700);
	free(p);
	p = fsutil_join(keys, "store/shop-www/1a2b.pem");
	assert_int_equal(mode_of(p), 0600);
	free(p);
	/* the same serial again replaces the entry */
	keystore_item_wipe(&in);
	item(&in, "KEY2", "CERT2", "CA2");
	assert_int_equal(keystore_put(ks, "shop-www", "1a2b", &in), 0);
	assert_int_equal(keystore_get(ks, "shop-www", "1a2b", &out), 0);
	assert_string_equal(out.key.data, "KEY2");
	assert_string_equal(out.ca.data, "CA2");
	keystore_item_wipe(&out);
	keystore_item_wipe(&in);
	keystore_close(ks);
	free(keys);
	test_rmdir(dir);
}

static void test_keystore_tightens_an_existing_key_directory(void **state)
{
	char *dir = test_mkdtemp(), *keys = fsutil_join(dir, "keys");
	struct keystore *ks = keystore_open_dir(keys);
	struct keystore_item in;

	(void)state;
	assert_int_equal(mkdir(keys, 0755), 0);
	item(&in, "K", "C", "A");
	assert_int_equal(keystore_put(ks, "a", "01", &in), 0);
	assert_int_equal(mode_of(keys), 0700);
	keystore_item_wipe(&in);
	keystore_close(ks);
	free(keys);
	test_rmdir(dir);
}

static void test_keystore_missing_is_notfound_and_damage_is_invalid(void **state)
{
	char *dir = test_mkdtemp(), *keys = fsutil_join(dir, "keys"), *p;
	struct keystore *ks = keystore_open_dir(keys);
	struct keystore_item in, out;
	static const char *const damaged[] = {
		"",
		"certsync-keystore 2\nkey 1\nK\ncert 1\nC\nca 1\nA\n",
		"certsync-keystore 1\nkey 1\nK\ncert 1\nC\n",		   /* truncated */
		"certsync-keystore 1\nkey 5\nK\ncert 1\nC\nca 1\nA\n",	   /* length past the section */
		"certsync-keystore 1\nkey -1\nK\ncert 1\nC\nca 1\nA\n",	   /* negative */
		"certsync-keystore 1\nkey 1\nK\ncert 1\nC\nca 1\nA\nmore", /* trailing bytes */
		"certsync-keystore 1\nkey 99999999999999999999\nK\n",	   /* huge */
	};

	(void)state;
	assert_int_equal(keystore_get(ks, "a", "01", &out), CS_ENOTFOUND);
	item(&in, "K", "C", "A");
	assert_int_equal(keystore_put(ks, "a", "01", &in), 0);
	assert_int_equal(keystore_get(ks, "a", "02", &out), CS_ENOTFOUND);
	assert_int_equal(keystore_get(ks, "b", "01", &out), CS_ENOTFOUND);
	for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
		p = test_write(keys, "store/a/01.pem", damaged[i], 0600);
		assert_int_equal(keystore_get(ks, "a", "01", &out), CS_EINVALID);
		assert_non_null(strstr(cs_errmsg(), "damaged key store entry"));
		assert_non_null(strstr(cs_errmsg(), "store/a/01.pem"));
		free(p);
	}
	keystore_item_wipe(&in);
	keystore_close(ks);
	free(keys);
	test_rmdir(dir);
}

static void test_keystore_prune_keeps_one_serial_or_none(void **state)
{
	char *dir = test_mkdtemp(), *keys = fsutil_join(dir, "keys"), *p;
	struct keystore *ks = keystore_open_dir(keys);
	struct keystore_item in, out;

	(void)state;
	item(&in, "K", "C", "A");
	assert_int_equal(keystore_put(ks, "a", "01", &in), 0);
	assert_int_equal(keystore_put(ks, "a", "02", &in), 0);
	assert_int_equal(keystore_put(ks, "b", "01", &in), 0);
	p = test_write(keys, "store/a/02.pem.tmp.123.0", "left by a crash", 0600);
	free(p);
	assert_int_equal(keystore_prune(ks, "a", "02"), 0);
	assert_int_equal(keystore_get(ks, "a", "01", &out), CS_ENOTFOUND);
	assert_int_equal(keystore_get(ks, "a", "02", &out), 0);
	keystore_item_wipe(&out);
	p = fsutil_join(keys, "store/a/02.pem.tmp.123.0");
	assert_false(fsutil_exists(p));
	free(p);
	/* another certificate's keys are not touched */
	assert_int_equal(keystore_get(ks, "b", "01", &out), 0);
	keystore_item_wipe(&out);
	assert_int_equal(keystore_prune(ks, "a", NULL), 0);
	p = fsutil_join(keys, "store/a");
	assert_false(fsutil_exists(p));
	free(p);
	assert_int_equal(keystore_prune(ks, "a", NULL), 0); /* already gone */
	assert_int_equal(keystore_prune(ks, "never", "01"), 0);
	keystore_item_wipe(&in);
	keystore_close(ks);
	free(keys);
	test_rmdir(dir);
}

static void test_keystore_refuses_names_that_are_not_path_parts(void **state)
{
	char *dir = test_mkdtemp(), *keys = fsutil_join(dir, "keys");
	struct keystore *ks = keystore_open_dir(keys);
	struct keystore_item in, out;

	(void)state;
	item(&in, "K", "C", "A");
	assert_int_equal(keystore_put(ks, "../x", "01", &in), CS_EINVALID);
	assert_int_equal(keystore_put(ks, "..", "01", &in), CS_EINVALID);
	assert_int_equal(keystore_put(ks, "", "01", &in), CS_EINVALID);
	assert_int_equal(keystore_put(ks, "a", "../01", &in), CS_EINVALID);
	assert_int_equal(keystore_put(ks, "a", "0X", &in), CS_EINVALID);
	assert_int_equal(keystore_get(ks, "a/b", "01", &out), CS_EINVALID);
	assert_int_equal(keystore_prune(ks, "a", ""), CS_EINVALID);
	assert_false(fsutil_exists(keys)); /* nothing was written */
	keystore_item_wipe(&in);
	keystore_close(ks);
	keystore_close(NULL);
	free(keys);
	test_rmdir(dir);
}

static void test_keystore_put_fails_with_the_path_when_the_directory_cannot_be_made(void **state)
{
	char *dir = test_mkdtemp(), *file = test_write(dir, "file", "x", 0644), *keys = fsutil_join(file, "keys");
	struct keystore *ks = keystore_open_dir(keys);
	struct keystore_item in;

	(void)state;
	item(&in, "K", "C", "A");
	assert_int_equal(keystore_put(ks, "a", "01", &in), CS_ERROR);
	assert_non_null(strstr(cs_errmsg(), file));
	keystore_item_wipe(&in);
	keystore_close(ks);
	free(keys);
	free(file);
	test_rmdir(dir);
}

static void test_keystore_pending_slots_live_beside_the_entries(void **state)
{
	char *dir = test_mkdtemp(), *keys = fsutil_join(dir, "keys"), *p;
	struct keystore *ks = keystore_open_dir(keys);
	struct keystore_item in, out;
	struct buf data = BUF_INIT, got = BUF_INIT;
	size_t n = 9;

	(void)state;
	assert_int_equal(keystore_count(ks, &n), 0); /* no directory yet: empty */
	assert_int_equal(n, 0);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), CS_ENOTFOUND);
	buf_puts(&data, "-----BEGIN PRIVATE KEY-----\npending\n-----END PRIVATE KEY-----\n");
	assert_int_equal(keystore_put_pending(ks, "shop", "key", &data), 0);
	assert_int_equal(keystore_put_pending(ks, "shop", "csr", &data), 0);
	p = fsutil_join(keys, "store/shop/pending-key");
	assert_int_equal(mode_of(p), 0600);
	free(p);
	p = fsutil_join(keys, "store/shop");
	assert_int_equal(mode_of(p), 0700);
	free(p);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), 0);
	assert_string_equal(got.data, data.data);
	buf_wipe(&got);
	/* replaced atomically */
	buf_clear(&data);
	buf_puts(&data, "second");
	assert_int_equal(keystore_put_pending(ks, "shop", "key", &data), 0);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), 0);
	assert_string_equal(got.data, "second");
	buf_wipe(&got);
	/* an entry beside them; a stray temporary file is neither */
	item(&in, "K", "C", "A");
	assert_int_equal(keystore_put(ks, "shop", "01", &in), 0);
	assert_int_equal(keystore_put(ks, "shop", "02", &in), 0);
	p = test_write(keys, "store/shop/pending-key.tmp.1.0", "half", 0600); /* pid 1: alive, never swept */
	free(p);
	assert_int_equal(keystore_count(ks, &n), 0);
	assert_int_equal(n, 4);
	/* a dead writer's temporary file goes with the next pending write; a live one's stays */
	{
		pid_t dead = fork();
		char name[64];

		assert_true(dead >= 0);
		if (dead == 0)
			_exit(0);
		assert_int_equal(waitpid(dead, NULL, 0), dead);
		snprintf(name, sizeof(name), "store/shop/pending-csr.tmp.%ld.3", (long)dead);
		p = test_write(keys, name, "half", 0600);
		assert_int_equal(keystore_put_pending(ks, "shop", "csr", &data), 0);
		assert_false(fsutil_exists(p));
		free(p);
		p = fsutil_join(keys, "store/shop/pending-key.tmp.1.0");
		assert_true(fsutil_exists(p));
		free(p);
	}
	/* pruning to a serial keeps the pending slots (an order under way) */
	assert_int_equal(keystore_prune(ks, "shop", "02"), 0);
	assert_int_equal(keystore_get(ks, "shop", "01", &out), CS_ENOTFOUND);
	assert_int_equal(keystore_get_pending(ks, "shop", "csr", &got), 0);
	buf_wipe(&got);
	/* del one, del one again (absent: success), del all */
	assert_int_equal(keystore_del_pending(ks, "shop", "csr"), 0);
	assert_int_equal(keystore_del_pending(ks, "shop", "csr"), 0);
	assert_int_equal(keystore_get_pending(ks, "shop", "csr", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_put_pending(ks, "shop", "csr", &data), 0);
	assert_int_equal(keystore_del_pending(ks, "shop", NULL), 0);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_get_pending(ks, "shop", "csr", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_get(ks, "shop", "02", &out), 0); /* the entry stays */
	keystore_item_wipe(&out);
	assert_int_equal(keystore_del_pending(ks, "never", NULL), 0);
	/* pruning everything takes the pending slots too */
	assert_int_equal(keystore_put_pending(ks, "shop", "key", &data), 0);
	assert_int_equal(keystore_prune(ks, "shop", NULL), 0);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), CS_ENOTFOUND);
	p = fsutil_join(keys, "store/shop");
	assert_false(fsutil_exists(p));
	free(p);
	/* slot names are checked; the file backend has nothing to rekey */
	assert_int_equal(keystore_put_pending(ks, "shop", "../x", &data), CS_EINVALID);
	assert_int_equal(keystore_put_pending(ks, "shop", "Key", &data), CS_EINVALID);
	assert_int_equal(keystore_put_pending(ks, "shop", "", &data), CS_EINVALID);
	assert_int_equal(keystore_put_pending(ks, "../shop", "key", &data), CS_EINVALID);
	assert_int_equal(keystore_rekey(ks, &n), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "not encrypted"));
	buf_wipe(&data);
	keystore_item_wipe(&in);
	keystore_close(ks);
	free(keys);
	test_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keystore_round_trips_key_chain_and_ca_in_0600_files_under_0700_dirs),
		cmocka_unit_test(test_keystore_tightens_an_existing_key_directory),
		cmocka_unit_test(test_keystore_missing_is_notfound_and_damage_is_invalid),
		cmocka_unit_test(test_keystore_prune_keeps_one_serial_or_none),
		cmocka_unit_test(test_keystore_refuses_names_that_are_not_path_parts),
		cmocka_unit_test(test_keystore_put_fails_with_the_path_when_the_directory_cannot_be_made),
		cmocka_unit_test(test_keystore_pending_slots_live_beside_the_entries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
