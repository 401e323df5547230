/*
 * The parse cache: parsed manifests by (blob id, path), in memory for a
 * process (the daemon keeps one across passes) and on disk between
 * processes, so a cold plan parses only the blobs that changed.
 *
 * The file (<source.cacheDir>/manifests.cache) is versioned, carries the
 * build id of the program that wrote it and a SHA-256 of its body: a file
 * that is damaged, foreign, of another version or from another build is
 * ignored and rebuilt, never trusted. It holds what the manifests say (no
 * secret is ever in a manifest) and is written without fsync (temp +
 * rename): a torn file fails its checksum.
 *
 * A load that parsed a few blobs appends them to the file it read as one
 * segment with its own length and checksum, instead of rewriting every
 * entry (a one-file commit wrote 6.6 MB at 10,000 files). A segment that is
 * torn or damaged ends the read there: what came before it is kept (entries
 * are keyed by blob id, so an old one is never wrong, only unused) and the
 * next write is a whole one. Entries the repository no longer uses stay in
 * the file until they, or the segments, pass a quarter of it: then the whole
 * file is written again without them.
 */
#ifndef CS_RECONCILER_SPEC_CACHE_H
#define CS_RECONCILER_SPEC_CACHE_H

#include <stddef.h>
#include <sys/types.h>

#include "../manifests/manifest.h"
#include "../util/diag.h"
#include "reconcile.h"

#define SPEC_CACHE_FILE "manifests.cache"
#define SPEC_CACHE_MAX_BYTES (1024u * 1024 * 1024)

struct cache_entry {
	char oid[41];
	char *path;  /* the file path (part of the key: specs and diagnostics name it) */
	size_t size; /* the blob's size */
	struct cert_spec **specs;
	size_t n;
	struct diags diags;
	int used;    /* seen in the current load (mark for eviction) */
	int on_disk; /* read from the file, or written to it */
};

struct spec_cache {
	struct cache_entry *v; /* open addressing */
	size_t cap, n;
	int dirty; /* entries added or evicted since the file was read */
	/* The file as read: a write appends to it while it is the same file and small enough. */
	int disk_ok; /* read whole, of this build and version: appends may go to it */
	dev_t disk_dev;
	ino_t disk_ino;
	size_t disk_base, disk_len;  /* the end of its first body; its length as read */
	size_t disk_n, disk_dropped; /* entries read from it; those of them evicted since */
};

/* Makes room for n more entries (one allocation instead of doubling steps). */
void spec_cache_reserve(struct spec_cache *c, size_t n);

/* The entry for (oid, path): an empty slot (oid[0] == 0) when absent. Grows the table first. */
struct cache_entry *spec_cache_slot(struct spec_cache *c, const char *oid, const char *path);
void spec_cache_entry_clear(struct cache_entry *e);

/* Drops the entry for (oid, path) if there is one (entries after it in the table may move). */
void spec_cache_remove(struct spec_cache *c, const char *oid, const char *path);

/* Drops the entries the last load did not use, so the cache follows the repository. */
void spec_cache_evict_unused(struct spec_cache *c);

/*
 * Fills an empty cache from the file at path (missing, damaged, foreign:
 * nothing is added, the reason is logged at debug level, and the cache is
 * marked dirty so it is written again). Returns the number of entries read.
 */
size_t spec_cache_read(struct spec_cache *c, const char *path);

/*
 * Writes what changed to path, when dirty: the new entries appended as one
 * segment to the file read, or every entry (temp + rename, 0600) when that
 * file is gone, replaced, damaged, or would carry more than a quarter of
 * unused entries or segments. A failure is logged, never fatal.
 */
void spec_cache_write(struct spec_cache *c, const char *path);

#endif
