/* certsync apply [PLAN]: make it so, journaling every step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../../state/keystore.h"
#include "../backends.h"
#include "../engine.h"
#include "../hooks.h"
#include "../outputs.h"
#include "../providers/acme.h"
#include "../server/http_server.h"
#include "../source/gitsrc.h"
#include "cmd.h"

#define PLAN_FILE_MAX (16 * 1024 * 1024)

enum {
	OPT_PARALLELISM = OPT__GLOBAL_END,
	OPT_ALLOW_PARTIAL,
	OPT_WAIT,
	OPT_RETRY,
	OPT_REFRESH,
	OPT_IGNORE_BACKUP,
	OPT_AUTO_APPROVE,
	OPT_TARGET,
};

struct apply_args {
	const char *plan_file;
	int parallelism, allow_partial, retry_failed, refresh, ignore_backup, auto_approve;
	int64_t wait;
	struct cmd_targets targets;
};

/* A saved plan is only good for the state and commit it was made against (Terraform's "stale plan"). */
static int apply_check_stale(const struct plan *p, const struct state *st, int has_state, const char *commit)
{
	if (p->has_state != has_state || (has_state && (strcmp(p->lineage, st->lineage) || p->serial != st->serial))) {
		if (!p->has_state)
			return cs_error(CS_ECONFLICT,
					"stale plan: it was made with no state, but the state now exists (lineage "
					"%.8s, serial %llu); run certsync plan again",
					st->lineage, (unsigned long long)st->serial);
		if (!has_state)
			return cs_error(CS_ECONFLICT,
					"stale plan: it was made for state lineage %.8s, but there is no state now; "
					"run certsync plan again",
					p->lineage);
		return cs_error(CS_ECONFLICT,
				"stale plan: it was made for state lineage %.8s serial %llu, but the state is now "
				"lineage %.8s serial %llu; run certsync plan again",
				p->lineage, (unsigned long long)p->serial, st->lineage, (unsigned long long)st->serial);
	}
	if (!util_streq(p->commit, commit))
		return cs_error(CS_ECONFLICT,
				"stale plan: it was made at commit %.12s, but the source is now at %.12s; run certsync "
				"plan again",
				p->commit ? p->commit : "?", commit);
	return 0;
}

static int apply_load_plan(const char *path, struct plan **out)
{
	struct buf b = BUF_INIT;
	int rc = fsutil_read_file(path, PLAN_FILE_MAX, &b);

	if (!rc)
		rc = plan_from_json(b.data, b.len, path, out);
	buf_free(&b);
	return rc;
}

static int apply_parse(struct cmd_globals *g, int argc, char **argv, struct apply_args *a)
{
	static const struct option opts[] = {
		CMD_GLOBAL_OPTIONS,
		{"parallelism", required_argument, NULL, OPT_PARALLELISM},
		{"allow-partial", no_argument, NULL, OPT_ALLOW_PARTIAL},
		{"wait", required_argument, NULL, OPT_WAIT},
		{"retry-failed", no_argument, NULL, OPT_RETRY},
		{"refresh", no_argument, NULL, OPT_REFRESH},
		{"ignore-backup", no_argument, NULL, OPT_IGNORE_BACKUP},
		{"auto-approve", no_argument, NULL, OPT_AUTO_APPROVE},
		{"target", required_argument, NULL, OPT_TARGET},
		{NULL, 0, NULL, 0},
	};
	int opt;

	memset(a, 0, sizeof(*a));
	a->parallelism = 4;
	optind = 1;
	while ((opt = cmd_getopt(&cmd_apply, argc, argv, opts)) != -1) {
		int r = cmd_global_opt(g, &cmd_apply, opt, optarg);

		if (r < 0)
			return -1;
		if (r)
			continue;
		switch (opt) {
		case OPT_PARALLELISM:
			if (cmd_parse_parallelism(&cmd_apply, optarg, &a->parallelism))
				return EXIT_USAGE;
			break;
		case OPT_ALLOW_PARTIAL: a->allow_partial = 1; break;
		case OPT_WAIT:
			if (util_parse_duration(optarg, &a->wait))
				return cmd_usage_error(&cmd_apply, "--wait: %s", cs_errmsg());
			break;
		case OPT_RETRY: a->retry_failed = 1; break;
		case OPT_REFRESH: a->refresh = 1; break;
		case OPT_IGNORE_BACKUP: a->ignore_backup = 1; break;
		case OPT_AUTO_APPROVE: a->auto_approve = 1; break;
		case OPT_TARGET:
			if (cmd_target_add(&cmd_apply, &a->targets, optarg))
				return EXIT_USAGE;
			break;
		default: return EXIT_USAGE; /* cmd_getopt said why */
		}
	}
	if (optind < argc)
		a->plan_file = argv[optind++];
	if (optind < argc)
		return cmd_usage_error(&cmd_apply, "unexpected argument \"%s\"", argv[optind]);
	if (a->plan_file && a->targets.n)
		return cmd_usage_error(&cmd_apply,
				       "--target shapes a fresh plan: give it to certsync plan --out instead");
	return 0;
}

/*
 * Consent before money is spent (Terraform's prompt): a fresh plan with
 * paid changes is applied only after "yes" on a terminal, with
 * --auto-approve, or from a saved plan (reviewed when it was made).
 * Without a terminal nobody can answer: the whole apply is refused, free
 * changes too, as Terraform refuses without -auto-approve. Returns 0 to go
 * on; prints why not otherwise.
 */
static int apply_consent(const struct plan *p, const struct apply_args *a)
{
	char answer[64];

	if (a->auto_approve || a->plan_file || !p->paid)
		return 0;
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
		return cmd_fail("this plan has %zu paid change%s and there is no terminal to ask for approval: "
				"nothing applied. Review the plan, then run apply --auto-approve, or save it with "
				"\"certsync plan --out FILE\" and run \"certsync apply FILE\"",
				p->paid, p->paid == 1 ? "" : "s");
	printf("\nDo you want to perform these actions?\n"
	       "  certsync will perform the actions described above, including %zu paid order%s.\n"
	       "  Only 'yes' will be accepted to approve.\n\n"
	       "  Enter a value: ",
	       p->paid, p->paid == 1 ? "" : "s");
	fflush(stdout);
	if (!fgets(answer, sizeof(answer), stdin) || strcmp(answer, "yes\n")) {
		printf("\nApply cancelled.\n");
		return cmd_fail("apply cancelled: nothing applied");
	}
	printf("\n");
	return 0;
}

/*
 * Desired certificates whose record is failed at the end of the apply (this
 * run's failures and those the plan left alone): apply exits 1 while any is.
 */
static size_t apply_failed_at_end(const struct state *st, const struct desired *des)
{
	size_t n = 0;

	for (size_t i = 0; i < des->n_specs; i++) {
		const struct state_cert *rec = state_cert_get(st, des->specs[i]->name);

		n += rec && (rec->phase == PHASE_FAILED || (rec->failure_class && rec->attempts > 0));
	}
	return n;
}

static void apply_summary(const struct engine_result *r, const struct plan *p)
{
	printf("\nApply complete: %zu done, %zu pending, %zu failed", r->done, r->pending, r->failed);
	if (r->skipped)
		printf(", %zu not started (interrupted)", r->skipped);
	printf(".\n");
	if (r->pending)
		printf("%zu certificate%s wait%s for the provider; run certsync apply again (or apply --wait DURATION) "
		       "to finish.\n",
		       r->pending, r->pending == 1 ? "" : "s", r->pending == 1 ? "s" : "");
	if (r->deferred)
		printf("%zu paid order%s deferred: policy.maxPaidOrders (%d) reached for this apply; run apply again "
		       "to continue.\n",
		       r->deferred, r->deferred == 1 ? "" : "s", p->max_paid);
}

/*
 * The state is locked by `certsync run`: say how to ask the running process
 * instead (it applies by itself; SIGUSR1 reconciles now, SIGUSR2 or
 * POST /retry retries failed certificates).
 */
static void apply_lock_hint(const struct config *cfg, int retry_failed)
{
	const char *m = cs_errmsg(), *p = strstr(m, "locked by run (pid ");
	const char *listen = cfg->server.listen ? cfg->server.listen : "127.0.0.1:9402";
	const char *colon = strrchr(listen, ':');
	long long pid;

	if (!p)
		return;
	pid = strtoll(p + strlen("locked by run (pid "), NULL, 10);
	/* A wildcard listen address is reached on loopback. */
	if (!strncmp(listen, "0.0.0.0:", 8) || !strncmp(listen, "[::]:", 5) || listen[0] == ':')
		listen = colon && !strncmp(listen, "[::]", 4) ? "[::1]" : "127.0.0.1";
	else
		colon = NULL;
	if (!retry_failed) {
		fprintf(stderr, "hint: certsync run (pid %lld) applies by itself; to reconcile now: kill -USR1 %lld\n",
			pid, pid);
		return;
	}
	fprintf(stderr,
		"hint: certsync run (pid %lld) holds the state; ask it to retry the failed certificates instead:\n"
		"  kill -USR2 %lld\n",
		pid, pid);
	if (cfg->server.admin_token.kind != CRED_NONE)
		fprintf(stderr,
			"  curl -fsS -X POST -H \"Authorization: Bearer $CERTSYNC_ADMIN_TOKEN\" http://%s%s/retry   "
			"(or /retry/<name> for one certificate; the token is server.adminToken)\n",
			listen, colon ? colon : "");
	else
		fprintf(stderr, "  (or set server.adminToken to allow POST http://%s%s/retry[/<name>])\n", listen,
			colon ? colon : "");
}

/*
 * The key store, then the state under the lock, as `run`'s leader takes it:
 * a wrong or missing encryptionKey stops here, before the lock or any
 * write, and a second writer fails at once naming the holder. Prints the
 * error.
 */
static int apply_open(const struct config *cfg, struct state_backend **be, struct keystore **ks, struct state **st,
		      int *has_state, int retry_failed)
{
	char where[512];
	int rc;

	*has_state = cfg->state.backend == STATE_BACKEND_FILE && fsutil_exists(cfg->state_path);
	if ((rc = backends_open_keystore(cfg, ks)) || (rc = backends_open_state(cfg, be)) ||
	    (rc = state_lock(*be, "apply")) || (rc = state_load(*be, st))) {
		cmd_fail("%s", cs_errmsg());
		if (rc == CS_ELOCKED && cfg->state.backend == STATE_BACKEND_FILE)
			apply_lock_hint(cfg, retry_failed);
		else if (rc == CS_ELOCKED)
			fprintf(stderr,
				"hint: when the holder is certsync run, its leader applies by itself; otherwise "
				"run apply again once the holder has finished\n");
		return rc;
	}
	*has_state = *has_state || cmd_state_exists(cfg, *st);
	if (cfg->state.backend != STATE_BACKEND_FILE) {
		backends_describe(cfg, where, sizeof(where));
		log_debug("state: %s, locked for apply (epoch %llu)", where, (unsigned long long)state_epoch(*be));
	}
	return 0;
}

/*
 * An acme issuer answers http-01 itself (`http01: {serve: true}`): the HTTP
 * server runs on server.listen for the apply's duration, as `run` runs it.
 * Prints the error.
 */
static int apply_serve(const struct config *cfg, struct http_server **srv)
{
	struct http_server_opts o;
	char where[160];

	*srv = NULL;
	if (!acme_serve_needed(cfg, where, sizeof(where)))
		return 0;
	if (!cfg->server.listen_set)
		return cmd_fail("%s: " ACME_SERVE_NEEDS_LISTEN, where);
	memset(&o, 0, sizeof(o));
	o.listen = cfg->server.listen;
	if (http_server_start(&o, srv))
		return cmd_fail("%s (%s answers http-01 challenges there)", cs_errmsg(), where);
	log_info("answering http-01 challenges on %s for this apply", cfg->server.listen);
	return 0;
}

/* The recorded certificates' outputs as apply observed them (state_cert_list order). */
struct apply_seen {
	struct state_cert **recs;
	size_t n;
	enum output_status *outs;
};

/*
 * Observes the outputs and records the new signatures of those shown
 * unchanged by their content (a copied or restored output root is hashed by
 * this apply, not by every plan after it). Returns 1 when records changed.
 */
static int apply_observe(const struct config *cfg, struct state *st, int64_t now, struct apply_seen *seen)
{
	seen->recs = state_cert_list(st, &seen->n);
	seen->outs = reconcile_observe_watched(cfg, seen->recs, seen->n, NULL, 0);
	return reconcile_restamp_outputs(cfg, seen->recs, seen->n, seen->outs, now) > 0;
}

static int apply_run(struct cmd_globals *g, int argc, char **argv)
{
	struct apply_args a;
	struct config *cfg = NULL;
	struct cmd_source src;
	struct state_backend *be = NULL;
	struct keystore *ks = NULL;
	struct state *st = NULL;
	struct plan *p = NULL;
	struct reconcile_opts ro;
	struct engine_opts eo;
	struct engine_result res;
	struct http_server *srv = NULL;
	struct apply_seen seen = {NULL, 0, NULL};
	int has_state = 0, changed = 0, moved, rc, status = EXIT_FAIL;
	const char *ref;
	size_t cleared = 0;
	size_t failed_end;

	memset(&src, 0, sizeof(src));
	memset(&res, 0, sizeof(res));
	if ((rc = apply_parse(g, argc, argv, &a)))
		return rc < 0 ? EXIT_OK : rc;
	cmd_setup_logging(g);
	cmd_install_signals();
	if (cmd_load_config(g, &cfg) || apply_open(cfg, &be, &ks, &st, &has_state, a.retry_failed) ||
	    apply_serve(cfg, &srv))
		goto out;
	if (a.plan_file) {
		char head[41];

		/* The plan names the ref it was made at: --ref need not be repeated. */
		if (apply_load_plan(a.plan_file, &p) || reconcile_open_source(cfg, &src.git) ||
		    gitsrc_resolve(src.git, p->ref && *p->ref ? p->ref : cfg->source.ref, head) ||
		    reconcile_verify_head(cfg, src.git, head, NULL) || apply_check_stale(p, st, has_state, head) ||
		    (rc = reconcile_desired(cfg, src.git, head, NULL, &src.desired))) {
			cmd_fail("%s", cs_errmsg());
			goto out;
		}
		memcpy(src.commit, head, sizeof(head));
		changed = apply_observe(cfg, st, util_now(), &seen);
		for (size_t i = 0; i < src.desired.diags.n; i++)
			diags_add(&p->errors, src.desired.diags.v[i].file, src.desired.diags.v[i].line,
				  src.desired.diags.v[i].col, "%s", src.desired.diags.v[i].msg);
	} else {
		memset(&ro, 0, sizeof(ro));
		ro.now = util_now();
		ro.refresh = a.refresh;
		ro.retry_failed = a.retry_failed;
		if (cmd_open_source(cfg, NULL, &src))
			goto out;
		/* A cron-driven apply keeps the CA's renewal windows (ARI) fresh as run does. */
		changed = reconcile_upkeep(cfg, st, ro.now, (volatile int *)&cmd_stop) > 0;
		if (apply_observe(cfg, st, ro.now, &seen))
			changed = 1;
		ro.observed = seen.outs;
		ro.recorded = seen.recs;
		ro.n_recorded = seen.n;
		if (reconcile_plan(cfg, gitsrc_display(src.git), cfg->source.ref, &src.desired, st, has_state, &ro,
				   &p)) {
			cmd_fail("%s", cs_errmsg());
			goto out;
		}
		if (cmd_target_plan(&a.targets, &src.desired, st, p))
			goto out;
	}
	if (cmd_warn_lost_state(cfg, p) && (p->paid || p->deferred) && !a.ignore_backup) {
		cmd_print_plan(p, "text", g->no_color, 0, stdout);
		cmd_fail(
			"the state is missing but its backup is there, and this plan has %zu paid change%s: nothing "
			"applied. Restore the state with \"certsync state restore\", or apply --ignore-backup to start "
			"without it (which may buy certificates the old state already had)",
			p->paid + p->deferred, p->paid + p->deferred == 1 ? "" : "s");
		goto out;
	}
	cmd_print_plan(p, "text", g->no_color, 0, stdout);
	if (src.desired.diags.n && !a.allow_partial) {
		cmd_fail("%zu problem%s in the manifests at %.12s: nothing applied (fix them, or apply --allow-partial "
			 "to apply the valid certificates)",
			 src.desired.diags.n, src.desired.diags.n == 1 ? "" : "s", src.commit);
		goto out;
	}
	if (apply_consent(p, &a))
		goto out;
	memset(&eo, 0, sizeof(eo));
	eo.parallelism = a.parallelism;
	eo.wait = a.wait;
	eo.stop = (volatile int *)&cmd_stop;
	eo.keys = ks;
	rc = engine_apply(cfg, be, st, p, src.desired.specs, src.desired.n_specs, &eo, &res);
	if (rc) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	/* hooks.afterApply once for all that was installed (or owed since a failed run); expired old generations go */
	if (!hooks_after_apply(cfg, st, src.desired.specs, src.desired.n_specs, &cleared) && cleared)
		changed = 1;
	outputs_gc(cfg->output_root, st, cfg->output.keep_previous, util_now(), NULL);
	/*
	 * Nothing happened and nothing moved: leave the state (and its serial)
	 * alone. Only the source moved (a commit that changes no certificate):
	 * record that alone, not the whole state.
	 */
	if (res.done || res.failed || res.pending || res.skipped)
		changed = 1;
	moved = !util_streq(st->source_commit, src.commit) || !util_streq(st->source_url, gitsrc_display(src.git));
	ref = p->ref && *p->ref ? p->ref : cfg->source.ref;
	if (moved && !changed)
		rc = state_note_source(be, st, gitsrc_display(src.git), ref, src.commit);
	else
		state_set_source(st, gitsrc_display(src.git), ref, src.commit);
	if ((moved && !changed && rc) || (changed && state_save(be, st))) {
		cmd_fail("%s", cs_errmsg());
		goto out;
	}
	if (moved || changed)
		state_keep_snapshot(be, st); /* postgres: the next plan reads the header row, not every record */
	failed_end = apply_failed_at_end(st, &src.desired);
	if (plan_has_changes(p) || res.done || res.failed || failed_end)
		apply_summary(&res, p);
	if (failed_end)
		printf("%zu certificate%s failed at the end of this apply (certsync plan shows why and what to do).\n",
		       failed_end, failed_end == 1 ? " is" : "s are");
	status = res.failed || failed_end || res.deferred || res.skipped || src.desired.diags.n ? EXIT_FAIL : EXIT_OK;
out:
	free(seen.recs);
	free(seen.outs);
	http_server_stop(srv);
	state_unlock(be);
	state_backend_free(be);
	keystore_close(ks);
	state_free(st);
	plan_free(p);
	cmd_source_free(&src);
	config_free(cfg);
	return status;
}

const struct cmd cmd_apply = {
	"apply",
	"Apply the changes of a fresh plan, or of a plan saved with \"plan --out FILE\" (refused when stale).\n"
	"Options:\n"
	"  --parallelism N   certificates worked on at once (default 4)\n"
	"  --wait DURATION   keep polling certificates that wait for the provider, up to DURATION\n"
	"  --allow-partial   apply the valid certificates of a revision that has invalid manifests\n"
	"  --retry-failed    retry certificates whose last attempt failed permanently\n"
	"  --refresh         ask the providers about recorded certificates first\n"
	"  --target NAME     apply only this certificate's change (repeatable; for exceptional use)\n"
	"  --auto-approve    apply paid changes without asking (apply asks on a terminal, and refuses\n"
	"                    paid changes without one unless given this or a saved plan)\n"
	"  --ignore-backup   the state is missing but state.json.backup is there: apply anyway, without it\n"
	"                    (paid changes are refused otherwise; see certsync state restore)",
	apply_run,
	"apply [PLAN.json] [--auto-approve] [--parallelism N] [--wait DURATION] [--allow-partial] [--retry-failed] "
	"[--ignore-backup]",
};
