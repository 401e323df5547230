/* certsync run: the long-running reconciler (Kubernetes sidecar, systemd service). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/log.h"
#include "../daemon/daemon.h"
#include "cmd.h"

enum { OPT_PARALLELISM = OPT__GLOBAL_END, OPT_ALLOW_PARTIAL };

/* Loads the config, logging every diagnostic (the daemon's stderr is one log line per event). */
static int run_load_config(void *arg, struct config **out)
{
	return cmd_load_config_to(arg, out, 1);
}

static int run_run(struct cmd_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_GLOBAL_OPTIONS,
		{"parallelism", required_argument, NULL, OPT_PARALLELISM},
		{"allow-partial", no_argument, NULL, OPT_ALLOW_PARTIAL},
		{NULL, 0, NULL, 0},
	};
	struct daemon_opts o;
	struct config *cfg = NULL;
	int opt;

	memset(&o, 0, sizeof(o));
	o.parallelism = 4;
	optind = 1;
	while ((opt = cmd_getopt(&cmd_run, argc, argv, opts)) != -1) {
		int r = cmd_global_opt(g, &cmd_run, opt, optarg);

		if (r < 0)
			return EXIT_OK;
		if (r)
			continue;
		switch (opt) {
		case OPT_PARALLELISM:
			if (cmd_parse_parallelism(&cmd_run, optarg, &o.parallelism))
				return EXIT_USAGE;
			break;
		case OPT_ALLOW_PARTIAL: o.allow_partial = 1; break;
		default: return EXIT_USAGE; /* cmd_getopt said why */
		}
	}
	if (optind < argc)
		return cmd_usage_error(&cmd_run, "unexpected argument \"%s\"", argv[optind]);
	/* A daemon logs JSON unless told otherwise (log collectors read one object per line). */
	if (!g->log_format && !getenv("CERTSYNC_LOG_FORMAT"))
		g->log_format = "json";
	cmd_setup_logging(g);
	if (run_load_config(g, &cfg))
		return EXIT_FAIL;
	o.load_config = run_load_config;
	o.load_arg = g;
	return daemon_run(cfg, &o) ? EXIT_FAIL : EXIT_OK;
}

const struct cmd cmd_run = {
	"run",
	"Run as a daemon: follow the source, reconcile when something is due, serve webhooks, /healthz, /readyz\n"
	"and /metrics on server.listen. SIGTERM/SIGINT stop (state saved), SIGHUP reloads the config and\n"
	"retries failing certificates now, SIGUSR1 reconciles now, SIGUSR2 retries every failed certificate\n"
	"(as apply --retry-failed; POST /retry[/<name>] does too with server.adminToken).\n"
	"Logs are JSON lines on stderr unless --log-format text.\n"
	"Options:\n"
	"  --parallelism N   certificates worked on at once (default 4)\n"
	"  --allow-partial   apply the valid certificates of a revision that has invalid manifests\n"
	"                    (without it such a revision only renews, resumes and reinstalls)",
	run_run,
	"run [--config FILE] [--parallelism N] [--allow-partial] [--log-format json|text]",
};
