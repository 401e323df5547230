/*
 * The apply engine: a small pool of worker threads, one certificate at a
 * time each, every step journaled. Records are created or looked up in the
 * main thread before the workers start, so workers never touch the state's
 * map except to forget a removed record (under the engine lock).
 */
#include "engine.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "../state/keystore.h"
#include "../util/crypto.h"
#include "../util/fsutil.h"
#include "../util/err.h"
#include "../util/http.h"
#include "../util/log.h"
#include "../util/util.h"
#include "engine_eta.h"
#include "hooks.h"
#include "metrics.h"
#include "outputs.h"
#include "provider.h"

#define ENGINE_MAX_PARALLELISM 64
#define ENGINE_BACKOFF_BASE 30
#define ENGINE_BACKOFF_MAX 3600

struct engine_job {
	const struct plan_change *change;
	const struct cert_spec *spec;
	struct state_cert *rec;
	int created; /* the record was made for this job (dropped again if the job never starts) */
	int started;
	/* A job waiting on its provider (apply --wait) is parked, and its worker takes other jobs. */
	struct step_ctx ctx;
	int64_t wake_at; /* parked until then (unix seconds) */
	/* The finish estimate: the issuer, provider requests still needed (at the start, now), no more this run. */
	const struct issuer *issuer;
	int left0, left; /* left: written by the job's worker, read under e->mu (atomics) */
	int over;	 /* under e->mu */
};

struct engine {
	const struct config *cfg;
	struct state_backend *be;
	struct state *st;
	const struct engine_opts *opts;
	pthread_mutex_t mu;
	struct engine_job *jobs;
	size_t n_jobs, next;
	pthread_cond_t cv;	    /* a job was parked or finished */
	struct engine_job **parked; /* jobs waiting on their provider */
	size_t n_parked, running;
	struct engine_result res;
	int fatal;
	char fatal_msg[1024];  /* the first cause of fatal, written by the thread that saw it */
	int64_t deadline;      /* apply --wait: keep polling pending steps until then */
	struct keystore *keys; /* opts->keys, or the file store under cfg->key_dir (own_keys) */
	int own_keys;
	/* Progress lines: every ENGINE_PROGRESS_EVERY finished jobs, and at least every ENGINE_PROGRESS_MS. */
	int64_t t0_ms, last_progress_ms;
	size_t finished, next_mark;
	/* The finish estimate (engine_estimate): worker threads, their time waiting for parked jobs, lines. */
	size_t n_threads;
	int64_t idle_ms;
	int announced;	      /* the providers counted the apply's requests: the first estimate is shown at once */
	int eta_shown;	      /* an estimate was printed */
	double cycle_s;	      /* worker time per request, recent (smoothed) */
	long long cycle_sent; /* requests sent and worker time at the last measure of cycle_s */
	int64_t cycle_worker_ms;
	int64_t eta_every_ms; /* the progress interval the last estimate set */
};

#define ENGINE_PROGRESS_EVERY 100
#define ENGINE_PROGRESS_MS 10000
#define ENGINE_PROGRESS_MIN_MS 2000 /* a short apply's estimate is refreshed this often at most */
#define ENGINE_ETA_PRIOR 10	    /* requests of weight the providers' per-step guesses keep */

void material_init(struct material *m)
{
	buf_init(&m->cert, 0);
	buf_init(&m->key, 0);
	buf_init(&m->ca, 0);
}

void material_wipe(struct material *m)
{
	buf_free(&m->cert);
	buf_wipe(&m->key);
	buf_free(&m->ca);
}

int material_present(const struct material *m)
{
	return m->cert.len > 0 && m->key.len > 0;
}

/* ---------- services for drivers ---------- */

/*
 * Marks the run stopped because the state could not be written (under
 * e->mu). The message lives in the failing worker's thread-local error, so
 * the first one is copied here: the main thread reports that cause, not
 * whatever a later write (or its own last error) said.
 */
static void engine_set_fatal(struct engine *e, const char *name)
{
	/* Called under e->mu; workers read fatal outside the lock, hence the atomics. */
	if (!__atomic_load_n(&e->fatal, __ATOMIC_RELAXED))
		snprintf(e->fatal_msg, sizeof(e->fatal_msg), "%s: %s", name,
			 cs_errmsg()[0] ? cs_errmsg() : "state write failed");
	__atomic_store_n(&e->fatal, 1, __ATOMIC_RELEASE);
}

/*
 * Journals the worker's own record. Not under e->mu: the backends serialise
 * their writes themselves (and touch only st's serial), so a worker waiting
 * for its fsync never holds up the others taking, parking or finishing jobs.
 */
int engine_journal(struct step_ctx *ctx)
{
	struct engine *e = ctx->engine;
	int rc = state_journal(e->be, e->st, ctx->rec->name, ctx->rec);

	if (rc) {
		pthread_mutex_lock(&e->mu);
		engine_set_fatal(e, ctx->rec->name);
		pthread_mutex_unlock(&e->mu);
	}
	return rc;
}

/* The stop flag is set by a signal handler and read by every worker: an atomic load, not a plain read. */
static int engine_stop_flag(const struct engine *e)
{
	return e->opts->stop && __atomic_load_n(e->opts->stop, __ATOMIC_RELAXED);
}

int engine_stop_requested(const struct step_ctx *ctx)
{
	const struct engine *e = ctx->engine;

	return e && engine_stop_flag(e);
}

const char *engine_key_dir(struct step_ctx *ctx)
{
	if (fsutil_mkdir_p(ctx->cfg->key_dir, 0700) == 0)
		chmod(ctx->cfg->key_dir, 0700);
	return ctx->cfg->key_dir;
}

/* ---------- the key store ---------- */

/*
 * The key store for ctx: the engine's shared handle; outside an engine run
 * (a driver or an install called on its own) the file store under
 * cfg->key_dir, opened into *tmp for the caller to close.
 */
static struct keystore *engine_keys(struct step_ctx *ctx, struct keystore **tmp)
{
	*tmp = NULL;
	if (ctx->engine && ctx->engine->keys)
		return ctx->engine->keys;
	return *tmp = keystore_open_dir(ctx->cfg->key_dir);
}

/*
 * Reads the key store's entry (rec, serial) into *out (caller wipes).
 * CS_ENOTFOUND when the store lacks it or holds a damaged copy (the caller
 * fetches it again), CS_ETRANSIENT when the store cannot be read now.
 */
static int engine_store_get(struct step_ctx *ctx, const char *serial, struct keystore_item *out)
{
	struct keystore *tmp, *ks = engine_keys(ctx, &tmp);
	int rc;

	keystore_item_init(out);
	rc = keystore_get(ks, ctx->rec->name, serial, out);
	keystore_close(tmp);
	if (rc == CS_EINVALID) {
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
		rc = cs_error(CS_ENOTFOUND, "%s: certificate %s: the key store's copy is damaged", ctx->rec->name,
			      serial);
	} else if (rc == CS_ENOTFOUND) {
		rc = cs_error(CS_ENOTFOUND, "%s: certificate %s is not in the key store", ctx->rec->name, serial);
	} else if (rc) {
		rc = cs_error(CS_ETRANSIENT, "%s: key store: %s", ctx->rec->name, cs_errmsg());
	}
	return rc;
}

/* The key store's entry (rec, serial) into ctx->mat. */
static int engine_load_stored(struct step_ctx *ctx, const char *serial)
{
	struct keystore_item it;
	int rc = engine_store_get(ctx, serial, &it);

	if (!rc) {
		material_wipe(&ctx->mat);
		ctx->mat.key = it.key;
		ctx->mat.cert = it.cert;
		ctx->mat.ca = it.ca;
		keystore_item_init(&it);
	}
	keystore_item_wipe(&it);
	return rc;
}

/* Keeps the verified material in the key store before it is published: a failed publish is then a local retry. */
static int engine_store_put(struct step_ctx *ctx, const char *serial)
{
	struct keystore *tmp, *ks = engine_keys(ctx, &tmp);
	struct keystore_item it;
	int rc;

	it.key = ctx->mat.key;
	it.cert = ctx->mat.cert;
	it.ca = ctx->mat.ca;
	rc = keystore_put(ks, ctx->rec->name, serial, &it);
	keystore_close(tmp);
	if (rc)
		return cs_error(CS_ETRANSIENT, "%s: keeping the key in the key store: %s", ctx->rec->name, cs_errmsg());
	return 0;
}

/* Drops the key store's entries of rec other than keep (NULL: all); a failure only costs disk space. */
static void engine_store_prune(struct step_ctx *ctx, const char *name, const char *keep)
{
	struct keystore *tmp, *ks = engine_keys(ctx, &tmp);

	if (keystore_prune(ks, name, keep))
		log_emit(LV_WARN, &ctx->log, "old keys are kept: %s", cs_errmsg());
	keystore_close(tmp);
}

/* The pending slot of the key store entry name (a certificate, or an issuer's "_issuer.<name>"). */
static int engine_slot_put(struct step_ctx *ctx, const char *name, const char *slot, const struct buf *data)
{
	struct keystore *tmp, *ks = engine_keys(ctx, &tmp);
	int rc = keystore_put_pending(ks, name, slot, data);

	keystore_close(tmp);
	if (rc && rc != CS_EINVALID)
		rc = cs_error(CS_ETRANSIENT, "%s: keeping the pending %s in the key store: %s", name, slot,
			      cs_errmsg());
	return rc;
}

static int engine_slot_get(struct step_ctx *ctx, const char *name, const char *slot, struct buf *out)
{
	struct keystore *tmp, *ks = engine_keys(ctx, &tmp);
	int rc = keystore_get_pending(ks, name, slot, out);

	keystore_close(tmp);
	if (rc == CS_EINVALID) {
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
		rc = cs_error(CS_ENOTFOUND, "%s: the key store's pending %s is damaged", name, slot);
	} else if (rc && rc != CS_ENOTFOUND) {
		rc = cs_error(CS_ETRANSIENT, "%s: key store: %s", name, cs_errmsg());
	}
	return rc;
}

int engine_pending_put(struct step_ctx *ctx, const char *slot, const struct buf *data)
{
	return engine_slot_put(ctx, ctx->rec->name, slot, data);
}

int engine_pending_get(struct step_ctx *ctx, const char *slot, struct buf *out)
{
	return engine_slot_get(ctx, ctx->rec->name, slot, out);
}

int engine_pending_del(struct step_ctx *ctx, const char *slot)
{
	struct keystore *tmp, *ks = engine_keys(ctx, &tmp);
	int rc = keystore_del_pending(ks, ctx->rec->name, slot);

	keystore_close(tmp);
	if (rc)
		rc = cs_error(CS_ETRANSIENT, "%s: key store: %s", ctx->rec->name, cs_errmsg());
	return rc;
}

int engine_issuer_secret_put(struct step_ctx *ctx, const char *slot, const struct buf *data)
{
	char *name = xasprintf("%s%s", ENGINE_ISSUER_ENTRY, ctx->issuer->name);
	int rc = engine_slot_put(ctx, name, slot, data);

	free(name);
	return rc;
}

int engine_issuer_secret_get(struct step_ctx *ctx, const char *slot, struct buf *out)
{
	char *name = xasprintf("%s%s", ENGINE_ISSUER_ENTRY, ctx->issuer->name);
	int rc = engine_slot_get(ctx, name, slot, out);

	free(name);
	return rc;
}

int engine_installed_key(struct step_ctx *ctx, struct buf *out)
{
	struct keystore_item it;

	keystore_item_init(&it);
	if (ctx->rec->serial && engine_store_get(ctx, ctx->rec->serial, &it) == 0) {
		*out = it.key;
		buf_init(&it.key, 0);
		keystore_item_wipe(&it);
		return 0;
	}
	keystore_item_wipe(&it);
	if (!ctx->rec->output_dir)
		return cs_error(CS_ENOTFOUND, "%s: no installed key", ctx->rec->name);
	return outputs_read_key(ctx->cfg->output_root, ctx->rec->output_dir, out);
}

int engine_reinstall(struct step_ctx *ctx)
{
	int rc;

	if (!ctx->rec->serial)
		return cs_error(CS_ENOTFOUND, "%s: no installed certificate is recorded", ctx->rec->name);
	if ((rc = engine_load_stored(ctx, ctx->rec->serial)))
		return rc;
	log_emit(LV_INFO, &ctx->log, "reinstalling certificate %s from the key store (no provider request)",
		 ctx->rec->serial);
	return engine_install(ctx);
}

int engine_pending_material(struct step_ctx *ctx)
{
	const char *serial = state_cert_id(ctx->rec, ENGINE_ID_KEY_PENDING);
	int rc;

	if (!serial)
		return cs_error(CS_ENOTFOUND, "%s: nothing waits in the key store", ctx->rec->name);
	if (!(rc = engine_load_stored(ctx, serial)))
		log_emit(LV_INFO, &ctx->log, "installing certificate %s from the key store (no provider request)",
			 serial);
	return rc;
}

/* ---------- verification before install ---------- */

#define ENGINE_CLOCK_SKEW 300 /* a notBefore this far in the future is a clock difference, not a bad certificate */
#define ENGINE_NAMES_SHOWN 8

static int engine_verify_fail(struct step_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fails the install with class verification: "<name>: certificate not installed: <why>". */
static int engine_verify_fail(struct step_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	char *why;
	int rc;

	va_start(ap, fmt);
	why = xvasprintf(fmt, ap);
	va_end(ap);
	ctx->fail_class = STATE_FAIL_VERIFICATION;
	rc = cs_error(CS_EINVALID, "%s: certificate not installed (verification): %s", ctx->rec->name, why);
	free(why);
	return rc;
}

/*
 * Appends name to a bounded ", "-separated list of *count names. A name from
 * a certificate is the provider's text: anything but a DNS name's characters
 * shows as '?', so no control character or escape reaches a log or terminal.
 */
static void engine_name_list(struct buf *b, size_t *count, const char *name)
{
	if (*count < ENGINE_NAMES_SHOWN) {
		if (*count)
			buf_puts(b, ", ");
		for (size_t i = 0; name[i] && i < 255; i++) {
			char c = name[i];
			int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				 c == '.' || c == '-' || c == '*' || c == '_' || c == ':' || c == '/' || c == '@';

			buf_append(b, ok ? &c : "?", 1);
		}
	} else if (*count == ENGINE_NAMES_SHOWN) {
		buf_puts(b, ", ...");
	}
	(*count)++;
}

/* The leaf's SANs are the manifest's names, plus only what the provider adds by itself (DNSimple's apex for www). */
static int engine_check_names(struct step_ctx *ctx, const struct crypto_cert_info *info)
{
	const struct cert_spec *s = ctx->spec;
	const char *const *want = (const char *const *)s->dns_names;
	const char *const *got = (const char *const *)info->dns_names;
	struct buf missing = BUF_INIT, extra = BUF_INIT;
	size_t n_missing = 0, n_extra = 0, n_allowed = 0;
	char **allowed = NULL;
	int rc = 0;

	if (ctx->issuer && ctx->issuer->ops->extra_names)
		ctx->issuer->ops->extra_names(ctx->issuer, s, &allowed, &n_allowed);
	for (size_t i = 0; i < s->n_dns; i++)
		if (!crypto_names_contain(got, info->n_dns, want[i]))
			engine_name_list(&missing, &n_missing, want[i]);
	for (size_t i = 0; i < info->n_dns; i++)
		if (!crypto_names_contain(want, s->n_dns, got[i]) &&
		    !crypto_names_contain((const char *const *)allowed, n_allowed, got[i]))
			engine_name_list(&extra, &n_extra, got[i]);
	if (n_missing || n_extra)
		rc = engine_verify_fail(ctx, "its names do not match the manifest (%s%s%s%s%s)",
					n_missing ? "missing: " : "", n_missing ? missing.data : "",
					n_missing && n_extra ? "; " : "", n_extra ? "not in the manifest: " : "",
					n_extra ? extra.data : "");
	for (size_t i = 0; i < n_allowed; i++)
		free(allowed[i]);
	free(allowed);
	buf_free(&missing);
	buf_free(&extra);
	return rc;
}

/* The spec's other SANs as crypto_cert_info.others spells them (caller frees each and the array). */
static char **engine_other_names(const struct cert_spec *s, size_t *n)
{
	char **v = xcalloc(s->n_ips + s->n_uris + s->n_emails + 1, sizeof(*v));

	*n = 0;
	for (size_t i = 0; i < s->n_ips; i++)
		v[(*n)++] = xasprintf("IP:%s", s->ips[i]);
	for (size_t i = 0; i < s->n_uris; i++)
		v[(*n)++] = xasprintf("URI:%s", s->uris[i]);
	for (size_t i = 0; i < s->n_emails; i++)
		v[(*n)++] = xasprintf("email:%s", s->emails[i]);
	return v;
}

static int engine_in(char *const *set, size_t n, const char *x)
{
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(set[i], x))
			return 1;
	return 0;
}

/* IP, URI and email SANs: exactly the manifest's, compared as sets. */
static int engine_check_other_names(struct step_ctx *ctx, const struct crypto_cert_info *info)
{
	size_t n = 0, n_missing = 0, n_extra = 0;
	char **want = engine_other_names(ctx->spec, &n);
	struct buf missing = BUF_INIT, extra = BUF_INIT;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		if (!engine_in(info->others, info->n_others, want[i]))
			engine_name_list(&missing, &n_missing, want[i]);
	for (size_t i = 0; i < info->n_others; i++)
		if (!engine_in(want, n, info->others[i]))
			engine_name_list(&extra, &n_extra, info->others[i]);
	if (n_missing || n_extra)
		rc = engine_verify_fail(ctx, "its IP/URI/email names do not match the manifest (%s%s%s%s%s)",
					n_missing ? "missing: " : "", n_missing ? missing.data : "",
					n_missing && n_extra ? "; " : "", n_extra ? "not in the manifest: " : "",
					n_extra ? extra.data : "");
	for (size_t i = 0; i < n; i++)
		free(want[i]);
	free(want);
	buf_free(&missing);
	buf_free(&extra);
	return rc;
}

/* Now within notBefore/notAfter, and the renewal point still ahead (else installing it starts a renewal). */
static int engine_check_dates(struct step_ctx *ctx, const struct crypto_cert_info *info)
{
	char t[32], d[32], before[32];
	int64_t renew_at;

	if (info->not_before > ctx->now + ENGINE_CLOCK_SKEW) {
		util_fmt_time(info->not_before, t);
		return engine_verify_fail(ctx, "certificate %s is not valid before %s", info->serial, t);
	}
	if (info->not_after <= ctx->now) {
		util_fmt_time(info->not_after, t);
		util_fmt_duration(ctx->now - info->not_after, d);
		return engine_verify_fail(ctx, "certificate %s expired %s ago (notAfter %s)", info->serial, d, t);
	}
	/* Installed, it is issued under this renewBefore: a whole-lifetime one then means 1/3 (plan_renewal_time). */
	renew_at = plan_renewal_at(ctx->spec, info->not_before, info->not_after, 1);
	if (ctx->now >= renew_at) {
		util_fmt_duration(info->not_after - ctx->now, d);
		util_fmt_duration(info->not_after - renew_at, before);
		return engine_verify_fail(ctx,
					  "certificate %s expires in %s, inside the renewal window (renewBefore %s): "
					  "installing it would start a renewal at once",
					  info->serial, d, before);
	}
	return 0;
}

/*
 * Checks that the material is a certificate for the spec's names with its own
 * key, valid now and before its renewal point, whose chain verifies to
 * ca.crt. The certificate already recorded as installed (a reinstall) is only
 * held to its names, key and chain: its dates were checked when it was first
 * installed, and renewing it is the plan's business.
 */
static int engine_check_material(struct step_ctx *ctx, struct crypto_cert_info *info)
{
	struct crypto_cert *leaf = NULL;
	struct crypto_key *key = NULL;
	int recorded, rc;
	char *why = NULL;

	if ((rc = crypto_cert_from_pem(ctx->mat.cert.data, ctx->mat.cert.len, "tls.crt", &leaf)) ||
	    (rc = crypto_key_from_pem(ctx->mat.key.data, ctx->mat.key.len, "the private key", &key)) ||
	    (rc = crypto_cert_info(leaf, info))) {
		why = xstrdup(cs_errmsg());
		rc = engine_verify_fail(ctx, "%s", why);
		goto out;
	}
	if (!crypto_cert_matches_key(leaf, key)) {
		rc = engine_verify_fail(ctx, "certificate %s does not match its private key", info->serial);
		goto out;
	}
	recorded = util_streq(info->fingerprint, ctx->rec->fingerprint);
	if ((rc = engine_check_names(ctx, info)) || (rc = engine_check_other_names(ctx, info)) ||
	    (!recorded && (rc = engine_check_dates(ctx, info))))
		goto out;
	if ((rc = crypto_cert_verify_chain(ctx->mat.cert.data, ctx->mat.cert.len, ctx->mat.ca.data, ctx->mat.ca.len,
					   recorded ? 0
						    : (info->not_before > ctx->now ? info->not_before : ctx->now)))) {
		why = xstrdup(cs_errmsg());
		rc = engine_verify_fail(ctx, "%s", why);
	}
out:
	free(why);
	crypto_cert_free(leaf);
	crypto_key_free(key);
	return rc;
}

int engine_verify(struct step_ctx *ctx)
{
	struct crypto_cert_info info;
	int rc;

	memset(&info, 0, sizeof(info));
	if (!material_present(&ctx->mat))
		return cs_error(CS_ERROR, "%s: nothing to install", ctx->rec->name);
	rc = engine_check_material(ctx, &info);
	crypto_cert_info_free(&info);
	return rc;
}

int engine_install(struct step_ctx *ctx)
{
	struct state_cert *rec = ctx->rec;
	struct crypto_cert_info info;
	struct state_cert old;
	int fresh, moved, rc;

	memset(&info, 0, sizeof(info));
	if (!material_present(&ctx->mat))
		return cs_error(CS_ERROR, "%s: nothing to install", rec->name);
	if ((rc = engine_check_material(ctx, &info)) || (rc = engine_store_put(ctx, info.serial)))
		goto out;
	state_cert_set_id(rec, ENGINE_ID_KEY_PENDING, info.serial);
	memset(&old, 0, sizeof(old));
	old.output_dir = rec->output_dir;
	old.out_generation = rec->out_generation;
	moved = rec->output_dir && strcmp(rec->output_dir, ctx->spec->output_dir);
	if (moved) {
		old.output_dir = xstrdup(rec->output_dir);
		old.out_generation = xstrdup(rec->out_generation);
		state_str_set(&rec->out_generation, NULL);
	}
	fresh = !util_streq(info.fingerprint, rec->fingerprint);
	rc = outputs_publish_spec(ctx->cfg, ctx->spec, NULL, &ctx->mat.cert, &ctx->mat.key, &ctx->mat.ca, rec);
	if (!rc) {
		if (fresh)
			plan_note_renew_before(rec, ctx->spec);
		state_str_set(&rec->output_dir, ctx->spec->output_dir);
		state_str_set(&rec->serial, info.serial);
		state_str_set(&rec->fingerprint, info.fingerprint);
		rec->not_before = info.not_before;
		rec->not_after = info.not_after;
		state_cert_set_id(rec, ENGINE_ID_KEY_PENDING, NULL);
		hooks_after_apply_mark(ctx->cfg, rec);
		state_cert_event(rec, ctx->now, "installed certificate %s (expires %lld)", info.serial,
				 (long long)info.not_after);
		log_emit(LV_DEBUG, &ctx->log, "published certificate %s (not journaled yet)", info.serial);
		if (moved)
			outputs_remove(ctx->cfg->output_root, &old);
		engine_store_prune(ctx, rec->name, info.serial); /* the old keys go once the new one is live */
	} else if (moved) {
		state_str_set(&rec->out_generation, old.out_generation);
	}
	if (moved) {
		free(old.output_dir);
		free(old.out_generation);
	}
out:
	crypto_cert_info_free(&info);
	buf_wipe(&ctx->mat.key);
	return rc;
}

/* ---------- one certificate ---------- */

static int64_t engine_backoff(int attempts)
{
	int64_t d = ENGINE_BACKOFF_BASE;
	unsigned char r;

	for (int i = 1; i < attempts && d < ENGINE_BACKOFF_MAX; i++)
		d *= 2;
	if (d > ENGINE_BACKOFF_MAX)
		d = ENGINE_BACKOFF_MAX;
	if (crypto_random(&r, 1) == 0)
		d += d * r / 1024; /* up to +25% jitter */
	return d;
}

static void engine_count(struct engine *e, size_t *field)
{
	pthread_mutex_lock(&e->mu);
	(*field)++;
	pthread_mutex_unlock(&e->mu);
}

/* A shared backend's leader that lost its lease takes no further step (the file backend leads while locked). */
static int engine_stopping(const struct engine *e)
{
	return __atomic_load_n(&e->fatal, __ATOMIC_RELAXED) || engine_stop_flag(e) || !state_leading(e->be);
}

static void engine_start_change(struct step_ctx *ctx, const struct plan_change *ch)
{
	struct state_cert *rec = ctx->rec;

	if (ch->kind == CHANGE_RESUME) {
		/* attempts is kept: a failure that keeps coming back backs off further (engine_fail). */
		if (rec->phase == PHASE_FAILED)
			rec->phase = PHASE_PENDING;
		state_cert_event(rec, ctx->now, "resuming %s at step %s", rec->change ? rec->change : "change",
				 rec->step);
		return;
	}
	state_str_set(&rec->change, plan_change_name(ch->kind));
	state_str_set(&rec->step, ch->n_steps ? ch->steps[0] : NULL);
	state_cert_set_id(rec, ENGINE_ID_KEY_PENDING,
			  NULL); /* what a previous change left unpublished is not this one's */
	state_str_set(&rec->issuer, ctx->spec->issuer);
	state_str_set(&rec->provider, ctx->issuer->ops->type);
	state_str_set(&rec->target_hash, ctx->spec->hash);
	if (!rec->output_dir)
		state_str_set(&rec->output_dir, ctx->spec->output_dir);
	rec->phase = PHASE_PENDING;
	rec->attempts = 0;
	rec->next_try = 0;
	state_str_set(&rec->failure_class, NULL);
	state_cert_event(rec, ctx->now, "%s started: %s", rec->change, ch->reason ? ch->reason : "");
}

static void engine_finish(struct step_ctx *ctx)
{
	struct state_cert *rec = ctx->rec;

	state_cert_event(rec, ctx->now, "%s done", rec->change ? rec->change : "change");
	state_str_set(&rec->spec_hash, rec->target_hash ? rec->target_hash : ctx->spec->hash);
	state_str_set(&rec->target_hash, NULL);
	state_str_set(&rec->change, NULL);
	state_str_set(&rec->step, NULL);
	rec->phase = PHASE_READY;
	rec->attempts = 0;
	rec->next_try = 0;
	rec->last_success = ctx->now;
	state_cert_set_error(rec, 0, NULL);
	state_str_set(&rec->failure_class, NULL);
}

/* The failure class a code stands for when the driver did not name one (ctx->fail_class). */
static const struct {
	int code;
	const char *fail_class;
} engine_code_classes[] = {
	{CS_EAUTH, STATE_FAIL_CONFIG},	       /* a credential missing, unsafe or refused (401/403) */
	{CS_ETRANSIENT, STATE_FAIL_TRANSIENT}, /* 5xx, 429, timeouts, local I/O */
};

const char *engine_failure_class(int rc, const char *driver_class)
{
	if (driver_class)
		return driver_class;
	for (size_t i = 0; i < sizeof(engine_code_classes) / sizeof(engine_code_classes[0]); i++)
		if (engine_code_classes[i].code == rc)
			return engine_code_classes[i].fail_class;
	return STATE_FAIL_REJECTED;
}

/*
 * Records a failed step: its class, the error, attempts + 1 and the next
 * try (capped exponential backoff, for every class: `run` honours it). Only
 * a transient failure leaves the certificate pending; the others make it
 * failed, and the plan decides what retries it (see plan_one).
 */
static void engine_fail(struct engine *e, struct step_ctx *ctx, int rc, int64_t retry_at)
{
	struct state_cert *rec = ctx->rec;
	const char *msg = cs_errmsg()[0] ? cs_errmsg() : cs_strcode(rc);
	const char *cls = engine_failure_class(rc, ctx->fail_class);

	if (rc == CS_ETRANSIENT && engine_stop_flag(e)) {
		/* Cut short by a stop request (run's SIGTERM): not a failure, the next run retries at once. */
		state_cert_event(rec, ctx->now, "step %s interrupted by a stop request", rec->step);
		log_emit(LV_INFO, &ctx->log, "step interrupted by a stop request; it is resumed on the next run");
		engine_journal(ctx);
		engine_count(e, &e->res.skipped);
		return;
	}
	state_cert_set_error(rec, ctx->now, msg);
	state_str_set(&rec->failure_class, cls);
	if (rec->attempts < INT_MAX)
		rec->attempts++;
	rec->next_try = ctx->now + engine_backoff(rec->attempts);
	if (retry_at > rec->next_try)
		rec->next_try = retry_at; /* the provider's rate-limit window opens then */
	if (!strcmp(cls, STATE_FAIL_TRANSIENT)) {
		state_cert_event(rec, ctx->now, "step %s failed (attempt %d), retrying later: %s", rec->step,
				 rec->attempts, msg);
		log_emit(LV_WARN, &ctx->log, "step failed, will retry: %s", msg);
	} else {
		rec->phase = PHASE_FAILED;
		state_cert_event(rec, ctx->now, "step %s failed (%s, attempt %d): %s", rec->step, cls, rec->attempts,
				 msg);
		log_emit(LV_ERROR, &ctx->log, "failed (%s): %s; %s", cls, msg, plan_failure_advice(cls));
	}
	engine_journal(ctx);
	engine_count(e, &e->res.failed);
}

static void engine_remove(struct engine *e, struct step_ctx *ctx)
{
	char *name = xstrdup(ctx->rec->name); /* the record is freed once forgotten */
	int rc = 0;

	if (ctx->issuer && ctx->issuer->ops->release)
		rc = ctx->issuer->ops->release(ctx);
	if (!rc)
		rc = outputs_remove(e->cfg->output_root, ctx->rec);
	if (!rc)
		engine_store_prune(ctx, ctx->rec->name, NULL);
	if (rc) {
		const char *cls = engine_failure_class(rc, ctx->fail_class);

		log_emit(LV_ERROR, &ctx->log, "remove failed (%s): %s", cls, cs_errmsg());
		state_cert_set_error(ctx->rec, ctx->now, cs_errmsg());
		state_str_set(&ctx->rec->failure_class, cls);
		if (ctx->rec->attempts < INT_MAX)
			ctx->rec->attempts++;
		ctx->rec->next_try = ctx->now + engine_backoff(ctx->rec->attempts);
		engine_journal(ctx);
		engine_count(e, &e->res.failed);
		free(name);
		return;
	}
	ctx->log.cert = name;
	pthread_mutex_lock(&e->mu);
	rc = state_journal(e->be, e->st, name, NULL);
	if (!rc) {
		state_cert_remove(e->st, name);
		ctx->rec = NULL;
		e->res.done++;
	} else {
		engine_set_fatal(e, name);
		e->res.failed++;
	}
	pthread_mutex_unlock(&e->mu);
	if (!rc)
		log_emit(LV_INFO, &ctx->log, "removed (outputs deleted, record forgotten)");
	free(name);
}

static void engine_step_done(struct engine *e, struct engine_job *job);

/*
 * apply --wait: a step stopped by the provider's rate limit (its request
 * unsent, or refused with a 429) waits for the window, parked, instead of
 * failing: the record says when it goes on. 0 to park.
 */
static int engine_wait_budget(struct step_ctx *ctx, int64_t retry)
{
	char when[32];

	util_fmt_time(retry, when);
	log_emit(LV_INFO, &ctx->log, "the provider's rate limit is spent: the step goes on at %s (%s)", when,
		 cs_errmsg());
	ctx->rec->next_try = retry;
	return engine_journal(ctx);
}

/*
 * Runs a job's steps until it is done, failed, or waits on its provider.
 * Returns 1 when the job waits within apply --wait: the caller parks it
 * (job->wake_at) and runs other jobs meanwhile; the job's context is kept.
 */
static int engine_run_job(struct engine *e, struct engine_job *job)
{
	struct step_ctx *ctx = &job->ctx;
	enum step_status status;
	char step[64] = ""; /* a copy: the record's step string changes under the driver */
	int rc;

	if (!job->started) {
		memset(ctx, 0, sizeof(*ctx));
		job->started = 1;
		ctx->cfg = e->cfg;
		ctx->spec = job->spec;
		ctx->rec = job->rec;
		ctx->kind = job->change->kind;
		ctx->engine = e;
		ctx->now = util_now();
		ctx->issuer = config_issuer(e->cfg, job->spec ? job->spec->issuer : job->rec->issuer);
		ctx->log.cert = job->rec->name;
		ctx->log.issuer = ctx->issuer ? ctx->issuer->name : job->rec->issuer;
		material_init(&ctx->mat);
		if (job->change->kind == CHANGE_REMOVE) {
			engine_remove(e, ctx);
			goto out;
		}
		engine_start_change(ctx, job->change);
		if (engine_journal(ctx))
			goto out;
	}
	for (;;) {
		if (engine_stopping(e)) {
			engine_count(e, &e->res.skipped);
			break;
		}
		ctx->now = util_now();
		snprintf(step, sizeof(step), "%s", ctx->rec->step ? ctx->rec->step : "");
		ctx->log.step = step;
		log_emit(LV_DEBUG, &ctx->log, "running step");
		cs_error_clear();
		provider_fail_class_take(); /* forget a class left by an earlier step */
		ctx->read_only = 0;
		http_take_retry_at(); /* forget one left by an earlier step */
		rc = ctx->issuer->ops->step(ctx, &status);
		ctx->now = util_now();
		engine_step_done(e, job);
		if (rc && !ctx->fail_class)
			ctx->fail_class = provider_fail_class_take(); /* the provider's answer: config/rejected */
		if (rc) {
			int64_t retry = rc == CS_ETRANSIENT ? http_take_retry_at() : 0;

			if (retry && e->deadline && retry <= e->deadline && !engine_stopping(e) &&
			    !engine_wait_budget(ctx, retry)) {
				job->wake_at = retry;
				ctx->log.step = NULL;
				return 1;
			}
			engine_fail(e, ctx, rc, retry);
			break;
		}
		if (status == STEP_DONE) {
			engine_finish(ctx);
			if (engine_journal(ctx))
				break;
			ctx->log.step = NULL;
			log_emit(LV_INFO, &ctx->log, "%s complete: serial %s, expires in %lldd",
				 job->change->kind == CHANGE_RESUME ? "resume" : plan_change_name(job->change->kind),
				 ctx->rec->serial ? ctx->rec->serial : "?",
				 (long long)((ctx->rec->not_after - ctx->now) / 86400));
			engine_count(e, &e->res.done);
			/* A failed hook is owed: `run` tries it again with backoff (the certificate is installed). */
			if (hooks_on_change(e->cfg, ctx->rec->name, ctx->rec->output_dir, ctx->spec)) {
				state_cert_set_id(ctx->rec, ENGINE_ID_HOOK_RETRY, "1");
				state_cert_set_id(ctx->rec, ENGINE_ID_HOOK_ATTEMPTS, "1");
				engine_journal(ctx);
			} else if (state_cert_id(ctx->rec, ENGINE_ID_HOOK_RETRY)) {
				state_cert_set_id(ctx->rec, ENGINE_ID_HOOK_RETRY, NULL);
				state_cert_set_id(ctx->rec, ENGINE_ID_HOOK_ATTEMPTS, NULL);
				state_cert_set_id(ctx->rec, ENGINE_ID_HOOK_NEXT, NULL);
				engine_journal(ctx);
			}
			break;
		}
		if (status == STEP_WAIT) {
			ctx->rec->next_try = ctx->wait_until;
			ctx->rec->attempts = 0; /* the provider took the request: real progress */
			state_str_set(&ctx->rec->failure_class, NULL);
			if (engine_journal(ctx))
				break;
			if (e->deadline && ctx->wait_until <= e->deadline) {
				job->wake_at = ctx->wait_until;
				ctx->log.step = NULL;
				return 1;
			}
			log_emit(LV_INFO, &ctx->log, "waiting for the provider; the next apply resumes it");
			engine_count(e, &e->res.pending);
			break;
		}
		/*
		 * attempts is not reset on STEP_CONTINUE: a driver whose failing step
		 * starts over at a lookup (find → purchase fails → find) would
		 * otherwise never back off further than the first delay. A step that
		 * only read is journaled with the next one (the record is written
		 * whole): a crash in between runs it again, which is harmless.
		 */
		if (!ctx->read_only && engine_journal(ctx))
			break;
	}
out:
	ctx->log.step = NULL;
	material_wipe(&ctx->mat);
	return 0;
}

/* Realtime now, fractional unix seconds. */
static double engine_now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The provider requests job still needs from its record's current step (its worker, or before it starts). */
static int engine_job_requests(const struct engine_job *job)
{
	const struct issuer *is = job->issuer;

	if (!is || !is->ops->requests_left || job->change->kind == CHANGE_REMOVE)
		return 0;
	return is->ops->requests_left(is, job->change->kind, job->spec, job->rec);
}

/* One issuer's part of the estimate (under e->mu). */
struct engine_issuer_eta {
	const struct issuer *is;
	struct provider_budget b;
	double left, guessed, parked_finish; /* requests by the per-step guesses; done so far; parked jobs' end */
	size_t open;			     /* jobs with requests still to send */
};

static void engine_issuer_sums(const struct engine *e, struct engine_issuer_eta *x, double now, double cycle_s)
{
	for (size_t i = 0; i < e->n_jobs; i++) {
		const struct engine_job *job = &e->jobs[i];
		int left = __atomic_load_n(&job->left, __ATOMIC_RELAXED);

		if (job->issuer != x->is)
			continue;
		x->guessed += job->left0 - left;
		if (job->over || left <= 0)
			continue;
		x->left += left;
		x->open++;
	}
	for (size_t i = 0; i < e->n_parked; i++) {
		const struct engine_job *job = e->parked[i];
		double end = (double)job->wake_at + job->left * cycle_s;

		if (job->issuer == x->is && end > x->parked_finish)
			x->parked_finish = end > now ? end : now;
	}
}

/*
 * The finish estimate (under e->mu) into *out with its reason in why: 0
 * when it cannot be made yet (a provider with requests left has not
 * answered once, or no certificate of an issuer without a per-step guess
 * has finished). Requests left are the providers' per-step guesses,
 * corrected by the requests actually sent; the pace is the workers'
 * measured time per request (waits for parked jobs and for a spent budget
 * left out); the budget is the provider's X-RateLimit-* as last seen.
 */
static int engine_estimate(struct engine *e, double now, struct engine_eta *out, char *why, size_t n)
{
	struct engine_issuer_eta x[16];
	size_t nx = 0, unguessed = 0, threads = e->n_threads ? e->n_threads : 1;
	long long sent = 0, answered = 0;
	int64_t waited = 0, busy = 0, worker_ms;
	double cycle_s;
	const struct engine_issuer_eta *worst = NULL;

	memset(out, 0, sizeof(*out));
	why[0] = '\0';
	for (size_t i = 0; i < e->cfg->n_issuers && nx < sizeof(x) / sizeof(x[0]); i++) {
		const struct issuer *is = &e->cfg->issuers[i];

		if (!is->ops->requests_left || !is->ops->budget)
			continue;
		memset(&x[nx], 0, sizeof(x[nx]));
		x[nx].is = is;
		is->ops->budget(is, &x[nx].b);
		sent += x[nx].b.sent;
		answered += x[nx].b.sent - x[nx].b.inflight;
		waited += x[nx].b.waited_ms;
		busy += x[nx].b.busy_ms;
		nx++;
	}
	for (size_t i = 0; i < e->n_jobs; i++)
		if (!e->jobs[i].over &&
		    (!e->jobs[i].issuer || !e->jobs[i].issuer->ops->requests_left || !e->jobs[i].issuer->ops->budget))
			unguessed++;
	/*
	 * The pace: worker time per request sent (everything but waiting for
	 * parked jobs and for a spent budget), over the requests since the last
	 * measure and smoothed, as the mix of steps changes along an apply.
	 * Until the workers have sent a few each, the requests' own duration.
	 */
	worker_ms = (int64_t)threads * (util_mono_ms() - e->t0_ms) - e->idle_ms - waited;
	if (sent - e->cycle_sent >= (long long)threads * 4 && worker_ms > e->cycle_worker_ms) {
		double recent = (double)(worker_ms - e->cycle_worker_ms) / 1000.0 / (double)(sent - e->cycle_sent);

		e->cycle_s = e->cycle_s > 0 ? (e->cycle_s + recent) / 2 : recent;
		e->cycle_sent = sent;
		e->cycle_worker_ms = worker_ms;
	}
	cycle_s = e->cycle_s > 0 ? e->cycle_s : answered > 0 ? (double)busy / 1000.0 / (double)answered : 0;
	for (size_t k = 0; k < nx; k++) {
		struct engine_issuer_eta *xi = &x[k];
		struct engine_eta eta;
		size_t par;

		engine_issuer_sums(e, xi, now, cycle_s);
		if (!xi->open)
			continue;
		if (!xi->b.sent || cycle_s <= 0)
			return 0; /* no answer yet: neither the pace nor the budget is known */
		xi->left *= engine_eta_correction((double)xi->b.sent, xi->guessed, ENGINE_ETA_PRIOR);
		par = xi->open < threads ? xi->open : threads;
		engine_eta_finish(now, xi->left, (double)par / cycle_s, &xi->b, &eta);
		if (!eta.rate_bound && xi->parked_finish > eta.finish)
			eta.finish = xi->parked_finish; /* a poll's wait is the longer part */
		if (!worst || eta.finish > out->finish) {
			*out = eta;
			worst = xi;
		}
	}
	if (unguessed) {
		double at;

		if (!e->finished)
			return 0;
		at = now + (double)(util_mono_ms() - e->t0_ms) / 1000.0 * (double)unguessed / (double)e->finished;
		if (!worst || at > out->finish) {
			memset(out, 0, sizeof(*out));
			out->finish = at;
			snprintf(why, n, "latency-bound: at the pace of the certificates finished so far");
			return 1;
		}
	}
	if (!worst)
		return 0;
	if (out->rate_bound) {
		char win[32], reset[32];
		int64_t r = worst->b.reset - (int64_t)now;

		util_fmt_duration(worst->b.window, win);
		util_fmt_duration(r > 0 ? r : 0, reset);
		snprintf(why, n,
			 "rate-bound: issuer %s needs about %.0f more requests at %ld per %s (%ld left in this window, "
			 "which resets in %s)",
			 worst->is->name, out->requests, worst->b.limit, win,
			 worst->b.remaining > 0 ? worst->b.remaining : 0, reset);
	} else if (worst->b.have) {
		/* A window that has ended is a fresh one at the next request. */
		long left = worst->b.reset <= (int64_t)now ? worst->b.limit : worst->b.remaining;

		snprintf(why, n,
			 "latency-bound: issuer %s needs about %.0f more requests, within its rate limit (%ld left in "
			 "this window)",
			 worst->is->name, out->requests, left > 0 ? left : 0);
	} else {
		snprintf(why, n, "latency-bound: issuer %s needs about %.0f more requests (no rate limit reported)",
			 worst->is->name, out->requests);
	}
	return 1;
}

/*
 * A progress line (under e->mu) on a long apply: what it waits for, when
 * it polls next and when --wait gives up, how far it is and when it should
 * finish. Printed every ENGINE_PROGRESS_EVERY certificates on a large
 * apply, at once when the first estimate can be made, then at least every
 * ENGINE_PROGRESS_MS (sooner on a short apply: a tenth of the time left,
 * but not more often than ENGINE_PROGRESS_MIN_MS). The estimate is also
 * `certsync run`'s certsync_apply_estimated_finish_timestamp_seconds.
 */
static void engine_progress(struct engine *e)
{
	int64_t now_ms = util_mono_ms(), now = util_now();
	int by_count = e->n_jobs >= ENGINE_PROGRESS_EVERY && e->finished >= e->next_mark;
	int due = now_ms - e->last_progress_ms >= e->eta_every_ms;
	struct engine_eta est;
	char eta[512] = "", why[320], when[96], poll[32], left[32];
	double real = engine_now_real();
	size_t first = 0;
	int known;

	if (e->finished >= e->n_jobs || (!by_count && !due && (e->eta_shown || !e->announced)))
		return;
	known = engine_estimate(e, real, &est, why, sizeof(why));
	if (!known && !by_count && !due)
		return; /* the first estimate waits for the first answers */
	if (known) {
		double every = (est.finish - real) * 100.0; /* a tenth of the time left, in ms */

		engine_eta_format(est.finish, real, when, sizeof(when));
		snprintf(eta, sizeof(eta), "; ETA %s, %s", when, why);
		e->eta_shown = 1;
		if (e->announced)
			e->eta_every_ms = every < ENGINE_PROGRESS_MIN_MS ? ENGINE_PROGRESS_MIN_MS
					  : every > ENGINE_PROGRESS_MS	 ? ENGINE_PROGRESS_MS
									 : (int64_t)every;
		metrics_set_apply_eta(est.finish, est.rate_bound);
	}
	while (e->next_mark <= e->finished)
		e->next_mark += ENGINE_PROGRESS_EVERY;
	e->last_progress_ms = now_ms;
	if (!e->n_parked) {
		log_info("progress: %zu of %zu certificates finished (%zu done, %zu failed, %zu left waiting), %zu in "
			 "progress%s",
			 e->finished, e->n_jobs, e->res.done, e->res.failed, e->res.pending, e->running, eta);
		return;
	}
	for (size_t i = 1; i < e->n_parked; i++)
		if (e->parked[i]->wake_at < e->parked[first]->wake_at)
			first = i;
	util_fmt_duration(e->parked[first]->wake_at > now ? e->parked[first]->wake_at - now : 0, poll);
	util_fmt_duration(e->deadline > now ? e->deadline - now : 0, left);
	log_info("waiting for the provider: %zu certificate%s (next: %s at step %s), next poll in %s; --wait gives "
		 "up in %s; %zu of %zu certificates finished%s",
		 e->n_parked, e->n_parked == 1 ? "" : "s", e->parked[first]->ctx.rec->name,
		 e->parked[first]->ctx.rec->step ? e->parked[first]->ctx.rec->step : "?", poll, left, e->finished,
		 e->n_jobs, eta);
}

/* After a step: the job's requests left, and a progress line when one is due. */
static void engine_step_done(struct engine *e, struct engine_job *job)
{
	__atomic_store_n(&job->left, engine_job_requests(job), __ATOMIC_RELAXED);
	pthread_mutex_lock(&e->mu);
	engine_progress(e);
	pthread_mutex_unlock(&e->mu);
}

/*
 * The next job for a worker (under e->mu): a fresh one, else the parked job
 * that wakes first once its time has come. Waits while parked jobs sleep or
 * other workers may still park theirs; NULL when everything is finished.
 */
static struct engine_job *engine_next_job(struct engine *e)
{
	for (;;) {
		size_t first = 0;
		int64_t now = util_now();

		if (e->next < e->n_jobs && !engine_stopping(e))
			return &e->jobs[e->next++];
		if (e->next < e->n_jobs) {
			/* Stopping: never-started jobs are counted skipped, one by one. */
			e->next++;
			e->res.skipped++;
			continue;
		}
		for (size_t i = 1; i < e->n_parked; i++)
			if (e->parked[i]->wake_at < e->parked[first]->wake_at)
				first = i;
		if (e->n_parked && (e->parked[first]->wake_at <= now || engine_stopping(e))) {
			struct engine_job *job = e->parked[first];

			e->parked[first] = e->parked[--e->n_parked];
			return job;
		}
		if (!e->n_parked && !e->running)
			return NULL;
		engine_progress(e);
		{
			/*
			 * Short slices: a stop request is a flag set by a signal handler,
			 * not a broadcast. Nobody signals when a parked job's time comes:
			 * the slice ends then.
			 */
			struct timespec ts;
			int64_t t0 = util_mono_ms();

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			if (e->n_parked && e->parked[first]->wake_at <= (int64_t)ts.tv_sec &&
			    e->parked[first]->wake_at > now) {
				ts.tv_sec = (time_t)e->parked[first]->wake_at;
				ts.tv_nsec = 0;
			}
			pthread_cond_timedwait(&e->cv, &e->mu, &ts);
			e->idle_ms += util_mono_ms() - t0;
		}
	}
}

static void *engine_worker(void *arg)
{
	struct engine *e = arg;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct engine_job *job = engine_next_job(e);
		int parked;

		if (!job)
			break;
		e->running++;
		pthread_mutex_unlock(&e->mu);
		parked = engine_run_job(e, job);
		pthread_mutex_lock(&e->mu);
		e->running--;
		if (parked) {
			e->parked[e->n_parked++] = job;
		} else {
			job->over = 1;
			e->finished++;
		}
		engine_progress(e);
		pthread_cond_broadcast(&e->cv);
	}
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* The line an apply starts with when its providers can say what it costs: certificates and requests. */
static void engine_announce(struct engine *e)
{
	long total = 0;

	for (size_t i = 0; i < e->n_jobs; i++)
		total += e->jobs[i].left0;
	e->announced = total > 0;
	if (total > 0)
		log_info("apply: %zu certificate%s to change, about %ld provider request%s; the finish is estimated "
			 "from the first answers",
			 e->n_jobs, e->n_jobs == 1 ? "" : "s", total, total == 1 ? "" : "s");
}

static int engine_spec_cmp(const void *key, const void *elem)
{
	return strcmp(key, (*(struct cert_spec *const *)elem)->name);
}

static int engine_spec_sort(const void *a, const void *b)
{
	return strcmp((*(struct cert_spec *const *)a)->name, (*(struct cert_spec *const *)b)->name);
}

/* Builds the job list in the main thread: looks up specs, creates records. */
static int engine_prepare(struct engine *e, const struct plan *plan, struct cert_spec *const *specs, size_t n_specs)
{
	struct cert_spec **sorted = xcalloc(n_specs + 1, sizeof(*sorted));
	int rc = 0;

	if (n_specs) {
		memcpy(sorted, specs, n_specs * sizeof(*sorted));
		qsort(sorted, n_specs, sizeof(*sorted), engine_spec_sort);
	}
	e->jobs = xcalloc(plan->n_changes + 1, sizeof(*e->jobs));
	for (size_t i = 0; i < plan->n_changes; i++) {
		const struct plan_change *ch = &plan->changes[i];
		struct cert_spec **found;
		struct engine_job *job;

		if (ch->kind == CHANGE_NONE || ch->kind == CHANGE_ORPHAN)
			continue;
		if (ch->deferred) {
			e->res.deferred++;
			continue;
		}
		job = &e->jobs[e->n_jobs];
		job->change = ch;
		if (ch->kind == CHANGE_REMOVE) {
			if (!(job->rec = state_cert_get(e->st, ch->name)))
				continue;
			job->issuer = config_issuer(e->cfg, job->rec->issuer);
			e->n_jobs++;
			continue;
		}
		found = bsearch(ch->name, sorted, n_specs, sizeof(*sorted), engine_spec_cmp);
		if (!found) {
			rc = cs_error(CS_ECONFLICT, "%s: in the plan but not in the manifests at this commit",
				      ch->name);
			goto out;
		}
		if (!config_issuer(e->cfg, (*found)->issuer)) {
			rc = cs_error(CS_EINVALID, "%s: issuer %s is not configured", ch->name, (*found)->issuer);
			goto out;
		}
		job->spec = *found;
		job->created = state_cert_get(e->st, ch->name) == NULL;
		job->rec = state_cert_put(e->st, ch->name);
		if (ch->kind == CHANGE_RESUME && !job->rec->step) {
			rc = cs_error(CS_ECONFLICT, "%s: nothing to resume (stale plan?)", ch->name);
			goto out;
		}
		job->issuer = config_issuer(e->cfg, job->spec->issuer);
		job->left0 = job->left = engine_job_requests(job);
		e->n_jobs++;
	}
out:
	free(sorted);
	return rc;
}

int engine_apply(const struct config *cfg, struct state_backend *be, struct state *st, const struct plan *plan,
		 struct cert_spec *const *specs, size_t n_specs, const struct engine_opts *opts,
		 struct engine_result *res)
{
	struct engine e;
	pthread_t threads[ENGINE_MAX_PARALLELISM];
	size_t n_threads;
	int rc;

	memset(&e, 0, sizeof(e));
	e.cfg = cfg;
	e.be = be;
	e.st = st;
	e.opts = opts;
	e.keys = opts->keys;
	if (!e.keys) {
		e.keys = keystore_open_dir(cfg->key_dir);
		e.own_keys = 1;
	}
	pthread_mutex_init(&e.mu, NULL);
	pthread_cond_init(&e.cv, NULL);
	if (opts->wait > 0)
		e.deadline = util_now() + opts->wait;
	e.t0_ms = e.last_progress_ms = util_mono_ms();
	e.next_mark = ENGINE_PROGRESS_EVERY;
	e.eta_every_ms = ENGINE_PROGRESS_MS;
	if ((rc = engine_prepare(&e, plan, specs, n_specs)))
		goto out;
	engine_announce(&e);
	e.parked = xcalloc(e.n_jobs + 1, sizeof(*e.parked));
	n_threads = opts->parallelism > 0 ? (size_t)opts->parallelism : 4;
	if (n_threads > ENGINE_MAX_PARALLELISM)
		n_threads = ENGINE_MAX_PARALLELISM;
	if (n_threads > e.n_jobs)
		n_threads = e.n_jobs;
	e.n_threads = n_threads ? n_threads : 1;
	for (size_t i = 0; i < n_threads; i++) {
		if (pthread_create(&threads[i], NULL, engine_worker, &e)) {
			n_threads = i;
			break;
		}
	}
	if (n_threads == 0)
		engine_worker(&e);
	for (size_t i = 0; i < n_threads; i++)
		pthread_join(threads[i], NULL);
	/* Records made for jobs an interruption kept from starting were never journaled: drop them. */
	for (size_t i = 0; i < e.n_jobs; i++)
		if (e.jobs[i].created && !e.jobs[i].started)
			state_cert_remove(st, e.jobs[i].change->name);
	if (e.fatal)
		rc = cs_error(CS_ERROR, "state could not be written; stopped (%s)", e.fatal_msg);
	for (size_t i = 0; i < cfg->n_issuers; i++)
		if (cfg->issuers[i].priv && cfg->issuers[i].ops->end_run)
			cfg->issuers[i].ops->end_run(&cfg->issuers[i]);
out:
	metrics_set_apply_eta(0, 0); /* no apply in progress: no estimate */
	*res = e.res;
	free(e.jobs);
	free(e.parked);
	if (e.own_keys)
		keystore_close(e.keys);
	pthread_cond_destroy(&e.cv);
	pthread_mutex_destroy(&e.mu);
	return rc;
}
