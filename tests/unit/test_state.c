/* State: the JSON round trip, stable encoding, atomic saves, the journal, the lock, the bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../state/state.h"
#include "../../state/state_int.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

#define T0 INT64_C(1795411863) /* 2026-11-23T05:31:03Z */

/* ---------- helpers ---------- */

/* A record with every field set, distinct per name. */
static void fill_cert(struct state_cert *c, int k)
{
	char tmp[64];
	struct state_token t = {"dns-txt-token", "www.pizza.company", "_dnsauth.www.pizza.company",
				"rec-1",	 "dnsimple",	      T0};

	state_str_set(&c->issuer, "digicert");
	state_str_set(&c->provider, "digicert");
	snprintf(tmp, sizeof(tmp), "spec-%d", k);
	state_str_set(&c->spec_hash, tmp);
	state_str_set(&c->target_hash, "target-hash");
	state_str_set(&c->output_dir, "shop/www");
	c->phase = PHASE_FAILED;
	state_str_set(&c->change, "renew");
	state_str_set(&c->step, "order");
	c->attempts = 3;
	c->next_try = T0 + 60;
	state_cert_set_id(c, "order_id", "12345");
	state_cert_set_id(c, "alternative_order_id", "a1b2");
	snprintf(tmp, sizeof(tmp), "%x", 0xabc000 + k);
	state_str_set(&c->serial, tmp);
	c->not_before = T0 - 86400;
	c->not_after = T0 + 90 * 86400;
	state_str_set(&c->fingerprint, "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100");
	state_str_set(&c->out_hash, "0011");
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		c->out_sig[i].size = 1000 + i;
		c->out_sig[i].mtime_ns = INT64_C(1795410663123456789) + i;
		c->out_sig[i].ino = 77 + i;
	}
	state_str_set(&c->out_generation, ".gen-0001");
	state_cert_add_token(c, &t);
	t.method = "http-token";
	t.ref = NULL;
	t.issuer = NULL;
	t.location = "/var/www/.well-known/pki-validation/fileauth.txt";
	state_cert_add_token(c, &t);
	state_cert_set_error(c, T0 + 5, "order refused: \"quota\"\nline two \xc3\xa9");
	c->last_success = T0 - 3600;
	state_cert_event(c, T0 - 10, "renew started: %s", "expires soon");
	state_cert_event(c, T0, "step %s failed", "order");
}

/* Equal strings, or both NULL. */
static void assert_str_same(const char *a, const char *b)
{
	if (!util_streq(a, b))
		fail_msg("\"%s\" != \"%s\"", a ? a : "(null)", b ? b : "(null)");
}

static void assert_cert_equal(const struct state_cert *a, const struct state_cert *b)
{
	assert_str_same(a->name, b->name);
	assert_str_same(a->issuer, b->issuer);
	assert_str_same(a->provider, b->provider);
	assert_str_same(a->spec_hash, b->spec_hash);
	assert_str_same(a->target_hash, b->target_hash);
	assert_str_same(a->output_dir, b->output_dir);
	assert_int_equal(a->phase, b->phase);
	assert_str_same(a->change, b->change);
	assert_str_same(a->step, b->step);
	assert_int_equal(a->attempts, b->attempts);
	assert_int_equal(a->next_try, b->next_try);
	assert_int_equal(a->n_ids, b->n_ids);
	for (size_t i = 0; i < a->n_ids; i++) {
		assert_str_same(a->ids[i].key, b->ids[i].key);
		assert_str_same(a->ids[i].value, b->ids[i].value);
	}
	assert_str_same(a->serial, b->serial);
	assert_int_equal(a->not_before, b->not_before);
	assert_int_equal(a->not_after, b->not_after);
	assert_str_same(a->fingerprint, b->fingerprint);
	assert_str_same(a->out_hash, b->out_hash);
	assert_memory_equal(a->out_sig, b->out_sig, sizeof(a->out_sig));
	assert_str_same(a->out_generation, b->out_generation);
	assert_int_equal(a->n_tokens, b->n_tokens);
	for (size_t i = 0; i < a->n_tokens; i++) {
		assert_str_same(a->tokens[i].method, b->tokens[i].method);
		assert_str_same(a->tokens[i].name, b->tokens[i].name);
		assert_str_same(a->tokens[i].location, b->tokens[i].location);
		assert_str_same(a->tokens[i].ref, b->tokens[i].ref);
		assert_str_same(a->tokens[i].issuer, b->tokens[i].issuer);
		assert_int_equal(a->tokens[i].placed_at, b->tokens[i].placed_at);
	}
	assert_str_same(a->last_error, b->last_error);
	assert_int_equal(a->last_error_time, b->last_error_time);
	assert_int_equal(a->last_success, b->last_success);
	assert_int_equal(a->n_history, b->n_history);
	for (size_t i = 0; i < a->n_history; i++) {
		assert_int_equal(a->history[i].time, b->history[i].time);
		assert_str_same(a->history[i].what, b->history[i].what);
	}
}

static struct state *decode_ok(const struct buf *b)
{
	struct state *st = NULL;
	int rc = state_from_json(b->data, b->len, "state.json", &st);

	if (rc)
		fail_msg("decode failed: %s", cs_errmsg());
	return st;
}

/* Decodes text and asserts CS_EINVALID with a message containing want. */
static void assert_decode_refused(const char *text, const char *want)
{
	struct state *st = NULL;
	int rc = state_from_json(text, strlen(text), "state.json", &st);

	assert_int_equal(rc, CS_EINVALID);
	assert_null(st);
	if (!strstr(cs_errmsg(), want))
		fail_msg("message \"%s\" does not contain \"%s\"", cs_errmsg(), want);
}

static int file_mode(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (int)(st.st_mode & 07777);
}

static void append_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "a");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* ---------- the model ---------- */

static void test_state_round_trips_every_field(void **unused)
{
	struct state *st = state_new(), *back;
	struct buf a = BUF_INIT, b = BUF_INIT;
	struct state_cert *c;

	(void)unused;
	st->serial = 42;
	state_set_source(st, "https://github.com/acme/certs.git", "main", "0123456789abcdef0123456789abcdef01234567");
	fill_cert(state_cert_put(st, "www"), 1);
	state_cert_put(st, "bare"); /* a record with nothing but its phase */
	state_account_set(st, "digicert", "auth_key_id", "ak-1");
	state_account_set(st, "dnsimple-prod", "webhook_id", "55");
	state_webhook_seen(st, "req-1");
	state_webhook_seen(st, "req-2");
	assert_int_equal(state_to_json(st, &a), 0);
	back = decode_ok(&a);

	assert_int_equal(back->version, 1);
	assert_string_equal(back->lineage, st->lineage);
	assert_int_equal(back->serial, 42);
	assert_string_equal(back->source_url, st->source_url);
	assert_string_equal(back->source_ref, "main");
	assert_string_equal(back->source_commit, st->source_commit);
	assert_int_equal(state_cert_count(back), 2);
	assert_non_null(c = state_cert_get(back, "www"));
	assert_cert_equal(state_cert_get(st, "www"), c);
	assert_string_equal(state_cert_id(c, "order_id"), "12345");
	assert_non_null(c = state_cert_get(back, "bare"));
	assert_cert_equal(state_cert_get(st, "bare"), c);
	assert_int_equal(c->phase, PHASE_PENDING);
	assert_string_equal(state_account_get(back, "digicert", "auth_key_id"), "ak-1");
	assert_string_equal(state_account_get(back, "dnsimple-prod", "webhook_id"), "55");
	assert_null(state_account_get(back, "digicert", "nope"));
	assert_int_equal(back->n_webhook_ids, 2);
	assert_int_equal(state_webhook_seen(back, "req-2"), 1);
	assert_string_equal(back->webhook_ids[0], "req-1");

	assert_int_equal(state_to_json(back, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	buf_free(&a);
	buf_free(&b);
	state_free(back);
	state_free(st);
}

static void test_state_encoding_is_stable_and_sorted(void **unused)
{
	static const char *const names[] = {"m", "a", "z", "b", "y"};
	struct state *s1 = state_new(), *s2 = state_new();
	struct buf a = BUF_INIT, b = BUF_INIT, again = BUF_INIT;

	(void)unused;
	memcpy(s2->lineage, s1->lineage, sizeof(s1->lineage));
	for (size_t i = 0; i < 5; i++) {
		fill_cert(state_cert_put(s1, names[i]), (int)i);
		fill_cert(state_cert_put(s2, names[4 - i]), (int)(4 - i));
	}
	/* Same content, ids and accounts inserted in other orders. */
	state_account_set(s1, "b", "k", "1");
	state_account_set(s1, "a", "k", "2");
	state_account_set(s2, "a", "k", "2");
	state_account_set(s2, "b", "k", "1");
	for (size_t i = 0; i < 5; i++) {
		struct state_cert *c = state_cert_get(s2, names[i]);

		assert_int_equal(c->n_ids, 2);
		state_cert_set_id(c, "order_id", NULL);
		state_cert_set_id(c, "zz", "last");
		state_cert_set_id(c, "order_id", "12345");
		state_cert_set_id(state_cert_get(s1, names[i]), "zz", "last");
	}
	state_to_json(s1, &a);
	state_to_json(s2, &b);
	state_to_json(s1, &again);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	assert_int_equal(a.len, again.len);
	assert_memory_equal(a.data, again.data, a.len);

	/* Layout: 2-space indent, fixed key order, names sorted, newline at the end. */
	assert_true(!strncmp(a.data, "{\n  \"version\": 1,\n  \"lineage\": \"", 32));
	assert_true(a.data[a.len - 1] == '\n' && a.data[a.len - 2] == '}');
	assert_true(strstr(a.data, "\"serial\": 0") < strstr(a.data, "\"certificates\""));
	assert_true(strstr(a.data, "\n    \"a\": {") < strstr(a.data, "\n    \"b\": {"));
	assert_true(strstr(a.data, "\n    \"b\": {") < strstr(a.data, "\n    \"m\": {"));
	assert_true(strstr(a.data, "\n    \"y\": {") < strstr(a.data, "\n    \"z\": {"));
	assert_non_null(strstr(a.data, "\"not_after\": \"2027-02-21T05:31:03Z\""));
	assert_non_null(strstr(a.data, "\"time\": \"2026-11-23T05:31:03Z\""));
	assert_true(strstr(a.data, "\"issuer\"") < strstr(a.data, "\"phase\""));
	assert_true(strstr(a.data, "\"phase\"") < strstr(a.data, "\"history\""));
	/* Empty fields are left out. */
	assert_null(strstr(a.data, "null"));
	assert_null(strstr(a.data, "webhook_ids"));
	buf_free(&a);
	buf_free(&b);
	buf_free(&again);
	state_free(s1);
	state_free(s2);
}

static void test_state_record_json_compact_and_pretty(void **unused)
{
	struct state *st = state_new();
	struct state_cert *c = state_cert_put(st, "www");
	struct buf compact = BUF_INIT, pretty = BUF_INIT;

	(void)unused;
	c->phase = PHASE_READY;
	state_str_set(&c->serial, "0a1b");
	state_cert_set_id(c, "certificate_id", "9");
	assert_int_equal(state_cert_to_json(c, 0, &compact), 0);
	assert_string_equal(compact.data,
			    "{\"phase\":\"ready\",\"ids\":{\"certificate_id\":\"9\"},\"serial\":\"0a1b\"}");
	assert_int_equal(state_cert_to_json(c, 1, &pretty), 0);
	assert_string_equal(pretty.data,
			    "{\n  \"phase\": \"ready\",\n  \"ids\": {\n    \"certificate_id\": \"9\"\n  },\n"
			    "  \"serial\": \"0a1b\"\n}");
	buf_free(&compact);
	buf_free(&pretty);
	state_free(st);
}

static void test_state_invalid_utf8_is_replaced_not_fatal(void **unused)
{
	struct state *st = state_new(), *back;
	struct state_cert *c = state_cert_put(st, "www");
	struct buf b = BUF_INIT;

	(void)unused;
	state_cert_set_error(c, T0, "bad \xff byte \x01 and \xe2\x82 cut");
	state_to_json(st, &b);
	back = decode_ok(&b);
	assert_string_equal(state_cert_get(back, "www")->last_error,
			    "bad \xef\xbf\xbd byte \x01 and \xef\xbf\xbd\xef\xbf\xbd cut");
	buf_free(&b);
	state_free(back);
	state_free(st);
}

static void test_state_records_by_name(void **unused)
{
	struct state *st = state_new();
	struct state_cert **v, *c, *clone;
	size_t n = 0;
	char name[32];

	(void)unused;
	/* Enough records to make the map grow and deletions shift slots. */
	for (int i = 999; i >= 0; i--) {
		snprintf(name, sizeof(name), "c%04d", i);
		assert_non_null(state_cert_put(st, name));
	}
	c = state_cert_get(st, "c0500");
	assert_ptr_equal(state_cert_put(st, "c0500"), c);
	assert_int_equal(state_cert_count(st), 1000);
	for (int i = 0; i < 1000; i += 2) {
		snprintf(name, sizeof(name), "c%04d", i);
		assert_int_equal(state_cert_remove(st, name), 0);
	}
	assert_int_equal(state_cert_remove(st, "c0000"), CS_ENOTFOUND);
	assert_int_equal(state_cert_count(st), 500);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "c%04d", i);
		if (i % 2)
			assert_non_null(state_cert_get(st, name));
		else
			assert_null(state_cert_get(st, name));
	}
	v = state_cert_list(st, &n);
	assert_int_equal(n, 500);
	for (size_t i = 0; i + 1 < n; i++)
		assert_true(strcmp(v[i]->name, v[i + 1]->name) < 0);
	free(v);

	c = state_cert_get(st, "c0001");
	fill_cert(c, 1);
	clone = state_cert_clone(c);
	assert_cert_equal(c, clone);
	assert_ptr_not_equal(clone->tokens[0].method, c->tokens[0].method);
	state_cert_remove_token(c, 0);
	assert_int_equal(c->n_tokens, 1);
	assert_string_equal(c->tokens[0].method, "http-token");
	state_cert_set_error(c, T0, NULL);
	assert_null(c->last_error);
	assert_int_equal(c->last_error_time, 0);
	assert_int_equal(clone->n_tokens, 2);
	state_cert_free(clone);
	state_cert_free(NULL);

	state_account_set(st, "digicert", "auth_key_id", "1");
	state_account_set(st, "digicert", "auth_key_id", NULL);
	assert_int_equal(st->n_accounts, 0);
	assert_int_equal(state_phase_parse("ready", &c->phase), 0);
	assert_int_equal(c->phase, PHASE_READY);
	assert_int_equal(state_phase_parse("done", &c->phase), CS_EINVALID);
	state_free(st);
	state_free(NULL);
}

static void test_state_history_is_bounded(void **unused)
{
	struct state *st = state_new();
	struct state_cert *c = state_cert_put(st, "www");

	(void)unused;
	for (int i = 0; i < 25; i++)
		state_cert_event(c, T0 + i, "event %d", i);
	assert_int_equal(c->n_history, STATE_HISTORY_MAX);
	assert_string_equal(c->history[0].what, "event 15");
	assert_int_equal(c->history[0].time, T0 + 15);
	assert_string_equal(c->history[STATE_HISTORY_MAX - 1].what, "event 24");
	state_free(st);
}

static void test_state_webhook_dedupe_is_bounded(void **unused)
{
	struct state *st = state_new(), *back;
	struct buf b = BUF_INIT;
	char id[32];

	(void)unused;
	assert_int_equal(state_webhook_seen(st, "id-0"), 0);
	assert_int_equal(state_webhook_seen(st, "id-0"), 1);
	for (int i = 1; i < STATE_WEBHOOK_IDS_MAX; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		assert_int_equal(state_webhook_seen(st, id), 0);
	}
	assert_int_equal(st->n_webhook_ids, STATE_WEBHOOK_IDS_MAX);
	assert_int_equal(state_webhook_seen(st, "id-0"), 1);
	/* The 1,001st evicts the first. */
	assert_int_equal(state_webhook_seen(st, "id-1000"), 0);
	assert_int_equal(st->n_webhook_ids, STATE_WEBHOOK_IDS_MAX);
	assert_string_equal(st->webhook_ids[0], "id-1");
	assert_string_equal(st->webhook_ids[STATE_WEBHOOK_IDS_MAX - 1], "id-1000");
	assert_int_equal(state_webhook_seen(st, "id-1"), 1);
	assert_int_equal(state_webhook_seen(st, "id-0"), 0); /* forgotten, so new again (evicts id-1) */

	/* Many more: the window slides; order and bound hold. */
	for (int i = 1001; i < 5000; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		assert_int_equal(state_webhook_seen(st, id), 0);
	}
	assert_int_equal(st->n_webhook_ids, STATE_WEBHOOK_IDS_MAX);
	assert_string_equal(st->webhook_ids[0], "id-4000");
	assert_string_equal(st->webhook_ids[STATE_WEBHOOK_IDS_MAX - 1], "id-4999");
	assert_int_equal(state_webhook_seen(st, "id-3999"), 0);
	assert_string_equal(st->webhook_ids[0], "id-4001");

	state_to_json(st, &b);
	back = decode_ok(&b);
	assert_int_equal(back->n_webhook_ids, STATE_WEBHOOK_IDS_MAX);
	assert_string_equal(back->webhook_ids[0], "id-4001");
	assert_string_equal(back->webhook_ids[STATE_WEBHOOK_IDS_MAX - 1], "id-3999");
	assert_int_equal(state_webhook_seen(back, "id-4500"), 1);
	buf_free(&b);
	state_free(back);
	state_free(st);
}

/* ---------- decoding bad input ---------- */

#define DOC_HEAD "{\"version\": 1, \"lineage\": \"0f8e2c1a-7d3b-4e59-9a61-2b7c4d5e6f70\", \"serial\": 3"

static void test_state_corrupt_json_is_refused_with_position(void **unused)
{
	(void)unused;
	assert_decode_refused("{\"version\": 1,\n  \"lineage\": ", "state.json:2:");
	assert_decode_refused("{\"version\": 1,\n  \"lineage\": ", "state is not valid JSON: ");
	assert_decode_refused("[1, 2]", "state.json: not a certsync state");
	assert_decode_refused("{}", "state.json: not a certsync state: it has no \"version\"");
}

static void test_state_unknown_version_is_refused(void **unused)
{
	(void)unused;
	assert_decode_refused("{\"version\": 7, \"lineage\": 5, \"certificates\": []}",
			      "state.json: state version 7 is not supported by this certsync (supports 1)");
	assert_decode_refused("{\"version\": \"1\"}", "state.json: version: expected an integer");
}

static void test_state_wrong_field_type_names_the_field(void **unused)
{
	(void)unused;
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"ready\", \"not_after\": 5}}}",
			      "state.json: certificates.\"www\".not_after: expected a time string");
	assert_decode_refused(DOC_HEAD
			      ", \"certificates\": {\"www\": {\"phase\": \"ready\", \"not_after\": \"soon\"}}}",
			      "certificates.\"www\".not_after: expected a time string");
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"ready\", \"attempts\": \"2\"}}}",
			      "certificates.\"www\".attempts: expected an integer");
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"done\"}}}",
			      "certificates.\"www\".phase: expected \"pending\", \"ready\" or \"failed\"");
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": {\"issuer\": \"x\"}}}",
			      "certificates.\"www\".phase: missing");
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"ready\", "
				       "\"tokens\": [{\"method\": \"http-token\", \"name\": \"a\"}]}}}",
			      "certificates.\"www\".tokens[0].location: missing");
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"ready\", \"ids\": {\"a\": 1}}}}",
			      "certificates.\"www\".ids.\"a\": expected a string");
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"ready\", "
				       "\"out_sig\": [{\"size\": \"big\"}]}}}",
			      "certificates.\"www\".out_sig[0].size: expected an integer");
	assert_decode_refused(DOC_HEAD ", \"certificates\": {\"www\": []}}",
			      "certificates.\"www\": expected an object");
	assert_decode_refused(DOC_HEAD ", \"certificates\": []}", "state.json: certificates: expected an object");
	assert_decode_refused(DOC_HEAD ", \"source\": {\"url\": 1}}", "state.json: source.url: expected a string");
	assert_decode_refused(DOC_HEAD ", \"webhook_ids\": [\"a\", 2]}",
			      "state.json: webhook_ids[1]: expected a string");
	assert_decode_refused("{\"version\": 1, \"lineage\": \"x\", \"serial\": -1}",
			      "state.json: serial: expected an integer");
	assert_decode_refused("{\"version\": 1, \"serial\": 1}", "state.json: lineage: missing");
}

/* What the decoder accepts is JSON exactly: embedded in an unknown key, each text is refused or not. */
static void test_state_decoder_is_strict_json(void **unused)
{
	static const char *const bad[] = {
		"{\"a\": 1,}",
		"[1,]",
		"{\"a\" 1}",
		"{'a': 1}",
		"01",
		"1.",
		".5",
		"-",
		"1e",
		"+1",
		"[1 2]",
		"tru",
		"nul",
		"\"\x01\"",
		"\"\\ud800\"",
		"\"\\udc00\"",
		"\"\\ud800\\u0041\"",
		"\"\\u0000\"",
		"\"\\u12g4\"",
		"\"\\q\"",
		"\"abc",
		"\"\xff\"",
		"\"\xc0\xaf\"",
		"\"\xed\xa0\x80\"",
		"\"\xf4\x90\x80\x80\"",
		"\"\xe2\x82\"",
		"99999999999999999999",
		"-9223372036854775809",
		"[",
		"{",
		"{\"a\"}",
		"[1]]",
		"{\"a\": 1} {}",
	};
	static const char *const good[] = {
		"-0",
		"0",
		"1.5e-3",
		"2E+10",
		"-9223372036854775808",
		"9223372036854775807",
		"[]",
		"{}",
		"[true, false, null, {\"x\": [[]]}]",
		"\"\\u00e9\\ud83d\\ude00\\n\\/\\\"\\\\\\b\\f\\r\\t\"",
		"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"",
		" \t\r\n 1 \n",
	};
	char doc[512];

	(void)unused;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct state *st = NULL;

		snprintf(doc, sizeof(doc), DOC_HEAD ", \"x\": %s}", bad[i]);
		if (state_from_json(doc, strlen(doc), "state.json", &st) != CS_EINVALID ||
		    !strstr(cs_errmsg(), "valid JSON"))
			fail_msg("accepted %s (%s)", bad[i], cs_errmsg());
		assert_null(st);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct state *st = NULL;

		snprintf(doc, sizeof(doc), DOC_HEAD ", \"x\": %s}", good[i]);
		if (state_from_json(doc, strlen(doc), "state.json", &st))
			fail_msg("refused %s: %s", good[i], cs_errmsg());
		state_free(st);
	}
	/* Trailing text, NUL bytes and an empty document are refused too. */
	assert_decode_refused(DOC_HEAD "} x", "state is not valid JSON");
	assert_decode_refused("", "state.json:");
	{
		struct state *st = NULL;
		const char nul[] = DOC_HEAD "}\0";

		assert_int_equal(state_from_json(nul, sizeof(nul) - 1, "state.json", &st), CS_EINVALID);
		assert_null(st);
	}
}

/* issue 15: a key twice in one object is refused with its position, at every level (as manifests do). */
static void test_state_duplicate_keys_are_refused_with_position(void **unused)
{
	static const char *const docs[] = {
		DOC_HEAD ",\n\"serial\": 4}",
		DOC_HEAD ",\n\"certificates\": {\"www\": {\"phase\": \"ready\"},\n\"www\": {\"phase\": \"failed\"}}}",
		DOC_HEAD ",\n\"certificates\": {\"www\": {\"phase\": \"ready\",\n\"phase\": \"failed\"}}}",
		DOC_HEAD
		",\n\"certificates\": {\"www\": {\"phase\": \"ready\", \"ids\": {\"a\": \"1\",\n\"a\": \"2\"}}}}",
		DOC_HEAD ",\n\"accounts\": {\"dns\": {}, \"x\": {},\n\"dns\": {}}}",
		DOC_HEAD ",\n\"future\": {\"k\": 1,\n\"k\": 2}}", /* even inside an unknown key */
		DOC_HEAD
		",\n\"certificates\": {\"a\\u0062\": {\"phase\": \"ready\"},\n\"ab\": {}}}", /* same key, escaped */
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		assert_decode_refused(docs[i], "duplicate key");
	assert_decode_refused(docs[0], "state.json:2:1: duplicate key \"serial\" in the state");
	assert_decode_refused(docs[1], "state.json:3:1: duplicate key \"www\"");
	assert_decode_refused(docs[6], "state.json:3:1: duplicate key \"ab\"");
	/* the same key in two different objects is fine */
	{
		const char *ok =
			DOC_HEAD ", \"certificates\": {\"a\": {\"phase\": \"ready\", \"ids\": {\"phase\": \"x\"}}, "
				 "\"b\": {\"phase\": \"ready\", \"ids\": {\"phase\": \"x\"}}}}";
		struct state *st = NULL;

		if (state_from_json(ok, strlen(ok), "state.json", &st))
			fail_msg("refused: %s", cs_errmsg());
		state_free(st);
	}
}

/*
 * The key table drops the keys of closed objects when it fills: keys of the
 * objects still open (the document, certificates) are kept, so a duplicate
 * after thousands of records is still found, and a valid large state decodes.
 */
static void test_state_duplicate_keys_found_after_many_objects(void **unused)
{
	static const char *const tails[] = {
		"\"c00000\": {\"phase\": \"ready\"}}}",		       /* the first record's name again */
		"\"c99999\": {\"phase\": \"ready\"}}, \"serial\": 4}", /* a key of the document again */
		"\"c99999\": {\"phase\": \"ready\"}}}",		       /* none */
	};
	struct buf doc = BUF_INIT;

	(void)unused;
	for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
		struct state *st = NULL;
		int rc;

		buf_clear(&doc);
		buf_puts(&doc, DOC_HEAD ", \"certificates\": {");
		for (int i = 0; i < 3000; i++)
			buf_printf(&doc,
				   "\"c%05d\": {\"phase\": \"ready\", \"issuer\": \"ca\", \"ids\": {\"a\": \"1\", "
				   "\"b\": \"2\"}, \"history\": [{\"time\": \"2026-11-19T05:31:03Z\", \"what\": "
				   "\"x\"}]},\n",
				   i);
		buf_puts(&doc, tails[t]);
		rc = state_from_json(doc.data, doc.len, "state.json", &st);
		if (t < 2) {
			assert_int_equal(rc, CS_EINVALID);
			assert_non_null(
				strstr(cs_errmsg(), t ? "duplicate key \"serial\"" : "duplicate key \"c00000\""));
		} else {
			if (rc)
				fail_msg("refused: %s", cs_errmsg());
			assert_int_equal(state_cert_count(st), 3001);
		}
		state_free(st);
	}
	buf_free(&doc);
}

/* A journal line with a key twice is refused with its line. */
static void test_state_journal_line_with_a_duplicate_key_is_refused(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *jnl = xasprintf("%s.journal", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back = NULL;
	const char *text = "{\"serial\":2,\"name\":\"b\",\"record\":{\"phase\":\"ready\"}}\n"
			   "{\"serial\":3,\"name\":\"b\",\"name\":\"c\",\"record\":null}\n"
			   "{\"serial\":4,\"name\":\"d\",\"record\":null}\n";

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_journal(be, st, "a", state_cert_put(st, "a")), 0);
	assert_int_equal(fsutil_write_atomic(jnl, text, strlen(text), 0600), 0);
	assert_int_equal(state_load(be, &back), CS_EINVALID);
	assert_null(back);
	assert_non_null(strstr(cs_errmsg(), "state.json.journal:2:"));
	assert_non_null(strstr(cs_errmsg(), "journal line has the key \"name\" twice"));
	state_free(st);
	state_backend_free(be);
	free(jnl);
	free(path);
	test_rmdir(dir);
}

static void test_state_decoder_unescapes_strings(void **unused)
{
	const char *doc = DOC_HEAD ", \"certificates\": {\"caf\\u00e9\": {\"phase\": \"ready\", "
				   "\"last_error\": \"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\", \"issuer\": null}}}";
	struct state *st = NULL;
	struct state_cert *c;

	(void)unused;
	assert_int_equal(state_from_json(doc, strlen(doc), "state.json", &st), 0);
	assert_non_null(c = state_cert_get(st, "caf\xc3\xa9"));
	assert_string_equal(c->last_error, "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80");
	assert_null(c->issuer); /* null is the same as absent */
	state_free(st);
}

static void test_state_version_is_checked_before_fields(void **unused)
{
	const char *ok = "{\"serial\": 4, \"certificates\": {}, \"lineage\": \"x\", \"version\": 1}";
	struct state *st = NULL;

	(void)unused;
	assert_decode_refused("{\"certificates\": {\"www\": {\"phase\": 5}}, \"version\": 7}",
			      "state.json: state version 7 is not supported");
	assert_decode_refused("{\"certificates\": {\"www\": {\"phase\": 5}}}", "it has no \"version\"");
	assert_int_equal(state_from_json(ok, strlen(ok), "state.json", &st), 0);
	assert_int_equal(st->serial, 4);
	assert_string_equal(st->lineage, "x");
	state_free(st);
}

static void test_state_times_round_trip_and_are_clamped(void **unused)
{
	static const int64_t times[] = {-315619200, 1, 951782400 /* 2000-02-29 */, 4107542400 /* 2100-03-01 */,
					253402300799 /* 9999-12-31T23:59:59Z */};
	struct state *st = state_new(), *back;
	struct state_cert *c = state_cert_put(st, "t");
	struct buf b = BUF_INIT;

	(void)unused;
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		buf_free(&b);
		c->not_after = times[i];
		state_to_json(st, &b);
		back = decode_ok(&b);
		assert_int_equal(state_cert_get(back, "t")->not_after, times[i]);
		state_free(back);
	}
	/* Beyond year 9999 is written as the last representable second, so the file stays readable. */
	buf_free(&b);
	c->not_after = INT64_C(253402300799) * 4;
	state_to_json(st, &b);
	assert_non_null(strstr(b.data, "\"not_after\": \"9999-12-31T23:59:59Z\""));
	back = decode_ok(&b);
	assert_int_equal(state_cert_get(back, "t")->not_after, INT64_C(253402300799));
	state_free(back);
	buf_free(&b);
	state_free(st);
}

static void test_state_decoder_bounds_lists(void **unused)
{
	struct buf doc = BUF_INIT;
	struct state *st = NULL;
	struct state_cert *c;

	(void)unused;
	/* A longer history than we keep: the newest events stay. */
	buf_puts(&doc, DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"ready\", \"history\": [");
	for (int i = 0; i < 15; i++)
		buf_printf(&doc, "%s{\"time\": \"2026-11-23T05:31:%02dZ\", \"what\": \"e%d\"}", i ? ", " : "", i, i);
	buf_puts(&doc, "]}}}");
	assert_int_equal(state_from_json(doc.data, doc.len, "state.json", &st), 0);
	c = state_cert_get(st, "www");
	assert_int_equal(c->n_history, STATE_HISTORY_MAX);
	assert_string_equal(c->history[0].what, "e5");
	assert_string_equal(c->history[STATE_HISTORY_MAX - 1].what, "e14");
	state_free(st);
	st = NULL;

	/* More tokens than a record can hold is refused, not truncated: tokens are cleanup duties. */
	buf_clear(&doc);
	buf_puts(&doc, DOC_HEAD ", \"certificates\": {\"www\": {\"phase\": \"ready\", \"tokens\": [");
	for (int i = 0; i <= STATE_MAX_TOKENS; i++)
		buf_printf(&doc, "%s{\"method\": \"http-token\", \"name\": \"n%d\", \"location\": \"/l\"}",
			   i ? ", " : "", i);
	buf_puts(&doc, "]}}}");
	assert_int_equal(state_from_json(doc.data, doc.len, "state.json", &st), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificates.\"www\".tokens: expected an array of at most 200 tokens"));
	assert_null(st);
	buf_free(&doc);
}

static void test_state_unknown_keys_are_ignored(void **unused)
{
	const char *doc = DOC_HEAD ", \"future\": {\"x\": [1]}, \"certificates\": {\"www\": {\"phase\": \"ready\", "
				   "\"new_field\": true, \"not_after\": \"2027-02-21T05:31:03Z\"}}}";
	struct state *st = NULL;

	(void)unused;
	assert_int_equal(state_from_json(doc, strlen(doc), "state.json", &st), 0);
	assert_int_equal(st->serial, 3);
	assert_int_equal(state_cert_get(st, "www")->not_after, T0 + 90 * 86400);
	state_free(st);
}

/* ---------- the file backend ---------- */

static void test_state_save_is_atomic_and_keeps_a_backup(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *bak = xasprintf("%s.backup", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;
	struct buf first = BUF_INIT, now = BUF_INIT, prev = BUF_INIT;
	DIR *d;
	struct dirent *e;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(st->serial, 0);
	assert_false(fsutil_exists(path)); /* loading a missing state writes nothing */
	state_cert_put(st, "a")->phase = PHASE_READY;
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(st->serial, 1);
	assert_false(fsutil_exists(bak)); /* nothing to back up yet */
	assert_int_equal(fsutil_read_file(path, 0, &first), 0);
	fill_cert(state_cert_put(st, "b"), 2);
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(st->serial, 2);
	assert_int_equal(fsutil_read_file(bak, 0, &prev), 0);
	assert_int_equal(prev.len, first.len);
	assert_memory_equal(prev.data, first.data, first.len);
	assert_int_equal(fsutil_read_file(path, 0, &now), 0);
	back = test_state_load(path);
	assert_int_equal(back->serial, 2);
	assert_string_equal(back->lineage, st->lineage);
	assert_cert_equal(state_cert_get(st, "b"), state_cert_get(back, "b"));

	/* Only the state, its backup and its snapshot: no temp files left behind. */
	assert_non_null(d = opendir(dir));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (strcmp(e->d_name, "state.json") && strcmp(e->d_name, "state.json.backup") &&
		    strcmp(e->d_name, "state.json.snap"))
			fail_msg("unexpected file %s", e->d_name);
	}
	closedir(d);
	buf_free(&first);
	buf_free(&now);
	buf_free(&prev);
	state_free(back);
	state_free(st);
	state_backend_free(be);
	free(bak);
	free(path);
	test_rmdir(dir);
}

static void test_state_files_are_private_even_with_a_permissive_umask(void **unused)
{
	char *dir = test_mkdtemp();
	char *sub = fsutil_join(dir, "var/lib/certsync"), *path = fsutil_join(sub, "state.json");
	char *bak = xasprintf("%s.backup", path), *jnl = xasprintf("%s.journal", path),
	     *lck = xasprintf("%s.lock", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL;
	mode_t old = umask(0);

	(void)unused;
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(file_mode(sub), 0700); /* created for us */
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(state_journal(be, st, "www", state_cert_put(st, "www")), 0);
	umask(old);
	assert_int_equal(file_mode(path), 0600);
	assert_int_equal(file_mode(bak), 0600);
	assert_int_equal(file_mode(jnl), 0600);
	assert_int_equal(file_mode(lck), 0600);
	state_free(st);
	state_backend_free(be);
	free(lck);
	free(jnl);
	free(bak);
	free(path);
	free(sub);
	test_rmdir(dir);
}

static void test_state_journal_replays_in_serial_order(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *jnl = xasprintf("%s.journal", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;
	struct state_cert *a, *b;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_save(be, st), 0); /* serial 1 */
	a = state_cert_put(st, "a");
	b = state_cert_put(st, "b");
	fill_cert(a, 1);
	assert_int_equal(state_journal(be, st, "a", a), 0);
	assert_int_equal(state_journal(be, st, "b", b), 0);
	assert_int_equal(st->serial, 3);
	a->phase = PHASE_READY;
	state_str_set(&a->step, NULL);
	assert_int_equal(state_journal(be, st, "a", a), 0);
	assert_int_equal(state_journal(be, st, "b", NULL), 0);
	assert_int_equal(state_cert_remove(st, "b"), 0);
	assert_int_equal(state_journal(be, st, "c", state_cert_put(st, "c")), 0);
	assert_int_equal(st->serial, 6);

	back = test_state_load(path);
	assert_int_equal(back->serial, 6);
	assert_string_equal(back->lineage, st->lineage);
	assert_int_equal(state_cert_count(back), 2);
	assert_cert_equal(a, state_cert_get(back, "a"));
	assert_null(state_cert_get(back, "b"));
	assert_non_null(state_cert_get(back, "c"));
	state_free(back);

	/* A line at or below the state's serial is already in it: skipped. */
	append_text(jnl, "{\"serial\":5,\"name\":\"stale\",\"record\":{\"phase\":\"ready\"}}\n");
	back = test_state_load(path);
	assert_null(state_cert_get(back, "stale"));
	assert_int_equal(back->serial, 6);
	state_free(back);

	/* After a save the journal is gone and the file holds everything. */
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(st->serial, 7);
	assert_false(fsutil_exists(jnl));
	back = test_state_load(path);
	assert_int_equal(back->serial, 7);
	assert_cert_equal(a, state_cert_get(back, "a"));
	state_free(back);

	/* Journal lines older than the saved file (a crash before the journal was removed) change nothing. */
	append_text(jnl, "{\"serial\":4,\"name\":\"a\",\"record\":null}\n");
	back = test_state_load(path);
	assert_non_null(state_cert_get(back, "a"));
	state_free(back);

	state_free(st);
	state_backend_free(be);
	free(jnl);
	free(path);
	test_rmdir(dir);
}

static void test_state_journal_alone_recovers_a_fresh_state(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	fill_cert(state_cert_put(st, "www"), 7);
	assert_int_equal(state_journal(be, st, "www", state_cert_get(st, "www")), 0);
	assert_false(fsutil_exists(path));
	back = test_state_load(path);
	assert_int_equal(back->serial, 1);
	assert_cert_equal(state_cert_get(st, "www"), state_cert_get(back, "www"));
	state_free(back);
	state_free(st);
	state_backend_free(be);
	free(path);
	test_rmdir(dir);
}

static void test_state_truncated_last_journal_line_is_ignored(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *jnl = xasprintf("%s.journal", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_journal(be, st, "a", state_cert_put(st, "a")), 0);
	state_backend_free(be);
	/* A crash mid-append: the line has no end. */
	append_text(jnl, "{\"serial\":2,\"name\":\"b\",\"record\":{\"phase\":\"rea");
	back = test_state_load(path);
	assert_int_equal(back->serial, 1);
	assert_non_null(state_cert_get(back, "a"));
	assert_null(state_cert_get(back, "b"));
	state_free(back);

	/* The next writer cuts the partial line before appending, so it never ends up in the middle. */
	be = test_state_open(path);
	assert_int_equal(state_journal(be, st, "c", state_cert_put(st, "c")), 0);
	back = test_state_load(path);
	assert_int_equal(back->serial, 2);
	assert_non_null(state_cert_get(back, "c"));
	assert_null(state_cert_get(back, "b"));
	state_free(back);

	state_free(st);
	state_backend_free(be);
	free(jnl);
	free(path);
	test_rmdir(dir);
}

static void test_state_corrupt_journal_line_in_the_middle_is_refused(void **unused)
{
	const char *text;
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *jnl = xasprintf("%s.journal", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back = NULL;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_journal(be, st, "a", state_cert_put(st, "a")), 0);
	append_text(jnl, "{\"serial\":2,\"name\":\"b\",\"rec\n");
	append_text(jnl, "{\"serial\":3,\"name\":\"c\",\"record\":null}\n");
	assert_int_equal(state_load(be, &back), CS_EINVALID);
	assert_null(back);
	assert_non_null(strstr(cs_errmsg(), "state.json.journal:2:"));
	assert_non_null(strstr(cs_errmsg(), "not valid JSON"));

	/* A mistyped field in a line is named with the line. */
	text = "{\"serial\":2,\"name\":\"b\",\"record\":{\"phase\":\"ready\"}}\n"
	       "{\"serial\":3,\"name\":\"b\",\"record\":{\"phase\":\"ready\",\"not_after\":1}}\n";
	assert_int_equal(fsutil_write_atomic(jnl, text, strlen(text), 0600), 0);
	assert_int_equal(state_load(be, &back), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "state.json.journal:2: record.not_after: expected a time string"));
	state_free(st);
	state_backend_free(be);
	free(jnl);
	free(path);
	test_rmdir(dir);
}

static void test_state_corrupt_file_is_refused_naming_the_backup(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back = NULL;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(fsutil_write_atomic(path, "{\"version\": 1,\n \"lineage\": ", 27, 0600), 0);
	assert_int_equal(state_load(be, &back), CS_EINVALID);
	assert_null(back);
	assert_non_null(strstr(cs_errmsg(), "state.json:2:"));
	assert_non_null(strstr(cs_errmsg(), "state is not valid JSON"));
	assert_non_null(strstr(cs_errmsg(), "(the previous state is in "));
	assert_non_null(strstr(cs_errmsg(), "state.json.backup)"));

	/* An unknown version is not corruption: no backup hint. */
	assert_int_equal(fsutil_write_atomic(path, "{\"version\": 99}", 15, 0600), 0);
	assert_int_equal(state_load(be, &back), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "state version 99 is not supported"));
	assert_null(strstr(cs_errmsg(), "backup"));
	state_free(st);
	state_backend_free(be);
	free(path);
	test_rmdir(dir);
}

/* The child takes the lock, tells the parent, and holds it until told to go. */
static void lock_in_child(const char *path, int ready_fd, int go_fd)
{
	struct state_backend *be = NULL;
	char c = 'x';

	if (state_file_open(path, &be) || state_lock(be, "apply"))
		_exit(2);
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
		_exit(3);
	state_backend_free(be);
	_exit(0);
}

static void test_state_lock_contention_names_the_holder(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state_backend *be = test_state_open(path);
	int ready[2], go[2], status = 0;
	char c = 0, *pid_text;
	pid_t pid;

	(void)unused;
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		lock_in_child(path, ready[1], go[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);

	assert_int_equal(state_lock(be, "run"), CS_ELOCKED);
	pid_text = xasprintf("(pid %ld on host ", (long)pid);
	if (!strstr(cs_errmsg(), pid_text) || !strstr(cs_errmsg(), "state is locked by apply") ||
	    !strstr(cs_errmsg(), ", user ") || !strstr(cs_errmsg(), " since ") || !strstr(cs_errmsg(), "; lock id "))
		fail_msg("unexpected lock message: %s", cs_errmsg());
	free(pid_text);

	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(state_lock(be, "apply"), 0);
	state_unlock(be);
	state_unlock(be); /* unlocking twice is harmless */
	assert_int_equal(state_lock(be, "state rm"), 0);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	state_backend_free(be); /* releases the lock */
	be = test_state_open(path);
	assert_int_equal(state_lock(be, "apply"), 0);
	state_backend_free(be);
	free(path);
	test_rmdir(dir);
}

struct journal_thread {
	struct state_backend *be;
	struct state *st;
	struct state_cert *rec;
	int rc;
};

static void *journal_worker(void *arg)
{
	struct journal_thread *t = arg;

	for (int i = 0; i < 25 && !t->rc; i++)
		t->rc = state_journal(t->be, t->st, t->rec->name, t->rec);
	return NULL;
}

static void test_state_journal_is_safe_from_threads(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;
	struct journal_thread t[8];
	pthread_t th[8];

	(void)unused;
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_load(be, &st), 0);
	for (int i = 0; i < 8; i++) {
		char name[16];

		snprintf(name, sizeof(name), "t%d", i);
		t[i] = (struct journal_thread){be, st, state_cert_put(st, name), 0};
		fill_cert(t[i].rec, i);
	}
	for (int i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&th[i], NULL, journal_worker, &t[i]), 0);
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].rc, 0);
	}
	assert_int_equal(st->serial, 200);
	back = test_state_load(path);
	assert_int_equal(back->serial, 200);
	assert_int_equal(state_cert_count(back), 8);
	assert_cert_equal(t[3].rec, state_cert_get(back, "t3"));
	state_free(back);
	state_free(st);
	state_backend_free(be);
	free(path);
	test_rmdir(dir);
}

/* ---------- group commit: concurrent appends share their fdatasync ---------- */

/*
 * The journal's sync seam (state_file_set_datasync): counts calls; the call
 * numbered hold_call first waits (polling the file, bounded) until the
 * journal holds hold_lines lines, so the other appenders are known to be
 * waiting behind it; the call numbered fail_call fails with EIO.
 */
static struct {
	int calls;
	int hold_call, hold_lines;
	int fail_call;
} gc_sync;

static int gc_lines_in(int fd)
{
	char chunk[4096];
	off_t pos = 0;
	ssize_t n;
	int lines = 0;

	while ((n = pread(fd, chunk, sizeof(chunk), pos)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			lines += chunk[i] == '\n';
		pos += n;
	}
	return lines;
}

static int gc_datasync(int fd)
{
	int call = __atomic_add_fetch(&gc_sync.calls, 1, __ATOMIC_SEQ_CST);

	if (call == gc_sync.hold_call) {
		struct timespec ts = {0, 1000 * 1000};

		for (int i = 0; i < 5000 && gc_lines_in(fd) < gc_sync.hold_lines; i++)
			nanosleep(&ts, NULL); /* 5 s at most: appenders blocked behind this sync never write */
	}
	if (call == gc_sync.fail_call) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static void gc_sync_reset(int hold_call, int hold_lines, int fail_call)
{
	gc_sync.calls = 0;
	gc_sync.hold_call = hold_call;
	gc_sync.hold_lines = hold_lines;
	gc_sync.fail_call = fail_call;
	state_file_set_datasync(gc_datasync);
}

#define GC_THREADS 8

struct gc_thread {
	struct state_backend *be;
	struct state *st;
	struct state_cert *rec;
	int appends;
	int rc, n_ok;
	char msg[512];
};

/* Appends its record `appends` times, attempts = 1, 2, ... (so each line says which append it is). */
static void *gc_worker(void *arg)
{
	struct gc_thread *t = arg;

	for (int i = 1; i <= t->appends && !t->rc; i++) {
		t->rec->attempts = i;
		t->rc = state_journal(t->be, t->st, t->rec->name, t->rec);
		if (!t->rc)
			t->n_ok++;
		else
			snprintf(t->msg, sizeof(t->msg), "%s", cs_errmsg());
	}
	return NULL;
}

/* Runs GC_THREADS appenders of `appends` lines each on records g0..g7 of st. */
static void gc_run(struct state_backend *be, struct state *st, struct gc_thread *t, int appends)
{
	pthread_t th[GC_THREADS];

	for (int i = 0; i < GC_THREADS; i++) {
		char name[16];

		snprintf(name, sizeof(name), "g%d", i);
		t[i] = (struct gc_thread){.be = be, .st = st, .rec = state_cert_put(st, name), .appends = appends};
		fill_cert(t[i].rec, i);
	}
	for (int i = 0; i < GC_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, gc_worker, &t[i]), 0);
	for (int i = 0; i < GC_THREADS; i++)
		pthread_join(th[i], NULL);
}

/*
 * Many threads appending at once: every line is in the journal, in serial
 * order (1, 2, 3, ... line by line), each thread's lines in the order it
 * wrote them, and the state reloads with every record's last version.
 */
static void test_state_journal_group_commit_keeps_every_line_in_order(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *jnl = xasprintf("%s.journal", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;
	struct gc_thread t[GC_THREADS];
	struct buf data = BUF_INIT;
	int last[GC_THREADS] = {0};
	uint64_t lineno = 0;

	(void)unused;
	gc_sync_reset(0, 0, 0);
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_save(be, st), 0); /* serial 1 */
	gc_run(be, st, t, 40);
	for (int i = 0; i < GC_THREADS; i++) {
		if (t[i].rc)
			fail_msg("thread %d: %s", i, t[i].msg);
		assert_int_equal(t[i].n_ok, 40);
	}
	assert_int_equal(st->serial, 1 + GC_THREADS * 40);
	assert_true(gc_sync.calls >= 1 && gc_sync.calls <= GC_THREADS * 40);

	assert_int_equal(fsutil_read_file(jnl, STATE_MAX_BYTES, &data), 0);
	for (const char *p = data.data, *end = p + data.len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		struct state_journal_entry e;
		int k;

		assert_non_null(nl);
		lineno++;
		assert_int_equal(state_journal_decode(p, (size_t)(nl - p), jnl, (size_t)lineno, &e), 0);
		assert_int_equal(e.serial, 1 + lineno);
		assert_non_null(e.rec);
		k = e.name[1] - '0';
		assert_int_equal(e.rec->attempts, last[k] + 1); /* each thread's lines in its order */
		last[k] = e.rec->attempts;
		state_journal_entry_clear(&e);
		p = nl + 1;
	}
	assert_int_equal(lineno, GC_THREADS * 40);

	back = test_state_load(path);
	assert_int_equal(back->serial, 1 + GC_THREADS * 40);
	for (int i = 0; i < GC_THREADS; i++)
		assert_cert_equal(t[i].rec, state_cert_get(back, t[i].rec->name));
	state_free(back);
	state_file_set_datasync(NULL);
	buf_free(&data);
	state_free(st);
	state_backend_free(be);
	free(jnl);
	free(path);
	test_rmdir(dir);
}

/*
 * Eight appenders arriving while a sync runs share the next one: the first
 * sync (held until all eight lines are written) covers the first line, one
 * more covers the other seven. Holding the lock across the sync would make
 * it eight.
 */
static void test_state_journal_group_commit_shares_one_sync(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json");
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;
	struct gc_thread t[GC_THREADS];

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_save(be, st), 0);
	gc_sync_reset(1, GC_THREADS, 0);
	gc_run(be, st, t, 1);
	for (int i = 0; i < GC_THREADS; i++)
		assert_int_equal(t[i].rc, 0);
	assert_int_equal(gc_sync.calls, 2);
	back = test_state_load(path);
	assert_int_equal(back->serial, 1 + GC_THREADS);
	assert_int_equal(state_cert_count(back), GC_THREADS);
	state_free(back);
	state_file_set_datasync(NULL);
	state_free(st);
	state_backend_free(be);
	free(path);
	test_rmdir(dir);
}

/*
 * A failed fdatasync fails every append it covered, and only those: the
 * first appender (its own sync succeeded) returns 0, the seven behind it
 * fail naming the journal and the error. Their lines are cut off, so the
 * journal reopens cleanly: the next append works and a load sees the first
 * record and the new one, none of the failed ones.
 */
static void test_state_journal_failed_sync_fails_every_covered_append(void **unused)
{
	char *dir = test_mkdtemp();
	char *path = fsutil_join(dir, "state.json"), *jnl = xasprintf("%s.journal", path);
	struct state_backend *be = test_state_open(path);
	struct state *st = NULL, *back;
	struct gc_thread t[GC_THREADS];
	struct buf data = BUF_INIT;
	const char *ok_name = NULL;
	int failed = 0;

	(void)unused;
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(state_save(be, st), 0); /* serial 1 */
	gc_sync_reset(1, GC_THREADS, 2);
	gc_run(be, st, t, 1);
	for (int i = 0; i < GC_THREADS; i++) {
		if (!t[i].rc) {
			assert_null(ok_name);
			ok_name = t[i].rec->name;
			continue;
		}
		failed++;
		if (!strstr(t[i].msg, "state.json.journal: append: fdatasync: Input/output error"))
			fail_msg("thread %d: unexpected message: %s", i, t[i].msg);
	}
	assert_non_null(ok_name);
	assert_int_equal(failed, GC_THREADS - 1);
	assert_int_equal(gc_sync.calls, 2);

	/* Cut back to the durable line: one line in the file. */
	assert_int_equal(fsutil_read_file(jnl, STATE_MAX_BYTES, &data), 0);
	assert_non_null(memchr(data.data, '\n', data.len));
	assert_ptr_equal(memchr(data.data, '\n', data.len), data.data + data.len - 1);

	/* Reopened on the next append (serials never repeat: the failed ones are skipped). */
	assert_int_equal(state_journal(be, st, "after", state_cert_put(st, "after")), 0);
	assert_int_equal(st->serial, 2 + GC_THREADS);
	back = test_state_load(path);
	assert_int_equal(back->serial, 2 + GC_THREADS);
	assert_int_equal(state_cert_count(back), 2);
	assert_non_null(state_cert_get(back, ok_name));
	assert_non_null(state_cert_get(back, "after"));
	state_free(back);
	state_file_set_datasync(NULL);
	buf_free(&data);
	state_free(st);
	state_backend_free(be);
	free(jnl);
	free(path);
	test_rmdir(dir);
}

static void test_state_ten_thousand_records_round_trip(void **unused)
{
	struct state *st = state_new(), *back;
	struct buf a = BUF_INIT, b = BUF_INIT;
	char name[32];

	(void)unused;
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "cert-%05d", (i * 7919) % 10000);
		fill_cert(state_cert_put(st, name), i);
	}
	assert_int_equal(state_cert_count(st), 10000);
	state_to_json(st, &a);
	back = decode_ok(&a);
	assert_int_equal(state_cert_count(back), 10000);
	for (int i = 0; i < 10000; i += 997) {
		snprintf(name, sizeof(name), "cert-%05d", i);
		assert_cert_equal(state_cert_get(st, name), state_cert_get(back, name));
	}
	state_to_json(back, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	buf_free(&a);
	buf_free(&b);
	state_free(back);
	state_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_round_trips_every_field),
		cmocka_unit_test(test_state_encoding_is_stable_and_sorted),
		cmocka_unit_test(test_state_record_json_compact_and_pretty),
		cmocka_unit_test(test_state_invalid_utf8_is_replaced_not_fatal),
		cmocka_unit_test(test_state_records_by_name),
		cmocka_unit_test(test_state_history_is_bounded),
		cmocka_unit_test(test_state_webhook_dedupe_is_bounded),
		cmocka_unit_test(test_state_corrupt_json_is_refused_with_position),
		cmocka_unit_test(test_state_unknown_version_is_refused),
		cmocka_unit_test(test_state_wrong_field_type_names_the_field),
		cmocka_unit_test(test_state_decoder_is_strict_json),
		cmocka_unit_test(test_state_duplicate_keys_are_refused_with_position),
		cmocka_unit_test(test_state_duplicate_keys_found_after_many_objects),
		cmocka_unit_test(test_state_journal_line_with_a_duplicate_key_is_refused),
		cmocka_unit_test(test_state_decoder_unescapes_strings),
		cmocka_unit_test(test_state_version_is_checked_before_fields),
		cmocka_unit_test(test_state_times_round_trip_and_are_clamped),
		cmocka_unit_test(test_state_decoder_bounds_lists),
		cmocka_unit_test(test_state_unknown_keys_are_ignored),
		cmocka_unit_test(test_state_save_is_atomic_and_keeps_a_backup),
		cmocka_unit_test(test_state_files_are_private_even_with_a_permissive_umask),
		cmocka_unit_test(test_state_journal_replays_in_serial_order),
		cmocka_unit_test(test_state_journal_alone_recovers_a_fresh_state),
		cmocka_unit_test(test_state_truncated_last_journal_line_is_ignored),
		cmocka_unit_test(test_state_corrupt_journal_line_in_the_middle_is_refused),
		cmocka_unit_test(test_state_corrupt_file_is_refused_naming_the_backup),
		cmocka_unit_test(test_state_lock_contention_names_the_holder),
		cmocka_unit_test(test_state_journal_is_safe_from_threads),
		cmocka_unit_test(test_state_journal_group_commit_keeps_every_line_in_order),
		cmocka_unit_test(test_state_journal_group_commit_shares_one_sync),
		cmocka_unit_test(test_state_journal_failed_sync_fails_every_covered_append),
		cmocka_unit_test(test_state_ten_thousand_records_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
