/*
 * The GitHub Actions form of a plan: workflow commands (::error with the
 * manifest's file, line and column for each validation error, ::warning for
 * warnings, ::notice for each paid order) followed by the plain-text plan
 * for the job log. The Markdown job summary is written by the command.
 */
#include <stdlib.h>
#include <string.h>

#include "../../util/util.h"
#include "plan.h"
#include "render_int.h"

/*
 * Workflow-command escaping (as @actions/core does): % CR LF always; in
 * property values also : and , which separate properties. Control and
 * terminal characters are first made safe like the text plan.
 */
static void gh_put(struct buf *b, const char *s, int property)
{
	struct buf safe = BUF_INIT;

	plan_put_user(&safe, s, PUT_TEXT);
	for (size_t i = 0; i < safe.len; i++) {
		char c = safe.data[i];

		if (c == '%')
			buf_puts(b, "%25");
		else if (c == '\r')
			buf_puts(b, "%0D");
		else if (c == '\n')
			buf_puts(b, "%0A");
		else if (property && c == ':')
			buf_puts(b, "%3A");
		else if (property && c == ',')
			buf_puts(b, "%2C");
		else
			buf_append(b, &c, 1);
	}
	buf_free(&safe);
}

static void gh_command(struct buf *b, const char *cmd, const char *file, int line, int col, const char *msg)
{
	buf_printf(b, "::%s ", cmd);
	if (file && file[0]) {
		buf_puts(b, "file=");
		gh_put(b, file, 1);
		if (line > 0)
			buf_printf(b, ",line=%d", line);
		if (line > 0 && col > 0)
			buf_printf(b, ",col=%d", col);
		buf_puts(b, ",");
	}
	buf_puts(b, "title=certsync::");
	gh_put(b, msg, 0);
	buf_puts(b, "\n");
}

int plan_render_github(const struct plan *p, struct buf *out)
{
	struct buf doc = BUF_INIT;
	int rc;

	for (size_t i = 0; i < p->errors.n; i++) {
		const struct diag *g = &p->errors.v[i];

		gh_command(&doc, "error", g->file, g->line, g->col, g->msg);
	}
	for (size_t i = 0; i < p->n_failed; i++) {
		char *msg =
			xasprintf("%s: %s", p->failed[i].name, p->failed[i].reason ? p->failed[i].reason : "failed");

		gh_command(&doc, "error", p->failed[i].file, p->failed[i].line, 0, msg);
		free(msg);
	}
	for (size_t i = 0; i < p->n_warnings; i++)
		gh_command(&doc, "warning", NULL, 0, 0, p->warnings[i]);
	for (size_t i = 0; i < p->n_account_actions; i++)
		gh_command(&doc, "notice", NULL, 0, 0, p->account_actions[i]);
	for (size_t i = 0; i < p->n_changes; i++) {
		const struct plan_change *c = &p->changes[i];
		char *msg;

		if (!c->paid)
			continue;
		msg = xasprintf("%s: %s is a paid order (%s: " PLAN_PAID_ACTION ")%s", c->name,
				plan_change_name(c->kind), c->product ? c->product : "paid",
				c->deferred ? ", over policy.maxPaidOrders" : "");
		gh_command(&doc, "notice", c->file, c->line, 0, msg);
		free(msg);
	}
	if ((rc = plan_render_text(p, PLAN_TEXT_ASCII, &doc))) {
		buf_free(&doc);
		return rc;
	}
	return plan_emit(out, &doc);
}
