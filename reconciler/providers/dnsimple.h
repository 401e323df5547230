/*
 * The DNSimple driver's private interface (shared by dnsimple*.c):
 * Let's Encrypt certificates through DNSimple API v2
 * (../shared/api/dnsimple.md), its zone records as a DNS driver, webhooks.
 */
#ifndef CS_RECONCILER_PROVIDERS_DNSIMPLE_H
#define CS_RECONCILER_PROVIDERS_DNSIMPLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../../util/buf.h"
#include "../../util/http.h"
#include "../config.h"
#include "../provider.h"

#define DNSIMPLE_DEFAULT_URL "https://api.dnsimple.com"
#define DNSIMPLE_SANDBOX_URL "https://api.sandbox.dnsimple.com"
#define DNSIMPLE_MAX_PAGES 1000

/* A DNSimple certificate as listed or fetched (only what the driver uses). */
struct dnsimple_cert {
	long long id;
	char *state;
	char *name;
	char *common_name;
	char **alt;
	size_t n_alt; /* sorted, lowercase */
	int auto_renew;
	int64_t expires_at; /* 0 while not issued */
};

void dnsimple_cert_clear(struct dnsimple_cert *c);

/*
 * Orders that could adopt each other's certificate (same common name and
 * alternate names) look-then-buy under the same one of these locks; others
 * buy in parallel.
 */
#define DNSIMPLE_BUY_LOCKS 64

/*
 * Per-domain certificate list cached for one run: what DNSimple listed at
 * the first look, plus every certificate this process bought since (kept
 * newest first). A purchase whose outcome is unknown makes it stale: the
 * next look lists again.
 */
struct dnsimple_list {
	char *domain;
	struct dnsimple_cert *v;
	size_t n;
	int stale;
};

struct dnsimple {
	char *name; /* issuer name */
	struct cred account, token;
	char *base_url; /* without /v2 */
	char *ca_file;
	char *sig_alg; /* "ECDSA" or "RSA" */
	char **zones;
	size_t n_zones;
	int64_t poll_min, poll_max;
	int64_t timeout;     /* per request, seconds */
	int64_t rate_window; /* seconds X-RateLimit-Limit counts over (rateWindow; DNSimple: one hour) */
	pthread_mutex_t mu;  /* guards everything below */
	int open;	     /* the per-run session is set up */
	char *account_id;
	char *auth; /* "Authorization: Bearer …" (secret) */
	struct http_client *http;
	struct dnsimple_list *lists; /* the run's cache: callers only ever get copies */
	size_t n_lists;
	pthread_mutex_t buy_locks[DNSIMPLE_BUY_LOCKS]; /* see dnsimple_order_lock */
	char **acct_zones; /* the account's zone names, listed once per run when no zones are configured */
	size_t n_acct_zones;
	int acct_zones_listed;
};

/* Mapping of a spec onto DNSimple's purchase fields (pure). */
struct dnsimple_order {
	char *domain;
	char *name; /* "www", "api", "*", "" */
	char *common_name;
	char **alt;
	size_t n_alt; /* alternate_names, sorted */
};

/*
 * Maps s onto a DNSimple order within the spec's domain (or the longest of
 * zones that is a suffix of the common name). Returns 0, or CS_EINVALID with
 * a reason in err.
 */
int dnsimple_map(const struct cert_spec *s, char *const *zones, size_t n_zones, struct dnsimple_order *out, char *err,
		 size_t errlen);
void dnsimple_order_free(struct dnsimple_order *o);

/* 1 if c is for exactly the order's common name and alternate names. */
int dnsimple_matches(const struct dnsimple_cert *c, const struct dnsimple_order *o);

/* State classes (2.2). */
int dnsimple_state_terminal(const char *state);

struct issuer;
struct state_cert;
/*
 * state import: makes rec (a new record of spec) resume at "await" with the
 * existing DNSimple certificate id: the next apply asks DNSimple for it,
 * downloads it once issued and installs it after the usual checks against
 * the manifest. Nothing is purchased. CS_EINVALID when spec cannot be
 * ordered from this issuer's zones.
 */
int dnsimple_import(const struct issuer *is, const struct cert_spec *spec, struct state_cert *rec, long long id);
int dnsimple_state_pending(const char *state);

/* ---------- API (dnsimple_api.c) ---------- */

/* Opens the run's session: reads the credentials, creates the HTTP client. */
int dnsimple_session(struct dnsimple *d);
void dnsimple_session_end(struct dnsimple *d);

/*
 * The certificates of domain for order o (dnsimple_matches; all of them
 * when o is NULL), newest first, from the run's cache (all pages, listed at
 * the first look) unless fresh or the cache is stale. *out is the caller's
 * own copy (free it with dnsimple_list_clear): another worker refreshing
 * the cache never changes it.
 */
int dnsimple_list_certs(struct dnsimple *d, const char *domain, const struct dnsimple_order *o, int fresh,
			struct dnsimple_list *out);
void dnsimple_list_clear(struct dnsimple_list *l);

/*
 * After a purchase for o: ok with the new certificate's id joins the
 * cache (state "new"), so a later look-then-buy for the same names adopts
 * it; !ok (the purchase may or may not have landed) makes the cache stale.
 */
void dnsimple_list_bought(struct dnsimple *d, const struct dnsimple_order *o, int ok, long long id);

/*
 * The lock held while a worker looks for a certificate for o and buys one
 * if there is none: the same for every order dnsimple_matches the same
 * certificates, so two workers never both buy them.
 */
pthread_mutex_t *dnsimple_order_lock(struct dnsimple *d, const struct dnsimple_order *o);
int dnsimple_get_cert(struct dnsimple *d, const char *domain, long long id, struct dnsimple_cert *out);
int dnsimple_purchase(struct dnsimple *d, const struct dnsimple_order *o, int auto_renew, long long *cert_id);
int dnsimple_issue(struct dnsimple *d, const char *domain, long long id, struct dnsimple_cert *out);
int dnsimple_renew_purchase(struct dnsimple *d, const char *domain, long long old_id, int auto_renew,
			    long long *renewal_id, long long *new_id);
int dnsimple_renew_issue(struct dnsimple *d, const char *domain, long long old_id, long long renewal_id,
			 struct dnsimple_cert *out);
/* Downloads the chain and the key into m (cert = server + chain, ca = root or the chain's top). */
int dnsimple_download(struct dnsimple *d, const char *domain, long long id, struct material *m);

/*
 * GETs a paginated list (path relative to /v2/, per_page=100&page=N added)
 * page by page, at most DNSIMPLE_MAX_PAGES, calling item for each element
 * of "data" (a jansson json_t *). item returns 0 to go on, 1 to stop, or a
 * negative code to stop with it.
 */
int dnsimple_list_pages(struct dnsimple *d, const char *op, const char *path, int (*item)(const void *json, void *arg),
			void *arg);

/* ---------- zones (dnsimple_zones.c) ---------- */

/*
 * The zone (caller frees) that holds fqdn: the longest configured zone
 * containing it; with no zones configured, the longest of the account's
 * zones (GET /v2/{account}/zones, listed once per run). CS_ENOTFOUND
 * naming fqdn (class config) when none does.
 */
int dnsimple_zone_of(struct dnsimple *d, const char *fqdn, char **zone);

/* dns_driver.zone_for. */
int dnsimple_dns_zone_for(const struct issuer *is, const char *fqdn, char **zone);

/* Zone records (the DNS driver). */
int dnsimple_txt_create(const struct issuer *is, const char *fqdn, const char *value, char **ref);
int dnsimple_txt_delete(const struct issuer *is, const char *fqdn, const char *value, const char *ref);

/* Webhooks. */
int dnsimple_webhook(const struct issuer *is, const char *body, size_t len, struct state *st,
		     struct webhook_result *out);
/* Makes sure the account has a webhook for url (list, create if missing; warn if suppressed). */
int dnsimple_ensure_webhook(const struct issuer *is, const char *url);

/*
 * The text of a DNSimple error body: the message, then every message of
 * every field ("Validation failed: content: can't be blank, is too short;
 * ttl: is not a number"), cut with "…" to fit n.
 */
void dnsimple_error_text(const char *body, size_t len, char *out, size_t n);

/* GET /v2/whoami: the account id (0 for a user token) and a label (account name or "user EMAIL"). */
int dnsimple_whoami(struct dnsimple *d, long long *account_id, char *label, size_t label_len);

/* provider_ops.check and .account_plan. */
void dnsimple_check(const struct issuer *is, int online, struct provider_check *out);
void dnsimple_account_plan(const struct config *cfg, const struct issuer *is, const struct state *st, char ***lines,
			   size_t *n);

/* Parses a Certificate object (jansson value passed as void* to keep jansson out of headers). */
int dnsimple_parse_cert(const void *json_obj, const char *what, struct dnsimple_cert *out);

#endif
