/* The git source's reads: refs to commits, commit trees and blobs (never a working tree), diffs, signatures. */
#include "gitsrc_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/util.h"

/* One revision spec as a commit id: 0, GIT_ENOTFOUND, GIT_EAMBIGUOUS, or another libgit2 error. */
static int gitsrc_revparse_commit(git_repository *repo, const char *spec, git_oid *out)
{
	git_object *obj = NULL, *commit = NULL;
	int err;

	if (!(err = git_revparse_single(&obj, repo, spec)) && !(err = git_object_peel(&commit, obj, GIT_OBJECT_COMMIT)))
		git_oid_cpy(out, git_object_id(commit));
	git_object_free(commit);
	git_object_free(obj);
	return err;
}

/*
 * The specs tried for ref in a remote clone, in order: the fetched branch,
 * a tag, then ref as is (ids, expressions). NULL past the last one.
 */
static char *gitsrc_remote_spec(const char *ref, size_t i)
{
	static const char *const forms[] = {"refs/remotes/origin/%s", "refs/tags/%s", "%s"};
	/* A bare clone has no HEAD of its own: the remote's (recorded at fetch), then the usual defaults. */
	static const char *const heads[] = {"refs/remotes/origin/HEAD", "refs/remotes/origin/main",
					    "refs/remotes/origin/master"};

	if (!strcmp(ref, "HEAD"))
		return i < 3 ? xstrdup(heads[i]) : NULL;
	if (!strncmp(ref, "refs/heads/", 11))
		return i == 0 ? xasprintf("refs/remotes/origin/%s", ref + 11) : NULL;
	return i < 3 ? xasprintf(forms[i], ref) : NULL;
}

/* Resolves ref to a commit id. CS_ENOTFOUND (or CS_EINVALID when ambiguous) naming the ref. */
static int gitsrc_lookup(struct gitsrc *g, const char *ref, git_oid *out)
{
	char *spec;
	int err = GIT_ENOTFOUND, ambiguous = 0;

	if (!g->remote) {
		err = gitsrc_revparse_commit(g->repo, ref, out);
		ambiguous = err == GIT_EAMBIGUOUS;
	} else {
		for (size_t i = 0; err && (spec = gitsrc_remote_spec(ref, i)); i++) {
			err = gitsrc_revparse_commit(g->repo, spec, out);
			ambiguous |= err == GIT_EAMBIGUOUS;
			free(spec);
		}
	}
	git_error_clear();
	if (!err)
		return 0;
	if (ambiguous)
		return cs_error(CS_EINVALID, "git: %s: \"%s\" is ambiguous (give more of the commit id)", g->display,
				ref);
	return cs_error(CS_ENOTFOUND, "git: %s: no branch, tag or commit \"%s\"", g->display, ref);
}

int gitsrc_commit_id(struct gitsrc *g, const char *s, git_oid *out)
{
	if (strlen(s) == GIT_OID_HEXSZ && !git_oid_fromstr(out, s))
		return 0;
	git_error_clear();
	return gitsrc_lookup(g, s, out);
}

int gitsrc_resolve(struct gitsrc *g, const char *ref, char out[41])
{
	git_oid id;
	int rc;

	if ((rc = gitsrc_lookup(g, ref && *ref ? ref : "HEAD", &id)))
		return rc;
	git_oid_tostr(out, GIT_OID_HEXSZ + 1, &id);
	return 0;
}

int gitsrc_merge_base(struct gitsrc *g, const char *a, const char *b, char out[41])
{
	git_oid oa, ob, base;
	int rc, err;

	a = a && *a ? a : "HEAD";
	b = b && *b ? b : "HEAD";
	if ((rc = gitsrc_commit_id(g, a, &oa)) || (rc = gitsrc_commit_id(g, b, &ob)))
		return rc;
	if ((err = git_merge_base(&base, g->repo, &oa, &ob)))
		return cs_error(err == GIT_ENOTFOUND ? CS_ENOTFOUND : CS_ERROR,
				"git: %s: no merge base of %.12s and %.12s: %s", g->display, a, b, gitsrc_errmsg(g));
	git_oid_tostr(out, GIT_OID_HEXSZ + 1, &base);
	return 0;
}

/* dir without leading "./" or "/" and trailing "/": "" for the whole tree. Caller frees. */
static char *gitsrc_normdir(const char *dir)
{
	const char *p = dir ? dir : "";
	size_t len;

	for (;;) {
		if (*p == '/')
			p++;
		else if (p[0] == '.' && (p[1] == '/' || p[1] == '\0'))
			p++;
		else
			break;
	}
	len = strlen(p);
	while (len && p[len - 1] == '/')
		len--;
	return xstrndup(p, len);
}

/* The tree of commit, or of its subdirectory dir (normalised; "" = the root). */
static int gitsrc_tree(struct gitsrc *g, const char *commit, const char *dir, git_tree **out)
{
	git_oid oid;
	git_commit *c = NULL;
	git_tree *root = NULL;
	git_tree_entry *e = NULL;
	int rc;

	if (!commit || !*commit)
		commit = "HEAD";
	if ((rc = gitsrc_commit_id(g, commit, &oid)))
		goto out;
	if (git_commit_lookup(&c, g->repo, &oid) || git_commit_tree(&root, c)) {
		rc = cs_error(CS_ENOTFOUND, "git: %s: commit %s: %s", g->display, commit, gitsrc_errmsg(g));
		goto out;
	}
	if (!*dir) {
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

static size_t gitsrc_sizes_slot(const struct gitsrc_sizes *t, const git_oid *id)
{
	uint64_t h;
	size_t i;

	memcpy(&h, id->id, sizeof(h)); /* object ids are already uniformly distributed */
	for (i = (size_t)h & (t->cap - 1); !git_oid_is_zero(&t->v[i].oid) && !git_oid_equal(&t->v[i].oid, id);
	     i = (i + 1) & (t->cap - 1))
		;
	return i;
}

static int gitsrc_sizes_get(const struct gitsrc_sizes *t, const git_oid *id, size_t *size)
{
	size_t i;

	if (!t->cap)
		return 0;
	i = gitsrc_sizes_slot(t, id);
	if (git_oid_is_zero(&t->v[i].oid))
		return 0;
	*size = t->v[i].size;
	return 1;
}

static void gitsrc_sizes_put(struct gitsrc_sizes *t, const git_oid *id, size_t size)
{
	size_t i;

	if ((t->n + 1) * 2 > t->cap) {
		struct gitsrc_sizes bigger = {NULL, t->cap ? t->cap * 2 : 1024, 0};

		bigger.v = xcalloc(bigger.cap, sizeof(*bigger.v));
		for (i = 0; i < t->cap; i++)
			if (!git_oid_is_zero(&t->v[i].oid))
				gitsrc_sizes_put(&bigger, &t->v[i].oid, t->v[i].size);
		free(t->v);
		*t = bigger;
	}
	i = gitsrc_sizes_slot(t, id);
	if (git_oid_is_zero(&t->v[i].oid))
		t->n++;
	git_oid_cpy(&t->v[i].oid, id);
	t->v[i].size = size;
}

/* A manifest: a regular file (not a symlink, 120000, nor a submodule, 160000) named *.yaml or *.yml. */
static int gitsrc_is_manifest(const char *name, git_filemode_t mode)
{
	return (mode == GIT_FILEMODE_BLOB || mode == GIT_FILEMODE_BLOB_EXECUTABLE) &&
	       (util_has_suffix(name, ".yaml") || util_has_suffix(name, ".yml"));
}

struct gitsrc_walk {
	struct gitsrc *g;
	struct gitsrc_sizes sizes; /* this listing's: replaces g->sizes when it succeeds */
	git_odb *odb;
	const char *prefix; /* "dir/" or "" */
	int lazy;	    /* sizes not read from the object database (GITSRC_SIZE_UNKNOWN) */
	struct gitsrc_file *v;
	size_t n, cap;
	int rc; /* set (with its message) when the callback stops the walk */
};

static int gitsrc_walk_cb(const char *root, const git_tree_entry *e, void *payload)
{
	struct gitsrc_walk *w = payload;
	const char *name = git_tree_entry_name(e);
	git_filemode_t mode = git_tree_entry_filemode(e);
	const git_oid *id = git_tree_entry_id(e);
	git_object_t type;
	size_t size = 0;
	struct gitsrc_file *f;

	if (!gitsrc_is_manifest(name, mode))
		return 0;
	if (w->n >= GITSRC_MAX_FILES) {
		w->rc = cs_error(CS_EINVALID, "git: %s: more than %d manifest files under \"%s\"", w->g->display,
				 GITSRC_MAX_FILES, *w->prefix ? w->prefix : ".");
		return -1;
	}
	/*
	 * The header gives the size without inflating the blob, but in a pack
	 * it walks the delta chain to the base: about 3 us a blob. Sizes seen
	 * by the previous listing are reused, so a re-listing costs nothing.
	 */
	if (gitsrc_sizes_get(&w->g->sizes, id, &size)) {
		gitsrc_sizes_put(&w->sizes, id, size);
	} else if (w->lazy) {
		size = GITSRC_SIZE_UNKNOWN;
	} else if (git_odb_read_header(&size, &type, w->odb, id)) {
		w->rc = cs_error(CS_ERROR, "git: %s: %s%s%s: %s", w->g->display, w->prefix, root, name,
				 gitsrc_errmsg(w->g));
		return -1;
	} else {
		gitsrc_sizes_put(&w->sizes, id, size);
	}
	util_grow(&w->v, &w->cap, w->n + 1, sizeof(*w->v));
	f = &w->v[w->n++];
	f->path = xasprintf("%s%s%s", w->prefix, root, name);
	git_oid_tostr(f->oid, sizeof(f->oid), id);
	f->size = size;
	return 0;
}

static int gitsrc_file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gitsrc_file *)a)->path, ((const struct gitsrc_file *)b)->path);
}

static int gitsrc_list_at(struct gitsrc *g, const char *commit, const char *dir, int lazy, struct gitsrc_file **out,
			  size_t *n)
{
	struct gitsrc_walk w;
	git_tree *t = NULL;
	char *norm = gitsrc_normdir(dir), *prefix = NULL;
	int rc;

	memset(&w, 0, sizeof(w));
	w.lazy = lazy;
	if ((rc = gitsrc_tree(g, commit, norm, &t)))
		goto out;
	prefix = *norm ? xasprintf("%s/", norm) : xstrdup("");
	w.g = g;
	w.prefix = prefix;
	if (git_repository_odb(&w.odb, g->repo)) {
		rc = cs_error(CS_ERROR, "git: %s: %s", g->display, gitsrc_errmsg(g));
		goto out;
	}
	if (git_tree_walk(t, GIT_TREEWALK_PRE, gitsrc_walk_cb, &w)) {
		rc = w.rc ? w.rc
			  : cs_error(CS_ERROR, "git: %s: reading %s: %s", g->display, *norm ? norm : ".",
				     gitsrc_errmsg(g));
		goto out;
	}
	if (w.n)
		qsort(w.v, w.n, sizeof(*w.v), gitsrc_file_cmp);
	free(g->sizes.v);
	g->sizes = w.sizes;
	memset(&w.sizes, 0, sizeof(w.sizes));
	*out = w.v;
	*n = w.n;
	w.v = NULL;
	w.n = 0;
out:
	gitsrc_files_free(w.v, w.n);
	free(w.sizes.v);
	git_odb_free(w.odb);
	git_tree_free(t);
	free(prefix);
	free(norm);
	return rc;
}

int gitsrc_list(struct gitsrc *g, const char *commit, const char *dir, struct gitsrc_file **out, size_t *n)
{
	return gitsrc_list_at(g, commit, dir, 0, out, n);
}

int gitsrc_list_lazy(struct gitsrc *g, const char *commit, const char *dir, struct gitsrc_file **out, size_t *n)
{
	return gitsrc_list_at(g, commit, dir, 1, out, n);
}

void gitsrc_files_free(struct gitsrc_file *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].path);
	free(v);
}

/* A blob's size from the last listing or from its header, without inflating it. GIT_ENOTFOUND if no such blob. */
static int gitsrc_blob_size(struct gitsrc *g, const git_oid *id, size_t *size)
{
	git_odb *odb = NULL;
	git_object_t type = GIT_OBJECT_INVALID;
	int err;

	if (gitsrc_sizes_get(&g->sizes, id, size))
		return 0;
	if (!(err = git_repository_odb(&odb, g->repo)) && !(err = git_odb_read_header(size, &type, odb, id)) &&
	    type != GIT_OBJECT_BLOB)
		err = GIT_ENOTFOUND;
	git_odb_free(odb);
	return err;
}

int gitsrc_blob_size_of(struct gitsrc *g, const char *oid, size_t *size)
{
	git_oid id;
	int err = strlen(oid) != GIT_OID_HEXSZ || git_oid_fromstr(&id, oid) || gitsrc_blob_size(g, &id, size);

	git_error_clear();
	return err ? cs_error(CS_ENOTFOUND, "git: %s: no blob %s", g->display, oid) : 0;
}

int gitsrc_read_blob(struct gitsrc *g, const char *oid, const char *path, size_t max, struct buf *out)
{
	git_oid id;
	git_blob *b = NULL;
	size_t size = 0;
	int rc = 0;

	if (!oid || strlen(oid) != GIT_OID_HEXSZ || git_oid_fromstr(&id, oid) || gitsrc_blob_size(g, &id, &size)) {
		rc = cs_error(CS_ENOTFOUND, "git: %s: %s: no blob %s", g->display, path, oid ? oid : "(null)");
		goto out;
	}
	/* Checked before the blob is inflated: an oversized file never reaches memory. */
	if (max && size > max) {
		rc = cs_error(CS_EINVALID, "%s: file is %zu bytes; the limit is %zu", path, size, max);
		goto out;
	}
	if (git_blob_lookup(&b, g->repo, &id)) {
		rc = cs_error(CS_ERROR, "git: %s: %s: reading blob %s: %s", g->display, path, oid, gitsrc_errmsg(g));
		goto out;
	}
	buf_init(out, max);
	buf_append(out, git_blob_rawcontent(b), (size_t)git_blob_rawsize(b));
out:
	git_error_clear();
	git_blob_free(b);
	return rc;
}

static int gitsrc_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts v and drops duplicates in place; returns the new count. */
static size_t gitsrc_sort_unique(char **v, size_t n)
{
	size_t k = 0;

	if (n)
		qsort(v, n, sizeof(*v), gitsrc_str_cmp);
	for (size_t i = 0; i < n; i++) {
		if (k && !strcmp(v[k - 1], v[i]))
			free(v[i]);
		else
			v[k++] = v[i];
	}
	return k;
}

/* The tree diff of two commits under dir (a literal path prefix), without rename detection. */
static int gitsrc_diff(struct gitsrc *g, const char *from, const char *to, const char *dir, git_diff **out)
{
	git_tree *a = NULL, *b = NULL;
	git_diff_options o;
	char *spec = gitsrc_normdir(dir);
	int rc;

	from = from && *from ? from : "HEAD";
	to = to && *to ? to : "HEAD";
	if ((rc = gitsrc_tree(g, from, "", &a)) || (rc = gitsrc_tree(g, to, "", &b)))
		goto out;
	git_diff_options_init(&o, GIT_DIFF_OPTIONS_VERSION);
	/* dir is a literal path prefix ("certs" matches certs/a.yaml, not certs2/): no globbing. */
	o.flags |= GIT_DIFF_DISABLE_PATHSPEC_MATCH | GIT_DIFF_SKIP_BINARY_CHECK;
	if (*spec) {
		o.pathspec.strings = &spec;
		o.pathspec.count = 1;
	}
	/*
	 * Without rename detection a rename is a delete plus an add: both sides
	 * are listed either way. Subtrees with the same id on both sides are
	 * not opened: the cost follows the change, not the tree.
	 */
	if (git_diff_tree_to_tree(out, g->repo, a, b, &o))
		rc = cs_error(CS_ERROR, "git: %s: diff %.12s..%.12s: %s", g->display, from, to, gitsrc_errmsg(g));
out:
	git_tree_free(a);
	git_tree_free(b);
	free(spec);
	return rc;
}

int gitsrc_changed(struct gitsrc *g, const char *from, const char *to, const char *dir, char ***paths, size_t *n)
{
	git_diff *diff = NULL;
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	if ((rc = gitsrc_diff(g, from, to, dir, &diff)))
		goto out;
	for (size_t i = 0; i < git_diff_num_deltas(diff); i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);

		util_grow(&v, &cap, cnt + 2, sizeof(*v));
		if (d->old_file.path)
			v[cnt++] = xstrdup(d->old_file.path);
		if (d->new_file.path && (!d->old_file.path || strcmp(d->old_file.path, d->new_file.path)))
			v[cnt++] = xstrdup(d->new_file.path);
	}
	*n = gitsrc_sort_unique(v, cnt);
	*paths = v;
	v = NULL;
	cnt = 0;
out:
	gitsrc_paths_free(v, cnt);
	git_diff_free(diff);
	return rc;
}

/*
 * A diff of two trees that follows the change: entries with the same id on
 * both sides are skipped without being opened (libgit2's tree-to-tree diff
 * walks every blob of both trees: 5-8 ms for 10,000 files where this is a
 * few subtrees). Manifests only; a file on both sides is one delta.
 */
#define GITSRC_TDIFF_DEPTH 256

struct gitsrc_tdiff {
	struct gitsrc *g;
	struct gitsrc_delta *v;
	size_t n, cap;
	int rc; /* set (with its message) when a tree cannot be read */
};

static int gitsrc_entry_is_tree(const git_tree_entry *e)
{
	return e && git_tree_entry_type(e) == GIT_OBJECT_TREE;
}

/* The delta for a file present on either side (a NULL entry: absent), if a side is a manifest. */
static void gitsrc_tdiff_file(struct gitsrc_tdiff *t, const char *path, const git_tree_entry *a,
			      const git_tree_entry *b)
{
	struct gitsrc_delta x;

	memset(&x, 0, sizeof(x));
	if (a && gitsrc_is_manifest(path, git_tree_entry_filemode(a))) {
		x.old_path = xstrdup(path);
		git_oid_tostr(x.old_oid, sizeof(x.old_oid), git_tree_entry_id(a));
	}
	if (b && gitsrc_is_manifest(path, git_tree_entry_filemode(b))) {
		x.new_path = xstrdup(path);
		git_oid_tostr(x.new_oid, sizeof(x.new_oid), git_tree_entry_id(b));
	}
	/* Neither side a manifest, or only the mode changed (644 <-> 755): nothing changed for us. */
	if ((!x.old_path && !x.new_path) || (x.old_path && x.new_path && !strcmp(x.old_oid, x.new_oid))) {
		free(x.old_path);
		free(x.new_path);
		return;
	}
	util_grow(&t->v, &t->cap, t->n + 1, sizeof(*t->v));
	t->v[t->n++] = x;
}

static void gitsrc_tdiff_trees(struct gitsrc_tdiff *t, const char *prefix, const git_tree *a, const git_tree *b,
			       int depth);

/* The subtrees named path on each side (a NULL entry: none on that side), opened and compared. */
static void gitsrc_tdiff_subtree(struct gitsrc_tdiff *t, const char *path, const git_tree_entry *a,
				 const git_tree_entry *b, int depth)
{
	git_tree *ta = NULL, *tb = NULL;

	if ((a && git_tree_lookup(&ta, t->g->repo, git_tree_entry_id(a))) ||
	    (b && git_tree_lookup(&tb, t->g->repo, git_tree_entry_id(b)))) {
		t->rc = cs_error(CS_ERROR, "git: %s: reading %s: %s", t->g->display, path, gitsrc_errmsg(t->g));
	} else {
		char *sub = xasprintf("%s/", path);

		gitsrc_tdiff_trees(t, sub, ta, tb, depth + 1);
		free(sub);
	}
	git_tree_free(ta);
	git_tree_free(tb);
}

/* One name's entries on each side (NULL: absent on that side). */
static void gitsrc_tdiff_entry(struct gitsrc_tdiff *t, const char *prefix, const git_tree_entry *a,
			       const git_tree_entry *b, int depth)
{
	char *path;

	/* the same subtree or file (and mode): nothing changed there */
	if (a && b && git_oid_equal(git_tree_entry_id(a), git_tree_entry_id(b)) &&
	    git_tree_entry_filemode(a) == git_tree_entry_filemode(b))
		return;
	path = xasprintf("%s%s", prefix, git_tree_entry_name(a ? a : b));
	/* Paired in git's order, a tree never meets a file of the same name: that is two entries. */
	if (gitsrc_entry_is_tree(a) || gitsrc_entry_is_tree(b))
		gitsrc_tdiff_subtree(t, path, a, b, depth);
	else
		gitsrc_tdiff_file(t, path, a, b);
	free(path);
}

/* Both trees' entries in git's order, paired by name (either tree may be NULL: all added or all removed). */
static void gitsrc_tdiff_trees(struct gitsrc_tdiff *t, const char *prefix, const git_tree *a, const git_tree *b,
			       int depth)
{
	size_t na = a ? git_tree_entrycount(a) : 0, nb = b ? git_tree_entrycount(b) : 0, i = 0, j = 0;

	if (depth > GITSRC_TDIFF_DEPTH) {
		t->rc = cs_error(CS_EINVALID, "git: %s: %s: trees nested more than %d deep", t->g->display, prefix,
				 GITSRC_TDIFF_DEPTH);
		return;
	}
	while ((i < na || j < nb) && !t->rc) {
		const git_tree_entry *ea = i < na ? git_tree_entry_byindex(a, i) : NULL;
		const git_tree_entry *eb = j < nb ? git_tree_entry_byindex(b, j) : NULL;
		/* git's order (a tree's name compares as if it ended in '/'), which both trees are sorted by */
		int c = !ea ? 1 : !eb ? -1 : git_tree_entry_cmp(ea, eb);

		/* the same entry on both sides, or the side that comes first alone */
		gitsrc_tdiff_entry(t, prefix, c <= 0 ? ea : NULL, c >= 0 ? eb : NULL, depth);
		i += c <= 0;
		j += c >= 0;
	}
}

int gitsrc_diff_manifests(struct gitsrc *g, const char *from, const char *to, const char *dir,
			  struct gitsrc_delta **out, size_t *n)
{
	struct gitsrc_tdiff t;
	git_tree *a = NULL, *b = NULL;
	char *norm = gitsrc_normdir(dir), *prefix = *norm ? xasprintf("%s/", norm) : xstrdup("");

	memset(&t, 0, sizeof(t));
	t.g = g;
	*out = NULL;
	*n = 0;
	if (!(t.rc = gitsrc_tree(g, from, norm, &a)) && !(t.rc = gitsrc_tree(g, to, norm, &b)) &&
	    !git_oid_equal(git_tree_id(a), git_tree_id(b)))
		gitsrc_tdiff_trees(&t, prefix, a, b, 0);
	if (!t.rc) {
		*out = t.v;
		*n = t.n;
		t.v = NULL;
		t.n = 0;
	}
	gitsrc_deltas_free(t.v, t.n);
	git_tree_free(a);
	git_tree_free(b);
	free(prefix);
	free(norm);
	return t.rc;
}

void gitsrc_deltas_free(struct gitsrc_delta *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].old_path);
		free(v[i].new_path);
	}
	free(v);
}

void gitsrc_paths_free(char **paths, size_t n)
{
	for (size_t i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
}

int gitsrc_commit_signature(struct gitsrc *g, const char *commit, struct buf *sig, struct buf *data)
{
	git_buf s, d;
	git_oid id;
	int rc, err;

	memset(&s, 0, sizeof(s));
	memset(&d, 0, sizeof(d));
	if ((rc = gitsrc_commit_id(g, commit && *commit ? commit : "HEAD", &id)))
		return rc;
	err = git_commit_extract_signature(&s, &d, g->repo, &id, NULL);
	if (err == GIT_ENOTFOUND) {
		git_error_clear();
		rc = CS_ENOTFOUND;
	} else if (err) {
		rc = cs_error(CS_ERROR, "git: %s: reading the signature of %.12s: %s", g->display, commit,
			      gitsrc_errmsg(g));
	} else {
		buf_init(sig, 0);
		buf_append(sig, s.ptr, s.size);
		buf_init(data, 0);
		buf_append(data, d.ptr, d.size);
	}
	git_buf_dispose(&s);
	git_buf_dispose(&d);
	return rc;
}
