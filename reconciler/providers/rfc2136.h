/*
 * The rfc2136 DNS driver's private interface (rfc2136*.c): TXT records
 * placed by RFC 2136 dynamic UPDATE, signed with TSIG (RFC 8945), built and
 * checked with ldns (rfc2136_msg.c owns ldns here).
 */
#ifndef CS_RECONCILER_PROVIDERS_RFC2136_H
#define CS_RECONCILER_PROVIDERS_RFC2136_H

#include <stddef.h>
#include <stdint.h>

#include "../../util/buf.h"
#include "../config.h"

#define RFC2136_FUDGE 300      /* seconds of clock skew the TSIG signature tolerates */
#define RFC2136_VALUE_MAX 1024 /* longest TXT value placed (split into 255-byte strings) */
#define RFC2136_SECRET_MAX 512 /* base64 characters of a TSIG secret */

struct rfc2136 {
	char *name;	       /* issuer name */
	char *server;	       /* "host:port" that takes the updates */
	char *key_name;	       /* "certsync-key." (always absolute) */
	const char *alg;       /* ldns's algorithm name: "hmac-sha256." */
	const char *alg_label; /* as configured: "hmac-sha256" */
	struct cred secret;    /* base64 */
	char **zones;
	size_t n_zones;
	int64_t timeout; /* per update, seconds */
	int ttl;
};

/*
 * The ldns algorithm name for a configured one ("hmac-sha256", any case,
 * trailing dot allowed), or NULL; *label (may be NULL) the short name.
 */
const char *rfc2136_alg(const char *configured, const char **label);

/* 0 when s is non-empty canonical base64 of at most RFC2136_SECRET_MAX characters; else -1. */
int rfc2136_b64_ok(const char *s);

/* A signed UPDATE and what is needed to verify its answer. */
struct rfc2136_msg {
	uint8_t *wire;
	size_t len;
	struct buf mac; /* the request's TSIG MAC (rdata field, as ldns keeps it) */
};

/*
 * Builds the UPDATE of zone that adds (add = 1) the TXT value at owner
 * with the issuer's TTL, or deletes exactly that value (class NONE; never
 * the whole RRset: an apex and its wildcard share one name), signed with
 * the key. now is the TSIG time (0: the clock). CS_EINVALID for a bad
 * name or value, CS_EAUTH when the secret does not sign.
 */
int rfc2136_msg_build(const struct rfc2136 *r, const char *secret, const char *zone, const char *owner,
		      const char *value, int add, struct rfc2136_msg *out);
void rfc2136_msg_free(struct rfc2136_msg *m);

/*
 * Checks the nameserver's answer to q: its TSIG verified with the key (an
 * unsigned or forged answer is CS_EAUTH), then its rcode: NOERROR is 0;
 * REFUSED, NOTAUTH (BADKEY/BADSIG/BADTIME), NOTZONE, NOTIMP and FORMERR
 * are configuration errors (CS_EAUTH / CS_EINVALID, class config);
 * SERVFAIL is CS_ETRANSIENT. Messages name the server, zone and key, never
 * the secret.
 */
int rfc2136_msg_answer(const struct rfc2136 *r, const char *secret, const struct rfc2136_msg *q, const char *zone,
		       const uint8_t *ans, size_t alen);

/*
 * Sends a TSIG-signed SOA query for zone and verifies the signed answer
 * (validate --online): 0 when the server knows the key and answers for the
 * zone with an SOA.
 */
int rfc2136_probe(const struct rfc2136 *r, const char *secret, const char *zone);

#endif
