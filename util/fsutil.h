/* Files: bounded reads, atomic writes (temp, fsync, rename, fsync dir), directories. */
#ifndef CS_UTIL_FSUTIL_H
#define CS_UTIL_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

/* Reads a whole file into out (cap max). CS_ENOTFOUND if missing, CS_EINVALID if larger. */
int fsutil_read_file(const char *path, size_t max, struct buf *out);

/*
 * Replaces path atomically with data: writes "<path>.tmp.<pid>.<n>" in the same
 * directory with `mode`, fsyncs it, renames it over path, fsyncs the directory.
 * On error nothing at path has changed.
 */
int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * Replaces dst atomically with a copy of src (at most max bytes: CS_EINVALID
 * if larger; CS_ENOTFOUND if src is missing), as fsutil_write_atomic does:
 * temp file with mode, fsync, rename, fsync of the directory. The bytes move
 * in the kernel (copy_file_range) where the filesystems allow it: a 12 MB
 * state's backup costs no read into memory. On error dst has not changed.
 */
int fsutil_copy_atomic(const char *src, const char *dst, size_t max, mode_t mode);

/*
 * Maps a whole file read-only (at most max bytes; CS_ENOTFOUND if missing,
 * CS_EINVALID if larger), its pages read in at once: a large cache file
 * costs no copy and no zeroed memory. The file must not be truncated in
 * place while mapped (the caches are replaced by rename). An empty file
 * maps to data NULL, len 0. fsutil_unmap releases it. dev and ino name the
 * file that was mapped (a caller appending to it later checks it is still
 * that file).
 */
struct fsutil_map {
	const char *data;
	size_t len;
	dev_t dev;
	ino_t ino;
};
int fsutil_map_file(const char *path, size_t max, struct fsutil_map *out);
void fsutil_unmap(struct fsutil_map *m);

/*
 * Removes "<path>.tmp.<pid>.<n>" files that a killed process left (that pid
 * gone) in path's directory.
 */
void fsutil_sweep_tmp(const char *path);

/*
 * Replaces a cache file: like fsutil_write_atomic (temp, rename) but without
 * fsync, for files whose reader checks them (a checksum) and rebuilds them
 * when they are damaged. Sweeps the temp files of killed writers first.
 */
int fsutil_write_cache(const char *path, const void *data, size_t len, mode_t mode);

/* fsutil_write_cache without the sweep: temp file, rename, no fsync (the caller sweeps when it sees fit). */
int fsutil_replace_nosync(const char *path, const void *data, size_t len, mode_t mode);

/* Writes all of data to fd, retrying short writes and EINTR. 0 or -1 (errno set). */
int fsutil_write_all(int fd, const void *data, size_t len);

/* Writes a new file (must not exist: O_EXCL) with mode, fsynced. */
int fsutil_write_new(const char *path, const void *data, size_t len, mode_t mode);

int fsutil_fsync_dir(const char *dir);
int fsutil_mkdir_p(const char *path, mode_t mode);

/* Removes a file or a directory tree; a missing path is success. */
int fsutil_rm_rf(const char *path);

/* a + "/" + b (b absolute: b). Caller frees. */
char *fsutil_join(const char *a, const char *b);

/* Directory part of path ("." if none). Caller frees. */
char *fsutil_dirname(const char *path);

/* path made absolute against base_dir when relative. Caller frees. */
char *fsutil_abspath(const char *base_dir, const char *path);

/* 1 if path exists (lstat), else 0. */
int fsutil_exists(const char *path);

#endif
