/* The DNSimple driver's pure parts: name mapping, response parsing quirks, webhook routing and dedupe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../manifests/manifest.h"
#include "../../reconciler/provider.h"
#include "../../reconciler/providers/dnsimple.h"
#include "../../state/state.h"
#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"

static struct cert_spec *spec(const char *cn, const char *names, const char *domain)
{
	char *yaml = xasprintf("apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: x}\n"
			       "spec:\n  issuer: dns\n  commonName: \"%s\"\n  dnsNames: [%s]\n%s%s%s",
			       cn, names, domain ? "  domain: " : "", domain ? domain : "", domain ? "\n" : "");
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL, *s;
	size_t n = 0;

	manifest_parse_file("x.yaml", yaml, strlen(yaml), &v, &n, &d);
	if (d.n)
		diags_print(&d, stderr);
	assert_int_equal(n, 1);
	s = v[0];
	free(v);
	free(yaml);
	diags_free(&d);
	return s;
}

static void test_dnsimple_maps_www_and_apex_to_www(void **state)
{
	struct cert_spec *s = spec("www.pizza.company", "www.pizza.company, pizza.company", "pizza.company");
	struct dnsimple_order o;
	char err[128];

	(void)state;
	assert_int_equal(dnsimple_map(s, NULL, 0, &o, err, sizeof(err)), 0);
	assert_string_equal(o.domain, "pizza.company");
	assert_string_equal(o.name, "www");
	assert_int_equal(o.n_alt, 0); /* "www" covers the apex */
	dnsimple_order_free(&o);
	cert_spec_free(s);
}

static void test_dnsimple_maps_custom_name_and_sans(void **state)
{
	struct cert_spec *s = spec("api.pizza.company", "status.pizza.company, docs.pizza.company", "pizza.company");
	struct dnsimple_order o;
	char err[128];

	(void)state;
	assert_int_equal(dnsimple_map(s, NULL, 0, &o, err, sizeof(err)), 0);
	assert_string_equal(o.name, "api");
	assert_int_equal(o.n_alt, 2);
	assert_string_equal(o.alt[0], "docs.pizza.company");
	assert_string_equal(o.alt[1], "status.pizza.company");
	dnsimple_order_free(&o);
	cert_spec_free(s);
}

static void test_dnsimple_maps_wildcard(void **state)
{
	struct cert_spec *s = spec("*.pizza.company", "\"*.pizza.company\"", NULL);
	char *zones[] = {(char *)"company", (char *)"pizza.company"};
	struct dnsimple_order o;
	char err[128];

	(void)state;
	assert_int_equal(dnsimple_map(s, zones, 2, &o, err, sizeof(err)), 0);
	assert_string_equal(o.domain, "pizza.company"); /* the longest zone */
	assert_string_equal(o.name, "*");
	dnsimple_order_free(&o);
	cert_spec_free(s);
}

static void test_dnsimple_rejects_names_outside_the_domain(void **state)
{
	struct cert_spec *s = spec("www.pizza.company", "shop.other.test", "pizza.company");
	struct dnsimple_order o;
	char err[128];

	(void)state;
	assert_int_equal(dnsimple_map(s, NULL, 0, &o, err, sizeof(err)), CS_EINVALID);
	assert_string_equal(err, "shop.other.test is not within the DNSimple domain pizza.company");
	dnsimple_order_free(&o);
	cert_spec_free(s);
	s = spec("www.pizza.company", "www.pizza.company", NULL);
	assert_int_equal(dnsimple_map(s, NULL, 0, &o, err, sizeof(err)), CS_EINVALID);
	assert_non_null(strstr(err, "spec.domain is required"));
	dnsimple_order_free(&o);
	cert_spec_free(s);
}

static void test_dnsimple_parses_certificate_quirks(void **state)
{
	/* csr null, expires_at null, deprecated and unknown fields, upper-case names. */
	json_t *j = json_loads("{\"id\":101967,\"domain_id\":289333,\"contact_id\":2511,\"name\":\"www\","
			       "\"common_name\":\"WWW.bingo.pizza\",\"years\":1,\"csr\":null,\"state\":\"requesting\","
			       "\"auto_renew\":false,\"alternate_names\":[\"b.bingo.pizza\",\"A.bingo.pizza\"],"
			       "\"authority_identifier\":\"letsencrypt\",\"expires_at\":null,\"expires_on\":null,"
			       "\"brand_new_field\":{\"x\":1}}",
			       0, NULL);
	struct dnsimple_cert c;

	(void)state;
	assert_int_equal(dnsimple_parse_cert(j, "test", &c), 0);
	assert_int_equal(c.id, 101967);
	assert_string_equal(c.state, "requesting");
	assert_string_equal(c.common_name, "www.bingo.pizza");
	assert_int_equal(c.n_alt, 2);
	assert_string_equal(c.alt[0], "a.bingo.pizza");
	assert_int_equal(c.expires_at, 0);
	assert_true(dnsimple_state_pending(c.state));
	dnsimple_cert_clear(&c);
	json_decref(j);
	j = json_loads(
		"{\"id\":5,\"state\":\"issued\",\"common_name\":\"a.b\",\"expires_at\":\"2020-09-16T18:10:13Z\"}", 0,
		NULL);
	assert_int_equal(dnsimple_parse_cert(j, "test", &c), 0);
	assert_int_equal(c.expires_at, 1600279813);
	dnsimple_cert_clear(&c);
	json_decref(j);
	j = json_loads("{\"state\":\"issued\"}", 0, NULL);
	assert_int_equal(dnsimple_parse_cert(j, "getCertificate", &c), CS_ETRANSIENT);
	json_decref(j);
}

static void test_dnsimple_terminal_states(void **state)
{
	(void)state;
	assert_true(dnsimple_state_terminal("failed"));
	assert_true(dnsimple_state_terminal("cancelled"));
	assert_true(dnsimple_state_terminal("refunded"));
	assert_true(dnsimple_state_terminal("rejected"));
	assert_false(dnsimple_state_terminal("requesting"));
	assert_true(dnsimple_state_pending("submitted"));
	assert_false(dnsimple_state_pending("issued"));
}

static const char *delivery(const char *rid, const char *event, long long id)
{
	static char b[1024];

	snprintf(b, sizeof(b),
		 "{\"data\": {\"certificate\": {\"id\": %lld, \"state\": \"issued\", \"common_name\": "
		 "\"www.bingo.pizza\","
		 " \"alternate_names\": []}}, \"name\": \"%s\", \"actor\": {\"id\": \"system\", \"entity\": "
		 "\"dnsimple\"},"
		 " \"account\": {\"id\": 5623}, \"api_version\": \"v2\", \"request_identifier\": \"%s\"}",
		 id, event, rid);
	return b;
}

static void test_dnsimple_webhook_routes_dedupes_and_ignores(void **state)
{
	struct state *st = state_new();
	struct state_cert *r = state_cert_put(st, "shop-www"), *other = state_cert_put(st, "other");
	struct issuer is = {(char *)"dns", NULL, NULL, 0, 0};
	struct webhook_result w;
	const char *b;

	(void)state;
	state_str_set(&r->issuer, "dns");
	state_cert_set_id(r, "dnsimple.pending_id", "101967");
	state_str_set(&other->issuer, "dns");
	state_cert_set_id(other, "dnsimple.certificate_id", "7");
	b = delivery("2092d585-bd6c-40ba-b0ac-bd7ebab8b4b1", "certificate.issue", 101967);
	assert_int_equal(dnsimple_webhook(&is, b, strlen(b), st, &w), 0);
	assert_false(w.duplicate);
	assert_int_equal(w.n_names, 1);
	assert_string_equal(w.names[0], "shop-www");
	assert_string_equal(w.event, "certificate.issue");
	webhook_result_free(&w);
	/* the same delivery again: a duplicate, nothing to do */
	assert_int_equal(dnsimple_webhook(&is, b, strlen(b), st, &w), 0);
	assert_true(w.duplicate);
	assert_int_equal(w.n_names, 0);
	webhook_result_free(&w);
	/* an unknown event is acknowledged and ignored */
	b = delivery("rid-2", "zone.create", 101967);
	assert_int_equal(dnsimple_webhook(&is, b, strlen(b), st, &w), 0);
	assert_true(w.ignored);
	webhook_result_free(&w);
	/* DNSimple deleting its copy of our certificate's key asks for nothing: ours is in the key store */
	b = delivery("rid-3", "certificate.remove_private_key", 101967);
	assert_int_equal(dnsimple_webhook(&is, b, strlen(b), st, &w), 0);
	assert_true(w.ignored);
	assert_int_equal(w.n_names, 0);
	assert_string_equal(w.event, "certificate.remove_private_key");
	webhook_result_free(&w);
	/* malformed bodies are refused */
	assert_int_equal(dnsimple_webhook(&is, "{not json", 9, st, &w), CS_EINVALID);
	webhook_result_free(&w);
	assert_int_equal(dnsimple_webhook(&is, "{\"name\":\"certificate.issue\"}", 29, st, &w), CS_EINVALID);
	webhook_result_free(&w);
	state_free(st);
}

/* Every field and every message of a 400 body (§5.1), the variants the parser must take, bounded. */
static void test_dnsimple_error_text_shows_every_field_message(void **state)
{
	const char *two = "{\"message\":\"Validation failed\",\"errors\":{\"content\":[\"can't be blank\","
			  "\"is too short\"],\"ttl\":[\"is not a number\"]}}";
	const char *str =
		"{\"message\":\"Invalid extended attributes\",\"errors\":{\"x-id-number\":\"invalid number\"}}";
	const char *batch = "{\"message\":\"Validation failed\",\"errors\":{\"creates\":[{\"index\":0,"
			    "\"message\":\"Matching record already exists\"}]}}";
	char out[256], small[40];

	(void)state;
	dnsimple_error_text(two, strlen(two), out, sizeof(out));
	assert_string_equal(out, "Validation failed: content: can't be blank, is too short; ttl: is not a number");
	dnsimple_error_text(str, strlen(str), out, sizeof(out));
	assert_string_equal(out, "Invalid extended attributes: x-id-number: invalid number");
	dnsimple_error_text(batch, strlen(batch), out, sizeof(out));
	assert_string_equal(out, "Validation failed: creates: Matching record already exists");
	dnsimple_error_text("{\"message\":\"may not be renewed\",\"errors\":{}}", 44, out, sizeof(out));
	assert_string_equal(out, "may not be renewed");
	dnsimple_error_text("<html>502</html>", 16, out, sizeof(out));
	assert_string_equal(out, "the error body is not JSON");
	dnsimple_error_text("", 0, out, sizeof(out));
	assert_string_equal(out, "no error body");
	/* cut to fit, and says so */
	dnsimple_error_text(two, strlen(two), small, sizeof(small));
	assert_true(strlen(small) < sizeof(small));
	assert_non_null(strstr(small, "\xe2\x80\xa6"));
	assert_int_equal(strncmp(small, "Validation failed: content:", 27), 0);
	/* never half a UTF-8 character before the mark */
	{
		const char *utf = "{\"message\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}";
		char eleven[11];

		dnsimple_error_text(utf, strlen(utf), eleven, sizeof(eleven));
		assert_string_equal(eleven, "\xc3\xa9\xc3\xa9\xc3\xa9\xe2\x80\xa6");
	}
}

/* The failure class follows the HTTP status and only while the provider's error is the current one. */
static void test_provider_http_fail_classes(void **state)
{
	static const struct {
		long status;
		int code;
		const char *cls;
	} cases[] = {
		{401, CS_EAUTH, STATE_FAIL_CONFIG},	    {403, CS_EAUTH, STATE_FAIL_CONFIG},
		{400, CS_EINVALID, STATE_FAIL_REJECTED},    {412, CS_EINVALID, STATE_FAIL_REJECTED},
		{429, CS_ETRANSIENT, STATE_FAIL_TRANSIENT}, {502, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},
		{0, CS_ETRANSIENT, STATE_FAIL_TRANSIENT},   {404, CS_ENOTFOUND, NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cs_error(cases[i].code, "issuer dns: HTTP %ld", cases[i].status);
		assert_int_equal(provider_http_fail_class(cases[i].status, cases[i].code), cases[i].code);
		if (cases[i].cls)
			assert_string_equal(provider_fail_class_take(), cases[i].cls);
		else
			assert_null(provider_fail_class_take());
	}
}

/* The log line of a failed call carries the provider's request id as JSON field request_id. */
static void test_provider_failure_log_line_has_request_id(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	json_error_t je;
	json_t *j;

	(void)state;
	log_setup(LOGF_JSON, LV_INFO, f);
	cs_error(CS_EINVALID,
		 "issuer dns: dnsimple createZoneRecord: HTTP 400 Validation failed: ttl: is not a number");
	provider_log_failure("dns", "5f0c2f4e-0c33-4e0b-9d35-0f7b3d7c1e2a", 400, 0);
	provider_log_failure("dns", "not-shown", 404, 0); /* 404: debug */
	provider_log_failure("dns", "not-shown-either", 400, 1);
	log_setup(LOGF_TEXT, LV_INFO, NULL);
	fclose(f);
	j = json_loads(text, JSON_DISABLE_EOF_CHECK, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "request_id")),
			    "5f0c2f4e-0c33-4e0b-9d35-0f7b3d7c1e2a");
	assert_string_equal(json_string_value(json_object_get(j, "issuer")), "dns");
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "ttl: is not a number"));
	assert_null(strstr(text, "not-shown"));
	json_decref(j);
	free(text);
}

/* The in-flight rule's landing time (steps.c): send time + timeout + settle, and recovery waits for it. */
static void test_intent_landing_time_and_wait(void **state)
{
	struct state_cert rec;
	struct step_ctx ctx;
	int64_t t0;

	(void)state;
	memset(&rec, 0, sizeof(rec));
	memset(&ctx, 0, sizeof(ctx));
	rec.name = "x";
	ctx.rec = &rec;
	assert_int_equal(step_intent_settle(60), 60);
	assert_int_equal(step_intent_settle(0), STEP_SETTLE_MIN);
	/* counted from the send, even when the step started long ago (a wait for a lock, a slow list) */
	ctx.now = 1000;
	t0 = util_now();
	step_intent_begin(&ctx, "p.intent", 30);
	assert_true(step_id_num(&rec, "p.intent.sent_at") >= t0);
	assert_int_equal(step_id_num(&rec, "p.intent.lands_by"), step_id_num(&rec, "p.intent.sent_at") + 60);
	/* long past: looks at once */
	step_set_id_num(&rec, "p.intent.lands_by", 1060);
	step_set_id_num(&rec, "p.intent.sent_at", 1000);
	ctx.now = util_now();
	assert_int_equal(step_intent_wait(&ctx, "p.intent", 30), 0);
	/* one second ahead: waits for it */
	t0 = util_now();
	ctx.now = t0;
	step_intent_begin(&ctx, "p.intent", -1); /* lands_by = now - 1 + 2 */
	assert_int_equal(step_intent_wait(&ctx, "p.intent", -1), 0);
	assert_true(util_now() >= t0 + 1);
	/* the clock went back an hour since the send: the whole window (3 s) from now, not an hour more */
	step_set_id_num(&rec, "p.intent.sent_at", util_now() + 3600);
	step_set_id_num(&rec, "p.intent.lands_by", util_now() + 3603);
	t0 = util_mono_ms();
	ctx.now = util_now();
	alarm(60); /* an uncapped wait ends the test here */
	assert_int_equal(step_intent_wait(&ctx, "p.intent", 1), 0);
	alarm(0);
	assert_true(util_mono_ms() - t0 >= 2000 && util_mono_ms() - t0 < 30000);
	step_intent_clear(&ctx, "p.intent");
	assert_null(state_cert_id(&rec, "p.intent.lands_by"));
	assert_null(state_cert_id(&rec, "p.intent.sent_at"));
	for (size_t i = 0; i < rec.n_ids; i++) {
		free(rec.ids[i].key);
		free(rec.ids[i].value);
	}
	free(rec.ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dnsimple_maps_www_and_apex_to_www),
		cmocka_unit_test(test_dnsimple_maps_custom_name_and_sans),
		cmocka_unit_test(test_dnsimple_maps_wildcard),
		cmocka_unit_test(test_dnsimple_rejects_names_outside_the_domain),
		cmocka_unit_test(test_dnsimple_parses_certificate_quirks),
		cmocka_unit_test(test_dnsimple_terminal_states),
		cmocka_unit_test(test_dnsimple_webhook_routes_dedupes_and_ignores),
		cmocka_unit_test(test_dnsimple_error_text_shows_every_field_message),
		cmocka_unit_test(test_provider_http_fail_classes),
		cmocka_unit_test(test_provider_failure_log_line_has_request_id),
		cmocka_unit_test(test_intent_landing_time_and_wait),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
