/*
 * A strict JSON pull parser for the state (internal to state/). It decodes
 * straight into the records without building a document tree: a 10,000-record
 * state loads in a fraction of what a DOM costs. It accepts exactly RFC 8259
 * JSON, as strictly as jansson: UTF-8 checked, no NUL, no trailing commas,
 * integers that fit in a long long; and, as jansson with JSON_REJECT_DUPLICATES,
 * no key twice in one object (which of the two would win is not JSON's to say).
 */
#ifndef CS_STATE_STATE_JPARSE_H
#define CS_STATE_STATE_JPARSE_H

#include <stddef.h>

#include "../util/buf.h"

#define STATE_JP_MAX_DEPTH 512
/* jp->err for a key that appears twice in one object (jp->key holds it) */
#define STATE_JP_EDUP "duplicate object key"

enum state_jt {
	STATE_JT_OBJECT,  /* '{' consumed: read it with state_jp_member() */
	STATE_JT_ARRAY,	  /* '[' consumed: read it with state_jp_element() */
	STATE_JT_STRING,  /* in jp->str */
	STATE_JT_INTEGER, /* in jp->num */
	STATE_JT_REAL,
	STATE_JT_TRUE,
	STATE_JT_FALSE,
	STATE_JT_NULL,
	STATE_JT__MAX
};

struct state_jp_keyset;

struct state_jp {
	const char *start, *p, *end;
	int depth;
	/* duplicate keys: each open object's id, and every key read so far (state_jparse.c) */
	unsigned frame[STATE_JP_MAX_DEPTH + 1];
	unsigned n_frames;
	struct state_jp_keyset *keys;
	struct buf key;	    /* the last object key (NUL-terminated) */
	struct buf str;	    /* the last string value (NUL-terminated) */
	long long num;	    /* the last integer value */
	const char *err_at; /* where the syntax error is, NULL while there is none */
	const char *err;    /* what it is (static text) */
};

void state_jp_init(struct state_jp *jp, const char *data, size_t len);
void state_jp_free(struct state_jp *jp);

/*
 * Every reader returns -1 on a syntax error (err/err_at set; the parser is
 * then unusable), otherwise as documented.
 */

/* Reads the next value: scalars whole, containers up to their opening bracket. 0 or -1. */
int state_jp_value(struct state_jp *jp, enum state_jt *type);

/*
 * The next member of the open object: 1 with the key in jp->key and the ':'
 * consumed (read the value next), 0 at the closing '}' (consumed). *n counts
 * the members read so far; start it at 0.
 */
int state_jp_member(struct state_jp *jp, size_t *n);

/* Likewise for arrays: 1 when another element follows (read it next), 0 at ']'. */
int state_jp_element(struct state_jp *jp, size_t *n);

/* Skips the rest of a value whose head state_jp_value() returned. 0 or -1. */
int state_jp_skip(struct state_jp *jp, enum state_jt type);

/* Only whitespace may follow the top-level value. 0 or -1. */
int state_jp_finish(struct state_jp *jp);

/* 1-based line and column of the syntax error (columns count bytes). */
void state_jp_where(const struct state_jp *jp, int *line, int *col);

#endif
