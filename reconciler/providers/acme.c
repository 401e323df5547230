/*
 * The acme issuer (RFC 8555, docs/acme.md). Steps:
 *
 *   create/replace/renew: prepare → order → authorize → finalize → download → install → cleanup
 *   reinstall: reinstall (from the key store; no request) [→ download → install for older records]
 *
 * Crash safety: the key and CSR are in the key store before the order; the
 * order URL is journaled as soon as newOrder answers (and "ordering" before
 * it is sent, so a lost answer is looked for in the account's orders); every
 * challenge answer is journaled before it is placed; the step "finalize" is
 * journaled before the finalize request, and a resumed finalize reads the
 * order first. ACME certificates are free: no step is paid.
 *
 * The session (account key, account) and validate are acme_session.c; the
 * authorize step and the order's polling acme_authz.c.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "acme.h"

#define LOST_ORDER_LOOKS 50 /* orders of the account read when an order's answer was lost */

/* ---------- plan ---------- */

static const char *const seq_order[] = {"prepare",  "order",   "authorize", "finalize",
					"download", "install", "cleanup",   NULL};
static const char *const seq_reinstall[] = {"reinstall", "download", "install", NULL};

/* "www.example.com: http-01 webroot /var/www/acme; *.example.com: dns-01 via corpdns" */
static void plan_detail(const struct acme *a, const struct cert_spec *s, char *out, size_t n)
{
	out[0] = '\0';
	for (size_t i = 0; s && i < s->n_dns; i++) {
		const struct acme_solver *sv = acme_solver_for(a, s->dns_names[i]);
		char how[256], item[PLAN_DETAIL_MAX];

		if (sv)
			acme_solver_describe(sv, how, sizeof(how));
		else
			snprintf(how, sizeof(how), "no solver");
		snprintf(item, sizeof(item), "%s: %s", s->dns_names[i], how);
		provider_text_append(out, n, "; ", item);
	}
}

static int acme_plan(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
		     const struct state_cert *rec, struct plan_steps *out)
{
	const char *const *seq = kind == CHANGE_REINSTALL ? seq_reinstall : seq_order;
	size_t start = 0;

	memset(out, 0, sizeof(*out));
	if (kind == CHANGE_RESUME && rec) {
		const char *const *seqs[] = {seq_order, seq_reinstall};

		step_resume_point(seqs, 2, rec->step, &seq, &start);
	}
	for (size_t i = start; seq[i] && out->n < PLAN_MAX_STEPS; i++) {
		out->steps[out->n++] = seq[i];
		if (!strcmp(seq[i], "reinstall"))
			break; /* download is only the fallback for records without a key store entry */
	}
	if (seq == seq_order && !(kind == CHANGE_RESUME && start > 2))
		plan_detail(is->priv, s, out->detail, sizeof(out->detail));
	return 0;
}

static int is_status(const char *s, const char *want)
{
	return s && !strcmp(s, want);
}

/* 0 when the pending key and CSR are in the key store, CS_ENOTFOUND when not, CS_ETRANSIENT when it cannot tell. */
static int pending_present(struct step_ctx *ctx)
{
	struct buf b = BUF_INIT;
	int rc = engine_pending_get(ctx, "csr", &b);

	buf_free(&b);
	if (!rc)
		rc = engine_pending_get(ctx, "key", &b);
	buf_wipe(&b);
	return rc;
}

static int remove_pending(struct step_ctx *ctx)
{
	return engine_pending_del(ctx, NULL);
}

/* Forgets the order (a new one follows at the next attempt). */
void acme_order_forget(struct step_ctx *ctx)
{
	state_cert_set_id(ctx->rec, ACME_ID_ORDER, NULL);
	state_cert_set_id(ctx->rec, ACME_ID_CERT, NULL);
	state_cert_set_id(ctx->rec, ACME_ID_POLLS, NULL);
	state_str_set(&ctx->rec->step, "order");
}

/* ---------- steps ---------- */

/*
 * The key for this order: the installed one when rotation is Never and it
 * still fits, else a new one. A revoked certificate's key is never reused
 * (it may be the reason it was revoked, and CAs refuse keys revoked for
 * keyCompromise).
 */
static int order_key(struct step_ctx *ctx, struct crypto_key **out)
{
	const struct cert_spec *s = ctx->spec;
	enum crypto_alg want = s->key_alg == KEYALG_RSA ? CRYPTO_RSA : CRYPTO_ECDSA, alg;
	struct buf kp = BUF_INIT;
	int size, revoked = ctx->rec->serial && util_streq(state_cert_id(ctx->rec, ACME_ID_REVOKED), ctx->rec->serial);

	if (s->rotation == ROTATE_NEVER && !revoked && engine_installed_key(ctx, &kp) == 0 &&
	    crypto_key_from_pem(kp.data, kp.len, "installed key", out) == 0) {
		crypto_key_describe(*out, &alg, &size);
		buf_wipe(&kp);
		if (alg == want && size == s->key_size)
			return 0;
		crypto_key_free(*out);
		*out = NULL;
	}
	buf_wipe(&kp);
	return crypto_key_generate(want, s->key_size, out);
}

static int step_prepare(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	const struct cert_spec *s = ctx->spec;
	struct crypto_key *key = NULL;
	struct buf kp = BUF_INIT, csr = BUF_INIT;
	int rc;

	(void)a;
	(void)c;
	if ((rc = order_key(ctx, &key)) || (rc = crypto_key_to_pem(key, &kp)) ||
	    (rc = crypto_csr_create(key, s->common_name, (const char *const *)s->dns_names, s->n_dns, &csr)))
		goto out;
	/* The key must outlive the order, on any replica: in the key store, never in state. */
	if ((rc = engine_pending_put(ctx, "key", &kp)) || (rc = engine_pending_put(ctx, "csr", &csr)))
		goto out;
	acme_order_forget(ctx);
	state_cert_set_id(ctx->rec, ACME_ID_ORDERING, NULL);
	step_next(ctx, "order", st);
out:
	buf_wipe(&kp);
	buf_free(&csr);
	crypto_key_free(key);
	return rc;
}

/* 1 when the order is for exactly names (as a set, case-insensitive). */
static int same_names(const struct acme_order *o, const struct cert_spec *s)
{
	if (o->n_identifiers != s->n_dns)
		return 0;
	for (size_t i = 0; i < s->n_dns; i++) {
		size_t k = 0;

		while (k < o->n_identifiers && strcasecmp(o->identifiers[k], s->dns_names[i]))
			k++;
		if (k == o->n_identifiers)
			return 0;
	}
	return 1;
}

/*
 * A newOrder whose answer was lost (killed before it was journaled): the
 * account's orders list, newest first, for one still usable with exactly
 * these names. 0 with *url, CS_ENOTFOUND when there is none (or no list).
 */
static int find_lost_order(struct step_ctx *ctx, struct acme_client *c, char **url)
{
	char **urls = NULL;
	size_t n = 0, looked = 0;
	int rc = acme_account_orders(c, &urls, &n);

	if (rc == CS_ENOTFOUND)
		log_emit(LV_INFO, &ctx->log, "the CA keeps no orders list; the lost order expires on its own");
	for (size_t i = n; !rc && i-- > 0 && looked++ < LOST_ORDER_LOOKS;) {
		struct acme_order o;

		memset(&o, 0, sizeof(o));
		if ((rc = acme_order_get(c, urls[i], &o)))
			break;
		if ((is_status(o.status, "pending") || is_status(o.status, "ready") ||
		     is_status(o.status, "processing") || is_status(o.status, "valid")) &&
		    same_names(&o, ctx->spec))
			*url = xstrdup(urls[i]);
		acme_order_free(&o);
		if (*url)
			break;
	}
	if (!rc && !*url)
		rc = CS_ENOTFOUND;
	for (size_t i = 0; i < n; i++)
		free(urls[i]);
	free(urls);
	return rc;
}

/* The step after an order in this status. */
static const char *after_order(const char *status)
{
	if (is_status(status, "pending"))
		return "authorize";
	return "finalize"; /* ready, processing, valid (finalize reads it first), invalid (finalize reports it) */
}

static int adopt_lost_order(struct step_ctx *ctx, struct acme_client *c, enum step_status *st)
{
	char *url = NULL;
	int rc = find_lost_order(ctx, c, &url);

	if (rc)
		return rc;
	log_emit(LV_INFO, &ctx->log, "adopting ACME order %s (its answer was lost) instead of ordering again", url);
	state_cert_event(ctx->rec, ctx->now, "adopted ACME order %s", url);
	state_cert_set_id(ctx->rec, ACME_ID_ORDER, url);
	state_cert_set_id(ctx->rec, ACME_ID_ORDERING, NULL);
	free(url);
	step_next(ctx, "authorize", st);
	return 0;
}

static int step_order(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	const struct cert_spec *s = ctx->spec;
	struct acme_order o;
	char *replaces = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	if (state_cert_id(ctx->rec, ACME_ID_ORDER)) {
		step_next(ctx, "authorize", st);
		return 0;
	}
	if ((rc = pending_present(ctx)) == CS_ENOTFOUND) {
		log_emit(LV_WARN, &ctx->log, "the pending key or CSR is gone; preparing them again");
		step_next(ctx, "prepare", st);
		return 0;
	}
	if (rc)
		return rc;
	if (ctx->rec->n_tokens && acme_solve_remove_all(ctx)) /* a failed order's answers */
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	if (state_cert_id(ctx->rec, ACME_ID_ORDERING) && (rc = adopt_lost_order(ctx, c, st)) != CS_ENOTFOUND)
		return rc;
	/* Write-ahead: a crash before the answer is journaled looks for the order first. */
	state_cert_set_id(ctx->rec, ACME_ID_ORDERING, "1");
	if ((rc = engine_journal(ctx)))
		return rc;
	replaces = acme_ari_replaces(ctx);
	rc = acme_order_new(c, s->dns_names, s->n_dns, a->profile, replaces, &o);
	if (rc)
		goto out;
	state_cert_set_id(ctx->rec, ACME_ID_ORDER, o.url);
	state_cert_set_id(ctx->rec, ACME_ID_ORDERING, NULL);
	state_cert_set_id(ctx->rec, ACME_ID_POLLS, NULL);
	state_cert_event(ctx->rec, ctx->now, "ACME order %s (%s)%s%s", o.url, o.status ? o.status : "?",
			 replaces ? " replacing " : "", replaces ? replaces : "");
	if ((rc = engine_journal(ctx)))
		goto out;
	log_emit(LV_INFO, &ctx->log, "ACME order %s is %s", o.url, o.status ? o.status : "?");
	step_next(ctx, after_order(o.status), st);
out:
	free(replaces);
	acme_order_free(&o);
	return rc;
}

/* ---------- finalize, download, install ---------- */

static int finalize_order(struct step_ctx *ctx, struct acme_client *c, struct acme_order *o)
{
	struct buf pem = BUF_INIT, der = BUF_INIT;
	struct acme_order after;
	int rc;

	memset(&after, 0, sizeof(after));
	if ((rc = engine_pending_get(ctx, "csr", &pem)))
		return rc;
	if ((rc = jose_pem_to_der(pem.data, pem.len, "CERTIFICATE REQUEST", &der)))
		goto out;
	log_emit(LV_INFO, &ctx->log, "finalizing ACME order %s", o->url ? o->url : "");
	rc = acme_order_finalize(c, o, &der, &after);
	if (rc == CS_ECONFLICT) /* orderNotReady right after "ready": the CA's view moved; read it again later */
		rc = cs_error(CS_ETRANSIENT, "%s", cs_errmsg());
	if (rc)
		goto out;
	acme_order_free(o);
	*o = after;
	memset(&after, 0, sizeof(after));
out:
	acme_order_free(&after);
	buf_free(&pem);
	buf_free(&der);
	return rc;
}

/*
 * Reads the order before anything (a resumed finalize may have been sent
 * already): ready → finalize; processing → poll; valid → download;
 * pending → authorize; invalid → a new order at the next attempt.
 */
static int step_finalize(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	struct acme_order o;
	int rc, parked = 0;

	if (!state_cert_id(ctx->rec, ACME_ID_ORDER)) {
		step_next(ctx, "order", st);
		return 0;
	}
	if ((rc = acme_order_read(ctx, c, &o)))
		return rc;
	if (is_status(o.status, "pending")) {
		step_next(ctx, "authorize", st);
		goto out;
	}
	if (is_status(o.status, "ready") && (rc = finalize_order(ctx, c, &o)))
		goto out;
	if ((rc = acme_order_wait(ctx, a, c, "processing", &o, st, &parked)) || parked)
		goto out;
	if (!is_status(o.status, "valid") || !o.certificate) {
		rc = is_status(o.status, "invalid")
			     ? acme_order_invalid(ctx, c, &o)
			     : cs_error(CS_ETRANSIENT, "%s: ACME order %s is %s after finalize", ctx->rec->name,
					o.url ? o.url : "", o.status ? o.status : "without a status");
		goto out;
	}
	state_cert_set_id(ctx->rec, ACME_ID_CERT, o.certificate);
	state_cert_set_id(ctx->rec, ACME_ID_POLLS, NULL);
	step_next(ctx, "download", st);
out:
	acme_order_free(&o);
	return rc;
}

/* Takes the chain into ctx->mat with the pending key (a reinstall: the installed one). */
static int take_material(struct step_ctx *ctx, const struct buf *chain, int reinstall)
{
	int rc;

	material_wipe(&ctx->mat);
	material_init(&ctx->mat);
	if ((rc = crypto_split_chain(chain->data, chain->len, "ACME certificate chain", &ctx->mat.cert, &ctx->mat.ca)))
		return rc;
	rc = engine_pending_get(ctx, "key", &ctx->mat.key);
	if (rc == CS_ENOTFOUND && reinstall)
		rc = engine_installed_key(ctx, &ctx->mat.key);
	if (rc == CS_ENOTFOUND) {
		/* The key is lost (a wiped key store): the certificate is useless; a new order is free. */
		acme_order_forget(ctx);
		state_str_set(&ctx->rec->step, "prepare");
		return cs_error(CS_ETRANSIENT,
				"%s: the private key of the ACME order is gone from the key store; "
				"ordering again",
				ctx->rec->name);
	}
	return rc;
}

static int step_download(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	const char *url = state_cert_id(ctx->rec, ACME_ID_CERT);
	int reinstall = !url;
	struct buf pem = BUF_INIT;
	int rc;

	if (reinstall)
		url = state_cert_id(ctx->rec, ACME_ID_INSTALLED_CERT);
	if (!url) {
		step_next(ctx, state_cert_id(ctx->rec, ACME_ID_ORDER) ? "finalize" : "prepare", st);
		return 0;
	}
	if ((rc = acme_download(c, url, a->preferred_chain, &pem)) || (rc = take_material(ctx, &pem, reinstall)))
		goto out;
	step_next(ctx, "install", st);
out:
	buf_free(&pem);
	return rc;
}

/* An install that fails (a full disk: retried from the key store) must not leave the answers out meanwhile. */
static int install_failed(struct step_ctx *ctx, int rc)
{
	char *msg = xstrdup(cs_errmsg());

	if (ctx->rec->n_tokens && acme_solve_remove_all(ctx))
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	rc = cs_error(rc, "%s", msg);
	free(msg);
	return rc;
}

/* ARI after an install: with the run's session when there is one (never fails the install). */
static void after_install(struct step_ctx *ctx, struct acme *a, const struct buf *cert)
{
	struct acme_client *c = NULL;

	if (acme_session(ctx, a, &c)) {
		log_emit(LV_WARN, &ctx->log, "renewal information not asked: %s", cs_errmsg());
		return;
	}
	acme_ari_after_install(ctx, a, c, cert->data, cert->len);
}

static int step_install(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	struct buf cert = BUF_INIT;
	int rc;

	(void)c;
	if (!material_present(&ctx->mat) && engine_pending_material(ctx)) {
		step_next(ctx, "download", st); /* resumed: the chain was only in memory */
		return 0;
	}
	buf_append(&cert, ctx->mat.cert.data, ctx->mat.cert.len);
	if ((rc = engine_install(ctx))) {
		rc = install_failed(ctx, rc);
		goto out;
	}
	if (state_cert_id(ctx->rec, ACME_ID_CERT))
		state_cert_set_id(ctx->rec, ACME_ID_INSTALLED_CERT, state_cert_id(ctx->rec, ACME_ID_CERT));
	state_cert_set_id(ctx->rec, ACME_ID_ORDER, NULL);
	state_cert_set_id(ctx->rec, ACME_ID_CERT, NULL);
	state_cert_set_id(ctx->rec, ACME_ID_POLLS, NULL);
	after_install(ctx, a, &cert);
	/* The pending key goes only once the record says so (killed in between, cleanup removes it). */
	step_next(ctx, "cleanup", st);
	if ((rc = engine_journal(ctx)))
		goto out;
	remove_pending(ctx); /* a failure here is retried by the cleanup step */
out:
	buf_free(&cert);
	return rc;
}

static int step_cleanup(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	int rc;

	(void)a;
	(void)c;
	if ((rc = remove_pending(ctx)) || (rc = acme_solve_remove_all(ctx)))
		return rc; /* CS_ETRANSIENT: the next apply tries again */
	log_emit(LV_DEBUG, &ctx->log, "removed the challenge answers and the pending key");
	*st = STEP_DONE;
	return 0;
}

/* Lost outputs: the installed certificate and key from the key store, with no request to the CA. */
static int step_reinstall(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st)
{
	(void)a;
	(void)c;
	return step_reinstall_or(ctx, "download", st);
}

typedef int (*acme_step_fn)(struct step_ctx *ctx, struct acme *a, struct acme_client *c, enum step_status *st);

static const struct {
	const char *name;
	acme_step_fn run;
	int needs_session;
} acme_steps[] = {
	{"prepare", step_prepare, 0},	{"order", step_order, 1},	  {"authorize", acme_step_authorize, 1},
	{"finalize", step_finalize, 1}, {"download", step_download, 1},	  {"install", step_install, 0},
	{"cleanup", step_cleanup, 0},	{"reinstall", step_reinstall, 0},
};

static int acme_step(struct step_ctx *ctx, enum step_status *st)
{
	struct acme *a = ctx->issuer->priv;
	const char *step = ctx->rec->step ? ctx->rec->step : "";

	for (size_t i = 0; i < sizeof(acme_steps) / sizeof(acme_steps[0]); i++) {
		struct acme_client *c = NULL;
		int rc;

		if (strcmp(step, acme_steps[i].name))
			continue;
		if (acme_steps[i].needs_session && (rc = acme_session(ctx, a, &c)))
			return rc;
		return acme_steps[i].run(ctx, a, c, st);
	}
	return cs_error(CS_EINVALID, "%s: the acme issuer has no step \"%s\"", ctx->rec->name, step);
}

/*
 * Removal: placed answers and a pending key go too (an open order is left
 * to expire), then the certificate is revoked when revokeOnRemove says so
 * (acme_revoke.c).
 */
static int acme_release(struct step_ctx *ctx)
{
	int rc = acme_solve_remove_all(ctx);

	if (!rc)
		rc = remove_pending(ctx);
	if (!rc)
		rc = acme_revoke_on_remove(ctx, ctx->issuer->priv); /* revokeOnRemove: before the outputs go */
	return rc;
}

static void acme_end_run(const struct issuer *is)
{
	acme_session_end(is->priv);
}

const struct provider_ops provider_acme = {
	.type = "acme",
	.config_parse = acme_config_parse,
	.config_free = acme_config_free,
	.config_check = acme_config_check,
	.check_spec = acme_check_spec,
	.plan = acme_plan,
	.step = acme_step,
	.refresh = NULL, /* an issued order tells nothing new; revocation shows in ARI (acme_ari.c) */
	.release = acme_release,
	.extra_names = NULL,
	.webhook = NULL,
	.dns = NULL,
	.end_run = acme_end_run,
	.check = acme_check,
	.account_plan = NULL,
	.upkeep_due = acme_ari_upkeep_due, /* the renewal information asked again when due */
	.upkeep = acme_ari_upkeep,
};
