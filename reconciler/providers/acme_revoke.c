/* ACME revocation (RFC 8555 §7.6) outside the steps: reasons by name, the installed certificate, revokeOnRemove. */
#include "acme.h"

#include <stdlib.h>
#include <string.h>

#include "../../state/keystore.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../backends.h"

#define REVOKE_REASON_REMOVED 5 /* cessationOfOperation */

static const struct {
	const char *name;
	int code; /* RFC 5280 CRLReason */
} revoke_reasons[] = {
	{"unspecified", 0}, {"keyCompromise", 1},	 {"affiliationChanged", 3},
	{"superseded", 4},  {"cessationOfOperation", 5},
};

int acme_revoke_reason(const char *name, int *code)
{
	for (size_t i = 0; i < sizeof(revoke_reasons) / sizeof(revoke_reasons[0]); i++)
		if (name && !strcmp(name, revoke_reasons[i].name)) {
			*code = revoke_reasons[i].code;
			return 0;
		}
	return cs_error(CS_EINVALID, "unknown revocation reason \"%s\" (known: %s)", name ? name : "",
			acme_revoke_reason_list());
}

const char *acme_revoke_reason_list(void)
{
	return "unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation";
}

/* 1 when pem's first certificate is the one rec records. */
static int revoke_is_recorded(const struct state_cert *rec, const struct buf *pem)
{
	struct crypto_cert *cert = NULL;
	struct crypto_cert_info info;
	int same = 0;

	memset(&info, 0, sizeof(info));
	if (!pem->len || crypto_cert_from_pem(pem->data, pem->len, rec->name, &cert) || crypto_cert_info(cert, &info))
		goto out;
	same = rec->fingerprint && !strcmp(info.fingerprint, rec->fingerprint);
out:
	crypto_cert_info_free(&info);
	crypto_cert_free(cert);
	return same;
}

int acme_installed_cert(const struct config *cfg, const struct state_cert *rec, struct buf *pem)
{
	struct keystore *ks = NULL;
	struct keystore_item it;
	char *path = NULL;
	int rc = CS_ENOTFOUND;

	keystore_item_init(&it);
	if (!rec->serial || !rec->fingerprint)
		return cs_error(CS_ENOTFOUND, "%s: no certificate is installed", rec->name);
	if (backends_open_keystore(cfg, &ks) == 0 && keystore_get(ks, rec->name, rec->serial, &it) == 0 &&
	    revoke_is_recorded(rec, &it.cert)) {
		buf_clear(pem);
		buf_append(pem, it.cert.data, it.cert.len);
		rc = 0;
		goto out;
	}
	if (rec->output_dir) {
		struct buf b = BUF_INIT;

		path = xasprintf("%s/%s/tls.crt", cfg->output_root, rec->output_dir);
		if (fsutil_read_file(path, 1024 * 1024, &b) == 0 && revoke_is_recorded(rec, &b)) {
			buf_clear(pem);
			buf_append(pem, b.data, b.len);
			rc = 0;
		}
		buf_free(&b);
	}
	if (rc)
		rc = cs_error(CS_ENOTFOUND,
			      "%s: the installed certificate (serial %s) is neither in the key store nor in %s",
			      rec->name, rec->serial, path ? path : "its outputs");
out:
	keystore_item_wipe(&it);
	keystore_close(ks);
	free(path);
	return rc;
}

/* The account key from the engine's key store, for a step (never created here). */
static int revoke_step_key(void *arg, const char *slot, struct buf *out)
{
	return engine_issuer_secret_get(arg, slot, out);
}

int acme_revoke_on_remove(struct step_ctx *ctx, struct acme *a)
{
	struct acme_keys k = {revoke_step_key, NULL, ctx};
	struct acme_client *c = NULL;
	struct buf pem = BUF_INIT;
	int on = a->revoke_on_remove < 0 ? ctx->cfg->policy.revoke_on_remove : a->revoke_on_remove;
	int rc;

	if (!on || !ctx->rec->fingerprint || util_streq(state_cert_id(ctx->rec, ACME_ID_REVOKED), ctx->rec->serial))
		return 0;
	if ((rc = acme_installed_cert(ctx->cfg, ctx->rec, &pem)) == CS_ENOTFOUND) {
		log_emit(LV_WARN, &ctx->log, "revokeOnRemove: nothing to revoke: %s", cs_errmsg());
		return 0;
	}
	if (rc || (rc = acme_session_with(a, &k, &c)))
		goto out;
	rc = acme_revoke(c, pem.data, pem.len, REVOKE_REASON_REMOVED);
	if (rc && strstr(cs_errmsg(), "alreadyRevoked")) {
		log_emit(LV_INFO, &ctx->log, "revokeOnRemove: serial %s was already revoked", ctx->rec->serial);
		rc = 0;
	}
	if (!rc) {
		state_cert_set_id(ctx->rec, ACME_ID_REVOKED, ctx->rec->serial);
		state_cert_event(ctx->rec, ctx->now, "revoked serial %s (cessationOfOperation): revokeOnRemove",
				 ctx->rec->serial);
		log_emit(LV_INFO, &ctx->log, "revoked serial %s (revokeOnRemove, reason cessationOfOperation)",
			 ctx->rec->serial);
		engine_journal(ctx); /* a crash before the record goes must not revoke (and fail) twice */
	}
out:
	buf_free(&pem);
	return rc;
}
