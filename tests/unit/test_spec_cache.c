/*
 * The parse cache: cert_spec_pack/unpack round trips every field and
 * refuses every damaged record; the cache file is read back whole, and a
 * file that is truncated, flipped, of another version or from another build
 * is ignored (nothing from it is kept) and marked for rewriting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../manifests/manifest.h"
#include "../../reconciler/spec_cache.h"
#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

static const char every_field[] = "apiVersion: certsync/v1\n"
				  "kind: Certificate\n"
				  "metadata:\n"
				  "  name: web\n"
				  "  labels: {team: a, app: b}\n"
				  "spec:\n"
				  "  issuer: internal\n"
				  "  commonName: www.example.com\n"
				  "  dnsNames: [www.example.com, Api.Example.com., \"*.x.example.com\"]\n"
				  "  ipAddresses: [192.0.2.1, \"2001:db8::1\"]\n"
				  "  uris: [\"spiffe://example.com/web\"]\n"
				  "  emailAddresses: [ops@Example.com]\n"
				  "  subject: {organizations: [Example], countries: [FR], localities: [Paris]}\n"
				  "  usages: [digital signature, server auth, client auth]\n"
				  "  isCA: true\n"
				  "  domain: example.com\n"
				  "  validation: {method: dns-txt-token}\n"
				  "  duration: 90d\n"
				  "  renewBefore: 720h\n"
				  "  suspend: true\n"
				  "  privateKey: {algorithm: ECDSA, size: 384, rotationPolicy: Always}\n"
				  "  output: {directory: web/www, formats: [combined.pem, tls.der]}\n"
				  "---\n"
				  "apiVersion: certsync/v1\n"
				  "kind: Certificate\n"
				  "metadata: {name: plain}\n"
				  "spec: {issuer: internal, dnsNames: [plain.example.com]}\n";

static struct cert_spec **parse(const char *path, const char *text, size_t *n, struct diags *d)
{
	struct cert_spec **v = NULL;

	manifest_parse_file(path, text, strlen(text), &v, n, d);
	return v;
}

static void free_specs(struct cert_spec **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cert_spec_free(v[i]);
	free(v);
}

static void assert_str_eq(const char *a, const char *b)
{
	if (!a || !b)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void assert_strs_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++)
		assert_string_equal(a[i], b[i]);
}

/* Every field of struct cert_spec, one by one (a field the packer forgot fails here). */
static void assert_spec_equal(const struct cert_spec *a, const struct cert_spec *b)
{
	assert_str_eq(a->name, b->name);
	assert_str_eq(a->file, b->file);
	assert_int_equal(a->line, b->line);
	assert_int_equal(a->col, b->col);
	assert_int_equal(a->n_labels, b->n_labels);
	for (size_t i = 0; i < a->n_labels; i++) {
		assert_string_equal(a->labels[i].key, b->labels[i].key);
		assert_string_equal(a->labels[i].value, b->labels[i].value);
	}
	assert_str_eq(a->issuer, b->issuer);
	assert_int_equal(a->issuer_line, b->issuer_line);
	assert_int_equal(a->issuer_col, b->issuer_col);
	assert_str_eq(a->common_name, b->common_name);
	assert_int_equal(a->common_name_set, b->common_name_set);
	assert_strs_eq(a->dns_names, a->n_dns, b->dns_names, b->n_dns);
	assert_str_eq(a->domain, b->domain);
	assert_int_equal(a->auto_renew, b->auto_renew);
	assert_int_equal(a->auto_renew_set, b->auto_renew_set);
	assert_int_equal(a->suspend, b->suspend);
	assert_int_equal(a->duration, b->duration);
	assert_int_equal(a->renew_before, b->renew_before);
	assert_int_equal(a->key_alg, b->key_alg);
	assert_int_equal(a->key_size, b->key_size);
	assert_int_equal(a->rotation, b->rotation);
	assert_str_eq(a->validation, b->validation);
	assert_str_eq(a->output_dir, b->output_dir);
	assert_int_equal(a->output_line, b->output_line);
	assert_int_equal(a->output_col, b->output_col);
	assert_int_equal(a->formats, b->formats);
	assert_int_equal(a->formats_line, b->formats_line);
	assert_int_equal(a->formats_col, b->formats_col);
	assert_strs_eq(a->ips, a->n_ips, b->ips, b->n_ips);
	assert_strs_eq(a->uris, a->n_uris, b->uris, b->n_uris);
	assert_strs_eq(a->emails, a->n_emails, b->emails, b->n_emails);
	assert_int_equal(a->n_subject, b->n_subject);
	for (size_t i = 0; i < a->n_subject; i++) {
		assert_int_equal(a->subject[i].attr, b->subject[i].attr);
		assert_string_equal(a->subject[i].value, b->subject[i].value);
	}
	assert_int_equal(a->usages, b->usages);
	assert_int_equal(a->is_ca, b->is_ca);
	assert_int_equal(a->path_len, b->path_len);
	assert_memory_equal(a->xpos, b->xpos, sizeof(a->xpos));
	assert_string_equal(a->hash, b->hash);
}

static void test_pack_round_trips_every_field(void **state)
{
	struct diags d = {0};
	size_t n = 0;
	struct cert_spec **v = parse("certs/web.yaml", every_field, &n, &d);

	(void)state;
	assert_int_equal(d.n, 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		struct buf a = BUF_INIT, b = BUF_INIT;
		struct cert_spec *u;

		cert_spec_pack(v[i], &a);
		u = cert_spec_unpack(a.data, a.len);
		assert_non_null(u);
		assert_int_equal(u->packed, 1);
		cert_spec_pack(u, &b);
		assert_int_equal(a.len, b.len);
		assert_memory_equal(a.data, b.data, a.len);
		assert_spec_equal(u, v[i]);
		cert_spec_free(u);
		buf_free(&a);
		buf_free(&b);
	}
	/* the first spec used every list: a field the packer forgot would not round-trip above */
	assert_int_equal(v[0]->n_ips, 2);
	assert_int_equal(v[0]->n_uris, 1);
	assert_int_equal(v[0]->n_emails, 1);
	assert_int_equal(v[0]->n_subject, 3);
	assert_int_equal(v[0]->n_labels, 2);
	assert_true(v[0]->is_ca);
	assert_true(v[0]->usages != 0);
	assert_true(v[0]->formats != 0);
	free_specs(v, n);
	diags_free(&d);
}

static void test_unpack_refuses_every_truncation_and_trailing_bytes(void **state)
{
	struct diags d = {0};
	size_t n = 0;
	struct cert_spec **v = parse("certs/web.yaml", every_field, &n, &d);
	struct buf a = BUF_INIT;
	unsigned char *copy;

	(void)state;
	cert_spec_pack(v[0], &a);
	for (size_t len = 0; len < a.len; len++) {
		copy = xmalloc(len + 1); /* exactly len bytes readable (ASan sees an over-read) */
		memcpy(copy, a.data, len);
		assert_null(cert_spec_unpack(copy, len));
		free(copy);
	}
	copy = xmalloc(a.len + 1);
	memcpy(copy, a.data, a.len);
	copy[a.len] = 0;
	assert_null(cert_spec_unpack(copy, a.len + 1));
	/* a count larger than any manifest allows */
	memset(copy, 0xff, 4);
	assert_null(cert_spec_unpack(copy, a.len));
	free(copy);
	buf_free(&a);
	free_specs(v, n);
	diags_free(&d);
}

/* A cache of two files (one with a problem), written to dir/manifests.cache. */
static char *write_cache(const char *dir)
{
	struct spec_cache *c = spec_cache_new();
	struct cache_entry *e;
	char *path = fsutil_join(dir, SPEC_CACHE_FILE);

	e = spec_cache_slot(c, "1111111111111111111111111111111111111111", "certs/web.yaml");
	memcpy(e->oid, "1111111111111111111111111111111111111111", 41);
	e->path = xstrdup("certs/web.yaml");
	e->size = sizeof(every_field) - 1;
	e->specs = parse(e->path, every_field, &e->n, &e->diags);
	c->n++;
	e = spec_cache_slot(c, "2222222222222222222222222222222222222222", "certs/bad.yaml");
	memcpy(e->oid, "2222222222222222222222222222222222222222", 41);
	e->path = xstrdup("certs/bad.yaml");
	e->specs = parse(e->path, "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: x}\nspec: {}\n", &e->n,
			 &e->diags);
	c->n++;
	assert_true(e->diags.n > 0);
	c->dirty = 1;
	spec_cache_write(c, path);
	assert_int_equal(c->dirty, 0);
	spec_cache_free(c);
	return path;
}

static void test_cache_file_reads_back_what_was_written(void **state)
{
	char *dir = test_mkdtemp(), *path = write_cache(dir);
	struct spec_cache *c = spec_cache_new();
	struct cache_entry *e;

	(void)state;
	assert_int_equal(spec_cache_read(c, path), 2);
	assert_int_equal(c->dirty, 0);
	e = spec_cache_slot(c, "1111111111111111111111111111111111111111", "certs/web.yaml");
	assert_non_null(e->path);
	assert_int_equal(e->n, 2);
	assert_string_equal(e->specs[0]->name, "web");
	assert_string_equal(e->specs[0]->file, "certs/web.yaml");
	assert_int_equal(e->size, sizeof(every_field) - 1);
	/* keyed by path too: the same blob at another path is another entry (specs name their file) */
	assert_null(spec_cache_slot(c, "1111111111111111111111111111111111111111", "certs/moved.yaml")->path);
	e = spec_cache_slot(c, "2222222222222222222222222222222222222222", "certs/bad.yaml");
	assert_int_equal(e->n, 0);
	assert_true(e->diags.n > 0);
	assert_string_equal(e->diags.v[0].file, "certs/bad.yaml");
	spec_cache_free(c);
	free(path);
	test_rmdir(dir);
}

/* Rewrites the file with one byte changed at offset (or cut to offset when cut). */
static void damage(const char *path, size_t offset, int cut)
{
	struct buf b = BUF_INIT;

	assert_int_equal(fsutil_read_file(path, SPEC_CACHE_MAX_BYTES, &b), 0);
	assert_true(offset < b.len);
	if (cut)
		b.len = offset;
	else
		b.data[offset] ^= 0x5a;
	assert_int_equal(fsutil_write_cache(path, b.data, b.len, 0600), 0);
	buf_free(&b);
}

static void assert_ignored(const char *path)
{
	struct spec_cache *c = spec_cache_new();

	assert_int_equal(spec_cache_read(c, path), 0);
	assert_int_equal(c->n, 0);
	assert_int_equal(c->dirty, 1); /* so the next load writes a good one */
	spec_cache_free(c);
}

static void test_a_damaged_or_foreign_cache_file_is_ignored_whole(void **state)
{
	/* offsets in the header: magic 0, version 8, order 12, build id 16, then length and checksum */
	static const size_t header_bytes[] = {0, 8, 12, 16, 16 + 131};
	char *dir = test_mkdtemp(), *path;
	struct buf b = BUF_INIT;
	size_t len;

	(void)state;
	path = write_cache(dir);
	assert_int_equal(fsutil_read_file(path, SPEC_CACHE_MAX_BYTES, &b), 0);
	len = b.len;
	buf_free(&b);
	for (size_t i = 0; i < sizeof(header_bytes) / sizeof(header_bytes[0]); i++) {
		free(write_cache(dir));
		damage(path, header_bytes[i], 0);
		assert_ignored(path);
	}
	/* every 97th byte of the body (the checksum catches each), and cuts at many lengths */
	for (size_t off = 200; off < len; off += 97) {
		free(write_cache(dir));
		damage(path, off, 0);
		assert_ignored(path);
		free(write_cache(dir));
		damage(path, off, 1);
		assert_ignored(path);
	}
	/* not a cache at all, and an empty file */
	assert_int_equal(fsutil_write_cache(path, "hello", 5, 0600), 0);
	assert_ignored(path);
	assert_int_equal(fsutil_write_cache(path, "", 0, 0600), 0);
	assert_ignored(path);
	free(path);
	test_rmdir(dir);
}

/*
 * An entry whose path is not the file its specs name (damage under a good
 * checksum) refuses the file, and the spec read before the mismatch is freed
 * (fuzz_spec_cache found it leaked: LeakSanitizer fails this test without the
 * fix).
 */
static void test_an_entry_whose_specs_name_another_file_refuses_the_file(void **state)
{
	static const char oid[] = "1111111111111111111111111111111111111111";
	char *dir = test_mkdtemp(), *path = write_cache(dir);
	struct buf b = BUF_INIT;
	char *at;
	uint64_t body_len;

	(void)state;
	assert_int_equal(fsutil_read_file(path, SPEC_CACHE_MAX_BYTES, &b), 0);
	/* header: body length at 152, its SHA-256 at 160, the body at 192; an entry: oid, u32 length, path */
	at = memmem(b.data + 192, b.len - 192, oid, 40);
	assert_non_null(at);
	assert_memory_equal(at + 44, "certs/web.yaml", 14);
	at[44 + 8] = 'x'; /* certs/wex.yaml: its specs still say certs/web.yaml */
	memcpy(&body_len, b.data + 152, sizeof(body_len));
	crypto_sha256((unsigned char *)b.data + 192, (size_t)body_len, (unsigned char *)b.data + 160);
	assert_int_equal(fsutil_write_cache(path, b.data, b.len, 0600), 0);
	assert_ignored(path);
	buf_free(&b);
	free(path);
	test_rmdir(dir);
}

/*
 * mmap for this test binary (the library's calls come here): while
 * guard_maps is set, a file is mapped right before a page that cannot be
 * read, so a reader that goes past the end of a mapped file faults instead
 * of reading whatever the kernel placed there. Otherwise the system call.
 */
static int guard_maps;
static char *guard_page;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (len + page - 1) / page * page;
	char *p;

	if (!guard_maps || addr || fd < 0)
		return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	p = (char *)syscall(SYS_mmap, NULL, span + page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return p;
	guard_page = p + span;
	return (void *)syscall(SYS_mmap, p, len, prot, flags | MAP_FIXED, fd, off);
}

/* A cache file of exactly one page: this build's header, then body (its length and checksum made right). */
static void write_page_file(const char *path, const char *hdr_from, void (*fill)(unsigned char *body, size_t len))
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *img = xcalloc(1, page);
	uint64_t body_len = page - 192;
	struct buf b = BUF_INIT;

	assert_int_equal(fsutil_read_file(hdr_from, SPEC_CACHE_MAX_BYTES, &b), 0);
	memcpy(img, b.data, 152); /* magic, version, order, build id */
	memcpy(img + 152, &body_len, sizeof(body_len));
	fill(img + 192, (size_t)body_len);
	crypto_sha256(img + 192, (size_t)body_len, img + 160);
	assert_int_equal(fsutil_write_cache(path, img, page, 0600), 0);
	buf_free(&b);
	free(img);
}

/* One entry whose blob id runs on in hex to the end of the file. */
static void fill_hex_to_the_end(unsigned char *body, size_t len)
{
	uint32_t count = 1;

	memcpy(body, &count, sizeof(count));
	memset(body + 4, 'a', len - 4);
}

static void test_a_blob_id_is_read_within_its_40_bytes(void **state)
{
	char *dir = test_mkdtemp(), *good = write_cache(dir), *path = fsutil_join(dir, "page.cache");

	(void)state;
	write_page_file(path, good, fill_hex_to_the_end);
	guard_maps = 1;
	assert_ignored(path); /* its path length is "aaaa": refused, without reading past the file */
	guard_maps = 0;
	assert_non_null(guard_page);
	munmap(guard_page, (size_t)sysconf(_SC_PAGESIZE));
	guard_page = NULL;
	free(path);
	free(good);
	test_rmdir(dir);
}

/* A body that says it holds 100,000 entries (the most a listing has) in its 3,900 bytes. */
static void fill_big_count(unsigned char *body, size_t len)
{
	uint32_t count = 100000;

	memset(body, 0, len);
	memcpy(body, &count, sizeof(count));
}

/* A spec count of 100,000 in an entry of a few bytes (refused either way; the bound spares an 800 KB array). */
static void fill_big_spec_count(unsigned char *body, size_t len)
{
	uint32_t one = 1, specs = 100000;

	memset(body, 0, len);
	memcpy(body, &one, 4);
	memset(body + 4, 'a', 40);
	/* path "" (length 0), blob size 0, no diagnostics, then the spec count */
	memcpy(body + 4 + 40 + 4 + 8 + 4, &specs, 4);
}

static void test_counts_larger_than_the_body_holds_are_refused_before_any_room_is_made(void **state)
{
	char *dir = test_mkdtemp(), *good = write_cache(dir), *path = fsutil_join(dir, "page.cache");
	struct spec_cache *c = spec_cache_new();

	(void)state;
	write_page_file(path, good, fill_big_count);
	assert_int_equal(spec_cache_read(c, path), 0);
	assert_int_equal(c->dirty, 1);
	/* the table was not grown for 100,000 entries (2^18 slots, 29 MB touched to free) */
	assert_true(c->cap <= 256);
	spec_cache_free(c);
	write_page_file(path, good, fill_big_spec_count);
	assert_ignored(path);
	free(path);
	free(good);
	test_rmdir(dir);
}

static void test_eviction_keeps_the_used_entries_only(void **state)
{
	char *dir = test_mkdtemp(), *path = write_cache(dir);
	struct spec_cache *c = spec_cache_new();

	(void)state;
	assert_int_equal(spec_cache_read(c, path), 2);
	spec_cache_slot(c, "1111111111111111111111111111111111111111", "certs/web.yaml")->used = 1;
	spec_cache_evict_unused(c);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->dirty, 1);
	assert_null(spec_cache_slot(c, "2222222222222222222222222222222222222222", "certs/bad.yaml")->path);
	assert_non_null(spec_cache_slot(c, "1111111111111111111111111111111111111111", "certs/web.yaml")->path);
	spec_cache_write(c, path);
	spec_cache_free(c);
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), 1);
	spec_cache_free(c);
	free(path);
	test_rmdir(dir);
}

/* Many entries in a small table (long probe chains, wrapping), random halves dropped, rounds on rounds. */
/* Adds the entry of file i (a one-certificate manifest named f<i>) to c, as a load that parsed it does. */
static void add_file(struct spec_cache *c, int i)
{
	char oid[41], path[32], text[256];
	struct cache_entry *e;

	snprintf(oid, sizeof(oid), "%040x", (unsigned)i + 0x1000);
	snprintf(path, sizeof(path), "certs/f%d.yaml", i);
	snprintf(text, sizeof(text),
		 "apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: f%d}\n"
		 "spec: {issuer: internal, dnsNames: [f%d.example.com]}\n",
		 i, i);
	e = spec_cache_slot(c, oid, path);
	assert_int_equal(e->oid[0], 0);
	memcpy(e->oid, oid, sizeof(oid));
	e->path = xstrdup(path);
	e->size = strlen(text);
	e->specs = parse(e->path, text, &e->n, &e->diags);
	assert_int_equal(e->n, 1);
	c->n++;
	c->dirty = 1;
}

static int has_file(struct spec_cache *c, int i)
{
	char oid[41], path[32];

	snprintf(oid, sizeof(oid), "%040x", (unsigned)i + 0x1000);
	snprintf(path, sizeof(path), "certs/f%d.yaml", i);
	return spec_cache_slot(c, oid, path)->oid[0] != 0;
}

static struct stat stat_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st;
}

/* A cache file of files 0..n-1, written whole. */
static char *write_files(const char *dir, int n)
{
	struct spec_cache *c = spec_cache_new();
	char *path = fsutil_join(dir, SPEC_CACHE_FILE);

	for (int i = 0; i < n; i++)
		add_file(c, i);
	spec_cache_write(c, path);
	assert_int_equal(c->dirty, 0);
	spec_cache_free(c);
	return path;
}

static void test_a_load_that_parsed_few_blobs_appends_them(void **state)
{
	char *dir = test_mkdtemp(), *path = write_files(dir, 40);
	struct stat before = stat_of(path), after;
	struct spec_cache *c = spec_cache_new();

	(void)state;
	assert_int_equal(spec_cache_read(c, path), 40);
	assert_int_equal(c->dirty, 0);
	add_file(c, 40);
	spec_cache_write(c, path);
	assert_int_equal(c->dirty, 0);
	after = stat_of(path);
	/* the same file, grown by one segment: not rewritten */
	assert_int_equal(after.st_ino, before.st_ino);
	assert_true(after.st_size > before.st_size);
	assert_true(after.st_size < before.st_size + before.st_size / 20);
	assert_int_equal(after.st_mode & 0777, 0600);
	/* nothing new: nothing written */
	spec_cache_write(c, path);
	assert_int_equal(stat_of(path).st_size, after.st_size);
	spec_cache_free(c);
	/* a second load appends a second segment; a third reads all of them back */
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), 41);
	add_file(c, 41);
	add_file(c, 42);
	spec_cache_write(c, path);
	spec_cache_free(c);
	assert_int_equal(stat_of(path).st_ino, before.st_ino);
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), 43);
	assert_int_equal(c->dirty, 0);
	for (int i = 0; i < 43; i++)
		assert_true(has_file(c, i));
	assert_string_equal(
		spec_cache_slot(c, "0000000000000000000000000000000000001029", "certs/f41.yaml")->specs[0]->name,
		"f41");
	spec_cache_free(c);
	free(path);
	test_rmdir(dir);
}

/* Appends file 40 to a 40-file cache; the offset where its segment starts. */
static size_t append_one(const char *path)
{
	struct spec_cache *c = spec_cache_new();
	size_t base = (size_t)stat_of(path).st_size;

	assert_int_equal(spec_cache_read(c, path), 40);
	add_file(c, 40);
	spec_cache_write(c, path);
	spec_cache_free(c);
	assert_true((size_t)stat_of(path).st_size > base);
	return base;
}

static void test_a_torn_segment_keeps_what_came_before_and_forces_a_whole_write(void **state)
{
	char *dir = test_mkdtemp(), *path = write_files(dir, 40);
	size_t base = (size_t)stat_of(path).st_size, len;
	struct spec_cache *c;

	(void)state;
	assert_int_equal(append_one(path), base);
	len = (size_t)stat_of(path).st_size;
	/* cuts and flipped bytes every 7 bytes inside the segment: the base is kept, the segment is not */
	for (size_t off = base; off < len; off += 7) {
		for (int cut = 0; cut < (off == base ? 1 : 2); cut++) { /* cut at the segment's start: the old file */
			free(write_files(dir, 40));
			append_one(path);
			damage(path, off, cut);
			c = spec_cache_new();
			assert_int_equal(spec_cache_read(c, path), 40);
			assert_false(has_file(c, 40));
			assert_int_equal(c->dirty, 1);
			assert_int_equal(c->disk_ok, 0);
			spec_cache_free(c);
		}
	}
	/* the load after a torn segment writes the file whole: a new file without segments */
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), 40);
	add_file(c, 40);
	spec_cache_write(c, path);
	spec_cache_free(c);
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), 41);
	assert_int_equal(c->disk_base, c->disk_len);
	spec_cache_free(c);
	free(path);
	test_rmdir(dir);
}

static void test_a_segment_with_bad_entries_under_a_good_checksum_refuses_the_file(void **state)
{
	char *dir = test_mkdtemp(), *path = write_files(dir, 40);
	size_t base = append_one(path);
	struct buf b = BUF_INIT;
	unsigned char *seg;
	uint64_t body_len;

	(void)state;
	assert_int_equal(fsutil_read_file(path, SPEC_CACHE_MAX_BYTES, &b), 0);
	seg = (unsigned char *)b.data + base;
	memcpy(&body_len, seg + 8, sizeof(body_len));
	assert_int_equal(body_len, b.len - base - 48);
	seg[48 + 4] = 'z'; /* the entry's blob id: not hex */
	crypto_sha256(seg + 48, (size_t)body_len, seg + 16);
	assert_int_equal(fsutil_write_cache(path, b.data, b.len, 0600), 0);
	assert_ignored(path);
	buf_free(&b);
	free(path);
	test_rmdir(dir);
}

static void test_two_loads_appending_the_same_blob_read_back_once(void **state)
{
	char *dir = test_mkdtemp(), *path = write_files(dir, 40);
	struct spec_cache *a = spec_cache_new(), *b = spec_cache_new();

	(void)state;
	/* two processes after the same commit: both parse the new blob, both append it */
	assert_int_equal(spec_cache_read(a, path), 40);
	assert_int_equal(spec_cache_read(b, path), 40);
	add_file(a, 40);
	add_file(b, 40);
	spec_cache_write(a, path);
	spec_cache_write(b, path);
	spec_cache_free(a);
	spec_cache_free(b);
	a = spec_cache_new();
	assert_int_equal(spec_cache_read(a, path), 41);
	assert_int_equal(a->dirty, 0);
	assert_true(has_file(a, 40));
	spec_cache_free(a);
	free(path);
	test_rmdir(dir);
}

/* Marks files [from, to) used, evicts the rest, adds file add (if >= 0) and writes. */
static void evict_and_write(const char *path, int from, int to, int add)
{
	struct spec_cache *c = spec_cache_new();

	spec_cache_read(c, path);
	for (int i = from; i < to; i++) {
		char oid[41], p[32];

		snprintf(oid, sizeof(oid), "%040x", (unsigned)i + 0x1000);
		snprintf(p, sizeof(p), "certs/f%d.yaml", i);
		spec_cache_slot(c, oid, p)->used = 1;
	}
	spec_cache_evict_unused(c);
	if (add >= 0)
		add_file(c, add);
	spec_cache_write(c, path);
	spec_cache_free(c);
}

static void test_unused_entries_or_segments_past_a_quarter_write_the_file_whole(void **state)
{
	char *dir = test_mkdtemp(), *path = write_files(dir, 40);
	ino_t ino = stat_of(path).st_ino;
	struct spec_cache *c;
	int next = 40;

	(void)state;
	/* 10 of 40 unused (a quarter): still appended; they stay in the file */
	evict_and_write(path, 10, 40, next++);
	assert_int_equal(stat_of(path).st_ino, ino);
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), 41);
	spec_cache_free(c);
	/* 11 of 41 unused: the file is written whole, without them */
	evict_and_write(path, 11, 41, next++);
	assert_true(stat_of(path).st_ino != ino);
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), 31);
	assert_false(has_file(c, 10));
	assert_true(has_file(c, 41));
	assert_int_equal(c->disk_base, c->disk_len);
	spec_cache_free(c);
	/* one file added per load: segments until they pass a quarter of the file, then a whole write */
	ino = stat_of(path).st_ino;
	for (int round = 0; round < 40; round++) {
		evict_and_write(path, 11, next, next);
		next++;
		if (stat_of(path).st_ino != ino)
			break;
	}
	assert_true(stat_of(path).st_ino != ino);
	assert_true(next - 42 >= 5); /* several appends first (a segment is ~1/30 of the file) */
	c = spec_cache_new();
	assert_int_equal(spec_cache_read(c, path), (size_t)(next - 11));
	assert_int_equal(c->disk_base, c->disk_len);
	spec_cache_free(c);
	free(path);
	test_rmdir(dir);
}

static void test_eviction_in_place_keeps_every_chain_reachable(void **state)
{
	struct spec_cache *c = spec_cache_new();
	char oid[41], path[32];
	unsigned char kept[600] = {0};

	(void)state;
	srand(7);
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 600; i++) {
			struct cache_entry *e;

			/* ids sharing their first hex digits land in the same region of the table */
			snprintf(oid, sizeof(oid), "%016x%024d", (unsigned)(i % 7), i);
			snprintf(path, sizeof(path), "f%d.yaml", i);
			if (rand() % 3 == 0)
				continue; /* not in this listing */
			e = spec_cache_slot(c, oid, path);
			if (!e->oid[0]) {
				assert_int_equal(kept[i], 0);
				memcpy(e->oid, oid, sizeof(oid));
				e->path = xstrdup(path);
				c->n++;
			} else {
				assert_int_equal(kept[i], 1);
			}
			e->used = 1;
			kept[i] = 2;
		}
		spec_cache_evict_unused(c);
		for (int i = 0; i < 600; i++) {
			kept[i] = kept[i] == 2;
			snprintf(oid, sizeof(oid), "%016x%024d", (unsigned)(i % 7), i);
			snprintf(path, sizeof(path), "f%d.yaml", i);
			assert_int_equal(spec_cache_slot(c, oid, path)->oid[0] != 0, kept[i]);
		}
	}
	spec_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_round_trips_every_field),
		cmocka_unit_test(test_unpack_refuses_every_truncation_and_trailing_bytes),
		cmocka_unit_test(test_cache_file_reads_back_what_was_written),
		cmocka_unit_test(test_a_damaged_or_foreign_cache_file_is_ignored_whole),
		cmocka_unit_test(test_an_entry_whose_specs_name_another_file_refuses_the_file),
		cmocka_unit_test(test_a_blob_id_is_read_within_its_40_bytes),
		cmocka_unit_test(test_counts_larger_than_the_body_holds_are_refused_before_any_room_is_made),
		cmocka_unit_test(test_eviction_keeps_the_used_entries_only),
		cmocka_unit_test(test_eviction_in_place_keeps_every_chain_reachable),
		cmocka_unit_test(test_a_load_that_parsed_few_blobs_appends_them),
		cmocka_unit_test(test_a_torn_segment_keeps_what_came_before_and_forces_a_whole_write),
		cmocka_unit_test(test_a_segment_with_bad_entries_under_a_good_checksum_refuses_the_file),
		cmocka_unit_test(test_two_loads_appending_the_same_blob_read_back_once),
		cmocka_unit_test(test_unused_entries_or_segments_past_a_quarter_write_the_file_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
