/* The registry of configured secrets and the redaction of secret-shaped text (see redact.h). */
#include "redact.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "util.h"

static struct {
	pthread_mutex_t mu;
	char *v[REDACT_MAX_SECRETS];
	size_t n;
} secrets = {PTHREAD_MUTEX_INITIALIZER, {NULL}, 0};

/*
 * Credential-shaped text: a header whose value is always a credential
 * ("Authorization: Bearer x", "X-DC-DEVKEY=x": the value up to the end of the
 * line, a quote or a comma), or the Bearer scheme ("Bearer x": the next word
 * of REDACT_WORD_MIN_LEN or more).
 */
struct redact_shape {
	const char *word;
	int header; /* needs ':' or '=' after the word; else whitespace and a long enough word */
};

static const struct redact_shape redact_shapes_tab[] = {
	{"authorization", 1},
	{"x-dc-devkey", 1},
	{"bearer", 0},
};

void redact_add(const char *secret)
{
	if (!secret || strlen(secret) < REDACT_MIN_LEN)
		return;
	pthread_mutex_lock(&secrets.mu);
	for (size_t i = 0; i < secrets.n; i++)
		if (!strcmp(secrets.v[i], secret))
			goto out;
	if (secrets.n < REDACT_MAX_SECRETS)
		secrets.v[secrets.n++] = xstrdup(secret);
out:
	pthread_mutex_unlock(&secrets.mu);
}

void redact_clear(void)
{
	pthread_mutex_lock(&secrets.mu);
	for (size_t i = 0; i < secrets.n; i++) {
		crypto_wipe(secrets.v[i], strlen(secrets.v[i]));
		free(secrets.v[i]);
		secrets.v[i] = NULL;
	}
	secrets.n = 0;
	pthread_mutex_unlock(&secrets.mu);
}

/* The longest run, ignoring case, that s[0..] shares with some part of secret. */
static size_t redact_part_len(const char *s, const char *secret, size_t sl)
{
	size_t best = 0;

	for (size_t o = 0; o + best < sl; o++) {
		size_t l = 0;

		while (s[l] && o + l < sl && tolower((unsigned char)s[l]) == tolower((unsigned char)secret[o + l]))
			l++;
		if (l > best)
			best = l;
	}
	return best;
}

/*
 * Replaces every occurrence of a registered secret, or of a part of one of
 * REDACT_PART_MIN characters or more, in any case: a provider that quotes a
 * token cut short ("abc…") or case-folded must not leak most of it (under
 * the lock).
 */
static char *redact_secrets(char *s)
{
	for (size_t i = 0; i < secrets.n; i++) {
		size_t sl = strlen(secrets.v[i]), min = sl < REDACT_PART_MIN ? sl : REDACT_PART_MIN;
		size_t p = 0;

		while (s[p]) {
			size_t l = redact_part_len(s + p, secrets.v[i], sl);
			char *t;

			if (l < min) {
				p++;
				continue;
			}
			t = xasprintf("%.*s" REDACT_MARK "%s", (int)p, s, s + p + l);
			free(s);
			s = t;
			p += strlen(REDACT_MARK);
		}
	}
	return s;
}

static int redact_wordch(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* The shape starting at p (at a word boundary), or NULL. */
static const struct redact_shape *redact_shape_at(const char *s, const char *p)
{
	if (p > s && redact_wordch(p[-1]))
		return NULL;
	for (size_t i = 0; i < sizeof(redact_shapes_tab) / sizeof(redact_shapes_tab[0]); i++) {
		size_t l = strlen(redact_shapes_tab[i].word);

		if (!strncasecmp(p, redact_shapes_tab[i].word, l) && !redact_wordch(p[l]))
			return &redact_shapes_tab[i];
	}
	return NULL;
}

/* Where the value after a shape at i starts and ends ([*v, *e)); 0 when there is none to redact. */
static int redact_value(const char *s, size_t i, const struct redact_shape *sh, size_t *v, size_t *e)
{
	size_t p = i + strlen(sh->word);

	if (sh->header) {
		while (s[p] == '"' || s[p] == '\'' || s[p] == ' ' || s[p] == '\t')
			p++;
		if (s[p] != ':' && s[p] != '=')
			return 0;
		p++;
		while (s[p] == '"' || s[p] == '\'' || s[p] == ' ' || s[p] == '\t')
			p++;
		*v = p;
		while (s[p] && s[p] != '\n' && s[p] != '\r' && s[p] != '"' && s[p] != '\'' && s[p] != ',')
			p++;
		while (p > *v && (s[p - 1] == ' ' || s[p - 1] == ')'))
			p--;
		*e = p;
		return *e > *v;
	}
	if (s[p] != ' ' && s[p] != '\t')
		return 0;
	while (s[p] == ' ' || s[p] == '\t')
		p++;
	*v = p;
	while (s[p] && !isspace((unsigned char)s[p]) && s[p] != '"' && s[p] != '\'' && s[p] != ',' && s[p] != ';' &&
	       s[p] != ')')
		p++;
	*e = p;
	return *e - *v >= REDACT_WORD_MIN_LEN;
}

static char *redact_shapes(char *s)
{
	size_t i = 0, v, e;

	while (s[i]) {
		const struct redact_shape *sh = redact_shape_at(s, s + i);
		char *t;

		if (!sh || !redact_value(s, i, sh, &v, &e) || !strncmp(s + v, REDACT_MARK, e - v)) {
			i++;
			continue;
		}
		t = xasprintf("%.*s" REDACT_MARK "%s", (int)v, s, s + e);
		free(s);
		s = t;
		i = v + strlen(REDACT_MARK);
	}
	return s;
}

char *redact_dup(const char *s)
{
	char *r;

	if (!s)
		return NULL;
	r = xstrdup(s);
	pthread_mutex_lock(&secrets.mu);
	r = redact_secrets(r);
	pthread_mutex_unlock(&secrets.mu);
	return redact_shapes(r);
}

void redact_inplace(char *s, size_t cap)
{
	char *r;
	size_t l;

	if (!s || !cap || !*s)
		return;
	r = redact_dup(s);
	l = strlen(r);
	if (l >= cap)
		l = cap - 1;
	memcpy(s, r, l);
	s[l] = '\0';
	free(r);
}
