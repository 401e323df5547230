/* certsync state import NAME --issuer ISSUER --id ID: adopt a certificate that already exists (Terraform's import). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../state/keystore.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "../backends.h"
#include "../provider.h"
#include "../providers/dnsimple.h"
#include "cmd.h"

#define IMPORT_FILE_MAX (1024 * 1024)

static int import_names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The certificate's SAN set against the manifest's dnsNames (both sorted copies). */
static int import_same_names(const struct crypto_cert_info *info, const struct cert_spec *spec)
{
	char **a, **b;
	int same = info->n_dns == spec->n_dns;

	if (!same)
		return 0;
	a = xcalloc(info->n_dns + 1, sizeof(*a));
	b = xcalloc(spec->n_dns + 1, sizeof(*b));
	memcpy(a, info->dns_names, info->n_dns * sizeof(*a));
	memcpy(b, spec->dns_names, spec->n_dns * sizeof(*b));
	qsort(a, info->n_dns, sizeof(*a), import_names_cmp);
	qsort(b, spec->n_dns, sizeof(*b), import_names_cmp);
	for (size_t i = 0; same && i < info->n_dns; i++)
		same = !strcasecmp(a[i], b[i]);
	free(a);
	free(b);
	return same;
}

static int import_read(const char *dir, const char *file, struct buf *out)
{
	char *p = fsutil_join(dir, file);
	int rc = fsutil_read_file(p, IMPORT_FILE_MAX, out);

	if (rc == CS_ENOTFOUND)
		rc = cs_error(CS_ENOTFOUND,
			      "%s: not found (import --id names a directory with tls.crt, tls.key, ca.crt)", p);
	free(p);
	return rc;
}

/*
 * The checks an install makes, on files written by another certsync (or by
 * hand): the key matches, the names are the manifest's, the key type too,
 * the chain verifies against ca.crt now.
 */
static int import_check(const struct cert_spec *spec, const char *dir, const struct keystore_item *it,
			struct crypto_cert_info *info)
{
	struct crypto_cert *cert = NULL;
	struct crypto_key *key = NULL;
	enum crypto_alg alg;
	int size, rc;

	if ((rc = crypto_cert_from_pem(it->cert.data, it->cert.len, "tls.crt", &cert)) ||
	    (rc = crypto_key_from_pem(it->key.data, it->key.len, "tls.key", &key)) ||
	    (rc = crypto_cert_info(cert, info)))
		goto out;
	if (!crypto_cert_matches_key(cert, key))
		rc = cs_error(CS_EINVALID, "%s: tls.crt (serial %s) does not match tls.key", dir, info->serial);
	else if (!import_same_names(info, spec))
		rc = cs_error(CS_EINVALID, "%s: the certificate's names are not the manifest's dnsNames for %s", dir,
			      spec->name);
	else if (crypto_key_describe(key, &alg, &size),
		 (alg == CRYPTO_RSA) != (spec->key_alg == KEYALG_RSA) || size != spec->key_size)
		rc = cs_error(CS_EINVALID, "%s: the key (%s %d) is not the manifest's privateKey (%s %d)", dir,
			      alg == CRYPTO_RSA ? "RSA" : "ECDSA", size, spec->key_alg == KEYALG_RSA ? "RSA" : "ECDSA",
			      spec->key_size);
	else if (crypto_cert_verify_chain(it->cert.data, it->cert.len, it->ca.data, it->ca.len, util_now()))
		rc = cs_error(CS_EINVALID, "%s: tls.crt does not verify against ca.crt now (%s)", dir, cs_errmsg());
out:
	crypto_cert_free(cert);
	crypto_key_free(key);
	return rc;
}

/* ca: the files of an existing output directory become the record's certificate and key store entry. */
static int import_ca(const struct cert_spec *spec, const char *dir, struct keystore *ks, struct state_cert *rec)
{
	struct keystore_item it;
	struct crypto_cert_info info;
	int rc;

	keystore_item_init(&it);
	memset(&info, 0, sizeof(info));
	if ((rc = import_read(dir, "tls.crt", &it.cert)) || (rc = import_read(dir, "tls.key", &it.key)) ||
	    (rc = import_read(dir, "ca.crt", &it.ca)) || (rc = import_check(spec, dir, &it, &info)) ||
	    (rc = keystore_put(ks, spec->name, info.serial, &it)))
		goto out;
	rec->phase = PHASE_READY;
	state_str_set(&rec->spec_hash, spec->hash);
	state_str_set(&rec->serial, info.serial);
	state_str_set(&rec->fingerprint, info.fingerprint);
	rec->not_before = info.not_before;
	rec->not_after = info.not_after;
	rec->last_success = util_now();
	/*
	 * Not installed by certsync yet: a generation name that never exists
	 * (real ones end in hex) makes plan see the outputs as missing, and the
	 * next apply reinstalls from the key store.
	 */
	{
		const char *base = strrchr(spec->output_dir, '/');
		char *gen = xasprintf(".%s.imported", base ? base + 1 : spec->output_dir);

		state_str_set(&rec->out_generation, gen);
		free(gen);
	}
	plan_note_renew_before(rec, spec);
	state_cert_event(rec, util_now(), "imported from %s (serial %s)", dir, info.serial);
out:
	crypto_cert_info_free(&info);
	keystore_item_wipe(&it);
	return rc;
}

/* dnsimple: the certificate id; the next apply downloads and checks it (a resume, never a purchase). */
static int import_dnsimple(const struct issuer *is, const struct cert_spec *spec, const char *id,
			   struct state_cert *rec)
{
	char *end;
	long long n = strtoll(id, &end, 10);
	int rc;

	if (end == id || *end || n <= 0)
		return cs_error(CS_EINVALID, "--id: a DNSimple certificate id is a positive number, not \"%s\"", id);
	if ((rc = dnsimple_import(is, spec, rec, n)))
		return rc;
	rec->phase = PHASE_PENDING;
	state_str_set(&rec->change, "create");
	state_str_set(&rec->target_hash, spec->hash);
	state_cert_event(rec, util_now(), "imported: DNSimple certificate %lld, to download", n);
	return 0;
}

static const struct cert_spec *import_find_spec(const struct desired *d, const char *name)
{
	for (size_t i = 0; i < d->n_specs; i++)
		if (!strcmp(d->specs[i]->name, name))
			return d->specs[i];
	return NULL;
}

/* Everything before the write: the manifest, its issuer, and a name the state does not have yet. */
static int import_check_args(const struct config *cfg, const struct desired *d, const struct state *st,
			     const char *name, const char *issuer, const struct cert_spec **spec,
			     const struct issuer **is)
{
	if (!(*spec = import_find_spec(d, name)))
		return cmd_fail(
			"state import %s: no valid manifest named %s at the ref: write (and commit) it first, so "
			"the imported certificate is checked against it",
			name, name);
	if (strcmp((*spec)->issuer, issuer))
		return cmd_fail("state import %s: the manifest's issuer is %s, not %s", name, (*spec)->issuer, issuer);
	if (!(*is = config_issuer(cfg, issuer)) || !(*is)->priv)
		return cmd_fail("state import %s: issuer %s is not configured", name, issuer);
	if (state_cert_get(st, name))
		return cmd_fail("state import %s: %s is already in the state (state rm it first to import again)", name,
				name);
	if (strcmp((*is)->ops->type, "ca") && strcmp((*is)->ops->type, "dnsimple"))
		return cmd_fail("state import %s: importing is supported for the ca and dnsimple issuers, not %s (%s)",
				name, issuer, (*is)->ops->type);
	return 0;
}

int cmd_state_import(const struct config *cfg, const char *name, const char *issuer, const char *id)
{
	struct cmd_source src;
	struct state_backend *be = NULL;
	struct keystore *ks = NULL;
	struct state *st = NULL;
	struct state_cert *rec;
	const struct cert_spec *spec = NULL;
	const struct issuer *is = NULL;
	int status = EXIT_FAIL, rc;

	memset(&src, 0, sizeof(src));
	if (cmd_open_source(cfg, NULL, &src))
		goto out;
	if (backends_open_keystore(cfg, &ks) || backends_open_state(cfg, &be) || state_lock(be, "state import") ||
	    state_load(be, &st)) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	if (import_check_args(cfg, &src.desired, st, name, issuer, &spec, &is))
		goto out;
	rec = state_cert_put(st, name);
	state_str_set(&rec->issuer, issuer);
	state_str_set(&rec->provider, is->ops->type);
	state_str_set(&rec->output_dir, spec->output_dir);
	rc = !strcmp(is->ops->type, "ca") ? import_ca(spec, id, ks, rec) : import_dnsimple(is, spec, id, rec);
	if (rc || state_save(be, st)) {
		cmd_fail("state import %s: %s", name, cs_errmsg());
		goto out;
	}
	printf("Imported %s (issuer %s): %s. Run certsync apply to %s; nothing is bought.\n", name, issuer,
	       rec->phase == PHASE_READY ? "its certificate and key are in the state and the key store"
					 : "the DNSimple certificate is recorded",
	       rec->phase == PHASE_READY ? "install it in the output directory" : "download and install it");
	status = EXIT_OK;
out:
	state_unlock(be);
	state_backend_free(be);
	keystore_close(ks);
	state_free(st);
	cmd_source_free(&src);
	return status;
}
