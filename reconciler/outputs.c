/* Atomic publication of certificate files: fresh directory + symlink swap. */
#include "outputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/util.h"
#include "outputs_stamp.h"

static const char *const out_files[STATE_OUT_FILES] = {"tls.crt", "tls.key", "ca.crt"};
static const mode_t out_modes[STATE_OUT_FILES] = {0644, 0600, 0644};

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

/* SHA-256 over the files of a generation directory, each length-prefixed. */
static int outputs_hash(const char *gendir, char out[65], struct state_filesig sigs[STATE_OUT_FILES])
{
	struct crypto_sha256_ctx *h = crypto_sha256_begin();
	int rc = 0;

	for (int i = 0; i < STATE_OUT_FILES; i++) {
		char *p = fsutil_join(gendir, out_files[i]);
		struct buf b = BUF_INIT;
		struct stat st;
		char len[32];

		rc = stat(p, &st) ? CS_ENOTFOUND : fsutil_read_file(p, OUTPUT_MAX_FILE, &b);
		if (!rc && sigs)
			outputs_sig(&st, &sigs[i]);
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

static int outputs_write_generation(const char *gendir, const struct buf *files[STATE_OUT_FILES])
{
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

/* Removes base's generations other than keep (previous ones, and leftovers of a crash). */
static void outputs_sweep(const char *parent, const char *base, const char *keep)
{
	DIR *d = opendir(parent);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char *p;

		if (!outputs_is_ours(e->d_name, base) || (keep && !strcmp(e->d_name, keep)))
			continue;
		p = fsutil_join(parent, e->d_name);
		fsutil_rm_rf(p);
		free(p);
	}
	closedir(d);
}

int outputs_publish(const char *root, const char *dir, const struct buf *cert, const struct buf *key,
		    const struct buf *ca, struct state_cert *rec)
{
	const struct buf *files[STATE_OUT_FILES] = {cert, key, ca};
	char *parent = NULL, *base = NULL, *gen = NULL, *gendir = NULL, *link = NULL, *tmplink = NULL;
	char rnd[8], hash[65];
	struct state_filesig sigs[STATE_OUT_FILES];
	struct stat st;
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
	if ((rc = outputs_write_generation(gendir, files)))
		goto out;
	if ((rc = outputs_hash(gendir, hash, sigs)))
		goto out;
	tmplink = xasprintf("%s/.%s.link-%02x%02x", parent, base, (unsigned char)rnd[6], (unsigned char)rnd[7]);
	unlink(tmplink);
	if (symlink(gen, tmplink) || rename(tmplink, link)) {
		rc = cs_error(CS_ERROR, "%s: publishing: %s", link, strerror(errno));
		unlink(tmplink);
		goto out;
	}
	if ((rc = fsutil_fsync_dir(parent)))
		goto out;
	outputs_stamp(root, dir); /* after the swap: a watcher that fires reads the new files */
	/* The new generation is live: delete the previous one and any a crash left behind. */
	outputs_sweep(parent, base, gen);
	state_str_set(&rec->out_generation, gen);
	state_str_set(&rec->out_hash, hash);
	memcpy(rec->out_sig, sigs, sizeof(sigs));
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
	return OUTPUT_OK;
}

int outputs_root_open(const char *root)
{
	return open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

enum output_status outputs_check(const char *root, const struct state_cert *rec)
{
	char *parent = NULL, *base = NULL, *link = NULL, *gendir = NULL;
	char target[PATH_MAX], hash[65];
	enum output_status res = OUTPUT_OK;
	ssize_t n;
	int same = 1;

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
	if (!same && (outputs_hash(gendir, hash, NULL) || !util_streq(hash, rec->out_hash)))
		res = OUTPUT_ALTERED;
out:
	free(parent);
	free(base);
	free(link);
	free(gendir);
	return res;
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
		outputs_sweep(parent, base, NULL);
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
