/*
 * The PostgreSQL state backend's costs next to the file backend's (not part
 * of make test): load of a 10,000-record state (median of 5) on both, and one
 * record's journal() and a one-record save() on that state (median of 100).
 *
 *   make all && cc -std=c11 -D_GNU_SOURCE -O2 -I. -I$(pg_config --includedir) bench/pg_state.c \
 *     build/libcertsync.a $(pkg-config --libs yaml-0.1 libcurl openssl jansson libgit2 libmicrohttpd libpq) \
 *     -pthread -o build/pg_state_bench
 *   url=$(sh tests/pg/pgtest.sh start /tmp/pg-bench 55499)
 *   build/pg_state_bench "$url" [records]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "state/state.h"
#include "state/state_pg.h"
#include "util/err.h"
#include "util/util.h"

#define T0 INT64_C(1795411863)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A record as a ready DigiCert certificate looks after a few renewals. */
static void fill(struct state_cert *c, int k)
{
	char tmp[96];
	struct state_token t = {"dns-txt-token", "www.example", "_dnsauth.www.example", "rec-1", "dnsimple", T0};

	state_str_set(&c->issuer, "digicert");
	state_str_set(&c->provider, "digicert");
	snprintf(tmp, sizeof(tmp), "%064x", k);
	state_str_set(&c->spec_hash, tmp);
	snprintf(tmp, sizeof(tmp), "team/cert-%05d", k);
	state_str_set(&c->output_dir, tmp);
	c->phase = PHASE_READY;
	snprintf(tmp, sizeof(tmp), "%d", 100000 + k);
	state_cert_set_id(c, "order_id", tmp);
	state_cert_set_id(c, "certificate_id", tmp);
	snprintf(tmp, sizeof(tmp), "%032x", k);
	state_str_set(&c->serial, tmp);
	c->not_before = T0 - 86400;
	c->not_after = T0 + 90 * 86400;
	snprintf(tmp, sizeof(tmp), "%064x", k * 7);
	state_str_set(&c->fingerprint, tmp);
	state_str_set(&c->out_hash, tmp);
	for (int i = 0; i < STATE_OUT_FILES; i++) {
		c->out_sig[i].size = 1000 + i;
		c->out_sig[i].mtime_ns = INT64_C(1795410663123456789) + i;
		c->out_sig[i].ino = 77 + i;
	}
	state_str_set(&c->out_generation, ".gen-0001");
	if (k % 10 == 0)
		state_cert_add_token(c, &t);
	c->last_success = T0 - 3600;
	for (int i = 0; i < 4; i++)
		state_cert_event(c, T0 - 86400 * (4 - i), "renewed: order %d issued", 100000 + k);
}

static void die(const char *what)
{
	fprintf(stderr, "pg_state_bench: %s: %s\n", what, cs_errmsg());
	exit(1);
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? strtol(argv[2], NULL, 10) : 10000;
	char dir[] = "/tmp/pg-state-bench.XXXXXX", path[64], schema[48], name[32];
	struct state_pg_opts o = {argc > 1 ? argv[1] : NULL, schema, 120000, "bench"};
	struct state_backend *file = NULL, *pg = NULL;
	struct state *st = state_new(), *got = NULL;
	double fl[5], pl[5], jr[100], jc[100], sv[100];

	if (!o.conninfo || n < 1 || n > 1000000 || !mkdtemp(dir))
		return fprintf(stderr, "usage: pg_state_bench URL [records]\n"), 2;
	snprintf(path, sizeof(path), "%s/state.json", dir);
	snprintf(schema, sizeof(schema), "bench_%ld", (long)getpid());
	for (int i = 0; i < (int)n; i++) {
		snprintf(name, sizeof(name), "cert-%05d.example", i);
		fill(state_cert_put(st, name), i);
	}
	if (state_file_open(path, &file) || state_save(file, st))
		die("file save");
	st->serial = 0;
	if (state_pg_open(&o, &pg) || state_lock(pg, "apply") || state_save(pg, st))
		die("postgres save");
	for (int i = 0; i < 5; i++) {
		double t = now_ms();

		if (state_load(file, &got))
			die("file load");
		fl[i] = now_ms() - t;
		state_free(got);
		t = now_ms();
		if (state_load(pg, &got))
			die("postgres load");
		pl[i] = now_ms() - t;
		state_free(got);
	}
	if (state_load(pg, &got))
		die("postgres load");
	snprintf(name, sizeof(name), "cert-%05d.example", (int)n / 2);
	for (int i = 0; i < 100; i++) {
		struct state_cert *c = state_cert_get(got, name);
		double t, u;

		c->attempts = i + 1;
		t = now_ms();
		u = cpu_ms();
		if (state_journal(pg, got, c->name, c))
			die("journal");
		jc[i] = cpu_ms() - u;
		jr[i] = now_ms() - t;
		c->attempts = i + 1000;
		t = now_ms();
		if (state_save(pg, got))
			die("save");
		sv[i] = now_ms() - t;
	}
	printf("records %ld\n", n);
	printf("load, file backend:      median %.1f ms (of 5)\n", median(fl, 5));
	printf("load, postgres backend:  median %.1f ms (of 5) = %.2f x file\n", median(pl, 5),
	       median(pl, 5) / median(fl, 5));
	printf("journal() of one record: median %.2f ms wall (client CPU %.2f ms), max %.2f ms (of 100)\n",
	       median(jr, 100), median(jc, 100), (qsort(jr, 100, sizeof(double), cmp_double), jr[99]));
	printf("save() with one record changed: median %.1f ms (of 100)\n", median(sv, 100));
	state_free(got);
	state_free(st);
	state_backend_free(pg);
	state_backend_free(file);
	unlink(path);
	snprintf(path, sizeof(path), "%s/state.json.backup", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}
