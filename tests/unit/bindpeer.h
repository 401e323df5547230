/* A real BIND 9 for the DNS unit tests, through tests/peers/bind.sh (free loopback port, TSIG key certsync-key.). */
#ifndef CS_TESTS_UNIT_BINDPEER_H
#define CS_TESTS_UNIT_BINDPEER_H

#include <stddef.h>

struct bindpeer {
	char *dir;	  /* named's directory (owned) */
	int port;	  /* UDP and TCP on 127.0.0.1 */
	char server[32];  /* "127.0.0.1:PORT" */
	char secret[128]; /* the TSIG key's base64 secret (hmac-sha256) */
};

/*
 * A free loopback port (UDP and TCP both free when asked). -1 on failure.
 */
int bindpeer_free_port(void);

/*
 * Starts named in dir/named, authoritative for zones; extras[i] (NULL or
 * zone file lines) are added to zones[i] (extras may be NULL). 0 once it answers.
 */
int bindpeer_start(struct bindpeer *b, const char *dir, const char *const *zones, const char *const *extras, size_t n);

/* The same with the TSIG key certsync-key. of algorithm alg ("hmac-sha384"; NULL: hmac-sha256). */
int bindpeer_start_alg(struct bindpeer *b, const char *dir, const char *alg, const char *const *zones,
		       const char *const *extras, size_t n);
void bindpeer_stop(struct bindpeer *b);

#endif
