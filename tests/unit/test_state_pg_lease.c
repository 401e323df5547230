/*
 * The PostgreSQL backend's leader lease against a real server (make unit
 * starts one): taking, refusing with the holder, handing over, renewing,
 * deposing, fencing, a paused leader, a stopped database, wall-clock jumps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../state/state_pg_int.h"
#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "testutil.h"

/* ---------- a wall clock the tests can move (the monotonic clock stays) ---------- */

static _Atomic int64_t wall_offset_s;

int clock_gettime(clockid_t id, struct timespec *ts)
{
	int r = (int)syscall(SYS_clock_gettime, id, ts);

	if (!r && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
		ts->tv_sec += atomic_load(&wall_offset_s);
	return r;
}

time_t time(time_t *t)
{
	struct timespec ts;
	time_t now;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = ts.tv_sec;
	if (t)
		*t = now;
	return now;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	struct timespec ts;

	(void)tz;
	clock_gettime(CLOCK_REALTIME, &ts);
	tv->tv_sec = ts.tv_sec;
	tv->tv_usec = ts.tv_nsec / 1000;
	return 0;
}

/* The true wall clock in ms (for comparing with the server's timestamps). */
static int64_t true_wall_ms(void)
{
	struct timespec ts;

	syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- fixtures ---------- */

/* A duration of the tests in ms, stretched under valgrind (where everything runs many times slower). */
static int64_t ms(int64_t v)
{
	static int scale;

	if (!scale) {
		const char *p = getenv("LD_PRELOAD");

		scale = p && strstr(p, "vgpreload") ? 6 : 1;
	}
	return v * scale;
}

/* assert_int_equal that shows the error message when the code differs. */
#define assert_rc(expr, want)                                                                                          \
	do {                                                                                                           \
		int rc_ = (expr);                                                                                      \
		if (rc_ != (want))                                                                                     \
			fail_msg("%s = %d, want %d: %s", #expr, rc_, (int)(want), cs_errmsg());                        \
	} while (0)

static PGconn *db(void)
{
	PGconn *c = NULL;

	assert_int_equal(pgconn_open(test_pg_url(), "test", &c), 0);
	return c;
}

/* A fresh, migrated schema (its lease row: epoch 0, expired). Caller frees. */
static char *fresh_schema(void)
{
	char *schema = test_pg_schema();
	PGconn *c = db();

	assert_int_equal(pgconn_migrate(c, schema, "test"), 0);
	PQfinish(c);
	return schema;
}

/* A backend handle with only what the lease uses: as state_pg_open would build it. */
static struct state_pg *pg_new(const char *schema, const char *replica, int64_t lease_ms)
{
	struct state_pg *pg = xcalloc(1, sizeof(*pg));

	pg->conninfo = xstrdup(test_pg_url());
	pg->schema = xstrdup(schema);
	pg->where = xasprintf("postgres test schema %s", schema);
	pg->replica_id = xstrdup(replica);
	pg->lease_ms = ms(lease_ms);
	pthread_mutex_init(&pg->mu, NULL);
	pg->lease = state_pg_lease_new(pg);
	return pg;
}

static void pg_free(struct state_pg *pg)
{
	state_pg_lease_free(pg->lease);
	pthread_mutex_destroy(&pg->mu);
	free(pg->conninfo);
	free(pg->schema);
	free(pg->where);
	free(pg->replica_id);
	free(pg);
}

/* Runs a statement that must succeed; returns its first value as a number (0 when none). */
static int64_t sql(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int64_t sql(PGconn *c, const char *fmt, ...)
{
	va_list ap;
	char *q;
	PGresult *r;
	int64_t v = 0;

	va_start(ap, fmt);
	q = xvasprintf(fmt, ap);
	va_end(ap);
	if (pgconn_exec(c, "test", &r, q, 0, NULL))
		fail_msg("%s: %s", q, cs_errmsg());
	if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	free(q);
	return v;
}

/* The password in the test server's URL (never to appear in a message). */
static char *url_password(void)
{
	PQconninfoOption *o = PQconninfoParse(test_pg_url(), NULL);
	char *pw = NULL;

	for (PQconninfoOption *p = o; p && p->keyword; p++)
		if (!strcmp(p->keyword, "password") && p->val)
			pw = xstrdup(p->val);
	PQconninfoFree(o);
	assert_non_null(pw);
	return pw;
}

static const char *hostname(void)
{
	static char h[256];

	if (!h[0])
		assert_int_equal(gethostname(h, sizeof(h) - 1), 0);
	return h;
}

/* ---------- taking and handing over ---------- */

static void test_a_second_holder_is_refused_at_once_with_who_holds_it(void **unused)
{
	char *schema = fresh_schema(), *pw = url_password(), want[512], desc[512];
	struct state_pg *a = pg_new(schema, "replica-a", 5000), *b = pg_new(schema, "replica-b", 5000);
	int64_t t0;

	(void)unused;
	assert_int_equal(state_pg_lease_leading(a), 0);
	assert_int_equal(state_pg_lease_epoch(a), 0);
	assert_int_equal(state_pg_lease_holder(a, desc, sizeof(desc)), 0);
	assert_string_equal(desc, "");

	assert_rc(state_pg_lease_lock(a, "run"), 0);
	assert_int_equal(state_pg_lease_leading(a), 1);
	assert_int_equal(state_pg_lease_epoch(a), 1);

	t0 = util_mono_ms();
	assert_rc(state_pg_lease_lock(b, "apply"), CS_ELOCKED);
	assert_true(util_mono_ms() - t0 < ms(1000)); /* at once, not after the lease */
	snprintf(want, sizeof(want), "the state in %s is locked by run on %s (replica replica-a, pid %ld) since ",
		 b->where, hostname(), (long)getpid());
	assert_non_null(strstr(cs_errmsg(), want));
	assert_non_null(strstr(cs_errmsg(), "; its lease ends in "));
	assert_null(strstr(cs_errmsg(), pw));
	assert_int_equal(state_pg_lease_leading(b), 0);
	assert_int_equal(state_pg_lease_epoch(b), 0);

	assert_int_equal(state_pg_lease_holder(b, desc, sizeof(desc)), 0);
	snprintf(want, sizeof(want), "run on %s (replica replica-a, pid %ld) since ", hostname(), (long)getpid());
	assert_true(!strncmp(desc, want, strlen(want)));
	/* Locking twice is a mistake of the caller, not a second epoch. */
	assert_rc(state_pg_lease_lock(a, "run"), CS_ERROR);
	assert_int_equal(state_pg_lease_epoch(a), 1);

	pg_free(a);
	pg_free(b);
	free(pw);
	free(schema);
}

static void test_unlock_hands_the_lease_over_at_once_with_the_next_epoch(void **unused)
{
	char *schema = fresh_schema(), desc[512], want[512];
	struct state_pg *a = pg_new(schema, "replica-a", 5000), *b = pg_new(schema, "replica-b", 5000);

	(void)unused;
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	assert_int_equal(state_pg_lease_epoch(a), 1);
	state_pg_lease_unlock(a);
	assert_int_equal(state_pg_lease_leading(a), 0);
	assert_int_equal(state_pg_lease_epoch(a), 0);

	/* Well inside a's 5 s lease: only the release lets b in. */
	assert_rc(state_pg_lease_lock(b, "apply"), 0);
	assert_int_equal(state_pg_lease_epoch(b), 2);
	assert_int_equal(state_pg_lease_holder(a, desc, sizeof(desc)), 0);
	snprintf(want, sizeof(want), "apply on %s (replica replica-b, pid ", hostname());
	assert_true(!strncmp(desc, want, strlen(want)));

	/* a again: refused (b holds it), then its own next epoch once b lets go. */
	assert_rc(state_pg_lease_lock(a, "run"), CS_ELOCKED);
	state_pg_lease_unlock(b);
	assert_int_equal(state_pg_lease_holder(a, desc, sizeof(desc)), 0);
	assert_string_equal(desc, "");
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	assert_int_equal(state_pg_lease_epoch(a), 3);
	state_pg_lease_unlock(a);
	state_pg_lease_unlock(a); /* a second unlock is a no-op */

	pg_free(a);
	pg_free(b);
	free(schema);
}

static void test_a_lease_left_by_a_release_that_failed_is_taken_again_with_a_new_epoch(void **unused)
{
	char *schema = fresh_schema(), token[256];
	struct state_pg *a = pg_new(schema, "replica-a", 5000), *b = pg_new(schema, "replica-b", 5000);
	PGconn *c = db();
	PGresult *r;
	char *q = xasprintf("SELECT holder FROM \"%s\".lease", schema);

	(void)unused;
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	assert_int_equal(pgconn_exec(c, "test", &r, q, 0, NULL), 0);
	snprintf(token, sizeof(token), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	assert_true(!strncmp(token, "replica-a#", 10));
	state_pg_lease_unlock(a);
	/* As if the release never reached the server: a's token, epoch 1, still live. */
	sql(c, "UPDATE \"%s\".lease SET holder = '%s', expires_at = now() + interval '1 hour'", schema, token);
	assert_rc(state_pg_lease_lock(b, "apply"), CS_ELOCKED);
	assert_non_null(strstr(cs_errmsg(), "(replica replica-a, pid "));
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	assert_int_equal(state_pg_lease_epoch(a), 2);
	state_pg_lease_unlock(a);

	/* A lease table without its row (edited by hand) is an error, not "locked". */
	sql(c, "DELETE FROM \"%s\".lease", schema);
	assert_rc(state_pg_lease_lock(a, "run"), CS_ERROR);
	assert_non_null(strstr(cs_errmsg(), "the lease row (id 1) is missing"));

	free(q);
	PQfinish(c);
	pg_free(a);
	pg_free(b);
	free(schema);
}

/* ---------- renewing and fencing ---------- */

static void test_renewal_keeps_a_one_second_lease_alive_for_three_seconds(void **unused)
{
	char *schema = fresh_schema();
	struct state_pg *a = pg_new(schema, "replica-a", 1000), *b = pg_new(schema, "replica-b", 1000);
	PGconn *c = db(), *w = db();
	int64_t t0, renewals;

	(void)unused;
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	t0 = util_mono_ms();
	while (util_mono_ms() - t0 < ms(3000)) {
		assert_int_equal(state_pg_lease_leading(a), 1);
		assert_int_equal(state_pg_lease_epoch(a), 1);
		usleep(10 * 1000);
	}
	/* Renewed about every lease/3 by the server's clock: the row moved on, and it is still a's. */
	renewals = sql(c, "SELECT (extract(epoch FROM renewed_at - acquired_at) * 1000)::bigint FROM \"%s\".lease",
		       schema);
	assert_true(renewals >= ms(2000));
	assert_rc(state_pg_lease_lock(b, "apply"), CS_ELOCKED);

	/* The leader's write passes the fence inside its transaction and commits. */
	sql(w, "BEGIN");
	assert_rc(state_pg_fence(a, w), 0);
	sql(w, "INSERT INTO \"%s\".certs (name, doc, changed_serial) VALUES ('x', '{}', 1)", schema);
	sql(w, "COMMIT");
	assert_int_equal(sql(c, "SELECT count(*) FROM \"%s\".certs", schema), 1);

	PQfinish(c);
	PQfinish(w);
	pg_free(a);
	pg_free(b);
	free(schema);
}

static void test_a_lease_taken_away_deposes_its_holder_and_fences_its_writes(void **unused)
{
	char *schema = fresh_schema();
	struct state_pg *a = pg_new(schema, "replica-a", 900), *b = pg_new(schema, "replica-b", 900);
	PGconn *c = db(), *w = db();
	int64_t t0, took;

	(void)unused;
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	/* Someone else's lease now (as after a takeover a missed): epoch 2, an hour long. */
	sql(c,
	    "UPDATE \"%s\".lease SET holder = 'intruder#00', host = 'elsewhere', pid = 42, operation = 'apply',"
	    " epoch = epoch + 1, acquired_at = now(), expires_at = now() + interval '1 hour'",
	    schema);
	t0 = util_mono_ms();
	while (state_pg_lease_leading(a) && util_mono_ms() - t0 < ms(2000))
		usleep(2 * 1000);
	took = util_mono_ms() - t0;
	/* The next renewal (every 300 ms) finds the row gone: deposed, well before the lease would end. */
	assert_int_equal(state_pg_lease_leading(a), 0);
	assert_true(took < ms(900));
	assert_int_equal(state_pg_lease_epoch(a), 0);

	sql(w, "BEGIN");
	assert_rc(state_pg_fence(a, w), CS_EFENCED);
	assert_non_null(strstr(cs_errmsg(), "this process is no longer the leader of postgres test schema"));
	assert_non_null(strstr(cs_errmsg(), "(epoch 1)"));
	sql(w, "ROLLBACK");

	/* Locking again after the loss (without unlock) asks for a new epoch: refused, the intruder has it. */
	assert_rc(state_pg_lease_lock(a, "run"), CS_ELOCKED);
	assert_non_null(strstr(cs_errmsg(), "locked by apply on elsewhere (replica intruder, pid 42)"));
	/* a's unlock leaves the intruder's lease alone; b is still refused. */
	state_pg_lease_unlock(a);
	assert_int_equal(
		sql(c, "SELECT count(*) FROM \"%s\".lease WHERE holder = 'intruder#00' AND expires_at > now()", schema),
		1);
	assert_rc(state_pg_lease_lock(b, "apply"), CS_ELOCKED);
	assert_non_null(strstr(cs_errmsg(), "locked by apply on elsewhere (replica intruder, pid 42)"));

	PQfinish(c);
	PQfinish(w);
	pg_free(a);
	pg_free(b);
	free(schema);
}

static void test_the_fence_refuses_a_write_after_a_takeover_by_the_database_clock(void **unused)
{
	char *schema = fresh_schema();
	struct state_pg *a = pg_new(schema, "replica-a", 900), *b = pg_new(schema, "replica-b", 900);
	PGconn *c = db(), *w = db();

	(void)unused;
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	/* The database says the lease ended (a's next renewal has not run yet): b takes it. */
	sql(c, "UPDATE \"%s\".lease SET expires_at = now() - interval '1 second'", schema);
	assert_rc(state_pg_lease_lock(b, "apply"), 0);
	assert_int_equal(state_pg_lease_epoch(b), 2);

	sql(w, "BEGIN");
	assert_rc(state_pg_fence(a, w), CS_EFENCED);
	assert_non_null(strstr(cs_errmsg(), "(epoch 1): now held by apply on "));
	assert_non_null(strstr(cs_errmsg(), "(replica replica-b, pid "));
	sql(w, "ROLLBACK");
	/* The fence deposed a at once, without waiting for its renewal. */
	assert_int_equal(state_pg_lease_leading(a), 0);
	sql(w, "BEGIN");
	assert_rc(state_pg_fence(b, w), 0);
	sql(w, "COMMIT");
	/* Not holding at all is refused too. */
	state_pg_lease_unlock(a);
	sql(w, "BEGIN");
	assert_rc(state_pg_fence(a, w), CS_EFENCED);
	sql(w, "ROLLBACK");

	PQfinish(c);
	PQfinish(w);
	pg_free(a);
	pg_free(b);
	free(schema);
}

/* A write that stalls inside its transaction (a paused leader) loses its session, so its row lock, in a lease. */
static void test_a_writer_stalled_inside_its_transaction_loses_its_session(void **unused)
{
	char *schema = fresh_schema();
	struct state_pg *a = pg_new(schema, "replica-a", 900);
	PGconn *c = db(), *w = db();
	int64_t t0, pid = sql(w, "SELECT pg_backend_pid()");

	(void)unused;
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	sql(w, "BEGIN");
	assert_rc(state_pg_fence(a, w), 0);
	sql(w, "INSERT INTO \"%s\".certs (name, doc, changed_serial) VALUES ('x', '{}', 1)", schema);
	t0 = util_mono_ms();
	while (sql(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld", (long long)pid) &&
	       util_mono_ms() - t0 < ms(5000))
		usleep(20 * 1000);
	assert_true(util_mono_ms() - t0 < ms(900 + 1000));
	assert_int_not_equal(pgconn_exec(w, "test", NULL, "COMMIT", 0, NULL), 0);
	assert_int_equal(sql(c, "SELECT count(*) FROM \"%s\".certs", schema), 0);

	PQfinish(c);
	PQfinish(w);
	pg_free(a);
	free(schema);
}

/* ---------- a paused leader (SIGSTOP) ---------- */

/* The child: takes the lease, reports its epoch, and after being resumed reports what it sees. */
static void paused_leader(const char *schema, int report, int go)
{
	struct state_pg *a = pg_new(schema, "replica-a", 900);
	PGconn *w = NULL;
	char line[600], cmd;
	int rc, leading;
	uint64_t epoch;

	if (state_pg_lease_lock(a, "run"))
		_exit(2);
	snprintf(line, sizeof(line), "%llu\n", (unsigned long long)state_pg_lease_epoch(a));
	if (write(report, line, strlen(line)) < 0 || read(go, &cmd, 1) != 1)
		_exit(3);
	/* Resumed long after the lease ran out: first thing, is it still leading? */
	leading = state_pg_lease_leading(a);
	epoch = state_pg_lease_epoch(a);
	if (pgconn_open(test_pg_url(), "child", &w) || pgconn_exec(w, "child", NULL, "BEGIN", 0, NULL))
		_exit(4);
	rc = state_pg_fence(a, w);
	snprintf(line, sizeof(line), "%d %llu %d %.500s\n", leading, (unsigned long long)epoch, rc, cs_errmsg());
	PQfinish(w);
	state_pg_lease_unlock(a);
	pg_free(a);
	if (write(report, line, strlen(line)) < 0)
		_exit(5);
	_exit(0);
}

static void read_line(int fd, char *out, size_t n)
{
	size_t used = 0;

	while (used + 1 < n && read(fd, out + used, 1) == 1 && out[used] != '\n')
		used++;
	out[used] = '\0';
}

static void test_a_paused_leader_is_replaced_and_cannot_write_when_resumed(void **unused)
{
	char *schema = fresh_schema(), line[600], msg[600];
	int report[2], go[2], status, leading, rc;
	unsigned long long child_epoch, epoch_after;
	struct state_pg *b;
	int64_t t0, took;
	pid_t pid;

	(void)unused;
	assert_int_equal(pipe(report), 0);
	assert_int_equal(pipe(go), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(report[0]);
		close(go[1]);
		paused_leader(schema, report[1], go[0]);
	}
	close(report[1]);
	close(go[0]);
	b = pg_new(schema, "replica-b", 900);
	read_line(report[0], line, sizeof(line));
	assert_int_equal(sscanf(line, "%llu", &child_epoch), 1);
	assert_int_equal(child_epoch, 1);

	assert_int_equal(kill(pid, SIGSTOP), 0);
	t0 = util_mono_ms();
	while ((rc = state_pg_lease_lock(b, "run")) == CS_ELOCKED && util_mono_ms() - t0 < ms(5000))
		usleep(20 * 1000);
	took = util_mono_ms() - t0;
	assert_int_equal(rc, 0);
	assert_int_equal(state_pg_lease_epoch(b), 2);
	/* Not before the lease could have run out (renewed at most 300 ms before the stop), not long after. */
	assert_true(took >= ms(900 - 300) - 50);
	assert_true(took <= ms(900 + 500));

	assert_int_equal(kill(pid, SIGCONT), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	read_line(report[0], line, sizeof(line));
	assert_int_equal(sscanf(line, "%d %llu %d %599[^\n]", &leading, &epoch_after, &rc, msg), 4);
	assert_int_equal(leading, 0);
	assert_int_equal(epoch_after, 0);
	assert_int_equal(rc, CS_EFENCED);
	assert_non_null(strstr(msg, "no longer the leader"));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The resumed process let go of nothing of b's. */
	assert_int_equal(state_pg_lease_leading(b), 1);
	assert_int_equal(state_pg_lease_epoch(b), 2);

	close(report[0]);
	close(go[1]);
	pg_free(b);
	free(schema);
}

/* ---------- clocks ---------- */

static void test_wall_clock_jumps_change_nothing(void **unused)
{
	char *schema = fresh_schema();
	struct state_pg *a = pg_new(schema, "replica-a", 900);
	int64_t t0;

	(void)unused;
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	for (int i = 0; i < 2; i++) {
		atomic_store(&wall_offset_s, i ? -7200 : 7200);
		t0 = util_mono_ms();
		while (util_mono_ms() - t0 < ms(1200)) {
			assert_int_equal(state_pg_lease_leading(a), 1);
			assert_int_equal(state_pg_lease_epoch(a), 1);
			usleep(10 * 1000);
		}
	}
	atomic_store(&wall_offset_s, 0);
	state_pg_lease_unlock(a);
	pg_free(a);
	free(schema);
}

/* ---------- the database goes away ---------- */

static void pgtest(const char *cmd, const char *dir, const char *port)
{
	char *line = xasprintf("sh %s/tests/pg/pgtest.sh %s %s %s >/dev/null", test_srcdir(), cmd, dir, port);

	assert_int_equal(system(line), 0);
	free(line);
}

static char *read_small(const char *path)
{
	char buf[64] = {0};
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return xstrdup(buf);
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Sends the log to a temporary file; log_captured() ends that and returns what was written (caller frees). */
static FILE *log_capture(void)
{
	FILE *f = tmpfile();

	assert_non_null(f);
	log_setup(LOGF_TEXT, LV_DEBUG, f);
	return f;
}

static char *log_captured(FILE *f)
{
	char *text = xmalloc(16384);
	size_t n;

	log_setup(LOGF_TEXT, LV_INFO, NULL);
	fflush(f);
	rewind(f);
	n = fread(text, 1, 16383, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static void test_a_database_restart_inside_the_lease_keeps_the_leader(void **unused)
{
	const char *dir = getenv("CERTSYNC_TEST_PG_DIR");
	char *schema = fresh_schema(), *pw = url_password(), *logtext, desc[512], want[256];
	struct state_pg *a;
	FILE *logf;
	int64_t t0;
	PGconn *c;

	(void)unused;
	if (!dir || !*dir)
		fail_msg("CERTSYNC_TEST_PG_DIR is not set: run the unit tests with make unit");
	logf = log_capture();
	a = pg_new(schema, "replica-a", 4500);
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	assert_int_equal(state_pg_lease_holder(a, desc, sizeof(desc)), 0); /* its caller-side connection is open */

	pgtest("restart", dir, "");
	c = db();
	t0 = util_mono_ms();
	while (!sql(c, "SELECT count(*) FROM \"%s\".lease WHERE renewed_at > pg_postmaster_start_time()", schema) &&
	       util_mono_ms() - t0 < ms(6000))
		usleep(20 * 1000);
	/* Renewed again on a new connection, same epoch, never deposed. */
	assert_int_equal(
		sql(c, "SELECT count(*) FROM \"%s\".lease WHERE renewed_at > pg_postmaster_start_time()", schema), 1);
	assert_int_equal(state_pg_lease_leading(a), 1);
	assert_int_equal(state_pg_lease_epoch(a), 1);
	/* The caller-side connection died with the server: the first call after the restart reconnects. */
	assert_rc(state_pg_lease_holder(a, desc, sizeof(desc)), 0);
	assert_true(!strncmp(desc, "run on ", 7));
	sql(c, "BEGIN");
	assert_rc(state_pg_fence(a, c), 0);
	sql(c, "COMMIT");
	state_pg_lease_unlock(a);

	logtext = log_captured(logf);
	snprintf(want, sizeof(want), "cannot renew the leader lease (epoch 1): %s: ", a->where);
	assert_int_equal(count(logtext, want), 1);
	snprintf(want, sizeof(want), "%s: the leader lease (epoch 1) is renewed again", a->where);
	assert_int_equal(count(logtext, want), 1);
	assert_null(strstr(logtext, "stops leading"));
	assert_null(strstr(logtext, pw));

	free(logtext);
	PQfinish(c);
	pg_free(a);
	free(pw);
	free(schema);
}

static void test_a_stopped_database_ends_leading_by_the_lease_never_after_its_expiry(void **unused)
{
	const char *dir = getenv("CERTSYNC_TEST_PG_DIR");
	char *schema = fresh_schema(), *pw = url_password(), *portfile, *port, *logtext, want[256];
	struct state_pg *a, *b;
	int64_t t0, last_one_wall = 0, zero_mono = 0, zero_wall = 0, expires_wall;
	FILE *logf;
	PGconn *c;

	(void)unused;
	if (!dir || !*dir)
		fail_msg("CERTSYNC_TEST_PG_DIR is not set: run the unit tests with make unit");
	portfile = xasprintf("%s/port", dir);
	port = read_small(portfile);
	logf = log_capture();
	a = pg_new(schema, "replica-a", 900);
	b = pg_new(schema, "replica-b", 900);
	assert_rc(state_pg_lease_lock(a, "run"), 0);
	/* Wait for a renewal by the server's clock, so that the thread is in its steady rhythm. */
	c = db();
	t0 = util_mono_ms();
	while (!sql(c, "SELECT count(*) FROM \"%s\".lease WHERE renewed_at > acquired_at", schema) &&
	       util_mono_ms() - t0 < ms(2000))
		usleep(10 * 1000);
	PQfinish(c);

	pgtest("stop", dir, "");
	t0 = util_mono_ms();
	while (util_mono_ms() - t0 < ms(5000)) {
		int64_t wall = true_wall_ms();

		if (!state_pg_lease_leading(a)) {
			zero_mono = util_mono_ms();
			zero_wall = wall;
			break;
		}
		last_one_wall = wall;
		usleep(2 * 1000);
	}
	assert_true(zero_mono > 0);
	/* Within a lease of the stop (the last renewal started before it ended)... */
	assert_true(zero_mono - t0 <= ms(900) + 50);

	pgtest("start", dir, port);
	c = db();
	expires_wall = sql(c, "SELECT (extract(epoch FROM expires_at) * 1000)::bigint FROM \"%s\".lease", schema);
	/* ...never while the database could already give the lease to another (its clock is this machine's)... */
	assert_true(last_one_wall <= expires_wall);
	/* ...and not at the first failed renewal either: only when the lease could have run out. */
	assert_true(zero_wall >= expires_wall - ms(300));

	/* Deposed for good: the returning database does not bring it back; b takes the next epoch. */
	assert_int_equal(state_pg_lease_leading(a), 0);
	assert_rc(state_pg_lease_lock(b, "run"), 0);
	assert_int_equal(state_pg_lease_epoch(b), 2);
	assert_int_equal(state_pg_lease_leading(a), 0);
	state_pg_lease_unlock(a);
	assert_int_equal(state_pg_lease_leading(b), 1);

	/* One line per change of health, naming the server, never the password. */
	logtext = log_captured(logf);
	snprintf(want, sizeof(want), "cannot renew the leader lease (epoch 1): %s: ", a->where);
	assert_int_equal(count(logtext, want), 1);
	snprintf(want, sizeof(want),
		 "%s: the leader lease (epoch 1) was not renewed within %lld ms: this process stops leading", a->where,
		 (long long)ms(900));
	assert_int_equal(count(logtext, want), 1);
	assert_non_null(strstr(logtext, a->where));
	assert_null(strstr(logtext, pw));
	free(logtext);

	PQfinish(c);
	pg_free(a);
	pg_free(b);
	free(port);
	free(portfile);
	free(pw);
	free(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_second_holder_is_refused_at_once_with_who_holds_it),
		cmocka_unit_test(test_unlock_hands_the_lease_over_at_once_with_the_next_epoch),
		cmocka_unit_test(test_a_lease_left_by_a_release_that_failed_is_taken_again_with_a_new_epoch),
		cmocka_unit_test(test_renewal_keeps_a_one_second_lease_alive_for_three_seconds),
		cmocka_unit_test(test_a_lease_taken_away_deposes_its_holder_and_fences_its_writes),
		cmocka_unit_test(test_the_fence_refuses_a_write_after_a_takeover_by_the_database_clock),
		cmocka_unit_test(test_a_writer_stalled_inside_its_transaction_loses_its_session),
		cmocka_unit_test(test_a_paused_leader_is_replaced_and_cannot_write_when_resumed),
		cmocka_unit_test(test_wall_clock_jumps_change_nothing),
		/* Last: these two stop and restart the server. */
		cmocka_unit_test(test_a_database_restart_inside_the_lease_keeps_the_leader),
		cmocka_unit_test(test_a_stopped_database_ends_leading_by_the_lease_never_after_its_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
