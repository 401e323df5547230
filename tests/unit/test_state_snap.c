/*
 * The file backend's decoded-state snapshot (state.json.snap): written on
 * save and after a JSON decode, read back field for field, its records as
 * mutable as decoded ones, and never trusted when damaged, foreign, stale,
 * or when another writer changed state.json (another certsync, a restore, an
 * edit in place within the same clock tick).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../state/state.h"
#include "../../state/state_int.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

#define T0 INT64_C(1795411863) /* 2026-11-23T05:31:03Z */

/* The layout (state/state_snap.c): where the checksum sits, what it covers, where the records start. */
#define SNAP_SUM_AT 16
#define SNAP_HASHED_AT 24
#define SNAP_LENS_AT (SNAP_HASHED_AT + 8 + 88) /* records, strings, record count, event count, extra */
#define SNAP_HEAD_LEN (SNAP_LENS_AT + 5 * 8 + 8)

/* ---------- helpers ---------- */

/* A record with every field set, distinct per k. */
static void fill_cert(struct state_cert *c, int k)
{
	char tmp[64];
	struct state_token t = {"dns-txt-token", "www.pizza.company", "_dnsauth.www.pizza.company",
				"rec-1",	 "dnsimple",	      T0};

	state_str_set(&c->issuer, "digicert");
	state_str_set(&c->provider, "digicert");
	snprintf(tmp, sizeof(tmp), "spec-%d", k);
	state_str_set(&c->spec_hash, tmp);
	state_str_set(&c->target_hash, k % 2 ? "target-hash" : NULL);
	state_str_set(&c->output_dir, "shop/www");
	c->phase = (enum cert_phase)(k % PHASE__MAX);
	state_str_set(&c->change, "renew");
	state_str_set(&c->step, k % 3 ? "order" : "");
	c->attempts = k % 5;
	c->next_try = T0 + k;
	state_cert_set_id(c, "order_id", "12345");
	state_cert_set_id(c, "alternative_order_id", "a1b2");
	snprintf(tmp, sizeof(tmp), "%x", 0xabc000 + k);
	state_str_set(&c->serial, tmp);
	c->not_before = T0 - 86400;
	c->not_after = T0 + 90 * 86400 + k;
	state_str_set(&c->fingerprint, "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100");
	state_str_set(&c->out_hash, "0011");
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		c->out_sig[i].size = 1000 + i;
		c->out_sig[i].mtime_ns = INT64_C(1795410663123456789) + i + k;
		c->out_sig[i].ino = 77 + i;
	}
	state_str_set(&c->out_generation, ".gen-0001");
	if (k % 4 == 0) {
		state_cert_add_token(c, &t);
		t.method = "http-token";
		t.ref = NULL;
		t.issuer = NULL;
		state_cert_add_token(c, &t);
	}
	state_cert_set_error(c, T0 + 5, "order refused: \"quota\"\nline two \xc3\xa9");
	state_str_set(&c->failure_class, STATE_FAIL_REJECTED);
	c->last_success = T0 - 3600;
	for (int i = 0; i < k % 13; i++)
		state_cert_event(c, T0 + i, "event %d of %d", i, k);
}

static struct state *make_state(int n)
{
	struct state *st = state_new();
	char name[32];

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "cert-%05d", (i * 7919) % n);
		fill_cert(state_cert_put(st, name), i);
	}
	state_set_source(st, "https://git.example.test/certs.git", "main", "0123456789abcdef0123456789abcdef01234567");
	state_account_set(st, "le", "kid", "https://acme.example.test/acct/1");
	state_account_set(st, "le", "contact", "mailto:ops@example.test");
	state_account_set(st, "dc", "org", "42");
	state_webhook_seen(st, "hook-1");
	state_webhook_seen(st, "hook-2");
	return st;
}

/* The key of the state file at path as it is now, for a state of this lineage and serial. */
static struct state_snap_key key_of(const char *path, const struct state *st)
{
	struct state_snap_key key;
	struct stat sb;

	memset(&key, 0, sizeof(key));
	assert_int_equal(stat(path, &sb), 0);
	key.dev = (uint64_t)sb.st_dev;
	key.ino = (uint64_t)sb.st_ino;
	key.size = (uint64_t)sb.st_size;
	key.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	key.ctime_ns = (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
	memcpy(key.lineage, st->lineage, sizeof(key.lineage));
	key.serial = st->serial;
	return key;
}

/* Reads the snapshot beside path (keyed by the file as it is, for st): rc, and the state when 0. */
static int snap_read(const char *path, const struct state *st, struct state **out, struct state_snap_key *key_out)
{
	char *snap = xasprintf("%s.snap", path);
	struct state_snap_key key = key_of(path, st);
	int rc;

	*out = NULL;
	rc = state_snap_read(snap, &key, out);
	if (key_out)
		*key_out = key;
	free(snap);
	return rc;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(fsutil_write_all(fd, data, len), 0);
	close(fd);
}

/* Rewrites the checksum of a snapshot image after a test changed it: only the bounds checks remain. */
static void fix_sum(struct buf *img)
{
	uint32_t sum = state_snap_crc(img->data + SNAP_HASHED_AT, img->len - SNAP_HASHED_AT);

	memcpy(img->data + SNAP_SUM_AT, &sum, 4);
}

static void put_u32(struct buf *img, size_t at, uint32_t v)
{
	memcpy(img->data + at, &v, 4);
}

static void put_u64(struct buf *img, size_t at, uint64_t v)
{
	memcpy(img->data + at, &v, 8);
}

/* Overwrites state.json in place (same inode, same size): what an editor saving over the file does. */
static void edit_in_place(const char *path, const char *from, const char *to)
{
	struct buf b = BUF_INIT;
	char *at;
	int fd;

	assert_int_equal(strlen(from), strlen(to));
	assert_int_equal(fsutil_read_file(path, 0, &b), 0);
	assert_non_null(at = strstr(b.data, from));
	memcpy(at, to, strlen(to));
	assert_true((fd = open(path, O_WRONLY)) >= 0);
	assert_int_equal(pwrite(fd, b.data, b.len, 0), (ssize_t)b.len);
	close(fd);
	buf_free(&b);
}

/* ---------- tests ---------- */

static void test_snap_written_on_save_and_read_back(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *snap = xasprintf("%s.snap", path);
	struct state *st = make_state(5000), *back = NULL, *loaded;
	struct stat sb;

	(void)unused;
	test_state_save(path, st);
	assert_int_equal(stat(snap, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	/* 5,000 records: the arena is a huge-page mapping; read straight */
	assert_int_equal(snap_read(path, st, &back, NULL), 0);
	assert_int_equal(state_cert_count(back), 5000);
	assert_int_equal(back->serial, st->serial);
	assert_string_equal(back->lineage, st->lineage);
	test_assert_same_state(st, back);
	/* and through the backend */
	loaded = test_state_load(path);
	test_assert_same_state(st, loaded);
	state_free(loaded);
	state_free(back);
	state_free(st);
	free(snap);
	free(path);
	test_rmdir(dir);
}

/* The same changes, through every setter, on a snapshot-loaded and a JSON-decoded state. */
static void mutate(struct state *st)
{
	struct state_cert *c = state_cert_get(st, "cert-00004");
	struct state_token t = {"http-token", "a.example", "/x", NULL, NULL, T0};

	assert_non_null(c);
	state_str_set(&c->issuer, "other");
	state_str_set(&c->spec_hash, NULL);
	state_str_set(&c->step, c->step); /* a field set to itself */
	state_cert_set_id(c, "order_id", "999");
	state_cert_set_id(c, "alternative_order_id", NULL);
	state_cert_set_id(c, "new", "1");
	for (int i = 0; i < STATE_HISTORY_MAX + 2; i++)
		state_cert_event(c, T0 + 100 + i, "later %d", i);
	state_cert_set_error(c, T0 + 200, NULL);
	state_cert_add_token(c, &t);
	state_cert_remove_token(c, 0);
	assert_int_equal(state_cert_rename(st, "cert-00004", "renamed"), 0);
	assert_int_equal(state_cert_remove(st, "cert-00008"), 0);
	state_cert_free(state_cert_clone(state_cert_get(st, "cert-00001")));
	fill_cert(state_cert_get(st, "cert-00002"), 77);
	fill_cert(state_cert_put(st, "fresh"), 3);
	state_account_set(st, "le", "kid", NULL);
	state_webhook_seen(st, "hook-3");
}

static void test_snap_records_change_like_decoded_ones(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state *st = make_state(40), *from_snap = NULL, *from_json;
	struct buf doc = BUF_INIT;

	(void)unused;
	test_state_save(path, st);
	assert_int_equal(snap_read(path, st, &from_snap, NULL), 0);
	assert_int_equal(fsutil_read_file(path, 0, &doc), 0);
	assert_int_equal(state_from_json(doc.data, doc.len, "state.json", &from_json), 0);
	mutate(from_snap);
	mutate(from_json);
	test_assert_same_state(from_json, from_snap);
	/* and it saves and loads back like any state */
	test_state_save(path, from_snap);
	state_free(st);
	st = test_state_load(path);
	test_assert_same_state(from_snap, st);
	buf_free(&doc);
	state_free(from_json);
	state_free(from_snap);
	state_free(st);
	free(path);
	test_rmdir(dir);
}

struct damage {
	const char *what;
	void (*apply)(struct buf *img);
	const char *want; /* in the message */
};

static void dmg_empty(struct buf *img)
{
	img->len = 0;
}

static void dmg_short_head(struct buf *img)
{
	img->len = SNAP_HEAD_LEN - 1;
}

static void dmg_cut(struct buf *img)
{
	img->len -= 1;
}

static void dmg_flip(struct buf *img)
{
	img->data[img->len / 2] ^= 0x20;
}

static void dmg_magic(struct buf *img)
{
	img->data[0] = 'X';
}

static void dmg_version(struct buf *img)
{
	put_u32(img, 8, STATE_SNAP_VERSION + 1);
}

static void dmg_byte_order(struct buf *img)
{
	put_u32(img, 12, 0x04030201u);
}

static void dmg_string_out_of_bounds(struct buf *img)
{
	put_u32(img, SNAP_HEAD_LEN, 0xfffffff0u); /* the first reference: the source URL */
	fix_sum(img);
}

static void dmg_count_out_of_bounds(struct buf *img)
{
	put_u32(img, SNAP_HEAD_LEN + 3 * 4, 0x7fffffffu); /* the account count */
	fix_sum(img);
}

static void dmg_records_count(struct buf *img)
{
	put_u64(img, SNAP_LENS_AT + 16, UINT64_C(1) << 40);
	fix_sum(img);
}

static void dmg_too_few_records(struct buf *img)
{
	uint64_t n;

	memcpy(&n, img->data + SNAP_LENS_AT + 16, 8);
	put_u64(img, SNAP_LENS_AT + 16, n - 1);
	fix_sum(img);
}

static void dmg_strings_unterminated(struct buf *img)
{
	img->data[img->len - 1] = 'x';
	fix_sum(img);
}

static void dmg_lengths(struct buf *img)
{
	uint64_t recs;

	memcpy(&recs, img->data + SNAP_LENS_AT, 8);
	put_u64(img, SNAP_LENS_AT, recs + 8);
	fix_sum(img);
}

static const struct damage damages[] = {
	{"empty", dmg_empty, "shorter than its header"},
	{"cut in its header", dmg_short_head, "shorter than its header"},
	{"cut by one byte", dmg_cut, "do not add up"},
	{"a flipped bit", dmg_flip, "checksum mismatch"},
	{"another magic", dmg_magic, "not a certsync state snapshot"},
	{"another version", dmg_version, "another snapshot format"},
	{"another byte order", dmg_byte_order, "another snapshot format"},
	{"a string offset out of bounds (checksum fixed)", dmg_string_out_of_bounds, "out of bounds"},
	{"a count out of bounds (checksum fixed)", dmg_count_out_of_bounds, "out of bounds"},
	{"a huge record count (checksum fixed)", dmg_records_count, "do not add up"},
	{"one record fewer than there are (checksum fixed)", dmg_too_few_records, "bytes after the records"},
	{"a string table without its final NUL (checksum fixed)", dmg_strings_unterminated, "NUL"},
	{"lengths that disagree (checksum fixed)", dmg_lengths, "do not add up"},
};

static void test_snap_damaged_is_ignored_and_rebuilt(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *snap = xasprintf("%s.snap", path);
	struct state *st = make_state(30), *got;
	struct buf pristine = BUF_INIT, img = BUF_INIT;

	(void)unused;
	test_state_save(path, st);
	assert_int_equal(fsutil_read_file(snap, 0, &pristine), 0);
	for (size_t i = 0; i < sizeof(damages) / sizeof(damages[0]); i++) {
		buf_clear(&img);
		buf_append(&img, pristine.data, pristine.len);
		damages[i].apply(&img);
		write_bytes(snap, img.data, img.len);
		got = NULL;
		if (snap_read(path, st, &got, NULL) != CS_EINVALID)
			fail_msg("%s: the snapshot was not refused", damages[i].what);
		assert_null(got);
		if (!strstr(cs_errmsg(), damages[i].want))
			fail_msg("%s: message \"%s\" lacks \"%s\"", damages[i].what, cs_errmsg(), damages[i].want);
		/* the state still loads (from the JSON) and the snapshot is good again afterwards */
		got = test_state_load(path);
		test_assert_same_state(st, got);
		state_free(got);
		assert_int_equal(snap_read(path, st, &got, NULL), 0);
		test_assert_same_state(st, got);
		state_free(got);
	}
	buf_free(&img);
	buf_free(&pristine);
	state_free(st);
	free(snap);
	free(path);
	test_rmdir(dir);
}

static void test_snap_of_another_state_file_is_ignored(void **unused)
{
	char *dir = test_mkdtemp();
	char *a = fsutil_join(dir, "a.json"), *b = fsutil_join(dir, "b.json");
	char *snap_a = xasprintf("%s.snap", a), *snap_b = xasprintf("%s.snap", b);
	struct state *sa = make_state(10), *sb = make_state(12), *got = NULL;
	struct buf img = BUF_INIT;

	(void)unused;
	test_state_save(a, sa);
	test_state_save(b, sb);
	assert_int_equal(fsutil_read_file(snap_b, 0, &img), 0);
	write_bytes(snap_a, img.data, img.len);
	assert_int_equal(snap_read(a, sa, &got, NULL), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "made from another state file"));
	got = test_state_load(a);
	test_assert_same_state(sa, got);
	state_free(got);
	buf_free(&img);
	state_free(sa);
	state_free(sb);
	free(snap_a);
	free(snap_b);
	free(a);
	free(b);
	test_rmdir(dir);
}

/* Another certsync saving, a restore of the backup, and edits in place are all seen. */
static void test_snap_other_writers_are_noticed(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state_backend *be;
	struct state *st = make_state(20), *other, *got;
	struct state_snap_key key;
	struct timespec old[2];

	(void)unused;
	test_state_save(path, st); /* serial 1 */
	test_state_save(path, st); /* serial 2; the backup is serial 1 */

	/* another process saves a change */
	other = test_state_load(path);
	state_str_set(&state_cert_get(other, "cert-00003")->spec_hash, "changed-elsewhere");
	test_state_save(path, other);
	got = test_state_load(path);
	assert_string_equal(state_cert_get(got, "cert-00003")->spec_hash, "changed-elsewhere");
	assert_int_equal(got->serial, 3);
	state_free(got);

	/* a restore puts the backup (serial 2) back */
	assert_int_equal(unlink(path), 0);
	be = test_state_open(path);
	assert_int_equal(state_file_restore(be), 0);
	state_backend_free(be);
	got = test_state_load(path);
	assert_int_equal(got->serial, 2);
	st->serial = 2;
	test_assert_same_state(st, got);
	state_free(got);

	/* an edit in place right after a save (same size, same serial, likely the same clock tick) */
	test_state_save(path, other); /* serial 4 */
	edit_in_place(path, "\"not_after\": \"2027-02-21", "\"not_after\": \"2027-02-22");
	got = test_state_load(path);
	assert_int_equal(got->serial, other->serial);
	assert_int_equal(state_cert_get(got, "cert-00000")->not_after,
			 state_cert_get(other, "cert-00000")->not_after + 86400);
	state_free(got);

	/* an old state file: its snapshot is not racy, and an edit in place changes the mtime */
	test_state_save(path, other); /* serial 5 */
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 3600;
	old[0].tv_nsec = old[1].tv_nsec = 123456789;
	assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
	got = test_state_load(path); /* a new key: decoded from the JSON, snapshot rewritten */
	state_free(got);
	assert_int_equal(snap_read(path, other, &got, &key), 0);
	assert_int_equal(key.racy, 0);
	state_free(got);
	edit_in_place(path, "\"not_after\": \"2027-02-21", "\"not_after\": \"2027-02-20");
	got = test_state_load(path);
	assert_int_equal(state_cert_get(got, "cert-00000")->not_after,
			 state_cert_get(other, "cert-00000")->not_after - 86400);
	state_free(got);

	state_free(other);
	state_free(st);
	free(path);
	test_rmdir(dir);
}

/*
 * Where file times come from a coarse clock (kernels before multigrain
 * timestamps, FAT), an edit in place in the same tick as the save keeps the
 * identity. This machine's clock may be finer, so the test makes the
 * snapshot's key claim the edited file's identity: only the racy key's
 * content check can tell them apart.
 */
static void test_snap_racy_key_checks_the_content(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *snap = xasprintf("%s.snap", path);
	struct state *st = make_state(6), *got;
	struct state_snap_key key;
	struct buf img = BUF_INIT;
	uint32_t racy;
	uint64_t id[5];

	(void)unused;
	test_state_save(path, st); /* just written: a racy key */
	assert_int_equal(fsutil_read_file(snap, 0, &img), 0);
	memcpy(&racy, img.data + SNAP_HEAD_LEN - 8, 4);
	assert_int_equal(racy, 1);
	edit_in_place(path, "\"not_after\": \"2027-02-21", "\"not_after\": \"2027-02-23");
	key = key_of(path, st);
	id[0] = key.dev;
	id[1] = key.ino;
	id[2] = key.size;
	id[3] = (uint64_t)key.mtime_ns;
	id[4] = (uint64_t)key.ctime_ns;
	memcpy(img.data + SNAP_HASHED_AT + 8, id, sizeof(id));
	fix_sum(&img);
	write_bytes(snap, img.data, img.len);
	got = test_state_load(path);
	assert_int_equal(state_cert_get(got, "cert-00000")->not_after,
			 state_cert_get(st, "cert-00000")->not_after + 2 * 86400);
	state_free(got);
	buf_free(&img);
	state_free(st);
	free(snap);
	free(path);
	test_rmdir(dir);
}

static void test_snap_then_journal(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state_backend *be = test_state_open(path);
	struct state *st = make_state(8), *got;
	struct state_cert *rec;

	(void)unused;
	assert_int_equal(state_save(be, st), 0);
	rec = state_cert_clone(state_cert_get(st, "cert-00001"));
	state_str_set(&rec->step, "journaled");
	assert_int_equal(state_journal(be, st, rec->name, rec), 0);
	assert_int_equal(state_journal(be, st, "cert-00002", NULL), 0);
	state_backend_free(be);
	got = test_state_load(path); /* the snapshot of serial 1, then the journal's two entries */
	assert_int_equal(got->serial, 3);
	assert_string_equal(state_cert_get(got, "cert-00001")->step, "journaled");
	assert_null(state_cert_get(got, "cert-00002"));
	state_free(got);
	state_cert_free(rec);
	state_free(st);
	free(path);
	test_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snap_written_on_save_and_read_back),
		cmocka_unit_test(test_snap_records_change_like_decoded_ones),
		cmocka_unit_test(test_snap_damaged_is_ignored_and_rebuilt),
		cmocka_unit_test(test_snap_of_another_state_file_is_ignored),
		cmocka_unit_test(test_snap_other_writers_are_noticed),
		cmocka_unit_test(test_snap_racy_key_checks_the_content),
		cmocka_unit_test(test_snap_then_journal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
