/* The local file backend: atomic saves with a backup, an append-only journal, and an flock naming its holder. */
#include "state.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"
#include "state_int.h"
#include "state_jparse.h"

#define STATE_FILE_MODE 0600
#define STATE_DIR_MODE 0700
#define STATE_LOCKINFO_MAX 65536

struct state_file {
	struct state_backend base; /* first: the ops are handed a struct state_backend * */
	char *path, *backup, *journal, *lockpath, *dir, *snap;
	int lock_fd;	/* held while locked, -1 otherwise */
	int journal_fd; /* opened on the first append, -1 otherwise */
	/* mu serialises appends and saves (the journal fd and st->serial) and guards the fields below. */
	pthread_mutex_t mu;
	/*
	 * Group commit (see state_file_wait_durable). Positions are logical: bytes
	 * ever appended through this handle. A save or a reopen does not move
	 * them, so a waiter's position keeps its meaning whatever happens to the
	 * file while it sleeps; only the lines a failed sync lost are forgotten
	 * (appended back to durable), once nobody waits for them.
	 */
	pthread_cond_t synced; /* broadcast when a sync ends (done or failed) */
	uint64_t appended;     /* logical end of the lines written */
	uint64_t durable;      /* logical end of the lines a sync made durable; <= appended */
	off_t phys_durable;    /* the journal file's size that durable stands for (the truncation point on failure) */
	int syncing;	       /* 1 while one thread runs the sync, outside mu */
	int broken;	       /* a sync or write failed: the lines past durable are lost */
	unsigned waiting;      /* appenders inside state_file_wait_durable */
	char *fail_msg;	       /* why the journal broke, for every waiter it fails */
};

/* The call that makes the journal's written lines durable (state_file_set_datasync). */
static int (*state_file_datasync_fn)(int fd) = fdatasync;

void state_file_set_datasync(int (*fn)(int fd))
{
	__atomic_store_n(&state_file_datasync_fn, fn ? fn : fdatasync, __ATOMIC_RELEASE);
}

static struct state_file *state_file_of(struct state_backend *be)
{
	return (struct state_file *)be;
}

/* Creates the state's directory (0700) when it is missing; an existing one is left as it is. */
static int state_file_mkdir(const struct state_file *sf)
{
	int rc;

	if (fsutil_exists(sf->dir))
		return 0;
	if ((rc = fsutil_mkdir_p(sf->dir, STATE_DIR_MODE)))
		return rc;
	if (chmod(sf->dir, STATE_DIR_MODE))
		return cs_error(CS_ERROR, "%s: chmod: %s", sf->dir, strerror(errno));
	return 0;
}

/* ---------- lock ---------- */

static char *state_file_user(void)
{
	struct passwd pw, *res = NULL;
	char tmp[4096];
	const char *env;

	if (getpwuid_r(geteuid(), &pw, tmp, sizeof(tmp), &res) == 0 && res && res->pw_name)
		return xstrdup(res->pw_name);
	if ((env = getenv("USER")) && *env)
		return xstrdup(env);
	return xasprintf("uid %ld", (long)geteuid());
}

static int state_file_write_lockinfo(struct state_file *sf, int fd, const char *operation)
{
	struct state_lockinfo li = {0};
	struct buf b = BUF_INIT;
	char host[256] = "unknown", id[37];
	int rc = 0;

	if ((rc = crypto_uuid(id)))
		goto out;
	if (gethostname(host, sizeof(host)) == 0)
		host[sizeof(host) - 1] = '\0';
	li.id = id;
	li.operation = (char *)operation;
	li.pid = (int64_t)getpid();
	li.host = host;
	li.user = state_file_user();
	li.created = util_now();
	li.version = "certsync";
	state_lockinfo_encode(&li, &b);
	if (ftruncate(fd, 0) || pwrite(fd, b.data, b.len, 0) != (ssize_t)b.len)
		rc = cs_error(CS_ERROR, "%s: %s", sf->lockpath, strerror(errno));
out:
	free(li.user);
	buf_free(&b);
	return rc;
}

/*
 * CS_ELOCKED naming the holder. The holder writes its details just after it
 * takes the lock, so an empty file is retried briefly before giving up on them.
 */
static int state_file_locked(struct state_file *sf, int fd)
{
	struct state_lockinfo li = {0};
	char *data = xmalloc(STATE_LOCKINFO_MAX);
	char since[32];
	int rc;

	for (int tries = 0; tries < 20; tries++) {
		ssize_t n = pread(fd, data, STATE_LOCKINFO_MAX, 0);
		struct timespec ts = {0, 10 * 1000 * 1000};

		if (n > 0 && state_lockinfo_decode(data, (size_t)n, &li) == 0 && li.operation)
			break;
		state_lockinfo_clear(&li);
		nanosleep(&ts, NULL);
	}
	if (!li.operation) {
		rc = cs_error(CS_ELOCKED, "%s: state is locked by another process (no holder details in %s)", sf->path,
			      sf->lockpath);
		goto out;
	}
	util_fmt_time(li.created, since);
	rc = cs_error(CS_ELOCKED, "%s: state is locked by %s (pid %lld on host %s, user %s) since %s; lock id %s",
		      sf->path, li.operation, (long long)li.pid, li.host ? li.host : "?", li.user ? li.user : "?",
		      li.created ? since : "an unknown time", li.id ? li.id : "?");
out:
	state_lockinfo_clear(&li);
	free(data);
	return rc;
}

static int state_file_lock(struct state_backend *be, const char *operation)
{
	struct state_file *sf = state_file_of(be);
	int fd = -1, rc = 0, r;

	assert(sf->lock_fd < 0);
	if ((rc = state_file_mkdir(sf)))
		goto out;
	if ((fd = open(sf->lockpath, O_RDWR | O_CREAT | O_CLOEXEC, STATE_FILE_MODE)) < 0) {
		rc = cs_error(CS_ERROR, "%s: %s", sf->lockpath, strerror(errno));
		goto out;
	}
	(void)fchmod(fd, STATE_FILE_MODE); /* best effort: the file may belong to another user */
	while ((r = flock(fd, LOCK_EX | LOCK_NB)) && errno == EINTR)
		;
	if (r) {
		rc = errno == EWOULDBLOCK ? state_file_locked(sf, fd)
					  : cs_error(CS_ERROR, "%s: flock: %s", sf->lockpath, strerror(errno));
		goto out;
	}
	if ((rc = state_file_write_lockinfo(sf, fd, operation))) {
		flock(fd, LOCK_UN);
		goto out;
	}
	sf->lock_fd = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static void state_file_unlock(struct state_backend *be)
{
	struct state_file *sf = state_file_of(be);

	if (sf->lock_fd < 0)
		return;
	if (ftruncate(sf->lock_fd, 0)) {
		/* the details are only informative; the lock goes away with the flock */
	}
	flock(sf->lock_fd, LOCK_UN);
	close(sf->lock_fd);
	sf->lock_fd = -1;
}

/* ---------- journal ---------- */

/*
 * Cuts a final line that has no '\n' (a crash mid-append: never acknowledged),
 * so that the next append does not glue onto it. Called with the lock held.
 */
static int state_file_trim_tail(const struct state_file *sf, int fd)
{
	struct stat st;
	char chunk[4096];
	off_t pos, keep = 0;

	if (fstat(fd, &st))
		return cs_error(CS_ERROR, "%s: %s", sf->journal, strerror(errno));
	for (pos = st.st_size; pos > 0 && !keep;) {
		size_t n = pos > (off_t)sizeof(chunk) ? sizeof(chunk) : (size_t)pos;

		pos -= (off_t)n;
		if (pread(fd, chunk, n, pos) != (ssize_t)n)
			return cs_error(CS_ERROR, "%s: read: %s", sf->journal, strerror(errno));
		for (size_t i = n; i > 0; i--) {
			if (chunk[i - 1] == '\n') {
				keep = pos + (off_t)i;
				break;
			}
		}
	}
	if (keep == st.st_size)
		return 0;
	if (ftruncate(fd, keep) || fsync(fd))
		return cs_error(CS_ERROR, "%s: truncate: %s", sf->journal, strerror(errno));
	return 0;
}

static int state_file_journal_open(struct state_file *sf)
{
	int fd = -1, rc = 0;

	if (sf->journal_fd >= 0)
		return 0;
	if ((rc = state_file_mkdir(sf)))
		goto out;
	if ((fd = open(sf->journal, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, STATE_FILE_MODE)) < 0 ||
	    fchmod(fd, STATE_FILE_MODE)) {
		rc = cs_error(CS_ERROR, "%s: %s", sf->journal, strerror(errno));
		goto out;
	}
	/* The directory entry must be durable before the first acknowledged line. */
	if ((rc = state_file_trim_tail(sf, fd)) || (rc = fsutil_fsync_dir(sf->dir)))
		goto out;
	if ((sf->phys_durable = lseek(fd, 0, SEEK_END)) < 0) {
		rc = cs_error(CS_ERROR, "%s: %s", sf->journal, strerror(errno));
		goto out;
	}
	sf->journal_fd = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static void state_file_journal_close(struct state_file *sf)
{
	if (sf->journal_fd >= 0)
		close(sf->journal_fd);
	sf->journal_fd = -1;
}

/*
 * Marks the journal broken after a failed write or sync (sf->mu held, no
 * sync running): the lines past the last durable end are cut off (as a crash
 * would have lost them), the file is closed, and every appender waiting for
 * them fails with msg (taken). After a failed fdatasync the kernel may have
 * dropped the dirty pages and their error, so a later successful sync proves
 * nothing about those lines: none of them is ever acknowledged, and the
 * journal is not written again until every waiter has seen the failure and
 * the next append reopens it (state_file_append).
 */
static void state_file_break(struct state_file *sf, char *msg)
{
	free(sf->fail_msg);
	sf->fail_msg = msg;
	sf->broken = 1;
	if (sf->journal_fd >= 0 && ftruncate(sf->journal_fd, sf->phys_durable)) {
		/* nothing more to do: the lines were never acknowledged, and the next open trims a partial one */
	}
	state_file_journal_close(sf);
	pthread_cond_broadcast(&sf->synced);
}

/*
 * One sync of everything written so far, run by the calling thread with
 * sf->mu released meanwhile (sf->mu held on entry and return, no sync
 * running). Appenders keep writing lines while it runs; the next sync takes
 * them all.
 */
static void state_file_sync(struct state_file *sf)
{
	uint64_t target = sf->appended;
	off_t phys = sf->phys_durable + (off_t)(sf->appended - sf->durable);
	int (*fn)(int fd) = __atomic_load_n(&state_file_datasync_fn, __ATOMIC_ACQUIRE);
	int fd = sf->journal_fd, r, err;

	sf->syncing = 1;
	pthread_mutex_unlock(&sf->mu);
	r = fn(fd);
	err = errno;
	pthread_mutex_lock(&sf->mu);
	sf->syncing = 0;
	if (r) {
		state_file_break(sf, xasprintf("%s: append: fdatasync: %s", sf->journal, strerror(err)));
		return;
	}
	sf->durable = target;
	sf->phys_durable = phys;
	pthread_cond_broadcast(&sf->synced);
}

/*
 * Group commit: returns once the journal is durable up to the logical
 * position upto (0), or fails when a sync covering it failed (sf->mu held on
 * entry and return; the lock is released while waiting or syncing). One
 * thread at a time runs the sync; every line written before it started is
 * covered by it, so N appenders arriving together cost about two syncs, not N.
 */
static int state_file_wait_durable(struct state_file *sf, uint64_t upto)
{
	int rc = 0;

	sf->waiting++;
	for (;;) {
		if (upto <= sf->durable)
			break;
		if (sf->broken) {
			rc = cs_error(CS_ERROR, "%s", sf->fail_msg);
			break;
		}
		if (sf->syncing)
			pthread_cond_wait(&sf->synced, &sf->mu);
		else
			state_file_sync(sf);
	}
	sf->waiting--;
	return rc;
}

/* Waits until no sync runs (sf->mu held; released while waiting, so lines may be appended meanwhile). */
static void state_file_sync_wait(struct state_file *sf)
{
	while (sf->syncing)
		pthread_cond_wait(&sf->synced, &sf->mu);
}

/*
 * Appends one encoded line and moves st->serial to serial (sf->mu held),
 * returning once the line is durable. The line is written under the lock
 * (the file's order is the serials' order); its sync is shared with the
 * appenders around it (state_file_wait_durable).
 */
static int state_file_append(struct state_file *sf, struct state *st, uint64_t serial, const struct buf *line)
{
	uint64_t mine;
	int rc;

	if (sf->broken) {
		if (sf->waiting)
			return cs_error(CS_ERROR,
					"%s (the journal is reopened once the appends it failed have returned)",
					sf->fail_msg);
		/* Everyone the failure concerned has been told: the lost lines are forgotten and the journal reopened.
		 */
		sf->broken = 0;
		sf->appended = sf->durable;
	}
	if ((rc = state_file_journal_open(sf)))
		return rc;
	if (fsutil_write_all(sf->journal_fd, line->data, line->len)) {
		rc = cs_error(CS_ERROR, "%s: append: %s", sf->journal, strerror(errno));
		sf->waiting++; /* no reopen before this thread has broken the journal it wrote to */
		state_file_sync_wait(sf);
		sf->waiting--;
		if (!sf->broken)
			state_file_break(sf, xstrdup(cs_errmsg()));
		return rc;
	}
	sf->appended += line->len;
	mine = sf->appended;
	st->serial = serial; /* the next line's serial follows this one even if this sync fails: serials never repeat */
	return state_file_wait_durable(sf, mine);
}

static int state_file_journal(struct state_backend *be, struct state *st, const char *name,
			      const struct state_cert *rec)
{
	struct state_file *sf = state_file_of(be);
	struct buf line = BUF_INIT;
	int rc;

	pthread_mutex_lock(&sf->mu);
	state_journal_encode(st->serial + 1, name, rec, &line);
	rc = state_file_append(sf, st, st->serial + 1, &line);
	pthread_mutex_unlock(&sf->mu);
	buf_free(&line);
	return rc;
}

/* Applies one journal line when it is newer than the state. */
static int state_file_replay_line(struct state_file *sf, struct state *st, const char *line, size_t len, size_t lineno)
{
	struct state_journal_entry e;
	int rc;

	if ((rc = state_journal_decode(line, len, sf->journal, lineno, &e)))
		return rc;
	if (e.serial > st->serial) {
		if (!e.name) {
			state_set_source(st, e.source_url, e.source_ref, e.source_commit);
		} else if (e.rec) {
			state_cert_adopt(st, e.rec);
			e.rec = NULL;
		} else if (state_cert_get(st, e.name)) {
			state_cert_remove(st, e.name);
		}
		st->serial = e.serial;
	}
	state_journal_entry_clear(&e);
	return 0;
}

static int state_file_replay(struct state_file *sf, struct state *st)
{
	struct buf data = BUF_INIT;
	const char *p, *end;
	size_t lineno = 0;
	int rc;

	rc = fsutil_read_file(sf->journal, STATE_MAX_BYTES, &data);
	if (rc == CS_ENOTFOUND) {
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	for (p = data.data, end = p + data.len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		lineno++;
		if (!nl)
			break; /* a final line cut short by a crash: it was never acknowledged */
		if (nl > p && (rc = state_file_replay_line(sf, st, p, (size_t)(nl - p), lineno)))
			goto out;
		p = nl + 1;
	}
out:
	buf_free(&data);
	return rc;
}

/* ---------- load / save ---------- */

/* Re-raises the current (decode) error with the backup named. */
static int state_file_backup_hint(const struct state_file *sf, int code)
{
	char *msg = xstrdup(cs_errmsg());
	int rc;

	if (fsutil_exists(sf->backup))
		rc = cs_error(code, "%s (the previous state is in %s)", msg, sf->backup);
	else
		rc = cs_error(code, "%s (and there is no backup at %s)", msg, sf->backup);
	free(msg);
	return rc;
}

/* ---------- the decoded-state snapshot ---------- */

/* The identity half of a snapshot key. */
static void state_file_key_stat(const struct stat *sb, struct state_snap_key *key)
{
	memset(key, 0, sizeof(*key));
	key->dev = (uint64_t)sb->st_dev;
	key->ino = (uint64_t)sb->st_ino;
	key->size = (uint64_t)sb->st_size;
	key->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
	key->ctime_ns = (int64_t)sb->st_ctim.tv_sec * 1000000000 + sb->st_ctim.tv_nsec;
}

static int state_file_same(const struct state_snap_key *a, const struct state_snap_key *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
	       a->ctime_ns == b->ctime_ns;
}

/*
 * The content half: the lineage and serial a state document names first, as
 * files we write do ("version", "lineage", "serial"). 0 when data starts so;
 * -1 for anything else (no snapshot is used or made for such a file).
 */
static int state_file_key_head(const char *data, size_t len, struct state_snap_key *key)
{
	static const char *const keys[] = {"version", "lineage", "serial"};
	struct state_jp jp;
	enum state_jt t;
	size_t n = 0;
	int rc = -1;

	state_jp_init(&jp, data, len);
	if (state_jp_value(&jp, &t) || t != STATE_JT_OBJECT)
		goto out;
	for (int i = 0; i < 3; i++) {
		if (state_jp_member(&jp, &n) != 1 || strcmp(jp.key.data, keys[i]) || state_jp_value(&jp, &t))
			goto out;
		if (i == 0 && (t != STATE_JT_INTEGER || jp.num != STATE_VERSION))
			goto out;
		if (i == 1 && (t != STATE_JT_STRING || !jp.str.len || jp.str.len >= sizeof(key->lineage)))
			goto out;
		if (i == 2 && (t != STATE_JT_INTEGER || jp.num < 0))
			goto out;
		if (i == 1)
			memcpy(key->lineage, jp.str.data, jp.str.len + 1);
		if (i == 2)
			key->serial = (uint64_t)jp.num;
	}
	rc = 0;
out:
	state_jp_free(&jp);
	return rc;
}

#define STATE_FILE_HEAD 512 /* enough for the version, a 36-character lineage and a serial */

/*
 * 1 when a key taken now may not tell a same-size rewrite in place from the
 * file it names (see struct state_snap_key): its mtime is less than a margin
 * old. The margin covers the kernel's coarse clock ticks (100 ms); times in
 * whole 10 ms steps are a coarse filesystem (FAT: 2 s), given 2 s.
 */
static int state_file_racy(const struct state_snap_key *key)
{
	int64_t margin = key->mtime_ns % 10000000 ? 100000000 : INT64_C(2000000000);
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return key->mtime_ns + margin > (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Marks a key racy (with the content's CRC) or not, for a snapshot written now. */
static void state_file_key_racy(struct state_snap_key *key, const struct buf *content)
{
	key->racy = (uint32_t)state_file_racy(key);
	key->content_crc = key->racy ? state_snap_crc(content->data, content->len) : 0;
}

/*
 * 1 when the file open at fd holds exactly key->size bytes whose CRC-32C is
 * key->content_crc (read in huge pages: 12 MB in 4 KB pages cost 35 ms here).
 */
static int state_file_content_is(int fd, const struct state_snap_key *key)
{
	struct state_bigmem mem;
	size_t got = 0;
	ssize_t n = 1;
	int same;

	if (key->size > STATE_MAX_BYTES)
		return 0;
	state_bigmem_alloc(&mem, (size_t)key->size + 1);
	while (got <= key->size && n > 0) {
		n = pread(fd, (char *)mem.p + got, (size_t)key->size + 1 - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			n = 1;
		else if (n > 0)
			got += (size_t)n;
	}
	same = n == 0 && got == key->size && state_snap_crc(mem.p, got) == key->content_crc;
	state_bigmem_free(&mem);
	return same;
}

/*
 * The state from its snapshot when the snapshot was made from exactly the
 * file open at fd (sb its fstat); *key gets that file's key either way. A
 * racy snapshot is checked against the file's content (and
 * rewritten, no longer racy, once the file is old enough). Anything else (no
 * snapshot, a stale or damaged one) is 1: decode the JSON.
 */
static int state_file_snap_load(struct state_file *sf, int fd, const struct stat *sb, struct state_snap_key *key,
				struct state **out)
{
	char head[STATE_FILE_HEAD];
	ssize_t n;
	int rc;

	state_file_key_stat(sb, key);
	while ((n = pread(fd, head, sizeof(head), 0)) < 0 && errno == EINTR)
		;
	if (n <= 0 || state_file_key_head(head, (size_t)n, key))
		return 1;
	if ((rc = state_snap_read(sf->snap, key, out))) {
		if (rc != CS_ENOTFOUND)
			log_debug("state: snapshot not used, decoding %s: %s", sf->path, cs_errmsg());
		return 1;
	}
	if (!key->racy)
		return 0;
	if (!state_file_content_is(fd, key)) {
		log_debug("state: snapshot not used, decoding %s: it changed in the same clock tick", sf->path);
		state_free(*out);
		*out = NULL;
		return 1;
	}
	if (!state_file_racy(key)) {
		key->racy = 0;
		key->content_crc = 0;
		if (state_snap_write(sf->snap, *out, key))
			log_debug("state: no snapshot written: %s", cs_errmsg());
	}
	return 0;
}

/*
 * After a JSON decode of data, read from the file whose key is *key (before
 * the read): a snapshot for the next load, unless the file changed meanwhile
 * or does not start as ours. Best effort: a plan in a read-only directory
 * simply has none. data is freed when a snapshot is written.
 */
static void state_file_snap_after_decode(struct state_file *sf, struct buf *data, struct state_snap_key *key,
					 const struct state *st)
{
	struct state_snap_key now;
	struct stat sb;

	if (stat(sf->path, &sb))
		return;
	state_file_key_stat(&sb, &now);
	if (!state_file_same(key, &now) || state_file_key_head(data->data, data->len, key) ||
	    strcmp(key->lineage, st->lineage) || key->serial != st->serial)
		return;
	state_file_key_racy(key, data);
	buf_free(data); /* decoded: the text need not be at the peak with the snapshot (125 + 59 MB at 100,000) */
	if (state_snap_write(sf->snap, st, key))
		log_debug("state: no snapshot written: %s", cs_errmsg());
}

static int state_file_load(struct state_backend *be, struct state **out)
{
	struct state_file *sf = state_file_of(be);
	struct buf data = BUF_INIT;
	struct state_snap_key key;
	struct state *st = NULL;
	struct stat sb;
	int rc = 0, refused = 0, fd = open(sf->path, O_RDONLY | O_CLOEXEC);

	memset(&key, 0, sizeof(key));
	if (fd >= 0 && !fstat(fd, &sb) && S_ISREG(sb.st_mode) && !state_file_snap_load(sf, fd, &sb, &key, &st)) {
		log_debug("state: %s read from its snapshot %s", sf->path, sf->snap);
	} else {
		rc = fsutil_read_file(sf->path, STATE_MAX_BYTES, &data);
		if (rc == CS_ENOTFOUND) {
			st = state_new();
			rc = 0;
		} else if (rc) {
			goto out;
		} else if ((rc = state_decode(data.data, data.len, sf->path, &st, &refused))) {
			if (!refused)
				rc = state_file_backup_hint(sf, rc);
			goto out;
		} else if (fd >= 0 && key.ino) {
			state_file_snap_after_decode(sf, &data, &key, st);
		}
	}
	if ((rc = state_file_replay(sf, st)))
		goto out;
	*out = st;
	st = NULL;
out:
	if (fd >= 0)
		close(fd);
	state_free(st);
	buf_free(&data);
	return rc;
}

/*
 * fsutil_write_atomic that also gives the identity of the file written, as
 * it is after the rename (the snapshot's key): taken from the file itself, so
 * a writer racing in after the rename cannot lend it its own.
 */
static int state_file_write_keyed(const struct state_file *sf, const struct buf *doc, struct state_snap_key *key)
{
	static atomic_uint counter;
	char *tmp = xasprintf("%s.tmp.%ld.%u", sf->path, (long)getpid(), atomic_fetch_add(&counter, 1));
	struct stat sb;
	int fd, rc = 0;

	unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, STATE_FILE_MODE)) < 0) {
		rc = cs_error(CS_ERROR, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, STATE_FILE_MODE) || fsutil_write_all(fd, doc->data, doc->len) || fsync(fd)) {
		rc = cs_error(CS_ERROR, "%s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, sf->path)) {
		rc = cs_error(CS_ERROR, "%s: rename: %s", sf->path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (fstat(fd, &sb))
		memset(&sb, 0, sizeof(sb)); /* a key no file has: the next load decodes the JSON */
	state_file_key_stat(&sb, key);
	rc = fsutil_fsync_dir(sf->dir);
out:
	if (fd >= 0 && close(fd) && !rc)
		rc = cs_error(CS_ERROR, "%s: %s", sf->path, strerror(errno));
	free(tmp);
	return rc;
}

/* A full save (sf->mu held). */
static int state_file_save_locked(struct state_file *sf, struct state *st)
{
	struct buf doc = BUF_INIT;
	struct state_snap_key key;
	uint64_t prev;
	int rc;

	/*
	 * No sync may run while the journal is closed below; waiting first and
	 * then holding sf->mu throughout, every line in the journal is one whose
	 * record is in st as encoded here.
	 */
	state_file_sync_wait(sf);
	prev = st->serial;
	if ((rc = state_file_mkdir(sf)))
		goto out;
	st->serial++;
	state_to_json(st, &doc);
	/* The previous state becomes the backup, copied in the kernel: no read of it into memory. */
	rc = fsutil_copy_atomic(sf->path, sf->backup, STATE_MAX_BYTES, STATE_FILE_MODE);
	if (rc == CS_ENOTFOUND)
		rc = 0;
	else if (rc)
		goto out;
	if ((rc = state_file_write_keyed(sf, &doc, &key)))
		goto out;
	/*
	 * The journal's serials are all below the saved one now: removing it is
	 * tidiness, not correctness. Lines still waiting for their sync are
	 * durable in the saved file: their appenders return 0 (unless a failed
	 * sync has already told them otherwise).
	 */
	if (!sf->broken && sf->durable < sf->appended) {
		sf->durable = sf->appended;
		pthread_cond_broadcast(&sf->synced);
	}
	state_file_journal_close(sf);
	unlink(sf->journal);
	/* The next load (a cold plan) reads the snapshot instead of decoding the JSON. */
	memcpy(key.lineage, st->lineage, sizeof(key.lineage));
	key.serial = st->serial;
	state_file_key_racy(&key, &doc);
	if (key.ino && state_snap_write(sf->snap, st, &key))
		log_debug("state: no snapshot written: %s", cs_errmsg());
out:
	if (rc)
		st->serial = prev;
	buf_free(&doc);
	return rc;
}

static int state_file_save(struct state_backend *be, struct state *st)
{
	struct state_file *sf = state_file_of(be);
	int rc;

	pthread_mutex_lock(&sf->mu);
	rc = state_file_save_locked(sf, st);
	pthread_mutex_unlock(&sf->mu);
	return rc;
}

/*
 * A source line in the journal; a full save instead when there is no state
 * file (a journal alone is replayed over a fresh state, whose lineage is new
 * at every load) or the journal has reached STATE_FILE_JOURNAL_FOLD bytes
 * (the fold bounds both the journal and what every load replays).
 */
static int state_file_note_source(struct state_backend *be, struct state *st)
{
	struct state_file *sf = state_file_of(be);
	struct buf line = BUF_INIT;
	struct stat sb;
	int rc;

	pthread_mutex_lock(&sf->mu);
	if (access(sf->path, F_OK)) {
		log_debug("state: no %s yet: the source is recorded by a full save", sf->path);
		rc = state_file_save_locked(sf, st);
		goto out;
	}
	if ((rc = state_file_journal_open(sf)))
		goto out;
	if (fstat(sf->journal_fd, &sb)) {
		rc = cs_error(CS_ERROR, "%s: %s", sf->journal, strerror(errno));
		goto out;
	}
	if ((uint64_t)sb.st_size >= STATE_FILE_JOURNAL_FOLD) {
		log_debug("state: %s holds %lld bytes: folded into %s by a full save", sf->journal,
			  (long long)sb.st_size, sf->path);
		rc = state_file_save_locked(sf, st);
		goto out;
	}
	state_journal_encode_source(st->serial + 1, st->source_url, st->source_ref, st->source_commit, &line);
	rc = state_file_append(sf, st, st->serial + 1, &line);
out:
	pthread_mutex_unlock(&sf->mu);
	buf_free(&line);
	return rc;
}

/* ---------- a lost state next to its backup ---------- */

/* Reads and decodes the backup (bounded, validated like the state itself). */
static int state_file_read_backup(const char *backup, struct buf *data, struct state **st)
{
	int refused = 0, rc = fsutil_read_file(backup, STATE_MAX_BYTES, data);

	if (!rc)
		rc = state_decode(data->data, data->len, backup, st, &refused);
	return rc;
}

int state_file_lost(const char *path, char *desc, size_t n)
{
	char *backup = xasprintf("%s.backup", path);
	struct buf data = BUF_INIT;
	struct state *st = NULL;
	int lost = 0;

	if (access(path, F_OK) == 0 || errno != ENOENT || !fsutil_exists(backup))
		goto out;
	lost = 1;
	if (state_file_read_backup(backup, &data, &st))
		snprintf(desc, n, "%s (unreadable: %s)", backup, cs_errmsg());
	else
		snprintf(desc, n, "%s (lineage %.8s, serial %llu, %zu certificate%s)", backup, st->lineage,
			 (unsigned long long)st->serial, state_cert_count(st), state_cert_count(st) == 1 ? "" : "s");
out:
	state_free(st);
	buf_free(&data);
	free(backup);
	return lost;
}

int state_file_restore(struct state_backend *be)
{
	struct state_file *sf = state_file_of(be);
	struct buf data = BUF_INIT;
	struct state *st = NULL;
	int rc;

	if (fsutil_exists(sf->path))
		return cs_error(CS_ECONFLICT, "%s exists: nothing to restore (remove it first if it is the wrong one)",
				sf->path);
	if (!fsutil_exists(sf->backup))
		return cs_error(CS_ENOTFOUND, "there is no backup at %s", sf->backup);
	if ((rc = state_file_read_backup(sf->backup, &data, &st)))
		goto out;
	pthread_mutex_lock(&sf->mu);
	rc = fsutil_write_atomic(sf->path, data.data, data.len, STATE_FILE_MODE);
	pthread_mutex_unlock(&sf->mu);
out:
	state_free(st);
	buf_free(&data);
	return rc;
}

/* ---------- the backend ---------- */

static void state_file_free(struct state_backend *be)
{
	struct state_file *sf = state_file_of(be);

	state_file_unlock(be);
	state_file_journal_close(sf);
	pthread_cond_destroy(&sf->synced);
	pthread_mutex_destroy(&sf->mu);
	free(sf->fail_msg);
	free(sf->path);
	free(sf->backup);
	free(sf->journal);
	free(sf->lockpath);
	free(sf->dir);
	free(sf->snap);
	free(sf);
}

/* The flock is held for the whole operation: leading while locked. */
static int state_file_leading(struct state_backend *be)
{
	return state_file_of(be)->lock_fd >= 0;
}

static const struct state_backend_ops state_file_ops = {
	.name = "file",
	.lock = state_file_lock,
	.unlock = state_file_unlock,
	.load = state_file_load,
	.save = state_file_save,
	.journal = state_file_journal,
	.note_source = state_file_note_source,
	.free = state_file_free,
	.leading = state_file_leading,
};

int state_file_open(const char *path, struct state_backend **out)
{
	struct state_file *sf;

	if (!path || !*path)
		return cs_error(CS_EINVALID, "state path is empty");
	sf = xcalloc(1, sizeof(*sf));
	sf->base.ops = &state_file_ops;
	sf->path = xstrdup(path);
	sf->backup = xasprintf("%s.backup", path);
	sf->journal = xasprintf("%s.journal", path);
	sf->lockpath = xasprintf("%s.lock", path);
	sf->dir = fsutil_dirname(path);
	sf->snap = xasprintf("%s%s", path, STATE_SNAP_SUFFIX);
	sf->lock_fd = -1;
	sf->journal_fd = -1;
	pthread_mutex_init(&sf->mu, NULL);
	pthread_cond_init(&sf->synced, NULL);
	*out = &sf->base;
	return 0;
}

/* ---------- wrappers ---------- */

int state_lock(struct state_backend *be, const char *operation)
{
	return be->ops->lock(be, operation);
}

void state_unlock(struct state_backend *be)
{
	if (be)
		be->ops->unlock(be);
}

int state_load(struct state_backend *be, struct state **out)
{
	return be->ops->load(be, out);
}

int state_save(struct state_backend *be, struct state *st)
{
	return be->ops->save(be, st);
}

int state_journal(struct state_backend *be, struct state *st, const char *name, const struct state_cert *rec)
{
	return be->ops->journal(be, st, name, rec);
}

int state_note_source(struct state_backend *be, struct state *st, const char *url, const char *ref, const char *commit)
{
	state_set_source(st, url, ref, commit);
	if (!be->ops->note_source)
		return be->ops->save(be, st);
	if (state_source_check(url, ref, commit)) {
		log_debug("state: the source is recorded by a full save (not as a journal line: %s)", cs_errmsg());
		cs_error_clear();
		return be->ops->save(be, st);
	}
	return be->ops->note_source(be, st);
}

void state_keep_snapshot(struct state_backend *be, const struct state *st)
{
	if (be && be->ops->keep_snapshot)
		be->ops->keep_snapshot(be, st);
}

void state_backend_free(struct state_backend *be)
{
	if (be)
		be->ops->free(be);
}

int state_leading(struct state_backend *be)
{
	return be && be->ops->leading && be->ops->leading(be);
}

uint64_t state_epoch(struct state_backend *be)
{
	return be && be->ops->epoch ? be->ops->epoch(be) : 0;
}

int state_shared(const struct state_backend *be)
{
	return be && be->ops->refresh != NULL;
}

void state_on_change(struct state_backend *be, void (*fn)(void *arg), void *arg)
{
	if (be && be->ops->on_change)
		be->ops->on_change(be, fn, arg);
}

int state_kick(struct state_backend *be, const char *name)
{
	if (be && be->ops->kick)
		return be->ops->kick(be, name);
	return cs_error(CS_ERROR, "the %s state backend has no leader to ask", be ? be->ops->name : "(none)");
}

int state_take_kicks(struct state_backend *be, char ***names, size_t *n)
{
	*names = NULL;
	*n = 0;
	if (be && be->ops->take_kicks)
		return be->ops->take_kicks(be, names, n);
	return 0;
}

int state_take_foreign(struct state_backend *be)
{
	return be && be->ops->take_foreign ? be->ops->take_foreign(be) : 0;
}

int state_refresh(struct state_backend *be, struct state *st, char ***changed, size_t *n_changed)
{
	*changed = NULL;
	*n_changed = 0;
	if (be && be->ops->refresh)
		return be->ops->refresh(be, st, changed, n_changed);
	return 0;
}

int state_holder(struct state_backend *be, char *desc, size_t n)
{
	if (n)
		desc[0] = '\0';
	if (be && be->ops->holder)
		return be->ops->holder(be, desc, n);
	return 0;
}
