/* The acme issuer's config: every field, defaults, every error located; solvers and their matches; manifest checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../reconciler/config.h"
#include "../../reconciler/provider.h"
#include "../../reconciler/providers/acme.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "testutil.h"

#define BASE "source: {repo: r}\nstate: {path: s.json}\noutput: {root: o}\nissuers:\n"
/* line 5 is the first issuer line */
#define DNS "  dns:\n    type: dnsimple\n    account: \"1\"\n    token: {env: T}\n    zones: [example.com]\n"

static char *joined(const struct diags *d)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < d->n; i++) {
		char *line = diag_format(&d->v[i]);

		buf_printf(&b, "%s\n", line);
		free(line);
	}
	buf_append(&b, "", 1);
	return buf_detach(&b);
}

/* Parses a config; returns it (or NULL) and the diagnostics joined by newlines in *msgs (caller frees). */
static struct config *parse(const char *issuers, char **msgs)
{
	char *yaml = xasprintf(BASE "%s", issuers);
	struct diags d = DIAGS_INIT;
	struct config *c = NULL;

	config_parse("/etc/certsync/c.yaml", yaml, strlen(yaml), &c, &d);
	*msgs = joined(&d);
	diags_free(&d);
	free(yaml);
	return c;
}

static const struct acme *acme_of(const struct config *c, const char *name)
{
	const struct issuer *is = config_issuer(c, name);

	assert_non_null(is);
	return is->priv;
}

static void test_acme_config_defaults(void **state)
{
	char *msgs;
	struct config *c = parse("  le:\n    type: acme\n    directory: https://acme.test/dir\n"
				 "    solvers:\n      - http01: {serve: true}\n",
				 &msgs);
	const struct acme *a;

	(void)state;
	assert_string_equal(msgs, "");
	a = acme_of(c, "le");
	assert_string_equal(a->name, "le");
	assert_string_equal(a->directory, "https://acme.test/dir");
	assert_null(a->email);
	assert_int_equal(a->terms_agreed, 0);
	assert_null(a->ca_file);
	assert_null(a->eab_kid);
	assert_int_equal(a->eab_hmac.kind, CRED_NONE);
	assert_null(a->profile);
	assert_null(a->preferred_chain);
	assert_int_equal(a->account_alg, CRYPTO_ECDSA);
	assert_int_equal(a->account_size, 256);
	assert_int_equal(a->timeout, 60);
	assert_int_equal(a->poll_max, 10);
	assert_int_equal(a->revoke_on_remove, -1);
	assert_int_equal(a->n_solvers, 1);
	assert_int_equal(a->solvers[0].kind, ACME_HTTP01_SERVE);
	assert_int_equal(a->solvers[0].n_match_names + a->solvers[0].n_match_zones, 0);
	assert_null(a->client);
	config_free(c);
	free(msgs);
}

static void test_acme_config_every_field(void **state)
{
	char *dir = test_mkdtemp(), *ca = test_write(dir, "ca.pem", "x", 0644), *msgs;
	char *cfg = xasprintf(DNS "  le:\n    type: acme\n    directory: https://acme.test/dir\n"
				  "    email: ops@example.com\n    termsOfServiceAgreed: true\n    caFile: %s\n"
				  "    externalAccountBinding: {keyID: kid-1, hmacKey: {env: EAB}}\n"
				  "    profile: tlsserver\n    preferredChain: \"ISRG Root X1\"\n"
				  "    accountKey: {algorithm: RSA, size: 3072}\n    revokeOnRemove: true\n"
				  "    timeout: 30s\n    pollInterval: 5s\n    solvers:\n"
				  "      - http01: {webroot: www}\n        match: {dnsNames: [WWW.Example.COM.]}\n"
				  "      - dns01:\n          provider: dns\n          resolvers: [\"127.0.0.1:5353\"]\n"
				  "          propagation: {timeout: 0s, interval: 3s, nameservers: "
				  "[\"10.0.0.53:53\", \"[::1]:5353\"]}\n"
				  "        match: {dnsZones: [example.com]}\n",
			      ca);
	struct config *c = parse(cfg, &msgs);
	const struct acme *a;
	const struct acme_solver *s;

	(void)state;
	assert_string_equal(msgs, "");
	a = acme_of(c, "le");
	assert_string_equal(a->email, "ops@example.com");
	assert_int_equal(a->terms_agreed, 1);
	assert_string_equal(a->ca_file, ca);
	assert_string_equal(a->eab_kid, "kid-1");
	assert_int_equal(a->eab_hmac.kind, CRED_ENV);
	assert_string_equal(a->eab_hmac.ref, "EAB");
	assert_string_equal(a->profile, "tlsserver");
	assert_string_equal(a->preferred_chain, "ISRG Root X1");
	assert_int_equal(a->account_alg, CRYPTO_RSA);
	assert_int_equal(a->account_size, 3072);
	assert_int_equal(a->revoke_on_remove, 1);
	assert_int_equal(a->timeout, 30);
	assert_int_equal(a->poll_max, 5);
	assert_int_equal(a->n_solvers, 2);
	s = &a->solvers[0];
	assert_int_equal(s->kind, ACME_HTTP01_WEBROOT);
	assert_string_equal(s->webroot, "/etc/certsync/www"); /* relative to the config file */
	assert_int_equal(s->n_match_names, 1);
	assert_string_equal(s->match_names[0], "www.example.com"); /* lowercased, trailing dot dropped */
	s = &a->solvers[1];
	assert_int_equal(s->kind, ACME_DNS01);
	assert_string_equal(s->dns_provider, "dns");
	assert_int_equal(s->n_resolvers, 1);
	assert_string_equal(s->resolvers[0], "127.0.0.1:5353");
	assert_int_equal(s->propagation_timeout, 0);
	assert_int_equal(s->propagation_interval, 3);
	assert_int_equal(s->n_nameservers, 2);
	assert_string_equal(s->nameservers[1], "[::1]:5353");
	assert_int_equal(s->n_match_zones, 1);
	assert_int_equal(s->line, 26);
	assert_int_equal(s->col, 9);
	config_free(c);
	free(cfg);
	free(msgs);
	free(ca);
	test_rmdir(dir);
}

static void test_acme_config_dns01_defaults(void **state)
{
	char *msgs;
	struct config *c = parse(DNS "  le:\n    type: acme\n    directory: https://acme.test/dir\n"
				     "    solvers:\n      - dns01: {provider: dns}\n",
				 &msgs);
	const struct acme_solver *s;

	(void)state;
	assert_string_equal(msgs, "");
	s = &acme_of(c, "le")->solvers[0];
	assert_int_equal(s->propagation_timeout, 120);
	assert_int_equal(s->propagation_interval, 2);
	assert_int_equal(s->n_resolvers, 0);
	assert_int_equal(s->n_nameservers, 0);
	config_free(c);
	free(msgs);
}

/* Every error, each located at its node. */
static void test_acme_config_errors_are_located(void **state)
{
	char *msgs;
	struct config *c =
		parse("  le:\n"										  /* 5 */
		      "    type: acme\n"								  /* 6 */
		      "    directory: http://acme.test/dir\n"						  /* 7 */
		      "    email: not-an-address\n"							  /* 8 */
		      "    caFile: /nonexistent/ca.pem\n"						  /* 9 */
		      "    externalAccountBinding: {hmacKey: k1}\n"					  /* 10 */
		      "    accountKey: {algorithm: DSA, size: 1024}\n"					  /* 11 */
		      "    timeout: 0s\n"								  /* 12 */
		      "    pollInterval: soon\n"							  /* 13 */
		      "    revokeOnRemove: maybe\n"							  /* 14 */
		      "    colour: blue\n"								  /* 15 */
		      "    solvers:\n"									  /* 16 */
		      "      - http01: {}\n"								  /* 17 */
		      "      - http01: {webroot: /w, serve: true}\n"					  /* 18 */
		      "      - dns01: {ttl: 0}\n"							  /* 19 */
		      "      - {http01: {serve: true}, dns01: {provider: x}}\n"				  /* 20 */
		      "      - dns01: {provider: x, resolvers: [\"a b\"], propagation: {interval: 0s}}\n" /* 21 */
		      "      - http01: {serve: true}\n"							  /* 22 */
		      "        match: {dnsNames: [\"bad name!\"], hosts: [x]}\n"			  /* 23 */
		      "      - http01: {serve: true}\n"							  /* 24 */
		      "        match: {}\n",								  /* 25 */
		      &msgs);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(msgs, "c.yaml:7:16: directory: must be https:// (plain http only to loopback)"));
	assert_non_null(strstr(msgs, "c.yaml:8:12: email: \"not-an-address\" is not an e-mail address"));
	assert_non_null(strstr(msgs, "c.yaml:9:13: caFile: /nonexistent/ca.pem cannot be read"));
	assert_non_null(strstr(msgs, "c.yaml:10:29: issuers.le.externalAccountBinding: keyID is required"));
	/* hmacKey: a literal is refused ({env|file} only) */
	assert_non_null(strstr(msgs, "c.yaml:10:39: externalAccountBinding.hmacKey: a secret cannot be written"));
	assert_non_null(strstr(msgs, "c.yaml:11:29: accountKey.algorithm: \"DSA\" is not ECDSA or RSA"));
	assert_non_null(strstr(msgs, "c.yaml:11:40: accountKey.size: 1024 is not 256 or 384 (ECDSA)"));
	assert_non_null(strstr(msgs, "c.yaml:12:14: timeout: duration \"0s\" must be greater than zero"));
	assert_non_null(strstr(msgs, "c.yaml:13:19: pollInterval: \"soon\" is not a duration"));
	assert_non_null(strstr(msgs, "c.yaml:14:21: revokeOnRemove: expected true or false"));
	assert_non_null(strstr(msgs, "c.yaml:15:5: unknown field \"colour\" in issuers.le"));
	assert_non_null(strstr(msgs, "c.yaml:17:17: issuers.le.solvers[0].http01: give webroot: PATH or serve: true"));
	assert_non_null(
		strstr(msgs, "c.yaml:18:17: issuers.le.solvers[1].http01: give webroot or serve: true, not both"));
	assert_non_null(strstr(msgs, "c.yaml:19:16: issuers.le.solvers[2].dns01: provider is required"));
	assert_non_null(strstr(
		msgs, "c.yaml:19:17: unknown field \"ttl\" in issuers.le.solvers[2].dns01")); /* the DNS issuer's */
	assert_non_null(strstr(msgs, "c.yaml:20:9: issuers.le.solvers[3]: give exactly one of http01 or dns01"));
	assert_non_null(
		strstr(msgs, "c.yaml:21:42: issuers.le.solvers[4].dns01.resolvers: \"a b\" is not host, host:port"));
	assert_non_null(strstr(msgs, "c.yaml:21:74: propagation.interval: duration"));
	assert_non_null(
		strstr(msgs, "c.yaml:23:28: issuers.le.solvers[5].match.dnsNames: \"bad name!\" is not a DNS name"));
	assert_non_null(strstr(msgs, "c.yaml:23:42: unknown field \"hosts\""));
	assert_non_null(strstr(msgs, "c.yaml:25:16: issuers.le.solvers[6].match: give dnsNames or dnsZones"));
	free(msgs);
}

static void test_acme_config_required_fields(void **state)
{
	char *msgs;
	struct config *c = parse("  le:\n    type: acme\n    email: a@b.test\n", &msgs);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(msgs, "c.yaml:6:5: issuers.le: directory is required"));
	assert_non_null(strstr(msgs, "c.yaml:6:5: issuers.le: solvers is required"));
	free(msgs);
	c = parse("  le:\n    type: acme\n    directory: https://a.test/d\n    solvers: []\n", &msgs);
	assert_null(c);
	assert_non_null(strstr(msgs, "c.yaml:8:14: issuers.le.solvers: give 1 to 64 solvers"));
	free(msgs);
}

static void test_acme_config_account_key_sizes(void **state)
{
	char *msgs;
	struct config *c = parse("  le:\n    type: acme\n    directory: https://a.test/d\n"
				 "    accountKey: {size: 384}\n    solvers: [{http01: {serve: true}}]\n",
				 &msgs);

	(void)state;
	assert_string_equal(msgs, "");
	assert_int_equal(acme_of(c, "le")->account_alg, CRYPTO_ECDSA);
	assert_int_equal(acme_of(c, "le")->account_size, 384);
	config_free(c);
	free(msgs);
	c = parse("  le:\n    type: acme\n    directory: https://a.test/d\n"
		  "    accountKey: {algorithm: RSA, size: 384}\n    solvers: [{http01: {serve: true}}]\n",
		  &msgs);
	assert_null(c);
	assert_non_null(strstr(msgs, "c.yaml:8:40: accountKey.size: 384 is not 2048, 3072 or 4096 (RSA)"));
	free(msgs);
}

/* Loopback plain http is allowed (a local step-ca or test server). */
static void test_acme_config_loopback_http(void **state)
{
	char *msgs;
	struct config *c = parse("  le:\n    type: acme\n    directory: http://127.0.0.1:14000/dir\n"
				 "    solvers: [{http01: {serve: true}}]\n",
				 &msgs);

	(void)state;
	assert_string_equal(msgs, "");
	config_free(c);
	free(msgs);
}

/* config_check: a dns01 provider must name an issuer that offers a DNS driver. */
static void test_acme_config_dns01_provider_checked(void **state)
{
	char *msgs;
	struct config *c = parse("  le:\n    type: acme\n    directory: https://a.test/d\n    solvers:\n"
				 "      - dns01: {provider: nobody}\n      - dns01: {provider: le}\n",
				 &msgs);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(msgs, "c.yaml:9:9: issuers.le.solvers[0].dns01.provider: no issuer named \"nobody\""));
	assert_non_null(strstr(msgs, "c.yaml:10:9: issuers.le.solvers[1].dns01.provider: issuer \"le\" (type acme) "
				     "cannot place DNS records"));
	free(msgs);
}

static struct config *matcher_config(void)
{
	char *msgs;
	struct config *c = parse(DNS "  le:\n    type: acme\n    directory: https://a.test/d\n    solvers:\n"
				     "      - http01: {webroot: /w1}\n        match: {dnsNames: [www.example.com]}\n"
				     "      - http01: {serve: true}\n        match: {dnsZones: [internal.example]}\n"
				     "      - dns01: {provider: dns}\n        match: {dnsZones: [example.com]}\n",
				 &msgs);

	assert_string_equal(msgs, "");
	free(msgs);
	return c;
}

static void describe(const struct acme *a, const char *name, char *out, size_t n)
{
	const struct acme_solver *s = acme_solver_for(a, name);

	if (s)
		acme_solver_describe(s, out, n);
	else
		snprintf(out, n, "none");
}

/* First match wins; zones cover themselves and every name under them; wildcards only take dns01. */
static void test_acme_solver_for_first_match(void **state)
{
	struct config *c = matcher_config();
	const struct acme *a = acme_of(c, "le");
	char d[128];

	(void)state;
	describe(a, "www.example.com", d, sizeof(d));
	assert_string_equal(d, "http-01 webroot /w1");
	describe(a, "WWW.EXAMPLE.COM", d, sizeof(d));
	assert_string_equal(d, "http-01 webroot /w1");
	describe(a, "internal.example", d, sizeof(d));
	assert_string_equal(d, "http-01 serve");
	describe(a, "a.b.internal.example", d, sizeof(d));
	assert_string_equal(d, "http-01 serve");
	describe(a, "notinternal.example", d, sizeof(d));
	assert_string_equal(d, "none");
	describe(a, "api.example.com", d, sizeof(d));
	assert_string_equal(d, "dns-01 via dns");
	describe(a, "*.example.com", d, sizeof(d));
	assert_string_equal(d, "dns-01 via dns");
	describe(a, "*.internal.example", d, sizeof(d)); /* only http-01 matches: no solver for a wildcard */
	assert_string_equal(d, "none");
	describe(a, "other.test", d, sizeof(d));
	assert_string_equal(d, "none");
	config_free(c);
}

static struct cert_spec *spec_of(const char *name, const char *const *names, size_t n)
{
	struct cert_spec *s = xcalloc(1, sizeof(*s));

	s->name = xstrdup(name);
	s->file = xstrdup("certs/web.yaml");
	s->line = 4;
	s->col = 9;
	s->dns_names = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		s->dns_names[s->n_dns++] = xstrdup(names[i]);
	return s;
}

/* validate: a name no solver matches and a wildcard without dns01, each naming the certificate and the name. */
static void test_acme_check_spec_names_and_wildcards(void **state)
{
	static const char *const names[] = {"*.internal.example", "other.test", "www.example.com", "*.example.com"};
	struct config *c = matcher_config();
	struct cert_spec *s = spec_of("web", names, 4);
	struct diags d = DIAGS_INIT;
	char *msgs;

	(void)state;
	acme_check_spec(config_issuer(c, "le"), s, &d);
	msgs = joined(&d);
	assert_int_equal(d.n, 2);
	assert_non_null(strstr(msgs, "certs/web.yaml:4:9: certificate \"web\": wildcard *.internal.example needs a "
				     "dns01 solver"));
	assert_non_null(
		strstr(msgs, "certs/web.yaml:4:9: certificate \"web\": no solver of issuer le matches other.test"));
	free(msgs);
	diags_free(&d);
	cert_spec_free(s);
	config_free(c);
}

/* plan: free, the ACME steps, and the solver per name in the detail. */
static void test_acme_plan_steps_and_detail(void **state)
{
	static const char *const names[] = {"*.example.com", "www.example.com"};
	struct config *c = matcher_config();
	const struct issuer *is = config_issuer(c, "le");
	struct cert_spec *s = spec_of("web", names, 2);
	struct state_cert rec;
	struct plan_steps ps;

	(void)state;
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(is->ops->plan(is, CHANGE_CREATE, s, NULL, &ps), 0);
	assert_int_equal(ps.paid, 0);
	assert_int_equal(ps.n, 7);
	assert_string_equal(ps.steps[0], "prepare");
	assert_string_equal(ps.steps[2], "authorize");
	assert_string_equal(ps.steps[6], "cleanup");
	assert_string_equal(ps.detail, "*.example.com: dns-01 via dns; www.example.com: http-01 webroot /w1");
	/* a resumed change goes on from its step; the solvers are only worth showing while answers are ahead */
	rec.step = "authorize";
	assert_int_equal(is->ops->plan(is, CHANGE_RESUME, s, &rec, &ps), 0);
	assert_int_equal(ps.n, 5);
	assert_string_equal(ps.steps[0], "authorize");
	assert_string_equal(ps.detail, "*.example.com: dns-01 via dns; www.example.com: http-01 webroot /w1");
	rec.step = "finalize";
	assert_int_equal(is->ops->plan(is, CHANGE_RESUME, s, &rec, &ps), 0);
	assert_int_equal(ps.n, 4);
	assert_string_equal(ps.steps[0], "finalize");
	assert_string_equal(ps.detail, "");
	assert_int_equal(is->ops->plan(is, CHANGE_REINSTALL, s, NULL, &ps), 0);
	assert_int_equal(ps.n, 1);
	assert_string_equal(ps.steps[0], "reinstall");
	assert_string_equal(ps.detail, "");
	assert_int_equal(ps.paid, 0);
	cert_spec_free(s);
	config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acme_config_defaults),
		cmocka_unit_test(test_acme_config_every_field),
		cmocka_unit_test(test_acme_config_dns01_defaults),
		cmocka_unit_test(test_acme_config_errors_are_located),
		cmocka_unit_test(test_acme_config_required_fields),
		cmocka_unit_test(test_acme_config_account_key_sizes),
		cmocka_unit_test(test_acme_config_loopback_http),
		cmocka_unit_test(test_acme_config_dns01_provider_checked),
		cmocka_unit_test(test_acme_solver_for_first_match),
		cmocka_unit_test(test_acme_check_spec_names_and_wildcards),
		cmocka_unit_test(test_acme_plan_steps_and_detail),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
