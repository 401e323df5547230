/* The per-thread last error message behind cs_error(). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "redact.h"

static _Thread_local char last_msg[2048];

int cs_error(int code, const char *fmt, ...)
{
	char tmp[sizeof(last_msg)];
	va_list ap;

	/* Through a copy: callers prefix the previous message (cs_error(rc, "x: %s", cs_errmsg())). */
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* Every error text may end up in state, a plan or a PR comment: no credential gets that far. */
	redact_inplace(tmp, sizeof(tmp));
	memcpy(last_msg, tmp, sizeof(last_msg));
	return code;
}

const char *cs_errmsg(void)
{
	return last_msg;
}

void cs_error_clear(void)
{
	last_msg[0] = '\0';
}

const char *cs_strcode(int code)
{
	switch (code) {
	case CS_OK: return "ok";
	case CS_ENOTFOUND: return "not_found";
	case CS_EINVALID: return "invalid";
	case CS_ECONFLICT: return "conflict";
	case CS_EAUTH: return "auth";
	case CS_ETRANSIENT: return "transient";
	case CS_ELOCKED: return "locked";
	case CS_EFENCED: return "fenced";
	default: return "error";
	}
}
