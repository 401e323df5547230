/* Manifests at a commit → desired set → plan. */
#include "reconcile.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"
#include "outputs.h"
#include "outwatch.h"
#include "provider.h"
#include "spec_cache.h"

/* ---------- desired set ---------- */

struct check_arg {
	const struct config *cfg;
};

static int check_issuer_exists(void *arg, const char *issuer)
{
	const struct check_arg *a = arg;

	return config_issuer(a->cfg, issuer) != NULL;
}

/*
 * What no driver has to check itself: the X.509 fields the issuer cannot
 * issue (its ops->x509_fields), and a keystore without a configured password.
 * Returns the number of problems.
 */
static size_t check_generic(const struct config *cfg, const struct issuer *is, const struct cert_spec *s,
			    struct diags *d)
{
	size_t before = d->n;

	for (int f = 0; f < XF__MAX; f++)
		if (s->xpos[f][0] && !(is->ops->x509_fields & (1u << f)))
			diags_add(d, s->file, s->xpos[f][0], s->xpos[f][1],
				  "spec.%s: issuer %s (type %s) cannot put %s in a certificate; use an issuer of type "
				  "ca for it, or remove the field",
				  manifest_x509_field_names[f], is->name, is->ops->type, manifest_x509_field_names[f]);
	if ((s->formats & (1u << OUTFMT_P12)) && cfg->output.pkcs12_password.kind == CRED_NONE)
		diags_add(d, s->file, s->formats_line, s->formats_col,
			  "spec.output.formats: keystore.p12 needs a password: set output.pkcs12Password in the "
			  "config ({env: NAME} or {file: PATH}; never in a manifest)");
	return d->n - before;
}

static void check_issuer(void *arg, const struct cert_spec *s, struct diags *d)
{
	const struct check_arg *a = arg;
	const struct issuer *is = config_issuer(a->cfg, s->issuer);

	if (is && is->priv && !check_generic(a->cfg, is, s, d) && is->ops->check_spec)
		is->ops->check_spec(is, s, d);
}

static const char *check_issuer_at(void *arg, size_t i)
{
	const struct check_arg *a = arg;

	return i < a->cfg->n_issuers ? a->cfg->issuers[i].name : NULL;
}

static int spec_name_cmp(const void *a, const void *b)
{
	return strcmp((*(struct cert_spec *const *)a)->name, (*(struct cert_spec *const *)b)->name);
}

static int reconcile_parse_file(struct gitsrc *g, const struct gitsrc_file *f, struct cache_entry *e)
{
	struct buf b = BUF_INIT;
	int rc;

	memcpy(e->oid, f->oid, sizeof(e->oid));
	e->path = xstrdup(f->path);
	rc = gitsrc_read_blob(g, f->oid, f->path, MANIFEST_MAX_FILE_BYTES, &b);
	/* Only a file over the limit needs its size asked again: it was never read. */
	if (rc == CS_EINVALID && !gitsrc_blob_size_of(g, f->oid, &e->size)) {
		diags_add(&e->diags, f->path, 0, 0, "file is %zu bytes; the limit is %d", e->size,
			  MANIFEST_MAX_FILE_BYTES);
		return 0;
	}
	if (rc)
		return rc;
	e->size = b.len;
	manifest_parse_file(f->path, b.data, b.len, &e->specs, &e->n, &e->diags);
	buf_free(&b);
	return 0;
}

/* The parse cache file of a CLI run: <source.cacheDir>/manifests.cache, NULL without a cache directory. */
static char *reconcile_cache_path(const struct config *cfg)
{
	return cfg->source.cache_dir ? fsutil_join(cfg->source.cache_dir, SPEC_CACHE_FILE) : NULL;
}

int reconcile_desired(const struct config *cfg, struct gitsrc *g, const char *commit, struct spec_cache *cache,
		      struct desired *out)
{
	struct spec_cache *own = NULL;
	struct gitsrc_file *files = NULL;
	size_t n_files = 0, cap = 0, n_all = 0, parsed = 0;
	struct cert_spec **all = NULL;
	unsigned char *bad = NULL;
	struct check_arg arg = {cfg};
	struct manifest_ctx mctx = {check_issuer_exists, check_issuer, &arg, check_issuer_at};
	char *disk = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(out->commit, sizeof(out->commit), "%s", commit);
	if (!cache)
		cache = own = spec_cache_new();
	/* A CLI run, or run's first load (a restart): the parse cache on disk stands in for memory. */
	if (!cache->n && (disk = reconcile_cache_path(cfg)))
		spec_cache_read(cache, disk);
	/* Blobs found in the cache are never opened: their sizes are not read either. */
	if ((rc = gitsrc_list_lazy(g, commit, cfg->source.path, &files, &n_files)))
		goto out;
	out->n_files = n_files;
	if (n_files > cache->n)
		spec_cache_reserve(cache, n_files - cache->n); /* a warm cache holds them already */
	for (size_t i = 0; i < n_files; i++) {
		struct cache_entry *e = spec_cache_slot(cache, files[i].oid, files[i].path);

		if (!e->oid[0]) {
			if ((rc = reconcile_parse_file(g, &files[i], e))) {
				spec_cache_entry_clear(e);
				goto out;
			}
			cache->n++;
			cache->dirty = 1;
			parsed++;
		}
		e->used = 1;
		for (size_t k = 0; k < e->diags.n; k++)
			diags_add(&out->diags, e->diags.v[k].file, e->diags.v[k].line, e->diags.v[k].col, "%s",
				  e->diags.v[k].msg);
		util_grow(&all, &cap, n_all + e->n, sizeof(*all));
		for (size_t k = 0; k < e->n; k++)
			all[n_all++] = e->specs[k];
	}
	bad = xcalloc(n_all + 1, 1);
	manifest_check_set(all, n_all, &mctx, bad, &out->diags);
	out->specs = xcalloc(n_all + 1, sizeof(*out->specs));
	for (size_t i = 0; i < n_all; i++) {
		if (bad[i])
			out->n_invalid++;
		else
			out->specs[out->n_specs++] = all[i];
	}
	if (out->n_specs)
		qsort(out->specs, out->n_specs, sizeof(*out->specs), spec_name_cmp);
	diags_sort(&out->diags);
	if (!own && !out->diags.n && !out->n_invalid)
		out->index = manifest_set_index_new(out->specs, out->n_specs);
	spec_cache_evict_unused(cache);
	if (disk)
		spec_cache_write(cache, disk);
	log_debug("manifests: %zu files, %zu parsed, %zu from the parse cache", n_files, parsed, n_files - parsed);
out:
	gitsrc_files_free(files, n_files);
	free(all);
	free(bad);
	free(disk);
	out->owned = own; /* specs are borrowed from the cache: a private one lives as long as out */
	return rc;
}

/* Where key would go in the name-sorted v[0..n) (the first element not before it). */
static size_t spec_lower_bound(struct cert_spec *const *v, size_t n, const char *name)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(v[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* prev's sorted specs without removed (sorted by address), with added (sorted by name) merged in. */
static struct cert_spec **desired_merge(const struct desired *prev, struct cert_spec **removed, size_t n_removed,
					struct cert_spec **added, size_t n_added, size_t *n_out)
{
	struct cert_spec **v = xcalloc(prev->n_specs + n_added + 1, sizeof(*v));
	size_t n = 0, i = 0;

	for (size_t j = 0; j <= n_added; j++) {
		size_t upto =
			j < n_added ? spec_lower_bound(prev->specs, prev->n_specs, added[j]->name) : prev->n_specs;

		for (; i < upto; i++)
			if (!n_removed || !bsearch(&prev->specs[i], removed, n_removed, sizeof(*removed), util_ptr_cmp))
				v[n++] = prev->specs[i];
		if (j < n_added)
			v[n++] = added[j];
	}
	*n_out = n;
	return v;
}

/* Appends a cache entry's specs to v[0..*n). */
static void specs_append(struct cert_spec ***v, size_t *cap, size_t *n, const struct cache_entry *e)
{
	if (!e->n)
		return;
	util_grow(v, cap, *n + e->n, sizeof(**v));
	memcpy(*v + *n, e->specs, e->n * sizeof(**v));
	*n += e->n;
}

/*
 * The changed manifests' specs: the removed side's (from the cache: prev
 * has them) and the added side's (parsed when the cache lacks them).
 * Returns an error of the source; *clean = 0 when the caller must read the
 * whole tree instead (a file with problems, an entry prev should have).
 */
static int desired_changed_specs(struct gitsrc *g, struct spec_cache *cache, const struct gitsrc_delta *dl, size_t n_dl,
				 struct cert_spec ***removed, size_t *n_removed, struct cert_spec ***added,
				 size_t *n_added, size_t *files, size_t *parsed, int *clean)
{
	size_t cap_r = 0, cap_a = 0;
	int rc;

	for (size_t i = 0; i < n_dl && *clean; i++) {
		struct cache_entry *e;

		if (dl[i].old_path) {
			e = spec_cache_slot(cache, dl[i].old_oid, dl[i].old_path);
			if (!e->oid[0] || e->diags.n || !*files) {
				*clean = 0;
				break;
			}
			specs_append(removed, &cap_r, n_removed, e);
			(*files)--;
		}
		if (!dl[i].new_path)
			continue;
		e = spec_cache_slot(cache, dl[i].new_oid, dl[i].new_path);
		if (!e->oid[0]) {
			struct gitsrc_file f = {dl[i].new_path, {0}, GITSRC_SIZE_UNKNOWN};

			memcpy(f.oid, dl[i].new_oid, sizeof(f.oid));
			if ((rc = reconcile_parse_file(g, &f, e))) {
				spec_cache_entry_clear(e);
				return rc;
			}
			cache->n++;
			cache->dirty = 1;
			(*parsed)++;
		}
		if (e->diags.n) {
			*clean = 0;
			break;
		}
		specs_append(added, &cap_a, n_added, e);
		(*files)++;
	}
	return 0;
}

int reconcile_desired_next(const struct config *cfg, struct gitsrc *g, const char *commit, struct spec_cache *cache,
			   struct desired *prev, struct desired *out)
{
	struct gitsrc_delta *dl = NULL;
	struct cert_spec **removed = NULL, **added = NULL;
	size_t n_dl = 0, n_removed = 0, n_added = 0, files = prev->n_files, parsed = 0;
	struct check_arg arg = {cfg};
	struct manifest_ctx mctx = {check_issuer_exists, check_issuer, &arg, check_issuer_at};
	int rc = 0, clean = prev->index != NULL;

	memset(out, 0, sizeof(*out));
	if (clean && gitsrc_diff_manifests(g, prev->commit, commit, cfg->source.path, &dl, &n_dl)) {
		log_debug("manifests: no diff from %.12s (%s); reading the whole tree", prev->commit, cs_errmsg());
		cs_error_clear();
		clean = 0;
	}
	if (clean && (rc = desired_changed_specs(g, cache, dl, n_dl, &removed, &n_removed, &added, &n_added, &files,
						 &parsed, &clean)))
		goto out;
	/* An empty or over-full tree: the whole listing says why. */
	if (!clean || !files || files > GITSRC_MAX_FILES ||
	    !manifest_set_index_update(prev->index, removed, n_removed, added, n_added, &mctx)) {
		rc = reconcile_desired(cfg, g, commit, cache, out);
		goto out;
	}
	snprintf(out->commit, sizeof(out->commit), "%s", commit);
	out->n_files = files;
	if (n_removed)
		qsort(removed, n_removed, sizeof(*removed), util_ptr_cmp);
	if (n_added)
		qsort(added, n_added, sizeof(*added), spec_name_cmp);
	out->specs = desired_merge(prev, removed, n_removed, added, n_added, &out->n_specs);
	out->index = prev->index;
	prev->index = NULL;
	/* Last: deleting entries moves others in the table (the specs themselves stay where they are). */
	for (size_t i = 0; i < n_dl; i++)
		if (dl[i].old_path)
			spec_cache_remove(cache, dl[i].old_oid, dl[i].old_path);
	log_debug("manifests: %zu files, %zu changed since %.12s, %zu parsed", files, n_dl, prev->commit, parsed);
out:
	gitsrc_deltas_free(dl, n_dl);
	free(removed);
	free(added);
	return rc;
}

void desired_free(struct desired *d)
{
	free(d->specs);
	manifest_set_index_free(d->index);
	diags_free(&d->diags);
	spec_cache_free(d->owned);
	memset(d, 0, sizeof(*d));
}

/* ---------- plan ---------- */

static int reconcile_steps(void *arg, const char *issuer, enum change_kind kind, const struct cert_spec *spec,
			   const struct state_cert *rec, const char **provider, struct plan_steps *out)
{
	const struct config *cfg = arg;
	const struct issuer *is = config_issuer(cfg, issuer);

	if (!is || !is->priv)
		return cs_error(CS_EINVALID, "issuer %s is not configured", issuer ? issuer : "(none)");
	*provider = is->ops->type;
	return is->ops->plan(is, kind, spec, rec, out);
}

static int drift_cmp(const void *a, const void *b)
{
	return strcmp(((const struct plan_drift *)a)->name, ((const struct plan_drift *)b)->name);
}

/* Asks each recorded certificate's provider what it sees (plan --refresh). */
static void reconcile_refresh(const struct config *cfg, struct state_cert *const *recs, size_t n, int64_t now,
			      struct plan_drift **out, size_t *n_out, struct plan *warn_to)
{
	size_t cap = 0;

	*out = NULL;
	*n_out = 0;
	for (size_t i = 0; i < n; i++) {
		const struct issuer *is = recs[i]->issuer ? config_issuer(cfg, recs[i]->issuer) : NULL;
		struct plan_drift d;

		if (!is || !is->priv || !is->ops->refresh || recs[i]->phase != PHASE_READY)
			continue;
		memset(&d, 0, sizeof(d));
		d.name = recs[i]->name;
		if (is->ops->refresh(is, recs[i], now, &d)) {
			plan_add_warning(warn_to, "%s: refresh failed: %s", recs[i]->name, cs_errmsg());
			free(d.what);
			continue;
		}
		if (!d.what)
			continue;
		util_grow(out, &cap, *n_out + 1, sizeof(**out));
		(*out)[(*n_out)++] = d;
	}
	if (*n_out)
		qsort(*out, *n_out, sizeof(**out), drift_cmp);
}

size_t reconcile_outputs_moved(const enum output_status *outs, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += outs[i] == OUTPUT_OK_BY_CONTENT;
	return k;
}

/* One slice of the output checks (they are syscalls only: threads overlap them). */
struct check_slice {
	int rootfd;
	const char *root;
	struct state_cert *const *recs;
	enum output_status *outs;
	size_t from, to;
};

static void *reconcile_check_slice(void *arg)
{
	const struct check_slice *c = arg;

	for (size_t i = c->from; i < c->to; i++)
		c->outs[i] = c->recs[i]->out_generation ? outputs_check_at(c->rootfd, c->root, c->recs[i]) : OUTPUT_OK;
	return NULL;
}

#define CHECK_THREADS_MAX 4
#define CHECK_PER_THREAD_MIN 1024

static void reconcile_check_outputs(const char *root, struct state_cert *const *recs, size_t n,
				    enum output_status *outs)
{
	struct check_slice s[CHECK_THREADS_MAX];
	pthread_t tid[CHECK_THREADS_MAX];
	int started[CHECK_THREADS_MAX] = {0};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t k = n / CHECK_PER_THREAD_MIN;
	int rootfd;

	if (!n)
		return;
	rootfd = outputs_root_open(root);
	if (k > CHECK_THREADS_MAX)
		k = CHECK_THREADS_MAX;
	if (cpus > 0 && k > (size_t)cpus)
		k = (size_t)cpus;
	if (k < 1)
		k = 1;
	for (size_t t = 0; t < k; t++) {
		s[t] = (struct check_slice){rootfd, root, recs, outs, n * t / k, n * (t + 1) / k};
		/* Slice 0 runs here; a thread that cannot start runs its slice here too. */
		started[t] = t > 0 && pthread_create(&tid[t], NULL, reconcile_check_slice, &s[t]) == 0;
	}
	for (size_t t = 0; t < k; t++)
		if (!started[t])
			reconcile_check_slice(&s[t]);
	for (size_t t = 0; t < k; t++)
		if (started[t])
			pthread_join(tid[t], NULL);
	if (rootfd >= 0)
		close(rootfd);
}

static void reconcile_check_fn(void *arg, const char *root, struct state_cert *const *recs, size_t n,
			       enum output_status *outs, int deep)
{
	(void)arg;
	if (!deep) {
		reconcile_check_outputs(root, recs, n, outs);
		return;
	}
	for (size_t i = 0; i < n; i++)
		outs[i] = outputs_check_deep(root, recs[i]);
}

enum output_status *reconcile_observe(const struct config *cfg, const struct state *st, size_t *n_out)
{
	size_t n = 0;
	struct state_cert **recs = st ? state_cert_list(st, &n) : NULL;
	enum output_status *outs = reconcile_observe_watched(cfg, recs, n, NULL, 0);

	free(recs);
	if (n_out)
		*n_out = n;
	return outs;
}

enum output_status *reconcile_observe_watched(const struct config *cfg, struct state_cert *const *recs, size_t n,
					      struct outwatch *w, int64_t now)
{
	enum output_status *outs = xcalloc(n + 1, sizeof(*outs));
	int64_t t0 = util_mono_ms();
	size_t checked, moved;

	if (w) {
		checked = outwatch_observe(w, recs, n, outs, now, reconcile_check_fn, NULL);
		moved = reconcile_outputs_moved(outs, n);
		log_debug("outputs of %zu certificates checked in %" PRId64 " ms (%zu looked at again, the rest "
			  "unchanged since the last look%s; %zu by content)",
			  n, util_mono_ms() - t0, checked, outwatch_active(w) ? "" : "; inotify is off", moved);
	} else {
		reconcile_check_outputs(cfg->output_root, recs, n, outs);
		moved = reconcile_outputs_moved(outs, n);
		log_debug("outputs of %zu certificates checked in %" PRId64 " ms (%zu by content)", n,
			  util_mono_ms() - t0, moved);
	}
	return outs;
}

size_t reconcile_restamp_outputs(const struct config *cfg, struct state_cert *const *recs, size_t n,
				 const enum output_status *outs, int64_t now)
{
	size_t moved = 0, changed = 0;

	for (size_t i = 0; i < n; i++) {
		if (outs[i] != OUTPUT_OK_BY_CONTENT)
			continue;
		moved++;
		changed += (size_t)outputs_restamp(cfg->output_root, recs[i], now);
	}
	if (changed)
		log_info("the files of %zu certificate%s outputs were copied, restored or touched, their content "
			 "unchanged: their new signatures are recorded, so later checks stat them again instead of "
			 "reading them",
			 changed, changed == 1 ? "'s" : "s'");
	if (moved > changed)
		log_debug("%zu certificates' outputs were shown unchanged by their content but not recorded again "
			  "(written in the last %d s, or changed since): a later look does it",
			  moved - changed, OUTPUTS_RESTAMP_SETTLE);
	return changed;
}

/*
 * The account-level side effects of the plan: each issuer that a change
 * (other than a removal or an orphan) uses is asked once.
 */
static void reconcile_account_actions(const struct config *cfg, const struct state *st, struct plan *p)
{
	for (size_t k = 0; k < cfg->n_issuers; k++) {
		const struct issuer *is = &cfg->issuers[k];
		char **lines = NULL;
		size_t n = 0, used = 0;

		if (!is->priv || !is->ops->account_plan)
			continue;
		for (size_t i = 0; i < p->n_changes && !used; i++) {
			const struct plan_change *c = &p->changes[i];

			used = c->kind != CHANGE_NONE && c->kind != CHANGE_ORPHAN && c->kind != CHANGE_REMOVE &&
			       c->issuer && !strcmp(c->issuer, is->name);
		}
		if (!used)
			continue;
		is->ops->account_plan(cfg, is, st, &lines, &n);
		for (size_t i = 0; i < n; i++) {
			plan_add_account_action(p, "%s", lines[i]);
			free(lines[i]);
		}
		free(lines);
	}
}

int reconcile_plan(const struct config *cfg, const char *repo, const char *ref, const struct desired *des,
		   const struct state *st, int has_state, const struct reconcile_opts *o, struct plan **out)
{
	struct plan_input in;
	struct state_cert **recs = NULL;
	enum output_status *outs = NULL;
	struct plan_drift *drift = NULL;
	struct plan *warnings = xcalloc(1, sizeof(*warnings));
	size_t n_recs = 0, n_drift = 0;
	int rc;

	memset(&in, 0, sizeof(in));
	if (st && o->recorded) {
		n_recs = o->n_recorded;
	} else if (st) {
		recs = state_cert_list(st, &n_recs);
	}
	if (!o->observed)
		outs = reconcile_observe(cfg, st, NULL);
	if (o->refresh)
		reconcile_refresh(cfg, recs ? recs : o->recorded, n_recs, o->now, &drift, &n_drift, warnings);
	in.desired = des->specs;
	in.n_desired = des->n_specs;
	in.state = has_state ? st : NULL;
	in.recorded = recs ? recs : o->recorded;
	in.n_recorded = n_recs;
	in.outputs = o->observed ? o->observed : outs;
	in.drift = drift;
	in.n_drift = n_drift;
	in.now = o->now;
	/* A revision with errors never removes: an invalid manifest is not a deleted one. */
	in.prune = cfg->policy.prune && des->diags.n == 0;
	in.max_paid = cfg->policy.max_paid_orders;
	in.retry_failed = o->retry_failed;
	in.steps_fn = reconcile_steps;
	in.steps_arg = (void *)cfg;
	in.repo = repo;
	in.ref = ref;
	in.commit = des->commit;
	rc = plan_diff(&in, out);
	if (!rc) {
		for (size_t i = 0; i < des->diags.n; i++) {
			const struct diag *g = &des->diags.v[i];

			diags_add(&(*out)->errors, g->file, g->line, g->col, "%s", g->msg);
		}
		for (size_t i = 0; i < warnings->n_warnings; i++)
			plan_add_warning(*out, "%s", warnings->warnings[i]);
		reconcile_account_actions(cfg, has_state ? st : NULL, *out);
	}
	for (size_t i = 0; i < n_drift; i++)
		free(drift[i].what);
	free(drift);
	free(recs);
	free(outs);
	plan_free(warnings);
	return rc;
}

int reconcile_pr_plan(const struct config *cfg, const char *repo, const char *ref, const struct desired *base,
		      const struct desired *head, const struct state *st, int64_t now, struct plan **out)
{
	struct plan_pr_input in;
	int rc;

	memset(&in, 0, sizeof(in));
	in.base = base->specs;
	in.n_base = base->n_specs;
	in.head = head->specs;
	in.n_head = head->n_specs;
	in.state = st;
	in.now = now;
	/* As apply would: a head with errors never removes. */
	in.prune = cfg->policy.prune && head->diags.n == 0;
	in.max_paid = cfg->policy.max_paid_orders;
	in.steps_fn = reconcile_steps;
	in.steps_arg = (void *)cfg;
	in.repo = repo;
	in.ref = ref;
	in.commit = head->commit;
	in.base_commit = base->commit;
	if ((rc = plan_pr_diff(&in, out)))
		return rc;
	reconcile_account_actions(cfg, st, *out);
	for (size_t i = 0; i < head->diags.n; i++) {
		const struct diag *g = &head->diags.v[i];

		diags_add(&(*out)->errors, g->file, g->line, g->col, "%s", g->msg);
	}
	/* Spending beyond the cap is a review problem, not something to find out at apply time. */
	if ((*out)->deferred)
		diags_add(&(*out)->errors, "", 0, 0,
			  "%zu paid orders, over policy.maxPaidOrders (%d): raise the limit or split the change",
			  (*out)->paid + (*out)->deferred, cfg->policy.max_paid_orders);
	return 0;
}

size_t reconcile_upkeep(const struct config *cfg, struct state *st, int64_t now, volatile int *stop)
{
	size_t n = 0, changed;
	struct state_cert **recs = state_cert_list(st, &n);

	changed = reconcile_upkeep_recs(cfg, recs, n, now, stop);
	free(recs);
	return changed;
}

size_t reconcile_upkeep_recs(const struct config *cfg, struct state_cert *const *recs, size_t n, int64_t now,
			     volatile int *stop)
{
	size_t changed = 0;

	for (size_t i = 0; i < n && !(stop && __atomic_load_n(stop, __ATOMIC_RELAXED)); i++) {
		const struct issuer *is = recs[i]->issuer ? config_issuer(cfg, recs[i]->issuer) : NULL;
		int64_t due;

		if (!is || !is->priv || !is->ops->upkeep_due || !is->ops->upkeep || recs[i]->phase != PHASE_READY)
			continue;
		due = is->ops->upkeep_due(is, recs[i]);
		if (due && due <= now)
			changed += is->ops->upkeep(is, recs[i], now) != 0;
	}
	return changed;
}

/* Reads one secret of the source into b (registered for redaction); 0 when it is not configured. */
static int reconcile_source_secret(const struct cred *c, const char *what, struct buf *b, const char **out)
{
	int rc;

	if (c->kind == CRED_NONE)
		return 0;
	if ((rc = config_cred_read(c, what, b)))
		return rc;
	log_add_secret(b->data);
	*out = b->data;
	return 0;
}

int reconcile_open_source(const struct config *cfg, struct gitsrc **out)
{
	struct gitsrc_opts o;
	struct buf token = BUF_INIT, key = BUF_INIT, pass = BUF_INIT, kh = BUF_INIT;
	const char *repo = cfg->source.repo;
	int rc = 0;

	memset(&o, 0, sizeof(o));
	o.repo = repo;
	o.cache_dir = cfg->source.cache_dir;
	o.ca_file = cfg->source.ca_file;
	/* Each credential only where it is used: a local path or an SSH remote never asks for source.token. */
	if (repo && (!strncasecmp(repo, "https://", 8) || !strncasecmp(repo, "http://", 7)))
		rc = reconcile_source_secret(&cfg->source.token, "source.token", &token, &o.token);
	if (!rc && repo && gitsrc_is_ssh_url(repo)) {
		if (!(rc = reconcile_source_secret(&cfg->source.ssh_key, "source.sshKey", &key, &o.ssh_key)) &&
		    key.data)
			buf_puts(&key, "\n"); /* a key file's last newline was stripped; the key parser wants it */
		o.ssh_key = key.data;
		if (!rc)
			rc = reconcile_source_secret(&cfg->source.ssh_passphrase, "source.sshKeyPassphrase", &pass,
						     &o.ssh_passphrase);
		if (!rc && cfg->source.known_hosts.kind != CRED_NONE &&
		    !(rc = config_public_read(&cfg->source.known_hosts, "source.knownHosts", &kh)))
			o.known_hosts = kh.data;
	}
	if (!rc)
		rc = gitsrc_open(&o, out);
	buf_wipe(&token);
	buf_wipe(&key);
	buf_wipe(&pass);
	buf_free(&kh);
	return rc;
}

int reconcile_verify_head(const struct config *cfg, struct gitsrc *g, const char *commit, char **signer)
{
	struct buf keys = BUF_INIT, sig = BUF_INIT, data = BUF_INIT;
	char *who = NULL;
	int rc;

	if (signer)
		*signer = NULL;
	if (!cfg->source.verify.on)
		return 0;
	if ((rc = config_public_read(&cfg->source.verify.keys, "source.verify.keys", &keys)))
		goto out;
	rc = gitsrc_commit_signature(g, commit, &sig, &data);
	if (rc == CS_ENOTFOUND)
		rc = cs_error(CS_EAUTH,
			      "commit %.12s is not verified: it is unsigned (source.verify requires a signature by one "
			      "of source.verify.keys); it is not applied",
			      commit);
	if (rc || (rc = gitsrc_verify_signature(commit, sig.data, sig.len, data.data, data.len, keys.data, &who)))
		goto out;
	log_debug("commit %.12s: signature verified (%s)", commit, who);
	if (signer) {
		*signer = who;
		who = NULL;
	}
out:
	free(who);
	buf_free(&keys);
	buf_free(&sig);
	buf_free(&data);
	return rc;
}
