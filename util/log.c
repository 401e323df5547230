/* One line per event on stderr: text for humans, or one JSON object per line. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "redact.h"
#include "util.h"

static struct {
	pthread_mutex_t mu;
	enum log_format fmt;
	enum log_level level;
	FILE *out;
} logger = {PTHREAD_MUTEX_INITIALIZER, LOGF_TEXT, LV_INFO, NULL};

static const char *const level_names[LV__MAX] = {"error", "warn", "info", "debug"};

void log_setup(enum log_format fmt, enum log_level level, FILE *out)
{
	pthread_mutex_lock(&logger.mu);
	logger.fmt = fmt;
	logger.level = level;
	logger.out = out;
	pthread_mutex_unlock(&logger.mu);
}

int log_parse_format(const char *s, enum log_format *out)
{
	if (util_streq(s, "text"))
		*out = LOGF_TEXT;
	else if (util_streq(s, "json"))
		*out = LOGF_JSON;
	else
		return cs_error(CS_EINVALID, "unknown log format \"%s\" (text, json)", s ? s : "");
	return 0;
}

void log_add_secret(const char *secret)
{
	redact_add(secret);
}

void log_clear_secrets(void)
{
	redact_clear();
}

/* Replaces registered secrets and credential-shaped text in s (which it frees). */
static char *log_redact(char *s)
{
	char *r = redact_dup(s);

	free(s);
	return r;
}

static void log_field(struct buf *b, const char *key, const char *val)
{
	if (!val)
		return;
	buf_printf(b, ",\"%s\":", key);
	buf_json_str(b, val);
}

void log_emit(enum log_level lv, const struct log_ctx *ctx, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	char ts[32], *msg;
	va_list ap;
	FILE *out;

	if (lv > logger.level)
		return;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	msg = log_redact(msg);
	util_fmt_time(util_now(), ts);
	pthread_mutex_lock(&logger.mu);
	out = logger.out ? logger.out : stderr;
	if (logger.fmt == LOGF_JSON) {
		buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"message\":", ts, level_names[lv]);
		buf_json_str(&b, msg);
		if (ctx) {
			log_field(&b, "certificate", ctx->cert);
			log_field(&b, "issuer", ctx->issuer);
			log_field(&b, "step", ctx->step);
			log_field(&b, "request_id", ctx->request_id);
		}
		buf_puts(&b, "}\n");
	} else {
		buf_printf(&b, "%s %-5s ", ts, level_names[lv]);
		if (ctx && ctx->cert)
			buf_printf(&b, "[%s] ", ctx->cert);
		buf_puts(&b, msg);
		if (ctx && ctx->step)
			buf_printf(&b, " (step %s)", ctx->step);
		if (ctx && ctx->request_id)
			buf_printf(&b, " (request %s)", ctx->request_id);
		buf_puts(&b, "\n");
	}
	fputs(b.data, out);
	fflush(out);
	pthread_mutex_unlock(&logger.mu);
	buf_free(&b);
	free(msg);
}

char *log_redacted(const char *s)
{
	char *out = xstrdup(s ? s : "");

	pthread_mutex_lock(&logger.mu);
	out = log_redact(out);
	pthread_mutex_unlock(&logger.mu);
	return out;
}
