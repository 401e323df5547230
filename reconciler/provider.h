/*
 * Provider drivers (DESIGN §4): one table of function pointers per provider
 * type. The engine never compares provider names; it plans through ops->plan
 * and drives a certificate by calling ops->step until the record has no step
 * left. Drivers live in reconciler/providers/<type>.c and are listed in
 * reconciler/providers/registry.c.
 */
#ifndef CS_RECONCILER_PROVIDER_H
#define CS_RECONCILER_PROVIDER_H

#include <stdint.h>

#include "../manifests/manifest.h"
#include "../state/state.h"
#include "../util/buf.h"
#include "../util/diag.h"
#include "../util/log.h"
#include "config.h"
#include "plan/plan.h"

/* Certificate material to install. key is a secret: the engine wipes it. */
struct material {
	struct buf cert; /* leaf + intermediates, PEM */
	struct buf key;	 /* private key, PEM */
	struct buf ca;	 /* issuing CA / root(s), PEM */
};

void material_init(struct material *m);
void material_wipe(struct material *m);
int material_present(const struct material *m);

enum step_status {
	STEP_CONTINUE, /* this step is done; rec->step names the next one */
	STEP_DONE,     /* the change is complete (certificate installed) */
	STEP_WAIT,     /* waiting for the provider; try again at ctx->wait_until */
	STEP__MAX
};

struct engine;

/* Everything a driver's step sees. Only rec and mat are the driver's to change. */
struct step_ctx {
	const struct config *cfg;
	const struct issuer *issuer;
	const struct cert_spec *spec; /* the desired spec (NULL for removals) */
	struct state_cert *rec;	      /* this certificate's record; rec->step is the step to run */
	enum change_kind kind;	      /* the change being applied */
	int64_t now;
	int64_t wait_until;  /* out, with STEP_WAIT */
	struct material mat; /* filled by the driver before calling engine_install() */
	struct log_ctx log;  /* certificate/issuer/step for log_emit */
	/*
	 * Out, with an error: the failure class (STATE_FAIL_*) when the driver
	 * knows better than the code (a 4xx validation refusal, a verification
	 * mismatch). NULL lets the engine derive it from the code.
	 */
	const char *fail_class;
	/*
	 * Out, with STEP_CONTINUE: the step only read (provider GETs, the key
	 * store) and changed nothing outside the record, so running it again
	 * after a crash is harmless: the engine journals the record with the
	 * next step instead of after this one. Cleared before every step.
	 */
	int read_only;
	struct engine *engine;
};

/*
 * A DNS driver: places and removes TXT records for other providers'
 * validation tokens. *ref (caller frees) identifies the record for removal.
 */
struct dns_driver {
	int (*txt_create)(const struct issuer *is, const char *fqdn, const char *value, char **ref);
	int (*txt_delete)(const struct issuer *is, const char *fqdn, const char *value, const char *ref);
	/*
	 * The zone (apex, no trailing dot; caller frees) this driver would place
	 * fqdn's record in: from its configured list, else discovered (the
	 * provider's zone list, or an SOA walk against its server). CS_ENOTFOUND
	 * with a message naming fqdn when it manages no zone holding it. May be
	 * NULL (txt_create finds the zone itself).
	 */
	int (*zone_for)(const struct issuer *is, const char *fqdn, char **zone);
	/*
	 * Servers that answer authoritatively for what this driver writes
	 * ("host:port"), for propagation checks when the solver names none;
	 * NULL or *n == 0: the zone's NS records. May be NULL.
	 */
	void (*check_servers)(const struct issuer *is, char ***out, size_t *n);
};

/* What a webhook delivery asks for: the certificates to reconcile now. */
struct webhook_result {
	int duplicate; /* already seen (request_identifier): nothing to do */
	int ignored;   /* not an event this provider acts on */
	char *event;   /* the event name, for metrics (caller frees) */
	char **names;
	size_t n_names; /* certificate names to reconcile (caller frees) */
};

void webhook_result_free(struct webhook_result *r);

/* What ops->check found for one issuer (validate --credentials/--online). Lines never hold a secret. */
struct provider_check {
	char **problems; /* one line each, naming the issuer and what to fix */
	size_t n_problems;
	char *note; /* when all is well: "account 1010 (Example Account)"; may be NULL */
};

/* An issuer session's rate budget and requests so far (apply's finish estimate). */
struct provider_budget {
	int have;	   /* the provider reported a rate limit */
	long limit;	   /* requests per window */
	long remaining;	   /* left in the current window, requests in flight already taken */
	int64_t reset;	   /* unix seconds: the current window ends */
	int64_t window;	   /* seconds per window */
	long long sent;	   /* requests sent in this session */
	long inflight;	   /* sent and not answered yet */
	int64_t busy_ms;   /* summed duration of the answered requests */
	int64_t waited_ms; /* summed time requests waited for the budget (or a Retry-After) before being sent */
};

struct provider_ops {
	const char *type; /* the `type:` of an issuer in config */

	/* Parses the issuer's config map (everything but `type`). Diagnostics in d; *priv on success. */
	int (*config_parse)(const struct ynode *node, const char *file, const char *name, struct diags *d, void **priv);
	void (*config_free)(void *priv);

	/*
	 * Checks references to other issuers once every issuer is parsed (a DNS
	 * driver named by a validation block). Diagnostics in d. May be NULL.
	 */
	void (*config_check)(const struct config *cfg, const struct issuer *is, const char *file, struct diags *d);

	/* The issuer's own checks on a manifest (domain constraints, wildcard rules). May be NULL. */
	void (*check_spec)(const struct issuer *is, const struct cert_spec *s, struct diags *d);

	/*
	 * The X.509 fields beyond DNS names this issuer can put in a certificate
	 * (1 << XF_*: ipAddresses, uris, emailAddresses, subject, usages, isCA).
	 * validate refuses a manifest asking for any other at the field, before
	 * check_spec (which then never sees such a spec). 0: DNS names only.
	 */
	unsigned x509_fields;

	/* The steps a change takes (pure). */
	int (*plan)(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
		    const struct state_cert *rec, struct plan_steps *out);

	/*
	 * Runs ctx->rec->step. Returns 0 with *status, CS_ETRANSIENT (retried with
	 * backoff) or another code (permanent: the certificate is FAILED). The
	 * error text is set with cs_error() and never holds a secret.
	 */
	int (*step)(struct step_ctx *ctx, enum step_status *status);

	/* Observes a recorded certificate at the provider (plan --refresh). May be NULL. Fills drift->what when
	 * drifted. */
	int (*refresh)(const struct issuer *is, const struct state_cert *rec, int64_t now, struct plan_drift *drift);

	/* Cleans provider-side leftovers (placed tokens) of a record being removed. May be NULL. */
	int (*release)(struct step_ctx *ctx);

	/*
	 * Handles a webhook delivery (body bounded by the caller). Never trusts
	 * the payload's data: it only says which certificates to look at again.
	 * Deduplicates through st. May be NULL.
	 */
	int (*webhook)(const struct issuer *is, const char *body, size_t len, struct state *st,
		       struct webhook_result *out);

	/*
	 * Makes sure the provider account delivers webhooks to url (list, create
	 * if missing; warns when the provider suppressed it). For `certsync run`
	 * with server.publicURL. The url holds the webhook secret: never log it.
	 * May be NULL.
	 */
	int (*ensure_webhook)(const struct issuer *is, const char *url);

	/*
	 * Names the provider's certificate for s may carry beyond s's own (the
	 * apex DNSimple adds to "www"): engine_install accepts a leaf whose SANs
	 * are s's names plus any of these. The caller frees each of the *n
	 * strings and *out. May be NULL (exactly s's names).
	 */
	void (*extra_names)(const struct issuer *is, const struct cert_spec *s, char ***out, size_t *n);

	/* The DNS driver this provider offers to others, or NULL. */
	const struct dns_driver *dns;

	/* Frees per-run resources (HTTP connections, cached lists) at the end of a run. May be NULL. */
	void (*end_run)(const struct issuer *is);

	/*
	 * validate: checks that every credential and file the issuer references
	 * exists with safe modes; with online, also calls the provider's
	 * cheapest authenticated endpoint (never anything that changes or costs).
	 * Without online it opens no socket. May be NULL.
	 */
	void (*check)(const struct issuer *is, int online, struct provider_check *out);

	/*
	 * Account-level side effects that applying changes with this issuer may
	 * cause (apply, or run with cfg's server.publicURL), given what st
	 * records (NULL: nothing recorded), one sentence each appended to
	 * *lines (caller frees): "issuer dc: create an AuthKey for the DigiCert
	 * account (once, if it has none)". Pure. May be NULL.
	 */
	void (*account_plan)(const struct config *cfg, const struct issuer *is, const struct state *st, char ***lines,
			     size_t *n);

	/*
	 * Upkeep of an installed certificate outside any change, which `certsync
	 * run` and `apply` do when its time comes, before they plan
	 * (reconcile_upkeep; ACME: the CA's renewal information asked
	 * again once its Retry-After has passed). upkeep_due: when (unix
	 * seconds), 0 for never; pure. upkeep: does it, changing only rec's ids
	 * (no step, nothing paid, no key store); a failure is logged and the
	 * driver schedules it again. Returns 1 when rec changed. Both may be NULL.
	 */
	int64_t (*upkeep_due)(const struct issuer *is, const struct state_cert *rec);
	int (*upkeep)(const struct issuer *is, struct state_cert *rec, int64_t now);

	/*
	 * For apply's estimate of its finish: requests_left, the provider
	 * requests a change of kind for s still needs from rec's current step
	 * (rec->step; NULL or another sequence's step: from the start), a pure
	 * guess the engine corrects with the requests actually sent; budget, the
	 * session's rate budget and request counts now (all 0 before the
	 * session opens). Both may be NULL (the estimate is then from the
	 * certificates finished so far).
	 */
	int (*requests_left)(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
			     const struct state_cert *rec);
	void (*budget)(const struct issuer *is, struct provider_budget *out);
};

/* The driver for an issuer type, or NULL. */
const struct provider_ops *provider_find(const char *type);

/* "known types: ca, dnsimple, digicert" for messages. */
const char *provider_type_list(void);

/* ---------- reporting helpers for drivers (providers/report.c) ---------- */

/*
 * Records cls (STATE_FAIL_*) as the class of the error just set with
 * cs_error() on this thread and returns code. provider_fail_class_take()
 * gives it back (once) while cs_errmsg() is still that error, else NULL.
 */
int provider_fail(const char *cls, int code);
const char *provider_fail_class_take(void);

/* The class of a provider's HTTP answer: 401/403 config, 429/5xx/transient transient, other 4xx (not 404) rejected. */
int provider_http_fail_class(long status, int code);

/* Logs cs_errmsg() for a failed API call, with the provider's request id (JSON field request_id); quiet: debug. */
void provider_log_failure(const char *issuer, const char *request_id, long status, int quiet);

/* Adds a finding to c (printf-style). */
void provider_check_problem(struct provider_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void provider_check_note(struct provider_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads the credential (env set, file present and 0600-ish, not empty) and adds a problem if it fails. */
void provider_check_cred(struct provider_check *c, const struct cred *cr, const char *what);
void provider_check_free(struct provider_check *c);

/*
 * Appends sep (unless out is empty) and text to out (size n); when it does
 * not fit, out ends in "…" (cut on a UTF-8 character boundary) and later
 * appends are dropped. provider_text_cut marks a full buffer that way.
 */
void provider_text_append(char *out, size_t n, const char *sep, const char *text);
void provider_text_cut(char *out, size_t n);

/* Appends a copy of line to *lines (for ops->account_plan). */
void provider_account_line(char ***lines, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------- engine services for drivers ---------- */

/* Durably records ctx->rec now (write-ahead before a paid request). */
int engine_journal(struct step_ctx *ctx);

/*
 * Verifies ctx->mat against the manifest (SANs as the provider maps them, the
 * key, the dates and the renewal point, the chain to ca.crt with OpenSSL's
 * verifier), keeps it in the key store, then publishes it into the
 * certificate's output directory (fresh directory + atomic symlink swap),
 * records serial, validity, fingerprint and the output signature in ctx->rec,
 * and drops the key store's older entries. Wipes the key.
 * A mismatch is CS_EINVALID with ctx->fail_class = STATE_FAIL_VERIFICATION and
 * nothing installed; a local write failure (full disk, read-only directory) is
 * CS_ETRANSIENT, and the material stays in the key store for the retry
 * (engine_pending_material).
 */
int engine_install(struct step_ctx *ctx);

/*
 * Reinstalls the certificate ctx->rec records (serial and fingerprint) from
 * the key store: no provider request, no new key. 0 when installed;
 * CS_ENOTFOUND when the store lacks it (a record from an older version: the
 * driver falls back to its free download); otherwise engine_install's codes.
 */
int engine_reinstall(struct step_ctx *ctx);

/*
 * For an install step resumed without material in memory: loads into
 * ctx->mat what an earlier attempt of this change put in the key store before
 * publishing failed. CS_ENOTFOUND when there is none (the driver fetches it again).
 */
int engine_pending_material(struct step_ctx *ctx);

/* The record id naming the key store entry an install has stored but not yet published. */
#define ENGINE_ID_KEY_PENDING "keys.pending_serial"

/*
 * Record ids the engine keeps for a failed on-change hook, so that the daemon
 * runs it again with backoff (ENGINE_ID_HOOK_RETRY is "1" while one is owed).
 */
#define ENGINE_ID_HOOK_RETRY "hooks.retry"
#define ENGINE_ID_HOOK_ATTEMPTS "hooks.attempts"
#define ENGINE_ID_HOOK_NEXT "hooks.next_try"

/*
 * Reads the currently installed private key (rotationPolicy: Never): from the
 * key store, else from the outputs. CS_ENOTFOUND if neither has it.
 */
int engine_installed_key(struct step_ctx *ctx, struct buf *out);

/* 1 when the run was asked to stop (a driver waiting in a step gives up with CS_ETRANSIENT). */
int engine_stop_requested(const struct step_ctx *ctx);

/* The 0700 key directory (state.keyDir): the file key store (created on demand). */
const char *engine_key_dir(struct step_ctx *ctx);

/*
 * Pending material of the certificate's order in progress (a key and CSR
 * between order and issuance), kept in the key store (the engine's: shared
 * by replicas on the postgres backend) under a slot name ("key", "csr").
 * get: CS_ENOTFOUND when absent or damaged (a warning is logged);
 * CS_ETRANSIENT when the store cannot be read or written now (never treat
 * that as "gone"). del: NULL slot removes them all; absent is success.
 */
int engine_pending_put(struct step_ctx *ctx, const char *slot, const struct buf *data);
int engine_pending_get(struct step_ctx *ctx, const char *slot, struct buf *out);
int engine_pending_del(struct step_ctx *ctx, const char *slot);

/*
 * Issuer-wide secret material (an ACME account key), in the same key store
 * under the entry ENGINE_ISSUER_ENTRY + ctx->issuer->name (no certificate
 * name starts with '_'), slot as above. Same codes as engine_pending_*.
 * Callers serialise generation themselves (one account key per issuer).
 */
#define ENGINE_ISSUER_ENTRY "_issuer."
int engine_issuer_secret_put(struct step_ctx *ctx, const char *slot, const struct buf *data);
int engine_issuer_secret_get(struct step_ctx *ctx, const char *slot, struct buf *out);

/* ---------- step helpers for drivers (providers/steps.c) ---------- */

/* A numeric provider id recorded under key (0 when absent); setting 0 removes it. */
long long step_id_num(const struct state_cert *rec, const char *key);
void step_set_id_num(struct state_cert *rec, const char *key, long long v);

/*
 * Where a resumed change picks up: the first of the n NULL-terminated step
 * sequences that holds step sets *seq and *start (its index there); when
 * none does (or step is NULL), *seq is left as it is and *start is 0.
 */
void step_resume_point(const char *const *const *seqs, size_t n, const char *step, const char *const **seq,
		       size_t *start);

/* This step is done: rec->step becomes step. */
void step_next(struct step_ctx *ctx, const char *step, enum step_status *st);

/*
 * Asks to be called again later: min × 2^polls, capped at max, where polls
 * (counted under polls_key in the record) is how often it was asked before.
 */
void step_poll_later(struct step_ctx *ctx, const char *polls_key, int64_t min, int64_t max, enum step_status *st);

/*
 * The reinstall step of a driver: the recorded certificate and key from the
 * key store (no provider request, STEP_DONE), or, for a record the store
 * lacks (an older certsync), on to the step named fallback (a free download).
 */
int step_reinstall_or(struct step_ctx *ctx, const char *fallback, enum step_status *st);

/*
 * The in-flight rule for a paid request (docs/architecture.md, "Crash
 * safety"). The intent's landing time is recorded under prefix.lands_by
 * (e.g. "dnsimple.intent.lands_by").
 *
 * - step_intent_begin(), journaled with the write-ahead intent before the
 *   request is sent: the request either lands at the provider or can never
 *   land by now + timeout (the client's whole-request limit) + the settle
 *   margin (step_intent_settle: the timeout again, at least STEP_SETTLE_MIN).
 * - step_intent_wait(), before recovery looks: sleeps until that time (0), or
 *   returns CS_ETRANSIENT when a stop is requested meanwhile.
 * - The driver then looks up by the idempotency id; only when a second look,
 *   made a settle margin after a first empty one, finds nothing either may
 *   it send the request again. One empty answer never buys twice.
 * - step_intent_clear() once the outcome is known.
 */
#define STEP_SETTLE_MIN 2
int64_t step_intent_settle(int64_t timeout);
void step_intent_begin(struct step_ctx *ctx, const char *prefix, int64_t timeout);
int step_intent_wait(struct step_ctx *ctx, const char *prefix, int64_t timeout);
void step_intent_clear(struct step_ctx *ctx, const char *prefix);
/*
 * Around the paid request (ctx NULL removes it): when the HTTP client sends
 * it again after a wait (429, a connection not made, a spent rate-limit
 * budget), the landing time is journaled anew from that send first.
 */
void step_intent_send_hook(struct step_ctx *ctx, const char *prefix, int64_t timeout);

/*
 * Removes the placed validation tokens [0, upto) of ctx->rec, last first,
 * with remove(ctx, token, arg); a token whose removal fails stays in the
 * record for a later retry, and the first failure is the CS_ETRANSIENT
 * message "<name>: could not remove <what> (kept in state, retried): …".
 */
int step_remove_tokens(struct step_ctx *ctx, size_t upto,
		       int (*remove)(struct step_ctx *, const struct state_token *, void *), void *arg,
		       const char *what);

/* Sleeps until when (unix seconds), in short slices; CS_ETRANSIENT when a stop is requested. */
int step_sleep_until(struct step_ctx *ctx, int64_t when);

#endif
