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
#include "../providers/digicert.h"
#include "../providers/dnsimple.h"
#include "cmd.h"

#define IMPORT_FILE_MAX (1024 * 1024)

static int import_names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The certificate's SAN set against the manifest's dnsNames (both sorted
 * copies), after dropping the names the issuer adds by itself (DigiCert's
 * free "www." SAN) that the manifest does not list.
 */
static int import_same_names(const struct issuer *is, const struct crypto_cert_info *info, const struct cert_spec *spec)
{
	char **a, **b, **allowed = NULL;
	size_t n = 0, n_allowed = 0;
	int same;

	if (is->ops->extra_names)
		is->ops->extra_names(is, spec, &allowed, &n_allowed);
	a = xcalloc(info->n_dns + 1, sizeof(*a));
	b = xcalloc(spec->n_dns + 1, sizeof(*b));
	for (size_t i = 0; i < info->n_dns; i++)
		if (crypto_names_contain((const char *const *)spec->dns_names, spec->n_dns, info->dns_names[i]) ||
		    !crypto_names_contain((const char *const *)allowed, n_allowed, info->dns_names[i]))
			a[n++] = info->dns_names[i];
	same = n == spec->n_dns;
	memcpy(b, spec->dns_names, spec->n_dns * sizeof(*b));
	qsort(a, n, sizeof(*a), import_names_cmp);
	qsort(b, spec->n_dns, sizeof(*b), import_names_cmp);
	for (size_t i = 0; same && i < n; i++)
		same = !strcasecmp(a[i], b[i]);
	for (size_t i = 0; i < n_allowed; i++)
		free(allowed[i]);
	free(allowed);
	free(a);
	free(b);
	return same;
}

static int import_read(const char *dir, const char *file, struct buf *out)
{
	char *p = fsutil_join(dir, file);
	int rc = fsutil_read_file(p, IMPORT_FILE_MAX, out);

	if (rc == CS_ENOTFOUND)
		rc = cs_error(CS_ENOTFOUND, "%s: not found (import reads a directory with tls.crt, tls.key, ca.crt)",
			      p);
	free(p);
	return rc;
}

/*
 * The checks an install makes, on files written by another certsync (or by
 * hand): the key matches, the names are the manifest's, the key type too,
 * the chain verifies against ca.crt now.
 */
static int import_check(const struct issuer *is, const struct cert_spec *spec, const char *dir,
			const struct keystore_item *it, struct crypto_cert_info *info)
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
	else if (!import_same_names(is, info, spec))
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

/*
 * What a provider checks of the imported files with its service and records
 * in rec (digicert: the order id); NULL for the built-in CA.
 */
typedef int (*import_adopt_fn)(const struct issuer *is, struct state_cert *rec, const char *id, const char *dir,
			       const struct crypto_cert_info *info);

/*
 * The files of an existing output directory become the record's certificate
 * and key store entry (ca: from --id DIR; digicert: from --from DIR, the
 * order --id adopted by `adopt` once the files check out).
 */
static int import_files(const struct issuer *is, const struct cert_spec *spec, const char *dir, const char *id,
			import_adopt_fn adopt, struct keystore *ks, struct state_cert *rec)
{
	struct keystore_item it;
	struct crypto_cert_info info;
	int rc;

	keystore_item_init(&it);
	memset(&info, 0, sizeof(info));
	if ((rc = import_read(dir, "tls.crt", &it.cert)) || (rc = import_read(dir, "tls.key", &it.key)) ||
	    (rc = import_read(dir, "ca.crt", &it.ca)) || (rc = import_check(is, spec, dir, &it, &info)) ||
	    (adopt && (rc = adopt(is, rec, id, dir, &info))) || (rc = keystore_put(ks, spec->name, info.serial, &it)))
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
	if (adopt)
		state_cert_event(rec, util_now(), "imported from %s (serial %s): %s order %s", dir, info.serial,
				 is->ops->type, id);
	else
		state_cert_event(rec, util_now(), "imported from %s (serial %s)", dir, info.serial);
out:
	crypto_cert_info_free(&info);
	keystore_item_wipe(&it);
	return rc;
}

/* An order or certificate id: a positive number. */
static int import_num(const char *what, const char *id, long long *n)
{
	char *end;

	*n = strtoll(id, &end, 10);
	if (end == id || *end || *n <= 0)
		return cs_error(CS_EINVALID, "--id: a %s id is a positive number, not \"%s\"", what, id);
	return 0;
}

/* digicert: the order must be issued and hold the certificate read from dir. */
static int import_digicert_adopt(const struct issuer *is, struct state_cert *rec, const char *id, const char *dir,
				 const struct crypto_cert_info *info)
{
	long long n;
	int rc = import_num("DigiCert order", id, &n);

	return rc ? rc : digicert_import(is, rec, n, dir, info->serial, info->fingerprint);
}

/* dnsimple: the certificate id; the next apply downloads and checks it (a resume, never a purchase). */
static int import_dnsimple(const struct issuer *is, const struct cert_spec *spec, const char *id,
			   struct state_cert *rec)
{
	long long n;
	int rc;

	if ((rc = import_num("DNSimple certificate", id, &n)) || (rc = dnsimple_import(is, spec, rec, n)))
		return rc;
	rec->phase = PHASE_PENDING;
	state_str_set(&rec->change, "create");
	state_str_set(&rec->target_hash, spec->hash);
	state_cert_event(rec, util_now(), "imported: DNSimple certificate %lld, to download", n);
	return 0;
}

static int import_run_ca(const struct issuer *is, const struct cert_spec *spec, const char *id, const char *from,
			 struct keystore *ks, struct state_cert *rec)
{
	(void)from;
	return import_files(is, spec, id, NULL, NULL, ks, rec);
}

static int import_run_dnsimple(const struct issuer *is, const struct cert_spec *spec, const char *id, const char *from,
			       struct keystore *ks, struct state_cert *rec)
{
	(void)from;
	(void)ks;
	return import_dnsimple(is, spec, id, rec);
}

static int import_run_digicert(const struct issuer *is, const struct cert_spec *spec, const char *id, const char *from,
			       struct keystore *ks, struct state_cert *rec)
{
	return import_files(is, spec, from, id, import_digicert_adopt, ks, rec);
}

/* The issuer types that import, and whether they read the files from --from DIR. */
static const struct {
	const char *type;
	int from;
	const char *why;
	int (*run)(const struct issuer *is, const struct cert_spec *spec, const char *id, const char *from,
		   struct keystore *ks, struct state_cert *rec);
} import_kinds[] = {
	{"ca", 0, "a ca import reads the directory given as --id", import_run_ca},
	{"dnsimple", 0, "DNSimple keeps the key: the next apply downloads the certificate and key",
	 import_run_dnsimple},
	{"digicert", 1,
	 "DigiCert never has the private key: --from names the directory with tls.crt, tls.key and ca.crt of the "
	 "order --id",
	 import_run_digicert},
};

#define IMPORT_N_KINDS (sizeof(import_kinds) / sizeof(import_kinds[0]))

static const struct cert_spec *import_find_spec(const struct desired *d, const char *name)
{
	for (size_t i = 0; i < d->n_specs; i++)
		if (!strcmp(d->specs[i]->name, name))
			return d->specs[i];
	return NULL;
}

/* Everything before the write: the manifest, its issuer, and a name the state does not have yet. */
static int import_check_args(const struct config *cfg, const struct desired *d, const struct state *st,
			     const char *name, const char *issuer, const char *from, const struct cert_spec **spec,
			     const struct issuer **is, size_t *kind)
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
	for (*kind = 0; *kind < IMPORT_N_KINDS && strcmp(import_kinds[*kind].type, (*is)->ops->type); (*kind)++)
		;
	if (*kind == IMPORT_N_KINDS)
		return cmd_fail(
			"state import %s: importing is supported for the ca, dnsimple and digicert issuers, not "
			"%s (%s)",
			name, issuer, (*is)->ops->type);
	if (import_kinds[*kind].from && !from)
		return cmd_fail("state import %s: a %s import needs --from DIR (%s)", name, (*is)->ops->type,
				import_kinds[*kind].why);
	if (!import_kinds[*kind].from && from)
		return cmd_fail("state import %s: --from is for digicert imports (%s)", name, import_kinds[*kind].why);
	return 0;
}

int cmd_state_import(const struct config *cfg, const char *name, const char *issuer, const char *id, const char *from)
{
	struct cmd_source src;
	struct state_backend *be = NULL;
	struct keystore *ks = NULL;
	struct state *st = NULL;
	struct state_cert *rec;
	const struct cert_spec *spec = NULL;
	const struct issuer *is = NULL;
	size_t kind = 0;
	int status = EXIT_FAIL, rc;

	memset(&src, 0, sizeof(src));
	if (cmd_open_source(cfg, NULL, &src))
		goto out;
	if (backends_open_keystore(cfg, &ks) || backends_open_state(cfg, &be) || state_lock(be, "state import") ||
	    state_load(be, &st)) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	if (import_check_args(cfg, &src.desired, st, name, issuer, from, &spec, &is, &kind))
		goto out;
	rec = state_cert_put(st, name);
	state_str_set(&rec->issuer, issuer);
	state_str_set(&rec->provider, is->ops->type);
	state_str_set(&rec->output_dir, spec->output_dir);
	rc = import_kinds[kind].run(is, spec, id, from, ks, rec);
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
