/*
 * The Markdown plan, for a pull-request comment: verdict first, counts, then
 * collapsed details. Byte-for-byte stable for the same plan (a bot updates
 * its comment in place), every piece of user text escaped, and kept under
 * GitHub's 65,536-character comment limit.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/diag.h"
#include "../../util/util.h"
#include "plan.h"
#include "render_int.h"

#define MD_MARKER "<!-- certsync-plan -->"
/* Bytes, which is never fewer than GitHub's characters: a margin under 65,536 for the last lines. */
#define MD_LIMIT 60000
#define MD_ERRORS_BUDGET 20000
#define MD_WARNINGS_BUDGET 8000
#define MD_FOOTER_RESERVE 200

/* Inside <code> elements: HTML, so > is written as an entity. */
static const char *const md_symbols[CHANGE__MAX] = {" ", "+", "-/+", "↻", "&gt;", "!", "-", "?"};

static const char *md_plural(size_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* Number of distinct non-empty file names among the errors (for "in 2 manifests"). */
static int md_str_ptr_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static size_t md_error_files(const struct diags *d)
{
	const char **v = xmalloc((d->n + 1) * sizeof(*v));
	size_t n = 0, distinct = 0;

	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].file && d->v[i].file[0])
			v[n++] = d->v[i].file;
	qsort(v, n, sizeof(*v), md_str_ptr_cmp);
	for (size_t i = 0; i < n; i++)
		distinct += !i || strcmp(v[i - 1], v[i]);
	free(v);
	return distinct;
}

static void md_verdict(const struct plan *p, const struct plan_tally *t, struct buf *b)
{
	const char *sep = "";

	if (p->errors.n) {
		size_t files = md_error_files(&p->errors);

		buf_printf(b, "**certsync plan: errors**: %zu %s", p->errors.n,
			   md_plural(p->errors.n, "problem", "problems"));
		if (files)
			buf_printf(b, " in %zu %s", files, md_plural(files, "manifest", "manifests"));
		buf_puts(b, " — nothing will be applied\n");
		return;
	}
	buf_puts(b, "**certsync plan**: ");
	if (t->clean) {
		buf_puts(b, "No changes");
		if (t->n[CHANGE_ORPHAN])
			buf_printf(b, " (%zu orphaned)", t->n[CHANGE_ORPHAN]);
		buf_append(b, "\n", 1);
		return;
	}
	if (t->failed) {
		buf_printf(b, "%zu failed (not retried)", t->failed);
		sep = ", ";
	}
	for (int k = CHANGE_CREATE; k < CHANGE_ORPHAN; k++) {
		if (t->n[k]) {
			buf_printf(b, "%s%zu to %s", sep, t->n[k], plan_change_name((enum change_kind)k));
			sep = ", ";
		}
	}
	if (t->n[CHANGE_ORPHAN])
		buf_printf(b, ", %zu orphaned", t->n[CHANGE_ORPHAN]);
	if (t->retry)
		buf_printf(b, "%s%zu %s of a failed certificate", sep, t->retry,
			   md_plural(t->retry, "retry", "retries"));
	if (t->paid)
		buf_printf(b, ", %zu paid %s", t->paid, md_plural(t->paid, "order", "orders"));
	if (t->deferred)
		buf_printf(b, ", %zu paid %s deferred", t->deferred, md_plural(t->deferred, "order", "orders"));
	buf_append(b, "\n", 1);
}

static void md_source(const struct plan *p, struct buf *b)
{
	buf_puts(b, "- **Source**: <code>");
	plan_put_user(b, p->repo ? p->repo : "(unknown source)", PUT_MD);
	if (p->ref) {
		buf_append(b, "@", 1);
		plan_put_user(b, p->ref, PUT_MD);
	}
	buf_puts(b, "</code>");
	/* Flux's revision form; 12 hex digits read well, the full id is in the JSON plan. */
	if (p->commit) {
		buf_puts(b, " (sha1:");
		plan_put_prefix(b, p->commit, 12, PUT_MD);
		buf_puts(b, ")");
	}
	if (p->base_commit) {
		buf_puts(b, ", merge base sha1:");
		plan_put_prefix(b, p->base_commit, 12, PUT_MD);
	}
	buf_append(b, "\n", 1);
	if (p->has_state) {
		buf_puts(b, "- **State**: lineage ");
		plan_put_prefix(b, p->lineage, 8, PUT_MD);
		buf_printf(b, ", serial %" PRIu64, p->serial);
		if (p->applied_commit) {
			buf_puts(b, ", last applied sha1:");
			plan_put_prefix(b, p->applied_commit, 12, PUT_MD);
		}
		buf_puts(b, "\n");
	} else {
		buf_puts(b, "- **State**: none (renewals and pending work are not shown without state)\n");
	}
}

static void md_table(const struct plan *p, const struct plan_tally *t, struct buf *b)
{
	buf_puts(b, "| Action | Count |\n|:--|--:|\n");
	for (int k = CHANGE_CREATE; k <= CHANGE_ORPHAN; k++)
		if (t->n[k])
			buf_printf(b, "| <code>%s</code> %s | %zu |\n", md_symbols[k],
				   k == CHANGE_ORPHAN ? "orphaned (kept: prune is off)"
						      : plan_change_name((enum change_kind)k),
				   t->n[k]);
	if (t->retry)
		buf_printf(b, "| <code>!</code> of which retries of a failed certificate | %zu |\n", t->retry);
	if (t->failed)
		buf_printf(b, "| <code>x</code> failed, not retried | %zu |\n", t->failed);
	buf_printf(b, "| unchanged | %zu |\n", t->n[CHANGE_NONE]);
	buf_printf(b, "| paid orders | %zu (limit %d) |\n", t->paid, p->max_paid);
	if (t->deferred)
		buf_printf(b, "| paid orders deferred (over the limit) | %zu |\n", t->deferred);
	if (p->errors.n)
		buf_printf(b, "| errors | %zu |\n", p->errors.n);
}

static void md_item(struct buf *b, const char *label, const char *value)
{
	if (!value)
		return;
	buf_printf(b, "- **%s**: ", label);
	plan_put_user(b, value, PUT_MD);
	buf_append(b, "\n", 1);
}

/* A repository path or a message quoting one: control characters shown as \n, \x1b, then Markdown-escaped. */
static void md_put_escaped(struct buf *b, const char *s)
{
	char *e = diag_escape(s);

	plan_put_user(b, e, PUT_MD);
	free(e);
}

static void md_change(const struct plan *p, const struct plan_change *c, struct buf *b)
{
	unsigned k = (unsigned)c->kind < CHANGE__MAX ? (unsigned)c->kind : CHANGE_NONE;
	const char *symbol = md_symbols[k], *action = plan_change_name(c->kind);

	if (c->kind == CHANGE_RESUME && c->failure_class)
		symbol = "!", action = "retry";
	else if (c->kind == CHANGE_NONE && c->failure_class)
		symbol = "x", action = "failed";
	buf_printf(b, "<details><summary><code>%s ", symbol);
	plan_put_user(b, c->name, PUT_MD);
	buf_printf(b, "</code> %s", action);
	if (c->reason) {
		buf_puts(b, " — ");
		plan_put_user(b, c->reason, PUT_MD);
	}
	if (c->paid)
		buf_puts(b, c->deferred ? " (paid: " PLAN_PAID_ACTION "; deferred)" : " (paid: " PLAN_PAID_ACTION ")");
	buf_puts(b, "</summary>\n\n");
	md_item(b, "Issuer", c->issuer);
	md_item(b, "Provider", c->provider);
	if (c->n_steps) {
		buf_puts(b, "- **Steps**: ");
		for (size_t i = 0; i < c->n_steps; i++) {
			if (i)
				buf_puts(b, " → ");
			plan_put_user(b, c->steps[i], PUT_MD);
		}
		buf_append(b, "\n", 1);
	}
	if (c->n_diffs) {
		buf_puts(b, "- **Changes**:\n");
		for (size_t i = 0; i < c->n_diffs; i++) {
			buf_puts(b, "  - <code>");
			plan_put_user(b, c->diffs[i].field, PUT_MD);
			buf_puts(b, "</code>: ");
			plan_put_user(b, c->diffs[i].text, PUT_MD);
			buf_append(b, "\n", 1);
		}
	}
	if (c->paid) {
		buf_puts(b, "- **Paid**: ");
		plan_put_user(b, c->product ? c->product : "yes", PUT_MD);
		buf_puts(b, " (" PLAN_PAID_ACTION ")\n");
	}
	md_item(b, "Failure class", c->failure_class);
	if (c->deferred)
		buf_printf(b, "- **Deferred**: over <code>policy.maxPaidOrders</code> (%d); a later apply orders it\n",
			   p->max_paid);
	if (c->n_labels) {
		buf_puts(b, "- **Labels**: ");
		for (size_t i = 0; i < c->n_labels; i++) {
			if (i)
				buf_puts(b, ", ");
			plan_put_user(b, c->labels[i].key, PUT_MD);
			buf_append(b, "=", 1);
			plan_put_user(b, c->labels[i].value, PUT_MD);
		}
		buf_append(b, "\n", 1);
	}
	if (c->file) {
		buf_puts(b, "- **Manifest**: ");
		md_put_escaped(b, c->file);
		if (c->line > 0)
			buf_printf(b, ":%d", c->line);
		buf_append(b, "\n", 1);
	}
	buf_puts(b, "\n</details>\n");
}

/* The errors as a table, within budget bytes; what does not fit is counted. */
static void md_errors(const struct diags *d, size_t budget, struct buf *b)
{
	struct buf row = BUF_INIT;
	size_t i;

	if (!d->n)
		return;
	buf_puts(b, "\n### Errors\n\n| Location | Problem |\n|:--|:--|\n");
	for (i = 0; i < d->n; i++) {
		const struct diag *g = &d->v[i];

		buf_clear(&row);
		buf_puts(&row, "| ");
		md_put_escaped(&row, g->file && g->file[0] ? g->file : "(config)");
		if (g->line > 0)
			buf_printf(&row, ":%d", g->line);
		if (g->line > 0 && g->col > 0)
			buf_printf(&row, ":%d", g->col);
		buf_puts(&row, " | ");
		md_put_escaped(&row, g->msg);
		buf_puts(&row, " |\n");
		if (b->len + row.len > budget)
			break;
		buf_append(b, row.data, row.len);
	}
	if (i < d->n)
		buf_printf(b, "\n… %zu more %s not shown (run <code>certsync validate</code>)\n", d->n - i,
			   md_plural(d->n - i, "error", "errors"));
	buf_free(&row);
}

static void md_warnings(const struct plan *p, size_t budget, struct buf *b)
{
	struct buf row = BUF_INIT;
	size_t i;

	if (!p->n_warnings)
		return;
	buf_puts(b, "\n### Warnings\n\n");
	for (i = 0; i < p->n_warnings; i++) {
		buf_clear(&row);
		buf_puts(&row, "- ");
		plan_put_user(&row, p->warnings[i], PUT_MD);
		buf_append(&row, "\n", 1);
		if (b->len + row.len > budget)
			break;
		buf_append(b, row.data, row.len);
	}
	if (i < p->n_warnings)
		buf_printf(b, "\n… %zu more %s not shown\n", p->n_warnings - i,
			   md_plural(p->n_warnings - i, "warning", "warnings"));
	buf_free(&row);
}

static void md_account_actions(const struct plan *p, struct buf *b)
{
	if (!p->n_account_actions)
		return;
	buf_puts(b, "\n### Account actions\n\n");
	for (size_t i = 0; i < p->n_account_actions; i++) {
		buf_puts(b, "- ");
		plan_put_user(b, p->account_actions[i], PUT_MD);
		buf_append(b, "\n", 1);
	}
}

int plan_render_markdown(const struct plan *p, struct buf *out)
{
	struct buf b = BUF_INIT, tail = BUF_INIT, one = BUF_INIT;
	const struct plan_change **v = NULL;
	struct plan_tally t;
	size_t n = 0, i, budget;

	plan_tally(p, &t);
	v = plan_sorted(p, &n);
	buf_puts(&b, MD_MARKER "\n");
	md_verdict(p, &t, &b);
	buf_append(&b, "\n", 1);
	md_source(p, &b);
	buf_append(&b, "\n", 1);
	md_table(p, &t, &b);
	md_account_actions(p, &b);
	/* Errors and warnings are rendered first so that the details get what they leave. */
	md_errors(&p->errors, MD_ERRORS_BUDGET, &tail);
	md_warnings(p, tail.len + MD_WARNINGS_BUDGET, &tail);
	budget = MD_LIMIT - MD_FOOTER_RESERVE;
	budget = b.len + tail.len < budget ? budget - b.len - tail.len : 0;
	if (n || p->n_failed)
		buf_puts(&b, "\n### Changes\n\n");
	/* Failed certificates first: they need someone; then the changes. */
	for (i = 0; i < p->n_failed + n; i++) {
		buf_clear(&one);
		md_change(p, i < p->n_failed ? &p->failed[i] : v[i - p->n_failed], &one);
		if (one.len > budget)
			break;
		budget -= one.len;
		buf_append(&b, one.data, one.len);
	}
	if (i < p->n_failed + n)
		buf_printf(&b, "\n… %zu more %s not shown (see the JSON plan)\n", p->n_failed + n - i,
			   md_plural(p->n_failed + n - i, "change", "changes"));
	buf_append(&b, tail.data ? tail.data : "", tail.len);
	buf_free(&tail);
	buf_free(&one);
	free(v);
	return plan_emit(out, &b);
}
