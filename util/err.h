/* Error codes and the per-thread last error message (libgit2's git_error_last model). */
#ifndef CS_UTIL_ERR_H
#define CS_UTIL_ERR_H

#include <stddef.h>

/*
 * Every fallible function returns 0 or one of these. Only CS_ETRANSIENT is
 * ever retried. The text is written once, where the error happens, with the
 * context only that place has; callers pass the code up unchanged.
 */
enum {
	CS_OK = 0,
	CS_ERROR = -1,	    /* anything else: I/O, library failure */
	CS_ENOTFOUND = -2,  /* the thing asked for does not exist */
	CS_EINVALID = -3,   /* bad input: file, response, argument */
	CS_ECONFLICT = -4,  /* stale plan, duplicate, wrong lineage */
	CS_EAUTH = -5,	    /* credentials refused by a provider */
	CS_ETRANSIENT = -6, /* try again later: timeout, 429, 5xx */
	CS_ELOCKED = -7,    /* another process holds the state lock */
	CS_EFENCED = -8,    /* lost the shared state's lease: a deposed leader neither writes nor calls providers */
};

/* Sets this thread's last error message and returns code (for `return cs_error(...)`). */
int cs_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's last error message; "" when none was set. Valid until the next cs_error(). */
const char *cs_errmsg(void);

/* Forgets this thread's last error message. */
void cs_error_clear(void);

/* A short name for a code ("invalid", "transient", ...), for logs and JSON. */
const char *cs_strcode(int code);

#endif
