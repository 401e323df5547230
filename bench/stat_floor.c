/*
 * The floor under a cold plan's output check, measured on the machine that
 * runs the bench: the same fstatat calls certsync makes (one per output
 * file, through the published link, relative to the open output root) and
 * nothing else, split over threads as certsync splits them. bench.py runs
 * it beside the one-file-commit plan, so the figure and its floor come
 * from the same minute.
 *
 *   stat_floor ROOT LIST THREADS   LIST: one path relative to ROOT per line
 *
 * Prints "<paths> <ms>" (wall time of the calls alone, after reading LIST);
 * exit 1 when an argument, the list or a path is bad.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_THREADS_MAX 4
#define FLOOR_PATHS_MAX 10000000

struct floor_slice {
	int rootfd;
	char **paths;
	size_t from, to;
	int failed;
};

static void *floor_run(void *arg)
{
	struct floor_slice *s = arg;
	struct stat st;

	for (size_t i = s->from; i < s->to; i++)
		if (fstatat(s->rootfd, s->paths[i], &st, 0))
			s->failed = 1;
	return NULL;
}

static double floor_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	struct floor_slice s[FLOOR_THREADS_MAX];
	pthread_t tid[FLOOR_THREADS_MAX];
	char **paths = NULL, line[4096];
	size_t n = 0, cap = 0;
	long k;
	int rootfd, failed = 0;
	double t0;
	FILE *f;

	if (argc != 4 || (k = strtol(argv[3], NULL, 10)) < 1 || k > FLOOR_THREADS_MAX) {
		fprintf(stderr, "usage: stat_floor ROOT LIST THREADS (1..%d)\n", FLOOR_THREADS_MAX);
		return 1;
	}
	if ((rootfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || !(f = fopen(argv[2], "r"))) {
		perror("stat_floor");
		return 1;
	}
	while (fgets(line, sizeof(line), f) && n < FLOOR_PATHS_MAX) {
		line[strcspn(line, "\n")] = '\0';
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			if (!(paths = realloc(paths, cap * sizeof(*paths))))
				return 1;
		}
		if (!(paths[n++] = strdup(line)))
			return 1;
	}
	fclose(f);
	t0 = floor_ms();
	for (long t = 0; t < k; t++) {
		s[t] = (struct floor_slice){rootfd, paths, n * (size_t)t / (size_t)k, n * (size_t)(t + 1) / (size_t)k,
					    0};
		if (t > 0 && pthread_create(&tid[t], NULL, floor_run, &s[t]))
			return 1;
	}
	floor_run(&s[0]);
	for (long t = 1; t < k; t++)
		pthread_join(tid[t], NULL);
	printf("%zu %.1f\n", n, floor_ms() - t0);
	for (long t = 0; t < k; t++)
		failed |= s[t].failed;
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	close(rootfd);
	if (failed)
		fprintf(stderr, "stat_floor: a path in %s is missing under %s\n", argv[2], argv[1]);
	return failed;
}
