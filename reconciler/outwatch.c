/* Output checks that follow change: inotify bookkeeping for certsync run (outwatch.h). */
#include "outwatch.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/strmap.h"
#include "../util/util.h"

#define OW_MASK                                                                                                        \
	(IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE |                \
	 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define OW_IDENTITY (IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE) /* what a named child becomes another */
#define OW_GONE (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT) /* the watched directory itself left */
#define OW_READ_BUF 65536
#define OW_AHEAD 8 /* records prefetched ahead of a walk (ow_prefetch) */

/*
 * The maps own their keys. cover: num is the wd, flag says a generation
 * directory (its children's events are its own). wds: ptr is the directory
 * the watch was added for (owned), flag the same. touched: keys only.
 */

/* Empties m (freeing its ptrs when they are owned, as in wds); it stays a table that owns its keys. */
static void ow_map_clear(struct strmap *m, int own_ptrs)
{
	for (size_t i = 0; own_ptrs && i < m->cap; i++)
		if (strmap_live(&m->v[i]))
			free(m->v[i].ptr);
	strmap_free(m);
	m->owns_keys = 1;
}

/* ---------- the watcher ---------- */

/*
 * The last result for one certificate and what it was computed from: name,
 * output_dir, out_generation, out_hash and the two format ids, each as a tag
 * ('N' NULL, 'S' a string) and the string, one after another in one block
 * (one allocation to walk instead of six).
 */
#define OW_FIELDS 6

struct ow_prev {
	char *key;
	struct state_filesig sig[STATE_OUT_FILES];
	enum output_status status;
	int covered; /* all its directories were watched when it was checked */
};

struct outwatch {
	char *root;
	int fd;	      /* inotify; -1 when off */
	int off;      /* watching is off for good (logged once) */
	int looked;   /* a look happened since the last reset */
	int all_once; /* the next look checks everything (overflow, the root itself changed) */
	int64_t last_full;
	long max_watches;      /* CERTSYNC_OUTWATCH_MAX (0: the kernel's limit only) */
	struct strmap cover;   /* directory (relative to root, "" the root) -> wd */
	struct strmap wds;     /* wd (as text) -> the directory it was added for */
	struct strmap touched; /* paths (relative) with events since the last look */
	struct ow_prev *prev;  /* by name */
	size_t n_prev;
};

const char *outwatch_root(const struct outwatch *w)
{
	return w->root;
}

int outwatch_active(const struct outwatch *w)
{
	return w->fd >= 0;
}

static void ow_prev_free(struct ow_prev *p)
{
	free(p->key);
}

/* Drops every watch and map: the next look checks and watches everything again. */
static void ow_reset(struct outwatch *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = w->off ? -1 : inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	ow_map_clear(&w->cover, 0);
	ow_map_clear(&w->wds, 1);
	ow_map_clear(&w->touched, 0);
	w->looked = 0;
	if (w->fd < 0 && !w->off) {
		log_warn("outputs: inotify is unavailable (%s): every output is checked by stat at every pass",
			 strerror(errno));
		w->off = 1;
	}
}

/* Turns watching off for good, saying why once. */
static void ow_turn_off(struct outwatch *w, const char *why)
{
	if (!w->off)
		log_warn("outputs under %s: %s: every output is checked by stat at every pass from now on", w->root,
			 why);
	w->off = 1;
	ow_reset(w);
}

/* File systems where a change made by another machine raises no event here. */
static int ow_remote_fs(const char *root)
{
	static const long magic[] = {0x6969 /* NFS */,
				     0x517B /* SMB */,
				     (long)0xFF534D42 /* CIFS */,
				     (long)0xFE534D42 /* SMB2 */,
				     0x65735546 /* FUSE */,
				     0x00C36400 /* Ceph */,
				     0x47504653 /* GPFS */,
				     0x5346414F /* AFS */,
				     0x0BD00BD0 /* Lustre */};
	struct statfs sf;

	if (statfs(root, &sf))
		return 0;
	for (size_t i = 0; i < sizeof(magic) / sizeof(magic[0]); i++)
		if ((long)sf.f_type == magic[i])
			return 1;
	return 0;
}

struct outwatch *outwatch_new(const char *root)
{
	struct outwatch *w = xcalloc(1, sizeof(*w));
	const char *env = getenv("CERTSYNC_OUTWATCH"), *max = getenv("CERTSYNC_OUTWATCH_MAX");

	w->root = xstrdup(root);
	w->fd = -1;
	if (max && *max)
		w->max_watches = strtol(max, NULL, 10);
	if ((env && !strcmp(env, "off")) || (max && *max && w->max_watches <= 0)) {
		log_info("outputs: %s: every output is checked by stat at every pass",
			 env && !strcmp(env, "off") ? "CERTSYNC_OUTWATCH=off"
						    : "CERTSYNC_OUTWATCH_MAX is not a positive number");
		w->off = 1;
	} else if (ow_remote_fs(root)) {
		log_info("outputs: %s is on a network or FUSE file system, where inotify misses changes made "
			 "elsewhere: every output is checked by stat at every pass",
			 root);
		w->off = 1;
	}
	ow_reset(w);
	return w;
}

void outwatch_free(struct outwatch *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	ow_map_clear(&w->cover, 0);
	ow_map_clear(&w->wds, 1);
	ow_map_clear(&w->touched, 0);
	for (size_t i = 0; i < w->n_prev; i++)
		ow_prev_free(&w->prev[i]);
	free(w->prev);
	free(w->root);
	free(w);
}

static void ow_touch(struct outwatch *w, const char *rel, size_t len)
{
	if (!len)
		w->all_once = 1; /* the root itself: everything under it */
	else
		strmap_put(&w->touched, rel, len);
}

/* A directory no longer is the one watched (moved, deleted): it and, for a tree directory, all below it. */
static void ow_uncover(struct outwatch *w, const char *rel, size_t len)
{
	struct strmap_slot *s = strmap_get(&w->cover, rel, len);
	int tree = s && !s->flag;

	if (s)
		strmap_del(&w->cover, s);
	if (!len) {
		w->all_once = 1;
		ow_reset(w); /* the root went: nothing watched below it holds */
		return;
	}
	for (size_t i = 0; tree && i < w->cover.cap; i++) {
		struct strmap_slot *c = &w->cover.v[i];

		if (strmap_live(c) && !strncmp(c->key, rel, len) && c->key[len] == '/')
			strmap_del(&w->cover, c);
	}
}

static void ow_event(struct outwatch *w, const struct inotify_event *ev)
{
	char key[24], path[PATH_MAX];
	struct strmap_slot *s, *c;
	size_t rl;
	int gen, n;

	if (ev->mask & IN_Q_OVERFLOW) {
		log_info("outputs: the inotify queue overflowed: every output is checked again and watched anew");
		w->all_once = 1;
		ow_reset(w);
		return;
	}
	snprintf(key, sizeof(key), "%d", ev->wd);
	if (!(s = strmap_get(&w->wds, key, strlen(key))))
		return; /* a watch dropped already */
	rl = strlen(s->ptr);
	memcpy(path, s->ptr, rl + 1); /* built below PATH_MAX by ow_watch */
	gen = s->flag;
	if (ev->mask & IN_IGNORED) { /* the kernel dropped the watch: its wd may be given out again */
		free(s->ptr);
		strmap_del(&w->wds, s);
	}
	if ((ev->mask & OW_GONE) && (c = strmap_get(&w->cover, path, rl)) && c->num == (size_t)ev->wd) {
		ow_touch(w, path, rl);
		ow_uncover(w, path, rl);
		return;
	}
	if (gen || !ev->len || !ev->name[0]) {
		ow_touch(w, path, rl);
		return;
	}
	n = snprintf(path + rl, sizeof(path) - rl, "%s%s", rl ? "/" : "", ev->name);
	if (n < 0 || (size_t)n >= sizeof(path) - rl) {
		w->all_once = 1;
		return;
	}
	ow_touch(w, path, rl + (size_t)n);
	if (ev->mask & OW_IDENTITY)
		ow_uncover(w, path, rl + (size_t)n);
}

/* Takes every queued event. */
static void ow_drain(struct outwatch *w)
{
	char buf[OW_READ_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));

	while (w->fd >= 0) {
		ssize_t n = read(w->fd, buf, sizeof(buf));

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return;
		}
		for (ssize_t at = 0; at + (ssize_t)sizeof(struct inotify_event) <= n && w->fd >= 0;) {
			const struct inotify_event *ev = (const struct inotify_event *)(buf + at);

			at += (ssize_t)(sizeof(*ev) + ev->len);
			ow_event(w, ev);
		}
	}
}

/* ---------- watching a certificate's directories ---------- */

/* An output directory whose parents can be named relative to the root ("a/b/c"; no ".", "..", "//"). */
static int ow_path_ok(const struct state_cert *rec)
{
	const char *d = rec->output_dir;

	if (!d || !*d || *d == '/' || d[strlen(d) - 1] == '/' || strstr(d, "//") || !rec->out_generation ||
	    strchr(rec->out_generation, '/'))
		return 0;
	for (const char *p = d; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
		if ((p[0] == '.' && (p[1] == '/' || !p[1])) || (p[0] == '.' && p[1] == '.' && (p[2] == '/' || !p[2])))
			return 0;
	return 1;
}

/* The generation directory's path relative to the root, its length (0: too long). */
static size_t ow_gendir(const struct state_cert *rec, char *out, size_t cap)
{
	const char *slash = strrchr(rec->output_dir, '/');
	int pl = slash ? (int)(slash - rec->output_dir + 1) : 0;
	int n = snprintf(out, cap, "%.*s%s", pl, rec->output_dir, rec->out_generation);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Watches root/rel (once); 1 if it is watched under that name alone. */
static int ow_watch(struct outwatch *w, const char *rel, size_t len, int gen)
{
	char path[PATH_MAX], key[24];
	struct strmap_slot *s, *c;
	int wd, n;

	if (strmap_get(&w->cover, rel, len))
		return 1;
	if (w->fd < 0)
		return 0;
	if (w->max_watches && (long)w->wds.n >= w->max_watches) {
		ow_turn_off(w, "CERTSYNC_OUTWATCH_MAX directories are watched already");
		return 0;
	}
	n = snprintf(path, sizeof(path), "%s%s%.*s", w->root, len ? "/" : "", (int)len, rel);
	if (n < 0 || (size_t)n >= sizeof(path))
		return 0;
	if ((wd = inotify_add_watch(w->fd, path, OW_MASK)) < 0) {
		if (errno == ENOSPC)
			ow_turn_off(w, "the inotify watch limit (fs.inotify.max_user_watches) is reached");
		return 0; /* missing or unreadable: checked by stat until it can be watched */
	}
	snprintf(key, sizeof(key), "%d", wd);
	s = strmap_get(&w->wds, key, strlen(key));
	if (s && (strlen(s->ptr) != len || strncmp(s->ptr, rel, len)) &&
	    (c = strmap_get(&w->cover, s->ptr, strlen(s->ptr))) && c->num == (size_t)wd)
		return 0; /* one directory under two names (a symlink): its events name one; the other is stat-ed */
	s = strmap_put(&w->wds, key, strlen(key));
	free(s->ptr);
	s->ptr = xstrndup(rel, len);
	s->flag = gen;
	c = strmap_put(&w->cover, rel, len);
	c->num = (size_t)wd;
	c->flag = gen;
	return 1;
}

/* Watches the root, every parent of rec's output directory and its generation directory. */
static int ow_cover(struct outwatch *w, const struct state_cert *rec)
{
	const char *d = rec->output_dir, *slash;
	char gd[PATH_MAX];
	size_t gl;

	if (!ow_path_ok(rec) || !ow_watch(w, "", 0, 0))
		return 0;
	for (const char *p = d; (slash = strchr(p, '/')); p = slash + 1)
		if (!ow_watch(w, d, (size_t)(slash - d), 0))
			return 0;
	return (gl = ow_gendir(rec, gd, sizeof(gd))) && ow_watch(w, gd, gl, 1);
}

/* Whether an event since the last look names rec's generation, its link or a parent of them. */
static int ow_touched(const struct outwatch *w, const struct state_cert *rec)
{
	const char *d = rec->output_dir, *slash;
	char gd[PATH_MAX];
	size_t gl;

	if (!w->touched.n)
		return 0;
	if (!ow_path_ok(rec) || !(gl = ow_gendir(rec, gd, sizeof(gd))))
		return 1;
	for (const char *p = d; (slash = strchr(p, '/')); p = slash + 1)
		if (strmap_get(&w->touched, d, (size_t)(slash - d)))
			return 1;
	return strmap_get(&w->touched, d, strlen(d)) || strmap_get(&w->touched, gd, gl);
}

/* ---------- the last results ---------- */

/* The fields a result depends on, name first. */
static void ow_fields(const struct state_cert *rec, const char *f[OW_FIELDS])
{
	f[0] = rec->name;
	f[1] = rec->output_dir;
	f[2] = rec->out_generation;
	f[3] = rec->out_hash;
	f[4] = state_cert_id(rec, "outputs.formats");	  /* OUTPUTS_ID_FORMATS */
	f[5] = state_cert_id(rec, "outputs.format_sigs"); /* OUTPUTS_ID_FORMAT_SIGS */
}

static int ow_same(const struct ow_prev *p, const struct state_cert *rec)
{
	const char *f[OW_FIELDS], *k = p->key;

	if (memcmp(p->sig, rec->out_sig, sizeof(p->sig)))
		return 0;
	ow_fields(rec, f);
	for (int i = 0; i < OW_FIELDS; i++) {
		if (*k == 'N') {
			if (f[i])
				return 0;
			k += 2;
			continue;
		}
		if (!f[i] || strcmp(k + 1, f[i]))
			return 0;
		k += strlen(k) + 1;
	}
	return 1;
}

static void ow_prev_fill(struct ow_prev *p, const struct state_cert *rec, enum output_status status, int covered)
{
	const char *f[OW_FIELDS];
	size_t len = 0, at = 0;

	ow_fields(rec, f);
	for (int i = 0; i < OW_FIELDS; i++)
		len += (f[i] ? strlen(f[i]) : 0) + 2;
	p->key = xmalloc(len);
	for (int i = 0; i < OW_FIELDS; i++) {
		size_t l = f[i] ? strlen(f[i]) : 0;

		p->key[at++] = f[i] ? 'S' : 'N';
		memcpy(p->key + at, f[i] ? f[i] : "", l + 1);
		at += l + 1;
	}
	memcpy(p->sig, rec->out_sig, sizeof(p->sig));
	p->status = status;
	p->covered = covered;
}

/* The last result for name (-1: none); *cur walks the names in order, as the records come. */
static long ow_match(const struct outwatch *w, const char *name, size_t *cur)
{
	while (*cur < w->n_prev) {
		int c;

		if (*cur + OW_AHEAD < w->n_prev)
			__builtin_prefetch(w->prev[*cur + OW_AHEAD].key);
		c = strcmp(w->prev[*cur].key + 1, name); /* the name is never NULL: 'S' */

		if (!c)
			return (long)(*cur)++;
		if (c > 0)
			return -1;
		(*cur)++;
	}
	return -1;
}

/* Keeps this look's results: unchanged entries move over, the rest are copied from the records. */
static void ow_keep(struct outwatch *w, struct state_cert *const *recs, size_t n, const enum output_status *outs,
		    const long *match, const unsigned char *fresh)
{
	struct ow_prev *np;
	unsigned char *taken;
	size_t same = 0;

	/* A quiet look with the same records: the table stands as it is. */
	while (same < n && n == w->n_prev && !fresh[same] && match[same] == (long)same)
		same++;
	if (same == n && n == w->n_prev)
		return;
	np = xcalloc(n + 1, sizeof(*np));
	taken = xcalloc(w->n_prev + 1, 1);
	for (size_t i = 0; i < n; i++) {
		if (!fresh[i]) {
			np[i] = w->prev[match[i]];
			taken[match[i]] = 1;
		} else {
			ow_prev_fill(&np[i], recs[i], outs[i], fresh[i] == 2);
		}
	}
	for (size_t i = 0; i < w->n_prev; i++)
		if (!taken[i])
			ow_prev_free(&w->prev[i]);
	free(taken);
	free(w->prev);
	w->prev = np;
	w->n_prev = n;
}

/*
 * The records lie scattered over the heap: asking for the ones a few steps
 * ahead (the struct, then the strings it points to) lets the waits on
 * memory of a 10,000-record walk overlap.
 */

static void ow_prefetch(struct state_cert *const *recs, size_t n, size_t i)
{
	if (i + OW_AHEAD < n) {
		__builtin_prefetch(recs[i + OW_AHEAD]);
		__builtin_prefetch((const char *)recs[i + OW_AHEAD] + 64);
		__builtin_prefetch((const char *)recs[i + OW_AHEAD] + 128);
	}
	if (i + OW_AHEAD / 2 < n) {
		const struct state_cert *r = recs[i + OW_AHEAD / 2];

		__builtin_prefetch(r->name);
		__builtin_prefetch(r->out_generation);
		__builtin_prefetch(r->output_dir);
		__builtin_prefetch(r->out_hash);
		__builtin_prefetch(r->ids);
	}
}

/* Checks recs[idx[0..k)] (deep or not) into outs. */
static void ow_check(struct outwatch *w, struct state_cert *const *recs, const size_t *idx, size_t k,
		     enum output_status *outs, int deep, outwatch_check_fn check, void *arg)
{
	struct state_cert **sub;
	enum output_status *subouts;

	if (!k)
		return;
	sub = xmalloc(k * sizeof(*sub));
	subouts = xcalloc(k, sizeof(*subouts));
	for (size_t t = 0; t < k; t++)
		sub[t] = recs[idx[t]];
	check(arg, w->root, sub, k, subouts, deep);
	for (size_t t = 0; t < k; t++)
		outs[idx[t]] = subouts[t];
	free(sub);
	free(subouts);
}

size_t outwatch_observe(struct outwatch *w, struct state_cert *const *recs, size_t n, enum output_status *outs,
			int64_t now, outwatch_check_fn check, void *arg)
{
	size_t *idx = xmalloc((n + 1) * sizeof(*idx)), k = 0, kd = n, cur = 0;
	long *match = xmalloc((n + 1) * sizeof(*match));
	unsigned char *fresh = xcalloc(n + 1, 1); /* 1: checked now, 2: checked now and watched */
	int all;

	ow_drain(w);
	all = w->fd < 0 || !w->looked || w->all_once || now - w->last_full >= OUTWATCH_FULL_EVERY || now < w->last_full;
	/* idx[0..k): checked by signature; idx[kd..n): had events, checked by content */
	for (size_t i = 0; i < n; i++) {
		const struct ow_prev *p;
		int same, touched;

		ow_prefetch(recs, n, i);
		match[i] = ow_match(w, recs[i]->name, &cur);
		p = match[i] >= 0 ? &w->prev[match[i]] : NULL;
		same = p && ow_same(p, recs[i]);
		touched = same && recs[i]->out_generation && ow_touched(w, recs[i]);
		if (same && (!recs[i]->out_generation || (!all && p->covered && !touched))) {
			outs[i] = p->status;
			continue;
		}
		fresh[i] = 1;
		if (!recs[i]->out_generation)
			outs[i] = OUTPUT_OK; /* nothing installed yet: nothing to look at */
		else if (touched)
			idx[--kd] = i;
		else
			idx[k++] = i;
	}
	ow_map_clear(&w->touched, 0);
	w->all_once = 0;
	/* Watched before checked: a change after the check is an event at the next look. */
	for (size_t t = 0; t < n && w->fd >= 0; t++)
		if ((t < k || t >= kd) && ow_cover(w, recs[idx[t]]))
			fresh[idx[t]] = 2;
	ow_check(w, recs, idx, k, outs, 0, check, arg);
	ow_check(w, recs, idx + kd, n - kd, outs, 1, check, arg);
	ow_keep(w, recs, n, outs, match, fresh);
	if (all)
		w->last_full = now;
	w->looked = w->fd >= 0;
	free(idx);
	free(match);
	free(fresh);
	return k + (n - kd);
}
