/* Typed reads of YAML nodes with precise diagnostics (shared by manifests and the config). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../util/err.h"
#include "../util/util.h"
#include "manifest.h"

static const char *const type_names[YNODE__MAX] = {"a scalar", "a map", "a list"};

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

/* The closest allowed key, if close enough to be a likely typo. */
static const char *suggest(const char *key, const char *const *allowed)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (size_t i = 0; allowed[i]; i++) {
		size_t dist = util_edit_distance(key, allowed[i]);

		if (!strcasecmp(key, allowed[i]))
			return allowed[i];
		if (dist < best_d) {
			best_d = dist;
			best = allowed[i];
		}
	}
	return best;
}

int ynode_check_keys(const struct ynode *map, const char *const *allowed, const char *file, const char *where,
		     struct diags *d)
{
	int problems = 0;

	if (!map || map->type != YNODE_MAP)
		return 0;
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *k = map->kv[2 * i];
		int known = 0;

		if (k->type != YNODE_SCALAR) {
			diags_add(d, file, k->line, k->col, "%s: keys must be plain strings", where);
			problems++;
			continue;
		}
		for (size_t j = 0; j < i; j++) {
			const struct ynode *prev = map->kv[2 * j];

			if (prev->type == YNODE_SCALAR && !strcmp(prev->str, k->str)) {
				diags_add(d, file, k->line, k->col, "duplicate key \"%s\" (first at line %d)", k->str,
					  prev->line);
				problems++;
				break;
			}
		}
		for (size_t j = 0; allowed[j] && !known; j++)
			known = !strcmp(allowed[j], k->str);
		if (!known) {
			const char *s = suggest(k->str, allowed);

			if (s)
				diags_add(d, file, k->line, k->col, "unknown field \"%s\" in %s (did you mean \"%s\"?)",
					  k->str, where, s);
			else
				diags_add(d, file, k->line, k->col, "unknown field \"%s\" in %s", k->str, where);
			problems++;
		}
	}
	return problems;
}

static void type_diag(const struct ynode *n, const char *file, const char *what, const char *want, struct diags *d)
{
	if (n->type == YNODE_SCALAR)
		diags_add(d, file, n->line, n->col, "%s: expected %s, got \"%s\"", what, want, n->str);
	else
		diags_add(d, file, n->line, n->col, "%s: expected %s, got %s", what, want, type_names[n->type]);
}

int ynode_expect(const struct ynode *n, enum ynode_type t, const char *file, const char *what, struct diags *d)
{
	if (n && n->type == t)
		return 0;
	if (n)
		type_diag(n, file, what, type_names[t], d);
	return CS_EINVALID;
}

int ynode_string(const struct ynode *n, const char *file, const char *what, struct diags *d, const char **out)
{
	if (n->type != YNODE_SCALAR) {
		type_diag(n, file, what, "a string", d);
		return CS_EINVALID;
	}
	if (!n->quoted && (!strcmp(n->str, "~") || !strcmp(n->str, "null") || !*n->str)) {
		diags_add(d, file, n->line, n->col, "%s: expected a string, got null", what);
		return CS_EINVALID;
	}
	*out = n->str;
	return 0;
}

int ynode_bool(const struct ynode *n, const char *file, const char *what, struct diags *d, int *out)
{
	if (n->type == YNODE_SCALAR && !n->quoted) {
		if (!strcmp(n->str, "true") || !strcmp(n->str, "True") || !strcmp(n->str, "TRUE")) {
			*out = 1;
			return 0;
		}
		if (!strcmp(n->str, "false") || !strcmp(n->str, "False") || !strcmp(n->str, "FALSE")) {
			*out = 0;
			return 0;
		}
	}
	type_diag(n, file, what, "true or false", d);
	return CS_EINVALID;
}

int ynode_int(const struct ynode *n, const char *file, const char *what, int64_t min, int64_t max, struct diags *d,
	      int64_t *out)
{
	char *end;
	long long v;

	if (n->type != YNODE_SCALAR || n->quoted || !*n->str) {
		type_diag(n, file, what, "an integer", d);
		return CS_EINVALID;
	}
	errno = 0;
	v = strtoll(n->str, &end, 10);
	if (*end || errno) {
		type_diag(n, file, what, "an integer", d);
		return CS_EINVALID;
	}
	if (v < min || v > max) {
		diags_add(d, file, n->line, n->col, "%s: %lld is out of range (%lld to %lld)", what, v, (long long)min,
			  (long long)max);
		return CS_EINVALID;
	}
	*out = v;
	return 0;
}

int ynode_duration(const struct ynode *n, const char *file, const char *what, struct diags *d, int64_t *out)
{
	if (n->type != YNODE_SCALAR) {
		type_diag(n, file, what, "a duration", d);
		return CS_EINVALID;
	}
	if (util_parse_duration(n->str, out)) {
		diags_add(d, file, n->line, n->col, "%s: %s", what, cs_errmsg());
		return CS_EINVALID;
	}
	return 0;
}
