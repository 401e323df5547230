/*
 * YAML → node trees with positions (libyaml's event API, streaming: the
 * only file that includes <yaml.h>). Limits, anchors/aliases, tags and
 * UTF-8 are enforced here so every caller gets the same guarantees.
 */
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../util/err.h"
#include "../util/util.h"
#include "manifest.h"

struct yparse {
	const char *path;
	struct diags *d;
	yaml_parser_t p;
	int depth;
	int failed;
};

static void ynode_free(struct ynode *n)
{
	if (!n)
		return;
	free(n->str);
	for (size_t i = 0; n->kv && i < 2 * n->n; i++)
		ynode_free(n->kv[i]);
	for (size_t i = 0; n->items && i < n->n; i++)
		ynode_free(n->items[i]);
	free(n->kv);
	free(n->items);
	free(n);
}

void manifest_yaml_free(struct yfile *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_docs; i++)
		ynode_free(f->docs[i].root);
	free(f->docs);
	free(f->path);
	free(f);
}

/* Finds the first invalid UTF-8 sequence; 0 if valid, else 1 with its position. */
static int utf8_check(const char *s, size_t len, int *line, int *col, unsigned char *byte)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	int l = 1, c = 1;

	while (p < end) {
		unsigned char b = *p;
		size_t need = b < 0x80		   ? 0
			      : (b & 0xe0) == 0xc0 ? 1
			      : (b & 0xf0) == 0xe0 ? 2
			      : (b & 0xf8) == 0xf0 ? 3
						   : 9;
		uint32_t cp = need == 0 ? b : need == 1 ? b & 0x1f : need == 2 ? b & 0x0f : b & 0x07;

		if (need == 9 || need > (size_t)(end - p - 1))
			goto bad;
		for (size_t i = 1; i <= need; i++) {
			if ((p[i] & 0xc0) != 0x80)
				goto bad;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
		    (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
			goto bad;
		if (b == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
		p += need + 1;
	}
	return 0;
bad:
	*line = l;
	*col = c;
	*byte = *p;
	return 1;
}

static void yp_diag(struct yparse *y, const yaml_mark_t *m, const char *fmt, const char *arg)
{
	if (y->failed)
		return;
	diags_add(y->d, y->path, (int)m->line + 1, (int)m->column + 1, fmt, arg);
	y->failed = 1;
}

/* Core schema tags only: a custom or binary tag would change a value's meaning silently. */
static int tag_ok(const yaml_char_t *tag)
{
	static const char *const core[] = {"str", "int", "bool", "null", "float", "map", "seq", NULL};

	if (!tag || !strcmp((const char *)tag, "!"))
		return 1;
	if (strncmp((const char *)tag, "tag:yaml.org,2002:", 18))
		return 0;
	for (size_t i = 0; core[i]; i++)
		if (!strcmp((const char *)tag + 18, core[i]))
			return 1;
	return 0;
}

static struct ynode *yp_node(struct yparse *y, yaml_event_t *ev);

static struct ynode *ynode_new(enum ynode_type t, const yaml_mark_t *m)
{
	struct ynode *n = xcalloc(1, sizeof(*n));

	n->type = t;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	return n;
}

/* Parses the next event into *ev; reports syntax errors. 0 or -1. */
static int yp_next(struct yparse *y, yaml_event_t *ev)
{
	if (yaml_parser_parse(&y->p, ev))
		return 0;
	if (!y->failed) {
		const yaml_mark_t *m = &y->p.problem_mark;

		if (y->p.context)
			diags_add(y->d, y->path, (int)m->line + 1, (int)m->column + 1, "YAML syntax error: %s %s",
				  y->p.problem ? y->p.problem : "error", y->p.context);
		else
			diags_add(y->d, y->path, (int)m->line + 1, (int)m->column + 1, "YAML syntax error: %s",
				  y->p.problem ? y->p.problem : "error");
		y->failed = 1;
	}
	return -1;
}

static struct ynode *yp_collection(struct yparse *y, yaml_event_t *start)
{
	int is_map = start->type == YAML_MAPPING_START_EVENT;
	struct ynode *n = ynode_new(is_map ? YNODE_MAP : YNODE_SEQ, &start->start_mark);
	size_t cap = 0, count = 0;
	yaml_event_t ev;

	if (++y->depth > MANIFEST_MAX_DEPTH) {
		diags_add(y->d, y->path, n->line, n->col, "nesting deeper than %d levels", MANIFEST_MAX_DEPTH);
		y->failed = 1;
		ynode_free(n);
		return NULL;
	}
	for (;;) {
		struct ynode *child;

		if (yp_next(y, &ev))
			goto fail;
		if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		child = yp_node(y, &ev);
		yaml_event_delete(&ev);
		if (!child)
			goto fail;
		if (is_map) {
			util_grow(&n->kv, &cap, count + 1, sizeof(*n->kv));
			n->kv[count++] = child;
		} else {
			util_grow(&n->items, &cap, count + 1, sizeof(*n->items));
			n->items[count++] = child;
		}
		n->n = is_map ? count / 2 : count;
	}
	y->depth--;
	return n;
fail:
	/* keep the pairs already parsed consistent for freeing */
	if (is_map && count % 2) {
		ynode_free(n->kv[count - 1]);
		count--;
	}
	n->n = is_map ? count / 2 : count;
	ynode_free(n);
	return NULL;
}

static struct ynode *yp_node(struct yparse *y, yaml_event_t *ev)
{
	struct ynode *n;
	const yaml_char_t *anchor = NULL, *tag = NULL;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		yp_diag(y, &ev->start_mark, "YAML anchors and aliases are not allowed%s", "");
		return NULL;
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		break;
	default: yp_diag(y, &ev->start_mark, "unexpected YAML event%s", ""); return NULL;
	}
	if (anchor) {
		yp_diag(y, &ev->start_mark, "YAML anchors and aliases are not allowed%s", "");
		return NULL;
	}
	if (!tag_ok(tag)) {
		yp_diag(y, &ev->start_mark, "YAML tag %s is not allowed", (const char *)tag);
		return NULL;
	}
	if (ev->type != YAML_SCALAR_EVENT)
		return yp_collection(y, ev);
	n = ynode_new(YNODE_SCALAR, &ev->start_mark);
	n->str = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
	n->len = ev->data.scalar.length;
	n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
		    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE ||
		    ev->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
		    ev->data.scalar.style == YAML_FOLDED_SCALAR_STYLE ||
		    (tag && !strcmp((const char *)tag, "tag:yaml.org,2002:str"));
	return n;
}

int manifest_yaml_parse(const char *path, const char *data, size_t len, struct yfile **out, struct diags *d)
{
	struct yfile *f = xcalloc(1, sizeof(*f));
	struct yparse y;
	yaml_event_t ev;
	size_t before = d->n, cap = 0;
	int line, col, done = 0;
	unsigned char byte;

	*out = f;
	f->path = xstrdup(path);
	if (len > MANIFEST_MAX_FILE_BYTES) {
		diags_add(d, path, 0, 0, "file is %zu bytes; the limit is %d", len, MANIFEST_MAX_FILE_BYTES);
		return CS_EINVALID;
	}
	if (utf8_check(data, len, &line, &col, &byte)) {
		diags_add(d, path, line, col, "invalid UTF-8 (byte 0x%02x)", byte);
		return CS_EINVALID;
	}
	if (memchr(data, '\0', len)) {
		diags_add(d, path, 0, 0, "the file contains a NUL byte");
		return CS_EINVALID;
	}
	memset(&y, 0, sizeof(y));
	y.path = path;
	y.d = d;
	if (!yaml_parser_initialize(&y.p))
		abort();
	yaml_parser_set_input_string(&y.p, (const unsigned char *)data, len);
	yaml_parser_set_encoding(&y.p, YAML_UTF8_ENCODING);
	while (!done && !y.failed) {
		if (yp_next(&y, &ev))
			break;
		switch (ev.type) {
		case YAML_DOCUMENT_START_EVENT:
			if (f->n_docs >= MANIFEST_MAX_DOCS) {
				diags_add(d, path, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
					  "more than %d documents in one file", MANIFEST_MAX_DOCS);
				y.failed = 1;
				break;
			}
			util_grow(&f->docs, &cap, f->n_docs + 1, sizeof(*f->docs));
			memset(&f->docs[f->n_docs], 0, sizeof(*f->docs));
			f->docs[f->n_docs].line = (int)ev.start_mark.line + 1;
			f->docs[f->n_docs].col = (int)ev.start_mark.column + 1;
			f->n_docs++;
			break;
		case YAML_SCALAR_EVENT:
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
		case YAML_ALIAS_EVENT:
			y.depth = 0;
			f->docs[f->n_docs - 1].root = yp_node(&y, &ev);
			break;
		case YAML_STREAM_END_EVENT: done = 1; break;
		default: break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&y.p);
	return d->n > before ? CS_EINVALID : 0;
}
