/* The publication stamp a systemd .path unit watches (outputs_stamp.h). */
#include "outputs_stamp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/log.h"
#include "../util/util.h"

int outputs_stamp(const char *root, const char *dir)
{
	char *path = fsutil_join(root, OUTPUTS_STAMP_NAME);
	char *line = xasprintf("%lld %s\n", (long long)util_now(), dir);
	int rc;

	fsutil_sweep_tmp(path);
	rc = fsutil_write_atomic(path, line, strlen(line), 0644);

	if (rc)
		log_warn("publication stamp not updated (a .path unit watching it will not fire): %s", cs_errmsg());
	free(path);
	free(line);
	return rc;
}
