/*
 * The DigiCert driver's private interface (shared by digicert*.c):
 * CertCentral immediate DV issuance with AuthKey request tokens
 * (../shared/api/digicert.md). Token maths in digicert_token.c, API calls
 * and their pure body/response helpers in digicert_api.c, token placement
 * in digicert_dcv.c, config and steps in digicert.c.
 */
#ifndef CS_RECONCILER_PROVIDERS_DIGICERT_H
#define CS_RECONCILER_PROVIDERS_DIGICERT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../../util/buf.h"
#include "../config.h"
#include "../provider.h"

#define DIGICERT_TS_LEN 14 /* yyyyMMddHHmmss */
#define DIGICERT_B36_LEN 50
#define DIGICERT_TOKEN_LEN (DIGICERT_TS_LEN + DIGICERT_B36_LEN)

#define DIGICERT_US_URL "https://www.digicert.com/services/v2"
#define DIGICERT_EU_URL "https://certcentral.digicert.eu/services/v2"
#define DIGICERT_TOKEN_MAX_AGE (25 * 86400) /* regenerate before the 30-day validity ends */
#define DIGICERT_TOKEN_MARGIN 60	    /* stamp tokens a little in the past (clock skew) */

/* UTC timestamp "yyyyMMddHHmmss" of t (unix seconds). */
void digicert_timestamp(int64_t t, char out[DIGICERT_TS_LEN + 1]);

/*
 * The request token: timestamp + lowercase base36(HMAC-SHA256(key = AuthKey,
 * msg = timestamp ‖ CSR)) left-padded with '0' to 50 characters. csr must be
 * exactly the string sent as certificate.csr in the order.
 */
void digicert_request_token(const char *auth_key, size_t key_len, const char ts[DIGICERT_TS_LEN], const char *csr,
			    size_t csr_len, char out[DIGICERT_TOKEN_LEN + 1]);

/* Writes a 32-byte big-endian unsigned integer in base 36, left-padded with '0' to 50 digits. */
void digicert_base36(const unsigned char mac[32], char out[DIGICERT_B36_LEN + 1]);

/*
 * The token's timestamp as unix seconds (0 if the token is malformed), to
 * decide when a placed token must be regenerated (older than 25 days; valid 30).
 */
int64_t digicert_token_time(const char *token);

/* ---------- the issuer ---------- */

enum digicert_method { DC_DNS_TXT, DC_HTTP, DC_METHOD__MAX };

struct digicert {
	char *name; /* issuer name */
	struct cred api_key;
	char *base_url; /* ".../services/v2", no trailing slash */
	char *ca_file;
	char *product;
	int validity_years; /* orderValidity in years (1-3), or 0 when days is used */
	int validity_days;
	char *signature_hash;
	int skip_approval;
	char *payment_method; /* NULL = account default */
	enum digicert_method method;
	char *dns_issuer; /* validation.dns: a configured issuer offering a DNS driver */
	int dns_line, dns_col;
	int dnsauth_label; /* validation.label: 1 = "_dnsauth", 0 = "@" */
	char *webroot;	   /* validation.webroot; "{host}" is replaced by the name */
	int64_t poll_min, poll_max;
	int64_t timeout;
	pthread_mutex_t mu; /* guards the session below */
	int open;
	char *devkey; /* "X-DC-DEVKEY: …" (secret) */
	struct http_client *http;
	char *auth_key; /* the AuthKey (secret): memory only, for this run */
	char *auth_key_id;
	int auth_key_select;	 /* send auth_key_id in orders (several keys, none permanent) */
	pthread_mutex_t file_mu; /* serialises fileauth.txt edits between workers */
};

/* ---------- config (digicert_config.c) ---------- */

/* provider_ops.config_parse / config_free / config_check / check_spec of the digicert type. */
int digicert_config_parse(const struct ynode *node, const char *file, const char *name, struct diags *d, void **priv);
void digicert_config_free(void *priv);
void digicert_config_check(const struct config *cfg, const struct issuer *is, const char *file, struct diags *d);
void digicert_check_spec(const struct issuer *is, const struct cert_spec *s, struct diags *d);

/* The method for a certificate: spec.validation.method, else the issuer's. */
enum digicert_method digicert_spec_method(const struct digicert *dc, const struct cert_spec *s);
/* "dns-txt-token" / "http-token". */
const char *digicert_method_name(enum digicert_method m);

/* What an order is for (pure input to the body builder). */
struct digicert_order_req {
	const char *product;
	const char *common_name;
	char *const *dns_names; /* every name, the common name included (it is left out of dns_names) */
	size_t n_dns;
	const char *csr;
	const char *dcv_method;		  /* "dns-txt-token" / "http-token" */
	const char *alternative_order_id; /* write-ahead idempotency id */
	long long renewal_of;		  /* 0 = not a renewal */
	const char *auth_key_id;	  /* NULL = the account's permanent key */
};

/* An order as the API describes it (create reply, order info, list entry, check-dcv). */
struct digicert_order {
	long long id;
	long long certificate_id;
	char *status; /* NULL when the reply has none (create) */
	char *chain;  /* certificate_chain PEMs joined, NULL when absent or empty */
};

void digicert_order_clear(struct digicert_order *o);

/* The JSON body of POST /order/certificate/{product} (§5.2). Caller frees. */
char *digicert_order_body(const struct digicert *dc, const struct digicert_order_req *r);

/*
 * Parses a 201 order reply, an order info or a check-dcv answer (order_status).
 * CS_ETRANSIENT with a message naming `what` if there is no usable id.
 */
int digicert_parse_order(const char *body, size_t len, const char *what, struct digicert_order *out);

/*
 * From a list-orders reply, the order whose alternative_order_id is alt (or,
 * if the list carries no such field, the first order: the list was filtered
 * by it). CS_ENOTFOUND if none.
 */
int digicert_parse_order_list(const char *body, size_t len, const char *alt, struct digicert_order *out);

/*
 * The first error of an {"errors":[{code,message}]} body: code and message
 * (empty when absent). Returns 1 if there was one.
 */
int digicert_error_first(const char *body, size_t len, char *code, size_t code_len, char *msg, size_t msg_len);

/*
 * Every error of an {"errors":[{code,message}]} body, "code: message; code:
 * message", cut with "…" to fit n ("no error code in the answer" if none).
 */
void digicert_error_text(const char *body, size_t len, char *out, size_t n);

/* 1 if code's part before '|' is base ("not_found|order" is "not_found"). */
int digicert_code_is(const char *code, const char *base);

/*
 * Maps a non-2xx answer to a code with a message naming the issuer, the
 * operation, the HTTP status and every error code and message of the body:
 * 401/403 CS_EAUTH, 404 CS_ENOTFOUND, 429/5xx CS_ETRANSIENT, other 4xx
 * CS_EINVALID. Records the failure class (provider_http_fail_class).
 */
int digicert_fail(const char *issuer, const char *op, long status, const char *body, size_t len);

/* 1 for the terminal failure statuses (rejected, canceled, revoked, expired). */
int digicert_status_terminal(const char *status);

/*
 * Splits PEM certificates into tls.crt (leaf + intermediates) and ca.crt
 * (the self-signed root(s); the top of the chain when there is no root).
 */
int digicert_split_chain(const char *pem, size_t len, struct buf *cert, struct buf *ca);

/* ---------- API calls (digicert_api.c) ---------- */

/* Opens the run's session: reads the API key, creates the HTTP client. */
int digicert_session(struct digicert *dc);
void digicert_session_end(struct digicert *dc);

/* Finds (GET /account/auth-keys) or creates the AuthKey, once per run; kept in dc (memory only). */
int digicert_auth_key(struct digicert *dc);

int digicert_order_create(struct digicert *dc, const struct digicert_order_req *r, struct digicert_order *out);
int digicert_order_info(struct digicert *dc, long long id, struct digicert_order *out);
/* CS_ENOTFOUND when no order carries alt. */
int digicert_order_find(struct digicert *dc, const char *alt, struct digicert_order *out);
/* PUT check-dcv: 0 with out->status, 1 when DigiCert does not see the token yet (400), or an error. */
int digicert_check_dcv(struct digicert *dc, long long id, struct digicert_order *out);
/* The certificate as pem_all, into cert (leaf + intermediates) and ca (root). */
int digicert_download(struct digicert *dc, long long certificate_id, struct buf *cert, struct buf *ca);

/* GET user/me: a label naming the API key's user, account and container. */
int digicert_user_me(struct digicert *dc, char *label, size_t label_len);

/* provider_ops.check and .account_plan. */
void digicert_check(const struct issuer *is, int online, struct provider_check *out);
void digicert_account_plan(const struct config *cfg, const struct issuer *is, const struct state *st, char ***lines,
			   size_t *n);

/*
 * state import of an existing order (digicert.c): asks DigiCert for order
 * order_id and requires that it is issued and that its certificate is the
 * one imported from dir (serial and SHA-256 fingerprint, lowercase hex);
 * then records it in rec as the installed order, so a renewal sends
 * renewal_of_order_id. A 404 is CS_ENOTFOUND naming the id; a mismatch names
 * the field. Opens and ends the issuer's session.
 */
int digicert_import(const struct issuer *is, struct state_cert *rec, long long order_id, const char *dir,
		    const char *serial, const char *fingerprint);

/* ---------- token placement (digicert_dcv.c) ---------- */

/* Where the token for name goes: TXT owner name or fileauth.txt path. Caller frees. */
char *digicert_dcv_location(const struct digicert *dc, enum digicert_method m, const char *name);

/* Places token for name; fills t (strings owned by t: free with digicert_token_clear). */
/*
 * The state record of a token about to be placed (write-ahead): method,
 * name, location, DNS issuer, and as ref the value to find it by
 * (DIGICERT_REF_INTENT + token for a TXT record, the line for fileauth.txt).
 */
#define DIGICERT_REF_INTENT "value:"
int digicert_ref_is_intent(const char *ref);
int digicert_dcv_intent(struct step_ctx *ctx, struct digicert *dc, enum digicert_method m, const char *name,
			const char *token, struct state_token *t);
/* Places the token journaled as t; *ref (caller frees) is what removes it again (zone record id, line). */
int digicert_dcv_place(struct step_ctx *ctx, struct digicert *dc, const struct state_token *t, const char *token,
		       char **ref);
/* Removes a placed token (missing is success). */
int digicert_dcv_remove(struct step_ctx *ctx, struct digicert *dc, const struct state_token *t, const char *token);
void digicert_token_clear(struct state_token *t);

#endif
