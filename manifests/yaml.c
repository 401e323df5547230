/*
 * YAML → node trees with positions: the one owner of libyaml (event API,
 * streaming). Size, UTF-8, anchors/aliases, tags and nesting are enforced
 * here so every caller (manifests and the config) gets the same guarantees.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../util/err.h"
#include "../util/libversion.h"
#include "../util/util.h"
#include "internal.h"

#define CORE_TAG "tag:yaml.org,2002:"

static int yaml_fast = 1;

void manifest_yaml_set_fast(int on)
{
	yaml_fast = on;
}

/* ---------- the text itself ---------- */

/* Length of the line break at p (CR LF, CR, LF, NEL, LS, PS: libyaml's set), 0 if none. */
static size_t text_break(const unsigned char *p, const unsigned char *end)
{
	if (*p == '\n')
		return 1;
	if (*p == '\r')
		return p + 1 < end && p[1] == '\n' ? 2 : 1;
	if (*p == 0xc2 && p + 1 < end && p[1] == 0x85)
		return 2;
	if (*p == 0xe2 && p + 2 < end && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
		return 3;
	return 0;
}

/* Decodes one UTF-8 sequence at p: its length, or 0 if it is not valid UTF-8. */
static size_t text_decode(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
	static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
	size_t need;
	uint32_t v;

	if (*p < 0x80) {
		*cp = *p;
		return 1;
	}
	if ((*p & 0xe0) == 0xc0)
		need = 1, v = *p & 0x1f;
	else if ((*p & 0xf0) == 0xe0)
		need = 2, v = *p & 0x0f;
	else if ((*p & 0xf8) == 0xf0)
		need = 3, v = *p & 0x07;
	else
		return 0;
	if ((size_t)(end - p) <= need)
		return 0;
	for (size_t i = 1; i <= need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3f);
	}
	if (v < min[need] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return need + 1;
}

/* What libyaml's reader accepts (YAML's c-printable), minus a byte order mark past the start. */
static int text_printable(uint32_t c)
{
	return c == 0x09 || c == 0x0a || c == 0x0d || (c >= 0x20 && c <= 0x7e) || c == 0x85 ||
	       (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd && c != 0xfeff) ||
	       (c >= 0x10000 && c <= 0x10ffff);
}

/*
 * Walks the text counting lines and columns exactly as libyaml does
 * (columns in characters, a leading BOM not counted). Stops at byte offset
 * `stop`, or at the first invalid sequence when `stop` is past the end.
 * Returns 0 when it got there, or the byte offset + 1 of the bad sequence.
 */
static size_t text_walk(const char *data, size_t len, size_t stop, int *line, int *col)
{
	const unsigned char *s = (const unsigned char *)data, *p = s, *end = s + len;
	int l = 1, c = 1;

	if (len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3))
		p += 3;
	while (p < end && (size_t)(p - s) < stop) {
		size_t br, n;
		uint32_t cp;

		if ((*p >= 0x20 && *p < 0x7f) || *p == '\t') {
			p++; /* the common case first */
			c++;
			continue;
		}
		if ((br = text_break(p, end))) {
			p += br;
			l++;
			c = 1;
			continue;
		}
		if (!(n = text_decode(p, end, &cp)) || !text_printable(cp)) {
			*line = l;
			*col = c;
			return (size_t)(p - s) + 1;
		}
		p += n;
		c++;
	}
	*line = l;
	*col = c;
	return 0;
}

int manifest_text_check(const char *path, const char *data, size_t len, struct diags *d)
{
	const unsigned char *s = (const unsigned char *)data;
	int line, col;
	size_t bad = text_walk(data, len, (size_t)-1, &line, &col);
	uint32_t cp;

	if (!bad)
		return 0;
	bad--;
	if (!text_decode(s + bad, s + len, &cp))
		diags_add(d, path, line, col, "invalid UTF-8 (byte 0x%02x)", s[bad]);
	else if (cp == 0xfeff)
		diags_add(d, path, line, col, "a byte order mark (U+FEFF) is only allowed at the start of the file");
	else
		diags_add(d, path, line, col, "control character U+%04X is not allowed", (unsigned)cp);
	return 1;
}

/* ---------- libyaml ---------- */

struct ylib {
	const char *path;
	const char *data;
	size_t len;
	struct diags *d;
	struct yfile *f;
	yaml_parser_t p;
	struct ynode **stack; /* children of the open collections */
	size_t n_stack, cap_stack;
	int depth;
	int doc_bad; /* the current document had a problem: it yields no tree */
};

static void ylib_diag_at(struct ylib *y, const yaml_mark_t *m, const char *msg)
{
	diags_add(y->d, y->path, (int)m->line + 1, (int)m->column + 1, "%s", msg);
	y->doc_bad = 1;
}

/* The byte at line:col (1-based, libyaml's counting), or -1 past the end. */
static int ylib_byte_at(const struct ylib *y, int line, int col)
{
	const unsigned char *s = (const unsigned char *)y->data, *p = s, *end = s + y->len;
	int l = 1, c = 1;

	if (y->len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3))
		p += 3;
	while (p < end && (l < line || (l == line && c < col))) {
		size_t br = text_break(p, end);
		uint32_t cp;

		if (br) {
			p += br;
			l++;
			c = 1;
		} else {
			p += text_decode(p, end, &cp); /* the text was checked: never 0 */
			c++;
		}
	}
	return p < end && l == line && c == col ? *p : -1;
}

/* A libyaml error as "YAML syntax error: <problem> <context>" at the problem's position, plus a hint. */
static void ylib_syntax_error(struct ylib *y)
{
	const yaml_parser_t *p = &y->p;
	int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
	const char *problem = p->problem ? p->problem : "unknown error", *hint = "";
	int byte;

	if (p->error == YAML_READER_ERROR)
		text_walk(y->data, y->len, p->problem_offset, &line, &col);
	byte = ylib_byte_at(y, line, col);
	if (p->context && !strcmp(p->context, "while scanning an alias"))
		hint = " (a value starting with '*' must be quoted: \"*.example.com\")";
	else if (byte == '\t')
		hint = " (YAML indentation must use spaces, not tabs)";
	if (p->context)
		diags_add(y->d, y->path, line, col, "YAML syntax error: %s %s%s", problem, p->context, hint);
	else
		diags_add(y->d, y->path, line, col, "YAML syntax error: %s%s", problem, hint);
}

/* The next event; a syntax error is reported and ends the stream (-1). */
static int ylib_next(struct ylib *y, yaml_event_t *ev)
{
	if (yaml_parser_parse(&y->p, ev))
		return 0;
	ylib_syntax_error(y);
	return -1;
}

/* Core schema tags only: a custom or binary tag would change a value's meaning silently. */
static int ylib_tag_ok(const char *tag)
{
	static const char *const core[] = {"str", "int", "bool", "null", "float", "map", "seq"};

	if (!tag || !strcmp(tag, "!"))
		return 1;
	if (strncmp(tag, CORE_TAG, strlen(CORE_TAG)))
		return 0;
	for (size_t i = 0; i < sizeof(core) / sizeof(core[0]); i++)
		if (!strcmp(tag + strlen(CORE_TAG), core[i]))
			return 1;
	return 0;
}

static void ylib_check_properties(struct ylib *y, const yaml_event_t *ev, const char *anchor, const char *tag)
{
	if (anchor)
		ylib_diag_at(y, &ev->start_mark, "YAML anchors and aliases are not allowed");
	if (!ylib_tag_ok(tag)) {
		int core = !strncmp(tag, CORE_TAG, strlen(CORE_TAG));
		char *msg = xasprintf("YAML tag \"%s%s\" is not allowed (only !!str, !!int, !!bool, !!float, !!null, "
				      "!!map, !!seq)",
				      core ? "!!" : "", core ? tag + strlen(CORE_TAG) : tag);

		ylib_diag_at(y, &ev->start_mark, msg);
		free(msg);
	}
}

/*
 * A map key must be a string: a map, a list or a null as a key (`? [a]`,
 * `? {a: b}`, `? ~`, `: v`) has no meaning in a manifest or the config, and
 * every reader after this one may then take a key's text for granted.
 */
static void ylib_check_key(struct ylib *y, const struct ynode *key)
{
	if (!key || (key->type == YNODE_SCALAR && !ynode_is_null(key)))
		return; /* NULL: not built, its problem was reported */
	if (key->type == YNODE_SCALAR)
		diags_add(y->d, y->path, key->line, key->col,
			  "a map key must be a string, got null (quote it if \"null\" or \"~\" is meant)");
	else
		diags_add(y->d, y->path, key->line, key->col, "a map key must be a string, got %s", ynode_kind(key));
	y->doc_bad = 1;
}

static int ylib_node(struct ylib *y, const yaml_event_t *ev, struct ynode **out);

static int ylib_collection(struct ylib *y, const yaml_event_t *start, struct ynode **out)
{
	enum ynode_type t = start->type == YAML_MAPPING_START_EVENT ? YNODE_MAP : YNODE_SEQ;
	struct ynode *n;
	size_t base = y->n_stack;
	yaml_event_t ev;

	/*
	 * Past the limit the stream ends here, like a syntax error. Reading on
	 * to skip the collection is what must not happen: libyaml's scanner
	 * costs O(flow depth) per token, so 1 MiB of '[' would take minutes.
	 * Stopping at the first level over bounds it (its lookahead is at most
	 * one simple key, 1024 characters).
	 */
	if (y->depth >= MANIFEST_MAX_DEPTH) {
		char *msg = xasprintf("nesting deeper than %d levels", MANIFEST_MAX_DEPTH);

		ylib_diag_at(y, &start->start_mark, msg);
		free(msg);
		return -1;
	}
	n = ytree_collection(y->f, t, (int)start->start_mark.line + 1, (int)start->start_mark.column + 1);
	y->depth++;
	for (;;) {
		struct ynode *child = NULL;
		int rc;

		if (ylib_next(y, &ev))
			return -1;
		if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		rc = ylib_node(y, &ev, &child);
		yaml_event_delete(&ev);
		if (rc)
			return -1;
		if (t == YNODE_MAP && (y->n_stack - base) % 2 == 0)
			ylib_check_key(y, child);
		util_grow(&y->stack, &y->cap_stack, y->n_stack + 1, sizeof(*y->stack));
		y->stack[y->n_stack++] = child;
	}
	y->depth--;
	/* no arithmetic on a NULL stack: an empty first collection has none yet */
	ytree_set_children(y->f, n, y->n_stack > base ? y->stack + base : NULL, y->n_stack - base);
	y->n_stack = base;
	*out = n;
	return 0;
}

static struct ynode *ylib_scalar(struct ylib *y, const yaml_event_t *ev)
{
	const char *tag = (const char *)ev->data.scalar.tag, *value = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	int quoted;

	/* an explicit tag decides; otherwise any quoting or block style makes a string */
	if (tag)
		quoted = !strcmp(tag, "!") || !strcmp(tag, CORE_TAG "str");
	else
		quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
	if (memchr(value, '\0', len))
		ylib_diag_at(y, &ev->start_mark, "a NUL character (\\0) is not allowed in a string");
	return ytree_scalar(y->f, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, value, len, quoted);
}

/* Builds the node that starts with ev (not consumed). *out is NULL when the node was not built. */
static int ylib_node(struct ylib *y, const yaml_event_t *ev, struct ynode **out)
{
	*out = NULL;
	switch (ev->type) {
	case YAML_ALIAS_EVENT: ylib_diag_at(y, &ev->start_mark, "YAML anchors and aliases are not allowed"); return 0;
	case YAML_SCALAR_EVENT:
		ylib_check_properties(y, ev, (const char *)ev->data.scalar.anchor, (const char *)ev->data.scalar.tag);
		*out = ylib_scalar(y, ev);
		return 0;
	case YAML_SEQUENCE_START_EVENT:
		ylib_check_properties(y, ev, (const char *)ev->data.sequence_start.anchor,
				      (const char *)ev->data.sequence_start.tag);
		return ylib_collection(y, ev, out);
	case YAML_MAPPING_START_EVENT:
		ylib_check_properties(y, ev, (const char *)ev->data.mapping_start.anchor,
				      (const char *)ev->data.mapping_start.tag);
		return ylib_collection(y, ev, out);
	default: assert(!"libyaml starts nodes with scalar, alias, sequence or mapping events"); return -1;
	}
}

/* One event at the top level of the stream. 1 at the end of the stream, 0 to go on, -1 to stop. */
static int ylib_top(struct ylib *y, const yaml_event_t *ev)
{
	struct ydoc *doc;
	struct ynode *root;

	switch (ev->type) {
	case YAML_STREAM_END_EVENT: return 1;
	case YAML_DOCUMENT_START_EVENT:
		if (y->f->n_docs >= MANIFEST_MAX_DOCS) {
			diags_add(y->d, y->path, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
				  "more than %d documents in one file", MANIFEST_MAX_DOCS);
			return -1;
		}
		ytree_doc_add(y->f, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1);
		y->doc_bad = 0;
		y->depth = 0;
		return 0;
	case YAML_SCALAR_EVENT:
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
	case YAML_ALIAS_EVENT:
		if (ylib_node(y, ev, &root))
			return -1;
		doc = &y->f->docs[y->f->n_docs - 1];
		/* libyaml gives an empty document an empty plain scalar */
		if (root && root->type == YNODE_SCALAR && !root->quoted && !root->len)
			root = NULL;
		doc->root = y->doc_bad ? NULL : root;
		return 0;
	default: return 0;
	}
}

int manifest_ylib_parse(const char *path, const char *data, size_t len, struct yfile **out, struct diags *d)
{
	struct ylib y;
	size_t before = d->n, complete = 0;
	yaml_event_t ev;
	int rc = 0;

	memset(&y, 0, sizeof(y));
	y.path = path;
	y.data = data;
	y.len = len;
	y.d = d;
	y.f = *out = ytree_file_new(path);
	if (!yaml_parser_initialize(&y.p))
		abort(); /* only fails on out-of-memory */
	yaml_parser_set_input_string(&y.p, (const unsigned char *)data, len);
	while (rc == 0) {
		if (ylib_next(&y, &ev)) {
			rc = -1;
			break;
		}
		rc = ylib_top(&y, &ev);
		if (ev.type == YAML_DOCUMENT_END_EVENT)
			complete = y.f->n_docs;
		yaml_event_delete(&ev);
	}
	/* an error ends the stream: keep the documents that were complete before it */
	if (rc < 0)
		ytree_truncate(y.f, complete);
	yaml_parser_delete(&y.p);
	free(y.stack);
	return d->n > before ? CS_EINVALID : 0;
}

int manifest_yaml_parse(const char *path, const char *data, size_t len, struct yfile **out, struct diags *d)
{
	*out = NULL;
	if (len > MANIFEST_MAX_FILE_BYTES) {
		*out = ytree_file_new(path);
		diags_add(d, path, 0, 0, "file is %zu bytes; the limit is %d", len, MANIFEST_MAX_FILE_BYTES);
		return CS_EINVALID;
	}
	if (manifest_text_check(path, data, len, d)) {
		*out = ytree_file_new(path);
		return CS_EINVALID;
	}
	if (yaml_fast && manifest_yfast_parse(path, data, len, out))
		return 0;
	return manifest_ylib_parse(path, data, len, out, d);
}

void libversion_libyaml(char *out, size_t n)
{
	snprintf(out, n, "libyaml %s", yaml_get_version_string());
}
