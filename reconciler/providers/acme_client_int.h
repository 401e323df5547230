/*
 * Private to the ACME protocol client (acme_client.c, acme_order.c,
 * acme_client_ari.c) and its unit tests: the client's state and the request
 * helpers the operations share.
 */
#ifndef CS_RECONCILER_PROVIDERS_ACME_CLIENT_INT_H
#define CS_RECONCILER_PROVIDERS_ACME_CLIENT_INT_H

#include <pthread.h>
#include <stddef.h>

#include "../../util/http.h"
#include "acme.h"

struct acme_client {
	char *issuer;
	char *directory_url;
	struct http_client *http;      /* GETs: retried when safe */
	struct http_client *http_post; /* signed POSTs: never repeated (a replayed JWS is refused anyway) */
	pthread_mutex_t dir_mu;	       /* one directory fetch at a time */
	int have_dir;
	struct acme_directory dir;
	pthread_mutex_t mu; /* guards the nonce pool and the account below */
	char *nonces[ACME_MAX_NONCES];
	size_t n_nonces;
	const struct crypto_key *key; /* the account key (the caller's) */
	char *kid;		      /* the account URL */
	char *orders_url;	      /* the account's orders list, NULL when the server has none */
	char thumbprint[44];
};

/*
 * An unauthenticated GET (retried when safe). 0 for a 2xx (res filled);
 * otherwise the error is set as acme_client_fail does. The caller frees
 * res in every case.
 */
int acme_client_get(struct acme_client *c, const char *op, const char *url, const char *accept,
		    struct http_response *res);

/*
 * A signed POST with key, under kid (NULL: the jwk, for newAccount), with
 * the badNonce retries of acme_client_post.
 */
int acme_client_post_key(struct acme_client *c, const struct crypto_key *key, const char *kid, const char *op,
			 const char *url, const char *payload, const char *accept, struct http_response *res,
			 struct acme_problem *prob);

/*
 * The error for a non-2xx answer: the problem document's text and class
 * when it is one (*prob gets it when not NULL), else the HTTP status and
 * the start of the body. Returns the code.
 */
int acme_client_fail(struct acme_client *c, const char *op, const char *url, const struct http_response *res,
		     struct acme_problem *prob);

/* Keeps res's Replay-Nonce in the pool (bounded: the oldest goes first). */
void acme_nonce_keep(struct acme_client *c, const struct http_response *res);
/* Unused nonces in the pool (for tests). */
size_t acme_nonce_count(struct acme_client *c);

#endif
