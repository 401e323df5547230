/* The acme issuer's config (certsync.yaml, docs/acme.md) and its checks on manifests: solvers and their matches. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../../util/dnsq.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "acme.h"

#define ACME_MAX_SOLVERS 64
#define ACME_MAX_LIST 64 /* names, zones, resolvers, nameservers per solver */

/* ---------- free ---------- */

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void solver_free(struct acme_solver *s)
{
	free(s->webroot);
	free(s->dns_provider);
	strv_free(s->resolvers, s->n_resolvers);
	strv_free(s->nameservers, s->n_nameservers);
	strv_free(s->match_names, s->n_match_names);
	strv_free(s->match_zones, s->n_match_zones);
}

void acme_config_free(void *priv)
{
	struct acme *a = priv;

	if (!a)
		return;
	acme_session_end(a);
	free(a->name);
	free(a->directory);
	free(a->email);
	free(a->ca_file);
	free(a->eab_kid);
	config_cred_free(&a->eab_hmac);
	free(a->profile);
	free(a->preferred_chain);
	for (size_t i = 0; i < a->n_solvers; i++)
		solver_free(&a->solvers[i]);
	free(a->solvers);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

/* ---------- field parsers ---------- */

/* 1 when u is https://, or plain http:// to a loopback address (tests, a local step-ca). */
static int url_allowed(const char *u)
{
	return !strncmp(u, "https://", 8) || !strncmp(u, "http://127.", 11) || !strncmp(u, "http://localhost", 16) ||
	       !strncmp(u, "http://[::1]", 12);
}

/* A sequence of strings (at most ACME_MAX_LIST); check (may be NULL) vets each, adding its own diagnostic. */
static void parse_strv(const struct ynode *v, const char *file, const char *what, int lower,
		       int (*check)(const struct ynode *item, const char *file, const char *what, struct diags *d),
		       struct diags *d, char ***out, size_t *n)
{
	if (ynode_expect(v, YNODE_SEQ, file, what, d))
		return;
	if (v->n > ACME_MAX_LIST) {
		diags_add(d, file, v->line, v->col, "%s: at most %d entries", what, ACME_MAX_LIST);
		return;
	}
	*out = xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++) {
		const char *s;

		if (ynode_string(v->items[i], file, what, d, &s) || (check && check(v->items[i], file, what, d)))
			continue;
		(*out)[*n] = xstrdup(s);
		if (lower)
			for (char *p = (*out)[*n]; *p; p++)
				*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
		while (util_has_suffix((*out)[*n], ".") && strlen((*out)[*n]) > 1 && lower)
			(*out)[*n][strlen((*out)[*n]) - 1] = '\0';
		(*n)++;
	}
}

static int check_server(const struct ynode *item, const char *file, const char *what, struct diags *d)
{
	char host[256];
	int port;

	if (dnsq_parse_server(item->str, host, sizeof(host), &port) == 0)
		return 0;
	diags_add(d, file, item->line, item->col, "%s: \"%s\" is not host, host:port or [v6]:port", what, item->str);
	return CS_EINVALID;
}

static int check_dns_name(const struct ynode *item, const char *file, const char *what, struct diags *d)
{
	const char *s = item->str;

	if (*s && strlen(s) < 254 &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.*_") == strlen(s))
		return 0;
	diags_add(d, file, item->line, item->col, "%s: \"%s\" is not a DNS name", what, s);
	return CS_EINVALID;
}

static void parse_match(struct acme_solver *s, const struct ynode *v, const char *file, const char *what,
			struct diags *d)
{
	static const char *const keys[] = {"dnsNames", "dnsZones", NULL};
	const struct ynode *f;
	char *w;

	if (ynode_expect(v, YNODE_MAP, file, what, d))
		return;
	ynode_check_keys(v, keys, file, what, d);
	w = xasprintf("%s.dnsNames", what);
	if ((f = ynode_get(v, "dnsNames")))
		parse_strv(f, file, w, 1, check_dns_name, d, &s->match_names, &s->n_match_names);
	free(w);
	w = xasprintf("%s.dnsZones", what);
	if ((f = ynode_get(v, "dnsZones")))
		parse_strv(f, file, w, 1, check_dns_name, d, &s->match_zones, &s->n_match_zones);
	free(w);
	if (!s->n_match_names && !s->n_match_zones && v->n == 0)
		diags_add(d, file, v->line, v->col, "%s: give dnsNames or dnsZones (or leave match out to match all)",
			  what);
}

/* http01: {webroot: PATH} or {serve: true}. */
static void parse_http01(struct acme_solver *s, const struct ynode *v, const char *file, const char *what,
			 struct diags *d)
{
	static const char *const keys[] = {"webroot", "serve", NULL};
	const struct ynode *w, *sv;
	const char *str;
	int serve = 0;

	if (ynode_expect(v, YNODE_MAP, file, what, d))
		return;
	ynode_check_keys(v, keys, file, what, d);
	w = ynode_get(v, "webroot");
	sv = ynode_get(v, "serve");
	if (sv)
		ynode_bool(sv, file, "serve", d, &serve);
	if (w && serve) {
		diags_add(d, file, v->line, v->col, "%s: give webroot or serve: true, not both", what);
		return;
	}
	if (w && !ynode_string(w, file, "webroot", d, &str)) {
		s->kind = ACME_HTTP01_WEBROOT;
		s->webroot = config_resolve_path(file, str);
		return;
	}
	if (serve) {
		s->kind = ACME_HTTP01_SERVE;
		return;
	}
	if (!w)
		diags_add(d, file, v->line, v->col, "%s: give webroot: PATH or serve: true", what);
}

static void parse_propagation(struct acme_solver *s, const struct ynode *v, const char *file, const char *what,
			      struct diags *d)
{
	static const char *const keys[] = {"timeout", "interval", "nameservers", NULL};
	const struct ynode *f;
	char *w;

	if (ynode_expect(v, YNODE_MAP, file, what, d))
		return;
	ynode_check_keys(v, keys, file, what, d);
	if ((f = ynode_get(v, "timeout")) && f->type == YNODE_SCALAR && f->str &&
	    (!strcmp(f->str, "0") || !strcmp(f->str, "0s")))
		s->propagation_timeout = 0; /* do not wait */
	else if (f)
		ynode_duration(f, file, "propagation.timeout", d, &s->propagation_timeout);
	if ((f = ynode_get(v, "interval")))
		ynode_duration(f, file, "propagation.interval", d, &s->propagation_interval);
	w = xasprintf("%s.nameservers", what);
	if ((f = ynode_get(v, "nameservers")))
		parse_strv(f, file, w, 0, check_server, d, &s->nameservers, &s->n_nameservers);
	free(w);
}

static void parse_dns01(struct acme_solver *s, const struct ynode *v, const char *file, const char *what,
			struct diags *d)
{
	static const char *const keys[] = {"provider", "resolvers", "propagation", NULL}; /* ttl: the DNS issuer's */
	const struct ynode *f;
	const char *str;
	char *w;

	s->kind = ACME_DNS01;
	if (ynode_expect(v, YNODE_MAP, file, what, d))
		return;
	ynode_check_keys(v, keys, file, what, d);
	if (!(f = ynode_get(v, "provider")))
		diags_add(d, file, v->line, v->col,
			  "%s: provider is required (an issuer with a DNS driver: rfc2136 or "
			  "dnsimple)",
			  what);
	else if (!ynode_string(f, file, "provider", d, &str))
		s->dns_provider = xstrdup(str);
	w = xasprintf("%s.resolvers", what);
	if ((f = ynode_get(v, "resolvers")))
		parse_strv(f, file, w, 0, check_server, d, &s->resolvers, &s->n_resolvers);
	free(w);
	w = xasprintf("%s.propagation", what);
	if ((f = ynode_get(v, "propagation")))
		parse_propagation(s, f, file, w, d);
	free(w);
}

/* One entry of solvers: exactly one of http01/dns01, and an optional match. */
static void parse_solver(struct acme_solver *s, const struct ynode *v, const char *file, const char *what,
			 struct diags *d)
{
	static const char *const keys[] = {"http01", "dns01", "match", NULL};
	const struct ynode *h, *dn, *m;
	char *w;

	s->line = v->line;
	s->col = v->col;
	s->propagation_timeout = 120;
	s->propagation_interval = 2;
	if (ynode_expect(v, YNODE_MAP, file, what, d))
		return;
	ynode_check_keys(v, keys, file, what, d);
	h = ynode_get(v, "http01");
	dn = ynode_get(v, "dns01");
	if (!!h == !!dn) {
		diags_add(d, file, v->line, v->col, "%s: give exactly one of http01 or dns01", what);
		return;
	}
	w = xasprintf("%s.%s", what, h ? "http01" : "dns01");
	if (h)
		parse_http01(s, h, file, w, d);
	else
		parse_dns01(s, dn, file, w, d);
	free(w);
	w = xasprintf("%s.match", what);
	if ((m = ynode_get(v, "match")))
		parse_match(s, m, file, w, d);
	free(w);
}

static void parse_solvers(struct acme *a, const struct ynode *v, const char *file, const char *what, struct diags *d)
{
	if (ynode_expect(v, YNODE_SEQ, file, "solvers", d))
		return;
	if (v->n == 0 || v->n > ACME_MAX_SOLVERS) {
		diags_add(d, file, v->line, v->col, "%s.solvers: give 1 to %d solvers", what, ACME_MAX_SOLVERS);
		return;
	}
	a->solvers = xcalloc(v->n, sizeof(*a->solvers));
	for (size_t i = 0; i < v->n; i++) {
		char *w = xasprintf("%s.solvers[%zu]", what, i);

		parse_solver(&a->solvers[a->n_solvers++], v->items[i], file, w, d);
		free(w);
	}
}

static void parse_eab(struct acme *a, const struct ynode *v, const char *file, const char *what, struct diags *d)
{
	static const char *const keys[] = {"keyID", "hmacKey", NULL};
	const struct ynode *f;
	const char *s;
	char *w = xasprintf("%s.externalAccountBinding", what);

	if (ynode_expect(v, YNODE_MAP, file, w, d))
		goto out;
	ynode_check_keys(v, keys, file, w, d);
	if (!(f = ynode_get(v, "keyID")))
		diags_add(d, file, v->line, v->col, "%s: keyID is required", w);
	else if (!ynode_string(f, file, "keyID", d, &s))
		a->eab_kid = xstrdup(s);
	if (!(f = ynode_get(v, "hmacKey")))
		diags_add(d, file, v->line, v->col, "%s: hmacKey is required ({env: NAME} or {file: PATH})", w);
	else
		config_parse_cred(f, file, "externalAccountBinding.hmacKey", 0, d, &a->eab_hmac);
out:
	free(w);
}

/* accountKey: {algorithm: ECDSA|RSA, size}. */
static void parse_account_key(struct acme *a, const struct ynode *v, const char *file, struct diags *d)
{
	static const char *const keys[] = {"algorithm", "size", NULL};
	const struct ynode *f;
	const char *s;
	int64_t size = 0;

	if (ynode_expect(v, YNODE_MAP, file, "accountKey", d))
		return;
	ynode_check_keys(v, keys, file, "accountKey", d);
	if ((f = ynode_get(v, "algorithm")) && !ynode_string(f, file, "accountKey.algorithm", d, &s)) {
		if (!strcasecmp(s, "ECDSA")) {
			a->account_alg = CRYPTO_ECDSA;
			a->account_size = 256;
		} else if (!strcasecmp(s, "RSA")) {
			a->account_alg = CRYPTO_RSA;
			a->account_size = 2048;
		} else {
			diags_add(d, file, f->line, f->col, "accountKey.algorithm: \"%s\" is not ECDSA or RSA", s);
		}
	}
	if ((f = ynode_get(v, "size")) && !ynode_int(f, file, "accountKey.size", 1, 16384, d, &size)) {
		int ok = a->account_alg == CRYPTO_ECDSA ? size == 256 || size == 384
							: size == 2048 || size == 3072 || size == 4096;

		if (!ok)
			diags_add(d, file, f->line, f->col, "accountKey.size: %lld is not %s", (long long)size,
				  a->account_alg == CRYPTO_ECDSA ? "256 or 384 (ECDSA)" : "2048, 3072 or 4096 (RSA)");
		else
			a->account_size = (int)size;
	}
}

static void parse_directory(struct acme *a, const struct ynode *node, const char *file, const char *what,
			    struct diags *d)
{
	const struct ynode *v = ynode_get(node, "directory");
	const char *s;

	if (!v) {
		diags_add(d, file, node->line, node->col,
			  "%s: directory is required (the ACME directory URL, e.g. "
			  "https://acme-v02.api.letsencrypt.org/directory)",
			  what);
		return;
	}
	if (ynode_string(v, file, "directory", d, &s))
		return;
	if (!url_allowed(s))
		diags_add(d, file, v->line, v->col, "directory: must be https:// (plain http only to loopback)");
	a->directory = xstrdup(s);
}

static void parse_ca_file(struct acme *a, const struct ynode *v, const char *file, struct diags *d)
{
	const char *s;

	if (ynode_string(v, file, "caFile", d, &s))
		return;
	a->ca_file = config_resolve_path(file, s);
	if (access(a->ca_file, R_OK))
		diags_add(d, file, v->line, v->col, "caFile: %s cannot be read", a->ca_file);
}

static void parse_email(struct acme *a, const struct ynode *v, const char *file, struct diags *d)
{
	const char *s, *at;

	if (ynode_string(v, file, "email", d, &s))
		return;
	at = strchr(s, '@');
	if (!at || at == s || !at[1] || strpbrk(s, " \t\r\n,<>") || strchr(at + 1, '@')) {
		diags_add(d, file, v->line, v->col, "email: \"%s\" is not an e-mail address", s);
		return;
	}
	a->email = xstrdup(s);
}

static void parse_string(const struct ynode *v, const char *file, const char *what, struct diags *d, char **out)
{
	const char *s;

	if (!ynode_string(v, file, what, d, &s))
		*out = xstrdup(s);
}

static struct acme *acme_new(const char *name)
{
	struct acme *a = xcalloc(1, sizeof(*a));

	pthread_mutex_init(&a->mu, NULL);
	a->name = xstrdup(name);
	a->account_alg = CRYPTO_ECDSA;
	a->account_size = 256;
	a->timeout = 60;
	a->poll_max = 10;
	a->revoke_on_remove = -1;
	return a;
}

static void parse_limits(struct acme *a, const struct ynode *node, const char *file, struct diags *d)
{
	const struct ynode *v;

	/* ynode_duration refuses 0: both are at least a second */
	if ((v = ynode_get(node, "timeout")))
		ynode_duration(v, file, "timeout", d, &a->timeout);
	if ((v = ynode_get(node, "pollInterval")))
		ynode_duration(v, file, "pollInterval", d, &a->poll_max);
}

int acme_config_parse(const struct ynode *node, const char *file, const char *name, struct diags *d, void **priv)
{
	static const char *const keys[] = {"type",	 "directory",
					   "email",	 "termsOfServiceAgreed",
					   "caFile",	 "externalAccountBinding",
					   "profile",	 "preferredChain",
					   "accountKey", "revokeOnRemove",
					   "timeout",	 "pollInterval",
					   "solvers",	 NULL};
	struct acme *a = acme_new(name);
	char *what = xasprintf("issuers.%s", name);
	const struct ynode *v;
	size_t before = d->n;
	int b;

	ynode_check_keys(node, keys, file, what, d);
	parse_directory(a, node, file, what, d);
	if ((v = ynode_get(node, "email")))
		parse_email(a, v, file, d);
	if ((v = ynode_get(node, "termsOfServiceAgreed")))
		ynode_bool(v, file, "termsOfServiceAgreed", d, &a->terms_agreed);
	if ((v = ynode_get(node, "caFile")))
		parse_ca_file(a, v, file, d);
	if ((v = ynode_get(node, "externalAccountBinding")))
		parse_eab(a, v, file, what, d);
	if ((v = ynode_get(node, "profile")))
		parse_string(v, file, "profile", d, &a->profile);
	if ((v = ynode_get(node, "preferredChain")))
		parse_string(v, file, "preferredChain", d, &a->preferred_chain);
	if ((v = ynode_get(node, "accountKey")))
		parse_account_key(a, v, file, d);
	if ((v = ynode_get(node, "revokeOnRemove")) && !ynode_bool(v, file, "revokeOnRemove", d, &b))
		a->revoke_on_remove = b;
	parse_limits(a, node, file, d);
	if ((v = ynode_get(node, "solvers")))
		parse_solvers(a, v, file, what, d);
	else
		diags_add(d, file, node->line, node->col,
			  "%s: solvers is required (e.g. - http01: {webroot: /var/www/acme}, or - dns01: {provider: "
			  "NAME})",
			  what);
	free(what);
	if (d->n > before) {
		acme_config_free(a);
		return CS_EINVALID;
	}
	*priv = a;
	return 0;
}

void acme_config_check(const struct config *cfg, const struct issuer *is, const char *file, struct diags *d)
{
	const struct acme *a = is->priv;

	for (size_t i = 0; i < a->n_solvers; i++) {
		const struct acme_solver *s = &a->solvers[i];
		const struct issuer *dns;

		if (s->kind != ACME_DNS01 || !s->dns_provider)
			continue;
		dns = config_issuer(cfg, s->dns_provider);
		if (!dns)
			diags_add(d, file, s->line, s->col,
				  "issuers.%s.solvers[%zu].dns01.provider: no issuer named \"%s\"", is->name, i,
				  s->dns_provider);
		else if (!dns->ops->dns)
			diags_add(d, file, s->line, s->col,
				  "issuers.%s.solvers[%zu].dns01.provider: issuer \"%s\" (type %s) cannot place DNS "
				  "records; name an rfc2136 or dnsimple issuer",
				  is->name, i, s->dns_provider, dns->ops->type);
	}
#ifdef ACME_SERVE_NEEDS_LISTEN /* acme_serve.c is in the tree: serve solvers need server.listen */
	acme_serve_check(cfg, is, file, d);
#endif
}

/* ---------- solvers and manifests ---------- */

static int is_wildcard(const char *name)
{
	return !strncmp(name, "*.", 2);
}

/* 1 when name is zone or lies under it. */
static int in_zone(const char *name, const char *zone)
{
	size_t n = strlen(name), z = strlen(zone);

	if (!strcasecmp(name, zone))
		return 1;
	return n > z && name[n - z - 1] == '.' && !strcasecmp(name + n - z, zone);
}

static int solver_matches(const struct acme_solver *s, const char *name)
{
	const char *base = is_wildcard(name) ? name + 2 : name;

	if (!s->n_match_names && !s->n_match_zones)
		return 1;
	for (size_t i = 0; i < s->n_match_names; i++)
		if (!strcasecmp(s->match_names[i], name))
			return 1;
	for (size_t i = 0; i < s->n_match_zones; i++)
		if (in_zone(base, s->match_zones[i]))
			return 1;
	return 0;
}

const struct acme_solver *acme_solver_for(const struct acme *a, const char *name)
{
	for (size_t i = 0; i < a->n_solvers; i++) {
		/* http-01 cannot prove a wildcard: such a name takes the first dns01 solver that matches it */
		if (is_wildcard(name) && a->solvers[i].kind != ACME_DNS01)
			continue;
		if (solver_matches(&a->solvers[i], name))
			return &a->solvers[i];
	}
	return NULL;
}

void acme_solver_describe(const struct acme_solver *s, char *out, size_t n)
{
	switch (s->kind) {
	case ACME_HTTP01_WEBROOT: snprintf(out, n, "http-01 webroot %s", s->webroot); break;
	case ACME_HTTP01_SERVE: snprintf(out, n, "http-01 serve"); break;
	case ACME_DNS01: snprintf(out, n, "dns-01 via %s", s->dns_provider ? s->dns_provider : "?"); break;
	}
}

void acme_check_spec(const struct issuer *is, const struct cert_spec *s, struct diags *d)
{
	const struct acme *a = is->priv;

	for (size_t i = 0; i < s->n_dns; i++) {
		const char *name = s->dns_names[i];

		if (acme_solver_for(a, name))
			continue;
		if (is_wildcard(name))
			diags_add(
				d, s->file, s->line, s->col,
				"certificate \"%s\": wildcard %s needs a dns01 solver (http-01 proves only exact host "
				"names); issuer %s has none that matches it",
				s->name, name, is->name);
		else
			diags_add(d, s->file, s->line, s->col,
				  "certificate \"%s\": no solver of issuer %s matches %s (add one, or widen a solver's "
				  "match)",
				  s->name, is->name, name);
	}
}
