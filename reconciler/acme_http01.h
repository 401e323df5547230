/*
 * The http-01 answers certsync serves itself (solver `http01: {serve:
 * true}`): a process-wide table token → key authorization, filled by the
 * ACME driver's workers and read by the HTTP server's thread for
 * GET /.well-known/acme-challenge/<token>. Thread-safe and bounded. Key
 * authorizations are public by design (the CA fetches them over plain
 * HTTP), but only tokens placed here are ever answered.
 */
#ifndef CS_RECONCILER_ACME_HTTP01_H
#define CS_RECONCILER_ACME_HTTP01_H

#include <stddef.h>

#define ACME_HTTP01_MAX 4096	  /* answers held at once */
#define ACME_HTTP01_TOKEN_MAX 128 /* a token is base64url, at least 22 characters (RFC 8555 §8.3) */
#define ACME_HTTP01_PREFIX "/.well-known/acme-challenge/"

/* Adds (or replaces) token's answer. CS_EINVALID for a token that is not base64url, CS_ERROR when full. */
int acme_http01_put(const char *token, const char *key_authorization);
/* Removes token's answer (absent is fine). */
void acme_http01_del(const char *token);
/* Copies token's answer into out (size n): 1 when found, 0 when not. */
int acme_http01_get(const char *token, char *out, size_t n);
/* How many answers are held (for tests and /metrics). */
size_t acme_http01_count(void);

#endif
