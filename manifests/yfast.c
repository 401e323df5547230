/*
 * A fast reader for the YAML that manifests are in practice: block maps and
 * lists indented with spaces, one-line flow lists and maps, plain and
 * one-line quoted scalars without escapes, comments. libyaml spends ~40 ms
 * per MB on its own; this is several times faster, which is what lets
 * 10,000 certificates load in well under the plan budget.
 *
 * The contract is all or nothing: either the whole file is inside the
 * subset and the tree is exactly the one libyaml gives (same nodes, text,
 * quoting and line:col; the unit test compares the two on the corpus and on
 * thousands of mutations of it), or nothing is returned and yaml.c hands
 * the file to libyaml, which also writes every diagnostic. So any doubt
 * (a tab, a non-ASCII byte, an anchor, a tag, an empty value, a scalar over
 * two lines, a '#' inside a word...) is a bail-out, never a guess.
 */
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "internal.h"

#define FAST_MAX_KEY 1000 /* libyaml's simple keys stop at 1024 characters */

enum { L_BLANK, L_DOC, L_CONTENT };

struct fline {
	const char *s; /* the line, without its '\n' */
	int len;
	int indent; /* leading spaces */
	int kind;
};

struct yfast {
	struct yfile *f;
	struct fline *lines;
	size_t n_lines, li;   /* li: the line being read */
	struct ynode **stack; /* children of the open collections */
	size_t n_stack, cap_stack;
	int depth;
};

/* Characters ---------------------------------------------------------------- */

static int is_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A plain scalar may start here (a safe subset of what libyaml allows). */
static int plain_start(const struct fline *l, int c)
{
	int ch = l->s[c], next = c + 1 < l->len ? l->s[c + 1] : 0;

	if (is_alnum(ch) || ch == '.' || ch == '_' || ch == '/' || ch == '~' || ch == '+')
		return 1;
	return ch == '-' && (is_alnum(next) || next == '.');
}

static int key_char(int c)
{
	return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '/';
}

static int skip_spaces(const struct fline *l, int c)
{
	while (c < l->len && l->s[c] == ' ')
		c++;
	return c;
}

/* Nothing but spaces and maybe a comment from c on (a comment needs a space before it). */
static int rest_is_empty(const struct fline *l, int c)
{
	int k = skip_spaces(l, c);

	return k >= l->len || (l->s[k] == '#' && k > c);
}

/* Lines --------------------------------------------------------------------- */

/* Splits the text into classified lines; 0 if a byte or a line is outside the subset. */
static int fast_lines(struct yfast *y, const char *data, size_t len)
{
	size_t cap = 0;

	if (len > MANIFEST_MAX_FILE_BYTES)
		return 0; /* line lengths are ints */
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)data[i];

		if (b >= 0x80 || b == '\r' || b == '\t')
			return 0;
	}
	for (const char *p = data, *end = data + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		struct fline l;

		l.s = p;
		l.len = (int)((nl ? nl : end) - p);
		l.indent = 0;
		while (l.indent < l.len && p[l.indent] == ' ')
			l.indent++;
		if (l.indent == l.len || p[l.indent] == '#') {
			l.kind = L_BLANK;
		} else if (l.indent == 0 && l.len >= 3 && !memcmp(p, "---", 3) && (l.len == 3 || p[3] == ' ')) {
			if (!rest_is_empty(&l, 3))
				return 0; /* content after "---" */
			l.kind = L_DOC;
		} else if (l.indent == 0 && (p[0] == '%' || (l.len >= 3 && !memcmp(p, "...", 3)))) {
			return 0; /* directives and document end markers */
		} else {
			l.kind = L_CONTENT;
		}
		util_grow(&y->lines, &cap, y->n_lines + 1, sizeof(*y->lines));
		y->lines[y->n_lines++] = l;
		if (!nl)
			break;
		p = nl + 1;
	}
	return 1;
}

/* The next line that is not blank or a comment, from y->li on (y->li moves there); NULL at the end. */
static const struct fline *fast_peek(struct yfast *y)
{
	while (y->li < y->n_lines && y->lines[y->li].kind == L_BLANK)
		y->li++;
	return y->li < y->n_lines ? &y->lines[y->li] : NULL;
}

/* A block list entry: "-" then a space or the end of the line. */
static int is_entry(const struct fline *l)
{
	int c = l->indent;

	return l->s[c] == '-' && (c + 1 == l->len || l->s[c + 1] == ' ');
}

/* Nodes --------------------------------------------------------------------- */

static struct ynode *fast_scalar(struct yfast *y, int col, const char *s, size_t len, int quoted)
{
	return ytree_scalar(y->f, (int)y->li + 1, col + 1, s, len, quoted);
}

static void fast_push(struct yfast *y, struct ynode *n)
{
	util_grow(&y->stack, &y->cap_stack, y->n_stack + 1, sizeof(*y->stack));
	y->stack[y->n_stack++] = n;
}

/* Opens a collection at column col of the current line; NULL past the depth limit. */
static struct ynode *fast_open(struct yfast *y, enum ynode_type t, int col, size_t *base)
{
	if (y->depth >= MANIFEST_MAX_DEPTH)
		return NULL;
	y->depth++;
	*base = y->n_stack;
	return ytree_collection(y->f, t, (int)y->li + 1, col + 1);
}

static void fast_close(struct yfast *y, struct ynode *n, size_t base)
{
	/* no arithmetic on a NULL stack: an empty first collection has none yet */
	ytree_set_children(y->f, n, y->n_stack > base ? y->stack + base : NULL, y->n_stack - base);
	y->n_stack = base;
	y->depth--;
}

/*
 * A quoted scalar on one line at l->s[*c] ('"' without backslashes, or '\''
 * with '' for a quote). *c moves past the closing quote. 0 or -1.
 */
static int fast_quoted(struct yfast *y, const struct fline *l, int *c, struct ynode **out)
{
	char q = l->s[*c];
	int k = *c + 1, doubled = 0;

	for (; k < l->len; k++) {
		if (q == '"' && l->s[k] == '\\')
			return -1;
		if (l->s[k] == q) {
			if (q == '\'' && k + 1 < l->len && l->s[k + 1] == '\'') {
				doubled = 1;
				k++;
				continue;
			}
			break;
		}
	}
	if (k >= l->len)
		return -1; /* goes on to the next line */
	if (!doubled) {
		*out = fast_scalar(y, *c, l->s + *c + 1, (size_t)(k - *c - 1), 1);
	} else {
		char *v = xmalloc((size_t)(k - *c));
		size_t n = 0;

		for (int i = *c + 1; i < k; i++) {
			v[n++] = l->s[i];
			if (l->s[i] == '\'')
				i++;
		}
		*out = fast_scalar(y, *c, v, n, 1);
		free(v);
	}
	*c = k + 1;
	return 0;
}

/*
 * A key at column c: a plain word of [A-Za-z0-9._/-] or a one-line quoted
 * scalar, then ':' and a space or the end of the line. *after is the
 * column after the ':'. 0, or -1 if there is no such key (nothing allocated
 * when check_only).
 */
static int fast_key(struct yfast *y, const struct fline *l, int c, int check_only, struct ynode **out, int *after)
{
	int e = c;

	if (c >= l->len)
		return -1;
	if (l->s[c] == '"' || l->s[c] == '\'') {
		char q = l->s[c];

		for (e = c + 1; e < l->len && l->s[e] != q && l->s[e] != '\\'; e++)
			;
		if (e >= l->len || l->s[e] != q || e + 1 >= l->len || l->s[e + 1] != ':')
			return -1;
		e++;
	} else {
		if (!plain_start(l, c) || l->s[c] == '-' || l->s[c] == '~' || l->s[c] == '+')
			return -1;
		while (e < l->len && key_char(l->s[e]))
			e++;
		if (e >= l->len || l->s[e] != ':')
			return -1;
		if (e - c == 4 &&
		    (!memcmp(l->s + c, "null", 4) || !memcmp(l->s + c, "Null", 4) || !memcmp(l->s + c, "NULL", 4)))
			return -1; /* a null key: libyaml's reader reports it */
	}
	if (e - c > FAST_MAX_KEY || (e + 1 < l->len && l->s[e + 1] != ' '))
		return -1;
	*after = e + 1;
	if (check_only)
		return 0;
	if (l->s[c] == '"' || l->s[c] == '\'')
		*out = fast_scalar(y, c, l->s + c + 1, (size_t)(e - c - 2), 1);
	else
		*out = fast_scalar(y, c, l->s + c, (size_t)(e - c), 0);
	return 0;
}

/* A plain scalar in block context from column c to the end of the line (or a comment). */
static int fast_plain_block(struct yfast *y, const struct fline *l, int c, struct ynode **out)
{
	int e = c, end = c;

	if (!plain_start(l, c))
		return -1;
	while (e < l->len) {
		char ch = l->s[e];

		if (ch == ' ') {
			int k = skip_spaces(l, e);

			if (k >= l->len || l->s[k] == '#')
				break;
			e = k;
			continue;
		}
		if (ch == '#' || (ch == ':' && (e + 1 >= l->len || l->s[e + 1] == ' ')))
			return -1;
		end = ++e;
	}
	*out = fast_scalar(y, c, l->s + c, (size_t)(end - c), 0);
	return 0;
}

/* A plain scalar inside a flow collection: ends before ',', ']' or '}' (trailing spaces dropped). */
static int fast_plain_flow(struct yfast *y, const struct fline *l, int *c, struct ynode **out)
{
	int e = *c, end = *c;

	if (!plain_start(l, *c))
		return -1;
	while (e < l->len) {
		char ch = l->s[e];

		if (ch == ' ') {
			e = skip_spaces(l, e);
			continue;
		}
		if (ch == ',' || ch == ']' || ch == '}')
			break;
		if (ch == '#' || ch == ':' || ch == '[' || ch == '{')
			return -1;
		end = ++e;
	}
	if (e >= l->len)
		return -1; /* the collection goes on to the next line */
	*out = fast_scalar(y, *c, l->s + *c, (size_t)(end - *c), 0);
	*c = end;
	return 0;
}

static int fast_flow(struct yfast *y, const struct fline *l, int *c, struct ynode **out);

static int fast_flow_item(struct yfast *y, const struct fline *l, int *c, struct ynode **out)
{
	char ch = l->s[*c];

	if (ch == '[' || ch == '{')
		return fast_flow(y, l, c, out);
	if (ch == '"' || ch == '\'')
		return fast_quoted(y, l, c, out);
	return fast_plain_flow(y, l, c, out);
}

/* A flow list or map that ends on this line, at l->s[*c]; *c moves past its closing bracket. */
static int fast_flow(struct yfast *y, const struct fline *l, int *c, struct ynode **out)
{
	int is_map = l->s[*c] == '{', k;
	char close = is_map ? '}' : ']';
	size_t base;
	struct ynode *n = fast_open(y, is_map ? YNODE_MAP : YNODE_SEQ, *c, &base), *v;

	if (!n)
		return -1;
	k = skip_spaces(l, *c + 1);
	if (k < l->len && l->s[k] == close) {
		*c = k + 1;
		fast_close(y, n, base);
		*out = n;
		return 0;
	}
	for (;;) {
		if (k >= l->len)
			return -1;
		if (is_map) {
			if (fast_key(y, l, k, 0, &v, &k) || k >= l->len)
				return -1;
			fast_push(y, v);
			k = skip_spaces(l, k);
			if (k >= l->len || l->s[k] == ',' || l->s[k] == close)
				return -1; /* an empty value */
		}
		if (fast_flow_item(y, l, &k, &v))
			return -1;
		fast_push(y, v);
		k = skip_spaces(l, k);
		if (k >= l->len)
			return -1;
		if (l->s[k] == close)
			break;
		if (l->s[k] != ',')
			return -1;
		k = skip_spaces(l, k + 1);
		if (k >= l->len || l->s[k] == close || l->s[k] == ',')
			return -1; /* a trailing or doubled comma */
	}
	*c = k + 1;
	fast_close(y, n, base);
	*out = n;
	return 0;
}

/* A value that starts at column c of the current line and ends with it. Moves to the next line. */
static int fast_inline(struct yfast *y, int c, struct ynode **out)
{
	const struct fline *l = &y->lines[y->li];
	char ch = l->s[c];
	int rc;

	if (ch == '[' || ch == '{' || ch == '"' || ch == '\'') {
		rc = ch == '[' || ch == '{' ? fast_flow(y, l, &c, out) : fast_quoted(y, l, &c, out);
		if (rc || !rest_is_empty(l, c))
			return -1;
	} else if (fast_plain_block(y, l, c, out)) {
		return -1;
	}
	y->li++;
	return 0;
}

static int fast_block(struct yfast *y, struct ynode **out);
static int fast_map(struct yfast *y, int indent, struct ynode **out);

/* A block list whose entries are at column indent, starting on the current line. */
static int fast_seq(struct yfast *y, int indent, struct ynode **out)
{
	size_t base;
	struct ynode *n = fast_open(y, YNODE_SEQ, indent, &base), *item;
	const struct fline *l;

	if (!n)
		return -1;
	for (;;) {
		int c, after;

		l = &y->lines[y->li];
		c = skip_spaces(l, indent + 1);
		if (c == indent + 1 || c >= l->len || l->s[c] == '#')
			return -1; /* "-" alone: the entry is on the next lines, or empty */
		if (l->s[c] == '-')
			return -1; /* "- - x" */
		if (!fast_key(y, l, c, 1, NULL, &after)) {
			if (fast_map(y, c, &item))
				return -1;
		} else if (fast_inline(y, c, &item)) {
			return -1;
		}
		fast_push(y, item);
		l = fast_peek(y);
		if (!l || l->kind == L_DOC || l->indent < indent)
			break;
		if (l->indent > indent)
			return -1;
		if (!is_entry(l))
			break; /* an indentless list ends where its map goes on */
	}
	fast_close(y, n, base);
	*out = n;
	return 0;
}

/* The value of a key whose line ended after the ':': a block on the next lines. */
static int fast_value_below(struct yfast *y, int indent, struct ynode **out)
{
	const struct fline *l;

	y->li++;
	l = fast_peek(y);
	if (!l || l->kind == L_DOC)
		return -1; /* an empty value */
	if (l->indent > indent)
		return fast_block(y, out);
	if (l->indent == indent && is_entry(l))
		return fast_seq(y, indent, out); /* "key:\n- a" */
	return -1;
}

/* A block map whose keys are at column indent; the first key is on the current line. */
static int fast_map(struct yfast *y, int indent, struct ynode **out)
{
	size_t base;
	struct ynode *n = fast_open(y, YNODE_MAP, indent, &base), *k, *v;
	const struct fline *l;

	if (!n)
		return -1;
	for (;;) {
		int c;

		l = &y->lines[y->li];
		if (fast_key(y, l, indent, 0, &k, &c))
			return -1;
		fast_push(y, k);
		if (rest_is_empty(l, c)) {
			if (fast_value_below(y, indent, &v))
				return -1;
		} else if (fast_inline(y, skip_spaces(l, c), &v)) {
			return -1;
		}
		fast_push(y, v);
		l = fast_peek(y);
		if (!l || l->kind == L_DOC || l->indent < indent)
			break;
		if (l->indent > indent || is_entry(l))
			return -1;
	}
	fast_close(y, n, base);
	*out = n;
	return 0;
}

/* The block node that starts the current line (at its indentation). */
static int fast_block(struct yfast *y, struct ynode **out)
{
	const struct fline *l = &y->lines[y->li];

	if (is_entry(l))
		return fast_seq(y, l->indent, out);
	return fast_map(y, l->indent, out);
}

/* Documents ------------------------------------------------------------------ */

static int fast_stream(struct yfast *y)
{
	const struct fline *l = fast_peek(y);
	struct ynode *root;

	if (l && l->kind == L_CONTENT) {
		/* an implicit first document starts where its content does */
		ytree_doc_add(y->f, (int)y->li + 1, l->indent + 1);
		if (fast_block(y, &root))
			return -1;
		y->f->docs[y->f->n_docs - 1].root = root;
		l = fast_peek(y);
	}
	while (l) {
		if (l->kind != L_DOC || y->f->n_docs >= MANIFEST_MAX_DOCS)
			return -1;
		ytree_doc_add(y->f, (int)y->li + 1, 1);
		y->li++;
		l = fast_peek(y);
		if (!l || l->kind == L_DOC)
			continue; /* an empty document */
		if (fast_block(y, &root))
			return -1;
		y->f->docs[y->f->n_docs - 1].root = root;
		l = fast_peek(y);
	}
	return 0;
}

int manifest_yfast_parse(const char *path, const char *data, size_t len, struct yfile **out)
{
	struct yfast y;
	int ok;

	memset(&y, 0, sizeof(y));
	ok = fast_lines(&y, data, len);
	if (ok) {
		y.f = ytree_file_new(path);
		ok = fast_stream(&y) == 0;
		if (!ok)
			manifest_yaml_free(y.f);
	}
	free(y.lines);
	free(y.stack);
	if (ok)
		*out = y.f;
	return ok;
}
