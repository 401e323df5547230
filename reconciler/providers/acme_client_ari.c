/* The protocol client's ARI requests (RFC 9773: certificate id, renewalInfo) and revocation (RFC 8555 §7.6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/util.h"
#include "acme_client_int.h"
#include "acme_wire.h"

int acme_ari_cert_id(const char *cert_pem, size_t len, char **out)
{
	return jose_ari_cert_id(cert_pem, len, out);
}

int acme_ari_get(struct acme_client *c, const char *cert_id, struct acme_renewal_info *out)
{
	const struct acme_directory *d;
	struct acme_wire w = {c->issuer, "acme renewalInfo", NULL};
	struct http_response res;
	char *url = NULL;
	int rc;

	if ((rc = acme_client_directory(c, &d)))
		return rc;
	if (!d->renewal_info)
		return cs_error(CS_ENOTFOUND, "issuer %s: the ACME server offers no renewal information (ARI)",
				c->issuer);
	/* the id is base64url "." base64url: nothing to escape, but refuse anything else */
	if (!*cert_id || strlen(cert_id) > 512 ||
	    strspn(cert_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(cert_id))
		return cs_error(CS_EINVALID, "issuer %s: \"%.80s\" is not an ARI certificate identifier", c->issuer,
				cert_id);
	url = xasprintf("%s%s%s", d->renewal_info, util_has_suffix(d->renewal_info, "/") ? "" : "/", cert_id);
	w.url = url;
	if (!(rc = acme_client_get(c, "acme renewalInfo", url, NULL, &res))) {
		if ((rc = acme_renewal_info_parse(&w, res.body.data, res.body.len, out)))
			provider_fail(STATE_FAIL_TRANSIENT, rc);
		else
			out->retry_after = acme_retry_after_clamp(res.retry_after, util_now());
	}
	http_response_free(&res);
	free(url);
	return rc;
}

int acme_revoke(struct acme_client *c, const char *cert_pem, size_t len, int reason)
{
	const struct acme_directory *d;
	struct http_response res;
	struct buf der = BUF_INIT;
	char *b64 = NULL, *payload = NULL;
	int rc;

	if (reason < 0 || reason > 10 || reason == 7)
		return cs_error(CS_EINVALID, "issuer %s: %d is not a CRL reason code", c->issuer, reason);
	if ((rc = acme_client_directory(c, &d)))
		return rc;
	if (!d->revoke_cert)
		return cs_error(CS_ENOTFOUND, "issuer %s: the ACME server offers no revocation (no revokeCert)",
				c->issuer);
	if ((rc = jose_pem_to_der(cert_pem, len, "CERTIFICATE", &der))) {
		rc = cs_error(rc, "issuer %s: revoke: %s", c->issuer, cs_errmsg());
		goto out;
	}
	b64 = jose_b64url(der.data, der.len);
	payload = xasprintf("{\"certificate\":\"%s\",\"reason\":%d}", b64, reason);
	rc = acme_client_post(c, "acme revokeCert", d->revoke_cert, payload, NULL, &res, NULL);
	http_response_free(&res);
out:
	buf_free(&der);
	free(b64);
	free(payload);
	return rc;
}
