/* The HTTP client: the only file that includes libcurl. */
#include "http.h"
#include "libversion.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crypto.h"
#include "err.h"
#include "util.h"

#define HTTP_POOL_MAX 64

struct http_client {
	struct http_client_opts o;
	char *user_agent, *ca_file;
	pthread_mutex_t mu;
	CURL *pool[HTTP_POOL_MAX];
	size_t n_pool;
	struct http_ratelimit rl; /* last seen, less the requests sent since (the budget left to spend) */
	long inflight;		  /* requests sent and not answered yet */
	struct http_client_stats stats;
	http_observer_fn observer;
	void *observer_arg;
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
/* The process-wide observer (the daemon's metrics): set once before any request. */
static http_global_observer_fn http_global_observer;
static void *http_global_observer_arg;
static __thread int (*http_send_hook)(void *);
static __thread void *http_send_hook_arg;
static __thread int64_t http_retry_at; /* see http_take_retry_at */

int64_t http_take_retry_at(void)
{
	int64_t t = http_retry_at;

	http_retry_at = 0;
	return t;
}

void http_set_send_hook(int (*fn)(void *arg), void *arg)
{
	http_send_hook = fn;
	http_send_hook_arg = arg;
}
/* Set by the daemon's SIGTERM: requests in flight end within about a second, nothing is retried. */
static volatile int *http_abort_flag;
/* The daemon's lease check: a request is sent only while it says yes. */
static int (*http_gate_fn)(void *);
static void *http_gate_arg;

void http_set_gate(int (*fn)(void *arg), void *arg)
{
	http_gate_arg = arg;
	__atomic_store_n(&http_gate_fn, fn, __ATOMIC_RELEASE);
}

/* CS_EFENCED (unsent) when the gate refuses. */
static int http_gate_check(const struct http_request *req)
{
	int (*fn)(void *) = __atomic_load_n(&http_gate_fn, __ATOMIC_ACQUIRE);

	if (fn && !fn(http_gate_arg))
		return cs_error(CS_EFENCED, "%s: not sent: this process no longer holds the state's lease", req->op);
	return 0;
}
static CURLcode http_init_rc;

static void http_global_init(void)
{
	http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int http_client_new(const struct http_client_opts *opts, struct http_client **out)
{
	struct http_client *c;

	pthread_once(&http_once, http_global_init);
	if (http_init_rc != CURLE_OK)
		return cs_error(CS_ERROR, "libcurl initialisation failed: %s", curl_easy_strerror(http_init_rc));
	c = xcalloc(1, sizeof(*c));
	if (opts)
		c->o = *opts;
	c->user_agent = xstrdup(c->o.user_agent ? c->o.user_agent : "certsync");
	c->ca_file = xstrdup(c->o.ca_file);
	if (!c->o.connect_timeout_ms)
		c->o.connect_timeout_ms = 10000;
	if (!c->o.timeout_ms)
		c->o.timeout_ms = 60000;
	if (!c->o.max_retries)
		c->o.max_retries = 4;
	if (c->o.max_retries < 0)
		c->o.max_retries = 0;
	if (!c->o.max_inline_wait)
		c->o.max_inline_wait = 30;
	if (!c->o.max_body)
		c->o.max_body = HTTP_MAX_BODY;
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	pthread_mutex_destroy(&c->mu);
	free(c->user_agent);
	free(c->ca_file);
	free(c);
}

void http_client_set_observer(struct http_client *c, http_observer_fn fn, void *arg)
{
	c->observer = fn;
	c->observer_arg = arg;
}

void http_set_abort_flag(volatile int *flag)
{
	http_abort_flag = flag;
}

static int http_aborted(void)
{
	return http_abort_flag && __atomic_load_n(http_abort_flag, __ATOMIC_RELAXED); /* set by a signal handler */
}

/* curl calls this about once a second even on a silent connection: a stop request ends the transfer. */
static int http_on_progress(void *p, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
	(void)p;
	(void)dlt;
	(void)dln;
	(void)ult;
	(void)uln;
	return http_aborted();
}

void http_set_global_observer(http_global_observer_fn fn, void *arg)
{
	http_global_observer = fn;
	http_global_observer_arg = arg;
}

void http_client_ratelimit(struct http_client *c, struct http_ratelimit *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->rl;
	pthread_mutex_unlock(&c->mu);
}

void http_client_stats(struct http_client *c, struct http_client_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->stats;
	out->inflight = c->inflight;
	pthread_mutex_unlock(&c->mu);
}

/* Counts a wait of secs seconds a request spent before it was sent (budget, Retry-After, backoff). */
static void http_count_wait(struct http_client *c, int64_t secs)
{
	pthread_mutex_lock(&c->mu);
	c->stats.waited_ms += secs * 1000;
	pthread_mutex_unlock(&c->mu);
}

static CURL *http_take(struct http_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->mu);
	if (c->n_pool)
		h = c->pool[--c->n_pool];
	pthread_mutex_unlock(&c->mu);
	return h ? h : curl_easy_init();
}

static void http_give(struct http_client *c, CURL *h)
{
	pthread_mutex_lock(&c->mu);
	if (c->n_pool < HTTP_POOL_MAX) {
		c->pool[c->n_pool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (h)
		curl_easy_cleanup(h);
}

static void http_headers_clear(struct http_response *res)
{
	for (size_t i = 0; i < res->n_headers; i++) {
		free(res->headers[i].name);
		free(res->headers[i].value);
	}
	free(res->headers);
	res->headers = NULL;
	res->n_headers = 0;
}

void http_response_free(struct http_response *res)
{
	buf_free(&res->body);
	free(res->content_type);
	free(res->request_id);
	res->content_type = res->request_id = NULL;
	http_headers_clear(res);
}

const char *http_response_header(const struct http_response *res, const char *name, size_t nth)
{
	for (size_t i = 0; i < res->n_headers; i++)
		if (!strcasecmp(res->headers[i].name, name) && nth-- == 0)
			return res->headers[i].value;
	return NULL;
}

/* Keeps a "Name: value" line in res->headers (bounded). */
static void http_keep_header(struct http_response *r, const char *p, size_t len)
{
	const char *colon = memchr(p, ':', len), *v, *e = p + len;
	struct http_header *h;

	if (!colon || colon == p || len > HTTP_MAX_HEADER_LEN || r->n_headers >= HTTP_MAX_RESPONSE_HEADERS)
		return;
	for (v = colon + 1; v < e && isspace((unsigned char)*v); v++)
		;
	while (e > v && isspace((unsigned char)e[-1]))
		e--;
	if (!r->n_headers)
		r->headers = xcalloc(HTTP_MAX_RESPONSE_HEADERS, sizeof(*r->headers));
	h = &r->headers[r->n_headers++];
	h->name = xstrndup(p, (size_t)(colon - p));
	for (char *q = h->name; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	h->value = xstrndup(v, (size_t)(e - v));
}

/* ---------- parsing ---------- */

int64_t http_parse_retry_after(const char *value, int64_t now)
{
	static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	char mon[4] = "", tz[4] = "";
	char *end;
	long long secs;
	int day, year, h, m, s;

	while (value && isspace((unsigned char)*value))
		value++;
	if (!value || !*value)
		return 0;
	if (isdigit((unsigned char)*value)) {
		secs = strtoll(value, &end, 10);
		while (isspace((unsigned char)*end))
			end++;
		if (*end || secs < 0 || secs > 30LL * 86400)
			return 0;
		return now + secs;
	}
	/* IMF-fixdate: "Mon, 01 Jun 2026 00:00:00 GMT" */
	if (sscanf(value, "%*3s, %d %3s %d %d:%d:%d %3s", &day, mon, &year, &h, &m, &s, tz) != 7 || strcmp(tz, "GMT"))
		return 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_mon = -1;
	for (int i = 0; i < 12; i++)
		if (!strcmp(mon, months[i]))
			tm.tm_mon = i;
	if (tm.tm_mon < 0 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60)
		return 0;
	tm.tm_mday = day;
	tm.tm_year = year - 1900;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = s;
	return (int64_t)timegm(&tm);
}

struct http_call {
	struct http_response *res;
	size_t max;
	int overflow;
	int fenced; /* the gate refused once the connection was made: nothing was sent */
};

/* Called by curl with the connection made, right before the request goes out: the gate's last word. */
static int http_on_prereq(void *arg, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	struct http_call *call = arg;
	int (*fn)(void *) = __atomic_load_n(&http_gate_fn, __ATOMIC_ACQUIRE);

	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	if (fn && !fn(http_gate_arg)) {
		call->fenced = 1;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static size_t http_on_body(char *p, size_t size, size_t n, void *arg)
{
	struct http_call *call = arg;
	size_t len = size * n;

	if (call->res->body.len + len > call->max) {
		call->overflow = 1;
		return 0;
	}
	buf_append(&call->res->body, p, len);
	return len;
}

/* "name: value" with the name matched case-insensitively: returns the trimmed value or NULL. */
static char *http_header_value(const char *line, size_t len, const char *name)
{
	size_t nl = strlen(name);
	const char *v, *e;

	if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
		return NULL;
	v = line + nl + 1;
	e = line + len;
	while (v < e && isspace((unsigned char)*v))
		v++;
	while (e > v && isspace((unsigned char)e[-1]))
		e--;
	return xstrndup(v, (size_t)(e - v));
}

static size_t http_on_header(char *p, size_t size, size_t n, void *arg)
{
	struct http_call *call = arg;
	struct http_response *r = call->res;
	size_t len = size * n;
	char *v;

	if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
		/* A new response (after 100 Continue): forget the previous headers. */
		free(r->content_type);
		free(r->request_id);
		r->content_type = r->request_id = NULL;
		memset(&r->rl, 0, sizeof(r->rl));
		r->retry_after = 0;
		http_headers_clear(r);
		return len;
	}
	http_keep_header(r, p, len);
	if ((v = http_header_value(p, len, "x-ratelimit-limit"))) {
		r->rl.limit = strtol(v, NULL, 10);
		r->rl.have = 1;
	} else if ((v = http_header_value(p, len, "x-ratelimit-remaining"))) {
		r->rl.remaining = strtol(v, NULL, 10);
		r->rl.have = 1;
	} else if ((v = http_header_value(p, len, "x-ratelimit-reset"))) {
		r->rl.reset = strtoll(v, NULL, 10);
	} else if ((v = http_header_value(p, len, "retry-after"))) {
		r->retry_after = http_parse_retry_after(v, util_now());
	} else if ((v = http_header_value(p, len, "content-type"))) {
		for (char *q = v; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		free(r->content_type);
		r->content_type = v;
		v = NULL;
	} else if ((v = http_header_value(p, len, "x-request-id"))) {
		free(r->request_id);
		r->request_id = v;
		v = NULL;
	}
	free(v);
	return len;
}

int http_is_html(const struct http_response *res)
{
	const char *b = res->body.data;

	if (res->content_type && strstr(res->content_type, "text/html"))
		return 1;
	while (b && isspace((unsigned char)*b))
		b++;
	return b && (!strncasecmp(b, "<!doctype html", 14) || !strncasecmp(b, "<html", 5));
}

/* The path of a URL (no scheme, host, credentials or query), for messages. */
static void http_url_path(const char *url, char *out, size_t n)
{
	const char *p = strstr(url, "://");
	size_t len;

	p = p ? strchr(p + 3, '/') : url;
	if (!p)
		p = "/";
	len = strcspn(p, "?#");
	snprintf(out, n, "%.*s", (int)len, p);
}

/* ---------- one attempt ---------- */

static CURLcode http_attempt(struct http_client *c, CURL *h, const struct http_request *req, struct http_response *res,
			     int *overflow, int *fenced)
{
	struct curl_slist *hdrs = NULL;
	struct http_call call = {res, c->o.max_body, 0, 0};
	CURLcode cc;

	curl_easy_reset(h);
	buf_free(&res->body);
	buf_init(&res->body, 0);
	free(res->content_type);
	free(res->request_id);
	res->content_type = res->request_id = NULL;
	http_headers_clear(res);
	memset(&res->rl, 0, sizeof(res->rl));
	res->retry_after = 0;
	res->status = 0;
	for (size_t i = 0; i < HTTP_MAX_HEADERS && req->headers[i]; i++)
		hdrs = curl_slist_append(hdrs, req->headers[i]);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->o.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->o.timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &call);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, http_on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &call);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, http_on_progress);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, http_abort_flag ? 0L : 1L);
	curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, http_on_prereq);
	curl_easy_setopt(h, CURLOPT_PREREQDATA, &call);
	if (!strcmp(req->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
		if (req->body || strcmp(req->method, "DELETE")) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(req->body ? req->body_len : 0));
		}
	}
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
	curl_slist_free_all(hdrs);
	*overflow = call.overflow;
	*fenced = call.fenced;
	if (!res->body.data)
		buf_append(&res->body, "", 0);
	return cc;
}

/* 1 if curl failed before the request could have reached the server. */
static int http_not_sent(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_RESOLVE_PROXY;
}

static int64_t http_backoff(int attempt)
{
	int64_t base = 1;
	unsigned char r = 0;

	for (int i = 0; i < attempt && base < 32; i++)
		base *= 2;
	crypto_random(&r, 1);
	return base + (base * r) / 512; /* + up to 50 % jitter */
}

/* Sleeps secs, in slices so that a stop request (http_set_abort_flag) cuts it short. */
static void http_sleep(int64_t secs)
{
	int64_t end = util_mono_ms() + secs * 1000;

	while (!http_aborted() && util_mono_ms() < end) {
		struct timespec ts = {0, 100 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
}

void http_request_json(struct http_request *req, const char *op, const char *method, const char *url, const char *auth,
		       const char *body, enum http_retry retry)
{
	size_t h = 0;

	memset(req, 0, sizeof(*req));
	req->op = op;
	req->method = method;
	req->url = url;
	if (auth)
		req->headers[h++] = auth;
	req->headers[h++] = "Accept: application/json";
	req->headers[h++] = "Content-Type: application/json";
	req->body = body;
	req->body_len = body ? strlen(body) : 0;
	req->retry = retry;
}

int http_do(struct http_client *c, const struct http_request *req, struct http_response *res)
{
	CURL *h = http_take(c);
	char path[512];
	int rc = 0, overflow = 0, fenced = 0;

	memset(res, 0, sizeof(*res));
	http_retry_at = 0;
	http_url_path(req->url, path, sizeof(path));
	if (!h)
		return cs_error(CS_ERROR, "%s: cannot create an HTTP handle", req->op);
	for (int attempt = 0;; attempt++) {
		int64_t t0 = util_mono_ms(), t_sent, now, wait;
		int transient, retryable, waited = attempt > 0;
		CURLcode cc;

		/*
		 * The provider said the budget is spent: wait for the window instead
		 * of earning a 429. Each request takes its unit of budget before it
		 * is sent, so parallel workers never overspend what is left.
		 */
		for (;;) {
			pthread_mutex_lock(&c->mu);
			now = util_now();
			wait = c->rl.have && c->rl.remaining <= 0 && c->rl.reset > now ? c->rl.reset - now : 0;
			if (!wait) {
				if (c->rl.have && c->rl.reset > now)
					c->rl.remaining--;
				c->inflight++;
			}
			pthread_mutex_unlock(&c->mu);
			if (!wait || wait > c->o.max_inline_wait || http_aborted())
				break;
			http_count_wait(c, wait);
			http_sleep(wait);
			waited = 1;
		}
		if (wait) {
			res->retry_after = now + wait;
			http_retry_at = res->retry_after; /* not sent */
			rc = cs_error(CS_ETRANSIENT, "%s: rate limit budget spent until the window resets in %llds",
				      req->op, (long long)wait);
			break;
		}
		if ((waited && http_send_hook && (rc = http_send_hook(http_send_hook_arg))) ||
		    (rc = http_gate_check(req))) {
			pthread_mutex_lock(&c->mu);
			c->inflight--;
			pthread_mutex_unlock(&c->mu);
			break;
		}
		res->attempts++;
		t_sent = util_mono_ms();
		cc = http_attempt(c, h, req, res, &overflow, &fenced);
		if (fenced) { /* refused by the gate on the connection, before a byte of the request */
			pthread_mutex_lock(&c->mu);
			c->inflight--;
			pthread_mutex_unlock(&c->mu);
			res->attempts--;
			rc = cs_error(CS_EFENCED, "%s: not sent: this process no longer holds the state's lease",
				      req->op);
			break;
		}
		now = util_now();
		if (c->observer)
			c->observer(c->observer_arg, req->op, cc == CURLE_OK ? res->status : 0, util_mono_ms() - t0);
		if (http_global_observer)
			http_global_observer(http_global_observer_arg, req->op, cc == CURLE_OK ? res->status : 0,
					     util_mono_ms() - t0, res->rl.have ? &res->rl : NULL);
		pthread_mutex_lock(&c->mu);
		c->inflight--;
		c->stats.answered++;
		c->stats.busy_ms += util_mono_ms() - t_sent;
		if (res->rl.have) {
			/*
			 * The answer counts this request; the others still in flight
			 * will spend theirs. Answers arrive out of order: within one
			 * window only a lower count is news.
			 */
			long left = res->rl.remaining - c->inflight;

			if (!c->rl.have || res->rl.reset > c->rl.reset) {
				c->rl = res->rl;
				c->rl.remaining = left;
			} else if (res->rl.reset == c->rl.reset && left < c->rl.remaining) {
				c->rl.remaining = left;
			}
			c->rl.limit = res->rl.limit;
		}
		pthread_mutex_unlock(&c->mu);
		if (overflow) {
			rc = cs_error(CS_EINVALID, "%s: %s %s: response larger than %zu bytes", req->op, req->method,
				      path, c->o.max_body);
			break;
		}
		transient = cc != CURLE_OK || res->status == 429 || res->status >= 500;
		if (!transient)
			break;
		retryable = req->retry == HTTP_RETRY_SAFE || http_not_sent(cc) || res->status == 429;
		if (cc != CURLE_OK)
			rc = cs_error(CS_ETRANSIENT, "%s: %s %s: %s", req->op, req->method, path,
				      curl_easy_strerror(cc));
		else if (http_is_html(res))
			rc = cs_error(CS_ETRANSIENT, "%s: %s %s: HTTP %ld (HTML error page)", req->op, req->method,
				      path, res->status);
		else
			rc = cs_error(CS_ETRANSIENT, "%s: %s %s: HTTP %ld%s%.200s", req->op, req->method, path,
				      res->status, res->body.len ? ": " : "", res->body.len ? res->body.data : "");
		if (!retryable || attempt >= c->o.max_retries || http_aborted())
			break;
		if (res->retry_after > now)
			wait = res->retry_after - now;
		else if (res->status == 429 && res->rl.have && res->rl.remaining <= 0 && res->rl.reset > now)
			wait = res->rl.reset - now;
		else
			wait = http_backoff(attempt);
		if (wait > c->o.max_inline_wait) {
			res->retry_after = now + wait;
			if (res->status == 429)
				http_retry_at = res->retry_after; /* refused unprocessed: safe to send again then */
			break;
		}
		http_count_wait(c, wait);
		http_sleep(wait);
		if (http_aborted())
			break;
		rc = 0;
	}
	if (rc == CS_ETRANSIENT && !res->retry_after)
		res->retry_after = util_now() + http_backoff(res->attempts);
	http_give(c, h);
	return rc;
}

void libversion_curl(char *out, size_t n)
{
	snprintf(out, n, "libcurl %s", curl_version_info(CURLVERSION_NOW)->version);
}
