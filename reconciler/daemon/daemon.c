/* The `certsync run` loop: signals, the source, the schedule and the HTTP server's lifecycle. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/http.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "daemon_int.h"
#include "notify.h"
#include "../hooks.h"
#include "../metrics.h"
#include "../provider.h"

#define DAEMON_MAX_SLEEP_MS (3600 * 1000)
#define DAEMON_SAVE_EVERY 2

static volatile sig_atomic_t daemon_stop_flag, daemon_hup_flag, daemon_usr1_flag, daemon_usr2_flag;
static int wake_pipe[2] = {-1, -1};

/* ---------- signals and waking up ---------- */

static void daemon_wake(void)
{
	int saved = errno;

	if (wake_pipe[1] >= 0 && write(wake_pipe[1], "w", 1) < 0) {
		/* full pipe: a wake-up is already pending */
	}
	errno = saved;
}

void daemon_poke(void)
{
	daemon_wake();
}

static void daemon_notify(void *arg)
{
	(void)arg;
	daemon_wake();
}

/* Signals only set flags (and wake the loop through the pipe); the loop acts on them. */
static void daemon_on_signal(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		__atomic_store_n(&daemon_stop_flag, 1, __ATOMIC_RELAXED); /* worker threads read it */
	else if (sig == SIGHUP)
		daemon_hup_flag = 1;
	else if (sig == SIGUSR1)
		daemon_usr1_flag = 1;
	else if (sig == SIGUSR2)
		daemon_usr2_flag = 1;
	daemon_wake();
}

static int daemon_signals(void)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
	struct sigaction sa;

	if (pipe(wake_pipe))
		return cs_error(CS_ERROR, "pipe: %s", strerror(errno));
	for (int i = 0; i < 2; i++) {
		fcntl(wake_pipe[i], F_SETFL, fcntl(wake_pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = daemon_on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static void daemon_signals_end(void)
{
	for (int i = 0; i < 2; i++) {
		if (wake_pipe[i] >= 0)
			close(wake_pipe[i]);
		wake_pipe[i] = -1;
	}
}

/* Sleeps until `until` (unix s), at most max_ms (-1: no cap), or until a signal, a webhook or the state wakes us. */
static void daemon_wait(int64_t until, int64_t max_ms)
{
	struct pollfd p = {wake_pipe[0], POLLIN, 0};
	int64_t ms = (until - util_now()) * 1000;
	char drain[64];

	if (ms > DAEMON_MAX_SLEEP_MS)
		ms = DAEMON_MAX_SLEEP_MS;
	if (max_ms >= 0 && ms > max_ms)
		ms = max_ms;
	if (ms > 0 && !daemon_stop_flag && !daemon_hup_flag && !daemon_usr1_flag && !daemon_usr2_flag)
		poll(&p, 1, (int)ms);
	while (read(wake_pipe[0], drain, sizeof(drain)) > 0) {
	}
}

/* ---------- helpers ---------- */

static void daemon_metrics_observer(void *arg, const char *op, long status, int64_t ms, const struct http_ratelimit *rl)
{
	(void)arg;
	(void)ms;
	metrics_provider_request(op, status);
	if (rl)
		metrics_provider_ratelimit(op, rl->limit, rl->remaining, rl->reset);
}

/* interval ± 10%, so a fleet of sidecars does not fetch in step. */
static int64_t daemon_jittered_interval(int64_t interval)
{
	unsigned char r = 128;
	int64_t spread = interval / 10;

	if (interval <= 0)
		interval = 60;
	crypto_random(&r, 1);
	return interval - spread + (spread * 2 * r) / 255;
}

/* ---------- the source ---------- */

static void daemon_fetch_failed(struct daemon *d, int64_t now)
{
	char *rev = d->commit[0] ? daemon_revision(d->cfg->source.ref, d->commit) : NULL;

	/* The metrics first: whoever reads the log line finds them already set. */
	metrics_fetch(0, now, rev);
	if (!util_streq(d->fetch_error, cs_errmsg()) || d->fetch_ok)
		log_warn("source fetch failed (serving %s): %s", rev ? rev : "no revision yet", cs_errmsg());
	free(d->fetch_error);
	d->fetch_error = xstrdup(cs_errmsg());
	d->fetch_ok = 0;
	free(rev);
}

/* Loads the manifests of a new commit; the old desired set stays on failure. */
static int daemon_load_commit(struct daemon *d, const char *commit)
{
	struct desired des;
	int64_t t0 = util_mono_ms(), cpu0 = daemon_cpu_us();
	int rc;

	/* From the last set loaded, git's diff names what to read again: the cost follows the commit. */
	if ((rc = d->have_des ? reconcile_desired_next(d->cfg, d->git, commit, d->cache, &d->des, &des)
			      : reconcile_desired(d->cfg, d->git, commit, d->cache, &des)))
		return rc;
	log_debug("manifests at %.12s loaded in %" PRId64 " ms (%" PRId64
		  " ms of CPU; %zu files; unchanged blobs not parsed again)",
		  commit, util_mono_ms() - t0, (daemon_cpu_us() - cpu0) / 1000, des.n_files);
	if (d->have_des)
		desired_free(&d->des);
	d->des = des;
	d->have_des = 1;
	memcpy(d->commit, commit, sizeof(d->commit));
	for (size_t i = 0; i < des.diags.n; i++) {
		char *m = diag_format(&des.diags.v[i]);

		log_error("%s", m);
		free(m);
	}
	return 0;
}

/*
 * source.verify: a new head is loaded only with a good signature by a
 * trusted key; a refused head is remembered (not checked again until the
 * ref moves) and the last verified revision keeps being served.
 */
static int daemon_verify(struct daemon *d, const char *commit)
{
	char *signer = NULL, *rev;
	int rc;

	if (!d->cfg->source.verify.on) {
		metrics_source_verified(-1, NULL); /* turned off by a reload: no series */
		return 0;
	}
	if (!strcmp(commit, d->rejected))
		return CS_EAUTH;
	cs_error_clear();
	if ((rc = reconcile_verify_head(d->cfg, d->git, commit, &signer))) {
		rev = d->commit[0] ? daemon_revision(d->cfg->source.ref, d->commit) : NULL;
		log_error("source: %s; serving %s", cs_errmsg(), rev ? rev : "nothing yet (no verified revision)");
		free(rev);
		free(d->verify_error);
		d->verify_error = xstrdup(cs_errmsg());
		metrics_source_verified(0, commit);
		if (rc == CS_EAUTH) /* a verdict; gpg or ssh-keygen failing to run is tried again */
			memcpy(d->rejected, commit, sizeof(d->rejected));
		return rc;
	}
	log_info("commit %.12s: signature verified (%s)", commit, signer);
	free(signer);
	free(d->verify_error);
	d->verify_error = NULL;
	d->rejected[0] = '\0';
	metrics_source_verified(1, commit);
	return 0;
}

/* Fetches and resolves the ref; a new commit is loaded and makes a reason to reconcile. */
static void daemon_fetch(struct daemon *d, int64_t now)
{
	char commit[41], *rev;

	cs_error_clear();
	if (!d->git) {
		if (reconcile_open_source(d->cfg, &d->git)) {
			d->git = NULL;
			daemon_fetch_failed(d, now);
			return;
		}
		log_info("source %s opened", gitsrc_display(d->git)); /* the display form has no credentials */
	}
	if (gitsrc_fetch(d->git) || gitsrc_resolve(d->git, d->cfg->source.ref, commit)) {
		daemon_fetch_failed(d, now);
		return;
	}
	if (strcmp(commit, d->commit) || !d->have_des) {
		if (daemon_verify(d, commit)) {
			rev = d->commit[0] ? daemon_revision(d->cfg->source.ref, d->commit) : NULL;
			metrics_fetch(1, now, rev); /* the fetch worked; the head is what was refused */
			free(rev);
			return;
		}
		if (daemon_load_commit(d, commit)) {
			daemon_fetch_failed(d, now);
			return;
		}
		rev = daemon_revision(d->cfg->source.ref, commit);
		log_info("source at %s: %zu certificates, %zu problems", rev, d->des.n_specs, d->des.diags.n);
		free(rev);
		d->kick = 1;
	}
	rev = daemon_revision(d->cfg->source.ref, d->commit);
	metrics_fetch(1, now, rev);
	free(rev);
	if (!d->fetch_ok && d->fetch_error)
		log_info("source fetch works again");
	free(d->fetch_error);
	d->fetch_error = NULL;
	d->fetch_ok = 1;
}

static void daemon_source_reset(struct daemon *d)
{
	if (d->have_des)
		desired_free(&d->des);
	d->have_des = 0;
	spec_cache_free(d->cache);
	d->cache = spec_cache_new();
	gitsrc_free(d->git);
	d->git = NULL;
	d->commit[0] = 0;
	d->rejected[0] = 0; /* the keys may have changed */
	free(d->verify_error);
	d->verify_error = NULL;
}

/* ---------- config ---------- */

static int daemon_apply_secret(struct daemon *d)
{
	struct buf sec = BUF_INIT;
	int rc = 0;

	if (d->cfg->server.webhook_secret.kind == CRED_NONE) {
		http_server_set_secret(d->srv, NULL);
		return 0;
	}
	if ((rc = config_cred_read(&d->cfg->server.webhook_secret, "server.webhookSecret", &sec))) {
		log_error("%s; webhooks are refused", cs_errmsg());
		http_server_set_secret(d->srv, NULL);
	} else {
		log_add_secret(sec.data);
		http_server_set_secret(d->srv, sec.data);
	}
	buf_wipe(&sec);
	return rc;
}

/* The webhook series of every provider type that takes webhooks, at zero before the first delivery. */
static void daemon_metrics_webhooks(const struct daemon *d)
{
	for (size_t i = 0; i < d->cfg->n_issuers; i++)
		if (d->cfg->issuers[i].ops && d->cfg->issuers[i].ops->webhook)
			metrics_webhook_provider(d->cfg->issuers[i].ops->type);
}

/* source.receiverSecret: POST /webhooks/git/<secret> (a push fetches at once); without it the receiver is off. */
static void daemon_apply_git_secret(struct daemon *d)
{
	struct buf sec = BUF_INIT;

	if (d->cfg->source.receiver_secret.kind == CRED_NONE) {
		http_server_set_git_secret(d->srv, NULL);
		return;
	}
	if (config_cred_read(&d->cfg->source.receiver_secret, "source.receiverSecret", &sec)) {
		log_error("%s; the git push receiver is off", cs_errmsg());
		http_server_set_git_secret(d->srv, NULL);
	} else {
		log_add_secret(sec.data);
		http_server_set_git_secret(d->srv, sec.data);
	}
	buf_wipe(&sec);
}

/* server.adminToken guards POST /retry; without it the endpoint is off. */
static void daemon_apply_admin_token(struct daemon *d)
{
	struct buf tok = BUF_INIT;

	if (d->cfg->server.admin_token.kind == CRED_NONE) {
		http_server_set_admin_token(d->srv, NULL);
		return;
	}
	if (config_cred_read(&d->cfg->server.admin_token, "server.adminToken", &tok)) {
		log_error("%s; POST /retry is off", cs_errmsg());
		http_server_set_admin_token(d->srv, NULL);
	} else {
		log_add_secret(tok.data);
		http_server_set_admin_token(d->srv, tok.data);
	}
	buf_wipe(&tok);
}

/*
 * SIGHUP: load the config again; swap only when it is valid. Either way the
 * next pass ignores backoff: the operator may have fixed what failed (an env
 * var behind the config, a file, a key's mode).
 */
static void daemon_reload(struct daemon *d)
{
	struct config *n = NULL;

	log_info("SIGHUP: reading the config again; failing certificates are retried now");
	d->kick = d->force = 1;
	if (d->opts->load_config(d->opts->load_arg, &n)) {
		log_error("the new config is invalid; keeping the running one");
		return;
	}
	if (!util_streq(n->state_path, d->cfg->state_path)) {
		log_warn("state.path changed: it takes effect after a restart (the state lock is held)");
		state_str_set(&n->state_path, d->cfg->state_path);
	}
	if (!util_streq(n->server.listen, d->cfg->server.listen))
		log_warn("server.listen changed: it takes effect after a restart");
	/* Suspending keeps serving what was loaded (readiness stays as it was); resuming reads the source afresh. */
	if (!n->source.suspend)
		daemon_source_reset(d);
	else if (d->have_des) { /* the set was checked against the old issuers: the next commit checks it all */
		manifest_set_index_free(d->des.index);
		d->des.index = NULL;
	}
	d->suspend_logged = 0;
	config_free(d->cfg);
	d->cfg = n;
	daemon_apply_git_secret(d);
	daemon_apply_secret(d);
	daemon_apply_admin_token(d);
	daemon_metrics_webhooks(d);
	daemon_register_webhooks(d);
	d->next_fetch = 0;
	log_info("config reloaded");
}

/* The loop completed a pass: /healthz and the loop metrics say so. */
static void daemon_beat(struct daemon *d)
{
	struct timespec t;
	int64_t bound = daemon_liveness_bound(d->cfg);

	clock_gettime(CLOCK_REALTIME, &t);
	http_server_beat(d->srv, bound);
	daemon_notify_beat(bound);
	metrics_set_loop((double)t.tv_sec + (double)t.tv_nsec / 1e9, bound);
}

/* ---------- the loop ---------- */

static int daemon_start(struct daemon *d)
{
	struct http_server_opts so;
	int rc;

	if ((rc = daemon_replica_open(d)))
		return rc;
	memset(&so, 0, sizeof(so));
	so.listen = d->cfg->server.listen;
	so.notify = daemon_notify;
	if ((rc = http_server_start(&so, &d->srv))) {
		log_error("%s", cs_errmsg());
		return rc;
	}
	http_server_set_ready(d->srv, 0,
			      "{\"ready\":false,\"reason\":\"starting\",\"reconciled\":false,\"not_ready_count\":0,"
			      "\"not_ready\":[]}");
	daemon_beat(d);
	log_info("listening on %s (port %u): /healthz /readyz /metrics /webhooks/<provider>/<secret> "
		 "/webhooks/git/<secret> /retry",
		 d->cfg->server.listen, http_server_port(d->srv));
	daemon_apply_secret(d);
	daemon_apply_admin_token(d);
	daemon_metrics_webhooks(d);
	daemon_apply_git_secret(d);
	d->cache = spec_cache_new();
	d->after_owed = 1;    /* a hook a crash or failure left owed is found at the first look */
	d->outputs_gc_at = 1; /* and replaced generations an earlier run left are swept after the first pass */
	if (d->leader && !d->shared)
		daemon_register_webhooks(d); /* a shared backend's leader registers when it takes the lease */
	d->kick = 1;
	return 0;
}

/* Explicit retries: SIGUSR2 (every failed certificate) and POST /retry[/<name>]. */
static void daemon_take_retries(struct daemon *d)
{
	struct retry_request r;

	if (daemon_usr2_flag) {
		daemon_usr2_flag = 0;
		log_info("SIGUSR2: explicit retry of every failed certificate");
		daemon_retry(d, NULL);
	}
	if (!http_server_take_retries(d->srv, &r))
		return;
	if (r.all) {
		log_info("POST /retry: explicit retry of every failed certificate");
		daemon_retry(d, NULL);
	}
	for (size_t i = 0; i < r.n_names; i++) {
		struct log_ctx lc = {r.names[i], NULL, NULL, NULL};

		log_emit(LV_INFO, &lc, "POST /retry: explicit retry");
		daemon_retry(d, r.names[i]);
	}
	retry_request_free(&r);
}

static void daemon_step(struct daemon *d)
{
	int64_t now = util_now();
	int force, rc;

	if (daemon_hup_flag) {
		daemon_hup_flag = 0;
		daemon_reload(d);
	}
	if (daemon_usr1_flag) {
		daemon_usr1_flag = 0;
		log_info("SIGUSR1: reconciling now");
		d->kick = d->force = 1;
		d->next_fetch = 0;
	}
	if (http_server_take_git_push(d->srv)) {
		if (d->cfg->source.suspend) {
			log_info("git push received: ignored (source.suspend)");
		} else {
			log_info("git push received: fetching now");
			d->next_fetch = 0;
		}
	}
	metrics_source_suspended(d->cfg->source.suspend);
	if (d->cfg->source.suspend) {
		if (!d->suspend_logged)
			log_warn("source.suspend is true: not fetching, planning or applying (set it to false and "
				 "send SIGHUP to resume)");
		d->suspend_logged = 1;
		d->next_fetch = now + d->cfg->source.interval;
		daemon_replica_step(d); /* keeps a lease; a follower still installs what the leader recorded */
		daemon_webhooks(d);	/* drained, so deliveries do not pile up; nothing is applied */
		daemon_observe(d, util_now());
		daemon_beat(d);
		return;
	}
	if (now >= d->next_fetch) {
		d->next_fetch = now + daemon_jittered_interval(d->cfg->source.interval);
		daemon_fetch(d, now);
		d->kick = 1; /* outputs may have drifted: a pure plan is cheap */
	}
	daemon_replica_step(d); /* a shared backend: lead, or follow the leader's state */
	daemon_webhooks(d);
	daemon_take_retries(d);
	if (d->next_due && now >= d->next_due)
		d->kick = 1;
	force = d->force;
	if (d->leader && !d->reload && (d->kick || d->n_forced) && d->have_des && !daemon_stop_flag)
		daemon_pass(d);
	daemon_replica_fenced(d);
	if (d->leader) {
		daemon_hooks(d, util_now(), force);
		if (daemon_after_apply(d, d->st, util_now(), force && d->after_owed))
			d->dirty = 1;
	}
	daemon_outputs_gc(d, util_now());
	d->force = 0;
	/* Seen webhook ids only spare a repeat look at the provider: batching their writes loses nothing. */
	if (d->leader && !d->reload && d->dirty && util_now() >= d->next_save) {
		d->next_save = util_now() + DAEMON_SAVE_EVERY;
		if ((rc = state_save(d->be, d->st))) {
			log_error("%s", cs_errmsg());
			d->state_ok = 0;
			d->fenced = rc == CS_EFENCED;
			d->reload = d->shared;
		} else {
			d->dirty = 0;
			d->has_state = 1;
		}
	}
	daemon_observe(d, util_now());
	daemon_beat(d);
}

static void daemon_free(struct daemon *d)
{
	http_server_stop(d->srv);
	daemon_replica_close(d); /* releases the lock or lease */
	state_backend_free(d->be);
	state_free(d->st);
	if (d->have_des)
		desired_free(&d->des);
	spec_cache_free(d->cache);
	gitsrc_free(d->git);
	daemon_pass_free(d);
	free(d->fetch_error);
	free(d->verify_error);
	config_free(d->cfg);
}

int daemon_run(struct config *cfg, const struct daemon_opts *o)
{
	struct daemon d;
	int rc;

	memset(&d, 0, sizeof(d));
	d.cfg = cfg;
	d.opts = o;
	d.stop = &daemon_stop_flag;
	daemon_stop_flag = daemon_hup_flag = daemon_usr1_flag = daemon_usr2_flag = 0;
	metrics_reset();
	http_set_global_observer(daemon_metrics_observer, NULL);
	http_set_abort_flag((volatile int *)&daemon_stop_flag);
	hooks_set_stop_flag((volatile int *)&daemon_stop_flag);
	if ((rc = daemon_signals()) || (rc = daemon_start(&d)))
		goto out;
	log_info("certsync run: following ref %s every %llds", d.cfg->source.ref, (long long)d.cfg->source.interval);
	daemon_notify_start();
	while (!daemon_stop_flag) {
		int64_t wake;

		daemon_step(&d);
		daemon_notify_turn(&d);
		wake = d.next_fetch;
		if (d.next_due && d.next_due < wake)
			wake = d.next_due;
		if (d.after_owed && d.after_next && d.after_next < wake)
			wake = d.after_next;
		if (d.outputs_gc_at && d.outputs_gc_at < wake)
			wake = d.outputs_gc_at;
		if (d.leader && d.dirty && d.next_save < wake)
			wake = d.next_save;
		daemon_wait(wake, daemon_replica_wait_ms(&d));
	}
	daemon_notify_stop();
	if (!d.leader || (d.shared && !state_leading(d.be))) {
		log_info("stopped (a follower: nothing to save)");
	} else {
		log_info("stopping: saving state");
		if (state_save(d.be, d.st)) {
			log_error("%s", cs_errmsg());
			rc = CS_ERROR;
		} else {
			/* postgres: a restart reads the header row, not every record */
			state_keep_snapshot(d.be, d.st);
			log_info("stopped");
		}
	}
out:
	http_set_global_observer(NULL, NULL);
	http_set_abort_flag(NULL);
	hooks_set_stop_flag(NULL);
	daemon_free(&d);
	daemon_signals_end();
	return rc;
}
