/*
 * Private to the ACME protocol client (acme_client.c, acme_order.c,
 * acme_client_ari.c) and its unit tests: the pure, bounded parsing of what an ACME
 * server answers (directory, account, order, authorization, challenge,
 * orders list, renewal information, Link headers). Every parser takes the
 * untrusted body, type-checks and bounds each field it reads, and on a
 * malformed answer returns CS_ETRANSIENT with one message naming the
 * issuer, the operation, the URL path and what was wrong.
 */
#ifndef CS_RECONCILER_PROVIDERS_ACME_WIRE_H
#define CS_RECONCILER_PROVIDERS_ACME_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "../../util/http.h"
#include "acme.h"

#define ACME_MAX_URL 2048	  /* any URL a server gives */
#define ACME_MAX_TOKEN 256	  /* a challenge token */
#define ACME_MAX_IDENT 255	  /* a dns identifier */
#define ACME_MAX_CHALLENGES 16	  /* challenges of one authorization */
#define ACME_MAX_META 32	  /* profiles, caaIdentities */
#define ACME_MAX_NONCE_LEN 256	  /* a Replay-Nonce */
#define ACME_MAX_ORDER_PAGES 100  /* pages of the account's orders list followed */
#define ACME_MAX_ORDER_URLS 10000 /* orders kept from that list */
#define ACME_MAX_LINKS 32	  /* Link entries looked at in one answer */
#define ACME_RETRY_AFTER_MIN 60	  /* ARI Retry-After clamp */
#define ACME_RETRY_AFTER_MAX 86400
#define ACME_ARI_DEFAULT_RETRY 21600 /* no Retry-After: ask again in 6 h (RFC 9773 §4.3.3) */

/* Who is asking, for the messages: "issuer le: acme newOrder /order-plz: malformed answer: …". */
struct acme_wire {
	const char *issuer;
	const char *op;
	const char *url;
};

/* Sets the malformed-answer error (CS_ETRANSIENT) and returns it. */
int acme_wire_fail(const struct acme_wire *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes url's path (no scheme, host or query) into out. */
void acme_url_path(const char *url, char *out, size_t n);

/*
 * ref resolved against base: absolute http(s) URLs as they are, "/path"
 * on base's scheme and host. NULL (caller frees otherwise) when ref is not
 * a usable URL (too long, control characters, another scheme).
 */
char *acme_url_resolve(const char *base, const char *ref);

/*
 * The targets of the Link headers of res whose rel includes rel (RFC 8288:
 * several headers, several comma-separated entries, quoted parameters),
 * resolved against base; at most max of them into out (caller frees each).
 * Returns how many.
 */
size_t acme_links(const struct http_response *res, const char *base, const char *rel, char **out, size_t max);

int acme_directory_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_directory *out);
void acme_directory_free(struct acme_directory *d);

/* The account object of newAccount: its status (must be "valid") and orders URL (*orders may be NULL). */
int acme_account_parse(const struct acme_wire *w, const char *body, size_t len, char **orders);

/*
 * The newOrder payload: dns identifiers for names (1 to ACME_MAX_AUTHZ, a
 * "*." name as is), profile and replaces when not NULL. CS_EINVALID naming
 * the issuer for an empty or over-long name or count. Caller frees *out.
 */
int acme_order_payload(const char *issuer, char *const *names, size_t n, const char *profile, const char *replaces,
		       char **out);

/* An order object; out->url stays NULL (the caller knows the URL). */
int acme_order_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_order *out);
int acme_authz_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_authz *out);
int acme_challenge_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_challenge *out);

/* One page of the orders list: {"orders":[url…]}, appended to *urls (at most ACME_MAX_ORDER_URLS in all). */
int acme_orders_page_parse(const struct acme_wire *w, const char *body, size_t len, char ***urls, size_t *n);

/* A renewalInfo answer (suggestedWindow start < end, explanationURL). retry_after is left to the caller. */
int acme_renewal_info_parse(const struct acme_wire *w, const char *body, size_t len, struct acme_renewal_info *out);

/* A Retry-After (absolute) clamped to now + [ACME_RETRY_AFTER_MIN, ACME_RETRY_AFTER_MAX]; 0 (none) → now +
 * ACME_ARI_DEFAULT_RETRY. */
int64_t acme_retry_after_clamp(int64_t retry_after, int64_t now);

#endif
