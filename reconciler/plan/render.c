/* Plans: change names, lifetime, what the renderers share, and the JSON rendering (text and Markdown have their own
 * files). */
#include "plan.h"
#include "render_int.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/redact.h"
#include "../../util/util.h"

/* ---------- change kinds, lifetime ---------- */

static const char *const change_names[CHANGE__MAX] = {
	"none", "create", "replace", "renew", "resume", "reinstall", "remove", "orphan",
};

const char *plan_change_name(enum change_kind k)
{
	return (unsigned)k < CHANGE__MAX ? change_names[k] : "unknown";
}

int plan_change_parse(const char *s, enum change_kind *out)
{
	for (int k = 0; k < CHANGE__MAX; k++) {
		if (s && !strcmp(s, change_names[k])) {
			*out = (enum change_kind)k;
			return 0;
		}
	}
	return cs_error(CS_EINVALID, "unknown action \"%s\"", s ? s : "");
}

int plan_has_changes(const struct plan *p)
{
	/* Errors mean apply does nothing (without --allow-partial); orphans are only reported. */
	if (!p || p->errors.n)
		return 0;
	for (size_t i = 0; i < p->n_changes; i++)
		if (p->changes[i].kind != CHANGE_NONE && p->changes[i].kind != CHANGE_ORPHAN)
			return 1;
	return 0;
}

void plan_add_warning(struct plan *p, const char *fmt, ...)
{
	va_list ap;
	char *raw;

	/* Grown one at a time: warnings are few, and nothing else has to know a capacity. */
	p->warnings = xrealloc(p->warnings, (p->n_warnings + 1) * sizeof(*p->warnings));
	va_start(ap, fmt);
	raw = xvasprintf(fmt, ap);
	va_end(ap);
	/* Warnings quote recorded errors and provider messages: never a credential in a plan. */
	p->warnings[p->n_warnings++] = redact_dup(raw);
	free(raw);
}

void plan_add_account_action(struct plan *p, const char *fmt, ...)
{
	va_list ap;

	p->account_actions = xrealloc(p->account_actions, (p->n_account_actions + 1) * sizeof(*p->account_actions));
	va_start(ap, fmt);
	p->account_actions[p->n_account_actions++] = xvasprintf(fmt, ap);
	va_end(ap);
}

void plan_change_clear(struct plan_change *c)
{
	free(c->name);
	free(c->reason);
	free(c->reason_code);
	free(c->issuer);
	free(c->provider);
	for (size_t i = 0; i < c->n_steps; i++)
		free(c->steps[i]);
	free(c->product);
	for (size_t i = 0; i < c->n_diffs; i++) {
		free(c->diffs[i].field);
		free(c->diffs[i].text);
	}
	free(c->diffs);
	for (size_t i = 0; i < c->n_labels; i++) {
		free(c->labels[i].key);
		free(c->labels[i].value);
	}
	free(c->labels);
	free(c->file);
	free(c->failure_class);
	free(c->last_error);
}

void plan_free(struct plan *p)
{
	if (!p)
		return;
	free(p->repo);
	free(p->ref);
	free(p->commit);
	free(p->base_commit);
	free(p->applied_commit);
	for (size_t i = 0; i < p->n_changes; i++)
		plan_change_clear(&p->changes[i]);
	free(p->changes);
	for (size_t i = 0; i < p->n_failed; i++)
		plan_change_clear(&p->failed[i]);
	free(p->failed);
	diags_free(&p->errors);
	for (size_t i = 0; i < p->n_warnings; i++)
		free(p->warnings[i]);
	free(p->warnings);
	for (size_t i = 0; i < p->n_account_actions; i++)
		free(p->account_actions[i]);
	free(p->account_actions);
	free(p);
}

/* ---------- shared by the renderers (render_int.h) ---------- */

void plan_tally(const struct plan *p, struct plan_tally *t)
{
	memset(t, 0, sizeof(*t));
	t->n[CHANGE_NONE] = p->counts[CHANGE_NONE];
	for (size_t i = 0; i < p->n_changes; i++) {
		const struct plan_change *c = &p->changes[i];

		if ((unsigned)c->kind < CHANGE__MAX && c->kind != CHANGE_NONE)
			t->n[c->kind]++;
		if (c->paid && c->deferred)
			t->deferred++;
		else if (c->paid)
			t->paid++;
	}
	for (int k = CHANGE_CREATE; k < CHANGE_ORPHAN; k++)
		t->any |= t->n[k] > 0;
	for (size_t i = 0; i < p->n_changes; i++)
		t->retry += p->changes[i].kind == CHANGE_RESUME && p->changes[i].failure_class;
	t->failed = p->n_failed;
	t->clean = !t->any && !t->failed && !p->errors.n;
}

static int plan_change_ptr_cmp(const void *a, const void *b)
{
	const struct plan_change *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

const struct plan_change **plan_sorted(const struct plan *p, size_t *n)
{
	const struct plan_change **v = xmalloc((p->n_changes + 1) * sizeof(*v));
	int sorted = 1;

	*n = 0;
	for (size_t i = 0; i < p->n_changes; i++) {
		if (p->changes[i].kind == CHANGE_NONE)
			continue;
		if (*n && strcmp(v[*n - 1]->name, p->changes[i].name) > 0)
			sorted = 0;
		v[(*n)++] = &p->changes[i];
	}
	/* plan_diff already sorts; hand-made plans may not. */
	if (!sorted)
		qsort(v, *n, sizeof(*v), plan_change_ptr_cmp);
	return v;
}

/*
 * Decodes one UTF-8 sequence; returns its length. Invalid bytes (overlong,
 * surrogate, truncated, > U+10FFFF) come out one at a time as U+FFFD, so
 * every renderer emits valid UTF-8 whatever a provider message held.
 */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t n;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0)
		n = 2, c &= 0x1f, min = 0x80;
	else if ((c & 0xf0) == 0xe0)
		n = 3, c &= 0x0f, min = 0x800;
	else if ((c & 0xf8) == 0xf0)
		n = 4, c &= 0x07, min = 0x10000;
	else
		goto bad;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			goto bad;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		goto bad;
	*cp = c;
	return n;
bad:
	*cp = 0xfffd;
	return 1;
}

static int utf8_valid(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t cp;

	while (*u) {
		if (*u < 0x80) {
			u++;
			continue;
		}
		if (utf8_next(u, &cp) == 1)
			return 0;
		u += utf8_next(u, &cp);
	}
	return 1;
}

static void put_cp(struct buf *b, uint32_t cp, const char *raw, size_t rawlen)
{
	if (cp == 0xfffd && rawlen == 1)
		buf_puts(b, "\xef\xbf\xbd");
	else
		buf_append(b, raw, rawlen);
}

void plan_put_user(struct buf *b, const char *s, enum put_mode mode)
{
	const unsigned char *u = (const unsigned char *)(s ? s : "");

	while (*u) {
		uint32_t cp;
		size_t n = utf8_next(u, &cp);
		const char *ent = NULL;

		if (mode == PUT_MD) {
			switch (cp) {
			case '&': ent = "&amp;"; break;
			case '<': ent = "&lt;"; break;
			case '>': ent = "&gt;"; break;
			case '|': ent = "&#124;"; break;
			case '`': ent = "&#96;"; break;
			case '*': ent = "&#42;"; break;
			case '_': ent = "&#95;"; break;
			case '[': ent = "&#91;"; break;
			case ']': ent = "&#93;"; break;
			case '\\': ent = "&#92;"; break;
			case '~': ent = "&#126;"; break;
			case '@': ent = "&#64;"; break;
			case '#': ent = "&#35;"; break;
			default:
				if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
					ent = " ";
			}
			if (ent)
				buf_puts(b, ent);
			else
				put_cp(b, cp, (const char *)u, n);
		} else if (cp < 0x20 || cp == 0x7f) {
			buf_printf(b, "\\x%02x", (unsigned)cp);
		} else if (cp >= 0x80 && cp < 0xa0) {
			buf_printf(b, "\\u%04x", (unsigned)cp);
		} else if (cp == 0x2192 && mode == PUT_TEXT_ASCII) {
			buf_puts(b, "->");
		} else {
			put_cp(b, cp, (const char *)u, n);
		}
		u += n;
	}
}

void plan_put_prefix(struct buf *b, const char *s, size_t n, enum put_mode mode)
{
	char *cut = xstrndup(s ? s : "", n);

	plan_put_user(b, cut, mode);
	free(cut);
}

void plan_put_json(struct buf *b, const char *s)
{
	struct buf tmp = BUF_INIT;
	const unsigned char *u = (const unsigned char *)s;

	if (utf8_valid(s)) {
		buf_json_str(b, s);
		return;
	}
	while (*u) {
		uint32_t cp;
		size_t n = utf8_next(u, &cp);

		put_cp(&tmp, cp, (const char *)u, n);
		u += n;
	}
	buf_json_str(b, tmp.data);
	buf_free(&tmp);
}

int plan_emit(struct buf *out, struct buf *doc)
{
	int rc = buf_append(out, doc->data ? doc->data : "", doc->len);

	buf_free(doc);
	return rc;
}

/* ---------- JSON ---------- */

#define JSON_DEPTH_MAX 8

/* A pretty-printing writer that places commas and newlines itself, so optional keys cannot break it. */
struct jw {
	struct buf *b;
	int depth;
	int first[JSON_DEPTH_MAX];
};

static void jw_indent(struct jw *w, int depth)
{
	for (int i = 0; i < depth; i++)
		buf_append(w->b, "  ", 2);
}

static void jw_key(struct jw *w, const char *key)
{
	buf_puts(w->b, w->first[w->depth] ? "\n" : ",\n");
	w->first[w->depth] = 0;
	jw_indent(w, w->depth);
	if (key) {
		buf_json_str(w->b, key);
		buf_append(w->b, ": ", 2);
	}
}

static void jw_open(struct jw *w, const char *key, char bracket)
{
	if (w->depth > 0)
		jw_key(w, key);
	buf_append(w->b, &bracket, 1);
	w->depth++;
	assert(w->depth < JSON_DEPTH_MAX);
	w->first[w->depth] = 1;
}

static void jw_close(struct jw *w, char bracket)
{
	if (!w->first[w->depth]) {
		buf_append(w->b, "\n", 1);
		jw_indent(w, w->depth - 1);
	}
	w->depth--;
	buf_append(w->b, &bracket, 1);
}

static void jw_str(struct jw *w, const char *key, const char *value)
{
	if (!value)
		return; /* absent optional strings are omitted, not null */
	jw_key(w, key);
	plan_put_json(w->b, value);
}

static void jw_num(struct jw *w, const char *key, uint64_t value)
{
	jw_key(w, key);
	buf_printf(w->b, "%" PRIu64, value);
}

static void jw_int(struct jw *w, const char *key, int value)
{
	jw_key(w, key);
	buf_printf(w->b, "%d", value);
}

static void jw_bool(struct jw *w, const char *key, int value)
{
	jw_key(w, key);
	buf_puts(w->b, value ? "true" : "false");
}

static void json_change(struct jw *w, const struct plan_change *c)
{
	jw_open(w, NULL, '{');
	jw_str(w, "name", c->name);
	jw_str(w, "action", plan_change_name(c->kind));
	jw_str(w, "reason", c->reason);
	jw_str(w, "reason_code", c->reason_code);
	jw_str(w, "issuer", c->issuer);
	jw_str(w, "provider", c->provider);
	jw_open(w, "steps", '[');
	for (size_t i = 0; i < c->n_steps; i++)
		jw_str(w, NULL, c->steps[i]);
	jw_close(w, ']');
	jw_bool(w, "paid", c->paid);
	if (c->paid) {
		jw_str(w, "product", c->product);
		jw_str(w, "paid_action", PLAN_PAID_ACTION);
	}
	jw_bool(w, "deferred", c->deferred);
	jw_open(w, "diffs", '[');
	for (size_t i = 0; i < c->n_diffs; i++) {
		jw_open(w, NULL, '{');
		jw_str(w, "field", c->diffs[i].field ? c->diffs[i].field : "");
		jw_str(w, "text", c->diffs[i].text ? c->diffs[i].text : "");
		jw_close(w, '}');
	}
	jw_close(w, ']');
	jw_open(w, "labels", '{');
	for (size_t i = 0; i < c->n_labels; i++) {
		jw_key(w, NULL);
		plan_put_json(w->b, c->labels[i].key);
		buf_append(w->b, ": ", 2);
		plan_put_json(w->b, c->labels[i].value ? c->labels[i].value : "");
	}
	jw_close(w, '}');
	if (c->file) {
		jw_str(w, "file", c->file);
		jw_int(w, "line", c->line);
	}
	jw_str(w, "failure_class", c->failure_class);
	jw_str(w, "last_error", c->last_error);
	jw_close(w, '}');
}

/*
 * Terraform's change actions for each kind (its JSON plan format): a
 * replace is delete-then-create, a renewal, resume or reinstall changes the
 * certificate in place as far as the manifest is concerned, an orphan is
 * left alone.
 */
static const char *const tf_actions[CHANGE__MAX][2] = {
	[CHANGE_NONE] = {"no-op", NULL},    [CHANGE_CREATE] = {"create", NULL}, [CHANGE_REPLACE] = {"delete", "create"},
	[CHANGE_RENEW] = {"update", NULL},  [CHANGE_RESUME] = {"update", NULL}, [CHANGE_REINSTALL] = {"update", NULL},
	[CHANGE_REMOVE] = {"delete", NULL}, [CHANGE_ORPHAN] = {"no-op", NULL},
};

#define TF_RESOURCE_TYPE "certsync_certificate"

/* The certificate as Terraform's before/after objects show it: what certsync knows of either side. */
static void json_tf_object(struct jw *w, const char *key, const struct plan_change *c, int after)
{
	jw_open(w, key, '{');
	jw_str(w, "name", c->name);
	/* The plan knows the recorded side by name only: a replace's field differences are in "diffs". */
	if (after) {
		jw_str(w, "issuer", c->issuer);
		jw_str(w, "provider", c->provider);
		jw_bool(w, "paid", c->paid && !c->deferred);
		jw_str(w, "product", c->paid ? c->product : NULL);
		jw_open(w, "labels", '{');
		for (size_t i = 0; i < c->n_labels; i++) {
			jw_key(w, NULL);
			plan_put_json(w->b, c->labels[i].key);
			buf_append(w->b, ": ", 2);
			plan_put_json(w->b, c->labels[i].value ? c->labels[i].value : "");
		}
		jw_close(w, '}');
		jw_str(w, "file", c->file);
	}
	jw_close(w, '}');
}

/* One entry of "resource_changes", in Terraform's shape, so policies written for its plans port. */
static void json_resource_change(struct jw *w, const struct plan_change *c)
{
	enum change_kind k = (unsigned)c->kind < CHANGE__MAX ? c->kind : CHANGE_NONE;
	char address[512];

	snprintf(address, sizeof(address), TF_RESOURCE_TYPE ".%s", c->name);
	jw_open(w, NULL, '{');
	jw_str(w, "address", address);
	jw_str(w, "mode", "managed");
	jw_str(w, "type", TF_RESOURCE_TYPE);
	jw_str(w, "name", c->name);
	jw_str(w, "provider_name", c->provider);
	jw_open(w, "change", '{');
	jw_open(w, "actions", '[');
	for (size_t i = 0; i < 2 && tf_actions[k][i]; i++)
		jw_str(w, NULL, tf_actions[k][i]);
	jw_close(w, ']');
	if (k == CHANGE_CREATE) {
		jw_key(w, "before");
		buf_puts(w->b, "null");
	} else {
		json_tf_object(w, "before", c, 0);
	}
	if (k == CHANGE_REMOVE) {
		jw_key(w, "after");
		buf_puts(w->b, "null");
	} else {
		json_tf_object(w, "after", c, 1);
	}
	jw_close(w, '}');
	if (k == CHANGE_REPLACE)
		jw_str(w, "action_reason", "replace_because_cannot_update");
	jw_str(w, "certsync_action", plan_change_name(k));
	jw_str(w, "certsync_reason_code", c->reason_code);
	jw_close(w, '}');
}

/* A failed certificate apply leaves alone: what failed and what to do. */
static void json_failed(struct jw *w, const struct plan_change *c)
{
	jw_open(w, NULL, '{');
	jw_str(w, "name", c->name);
	jw_str(w, "reason", c->reason);
	jw_str(w, "reason_code", c->reason_code);
	jw_str(w, "issuer", c->issuer);
	jw_str(w, "failure_class", c->failure_class);
	jw_str(w, "last_error", c->last_error);
	if (c->file) {
		jw_str(w, "file", c->file);
		jw_int(w, "line", c->line);
	}
	jw_close(w, '}');
}

static void json_summary(struct jw *w, const struct plan *p, const struct plan_tally *t)
{
	jw_open(w, "summary", '{');
	for (int k = CHANGE_CREATE; k <= CHANGE_ORPHAN; k++)
		jw_num(w, plan_change_name((enum change_kind)k), t->n[k]);
	jw_num(w, "unchanged", t->n[CHANGE_NONE]);
	jw_num(w, "retry", t->retry);
	jw_num(w, "failed", t->failed);
	jw_num(w, "paid", t->paid);
	jw_num(w, "deferred", t->deferred);
	jw_int(w, "max_paid_orders", p->max_paid);
	jw_num(w, "errors", p->errors.n);
	jw_bool(w, "has_changes", plan_has_changes(p));
	jw_close(w, '}');
}

/* "account_actions": what applying does to provider accounts (AuthKey, webhook). */
static void json_account_actions(struct jw *w, const struct plan *p)
{
	jw_open(w, "account_actions", '[');
	for (size_t i = 0; i < p->n_account_actions; i++)
		jw_str(w, NULL, p->account_actions[i]);
	jw_close(w, ']');
}

int plan_render_json(const struct plan *p, struct buf *out)
{
	struct buf b = BUF_INIT;
	struct jw w = {&b, 0, {0}};
	const struct plan_change **v = NULL;
	struct plan_tally t;
	size_t n = 0;

	plan_tally(p, &t);
	v = plan_sorted(p, &n);
	jw_open(&w, NULL, '{');
	jw_str(&w, "format_version", PLAN_FORMAT_VERSION);
	jw_open(&w, "source", '{');
	jw_str(&w, "repo", p->repo);
	jw_str(&w, "ref", p->ref);
	jw_str(&w, "commit", p->commit);
	jw_str(&w, "base_commit", p->base_commit);
	jw_close(&w, '}');
	if (p->has_state) {
		jw_open(&w, "state", '{');
		jw_str(&w, "lineage", p->lineage);
		jw_num(&w, "serial", p->serial);
		jw_str(&w, "applied_commit", p->applied_commit);
		jw_close(&w, '}');
	} else {
		jw_key(&w, "state");
		buf_puts(&b, "null");
	}
	jw_open(&w, "changes", '[');
	for (size_t i = 0; i < n; i++)
		json_change(&w, v[i]);
	jw_close(&w, ']');
	jw_open(&w, "resource_changes", '[');
	for (size_t i = 0; i < n; i++)
		json_resource_change(&w, v[i]);
	jw_close(&w, ']');
	jw_open(&w, "failed", '[');
	for (size_t i = 0; i < p->n_failed; i++)
		json_failed(&w, &p->failed[i]);
	jw_close(&w, ']');
	jw_open(&w, "errors", '[');
	for (size_t i = 0; i < p->errors.n; i++) {
		const struct diag *g = &p->errors.v[i];

		jw_open(&w, NULL, '{');
		jw_str(&w, "file", g->file ? g->file : "");
		jw_int(&w, "line", g->line);
		jw_int(&w, "col", g->col);
		jw_str(&w, "message", g->msg ? g->msg : "");
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	jw_open(&w, "warnings", '[');
	for (size_t i = 0; i < p->n_warnings; i++)
		jw_str(&w, NULL, p->warnings[i]);
	jw_close(&w, ']');
	json_account_actions(&w, p);
	json_summary(&w, p, &t);
	jw_close(&w, '}');
	buf_append(&b, "\n", 1);
	free(v);
	return plan_emit(out, &b);
}
