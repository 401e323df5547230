/* Fixtures the PostgreSQL state tests share (pgfix.h). */
#include "pgfix.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../state/state_pg.h"
#include "../../util/err.h"
#include "testutil.h"

struct state_backend *pgfix_open(const char *schema, const char *replica, const char *cache_dir)
{
	struct state_pg_opts o = {test_pg_url(), schema, 15000, replica, cache_dir};
	struct state_backend *be = NULL;

	if (state_pg_open(&o, &be))
		fail_msg("state_pg_open: %s", cs_errmsg());
	return be;
}

void pgfix_fill_cert(struct state_cert *c, int k)
{
	char tmp[64];

	state_str_set(&c->issuer, "digicert");
	state_str_set(&c->provider, "digicert");
	snprintf(tmp, sizeof(tmp), "spec-%d", k);
	state_str_set(&c->spec_hash, tmp);
	state_str_set(&c->output_dir, "shop/www");
	c->phase = PHASE_READY;
	state_cert_set_id(c, "order_id", "12345");
	snprintf(tmp, sizeof(tmp), "%x", 0xabc000 + k);
	state_str_set(&c->serial, tmp);
	c->not_before = PGFIX_T0 - 86400;
	c->not_after = PGFIX_T0 + 90 * 86400;
	state_cert_event(c, PGFIX_T0, "issued %d", k);
}

struct state *pgfix_make_state(int n)
{
	struct state *st = state_new();
	char name[32];

	state_set_source(st, "https://git.example/certs.git", "main", "0123abcd");
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "c%02d.example", i);
		pgfix_fill_cert(state_cert_put(st, name), i);
	}
	return st;
}

int pgfix_has_name(char **v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], name))
			return 1;
	return 0;
}

void pgfix_free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void pgfix_counter_bump(void *arg)
{
	struct pgfix_counter *c = arg;

	pthread_mutex_lock(&c->mu);
	c->n++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

int pgfix_counter_wait(struct pgfix_counter *c, int want)
{
	struct timespec until;
	int n;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&c->mu);
	while (c->n < want && pthread_cond_timedwait(&c->cv, &c->mu, &until) == 0)
		;
	n = c->n;
	pthread_mutex_unlock(&c->mu);
	return n;
}
