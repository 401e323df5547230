/*
 * "The source is now at commit X" without rewriting the state
 * (state_note_source): the file backend's source journal line, its replay
 * over the JSON and over the snapshot, the serial rules, the strict decode,
 * the fold into a full save, and the full-save fallbacks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../state/state.h"
#include "../../state/state_int.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

#define URL "https://git.example/certs.git"
#define C1 "1111111111111111111111111111111111111111"
#define C2 "2222222222222222222222222222222222222222"
#define C3 "3333333333333333333333333333333333333333"
#define C256 "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"

/* ---------- helpers ---------- */

/* A directory with a saved state (two records, source at C1); the caller frees what it names. */
struct fixture {
	char *dir, *path, *jnl, *snap;
	struct state_backend *be;
	struct state *st;
};

static void fixture_open(struct fixture *f)
{
	f->dir = test_mkdtemp();
	f->path = fsutil_join(f->dir, "state.json");
	f->jnl = xasprintf("%s.journal", f->path);
	f->snap = xasprintf("%s.snap", f->path);
	f->be = test_state_open(f->path);
	assert_int_equal(state_load(f->be, &f->st), 0);
	state_cert_put(f->st, "a")->phase = PHASE_READY;
	state_cert_put(f->st, "b");
	state_set_source(f->st, URL, "main", C1);
	assert_int_equal(state_save(f->be, f->st), 0); /* serial 1 */
}

static void fixture_close(struct fixture *f)
{
	state_free(f->st);
	state_backend_free(f->be);
	free(f->path);
	free(f->jnl);
	free(f->snap);
	test_rmdir(f->dir);
}

static void append_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "a");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void write_text(const char *path, const char *text)
{
	assert_int_equal(fsutil_write_atomic(path, text, strlen(text), 0600), 0);
}

/* A file's identity and content, to tell it was not rewritten. */
struct ident {
	ino_t ino;
	off_t size;
	struct timespec mtime;
	char *text;
};

static void ident_take(const char *path, struct ident *id)
{
	struct stat sb;
	struct buf b = BUF_INIT;

	assert_int_equal(stat(path, &sb), 0);
	id->ino = sb.st_ino;
	id->size = sb.st_size;
	id->mtime = sb.st_mtim;
	assert_int_equal(fsutil_read_file(path, STATE_MAX_BYTES, &b), 0);
	id->text = buf_detach(&b);
}

static void assert_ident_same(const char *path, const struct ident *before)
{
	struct ident now;

	ident_take(path, &now);
	assert_int_equal(now.ino, before->ino);
	assert_int_equal(now.size, before->size);
	assert_int_equal(now.mtime.tv_sec, before->mtime.tv_sec);
	assert_int_equal(now.mtime.tv_nsec, before->mtime.tv_nsec);
	assert_string_equal(now.text, before->text);
	free(now.text);
}

static size_t file_lines(const char *path)
{
	struct buf b = BUF_INIT;
	size_t n = 0;

	assert_int_equal(fsutil_read_file(path, STATE_MAX_BYTES, &b), 0);
	for (size_t i = 0; i < b.len; i++)
		n += b.data[i] == '\n';
	buf_free(&b);
	return n;
}

static void assert_source(const struct state *st, const char *url, const char *ref, const char *commit)
{
	assert_string_equal(st->source_url, url);
	assert_string_equal(st->source_ref, ref);
	assert_string_equal(st->source_commit, commit);
}

/* A load of path has serial and the source (URL, main, commit). */
static void assert_loads_as(const char *path, uint64_t serial, const char *commit)
{
	struct state *back = test_state_load(path);

	assert_int_equal(back->serial, serial);
	assert_source(back, URL, "main", commit);
	state_free(back);
}

/* Loading refuses the journal with a message containing want. */
static void assert_load_refused(const char *path, const char *want)
{
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL;

	assert_int_equal(state_load(be, &st), CS_EINVALID);
	assert_null(st);
	if (!strstr(cs_errmsg(), want))
		fail_msg("message \"%s\" does not contain \"%s\"", cs_errmsg(), want);
	state_backend_free(be);
}

/* ---------- the line ---------- */

static void test_source_line_round_trips(void **unused)
{
	struct state_journal_entry e;
	struct buf line = BUF_INIT;

	(void)unused;
	state_journal_encode_source(42, URL, "release/v1 \"quoted\" \xc3\xa9", C256, &line);
	assert_int_equal(line.data[line.len - 1], '\n');
	assert_non_null(strstr(line.data, "{\"serial\":42,\"source\":{\"url\":"));
	assert_int_equal(state_journal_decode(line.data, line.len - 1, "j", 1, &e), 0);
	assert_int_equal(e.serial, 42);
	assert_null(e.name);
	assert_null(e.rec);
	assert_string_equal(e.source_url, URL);
	assert_string_equal(e.source_ref, "release/v1 \"quoted\" \xc3\xa9");
	assert_string_equal(e.source_commit, C256);
	state_journal_entry_clear(&e);
	buf_free(&line);

	/* a record line decodes as before, with no source */
	state_journal_encode(7, "www", NULL, &line);
	assert_int_equal(state_journal_decode(line.data, line.len - 1, "j", 1, &e), 0);
	assert_int_equal(e.serial, 7);
	assert_string_equal(e.name, "www");
	assert_null(e.rec);
	assert_null(e.source_commit);
	state_journal_entry_clear(&e);
	buf_free(&line);
}

static void test_source_check_bounds(void **unused)
{
	char *long_url = xmalloc(STATE_SOURCE_URL_MAX + 2);

	(void)unused;
	assert_int_equal(state_source_check(URL, "main", C1), 0);
	assert_int_equal(state_source_check("/srv/repo", "refs/heads/main", C256), 0);
	assert_int_equal(state_source_check(NULL, "main", C1), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "url: missing"));
	assert_int_equal(state_source_check(URL, "", C1), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "ref: missing"));
	assert_int_equal(state_source_check(URL, "main", "0123abcd"), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "commit: expected 40 or 64 lowercase hex digits"));
	assert_int_equal(state_source_check(URL, "main", "ABCDEF0123456789ABCDEF0123456789ABCDEF01"), CS_EINVALID);
	assert_int_equal(state_source_check(URL, "ma\nin", C1), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "ref: expected printable UTF-8 text"));
	assert_int_equal(state_source_check("https://git.example/\xff", "main", C1), CS_EINVALID);
	memset(long_url, 'u', STATE_SOURCE_URL_MAX + 1);
	long_url[STATE_SOURCE_URL_MAX + 1] = '\0';
	assert_int_equal(state_source_check(long_url, "main", C1), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "url: 4097 bytes; the limit is 4096"));
	long_url[STATE_SOURCE_URL_MAX] = '\0';
	assert_int_equal(state_source_check(long_url, "main", C1), 0);
	free(long_url);
}

/* ---------- the file backend ---------- */

/* The state file is left as it is; the journal says where the source is; every load sees it. */
static void test_note_source_appends_a_line_and_leaves_the_state_file(void **unused)
{
	struct fixture f;
	struct ident before;
	struct state *back;

	(void)unused;
	fixture_open(&f);
	ident_take(f.path, &before);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C2), 0);
	assert_int_equal(f.st->serial, 2);
	assert_source(f.st, URL, "main", C2);
	assert_ident_same(f.path, &before);
	assert_int_equal(file_lines(f.jnl), 1);

	back = test_state_load(f.path);
	assert_int_equal(back->serial, 2);
	assert_string_equal(back->lineage, f.st->lineage);
	assert_source(back, URL, "main", C2);
	assert_int_equal(state_cert_count(back), 2);
	assert_int_equal(state_cert_get(back, "a")->phase, PHASE_READY);
	state_free(back);

	/* a second one: serial + 1 again, the last one wins */
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C3), 0);
	assert_int_equal(f.st->serial, 3);
	assert_ident_same(f.path, &before);
	assert_loads_as(f.path, 3, C3);
	free(before.text);
	fixture_close(&f);
}

/* The snapshot is keyed on state.json: a journaled source is applied after a snapshot load too. */
static void test_source_line_is_replayed_over_the_snapshot(void **unused)
{
	struct fixture f;
	struct state *back;
	struct stat sb;

	(void)unused;
	fixture_open(&f);
	assert_int_equal(stat(f.snap, &sb), 0); /* the save wrote it */
	back = test_state_load(f.path);		/* a load from it (and a non-racy rewrite, if needed) */
	state_free(back);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C2), 0);
	assert_loads_as(f.path, 2, C2);
	/* without the snapshot (decoding the JSON) the same */
	assert_int_equal(unlink(f.snap), 0);
	assert_loads_as(f.path, 2, C2);
	fixture_close(&f);
}

/* A later full save takes the source in and empties the journal; the lineage stays, the serial goes on. */
static void test_a_full_save_folds_the_source_line(void **unused)
{
	struct fixture f;
	struct state *back;
	struct buf doc = BUF_INIT;

	(void)unused;
	fixture_open(&f);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C2), 0);
	assert_int_equal(state_journal(f.be, f.st, "c", state_cert_put(f.st, "c")), 0);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C3), 0);
	assert_int_equal(f.st->serial, 4);
	assert_int_equal(file_lines(f.jnl), 3);
	back = test_state_load(f.path);
	assert_int_equal(back->serial, 4);
	assert_source(back, URL, "main", C3);
	assert_non_null(state_cert_get(back, "c"));
	state_free(back);

	assert_int_equal(state_save(f.be, f.st), 0);
	assert_int_equal(f.st->serial, 5);
	assert_false(fsutil_exists(f.jnl));
	assert_int_equal(fsutil_read_file(f.path, STATE_MAX_BYTES, &doc), 0);
	assert_non_null(strstr(doc.data, "\"commit\": \"" C3 "\""));
	buf_free(&doc);
	back = test_state_load(f.path);
	assert_int_equal(back->serial, 5);
	assert_string_equal(back->lineage, f.st->lineage);
	assert_source(back, URL, "main", C3);
	state_free(back);

	/* a source line older than the saved file (a crash before the journal went) changes nothing */
	append_text(f.jnl, "{\"serial\":3,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C1 "\"}}\n");
	assert_loads_as(f.path, 5, C3);
	fixture_close(&f);
}

static void test_an_older_source_line_is_ignored(void **unused)
{
	struct fixture f;

	(void)unused;
	fixture_open(&f);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C2), 0); /* serial 2 */
	/* at or below the state's serial: already in it */
	append_text(f.jnl, "{\"serial\":2,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C3 "\"}}\n");
	append_text(f.jnl, "{\"serial\":1,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C3 "\"}}\n");
	assert_loads_as(f.path, 2, C2);
	fixture_close(&f);
}

static void test_a_torn_last_source_line_is_ignored(void **unused)
{
	struct fixture f;

	(void)unused;
	fixture_open(&f);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C2), 0);
	state_backend_free(f.be);
	/* a crash mid-append: the line has no end, it was never acknowledged */
	append_text(f.jnl, "{\"serial\":3,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"3333");
	assert_loads_as(f.path, 2, C2);
	/* the next writer cuts it before appending */
	f.be = test_state_open(f.path);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C3), 0);
	assert_int_equal(file_lines(f.jnl), 2);
	assert_loads_as(f.path, 3, C3);
	fixture_close(&f);
}

/* A damaged line is refused with the journal's name and the line number, one message. */
static void test_a_damaged_source_line_is_refused_with_its_line(void **unused)
{
	static const struct {
		const char *line, *want;
	} cases[] = {
		{"{\"serial\":3,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"xyz\"}}",
		 "state.json.journal:2: source.commit: expected 40 or 64 lowercase hex digits"},
		{"{\"serial\":3,\"source\":{\"url\":\"" URL "\",\"commit\":\"" C3 "\"}}",
		 "state.json.journal:2: source.ref: missing"},
		{"{\"serial\":3,\"source\":{\"url\":7,\"ref\":\"main\",\"commit\":\"" C3 "\"}}",
		 "state.json.journal:2: source.url: expected a string"},
		{"{\"serial\":3,\"source\":{\"url\":\"" URL "\",\"ref\":\"ma\\u0007in\",\"commit\":\"" C3 "\"}}",
		 "state.json.journal:2: source.ref: expected printable UTF-8 text"},
		{"{\"serial\":3,\"source\":\"" C3 "\"}", "state.json.journal:2: source: expected an object"},
		{"{\"serial\":3,\"source\":null}", "state.json.journal:2: source: expected an object"},
		{"{\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C3 "\"}}",
		 "state.json.journal:2: not a journal entry"},
		{"{\"serial\":0,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C3 "\"}}",
		 "state.json.journal:2: not a journal entry"},
		{"{\"serial\":3,\"name\":\"a\",\"record\":null,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\","
		 "\"commit\":\"" C3 "\"}}",
		 "state.json.journal:2: not a journal entry (expected serial > 0 and either name and record, or "
		 "source)"},
		{"{\"serial\":3,\"record\":null,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C3
		 "\"}}",
		 "state.json.journal:2: not a journal entry"},
		{"{\"serial\":3,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C3 "\",\"ref\":\"x\"}}",
		 "state.json.journal:2:"},
		{"{\"serial\":3,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C3 "\"}",
		 "state.json.journal:2:"},
	};
	struct fixture f;

	(void)unused;
	fixture_open(&f);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C2), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf("{\"serial\":2,\"source\":{\"url\":\"" URL "\",\"ref\":\"main\",\"commit\":\"" C2
				       "\"}}\n%s\n{\"serial\":4,\"name\":\"c\",\"record\":null}\n",
				       cases[i].line);

		write_text(f.jnl, text);
		assert_load_refused(f.path, cases[i].want);
		free(text);
	}
	fixture_close(&f);
}

/* Past STATE_FILE_JOURNAL_FOLD bytes the next note is a full save: the journal stays bounded. */
static void test_the_journal_is_folded_past_its_limit(void **unused)
{
	struct fixture f;
	struct ident before;
	struct state *back;
	struct stat sb;
	char commit[41];
	uint64_t serial;
	int n = 0;

	(void)unused;
	fixture_open(&f);
	ident_take(f.path, &before);
	for (;;) {
		snprintf(commit, sizeof(commit), "%040x", n + 1);
		assert_int_equal(state_note_source(f.be, f.st, URL, "main", commit), 0);
		n++;
		assert_int_equal(stat(f.jnl, &sb), 0);
		if ((uint64_t)sb.st_size >= STATE_FILE_JOURNAL_FOLD)
			break;
		assert_true(n < 100000);
	}
	assert_ident_same(f.path, &before); /* every one of them an append */
	assert_int_equal(file_lines(f.jnl), (size_t)n);
	serial = f.st->serial;
	assert_int_equal(serial, 1 + (uint64_t)n);

	/* the next one folds: a full save, the journal gone, nothing lost */
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C3), 0);
	assert_int_equal(f.st->serial, serial + 1);
	assert_false(fsutil_exists(f.jnl));
	assert_int_equal(stat(f.path, &sb), 0);
	assert_true(sb.st_ino != before.ino);
	back = test_state_load(f.path);
	assert_int_equal(back->serial, serial + 1);
	assert_string_equal(back->lineage, f.st->lineage);
	assert_source(back, URL, "main", C3);
	assert_int_equal(state_cert_count(back), 2);
	state_free(back);
	/* and appends again after it */
	free(before.text);
	ident_take(f.path, &before);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", C2), 0);
	assert_ident_same(f.path, &before);
	assert_int_equal(file_lines(f.jnl), 1);
	free(before.text);
	fixture_close(&f);
}

/* No state file yet: a journal alone would be replayed over a fresh lineage at every load. */
static void test_without_a_state_file_it_is_a_full_save(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *jnl = xasprintf("%s.journal", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_note_source(be, st, URL, "main", C1), 0);
	assert_int_equal(st->serial, 1);
	assert_true(fsutil_exists(path));
	assert_false(fsutil_exists(jnl));
	back = test_state_load(path);
	assert_string_equal(back->lineage, st->lineage);
	assert_source(back, URL, "main", C1);
	state_free(back);
	state_free(st);
	state_backend_free(be);
	free(jnl);
	free(path);
	test_rmdir(dir);
}

/* A source no line could carry (here a commit that is not a hex id) is recorded by a full save. */
static void test_a_source_out_of_bounds_is_a_full_save(void **unused)
{
	struct fixture f;
	struct ident before;
	struct state *back;

	(void)unused;
	fixture_open(&f);
	ident_take(f.path, &before);
	assert_int_equal(state_note_source(f.be, f.st, URL, "main", "not-a-commit"), 0);
	assert_int_equal(f.st->serial, 2);
	assert_false(fsutil_exists(f.jnl));
	back = test_state_load(f.path);
	assert_source(back, URL, "main", "not-a-commit");
	assert_int_equal(back->serial, 2);
	state_free(back);
	free(before.text);
	fixture_close(&f);
}

/* A journal that cannot be written: an error, st holds the source, and a save records it. */
static void test_a_failed_note_leaves_the_source_for_a_save(void **unused)
{
	struct fixture f;

	(void)unused;
	fixture_open(&f);
	assert_int_equal(mkdir(f.jnl, 0700), 0); /* the journal's name is taken by a directory */
	assert_int_not_equal(state_note_source(f.be, f.st, URL, "main", C2), 0);
	assert_non_null(strstr(cs_errmsg(), "state.json.journal"));
	assert_int_equal(f.st->serial, 1);
	assert_source(f.st, URL, "main", C2);
	assert_int_equal(rmdir(f.jnl), 0);
	assert_int_equal(state_save(f.be, f.st), 0);
	assert_loads_as(f.path, 2, C2);
	fixture_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_source_line_round_trips),
		cmocka_unit_test(test_source_check_bounds),
		cmocka_unit_test(test_note_source_appends_a_line_and_leaves_the_state_file),
		cmocka_unit_test(test_source_line_is_replayed_over_the_snapshot),
		cmocka_unit_test(test_a_full_save_folds_the_source_line),
		cmocka_unit_test(test_an_older_source_line_is_ignored),
		cmocka_unit_test(test_a_torn_last_source_line_is_ignored),
		cmocka_unit_test(test_a_damaged_source_line_is_refused_with_its_line),
		cmocka_unit_test(test_the_journal_is_folded_past_its_limit),
		cmocka_unit_test(test_without_a_state_file_it_is_a_full_save),
		cmocka_unit_test(test_a_source_out_of_bounds_is_a_full_save),
		cmocka_unit_test(test_a_failed_note_leaves_the_source_for_a_save),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
