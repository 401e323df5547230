/*
 * DigiCert request-token placement (digicert.md §4): a TXT record through
 * another issuer's DNS driver (at the name or at _dnsauth.<name>), or a line
 * in .well-known/pki-validation/fileauth.txt under the webroot, written
 * atomically. Every placement is journaled in state (with the value to find
 * it by) before it is made, so it is always removed, even after a crash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "digicert.h"

#define FILEAUTH_REL ".well-known/pki-validation/fileauth.txt"
#define FILEAUTH_MAX (64 * 1024)

static const char *base_name(const char *name)
{
	return strncmp(name, "*.", 2) ? name : name + 2; /* a wildcard is validated at its base */
}

char *digicert_dcv_location(const struct digicert *dc, enum digicert_method m, const char *name)
{
	const char *base = base_name(name);
	const char *at;
	char *root, *out;

	if (m == DC_DNS_TXT)
		return dc->dnsauth_label ? xasprintf("_dnsauth.%s", base) : xstrdup(base);
	if (!dc->webroot)
		return NULL;
	/* "{host}" in the webroot: one document root per host. */
	if ((at = strstr(dc->webroot, "{host}")))
		root = xasprintf("%.*s%s%s", (int)(at - dc->webroot), dc->webroot, base, at + 6);
	else
		root = xstrdup(dc->webroot);
	out = fsutil_join(root, FILEAUTH_REL);
	free(root);
	return out;
}

void digicert_token_clear(struct state_token *t)
{
	free(t->method);
	free(t->name);
	free(t->location);
	free(t->ref);
	free(t->issuer);
	memset(t, 0, sizeof(*t));
}

/* The issuer whose DNS driver places TXT records, or an error naming it. */
static int dns_issuer(const struct step_ctx *ctx, const char *name, const struct issuer **out)
{
	const struct issuer *is = name ? config_issuer(ctx->cfg, name) : NULL;

	if (!is || !is->ops->dns)
		return cs_error(CS_EINVALID, "%s: DNS issuer \"%s\" is not configured or has no DNS driver",
				ctx->rec->name, name ? name : "(none)");
	*out = is;
	return 0;
}

/* Reads fileauth.txt (missing = empty). */
static int fileauth_read(const char *path, struct buf *b)
{
	int rc = fsutil_read_file(path, FILEAUTH_MAX, b);

	if (rc == CS_ENOTFOUND) {
		buf_init(b, 0);
		buf_append(b, "", 0);
		rc = 0;
	}
	return rc;
}

/* Rewrites fileauth.txt with token added (add) or every line equal to it removed; an empty file is deleted. */
static int fileauth_edit(struct digicert *dc, const char *path, const char *token, int add)
{
	struct buf in = BUF_INIT, out = BUF_INIT;
	char *dir = fsutil_dirname(path);
	size_t tl = strlen(token);
	int rc, found = 0;

	pthread_mutex_lock(&dc->file_mu);
	if ((rc = fileauth_read(path, &in)))
		goto out;
	buf_init(&out, 0);
	for (const char *p = in.data; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		int match = n == tl && !memcmp(p, token, tl);

		found |= match;
		if (n && (!match || add)) {
			buf_append(&out, p, n);
			buf_append(&out, "\n", 1);
		}
		p += n + (nl ? 1 : 0);
	}
	if (add && !found) {
		buf_append(&out, token, tl);
		buf_append(&out, "\n", 1);
	}
	if (add) {
		if ((rc = fsutil_mkdir_p(dir, 0755)) == 0)
			rc = fsutil_write_atomic(path, out.data, out.len, 0644);
	} else if (!out.len) {
		if (unlink(path) && errno != ENOENT)
			rc = cs_error(CS_ETRANSIENT, "cannot remove %s: %s", path, strerror(errno));
	} else if (found) {
		rc = fsutil_write_atomic(path, out.data, out.len, 0644);
	}
out:
	pthread_mutex_unlock(&dc->file_mu);
	buf_free(&in);
	buf_free(&out);
	free(dir);
	return rc;
}

int digicert_ref_is_intent(const char *ref)
{
	return ref && !strncmp(ref, DIGICERT_REF_INTENT, strlen(DIGICERT_REF_INTENT));
}

int digicert_dcv_intent(struct step_ctx *ctx, struct digicert *dc, enum digicert_method m, const char *name,
			const char *token, struct state_token *t)
{
	const struct issuer *is = NULL;
	char *loc = digicert_dcv_location(dc, m, name);
	int rc;

	memset(t, 0, sizeof(*t));
	if (!loc)
		return cs_error(CS_EINVALID, "%s: http-token needs issuers.%s.validation.webroot", ctx->rec->name,
				dc->name);
	if (m == DC_DNS_TXT && (rc = dns_issuer(ctx, dc->dns_issuer, &is))) {
		free(loc);
		return rc;
	}
	t->method = xstrdup(m == DC_DNS_TXT ? "dns-txt-token" : "http-token");
	t->name = xstrdup(name);
	t->location = loc;
	t->issuer = is ? xstrdup(is->name) : NULL;
	/* The value to find it by: a TXT record is not known by its id yet; a fileauth.txt line is its value. */
	t->ref = m == DC_DNS_TXT ? xasprintf("%s%s", DIGICERT_REF_INTENT, token) : xstrdup(token);
	t->placed_at = ctx->now;
	return 0;
}

int digicert_dcv_place(struct step_ctx *ctx, struct digicert *dc, const struct state_token *t, const char *token,
		       char **ref)
{
	const struct issuer *is;
	int rc;

	*ref = NULL;
	if (util_streq(t->method, "http-token")) {
		if ((rc = fileauth_edit(dc, t->location, token, 1)))
			return rc;
		*ref = xstrdup(token); /* the line to take out again */
		return 0;
	}
	if ((rc = dns_issuer(ctx, t->issuer, &is)))
		return rc;
	return is->ops->dns->txt_create(is, t->location, token, ref);
}

int digicert_dcv_remove(struct step_ctx *ctx, struct digicert *dc, const struct state_token *t, const char *token)
{
	const struct issuer *is;
	int rc;

	if (util_streq(t->method, "http-token"))
		return fileauth_edit(dc, t->location, t->ref ? t->ref : token ? token : "", 0);
	if ((rc = dns_issuer(ctx, t->issuer, &is)))
		return rc;
	if (digicert_ref_is_intent(t->ref)) /* placed (or not) before its id was journaled: find it by name/value */
		return is->ops->dns->txt_delete(is, t->location, t->ref + strlen(DIGICERT_REF_INTENT), NULL);
	return is->ops->dns->txt_delete(is, t->location, token ? token : "", t->ref);
}
