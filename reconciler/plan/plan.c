/*
 * The diff: desired × recorded × observed → changes. Pure: no I/O, no clock
 * (now comes in), deterministic order. O(n) with hash lookups.
 */
#include "plan.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/redact.h"
#include "../../util/util.h"

int64_t plan_renewal_at(const struct cert_spec *spec, int64_t not_before, int64_t not_after, int honoured)
{
	int64_t before = spec ? spec->renew_before : 0, life = not_after - not_before;

	if (before <= 0 || (before >= life && honoured))
		before = life / 3;
	return not_after - before;
}

/* As "%lld" writes it, without printf's machinery (the diff formats one per certificate). */
static void plan_fmt_renew_before(const struct cert_spec *spec, char out[32])
{
	int64_t v = spec ? spec->renew_before : 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	char digits[24];
	size_t n = 0, k = 0;

	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		out[k++] = '-';
	while (n)
		out[k++] = digits[--n];
	out[k] = '\0';
}

void plan_note_renew_before(struct state_cert *rec, const struct cert_spec *spec)
{
	char v[32];

	plan_fmt_renew_before(spec, v);
	state_cert_set_id(rec, PLAN_ID_RENEW_BEFORE, v);
}

/* The installed certificate was issued while the manifest had this renewBefore. */
static int plan_renewed_under(const struct cert_spec *spec, const struct state_cert *rec)
{
	const char *v = state_cert_id(rec, PLAN_ID_RENEW_BEFORE);
	char want[32];

	plan_fmt_renew_before(spec, want);
	return v && !strcmp(v, want);
}

int plan_ari_window(const struct state_cert *rec, struct plan_window *w)
{
	const char *serial = rec ? state_cert_id(rec, PLAN_ID_ARI_SERIAL) : NULL;

	memset(w, 0, sizeof(*w));
	/* Recorded for another certificate (an install the window was not asked for yet): it says nothing. */
	if (!serial || !rec->serial || strcmp(serial, rec->serial))
		return 0;
	w->start = state_cert_id_time(rec, PLAN_ID_ARI_START);
	w->end = state_cert_id_time(rec, PLAN_ID_ARI_END);
	w->at = state_cert_id_time(rec, PLAN_ID_ARI_AT);
	w->next = state_cert_id_time(rec, PLAN_ID_ARI_NEXT);
	return w->start > 0 && w->end >= w->start && w->at > 0;
}

/* The renewBefore (or ⅓-lifetime) point alone, without the CA's window. */
static int64_t plan_renewal_own(const struct cert_spec *spec, const struct state_cert *rec)
{
	return plan_renewal_at(spec, rec->not_before, rec->not_after, plan_renewed_under(spec, rec));
}

int64_t plan_renewal_time(const struct cert_spec *spec, const struct state_cert *rec)
{
	struct plan_window w;
	int64_t own;

	if (!rec || rec->not_after <= 0)
		return 0;
	own = plan_renewal_own(spec, rec);
	return plan_ari_window(rec, &w) && w.at < own ? w.at : own;
}

/* What every plan says about where it comes from. */
static void plan_header(struct plan *p, const char *repo, const char *ref, const char *commit, const struct state *st,
			int max_paid)
{
	p->repo = xstrdup(repo);
	p->ref = xstrdup(ref);
	p->commit = xstrdup(commit);
	p->max_paid = max_paid;
	if (st) {
		p->has_state = 1;
		memcpy(p->lineage, st->lineage, sizeof(p->lineage));
		p->serial = st->serial;
		p->applied_commit = xstrdup(st->source_commit);
	}
}

static struct plan_change *plan_add(struct plan *p, size_t *cap, const char *name, enum change_kind kind)
{
	struct plan_change *c;

	util_grow(&p->changes, cap, p->n_changes + 1, sizeof(*p->changes));
	c = &p->changes[p->n_changes++];
	memset(c, 0, sizeof(*c));
	c->name = xstrdup(name);
	c->kind = kind;
	return c;
}

static void plan_reason(struct plan_change *c, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void plan_reason(struct plan_change *c, const char *code, const char *fmt, ...)
{
	va_list ap;

	char *raw;

	va_start(ap, fmt);
	raw = xvasprintf(fmt, ap);
	va_end(ap);
	c->reason = redact_dup(raw); /* reasons quote recorded errors; a plan may become a PR comment */
	free(raw);
	c->reason_code = xstrdup(code);
}

static void plan_copy_spec_info(struct plan_change *c, const struct cert_spec *s)
{
	c->issuer = xstrdup(s->issuer);
	c->file = xstrdup(s->file);
	c->line = s->line;
	if (s->n_labels) {
		c->labels = xcalloc(s->n_labels, sizeof(*c->labels));
		for (size_t i = 0; i < s->n_labels; i++) {
			c->labels[i].key = xstrdup(s->labels[i].key);
			c->labels[i].value = xstrdup(s->labels[i].value);
		}
		c->n_labels = s->n_labels;
	}
}

/* Human form of a remaining time: "12d", "5h", "expired 3d ago". */
static void plan_fmt_left(int64_t left, char out[48])
{
	char d[32];

	util_fmt_duration(left < 0 ? -left : left, d);
	if (left < 0)
		snprintf(out, 48, "expired %s ago", d);
	else
		snprintf(out, 48, "expires in %s", d);
}

/* ---------- failed certificates ---------- */

static const struct {
	const char *fail_class;
	int retried; /* by the next apply (or run pass, after its backoff) without being asked */
	const char *label;
	const char *advice; /* the log line of the failure, and the plan when it is not retried */
	const char *retry;  /* the plan when apply retries it */
} plan_failure_kinds[] = {
	{STATE_FAIL_CONFIG, 1, "configuration or credentials",
	 "fix the configuration or credentials; the next apply (or run pass) retries it",
	 "apply retries it (fix the configuration or credentials first, if not done yet)"},
	{STATE_FAIL_TRANSIENT, 1, "transient", "retried with backoff", "apply retries it"},
	{STATE_FAIL_REJECTED, 0, "rejected by the provider",
	 "not retried: change the manifest, or apply --retry-failed", NULL},
	{STATE_FAIL_VERIFICATION, 0, "verification",
	 "nothing was installed and nothing is bought again by itself: check the issuer, then apply --retry-failed",
	 NULL},
};

#define PLAN_N_FAILURE_KINDS (sizeof(plan_failure_kinds) / sizeof(plan_failure_kinds[0]))

static size_t plan_failure_kind(const char *fail_class)
{
	for (size_t i = 0; i < PLAN_N_FAILURE_KINDS; i++)
		if (fail_class && !strcmp(plan_failure_kinds[i].fail_class, fail_class))
			return i;
	return PLAN_N_FAILURE_KINDS;
}

const char *plan_failure_advice(const char *fail_class)
{
	size_t k = plan_failure_kind(fail_class);

	/* A record from before failure classes: it needs the operator's word, as a rejection does. */
	return k < PLAN_N_FAILURE_KINDS ? plan_failure_kinds[k].advice
					: "the cause was not recorded: fix it, then apply --retry-failed";
}

int plan_failure_retried(const char *fail_class)
{
	size_t k = plan_failure_kind(fail_class);

	return k < PLAN_N_FAILURE_KINDS && plan_failure_kinds[k].retried;
}

static const char *plan_failure_label(const char *fail_class)
{
	size_t k = plan_failure_kind(fail_class);

	return k < PLAN_N_FAILURE_KINDS ? plan_failure_kinds[k].label : "cause not recorded";
}

/* A record whose last attempt at its change failed: phase failed, or pending after a transient failure. */
static int plan_failed_record(const struct state_cert *rec)
{
	return rec->phase == PHASE_FAILED || (rec->failure_class && rec->attempts > 0);
}

/*
 * A failed certificate towards this very spec: configuration and transient
 * failures are retried (a resume that says why), others wait for a manifest
 * change or --retry-failed and are listed in p->failed, never as unchanged.
 */
static void plan_one_failed(const struct plan_input *in, struct plan *p, size_t *cap, const struct cert_spec *s,
			    const struct state_cert *rec)
{
	const char *cls = rec->failure_class ? rec->failure_class : "unknown";
	const char *err = rec->last_error ? rec->last_error : "no error recorded";
	struct plan_change *c;

	if (!plan_failure_retried(rec->failure_class) && !in->retry_failed) {
		p->failed = xrealloc(p->failed, (p->n_failed + 1) * sizeof(*p->failed));
		c = &p->failed[p->n_failed++];
		memset(c, 0, sizeof(*c));
		c->name = xstrdup(s->name);
		c->kind = CHANGE_NONE;
		plan_reason(c, "failed", "failed at step %s (%s): %s; %s", rec->step, plan_failure_label(cls), err,
			    plan_failure_advice(rec->failure_class));
		plan_copy_spec_info(c, s);
		c->failure_class = xstrdup(cls);
		c->last_error = redact_dup(err);
		return;
	}
	c = plan_add(p, cap, s->name, CHANGE_RESUME);
	if (!plan_failure_retried(rec->failure_class))
		plan_reason(c, "retry_failed", "retrying failed step %s (--retry-failed); it failed (%s): %s",
			    rec->step, plan_failure_label(cls), err);
	else
		plan_reason(c, "retry", "step %s failed (%s, %d attempt%s): %s; %s", rec->step, plan_failure_label(cls),
			    rec->attempts, rec->attempts == 1 ? "" : "s", err,
			    plan_failure_kinds[plan_failure_kind(cls)].retry);
	c->failure_class = xstrdup(cls);
	c->last_error = redact_dup(err);
	plan_copy_spec_info(c, s);
}

/* "2026-12-10T00:00:00Z → 2026-12-12T00:00:00Z" */
static void plan_fmt_window(const struct plan_window *w, char out[96])
{
	char a[32], b[32];

	util_fmt_time(w->start, a);
	util_fmt_time(w->end, b);
	snprintf(out, 96, "%s → %s", a, b);
}

/* A renewal that is due: by renewBefore (or ⅓ of the lifetime), by expiry, or inside the CA's window (ARI). */
static void plan_one_renew(const struct plan_input *in, struct plan *p, size_t *cap, const struct cert_spec *s,
			   const struct state_cert *rec, int64_t renew_at)
{
	int64_t own = plan_renewal_own(s, rec);
	char left[48], before[32], win[96], at[32];
	struct plan_window w;
	struct plan_change *c = plan_add(p, cap, s->name, CHANGE_RENEW);

	plan_fmt_left(rec->not_after - in->now, left);
	if (rec->not_after > in->now && in->now < own && plan_ari_window(rec, &w) && renew_at == w.at) {
		/* Only the CA's window makes it due: say so, or the renewal looks early. */
		plan_fmt_window(&w, win);
		util_fmt_time(w.at, at);
		plan_reason(c, "renewal_due", "inside the CA's suggested renewal window (ARI) %s, chosen point %s; %s",
			    win, at, left);
	} else {
		if (rec->not_after - own >= rec->not_after - rec->not_before)
			plan_add_warning(p,
					 "%s: renewBefore is at least the certificate's whole lifetime: it is renewed "
					 "once now, then at a third of its lifetime until renewBefore changes",
					 s->name);
		util_fmt_duration(rec->not_after - own, before);
		plan_reason(c, rec->not_after <= in->now ? "expired" : "renewal_due", "%s (renewBefore %s)", left,
			    before);
	}
	plan_copy_spec_info(c, s);
}

/* Lists the CA's suggested renewal window of a desired, installed certificate (ARI), if one is recorded. */
static void plan_note_window(struct plan *p, const struct cert_spec *s, const struct state_cert *rec)
{
	struct plan_window w;

	if (!rec->fingerprint || !plan_ari_window(rec, &w))
		return;
	p->windows = xrealloc(p->windows, (p->n_windows + 1) * sizeof(*p->windows));
	w.name = xstrdup(s->name);
	p->windows[p->n_windows++] = w;
}

/* Whether the installed output formats (the record's) differ from the spec's; fa, fb get both as text. */
static int plan_formats_changed(const struct state_cert *rec, const struct cert_spec *s, char *fa, char *fb)
{
	const char *had = state_cert_id(rec, "outputs.formats"); /* OUTPUTS_ID_FORMATS */

	manifest_formats_text(s->formats, fb);
	if (!strcmp(had ? had : "", fb))
		return 0;
	snprintf(fa, MANIFEST_FORMATS_TEXT, "%s", had ? had : "");
	return 1;
}

/* Decides the change for a certificate that is both desired and recorded. */
static void plan_one(const struct plan_input *in, struct plan *p, size_t *cap, const struct cert_spec *s,
		     const struct state_cert *rec, enum output_status out, const struct plan_drift *drift)
{
	const char *want = rec->target_hash ? rec->target_hash : rec->spec_hash;
	int same_issuer = util_streq(rec->issuer, s->issuer);
	char fa[MANIFEST_FORMATS_TEXT], fb[MANIFEST_FORMATS_TEXT];
	struct plan_change *c;
	int64_t renew_at;

	if (rec->phase != PHASE_READY && rec->step && same_issuer && util_streq(want, s->hash)) {
		/* A change towards exactly this spec is under way (or failed): carry on with it. */
		if (plan_failed_record(rec)) {
			plan_one_failed(in, p, cap, s, rec);
			return;
		}
		c = plan_add(p, cap, s->name, CHANGE_RESUME);
		if (rec->attempts)
			plan_reason(c, "pending", "%s in progress: step %s (%d failed attempts)",
				    rec->change ? rec->change : "change", rec->step, rec->attempts);
		else
			plan_reason(c, "pending", "%s in progress: step %s", rec->change ? rec->change : "change",
				    rec->step);
	} else if (!same_issuer || !util_streq(rec->spec_hash, s->hash) || (rec->phase != PHASE_READY && rec->step)) {
		c = plan_add(p, cap, s->name, CHANGE_REPLACE);
		if (!same_issuer)
			plan_reason(c, "issuer_changed", "issuer changed from %s to %s",
				    rec->issuer ? rec->issuer : "?", s->issuer);
		else
			plan_reason(c, "spec_changed", "names, key or validity changed");
	} else if (drift && drift->needs_new) {
		c = plan_add(p, cap, s->name, CHANGE_REPLACE);
		plan_reason(c, "drift", "%s", drift->what);
	} else if (rec->serial && util_streq(state_cert_id(rec, PLAN_ID_REVOKED), rec->serial)) {
		c = plan_add(p, cap, s->name, CHANGE_REPLACE);
		plan_reason(c, "revoked", "the installed certificate (serial %s) was revoked: a new one is issued",
			    rec->serial);
	} else if (out == OUTPUT_MISSING) {
		c = plan_add(p, cap, s->name, CHANGE_REINSTALL);
		plan_reason(c, "output_missing", "output files are missing");
	} else if (out == OUTPUT_ALTERED) {
		c = plan_add(p, cap, s->name, CHANGE_REINSTALL);
		plan_reason(c, "output_altered", "output files do not match the installed certificate");
	} else if (!util_streq(rec->output_dir, s->output_dir)) {
		c = plan_add(p, cap, s->name, CHANGE_REINSTALL);
		plan_reason(c, "output_moved", "output directory changed from %s to %s",
			    rec->output_dir ? rec->output_dir : "?", s->output_dir);
	} else if (plan_formats_changed(rec, s, fa, fb)) {
		c = plan_add(p, cap, s->name, CHANGE_REINSTALL);
		plan_reason(c, "output_formats", "output formats changed from [%s] to [%s] (same certificate)", fa, fb);
	} else if ((renew_at = plan_renewal_time(s, rec)) && in->now >= renew_at) {
		plan_one_renew(in, p, cap, s, rec, renew_at);
		return;
	} else {
		if (drift && drift->what)
			plan_add_warning(p, "%s: %s", s->name, drift->what);
		if (s->renew_before > 0 && s->renew_before >= rec->not_after - rec->not_before && rec->not_after > 0)
			plan_add_warning(p,
					 "%s: renewBefore is at least the certificate's whole lifetime: it was renewed "
					 "once for it and now renews at a third of its lifetime (lower renewBefore)",
					 s->name);
		p->counts[CHANGE_NONE]++;
		return;
	}
	plan_copy_spec_info(c, s);
}

/* spec.suspend: nothing planned, whatever is due; said in every plan format (a warning). */
static void plan_suspended(struct plan *p, const struct cert_spec *s)
{
	plan_add_warning(p, "%s: suspended (spec.suspend: true in %s:%d): no changes planned", s->name, s->file,
			 s->line);
	p->counts[CHANGE_NONE]++;
}

static int plan_drift_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct plan_drift *)elem)->name);
}

static int plan_window_cmp(const void *a, const void *b)
{
	return strcmp(((const struct plan_window *)a)->name, ((const struct plan_window *)b)->name);
}

static int plan_cmp(const void *a, const void *b)
{
	const struct plan_change *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Fills steps, provider and paid flags from the provider planner, then applies the paid cap. */
static int plan_fill_steps(const struct plan_input *in, struct plan *p, struct cert_spec *const *by_name_spec,
			   struct state_cert *const *by_name_rec)
{
	for (size_t i = 0; i < p->n_changes; i++) {
		struct plan_change *c = &p->changes[i];
		struct plan_steps ps;
		const char *provider = NULL;
		int rc;

		memset(&ps, 0, sizeof(ps));
		if (c->kind == CHANGE_ORPHAN)
			continue;
		if (c->kind == CHANGE_REMOVE) {
			ps.steps[ps.n++] = "release";
			ps.steps[ps.n++] = "delete-outputs";
			ps.steps[ps.n++] = "forget";
			provider = by_name_rec[i] ? by_name_rec[i]->provider : NULL;
		} else if (in->steps_fn) {
			rc = in->steps_fn(in->steps_arg, c->issuer, c->kind, by_name_spec[i], by_name_rec[i], &provider,
					  &ps);
			if (rc)
				return rc;
		}
		for (size_t k = 0; k < ps.n && k < PLAN_MAX_STEPS; k++)
			c->steps[c->n_steps++] = xstrdup(ps.steps[k]);
		c->provider = xstrdup(provider);
		ps.detail[sizeof(ps.detail) - 1] = '\0';
		if (ps.detail[0])
			c->detail =
				redact_dup(ps.detail); /* a PR comment: never a credential, whatever a driver wrote */
		if (ps.paid) {
			c->paid = 1;
			c->product = xstrdup(ps.product);
			if (p->paid >= (size_t)in->max_paid) {
				c->deferred = 1;
				p->deferred++;
			} else {
				p->paid++;
			}
		}
	}
	return 0;
}

/*
 * Specs and records lie scattered over the heap, so walking 10,000 of them
 * waits on memory at each one. Asking for the ones a few steps ahead (the
 * structs at PLAN_AHEAD, the strings they point to at half that, once the
 * struct is there) lets those waits overlap.
 */
#define PLAN_AHEAD 16

/* Prefetches bytes [0, len) of p, a line at a time. */
static void plan_prefetch_bytes(const void *p, size_t len)
{
	for (size_t o = 0; o < len; o += 64)
		__builtin_prefetch((const char *)p + o);
}

static void plan_prefetch_spec(const struct cert_spec *s, int deep)
{
	if (!deep) {
		plan_prefetch_bytes(s, offsetof(struct cert_spec, hash) + sizeof(s->hash));
		return;
	}
	__builtin_prefetch(s->name);
	__builtin_prefetch(s->issuer);
	__builtin_prefetch(s->output_dir);
}

static void plan_prefetch_rec(const struct state_cert *r, int deep)
{
	if (!deep) {
		plan_prefetch_bytes(r, offsetof(struct state_cert, out_generation) + sizeof(r->out_generation));
		return;
	}
	__builtin_prefetch(r->name);
	__builtin_prefetch(r->issuer);
	__builtin_prefetch(r->spec_hash);
	__builtin_prefetch(r->output_dir);
	__builtin_prefetch(r->ids);
}

/* Prefetches what the walk at record r and spec j touches a few steps on. */
static void plan_prefetch_at(struct cert_spec *const *v, size_t nv, size_t j, struct state_cert *const *recs, size_t nr,
			     size_t r)
{
	if (j + PLAN_AHEAD < nv)
		plan_prefetch_spec(v[j + PLAN_AHEAD], 0);
	if (j + PLAN_AHEAD / 2 < nv)
		plan_prefetch_spec(v[j + PLAN_AHEAD / 2], 1);
	if (r + PLAN_AHEAD < nr)
		plan_prefetch_rec(recs[r + PLAN_AHEAD], 0);
	if (r + PLAN_AHEAD / 2 < nr)
		plan_prefetch_rec(recs[r + PLAN_AHEAD / 2], 1);
}

/* Desired specs by name, for inputs that are not both in name order: open addressing, index + 1. */
struct plan_index {
	size_t *bucket;
	size_t nbucket;
};

static void plan_index_build(struct plan_index *x, struct cert_spec *const *v, size_t n)
{
	x->nbucket = 1;
	while (x->nbucket < 2 * (n + 1))
		x->nbucket *= 2;
	x->bucket = xcalloc(x->nbucket, sizeof(*x->bucket));
	for (size_t i = 0; i < n; i++) {
		size_t h = util_hash_str(v[i]->name) & (x->nbucket - 1);

		while (x->bucket[h])
			h = (h + 1) & (x->nbucket - 1);
		x->bucket[h] = i + 1;
	}
}

/* The index of the spec named name, or -1. */
static long plan_index_find(const struct plan_index *x, struct cert_spec *const *v, const char *name)
{
	for (size_t h = util_hash_str(name) & (x->nbucket - 1); x->bucket[h]; h = (h + 1) & (x->nbucket - 1))
		if (!strcmp(v[x->bucket[h] - 1]->name, name))
			return (long)x->bucket[h] - 1;
	return -1;
}

/*
 * Pairs each recorded certificate with its desired spec (spec_of[r], -1:
 * none) and marks the specs that have a record (has_rec). Both lists come
 * in name order from reconcile (the desired set, state_cert_list): one merge
 * walk, which also checks that order; out of order, a hash of the specs.
 * Returns whether the lists were in order.
 */
static int plan_pair(const struct plan_input *in, long *spec_of, unsigned char *has_rec)
{
	struct state_cert *const *recs = in->recorded;
	struct cert_spec *const *v = in->desired;
	size_t j = 0, nv = in->n_desired, nr = in->n_recorded;
	struct plan_index x;

	for (size_t r = 0; r < nr; r++) {
		int c = 1;

		plan_prefetch_at(v, nv, j, recs, nr, r);
		if (r && strcmp(recs[r - 1]->name, recs[r]->name) >= 0)
			goto unsorted;
		while (j < nv && (c = strcmp(v[j]->name, recs[r]->name)) < 0) {
			if (j && strcmp(v[j - 1]->name, v[j]->name) >= 0)
				goto unsorted;
			j++;
			plan_prefetch_at(v, nv, j, recs, nr, r);
		}
		if (j && j < nv && strcmp(v[j - 1]->name, v[j]->name) >= 0)
			goto unsorted;
		spec_of[r] = j < nv && c == 0 ? (long)j : -1;
		if (spec_of[r] >= 0)
			has_rec[j++] = 1;
	}
	for (j = j ? j : 1; j < nv; j++)
		if (strcmp(v[j - 1]->name, v[j]->name) >= 0)
			goto unsorted;
	return 1;
unsorted:
	memset(has_rec, 0, nv);
	plan_index_build(&x, v, nv);
	for (size_t r = 0; r < nr; r++)
		if ((spec_of[r] = plan_index_find(&x, v, recs[r]->name)) >= 0)
			has_rec[spec_of[r]] = 1;
	free(x.bucket);
	return 0;
}

/* Each change's spec (changes and specs both in name order when sorted) and record, for the provider planner. */
static void plan_change_inputs(const struct plan_input *in, int sorted, const struct plan *p,
			       struct cert_spec **spec_for, struct state_cert **rec_for)
{
	struct plan_index x;
	size_t j = 0;

	if (!sorted)
		plan_index_build(&x, in->desired, in->n_desired);
	for (size_t i = 0; i < p->n_changes; i++) {
		const char *name = p->changes[i].name;
		long k = -1;
		int c = 1;

		if (sorted) {
			while (j < in->n_desired && (c = strcmp(in->desired[j]->name, name)) < 0)
				j++;
			k = j < in->n_desired && c == 0 ? (long)j : -1;
		} else {
			k = plan_index_find(&x, in->desired, name);
		}
		spec_for[i] = k >= 0 ? in->desired[k] : NULL;
		rec_for[i] = in->state ? state_cert_get(in->state, name) : NULL;
	}
	if (!sorted)
		free(x.bucket);
}

int plan_diff(const struct plan_input *in, struct plan **out)
{
	struct plan *p = xcalloc(1, sizeof(*p));
	size_t cap = 0;
	long *spec_of = xmalloc((in->n_recorded + 1) * sizeof(*spec_of));
	unsigned char *has_rec = xcalloc(in->n_desired + 1, 1);
	struct cert_spec **spec_for = NULL;
	struct state_cert **rec_for = NULL;
	int sorted, rc = 0;

	plan_header(p, in->repo, in->ref, in->commit, in->state, in->max_paid);
	sorted = plan_pair(in, spec_of, has_rec);
	/* Recorded certificates: same as desired → decide; absent → remove or orphan. */
	for (size_t r = 0; r < in->n_recorded; r++) {
		const struct state_cert *rec = in->recorded[r];
		const struct plan_drift *drift = NULL;
		const struct cert_spec *s = spec_of[r] >= 0 ? in->desired[spec_of[r]] : NULL;

		if (r + PLAN_AHEAD < in->n_recorded && spec_of[r + PLAN_AHEAD] >= 0)
			plan_prefetch_spec(in->desired[spec_of[r + PLAN_AHEAD]], 0);
		if (r + PLAN_AHEAD / 2 < in->n_recorded && spec_of[r + PLAN_AHEAD / 2] >= 0)
			plan_prefetch_spec(in->desired[spec_of[r + PLAN_AHEAD / 2]], 1);
		plan_prefetch_at(NULL, 0, 0, in->recorded, in->n_recorded, r);
		if (in->n_drift)
			drift = bsearch(rec->name, in->drift, in->n_drift, sizeof(*in->drift), plan_drift_cmp);
		if (s && s->suspend) {
			plan_suspended(p, s);
		} else if (s) {
			plan_one(in, p, &cap, s, rec, in->outputs ? in->outputs[r] : OUTPUT_OK, drift);
			plan_note_window(p, s, rec);
		} else {
			struct plan_change *c = plan_add(p, &cap, rec->name, in->prune ? CHANGE_REMOVE : CHANGE_ORPHAN);

			if (in->prune)
				plan_reason(c, "not_in_manifests",
					    "not in the manifests (policy.prune): outputs deleted, record forgotten");
			else
				plan_reason(
					c, "not_in_manifests",
					"not in the manifests; kept (policy.prune is off, or the revision has errors)");
			c->issuer = xstrdup(rec->issuer);
		}
	}
	/* Desired certificates with no record: create (recorded is the state's whole list). */
	for (size_t i = 0; i < in->n_desired; i++) {
		const struct cert_spec *s = in->desired[i];
		struct plan_change *c;

		if (in->state && has_rec[i])
			continue;
		if (s->suspend) {
			plan_suspended(p, s);
			continue;
		}
		c = plan_add(p, &cap, s->name, CHANGE_CREATE);
		plan_reason(c, "new", "new certificate");
		plan_copy_spec_info(c, s);
	}
	if (p->n_changes)
		qsort(p->changes, p->n_changes, sizeof(*p->changes), plan_cmp);
	if (p->n_windows)
		qsort(p->windows, p->n_windows, sizeof(*p->windows), plan_window_cmp);
	spec_for = xcalloc(p->n_changes + 1, sizeof(*spec_for));
	rec_for = xcalloc(p->n_changes + 1, sizeof(*rec_for));
	plan_change_inputs(in, sorted, p, spec_for, rec_for);
	for (size_t i = 0; i < p->n_changes; i++)
		p->counts[p->changes[i].kind]++;
	rc = plan_fill_steps(in, p, spec_for, rec_for);
	free(spec_of);
	free(has_rec);
	free(spec_for);
	free(rec_for);
	if (rc) {
		plan_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

static void plan_diff_add(struct plan_field_diff **out, size_t *n, size_t *cap, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void plan_diff_add(struct plan_field_diff **out, size_t *n, size_t *cap, const char *field, const char *fmt, ...)
{
	va_list ap;

	util_grow(out, cap, *n + 1, sizeof(**out));
	(*out)[*n].field = xstrdup(field);
	va_start(ap, fmt);
	(*out)[*n].text = xvasprintf(fmt, ap);
	va_end(ap);
	(*n)++;
}

static const char *plan_or_none(const char *s)
{
	return s ? s : "(none)";
}

static void plan_fmt_dur(int64_t s, char out[32])
{
	if (s <= 0)
		snprintf(out, 32, "(default)");
	else
		util_fmt_duration(s, out);
}

void plan_spec_diff(const struct cert_spec *a, const struct cert_spec *b, struct plan_field_diff **out, size_t *n)
{
	static const char *const alg[KEYALG__MAX] = {"RSA", "ECDSA"};
	static const char *const rot[ROTATE__MAX] = {"Always", "Never"};
	size_t cap = 0, i = 0, j = 0;
	char x[32], y[32];

	*out = NULL;
	*n = 0;
	if (!util_streq(a->issuer, b->issuer))
		plan_diff_add(out, n, &cap, "issuer", "%s → %s", a->issuer, b->issuer);
	if (!util_streq(a->common_name, b->common_name))
		plan_diff_add(out, n, &cap, "commonName", "%s → %s", plan_or_none(a->common_name),
			      plan_or_none(b->common_name));
	/* Both name lists are sorted: one merge pass gives removals and additions. */
	while (i < a->n_dns || j < b->n_dns) {
		int c = i >= a->n_dns ? 1 : j >= b->n_dns ? -1 : strcmp(a->dns_names[i], b->dns_names[j]);

		if (c < 0)
			plan_diff_add(out, n, &cap, "dnsNames", "- %s", a->dns_names[i++]);
		else if (c > 0)
			plan_diff_add(out, n, &cap, "dnsNames", "+ %s", b->dns_names[j++]);
		else
			i++, j++;
	}
	if (!util_streq(a->domain, b->domain))
		plan_diff_add(out, n, &cap, "domain", "%s → %s", plan_or_none(a->domain), plan_or_none(b->domain));
	if (a->key_alg != b->key_alg || a->key_size != b->key_size)
		plan_diff_add(out, n, &cap, "privateKey", "%s %d → %s %d", alg[a->key_alg], a->key_size,
			      alg[b->key_alg], b->key_size);
	if (a->rotation != b->rotation)
		plan_diff_add(out, n, &cap, "privateKey.rotationPolicy", "%s → %s", rot[a->rotation], rot[b->rotation]);
	if (a->duration != b->duration) {
		plan_fmt_dur(a->duration, x);
		plan_fmt_dur(b->duration, y);
		plan_diff_add(out, n, &cap, "duration", "%s → %s", x, y);
	}
	if (a->renew_before != b->renew_before) {
		plan_fmt_dur(a->renew_before, x);
		plan_fmt_dur(b->renew_before, y);
		plan_diff_add(out, n, &cap, "renewBefore", "%s → %s", x, y);
	}
	if (a->auto_renew != b->auto_renew)
		plan_diff_add(out, n, &cap, "autoRenew", "%s → %s", a->auto_renew ? "true" : "false",
			      b->auto_renew ? "true" : "false");
	if (!util_streq(a->validation, b->validation))
		plan_diff_add(out, n, &cap, "validation.method", "%s → %s", plan_or_none(a->validation),
			      plan_or_none(b->validation));
	if (!util_streq(a->output_dir, b->output_dir))
		plan_diff_add(out, n, &cap, "output.directory", "%s → %s", a->output_dir, b->output_dir);
}

/* ---------- pull-request plans: manifests at base × manifests at head ---------- */

static int plan_change_ptr_cmp(const void *a, const void *b)
{
	return strcmp((*(struct plan_change *const *)a)->name, (*(struct plan_change *const *)b)->name);
}

static int plan_spec_name_cmp(const void *key, const void *elem)
{
	return strcmp(key, (*(struct cert_spec *const *)elem)->name);
}

static const struct cert_spec *plan_spec_find(struct cert_spec *const *v, size_t n, const char *name)
{
	struct cert_spec *const *s = n ? bsearch(name, v, n, sizeof(*v), plan_spec_name_cmp) : NULL;

	return s ? *s : NULL;
}

/* A spec present on both sides: replace (new certificate), reinstall (moved) or a note (settings only). */
static void plan_pr_both(struct plan *p, size_t *cap, const struct cert_spec *a, const struct cert_spec *b)
{
	struct plan_field_diff *d;
	size_t n;
	struct plan_change *c;

	plan_spec_diff(a, b, &d, &n);
	if (strcmp(a->hash, b->hash)) {
		c = plan_add(p, cap, b->name, CHANGE_REPLACE);
		if (!util_streq(a->issuer, b->issuer))
			plan_reason(c, "issuer_changed", "issuer changed from %s to %s", a->issuer, b->issuer);
		else
			plan_reason(c, "spec_changed", "names, key or validity changed");
	} else if (!util_streq(a->output_dir, b->output_dir)) {
		c = plan_add(p, cap, b->name, CHANGE_REINSTALL);
		plan_reason(c, "output_moved", "output directory changed from %s to %s", a->output_dir, b->output_dir);
	} else if (a->formats != b->formats) {
		char fa[MANIFEST_FORMATS_TEXT], fb[MANIFEST_FORMATS_TEXT];

		manifest_formats_text(a->formats, fa);
		manifest_formats_text(b->formats, fb);
		c = plan_add(p, cap, b->name, CHANGE_REINSTALL);
		plan_reason(c, "output_formats", "output formats changed from [%s] to [%s] (same certificate)", fa, fb);
	} else {
		/* renewBefore, autoRenew, rotationPolicy: nothing is issued now; say what changed. */
		for (size_t i = 0; i < n; i++)
			plan_add_warning(p, "%s: %s: %s (takes effect at the next renewal; nothing is issued now)",
					 b->name, d[i].field, d[i].text);
		for (size_t i = 0; i < n; i++) {
			free(d[i].field);
			free(d[i].text);
		}
		free(d);
		return;
	}
	c->diffs = d;
	c->n_diffs = n;
	plan_copy_spec_info(c, b);
}

/* Moves the renewals and pending work the state shows for specs the change leaves alone. */
static int plan_pr_state_work(const struct plan_pr_input *in, struct plan *p, size_t *cap)
{
	struct plan_input si;
	struct plan *sp = NULL;
	struct state_cert **recs;
	size_t n_recs = 0, n_before = p->n_changes;
	int rc;

	memset(&si, 0, sizeof(si));
	recs = state_cert_list(in->state, &n_recs);
	si.desired = in->head;
	si.n_desired = in->n_head;
	si.state = in->state;
	si.recorded = recs;
	si.n_recorded = n_recs;
	si.now = in->now;
	si.max_paid = in->max_paid;
	rc = plan_diff(&si, &sp);
	free(recs);
	if (rc)
		return rc;
	for (size_t i = 0; i < sp->n_changes; i++) {
		struct plan_change *c = &sp->changes[i];
		int taken = 0;

		if (c->kind != CHANGE_RENEW && c->kind != CHANGE_RESUME)
			continue;
		for (size_t k = 0; k < n_before && !taken; k++)
			taken = !strcmp(p->changes[k].name, c->name);
		if (taken)
			continue;
		util_grow(&p->changes, cap, p->n_changes + 1, sizeof(*p->changes));
		p->changes[p->n_changes++] = *c;
		memset(c, 0, sizeof(*c));
	}
	for (size_t i = 0; i < sp->n_warnings; i++)
		plan_add_warning(p, "%s", sp->warnings[i]);
	plan_free(sp);
	return 0;
}

int plan_pr_diff(const struct plan_pr_input *in, struct plan **out)
{
	struct plan *p = xcalloc(1, sizeof(*p));
	struct plan_input steps_in;
	struct plan_change **order = NULL;
	struct plan_change *sorted = NULL;
	struct cert_spec **spec_for = NULL;
	struct state_cert **rec_for = NULL;
	size_t cap = 0, i = 0, j = 0, n_created, first_create, in_head = 0;
	const char **renamed_to = NULL; /* per removal: the created name it was renamed to */
	int rc = 0;

	plan_header(p, in->repo, in->ref, in->commit, in->state, in->max_paid);
	p->base_commit = xstrdup(in->base_commit);
	/* Both sides are sorted by name: one merge pass; removals first, creations after. */
	while (i < in->n_base || j < in->n_head) {
		int c = i >= in->n_base ? 1 : j >= in->n_head ? -1 : strcmp(in->base[i]->name, in->head[j]->name);

		if (c < 0)
			plan_add(p, &cap, in->base[i++]->name, CHANGE_REMOVE);
		else if (c == 0 && in->head[j]->suspend) {
			i++; /* spec.suspend: nothing planned (said below) */
			j++;
		} else if (c == 0)
			plan_pr_both(p, &cap, in->base[i++], in->head[j++]);
		else
			j++;
	}
	first_create = p->n_changes;
	for (j = 0; j < in->n_head; j++)
		if (in->head[j]->suspend && !in->state) /* with a state, its pass (plan_diff) says it */
			plan_suspended(p, in->head[j]);
		else if (!in->head[j]->suspend && !plan_spec_find(in->base, in->n_base, in->head[j]->name))
			plan_add(p, &cap, in->head[j]->name, CHANGE_CREATE);
	n_created = p->n_changes - first_create;
	/* Renames: a removed spec and a created one with the same hash are the same certificate renamed. */
	renamed_to = xcalloc(first_create + 1, sizeof(*renamed_to));
	for (size_t k = first_create; k < first_create + n_created; k++) {
		struct plan_change *c = &p->changes[k];
		const struct cert_spec *s = plan_spec_find(in->head, in->n_head, c->name);
		const char *from = NULL;

		for (size_t r = 0; r < first_create && !from; r++) {
			const struct cert_spec *old;

			if (p->changes[r].kind != CHANGE_REMOVE || renamed_to[r])
				continue;
			old = plan_spec_find(in->base, in->n_base, p->changes[r].name);
			if (!strcmp(old->hash, s->hash)) {
				renamed_to[r] = s->name;
				from = old->name;
			}
		}
		if (from)
			plan_reason(c, "renamed",
				    "renamed from %s: same spec, new name, so a new certificate is issued (and %s's is "
				    "removed)",
				    from, from);
		else
			plan_reason(c, "new", "new certificate");
		plan_copy_spec_info(c, s);
	}
	for (size_t r = 0; r < first_create; r++) {
		struct plan_change *c = &p->changes[r];
		const struct cert_spec *old;

		if (c->kind != CHANGE_REMOVE)
			continue;
		old = plan_spec_find(in->base, in->n_base, c->name);
		if (!in->prune)
			c->kind = CHANGE_ORPHAN;
		if (renamed_to[r] && in->prune)
			plan_reason(c, "renamed", "renamed to %s: outputs deleted, record forgotten", renamed_to[r]);
		else if (renamed_to[r])
			plan_reason(
				c, "renamed",
				"renamed to %s; the old name is kept (policy.prune is off, or the revision has errors)",
				renamed_to[r]);
		else if (in->prune)
			plan_reason(c, "not_in_manifests",
				    "not in the manifests (policy.prune): outputs deleted, record forgotten");
		else
			plan_reason(c, "not_in_manifests",
				    "not in the manifests; kept (policy.prune is off, or the revision has errors)");
		c->issuer = xstrdup(old->issuer);
		c->file = xstrdup(old->file);
		c->line = old->line;
	}
	free(renamed_to);
	if (in->state && (rc = plan_pr_state_work(in, p, &cap)))
		goto out;
	/* Sort by name; steps, providers and the paid cap in that order, as plan_diff does. */
	order = xcalloc(p->n_changes + 1, sizeof(*order));
	for (size_t k = 0; k < p->n_changes; k++)
		order[k] = &p->changes[k];
	qsort(order, p->n_changes, sizeof(*order), plan_change_ptr_cmp);
	sorted = xcalloc(p->n_changes + 1, sizeof(*sorted));
	for (size_t k = 0; k < p->n_changes; k++)
		sorted[k] = *order[k];
	free(p->changes);
	p->changes = sorted;
	spec_for = xcalloc(p->n_changes + 1, sizeof(*spec_for));
	rec_for = xcalloc(p->n_changes + 1, sizeof(*rec_for));
	for (size_t k = 0; k < p->n_changes; k++) {
		struct plan_change *c = &p->changes[k];

		spec_for[k] = (struct cert_spec *)plan_spec_find(in->head, in->n_head, c->name);
		rec_for[k] = in->state ? state_cert_get(in->state, c->name) : NULL;
		p->counts[c->kind]++;
		in_head += spec_for[k] != NULL;
		/* Renewals and resumes were planned against the state: plan their steps afresh here. */
		for (size_t s = 0; s < c->n_steps; s++)
			free(c->steps[s]);
		c->n_steps = 0;
		free(c->provider);
		free(c->product);
		free(c->detail);
		c->provider = c->product = c->detail = NULL;
		c->paid = c->deferred = 0;
	}
	p->counts[CHANGE_NONE] = in->n_head - in_head;
	memset(&steps_in, 0, sizeof(steps_in));
	steps_in.steps_fn = in->steps_fn;
	steps_in.steps_arg = in->steps_arg;
	steps_in.max_paid = in->max_paid;
	rc = plan_fill_steps(&steps_in, p, spec_for, rec_for);
out:
	free(order);
	free(spec_for);
	free(rec_for);
	if (rc) {
		plan_free(p);
		return rc;
	}
	*out = p;
	return 0;
}
