/*
 * The ACME client's pure parts: problem documents (parsing, text, the
 * classification table), Link headers, the directory, orders and
 * authorizations from untrusted JSON, the nonce pool's bounds, error
 * mapping of non-problem answers, the ARI certificate id, and ARI requests
 * against a small local server (tests/unit/fake_acme_ari.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../reconciler/providers/acme.h"
#include "../../reconciler/providers/acme_client_int.h"
#include "../../reconciler/providers/acme_wire.h"
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/util.h"
#include "testutil.h"

#define ELLIPSIS "\xe2\x80\xa6"

static const struct acme_wire W = {"le", "acme getOrder", "https://ca.test:14000/order/7?x=1"};

/* ---------- problem documents ---------- */

static const char PROBLEM[] =
	"{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\",\"detail\":\"Error creating new order :: "
	"policy forbids\",\"status\":400,\"subproblems\":[{\"type\":\"urn:ietf:params:acme:error:caa\",\"detail\":"
	"\"CAA record forbids issuance\",\"identifier\":{\"type\":\"dns\",\"value\":\"www.x.test\"}},{\"type\":"
	"\"urn:ietf:params:acme:error:rejectedIdentifier\",\"detail\":\"blocked\",\"identifier\":{\"type\":\"dns\","
	"\"value\":\"bad.x.test\"}}]}";

static void test_problem_parses_subproblems_with_their_identifiers(void **s)
{
	struct acme_problem p;
	char text[512];

	(void)s;
	assert_int_equal(acme_problem_parse(PROBLEM, strlen(PROBLEM), 403, &p), 0);
	assert_string_equal(p.type, "urn:ietf:params:acme:error:rejectedIdentifier");
	assert_string_equal(acme_problem_short(&p), "rejectedIdentifier");
	assert_true(acme_problem_is(&p, "rejectedIdentifier"));
	assert_false(acme_problem_is(&p, "rejected"));
	assert_int_equal(p.status, 400); /* the document's own status wins */
	assert_int_equal(p.n_sub, 2);
	assert_string_equal(p.sub[0].identifier, "www.x.test");
	assert_string_equal(acme_problem_short(&p.sub[0]), "caa");
	acme_problem_text(&p, text, sizeof(text));
	assert_string_equal(text, "rejectedIdentifier (400): Error creating new order :: policy forbids [www.x.test: "
				  "caa: CAA record forbids issuance; bad.x.test: rejectedIdentifier: blocked]");
	acme_problem_free(&p);
	acme_problem_free(&p); /* twice is harmless */
}

static void test_problem_text_is_cut_on_a_utf8_boundary(void **s)
{
	const char *doc = "{\"type\":\"urn:ietf:params:acme:error:dns\",\"detail\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
			  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}";
	struct acme_problem p;

	(void)s;
	assert_int_equal(acme_problem_parse(doc, strlen(doc), 400, &p), 0);
	for (size_t n = 12; n < 40; n++) {
		char text[64];
		size_t len;

		memset(text, 'x', sizeof(text));
		acme_problem_text(&p, text, n);
		len = strlen(text);
		assert_true(len < n);
		assert_true(len >= 3 && !strcmp(text + len - 3, ELLIPSIS));
		/* what precedes the ellipsis is whole characters: no dangling lead byte */
		assert_false(len >= 4 && ((unsigned char)text[len - 4] & 0xE0) == 0xC0);
		assert_int_equal(strncmp(text, "dns (400): ", n - 4 < 11 ? n - 4 : 11), 0);
	}
	acme_problem_free(&p);
}

static void test_problem_without_status_or_detail_and_with_control_characters(void **s)
{
	const char *doc = "{\"type\":\"https://ca.test/custom\",\"detail\":\"two\\nlines\\u0007\"}";
	const char *bare = "{\"type\":\"urn:ietf:params:acme:error:serverInternal\"}";
	struct acme_problem p;
	char text[128];

	(void)s;
	assert_int_equal(acme_problem_parse(doc, strlen(doc), 0, &p), 0);
	assert_string_equal(acme_problem_short(&p), "https://ca.test/custom"); /* not an ACME URN: whole */
	acme_problem_text(&p, text, sizeof(text));
	assert_string_equal(text, "https://ca.test/custom: two lines ");
	acme_problem_free(&p);
	assert_int_equal(acme_problem_parse(bare, strlen(bare), 500, &p), 0);
	acme_problem_text(&p, text, sizeof(text));
	assert_string_equal(text, "serverInternal (500)");
	acme_problem_free(&p);
}

static void test_problem_refuses_what_is_not_one(void **s)
{
	static const char *const bad[] = {
		"",
		"not json",
		"[1,2]",
		"{}",
		"{\"type\":7}",
		"{\"detail\":[\"x\"]}",
		"\"urn:ietf:params:acme:error:dns\"",
	};
	struct acme_problem p;
	char *big;

	(void)s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (acme_problem_parse(bad[i], strlen(bad[i]), 400, &p) != CS_EINVALID)
			fail_msg("\"%s\" parsed as a problem", bad[i]);
		assert_null(p.type);
	}
	big = xmalloc(70000);
	memset(big, ' ', 70000);
	memcpy(big, "{\"type\":\"x\"}", 12);
	assert_int_equal(acme_problem_parse(big, 70000, 400, &p), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "too large"));
	free(big);
}

static void test_problem_keeps_at_most_the_bound_of_subproblems(void **s)
{
	struct buf b = BUF_INIT;
	struct acme_problem p;

	(void)s;
	buf_puts(&b, "{\"type\":\"urn:ietf:params:acme:error:compound\",\"subproblems\":[");
	for (int i = 0; i < 100; i++)
		buf_printf(&b,
			   "%s{\"type\":\"urn:ietf:params:acme:error:dns\",\"identifier\":{\"value\":\"n%d.test\"}}",
			   i ? "," : "", i);
	buf_puts(&b, ",42,{\"detail\":7}]}"); /* malformed entries are skipped */
	assert_int_equal(acme_problem_parse(b.data, b.len, 400, &p), 0);
	assert_int_equal(p.n_sub, ACME_MAX_SUBPROBLEMS);
	assert_string_equal(p.sub[ACME_MAX_SUBPROBLEMS - 1].identifier, "n31.test");
	acme_problem_free(&p);
	buf_free(&b);
}

struct class_case {
	const char *type;
	long status;
	int code;
	const char *cls;
	int challenge_code; /* as a challenge's own error */
	const char *challenge_cls;
};

static void test_problem_classification_follows_the_table(void **s)
{
	static const struct class_case cases[] = {
		{"rateLimited", 429, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{"serverInternal", 500, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{"badNonce", 400, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{"connection", 400, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{"dns", 400, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{"rejectedIdentifier", 400, CS_EINVALID, STATE_FAIL_REJECTED, CS_EINVALID, STATE_FAIL_REJECTED},
		{"caa", 403, CS_EINVALID, STATE_FAIL_REJECTED, CS_EINVALID, STATE_FAIL_REJECTED},
		{"badCSR", 400, CS_EINVALID, STATE_FAIL_REJECTED, CS_EINVALID, STATE_FAIL_REJECTED},
		{"unsupportedIdentifier", 400, CS_EINVALID, STATE_FAIL_REJECTED, CS_EINVALID, STATE_FAIL_REJECTED},
		{"unauthorized", 403, CS_EAUTH, STATE_FAIL_CONFIG, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{"incorrectResponse", 0, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{"accountDoesNotExist", 400, CS_EAUTH, STATE_FAIL_CONFIG, CS_EAUTH, STATE_FAIL_CONFIG},
		{"externalAccountRequired", 400, CS_EAUTH, STATE_FAIL_CONFIG, CS_EAUTH, STATE_FAIL_CONFIG},
		{"userActionRequired", 403, CS_EAUTH, STATE_FAIL_CONFIG, CS_EAUTH, STATE_FAIL_CONFIG},
		{"badPublicKey", 400, CS_EAUTH, STATE_FAIL_CONFIG, CS_EAUTH, STATE_FAIL_CONFIG},
		{"badSignatureAlgorithm", 400, CS_EAUTH, STATE_FAIL_CONFIG, CS_EAUTH, STATE_FAIL_CONFIG},
		{"orderNotReady", 403, CS_ECONFLICT, STATE_FAIL_TRANSIENT, CS_ECONFLICT, STATE_FAIL_TRANSIENT},
		{"invalidContact", 400, CS_EINVALID, STATE_FAIL_CONFIG, CS_EINVALID, STATE_FAIL_CONFIG},
		{"malformed", 503, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT,
		 STATE_FAIL_TRANSIENT},								 /* any 5xx */
		{"somethingNew", 403, CS_EAUTH, STATE_FAIL_CONFIG, CS_EAUTH, STATE_FAIL_CONFIG}, /* by status */
		{"somethingNew", 400, CS_EINVALID, STATE_FAIL_REJECTED, CS_EINVALID, STATE_FAIL_REJECTED},
		{"somethingNew", 0, CS_ETRANSIENT, STATE_FAIL_TRANSIENT, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
	};

	(void)s;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct class_case *k = &cases[i];
		char *type = xasprintf(ACME_PROBLEM_PREFIX "%s", k->type);
		struct acme_problem p = {type, NULL, k->status, NULL, NULL, 0};
		const char *cls = NULL;
		int code = acme_problem_class(&p, &cls);

		if (code != k->code || strcmp(cls, k->cls))
			fail_msg("%s (%ld): %d/%s, expected %d/%s", k->type, k->status, code, cls, k->code, k->cls);
		code = acme_challenge_problem_class(&p, &cls);
		if (code != k->challenge_code || strcmp(cls, k->challenge_cls))
			fail_msg("challenge %s: %d/%s, expected %d/%s", k->type, code, cls, k->challenge_code,
				 k->challenge_cls);
		free(type);
	}
}

static void test_compound_problem_is_as_bad_as_its_worst_subproblem(void **s)
{
	const char *doc =
		"{\"type\":\"urn:ietf:params:acme:error:compound\",\"status\":403,\"subproblems\":["
		"{\"type\":\"urn:ietf:params:acme:error:dns\"},{\"type\":\"urn:ietf:params:acme:error:caa\"}]}";
	const char *soft = "{\"type\":\"urn:ietf:params:acme:error:compound\",\"status\":403,\"subproblems\":["
			   "{\"type\":\"urn:ietf:params:acme:error:dns\"},{\"type\":\"urn:ietf:params:acme:error:"
			   "connection\"}]}";
	struct acme_problem p;
	const char *cls;

	(void)s;
	assert_int_equal(acme_problem_parse(doc, strlen(doc), 403, &p), 0);
	assert_int_equal(acme_problem_class(&p, &cls), CS_EINVALID);
	assert_string_equal(cls, STATE_FAIL_REJECTED);
	acme_problem_free(&p);
	assert_int_equal(acme_problem_parse(soft, strlen(soft), 403, &p), 0);
	assert_int_equal(acme_problem_class(&p, &cls), CS_ETRANSIENT);
	assert_string_equal(cls, STATE_FAIL_TRANSIENT);
	acme_problem_free(&p);
}

/* ---------- Link headers and URLs ---------- */

static void test_links_parse_several_headers_entries_and_quoted_params(void **s)
{
	struct http_header h[] = {
		{"link", "<https://a.test/next>;rel=\"next\", <https://a.test/alt1>; rel=\"alternate up\""},
		{"link", "</rel/path>;rel=alternate"},
		{"content-type", "application/pem-certificate-chain"},
		{"link", "<https://a.test/q>; title=\"a, b; c\"; rel=\"alternate\""},
		{"link", "garbage"},
		{"link", "<ftp://a.test/x>;rel=\"alternate\", <https://a.test/idx>;rel=\"index\""},
		{"link", "<https://a.test/sp ace>;rel=\"alternate\""},
	};
	struct http_response res;
	char *out[8];
	size_t n;

	(void)s;
	memset(&res, 0, sizeof(res));
	res.headers = h;
	res.n_headers = sizeof(h) / sizeof(h[0]);
	n = acme_links(&res, "https://ca.test:14000/cert/1", "alternate", out, 8);
	assert_int_equal(n, 3);
	assert_string_equal(out[0], "https://a.test/alt1");
	assert_string_equal(out[1], "https://ca.test:14000/rel/path");
	assert_string_equal(out[2], "https://a.test/q");
	for (size_t i = 0; i < n; i++)
		free(out[i]);
	n = acme_links(&res, "https://ca.test:14000/cert/1", "next", out, 8);
	assert_int_equal(n, 1);
	assert_string_equal(out[0], "https://a.test/next");
	free(out[0]);
	assert_int_equal(acme_links(&res, "https://ca.test/", "alternate", out, 2), 2); /* bounded */
	free(out[0]);
	free(out[1]);
	assert_int_equal(acme_links(&res, "https://ca.test/", "up", out, 8), 1); /* one of several rels */
	free(out[0]);
}

static void test_url_path_and_resolve(void **s)
{
	char path[64], *u;

	(void)s;
	acme_url_path("https://ca.test:14000/acme/order/7?token=x#f", path, sizeof(path));
	assert_string_equal(path, "/acme/order/7");
	acme_url_path("https://ca.test", path, sizeof(path));
	assert_string_equal(path, "/");
	assert_non_null(u = acme_url_resolve("https://ca.test:1/a/b", "/c"));
	assert_string_equal(u, "https://ca.test:1/c");
	free(u);
	assert_null(acme_url_resolve("https://ca.test/", "javascript:alert(1)"));
	assert_null(acme_url_resolve("https://ca.test/", "//evil.test/x"));
	assert_null(acme_url_resolve("https://ca.test/", "https://a.test/\x01"));
	assert_null(acme_url_resolve("https://ca.test/", ""));
}

/* ---------- directory ---------- */

static void test_directory_with_meta_renewal_info_and_profiles(void **s)
{
	const char *doc =
		"{\"newNonce\":\"https://ca.test/nonce\",\"newAccount\":\"https://ca.test/acct\",\"newOrder\":"
		"\"https://ca.test/order\",\"revokeCert\":\"https://ca.test/revoke\",\"renewalInfo\":"
		"\"https://ca.test/ari/\",\"meta\":{\"termsOfService\":\"https://ca.test/tos.pdf\","
		"\"externalAccountRequired\":true,\"caaIdentities\":[\"ca.test\"],\"profiles\":{\"classic\":"
		"\"the usual\",\"tlsserver\":\"short-lived\"}},\"xYz\":\"https://community.test/\"}";
	struct acme_directory d;

	(void)s;
	assert_int_equal(acme_directory_parse(&W, doc, strlen(doc), &d), 0);
	assert_string_equal(d.new_nonce, "https://ca.test/nonce");
	assert_string_equal(d.renewal_info, "https://ca.test/ari/");
	assert_null(d.key_change);
	assert_string_equal(d.terms_of_service, "https://ca.test/tos.pdf");
	assert_true(d.eab_required);
	assert_int_equal(d.n_profiles, 2);
	assert_true(!strcmp(d.profiles[0], "tlsserver") || !strcmp(d.profiles[1], "tlsserver"));
	assert_int_equal(d.n_caa_identities, 1);
	assert_string_equal(d.caa_identities[0], "ca.test");
	acme_directory_free(&d);
}

static void test_directory_that_is_malformed_is_one_transient_message(void **s)
{
	static const struct {
		const char *doc, *why;
	} bad[] = {
		{"[]", "not a JSON object"},
		{"{\"newAccount\":\"https://a/\",\"newOrder\":\"https://a/\"}", "no \"newNonce\""},
		{"{\"newNonce\":\"https://a/\",\"newAccount\":\"https://a/\",\"newOrder\":\"javascript:x\"}",
		 "\"newOrder\" is not an http(s) URL"},
		{"{\"newNonce\":\"https://a/\",\"newAccount\":\"https://a/\",\"newOrder\":7}",
		 "\"newOrder\" is not a string"},
		{"{\"newNonce\":\"https://a/\",\"newAccount\":\"https://a/\",\"newOrder\":\"https://a/\",\"meta\":{"
		 "\"externalAccountRequired\":\"yes\"}}",
		 "not a boolean"},
		{"{\"newNonce\":\"https://a/\",\"newAccount\":\"https://a/\",\"newOrder\":\"https://a/\",\"meta\":[]}",
		 "\"meta\" is not an object"},
	};
	struct acme_directory d;
	struct acme_wire w = {"le", "acme directory", "https://ca.test/directory"};

	(void)s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(acme_directory_parse(&w, bad[i].doc, strlen(bad[i].doc), &d), CS_ETRANSIENT);
		assert_non_null(strstr(cs_errmsg(), "issuer le: acme directory /directory: malformed answer"));
		if (!strstr(cs_errmsg(), bad[i].why))
			fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].doc, cs_errmsg(), bad[i].why);
	}
}

/* ---------- orders and authorizations ---------- */

static void test_order_parses_and_bounds_its_lists(void **s)
{
	const char *ok =
		"{\"status\":\"valid\",\"expires\":\"2030-01-02T03:04:05Z\",\"identifiers\":[{\"type\":\"dns\","
		"\"value\":\"*.x.test\"}],\"authorizations\":[\"https://ca.test/authz/1\"],\"finalize\":"
		"\"https://ca.test/fin/1\",\"certificate\":\"https://ca.test/cert/1\",\"replaces\":\"aa.bb\"}";
	struct acme_order o;
	struct buf b = BUF_INIT;

	(void)s;
	assert_int_equal(acme_order_parse(&W, ok, strlen(ok), &o), 0);
	assert_string_equal(o.status, "valid");
	assert_int_equal(o.expires, 1893553445);
	assert_string_equal(o.identifiers[0], "*.x.test");
	assert_string_equal(o.authorizations[0], "https://ca.test/authz/1");
	assert_string_equal(o.certificate, "https://ca.test/cert/1");
	assert_string_equal(o.replaces, "aa.bb");
	assert_null(o.error.type);
	acme_order_free(&o);

	/* 101 authorizations */
	buf_puts(&b,
		 "{\"status\":\"pending\",\"identifiers\":[],\"finalize\":\"https://ca.test/f\",\"authorizations\":[");
	for (int i = 0; i <= ACME_MAX_AUTHZ; i++)
		buf_printf(&b, "%s\"https://ca.test/authz/%d\"", i ? "," : "", i);
	buf_puts(&b, "]}");
	assert_int_equal(acme_order_parse(&W, b.data, b.len, &o), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "issuer le: acme getOrder /order/7: malformed answer"));
	assert_non_null(strstr(cs_errmsg(), "\"authorizations\" lists 101 entries"));
	buf_free(&b);

	static const char *const bad[] = {
		"{\"status\":\"weird\",\"identifiers\":[],\"authorizations\":[],\"finalize\":\"https://a/\"}",
		"{\"status\":\"valid\",\"identifiers\":[],\"authorizations\":[],\"finalize\":\"https://a/\"}",
		"{\"status\":\"ready\",\"identifiers\":[{\"value\":\"\"}],\"authorizations\":[],\"finalize\":\"https://"
		"a/\"}",
		"{\"status\":\"ready\",\"identifiers\":[],\"authorizations\":[7],\"finalize\":\"https://a/\"}",
		"{\"status\":\"ready\",\"identifiers\":[],\"authorizations\":[]}",
		"{\"status\":\"ready\",\"identifiers\":[],\"authorizations\":[],\"finalize\":\"https://a/"
		"\",\"expires\":"
		"\"soon\"}",
		"{\"status\":\"invalid\",\"identifiers\":[],\"authorizations\":[],\"finalize\":\"https://a/"
		"\",\"error\":"
		"\"bad\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (acme_order_parse(&W, bad[i], strlen(bad[i]), &o) != CS_ETRANSIENT)
			fail_msg("accepted: %s", bad[i]);
}

static void test_order_payload_lists_identifiers_profile_and_replaces(void **s)
{
	char *names[] = {"www.x.test", "*.x.test", "q\"uote.test"}, *out = NULL, *many[ACME_MAX_AUTHZ + 1];
	char long_name[300];

	(void)s;
	assert_int_equal(acme_order_payload("le", names, 3, "tlsserver", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", &out),
			 0);
	assert_string_equal(out, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"www.x.test\"},{\"type\":\"dns\","
				 "\"value\":\"*.x.test\"},{\"type\":\"dns\",\"value\":\"q\\\"uote.test\"}],"
				 "\"profile\":\"tlsserver\",\"replaces\":\"aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE\"}");
	free(out);
	assert_int_equal(acme_order_payload("le", names, 1, NULL, NULL, &out), 0);
	assert_string_equal(out, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"www.x.test\"}]}");
	free(out);
	assert_int_equal(acme_order_payload("le", names, 0, NULL, NULL, &out), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "issuer le: "));
	for (int i = 0; i <= ACME_MAX_AUTHZ; i++)
		many[i] = names[0];
	assert_int_equal(acme_order_payload("le", many, ACME_MAX_AUTHZ + 1, NULL, NULL, &out), CS_EINVALID);
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	many[0] = long_name;
	assert_int_equal(acme_order_payload("le", many, 1, NULL, NULL, &out), CS_EINVALID);
}

static void test_order_error_is_a_problem(void **s)
{
	const char *doc =
		"{\"status\":\"invalid\",\"identifiers\":[],\"authorizations\":[],\"finalize\":\"https://a/\","
		"\"error\":{\"type\":\"urn:ietf:params:acme:error:caa\",\"detail\":\"CAA forbids\"}}";
	struct acme_order o;

	(void)s;
	assert_int_equal(acme_order_parse(&W, doc, strlen(doc), &o), 0);
	assert_true(acme_problem_is(&o.error, "caa"));
	assert_string_equal(o.error.detail, "CAA forbids");
	acme_order_free(&o);
}

static void test_authz_parses_challenges_and_refuses_unsafe_tokens(void **s)
{
	const char *ok =
		"{\"identifier\":{\"type\":\"dns\",\"value\":\"x.test\"},\"status\":\"pending\",\"wildcard\":"
		"true,\"challenges\":[{\"type\":\"dns-01\",\"url\":\"https://ca.test/ch/1\",\"status\":"
		"\"pending\",\"token\":\"DGyRejmCefe7v4NfDGDKfA\"},{\"type\":\"http-01\",\"url\":"
		"\"https://ca.test/ch/2\",\"status\":\"invalid\",\"token\":\"LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDf\","
		"\"error\":{\"type\":\"urn:ietf:params:acme:error:connection\",\"detail\":\"refused\"}}]}";
	struct acme_authz a;

	(void)s;
	assert_int_equal(acme_authz_parse(&W, ok, strlen(ok), &a), 0);
	assert_string_equal(a.identifier, "x.test");
	assert_true(a.wildcard);
	assert_int_equal(a.n_challenges, 2);
	assert_string_equal(a.challenges[0].type, "dns-01");
	assert_string_equal(a.challenges[0].token, "DGyRejmCefe7v4NfDGDKfA");
	assert_true(acme_problem_is(&a.challenges[1].error, "connection"));
	acme_authz_free(&a);

	static const char *const bad[] = {
		/* a token that could leave the web root */
		"{\"identifier\":{\"type\":\"dns\",\"value\":\"x.test\"},\"status\":\"pending\",\"challenges\":[{"
		"\"type\":"
		"\"http-01\",\"url\":\"https://a/\",\"status\":\"pending\",\"token\":\"../../../../etc/passwd\"}]}",
		"{\"identifier\":{\"type\":\"ip\",\"value\":\"10.0.0.1\"},\"status\":\"pending\",\"challenges\":[]}",
		"{\"identifier\":{\"type\":\"dns\",\"value\":\"x.test\"},\"status\":\"pending\",\"challenges\":{}}",
		"{\"identifier\":{\"type\":\"dns\",\"value\":\"x.test\"},\"status\":\"pending\",\"wildcard\":1,"
		"\"challenges\":[]}",
		"{\"status\":\"pending\",\"challenges\":[]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (acme_authz_parse(&W, bad[i], strlen(bad[i]), &a) != CS_ETRANSIENT)
			fail_msg("accepted: %s", bad[i]);
}

/* ---------- the client without a server ---------- */

static struct acme_client *offline_client(void)
{
	struct acme_client_opts o = {"le", "https://127.0.0.1:9/dir", NULL, 5, "certsync-test"};
	struct acme_client *c = NULL;

	assert_int_equal(acme_client_new(&o, &c), 0);
	return c;
}

static void test_nonce_pool_keeps_valid_nonces_within_its_bound(void **s)
{
	struct acme_client *c = offline_client();
	struct http_header h[1];
	struct http_response res;
	char nonce[64];

	(void)s;
	memset(&res, 0, sizeof(res));
	res.headers = h;
	res.n_headers = 1;
	h[0].name = "replay-nonce";
	for (int i = 0; i < ACME_MAX_NONCES + 8; i++) {
		snprintf(nonce, sizeof(nonce), "nonce-%d_ok", i);
		h[0].value = nonce;
		acme_nonce_keep(c, &res);
	}
	assert_int_equal(acme_nonce_count(c), ACME_MAX_NONCES);
	assert_string_equal(c->nonces[0], "nonce-8_ok"); /* the oldest went first */
	h[0].value = "not a nonce";
	acme_nonce_keep(c, &res);
	h[0].value = "";
	acme_nonce_keep(c, &res);
	assert_int_equal(acme_nonce_count(c), ACME_MAX_NONCES);
	assert_string_equal(c->nonces[ACME_MAX_NONCES - 1], "nonce-39_ok");
	acme_client_free(c);
}

static void test_answers_that_are_not_problems_map_by_status(void **s)
{
	struct acme_client *c = offline_client();
	struct http_response res;
	struct acme_problem p;
	const char *rl = "{\"type\":\"urn:ietf:params:acme:error:rateLimited\",\"detail\":\"too many new orders\"}";

	(void)s;
	memset(&res, 0, sizeof(res));
	res.status = 502;
	res.content_type = "text/html";
	buf_puts(&res.body, "<html><body>Bad Gateway</body></html>");
	assert_int_equal(acme_client_fail(c, "acme newOrder", "https://ca.test/new-order", &res, &p), CS_ETRANSIENT);
	assert_string_equal(cs_errmsg(), "issuer le: acme newOrder /new-order: HTTP 502: an HTML page");
	assert_string_equal(provider_fail_class_take(), STATE_FAIL_TRANSIENT);
	assert_null(p.type);
	buf_free(&res.body);

	res.status = 404;
	res.content_type = "text/plain";
	buf_puts(&res.body, "no\nsuch thing");
	assert_int_equal(acme_client_fail(c, "acme getOrder", "https://ca.test/o/1", &res, NULL), CS_ENOTFOUND);
	assert_string_equal(cs_errmsg(), "issuer le: acme getOrder /o/1: HTTP 404: no such thing");
	buf_free(&res.body);

	res.status = 429;
	res.content_type = "application/problem+json";
	buf_puts(&res.body, rl);
	assert_int_equal(acme_client_fail(c, "acme newOrder", "https://ca.test/new-order", &res, &p), CS_ETRANSIENT);
	assert_string_equal(cs_errmsg(), "issuer le: acme newOrder /new-order: rateLimited (429): too many new orders");
	assert_string_equal(provider_fail_class_take(), STATE_FAIL_TRANSIENT);
	assert_true(acme_problem_is(&p, "rateLimited"));
	acme_problem_free(&p);
	buf_free(&res.body);

	/* a POST before the account is known */
	assert_int_equal(acme_client_post(c, "acme getOrder", "https://ca.test/o/1", NULL, NULL, &res, &p), CS_ERROR);
	assert_non_null(strstr(cs_errmsg(), "before the ACME account was registered"));
	acme_client_free(c);
}

/* ---------- ARI ---------- */

/*
 * A leaf with AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4 and serial 0x87654321 (RFC
 * 9773 §4.1's example values), made with:
 *   openssl req -x509 -newkey ec ... -subj "/CN=ARI test CA" -addext subjectKeyIdentifier=69:88:5B:...:D4
 *   openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 0x87654321 \
 *     -extfile <(printf 'authorityKeyIdentifier=keyid\nsubjectAltName=DNS:ari.test\n')
 * and the same leaf with authorityKeyIdentifier=none.
 */
static const char ARI_LEAF[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIBdDCCARugAwIBAgIFAIdlQyEwCgYIKoZIzj0EAwIwFjEUMBIGA1UEAwwLQVJJ\n"
			       "IHRlc3QgQ0EwIBcNMjYxMjA1MTMyNjQ2WhgPMjEyNjExMTExMzI2NDZaMBMxETAP\n"
			       "BgNVBAMMCGFyaS50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFB4ddeGt\n"
			       "wyCaOPkDdBVdGEOPIxl6KLENCKa72L7hT5fJdUN9J0aPQChYkP/RhARhBtVHN07C\n"
			       "eoScpSES1cGXGqNXMFUwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4ByNQw\n"
			       "EwYDVR0RBAwwCoIIYXJpLnRlc3QwHQYDVR0OBBYEFNuTvZ7SUebAiYeHLRM3CTgm\n"
			       "rGVwMAoGCCqGSM49BAMCA0cAMEQCICblPeFjw8S8dTaQ8lRID3dv8lV7Fz+yR7lx\n"
			       "3kF0Dk0XAiA5cuaexbkcHfnyoiH07RgLRvZBY0BXUjGLP4Ta0eJSlA==\n"
			       "-----END CERTIFICATE-----\n";
static const char ARI_NO_AKI[] = "-----BEGIN CERTIFICATE-----\n"
				 "MIIBMTCB2KADAgECAgIBAjAKBggqhkjOPQQDAjAWMRQwEgYDVQQDDAtBUkkgdGVz\n"
				 "dCBDQTAgFw0yNjEyMDUxMzI2NTBaGA8yMTI2MTExMTEzMjY1MFowEzERMA8GA1UE\n"
				 "AwwIYXJpLnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQUHh114a3DIJo4\n"
				 "+QN0FV0YQ48jGXoosQ0IprvYvuFPl8l1Q30nRo9AKFiQ/9GEBGEG1Uc3TsJ6hJyl\n"
				 "IRLVwZcaoxcwFTATBgNVHREEDDAKgghhcmkudGVzdDAKBggqhkjOPQQDAgNIADBF\n"
				 "AiEA8wZ1LdJsT6tYXbuwMqCt/OG+YHnDMWsdB08JdcI6QZ8CIH+oBkBPobbc+RGZ\n"
				 "62MLCe0nGBh+SwrLF2V/kBQLZCbv\n"
				 "-----END CERTIFICATE-----\n";

static void test_ari_cert_id_is_aki_and_serial_content_octets(void **s)
{
	char *id = NULL;
	struct buf der = BUF_INIT;

	(void)s;
	assert_int_equal(acme_ari_cert_id(ARI_LEAF, strlen(ARI_LEAF), &id), 0);
	assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"); /* RFC 9773 §4.1 */
	free(id);
	id = NULL;
	assert_int_equal(acme_ari_cert_id(ARI_NO_AKI, strlen(ARI_NO_AKI), &id), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "no authority key identifier"));
	assert_null(id);
	assert_int_equal(acme_ari_cert_id("garbage", 7, &id), CS_EINVALID);
	/* the DER of the same certificate, as revokeCert sends it */
	assert_int_equal(jose_pem_to_der(ARI_LEAF, strlen(ARI_LEAF), "CERTIFICATE", &der), 0);
	assert_int_equal((unsigned char)der.data[0], 0x30);
	assert_int_equal(der.len, 0x174 + 4);
	assert_int_equal(jose_pem_to_der(ARI_LEAF, strlen(ARI_LEAF), "CERTIFICATE REQUEST", &der), CS_EINVALID);
	buf_free(&der);
}

static void test_ari_retry_after_is_clamped(void **s)
{
	(void)s;
	assert_int_equal(acme_retry_after_clamp(1000 + 5, 1000), 1000 + 60);
	assert_int_equal(acme_retry_after_clamp(1000 + 7200, 1000), 1000 + 7200);
	assert_int_equal(acme_retry_after_clamp(1000 + 9999999, 1000), 1000 + 86400);
	assert_int_equal(acme_retry_after_clamp(0, 1000), 1000 + ACME_ARI_DEFAULT_RETRY);
}

static pid_t ari_pid;
static int ari_stdin, ari_port;

static int ari_start(void **state)
{
	int in[2], out[2];
	char line[64] = "";
	char *script = xasprintf("%s/tests/unit/fake_acme_ari.py", test_srcdir());
	FILE *f;

	(void)state;
	if (pipe(in) || pipe(out))
		return -1;
	ari_pid = fork();
	if (ari_pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl("/usr/bin/python3", "python3", script, (char *)NULL);
		_exit(127);
	}
	free(script);
	close(in[0]);
	close(out[1]);
	ari_stdin = in[1];
	f = fdopen(out[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "PORT %d", &ari_port) != 1)
		return -1;
	fclose(f);
	return 0;
}

static int ari_stop(void **state)
{
	(void)state;
	close(ari_stdin);
	kill(ari_pid, SIGTERM);
	waitpid(ari_pid, NULL, 0);
	return 0;
}

static void test_ari_get_reads_the_window_and_clamps_retry_after(void **s)
{
	char *dir = xasprintf("http://127.0.0.1:%d/dir", ari_port);
	struct acme_client_opts o = {"le", dir, NULL, 5, "certsync-test"};
	struct acme_client *c = NULL;
	struct acme_renewal_info ri;
	const struct acme_directory *d;
	int64_t now;

	(void)s;
	assert_int_equal(acme_client_new(&o, &c), 0);
	assert_int_equal(acme_client_directory(c, &d), 0);
	assert_non_null(d->renewal_info);

	now = util_now();
	assert_int_equal(acme_ari_get(c, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.short", &ri), 0);
	assert_int_equal(ri.start, 1893553445);
	assert_int_equal(ri.end, 1893639845);
	assert_string_equal(ri.explanation, "https://ca.test/why");
	assert_true(ri.retry_after >= now + 60 && ri.retry_after <= util_now() + 60);
	acme_renewal_info_free(&ri);

	now = util_now();
	assert_int_equal(acme_ari_get(c, "a.long", &ri), 0);
	assert_true(ri.retry_after >= now + 86400 && ri.retry_after <= util_now() + 86400);
	acme_renewal_info_free(&ri);

	now = util_now();
	assert_int_equal(acme_ari_get(c, "a.hour", &ri), 0);
	assert_true(ri.retry_after >= now + 3600 - 1 && ri.retry_after <= util_now() + 3600 + 1);
	acme_renewal_info_free(&ri);

	assert_int_equal(acme_ari_get(c, "a.none", &ri), 0);
	assert_true(ri.retry_after >= util_now() + ACME_ARI_DEFAULT_RETRY - 5);
	acme_renewal_info_free(&ri);

	assert_int_equal(acme_ari_get(c, "a.bad", &ri), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "issuer le: acme renewalInfo /ari/a.bad: malformed answer"));
	assert_int_equal(acme_ari_get(c, "a.gone", &ri), CS_EINVALID); /* a malformed problem (404) */
	assert_non_null(strstr(cs_errmsg(), "malformed (404): no such certificate"));
	assert_int_equal(acme_ari_get(c, "../../etc", &ri), CS_EINVALID);
	acme_client_free(c);
	free(dir);
}

static void test_directory_url_answering_404_is_a_configuration_error(void **s)
{
	char *dir = xasprintf("http://127.0.0.1:%d/not-the-directory", ari_port);
	struct acme_client_opts o = {"le", dir, NULL, 5, "certsync-test"};
	struct acme_client *c = NULL;
	const struct acme_directory *d;
	struct acme_renewal_info ri;

	(void)s;
	assert_int_equal(acme_client_new(&o, &c), 0);
	assert_int_equal(acme_client_directory(c, &d), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "issuer le: acme directory /not-the-directory: malformed (404)"));
	assert_non_null(strstr(cs_errmsg(), "is `directory` the CA's ACME directory URL?"));
	assert_string_equal(provider_fail_class_take(), STATE_FAIL_CONFIG);
	/* not "no renewal information": the directory itself is wrong */
	assert_int_equal(acme_ari_get(c, "a.b", &ri), CS_EINVALID);
	acme_client_free(c);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_problem_parses_subproblems_with_their_identifiers),
		cmocka_unit_test(test_problem_text_is_cut_on_a_utf8_boundary),
		cmocka_unit_test(test_problem_without_status_or_detail_and_with_control_characters),
		cmocka_unit_test(test_problem_refuses_what_is_not_one),
		cmocka_unit_test(test_problem_keeps_at_most_the_bound_of_subproblems),
		cmocka_unit_test(test_problem_classification_follows_the_table),
		cmocka_unit_test(test_compound_problem_is_as_bad_as_its_worst_subproblem),
		cmocka_unit_test(test_links_parse_several_headers_entries_and_quoted_params),
		cmocka_unit_test(test_url_path_and_resolve),
		cmocka_unit_test(test_directory_with_meta_renewal_info_and_profiles),
		cmocka_unit_test(test_directory_that_is_malformed_is_one_transient_message),
		cmocka_unit_test(test_order_parses_and_bounds_its_lists),
		cmocka_unit_test(test_order_payload_lists_identifiers_profile_and_replaces),
		cmocka_unit_test(test_order_error_is_a_problem),
		cmocka_unit_test(test_authz_parses_challenges_and_refuses_unsafe_tokens),
		cmocka_unit_test(test_nonce_pool_keeps_valid_nonces_within_its_bound),
		cmocka_unit_test(test_answers_that_are_not_problems_map_by_status),
		cmocka_unit_test(test_ari_cert_id_is_aki_and_serial_content_octets),
		cmocka_unit_test(test_ari_retry_after_is_clamped),
		cmocka_unit_test_setup_teardown(test_ari_get_reads_the_window_and_clamps_retry_after, ari_start,
						ari_stop),
		cmocka_unit_test_setup_teardown(test_directory_url_answering_404_is_a_configuration_error, ari_start,
						ari_stop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
