/* The daemon's work: reconcile passes (only what is due), webhook deliveries, owed hooks, metrics snapshots. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "daemon_int.h"
#include "../engine.h"
#include "../hooks.h"
#include "../metrics.h"
#include "../outputs.h"
#include "../outwatch.h"
#include "../provider.h"

#define HOOK_BACKOFF_BASE 30
#define HOOK_BACKOFF_MAX 3600
#define WEBHOOK_BATCH 64

/* ---------- which certificates a webhook or SIGUSR1 pushed ---------- */

static int daemon_is_forced(const struct daemon *d, const char *name)
{
	if (d->force)
		return 1;
	for (size_t i = 0; i < d->n_forced; i++)
		if (!strcmp(d->forced[i], name))
			return 1;
	return 0;
}

void daemon_force(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_forced; i++)
		if (!strcmp(d->forced[i], name))
			return;
	util_grow(&d->forced, &d->cap_forced, d->n_forced + 1, sizeof(*d->forced));
	d->forced[d->n_forced++] = xstrdup(name);
}

/* An explicit retry (SIGUSR2, POST /retry) asked about this certificate. */
static int daemon_is_retried(const struct daemon *d, const char *name)
{
	if (d->retry_all)
		return 1;
	for (size_t i = 0; i < d->n_retry; i++)
		if (!strcmp(d->retry[i], name))
			return 1;
	return 0;
}

void daemon_retry(struct daemon *d, const char *name)
{
	d->kick = 1;
	if (!name) {
		d->retry_all = 1;
		d->force = 1;
		return;
	}
	daemon_force(d, name);
	for (size_t i = 0; i < d->n_retry; i++)
		if (!strcmp(d->retry[i], name))
			return;
	util_grow(&d->retry, &d->cap_retry, d->n_retry + 1, sizeof(*d->retry));
	d->retry[d->n_retry++] = xstrdup(name);
}

static void daemon_forced_clear(struct daemon *d)
{
	for (size_t i = 0; i < d->n_forced; i++)
		free(d->forced[i]);
	d->n_forced = 0;
	d->force = 0;
	for (size_t i = 0; i < d->n_retry; i++)
		free(d->retry[i]);
	d->n_retry = 0;
	d->retry_all = 0;
}

static void daemon_outnotes_clear(struct daemon *d)
{
	for (size_t i = 0; i < d->n_outnotes; i++)
		free(d->outnotes[i].name);
	free(d->outnotes);
	d->outnotes = NULL;
	d->n_outnotes = 0;
}

void daemon_pass_free(struct daemon *d)
{
	daemon_forced_clear(d);
	free(d->forced);
	free(d->retry);
	d->forced = d->retry = NULL;
	d->cap_forced = d->cap_retry = 0;
	daemon_outnotes_clear(d);
	outwatch_free(d->outwatch);
	d->outwatch = NULL;
}

/*
 * Whether a failed certificate is retried without being asked (with backoff):
 * configuration and transient failures are (nothing was bought, or the
 * provider may answer next time); a rejection by the provider, a verification
 * failure and a failure of unknown class wait for a manifest change or an
 * explicit retry, because a retry may spend money again.
 */
static int daemon_retries_alone(const struct state_cert *rec)
{
	return util_streq(rec->failure_class, STATE_FAIL_CONFIG) ||
	       util_streq(rec->failure_class, STATE_FAIL_TRANSIENT);
}

const struct cert_spec *daemon_spec(const struct daemon *d, const char *name)
{
	size_t lo = 0, hi = d->des.n_specs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(name, d->des.specs[mid]->name);

		if (!c)
			return d->des.specs[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* When a ready certificate's renewal is due, jitter included (0 = unknown). */
static int64_t daemon_renew_at(const struct cert_spec *s, const struct state_cert *rec)
{
	int64_t at = plan_renewal_time(s, rec);
	struct plan_window w;

	if (!at)
		return 0;
	/* A point the CA's window (ARI) chose is random already, and jitter could push it out of the window. */
	if (plan_ari_window(rec, &w) && at == w.at)
		return at;
	return at + daemon_renewal_jitter(rec->name, rec->not_before, rec->not_after, at);
}

/*
 * policy.maxPaidOrders holds per revision, not per pass: otherwise a commit
 * adding 500 certificates would be bought 10 at a time, one batch per
 * interval. New certificates and replacements beyond the cap wait for the next
 * revision (or a restart); renewals and resumes are only capped per pass.
 * Returns 1 if the change may go ahead.
 */
static int daemon_budget(struct daemon *d, const struct plan_change *c, size_t *over)
{
	if (!c->paid || (c->kind != CHANGE_CREATE && c->kind != CHANGE_REPLACE))
		return 1;
	if (strcmp(d->budget_commit, d->commit)) {
		memcpy(d->budget_commit, d->commit, sizeof(d->budget_commit));
		d->paid_used = 0;
		d->budget_warned = 0;
	}
	if (d->paid_used >= d->cfg->policy.max_paid_orders) {
		(*over)++;
		return 0;
	}
	d->paid_used++;
	return 1;
}

/*
 * Keeps only the changes that are due: a pending step, or a failed one that
 * is retried alone, waits for its next-try time (backoff) unless a webhook,
 * SIGHUP, SIGUSR1 or an explicit retry asked about it; a failed certificate
 * that waits for an explicit retry goes only when one names it (the plan was
 * made with retry_failed for it); a renewal waits for its jittered time; a
 * revision with invalid manifests only maintains what exists (renew, resume,
 * reinstall). Returns what is left.
 */
static size_t daemon_filter(struct daemon *d, struct plan *p, int64_t now)
{
	int partial_block = d->des.diags.n && !d->opts->allow_partial;
	size_t due = 0, over = 0, lost = 0;

	for (size_t i = 0; i < p->n_changes; i++) {
		struct plan_change *c = &p->changes[i];
		const struct state_cert *rec = state_cert_get(d->st, c->name);

		if (c->kind == CHANGE_NONE || c->kind == CHANGE_ORPHAN || c->deferred)
			continue;
		if (partial_block &&
		    (c->kind == CHANGE_CREATE || c->kind == CHANGE_REPLACE || c->kind == CHANGE_REMOVE)) {
			c->kind = CHANGE_NONE;
			continue;
		}
		if (c->kind == CHANGE_RESUME && rec && rec->phase == PHASE_FAILED && !daemon_is_retried(d, c->name) &&
		    !daemon_retries_alone(rec)) {
			c->kind = CHANGE_NONE;
			continue;
		}
		if (c->kind == CHANGE_RESUME && rec && rec->next_try > now && !daemon_is_forced(d, c->name)) {
			c->kind = CHANGE_NONE;
			continue;
		}
		if (c->kind == CHANGE_RENEW && rec && rec->not_after > now) {
			const struct cert_spec *s = daemon_spec(d, c->name);
			int64_t at = s ? daemon_renew_at(s, rec) : 0;

			if (at && now < at) {
				c->kind = CHANGE_NONE;
				continue;
			}
		}
		if (d->lost_state && c->paid) {
			c->kind = CHANGE_NONE;
			lost++;
			continue;
		}
		if (!daemon_budget(d, c, &over)) {
			c->kind = CHANGE_NONE;
			continue;
		}
		due++;
	}
	if (lost && !d->lost_warned) {
		log_error("%zu paid change%s refused: the state is missing but its backup is there (restore it with "
			  "\"certsync state restore\" and restart run, or apply --ignore-backup to start without it)",
			  lost, lost == 1 ? "" : "s");
		d->lost_warned = 1;
	}
	if (over && !d->budget_warned) {
		log_warn("%zu paid order%s deferred: policy.maxPaidOrders (%d) reached for revision %.12s; a new "
			 "commit (or a restart) continues",
			 over, over == 1 ? "" : "s", d->cfg->policy.max_paid_orders, d->commit);
		d->budget_warned = 1;
	}
	return due;
}

/* ---------- a reconcile pass ---------- */

static void daemon_apply(struct daemon *d, struct plan *p, size_t due)
{
	struct engine_opts eo;
	struct engine_result res;
	int64_t t0 = util_mono_ms();
	int rc;

	log_info("reconciling %zu change%s at %.12s", due, due == 1 ? "" : "s", d->commit);
	for (size_t i = 0; i < p->n_account_actions; i++) /* the plan of run is its log */
		log_info("planned account action: %s", p->account_actions[i]);
	memset(&eo, 0, sizeof(eo));
	memset(&res, 0, sizeof(res));
	eo.parallelism = d->opts->parallelism > 0 ? d->opts->parallelism : 4;
	eo.stop = (volatile int *)d->stop;
	eo.keys = d->keys;
	rc = engine_apply(d->cfg, d->be, d->st, p, d->des.specs, d->des.n_specs, &eo, &res);
	if (rc) {
		log_error("%s", cs_errmsg());
		d->state_ok = 0;
	}
	if (!rc || !d->shared)
		daemon_after_apply(d, d->st, util_now(), res.done > 0); /* once per pass, however many installed */
	if (res.done)
		daemon_outputs_gc_soon(d, util_now());
	state_set_source(d->st, gitsrc_display(d->git), d->cfg->source.ref, d->commit);
	if (rc && d->shared) {
		/*
		 * A shared state's journal stopped mid-pass: what is in memory is
		 * ahead of the database in ways no write-ahead record describes. It
		 * is read again, as after a crash, and the journal resumes the work.
		 */
		d->reload = 1;
	} else if ((rc = state_save(d->be, d->st))) {
		log_error("%s", cs_errmsg());
		d->state_ok = 0;
		d->fenced = rc == CS_EFENCED;
		d->reload = d->shared;
	} else {
		d->has_state = 1;
		d->dirty = 0;
		if (!rc)
			d->state_ok = 1;
	}
	metrics_reconcile(rc || res.failed ? "failure" : "success", (double)(util_mono_ms() - t0) / 1000.0);
	log_info("reconcile done: %zu done, %zu pending, %zu failed%s%s", res.done, res.pending, res.failed,
		 res.deferred ? ", paid orders deferred by policy.maxPaidOrders" : "",
		 res.skipped ? ", interrupted" : "");
}

/* Remembers which recorded certificates' outputs are not as installed (for /readyz), in name order. */
static void daemon_note_outputs(struct daemon *d, struct state_cert *const *recs, size_t n,
				const enum output_status *outs)
{
	daemon_outnotes_clear(d);
	for (size_t i = 0; i < n; i++) {
		if (output_as_installed(outs[i]))
			continue;
		d->outnotes = xrealloc(d->outnotes, (d->n_outnotes + 1) * sizeof(*d->outnotes));
		d->outnotes[d->n_outnotes].name = xstrdup(recs[i]->name);
		d->outnotes[d->n_outnotes++].status = outs[i];
	}
}

/* Logs what an explicit retry is about to do, once per request. */
static void daemon_log_retry(const struct daemon *d)
{
	if (d->retry_all)
		log_info("explicit retry: failed certificates are retried now (as apply --retry-failed)");
	for (size_t i = 0; i < d->n_retry; i++) {
		const struct state_cert *rec = state_cert_get(d->st, d->retry[i]);
		struct log_ctx lc = {d->retry[i], NULL, NULL, NULL};

		if (!daemon_spec(d, d->retry[i]))
			log_emit(LV_WARN, &lc, "explicit retry: no certificate of that name in the manifests");
		else if (!rec || rec->phase != PHASE_FAILED)
			log_emit(LV_INFO, &lc, "explicit retry: not failed; anything pending is tried now");
		else
			log_emit(LV_INFO, &lc, "explicit retry: retrying failed step %s", rec->step ? rec->step : "?");
	}
}

int64_t daemon_cpu_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts))
		return 0;
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The recorded certificates' outputs (recs: state_cert_list order), through
 * the watcher of the configured root (made anew if that changed); noted for
 * /readyz.
 */
static enum output_status *daemon_observe_outputs(struct daemon *d, struct state_cert *const *recs, size_t n,
						  int64_t now)
{
	enum output_status *outs;

	if (d->outwatch && strcmp(outwatch_root(d->outwatch), d->cfg->output_root)) {
		outwatch_free(d->outwatch);
		d->outwatch = NULL;
	}
	if (!d->outwatch)
		d->outwatch = outwatch_new(d->cfg->output_root);
	outs = reconcile_observe_watched(d->cfg, recs, n, d->outwatch, now);
	daemon_note_outputs(d, recs, n, outs);
	return outs;
}

void daemon_pass(struct daemon *d)
{
	struct reconcile_opts ro;
	struct plan *p = NULL;
	int64_t now = util_now(), t0 = util_mono_ms(), cpu0 = daemon_cpu_us(), t_out;
	struct state_cert **recs;
	enum output_status *outs;
	size_t n_recs = 0, due;

	d->kick = 0;
	d->last_plan = now;
	daemon_log_retry(d);
	memset(&ro, 0, sizeof(ro));
	ro.now = now;
	/* Only failed certificates an explicit retry names are kept from this (daemon_filter). */
	ro.retry_failed = d->retry_all || d->n_retry;
	/* One sorted list of the records for the whole pass (upkeep changes records, never which there are). */
	recs = state_cert_list(d->st, &n_recs);
	ro.recorded = recs;
	ro.n_recorded = n_recs;
	/* What upkeep learns (the CA's renewal window, ARI) counts in this pass; saved with the next save. */
	if (reconcile_upkeep_recs(d->cfg, recs, n_recs, now, (volatile int *)d->stop))
		d->dirty = 1;
	t_out = util_mono_ms();
	outs = daemon_observe_outputs(d, recs, n_recs, now);
	ro.observed = outs;
	/* A copied or restored output root: its signatures are recorded once, saved with the next save. */
	if (reconcile_restamp_outputs(d->cfg, recs, n_recs, outs, now))
		d->dirty = 1;
	t_out = util_mono_ms() - t_out;
	if (reconcile_plan(d->cfg, gitsrc_display(d->git), d->cfg->source.ref, &d->des, d->st, d->has_state, &ro, &p)) {
		log_error("plan: %s", cs_errmsg());
		goto out;
	}
	due = daemon_filter(d, p, now);
	log_debug("planned %zu certificates in %" PRId64 " ms (outputs %" PRId64 " ms, the rest %" PRId64
		  " ms; %" PRId64 " ms of CPU): %zu due",
		  d->des.n_specs, util_mono_ms() - t0, t_out, util_mono_ms() - t0 - t_out,
		  (daemon_cpu_us() - cpu0) / 1000, due);
	if (due) {
		daemon_apply(d, p, due);
		free(outs);
		free(recs);
		recs = state_cert_list(d->st, &n_recs); /* the apply added and removed records */
		outs = daemon_observe_outputs(d, recs, n_recs, util_now());
	} else if (!util_streq(d->st->source_commit, d->commit)) {
		/* A commit that changes nothing: a few bytes say so, not a rewrite of the whole state. */
		if (state_note_source(d->be, d->st, gitsrc_display(d->git), d->cfg->source.ref, d->commit)) {
			log_warn("recording revision %.12s: %s (the state is saved in full instead)", d->commit,
				 cs_errmsg());
			d->dirty = 1;
		} else {
			d->has_state = 1;
		}
	}
	if (!__atomic_load_n(d->stop, __ATOMIC_RELAXED))
		d->first_done = 1;
out:
	free(outs);
	free(recs);
	daemon_forced_clear(d);
	plan_free(p);
}

/* ---------- webhooks ---------- */

/* Event names become a label: only known ones are kept (a forged name cannot grow the series). */
static const char *daemon_event_label(const char *ev)
{
	static const char *const known[] = {
		"certificate.issue",
		"certificate.reissue",
		"certificate.remove_private_key",
		"certificate.auto_renewal_enable",
		"certificate.auto_renewal_disable",
		"certificate.auto_renewal_failed",
		"webhook.create",
		"webhook.delete",
		NULL,
	};

	for (size_t i = 0; ev && known[i]; i++)
		if (!strcmp(ev, known[i]))
			return known[i];
	return ev ? "other" : "unknown";
}

/*
 * The issuer a delivery is for: the path names an issuer, or a provider type
 * (the first issuer of that type; several of one type register by name).
 */
static const struct issuer *daemon_webhook_issuer(const struct daemon *d, const char *seg)
{
	for (int by_type = 0; by_type < 2; by_type++)
		for (size_t i = 0; i < d->cfg->n_issuers; i++) {
			const struct issuer *is = &d->cfg->issuers[i];

			if (is->priv && is->ops->webhook && !strcmp(by_type ? is->ops->type : is->name, seg))
				return is;
		}
	return NULL;
}

static void daemon_webhook_one(struct daemon *d, const struct webhook_delivery *w)
{
	const struct issuer *is = daemon_webhook_issuer(d, w->provider);
	struct webhook_result r;
	const char *outcome;
	int rc;

	if (!is) {
		metrics_webhook_event("unknown", "unknown", "unknown_provider");
		return;
	}
	cs_error_clear();
	memset(&r, 0, sizeof(r));
	rc = is->ops->webhook(is, w->body, w->len, d->st, &r);
	if (rc) {
		outcome = "malformed";
		log_debug("webhook for issuer %s refused: %s", is->name, cs_errmsg());
	} else if (r.duplicate) {
		outcome = "duplicate";
	} else if (r.ignored) {
		outcome = "ignored";
		d->dirty = 1; /* the request id is recorded as seen */
	} else {
		outcome = "accepted";
		d->dirty = 1;
		for (size_t k = 0; k < r.n_names; k++) {
			struct log_ctx lc = {r.names[k], is->name, NULL, NULL};

			if (d->leader) {
				log_emit(LV_INFO, &lc, "webhook %s: reconciling now", daemon_event_label(r.event));
				daemon_force(d, r.names[k]);
			} else if (state_kick(d->be, r.names[k])) {
				log_emit(LV_WARN, &lc, "webhook %s: not forwarded to the leader: %s",
					 daemon_event_label(r.event), cs_errmsg());
			} else {
				log_emit(LV_INFO, &lc, "webhook %s: forwarded to the leader",
					 daemon_event_label(r.event));
			}
		}
	}
	metrics_webhook_event(is->ops->type, rc ? "unknown" : daemon_event_label(r.event), outcome);
	webhook_result_free(&r);
}

void daemon_webhooks(struct daemon *d)
{
	struct webhook_delivery batch[WEBHOOK_BATCH];
	size_t n;

	while ((n = http_server_take(d->srv, batch, WEBHOOK_BATCH)) > 0) {
		for (size_t i = 0; i < n; i++) {
			daemon_webhook_one(d, &batch[i]);
			free(batch[i].body);
		}
	}
}

/* ---------- owed on-change hooks ---------- */

void daemon_hooks(struct daemon *d, int64_t now, int force)
{
	if (daemon_hooks_in(d, d->st, now, force))
		d->dirty = 1;
}

int daemon_hooks_in(struct daemon *d, struct state *st, int64_t now, int force)
{
	size_t n = 0;
	struct state_cert **recs;
	int changed = 0;

	if (!d->cfg->hooks.n_on_change || !st)
		return 0;
	recs = state_cert_list(st, &n);
	for (size_t i = 0; i < n && !__atomic_load_n(d->stop, __ATOMIC_RELAXED); i++) {
		struct state_cert *r = recs[i];
		const char *next = state_cert_id(r, ENGINE_ID_HOOK_NEXT);
		const char *att = state_cert_id(r, ENGINE_ID_HOOK_ATTEMPTS);
		long long attempts = att ? strtoll(att, NULL, 10) : 0;
		char buf[32];

		if (!state_cert_id(r, ENGINE_ID_HOOK_RETRY) || r->phase != PHASE_READY)
			continue;
		if (next && strtoll(next, NULL, 10) > now && !force)
			continue;
		if (next && !hooks_on_change(d->cfg, r->name, r->output_dir, daemon_spec(d, r->name))) {
			state_cert_set_id(r, ENGINE_ID_HOOK_RETRY, NULL);
			state_cert_set_id(r, ENGINE_ID_HOOK_ATTEMPTS, NULL);
			state_cert_set_id(r, ENGINE_ID_HOOK_NEXT, NULL);
		} else {
			int64_t wait = HOOK_BACKOFF_BASE;

			for (long long k = 1; k < attempts && wait < HOOK_BACKOFF_MAX; k++)
				wait *= 2;
			if (wait > HOOK_BACKOFF_MAX)
				wait = HOOK_BACKOFF_MAX;
			snprintf(buf, sizeof(buf), "%lld", attempts + (next ? 1 : 0));
			state_cert_set_id(r, ENGINE_ID_HOOK_ATTEMPTS, buf);
			snprintf(buf, sizeof(buf), "%lld", (long long)(now + wait));
			state_cert_set_id(r, ENGINE_ID_HOOK_NEXT, buf);
		}
		changed = 1;
	}
	free(recs);
	return changed;
}

int daemon_after_apply(struct daemon *d, struct state *st, int64_t now, int force)
{
	size_t cleared = 0;
	int64_t wait = HOOK_BACKOFF_BASE;

	if (!st || (!force && (!d->after_owed || now < d->after_next)))
		return 0;
	if (!hooks_after_apply(d->cfg, st, d->have_des ? d->des.specs : NULL, d->have_des ? d->des.n_specs : 0,
			       &cleared)) {
		d->after_owed = 0;
		d->after_attempts = 0;
		d->after_next = 0;
		return cleared > 0;
	}
	d->after_owed = 1;
	for (int k = 0; k < d->after_attempts && wait < HOOK_BACKOFF_MAX; k++)
		wait *= 2;
	d->after_attempts++;
	d->after_next = now + (wait > HOOK_BACKOFF_MAX ? HOOK_BACKOFF_MAX : wait);
	return 0;
}

void daemon_outputs_gc_soon(struct daemon *d, int64_t now)
{
	int64_t at = now + d->cfg->output.keep_previous + 1;

	if (!d->outputs_gc_at || at < d->outputs_gc_at)
		d->outputs_gc_at = at;
}

void daemon_outputs_gc(struct daemon *d, int64_t now)
{
	struct state *st = d->leader ? d->st : d->local;
	int64_t next = 0;
	size_t n;

	if (!d->outputs_gc_at || now < d->outputs_gc_at || !d->first_done || !st)
		return;
	n = outputs_gc(d->cfg->output_root, st, d->cfg->output.keep_previous, now, &next);
	if (n)
		log_debug("removed %zu replaced output generation%s (output.keepPreviousFor passed)", n,
			  n == 1 ? "" : "s");
	d->outputs_gc_at = next ? next + 1 : 0;
}

/* ---------- observation: schedule, metrics, readiness ---------- */

#define READY_MAX_LISTED 50 /* certificates named in the /readyz body; the rest are counted */
#define READY_MAX_ERROR 512 /* bytes of a last error shown there */

/*
 * A due time the next wake-up must honour: those after the last pass's plan
 * time (that pass already weighed the earlier ones), even if already past
 * (then the loop passes again at once instead of sleeping through it).
 */
static void daemon_due(int64_t *due, int64_t t, int64_t after)
{
	if (t > after && (!*due || t < *due))
		*due = t;
}

/* The notes are in name order (state_cert_list's), so a binary search finds one. */
static enum output_status daemon_outnote(const struct daemon *d, const char *name)
{
	size_t lo = 0, hi = d->n_outnotes;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(name, d->outnotes[mid].name);

		if (!c)
			return d->outnotes[mid].status;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return OUTPUT_OK;
}

/*
 * Why a desired certificate is not ready, or NULL when it is: a valid
 * certificate for its current spec and issuer is installed, its outputs are
 * as installed, and it is not failed. A renewal in progress (or backing off)
 * keeps it ready while the installed certificate is still valid.
 */
static const char *daemon_not_ready(const struct daemon *d, const struct state_cert *r, const struct cert_spec *s,
				    int64_t now)
{
	enum output_status o;

	if (!r)
		return "not_attempted";
	if (r->phase == PHASE_FAILED)
		return "failed";
	if (!r->fingerprint)
		return "pending";
	if (r->not_after <= now)
		return "expired";
	if (s && (!util_streq(r->spec_hash, s->hash) || !util_streq(r->issuer, s->issuer)))
		return "outdated";
	if (d->shared && !d->leader)
		return daemon_replica_not_ready(d, r); /* a follower's own outputs */
	o = daemon_outnote(d, r->name);
	if (o == OUTPUT_MISSING)
		return "outputs_missing";
	if (o == OUTPUT_ALTERED)
		return "outputs_altered";
	return NULL;
}

/* The ready_status condition: 1 True, 0 False, -1 Unknown (in the manifests, never attempted). */
static int daemon_cert_ready(const struct daemon *d, const struct state_cert *r, const struct cert_spec *s, int64_t now)
{
	const char *why;

	if (!r)
		return -1;
	if (r->phase == PHASE_PENDING && !r->fingerprint && !r->attempts && !r->last_error)
		return -1;
	why = daemon_not_ready(d, r, s, now);
	return why == NULL;
}

/*
 * The failure class of a failing certificate (failed, or its current step
 * failed and backs off), NULL when it is not failing. A record written
 * before classes were recorded reads "unknown" when failed and "transient"
 * when backing off (only transient failures backed off then).
 */
static const char *daemon_fail_class(const struct state_cert *r)
{
	if (!r || (r->phase != PHASE_FAILED && r->attempts < 1))
		return NULL;
	if (r->failure_class)
		return r->failure_class;
	return r->phase == PHASE_FAILED ? "unknown" : STATE_FAIL_TRANSIENT;
}

static void daemon_cert_snapshot(const struct daemon *d, const struct state_cert *r, const struct cert_spec *s,
				 const char *name, int64_t now, struct metrics_cert *m)
{
	const struct issuer *is;

	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	m->issuer = xstrdup(s ? s->issuer : r && r->issuer ? r->issuer : "");
	is = config_issuer(d->cfg, m->issuer);
	m->issuer_kind = xstrdup(is && is->ops ? is->ops->type : "unknown");
	m->ready = daemon_cert_ready(d, r, s, now);
	if (!r)
		return;
	if (r->fingerprint) {
		m->not_before = r->not_before;
		m->not_after = r->not_after;
		m->renewal_time = s ? daemon_renew_at(s, r) : 0;
	}
	m->last_success = r->last_success;
	if (r->step && (r->phase == PHASE_PENDING || (r->phase == PHASE_FAILED && daemon_retries_alone(r))))
		m->next_attempt = r->next_try ? r->next_try : now;
	/* A failed certificate counts at least one failed attempt, whatever the engine recorded. */
	m->failed_attempts = r->phase == PHASE_FAILED && r->attempts < 1 ? 1 : r->attempts;
	m->failing = daemon_fail_class(r) != NULL;
	if (m->failing)
		m->fail_class = xstrdup(daemon_fail_class(r));
	m->last_failure = r->last_error ? r->last_error_time : 0;
}

static void daemon_json_kv(struct buf *b, const char *key, const char *val)
{
	buf_printf(b, ",\"%s\":", key);
	if (val)
		buf_json_str(b, val);
	else
		buf_puts(b, "null");
}

/* One entry of the /readyz "not_ready" list: never a secret (last_error is redacted and cut). */
static void daemon_ready_entry(struct buf *b, const char *name, const char *why, const struct state_cert *r)
{
	char when[32];

	buf_puts(b, "{\"name\":");
	buf_json_str(b, name);
	daemon_json_kv(b, "reason", why);
	daemon_json_kv(b, "phase", r ? state_phase_name(r->phase) : NULL);
	daemon_json_kv(b, "failure_class", daemon_fail_class(r));
	daemon_json_kv(b, "step", r ? r->step : NULL);
	buf_printf(b, ",\"attempts\":%d", r ? r->attempts : 0);
	if (r && r->next_try) {
		util_fmt_time(r->next_try, when);
		daemon_json_kv(b, "next_try", when);
	} else {
		daemon_json_kv(b, "next_try", NULL);
	}
	if (r && r->last_error) {
		char *red = log_redacted(r->last_error);

		if (strlen(red) > READY_MAX_ERROR)
			memcpy(red + READY_MAX_ERROR - 3, "...", 4);
		daemon_json_kv(b, "last_error", red);
		free(red);
	} else {
		daemon_json_kv(b, "last_error", NULL);
	}
	buf_puts(b, "}");
}

/* The /readyz body and verdict: ready once a pass completed, the state is writable and every desired certificate is
 * ready. */
static int daemon_readiness(struct daemon *d, int64_t now, struct state_cert *const *rec_of, struct buf *b)
{
	size_t n_not = 0, listed = 0, n_suspended = 0;
	struct buf list = BUF_INIT;
	char *rev = d->commit[0] ? daemon_revision(d->cfg->source.ref, d->commit) : NULL;
	int ready;

	for (size_t i = 0; d->have_des && i < d->des.n_specs; i++) {
		const struct cert_spec *s = d->des.specs[i];
		const struct state_cert *r = rec_of[i];
		const char *why;

		/* spec.suspend: the operator asked for nothing to happen to it; it does not hold readiness back. */
		if (s->suspend) {
			n_suspended++;
			continue;
		}
		if (!(why = daemon_not_ready(d, r, s, now)))
			continue;
		if (listed < READY_MAX_LISTED) {
			if (listed++)
				buf_puts(&list, ",");
			daemon_ready_entry(&list, s->name, why, r);
		}
		n_not++;
	}
	/* A certificate left out of the revision for manifest errors is one the operator asked for and lacks. */
	ready = d->first_done && d->state_ok && d->have_des && n_not == 0 && !d->des.n_invalid && !d->des.diags.n;
	buf_printf(b, "{\"ready\":%s", ready ? "true" : "false");
	daemon_json_kv(b, "revision", rev);
	buf_printf(b, ",\"source\":{\"ok\":%s", d->fetch_ok ? "true" : "false");
	if (d->fetch_ok) {
		daemon_json_kv(b, "error", NULL);
	} else {
		char *red = log_redacted(d->fetch_error ? d->fetch_error : "not fetched yet");

		daemon_json_kv(b, "error", red);
		free(red);
	}
	if (d->cfg->source.verify.on) {
		/* The head was refused: the revision above is the last verified one. */
		buf_printf(b, ",\"verified\":%s", d->verify_error ? "false" : "true");
		if (d->verify_error) {
			char *red = log_redacted(d->verify_error);

			daemon_json_kv(b, "verify_error", red);
			free(red);
		}
	}
	buf_printf(b, ",\"suspended\":%s", d->cfg->source.suspend ? "true" : "false");
	if (d->cfg->source.suspend)
		daemon_json_kv(b, "reason", "suspended (source.suspend: true): not fetching or applying");
	buf_printf(b, "},\"state_writable\":%s,\"reconciled\":%s", d->state_ok ? "true" : "false",
		   d->first_done ? "true" : "false");
	buf_printf(b, ",\"suspended_certificates\":%zu", n_suspended);
	buf_printf(b, ",\"certificates\":%zu,\"invalid_certificates\":%zu,\"manifest_problems\":%zu",
		   d->have_des ? d->des.n_specs : 0, d->have_des ? d->des.n_invalid : 0,
		   d->have_des ? d->des.diags.n : 0);
	daemon_replica_observe(d, b);
	buf_printf(b, ",\"not_ready_count\":%zu,\"not_ready\":[%s]}", n_not, list.data ? list.data : "");
	buf_free(&list);
	free(rev);
	return ready;
}

/*
 * Pairs the records (state_cert_list: by name) with the desired specs (by
 * name): spec_of[i] for recs[i], rec_of[j] for the j-th spec. One merge walk
 * instead of a binary search per record and a hash lookup per spec; names
 * out of order (never, from those two) fall back to the lookups.
 */
static void daemon_pair(const struct daemon *d, struct state_cert *const *recs, size_t n,
			const struct cert_spec **spec_of, struct state_cert **rec_of)
{
	struct cert_spec *const *v = d->des.specs;
	size_t j = 0, nv = d->have_des ? d->des.n_specs : 0;

	for (size_t i = 0; i < n; i++) {
		int c = 1;

		if (i && strcmp(recs[i - 1]->name, recs[i]->name) >= 0)
			goto lookup;
		while (j < nv && (c = strcmp(v[j]->name, recs[i]->name)) < 0)
			j++;
		if (j < nv && c == 0) {
			spec_of[i] = v[j];
			rec_of[j++] = recs[i];
		}
	}
	return;
lookup:
	for (size_t i = 0; i < n; i++)
		spec_of[i] = nv ? daemon_spec(d, recs[i]->name) : NULL;
	for (j = 0; j < nv; j++)
		rec_of[j] = state_cert_get(d->st, v[j]->name);
}

void daemon_observe(struct daemon *d, int64_t now)
{
	size_t n = 0, k = 0;
	struct state_cert **recs = state_cert_list(d->st, &n);
	struct metrics_cert *m = xcalloc(n + d->des.n_specs + 1, sizeof(*m));
	const struct cert_spec **spec_of = xcalloc(n + 1, sizeof(*spec_of));
	struct state_cert **rec_of = xcalloc(d->des.n_specs + 1, sizeof(*rec_of));
	int64_t due = 0, after = d->have_des ? d->last_plan : now;
	struct buf body = BUF_INIT;
	char *dir;
	int ready;

	daemon_pair(d, recs, n, spec_of, rec_of);
	for (size_t i = 0; i < n; i++) {
		const struct state_cert *r = recs[i];
		const struct cert_spec *s = spec_of[i];
		const char *hn = state_cert_id(r, ENGINE_ID_HOOK_NEXT);

		if (r->step && (r->phase == PHASE_PENDING || (r->phase == PHASE_FAILED && daemon_retries_alone(r))))
			daemon_due(&due, r->next_try, after);
		if (r->phase == PHASE_READY && s && r->fingerprint)
			daemon_due(&due, daemon_renew_at(s, r), after);
		if (hn)
			daemon_due(&due, strtoll(hn, NULL, 10), after);
		if (r->phase == PHASE_READY && s && r->issuer) {
			const struct issuer *is = config_issuer(d->cfg, r->issuer);

			if (is && is->priv && is->ops->upkeep_due)
				daemon_due(&due, is->ops->upkeep_due(is, r), after);
		}
		daemon_cert_snapshot(d, r, s, r->name, now, &m[k++]);
	}
	for (size_t i = 0; d->have_des && i < d->des.n_specs; i++)
		if (!rec_of[i])
			daemon_cert_snapshot(d, NULL, d->des.specs[i], d->des.specs[i]->name, now, &m[k++]);
	free(recs);
	free(spec_of);
	d->next_due = d->leader ? due : 0; /* a follower's passes are the leader's */
	metrics_set_certs(m, k);
	metrics_set_state_serial(d->st->serial);
	if (!d->shared) {
		dir = fsutil_dirname(d->cfg->state_path);
		if (access(dir, W_OK))
			d->state_ok = 0;
		else if (!d->state_ok && !d->dirty)
			d->state_ok = 1;
		free(dir);
	}
	ready = daemon_readiness(d, now, rec_of, &body);
	free(rec_of);
	metrics_set_ready(ready);
	http_server_set_ready(d->srv, ready, body.data ? body.data : "{}");
	buf_free(&body);
}

/* ---------- webhook registration ---------- */

void daemon_register_webhooks(struct daemon *d)
{
	struct buf sec = BUF_INIT;
	const char *base = d->cfg->server.public_url;
	size_t blen;

	if (!base || !*base)
		return;
	if (d->cfg->server.webhook_secret.kind == CRED_NONE) {
		log_warn("server.publicURL is set but server.webhookSecret is not: no webhook registered");
		return;
	}
	if (config_cred_read(&d->cfg->server.webhook_secret, "server.webhookSecret", &sec)) {
		log_error("%s", cs_errmsg());
		return;
	}
	blen = strlen(base);
	while (blen && base[blen - 1] == '/')
		blen--;
	for (size_t i = 0; i < d->cfg->n_issuers; i++) {
		const struct issuer *is = &d->cfg->issuers[i];
		size_t n_type = 0;
		char *url;

		if (!is->priv || !is->ops->ensure_webhook)
			continue;
		for (size_t k = 0; k < d->cfg->n_issuers; k++)
			n_type += d->cfg->issuers[k].ops == is->ops;
		/* Several issuers of one type each get their own path (the issuer's name). */
		url = xasprintf("%.*s/webhooks/%s/%s", (int)blen, base, n_type > 1 ? is->name : is->ops->type,
				sec.data);
		log_info("issuer %s: planned account action: register a webhook with the %s account for "
			 "server.publicURL if it has none",
			 is->name, is->ops->type);
		cs_error_clear();
		if (is->ops->ensure_webhook(is, url))
			log_warn("issuer %s: webhook registration failed (polling still works): %s", is->name,
				 cs_errmsg());
		if (is->ops->end_run)
			is->ops->end_run(is);
		crypto_wipe(url, strlen(url));
		free(url);
	}
	buf_wipe(&sec);
}
