/*
 * What drivers report beyond a code: the failure class of a provider's
 * answer (tied to the error message it came with), the log line of a failed
 * API call with the provider's request id, validate's per-issuer findings,
 * and account-level actions for plans.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/util.h"
#include "../provider.h"

#define FAIL_CLASS_MSG_MAX 512

/* The class of this thread's last provider failure and the message it was set with. */
static _Thread_local const char *fail_class;
static _Thread_local char fail_msg[FAIL_CLASS_MSG_MAX];

int provider_fail(const char *cls, int code)
{
	fail_class = cls;
	snprintf(fail_msg, sizeof(fail_msg), "%s", cs_errmsg());
	return code;
}

const char *provider_fail_class_take(void)
{
	const char *cls = fail_class;
	const char *msg = cs_errmsg();

	fail_class = NULL;
	/* Only while the error is still the provider's: a later local failure has its own class. */
	if (!cls || strncmp(msg, fail_msg, sizeof(fail_msg) - 1))
		return NULL;
	return cls;
}

int provider_http_fail_class(long status, int code)
{
	if (status == 401 || status == 403)
		return provider_fail(STATE_FAIL_CONFIG, code);
	if (status == 429 || status >= 500 || code == CS_ETRANSIENT)
		return provider_fail(STATE_FAIL_TRANSIENT, code);
	if (status >= 400 && status != 404)
		return provider_fail(STATE_FAIL_REJECTED, code);
	return code;
}

void provider_log_failure(const char *issuer, const char *request_id, long status, int quiet)
{
	struct log_ctx lc = {NULL, issuer, NULL, request_id};

	/* 404 often means "not there yet / already gone", which callers handle: debug only. */
	log_emit(quiet || status == 404 ? LV_DEBUG : LV_WARN, &lc, "%s", cs_errmsg());
}

/* ---------- validate's findings ---------- */

void provider_check_problem(struct provider_check *c, const char *fmt, ...)
{
	va_list ap;

	c->problems = xrealloc(c->problems, (c->n_problems + 1) * sizeof(*c->problems));
	va_start(ap, fmt);
	c->problems[c->n_problems++] = xvasprintf(fmt, ap);
	va_end(ap);
}

void provider_check_note(struct provider_check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	free(c->note);
	c->note = xvasprintf(fmt, ap);
	va_end(ap);
}

void provider_check_cred(struct provider_check *c, const struct cred *cr, const char *what)
{
	struct buf b = BUF_INIT;

	if (cr->kind == CRED_NONE)
		return;
	if (config_cred_read(cr, what, &b))
		provider_check_problem(c, "%s", cs_errmsg());
	buf_wipe(&b);
}

void provider_check_free(struct provider_check *c)
{
	for (size_t i = 0; i < c->n_problems; i++)
		free(c->problems[i]);
	free(c->problems);
	free(c->note);
	memset(c, 0, sizeof(*c));
}

void provider_account_line(char ***lines, size_t *n, const char *fmt, ...)
{
	va_list ap;

	*lines = xrealloc(*lines, (*n + 1) * sizeof(**lines));
	va_start(ap, fmt);
	(*lines)[(*n)++] = xvasprintf(fmt, ap);
	va_end(ap);
}

/* ---------- bounded error texts ---------- */

void provider_text_cut(char *out, size_t n)
{
	size_t pos;

	if (n < 4) {
		if (n)
			out[0] = '\0';
		return;
	}
	pos = n - 4;
	while (pos > 0 && ((unsigned char)out[pos] & 0xC0) == 0x80) /* never half a UTF-8 character */
		pos--;
	memcpy(out + pos, "\xe2\x80\xa6", 4);
}

void provider_text_append(char *out, size_t n, const char *sep, const char *text)
{
	size_t used = strlen(out);
	int w;

	if (used >= 3 && !strcmp(out + used - 3, "\xe2\x80\xa6"))
		return; /* already cut */
	w = snprintf(out + used, n - used, "%s%s", used ? sep : "", text);
	if (w < 0 || (size_t)w >= n - used)
		provider_text_cut(out, n);
}
