/* Small helpers every module needs: allocation that cannot fail, strings, time, durations. */
#ifndef CS_UTIL_UTIL_H
#define CS_UTIL_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation that aborts on out-of-memory (git's xmalloc): callers never check. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s); /* xstrdup(NULL) == NULL */
/* At most n bytes of s, stopping at a NUL (as strndup). */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* Grows *v (element size `size`) so that it holds at least `need` elements. */
void util_grow(void *vp, size_t *cap, size_t need, size_t size);

int util_streq(const char *a, const char *b); /* NULL-safe; two NULLs are equal */
int util_has_suffix(const char *s, const char *suffix);

/* Current time: wall clock seconds, and monotonic milliseconds. */
int64_t util_now(void);
int64_t util_mono_ms(void);

/* Formats t (UTC) as RFC 3339 "2026-11-23T05:31:03Z" into out (>= 21 bytes). */
void util_fmt_time(int64_t t, char out[32]);

/* Parses RFC 3339 UTC ("...Z" or "+00:00", fractional seconds allowed). 0 or CS_EINVALID. */
int util_parse_time(const char *s, int64_t *out);

/*
 * Parses a duration: Go syntax ("720h", "1h30m", "90s", "720h0m0s") plus days
 * ("30d"). Result in seconds, > 0. Returns 0 or CS_EINVALID (message set).
 */
int util_parse_duration(const char *s, int64_t *out);

/* Formats seconds as the shortest of "30d", "12h", "90m", "45s" (or combos "1h30m"). */
void util_fmt_duration(int64_t s, char out[32]);

/* Levenshtein distance, capped; used for "did you mean" suggestions. */
size_t util_edit_distance(const char *a, const char *b);

/*
 * Binary search of key in base[0..n), elements of `size` bytes sorted by
 * strcmp of their FIRST member, a char * (a name). Returns key's index, or
 * the index where it would go; *found says which.
 */
size_t util_bsearch_name(const void *base, size_t n, size_t size, const char *key, int *found);

/* FNV-1a 64-bit hash of len bytes, and of a NUL-terminated string (hash tables). */
uint64_t util_hash_mem(const void *p, size_t len);
uint64_t util_hash_str(const char *s);

/* qsort/bsearch comparator for an array of pointers, by address. */
int util_ptr_cmp(const void *a, const void *b);

/*
 * MurmurHash3's finaliser: every bit of h moves every bit of the result.
 * util_hash_str's low bits follow the last characters weakly: keys that
 * differ only there ("team-3/cert-00051", "team-3/cert-00052") cluster
 * when a table takes h & mask; mix first. (util_hash_str itself stays as
 * it is: its values name advisory locks other processes compute too.)
 */
uint64_t util_hash_mix(uint64_t h);

/* The running program's GNU build id in hex (changes with any change to the code), NULL if it has none. */
const char *util_build_id(void);

#endif
