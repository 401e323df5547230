/* The git source: opens local repositories and bare clones of remote ones (HTTPS, SSH, git://, file://) and fetches. */
#include "gitsrc_int.h"
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

const char *gitsrc_errmsg(const struct gitsrc *g)
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
		gitsrc_mask(&b, g->ssh_key, "***");
		gitsrc_mask(&b, g->ssh_pass, "***");
	}
	snprintf(msg, sizeof(msg), "%s", b.data);
	buf_wipe(&b);
	return msg;
}

static const char *const gitsrc_schemes[] = {"file://", "git://", "http://", "https://"};

/* The SSH parts of a remote: user, host and port (known_hosts names "[host]:port" off port 22). */
static int gitsrc_parse_ssh(struct gitsrc *g, const char *url)
{
	struct gitsrc_ssh_url u;
	int rc;

	g->url = xstrdup(url);
	g->display = xstrdup(url); /* an SSH URL holds no secret: a password in it is refused below */
	g->host = xstrdup("");
	if ((rc = gitsrc_ssh_parse(url, &u)))
		return rc;
	g->ssh = 1;
	g->ssh_user = u.user ? u.user : xstrdup("git");
	g->ssh_host = u.host;
	g->ssh_port = u.port;
	free(u.path);
	return 0;
}

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

/* SSH: the user name, then the deploy key from memory (never a file of the user's, never an agent). */
static int gitsrc_ssh_cred(struct gitsrc *g, git_credential **out, unsigned int allowed)
{
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, g->ssh_user);
	if (!g->ssh_key || !*g->ssh_key) {
		g->auth_refused = 1;
		git_error_set_str(GIT_ERROR_SSH, "no deploy key configured (source.sshKey)");
		return GIT_EAUTH;
	}
	if (!(allowed & GIT_CREDENTIAL_SSH_MEMORY)) {
		g->auth_refused = 1;
		git_error_set_str(GIT_ERROR_SSH, "the server does not accept public key authentication");
		return GIT_EAUTH;
	}
	if (++g->auth_attempts > 1) { /* the same key again would be refused again */
		char msg[512];

		g->auth_refused = 1;

		snprintf(msg, sizeof(msg), "the server refused the deploy key (source.sshKey) for user \"%s\"",
			 g->ssh_user);
		git_error_set_str(GIT_ERROR_SSH, msg);
		return GIT_EAUTH;
	}
	return git_credential_ssh_key_memory_new(out, g->ssh_user, NULL, g->ssh_key, g->ssh_pass);
}

static int gitsrc_cred_cb(git_credential **out, const char *url, const char *user, unsigned int allowed, void *payload)
{
	struct gitsrc *g = payload;
	char *host = NULL;
	int same_host;

	(void)user;
	if (g->ssh)
		return gitsrc_ssh_cred(g, out, allowed);
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

/*
 * SSH host keys are checked against source.knownHosts only: an unknown or
 * changed key is refused, never learnt. TLS certificates keep libgit2's check.
 */
static int gitsrc_cert_cb(git_cert *cert, int valid, const char *host, void *payload)
{
	struct gitsrc *g = payload;
	const git_cert_hostkey *hk = (const git_cert_hostkey *)cert;
	char why[1024];

	(void)valid;
	(void)host;
	if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2 || !g->ssh)
		return GIT_PASSTHROUGH;
	if (!(hk->type & (GIT_CERT_SSH_RAW | GIT_CERT_SSH_SHA256))) {
		git_error_set_str(GIT_ERROR_SSH, "the SSH library gave no host key to check");
		return GIT_ECERTIFICATE;
	}
	if (!gitsrc_known_hosts_check(g->known_hosts, g->ssh_host, g->ssh_port,
				      hk->type & GIT_CERT_SSH_RAW ? (const unsigned char *)hk->hostkey : NULL,
				      hk->type & GIT_CERT_SSH_RAW ? hk->hostkey_len : 0, hk->hash_sha256, why,
				      sizeof(why)))
		return 0;
	git_error_set_str(GIT_ERROR_SSH, why);
	return GIT_ECERTIFICATE;
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

/*
 * The deploy key was offered and the session then failed: after a refusal
 * libssh2 often reports the next step ("Failed to retrieve list of SSH
 * authentication methods"), not the refusal. Said plainly instead.
 */
static int gitsrc_ssh_auth_failed(const struct gitsrc *g, int err)
{
	const char *m;

	if (!g->ssh || !g->auth_attempts || g->auth_refused || err == GIT_ECERTIFICATE)
		return 0;
	/* A transfer cut after a good authentication (a signal, the network) is not a refusal. */
	m = gitsrc_errmsg(g);
	return strstr(m, "authenticat") || strstr(m, "private key") || strstr(m, "passphrase");
}

static int gitsrc_ssh_auth_error(struct gitsrc *g)
{
	const char *m = gitsrc_errmsg(g);

	if (strstr(m, "passphrase") || strstr(m, "private key"))
		return cs_error(CS_EAUTH,
				"git: fetching %s: source.sshKey cannot be used: a wrong or missing "
				"source.sshKeyPassphrase, or not a private key (%s)",
				g->display, m);
	return cs_error(CS_EAUTH,
			"git: fetching %s: the server refused the deploy key (source.sshKey) for user \"%s\" (%s)",
			g->display, g->ssh_user, m);
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
	fo.callbacks.certificate_check = gitsrc_cert_cb;
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
		rc = gitsrc_ssh_auth_failed(g, err) ? gitsrc_ssh_auth_error(g)
						    : cs_error(gitsrc_fetch_code(g, err), "git: fetching %s: %s",
							       g->display, gitsrc_errmsg(g));
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

	g->remote = 1;
	if (gitsrc_is_ssh_url(opts->repo)) {
		if ((rc = gitsrc_parse_ssh(g, opts->repo)))
			goto out;
		if (!opts->known_hosts || !*opts->known_hosts) {
			rc = cs_error(CS_EINVALID,
				      "git: %s: an SSH remote needs source.knownHosts (host keys are never accepted "
				      "unchecked)",
				      g->display);
			goto out;
		}
		g->ssh_key = xstrdup(opts->ssh_key);
		g->ssh_pass = xstrdup(opts->ssh_passphrase);
		g->known_hosts = xstrdup(opts->known_hosts);
	} else {
		gitsrc_parse_url(g, opts->repo);
		g->token = xstrdup(opts->token);
	}
	if (!g->ssh && !gitsrc_scheme_supported(opts->repo)) {
		rc = cs_error(CS_EINVALID,
			      "git: %s: unsupported URL scheme (use https://, http://, ssh://, git:// or file://)",
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
	if (gitsrc_is_url(opts->repo) || gitsrc_is_scp_like(opts->repo))
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
	gitsrc_free_secret(g->ssh_key);
	gitsrc_free_secret(g->ssh_pass);
	free(g->known_hosts);
	free(g->ssh_user);
	free(g->ssh_host);
	free(g->display);
	free(g->host);
	free(g);
}

const char *gitsrc_display(const struct gitsrc *g)
{
	return g->display;
}

void libversion_libgit2(char *out, size_t n)
{
	int major = 0, minor = 0, rev = 0;

	git_libgit2_version(&major, &minor, &rev);
	snprintf(out, n, "libgit2 %d.%d.%d", major, minor, rev);
}
