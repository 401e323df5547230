/* certsync: entry point, subcommand table, shared command-line plumbing. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../backends.h"
#include "../source/gitsrc.h"
#include "cmd.h"

volatile sig_atomic_t cmd_stop;

static const struct cmd *const commands[] = {
	&cmd_validate, &cmd_plan, &cmd_apply, &cmd_run, &cmd_state, &cmd_version,
};

static void on_stop(int sig)
{
	(void)sig;
	__atomic_store_n(&cmd_stop, 1, __ATOMIC_RELAXED); /* apply's workers read it */
}

void cmd_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int cmd_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAIL;
}

static void cmd_print_help(const struct cmd *c, FILE *out)
{
	fprintf(out, "usage: certsync %s\n\n%s\n\n%s", c->usage, c->summary,
		"global options:\n"
		"  --config FILE        config file (default $CERTSYNC_CONFIG or ./certsync.yaml)\n"
		"  --repo URL|PATH      override source.repo\n"
		"  --ref REF            override source.ref (branch, tag or commit)\n"
		"  --path DIR           override source.path (manifests folder in the repository)\n"
		"  --state FILE         override state.path (and use the file backend)\n"
		"  --output-root DIR    override output.root\n"
		"  --log-format FMT     text or json ($CERTSYNC_LOG_FORMAT; default text, json for run)\n"
		"  -v, --verbose        debug logging\n"
		"  --help               this help\n"
		"\nexit codes: 0 success, 1 error or failed certificate, 2 plan has changes (--detailed-exitcode),\n"
		"            64 bad command line\n");
}

int cmd_usage_error(const struct cmd *c, const char *fmt, ...)
{
	va_list ap;

	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: certsync %s (see certsync %s --help)\n", c->usage, c->name);
	return EXIT_USAGE;
}

int cmd_parse_parallelism(const struct cmd *c, const char *arg, int *out)
{
	char *end;
	long n = strtol(arg, &end, 10);

	if (end == arg || *end || n < 1 || n > 64)
		return cmd_usage_error(c, "--parallelism takes a number from 1 to 64");
	*out = (int)n;
	return 0;
}

int cmd_global_opt(struct cmd_globals *g, const struct cmd *c, int opt, const char *arg)
{
	switch (opt) {
	case OPT_CONFIG: g->config = arg; return 1;
	case OPT_REPO: g->repo = arg; return 1;
	case OPT_REF: g->ref = arg; return 1;
	case OPT_PATH: g->path = arg; return 1;
	case OPT_STATE: g->state = arg; return 1;
	case OPT_OUTPUT_ROOT: g->output_root = arg; return 1;
	case OPT_LOG_FORMAT: g->log_format = arg; return 1;
	case 'v': g->verbose++; return 1;
	case OPT_HELP: cmd_print_help(c, stdout); return -1;
	default: return 0;
	}
}

int cmd_load_config(const struct cmd_globals *g, struct config **out)
{
	return cmd_load_config_to(g, out, 0);
}

int cmd_load_config_to(const struct cmd_globals *g, struct config **out, int to_log)
{
	struct diags d = DIAGS_INIT;
	const char *path = g->config ? g->config : getenv("CERTSYNC_CONFIG");
	int rc;

	if (!path || !*path)
		path = "certsync.yaml";
	rc = config_load(path, out, &d);
	if (rc == CS_ENOTFOUND && to_log) {
		log_error("%s", cs_errmsg());
	} else if (rc == CS_ENOTFOUND) {
		cmd_fail("%s", cs_errmsg());
	} else if (rc && to_log) {
		for (size_t i = 0; i < d.n; i++) {
			char *m = diag_format(&d.v[i]);

			log_error("%s", m);
			free(m);
		}
		log_error("%s: %zu problem%s in the config", path, d.n, d.n == 1 ? "" : "s");
	} else if (rc) {
		diags_print(&d, stderr);
		fprintf(stderr, "error: %s: %zu problem%s in the config\n", path, d.n, d.n == 1 ? "" : "s");
	} else {
		config_override(*out, g->repo, g->ref, g->path, g->state, g->output_root);
	}
	diags_free(&d);
	return rc;
}

int cmd_open_source(const struct config *cfg, const char *commit_or_null, struct cmd_source *out)
{
	int64_t t0 = util_mono_ms(), t1;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = reconcile_open_source(cfg, &out->git)) ||
	    (rc = gitsrc_resolve(out->git, commit_or_null ? commit_or_null : cfg->source.ref, out->commit)) ||
	    (rc = reconcile_verify_head(cfg, out->git, out->commit, NULL))) {
		cmd_fail("%s", cs_errmsg());
		return rc;
	}
	t1 = util_mono_ms();
	if ((rc = reconcile_desired(cfg, out->git, out->commit, NULL, &out->desired))) {
		cmd_fail("%s", cs_errmsg());
		return rc;
	}
	log_debug("source opened in %" PRId64 " ms; %zu manifests read in %" PRId64 " ms", t1 - t0,
		  out->desired.n_files, util_mono_ms() - t1);
	return 0;
}

void cmd_source_free(struct cmd_source *s)
{
	desired_free(&s->desired);
	gitsrc_free(s->git);
	s->git = NULL;
}

int cmd_read_state(const struct config *cfg, struct state_backend **be, struct state **st, int *has_state)
{
	int rc = cmd_load_state(cfg, be, st, has_state);

	if (rc)
		cmd_fail("%s", cs_errmsg());
	return rc;
}

int cmd_state_exists(const struct config *cfg, const struct state *st)
{
	if (cfg->state.backend == STATE_BACKEND_FILE)
		return state_cert_count(st) > 0; /* the caller checks the file itself first */
	return st->serial > 0 || state_cert_count(st) > 0;
}

int cmd_load_state(const struct config *cfg, struct state_backend **be, struct state **st, int *has_state)
{
	int rc;

	int64_t t0 = util_mono_ms();

	*st = NULL;
	*has_state = cfg->state.backend == STATE_BACKEND_FILE && access(cfg->state_path, F_OK) == 0;
	if ((rc = backends_open_state(cfg, be)) || (rc = state_load(*be, st))) {
		state_backend_free(*be);
		*be = NULL;
		return rc;
	}
	if (!*has_state && cmd_state_exists(cfg, *st))
		*has_state = 1; /* file: recovered from the journal alone; postgres: a header was written */
	log_debug("state: %zu certificates loaded in %" PRId64 " ms", state_cert_count(*st), util_mono_ms() - t0);
	return 0;
}

static void main_usage(FILE *out)
{
	fprintf(out, "usage: certsync [--config FILE] <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) /* first line of each summary */
		fprintf(out, "  %-10s %.*s\n", commands[i]->name, (int)strcspn(commands[i]->summary, "\n"),
			commands[i]->summary);
	fprintf(out, "\nRun 'certsync <command> --help' for a command's options.\n"
		     "exit codes: 0 success, 1 error or failed certificate, 2 plan has changes (--detailed-exitcode),\n"
		     "            64 bad command line\n");
}

void cmd_setup_logging(const struct cmd_globals *g)
{
	enum log_format fmt = LOGF_TEXT;
	const char *f = g->log_format ? g->log_format : getenv("CERTSYNC_LOG_FORMAT");
	enum log_level lv = g->verbose ? LV_DEBUG : LV_INFO;

	if (f && *f && log_parse_format(f, &fmt)) {
		fprintf(stderr, "error: %s\n", cs_errmsg());
		exit(EXIT_USAGE);
	}
	log_setup(fmt, lv, stderr);
}

int main(int argc, char **argv)
{
	struct cmd_globals g;
	const struct cmd *c = NULL;
	int first = 1, rc;

	memset(&g, 0, sizeof(g));
	/* Global options may come before the command too: certsync --config x plan. */
	while (first < argc && argv[first][0] == '-' && !c) {
		const char *a = argv[first];

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			main_usage(stdout);
			return EXIT_OK;
		}
		if (!strcmp(a, "--version")) {
			c = &cmd_version;
			break;
		}
		if ((!strcmp(a, "--config") || !strcmp(a, "--log-format")) && first + 1 < argc) {
			if (a[2] == 'c')
				g.config = argv[first + 1];
			else
				g.log_format = argv[first + 1];
			first += 2;
			continue;
		}
		if (!strncmp(a, "--config=", 9)) {
			g.config = a + 9;
			first++;
			continue;
		}
		if (!strcmp(a, "-v")) {
			g.verbose++;
			first++;
			continue;
		}
		fprintf(stderr, "error: unknown option %s before the command\n", a);
		main_usage(stderr);
		return EXIT_USAGE;
	}
	if (!c && first >= argc) {
		main_usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t i = 0; !c && i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[first], commands[i]->name))
			c = commands[i];
	if (!c) {
		fprintf(stderr, "error: unknown command \"%s\"\n", argv[first]);
		main_usage(stderr);
		return EXIT_USAGE;
	}
	cmd_setup_logging(&g);
	rc = c->run(&g, argc - first, argv + first);
	log_clear_secrets();
	gitsrc_global_shutdown();
	return rc;
}

/* GitHub's job summary: the Markdown plan appended to $GITHUB_STEP_SUMMARY when it is set. */
static int cmd_step_summary(const struct plan *p)
{
	const char *path = getenv("GITHUB_STEP_SUMMARY");
	struct buf b = BUF_INIT;
	FILE *f;
	int rc;

	if (!path || !path[0])
		return 0;
	if ((rc = plan_render_markdown(p, &b)))
		return rc;
	f = fopen(path, "a");
	if (!f) {
		buf_free(&b);
		return cs_error(CS_ERROR, "GITHUB_STEP_SUMMARY %s: %s", path, strerror(errno));
	}
	rc = fwrite(b.data, 1, b.len, f) != b.len;
	rc |= fclose(f) != 0;
	buf_free(&b);
	return rc ? cs_error(CS_ERROR, "GITHUB_STEP_SUMMARY %s: write failed", path) : 0;
}

int cmd_print_plan(const struct plan *p, const char *format, int no_color, int ascii, FILE *out)
{
	struct buf b = BUF_INIT;
	int flags = ascii ? PLAN_TEXT_ASCII : 0, rc;

	if (!no_color && isatty(fileno(out)) && !getenv("NO_COLOR"))
		flags |= PLAN_TEXT_COLOR;
	if (!strcmp(format, "json"))
		rc = plan_render_json(p, &b);
	else if (!strcmp(format, "markdown"))
		rc = plan_render_markdown(p, &b);
	else if (!strcmp(format, "github"))
		rc = plan_render_github(p, &b);
	else
		rc = plan_render_text(p, flags, &b);
	if (!rc)
		fwrite(b.data, 1, b.len, out);
	fflush(out);
	buf_free(&b);
	if (!rc && !strcmp(format, "github"))
		rc = cmd_step_summary(p);
	return rc;
}
