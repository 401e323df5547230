/*
 * The parse cache file (manifests.cache, reconciler/spec_cache.c), past its
 * checksums: the input is a cache file whose magic, version, byte order,
 * build id, base body length and SHA-256 the harness makes right, and each
 * segment's SHA-256 where its magic and length frame it, so every count,
 * length and key in the bodies reaches the entry reader. Checks:
 * - the bookkeeping: disk_base <= disk_len <= the file's size, disk_n is
 *   what was added, nothing dropped yet; a refused file leaves the cache
 *   empty and dirty; a file whose every segment is framed right is not torn;
 * - every entry it accepts is within bounds (hex id, path, diagnostics,
 *   specs that name its path), and each spec packs into bytes that
 *   cert_spec_unpack accepts and that pack the same again;
 * - a load after the read that used some of the entries and parsed one new
 *   blob: an append (only while the unused entries and the segments stay
 *   within a quarter) leaves a file that reads back with every entry read
 *   and the new one; a whole write, with the entries kept; and what that
 *   read gives, written whole, reads back the same (keys, sizes, specs,
 *   diagnostics).
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../manifests/manifest.h"
#include "../reconciler/reconcile.h"
#include "../reconciler/spec_cache.h"
#include "../util/buf.h"
#include "../util/crypto.h"
#include "../util/fsutil.h"
#include "../util/util.h"
#include "fuzz.h"

/* The layout (reconciler/spec_cache.c: struct sc_header, struct sc_segment); checked once against a real file. */
#define H_BUILD 16
#define H_BODY_LEN 152
#define H_SUM 160
#define H_LEN 192
#define S_BODY_LEN 8
#define S_SUM 16
#define S_LEN 48
#define MAX_INPUT (1u << 20)

static char dir[64], in_path[96], out_path[96];

static void cleanup(void)
{
	unlink(in_path);
	unlink(out_path);
	rmdir(dir);
}

static void put_file(const char *path, const void *data, size_t len)
{
	int fd;

	unlink(path); /* a new inode each time: no stale dev/ino match */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(fsutil_write_all(fd, data, len) == 0);
	close(fd);
}

static size_t file_size(const char *path)
{
	struct stat st;

	FUZZ_CHECK(stat(path, &st) == 0);
	return (size_t)st.st_size;
}

/* The header this build writes (an empty cache, written whole), and a check that the offsets above are right. */
static unsigned char header[H_LEN];

static void setup(void)
{
	struct spec_cache *c;
	struct buf b = BUF_INIT;
	uint64_t body_len;
	uint32_t count;

	FUZZ_CHECK(util_build_id() != NULL); /* without one the cache is never written */
	snprintf(dir, sizeof(dir), "%s/fuzz-spec-cache.XXXXXX", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm");
	FUZZ_CHECK(mkdtemp(dir) != NULL);
	snprintf(in_path, sizeof(in_path), "%s/in.cache", dir);
	snprintf(out_path, sizeof(out_path), "%s/out.cache", dir);
	atexit(cleanup);
	c = spec_cache_new();
	c->dirty = 1;
	spec_cache_write(c, out_path);
	spec_cache_free(c);
	FUZZ_CHECK(fsutil_read_file(out_path, MAX_INPUT, &b) == 0);
	FUZZ_CHECK(b.len == H_LEN + 4);
	memcpy(&body_len, b.data + H_BODY_LEN, 8);
	memcpy(&count, b.data + H_LEN, 4);
	FUZZ_CHECK(body_len == 4 && count == 0);
	FUZZ_CHECK(!memcmp(b.data + H_BUILD, util_build_id(), strlen(util_build_id())));
	memcpy(header, b.data, H_LEN);
	buf_free(&b);
}

/*
 * The input made into a file this build reads past its checksums: the header
 * is this build's, the base body is the input's (its length as the input
 * says, at most what there is), and each segment that follows, while its magic
 * and length frame it, gets its SHA-256. Returns the image (its length in
 * *len); *framed is 1 when every byte after the base is in such a segment.
 */
static unsigned char *make_image(const uint8_t *data, size_t size, size_t *len, int *framed)
{
	size_t n = size < H_LEN ? H_LEN : size, at;
	unsigned char *img = calloc(1, n);
	uint64_t body_len;

	FUZZ_CHECK(img != NULL);
	memcpy(img, data, size);
	memcpy(&body_len, img + H_BODY_LEN, 8);
	/* everything but the length and checksum: magic, version, order, padding, build id */
	memcpy(img, header, H_BODY_LEN);
	if (body_len > n - H_LEN)
		body_len = n - H_LEN;
	memcpy(img + H_BODY_LEN, &body_len, 8);
	crypto_sha256(img + H_LEN, (size_t)body_len, img + H_SUM);
	at = H_LEN + (size_t)body_len;
	while (n - at >= S_LEN && !memcmp(img + at, "CSPSEG01", 8)) {
		memcpy(&body_len, img + at + S_BODY_LEN, 8);
		if (body_len > n - at - S_LEN)
			break;
		crypto_sha256(img + at + S_LEN, (size_t)body_len, img + at + S_SUM);
		at += S_LEN + (size_t)body_len;
	}
	*framed = at == n;
	*len = n;
	return img;
}

static void check_entry(const struct cache_entry *e)
{
	struct buf a = BUF_INIT, b = BUF_INIT;

	FUZZ_CHECK(strlen(e->oid) == 40 && strspn(e->oid, "0123456789abcdef") == 40);
	FUZZ_CHECK(e->path != NULL && strlen(e->path) <= 4096);
	FUZZ_CHECK(e->on_disk && !e->used);
	FUZZ_CHECK(e->n <= 100000 && (e->n == 0 || e->specs != NULL));
	FUZZ_CHECK(e->diags.n <= 100000 && e->diags.n <= e->diags.cap);
	for (size_t k = 0; k < e->diags.n; k++) {
		const struct diag *g = &e->diags.v[k];

		FUZZ_CHECK(g->file && !strcmp(g->file, e->path));
		FUZZ_CHECK(g->line >= 0 && g->col >= 0);
		FUZZ_CHECK(g->msg && strlen(g->msg) <= 65536);
	}
	for (size_t k = 0; k < e->n; k++) {
		struct cert_spec *u;

		FUZZ_CHECK(e->specs[k] && e->specs[k]->file && !strcmp(e->specs[k]->file, e->path));
		buf_clear(&a);
		buf_clear(&b);
		cert_spec_pack(e->specs[k], &a);
		u = cert_spec_unpack(a.data, a.len);
		FUZZ_CHECK(u != NULL);
		cert_spec_pack(u, &b);
		FUZZ_CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
		cert_spec_free(u);
	}
	buf_free(&a);
	buf_free(&b);
}

static size_t check_entries(const struct spec_cache *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].oid[0]) {
			check_entry(&c->v[i]);
			n++;
		}
	FUZZ_CHECK(n == c->n);
	return n;
}

/* The entry of c's key in d holds the same: blob size, specs (packed bytes), diagnostics. */
static void check_same(const struct cache_entry *e, struct spec_cache *d)
{
	const struct cache_entry *f = spec_cache_slot(d, e->oid, e->path);
	struct buf a = BUF_INIT, b = BUF_INIT;

	FUZZ_CHECK(f->oid[0] && f->size == e->size && f->n == e->n && f->diags.n == e->diags.n);
	for (size_t k = 0; k < e->n; k++) {
		buf_clear(&a);
		buf_clear(&b);
		cert_spec_pack(e->specs[k], &a);
		cert_spec_pack(f->specs[k], &b);
		FUZZ_CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
	}
	for (size_t k = 0; k < e->diags.n; k++) {
		const struct diag *x = &e->diags.v[k], *y = &f->diags.v[k];

		FUZZ_CHECK(x->line == y->line && x->col == y->col && !strcmp(x->msg, y->msg));
	}
	buf_free(&a);
	buf_free(&b);
}

/* Every entry of c is in d, the same. */
static void check_contains(struct spec_cache *c, struct spec_cache *d)
{
	FUZZ_CHECK(d->n >= c->n);
	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].oid[0])
			check_same(&c->v[i], d);
}

/* Marks c's entries used but those the selector picks (about a quarter, more or fewer), and evicts the rest. */
static void evict_some(struct spec_cache *c, unsigned sel)
{
	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].oid[0])
			c->v[i].used = ((unsigned)c->v[i].oid[39] + sel) % 4 != 0 || (sel & 0x80);
	spec_cache_evict_unused(c);
}

static ino_t inode_of(const char *path)
{
	struct stat st;

	FUZZ_CHECK(stat(path, &st) == 0);
	return st.st_ino;
}

/* Adds a new entry (a key c does not hold) as a load that parsed its blob does. */
static void add_new(struct spec_cache *c)
{
	static const char text[] = "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: fuzz-new}\n"
				   "spec: {issuer: internal, dnsNames: [new.example.com]}\n";
	char oid[41] = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f000";
	struct cache_entry *e;

	for (unsigned i = 0; (e = spec_cache_slot(c, oid, "fuzz/new.yaml"))->oid[0]; i++)
		snprintf(oid + 32, 9, "%08x", i);
	memcpy(e->oid, oid, sizeof(oid));
	e->path = xstrdup("fuzz/new.yaml");
	e->size = sizeof(text) - 1;
	manifest_parse_file(e->path, text, e->size, &e->specs, &e->n, &e->diags);
	FUZZ_CHECK(e->n == 1 && e->diags.n == 0);
	c->n++;
	c->dirty = 1;
}

static struct spec_cache *read_back(const char *path, size_t want)
{
	struct spec_cache *d = spec_cache_new();

	FUZZ_CHECK(spec_cache_read(d, path) == want);
	FUZZ_CHECK(!d->dirty && d->disk_ok && d->disk_n == want && d->disk_len == file_size(path));
	check_entries(d);
	return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct spec_cache *c, *d, *e, *orig;
	unsigned char *img;
	ino_t ino;
	size_t len, n;
	uint64_t base_len;
	int framed;

	if (size > MAX_INPUT)
		return 0;
	if (!ready) {
		setup();
		ready = 1;
	}
	img = make_image(data, size, &len, &framed);
	memcpy(&base_len, img + H_BODY_LEN, 8);
	put_file(in_path, img, len);
	free(img);

	c = spec_cache_new();
	n = spec_cache_read(c, in_path);
	FUZZ_CHECK(n == c->n && check_entries(c) == n);
	FUZZ_CHECK(c->disk_n == n && c->disk_dropped == 0);
	FUZZ_CHECK(c->disk_base <= c->disk_len && c->disk_len == len);
	FUZZ_CHECK(c->disk_ok == !c->dirty);
	if (c->disk_base == 0) /* refused: nothing from it is kept, and it is written again */
		FUZZ_CHECK(n == 0 && c->dirty);
	else
		FUZZ_CHECK(c->disk_base == H_LEN + base_len &&
			   c->dirty == !framed); /* torn where the framing is not right */

	/*
	 * A load that used some of the entries and parsed one new blob: appended
	 * to the file read (which keeps the unused ones) or written whole
	 * (without them); either way it reads back with what the load holds.
	 */
	orig = spec_cache_new();
	FUZZ_CHECK(spec_cache_read(orig, in_path) == n);
	evict_some(c, size ? data[size - 1] : 0);
	FUZZ_CHECK(c->disk_dropped == n - c->n && c->disk_dropped <= c->disk_n);
	add_new(c);
	ino = inode_of(in_path);
	spec_cache_write(c, in_path);
	FUZZ_CHECK(!c->dirty);
	if (inode_of(in_path) == ino) { /* appended: to a whole file, within the quarters */
		FUZZ_CHECK(c->disk_ok && c->disk_len == file_size(in_path) && c->disk_base < c->disk_len);
		FUZZ_CHECK(c->disk_dropped * 4 <= c->disk_n);
		e = read_back(in_path, n + 1);
		check_contains(orig, e);
	} else {
		e = read_back(in_path, c->n);
		FUZZ_CHECK(e->disk_base == e->disk_len);
	}
	check_contains(c, e);
	spec_cache_free(orig);
	spec_cache_free(c);

	/* what was read, written whole elsewhere, reads back the same */
	n = e->n;
	e->dirty = 1;
	e->disk_ok = 0;
	spec_cache_write(e, out_path);
	FUZZ_CHECK(!e->dirty);
	d = read_back(out_path, n);
	FUZZ_CHECK(d->disk_base == d->disk_len);
	check_contains(e, d);
	spec_cache_free(d);
	spec_cache_free(e);
	return 0;
}
