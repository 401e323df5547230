/* A strict JSON pull parser: the state's fast path (see state_jparse.h). */
#include "state_jparse.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "state_int.h"

/*
 * The keys of the open objects, by (object id, key): one open-addressing
 * table, so a check costs O(1) whatever an object's size (certificates holds
 * one key per record). Object ids are never reused, so a closed object's
 * keys stay until the table fills; then they are dropped instead of the
 * table growing (a 10,000-record state keeps ~10,000 keys, not ~360,000).
 */
struct state_jp_key {
	uint64_t hash; /* 0: empty slot */
	unsigned frame;
	size_t off, len; /* the key's bytes in text */
};

struct state_jp_keyset {
	struct state_jp_key *slot;
	size_t cap, n; /* cap: a power of two */
	char *text;
	size_t text_len, text_cap;
};

void state_jp_init(struct state_jp *jp, const char *data, size_t len)
{
	memset(jp, 0, sizeof(*jp));
	jp->start = jp->p = data;
	jp->end = data + len;
	buf_init(&jp->key, 0);
	buf_init(&jp->str, 0);
}

void state_jp_free(struct state_jp *jp)
{
	buf_free(&jp->key);
	buf_free(&jp->str);
	if (jp->keys) {
		free(jp->keys->slot);
		free(jp->keys->text);
		free(jp->keys);
		jp->keys = NULL;
	}
}

/* FNV-1a over the object id and the key; never 0 (the empty mark). */
static uint64_t state_jp_key_hash(unsigned frame, const char *k, size_t len)
{
	uint64_t h = 1469598103934665603ull ^ frame;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
	return h ? h : 1;
}

static int state_jp_id_cmp(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

/*
 * Makes room for one more key: rebuilds the table with only the keys of
 * objects still open (open[0..n_open), sorted), in place when that leaves
 * it at most a quarter full (its pages stay mapped), else at twice the
 * capacity.
 */
static void state_jp_keys_grow(struct state_jp_keyset *ks, const unsigned *open, size_t n_open)
{
	struct state_jp_key *keep;
	size_t live = 0, text_len = 0, text_cap = 0;
	char *text = NULL;

	keep = xmalloc((ks->n + 1) * sizeof(*keep));
	for (size_t i = 0; i < ks->cap; i++) {
		struct state_jp_key *e = &ks->slot[i];

		if (!e->hash || !bsearch(&e->frame, open, n_open, sizeof(*open), state_jp_id_cmp))
			continue;
		keep[live] = *e;
		keep[live].off = text_len;
		util_grow(&text, &text_cap, text_len + e->len + 1, 1);
		memcpy(text + text_len, ks->text + e->off, e->len);
		text_len += e->len;
		live++;
	}
	if (!ks->cap || 4 * (live + 1) > ks->cap) {
		free(ks->slot);
		ks->cap = ks->cap ? ks->cap * 2 : 64;
		ks->slot = xmalloc(ks->cap * sizeof(*ks->slot));
	}
	memset(ks->slot, 0, ks->cap * sizeof(*ks->slot)); /* written before read: no copy-on-write faults */
	for (size_t i = 0; i < live; i++) {
		size_t j = (size_t)keep[i].hash & (ks->cap - 1);

		while (ks->slot[j].hash)
			j = (j + 1) & (ks->cap - 1);
		ks->slot[j] = keep[i];
	}
	ks->n = live;
	free(keep);
	free(ks->text);
	ks->text = text;
	ks->text_len = text_len;
	ks->text_cap = text_cap;
}

/* Makes room in jp's key table for one more key. */
static void state_jp_keys_room(struct state_jp *jp)
{
	unsigned open[STATE_JP_MAX_DEPTH + 1];
	size_t n = 0;

	/* frame[d] of an array's depth is a closed object's id: kept, harmlessly */
	for (int d = 1; d <= jp->depth; d++)
		open[n++] = jp->frame[d];
	qsort(open, n, sizeof(*open), state_jp_id_cmp);
	state_jp_keys_grow(jp->keys, open, n);
}

/* Records key (len bytes) in the open object `frame`: 1 if that object already had it, else 0. */
static int state_jp_key_seen(struct state_jp *jp, unsigned frame, const char *key, size_t len)
{
	struct state_jp_keyset *ks = jp->keys;
	uint64_t h = state_jp_key_hash(frame, key, len);
	size_t j;

	if (!ks)
		ks = jp->keys = xcalloc(1, sizeof(*ks));
	if (2 * (ks->n + 1) > ks->cap)
		state_jp_keys_room(jp);
	for (j = (size_t)h & (ks->cap - 1); ks->slot[j].hash; j = (j + 1) & (ks->cap - 1)) {
		const struct state_jp_key *e = &ks->slot[j];

		if (e->hash == h && e->frame == frame && e->len == len && !memcmp(ks->text + e->off, key, len))
			return 1;
	}
	util_grow(&ks->text, &ks->text_cap, ks->text_len + len + 1, 1);
	memcpy(ks->text + ks->text_len, key, len);
	ks->slot[j] = (struct state_jp_key){h, frame, ks->text_len, len};
	ks->text_len += len;
	ks->n++;
	return 0;
}

static int state_jp_fail(struct state_jp *jp, const char *at, const char *what)
{
	if (!jp->err_at) {
		jp->err_at = at;
		jp->err = what;
	}
	return -1;
}

static void state_jp_ws(struct state_jp *jp)
{
	while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\n' || *jp->p == '\t' || *jp->p == '\r'))
		jp->p++;
}

static int state_jp_hex4(const char *s, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void state_jp_put_utf8(struct buf *b, unsigned cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(b, u, n);
}

/* A \u escape at jp->p (just after the backslash and 'u'), surrogate pairs joined. */
static int state_jp_unicode(struct state_jp *jp, struct buf *out)
{
	const char *at = jp->p - 2;
	unsigned cp, lo;

	if (jp->end - jp->p < 4 || state_jp_hex4(jp->p, &cp))
		return state_jp_fail(jp, at, "invalid \\u escape");
	jp->p += 4;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return state_jp_fail(jp, at, "invalid Unicode (a lone low surrogate)");
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (jp->end - jp->p < 6 || jp->p[0] != '\\' || jp->p[1] != 'u' || state_jp_hex4(jp->p + 2, &lo) ||
		    lo < 0xdc00 || lo > 0xdfff)
			return state_jp_fail(jp, at, "invalid Unicode (a high surrogate without its pair)");
		jp->p += 6;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp == 0)
		return state_jp_fail(jp, at, "\\u0000 is not allowed");
	state_jp_put_utf8(out, cp);
	return 0;
}

static int state_jp_escape(struct state_jp *jp, struct buf *out)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *hit;

	if (jp->p + 1 >= jp->end)
		return state_jp_fail(jp, jp->p, "premature end of input in a string");
	jp->p += 2;
	if (jp->p[-1] == 'u')
		return state_jp_unicode(jp, out);
	if (!(hit = memchr(from, jp->p[-1], sizeof(from) - 1)))
		return state_jp_fail(jp, jp->p - 2, "invalid escape");
	buf_append(out, &to[hit - from], 1);
	return 0;
}

/* 1 for the bytes a string may hold as they are (printable ASCII but '"' and '\\'). */
static const unsigned char state_jp_plain[256] = {
	['\x20'] = 1,
	1,
	0,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1, /* 0x20..0x2f, '"' is 0 */
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1, /* 0x30..0x3f */
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1, /* 0x40..0x4f */
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	0,
	1,
	1,
	1, /* 0x50..0x5f, '\\' is 0 */
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1, /* 0x60..0x6f */
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1,
	1, /* 0x70..0x7f */
};

/* A string literal at jp->p (on the opening quote) into out, NUL-terminated. */
static int state_jp_string(struct state_jp *jp, struct buf *out)
{
	const char *run;

	buf_clear(out);
	buf_append(out, "", 0);
	run = ++jp->p;
	for (;;) {
		unsigned char c;
		size_t len;

		while (jp->p < jp->end && state_jp_plain[(unsigned char)*jp->p])
			jp->p++;
		if (jp->p >= jp->end)
			return state_jp_fail(jp, jp->p, "premature end of input in a string");
		c = (unsigned char)*jp->p;
		if (c == '"' || c == '\\') {
			buf_append(out, run, (size_t)(jp->p - run));
			if (c == '"')
				break;
			if (state_jp_escape(jp, out))
				return -1;
			run = jp->p;
		} else if (c < 0x20) {
			return state_jp_fail(jp, jp->p, "control character in a string");
		} else if (c < 0x80) {
			jp->p++;
		} else if ((len = state_utf8_len((const unsigned char *)jp->p, (size_t)(jp->end - jp->p)))) {
			jp->p += len;
		} else {
			return state_jp_fail(jp, jp->p, "invalid UTF-8 in a string");
		}
	}
	jp->p++;
	return 0;
}

static int state_jp_digits(struct state_jp *jp)
{
	const char *s = jp->p;

	while (jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9')
		jp->p++;
	return jp->p > s ? 0 : state_jp_fail(jp, jp->p, "invalid number");
}

static int state_jp_number(struct state_jp *jp, enum state_jt *type)
{
	const char *s = jp->p;
	unsigned long long v = 0, limit;
	int neg = 0;

	if (*jp->p == '-') {
		neg = 1;
		jp->p++;
	}
	if (jp->p < jp->end && *jp->p == '0')
		jp->p++;
	else if (state_jp_digits(jp))
		return -1;
	if (jp->p < jp->end && (*jp->p == '.' || *jp->p == 'e' || *jp->p == 'E')) {
		if (*jp->p == '.') {
			jp->p++;
			if (state_jp_digits(jp))
				return -1;
		}
		if (jp->p < jp->end && (*jp->p == 'e' || *jp->p == 'E')) {
			jp->p++;
			if (jp->p < jp->end && (*jp->p == '+' || *jp->p == '-'))
				jp->p++;
			if (state_jp_digits(jp))
				return -1;
		}
		*type = STATE_JT_REAL;
		return 0;
	}
	limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
	for (const char *d = s + neg; d < jp->p; d++) {
		unsigned digit = (unsigned)(*d - '0');

		if (v > (limit - digit) / 10)
			return state_jp_fail(jp, s, "too big integer");
		v = v * 10 + digit;
	}
	jp->num = neg ? (v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v) : (long long)v;
	*type = STATE_JT_INTEGER;
	return 0;
}

static int state_jp_literal(struct state_jp *jp, const char *word, enum state_jt t, enum state_jt *type)
{
	size_t n = strlen(word);

	if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n))
		return state_jp_fail(jp, jp->p, "invalid token");
	jp->p += n;
	*type = t;
	return 0;
}

static int state_jp_open(struct state_jp *jp, enum state_jt t, enum state_jt *type)
{
	if (++jp->depth > STATE_JP_MAX_DEPTH)
		return state_jp_fail(jp, jp->p, "maximum nesting depth reached");
	if (t == STATE_JT_OBJECT)
		jp->frame[jp->depth] = ++jp->n_frames;
	jp->p++;
	*type = t;
	return 0;
}

int state_jp_value(struct state_jp *jp, enum state_jt *type)
{
	if (jp->err_at)
		return -1;
	state_jp_ws(jp);
	if (jp->p >= jp->end)
		return state_jp_fail(jp, jp->p, "premature end of input");
	switch (*jp->p) {
	case '{': return state_jp_open(jp, STATE_JT_OBJECT, type);
	case '[': return state_jp_open(jp, STATE_JT_ARRAY, type);
	case '"': *type = STATE_JT_STRING; return state_jp_string(jp, &jp->str);
	case 't': return state_jp_literal(jp, "true", STATE_JT_TRUE, type);
	case 'f': return state_jp_literal(jp, "false", STATE_JT_FALSE, type);
	case 'n': return state_jp_literal(jp, "null", STATE_JT_NULL, type);
	default:
		if (*jp->p == '-' || (*jp->p >= '0' && *jp->p <= '9'))
			return state_jp_number(jp, type);
		return state_jp_fail(jp, jp->p, "invalid token");
	}
}

/* Before the next item of a container closed by `close`: 1 = an item follows, 0 = closed. */
static int state_jp_next(struct state_jp *jp, size_t *n, char close)
{
	if (jp->err_at)
		return -1;
	state_jp_ws(jp);
	if (jp->p >= jp->end)
		return state_jp_fail(jp, jp->p, "premature end of input");
	if (*jp->p == close) {
		jp->p++;
		jp->depth--;
		return 0;
	}
	if (*n) {
		if (*jp->p != ',')
			return state_jp_fail(jp, jp->p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
		jp->p++;
		state_jp_ws(jp);
	}
	(*n)++;
	return 1;
}

int state_jp_member(struct state_jp *jp, size_t *n)
{
	int more = state_jp_next(jp, n, '}');
	const char *at;

	if (more <= 0)
		return more;
	if (jp->p >= jp->end || *jp->p != '"')
		return state_jp_fail(jp, jp->p, "string or '}' expected");
	at = jp->p;
	if (state_jp_string(jp, &jp->key))
		return -1;
	if (state_jp_key_seen(jp, jp->frame[jp->depth], jp->key.data, jp->key.len))
		return state_jp_fail(jp, at, STATE_JP_EDUP);
	state_jp_ws(jp);
	if (jp->p >= jp->end || *jp->p != ':')
		return state_jp_fail(jp, jp->p, "':' expected");
	jp->p++;
	return 1;
}

int state_jp_element(struct state_jp *jp, size_t *n)
{
	int more = state_jp_next(jp, n, ']');

	if (more > 0 && jp->p < jp->end && *jp->p == ']')
		return state_jp_fail(jp, jp->p, "a value expected after ','");
	return more;
}

int state_jp_skip(struct state_jp *jp, enum state_jt type)
{
	size_t n = 0;
	enum state_jt t;
	int more;

	if (type == STATE_JT_OBJECT) {
		while ((more = state_jp_member(jp, &n)) > 0) {
			if (state_jp_value(jp, &t) || state_jp_skip(jp, t))
				return -1;
		}
		return more;
	}
	if (type == STATE_JT_ARRAY) {
		while ((more = state_jp_element(jp, &n)) > 0) {
			if (state_jp_value(jp, &t) || state_jp_skip(jp, t))
				return -1;
		}
		return more;
	}
	return jp->err_at ? -1 : 0;
}

int state_jp_finish(struct state_jp *jp)
{
	if (jp->err_at)
		return -1;
	state_jp_ws(jp);
	if (jp->p < jp->end)
		return state_jp_fail(jp, jp->p, "end of file expected");
	return 0;
}

void state_jp_where(const struct state_jp *jp, int *line, int *col)
{
	const char *at = jp->err_at ? jp->err_at : jp->p, *bol = jp->start;

	*line = 1;
	for (const char *s = jp->start; s < at; s++) {
		if (*s == '\n') {
			(*line)++;
			bol = s + 1;
		}
	}
	*col = (int)(at - bol) + 1;
}
