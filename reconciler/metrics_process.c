/* process_* metrics from /proc/self (metrics_process.h). */
#include "metrics_process.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../util/fsutil.h"

#define PROC_READ_MAX 4096

/* /proc/self/stat's field n (1-based; the command name in parentheses may hold spaces). 0 on failure. */
static int proc_stat_field(int n, unsigned long long *v)
{
	struct buf b = BUF_INIT;
	const char *p;
	int field = 2, rc = 0;

	if (fsutil_read_file("/proc/self/stat", PROC_READ_MAX, &b) || !b.data)
		goto out;
	p = strrchr(b.data, ')');
	if (!p)
		goto out;
	p++;
	while (*p && field < n) {
		while (*p == ' ')
			p++;
		field++;
		if (field == n) {
			char *end;

			*v = strtoull(p, &end, 10);
			rc = end != p;
			break;
		}
		while (*p && *p != ' ')
			p++;
	}
out:
	buf_free(&b);
	return rc;
}

/* The boot time (btime of /proc/stat, unix seconds). 0 on failure. */
static int proc_boot_time(unsigned long long *v)
{
	struct buf b = BUF_INIT;
	const char *p;
	int rc = 0;

	if (!fsutil_read_file("/proc/stat", 1024 * 1024, &b) && b.data && (p = strstr(b.data, "\nbtime ")))
		rc = sscanf(p + 7, "%llu", v) == 1;
	buf_free(&b);
	return rc;
}

static int proc_open_fds(unsigned long long *v)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned long long n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	*v = n ? n - 1 : 0; /* the directory's own descriptor */
	return 1;
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_render_process(struct buf *b)
{
	struct rusage ru;
	struct rlimit rl;
	struct buf statm = BUF_INIT;
	unsigned long long vsize = 0, rss = 0, start = 0, boot = 0, fds = 0;
	long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
	int have_statm;

	family(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
	if (!getrusage(RUSAGE_SELF, &ru))
		buf_printf(b, "process_cpu_seconds_total %.6f\n",
			   (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
				   (double)ru.ru_stime.tv_usec / 1e6);
	have_statm = !fsutil_read_file("/proc/self/statm", PROC_READ_MAX, &statm) && statm.data &&
		     sscanf(statm.data, "%llu %llu", &vsize, &rss) == 2 && page > 0;
	buf_free(&statm);
	family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	if (have_statm)
		buf_printf(b, "process_resident_memory_bytes %llu\n", rss * (unsigned long long)page);
	family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	if (have_statm)
		buf_printf(b, "process_virtual_memory_bytes %llu\n", vsize * (unsigned long long)page);
	family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
	if (proc_open_fds(&fds))
		buf_printf(b, "process_open_fds %llu\n", fds);
	family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
	if (!getrlimit(RLIMIT_NOFILE, &rl))
		buf_printf(b, "process_max_fds %.17g\n", rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
	family(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
	if (ticks > 0 && proc_stat_field(22, &start) && proc_boot_time(&boot))
		buf_printf(b, "process_start_time_seconds %.2f\n", (double)boot + (double)start / (double)ticks);
}
