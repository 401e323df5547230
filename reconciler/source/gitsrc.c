/* The git source: the only file that includes libgit2. Reads commit trees and blobs, never a working tree. */
#include "gitsrc.h"
#include "../../util/libversion.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <git2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"

/* libgit2 asks for credentials again after every refusal, forever: stop after this many. */
#define GITSRC_AUTH_ATTEMPTS 3
#define GITSRC_STR_(x) #x
#define GITSRC_STR(x) GITSRC_STR_(x)

struct gitsrc_size {
	git_oid oid; /* all zero: an empty slot (no blob has the null id) */
	size_t size;
};

/* Blob sizes by id, kept from one listing to the next (blobs never change): open addressing. */
struct gitsrc_sizes {
	struct gitsrc_size *v;
	size_t cap; /* 0 or a power of two */
	size_t n;
};

struct gitsrc {
	git_repository *repo;
	struct gitsrc_sizes sizes; /* of the blobs in the last listing */
	char *display;		   /* URL without credentials, or the local path */
	char *url;		   /* the URL as configured (may hold credentials); NULL for a local repository */
	char *host;		   /* host[:port] of url: the token is offered to no other host */
	char *url_secret;	   /* password (or token-as-user-name) found in url, masked in messages */
	char *token;		   /* https token; never logged, wiped on free */
	int remote;
	int http; /* url is http:// or https:// (the only schemes a token is sent over) */
	int auth_attempts;
	int auth_refused;
};

/* A mutex rather than pthread_once, so that a process may open sources again after gitsrc_global_shutdown(). */
static pthread_mutex_t gitsrc_init_lock = PTHREAD_MUTEX_INITIALIZER;
static int gitsrc_initialised;

static int gitsrc_global_init(void)
{
	int rc = 0;

	pthread_mutex_lock(&gitsrc_init_lock);
	if (!gitsrc_initialised) {
		if (git_libgit2_init() < 0)
			rc = cs_error(CS_ERROR, "git: initialising libgit2 failed");
		else
			gitsrc_initialised = 1;
	}
	pthread_mutex_unlock(&gitsrc_init_lock);
	return rc;
}

void gitsrc_global_shutdown(void)
{
	pthread_mutex_lock(&gitsrc_init_lock);
	if (gitsrc_initialised)
		git_libgit2_shutdown();
	gitsrc_initialised = 0;
	pthread_mutex_unlock(&gitsrc_init_lock);
}

/* Replaces every occurrence of what in b with with (one left-to-right pass). */
static void gitsrc_mask(struct buf *b, const char *what, const char *with)
{
	struct buf out = BUF_INIT;
	const char *p, *hit;
	size_t wl;

	if (!what || !*what || !b->data || !strstr(b->data, what))
		return;
	wl = strlen(what);
	for (p = b->data; (hit = strstr(p, what)); p = hit + wl) {
		buf_append(&out, p, (size_t)(hit - p));
		buf_puts(&out, with);
	}
	buf_puts(&out, p);
	buf_wipe(b);
	*b = out;
}

/* libgit2's last error message: the URL shown without credentials, the token and URL password masked. */
static const char *gitsrc_errmsg(const struct gitsrc *g)
{
	static _Thread_local char msg[1024];
	const git_error *e = git_error_last();
	struct buf b = BUF_INIT;

	buf_puts(&b, e && e->message ? e->message : "unknown libgit2 error");
	if (g) {
		if (g->url && g->display && strcmp(g->url, g->display))
			gitsrc_mask(&b, g->url, g->display);
		gitsrc_mask(&b, g->token, "***");
		gitsrc_mask(&b, g->url_secret, "***");
	}
	snprintf(msg, sizeof(msg), "%s", b.data);
	buf_wipe(&b);
	return msg;
}

static const char *const gitsrc_schemes[] = {"file://", "git://", "http://", "https://"};

/* 1 if s looks like a URL ("scheme://..."), whether or not we support the scheme. */
static int gitsrc_is_url(const char *s)
{
	const char *sep = strstr(s, "://");

	if (!sep || sep == s)
		return 0;
	for (const char *p = s; p < sep; p++)
		if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
			return 0;
	return 1;
}

static int gitsrc_scheme_supported(const char *url)
{
	for (size_t i = 0; i < sizeof(gitsrc_schemes) / sizeof(gitsrc_schemes[0]); i++)
		if (!strncasecmp(url, gitsrc_schemes[i], strlen(gitsrc_schemes[i])))
			return 1;
	return 0;
}

/* The user info of a URL's authority ends at the last '@' before the path. NULL if there is none. */
static const char *gitsrc_userinfo_end(const char *authority)
{
	size_t len = strcspn(authority, "/?#");

	for (const char *p = authority + len; p > authority; p--)
		if (p[-1] == '@')
			return p - 1;
	return NULL;
}

/* The host[:port] of a URL without user info, lower-cased. Caller frees. */
static char *gitsrc_url_host(const char *url)
{
	const char *a = strstr(url, "://"), *at;
	char *host;

	if (!a)
		return xstrdup("");
	a += 3;
	at = gitsrc_userinfo_end(a);
	if (at)
		a = at + 1;
	host = xstrndup(a, strcspn(a, "/?#"));
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return host;
}

/* Splits a URL into the displayed form (user info removed), its host and the secret in its user info. */
static void gitsrc_parse_url(struct gitsrc *g, const char *url)
{
	const char *a = strstr(url, "://") + 3, *at = gitsrc_userinfo_end(a), *colon;

	g->url = xstrdup(url);
	g->host = gitsrc_url_host(url);
	g->http = !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
	if (!at) {
		g->display = xstrdup(url);
		return;
	}
	/* "user:password@" hides the password; a lone "token@" (GitHub style) is itself the secret. */
	colon = memchr(a, ':', (size_t)(at - a));
	if (colon)
		g->url_secret = xstrndup(colon + 1, (size_t)(at - (colon + 1)));
	else
		g->url_secret = xstrndup(a, (size_t)(at - a));
	g->display = xasprintf("%.*s%s", (int)(a - url), url, at + 1);
}

static int gitsrc_cred_cb(git_credential **out, const char *url, const char *user, unsigned int allowed, void *payload)
{
	struct gitsrc *g = payload;
	char *host = NULL;
	int same_host;

	(void)user;
	if (!g->token || !*g->token || !g->http || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT))
		return GIT_PASSTHROUGH;
	/* A redirect to another host never gets the token. */
	host = gitsrc_url_host(url ? url : "");
	same_host = !strcmp(host, g->host);
	free(host);
	if (!same_host)
		return GIT_PASSTHROUGH;
	if (++g->auth_attempts > GITSRC_AUTH_ATTEMPTS) {
		g->auth_refused = 1;
		git_error_set_str(GIT_ERROR_NET,
				  "the server refused the token " GITSRC_STR(GITSRC_AUTH_ATTEMPTS) " times");
		return GIT_EAUTH;
	}
	/* GitHub and GitLab accept any user name with a token as the password. */
	return git_credential_userpass_plaintext_new(out, "x-access-token", g->token);
}

/* Cache directory for a URL: <host-path, sanitised>-<first 12 hex of sha256(url without credentials)>.git */
static char *gitsrc_cache_path(const char *cache_dir, const char *display)
{
	char hash[65], name[65];
	const char *p = strstr(display, "://");
	size_t k = 0, len;

	crypto_sha256_hex(display, strlen(display), hash);
	p = p ? p + 3 : display;
	while (*p == '/')
		p++;
	len = strlen(p);
	while (len && p[len - 1] == '/')
		len--;
	if (len >= 4 && !strncmp(p + len - 4, ".git", 4))
		len -= 4;
	for (size_t i = 0; i < len && k < sizeof(name) - 1; i++)
		name[k++] = isalnum((unsigned char)p[i]) || p[i] == '.' || p[i] == '-' ? p[i] : '_';
	name[k] = '\0';
	return xasprintf("%s/%s-%.12s.git", cache_dir, name, hash);
}

/* Points refs/remotes/origin/HEAD at the remote's default branch, so "HEAD" resolves like in a clone. */
static void gitsrc_set_remote_head(struct gitsrc *g, git_remote *remote)
{
	git_buf head;
	git_reference *ref = NULL;
	char *target = NULL;

	memset(&head, 0, sizeof(head));
	if (!git_remote_default_branch(&head, remote) && !strncmp(head.ptr, "refs/heads/", 11)) {
		target = xasprintf("refs/remotes/origin/%s", head.ptr + 11);
		git_reference_symbolic_create(&ref, g->repo, "refs/remotes/origin/HEAD", target, 1, NULL);
	}
	git_error_clear();
	git_reference_free(ref);
	git_buf_dispose(&head);
	free(target);
}

/* The CS_ code for a failed fetch: only network trouble is worth retrying. */
static int gitsrc_fetch_code(const struct gitsrc *g, int err)
{
	if (g->auth_refused || err == GIT_EAUTH)
		return CS_EAUTH;
	if (err == GIT_ECERTIFICATE)
		return CS_ERROR;
	return CS_ETRANSIENT;
}

int gitsrc_fetch(struct gitsrc *g)
{
	/* Mirror-like: every branch as a remote-tracking ref, every tag, moved refs forced, deleted ones pruned. */
	char heads[] = "+refs/heads/*:refs/remotes/origin/*";
	char tags[] = "+refs/tags/*:refs/tags/*";
	char *specv[] = {heads, tags};
	git_strarray specs = {specv, 2};
	git_remote *remote = NULL;
	git_remote_create_options co;
	git_fetch_options fo;
	int err, rc = 0;

	if (!g->remote)
		return 0;
	g->auth_attempts = 0;
	g->auth_refused = 0;
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	fo.callbacks.credentials = gitsrc_cred_cb;
	fo.callbacks.payload = g;
	fo.prune = GIT_FETCH_PRUNE;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE; /* the tags refspec above takes them all */
	fo.update_fetchhead = 0;
	fo.proxy_opts.type = GIT_PROXY_AUTO; /* http.proxy, then $https_proxy / $http_proxy, as git does */
	/*
	 * An anonymous remote: the URL (which may hold a password) is never
	 * written to the clone's config. url.*.insteadOf is not applied: the
	 * configured URL is the one fetched, and libgit2 1.5 leaks pcre2 match
	 * data for every config entry that scan visits (~20 KiB each, every fetch).
	 */
	git_remote_create_options_init(&co, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	co.repository = g->repo;
	co.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	if (git_remote_create_with_opts(&remote, g->url, &co)) {
		rc = cs_error(CS_EINVALID, "git: %s: %s", g->display, gitsrc_errmsg(g));
		goto out;
	}
	if ((err = git_remote_fetch(remote, &specs, &fo, "certsync: fetch"))) {
		rc = cs_error(gitsrc_fetch_code(g, err), "git: fetching %s: %s", g->display, gitsrc_errmsg(g));
		goto out;
	}
	gitsrc_set_remote_head(g, remote);
out:
	git_remote_free(remote);
	return rc;
}

/* First clone: into a temporary directory renamed into place, so a crash never leaves a half clone that opens. */
static int gitsrc_clone(struct gitsrc *g, const char *cache_dir, const char *path)
{
	char *tmp = NULL;
	int rc, renamed = 0;

	if ((rc = fsutil_mkdir_p(cache_dir, 0700)))
		goto out;
	tmp = xasprintf("%s.tmp-XXXXXX", path);
	if (!mkdtemp(tmp)) {
		rc = cs_error(CS_ERROR, "git: %s: mkdtemp: %s", tmp, strerror(errno));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	if (git_repository_init(&g->repo, tmp, 1)) {
		rc = cs_error(CS_ERROR, "git: creating a clone of %s in %s: %s", g->display, tmp, gitsrc_errmsg(g));
		goto out;
	}
	if ((rc = gitsrc_fetch(g)))
		goto out;
	git_repository_free(g->repo);
	g->repo = NULL;
	if (!rename(tmp, path))
		renamed = 1;
	else if (errno != EEXIST && errno != ENOTEMPTY) /* else another process finished first: use its clone */
		rc = cs_error(CS_ERROR, "git: %s: rename to %s: %s", tmp, path, strerror(errno));
	if (!rc)
		fsutil_fsync_dir(cache_dir);
	if (!rc && git_repository_open_bare(&g->repo, path))
		rc = cs_error(CS_ERROR, "git: opening the clone %s: %s", path, gitsrc_errmsg(g));
out:
	if (rc) {
		git_repository_free(g->repo);
		g->repo = NULL;
	}
	if (tmp && !renamed)
		fsutil_rm_rf(tmp);
	free(tmp);
	return rc;
}

static int gitsrc_open_remote(struct gitsrc *g, const struct gitsrc_opts *opts)
{
	char *path = NULL;
	int rc = 0;

	gitsrc_parse_url(g, opts->repo);
	g->remote = 1;
	g->token = xstrdup(opts->token);
	if (!gitsrc_scheme_supported(opts->repo)) {
		rc = cs_error(CS_EINVALID, "git: %s: unsupported URL scheme (use https://, http://, git:// or file://)",
			      g->display);
		goto out;
	}
	if (!opts->cache_dir || !*opts->cache_dir) {
		rc = cs_error(CS_EINVALID, "git: %s: a cache directory is needed for remote repositories", g->display);
		goto out;
	}
	/* Process-wide in libgit2, and with mbedTLS it replaces the system bundle (like git's http.sslCAInfo). */
	if (g->http && opts->ca_file && *opts->ca_file &&
	    git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, opts->ca_file, NULL)) {
		rc = cs_error(CS_EINVALID, "git: CA file %s: %s", opts->ca_file, gitsrc_errmsg(g));
		goto out;
	}
	path = gitsrc_cache_path(opts->cache_dir, g->display);
	if (fsutil_exists(path)) {
		if (!git_repository_open_bare(&g->repo, path)) {
			rc = gitsrc_fetch(g);
			goto out;
		}
		/* A cached clone that no longer opens is rebuilt rather than left broken. */
		git_error_clear();
		if ((rc = fsutil_rm_rf(path)))
			goto out;
	}
	rc = gitsrc_clone(g, opts->cache_dir, path);
out:
	free(path);
	return rc;
}

static int gitsrc_open_local(struct gitsrc *g, const char *path)
{
	int err;

	g->display = xstrdup(path);
	/* No search upwards: a path that is not itself a repository must not pick up an enclosing one. */
	err = git_repository_open_ext(&g->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (err)
		return cs_error(err == GIT_ENOTFOUND ? CS_ENOTFOUND : CS_ERROR, "git: opening %s: %s", path,
				gitsrc_errmsg(g));
	return 0;
}

int gitsrc_open(const struct gitsrc_opts *opts, struct gitsrc **out)
{
	struct gitsrc *g = NULL;
	int rc;

	assert(opts && out);
	if (!opts->repo || !*opts->repo)
		return cs_error(CS_EINVALID, "git: no repository given");
	if ((rc = gitsrc_global_init()))
		return rc;
	g = xcalloc(1, sizeof(*g));
	if (gitsrc_is_url(opts->repo))
		rc = gitsrc_open_remote(g, opts);
	else
		rc = gitsrc_open_local(g, opts->repo);
	if (rc) {
		gitsrc_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

static void gitsrc_free_secret(char *s)
{
	if (s)
		crypto_wipe(s, strlen(s));
	free(s);
}

void gitsrc_free(struct gitsrc *g)
{
	if (!g)
		return;
	git_repository_free(g->repo);
	free(g->sizes.v);
	gitsrc_free_secret(g->token);
	gitsrc_free_secret(g->url_secret);
	gitsrc_free_secret(g->url);
	free(g->display);
	free(g->host);
	free(g);
}

const char *gitsrc_display(const struct gitsrc *g)
{
	return g->display;
}

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

/* A commit argument: a full id is taken as is, anything else is resolved like gitsrc_resolve. */
static int gitsrc_commit_id(struct gitsrc *g, const char *s, git_oid *out)
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

struct gitsrc_walk {
	struct gitsrc *g;
	struct gitsrc_sizes sizes; /* this listing's: replaces g->sizes when it succeeds */
	git_odb *odb;
	const char *prefix; /* "dir/" or "" */
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

	/* Regular files only: symlinks (120000) and submodules (160000) are not manifests. */
	if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE)
		return 0;
	if (!util_has_suffix(name, ".yaml") && !util_has_suffix(name, ".yml"))
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
	if (!gitsrc_sizes_get(&w->g->sizes, id, &size) && git_odb_read_header(&size, &type, w->odb, id)) {
		w->rc = cs_error(CS_ERROR, "git: %s: %s%s%s: %s", w->g->display, w->prefix, root, name,
				 gitsrc_errmsg(w->g));
		return -1;
	}
	gitsrc_sizes_put(&w->sizes, id, size);
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

int gitsrc_list(struct gitsrc *g, const char *commit, const char *dir, struct gitsrc_file **out, size_t *n)
{
	struct gitsrc_walk w;
	git_tree *t = NULL;
	char *norm = gitsrc_normdir(dir), *prefix = NULL;
	int rc;

	memset(&w, 0, sizeof(w));
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

int gitsrc_changed(struct gitsrc *g, const char *from, const char *to, const char *dir, char ***paths, size_t *n)
{
	git_tree *a = NULL, *b = NULL;
	git_diff *diff = NULL;
	git_diff_options o;
	char *spec = gitsrc_normdir(dir);
	char **v = NULL;
	size_t cnt = 0, cap = 0;
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
	/* Without rename detection a rename is a delete plus an add: both sides are listed either way. */
	if (git_diff_tree_to_tree(&diff, g->repo, a, b, &o)) {
		rc = cs_error(CS_ERROR, "git: %s: diff %.12s..%.12s: %s", g->display, from, to, gitsrc_errmsg(g));
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
	*n = gitsrc_sort_unique(v, cnt);
	*paths = v;
	v = NULL;
	cnt = 0;
out:
	gitsrc_paths_free(v, cnt);
	git_diff_free(diff);
	git_tree_free(a);
	git_tree_free(b);
	free(spec);
	return rc;
}

void gitsrc_paths_free(char **paths, size_t n)
{
	for (size_t i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
}

void libversion_libgit2(char *out, size_t n)
{
	int major = 0, minor = 0, rev = 0;

	git_libgit2_version(&major, &minor, &rev);
	snprintf(out, n, "libgit2 %d.%d.%d", major, minor, rev);
}
