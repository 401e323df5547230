/*
 * ACME challenge solvers: http-01 as a file under a web root or an answer of
 * certsync's own server (acme_http01.h), dns-01 as a TXT record through
 * another issuer's DNS driver, with the propagation check against the
 * zone's authoritative servers (util/dnsq.h). What is placed is journaled
 * by the caller first (acme_solve_intent), so it is always removed.
 *
 * A token's ref: http-01 the ACME token; dns-01 the TXT value, followed by
 * " " and the DNS driver's own reference once the record is made.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../util/dnsq.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/jose.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../acme_http01.h"
#include "acme.h"

#define CHALLENGE_DIR ".well-known/acme-challenge"
#define DNS01_LABEL "_acme-challenge."

static const char *base_name(const char *name)
{
	return strncmp(name, "*.", 2) ? name : name + 2;
}

/* <webroot>/.well-known/acme-challenge/<token>, "{host}" in the webroot replaced by the name. */
static char *webroot_path(const struct acme_solver *s, const char *name, const char *token)
{
	const char *at = strstr(s->webroot, "{host}");
	char *root, *dir, *out;

	if (at)
		root = xasprintf("%.*s%s%s", (int)(at - s->webroot), s->webroot, base_name(name), at + 6);
	else
		root = xstrdup(s->webroot);
	dir = fsutil_join(root, CHALLENGE_DIR);
	out = fsutil_join(dir, token);
	free(root);
	free(dir);
	return out;
}

/* The issuer whose DNS driver places the record, or an error naming it. */
static int dns_issuer(const struct step_ctx *ctx, const char *name, const struct issuer **out)
{
	const struct issuer *is = name ? config_issuer(ctx->cfg, name) : NULL;

	if (!is || !is->ops->dns)
		return cs_error(CS_EINVALID, "%s: DNS issuer \"%s\" is not configured or has no DNS driver",
				ctx->rec->name, name ? name : "(none)");
	*out = is;
	return 0;
}

/* A token must be a safe file name (RFC 8555 §8.3: base64url); the CA's answer is untrusted. */
static int token_ok(const char *token)
{
	size_t n = token ? strlen(token) : 0;

	return n >= 16 && n <= ACME_HTTP01_TOKEN_MAX &&
	       strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

/*
 * The TXT owner name for name: _acme-challenge.<base>, or where a CNAME there
 * points (followed through the solver's resolvers). A lookup that fails keeps
 * the plain name: the driver's own zone discovery decides then.
 */
static char *dns01_location(struct step_ctx *ctx, const struct acme_solver *s, const char *name)
{
	char *fqdn = xasprintf(DNS01_LABEL "%s", base_name(name)), *target = NULL, *zone = NULL;

	if (dnsq_find_zone((const char *const *)s->resolvers, s->n_resolvers, fqdn, &target, &zone) == 0) {
		if (strcasecmp(target, fqdn))
			log_emit(LV_INFO, &ctx->log, "%s is a CNAME: the TXT record goes to %s", fqdn, target);
		free(fqdn);
		free(zone);
		return target;
	}
	log_emit(LV_DEBUG, &ctx->log, "zone lookup for %s: %s (the DNS driver finds the zone)", fqdn, cs_errmsg());
	return fqdn;
}

int acme_solve_intent(struct step_ctx *ctx, const struct acme_solver *s, const char *name, const char *token,
		      const char *key_authorization, struct state_token *t)
{
	memset(t, 0, sizeof(*t));
	if (!token_ok(token))
		return cs_error(CS_ETRANSIENT, "%s: the CA sent a challenge token for %s that is not base64url",
				ctx->rec->name, name);
	t->name = xstrdup(name);
	if (s->kind == ACME_DNS01) {
		char value[44];
		const struct issuer *is;
		int rc = dns_issuer(ctx, s->dns_provider, &is);

		if (rc) {
			free(t->name);
			t->name = NULL;
			return rc;
		}
		jose_dns01_value(key_authorization, value);
		t->method = xstrdup("dns-01");
		t->location = dns01_location(ctx, s, name);
		t->issuer = xstrdup(is->name);
		t->ref = xstrdup(value);
		return 0;
	}
	t->method = xstrdup("http-01");
	t->location = s->kind == ACME_HTTP01_SERVE ? xstrdup("serve") : webroot_path(s, name, token);
	t->ref = xstrdup(token);
	return 0;
}

static int webroot_write(const char *path, const char *ka)
{
	char *dir = fsutil_dirname(path);
	int rc = fsutil_mkdir_p(dir, 0755);

	if (!rc)
		rc = fsutil_write_atomic(path, ka, strlen(ka), 0644);
	free(dir);
	if (rc)
		rc = cs_error(CS_ETRANSIENT, "%s", cs_errmsg());
	return rc;
}

/* The answer in the built-in server's table (certsync run serves it). */
static int serve_put(struct step_ctx *ctx, const struct state_token *t, const char *ka)
{
	int rc = acme_http01_put(t->ref, ka);

	if (rc)
		rc = cs_error(CS_ETRANSIENT, "%s: the built-in http-01 server cannot hold the answer for %s (%s)",
			      ctx->rec->name, t->name,
			      rc == CS_EINVALID ? "a token that is not base64url" : "full, or not in this build");
	return rc;
}

/* The TXT value of a dns-01 ref ("value" or "value driver-ref") into out; the driver's ref, or NULL. */
static const char *split_ref(const char *ref, char *value, size_t n)
{
	const char *sp = ref ? strchr(ref, ' ') : NULL;

	snprintf(value, n, "%.*s", sp ? (int)(sp - ref) : (int)strlen(ref ? ref : ""), ref ? ref : "");
	return sp && sp[1] ? sp + 1 : NULL;
}

int acme_solve_place(struct step_ctx *ctx, const struct acme_solver *s, const struct state_token *t,
		     const char *key_authorization, char **ref)
{
	const struct issuer *is;
	char value[64], *dref = NULL;
	int rc;

	(void)s;
	*ref = NULL;
	if (util_streq(t->method, "http-01")) {
		rc = util_streq(t->location, "serve") ? serve_put(ctx, t, key_authorization)
						      : webroot_write(t->location, key_authorization);
		if (!rc)
			*ref = xstrdup(t->ref);
		return rc;
	}
	if ((rc = dns_issuer(ctx, t->issuer, &is)))
		return rc;
	split_ref(t->ref, value, sizeof(value));
	if ((rc = is->ops->dns->txt_create(is, t->location, value, &dref)))
		return rc;
	*ref = dref && *dref ? xasprintf("%s %s", value, dref) : xstrdup(value);
	free(dref);
	return 0;
}

/*
 * Removes "<file>.tmp.<pid>.<n>" left beside an answer file by a run killed
 * while it wrote it (fsutil_write_atomic's temporary names; the token makes
 * them ours alone).
 */
static void sweep_tmp(const char *path)
{
	char *dir = fsutil_dirname(path),
	     *prefix = xasprintf("%s.tmp.", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
	char *mine = xasprintf("%s%ld.", prefix, (long)getpid());
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix)) && strncmp(e->d_name, mine, strlen(mine)))
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
	free(mine);
	free(prefix);
	free(dir);
}

int acme_solve_remove(struct step_ctx *ctx, const struct state_token *t)
{
	const struct issuer *is;
	const char *dref;
	char value[64];
	int rc;

	if (util_streq(t->method, "http-01")) {
		if (util_streq(t->location, "serve")) {
			if (t->ref)
				acme_http01_del(t->ref);
			return 0;
		}
		if (t->location && unlink(t->location) && errno != ENOENT)
			return cs_error(CS_ETRANSIENT, "%s: cannot remove %s: %s", ctx->rec->name, t->location,
					strerror(errno));
		if (t->location)
			sweep_tmp(t->location);
		return 0;
	}
	if ((rc = dns_issuer(ctx, t->issuer, &is)))
		return rc;
	dref = split_ref(t->ref, value, sizeof(value));
	return is->ops->dns->txt_delete(is, t->location, value, dref);
}

static int remove_one(struct step_ctx *ctx, const struct state_token *t, void *arg)
{
	(void)arg;
	return acme_solve_remove(ctx, t);
}

int acme_solve_remove_all(struct step_ctx *ctx)
{
	return step_remove_tokens(ctx, ctx->rec->n_tokens, remove_one, NULL, "a challenge answer");
}

/* ---------- propagation ---------- */

static void servers_add(struct dnsq_servers *out, char **v, size_t n)
{
	out->addr = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n && i < DNSQ_MAX_SERVERS; i++)
		out->addr[out->n++] = xstrdup(v[i]);
}

/* The servers to ask: the solver's, else the DNS driver's, else the zone's NS. */
static int check_servers(struct step_ctx *ctx, const struct acme_solver *s, const char *fqdn, struct dnsq_servers *out)
{
	const struct issuer *is = NULL;
	char **v = NULL, *target = NULL, *zone = NULL;
	size_t n = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (s->n_nameservers) {
		servers_add(out, s->nameservers, s->n_nameservers);
		return 0;
	}
	if (dns_issuer(ctx, s->dns_provider, &is) == 0 && is->ops->dns->check_servers)
		is->ops->dns->check_servers(is, &v, &n);
	if (n) {
		servers_add(out, v, n);
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return 0;
	}
	free(v);
	if ((rc = dnsq_find_zone((const char *const *)s->resolvers, s->n_resolvers, fqdn, &target, &zone)) == 0)
		rc = dnsq_zone_nameservers((const char *const *)s->resolvers, s->n_resolvers, zone, out);
	free(target);
	free(zone);
	if (rc)
		rc = cs_error(CS_ETRANSIENT, "%s: finding the nameservers to check %s: %s", ctx->rec->name, fqdn,
			      cs_errmsg());
	return rc;
}

/* The first server that does not answer value yet (NULL when all do); err keeps a query failure. */
static const char *missing_on(const struct dnsq_servers *sv, const char *fqdn, const char *value, char *err, size_t n)
{
	for (size_t i = 0; i < sv->n; i++) {
		int found = 0;

		if (dnsq_txt_has(sv->addr[i], fqdn, value, &found)) {
			snprintf(err, n, "%s", cs_errmsg());
			return sv->addr[i];
		}
		if (!found) {
			snprintf(err, n, "it answers without the value");
			return sv->addr[i];
		}
	}
	return NULL;
}

int acme_solve_wait_dns(struct step_ctx *ctx, const struct acme_solver *s, const char *fqdn, const char *value)
{
	struct dnsq_servers sv;
	int64_t end = util_now() + s->propagation_timeout;
	const char *miss;
	char err[512] = "";
	int rc;

	if (s->propagation_timeout <= 0)
		return 0;
	if ((rc = check_servers(ctx, s, fqdn, &sv)))
		return rc;
	for (;;) {
		if (!(miss = missing_on(&sv, fqdn, value, err, sizeof(err))))
			break;
		if (util_now() + s->propagation_interval > end) {
			rc = cs_error(CS_ETRANSIENT,
				      "%s: the TXT record %s is not on nameserver %s after %llds (%s); trying again "
				      "later",
				      ctx->rec->name, fqdn, miss, (long long)s->propagation_timeout, err);
			break;
		}
		log_emit(LV_DEBUG, &ctx->log, "%s: not yet on %s (%s)", fqdn, miss, err);
		if ((rc = step_sleep_until(ctx, util_now() + s->propagation_interval)))
			break;
	}
	if (!rc)
		log_emit(LV_DEBUG, &ctx->log, "%s answers the new TXT value on %zu nameserver%s", fqdn, sv.n,
			 sv.n == 1 ? "" : "s");
	dnsq_servers_free(&sv);
	return rc;
}
