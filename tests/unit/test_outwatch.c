/*
 * The watcher of certsync run's outputs (reconciler/outwatch.c): what a look
 * checks again and what it keeps, on real directories under inotify.
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
#include <unistd.h>

#include "../../reconciler/outputs.h"
#include "../../reconciler/outwatch.h"
#include "../../state/state.h"
#include "../../util/buf.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

#define N_RECS 3

/* What the last look asked the checker about. */
struct seen {
	size_t calls, checked, deep;
	char names[16][64];
};

static void check(void *arg, const char *root, struct state_cert *const *recs, size_t n, enum output_status *outs,
		  int deep)
{
	struct seen *s = arg;

	s->calls++;
	for (size_t i = 0; i < n; i++) {
		outs[i] = deep ? outputs_check_deep(root, recs[i]) : outputs_check(root, recs[i]);
		if (s->checked < 16)
			snprintf(s->names[s->checked], sizeof(s->names[0]), "%s%s", deep ? "+" : "", recs[i]->name);
		s->checked++;
		s->deep += deep != 0;
	}
}

struct fixture {
	char *root;
	struct state *st;
	struct state_cert **recs;
	size_t n;
	enum output_status outs[N_RECS + 2];
	struct seen seen;
	int64_t now;
};

static void publish(struct fixture *f, const char *name, const char *dir)
{
	struct buf cert = BUF_INIT, key = BUF_INIT, ca = BUF_INIT;
	struct output_files of;
	struct state_cert *rec = state_cert_put(f->st, name);

	buf_puts(&cert, "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n");
	buf_puts(&key, "-----BEGIN PRIVATE KEY-----\nMIIBkey\n-----END PRIVATE KEY-----\n");
	buf_puts(&ca, "ca\n");
	memset(&of, 0, sizeof(of));
	of.cert = &cert;
	of.key = &key;
	of.ca = &ca;
	state_str_set(&rec->output_dir, dir);
	assert_int_equal(outputs_publish(f->root, dir, &of, 0, rec), 0);
	buf_free(&cert);
	buf_free(&key);
	buf_free(&ca);
}

/* One look with the records in name order; returns how many were checked. */
static size_t look(struct outwatch *w, struct fixture *f)
{
	size_t n;

	free(f->recs);
	f->recs = state_cert_list(f->st, &f->n);
	assert_true(f->n <= N_RECS + 2);
	memset(&f->seen, 0, sizeof(f->seen));
	n = outwatch_observe(w, f->recs, f->n, f->outs, f->now, check, &f->seen);
	assert_int_equal(n, f->seen.checked);
	return n;
}

static enum output_status status_of(const struct fixture *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->recs[i]->name, name))
			return f->outs[i];
	fail_msg("no record %s", name);
	return OUTPUT_MISSING;
}

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->root = test_mkdtemp();
	f->st = state_new();
	f->now = util_now();
	publish(f, "a", "a");
	publish(f, "b", "team/b");
	publish(f, "c", "team/c");
}

static void fixture_free(struct fixture *f)
{
	free(f->recs);
	state_free(f->st);
	test_rmdir(f->root);
}

/* Overwrites one byte of root/rel in place, size and mtime kept. */
static void edit_in_place(const char *root, const char *rel)
{
	char *p = fsutil_join(root, rel);
	struct stat st;
	struct timespec ts[2];
	int fd;

	assert_int_equal(stat(p, &st), 0);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 30), 1);
	close(fd);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	free(p);
}

static void test_outwatch_checks_all_first_then_only_what_had_events(void **state)
{
	struct fixture f;
	struct outwatch *w;

	(void)state;
	fixture_init(&f);
	w = outwatch_new(f.root);
	assert_true(outwatch_active(w));
	assert_int_equal(look(w, &f), 3);
	assert_int_equal(look(w, &f), 0);
	assert_int_equal(status_of(&f, "b"), OUTPUT_OK);
	/* size and mtime kept: only the content tells, and only b is read */
	edit_in_place(f.root, "team/b/tls.crt");
	assert_int_equal(outputs_check(f.root, f.recs[1]), OUTPUT_OK); /* the stat check alone misses it */
	assert_int_equal(look(w, &f), 1);
	assert_string_equal(f.seen.names[0], "+b");
	assert_int_equal(status_of(&f, "b"), OUTPUT_ALTERED);
	/* the result is kept while nothing happens */
	assert_int_equal(look(w, &f), 0);
	assert_int_equal(status_of(&f, "b"), OUTPUT_ALTERED);
	/* a reinstall changes the record: looked at again (by signature), then quiet */
	publish(&f, "b", "team/b");
	assert_int_equal(look(w, &f), 1);
	assert_string_equal(f.seen.names[0], "b");
	assert_int_equal(status_of(&f, "b"), OUTPUT_OK);
	assert_int_equal(look(w, &f), 0);
	/* many reinstalls (old generations deleted, their watches dropped): each is one look, then quiet */
	for (int i = 0; i < 300; i++) {
		publish(&f, "c", "team/c");
		assert_int_equal(look(w, &f), 1);
		assert_int_equal(status_of(&f, "c"), OUTPUT_OK);
	}
	assert_int_equal(look(w, &f), 0);
	edit_in_place(f.root, "team/c/tls.crt");
	assert_int_equal(look(w, &f), 1);
	assert_int_equal(status_of(&f, "c"), OUTPUT_ALTERED);
	outwatch_free(w);
	fixture_free(&f);
}

static void test_outwatch_follows_moved_parents_and_removed_links(void **state)
{
	struct fixture f;
	struct outwatch *w;
	char *team, *moved, *link;

	(void)state;
	fixture_init(&f);
	team = fsutil_join(f.root, "team");
	moved = fsutil_join(f.root, "moved");
	link = fsutil_join(f.root, "a");
	w = outwatch_new(f.root);
	assert_int_equal(look(w, &f), 3);
	assert_int_equal(rename(team, moved), 0);
	assert_int_equal(look(w, &f), 2);
	assert_int_equal(status_of(&f, "b"), OUTPUT_MISSING);
	assert_int_equal(status_of(&f, "c"), OUTPUT_MISSING);
	assert_int_equal(status_of(&f, "a"), OUTPUT_OK);
	/* missing: its directories cannot be watched, so it is checked at every look */
	assert_int_equal(look(w, &f), 2);
	/* back where it was: watched anew, and an edit in the new tree is seen */
	assert_int_equal(rename(moved, team), 0);
	assert_int_equal(look(w, &f), 2);
	assert_int_equal(status_of(&f, "c"), OUTPUT_OK);
	assert_int_equal(look(w, &f), 0);
	edit_in_place(f.root, "team/c/tls.key");
	assert_int_equal(look(w, &f), 1);
	assert_int_equal(status_of(&f, "c"), OUTPUT_ALTERED);
	/* the published link removed: an event in the parent */
	assert_int_equal(unlink(link), 0);
	assert_int_equal(look(w, &f), 1);
	assert_int_equal(status_of(&f, "a"), OUTPUT_MISSING);
	outwatch_free(w);
	free(team);
	free(moved);
	free(link);
	fixture_free(&f);
}

static void test_outwatch_matches_records_by_name_as_they_come_and_go(void **state)
{
	struct fixture f;
	struct outwatch *w;

	(void)state;
	fixture_init(&f);
	w = outwatch_new(f.root);
	assert_int_equal(look(w, &f), 3);
	/* a new record before the others, one with nothing installed yet, one forgotten */
	publish(&f, "0new", "new");
	state_cert_put(f.st, "b-pending");
	assert_int_equal(state_cert_remove(f.st, "c"), 0);
	assert_int_equal(look(w, &f), 1);
	assert_string_equal(f.seen.names[0], "0new");
	assert_int_equal(status_of(&f, "b-pending"), OUTPUT_OK);
	assert_int_equal(look(w, &f), 0);
	/* the periodic full check looks at everything installed, whatever the events */
	f.now += OUTWATCH_FULL_EVERY;
	assert_int_equal(look(w, &f), 3);
	assert_int_equal(look(w, &f), 0);
	outwatch_free(w);
	fixture_free(&f);
}

static void test_outwatch_off_or_over_its_limit_checks_everything(void **state)
{
	struct fixture f;
	struct outwatch *w;

	(void)state;
	fixture_init(&f);
	setenv("CERTSYNC_OUTWATCH", "off", 1);
	w = outwatch_new(f.root);
	unsetenv("CERTSYNC_OUTWATCH");
	assert_false(outwatch_active(w));
	assert_int_equal(look(w, &f), 3);
	assert_int_equal(look(w, &f), 3);
	outwatch_free(w);
	/* root and team fit; the generation directories do not */
	setenv("CERTSYNC_OUTWATCH_MAX", "2", 1);
	w = outwatch_new(f.root);
	unsetenv("CERTSYNC_OUTWATCH_MAX");
	assert_true(outwatch_active(w));
	assert_int_equal(look(w, &f), 3);
	assert_false(outwatch_active(w));
	assert_int_equal(look(w, &f), 3);
	edit_in_place(f.root, "a/tls.crt");
	assert_int_equal(look(w, &f), 3);
	outwatch_free(w);
	fixture_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outwatch_checks_all_first_then_only_what_had_events),
		cmocka_unit_test(test_outwatch_follows_moved_parents_and_removed_links),
		cmocka_unit_test(test_outwatch_matches_records_by_name_as_they_come_and_go),
		cmocka_unit_test(test_outwatch_off_or_over_its_limit_checks_everything),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
