/*
 * Replicas of `certsync run` on a shared state backend (docs/run.md,
 * "Replicas"): the one that holds the lease leads (plans, calls providers,
 * writes the state, as a lone `run` does); the others follow: they read the
 * shared state as it changes and install every recorded certificate from the
 * shared key store into their own output root, never writing the state and
 * never calling a provider. A leader whose lease lapses, or whose write the
 * database fences, follows from that moment. With the file backend there is
 * one process: it leads while it holds the lock, as before.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../state/keystore.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/http.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "daemon_int.h"
#include "../backends.h"
#include "../engine.h"
#include "../hooks.h"
#include "../metrics.h"
#include "../outputs.h"
#include "../provider.h"

#define REPLICA_DEFAULT_LEASE_MS 15000
#define REPLICA_MAX_CERT_FILE (1024 * 1024)

/* The last error logged by the lease and refresh paths: a repeat is not logged again. */
static char replica_last_error[512];

static void replica_error_once(const char *what)
{
	if (!strncmp(replica_last_error, cs_errmsg(), sizeof(replica_last_error) - 1))
		return;
	snprintf(replica_last_error, sizeof(replica_last_error), "%s", cs_errmsg());
	log_warn("%s: %s", what, cs_errmsg());
}

/* ---------- hooks into the backend and the HTTP client ---------- */

/* The HTTP gate: a provider request is sent only while the lease is surely ours. */
static int replica_gate(void *arg)
{
	return state_leading(arg);
}

/* The backend's listener thread: a change was committed, a follower kicked, or the listener reconnected. */
static void replica_on_change(void *arg)
{
	struct daemon *d = arg;

	__atomic_store_n(&d->changed, 1, __ATOMIC_RELEASE);
	daemon_poke();
}

static int64_t replica_lease_ms(const struct daemon *d)
{
	return d->cfg->state.lease_ms > 0 ? d->cfg->state.lease_ms : REPLICA_DEFAULT_LEASE_MS;
}

/*
 * A follower tries the lease every third of its duration plus up to half of
 * that again (jitter, so followers do not ask in step): a lease that lapsed
 * is taken at most half a lease later, well inside the 2 x lease bound.
 */
static void replica_schedule_lease(struct daemon *d)
{
	int64_t third = replica_lease_ms(d) / 3;
	unsigned char r = 0;

	crypto_random(&r, 1);
	d->next_lease_ms = util_mono_ms() + third + third * r / 510;
}

/* ---------- this replica's own outputs ---------- */

static void replica_lagging_clear(struct daemon *d)
{
	for (size_t i = 0; i < d->n_lagging; i++)
		free(d->lagging[i]);
	d->n_lagging = 0;
}

static void replica_lagging_add(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_lagging; i++)
		if (!strcmp(d->lagging[i], name))
			return;
	util_grow(&d->lagging, &d->cap_lagging, d->n_lagging + 1, sizeof(*d->lagging));
	d->lagging[d->n_lagging++] = xstrdup(name);
}

/* Copies what says where and what a record's outputs are (not the provider's data). */
static void replica_copy_outputs(struct state_cert *to, const struct state_cert *from)
{
	static const char *const hook_ids[] = {ENGINE_ID_HOOK_RETRY, ENGINE_ID_HOOK_ATTEMPTS, ENGINE_ID_HOOK_NEXT,
					       OUTPUTS_ID_FORMATS, OUTPUTS_ID_FORMAT_SIGS};

	state_str_set(&to->output_dir, from->output_dir);
	state_str_set(&to->serial, from->serial);
	state_str_set(&to->fingerprint, from->fingerprint);
	state_str_set(&to->out_generation, from->out_generation);
	state_str_set(&to->out_hash, from->out_hash);
	memcpy(to->out_sig, from->out_sig, sizeof(to->out_sig));
	to->not_before = from->not_before;
	to->not_after = from->not_after;
	for (size_t i = 0; i < sizeof(hook_ids) / sizeof(hook_ids[0]); i++)
		state_cert_set_id(to, hook_ids[i], state_cert_id(from, hook_ids[i]));
}

/* d->local from a leader's records: what its output root holds now. */
static void replica_local_from(struct daemon *d, const struct state *st)
{
	size_t n = 0;
	struct state_cert **recs = state_cert_list(st, &n);

	state_free(d->local);
	d->local = state_new();
	for (size_t i = 0; i < n; i++) {
		struct state_cert *l;

		if (!recs[i]->fingerprint || !recs[i]->out_generation || !recs[i]->output_dir)
			continue;
		l = state_cert_put(d->local, recs[i]->name);
		replica_copy_outputs(l, recs[i]);
		l->phase = PHASE_READY;
	}
	free(recs);
}

/*
 * The new leader's records describe the old leader's output root: where this
 * replica installed the same certificate, its own generation and signatures
 * take their place (so the leader does not reinstall what is there).
 */
static void replica_overlay(struct daemon *d, struct state *st)
{
	size_t n = 0;
	struct state_cert **recs = state_cert_list(st, &n);

	for (size_t i = 0; i < n; i++) {
		const struct state_cert *l = state_cert_get(d->local, recs[i]->name);

		if (l && l->out_generation && l->out_hash && util_streq(l->fingerprint, recs[i]->fingerprint) &&
		    util_streq(l->output_dir, recs[i]->output_dir)) {
			state_str_set(&recs[i]->out_generation, l->out_generation);
			state_str_set(&recs[i]->out_hash, l->out_hash);
			memcpy(recs[i]->out_sig, l->out_sig, sizeof(recs[i]->out_sig));
			state_cert_set_id(recs[i], OUTPUTS_ID_FORMATS, state_cert_id(l, OUTPUTS_ID_FORMATS));
			state_cert_set_id(recs[i], OUTPUTS_ID_FORMAT_SIGS, state_cert_id(l, OUTPUTS_ID_FORMAT_SIGS));
		}
	}
	free(recs);
}

/*
 * Whether root/dir holds the certificate with this fingerprint (its tls.crt's
 * leaf, with tls.key and ca.crt beside it). *gen gets the published
 * generation behind the symlink (caller frees; NULL when none).
 */
static int replica_outputs_hold(const struct daemon *d, const char *dir, const char *fingerprint, char **gen)
{
	char *link = fsutil_join(d->cfg->output_root, dir), *crt = fsutil_join(link, "tls.crt");
	char *key = fsutil_join(link, "tls.key"), *ca = fsutil_join(link, "ca.crt");
	char target[PATH_MAX];
	struct buf pem = BUF_INIT;
	struct crypto_cert *leaf = NULL;
	struct crypto_cert_info info;
	ssize_t tl;
	int holds = 0;

	*gen = NULL;
	memset(&info, 0, sizeof(info));
	tl = readlink(link, target, sizeof(target) - 1);
	if (tl > 0 && !strchr((target[tl] = 0, target), '/'))
		*gen = xstrdup(target);
	cs_error_clear();
	if (fingerprint && !fsutil_read_file(crt, REPLICA_MAX_CERT_FILE, &pem) && fsutil_exists(key) &&
	    fsutil_exists(ca) && !crypto_cert_from_pem(pem.data, pem.len, "tls.crt", &leaf) &&
	    !crypto_cert_info(leaf, &info))
		holds = !strcmp(info.fingerprint, fingerprint);
	cs_error_clear();
	crypto_cert_info_free(&info);
	crypto_cert_free(leaf);
	buf_free(&pem);
	free(link);
	free(crt);
	free(key);
	free(ca);
	return holds;
}

/* A record is gone from the shared state: its outputs go as the leader's do (policy.prune). */
static void replica_prune(struct daemon *d, struct state_cert *l)
{
	struct log_ctx lc = {l->name, NULL, NULL, NULL};

	if (d->cfg->policy.prune) {
		if (outputs_remove(d->cfg->output_root, l))
			log_emit(LV_WARN, &lc, "removed from the shared state; its outputs stay: %s", cs_errmsg());
		else
			log_emit(LV_INFO, &lc, "removed from the shared state: outputs %s removed", l->output_dir);
	}
	state_cert_remove(d->local, l->name);
}

/* The hook after a fresh install; a failed one is owed and retried with backoff (daemon_hooks_in). */
static void replica_hook(struct daemon *d, struct state_cert *l)
{
	if (hooks_on_change(d->cfg, l->name, l->output_dir, daemon_spec(d, l->name))) {
		state_cert_set_id(l, ENGINE_ID_HOOK_RETRY, "1");
		state_cert_set_id(l, ENGINE_ID_HOOK_ATTEMPTS, "1");
		state_cert_set_id(l, ENGINE_ID_HOOK_NEXT, NULL);
	} else {
		state_cert_set_id(l, ENGINE_ID_HOOK_RETRY, NULL);
		state_cert_set_id(l, ENGINE_ID_HOOK_ATTEMPTS, NULL);
		state_cert_set_id(l, ENGINE_ID_HOOK_NEXT, NULL);
	}
}

/*
 * The follower needs the manifests of the revision the leader worked from
 * (the spec the recorded certificate was made for): fetch now, once per
 * revision the shared state names.
 */
static void replica_follow_commit(struct daemon *d)
{
	const char *c = d->st->source_commit;

	if (!c || strlen(c) != 40 || !strcmp(c, d->commit) || !strcmp(c, d->follow_commit))
		return;
	memcpy(d->follow_commit, c, sizeof(d->follow_commit));
	d->next_fetch = 0;
	log_debug("the leader works from revision %.12s: fetching", c);
}

/*
 * The level of a failed install's message: the first failure of a
 * certificate's serial is a warning (error for verification), repeats are
 * debug (a lagging certificate is retried at every change).
 */
static enum log_level replica_fail_level(struct daemon *d, const struct state_cert *r, enum log_level first)
{
	struct state_cert *w = state_cert_get(d->warned, r->name);

	if (w && util_streq(w->serial, r->serial))
		return LV_DEBUG;
	w = state_cert_put(d->warned, r->name);
	state_str_set(&w->serial, r->serial);
	return first;
}

/*
 * Installs the recorded certificate r from the key store into this
 * replica's output root: the same verification as the leader's install, the
 * same atomic publication, the same hook. Returns 0 when installed.
 */
static int replica_install(struct daemon *d, const struct state_cert *r, char *gen)
{
	const struct cert_spec *s = daemon_spec(d, r->name);
	struct log_ctx lc = {r->name, NULL, NULL, NULL};
	struct keystore_item it;
	struct step_ctx ctx;
	struct state_cert *l, old;
	int rc, moved;

	if (!s || !util_streq(s->hash, r->spec_hash)) {
		replica_follow_commit(d);
		log_emit(LV_DEBUG, &lc, "waiting for the leader's revision of this certificate's manifest");
		free(gen);
		return CS_ENOTFOUND;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = d->cfg;
	ctx.spec = s;
	ctx.rec = (struct state_cert *)r; /* read only: verification reads the recorded fingerprint */
	ctx.kind = CHANGE_REINSTALL;
	ctx.now = util_now();
	ctx.issuer = config_issuer(d->cfg, s->issuer);
	ctx.log = lc;
	material_init(&ctx.mat);
	keystore_item_init(&it);
	cs_error_clear();
	if ((rc = keystore_get(d->keys, r->name, r->serial, &it))) {
		log_emit(replica_fail_level(d, r, LV_WARN), &lc, "certificate %s not installed here: key store: %s",
			 r->serial, cs_errmsg());
		goto out;
	}
	ctx.mat.cert = it.cert;
	ctx.mat.key = it.key;
	ctx.mat.ca = it.ca;
	keystore_item_init(&it);
	if ((rc = engine_verify(&ctx))) {
		log_emit(replica_fail_level(d, r, LV_ERROR), &lc, "%s", cs_errmsg());
		goto out;
	}
	l = state_cert_put(d->local, r->name);
	memset(&old, 0, sizeof(old));
	moved = l->output_dir && strcmp(l->output_dir, r->output_dir);
	if (moved) {
		old.name = l->name;
		old.output_dir = xstrdup(l->output_dir);
		old.out_generation = l->out_generation ? xstrdup(l->out_generation) : NULL;
	}
	/* The generation found behind the symlink is this replica's: publishing replaces it. */
	state_str_set(&l->out_generation, gen);
	rc = outputs_publish_spec(d->cfg, s, r->output_dir, &ctx.mat.cert, &ctx.mat.key, &ctx.mat.ca, l);
	if (rc) {
		log_emit(replica_fail_level(d, r, LV_WARN), &lc, "certificate %s not installed here: %s", r->serial,
			 cs_errmsg());
	} else {
		if (state_cert_get(d->warned, r->name))
			state_cert_remove(d->warned, r->name);
		state_str_set(&l->output_dir, r->output_dir);
		state_str_set(&l->serial, r->serial);
		state_str_set(&l->fingerprint, r->fingerprint);
		l->not_before = r->not_before;
		l->not_after = r->not_after;
		l->phase = PHASE_READY;
		if (moved && outputs_remove(d->cfg->output_root, &old))
			log_emit(LV_WARN, &lc, "the old outputs %s stay: %s", old.output_dir, cs_errmsg());
		log_emit(LV_INFO, &lc, "installed certificate %s from the shared state", r->serial);
		replica_hook(d, l);
		hooks_after_apply_mark(d->cfg, l);
		d->after_fresh = 1;
		daemon_outputs_gc_soon(d, util_now());
	}
	free(old.output_dir);
	free(old.out_generation);
out:
	free(gen);
	keystore_item_wipe(&it);
	material_wipe(&ctx.mat);
	return rc;
}

/* Brings one certificate's local outputs in line with the shared record. Returns 0 in sync, else not yet. */
static int replica_sync_one(struct daemon *d, const char *name)
{
	const struct state_cert *r = state_cert_get(d->st, name);
	struct state_cert *l = state_cert_get(d->local, name);
	char *gen = NULL;

	if (!r) {
		if (l)
			replica_prune(d, l);
		return 0;
	}
	if (!r->fingerprint || !r->serial || !r->output_dir)
		return 0; /* nothing installed yet by the leader */
	if (replica_outputs_hold(d, r->output_dir, r->fingerprint, &gen)) {
		/* Already here (installed earlier, or by this replica's previous life): only remember it. */
		if (!l || !util_streq(l->fingerprint, r->fingerprint) || !util_streq(l->output_dir, r->output_dir)) {
			l = state_cert_put(d->local, name);
			state_str_set(&l->output_dir, r->output_dir);
			state_str_set(&l->serial, r->serial);
			state_str_set(&l->fingerprint, r->fingerprint);
			state_str_set(&l->out_generation, gen);
			l->not_before = r->not_before;
			l->not_after = r->not_after;
			l->phase = PHASE_READY;
		}
		free(gen);
		return 0;
	}
	return replica_install(d, r, gen) ? 1 : 0;
}

/* Every shared record, and every local one the shared state no longer has. */
static void replica_sync_all(struct daemon *d)
{
	size_t n = 0, nl = 0;
	struct state_cert **recs = state_cert_list(d->st, &n), **locs;

	replica_lagging_clear(d);
	for (size_t i = 0; i < n && !__atomic_load_n(d->stop, __ATOMIC_RELAXED); i++)
		if (replica_sync_one(d, recs[i]->name))
			replica_lagging_add(d, recs[i]->name);
	free(recs);
	locs = state_cert_list(d->local, &nl);
	for (size_t i = 0; i < nl; i++)
		if (!state_cert_get(d->st, locs[i]->name))
			replica_prune(d, locs[i]);
	free(locs);
}

/* The names that changed, and those not installed yet (their material or manifest may be here now). */
static void replica_sync_changed(struct daemon *d, char **changed, size_t n)
{
	char **retry = d->lagging;
	size_t n_retry = d->n_lagging;

	d->lagging = NULL;
	d->n_lagging = d->cap_lagging = 0;
	for (size_t i = 0; i < n; i++)
		if (replica_sync_one(d, changed[i]))
			replica_lagging_add(d, changed[i]);
	for (size_t i = 0; i < n_retry; i++) {
		if (replica_sync_one(d, retry[i]))
			replica_lagging_add(d, retry[i]);
		free(retry[i]);
	}
	free(retry);
}

/* ---------- roles ---------- */

/* Reads the shared state in full (a follower's start, after losing the lease, after a failed refresh). */
static int replica_load(struct daemon *d)
{
	struct state *st = NULL;

	cs_error_clear();
	if (state_load(d->be, &st)) {
		replica_error_once("reading the shared state");
		d->need_load = 1;
		return CS_ETRANSIENT;
	}
	state_free(d->st);
	d->st = st;
	d->need_load = 0;
	d->sync_all = 1;
	d->state_ok = 1;
	d->has_state = st->serial > 0 || state_cert_count(st) > 0;
	replica_last_error[0] = 0;
	return 0;
}

static void replica_promote(struct daemon *d)
{
	struct state *st = NULL;

	(void)state_take_foreign(d->be); /* what others committed so far is in the load below */
	if (state_load(d->be, &st)) {
		log_error("took the state's lease but could not read the state (%s); giving the lease up", cs_errmsg());
		state_unlock(d->be);
		return;
	}
	replica_overlay(d, st);
	state_free(d->st);
	d->st = st;
	d->need_load = 0;
	d->leader = 1;
	d->leader_changes++;
	d->state_ok = 1;
	d->has_state = st->serial > 0 || state_cert_count(st) > 0;
	d->kick = 1;
	d->dirty = 0;
	d->fenced = 0;
	d->reload = 0;
	d->lag_since_ms = 0;
	replica_lagging_clear(d);
	snprintf(d->holder, sizeof(d->holder), "this replica");
	replica_last_error[0] = 0;
	log_info("took the state's lease (epoch %" PRIu64 "): this replica leads (plans, calls providers, writes the "
		 "state)",
		 state_epoch(d->be));
	metrics_set_replica(1, d->leader_changes, 0);
	daemon_register_webhooks(d);
}

static void replica_demote(struct daemon *d, const char *why)
{
	log_warn("%s: this replica follows from now on (no provider call, no state write); the work in progress is "
		 "left to the leader",
		 why);
	replica_local_from(d, d->st); /* what this replica's output root holds */
	state_unlock(d->be);
	d->leader = 0;
	d->leader_changes++;
	d->holder[0] = 0;
	d->dirty = 0;
	d->fenced = 0;
	d->reload = 0;
	metrics_set_replica(0, d->leader_changes, 0);
	daemon_pass_free(d);
	replica_schedule_lease(d);
	replica_load(d);
}

/*
 * A leader whose state write failed (the database went away, a conflict),
 * or that heard another process commit (an edit by hand), reads the state
 * again, as after a crash: the write-ahead records resume what was in
 * flight, and nothing held only in memory is trusted. why ends the log line.
 */
static void replica_reload(struct daemon *d, const char *why)
{
	struct state *st = NULL;

	cs_error_clear();
	if (state_load(d->be, &st)) {
		replica_error_once("reading the state again");
		return;
	}
	replica_local_from(d, d->st); /* this replica's outputs, as the records in memory describe them */
	replica_overlay(d, st);
	state_free(d->st);
	d->st = st;
	d->reload = 0;
	d->dirty = 0;
	d->kick = 1;
	d->state_ok = 1;
	d->has_state = st->serial > 0 || state_cert_count(st) > 0;
	replica_last_error[0] = 0;
	log_info("read the state again %s (serial %llu): the journal resumes what was in flight", why,
		 (unsigned long long)st->serial);
}

/* Asks for the lease; CS_ELOCKED says who has it (logged when that changes). */
static void replica_try_lead(struct daemon *d)
{
	char desc[sizeof(d->holder)];
	int rc;

	replica_schedule_lease(d);
	cs_error_clear();
	rc = state_lock(d->be, "run");
	if (!rc) {
		replica_promote(d);
		return;
	}
	if (rc != CS_ELOCKED) {
		replica_error_once("the state's lease");
		return;
	}
	desc[0] = 0;
	if (state_holder(d->be, desc, sizeof(desc)) || !desc[0])
		snprintf(desc, sizeof(desc), "%s", cs_errmsg());
	desc[strcspn(desc, ";")] = 0; /* who and since when; not the lease's remaining time, which changes */
	if (!strcmp(desc, d->holder))
		return;
	if (d->holder[0])
		d->leader_changes++;
	snprintf(d->holder, sizeof(d->holder), "%s", desc);
	log_info("following the leader: %s", desc);
}

void daemon_replica_fenced(struct daemon *d)
{
	if (!d->shared || !d->leader)
		return;
	if (d->fenced)
		replica_demote(d, "a state write was refused: another replica holds the lease");
	else if (!state_leading(d->be))
		replica_demote(d, "the state's lease lapsed (not renewed in time)");
}

/* The leader takes the webhooks followers forwarded, as its own deliveries. */
static void replica_take_kicks(struct daemon *d)
{
	char **names = NULL;
	size_t n = 0;

	if (state_take_kicks(d->be, &names, &n)) {
		log_warn("kicks from followers: %s", cs_errmsg());
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct log_ctx lc = {names[i], NULL, NULL, NULL};

		if (daemon_spec(d, names[i])) {
			log_emit(LV_INFO, &lc, "a follower received a webhook for it: reconciling now");
			daemon_force(d, names[i]);
			d->kick = 1;
		}
		free(names[i]);
	}
	free(names);
}

static void replica_follow(struct daemon *d)
{
	int changed = __atomic_exchange_n(&d->changed, 0, __ATOMIC_ACQ_REL);
	int64_t now = util_now();
	char **names = NULL;
	size_t n = 0;

	if (d->need_load && replica_load(d))
		return;
	if (changed || d->sync_all || now >= d->next_sync || strcmp(d->commit, d->synced_commit)) {
		cs_error_clear();
		if (state_refresh(d->be, d->st, &names, &n)) {
			replica_error_once("reading the shared state's changes");
			d->need_load = 1;
			return;
		}
		replica_last_error[0] = 0;
		replica_follow_commit(d); /* the leader moved to a revision this replica has not fetched */
		if (d->have_des && (d->sync_all || now >= d->next_sync)) {
			replica_sync_all(d);
			d->sync_all = 0;
			d->next_sync = now + (d->cfg->source.interval > 0 ? d->cfg->source.interval : 60);
			d->first_done = 1;
		} else if (d->have_des) {
			replica_sync_changed(d, names, n);
		}
		memcpy(d->synced_commit, d->commit, sizeof(d->synced_commit));
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	if (!d->n_lagging)
		d->lag_since_ms = 0;
	else if (!d->lag_since_ms)
		d->lag_since_ms = util_mono_ms();
	daemon_hooks_in(d, d->local, now, 0);
	daemon_after_apply(d, d->local, now, d->after_fresh);
	d->after_fresh = 0;
}

void daemon_replica_step(struct daemon *d)
{
	if (!d->shared)
		return;
	daemon_replica_fenced(d);
	if (!d->leader && util_mono_ms() >= d->next_lease_ms)
		replica_try_lead(d);
	if (d->leader) {
		__atomic_store_n(&d->changed, 0, __ATOMIC_RELEASE);
		/* The leader alone writes: a commit by another process (an edit by hand) makes what it holds stale. */
		if (state_take_foreign(d->be) && !d->reload)
			replica_reload(d, "after another process changed it");
		if (d->reload)
			replica_reload(d, "after a failed write");
		replica_take_kicks(d);
	} else {
		replica_follow(d);
	}
}

int64_t daemon_replica_wait_ms(const struct daemon *d)
{
	int64_t ms;

	if (!d->shared)
		return -1;
	if (d->leader)
		return replica_lease_ms(d) / 3; /* notice a lapsed lease while idle */
	ms = d->next_lease_ms - util_mono_ms();
	return ms < 0 ? 0 : ms;
}

const char *daemon_replica_not_ready(const struct daemon *d, const struct state_cert *r)
{
	const struct state_cert *l = state_cert_get(d->local, r->name);

	if (!l)
		return "outputs_missing";
	if (!util_streq(l->fingerprint, r->fingerprint) || !util_streq(l->output_dir, r->output_dir))
		return "outputs_behind";
	return NULL;
}

void daemon_replica_observe(struct daemon *d, struct buf *readyz)
{
	double lag = 0;

	if (!d->shared)
		return;
	if (!d->leader && d->lag_since_ms)
		lag = (double)(util_mono_ms() - d->lag_since_ms) / 1000.0;
	metrics_set_replica(d->leader, d->leader_changes, lag);
	if (!readyz)
		return;
	buf_printf(readyz, ",\"role\":\"%s\",\"leader\":", d->leader ? "leader" : "follower");
	if (d->holder[0])
		buf_json_str(readyz, d->holder);
	else
		buf_puts(readyz, "null");
}

/* ---------- start and end ---------- */

/* The file backend, as always: lock at start or fail. */
static int replica_open_file(struct daemon *d)
{
	char lost[1024];
	int rc;

	d->has_state = fsutil_exists(d->cfg->state_path);
	if (!d->has_state && state_file_lost(d->cfg->state_path, lost, sizeof(lost))) {
		d->lost_state = 1;
		log_warn("there is no state at %s, but its backup %s is there: paid changes wait until the state is "
			 "restored (\"certsync state restore\", then restart run) or an apply --ignore-backup starts "
			 "without it",
			 d->cfg->state_path, lost);
	}
	if ((rc = backends_open_state(d->cfg, &d->be)) || (rc = state_lock(d->be, "run")) ||
	    (rc = state_load(d->be, &d->st))) {
		log_error("%s", cs_errmsg());
		return rc;
	}
	d->has_state = d->has_state || state_cert_count(d->st) > 0;
	d->state_ok = 1;
	d->leader = 1;
	return 0;
}

int daemon_replica_open(struct daemon *d)
{
	char desc[512];
	int rc;

	d->local = state_new();
	d->warned = state_new();
	if (d->cfg->state.backend == STATE_BACKEND_FILE)
		return replica_open_file(d);
	backends_describe(d->cfg, desc, sizeof(desc));
	if ((rc = backends_open_state(d->cfg, &d->be)) || (rc = backends_open_keystore(d->cfg, &d->keys))) {
		log_error("%s", cs_errmsg());
		return rc;
	}
	d->shared = state_shared(d->be);
	log_info("state: %s", desc);
	if (!d->shared) { /* a backend without replicas: as the file backend */
		if ((rc = state_lock(d->be, "run")) || (rc = state_load(d->be, &d->st))) {
			log_error("%s", cs_errmsg());
			return rc;
		}
		d->state_ok = d->leader = 1;
		return 0;
	}
	http_set_gate(replica_gate, d->be);
	state_on_change(d->be, replica_on_change, d);
	d->st = state_new();
	d->need_load = 1;
	d->next_lease_ms = 0;
	replica_try_lead(d);
	if (!d->leader)
		replica_load(d);
	return 0;
}

void daemon_replica_close(struct daemon *d)
{
	if (d->shared) {
		state_on_change(d->be, NULL, NULL);
		http_set_gate(NULL, NULL);
	}
	if (d->leader)
		state_unlock(d->be);
	keystore_close(d->keys);
	d->keys = NULL;
	state_free(d->local);
	d->local = NULL;
	state_free(d->warned);
	d->warned = NULL;
	replica_lagging_clear(d);
	free(d->lagging);
	d->lagging = NULL;
	d->cap_lagging = 0;
}
