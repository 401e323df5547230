/*
 * The engine's install path: every certificate is verified against the
 * manifest before it is published (names as the provider maps them, key,
 * dates and renewal point, chain), kept in the key store before publishing,
 * and a local write failure is transient with the material kept for the retry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../manifests/manifest.h"
#include "../../reconciler/config.h"
#include "../../reconciler/provider.h"
#include "../../state/keystore.h"
#include "../../state/state.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

#define DAY 86400

struct fx {
	char *dir, *out, *keys;
	struct config *cfg;
	struct state *st;
	struct crypto_key *ca_key;
	struct crypto_cert *ca;
	struct cert_spec *spec;
	struct step_ctx ctx;
	int64_t now;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct diags d = DIAGS_INIT;
	char *yaml;

	f->dir = test_mkdtemp();
	f->out = fsutil_join(f->dir, "out");
	f->keys = fsutil_join(f->dir, "state/keys");
	yaml = xasprintf("source: {repo: r}\nstate: {path: %s/state/state.json}\noutput: {root: %s}\nissuers:\n"
			 "  internal: {type: ca, selfSigned: true}\n"
			 "  dns: {type: dnsimple, account: \"1\", token: {env: T}, zones: [pizza.company]}\n",
			 f->dir, f->out);
	config_parse("/etc/certsync/c.yaml", yaml, strlen(yaml), &f->cfg, &d);
	if (d.n)
		diags_print(&d, stderr);
	assert_int_equal(d.n, 0);
	diags_free(&d);
	free(yaml);
	f->now = util_now();
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &f->ca_key), 0);
	assert_int_equal(crypto_ca_create(f->ca_key, "test CA", f->now - DAY, f->now + 3650 * DAY, &f->ca), 0);
	f->st = state_new();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	material_wipe(&f->ctx.mat);
	cert_spec_free(f->spec);
	state_free(f->st);
	config_free(f->cfg);
	crypto_key_free(f->ca_key);
	crypto_cert_free(f->ca);
	test_rmdir(f->dir);
	free(f->out);
	free(f->keys);
	free(f);
	return 0;
}

/* The step context for certificate "www" of issuer with the given dnsNames and extra spec lines. */
static void prepare(struct fx *f, const char *issuer, const char *names, const char *extra)
{
	char *yaml = xasprintf("apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: www}\n"
			       "spec:\n  issuer: %s\n  dnsNames: [%s]\n%s",
			       issuer, names, extra ? extra : "");
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;

	manifest_parse_file("www.yaml", yaml, strlen(yaml), &v, &n, &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(n, 1);
	cert_spec_free(f->spec);
	f->spec = v[0];
	free(v);
	free(yaml);
	diags_free(&d);
	material_wipe(&f->ctx.mat);
	memset(&f->ctx, 0, sizeof(f->ctx));
	f->ctx.cfg = f->cfg;
	f->ctx.issuer = config_issuer(f->cfg, issuer);
	assert_non_null(f->ctx.issuer);
	f->ctx.spec = f->spec;
	f->ctx.rec = state_cert_put(f->st, "www");
	f->ctx.now = f->now;
	f->ctx.log.cert = "www";
	material_init(&f->ctx.mat);
}

/* Fills ctx.mat with a leaf for the comma-separated names, signed by signer (NULL: the fixture's CA). */
static void material(struct fx *f, const char *names, int64_t nb, int64_t na, struct crypto_key *signer_key,
		     struct crypto_cert *signer, int mismatched_key)
{
	char *copy = xstrdup(names), *save = NULL, *sans[16];
	struct crypto_key *key = NULL, *other = NULL;
	struct crypto_cert *leaf = NULL;
	struct buf csr = BUF_INIT;
	size_t n = 0;

	for (char *t = strtok_r(copy, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save))
		sans[n++] = t;
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	assert_int_equal(crypto_csr_create(key, sans[0], (const char *const *)sans, n, &csr), 0);
	assert_int_equal(crypto_sign_csr(signer ? signer : f->ca, signer_key ? signer_key : f->ca_key, csr.data,
					 csr.len, nb, na, &leaf),
			 0);
	material_wipe(&f->ctx.mat);
	material_init(&f->ctx.mat);
	assert_int_equal(crypto_cert_to_pem(leaf, &f->ctx.mat.cert), 0);
	assert_int_equal(crypto_cert_to_pem(f->ca, &f->ctx.mat.ca), 0);
	if (mismatched_key)
		assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &other), 0);
	assert_int_equal(crypto_key_to_pem(other ? other : key, &f->ctx.mat.key), 0);
	buf_free(&csr);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	crypto_key_free(other);
	free(copy);
}

/* Asserts the install was refused as a verification failure naming `what`, with nothing written. */
static void assert_refused(struct fx *f, const char *what)
{
	char *link = fsutil_join(f->out, "www");

	assert_int_equal(engine_install(&f->ctx), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "www: certificate not installed (verification): "));
	if (!strstr(cs_errmsg(), what))
		fail_msg("\"%s\" not in: %s", what, cs_errmsg());
	assert_string_equal(f->ctx.fail_class, STATE_FAIL_VERIFICATION);
	assert_false(fsutil_exists(link));
	assert_false(fsutil_exists(f->keys)); /* not kept either */
	assert_null(f->ctx.rec->serial);
	free(link);
}

static void test_install_refuses_a_leaf_for_other_names(void **state)
{
	struct fx *f = *state;

	prepare(f, "internal", "www.example.test", NULL);
	material(f, "other.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_refused(f, "missing: www.example.test; not in the manifest: other.example.test");
	/* one name too many is refused as well */
	material(f, "www.example.test,extra.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_refused(f, "(not in the manifest: extra.example.test)");
	/* a provider's name is shown without its control characters */
	material(f, "www.example.test,evil\x1b[31m.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_refused(f, "(not in the manifest: evil??31m.example.test)");
	assert_null(strchr(cs_errmsg(), '\x1b'));
	/* a long list is cut after 8 names */
	material(f, "a.test,b.test,c.test,d.test,e.test,f.test,g.test,h.test,i.test,j.test", f->now - 60,
		 f->now + 90 * DAY, NULL, NULL, 0);
	assert_refused(f, "not in the manifest: a.test, b.test, c.test, d.test, e.test, f.test, g.test, h.test, ...)");
}

static void test_install_refuses_an_expired_leaf(void **state)
{
	struct fx *f = *state;

	prepare(f, "internal", "www.example.test", NULL);
	material(f, "www.example.test", f->now - 3800 * DAY, f->now - 3738 * DAY, NULL, NULL, 0);
	assert_refused(f, "expired 3738d ago");
}

static void test_install_refuses_a_leaf_inside_its_renewal_window(void **state)
{
	struct fx *f = *state;

	prepare(f, "internal", "www.example.test", "  renewBefore: 720h\n");
	material(f, "www.example.test", f->now - 80 * DAY, f->now + 10 * DAY, NULL, NULL, 0);
	assert_refused(f, "inside the renewal window (renewBefore 30d)");
	/*
	 * A renewBefore of the whole lifetime or more: installed, the certificate
	 * renews at 1/3 of its lifetime (plan_renewal_time), so one past that
	 * point is refused as any other inside its renewal window (it used to be
	 * installed, and renewed, and bought again, on every pass) ...
	 */
	prepare(f, "internal", "www.example.test", "  renewBefore: 2400h\n");
	material(f, "www.example.test", f->now - 70 * DAY, f->now + 20 * DAY, NULL, NULL, 0);
	assert_refused(f, "inside the renewal window (renewBefore 30d)");
	/* ... and a fresh one is installed, recording the renewBefore it was issued under */
	prepare(f, "internal", "www.example.test", "  renewBefore: 2400h\n");
	material(f, "www.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), 0);
	assert_string_equal(state_cert_id(f->ctx.rec, PLAN_ID_RENEW_BEFORE), "8640000");
}

static void test_install_refuses_a_leaf_not_yet_valid(void **state)
{
	struct fx *f = *state;

	prepare(f, "internal", "www.example.test", NULL);
	material(f, "www.example.test", f->now + 2 * DAY, f->now + 90 * DAY, NULL, NULL, 0);
	assert_refused(f, "is not valid before");
}

static void test_install_refuses_a_key_mismatch(void **state)
{
	struct fx *f = *state;

	prepare(f, "internal", "www.example.test", NULL);
	material(f, "www.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 1);
	assert_refused(f, "does not match its private key");
}

static void test_install_refuses_a_broken_chain(void **state)
{
	struct fx *f = *state;
	struct crypto_key *k = NULL;
	struct crypto_cert *other = NULL;

	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &k), 0);
	assert_int_equal(crypto_ca_create(k, "another CA", f->now - DAY, f->now + 365 * DAY, &other), 0);
	prepare(f, "internal", "www.example.test", NULL);
	material(f, "www.example.test", f->now - 60, f->now + 90 * DAY, k, other, 0); /* ca.crt stays the fixture's */
	assert_refused(f, "the chain does not verify from the leaf to ca.crt");
	/* garbage from a provider is refused the same way */
	material(f, "www.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	buf_clear(&f->ctx.mat.cert);
	buf_puts(&f->ctx.mat.cert, "<html>not a certificate</html>");
	assert_refused(f, "tls.crt");
	crypto_key_free(k);
	crypto_cert_free(other);
}

static void test_install_accepts_a_wildcard_as_written(void **state)
{
	struct fx *f = *state;
	char *crt = fsutil_join(f->out, "www/tls.crt");

	prepare(f, "dns", "\"*.pizza.company\"", NULL);
	material(f, "*.pizza.company", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), 0);
	assert_null(f->ctx.fail_class);
	assert_true(fsutil_exists(crt));
	/* a leaf for a name under the wildcard is not the wildcard */
	material(f, "shop.pizza.company", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "missing: *.pizza.company; not in the manifest: shop.pizza.company"));
	free(crt);
}

static void test_install_accepts_the_apex_dnsimple_adds_to_www_only(void **state)
{
	struct fx *f = *state;

	/* DNSimple's "www" certificate carries the apex although the manifest names only www */
	prepare(f, "dns", "www.pizza.company", NULL);
	material(f, "www.pizza.company,pizza.company", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), 0);
	/* and without it, as the manifest says, too */
	material(f, "www.pizza.company", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), 0);
	/* but an "api" certificate gets no apex, and another issuer none either */
	prepare(f, "dns", "api.pizza.company", NULL);
	material(f, "api.pizza.company,pizza.company", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "not in the manifest: pizza.company"));
	prepare(f, "internal", "www.pizza.company", NULL);
	material(f, "www.pizza.company,pizza.company", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "not in the manifest: pizza.company"));
}

static void test_install_keeps_the_key_by_serial_and_drops_the_old_one(void **state)
{
	struct fx *f = *state;
	struct keystore *ks = NULL;
	struct keystore_item it;
	char first[130], *p;
	struct stat st;

	prepare(f, "internal", "www.example.test", NULL);
	material(f, "www.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), 0);
	snprintf(first, sizeof(first), "%s", f->ctx.rec->serial);
	assert_null(state_cert_id(f->ctx.rec, ENGINE_ID_KEY_PENDING));
	p = xasprintf("%s/store/www/%s.pem", f->keys, first);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->keys, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(p);
	/* the outputs are lost: reinstall is the same certificate from the store */
	p = fsutil_join(f->out, "www");
	assert_int_equal(fsutil_rm_rf(p), 0);
	free(p);
	material_wipe(&f->ctx.mat);
	material_init(&f->ctx.mat);
	assert_int_equal(engine_reinstall(&f->ctx), 0);
	assert_string_equal(f->ctx.rec->serial, first);
	/* a renewal replaces it: the old key goes once the new certificate is live */
	material(f, "www.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), 0);
	assert_string_not_equal(f->ctx.rec->serial, first);
	ks = keystore_open_dir(f->keys);
	assert_int_equal(keystore_get(ks, "www", first, &it), CS_ENOTFOUND);
	assert_int_equal(keystore_get(ks, "www", f->ctx.rec->serial, &it), 0);
	keystore_item_wipe(&it);
	keystore_close(ks);
	/* a record the store knows nothing of is CS_ENOTFOUND: the driver falls back to its download */
	state_str_set(&f->ctx.rec->serial, "abcdef");
	assert_int_equal(engine_reinstall(&f->ctx), CS_ENOTFOUND);
}

static void test_install_write_failure_is_transient_and_the_retry_is_local(void **state)
{
	struct fx *f = *state;
	char *root = f->cfg->output_root, *blocker = test_write(f->dir, "blocker", "a file\n", 0644);
	const char *pending;

	/* the output root lies under a regular file: ENOTDIR, as a read-only or full disk fails */
	f->cfg->output_root = fsutil_join(blocker, "out");
	prepare(f, "internal", "www.example.test", NULL);
	material(f, "www.example.test", f->now - 60, f->now + 90 * DAY, NULL, NULL, 0);
	assert_int_equal(engine_install(&f->ctx), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), blocker));
	assert_null(f->ctx.fail_class);
	assert_null(f->ctx.rec->serial);
	assert_non_null(pending = state_cert_id(f->ctx.rec, ENGINE_ID_KEY_PENDING));
	/* the retry (a resumed install step, nothing in memory) takes the paid result from the key store */
	material_wipe(&f->ctx.mat);
	material_init(&f->ctx.mat);
	free(f->cfg->output_root);
	f->cfg->output_root = root;
	assert_int_equal(engine_pending_material(&f->ctx), 0);
	assert_true(material_present(&f->ctx.mat));
	assert_int_equal(engine_install(&f->ctx), 0);
	assert_null(state_cert_id(f->ctx.rec, ENGINE_ID_KEY_PENDING));
	assert_int_equal(engine_pending_material(&f->ctx), CS_ENOTFOUND);
	free(blocker);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_refuses_a_leaf_for_other_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_refuses_an_expired_leaf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_refuses_a_leaf_inside_its_renewal_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_refuses_a_leaf_not_yet_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_refuses_a_key_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_refuses_a_broken_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_accepts_a_wildcard_as_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_accepts_the_apex_dnsimple_adds_to_www_only, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_install_keeps_the_key_by_serial_and_drops_the_old_one, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_install_write_failure_is_transient_and_the_retry_is_local, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
