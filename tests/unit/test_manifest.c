/* Manifests: the bad corpus with exact diagnostics, normalisation, hashing, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "../../manifests/manifest.h"
#include "../../util/buf.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

static int known_issuer(void *arg, const char *issuer)
{
	(void)arg;
	return !strcmp(issuer, "internal") || !strcmp(issuer, "ca");
}

static const struct manifest_ctx ctx = {known_issuer, NULL, NULL};

/* Parses text as file `name`, runs the set check, returns the diagnostics one per line. */
static char *diagnose(const char *name, const char *text, size_t len, size_t *n_specs)
{
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;
	unsigned char *bad;
	struct buf b = BUF_INIT;

	manifest_parse_file(name, text, len, &v, &n, &d);
	bad = xcalloc(n + 1, 1);
	manifest_check_set(v, n, &ctx, bad, &d);
	diags_sort(&d);
	for (size_t i = 0; i < d.n; i++) {
		char *s = diag_format(&d.v[i]);

		buf_printf(&b, "%s\n", s);
		free(s);
	}
	if (n_specs) {
		*n_specs = 0;
		for (size_t i = 0; i < n; i++)
			*n_specs += !bad[i];
	}
	for (size_t i = 0; i < n; i++)
		cert_spec_free(v[i]);
	free(v);
	free(bad);
	diags_free(&d);
	if (!b.data)
		buf_puts(&b, "");
	return buf_detach(&b);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_manifest_bad_corpus(void **state)
{
	char *dir = fsutil_join(test_srcdir(), "tests/manifests/bad");
	DIR *dp = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;

	(void)state;
	assert_non_null(dp);
	while ((e = readdir(dp))) {
		if (util_has_suffix(e->d_name, ".yaml")) {
			util_grow(&names, &cap, n + 1, sizeof(*names));
			names[n++] = xstrdup(e->d_name);
		}
	}
	closedir(dp);
	qsort(names, n, sizeof(*names), name_cmp);
	assert_true(n >= 35);
	for (size_t i = 0; i < n; i++) {
		char *path = fsutil_join(dir, names[i]);
		char *golden = xasprintf("tests/manifests/bad/%.*s.expect", (int)(strlen(names[i]) - 5), names[i]);
		struct buf text = BUF_INIT;
		char *out;

		assert_int_equal(fsutil_read_file(path, 0, &text), 0);
		out = diagnose(names[i], text.data, text.len, NULL);
		if (!*out)
			fail_msg("%s: no diagnostic at all", names[i]);
		test_golden(golden, out, strlen(out));
		free(out);
		buf_free(&text);
		free(golden);
		free(path);
		free(names[i]);
	}
	free(names);
	free(dir);
}

static void test_manifest_good_files_parse(void **state)
{
	char *path = fsutil_join(test_srcdir(), "tests/manifests/good/web.yaml");
	struct buf text = BUF_INIT;
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(fsutil_read_file(path, 0, &text), 0);
	manifest_parse_file("web.yaml", text.data, text.len, &v, &n, &d);
	diags_print(&d, stderr);
	assert_int_equal(d.n, 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0]->name, "shop-www");
	assert_string_equal(v[0]->common_name, "www.example.com");
	assert_int_equal(v[0]->n_dns, 2);
	assert_string_equal(v[0]->dns_names[0], "example.com");
	assert_string_equal(v[0]->dns_names[1], "www.example.com");
	assert_int_equal(v[0]->key_alg, KEYALG_RSA);
	assert_int_equal(v[0]->key_size, 3072);
	assert_int_equal(v[0]->rotation, ROTATE_NEVER);
	assert_int_equal(v[0]->duration, 2160 * 3600);
	assert_int_equal(v[0]->renew_before, 30 * 86400);
	assert_true(v[0]->auto_renew);
	assert_string_equal(v[0]->output_dir, "web/www");
	assert_int_equal(v[0]->n_labels, 2);
	assert_string_equal(v[0]->labels[0].key, "example.com/tier");
	assert_int_equal(v[0]->line, 5);
	assert_int_equal(v[0]->col, 9);
	assert_string_equal(v[1]->common_name, "*.svc.example.com");
	assert_string_equal(v[1]->output_dir, "wildcard");
	assert_int_equal(v[1]->key_alg, KEYALG_ECDSA);
	assert_int_equal(v[1]->key_size, 256);
	for (size_t i = 0; i < n; i++)
		cert_spec_free(v[i]);
	free(v);
	diags_free(&d);
	buf_free(&text);
	free(path);
}

static struct cert_spec *one(const char *spec_lines)
{
	char *yaml = xasprintf("apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: x}\nspec:\n  issuer: ca\n%s",
			       spec_lines);
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

static void test_manifest_hash_ignores_cosmetic_edits(void **state)
{
	struct cert_spec *a = one("  dnsNames: [b.example.com, a.example.com]\n  renewBefore: 720h\n");
	struct cert_spec *b = one("  dnsNames: [A.EXAMPLE.com., b.example.com, a.example.com]\n  renewBefore: 30d\n"
				  "  privateKey: {algorithm: ecdsa}\n  output: {directory: elsewhere}\n");
	struct cert_spec *c = one("  dnsNames: [a.example.com, b.example.com, c.example.com]\n");
	struct cert_spec *k = one("  dnsNames: [a.example.com, b.example.com]\n  privateKey: {algorithm: RSA}\n");
	struct cert_spec *cn = one("  commonName: b.example.com\n  dnsNames: [a.example.com]\n");

	(void)state;
	assert_string_equal(a->hash, b->hash);
	assert_string_not_equal(a->hash, c->hash);
	assert_string_not_equal(a->hash, k->hash);
	assert_string_not_equal(a->hash, cn->hash); /* an explicit commonName counts */
	assert_int_equal(strlen(a->hash), 64);
	cert_spec_free(a);
	cert_spec_free(b);
	cert_spec_free(c);
	cert_spec_free(k);
	cert_spec_free(cn);
}

static void test_manifest_rejects_oversize_file(void **state)
{
	size_t len = MANIFEST_MAX_FILE_BYTES + 1;
	char *big = xmalloc(len);
	char *out;

	(void)state;
	memset(big, '#', len);
	out = diagnose("big.yaml", big, len, NULL);
	assert_string_equal(out, "big.yaml: file is 1048577 bytes; the limit is 1048576\n");
	free(out);
	free(big);
}

static void test_manifest_rejects_too_many_documents(void **state)
{
	struct buf b = BUF_INIT;
	char *out;

	(void)state;
	for (int i = 0; i <= MANIFEST_MAX_DOCS; i++)
		buf_puts(&b, "---\n");
	out = diagnose("many.yaml", b.data, b.len, NULL);
	assert_string_equal(out, "many.yaml:1001:1: more than 1000 documents in one file\n");
	free(out);
	buf_free(&b);
}

static void test_manifest_one_bad_document_keeps_the_others(void **state)
{
	const char *text = "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: good}\nspec: {issuer: ca, dnsNames: [a.example.com]}\n"
			   "---\napiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: bad}\nspec: {issuer: ca}\n";
	size_t n = 0;
	char *out = diagnose("two.yaml", text, strlen(text), &n);

	(void)state;
	assert_int_equal(n, 1);
	assert_string_equal(out, "two.yaml:9:7: spec: give commonName or dnsNames (at least one name)\n");
	free(out);
}

static void test_manifest_name_and_path_checks(void **state)
{
	(void)state;
	assert_null(manifest_check_dns_name("www.example.com", 0));
	assert_null(manifest_check_dns_name("*.example.com", 1));
	assert_non_null(manifest_check_dns_name("*.example.com", 0));
	assert_non_null(manifest_check_dns_name("a..b", 0));
	assert_non_null(manifest_check_dns_name("", 0));
	assert_null(manifest_check_relpath("team/www"));
	assert_non_null(manifest_check_relpath("/abs"));
	assert_non_null(manifest_check_relpath("a/../b"));
	assert_non_null(manifest_check_relpath(".hidden"));
	assert_non_null(manifest_check_relpath("sp ace"));
}

static void test_manifest_scales(void **state)
{
	struct buf b = BUF_INIT;
	size_t n = 0;
	char *out;

	(void)state;
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "---\napiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: c%d}\n"
			       "spec: {issuer: ca, dnsNames: [h%d.example.com]}\n", i, i);
	out = diagnose("many.yaml", b.data, b.len, &n);
	assert_string_equal(out, "");
	assert_int_equal(n, 1000);
	free(out);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_bad_corpus),
		cmocka_unit_test(test_manifest_good_files_parse),
		cmocka_unit_test(test_manifest_hash_ignores_cosmetic_edits),
		cmocka_unit_test(test_manifest_rejects_oversize_file),
		cmocka_unit_test(test_manifest_rejects_too_many_documents),
		cmocka_unit_test(test_manifest_one_bad_document_keeps_the_others),
		cmocka_unit_test(test_manifest_name_and_path_checks),
		cmocka_unit_test(test_manifest_scales),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
