/*
 * certsync state migrate --to postgres|file [--force]: copies the state and
 * the key store from the backend not named to the one named, both described
 * by the config, under the lock of both; and state rekey: re-encrypts the
 * postgres key store under state.encryptionKey.
 */
#include <stdio.h>
#include <string.h>

#include "../../state/keystore.h"
#include "../../state/state_pg.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../backends.h"
#include "cmd.h"

#define MIGRATE_DESC_MAX 512

/* One side of a migration: its backend, key store and the state loaded under its lock. */
struct migrate_side {
	int kind; /* STATE_BACKEND_* */
	struct state_backend *be;
	struct keystore *ks;
	struct state *st;
	int exists;
	char desc[MIGRATE_DESC_MAX];
};

static const char *migrate_kind_name(int kind)
{
	return kind == STATE_BACKEND_FILE ? "file" : "postgres";
}

int cmd_state_backend_parse(const char *s, int *kind)
{
	if (!strcmp(s, "file"))
		*kind = STATE_BACKEND_FILE;
	else if (!strcmp(s, "postgres"))
		*kind = STATE_BACKEND_POSTGRES;
	else
		return CS_EINVALID;
	return 0;
}

/* Opens the key store (the key is checked first), the state, takes its lock and loads it. Prints the error. */
static int migrate_open(const struct config *cfg, struct migrate_side *s)
{
	int rc;

	if (s->kind == STATE_BACKEND_POSTGRES &&
	    (cfg->state.url.kind == CRED_NONE || cfg->state.encryption_key.kind == CRED_NONE))
		return cmd_fail(
			"state migrate: the postgres side needs state.url and state.encryptionKey in the config "
			"(see docs/state.md)");
	if (s->kind == STATE_BACKEND_FILE && !cfg->state_path)
		return cmd_fail("state migrate: the file side needs state.path in the config, or --state FILE");
	backends_describe_as(cfg, s->kind, s->desc, sizeof(s->desc));
	s->exists = s->kind == STATE_BACKEND_FILE && cfg->state_path && fsutil_exists(cfg->state_path);
	if ((rc = backends_open_keystore_as(cfg, s->kind, &s->ks)) ||
	    (rc = backends_open_state_as(cfg, s->kind, &s->be)) || (rc = state_lock(s->be, "state migrate")) ||
	    (rc = state_load(s->be, &s->st))) {
		cmd_fail("state migrate: %s side: %s", migrate_kind_name(s->kind), cs_errmsg());
		return rc;
	}
	s->exists = s->exists || state_cert_count(s->st) > 0 || (s->kind != STATE_BACKEND_FILE && s->st->serial > 0);
	return 0;
}

static void migrate_close(struct migrate_side *s)
{
	state_unlock(s->be);
	state_backend_free(s->be);
	keystore_close(s->ks);
	state_free(s->st);
}

static const char *plural(size_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/*
 * The copy: the key store first (a state that names keys the target lacks
 * would reinstall nothing), then the state, whose serial continues from the
 * larger of the two so that no reader of the target sees it go backwards.
 */
static int migrate_copy(struct migrate_side *from, struct migrate_side *to, size_t *n_keys, size_t *n_dropped)
{
	uint64_t src_serial = from->st->serial;

	if (keystore_copy(from->ks, to->ks, n_keys))
		return cmd_fail("state migrate: copying the key store from %s to %s: %s (the target's state was not "
				"changed)",
				from->desc, to->desc, cs_errmsg());
	if (to->st->serial > from->st->serial)
		from->st->serial = to->st->serial;
	/* The database keeps one lineage per header: a replaced state goes first (file saves replace anyway). */
	if (to->exists && to->kind == STATE_BACKEND_POSTGRES && state_pg_clear(to->be)) {
		from->st->serial = src_serial;
		return cmd_fail("state migrate: emptying %s before the copy: %s (nothing was changed there)", to->desc,
				cs_errmsg());
	}
	if (state_save(to->be, from->st)) {
		from->st->serial = src_serial;
		return cmd_fail("state migrate: writing the state to %s: %s", to->desc, cs_errmsg());
	}
	/* --force replaced a state: the keys only it knew go too (nothing else would ever remove them). */
	if (to->exists && keystore_drop_absent(from->ks, to->ks, n_dropped))
		return cmd_fail("state migrate: the state was copied to %s, but removing the replaced state's keys "
				"from its key store failed: %s (run the same command again)",
				to->desc, cs_errmsg());
	return 0;
}

int cmd_state_migrate(const struct config *cfg, int to_kind, int force)
{
	struct migrate_side from, to;
	size_t n_keys = 0, n_dropped = 0, n;
	uint64_t src_serial;
	int status = EXIT_FAIL;

	memset(&from, 0, sizeof(from));
	memset(&to, 0, sizeof(to));
	from.kind = to_kind == STATE_BACKEND_FILE ? STATE_BACKEND_POSTGRES : STATE_BACKEND_FILE;
	to.kind = to_kind;
	if (migrate_open(cfg, &from) || migrate_open(cfg, &to))
		goto out;
	if (!from.exists) {
		cmd_fail("state migrate: there is no state in %s: nothing to copy", from.desc);
		goto out;
	}
	n = state_cert_count(to.st);
	if (to.exists && !force) {
		cmd_fail("state migrate: %s already holds a state (lineage %.8s, serial %llu, %zu %s): nothing copied. "
			 "state migrate --force replaces it",
			 to.desc, to.st->lineage, (unsigned long long)to.st->serial, n,
			 plural(n, "certificate", "certificates"));
		goto out;
	}
	src_serial = from.st->serial;
	if (migrate_copy(&from, &to, &n_keys, &n_dropped))
		goto out;
	n = state_cert_count(from.st);
	printf("Copied the state from %s to %s%s:\n", from.desc, to.desc, to.exists ? " (replacing its state)" : "");
	printf("  lineage %s, serial %llu (now %llu in the target), %zu %s, %zu issuer %s, %zu webhook %s\n",
	       from.st->lineage, (unsigned long long)src_serial, (unsigned long long)from.st->serial, n,
	       plural(n, "certificate", "certificates"), from.st->n_accounts,
	       plural(from.st->n_accounts, "account", "accounts"), from.st->n_webhook_ids,
	       plural(from.st->n_webhook_ids, "id", "ids"));
	printf("  %zu key store %s (private keys, chains and pending order material)\n", n_keys,
	       plural(n_keys, "entry", "entries"));
	if (n_dropped)
		printf("  %zu key store %s of the replaced state removed from the target\n", n_dropped,
		       plural(n_dropped, "certificate or pending slot", "certificates or pending slots"));
	printf("The %s state was left as it was. Set state.backend: %s in the config to use the copy.\n",
	       migrate_kind_name(from.kind), migrate_kind_name(to.kind));
	status = EXIT_OK;
out:
	migrate_close(&to);
	migrate_close(&from);
	return status;
}

int cmd_state_rekey(const struct config *cfg)
{
	struct keystore *ks = NULL;
	char desc[MIGRATE_DESC_MAX];
	size_t n = 0;
	int status = EXIT_FAIL;

	if (cfg->state.backend != STATE_BACKEND_POSTGRES)
		return cmd_fail("state rekey re-encrypts the postgres key store (state.backend: postgres); the file "
				"backend's key store (%s) is not encrypted",
				cfg->key_dir ? cfg->key_dir : "state.keyDir");
	backends_describe(cfg, desc, sizeof(desc));
	if (backends_open_keystore(cfg, &ks) || keystore_rekey(ks, &n)) {
		cmd_fail("state rekey: %s", cs_errmsg());
		goto out;
	}
	if (n)
		printf("Re-encrypted %zu key store %s in %s under state.encryptionKey. Once every replica runs with "
		       "the new key, remove state.previousEncryptionKey from the config.\n",
		       n, plural(n, "entry", "entries"), desc);
	else
		printf("Every key store entry in %s is already under state.encryptionKey: nothing re-encrypted.\n",
		       desc);
	status = EXIT_OK;
out:
	keystore_close(ks);
	return status;
}
