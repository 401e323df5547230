/* libmicrohttpd behind the daemon's HTTP endpoints (the only file that includes it). */
#include "http_server.h"
#include "../../util/libversion.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "../acme_http01.h"
#include "../metrics.h"

#define SERVER_QUEUE_BYTES (16u * 1024 * 1024)
#define SERVER_MAX_DRAIN (1024 * 1024)
#define SERVER_FULL_WAIT_MS 100 /* how long a delivery waits for room in a full queue */
/* A request (its body, or its answer to a slow reader) taking longer than this is cut when room is needed. */
#define SERVER_BUSY_DEADLINE_MS (3 * SERVER_TIMEOUT_S * 1000)
/* libmicrohttpd's own cap: room for evicted connections that it has not closed yet. */
#define SERVER_HARD_CONNECTIONS (SERVER_MAX_CONNECTIONS * 2)

/* A connection as the eviction policy sees it (libmicrohttpd's socket context). */
struct srv_conn {
	int fd;
	int busy;	 /* a request head arrived and its answer is not finished */
	int evicted;	 /* shut down by us; libmicrohttpd closes it on its next look */
	int64_t wait_ms; /* since when it waits for a request head (monotonic ms) */
	int64_t busy_ms; /* since when it is busy with a request (body upload, answer to a slow reader) */
	struct srv_conn *prev, *next;
};

struct http_server {
	struct MHD_Daemon *d;
	unsigned port;
	void (*notify)(void *arg);
	void *notify_arg;
	pthread_mutex_t mu;  /* guards everything below */
	pthread_cond_t room; /* the loop took deliveries off a full queue */
	char *secret;
	char *admin_token;
	char *git_secret; /* source.receiverSecret: POST /webhooks/git/<secret> */
	int git_push;	  /* a push arrived: the loop fetches */
	int ready;
	char *ready_json;
	int64_t beat_ms, beat_bound_ms; /* liveness: the loop's last pass (monotonic ms) and the bound */
	struct webhook_delivery q[SERVER_MAX_QUEUE];
	size_t q_head, q_n, q_bytes;
	struct retry_request retry;
	struct srv_conn *conns, *conns_tail; /* oldest wait first among the idle ones */
	size_t n_live;			     /* connections not evicted */
};

/* One POST in progress (the body arrives over several handler calls). */
struct srv_req {
	char provider[SERVER_MAX_SEGMENT + 1];
	struct buf body;
	int too_big;
	int git; /* a delivery to the git push receiver */
};

/* ---------- pure helpers ---------- */

int server_parse_webhook_path(const char *url, const char **provider, size_t *provider_len, const char **secret,
			      size_t *secret_len)
{
	static const char prefix[] = "/webhooks/";
	const char *p, *slash;
	size_t n;

	if (!url || strncmp(url, prefix, sizeof(prefix) - 1))
		return 0;
	p = url + sizeof(prefix) - 1;
	slash = strchr(p, '/');
	if (!slash || slash == p || (size_t)(slash - p) > SERVER_MAX_SEGMENT)
		return 0;
	for (const char *c = p; c < slash; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
			return 0;
	n = strlen(slash + 1);
	if (!n || n > 512 || strpbrk(slash + 1, "/?#"))
		return 0;
	*provider = p;
	*provider_len = (size_t)(slash - p);
	*secret = slash + 1;
	*secret_len = n;
	return 1;
}

int server_parse_retry_path(const char *url, const char **name)
{
	const char *p;
	size_t n;

	if (!url || strncmp(url, "/retry", 6))
		return 0;
	if (!url[6]) {
		*name = NULL;
		return 1;
	}
	if (url[6] != '/')
		return 0;
	p = url + 7;
	n = strlen(p);
	if (!n || n > SERVER_MAX_NAME || strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n)
		return 0;
	*name = p;
	return 1;
}

/* Every endpoint and the methods it answers: a path here with another method gets 405 and Allow. */
static const struct {
	const char *path;
	int prefix; /* path is a prefix (the rest names a provider, a certificate, a token) */
	const char *allow;
} server_routes[] = {
	{"/healthz", 0, "GET, HEAD"},
	{"/readyz", 0, "GET, HEAD"},
	{"/metrics", 0, "GET, HEAD"},
	{"/retry", 0, "POST"},
	{"/retry/", 1, "POST"},
	{"/webhooks/", 1, "POST"},
	{"/.well-known/acme-challenge/", 1, "GET, HEAD"},
};

int server_method_allowed(const char *url, const char *method, const char **allow)
{
	*allow = NULL;
	for (size_t i = 0; i < sizeof(server_routes) / sizeof(server_routes[0]); i++) {
		const char *p = server_routes[i].path;

		if (server_routes[i].prefix ? strncmp(url, p, strlen(p)) : strcmp(url, p))
			continue;
		*allow = server_routes[i].allow;
		/* "GET, HEAD" holds "GET" and "HEAD" as whole words only */
		for (const char *a = *allow; (a = strstr(a, method)); a++)
			if ((a == *allow || a[-1] == ' ') && (a[strlen(method)] == ',' || !a[strlen(method)]))
				return 1;
		return 0;
	}
	return 1; /* not an endpoint: the handlers answer 404 */
}

const char *server_bearer_token(const char *authorization)
{
	const char *p = authorization;

	if (!p || strncasecmp(p, "Bearer ", 7))
		return NULL;
	p += 7;
	while (*p == ' ')
		p++;
	return *p ? p : NULL;
}

void retry_request_free(struct retry_request *r)
{
	for (size_t i = 0; i < r->n_names; i++)
		free(r->names[i]);
	free(r->names);
	memset(r, 0, sizeof(*r));
}

int server_secret_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
	volatile unsigned char diff = (unsigned char)(given_len != want_len);

	/* Walks the wanted secret in full whatever was given, so timing says nothing about its content. */
	for (size_t i = 0; i < want_len; i++)
		diff |= (unsigned char)(want[i] ^ (i < given_len ? given[i] : 0));
	return diff == 0 && want_len > 0;
}

/* ---------- responses ---------- */

static enum MHD_Result srv_reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
				 size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result srv_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	return srv_reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* 405 with the Allow header RFC 9110 requires. */
static enum MHD_Result srv_method_not_allowed(struct MHD_Connection *c, const char *allow)
{
	static const char text[] = "method not allowed\n";
	struct MHD_Response *r =
		MHD_create_response_from_buffer(sizeof(text) - 1, (void *)text, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result srv_metrics(struct MHD_Connection *c)
{
	struct buf b = BUF_INIT;
	enum MHD_Result ret;

	if (metrics_render(&b)) {
		buf_free(&b);
		return srv_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics unavailable\n");
	}
	ret = srv_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len);
	buf_free(&b);
	return ret;
}

static enum MHD_Result srv_readyz(struct http_server *s, struct MHD_Connection *c)
{
	char *body;
	int ready;
	enum MHD_Result ret;

	pthread_mutex_lock(&s->mu);
	ready = s->ready;
	body = xasprintf("%s\n", s->ready_json ? s->ready_json : "{\"ready\":false,\"reason\":\"starting\"}");
	pthread_mutex_unlock(&s->mu);
	ret = srv_reply(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body, strlen(body));
	free(body);
	return ret;
}

/* Liveness: 503 once the loop has gone longer than its bound without completing a pass. */
static enum MHD_Result srv_healthz(struct http_server *s, struct MHD_Connection *c)
{
	int64_t since = -1, bound = 0;
	char text[160];

	pthread_mutex_lock(&s->mu);
	if (s->beat_ms && s->beat_bound_ms) {
		since = util_mono_ms() - s->beat_ms;
		bound = s->beat_bound_ms;
	}
	pthread_mutex_unlock(&s->mu);
	if (since < 0 || since <= bound)
		return srv_text(c, MHD_HTTP_OK, "ok\n");
	snprintf(text, sizeof(text), "stalled: the loop has not completed a pass for %llds (bound %llds)\n",
		 (long long)(since / 1000), (long long)(bound / 1000));
	return srv_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

/*
 * GET/HEAD /.well-known/acme-challenge/<token>: the key authorization the
 * ACME driver placed for token (acme_http01.h), else 404. Reads only the
 * answer table, never the engine, so a busy apply cannot delay validation.
 */
static enum MHD_Result srv_acme_challenge(struct MHD_Connection *c, const char *url, const char *method)
{
	char ka[ACME_HTTP01_TOKEN_MAX + 512];

	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return srv_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (!acme_http01_get(url + strlen(ACME_HTTP01_PREFIX), ka, sizeof(ka)))
		return srv_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
	return srv_reply(c, MHD_HTTP_OK, "text/plain", ka, strlen(ka));
}

/* ---------- explicit retries ---------- */

/* Queues a retry of one certificate (name) or of all failed ones (NULL); 0, or -1 when the list is full. */
static int srv_retry_queue(struct http_server *s, const char *name)
{
	int rc = 0;

	pthread_mutex_lock(&s->mu);
	if (!name) {
		s->retry.all = 1;
	} else {
		size_t i;

		for (i = 0; i < s->retry.n_names && strcmp(s->retry.names[i], name); i++)
			;
		if (i == s->retry.n_names) {
			if (s->retry.n_names >= SERVER_MAX_RETRY_NAMES) {
				rc = -1;
			} else {
				s->retry.names = xrealloc(s->retry.names, (s->retry.n_names + 1) * sizeof(char *));
				s->retry.names[s->retry.n_names++] = xstrdup(name);
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (!rc && s->notify)
		s->notify(s->notify_arg);
	return rc;
}

/* POST /retry[/<name>]: answered at once (202); the loop retries in its next pass. */
static enum MHD_Result srv_retry(struct http_server *s, struct MHD_Connection *c, const char *url)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *given = server_bearer_token(auth), *name = NULL;
	char *body;
	int ok = 0, on;
	enum MHD_Result ret;

	pthread_mutex_lock(&s->mu);
	on = s->admin_token != NULL;
	if (on && given)
		ok = server_secret_equal(given, strlen(given), s->admin_token, strlen(s->admin_token));
	pthread_mutex_unlock(&s->mu);
	if (!on)
		return srv_text(c, MHD_HTTP_NOT_FOUND, "not found (the retry endpoint needs server.adminToken)\n");
	if (!ok) {
		struct MHD_Response *r =
			MHD_create_response_from_buffer(14, (void *)"unauthorized\n", MHD_RESPMEM_PERSISTENT);

		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"certsync\"");
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
		ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
		MHD_destroy_response(r);
		return ret;
	}
	if (!server_parse_retry_path(url, &name))
		return srv_text(
			c, MHD_HTTP_BAD_REQUEST,
			"expected POST /retry or /retry/<certificate name> (lowercase letters, digits, '.', '-')\n");
	if (srv_retry_queue(s, name))
		return srv_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many retries queued, try again shortly\n");
	body = name ? xasprintf("{\"queued\":\"retry\",\"certificate\":\"%s\"}\n", name)
		    : xstrdup("{\"queued\":\"retry\",\"certificate\":\"all failed\"}\n");
	ret = srv_reply(c, MHD_HTTP_ACCEPTED, "application/json", body, strlen(body));
	free(body);
	return ret;
}

int http_server_take_retries(struct http_server *s, struct retry_request *out)
{
	int any;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->mu);
	*out = s->retry;
	memset(&s->retry, 0, sizeof(s->retry));
	pthread_mutex_unlock(&s->mu);
	any = out->all || out->n_names;
	return any;
}

/* ---------- slow clients: connection tracking and eviction ---------- */

static void srv_conn_unlink(struct http_server *s, struct srv_conn *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		s->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		s->conns_tail = k->prev;
	k->prev = k->next = NULL;
}

static void srv_conn_append(struct http_server *s, struct srv_conn *k)
{
	k->prev = s->conns_tail;
	k->next = NULL;
	if (s->conns_tail)
		s->conns_tail->next = k;
	else
		s->conns = k;
	s->conns_tail = k;
}

/* Shuts the socket down (libmicrohttpd sees the end and closes it itself; the descriptor stays its own). */
static void srv_conn_evict(struct http_server *s, struct srv_conn *k)
{
	k->evicted = 1;
	s->n_live--;
	shutdown(k->fd, SHUT_RDWR);
}

/*
 * Called for every accepted connection before libmicrohttpd takes it: closes
 * connections that have waited past SERVER_TIMEOUT_S for a whole request
 * head, and at the cap evicts the one waiting longest (or, when all are busy,
 * one whose request has taken over SERVER_BUSY_DEADLINE_MS). A connection is
 * refused only when every kept one is busy with a recent request.
 */
static enum MHD_Result srv_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct http_server *s = cls;
	int64_t now = util_mono_ms();
	enum MHD_Result ok = MHD_YES;

	(void)addr;
	(void)addrlen;
	pthread_mutex_lock(&s->mu);
	for (struct srv_conn *k = s->conns; k; k = k->next)
		if (!k->busy && !k->evicted && now - k->wait_ms > SERVER_TIMEOUT_S * 1000)
			srv_conn_evict(s, k);
	if (s->n_live >= SERVER_MAX_CONNECTIONS) {
		struct srv_conn *k = s->conns;

		while (k && (k->busy || k->evicted))
			k = k->next;
		/* Every kept connection is busy: one whose request has dragged on past its deadline goes. */
		if (!k)
			for (k = s->conns; k && (k->evicted || now - k->busy_ms <= SERVER_BUSY_DEADLINE_MS);
			     k = k->next)
				;
		if (k)
			srv_conn_evict(s, k);
		else
			ok = MHD_NO;
	}
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static void srv_notify_conn(void *cls, struct MHD_Connection *c, void **socket_context,
			    enum MHD_ConnectionNotificationCode code)
{
	struct http_server *s = cls;
	struct srv_conn *k = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

		k = xcalloc(1, sizeof(*k));
		k->fd = ci ? ci->connect_fd : -1;
		k->wait_ms = util_mono_ms();
		pthread_mutex_lock(&s->mu);
		srv_conn_append(s, k);
		s->n_live++;
		pthread_mutex_unlock(&s->mu);
		*socket_context = k;
		return;
	}
	if (!k)
		return;
	pthread_mutex_lock(&s->mu);
	srv_conn_unlink(s, k);
	if (!k->evicted)
		s->n_live--;
	pthread_mutex_unlock(&s->mu);
	free(k);
	*socket_context = NULL;
}

/* A request head arrived (busy = 1) or its answer is done (busy = 0: waiting again, newest). */
static void srv_conn_busy(struct http_server *s, struct MHD_Connection *c, int busy)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct srv_conn *k = ci ? ci->socket_context : NULL;

	if (!k)
		return;
	pthread_mutex_lock(&s->mu);
	k->busy = busy;
	if (busy)
		k->busy_ms = util_mono_ms();
	if (!busy) {
		k->wait_ms = util_mono_ms();
		srv_conn_unlink(s, k);
		srv_conn_append(s, k);
	}
	pthread_mutex_unlock(&s->mu);
}

/* ---------- webhooks ---------- */

/* Checks path and secret of a webhook POST; on success fills provider. */
static int srv_webhook_allowed(struct http_server *s, const char *url, char provider[SERVER_MAX_SEGMENT + 1])
{
	const char *prov, *sec;
	size_t plen, slen;
	int ok = 0;

	if (!server_parse_webhook_path(url, &prov, &plen, &sec, &slen))
		return 0;
	pthread_mutex_lock(&s->mu);
	if (s->secret)
		ok = server_secret_equal(sec, slen, s->secret, strlen(s->secret));
	pthread_mutex_unlock(&s->mu);
	if (ok)
		snprintf(provider, SERVER_MAX_SEGMENT + 1, "%.*s", (int)plen, prov);
	return ok;
}

/* Queues the body; 0, or -1 when the queue is full (the provider will deliver again). */
static int srv_enqueue(struct http_server *s, struct srv_req *r)
{
	struct webhook_delivery *d;

	pthread_mutex_lock(&s->mu);
	if (s->q_n >= SERVER_MAX_QUEUE || s->q_bytes + r->body.len > SERVER_QUEUE_BYTES) {
		/*
		 * Full: wait a moment for the loop to catch up. The server thread
		 * stalls, so a burst turns into latency (TCP backpressure) rather
		 * than refusals; only a loop busy for longer gets the 503.
		 */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += SERVER_FULL_WAIT_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (s->q_n >= SERVER_MAX_QUEUE || s->q_bytes + r->body.len > SERVER_QUEUE_BYTES)
			if (pthread_cond_timedwait(&s->room, &s->mu, &ts)) {
				pthread_mutex_unlock(&s->mu);
				return -1;
			}
	}
	d = &s->q[(s->q_head + s->q_n) % SERVER_MAX_QUEUE];
	memcpy(d->provider, r->provider, sizeof(d->provider));
	d->len = r->body.len;
	d->body = buf_detach(&r->body);
	s->q_n++;
	s->q_bytes += d->len;
	pthread_mutex_unlock(&s->mu);
	if (s->notify)
		s->notify(s->notify_arg);
	return 0;
}

size_t http_server_take(struct http_server *s, struct webhook_delivery *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&s->mu);
	while (n < max && s->q_n) {
		out[n] = s->q[s->q_head];
		memset(&s->q[s->q_head], 0, sizeof(s->q[0]));
		s->q_head = (s->q_head + 1) % SERVER_MAX_QUEUE;
		s->q_n--;
		s->q_bytes -= out[n].len;
		n++;
	}
	if (n)
		pthread_cond_broadcast(&s->room);
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* ---------- the git push receiver ---------- */

/* The path secret of /webhooks/git/<secret> against source.receiverSecret. */
static int srv_git_allowed(struct http_server *s, const char *url)
{
	const char *prov, *sec;
	size_t plen, slen;
	int ok = 0;

	if (!server_parse_webhook_path(url, &prov, &plen, &sec, &slen))
		return 0;
	pthread_mutex_lock(&s->mu);
	if (s->git_secret)
		ok = server_secret_equal(sec, slen, s->git_secret, strlen(s->git_secret));
	pthread_mutex_unlock(&s->mu);
	return ok;
}

/* The whole body is in: check the forge's proof, then wake the loop for a fetch. */
static enum MHD_Result srv_git_finish(struct http_server *s, struct MHD_Connection *c, struct srv_req *r)
{
	static const char *const labels[GIT_RX__MAX] = {"push", "ping", "other", "unknown"};
	struct git_rx_headers h;
	char *secret;
	enum git_rx rx;

	h.github_event = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-GitHub-Event");
	h.github_signature = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hub-Signature-256");
	h.gitlab_event = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gitlab-Event");
	h.gitlab_token = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gitlab-Token");
	h.gitea_event = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gitea-Event");
	h.gitea_signature = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gitea-Signature");
	h.signature = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Signature");
	pthread_mutex_lock(&s->mu);
	secret = xstrdup(s->git_secret);
	pthread_mutex_unlock(&s->mu);
	rx = server_git_receive(&h, r->body.data, r->body.len, secret);
	if (secret)
		crypto_wipe(secret, strlen(secret));
	free(secret);
	metrics_webhook_event("git", labels[rx], rx == GIT_RX_FORGED ? "forged" : rx == GIT_RX_FETCH ? "fetch" : "ok");
	if (rx == GIT_RX_FORGED)
		return srv_text(c, MHD_HTTP_FORBIDDEN,
				"the signature (X-Hub-Signature-256) or token (X-Gitlab-Token) does not match\n");
	if (rx == GIT_RX_PING)
		return srv_text(c, MHD_HTTP_OK, "pong\n");
	if (rx == GIT_RX_IGNORED)
		return srv_text(c, MHD_HTTP_ACCEPTED, "ignored: not a push event\n");
	pthread_mutex_lock(&s->mu);
	s->git_push = 1;
	pthread_mutex_unlock(&s->mu);
	if (s->notify)
		s->notify(s->notify_arg);
	return srv_reply(c, MHD_HTTP_ACCEPTED, "application/json", "{\"queued\":\"fetch\"}\n", 19);
}

int http_server_take_git_push(struct http_server *s)
{
	int push;

	pthread_mutex_lock(&s->mu);
	push = s->git_push;
	s->git_push = 0;
	pthread_mutex_unlock(&s->mu);
	return push;
}

/* Replaces the secret *slot with a copy of value (NULL or "" turns it off), wiping the old copy. */
static void srv_set_secret(struct http_server *s, char **slot, const char *value)
{
	char *old;

	pthread_mutex_lock(&s->mu);
	old = *slot;
	*slot = value && *value ? xstrdup(value) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (old)
		crypto_wipe(old, strlen(old));
	free(old);
}

void http_server_set_git_secret(struct http_server *s, const char *secret)
{
	srv_set_secret(s, &s->git_secret, secret);
}

/* The first call of a POST (headers only): refuse early what is not wanted. */
static enum MHD_Result srv_webhook_start(struct http_server *s, struct MHD_Connection *c, const char *url,
					 void **con_cls)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	struct srv_req *r;
	char provider[SERVER_MAX_SEGMENT + 1];
	int git = !strncmp(url, "/webhooks/git/", 14); /* "git" is the push receiver, never a provider */

	if (git ? !srv_git_allowed(s, url) : !srv_webhook_allowed(s, url, provider)) {
		metrics_webhook_event("any", "unknown", "forged");
		return srv_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
	}
	/* A little over the cap is read and dropped so the client gets its 413; far over, the connection is cut. */
	if (cl && strtoull(cl, NULL, 10) > SERVER_MAX_DRAIN) {
		metrics_webhook_event(provider, "unknown", "oversized");
		return srv_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n");
	}
	r = xcalloc(1, sizeof(*r));
	if (git)
		snprintf(provider, sizeof(provider), "git");
	r->git = git;
	memcpy(r->provider, provider, sizeof(provider));
	/* A push payload lists its commits: GitHub's often pass 64 KiB. Only its signature is computed, never parsed.
	 */
	buf_init(&r->body, git ? SERVER_MAX_DRAIN : SERVER_MAX_WEBHOOK_BODY);
	*con_cls = r;
	return MHD_YES;
}

static enum MHD_Result srv_webhook_data(struct http_server *s, struct MHD_Connection *c, struct srv_req *r,
					const char *data, size_t *size)
{
	if (*size) {
		if (!r->too_big && buf_append(&r->body, data, *size))
			r->too_big = 1; /* keep reading (and dropping) so the answer can be sent */
		*size = 0;
		return MHD_YES;
	}
	if (r->too_big) {
		metrics_webhook_event(r->provider, "unknown", "oversized");
		return srv_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n");
	}
	if (r->git)
		return srv_git_finish(s, c, r);
	if (srv_enqueue(s, r)) {
		metrics_webhook_event(r->provider, "unknown", "queue_full");
		return srv_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy, deliver again later\n");
	}
	return srv_text(c, MHD_HTTP_OK, "queued\n");
}

static enum MHD_Result srv_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct http_server *s = cls;
	const char *allow;

	(void)version;
	if (*con_cls)
		return srv_webhook_data(s, c, *con_cls, upload_data, upload_data_size);
	srv_conn_busy(s, c, 1);
	if (!server_method_allowed(url, method, &allow))
		return srv_method_not_allowed(c, allow);
	if (!strncmp(url, ACME_HTTP01_PREFIX, strlen(ACME_HTTP01_PREFIX)))
		return srv_acme_challenge(c, url, method);
	if (!strcmp(method, "POST") && !strncmp(url, "/retry", 6))
		return srv_retry(s, c, url);
	if (!strcmp(method, "POST"))
		return srv_webhook_start(s, c, url, con_cls);
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return srv_text(c, MHD_HTTP_NOT_FOUND, "not found\n"); /* every endpoint's methods are in the table */
	if (!strcmp(url, "/healthz"))
		return srv_healthz(s, c);
	if (!strcmp(url, "/readyz"))
		return srv_readyz(s, c);
	if (!strcmp(url, "/metrics"))
		return srv_metrics(c);
	return srv_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void srv_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct srv_req *r = *con_cls;

	(void)toe;
	srv_conn_busy(cls, c, 0);
	if (!r)
		return;
	buf_free(&r->body);
	free(r);
	*con_cls = NULL;
}

/* ---------- lifecycle ---------- */

static int srv_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon, *port;
	struct addrinfo hints, *ai = NULL;
	size_t hl;

	colon = listen ? strrchr(listen, ':') : NULL;
	if (!colon || !colon[1])
		return cs_error(CS_EINVALID, "server.listen \"%s\": expected HOST:PORT", listen ? listen : "");
	port = colon + 1;
	hl = (size_t)(colon - listen);
	if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(hl - 2), listen + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)hl, listen);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	if (getaddrinfo(host[0] ? host : NULL, port, &hints, &ai) || !ai)
		return cs_error(CS_EINVALID, "server.listen \"%s\": not a numeric address and port", listen);
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int http_server_start(const struct http_server_opts *o, struct http_server **out)
{
	struct http_server *s;
	struct sockaddr_storage ss;
	socklen_t sl;
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
	int rc;

	if ((rc = srv_parse_listen(o->listen, &ss, &sl)))
		return rc;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->room, NULL);
	s->notify = o->notify;
	s->notify_arg = o->notify_arg;
	s->d = MHD_start_daemon(flags, 0, srv_accept, s, srv_handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVER_HARD_CONNECTIONS,
				MHD_OPTION_NOTIFY_CONNECTION, srv_notify_conn, s, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)SERVER_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
				MHD_OPTION_NOTIFY_COMPLETED, srv_completed, s, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
				MHD_OPTION_END);
	if (!s->d) {
		pthread_cond_destroy(&s->room);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return cs_error(CS_ERROR, "server.listen %s: cannot listen (address in use or not available)",
				o->listen);
	}
	info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info ? info->port : 0;
	*out = s;
	return 0;
}

void http_server_stop(struct http_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	for (size_t i = 0; i < s->q_n; i++)
		free(s->q[(s->q_head + i) % SERVER_MAX_QUEUE].body);
	http_server_set_secret(s, NULL);
	http_server_set_admin_token(s, NULL);
	http_server_set_git_secret(s, NULL);
	retry_request_free(&s->retry);
	free(s->ready_json);
	pthread_cond_destroy(&s->room);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

unsigned http_server_port(const struct http_server *s)
{
	return s->port;
}

void http_server_set_secret(struct http_server *s, const char *secret)
{
	srv_set_secret(s, &s->secret, secret);
}

void http_server_set_admin_token(struct http_server *s, const char *token)
{
	srv_set_secret(s, &s->admin_token, token);
}

void http_server_set_ready(struct http_server *s, int ready, const char *json)
{
	char *copy = xstrdup(json), *old;

	pthread_mutex_lock(&s->mu);
	s->ready = ready;
	old = s->ready_json;
	s->ready_json = copy;
	pthread_mutex_unlock(&s->mu);
	free(old);
}

void http_server_beat(struct http_server *s, int64_t bound_s)
{
	pthread_mutex_lock(&s->mu);
	s->beat_ms = util_mono_ms();
	s->beat_bound_ms = bound_s > 0 ? bound_s * 1000 : 0;
	pthread_mutex_unlock(&s->mu);
}

void libversion_microhttpd(char *out, size_t n)
{
	snprintf(out, n, "libmicrohttpd %s", MHD_get_version());
}
