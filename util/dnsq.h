/*
 * DNS queries for dns-01 (ldns): zone discovery, authoritative nameservers
 * and TXT propagation checks. Every query goes to a server given by the
 * caller ("host", "host:port", "[v6]:port"; port 53 by default) with a
 * bounded timeout; answers are untrusted input. With no resolvers given,
 * those of /etc/resolv.conf are used. No secret ever passes here.
 */
#ifndef CS_UTIL_DNSQ_H
#define CS_UTIL_DNSQ_H

#include <stddef.h>
#include <stdint.h>

#define DNSQ_TIMEOUT_MS 3000 /* one query */
#define DNSQ_MAX_CNAMES 8    /* a CNAME chain longer than this is an error */
#define DNSQ_MAX_SERVERS 16

struct dnsq_servers {
	char **addr; /* "127.0.0.1:5353", "[::1]:53" */
	size_t n;
};

void dnsq_servers_free(struct dnsq_servers *s);

/*
 * Where the TXT record for fqdn (no trailing dot) really lives: follows a
 * CNAME chain at fqdn (bounded) through resolvers, then walks up the labels
 * asking for SOA until a zone apex answers. *target gets the final record
 * name, *zone the apex (both without trailing dot; caller frees).
 * CS_ENOTFOUND when no zone holds it; CS_ETRANSIENT when no server answers;
 * messages name the name and the servers asked.
 */
int dnsq_find_zone(const char *const *resolvers, size_t n_resolvers, const char *fqdn, char **target, char **zone);

/*
 * The authoritative nameservers of zone as addresses: its NS records and
 * their A/AAAA, asked of resolvers, port 53. CS_ENOTFOUND when the zone has
 * no resolvable NS.
 */
int dnsq_zone_nameservers(const char *const *resolvers, size_t n_resolvers, const char *zone, struct dnsq_servers *out);

/*
 * Asks server (non-recursively) for fqdn's TXT records: *found is 1 when one
 * of them is exactly value. CS_ETRANSIENT when the server does not answer
 * or answers SERVFAIL/REFUSED (the message says which).
 */
int dnsq_txt_has(const char *server, const char *fqdn, const char *value, int *found);

/*
 * Sends one DNS message (wire format, its ID in the first two bytes) to
 * server over UDP (TCP when it is over 512 bytes or the answer comes back
 * truncated) and waits at most timeout_ms (<= 0: DNSQ_TIMEOUT_MS) per try,
 * one try. *answer (caller frees) is the reply's wire, checked only to be a
 * response with the query's ID. CS_ETRANSIENT when no answer comes.
 */
int dnsq_exchange(const char *server, int timeout_ms, const uint8_t *query, size_t len, uint8_t **answer,
		  size_t *answer_len);

/* Parses "host", "host:port", "[v6]:port" into an address and port (default 53). CS_EINVALID otherwise. */
int dnsq_parse_server(const char *s, char *host, size_t host_len, int *port);

#endif
