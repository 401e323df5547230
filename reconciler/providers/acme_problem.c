/* ACME problem documents (RFC 8555 §6.7, RFC 7807): parsing untrusted problem+json, one-line text, classification. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/util.h"
#include "acme.h"

#define ACME_PROBLEM_MAX_BODY (64 * 1024) /* a problem document is a few hundred bytes; more is not one */
#define ACME_PROBLEM_MAX_TYPE 256
#define ACME_PROBLEM_MAX_DETAIL 1024 /* longer details are cut (on a UTF-8 boundary) */
#define ACME_PROBLEM_MAX_IDENT 256

/* A copy of s of at most max bytes, cut on a UTF-8 boundary, control characters as spaces (one line). */
static char *problem_str(const char *s, size_t max)
{
	size_t n = strlen(s);
	char *out;

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	out = xstrndup(s, n);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return out;
}

/* Fills p from one problem object (subproblems not included). CS_EINVALID when it is not one. */
static int problem_fill(const json_t *o, long status, struct acme_problem *p)
{
	const json_t *type = json_object_get(o, "type"), *detail = json_object_get(o, "detail");
	const json_t *st = json_object_get(o, "status"), *ident = json_object_get(o, "identifier");
	const json_t *value = json_object_get(ident, "value");

	if (!json_is_object(o))
		return cs_error(CS_EINVALID, "the problem document is not a JSON object");
	if ((type && !json_is_string(type)) || (detail && !json_is_string(detail)))
		return cs_error(CS_EINVALID, "the problem document's type or detail is not a string");
	if (!type && !detail)
		return cs_error(CS_EINVALID, "the document has neither a problem type nor a detail");
	if (type && json_string_length(type) > ACME_PROBLEM_MAX_TYPE)
		return cs_error(CS_EINVALID, "the problem type is longer than %d bytes", ACME_PROBLEM_MAX_TYPE);
	p->type = problem_str(type ? json_string_value(type) : "about:blank", ACME_PROBLEM_MAX_TYPE);
	p->detail = detail ? problem_str(json_string_value(detail), ACME_PROBLEM_MAX_DETAIL) : NULL;
	p->status = json_is_integer(st) && json_integer_value(st) >= 100 && json_integer_value(st) <= 599
			    ? (long)json_integer_value(st)
			    : status;
	if (json_is_string(value) && json_string_length(value))
		p->identifier = problem_str(json_string_value(value), ACME_PROBLEM_MAX_IDENT);
	return 0;
}

/* The subproblems of o (at most ACME_MAX_SUBPROBLEMS; malformed entries are skipped). */
static void problem_subs(const json_t *o, struct acme_problem *p)
{
	const json_t *subs = json_object_get(o, "subproblems"), *v;
	size_t i;

	if (!json_is_array(subs) || !json_array_size(subs))
		return;
	p->sub = xcalloc(json_array_size(subs) < ACME_MAX_SUBPROBLEMS ? json_array_size(subs) : ACME_MAX_SUBPROBLEMS,
			 sizeof(*p->sub));
	json_array_foreach (subs, i, v) {
		if (p->n_sub == ACME_MAX_SUBPROBLEMS)
			break;
		if (problem_fill(v, 0, &p->sub[p->n_sub])) {
			acme_problem_free(&p->sub[p->n_sub]);
			continue;
		}
		p->n_sub++;
	}
	cs_error_clear();
}

int acme_problem_parse(const char *body, size_t len, long status, struct acme_problem *out)
{
	json_error_t je;
	json_t *j = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!body || !len)
		return cs_error(CS_EINVALID, "the answer has an empty body, not a problem document");
	if (len > ACME_PROBLEM_MAX_BODY)
		return cs_error(CS_EINVALID, "the answer (%zu bytes) is too large for a problem document", len);
	j = json_loadb(body, len, 0, &je);
	if (!j)
		return cs_error(CS_EINVALID, "the answer is not JSON (line %d: %s)", je.line, je.text);
	if (!(rc = problem_fill(j, status, out)))
		problem_subs(j, out);
	else
		acme_problem_free(out);
	json_decref(j);
	return rc;
}

void acme_problem_free(struct acme_problem *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_sub; i++)
		acme_problem_free(&p->sub[i]);
	free(p->sub);
	free(p->type);
	free(p->detail);
	free(p->identifier);
	memset(p, 0, sizeof(*p));
}

const char *acme_problem_short(const struct acme_problem *p)
{
	size_t n = strlen(ACME_PROBLEM_PREFIX);

	if (!p->type)
		return "";
	return strncmp(p->type, ACME_PROBLEM_PREFIX, n) || !p->type[n] ? p->type : p->type + n;
}

int acme_problem_is(const struct acme_problem *p, const char *name)
{
	size_t n = strlen(ACME_PROBLEM_PREFIX);

	return p->type && !strncmp(p->type, ACME_PROBLEM_PREFIX, n) && !strcmp(p->type + n, name);
}

void acme_problem_text(const struct acme_problem *p, char *out, size_t n)
{
	char head[ACME_PROBLEM_MAX_TYPE + 32];

	if (!n)
		return;
	out[0] = '\0';
	if (p->status)
		snprintf(head, sizeof(head), "%s (%ld)", acme_problem_short(p), p->status);
	else
		snprintf(head, sizeof(head), "%s", acme_problem_short(p));
	provider_text_append(out, n, "", head);
	if (p->detail && *p->detail)
		provider_text_append(out, n, ": ", p->detail);
	for (size_t i = 0; i < p->n_sub; i++) {
		const struct acme_problem *s = &p->sub[i];
		char *item = xasprintf("%s%s%s%s%s", s->identifier ? s->identifier : "", s->identifier ? ": " : "",
				       acme_problem_short(s), s->detail && *s->detail ? ": " : "",
				       s->detail ? s->detail : "");

		provider_text_append(out, n, i ? "; " : " [", item);
		free(item);
	}
	if (p->n_sub)
		provider_text_append(out, n, "", "]");
}

/* ---------- classification ---------- */

/*
 * What each ACME error type means for the certificate: its code and class,
 * and for a challenge's own error whether it is transient there (the
 * solver's record or file may not have been visible yet). Sorted by name
 * (util_bsearch_name).
 */
struct problem_kind {
	const char *name;
	int code;
	const char *cls;
	int challenge_transient;
};

static const struct problem_kind problem_kinds[] = {
	{"accountDoesNotExist", CS_EAUTH, STATE_FAIL_CONFIG, 0},
	{"alreadyReplaced", CS_ECONFLICT, STATE_FAIL_REJECTED, 0},
	{"alreadyRevoked", CS_ECONFLICT, STATE_FAIL_REJECTED, 0},
	{"badCSR", CS_EINVALID, STATE_FAIL_REJECTED, 0},
	{"badNonce", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1},
	{"badPublicKey", CS_EAUTH, STATE_FAIL_CONFIG, 0},
	{"badRevocationReason", CS_EINVALID, STATE_FAIL_REJECTED, 0},
	{"badSignatureAlgorithm", CS_EAUTH, STATE_FAIL_CONFIG, 0},
	{"caa", CS_EINVALID, STATE_FAIL_REJECTED, 0},
	{"compound", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1}, /* classified by its subproblems */
	{"connection", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1},
	{"dns", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1},
	{"externalAccountRequired", CS_EAUTH, STATE_FAIL_CONFIG, 0},
	{"incorrectResponse", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1},
	{"invalidContact", CS_EINVALID, STATE_FAIL_CONFIG, 0},
	{"invalidProfile", CS_EINVALID, STATE_FAIL_CONFIG, 0},
	{"malformed", CS_EINVALID, STATE_FAIL_REJECTED, 0},
	{"orderNotReady", CS_ECONFLICT, STATE_FAIL_TRANSIENT, 0},
	{"rateLimited", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1},
	{"rejectedIdentifier", CS_EINVALID, STATE_FAIL_REJECTED, 0},
	{"serverInternal", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1},
	{"tls", CS_ETRANSIENT, STATE_FAIL_TRANSIENT, 1},
	{"unauthorized", CS_EAUTH, STATE_FAIL_CONFIG, 1},
	{"unsupportedContact", CS_EINVALID, STATE_FAIL_CONFIG, 0},
	{"unsupportedIdentifier", CS_EINVALID, STATE_FAIL_REJECTED, 0},
	{"userActionRequired", CS_EAUTH, STATE_FAIL_CONFIG, 0},
};

/* Ranks for a compound problem: the subproblem that retrying cannot fix decides. */
static int class_rank(const char *cls)
{
	static const char *const order[] = {STATE_FAIL_TRANSIENT, STATE_FAIL_CONFIG, STATE_FAIL_REJECTED};

	for (int i = 0; i < 3; i++)
		if (!strcmp(cls, order[i]))
			return i;
	return 0;
}

/* The class of one problem (without its subproblems); challenge: it is a challenge's own error. */
static int problem_class_one(const struct acme_problem *p, int challenge, const char **cls)
{
	const char *name = acme_problem_short(p);
	size_t n = sizeof(problem_kinds) / sizeof(problem_kinds[0]), i = 0;
	int found = 0;

	if (p->status >= 500) {
		*cls = STATE_FAIL_TRANSIENT;
		return CS_ETRANSIENT;
	}
	if (name != p->type) /* an ACME URN */
		i = util_bsearch_name(problem_kinds, n, sizeof(problem_kinds[0]), name, &found);
	if (found) {
		if (challenge && problem_kinds[i].challenge_transient) {
			*cls = STATE_FAIL_TRANSIENT;
			return CS_ETRANSIENT;
		}
		*cls = problem_kinds[i].cls;
		return problem_kinds[i].code;
	}
	/* a type certsync does not know: judged by the HTTP status as for any provider */
	if (p->status == 401 || p->status == 403) {
		*cls = STATE_FAIL_CONFIG;
		return CS_EAUTH;
	}
	if (p->status >= 400 && p->status != 429 && p->status != 408) {
		*cls = STATE_FAIL_REJECTED;
		return CS_EINVALID;
	}
	*cls = STATE_FAIL_TRANSIENT;
	return CS_ETRANSIENT;
}

static int problem_class(const struct acme_problem *p, int challenge, const char **fail_class)
{
	const char *cls = STATE_FAIL_TRANSIENT, *sub_cls;
	int code = problem_class_one(p, challenge, &cls), sub_code;

	/* a compound (or any) problem with subproblems is as bad as its worst subproblem */
	for (size_t i = 0; i < p->n_sub; i++) {
		sub_code = problem_class_one(&p->sub[i], challenge, &sub_cls);
		if (class_rank(sub_cls) > class_rank(cls)) {
			cls = sub_cls;
			code = sub_code;
		}
	}
	*fail_class = cls;
	return code;
}

int acme_problem_class(const struct acme_problem *p, const char **fail_class)
{
	return problem_class(p, 0, fail_class);
}

int acme_challenge_problem_class(const struct acme_problem *p, const char **fail_class)
{
	return problem_class(p, 1, fail_class);
}
