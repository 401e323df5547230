/* The acme issuer's session (the account key from the key store, the account at the CA) and validate's checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "acme.h"

#ifndef CERTSYNC_VERSION
#define CERTSYNC_VERSION "0.1.0"
#endif

#define SLOT_ACCOUNT "account-key"

/* ---------- the session: account key and account ---------- */

static int session_key(struct acme *a, const struct acme_keys *k, struct crypto_key **out)
{
	struct buf pem = BUF_INIT;
	char what[160];
	int rc = k->get(k->arg, SLOT_ACCOUNT, &pem);

	snprintf(what, sizeof(what), "issuer %s: the ACME account key", a->name);
	if (rc == CS_ENOTFOUND && !k->put) {
		rc = cs_error(CS_ENOTFOUND, "issuer %s has no ACME account in the key store yet", a->name);
	} else if (rc == CS_ENOTFOUND) {
		/* Stored before the CA ever sees it: a crash after newAccount still finds the same account. */
		if (!(rc = crypto_key_generate(a->account_alg, a->account_size, out)) &&
		    !(rc = crypto_key_to_pem(*out, &pem)) && !(rc = k->put(k->arg, SLOT_ACCOUNT, &pem)))
			log_info("issuer %s: generated the ACME account key (kept in the key store)", a->name);
		if (rc) {
			crypto_key_free(*out);
			*out = NULL;
		}
	} else if (!rc) {
		rc = crypto_key_from_pem(pem.data, pem.len, what, out);
	}
	buf_wipe(&pem);
	return rc;
}

/* The EAB HMAC key, base64url-decoded (a secret: the caller wipes it). */
static int eab_key(const struct acme *a, struct buf *out)
{
	struct buf raw = BUF_INIT;
	char what[160];
	int rc;

	snprintf(what, sizeof(what), "issuer %s: externalAccountBinding.hmacKey", a->name);
	if ((rc = config_cred_read(&a->eab_hmac, what, &raw)))
		return rc;
	log_add_secret(raw.data);
	if (jose_b64url_decode(raw.data, out) || !out->len)
		rc = provider_fail(STATE_FAIL_CONFIG,
				   cs_error(CS_EAUTH, "%s is not base64url (give it as the CA shows it)", what));
	buf_wipe(&raw);
	return rc;
}

static int session_open(struct acme *a, const struct acme_keys *k)
{
	struct acme_client_opts o;
	struct acme_account_req r;
	struct crypto_key *key = NULL;
	struct buf hmac = BUF_INIT;
	char *url = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	o.issuer = a->name;
	o.directory = a->directory;
	o.ca_file = a->ca_file;
	o.timeout = a->timeout;
	o.user_agent = "certsync/" CERTSYNC_VERSION;
	if ((rc = session_key(a, k, &key)))
		return rc;
	if (a->eab_kid && (rc = eab_key(a, &hmac)))
		goto out;
	if ((rc = acme_client_new(&o, &a->client)))
		goto out;
	memset(&r, 0, sizeof(r));
	r.key = key;
	r.email = a->email;
	r.terms_agreed = a->terms_agreed;
	r.only_existing = !k->put;
	r.eab_kid = a->eab_kid;
	r.eab_hmac = a->eab_kid ? &hmac : NULL;
	if ((rc = acme_client_account(a->client, &r, &url))) {
		acme_client_free(a->client);
		a->client = NULL;
		goto out;
	}
	log_debug("issuer %s: ACME account %s", a->name, url ? url : "?");
	a->account_key = key;
	key = NULL;
out:
	buf_wipe(&hmac);
	crypto_key_free(key);
	free(url);
	return rc;
}

int acme_session_with(struct acme *a, const struct acme_keys *k, struct acme_client **out)
{
	int rc = 0;

	pthread_mutex_lock(&a->mu);
	if (!a->client)
		rc = session_open(a, k);
	if (!rc)
		*out = a->client;
	pthread_mutex_unlock(&a->mu);
	return rc;
}

static int keys_get(void *arg, const char *slot, struct buf *out)
{
	return engine_issuer_secret_get(arg, slot, out);
}

static int keys_put(void *arg, const char *slot, const struct buf *data)
{
	return engine_issuer_secret_put(arg, slot, data);
}

int acme_session(struct step_ctx *ctx, struct acme *a, struct acme_client **out)
{
	struct acme_keys k = {keys_get, keys_put, ctx};

	return acme_session_with(a, &k, out);
}

void acme_session_end(struct acme *a)
{
	pthread_mutex_lock(&a->mu);
	acme_client_free(a->client);
	a->client = NULL;
	crypto_key_free(a->account_key);
	a->account_key = NULL;
	pthread_mutex_unlock(&a->mu);
}

/* ---------- validate ---------- */

static void check_files(const struct acme *a, struct provider_check *out)
{
	if (a->ca_file && access(a->ca_file, R_OK))
		provider_check_problem(out, "issuer %s: caFile %s cannot be read", a->name, a->ca_file);
	if (a->eab_kid) {
		struct buf k = BUF_INIT;

		if (eab_key(a, &k))
			provider_check_problem(out, "%s", cs_errmsg());
		buf_wipe(&k);
	}
	for (size_t i = 0; i < a->n_solvers; i++) {
		const struct acme_solver *s = &a->solvers[i];

		if (s->kind == ACME_HTTP01_WEBROOT && !strstr(s->webroot, "{host}") && access(s->webroot, W_OK))
			provider_check_problem(out, "issuer %s: solvers[%zu]: webroot %s is not a writable directory",
					       a->name, i, s->webroot);
	}
}

/* The directory, and what it asks that the config does not give. Opens no account. */
static void check_directory(const struct acme *a, struct provider_check *out)
{
	struct acme_client_opts o;
	const struct acme_directory *dir;
	struct acme_client *c = NULL;
	int listed = 0;

	memset(&o, 0, sizeof(o));
	o.issuer = a->name;
	o.directory = a->directory;
	o.ca_file = a->ca_file;
	o.timeout = a->timeout;
	o.user_agent = "certsync/" CERTSYNC_VERSION;
	if (acme_client_new(&o, &c) || acme_client_directory(c, &dir)) {
		provider_check_problem(out, "issuer %s: %s", a->name, cs_errmsg());
		goto out;
	}
	if (dir->eab_required && !a->eab_kid)
		provider_check_problem(out, "issuer %s: the CA requires externalAccountBinding (keyID, hmacKey)",
				       a->name);
	if (dir->terms_of_service && !a->terms_agreed)
		provider_check_problem(out,
				       "issuer %s: the CA has terms of service (%s): set termsOfServiceAgreed: true",
				       a->name, dir->terms_of_service);
	for (size_t i = 0; a->profile && i < dir->n_profiles; i++)
		listed |= !strcmp(dir->profiles[i], a->profile);
	if (a->profile && !listed)
		provider_check_problem(out, "issuer %s: the CA lists no profile \"%s\"", a->name, a->profile);
	if (!out->n_problems)
		provider_check_note(out, "ACME directory %s%s", a->directory,
				    dir->renewal_info ? " (with renewal information)" : "");
out:
	acme_client_free(c);
}

void acme_check(const struct issuer *is, int online, struct provider_check *out)
{
	const struct acme *a = is->priv;

	check_files(a, out);
	if (online && !out->n_problems)
		check_directory(a, out);
}
