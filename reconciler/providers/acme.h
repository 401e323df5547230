/*
 * The ACME driver's private interface (RFC 8555, RFC 9773 ARI), shared by
 * acme*.c. The protocol client (directory, nonce pool, signed requests,
 * problem documents, account, orders, authorizations, challenges, finalize,
 * download, revocation, renewal information) is acme_client.c (with
 * acme_order.c, acme_client_ari.c and the wire parsing acme_wire.c) and
 * acme_problem.c; JWS and keys are util/jose.c. The issuer's config is
 * acme_config.c, the steps acme.c, challenge solvers acme_solve.c, ARI and
 * revocation acme_ari.c. docs/acme.md is the user-facing contract.
 */
#ifndef CS_RECONCILER_PROVIDERS_ACME_H
#define CS_RECONCILER_PROVIDERS_ACME_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/http.h"
#include "../config.h"
#include "../provider.h"

#define ACME_MAX_NONCES 32	/* the pool keeps at most this many unused nonces */
#define ACME_BADNONCE_RETRIES 5 /* a request rejected with badNonce is signed again with a fresh nonce */
#define ACME_MAX_AUTHZ 100	/* identifiers (and so authorizations) per order */
#define ACME_MAX_ALTERNATES 8	/* Link rel="alternate" chains followed */
#define ACME_MAX_SUBPROBLEMS 32
#define ACME_PROBLEM_PREFIX "urn:ietf:params:acme:error:"

/* ---------- problem documents (acme_problem.c) ---------- */

struct acme_problem {
	char *type;	  /* the whole URN ("urn:ietf:params:acme:error:rateLimited"), or the server's own type */
	char *detail;	  /* may be NULL */
	long status;	  /* the HTTP status (or the document's "status") */
	char *identifier; /* a subproblem's identifier value ("www.example.com"), else NULL */
	struct acme_problem *sub;
	size_t n_sub;
};

/* Parses an application/problem+json body (bounded, untrusted). CS_EINVALID when it is not one. */
int acme_problem_parse(const char *body, size_t len, long status, struct acme_problem *out);
void acme_problem_free(struct acme_problem *p);

/* The type's short name ("rateLimited") for an ACME URN, else the whole type. */
const char *acme_problem_short(const struct acme_problem *p);

/* 1 when p's type is ACME_PROBLEM_PREFIX + name. */
int acme_problem_is(const struct acme_problem *p, const char *name);

/*
 * The whole problem as one line, subproblems included, cut with "…" to fit
 * n: "rejectedIdentifier (400): Error creating new order :: … [www.x.test:
 * caa: CAA record forbids issuance]".
 */
void acme_problem_text(const struct acme_problem *p, char *out, size_t n);

/*
 * The failure class (STATE_FAIL_*) and code of a problem: rateLimited,
 * serverInternal, badNonce, connection, dns, timeout-like and 5xx are
 * STATE_FAIL_TRANSIENT/CS_ETRANSIENT; rejectedIdentifier, caa, badCSR,
 * unsupportedIdentifier, invalid wildcard use are STATE_FAIL_REJECTED/
 * CS_EINVALID (the manifest asks for what the CA will not issue);
 * unauthorized, accountDoesNotExist, externalAccountRequired,
 * userActionRequired, badPublicKey, badSignatureAlgorithm are
 * STATE_FAIL_CONFIG/CS_EAUTH. A failed challenge's own problem (dns,
 * connection, unauthorized, incorrectResponse) is transient: the solver's
 * record may not have been visible yet.
 */
int acme_problem_class(const struct acme_problem *p, const char **fail_class);
/*
 * The same for a challenge's own error (challenge.error, or the order's
 * error after a failed authorization): there dns, connection, tls,
 * unauthorized and incorrectResponse are STATE_FAIL_TRANSIENT/CS_ETRANSIENT
 * (the solver's record may not have been visible yet); everything else as
 * acme_problem_class (caa stays a manifest problem).
 */
int acme_challenge_problem_class(const struct acme_problem *p, const char **fail_class);

/* ---------- the protocol client (acme_client.c) ---------- */

struct acme_directory {
	char *new_nonce, *new_account, *new_order, *revoke_cert, *key_change;
	char *renewal_info; /* RFC 9773, NULL when the server has none */
	char *terms_of_service;
	int eab_required; /* meta.externalAccountRequired */
	char **profiles;  /* meta.profiles names (draft-aaron-acme-profiles), may be empty */
	size_t n_profiles;
	char **caa_identities;
	size_t n_caa_identities;
};

struct acme_client_opts {
	const char *issuer;	/* the issuer's name, in every message */
	const char *directory;	/* the directory URL */
	const char *ca_file;	/* extra trust for the server (PEM), NULL = system */
	int64_t timeout;	/* whole-request limit, seconds */
	const char *user_agent; /* "certsync/<version>" */
};

/*
 * One client per issuer per run, shared by every worker (thread-safe): the
 * HTTP client, the directory (fetched once, on first use), the nonce pool,
 * and the account (key and URL) once acme_client_account() succeeded.
 */
struct acme_client;

int acme_client_new(const struct acme_client_opts *o, struct acme_client **out);
void acme_client_free(struct acme_client *c);

/* The directory (fetched on first call). The pointer stays valid until acme_client_free. */
int acme_client_directory(struct acme_client *c, const struct acme_directory **out);

struct acme_account_req {
	const struct crypto_key *key; /* the account key (the client keeps a reference until freed) */
	const char *email;	      /* NULL: no contact */
	int terms_agreed;	      /* termsOfServiceAgreed */
	int only_existing;	      /* onlyReturnExisting: look up, never create */
	const char *eab_kid;	      /* external account binding, NULL when none */
	const struct buf *eab_hmac;   /* its key, base64url-decoded (a secret) */
};

/*
 * newAccount: registers the key or finds its account (200 and 201 both
 * succeed), and makes it the client's account for every later request
 * (kid). *url (caller frees, may be NULL) gets the account URL. A directory
 * that requires EAB when none is configured, or terms not agreed, is
 * CS_EINVALID with STATE_FAIL_CONFIG and a message naming the setting.
 */
int acme_client_account(struct acme_client *c, const struct acme_account_req *r, char **url);

/* The account key's thumbprint (after acme_client_account). */
const char *acme_client_thumbprint(const struct acme_client *c);

/*
 * A signed POST with the account's kid (payload NULL: POST-as-GET), with
 * badNonce retried up to ACME_BADNONCE_RETRIES times on a fresh nonce and
 * the Replay-Nonce of every answer kept in the pool. 0 when a 2xx arrived
 * (res filled: the caller frees it); otherwise the problem document is
 * turned into an error (cs_error text with the operation, the URL path and
 * acme_problem_text; the class recorded with provider_fail), and when prob
 * is not NULL it gets the problem (caller frees). accept NULL means
 * application/json. On an error res keeps only status and retry_after
 * (its body and headers are freed; http_response_free again is harmless).
 */
int acme_client_post(struct acme_client *c, const char *op, const char *url, const char *payload, const char *accept,
		     struct http_response *res, struct acme_problem *prob);

struct acme_order {
	char *url; /* the order URL (Location of newOrder) */
	char *status;
	int64_t expires;
	char **identifiers; /* dns values, as the server lists them */
	size_t n_identifiers;
	char **authorizations; /* URLs */
	size_t n_authorizations;
	char *finalize;
	char *certificate; /* once valid */
	char *replaces;	   /* ARI */
	char *profile;
	struct acme_problem error; /* the order's error (type NULL when none) */
	int64_t retry_after;	   /* absolute, 0 when the answer had none */
};

void acme_order_free(struct acme_order *o);

/*
 * newOrder for names (dns identifiers; a "*." name as is), with profile and
 * replaces (an ARI certificate id) when not NULL. Fills out with out->url.
 */
int acme_order_new(struct acme_client *c, char *const *names, size_t n, const char *profile, const char *replaces,
		   struct acme_order *out);
/* POST-as-GET of an order. */
int acme_order_get(struct acme_client *c, const char *url, struct acme_order *out);
/*
 * finalize with the CSR (DER). out gets the order as answered (processing
 * or valid). An orderNotReady answer is returned as CS_ECONFLICT with the
 * problem in the message (the caller reads the order again).
 */
int acme_order_finalize(struct acme_client *c, const struct acme_order *o, const struct buf *csr_der,
			struct acme_order *out);
/*
 * The account's orders list (RFC 8555 §7.1.2.1), every page, for crash
 * recovery of a newOrder whose answer was lost: CS_ENOTFOUND when the
 * server gives no orders URL. *urls (caller frees each and the array).
 */
int acme_account_orders(struct acme_client *c, char ***urls, size_t *n);

struct acme_challenge {
	char *type; /* "http-01", "dns-01", "tls-alpn-01", … */
	char *url;
	char *token;
	char *status;
	struct acme_problem error;
};

struct acme_authz {
	char *identifier; /* the dns value (without "*." for a wildcard) */
	int wildcard;
	char *status; /* pending, valid, invalid, deactivated, expired, revoked */
	int64_t expires;
	struct acme_challenge *challenges;
	size_t n_challenges;
	int64_t retry_after; /* absolute, 0 when none */
};

void acme_authz_free(struct acme_authz *a);
int acme_authz_get(struct acme_client *c, const char *url, struct acme_authz *out);
/* Tells the server the challenge is ready (POST {}). out gets the challenge as answered (may be NULL). */
int acme_challenge_respond(struct acme_client *c, const char *url, struct acme_challenge *out);
void acme_challenge_free(struct acme_challenge *ch);

/*
 * Downloads the certificate chain (Accept: application/pem-certificate-chain).
 * When preferred (an issuer common name) is not NULL, also follows the
 * Link rel="alternate" chains (at most ACME_MAX_ALTERNATES) and picks the
 * first whose topmost certificate's issuer CN is preferred, else the
 * default. pem gets the whole chain (leaf first).
 */
int acme_download(struct acme_client *c, const char *cert_url, const char *preferred, struct buf *pem);

/* RFC 8555 §7.6 revocation signed by the account key; reason is the CRL reason code (0 unspecified, 1 keyCompromise,
 * …). */
int acme_revoke(struct acme_client *c, const char *cert_pem, size_t len, int reason);

/* ---------- ARI (RFC 9773) ---------- */

/*
 * The certificate's ARI id: base64url(authorityKeyIdentifier keyIdentifier)
 * "." base64url(serial number DER content octets). Caller frees.
 * CS_EINVALID when the certificate has no AKI.
 */
int acme_ari_cert_id(const char *cert_pem, size_t len, char **out);

struct acme_renewal_info {
	int64_t start, end;  /* suggestedWindow */
	char *explanation;   /* explanationURL, may be NULL */
	int64_t retry_after; /* absolute: when to ask again (Retry-After, clamped to [1 min, 1 day]) */
};

/* GET renewalInfo/<id> (unauthenticated). CS_ENOTFOUND when the directory has no renewalInfo. */
int acme_ari_get(struct acme_client *c, const char *cert_id, struct acme_renewal_info *out);
void acme_renewal_info_free(struct acme_renewal_info *r);

/* ---------- the issuer's config (acme_config.c) ---------- */

enum acme_solver_kind { ACME_HTTP01_WEBROOT, ACME_HTTP01_SERVE, ACME_DNS01 };

struct acme_solver {
	enum acme_solver_kind kind;
	char *webroot;	    /* http01.webroot ("{host}" replaced by the name) */
	char *dns_provider; /* dns01.provider: an issuer offering a DNS driver */
	char **resolvers;   /* dns01.resolvers "host[:port]" (default: /etc/resolv.conf) */
	size_t n_resolvers;
	char **nameservers; /* dns01.propagation.nameservers: check these instead of the zone's NS */
	size_t n_nameservers;
	int64_t propagation_timeout;  /* dns01.propagation.timeout, default 120 s; 0 = do not wait */
	int64_t propagation_interval; /* dns01.propagation.interval, default 2 s */
	char **match_names;	      /* match.dnsNames (exact, "*.x" matches the wildcard name itself) */
	size_t n_match_names;
	char **match_zones; /* match.dnsZones (the name or any name under it) */
	size_t n_match_zones;
	int line, col; /* of the solver in the config file */
};

struct acme {
	char *name; /* issuer name */
	char *directory;
	char *email;
	int terms_agreed;
	char *ca_file;
	char *eab_kid;
	struct cred eab_hmac;
	char *profile;
	char *preferred_chain;
	enum crypto_alg account_alg; /* accountKey.algorithm, default ECDSA */
	int account_size;	     /* accountKey.size, default 256 */
	int64_t timeout;	     /* HTTP whole-request limit, default 60 s */
	int64_t poll_max;	     /* longest wait between polls, default 10 s */
	int revoke_on_remove;	     /* revokeOnRemove: 1/0, or -1 when not set (policy.revokeOnRemove decides) */
	struct acme_solver *solvers;
	size_t n_solvers;
	pthread_mutex_t mu;	    /* guards the session below */
	struct acme_client *client; /* this run's client, account registered; NULL until first use */
	struct crypto_key *account_key;
};

int acme_config_parse(const struct ynode *node, const char *file, const char *name, struct diags *d, void **priv);
void acme_config_free(void *priv);
void acme_config_check(const struct config *cfg, const struct issuer *is, const char *file, struct diags *d);
/* Wildcards need a dns01 solver; every name must have a solver. */
void acme_check_spec(const struct issuer *is, const struct cert_spec *s, struct diags *d);

/* The first solver whose match covers name (a "*." name as written), or NULL. */
const struct acme_solver *acme_solver_for(const struct acme *a, const char *name);
/* "http-01 webroot /var/www/acme", "http-01 serve", "dns-01 via corpdns": for plans (no secret). */
void acme_solver_describe(const struct acme_solver *s, char *out, size_t n);

/* ---------- the session (acme.c) ---------- */

/*
 * The run's client with the account registered: loads the account key from
 * the key store (engine_issuer_secret_get, slot "account-key"), generating
 * and storing it first when absent (stored before it is ever registered),
 * then newAccount. Once per run per issuer; thread-safe.
 */
int acme_session(struct step_ctx *ctx, struct acme *a, struct acme_client **out);
void acme_session_end(struct acme *a);

/* Where the account key lives, for callers outside a step (certsync revoke): the key store's "_issuer.<name>". */
struct acme_keys {
	int (*get)(void *arg, const char *slot, struct buf *out);	 /* CS_ENOTFOUND when absent */
	int (*put)(void *arg, const char *slot, const struct buf *data); /* NULL: never create an account key */
	void *arg;
};

/*
 * acme_session's core: with k->put NULL, an absent account key is
 * CS_ENOTFOUND ("issuer le has no ACME account in the key store yet") and
 * the account is only looked up (onlyReturnExisting), never created.
 */
int acme_session_with(struct acme *a, const struct acme_keys *k, struct acme_client **out);

/* ---------- the steps (acme.c, acme_authz.c, acme_session.c) ---------- */

/* Record ids of an issuance in progress and of the installed certificate (never secrets). */
#define ACME_ID_ORDER "acme.order"			    /* the order URL, journaled as soon as newOrder answers */
#define ACME_ID_ORDERING "acme.ordering"		    /* "1" while a newOrder is out (its answer not journaled) */
#define ACME_ID_CERT "acme.certificate"			    /* the valid order's certificate URL */
#define ACME_ID_INSTALLED_CERT "acme.installed_certificate" /* the installed certificate's URL (a free download) */
#define ACME_ID_POLLS "acme.polls"			    /* polls of the current wait (the backoff) */

/* Forgets the order in progress: the step becomes "order" (a new order). */
void acme_order_forget(struct step_ctx *ctx);
/* POST-as-GET of the recorded order; a gone order is forgotten (CS_ETRANSIENT: a new order follows). */
int acme_order_read(struct step_ctx *ctx, struct acme_client *c, struct acme_order *o);
/*
 * Polls the order while its status is status: Retry-After honoured, else
 * 250 ms doubling inside the step for up to 3 s, then *parked = 1 with
 * *st = STEP_WAIT (up to pollInterval). *o holds the last answer.
 */
int acme_order_wait(struct step_ctx *ctx, struct acme *a, struct acme_client *c, const char *status,
		    struct acme_order *o, enum step_status *st, int *parked);
/* An invalid order: the failed challenge's problem in full, the order forgotten; the error's code and class. */
int acme_order_invalid(struct step_ctx *ctx, struct acme_client *c, const struct acme_order *o);
/* The authorize step. */
int acme_step_authorize(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st);
/* provider_ops.check (validate --credentials / --online). */
void acme_check(const struct issuer *is, int online, struct provider_check *out);

/* ---------- ARI and revocation (acme_ari.c) ---------- */

/*
 * Record ids of the renewal information of the installed certificate
 * (never secrets): the ARI certificate id, the suggested window, the
 * chosen renewal point inside it and when to ask again (unix seconds).
 * plan_renewal_time honours ACME_ID_ARI_AT when it is earlier than the
 * renewBefore point.
 */
#define ACME_ID_ARI_ID "acme.ari.id"
#define ACME_ID_ARI_START "acme.ari.start"
#define ACME_ID_ARI_END "acme.ari.end"
#define ACME_ID_ARI_AT "acme.ari.at"
#define ACME_ID_ARI_NEXT "acme.ari.next"
/* The ARI id of the certificate a renewal replaces, sent as newOrder's "replaces". */
#define ACME_ID_REPLACES "acme.replaces"

/*
 * After an install (ctx->rec records the new serial; cert_pem is the
 * installed chain): computes the ARI id and, when the directory has
 * renewalInfo, asks for the window and records it. Never fails the install:
 * a failure is logged and asked again later.
 */
void acme_ari_after_install(struct step_ctx *ctx, struct acme *a, struct acme_client *c, const char *cert_pem,
			    size_t len);

/* Before a renewal's newOrder: the id to send as "replaces" (NULL when none; caller frees). */
char *acme_ari_replaces(const struct step_ctx *ctx);

/* ---------- challenge solvers (acme_solve.c) ---------- */

/*
 * The state record of a challenge answer about to be placed (write-ahead;
 * strings owned by t): method "http-01"/"dns-01", name, location (the file
 * under the webroot, "serve", or the TXT owner name with a CNAME at
 * _acme-challenge.<name> followed), issuer (the DNS driver's), ref (the
 * token for http-01; the TXT value for dns-01). placed_at stays 0 until
 * acme_solve_place succeeded. CS_ETRANSIENT for a token that is not
 * base64url (untrusted input from the CA).
 */
int acme_solve_intent(struct step_ctx *ctx, const struct acme_solver *s, const char *name, const char *token,
		      const char *key_authorization, struct state_token *t);

/*
 * Places the answer to one challenge (journaled by the caller in
 * ctx->rec->tokens before this is called: method "http-01"/"dns-01", name,
 * location = file path / TXT FQDN / "serve", issuer = DNS driver): the
 * key authorization file under the webroot, the in-memory answer of the
 * built-in server (acme_http01.h), or the TXT record through the DNS
 * driver. *ref (caller frees) is what removes it again.
 */
int acme_solve_place(struct step_ctx *ctx, const struct acme_solver *s, const struct state_token *t,
		     const char *key_authorization, char **ref);
/* Removes what acme_solve_place placed (missing is success). */
int acme_solve_remove(struct step_ctx *ctx, const struct state_token *t);
/*
 * Removes every answer recorded in ctx->rec->tokens and drops them from the
 * record; those whose removal fails stay recorded (CS_ETRANSIENT naming the
 * first failure) for a later attempt.
 */
int acme_solve_remove_all(struct step_ctx *ctx);
/*
 * For dns-01: waits (bounded by propagation.timeout, sleeping between
 * checks with engine_stop_requested honoured) until every authoritative
 * nameserver answers value at fqdn. CS_ETRANSIENT naming the server that
 * does not, when the time is up.
 */
int acme_solve_wait_dns(struct step_ctx *ctx, const struct acme_solver *s, const char *fqdn, const char *value);

#endif
