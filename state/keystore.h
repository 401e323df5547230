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
 * Removes every entry of cert except keep_serial; its pending slots stay (an
 * order may be under way). keep_serial NULL: all of it, pending slots and the
 * certificate's place in the store included. A missing certificate is success.
 */
int keystore_prune(struct keystore *ks, const char *cert, const char *keep_serial);

/* Closes the store. NULL is a no-op. */
void keystore_close(struct keystore *ks);

/*
 * Pending material: what an order in progress needs and no certificate has
 * yet (DigiCert's key and CSR between order and issuance), kept with the
 * other keys so that another replica, or a rerun on a fresh disk, finds it.
 * slot is a short name ("key", "csr"). get: CS_ENOTFOUND when absent.
 * del removes one slot (NULL: every pending slot of cert); absent is success.
 */
int keystore_put_pending(struct keystore *ks, const char *cert, const char *slot, const struct buf *data);
int keystore_get_pending(struct keystore *ks, const char *cert, const char *slot, struct buf *out);
int keystore_del_pending(struct keystore *ks, const char *cert, const char *slot);

/*
 * The PostgreSQL backend: a table in the state's schema holding each entry
 * AES-256-GCM encrypted (util/aead.h) under key, with the certificate name
 * and serial (or pending slot) as associated data. old_key (may be NULL)
 * still opens entries written before a key rotation; keystore_rekey
 * rewrites them under key. Opening checks key against the store's key check
 * value: a wrong key is CS_EAUTH ("state.encryptionKey does not open ..."),
 * never a silent re-issue. Thread-safe (one connection behind a mutex).
 */
struct keystore_pg_opts {
	const char *conninfo; /* a secret, never in a message */
	const char *schema;
	const unsigned char *key;     /* AEAD_KEY_LEN bytes */
	const unsigned char *old_key; /* AEAD_KEY_LEN bytes, or NULL */
};

int keystore_open_pg(const struct keystore_pg_opts *o, struct keystore **out);

/*
 * Re-encrypts every entry and pending slot not under the current key and
 * moves the key check value to it, in one transaction; *n gets how many.
 * Afterwards the store opens without old_key. CS_EAUTH when an entry is
 * under neither key, CS_EINVALID (naming it) when one is damaged: nothing
 * is changed then. The file backend: CS_EINVALID (it is not encrypted).
 */
int keystore_rekey(struct keystore *ks, size_t *n);

/*
 * Copies every entry and pending slot of src into dst (state migrate),
 * replacing dst's entries of the same name and leaving its others alone.
 * *n gets the number of entries and pending slots copied. A damaged entry
 * in src stops the copy with its error (nothing is skipped silently).
 */
int keystore_copy(struct keystore *src, struct keystore *dst, size_t *n);

/*
 * After a copy that replaces dst's state (state migrate --force): removes
 * from dst every certificate src holds nothing of (entries and pending
 * slots), and every pending slot src does not hold, so that no key of the
 * replaced state stays behind. Serial entries of a certificate both hold are
 * left to the pruning at its next install. *n gets how many certificates
 * and slots were removed.
 */
int keystore_drop_absent(struct keystore *src, struct keystore *dst, size_t *n);

/* *n gets the number of entries and pending slots the store holds (0: empty; for state migrate's check). */
int keystore_count(struct keystore *ks, size_t *n);

#endif
