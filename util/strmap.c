/* The string-keyed table (strmap.h). */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char strmap_tomb[1];

static uint32_t strmap_hash(const char *key, size_t len)
{
	return (uint32_t)util_hash_mix(util_hash_mem(key, len));
}

int strmap_live(const struct strmap_slot *s)
{
	return s->key && s->key != strmap_tomb;
}

void strmap_init(struct strmap *m, size_t n, int owns_keys)
{
	m->cap = 16;
	while (m->cap < 2 * n + 2)
		m->cap *= 2;
	m->v = xcalloc(m->cap, sizeof(*m->v));
	m->used = m->n = 0;
	m->owns_keys = owns_keys;
}

void strmap_free(struct strmap *m)
{
	for (size_t i = 0; m->owns_keys && i < m->cap; i++)
		if (strmap_live(&m->v[i]))
			free((char *)m->v[i].key);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* The slot of (key, h), or where it would go: the first tombstone passed, else the empty slot that ends the chain. */
static struct strmap_slot *strmap_find(const struct strmap *m, const char *key, size_t len, uint32_t h)
{
	size_t mask = m->cap - 1, i = h & mask;
	struct strmap_slot *tomb = NULL;

	for (;; i = (i + 1) & mask) {
		struct strmap_slot *s = &m->v[i];

		if (!s->key)
			return tomb ? tomb : s;
		if (s->key == strmap_tomb) {
			if (!tomb)
				tomb = s;
		} else if (s->h == h && !strncmp(s->key, key, len) && s->key[len] == '\0') {
			return s;
		}
	}
}

struct strmap_slot *strmap_get(const struct strmap *m, const char *key, size_t len)
{
	struct strmap_slot *s;

	if (!m->n)
		return NULL;
	s = strmap_find(m, key, len, strmap_hash(key, len));
	return strmap_live(s) ? s : NULL;
}

/* Room for one more key: rebuilt for the live keys (tombstones dropped) when keys and tombstones pass half the slots.
 */
static void strmap_reserve(struct strmap *m)
{
	struct strmap old = *m;

	if (m->cap && (m->used + 1) * 2 <= m->cap)
		return;
	strmap_init(m, old.n + 1, old.owns_keys);
	for (size_t i = 0; i < old.cap; i++)
		if (strmap_live(&old.v[i])) {
			*strmap_find(m, old.v[i].key, strlen(old.v[i].key), old.v[i].h) = old.v[i];
			m->used++;
			m->n++;
		}
	free(old.v);
}

struct strmap_slot *strmap_put(struct strmap *m, const char *key, size_t len)
{
	uint32_t h = strmap_hash(key, len);
	struct strmap_slot *s;

	strmap_reserve(m);
	s = strmap_find(m, key, len, h);
	if (strmap_live(s))
		return s;
	if (!s->key)
		m->used++;
	m->n++;
	memset(s, 0, sizeof(*s));
	s->key = m->owns_keys ? xstrndup(key, len) : key;
	s->h = h;
	return s;
}

void strmap_del(struct strmap *m, struct strmap_slot *s)
{
	if (m->owns_keys)
		free((char *)s->key);
	memset(s, 0, sizeof(*s));
	s->key = strmap_tomb;
	m->n--;
}
