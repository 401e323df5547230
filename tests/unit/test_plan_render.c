/* Plan renderers (text, JSON, Markdown) against golden files; reading saved JSON plans back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../reconciler/plan/plan.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "testutil.h"

#define COMMIT "3f2a9c1b7e4d5a6b7c8d9e0f1a2b3c4d5e6f7a8b"
#define BASE "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"
#define LINEAGE "8c1e2f3a-5b6d-4e7f-8a9b-0c1d2e3f4a5b"

/* ---------- building plans by hand ---------- */

static struct plan *plan_base(int has_state)
{
	struct plan *p = xcalloc(1, sizeof(*p));

	p->repo = xstrdup("https://github.com/acme/certs.git");
	p->ref = xstrdup("main");
	p->commit = xstrdup(COMMIT);
	p->max_paid = 10;
	if (has_state) {
		p->has_state = 1;
		memcpy(p->lineage, LINEAGE, sizeof(LINEAGE));
		p->serial = 42;
	}
	return p;
}

/* Adds a change; steps is a comma-separated list (NULL for none). Counts are kept as plan_diff keeps them. */
static struct plan_change *add(struct plan *p, const char *name, enum change_kind kind, const char *code,
			       const char *reason, const char *issuer, const char *provider, const char *steps)
{
	struct plan_change *c;

	/* Doubling at powers of two: every change of a test plan is added here. */
	if (!(p->n_changes & (p->n_changes - 1)))
		p->changes = xrealloc(p->changes, (p->n_changes ? 2 * p->n_changes : 1) * sizeof(*p->changes));
	c = &p->changes[p->n_changes++];
	memset(c, 0, sizeof(*c));
	c->name = xstrdup(name);
	c->kind = kind;
	c->reason_code = xstrdup(code);
	c->reason = xstrdup(reason);
	c->issuer = xstrdup(issuer);
	c->provider = xstrdup(provider);
	for (const char *s = steps; s && *s;) {
		const char *e = strchr(s, ',');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		c->steps[c->n_steps++] = xstrndup(s, n);
		s += n + (e ? 1 : 0);
	}
	p->counts[kind]++;
	return c;
}

static void set_paid(struct plan *p, struct plan_change *c, const char *product, int deferred)
{
	c->paid = 1;
	c->product = xstrdup(product);
	c->deferred = deferred;
	if (deferred)
		p->deferred++;
	else
		p->paid++;
}

static void add_diff(struct plan_change *c, const char *field, const char *text)
{
	c->diffs = xrealloc(c->diffs, (c->n_diffs + 1) * sizeof(*c->diffs));
	c->diffs[c->n_diffs].field = xstrdup(field);
	c->diffs[c->n_diffs++].text = xstrdup(text);
}

static void add_label(struct plan_change *c, const char *key, const char *value)
{
	c->labels = xrealloc(c->labels, (c->n_labels + 1) * sizeof(*c->labels));
	c->labels[c->n_labels].key = xstrdup(key);
	c->labels[c->n_labels++].value = xstrdup(value);
}

static void set_file(struct plan_change *c, const char *file, int line)
{
	c->file = xstrdup(file);
	c->line = line;
}

/* Every change kind; one paid order within the cap and one beyond it. Added out of order on purpose. */
static struct plan *plan_every_kind(void)
{
	struct plan *p = plan_base(1);
	struct plan_change *c;

	p->max_paid = 1;
	p->counts[CHANGE_NONE] = 5;
	c = add(p, "wildcard", CHANGE_RENEW, "renewal_due", "expires in 12d (renewBefore 30d)", "internal", "ca",
		"issue,install");
	add_label(c, "team", "platform");
	add_label(c, "tier", "edge");
	set_file(c, "platform/wildcard.yaml", 4);
	c = add(p, "shop-www", CHANGE_REPLACE, "spec_changed", "names, key or validity changed", "dnsimple-prod",
		"dnsimple", "purchase,issue,download,install,retire");
	set_paid(p, c, "letsencrypt", 1);
	add_diff(c, "dnsNames", "+ api.example.com");
	add_diff(c, "dnsNames", "- old.example.com");
	add_diff(c, "privateKey", "ECDSA 256 → RSA 2048");
	add_label(c, "team", "web");
	set_file(c, "shop/www.yaml", 4);
	c = add(p, "api-new", CHANGE_CREATE, "new", "new certificate", "digicert", "digicert",
		"place-token,order,install,remove-token");
	set_paid(p, c, "ssl_dv_geotrust", 0);
	add_label(c, "team", "web");
	set_file(c, "shop/api.yaml", 4);
	c = add(p, "billing", CHANGE_RESUME, "pending", "create in progress: step order (2 failed attempts)",
		"digicert", "digicert", "order,install,remove-token");
	set_file(c, "shop/billing.yaml", 4);
	c = add(p, "docs", CHANGE_REINSTALL, "output_missing", "output files are missing", "internal", "ca", "install");
	set_file(c, "platform/docs.yaml", 4);
	add(p, "legacy", CHANGE_REMOVE, "not_in_manifests",
	    "not in the manifests (policy.prune): outputs deleted, record forgotten", "internal", "ca",
	    "release,delete-outputs,forget");
	add(p, "old-portal", CHANGE_ORPHAN, "not_in_manifests",
	    "not in the manifests; kept because policy.prune is off", "internal", NULL, NULL);
	plan_add_warning(p, "billing: digicert rate budget low: 12 requests left this hour");
	return p;
}

/* A revision with invalid manifests: the valid ones are still planned, apply would apply nothing. */
static struct plan *plan_errors(void)
{
	struct plan *p = plan_base(1);
	struct plan_change *c;

	p->counts[CHANGE_NONE] = 2;
	c = add(p, "api-new", CHANGE_CREATE, "new", "new certificate", "internal", "ca", "issue,install");
	set_file(c, "shop/api.yaml", 4);
	diags_add(&p->errors, "shop/bad.yaml", 9, 5, "unknown field \"dnsName\" in spec (did you mean \"dnsNames\"?)");
	diags_add(&p->errors, "shop/bad.yaml", 12, 0, "renewBefore: \"30 days\" is not a duration (like 720h or 30d)");
	diags_add(&p->errors, "platform/dup.yaml", 4, 9,
		  "duplicate certificate name \"docs\" (also in platform/docs.yaml:4:9)");
	diags_sort(&p->errors); /* as the manifest loader leaves them */
	plan_add_warning(p, "shop/legacy.yaml: kind Secret is not a certsync document; skipped");
	return p;
}

static struct plan *plan_no_changes(void)
{
	struct plan *p = plan_base(1);

	p->counts[CHANGE_NONE] = 12;
	return p;
}

/* A pull-request plan: two commits, no state, no credentials. */
static struct plan *plan_pr_no_state(void)
{
	struct plan *p = plan_base(0);
	struct plan_change *c;

	p->ref = (free(p->ref), xstrdup("feature/add-api"));
	p->base_commit = xstrdup(BASE);
	p->counts[CHANGE_NONE] = 3;
	c = add(p, "api-new", CHANGE_CREATE, "new", "new certificate", "digicert", "digicert",
		"place-token,order,install,remove-token");
	set_paid(p, c, "ssl_dv_geotrust", 0);
	set_file(c, "shop/api.yaml", 4);
	c = add(p, "shop-www", CHANGE_REPLACE, "spec_changed", "names, key or validity changed", "internal", "ca",
		"issue,install,retire");
	add_diff(c, "dnsNames", "+ *.pizza.company");
	add_diff(c, "renewBefore", "30d → 20d");
	set_file(c, "shop/www.yaml", 4);
	add(p, "legacy", CHANGE_REMOVE, "not_in_manifests",
	    "not in the manifests (policy.prune): outputs deleted, record forgotten", "internal", "ca",
	    "release,delete-outputs,forget");
	return p;
}

static const struct {
	const char *name;
	struct plan *(*make)(void);
} plans[] = {
	{"every-kind", plan_every_kind},
	{"errors", plan_errors},
	{"no-changes", plan_no_changes},
	{"pr-no-state", plan_pr_no_state},
};
#define N_PLANS (sizeof(plans) / sizeof(plans[0]))

static char *render(const struct plan *p, const char *format, int flags)
{
	struct buf b = BUF_INIT;
	int rc;

	if (!strcmp(format, "json"))
		rc = plan_render_json(p, &b);
	else if (!strcmp(format, "md"))
		rc = plan_render_markdown(p, &b);
	else
		rc = plan_render_text(p, flags, &b);
	assert_int_equal(rc, 0);
	return buf_detach(&b);
}

/* Replaces the first occurrence of from (which must be there) by to. */
static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);

	assert_non_null(at);
	return xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
}

/* ---------- golden files ---------- */

static void test_plan_render_matches_golden_files(void **state)
{
	static const struct {
		const char *suffix, *format;
		int flags;
	} formats[] = {
		{"txt", "text", 0},
		{"ascii.txt", "text", PLAN_TEXT_ASCII},
		{"json", "json", 0},
		{"md", "md", 0},
	};

	(void)state;
	for (size_t i = 0; i < N_PLANS; i++) {
		struct plan *p = plans[i].make();

		for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
			char *out = render(p, formats[f].format, formats[f].flags);
			char *rel = xasprintf("tests/golden/plan/%s.%s", plans[i].name, formats[f].suffix);

			test_golden(rel, out, strlen(out));
			free(rel);
			free(out);
		}
		plan_free(p);
	}
}

/* ---------- text ---------- */

/* Removes ANSI SGR sequences (ESC [ ... m) in place. */
static void strip_ansi(char *s)
{
	char *w = s;

	for (const char *r = s; *r;) {
		if (r[0] == '\033' && r[1] == '[') {
			r = strchr(r, 'm') + 1;
			continue;
		}
		*w++ = *r++;
	}
	*w = '\0';
}

static void test_plan_text_has_no_escape_codes_without_color(void **state)
{
	struct plan *p = plan_every_kind();
	char *out, *plain;

	(void)state;
	/* A provider message that tries to colour (or clear) the terminal. */
	plan_add_warning(p, "refresh: \033[2J\033[31mboom\xc2\x9b"
			    "1m");
	for (int flags = 0; flags <= PLAN_TEXT_ASCII; flags += PLAN_TEXT_ASCII) {
		out = render(p, "text", flags);
		assert_null(memchr(out, '\033', strlen(out)));
		assert_null(strstr(out, "\xc2\x9b")); /* the C1 CSI either */
		assert_non_null(strstr(out, "warning: refresh: \\x1b[2J\\x1b[31mboom\\u009b1m\n"));
		free(out);
	}
	out = render(p, "text", PLAN_TEXT_COLOR);
	assert_non_null(strstr(out, "\033[32m+\033[0m \033[1mapi-new\033[0m"));
	assert_non_null(strstr(out, "\033[33m↻\033[0m \033[1mwildcard\033[0m"));
	assert_non_null(strstr(out, "\033[31m-\033[0m \033[1mlegacy\033[0m"));
	assert_non_null(strstr(out, "\033[36m!\033[0m \033[1mdocs\033[0m"));
	assert_non_null(strstr(out, "\\x1b[2J")); /* user text stays escaped even in colour */
	/* Colour changes the bytes, not the layout: the same text once the codes are gone. */
	plain = render(p, "text", 0);
	strip_ansi(out);
	assert_string_equal(out, plain);
	free(plain);
	free(out);
	plan_free(p);
}

static void test_plan_text_ascii_mode_is_pure_ascii(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_PLANS; i++) {
		struct plan *p = plans[i].make();
		char *out = render(p, "text", PLAN_TEXT_ASCII);

		for (const unsigned char *u = (const unsigned char *)out; *u; u++)
			assert_true(*u < 0x80);
		free(out);
		plan_free(p);
	}
}

static void test_plan_text_summary_counts_paid_and_deferred(void **state)
{
	struct plan *p = plan_every_kind();
	char *out = render(p, "text", 0);

	(void)state;
	assert_non_null(strstr(out, "\nPlan: 1 to create, 1 to replace, 1 to renew, 1 to resume, 1 to reinstall, "
				    "1 to remove; 1 orphaned; 1 paid order (limit 1), 1 deferred to a later apply.\n"));
	assert_non_null(strstr(out, " [paid: letsencrypt: " PLAN_PAID_ACTION "] [deferred: over policy.maxPaidOrders]\n"));
	free(out);
	plan_free(p);
	p = plan_no_changes();
	out = render(p, "text", 0);
	assert_non_null(strstr(out, "\nNo changes. Certificates match the manifests (12 unchanged).\n"));
	free(out);
	plan_free(p);
}

/* ---------- JSON ---------- */

static void test_plan_json_round_trips_byte_for_byte(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_PLANS; i++) {
		struct plan *p = plans[i].make(), *q = NULL;
		char *a = render(p, "json", 0), *b;

		assert_int_equal(plan_from_json(a, strlen(a), "plan.json", &q), 0);
		b = render(q, "json", 0);
		assert_string_equal(a, b);
		/* What the other formats show survives too. */
		free(a);
		free(b);
		a = render(p, "md", 0);
		b = render(q, "md", 0);
		assert_string_equal(a, b);
		free(a);
		free(b);
		assert_int_equal(plan_has_changes(p), plan_has_changes(q));
		assert_int_equal(q->paid, p->paid);
		assert_int_equal(q->deferred, p->deferred);
		for (int k = 0; k < CHANGE__MAX; k++)
			assert_int_equal(q->counts[k], p->counts[k]);
		plan_free(p);
		plan_free(q);
	}
}

static void test_plan_json_sorts_changes_by_name(void **state)
{
	struct plan *p = plan_every_kind();
	char *out = render(p, "json", 0);
	const char *names[] = {"api-new", "billing", "docs", "legacy", "old-portal", "shop-www", "wildcard"};
	const char *at = out;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *key = xasprintf("\"name\": \"%s\"", names[i]);
		const char *next = strstr(at, key);

		assert_non_null(next);
		at = next;
		free(key);
	}
	free(out);
	plan_free(p);
}

static void test_plan_json_bounded_output_fails_cleanly(void **state)
{
	struct plan *p = plan_every_kind();
	struct buf b;

	(void)state;
	buf_init(&b, 100);
	assert_int_equal(plan_render_json(p, &b), CS_EINVALID);
	assert_int_equal(b.len, 0); /* nothing half-written */
	assert_int_equal(plan_render_markdown(p, &b), CS_EINVALID);
	assert_int_equal(plan_render_text(p, 0, &b), CS_EINVALID);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	plan_free(p);
}

/* Expects plan_from_json to refuse text with exactly msg (or, when prefix, a message starting with it). */
static void expect_refused(const char *text, const char *msg, int prefix)
{
	struct plan *q = (struct plan *)(uintptr_t)1; /* must stay untouched */

	assert_int_equal(plan_from_json(text, strlen(text), "plan.json", &q), CS_EINVALID);
	assert_ptr_equal(q, (struct plan *)(uintptr_t)1);
	if (prefix) {
		if (strncmp(cs_errmsg(), msg, strlen(msg)))
			fail_msg("got \"%s\", want a message starting with \"%s\"", cs_errmsg(), msg);
	} else {
		assert_string_equal(cs_errmsg(), msg);
	}
}

static void test_plan_from_json_rejects_bad_plans(void **state)
{
	static const struct {
		const char *from, *to, *msg;
	} cases[] = {
		{"\"format_version\": \"1.2\"", "\"format_version\": \"2.0\"",
		 "plan.json: plan format 2.0 is not supported (this certsync reads 1.x)"},
		{"\"format_version\": \"1.2\"", "\"format_version\": 1",
		 "plan.json: format_version: expected a string, got an integer"},
		{"\"format_version\": \"1.2\"", "\"format_version\": \"one\"",
		 "plan.json: format_version: expected a version such as \"1.0\", got \"one\""},
		{"\"action\": \"create\"", "\"action\": \"grow\"",
		 "plan.json: changes[0].action: unknown action \"grow\""},
		{"\"action\": \"create\"", "\"action\": \"none\"",
		 "plan.json: changes[0].action: \"none\" is not a change"},
		{"\"paid\": true,\n", "", "plan.json: changes[0].paid: required field is missing"},
		{"\"name\": \"billing\",\n", "", "plan.json: changes[1].name: required field is missing"},
		{"\"name\": \"billing\"", "\"name\": \"\"", "plan.json: changes[1].name: must not be empty"},
		{"\"name\": \"billing\"", "\"name\": \"api-new\"",
		 "plan.json: changes: certificate \"api-new\" appears twice"},
		{"\"serial\": 42", "\"serial\": \"42\"", "plan.json: state.serial: expected an integer, got a string"},
		{"\"serial\": 42", "\"serial\": -1",
		 "plan.json: state.serial: -1 is out of range (0 to 9223372036854775807)"},
		{"\"lineage\": \"" LINEAGE "\"", "\"lineage\": \"" LINEAGE "-and-more\"",
		 "plan.json: state.lineage: \"" LINEAGE "-and-more\" is not a lineage id"},
		{"\"deferred\": true", "\"deferred\": \"yes\"",
		 "plan.json: changes[5].deferred: expected a boolean, got a string"},
		{"\"steps\": [\n        \"issue\"", "\"steps\": [\n        7",
		 "plan.json: changes[6].steps[0]: expected a string, got an integer"},
		{"\"labels\": {\n        \"team\": \"platform\"", "\"labels\": {\n        \"team\": 1",
		 "plan.json: changes[6].labels.team: expected a string, got an integer"},
		{"\"field\": \"dnsNames\"", "\"field\": null",
		 "plan.json: changes[5].diffs[0].field: expected a string, got null"},
		{"\"line\": 4", "\"line\": 4.5",
		 "plan.json: changes[0].line: expected an integer, got a number with a fraction"},
		{"\"create\": 1", "\"create\": 2",
		 "plan.json: summary.create: 2 does not match the 1 create changes listed"},
		{"\"has_changes\": true", "\"has_changes\": false",
		 "plan.json: summary.has_changes: false does not match the changes listed"},
		{"\"warnings\": [\n    \"billing: digicert rate budget low: 12 requests left this hour\"\n  ]",
		 "\"warnings\": {}", "plan.json: warnings: expected an array, got an object"},
		{"\"state\": {", "\"nostate\": {",
		 "plan.json: state: required field is missing (null when the plan was made without state)"},
	};
	struct plan *p = plan_every_kind();
	char *good = render(p, "json", 0);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *bad = replace(good, cases[i].from, cases[i].to);

		expect_refused(bad, cases[i].msg, 0);
		free(bad);
	}
	free(good);
	plan_free(p);
}

static void test_plan_from_json_rejects_broken_json_with_position(void **state)
{
	struct buf big = BUF_INIT;

	(void)state;
	expect_refused("{\n  \"format_version\": \"1.0\",\n  oops\n}\n", "plan.json:3:", 1);
	expect_refused("{\"a\": 1, \"a\": 2}", "plan.json:", 1); /* duplicate keys */
	expect_refused("[1, 2]", "plan.json: expected a JSON object, got an array", 0);
	expect_refused("", "plan.json:", 1);
	/* Past the 16 MiB cap: refused before parsing. */
	while (big.len <= 16u * 1024 * 1024)
		buf_append(&big, "                                                                ", 64);
	expect_refused(big.data, "plan.json: the plan is 16777280 bytes, larger than the 16 MiB a plan may be", 0);
	buf_free(&big);
}

static void test_plan_from_json_refuses_every_truncation(void **state)
{
	struct plan *p = plan_every_kind(), *q = NULL;
	char *good = render(p, "json", 0);
	size_t len = strlen(good);

	(void)state;
	/* A plan cut short anywhere (a full disk, a killed copy) is refused, never half-read. */
	for (size_t n = 0; n + 1 < len; n++)
		assert_int_equal(plan_from_json(good, n, "plan.json", &q), CS_EINVALID);
	assert_null(q);
	assert_int_equal(plan_from_json(good, len, "plan.json", &q), 0);
	plan_free(q);
	free(good);
	plan_free(p);
}

static void test_plan_from_json_ignores_unknown_keys_and_reads_1x(void **state)
{
	struct plan *p = plan_pr_no_state(), *q = NULL;
	char *good = render(p, "json", 0), *t1, *t2, *t3, *again;

	(void)state;
	t1 = replace(good, "\"format_version\": \"1.2\"", "\"format_version\": \"1.7\",\n  \"future\": {\"x\": [1, 2]}");
	t2 = replace(t1, "\"action\": \"create\"", "\"action\": \"create\",\n      \"action_detail\": 3");
	t3 = replace(t2, "\"has_changes\"", "\"cost_estimate\": 12.5,\n    \"has_changes\"");
	assert_int_equal(plan_from_json(t3, strlen(t3), "plan.json", &q), 0);
	again = render(q, "json", 0);
	assert_string_equal(again, good); /* written back as 1.2, the unknown keys dropped */
	free(t1);
	free(t2);
	free(t3);
	free(again);
	free(good);
	plan_free(p);
	plan_free(q);
}

/* Renders n changes (added in reverse order) as JSON, reads them back, renders again: milliseconds taken. */
static int64_t json_round_trip_ms(int n)
{
	struct plan *p = plan_base(1), *q = NULL;
	char name[32], *a, *b, *first;
	int64_t t0;

	for (int i = n - 1; i >= 0; i--) {
		struct plan_change *c;

		snprintf(name, sizeof(name), "cert-%05d", i);
		c = add(p, name, CHANGE_CREATE, "new", "new certificate", "internal", "ca", "issue,install");
		add_diff(c, "dnsNames", "+ a.example.com");
		add_label(c, "team", "web");
		set_file(c, "certs/x.yaml", i + 1);
	}
	t0 = util_mono_ms();
	a = render(p, "json", 0);
	assert_int_equal(plan_from_json(a, strlen(a), "plan.json", &q), 0);
	b = render(q, "json", 0);
	t0 = util_mono_ms() - t0;
	assert_int_equal(q->n_changes, (size_t)n);
	assert_string_equal(q->changes[0].name, "cert-00000");
	first = strstr(a, "\"name\": ");
	assert_non_null(first);
	assert_int_equal(strncmp(first, "\"name\": \"cert-00000\",", 21), 0); /* sorted on output */
	assert_string_equal(a, b);
	free(a);
	free(b);
	plan_free(p);
	plan_free(q);
	return t0;
}

static void test_plan_json_handles_ten_thousand_changes(void **state)
{
	int64_t small, big;

	(void)state;
	small = json_round_trip_ms(1000);
	big = json_round_trip_ms(10000);
	/*
	 * Linear: ten times the changes, about ten times the time. The bound is
	 * loose (30x plus slack) so that sanitizers, valgrind and a busy machine
	 * pass; quadratic work would take 100x.
	 */
	if (big > 30 * small + 300)
		fail_msg("10,000 changes took %lld ms, 1,000 took %lld ms: not linear", (long long)big,
			 (long long)small);
}

/* ---------- Markdown ---------- */

static void test_plan_markdown_escapes_user_text(void **state)
{
	struct plan *p = plan_base(1);
	struct plan_change *c;
	char *out;
	size_t rows = 0;

	(void)state;
	c = add(p, "<script>alert(1)</script>", CHANGE_CREATE, "new",
		"`rm -rf /` | <img src=x onerror=alert(1)> ping @admin, see [here](https://evil.example) **now**\nnext",
		"internal", "ca", "issue,install");
	add_diff(c, "dnsNames|x", "+ *.example.com </code><b>");
	diags_add(&p->errors, "shop/<b>bad</b>.yaml", 3, 1, "value \"a|b\" has a `backtick` and <i>tags</i>");
	plan_add_warning(p, "</details><script>x</script>");
	out = render(p, "md", 0);
	assert_null(strstr(out, "<script"));
	assert_null(strstr(out, "<img"));
	assert_null(strstr(out, "<b>"));
	assert_null(strstr(out, "<i>"));
	assert_null(strstr(out, "`"));
	assert_null(strstr(out, "@admin"));
	assert_null(strstr(out, "[here]"));
	assert_null(strstr(out, "**now**"));
	assert_int_equal(strstr(out, "</details>") - out, strstr(out, "\n</details>\n") - out + 1); /* only ours */
	assert_non_null(strstr(out, "<code>+ &lt;script&gt;alert(1)&lt;/script&gt;</code> create — "
				    "&#96;rm -rf /&#96; &#124; &lt;img src=x onerror=alert(1)&gt;"));
	assert_non_null(strstr(out, "&#93;(https://evil.example) &#42;&#42;now&#42;&#42; next</summary>"));
	/* Every error-table row still has exactly its three cell borders. */
	for (char *line = strstr(out, "| Location |"); line; line = strchr(line + 1, '\n')) {
		size_t bars = 0;

		if (line[0] == '\n')
			line++;
		if (line[0] != '|')
			break;
		for (char *s = line; *s && *s != '\n'; s++)
			bars += *s == '|';
		assert_int_equal(bars, 3);
		rows++;
	}
	assert_int_equal(rows, 3); /* header, rule, one error */
	free(out);
	plan_free(p);
}

static void test_plan_markdown_truncates_under_comment_limit(void **state)
{
	struct plan *p = plan_base(1);
	char name[32], *out, *again;

	(void)state;
	for (int i = 0; i < 5000; i++) {
		struct plan_change *c;

		snprintf(name, sizeof(name), "cert-%05d", i);
		c = add(p, name, CHANGE_CREATE, "new", "new certificate", "digicert", "digicert",
			"place-token,order,install,remove-token");
		set_paid(p, c, "ssl_dv_geotrust", i >= 10);
		add_diff(c, "dnsNames", "+ a.example.com");
		set_file(c, "certs/many.yaml", i * 20 + 4);
	}
	diags_add(&p->errors, "certs/bad.yaml", 1, 1, "not a Certificate");
	for (int i = 0; i < 2000; i++)
		plan_add_warning(p, "cert-%05d: something worth knowing about this certificate", i);
	out = render(p, "md", 0);
	assert_true(strlen(out) < 65536);
	assert_true(strlen(out) > 50000); /* it used the room it had */
	assert_non_null(strstr(out, " more changes not shown (see the JSON plan)\n"));
	assert_non_null(strstr(out, " more warnings not shown\n"));
	/* The verdict, the counts and the errors survive truncation. */
	assert_non_null(strstr(out, "<!-- certsync-plan -->\n**certsync plan: errors**: 1 problem in 1 manifest"));
	assert_non_null(strstr(out, "| <code>+</code> create | 5000 |\n"));
	assert_non_null(strstr(out, "| certs/bad.yaml:1:1 | not a Certificate |\n"));
	assert_non_null(strstr(out, "<code>+ cert-00000</code>"));
	/* Stable byte for byte, so a bot can edit its comment in place. */
	again = render(p, "md", 0);
	assert_string_equal(out, again);
	free(again);
	free(out);
	plan_free(p);
}

static void test_plan_markdown_verdicts(void **state)
{
	struct plan *p;
	char *out;

	(void)state;
	p = plan_pr_no_state();
	out = render(p, "md", 0);
	assert_non_null(strstr(out,
			       "<!-- certsync-plan -->\n**certsync plan**: 1 to create, 1 to replace, 1 to remove, "
			       "1 paid order\n"));
	assert_non_null(strstr(out, "- **Source**: <code>https://github.com/acme/certs.git@feature/add-api</code> "
				    "(sha1:3f2a9c1b7e4d), merge base sha1:0b1c2d3e4f5a"));
	free(out);
	plan_free(p);
	p = plan_no_changes();
	out = render(p, "md", 0);
	assert_non_null(strstr(out, "<!-- certsync-plan -->\n**certsync plan**: No changes\n"));
	free(out);
	plan_free(p);
}

/* ---------- the rest of the contract ---------- */

static void test_plan_has_changes_ignores_orphans_and_errors(void **state)
{
	struct plan *p;

	(void)state;
	assert_false(plan_has_changes(NULL));
	p = plan_no_changes();
	assert_false(plan_has_changes(p));
	add(p, "old", CHANGE_ORPHAN, "not_in_manifests", "kept", "internal", NULL, NULL);
	assert_false(plan_has_changes(p)); /* reported, but nothing is done */
	add(p, "new", CHANGE_CREATE, "new", "new certificate", "internal", "ca", "issue");
	assert_true(plan_has_changes(p));
	diags_add(&p->errors, "x.yaml", 1, 1, "bad");
	assert_false(plan_has_changes(p)); /* apply applies nothing from a revision with errors */
	plan_free(p);
	p = plan_every_kind();
	assert_true(plan_has_changes(p));
	plan_free(p);
	plan_free(NULL);
}

static void test_plan_change_names_round_trip(void **state)
{
	enum change_kind k;

	(void)state;
	for (int i = 0; i < CHANGE__MAX; i++) {
		assert_int_equal(plan_change_parse(plan_change_name((enum change_kind)i), &k), 0);
		assert_int_equal(k, i);
	}
	assert_string_equal(plan_change_name(CHANGE_RENEW), "renew");
	assert_string_equal(plan_change_name(CHANGE__MAX), "unknown");
	k = CHANGE_CREATE;
	assert_int_equal(plan_change_parse("Create", &k), CS_EINVALID);
	assert_int_equal(k, CHANGE_CREATE);
	assert_int_equal(plan_change_parse(NULL, &k), CS_EINVALID);
}

static void test_plan_renderers_replace_invalid_utf8(void **state)
{
	struct plan *p = plan_base(1), *q = NULL;
	char *json, *text;

	(void)state;
	add(p, "bad-bytes", CHANGE_RENEW, "renewal_due", "provider said \xff\xfe \xe2\x82 ok", "internal", "ca",
	    "issue");
	json = render(p, "json", 0);
	assert_non_null(
		strstr(json, "\"reason\": \"provider said \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd ok\""));
	assert_int_equal(plan_from_json(json, strlen(json), "plan.json", &q), 0);
	text = render(p, "text", 0);
	assert_non_null(strstr(text, "provider said \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd ok"));
	free(json);
	free(text);
	plan_free(p);
	plan_free(q);
}

/* Account actions are rendered in every format, after the changes, and kept by a saved plan. */
static void test_plan_account_actions_in_every_format(void **state)
{
	struct plan *p = plan_every_kind(), *q = NULL;
	const char *line = "issuer dc: create an AuthKey for the DigiCert account (once, if the account has none)";
	char *text, *json, *md, *gh, *again;
	struct buf b = BUF_INIT;

	(void)state;
	plan_add_account_action(p, "%s", line);
	text = render(p, "text", PLAN_TEXT_ASCII);
	assert_non_null(strstr(text, "Account actions:\n  + issuer dc: create an AuthKey"));
	json = render(p, "json", 0);
	assert_non_null(strstr(json, "\"account_actions\": [\n    \"issuer dc: create an AuthKey"));
	md = render(p, "md", 0);
	assert_non_null(strstr(md, "### Account actions\n\n- issuer dc: create an AuthKey"));
	assert_int_equal(plan_render_github(p, &b), 0);
	gh = buf_detach(&b);
	assert_non_null(strstr(gh, "::notice title=certsync::issuer dc: create an AuthKey"));
	assert_int_equal(plan_from_json(json, strlen(json), "plan.json", &q), 0);
	assert_int_equal(q->n_account_actions, 1);
	assert_string_equal(q->account_actions[0], line);
	again = render(q, "json", 0);
	assert_string_equal(again, json);
	free(text);
	free(json);
	free(md);
	free(gh);
	free(again);
	plan_free(p);
	plan_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_render_matches_golden_files),
		cmocka_unit_test(test_plan_text_has_no_escape_codes_without_color),
		cmocka_unit_test(test_plan_text_ascii_mode_is_pure_ascii),
		cmocka_unit_test(test_plan_text_summary_counts_paid_and_deferred),
		cmocka_unit_test(test_plan_json_round_trips_byte_for_byte),
		cmocka_unit_test(test_plan_json_sorts_changes_by_name),
		cmocka_unit_test(test_plan_json_bounded_output_fails_cleanly),
		cmocka_unit_test(test_plan_from_json_rejects_bad_plans),
		cmocka_unit_test(test_plan_from_json_rejects_broken_json_with_position),
		cmocka_unit_test(test_plan_from_json_refuses_every_truncation),
		cmocka_unit_test(test_plan_from_json_ignores_unknown_keys_and_reads_1x),
		cmocka_unit_test(test_plan_json_handles_ten_thousand_changes),
		cmocka_unit_test(test_plan_markdown_escapes_user_text),
		cmocka_unit_test(test_plan_markdown_truncates_under_comment_limit),
		cmocka_unit_test(test_plan_markdown_verdicts),
		cmocka_unit_test(test_plan_has_changes_ignores_orphans_and_errors),
		cmocka_unit_test(test_plan_change_names_round_trip),
		cmocka_unit_test(test_plan_renderers_replace_invalid_utf8),
		cmocka_unit_test(test_plan_account_actions_in_every_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
