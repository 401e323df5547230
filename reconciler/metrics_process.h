/*
 * The standard process_* metrics of Prometheus client libraries, read from
 * /proc/self (Linux): CPU time, resident and virtual memory, open and
 * maximum file descriptors, start time. Names, types and units are the
 * client libraries', so existing dashboards work unchanged.
 */
#ifndef CS_RECONCILER_METRICS_PROCESS_H
#define CS_RECONCILER_METRICS_PROCESS_H

#include "../util/buf.h"

/* Appends the process_* families to b; a value that cannot be read is left out (its HELP/TYPE stay). */
void metrics_render_process(struct buf *b);

#endif
