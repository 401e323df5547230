/*
 * The daemon's HTTP server (libmicrohttpd, owned by http_server.c): provider
 * webhooks, /healthz, /readyz and /metrics. It runs in its own thread and
 * never calls into the engine: a webhook is only queued (200 at once) and the
 * loop is woken to handle it, so slow or huge requests cannot stall the loop.
 */
#ifndef CS_RECONCILER_SERVER_HTTP_SERVER_H
#define CS_RECONCILER_SERVER_HTTP_SERVER_H

#include <stddef.h>

#define SERVER_MAX_WEBHOOK_BODY (64 * 1024)
#define SERVER_MAX_QUEUE 1024
#define SERVER_MAX_CONNECTIONS 128
#define SERVER_TIMEOUT_S 10
#define SERVER_MAX_SEGMENT 63

struct http_server;

struct http_server_opts {
	const char *listen; /* "127.0.0.1:9402", "[::1]:9402", "0.0.0.0:9402"; port 0 = any free port */
	/* Called from the server thread after a webhook was queued (wake the loop). May be NULL. */
	void (*notify)(void *arg);
	void *notify_arg;
};

/* A queued webhook delivery: the provider segment of the path and the body (caller frees body). */
struct webhook_delivery {
	char provider[SERVER_MAX_SEGMENT + 1];
	char *body;
	size_t len;
};

/* Starts serving. CS_EINVALID for a bad listen address, CS_ERROR when it cannot bind (message says why). */
int http_server_start(const struct http_server_opts *o, struct http_server **out);

/* Stops the thread, closes connections, drops the queue. NULL is a no-op. */
void http_server_stop(struct http_server *s);

/* The bound TCP port. */
unsigned http_server_port(const struct http_server *s);

/* Sets (copies) the webhook secret; NULL or "" turns webhooks off (404). The old copy is wiped. */
void http_server_set_secret(struct http_server *s, const char *secret);

/* What /readyz says: 200 "ok" when ready, else 503; detail (copied) goes into the body either way. */
void http_server_set_ready(struct http_server *s, int ready, const char *detail);

/* Moves up to max queued deliveries into out (oldest first); returns how many. */
size_t http_server_take(struct http_server *s, struct webhook_delivery *out, size_t max);

/* ---------- pure helpers (unit-tested) ---------- */

/*
 * Splits "/webhooks/<provider>/<secret>" (no query, no further segments;
 * provider is [a-z0-9_-]{1,63}). Returns 1 and points into url, or 0.
 */
int server_parse_webhook_path(const char *url, const char **provider, size_t *provider_len, const char **secret,
			      size_t *secret_len);

/* Compares without leaking where the first difference is (time depends only on the lengths). 1 if equal. */
int server_secret_equal(const char *given, size_t given_len, const char *want, size_t want_len);

#endif
