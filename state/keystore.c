/*
 * The key store's front (backend-neutral calls) and its file backend: one
 * 0600 file per certificate and serial, holding the key, the chain and
 * ca.crt as length-prefixed sections:
 *
 *   certsync-keystore 1\n
 *   key <n>\n<n bytes>\n  cert <n>\n<n bytes>\n  ca <n>\n<n bytes>\n
 *
 * and one 0600 file per pending slot: store/<certificate>/pending-<slot>.
 */
#include "keystore.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/util.h"
#include "keystore_int.h"

#define KEYSTORE_MAGIC "certsync-keystore 1\n"
#define KEYSTORE_DIR_MODE 0700
#define KEYSTORE_FILE_MODE 0600
#define KEYSTORE_PENDING_PREFIX "pending-"
#define KEYSTORE_MAX_REFS 1000000 /* a store listing beyond this is not one certsync wrote */

struct keystore {
	const struct keystore_backend *be;
	void *h;
};

void keystore_item_init(struct keystore_item *it)
{
	buf_init(&it->key, 0);
	buf_init(&it->cert, 0);
	buf_init(&it->ca, 0);
}

void keystore_item_wipe(struct keystore_item *it)
{
	buf_wipe(&it->key);
	buf_free(&it->cert);
	buf_free(&it->ca);
}

void keystore_refs_free(struct keystore_ref *refs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(refs[i].cert);
		free(refs[i].serial);
		free(refs[i].slot);
	}
	free(refs);
}

struct keystore *keystore_wrap(const struct keystore_backend *be, void *h)
{
	struct keystore *ks = xcalloc(1, sizeof(*ks));

	ks->be = be;
	ks->h = h;
	return ks;
}

int keystore_serial_ok(const char *s)
{
	return s && *s && strlen(s) <= 130 && strspn(s, "0123456789abcdef-") == strlen(s);
}

int keystore_slot_ok(const char *s)
{
	return s && *s && strlen(s) <= KEYSTORE_SLOT_MAX &&
	       strspn(s, "0123456789abcdefghijklmnopqrstuvwxyz-") == strlen(s);
}

static int keystore_cert_ok(const char *cert)
{
	return cert && *cert && !strchr(cert, '/') && strcmp(cert, ".") && strcmp(cert, "..") && strlen(cert) <= 253;
}

/* Certificate names (DNS-1123 subdomains) and serials (hex) are safe path parts; check anyway. */
static int keystore_check(const char *cert, const char *serial)
{
	if (!keystore_cert_ok(cert))
		return cs_error(CS_EINVALID, "key store: \"%s\" is not a certificate name", cert ? cert : "");
	if (serial && !keystore_serial_ok(serial))
		return cs_error(CS_EINVALID, "key store: %s: \"%s\" is not a serial number", cert, serial);
	return 0;
}

static int keystore_check_slot(const char *cert, const char *slot)
{
	if (!keystore_cert_ok(cert))
		return cs_error(CS_EINVALID, "key store: \"%s\" is not a certificate name", cert ? cert : "");
	if (slot && !keystore_slot_ok(slot))
		return cs_error(CS_EINVALID, "key store: %s: \"%s\" is not a pending slot name", cert, slot);
	return 0;
}

/* ---------- the entry format ---------- */

static void keystore_section(struct buf *b, const char *name, const struct buf *v)
{
	buf_printf(b, "%s %zu\n", name, v->len);
	buf_append(b, v->data ? v->data : "", v->len);
	buf_append(b, "\n", 1);
}

void keystore_serialize(const struct keystore_item *it, struct buf *out)
{
	/* Room for all of it first: a growing buffer would leave copies of the key behind in freed memory. */
	buf_reserve(out, strlen(KEYSTORE_MAGIC) + it->key.len + it->cert.len + it->ca.len + 3 * 32);
	buf_puts(out, KEYSTORE_MAGIC);
	keystore_section(out, "key", &it->key);
	keystore_section(out, "cert", &it->cert);
	keystore_section(out, "ca", &it->ca);
}

/* Reads "<name> <len>\n<len bytes>\n" at *pos into out. */
static int keystore_read_section(const struct buf *b, size_t *pos, const char *name, struct buf *out)
{
	size_t nl = strlen(name), at = *pos;
	unsigned long long len;
	char *end;

	if (b->len - at < nl + 2 || memcmp(b->data + at, name, nl) || b->data[at + nl] != ' ')
		return CS_EINVALID;
	at += nl + 1;
	if (b->data[at] < '0' || b->data[at] > '9')
		return CS_EINVALID;
	errno = 0;
	len = strtoull(b->data + at, &end, 10);
	if (errno || *end != '\n' || len > KEYSTORE_MAX_ITEM)
		return CS_EINVALID;
	at = (size_t)(end - b->data) + 1;
	if (b->len - at < len + 1 || b->data[at + len] != '\n')
		return CS_EINVALID;
	buf_clear(out);
	buf_append(out, b->data + at, (size_t)len);
	*pos = at + (size_t)len + 1;
	return 0;
}

int keystore_parse(const struct buf *b, struct keystore_item *out)
{
	struct keystore_item it;
	size_t pos = strlen(KEYSTORE_MAGIC);

	keystore_item_init(&it);
	if (!b->data || b->len < pos || memcmp(b->data, KEYSTORE_MAGIC, pos) ||
	    keystore_read_section(b, &pos, "key", &it.key) || keystore_read_section(b, &pos, "cert", &it.cert) ||
	    keystore_read_section(b, &pos, "ca", &it.ca) || pos != b->len) {
		keystore_item_wipe(&it);
		return CS_EINVALID;
	}
	*out = it;
	return 0;
}

/* ---------- the file backend ---------- */

struct keystore_files {
	char *dir;   /* the key directory (state.keyDir) */
	char *store; /* <dir>/store */
};

static char *kf_cert_dir(const struct keystore_files *f, const char *cert)
{
	return fsutil_join(f->store, cert);
}

/* <store>/<cert>/<prefix><name><suffix> */
static char *kf_file(const struct keystore_files *f, const char *cert, const char *prefix, const char *name,
		     const char *suffix)
{
	char *d = kf_cert_dir(f, cert), *base = xasprintf("%s%s%s", prefix, name, suffix), *p = fsutil_join(d, base);

	free(d);
	free(base);
	return p;
}

static char *kf_path(const struct keystore_files *f, const char *cert, const char *serial)
{
	return kf_file(f, cert, "", serial, ".pem");
}

static char *kf_pending_path(const struct keystore_files *f, const char *cert, const char *slot)
{
	return kf_file(f, cert, KEYSTORE_PENDING_PREFIX, slot, "");
}

/* Creates dir 0700, or tightens an existing one to 0700. */
static int kf_mkdir(const char *dir)
{
	int rc = fsutil_mkdir_p(dir, KEYSTORE_DIR_MODE);

	if (!rc && chmod(dir, KEYSTORE_DIR_MODE))
		rc = cs_error(CS_ERROR, "%s: chmod: %s", dir, strerror(errno));
	return rc;
}

/* Writes data as <store>/<cert>/<path's name>, 0600, atomically (the directories made 0700 first). */
static int kf_write(struct keystore_files *f, const char *cert, const char *path, const void *data, size_t len)
{
	char *d = kf_cert_dir(f, cert);
	int rc;

	if (!(rc = kf_mkdir(f->dir)) && !(rc = kf_mkdir(f->store)) && !(rc = kf_mkdir(d)))
		rc = fsutil_write_atomic(path, data, len, KEYSTORE_FILE_MODE);
	free(d);
	return rc;
}

static int kf_put(void *h, const char *cert, const char *serial, const struct keystore_item *it)
{
	struct keystore_files *f = h;
	char *p = kf_path(f, cert, serial);
	struct buf b = BUF_INIT;
	int rc;

	keystore_serialize(it, &b);
	rc = kf_write(f, cert, p, b.data, b.len);
	buf_wipe(&b);
	free(p);
	return rc;
}

static int kf_get(void *h, const char *cert, const char *serial, struct keystore_item *out)
{
	struct keystore_files *f = h;
	char *p = kf_path(f, cert, serial);
	struct buf b = BUF_INIT;
	int rc;

	if ((rc = fsutil_read_file(p, KEYSTORE_MAX_ITEM, &b)))
		goto out;
	if (keystore_parse(&b, out))
		rc = cs_error(CS_EINVALID, "%s: damaged key store entry (not written by certsync, or truncated)", p);
out:
	buf_wipe(&b);
	free(p);
	return rc;
}

/* 1 when a file name in a certificate's directory is a pending slot's (not a temporary file). */
static int kf_is_pending(const char *name)
{
	size_t n = strlen(KEYSTORE_PENDING_PREFIX);

	return !strncmp(name, KEYSTORE_PENDING_PREFIX, n) && keystore_slot_ok(name + n);
}

/*
 * Removes the files of cert's directory: all but keep's entry and the pending
 * slots (keep set), or everything and the directory (keep NULL).
 */
static int kf_prune(void *h, const char *cert, const char *keep_serial)
{
	struct keystore_files *f = h;
	char *d = kf_cert_dir(f, cert), *keep = keep_serial ? xasprintf("%s.pem", keep_serial) : NULL;
	DIR *dir = opendir(d);
	struct dirent *e;
	int rc = 0, removed = 0;

	if (!dir) {
		if (errno != ENOENT)
			rc = cs_error(CS_ERROR, "%s: %s", d, strerror(errno));
		goto out;
	}
	while ((e = readdir(dir))) {
		char *p;
		int r;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (keep && (!strcmp(e->d_name, keep) ||
			     !strncmp(e->d_name, KEYSTORE_PENDING_PREFIX, strlen(KEYSTORE_PENDING_PREFIX))))
			continue; /* an order in progress keeps its pending material (temporary files: its writer's) */
		p = fsutil_join(d, e->d_name);
		if ((r = fsutil_rm_rf(p)) && !rc)
			rc = r;
		removed++;
		free(p);
	}
	closedir(dir);
	if (!keep && !rc && rmdir(d) && errno != ENOENT)
		rc = cs_error(CS_ERROR, "%s: %s", d, strerror(errno));
	if (!rc && (removed || !keep)) /* nothing removed: nothing to make durable */
		fsutil_fsync_dir(keep ? d : f->store);
out:
	free(d);
	free(keep);
	return rc;
}

/* 1 if name is "pending-….tmp.<pid>.<n>" (fsutil_write_atomic's) of a process that no longer runs. */
static int kf_stale_tmp(const char *name)
{
	const char *t = strstr(name, ".tmp."), *p;
	char *end;
	long pid;

	if (strncmp(name, KEYSTORE_PENDING_PREFIX, strlen(KEYSTORE_PENDING_PREFIX)) || !t)
		return 0;
	for (p = t; (p = strstr(p + 1, ".tmp."));)
		t = p;
	errno = 0;
	pid = strtol(t + 5, &end, 10);
	if (errno || pid <= 0 || *end != '.' || pid == (long)getpid())
		return 0;
	return kill((pid_t)pid, 0) && errno == ESRCH;
}

/* Removes the temporary pending files a killed run left in a certificate's directory. */
static void kf_sweep_stale(const char *d)
{
	DIR *dir = opendir(d);
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir)))
		if (kf_stale_tmp(e->d_name))
			unlinkat(dirfd(dir), e->d_name, 0);
	closedir(dir);
}

static int kf_put_pending(void *h, const char *cert, const char *slot, const struct buf *data)
{
	struct keystore_files *f = h;
	char *p = kf_pending_path(f, cert, slot), *d = kf_cert_dir(f, cert);
	int rc;

	kf_sweep_stale(d);
	rc = kf_write(f, cert, p, data->data ? data->data : "", data->len);
	free(p);
	free(d);
	return rc;
}

static int kf_get_pending(void *h, const char *cert, const char *slot, struct buf *out)
{
	struct keystore_files *f = h;
	char *p = kf_pending_path(f, cert, slot);
	struct buf b = BUF_INIT;
	int rc = fsutil_read_file(p, KEYSTORE_MAX_ITEM, &b);

	if (!rc)
		buf_append(out, b.data, b.len);
	buf_wipe(&b);
	free(p);
	return rc;
}

static int kf_del_pending(void *h, const char *cert, const char *slot)
{
	struct keystore_files *f = h;
	char *d = kf_cert_dir(f, cert), *p;
	DIR *dir;
	struct dirent *e;
	int rc = 0;

	if (slot) {
		p = kf_pending_path(f, cert, slot);
		if (unlink(p) == 0)
			fsutil_fsync_dir(d);
		else if (errno != ENOENT)
			rc = cs_error(CS_ERROR, "%s: %s", p, strerror(errno));
		free(p);
		free(d);
		return rc;
	}
	if (!(dir = opendir(d))) {
		if (errno != ENOENT)
			rc = cs_error(CS_ERROR, "%s: %s", d, strerror(errno));
		free(d);
		return rc;
	}
	while ((e = readdir(dir)))
		if (kf_is_pending(e->d_name) && unlinkat(dirfd(dir), e->d_name, 0) && errno != ENOENT && !rc)
			rc = cs_error(CS_ERROR, "%s/%s: %s", d, e->d_name, strerror(errno));
	closedir(dir);
	fsutil_fsync_dir(d);
	free(d);
	return rc;
}

/* Appends what one certificate's directory holds to *refs. */
static int kf_list_cert(const char *d, const char *cert, struct keystore_ref **refs, size_t *n, size_t *cap)
{
	DIR *dir = opendir(d);
	struct dirent *e;
	size_t pl = strlen(KEYSTORE_PENDING_PREFIX);

	if (!dir)
		return errno == ENOTDIR ? 0 : cs_error(CS_ERROR, "%s: %s", d, strerror(errno));
	while ((e = readdir(dir))) {
		size_t len = strlen(e->d_name);
		struct keystore_ref r = {NULL, NULL, NULL};

		if (kf_is_pending(e->d_name)) {
			r.slot = xstrdup(e->d_name + pl);
		} else if (len > 4 && !strcmp(e->d_name + len - 4, ".pem")) {
			r.serial = xasprintf("%.*s", (int)(len - 4), e->d_name);
			if (!keystore_serial_ok(r.serial)) {
				free(r.serial);
				continue;
			}
		} else {
			continue; /* temporary files, and anything certsync did not write */
		}
		if (*n >= KEYSTORE_MAX_REFS) {
			free(r.serial);
			free(r.slot);
			closedir(dir);
			return cs_error(CS_EINVALID, "%s: more than %d key store entries", d, KEYSTORE_MAX_REFS);
		}
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*refs = xrealloc(*refs, *cap * sizeof(**refs));
		}
		r.cert = xstrdup(cert);
		(*refs)[(*n)++] = r;
	}
	closedir(dir);
	return 0;
}

static int kf_list(void *h, struct keystore_ref **refs, size_t *n)
{
	struct keystore_files *f = h;
	DIR *dir = opendir(f->store);
	struct dirent *e;
	size_t cap = 0;
	int rc = 0;

	*refs = NULL;
	*n = 0;
	if (!dir)
		return errno == ENOENT ? 0 : cs_error(CS_ERROR, "%s: %s", f->store, strerror(errno));
	while (!rc && (e = readdir(dir))) {
		char *d;

		if (!keystore_cert_ok(e->d_name) || e->d_name[0] == '.')
			continue;
		d = fsutil_join(f->store, e->d_name);
		rc = kf_list_cert(d, e->d_name, refs, n, &cap);
		free(d);
	}
	closedir(dir);
	if (rc) {
		keystore_refs_free(*refs, *n);
		*refs = NULL;
		*n = 0;
	}
	return rc;
}

static void kf_close(void *h)
{
	struct keystore_files *f = h;

	free(f->dir);
	free(f->store);
	free(f);
}

static const struct keystore_backend keystore_files_backend = {
	kf_put, kf_get, kf_prune, kf_put_pending, kf_get_pending, kf_del_pending, kf_list, NULL, kf_close,
};

struct keystore *keystore_open_dir(const char *dir)
{
	struct keystore_files *f = xcalloc(1, sizeof(*f));

	f->dir = xstrdup(dir);
	f->store = fsutil_join(dir, "store");
	return keystore_wrap(&keystore_files_backend, f);
}

/* ---------- the backend-neutral calls ---------- */

int keystore_put(struct keystore *ks, const char *cert, const char *serial, const struct keystore_item *it)
{
	int rc = keystore_check(cert, serial);

	if (!rc && !serial)
		rc = cs_error(CS_EINVALID, "key store: %s: no serial number", cert);
	return rc ? rc : ks->be->put(ks->h, cert, serial, it);
}

int keystore_get(struct keystore *ks, const char *cert, const char *serial, struct keystore_item *out)
{
	int rc = keystore_check(cert, serial);

	if (!rc && !serial)
		rc = cs_error(CS_EINVALID, "key store: %s: no serial number", cert);
	return rc ? rc : ks->be->get(ks->h, cert, serial, out);
}

int keystore_prune(struct keystore *ks, const char *cert, const char *keep_serial)
{
	int rc = keystore_check(cert, keep_serial);

	return rc ? rc : ks->be->prune(ks->h, cert, keep_serial);
}

int keystore_put_pending(struct keystore *ks, const char *cert, const char *slot, const struct buf *data)
{
	int rc = keystore_check_slot(cert, slot);

	if (!rc && !slot)
		rc = cs_error(CS_EINVALID, "key store: %s: no pending slot name", cert);
	if (!rc && data->len > KEYSTORE_MAX_ITEM)
		rc = cs_error(CS_EINVALID, "key store: %s: pending %s exceeds %d bytes", cert, slot, KEYSTORE_MAX_ITEM);
	return rc ? rc : ks->be->put_pending(ks->h, cert, slot, data);
}

int keystore_get_pending(struct keystore *ks, const char *cert, const char *slot, struct buf *out)
{
	int rc = keystore_check_slot(cert, slot);

	if (!rc && !slot)
		rc = cs_error(CS_EINVALID, "key store: %s: no pending slot name", cert);
	return rc ? rc : ks->be->get_pending(ks->h, cert, slot, out);
}

int keystore_del_pending(struct keystore *ks, const char *cert, const char *slot)
{
	int rc = keystore_check_slot(cert, slot);

	return rc ? rc : ks->be->del_pending(ks->h, cert, slot);
}

int keystore_rekey(struct keystore *ks, size_t *n)
{
	*n = 0;
	if (!ks->be->rekey)
		return cs_error(CS_EINVALID, "key store: the file backend is not encrypted; rekey applies to the "
					     "postgres backend (state.encryptionKey)");
	return ks->be->rekey(ks->h, n);
}

int keystore_count(struct keystore *ks, size_t *n)
{
	struct keystore_ref *refs = NULL;
	int rc = ks->be->list(ks->h, &refs, n);

	keystore_refs_free(refs, rc ? 0 : *n);
	if (rc)
		*n = 0;
	return rc;
}

/* Copies one entry or pending slot from src to dst. */
static int keystore_copy_one(struct keystore *src, struct keystore *dst, const struct keystore_ref *r)
{
	struct keystore_item it;
	struct buf b = BUF_INIT;
	int rc;

	if (r->slot) {
		if (!(rc = keystore_get_pending(src, r->cert, r->slot, &b)))
			rc = keystore_put_pending(dst, r->cert, r->slot, &b);
		buf_wipe(&b);
		return rc;
	}
	keystore_item_init(&it);
	if (!(rc = keystore_get(src, r->cert, r->serial, &it)))
		rc = keystore_put(dst, r->cert, r->serial, &it);
	keystore_item_wipe(&it);
	return rc;
}

int keystore_copy(struct keystore *src, struct keystore *dst, size_t *n)
{
	struct keystore_ref *refs = NULL;
	size_t count = 0;
	int rc;

	*n = 0;
	if ((rc = src->be->list(src->h, &refs, &count)))
		return rc;
	for (size_t i = 0; i < count && !rc; i++) {
		rc = keystore_copy_one(src, dst, &refs[i]);
		if (rc == CS_ENOTFOUND) /* removed since it was listed (a live store): nothing to copy */
			rc = 0;
		else if (!rc)
			(*n)++;
	}
	keystore_refs_free(refs, count);
	return rc;
}

/* Whether refs holds something of cert (slot NULL: anything; else that pending slot). */
static int keystore_refs_have(const struct keystore_ref *refs, size_t n, const char *cert, const char *slot)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(refs[i].cert, cert) && (!slot || (refs[i].slot && !strcmp(refs[i].slot, slot))))
			return 1;
	return 0;
}

/* Drops dst's ref r if src holds nothing of it; *n counts what went (a certificate once). */
static int keystore_drop_one(struct keystore *dst, const struct keystore_ref *src_refs, size_t n_src,
			     const struct keystore_ref *r, const char *last_cert, size_t *n)
{
	int rc;

	if (!keystore_refs_have(src_refs, n_src, r->cert, NULL)) {
		if (last_cert && !strcmp(last_cert, r->cert))
			return 0; /* pruned with an earlier ref of the same certificate */
		if (!(rc = keystore_prune(dst, r->cert, NULL)))
			(*n)++;
		return rc;
	}
	if (!r->slot || keystore_refs_have(src_refs, n_src, r->cert, r->slot))
		return 0;
	if (!(rc = keystore_del_pending(dst, r->cert, r->slot)))
		(*n)++;
	return rc;
}

int keystore_drop_absent(struct keystore *src, struct keystore *dst, size_t *n)
{
	struct keystore_ref *src_refs = NULL, *dst_refs = NULL;
	size_t n_src = 0, n_dst = 0;
	const char *last = NULL;
	int rc;

	*n = 0;
	if ((rc = src->be->list(src->h, &src_refs, &n_src)))
		return rc;
	if ((rc = dst->be->list(dst->h, &dst_refs, &n_dst))) {
		keystore_refs_free(src_refs, n_src);
		return rc;
	}
	for (size_t i = 0; i < n_dst && !rc; i++) {
		rc = keystore_drop_one(dst, src_refs, n_src, &dst_refs[i], last, n);
		last = dst_refs[i].cert;
	}
	keystore_refs_free(src_refs, n_src);
	keystore_refs_free(dst_refs, n_dst);
	return rc;
}

void keystore_close(struct keystore *ks)
{
	if (!ks)
		return;
	ks->be->close(ks->h);
	free(ks);
}
