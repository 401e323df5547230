/* The DigiCert driver's pure parts: config, order body, replies, errors, chain split, token placement files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../reconciler/config.h"
#include "../../reconciler/provider.h"
#include "../../reconciler/providers/digicert.h"
#include "../../state/state.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

#define BASE "source: {repo: r}\nstate: {path: s.json}\noutput: {root: o}\nissuers:\n"
#define DNS "  dns:\n    type: dnsimple\n    account: \"1\"\n    token: {env: T}\n    zones: [pizza.company]\n"

/* Parses a config; returns it (or NULL) and the diagnostics joined by newlines in *msgs (caller frees). */
static struct config *parse(const char *issuers, char **msgs)
{
	char *yaml = xasprintf(BASE "%s", issuers);
	struct diags d = DIAGS_INIT;
	struct config *c = NULL;
	struct buf b = BUF_INIT;

	config_parse("/etc/certsync/c.yaml", yaml, strlen(yaml), &c, &d);
	for (size_t i = 0; i < d.n; i++) {
		char *line = diag_format(&d.v[i]);

		buf_printf(&b, "%s\n", line);
		free(line);
	}
	*msgs = buf_detach(&b);
	diags_free(&d);
	free(yaml);
	return c;
}

static const struct digicert *dc_of(const struct config *c)
{
	const struct issuer *is = config_issuer(c, "dc");

	assert_non_null(is);
	return is->priv;
}

static void test_digicert_config_defaults_and_eu(void **state)
{
	char *msgs;
	struct config *c = parse(DNS "  dc:\n    type: digicert\n    apiKey: {env: K}\n    baseURL: EU\n"
				     "    validation: {dns: dns}\n",
				 &msgs);
	const struct digicert *dc;

	(void)state;
	assert_string_equal(msgs, "");
	dc = dc_of(c);
	assert_string_equal(dc->base_url, DIGICERT_EU_URL);
	assert_string_equal(dc->product, "ssl_dv_geotrust");
	assert_string_equal(dc->signature_hash, "sha256");
	assert_int_equal(dc->validity_years, 1);
	assert_int_equal(dc->skip_approval, 1);
	assert_int_equal(dc->method, DC_DNS_TXT);
	assert_string_equal(dc->dns_issuer, "dns");
	assert_int_equal(dc->dnsauth_label, 0);
	assert_null(dc->payment_method);
	config_free(c);
	free(msgs);
}

static void test_digicert_config_full_and_http(void **state)
{
	char *msgs;
	struct config *c =
		parse(DNS "  dc:\n    type: digicert\n    apiKey: {file: /etc/k}\n"
			  "    baseURL: http://127.0.0.1:9/services/v2/\n    product: wildcard_dv_rapidssl\n"
			  "    orderValidity: 397d\n    signatureHash: sha384\n    skipApproval: false\n"
			  "    paymentMethod: profile\n"
			  "    validation:\n      method: http-token\n      http: {webroot: \"/srv/{host}/htdocs\"}\n"
			  "      dns: {issuer: dns, label: _dnsauth}\n",
		      &msgs);
	const struct digicert *dc;
	char *loc;

	(void)state;
	assert_string_equal(msgs, "");
	dc = dc_of(c);
	assert_string_equal(dc->base_url, "http://127.0.0.1:9/services/v2");
	assert_int_equal(dc->validity_days, 397);
	assert_int_equal(dc->validity_years, 0);
	assert_int_equal(dc->skip_approval, 0);
	assert_string_equal(dc->payment_method, "profile");
	assert_int_equal(dc->method, DC_HTTP);
	assert_int_equal(dc->dnsauth_label, 1);
	loc = digicert_dcv_location(dc, DC_HTTP, "www.pizza.company");
	assert_string_equal(loc, "/srv/www.pizza.company/htdocs/.well-known/pki-validation/fileauth.txt");
	free(loc);
	loc = digicert_dcv_location(dc, DC_DNS_TXT, "*.pizza.company");
	assert_string_equal(loc, "_dnsauth.pizza.company");
	free(loc);
	config_free(c);
	free(msgs);
}

static void test_digicert_config_errors_have_positions(void **state)
{
	char *msgs;
	struct config *c = parse(DNS "  dc:\n    type: digicert\n    product: ev_ssl\n    signatureHash: md5\n"
				     "    orderValidity: 5\n    validation: {method: email, label: x, dns: nope}\n",
				 &msgs);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(msgs, "c.yaml:11:5: issuers.dc: apiKey is required"));
	assert_non_null(strstr(msgs, "c.yaml:12:14: product: \"ev_ssl\" is not one of"));
	assert_non_null(strstr(msgs, "c.yaml:13:20: signatureHash: \"md5\" is not one of sha256, sha384, sha512"));
	assert_non_null(strstr(msgs, "c.yaml:14:20: orderValidity: 5 is out of range"));
	assert_non_null(strstr(msgs, "c.yaml:15:26: validation.method: \"email\" is not dns-txt-token or http-token"));
	assert_non_null(strstr(msgs, "c.yaml:15:40: validation.label: \"x\" is not \"@\" or \"_dnsauth\""));
	free(msgs);
	/* a DNS driver reference must name an issuer that has one */
	c = parse(DNS "  dc:\n    type: digicert\n    apiKey: {env: K}\n    validation: {dns: internal}\n"
		      "  internal:\n    type: ca\n    selfSigned: true\n",
		  &msgs);
	assert_null(c);
	assert_non_null(strstr(msgs, "c.yaml:13:23: issuers.dc.validation.dns: issuer \"internal\" (type ca) cannot "
				     "place DNS records"));
	free(msgs);
	c = parse("  dc:\n    type: digicert\n    apiKey: {env: K}\n    validation: {method: http-token}\n", &msgs);
	assert_null(c);
	assert_non_null(strstr(msgs, "validation.webroot is required for http-token"));
	free(msgs);
}

static void test_digicert_order_body_has_what_immediate_issuance_needs(void **state)
{
	struct digicert dc;
	char *names[] = {"pizza.company", "shop.pizza.company", "www.pizza.company"};
	struct digicert_order_req r = {"cloud_dv_geotrust", "pizza.company", names, 3,	 "-----BEGIN CSR-----\nx\n",
				       "dns-txt-token",	    "alt-1",	     0,	    NULL};
	json_error_t je;
	json_t *j;
	char *body;

	(void)state;
	memset(&dc, 0, sizeof(dc));
	dc.signature_hash = "sha256";
	dc.validity_years = 1;
	dc.skip_approval = 1;
	body = digicert_order_body(&dc, &r);
	assert_string_equal(body,
			    "{\"certificate\":{\"common_name\":\"pizza.company\",\"dns_names\":[\"shop.pizza.company\","
			    "\"www.pizza.company\"],\"csr\":\"-----BEGIN CSR-----\\nx\\n\",\"signature_hash\":"
			    "\"sha256\",\"server_platform\":{\"id\":-1}},\"order_validity\":{\"years\":1},"
			    "\"dcv_method\":\"dns-txt-token\",\"use_auth_key\":true,\"skip_approval\":true,"
			    "\"alternative_order_id\":\"alt-1\"}");
	free(body);
	/* a renewal, days, a named AuthKey, a payment method; one name: no dns_names */
	dc.validity_days = 90;
	dc.payment_method = "balance";
	dc.skip_approval = 0;
	r.n_dns = 1;
	r.renewal_of = 4242;
	r.auth_key_id = "77";
	r.dcv_method = "http-token";
	body = digicert_order_body(&dc, &r);
	j = json_loads(body, 0, &je);
	assert_non_null(j);
	assert_null(json_object_get(json_object_get(j, "certificate"), "dns_names"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "order_validity"), "days")), 90);
	assert_int_equal(json_integer_value(json_object_get(j, "renewal_of_order_id")), 4242);
	assert_string_equal(json_string_value(json_object_get(j, "auth_key_id")), "77");
	assert_string_equal(json_string_value(json_object_get(j, "payment_method")), "balance");
	assert_string_equal(json_string_value(json_object_get(j, "dcv_method")), "http-token");
	assert_true(json_is_false(json_object_get(j, "skip_approval")));
	json_decref(j);
	free(body);
}

static void test_digicert_parses_order_replies(void **state)
{
	struct digicert_order o;
	const char *issued = "{\"id\":11,\"certificate_id\":22,\"certificate_chain\":[{\"subject_common_name\":\"a\","
			     "\"pem\":\"LEAF\"},{\"pem\":\"ROOT\\n\"}],\"zz_future\":1}";
	const char *pending =
		"{\"id\":\"12\",\"certificate_id\":23,\"dcv_random_value\":\"r\",\"certificate_chain\":[]}";
	const char *info = "{\"id\":13,\"status\":\"issued\",\"certificate\":{\"id\":24},\"organization\":[]}";
	const char *check = "{\"order_status\":\"pending\",\"dcv_status\":\"pending\"}";

	(void)state;
	assert_int_equal(digicert_parse_order(issued, strlen(issued), "t", &o), 0);
	assert_int_equal(o.id, 11);
	assert_int_equal(o.certificate_id, 22);
	assert_string_equal(o.chain, "LEAF\nROOT\n");
	assert_null(o.status);
	digicert_order_clear(&o);
	assert_int_equal(digicert_parse_order(pending, strlen(pending), "t", &o), 0);
	assert_int_equal(o.id, 12);
	assert_null(o.chain); /* an empty chain is "not issued at once" */
	digicert_order_clear(&o);
	assert_int_equal(digicert_parse_order(info, strlen(info), "t", &o), 0);
	assert_string_equal(o.status, "issued");
	assert_int_equal(o.certificate_id, 24);
	digicert_order_clear(&o);
	assert_int_equal(digicert_parse_order(check, strlen(check), "t", &o), 0);
	assert_string_equal(o.status, "pending");
	digicert_order_clear(&o);
	assert_int_equal(digicert_parse_order("<html>", 6, "orderInfo", &o), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "orderInfo"));
	assert_int_equal(digicert_parse_order("{}", 2, "t", &o), CS_ETRANSIENT);
}

static void test_digicert_finds_the_order_by_alternative_id(void **state)
{
	struct digicert_order o;
	const char *list = "{\"orders\":[{\"id\":1,\"alternative_order_id\":\"other\",\"status\":\"issued\"},"
			   "{\"id\":2,\"alternative_order_id\":\"mine\",\"status\":\"pending\",\"certificate\":"
			   "{\"id\":9}}],\"page\":{\"total\":2}}";
	const char *bare = "{\"orders\":[{\"id\":5,\"status\":\"issued\"}]}";

	(void)state;
	assert_int_equal(digicert_parse_order_list(list, strlen(list), "mine", &o), 0);
	assert_int_equal(o.id, 2);
	assert_int_equal(o.certificate_id, 9);
	assert_string_equal(o.status, "pending");
	digicert_order_clear(&o);
	assert_int_equal(digicert_parse_order_list(list, strlen(list), "nobody", &o), CS_ENOTFOUND);
	assert_int_equal(digicert_parse_order_list(bare, strlen(bare), "x", &o), 0); /* filtered server-side */
	assert_int_equal(o.id, 5);
	digicert_order_clear(&o);
	assert_int_equal(digicert_parse_order_list("{\"orders\":[]}", 13, "x", &o), CS_ENOTFOUND);
	assert_int_equal(digicert_parse_order_list("[]", 2, "x", &o), CS_ETRANSIENT);
}

static void test_digicert_maps_errors_with_code_and_issuer(void **state)
{
	const char *b400 = "{\"errors\":[{\"code\":\"invalid_dns_txt\",\"message\":\"Could not find a valid TXT record "
			   "for one or more domains.\"},{\"code\":\"second\",\"message\":\"m\"}]}";
	const char *b403 = "{\"errors\":[{\"code\":\"access_denied|missing_permission\",\"message\":\"no\"}]}";
	const char *b429 = "{\"errors\":[{\"code\":\"request_limit_exceeded\",\"message\":\"Service unavailable, "
			   "please limit request volume\"}]}";
	char code[64], msg[128];

	(void)state;
	assert_int_equal(digicert_fail("dc", "digicert checkDcv", 400, b400, strlen(b400)), CS_EINVALID);
	/* every error of the array, not only the first */
	assert_string_equal(cs_errmsg(), "issuer dc: digicert checkDcv: HTTP 400 invalid_dns_txt: Could not find a "
					 "valid TXT record for one or more domains.; second: m");
	assert_string_equal(provider_fail_class_take(), STATE_FAIL_REJECTED);
	assert_null(provider_fail_class_take()); /* given back once */
	assert_int_equal(digicert_fail("dc", "op", 401, "", 0), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "issuer dc: DigiCert refused the API key"));
	assert_string_equal(provider_fail_class_take(), STATE_FAIL_CONFIG);
	assert_int_equal(digicert_fail("dc", "op", 403, b403, strlen(b403)), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "access_denied|missing_permission"));
	assert_int_equal(digicert_fail("dc", "op", 404, NULL, 0), CS_ENOTFOUND);
	assert_int_equal(digicert_fail("dc", "op", 429, b429, strlen(b429)), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "request_limit_exceeded"));
	assert_int_equal(digicert_fail("dc", "op", 503, "<html>", 6), CS_ETRANSIENT);
	assert_string_equal(cs_errmsg(), "issuer dc: op: HTTP 503 no error code in the answer");
	/* a later local error is not the provider's: the class is not handed out for it */
	cs_error(CS_EINVALID, "issuer dc: something local");
	assert_null(provider_fail_class_take());
	assert_int_equal(digicert_error_first(b403, strlen(b403), code, sizeof(code), msg, sizeof(msg)), 1);
	assert_true(digicert_code_is(code, "access_denied"));
	assert_false(digicert_code_is(code, "access"));
	assert_true(digicert_code_is("not_found", "not_found"));
	assert_false(digicert_code_is(NULL, "not_found"));
	assert_int_equal(digicert_error_first("nope", 4, code, sizeof(code), msg, sizeof(msg)), 0);
	assert_string_equal(code, "");
	assert_true(digicert_status_terminal("rejected") && digicert_status_terminal("canceled") &&
		    digicert_status_terminal("revoked") && digicert_status_terminal("expired"));
	assert_false(digicert_status_terminal("pending") || digicert_status_terminal("issued") ||
		     digicert_status_terminal("needs_approval") || digicert_status_terminal(NULL));
}

static void test_digicert_splits_chain_into_cert_and_root(void **state)
{
	struct crypto_key *rk, *lk;
	struct crypto_cert *root, *leaf;
	struct buf csr = BUF_INIT, pem = BUF_INIT, root_pem = BUF_INIT, leaf_pem = BUF_INIT, cert = BUF_INIT,
		   ca = BUF_INIT;
	const char *names[] = {"a.test"};
	int64_t now = util_now();

	(void)state;
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &rk), 0);
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &lk), 0);
	assert_int_equal(crypto_ca_create(rk, "Test Root", now - 60, now + 86400, &root), 0);
	assert_int_equal(crypto_csr_create(lk, "a.test", names, 1, &csr), 0);
	assert_int_equal(crypto_sign_csr(root, rk, csr.data, csr.len, now - 60, now + 3600, &leaf), 0);
	crypto_cert_to_pem(leaf, &leaf_pem);
	crypto_cert_to_pem(root, &root_pem);
	buf_printf(&pem, "%s%s", leaf_pem.data, root_pem.data);
	assert_int_equal(digicert_split_chain(pem.data, pem.len, &cert, &ca), 0);
	assert_string_equal(cert.data, leaf_pem.data);
	assert_string_equal(ca.data, root_pem.data);
	/* no root in the chain: the top of the chain is the trust anchor, and stays in tls.crt */
	assert_int_equal(digicert_split_chain(leaf_pem.data, leaf_pem.len, &cert, &ca), 0);
	assert_string_equal(cert.data, leaf_pem.data);
	assert_string_equal(ca.data, leaf_pem.data);
	assert_int_equal(digicert_split_chain("junk", 4, &cert, &ca), CS_EINVALID);
	buf_free(&csr);
	buf_free(&pem);
	buf_free(&root_pem);
	buf_free(&leaf_pem);
	buf_free(&cert);
	buf_free(&ca);
	crypto_cert_free(root);
	crypto_cert_free(leaf);
	crypto_key_free(rk);
	crypto_key_free(lk);
}

static void test_digicert_fileauth_holds_every_token_until_each_is_removed(void **state)
{
	char *dir = test_mkdtemp(), *webroot = fsutil_join(dir, "www"), *path;
	struct digicert dc;
	struct state_cert rec;
	struct step_ctx ctx;
	struct state_token a, b;
	struct buf got = BUF_INIT;
	struct stat st;
	char *ref = NULL;

	(void)state;
	memset(&dc, 0, sizeof(dc));
	memset(&rec, 0, sizeof(rec));
	memset(&ctx, 0, sizeof(ctx));
	pthread_mutex_init(&dc.file_mu, NULL);
	dc.name = "dc";
	dc.webroot = webroot;
	rec.name = "x";
	ctx.rec = &rec;
	ctx.now = 1000;
	/* Journaled first (the intent names the line), placed second. */
	assert_int_equal(digicert_dcv_intent(&ctx, &dc, DC_HTTP, "a.test", "tokenA", &a), 0);
	assert_int_equal(digicert_dcv_intent(&ctx, &dc, DC_HTTP, "b.test", "tokenB", &b), 0);
	assert_string_equal(a.ref, "tokenA");
	assert_false(digicert_ref_is_intent(a.ref)); /* a fileauth.txt line is found by its value already */
	/* removing an intent that was never placed is success and touches nothing */
	assert_int_equal(digicert_dcv_remove(&ctx, &dc, &a, NULL), 0);
	path = digicert_dcv_location(&dc, DC_HTTP, "a.test");
	assert_false(fsutil_exists(path));
	free(path);
	assert_int_equal(digicert_dcv_place(&ctx, &dc, &a, "tokenA", &ref), 0);
	assert_string_equal(ref, "tokenA");
	free(ref);
	assert_int_equal(digicert_dcv_place(&ctx, &dc, &b, "tokenB", &ref), 0);
	free(ref);
	assert_string_equal(a.method, "http-token");
	assert_string_equal(a.name, "a.test");
	assert_int_equal(a.placed_at, 1000);
	path = digicert_dcv_location(&dc, DC_HTTP, "a.test");
	assert_string_equal(a.location, path);
	assert_int_equal(fsutil_read_file(path, 4096, &got), 0);
	assert_string_equal(got.data, "tokenA\ntokenB\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	buf_free(&got);
	assert_int_equal(digicert_dcv_remove(&ctx, &dc, &a, NULL), 0);
	assert_int_equal(fsutil_read_file(path, 4096, &got), 0);
	assert_string_equal(got.data, "tokenB\n");
	buf_free(&got);
	assert_int_equal(digicert_dcv_remove(&ctx, &dc, &b, NULL), 0);
	assert_false(fsutil_exists(path));
	assert_int_equal(digicert_dcv_remove(&ctx, &dc, &b, NULL), 0); /* already gone */
	digicert_token_clear(&a);
	digicert_token_clear(&b);
	pthread_mutex_destroy(&dc.file_mu);
	free(path);
	free(webroot);
	test_rmdir(dir);
}

/* The errors array in full, bounded: code and message of each, "…" when cut. */
static void test_digicert_error_text_lists_every_error(void **state)
{
	const char *two = "{\"errors\":[{\"code\":\"invalid_dns_txt\",\"message\":\"no TXT\"},"
			  "{\"code\":\"caa_check_failed|example.com\",\"message\":\"CAA forbids DigiCert\"},"
			  "{\"message\":\"no code\"},{}]}";
	char out[200], small[24];

	(void)state;
	digicert_error_text(two, strlen(two), out, sizeof(out));
	assert_string_equal(out,
			    "invalid_dns_txt: no TXT; caa_check_failed|example.com: CAA forbids DigiCert; no code");
	digicert_error_text(two, strlen(two), small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_non_null(strstr(small, "\xe2\x80\xa6"));
	digicert_error_text("{\"errors\":[]}", 13, out, sizeof(out));
	assert_string_equal(out, "no error code in the answer");
	digicert_error_text("<html>", 6, out, sizeof(out));
	assert_string_equal(out, "no error code in the answer");
}

/* The plan names the AuthKey creation until the state shows the issuer has used one. */
static void test_digicert_account_plan_until_an_auth_key_is_used(void **state)
{
	char *msgs, **lines = NULL;
	struct config *c =
		parse(DNS "  dc:\n    type: digicert\n    apiKey: {env: K}\n    validation: {dns: dns}\n", &msgs);
	const struct issuer *is = config_issuer(c, "dc");
	struct state *st = state_new();
	struct state_cert *rec;
	size_t n = 0;

	(void)state;
	assert_string_equal(msgs, "");
	is->ops->account_plan(c, is, NULL, &lines, &n);
	assert_int_equal(n, 1);
	assert_non_null(strstr(lines[0], "issuer dc: create an AuthKey for the DigiCert account (once"));
	free(lines[0]);
	/* a record of another issuer, or one without a token or order, says nothing */
	rec = state_cert_put(st, "other");
	state_str_set(&rec->issuer, "elsewhere");
	state_cert_set_id(rec, "digicert.token", "x");
	rec = state_cert_put(st, "www");
	state_str_set(&rec->issuer, "dc");
	n = 0;
	is->ops->account_plan(c, is, st, &lines, &n);
	assert_int_equal(n, 1);
	free(lines[0]);
	state_cert_set_id(rec, "digicert.order_id", "42");
	n = 0;
	is->ops->account_plan(c, is, st, &lines, &n);
	assert_int_equal(n, 0);
	free(lines);
	state_free(st);
	config_free(c);
	free(msgs);
}

/* validate --credentials: an unset env var and a group-readable key file are named, offline. */
static void test_digicert_check_credentials_offline(void **state)
{
	char *msgs, *dir = test_mkdtemp(), *key = xasprintf("%s/key", dir);
	char *yaml =
		xasprintf(DNS "  dc:\n    type: digicert\n    apiKey: {file: %s}\n    validation: {dns: dns}\n", key);
	struct config *c = parse(yaml, &msgs);
	const struct issuer *is = config_issuer(c, "dc");
	struct provider_check chk;

	(void)state;
	assert_string_equal(msgs, "");
	memset(&chk, 0, sizeof(chk));
	is->ops->check(is, 0, &chk);
	assert_int_equal(chk.n_problems, 1);
	assert_non_null(strstr(chk.problems[0], "issuer dc: apiKey"));
	provider_check_free(&chk);
	/* the same at apply time is a configuration failure: retried once the file is there */
	assert_int_equal(digicert_session(is->priv), CS_EAUTH);
	assert_string_equal(provider_fail_class_take(), STATE_FAIL_CONFIG);
	assert_int_equal(fsutil_write_atomic(key, "SECRET-KEY\n", 11, 0644), 0);
	is->ops->check(is, 0, &chk);
	assert_int_equal(chk.n_problems, 1);
	assert_non_null(strstr(chk.problems[0], "readable by group or others (mode 0644)"));
	assert_null(strstr(chk.problems[0], "SECRET-KEY"));
	provider_check_free(&chk);
	chmod(key, 0600);
	is->ops->check(is, 0, &chk);
	assert_int_equal(chk.n_problems, 0);
	provider_check_free(&chk);
	test_rmdir(dir);
	free(key);
	free(yaml);
	config_free(c);
	free(msgs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digicert_config_defaults_and_eu),
		cmocka_unit_test(test_digicert_config_full_and_http),
		cmocka_unit_test(test_digicert_config_errors_have_positions),
		cmocka_unit_test(test_digicert_order_body_has_what_immediate_issuance_needs),
		cmocka_unit_test(test_digicert_parses_order_replies),
		cmocka_unit_test(test_digicert_finds_the_order_by_alternative_id),
		cmocka_unit_test(test_digicert_maps_errors_with_code_and_issuer),
		cmocka_unit_test(test_digicert_error_text_lists_every_error),
		cmocka_unit_test(test_digicert_account_plan_until_an_auth_key_is_used),
		cmocka_unit_test(test_digicert_check_credentials_offline),
		cmocka_unit_test(test_digicert_splits_chain_into_cert_and_root),
		cmocka_unit_test(test_digicert_fileauth_holds_every_token_until_each_is_removed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
