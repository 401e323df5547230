/* ACME challenge solvers: the http-01 web root file (atomic, 0644, "{host}"), the dns-01 TXT record through a DNS
 * driver (the value and the driver's reference kept to remove it), untrusted tokens refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../reconciler/config.h"
#include "../../reconciler/provider.h"
#include "../../reconciler/providers/acme.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/jose.h"
#include "../../util/util.h"
#include "testutil.h"

#define TOKEN "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
#define KA TOKEN ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"

static void token_clear(struct state_token *t)
{
	free(t->method);
	free(t->name);
	free(t->location);
	free(t->ref);
	free(t->issuer);
	memset(t, 0, sizeof(*t));
}

struct fixture {
	char *dir;
	struct state_cert rec;
	struct config cfg;
	struct issuer issuers[1];
	struct step_ctx ctx;
};

/* ---------- a DNS driver that records what it is asked ---------- */

static char created[512], deleted[512];

static int fake_txt_create(const struct issuer *is, const char *fqdn, const char *value, char **ref)
{
	snprintf(created, sizeof(created), "%s %s %s", is->name, fqdn, value);
	*ref = xstrdup("rec-42");
	return 0;
}

static int fake_txt_delete(const struct issuer *is, const char *fqdn, const char *value, const char *ref)
{
	snprintf(deleted, sizeof(deleted), "%s %s %s %s", is->name, fqdn, value, ref ? ref : "(none)");
	return 0;
}

static const struct dns_driver fake_dns = {.txt_create = fake_txt_create, .txt_delete = fake_txt_delete};
static const struct provider_ops fake_ops = {.type = "fakedns", .dns = &fake_dns};

static struct fixture *fx_new(void)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->dir = test_mkdtemp();
	f->rec.name = "web";
	f->issuers[0].name = "corpdns";
	f->issuers[0].ops = &fake_ops;
	f->cfg.issuers = f->issuers;
	f->cfg.n_issuers = 1;
	f->ctx.cfg = &f->cfg;
	f->ctx.rec = &f->rec;
	f->ctx.now = 1700000000;
	f->ctx.log.cert = "web";
	created[0] = deleted[0] = '\0';
	return f;
}

static void fx_free(struct fixture *f)
{
	test_rmdir(f->dir);
	free(f);
}

static void test_http01_webroot_file_placed_and_removed(void **state)
{
	struct fixture *f = fx_new();
	char *root = xasprintf("%s/sites/{host}/public", f->dir), *want, *ref = NULL, *tmp, *other;
	struct acme_solver s = {.kind = ACME_HTTP01_WEBROOT, .webroot = root};
	struct state_token t;
	struct buf b = BUF_INIT;
	struct stat sb;

	(void)state;
	assert_int_equal(acme_solve_intent(&f->ctx, &s, "www.example.com", TOKEN, KA, &t), 0);
	want = xasprintf("%s/sites/www.example.com/public/.well-known/acme-challenge/" TOKEN, f->dir);
	assert_string_equal(t.method, "http-01");
	assert_string_equal(t.name, "www.example.com");
	assert_string_equal(t.location, want);
	assert_string_equal(t.ref, TOKEN);
	assert_null(t.issuer);
	assert_int_equal(t.placed_at, 0);
	assert_int_equal(acme_solve_place(&f->ctx, &s, &t, KA, &ref), 0);
	assert_string_equal(ref, TOKEN);
	assert_int_equal(fsutil_read_file(want, 4096, &b), 0);
	assert_int_equal(b.len, strlen(KA));
	assert_memory_equal(b.data, KA, b.len);
	assert_int_equal(stat(want, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0644);
	/* a run killed inside the atomic write left its temporary file: removed with the answer */
	tmp = xasprintf("%s.tmp.999999.3", want);
	other = xasprintf("%s/sites/www.example.com/public/.well-known/acme-challenge/other.tmp.999999.3", f->dir);
	assert_int_equal(fsutil_write_atomic(tmp, "x", 1, 0644), 0);
	assert_int_equal(fsutil_write_atomic(other, "x", 1, 0644), 0);
	assert_int_equal(acme_solve_remove(&f->ctx, &t), 0);
	assert_int_not_equal(stat(want, &sb), 0);
	assert_int_not_equal(stat(tmp, &sb), 0);
	assert_int_equal(stat(other, &sb), 0);		     /* not ours */
	assert_int_equal(acme_solve_remove(&f->ctx, &t), 0); /* already gone is success */
	buf_free(&b);
	free(ref);
	free(want);
	free(tmp);
	free(other);
	token_clear(&t);
	free(root);
	fx_free(f);
}

/* The token comes from the CA: anything but base64url (a path!) is refused before a file is named after it. */
static void test_http01_token_must_be_base64url(void **state)
{
	struct fixture *f = fx_new();
	struct acme_solver s = {.kind = ACME_HTTP01_WEBROOT, .webroot = f->dir};
	struct state_token t;

	(void)state;
	assert_int_equal(acme_solve_intent(&f->ctx, &s, "www.example.com", "../../etc/passwd-xxxxxxxx", KA, &t),
			 CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "not base64url"));
	assert_int_equal(acme_solve_intent(&f->ctx, &s, "www.example.com", "short", KA, &t), CS_ETRANSIENT);
	fx_free(f);
}

static void test_dns01_txt_through_the_driver(void **state)
{
	static char *closed[] = {"127.0.0.1:9"}; /* nothing answers: the plain name is used */
	struct fixture *f = fx_new();
	struct acme_solver s = {.kind = ACME_DNS01, .dns_provider = "corpdns", .resolvers = closed, .n_resolvers = 1};
	char value[44], *ref = NULL, *want;
	struct state_token t;

	(void)state;
	jose_dns01_value(KA, value);
	assert_int_equal(acme_solve_intent(&f->ctx, &s, "*.example.com", TOKEN, KA, &t), 0);
	assert_string_equal(t.method, "dns-01");
	assert_string_equal(t.name, "*.example.com");
	assert_string_equal(t.location, "_acme-challenge.example.com"); /* a wildcard is proven at its base */
	assert_string_equal(t.issuer, "corpdns");
	assert_string_equal(t.ref, value);
	/* journaled before placing: removable by its value alone */
	assert_int_equal(acme_solve_remove(&f->ctx, &t), 0);
	want = xasprintf("corpdns _acme-challenge.example.com %s (none)", value);
	assert_string_equal(deleted, want);
	free(want);
	assert_int_equal(acme_solve_place(&f->ctx, &s, &t, KA, &ref), 0);
	want = xasprintf("corpdns _acme-challenge.example.com %s", value);
	assert_string_equal(created, want);
	free(want);
	want = xasprintf("%s rec-42", value);
	assert_string_equal(ref, want);
	free(want);
	state_str_set(&t.ref, ref);
	assert_int_equal(acme_solve_remove(&f->ctx, &t), 0);
	want = xasprintf("corpdns _acme-challenge.example.com %s rec-42", value);
	assert_string_equal(deleted, want);
	free(want);
	/* propagation.timeout 0: no wait, no query */
	assert_int_equal(acme_solve_wait_dns(&f->ctx, &s, t.location, value), 0);
	free(ref);
	token_clear(&t);
	fx_free(f);
}

static void test_dns01_unknown_driver_is_an_error(void **state)
{
	struct fixture *f = fx_new();
	struct acme_solver s = {.kind = ACME_DNS01, .dns_provider = "nobody"};
	struct state_token t;

	(void)state;
	assert_int_equal(acme_solve_intent(&f->ctx, &s, "example.com", TOKEN, KA, &t), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "DNS issuer \"nobody\" is not configured"));
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http01_webroot_file_placed_and_removed),
		cmocka_unit_test(test_http01_token_must_be_base64url),
		cmocka_unit_test(test_dns01_txt_through_the_driver),
		cmocka_unit_test(test_dns01_unknown_driver_is_an_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
