/* SSH remotes without libgit2: URL forms (ssh://, scp-like) and host keys checked against known_hosts text. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gitsrc.h"

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/util.h"

#define GITSRC_KH_MAX_LINE 16384

static const char *const gitsrc_ssh_schemes[] = {"ssh://", "ssh+git://", "git+ssh://"};

int gitsrc_is_scp_like(const char *s)
{
	const char *colon, *slash;

	if (!s || !*s || strstr(s, "://") || *s == '/' || *s == '.')
		return 0;
	if (*s == '[' || strchr(s, '@')) {
		const char *host = strchr(s, '@') ? strchr(s, '@') + 1 : s;

		if (*host == '[') {
			const char *close = strchr(host, ']');

			return close && close[1] == ':' && close[2];
		}
	}
	colon = strchr(s, ':');
	slash = strchr(s, '/');
	/* git's rule: a colon before the first slash makes "host:path" a remote, not a local path. */
	return colon && colon != s && colon[1] && (!slash || colon < slash);
}

int gitsrc_is_ssh_url(const char *s)
{
	if (!s)
		return 0;
	for (size_t i = 0; i < sizeof(gitsrc_ssh_schemes) / sizeof(gitsrc_ssh_schemes[0]); i++)
		if (!strncasecmp(s, gitsrc_ssh_schemes[i], strlen(gitsrc_ssh_schemes[i])))
			return 1;
	return gitsrc_is_scp_like(s);
}

int gitsrc_is_remote(const char *s)
{
	return s && (strstr(s, "://") != NULL || gitsrc_is_scp_like(s));
}

void gitsrc_ssh_url_free(struct gitsrc_ssh_url *u)
{
	free(u->user);
	free(u->host);
	free(u->path);
	memset(u, 0, sizeof(*u));
}

/* host or [host] at p up to one of stop; fills u->host (lower-cased) and returns the end, or NULL. */
static const char *gitsrc_ssh_host(const char *p, const char *stop, struct gitsrc_ssh_url *u)
{
	size_t n;

	if (*p == '[') {
		const char *close = strchr(p, ']');

		if (!close || close == p + 1)
			return NULL;
		u->host = xstrndup(p + 1, (size_t)(close - p - 1));
		p = close + 1;
	} else {
		n = strcspn(p, stop);
		if (!n)
			return NULL;
		u->host = xstrndup(p, n);
		p += n;
	}
	for (char *c = u->host; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return p;
}

int gitsrc_ssh_parse(const char *url, struct gitsrc_ssh_url *out)
{
	struct gitsrc_ssh_url u;
	const char *p = url, *at, *sep;

	memset(&u, 0, sizeof(u));
	u.port = 22;
	if (!gitsrc_is_ssh_url(url))
		return cs_error(CS_EINVALID, "git: %s: not an SSH URL", url ? url : "");
	sep = strstr(p, "://");
	if (sep) {
		p = sep + 3;
		at = memchr(p, '@', strcspn(p, "/"));
	} else {
		at = memchr(p, '@', strcspn(p, ":["));
	}
	if (at) {
		if (memchr(p, ':', (size_t)(at - p))) {
			gitsrc_ssh_url_free(&u);
			return cs_error(
				CS_EINVALID,
				"git: SSH URL with a password: not supported (use source.sshKey, a deploy key)");
		}
		u.user = xstrndup(p, (size_t)(at - p));
		p = at + 1;
	}
	if (!(p = gitsrc_ssh_host(p, sep ? ":/" : ":", &u)))
		goto bad;
	if (sep && *p == ':') {
		char *end;
		unsigned long port = strtoul(p + 1, &end, 10);

		if (end == p + 1 || port == 0 || port > 65535 || *end != '/')
			goto bad;
		u.port = (unsigned)port;
		p = end;
	} else if (!sep) {
		if (*p != ':')
			goto bad;
		p++;
	}
	if (!*p || (sep && *p != '/'))
		goto bad;
	u.path = xstrdup(p);
	*out = u;
	return 0;
bad:
	gitsrc_ssh_url_free(&u);
	return cs_error(CS_EINVALID,
			"git: %s: not a valid SSH URL (expected ssh://[user@]host[:port]/path or user@host:path)", url);
}

/* The name known_hosts files use: "host" on port 22, "[host]:port" elsewhere. */
static char *gitsrc_kh_name(const char *host, unsigned port)
{
	return port == 22 ? xstrdup(host) : xasprintf("[%s]:%u", host, port);
}

/* Standard base64 (known_hosts, fingerprints) through the base64url codec. */
static int gitsrc_b64_decode(const char *s, size_t n, struct buf *out)
{
	char *t = xstrndup(s, n);
	int rc;

	for (char *c = t; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	rc = jose_b64url_decode(t, out);
	free(t);
	cs_error_clear();
	return rc;
}

void gitsrc_ssh_fingerprint(const unsigned char sha256[32], char out[GITSRC_FP_LEN])
{
	char *b = jose_b64url(sha256, 32);

	for (char *c = b; *c; c++)
		*c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
	snprintf(out, GITSRC_FP_LEN, "SHA256:%s", b);
	free(b);
}

/* One hashed name "|1|salt|hash": HMAC-SHA1(salt, name) == hash. */
static int gitsrc_kh_hashed_match(const char *pat, size_t n, const char *name)
{
	struct buf salt = BUF_INIT, hash = BUF_INIT;
	const char *bar = memchr(pat + 3, '|', n - 3);
	unsigned char mac[20];
	int ok = 0;

	if (bar && !gitsrc_b64_decode(pat + 3, (size_t)(bar - pat - 3), &salt) &&
	    !gitsrc_b64_decode(bar + 1, (size_t)(pat + n - bar - 1), &hash) && hash.len == 20) {
		crypto_hmac_sha1(salt.data, salt.len, name, strlen(name), mac);
		ok = !memcmp(mac, hash.data, 20);
	}
	buf_free(&salt);
	buf_free(&hash);
	return ok;
}

/* OpenSSH's host patterns: '*' and '?' only ('[' is literal, as in "[host]:port"). */
static int gitsrc_kh_glob(const char *p, const char *s)
{
	for (; *p; p++, s++) {
		if (*p == '*') {
			for (;; s++) {
				if (gitsrc_kh_glob(p + 1, s))
					return 1;
				if (!*s)
					return 0;
			}
		}
		if (!*s || (*p != '?' && *p != *s))
			return 0;
	}
	return !*s;
}

/* The host field of a line ("a,b,!c", or one hashed name) against name: 1 if it matches. */
static int gitsrc_kh_hosts_match(const char *field, size_t n, const char *name)
{
	int hit = 0;

	if (n > 3 && !strncmp(field, "|1|", 3))
		return gitsrc_kh_hashed_match(field, n, name);
	for (size_t i = 0; i < n;) {
		size_t len = strcspn(field + i, ",");
		char *pat;
		int neg;

		if (i + len > n)
			len = n - i;
		pat = xstrndup(field + i, len);
		neg = pat[0] == '!';
		for (char *c = pat; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		if (gitsrc_kh_glob(pat + neg, name)) {
			if (neg) {
				free(pat);
				return 0; /* a negated match excludes the host from this line */
			}
			hit = 1;
		}
		free(pat);
		i += len + 1;
	}
	return hit;
}

/* The key type named at the start of an SSH public key blob ("ssh-ed25519"), or "". */
static void gitsrc_blob_type(const unsigned char *blob, size_t len, char *out, size_t out_len)
{
	uint32_t n;

	out[0] = '\0';
	if (!blob || len < 4)
		return;
	n = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 | (uint32_t)blob[2] << 8 | blob[3];
	if (n && n < out_len && n <= len - 4)
		snprintf(out, out_len, "%.*s", (int)n, (const char *)blob + 4);
}

struct gitsrc_kh_scan {
	const char *name;
	const unsigned char *key; /* presented raw blob, or NULL */
	size_t key_len;
	unsigned char sha[32]; /* SHA-256 of the presented key */
	int known, revoked, other;
	char other_fp[GITSRC_FP_LEN];
	char other_type[64];
};

/* One known_hosts line: notes a match, a revocation or another key for the host. */
static void gitsrc_kh_line(struct gitsrc_kh_scan *s, const char *line, size_t len)
{
	const char *f[4];
	size_t fl[4], k = 0, i = 0;
	int revoked = 0;
	struct buf blob = BUF_INIT;
	unsigned char sha[32];

	while (k < 4 && i < len) {
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i >= len)
			break;
		f[k] = line + i;
		while (i < len && line[i] != ' ' && line[i] != '\t')
			i++;
		fl[k] = (size_t)(line + i - f[k]);
		k++;
	}
	if (k && f[0][0] == '#')
		return;
	if (k && f[0][0] == '@') {
		/* @cert-authority lines sign host certificates: not supported, so never a match. */
		if (fl[0] != 8 || strncmp(f[0], "@revoked", 8))
			return;
		revoked = 1;
		memmove(f, f + 1, 3 * sizeof(f[0]));
		memmove(fl, fl + 1, 3 * sizeof(fl[0]));
		k--;
	}
	if (k < 3 || !gitsrc_kh_hosts_match(f[0], fl[0], s->name) || gitsrc_b64_decode(f[2], fl[2], &blob))
		return;
	crypto_sha256(blob.data, blob.len, sha);
	if (s->key ? blob.len == s->key_len && !memcmp(blob.data, s->key, blob.len) : !memcmp(sha, s->sha, 32)) {
		if (revoked)
			s->revoked = 1;
		else
			s->known = 1;
	} else if (!revoked && !s->other) {
		s->other = 1;
		gitsrc_ssh_fingerprint(sha, s->other_fp);
		snprintf(s->other_type, sizeof(s->other_type), "%.*s", (int)(fl[1] < 63 ? fl[1] : 63), f[1]);
	}
	buf_free(&blob);
}

int gitsrc_known_hosts_check(const char *known_hosts, const char *host, unsigned port, const unsigned char *key,
			     size_t key_len, const unsigned char *sha256, char *why, size_t why_len)
{
	struct gitsrc_kh_scan s;
	char fp[GITSRC_FP_LEN], type[64];
	const char *p = known_hosts ? known_hosts : "";

	memset(&s, 0, sizeof(s));
	s.name = gitsrc_kh_name(host, port);
	s.key = key;
	s.key_len = key_len;
	if (key)
		crypto_sha256(key, key_len, s.sha);
	else
		memcpy(s.sha, sha256, 32);
	while (*p) {
		size_t n = strcspn(p, "\n");

		if (n < GITSRC_KH_MAX_LINE)
			gitsrc_kh_line(&s, p, n && p[n - 1] == '\r' ? n - 1 : n);
		p += n + (p[n] == '\n');
	}
	gitsrc_ssh_fingerprint(s.sha, fp);
	gitsrc_blob_type(key, key_len, type, sizeof(type));
	if (s.revoked)
		snprintf(why, why_len, "the host key of %s (%s%s%s) is marked @revoked in source.knownHosts", s.name,
			 type, *type ? " " : "", fp);
	else if (!s.known && s.other && *type && strcmp(type, s.other_type))
		snprintf(why, why_len,
			 "the host key of %s (%s %s) is not in source.knownHosts, which has only a %s key for it; "
			 "check this fingerprint with the server's operator and add the host's %s line",
			 s.name, type, fp, s.other_type, type);
	else if (!s.known && s.other)
		snprintf(why, why_len,
			 "the host key of %s changed: it presents %s%s%s, but source.knownHosts has %s %s for it; "
			 "refusing (a changed host key can be an attack: check with the server's operator, then "
			 "update source.knownHosts)",
			 s.name, type, *type ? " " : "", fp, s.other_type, s.other_fp);
	else if (!s.known) {
		char hint[300];

		if (port == 22)
			snprintf(hint, sizeof(hint), "ssh-keyscan %s", host);
		else
			snprintf(hint, sizeof(hint), "ssh-keyscan -p %u %s", port, host);
		snprintf(why, why_len,
			 "the host key of %s (%s%s%s) is not in source.knownHosts; check this fingerprint with the "
			 "server's operator and add the host's line (%s)",
			 s.name, type, *type ? " " : "", fp, hint);
	}
	free((char *)s.name);
	return s.known && !s.revoked ? 0 : -1;
}
