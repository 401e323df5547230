/* certsync show PLAN.json: a saved plan rendered again (Terraform's show), for review before apply. */
#include <stdio.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "cmd.h"

#define SHOW_PLAN_MAX (16 * 1024 * 1024)

enum { OPT_FORMAT = OPT__GLOBAL_END, OPT_ASCII };

static const char *const show_formats[] = {"text", "json", "markdown", "github", NULL};

static int show_run(struct cmd_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_GLOBAL_OPTIONS,
		{"format", required_argument, NULL, OPT_FORMAT},
		{"ascii", no_argument, NULL, OPT_ASCII},
		{NULL, 0, NULL, 0},
	};
	const char *format = "text", *path;
	struct buf b = BUF_INIT;
	struct plan *p = NULL;
	int opt, ascii = 0, status = EXIT_FAIL;
	size_t i;

	optind = 1;
	while ((opt = cmd_getopt(&cmd_show, argc, argv, opts)) != -1) {
		int r = cmd_global_opt(g, &cmd_show, opt, optarg);

		if (r < 0)
			return EXIT_OK;
		if (r)
			continue;
		if (opt == OPT_FORMAT) {
			for (i = 0; show_formats[i] && strcmp(optarg, show_formats[i]); i++)
				;
			if (!show_formats[i])
				return cmd_usage_error(&cmd_show,
						       "unknown format \"%s\" (text, json, markdown, github)", optarg);
			format = show_formats[i];
		} else if (opt == OPT_ASCII) {
			ascii = 1;
		} else {
			return EXIT_USAGE; /* cmd_getopt said why */
		}
	}
	if (optind >= argc)
		return cmd_usage_error(&cmd_show, "show needs a plan file (saved with certsync plan --out FILE)");
	path = argv[optind++];
	if (optind < argc)
		return cmd_usage_error(&cmd_show, "unexpected argument \"%s\"", argv[optind]);
	cmd_setup_logging(g);
	/* No config, source or state: a saved plan says everything it shows. */
	if (fsutil_read_file(path, SHOW_PLAN_MAX, &b) || plan_from_json(b.data, b.len, path, &p) ||
	    cmd_print_plan(p, format, g->no_color, ascii, stdout)) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	status = EXIT_OK;
out:
	plan_free(p);
	buf_free(&b);
	return status;
}

const struct cmd cmd_show = {
	"show",
	"Show a plan saved with \"plan --out FILE\" (as text, JSON, Markdown or GitHub annotations), without\n"
	"reading the config, the source or the state.\n"
	"Options:\n"
	"  --format text|json|markdown|github   output format (default text)\n"
	"  --ascii                              plain ASCII symbols",
	show_run,
	"show PLAN.json [--format text|json|markdown|github] [--ascii]",
};
