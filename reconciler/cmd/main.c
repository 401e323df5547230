/* certsync: entry point, subcommand table, shared command-line plumbing. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/err.h"
#include "../../util/heap.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../backends.h"
#include "../source/gitsrc.h"
#include "cmd.h"

volatile sig_atomic_t cmd_stop;

static const struct cmd *const commands[] = {
	&cmd_validate, &cmd_plan, &cmd_apply, &cmd_show, &cmd_run, &cmd_revoke, &cmd_state, &cmd_version,
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

	fflush(stdout); /* what came before the error comes first, also when both go to one pipe */
	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAIL;
}

static void cmd_print_help(const struct cmd *c, FILE *out)
{
	fprintf(out, "usage: certsync %s\n\n%s\n\n", c->usage, c->summary);
	fprintf(out,
		"global options:\n"
		"  --config FILE        config file (default $CERTSYNC_CONFIG or ./certsync.yaml)\n"
		"  --repo URL|PATH      override source.repo\n"
		"  --ref REF            override source.ref (branch, tag or commit)\n"
		"  --path DIR           override source.path (manifests folder in the repository)\n"
		"  --state FILE         override state.path (and use the file backend)\n"
		"  --output-root DIR    override output.root\n"
		"  --log-format FMT     text or json ($CERTSYNC_LOG_FORMAT; default text, json for run)\n"
		"  --no-color           no ANSI colour (also when NO_COLOR is set or TERM=dumb)\n"
		"  -v, --verbose        debug logging\n"
		"  --help               this help (also: certsync help %s)\n"
		"\nexit codes: 0 success, 1 error or failed certificate, 2 plan has changes (--detailed-exitcode),\n"
		"            64 bad command line\n",
		c->name);
}

int cmd_usage_error(const struct cmd *c, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
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
	case OPT_NO_COLOR: g->no_color = 1; return 1;
	case 'v': g->verbose++; return 1;
	case OPT_HELP: cmd_print_help(c, stdout); return -1;
	default: return 0;
	}
}

int cmd_load_config(const struct cmd_globals *g, struct config **out)
{
	return cmd_load_config_mode(g, 0, out, 0);
}

int cmd_load_config_to(const struct cmd_globals *g, struct config **out, int to_log)
{
	return cmd_load_config_mode(g, 0, out, to_log);
}

int cmd_load_config_mode(const struct cmd_globals *g, int mode, struct config **out, int to_log)
{
	struct diags d = DIAGS_INIT;
	const char *path = g->config ? g->config : getenv("CERTSYNC_CONFIG");
	int rc;

	if (!path || !*path)
		path = "certsync.yaml";
	rc = config_load_mode(path, mode, out, &d);
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
	fprintf(out, "  %-10s %s\n", "help", "Show a command's options: certsync help COMMAND.");
	fprintf(out,
		"\nGlobal options (--config FILE, --log-format FMT, --no-color, -v, ...) may come before or after\n"
		"the command. Run 'certsync help <command>' for a command's options.\n"
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

/* Global options as they may come before the command: those that take a value, and flags. */
static const char *const main_value_opts[] = {"--config", "--repo",	   "--ref",	   "--path",
					      "--state",  "--output-root", "--log-format", NULL};
static const char *const main_flag_opts[] = {"-v", "--verbose", "--no-color", "--help", "-h", "--version", NULL};

static int main_in(const char *const *list, const char *word, size_t len)
{
	for (size_t i = 0; list[i]; i++)
		if (strlen(list[i]) == len && !strncmp(list[i], word, len))
			return 1;
	return 0;
}

/* How far the heap of a one-shot command grows at a time (heap_tune): untouched, it costs nothing. */
#define MAIN_HEAP_PAD (256u * 1024 * 1024)

static const struct cmd *main_find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i]->name))
			return commands[i];
	return NULL;
}

/* One line for a command name that is not one, with the closest if there is one. */
static int main_unknown_command(const char *name)
{
	const char *names[sizeof(commands) / sizeof(commands[0]) + 1];
	const char *hit;
	size_t n = 0;

	for (; n < sizeof(commands) / sizeof(commands[0]); n++)
		names[n] = commands[n]->name;
	names[n++] = "help";
	hit = cmd_suggest(name, names, n);
	if (hit)
		fprintf(stderr, "error: unknown command \"%s\"; did you mean %s?\n", name, hit);
	else
		fprintf(stderr, "error: unknown command \"%s\" (certsync help lists the commands)\n", name);
	return EXIT_USAGE;
}

/* certsync help [COMMAND] */
static int main_help(int argc, char **argv)
{
	const struct cmd *c;

	if (argc < 2) {
		main_usage(stdout);
		return EXIT_OK;
	}
	if (argc > 2) {
		fprintf(stderr, "error: certsync help takes one command name\n");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help")) {
		printf("usage: certsync help [COMMAND]\n\nList the commands, or show a command's options.\n");
		return EXIT_OK;
	}
	if (!(c = main_find(argv[1])))
		return main_unknown_command(argv[1]);
	cmd_print_help(c, stdout);
	return EXIT_OK;
}

/*
 * Global options before the command: checks them and returns the index of
 * the command word (argc when there is none), or -1 after printing why not.
 * *version is set for --version.
 */
static int main_leading(int argc, char **argv, int *version)
{
	int i = 1;

	while (i < argc && argv[i][0] == '-') {
		const char *a = argv[i];
		size_t len = strcspn(a, "=");

		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return -2;
		if (!strcmp(a, "--version")) {
			*version = 1;
			return i;
		}
		if (main_in(main_flag_opts, a, strlen(a))) {
			i++;
			continue;
		}
		if (main_in(main_value_opts, a, len)) {
			if (!a[len] && i + 1 >= argc) {
				fprintf(stderr, "error: option %s needs a value\n", a);
				return -1;
			}
			i += a[len] ? 1 : 2;
			continue;
		}
		{
			const char *all[sizeof(main_value_opts) / sizeof(main_value_opts[0]) +
					sizeof(main_flag_opts) / sizeof(main_flag_opts[0])];
			const char *hit, *word = a;
			char buf[65];
			size_t n = 0;

			for (size_t k = 0; main_value_opts[k]; k++)
				all[n++] = main_value_opts[k];
			for (size_t k = 0; main_flag_opts[k]; k++)
				all[n++] = main_flag_opts[k];
			snprintf(buf, sizeof(buf), "%.*s", (int)len, a);
			word = buf;
			hit = cmd_suggest(word, all, n);
			if (hit)
				fprintf(stderr, "error: unknown option %s before the command; did you mean %s?\n", word,
					hit);
			else
				fprintf(stderr,
					"error: unknown option %s before the command (options of a command come after "
					"it: certsync help COMMAND)\n",
					word);
			return -1;
		}
	}
	return i;
}

int main(int argc, char **argv)
{
	struct cmd_globals g;
	const struct cmd *c = NULL;
	char **args;
	int first, version = 0, n = 0, rc;

	memset(&g, 0, sizeof(g));
	/* In a pipe, stdout is written line by line as stderr is: findings and errors stay in order. */
	if (!isatty(STDOUT_FILENO))
		setvbuf(stdout, NULL, _IOLBF, 0);
	first = main_leading(argc, argv, &version);
	if (first == -2) {
		main_usage(stdout);
		return EXIT_OK;
	}
	if (first < 0)
		return EXIT_USAGE;
	if (version) {
		c = &cmd_version;
	} else if (first >= argc) {
		main_usage(stderr);
		return EXIT_USAGE;
	} else if (!strcmp(argv[first], "help")) {
		return main_help(argc - first, argv + first);
	} else if (!(c = main_find(argv[first]))) {
		return main_unknown_command(argv[first]);
	}
	/* The command sees its name, then the global options given before it, then the rest. */
	args = xcalloc((size_t)argc + 1, sizeof(*args));
	args[n++] = argv[first];
	for (int i = 1; i < first; i++)
		args[n++] = argv[i];
	for (int i = first + 1; i < argc; i++)
		args[n++] = argv[i];
	cmd_setup_logging(&g);
	/* The daemon keeps per-thread arenas (its webhook threads); a one-shot command builds everything at once. */
	if (c != &cmd_run)
		heap_tune(MAIN_HEAP_PAD);
	rc = c->run(&g, n, args);
	free(args);
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

	if (!no_color && isatty(fileno(out)) && !getenv("NO_COLOR") && !util_streq(getenv("TERM"), "dumb"))
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
