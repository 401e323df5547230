/* The git source against real repositories made with the git CLI (local paths, file://, git://, http(s)://). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../reconciler/source/gitsrc.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

struct fx {
	char *dir;	/* temp dir, removed at teardown */
	char *repo;	/* a working repository (branch main) with the standard content */
	char first[41]; /* its first commit */
	pid_t server;	/* a daemon started by the test, stopped at teardown */
};

/* Runs a shell command (stdout and stderr discarded); fails the test if it fails. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd, *full;
	int rc;

	va_start(ap, fmt);
	cmd = xvasprintf(fmt, ap);
	va_end(ap);
	full = xasprintf("(%s) >/dev/null 2>&1", cmd);
	rc = system(full);
	free(full);
	if (rc != 0) {
		fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
		free(cmd);
		fail();
	}
	free(cmd);
}

/* The first line a shell command prints (newline stripped). Caller frees. */
static char *capture(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *capture(const char *fmt, ...)
{
	va_list ap;
	char *cmd, line[4096] = "";
	FILE *p;

	va_start(ap, fmt);
	cmd = xvasprintf(fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	if (!fgets(line, sizeof(line), p))
		line[0] = '\0';
	assert_int_equal(pclose(p), 0);
	free(cmd);
	line[strcspn(line, "\n")] = '\0';
	return xstrdup(line);
}

static void rev_parse(const char *repo, const char *spec, char out[41])
{
	char *id = capture("git -C '%s' rev-parse '%s'", repo, spec);

	assert_int_equal(strlen(id), 40);
	memcpy(out, id, 41);
	free(id);
}

static void put(const char *repo, const char *path, const char *text)
{
	free(test_write(repo, path, text, 0644));
}

static void commit_all(const char *repo, const char *msg, char out[41])
{
	sh("git -C '%s' add -A && git -C '%s' commit -q --allow-empty -m '%s'", repo, repo, msg);
	if (out)
		rev_parse(repo, "HEAD", out);
}

/*
 * certs/a.yaml, certs/exec.yaml (0755), certs/team/b.yml, certs/z/deep/e.yaml: manifests;
 * certs/README.md, certs/notes.yaml.txt: not yaml; certs/link.yaml: a symlink;
 * certs/sub.yaml: a submodule (gitlink); certs-old/x.yaml, other/c.yaml: outside certs/.
 */
static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	f->dir = test_mkdtemp();
	f->repo = fsutil_join(f->dir, "repo");
	sh("git -c init.defaultBranch=main init -q '%s'", f->repo);
	put(f->repo, "certs/a.yaml", "a: 1\n");
	free(test_write(f->repo, "certs/exec.yaml", "e: 1\n", 0755));
	put(f->repo, "certs/team/b.yml", "b: 2\n");
	put(f->repo, "certs/z/deep/e.yaml", "deep: 1\n");
	put(f->repo, "certs/README.md", "not a manifest\n");
	put(f->repo, "certs/notes.yaml.txt", "not a manifest either\n");
	put(f->repo, "certs-old/x.yaml", "x: 1\n");
	put(f->repo, "other/c.yaml", "c: 3\n");
	sh("cd '%s/certs' && ln -s a.yaml link.yaml && mkdir sub.yaml", f->repo);
	sh("git -C '%s' add -A && git -C '%s' update-index --add --cacheinfo "
	   "160000,1234567890123456789012345678901234567890,certs/sub.yaml",
	   f->repo, f->repo);
	commit_all(f->repo, "first", f->first);
	sh("git -C '%s' tag v1 && git -C '%s' tag -a v1a -m 'annotated'", f->repo, f->repo);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->server > 0) {
		kill(f->server, SIGTERM);
		waitpid(f->server, NULL, 0);
	}
	free(f->repo);
	test_rmdir(f->dir);
	free(f);
	return 0;
}

static struct gitsrc *open_path(const char *path)
{
	struct gitsrc_opts o = {path, NULL, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc *g = NULL;

	assert_int_equal(gitsrc_open(&o, &g), 0);
	assert_non_null(g);
	return g;
}

static struct gitsrc *open_url(const char *url, const char *cache, const char *token, const char *ca)
{
	struct gitsrc_opts o = {url, cache, token, ca, NULL, NULL, NULL};
	struct gitsrc *g = NULL;
	int rc = gitsrc_open(&o, &g);

	if (rc)
		fail_msg("gitsrc_open(%s): %d %s", url, rc, cs_errmsg());
	return g;
}

/* A bare copy of the fixture repository under dir/srv, the root the daemons serve. */
static char *make_origin(struct fx *f)
{
	char *bare = xasprintf("%s/srv/origin.git", f->dir);

	sh("git clone -q --bare '%s' '%s'", f->repo, bare);
	return bare;
}

static void push_commit(struct fx *f, const char *bare, const char *path, const char *text, char out[41])
{
	put(f->repo, path, text);
	commit_all(f->repo, path, out);
	sh("git -C '%s' push -q '%s' main", f->repo, bare);
}

static size_t count_entries(const char *dir, const char *must_contain)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    (!must_contain || strstr(e->d_name, must_contain)))
			n++;
	closedir(d);
	return n;
}

static void assert_files(struct gitsrc_file *v, size_t n, const char *const *want, size_t n_want)
{
	assert_int_equal(n, n_want);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i].path, want[i]);
}

/* ---- listing and reading ---- */

static void test_gitsrc_lists_yaml_blobs_sorted_skipping_links_submodules_and_other_files(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g = open_path(f->repo);
	static const char *const want[] = {"certs/a.yaml", "certs/exec.yaml", "certs/team/b.yml",
					   "certs/z/deep/e.yaml"};
	static const char *const all[] = {"certs-old/x.yaml", "certs/a.yaml",	     "certs/exec.yaml",
					  "certs/team/b.yml", "certs/z/deep/e.yaml", "other/c.yaml"};
	struct gitsrc_file *v = NULL;
	char oid[41];
	size_t n = 0;

	assert_int_equal(gitsrc_list(g, f->first, "certs", &v, &n), 0);
	assert_files(v, n, want, 4);
	rev_parse(f->repo, "HEAD:certs/a.yaml", oid);
	assert_string_equal(v[0].oid, oid);
	assert_int_equal(v[0].size, 5);
	assert_int_equal(v[3].size, 8);
	gitsrc_files_free(v, n);
	/* "./certs/" is the same directory; "" and "." are the whole tree */
	assert_int_equal(gitsrc_list(g, f->first, "./certs/", &v, &n), 0);
	assert_files(v, n, want, 4);
	gitsrc_files_free(v, n);
	assert_int_equal(gitsrc_list(g, f->first, "", &v, &n), 0);
	assert_files(v, n, all, 6);
	gitsrc_files_free(v, n);
	assert_int_equal(gitsrc_list(g, f->first, ".", &v, &n), 0);
	assert_files(v, n, all, 6);
	gitsrc_files_free(v, n);
	assert_int_equal(gitsrc_list(g, f->first, "certs/team", &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].path, "certs/team/b.yml");
	gitsrc_files_free(v, n);
	gitsrc_free(g);
}

static void test_gitsrc_list_of_a_missing_directory_or_commit_is_not_found(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g = open_path(f->repo);
	struct gitsrc_file *v = NULL;
	size_t n = 0;

	assert_int_equal(gitsrc_list(g, f->first, "nowhere", &v, &n), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "no directory \"nowhere\""));
	assert_int_equal(gitsrc_list(g, f->first, "certs/a.yaml", &v, &n), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "certs/a.yaml"));
	assert_int_equal(gitsrc_list(g, "0123456789012345678901234567890123456789", "certs", &v, &n), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "0123456789012345678901234567890123456789"));
	assert_null(v);
	gitsrc_free(g);
}

static void test_gitsrc_reads_the_commit_not_the_working_tree(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g = open_path(f->repo);
	static const char *const want[] = {"certs/a.yaml", "certs/exec.yaml", "certs/team/b.yml",
					   "certs/z/deep/e.yaml"};
	struct gitsrc_file *v = NULL;
	struct buf b = BUF_INIT;
	char head[41];
	size_t n = 0;

	put(f->repo, "certs/a.yaml", "a: changed in the working tree\n");
	put(f->repo, "certs/new.yaml", "n: 1\n");
	put(f->repo, "certs/staged.yaml", "s: 1\n");
	sh("git -C '%s' add certs/staged.yaml && rm '%s/certs/exec.yaml'", f->repo, f->repo);
	assert_int_equal(gitsrc_resolve(g, "main", head), 0);
	assert_string_equal(head, f->first);
	assert_int_equal(gitsrc_list(g, head, "certs", &v, &n), 0);
	assert_files(v, n, want, 4);
	assert_int_equal(gitsrc_read_blob(g, v[0].oid, v[0].path, 1024, &b), 0);
	assert_string_equal(b.data, "a: 1\n");
	buf_free(&b);
	gitsrc_files_free(v, n);
	gitsrc_free(g);
}

static void test_gitsrc_read_blob_returns_the_committed_bytes_within_the_cap(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g;
	struct gitsrc_file *v = NULL;
	struct buf b = BUF_INIT;
	char head[41], oid[41];
	size_t n = 0;

	sh("printf 'bin: \\000\\001\\377 end\\n' > '%s/certs/bin.yaml'", f->repo);
	commit_all(f->repo, "binary", head);
	g = open_path(f->repo);
	assert_int_equal(gitsrc_list(g, head, "certs", &v, &n), 0);
	assert_string_equal(v[1].path, "certs/bin.yaml");
	assert_int_equal(v[1].size, 13);
	assert_int_equal(gitsrc_read_blob(g, v[1].oid, v[1].path, 13, &b), 0); /* exactly at the cap */
	assert_int_equal(b.len, 13);
	assert_memory_equal(b.data, "bin: \0\1\377 end\n", 13);
	buf_free(&b);
	assert_int_equal(gitsrc_read_blob(g, v[1].oid, v[1].path, 12, &b), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "certs/bin.yaml: file is 13 bytes; the limit is 12");
	assert_null(b.data);
	assert_int_equal(gitsrc_read_blob(g, "0123456789012345678901234567890123456789", "certs/x.yaml", 100, &b),
			 CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "certs/x.yaml"));
	assert_int_equal(gitsrc_read_blob(g, "0123", "certs/y.yaml", 100, &b), CS_ENOTFOUND);
	gitsrc_files_free(v, n);
	gitsrc_free(g);
	/* without a listing first: the size comes from the object header, still before any copy */
	g = open_path(f->repo);
	rev_parse(f->repo, "HEAD:certs/bin.yaml", oid);
	assert_int_equal(gitsrc_read_blob(g, oid, "certs/bin.yaml", 12, &b), CS_EINVALID);
	assert_string_equal(cs_errmsg(), "certs/bin.yaml: file is 13 bytes; the limit is 12");
	assert_int_equal(gitsrc_read_blob(g, oid, "certs/bin.yaml", 0, &b), 0); /* 0: no limit */
	assert_int_equal(b.len, 13);
	buf_free(&b);
	rev_parse(f->repo, "HEAD:certs", oid); /* a tree is not a blob */
	assert_int_equal(gitsrc_read_blob(g, oid, "certs", 100, &b), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "no blob"));
	gitsrc_free(g);
}

/* Branch "huge": many/ holds n+1 entries (git mktree; fast-import and the CLI are quadratic in entries). */
static void make_huge_tree(struct fx *f, size_t n)
{
	char *lines = fsutil_join(f->dir, "lines"), *blob;
	FILE *s;

	blob = capture("printf 'a: 1\\n' | git -C '%s' hash-object -w --stdin", f->repo);
	s = fopen(lines, "w");
	assert_non_null(s);
	for (size_t i = 0; i <= n; i++)
		fprintf(s, "100644 blob %s\tf%06zu.yaml\n", blob, i);
	assert_int_equal(fclose(s), 0);
	sh("cd '%s' && t=$(git mktree < '%s') && r=$(printf '040000 tree %%s\\tmany\\n' $t | git mktree) && "
	   "git update-ref refs/heads/huge $(git commit-tree -m huge $r)",
	   f->repo, lines);
	free(blob);
	free(lines);
}

static void test_gitsrc_list_refuses_more_than_the_file_cap(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g;
	struct gitsrc_file *v = NULL;
	char huge[41], msg[64];
	size_t n = 0;

	make_huge_tree(f, GITSRC_MAX_FILES);
	g = open_path(f->repo);
	assert_int_equal(gitsrc_resolve(g, "huge", huge), 0);
	assert_int_equal(gitsrc_list(g, huge, "many", &v, &n), CS_EINVALID);
	snprintf(msg, sizeof(msg), "more than %d manifest files", GITSRC_MAX_FILES);
	assert_non_null(strstr(cs_errmsg(), msg));
	assert_null(v);
	gitsrc_free(g);
}

/* ---- refs ---- */

static void test_gitsrc_resolves_branches_tags_ids_and_expressions(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g;
	char second[41], out[41], abbrev[9];

	commit_all(f->repo, "second", second);
	g = open_path(f->repo);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, second);
	assert_int_equal(gitsrc_resolve(g, "HEAD", out), 0);
	assert_string_equal(out, second);
	assert_int_equal(gitsrc_resolve(g, NULL, out), 0);
	assert_string_equal(out, second);
	assert_int_equal(gitsrc_resolve(g, "v1", out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, "v1a", out), 0); /* an annotated tag peels to its commit */
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, "main~1", out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, f->first, out), 0);
	assert_string_equal(out, f->first);
	memcpy(abbrev, f->first, 8);
	abbrev[8] = '\0';
	assert_int_equal(gitsrc_resolve(g, abbrev, out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, "no-such-branch", out), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "\"no-such-branch\""));
	assert_non_null(strstr(cs_errmsg(), f->repo));
	gitsrc_free(g);
}

static void test_gitsrc_changed_lists_added_modified_deleted_and_renamed_paths(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g;
	static const char *const want[] = {"certs/a.yaml", "certs/d.yaml", "certs/exec.yaml", "certs/team/b.yml",
					   "certs/team/b2.yml"};
	char second[41];
	char **paths = NULL;
	size_t n = 0;

	put(f->repo, "certs/a.yaml", "a: 2\n");
	put(f->repo, "certs/d.yaml", "d: 1\n");
	sh("git -C '%s' rm -q certs/exec.yaml && git -C '%s' mv certs/team/b.yml certs/team/b2.yml", f->repo, f->repo);
	put(f->repo, "certs-old/x.yaml", "x: 2\n"); /* a sibling that shares the prefix */
	put(f->repo, "other/c.yaml", "c: 4\n");
	commit_all(f->repo, "second", second);
	g = open_path(f->repo);
	assert_int_equal(gitsrc_changed(g, f->first, second, "certs", &paths, &n), 0);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(paths[i], want[i]);
	gitsrc_paths_free(paths, n);
	assert_int_equal(gitsrc_changed(g, f->first, second, "", &paths, &n), 0);
	assert_int_equal(n, 7);
	assert_string_equal(paths[0], "certs-old/x.yaml");
	assert_string_equal(paths[6], "other/c.yaml");
	gitsrc_paths_free(paths, n);
	assert_int_equal(gitsrc_changed(g, second, second, "certs", &paths, &n), 0);
	assert_int_equal(n, 0);
	gitsrc_paths_free(paths, n);
	gitsrc_free(g);
}

/* from's listing with the deltas applied (a delta's old side removed, its new side added), sorted by path. */
static void apply_deltas(struct gitsrc_file **v, size_t *n, const struct gitsrc_delta *dl, size_t n_dl)
{
	for (size_t i = 0; i < n_dl; i++) {
		if (dl[i].old_path) {
			size_t k = 0;

			for (size_t j = 0; j < *n; j++)
				if (!strcmp((*v)[j].path, dl[i].old_path))
					assert_string_equal((*v)[j].oid, dl[i].old_oid), free((*v)[j].path);
				else
					(*v)[k++] = (*v)[j];
			assert_int_equal(k, *n - 1); /* the removed side was in the listing */
			*n = k;
		}
		if (dl[i].new_path) {
			*v = xrealloc(*v, (*n + 1) * sizeof(**v));
			(*v)[*n].path = xstrdup(dl[i].new_path);
			memcpy((*v)[*n].oid, dl[i].new_oid, sizeof((*v)[*n].oid));
			(*n)++;
		}
	}
}

static int file_path_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gitsrc_file *)a)->path, ((const struct gitsrc_file *)b)->path);
}

/* The listing at `from` plus the manifest deltas to `to` is the listing at `to`: nothing more, nothing less. */
static void assert_deltas_make_listing(struct gitsrc *g, const char *from, const char *to, const char *dir,
				       size_t want_deltas)
{
	struct gitsrc_file *a = NULL, *b = NULL;
	struct gitsrc_delta *dl = NULL;
	size_t na = 0, nb = 0, n_dl = 0;

	assert_int_equal(gitsrc_list(g, from, dir, &a, &na), 0);
	assert_int_equal(gitsrc_list(g, to, dir, &b, &nb), 0);
	assert_int_equal(gitsrc_diff_manifests(g, from, to, dir, &dl, &n_dl), 0);
	assert_int_equal(n_dl, want_deltas);
	apply_deltas(&a, &na, dl, n_dl);
	if (na)
		qsort(a, na, sizeof(*a), file_path_cmp);
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++) {
		assert_string_equal(a[i].path, b[i].path);
		assert_string_equal(a[i].oid, b[i].oid);
	}
	gitsrc_deltas_free(dl, n_dl);
	gitsrc_files_free(a, na);
	gitsrc_files_free(b, nb);
}

static void test_gitsrc_diff_manifests_turns_one_listing_into_the_next(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g;
	char c2[41], c3[41], c4[41];

	/* edit, add, delete, rename, a non-manifest, a sibling sharing the prefix, a change of mode alone */
	put(f->repo, "certs/a.yaml", "a: 2\n");
	put(f->repo, "certs/d.yaml", "d: 1\n");
	put(f->repo, "certs/README.md", "still not a manifest\n");
	sh("git -C '%s' rm -q certs/z/deep/e.yaml && git -C '%s' mv certs/team/b.yml certs/team/b2.yml", f->repo,
	   f->repo);
	sh("chmod 0644 '%s/certs/exec.yaml'", f->repo);
	put(f->repo, "certs-old/x.yaml", "x: 2\n");
	/* names where git's order (a tree sorts as "x/") and strcmp's differ: x-y.yaml < x.yaml < x/ */
	put(f->repo, "certs/x/in.yaml", "xi: 1\n");
	put(f->repo, "certs/x-y.yaml", "xy: 1\n");
	put(f->repo, "certs/x.yaml", "x: 1\n");
	commit_all(f->repo, "second", c2);
	/* x/in.yaml changes and x.yaml goes: a merge by strcmp's order would pair x.yaml with x/ */
	put(f->repo, "certs/x/in.yaml", "xi: 2\n");
	sh("git -C '%s' rm -q certs/x.yaml", f->repo);
	/* a symlink becomes a file; a file becomes a symlink; a manifest becomes a directory of manifests */
	sh("cd '%s/certs' && rm link.yaml && printf 'l: 1\\n' > link.yaml && rm d.yaml && ln -s a.yaml d.yaml && "
	   "git rm -q a.yaml && mkdir a.yaml && printf 'in: 1\\n' > a.yaml/in.yaml",
	   f->repo);
	commit_all(f->repo, "third", c3);
	/* the whole directory goes */
	sh("git -C '%s' rm -q -r certs", f->repo);
	put(f->repo, "other/c.yaml", "c: 9\n");
	commit_all(f->repo, "fourth", c4);
	g = open_path(f->repo);
	/* a.yaml edited, d.yaml added, e.yaml removed, b.yml -> b2.yml (two sides), 3 x files: the mode change is not one */
	assert_deltas_make_listing(g, f->first, c2, "certs", 8);
	/* a.yaml gone and a.yaml/in.yaml added, d.yaml now a link (gone), link.yaml now a file (added), x/in.yaml, x.yaml */
	assert_deltas_make_listing(g, c2, c3, "certs", 6);
	assert_deltas_make_listing(g, f->first, c3, "certs", 8);
	assert_deltas_make_listing(g, c2, c2, "certs", 0);
	/* the whole tree: certs/ goes (7 manifests), other/c.yaml changes; certs-old/x.yaml is the same */
	assert_deltas_make_listing(g, c2, c4, "", 8);
	assert_deltas_make_listing(g, c4, f->first, "", 6);
	gitsrc_free(g);
}

static void test_gitsrc_merge_base_of_two_branches(void **state)
{
	struct fx *f = *state;
	struct gitsrc *g;
	char base_commit[41], main_tip[41], feature[41], out[41];

	commit_all(f->repo, "base", base_commit);
	sh("git -C '%s' checkout -q -b feature", f->repo);
	put(f->repo, "certs/f.yaml", "f: 1\n");
	commit_all(f->repo, "feature", feature);
	sh("git -C '%s' checkout -q main", f->repo);
	put(f->repo, "certs/m.yaml", "m: 1\n");
	commit_all(f->repo, "main", main_tip);
	sh("git -C '%s' checkout -q --orphan unrelated && git -C '%s' commit -q -m unrelated", f->repo, f->repo);
	g = open_path(f->repo);
	assert_int_equal(gitsrc_merge_base(g, main_tip, feature, out), 0);
	assert_string_equal(out, base_commit);
	assert_int_equal(gitsrc_merge_base(g, "main", "feature", out), 0);
	assert_string_equal(out, base_commit);
	assert_int_equal(gitsrc_merge_base(g, "main", "unrelated", out), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "no merge base"));
	gitsrc_free(g);
}

/* ---- opening ---- */

static void test_gitsrc_opens_bare_repositories_and_linked_worktrees_by_path(void **state)
{
	struct fx *f = *state;
	char *bare = fsutil_join(f->dir, "bare.git"), *wt = fsutil_join(f->dir, "wt");
	struct gitsrc *g;
	struct gitsrc_file *v = NULL;
	char out[41];
	size_t n = 0;

	sh("git clone -q --bare '%s' '%s'", f->repo, bare);
	g = open_path(bare);
	assert_string_equal(gitsrc_display(g), bare);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_list(g, out, "certs", &v, &n), 0);
	assert_int_equal(n, 4);
	gitsrc_files_free(v, n);
	assert_int_equal(gitsrc_fetch(g), 0); /* a no-op for local repositories */
	gitsrc_free(g);
	sh("git -C '%s' worktree add -q -b wtbranch '%s'", f->repo, wt);
	g = open_path(wt);
	assert_int_equal(gitsrc_resolve(g, "HEAD", out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, "wtbranch", out), 0);
	gitsrc_free(g);
	free(bare);
	free(wt);
}

static void test_gitsrc_missing_repository_is_named(void **state)
{
	struct fx *f = *state;
	char *missing = fsutil_join(f->dir, "missing"), *sub = fsutil_join(f->repo, "certs");
	char *cache = fsutil_join(f->dir, "cache"), *url = xasprintf("file://%s/missing.git", f->dir);
	struct gitsrc_opts local = {missing, NULL, NULL, NULL, NULL, NULL, NULL},
			   inside = {sub, NULL, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc_opts remote = {url, cache, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc *g = NULL;

	assert_int_equal(gitsrc_open(&local, &g), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), missing));
	/* no search upwards: a directory inside a repository is not that repository */
	assert_int_equal(gitsrc_open(&inside, &g), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), sub));
	assert_int_equal(gitsrc_open(&remote, &g), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "git: fetching "));
	assert_non_null(strstr(cs_errmsg(), url));
	assert_null(g);
	assert_int_equal(count_entries(cache, NULL), 0); /* the failed clone left nothing behind */
	gitsrc_free(NULL);
	gitsrc_files_free(NULL, 0);
	gitsrc_paths_free(NULL, 0);
	free(missing);
	free(sub);
	free(cache);
	free(url);
}

static void test_gitsrc_refuses_unsupported_urls_and_urls_without_a_cache(void **state)
{
	struct fx *f = *state;
	char *cache = fsutil_join(f->dir, "cache");
	struct gitsrc_opts svn = {"svn://example.com/acme/certs", cache, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc_opts ssh = {"git@example.com:acme/certs.git", cache, NULL, NULL, "key", NULL, NULL};
	struct gitsrc_opts nocache = {"https://example.com/acme/certs.git", NULL, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc_opts empty = {"", NULL, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc *g = NULL;

	assert_int_equal(gitsrc_open(&svn, &g), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "svn://example.com/acme/certs: unsupported URL scheme"));
	/* An SSH remote (scp-like too, never a local path) is refused without known host keys. */
	assert_int_equal(gitsrc_open(&ssh, &g), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "git@example.com:acme/certs.git: an SSH remote needs source.knownHosts"));
	assert_int_equal(gitsrc_open(&nocache, &g), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "cache directory"));
	assert_int_equal(gitsrc_open(&empty, &g), CS_EINVALID);
	assert_null(g);
	free(cache);
}

/* ---- remote repositories ---- */

static void test_gitsrc_clones_a_file_url_into_the_cache_and_fetches_new_commits(void **state)
{
	struct fx *f = *state;
	char *bare = make_origin(f), *cache = fsutil_join(f->dir, "cache"), *url = xasprintf("file://%s", bare);
	struct gitsrc *g, *g2;
	char two[41], three[41], out[41];
	char **paths = NULL;
	size_t n = 0;

	g = open_url(url, cache, NULL, NULL);
	assert_string_equal(gitsrc_display(g), url);
	assert_int_equal(count_entries(cache, NULL), 1); /* the clone, and no temporary directory */
	assert_int_equal(count_entries(cache, "_srv_origin-"), 1);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, "HEAD", out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, "refs/heads/main", out), 0);
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_resolve(g, "v1a", out), 0);
	assert_string_equal(out, f->first);
	/* a new commit in the origin: a new open fetches it into the same clone */
	push_commit(f, bare, "certs/z.yaml", "z: 1\n", two);
	g2 = open_url(url, cache, NULL, NULL);
	assert_int_equal(gitsrc_resolve(g2, "main", out), 0);
	assert_string_equal(out, two);
	assert_int_equal(count_entries(cache, NULL), 1);
	gitsrc_free(g2);
	/* and an open source sees the next one after gitsrc_fetch */
	push_commit(f, bare, "certs/y.yaml", "y: 1\n", three);
	assert_int_equal(gitsrc_fetch(g), 0);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, three);
	assert_int_equal(gitsrc_changed(g, two, three, "certs", &paths, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(paths[0], "certs/y.yaml");
	gitsrc_paths_free(paths, n);
	gitsrc_free(g);
	free(bare);
	free(cache);
	free(url);
}

static void test_gitsrc_fetch_prunes_deleted_branches_and_follows_moved_tags(void **state)
{
	struct fx *f = *state;
	char *bare = make_origin(f), *cache = fsutil_join(f->dir, "cache"), *url = xasprintf("file://%s", bare);
	struct gitsrc *g;
	char two[41], out[41];

	sh("git -C '%s' branch gone main", bare);
	g = open_url(url, cache, NULL, NULL);
	assert_int_equal(gitsrc_resolve(g, "gone", out), 0);
	push_commit(f, bare, "certs/z.yaml", "z: 1\n", two);
	sh("git -C '%s' branch -D gone && git -C '%s' tag -f v1 main", bare, bare);
	assert_int_equal(gitsrc_fetch(g), 0);
	assert_int_equal(gitsrc_resolve(g, "gone", out), CS_ENOTFOUND);
	assert_int_equal(gitsrc_resolve(g, "v1", out), 0);
	assert_string_equal(out, two);
	gitsrc_free(g);
	free(bare);
	free(cache);
	free(url);
}

static void test_gitsrc_fetch_failure_is_an_error_and_keeps_the_clone(void **state)
{
	struct fx *f = *state;
	char *bare = make_origin(f), *cache = fsutil_join(f->dir, "cache"), *url = xasprintf("file://%s", bare);
	char *clone, *moved = xasprintf("%s.away", bare);
	struct gitsrc_opts o = {url, cache, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc *g = open_url(url, cache, NULL, NULL), *g2 = NULL;
	char out[41];

	clone = capture("ls -d '%s'/*.git", cache);
	sh("mv '%s' '%s'", bare, moved);
	assert_int_equal(gitsrc_fetch(g), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "git: fetching "));
	assert_non_null(strstr(cs_errmsg(), url));
	assert_int_equal(gitsrc_resolve(g, "main", out), 0); /* the old revision is still there */
	assert_string_equal(out, f->first);
	assert_int_equal(gitsrc_open(&o, &g2), CS_ETRANSIENT);
	assert_null(g2);
	assert_true(fsutil_exists(clone));
	sh("mv '%s' '%s'", moved, bare);
	/* a cached clone that no longer opens is rebuilt */
	sh("rm -rf '%s' && echo junk > '%s'", clone, clone);
	g2 = open_url(url, cache, NULL, NULL);
	assert_int_equal(gitsrc_resolve(g2, "main", out), 0);
	assert_string_equal(out, f->first);
	gitsrc_free(g2);
	gitsrc_free(g);
	free(clone);
	free(moved);
	free(bare);
	free(cache);
	free(url);
}

static void test_gitsrc_never_shows_a_password_from_the_url(void **state)
{
	struct fx *f = *state;
	char *cache = fsutil_join(f->dir, "cache");
	struct gitsrc_opts o = {
		"https://user:hunter2secret@127.0.0.1:1/x.git", cache, "tok-zzz-secret", NULL, NULL, NULL, NULL};
	struct gitsrc_opts p = {"http://ghp_tokenasuser@127.0.0.1:1/x.git", cache, NULL, NULL, NULL, NULL, NULL};
	struct gitsrc *g = NULL;

	assert_int_equal(gitsrc_open(&o, &g), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "git: fetching https://127.0.0.1:1/x.git: "));
	assert_null(strstr(cs_errmsg(), "hunter2secret"));
	assert_null(strstr(cs_errmsg(), "user"));
	assert_null(strstr(cs_errmsg(), "tok-zzz-secret"));
	assert_int_equal(gitsrc_open(&p, &g), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "http://127.0.0.1:1/x.git"));
	assert_null(strstr(cs_errmsg(), "ghp_tokenasuser"));
	assert_null(g);
	free(cache);
}

/* ---- servers on 127.0.0.1 ---- */

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(s >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

/* Starts argv with stdio on /dev/null and waits until it accepts on 127.0.0.1:port. */
static pid_t start_server(const char *const argv[], int port)
{
	struct sockaddr_in a;
	struct timespec pause = {0, 20 * 1000 * 1000};
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 500; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0), ok = !connect(s, (struct sockaddr *)&a, sizeof(a));

		close(s);
		if (ok)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			fail_msg("%s exited before listening on port %d", argv[0], port);
		nanosleep(&pause, NULL);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	fail_msg("%s never listened on port %d", argv[0], port);
	return -1;
}

/* 1 if `git <cmd>` is installed (git-daemon and git-http-backend are separate programs). */
static int have_git_program(const char *name)
{
	char *exec = capture("git --exec-path"), *path = xasprintf("%s/git-%s", exec, name);
	int ok = access(path, X_OK) == 0;

	free(exec);
	free(path);
	return ok;
}

static void test_gitsrc_clones_through_git_daemon(void **state)
{
	struct fx *f = *state;
	char *bare, *cache = fsutil_join(f->dir, "cache"), *srv = fsutil_join(f->dir, "srv"), *url, *base, *portarg;
	struct gitsrc *g;
	char two[41], out[41];
	int port;

	if (!have_git_program("daemon")) {
		free(cache);
		free(srv);
		skip();
	}
	bare = make_origin(f);
	port = free_port();
	base = xasprintf("--base-path=%s", srv);
	portarg = xasprintf("--port=%d", port);
	f->server = start_server((const char *const[]){"git", "daemon", "--reuseaddr", base, "--export-all",
						       "--listen=127.0.0.1", portarg, NULL},
				 port);
	url = xasprintf("git://127.0.0.1:%d/origin.git", port);
	g = open_url(url, cache, "unused-token", NULL);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, f->first);
	push_commit(f, bare, "certs/z.yaml", "z: 1\n", two);
	assert_int_equal(gitsrc_fetch(g), 0);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, two);
	gitsrc_free(g);
	free(url);
	free(base);
	free(portarg);
	free(bare);
	free(cache);
	free(srv);
}

/*
 * Git over HTTP(S) with Basic auth in front of git http-backend: only
 * "x-access-token:<token>" is let in. Every request is logged as ok,
 * refused (wrong credentials) or anonymous.
 */
static const char githttp_py[] =
	"import base64, os, ssl, subprocess, sys\n"
	"from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
	"port, root, token, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]\n"
	"want = 'Basic ' + base64.b64encode(('x-access-token:' + token).encode()).decode()\n"
	"class H(BaseHTTPRequestHandler):\n"
	"    def log_message(self, *a): pass\n"
	"    def note(self, s):\n"
	"        with open(log, 'a') as f: f.write(s + '\\n')\n"
	"    def body(self):\n"
	"        if self.headers.get('Transfer-Encoding', '').lower() != 'chunked':\n"
	"            return self.rfile.read(int(self.headers.get('Content-Length', 0)))\n"
	"        out = b''\n"
	"        while True:\n"
	"            n = int(self.rfile.readline().strip(), 16)\n"
	"            if n == 0: self.rfile.readline(); return out\n"
	"            out += self.rfile.read(n); self.rfile.readline()\n"
	"    def git(self):\n"
	"        auth = self.headers.get('Authorization')\n"
	"        if auth != want:\n"
	"            self.note('refused' if auth else 'anonymous')\n"
	"            self.send_response(401)\n"
	"            self.send_header('WWW-Authenticate', 'Basic realm=\"git\"')\n"
	"            self.send_header('Content-Length', '0'); self.end_headers(); return\n"
	"        self.note('ok')\n"
	"        body = self.body()\n"
	"        path, _, query = self.path.partition('?')\n"
	"        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL='1', PATH_INFO=path,\n"
	"                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER='x',\n"
	"                   CONTENT_TYPE=self.headers.get('Content-Type', ''), CONTENT_LENGTH=str(len(body)))\n"
	"        out = subprocess.run(['git', 'http-backend'], input=body, env=env, capture_output=True).stdout\n"
	"        sep = b'\\r\\n\\r\\n' if b'\\r\\n\\r\\n' in out else b'\\n\\n'\n"
	"        head, _, data = out.partition(sep)\n"
	"        status, hdrs = 200, []\n"
	"        for line in head.decode().splitlines():\n"
	"            k, _, v = line.partition(':')\n"
	"            if k.lower() == 'status': status = int(v.split()[0])\n"
	"            elif k: hdrs.append((k, v.strip()))\n"
	"        self.send_response(status)\n"
	"        for k, v in hdrs: self.send_header(k, v)\n"
	"        self.send_header('Content-Length', str(len(data))); self.end_headers(); self.wfile.write(data)\n"
	"    do_GET = do_POST = git\n"
	"srv = ThreadingHTTPServer(('127.0.0.1', port), H)\n"
	"if len(sys.argv) > 6:\n"
	"    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[5], sys.argv[6])\n"
	"    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
	"srv.serve_forever()\n";

#define HTTP_TOKEN "tok-right-4f9a2c"

/* Starts the HTTP(S) git server on the fixture's origin; returns its port. */
static int start_githttp(struct fx *f, const char *cert, const char *key)
{
	char *script = fsutil_join(f->dir, "githttp.py"), *srv = fsutil_join(f->dir, "srv");
	char *log = fsutil_join(f->dir, "http.log"), *portarg;
	int port = free_port();

	free(test_write(f->dir, "githttp.py", githttp_py, 0644));
	portarg = xasprintf("%d", port);
	f->server = start_server(
		(const char *const[]){"python3", script, portarg, srv, HTTP_TOKEN, log, cert, key, NULL}, port);
	free(portarg);
	free(script);
	free(srv);
	free(log);
	return port;
}

/* How many requests the server logged with this outcome since the last call (the log is then emptied). */
static int http_log_count(struct fx *f, const char *what)
{
	char *log = fsutil_join(f->dir, "http.log"), *n;
	int count;

	n = capture("grep -cx '%s' '%s' 2>/dev/null || true", what, log);
	count = (int)strtol(n, NULL, 10);
	sh("(grep -vx '%s' '%s' > '%s.rest' || true) && mv '%s.rest' '%s'", what, log, log, log, log);
	free(n);
	free(log);
	return count;
}

static int have_python(void)
{
	return system("python3 -c 'import http.server, ssl' >/dev/null 2>&1") == 0;
}

static void test_gitsrc_sends_the_token_over_http_and_gives_up_after_three_refusals(void **state)
{
	struct fx *f = *state;
	char *bare, *cache, *url, *pw_url;
	struct gitsrc_opts wrong, nothing, pw_wrong;
	struct gitsrc *g = NULL;
	char out[41];
	int port;

	if (!have_python() || !have_git_program("http-backend"))
		skip();
	bare = make_origin(f);
	cache = fsutil_join(f->dir, "cache");
	port = start_githttp(f, NULL, NULL);
	url = xasprintf("http://127.0.0.1:%d/origin.git", port);
	pw_url = xasprintf("http://alice:pw-hidden-789@127.0.0.1:%d/origin.git", port);
	wrong = (struct gitsrc_opts){url, cache, "tok-wrong-123", NULL, NULL, NULL, NULL};
	nothing = (struct gitsrc_opts){url, cache, NULL, NULL, NULL, NULL, NULL};
	pw_wrong = (struct gitsrc_opts){pw_url, cache, "tok-wrong-123", NULL, NULL, NULL, NULL};

	g = open_url(url, cache, HTTP_TOKEN, NULL);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, f->first);
	gitsrc_free(g);
	g = NULL;
	assert_true(http_log_count(f, "ok") > 0);
	sh("rm -rf '%s'", cache);

	assert_int_equal(gitsrc_open(&wrong, &g), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), url));
	assert_null(strstr(cs_errmsg(), "tok-wrong-123"));
	assert_int_equal(http_log_count(f, "refused"), 3);
	assert_int_equal(gitsrc_open(&nothing, &g), CS_EAUTH);
	assert_int_equal(http_log_count(f, "refused"), 0);
	assert_int_equal(gitsrc_open(&pw_wrong, &g), CS_EAUTH);
	assert_null(strstr(cs_errmsg(), "pw-hidden-789"));
	assert_null(strstr(cs_errmsg(), "alice"));
	assert_true(http_log_count(f, "refused") <= 4); /* the URL's own credentials, then the token 3 times */
	assert_null(g);

	/* URL credentials refused, then the token accepted: the password is nowhere in the cache */
	g = open_url(pw_url, cache, HTTP_TOKEN, NULL);
	assert_string_equal(gitsrc_display(g), url);
	gitsrc_free(g);
	sh("! grep -r pw-hidden-789 '%s'", cache);
	free(bare);
	free(cache);
	free(url);
	free(pw_url);
}

/* A CA and a certificate for localhost (mbedTLS matches DNS names, not IP addresses). */
static void make_tls_files(struct fx *f)
{
	sh("cd '%s' && printf 'subjectAltName=DNS:localhost\\n' > ext && "
	   "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
	   "-days 2 -subj /CN=certsync-test-ca -addext basicConstraints=critical,CA:TRUE "
	   "-addext keyUsage=critical,keyCertSign && "
	   "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr "
	   "-subj /CN=localhost && "
	   "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext",
	   f->dir);
}

static void test_gitsrc_clones_over_https_with_a_custom_ca(void **state)
{
	struct fx *f = *state;
	char *bare, *cache, *url, *ca, *cert, *key, *missing_ca;
	struct gitsrc_opts no_ca, bad_ca;
	struct gitsrc *g = NULL;
	char out[41];
	int port;

	if (!have_python() || !have_git_program("http-backend") || system("openssl version >/dev/null 2>&1"))
		skip();
	bare = make_origin(f);
	make_tls_files(f);
	cache = fsutil_join(f->dir, "cache");
	ca = fsutil_join(f->dir, "ca.pem");
	cert = fsutil_join(f->dir, "srv.pem");
	key = fsutil_join(f->dir, "srv.key");
	missing_ca = fsutil_join(f->dir, "missing-ca.pem");
	port = start_githttp(f, cert, key);
	url = xasprintf("https://localhost:%d/origin.git", port);
	no_ca = (struct gitsrc_opts){url, cache, HTTP_TOKEN, NULL, NULL, NULL, NULL};
	bad_ca = (struct gitsrc_opts){url, cache, HTTP_TOKEN, missing_ca, NULL, NULL, NULL};

	/* Run first: the CA option is process-wide and sticks once set. */
	assert_int_equal(gitsrc_open(&no_ca, &g), CS_ERROR);
	assert_non_null(strstr(cs_errmsg(), url));
	assert_int_equal(gitsrc_open(&bad_ca, &g), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), missing_ca));
	assert_null(g);
	g = open_url(url, cache, HTTP_TOKEN, ca);
	assert_int_equal(gitsrc_resolve(g, "main", out), 0);
	assert_string_equal(out, f->first);
	gitsrc_free(g);
	assert_true(http_log_count(f, "ok") > 0);
	free(bare);
	free(cache);
	free(url);
	free(ca);
	free(cert);
	free(key);
	free(missing_ca);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_gitsrc_lists_yaml_blobs_sorted_skipping_links_submodules_and_other_files),
		T(test_gitsrc_list_of_a_missing_directory_or_commit_is_not_found),
		T(test_gitsrc_reads_the_commit_not_the_working_tree),
		T(test_gitsrc_read_blob_returns_the_committed_bytes_within_the_cap),
		T(test_gitsrc_list_refuses_more_than_the_file_cap),
		T(test_gitsrc_resolves_branches_tags_ids_and_expressions),
		T(test_gitsrc_diff_manifests_turns_one_listing_into_the_next),
		T(test_gitsrc_changed_lists_added_modified_deleted_and_renamed_paths),
		T(test_gitsrc_merge_base_of_two_branches),
		T(test_gitsrc_opens_bare_repositories_and_linked_worktrees_by_path),
		T(test_gitsrc_missing_repository_is_named),
		T(test_gitsrc_refuses_unsupported_urls_and_urls_without_a_cache),
		T(test_gitsrc_clones_a_file_url_into_the_cache_and_fetches_new_commits),
		T(test_gitsrc_fetch_prunes_deleted_branches_and_follows_moved_tags),
		T(test_gitsrc_fetch_failure_is_an_error_and_keeps_the_clone),
		T(test_gitsrc_never_shows_a_password_from_the_url),
		T(test_gitsrc_clones_through_git_daemon),
		T(test_gitsrc_sends_the_token_over_http_and_gives_up_after_three_refusals),
		T(test_gitsrc_clones_over_https_with_a_custom_ca),
	};
	int rc;

	/* The git CLI builds the fixtures: fixed identity, no user or system config. */
	setenv("GIT_AUTHOR_NAME", "certsync test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@example.com", 1);
	setenv("GIT_COMMITTER_NAME", "certsync test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@example.com", 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
	/* Every server here is on 127.0.0.1: no proxy may stand in between. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	gitsrc_global_shutdown();
	return rc;
}
