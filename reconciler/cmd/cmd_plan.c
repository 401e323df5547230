/* certsync plan: what apply would do, in text, JSON or Markdown. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../source/gitsrc.h"
#include "cmd.h"

enum {
	OPT_OUT = OPT__GLOBAL_END,
	OPT_FORMAT,
	OPT_DETAILED,
	OPT_REFRESH,
	OPT_RETRY,
	OPT_ASCII,
	OPT_BASE,
	OPT_HEAD,
	OPT_WITH_STATE,
	OPT_TARGET
};

enum plan_format { FMT_TEXT, FMT_JSON, FMT_MARKDOWN, FMT_GITHUB, FMT__MAX };
static const char *const format_names[FMT__MAX] = {"text", "json", "markdown", "github"};

/*
 * A pull-request plan: the manifests at the merge base of base and head
 * against those at head. No credentials; the state only when --state names a
 * file or --with-state asks for the configured one (postgres: its URL).
 * Each side has its own parse cache: a shared one would evict the base's
 * specs while loading head's.
 */
static int plan_pr(int with_state, const struct config *cfg, const char *base_ref, const char *head_ref,
		   struct plan **out)
{
	struct gitsrc *git = NULL;
	struct desired base, head;
	struct state_backend *be = NULL;
	struct state *st = NULL;
	char base_c[41], head_c[41], mb[41];
	int has_state = 0, rc;

	memset(&base, 0, sizeof(base));
	memset(&head, 0, sizeof(head));
	if ((rc = reconcile_open_source(cfg, &git)) || (rc = gitsrc_resolve(git, base_ref, base_c)) ||
	    (rc = gitsrc_resolve(git, head_ref, head_c)) || (rc = gitsrc_merge_base(git, base_c, head_c, mb)) ||
	    (rc = reconcile_desired(cfg, git, mb, NULL, &base)) ||
	    (rc = reconcile_desired(cfg, git, head_c, NULL, &head))) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	if (with_state && (rc = cmd_read_state(cfg, &be, &st, &has_state)))
		goto out;
	if ((rc = reconcile_pr_plan(cfg, gitsrc_display(git), head_ref, &base, &head, has_state ? st : NULL, util_now(),
				    out)))
		cmd_fail("%s", cs_errmsg());
out:
	state_free(st);
	state_backend_free(be);
	desired_free(&base);
	desired_free(&head);
	gitsrc_free(git);
	return rc;
}

int cmd_warn_lost_state(const struct config *cfg, struct plan *p)
{
	char desc[1024];

	/* The postgres backend keeps no backup file: a lost database is a pg_dump restore (docs/state.md). */
	if (cfg->state.backend != STATE_BACKEND_FILE || !state_file_lost(cfg->state_path, desc, sizeof(desc)))
		return 0;
	plan_add_warning(p,
			 "there is no state at %s, but its backup %s is there: if the state was lost, restore it "
			 "with \"certsync state restore\" first. This plan treats every certificate as new; apply "
			 "refuses its paid changes until the state is restored (or apply --ignore-backup)",
			 cfg->state_path, desc);
	return 1;
}

/* The state and the outputs it records, loaded beside the manifests (they do not depend on them). */
struct plan_bg {
	const struct config *cfg;
	struct state_backend *be;
	struct state *st;
	int has_state, rc;
	enum output_status *observed;
	char err[1024];
};

/* The outputs, and a word when some had to be read (a plan records nothing: apply does). */
static void plan_observe(struct plan_bg *b)
{
	size_t n = 0, moved;

	b->observed = reconcile_observe(b->cfg, b->st, &n);
	moved = reconcile_outputs_moved(b->observed, n);
	if (moved)
		log_info("the files of %zu certificate%s outputs were copied, restored or touched since they were "
			 "installed, their content unchanged: this plan read them; certsync apply records their new "
			 "signatures, so later plans stat them again",
			 moved, moved == 1 ? "'s" : "s'");
}

static void *plan_bg_run(void *arg)
{
	struct plan_bg *b = arg;

	if ((b->rc = cmd_load_state(b->cfg, &b->be, &b->st, &b->has_state)))
		snprintf(b->err, sizeof(b->err), "%s", cs_errmsg());
	else
		plan_observe(b);
	return NULL;
}

/*
 * Manifests (parsing) and state + outputs (decoding, stat calls) are
 * independent until the diff: on a 10,000-certificate repository running
 * them side by side takes the shorter off the wall time.
 */
static int plan_load(const struct config *cfg, struct cmd_source *src, struct state_backend **be, struct state **st,
		     int *has_state, enum output_status **observed)
{
	struct plan_bg b;
	pthread_t t;
	int threaded, rc;

	memset(&b, 0, sizeof(b));
	b.cfg = cfg;
	threaded = pthread_create(&t, NULL, plan_bg_run, &b) == 0;
	rc = cmd_open_source(cfg, NULL, src);
	if (threaded)
		pthread_join(t, NULL);
	else
		plan_bg_run(&b);
	*be = b.be;
	*st = b.st;
	*has_state = b.has_state;
	*observed = b.observed;
	if (!rc && b.rc)
		cmd_fail("%s", b.err);
	return rc ? rc : b.rc;
}

static int plan_run(struct cmd_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_GLOBAL_OPTIONS,
		{"out", required_argument, NULL, OPT_OUT},
		{"format", required_argument, NULL, OPT_FORMAT},
		{"detailed-exitcode", no_argument, NULL, OPT_DETAILED},
		{"refresh", no_argument, NULL, OPT_REFRESH},
		{"retry-failed", no_argument, NULL, OPT_RETRY},
		{"ascii", no_argument, NULL, OPT_ASCII},
		{"base", required_argument, NULL, OPT_BASE},
		{"head", required_argument, NULL, OPT_HEAD},
		{"with-state", no_argument, NULL, OPT_WITH_STATE},
		{"target", required_argument, NULL, OPT_TARGET},
		{NULL, 0, NULL, 0},
	};
	struct config *cfg = NULL;
	struct cmd_source src;
	struct state_backend *be = NULL;
	struct state *st = NULL;
	struct plan *p = NULL;
	struct reconcile_opts ro;
	const char *out_path = NULL, *base_ref = NULL, *head_ref = NULL;
	enum output_status *observed = NULL;
	int format = FMT_TEXT, detailed = 0, ascii = 0, has_state = 0, with_state = 0, opt;
	int status = EXIT_FAIL;
	struct buf b = BUF_INIT;
	struct cmd_targets targets;

	memset(&targets, 0, sizeof(targets));
	memset(&src, 0, sizeof(src));
	memset(&ro, 0, sizeof(ro));
	optind = 1;
	while ((opt = cmd_getopt(&cmd_plan, argc, argv, opts)) != -1) {
		int r = cmd_global_opt(g, &cmd_plan, opt, optarg);

		if (r < 0)
			return EXIT_OK;
		if (r)
			continue;
		switch (opt) {
		case OPT_OUT: out_path = optarg; break;
		case OPT_FORMAT:
			for (format = 0; format < FMT__MAX && strcmp(optarg, format_names[format]); format++)
				;
			if (format == FMT__MAX)
				return cmd_usage_error(&cmd_plan,
						       "unknown format \"%s\" (text, json, markdown, github)", optarg);
			break;
		case OPT_DETAILED: detailed = 1; break;
		case OPT_REFRESH: ro.refresh = 1; break;
		case OPT_RETRY: ro.retry_failed = 1; break;
		case OPT_ASCII: ascii = 1; break;
		case OPT_BASE: base_ref = optarg; break;
		case OPT_HEAD: head_ref = optarg; break;
		case OPT_WITH_STATE: with_state = 1; break;
		case OPT_TARGET:
			if (cmd_target_add(&cmd_plan, &targets, optarg))
				return EXIT_USAGE;
			break;
		default: return EXIT_USAGE; /* cmd_getopt said why */
		}
	}
	if (optind < argc)
		return cmd_usage_error(&cmd_plan, "unexpected argument \"%s\"", argv[optind]);
	if (head_ref && !base_ref)
		return cmd_usage_error(&cmd_plan, "--head needs --base");
	if (with_state && !base_ref)
		return cmd_usage_error(&cmd_plan,
				       "--with-state is for --base plans (a plain plan always reads the state)");
	if (base_ref && targets.n)
		return cmd_usage_error(&cmd_plan, "--target is for plans of the configured source, not --base plans");
	if (base_ref && (out_path || ro.refresh || ro.retry_failed))
		return cmd_usage_error(&cmd_plan,
				       "--base plans compare manifests only: no --out, --refresh or --retry-failed");
	cmd_setup_logging(g);
	ro.now = util_now();
	if (cmd_load_config_mode(g, base_ref ? CONFIG_PR_PLAN : 0, &cfg, 0))
		goto out;
	/* A PR plan's config may hold only issuers: the repository is then the checkout CI runs in. */
	if (base_ref && !cfg->source.repo)
		config_override(cfg, ".", NULL, NULL, NULL, NULL);
	if (base_ref && with_state && !cfg->state_path && cfg->state.backend == STATE_BACKEND_FILE) {
		cmd_fail("--with-state: the config has no state section (give --state FILE, or the state section)");
		goto out;
	}
	if (base_ref) {
		if (plan_pr(with_state || g->state, cfg, base_ref, head_ref ? head_ref : cfg->source.ref, &p))
			goto out;
	} else {
		if (plan_load(cfg, &src, &be, &st, &has_state, &observed))
			goto out;
		ro.observed = observed;
		if (reconcile_plan(cfg, gitsrc_display(src.git), cfg->source.ref, &src.desired, st, has_state, &ro,
				   &p)) {
			cmd_fail("%s", cs_errmsg());
			goto out;
		}
		cmd_warn_lost_state(cfg, p);
		if (cmd_target_plan(&targets, &src.desired, has_state ? st : NULL, p))
			goto out;
	}
	if (cmd_print_plan(p, format_names[format], g->no_color, ascii, stdout)) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	if (out_path) {
		if (plan_render_json(p, &b) || fsutil_write_atomic(out_path, b.data, b.len, 0644)) {
			cmd_fail("writing the plan: %s", cs_errmsg());
			goto out;
		}
		fprintf(stderr, "Saved the plan to %s: apply it with \"certsync apply %s\".\n", out_path, out_path);
	}
	/* Manifest errors and failed certificates that apply leaves alone need someone: never a green exit. */
	if (p->errors.n || p->n_failed)
		status = EXIT_FAIL;
	else
		status = detailed && plan_has_changes(p) ? EXIT_CHANGES : EXIT_OK;
out:
	free(observed);
	buf_free(&b);
	plan_free(p);
	state_free(st);
	state_backend_free(be);
	cmd_source_free(&src);
	config_free(cfg);
	return status;
}

const struct cmd cmd_plan = {
	"plan",
	"Show what apply would change: creates, replacements, renewals, resumes, reinstalls, removals, paid orders.\n"
	"Options:\n"
	"  --format text|json|markdown|github   output format (default text)\n"
	"  --base REF [--head REF]       pull-request plan: the manifests at head (default: the configured ref)\n"
	"                                against their merge base with REF; needs no credentials, and reads\n"
	"                                the state only when --state FILE or --with-state (the configured\n"
	"                                backend, e.g. postgres) is given (then renewals due are shown)\n"
	"  --out FILE                    also save the plan as JSON, for \"certsync apply FILE\"\n"
	"  --detailed-exitcode           exit 2 when the plan has changes (0 none, 1 error or a failed certificate)\n"
	"  --refresh                     ask the providers about recorded certificates (drift)\n"
	"  --retry-failed                plan failed certificates again\n"
	"  --target NAME                 plan only this certificate (repeatable; for exceptional use)\n"
	"  --no-color, --ascii           plain text output",
	plan_run,
	"plan [--format text|json|markdown|github] [--out FILE] [--detailed-exitcode] [--refresh] [--target NAME]...\n"
	"       certsync plan --base REF [--head REF] [--repo PATH|URL] [--state FILE | --with-state] [--format ...]",
};
