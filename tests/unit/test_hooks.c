/*
 * Hooks: onChange's environment (certbot's deploy-hook names beside
 * certsync's), afterApply once for every record that owes it, its lists
 * bounded with a truncation flag, owed marks kept on failure and cleared on
 * success, and the config fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../manifests/manifest.h"
#include "../../reconciler/config.h"
#include "../../reconciler/hooks.h"
#include "../../state/state.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

struct fx {
	char *dir, *envfile, *script;
	struct config *cfg;
};

/* A config whose hooks run a script writing its environment to envfile (exit code `code`). */
static struct config *fx_config(struct fx *f, int code, const char *extra)
{
	struct diags d = DIAGS_INIT;
	struct config *cfg = NULL;
	char *body =
		xasprintf("#!/bin/sh\nenv | grep -E '^(CERTSYNC|RENEWED)_' | sort > %s\nexit %d\n", f->envfile, code);
	char *yaml;

	free(f->script);
	f->script = test_write(f->dir, "hook.sh", body, 0755);
	yaml = xasprintf("source: {repo: r}\nstate: {path: %s/state.json}\noutput: {root: %s/certs%s}\n"
			 "issuers: {internal: {type: ca, selfSigned: true}}\n"
			 "hooks: {onChange: [%s], afterApply: [%s], timeout: 10s}\n",
			 f->dir, f->dir, extra, f->script, f->script);
	config_parse("/etc/certsync/c.yaml", yaml, strlen(yaml), &cfg, &d);
	if (d.n)
		diags_print(&d, stderr);
	assert_int_equal(d.n, 0);
	diags_free(&d);
	free(body);
	free(yaml);
	return cfg;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	f->dir = test_mkdtemp();
	f->envfile = fsutil_join(f->dir, "env.txt");
	f->cfg = fx_config(f, 0, "");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	config_free(f->cfg);
	test_rmdir(f->dir);
	free(f->envfile);
	free(f->script);
	free(f);
	return 0;
}

static char *env_text(struct fx *f)
{
	struct buf b = BUF_INIT;

	assert_int_equal(fsutil_read_file(f->envfile, 1 << 22, &b), 0);
	unlink(f->envfile);
	return buf_detach(&b);
}

static struct cert_spec *spec(const char *name, const char *a, const char *b)
{
	struct cert_spec *s = xcalloc(1, sizeof(*s));

	s->name = xstrdup(name);
	s->dns_names = xcalloc(3, sizeof(char *));
	s->dns_names[s->n_dns++] = xstrdup(a);
	if (b)
		s->dns_names[s->n_dns++] = xstrdup(b);
	return s;
}

static void test_on_change_has_certbot_names(void **state)
{
	struct fx *f = *state;
	struct cert_spec *s = spec("www", "pizza.test", "www.pizza.test");
	char *env, *want;

	assert_int_equal(hooks_on_change(f->cfg, "www", "shop/www", s), 0);
	env = env_text(f);
	want = xasprintf("RENEWED_LINEAGE=%s/certs/shop/www\n", f->dir);
	assert_non_null(strstr(env, want));
	assert_non_null(strstr(env, "RENEWED_DOMAINS=pizza.test www.pizza.test\n"));
	assert_non_null(strstr(env, "CERTSYNC_CERT_DOMAINS=pizza.test www.pizza.test\n"));
	assert_non_null(strstr(env, "CERTSYNC_EVENT=installed\n"));
	free(want);
	free(env);
	cert_spec_free(s);
}

static void test_after_apply_once_for_all_owed_records(void **state)
{
	struct fx *f = *state;
	struct state *st = state_new();
	struct cert_spec *specs[2] = {spec("a", "a.test", "shared.test"), spec("b", "b.test", "shared.test")};
	size_t cleared = 9;
	char *env;

	state_cert_put(st, "c"); /* installed earlier: owes nothing */
	hooks_after_apply_mark(f->cfg, state_cert_put(st, "b"));
	hooks_after_apply_mark(f->cfg, state_cert_put(st, "a"));
	state_str_set(&state_cert_get(st, "b")->output_dir, "shop/b");
	assert_int_equal(hooks_after_apply(f->cfg, st, specs, 2, &cleared), 0);
	assert_int_equal(cleared, 2);
	env = env_text(f);
	assert_non_null(strstr(env, "CERTSYNC_CHANGED=a b\n"));
	assert_non_null(strstr(env, "CERTSYNC_CHANGED_COUNT=2\n"));
	assert_non_null(strstr(env, "CERTSYNC_CHANGED_DOMAINS=a.test b.test shared.test\n"));
	assert_non_null(strstr(env, "CERTSYNC_EVENT=afterApply\n"));
	assert_non_null(strstr(env, "/certs/a "));
	assert_non_null(strstr(env, "/certs/shop/b\n"));
	assert_null(strstr(env, "TRUNCATED"));
	assert_null(strstr(env, "RENEWED_"));
	assert_null(state_cert_id(state_cert_get(st, "a"), HOOKS_ID_AFTER_APPLY));
	free(env);
	/* nothing owed: nothing runs */
	assert_int_equal(hooks_after_apply(f->cfg, st, specs, 2, &cleared), 0);
	assert_int_equal(cleared, 0);
	assert_false(fsutil_exists(f->envfile));
	state_free(st);
	cert_spec_free(specs[0]);
	cert_spec_free(specs[1]);
}

static void test_after_apply_failure_keeps_the_marks(void **state)
{
	struct fx *f = *state;
	struct state *st = state_new();
	size_t cleared = 9;

	config_free(f->cfg);
	f->cfg = fx_config(f, 3, "");
	hooks_after_apply_mark(f->cfg, state_cert_put(st, "a"));
	assert_int_not_equal(hooks_after_apply(f->cfg, st, NULL, 0, &cleared), 0);
	assert_non_null(strstr(cs_errmsg(), "afterApply hook"));
	assert_non_null(strstr(cs_errmsg(), "failed (status 3)"));
	assert_int_equal(cleared, 0);
	assert_string_equal(state_cert_id(state_cert_get(st, "a"), HOOKS_ID_AFTER_APPLY), "1");
	state_free(st);
}

static void test_after_apply_lists_are_bounded(void **state)
{
	struct fx *f = *state;
	struct state *st = state_new();
	char name[80], *env, *line, *end;
	size_t cleared = 0;

	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "certificate-with-a-rather-long-name-%05d", i);
		hooks_after_apply_mark(f->cfg, state_cert_put(st, name));
	}
	assert_int_equal(hooks_after_apply(f->cfg, st, NULL, 0, &cleared), 0);
	assert_int_equal(cleared, 2000);
	env = env_text(f);
	assert_non_null(strstr(env, "CERTSYNC_CHANGED_TRUNCATED=1\n"));
	assert_non_null(strstr(env, "CERTSYNC_CHANGED_COUNT=2000\n"));
	line = strstr(env, "CERTSYNC_CHANGED=");
	end = strchr(line, '\n');
	assert_true((size_t)(end - line) - strlen("CERTSYNC_CHANGED=") <= HOOKS_LIST_MAX);
	assert_true(end[-1] >= '0' && end[-1] <= '9'); /* cut after a whole name */
	free(env);
	state_free(st);
}

static void test_marks_only_when_the_hook_is_configured(void **state)
{
	struct fx *f = *state;
	struct diags d = DIAGS_INIT;
	struct config *plain = NULL;
	struct state_cert *c;
	struct state *st = state_new();
	const char *yaml = "source: {repo: r}\nstate: {path: /s/state.json}\noutput: {root: /o}\n"
			   "issuers: {internal: {type: ca, selfSigned: true}}\n";
	size_t cleared = 0;

	(void)f;
	assert_int_equal(config_parse("/etc/c.yaml", yaml, strlen(yaml), &plain, &d), 0);
	c = state_cert_put(st, "a");
	hooks_after_apply_mark(plain, c);
	assert_null(state_cert_id(c, HOOKS_ID_AFTER_APPLY));
	/* a mark left by a config that had the hook is dropped without running anything */
	state_cert_set_id(c, HOOKS_ID_AFTER_APPLY, "1");
	assert_int_equal(hooks_after_apply(plain, st, NULL, 0, &cleared), 0);
	assert_int_equal(cleared, 1);
	assert_null(state_cert_id(c, HOOKS_ID_AFTER_APPLY));
	assert_int_equal(plain->output.keep_previous, 60);
	config_free(plain);
	state_free(st);
	diags_free(&d);
}

static void test_config_output_and_hook_fields(void **state)
{
	struct fx *f = *state;
	struct diags d = DIAGS_INIT;
	struct config *c = NULL;
	const char *bad = "source: {repo: r}\nstate: {path: /s/state.json}\n"
			  "output: {root: /o, keepPreviousFor: soon, pkcs12Password: hunter2}\n"
			  "issuers: {internal: {type: ca, selfSigned: true}}\n"
			  "hooks: {afterApply: [nginx, -s, reload]}\n";
	char *text;

	config_free(f->cfg);
	f->cfg = fx_config(f, 0, ", keepPreviousFor: 0, pkcs12Password: {env: P12}");
	assert_int_equal(f->cfg->output.keep_previous, 0);
	assert_int_equal(f->cfg->output.pkcs12_password.kind, CRED_ENV);
	assert_int_equal(f->cfg->hooks.n_after_apply, 1);
	/* Zero in any unit means "at once", as 0 does; other durations as written. */
	config_free(f->cfg);
	f->cfg = fx_config(f, 0, ", keepPreviousFor: 0s");
	assert_int_equal(f->cfg->output.keep_previous, 0);
	config_free(f->cfg);
	f->cfg = fx_config(f, 0, ", keepPreviousFor: 0m");
	assert_int_equal(f->cfg->output.keep_previous, 0);
	config_free(f->cfg);
	f->cfg = fx_config(f, 0, ", keepPreviousFor: 90s");
	assert_int_equal(f->cfg->output.keep_previous, 90);
	assert_int_not_equal(config_parse("/etc/c.yaml", bad, strlen(bad), &c, &d), 0);
	assert_null(c);
	text = xstrdup("");
	for (size_t i = 0; i < d.n; i++) {
		char *l = diag_format(&d.v[i]), *t = xasprintf("%s%s\n", text, l);

		free(text);
		free(l);
		text = t;
	}
	assert_non_null(strstr(text, "3:37: output.keepPreviousFor:"));
	assert_non_null(strstr(text, "3:59: output.pkcs12Password"));
	assert_non_null(strstr(text, "5:22: hooks.afterApply: the command must be an absolute path"));
	assert_null(strstr(text, "hunter2"));
	free(text);
	diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_on_change_has_certbot_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_after_apply_once_for_all_owed_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_after_apply_failure_keeps_the_marks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_after_apply_lists_are_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_marks_only_when_the_hook_is_configured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_output_and_hook_fields, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
