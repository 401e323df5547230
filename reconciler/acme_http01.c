/* The http-01 answers served by certsync itself: a bounded, mutex-guarded hash table token → key authorization. */
#include "acme_http01.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../util/err.h"
#include "../util/util.h"

#define HTTP01_SLOTS (2 * ACME_HTTP01_MAX) /* a power of two: linear probing stays short at half load */
#define HTTP01_KA_MAX 512		   /* token "." thumbprint: a SHA-512 thumbprint still fits */

struct http01_slot {
	char *token; /* NULL: empty */
	char *ka;
};

static pthread_mutex_t http01_mu = PTHREAD_MUTEX_INITIALIZER;
static struct http01_slot http01_tab[HTTP01_SLOTS];
static size_t http01_n;

/* base64url, 1..ACME_HTTP01_TOKEN_MAX characters: nothing else can be a path segment we answer. */
static int http01_token_ok(const char *t)
{
	size_t n = t ? strlen(t) : 0;

	if (!n || n > ACME_HTTP01_TOKEN_MAX)
		return 0;
	return strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

static size_t http01_home(const char *token)
{
	return (size_t)util_hash_str(token) & (HTTP01_SLOTS - 1);
}

/* The slot holding token, or the empty slot where it would go. Under the lock. */
static size_t http01_find(const char *token)
{
	size_t i = http01_home(token);

	while (http01_tab[i].token && strcmp(http01_tab[i].token, token))
		i = (i + 1) & (HTTP01_SLOTS - 1);
	return i;
}

int acme_http01_put(const char *token, const char *key_authorization)
{
	size_t i, ka_len = key_authorization ? strlen(key_authorization) : 0;
	char *ka;

	if (!http01_token_ok(token))
		return cs_error(CS_EINVALID, "http-01 token \"%.*s\" is not base64url (1 to %d characters)", 64,
				token ? token : "", ACME_HTTP01_TOKEN_MAX);
	if (!ka_len || ka_len > HTTP01_KA_MAX || strncmp(key_authorization, token, strlen(token)) ||
	    key_authorization[strlen(token)] != '.')
		return cs_error(CS_EINVALID, "http-01 token %s: the key authorization is not \"<token>.<thumbprint>\"",
				token);
	ka = xstrdup(key_authorization);
	pthread_mutex_lock(&http01_mu);
	i = http01_find(token);
	if (http01_tab[i].token) {
		free(http01_tab[i].ka);
		http01_tab[i].ka = ka;
	} else if (http01_n >= ACME_HTTP01_MAX) {
		pthread_mutex_unlock(&http01_mu);
		free(ka);
		return cs_error(CS_ERROR, "http-01 token %s: the built-in server already holds %d answers", token,
				ACME_HTTP01_MAX);
	} else {
		http01_tab[i].token = xstrdup(token);
		http01_tab[i].ka = ka;
		http01_n++;
	}
	pthread_mutex_unlock(&http01_mu);
	return 0;
}

/* Linear probing without tombstones: pull later members of the cluster back over the hole. */
static void http01_remove_at(size_t hole)
{
	size_t j = hole;

	free(http01_tab[hole].token);
	free(http01_tab[hole].ka);
	http01_tab[hole].token = http01_tab[hole].ka = NULL;
	for (;;) {
		size_t home;

		j = (j + 1) & (HTTP01_SLOTS - 1);
		if (!http01_tab[j].token)
			return;
		home = http01_home(http01_tab[j].token);
		/* j's entry may move to the hole only if its home is not cyclically in (hole, j]. */
		if (((j - home) & (HTTP01_SLOTS - 1)) >= ((j - hole) & (HTTP01_SLOTS - 1))) {
			http01_tab[hole] = http01_tab[j];
			http01_tab[j].token = http01_tab[j].ka = NULL;
			hole = j;
		}
	}
}

void acme_http01_del(const char *token)
{
	size_t i;

	if (!http01_token_ok(token))
		return;
	pthread_mutex_lock(&http01_mu);
	i = http01_find(token);
	if (http01_tab[i].token) {
		http01_remove_at(i);
		http01_n--;
	}
	pthread_mutex_unlock(&http01_mu);
}

int acme_http01_get(const char *token, char *out, size_t n)
{
	size_t i;
	int found = 0;

	if (!http01_token_ok(token) || !n)
		return 0;
	pthread_mutex_lock(&http01_mu);
	i = http01_find(token);
	if (http01_tab[i].token && strlen(http01_tab[i].ka) < n) {
		memcpy(out, http01_tab[i].ka, strlen(http01_tab[i].ka) + 1);
		found = 1;
	}
	pthread_mutex_unlock(&http01_mu);
	return found;
}

size_t acme_http01_count(void)
{
	size_t n;

	pthread_mutex_lock(&http01_mu);
	n = http01_n;
	pthread_mutex_unlock(&http01_mu);
	return n;
}
