/* certsync state list | show NAME | rm NAME: look at and edit the recorded state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/redact.h"
#include "../../util/util.h"
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

static int state_run(struct cmd_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {CMD_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
	struct config *cfg = NULL;
	struct state_backend *be = NULL;
	struct state *st = NULL;
	struct buf b = BUF_INIT;
	const char *verb, *name = NULL;
	int opt, has_state, status = EXIT_FAIL;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		int r = cmd_global_opt(g, &cmd_state, opt, optarg);

		if (r < 0)
			return EXIT_OK;
		if (!r)
			return cmd_usage_error(&cmd_state, "unknown option");
	}
	if (optind >= argc)
		return cmd_usage_error(&cmd_state, "missing subcommand (list, show, rm, restore)");
	verb = argv[optind++];
	if (strcmp(verb, "list") && strcmp(verb, "show") && strcmp(verb, "rm") && strcmp(verb, "restore"))
		return cmd_usage_error(&cmd_state, "unknown subcommand \"%s\" (list, show, rm, restore)", verb);
	if (strcmp(verb, "list") && strcmp(verb, "restore")) {
		if (optind >= argc)
			return cmd_usage_error(&cmd_state, "state %s needs a certificate name", verb);
		name = argv[optind++];
	}
	if (optind < argc)
		return cmd_usage_error(&cmd_state, "unexpected argument \"%s\"", argv[optind]);
	cmd_setup_logging(g);
	if (cmd_load_config(g, &cfg))
		goto out;
	if (!strcmp(verb, "rm")) {
		/* Forgetting is a write: take the lock like apply does. Output files stay on disk. */
		if (state_file_open(cfg->state_path, &be) || state_lock(be, "state rm") || state_load(be, &st)) {
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
	if (!strcmp(verb, "restore")) {
		status = state_restore(cfg);
		goto out;
	}
	if (cmd_read_state(cfg, &be, &st, &has_state))
		goto out;
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
	"Inspect or edit the state: list the certificates, show one record as JSON, forget one (rm), or put\n"
	"state.json.backup back after state.json was lost (restore).",
	state_run,
	"state list | state show NAME | state rm NAME | state restore",
};
