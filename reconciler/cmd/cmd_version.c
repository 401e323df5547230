/* certsync version. */
#include <stdio.h>

#include "cmd.h"

#ifndef CERTSYNC_VERSION
#define CERTSYNC_VERSION "0.1.0"
#endif

static int version_run(struct cmd_globals *g, int argc, char **argv)
{
	(void)g;
	(void)argc;
	(void)argv;
	printf("certsync %s\n", CERTSYNC_VERSION);
	return EXIT_OK;
}

const struct cmd cmd_version = {"version", "Print the version.", version_run, "version"};
