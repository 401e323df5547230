/* certsync validate: check the config and the manifests at the ref, touch nothing. */
#include <stdio.h>
#include <string.h>

#include "../../util/err.h"
#include "cmd.h"

static int validate_run(struct cmd_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {CMD_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
	struct config *cfg = NULL;
	struct cmd_source src;
	int opt, rc, status = EXIT_FAIL;

	memset(&src, 0, sizeof(src));
	optind = 1;
	while ((opt = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		int r = cmd_global_opt(g, &cmd_validate, opt, optarg);

		if (r < 0)
			return EXIT_OK;
		if (!r)
			return cmd_usage_error(&cmd_validate, "unknown option");
	}
	if (optind < argc)
		return cmd_usage_error(&cmd_validate, "unexpected argument \"%s\"", argv[optind]);
	cmd_setup_logging(g);
	if ((rc = cmd_load_config(g, &cfg)))
		goto out;
	if ((rc = cmd_open_source(cfg, NULL, &src)))
		goto out;
	diags_print(&src.desired.diags, stdout);
	if (src.desired.diags.n) {
		fprintf(stderr,
			"error: %zu problem%s in the manifests at %.12s (%zu valid certificate%s in %zu file%s)\n",
			src.desired.diags.n, src.desired.diags.n == 1 ? "" : "s", src.commit, src.desired.n_specs,
			src.desired.n_specs == 1 ? "" : "s", src.desired.n_files, src.desired.n_files == 1 ? "" : "s");
		goto out;
	}
	printf("%zu certificate%s in %zu file%s at %.12s: valid\n", src.desired.n_specs,
	       src.desired.n_specs == 1 ? "" : "s", src.desired.n_files, src.desired.n_files == 1 ? "" : "s",
	       src.commit);
	status = EXIT_OK;
out:
	cmd_source_free(&src);
	config_free(cfg);
	return status;
}

const struct cmd cmd_validate = {
	"validate",
	"Check the config and the manifests at the ref; change nothing. Exit 1 on any problem.",
	validate_run,
	"validate [--config FILE] [--ref REF]",
};
