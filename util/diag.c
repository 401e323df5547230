/* Collected diagnostics, printed as file:line:col: message. */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
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

/* The length of a valid UTF-8 sequence at p (1 for ASCII), or 0 if the bytes there are not one. */
static size_t diag_utf8_len(const unsigned char *p)
{
	size_t need;

	if (*p < 0x80)
		return 1;
	if (*p >= 0xc2 && *p <= 0xdf)
		need = 1;
	else if (*p >= 0xe0 && *p <= 0xef)
		need = 2;
	else if (*p >= 0xf0 && *p <= 0xf4)
		need = 3;
	else
		return 0;
	for (size_t i = 1; i <= need; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
	return need + 1;
}

/*
 * s with what a terminal would act on made visible: C0 controls and DEL as
 * \n, \r, \t or \xNN, C1 controls (U+0080..U+009F) as \uNNNN, and bytes
 * that are not UTF-8 as \xNN. A git file name may hold any of them
 * ("a\n.yaml", an ANSI escape): a diagnostic must neither forge a line nor
 * repaint the screen.
 */
static void diag_put_escaped(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = diag_utf8_len(p);

		if (*p == '\n')
			buf_puts(b, "\\n");
		else if (*p == '\r')
			buf_puts(b, "\\r");
		else if (*p == '\t')
			buf_puts(b, "\\t");
		else if (*p < 0x20 || *p == 0x7f || !n)
			buf_printf(b, "\\x%02x", *p);
		else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
			buf_printf(b, "\\u%04x", p[1]);
		else
			buf_append(b, (const char *)p, n);
		p += n ? n : 1;
	}
}

char *diag_escape(const char *s)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "");
	diag_put_escaped(&b, s ? s : "");
	return buf_detach(&b);
}

char *diag_format(const struct diag *g)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "");
	diag_put_escaped(&b, g->file);
	if (g->line > 0 && g->col > 0)
		buf_printf(&b, ":%d:%d", g->line, g->col);
	else if (g->line > 0)
		buf_printf(&b, ":%d", g->line);
	if (g->file[0] || g->line > 0)
		buf_puts(&b, ": ");
	diag_put_escaped(&b, g->msg);
	return buf_detach(&b);
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
