/* Runs the configured on-change command with a timeout. */
#include "hooks.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"

extern char **environ;

/* The daemon's stop flag: a running hook then gets HOOKS_STOP_GRACE_MS more, not its whole timeout. */
#define HOOKS_STOP_GRACE_MS 5000
static volatile int *hooks_stop;

void hooks_set_stop_flag(volatile int *flag)
{
	hooks_stop = flag;
}

/* environ plus our variables; the strings we add are freed by the caller (first n_own entries). */
static char **hooks_env(const char *const *own, size_t n_own)
{
	size_t n = 0;
	char **env;

	while (environ && environ[n])
		n++;
	env = xcalloc(n + n_own + 1, sizeof(*env));
	for (size_t i = 0; i < n_own; i++)
		env[i] = (char *)own[i];
	for (size_t i = 0, k = n_own; i < n; i++)
		if (strncmp(environ[i], "CERTSYNC_", 9))
			env[k++] = environ[i];
	return env;
}

int hooks_on_change(const struct config *cfg, const char *name, const char *output_dir)
{
	char *own[3] = {NULL, NULL, NULL}, *dir = NULL, **env = NULL;
	struct log_ctx lc = {name, NULL, "hook", NULL};
	int64_t deadline;
	int status = 0, rc = 0;
	pid_t pid, w;

	if (!cfg->hooks.n_on_change)
		return 0;
	dir = fsutil_join(cfg->output_root, output_dir ? output_dir : name);
	own[0] = xasprintf("CERTSYNC_CERT_NAME=%s", name);
	own[1] = xasprintf("CERTSYNC_CERT_DIR=%s", dir);
	own[2] = xstrdup("CERTSYNC_EVENT=installed");
	env = hooks_env((const char *const *)own, 3);
	pid = fork();
	if (pid < 0) {
		rc = cs_error(CS_ERROR, "hook: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		execve(cfg->hooks.on_change[0], cfg->hooks.on_change, env);
		_exit(127);
	}
	deadline = util_mono_ms() + cfg->hooks.timeout * 1000;
	while ((w = waitpid(pid, &status, WNOHANG)) == 0) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		if (hooks_stop && __atomic_load_n(hooks_stop, __ATOMIC_RELAXED) &&
		    deadline > util_mono_ms() + HOOKS_STOP_GRACE_MS)
			deadline = util_mono_ms() + HOOKS_STOP_GRACE_MS;
		if (util_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			if (hooks_stop && __atomic_load_n(hooks_stop, __ATOMIC_RELAXED))
				rc = cs_error(CS_ETRANSIENT,
					      "hook %s was killed: certsync is stopping (it is owed and "
					      "retried later)",
					      cfg->hooks.on_change[0]);
			else
				rc = cs_error(CS_ETRANSIENT, "hook %s timed out after %llds and was killed",
					      cfg->hooks.on_change[0], (long long)cfg->hooks.timeout);
			goto out;
		}
		nanosleep(&ts, NULL);
	}
	if (w < 0)
		rc = cs_error(CS_ERROR, "hook: waitpid: %s", strerror(errno));
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		rc = cs_error(CS_ERROR, "hook %s could not be run", cfg->hooks.on_change[0]);
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		rc = cs_error(CS_ERROR, "hook %s failed (status %d)", cfg->hooks.on_change[0],
			      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
out:
	if (rc)
		log_emit(LV_WARN, &lc, "%s", cs_errmsg());
	else
		log_emit(LV_INFO, &lc, "on-change hook ran");
	for (int i = 0; i < 3; i++)
		free(own[i]);
	free(env);
	free(dir);
	return rc;
}
