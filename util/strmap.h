/*
 * A string-keyed table: open addressing with linear probing and tombstones,
 * so a table that changes by a few keys at a time (the manifest set's index
 * between revisions, the output watcher's directories) adds and removes
 * without being rebuilt. Keys are borrowed, or copied and owned by the table
 * (owns_keys). Each slot carries the caller's value (ptr or num) and a
 * flag, zero when the key is added; the table never frees ptr. A slot is 24
 * bytes: the manifest set's tables hold one per certificate.
 *
 * A zeroed struct strmap is an empty table; strmap_init sizes one for n keys.
 */
#ifndef CS_UTIL_STRMAP_H
#define CS_UTIL_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap_slot {
	const char *key; /* NULL: empty; strmap_tomb: deleted */
	union {		 /* the caller's value */
		void *ptr;
		size_t num;
	};
	uint32_t h; /* the key's hash (its low bits place it) */
	int flag;   /* the caller's */
};

struct strmap {
	struct strmap_slot *v;
	size_t cap, used, n; /* used: live keys and tombstones; n: live keys */
	int owns_keys;
};

void strmap_init(struct strmap *m, size_t n, int owns_keys);
void strmap_free(struct strmap *m); /* frees the owned keys and the table, and zeroes m */

/* The slot of key[0..len), or NULL. */
struct strmap_slot *strmap_get(const struct strmap *m, const char *key, size_t len);

/*
 * The slot of key[0..len), added (values zero) when absent: a borrowed key
 * must end at len. May move every slot: earlier slot pointers go stale.
 */
struct strmap_slot *strmap_put(struct strmap *m, const char *key, size_t len);

/* Removes the key of a live slot (the caller frees what its ptr holds first). */
void strmap_del(struct strmap *m, struct strmap_slot *s);

/* Whether m->v[i] holds a key (for walking the table). */
int strmap_live(const struct strmap_slot *s);

#endif
