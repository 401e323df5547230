/* Validation of DNS names, object names, labels and relative output paths (ASCII rules, locale-free). */
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "internal.h"

#define MAX_DNS_NAME 253
#define MAX_DNS_LABEL 63
#define MAX_LABEL 63
#define MAX_RELPATH 255

static int is_lower(int c)
{
	return c >= 'a' && c <= 'z';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum(int c)
{
	return is_lower(c) || is_digit(c) || (c >= 'A' && c <= 'Z');
}

static int to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* One DNS label (letters, digits, '-', not at either end); NULL if valid. */
static const char *dns_label_check(const char *p, size_t l)
{
	if (l == 0)
		return "empty label (two dots in a row, or a leading dot)";
	if (l > MAX_DNS_LABEL)
		return "a label is longer than 63 characters";
	for (size_t i = 0; i < l; i++) {
		if ((unsigned char)p[i] >= 0x80)
			return "only ASCII letters, digits and '-' are allowed (write internationalised names in "
			       "their xn-- form)";
		if (p[i] == '*')
			return "a wildcard must be the whole leftmost label (*.example.com)";
		if (!is_alnum(p[i]) && p[i] != '-')
			return "only letters, digits and '-' are allowed in a label";
	}
	if (p[0] == '-' || p[l - 1] == '-')
		return "a label starts or ends with '-'";
	return NULL;
}

const char *manifest_check_dns_name(const char *name, int allow_wildcard)
{
	size_t len = strlen(name), labels = 0, l;
	const char *p = name, *end, *last = name;
	int wildcard = 0, all_digits = 1;

	if (len && name[len - 1] == '.')
		len--; /* the absolute form "example.com." is the same name */
	if (!len)
		return "empty name";
	if (len > MAX_DNS_NAME)
		return "longer than 253 characters";
	end = name + len;
	if (len >= 2 && !strncmp(name, "*.", 2)) {
		if (!allow_wildcard)
			return "wildcards are not allowed here";
		wildcard = 1;
		p += 2;
	} else if (len == 1 && name[0] == '*') {
		return "a wildcard needs at least two labels after it (*.example.com)";
	}
	for (;;) {
		const char *dot = memchr(p, '.', (size_t)(end - p)), *why;

		l = dot ? (size_t)(dot - p) : (size_t)(end - p);
		if ((why = dns_label_check(p, l)))
			return why;
		labels++;
		last = p;
		if (!dot)
			break;
		p = dot + 1;
	}
	for (size_t i = 0; i < l; i++)
		all_digits &= is_digit(last[i]);
	if (all_digits)
		return "the last label is all digits (an IP address or a number is not a DNS name)";
	if (wildcard && labels < 2)
		return "a wildcard needs at least two labels after it (*.example.com)";
	return NULL;
}

char *names_normalise_dns(const char *s)
{
	size_t n = strlen(s);
	char *p;

	if (n && s[n - 1] == '.')
		n--;
	p = xstrndup(s, n);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)to_lower((unsigned char)p[i]);
	return p;
}

const char *names_check_object_name(const char *s)
{
	size_t n = strlen(s);

	if (!n)
		return "must not be empty";
	if (n > MANIFEST_MAX_NAME)
		return "longer than 253 characters";
	for (size_t i = 0; i < n; i++)
		if (!is_lower(s[i]) && !is_digit(s[i]) && s[i] != '-' && s[i] != '.')
			return "only lowercase letters, digits, '-' and '.' are allowed";
	/* each dot-separated part starts and ends with a letter or digit (DNS-1123 subdomain) */
	for (size_t i = 0; i < n; i++) {
		int start = i == 0 || s[i - 1] == '.', stop = i + 1 == n || s[i + 1] == '.';

		if (s[i] == '.' && start)
			return "must not have empty parts (a leading dot or two dots in a row)";
		if ((start || stop) && (s[i] == '-' || s[i] == '.'))
			return "each dot-separated part must start and end with a lowercase letter or digit";
	}
	return NULL;
}

/* The name part of a label key, or a label value: alnum at both ends, [-_.A-Za-z0-9] inside, ≤ 63. */
static const char *label_word_check(const char *s)
{
	size_t n = strlen(s);

	if (n > MAX_LABEL)
		return "is longer than 63 characters";
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return "may only hold letters, digits, '-', '_' and '.'";
	if (n && (!is_alnum(s[0]) || !is_alnum(s[n - 1])))
		return "must start and end with a letter or digit";
	return NULL;
}

const char *names_check_label_key(const char *s)
{
	const char *slash = strchr(s, '/'), *name = s;

	if (slash) {
		char *prefix = xstrndup(s, (size_t)(slash - s));
		const char *why = names_check_object_name(prefix);

		free(prefix);
		if (why)
			return "has a prefix (before '/') that is not a lowercase DNS subdomain";
		name = slash + 1;
	}
	if (!*name)
		return "must not be empty";
	return label_word_check(name);
}

const char *names_check_label_value(const char *s)
{
	return label_word_check(s);
}

const char *manifest_check_relpath(const char *path)
{
	const char *p = path;
	int named = 0; /* a component other than "." */

	if (!*path)
		return "empty path";
	if (strlen(path) > MAX_RELPATH)
		return "longer than 255 characters";
	if (path[0] == '/')
		return "must be relative to the output root, not absolute";
	for (const char *c = path; *c; c++)
		if (!is_alnum(*c) && !strchr("._-/", *c))
			return "only letters, digits, '.', '_', '-' and '/' are allowed";
	while (*p) {
		size_t l = strcspn(p, "/");

		if (l == 2 && !strncmp(p, "..", 2))
			return "must not contain \"..\" (it would leave the output root)";
		if (l > 1 && p[0] == '.')
			return "a path component must not start with '.' (reserved for certsync's own files)";
		named |= l > 1 || (l == 1 && p[0] != '.');
		p += l;
		while (*p == '/')
			p++;
	}
	if (!named)
		return "names the output root itself (give a directory under it)";
	return NULL;
}

char *names_clean_path(const char *p)
{
	char *out = xmalloc(strlen(p) + 1), *o = out;

	while (*p) {
		size_t l = strcspn(p, "/");

		if (l && !(l == 1 && p[0] == '.')) {
			if (o != out)
				*o++ = '/';
			memcpy(o, p, l);
			o += l;
		}
		p += l;
		while (*p == '/')
			p++;
	}
	*o = '\0';
	return out;
}
