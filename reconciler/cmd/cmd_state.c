/* certsync state list | show NAME | rm NAME: look at and edit the recorded state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/redact.h"
#include "../../util/util.h"
#include "../../state/keystore.h"
#include "../backends.h"
#include "cmd.h"

static void state_print_list(const struct state *st)
{
	size_t n = 0;
	struct state_cert **v = state_cert_list(st, &n);

	printf("%-32s %-8s %-16s %-20s %s\n", "NAME", "PHASE", "ISSUER", "NOT AFTER", "STEP");
	for (size_t i = 0; i < n; i++) {
		char na[32] = "-";

		if (v[i]->not_after)
			util_fmt_time(v[i]->not_after, na);
		printf("%-32s %-8s %-16s %-20s %s\n", v[i]->name, state_phase_name(v[i]->phase),
		       v[i]->issuer ? v[i]->issuer : "-", na, v[i]->step ? v[i]->step : "-");
	}
	free(v);
}

/* Puts state.json.backup back when state.json is gone (under the lock, so never beside an apply or run). */
static int state_restore(const struct config *cfg)
{
	struct state_backend *be = NULL;
	struct state *st = NULL;
	int status = EXIT_FAIL;

	if (cfg->state.backend != STATE_BACKEND_FILE)
		return cmd_fail(
			"state restore puts a file backend's state.json.backup back; the postgres backend keeps "
			"no backup file: restore the schema \"%s\" from a pg_dump with pg_restore or psql (see "
			"docs/state.md, \"Backups\")",
			cfg->state.schema);
	if (state_file_open(cfg->state_path, &be) || state_lock(be, "state restore") || state_file_restore(be) ||
	    state_load(be, &st)) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	printf("Restored %s from %s.backup: lineage %.8s, serial %llu, %zu certificate%s.\n", cfg->state_path,
	       cfg->state_path, st->lineage, (unsigned long long)st->serial, state_cert_count(st),
	       state_cert_count(st) == 1 ? "" : "s");
	status = EXIT_OK;
out:
	state_unlock(be);
	state_backend_free(be);
	state_free(st);
	return status;
}

/*
 * state mv OLD NEW (Terraform's state mv): a renamed manifest keeps its
 * certificate instead of a new one being issued (or bought). The key store
 * entry is copied first and the old one pruned after the state is saved: a
 * crash in between leaves an unused copy, never a record without its key.
 */
static int state_mv(const struct config *cfg, const char *from, const char *to)
{
	struct state_backend *be = NULL;
	struct keystore *ks = NULL;
	struct state *st = NULL;
	struct keystore_item it;
	const struct state_cert *rec;
	int rc, status = EXIT_FAIL, moved_key = 0;

	keystore_item_init(&it);
	if (backends_open_keystore(cfg, &ks) || backends_open_state(cfg, &be) || state_lock(be, "state mv") ||
	    state_load(be, &st)) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	if (!(rec = state_cert_get(st, from))) {
		cmd_fail("no certificate \"%s\" in the state", from);
		goto out;
	}
	if (state_cert_get(st, to)) {
		cmd_fail("\"%s\" is already in the state: nothing moved (state rm it first if it is stale)", to);
		goto out;
	}
	if (rec->phase != PHASE_READY || rec->step) {
		cmd_fail("%s is %s%s%s: move it once apply has finished its change", from, state_phase_name(rec->phase),
			 rec->step ? " at step " : "", rec->step ? rec->step : "");
		goto out;
	}
	if (rec->serial) {
		rc = keystore_get(ks, from, rec->serial, &it);
		if (rc && rc != CS_ENOTFOUND) {
			cmd_fail("%s", cs_errmsg());
			goto out;
		}
		if (!rc && keystore_put(ks, to, rec->serial, &it)) {
			cmd_fail("%s", cs_errmsg());
			goto out;
		}
		moved_key = !rc;
	}
	if (state_cert_rename(st, from, to) || state_save(be, st)) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	if (moved_key && keystore_prune(ks, from, NULL))
		fprintf(stderr, "warning: %s: the old key store entry stays (%s)\n", from, cs_errmsg());
	printf("Moved %s to %s%s. Its certificate and output directory are kept: with the manifest renamed to %s, "
	       "plan shows no new certificate.\n",
	       from, to, moved_key ? " (and its key store entry)" : "", to);
	status = EXIT_OK;
out:
	keystore_item_wipe(&it);
	state_unlock(be);
	state_backend_free(be);
	keystore_close(ks);
	state_free(st);
	return status;
}

enum { OPT_TO = OPT__GLOBAL_END, OPT_FORCE, OPT_ISSUER, OPT_ID };

#define STATE_VERBS "list, show, rm, mv, import, restore, migrate, rekey"

/* One of the verbs, and the name it needs (show, rm) or the options only migrate takes. */
static int state_check_args(const char *verb, const char *to, int force)
{
	static const char *const verbs[] = {"list", "show", "rm", "mv", "import", "restore", "migrate", "rekey", NULL};
	size_t i;

	for (i = 0; verbs[i] && strcmp(verb, verbs[i]); i++)
		;
	if (!verbs[i])
		return cmd_usage_error(&cmd_state, "unknown subcommand \"%s\" (" STATE_VERBS ")", verb);
	if (strcmp(verb, "migrate") && (to || force))
		return cmd_usage_error(&cmd_state, "--to and --force are options of state migrate");
	if (!strcmp(verb, "migrate") && !to)
		return cmd_usage_error(&cmd_state, "state migrate needs --to postgres or --to file");
	return 0;
}

static int state_run(struct cmd_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {CMD_GLOBAL_OPTIONS,
					     {"to", required_argument, NULL, OPT_TO},
					     {"force", no_argument, NULL, OPT_FORCE},
					     {"issuer", required_argument, NULL, OPT_ISSUER},
					     {"id", required_argument, NULL, OPT_ID},
					     {NULL, 0, NULL, 0}};
	struct config *cfg = NULL;
	struct state_backend *be = NULL;
	struct state *st = NULL;
	struct buf b = BUF_INIT;
	const char *verb, *name = NULL, *to = NULL, *new_name = NULL, *issuer = NULL, *id = NULL;
	int opt, has_state, force = 0, to_kind = 0, rc, status = EXIT_FAIL;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_state, argc, argv, opts)) != -1) {
		int r = cmd_global_opt(g, &cmd_state, opt, optarg);

		if (r < 0)
			return EXIT_OK;
		if (r)
			continue;
		if (opt == OPT_TO) {
			to = optarg;
			if (cmd_state_backend_parse(to, &to_kind))
				return cmd_usage_error(&cmd_state, "--to takes postgres or file, not \"%s\"", to);
		} else if (opt == OPT_FORCE) {
			force = 1;
		} else if (opt == OPT_ISSUER) {
			issuer = optarg;
		} else if (opt == OPT_ID) {
			id = optarg;
		} else {
			return EXIT_USAGE; /* cmd_getopt said why */
		}
	}
	if (optind >= argc)
		return cmd_usage_error(&cmd_state, "missing subcommand (" STATE_VERBS ")");
	verb = argv[optind++];
	if ((rc = state_check_args(verb, to, force)))
		return rc;
	if (strcmp(verb, "import") && (issuer || id))
		return cmd_usage_error(&cmd_state, "--issuer and --id are options of state import");
	if (!strcmp(verb, "import") && (!issuer || !id))
		return cmd_usage_error(&cmd_state, "state import needs --issuer ISSUER and --id ID");
	if (!strcmp(verb, "show") || !strcmp(verb, "rm") || !strcmp(verb, "mv") || !strcmp(verb, "import")) {
		if (optind >= argc)
			return cmd_usage_error(&cmd_state, "state %s needs a certificate name", verb);
		name = argv[optind++];
	}
	if (!strcmp(verb, "mv")) {
		if (optind >= argc)
			return cmd_usage_error(&cmd_state, "state mv needs the old and the new name");
		new_name = argv[optind++];
	}
	if (optind < argc)
		return cmd_usage_error(&cmd_state, "unexpected argument \"%s\"", argv[optind]);
	cmd_setup_logging(g);
	if (cmd_load_config(g, &cfg))
		goto out;
	if (!strcmp(verb, "rm")) {
		/* Forgetting is a write: take the lock like apply does. Output files stay on disk. */
		if (backends_open_state(cfg, &be) || state_lock(be, "state rm") || state_load(be, &st)) {
			cmd_fail("%s", cs_errmsg());
			goto out;
		}
		if (state_cert_remove(st, name)) {
			cmd_fail("no certificate \"%s\" in the state", name);
			goto out;
		}
		if (state_save(be, st)) {
			cmd_fail("%s", cs_errmsg());
			goto out;
		}
		printf("Removed %s from the state (its output files were left in place).\n", name);
		status = EXIT_OK;
		goto out;
	}
	if (!strcmp(verb, "mv")) {
		status = state_mv(cfg, name, new_name);
		goto out;
	}
	if (!strcmp(verb, "import")) {
		status = cmd_state_import(cfg, name, issuer, id);
		goto out;
	}
	if (!strcmp(verb, "restore")) {
		status = state_restore(cfg);
		goto out;
	}
	if (!strcmp(verb, "migrate")) {
		status = cmd_state_migrate(cfg, to_kind, force);
		goto out;
	}
	if (!strcmp(verb, "rekey")) {
		status = cmd_state_rekey(cfg);
		goto out;
	}
	if (cmd_read_state(cfg, &be, &st, &has_state))
		goto out;
	/* A mistyped --state is not an empty state (Terraform: "No state file was found!"). */
	if (!has_state && cfg->state.backend == STATE_BACKEND_FILE) {
		cmd_fail("no state at %s: the file does not exist (check --state or state.path; apply creates it)",
			 cfg->state_path);
		goto out;
	}
	if (!strcmp(verb, "list")) {
		state_print_list(st);
		status = EXIT_OK;
	} else {
		const struct state_cert *c = state_cert_get(st, name);
		char *safe;

		if (!c) {
			cmd_fail("no certificate \"%s\" in the state", name);
			goto out;
		}
		state_cert_to_json(c, 1, &b);
		/* A record written before redaction existed may still quote a credential: never print it. */
		safe = redact_dup(b.data);
		printf("%s\n", safe);
		free(safe);
		status = EXIT_OK;
	}
out:
	buf_free(&b);
	state_unlock(be);
	state_backend_free(be);
	state_free(st);
	config_free(cfg);
	return status;
}

const struct cmd cmd_state = {
	"state",
	"Inspect or edit the state: list the certificates, show one record as JSON, forget one (rm), rename one\n"
	"so a renamed manifest keeps its certificate (mv OLD NEW; its key store entry moves too), adopt an\n"
	"existing certificate (import NAME --issuer ISSUER --id ID: for a ca issuer ID is a directory holding\n"
	"tls.crt, tls.key and ca.crt; for a dnsimple issuer the DNSimple certificate id), put\n"
	"state.json.backup back after state.json was lost (restore, file backend), copy the state and key store\n"
	"between the file and postgres backends (migrate), or re-encrypt the postgres key store (rekey).\n"
	"Options:\n"
	"  --to postgres|file   state migrate: the backend to copy to (from the other one; both from the config)\n"
	"  --force              state migrate: replace a target that already holds a state\n"
	"  --issuer NAME        state import: the manifest's issuer\n"
	"  --id ID              state import: the directory (ca) or the provider's certificate id (dnsimple)",
	state_run,
	"state list | state show NAME | state rm NAME | state mv OLD NEW | state restore\n"
	"       certsync state import NAME --issuer ISSUER --id DIR|ID\n"
	"       certsync state migrate --to postgres|file [--force] | certsync state rekey",
};
