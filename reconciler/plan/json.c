/*
 * Reading a saved plan (`plan --out plan.json`, then `apply plan.json`). The
 * one owner of jansson in the plan module. The file is trusted no more than
 * any input: bounded, every field checked for presence and type, every
 * message naming the file and the field. Unknown keys are ignored (a 1.x
 * minor version may add some); a major version other than 1 is refused.
 */
#include <assert.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/util.h"
#include "plan.h"

#define PLAN_JSON_MAX_BYTES (16u * 1024 * 1024)

struct pj {
	const char *origin;
};

/* Sets "origin: path.key: message" and returns CS_EINVALID. path may be "" (top level), key NULL. */
static int pj_fail(const struct pj *j, const char *path, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int pj_fail(const struct pj *j, const char *path, const char *key, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int rc;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	rc = cs_error(CS_EINVALID, "%s: %s%s%s: %s", j->origin, path, path[0] && key ? "." : "", key ? key : "", msg);
	free(msg);
	return rc;
}

static const char *pj_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number with a fraction";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "something else";
}

/* The member key of obj with the expected type. Absent (or null when optional): *out = NULL, 0. */
static int pj_get(const struct pj *j, const json_t *obj, const char *path, const char *key, json_type type,
		  int required, json_t **out)
{
	json_t *v = json_object_get(obj, key);
	static const char *const want[] = {
		[JSON_OBJECT] = "an object",   [JSON_ARRAY] = "an array", [JSON_STRING] = "a string",
		[JSON_INTEGER] = "an integer", [JSON_TRUE] = "a boolean", [JSON_FALSE] = "a boolean",
		[JSON_REAL] = "a number",      [JSON_NULL] = "null",
	};

	*out = NULL;
	if (!v || (json_is_null(v) && !required))
		return required ? pj_fail(j, path, key, "required field is missing") : 0;
	if (json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v)))
		return pj_fail(j, path, key, "expected %s, got %s", want[type], pj_type_name(v));
	*out = v;
	return 0;
}

static int pj_str(const struct pj *j, const json_t *obj, const char *path, const char *key, int required, char **out)
{
	json_t *v;
	int rc = pj_get(j, obj, path, key, JSON_STRING, required, &v);

	if (rc || !v)
		return rc;
	if (required && !json_string_length(v))
		return pj_fail(j, path, key, "must not be empty");
	free(*out);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int pj_int(const struct pj *j, const json_t *obj, const char *path, const char *key, int required, long long max,
		  long long *out)
{
	json_t *v;
	int rc = pj_get(j, obj, path, key, JSON_INTEGER, required, &v);

	if (rc || !v)
		return rc;
	if (json_integer_value(v) < 0 || json_integer_value(v) > max)
		return pj_fail(j, path, key, "%lld is out of range (0 to %lld)", (long long)json_integer_value(v), max);
	*out = json_integer_value(v);
	return 0;
}

/* ---------- a change: name and action, a field table for the plain members, code for the rest ---------- */

enum pj_kind { PJ_STR, PJ_BOOL, PJ_INT };

struct pj_field {
	const char *key;
	enum pj_kind kind;
	int required;
	size_t off;
};

#define CF(key, kind, req, member)                                                                                     \
	{                                                                                                              \
		key, kind, req, offsetof(struct plan_change, member)                                                   \
	}
static const struct pj_field change_fields[] = {
	CF("reason", PJ_STR, 0, reason),
	CF("reason_code", PJ_STR, 0, reason_code),
	CF("issuer", PJ_STR, 0, issuer),
	CF("provider", PJ_STR, 0, provider),
	CF("paid", PJ_BOOL, 1, paid),
	CF("product", PJ_STR, 0, product),
	CF("deferred", PJ_BOOL, 1, deferred),
	CF("file", PJ_STR, 0, file),
	CF("line", PJ_INT, 0, line),
	CF("failure_class", PJ_STR, 0, failure_class),
	CF("last_error", PJ_STR, 0, last_error),
	CF("detail", PJ_STR, 0, detail),
};
#undef CF

static int pj_fields(const struct pj *j, const json_t *obj, const char *path, const struct pj_field *f, size_t n,
		     void *base)
{
	for (size_t i = 0; i < n; i++) {
		char *at = (char *)base + f[i].off;
		long long num = 0;
		json_t *v;
		int rc = 0;

		switch (f[i].kind) {
		case PJ_STR: rc = pj_str(j, obj, path, f[i].key, f[i].required, (char **)(void *)at); break;
		case PJ_BOOL:
			if (!(rc = pj_get(j, obj, path, f[i].key, JSON_TRUE, f[i].required, &v)) && v)
				*(int *)(void *)at = json_is_true(v);
			break;
		case PJ_INT:
			if (!(rc = pj_int(j, obj, path, f[i].key, f[i].required, INT_MAX, &num)))
				*(int *)(void *)at = (int)num;
			break;
		}
		if (rc)
			return rc;
	}
	return 0;
}

static int pj_steps(const struct pj *j, const json_t *obj, const char *path, struct plan_change *c)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, obj, path, "steps", JSON_ARRAY, 1, &arr);

	if (rc)
		return rc;
	if (json_array_size(arr) > PLAN_MAX_STEPS)
		return pj_fail(j, path, "steps", "%zu steps, at most %d", json_array_size(arr), PLAN_MAX_STEPS);
	json_array_foreach (arr, i, v) {
		if (!json_is_string(v)) {
			char *key = xasprintf("steps[%zu]", i);

			rc = pj_fail(j, path, key, "expected a string, got %s", pj_type_name(v));
			free(key);
			return rc;
		}
		c->steps[c->n_steps++] = xstrdup(json_string_value(v));
	}
	return 0;
}

static int pj_diffs(const struct pj *j, const json_t *obj, const char *path, struct plan_change *c)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, obj, path, "diffs", JSON_ARRAY, 1, &arr);

	if (rc)
		return rc;
	c->diffs = xcalloc(json_array_size(arr) + 1, sizeof(*c->diffs));
	json_array_foreach (arr, i, v) {
		char *at = xasprintf("%s.diffs[%zu]", path, i);
		struct plan_field_diff *d = &c->diffs[c->n_diffs++];

		if (!json_is_object(v))
			rc = pj_fail(j, at, NULL, "expected an object, got %s", pj_type_name(v));
		else if (!(rc = pj_str(j, v, at, "field", 1, &d->field)))
			rc = pj_str(j, v, at, "text", 1, &d->text);
		free(at);
		if (rc)
			return rc;
	}
	return 0;
}

static int pj_labels(const struct pj *j, const json_t *obj, const char *path, struct plan_change *c)
{
	json_t *map, *v;
	const char *key;
	int rc = pj_get(j, obj, path, "labels", JSON_OBJECT, 1, &map);

	if (rc)
		return rc;
	c->labels = xcalloc(json_object_size(map) + 1, sizeof(*c->labels));
	/* jansson keeps insertion order, so labels come back in the order they were written. */
	json_object_foreach (map, key, v) {
		if (!json_is_string(v)) {
			char *at = xasprintf("%s.labels", path);

			rc = pj_fail(j, at, key, "expected a string, got %s", pj_type_name(v));
			free(at);
			return rc;
		}
		c->labels[c->n_labels].key = xstrdup(key);
		c->labels[c->n_labels++].value = xstrdup(json_string_value(v));
	}
	return 0;
}

static int pj_change(const struct pj *j, const json_t *obj, const char *path, struct plan_change *c)
{
	char *action = NULL;
	enum change_kind kind;
	int rc;

	if (!json_is_object(obj))
		return pj_fail(j, path, NULL, "expected an object, got %s", pj_type_name(obj));
	/* Name and action first: they say what the rest is about. */
	if ((rc = pj_str(j, obj, path, "name", 1, &c->name)) || (rc = pj_str(j, obj, path, "action", 1, &action)))
		goto out;
	if (plan_change_parse(action, &kind)) {
		rc = pj_fail(j, path, "action", "unknown action \"%s\"", action);
		goto out;
	}
	if (kind == CHANGE_NONE) {
		rc = pj_fail(j, path, "action", "\"none\" is not a change");
		goto out;
	}
	c->kind = kind;
	if ((rc = pj_fields(j, obj, path, change_fields, sizeof(change_fields) / sizeof(change_fields[0]), c)))
		goto out;
	if (c->deferred && !c->paid) {
		rc = pj_fail(j, path, "deferred", "only a paid change can be deferred");
		goto out;
	}
	if (!c->paid) {
		free(c->product); /* the product only means something for paid changes */
		c->product = NULL;
	}
	if (!(rc = pj_steps(j, obj, path, c)) && !(rc = pj_diffs(j, obj, path, c)))
		rc = pj_labels(j, obj, path, c);
out:
	free(action);
	return rc;
}

static int pj_change_cmp(const void *a, const void *b)
{
	return strcmp(((const struct plan_change *)a)->name, ((const struct plan_change *)b)->name);
}

static int pj_changes(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, root, "", "changes", JSON_ARRAY, 1, &arr);

	if (rc)
		return rc;
	p->changes = xcalloc(json_array_size(arr) + 1, sizeof(*p->changes));
	json_array_foreach (arr, i, v) {
		char path[48];

		snprintf(path, sizeof(path), "changes[%zu]", i);
		/* Counted before parsing, so plan_free releases a half-read change too. */
		p->n_changes++;
		if ((rc = pj_change(j, v, path, &p->changes[i])))
			return rc;
	}
	if (p->n_changes)
		qsort(p->changes, p->n_changes, sizeof(*p->changes), pj_change_cmp);
	for (i = 1; i < p->n_changes; i++)
		if (!strcmp(p->changes[i - 1].name, p->changes[i].name))
			return pj_fail(j, "changes", NULL, "certificate \"%s\" appears twice", p->changes[i].name);
	for (i = 0; i < p->n_changes; i++) {
		p->counts[p->changes[i].kind]++;
		if (p->changes[i].deferred)
			p->deferred++;
		else if (p->changes[i].paid)
			p->paid++;
	}
	return 0;
}

/* Failed certificates apply leaves alone (format 1.1; absent in 1.0 plans): shown again, never applied. */
static const struct pj_field failed_fields[] = {
	{"reason", PJ_STR, 0, offsetof(struct plan_change, reason)},
	{"reason_code", PJ_STR, 0, offsetof(struct plan_change, reason_code)},
	{"issuer", PJ_STR, 0, offsetof(struct plan_change, issuer)},
	{"failure_class", PJ_STR, 1, offsetof(struct plan_change, failure_class)},
	{"last_error", PJ_STR, 0, offsetof(struct plan_change, last_error)},
	{"file", PJ_STR, 0, offsetof(struct plan_change, file)},
	{"line", PJ_INT, 0, offsetof(struct plan_change, line)},
};

static int pj_failed(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, root, "", "failed", JSON_ARRAY, 0, &arr);

	if (rc || !arr)
		return rc;
	p->failed = xcalloc(json_array_size(arr) + 1, sizeof(*p->failed));
	json_array_foreach (arr, i, v) {
		char path[48];

		snprintf(path, sizeof(path), "failed[%zu]", i);
		p->n_failed++;
		if (!json_is_object(v))
			return pj_fail(j, path, NULL, "expected an object, got %s", pj_type_name(v));
		if ((rc = pj_str(j, v, path, "name", 1, &p->failed[i].name)) ||
		    (rc = pj_fields(j, v, path, failed_fields, sizeof(failed_fields) / sizeof(failed_fields[0]),
				    &p->failed[i])))
			return rc;
	}
	return 0;
}

/* ---------- the rest of the document ---------- */

static int pj_version(const struct pj *j, const json_t *root)
{
	char *s = NULL;
	unsigned long major;
	char *end, *end2 = NULL;
	int rc = pj_str(j, root, "", "format_version", 1, &s);

	if (rc)
		return rc;
	assert(s); /* required: set whenever pj_str succeeds */
	major = strtoul(s, &end, 10);
	if (*end == '.' && end[1] >= '0' && end[1] <= '9')
		strtoul(end + 1, &end2, 10);
	if (s[0] < '0' || s[0] > '9' || !end2 || *end2)
		rc = pj_fail(j, "", "format_version", "expected a version such as \"1.0\", got \"%s\"", s);
	else if (major != 1)
		rc = cs_error(CS_EINVALID, "%s: plan format %s is not supported (this certsync reads 1.x)", j->origin,
			      s);
	free(s);
	return rc;
}

static int pj_source_state(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *src, *st;
	char *lineage = NULL;
	long long serial = 0;
	int rc;

	if ((rc = pj_get(j, root, "", "source", JSON_OBJECT, 1, &src)) ||
	    (rc = pj_str(j, src, "source", "repo", 0, &p->repo)) ||
	    (rc = pj_str(j, src, "source", "ref", 0, &p->ref)) ||
	    (rc = pj_str(j, src, "source", "commit", 0, &p->commit)) ||
	    (rc = pj_str(j, src, "source", "base_commit", 0, &p->base_commit)))
		return rc;
	if (!json_object_get(root, "state"))
		return pj_fail(j, "", "state", "required field is missing (null when the plan was made without state)");
	if ((rc = pj_get(j, root, "", "state", JSON_OBJECT, 0, &st)) || !st)
		return rc;
	if ((rc = pj_str(j, st, "state", "lineage", 1, &lineage)) ||
	    (rc = pj_int(j, st, "state", "serial", 1, LLONG_MAX, &serial)) ||
	    (rc = pj_str(j, st, "state", "applied_commit", 0, &p->applied_commit)))
		goto out;
	if (strlen(lineage) >= sizeof(p->lineage)) {
		rc = pj_fail(j, "state", "lineage", "\"%s\" is not a lineage id", lineage);
		goto out;
	}
	p->has_state = 1;
	memcpy(p->lineage, lineage, strlen(lineage) + 1);
	p->serial = (uint64_t)serial;
out:
	free(lineage);
	return rc;
}

static int pj_errors(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, root, "", "errors", JSON_ARRAY, 1, &arr);

	if (rc)
		return rc;
	json_array_foreach (arr, i, v) {
		char path[48], *msg = NULL;
		json_t *file;
		long long line = 0, col = 0;

		snprintf(path, sizeof(path), "errors[%zu]", i);
		if (!json_is_object(v))
			rc = pj_fail(j, path, NULL, "expected an object, got %s", pj_type_name(v));
		/* file may be empty: an error about the revision as a whole. */
		else if (!(rc = pj_get(j, v, path, "file", JSON_STRING, 1, &file)) &&
			 !(rc = pj_int(j, v, path, "line", 1, INT_MAX, &line)) &&
			 !(rc = pj_int(j, v, path, "col", 1, INT_MAX, &col)) &&
			 !(rc = pj_str(j, v, path, "message", 1, &msg)))
			diags_add(&p->errors, json_string_value(file), (int)line, (int)col, "%s", msg);
		free(msg);
		if (rc)
			return rc;
	}
	return 0;
}

static int pj_warnings(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, root, "", "warnings", JSON_ARRAY, 1, &arr);

	if (rc)
		return rc;
	json_array_foreach (arr, i, v) {
		if (!json_is_string(v)) {
			char *key = xasprintf("warnings[%zu]", i);

			rc = pj_fail(j, key, NULL, "expected a string, got %s", pj_type_name(v));
			free(key);
			return rc;
		}
		plan_add_warning(p, "%s", json_string_value(v));
	}
	return 0;
}

/* Optional: plans saved before account actions were listed have none. */
static int pj_account_actions(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, root, "", "account_actions", JSON_ARRAY, 0, &arr);

	if (rc || !arr)
		return rc;
	json_array_foreach (arr, i, v) {
		if (!json_is_string(v)) {
			char *key = xasprintf("account_actions[%zu]", i);

			rc = pj_fail(j, key, NULL, "expected a string, got %s", pj_type_name(v));
			free(key);
			return rc;
		}
		plan_add_account_action(p, "%s", json_string_value(v));
	}
	return 0;
}

static int pj_time(const struct pj *j, const json_t *obj, const char *path, const char *key, int required, int64_t *out)
{
	char *v = NULL;
	int rc = pj_str(j, obj, path, key, required, &v);

	if (!rc && v && util_parse_time(v, out))
		rc = pj_fail(j, path, key, "\"%s\" is not an RFC 3339 UTC time", v);
	free(v);
	return rc;
}

/* Optional: the CA's suggested renewal windows (ARI); shown again, never applied. */
static int pj_windows(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *arr, *v;
	size_t i;
	int rc = pj_get(j, root, "", "renewal_windows", JSON_ARRAY, 0, &arr);

	if (rc || !arr)
		return rc;
	p->windows = xcalloc(json_array_size(arr) + 1, sizeof(*p->windows));
	json_array_foreach (arr, i, v) {
		struct plan_window *w = &p->windows[i];
		char path[48];

		snprintf(path, sizeof(path), "renewal_windows[%zu]", i);
		p->n_windows++;
		if (!json_is_object(v))
			return pj_fail(j, path, NULL, "expected an object, got %s", pj_type_name(v));
		if ((rc = pj_str(j, v, path, "name", 1, &w->name)) ||
		    (rc = pj_time(j, v, path, "start", 1, &w->start)) ||
		    (rc = pj_time(j, v, path, "end", 1, &w->end)) ||
		    (rc = pj_time(j, v, path, "renew_at", 1, &w->at)) ||
		    (rc = pj_time(j, v, path, "next_check", 0, &w->next)))
			return rc;
	}
	return 0;
}

/*
 * The summary repeats what the changes say; a saved plan whose summary
 * disagrees with its own changes has been edited or damaged, and it drives
 * paid orders: refuse it. Only unchanged and max_paid_orders are new facts.
 */
static int pj_summary(const struct pj *j, const json_t *root, struct plan *p)
{
	json_t *sum, *hc;
	long long v = 0;
	int rc;

	if ((rc = pj_get(j, root, "", "summary", JSON_OBJECT, 1, &sum)))
		return rc;
	for (int k = CHANGE_CREATE; k <= CHANGE_ORPHAN; k++) {
		const char *key = plan_change_name((enum change_kind)k);

		if ((rc = pj_int(j, sum, "summary", key, 1, LLONG_MAX, &v)))
			return rc;
		if ((size_t)v != p->counts[k])
			return pj_fail(j, "summary", key, "%lld does not match the %zu %s changes listed", v,
				       p->counts[k], key);
	}
	if ((rc = pj_int(j, sum, "summary", "paid", 1, LLONG_MAX, &v)))
		return rc;
	if ((size_t)v != p->paid)
		return pj_fail(j, "summary", "paid", "%lld does not match the %zu paid changes listed", v, p->paid);
	if ((rc = pj_int(j, sum, "summary", "deferred", 1, LLONG_MAX, &v)))
		return rc;
	if ((size_t)v != p->deferred)
		return pj_fail(j, "summary", "deferred", "%lld does not match the %zu deferred changes listed", v,
			       p->deferred);
	if ((rc = pj_int(j, sum, "summary", "errors", 1, LLONG_MAX, &v)))
		return rc;
	if ((size_t)v != p->errors.n)
		return pj_fail(j, "summary", "errors", "%lld does not match the %zu errors listed", v, p->errors.n);
	if ((rc = pj_int(j, sum, "summary", "unchanged", 1, LLONG_MAX, &v)))
		return rc;
	p->counts[CHANGE_NONE] = (size_t)v;
	if ((rc = pj_int(j, sum, "summary", "max_paid_orders", 1, INT_MAX, &v)))
		return rc;
	p->max_paid = (int)v;
	if ((rc = pj_get(j, sum, "summary", "has_changes", JSON_TRUE, 1, &hc)))
		return rc;
	if (json_is_true(hc) != plan_has_changes(p))
		return pj_fail(j, "summary", "has_changes", "%s does not match the changes listed",
			       json_is_true(hc) ? "true" : "false");
	return 0;
}

int plan_from_json(const char *data, size_t len, const char *origin, struct plan **out)
{
	struct pj j = {origin ? origin : "plan"};
	struct plan *p = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	int rc;

	if (len > PLAN_JSON_MAX_BYTES) {
		rc = cs_error(CS_EINVALID, "%s: the plan is %zu bytes, larger than the %u MiB a plan may be", j.origin,
			      len, PLAN_JSON_MAX_BYTES / (1024 * 1024));
		goto out;
	}
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		rc = cs_error(CS_EINVALID, "%s:%d:%d: not a valid JSON plan: %s", j.origin, jerr.line, jerr.column,
			      jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = cs_error(CS_EINVALID, "%s: expected a JSON object, got %s", j.origin, pj_type_name(root));
		goto out;
	}
	/* The version first: a 2.x plan may not have the shape checked below. */
	if ((rc = pj_version(&j, root)))
		goto out;
	p = xcalloc(1, sizeof(*p));
	if ((rc = pj_source_state(&j, root, p)) || (rc = pj_changes(&j, root, p)) || (rc = pj_failed(&j, root, p)) ||
	    (rc = pj_errors(&j, root, p)) || (rc = pj_warnings(&j, root, p)) ||
	    (rc = pj_account_actions(&j, root, p)) || (rc = pj_windows(&j, root, p)) || (rc = pj_summary(&j, root, p)))
		goto out;
	*out = p;
	p = NULL;
out:
	plan_free(p);
	json_decref(root);
	return rc;
}
