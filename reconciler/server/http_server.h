/*
 * The daemon's HTTP server (libmicrohttpd, owned by http_server.c): provider
 * webhooks, the admin retry endpoint, /healthz, /readyz and /metrics. It runs
 * in its own thread and never calls into the engine: a webhook or a retry
 * request is only queued (answered at once) and the loop is woken to handle
 * it, so slow or huge requests cannot stall the loop.
 *
 * Slow clients cannot starve it: at most SERVER_MAX_CONNECTIONS connections
 * are kept; a new connection beyond that evicts the one that has waited
 * longest without sending a whole request head (idle keep-alives included),
 * and any connection that has not sent a whole request head within
 * SERVER_TIMEOUT_S is closed when the next connection arrives, however slowly
 * it trickles bytes. A probe, whose head arrives at once, always gets in.
 */
#ifndef CS_RECONCILER_SERVER_HTTP_SERVER_H
#define CS_RECONCILER_SERVER_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#define SERVER_MAX_WEBHOOK_BODY (64 * 1024)
#define SERVER_MAX_QUEUE 1024
#define SERVER_MAX_CONNECTIONS 128
#define SERVER_TIMEOUT_S 10
#define SERVER_MAX_SEGMENT 63
#define SERVER_MAX_RETRY_NAMES 64 /* distinct names queued by POST /retry/<name> before 503 */
#define SERVER_MAX_NAME 253

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

/* Queued explicit retries (POST /retry[/<name>]): all failed certificates, or these names. */
struct retry_request {
	int all;
	char **names;
	size_t n_names;
};

void retry_request_free(struct retry_request *r);

/* Starts serving. CS_EINVALID for a bad listen address, CS_ERROR when it cannot bind (message says why). */
int http_server_start(const struct http_server_opts *o, struct http_server **out);

/* Stops the thread, closes connections, drops the queue. NULL is a no-op. */
void http_server_stop(struct http_server *s);

/* The bound TCP port. */
unsigned http_server_port(const struct http_server *s);

/* Sets (copies) the webhook secret; NULL or "" turns webhooks off (404). The old copy is wiped. */
void http_server_set_secret(struct http_server *s, const char *secret);

/*
 * Sets (copies) the admin token that guards POST /retry (Authorization:
 * Bearer <token>, compared in constant time); NULL or "" turns the endpoint
 * off (404). The old copy is wiped.
 */
void http_server_set_admin_token(struct http_server *s, const char *token);

/* What /readyz says: 200 when ready, else 503; json (copied) is the body either way. */
void http_server_set_ready(struct http_server *s, int ready, const char *json);

/*
 * The loop completed a pass (liveness): /healthz answers 503 once more than
 * bound_s seconds go by without another call (0 = never).
 */
void http_server_beat(struct http_server *s, int64_t bound_s);

/* Moves the queued retry requests into out (cleared first); 1 if there were any. */
int http_server_take_retries(struct http_server *s, struct retry_request *out);

/* Moves up to max queued deliveries into out (oldest first); returns how many. */
size_t http_server_take(struct http_server *s, struct webhook_delivery *out, size_t max);

/*
 * The git push receiver, POST /webhooks/git/<secret> (source.receiverSecret;
 * NULL or "" turns it off: 404). The secret is copied; the old copy is wiped.
 * A genuine push is answered 202 at once and wakes the loop.
 */
void http_server_set_git_secret(struct http_server *s, const char *secret);

/* 1 if a push arrived since the last call (several pushes make one fetch). */
int http_server_take_git_push(struct http_server *s);

/* ---------- pure helpers (unit-tested) ---------- */

/* What a delivery to the git receiver asks for. */
enum git_rx { GIT_RX_FETCH, GIT_RX_PING, GIT_RX_IGNORED, GIT_RX_FORGED, GIT_RX__MAX };

/* The headers the receiver reads (NULL when absent). */
struct git_rx_headers {
	const char *github_event;     /* X-GitHub-Event */
	const char *github_signature; /* X-Hub-Signature-256: "sha256=<hex of HMAC-SHA256(secret, body)>" */
	const char *gitlab_event;     /* X-Gitlab-Event */
	const char *gitlab_token;     /* X-Gitlab-Token: the secret itself */
	const char *gitea_event;      /* X-Gitea-Event */
	const char *gitea_signature;  /* X-Gitea-Signature: hex of HMAC-SHA256(secret, body) */
	const char *signature;	      /* X-Signature (Flux's generic-hmac): "sha256=<hex>" */
};

/*
 * Decides a delivery whose path secret already matched: GitHub's
 * (X-GitHub-Event) must carry a valid X-Hub-Signature-256 made with the
 * same secret, Gitea's (X-Gitea-Event) a valid X-Gitea-Signature, GitLab's
 * (X-Gitlab-Event or X-Gitlab-Token) the secret as X-Gitlab-Token
 * (constant-time compare), a generic one with X-Signature a valid
 * "sha256=" HMAC (Flux's generic-hmac); anything else is the generic form,
 * for which the path is enough. push / Push Hook / Tag Push Hook fetch,
 * GitHub's ping is answered, other events are ignored.
 */
enum git_rx server_git_receive(const struct git_rx_headers *h, const char *body, size_t len, const char *secret);

/*
 * Whether method is one the endpoint at url answers. 1 (allow NULL) for a
 * path that is no endpoint (the caller answers 404); 0 with *allow set to
 * the endpoint's methods ("GET, HEAD") for the 405 and its Allow header.
 */
int server_method_allowed(const char *url, const char *method, const char **allow);

/*
 * Splits "/webhooks/<provider>/<secret>" (no query, no further segments;
 * provider is [a-z0-9_-]{1,63}). Returns 1 and points into url, or 0.
 */
int server_parse_webhook_path(const char *url, const char **provider, size_t *provider_len, const char **secret,
			      size_t *secret_len);

/* "/retry" (name NULL) or "/retry/<name>" with a certificate name ([a-z0-9.-]{1,253}). 1 if it is one. */
int server_parse_retry_path(const char *url, const char **name);

/* The token of an "Authorization: Bearer <token>" header value, or NULL. */
const char *server_bearer_token(const char *authorization);

/* Compares without leaking where the first difference is (time depends only on the lengths). 1 if equal. */
int server_secret_equal(const char *given, size_t given_len, const char *want, size_t want_len);

#endif
