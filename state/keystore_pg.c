/*
 * The key store's PostgreSQL backend: table keys(cert, slot, sealed, key_id,
 * stored_at) in the state's schema, every value AES-256-GCM sealed
 * (util/aead.h) with "certsync-keystore\0<cert>\0<slot>" as associated data,
 * slot being the serial of a certificate's entry or "pending:<name>" for an
 * order's pending material. key_id names the encryption key a value was
 * sealed with (a digest of the key, not secret), so a store being rotated
 * reads each value with its own key. keycheck holds one sealed constant
 * under the store's current key: opening with any other key is refused
 * before anything is read or written. One connection per store, behind a
 * mutex: the engine's workers share the handle.
 */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/aead.h"
#include "../util/buf.h"
#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/util.h"
#include "keystore.h"
#include "keystore_int.h"
#include "pgconn.h"

#define KPG_ID_LEN 16 /* hex characters of a key id */
#define KPG_PENDING "pending:"
#define KPG_CHECK_AAD "certsync-keystore\0keycheck"
#define KPG_CHECK_TEXT "certsync key check 1"
#define KPG_SEALED_MAX (2 * KEYSTORE_MAX_ITEM + AEAD_OVERHEAD)

struct kpg {
	pthread_mutex_t mu;
	PGconn *conn;
	char server[PGCONN_WHERE_MAX]; /* "postgres host=… user=…" (no password) */
	char schema[PGCONN_SCHEMA_MAX + 1];
	char where[PGCONN_WHERE_MAX + PGCONN_SCHEMA_MAX + 32]; /* "<server> schema <schema>" */
	char *exec_where;				       /* "key store in <where>" for statement errors */
	char *keys, *keycheck;				       /* quoted table names */
	unsigned char key[AEAD_KEY_LEN], old[AEAD_KEY_LEN];
	int has_old;
	char key_id[KPG_ID_LEN + 1], old_id[KPG_ID_LEN + 1];
};

/* The non-secret name of a key: the first 16 hex digits of HMAC-SHA256(key, "certsync key id"). */
static void kpg_key_id(const unsigned char *key, char out[KPG_ID_LEN + 1])
{
	static const char msg[] = "certsync key id";
	unsigned char mac[32];

	crypto_hmac_sha256(key, AEAD_KEY_LEN, msg, sizeof(msg) - 1, mac);
	for (int i = 0; i < KPG_ID_LEN / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	OPENSSL_cleanse(mac, sizeof(mac));
}

/* "certsync-keystore\0<cert>\0<slot>": where a value belongs. */
static void kpg_aad(const char *cert, const char *slot, struct buf *out)
{
	buf_append(out, "certsync-keystore", sizeof("certsync-keystore"));
	buf_append(out, cert, strlen(cert) + 1);
	buf_puts(out, slot);
}

/* How a row is named in messages: "certificate x serial 1a" or "certificate x pending key". */
static char *kpg_what(const char *cert, const char *slot)
{
	if (!strncmp(slot, KPG_PENDING, strlen(KPG_PENDING)))
		return xasprintf("certificate %s pending %s", cert, slot + strlen(KPG_PENDING));
	return xasprintf("certificate %s serial %s", cert, slot);
}

/* bytea input text: "\x" and lowercase hex. Caller frees. */
static char *kpg_hex(const struct buf *b)
{
	char *s = xcalloc(1, 2 * b->len + 3);

	s[0] = '\\';
	s[1] = 'x';
	for (size_t i = 0; i < b->len; i++)
		snprintf(s + 2 + 2 * i, 3, "%02x", (unsigned char)b->data[i]);
	return s;
}

/* ---------- running statements ---------- */

/* Reconnects a connection the server dropped (restart, idle timeout). */
static int kpg_alive(struct kpg *k)
{
	if (PQstatus(k->conn) == CONNECTION_OK)
		return 0;
	PQreset(k->conn);
	if (PQstatus(k->conn) == CONNECTION_OK)
		return 0;
	return cs_error(CS_ETRANSIENT, "%s: connection lost and cannot reconnect", k->exec_where);
}

/*
 * One statement outside a transaction (under k->mu). A connection found
 * dead is reset and the statement run once more: every statement here is
 * idempotent (upsert, delete, select).
 */
static int kpg_run(struct kpg *k, PGresult **res, const char *sql, int n, const char *const *params)
{
	int rc;

	if ((rc = kpg_alive(k)))
		return rc;
	rc = pgconn_exec(k->conn, k->exec_where, res, sql, n, params);
	if (rc == CS_ETRANSIENT && PQstatus(k->conn) != CONNECTION_OK && !kpg_alive(k))
		rc = pgconn_exec(k->conn, k->exec_where, res, sql, n, params);
	return rc;
}

/* ---------- sealing ---------- */

/* The key a row's key_id names, or NULL. */
static const unsigned char *kpg_key_for(const struct kpg *k, const char *key_id)
{
	if (!strcmp(key_id, k->key_id))
		return k->key;
	if (k->has_old && !strcmp(key_id, k->old_id))
		return k->old;
	return NULL;
}

/* Seals pt for (cert, slot) under the current key into hex bytea text (caller frees). */
static int kpg_seal(struct kpg *k, const char *cert, const char *slot, const struct buf *pt, char **hex)
{
	struct buf aad = BUF_INIT, sealed = BUF_INIT;
	int rc;

	kpg_aad(cert, slot, &aad);
	if (!(rc = aead_seal(k->key, aad.data, aad.len, pt->data ? pt->data : "", pt->len, &sealed)))
		*hex = kpg_hex(&sealed);
	buf_free(&aad);
	buf_free(&sealed);
	return rc;
}

/*
 * Opens a row's sealed value (bytea text as the server sent it) into out.
 * CS_EAUTH when its key_id names neither configured key, CS_EINVALID when
 * it does not open (damaged, tampered with, or moved from another row).
 */
static int kpg_unseal(struct kpg *k, const char *cert, const char *slot, const char *text, size_t text_len,
		      const char *key_id, struct buf *out)
{
	const unsigned char *key = kpg_key_for(k, key_id);
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	struct buf aad = BUF_INIT;
	char *what = kpg_what(cert, slot);
	int rc;

	if (!key) {
		rc = cs_error(CS_EAUTH,
			      "key store in %s: %s was written with key %.16s, which is neither state.encryptionKey "
			      "(%s) nor state.previousEncryptionKey%s%s",
			      k->where, what, key_id, k->key_id, k->has_old ? " " : "", k->has_old ? k->old_id : "");
		goto out;
	}
	if (text_len > 2 * KPG_SEALED_MAX + 2 || !(raw = PQunescapeBytea((const unsigned char *)text, &raw_len))) {
		rc = cs_error(CS_EINVALID, "key store in %s: %s is damaged (not a sealed value)", k->where, what);
		goto out;
	}
	kpg_aad(cert, slot, &aad);
	if (aead_open(key, aad.data, aad.len, raw, raw_len, out))
		rc = cs_error(CS_EINVALID,
			      "key store in %s: %s is damaged: it does not decrypt under key %s (altered, truncated, "
			      "or copied from another row)",
			      k->where, what, key_id);
	else
		rc = 0;
out:
	PQfreemem(raw);
	buf_free(&aad);
	free(what);
	return rc;
}

/* ---------- one row ---------- */

static int kpg_put_row(struct kpg *k, const char *cert, const char *slot, const struct buf *pt)
{
	char *hex = NULL, *sql;
	int rc;

	if ((rc = kpg_seal(k, cert, slot, pt, &hex)))
		return rc;
	sql = xasprintf("INSERT INTO %s (cert, slot, sealed, key_id, stored_at) VALUES ($1, $2, $3, $4, now())"
			" ON CONFLICT (cert, slot) DO UPDATE SET sealed = EXCLUDED.sealed, key_id = EXCLUDED.key_id,"
			" stored_at = now()",
			k->keys);
	{
		const char *params[] = {cert, slot, hex, k->key_id};

		pthread_mutex_lock(&k->mu);
		rc = kpg_run(k, NULL, sql, 4, params);
		pthread_mutex_unlock(&k->mu);
	}
	free(sql);
	free(hex);
	return rc;
}

/* The plaintext of row (cert, slot) into out. CS_ENOTFOUND when there is none. */
static int kpg_get_row(struct kpg *k, const char *cert, const char *slot, struct buf *out)
{
	char *sql = xasprintf("SELECT sealed, key_id FROM %s WHERE cert = $1 AND slot = $2", k->keys);
	const char *params[] = {cert, slot};
	PGresult *r = NULL;
	int rc;

	pthread_mutex_lock(&k->mu);
	rc = kpg_run(k, &r, sql, 2, params);
	pthread_mutex_unlock(&k->mu);
	free(sql);
	if (rc)
		return rc;
	if (PQntuples(r) == 0) {
		char *what = kpg_what(cert, slot);

		rc = cs_error(CS_ENOTFOUND, "key store in %s: no %s", k->where, what);
		free(what);
	} else {
		rc = kpg_unseal(k, cert, slot, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), PQgetvalue(r, 0, 1),
				out);
	}
	PQclear(r);
	return rc;
}

/* ---------- the backend ---------- */

static int kpg_put(void *h, const char *cert, const char *serial, const struct keystore_item *it)
{
	struct buf pt = BUF_INIT;
	int rc;

	keystore_serialize(it, &pt);
	rc = kpg_put_row(h, cert, serial, &pt);
	buf_wipe(&pt);
	return rc;
}

static int kpg_get(void *h, const char *cert, const char *serial, struct keystore_item *out)
{
	struct kpg *k = h;
	struct buf pt = BUF_INIT;
	int rc = kpg_get_row(k, cert, serial, &pt);

	if (!rc && keystore_parse(&pt, out))
		rc = cs_error(
			CS_EINVALID,
			"key store in %s: certificate %s serial %s is damaged (opens, but is not a key store entry)",
			k->where, cert, serial);
	buf_wipe(&pt);
	return rc;
}

static int kpg_prune(void *h, const char *cert, const char *keep_serial)
{
	struct kpg *k = h;
	char *sql;
	int rc;

	pthread_mutex_lock(&k->mu);
	if (keep_serial) {
		const char *params[] = {cert, keep_serial};

		sql = xasprintf("DELETE FROM %s WHERE cert = $1 AND slot <> $2 AND slot NOT LIKE '" KPG_PENDING "%%'",
				k->keys);
		rc = kpg_run(k, NULL, sql, 2, params);
	} else {
		const char *params[] = {cert};

		sql = xasprintf("DELETE FROM %s WHERE cert = $1", k->keys);
		rc = kpg_run(k, NULL, sql, 1, params);
	}
	pthread_mutex_unlock(&k->mu);
	free(sql);
	return rc;
}

static int kpg_put_pending(void *h, const char *cert, const char *slot, const struct buf *data)
{
	char *s = xasprintf(KPG_PENDING "%s", slot);
	int rc = kpg_put_row(h, cert, s, data);

	free(s);
	return rc;
}

static int kpg_get_pending(void *h, const char *cert, const char *slot, struct buf *out)
{
	char *s = xasprintf(KPG_PENDING "%s", slot);
	struct buf pt = BUF_INIT;
	int rc = kpg_get_row(h, cert, s, &pt);

	if (!rc)
		rc = buf_append(out, pt.data, pt.len);
	buf_wipe(&pt);
	free(s);
	return rc;
}

static int kpg_del_pending(void *h, const char *cert, const char *slot)
{
	struct kpg *k = h;
	char *s = xasprintf(KPG_PENDING "%s", slot ? slot : "%"), *sql;
	const char *params[] = {cert, s};
	int rc;

	/* Slot names are [a-z0-9-]: no LIKE wildcards in them. */
	sql = xasprintf("DELETE FROM %s WHERE cert = $1 AND slot LIKE $2", k->keys);
	pthread_mutex_lock(&k->mu);
	rc = kpg_run(k, NULL, sql, 2, params);
	pthread_mutex_unlock(&k->mu);
	free(sql);
	free(s);
	return rc;
}

static int kpg_list(void *h, struct keystore_ref **refs, size_t *n)
{
	struct kpg *k = h;
	char *sql = xasprintf("SELECT cert, slot FROM %s ORDER BY cert, slot", k->keys);
	PGresult *r = NULL;
	size_t rows, got = 0;
	int rc;

	*refs = NULL;
	*n = 0;
	pthread_mutex_lock(&k->mu);
	rc = kpg_run(k, &r, sql, 0, NULL);
	pthread_mutex_unlock(&k->mu);
	free(sql);
	if (rc)
		return rc;
	rows = (size_t)PQntuples(r);
	*refs = xcalloc(rows + 1, sizeof(**refs));
	for (size_t i = 0; i < rows; i++) {
		const char *slot = PQgetvalue(r, (int)i, 1);
		struct keystore_ref *ref = &(*refs)[got];

		if (!strncmp(slot, KPG_PENDING, strlen(KPG_PENDING))) {
			if (!keystore_slot_ok(slot + strlen(KPG_PENDING)))
				continue;
			ref->slot = xstrdup(slot + strlen(KPG_PENDING));
		} else {
			if (!keystore_serial_ok(slot))
				continue; /* not a row certsync wrote */
			ref->serial = xstrdup(slot);
		}
		ref->cert = xstrdup(PQgetvalue(r, (int)i, 0));
		got++;
	}
	PQclear(r);
	*n = got;
	return 0;
}

/* ---------- rotation ---------- */

/* Re-seals one row under the current key, inside the caller's transaction. */
static int kpg_rekey_row(struct kpg *k, const char *cert, const char *slot)
{
	char *sel = xasprintf("SELECT sealed, key_id FROM %s WHERE cert = $1 AND slot = $2 FOR UPDATE", k->keys);
	char *upd = xasprintf("UPDATE %s SET sealed = $3, key_id = $4 WHERE cert = $1 AND slot = $2", k->keys);
	const char *params[4] = {cert, slot, NULL, k->key_id};
	struct buf pt = BUF_INIT;
	PGresult *r = NULL;
	char *hex = NULL;
	int rc;

	if ((rc = pgconn_exec(k->conn, k->exec_where, &r, sel, 2, params)) || PQntuples(r) == 0)
		goto out; /* gone meanwhile: nothing to re-seal */
	if (!strcmp(PQgetvalue(r, 0, 1), k->key_id))
		goto out;
	if ((rc = kpg_unseal(k, cert, slot, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), PQgetvalue(r, 0, 1),
			     &pt)) ||
	    (rc = kpg_seal(k, cert, slot, &pt, &hex)))
		goto out;
	params[2] = hex;
	rc = pgconn_exec(k->conn, k->exec_where, NULL, upd, 4, params);
out:
	PQclear(r);
	buf_wipe(&pt);
	free(hex);
	free(sel);
	free(upd);
	return rc;
}

/* The key check value sealed under the current key, as bytea text (caller frees). */
static int kpg_check_value(struct kpg *k, char **hex)
{
	struct buf pt = BUF_INIT, sealed = BUF_INIT;
	int rc;

	buf_puts(&pt, KPG_CHECK_TEXT);
	if (!(rc = aead_seal(k->key, KPG_CHECK_AAD, sizeof(KPG_CHECK_AAD) - 1, pt.data, pt.len, &sealed)))
		*hex = kpg_hex(&sealed);
	buf_free(&pt);
	buf_free(&sealed);
	return rc;
}

static int kpg_rekey_locked(struct kpg *k, size_t *n)
{
	char *sql = xasprintf("SELECT cert, slot FROM %s WHERE key_id <> $1 ORDER BY cert, slot", k->keys);
	char *chk = xasprintf("UPDATE %s SET key_id = $1, sealed = $2 WHERE id = 1", k->keycheck);
	char *lock = xasprintf("SELECT key_id FROM %s WHERE id = 1 FOR UPDATE", k->keycheck);
	const char *params[2] = {k->key_id, NULL};
	PGresult *r = NULL;
	char *hex = NULL;
	int rc;

	if ((rc = kpg_alive(k)) || (rc = pgconn_exec(k->conn, k->exec_where, NULL, "BEGIN", 0, NULL)))
		goto done;
	/* The key check row first: two rekeys (or a rekey and an opening check) take turns. */
	if ((rc = pgconn_exec(k->conn, k->exec_where, NULL, lock, 0, NULL)) ||
	    (rc = pgconn_exec(k->conn, k->exec_where, &r, sql, 1, params)))
		goto out;
	for (int i = 0; i < PQntuples(r) && !rc; i++)
		if (!(rc = kpg_rekey_row(k, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1))))
			(*n)++;
	if (rc || (rc = kpg_check_value(k, &hex)))
		goto out;
	params[1] = hex;
	rc = pgconn_exec(k->conn, k->exec_where, NULL, chk, 2, params);
out:
	if (!rc)
		rc = pgconn_exec(k->conn, k->exec_where, NULL, "COMMIT", 0, NULL);
	else
		PQclear(PQexec(k->conn, "ROLLBACK"));
	if (rc)
		*n = 0;
done:
	PQclear(r);
	free(hex);
	free(sql);
	free(chk);
	free(lock);
	return rc;
}

static int kpg_rekey(void *h, size_t *n)
{
	struct kpg *k = h;
	int rc;

	pthread_mutex_lock(&k->mu);
	rc = kpg_rekey_locked(k, n);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

static void kpg_close(void *h)
{
	struct kpg *k = h;

	PQfinish(k->conn);
	OPENSSL_cleanse(k->key, sizeof(k->key));
	OPENSSL_cleanse(k->old, sizeof(k->old));
	pthread_mutex_destroy(&k->mu);
	free(k->exec_where);
	free(k->keys);
	free(k->keycheck);
	free(k);
}

static const struct keystore_backend keystore_pg_backend = {
	kpg_put, kpg_get, kpg_prune, kpg_put_pending, kpg_get_pending, kpg_del_pending, kpg_list, kpg_rekey, kpg_close,
};

/* ---------- opening: the key check ---------- */

static int kpg_wrong_key(struct kpg *k, const char *id)
{
	if (k->has_old)
		return cs_error(
			CS_EAUTH,
			"state.encryptionKey does not open the key store in %s schema %s: it was written with "
			"key %.16s, this key is %s and state.previousEncryptionKey is %s (restore the right key)",
			k->server, k->schema, id, k->key_id, k->old_id);
	return cs_error(CS_EAUTH,
			"state.encryptionKey does not open the key store in %s schema %s: it was written with key "
			"%.16s, this key is %s (set state.previousEncryptionKey to the old key and run certsync state "
			"rekey, or restore the right key)",
			k->server, k->schema, id, k->key_id);
}

/* Creates the key check row under the current key, unless another process just did (then it is read again). */
static int kpg_check_create(struct kpg *k)
{
	char *other = xasprintf("SELECT key_id FROM %s WHERE key_id <> $1 AND key_id <> $2 LIMIT 1", k->keys);
	char *ins = xasprintf("INSERT INTO %s (id, key_id, sealed) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
			      k->keycheck);
	const char *params[2] = {k->key_id, k->has_old ? k->old_id : k->key_id};
	PGresult *r = NULL;
	char *hex = NULL;
	int rc;

	/* Entries without a key check (a restored table?) tell which key they need. */
	if ((rc = kpg_run(k, &r, other, 2, params)))
		goto out;
	if (PQntuples(r) > 0) {
		rc = kpg_wrong_key(k, PQgetvalue(r, 0, 0));
		goto out;
	}
	if ((rc = kpg_check_value(k, &hex)))
		goto out;
	params[1] = hex;
	rc = kpg_run(k, NULL, ins, 2, params);
out:
	PQclear(r);
	free(hex);
	free(other);
	free(ins);
	return rc;
}

/* Checks that the configured key(s) open the store: the key check row under the current or the previous key. */
static int kpg_check(struct kpg *k)
{
	char *sql = xasprintf("SELECT key_id, sealed FROM %s WHERE id = 1", k->keycheck);
	struct buf pt = BUF_INIT, aad = BUF_INIT;
	const unsigned char *key;
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	PGresult *r = NULL;
	int rc;

	for (int attempt = 0; attempt < 2; attempt++) {
		PQclear(r);
		r = NULL;
		if ((rc = kpg_run(k, &r, sql, 0, NULL)))
			goto out;
		if (PQntuples(r) > 0)
			break;
		if (attempt || (rc = kpg_check_create(k)))
			goto out;
	}
	if (PQntuples(r) == 0) {
		rc = cs_error(CS_ERROR, "key store in %s: the key check row could not be created", k->where);
		goto out;
	}
	if (!(key = kpg_key_for(k, PQgetvalue(r, 0, 0)))) {
		rc = kpg_wrong_key(k, PQgetvalue(r, 0, 0));
		goto out;
	}
	buf_append(&aad, KPG_CHECK_AAD, sizeof(KPG_CHECK_AAD) - 1);
	if (!(raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &raw_len)) ||
	    aead_open(key, aad.data, aad.len, raw, raw_len, &pt) || strcmp(pt.data ? pt.data : "", KPG_CHECK_TEXT)) {
		rc = cs_error(CS_EINVALID,
			      "key store in %s: the key check value (table keycheck) is damaged: it names key %s but "
			      "does not open with it",
			      k->where, PQgetvalue(r, 0, 0));
		goto out;
	}
	rc = 0;
out:
	PQfreemem(raw);
	PQclear(r);
	buf_free(&pt);
	buf_free(&aad);
	free(sql);
	return rc;
}

int keystore_open_pg(const struct keystore_pg_opts *o, struct keystore **out)
{
	struct kpg *k;
	int rc;

	*out = NULL;
	if (!o->key)
		return cs_error(CS_EINVALID,
				"the postgres key store needs state.encryptionKey (32 random bytes, base64)");
	if (!pgconn_schema_valid(o->schema))
		return cs_error(CS_EINVALID, "state.schema \"%s\": use lowercase letters, digits and _ (not pg_…)",
				o->schema ? o->schema : "");
	k = xcalloc(1, sizeof(*k));
	pthread_mutex_init(&k->mu, NULL);
	pgconn_describe(o->conninfo, k->server, sizeof(k->server));
	snprintf(k->schema, sizeof(k->schema), "%s", o->schema);
	snprintf(k->where, sizeof(k->where), "%s schema %s", k->server, k->schema);
	k->exec_where = xasprintf("key store in %s", k->where);
	k->keys = pgconn_table(o->schema, "keys");
	k->keycheck = pgconn_table(o->schema, "keycheck");
	memcpy(k->key, o->key, AEAD_KEY_LEN);
	kpg_key_id(k->key, k->key_id);
	if (o->old_key) {
		memcpy(k->old, o->old_key, AEAD_KEY_LEN);
		kpg_key_id(k->old, k->old_id);
		k->has_old = 1;
	}
	if ((rc = pgconn_open(o->conninfo, k->exec_where, &k->conn)) ||
	    (rc = pgconn_migrate(k->conn, o->schema, k->exec_where)) || (rc = kpg_check(k)))
		goto fail;
	*out = keystore_wrap(&keystore_pg_backend, k);
	return 0;
fail:
	kpg_close(k);
	return rc;
}
