/*
 * The key store (DESIGN §3): every private key certsync generated or
 * downloaded, kept beside the state with the certificate chain and ca.crt it
 * was installed with, so that lost outputs are always a free reinstall (no
 * provider call, no new key). Entries are keyed by certificate name and
 * serial. The interface is backend-neutral: the file backend
 * (keystore_open_dir) is the default; a shared backend (postgres, each key
 * AES-256-GCM encrypted) plugs in behind the same calls.
 */
#ifndef CS_STATE_KEYSTORE_H
#define CS_STATE_KEYSTORE_H

#include <stddef.h>

#include "../util/buf.h"

#define KEYSTORE_MAX_ITEM (1024 * 1024) /* one entry: key + chain + ca */

/* What a reinstall needs. key is a secret: keystore_item_wipe() it. */
struct keystore_item {
	struct buf key;	 /* private key, PEM */
	struct buf cert; /* leaf + intermediates, PEM (tls.crt) */
	struct buf ca;	 /* trust anchor(s), PEM (ca.crt) */
};

void keystore_item_init(struct keystore_item *it);
void keystore_item_wipe(struct keystore_item *it);

struct keystore; /* opaque: a backend and its handle */

/*
 * The file backend: <dir>/store/<certificate>/<serial>.pem, directories 0700
 * (dir itself is created 0700 when missing and tightened to 0700 when it
 * exists), files 0600 written atomically. Never fails: I/O errors surface
 * on the first call. Caller frees with keystore_close.
 */
struct keystore *keystore_open_dir(const char *dir);

/*
 * Stores it under (cert, serial), replacing an entry with the same serial.
 * cert must be a certificate name (no '/', not "." or ".."), serial lowercase
 * hex. CS_EINVALID for bad names, CS_ERROR (message with the path) for I/O.
 */
int keystore_put(struct keystore *ks, const char *cert, const char *serial, const struct keystore_item *it);

/*
 * Reads the entry (cert, serial) into *out (caller keystore_item_wipe()s it).
 * CS_ENOTFOUND when there is none; CS_EINVALID when it is damaged; CS_ERROR for I/O.
 */
int keystore_get(struct keystore *ks, const char *cert, const char *serial, struct keystore_item *out);

/*
 * Removes every entry of cert except keep_serial (NULL: all of them, and the
 * certificate's place in the store). A missing certificate is success.
 */
int keystore_prune(struct keystore *ks, const char *cert, const char *keep_serial);

/* Closes the store. NULL is a no-op. */
void keystore_close(struct keystore *ks);

#endif
