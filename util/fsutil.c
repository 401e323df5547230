/* Bounded reads, atomic writes and directory helpers. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

int fsutil_read_file(const char *path, size_t max, struct buf *out)
{
	int fd = -1, rc = 0;
	struct stat st;
	char chunk[65536];
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return cs_error(CS_ENOTFOUND, "%s: no such file", path);
		return cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		rc = cs_error(CS_EINVALID, "%s: is a directory", path);
		goto out;
	}
	if (max && st.st_size > (off_t)max) {
		rc = cs_error(CS_EINVALID, "%s: file is %lld bytes; the limit is %zu", path, (long long)st.st_size,
			      max);
		goto out;
	}
	buf_init(out, max);
	/* Read straight into a buffer of the file's size (a 12 MB state file is not copied twice). */
	if (S_ISREG(st.st_mode) && st.st_size > 0 && buf_reserve(out, (size_t)st.st_size) == 0) {
		while (out->len + 1 < out->cap && (n = read(fd, out->data + out->len, out->cap - out->len - 1)) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				rc = cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
				goto out;
			}
			out->len += (size_t)n;
		}
		out->data[out->len] = '\0';
	}
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (buf_append(out, chunk, (size_t)n)) {
			rc = cs_error(CS_EINVALID, "%s: file is larger than the limit of %zu bytes", path, max);
			goto out;
		}
	}
	if (!out->data)
		buf_append(out, "", 0);
out:
	if (rc)
		buf_free(out);
	close(fd);
	return rc;
}

int fsutil_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fsutil_write_new(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	if (fd < 0)
		return cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
	if (fchmod(fd, mode) || fsutil_write_all(fd, data, len) || fsync(fd)) {
		int e = errno;

		close(fd);
		unlink(path);
		return cs_error(CS_ERROR, "%s: %s", path, strerror(e));
	}
	if (close(fd))
		return cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
	return 0;
}

int fsutil_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return cs_error(CS_ERROR, "%s: %s", dir, strerror(errno));
	if (fsync(fd) && errno != EINVAL) {
		int e = errno;

		close(fd);
		return cs_error(CS_ERROR, "%s: fsync: %s", dir, strerror(e));
	}
	close(fd);
	return 0;
}

/* "<path>.tmp.<pid>.<n>": a temp file in path's directory, unique in this process (fsutil_sweep_tmp knows it). */
static char *fsutil_tmp_name(const char *path)
{
	static atomic_uint counter;

	return xasprintf("%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
}

/* Renames tmp (written and synced) over path and syncs the directory; tmp is removed if the rename fails. */
static int fsutil_rename_synced(const char *tmp, const char *path)
{
	char *dir;
	int rc;

	if (rename(tmp, path)) {
		rc = cs_error(CS_ERROR, "%s: rename: %s", path, strerror(errno));
		unlink(tmp);
		return rc;
	}
	dir = fsutil_dirname(path);
	rc = fsutil_fsync_dir(dir);
	free(dir);
	return rc;
}

int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char *tmp = fsutil_tmp_name(path);
	int rc;

	unlink(tmp);
	if (!(rc = fsutil_write_new(tmp, data, len, mode)))
		rc = fsutil_rename_synced(tmp, path);
	free(tmp);
	return rc;
}

/*
 * len bytes (fewer if in ends first) from in to out, in the kernel where the
 * filesystems allow it (copy_file_range), else through a small buffer. 0 or
 * -1 (errno set).
 */
static int fsutil_copy_fd(int in, int out, size_t len)
{
	char chunk[65536];
	int in_kernel = 1;

	while (len > 0) {
		size_t want = len < ((size_t)1 << 30) ? len : (size_t)1 << 30;
		ssize_t n;

		if (in_kernel) {
			n = copy_file_range(in, NULL, out, NULL, want, 0);
			/* another filesystem, or one without it: the offsets have not moved, copy by hand */
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
				in_kernel = 0;
				continue;
			}
		} else {
			n = read(in, chunk, want < sizeof(chunk) ? want : sizeof(chunk));
			if (n > 0 && fsutil_write_all(out, chunk, (size_t)n))
				return -1;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		len -= (size_t)n;
	}
	return 0;
}

int fsutil_copy_atomic(const char *src, const char *dst, size_t max, mode_t mode)
{
	struct stat st;
	char *tmp = NULL;
	int in = open(src, O_RDONLY | O_CLOEXEC), out, rc = 0;

	if (in < 0)
		return cs_error(errno == ENOENT ? CS_ENOTFOUND : CS_ERROR, "%s: %s", src, strerror(errno));
	if (fstat(in, &st) || !S_ISREG(st.st_mode)) {
		rc = cs_error(CS_ERROR, "%s: not a regular file", src);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = cs_error(CS_EINVALID, "%s: %lld bytes; the limit is %zu", src, (long long)st.st_size, max);
		goto out;
	}
	tmp = fsutil_tmp_name(dst);
	unlink(tmp);
	if ((out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)) < 0) {
		rc = cs_error(CS_ERROR, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(out, mode) || fsutil_copy_fd(in, out, (size_t)st.st_size) || fsync(out)) {
		int e = errno;

		close(out);
		rc = cs_error(CS_ERROR, "%s: copying %s: %s", tmp, src, strerror(e));
		unlink(tmp);
	} else if (close(out)) {
		rc = cs_error(CS_ERROR, "%s: %s", tmp, strerror(errno));
		unlink(tmp);
	} else {
		rc = fsutil_rename_synced(tmp, dst);
	}
out:
	close(in);
	free(tmp);
	return rc;
}

int fsutil_map_file(const char *path, size_t max, struct fsutil_map *out)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	out->data = NULL;
	out->len = 0;
	out->dev = 0;
	out->ino = 0;
	if (fd < 0)
		return cs_error(errno == ENOENT ? CS_ENOTFOUND : CS_ERROR, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = cs_error(CS_ERROR, "%s: not a regular file", path);
	} else if ((uint64_t)st.st_size > max) {
		rc = cs_error(CS_EINVALID, "%s: %lld bytes; the limit is %zu", path, (long long)st.st_size, max);
	} else {
		out->dev = st.st_dev;
		out->ino = st.st_ino;
		if (st.st_size > 0) {
			p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
			if (p == MAP_FAILED) {
				rc = cs_error(CS_ERROR, "%s: mmap: %s", path, strerror(errno));
			} else {
				out->data = p;
				out->len = (size_t)st.st_size;
			}
		}
	}
	close(fd);
	return rc;
}

void fsutil_unmap(struct fsutil_map *m)
{
	if (m->data)
		munmap((void *)m->data, m->len);
	m->data = NULL;
	m->len = 0;
}

void fsutil_sweep_tmp(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = fsutil_dirname(path), *prefix = xasprintf("%s.tmp.", slash ? slash + 1 : path);
	size_t pl = strlen(prefix);
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char *end, *p;
		long pid;

		if (strncmp(e->d_name, prefix, pl))
			continue;
		pid = strtol(e->d_name + pl, &end, 10);
		if (end == e->d_name + pl || *end != '.' || pid <= 0 || pid == (long)getpid() ||
		    !(kill((pid_t)pid, 0) && errno == ESRCH))
			continue;
		p = fsutil_join(dir, e->d_name);
		unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
	free(prefix);
	free(dir);
}

int fsutil_replace_nosync(const char *path, const void *data, size_t len, mode_t mode)
{
	char *tmp = fsutil_tmp_name(path);
	int fd, rc = 0;

	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)) < 0) {
		rc = cs_error(CS_ERROR, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	/* the mode as asked, whatever the umask (the stamp is 0644 for a reader under another user) */
	if (fchmod(fd, mode) || fsutil_write_all(fd, data, len)) {
		rc = cs_error(CS_ERROR, "%s: write: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd)) {
		rc = cs_error(CS_ERROR, "%s: close: %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path)) {
		rc = cs_error(CS_ERROR, "%s: rename: %s", path, strerror(errno));
		unlink(tmp);
	}
out:
	free(tmp);
	return rc;
}

int fsutil_write_cache(const char *path, const void *data, size_t len, mode_t mode)
{
	fsutil_sweep_tmp(path);
	return fsutil_replace_nosync(path, data, len, mode);
}

int fsutil_mkdir_p(const char *path, mode_t mode)
{
	struct stat whole;
	char *p;
	int rc = 0;

	/* The usual case, a directory that is there: one call, not a mkdir and a stat per component. */
	if (!stat(path, &whole) && S_ISDIR(whole.st_mode))
		return 0;
	p = xstrdup(path);
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			struct stat st;

			*s = '\0';
			if (mkdir(p, mode) && errno != EEXIST) {
				rc = cs_error(CS_ERROR, "%s: mkdir: %s", p, strerror(errno));
				goto out;
			}
			if (stat(p, &st) || !S_ISDIR(st.st_mode)) {
				rc = cs_error(CS_ERROR, "%s: not a directory", p);
				goto out;
			}
			*s = c;
			if (!c)
				break;
		}
	}
out:
	free(p);
	return rc;
}

int fsutil_rm_rf(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (lstat(path, &st))
		return errno == ENOENT ? 0 : cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) && errno != ENOENT)
			return cs_error(CS_ERROR, "%s: unlink: %s", path, strerror(errno));
		return 0;
	}
	if (!(d = opendir(path)))
		return cs_error(CS_ERROR, "%s: %s", path, strerror(errno));
	while ((e = readdir(d))) {
		char *child;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		child = fsutil_join(path, e->d_name);
		rc = fsutil_rm_rf(child);
		free(child);
		if (rc)
			break;
	}
	closedir(d);
	if (!rc && rmdir(path) && errno != ENOENT)
		rc = cs_error(CS_ERROR, "%s: rmdir: %s", path, strerror(errno));
	return rc;
}

char *fsutil_join(const char *a, const char *b)
{
	size_t la = strlen(a);

	if (b[0] == '/' || la == 0)
		return xstrdup(b);
	if (a[la - 1] == '/')
		return xasprintf("%s%s", a, b);
	return xasprintf("%s/%s", a, b);
}

char *fsutil_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

char *fsutil_abspath(const char *base_dir, const char *path)
{
	char cwd[4096];

	if (path[0] == '/')
		return xstrdup(path);
	if (base_dir && base_dir[0] == '/')
		return fsutil_join(base_dir, path);
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	if (base_dir && *base_dir && strcmp(base_dir, ".")) {
		char *b = fsutil_join(cwd, base_dir), *r = fsutil_join(b, path);

		free(b);
		return r;
	}
	return fsutil_join(cwd, path);
}

int fsutil_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}
