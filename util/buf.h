/* Growable, bounded byte buffers: every external input is read into one of these. */
#ifndef CS_UTIL_BUF_H
#define CS_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data; /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
	size_t max; /* 0 = unbounded (our own output); inputs always set a cap */
};

#define BUF_INIT                                                                                                       \
	{                                                                                                              \
		NULL, 0, 0, 0                                                                                          \
	}

/* Empties b and sets its cap (0 = unbounded). */
void buf_init(struct buf *b, size_t max);

/* Appends n bytes. CS_EINVALID (message "exceeds N bytes") past b->max. */
/* Makes room for extra more bytes (and the NUL); CS_EINVALID past max. */
int buf_reserve(struct buf *b, size_t extra);

int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);

/* Appends s as a JSON string literal, quotes included. */
void buf_json_str(struct buf *b, const char *s);

/* Resets the length to 0 keeping the allocation. */
void buf_clear(struct buf *b);

/* Takes the data out (caller frees); b is empty afterwards. Never NULL. */
char *buf_detach(struct buf *b);

/* Frees the data. buf_wipe() first overwrites it: use it for secrets. */
void buf_free(struct buf *b);
void buf_wipe(struct buf *b);

#endif
