/*
 * Private to the plan renderers (render.c, text.c, markdown.c, github.c):
 * counting, ordering and escaping that every format shares. Not a public header.
 */
#ifndef CS_RECONCILER_PLAN_RENDER_INT_H
#define CS_RECONCILER_PLAN_RENDER_INT_H

#include <stddef.h>

#include "plan.h"

/* Frees what a change owns (not the change itself): plan_free and plan_keep_targets. */
void plan_change_clear(struct plan_change *c);

/* What the summary says, counted from the changes themselves (unchanged comes from the plan). */
struct plan_tally {
	size_t n[CHANGE__MAX];
	size_t paid, deferred; /* paid counts only the orders made this run; deferred ones are apart */
	int any;	       /* a change other than an orphan */
	size_t retry;	       /* resumes that retry a failed certificate (counted in n[CHANGE_RESUME] too) */
	size_t failed;	       /* failed certificates apply leaves alone (plan.failed) */
	int clean;	       /* "No changes": nothing to do, nothing failed, no errors */
};

void plan_tally(const struct plan *p, struct plan_tally *t);

/* The changes in name order, CHANGE_NONE left out. The caller frees the array, not the changes. */
const struct plan_change **plan_sorted(const struct plan *p, size_t *n);

enum put_mode {
	PUT_TEXT,	/* control characters (C0, DEL, C1) as \xNN / \uNNNN */
	PUT_TEXT_ASCII, /* same, and → spelled -> */
	PUT_MD,		/* HTML/Markdown specials as entities, newlines as spaces */
};

/*
 * Appends user text (names, reasons, provider messages) made safe for the
 * format: a message can neither send escape codes to a terminal nor open
 * HTML, a table cell, a code span, a link or a mention in a PR comment.
 * Invalid UTF-8 becomes U+FFFD. NULL appends nothing.
 */
void plan_put_user(struct buf *b, const char *s, enum put_mode mode);

/* plan_put_user for the first n bytes of s at most (short commit ids, lineage prefixes). */
void plan_put_prefix(struct buf *b, const char *s, size_t n, enum put_mode mode);

/* Appends s as a JSON string literal (invalid UTF-8 as U+FFFD, so the document always parses). */
void plan_put_json(struct buf *b, const char *s);

/* Appends the finished document to out in one piece (out may be bounded) and frees doc. 0 or CS_EINVALID. */
int plan_emit(struct buf *out, struct buf *doc);

#endif
