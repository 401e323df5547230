/* The command-line front end: shared options and the subcommand table. */
#ifndef CS_RECONCILER_CMD_CMD_H
#define CS_RECONCILER_CMD_CMD_H

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "../../state/state.h"
#include "../config.h"
#include "../plan/plan.h"
#include "../reconcile.h"

/* Exit codes (docs/cli.md). */
enum {
	EXIT_OK = 0,	  /* success; plan: no changes */
	EXIT_FAIL = 1,	  /* error, invalid input, or a certificate failed */
	EXIT_CHANGES = 2, /* plan --detailed-exitcode: the plan has changes */
	EXIT_USAGE = 64,  /* bad command line (sysexits EX_USAGE) */
};

/* Options every subcommand accepts. */
struct cmd_globals {
	const char *config;
	const char *repo, *ref, *path, *state, *output_root;
	int verbose;
	int no_color; /* --no-color: no ANSI colour even on a terminal */
	const char *log_format;
};

struct cmd {
	const char *name;
	const char *summary;
	int (*run)(struct cmd_globals *g, int argc, char **argv);
	const char *usage;
};

/* getopt_long ids for the global options (> 255 so they never clash with short options). */
enum {
	OPT_CONFIG = 256,
	OPT_REPO,
	OPT_REF,
	OPT_PATH,
	OPT_STATE,
	OPT_OUTPUT_ROOT,
	OPT_LOG_FORMAT,
	OPT_HELP,
	OPT_NO_COLOR,
	OPT__GLOBAL_END
};

#define CMD_GLOBAL_OPTIONS                                                                                             \
	{"config", required_argument, NULL, OPT_CONFIG}, {"repo", required_argument, NULL, OPT_REPO},                  \
		{"ref", required_argument, NULL, OPT_REF}, {"path", required_argument, NULL, OPT_PATH},                \
		{"state", required_argument, NULL, OPT_STATE},                                                         \
		{"output-root", required_argument, NULL, OPT_OUTPUT_ROOT},                                             \
		{"log-format", required_argument, NULL, OPT_LOG_FORMAT}, {"help", no_argument, NULL, OPT_HELP},        \
		{"no-color", no_argument, NULL, OPT_NO_COLOR},                                                         \
	{                                                                                                              \
		"verbose", no_argument, NULL, 'v'                                                                      \
	}

/*
 * Handles a global option from getopt_long (returns 1 if it was one, 0 if
 * not, -1 after printing help: the caller exits 0).
 */
int cmd_global_opt(struct cmd_globals *g, const struct cmd *c, int opt, const char *arg);

/* What cmd_getopt returns for a bad option, after printing its one error line. */
#define CMD_OPT_BAD (-2)

/*
 * getopt_long for command c with getopt's own messages off: an unknown,
 * ambiguous or incomplete option prints one line ("did you mean --x?" when
 * a long option is close) and returns CMD_OPT_BAD (the caller exits
 * EXIT_USAGE); otherwise as getopt_long (-1 at the end).
 */
int cmd_getopt(const struct cmd *c, int argc, char **argv, const struct option *opts);

/* The candidate closest to word (a typo or a prefix of it), or NULL when none is close. */
const char *cmd_suggest(const char *word, const char *const *cands, size_t n);

/* (Re)configures logging from --log-format/-v/$CERTSYNC_LOG_FORMAT; exits 64 on a bad format. */
void cmd_setup_logging(const struct cmd_globals *g);

/* Prints "error: <msg>" on stderr and returns EXIT_FAIL. */
int cmd_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints usage for a bad command line and returns EXIT_USAGE. */
int cmd_usage_error(const struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads the config named by g (default ./certsync.yaml or $CERTSYNC_CONFIG) with overrides; prints diagnostics. */
int cmd_load_config(const struct cmd_globals *g, struct config **out);
/* The same, with the diagnostics as log lines (to_log: the daemon) or printed (0). */
int cmd_load_config_to(const struct cmd_globals *g, struct config **out, int to_log);

/* The same for a config_load_mode mode (CONFIG_PR_PLAN: plan --base needs only issuers). */
int cmd_load_config_mode(const struct cmd_globals *g, int mode, struct config **out, int to_log);

/* Parses --parallelism (1..64) into *out; a bad value prints usage and returns EXIT_USAGE. */
int cmd_parse_parallelism(const struct cmd *c, const char *arg, int *out);

/* The pieces every command that reads manifests needs. */
struct cmd_source {
	struct gitsrc *git;
	char commit[41];
	struct desired desired;
};

/* Opens the source, resolves the ref and loads the desired set. Prints the error. */
int cmd_open_source(const struct config *cfg, const char *commit_or_null, struct cmd_source *out);
void cmd_source_free(struct cmd_source *s);

/* Reads the state without locking (plan, state list). A missing state is an empty one with has_state = 0. */
int cmd_read_state(const struct config *cfg, struct state_backend **be, struct state **st, int *has_state);
/* The same, printing nothing: the error is in cs_errmsg() (for a helper thread). */
int cmd_load_state(const struct config *cfg, struct state_backend **be, struct state **st, int *has_state);

/*
 * 1 when st (just loaded) is a state that exists: for postgres a header was
 * written (serial > 0) or records are there; for a file, records recovered
 * from the journal alone (the caller checks the file itself).
 */
int cmd_state_exists(const struct config *cfg, const struct state *st);

/*
 * When the state file is missing but its backup is there, warns in the plan
 * and returns 1 (apply then refuses paid changes unless told to ignore it).
 */
int cmd_warn_lost_state(const struct config *cfg, struct plan *p);

/* state migrate/rekey (cmd_state_migrate.c): "file"/"postgres" into a STATE_BACKEND_* (CS_EINVALID otherwise). */
int cmd_state_backend_parse(const char *s, int *kind);
/* Copies state and key store from the other backend to to_kind; refuses a non-empty target unless force. */
int cmd_state_migrate(const struct config *cfg, int to_kind, int force);
/* Re-encrypts the postgres key store under state.encryptionKey. Both print what they did; exit status. */
int cmd_state_rekey(const struct config *cfg);

/*
 * state import (cmd_state_import.c): adopts an existing certificate for the
 * manifest NAME of issuer ISSUER: ca from the directory id (checked against
 * the manifest), dnsimple by certificate id (resumed by the next apply).
 * Prints what it did; exit status.
 */
int cmd_state_import(const struct config *cfg, const char *name, const char *issuer, const char *id);

/* Renders the plan as text (colour only on a TTY unless no_color), json or markdown to out. */
int cmd_print_plan(const struct plan *p, const char *format, int no_color, int ascii, FILE *out);

/* --target NAME (repeatable) on plan and apply: the names point into argv. */
#define CMD_TARGETS_MAX 256
struct cmd_targets {
	char *v[CMD_TARGETS_MAX];
	size_t n;
};

/* Adds a --target value; over CMD_TARGETS_MAX prints usage and returns EXIT_USAGE. */
int cmd_target_add(const struct cmd *c, struct cmd_targets *t, char *name);

/*
 * Cuts p down to the targets (nothing when t->n is 0). Each must name a
 * certificate in the manifests or the state: otherwise prints one error
 * (with the closest name) and returns EXIT_FAIL.
 */
int cmd_target_plan(const struct cmd_targets *t, const struct desired *d, const struct state *st, struct plan *p);

/* Set by SIGINT/SIGTERM: finish the current step and stop. */
extern volatile sig_atomic_t cmd_stop;
void cmd_install_signals(void);

extern const struct cmd cmd_validate, cmd_plan, cmd_apply, cmd_show, cmd_run, cmd_state, cmd_version;

#endif
