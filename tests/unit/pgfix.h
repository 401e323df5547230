/*
 * Fixtures the PostgreSQL state tests share: a ready DigiCert record and a
 * state of n of them (test_state_pg_snap, test_state_pg_hand), and a
 * counter the backend's listener bumps, which tests wait on with a
 * deadline instead of sleeping, and the name lists the backend returns
 * (test_state_pg, test_state_pg_hand).
 */
#ifndef CS_TESTS_PGFIX_H
#define CS_TESTS_PGFIX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../../state/state.h"

#define PGFIX_T0 INT64_C(1795411863) /* 2026-11-23T05:31:03Z */

struct state_backend;

/* A PostgreSQL state backend on test_pg_url()'s server, schema, replica name, cache_dir (may be NULL); fails the test
 * otherwise. */
struct state_backend *pgfix_open(const char *schema, const char *replica, const char *cache_dir);

/* Record k: issued by "digicert" into shop/www, ready, serial 0xabc000 + k. */
void pgfix_fill_cert(struct state_cert *c, int k);

/* A state with a source and records c00.example … c<n-1>.example (pgfix_fill_cert). */
struct state *pgfix_make_state(int n);

/* 1 when name is among the n names of v (state_refresh's, state_take_kicks'). */
int pgfix_has_name(char **v, size_t n, const char *name);

/* Frees such a list. */
void pgfix_free_names(char **v, size_t n);

struct pgfix_counter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;
};
#define PGFIX_COUNTER_INIT                                                                                             \
	{                                                                                                              \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0                                                 \
	}

/* state_on_change's callback: one more. */
void pgfix_counter_bump(void *arg);

/* Waits until the counter reaches at least want (10 s at most); returns its value. */
int pgfix_counter_wait(struct pgfix_counter *c, int want);

#endif
