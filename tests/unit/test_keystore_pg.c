/*
 * The key store's PostgreSQL backend against a real server (make unit starts
 * one): round trips, every value sealed to its row, no key text in the
 * table, the key check at open, rotation, copying between backends,
 * concurrent use and a dropped connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../manifests/manifest.h"
#include "../../reconciler/config.h"
#include "../../reconciler/engine.h"
#include "../../reconciler/plan/plan.h"
#include "../../reconciler/reconcile.h"
#include "../../state/keystore.h"
#include "../../state/state.h"
#include "../../state/pgconn.h"
#include "../../util/aead.h"
#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "testutil.h"

static unsigned char K1[AEAD_KEY_LEN], K2[AEAD_KEY_LEN], K3[AEAD_KEY_LEN];

static int setup(void **unused)
{
	(void)unused;
	for (int i = 0; i < AEAD_KEY_LEN; i++) {
		K1[i] = (unsigned char)(0x11 + i);
		K2[i] = (unsigned char)(0x80 + 3 * i);
		K3[i] = (unsigned char)(0xf0 - i);
	}
	return 0;
}

static int open_pg(const char *schema, const unsigned char *key, const unsigned char *old, struct keystore **ks)
{
	struct keystore_pg_opts o = {test_pg_url(), schema, key, old};

	return keystore_open_pg(&o, ks);
}

static struct keystore *must_open(const char *schema, const unsigned char *key, const unsigned char *old)
{
	struct keystore *ks = NULL;

	assert_int_equal(open_pg(schema, key, old, &ks), 0);
	assert_non_null(ks);
	return ks;
}

/* An item with a real private key (PEM) and its base64 body (caller frees *body). */
static void real_item(struct keystore_item *it, const char *tag, char **body)
{
	struct crypto_key *k = NULL;
	char *b, *e;

	keystore_item_init(it);
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &k), 0);
	assert_int_equal(crypto_key_to_pem(k, &it->key), 0);
	crypto_key_free(k);
	buf_printf(&it->cert, "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n", tag);
	buf_puts(&it->ca, "ca\n");
	if (body) {
		b = strchr(it->key.data, '\n') + 1;
		e = strstr(b, "-----END");
		*body = xasprintf("%.*s", (int)(e - b), b);
		/* the first line of the body: base64 without newlines */
		if ((e = strchr(*body, '\n')))
			*e = '\0';
	}
}

static void item_eq(const struct keystore_item *a, const struct keystore_item *b)
{
	assert_int_equal(a->key.len, b->key.len);
	assert_memory_equal(a->key.data, b->key.data, a->key.len);
	assert_int_equal(a->cert.len, b->cert.len);
	assert_memory_equal(a->cert.data, b->cert.data, a->cert.len);
	assert_int_equal(a->ca.len, b->ca.len);
	if (a->ca.len)
		assert_memory_equal(a->ca.data, b->ca.data, a->ca.len);
}

static PGconn *sql_conn(void)
{
	PGconn *c = NULL;

	assert_int_equal(pgconn_open(test_pg_url(), "test", &c), 0);
	return c;
}

/* Runs a statement with "@S" standing for the quoted schema. */
static void sql(PGconn *c, const char *schema, const char *fmt)
{
	struct buf b = BUF_INIT;
	const char *p;

	while ((p = strstr(fmt, "@S"))) {
		buf_append(&b, fmt, (size_t)(p - fmt));
		buf_printf(&b, "\"%s\"", schema);
		fmt = p + 2;
	}
	buf_puts(&b, fmt);
	assert_int_equal(pgconn_exec(c, "test", NULL, b.data, 0, NULL), 0);
	buf_free(&b);
}

static void test_round_trip_prune_and_pending_slots(void **unused)
{
	char *schema = test_pg_schema();
	struct keystore *ks = must_open(schema, K1, NULL);
	struct keystore_item a, b, out;
	struct buf p = BUF_INIT, got = BUF_INIT;
	size_t n;

	(void)unused;
	real_item(&a, "A", NULL);
	real_item(&b, "B", NULL);
	assert_int_equal(keystore_get(ks, "shop", "01", &out), CS_ENOTFOUND);
	assert_int_equal(keystore_put(ks, "shop", "01", &a), 0);
	assert_int_equal(keystore_put(ks, "shop", "02", &b), 0);
	assert_int_equal(keystore_put(ks, "blog", "01", &b), 0);
	assert_int_equal(keystore_get(ks, "shop", "01", &out), 0);
	item_eq(&a, &out);
	keystore_item_wipe(&out);
	/* the same serial again replaces */
	assert_int_equal(keystore_put(ks, "shop", "01", &b), 0);
	assert_int_equal(keystore_get(ks, "shop", "01", &out), 0);
	item_eq(&b, &out);
	keystore_item_wipe(&out);
	/* pending slots */
	buf_puts(&p, "-----BEGIN PRIVATE KEY-----\npending\n-----END PRIVATE KEY-----\n");
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_put_pending(ks, "shop", "key", &p), 0);
	assert_int_equal(keystore_put_pending(ks, "shop", "csr", &p), 0);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), 0);
	assert_string_equal(got.data, p.data);
	buf_wipe(&got);
	assert_int_equal(keystore_put_pending(ks, "shop", "Bad/Slot", &p), CS_EINVALID);
	assert_int_equal(keystore_count(ks, &n), 0);
	assert_int_equal(n, 5);
	/* pruning keeps one serial and the pending slots; pruning all takes those too */
	assert_int_equal(keystore_prune(ks, "shop", "02"), 0);
	assert_int_equal(keystore_get(ks, "shop", "01", &out), CS_ENOTFOUND);
	assert_int_equal(keystore_get(ks, "shop", "02", &out), 0);
	keystore_item_wipe(&out);
	assert_int_equal(keystore_get_pending(ks, "shop", "csr", &got), 0);
	buf_wipe(&got);
	assert_int_equal(keystore_del_pending(ks, "shop", "csr"), 0);
	assert_int_equal(keystore_del_pending(ks, "shop", "csr"), 0); /* absent: success */
	assert_int_equal(keystore_get_pending(ks, "shop", "csr", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), 0);
	buf_wipe(&got);
	assert_int_equal(keystore_put_pending(ks, "shop", "csr", &p), 0);
	assert_int_equal(keystore_del_pending(ks, "shop", NULL), 0);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_get(ks, "shop", "02", &out), 0); /* entries stay */
	keystore_item_wipe(&out);
	assert_int_equal(keystore_put_pending(ks, "shop", "key", &p), 0);
	assert_int_equal(keystore_prune(ks, "shop", NULL), 0);
	assert_int_equal(keystore_get(ks, "shop", "02", &out), CS_ENOTFOUND);
	assert_int_equal(keystore_get_pending(ks, "shop", "key", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_get(ks, "blog", "01", &out), 0); /* another certificate is not touched */
	keystore_item_wipe(&out);
	/* the file backend has nothing to rekey; this one reports 0 when all is under the current key */
	assert_int_equal(keystore_rekey(ks, &n), 0);
	assert_int_equal(n, 0);
	buf_wipe(&p);
	keystore_item_wipe(&a);
	keystore_item_wipe(&b);
	keystore_close(ks);
	free(schema);
}

static void test_a_row_moved_or_altered_does_not_open(void **unused)
{
	char *schema = test_pg_schema();
	struct keystore *ks = must_open(schema, K1, NULL);
	PGconn *c = sql_conn();
	struct keystore_item a, out;
	struct buf p = BUF_INIT, got = BUF_INIT;
	char *body = NULL;

	(void)unused;
	real_item(&a, "A", &body);
	assert_int_equal(keystore_put(ks, "shop", "0a", &a), 0);
	assert_int_equal(keystore_put(ks, "blog", "0b", &a), 0);
	/* moved to another certificate: does not open there */
	sql(c, schema, "UPDATE @S.keys SET cert = 'other' WHERE cert = 'shop'");
	assert_int_equal(keystore_get(ks, "other", "0a", &out), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificate other serial 0a is damaged"));
	assert_non_null(strstr(cs_errmsg(), schema));
	/* to another serial of the same certificate: neither */
	sql(c, schema, "UPDATE @S.keys SET slot = '0c' WHERE cert = 'blog'");
	assert_int_equal(keystore_get(ks, "blog", "0c", &out), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificate blog serial 0c is damaged"));
	/* back in its place, it opens again */
	sql(c, schema, "UPDATE @S.keys SET slot = '0b' WHERE cert = 'blog'");
	assert_int_equal(keystore_get(ks, "blog", "0b", &out), 0);
	item_eq(&a, &out);
	keystore_item_wipe(&out);
	/* one flipped byte */
	sql(c, schema,
	    "UPDATE @S.keys SET sealed = set_byte(sealed, 30, get_byte(sealed, 30) # 1) WHERE cert = 'blog'");
	assert_int_equal(keystore_get(ks, "blog", "0b", &out), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificate blog serial 0b is damaged"));
	assert_null(strstr(cs_errmsg(), "PRIVATE"));
	assert_null(strstr(cs_errmsg(), body));
	/* truncated, and not bytea that was ever sealed */
	sql(c, schema, "UPDATE @S.keys SET sealed = substring(sealed from 1 for 20) WHERE cert = 'blog'");
	assert_int_equal(keystore_get(ks, "blog", "0b", &out), CS_EINVALID);
	sql(c, schema, "UPDATE @S.keys SET sealed = '' WHERE cert = 'blog'");
	assert_int_equal(keystore_get(ks, "blog", "0b", &out), CS_EINVALID);
	/* a pending slot moved to be an entry (or the reverse) does not open either */
	buf_puts(&p, "pending key");
	assert_int_equal(keystore_put_pending(ks, "web", "key", &p), 0);
	sql(c, schema, "UPDATE @S.keys SET slot = 'pending:csr' WHERE cert = 'web'");
	assert_int_equal(keystore_get_pending(ks, "web", "csr", &got), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificate web pending csr is damaged"));
	assert_int_equal(got.len, 0);
	/* an entry under a key neither configured key is: CS_EAUTH (not a silent miss) */
	sql(c, schema, "UPDATE @S.keys SET key_id = '0123456789abcdef' WHERE cert = 'web'");
	assert_int_equal(keystore_get_pending(ks, "web", "csr", &got), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "0123456789abcdef"));
	PQfinish(c);
	buf_free(&p);
	free(body);
	keystore_item_wipe(&a);
	keystore_close(ks);
	free(schema);
}

/* 1 when needle occurs in any column of any row of the schema's key tables (bytea as raw bytes). */
static int table_holds(PGconn *c, const char *schema, const char *needle)
{
	char *q = xasprintf("SELECT cert, slot, key_id, sealed FROM \"%s\".keys UNION ALL "
			    "SELECT 'check', '', key_id, sealed FROM \"%s\".keycheck",
			    schema, schema);
	PGresult *r = NULL;
	int found = 0;

	assert_int_equal(pgconn_exec(c, "test", &r, q, 0, NULL), 0);
	assert_true(PQntuples(r) > 0);
	for (int i = 0; i < PQntuples(r) && !found; i++) {
		size_t len = 0;
		unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &len);

		found = memmem(raw, len, needle, strlen(needle)) != NULL || strstr(PQgetvalue(r, i, 3), needle) != NULL;
		for (int col = 0; col < 3; col++)
			found = found || strstr(PQgetvalue(r, i, col), needle) != NULL;
		PQfreemem(raw);
	}
	PQclear(r);
	free(q);
	return found;
}

static void test_the_table_never_holds_the_key_text(void **unused)
{
	char *schema = test_pg_schema(), *body = NULL;
	struct keystore *ks = must_open(schema, K1, NULL);
	PGconn *c = sql_conn();
	struct keystore_item a;
	char piece[17];

	(void)unused;
	real_item(&a, "A", &body);
	assert_int_equal(keystore_put(ks, "shop", "0a", &a), 0);
	assert_int_equal(keystore_put_pending(ks, "shop", "key", &a.key), 0);
	assert_true(table_holds(c, schema, "shop")); /* the search does find what is there */
	assert_false(table_holds(c, schema, "PRIVATE KEY"));
	assert_false(table_holds(c, schema, "BEGIN"));
	assert_false(table_holds(c, schema, body));
	snprintf(piece, sizeof(piece), "%s", body + 20);
	assert_false(table_holds(c, schema, piece));
	assert_false(table_holds(c, schema, "CERTIFICATE")); /* the chain is sealed too */
	PQfinish(c);
	free(body);
	keystore_item_wipe(&a);
	keystore_close(ks);
	free(schema);
}

/* The base64 of a key, to search messages for it. */
static void b64(const unsigned char *key, char *out, size_t n)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i + 2 < AEAD_KEY_LEN && o + 4 < n; i += 3) {
		unsigned v = (unsigned)key[i] << 16 | (unsigned)key[i + 1] << 8 | key[i + 2];

		out[o++] = al[v >> 18 & 63];
		out[o++] = al[v >> 12 & 63];
		out[o++] = al[v >> 6 & 63];
		out[o++] = al[v & 63];
	}
	out[o] = '\0';
}

static void no_key_material(const char *msg)
{
	char text[64], hex[9];
	const unsigned char *keys[] = {K1, K2, K3};

	for (size_t i = 0; i < 3; i++) {
		b64(keys[i], text, sizeof(text));
		text[12] = '\0';
		assert_null(strstr(msg, text));
		snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", keys[i][0], keys[i][1], keys[i][2], keys[i][3]);
		assert_null(strstr(msg, hex));
	}
}

/* The key id certsync shows for a key: the first line's "this key is <id>". */
static void id_after(const char *msg, const char *marker, char out[17])
{
	const char *p = strstr(msg, marker);

	assert_non_null(p);
	snprintf(out, 17, "%s", p + strlen(marker));
}

static void test_a_wrong_key_is_refused_at_open_naming_both_key_ids(void **unused)
{
	char *schema = test_pg_schema(), msg[1024], id1[17], id2[17], id3[17];
	struct keystore *ks = must_open(schema, K1, NULL), *bad = NULL;
	struct keystore_item a;
	const char *pw_start, *pw_end;
	char pw[64];

	(void)unused;
	real_item(&a, "A", NULL);
	assert_int_equal(keystore_put(ks, "shop", "0a", &a), 0);
	keystore_close(ks);
	assert_int_equal(open_pg(schema, K2, NULL, &bad), CS_EAUTH);
	assert_null(bad);
	snprintf(msg, sizeof(msg), "%s", cs_errmsg());
	print_message("%s\n", msg);
	assert_non_null(strstr(msg, "state.encryptionKey does not open the key store in postgres "));
	assert_non_null(strstr(msg, "schema "));
	assert_non_null(strstr(msg, schema));
	assert_non_null(strstr(msg, "set state.previousEncryptionKey to the old key and run certsync state rekey"));
	id_after(msg, "it was written with key ", id1);
	id_after(msg, "this key is ", id2);
	assert_int_equal(strspn(id1, "0123456789abcdef"), 16);
	assert_int_equal(strspn(id2, "0123456789abcdef"), 16);
	assert_string_not_equal(id1, id2);
	no_key_material(msg);
	/* the password of the URL is not in it either */
	pw_start = strchr(strstr(test_pg_url(), "//") + 2, ':') + 1;
	pw_end = strchr(pw_start, '@');
	snprintf(pw, sizeof(pw), "%.*s", (int)(pw_end - pw_start), pw_start);
	assert_null(strstr(msg, pw));
	/* a previous key that is not the store's key does not help */
	assert_int_equal(open_pg(schema, K2, K3, &bad), CS_EAUTH);
	id_after(cs_errmsg(), "state.previousEncryptionKey is ", id3);
	assert_string_not_equal(id3, id1);
	no_key_material(cs_errmsg());
	/* the same key as before opens; ids are stable */
	ks = must_open(schema, K1, NULL);
	keystore_close(ks);
	assert_int_equal(open_pg(schema, K2, NULL, &bad), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), id1));
	assert_non_null(strstr(cs_errmsg(), id2));
	keystore_item_wipe(&a);
	free(schema);
}

static void test_rotation_reads_old_entries_rekeys_them_then_needs_only_the_new_key(void **unused)
{
	char *schema = test_pg_schema();
	struct keystore *ks = must_open(schema, K1, NULL), *bad = NULL;
	struct keystore_item a, b, out;
	struct buf p = BUF_INIT, got = BUF_INIT;
	PGconn *c = sql_conn();
	PGresult *r = NULL;
	char *q;
	size_t n = 99;

	(void)unused;
	real_item(&a, "A", NULL);
	real_item(&b, "B", NULL);
	buf_puts(&p, "csr text");
	assert_int_equal(keystore_put(ks, "shop", "0a", &a), 0);
	assert_int_equal(keystore_put(ks, "blog", "0b", &b), 0);
	assert_int_equal(keystore_put_pending(ks, "shop", "csr", &p), 0);
	keystore_close(ks);
	/* new key, old key as previous: everything reads, new writes use the new key */
	ks = must_open(schema, K2, K1);
	assert_int_equal(keystore_get(ks, "shop", "0a", &out), 0);
	item_eq(&a, &out);
	keystore_item_wipe(&out);
	assert_int_equal(keystore_get_pending(ks, "shop", "csr", &got), 0);
	buf_free(&got);
	assert_int_equal(keystore_put(ks, "web", "0c", &b), 0);
	q = xasprintf("SELECT count(DISTINCT key_id) FROM \"%s\".keys", schema);
	assert_int_equal(pgconn_exec(c, "test", &r, q, 0, NULL), 0);
	assert_string_equal(PQgetvalue(r, 0, 0), "2");
	PQclear(r);
	/* rekey: the three old values, none of the new one */
	assert_int_equal(keystore_rekey(ks, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(keystore_rekey(ks, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(pgconn_exec(c, "test", &r, q, 0, NULL), 0);
	assert_string_equal(PQgetvalue(r, 0, 0), "1");
	PQclear(r);
	keystore_close(ks);
	/* the new key alone opens and reads all of it; the old one no longer opens */
	ks = must_open(schema, K2, NULL);
	assert_int_equal(keystore_get(ks, "shop", "0a", &out), 0);
	item_eq(&a, &out);
	keystore_item_wipe(&out);
	assert_int_equal(keystore_get(ks, "blog", "0b", &out), 0);
	item_eq(&b, &out);
	keystore_item_wipe(&out);
	assert_int_equal(keystore_get(ks, "web", "0c", &out), 0);
	keystore_item_wipe(&out);
	assert_int_equal(keystore_get_pending(ks, "shop", "csr", &got), 0);
	assert_string_equal(got.data, "csr text");
	buf_free(&got);
	keystore_close(ks);
	assert_int_equal(open_pg(schema, K1, NULL, &bad), CS_EAUTH);
	/* a damaged entry stops a rekey and changes nothing */
	ks = must_open(schema, K3, K2);
	sql(c, schema, "UPDATE @S.keys SET sealed = set_byte(sealed, 30, get_byte(sealed, 30) # 1) WHERE cert = 'web'");
	assert_int_equal(keystore_rekey(ks, &n), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "certificate web serial 0c is damaged"));
	assert_int_equal(n, 0);
	keystore_close(ks);
	ks = must_open(schema, K2, NULL); /* the key check still names K2: the rekey was rolled back */
	assert_int_equal(keystore_get(ks, "shop", "0a", &out), 0);
	keystore_item_wipe(&out);
	keystore_close(ks);
	free(q);
	PQfinish(c);
	buf_free(&p);
	keystore_item_wipe(&a);
	keystore_item_wipe(&b);
	free(schema);
}

/* Every entry and pending slot of a equals b's (both hold the same set). */
static void stores_equal(struct keystore *a, struct keystore *b, const char *const *certs, const char *const *serials,
			 size_t n)
{
	size_t na, nb;

	assert_int_equal(keystore_count(a, &na), 0);
	assert_int_equal(keystore_count(b, &nb), 0);
	assert_int_equal(na, nb);
	for (size_t i = 0; i < n; i++) {
		struct keystore_item x, y;

		assert_int_equal(keystore_get(a, certs[i], serials[i], &x), 0);
		assert_int_equal(keystore_get(b, certs[i], serials[i], &y), 0);
		item_eq(&x, &y);
		keystore_item_wipe(&x);
		keystore_item_wipe(&y);
	}
}

static void test_copy_file_to_postgres_to_file_is_lossless(void **unused)
{
	char *dir = test_mkdtemp(), *k1 = fsutil_join(dir, "k1"), *k2 = fsutil_join(dir, "k2"),
	     *schema = test_pg_schema();
	struct keystore *f1 = keystore_open_dir(k1), *f2 = keystore_open_dir(k2), *pg = must_open(schema, K1, NULL);
	static const char *const certs[] = {"shop", "shop", "blog", "a.b-c"};
	static const char *const serials[] = {"0a", "0b", "1234", "ff"};
	struct keystore_item it;
	struct buf p = BUF_INIT, got = BUF_INIT;
	size_t n = 0;
	char *junk;

	(void)unused;
	for (size_t i = 0; i < 4; i++) {
		real_item(&it, serials[i], NULL);
		assert_int_equal(keystore_put(f1, certs[i], serials[i], &it), 0);
		keystore_item_wipe(&it);
	}
	buf_puts(&p, "pending\nkey\n");
	assert_int_equal(keystore_put_pending(f1, "new", "key", &p), 0);
	assert_int_equal(keystore_put_pending(f1, "new", "csr", &p), 0);
	junk = test_write(k1, "store/shop/0a.pem.tmp.1.0", "half", 0600); /* not an entry: not copied */
	free(junk);
	assert_int_equal(keystore_copy(f1, pg, &n), 0);
	assert_int_equal(n, 6);
	stores_equal(f1, pg, certs, serials, 4);
	assert_int_equal(keystore_get_pending(pg, "new", "csr", &got), 0);
	assert_string_equal(got.data, p.data);
	buf_free(&got);
	assert_int_equal(keystore_copy(pg, f2, &n), 0);
	assert_int_equal(n, 6);
	stores_equal(f1, f2, certs, serials, 4);
	assert_int_equal(keystore_get_pending(f2, "new", "key", &got), 0);
	assert_string_equal(got.data, p.data);
	buf_free(&got);
	/* copying into a store replaces same-named entries and stays equal */
	assert_int_equal(keystore_copy(f1, pg, &n), 0);
	stores_equal(f1, pg, certs, serials, 4);
	/* a damaged source entry stops the copy, naming it */
	junk = test_write(k1, "store/blog/1234.pem", "garbage", 0600);
	free(junk);
	assert_int_equal(keystore_copy(f1, f2, &n), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "store/blog/1234.pem"));
	buf_free(&p);
	keystore_close(f1);
	keystore_close(f2);
	keystore_close(pg);
	free(k1);
	free(k2);
	free(schema);
	test_rmdir(dir);
}

/* state migrate --force: what the replaced state alone held leaves the target; what both hold stays. */
static void test_drop_absent_removes_what_only_the_replaced_store_held(void **unused)
{
	char *dir = test_mkdtemp(), *k1 = fsutil_join(dir, "k1"), *schema = test_pg_schema();
	struct keystore *src = keystore_open_dir(k1), *dst = must_open(schema, K1, NULL);
	struct keystore_item it, got;
	struct buf p = BUF_INIT, b = BUF_INIT;
	size_t n = 9;

	(void)unused;
	buf_puts(&p, "pending\n");
	real_item(&it, "0a", NULL);
	assert_int_equal(keystore_put(src, "shop", "0a", &it), 0);
	assert_int_equal(keystore_put_pending(src, "new", "key", &p), 0);
	/* the target's own: a certificate the source lacks, and a finished order's slots the source lacks */
	assert_int_equal(keystore_put(dst, "old", "01", &it), 0);
	assert_int_equal(keystore_put_pending(dst, "old", "key", &p), 0);
	assert_int_equal(keystore_put_pending(dst, "shop", "key", &p), 0);
	assert_int_equal(keystore_put_pending(dst, "shop", "csr", &p), 0);
	assert_int_equal(keystore_copy(src, dst, &n), 0);
	assert_int_equal(keystore_drop_absent(src, dst, &n), 0);
	assert_int_equal(n, 3); /* old (entry and slot at once), shop's key and csr slots */
	keystore_item_init(&got);
	assert_int_equal(keystore_get(dst, "old", "01", &got), CS_ENOTFOUND);
	assert_int_equal(keystore_get_pending(dst, "old", "key", &b), CS_ENOTFOUND);
	assert_int_equal(keystore_get_pending(dst, "shop", "csr", &b), CS_ENOTFOUND);
	assert_int_equal(keystore_get(dst, "shop", "0a", &got), 0);
	keystore_item_wipe(&got);
	assert_int_equal(keystore_get_pending(dst, "new", "key", &b), 0);
	buf_free(&b);
	assert_int_equal(keystore_count(dst, &n), 0);
	assert_int_equal(n, 2);
	/* nothing left to drop */
	assert_int_equal(keystore_drop_absent(src, dst, &n), 0);
	assert_int_equal(n, 0);
	keystore_item_wipe(&it);
	buf_free(&p);
	keystore_close(src);
	keystore_close(dst);
	free(k1);
	free(schema);
	test_rmdir(dir);
}

struct worker {
	struct keystore *ks;
	int id, failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 25; i++) {
		struct keystore_item in, out;
		char cert[32], serial[16];

		snprintf(cert, sizeof(cert), "c%d", w->id);
		snprintf(serial, sizeof(serial), "%x", i + 1);
		keystore_item_init(&in);
		buf_printf(&in.key, "key %d %d", w->id, i);
		buf_puts(&in.cert, "cert");
		if (keystore_put(w->ks, cert, serial, &in) || keystore_get(w->ks, cert, serial, &out) ||
		    strcmp(out.key.data, in.key.data))
			w->failures++;
		else
			keystore_item_wipe(&out);
		if (keystore_prune(w->ks, cert, serial))
			w->failures++;
		keystore_item_wipe(&in);
	}
	return NULL;
}

static void test_workers_share_one_handle(void **unused)
{
	char *schema = test_pg_schema();
	struct keystore *ks = must_open(schema, K1, NULL);
	struct worker w[4];
	pthread_t t[4];
	size_t n;

	(void)unused;
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ks, i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(keystore_count(ks, &n), 0);
	assert_int_equal(n, 4); /* one kept serial per certificate */
	keystore_close(ks);
	free(schema);
}

static void test_a_dropped_connection_is_reopened(void **unused)
{
	char *schema = test_pg_schema();
	struct keystore *ks = must_open(schema, K1, NULL);
	PGconn *c = sql_conn();
	struct keystore_item a, out;
	PGresult *r = NULL;

	(void)unused;
	real_item(&a, "A", NULL);
	assert_int_equal(keystore_put(ks, "shop", "0a", &a), 0);
	/* what a server restart does to the store's connection */
	assert_int_equal(pgconn_exec(c, "test", &r,
				     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
				     "current_database() AND application_name = 'certsync' AND pid <> pg_backend_pid()",
				     0, NULL),
			 0);
	assert_true(PQntuples(r) >= 1);
	PQclear(r);
	assert_int_equal(keystore_get(ks, "shop", "0a", &out), 0);
	item_eq(&a, &out);
	keystore_item_wipe(&out);
	PQfinish(c);
	keystore_item_wipe(&a);
	keystore_close(ks);
	free(schema);
}

static void test_open_needs_a_key_and_a_valid_schema(void **unused)
{
	struct keystore *ks = NULL;
	struct keystore_pg_opts o = {test_pg_url(), "certsync", NULL, NULL};

	(void)unused;
	assert_int_equal(keystore_open_pg(&o, &ks), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "state.encryptionKey"));
	o.key = K1;
	o.schema = "Bad-Schema";
	assert_int_equal(keystore_open_pg(&o, &ks), CS_EINVALID);
	assert_null(ks);
	o.schema = "certsync_unreachable";
	o.conninfo = "postgresql://u:pw-not-shown@127.0.0.1:1/db?connect_timeout=2";
	assert_int_equal(keystore_open_pg(&o, &ks), CS_ETRANSIENT);
	assert_null(strstr(cs_errmsg(), "pw-not-shown"));
	assert_null(ks);
}

/* Applies certificate "www" (the built-in CA) with the engine, keys in ks (NULL: the engine's default). */
static void engine_run(const char *dir, struct keystore *ks, char serial[131])
{
	char *yaml = xasprintf("source: {repo: r}\nstate: {path: %s/state/state.json}\noutput: {root: %s/out}\n"
			       "issuers:\n  internal: {type: ca, selfSigned: true}\n",
			       dir, dir);
	char *man = xstrdup("apiVersion: certsync/v1\nkind: Certificate\nmetadata: {name: www}\n"
			    "spec:\n  issuer: internal\n  dnsNames: [www.example.test]\n");
	struct diags d = DIAGS_INIT;
	struct config *cfg = NULL;
	struct cert_spec **specs = NULL;
	size_t n_specs = 0;
	struct desired des;
	struct reconcile_opts ro;
	struct state_backend *be = NULL;
	struct state *st = NULL;
	struct plan *p = NULL;
	struct engine_opts eo;
	struct engine_result res;
	const struct state_cert *rec;

	config_parse("/etc/certsync/c.yaml", yaml, strlen(yaml), &cfg, &d);
	manifest_parse_file("www.yaml", man, strlen(man), &specs, &n_specs, &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(n_specs, 1);
	memset(&des, 0, sizeof(des));
	memset(des.commit, '0', 40);
	des.specs = specs;
	des.n_specs = n_specs;
	memset(&ro, 0, sizeof(ro));
	ro.now = util_now();
	assert_int_equal(state_file_open(cfg->state_path, &be), 0);
	assert_int_equal(state_lock(be, "apply"), 0);
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(reconcile_plan(cfg, "r", "main", &des, st, 0, &ro, &p), 0);
	memset(&eo, 0, sizeof(eo));
	eo.parallelism = 1;
	eo.keys = ks;
	assert_int_equal(engine_apply(cfg, be, st, p, specs, n_specs, &eo, &res), 0);
	assert_int_equal(res.done, 1);
	rec = state_cert_get(st, "www");
	assert_non_null(rec);
	assert_non_null(rec->serial);
	snprintf(serial, 131, "%s", rec->serial);
	plan_free(p);
	state_free(st);
	state_unlock(be);
	state_backend_free(be);
	cert_spec_free(specs[0]);
	free(specs);
	config_free(cfg);
	diags_free(&d);
	free(man);
	free(yaml);
}

static void test_the_engine_keeps_keys_in_the_store_it_is_given(void **unused)
{
	char *dir = test_mkdtemp(), *schema = test_pg_schema(), *keydir, *other = test_mkdtemp(), serial[131];
	struct keystore *ks = must_open(schema, K1, NULL), *files;
	struct keystore_item it;
	struct buf installed = BUF_INIT;
	char *p;

	(void)unused;
	engine_run(dir, ks, serial);
	/* the key is in the postgres store, and is the installed one; nothing went to the key directory */
	assert_int_equal(keystore_get(ks, "www", serial, &it), 0);
	p = fsutil_join(dir, "out/www/tls.key");
	assert_int_equal(fsutil_read_file(p, 65536, &installed), 0);
	free(p);
	assert_int_equal(installed.len, it.key.len);
	assert_memory_equal(installed.data, it.key.data, it.key.len);
	keystore_item_wipe(&it);
	buf_wipe(&installed);
	keydir = fsutil_join(dir, "state/keys/store");
	assert_false(fsutil_exists(keydir));
	free(keydir);
	/* without one, the file store under state.keyDir as before */
	engine_run(other, NULL, serial);
	keydir = fsutil_join(other, "state/keys");
	files = keystore_open_dir(keydir);
	assert_int_equal(keystore_get(files, "www", serial, &it), 0);
	keystore_item_wipe(&it);
	assert_int_equal(keystore_get(ks, "www", serial, &it), CS_ENOTFOUND);
	keystore_close(files);
	free(keydir);
	keystore_close(ks);
	free(schema);
	test_rmdir(dir);
	test_rmdir(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_prune_and_pending_slots),
		cmocka_unit_test(test_a_row_moved_or_altered_does_not_open),
		cmocka_unit_test(test_the_table_never_holds_the_key_text),
		cmocka_unit_test(test_a_wrong_key_is_refused_at_open_naming_both_key_ids),
		cmocka_unit_test(test_rotation_reads_old_entries_rekeys_them_then_needs_only_the_new_key),
		cmocka_unit_test(test_copy_file_to_postgres_to_file_is_lossless),
		cmocka_unit_test(test_drop_absent_removes_what_only_the_replaced_store_held),
		cmocka_unit_test(test_workers_share_one_handle),
		cmocka_unit_test(test_a_dropped_connection_is_reopened),
		cmocka_unit_test(test_open_needs_a_key_and_a_valid_schema),
		cmocka_unit_test(test_the_engine_keeps_keys_in_the_store_it_is_given),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
