/*
 * Secret redaction: every resolved credential (API tokens and keys, the
 * webhook secret, the git token) is registered here when it is read, and
 * every text that is stored or printed (error messages, state last_error,
 * log lines, plan warnings) passes through redact_*() first. Credential-
 * shaped text ("Bearer …", "Authorization: …", "X-DC-DEVKEY: …") is
 * redacted even when its value was never registered (a provider quoting a
 * header back in an error body).
 */
#ifndef CS_UTIL_REDACT_H
#define CS_UTIL_REDACT_H

#include <stddef.h>

#define REDACT_MARK "[REDACTED]"
#define REDACT_MAX_SECRETS 64
#define REDACT_MIN_LEN 4      /* shorter registered values are not secrets worth a global replace */
#define REDACT_PART_MIN 10    /* a part of a registered secret this long is redacted too (any case) */
#define REDACT_WORD_MIN_LEN 6 /* after "Bearer": a shorter word is prose ("bearer of"), not a credential */

/* Registers a secret (copied; wiped on redact_clear). NULL, short and duplicate values are ignored. Thread-safe. */
void redact_add(const char *secret);

/* Forgets every registered secret (wiping the copies). */
void redact_clear(void);

/* A redacted copy of s (caller frees); NULL for NULL. */
char *redact_dup(const char *s);

/*
 * Redacts s in place within its buffer of cap bytes (the result is cut to
 * fit, always terminated). For fixed buffers such as the last error message.
 */
void redact_inplace(char *s, size_t cap);

#endif
