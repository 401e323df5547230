/*
 * Checks across every document of a revision: duplicate names, output
 * directories that collide or nest, unknown issuers. Hash tables keep it
 * linear: 10,000 certificates cost milliseconds.
 */
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/strmap.h"
#include "../util/util.h"
#include "internal.h"

#define NONE ((size_t)-1)
#define MAX_LISTED_ISSUERS 10

/* Adds key -> index unless present; returns the index already there, or NONE. */
static size_t set_put_first(struct strmap *m, const char *key, size_t index)
{
	size_t before = m->n;
	struct strmap_slot *s = strmap_put(m, key, strlen(key));

	if (m->n == before)
		return s->num;
	s->num = index;
	return NONE;
}

/* Where a spec's output directory is written: its output.directory, or its name (the default). */
static void output_pos(const struct cert_spec *s, int *line, int *col)
{
	*line = s->output_line ? s->output_line : s->line;
	*col = s->output_line ? s->output_col : s->col;
}

/* Flags both ends of every duplicate name in dup[]. */
static int set_check_names(struct cert_spec *const *specs, size_t n, unsigned char *dup, struct diags *d)
{
	struct strmap names;
	int problems = 0;

	strmap_init(&names, n, 0);
	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = specs[i], *p;
		size_t first = set_put_first(&names, s->name, i);

		if (first == NONE)
			continue;
		p = specs[first];
		diags_add(d, s->file, s->line, s->col, "duplicate certificate name \"%s\" (also defined at %s:%d:%d)",
			  s->name, p->file, p->line, p->col);
		diags_add(d, p->file, p->line, p->col, "duplicate certificate name \"%s\" (also defined at %s:%d:%d)",
			  p->name, s->file, s->line, s->col);
		dup[i] = dup[first] = 1;
		problems += 2;
	}
	strmap_free(&names);
	return problems;
}

/* Two certificates in one directory, or one inside the other's: both are told, each pointing at the other. */
static int set_report_dirs(const struct cert_spec *a, const struct cert_spec *b, int nested, struct diags *d)
{
	int al, ac, bl, bc;

	output_pos(a, &al, &ac);
	output_pos(b, &bl, &bc);
	if (!nested) {
		diags_add(d, a->file, al, ac, "output directory \"%s\" is also used by certificate \"%s\" (%s:%d:%d)",
			  a->output_dir, b->name, b->file, bl, bc);
		diags_add(d, b->file, bl, bc, "output directory \"%s\" is also used by certificate \"%s\" (%s:%d:%d)",
			  b->output_dir, a->name, a->file, al, ac);
	} else {
		diags_add(d, a->file, al, ac,
			  "output directory \"%s\" is inside \"%s\", the output directory of certificate \"%s\" "
			  "(%s:%d:%d)",
			  a->output_dir, b->output_dir, b->name, b->file, bl, bc);
		diags_add(d, b->file, bl, bc,
			  "output directory \"%s\" contains \"%s\", the output directory of certificate \"%s\" "
			  "(%s:%d:%d)",
			  b->output_dir, a->output_dir, a->name, a->file, al, ac);
	}
	return 2;
}

static int set_check_dirs(struct cert_spec *const *specs, size_t n, const unsigned char *dup, unsigned char *bad,
			  struct diags *d)
{
	struct strmap dirs;
	int problems = 0;

	strmap_init(&dirs, n, 0);
	for (size_t i = 0; i < n; i++) {
		size_t first;

		if (dup[i])
			continue; /* a duplicate name already collides here through the default directory */
		first = set_put_first(&dirs, specs[i]->output_dir, i);
		if (first != NONE) {
			problems += set_report_dirs(specs[i], specs[first], 0, d);
			bad[i] = bad[first] = 1;
		}
	}
	/* every parent of every directory: O(n × depth), looked up in place (dir[0..len)) */
	for (size_t i = 0; i < n; i++) {
		const char *dir = specs[i]->output_dir;

		for (const char *slash = strrchr(dir, '/'); slash; slash = memrchr(dir, '/', (size_t)(slash - dir))) {
			const struct strmap_slot *outer = strmap_get(&dirs, dir, (size_t)(slash - dir));

			if (outer && outer->num != i) {
				problems += set_report_dirs(specs[i], specs[outer->num], 1, d);
				bad[i] = bad[outer->num] = 1;
				break;
			}
		}
	}
	strmap_free(&dirs);
	return problems;
}

/* The configured issuers for the message: "configured: a, b; did you mean \"c\"?". Caller frees. */
static char *set_issuer_hint(const struct manifest_ctx *ctx, const char *issuer)
{
	struct buf b = BUF_INIT;
	const char *name, *best = NULL;
	size_t i, best_d = 3;

	if (!ctx->issuer_at)
		return xstrdup("");
	for (i = 0; (name = ctx->issuer_at(ctx->arg, i)); i++) {
		size_t dist = util_edit_distance(issuer, name);

		if (i < MAX_LISTED_ISSUERS)
			buf_printf(&b, "%s%s", i ? ", " : " (configured: ", name);
		if (dist < best_d) { /* util_edit_distance ignores case: "CA" finds "ca" */
			best_d = dist;
			best = name;
		}
	}
	if (!i)
		return xstrdup(" (no issuers are configured)");
	if (i > MAX_LISTED_ISSUERS)
		buf_printf(&b, " and %zu more", i - MAX_LISTED_ISSUERS);
	if (best)
		buf_printf(&b, "; did you mean \"%s\"?", best);
	buf_puts(&b, ")");
	return buf_detach(&b);
}

static int set_check_issuers(struct cert_spec *const *specs, size_t n, const struct manifest_ctx *ctx,
			     unsigned char *bad, struct diags *d)
{
	int problems = 0;

	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = specs[i];
		size_t before = d->n;

		if (!ctx->issuer_exists(ctx->arg, s->issuer)) {
			char *hint = set_issuer_hint(ctx, s->issuer);

			diags_add(d, s->file, s->issuer_line, s->issuer_col, "spec.issuer: unknown issuer \"%s\"%s",
				  s->issuer, hint);
			free(hint);
		} else if (ctx->issuer_check) {
			ctx->issuer_check(ctx->arg, s, d);
		}
		if (d->n > before) {
			bad[i] = 1;
			problems += (int)(d->n - before);
		}
	}
	return problems;
}

int manifest_check_set(struct cert_spec *const *specs, size_t n, const struct manifest_ctx *ctx, unsigned char *bad,
		       struct diags *d)
{
	unsigned char *dup = xcalloc(n + 1, 1);
	int problems = set_check_names(specs, n, dup, d);

	for (size_t i = 0; i < n; i++)
		bad[i] |= dup[i];
	problems += set_check_dirs(specs, n, dup, bad, d);
	if (ctx && ctx->issuer_exists)
		problems += set_check_issuers(specs, n, ctx, bad, d);
	free(dup);
	return problems;
}

/* ---------- the index kept between revisions ---------- */

struct manifest_set_index {
	struct strmap names;   /* metadata.name -> spec */
	struct strmap dirs;    /* output directory -> spec */
	struct strmap parents; /* every proper parent of an output directory -> how many directories are under it */
};

/* Adds delta to the count of every proper parent of dir ("a/b/c": "a/b", "a"), dropping those at zero. */
static void index_parents(struct strmap *parents, const char *dir, long delta)
{
	for (const char *slash = strrchr(dir, '/'); slash; slash = memrchr(dir, '/', (size_t)(slash - dir))) {
		size_t len = (size_t)(slash - dir);
		struct strmap_slot *s = delta > 0 ? strmap_put(parents, dir, len) : strmap_get(parents, dir, len);

		if (!s)
			continue;
		s->num += (size_t)delta;
		if (!s->num)
			strmap_del(parents, s);
	}
}

static void index_add(struct manifest_set_index *idx, const struct cert_spec *s)
{
	strmap_put(&idx->names, s->name, strlen(s->name))->ptr = (void *)s;
	strmap_put(&idx->dirs, s->output_dir, strlen(s->output_dir))->ptr = (void *)s;
	index_parents(&idx->parents, s->output_dir, 1);
}

static void index_remove(struct manifest_set_index *idx, const struct cert_spec *s)
{
	struct strmap_slot *k;

	if ((k = strmap_get(&idx->names, s->name, strlen(s->name))) && k->ptr == s)
		strmap_del(&idx->names, k);
	if ((k = strmap_get(&idx->dirs, s->output_dir, strlen(s->output_dir))) && k->ptr == s)
		strmap_del(&idx->dirs, k);
	index_parents(&idx->parents, s->output_dir, -1);
}

struct manifest_set_index *manifest_set_index_new(struct cert_spec *const *specs, size_t n)
{
	struct manifest_set_index *idx = xcalloc(1, sizeof(*idx));

	strmap_init(&idx->names, n, 0);
	strmap_init(&idx->dirs, n, 0);
	strmap_init(&idx->parents, 16, 1);
	for (size_t i = 0; i < n; i++)
		index_add(idx, specs[i]);
	return idx;
}

void manifest_set_index_free(struct manifest_set_index *idx)
{
	if (!idx)
		return;
	strmap_free(&idx->names);
	strmap_free(&idx->dirs);
	strmap_free(&idx->parents);
	free(idx);
}

/* 1 when the spec an index slot names is one of the removed (sorted by address). */
static int index_gone(const struct strmap_slot *s, const struct cert_spec **removed, size_t n_removed)
{
	return s && bsearch(&s->ptr, removed, n_removed, sizeof(*removed), util_ptr_cmp);
}

/* How many of the removed specs' directories lie under dir. */
static size_t removed_under(const char *dir, const struct cert_spec **removed, size_t n_removed)
{
	size_t len = strlen(dir), k = 0;

	for (size_t i = 0; i < n_removed; i++)
		k += !strncmp(removed[i]->output_dir, dir, len) && removed[i]->output_dir[len] == '/';
	return k;
}

/* 1 when an added spec meets a kept one: the same name or directory, or one directory inside the other. */
static int index_collides(const struct manifest_set_index *idx, const struct cert_spec *a,
			  const struct cert_spec **removed, size_t n_removed)
{
	const char *dir = a->output_dir;
	const struct strmap_slot *s;

	if ((s = strmap_get(&idx->names, a->name, strlen(a->name))) && !index_gone(s, removed, n_removed))
		return 1;
	if ((s = strmap_get(&idx->dirs, dir, strlen(dir))) && !index_gone(s, removed, n_removed))
		return 1;
	for (const char *slash = strrchr(dir, '/'); slash; slash = memrchr(dir, '/', (size_t)(slash - dir)))
		if ((s = strmap_get(&idx->dirs, dir, (size_t)(slash - dir))) && !index_gone(s, removed, n_removed))
			return 1;
	s = strmap_get(&idx->parents, dir, strlen(dir));
	return s && s->num > removed_under(dir, removed, n_removed);
}

int manifest_set_index_update(struct manifest_set_index *idx, struct cert_spec *const *removed, size_t n_removed,
			      struct cert_spec *const *added, size_t n_added, const struct manifest_ctx *ctx)
{
	const struct cert_spec **gone = xcalloc(n_removed + 1, sizeof(*gone));
	unsigned char *bad = xcalloc(n_added + 1, 1);
	struct diags d = {0};
	int clean = 0;

	/* The added among themselves, and each against the issuers: the full checks over the few. */
	if (manifest_check_set(added, n_added, ctx, bad, &d) || d.n)
		goto out;
	if (n_removed) {
		memcpy(gone, removed, n_removed * sizeof(*gone));
		qsort(gone, n_removed, sizeof(*gone), util_ptr_cmp);
	}
	for (size_t i = 0; i < n_added; i++)
		if (index_collides(idx, added[i], gone, n_removed))
			goto out;
	for (size_t i = 0; i < n_removed; i++)
		index_remove(idx, removed[i]);
	for (size_t i = 0; i < n_added; i++)
		index_add(idx, added[i]);
	clean = 1;
out:
	diags_free(&d);
	free(bad);
	free(gone);
	return clean;
}
