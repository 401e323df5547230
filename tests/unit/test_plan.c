/* The diff: every change kind, the paid cap, purity, order; golden plans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../manifests/manifest.h"
#include "../../reconciler/plan/plan.h"
#include "../../state/state.h"
#include "../../util/buf.h"
#include "../../util/util.h"
#include "testutil.h"

#define NOW INT64_C(1800000000) /* 2027-01-15T08:00:00Z: fixed, so goldens never move */
#define DAY 86400

struct fixture {
	struct cert_spec **specs;
	size_t n;
	struct state *st;
	enum output_status outputs[8192];
	struct plan_input in;
};

static int fake_steps(void *arg, const char *issuer, enum change_kind kind, const struct cert_spec *spec,
		      const struct state_cert *rec, const char **provider, struct plan_steps *out)
{
	(void)arg;
	(void)kind;
	(void)spec;
	(void)rec;
	memset(out, 0, sizeof(*out));
	if (issuer && !strcmp(issuer, "paid")) {
		*provider = "digicert";
		out->steps[out->n++] = "place-token";
		out->steps[out->n++] = "order";
		out->steps[out->n++] = "install";
		out->paid = 1;
		out->product = "ssl_dv_geotrust";
		return 0;
	}
	if (issuer && !strcmp(issuer, "le")) {
		*provider = "acme";
		out->steps[out->n++] = "order";
		out->steps[out->n++] = "install";
		/* A careless driver quoting a credential: the plan must still never show it. */
		snprintf(out->detail, sizeof(out->detail), "%s: http-01 serve%s", spec->dns_names[0],
			 spec->n_dns > 1 ? " (Bearer s3cr3t-t0ken-value)" : "");
		return 0;
	}
	*provider = "ca";
	out->steps[out->n++] = "issue";
	out->steps[out->n++] = "install";
	return 0;
}

/* Parses one manifest document for name with the given issuer, names and extra spec lines. */
static struct cert_spec *spec(const char *name, const char *issuer, const char *names, const char *extra)
{
	char *yaml =
		xasprintf("apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n  name: %s\n  labels: {team: web}\n"
			  "spec:\n  issuer: %s\n  dnsNames: [%s]\n%s",
			  name, issuer, names, extra ? extra : "");
	struct diags d = DIAGS_INIT;
	struct cert_spec **v = NULL, *s;
	size_t n = 0;
	char *file = xasprintf("certs/%s.yaml", name);

	manifest_parse_file(file, yaml, strlen(yaml), &v, &n, &d);
	if (d.n)
		diags_print(&d, stderr);
	assert_int_equal(d.n, 0);
	assert_int_equal(n, 1);
	s = v[0];
	free(v);
	free(yaml);
	free(file);
	diags_free(&d);
	return s;
}

static void add_spec(struct fixture *f, struct cert_spec *s)
{
	f->specs = xrealloc(f->specs, (f->n + 1) * sizeof(*f->specs));
	f->specs[f->n++] = s;
}

/* A record that is in sync with s: installed 10 days ago, 90-day lifetime. */
static struct state_cert *record(struct fixture *f, const struct cert_spec *s)
{
	struct state_cert *r = state_cert_put(f->st, s->name);

	state_str_set(&r->issuer, s->issuer);
	state_str_set(&r->provider, "ca");
	state_str_set(&r->spec_hash, s->hash);
	state_str_set(&r->output_dir, s->output_dir);
	state_str_set(&r->out_generation, ".x.000000000000");
	r->phase = PHASE_READY;
	r->not_before = NOW - 10 * DAY;
	r->not_after = NOW + 80 * DAY;
	return r;
}

static struct state_cert *orphan_record(struct fixture *f, const char *name)
{
	struct state_cert *r = state_cert_put(f->st, name);

	state_str_set(&r->issuer, "internal");
	state_str_set(&r->provider, "ca");
	state_str_set(&r->spec_hash, "00");
	state_str_set(&r->output_dir, name);
	r->phase = PHASE_READY;
	r->not_before = NOW - 10 * DAY;
	r->not_after = NOW + 80 * DAY;
	return r;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->st = state_new();
	memcpy(f->st->lineage, "11111111-2222-4333-8444-555555555555", 37);
	f->st->serial = 7;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < f->n; i++)
		cert_spec_free(f->specs[i]);
	free(f->specs);
	state_free(f->st);
	free(f);
	return 0;
}

static struct state_cert **recorded_list;

/* Runs the diff over the fixture (outputs[] indexes follow state_cert_list order). */
static struct plan *diff(struct fixture *f, int prune, int max_paid, int retry)
{
	struct plan *p = NULL;
	size_t n_rec = 0;

	free(recorded_list);
	recorded_list = state_cert_list(f->st, &n_rec);
	memset(&f->in, 0, sizeof(f->in));
	f->in.desired = f->specs;
	f->in.n_desired = f->n;
	f->in.state = f->st;
	f->in.recorded = recorded_list;
	f->in.n_recorded = n_rec;
	f->in.outputs = f->outputs;
	f->in.now = NOW;
	f->in.prune = prune;
	f->in.max_paid = max_paid;
	f->in.retry_failed = retry;
	f->in.steps_fn = fake_steps;
	f->in.repo = "/srv/certs.git";
	f->in.ref = "main";
	f->in.commit = "0123456789abcdef0123456789abcdef01234567";
	assert_int_equal(plan_diff(&f->in, &p), 0);
	return p;
}

static const struct plan_change *find(const struct plan *p, const char *name)
{
	for (size_t i = 0; i < p->n_changes; i++)
		if (!strcmp(p->changes[i].name, name))
			return &p->changes[i];
	return NULL;
}

static void test_plan_creates_new_certificate(void **state)
{
	struct fixture *f = *state;
	struct plan *p;
	const struct plan_change *c;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	c = find(p, "www");
	assert_non_null(c);
	assert_int_equal(c->kind, CHANGE_CREATE);
	assert_string_equal(c->reason_code, "new");
	assert_int_equal(c->n_steps, 2);
	assert_string_equal(c->steps[0], "issue");
	assert_string_equal(c->provider, "ca");
	assert_int_equal(p->counts[CHANGE_CREATE], 1);
	assert_true(plan_has_changes(p));
	plan_free(p);
}

static void test_plan_in_sync_is_no_change(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	record(f, f->specs[0]);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	assert_int_equal(p->counts[CHANGE_NONE], 1);
	assert_false(plan_has_changes(p));
	plan_free(p);
}

static void test_plan_replaces_when_names_change(void **state)
{
	struct fixture *f = *state;
	struct cert_spec *old = spec("www", "internal", "www.example.com", NULL);
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com, api.example.com", NULL));
	record(f, old);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->changes[0].kind, CHANGE_REPLACE);
	assert_string_equal(p->changes[0].reason_code, "spec_changed");
	cert_spec_free(old);
	plan_free(p);
}

static void test_plan_cosmetic_edit_is_no_change(void **state)
{
	struct fixture *f = *state;
	struct cert_spec *old = spec("www", "internal", "b.example.com, a.example.com", "  renewBefore: 720h\n");
	struct plan *p;

	add_spec(f, spec("www", "internal", "A.example.com, b.example.com.", "  renewBefore: 30d\n"));
	record(f, old);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	cert_spec_free(old);
	plan_free(p);
}

static void test_plan_replaces_when_issuer_changes(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "other", "www.example.com", NULL));
	state_str_set(&record(f, f->specs[0])->issuer, "internal");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_REPLACE);
	assert_string_equal(p->changes[0].reason_code, "issuer_changed");
	plan_free(p);
}

static void test_plan_renews_inside_window(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", "  renewBefore: 90d\n"));
	record(f, f->specs[0]); /* expires in 80d < 90d */
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_RENEW);
	assert_string_equal(p->changes[0].reason_code, "renewal_due");
	assert_string_equal(p->changes[0].reason, "expires in 80d (renewBefore 90d)");
	plan_free(p);
}

/*
 * A renewBefore of the whole lifetime or more renews once per setting: the
 * certificate issued under it renews at a third of its lifetime, else every
 * pass of run would buy another one that is due at once.
 */
static void test_plan_whole_lifetime_renew_before_renews_once(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", "  renewBefore: 2200h\n"));
	r = record(f, f->specs[0]); /* a 90-day lifetime: 2160h */
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->changes[0].kind, CHANGE_RENEW);
	assert_int_equal(p->n_warnings, 1);
	assert_non_null(strstr(p->warnings[0], "renewed once now, then at a third of its lifetime"));
	plan_free(p);
	/* the certificate that renewal installed was issued under renewBefore 2200h */
	plan_note_renew_before(r, f->specs[0]);
	r->not_before = NOW - 60;
	r->not_after = NOW + 90 * DAY - 60;
	assert_true(plan_renewal_time(f->specs[0], r) == r->not_after - 30 * DAY);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	assert_int_equal(p->n_warnings, 1);
	assert_non_null(strstr(p->warnings[0], "renews at a third of its lifetime (lower renewBefore)"));
	plan_free(p);
	/* another whole-lifetime setting is a new request: renewed once more */
	cert_spec_free(f->specs[0]);
	f->specs[0] = spec("www", "internal", "www.example.com", "  renewBefore: 2300h\n");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->changes[0].kind, CHANGE_RENEW);
	plan_free(p);
}

/* Records a CA-suggested window (ARI) for r's installed certificate, as the ACME driver does. */
static void ari(struct state_cert *r, int64_t start, int64_t end, int64_t at)
{
	char v[32];

	state_str_set(&r->serial, "0a1b2c");
	state_str_set(&r->fingerprint, "ff00");
	state_cert_set_id(r, PLAN_ID_ARI_SERIAL, "0a1b2c");
	snprintf(v, sizeof(v), "%lld", (long long)start);
	state_cert_set_id(r, PLAN_ID_ARI_START, v);
	snprintf(v, sizeof(v), "%lld", (long long)end);
	state_cert_set_id(r, PLAN_ID_ARI_END, v);
	snprintf(v, sizeof(v), "%lld", (long long)at);
	state_cert_set_id(r, PLAN_ID_ARI_AT, v);
}

static void test_plan_renews_at_the_point_chosen_in_the_ari_window(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]); /* 80 days left of 90: the ⅓ point is 50 days away */
	assert_true(plan_renewal_time(f->specs[0], r) == r->not_after - 30 * DAY);
	/* A window ahead: planned at its point, nothing now, and the plan lists it. */
	ari(r, NOW + 2 * DAY, NOW + 4 * DAY, NOW + 3 * DAY);
	assert_true(plan_renewal_time(f->specs[0], r) == NOW + 3 * DAY);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	assert_int_equal(p->n_windows, 1);
	assert_string_equal(p->windows[0].name, "www");
	assert_true(p->windows[0].start == NOW + 2 * DAY && p->windows[0].end == NOW + 4 * DAY);
	assert_true(p->windows[0].at == NOW + 3 * DAY);
	plan_free(p);
	/* The CA says renew now (a window already open, its point passed): renewal_due, saying why. */
	ari(r, NOW - DAY, NOW + DAY, NOW - 60);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->changes[0].kind, CHANGE_RENEW);
	assert_string_equal(p->changes[0].reason_code, "renewal_due");
	assert_string_equal(p->changes[0].reason,
			    "inside the CA's suggested renewal window (ARI) 2027-01-14T08:00:00Z → "
			    "2027-01-16T08:00:00Z, chosen point 2027-01-15T07:59:00Z; expires in 80d");
	plan_free(p);
	/* A window later than renewBefore's point changes nothing: the earlier one wins. */
	ari(r, r->not_after - 10 * DAY, r->not_after - 5 * DAY, r->not_after - 7 * DAY);
	assert_true(plan_renewal_time(f->specs[0], r) == r->not_after - 30 * DAY);
}

static void test_plan_ignores_an_ari_window_of_another_certificate(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]);
	ari(r, NOW - DAY, NOW + DAY, NOW - 60);
	/* A new certificate was installed and its window not asked yet: the old one's says nothing about it. */
	state_str_set(&r->serial, "0d0e0f");
	assert_true(plan_renewal_time(f->specs[0], r) == r->not_after - 30 * DAY);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	assert_int_equal(p->n_windows, 0);
	plan_free(p);
	/* Damaged values are no window either. */
	state_str_set(&r->serial, "0a1b2c");
	state_cert_set_id(r, PLAN_ID_ARI_AT, "soon");
	assert_true(plan_renewal_time(f->specs[0], r) == r->not_after - 30 * DAY);
}

/* certsync revoke records the serial it revoked: while that certificate is installed, a new one is planned. */
static void test_plan_replaces_a_revoked_certificate(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]);
	state_str_set(&r->serial, "0a1b2c");
	state_cert_set_id(r, PLAN_ID_REVOKED, "0a1b2c");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->changes[0].kind, CHANGE_REPLACE);
	assert_string_equal(p->changes[0].reason_code, "revoked");
	assert_string_equal(p->changes[0].reason,
			    "the installed certificate (serial 0a1b2c) was revoked: a new one is issued");
	plan_free(p);
	/* Its successor is installed: the mark is about another serial and says nothing. */
	state_str_set(&r->serial, "0d0e0f");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	plan_free(p);
}

static void test_plan_does_not_renew_outside_window(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", "  renewBefore: 79d\n"));
	record(f, f->specs[0]);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	plan_free(p);
}

static void test_plan_renews_at_one_third_by_default(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]);
	r->not_before = NOW - 61 * DAY; /* 90-day lifetime, 29 days left < 30 */
	r->not_after = NOW + 29 * DAY;
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_RENEW);
	plan_free(p);
	r->not_after = NOW + 31 * DAY;
	r->not_before = NOW - 59 * DAY;
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	plan_free(p);
}

static void test_plan_renews_expired(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]);
	r->not_after = NOW - 3 * DAY;
	r->not_before = NOW - 93 * DAY;
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_RENEW);
	assert_string_equal(p->changes[0].reason_code, "expired");
	assert_non_null(strstr(p->changes[0].reason, "expired 3d ago"));
	plan_free(p);
}

static void test_plan_resumes_pending_step(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]);
	r->phase = PHASE_PENDING;
	state_str_set(&r->step, "install");
	state_str_set(&r->change, "create");
	state_str_set(&r->target_hash, f->specs[0]->hash);
	state_str_set(&r->spec_hash, NULL);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_RESUME);
	assert_string_equal(p->changes[0].reason, "create in progress: step install");
	plan_free(p);
}

static void test_plan_replaces_when_spec_changes_mid_change(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]);
	r->phase = PHASE_PENDING;
	state_str_set(&r->step, "install");
	state_str_set(&r->target_hash, "ffff");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_REPLACE);
	plan_free(p);
}

/* A record whose change towards s failed at step issue, with class cls (NULL: a record older than classes). */
static struct state_cert *failed_record(struct fixture *f, const struct cert_spec *s, enum cert_phase phase,
					const char *cls, const char *err)
{
	struct state_cert *r = record(f, s);

	r->phase = phase;
	state_str_set(&r->change, "create");
	state_str_set(&r->step, "issue");
	state_str_set(&r->target_hash, s->hash);
	state_str_set(&r->failure_class, cls);
	state_str_set(&r->last_error, err);
	r->attempts = 2;
	r->next_try = NOW + 60;
	return r;
}

static void test_plan_config_failure_is_retried_and_says_fix_the_config(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	failed_record(f, f->specs[0], PHASE_FAILED, STATE_FAIL_CONFIG,
		      "issuer dns: token: environment variable DNSIMPLE_TOKEN is not set");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->n_failed, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_RESUME);
	assert_string_equal(p->changes[0].reason_code, "retry");
	assert_string_equal(p->changes[0].failure_class, STATE_FAIL_CONFIG);
	assert_non_null(strstr(p->changes[0].reason, "DNSIMPLE_TOKEN is not set"));
	assert_non_null(strstr(p->changes[0].reason, "fix the configuration or credentials"));
	assert_null(strstr(p->changes[0].reason, "change the manifest"));
	assert_int_equal(p->counts[CHANGE_NONE], 0);
	assert_true(plan_has_changes(p)); /* --detailed-exitcode: 2 */
	plan_free(p);
}

static void test_plan_transient_failure_is_retried(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	failed_record(f, f->specs[0], PHASE_PENDING, STATE_FAIL_TRANSIENT, "HTTP 503");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->changes[0].kind, CHANGE_RESUME);
	assert_string_equal(p->changes[0].reason_code, "retry");
	assert_string_equal(p->changes[0].failure_class, STATE_FAIL_TRANSIENT);
	assert_non_null(strstr(p->changes[0].reason, "2 attempts"));
	assert_true(plan_has_changes(p));
	plan_free(p);
}

static void test_plan_rejected_failure_waits_but_is_listed(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	failed_record(f, f->specs[0], PHASE_FAILED, STATE_FAIL_REJECTED, "HTTP 400 dnsNames: not allowed");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	assert_int_equal(p->n_failed, 1);
	assert_int_equal(p->counts[CHANGE_NONE], 0); /* never counted as unchanged */
	assert_string_equal(p->failed[0].name, "www");
	assert_string_equal(p->failed[0].failure_class, STATE_FAIL_REJECTED);
	assert_string_equal(p->failed[0].reason_code, "failed");
	assert_non_null(strstr(p->failed[0].reason, "HTTP 400 dnsNames: not allowed"));
	assert_non_null(strstr(p->failed[0].reason, "change the manifest"));
	assert_false(plan_has_changes(p)); /* apply does nothing for it: plan exits 1 for the failure instead */
	plan_free(p);
	p = diff(f, 0, 10, 1);
	assert_int_equal(p->n_failed, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_RESUME);
	assert_string_equal(p->changes[0].reason_code, "retry_failed");
	assert_string_equal(p->changes[0].failure_class, STATE_FAIL_REJECTED);
	plan_free(p);
}

static void test_plan_verification_failure_waits_and_says_check_the_issuer(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	failed_record(f, f->specs[0], PHASE_FAILED, STATE_FAIL_VERIFICATION, "the leaf is for other.example.com");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	assert_int_equal(p->n_failed, 1);
	assert_non_null(strstr(p->failed[0].reason, "verification"));
	assert_non_null(strstr(p->failed[0].reason, "check the issuer"));
	assert_null(strstr(p->failed[0].reason, "change the manifest"));
	plan_free(p);
}

static void test_plan_failure_without_class_waits_for_the_operator(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	failed_record(f, f->specs[0], PHASE_FAILED, NULL, "CA key unreadable");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 0);
	assert_int_equal(p->n_failed, 1);
	assert_string_equal(p->failed[0].failure_class, "unknown");
	assert_non_null(strstr(p->failed[0].reason, "CA key unreadable"));
	assert_non_null(strstr(p->failed[0].reason, "--retry-failed"));
	plan_free(p);
}

static void test_plan_failed_certificate_with_a_new_manifest_is_replaced(void **state)
{
	struct fixture *f = *state;
	struct cert_spec *old = spec("www", "internal", "www.example.com", NULL);
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com, api.example.com", NULL));
	failed_record(f, old, PHASE_FAILED, STATE_FAIL_REJECTED, "HTTP 400");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_failed, 0);
	assert_int_equal(p->n_changes, 1);
	assert_int_equal(p->changes[0].kind, CHANGE_REPLACE);
	plan_free(p);
	cert_spec_free(old);
}

static void test_plan_never_stores_or_prints_a_quoted_credential(void **state)
{
	struct fixture *f = *state;
	struct plan *p;
	struct buf b = BUF_INIT;

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	failed_record(f, f->specs[0], PHASE_FAILED, STATE_FAIL_REJECTED,
		      "HTTP 400 invalid request from token Bearer s3cr3t-t0ken-value");
	p = diff(f, 0, 10, 0);
	assert_null(strstr(p->failed[0].reason, "s3cr3t-t0ken-value"));
	assert_null(strstr(p->failed[0].last_error, "s3cr3t-t0ken-value"));
	assert_non_null(strstr(p->failed[0].reason, "Bearer [REDACTED]"));
	assert_int_equal(plan_render_json(p, &b), 0);
	assert_null(strstr(b.data, "s3cr3t-t0ken-value"));
	buf_free(&b);
	plan_free(p);
}

/* The provider's note (the ACME solver per name) reaches plans and pull-request plans, never a credential. */
static void test_plan_carries_the_provider_detail_into_plans_and_pr_plans(void **state)
{
	struct fixture *f = *state;
	struct plan_pr_input pr;
	struct plan *p;

	add_spec(f, spec("a", "le", "a.example.com", NULL));
	add_spec(f, spec("b", "le", "b.example.com, c.example.com", NULL));
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 2);
	assert_string_equal(find(p, "a")->detail, "a.example.com: http-01 serve");
	assert_string_equal(find(p, "b")->detail, "b.example.com: http-01 serve (Bearer [REDACTED])");
	plan_free(p);
	memset(&pr, 0, sizeof(pr));
	pr.head = f->specs;
	pr.n_head = f->n;
	pr.max_paid = 10;
	pr.steps_fn = fake_steps;
	pr.repo = "/srv/certs.git";
	pr.commit = "0123456789abcdef0123456789abcdef01234567";
	pr.base_commit = "89abcdef0123456789abcdef0123456789abcdef";
	assert_int_equal(plan_pr_diff(&pr, &p), 0);
	assert_int_equal(p->n_changes, 2);
	assert_string_equal(find(p, "a")->detail, "a.example.com: http-01 serve");
	assert_null(strstr(find(p, "b")->detail, "s3cr3t"));
	plan_free(p);
}

static void test_plan_reinstalls_missing_or_altered_outputs(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("a", "internal", "a.example.com", NULL));
	add_spec(f, spec("b", "internal", "b.example.com", NULL));
	record(f, f->specs[0]);
	record(f, f->specs[1]);
	f->outputs[0] = OUTPUT_MISSING; /* state_cert_list is sorted: a, b */
	f->outputs[1] = OUTPUT_ALTERED;
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_changes, 2);
	assert_int_equal(find(p, "a")->kind, CHANGE_REINSTALL);
	assert_string_equal(find(p, "a")->reason_code, "output_missing");
	assert_string_equal(find(p, "b")->reason_code, "output_altered");
	plan_free(p);
}

static void test_plan_reinstalls_when_output_moves(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("www", "internal", "www.example.com", "  output: {directory: web/www}\n"));
	state_str_set(&record(f, f->specs[0])->output_dir, "www");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_REINSTALL);
	assert_string_equal(p->changes[0].reason_code, "output_moved");
	plan_free(p);
}

static void test_plan_removes_with_prune_and_orphans_without(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	orphan_record(f, "gone");
	p = diff(f, 1, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_REMOVE);
	assert_int_equal(p->changes[0].n_steps, 3);
	assert_true(plan_has_changes(p));
	plan_free(p);
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->changes[0].kind, CHANGE_ORPHAN);
	assert_int_equal(p->changes[0].n_steps, 0);
	assert_false(plan_has_changes(p));
	plan_free(p);
}

static void test_plan_caps_paid_orders(void **state)
{
	struct fixture *f = *state;
	struct plan *p;

	add_spec(f, spec("p1", "paid", "p1.example.com", NULL));
	add_spec(f, spec("p2", "paid", "p2.example.com", NULL));
	add_spec(f, spec("p3", "paid", "p3.example.com", NULL));
	add_spec(f, spec("free", "internal", "free.example.com", NULL));
	p = diff(f, 0, 2, 0);
	assert_int_equal(p->paid, 2);
	assert_int_equal(p->deferred, 1);
	assert_true(find(p, "p1")->paid && !find(p, "p1")->deferred);
	assert_true(find(p, "p3")->paid && find(p, "p3")->deferred);
	assert_false(find(p, "free")->paid);
	assert_string_equal(find(p, "p2")->product, "ssl_dv_geotrust");
	plan_free(p);
}

/* Builds a fixture with one certificate per change kind. */
static void build_every_kind(struct fixture *f)
{
	struct cert_spec *old = spec("replace-me", "internal", "old.example.com", NULL);
	struct state_cert *r;

	add_spec(f, spec("create-me", "internal", "new.example.com", NULL));
	add_spec(f, spec("keep-me", "internal", "keep.example.com", NULL));
	add_spec(f, spec("paid-one", "paid", "shop.example.com", NULL));
	add_spec(f, spec("reinstall-me", "internal", "re.example.com", NULL));
	add_spec(f, spec("renew-me", "internal", "renew.example.com", "  renewBefore: 90d\n"));
	add_spec(f, spec("replace-me", "internal", "old.example.com, new.example.com", NULL));
	add_spec(f, spec("resume-me", "internal", "resume.example.com", NULL));
	record(f, f->specs[1]);
	record(f, f->specs[3]);
	record(f, f->specs[4]);
	record(f, old);
	r = record(f, f->specs[6]);
	r->phase = PHASE_PENDING;
	state_str_set(&r->step, "install");
	state_str_set(&r->change, "renew");
	state_str_set(&r->target_hash, f->specs[6]->hash);
	r->attempts = 2;
	orphan_record(f, "remove-me");
	cert_spec_free(old);
}

static void test_plan_golden_every_kind(void **state)
{
	struct fixture *f = *state;
	struct buf b = BUF_INIT;
	struct plan *p;

	build_every_kind(f);
	/* state_cert_list order: keep-me, reinstall-me, remove-me, renew-me, replace-me, resume-me */
	f->outputs[1] = OUTPUT_MISSING;
	p = diff(f, 1, 10, 0);
	assert_int_equal(p->counts[CHANGE_CREATE], 2);
	assert_int_equal(p->counts[CHANGE_REPLACE], 1);
	assert_int_equal(p->counts[CHANGE_RENEW], 1);
	assert_int_equal(p->counts[CHANGE_RESUME], 1);
	assert_int_equal(p->counts[CHANGE_REINSTALL], 1);
	assert_int_equal(p->counts[CHANGE_REMOVE], 1);
	assert_int_equal(p->counts[CHANGE_NONE], 1);
	for (size_t i = 1; i < p->n_changes; i++)
		assert_true(strcmp(p->changes[i - 1].name, p->changes[i].name) < 0);
	assert_int_equal(plan_render_json(p, &b), 0);
	test_golden("tests/golden/diff/every-kind.json", b.data, b.len);
	buf_clear(&b);
	assert_int_equal(plan_render_text(p, PLAN_TEXT_ASCII, &b), 0);
	test_golden("tests/golden/diff/every-kind.txt", b.data, b.len);
	buf_clear(&b);
	assert_int_equal(plan_render_markdown(p, &b), 0);
	test_golden("tests/golden/diff/every-kind.md", b.data, b.len);
	buf_free(&b);
	plan_free(p);
}

/* Every failure class next to a paid create: what the operator sees, in every format. */
static void test_plan_golden_failures(void **state)
{
	struct fixture *f = *state;
	struct buf b = BUF_INIT;
	struct plan *p;

	add_spec(f, spec("bad-key", "internal", "key.example.com", NULL));
	add_spec(f, spec("flaky", "internal", "flaky.example.com", NULL));
	add_spec(f, spec("new-paid", "paid", "paid.example.com", NULL));
	add_spec(f, spec("refused", "internal", "refused.example.com", NULL));
	add_spec(f, spec("wrong-leaf", "internal", "leaf.example.com", NULL));
	failed_record(f, f->specs[0], PHASE_FAILED, STATE_FAIL_CONFIG,
		      "issuer internal: CA key /etc/ca.key is readable by group or others (mode 0644); chmod 600 it");
	failed_record(f, f->specs[1], PHASE_PENDING, STATE_FAIL_TRANSIENT, "issuer internal: HTTP 503");
	failed_record(f, f->specs[3], PHASE_FAILED, STATE_FAIL_REJECTED,
		      "issuer internal: HTTP 400 dnsNames: refused.example.com is not allowed");
	failed_record(f, f->specs[4], PHASE_FAILED, STATE_FAIL_VERIFICATION,
		      "the certificate is for other.example.com, not leaf.example.com");
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->n_failed, 2);
	assert_int_equal(plan_render_json(p, &b), 0);
	test_golden("tests/golden/diff/failures.json", b.data, b.len);
	buf_clear(&b);
	assert_int_equal(plan_render_text(p, PLAN_TEXT_ASCII, &b), 0);
	assert_null(strstr(b.data, "No changes"));
	test_golden("tests/golden/diff/failures.txt", b.data, b.len);
	buf_clear(&b);
	assert_int_equal(plan_render_markdown(p, &b), 0);
	assert_null(strstr(b.data, "No changes"));
	test_golden("tests/golden/diff/failures.md", b.data, b.len);
	buf_clear(&b);
	assert_int_equal(plan_render_github(p, &b), 0);
	test_golden("tests/golden/diff/failures.github", b.data, b.len);
	buf_free(&b);
	plan_free(p);
}

/* Only rejected/verification failures left: not "No changes", and the summary says what is failed. */
static void test_plan_text_with_only_a_held_failure_is_not_no_changes(void **state)
{
	struct fixture *f = *state;
	struct buf b = BUF_INIT;
	struct plan *p;

	add_spec(f, spec("ok", "internal", "ok.example.com", NULL));
	add_spec(f, spec("refused", "internal", "refused.example.com", NULL));
	record(f, f->specs[0]);
	failed_record(f, f->specs[1], PHASE_FAILED, STATE_FAIL_REJECTED, "HTTP 400");
	p = diff(f, 0, 10, 0);
	assert_int_equal(plan_render_text(p, 0, &b), 0);
	assert_null(strstr(b.data, "No changes"));
	assert_non_null(strstr(b.data, "x refused"));
	assert_non_null(strstr(b.data, "Failed: 1 certificate failed"));
	buf_free(&b);
	plan_free(p);
}

/* A revision whose every manifest is invalid: errors, never "No changes (0 unchanged)". */
static void test_plan_text_with_only_errors_is_not_no_changes(void **state)
{
	struct fixture *f = *state;
	struct buf b = BUF_INIT;
	struct plan *p;

	p = diff(f, 0, 10, 0);
	diags_add(&p->errors, "certs/www.yaml", 2, 1, "YAML syntax error");
	assert_int_equal(plan_render_text(p, 0, &b), 0);
	assert_null(strstr(b.data, "No changes"));
	assert_non_null(strstr(b.data, "Errors: 1 problem"));
	buf_clear(&b);
	assert_int_equal(plan_render_markdown(p, &b), 0);
	assert_null(strstr(b.data, "No changes"));
	buf_free(&b);
	plan_free(p);
}

static void test_plan_is_pure_and_deterministic(void **state)
{
	struct fixture *f = *state;
	struct buf a = BUF_INIT, b = BUF_INIT;
	struct plan *p1, *p2;

	build_every_kind(f);
	p1 = diff(f, 1, 10, 0);
	p2 = diff(f, 1, 10, 0);
	plan_render_json(p1, &a);
	plan_render_json(p2, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	buf_free(&a);
	buf_free(&b);
	plan_free(p1);
	plan_free(p2);
}

static void test_plan_spec_diff_lists_fields(void **state)
{
	struct cert_spec *a = spec("www", "internal", "www.example.com, old.example.com", NULL);
	struct cert_spec *b = spec("www", "internal", "www.example.com, api.example.com",
				   "  privateKey: {algorithm: RSA, size: 3072}\n");
	struct plan_field_diff *d = NULL;
	size_t n = 0;

	(void)state;
	plan_spec_diff(a, b, &d, &n);
	assert_int_equal(n, 3);
	assert_string_equal(d[0].field, "dnsNames");
	assert_string_equal(d[0].text, "+ api.example.com");
	assert_string_equal(d[1].text, "- old.example.com");
	assert_string_equal(d[2].field, "privateKey");
	assert_string_equal(d[2].text, "ECDSA 256 → RSA 3072");
	for (size_t i = 0; i < n; i++) {
		free(d[i].field);
		free(d[i].text);
	}
	free(d);
	cert_spec_free(a);
	cert_spec_free(b);
}

static void test_plan_scales_linearly(void **state)
{
	struct fixture *f = *state;
	struct plan *p;
	char name[32], host[64];

	/* 5,000 certificates, half recorded: must finish instantly (a quadratic diff would not). */
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "cert-%05d", i);
		snprintf(host, sizeof(host), "h%d.example.com", i);
		add_spec(f, spec(name, "internal", host, NULL));
		if (i % 2)
			record(f, f->specs[f->n - 1]);
	}
	p = diff(f, 0, 10, 0);
	assert_int_equal(p->counts[CHANGE_CREATE], 2500);
	assert_int_equal(p->counts[CHANGE_NONE], 2500);
	plan_free(p);
}

/* The plan's changes as "name:kind:reason:spec-issuer" lines, for comparing two diffs. */
static char *plan_summary(const struct plan *p)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < p->n_changes; i++)
		buf_printf(&b, "%s:%d:%s:%s:%zu\n", p->changes[i].name, (int)p->changes[i].kind,
			   p->changes[i].reason_code, p->changes[i].issuer ? p->changes[i].issuer : "-",
			   p->changes[i].n_steps);
	for (size_t k = 0; k < CHANGE__MAX; k++)
		buf_printf(&b, "%zu,", p->counts[k]);
	return b.data ? b.data : xstrdup("");
}

static void test_plan_pairs_by_merge_or_hash_alike(void **state)
{
	struct fixture *f = *state;
	struct plan *p;
	char name[32], host[64], *sorted, *shuffled;

	/* desired c000..c199; recorded: every third of them, some changed, and orphans between them */
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "c%03d", i);
		snprintf(host, sizeof(host), "h%d.example.com", i);
		add_spec(f, spec(name, "internal", host, NULL));
		if (i % 3 == 0)
			record(f, f->specs[f->n - 1]);
		if (i % 9 == 0)
			state_str_set(&state_cert_get(f->st, name)->spec_hash, "changed");
		if (i % 7 == 0) {
			snprintf(name, sizeof(name), "c%03d-gone", i);
			orphan_record(f, name);
		}
	}
	p = diff(f, 1, 1000, 0); /* in name order: the merge walk */
	sorted = plan_summary(p);
	assert_int_equal(p->counts[CHANGE_CREATE], 133);
	assert_int_equal(p->counts[CHANGE_REPLACE], 23);
	assert_int_equal(p->counts[CHANGE_REMOVE], 29);
	plan_free(p);
	for (size_t i = 0; i + 1 < f->n; i += 2) { /* out of order: the hash */
		struct cert_spec *t = f->specs[i];

		f->specs[i] = f->specs[i + 1];
		f->specs[i + 1] = t;
	}
	p = diff(f, 1, 1000, 0);
	shuffled = plan_summary(p);
	assert_string_equal(sorted, shuffled);
	plan_free(p);
	free(sorted);
	free(shuffled);
}

static void test_plan_notes_renew_before_as_decimal_seconds(void **state)
{
	struct fixture *f = *state;
	struct state_cert *r;
	static const int64_t v[] = {0, 1, 9, 10, 2592000, -5, INT64_MAX, INT64_MIN};
	char want[32];

	add_spec(f, spec("www", "internal", "www.example.com", NULL));
	r = record(f, f->specs[0]);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		f->specs[0]->renew_before = v[i];
		plan_note_renew_before(r, f->specs[0]);
		snprintf(want, sizeof(want), "%lld", (long long)v[i]);
		assert_string_equal(state_cert_id(r, PLAN_ID_RENEW_BEFORE), want);
	}
	plan_note_renew_before(r, NULL);
	assert_string_equal(state_cert_id(r, PLAN_ID_RENEW_BEFORE), "0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plan_creates_new_certificate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_in_sync_is_no_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_whole_lifetime_renew_before_renews_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_replaces_when_names_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_cosmetic_edit_is_no_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_replaces_when_issuer_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_renews_inside_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_does_not_renew_outside_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_renews_at_the_point_chosen_in_the_ari_window, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_ignores_an_ari_window_of_another_certificate, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_replaces_a_revoked_certificate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_carries_the_provider_detail_into_plans_and_pr_plans, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_renews_at_one_third_by_default, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_renews_expired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_resumes_pending_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_replaces_when_spec_changes_mid_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_config_failure_is_retried_and_says_fix_the_config, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_transient_failure_is_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_rejected_failure_waits_but_is_listed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_verification_failure_waits_and_says_check_the_issuer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_failure_without_class_waits_for_the_operator, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_failed_certificate_with_a_new_manifest_is_replaced, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_never_stores_or_prints_a_quoted_credential, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_reinstalls_missing_or_altered_outputs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_reinstalls_when_output_moves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_removes_with_prune_and_orphans_without, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_caps_paid_orders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_golden_every_kind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_golden_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_text_with_only_a_held_failure_is_not_no_changes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_plan_text_with_only_errors_is_not_no_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_is_pure_and_deterministic, setup, teardown),
		cmocka_unit_test(test_plan_spec_diff_lists_fields),
		cmocka_unit_test_setup_teardown(test_plan_scales_linearly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_pairs_by_merge_or_hash_alike, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_notes_renew_before_as_decimal_seconds, setup, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	free(recorded_list);
	return rc;
}
