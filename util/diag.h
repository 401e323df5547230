/* Diagnostics for files users write: "file:line:col: message", all of them, in order. */
#ifndef CS_UTIL_DIAG_H
#define CS_UTIL_DIAG_H

#include <stdio.h>
#include <stddef.h>

struct diag {
	char *file;
	int line; /* 1-based; 0 = whole file */
	int col;  /* 1-based; 0 = whole line */
	char *msg;
};

struct diags {
	struct diag *v;
	size_t n, cap;
};

#define DIAGS_INIT                                                                                                     \
	{                                                                                                              \
		NULL, 0, 0                                                                                             \
	}

void diags_add(struct diags *d, const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Sorts by file, line, column (stable for equal positions). */
void diags_sort(struct diags *d);

/*
 * s with control characters made visible (\n, \r, \t, \x1b, \u009b; bytes that
 * are not UTF-8 as \xNN), for file names from a repository and messages that
 * quote them (caller frees).
 */
char *diag_escape(const char *s);

/* Formats one as "file:line:col: msg" (omitting :0 parts; both escaped as diag_escape does; caller frees). */
char *diag_format(const struct diag *g);

/* Prints every diagnostic, one per line. */
void diags_print(const struct diags *d, FILE *out);

/* Moves all of src's diagnostics onto the end of dst. */
void diags_move(struct diags *dst, struct diags *src);

void diags_free(struct diags *d);

#endif
