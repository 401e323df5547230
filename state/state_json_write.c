/*
 * Writing the state's JSON: a small writer of our own with a fixed key order
 * (byte-stable output), invalid UTF-8 replaced so that whatever we write can
 * be read back, and small leaf objects kept on one line in pretty mode.
 */
#include "state.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "state_int.h"

/* ---------- the field tables ---------- */

#define SF(type, field, kind, req)                                                                                     \
	{                                                                                                              \
#field, kind, offsetof(type, field), req                                                               \
	}

const struct state_field state_cert_fields[] = {
	SF(struct state_cert, issuer, SF_STR, 0),
	SF(struct state_cert, provider, SF_STR, 0),
	SF(struct state_cert, spec_hash, SF_STR, 0),
	SF(struct state_cert, target_hash, SF_STR, 0),
	SF(struct state_cert, output_dir, SF_STR, 0),
	SF(struct state_cert, phase, SF_PHASE, 1),
	SF(struct state_cert, change, SF_STR, 0),
	SF(struct state_cert, step, SF_STR, 0),
	SF(struct state_cert, attempts, SF_INT, 0),
	SF(struct state_cert, next_try, SF_TIME, 0),
	SF(struct state_cert, ids, SF_IDS, 0),
	SF(struct state_cert, serial, SF_STR, 0),
	SF(struct state_cert, not_before, SF_TIME, 0),
	SF(struct state_cert, not_after, SF_TIME, 0),
	SF(struct state_cert, fingerprint, SF_STR, 0),
	SF(struct state_cert, out_hash, SF_STR, 0),
	SF(struct state_cert, out_sig, SF_SIG, 0),
	SF(struct state_cert, out_generation, SF_STR, 0),
	SF(struct state_cert, tokens, SF_TOKENS, 0),
	SF(struct state_cert, last_error, SF_STR, 0),
	SF(struct state_cert, last_error_time, SF_TIME, 0),
	SF(struct state_cert, failure_class, SF_STR, 0),
	SF(struct state_cert, last_success, SF_TIME, 0),
	SF(struct state_cert, history, SF_HISTORY, 0),
};
const size_t state_n_cert_fields = sizeof(state_cert_fields) / sizeof(state_cert_fields[0]);

const struct state_field state_token_fields[] = {
	SF(struct state_token, method, SF_STR, 1),   SF(struct state_token, name, SF_STR, 1),
	SF(struct state_token, location, SF_STR, 1), SF(struct state_token, ref, SF_STR, 0),
	SF(struct state_token, issuer, SF_STR, 0),   SF(struct state_token, placed_at, SF_TIME, 0),
};
const size_t state_n_token_fields = sizeof(state_token_fields) / sizeof(state_token_fields[0]);

const struct state_field state_sig_fields[] = {
	SF(struct state_filesig, size, SF_I64, 0),
	SF(struct state_filesig, mtime_ns, SF_I64, 0),
	SF(struct state_filesig, ino, SF_I64, 0),
};
const size_t state_n_sig_fields = sizeof(state_sig_fields) / sizeof(state_sig_fields[0]);

const struct state_field state_event_fields[] = {
	SF(struct state_event, time, SF_TIME, 0),
	SF(struct state_event, what, SF_STR, 0),
};
const size_t state_n_event_fields = sizeof(state_event_fields) / sizeof(state_event_fields[0]);

#define CFIELD(obj, f, type) ((const type *)((const char *)(obj) + (f)->off))

size_t state_utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* ---------- writer ---------- */

struct jw {
	struct buf *b;
	int pretty;
	int depth;
	int first;   /* nothing written yet in the open container */
	int inline_; /* the open container is a leaf object kept on one line */
};

/* Our own output: the buffer is unbounded, so appending cannot fail. */
static void jw_raw(struct jw *w, const char *s, size_t n)
{
	struct buf *b = w->b;

	if (b->data && b->cap - b->len > n) {
		memcpy(b->data + b->len, s, n);
		b->len += n;
		b->data[b->len] = '\0';
		return;
	}
	buf_append(b, s, n);
}

static void jw_sep(struct jw *w)
{
	static const char spaces[] = "                                                                ";
	int indent;

	int was_first = w->first;

	if (!w->first)
		jw_raw(w, ",", 1);
	w->first = 0;
	if (!w->pretty)
		return;
	if (w->inline_) {
		if (!was_first)
			jw_raw(w, " ", 1);
		return;
	}
	jw_raw(w, "\n", 1);
	for (indent = 2 * w->depth; indent > 0; indent -= (int)sizeof(spaces) - 1)
		jw_raw(w, spaces, indent < (int)sizeof(spaces) - 1 ? (size_t)indent : sizeof(spaces) - 1);
}

static void jw_open(struct jw *w, char c, int one_line)
{
	jw_raw(w, &c, 1);
	w->depth++;
	w->first = 1;
	w->inline_ = one_line;
}

static void jw_close(struct jw *w, char c)
{
	w->depth--;
	if (!w->first && w->pretty && !w->inline_) {
		w->first = 1; /* no comma: only the newline and indent */
		jw_sep(w);
	}
	jw_raw(w, &c, 1);
	w->first = 0;
	w->inline_ = 0; /* one-line objects hold only scalars */
}

/* A JSON string literal; control characters escaped, invalid UTF-8 replaced by U+FFFD. */
static void jw_str(struct jw *w, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str, *run;
	size_t left = strlen(str);

	jw_raw(w, "\"", 1);
	for (run = s; left;) {
		char esc[8];
		size_t n = 0, len = 1;

		if (*s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\') {
			s++;
			left--;
			continue;
		}
		if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*s;
			n = 2;
		} else if (*s < 0x20) {
			const char *named = *s == '\n' ? "\\n" : *s == '\t' ? "\\t" : *s == '\r' ? "\\r" : NULL;

			if (named) {
				memcpy(esc, named, 2);
				n = 2;
			} else {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[*s >> 4];
				esc[5] = hex[*s & 15];
				n = 6;
			}
		} else if (*s >= 0x80 && !(len = state_utf8_len(s, left))) {
			memcpy(esc, "\xef\xbf\xbd", 3);
			n = 3;
			len = 1;
		}
		if (!n) {
			s += len;
			left -= len;
			continue;
		}
		jw_raw(w, (const char *)run, (size_t)(s - run));
		jw_raw(w, esc, n);
		s += len;
		left -= len;
		run = s;
	}
	jw_raw(w, (const char *)run, (size_t)(s - run));
	jw_raw(w, "\"", 1);
}

static void jw_key(struct jw *w, const char *k)
{
	jw_sep(w);
	jw_str(w, k);
	if (w->pretty)
		jw_raw(w, ": ", 2);
	else
		jw_raw(w, ":", 1);
}

static void jw_int(struct jw *w, long long v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	jw_raw(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Years 1000..9999 only: what util_fmt_time writes as four digits and util_parse_time reads back. */
#define JW_TIME_MIN INT64_C(-30610224000)
#define JW_TIME_MAX INT64_C(253402300799)

static void jw_time(struct jw *w, int64_t t)
{
	char tmp[32];

	t = t < JW_TIME_MIN ? JW_TIME_MIN : t > JW_TIME_MAX ? JW_TIME_MAX : t;
	util_fmt_time(t, tmp);
	jw_raw(w, "\"", 1);
	jw_raw(w, tmp, strlen(tmp));
	jw_raw(w, "\"", 1);
}

/* "key": "value", skipped when value is NULL or empty. */
static void jw_kstr(struct jw *w, const char *k, const char *v)
{
	if (!v || !*v)
		return;
	jw_key(w, k);
	jw_str(w, v);
}

static void jw_kv_object(struct jw *w, const struct state_kv *v, size_t n)
{
	jw_open(w, '{', 0);
	for (size_t i = 0; i < n; i++)
		jw_kstr(w, v[i].key, v[i].value);
	jw_close(w, '}');
}

static void jw_fields(struct jw *w, const void *obj, const struct state_field *t, size_t n);

/* An array of n objects of `size` bytes each described by t, one per line. */
static void jw_array(struct jw *w, const char *key, const void *v, size_t n, size_t size, const struct state_field *t,
		     size_t nt)
{
	if (!n)
		return;
	jw_key(w, key);
	jw_open(w, '[', 0);
	for (size_t i = 0; i < n; i++) {
		jw_sep(w);
		jw_open(w, '{', 1);
		jw_fields(w, (const char *)v + i * size, t, nt);
		jw_close(w, '}');
	}
	jw_close(w, ']');
}

static int jw_sig_empty(const struct state_filesig *s)
{
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		if (s[i].size || s[i].mtime_ns || s[i].ino)
			return 0;
	}
	return 1;
}

static void jw_field(struct jw *w, const void *obj, const struct state_field *f)
{
	const struct state_cert *c = obj; /* for the kinds only records have */
	int64_t t;
	int i;

	switch (f->kind) {
	case SF_STR: jw_kstr(w, f->name, *CFIELD(obj, f, char *)); break;
	case SF_TIME:
		if ((t = *CFIELD(obj, f, int64_t))) {
			jw_key(w, f->name);
			jw_time(w, t);
		}
		break;
	case SF_INT:
		if ((i = *CFIELD(obj, f, int))) {
			jw_key(w, f->name);
			jw_int(w, i);
		}
		break;
	case SF_I64:
		jw_key(w, f->name);
		jw_int(w, *CFIELD(obj, f, int64_t));
		break;
	case SF_PHASE:
		jw_key(w, f->name);
		jw_str(w, state_phase_name(c->phase));
		break;
	case SF_IDS:
		if (c->n_ids) {
			jw_key(w, f->name);
			jw_kv_object(w, c->ids, c->n_ids);
		}
		break;
	case SF_SIG:
		if (!jw_sig_empty(c->out_sig))
			jw_array(w, f->name, c->out_sig, STATE_OUT_FILES, sizeof(c->out_sig[0]), state_sig_fields,
				 state_n_sig_fields);
		break;
	case SF_TOKENS:
		jw_array(w, f->name, c->tokens, c->n_tokens, sizeof(c->tokens[0]), state_token_fields,
			 state_n_token_fields);
		break;
	case SF_HISTORY:
		jw_array(w, f->name, c->history, c->n_history, sizeof(c->history[0]), state_event_fields,
			 state_n_event_fields);
		break;
	case SF__MAX: break;
	}
}

static void jw_fields(struct jw *w, const void *obj, const struct state_field *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		jw_field(w, obj, &t[i]);
}

static void jw_cert(struct jw *w, const struct state_cert *c)
{
	jw_open(w, '{', 0);
	jw_fields(w, c, state_cert_fields, state_n_cert_fields);
	jw_close(w, '}');
}

int state_cert_to_json(const struct state_cert *c, int pretty, struct buf *out)
{
	struct jw w = {out, pretty, 0, 1, 0};

	jw_cert(&w, c);
	return 0;
}

static void jw_accounts(struct jw *w, const struct state *st)
{
	if (!st->n_accounts)
		return;
	jw_key(w, "accounts");
	jw_open(w, '{', 0);
	for (size_t i = 0; i < st->n_accounts; i++) {
		jw_key(w, st->accounts[i].issuer);
		jw_kv_object(w, st->accounts[i].kv, st->accounts[i].n_kv);
	}
	jw_close(w, '}');
}

static void jw_webhooks(struct jw *w, const struct state *st)
{
	if (!st->n_webhook_ids)
		return;
	jw_key(w, "webhook_ids");
	jw_open(w, '[', 0);
	for (size_t i = 0; i < st->n_webhook_ids; i++) {
		jw_sep(w);
		jw_str(w, st->webhook_ids[i]);
	}
	jw_close(w, ']');
}

void state_accounts_to_json(const struct state *st, struct buf *out)
{
	struct jw w = {out, 0, 0, 1, 0};

	jw_open(&w, '{', 0);
	for (size_t i = 0; i < st->n_accounts; i++) {
		jw_key(&w, st->accounts[i].issuer);
		jw_kv_object(&w, st->accounts[i].kv, st->accounts[i].n_kv);
	}
	jw_close(&w, '}');
}

void state_webhooks_to_json(const struct state *st, struct buf *out)
{
	struct jw w = {out, 0, 0, 1, 0};

	jw_open(&w, '[', 0);
	for (size_t i = 0; i < st->n_webhook_ids; i++) {
		jw_sep(&w);
		jw_str(&w, st->webhook_ids[i]);
	}
	jw_close(&w, ']');
}

int state_to_json(const struct state *st, struct buf *out)
{
	struct jw w = {out, 1, 0, 1, 0};
	struct state_cert **v = NULL;
	size_t n = 0;

	jw_open(&w, '{', 0);
	jw_key(&w, "version");
	jw_int(&w, st->version);
	jw_kstr(&w, "lineage", st->lineage);
	jw_key(&w, "serial");
	jw_int(&w, (long long)st->serial);
	if (st->source_url || st->source_ref || st->source_commit) {
		jw_key(&w, "source");
		jw_open(&w, '{', 0);
		jw_kstr(&w, "url", st->source_url);
		jw_kstr(&w, "ref", st->source_ref);
		jw_kstr(&w, "commit", st->source_commit);
		jw_close(&w, '}');
	}
	v = state_cert_list(st, &n);
	jw_key(&w, "certificates");
	jw_open(&w, '{', 0);
	for (size_t i = 0; i < n; i++) {
		jw_key(&w, v[i]->name);
		jw_cert(&w, v[i]);
	}
	jw_close(&w, '}');
	jw_accounts(&w, st);
	jw_webhooks(&w, st);
	jw_close(&w, '}');
	jw_raw(&w, "\n", 1);
	free(v);
	return 0;
}

void state_journal_encode(uint64_t serial, const char *name, const struct state_cert *rec, struct buf *out)
{
	struct jw w = {out, 0, 0, 1, 0};

	jw_open(&w, '{', 0);
	jw_key(&w, "serial");
	jw_int(&w, (long long)serial);
	jw_key(&w, "name");
	jw_str(&w, name);
	jw_key(&w, "record");
	if (rec)
		jw_cert(&w, rec);
	else
		jw_raw(&w, "null", 4);
	jw_close(&w, '}');
	jw_raw(&w, "\n", 1);
}

void state_journal_encode_source(uint64_t serial, const char *url, const char *ref, const char *commit, struct buf *out)
{
	struct jw w = {out, 0, 0, 1, 0};

	jw_open(&w, '{', 0);
	jw_key(&w, "serial");
	jw_int(&w, (long long)serial);
	jw_key(&w, "source");
	jw_open(&w, '{', 0);
	jw_kstr(&w, "url", url);
	jw_kstr(&w, "ref", ref);
	jw_kstr(&w, "commit", commit);
	jw_close(&w, '}');
	jw_close(&w, '}');
	jw_raw(&w, "\n", 1);
}

void state_lockinfo_encode(const struct state_lockinfo *li, struct buf *out)
{
	struct jw w = {out, 0, 0, 1, 0};

	jw_open(&w, '{', 0);
	jw_kstr(&w, "id", li->id);
	jw_kstr(&w, "operation", li->operation);
	jw_key(&w, "pid");
	jw_int(&w, li->pid);
	jw_kstr(&w, "host", li->host);
	jw_kstr(&w, "user", li->user);
	if (li->created) {
		jw_key(&w, "created");
		jw_time(&w, li->created);
	}
	jw_kstr(&w, "version", li->version);
	jw_close(&w, '}');
	jw_raw(&w, "\n", 1);
}
