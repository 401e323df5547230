/*
 * The one HTTP client (libcurl, owned by util/http.c): timeouts on every
 * request, TLS verification always on, bounded bodies, case-insensitive
 * rate-limit headers, Retry-After (seconds or HTTP-date), retries with
 * exponential backoff and jitter for requests that are safe to repeat.
 * Secrets never appear in messages: callers pass them as headers, and the
 * messages name the operation and the URL path only.
 */
#ifndef CS_UTIL_HTTP_H
#define CS_UTIL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HTTP_MAX_BODY (4u * 1024 * 1024)
#define HTTP_MAX_HEADERS 16

struct http_client;

struct http_client_opts {
	const char *user_agent;	 /* "certsync/0.1.0" */
	const char *ca_file;	 /* extra trust anchors (PEM), NULL = system */
	long connect_timeout_ms; /* default 10 s */
	long timeout_ms;	 /* whole request, default 60 s */
	int max_retries;	 /* for retry-safe requests, default 4 */
	int64_t max_inline_wait; /* longest Retry-After/backoff slept in place (s), default 30 */
	size_t max_body;	 /* default HTTP_MAX_BODY */
};

/* Creates a client; connections are reused across requests and threads (an internal pool). */
int http_client_new(const struct http_client_opts *opts, struct http_client **out);
void http_client_free(struct http_client *c);

enum http_retry {
	HTTP_RETRY_SAFE,  /* GET, DELETE, idempotent PUT: retried on timeouts, 429 and 5xx */
	HTTP_RETRY_NEVER, /* a POST that may have taken effect: never repeated blindly */
};

struct http_request {
	const char *op;	    /* what it is, for messages: "dnsimple listCertificates" */
	const char *method; /* "GET", "POST", "PUT", "DELETE" */
	const char *url;
	const char *headers[HTTP_MAX_HEADERS]; /* "Name: value", NULL-terminated; may hold secrets */
	const char *body;		       /* may be NULL */
	size_t body_len;
	enum http_retry retry;
};

struct http_ratelimit {
	int have; /* the response carried the headers */
	long limit, remaining;
	int64_t reset; /* unix seconds */
};

struct http_response {
	long status;
	struct buf body;    /* bounded; NUL-terminated */
	char *content_type; /* lowercased, may be NULL */
	char *request_id;   /* X-Request-Id (or similar), may be NULL */
	struct http_ratelimit rl;
	int64_t retry_after; /* absolute unix seconds, 0 if absent */
	int attempts;	     /* how many requests were sent */
	/*
	 * Every header of the final response (ACME needs Location,
	 * Replay-Nonce and the Link headers), names lowercased, values
	 * trimmed; at most HTTP_MAX_RESPONSE_HEADERS of at most
	 * HTTP_MAX_HEADER_LEN bytes each are kept (the rest are dropped).
	 */
	struct http_header *headers;
	size_t n_headers;
};

#define HTTP_MAX_RESPONSE_HEADERS 64
#define HTTP_MAX_HEADER_LEN 8192

struct http_header {
	char *name; /* lowercased */
	char *value;
};

/* The nth (0-based) value of the response header name (case-insensitive), or NULL. */
const char *http_response_header(const struct http_response *res, const char *name, size_t nth);

/*
 * Fills req for a JSON API call: Accept and Content-Type application/json,
 * and auth (a whole "Name: value" header, may be NULL; a secret) first.
 */
void http_request_json(struct http_request *req, const char *op, const char *method, const char *url, const char *auth,
		       const char *body, enum http_retry retry);

/*
 * Performs the request. Returns 0 when a response arrived (check
 * res->status: 4xx/5xx are the caller's to interpret), CS_ETRANSIENT when
 * the request failed transiently (network, timeout, 429/5xx after the
 * retries, or a wait too long to sleep in place: res->retry_after says
 * when), CS_EINVALID when the body exceeds the cap. Messages name req->op
 * and the URL path. res must be freed with http_response_free even on error.
 */
int http_do(struct http_client *c, const struct http_request *req, struct http_response *res);
void http_response_free(struct http_response *res);

/* 1 if the response body is HTML (a proxy error page), judged by type or content. */
int http_is_html(const struct http_response *res);

/*
 * When this thread's last http_do gave up waiting because the wait was too
 * long to sleep in place, and nothing was processed (a spent rate-limit
 * budget: not sent; a 429: refused): the unix time it may be sent again.
 * 0 otherwise. Reading clears it.
 */
int64_t http_take_retry_at(void);

/* The last rate-limit state seen by this client (for budgeting and metrics). */
void http_client_ratelimit(struct http_client *c, struct http_ratelimit *out);

/* What a client has sent so far (apply's finish estimate). */
struct http_client_stats {
	long long answered; /* attempts answered (or failed on the wire) */
	long inflight;	    /* sent and not answered yet */
	int64_t busy_ms;    /* summed duration of the answered attempts */
	int64_t waited_ms;  /* summed time requests waited for a spent rate-limit budget or a Retry-After */
};
void http_client_stats(struct http_client *c, struct http_client_stats *out);

/* Parses a Retry-After value (delta seconds or HTTP-date) relative to now. 0 if unparsable. */
int64_t http_parse_retry_after(const char *value, int64_t now);

/* Called after every request (for metrics): op, status (0 = no response), duration in ms. */
typedef void (*http_observer_fn)(void *arg, const char *op, long status, int64_t ms);
void http_client_set_observer(struct http_client *c, http_observer_fn fn, void *arg);

/*
 * A process-wide stop flag (the daemon's SIGTERM): while *flag is non-zero,
 * requests in flight are aborted within about a second (CS_ETRANSIENT),
 * nothing is retried and no backoff is slept. NULL removes it.
 */
void http_set_abort_flag(volatile int *flag);

/*
 * A process-wide gate asked right before every send (first attempts,
 * retries, and sends after a wait alike): a zero return refuses the request
 * unsent with CS_EFENCED. The daemon wires it to state_leading, so a leader
 * that lost its lease stops calling providers at once. fn must be
 * thread-safe. NULL removes it.
 */
void http_set_gate(int (*fn)(void *arg), void *arg);

/*
 * A hook this thread's next requests call right before they are sent again
 * after a wait (a 429's Retry-After, a connection not made, a spent
 * rate-limit budget): a paid request re-journals its in-flight deadline
 * there, since it counts from the actual send. A non-zero return stops the
 * request unsent with that code. NULL removes it. Thread-local.
 */
void http_set_send_hook(int (*fn)(void *arg), void *arg);

/*
 * The same for every client of the process (clients are made per provider
 * session, so the daemon's metrics hook in here), with the rate-limit state
 * of the response (NULL when it carried none). Set it before the first
 * request; fn must be thread-safe. NULL removes it.
 */
typedef void (*http_global_observer_fn)(void *arg, const char *op, long status, int64_t ms,
					const struct http_ratelimit *rl);
void http_set_global_observer(http_global_observer_fn fn, void *arg);

#endif
