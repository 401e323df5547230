/* Pure helpers of the daemon's schedule and labels: no daemon state, used by the loop and the pass. */
#include "daemon.h"

#include <string.h>

#include "../../util/util.h"

char *daemon_revision(const char *ref, const char *commit)
{
	const char *r = ref && *ref ? ref : "HEAD";

	if (!strncmp(r, "refs/heads/", 11))
		r += 11;
	return xasprintf("%s@sha1:%s", r, commit);
}

int64_t daemon_renewal_jitter(const char *name, int64_t not_before, int64_t not_after, int64_t renew_at)
{
	int64_t span = (not_after - not_before) / 50;

	if (span > 6 * 3600)
		span = 6 * 3600;
	if (span > (not_after - renew_at) / 4)
		span = (not_after - renew_at) / 4;
	if (span <= 0)
		return 0;
	return (int64_t)(util_hash_str(name) % 1000) * span / 1000;
}

int64_t daemon_liveness_bound(const struct config *cfg)
{
	if (cfg->server.liveness_timeout > 0)
		return cfg->server.liveness_timeout;
	return 3 * (cfg->source.interval > 0 ? cfg->source.interval : 60) + DAEMON_LIVENESS_GRACE;
}
