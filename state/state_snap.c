/*
 * The decoded-state snapshot of the file backend (<state>.snap): the records
 * of state.json in a binary form that loads with two reads and a few
 * allocations, keyed by the identity of the state.json it was decoded from.
 * It is a cache: anything wrong with it (missing, short, another version,
 * another key, a bad checksum, a length out of bounds) makes the caller
 * decode the JSON as before. Layout (native byte order, checked):
 *
 *   magic "CSSNAP\r\n" | u32 version | u32 byte-order mark | u32 CRC-32C of
 *   everything after it | u32 0 | u64 file length | key (dev, ino, size,
 *   mtime_ns, ctime_ns, lineage[40], serial) | u64 records length | u64
 *   strings length | u64 record count | u64 event count | u64 extra length |
 *   u32 racy | u32 content CRC-32C |
 *   records | strings | extra
 *
 * The extra section is the caller's own bytes, kept with the records under
 * the same key and checksum (the postgres backend keeps its per-row digests
 * there); the file backend has none.
 *
 * The checksum is CRC-32C: enough for what it guards against (a torn or
 * damaged file), and the snapshot is not a trust boundary: whoever can write
 * it can write state.json. Strings are NUL-terminated in one table that ends in
 * a NUL, referenced by a u32 offset (0 is NULL, so any offset inside the table
 * is a bounded string); repeated short strings are stored once. The loaded
 * records point into that table, which becomes the state's arena together
 * with the records themselves. Large arenas are anonymous mappings with huge
 * pages: on this kind of VM a page fault costs ~11 us, and 10,000 records
 * touch ~8 MB (2,000 faults, 22 ms) where huge pages take 5.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/util.h"
#include "state_int.h"

#define SNAP_MAGIC "CSSNAP\r\n"
#define SNAP_BOM 0x01020304u
#define SNAP_SUM_AT 16			 /* the checksum's offset */
#define SNAP_HASHED_AT (SNAP_SUM_AT + 8) /* what it covers starts here */
#define SNAP_KEY_LEN (5 * 8 + 40 + 8)
#define SNAP_N_LENS 5 /* records, strings, record count, event count, extra */
#define SNAP_HEAD_LEN (SNAP_HASHED_AT + 8 + SNAP_KEY_LEN + SNAP_N_LENS * 8 + 2 * 4)
#define SNAP_RACY_AT (SNAP_HEAD_LEN - 8)
#define SNAP_MAX_BYTES (2ull * STATE_MAX_BYTES)
#define SNAP_DEDUP_MAX 48 /* strings up to this length are stored once */

/*
 * CRC-32C (Castagnoli): the SSE 4.2 instruction where the CPU has it (0.7 ms
 * for 6 MB here, against 2.7 ms for zlib's CRC-32 and 4 ms for SHA-256), a
 * table elsewhere; both give the same value, so a snapshot moves between them.
 */
static uint32_t snap_crc_table[8][256];
static pthread_once_t snap_crc_once = PTHREAD_ONCE_INIT;

static void snap_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		snap_crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++) {
		for (int t = 1; t < 8; t++)
			snap_crc_table[t][i] =
				(snap_crc_table[t - 1][i] >> 8) ^ snap_crc_table[0][snap_crc_table[t - 1][i] & 0xff];
	}
}

/* Slicing by 8. */
static uint32_t snap_crc_soft(uint32_t crc, const unsigned char *p, size_t n)
{
	pthread_once(&snap_crc_once, snap_crc_init);
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		v ^= crc;
		crc = snap_crc_table[7][v & 0xff] ^ snap_crc_table[6][(v >> 8) & 0xff] ^
		      snap_crc_table[5][(v >> 16) & 0xff] ^ snap_crc_table[4][(v >> 24) & 0xff] ^
		      snap_crc_table[3][(v >> 32) & 0xff] ^ snap_crc_table[2][(v >> 40) & 0xff] ^
		      snap_crc_table[1][(v >> 48) & 0xff] ^ snap_crc_table[0][v >> 56];
	}
	while (n--)
		crc = (crc >> 8) ^ snap_crc_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__BIG_ENDIAN__)
#define SNAP_CRC_HW 1
__attribute__((target("sse4.2"))) static uint32_t snap_crc_hw(uint32_t crc, const unsigned char *p, size_t n)
{
	uint64_t c = crc;

	for (; n >= 8; n -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	crc = (uint32_t)c;
	while (n--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

static uint32_t snap_crc_update(uint32_t crc, const void *p, size_t n)
{
#ifdef SNAP_CRC_HW
	if (__builtin_cpu_supports("sse4.2"))
		return snap_crc_hw(crc, p, n);
#endif
	return snap_crc_soft(crc, p, n);
}

/* CRC-32C over three pieces. */
static uint32_t snap_crc(const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc)
{
	uint32_t crc = 0xffffffffu;

	if (na)
		crc = snap_crc_update(crc, a, na);
	if (nb)
		crc = snap_crc_update(crc, b, nb);
	if (nc)
		crc = snap_crc_update(crc, c, nc);
	return ~crc;
}

uint32_t state_snap_crc(const void *data, size_t len)
{
	return snap_crc(data, len, NULL, 0, NULL, 0);
}

/* ---------- writing ---------- */

/*
 * Two passes over the state: the first sizes the file (records exactly,
 * strings at most), the second writes it into one block, so that a 10,000
 * record snapshot costs no reallocation and few page faults. Short strings
 * are stored once while the dedupe table has room (the repeated ones, an
 * issuer, a provider, an event text, come early).
 */
#define SNAP_DEDUP_SLOTS 65536u

struct snap_slot {
	uint32_t off; /* into strs, 0 = empty */
	uint32_t hash;
};

struct snap_w {
	unsigned char *recs; /* cursor in the records */
	char *strs;	     /* the string table */
	size_t strs_len;
	struct snap_slot *slots; /* dedupe, open addressing */
	size_t n_slots;
	/* the sizing pass only counts */
	int sizing;
	size_t recs_len, strs_max, n_events;
};

static void sw_u32(struct snap_w *w, uint32_t v)
{
	if (w->sizing) {
		w->recs_len += sizeof(v);
		return;
	}
	memcpy(w->recs, &v, sizeof(v));
	w->recs += sizeof(v);
}

static void sw_u64(struct snap_w *w, uint64_t v)
{
	if (w->sizing) {
		w->recs_len += sizeof(v);
		return;
	}
	memcpy(w->recs, &v, sizeof(v));
	w->recs += sizeof(v);
}

static uint32_t sw_intern_new(struct snap_w *w, const char *s, size_t len)
{
	uint32_t off = (uint32_t)w->strs_len;

	memcpy(w->strs + w->strs_len, s, len + 1);
	w->strs_len += len + 1;
	return off;
}

/* A string stored once: its offset when it is there already, else a new one. */
static uint32_t sw_shared(struct snap_w *w, const char *s, size_t len)
{
	uint64_t h64 = util_hash_str(s);
	uint32_t h = (uint32_t)(h64 >> 32), off;
	size_t j = (size_t)h64 & (SNAP_DEDUP_SLOTS - 1);

	for (; w->slots[j].off; j = (j + 1) & (SNAP_DEDUP_SLOTS - 1)) {
		if (w->slots[j].hash == h && !strcmp(w->strs + w->slots[j].off, s))
			return w->slots[j].off;
	}
	off = sw_intern_new(w, s, len);
	if (2 * (w->n_slots + 1) <= SNAP_DEDUP_SLOTS) {
		w->slots[j].off = off;
		w->slots[j].hash = h;
		w->n_slots++;
	}
	return off;
}

/*
 * A string reference (offset 0 is NULL). shared: a value records repeat
 * (an issuer, a step, an event text), looked up to be stored once; names,
 * hashes and serials are stored as they come.
 */
static void sw_ref(struct snap_w *w, const char *s, int shared)
{
	uint32_t off = 0;
	size_t len;

	if (s && w->sizing) {
		w->strs_max += strlen(s) + 1;
	} else if (s) {
		len = strlen(s);
		off = shared && len <= SNAP_DEDUP_MAX ? sw_shared(w, s, len) : sw_intern_new(w, s, len);
	}
	sw_u32(w, off);
}

static void sw_str(struct snap_w *w, const char *s)
{
	sw_ref(w, s, 1);
}

/* A record's strings in file order; 1 marks those records share. */
/* clang-format off */
#define SNAP_CERT_STRINGS(X) \
	X(name, 0) X(issuer, 1) X(provider, 1) X(spec_hash, 0) X(target_hash, 0) X(output_dir, 0) X(change, 1) \
	X(step, 1) X(serial, 0) X(fingerprint, 0) X(out_hash, 0) X(out_generation, 0) X(last_error, 1) \
	X(failure_class, 1)
/* clang-format on */

static void sw_cert(struct state_cert *c, void *arg)
{
	struct snap_w *w = arg;

#define SNAP_W(f, shared) sw_ref(w, c->f, shared);
	SNAP_CERT_STRINGS(SNAP_W)
#undef SNAP_W
	sw_u32(w, (uint32_t)c->phase);
	sw_u32(w, (uint32_t)c->attempts);
	sw_u64(w, (uint64_t)c->next_try);
	sw_u64(w, (uint64_t)c->not_before);
	sw_u64(w, (uint64_t)c->not_after);
	sw_u64(w, (uint64_t)c->last_error_time);
	sw_u64(w, (uint64_t)c->last_success);
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		sw_u64(w, (uint64_t)c->out_sig[i].size);
		sw_u64(w, (uint64_t)c->out_sig[i].mtime_ns);
		sw_u64(w, (uint64_t)c->out_sig[i].ino);
	}
	sw_u32(w, (uint32_t)c->n_ids);
	for (size_t i = 0; i < c->n_ids; i++) {
		sw_str(w, c->ids[i].key);
		sw_str(w, c->ids[i].value);
	}
	sw_u32(w, (uint32_t)c->n_tokens);
	for (size_t i = 0; i < c->n_tokens; i++) {
		const struct state_token *t = &c->tokens[i];

		sw_str(w, t->method);
		sw_str(w, t->name);
		sw_str(w, t->location);
		sw_str(w, t->ref);
		sw_str(w, t->issuer);
		sw_u64(w, (uint64_t)t->placed_at);
	}
	sw_u32(w, (uint32_t)c->n_history);
	if (w->sizing)
		w->n_events += c->n_history;
	for (size_t i = 0; i < c->n_history; i++) {
		sw_u64(w, (uint64_t)c->history[i].time);
		sw_str(w, c->history[i].what);
	}
}

static void sw_state(struct snap_w *w, const struct state *st)
{
	sw_str(w, st->source_url);
	sw_str(w, st->source_ref);
	sw_str(w, st->source_commit);
	sw_u32(w, (uint32_t)st->n_accounts);
	for (size_t i = 0; i < st->n_accounts; i++) {
		sw_str(w, st->accounts[i].issuer);
		sw_u32(w, (uint32_t)st->accounts[i].n_kv);
		for (size_t k = 0; k < st->accounts[i].n_kv; k++) {
			sw_str(w, st->accounts[i].kv[k].key);
			sw_str(w, st->accounts[i].kv[k].value);
		}
	}
	sw_u32(w, (uint32_t)st->n_webhook_ids);
	for (size_t i = 0; i < st->n_webhook_ids; i++)
		sw_str(w, st->webhook_ids[i]);
	state_cert_foreach(st, sw_cert, w); /* in map order: the loader does not need them sorted */
}

static void snap_key_bytes(const struct state_snap_key *key, unsigned char out[SNAP_KEY_LEN])
{
	uint64_t v[5] = {key->dev, key->ino, key->size, (uint64_t)key->mtime_ns, (uint64_t)key->ctime_ns};

	memset(out, 0, SNAP_KEY_LEN);
	memcpy(out, v, sizeof(v));
	memcpy(out + 40, key->lineage, strnlen(key->lineage, 36));
	memcpy(out + 80, &key->serial, 8);
}

/* The whole file into mem; *len its length. */
static int snap_encode(const struct state *st, const struct state_snap_key *key, const struct buf *extra,
		       struct state_bigmem *mem, size_t *len)
{
	struct snap_w w;
	unsigned char *head, keyb[SNAP_KEY_LEN];
	uint32_t version = STATE_SNAP_VERSION, bom = SNAP_BOM, sum;
	uint64_t total, lens[SNAP_N_LENS];
	size_t extra_len = extra ? extra->len : 0;

	memset(&w, 0, sizeof(w));
	w.sizing = 1;
	w.strs_max = 1;
	sw_state(&w, st);
	if (w.strs_max > UINT32_MAX)
		return cs_error(CS_EINVALID, "state snapshot: %zu bytes of strings; the limit is %u", w.strs_max,
				UINT32_MAX);
	if (extra_len > SNAP_MAX_BYTES)
		return cs_error(CS_EINVALID, "state snapshot: %zu bytes of extra data; the limit is %llu", extra_len,
				(unsigned long long)SNAP_MAX_BYTES);
	state_bigmem_alloc(mem, SNAP_HEAD_LEN + w.recs_len + w.strs_max + extra_len);
	head = mem->p;
	lens[0] = w.recs_len;
	w.sizing = 0;
	w.recs = head + SNAP_HEAD_LEN;
	w.strs = (char *)w.recs + w.recs_len;
	w.strs[0] = '\0'; /* offset 0: NULL */
	w.strs_len = 1;
	w.slots = xcalloc(SNAP_DEDUP_SLOTS, sizeof(*w.slots));
	sw_state(&w, st);
	free(w.slots);
	lens[1] = w.strs_len;
	lens[2] = state_cert_count(st);
	lens[3] = w.n_events;
	lens[4] = extra_len;
	if (extra_len)
		memcpy(w.strs + w.strs_len, extra->data, extra_len);
	total = SNAP_HEAD_LEN + lens[0] + lens[1] + lens[4];
	memcpy(head, SNAP_MAGIC, 8);
	memcpy(head + 8, &version, 4);
	memcpy(head + 12, &bom, 4);
	memset(head + SNAP_SUM_AT, 0, 8);
	memcpy(head + SNAP_HASHED_AT, &total, 8);
	snap_key_bytes(key, keyb);
	memcpy(head + SNAP_HASHED_AT + 8, keyb, sizeof(keyb));
	memcpy(head + SNAP_HASHED_AT + 8 + sizeof(keyb), lens, sizeof(lens));
	memcpy(head + SNAP_RACY_AT, &key->racy, 4);
	memcpy(head + SNAP_RACY_AT + 4, &key->content_crc, 4);
	sum = snap_crc(head + SNAP_HASHED_AT, (size_t)total - SNAP_HASHED_AT, NULL, 0, NULL, 0);
	memcpy(head + SNAP_SUM_AT, &sum, 4);
	*len = (size_t)total;
	return 0;
}

int state_snap_write(const char *path, const struct state *st, const struct state_snap_key *key)
{
	return state_snap_write_x(path, st, key, NULL);
}

int state_snap_write_x(const char *path, const struct state *st, const struct state_snap_key *key,
		       const struct buf *extra)
{
	static atomic_uint counter;
	struct state_bigmem mem = {NULL, NULL, 0};
	char *tmp = NULL;
	size_t len = 0;
	int fd = -1, rc;

	if ((rc = snap_encode(st, key, extra, &mem, &len)))
		goto out;
	tmp = xasprintf("%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
	/* No fsync: a snapshot lost or torn by a crash fails its checksum and is rebuilt. */
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 || fchmod(fd, 0600) ||
	    fsutil_write_all(fd, mem.p, len) || close(fd)) {
		rc = cs_error(CS_ERROR, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path)) {
		rc = cs_error(CS_ERROR, "%s: rename: %s", path, strerror(errno));
		unlink(tmp);
	}
out:
	free(tmp);
	state_bigmem_free(&mem);
	return rc;
}

/* ---------- reading ---------- */

/*
 * The records are read through a window of SNAP_WINDOW bytes (the CRC
 * follows the reads), not all at once: for 100,000 records that is 23 MB
 * less at the peak. Decoding before the checksum is known is safe, every
 * length and offset being bounded; the checksum decides afterwards.
 */
#define SNAP_WINDOW (512u * 1024)

struct snap_r {
	const unsigned char *p, *end; /* what the window holds and has not been decoded */
	unsigned char *buf;
	size_t cap;
	int fd;
	off_t next;	 /* file offset of the first record byte not read yet */
	uint64_t unread; /* record bytes not read yet */
	uint32_t crc;	 /* running CRC-32C (not inverted) of what was read */
	int io_error;
	char *strs;
	size_t strs_len;
	size_t events;	 /* events handed out of the arena so far */
	const char *bad; /* what was wrong first, NULL while nothing */
};

static int sr_fail(struct snap_r *r, const char *what)
{
	if (!r->bad)
		r->bad = what;
	r->p = r->end;
	return -1;
}

static int snap_pread(int fd, void *p, size_t len, off_t off);

/* Slides the window on: the undecoded tail first, then more of the file. */
static void sr_refill(struct snap_r *r)
{
	size_t tail = (size_t)(r->end - r->p), want = r->cap - tail;

	if (want > r->unread)
		want = (size_t)r->unread;
	memmove(r->buf, r->p, tail);
	if (want && snap_pread(r->fd, r->buf + tail, want, r->next)) {
		r->io_error = 1;
		want = 0;
		r->unread = 0;
	}
	r->crc = snap_crc_update(r->crc, r->buf + tail, want);
	r->next += (off_t)want;
	r->unread -= want;
	r->p = r->buf;
	r->end = r->buf + tail + want;
}

/* 1 when k more bytes are there to decode. */
static int sr_have(struct snap_r *r, size_t k)
{
	if ((size_t)(r->end - r->p) < k && r->unread && !r->bad)
		sr_refill(r);
	return (size_t)(r->end - r->p) >= k;
}

/* Record bytes left, read or not. */
static uint64_t sr_left(const struct snap_r *r)
{
	return (uint64_t)(r->end - r->p) + r->unread;
}

static uint32_t sr_u32(struct snap_r *r)
{
	uint32_t v = 0;

	if (!sr_have(r, sizeof(v)))
		return (uint32_t)sr_fail(r, "records cut short");
	memcpy(&v, r->p, sizeof(v));
	r->p += sizeof(v);
	return v;
}

static uint64_t sr_u64(struct snap_r *r)
{
	uint64_t v = 0;

	if (!sr_have(r, sizeof(v)))
		return (uint64_t)sr_fail(r, "records cut short");
	memcpy(&v, r->p, sizeof(v));
	r->p += sizeof(v);
	return v;
}

/* A string reference: any offset inside the table is a bounded string (the table ends in a NUL). */
static char *sr_str(struct snap_r *r)
{
	uint32_t off = sr_u32(r);

	if (!off)
		return NULL;
	/* the table is valid UTF-8: a string starting on a character is too */
	if (off >= r->strs_len || ((unsigned char)r->strs[off] & 0xc0) == 0x80) {
		sr_fail(r, "a string out of bounds");
		return NULL;
	}
	return r->strs + off;
}

/* A count of items of at least `each` bytes that must fit in what is left, and at most max. */
static size_t sr_count(struct snap_r *r, size_t each, size_t max)
{
	uint64_t n = sr_u32(r);

	if (n > max || n > sr_left(r) / each) {
		sr_fail(r, "a count out of bounds");
		return 0;
	}
	return (size_t)n;
}

#define SR_REF 4					      /* bytes of a string reference */
#define SR_CERT_MIN (14 * SR_REF + 8 + 5 * 8 + 9 * 8 + 3 * 4) /* the smallest record */

static void sr_cert(struct snap_r *r, const struct state_arena *a, struct state_cert *c)
{
	uint32_t phase, attempts;
	size_t n;

#define SNAP_R(f, shared) c->f = sr_str(r);
	SNAP_CERT_STRINGS(SNAP_R)
#undef SNAP_R
	phase = sr_u32(r);
	attempts = sr_u32(r);
	if (phase >= PHASE__MAX || attempts > INT32_MAX)
		sr_fail(r, "a phase or attempt count out of range");
	c->phase = (enum cert_phase)phase;
	c->attempts = (int)attempts;
	c->next_try = (int64_t)sr_u64(r);
	c->not_before = (int64_t)sr_u64(r);
	c->not_after = (int64_t)sr_u64(r);
	c->last_error_time = (int64_t)sr_u64(r);
	c->last_success = (int64_t)sr_u64(r);
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		c->out_sig[i].size = (int64_t)sr_u64(r);
		c->out_sig[i].mtime_ns = (int64_t)sr_u64(r);
		c->out_sig[i].ino = (int64_t)sr_u64(r);
	}
	if (!c->name || !*c->name)
		sr_fail(r, "a record without a name");
	n = sr_count(r, 2 * SR_REF, SIZE_MAX);
	if (n) {
		/* malloc'd: state_cert_set_id reallocs it */
		c->ids = xmalloc(n * sizeof(*c->ids));
		for (size_t i = 0; i < n && !r->bad; i++) {
			c->ids[i].key = sr_str(r);
			c->ids[i].value = sr_str(r);
			c->n_ids = i + 1;
			/* state_kv_get searches them: sorted, unique, no NULL */
			if (!c->ids[i].key || !c->ids[i].value || (i && strcmp(c->ids[i - 1].key, c->ids[i].key) >= 0))
				sr_fail(r, "ids not sorted or with a NULL");
		}
	}
	n = sr_count(r, 5 * SR_REF + 8, STATE_MAX_TOKENS);
	if (n) {
		c->tokens = xcalloc(n, sizeof(*c->tokens));
		for (size_t i = 0; i < n && !r->bad; i++) {
			struct state_token *t = &c->tokens[i];

			/* tokens are rare and the setters realloc them: malloc'd copies */
			t->method = xstrdup(sr_str(r));
			t->name = xstrdup(sr_str(r));
			t->location = xstrdup(sr_str(r));
			t->ref = xstrdup(sr_str(r));
			t->issuer = xstrdup(sr_str(r));
			t->placed_at = (int64_t)sr_u64(r);
			c->n_tokens = i + 1;
			/* what the JSON decoder requires of a token */
			if (!t->method || !*t->method || !t->name || !*t->name || !t->location || !*t->location)
				sr_fail(r, "a token without its method, name or location");
		}
	}
	n = sr_count(r, 8 + SR_REF, STATE_HISTORY_MAX);
	if (n > a->n_events - r->events) {
		sr_fail(r, "more events than the header counts");
		return;
	}
	c->history = n ? a->events + r->events : NULL;
	r->events += n;
	for (size_t i = 0; i < n && !r->bad; i++) {
		c->history[i].time = (int64_t)sr_u64(r);
		c->history[i].what = sr_str(r);
		c->n_history = i + 1;
	}
}

static void sr_header(struct snap_r *r, struct state *st)
{
	size_t n;

	st->source_url = xstrdup(sr_str(r));
	st->source_ref = xstrdup(sr_str(r));
	st->source_commit = xstrdup(sr_str(r));
	n = sr_count(r, SR_REF + 4, SIZE_MAX);
	for (size_t i = 0; i < n && !r->bad; i++) {
		const char *issuer = sr_str(r);
		size_t n_kv = sr_count(r, 2 * SR_REF, SIZE_MAX);

		for (size_t k = 0; k < n_kv && !r->bad; k++) {
			const char *key = sr_str(r), *value = sr_str(r);

			if (!issuer || !key || !value)
				sr_fail(r, "an account entry with a NULL");
			else
				state_account_set(st, issuer, key, value);
		}
	}
	n = sr_count(r, SR_REF, STATE_WEBHOOK_IDS_MAX);
	for (size_t i = 0; i < n && !r->bad; i++) {
		const char *id = sr_str(r);

		if (!id || state_webhook_seen(st, id))
			sr_fail(r, "a NULL or repeated webhook id");
	}
}

/* Frees what a record that did not make it into the map malloc'd (its strings are the arena's). */
static void sr_cert_discard(struct state_cert *c)
{
	free(c->ids);
	for (size_t k = 0; k < c->n_tokens; k++) {
		struct state_token *t = &c->tokens[k];

		free(t->method);
		free(t->name);
		free(t->location);
		free(t->ref);
		free(t->issuer);
	}
	free(c->tokens);
}

/* The n records into st, which owns the arena a (records and strings) already. */
static int sr_state(struct snap_r *r, struct state *st, struct state_arena *a)
{
	size_t done = 0;

	sr_header(r, st);
	state_cert_reserve(st, a->n_certs);
	for (size_t i = 0; i < a->n_certs && !r->bad; i++) {
		struct state_cert *c = &a->certs[i];

		c->arena = a;
		done = i + 1;
		sr_cert(r, a, c);
		if (r->bad)
			break;
		if (state_cert_adopt_new(st, c)) {
			sr_fail(r, "a record twice");
			break;
		}
	}
	for (size_t i = 0; r->bad && i < done; i++) {
		if (!a->certs[i].name || state_cert_get(st, a->certs[i].name) != &a->certs[i])
			sr_cert_discard(&a->certs[i]);
	}
	if (!r->bad && sr_left(r))
		sr_fail(r, "bytes after the records");
	if (!r->bad && r->events != a->n_events)
		sr_fail(r, "fewer events than the header counts");
	return r->bad ? -1 : 0;
}

/* Reads exactly len bytes at off. */
static int snap_pread(int fd, void *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p = (char *)p + n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int snap_bad(const char *path, const char *what)
{
	return cs_error(CS_EINVALID, "%s: %s", path, what);
}

/* The fixed header: CS_EINVALID unless it is ours, for key, and its lengths add up to the file's size. */
static int snap_check_head(const char *path, const unsigned char *head, uint64_t size, struct state_snap_key *key,
			   uint64_t lens[SNAP_N_LENS])
{
	unsigned char keyb[SNAP_KEY_LEN];
	uint32_t version, bom;
	uint64_t total;

	memcpy(&version, head + 8, 4);
	memcpy(&bom, head + 12, 4);
	memcpy(&total, head + SNAP_HASHED_AT, 8);
	memcpy(lens, head + SNAP_HASHED_AT + 8 + SNAP_KEY_LEN, SNAP_N_LENS * sizeof(*lens));
	memcpy(&key->racy, head + SNAP_RACY_AT, 4);
	memcpy(&key->content_crc, head + SNAP_RACY_AT + 4, 4);
	snap_key_bytes(key, keyb);
	if (memcmp(head, SNAP_MAGIC, 8))
		return snap_bad(path, "not a certsync state snapshot");
	if (version != STATE_SNAP_VERSION || bom != SNAP_BOM)
		return snap_bad(path, "another snapshot format or byte order");
	if (memcmp(head + SNAP_HASHED_AT + 8, keyb, sizeof(keyb)) || key->serial > INT64_MAX)
		return snap_bad(path, "made from another state file (or another version of it)");
	if (total != size || total > SNAP_MAX_BYTES || lens[0] > total || lens[1] > total || lens[4] > total ||
	    SNAP_HEAD_LEN + lens[0] + lens[1] + lens[4] != total || !lens[1] || lens[1] > UINT32_MAX ||
	    lens[2] > lens[0] / SR_CERT_MIN || lens[3] > lens[2] * STATE_HISTORY_MAX ||
	    lens[3] > lens[0] / (8 + SR_REF))
		return snap_bad(path, "its lengths do not add up to its size");
	return 0;
}

/*
 * 1 when the string table is UTF-8 as strict as the JSON decoder's (a state
 * loaded from a snapshot holds nothing its JSON could not). ASCII is
 * skipped 8 bytes at a time.
 */
static int snap_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	while (p < end) {
		uint64_t v;
		size_t k;

		if (end - p >= 8) {
			memcpy(&v, p, 8);
			if (!(v & UINT64_C(0x8080808080808080))) {
				p += 8;
				continue;
			}
		}
		if (!(k = state_utf8_len(p, (size_t)(end - p))))
			return 0;
		p += k;
	}
	return 1;
}

/* The CRC-32C of everything the checksum covers, reading what the decoder left unread. */
static uint32_t sr_sum(struct snap_r *r, const struct buf *extra)
{
	uint32_t crc;

	while (r->unread && !r->io_error) {
		r->p = r->end; /* nothing more is decoded: only read */
		sr_refill(r);
	}
	crc = snap_crc_update(r->crc, r->strs, r->strs_len);
	if (extra->len)
		crc = snap_crc_update(crc, extra->data, extra->len);
	return ~crc;
}

/* The extra section (lens[4] bytes after the strings) into extra. */
static int snap_read_extra(int fd, const uint64_t lens[SNAP_N_LENS], struct buf *extra)
{
	buf_clear(extra);
	if (!lens[4])
		return 0;
	buf_reserve(extra, (size_t)lens[4]);
	if (snap_pread(fd, extra->data, (size_t)lens[4], (off_t)(SNAP_HEAD_LEN + lens[0] + lens[1])))
		return -1;
	extra->len = (size_t)lens[4];
	extra->data[extra->len] = '\0';
	return 0;
}

int state_snap_read(const char *path, struct state_snap_key *key, struct state **out)
{
	return state_snap_read_x(path, key, out, NULL);
}

int state_snap_read_x(const char *path, struct state_snap_key *key, struct state **out, struct buf *extra_out)
{
	unsigned char head[SNAP_HEAD_LEN];
	uint64_t lens[SNAP_N_LENS];
	struct buf extra = BUF_INIT;
	struct snap_r r;
	struct state_bigmem arena = {NULL, NULL, 0};
	struct state_arena *a;
	struct state *st = NULL;
	struct stat sb;
	size_t certs_len;
	uint32_t sum;
	int fd, rc = 0, decoded;

	memset(&r, 0, sizeof(r));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? CS_ENOTFOUND : cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) || (uint64_t)sb.st_size < SNAP_HEAD_LEN || snap_pread(fd, head, sizeof(head), 0)) {
		rc = snap_bad(path, "shorter than its header");
		goto out;
	}
	if ((rc = snap_check_head(path, head, (uint64_t)sb.st_size, key, lens)))
		goto out;
	/* the arena: the records, their histories, the strings (read whole: the records point into them) */
	certs_len = (size_t)lens[2] * sizeof(struct state_cert) + (size_t)lens[3] * sizeof(struct state_event);
	state_bigmem_alloc(&arena, certs_len + (size_t)lens[1]);
	r.strs = (char *)arena.p + certs_len;
	r.strs_len = (size_t)lens[1];
	if (snap_pread(fd, r.strs, r.strs_len, (off_t)(SNAP_HEAD_LEN + lens[0])) || snap_read_extra(fd, lens, &extra)) {
		rc = snap_bad(path, "cut short");
		goto out;
	}
	if (r.strs[0] || r.strs[r.strs_len - 1]) {
		rc = snap_bad(path, "a string table not starting and ending in NUL");
		goto out;
	}
	if (!snap_utf8(r.strs, r.strs_len)) {
		rc = snap_bad(path, "a string that is not UTF-8");
		goto out;
	}
	r.fd = fd;
	r.next = SNAP_HEAD_LEN;
	r.unread = lens[0];
	r.cap = lens[0] < SNAP_WINDOW ? (size_t)lens[0] + 8 : SNAP_WINDOW;
	r.buf = xmalloc(r.cap);
	r.p = r.end = r.buf;
	r.crc = snap_crc_update(0xffffffffu, head + SNAP_HASHED_AT, SNAP_HEAD_LEN - SNAP_HASHED_AT);
	st = state_alloc();
	st->serial = key->serial;
	memcpy(st->lineage, key->lineage, sizeof(st->lineage));
	a = xcalloc(1, sizeof(*a));
	a->certs = arena.p;
	a->n_certs = (size_t)lens[2];
	a->events = (struct state_event *)(a->certs + a->n_certs);
	a->n_events = (size_t)lens[3];
	a->strs = r.strs;
	a->strs_len = r.strs_len;
	a->block = arena.map ? NULL : arena.p;
	a->map = arena.map;
	a->map_len = arena.map_len;
	state_set_arena(st, a); /* from here on state_free frees the arena, records and strings */
	memset(&arena, 0, sizeof(arena));
	decoded = sr_state(&r, st, a) == 0;
	memcpy(&sum, head + SNAP_SUM_AT, 4);
	/* a damaged file is named as such, whatever the decoder tripped on first */
	if (r.io_error)
		rc = snap_bad(path, "cut short");
	else if (sum != sr_sum(&r, &extra))
		rc = snap_bad(path, "checksum mismatch");
	else if (!decoded)
		rc = snap_bad(path, r.bad);
	if (rc)
		goto out;
	*out = st;
	st = NULL;
	if (extra_out) {
		buf_free(extra_out);
		*extra_out = extra;
		memset(&extra, 0, sizeof(extra));
	}
out:
	buf_free(&extra);
	state_free(st);
	state_bigmem_free(&arena);
	free(r.buf);
	close(fd);
	return rc;
}
