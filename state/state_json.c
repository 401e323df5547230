/*
 * Reading the state's JSON, and the one owner of jansson in state/. Records
 * are decoded by the pull parser (state_jparse.c) straight into the structs,
 * every field type-checked against the field tables, without a document tree
 * (a DOM costs ~20 ms per MB, more than the whole load budget). When the text
 * is not JSON at all, jansson words the message.
 */
#include "state.h"
#include "../util/libversion.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/err.h"
#include "../util/util.h"
#include "state_int.h"
#include "state_jparse.h"

#define FIELD(obj, f, type) ((type *)((char *)(obj) + (f)->off))

/*
 * A decode in progress. Messages name where a value sits: "origin:
 * certificates."www".x", "origin:12: record.x" (journal line 12) or
 * "origin: x"; they are only formatted on error.
 */
struct jd {
	struct state_jp jp;
	const char *origin;
	const char *cert; /* record name, or NULL */
	size_t line;	  /* journal line, or 0 */
	int record;	  /* decoding one record alone (state_cert_from_json) */
	int source;	  /* inside a journal line's source object (messages say "source.x", not "record.x") */
};

static void jd_init(struct jd *d, const char *data, size_t len, const char *origin, size_t line)
{
	state_jp_init(&d->jp, data, len);
	d->origin = origin;
	d->cert = NULL;
	d->line = line;
	d->record = 0;
	d->source = 0;
}

/* The text is not JSON: jansson's wording and position (ours if jansson disagrees). */
static int jd_syntax(struct jd *d)
{
	json_error_t e;
	json_t *j = NULL;
	const char *text = e.text;
	int line, col;

	if (d->jp.err && !strcmp(d->jp.err, STATE_JP_EDUP)) {
		/* JSON allows it but does not say which wins: name the key where it repeats */
		state_jp_where(&d->jp, &line, &col);
		if (d->line)
			return cs_error(CS_EINVALID, "%s:%zu:%d: journal line has the key \"%s\" twice", d->origin,
					d->line, col, d->jp.key.data);
		return cs_error(CS_EINVALID, "%s:%d:%d: duplicate key \"%s\" in the state (each key once per object)",
				d->origin, line, col, d->jp.key.data);
	}
	j = json_loadb(d->jp.start, (size_t)(d->jp.end - d->jp.start), 0, &e);
	line = e.line;
	col = e.column;
	if (j) {
		json_decref(j);
		state_jp_where(&d->jp, &line, &col);
		text = d->jp.err ? d->jp.err : "syntax error";
	}
	if (d->line)
		return cs_error(CS_EINVALID, "%s:%zu:%d: journal line is not valid JSON: %s", d->origin, d->line, col,
				text);
	if (d->record)
		return cs_error(CS_EINVALID, "%s: certificates.\"%s\":%d:%d: record is not valid JSON: %s", d->origin,
				d->cert, line, col, text);
	return cs_error(CS_EINVALID, "%s:%d:%d: state is not valid JSON: %s", d->origin, line, col, text);
}

/* A value of the wrong type or shape. parent/index locate nested objects ("tokens", 2). */
static int jd_fail(const struct jd *d, const char *parent, long index, const char *field, const char *what)
{
	char path[512];

	if (parent && index >= 0)
		snprintf(path, sizeof(path), "%s[%ld]%s%s", parent, index, field ? "." : "", field ? field : "");
	else if (parent)
		snprintf(path, sizeof(path), "%s%s%s", parent, field ? "." : "", field ? field : "");
	else
		snprintf(path, sizeof(path), "%s", field ? field : "");
	if (d->line)
		return cs_error(CS_EINVALID, "%s:%zu: %s%s: %s", d->origin, d->line, d->source ? "" : "record.", path,
				what);
	if (d->cert)
		return cs_error(CS_EINVALID, "%s: certificates.\"%s\".%s: %s", d->origin, d->cert, path, what);
	return cs_error(CS_EINVALID, "%s: %s: %s", d->origin, path, what);
}

static int jd_value(struct jd *d, enum state_jt *t)
{
	return state_jp_value(&d->jp, t) ? jd_syntax(d) : 0;
}

static int jd_skip(struct jd *d, enum state_jt t)
{
	return state_jp_skip(&d->jp, t) ? jd_syntax(d) : 0;
}

/* The next member of an open object (see state_jp_member), syntax errors turned into messages. */
static int jd_member(struct jd *d, size_t *n, int *rc)
{
	int more = state_jp_member(&d->jp, n);

	*rc = more < 0 ? jd_syntax(d) : 0;
	return more > 0;
}

static int jd_element(struct jd *d, size_t *n, int *rc)
{
	int more = state_jp_element(&d->jp, n);

	*rc = more < 0 ? jd_syntax(d) : 0;
	return more > 0;
}

/* ---------- objects described by a field table ---------- */

static int jd_object(struct jd *d, void *obj, const struct state_field *t, size_t nt, const char *parent, long index);

/* Looks key up starting after the last match: in files we wrote that is the next entry. */
static const struct state_field *jd_lookup(const struct state_field *t, size_t nt, const char *key, size_t *cursor)
{
	for (size_t k = 0; k < nt; k++) {
		size_t i = (*cursor + k) % nt;

		if (!strcmp(t[i].name, key)) {
			*cursor = i + 1;
			return &t[i];
		}
	}
	return NULL;
}

/* An object of strings into a key-sorted array; path names it in messages ("ids"). */
static int jd_kv(struct jd *d, const char *parent, const char *path, struct state_kv **kv, size_t *n)
{
	size_t members = 0;
	enum state_jt t;
	int rc = 0;

	while (jd_member(d, &members, &rc)) {
		char sub[512];

		if ((rc = jd_value(d, &t)))
			break;
		if (t != STATE_JT_STRING) {
			snprintf(sub, sizeof(sub), "%s.\"%s\"", path, d->jp.key.data);
			return jd_fail(d, parent, -1, sub, "expected a string");
		}
		state_kv_set(kv, n, d->jp.key.data, d->jp.str.data);
	}
	return rc;
}

static int jd_sig(struct jd *d, struct state_filesig *sig)
{
	size_t i = 0;
	enum state_jt t;
	int rc = 0;

	while (jd_element(d, &i, &rc)) {
		if (i > STATE_OUT_FILES)
			return jd_fail(d, NULL, -1, "out_sig", "expected an array of at most 3 objects");
		if ((rc = jd_value(d, &t)))
			break;
		if (t != STATE_JT_OBJECT)
			return jd_fail(d, "out_sig", (long)i - 1, NULL, "expected an object");
		if ((rc = jd_object(d, &sig[i - 1], state_sig_fields, state_n_sig_fields, "out_sig", (long)i - 1)))
			break;
	}
	return rc;
}

static int jd_tokens(struct jd *d, struct state_cert *c)
{
	size_t i = 0, cap = c->n_tokens;
	enum state_jt t;
	int rc = 0;

	while (c->n_tokens)
		state_cert_remove_token(c, c->n_tokens - 1); /* a repeated key replaces */
	while (jd_element(d, &i, &rc)) {
		if (i > STATE_MAX_TOKENS)
			return jd_fail(d, NULL, -1, "tokens", "expected an array of at most 200 tokens");
		if ((rc = jd_value(d, &t)))
			break;
		if (t != STATE_JT_OBJECT)
			return jd_fail(d, "tokens", (long)i - 1, NULL, "expected an object");
		if (c->n_tokens == cap) {
			cap = cap ? 2 * cap : 4;
			c->tokens = xrealloc(c->tokens, cap * sizeof(*c->tokens));
		}
		memset(&c->tokens[c->n_tokens], 0, sizeof(c->tokens[0]));
		c->n_tokens++; /* counted first so that a half-decoded token is freed too */
		if ((rc = jd_object(d, &c->tokens[i - 1], state_token_fields, state_n_token_fields, "tokens",
				    (long)i - 1)))
			break;
	}
	return rc;
}

/* Keeps the newest STATE_HISTORY_MAX events of a longer history. */
static int jd_history(struct jd *d, struct state_cert *c)
{
	size_t i = 0;
	enum state_jt t;
	int rc = 0;

	for (size_t k = 0; k < c->n_history; k++)
		free(c->history[k].what);
	c->n_history = 0;
	while (jd_element(d, &i, &rc)) {
		struct state_event ev = {0, NULL};

		if ((rc = jd_value(d, &t)))
			break;
		if (t != STATE_JT_OBJECT)
			return jd_fail(d, "history", (long)i - 1, NULL, "expected an object");
		if ((rc = jd_object(d, &ev, state_event_fields, state_n_event_fields, "history", (long)i - 1))) {
			free(ev.what);
			break;
		}
		state_cert_history_room(c);
		if (c->n_history == STATE_HISTORY_MAX) {
			free(c->history[0].what);
			memmove(&c->history[0], &c->history[1], (STATE_HISTORY_MAX - 1) * sizeof(c->history[0]));
			c->n_history--;
		}
		c->history[c->n_history++] = ev;
	}
	return rc;
}

/* What a value of each kind must look like, for messages. */
static const char *const jd_expected[SF__MAX] = {
	[SF_STR] = "expected a string",
	[SF_TIME] = "expected a time string",
	[SF_INT] = "expected an integer from 0 to 2147483647",
	[SF_I64] = "expected an integer",
	[SF_PHASE] = "expected \"pending\", \"ready\" or \"failed\"",
	[SF_IDS] = "expected an object of strings",
	[SF_SIG] = "expected an array of at most 3 objects",
	[SF_TOKENS] = "expected an array of at most 200 tokens",
	[SF_HISTORY] = "expected an array of events",
};

/* The JSON type each kind takes. */
static const enum state_jt jd_type[SF__MAX] = {
	[SF_STR] = STATE_JT_STRING,  [SF_TIME] = STATE_JT_STRING,  [SF_INT] = STATE_JT_INTEGER,
	[SF_I64] = STATE_JT_INTEGER, [SF_PHASE] = STATE_JT_STRING, [SF_IDS] = STATE_JT_OBJECT,
	[SF_SIG] = STATE_JT_ARRAY,   [SF_TOKENS] = STATE_JT_ARRAY, [SF_HISTORY] = STATE_JT_ARRAY,
};

/* Decodes one member's value into obj. null is the same as absent, except for the phase. */
static int jd_field(struct jd *d, void *obj, const struct state_field *f, const char *parent, long index)
{
	struct state_cert *c = obj; /* for the kinds only records have */
	enum state_jt t;
	int rc;

	if ((rc = jd_value(d, &t)))
		return rc;
	if (t == STATE_JT_NULL && f->kind != SF_PHASE)
		return 0;
	if (t != jd_type[f->kind])
		return jd_fail(d, parent, index, f->name, jd_expected[f->kind]);
	switch (f->kind) {
	case SF_STR: state_str_set(FIELD(obj, f, char *), d->jp.str.data); return 0;
	case SF_TIME:
		return util_parse_time(d->jp.str.data, FIELD(obj, f, int64_t))
			       ? jd_fail(d, parent, index, f->name, jd_expected[f->kind])
			       : 0;
	case SF_INT:
		if (d->jp.num < 0 || d->jp.num > INT_MAX)
			return jd_fail(d, parent, index, f->name, jd_expected[f->kind]);
		*FIELD(obj, f, int) = (int)d->jp.num;
		return 0;
	case SF_I64: *FIELD(obj, f, int64_t) = (int64_t)d->jp.num; return 0;
	case SF_PHASE:
		return state_phase_parse(d->jp.str.data, &c->phase)
			       ? jd_fail(d, parent, index, f->name, jd_expected[f->kind])
			       : 0;
	case SF_IDS: return jd_kv(d, parent, f->name, &c->ids, &c->n_ids);
	case SF_SIG: return jd_sig(d, c->out_sig);
	case SF_TOKENS: return jd_tokens(d, c);
	case SF_HISTORY: return jd_history(d, c);
	case SF__MAX: break;
	}
	return 0;
}

/* The members of an object whose '{' was read; unknown keys are skipped (forward compatible). */
static int jd_object(struct jd *d, void *obj, const struct state_field *t, size_t nt, const char *parent, long index)
{
	unsigned char seen[32] = {0};
	size_t n = 0, cursor = 0;
	enum state_jt vt;
	int rc = 0;

	while (jd_member(d, &n, &rc)) {
		const struct state_field *f = jd_lookup(t, nt, d->jp.key.data, &cursor);

		if (!f) {
			if ((rc = jd_value(d, &vt)) || (rc = jd_skip(d, vt)))
				return rc;
			continue;
		}
		seen[f - t] = 1;
		if ((rc = jd_field(d, obj, f, parent, index)))
			return rc;
	}
	for (size_t i = 0; !rc && i < nt && i < sizeof(seen); i++) {
		if (t[i].required && !seen[i])
			rc = jd_fail(d, parent, index, t[i].name, "missing");
	}
	return rc;
}

/* One record into a new record named name; t is the type of the value just read. */
static int jd_cert(struct jd *d, enum state_jt t, const char *name, struct state_cert **out)
{
	struct state_cert *c = NULL;
	int rc = 0;

	if (t != STATE_JT_OBJECT) {
		rc = d->line ? cs_error(CS_EINVALID, "%s:%zu: record: expected an object or null", d->origin, d->line)
			     : cs_error(CS_EINVALID, "%s: certificates.\"%s\": expected an object", d->origin, name);
		goto out;
	}
	c = state_cert_new(name);
	if ((rc = jd_object(d, c, state_cert_fields, state_n_cert_fields, NULL, -1)))
		goto out;
	*out = c;
	c = NULL;
out:
	state_cert_free(c);
	return rc;
}

/* ---------- the document ---------- */

static int jd_expect(struct jd *d, enum state_jt want, const char *field, const char *what)
{
	enum state_jt t;
	int rc = jd_value(d, &t);

	if (!rc && t != want)
		rc = jd_fail(d, NULL, -1, field, what);
	return rc;
}

struct jd_top {
	struct state *st;
	int *version_refused;
	int has_version, has_lineage, has_serial;
};

static int jd_top_version(struct jd *d, struct jd_top *top)
{
	int rc = jd_expect(d, STATE_JT_INTEGER, "version", "expected an integer");

	if (rc)
		return rc;
	if (d->jp.num != STATE_VERSION) {
		*top->version_refused = 1;
		return cs_error(CS_EINVALID, "%s: state version %lld is not supported by this certsync (supports %d)",
				d->origin, d->jp.num, STATE_VERSION);
	}
	top->has_version = 1;
	return 0;
}

static int jd_top_lineage(struct jd *d, struct jd_top *top)
{
	int rc = jd_expect(d, STATE_JT_STRING, "lineage", "expected a string");
	size_t len;

	if (rc)
		return rc;
	len = d->jp.str.len;
	if (!len || len >= sizeof(top->st->lineage))
		return jd_fail(d, NULL, -1, "lineage", "expected an id of 1 to 36 characters");
	memcpy(top->st->lineage, d->jp.str.data, len + 1);
	top->has_lineage = 1;
	return 0;
}

static int jd_top_serial(struct jd *d, struct jd_top *top)
{
	int rc = jd_expect(d, STATE_JT_INTEGER, "serial", "expected an integer from 0 to 9223372036854775807");

	if (rc)
		return rc;
	if (d->jp.num < 0)
		return jd_fail(d, NULL, -1, "serial", "expected an integer from 0 to 9223372036854775807");
	top->st->serial = (uint64_t)d->jp.num;
	top->has_serial = 1;
	return 0;
}

static const struct state_field jd_source_fields[] = {
	{"url", SF_STR, offsetof(struct state, source_url), 0},
	{"ref", SF_STR, offsetof(struct state, source_ref), 0},
	{"commit", SF_STR, offsetof(struct state, source_commit), 0},
};

static int jd_top_source(struct jd *d, struct jd_top *top)
{
	int rc = jd_expect(d, STATE_JT_OBJECT, "source", "expected an object");

	if (!rc)
		rc = jd_object(d, top->st, jd_source_fields, sizeof(jd_source_fields) / sizeof(jd_source_fields[0]),
			       "source", -1);
	return rc;
}

static int jd_top_certs(struct jd *d, struct jd_top *top)
{
	size_t n = 0;
	int rc = jd_expect(d, STATE_JT_OBJECT, "certificates", "expected an object");

	while (!rc && jd_member(d, &n, &rc)) {
		struct state_cert *c = NULL;
		char *name;
		enum state_jt t;

		if (!*d->jp.key.data)
			return jd_fail(d, NULL, -1, "certificates", "a certificate has an empty name");
		name = xstrdup(d->jp.key.data);
		d->cert = name;
		if (!(rc = jd_value(d, &t)))
			rc = jd_cert(d, t, name, &c);
		d->cert = NULL;
		free(name);
		if (!rc)
			state_cert_adopt(top->st, c);
	}
	return rc;
}

static int jd_top_accounts(struct jd *d, struct jd_top *top)
{
	size_t n = 0;
	int rc = jd_expect(d, STATE_JT_OBJECT, "accounts", "expected an object");

	while (!rc && jd_member(d, &n, &rc)) {
		char *path = xasprintf("accounts.\"%s\"", d->jp.key.data);
		char *issuer = xstrdup(d->jp.key.data);
		struct state_kv *kv = NULL;
		size_t n_kv = 0;

		rc = jd_expect(d, STATE_JT_OBJECT, path, "expected an object of strings");
		if (!rc)
			rc = jd_kv(d, NULL, path, &kv, &n_kv);
		for (size_t i = 0; i < n_kv; i++) {
			if (!rc)
				state_account_set(top->st, issuer, kv[i].key, kv[i].value);
			free(kv[i].key);
			free(kv[i].value);
		}
		free(kv);
		free(issuer);
		free(path);
	}
	return rc;
}

static int jd_top_webhooks(struct jd *d, struct jd_top *top)
{
	size_t i = 0;
	enum state_jt t;
	int rc = jd_expect(d, STATE_JT_ARRAY, "webhook_ids", "expected an array of strings");

	while (!rc && jd_element(d, &i, &rc)) {
		if ((rc = jd_value(d, &t)))
			break;
		if (t != STATE_JT_STRING)
			return jd_fail(d, "webhook_ids", (long)i - 1, NULL, "expected a string");
		state_webhook_seen(top->st, d->jp.str.data);
	}
	return rc;
}

static const struct jd_top_member {
	const char *name;
	int (*decode)(struct jd *d, struct jd_top *top);
} jd_top_members[] = {
	{"version", jd_top_version},	  {"lineage", jd_top_lineage},	  {"serial", jd_top_serial},
	{"source", jd_top_source},	  {"certificates", jd_top_certs}, {"accounts", jd_top_accounts},
	{"webhook_ids", jd_top_webhooks},
};

/*
 * A newer layout must be refused for its version, not for a field it moved:
 * when "version" is not the first key (it always is in files we write), a
 * quick pass finds and checks it before anything else is decoded.
 */
static int jd_prescan_version(const struct jd *d, struct jd_top *top)
{
	struct jd scan;
	enum state_jt t;
	size_t n = 0;
	int rc;

	jd_init(&scan, d->jp.start, (size_t)(d->jp.end - d->jp.start), d->origin, 0);
	if ((rc = jd_value(&scan, &t)))
		goto out;
	while (jd_member(&scan, &n, &rc)) {
		if (!strcmp(scan.jp.key.data, "version")) {
			rc = jd_top_version(&scan, top);
			goto out;
		}
		if ((rc = jd_value(&scan, &t)) || (rc = jd_skip(&scan, t)))
			goto out;
	}
out:
	state_jp_free(&scan.jp);
	return rc;
}

static int jd_state(struct jd *d, struct state *st, int *version_refused)
{
	struct jd_top top = {st, version_refused, 0, 0, 0};
	enum state_jt t;
	size_t n = 0;
	int rc;

	if ((rc = jd_value(d, &t)))
		return rc;
	if (t != STATE_JT_OBJECT)
		return cs_error(CS_EINVALID, "%s: not a certsync state: expected a JSON object", d->origin);
	while (jd_member(d, &n, &rc)) {
		const char *key = d->jp.key.data;
		size_t i;

		if (n == 1 && strcmp(key, "version")) {
			if ((rc = jd_prescan_version(d, &top)))
				return rc;
			if (!top.has_version)
				break;
		}
		for (i = 0; i < sizeof(jd_top_members) / sizeof(jd_top_members[0]); i++) {
			if (!strcmp(jd_top_members[i].name, key))
				break;
		}
		if (i < sizeof(jd_top_members) / sizeof(jd_top_members[0]))
			rc = jd_top_members[i].decode(d, &top);
		else if (!(rc = jd_value(d, &t)))
			rc = jd_skip(d, t);
		if (rc)
			return rc;
	}
	if (rc)
		return rc;
	if (!top.has_version)
		return cs_error(CS_EINVALID, "%s: not a certsync state: it has no \"version\"", d->origin);
	if (!top.has_lineage)
		return jd_fail(d, NULL, -1, "lineage", "missing");
	if (!top.has_serial)
		return jd_fail(d, NULL, -1, "serial", "missing");
	return state_jp_finish(&d->jp) ? jd_syntax(d) : 0;
}

int state_decode(const char *data, size_t len, const char *origin, struct state **out, int *version_refused)
{
	struct jd d;
	struct state *st = NULL;
	int rc = 0;

	*version_refused = 0;
	jd_init(&d, data, len, origin, 0);
	if (len > STATE_MAX_BYTES) {
		rc = cs_error(CS_EINVALID, "%s: state is %zu bytes; the limit is %u", origin, len, STATE_MAX_BYTES);
		goto out;
	}
	st = state_alloc();
	if ((rc = jd_state(&d, st, version_refused)))
		goto out;
	*out = st;
	st = NULL;
out:
	state_free(st);
	state_jp_free(&d.jp);
	return rc;
}

int state_from_json(const char *data, size_t len, const char *origin, struct state **out)
{
	int version_refused;

	return state_decode(data, len, origin, out, &version_refused);
}

/* ---------- one record ---------- */

int state_cert_from_json(const char *data, size_t len, const char *origin, const char *name, struct state_cert **out)
{
	struct jd d;
	struct state_cert *c = NULL;
	enum state_jt t;
	int rc;

	jd_init(&d, data, len, origin, 0);
	d.cert = name;
	d.record = 1;
	if (len > STATE_MAX_BYTES) {
		rc = cs_error(CS_EINVALID, "%s: certificates.\"%s\": record is %zu bytes; the limit is %u", origin,
			      name, len, STATE_MAX_BYTES);
		goto out;
	}
	if ((rc = jd_value(&d, &t)) || (rc = jd_cert(&d, t, name, &c)))
		goto out;
	if (state_jp_finish(&d.jp) && (rc = jd_syntax(&d)))
		goto out;
	*out = c;
	c = NULL;
out:
	state_cert_free(c);
	state_jp_free(&d.jp);
	return rc;
}

/* ---------- journal lines ---------- */

/* A source line's object: all three required (state_source_check bounds them after). */
static const struct state_field jd_entry_source_fields[] = {
	{"url", SF_STR, offsetof(struct state_journal_entry, source_url), 1},
	{"ref", SF_STR, offsetof(struct state_journal_entry, source_ref), 1},
	{"commit", SF_STR, offsetof(struct state_journal_entry, source_commit), 1},
};

struct jd_entry {
	long long serial;
	struct state_journal_entry *e;
	int has_record, has_source;
};

static int jd_entry_source(struct jd *d, struct jd_entry *je)
{
	enum state_jt t;
	int rc;

	je->has_source = 1;
	if ((rc = jd_value(d, &t)))
		return rc;
	if (t != STATE_JT_OBJECT)
		return cs_error(CS_EINVALID, "%s:%zu: source: expected an object", d->origin, d->line);
	d->source = 1;
	rc = jd_object(d, je->e, jd_entry_source_fields,
		       sizeof(jd_entry_source_fields) / sizeof(jd_entry_source_fields[0]), "source", -1);
	d->source = 0;
	return rc;
}

static int jd_entry_member(struct jd *d, struct jd_entry *je)
{
	struct state_journal_entry *e = je->e;
	const char *key = d->jp.key.data;
	enum state_jt t;
	int rc;

	if (!strcmp(key, "record")) {
		je->has_record = 1;
		state_cert_free(e->rec);
		e->rec = NULL;
		if ((rc = jd_value(d, &t)) || t == STATE_JT_NULL)
			return rc;
		return jd_cert(d, t, "(journal)", &e->rec); /* renamed once the name is known */
	}
	if (!strcmp(key, "source"))
		return jd_entry_source(d, je);
	if ((rc = jd_value(d, &t)))
		return rc;
	if (!strcmp(key, "serial") && t == STATE_JT_INTEGER)
		je->serial = d->jp.num;
	else if (!strcmp(key, "name") && t == STATE_JT_STRING)
		state_str_set(&e->name, d->jp.str.data);
	else if (!strcmp(key, "serial") || !strcmp(key, "name"))
		je->serial = -1; /* refused below */
	else
		rc = jd_skip(d, t);
	return rc;
}

/* After the members: a record line or a source line, whole and alone. */
static int jd_entry_check(const struct jd *d, const struct jd_entry *je)
{
	const struct state_journal_entry *e = je->e;
	int record = e->name || je->has_record;

	if (je->serial <= 0 || (record && je->has_source) ||
	    (!je->has_source && (!e->name || !*e->name || !je->has_record)))
		return cs_error(
			CS_EINVALID,
			"%s:%zu: not a journal entry (expected serial > 0 and either name and record, or source)",
			d->origin, d->line);
	if (je->has_source && state_source_check(e->source_url, e->source_ref, e->source_commit))
		return cs_error(CS_EINVALID, "%s:%zu: source.%s", d->origin, d->line, cs_errmsg());
	return 0;
}

void state_journal_entry_clear(struct state_journal_entry *e)
{
	free(e->name);
	state_cert_free(e->rec);
	free(e->source_url);
	free(e->source_ref);
	free(e->source_commit);
	memset(e, 0, sizeof(*e));
}

int state_journal_decode(const char *line, size_t len, const char *origin, size_t lineno, struct state_journal_entry *e)
{
	struct jd d;
	struct jd_entry je = {0, e, 0, 0};
	enum state_jt t;
	size_t n = 0;
	int rc;

	memset(e, 0, sizeof(*e));
	jd_init(&d, line, len, origin, lineno);
	if ((rc = jd_value(&d, &t)))
		goto out;
	if (t != STATE_JT_OBJECT) {
		rc = cs_error(CS_EINVALID, "%s:%zu: not a journal entry (expected an object)", origin, lineno);
		goto out;
	}
	while (jd_member(&d, &n, &rc)) {
		if ((rc = jd_entry_member(&d, &je)))
			goto out;
	}
	if (rc || (state_jp_finish(&d.jp) && (rc = jd_syntax(&d))) || (rc = jd_entry_check(&d, &je)))
		goto out;
	if (e->rec)
		state_str_set(&e->rec->name, e->name);
	e->serial = (uint64_t)je.serial;
out:
	if (rc)
		state_journal_entry_clear(e);
	state_jp_free(&d.jp);
	return rc;
}

/* ---------- lock holder ---------- */

static const struct state_field jd_lockinfo_fields[] = {
	{"id", SF_STR, offsetof(struct state_lockinfo, id), 0},
	{"operation", SF_STR, offsetof(struct state_lockinfo, operation), 1},
	{"pid", SF_I64, offsetof(struct state_lockinfo, pid), 0},
	{"host", SF_STR, offsetof(struct state_lockinfo, host), 0},
	{"user", SF_STR, offsetof(struct state_lockinfo, user), 0},
	{"created", SF_TIME, offsetof(struct state_lockinfo, created), 0},
	{"version", SF_STR, offsetof(struct state_lockinfo, version), 0},
};

int state_lockinfo_decode(const char *data, size_t len, struct state_lockinfo *out)
{
	struct jd d;
	enum state_jt t;
	int rc;

	memset(out, 0, sizeof(*out));
	jd_init(&d, data, len, "lock", 0);
	rc = jd_value(&d, &t);
	if (!rc && t != STATE_JT_OBJECT)
		rc = CS_EINVALID;
	if (!rc)
		rc = jd_object(&d, out, jd_lockinfo_fields, sizeof(jd_lockinfo_fields) / sizeof(jd_lockinfo_fields[0]),
			       NULL, -1);
	if (rc)
		state_lockinfo_clear(out);
	state_jp_free(&d.jp);
	return rc ? CS_EINVALID : 0;
}

void state_lockinfo_clear(struct state_lockinfo *li)
{
	free(li->id);
	free(li->operation);
	free(li->host);
	free(li->user);
	free(li->version);
	memset(li, 0, sizeof(*li));
}

void libversion_jansson(char *out, size_t n)
{
	snprintf(out, n, "jansson %s", jansson_version_str());
}
