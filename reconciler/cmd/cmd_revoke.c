/* certsync revoke NAME [--reason R]: revokes an ACME certificate at its CA; the next apply replaces it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../state/keystore.h"
#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../backends.h"
#include "../providers/acme.h"
#include "cmd.h"

enum { OPT_REASON = OPT__GLOBAL_END };

struct revoke_args {
	const char *name;
	const char *reason;
	int code;
};

static int revoke_parse(struct cmd_globals *g, int argc, char **argv, struct revoke_args *a)
{
	static const struct option opts[] = {
		CMD_GLOBAL_OPTIONS,
		{"reason", required_argument, NULL, OPT_REASON},
		{NULL, 0, NULL, 0},
	};
	int opt;

	memset(a, 0, sizeof(*a));
	a->reason = "unspecified";
	optind = 1;
	while ((opt = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		int r = cmd_global_opt(g, &cmd_revoke, opt, optarg);

		if (r < 0)
			return -1;
		if (r)
			continue;
		if (opt != OPT_REASON)
			return cmd_usage_error(&cmd_revoke, "unknown option");
		a->reason = optarg;
	}
	if (acme_revoke_reason(a->reason, &a->code))
		return cmd_usage_error(&cmd_revoke, "--reason: %s", cs_errmsg());
	if (optind >= argc)
		return cmd_usage_error(&cmd_revoke, "which certificate? (its manifest name)");
	a->name = argv[optind++];
	if (optind < argc)
		return cmd_usage_error(&cmd_revoke, "unexpected argument \"%s\"", argv[optind]);
	return 0;
}

/* The account key in the key store entry "_issuer.<name>" (certsync revoke never creates one). */
struct revoke_keys {
	struct keystore *ks;
	char *entry;
};

static int revoke_key_get(void *arg, const char *slot, struct buf *out)
{
	struct revoke_keys *k = arg;
	int rc = keystore_get_pending(k->ks, k->entry, slot, out);

	if (rc == CS_ENOTFOUND)
		return cs_error(CS_ENOTFOUND, "%s: no %s in the key store", k->entry, slot);
	return rc;
}

/* The record and its ACME issuer, or the error printed. */
static int revoke_find(const struct config *cfg, const struct state *st, const char *name, struct state_cert **rec,
		       const struct issuer **is)
{
	const struct provider_ops *acme_ops = provider_find("acme");

	*rec = state_cert_get(st, name);
	if (!*rec)
		return cmd_fail("%s: no certificate of that name in the state (certsync state list shows them)", name);
	*is = (*rec)->issuer ? config_issuer(cfg, (*rec)->issuer) : NULL;
	if (!*is)
		return cmd_fail("%s: its issuer %s is not in the config", name,
				(*rec)->issuer ? (*rec)->issuer : "(none)");
	if (!acme_ops || (*is)->ops != acme_ops)
		return cmd_fail(
			"%s: issued by %s (type %s): certsync revoke revokes certificates of acme issuers only; "
			"revoke it with that provider",
			name, (*is)->name, (*is)->ops->type);
	if (!(*rec)->fingerprint || !(*rec)->serial)
		return cmd_fail("%s: no certificate is installed yet: nothing to revoke", name);
	return 0;
}

/* Revokes at the CA with the issuer's account key. An already revoked certificate is success. */
static int revoke_at_ca(const struct config *cfg, struct keystore *ks, const struct issuer *is,
			const struct state_cert *rec, int code)
{
	struct revoke_keys rk = {ks, xasprintf("%s%s", ENGINE_ISSUER_ENTRY, is->name)};
	struct acme_keys k = {revoke_key_get, NULL, &rk};
	struct acme *a = is->priv;
	struct acme_client *c = NULL;
	struct buf pem = BUF_INIT;
	int rc;

	if (!(rc = acme_installed_cert(cfg, rec, &pem)) && !(rc = acme_session_with(a, &k, &c))) {
		rc = acme_revoke(c, pem.data, pem.len, code);
		if (rc && strstr(cs_errmsg(), "alreadyRevoked")) {
			printf("%s: serial %s was already revoked at the CA.\n", rec->name, rec->serial);
			rc = 0;
		}
	}
	if (rc)
		cmd_fail("%s", cs_errmsg());
	acme_session_end(a);
	buf_free(&pem);
	free(rk.entry);
	return rc;
}

static int revoke_run(struct cmd_globals *g, int argc, char **argv)
{
	struct revoke_args a;
	struct config *cfg = NULL;
	struct state_backend *be = NULL;
	struct keystore *ks = NULL;
	struct state *st = NULL;
	struct state_cert *rec = NULL;
	const struct issuer *is = NULL;
	char *serial = NULL;
	int rc, status = EXIT_FAIL;

	if ((rc = revoke_parse(g, argc, argv, &a)))
		return rc < 0 ? EXIT_OK : rc;
	cmd_setup_logging(g);
	if (cmd_load_config(g, &cfg))
		goto out;
	/* Under the state lock: the mark that makes the next apply replace it must not race a writer. */
	if (backends_open_keystore(cfg, &ks) || backends_open_state(cfg, &be) || state_lock(be, "revoke") ||
	    state_load(be, &st)) {
		cmd_fail("%s", cs_errmsg());
		if (cs_errmsg()[0] && strstr(cs_errmsg(), "locked by run"))
			fprintf(stderr,
				"hint: stop certsync run first (it holds the state), or revoke when it is stopped\n");
		goto out;
	}
	if (revoke_find(cfg, st, a.name, &rec, &is) || revoke_at_ca(cfg, ks, is, rec, a.code))
		goto out;
	serial = xstrdup(rec->serial);
	state_cert_set_id(rec, ACME_ID_REVOKED, serial);
	state_cert_event(rec, util_now(), "revoked serial %s at the CA (reason %s) by certsync revoke", serial,
			 a.reason);
	if (state_save(be, st)) {
		cmd_fail("%s: revoked at the CA, but the state could not be written: %s (run certsync revoke again to "
			 "record it)",
			 a.name, cs_errmsg());
		goto out;
	}
	printf("Revoked %s (serial %s, reason %s). The next apply replaces it (certsync plan shows it).\n", a.name,
	       serial, a.reason);
	status = EXIT_OK;
out:
	free(serial);
	state_unlock(be);
	state_backend_free(be);
	keystore_close(ks);
	state_free(st);
	config_free(cfg);
	return status;
}

const struct cmd cmd_revoke = {
	"revoke",
	"Revoke the installed certificate of an acme issuer at its CA; the next apply (or run) replaces it.\n"
	"Options:\n"
	"  --reason R   unspecified (default), keyCompromise, affiliationChanged, superseded, cessationOfOperation\n"
	"The account key is the issuer's own (key store entry _issuer.<issuer>); no account is created.",
	revoke_run,
	"revoke NAME [--reason REASON]",
};
