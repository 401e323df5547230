/* Collected diagnostics, printed as file:line:col: message. */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void diags_add(struct diags *d, const char *file, int line, int col, const char *fmt, ...)
{
	va_list ap;
	struct diag *g;

	util_grow(&d->v, &d->cap, d->n + 1, sizeof(*d->v));
	g = &d->v[d->n++];
	g->file = xstrdup(file ? file : "");
	g->line = line;
	g->col = col;
	va_start(ap, fmt);
	g->msg = xvasprintf(fmt, ap);
	va_end(ap);
}

static int diag_cmp(const void *a, const void *b)
{
	const struct diag *x = a, *y = b;
	int c = strcmp(x->file, y->file);

	if (c)
		return c;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return 0;
}

void diags_sort(struct diags *d)
{
	/* A bottom-up merge sort: qsort is not stable, and equal positions keep their order. */
	struct diag *tmp;

	if (d->n < 2)
		return;
	tmp = xmalloc(d->n * sizeof(*tmp));
	for (size_t w = 1; w < d->n; w *= 2) {
		for (size_t lo = 0; lo < d->n; lo += 2 * w) {
			size_t mid = lo + w < d->n ? lo + w : d->n;
			size_t hi = lo + 2 * w < d->n ? lo + 2 * w : d->n;
			size_t i = lo, j = mid, k = lo;

			while (i < mid && j < hi)
				tmp[k++] = diag_cmp(&d->v[j], &d->v[i]) < 0 ? d->v[j++] : d->v[i++];
			while (i < mid)
				tmp[k++] = d->v[i++];
			while (j < hi)
				tmp[k++] = d->v[j++];
		}
		memcpy(d->v, tmp, d->n * sizeof(*tmp));
	}
	free(tmp);
}

char *diag_format(const struct diag *g)
{
	if (g->line > 0 && g->col > 0)
		return xasprintf("%s:%d:%d: %s", g->file, g->line, g->col, g->msg);
	if (g->line > 0)
		return xasprintf("%s:%d: %s", g->file, g->line, g->msg);
	if (g->file[0])
		return xasprintf("%s: %s", g->file, g->msg);
	return xstrdup(g->msg);
}

void diags_print(const struct diags *d, FILE *out)
{
	for (size_t i = 0; i < d->n; i++) {
		char *s = diag_format(&d->v[i]);

		fprintf(out, "%s\n", s);
		free(s);
	}
}

void diags_move(struct diags *dst, struct diags *src)
{
	util_grow(&dst->v, &dst->cap, dst->n + src->n, sizeof(*dst->v));
	if (src->n)
		memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
	dst->n += src->n;
	free(src->v);
	src->v = NULL;
	src->n = src->cap = 0;
}

void diags_free(struct diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}
