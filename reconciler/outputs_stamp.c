/* The publication stamp a systemd .path unit watches (outputs_stamp.h). */
#include "outputs_stamp.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"

/* Removes the stamp's temporary files a killed process left (<stamp>.tmp.<pid>.<n>, that pid gone). */
static void outputs_stamp_sweep(const char *root)
{
	const char *prefix = OUTPUTS_STAMP_NAME ".tmp.";
	size_t pl = strlen(prefix);
	DIR *d = opendir(root);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char *end, *p;
		long pid;

		if (strncmp(e->d_name, prefix, pl))
			continue;
		pid = strtol(e->d_name + pl, &end, 10);
		if (end == e->d_name + pl || *end != '.' || pid <= 0 || pid == (long)getpid() ||
		    !(kill((pid_t)pid, 0) && errno == ESRCH))
			continue;
		p = fsutil_join(root, e->d_name);
		unlink(p);
		free(p);
	}
	closedir(d);
}

int outputs_stamp(const char *root, const char *dir)
{
	char *path = fsutil_join(root, OUTPUTS_STAMP_NAME);
	char *line = xasprintf("%lld %s\n", (long long)util_now(), dir);
	int rc;

	outputs_stamp_sweep(root);
	rc = fsutil_write_atomic(path, line, strlen(line), 0644);

	if (rc)
		log_warn("publication stamp not updated (a .path unit watching it will not fire): %s", cs_errmsg());
	free(path);
	free(line);
	return rc;
}
