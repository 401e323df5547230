/*
 * Manifests: the YAML readers (libyaml and the fast subset, compared node by
 * node), typed reads, the Certificate schema, normalisation and the spec
 * hash, the checks across a set, and the bad/good corpora with exact
 * diagnostics (tests/manifests/, see its README).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../manifests/internal.h"
#include "../../manifests/manifest.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

/* ---------- helpers ---------- */

static const char *const fake_issuers[] = {"ca", "internal"};
static int issuer_checks; /* calls of fake_issuer_check */

static int fake_issuer_exists(void *arg, const char *issuer)
{
	(void)arg;
	return !strcmp(issuer, "ca") || !strcmp(issuer, "internal");
}

static const char *fake_issuer_at(void *arg, size_t i)
{
	(void)arg;
	return i < 2 ? fake_issuers[i] : NULL;
}

/* The "ca" issuer refuses names under .forbidden.test, as a provider's own domain check would. */
static void fake_issuer_check(void *arg, const struct cert_spec *s, struct diags *d)
{
	(void)arg;
	issuer_checks++;
	for (size_t i = 0; i < s->n_dns; i++)
		if (!strcmp(s->issuer, "ca") && util_has_suffix(s->dns_names[i], ".forbidden.test"))
			diags_add(d, s->file, s->issuer_line, s->issuer_col, "issuer ca: %s is not allowed",
				  s->dns_names[i]);
}

static const struct manifest_ctx fake_ctx = {
	.issuer_exists = fake_issuer_exists,
	.issuer_check = fake_issuer_check,
	.arg = NULL,
	.issuer_at = fake_issuer_at,
};

static char *diags_text(struct diags *d)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "");
	diags_sort(d);
	for (size_t i = 0; i < d->n; i++) {
		char *s = diag_format(&d->v[i]);

		buf_printf(&b, "%s\n", s);
		free(s);
	}
	return buf_detach(&b);
}

/* Parses text as file `name`, runs the set check; the diagnostics one per line, and how many specs passed. */
static char *diagnose(const char *name, const char *text, size_t len, size_t *n_good)
{
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	unsigned char *bad;
	size_t n = 0;
	char *out;

	manifest_parse_file(name, text, len, &v, &n, &d);
	bad = xcalloc(n + 1, 1);
	manifest_check_set(v, n, &fake_ctx, bad, &d);
	out = diags_text(&d);
	if (n_good) {
		*n_good = 0;
		for (size_t i = 0; i < n; i++)
			*n_good += !bad[i];
	}
	for (size_t i = 0; i < n; i++)
		cert_spec_free(v[i]);
	free(v);
	free(bad);
	diags_free(&d);
	return out;
}

static char *diagnose_str(const char *name, const char *text)
{
	return diagnose(name, text, strlen(text), NULL);
}

#define HEAD "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: x}\nspec:\n  issuer: ca\n"

/* One valid document made of HEAD and spec_lines; fails the test on any diagnostic. */
static struct cert_spec *one(const char *spec_lines)
{
	char *yaml = xasprintf(HEAD "%s", spec_lines);
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL, *s;
	size_t n = 0;

	manifest_parse_file("x.yaml", yaml, strlen(yaml), &v, &n, &d);
	if (d.n) {
		diags_print(&d, stderr);
		fail_msg("unexpected diagnostics for:\n%s", yaml);
	}
	assert_int_equal(n, 1);
	s = v[0];
	free(v);
	free(yaml);
	diags_free(&d);
	return s;
}

/* The diagnostics of HEAD + spec_lines (no set check). */
static char *problems(const char *spec_lines)
{
	char *yaml = xasprintf(HEAD "%s", spec_lines);
	char *out = diagnose("x.yaml", yaml, strlen(yaml), NULL);

	free(yaml);
	return out;
}

static void assert_problem(const char *spec_lines, const char *want)
{
	char *got = problems(spec_lines);

	if (!strstr(got, want))
		fail_msg("for:\n%s\nwanted a diagnostic containing: %s\ngot:\n%s", spec_lines, want, got);
	free(got);
}

/* A tree as text: type, position, quoting, value; both readers must give the same. */
static void tree_dump(struct buf *b, const struct ynode *n, int depth)
{
	if (!n) {
		buf_printf(b, "%*s(none)\n", depth * 2, "");
		return;
	}
	buf_printf(b, "%*s%d %d:%d q%d [%.*s]\n", depth * 2, "", (int)n->type, n->line, n->col, n->quoted,
		   n->type == YNODE_SCALAR ? (int)n->len : 0, n->type == YNODE_SCALAR ? n->str : "");
	for (size_t i = 0; n->type == YNODE_MAP && i < 2 * n->n; i++)
		tree_dump(b, n->kv[i], depth + 1);
	for (size_t i = 0; n->type == YNODE_SEQ && i < n->n; i++)
		tree_dump(b, n->items[i], depth + 1);
}

static char *file_dump(const struct yfile *f)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "");
	for (size_t i = 0; i < f->n_docs; i++) {
		buf_printf(&b, "document %d:%d\n", f->docs[i].line, f->docs[i].col);
		tree_dump(&b, f->docs[i].root, 1);
	}
	return buf_detach(&b);
}

/*
 * Runs both readers on text. Returns 1 when the fast one took it (and then
 * asserts libyaml agrees node for node, with no diagnostic), 0 when it left
 * the text to libyaml.
 */
static int readers_agree(const char *text, size_t len)
{
	struct yfile *fast = NULL, *lib = NULL;
	struct diags d = DIAGS_INIT;
	int took;

	if (manifest_text_check("t.yaml", text, len, &d)) {
		diags_free(&d);
		return 0;
	}
	took = manifest_yfast_parse("t.yaml", text, len, &fast);
	if (took) {
		char *a = file_dump(fast), *b;

		manifest_ylib_parse("t.yaml", text, len, &lib, &d);
		b = file_dump(lib);
		if (d.n || strcmp(a, b))
			fail_msg("the fast reader differs from libyaml on:\n%.*s\n--- fast\n%s--- libyaml (%zu "
				 "diagnostics)\n%s",
				 (int)len, text, a, d.n, b);
		free(a);
		free(b);
		manifest_yaml_free(lib);
	}
	manifest_yaml_free(fast);
	diags_free(&d);
	return took;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a corpus directory with a suffix, sorted. */
static char **corpus_list(const char *dir, const char *suffix, size_t *n)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t cap = 0;

	*n = 0;
	if (!dp)
		fail_msg("cannot open %s (run from the repository root or set CERTSYNC_SRCDIR)", dir);
	while ((e = readdir(dp))) {
		if (util_has_suffix(e->d_name, suffix)) {
			util_grow(&names, &cap, *n + 1, sizeof(*names));
			names[(*n)++] = xstrdup(e->d_name);
		}
	}
	closedir(dp);
	qsort(names, *n, sizeof(*names), name_cmp);
	return names;
}

static void corpus_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void read_corpus_file(const char *dir, const char *name, struct buf *out)
{
	char *path = fsutil_join(dir, name);

	buf_init(out, 0);
	if (fsutil_read_file(path, 0, out))
		fail_msg("cannot read %s", path);
	free(path);
}

/* ---------- the corpora ---------- */

/* Every bad manifest gives exactly the diagnostics in its .expect file, with either reader. */
static void test_manifest_bad_corpus_matches_expected_diagnostics(void **state)
{
	char *dir = fsutil_join(test_srcdir(), "tests/manifests/bad");
	size_t n, n_expect;
	char **names = corpus_list(dir, ".yaml", &n), **expects;

	(void)state;
	assert_true(n >= 35);
	for (size_t i = 0; i < n; i++) {
		char *stem = xstrndup(names[i], strlen(names[i]) - 5);
		char *golden = xasprintf("tests/manifests/bad/%s.expect", stem);
		char *fast, *slow;
		struct buf text;

		read_corpus_file(dir, names[i], &text);
		fast = diagnose(names[i], text.data, text.len, NULL);
		if (!*fast)
			fail_msg("%s: no diagnostic at all", names[i]);
		test_golden(golden, fast, strlen(fast));
		manifest_yaml_set_fast(0);
		slow = diagnose(names[i], text.data, text.len, NULL);
		manifest_yaml_set_fast(1);
		assert_string_equal(fast, slow);
		free(fast);
		free(slow);
		free(golden);
		free(stem);
		buf_free(&text);
	}
	/* every .expect belongs to a .yaml: a renamed case cannot leave a stale one behind */
	expects = corpus_list(dir, ".expect", &n_expect);
	assert_int_equal(n, n_expect);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(strncmp(expects[i], names[i], strlen(names[i]) - 5), 0);
	corpus_free(names, n);
	corpus_free(expects, n_expect);
	free(dir);
}

/* Every good manifest parses without a diagnostic, and both readers give the same tree. */
static void test_manifest_good_corpus_parses_cleanly(void **state)
{
	char *dir = fsutil_join(test_srcdir(), "tests/manifests/good");
	size_t n;
	char **names = corpus_list(dir, ".yaml", &n);

	(void)state;
	assert_true(n >= 4);
	for (size_t i = 0; i < n; i++) {
		struct buf text;
		size_t good = 0;
		char *out;

		read_corpus_file(dir, names[i], &text);
		out = diagnose(names[i], text.data, text.len, &good);
		if (*out)
			fail_msg("%s:\n%s", names[i], out);
		assert_true(good > 0);
		readers_agree(text.data, text.len);
		free(out);
		buf_free(&text);
	}
	corpus_free(names, n);
	free(dir);
}

static void test_manifest_good_file_fields(void **state)
{
	char *dir = fsutil_join(test_srcdir(), "tests/manifests/good");
	struct buf text;
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;

	(void)state;
	read_corpus_file(dir, "web.yaml", &text);
	assert_int_equal(manifest_parse_file("web.yaml", text.data, text.len, &v, &n, &d), 0);
	assert_int_equal(d.n, 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0]->name, "shop-www");
	assert_string_equal(v[0]->file, "web.yaml");
	assert_int_equal(v[0]->line, 5);
	assert_int_equal(v[0]->col, 9);
	assert_string_equal(v[0]->issuer, "internal");
	assert_int_equal(v[0]->issuer_line, 9);
	assert_int_equal(v[0]->issuer_col, 11);
	assert_string_equal(v[0]->common_name, "www.example.com");
	assert_true(v[0]->common_name_set);
	assert_int_equal(v[0]->n_dns, 2);
	assert_string_equal(v[0]->dns_names[0], "example.com");
	assert_string_equal(v[0]->dns_names[1], "www.example.com");
	assert_string_equal(v[0]->domain, "example.com");
	assert_int_equal(v[0]->key_alg, KEYALG_RSA);
	assert_int_equal(v[0]->key_size, 3072);
	assert_int_equal(v[0]->rotation, ROTATE_NEVER);
	assert_int_equal(v[0]->duration, 2160 * 3600);
	assert_int_equal(v[0]->renew_before, 30 * 86400);
	assert_true(v[0]->auto_renew);
	assert_true(v[0]->auto_renew_set);
	assert_string_equal(v[0]->output_dir, "web/www");
	assert_int_equal(v[0]->output_line, 17);
	assert_int_equal(v[0]->n_labels, 2);
	assert_string_equal(v[0]->labels[0].key, "example.com/tier");
	assert_string_equal(v[0]->labels[1].key, "team");
	assert_string_equal(v[0]->labels[1].value, "web");
	assert_string_equal(v[1]->common_name, "*.svc.example.com");
	assert_false(v[1]->common_name_set);
	assert_string_equal(v[1]->output_dir, "wildcard");
	for (size_t i = 0; i < n; i++)
		cert_spec_free(v[i]);
	free(v);
	diags_free(&d);
	buf_free(&text);
	free(dir);
}

/* ---------- YAML ---------- */

static void test_yaml_positions_are_one_based_lines_and_columns(void **state)
{
	const char *text = "# comment\na:\n  b: [x, \"y\"]\n  c:\n  - 'z'\n";
	struct yfile *f = NULL;
	struct diags d = DIAGS_INIT;
	const struct ynode *root, *b, *c;

	(void)state;
	assert_int_equal(manifest_yaml_parse("p.yaml", text, strlen(text), &f, &d), 0);
	assert_int_equal(f->n_docs, 1);
	root = f->docs[0].root;
	assert_int_equal(root->line, 2);
	assert_int_equal(root->col, 1);
	b = ynode_get(ynode_get(root, "a"), "b");
	assert_int_equal(b->type, YNODE_SEQ);
	assert_int_equal(b->line, 3);
	assert_int_equal(b->col, 6);
	assert_int_equal(b->items[1]->col, 10);
	assert_true(b->items[1]->quoted);
	assert_false(b->items[0]->quoted);
	c = ynode_get(ynode_get(root, "a"), "c");
	assert_int_equal(c->type, YNODE_SEQ);
	assert_int_equal(c->line, 5);
	assert_int_equal(c->col, 3);
	assert_string_equal(c->items[0]->str, "z");
	assert_int_equal(c->items[0]->col, 5);
	manifest_yaml_free(f);
	diags_free(&d);
}

static void test_yaml_columns_count_characters_not_bytes(void **state)
{
	/* "é" is two bytes, the BOM three: neither moves a column more than libyaml does */
	const char *text = "\xef\xbb\xbf"
			   "k: {a: \"\xc3\xa9\xc3\xa9\", b: [1]}\n";
	struct yfile *f = NULL;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(manifest_yaml_parse("u.yaml", text, strlen(text), &f, &d), 0);
	assert_int_equal(ynode_get(ynode_get(f->docs[0].root, "k"), "b")->col, 17);
	manifest_yaml_free(f);
	diags_free(&d);
}

static void test_yaml_rejects_anchor(void **state)
{
	char *out = diagnose_str("a.yaml", "a: &x 1\n");

	(void)state;
	assert_string_equal(out, "a.yaml:1:4: YAML anchors and aliases are not allowed\n");
	free(out);
}

static void test_manifest_rejects_alias(void **state)
{
	char *out = diagnose_str("a.yaml", "a: 1\nb: *x\n");

	(void)state;
	/* an alias to nothing is libyaml's own error; an alias to an anchor is ours (corpus 26) */
	assert_non_null(strstr(out, "a.yaml:2:4: "));
	free(out);
	out = diagnose_str("a.yaml", "a: [&x 1, *x]\n");
	assert_string_equal(out, "a.yaml:1:5: YAML anchors and aliases are not allowed\n"
				 "a.yaml:1:11: YAML anchors and aliases are not allowed\n");
	free(out);
}

static void test_yaml_rejects_tags_other_than_core(void **state)
{
	struct yfile *f = NULL;
	struct diags d = DIAGS_INIT;
	const char *ok = "a: !!str 123\nb: !!int \"7\"\nc: ! 5\n";
	char *out;

	(void)state;
	assert_int_equal(manifest_yaml_parse("t.yaml", ok, strlen(ok), &f, &d), 0);
	assert_true(ynode_get(f->docs[0].root, "a")->quoted); /* !!str makes a string */
	assert_false(ynode_get(f->docs[0].root, "b")->quoted);
	assert_true(ynode_get(f->docs[0].root, "c")->quoted);
	manifest_yaml_free(f);
	diags_free(&d);
	out = diagnose_str("t.yaml", "a: !foo x\nb: !!python/object y\n");
	assert_string_equal(out, "t.yaml:1:4: YAML tag \"!foo\" is not allowed (only !!str, !!int, !!bool, !!float, "
				 "!!null, !!map, !!seq)\n"
				 "t.yaml:2:4: YAML tag \"!!python/object\" is not allowed (only !!str, !!int, !!bool, "
				 "!!float, !!null, !!map, !!seq)\n");
	free(out);
}

static void test_yaml_rejects_invalid_utf8_at_the_bad_byte(void **state)
{
	char *out;

	(void)state;
	out = diagnose_str("u.yaml", "a: b\nc: d\xc3\xa9\xff\n");
	assert_string_equal(out, "u.yaml:2:6: invalid UTF-8 (byte 0xff)\n");
	free(out);
	out = diagnose_str("u.yaml", "a: \xed\xa0\x80\n"); /* a UTF-16 surrogate */
	assert_string_equal(out, "u.yaml:1:4: invalid UTF-8 (byte 0xed)\n");
	free(out);
	out = diagnose_str("u.yaml", "a: \xc0\xaf\n"); /* overlong '/' */
	assert_string_equal(out, "u.yaml:1:4: invalid UTF-8 (byte 0xc0)\n");
	free(out);
	out = diagnose_str("u.yaml", "a: \xe2\x82\n"); /* truncated */
	assert_string_equal(out, "u.yaml:1:4: invalid UTF-8 (byte 0xe2)\n");
	free(out);
}

static void test_yaml_rejects_control_characters_and_nul(void **state)
{
	char *out;

	(void)state;
	out = diagnose("c.yaml", "a: b\nc: \0\n", 9, NULL);
	assert_string_equal(out, "c.yaml:2:4: control character U+0000 is not allowed\n");
	free(out);
	out = diagnose_str("c.yaml", "a: \x1b[31m\n");
	assert_string_equal(out, "c.yaml:1:4: control character U+001B is not allowed\n");
	free(out);
	out = diagnose_str("c.yaml", "a: x\xef\xbb\xbfy\n");
	assert_string_equal(out, "c.yaml:1:5: a byte order mark (U+FEFF) is only allowed at the start of the file\n");
	free(out);
}

/* Generated rather than committed: a 1 MiB fixture would bloat the repository. */
static void test_yaml_rejects_oversize_file(void **state)
{
	size_t len = MANIFEST_MAX_FILE_BYTES + 1;
	char *big = xmalloc(len), *out;

	(void)state;
	memset(big, '#', len);
	out = diagnose("big.yaml", big, len, NULL);
	assert_string_equal(out, "big.yaml: file is 1048577 bytes; the limit is 1048576\n");
	free(out);
	/* exactly at the limit is fine */
	out = diagnose("big.yaml", big, len - 1, NULL);
	assert_string_equal(out, "");
	free(out);
	free(big);
}

/* Generated rather than committed (1,001 documents). */
static void test_yaml_rejects_too_many_documents(void **state)
{
	struct buf b = BUF_INIT;
	char *out;

	(void)state;
	for (int i = 0; i < MANIFEST_MAX_DOCS; i++)
		buf_puts(&b, "---\n");
	out = diagnose("many.yaml", b.data, b.len, NULL);
	assert_string_equal(out, "");
	free(out);
	buf_puts(&b, "---\n");
	out = diagnose("many.yaml", b.data, b.len, NULL);
	assert_string_equal(out, "many.yaml:1001:1: more than 1000 documents in one file\n");
	free(out);
	buf_free(&b);
}

static void test_yaml_limits_nesting_depth(void **state)
{
	struct buf ok = BUF_INIT, deep = BUF_INIT;
	char *out;

	(void)state;
	/* the root map is level 1: 63 lists inside it make 64 levels */
	buf_puts(&ok, "a: ");
	for (int i = 0; i < MANIFEST_MAX_DEPTH - 1; i++)
		buf_puts(&ok, "[");
	for (int i = 0; i < MANIFEST_MAX_DEPTH - 1; i++)
		buf_puts(&ok, "]");
	buf_puts(&ok, "\n");
	out = diagnose("d.yaml", ok.data, ok.len, NULL);
	assert_null(strstr(out, "nesting"));
	free(out);
	buf_puts(&deep, "a: ");
	for (int i = 0; i < 5000; i++)
		buf_puts(&deep, "[");
	for (int i = 0; i < 5000; i++)
		buf_puts(&deep, "]");
	buf_puts(&deep, "\n");
	out = diagnose("d.yaml", deep.data, deep.len, NULL);
	assert_string_equal(out, "d.yaml:1:67: nesting deeper than 64 levels\n");
	free(out);
	buf_free(&ok);
	buf_free(&deep);
}

/* 1 MiB of '[' (inside the size limit) used to take minutes in libyaml's scanner: the stream now stops at level 65. */
static void test_yaml_deep_flow_is_refused_at_the_limit(void **state)
{
	static const char *const opens[] = {"[", "{", "[a, ", "{a: ", "[\n", "- "};
	size_t size = MANIFEST_MAX_FILE_BYTES;
	char *text = malloc(size);

	(void)state;
	for (size_t k = 0; k < sizeof(opens) / sizeof(opens[0]); k++) {
		size_t step = strlen(opens[k]), len = 0;
		char *out, want[64];

		while (len + step <= size) {
			memcpy(text + len, opens[k], step);
			len += step;
		}
		out = diagnose("deep.yaml", text, len, NULL);
		if (opens[k][1] == '\n')
			snprintf(want, sizeof(want), "deep.yaml:%d:1: nesting deeper than 64 levels\n",
				 MANIFEST_MAX_DEPTH + 1);
		else
			snprintf(want, sizeof(want), "deep.yaml:1:%d: nesting deeper than 64 levels\n",
				 (int)(MANIFEST_MAX_DEPTH * step + 1));
		assert_string_equal(out, want);
		free(out);
	}
	free(text);
}

/* A map, a list or a null as a map key is refused where it is, by both readers (no crash downstream). */
static void test_yaml_refuses_non_string_keys(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{"a:\n  ? [x]\n  : 1\n", "k.yaml:2:5: a map key must be a string, got a list\n"},
		{"a:\n  ? {x: y}\n", "k.yaml:2:5: a map key must be a string, got a map\n"},
		{"a: {[x]: 1}\n", "k.yaml:1:5: a map key must be a string, got a list\n"},
		{"a:\n  ~: 1\n",
		 "k.yaml:2:3: a map key must be a string, got null (quote it if \"null\" or \"~\" is meant)\n"},
		{"a:\n  null: 1\n",
		 "k.yaml:2:3: a map key must be a string, got null (quote it if \"null\" or \"~\" is meant)\n"},
		{"a:\n  ? ?\n",
		 "k.yaml:2:5: a map key must be a string, got a map\n"
		 "k.yaml:2:6: a map key must be a string, got null (quote it if \"null\" or \"~\" is meant)\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = diagnose("k.yaml", cases[i].text, strlen(cases[i].text), NULL);

		assert_string_equal(out, cases[i].want);
		free(out);
	}
	/* quoted, they are strings */
	{
		const char *ok = "a:\n  \"null\": 1\n  \"~\": 2\n";
		struct diags d = DIAGS_INIT;
		struct yfile *f = NULL;

		assert_int_equal(manifest_yaml_parse("k.yaml", ok, strlen(ok), &f, &d), 0);
		manifest_yaml_free(f);
		diags_free(&d);
	}
}

/* issue 15: a git file name with a newline or an ANSI escape must not forge a line or repaint the terminal. */
static void test_diag_format_escapes_control_characters(void **state)
{
	struct diags d = DIAGS_INIT;
	char *s;

	(void)state;
	diags_add(&d, "certs/x\nerror: fake\x1b[31m.yaml", 3, 4, "duplicate name (first in a\tb\x7f\xc2\x9b.yaml)");
	diags_add(&d, "bad\xff\xfe.yaml", 0, 0, "caf\xc3\xa9 \\n stays");
	s = diag_format(&d.v[0]);
	assert_string_equal(
		s, "certs/x\\nerror: fake\\x1b[31m.yaml:3:4: duplicate name (first in a\\tb\\x7f\\u009b.yaml)");
	free(s);
	s = diag_format(&d.v[1]);
	assert_string_equal(s, "bad\\xff\\xfe.yaml: caf\xc3\xa9 \\n stays");
	free(s);
	s = diag_escape("a\rb");
	assert_string_equal(s, "a\\rb");
	free(s);
	diags_free(&d);
}

static void test_yaml_syntax_error_keeps_earlier_documents(void **state)
{
	const char *text = "a: 1\n---\nb: 2\n---\nc: [3\n";
	struct yfile *f = NULL;
	struct diags d = DIAGS_INIT;
	char *out;

	(void)state;
	assert_int_equal(manifest_yaml_parse("s.yaml", text, strlen(text), &f, &d), CS_EINVALID);
	assert_int_equal(f->n_docs, 2);
	assert_non_null(ynode_get(f->docs[1].root, "b"));
	out = diags_text(&d);
	assert_non_null(strstr(out, "s.yaml:6:1: YAML syntax error: did not find expected ',' or ']' while parsing a "
				    "flow sequence"));
	free(out);
	manifest_yaml_free(f);
	diags_free(&d);
}

static void test_yaml_bad_document_does_not_hide_the_next(void **state)
{
	const char *text = "a: &x 1\n---\nb: !!binary 2\n---\nc: 3\n";
	struct yfile *f = NULL;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(manifest_yaml_parse("s.yaml", text, strlen(text), &f, &d), CS_EINVALID);
	assert_int_equal(d.n, 2); /* both documents' problems, in one run */
	assert_int_equal(f->n_docs, 3);
	assert_null(f->docs[0].root);
	assert_null(f->docs[1].root);
	assert_non_null(ynode_get(f->docs[2].root, "c"));
	manifest_yaml_free(f);
	diags_free(&d);
}

static void test_yaml_empty_documents_have_no_root(void **state)
{
	const char *text = "# nothing\n---\n---\n# still nothing\n";
	struct yfile *f = NULL;
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(manifest_yaml_parse("e.yaml", text, strlen(text), &f, &d), 0);
	assert_int_equal(f->n_docs, 2);
	assert_null(f->docs[0].root);
	assert_null(f->docs[1].root);
	assert_int_equal(f->docs[1].line, 3);
	manifest_yaml_free(f);
	manifest_yaml_parse("e.yaml", "", 0, &f, &d);
	assert_int_equal(f->n_docs, 0);
	assert_int_equal(d.n, 0);
	manifest_yaml_free(f);
	diags_free(&d);
}

static void test_yaml_syntax_errors_carry_hints(void **state)
{
	char *out;

	(void)state;
	out = diagnose_str("h.yaml", "a:\n  b: 1\n\tc: 2\n");
	assert_non_null(strstr(out, "h.yaml:3:1: YAML syntax error: "));
	assert_non_null(strstr(out, "(YAML indentation must use spaces, not tabs)"));
	free(out);
	out = diagnose_str("h.yaml", "names: [*.example.com]\n");
	assert_non_null(strstr(out, "(a value starting with '*' must be quoted: \"*.example.com\")"));
	free(out);
}

static void test_yaml_rejects_nul_escapes_in_strings(void **state)
{
	char *out = diagnose_str("n.yaml", "a: \"x\\0y\"\n");

	(void)state;
	assert_string_equal(out, "n.yaml:1:4: a NUL character (\\0) is not allowed in a string\n");
	free(out);
}

/* Shapes the fast reader must either read exactly as libyaml does, or leave to it. */
static const char *const yaml_shapes[] = {
	"a: 1\n",
	"# c\n\na: b   # c\nc:\n  d: e\n  f: [g, 'h''i', \"j k\"]\n  l: {m: n, o: [p, {q: r}]}\n",
	"list:\n- a\n- b: c\n  d: e\n-   f\nnext: 1\n",
	"list:\n  - x: 1\n    y: [2]\n  - z\n",
	"---\n---  # c\na: 1\n---\n- 1\n- two\n...\n",
	"  indented: root\n  more: 2\n",
	"'quoted key': v\n\"dq\": 'x'\nurl: http://example.com/a?b=c\nsp: a  b\n",
	"a: {}\nb: []\nc: ~\nd: -1\ne: .5\nf: +3\n",
	"a:\n  - [x, y]\n  - {k: v}\n",
	"a: b\n  c\n",
	"a: [x,\n  y]\n",
	"a: 'x\n  y'\n",
	"a:\n",
	"a: |\n  text\n",
	"a: b # c\nd: e#f\n",
	"a: b: c\n",
	"- - x\n",
	"a: [x, y,]\n",
	"a: {x: }\n",
	"%YAML 1.1\n---\na: 1\n",
	"a: x\r\nb: y\r\n",
	"a: \"\\u00e9\"\n",
	"? a\n: b\n",
	"a:\n  b: 1\n c: 2\n",
	"a: 1\nb:\n- x\nc: 3\n",
	"-x: 1\n",
	"key with space: 1\n",
	"a: \"x\"y\n",
	"a: [x] # c\nb: {y: z}   \n",
	"a:    \n  b: 1\n",
};

static void test_yaml_fast_reader_matches_libyaml_on_shapes(void **state)
{
	size_t took = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(yaml_shapes) / sizeof(yaml_shapes[0]); i++)
		took += (size_t)readers_agree(yaml_shapes[i], strlen(yaml_shapes[i]));
	assert_true(took >= 8); /* the common shapes do take the fast path */
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* One to three random edits with YAML's significant characters. */
static size_t mutate(const char *in, size_t len, char *out)
{
	static const char alphabet[] = " \n:-#'\"[]{},.*&!|>?%@`~a0_/\\";
	int edits = 1 + (int)(rng() % 3);

	memcpy(out, in, len);
	for (int e = 0; e < edits; e++) {
		size_t pos = len ? rng() % len : 0;
		char ch = alphabet[rng() % (sizeof(alphabet) - 1)];

		switch (rng() % 3) {
		case 0:
			if (len) {
				memmove(out + pos, out + pos + 1, len - pos - 1);
				len--;
			}
			break;
		case 1:
			memmove(out + pos + 1, out + pos, len - pos);
			out[pos] = ch;
			len++;
			break;
		default:
			if (len)
				out[pos] = ch;
		}
	}
	return len;
}

static void mutate_and_compare(const char *text, size_t len, int rounds, size_t *took, size_t *tried)
{
	char *m = xmalloc(len + 8);

	for (int r = 0; r < rounds; r++) {
		size_t ml = mutate(text, len, m);

		*took += (size_t)readers_agree(m, ml);
		(*tried)++;
	}
	free(m);
}

/*
 * The fast reader's contract, checked on thousands of near-miss inputs (a
 * fixed seed, so a failure is reproducible): whenever it accepts a text,
 * libyaml reads the same tree without a diagnostic.
 */
static void test_yaml_fast_reader_matches_libyaml_on_mutations(void **state)
{
	const char *dirs[] = {"tests/manifests/good", "tests/manifests/bad"};
	size_t took = 0, tried = 0;

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		char *dir = fsutil_join(test_srcdir(), dirs[k]);
		size_t n;
		char **names = corpus_list(dir, ".yaml", &n);

		for (size_t i = 0; i < n; i++) {
			struct buf text;

			read_corpus_file(dir, names[i], &text);
			mutate_and_compare(text.data, text.len, 60, &took, &tried);
			buf_free(&text);
		}
		corpus_free(names, n);
		free(dir);
	}
	for (size_t i = 0; i < sizeof(yaml_shapes) / sizeof(yaml_shapes[0]); i++)
		mutate_and_compare(yaml_shapes[i], strlen(yaml_shapes[i]), 100, &took, &tried);
	print_message("fast reader: %zu of %zu mutated inputs taken, all identical to libyaml\n", took, tried);
	assert_true(took > tried / 10);
}

/* ---------- typed reads ---------- */

static struct yfile *parse_ok(const char *text)
{
	struct yfile *f = NULL;
	struct diags d = DIAGS_INIT;

	assert_int_equal(manifest_yaml_parse("r.yaml", text, strlen(text), &f, &d), 0);
	diags_free(&d);
	return f;
}

static void test_ynode_check_keys_suggests_close_names(void **state)
{
	static const char *const allowed[] = {"issuer", "dnsNames", "renewBefore", NULL};
	struct yfile *f = parse_ok("Issuer: a\ndnsname: b\nrenewBfore: c\ncolour: d\nissuer: e\n");
	struct diags d = DIAGS_INIT;
	char *out;

	(void)state;
	assert_int_equal(ynode_check_keys(f->docs[0].root, allowed, "r.yaml", "spec", &d), 4);
	out = diags_text(&d);
	assert_string_equal(out, "r.yaml:1:1: unknown field \"Issuer\" in spec (did you mean \"issuer\"?)\n"
				 "r.yaml:2:1: unknown field \"dnsname\" in spec (did you mean \"dnsNames\"?)\n"
				 "r.yaml:3:1: unknown field \"renewBfore\" in spec (did you mean \"renewBefore\"?)\n"
				 "r.yaml:4:1: unknown field \"colour\" in spec\n");
	free(out);
	diags_free(&d);
	manifest_yaml_free(f);
}

static void test_ynode_check_keys_reports_duplicates_with_the_first_line(void **state)
{
	static const char *const allowed[] = {"a", "b", NULL};
	struct yfile *f = parse_ok("a: 1\nb: 2\na: 3\na: 4\n");
	struct diags d = DIAGS_INIT;
	struct buf big = BUF_INIT;
	char *out;

	(void)state;
	assert_int_equal(ynode_check_keys(f->docs[0].root, allowed, "r.yaml", "x", &d), 2);
	out = diags_text(&d);
	assert_string_equal(out, "r.yaml:3:1: duplicate key \"a\" (first at line 1)\n"
				 "r.yaml:4:1: duplicate key \"a\" (first at line 1)\n");
	free(out);
	diags_free(&d);
	manifest_yaml_free(f);
	/* a big map takes the sorting path: still every repeat, in file order */
	for (int i = 0; i < 5000; i++)
		buf_printf(&big, "k%d: v\n", i % 2500);
	f = parse_ok(big.data);
	assert_int_equal(ynode_check_dups(f->docs[0].root, "r.yaml", &d), 2500);
	assert_int_equal(d.v[0].line, 2501);
	assert_string_equal(d.v[0].msg, "duplicate key \"k0\" (first at line 1)");
	diags_free(&d);
	manifest_yaml_free(f);
	buf_free(&big);
}

static void test_ynode_bool_accepts_yaml_1_2_core_spellings_only(void **state)
{
	struct yfile *f = parse_ok("a: true\nb: False\nc: TRUE\nd: yes\ne: off\nf: \"true\"\ng: [x]\n");
	const struct ynode *root = f->docs[0].root;
	struct diags d = DIAGS_INIT;
	int v = -1;
	char *out;

	(void)state;
	assert_int_equal(ynode_bool(ynode_get(root, "a"), "r.yaml", "a", &d, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(ynode_bool(ynode_get(root, "b"), "r.yaml", "b", &d, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(ynode_bool(ynode_get(root, "c"), "r.yaml", "c", &d, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(ynode_bool(ynode_get(root, "d"), "r.yaml", "d", &d, &v), CS_EINVALID);
	assert_int_equal(ynode_bool(ynode_get(root, "e"), "r.yaml", "e", &d, &v), CS_EINVALID);
	assert_int_equal(ynode_bool(ynode_get(root, "f"), "r.yaml", "f", &d, &v), CS_EINVALID);
	assert_int_equal(ynode_bool(ynode_get(root, "g"), "r.yaml", "g", &d, &v), CS_EINVALID);
	assert_int_equal(v, 1); /* outputs are written only on success */
	out = diags_text(&d);
	assert_string_equal(out, "r.yaml:4:4: d: expected true or false, got \"yes\"\n"
				 "r.yaml:5:4: e: expected true or false, got \"off\"\n"
				 "r.yaml:6:4: f: expected true or false, got the string \"true\" (remove the quotes)\n"
				 "r.yaml:7:4: g: expected true or false, got a list\n");
	free(out);
	diags_free(&d);
	manifest_yaml_free(f);
}

static void test_ynode_string_rejects_maps_lists_and_null(void **state)
{
	struct yfile *f = parse_ok("a: x\nb: {k: v}\nc: [1]\nd:\ne: ~\nf: \"\"\ng: 42\n");
	const struct ynode *root = f->docs[0].root;
	struct diags d = DIAGS_INIT;
	const char *s = NULL;
	char *out;

	(void)state;
	assert_int_equal(ynode_string(ynode_get(root, "a"), "r.yaml", "a", &d, &s), 0);
	assert_string_equal(s, "x");
	assert_int_equal(ynode_string(ynode_get(root, "f"), "r.yaml", "f", &d, &s), 0);
	assert_string_equal(s, ""); /* quoted empty is a string */
	assert_int_equal(ynode_string(ynode_get(root, "g"), "r.yaml", "g", &d, &s), 0);
	assert_string_equal(s, "42");
	for (const char *k = "bcde"; *k; k++) {
		char key[2] = {*k, 0};

		assert_int_equal(ynode_string(ynode_get(root, key), "r.yaml", key, &d, &s), CS_EINVALID);
	}
	out = diags_text(&d);
	assert_string_equal(out, "r.yaml:2:4: b: expected a string, got a map\n"
				 "r.yaml:3:4: c: expected a string, got a list\n"
				 "r.yaml:4:3: d: expected a string, got null\n"
				 "r.yaml:5:4: e: expected a string, got null\n");
	free(out);
	diags_free(&d);
	manifest_yaml_free(f);
}

static void test_ynode_int_checks_syntax_and_range(void **state)
{
	struct yfile *f = parse_ok("a: 2048\nb: -3\nc: 0x10\nd: \"7\"\ne: 70000\nf: 1e3\n");
	const struct ynode *root = f->docs[0].root;
	struct diags d = DIAGS_INIT;
	int64_t v = 0;
	char *out;

	(void)state;
	assert_int_equal(ynode_int(ynode_get(root, "a"), "r.yaml", "a", 1, 65536, &d, &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(ynode_int(ynode_get(root, "b"), "r.yaml", "b", -5, 5, &d, &v), 0);
	assert_int_equal(v, -3);
	assert_int_equal(ynode_int(ynode_get(root, "c"), "r.yaml", "c", 0, 100, &d, &v), CS_EINVALID);
	assert_int_equal(ynode_int(ynode_get(root, "d"), "r.yaml", "d", 0, 100, &d, &v), CS_EINVALID);
	assert_int_equal(ynode_int(ynode_get(root, "e"), "r.yaml", "e", 1, 65536, &d, &v), CS_EINVALID);
	assert_int_equal(ynode_int(ynode_get(root, "f"), "r.yaml", "f", 0, 10000, &d, &v), CS_EINVALID);
	out = diags_text(&d);
	assert_string_equal(out, "r.yaml:3:4: c: expected an integer, got \"0x10\"\n"
				 "r.yaml:4:4: d: expected an integer, got the string \"7\" (remove the quotes)\n"
				 "r.yaml:5:4: e: 70000 is out of range (1 to 65536)\n"
				 "r.yaml:6:4: f: expected an integer, got \"1e3\"\n");
	free(out);
	diags_free(&d);
	manifest_yaml_free(f);
}

static void test_ynode_duration_reads_units_and_reports_the_value(void **state)
{
	struct yfile *f = parse_ok("a: 720h\nb: 30d\nc: 1h30m\nd: \"90s\"\ne: 3600\nf: {x: 1}\n");
	const struct ynode *root = f->docs[0].root;
	struct diags d = DIAGS_INIT;
	int64_t v = 0;
	char *out;

	(void)state;
	assert_int_equal(ynode_duration(ynode_get(root, "a"), "r.yaml", "a", &d, &v), 0);
	assert_int_equal(v, 720 * 3600);
	assert_int_equal(ynode_duration(ynode_get(root, "b"), "r.yaml", "b", &d, &v), 0);
	assert_int_equal(v, 30 * 86400);
	assert_int_equal(ynode_duration(ynode_get(root, "c"), "r.yaml", "c", &d, &v), 0);
	assert_int_equal(v, 5400);
	assert_int_equal(ynode_duration(ynode_get(root, "d"), "r.yaml", "d", &d, &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(ynode_duration(ynode_get(root, "e"), "r.yaml", "e", &d, &v), CS_EINVALID);
	assert_int_equal(ynode_duration(ynode_get(root, "f"), "r.yaml", "f", &d, &v), CS_EINVALID);
	out = diags_text(&d);
	assert_non_null(strstr(out, "r.yaml:5:4: e: \"3600\" is not a duration"));
	assert_non_null(strstr(out, "r.yaml:6:4: f: expected a duration (\"720h\", \"30d\"), got a map\n"));
	free(out);
	diags_free(&d);
	manifest_yaml_free(f);
}

static void test_ynode_expect_names_the_wrong_type(void **state)
{
	struct yfile *f = parse_ok("a: x\nb: {}\n");
	struct diags d = DIAGS_INIT;

	(void)state;
	assert_int_equal(ynode_expect(ynode_get(f->docs[0].root, "b"), YNODE_MAP, "r.yaml", "b", &d), 0);
	assert_int_equal(ynode_expect(ynode_get(f->docs[0].root, "a"), YNODE_SEQ, "r.yaml", "a", &d), CS_EINVALID);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0].msg, "a: expected a list, got \"x\"");
	assert_null(ynode_get(f->docs[0].root, "missing"));
	assert_null(ynode_get(NULL, "a"));
	diags_free(&d);
	manifest_yaml_free(f);
}

/* ---------- the schema ---------- */

static void test_spec_defaults(void **state)
{
	struct cert_spec *s = one("  dnsNames: [B.example.com, a.example.com]\n");

	(void)state;
	assert_string_equal(s->name, "x");
	assert_string_equal(s->common_name, "b.example.com"); /* the first name as written */
	assert_false(s->common_name_set);
	assert_int_equal(s->key_alg, KEYALG_ECDSA);
	assert_int_equal(s->key_size, 256);
	assert_int_equal(s->rotation, ROTATE_ALWAYS);
	assert_string_equal(s->output_dir, "x");
	assert_int_equal(s->output_line, 0);
	assert_int_equal(s->duration, 0);
	assert_int_equal(s->renew_before, 0);
	assert_false(s->auto_renew_set);
	assert_null(s->domain);
	assert_null(s->validation);
	assert_int_equal(s->n_labels, 0);
	cert_spec_free(s);
	s = one("  commonName: www.example.com\n  privateKey: {algorithm: rsa}\n");
	assert_int_equal(s->key_alg, KEYALG_RSA);
	assert_int_equal(s->key_size, 2048);
	assert_int_equal(s->n_dns, 1);
	assert_string_equal(s->dns_names[0], "www.example.com");
	cert_spec_free(s);
}

static void test_spec_normalises_dns_names(void **state)
{
	struct cert_spec *s =
		one("  commonName: WWW.Example.com.\n  dnsNames: [b.example.com, www.example.com, B.EXAMPLE.COM., "
		    "\"*.Example.com\"]\n  domain: Example.COM.\n");

	(void)state;
	assert_string_equal(s->common_name, "www.example.com");
	assert_true(s->common_name_set);
	assert_int_equal(s->n_dns, 3);
	assert_string_equal(s->dns_names[0], "*.example.com");
	assert_string_equal(s->dns_names[1], "b.example.com");
	assert_string_equal(s->dns_names[2], "www.example.com");
	assert_string_equal(s->domain, "example.com");
	cert_spec_free(s);
}

static void test_spec_hash_ignores_name_order(void **state)
{
	struct cert_spec *a = one("  dnsNames: [b.example.com, a.example.com]\n");
	struct cert_spec *b = one("  dnsNames: [A.EXAMPLE.com., b.example.com, a.example.com]\n");

	(void)state;
	assert_int_equal(strlen(a->hash), 64);
	assert_string_equal(a->hash, b->hash);
	cert_spec_free(a);
	cert_spec_free(b);
}

static void test_spec_hash_ignores_cosmetic_fields(void **state)
{
	struct cert_spec *a = one("  dnsNames: [a.example.com]\n  duration: 720h\n");
	struct cert_spec *b =
		one("  dnsNames: [a.example.com]\n  duration: 30d\n  renewBefore: 10d\n"
		    "  autoRenew: true\n  privateKey: {algorithm: ecdsa, size: 256, rotationPolicy: Never}\n"
		    "  output: {directory: elsewhere}\n");
	char *yaml = xasprintf("apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n  name: other\n"
			       "  labels: {team: web}\n  annotations: {note: hi}\nspec:\n  issuer: ca\n"
			       "  dnsNames: [a.example.com]\n  duration: 2592000s\n");
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;

	(void)state;
	manifest_parse_file("c.yaml", yaml, strlen(yaml), &v, &n, &d);
	assert_int_equal(n, 1);
	assert_string_equal(a->hash, b->hash);
	assert_string_equal(a->hash, v[0]->hash);
	cert_spec_free(a);
	cert_spec_free(b);
	cert_spec_free(v[0]);
	free(v);
	free(yaml);
	diags_free(&d);
}

static void test_spec_hash_changes_with_every_identity_field(void **state)
{
	static const char *const variants[] = {
		"  dnsNames: [a.example.com]\n",
		"  dnsNames: [a.example.com, b.example.com]\n",
		"  commonName: a.example.com\n", /* written, not defaulted */
		"  dnsNames: [a.example.com]\n  domain: example.com\n",
		"  dnsNames: [a.example.com]\n  privateKey: {algorithm: RSA}\n",
		"  dnsNames: [a.example.com]\n  privateKey: {size: 384}\n",
		"  dnsNames: [a.example.com]\n  duration: 90d\n",
		"  dnsNames: [a.example.com]\n  validation: {method: http-token}\n",
	};
	enum { N = sizeof(variants) / sizeof(variants[0]) };
	struct cert_spec *s[N + 1];
	char *other = xasprintf("apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: y}\nspec:\n"
				"  issuer: internal\n  dnsNames: [a.example.com]\n");
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;

	(void)state;
	for (size_t i = 0; i < N; i++)
		s[i] = one(variants[i]);
	manifest_parse_file("o.yaml", other, strlen(other), &v, &n, &d);
	s[N] = v[0]; /* another issuer */
	for (size_t i = 0; i <= N; i++)
		for (size_t j = i + 1; j <= N; j++)
			if (!strcmp(s[i]->hash, s[j]->hash))
				fail_msg("variants %zu and %zu hash alike", i, j);
	for (size_t i = 0; i <= N; i++)
		cert_spec_free(s[i]);
	free(v);
	free(other);
	diags_free(&d);
}

/* Fields are length-prefixed: two names cannot pass for one that is their concatenation. */
static void test_spec_hash_separates_fields(void **state)
{
	struct cert_spec *a = one("  dnsNames: [a.example.com, b.example.com]\n");
	struct cert_spec *b = one("  dnsNames: [a.example.comb.example.com]\n  commonName: a.example.com\n");
	struct cert_spec *c = one("  dnsNames: [a.example.com]\n  domain: example.com\n");
	struct cert_spec *e = one("  dnsNames: [a.example.com]\n  validation: {method: dns-txt-token}\n");

	(void)state;
	assert_string_not_equal(a->hash, b->hash);
	assert_string_not_equal(c->hash, e->hash);
	cert_spec_free(a);
	cert_spec_free(b);
	cert_spec_free(c);
	cert_spec_free(e);
}

static void test_spec_key_sizes_follow_the_algorithm(void **state)
{
	static const char *const ok[] = {"{algorithm: RSA, size: 2048}",  "{algorithm: RSA, size: 3072}",
					 "{algorithm: rsa, size: 4096}",  "{algorithm: ECDSA, size: 256}",
					 "{algorithm: Ecdsa, size: 384}", "{size: 384}"};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *line = xasprintf("  commonName: a.example.com\n  privateKey: %s\n", ok[i]);

		cert_spec_free(one(line));
		free(line);
	}
	assert_problem("  commonName: a.example.com\n  privateKey: {algorithm: RSA, size: 1024}\n",
		       "x.yaml:7:38: spec.privateKey.size: 1024 is not a valid RSA key size (2048, 3072, 4096)");
	assert_problem("  commonName: a.example.com\n  privateKey: {size: 2048}\n",
		       "spec.privateKey.size: 2048 is not a valid ECDSA key size (256, 384)");
	assert_problem("  commonName: a.example.com\n  privateKey: {algorithm: RSA, size: 384}\n",
		       "spec.privateKey.size: 384 is not a valid RSA key size");
	assert_problem("  commonName: a.example.com\n  privateKey: {algorithm: DSA, size: 1024}\n",
		       "spec.privateKey.algorithm: \"DSA\" is not supported (RSA, ECDSA)");
}

static void test_spec_duration_and_renew_before_limits(void **state)
{
	struct cert_spec *s = one("  commonName: a.example.com\n  duration: 1h\n  renewBefore: 5m\n");

	(void)state;
	assert_int_equal(s->duration, 3600);
	assert_int_equal(s->renew_before, 300);
	cert_spec_free(s);
	assert_problem("  commonName: a.example.com\n  duration: 59m\n",
		       "spec.duration: 59m is shorter than the minimum of 1h");
	assert_problem("  commonName: a.example.com\n  renewBefore: 299s\n",
		       "spec.renewBefore: 299s is shorter than the minimum of 5m");
	assert_problem("  commonName: a.example.com\n  duration: 2h\n  renewBefore: 120m\n",
		       "x.yaml:8:16: spec.renewBefore: 120m must be shorter than spec.duration (2h)");
	assert_problem("  commonName: a.example.com\n  duration: 1 year\n",
		       "spec.duration: \"1 year\" is not a duration");
}

static void test_spec_wildcards_only_as_the_leftmost_label(void **state)
{
	struct cert_spec *s = one("  dnsNames: [\"*.a.example.com\"]\n");

	(void)state;
	assert_string_equal(s->dns_names[0], "*.a.example.com");
	cert_spec_free(s);
	assert_problem("  dnsNames: [\"a.*.example.com\"]\n", "a wildcard must be the whole leftmost label");
	assert_problem("  dnsNames: [\"w*.example.com\"]\n", "a wildcard must be the whole leftmost label");
	assert_problem("  dnsNames: [\"*.com\"]\n", "a wildcard needs at least two labels after it");
	assert_problem("  dnsNames: [a.example.com]\n  domain: \"*.example.com\"\n", "wildcards are not allowed here");
}

static void test_spec_limits_the_number_of_dns_names(void **state)
{
	struct buf b = BUF_INIT;
	struct cert_spec *s;

	(void)state;
	buf_puts(&b, "  dnsNames:\n");
	for (int i = 0; i < MANIFEST_MAX_DNS_NAMES; i++)
		buf_printf(&b, "  - h%d.example.com\n", i);
	s = one(b.data);
	assert_int_equal(s->n_dns, MANIFEST_MAX_DNS_NAMES);
	cert_spec_free(s);
	buf_puts(&b, "  - one-more.example.com\n");
	assert_problem(b.data, "x.yaml:7:3: spec.dnsNames: 101 names; the limit is 100");
	buf_free(&b);
}

static void test_spec_output_directory_is_cleaned(void **state)
{
	struct cert_spec *s = one("  commonName: a.example.com\n  output: {directory: ./team//web/./a/}\n");

	(void)state;
	assert_string_equal(s->output_dir, "team/web/a");
	assert_int_equal(s->output_line, 7);
	assert_int_equal(s->output_col, 23);
	cert_spec_free(s);
	assert_problem("  commonName: a.example.com\n  output: {directory: /etc}\n", "must be relative");
	assert_problem("  commonName: a.example.com\n  output: {directory: a/../../b}\n", "must not contain \"..\"");
	assert_problem("  commonName: a.example.com\n  output: {directory: .git}\n", "must not start with '.'");
	assert_problem("  commonName: a.example.com\n  output: {directory: \"a b\"}\n", "only letters, digits");
	assert_problem("  commonName: a.example.com\n  output: {directory: .}\n", "names the output root itself");
}

static void test_spec_labels_are_validated_and_sorted(void **state)
{
	char *yaml =
		xasprintf("apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n  name: x\n"
			  "  labels: {zone: eu, app.example.com/tier: front, empty: \"\", v: %.*s}\n"
			  "spec: {issuer: ca, commonName: a.example.com}\n",
			  63, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;

	(void)state;
	manifest_parse_file("l.yaml", yaml, strlen(yaml), &v, &n, &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(v[0]->n_labels, 4);
	assert_string_equal(v[0]->labels[0].key, "app.example.com/tier");
	assert_string_equal(v[0]->labels[1].key, "empty");
	assert_string_equal(v[0]->labels[1].value, "");
	assert_string_equal(v[0]->labels[3].key, "zone");
	cert_spec_free(v[0]);
	free(v);
	free(yaml);
	diags_free(&d);
}

static void test_spec_reports_every_problem_of_a_document(void **state)
{
	char *out = diagnose_str("m.yaml", "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: Bad}\n"
					   "spec:\n  issuer: [x]\n  dnsNames: [\"a..b\"]\n  duration: 1s\n"
					   "  autoRenew: sometimes\n  bogus: 1\n");

	(void)state;
	assert_string_equal(out,
			    "m.yaml:3:18: metadata.name: \"Bad\" is not a valid name: only lowercase letters, digits, "
			    "'-' and '.' are allowed\n"
			    "m.yaml:5:11: spec.issuer: expected a string, got a list\n"
			    "m.yaml:6:14: spec.dnsNames[0]: \"a..b\" is not a valid DNS name: empty label (two dots in "
			    "a row, or a leading dot)\n"
			    "m.yaml:7:13: spec.duration: 1s is shorter than the minimum of 1h\n"
			    "m.yaml:8:14: spec.autoRenew: expected true or false, got \"sometimes\"\n"
			    "m.yaml:9:3: unknown field \"bogus\" in spec\n");
	free(out);
}

static void test_spec_other_kinds_are_errors_and_not_read_further(void **state)
{
	const char *cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n";
	size_t good = 1;
	char *out = diagnose("k.yaml", cm, strlen(cm), &good);

	(void)state;
	/* nothing about the ConfigMap's own fields: they belong to another schema */
	assert_string_equal(out, "k.yaml:1:13: apiVersion: \"v1\" is not supported (certsync/v1)\n");
	assert_int_equal(good, 0);
	free(out);
	out = diagnose_str("k.yaml", "apiVersion: certsync/v1\nkind: Issuer\nmetadata: {name: x}\nspec: {a: b}\n");
	assert_string_equal(out, "k.yaml:2:7: kind: \"Issuer\" is not supported (only Certificate)\n");
	free(out);
}

static void test_spec_required_fields(void **state)
{
	char *out = diagnose_str("r.yaml", "kind: Certificate\nmetadata: {}\nspec: {commonName: a.example.com}\n");

	(void)state;
	assert_string_equal(out, "r.yaml:1:1: missing required field \"apiVersion\"\n"
				 "r.yaml:2:11: metadata: missing required field \"name\"\n"
				 "r.yaml:3:7: spec: missing required field \"issuer\"\n");
	free(out);
}

static void test_spec_document_with_an_error_yields_no_spec_but_others_do(void **state)
{
	const char *text = "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: good}\n"
			   "spec: {issuer: ca, dnsNames: [a.example.com]}\n---\napiVersion: certsync/v1\n"
			   "kind: Certificate\nmetadata: {name: bad}\nspec: {issuer: ca}\n";
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(manifest_parse_file("two.yaml", text, strlen(text), &v, &n, &d), CS_EINVALID);
	assert_int_equal(n, 1);
	assert_string_equal(v[0]->name, "good");
	assert_int_equal(d.n, 1);
	assert_int_equal(d.v[0].line, 9);
	cert_spec_free(v[0]);
	free(v);
	diags_free(&d);
}

static void test_manifest_check_dns_name_rules(void **state)
{
	char long_label[80], long_name[400];

	(void)state;
	assert_null(manifest_check_dns_name("www.example.com", 0));
	assert_null(manifest_check_dns_name("WWW.Example.COM.", 0));
	assert_null(manifest_check_dns_name("localhost", 0));
	assert_null(manifest_check_dns_name("xn--bcher-kva.example", 0));
	assert_null(manifest_check_dns_name("3com.example", 0));
	assert_null(manifest_check_dns_name("*.example.com", 1));
	assert_non_null(manifest_check_dns_name("*.example.com", 0));
	assert_non_null(manifest_check_dns_name("*", 1));
	assert_non_null(manifest_check_dns_name("a..b", 0));
	assert_non_null(manifest_check_dns_name(".a", 0));
	assert_non_null(manifest_check_dns_name("", 0));
	assert_non_null(manifest_check_dns_name(".", 0));
	assert_non_null(manifest_check_dns_name("-a.example", 0));
	assert_non_null(manifest_check_dns_name("a-.example", 0));
	assert_non_null(manifest_check_dns_name("a_b.example", 0));
	assert_non_null(manifest_check_dns_name("10.0.0.1", 0));
	assert_non_null(manifest_check_dns_name("b\303\274cher.example", 0));
	memset(long_label, 'a', 64);
	long_label[64] = '\0';
	assert_non_null(manifest_check_dns_name(long_label, 0));
	long_label[63] = '\0';
	assert_null(manifest_check_dns_name(long_label, 0));
	/* 4 × 63 + 3 dots = 255 > 253 */
	snprintf(long_name, sizeof(long_name), "%s.%s.%s.%s", long_label, long_label, long_label, long_label);
	assert_string_equal(manifest_check_dns_name(long_name, 0), "longer than 253 characters");
}

static void test_manifest_check_relpath_rules(void **state)
{
	char long_path[300];

	(void)state;
	assert_null(manifest_check_relpath("team/www"));
	assert_null(manifest_check_relpath("a.b_c-d/e"));
	assert_null(manifest_check_relpath("./a//b/"));
	assert_non_null(manifest_check_relpath(""));
	assert_non_null(manifest_check_relpath("/abs"));
	assert_non_null(manifest_check_relpath("a/../b"));
	assert_non_null(manifest_check_relpath(".."));
	assert_non_null(manifest_check_relpath(".hidden"));
	assert_non_null(manifest_check_relpath("a/.state"));
	assert_non_null(manifest_check_relpath("sp ace"));
	assert_non_null(manifest_check_relpath("back\\slash"));
	assert_non_null(manifest_check_relpath("./"));
	memset(long_path, 'a', 256);
	long_path[256] = '\0';
	assert_non_null(manifest_check_relpath(long_path));
	long_path[255] = '\0';
	assert_null(manifest_check_relpath(long_path));
}

/* ---------- the set ---------- */

static struct cert_spec **parse_files(const char *const *names, const char *const *texts, size_t n_files, size_t *n)
{
	struct cert_spec **all = NULL;
	size_t cap = 0;
	struct diags d = DIAGS_INIT;

	*n = 0;
	for (size_t i = 0; i < n_files; i++) {
		struct cert_spec **v = NULL;
		size_t k = 0;

		manifest_parse_file(names[i], texts[i], strlen(texts[i]), &v, &k, &d);
		util_grow(&all, &cap, *n + k + 1, sizeof(*all));
		memcpy(all + *n, v, k * sizeof(*v));
		*n += k;
		free(v);
	}
	if (d.n)
		diags_print(&d, stderr);
	assert_int_equal(d.n, 0);
	diags_free(&d);
	return all;
}

static void specs_free(struct cert_spec **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cert_spec_free(v[i]);
	free(v);
}

static char *check_set(struct cert_spec **v, size_t n, const struct manifest_ctx *ctx, unsigned char *bad, int *count)
{
	struct diags d = DIAGS_INIT;
	char *out;

	*count = manifest_check_set(v, n, ctx, bad, &d);
	out = diags_text(&d);
	diags_free(&d);
	return out;
}

static void test_set_reports_duplicate_names_at_both_places(void **state)
{
	const char *names[] = {"a.yaml", "b.yaml"};
	const char *texts[] = {
		"apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n  name: www\nspec: {issuer: ca, commonName: "
		"a.example.com, output: {directory: a}}\n",
		"# other\napiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: www}\nspec: {issuer: ca, "
		"commonName: b.example.com, output: {directory: b}}\n",
	};
	unsigned char bad[2] = {0, 0};
	size_t n;
	struct cert_spec **v = parse_files(names, texts, 2, &n);
	int count;
	char *out = check_set(v, n, &fake_ctx, bad, &count);

	(void)state;
	assert_string_equal(out, "a.yaml:4:9: duplicate certificate name \"www\" (also defined at b.yaml:4:18)\n"
				 "b.yaml:4:18: duplicate certificate name \"www\" (also defined at a.yaml:4:9)\n");
	assert_int_equal(count, 2);
	assert_true(bad[0] && bad[1]);
	free(out);
	specs_free(v, n);
}

static void test_set_reports_shared_and_nested_output_directories(void **state)
{
	const char *names[] = {"d.yaml"};
	const char *texts[] = {"apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: a}\n"
			       "spec: {issuer: ca, commonName: a.example.com, output: {directory: web}}\n---\n"
			       "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: b}\n"
			       "spec: {issuer: ca, commonName: b.example.com, output: {directory: ./web/}}\n---\n"
			       "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: c}\n"
			       "spec: {issuer: ca, commonName: c.example.com, output: {directory: web/c/d}}\n---\n"
			       "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: e}\n"
			       "spec: {issuer: ca, commonName: e.example.com, output: {directory: webber}}\n"};
	unsigned char bad[4] = {0};
	size_t n;
	struct cert_spec **v = parse_files(names, texts, 1, &n);
	int count;
	char *out = check_set(v, n, &fake_ctx, bad, &count);

	(void)state;
	assert_string_equal(
		out,
		"d.yaml:4:67: output directory \"web\" is also used by certificate \"b\" (d.yaml:9:67)\n"
		"d.yaml:4:67: output directory \"web\" contains \"web/c/d\", the output directory of certificate "
		"\"c\" (d.yaml:14:67)\n"
		"d.yaml:9:67: output directory \"web\" is also used by certificate \"a\" (d.yaml:4:67)\n"
		"d.yaml:14:67: output directory \"web/c/d\" is inside \"web\", the output directory of certificate "
		"\"a\" (d.yaml:4:67)\n");
	assert_int_equal(count, 4);
	assert_true(bad[0] && bad[1] && bad[2]);
	assert_false(bad[3]); /* "webber" is not inside "web" */
	free(out);
	specs_free(v, n);
}

static void test_set_unknown_issuer_lists_configured_and_suggests(void **state)
{
	const char *names[] = {"i.yaml"};
	const char *texts[] = {"apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: a}\n"
			       "spec: {issuer: CA, commonName: a.example.com}\n---\n"
			       "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: b}\n"
			       "spec: {issuer: letsencrypt, commonName: b.example.com}\n"};
	struct manifest_ctx bare = {.issuer_exists = fake_issuer_exists};
	unsigned char bad[2] = {0};
	size_t n;
	struct cert_spec **v = parse_files(names, texts, 1, &n);
	int count;
	char *out = check_set(v, n, &fake_ctx, bad, &count);

	(void)state;
	assert_string_equal(out,
			    "i.yaml:4:16: spec.issuer: unknown issuer \"CA\" (configured: ca, internal; did you "
			    "mean \"ca\"?)\n"
			    "i.yaml:9:16: spec.issuer: unknown issuer \"letsencrypt\" (configured: ca, internal)\n");
	assert_true(bad[0] && bad[1]);
	free(out);
	/* without a way to list them, the message still names the issuer */
	out = check_set(v, n, &bare, bad, &count);
	assert_string_equal(out, "i.yaml:4:16: spec.issuer: unknown issuer \"CA\"\n"
				 "i.yaml:9:16: spec.issuer: unknown issuer \"letsencrypt\"\n");
	free(out);
	specs_free(v, n);
}

static void test_set_runs_the_issuer_check_for_known_issuers_only(void **state)
{
	const char *names[] = {"w.yaml"};
	const char *texts[] = {"apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: a}\n"
			       "spec: {issuer: ca, dnsNames: [a.forbidden.test]}\n---\n"
			       "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: b}\n"
			       "spec: {issuer: internal, dnsNames: [b.forbidden.test]}\n---\n"
			       "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: c}\n"
			       "spec: {issuer: nope, dnsNames: [c.example.com]}\n"};
	unsigned char bad[3] = {0};
	size_t n;
	struct cert_spec **v = parse_files(names, texts, 1, &n);
	int count;
	char *out;

	(void)state;
	issuer_checks = 0;
	out = check_set(v, n, &fake_ctx, bad, &count);
	assert_int_equal(issuer_checks, 2);
	assert_string_equal(out, "w.yaml:4:16: issuer ca: a.forbidden.test is not allowed\n"
				 "w.yaml:14:16: spec.issuer: unknown issuer \"nope\" (configured: ca, internal)\n");
	assert_int_equal(count, 2);
	assert_true(bad[0]);
	assert_false(bad[1]);
	assert_true(bad[2]);
	free(out);
	specs_free(v, n);
}

/* The bench's manifest shape: flow maps and lists, about 340 bytes a document. */
static void bench_document(struct buf *b, int i)
{
	buf_printf(b,
		   "apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n  name: cert-%05d\n"
		   "  labels: {team: team-%d}\nspec:\n  issuer: internal\n  commonName: host-%d.svc%d.example.test\n"
		   "  dnsNames: [host-%d.svc%d.example.test, alt-%d.example.test]\n  renewBefore: 720h\n"
		   "  privateKey: {algorithm: ECDSA, size: 256}\n  output: {directory: team-%d/cert-%05d}\n",
		   i, i % 17, i, i % 50, i, i % 50, i, i % 17, i);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Parses n certificates (files of 1,000 documents) and checks the set; the time it took, in ms. */
static double time_parse_and_check(int n, int duplicate_names)
{
	struct cert_spec **all = NULL;
	size_t n_all = 0, cap = 0;
	struct diags d = DIAGS_INIT;
	struct buf *files = xcalloc((size_t)n / 1000, sizeof(*files));
	unsigned char *bad;
	double t0, t1;
	int problems;

	for (int f = 0; f < n / 1000; f++) {
		buf_init(&files[f], 0);
		for (int i = 0; i < 1000; i++) {
			if (i)
				buf_puts(&files[f], "---\n");
			bench_document(&files[f], f * 1000 + (duplicate_names ? i / 2 * 2 : i));
		}
	}
	t0 = now_ms();
	for (int f = 0; f < n / 1000; f++) {
		struct cert_spec **v = NULL;
		size_t k = 0;
		char name[32];

		snprintf(name, sizeof(name), "certs-%d.yaml", f);
		manifest_parse_file(name, files[f].data, files[f].len, &v, &k, &d);
		util_grow(&all, &cap, n_all + k, sizeof(*all));
		memcpy(all + n_all, v, k * sizeof(*v));
		n_all += k;
		free(v);
	}
	bad = xcalloc(n_all + 1, 1);
	problems = manifest_check_set(all, n_all, &fake_ctx, bad, &d);
	t1 = now_ms();
	assert_int_equal(n_all, n);
	/* a duplicated name also shares its default output directory: reported once, as a name */
	assert_int_equal(problems, duplicate_names ? n : 0);
	assert_int_equal(d.n, (size_t)problems);
	specs_free(all, n_all);
	free(bad);
	diags_free(&d);
	for (int f = 0; f < n / 1000; f++)
		buf_free(&files[f]);
	free(files);
	return t1 - t0;
}

/*
 * 10,000 certificates in ten files of 1,000 documents: all valid, and the
 * cost grows linearly. The test compares with 1,000 rather than asserting
 * a wall time, so it holds under sanitizers and valgrind: linear is ~10×,
 * a quadratic step would be ~100×. (An optimised build takes well under
 * 0.2 s for the 10,000; the time is printed.)
 */
static void test_manifest_parses_and_checks_10000_certificates_in_linear_time(void **state)
{
	double small, big;

	(void)state;
	time_parse_and_check(1000, 0); /* warm up the allocator */
	small = time_parse_and_check(1000, 0);
	big = time_parse_and_check(10000, 0);
	print_message("1,000 certificates in %.1f ms, 10,000 in %.1f ms\n", small, big);
	assert_true(big < 40 * small + 50);
	/* with every name duplicated once: 10,000 diagnostics, still linear */
	small = time_parse_and_check(1000, 1);
	big = time_parse_and_check(10000, 1);
	assert_true(big < 40 * small + 50);
}

/* ---------- the X.509 profile and output formats (issue 14) ---------- */

static void test_spec_x509_fields_are_read_and_normalised(void **state)
{
	struct cert_spec *s = one("  dnsNames: [a.example.test]\n"
				  "  ipAddresses: [\"::0001\", 10.0.0.1, 10.0.0.1]\n"
				  "  uris: [spiffe://cluster.local/ns/web/sa/api]\n"
				  "  emailAddresses: [Ops@Example.TEST]\n"
				  "  subject:\n    organizations: [Pizza Co, Pizza Co]\n    countries: [de]\n"
				  "    serialNumber: \"42\"\n"
				  "  usages: [Digital Signature, server auth, signing]\n"
				  "  isCA: true\n  pathLen: 0\n"
				  "  output: {formats: [tls.der, combined.pem]}\n");
	char fm[MANIFEST_FORMATS_TEXT];

	(void)state;
	assert_int_equal(s->n_ips, 2);
	assert_string_equal(s->ips[0], "10.0.0.1");
	assert_string_equal(s->ips[1], "::1");
	assert_int_equal(s->n_uris, 1);
	assert_string_equal(s->emails[0], "Ops@example.test");
	assert_int_equal(s->n_subject, 3); /* C, O (once), serialNumber */
	assert_int_equal(s->subject[0].attr, SUBJ_C);
	assert_string_equal(s->subject[0].value, "DE");
	assert_int_equal(s->subject[1].attr, SUBJ_O);
	assert_int_equal(s->usages, (1u << USAGE_DIGITAL_SIGNATURE) | (1u << USAGE_SERVER_AUTH));
	assert_true(s->is_ca);
	assert_int_equal(s->path_len, 0);
	assert_int_equal(s->xpos[XF_IP][0], 7);
	assert_int_equal(s->xpos[XF_ISCA][0], 15);
	manifest_formats_text(s->formats, fm);
	assert_string_equal(fm, "combined.pem,tls.der");
	cert_spec_free(s);
}

static void test_spec_x509_fields_move_the_hash_only_when_written(void **state)
{
	struct cert_spec *plain = one("  dnsNames: [a.example.test]\n");
	struct cert_spec *fmt = one("  dnsNames: [a.example.test]\n  output: {formats: [chain.pem]}\n");
	struct cert_spec *ip = one("  dnsNames: [a.example.test]\n  ipAddresses: [10.0.0.1]\n");
	struct cert_spec *ip6 = one("  dnsNames: [a.example.test]\n  ipAddresses: [\"::0001\"]\n");
	struct cert_spec *ip6b = one("  dnsNames: [a.example.test]\n  ipAddresses: [\"0::1\"]\n");
	struct cert_spec *org = one("  dnsNames: [a.example.test]\n  subject: {organizations: [A, B]}\n");
	struct cert_spec *org2 = one("  dnsNames: [a.example.test]\n  subject: {organizations: [B, A, A]}\n");

	(void)state;
	/* formats are outputs, not the certificate: a change reinstalls */
	assert_string_equal(plain->hash, fmt->hash);
	assert_string_not_equal(plain->hash, ip->hash);
	assert_string_equal(ip6->hash, ip6b->hash); /* one address, two spellings */
	assert_string_equal(org->hash, org2->hash); /* order and repeats are cosmetic */
	assert_string_not_equal(org->hash, plain->hash);
	cert_spec_free(plain);
	cert_spec_free(fmt);
	cert_spec_free(ip);
	cert_spec_free(ip6);
	cert_spec_free(ip6b);
	cert_spec_free(org);
	cert_spec_free(org2);
}

static void test_spec_x509_field_errors_name_the_place(void **state)
{
	(void)state;
	assert_problem("  dnsNames: [a.example.test]\n  ipAddresses: [10.0.0.300]\n",
		       "x.yaml:7:17: spec.ipAddresses[0]: \"10.0.0.300\" is not an IPv4 or IPv6 address");
	assert_problem("  dnsNames: [a.example.test]\n  uris: [\"no scheme\"]\n",
		       "spec.uris[0]: \"no scheme\" holds a space");
	assert_problem("  dnsNames: [a.example.test]\n  uris: [example.test/path]\n", "is not an absolute URI");
	assert_problem("  dnsNames: [a.example.test]\n  emailAddresses: [ops]\n",
		       "spec.emailAddresses[0]: \"ops\" is not an email address");
	assert_problem("  dnsNames: [a.example.test]\n  subject: {countries: [Germany]}\n",
		       "x.yaml:7:25: spec.subject.countries[0]: \"Germany\" is not a two-letter country code");
	assert_problem("  dnsNames: [a.example.test]\n  subject: {organisations: [A]}\n",
		       "unknown field \"organisations\" in spec.subject (did you mean \"organizations\"?)");
	assert_problem("  dnsNames: [a.example.test]\n  usages: [server-auth]\n",
		       "spec.usages[0]: \"server-auth\" is not a usage (did you mean \"server auth\"?)");
	assert_problem("  dnsNames: [a.example.test]\n  pathLen: 1\n",
		       "x.yaml:7:12: spec.pathLen: only a CA certificate has a path length (set isCA: true)");
	assert_problem("  dnsNames: [a.example.test]\n  output: {formats: [fullchain.pem]}\n",
		       "spec.output.formats[0]: \"fullchain.pem\" is not a format certsync writes");
	/* a certificate of IP addresses only is fine */
	cert_spec_free(one("  ipAddresses: [192.0.2.1]\n"));
	assert_problem("  usages: [server auth]\n",
		       "spec: at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required");
}

static void test_pasted_cert_manager_fields_get_a_hint(void **state)
{
	(void)state;
	assert_problem("  dnsNames: [a.example.test]\n  secretName: shop-www-tls\n",
		       "x.yaml:7:15: spec.secretName is cert-manager's field: certsync writes files, not Kubernetes "
		       "Secrets: name the directory under the output root with spec.output.directory (e.g. output: "
		       "{directory: shop-www-tls})");
	assert_problem("  dnsNames: [a.example.test]\n  issuerRef: {name: le, kind: ClusterIssuer}\n",
		       "spec.issuerRef is cert-manager's field: name a configured issuer with spec.issuer");
	assert_problem("  dnsNames: [a.example.test]\n  additionalOutputFormats: [{type: CombinedPEM}]\n",
		       "spec.additionalOutputFormats is cert-manager's field: write the extra files with "
		       "spec.output.formats");
}

/* ---------- the set index kept between revisions ---------- */

/* A spec from a small pool of names, directories (nested ones among them) and issuers, so collisions are common. */
static struct cert_spec *random_spec(unsigned *seed, size_t serial)
{
	static const char *const dirs[] = {"a", "a/b", "a/b/c", "b", "c/d", "c/e", "d/e/f", "d", "e", "f/g"};
	static const char *const issuers[] = {"ca", "ca", "ca", "ca", "ca", "ca", "internal", "nosuch"};
	char text[512], file[32];
	struct cert_spec **v = NULL, *s;
	struct diags d = DIAGS_INIT;
	size_t n = 0;
	int r = rand_r(seed);
	const char *dns = r % 29 == 0 ? "x.forbidden.test" : "x.example.test";

	/* names c0..c19; a directory from the pool, or the default (the name) */
	snprintf(text, sizeof(text),
		 "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: c%d}\nspec: {issuer: %s, "
		 "dnsNames: [%s]%s%s%s}\n",
		 rand_r(seed) % 20, issuers[rand_r(seed) % 8], dns, r % 3 ? ", output: {directory: " : "",
		 r % 3 ? dirs[rand_r(seed) % 10] : "", r % 3 ? "}" : "");
	snprintf(file, sizeof(file), "f%zu.yaml", serial);
	manifest_parse_file(file, text, strlen(text), &v, &n, &d);
	assert_int_equal(n, 1);
	assert_int_equal(d.n, 0);
	s = v[0];
	free(v);
	diags_free(&d);
	return s;
}

static int set_is_clean(struct cert_spec **v, size_t n)
{
	struct diags d = DIAGS_INIT;
	unsigned char *bad = xcalloc(n + 1, 1);
	int problems = manifest_check_set(v, n, &fake_ctx, bad, &d), clean = !problems && !d.n;

	diags_free(&d);
	free(bad);
	return clean;
}

/*
 * Thousands of revisions, each removing and adding a few specs: the index
 * says "clean" exactly when the full check over the whole new set finds
 * nothing, and a refused revision leaves it as it was.
 */
static void test_set_index_agrees_with_the_full_check_revision_after_revision(void **state)
{
	struct cert_spec **set = NULL, **all = NULL, **next;
	size_t n = 0, n_all = 0, cap_all = 0, serial = 0, cleans = 0, refusals = 0;
	struct manifest_set_index *idx;
	unsigned seed = 16;

	(void)state;
	idx = manifest_set_index_new(set, n);
	for (int round = 0; round < 4000; round++) {
		struct cert_spec *removed[3], *added[3];
		size_t n_r = n ? (size_t)(rand_r(&seed) % 3) : 0, n_a = (size_t)(rand_r(&seed) % 3), k = 0;
		int expect, got;

		if (n_r > n)
			n_r = n;
		/* removed: distinct specs of the set (a run of them from a random start) */
		for (size_t i = 0, at = n ? (size_t)rand_r(&seed) % n : 0; i < n_r; i++)
			removed[i] = set[(at + i) % n];
		for (size_t i = 0; i < n_a; i++) {
			added[i] = random_spec(&seed, serial++);
			util_grow(&all, &cap_all, n_all + 1, sizeof(*all));
			all[n_all++] = added[i];
		}
		next = xcalloc(n + n_a + 1, sizeof(*next));
		for (size_t i = 0; i < n; i++) {
			int gone = 0;

			for (size_t j = 0; j < n_r; j++)
				gone |= set[i] == removed[j];
			if (!gone)
				next[k++] = set[i];
		}
		for (size_t i = 0; i < n_a; i++)
			next[k++] = added[i];
		expect = set_is_clean(next, k);
		got = manifest_set_index_update(idx, removed, n_r, added, n_a, &fake_ctx);
		assert_int_equal(got, expect);
		if (got) {
			free(set);
			set = next;
			n = k;
			cleans++;
		} else {
			free(next);
			refusals++;
		}
	}
	/* both outcomes were exercised many times, and the set grew past its first few */
	assert_true(cleans > 500 && refusals > 500);
	manifest_set_index_free(idx);
	/* an index built at once from the final set agrees with the one kept through the revisions */
	idx = manifest_set_index_new(set, n);
	for (size_t i = 0; i < n; i++) {
		struct cert_spec *again = set[i];

		assert_int_equal(manifest_set_index_update(idx, NULL, 0, &again, 1, &fake_ctx), 0); /* its own twin */
	}
	manifest_set_index_free(idx);
	free(set);
	for (size_t i = 0; i < n_all; i++)
		cert_spec_free(all[i]);
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_bad_corpus_matches_expected_diagnostics),
		cmocka_unit_test(test_set_index_agrees_with_the_full_check_revision_after_revision),
		cmocka_unit_test(test_manifest_good_corpus_parses_cleanly),
		cmocka_unit_test(test_manifest_good_file_fields),
		cmocka_unit_test(test_spec_x509_fields_are_read_and_normalised),
		cmocka_unit_test(test_spec_x509_fields_move_the_hash_only_when_written),
		cmocka_unit_test(test_spec_x509_field_errors_name_the_place),
		cmocka_unit_test(test_pasted_cert_manager_fields_get_a_hint),
		cmocka_unit_test(test_yaml_positions_are_one_based_lines_and_columns),
		cmocka_unit_test(test_yaml_columns_count_characters_not_bytes),
		cmocka_unit_test(test_yaml_rejects_anchor),
		cmocka_unit_test(test_manifest_rejects_alias),
		cmocka_unit_test(test_yaml_rejects_tags_other_than_core),
		cmocka_unit_test(test_yaml_rejects_invalid_utf8_at_the_bad_byte),
		cmocka_unit_test(test_yaml_rejects_control_characters_and_nul),
		cmocka_unit_test(test_yaml_rejects_oversize_file),
		cmocka_unit_test(test_yaml_rejects_too_many_documents),
		cmocka_unit_test(test_yaml_limits_nesting_depth),
		cmocka_unit_test(test_yaml_deep_flow_is_refused_at_the_limit),
		cmocka_unit_test(test_yaml_refuses_non_string_keys),
		cmocka_unit_test(test_diag_format_escapes_control_characters),
		cmocka_unit_test(test_yaml_syntax_error_keeps_earlier_documents),
		cmocka_unit_test(test_yaml_bad_document_does_not_hide_the_next),
		cmocka_unit_test(test_yaml_empty_documents_have_no_root),
		cmocka_unit_test(test_yaml_syntax_errors_carry_hints),
		cmocka_unit_test(test_yaml_rejects_nul_escapes_in_strings),
		cmocka_unit_test(test_yaml_fast_reader_matches_libyaml_on_shapes),
		cmocka_unit_test(test_yaml_fast_reader_matches_libyaml_on_mutations),
		cmocka_unit_test(test_ynode_check_keys_suggests_close_names),
		cmocka_unit_test(test_ynode_check_keys_reports_duplicates_with_the_first_line),
		cmocka_unit_test(test_ynode_bool_accepts_yaml_1_2_core_spellings_only),
		cmocka_unit_test(test_ynode_string_rejects_maps_lists_and_null),
		cmocka_unit_test(test_ynode_int_checks_syntax_and_range),
		cmocka_unit_test(test_ynode_duration_reads_units_and_reports_the_value),
		cmocka_unit_test(test_ynode_expect_names_the_wrong_type),
		cmocka_unit_test(test_spec_defaults),
		cmocka_unit_test(test_spec_normalises_dns_names),
		cmocka_unit_test(test_spec_hash_ignores_name_order),
		cmocka_unit_test(test_spec_hash_ignores_cosmetic_fields),
		cmocka_unit_test(test_spec_hash_changes_with_every_identity_field),
		cmocka_unit_test(test_spec_hash_separates_fields),
		cmocka_unit_test(test_spec_key_sizes_follow_the_algorithm),
		cmocka_unit_test(test_spec_duration_and_renew_before_limits),
		cmocka_unit_test(test_spec_wildcards_only_as_the_leftmost_label),
		cmocka_unit_test(test_spec_limits_the_number_of_dns_names),
		cmocka_unit_test(test_spec_output_directory_is_cleaned),
		cmocka_unit_test(test_spec_labels_are_validated_and_sorted),
		cmocka_unit_test(test_spec_reports_every_problem_of_a_document),
		cmocka_unit_test(test_spec_other_kinds_are_errors_and_not_read_further),
		cmocka_unit_test(test_spec_required_fields),
		cmocka_unit_test(test_spec_document_with_an_error_yields_no_spec_but_others_do),
		cmocka_unit_test(test_manifest_check_dns_name_rules),
		cmocka_unit_test(test_manifest_check_relpath_rules),
		cmocka_unit_test(test_set_reports_duplicate_names_at_both_places),
		cmocka_unit_test(test_set_reports_shared_and_nested_output_directories),
		cmocka_unit_test(test_set_unknown_issuer_lists_configured_and_suggests),
		cmocka_unit_test(test_set_runs_the_issuer_check_for_known_issuers_only),
		cmocka_unit_test(test_manifest_parses_and_checks_10000_certificates_in_linear_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
