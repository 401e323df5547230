/* The git source against real repositories made with the git CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../reconciler/source/gitsrc.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

static char *dir, *repo;

static void git(const char *fmt, ...)
{
	va_list ap;
	char *args, *cmd;

	va_start(ap, fmt);
	args = xvasprintf(fmt, ap);
	va_end(ap);
	cmd = xasprintf("cd '%s' && GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t "
			"git %s >/dev/null 2>&1", repo, args);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(args);
}

static void commit(const char *msg)
{
	git("add -A");
	git("commit -q --allow-empty -m '%s'", msg);
}

static int setup(void **state)
{
	(void)state;
	dir = test_mkdtemp();
	repo = fsutil_join(dir, "repo");
	fsutil_mkdir_p(repo, 0755);
	git("init -q");
	git("symbolic-ref HEAD refs/heads/main");
	free(test_write(repo, "certs/a.yaml", "a: 1\n", 0644));
	free(test_write(repo, "certs/team/b.yml", "b: 2\n", 0644));
	free(test_write(repo, "certs/README.md", "not a manifest\n", 0644));
	free(test_write(repo, "other/c.yaml", "c: 3\n", 0644));
	git("-c core.symlinks=true ln -s a.yaml certs/link.yaml 2>/dev/null || ln -s a.yaml certs/link.yaml");
	commit("first");
	git("tag v1");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(repo);
	test_rmdir(dir);
	return 0;
}

static struct gitsrc *open_local(void)
{
	struct gitsrc_opts o = {repo, NULL, NULL, NULL};
	struct gitsrc *g = NULL;

	assert_int_equal(gitsrc_open(&o, &g), 0);
	return g;
}

static void test_gitsrc_lists_yaml_blobs_of_the_commit(void **state)
{
	struct gitsrc *g = open_local();
	struct gitsrc_file *f = NULL;
	struct buf b = BUF_INIT;
	char head[41];
	size_t n = 0;

	(void)state;
	/* a file changed in the working tree but not committed is not seen */
	free(test_write(repo, "certs/a.yaml", "a: changed\n", 0644));
	free(test_write(repo, "certs/new.yaml", "n: 1\n", 0644));
	assert_int_equal(gitsrc_resolve(g, "main", head), 0);
	assert_int_equal(gitsrc_list(g, head, "certs", &f, &n), 0);
	assert_int_equal(n, 2); /* a.yaml, team/b.yml; README and the symlink are skipped */
	assert_string_equal(f[0].path, "certs/a.yaml");
	assert_string_equal(f[1].path, "certs/team/b.yml");
	assert_int_equal(f[0].size, 5);
	assert_int_equal(gitsrc_read_blob(g, f[0].oid, f[0].path, 1024, &b), 0);
	assert_string_equal(b.data, "a: 1\n");
	buf_free(&b);
	assert_int_equal(gitsrc_read_blob(g, f[0].oid, f[0].path, 3, &b), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certs/a.yaml: file is 5 bytes; the limit is 3"));
	gitsrc_files_free(f, n);
	assert_int_equal(gitsrc_list(g, head, "", &f, &n), 0);
	assert_int_equal(n, 3);
	gitsrc_files_free(f, n);
	assert_int_equal(gitsrc_list(g, head, "nowhere", &f, &n), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "no directory \"nowhere\""));
	git("checkout -q -- .");
	{
		char *p = fsutil_join(repo, "certs/new.yaml");

		fsutil_rm_rf(p);
		free(p);
	}
	gitsrc_free(g);
}

static void test_gitsrc_resolves_refs(void **state)
{
	struct gitsrc *g = open_local();
	char a[41], b[41], c[41];

	(void)state;
	assert_int_equal(gitsrc_resolve(g, "main", a), 0);
	assert_int_equal(gitsrc_resolve(g, "v1", b), 0);
	assert_string_equal(a, b);
	memcpy(c, a, 8);
	c[8] = '\0';
	assert_int_equal(gitsrc_resolve(g, c, b), 0);
	assert_string_equal(a, b);
	assert_int_equal(gitsrc_resolve(g, "no-such-branch", b), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "no-such-branch"));
	gitsrc_free(g);
}

static void test_gitsrc_changed_files_and_merge_base(void **state)
{
	struct gitsrc *g;
	char first[41], second[41], base[41], feature[41];
	char **paths = NULL;
	size_t n = 0;

	(void)state;
	g = open_local();
	assert_int_equal(gitsrc_resolve(g, "main", first), 0);
	gitsrc_free(g);
	free(test_write(repo, "certs/a.yaml", "a: 2\n", 0644));
	free(test_write(repo, "certs/d.yaml", "d: 1\n", 0644));
	git("mv certs/team/b.yml certs/team/b2.yml");
	free(test_write(repo, "other/c.yaml", "c: 4\n", 0644));
	commit("second");
	git("checkout -q -b feature");
	free(test_write(repo, "certs/f.yaml", "f: 1\n", 0644));
	commit("feature");
	git("checkout -q main");
	g = open_local();
	assert_int_equal(gitsrc_resolve(g, "main", second), 0);
	assert_int_equal(gitsrc_resolve(g, "feature", feature), 0);
	assert_int_equal(gitsrc_changed(g, first, second, "certs", &paths, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(paths[0], "certs/a.yaml");
	assert_string_equal(paths[1], "certs/d.yaml");
	assert_string_equal(paths[2], "certs/team/b.yml");
	assert_string_equal(paths[3], "certs/team/b2.yml");
	gitsrc_paths_free(paths, n);
	assert_int_equal(gitsrc_merge_base(g, second, feature, base), 0);
	assert_string_equal(base, second);
	gitsrc_free(g);
}

static void test_gitsrc_clones_a_url_into_the_cache_and_fetches(void **state)
{
	char *bare = fsutil_join(dir, "origin.git"), *cache = fsutil_join(dir, "cache");
	char *url = xasprintf("file://%s", bare), *cmd;
	struct gitsrc_opts o = {url, cache, NULL, NULL};
	struct gitsrc *g = NULL;
	char one[41], two[41];

	(void)state;
	cmd = xasprintf("git clone -q --bare '%s' '%s'", repo, bare);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	assert_int_equal(gitsrc_open(&o, &g), 0);
	assert_string_equal(gitsrc_display(g), url);
	assert_int_equal(gitsrc_resolve(g, "main", one), 0);
	gitsrc_free(g);
	free(test_write(repo, "certs/z.yaml", "z: 1\n", 0644));
	commit("third");
	git("push -q '%s' main", bare);
	assert_int_equal(gitsrc_open(&o, &g), 0);
	assert_int_equal(gitsrc_resolve(g, "main", two), 0);
	assert_string_not_equal(one, two);
	gitsrc_free(g);
	free(bare);
	free(cache);
	free(url);
}

static void test_gitsrc_errors_name_the_repo_without_credentials(void **state)
{
	char *cache = fsutil_join(dir, "cache2");
	struct gitsrc_opts o = {"file:///nonexistent/repo.git", cache, NULL, NULL};
	struct gitsrc_opts p = {"/nonexistent/repo", NULL, NULL, NULL};
	struct gitsrc_opts s = {"https://user:hunter2secret@127.0.0.1:1/x.git", cache, "hunter2secret", NULL};
	struct gitsrc *g = NULL;

	(void)state;
	assert_int_not_equal(gitsrc_open(&o, &g), 0);
	assert_non_null(strstr(cs_errmsg(), "file:///nonexistent/repo.git"));
	assert_int_equal(gitsrc_open(&p, &g), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "/nonexistent/repo"));
	assert_int_not_equal(gitsrc_open(&s, &g), 0);
	assert_null(strstr(cs_errmsg(), "hunter2secret"));
	assert_non_null(strstr(cs_errmsg(), "https://127.0.0.1:1/x.git"));
	free(cache);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gitsrc_lists_yaml_blobs_of_the_commit),
		cmocka_unit_test(test_gitsrc_resolves_refs),
		cmocka_unit_test(test_gitsrc_changed_files_and_merge_base),
		cmocka_unit_test(test_gitsrc_clones_a_url_into_the_cache_and_fetches),
		cmocka_unit_test(test_gitsrc_errors_name_the_repo_without_credentials),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);

	gitsrc_global_shutdown();
	return rc;
}
