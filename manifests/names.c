/* Validation of DNS names, object names, labels and relative paths. */
#include <ctype.h>
#include <string.h>

#include "manifest.h"

const char *manifest_check_dns_name(const char *name, int allow_wildcard)
{
	size_t len = strlen(name), labels = 0;
	const char *p = name;

	if (len && name[len - 1] == '.')
		len--;
	if (!len)
		return "empty name";
	if (len > 253)
		return "longer than 253 characters";
	if (!strncmp(p, "*.", 2)) {
		if (!allow_wildcard)
			return "wildcards are not allowed here";
		p += 2;
	} else if (strchr(name, '*')) {
		return "a wildcard must be the whole leftmost label (*.example.com)";
	}
	while (p < name + len) {
		const char *dot = memchr(p, '.', (size_t)(name + len - p));
		size_t l = dot ? (size_t)(dot - p) : (size_t)(name + len - p);

		if (l == 0)
			return "empty label (two dots in a row, or a leading dot)";
		if (l > 63)
			return "a label is longer than 63 characters";
		if (p[0] == '-' || p[l - 1] == '-')
			return "a label starts or ends with '-'";
		for (size_t i = 0; i < l; i++)
			if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_')
				return "only letters, digits, '-' and '_' are allowed in a label";
		labels++;
		p += l + (dot ? 1 : 0);
		if (!dot)
			break;
	}
	if (strncmp(name, "*.", 2) == 0 && labels < 2)
		return "a wildcard needs at least two labels after it (*.example.com)";
	return NULL;
}

const char *manifest_check_relpath(const char *path)
{
	const char *p = path;

	if (!*path)
		return "empty path";
	if (strlen(path) > 255)
		return "longer than 255 characters";
	if (path[0] == '/')
		return "must be relative to the output root, not absolute";
	for (const char *c = path; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._-/", *c))
			return "only letters, digits, '.', '_', '-' and '/' are allowed";
	while (*p) {
		size_t l = strcspn(p, "/");

		if (l == 2 && !strncmp(p, "..", 2))
			return "must not contain \"..\" (it would leave the output root)";
		if (l > 0 && p[0] == '.' && !(l == 1))
			return "a path component must not start with '.' (reserved for certsync's own files)";
		p += l;
		while (*p == '/')
			p++;
	}
	return NULL;
}
