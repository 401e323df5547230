/* libmicrohttpd behind the daemon's HTTP endpoints (the only file that includes it). */
#include "http_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "../metrics.h"

#define SERVER_QUEUE_BYTES (16u * 1024 * 1024)
#define SERVER_MAX_DRAIN (1024 * 1024)
#define SERVER_FULL_WAIT_MS 100 /* how long a delivery waits for room in a full queue */

struct http_server {
	struct MHD_Daemon *d;
	unsigned port;
	void (*notify)(void *arg);
	void *notify_arg;
	pthread_mutex_t mu;  /* guards everything below */
	pthread_cond_t room; /* the loop took deliveries off a full queue */
	char *secret;
	int ready;
	char *ready_detail;
	struct webhook_delivery q[SERVER_MAX_QUEUE];
	size_t q_head, q_n, q_bytes;
};

/* One POST in progress (the body arrives over several handler calls). */
struct srv_req {
	char provider[SERVER_MAX_SEGMENT + 1];
	struct buf body;
	int too_big;
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
	char *text;
	int ready;
	enum MHD_Result ret;

	pthread_mutex_lock(&s->mu);
	ready = s->ready;
	text = xasprintf("%s\n%s%s", ready ? "ok" : "not ready", s->ready_detail ? s->ready_detail : "",
			 s->ready_detail && *s->ready_detail ? "\n" : "");
	pthread_mutex_unlock(&s->mu);
	ret = srv_text(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text);
	free(text);
	return ret;
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

/* The first call of a POST (headers only): refuse early what is not wanted. */
static enum MHD_Result srv_webhook_start(struct http_server *s, struct MHD_Connection *c, const char *url,
					 void **con_cls)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	struct srv_req *r;
	char provider[SERVER_MAX_SEGMENT + 1];

	if (!srv_webhook_allowed(s, url, provider)) {
		metrics_webhook_event("any", "unknown", "forged");
		return srv_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
	}
	/* A little over the cap is read and dropped so the client gets its 413; far over, the connection is cut. */
	if (cl && strtoull(cl, NULL, 10) > SERVER_MAX_DRAIN) {
		metrics_webhook_event(provider, "unknown", "oversized");
		return srv_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n");
	}
	r = xcalloc(1, sizeof(*r));
	memcpy(r->provider, provider, sizeof(provider));
	buf_init(&r->body, SERVER_MAX_WEBHOOK_BODY);
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

	(void)version;
	if (*con_cls)
		return srv_webhook_data(s, c, *con_cls, upload_data, upload_data_size);
	if (!strcmp(method, "POST"))
		return srv_webhook_start(s, c, url, con_cls);
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return srv_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (!strcmp(url, "/healthz"))
		return srv_text(c, MHD_HTTP_OK, "ok\n");
	if (!strcmp(url, "/readyz"))
		return srv_readyz(s, c);
	if (!strcmp(url, "/metrics"))
		return srv_metrics(c);
	return srv_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void srv_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct srv_req *r = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
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
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, srv_handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVER_MAX_CONNECTIONS,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVER_TIMEOUT_S,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
				srv_completed, s, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
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
	free(s->ready_detail);
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
	char *old;

	pthread_mutex_lock(&s->mu);
	old = s->secret;
	s->secret = secret && *secret ? xstrdup(secret) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (old)
		crypto_wipe(old, strlen(old));
	free(old);
}

void http_server_set_ready(struct http_server *s, int ready, const char *detail)
{
	pthread_mutex_lock(&s->mu);
	s->ready = ready;
	free(s->ready_detail);
	s->ready_detail = xstrdup(detail);
	pthread_mutex_unlock(&s->mu);
}
