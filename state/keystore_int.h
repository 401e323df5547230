/*
 * The key store's insides, shared by its front (keystore.c, with the file
 * backend) and the PostgreSQL backend (keystore_pg.c): the backend table,
 * the entry format both backends store, and name checks.
 */
#ifndef CS_STATE_KEYSTORE_INT_H
#define CS_STATE_KEYSTORE_INT_H

#include <stddef.h>

#include "keystore.h"

#define KEYSTORE_SLOT_MAX 32

/* One thing a store holds: an entry (serial set) or a pending slot (slot set). */
struct keystore_ref {
	char *cert;
	char *serial; /* NULL for a pending slot */
	char *slot;   /* NULL for an entry */
};

void keystore_refs_free(struct keystore_ref *refs, size_t n);

/*
 * A backend: the same contracts as the public calls, on its own handle;
 * names are checked by the front. list gives everything held (caller frees
 * with keystore_refs_free). rekey may be NULL (nothing to re-encrypt).
 */
struct keystore_backend {
	int (*put)(void *h, const char *cert, const char *serial, const struct keystore_item *it);
	int (*get)(void *h, const char *cert, const char *serial, struct keystore_item *out);
	int (*prune)(void *h, const char *cert, const char *keep_serial);
	int (*put_pending)(void *h, const char *cert, const char *slot, const struct buf *data);
	int (*get_pending)(void *h, const char *cert, const char *slot, struct buf *out);
	int (*del_pending)(void *h, const char *cert, const char *slot);
	int (*list)(void *h, struct keystore_ref **refs, size_t *n);
	int (*rekey)(void *h, size_t *n);
	void (*close)(void *h);
};

/* Wraps a backend handle (closed by keystore_close). */
struct keystore *keystore_wrap(const struct keystore_backend *be, void *h);

/*
 * The entry format (the file backend's files, the postgres backend's
 * plaintexts): "certsync-keystore 1\n" then "key <n>\n<n bytes>\n",
 * "cert <n>\n<n bytes>\n", "ca <n>\n<n bytes>\n". serialize appends to out
 * (a secret: buf_wipe it); parse is CS_EINVALID (no message) for anything else.
 */
void keystore_serialize(const struct keystore_item *it, struct buf *out);
int keystore_parse(const struct buf *b, struct keystore_item *out);

/* 1 when s is a serial the store accepts (lowercase hex and '-', at most 130), a slot ([a-z0-9-], at most 32). */
int keystore_serial_ok(const char *s);
int keystore_slot_ok(const char *s);

#endif
