/* The git source: the only file that includes libgit2. Reads commit trees, never a working tree. */
#include "gitsrc.h"

#include <ctype.h>
#include <errno.h>
#include <git2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"

struct gitsrc {
	git_repository *repo;
	char *display; /* URL without credentials, or the local path */
	char *url;     /* remote URL (NULL for a local repository) */
	char *token;   /* https token, wiped on free */
	int remote;
	int auth_attempts; /* per fetch: libgit2 asks again on every refusal */
};

static pthread_once_t gitsrc_once = PTHREAD_ONCE_INIT;

static int gitsrc_initialised;

static void gitsrc_init_once(void)
{
	git_libgit2_init();
	gitsrc_initialised = 1;
}

void gitsrc_global_shutdown(void)
{
	if (gitsrc_initialised)
		git_libgit2_shutdown();
	gitsrc_initialised = 0;
}

/* libgit2's last error message with secrets scrubbed. */
static const char *gitsrc_errmsg(const struct gitsrc *g)
{
	static _Thread_local char buf[512];
	const git_error *e = git_error_last();
	char *hit;

	snprintf(buf, sizeof(buf), "%s", e && e->message ? e->message : "unknown libgit2 error");
	if (g && g->token && *g->token) {
		size_t tl = strlen(g->token);

		while ((hit = strstr(buf, g->token)))
			memset(hit, '*', tl);
	}
	return buf;
}

/* URL with any user:password@ removed. Caller frees. */
static char *gitsrc_strip_credentials(const char *url)
{
	const char *scheme = strstr(url, "://"), *at, *slash;

	if (!scheme)
		return xstrdup(url);
	at = strchr(scheme + 3, '@');
	slash = strchr(scheme + 3, '/');
	if (!at || (slash && at > slash))
		return xstrdup(url);
	return xasprintf("%.*s%s", (int)(scheme + 3 - url), url, at + 1);
}

static int gitsrc_is_url(const char *s)
{
	return strstr(s, "://") != NULL;
}

static int gitsrc_cred_cb(git_credential **out, const char *url, const char *user, unsigned int allowed, void *payload)
{
	struct gitsrc *g = payload;

	(void)url;
	(void)user;
	if (!g->token || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) || ++g->auth_attempts > 3)
		return GIT_PASSTHROUGH;
	return git_credential_userpass_plaintext_new(out, "x-access-token", g->token);
}

/* Cache directory for a URL: <host-path sanitised>-<12 hex of sha256(url)>.git */
static char *gitsrc_cache_path(const char *cache_dir, const char *display)
{
	char h[65], name[80];
	const char *p = strstr(display, "://");
	size_t k = 0;

	crypto_sha256_hex(display, strlen(display), h);
	for (p = p ? p + 3 : display; *p && k < 48; p++)
		name[k++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '_';
	name[k] = '\0';
	return xasprintf("%s/%s-%.12s.git", cache_dir, name, h);
}

static void gitsrc_fetch_opts(struct gitsrc *g, git_fetch_options *fo)
{
	git_fetch_options_init(fo, GIT_FETCH_OPTIONS_VERSION);
	fo->callbacks.credentials = gitsrc_cred_cb;
	fo->callbacks.payload = g;
	fo->download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
	fo->prune = GIT_FETCH_PRUNE;
}

int gitsrc_fetch(struct gitsrc *g)
{
	git_remote *remote = NULL;
	git_fetch_options fo;
	char *refspec = "+refs/heads/*:refs/remotes/origin/*";
	git_strarray specs = {&refspec, 1};
	int rc = 0;

	if (!g->remote)
		return 0;
	g->auth_attempts = 0;
	gitsrc_fetch_opts(g, &fo);
	if (git_remote_lookup(&remote, g->repo, "origin") || git_remote_fetch(remote, &specs, &fo, NULL))
		rc = cs_error(CS_ETRANSIENT, "git: fetching %s: %s", g->display, gitsrc_errmsg(g));
	git_remote_free(remote);
	return rc;
}

static int gitsrc_clone(struct gitsrc *g, const char *path)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	char *parent = fsutil_dirname(path);
	git_remote *remote = NULL;
	int rc = 0;

	fsutil_rm_rf(tmp);
	if ((rc = fsutil_mkdir_p(parent, 0700)))
		goto out;
	if (git_repository_init(&g->repo, tmp, 1) || git_remote_create(&remote, g->repo, "origin", g->url)) {
		rc = cs_error(CS_ERROR, "git: creating a clone of %s in %s: %s", g->display, tmp, gitsrc_errmsg(g));
		goto out;
	}
	git_remote_free(remote);
	remote = NULL;
	g->remote = 1;
	if ((rc = gitsrc_fetch(g)))
		goto out;
	git_repository_free(g->repo);
	g->repo = NULL;
	/* Only a complete clone gets the real name: a crash never leaves a half clone behind. */
	if (rename(tmp, path)) {
		rc = cs_error(CS_ERROR, "git: %s: rename: %s", path, strerror(errno));
		goto out;
	}
	if (git_repository_open_bare(&g->repo, path))
		rc = cs_error(CS_ERROR, "git: opening %s: %s", path, gitsrc_errmsg(g));
out:
	if (rc) {
		git_repository_free(g->repo);
		g->repo = NULL;
		fsutil_rm_rf(tmp);
	}
	git_remote_free(remote);
	free(tmp);
	free(parent);
	return rc;
}

int gitsrc_open(const struct gitsrc_opts *opts, struct gitsrc **out)
{
	struct gitsrc *g = xcalloc(1, sizeof(*g));
	char *path = NULL;
	int rc = 0;

	pthread_once(&gitsrc_once, gitsrc_init_once);
	if (opts->ca_file && git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, opts->ca_file, NULL)) {
		rc = cs_error(CS_EINVALID, "git: CA file %s: %s", opts->ca_file, gitsrc_errmsg(NULL));
		goto out;
	}
	g->token = xstrdup(opts->token);
	if (!gitsrc_is_url(opts->repo)) {
		g->display = xstrdup(opts->repo);
		if (git_repository_open_ext(&g->repo, opts->repo, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL))
			rc = cs_error(CS_ENOTFOUND, "git: %s is not a git repository (%s)", opts->repo,
				      gitsrc_errmsg(g));
		goto out;
	}
	g->url = xstrdup(opts->repo);
	g->display = gitsrc_strip_credentials(opts->repo);
	g->remote = 1;
	if (!opts->cache_dir) {
		rc = cs_error(CS_EINVALID, "git: %s: a cache directory is needed for remote repositories", g->display);
		goto out;
	}
	path = gitsrc_cache_path(opts->cache_dir, g->display);
	if (fsutil_exists(path)) {
		if (git_repository_open_bare(&g->repo, path)) {
			rc = cs_error(CS_ERROR, "git: opening the cached clone %s: %s", path, gitsrc_errmsg(g));
			goto out;
		}
		git_remote_set_url(g->repo, "origin", g->url);
		rc = gitsrc_fetch(g);
	} else {
		rc = gitsrc_clone(g, path);
	}
out:
	free(path);
	if (rc) {
		gitsrc_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

void gitsrc_free(struct gitsrc *g)
{
	if (!g)
		return;
	git_repository_free(g->repo);
	if (g->token)
		crypto_wipe(g->token, strlen(g->token));
	free(g->token);
	free(g->display);
	free(g->url);
	free(g);
}

const char *gitsrc_display(const struct gitsrc *g)
{
	return g->display;
}

static int gitsrc_peel_commit(git_object *obj, char out[41])
{
	git_object *c = NULL;

	if (git_object_peel(&c, obj, GIT_OBJECT_COMMIT))
		return -1;
	git_oid_tostr(out, 41, git_object_id(c));
	git_object_free(c);
	return 0;
}

int gitsrc_resolve(struct gitsrc *g, const char *ref, char out[41])
{
	git_object *obj = NULL;
	char *name;
	int found = 0;

	if (!ref || !*ref)
		ref = "HEAD";
	if (g->remote) {
		/* A branch name means the fetched remote branch, then a tag, then any revision. */
		const char *forms[] = {"refs/remotes/origin/%s", "refs/tags/%s", "%s"};

		for (size_t i = 0; i < 3 && !found; i++) {
			name = xasprintf(forms[i], ref);
			if (!strcmp(ref, "HEAD") && i < 2) {
				free(name);
				continue;
			}
			if (!git_revparse_single(&obj, g->repo, name) && !gitsrc_peel_commit(obj, out))
				found = 1;
			git_object_free(obj);
			obj = NULL;
			free(name);
		}
		if (!found && !strcmp(ref, "HEAD")) {
			/* HEAD of a bare mirror: the remote's default branch if we know it, else main/master. */
			const char *heads[] = {"refs/remotes/origin/HEAD", "refs/remotes/origin/main",
					       "refs/remotes/origin/master"};

			for (size_t i = 0; i < 3 && !found; i++) {
				if (!git_revparse_single(&obj, g->repo, heads[i]) && !gitsrc_peel_commit(obj, out))
					found = 1;
				git_object_free(obj);
				obj = NULL;
			}
		}
	} else if (!git_revparse_single(&obj, g->repo, ref) && !gitsrc_peel_commit(obj, out)) {
		found = 1;
	}
	git_object_free(obj);
	git_error_clear();
	if (!found)
		return cs_error(CS_ENOTFOUND, "git: %s: no branch, tag or commit \"%s\"", g->display, ref);
	return 0;
}

int gitsrc_merge_base(struct gitsrc *g, const char *a, const char *b, char out[41])
{
	git_oid oa, ob, base;

	if (git_oid_fromstr(&oa, a) || git_oid_fromstr(&ob, b) || git_merge_base(&base, g->repo, &oa, &ob))
		return cs_error(CS_ENOTFOUND, "git: %s: no merge base of %.12s and %.12s: %s", g->display, a, b,
				gitsrc_errmsg(g));
	git_oid_tostr(out, 41, &base);
	return 0;
}

/* The tree of commit, or of its subdirectory dir. */
static int gitsrc_tree(struct gitsrc *g, const char *commit, const char *dir, git_tree **out)
{
	git_oid oid;
	git_commit *c = NULL;
	git_tree *root = NULL;
	git_tree_entry *e = NULL;
	int rc = 0;

	*out = NULL;
	if (git_oid_fromstr(&oid, commit) || git_commit_lookup(&c, g->repo, &oid) || git_commit_tree(&root, c)) {
		rc = cs_error(CS_ENOTFOUND, "git: %s: commit %.12s: %s", g->display, commit, gitsrc_errmsg(g));
		goto out;
	}
	if (!dir || !*dir || !strcmp(dir, ".")) {
		*out = root;
		root = NULL;
		goto out;
	}
	if (git_tree_entry_bypath(&e, root, dir) || git_tree_entry_type(e) != GIT_OBJECT_TREE ||
	    git_tree_lookup(out, g->repo, git_tree_entry_id(e))) {
		git_error_clear();
		rc = cs_error(CS_ENOTFOUND, "git: %s: no directory \"%s\" at commit %.12s", g->display, dir, commit);
	}
out:
	git_tree_entry_free(e);
	git_tree_free(root);
	git_commit_free(c);
	return rc;
}

struct walk {
	struct gitsrc *g;
	const char *prefix;
	struct gitsrc_file *v;
	size_t n, cap;
	git_odb *odb;
	int too_many;
};

static int gitsrc_walk_cb(const char *root, const git_tree_entry *e, void *payload)
{
	struct walk *w = payload;
	const char *name = git_tree_entry_name(e);
	git_filemode_t mode = git_tree_entry_filemode(e);
	size_t size = 0;
	git_object_t type;
	struct gitsrc_file *f;

	if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE)
		return 0;
	if (!util_has_suffix(name, ".yaml") && !util_has_suffix(name, ".yml"))
		return 0;
	if (w->n >= GITSRC_MAX_FILES) {
		w->too_many = 1;
		return -1;
	}
	git_odb_read_header(&size, &type, w->odb, git_tree_entry_id(e));
	util_grow(&w->v, &w->cap, w->n + 1, sizeof(*w->v));
	f = &w->v[w->n++];
	f->path = xasprintf("%s%s%s%s", w->prefix, *w->prefix ? "/" : "", root, name);
	git_oid_tostr(f->oid, sizeof(f->oid), git_tree_entry_id(e));
	f->size = size;
	return 0;
}

static int file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gitsrc_file *)a)->path, ((const struct gitsrc_file *)b)->path);
}

int gitsrc_list(struct gitsrc *g, const char *commit, const char *dir, struct gitsrc_file **out, size_t *n)
{
	struct walk w;
	git_tree *t = NULL;
	char *prefix = NULL;
	int rc;

	memset(&w, 0, sizeof(w));
	if ((rc = gitsrc_tree(g, commit, dir, &t)))
		return rc;
	prefix = xstrdup(dir && strcmp(dir, ".") ? dir : "");
	while (*prefix && prefix[strlen(prefix) - 1] == '/')
		prefix[strlen(prefix) - 1] = '\0';
	w.g = g;
	w.prefix = prefix;
	if (git_repository_odb(&w.odb, g->repo)) {
		rc = cs_error(CS_ERROR, "git: %s: %s", g->display, gitsrc_errmsg(g));
		goto out;
	}
	git_tree_walk(t, GIT_TREEWALK_PRE, gitsrc_walk_cb, &w);
	if (w.too_many) {
		rc = cs_error(CS_EINVALID, "git: %s: more than %d manifest files under \"%s\"", g->display,
			      GITSRC_MAX_FILES, dir);
		goto out;
	}
	if (w.n)
		qsort(w.v, w.n, sizeof(*w.v), file_cmp);
	*out = w.v;
	*n = w.n;
	w.v = NULL;
	w.n = 0;
out:
	gitsrc_files_free(w.v, w.n);
	git_odb_free(w.odb);
	git_tree_free(t);
	free(prefix);
	return rc;
}

void gitsrc_files_free(struct gitsrc_file *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

int gitsrc_read_blob(struct gitsrc *g, const char *oid, const char *path, size_t max, struct buf *out)
{
	git_oid id;
	git_blob *b = NULL;
	git_object_size_t size;
	int rc = 0;

	if (git_oid_fromstr(&id, oid) || git_blob_lookup(&b, g->repo, &id))
		return cs_error(CS_ENOTFOUND, "git: %s: %s: blob %.12s: %s", g->display, path, oid, gitsrc_errmsg(g));
	size = git_blob_rawsize(b);
	if (max && size > max) {
		rc = cs_error(CS_EINVALID, "%s: file is %llu bytes; the limit is %zu", path, (unsigned long long)size,
			      max);
		goto out;
	}
	buf_init(out, 0);
	buf_append(out, git_blob_rawcontent(b), (size_t)size);
out:
	git_blob_free(b);
	return rc;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int gitsrc_changed(struct gitsrc *g, const char *from, const char *to, const char *dir, char ***paths, size_t *n)
{
	git_tree *a = NULL, *b = NULL;
	git_diff *diff = NULL;
	git_diff_options o;
	char *spec = xstrdup(dir && *dir && strcmp(dir, ".") ? dir : "");
	char **v = NULL;
	size_t cnt = 0, cap = 0, k = 0;
	int rc;

	if ((rc = gitsrc_tree(g, from, NULL, &a)) || (rc = gitsrc_tree(g, to, NULL, &b)))
		goto out;
	git_diff_options_init(&o, GIT_DIFF_OPTIONS_VERSION);
	if (*spec) {
		o.pathspec.strings = &spec;
		o.pathspec.count = 1;
	}
	if (git_diff_tree_to_tree(&diff, g->repo, a, b, &o)) {
		rc = cs_error(CS_ERROR, "git: %s: diff: %s", g->display, gitsrc_errmsg(g));
		goto out;
	}
	for (size_t i = 0; i < git_diff_num_deltas(diff); i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);

		util_grow(&v, &cap, cnt + 2, sizeof(*v));
		if (d->old_file.path)
			v[cnt++] = xstrdup(d->old_file.path);
		if (d->new_file.path && (!d->old_file.path || strcmp(d->old_file.path, d->new_file.path)))
			v[cnt++] = xstrdup(d->new_file.path);
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), str_cmp);
	for (size_t i = 0; i < cnt; i++) {
		if (k && !strcmp(v[k - 1], v[i]))
			free(v[i]);
		else
			v[k++] = v[i];
	}
	*paths = v;
	*n = k;
	v = NULL;
out:
	free(v);
	git_diff_free(diff);
	git_tree_free(a);
	git_tree_free(b);
	free(spec);
	return rc;
}

void gitsrc_paths_free(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}
