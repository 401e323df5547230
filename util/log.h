/* Logging: one line per event on stderr, text for humans or one JSON object per line. */
#ifndef CS_UTIL_LOG_H
#define CS_UTIL_LOG_H

#include <stdio.h>

enum log_level { LV_ERROR, LV_WARN, LV_INFO, LV_DEBUG, LV__MAX };
enum log_format { LOGF_TEXT, LOGF_JSON, LOGF__MAX };

/* Context fields carried by a line; any may be NULL. Never put secrets here. */
struct log_ctx {
	const char *cert;
	const char *issuer;
	const char *step;
	const char *request_id;
};

/* Sets format, the most verbose level printed, and the stream (NULL = stderr). Thread-safe logging after. */
void log_setup(enum log_format fmt, enum log_level level, FILE *out);

/* Parses "text"/"json". 0 or CS_EINVALID. */
int log_parse_format(const char *s, enum log_format *out);

void log_emit(enum log_level lv, const struct log_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) log_emit(LV_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_emit(LV_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_emit(LV_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_emit(LV_DEBUG, NULL, __VA_ARGS__)

/* Registers a secret (util/redact.h): "[REDACTED]" in every later log line, error and state text. */
void log_add_secret(const char *secret);
void log_clear_secrets(void);

/* A copy of s with every registered secret replaced by "[REDACTED]" (for text shown outside the log). Caller frees. */
char *log_redacted(const char *s);

#endif
