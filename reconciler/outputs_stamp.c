/* The publication stamp a systemd .path unit watches (outputs_stamp.h). */
#include "outputs_stamp.h"

#include <stdatomic.h>
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
	static atomic_flag swept = ATOMIC_FLAG_INIT;
	int rc;

	/*
	 * Once a process, not once a publication: the sweep reads the whole root
	 * directory. No fsync either (two per certificate were a tenth of an
	 * apply's disk waits): the stamp is a signal to a watcher, not a record,
	 * and a crash loses nothing the next publication does not write again.
	 */
	if (!atomic_flag_test_and_set(&swept))
		fsutil_sweep_tmp(path);
	rc = fsutil_replace_nosync(path, line, strlen(line), 0644);

	if (rc)
		log_warn("publication stamp not updated (a .path unit watching it will not fire): %s", cs_errmsg());
	free(path);
	free(line);
	return rc;
}
