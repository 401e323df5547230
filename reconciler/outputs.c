/* Atomic publication of certificate files: fresh directory + symlink swap. */
#include "outputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../manifests/manifest.h"
#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"
#include "outputs_stamp.h"

static const char *const out_files[STATE_OUT_FILES] = {"tls.crt", "tls.key", "ca.crt"};
static const mode_t out_modes[STATE_OUT_FILES] = {0644, 0600, 0644};
/* output.formats files, indexed by OUTFMT_* (names in manifest_format_files): key material is 0600. */
static const mode_t fmt_modes[OUTFMT__MAX] = {0644, 0600, 0600, 0600, 0644};
#define FMT_SIG_TEXT (OUTFMT__MAX * 64)

/* The formats a record's installed generation holds (its OUTPUTS_ID_FORMATS). */
static unsigned outputs_rec_formats(const struct state_cert *rec)
{
	const char *t = state_cert_id(rec, OUTPUTS_ID_FORMATS);
	unsigned f = 0;

	for (int i = 0; t && i < OUTFMT__MAX; i++) {
		const char *p = strstr(t, manifest_format_files[i]);
		size_t n = strlen(manifest_format_files[i]);

		if (p && (p == t || p[-1] == ',') && (p[n] == ',' || !p[n]))
			f |= 1u << i;
	}
	return f;
}

/* "size:mtime:ino," per format file, in table order. */
static void outputs_fmt_sig_add(char *out, const struct stat *st)
{
	size_t at = strlen(out);

	snprintf(out + at, FMT_SIG_TEXT - at, "%lld:%lld:%lld,", (long long)st->st_size,
		 (long long)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec, (long long)st->st_ino);
}

/* Splits root/dir into its parent directory and last component. */
static void outputs_split(const char *root, const char *dir, char **parent, char **base)
{
	char *full = fsutil_join(root, dir);

	*parent = fsutil_dirname(full);
	*base = xstrdup(strrchr(full, '/') + 1);
	free(full);
}

/* 0 if parent (which exists) resolves inside root. */
static int outputs_check_inside(const char *root, const char *parent, const char *dir)
{
	char rr[PATH_MAX], rp[PATH_MAX];
	size_t n;

	if (!realpath(root, rr) || !realpath(parent, rp))
		return cs_error(CS_ERROR, "output %s: %s", dir, strerror(errno));
	n = strlen(rr);
	if (strncmp(rp, rr, n) || (rp[n] != '\0' && rp[n] != '/' && strcmp(rr, "/")))
		return cs_error(CS_EINVALID, "output directory %s resolves outside the output root %s (symlink)", dir,
				root);
	return 0;
}

static void outputs_sig(const struct stat *st, struct state_filesig *sig)
{
	sig->size = (int64_t)st->st_size;
	sig->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	sig->ino = (int64_t)st->st_ino;
}

/* The i-th file of a generation with these formats: the three, then the formats in table order; NULL past the end. */
static const char *outputs_file_at(unsigned formats, int i)
{
	if (i < STATE_OUT_FILES)
		return out_files[i];
	for (int f = 0; f < OUTFMT__MAX; f++)
		if ((formats & (1u << f)) && i-- == STATE_OUT_FILES)
			return manifest_format_files[f];
	return NULL;
}

/*
 * SHA-256 over the files of a generation directory, each length-prefixed
 * (with no formats, the same as before formats existed). fsigs (may be
 * NULL) gets the format files' signatures, *newest_ns (may be NULL) the
 * latest mtime among the files. Each file is stat-ed before it is read: an
 * edit after the read moves the signature recorded from that stat.
 */
static int outputs_hash(const char *gendir, unsigned formats, char out[65], struct state_filesig sigs[STATE_OUT_FILES],
			char *fsigs, int64_t *newest_ns)
{
	struct crypto_sha256_ctx *h = crypto_sha256_begin();
	const char *name;
	int rc = 0;

	if (fsigs)
		fsigs[0] = '\0';
	for (int i = 0; (name = outputs_file_at(formats, i)); i++) {
		char *p = fsutil_join(gendir, name);
		struct buf b = BUF_INIT;
		struct stat st;
		char len[32];

		rc = stat(p, &st) ? CS_ENOTFOUND : fsutil_read_file(p, OUTPUT_MAX_FILE, &b);
		if (!rc && sigs && i < STATE_OUT_FILES)
			outputs_sig(&st, &sigs[i]);
		if (!rc && fsigs && i >= STATE_OUT_FILES)
			outputs_fmt_sig_add(fsigs, &st);
		if (!rc && newest_ns && (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec > *newest_ns)
			*newest_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		if (!rc) {
			snprintf(len, sizeof(len), "%zu:", b.len);
			crypto_sha256_update(h, len, strlen(len));
			crypto_sha256_update(h, b.data, b.len);
		}
		buf_wipe(&b);
		free(p);
		if (rc)
			break;
	}
	crypto_sha256_end_hex(h, out);
	return rc;
}

/* The bytes of one format file (caller wipes out). */
static int outputs_format(const struct output_files *f, int fmt, struct buf *out)
{
	const char *cert = f->cert->data ? f->cert->data : "", *key = f->key->data ? f->key->data : "";
	const char *ca = f->ca->data ? f->ca->data : "";

	switch (fmt) {
	case OUTFMT_CHAIN: return crypto_out_intermediates(cert, f->cert->len, out);
	case OUTFMT_COMBINED:
		/* HAProxy and cert-manager's CombinedPEM: the key, then the leaf and its intermediates */
		buf_append(out, key, f->key->len);
		if (f->key->len && key[f->key->len - 1] != '\n')
			buf_append(out, "\n", 1);
		return buf_append(out, cert, f->cert->len);
	case OUTFMT_P12:
		if (!f->p12_password)
			return cs_error(CS_EAUTH, "keystore.p12: no password (output.pkcs12Password)");
		return crypto_out_pkcs12(key, f->key->len, cert, f->cert->len, ca, f->ca->len, f->p12_password, f->name,
					 out);
	case OUTFMT_KEY_DER: return crypto_out_key_der(key, f->key->len, out);
	case OUTFMT_CERT_DER: return crypto_out_cert_der(cert, f->cert->len, out);
	default: return cs_error(CS_ERROR, "unknown output format %d", fmt);
	}
}

static int outputs_write_generation(const char *gendir, const struct output_files *f)
{
	const struct buf *files[STATE_OUT_FILES] = {f->cert, f->key, f->ca};
	int rc;

	if (mkdir(gendir, 0755))
		return cs_error(CS_ERROR, "%s: mkdir: %s", gendir, strerror(errno));
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		char *p = fsutil_join(gendir, out_files[i]);

		rc = fsutil_write_new(p, files[i]->data ? files[i]->data : "", files[i]->len, out_modes[i]);
		free(p);
		if (rc)
			return rc;
	}
	for (int i = 0; i < OUTFMT__MAX; i++) {
		struct buf b = BUF_INIT;
		char *p;

		if (!(f->formats & (1u << i)))
			continue;
		p = fsutil_join(gendir, manifest_format_files[i]);
		if (!(rc = outputs_format(f, i, &b)))
			rc = fsutil_write_new(p, b.data ? b.data : "", b.len, fmt_modes[i]);
		else if (rc != CS_EAUTH)
			rc = cs_error(CS_EINVALID, "%s: %s", manifest_format_files[i], cs_errmsg());
		buf_wipe(&b);
		free(p);
		if (rc)
			return rc;
	}
	return fsutil_fsync_dir(gendir);
}

/* 1 if name is one of base's generations (".<base>.<12 hex>") or temporary links (".<base>.link-<4 hex>"). */
static int outputs_is_ours(const char *name, const char *base)
{
	size_t bl = strlen(base), n = strlen(name);
	const char *tail;

	if (name[0] != '.' || strncmp(name + 1, base, bl) || name[bl + 1] != '.')
		return 0;
	tail = name + bl + 2;
	if (!strncmp(tail, "link-", 5))
		tail += 5;
	n = strlen(tail);
	if (n != 12 && n != 4)
		return 0;
	return strspn(tail, "0123456789abcdef") == n;
}

/* Removes every generation and temporary link of base in parent (defined with outputs_gc below). */
static size_t outputs_sweep(const char *parent, const char *base);

/*
 * A replaced generation: removed at once without a grace period, else its
 * retirement time is stamped (its mtime: the grace period counts from the swap).
 */
static void outputs_retire(const char *parent, const char *prev, const char *base, const char *gen, int64_t grace)
{
	struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
	char *p;

	if (!prev || !strcmp(prev, gen) || !outputs_is_ours(prev, base))
		return;
	p = fsutil_join(parent, prev);
	if (grace > 0)
		utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
	else
		fsutil_rm_rf(p);
	free(p);
}

int outputs_publish(const char *root, const char *dir, const struct output_files *f, int64_t keep_previous,
		    struct state_cert *rec)
{
	char *parent = NULL, *base = NULL, *gen = NULL, *gendir = NULL, *link = NULL, *tmplink = NULL;
	char rnd[8], hash[65], prev[PATH_MAX], fsigs[FMT_SIG_TEXT], ftext[MANIFEST_FORMATS_TEXT];
	struct state_filesig sigs[STATE_OUT_FILES];
	struct stat st;
	ssize_t pl;
	int rc;

	outputs_split(root, dir, &parent, &base);
	if ((rc = fsutil_mkdir_p(root, 0755)) || (rc = fsutil_mkdir_p(parent, 0755)) ||
	    (rc = outputs_check_inside(root, parent, dir)))
		goto out;
	link = fsutil_join(parent, base);
	if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode)) {
		rc = cs_error(CS_ECONFLICT,
			      "output %s exists and was not created by certsync (not a symlink); move it away", link);
		goto out;
	}
	if ((rc = crypto_random(rnd, sizeof(rnd))))
		goto out;
	gen = xasprintf(".%s.%02x%02x%02x%02x%02x%02x", base, (unsigned char)rnd[0], (unsigned char)rnd[1],
			(unsigned char)rnd[2], (unsigned char)rnd[3], (unsigned char)rnd[4], (unsigned char)rnd[5]);
	gendir = fsutil_join(parent, gen);
	if ((rc = outputs_write_generation(gendir, f)))
		goto out;
	if ((rc = outputs_hash(gendir, f->formats, hash, sigs, fsigs, NULL)))
		goto out;
	pl = readlink(link, prev, sizeof(prev) - 1);
	prev[pl > 0 ? pl : 0] = '\0';
	tmplink = xasprintf("%s/.%s.link-%02x%02x", parent, base, (unsigned char)rnd[6], (unsigned char)rnd[7]);
	unlink(tmplink);
	if (symlink(gen, tmplink) || rename(tmplink, link)) {
		rc = cs_error(CS_ERROR, "%s: publishing: %s", link, strerror(errno));
		unlink(tmplink);
		goto out;
	}
	if ((rc = fsutil_fsync_dir(parent)))
		goto out;
	/*
	 * The new generation is live: the previous one stays keep_previous
	 * seconds for readers that resolved the link before the swap (0: it
	 * goes now). Older ones and a crash's leftovers go with outputs_gc,
	 * which reads each parent directory once per apply or pass: a sweep
	 * here would read the whole parent at every install, quadratic in a
	 * directory of thousands of certificates.
	 */
	outputs_stamp(root, dir); /* after the swap: a watcher that fires reads the new files */
	outputs_retire(parent, prev, base, gen, keep_previous);
	state_str_set(&rec->out_generation, gen);
	state_str_set(&rec->out_hash, hash);
	memcpy(rec->out_sig, sigs, sizeof(sigs));
	manifest_formats_text(f->formats, ftext);
	state_cert_set_id(rec, OUTPUTS_ID_FORMATS, f->formats ? ftext : NULL);
	state_cert_set_id(rec, OUTPUTS_ID_FORMAT_SIGS, f->formats ? fsigs : NULL);
out:
	if (rc && gendir)
		fsutil_rm_rf(gendir);
	/* A local write failure (full disk, read-only or unwritable directory) passes: retried with backoff. */
	if (rc == CS_ERROR || rc == CS_ENOTFOUND)
		rc = CS_ETRANSIENT;
	free(parent);
	free(base);
	free(gen);
	free(gendir);
	free(link);
	free(tmplink);
	return rc;
}

/* The format files' signatures against the record's (path holds "<dir>/" up to dl + 1). */
static int outputs_formats_unchanged(int rootfd, const struct state_cert *rec, char *path, size_t dl)
{
	unsigned formats = outputs_rec_formats(rec);
	const char *want = state_cert_id(rec, OUTPUTS_ID_FORMAT_SIGS);
	char got[FMT_SIG_TEXT] = "";

	if (!formats)
		return 1;
	for (int i = 0; i < OUTFMT__MAX; i++) {
		struct stat st;

		if (!(formats & (1u << i)))
			continue;
		snprintf(path + dl + 1, PATH_MAX - dl - 1, "%s", manifest_format_files[i]);
		if (fstatat(rootfd, path, &st, 0))
			return 0;
		outputs_fmt_sig_add(got, &st);
	}
	return util_streq(want, got);
}

/*
 * The cheap check, relative to an open root: three fstatat calls through the
 * published link. A 10,000-certificate plan runs it 10,000 times, and the
 * syscalls are its whole cost. When a signature differs (touched, copied
 * back, re-pointed link), the full check decides on the link target and the
 * content.
 */
enum output_status outputs_check_at(int rootfd, const char *root, const struct state_cert *rec)
{
	char path[PATH_MAX];
	size_t dl;

	if (!rec->output_dir || !rec->out_generation || rootfd < 0)
		return OUTPUT_MISSING;
	dl = strlen(rec->output_dir);
	if (dl + 16 > sizeof(path))
		return outputs_check(root, rec);
	memcpy(path, rec->output_dir, dl);
	path[dl] = '/';
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		struct state_filesig sig;
		struct stat st;

		snprintf(path + dl + 1, sizeof(path) - dl - 1, "%s", out_files[i]);
		if (fstatat(rootfd, path, &st, 0))
			return outputs_check(root, rec);
		outputs_sig(&st, &sig);
		if (memcmp(&sig, &rec->out_sig[i], sizeof(sig)))
			return outputs_check(root, rec);
	}
	return outputs_formats_unchanged(rootfd, rec, path, dl) ? OUTPUT_OK : outputs_check(root, rec);
}

int outputs_root_open(const char *root)
{
	return open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static enum output_status outputs_check_full(const char *root, const struct state_cert *rec, int deep);

enum output_status outputs_check(const char *root, const struct state_cert *rec)
{
	return outputs_check_full(root, rec, 0);
}

enum output_status outputs_check_deep(const char *root, const struct state_cert *rec)
{
	return outputs_check_full(root, rec, 1);
}

static enum output_status outputs_check_full(const char *root, const struct state_cert *rec, int deep)
{
	char *parent = NULL, *base = NULL, *link = NULL, *gendir = NULL;
	char target[PATH_MAX], hash[65], fsigs[FMT_SIG_TEXT];
	enum output_status res = OUTPUT_OK;
	unsigned formats;
	ssize_t n;
	int same = 1, hr;

	if (!rec->output_dir || !rec->out_generation)
		return OUTPUT_MISSING;
	outputs_split(root, rec->output_dir, &parent, &base);
	link = fsutil_join(parent, base);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		res = errno == ENOENT ? OUTPUT_MISSING : OUTPUT_ALTERED;
		goto out;
	}
	target[n] = '\0';
	if (strcmp(target, rec->out_generation)) {
		res = OUTPUT_ALTERED;
		goto out;
	}
	gendir = fsutil_join(parent, rec->out_generation);
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		char *p = fsutil_join(gendir, out_files[i]);
		struct state_filesig sig;
		struct stat st;
		int missing = stat(p, &st) != 0;

		free(p);
		if (missing) {
			res = OUTPUT_MISSING;
			goto out;
		}
		outputs_sig(&st, &sig);
		if (memcmp(&sig, &rec->out_sig[i], sizeof(sig)))
			same = 0;
	}
	formats = outputs_rec_formats(rec);
	if (formats) {
		/* the format files have no place in out_sig: hash them along (they are few and small) */
		hr = outputs_hash(gendir, formats, hash, NULL, fsigs, NULL);
		if (hr == CS_ENOTFOUND)
			res = OUTPUT_MISSING;
		else if (hr || !util_streq(hash, rec->out_hash))
			res = OUTPUT_ALTERED;
		else if (!same || !util_streq(fsigs, state_cert_id(rec, OUTPUTS_ID_FORMAT_SIGS)))
			res = OUTPUT_OK_BY_CONTENT;
	} else if (!same || deep) {
		if (outputs_hash(gendir, 0, hash, NULL, NULL, NULL) || !util_streq(hash, rec->out_hash))
			res = OUTPUT_ALTERED;
		else if (!same)
			res = OUTPUT_OK_BY_CONTENT;
	}
out:
	free(parent);
	free(base);
	free(link);
	free(gendir);
	return res;
}

int outputs_restamp(const char *root, struct state_cert *rec, int64_t now)
{
	char *parent = NULL, *base = NULL, *link = NULL, *gendir = NULL;
	char target[PATH_MAX], hash[65], fsigs[FMT_SIG_TEXT];
	struct state_filesig sigs[STATE_OUT_FILES];
	unsigned formats = outputs_rec_formats(rec);
	const char *want_fsigs;
	int64_t newest = 0;
	ssize_t n;
	int changed = 0;

	if (!rec->output_dir || !rec->out_generation || !rec->out_hash)
		return 0;
	outputs_split(root, rec->output_dir, &parent, &base);
	link = fsutil_join(parent, base);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		goto out;
	target[n] = '\0';
	if (strcmp(target, rec->out_generation))
		goto out;
	gendir = fsutil_join(parent, rec->out_generation);
	if (outputs_hash(gendir, formats, hash, sigs, fsigs, &newest) || !util_streq(hash, rec->out_hash))
		goto out;
	/* Written within the last seconds: a second write in the same timestamp tick would keep this signature. */
	if (newest > (now - OUTPUTS_RESTAMP_SETTLE) * INT64_C(1000000000))
		goto out;
	want_fsigs = formats ? fsigs : NULL;
	if (!memcmp(sigs, rec->out_sig, sizeof(sigs)) &&
	    util_streq(want_fsigs, state_cert_id(rec, OUTPUTS_ID_FORMAT_SIGS)))
		goto out;
	memcpy(rec->out_sig, sigs, sizeof(sigs));
	state_cert_set_id(rec, OUTPUTS_ID_FORMAT_SIGS, want_fsigs);
	changed = 1;
out:
	free(parent);
	free(base);
	free(link);
	free(gendir);
	return changed;
}

int outputs_remove(const char *root, const struct state_cert *rec)
{
	char *parent = NULL, *base = NULL, *link = NULL, *gendir = NULL;
	char target[PATH_MAX];
	ssize_t n;
	int rc = 0;

	if (!rec->output_dir)
		return 0;
	outputs_split(root, rec->output_dir, &parent, &base);
	link = fsutil_join(parent, base);
	n = readlink(link, target, sizeof(target) - 1);
	if (n >= 0) {
		target[n] = '\0';
		/* Only a link to one of our generations is ours to delete. */
		if (target[0] == '.' && !strchr(target, '/') && !strncmp(target + 1, base, strlen(base))) {
			gendir = fsutil_join(parent, target);
			if (unlink(link) && errno != ENOENT)
				rc = cs_error(CS_ERROR, "%s: %s", link, strerror(errno));
			else
				rc = fsutil_rm_rf(gendir);
		}
	}
	if (!rc && rec->out_generation) {
		free(gendir);
		gendir = fsutil_join(parent, rec->out_generation);
		rc = fsutil_rm_rf(gendir);
	}
	if (!rc) {
		outputs_sweep(parent, base);
		fsutil_fsync_dir(parent);
	}
	free(parent);
	free(base);
	free(link);
	free(gendir);
	return rc;
}

int outputs_read_key(const char *root, const char *dir, struct buf *out)
{
	char *full = fsutil_join(root, dir);
	char *p = fsutil_join(full, "tls.key");
	int rc = fsutil_read_file(p, OUTPUT_MAX_FILE, out);

	free(full);
	free(p);
	return rc;
}

/* One recorded output directory for outputs_gc: its parent, its link's name and the generation to keep. */
struct gc_dir {
	char *parent, *base;
	const char *keep;
};

static int gc_dir_cmp(const void *a, const void *b)
{
	const struct gc_dir *x = a, *y = b;
	int c = strcmp(x->parent, y->parent);

	return c ? c : strcmp(x->base, y->base);
}

/* The directory of group [v, v+n) (one parent) that entry name is a generation or temporary link of, or NULL. */
static const struct gc_dir *gc_owner(const struct gc_dir *v, size_t n, const char *name)
{
	const char *dot = strrchr(name, '.');
	struct gc_dir key;
	const struct gc_dir *hit;
	char base[NAME_MAX + 1];
	size_t bl;

	if (name[0] != '.' || !dot || dot == name)
		return NULL;
	bl = (size_t)(dot - name - 1);
	if (bl >= sizeof(base))
		return NULL;
	memcpy(base, name + 1, bl);
	base[bl] = '\0';
	key.parent = v[0].parent;
	key.base = base;
	hit = bsearch(&key, v, n, sizeof(*v), gc_dir_cmp);
	return hit && outputs_is_ours(name, hit->base) ? hit : NULL;
}

/* Sweeps one parent directory for the group [v, v+n), reading it once. */
static size_t gc_parent(const struct gc_dir *v, size_t n, int64_t grace, int64_t now, int64_t *next)
{
	DIR *d = opendir(v[0].parent);
	struct dirent *e;
	size_t removed = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		const struct gc_dir *o = gc_owner(v, n, e->d_name);
		struct stat st;
		int64_t until;
		char *p;

		if (!o || !strcmp(e->d_name, o->keep))
			continue;
		p = fsutil_join(o->parent, e->d_name);
		until = lstat(p, &st) == 0 && S_ISDIR(st.st_mode) ? (int64_t)st.st_mtim.tv_sec + grace : 0;
		if (grace > 0 && until > now) {
			if (next && (!*next || until < *next))
				*next = until;
		} else if (!fsutil_rm_rf(p)) {
			removed++;
		}
		free(p);
	}
	closedir(d);
	return removed;
}

static size_t outputs_sweep(const char *parent, const char *base)
{
	struct gc_dir one = {(char *)parent, (char *)base, ""}; /* "" keeps nothing: no entry is named so */

	return gc_parent(&one, 1, 0, 0, NULL);
}

/* Each parent directory is read once, however many certificates live in it (10,000 in one root). */
size_t outputs_gc(const char *root, const struct state *st, int64_t keep_previous, int64_t now, int64_t *next)
{
	size_t n = 0, k = 0, removed = 0;
	struct state_cert **recs = state_cert_list(st, &n);
	struct gc_dir *v = xcalloc(n + 1, sizeof(*v));

	if (next)
		*next = 0;
	for (size_t i = 0; i < n; i++) {
		if (!recs[i]->output_dir || !recs[i]->out_generation)
			continue;
		outputs_split(root, recs[i]->output_dir, &v[k].parent, &v[k].base);
		v[k++].keep = recs[i]->out_generation;
	}
	qsort(v, k, sizeof(*v), gc_dir_cmp);
	for (size_t i = 0, j; i < k; i = j) {
		for (j = i + 1; j < k && !strcmp(v[j].parent, v[i].parent); j++)
			;
		removed += gc_parent(v + i, j - i, keep_previous, now, next);
	}
	for (size_t i = 0; i < k; i++) {
		free(v[i].parent);
		free(v[i].base);
	}
	free(v);
	free(recs);
	return removed;
}

int outputs_publish_spec(const struct config *cfg, const struct cert_spec *s, const char *dir, const struct buf *cert,
			 const struct buf *key, const struct buf *ca, struct state_cert *rec)
{
	struct output_files f = {cert, key, ca, s->formats, NULL, s->name};
	struct buf pw = BUF_INIT;
	int rc;

	if ((s->formats & (1u << OUTFMT_P12)) &&
	    (rc = config_cred_read(&cfg->output.pkcs12_password, "output.pkcs12Password", &pw)))
		goto out;
	if (pw.data)
		log_add_secret(pw.data); /* never in a log line, whatever prints it */
	f.p12_password = pw.data;
	rc = outputs_publish(cfg->output_root, dir ? dir : s->output_dir, &f, cfg->output.keep_previous, rec);
out:
	buf_wipe(&pw);
	return rc;
}
