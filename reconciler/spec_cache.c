/* The parse cache, in memory and on disk (spec_cache.h). */
#include "spec_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"
#include "source/gitsrc.h"

/* ---------- in memory ---------- */

struct spec_cache *spec_cache_new(void)
{
	struct spec_cache *c = xcalloc(1, sizeof(*c));

	c->cap = 64;
	c->v = xcalloc(c->cap, sizeof(*c->v));
	return c;
}

void spec_cache_entry_clear(struct cache_entry *e)
{
	for (size_t i = 0; i < e->n; i++)
		cert_spec_free(e->specs[i]);
	free(e->specs);
	free(e->path);
	diags_free(&e->diags);
	memset(e, 0, sizeof(*e));
}

void spec_cache_free(struct spec_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].oid[0])
			spec_cache_entry_clear(&c->v[i]);
	free(c->v);
	free(c);
}

/*
 * The blob id alone places an entry: ids are uniform, so its first 16 hex
 * digits are the hash (hashing 10,000 paths was a tenth of a cold load).
 * The same blob at two paths (rare) probes on.
 */
static size_t cache_hash(const char *oid)
{
	uint64_t h = 0;

	for (int i = 0; i < 16 && oid[i]; i++)
		h = h << 4 | (uint64_t)(oid[i] <= '9' ? oid[i] - '0' : (oid[i] | 0x20) - 'a' + 10);
	return (size_t)(h ^ h >> 29);
}

static struct cache_entry *cache_find(struct spec_cache *c, const char *oid, const char *path)
{
	size_t h = cache_hash(oid) & (c->cap - 1);

	while (c->v[h].oid[0] && (strcmp(c->v[h].oid, oid) || strcmp(c->v[h].path, path)))
		h = (h + 1) & (c->cap - 1);
	return &c->v[h];
}

/* Rebuilds the table at cap. */
static void cache_rehash(struct spec_cache *c, size_t cap)
{
	struct cache_entry *old = c->v;
	size_t oldcap = c->cap;

	c->cap = cap;
	c->v = xcalloc(c->cap, sizeof(*c->v));
	c->n = 0;
	for (size_t i = 0; i < oldcap; i++) {
		if (!old[i].oid[0])
			continue;
		*cache_find(c, old[i].oid, old[i].path) = old[i];
		c->n++;
	}
	free(old);
}

void spec_cache_reserve(struct spec_cache *c, size_t n)
{
	size_t cap = c->cap;

	while ((c->n + n + 1) * 2 > cap)
		cap *= 2;
	if (cap != c->cap)
		cache_rehash(c, cap);
}

struct cache_entry *spec_cache_slot(struct spec_cache *c, const char *oid, const char *path)
{
	spec_cache_reserve(c, 1);
	return cache_find(c, oid, path);
}

/*
 * Clears slot i and shifts back the entries of its probe chain that may
 * move (linear probing's deletion): no rebuild of the table, so a pass that
 * drops one blob touches a few slots, not every page of it.
 */
static void cache_delete_at(struct spec_cache *c, size_t i)
{
	size_t mask = c->cap - 1, j = i;

	c->disk_dropped += c->v[i].on_disk != 0;
	spec_cache_entry_clear(&c->v[i]);
	c->n--;
	c->dirty = 1;
	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (!c->v[j].oid[0])
			return;
		home = cache_hash(c->v[j].oid) & mask;
		/* entry j stays when its home lies cyclically in (i, j] */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		c->v[i] = c->v[j];
		memset(&c->v[j], 0, sizeof(c->v[j]));
		i = j;
	}
}

void spec_cache_remove(struct spec_cache *c, const char *oid, const char *path)
{
	struct cache_entry *e;

	if (!c->cap)
		return;
	e = cache_find(c, oid, path);
	if (e->oid[0])
		cache_delete_at(c, (size_t)(e - c->v));
}

void spec_cache_evict_unused(struct spec_cache *c)
{
	/* A slot is looked at again after a deletion: an entry of its chain may have moved into it. */
	for (size_t i = 0; i < c->cap;)
		if (c->v[i].oid[0] && !c->v[i].used)
			cache_delete_at(c, i);
		else
			i++;
	for (size_t i = 0; i < c->cap; i++)
		c->v[i].used = 0;
}

/* ---------- on disk ---------- */

/*
 * header: magic, format version, byte order, the writer's build id, body
 * length, SHA-256 of the body. body: u32 count, then per entry: oid (40
 * hex), path, u64 blob size, u32 diagnostics {i32 line, i32 col, msg},
 * u32 specs {u32 length, cert_spec_pack bytes}. Strings are u32 length +
 * bytes. Segments follow the body: magic, body length, SHA-256 of the
 * body, then a body of the same form (entries added by a later load).
 */
#define SC_MAGIC "CSPARSE1"
#define SC_SEG_MAGIC "CSPSEG01"
#define SC_VERSION 2u
#define SC_ORDER 0x01020304u
#define SC_BUILD 132
#define SC_MAX_PATH 4096
#define SC_MAX_MSG 65536
#define SC_MAX_ITEMS 100000
#define SC_MIN_ENTRY (40 + 4 + 8 + 4 + 4) /* oid, empty path, size, no diagnostics, no specs */
#define SC_MIN_DIAG (2 * 4 + 4)
#define SC_MIN_SPEC 4

struct sc_header {
	char magic[8];
	uint32_t version, order;
	char build[SC_BUILD];
	uint64_t body_len;
	unsigned char sha256[32];
};

struct sc_segment {
	char magic[8];
	uint64_t body_len;
	unsigned char sha256[32];
};

static void sc_u32(struct buf *b, uint32_t v)
{
	buf_append(b, &v, sizeof(v));
}

static void sc_str(struct buf *b, const char *s)
{
	sc_u32(b, (uint32_t)strlen(s));
	buf_puts(b, s);
}

static void sc_entry(struct buf *b, const struct cache_entry *e, struct buf *tmp)
{
	uint64_t size = e->size;

	buf_append(b, e->oid, 40);
	sc_str(b, e->path);
	buf_append(b, &size, sizeof(size));
	sc_u32(b, (uint32_t)e->diags.n);
	for (size_t k = 0; k < e->diags.n; k++) {
		int32_t lc[2] = {e->diags.v[k].line, e->diags.v[k].col};

		buf_append(b, lc, sizeof(lc));
		sc_str(b, e->diags.v[k].msg);
	}
	sc_u32(b, (uint32_t)e->n);
	for (size_t k = 0; k < e->n; k++) {
		buf_clear(tmp);
		cert_spec_pack(e->specs[k], tmp);
		sc_u32(b, (uint32_t)tmp->len);
		buf_append(b, tmp->data, tmp->len);
	}
}

static int sc_header_for(struct sc_header *h)
{
	const char *id = util_build_id();

	memset(h, 0, sizeof(*h));
	if (!id)
		return -1; /* no build id: nothing tells this build's cache from another's */
	memcpy(h->magic, SC_MAGIC, sizeof(h->magic));
	h->version = SC_VERSION;
	h->order = SC_ORDER;
	snprintf(h->build, sizeof(h->build), "%s", id);
	return 0;
}

/* Appends to b a body: u32 count, then the entries (only those not on disk when fresh_only). Returns the count. */
static uint32_t sc_body(struct spec_cache *c, struct buf *b, int fresh_only)
{
	struct buf tmp = BUF_INIT;
	size_t at = b->len;
	uint32_t count = 0;

	sc_u32(b, 0);
	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].oid[0] && !(fresh_only && c->v[i].on_disk)) {
			sc_entry(b, &c->v[i], &tmp);
			count++;
		}
	memcpy(b->data + at, &count, sizeof(count));
	buf_free(&tmp);
	return count;
}

static void sc_mark_on_disk(struct spec_cache *c)
{
	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].oid[0])
			c->v[i].on_disk = 1;
}

/*
 * Appends the entries not on disk as one segment to the file that was read:
 * 0 when done (or nothing to add), -1 when the file must be written whole
 * (replaced or cut since it was read, segments past a quarter of it, or the
 * append failed: a partial segment fails its checksum and ends the next read).
 */
static int sc_append(struct spec_cache *c, const char *path)
{
	struct sc_segment sg;
	struct buf b = BUF_INIT;
	struct stat st;
	int fd = -1, rc = -1;

	memset(&sg, 0, sizeof(sg));
	buf_append(&b, &sg, sizeof(sg));
	if (!sc_body(c, &b, 1)) {
		rc = 0; /* only evictions: the file keeps those entries until it is written whole */
		goto out;
	}
	if ((c->disk_len - c->disk_base + b.len) * 4 > c->disk_base)
		goto out;
	memcpy(sg.magic, SC_SEG_MAGIC, sizeof(sg.magic));
	sg.body_len = b.len - sizeof(sg);
	crypto_sha256(b.data + sizeof(sg), sg.body_len, sg.sha256);
	memcpy(b.data, &sg, sizeof(sg));
	if ((fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)) < 0 || fstat(fd, &st) ||
	    st.st_dev != c->disk_dev || st.st_ino != c->disk_ino || (size_t)st.st_size < c->disk_len)
		goto out;
	if (fsutil_write_all(fd, b.data, b.len)) {
		log_debug("parse cache %s: append: %s", path, strerror(errno));
		goto out;
	}
	c->disk_len = (size_t)st.st_size + b.len;
	sc_mark_on_disk(c);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	buf_free(&b);
	return rc;
}

void spec_cache_write(struct spec_cache *c, const char *path)
{
	struct sc_header h;
	struct buf b = BUF_INIT;
	char *dir;

	if (!c->dirty || sc_header_for(&h))
		return;
	if (c->disk_ok && c->disk_dropped * 4 <= c->disk_n && !sc_append(c, path)) {
		c->dirty = 0;
		return;
	}
	c->disk_ok = 0;
	buf_append(&b, &h, sizeof(h));
	sc_body(c, &b, 0);
	h.body_len = b.len - sizeof(h);
	crypto_sha256(b.data + sizeof(h), h.body_len, h.sha256);
	memcpy(b.data, &h, sizeof(h));
	dir = fsutil_dirname(path);
	if (fsutil_mkdir_p(dir, 0700) || fsutil_write_cache(path, b.data, b.len, 0600)) {
		log_debug("parse cache %s not written: %s", path, cs_errmsg());
	} else {
		sc_mark_on_disk(c);
		c->dirty = 0;
	}
	free(dir);
	buf_free(&b);
}

struct sc_reader {
	const unsigned char *p, *end;
	int bad;
};

static const void *sc_take(struct sc_reader *r, size_t n)
{
	const void *p = r->p;

	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return NULL;
	}
	r->p += n;
	return p;
}

static uint32_t sc_get_u32(struct sc_reader *r, uint32_t max)
{
	const void *p = sc_take(r, sizeof(uint32_t));
	uint32_t v = 0;

	if (p)
		memcpy(&v, p, sizeof(v));
	if (v > max)
		r->bad = 1;
	return r->bad ? 0 : v;
}

/*
 * A count of items of at least item bytes each, at most max: one the rest of
 * the body cannot hold is damage, refused before room is made for it.
 */
static uint32_t sc_get_count(struct sc_reader *r, uint32_t max, size_t item)
{
	uint32_t n = sc_get_u32(r, max);

	if (n > (size_t)(r->end - r->p) / item)
		r->bad = 1;
	return r->bad ? 0 : n;
}

/* A string of at most max bytes and no NUL inside (the caller frees it), or NULL (r->bad) when bad. */
static char *sc_get_str(struct sc_reader *r, uint32_t max)
{
	uint32_t n = sc_get_u32(r, max);
	const char *p = sc_take(r, n);

	if (!p || memchr(p, '\0', n)) {
		r->bad = 1;
		return NULL;
	}
	return xstrndup(p, n);
}

/* One entry into e (cleared by the caller when r->bad). */
static void sc_read_entry(struct sc_reader *r, struct cache_entry *e)
{
	const char *oid = sc_take(r, 40);
	const void *p;
	uint64_t size = 0;
	uint32_t n;

	if (!oid)
		return;
	memcpy(e->oid, oid, 40); /* checked once terminated: the hex may run on to the end of the file */
	e->oid[40] = '\0';
	if (strspn(e->oid, "0123456789abcdef") < 40) {
		r->bad = 1;
		return;
	}
	if (!(e->path = sc_get_str(r, SC_MAX_PATH)) || !(p = sc_take(r, sizeof(size))))
		return;
	memcpy(&size, p, sizeof(size));
	e->size = (size_t)size;
	n = sc_get_count(r, SC_MAX_ITEMS, SC_MIN_DIAG);
	for (uint32_t k = 0; k < n && !r->bad; k++) {
		const void *lcp = sc_take(r, 2 * sizeof(int32_t));
		int32_t lc[2] = {0, 0};
		char *msg;

		if (lcp)
			memcpy(lc, lcp, sizeof(lc));
		if (lc[0] < 0 || lc[1] < 0)
			r->bad = 1;
		if ((msg = sc_get_str(r, SC_MAX_MSG)))
			diags_add(&e->diags, e->path, lc[0], lc[1], "%s", msg);
		free(msg);
	}
	n = sc_get_count(r, SC_MAX_ITEMS, SC_MIN_SPEC);
	e->specs = xcalloc(n + 1, sizeof(*e->specs));
	for (uint32_t k = 0; k < n && !r->bad; k++) {
		uint32_t len = sc_get_u32(r, MANIFEST_MAX_FILE_BYTES);
		const void *sp = sc_take(r, len);

		/* counted once unpacked, so the entry's clear frees a spec that names another file too */
		if (!sp || !(e->specs[e->n] = cert_spec_unpack(sp, len)) || strcmp(e->specs[e->n++]->file, e->path))
			r->bad = 1;
	}
}

/* Checks the header; the reason it is refused, or NULL. */
static const char *sc_check_header(const struct fsutil_map *b, struct sc_header *h)
{
	struct sc_header want;
	unsigned char sum[32];

	if (b->len < sizeof(*h))
		return "shorter than its header";
	memcpy(h, b->data, sizeof(*h));
	if (sc_header_for(&want))
		return "this build has no build id";
	if (memcmp(h->magic, want.magic, sizeof(h->magic)) || h->version != want.version || h->order != want.order)
		return "not a parse cache of this version";
	if (memcmp(h->build, want.build, sizeof(h->build)))
		return "written by another build";
	if (h->body_len > b->len - sizeof(*h))
		return "truncated";
	crypto_sha256(b->data + sizeof(*h), (size_t)h->body_len, sum);
	if (memcmp(sum, h->sha256, sizeof(sum)))
		return "checksum mismatch";
	return NULL;
}

/*
 * Reads one body (u32 count, then entries) up to r->end into c. A key read
 * before is damage in the first body (its writer never does that), and is
 * skipped in a segment: two processes may append the same new blob.
 */
static void sc_read_body(struct spec_cache *c, struct sc_reader *r, int segment, size_t *added)
{
	uint32_t count = sc_get_count(r, GITSRC_MAX_FILES, SC_MIN_ENTRY);

	spec_cache_reserve(c, count);
	for (uint32_t i = 0; i < count && !r->bad; i++) {
		struct cache_entry e, *slot;

		memset(&e, 0, sizeof(e));
		sc_read_entry(r, &e);
		if (!r->bad && !(slot = spec_cache_slot(c, e.oid, e.path))->oid[0]) {
			e.on_disk = 1;
			*slot = e;
			c->n++;
			(*added)++;
			continue;
		}
		if (!segment)
			r->bad = 1;
		spec_cache_entry_clear(&e);
	}
	if (r->p != r->end)
		r->bad = 1;
}

/*
 * One segment from r->p (the file ends at end): 0 when read, 1 when it is
 * torn (short, or its checksum fails: a crash or a failed append; the read
 * stops there), r->bad when its checksum holds but its entries do not.
 */
static int sc_read_segment(struct spec_cache *c, struct sc_reader *r, const unsigned char *end, size_t *added)
{
	size_t left = (size_t)(end - r->p);
	struct sc_segment sg;
	unsigned char sum[32];

	if (left < sizeof(sg))
		return 1;
	memcpy(&sg, r->p, sizeof(sg));
	if (memcmp(sg.magic, SC_SEG_MAGIC, sizeof(sg.magic)) || sg.body_len > left - sizeof(sg))
		return 1;
	crypto_sha256(r->p + sizeof(sg), (size_t)sg.body_len, sum);
	if (memcmp(sum, sg.sha256, sizeof(sum)))
		return 1;
	r->p += sizeof(sg);
	r->end = r->p + sg.body_len;
	sc_read_body(c, r, 1, added);
	r->end = end;
	return 0;
}

size_t spec_cache_read(struct spec_cache *c, const char *path)
{
	struct fsutil_map b;
	struct sc_header h;
	struct sc_reader r;
	const unsigned char *end;
	const char *why = NULL;
	size_t added = 0;
	int rc, torn = 0;

	if ((rc = fsutil_map_file(path, SPEC_CACHE_MAX_BYTES, &b))) {
		if (rc != CS_ENOTFOUND)
			log_debug("parse cache %s ignored: %s", path, cs_errmsg());
		c->dirty = 1;
		c->disk_ok = 0; /* no file to append to: the next write is a whole one */
		return 0;
	}
	if ((why = sc_check_header(&b, &h)))
		goto out;
	end = (const unsigned char *)b.data + b.len;
	r.p = (const unsigned char *)b.data + sizeof(h);
	r.end = r.p + h.body_len;
	r.bad = 0;
	sc_read_body(c, &r, 0, &added);
	while (!r.bad && r.p < end && !torn)
		if ((torn = sc_read_segment(c, &r, end, &added)))
			log_debug("parse cache %s: the segment at byte %zu is torn and ignored; the file is written "
				  "whole next",
				  path, (size_t)(r.p - (const unsigned char *)b.data));
	if (r.bad)
		why = "damaged entries";
out:
	if (why) {
		/* Nothing from a refused file is kept: drop what was added before the damage was seen. */
		log_debug("parse cache %s ignored (%s); it is rebuilt", path, why);
		for (size_t i = 0; i < c->cap; i++)
			if (c->v[i].oid[0])
				spec_cache_entry_clear(&c->v[i]);
		c->n = 0;
		added = 0;
	}
	c->dirty = why != NULL || torn;
	c->disk_ok = !c->dirty;
	c->disk_dev = b.dev;
	c->disk_ino = b.ino;
	c->disk_base = why ? 0 : sizeof(h) + (size_t)h.body_len;
	c->disk_len = b.len;
	c->disk_n = added;
	c->disk_dropped = 0;
	fsutil_unmap(&b);
	return added;
}
