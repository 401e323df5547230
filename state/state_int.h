/*
 * Internals shared by state.c, state_json.c, state_file.c and state_pg.c only: the
 * account type, the sorted key/value helpers, record adoption, and the
 * journal-line and lock-info codecs (jansson stays inside state_json.c).
 */
#ifndef CS_STATE_STATE_INT_H
#define CS_STATE_STATE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "state.h"

/* One issuer's account data: key/value pairs sorted by key. st->accounts is sorted by issuer. */
struct state_account {
	char *issuer;
	struct state_kv *kv;
	size_t n_kv;
};

/* ---------- field tables: one description of each object, for the writer and the reader ---------- */

enum state_fkind {
	SF_STR,	    /* char *, omitted when NULL or empty */
	SF_TIME,    /* int64_t unix seconds as an RFC 3339 string, omitted when 0 */
	SF_INT,	    /* int >= 0, omitted when 0 */
	SF_I64,	    /* int64_t, always written */
	SF_PHASE,   /* enum cert_phase as its name, always written */
	SF_IDS,	    /* struct state_kv ids/n_ids as an object of strings */
	SF_SIG,	    /* out_sig[STATE_OUT_FILES] */
	SF_TOKENS,  /* tokens/n_tokens */
	SF_HISTORY, /* history/n_history */
	SF__MAX
};

struct state_field {
	const char *name;
	enum state_fkind kind;
	size_t off;   /* in the struct the table describes */
	int required; /* the reader refuses an object without it */
};

/* In file order. */
extern const struct state_field state_cert_fields[]; /* struct state_cert */
extern const size_t state_n_cert_fields;
extern const struct state_field state_token_fields[]; /* struct state_token */
extern const size_t state_n_token_fields;
extern const struct state_field state_sig_fields[]; /* struct state_filesig */
extern const size_t state_n_sig_fields;
extern const struct state_field state_event_fields[]; /* struct state_event */
extern const size_t state_n_event_fields;

/* Length of the valid UTF-8 sequence at s (n bytes left, n >= 1), 0 if invalid (jansson's rules). */
size_t state_utf8_len(const unsigned char *s, size_t n);

/* ---------- snapshot memory ---------- */

/*
 * What a snapshot load (state_snap.c) shares between records instead of a
 * malloc per string: one block of NUL-terminated strings and one array of
 * records. Records and strings inside them are never passed to free(); a
 * string replaced later by a setter is malloc'd as usual. The state owns its
 * arena (state_set_arena) and frees it last in state_free.
 */
struct state_arena {
	char *strs;
	size_t strs_len;
	struct state_cert *certs;
	size_t n_certs;
	struct state_event *events; /* the records' histories */
	size_t n_events;
	void *block; /* malloc'd block holding certs and strs, or NULL when mapped */
	void *map;   /* else the anonymous mapping holding them (huge pages: few faults) */
	size_t map_len;
	struct state_arena *next; /* the registry of live arenas (state.c) */
};

/*
 * A large block of zeroed memory: an anonymous mapping with huge pages from
 * STATE_BIGMEM_MIN bytes on (on a VM a page fault costs ~11 us; 10 MB in 4 KB
 * pages take 29 ms to touch, in 2 MB pages under 1 ms), malloc'd below.
 */
#define STATE_BIGMEM_MIN (512u * 1024)
struct state_bigmem {
	void *p;
	void *map; /* NULL: p is malloc'd */
	size_t map_len;
};
void state_bigmem_alloc(struct state_bigmem *m, size_t len);
void state_bigmem_free(struct state_bigmem *m);

/* Hands a to st (which must have none yet) and registers it for state_mem_free. */
void state_set_arena(struct state *st, struct state_arena *a);

/* free(p) unless p lies in a live arena. NULL is a no-op. */
void state_mem_free(void *p);

/* ---------- the file backend's decoded-state snapshot (state_snap.c) ---------- */

#define STATE_SNAP_VERSION 2	  /* 2: an extra section (the postgres backend's row digests) */
#define STATE_SNAP_SUFFIX ".snap" /* beside the state: state.json.snap */

/*
 * What a snapshot was decoded from: the state file's identity (ctime as the
 * file was after its rename) and the lineage and serial written at its head.
 *
 * Racy keys (git's "racily clean" index entries): file times come from a
 * coarse clock, so a same-size rewrite in place within the same tick as the
 * one the key recorded keeps the identity. A key taken less than a margin
 * after the file's mtime is marked racy and carries the CRC-32C of the file's
 * content, which the next load checks (reading, not decoding, the JSON) before
 * trusting the snapshot; a key taken later cannot be fooled that way.
 */
struct state_snap_key {
	uint64_t dev, ino, size;
	int64_t mtime_ns, ctime_ns;
	char lineage[37];
	uint64_t serial;
	/* not part of the match: */
	uint32_t racy;	      /* 1: check content_crc against the file before use */
	uint32_t content_crc; /* CRC-32C of the state file's bytes when racy */
};

/* CRC-32C of data (the content check of racy keys). */
uint32_t state_snap_crc(const void *data, size_t len);

/* Writes the snapshot of st (as decoded from the file key names) to path atomically (a temporary file renamed over it,
 * 0600, not fsync'd: it is a cache). */
int state_snap_write(const char *path, const struct state *st, const struct state_snap_key *key);

/*
 * Loads the snapshot at path when it was made from exactly key: 0 with *out
 * (lineage and serial from key; the journal is not in it) and key->racy and
 * key->content_crc as the snapshot recorded them. CS_ENOTFOUND when
 * there is none; CS_EINVALID naming what is wrong (another key, version or
 * byte order, a bad checksum, a length out of bounds): decode the JSON then.
 */
int state_snap_read(const char *path, struct state_snap_key *key, struct state **out);

/*
 * The same with an extra section: bytes of the caller's kept with the
 * records under the same key and checksum (NULL or empty: none). _read_x
 * hands them to *extra (emptied when the file has none; NULL: not wanted,
 * still checked).
 */
int state_snap_write_x(const char *path, const struct state *st, const struct state_snap_key *key,
		       const struct buf *extra);
int state_snap_read_x(const char *path, struct state_snap_key *key, struct state **out, struct buf *extra);

/* ---------- the file backend's journal ---------- */

/*
 * For tests: the call the file backend's journal makes its written lines
 * durable with (fdatasync; NULL restores it), to count the syncs a group
 * commit shares or to make one fail. Set it before the appending threads
 * start.
 */
void state_file_set_datasync(int (*fn)(int fd));

/* ---------- helpers ---------- */

/* Sets key to a copy of value in the key-sorted array *v (n entries); NULL value deletes. */
void state_kv_set(struct state_kv **v, size_t *n, const char *key, const char *value);

/* The value for key in a key-sorted array, or NULL (binary search). */
const char *state_kv_get(const struct state_kv *v, size_t n, const char *key);

/*
 * Makes c->history a malloc'd array with room for STATE_HISTORY_MAX events
 * (it is NULL, or exactly as long as a snapshot's history, until written).
 */
void state_cert_history_room(struct state_cert *c);

/* A new empty record named name (phase PENDING), not in any state. Free with state_cert_free. */
struct state_cert *state_cert_new(const char *name);

/*
 * Puts rec into st under rec->name, taking ownership; a record already under
 * that name is freed and replaced (pointers to it become invalid).
 */
void state_cert_adopt(struct state *st, struct state_cert *rec);

/* Calls fn for every record, in no particular order (the map's). fn must not add or remove records. */
void state_cert_foreach(const struct state *st, void (*fn)(struct state_cert *c, void *arg), void *arg);

/* Puts rec into st unless a record of that name is there: 0, or -1 (rec is still the caller's). */
int state_cert_adopt_new(struct state *st, struct state_cert *rec);

/* Makes room for n records without rehashing (a hint; decoding a big state). */
void state_cert_reserve(struct state *st, size_t n);

/* An empty state with an all-zero lineage (the decoder fills it in). */
struct state *state_alloc(void);

/*
 * state_from_json, telling apart a version refusal (*version_refused = 1) from
 * corrupt content, so the file backend adds the backup hint only to the latter.
 */
int state_decode(const char *data, size_t len, const char *origin, struct state **out, int *version_refused);

/*
 * The state's per-issuer account data as one compact JSON object, and its
 * webhook ids as a compact JSON array (the postgres backend's header row);
 * state_from_json reads them back as the "accounts" and "webhook_ids" members.
 */
void state_accounts_to_json(const struct state *st, struct buf *out);
void state_webhooks_to_json(const struct state *st, struct buf *out);

/* Appends one journal line, `{"serial":N,"name":"x","record":{...}|null}` and '\n', to out. */
void state_journal_encode(uint64_t serial, const char *name, const struct state_cert *rec, struct buf *out);

/*
 * The bounds of a source a journal line may carry (state_note_source): the
 * repository as displayed (gitsrc_display: no credentials), the ref, the
 * commit id in hex (SHA-1 or SHA-256).
 */
#define STATE_SOURCE_URL_MAX 4096
#define STATE_SOURCE_REF_MAX 1024

/*
 * 0 when url, ref and commit fit a source line: url and ref non-empty
 * printable text within their bounds, commit 40 or 64 lowercase hex digits.
 * CS_EINVALID naming the field otherwise (no origin: the caller adds it).
 */
int state_source_check(const char *url, const char *ref, const char *commit);

/*
 * Appends one source line, `{"serial":N,"source":{"url":…,"ref":…,"commit":…}}`
 * and '\n', to out: "the source is now at commit" (state_note_source). The
 * fields must pass state_source_check.
 */
void state_journal_encode_source(uint64_t serial, const char *url, const char *ref, const char *commit,
				 struct buf *out);

/*
 * One decoded journal line: a record line (name set; rec the new record, NULL
 * for a removal) or a source line (name NULL, source_* set). Everything in it
 * is the holder's: state_journal_entry_clear.
 */
struct state_journal_entry {
	uint64_t serial;
	char *name;
	struct state_cert *rec;
	char *source_url, *source_ref, *source_commit;
};

void state_journal_entry_clear(struct state_journal_entry *e);

/*
 * Decodes one journal line (without its '\n') into *e (cleared first). A
 * line is either a record line or a source line, never both. CS_EINVALID with
 * "origin:lineno: ..." for anything else (bad JSON, a missing or mistyped
 * member, a source out of state_source_check's bounds).
 */
int state_journal_decode(const char *line, size_t len, const char *origin, size_t lineno,
			 struct state_journal_entry *e);

/* Who holds the state lock (the JSON written into the lock file). */
struct state_lockinfo {
	char *id;
	char *operation;
	int64_t pid;
	char *host;
	char *user;
	int64_t created;
	char *version;
};

void state_lockinfo_encode(const struct state_lockinfo *li, struct buf *out);
/* CS_EINVALID (no message worth showing) when data is not a lock-info object. */
int state_lockinfo_decode(const char *data, size_t len, struct state_lockinfo *out);
void state_lockinfo_clear(struct state_lockinfo *li);

#endif
