/* The text plan: what a terminal (or a CI log) shows, Terraform's shape with certsync's symbols. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/util.h"
#include "plan.h"
#include "render_int.h"

#define ANSI_RESET "\033[0m"
#define ANSI_BOLD "\033[1m"
#define ANSI_RED "\033[31m"
#define ANSI_GREEN "\033[32m"
#define ANSI_YELLOW "\033[33m"
#define ANSI_CYAN "\033[36m"
#define TEXT_NAME_WIDTH_MAX 40
#define TEXT_ACTION_WIDTH 9 /* "reinstall" */

static const struct {
	const char *symbol, *ascii, *color;
} text_kinds[CHANGE__MAX] = {
	[CHANGE_NONE] = {" ", " ", ""},
	[CHANGE_CREATE] = {"+", "+", ANSI_GREEN},
	[CHANGE_REPLACE] = {"-/+", "-/+", ANSI_YELLOW}, /* Terraform's replace: destroy, then create */
	[CHANGE_RENEW] = {"↻", "R", ANSI_YELLOW},
	[CHANGE_RESUME] = {">", ">", ANSI_CYAN},
	[CHANGE_REINSTALL] = {"!", "!", ANSI_CYAN},
	[CHANGE_REMOVE] = {"-", "-", ANSI_RED},
	[CHANGE_ORPHAN] = {"?", "?", ""},
};

/* Wraps s in an ANSI attribute when colour is on; plain otherwise (never an escape byte). */
static void text_styled(struct buf *b, int flags, const char *attr, const char *s, enum put_mode mode)
{
	int on = (flags & PLAN_TEXT_COLOR) && attr[0];

	if (on)
		buf_puts(b, attr);
	plan_put_user(b, s, mode);
	if (on)
		buf_puts(b, ANSI_RESET);
}

static void text_pad(struct buf *b, size_t have, size_t want)
{
	for (; have < want; have++)
		buf_append(b, " ", 1);
}

static void text_header(const struct plan *p, struct buf *b, enum put_mode mode)
{
	buf_puts(b, "certsync plan: ");
	plan_put_user(b, p->repo ? p->repo : "(unknown source)", mode);
	if (p->ref) {
		buf_puts(b, " @ ");
		plan_put_user(b, p->ref, mode);
	}
	/* Ids are escaped too: a plan read back from a file may hold anything. */
	if (p->commit) {
		buf_puts(b, " (");
		plan_put_prefix(b, p->commit, 12, mode);
		if (p->base_commit) {
			buf_puts(b, ", merge base ");
			plan_put_prefix(b, p->base_commit, 12, mode);
		}
		buf_puts(b, ")");
	}
	if (p->has_state) {
		buf_puts(b, ", state ");
		plan_put_prefix(b, p->lineage, 8, mode);
		buf_printf(b, " serial %" PRIu64, p->serial);
		if (p->applied_commit) {
			buf_puts(b, ", last applied ");
			plan_put_prefix(b, p->applied_commit, 12, mode);
		}
		buf_puts(b, "\n");
	} else {
		buf_puts(b, ", no state\n");
	}
}

/* A retry of a failed certificate (a resume that says so) and a failed one left alone read as what they are. */
static void text_symbol(const struct plan_change *c, const char **symbol, const char **color, const char **action,
			enum put_mode mode)
{
	unsigned k = (unsigned)c->kind < CHANGE__MAX ? (unsigned)c->kind : CHANGE_NONE;

	*symbol = mode == PUT_TEXT_ASCII ? text_kinds[k].ascii : text_kinds[k].symbol;
	*color = text_kinds[k].color;
	*action = plan_change_name(c->kind);
	if (c->kind == CHANGE_RESUME && c->failure_class) {
		*symbol = "!";
		*color = ANSI_YELLOW;
		*action = "retry";
	} else if (c->kind == CHANGE_NONE && c->failure_class) {
		*symbol = "x";
		*color = ANSI_RED;
		*action = "failed";
	}
}

static void text_change(const struct plan_change *c, int flags, size_t name_width, struct buf *b)
{
	enum put_mode mode = (flags & PLAN_TEXT_ASCII) ? PUT_TEXT_ASCII : PUT_TEXT;
	const char *arrow = mode == PUT_TEXT_ASCII ? " -> " : " → ";
	const char *symbol, *color, *action;
	size_t before;

	text_symbol(c, &symbol, &color, &action, mode);
	text_styled(b, flags, color, symbol, mode);
	buf_append(b, " ", 1);
	before = b->len;
	text_styled(b, flags, ANSI_BOLD, c->name, mode);
	text_pad(b, b->len - before - ((flags & PLAN_TEXT_COLOR) ? strlen(ANSI_BOLD ANSI_RESET) : 0), name_width);
	buf_printf(b, "  %-*s", TEXT_ACTION_WIDTH, action);
	if (c->reason) {
		buf_puts(b, "  ");
		plan_put_user(b, c->reason, mode);
	}
	if (c->paid) {
		buf_puts(b, " [paid");
		if (c->product) {
			buf_puts(b, ": ");
			plan_put_user(b, c->product, mode);
		}
		buf_puts(b, ": " PLAN_PAID_ACTION "]");
	}
	if (c->deferred)
		buf_puts(b, " [deferred: over policy.maxPaidOrders]");
	/* Alignment padding must not leave trailing blanks on a line without a reason. */
	while (b->len && b->data[b->len - 1] == ' ')
		b->data[--b->len] = '\0';
	buf_append(b, "\n", 1);
	if (c->n_steps) {
		buf_puts(b, "    ");
		for (size_t i = 0; i < c->n_steps; i++) {
			if (i)
				buf_puts(b, arrow);
			plan_put_user(b, c->steps[i], mode);
		}
		buf_append(b, "\n", 1);
	}
	for (size_t i = 0; i < c->n_diffs; i++) {
		buf_puts(b, "    ");
		plan_put_user(b, c->diffs[i].field, mode);
		buf_puts(b, ": ");
		plan_put_user(b, c->diffs[i].text, mode);
		buf_append(b, "\n", 1);
	}
}

static void text_summary(const struct plan *p, const struct plan_tally *t, int flags, struct buf *b)
{
	/* "No changes" only when every desired certificate is in place: not with failures or errors. */
	if (t->clean) {
		text_styled(b, flags, ANSI_BOLD ANSI_GREEN, "No changes.", PUT_TEXT);
		buf_printf(b, " Certificates match the manifests (%zu unchanged)", t->n[CHANGE_NONE]);
		if (t->n[CHANGE_ORPHAN])
			buf_printf(b, "; %zu orphaned", t->n[CHANGE_ORPHAN]);
		buf_puts(b, ".\n");
	} else {
		text_styled(b, flags, ANSI_BOLD, "Plan:", PUT_TEXT);
		buf_printf(b, " %zu to create, %zu to replace, %zu to renew, %zu to resume", t->n[CHANGE_CREATE],
			   t->n[CHANGE_REPLACE], t->n[CHANGE_RENEW], t->n[CHANGE_RESUME]);
		if (t->retry) /* retries are resumes: said inside that count, never added to it */
			buf_printf(b, " (%zu of them retr%s a failed certificate)", t->retry,
				   t->retry == 1 ? "ies" : "y");
		buf_printf(b, ", %zu to reinstall, %zu to remove", t->n[CHANGE_REINSTALL], t->n[CHANGE_REMOVE]);
		if (t->n[CHANGE_ORPHAN])
			buf_printf(b, "; %zu orphaned", t->n[CHANGE_ORPHAN]);
		if (t->paid || t->deferred)
			buf_printf(b, "; %zu paid order%s (limit %d)", t->paid, t->paid == 1 ? "" : "s", p->max_paid);
		if (t->deferred)
			buf_printf(b, ", %zu deferred to a later apply", t->deferred);
		buf_puts(b, ".\n");
	}
	if (t->failed) {
		text_styled(b, flags, ANSI_BOLD ANSI_RED, "Failed:", PUT_TEXT);
		buf_printf(b,
			   " %zu certificate%s failed and %s left alone until %s manifest changes or apply "
			   "--retry-failed (x above says what to do).\n",
			   t->failed, t->failed == 1 ? "" : "s", t->failed == 1 ? "is" : "are",
			   t->failed == 1 ? "its" : "their");
	}
	if (p->errors.n) {
		text_styled(b, flags, ANSI_BOLD ANSI_RED, "Errors:", PUT_TEXT);
		buf_printf(b,
			   " %zu problem%s in the manifests: apply changes nothing from this revision unless "
			   "--allow-partial is given.\n",
			   p->errors.n, p->errors.n == 1 ? "" : "s");
	}
}

/* Account-level side effects, after the changes: they happen once, not per certificate. */
static void text_account_actions(const struct plan *p, int flags, enum put_mode mode, struct buf *b)
{
	if (!p->n_account_actions)
		return;
	buf_append(b, "\n", 1);
	text_styled(b, flags, ANSI_BOLD, "Account actions:", mode);
	buf_append(b, "\n", 1);
	for (size_t i = 0; i < p->n_account_actions; i++) {
		buf_puts(b, "  + ");
		plan_put_user(b, p->account_actions[i], mode);
		buf_append(b, "\n", 1);
	}
}

int plan_render_text(const struct plan *p, int flags, struct buf *out)
{
	enum put_mode mode = (flags & PLAN_TEXT_ASCII) ? PUT_TEXT_ASCII : PUT_TEXT;
	struct buf b = BUF_INIT;
	const struct plan_change **v = NULL;
	struct plan_tally t;
	size_t n = 0, width = 0;

	plan_tally(p, &t);
	text_header(p, &b, mode);
	v = plan_sorted(p, &n);
	for (size_t i = 0; i < n + p->n_failed; i++) {
		size_t l = strlen(i < n ? v[i]->name : p->failed[i - n].name);

		if (l > width)
			width = l < TEXT_NAME_WIDTH_MAX ? l : TEXT_NAME_WIDTH_MAX;
	}
	if (n || p->n_failed)
		buf_append(&b, "\n", 1);
	for (size_t i = 0; i < n; i++)
		text_change(v[i], flags, width, &b);
	for (size_t i = 0; i < p->n_failed; i++)
		text_change(&p->failed[i], flags, width, &b);
	text_account_actions(p, flags, mode, &b);
	if (p->errors.n || p->n_warnings)
		buf_append(&b, "\n", 1);
	for (size_t i = 0; i < p->errors.n; i++) {
		char *s = diag_format(&p->errors.v[i]);

		text_styled(&b, flags, ANSI_BOLD ANSI_RED, "error:", mode);
		buf_append(&b, " ", 1);
		plan_put_user(&b, s, mode);
		buf_append(&b, "\n", 1);
		free(s);
	}
	for (size_t i = 0; i < p->n_warnings; i++) {
		text_styled(&b, flags, ANSI_BOLD ANSI_YELLOW, "warning:", mode);
		buf_append(&b, " ", 1);
		plan_put_user(&b, p->warnings[i], mode);
		buf_append(&b, "\n", 1);
	}
	buf_append(&b, "\n", 1);
	text_summary(p, &t, flags, &b);
	free(v);
	return plan_emit(out, &b);
}
