/*
 * The key store's front (backend-neutral calls) and its file backend: one
 * 0600 file per certificate and serial, holding the key, the chain and
 * ca.crt as length-prefixed sections:
 *
 *   certsync-keystore 1\n
 *   key <n>\n<n bytes>\n  cert <n>\n<n bytes>\n  ca <n>\n<n bytes>\n
 */
#include "keystore.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/util.h"

#define KEYSTORE_MAGIC "certsync-keystore 1\n"
#define KEYSTORE_DIR_MODE 0700
#define KEYSTORE_FILE_MODE 0600

/* A backend: the same contracts as the public calls, on its own handle. */
struct keystore_backend {
	int (*put)(void *h, const char *cert, const char *serial, const struct keystore_item *it);
	int (*get)(void *h, const char *cert, const char *serial, struct keystore_item *out);
	int (*prune)(void *h, const char *cert, const char *keep_serial);
	void (*close)(void *h);
};

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

/* Certificate names (DNS-1123 subdomains) and serials (hex) are safe path parts; check anyway. */
static int keystore_check(const char *cert, const char *serial)
{
	if (!cert || !*cert || strchr(cert, '/') || !strcmp(cert, ".") || !strcmp(cert, "..") || strlen(cert) > 253)
		return cs_error(CS_EINVALID, "key store: \"%s\" is not a certificate name", cert ? cert : "");
	if (serial && (!*serial || strlen(serial) > 130 || strspn(serial, "0123456789abcdef-") != strlen(serial)))
		return cs_error(CS_EINVALID, "key store: %s: \"%s\" is not a serial number", cert, serial);
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

static char *kf_path(const struct keystore_files *f, const char *cert, const char *serial)
{
	char *d = kf_cert_dir(f, cert), *name = xasprintf("%s.pem", serial), *p = fsutil_join(d, name);

	free(d);
	free(name);
	return p;
}

/* Creates dir 0700, or tightens an existing one to 0700. */
static int kf_mkdir(const char *dir)
{
	int rc = fsutil_mkdir_p(dir, KEYSTORE_DIR_MODE);

	if (!rc && chmod(dir, KEYSTORE_DIR_MODE))
		rc = cs_error(CS_ERROR, "%s: chmod: %s", dir, strerror(errno));
	return rc;
}

static void kf_section(struct buf *b, const char *name, const struct buf *v)
{
	buf_printf(b, "%s %zu\n", name, v->len);
	buf_append(b, v->data ? v->data : "", v->len);
	buf_append(b, "\n", 1);
}

static int kf_put(void *h, const char *cert, const char *serial, const struct keystore_item *it)
{
	struct keystore_files *f = h;
	char *d = kf_cert_dir(f, cert), *p = kf_path(f, cert, serial);
	struct buf b = BUF_INIT;
	int rc;

	if ((rc = kf_mkdir(f->dir)) || (rc = kf_mkdir(f->store)) || (rc = kf_mkdir(d)))
		goto out;
	buf_puts(&b, KEYSTORE_MAGIC);
	kf_section(&b, "key", &it->key);
	kf_section(&b, "cert", &it->cert);
	kf_section(&b, "ca", &it->ca);
	rc = fsutil_write_atomic(p, b.data, b.len, KEYSTORE_FILE_MODE);
out:
	buf_wipe(&b);
	free(d);
	free(p);
	return rc;
}

/* Reads "<name> <len>\n<len bytes>\n" at *pos into out. */
static int kf_read_section(const struct buf *b, size_t *pos, const char *name, struct buf *out)
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

static int kf_get(void *h, const char *cert, const char *serial, struct keystore_item *out)
{
	struct keystore_files *f = h;
	char *p = kf_path(f, cert, serial);
	struct keystore_item it;
	struct buf b = BUF_INIT;
	size_t pos = strlen(KEYSTORE_MAGIC);
	int rc;

	keystore_item_init(&it);
	if ((rc = fsutil_read_file(p, KEYSTORE_MAX_ITEM, &b)))
		goto out;
	if (b.len < pos || memcmp(b.data, KEYSTORE_MAGIC, pos) || kf_read_section(&b, &pos, "key", &it.key) ||
	    kf_read_section(&b, &pos, "cert", &it.cert) || kf_read_section(&b, &pos, "ca", &it.ca) || pos != b.len) {
		rc = cs_error(CS_EINVALID, "%s: damaged key store entry (not written by certsync, or truncated)", p);
		goto out;
	}
	*out = it;
	keystore_item_init(&it);
out:
	keystore_item_wipe(&it);
	buf_wipe(&b);
	free(p);
	return rc;
}

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

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || (keep && !strcmp(e->d_name, keep)))
			continue;
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

static void kf_close(void *h)
{
	struct keystore_files *f = h;

	free(f->dir);
	free(f->store);
	free(f);
}

static const struct keystore_backend keystore_files_backend = {kf_put, kf_get, kf_prune, kf_close};

struct keystore *keystore_open_dir(const char *dir)
{
	struct keystore *ks = xcalloc(1, sizeof(*ks));
	struct keystore_files *f = xcalloc(1, sizeof(*f));

	f->dir = xstrdup(dir);
	f->store = fsutil_join(dir, "store");
	ks->be = &keystore_files_backend;
	ks->h = f;
	return ks;
}

/* ---------- the backend-neutral calls ---------- */

int keystore_put(struct keystore *ks, const char *cert, const char *serial, const struct keystore_item *it)
{
	int rc = keystore_check(cert, serial);

	return rc ? rc : ks->be->put(ks->h, cert, serial, it);
}

int keystore_get(struct keystore *ks, const char *cert, const char *serial, struct keystore_item *out)
{
	int rc = keystore_check(cert, serial);

	return rc ? rc : ks->be->get(ks->h, cert, serial, out);
}

int keystore_prune(struct keystore *ks, const char *cert, const char *keep_serial)
{
	int rc = keystore_check(cert, keep_serial);

	return rc ? rc : ks->be->prune(ks->h, cert, keep_serial);
}

void keystore_close(struct keystore *ks)
{
	if (!ks)
		return;
	ks->be->close(ks->h);
	free(ks);
}
