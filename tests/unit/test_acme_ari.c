/* ACME renewal information and revocation helpers (providers/acme_ari.c): the point in the window, what is
 * asked again and when, what a renewal replaces, revocation reasons. */
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
#include "../../state/state.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "testutil.h"

static void test_ari_pick_stays_in_the_window_and_reaches_both_ends(void **s)
{
	int64_t start = 1800000000, end = start + 86400;

	(void)s;
	assert_true(acme_ari_pick(start, end, 0) == start);
	assert_true(acme_ari_pick(start, end, 86400) == end);
	assert_true(acme_ari_pick(start, end, 86401) == start); /* wraps: r is taken modulo the span */
	assert_true(acme_ari_pick(start, start, 12345) == start);
	assert_true(acme_ari_pick(end, start, 12345) == end); /* a window that ends before it starts: its start */
	assert_true(acme_ari_pick(start, end, UINT64_MAX) >= start && acme_ari_pick(start, end, UINT64_MAX) <= end);
}

/* With random bits, the points spread over the whole window: ten buckets, each near a tenth. */
static void test_ari_pick_is_uniform(void **s)
{
	int64_t start = 1800000000, end = start + 100000;
	size_t buckets[10] = {0};
	const size_t n = 20000;

	(void)s;
	for (size_t i = 0; i < n; i++) {
		uint64_t r;
		int64_t at;

		assert_int_equal(crypto_random(&r, sizeof(r)), 0);
		at = acme_ari_pick(start, end, r);
		assert_true(at >= start && at <= end);
		buckets[(size_t)((at - start) * 10 / (end - start + 1))]++;
	}
	for (size_t b = 0; b < 10; b++)
		assert_true(buckets[b] > n / 10 * 8 / 10 && buckets[b] < n / 10 * 12 / 10);
}

/* plan.c reads the driver's record ids by their plan.h names: both must be the same keys. */
static void test_ari_record_ids_are_the_ones_plan_reads(void **s)
{
	(void)s;
	assert_string_equal(ACME_ID_ARI_START, PLAN_ID_ARI_START);
	assert_string_equal(ACME_ID_ARI_END, PLAN_ID_ARI_END);
	assert_string_equal(ACME_ID_ARI_AT, PLAN_ID_ARI_AT);
	assert_string_equal(ACME_ID_ARI_NEXT, PLAN_ID_ARI_NEXT);
	assert_string_equal(ACME_ID_REVOKED, PLAN_ID_REVOKED);
}

static struct state_cert *installed(struct state *st)
{
	struct state_cert *r = state_cert_put(st, "www");

	r->phase = PHASE_READY;
	state_str_set(&r->serial, "45b3366c40ce95da");
	state_str_set(&r->fingerprint, "ab");
	state_cert_set_id(r, ACME_ID_ARI_ID, "JxKIDt2jZAkGKambkuwitbcsMuQ.RbM2bEDOldo");
	state_cert_set_id(r, PLAN_ID_ARI_SERIAL, "45b3366c40ce95da");
	state_cert_set_id(r, ACME_ID_ARI_NEXT, "1800003600");
	return r;
}

static void test_ari_is_asked_again_only_for_the_installed_certificate(void **s)
{
	struct state *st = state_new();
	struct state_cert *r = installed(st);

	(void)s;
	assert_true(acme_ari_upkeep_due(NULL, r) == 1800003600);
	r->phase = PHASE_PENDING; /* a change under way asks after its own install */
	assert_true(acme_ari_upkeep_due(NULL, r) == 0);
	r->phase = PHASE_READY;
	state_str_set(&r->serial, "0102"); /* another certificate was installed since */
	assert_true(acme_ari_upkeep_due(NULL, r) == 0);
	state_str_set(&r->serial, "45b3366c40ce95da");
	state_cert_set_id(r, ACME_ID_ARI_NEXT, NULL); /* the CA has no renewalInfo */
	assert_true(acme_ari_upkeep_due(NULL, r) == 0);
	state_free(st);
}

static void test_only_a_renewal_replaces_and_a_journaled_id_is_kept(void **s)
{
	struct state *st = state_new();
	struct step_ctx ctx;
	char *v;

	(void)s;
	memset(&ctx, 0, sizeof(ctx));
	ctx.rec = installed(st);
	ctx.kind = CHANGE_RENEW;
	v = acme_ari_replaces(&ctx);
	assert_string_equal(v, "JxKIDt2jZAkGKambkuwitbcsMuQ.RbM2bEDOldo");
	free(v);
	ctx.kind = CHANGE_REPLACE; /* a changed manifest asks for another certificate, not a successor */
	assert_null(acme_ari_replaces(&ctx));
	ctx.kind = CHANGE_RENEW;
	state_str_set(&ctx.rec->serial, "0102"); /* the id is about a certificate no longer installed */
	assert_null(acme_ari_replaces(&ctx));
	state_cert_set_id(ctx.rec, ACME_ID_REPLACES, "AAAA.BBBB"); /* what this order's first attempt sent */
	v = acme_ari_replaces(&ctx);
	assert_string_equal(v, "AAAA.BBBB");
	free(v);
	state_free(st);
}

static void test_revocation_reasons_by_name(void **s)
{
	static const struct {
		const char *name;
		int code;
	} want[] = {{"unspecified", 0},
		    {"keyCompromise", 1},
		    {"affiliationChanged", 3},
		    {"superseded", 4},
		    {"cessationOfOperation", 5}};
	int code = -1;

	(void)s;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(acme_revoke_reason(want[i].name, &code), 0);
		assert_int_equal(code, want[i].code);
		assert_non_null(strstr(acme_revoke_reason_list(), want[i].name));
	}
	assert_int_equal(acme_revoke_reason("keycompromise", &code), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "unknown revocation reason \"keycompromise\" (known: unspecified,"));
	assert_int_equal(acme_revoke_reason("certificateHold", &code), CS_EINVALID); /* not for ACME */
	assert_int_equal(acme_revoke_reason(NULL, &code), CS_EINVALID);
}

/* ---------- against a small renewalInfo server (tests/unit/fake_acme_ari.py) ---------- */

#define WIN_START 1893553445 /* the fake's window: 2030-01-02T03:04:05Z … */
#define WIN_END 1893639845   /* … 2030-01-03T03:04:05Z */

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

/* A leaf signed by a fresh CA (so it has an authority key identifier), as PEM; its serial in serial. */
static char *leaf_pem(char serial[130])
{
	struct crypto_key *ca_key = NULL, *key = NULL;
	struct crypto_cert *ca = NULL, *leaf = NULL;
	struct crypto_cert_info info;
	const char *sans[] = {"www.example.test"};
	struct buf csr = BUF_INIT, pem = BUF_INIT;

	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &ca_key), 0);
	assert_int_equal(crypto_ca_create(ca_key, "test CA", WIN_START - 86400, WIN_END + 86400, &ca), 0);
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	assert_int_equal(crypto_csr_create(key, sans[0], sans, 1, &csr), 0);
	assert_int_equal(crypto_sign_csr(ca, ca_key, csr.data, csr.len, WIN_START - 3600, WIN_END + 3600, &leaf), 0);
	assert_int_equal(crypto_cert_to_pem(leaf, &pem), 0);
	assert_int_equal(crypto_cert_info(leaf, &info), 0);
	memcpy(serial, info.serial, sizeof(info.serial));
	crypto_cert_info_free(&info);
	crypto_cert_free(leaf);
	crypto_cert_free(ca);
	crypto_key_free(key);
	crypto_key_free(ca_key);
	buf_free(&csr);
	return buf_detach(&pem);
}

static long long id_num(const struct state_cert *r, const char *key)
{
	const char *v = state_cert_id(r, key);

	return v ? strtoll(v, NULL, 10) : -1;
}

static void test_after_install_records_the_window_a_point_in_it_and_when_to_ask_again(void **s)
{
	char *dir = xasprintf("http://127.0.0.1:%d/dir", ari_port), serial[130], *want = NULL;
	struct acme_client_opts o = {"le", dir, NULL, 5, "certsync-test"};
	struct acme_client *c = NULL;
	struct state *st = state_new();
	struct step_ctx ctx;
	char *pem = leaf_pem(serial);

	(void)s;
	memset(&ctx, 0, sizeof(ctx));
	ctx.rec = state_cert_put(st, "www");
	ctx.now = util_now();
	ctx.log.cert = "www";
	state_str_set(&ctx.rec->serial, serial);
	/* What the previous certificate left: forgotten, whatever happens next. */
	state_cert_set_id(ctx.rec, ACME_ID_REPLACES, "old.id");
	state_cert_set_id(ctx.rec, ACME_ID_ARI_AT, "1");
	assert_int_equal(acme_client_new(&o, &c), 0);
	acme_ari_after_install(&ctx, NULL, c, pem, strlen(pem));
	assert_int_equal(acme_ari_cert_id(pem, strlen(pem), &want), 0);
	assert_string_equal(state_cert_id(ctx.rec, ACME_ID_ARI_ID), want);
	assert_string_equal(state_cert_id(ctx.rec, PLAN_ID_ARI_SERIAL), serial);
	assert_null(state_cert_id(ctx.rec, ACME_ID_REPLACES));
	assert_int_equal(id_num(ctx.rec, ACME_ID_ARI_START), WIN_START);
	assert_int_equal(id_num(ctx.rec, ACME_ID_ARI_END), WIN_END);
	assert_true(id_num(ctx.rec, ACME_ID_ARI_AT) >= WIN_START && id_num(ctx.rec, ACME_ID_ARI_AT) <= WIN_END);
	/* No Retry-After: asked again after the client's default (hours, not minutes). */
	assert_true(id_num(ctx.rec, ACME_ID_ARI_NEXT) >= ctx.now + 3600);
	free(want);
	free(pem);
	acme_client_free(c);
	state_free(st);
	free(dir);
}

static void test_upkeep_keeps_a_point_inside_the_window_and_retries_a_failure_later(void **s)
{
	char *dir = xasprintf("http://127.0.0.1:%d/dir", ari_port);
	struct acme a;
	struct issuer is = {0};
	struct state *st = state_new();
	struct state_cert *r = installed(st);
	int64_t now = util_now();

	(void)s;
	memset(&a, 0, sizeof(a));
	a.name = "le";
	a.directory = dir;
	a.timeout = 5;
	pthread_mutex_init(&a.mu, NULL);
	is.name = "le";
	is.priv = &a;
	state_cert_set_id(r, ACME_ID_ARI_AT, "1893600000"); /* inside the window: kept */
	assert_int_equal(acme_ari_upkeep(&is, r, now), 1);
	assert_int_equal(id_num(r, ACME_ID_ARI_AT), 1893600000);
	assert_int_equal(id_num(r, ACME_ID_ARI_START), WIN_START);
	assert_true(acme_ari_upkeep_due(&is, r) >= now + 3600);
	state_cert_set_id(r, ACME_ID_ARI_AT, "1700000000"); /* the CA moved the window: a new point in it */
	assert_int_equal(acme_ari_upkeep(&is, r, now), 1);
	assert_true(id_num(r, ACME_ID_ARI_AT) >= WIN_START && id_num(r, ACME_ID_ARI_AT) <= WIN_END);
	/* The CA does not answer as one: nothing recorded changes but when to ask again, an hour on. */
	free(dir);
	dir = xasprintf("http://127.0.0.1:%d/no-such-directory", ari_port);
	a.directory = dir;
	state_cert_set_id(r, ACME_ID_ARI_AT, "1893600000");
	assert_int_equal(acme_ari_upkeep(&is, r, now), 1);
	assert_int_equal(id_num(r, ACME_ID_ARI_AT), 1893600000);
	assert_int_equal(id_num(r, ACME_ID_ARI_NEXT), now + 3600);
	pthread_mutex_destroy(&a.mu);
	state_free(st);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ari_pick_stays_in_the_window_and_reaches_both_ends),
		cmocka_unit_test(test_ari_pick_is_uniform),
		cmocka_unit_test(test_ari_record_ids_are_the_ones_plan_reads),
		cmocka_unit_test(test_ari_is_asked_again_only_for_the_installed_certificate),
		cmocka_unit_test(test_only_a_renewal_replaces_and_a_journaled_id_is_kept),
		cmocka_unit_test(test_revocation_reasons_by_name),
	};
	const struct CMUnitTest served[] = {
		cmocka_unit_test(test_after_install_records_the_window_a_point_in_it_and_when_to_ask_again),
		cmocka_unit_test(test_upkeep_keeps_a_point_inside_the_window_and_retries_a_failure_later),
	};

	return cmocka_run_group_tests(tests, NULL, NULL) | cmocka_run_group_tests(served, ari_start, ari_stop);
}
