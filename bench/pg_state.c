/*
 * The PostgreSQL state backend's costs next to the file backend's (make
 * bench; never part of make test). On a state of N records (default 10,000):
 * - load on both backends (median of 5), and the postgres load's parts: the
 *   rows fetched alone on a connection of their own, and their decode
 *   (records and digests);
 * - the postgres backend with a cache directory: opening it (connect, schema
 *   check), the first load (rows, then the local snapshot written) and the
 *   next ones (the header row, then the snapshot), medians of 5;
 * - one round trip (SELECT 1, median of 100);
 * - one record's journal() and a one-record save() (median of 100; wall,
 *   the calling thread's CPU), and the round trips each makes with each
 *   one's time and statement (median of 20 calls traced with libpq's
 *   PQtrace on the backend's connection).
 * Prints "key: figures" lines that bench/bench.py turns into rows.
 *
 *   make BUILD=build/bench OPT="-O2 -DNDEBUG" build/bench/pg_state_bench
 *   url=$(sh tests/pg/pgtest.sh start /tmp/pg-bench 55499)
 *   build/bench/pg_state_bench "$url" [records]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "state/state.h"
#include "state/state_pg.h"
#include "state/state_pg_int.h"
#include "util/crypto.h"
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

#define TRACED 20 /* traced calls of each kind */
#define RT_MAX 8  /* round trips of one call kept */

/* A traced call's round trips: the statement each ran (its first word) and its time. */
struct trips {
	int n;
	char what[RT_MAX][16];
	double ms[RT_MAX][TRACED];
};

/* The time of a trace line (its timestamp, ms within the day); -1 when it has none. */
static double trace_ms(const char *line)
{
	int h, m;
	double sec;

	if (sscanf(line, "%*d-%*d-%*d %d:%d:%lf", &h, &m, &sec) != 3)
		return -1;
	return ((double)h * 3600 + (double)m * 60 + sec) * 1e3;
}

/* The first word of the SQL in a Parse or Query message of a trace line, into what. */
static void trace_what(const char *line, char what[16])
{
	const char *q = strstr(line, "\tParse\t");

	q = q ? strstr(q, "\" \"") : strstr(line, "\tQuery\t");
	if (!q || !(q = strchr(q + 2, '"')))
		return;
	snprintf(what, 16, "%.*s", (int)strcspn(q + 1, " \""), q + 1);
}

/*
 * Adds call k's round trips from a libpq trace: each runs from the client's
 * first message after the previous ReadyForQuery to the next ReadyForQuery.
 */
static void trace_trips(FILE *trace, struct trips *t, int k)
{
	char line[8192], what[16] = "?";
	double start = -1;
	int n = 0;

	rewind(trace);
	while (fgets(line, sizeof(line), trace)) {
		double at = trace_ms(line);

		if (strstr(line, "\tF\t")) {
			if (start < 0) {
				start = at;
				snprintf(what, sizeof(what), "?");
			}
			trace_what(line, what);
		} else if (strstr(line, "\tB\t") && strstr(line, "\tReadyForQuery\t") && start >= 0) {
			if (n < RT_MAX) {
				snprintf(t->what[n], sizeof(t->what[n]), "%s", what);
				t->ms[n][k] = at - start;
			}
			n++;
			start = -1;
		}
	}
	t->n = n;
}

/* TRACED journal() of name, or save() of st, with the backend's connection traced. */
static void traced(struct state_backend *pg, struct state *st, const char *name, int save, struct trips *t)
{
	PGconn *conn = ((struct state_pg *)(void *)pg)->conn; /* struct state_pg starts with its backend */

	for (int k = 0; k < TRACED; k++) {
		FILE *trace = tmpfile();

		if (!trace)
			die("trace file");
		state_cert_get(st, name)->attempts = 5000 + k;
		PQtrace(conn, trace);
		if (save ? state_save(pg, st) : state_journal(pg, st, name, state_cert_get(st, name)))
			die(save ? "save" : "journal");
		PQuntrace(conn);
		fflush(trace);
		trace_trips(trace, t, k);
		fclose(trace);
	}
}

/* "BEGIN 0.05, SELECT 0.31, ..." : each round trip's median (ms). */
static void print_trips(struct trips *t)
{
	for (int i = 0; i < t->n && i < RT_MAX; i++)
		printf("%s%s %.2f", i ? ", " : "", t->what[i], median(t->ms[i], TRACED));
	printf("\n");
}

/* The rows a load reads, fetched alone on a connection of its own: time, bytes, and the decode of them. */
static void fetch_and_decode(const char *url, const char *schema, double *fetch, double *decode, double *rtt,
			     double *mbytes)
{
	PGconn *side = PQconnectdb(url);
	char sql[128];
	double f[5], d[5], r[100];

	if (PQstatus(side) != CONNECTION_OK)
		fprintf(stderr, "pg_state_bench: connect: %s", PQerrorMessage(side)), exit(1);
	snprintf(sql, sizeof(sql), "SELECT name, doc FROM %s.certs", schema);
	for (int i = 0; i < 100; i++) {
		double t = now_ms();

		PQclear(PQexecParams(side, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0));
		r[i] = now_ms() - t;
	}
	for (int i = 0; i < 5; i++) {
		double t = now_ms();
		PGresult *res = PQexecParams(side, sql, 0, NULL, NULL, NULL, NULL, 0);
		size_t bytes = 0;

		f[i] = now_ms() - t;
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			fprintf(stderr, "pg_state_bench: %s", PQresultErrorMessage(res)), exit(1);
		t = now_ms();
		for (int k = 0; k < PQntuples(res); k++) {
			struct state_cert *c = NULL;
			unsigned char sha[32];
			size_t len = (size_t)PQgetlength(res, k, 1);

			if (state_cert_from_json(PQgetvalue(res, k, 1), len, "bench", PQgetvalue(res, k, 0), &c))
				die("decode");
			crypto_sha256(PQgetvalue(res, k, 1), len, sha);
			state_cert_free(c);
			bytes += len + (size_t)PQgetlength(res, k, 0);
		}
		d[i] = now_ms() - t;
		*mbytes = (double)bytes / 1e6;
		PQclear(res);
	}
	*fetch = median(f, 5);
	*decode = median(d, 5);
	*rtt = median(r, 100);
	PQfinish(side);
}

/*
 * A backend with a cache directory (the local snapshot, state_pg_snap.c):
 * out[0] opening it (connect, schema check), out[1] its first load (every
 * row, then the snapshot written), out[2] a load after that (the header row,
 * then the snapshot); medians of 5 backends.
 */
static void snap_loads(const struct state_pg_opts *base, const char *dir, double out[3])
{
	struct state_pg_opts o = *base;
	char cache[64];
	double t[3][5];

	snprintf(cache, sizeof(cache), "%s/cache", dir);
	o.cache_dir = cache;
	for (int i = 0; i < 5; i++) {
		struct state_backend *be = NULL;
		struct state *got = NULL;
		double t0 = now_ms();
		char *snap;

		if (state_pg_open(&o, &be))
			die("postgres open");
		t[0][i] = now_ms() - t0;
		snap = xstrdup(((struct state_pg *)be)->snap_path);
		unlink(snap);
		t0 = now_ms();
		if (state_load(be, &got))
			die("postgres load (rows)");
		t[1][i] = now_ms() - t0;
		state_free(got);
		t0 = now_ms();
		if (state_load(be, &got))
			die("postgres load (snapshot)");
		t[2][i] = now_ms() - t0;
		state_free(got);
		state_backend_free(be);
		unlink(snap);
		free(snap);
	}
	for (int k = 0; k < 3; k++)
		out[k] = median(t[k], 5);
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? strtol(argv[2], NULL, 10) : 10000;
	char dir[] = "/tmp/pg-state-bench.XXXXXX", path[64], schema[48], name[32];
	struct state_pg_opts o = {argc > 1 ? argv[1] : NULL, schema, 120000, "bench", NULL};
	struct state_backend *file = NULL, *pg = NULL;
	struct state *st = state_new(), *got = NULL;
	double fl[5], pl[5], snap[3], jr[100], jc[100], sv[100], sc[100], fetch, decode, rtt, mb;
	struct trips tj, ts;

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
	snap_loads(&o, dir, snap);
	fetch_and_decode(o.conninfo, schema, &fetch, &decode, &rtt, &mb);
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
		u = cpu_ms();
		if (state_save(pg, got))
			die("save");
		sc[i] = cpu_ms() - u;
		sv[i] = now_ms() - t;
	}
	/* the round trips of one journal() and one save(), counted in a libpq trace of the backend's connection */
	traced(pg, got, name, 0, &tj);
	traced(pg, got, name, 1, &ts);

	printf("records: %ld\n", n);
	printf("load file: median %.1f ms\n", median(fl, 5));
	printf("load postgres: median %.1f ms = %.2f x file\n", median(pl, 5), median(pl, 5) / median(fl, 5));
	printf("load postgres parts: fetch %.1f ms (%.1f MB), decode and digests %.1f ms\n", fetch, mb, decode);
	printf("postgres with a local snapshot: open %.1f ms, first load %.1f ms, then %.1f ms\n", snap[0], snap[1],
	       snap[2]);
	printf("round trip: median %.3f ms\n", rtt);
	printf("journal: median %.2f ms, max %.2f ms, client CPU %.2f ms, %d round trips\n", median(jr, 100),
	       (qsort(jr, 100, sizeof(double), cmp_double), jr[99]), median(jc, 100), tj.n);
	printf("save one record: median %.1f ms, client CPU %.1f ms, %d round trips\n", median(sv, 100),
	       median(sc, 100), ts.n);
	printf("journal round trips, median ms (of %d): ", TRACED);
	print_trips(&tj);
	printf("save round trips, median ms (of %d): ", TRACED);
	print_trips(&ts);
	state_free(got);
	state_free(st);
	state_backend_free(pg);
	state_backend_free(file);
	unlink(path);
	snprintf(path, sizeof(path), "%s/state.json.backup", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/state.json.snap", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/cache", dir);
	rmdir(path);
	rmdir(dir);
	return 0;
}
