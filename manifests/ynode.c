/* YAML node trees: arena-backed building, lookups, and typed reads with precise diagnostics. */
#include <assert.h>
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/err.h"
#include "../util/util.h"
#include "internal.h"

#define ARENA_CHUNK (64 * 1024)

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	alignas(max_align_t) unsigned char data[];
};

/* The yfile handed out is the first member, so a struct yfile * is a struct yfile_impl *. */
struct yfile_impl {
	struct yfile f;
	struct arena_chunk *chunks;
	size_t docs_cap;
};

static void *arena_alloc(struct yfile *f, size_t n)
{
	struct yfile_impl *fi = (struct yfile_impl *)f;
	struct arena_chunk *c = fi->chunks;
	size_t need = (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);

	if (!c || c->cap - c->used < need) {
		size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;

		c = xmalloc(sizeof(*c) + cap);
		c->cap = cap;
		c->used = 0;
		if (need > ARENA_CHUNK && fi->chunks) {
			/* a big one-off: keep filling the current chunk afterwards */
			c->next = fi->chunks->next;
			fi->chunks->next = c;
		} else {
			c->next = fi->chunks;
			fi->chunks = c;
		}
	}
	c->used += need;
	return c->data + c->used - need;
}

struct yfile *ytree_file_new(const char *path)
{
	struct yfile_impl *fi = xcalloc(1, sizeof(*fi));

	fi->f.path = xstrdup(path);
	return &fi->f;
}

void manifest_yaml_free(struct yfile *f)
{
	struct yfile_impl *fi = (struct yfile_impl *)f;
	struct arena_chunk *c, *next;

	if (!f)
		return;
	for (c = fi->chunks; c; c = next) {
		next = c->next;
		free(c);
	}
	free(f->docs);
	free(f->path);
	free(fi);
}

struct ydoc *ytree_doc_add(struct yfile *f, int line, int col)
{
	struct yfile_impl *fi = (struct yfile_impl *)f;
	struct ydoc *doc;

	util_grow(&f->docs, &fi->docs_cap, f->n_docs + 1, sizeof(*f->docs));
	doc = &f->docs[f->n_docs++];
	doc->root = NULL;
	doc->line = line;
	doc->col = col;
	return doc;
}

void ytree_truncate(struct yfile *f, size_t keep)
{
	if (keep < f->n_docs)
		f->n_docs = keep;
}

struct ynode *ytree_scalar(struct yfile *f, int line, int col, const char *s, size_t len, int quoted)
{
	struct ynode *n = arena_alloc(f, sizeof(*n));
	char *str = arena_alloc(f, len + 1);

	memcpy(str, s, len);
	str[len] = '\0';
	memset(n, 0, sizeof(*n));
	n->type = YNODE_SCALAR;
	n->line = line;
	n->col = col;
	n->str = str;
	n->len = len;
	n->quoted = quoted;
	return n;
}

struct ynode *ytree_collection(struct yfile *f, enum ynode_type t, int line, int col)
{
	struct ynode *n = arena_alloc(f, sizeof(*n));

	memset(n, 0, sizeof(*n));
	n->type = t;
	n->line = line;
	n->col = col;
	return n;
}

void ytree_set_children(struct yfile *f, struct ynode *c, struct ynode *const *v, size_t count)
{
	struct ynode **copy = count ? arena_alloc(f, count * sizeof(*copy)) : NULL;

	if (count)
		memcpy(copy, v, count * sizeof(*copy));
	if (c->type == YNODE_MAP) {
		assert(count % 2 == 0);
		c->kv = copy;
		c->n = count / 2;
	} else {
		c->items = copy;
		c->n = count;
	}
}

/* ---------- reading ---------- */

const struct ynode *ynode_get(const struct ynode *map, const char *key)
{
	if (!map || map->type != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *k = map->kv[2 * i];

		if (k->type == YNODE_SCALAR && !strcmp(k->str, key))
			return map->kv[2 * i + 1];
	}
	return NULL;
}

int ynode_is_null(const struct ynode *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

	if (!n || n->type != YNODE_SCALAR || n->quoted)
		return 0;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(n->str, nulls[i]))
			return 1;
	return 0;
}

const char *ynode_kind(const struct ynode *n)
{
	if (n->type == YNODE_MAP)
		return "a map";
	if (n->type == YNODE_SEQ)
		return "a list";
	return ynode_is_null(n) ? "null" : "a string";
}

/* The closest allowed key when it is likely a typo: same letters in another case, or 2 edits away. */
static const char *keys_suggest(const char *key, const char *const *allowed)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (size_t i = 0; allowed[i]; i++) {
		size_t dist;

		if (!strcasecmp(key, allowed[i]))
			return allowed[i];
		if (strlen(key) > strlen(allowed[i]) + 2 || strlen(allowed[i]) > strlen(key) + 2)
			continue; /* the distance is at least the difference in length */
		dist = util_edit_distance(key, allowed[i]);
		if (dist < best_d) {
			best_d = dist;
			best = allowed[i];
		}
	}
	return best;
}

struct key_ref {
	const struct ynode *k;
	size_t i;
};

static int key_ref_cmp(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;
	int c = strcmp(x->k->str, y->k->str);

	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* The same for the maps of every manifest: a handful of keys, no allocation. */
static int dups_small(const struct ynode *map, const char *file, struct diags *d)
{
	int problems = 0;

	for (size_t i = 1; i < map->n; i++) {
		const struct ynode *k = map->kv[2 * i];

		if (k->type != YNODE_SCALAR)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct ynode *first = map->kv[2 * j];

			if (first->type == YNODE_SCALAR && !strcmp(first->str, k->str)) {
				diags_add(d, file, k->line, k->col, "duplicate key \"%s\" (first at line %d)", k->str,
					  first->line);
				problems++;
				break;
			}
		}
	}
	return problems;
}

/*
 * Duplicates by sorting (key, position): a hostile map with 100,000 keys
 * costs n log n, not n². Reported in file order, each at the repeat.
 */
int ynode_check_dups(const struct ynode *map, const char *file, struct diags *d)
{
	struct key_ref *v = NULL;
	const struct ynode **first = NULL;
	size_t m = 0;
	int problems = 0;

	if (!map || map->type != YNODE_MAP || map->n < 2)
		return 0;
	if (map->n <= 16)
		return dups_small(map, file, d);
	v = xmalloc(map->n * sizeof(*v));
	first = xcalloc(map->n, sizeof(*first));
	for (size_t i = 0; i < map->n; i++)
		if (map->kv[2 * i]->type == YNODE_SCALAR)
			v[m++] = (struct key_ref){map->kv[2 * i], i};
	qsort(v, m, sizeof(*v), key_ref_cmp);
	for (size_t j = 1; j < m; j++) {
		size_t k = j;

		while (k > 0 && !strcmp(v[k - 1].k->str, v[j].k->str))
			k--;
		if (k != j)
			first[v[j].i] = v[k].k;
	}
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *k = map->kv[2 * i];

		if (first[i]) {
			diags_add(d, file, k->line, k->col, "duplicate key \"%s\" (first at line %d)", k->str,
				  first[i]->line);
			problems++;
		}
	}
	free(first);
	free(v);
	return problems;
}

int ynode_check_keys(const struct ynode *map, const char *const *allowed, const char *file, const char *where,
		     struct diags *d)
{
	int problems = 0;

	if (!map || map->type != YNODE_MAP)
		return 0;
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *k = map->kv[2 * i];
		const char *hint;
		size_t j;

		if (k->type != YNODE_SCALAR) {
			diags_add(d, file, k->line, k->col, "%s: a key must be a string, got %s", where, ynode_kind(k));
			problems++;
			continue;
		}
		for (j = 0; allowed[j] && strcmp(allowed[j], k->str); j++)
			;
		if (allowed[j])
			continue;
		if ((hint = keys_suggest(k->str, allowed)))
			diags_add(d, file, k->line, k->col, "unknown field \"%s\" in %s (did you mean \"%s\"?)", k->str,
				  where, hint);
		else
			diags_add(d, file, k->line, k->col, "unknown field \"%s\" in %s", k->str, where);
		problems++;
	}
	return problems + ynode_check_dups(map, file, d);
}

/*
 * "what: expected X, got Y", where Y shows a scalar's text. `unquoted_ok`:
 * the text would have been right without its quotes, so say so.
 */
static int ynode_type_error(const struct ynode *n, const char *file, const char *what, const char *want,
			    int unquoted_ok, struct diags *d)
{
	if (n->type != YNODE_SCALAR || ynode_is_null(n))
		diags_add(d, file, n->line, n->col, "%s: expected %s, got %s", what, want, ynode_kind(n));
	else if (n->quoted && unquoted_ok)
		diags_add(d, file, n->line, n->col, "%s: expected %s, got the string \"%s\" (remove the quotes)", what,
			  want, n->str);
	else
		diags_add(d, file, n->line, n->col, "%s: expected %s, got \"%s\"", what, want, n->str);
	return CS_EINVALID;
}

int ynode_expect(const struct ynode *n, enum ynode_type t, const char *file, const char *what, struct diags *d)
{
	static const char *const want[YNODE__MAX] = {"a string", "a map", "a list"};

	if (!n)
		return CS_EINVALID;
	if (n->type == t)
		return 0;
	if (n->type == YNODE_SCALAR && !ynode_is_null(n))
		diags_add(d, file, n->line, n->col, "%s: expected %s, got \"%s\"", what, want[t], n->str);
	else
		diags_add(d, file, n->line, n->col, "%s: expected %s, got %s", what, want[t], ynode_kind(n));
	return CS_EINVALID;
}

int ynode_string(const struct ynode *n, const char *file, const char *what, struct diags *d, const char **out)
{
	if (n->type != YNODE_SCALAR || ynode_is_null(n)) {
		diags_add(d, file, n->line, n->col, "%s: expected a string, got %s", what, ynode_kind(n));
		return CS_EINVALID;
	}
	*out = n->str;
	return 0;
}

int ynode_bool(const struct ynode *n, const char *file, const char *what, struct diags *d, int *out)
{
	static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False", "FALSE"};

	int v = -1;

	for (size_t i = 0; n->type == YNODE_SCALAR && i < 3; i++) {
		if (!strcmp(n->str, t[i]))
			v = 1;
		else if (!strcmp(n->str, f[i]))
			v = 0;
	}
	if (v < 0 || n->quoted)
		return ynode_type_error(n, file, what, "true or false", v >= 0, d);
	*out = v;
	return 0;
}

/* YAML 1.2 core decimal integers only: [-+]?[0-9]+ (no 0x, no 0o, no 1_000). */
static int int_syntax_ok(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

int ynode_int(const struct ynode *n, const char *file, const char *what, int64_t min, int64_t max, struct diags *d,
	      int64_t *out)
{
	long long v;

	if (n->type != YNODE_SCALAR || n->quoted || !int_syntax_ok(n->str))
		return ynode_type_error(n, file, what, "an integer", n->type == YNODE_SCALAR && int_syntax_ok(n->str),
					d);
	errno = 0;
	v = strtoll(n->str, NULL, 10);
	if (errno || v < min || v > max) {
		diags_add(d, file, n->line, n->col, "%s: %s is out of range (%lld to %lld)", what, n->str,
			  (long long)min, (long long)max);
		return CS_EINVALID;
	}
	*out = v;
	return 0;
}

int ynode_duration(const struct ynode *n, const char *file, const char *what, struct diags *d, int64_t *out)
{
	int64_t v;

	if (n->type != YNODE_SCALAR || ynode_is_null(n)) {
		diags_add(d, file, n->line, n->col, "%s: expected a duration (\"720h\", \"30d\"), got %s", what,
			  ynode_kind(n));
		return CS_EINVALID;
	}
	if (util_parse_duration(n->str, &v)) {
		diags_add(d, file, n->line, n->col, "%s: %s", what, cs_errmsg());
		return CS_EINVALID;
	}
	*out = v;
	return 0;
}
