/* Runs the configured hook commands (onChange, afterApply) with a timeout. */
#include "hooks.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"

extern char **environ;

/* The daemon's stop flag: a running hook then gets HOOKS_STOP_GRACE_MS more, not its whole timeout. */
#define HOOKS_STOP_GRACE_MS 5000
#define HOOKS_MAX_OWN 12
static volatile int *hooks_stop;

void hooks_set_stop_flag(volatile int *flag)
{
	hooks_stop = flag;
}

/*
 * environ plus our variables; the strings we add are freed by the caller.
 * Inherited CERTSYNC_* and certbot's RENEWED_* are dropped: a hook sees only
 * what this run says.
 */
static char **hooks_env(char *const *own, size_t n_own)
{
	size_t n = 0;
	char **env;

	while (environ && environ[n])
		n++;
	env = xcalloc(n + n_own + 1, sizeof(*env));
	for (size_t i = 0; i < n_own; i++)
		env[i] = own[i];
	for (size_t i = 0, k = n_own; i < n; i++)
		if (strncmp(environ[i], "CERTSYNC_", 9) && strncmp(environ[i], "RENEWED_", 8))
			env[k++] = environ[i];
	return env;
}

static int hooks_stopping(void)
{
	return hooks_stop && __atomic_load_n(hooks_stop, __ATOMIC_RELAXED);
}

/* Runs argv with own added to the environment and waits (bounded); logs the outcome under lc. */
static int hooks_exec(const struct config *cfg, char *const *argv, const char *what, char *const *own, size_t n_own,
		      const struct log_ctx *lc)
{
	char **env = hooks_env(own, n_own);
	int64_t deadline;
	int status = 0, rc = 0;
	pid_t pid, w;

	pid = fork();
	if (pid < 0) {
		rc = cs_error(CS_ERROR, "%s hook: fork: %s", what, strerror(errno));
		goto out;
	}
	if (pid == 0) {
		execve(argv[0], argv, env);
		_exit(127);
	}
	deadline = util_mono_ms() + cfg->hooks.timeout * 1000;
	while ((w = waitpid(pid, &status, WNOHANG)) == 0) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		if (hooks_stopping() && deadline > util_mono_ms() + HOOKS_STOP_GRACE_MS)
			deadline = util_mono_ms() + HOOKS_STOP_GRACE_MS;
		if (util_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			if (hooks_stopping())
				rc = cs_error(CS_ETRANSIENT,
					      "%s hook %s was killed: certsync is stopping (it is owed and retried "
					      "later)",
					      what, argv[0]);
			else
				rc = cs_error(CS_ETRANSIENT, "%s hook %s timed out after %llds and was killed", what,
					      argv[0], (long long)cfg->hooks.timeout);
			goto out;
		}
		nanosleep(&ts, NULL);
	}
	if (w < 0)
		rc = cs_error(CS_ERROR, "%s hook: waitpid: %s", what, strerror(errno));
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		rc = cs_error(CS_ERROR, "%s hook %s could not be run", what, argv[0]);
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		rc = cs_error(CS_ERROR, "%s hook %s failed (status %d)", what, argv[0],
			      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
out:
	if (rc)
		log_emit(LV_WARN, lc, "%s", cs_errmsg());
	free(env);
	return rc;
}

/* The spec named name in specs (sorted by name), or NULL. */
static const struct cert_spec *hooks_spec(struct cert_spec *const *specs, size_t n, const char *name)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(specs[mid]->name, name);

		if (!c)
			return specs[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The spec's DNS names, space-separated (caller frees). */
static char *hooks_domains(const struct cert_spec *s)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; s && i < s->n_dns; i++) {
		if (i)
			buf_puts(&b, " ");
		buf_puts(&b, s->dns_names[i]);
	}
	return buf_detach(&b);
}

int hooks_on_change(const struct config *cfg, const char *name, const char *output_dir, const struct cert_spec *spec)
{
	char *own[7] = {NULL}, *dir = NULL, *domains = NULL;
	struct log_ctx lc = {name, NULL, "hook", NULL};
	int rc;

	if (!cfg->hooks.n_on_change)
		return 0;
	dir = fsutil_join(cfg->output_root, output_dir ? output_dir : name);
	domains = hooks_domains(spec);
	own[0] = xasprintf("CERTSYNC_CERT_NAME=%s", name);
	own[1] = xasprintf("CERTSYNC_CERT_DIR=%s", dir);
	own[2] = xstrdup("CERTSYNC_EVENT=installed");
	own[3] = xasprintf("CERTSYNC_CERT_DOMAINS=%s", domains);
	own[4] = xasprintf("RENEWED_LINEAGE=%s", dir);
	own[5] = xasprintf("RENEWED_DOMAINS=%s", domains);
	rc = hooks_exec(cfg, cfg->hooks.on_change, "on-change", own, 6, &lc);
	if (!rc)
		log_emit(LV_INFO, &lc, "on-change hook ran");
	for (size_t i = 0; i < 6; i++)
		free(own[i]);
	free(domains);
	free(dir);
	return rc;
}

void hooks_after_apply_mark(const struct config *cfg, struct state_cert *rec)
{
	if (cfg->hooks.n_after_apply)
		state_cert_set_id(rec, HOOKS_ID_AFTER_APPLY, "1");
}

/* Appends item to a space-separated list unless that would pass HOOKS_LIST_MAX; 1 when it was cut. */
static int hooks_list_add(struct buf *b, const char *item)
{
	size_t n = strlen(item);

	if (b->len + n + 1 > HOOKS_LIST_MAX)
		return 1;
	if (b->len)
		buf_puts(b, " ");
	buf_append(b, item, n);
	return 0;
}

static int hooks_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The union of the owing certificates' DNS names, sorted, into b (bounded). */
static int hooks_union_domains(struct state_cert *const *owing, size_t n, struct cert_spec *const *specs,
			       size_t n_specs, struct buf *b)
{
	const char **all = NULL;
	size_t n_all = 0, cap = 0;
	int cut = 0;

	for (size_t i = 0; i < n; i++) {
		const struct cert_spec *s = hooks_spec(specs, n_specs, owing[i]->name);

		for (size_t j = 0; s && j < s->n_dns; j++) {
			util_grow(&all, &cap, n_all + 1, sizeof(*all));
			all[n_all++] = s->dns_names[j];
		}
	}
	if (n_all)
		qsort(all, n_all, sizeof(*all), hooks_str_cmp);
	for (size_t i = 0; i < n_all && !cut; i++)
		if (!i || strcmp(all[i - 1], all[i]))
			cut = hooks_list_add(b, all[i]);
	free(all);
	return cut;
}

/* Runs the hook for the owing records; 0 or the hook's error. */
static int hooks_after_apply_run(const struct config *cfg, struct state_cert *const *owing, size_t n,
				 struct cert_spec *const *specs, size_t n_specs)
{
	struct buf names = BUF_INIT, dirs = BUF_INIT, domains = BUF_INIT;
	struct log_ctx lc = {NULL, NULL, "hook", NULL};
	char *own[HOOKS_MAX_OWN];
	size_t n_own = 0;
	int cut = 0, rc;

	for (size_t i = 0; i < n; i++) {
		char *dir = fsutil_join(cfg->output_root, owing[i]->output_dir ? owing[i]->output_dir : owing[i]->name);

		cut |= hooks_list_add(&names, owing[i]->name);
		cut |= hooks_list_add(&dirs, dir);
		free(dir);
	}
	cut |= hooks_union_domains(owing, n, specs, n_specs, &domains);
	own[n_own++] = xstrdup("CERTSYNC_EVENT=afterApply");
	own[n_own++] = xasprintf("CERTSYNC_CHANGED=%s", names.data ? names.data : "");
	own[n_own++] = xasprintf("CERTSYNC_CHANGED_DIRS=%s", dirs.data ? dirs.data : "");
	own[n_own++] = xasprintf("CERTSYNC_CHANGED_DOMAINS=%s", domains.data ? domains.data : "");
	own[n_own++] = xasprintf("CERTSYNC_CHANGED_COUNT=%zu", n);
	own[n_own++] = xasprintf("CERTSYNC_OUTPUT_ROOT=%s", cfg->output_root);
	if (cut)
		own[n_own++] = xstrdup("CERTSYNC_CHANGED_TRUNCATED=1");
	rc = hooks_exec(cfg, cfg->hooks.after_apply, "afterApply", own, n_own, &lc);
	if (!rc)
		log_emit(LV_INFO, &lc, "afterApply hook ran for %zu certificate%s", n, n == 1 ? "" : "s");
	for (size_t i = 0; i < n_own; i++)
		free(own[i]);
	buf_free(&names);
	buf_free(&dirs);
	buf_free(&domains);
	return rc;
}

int hooks_after_apply(const struct config *cfg, struct state *st, struct cert_spec *const *specs, size_t n_specs,
		      size_t *cleared)
{
	size_t n = 0, k = 0;
	struct state_cert **recs;
	int rc = 0;

	if (cleared)
		*cleared = 0;
	if (!st)
		return 0;
	recs = state_cert_list(st, &n);
	for (size_t i = 0; i < n; i++)
		if (state_cert_id(recs[i], HOOKS_ID_AFTER_APPLY))
			recs[k++] = recs[i];
	if (k && cfg->hooks.n_after_apply)
		rc = hooks_after_apply_run(cfg, recs, k, specs, n_specs);
	for (size_t i = 0; i < k && !rc; i++)
		state_cert_set_id(recs[i], HOOKS_ID_AFTER_APPLY, NULL);
	if (cleared && !rc)
		*cleared = k;
	free(recs);
	return rc;
}
