/* The in-memory state: records in a hash map by name, accounts, bounded history and webhook ids. */
#include "state.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/redact.h"
#include "../util/util.h"
#include "state_int.h"

/* ---------- a small open-addressing index (linear probing, backward-shift deletion) ---------- */

struct state_slot {
	uint64_t hash;
	const char *key; /* NULL = empty; points into the value */
	void *val;
};

struct state_index {
	struct state_slot *v;
	size_t cap; /* 0 or a power of two; kept at most half full */
	size_t n;
	struct state_bigmem mem; /* v's block: huge pages for a big state */
};

/* ---------- large blocks ---------- */

#define STATE_HUGE (2u << 20)

void state_bigmem_alloc(struct state_bigmem *m, size_t len)
{
	size_t rounded = (len + STATE_HUGE - 1) & ~(size_t)(STATE_HUGE - 1);

	memset(m, 0, sizeof(*m));
	if (len >= STATE_BIGMEM_MIN) {
		m->map_len = rounded + STATE_HUGE; /* room to align the start on a huge page */
		m->map = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m->map != MAP_FAILED) {
			m->p = (void *)(((uintptr_t)m->map + STATE_HUGE - 1) & ~(uintptr_t)(STATE_HUGE - 1));
			(void)madvise(m->p, rounded, MADV_HUGEPAGE); /* a hint: without it, plain pages */
			return;
		}
		m->map = NULL;
		m->map_len = 0;
	}
	m->p = xcalloc(1, len ? len : 1);
}

void state_bigmem_free(struct state_bigmem *m)
{
	if (m->map)
		munmap(m->map, m->map_len);
	else
		free(m->p);
	memset(m, 0, sizeof(*m));
}

static size_t state_index_find(const struct state_index *ix, const char *key, uint64_t h)
{
	size_t mask = ix->cap - 1;

	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		const struct state_slot *s = &ix->v[i];

		if (!s->key || (s->hash == h && !strcmp(s->key, key)))
			return i;
	}
}

static void *state_index_get(const struct state_index *ix, const char *key, uint64_t h)
{
	size_t i;

	if (!ix->n)
		return NULL;
	i = state_index_find(ix, key, h);
	return ix->v[i].key ? ix->v[i].val : NULL;
}

static void state_index_rehash(struct state_index *ix, size_t cap)
{
	struct state_slot *old = ix->v;
	struct state_bigmem old_mem = ix->mem;
	size_t old_cap = ix->cap;

	state_bigmem_alloc(&ix->mem, cap * sizeof(*ix->v));
	ix->v = ix->mem.p;
	ix->cap = cap;
	for (size_t i = 0; i < old_cap; i++) {
		if (old[i].key)
			ix->v[state_index_find(ix, old[i].key, old[i].hash)] = old[i];
	}
	if (old)
		state_bigmem_free(&old_mem);
}

static void state_index_free(struct state_index *ix)
{
	if (ix->v)
		state_bigmem_free(&ix->mem);
	ix->v = NULL;
}

static void state_index_reserve(struct state_index *ix, size_t n)
{
	size_t cap = ix->cap ? ix->cap : 16;

	while (cap < 2 * n)
		cap *= 2;
	if (cap != ix->cap)
		state_index_rehash(ix, cap);
}

/* Inserts or replaces; returns the value it replaced (or NULL). */
static void *state_index_put(struct state_index *ix, const char *key, uint64_t h, void *val)
{
	size_t i;
	void *old = NULL;

	state_index_reserve(ix, ix->n + 1);
	i = state_index_find(ix, key, h);
	if (ix->v[i].key)
		old = ix->v[i].val;
	else
		ix->n++;
	ix->v[i].hash = h;
	ix->v[i].key = key;
	ix->v[i].val = val;
	return old;
}

/* Removes key; returns its value (or NULL when absent). */
static void *state_index_del(struct state_index *ix, const char *key, uint64_t h)
{
	size_t mask, i, j;
	void *val;

	if (!ix->n)
		return NULL;
	mask = ix->cap - 1;
	i = state_index_find(ix, key, h);
	if (!ix->v[i].key)
		return NULL;
	val = ix->v[i].val;
	for (j = i;;) {
		size_t k;

		j = (j + 1) & mask;
		if (!ix->v[j].key)
			break;
		k = (size_t)ix->v[j].hash & mask;
		/* Leave slot j alone when its home k lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		ix->v[i] = ix->v[j];
		i = j;
	}
	memset(&ix->v[i], 0, sizeof(ix->v[i]));
	ix->n--;
	return val;
}

/*
 * The state's private indexes. The webhook ids live in a window of `base`
 * (2 × the bound) that slides forward, so dropping the oldest is O(1)
 * amortised and st->webhook_ids stays a plain oldest-first array.
 */
struct state_map {
	struct state_index certs;
	struct state_index hooks;
	char **hook_base;
	size_t hook_start;
	struct state_arena *arena; /* a snapshot load's shared memory, or NULL */
};

#define STATE_HOOK_SPAN (2 * STATE_WEBHOOK_IDS_MAX)

/* ---------- snapshot memory: the live arenas ---------- */

/*
 * The setters get a field, not its record or state, so they ask here whether
 * the old string is an arena's. Records know their arena (c->arena), so the
 * bulk paths (state_free, state_cert_free) never take the lock.
 */
static pthread_mutex_t state_arenas_mu = PTHREAD_MUTEX_INITIALIZER;
static struct state_arena *state_arenas;
static atomic_size_t state_n_arenas;

/* 1 when p is one of a's strings or records. */
static int state_arena_has(const struct state_arena *a, const void *p)
{
	uintptr_t x = (uintptr_t)p, s = (uintptr_t)a->strs, c = (uintptr_t)a->certs, e = (uintptr_t)a->events;

	return (x >= s && x < s + a->strs_len) || (x >= c && x < c + a->n_certs * sizeof(*a->certs)) ||
	       (x >= e && x < e + a->n_events * sizeof(*a->events));
}

void state_set_arena(struct state *st, struct state_arena *a)
{
	assert(!st->certs->arena);
	st->certs->arena = a;
	pthread_mutex_lock(&state_arenas_mu);
	a->next = state_arenas;
	state_arenas = a;
	atomic_fetch_add(&state_n_arenas, 1);
	pthread_mutex_unlock(&state_arenas_mu);
}

static void state_arena_free(struct state_arena *a)
{
	struct state_arena **pp;

	if (!a)
		return;
	pthread_mutex_lock(&state_arenas_mu);
	for (pp = &state_arenas; *pp && *pp != a; pp = &(*pp)->next)
		;
	if (*pp) {
		*pp = a->next;
		atomic_fetch_sub(&state_n_arenas, 1);
	}
	pthread_mutex_unlock(&state_arenas_mu);
	if (a->map)
		munmap(a->map, a->map_len);
	free(a->block);
	free(a);
}

void state_mem_free(void *p)
{
	int owned = 0;

	if (!p)
		return;
	if (atomic_load(&state_n_arenas)) {
		pthread_mutex_lock(&state_arenas_mu);
		for (const struct state_arena *a = state_arenas; a && !owned; a = a->next)
			owned = state_arena_has(a, p);
		pthread_mutex_unlock(&state_arenas_mu);
	}
	if (!owned)
		free(p);
}

/* free(p) unless p is in the record's arena (no lock: the record says which). */
static void state_part_free(const struct state_arena *a, void *p)
{
	if (!a || !state_arena_has(a, p))
		free(p);
}

/* ---------- phases ---------- */

static const char *const state_phase_names[PHASE__MAX] = {
	[PHASE_PENDING] = "pending",
	[PHASE_READY] = "ready",
	[PHASE_FAILED] = "failed",
};

const char *state_phase_name(enum cert_phase p)
{
	return (unsigned)p < PHASE__MAX ? state_phase_names[p] : "unknown";
}

int state_phase_parse(const char *s, enum cert_phase *out)
{
	for (int i = 0; i < PHASE__MAX; i++) {
		if (s && !strcmp(s, state_phase_names[i])) {
			*out = (enum cert_phase)i;
			return 0;
		}
	}
	return cs_error(CS_EINVALID, "unknown phase \"%s\" (expected pending, ready or failed)", s ? s : "");
}

/* ---------- state ---------- */

struct state *state_alloc(void)
{
	struct state *st = xcalloc(1, sizeof(*st));

	st->version = STATE_VERSION;
	st->certs = xcalloc(1, sizeof(*st->certs));
	st->certs->hook_base = xcalloc(STATE_HOOK_SPAN, sizeof(char *));
	st->webhook_ids = st->certs->hook_base;
	return st;
}

struct state *state_new(void)
{
	struct state *st = state_alloc();

	/* Like xmalloc: the lineage is not optional, and an RNG failure is not recoverable. */
	if (crypto_uuid(st->lineage)) {
		fprintf(stderr, "certsync: cannot create a state lineage: %s\n", cs_errmsg());
		abort();
	}
	return st;
}

static void state_kv_free(const struct state_arena *a, struct state_kv *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		state_part_free(a, v[i].key);
		state_part_free(a, v[i].value);
	}
	state_part_free(a, v);
}

void state_free(struct state *st)
{
	struct state_map *m;

	if (!st)
		return;
	m = st->certs;
	for (size_t i = 0; i < m->certs.cap; i++) {
		if (m->certs.v[i].key)
			state_cert_free(m->certs.v[i].val);
	}
	state_index_free(&m->certs);
	for (size_t i = 0; i < st->n_webhook_ids; i++)
		free(st->webhook_ids[i]);
	state_index_free(&m->hooks);
	free(m->hook_base);
	state_arena_free(m->arena); /* last: the records above may have lived in it */
	free(m);
	for (size_t i = 0; i < st->n_accounts; i++) {
		free(st->accounts[i].issuer);
		state_kv_free(NULL, st->accounts[i].kv, st->accounts[i].n_kv);
	}
	free(st->accounts);
	free(st->source_url);
	free(st->source_ref);
	free(st->source_commit);
	free(st);
}

void state_str_set(char **field, const char *value)
{
	char *copy = xstrdup(value); /* before the free: value may be *field itself */

	state_mem_free(*field);
	*field = copy;
}

void state_set_source(struct state *st, const char *url, const char *ref, const char *commit)
{
	state_str_set(&st->source_url, url);
	state_str_set(&st->source_ref, ref);
	state_str_set(&st->source_commit, commit);
}

/* CS_EINVALID unless s is non-empty, at most max bytes, valid UTF-8 without control characters. */
static int state_source_text(const char *field, const char *s, size_t max)
{
	size_t len = s ? strlen(s) : 0;

	if (!len)
		return cs_error(CS_EINVALID, "%s: missing", field);
	if (len > max)
		return cs_error(CS_EINVALID, "%s: %zu bytes; the limit is %zu", field, len, max);
	for (size_t i = 0, n; i < len; i += n) {
		const unsigned char *p = (const unsigned char *)s + i;

		if (*p < 0x20 || *p == 0x7f || !(n = state_utf8_len(p, len - i)))
			return cs_error(CS_EINVALID, "%s: expected printable UTF-8 text", field);
	}
	return 0;
}

int state_source_check(const char *url, const char *ref, const char *commit)
{
	size_t len = commit ? strlen(commit) : 0;
	int rc;

	if ((rc = state_source_text("url", url, STATE_SOURCE_URL_MAX)) ||
	    (rc = state_source_text("ref", ref, STATE_SOURCE_REF_MAX)))
		return rc;
	if (len != 40 && len != 64)
		return cs_error(CS_EINVALID, "commit: expected 40 or 64 lowercase hex digits");
	for (size_t i = 0; i < len; i++)
		if (!((commit[i] >= '0' && commit[i] <= '9') || (commit[i] >= 'a' && commit[i] <= 'f')))
			return cs_error(CS_EINVALID, "commit: expected 40 or 64 lowercase hex digits");
	return 0;
}

/* ---------- records ---------- */

struct state_cert *state_cert_new(const char *name)
{
	struct state_cert *c = xcalloc(1, sizeof(*c));

	assert(name && *name);
	c->name = xstrdup(name);
	c->phase = PHASE_PENDING;
	return c;
}

struct state_cert *state_cert_get(const struct state *st, const char *name)
{
	return state_index_get(&st->certs->certs, name, util_hash_str(name));
}

void state_cert_adopt(struct state *st, struct state_cert *rec)
{
	struct state_cert *old = state_index_put(&st->certs->certs, rec->name, util_hash_str(rec->name), rec);

	if (old && old != rec)
		state_cert_free(old);
}

int state_cert_adopt_new(struct state *st, struct state_cert *rec)
{
	struct state_index *ix = &st->certs->certs;
	uint64_t h = util_hash_str(rec->name);
	size_t i;

	state_index_reserve(ix, ix->n + 1);
	i = state_index_find(ix, rec->name, h);
	if (ix->v[i].key)
		return -1;
	ix->v[i].hash = h;
	ix->v[i].key = rec->name;
	ix->v[i].val = rec;
	ix->n++;
	return 0;
}

void state_cert_reserve(struct state *st, size_t n)
{
	state_index_reserve(&st->certs->certs, n);
}

struct state_cert *state_cert_put(struct state *st, const char *name)
{
	struct state_cert *c = state_cert_get(st, name);

	if (!c) {
		c = state_cert_new(name);
		state_cert_adopt(st, c);
	}
	return c;
}

int state_cert_remove(struct state *st, const char *name)
{
	struct state_cert *c = state_index_del(&st->certs->certs, name, util_hash_str(name));

	if (!c)
		return cs_error(CS_ENOTFOUND, "no certificate \"%s\" in the state", name);
	state_cert_free(c);
	return 0;
}

int state_cert_rename(struct state *st, const char *from, const char *to)
{
	struct state_cert *c;

	if (state_cert_get(st, to))
		return cs_error(CS_ECONFLICT, "\"%s\" is already in the state", to);
	if (!(c = state_index_del(&st->certs->certs, from, util_hash_str(from))))
		return cs_error(CS_ENOTFOUND, "no certificate \"%s\" in the state", from);
	state_str_set(&c->name, to);
	state_cert_adopt(st, c);
	return 0;
}

size_t state_cert_count(const struct state *st)
{
	return st->certs->certs.n;
}

void state_cert_foreach(const struct state *st, void (*fn)(struct state_cert *c, void *arg), void *arg)
{
	const struct state_index *ix = &st->certs->certs;

	for (size_t i = 0; i < ix->cap; i++) {
		if (ix->v[i].key)
			fn(ix->v[i].val, arg);
	}
}

static int state_cert_cmp(const void *a, const void *b)
{
	const struct state_cert *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

struct state_cert **state_cert_list(const struct state *st, size_t *n)
{
	const struct state_index *ix = &st->certs->certs;
	struct state_cert **v = xmalloc((ix->n + 1) * sizeof(*v));
	size_t k = 0;

	for (size_t i = 0; i < ix->cap; i++) {
		if (ix->v[i].key)
			v[k++] = ix->v[i].val;
	}
	qsort(v, k, sizeof(*v), state_cert_cmp);
	*n = k;
	return v;
}

/* ---------- key/value data ---------- */

/* Index of key in v, or of where it would go (*found says which). */
static size_t state_kv_search(const struct state_kv *v, size_t n, const char *key, int *found)
{
	return util_bsearch_name(v, n, sizeof(*v), key, found);
}

const char *state_kv_get(const struct state_kv *v, size_t n, const char *key)
{
	int found;
	size_t i = state_kv_search(v, n, key, &found);

	return found ? v[i].value : NULL;
}

void state_kv_set(struct state_kv **v, size_t *n, const char *key, const char *value)
{
	int found;
	size_t i = state_kv_search(*v, *n, key, &found);

	if (found && value) {
		state_str_set(&(*v)[i].value, value);
	} else if (found) {
		state_mem_free((*v)[i].key);
		state_mem_free((*v)[i].value);
		memmove(&(*v)[i], &(*v)[i + 1], (*n - i - 1) * sizeof(**v));
		(*n)--;
	} else if (value) {
		*v = xrealloc(*v, (*n + 1) * sizeof(**v));
		memmove(&(*v)[i + 1], &(*v)[i], (*n - i) * sizeof(**v));
		(*v)[i].key = xstrdup(key);
		(*v)[i].value = xstrdup(value);
		(*n)++;
	}
}

const char *state_cert_id(const struct state_cert *c, const char *key)
{
	return state_kv_get(c->ids, c->n_ids, key);
}

int64_t state_cert_id_time(const struct state_cert *c, const char *key)
{
	const char *v = state_cert_id(c, key);
	char *end;
	long long t;

	if (!v)
		return 0;
	t = strtoll(v, &end, 10);
	return *end || t <= 0 ? 0 : (int64_t)t;
}

void state_cert_set_id(struct state_cert *c, const char *key, const char *value)
{
	state_kv_set(&c->ids, &c->n_ids, key, value);
}

/* ---------- history, errors, tokens ---------- */

void state_cert_history_room(struct state_cert *c)
{
	struct state_event *v;

	if (c->history && !(c->arena && state_arena_has(c->arena, c->history)))
		return;
	v = xmalloc(STATE_HISTORY_MAX * sizeof(*v));
	if (c->n_history)
		memcpy(v, c->history, c->n_history * sizeof(*v));
	c->history = v;
}

void state_cert_event(struct state_cert *c, int64_t when, const char *fmt, ...)
{
	va_list ap;
	char *what, *raw;

	va_start(ap, fmt);
	raw = xvasprintf(fmt, ap);
	va_end(ap);
	what = redact_dup(raw); /* events quote provider messages: never a credential in the state */
	free(raw);
	state_cert_history_room(c);
	if (c->n_history == STATE_HISTORY_MAX) {
		state_mem_free(c->history[0].what);
		memmove(&c->history[0], &c->history[1], (STATE_HISTORY_MAX - 1) * sizeof(c->history[0]));
		c->n_history--;
	}
	c->history[c->n_history].time = when;
	c->history[c->n_history].what = what;
	c->n_history++;
}

void state_cert_set_error(struct state_cert *c, int64_t when, const char *msg)
{
	/* A provider may quote a credential back in its error body: it is never stored. */
	state_mem_free(c->last_error);
	c->last_error = redact_dup(msg);
	c->last_error_time = msg ? when : 0;
}

static void state_token_copy(struct state_token *dst, const struct state_token *src)
{
	dst->method = xstrdup(src->method);
	dst->name = xstrdup(src->name);
	dst->location = xstrdup(src->location);
	dst->ref = xstrdup(src->ref);
	dst->issuer = xstrdup(src->issuer);
	dst->placed_at = src->placed_at;
}

static void state_token_clear(struct state_token *t)
{
	free(t->method);
	free(t->name);
	free(t->location);
	free(t->ref);
	free(t->issuer);
}

void state_cert_add_token(struct state_cert *c, const struct state_token *t)
{
	/* A manifest has at most 100 names; twice that many tokens is a bug, not input. */
	assert(c->n_tokens < STATE_MAX_TOKENS);
	c->tokens = xrealloc(c->tokens, (c->n_tokens + 1) * sizeof(*c->tokens));
	state_token_copy(&c->tokens[c->n_tokens], t);
	c->n_tokens++;
}

void state_cert_remove_token(struct state_cert *c, size_t i)
{
	assert(i < c->n_tokens);
	state_token_clear(&c->tokens[i]);
	memmove(&c->tokens[i], &c->tokens[i + 1], (c->n_tokens - i - 1) * sizeof(*c->tokens));
	c->n_tokens--;
}

/* ---------- copies ---------- */

/* Every owned string of a record, for copying and freeing field by field. */
/* clang-format off */
#define STATE_CERT_STRINGS(X) \
	X(name) X(issuer) X(provider) X(spec_hash) X(target_hash) X(output_dir) X(change) X(step) X(serial) \
	X(fingerprint) X(out_hash) X(out_generation) X(last_error) X(failure_class)
/* clang-format on */

struct state_cert *state_cert_clone(const struct state_cert *c)
{
	struct state_cert *d = xmalloc(sizeof(*d));

	*d = *c;
	d->arena = NULL;
#define STATE_DUP(f) d->f = xstrdup(c->f);
	STATE_CERT_STRINGS(STATE_DUP)
#undef STATE_DUP
	d->ids = c->n_ids ? xmalloc(c->n_ids * sizeof(*d->ids)) : NULL;
	for (size_t i = 0; i < c->n_ids; i++) {
		d->ids[i].key = xstrdup(c->ids[i].key);
		d->ids[i].value = xstrdup(c->ids[i].value);
	}
	d->tokens = c->n_tokens ? xmalloc(c->n_tokens * sizeof(*d->tokens)) : NULL;
	for (size_t i = 0; i < c->n_tokens; i++)
		state_token_copy(&d->tokens[i], &c->tokens[i]);
	d->history = NULL;
	if (c->n_history) {
		d->history = xmalloc(STATE_HISTORY_MAX * sizeof(*d->history));
		for (size_t i = 0; i < c->n_history; i++) {
			d->history[i].time = c->history[i].time;
			d->history[i].what = xstrdup(c->history[i].what);
		}
	}
	return d;
}

void state_cert_free(struct state_cert *c)
{
	if (!c)
		return;
#define STATE_FREE(f) state_part_free(c->arena, c->f);
	STATE_CERT_STRINGS(STATE_FREE)
#undef STATE_FREE
	state_kv_free(c->arena, c->ids, c->n_ids);
	for (size_t i = 0; i < c->n_tokens; i++)
		state_token_clear(&c->tokens[i]); /* tokens are always malloc'd */
	free(c->tokens);
	for (size_t i = 0; i < c->n_history; i++)
		state_part_free(c->arena, c->history[i].what);
	state_part_free(c->arena, c->history);
	state_part_free(c->arena, c);
}

/* ---------- accounts ---------- */

static struct state_account *state_account_find(const struct state *st, const char *issuer, size_t *pos)
{
	int found;
	size_t i = util_bsearch_name(st->accounts, st->n_accounts, sizeof(*st->accounts), issuer, &found);

	if (found)
		return &st->accounts[i];
	if (pos)
		*pos = i;
	return NULL;
}

const char *state_account_get(const struct state *st, const char *issuer, const char *key)
{
	const struct state_account *a = state_account_find(st, issuer, NULL);

	return a ? state_kv_get(a->kv, a->n_kv, key) : NULL;
}

void state_account_set(struct state *st, const char *issuer, const char *key, const char *value)
{
	size_t pos = 0;
	struct state_account *a = state_account_find(st, issuer, &pos);

	if (!a) {
		if (!value)
			return;
		st->accounts = xrealloc(st->accounts, (st->n_accounts + 1) * sizeof(*st->accounts));
		memmove(&st->accounts[pos + 1], &st->accounts[pos], (st->n_accounts - pos) * sizeof(*st->accounts));
		a = &st->accounts[pos];
		memset(a, 0, sizeof(*a));
		a->issuer = xstrdup(issuer);
		st->n_accounts++;
	}
	state_kv_set(&a->kv, &a->n_kv, key, value);
	if (!a->n_kv) {
		pos = (size_t)(a - st->accounts);
		free(a->issuer);
		free(a->kv);
		memmove(a, a + 1, (st->n_accounts - pos - 1) * sizeof(*a));
		st->n_accounts--;
	}
}

/* ---------- webhook ids ---------- */

int state_webhook_seen(struct state *st, const char *id)
{
	struct state_map *m = st->certs;
	uint64_t h = util_hash_str(id);
	char *copy;

	if (state_index_get(&m->hooks, id, h))
		return 1;
	if (st->n_webhook_ids == STATE_WEBHOOK_IDS_MAX) {
		char *oldest = m->hook_base[m->hook_start];

		state_index_del(&m->hooks, oldest, util_hash_str(oldest));
		free(oldest);
		m->hook_base[m->hook_start++] = NULL;
		st->n_webhook_ids--;
	}
	if (m->hook_start + st->n_webhook_ids == STATE_HOOK_SPAN) {
		/* Slide the window back to the start: once per STATE_WEBHOOK_IDS_MAX additions. */
		memmove(m->hook_base, m->hook_base + m->hook_start, st->n_webhook_ids * sizeof(char *));
		m->hook_start = 0;
	}
	copy = xstrdup(id);
	m->hook_base[m->hook_start + st->n_webhook_ids] = copy;
	st->n_webhook_ids++;
	st->webhook_ids = m->hook_base + m->hook_start;
	state_index_put(&m->hooks, copy, h, copy);
	return 0;
}
