/*
 * Checks across every document of a revision: duplicate names, output
 * directories that collide or nest, unknown issuers. Hash tables keep it
 * linear: 10,000 certificates cost milliseconds.
 */
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/util.h"
#include "internal.h"

#define NONE ((size_t)-1)
#define MAX_LISTED_ISSUERS 10

/* An open-addressing table from strings to the index of their first spec. */
struct stable {
	const char **keys;
	size_t *index;
	size_t mask;
};

static void stable_init(struct stable *t, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n + 2)
		cap *= 2;
	t->keys = xcalloc(cap, sizeof(*t->keys));
	t->index = xcalloc(cap, sizeof(*t->index));
	t->mask = cap - 1;
}

static void stable_free(struct stable *t)
{
	free(t->keys);
	free(t->index);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t stable_slot(const struct stable *t, const char *key)
{
	size_t h = (size_t)util_hash_mix(util_hash_str(key)) & t->mask;

	while (t->keys[h] && strcmp(t->keys[h], key))
		h = (h + 1) & t->mask;
	return h;
}

/* Index of the spec that has key, or NONE. */
static size_t stable_get(const struct stable *t, const char *key)
{
	size_t h = stable_slot(t, key);

	return t->keys[h] ? t->index[h] : NONE;
}

/* Adds key → index unless present; returns the index already there, or NONE. */
static size_t stable_put(struct stable *t, const char *key, size_t index)
{
	size_t h = stable_slot(t, key);

	if (t->keys[h])
		return t->index[h];
	t->keys[h] = key;
	t->index[h] = index;
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
	struct stable names;
	int problems = 0;

	stable_init(&names, n);
	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = specs[i], *p;
		size_t first = stable_put(&names, s->name, i);

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
	stable_free(&names);
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
	struct stable dirs;
	int problems = 0;

	stable_init(&dirs, n);
	for (size_t i = 0; i < n; i++) {
		size_t first;

		if (dup[i])
			continue; /* a duplicate name already collides here through the default directory */
		first = stable_put(&dirs, specs[i]->output_dir, i);
		if (first != NONE) {
			problems += set_report_dirs(specs[i], specs[first], 0, d);
			bad[i] = bad[first] = 1;
		}
	}
	/* every parent of every directory: O(n × depth) */
	for (size_t i = 0; i < n; i++) {
		char *p = xstrdup(specs[i]->output_dir), *slash;

		while ((slash = strrchr(p, '/'))) {
			size_t outer;

			*slash = '\0';
			if ((outer = stable_get(&dirs, p)) != NONE && outer != i) {
				problems += set_report_dirs(specs[i], specs[outer], 1, d);
				bad[i] = bad[outer] = 1;
				break;
			}
		}
		free(p);
	}
	stable_free(&dirs);
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
