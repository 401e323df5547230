/*
 * The digicert issuer: CertCentral DV certificates issued at once against an
 * AuthKey request token (seed 2, ../shared/api/digicert.md). Steps:
 *
 *   create/replace/renew: prepare → place → order (paid, write-ahead) → await → download → install → cleanup
 *   reinstall: reinstall (from the key store; no request) [→ download → install for older records]
 *
 * "find" is the crash recovery of an order: it lists the account's orders by
 * the alternative_order_id journaled before the request and adopts the one
 * it finds instead of ordering again.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "digicert.h"

#define ID_ORDER "digicert.order_id"
#define ID_CERT "digicert.certificate_id"
#define ID_INSTALLED_ORDER "digicert.installed_order_id"
#define ID_INSTALLED_CERT "digicert.installed_certificate_id"
#define ID_INTENT "digicert.alternative_order_id"
#define ID_INTENT_RULE "digicert.intent" /* the in-flight rule's keys (steps.c) */
#define ID_TOKEN "digicert.token"
#define ID_POLLS "digicert.polls"
#define KEY_MAX (64 * 1024)

/* ---------- plan ---------- */

static const char *const seq_order[] = {"prepare", "place", "order", "await", "download", "install", "cleanup", NULL};
static const char *const seq_recover[] = {"find", "await", "download", "install", "cleanup", NULL};
static const char *const seq_reinstall[] = {"reinstall", "download", "install", NULL};

static int digicert_plan(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
			 const struct state_cert *rec, struct plan_steps *out)
{
	const struct digicert *dc = is->priv;
	const char *const *seq = kind == CHANGE_REINSTALL ? seq_reinstall : seq_order;
	size_t start = 0;

	(void)s;
	memset(out, 0, sizeof(*out));
	if (kind == CHANGE_RESUME && rec) {
		const char *const *seqs[] = {seq_order, seq_recover, seq_reinstall};

		step_resume_point(seqs, 3, rec->step, &seq, &start);
	}
	for (size_t i = start; seq[i] && out->n < PLAN_MAX_STEPS; i++) {
		out->steps[out->n++] = seq[i];
		if (!strcmp(seq[i], "order"))
			out->paid = 1;
		if (!strcmp(seq[i], "reinstall"))
			break; /* download is only the fallback for records without a key store entry */
	}
	if (out->paid)
		out->product = dc->product;
	return 0;
}

/* ---------- step helpers ---------- */

/*
 * The pending order's key and CSR live in the key store (slots "key" and
 * "csr": engine_pending_*), never in state. A run of an earlier version kept
 * them as <keyDir>/digicert-<name>.key/.csr: those are still read (and then
 * moved into the key store), so an upgrade in the middle of an order does not
 * lose the key of a paid order.
 */
static char *legacy_path(struct step_ctx *ctx, const char *slot)
{
	char *base = xasprintf("digicert-%s.%s", ctx->rec->name, slot), *p;

	for (p = base; *p; p++)
		if (*p == '/')
			*p = '_';
	p = fsutil_join(ctx->cfg->key_dir, base);
	free(base);
	return p;
}

/* 1 if name is "digicert-….tmp.<pid>.<n>" of a process that no longer runs. */
static int stale_tmp(const char *name)
{
	const char *t = strstr(name, ".tmp."), *p;
	char *end;
	long pid;

	if (strncmp(name, "digicert-", 9) || !t)
		return 0;
	for (p = t; (p = strstr(p + 1, ".tmp."));)
		t = p; /* the last ".tmp.": a certificate name may hold one */
	errno = 0;
	pid = strtol(t + 5, &end, 10);
	if (errno || pid <= 0 || *end != '.' || pid == (long)getpid())
		return 0;
	return kill((pid_t)pid, 0) && errno == ESRCH;
}

/*
 * Removes temporary key/CSR files a killed run of an earlier version left in
 * the key directory (the key store sweeps its own when it writes a pending slot).
 */
static void sweep_stale_tmp(struct step_ctx *ctx)
{
	const char *dir = ctx->cfg->key_dir;
	DIR *d = dir ? opendir(dir) : NULL; /* a shared key store has no key directory */
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!stale_tmp(e->d_name))
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			log_emit(LV_INFO, &ctx->log, "removed %s/%s, left by a run that was killed", dir, e->d_name);
	}
	closedir(d);
}

/* 1 when the key directory is there (a shared key store needs none: it may be missing, or be something else). */
static int legacy_dir(struct step_ctx *ctx)
{
	struct stat sb;

	return ctx->cfg->key_dir && stat(ctx->cfg->key_dir, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Removes the earlier version's pending files; 0 or CS_ERROR (with the path). */
static int remove_legacy(struct step_ctx *ctx)
{
	char *k, *c;
	int rc;

	if (!legacy_dir(ctx))
		return 0;
	k = legacy_path(ctx, "key");
	c = legacy_path(ctx, "csr");
	rc = fsutil_rm_rf(k);

	if (!rc)
		rc = fsutil_rm_rf(c);
	free(k);
	free(c);
	return rc;
}

/*
 * The pending order's key or CSR (slot "key"/"csr") into out: from the key
 * store, else from an earlier version's file (moved into the store then).
 * CS_ENOTFOUND when neither has it; CS_ETRANSIENT when the store cannot be
 * read or written now (the caller retries: it must not start the order over).
 */
static int read_pending(struct step_ctx *ctx, const char *slot, struct buf *out)
{
	char *path;
	struct buf b = BUF_INIT;
	int rc = engine_pending_get(ctx, slot, out);

	if (rc != CS_ENOTFOUND || !legacy_dir(ctx))
		return rc;
	path = legacy_path(ctx, slot);
	if ((rc = fsutil_read_file(path, KEY_MAX, &b)))
		goto out;
	/* Into the store first, then the file goes: killed in between, the store has it. */
	if ((rc = engine_pending_put(ctx, slot, &b)))
		goto out;
	if (fsutil_rm_rf(path) == 0)
		log_emit(LV_INFO, &ctx->log, "moved the pending order's %s from %s into the key store", slot, path);
	buf_append(out, b.data, b.len);
out:
	if (rc && rc != CS_ENOTFOUND && rc != CS_ETRANSIENT)
		rc = cs_error(CS_ETRANSIENT, "%s: reading %s: %s", ctx->rec->name, path, cs_errmsg());
	buf_wipe(&b);
	free(path);
	return rc;
}

/* Drops the pending key and CSR (key store and earlier versions' files). */
static int remove_pending(struct step_ctx *ctx)
{
	int rc = engine_pending_del(ctx, NULL);

	if (!rc && (rc = remove_legacy(ctx)))
		rc = cs_error(CS_ETRANSIENT, "%s: %s", ctx->rec->name, cs_errmsg());
	return rc;
}

/* The token the current AuthKey makes for the CSR at the placed token's timestamp. */
static void expected_token(const struct digicert *dc, const char *placed, const struct buf *csr,
			   char out[DIGICERT_TOKEN_LEN + 1])
{
	digicert_request_token(dc->auth_key, strlen(dc->auth_key), placed, csr->data, csr->len, out);
}

/*
 * 1 if the placed token is still good for an order: present, younger than
 * 25 days, and made with the AuthKey DigiCert has now (a rotated key voids it).
 */
static int token_usable(struct step_ctx *ctx, const struct digicert *dc, const struct buf *csr)
{
	const char *placed = state_cert_id(ctx->rec, ID_TOKEN);
	char want[DIGICERT_TOKEN_LEN + 1];
	int64_t t = digicert_token_time(placed);
	int ok;

	if (!t)
		return 0;
	if (ctx->now - t > DIGICERT_TOKEN_MAX_AGE) {
		log_emit(LV_INFO, &ctx->log, "the placed request token is %lld days old; placing a new one",
			 (long long)((ctx->now - t) / 86400));
		return 0;
	}
	expected_token(dc, placed, csr, want);
	ok = !strcmp(want, placed);
	crypto_wipe(want, sizeof(want));
	if (!ok)
		log_emit(LV_WARN, &ctx->log,
			 "the placed request token does not match the account's AuthKey (rotated?); "
			 "placing a new one");
	return ok;
}

static int remove_token(struct step_ctx *ctx, const struct state_token *t, void *arg)
{
	return digicert_dcv_remove(ctx, arg, t, state_cert_id(ctx->rec, ID_TOKEN));
}

/* Removes the placed tokens [0, upto); keeps (for a later retry) those whose removal fails. */
static int remove_tokens(struct step_ctx *ctx, struct digicert *dc, size_t upto)
{
	return step_remove_tokens(ctx, upto, remove_token, dc, "a placed DigiCert token");
}

/* ---------- steps ---------- */

/* The key for this order: the installed one when rotation is Never and it still fits, else a new one. */
static int order_key(struct step_ctx *ctx, struct crypto_key **out)
{
	const struct cert_spec *s = ctx->spec;
	enum crypto_alg want = s->key_alg == KEYALG_RSA ? CRYPTO_RSA : CRYPTO_ECDSA, alg;
	struct buf kp = BUF_INIT;
	int size;

	if (s->rotation == ROTATE_NEVER && engine_installed_key(ctx, &kp) == 0 &&
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

static int step_prepare(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	const struct cert_spec *s = ctx->spec;
	struct crypto_key *key = NULL;
	struct buf kp = BUF_INIT, csr = BUF_INIT;
	int rc;

	(void)dc;
	sweep_stale_tmp(ctx);
	if ((rc = order_key(ctx, &key)) || (rc = crypto_key_to_pem(key, &kp)) ||
	    (rc = crypto_csr_create(key, s->common_name, (const char *const *)s->dns_names, s->n_dns, &csr)))
		goto out;
	/* The key must outlive a pending order, on any replica: in the key store, never in state. */
	if ((rc = engine_pending_put(ctx, "key", &kp)) || (rc = engine_pending_put(ctx, "csr", &csr)))
		goto out;
	if (remove_legacy(ctx)) /* an earlier version's files of an order given up: superseded */
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	state_cert_set_id(ctx->rec, ID_ORDER, NULL);
	state_cert_set_id(ctx->rec, ID_CERT, NULL);
	state_cert_set_id(ctx->rec, ID_INTENT, NULL);
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	step_next(ctx, "place", st);
out:
	buf_wipe(&kp);
	buf_free(&csr);
	crypto_key_free(key);
	return rc;
}

/*
 * Drops old entries that name the very record or line just placed again (same
 * token in the same second), the journaled intent of it included.
 */
static void forget_replaced(struct step_ctx *ctx, size_t *n_old, const char *token)
{
	char *intent = xasprintf("%s%s", DIGICERT_REF_INTENT, token);

	for (size_t i = *n_old; i-- > 0;) {
		const struct state_token *o = &ctx->rec->tokens[i];
		int same = 0;

		for (size_t k = *n_old; k < ctx->rec->n_tokens && !same; k++)
			same = util_streq(o->location, ctx->rec->tokens[k].location) &&
			       (util_streq(o->ref, ctx->rec->tokens[k].ref) || util_streq(o->ref, intent));
		if (same) {
			state_cert_remove_token(ctx->rec, i);
			(*n_old)--;
		}
	}
	free(intent);
}

/* Places a fresh token for every name (one per location), then removes the older ones. */
static int step_place(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	const struct cert_spec *s = ctx->spec;
	enum digicert_method m = digicert_spec_method(dc, s);
	char ts[DIGICERT_TS_LEN + 1], token[DIGICERT_TOKEN_LEN + 1];
	struct buf csr = BUF_INIT;
	size_t n_old = ctx->rec->n_tokens;
	char *ref = NULL;
	int rc;

	if ((rc = read_pending(ctx, "csr", &csr))) {
		if (rc != CS_ENOTFOUND)
			return rc;
		log_emit(LV_WARN, &ctx->log, "the pending key or CSR is gone; starting the order over");
		step_next(ctx, "prepare", st);
		return 0;
	}
	if ((rc = digicert_auth_key(dc)))
		goto out;
	/* Old tokens whose removal keeps failing must not pile up past the state's bound. */
	if (ctx->rec->n_tokens + s->n_dns > STATE_MAX_TOKENS && (rc = remove_tokens(ctx, dc, ctx->rec->n_tokens)))
		goto out;
	n_old = ctx->rec->n_tokens;
	digicert_timestamp(ctx->now - DIGICERT_TOKEN_MARGIN, ts);
	digicert_request_token(dc->auth_key, strlen(dc->auth_key), ts, csr.data, csr.len, token);
	for (size_t i = 0; i < s->n_dns; i++) {
		char *loc = digicert_dcv_location(dc, m, s->dns_names[i]);
		struct state_token t;
		int dup = 0;

		for (size_t k = n_old; k < ctx->rec->n_tokens && loc; k++)
			dup |= util_streq(ctx->rec->tokens[k].location, loc);
		free(loc);
		if (dup)
			continue; /* *.x and x share a TXT owner; one webroot serves several names */
		/* Write-ahead: journaled with its value before it is placed, so a crash still knows what to remove. */
		if ((rc = digicert_dcv_intent(ctx, dc, m, s->dns_names[i], token, &t)))
			goto out;
		state_cert_add_token(ctx->rec, &t);
		digicert_token_clear(&t);
		if ((rc = engine_journal(ctx)))
			goto out;
		log_emit(LV_DEBUG, &ctx->log, "placing the request token at %s",
			 ctx->rec->tokens[ctx->rec->n_tokens - 1].location);
		if ((rc = digicert_dcv_place(ctx, dc, &ctx->rec->tokens[ctx->rec->n_tokens - 1], token, &ref)))
			goto out;
		state_str_set(&ctx->rec->tokens[ctx->rec->n_tokens - 1].ref, ref);
		free(ref);
		ref = NULL;
		if ((rc = engine_journal(ctx)))
			goto out;
	}
	/* Older tokens (a previous attempt, an expired timestamp) go once the new ones are out. */
	state_cert_set_id(ctx->rec, ID_TOKEN, token);
	forget_replaced(ctx, &n_old, token);
	if (remove_tokens(ctx, dc, n_old))
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	log_emit(LV_INFO, &ctx->log, "placed the DigiCert request token (%s) for %zu name%s", digicert_method_name(m),
		 s->n_dns, s->n_dns == 1 ? "" : "s");
	step_next(ctx, step_id_num(ctx->rec, ID_ORDER) ? "await" : "order", st);
out:
	free(ref);
	buf_free(&csr);
	return rc;
}

/* Takes the chain into ctx->mat with the pending key from the key directory. */
static int take_material(struct step_ctx *ctx, const char *chain, int reinstall)
{
	int rc;

	material_wipe(&ctx->mat);
	material_init(&ctx->mat);
	if ((rc = digicert_split_chain(chain, strlen(chain), &ctx->mat.cert, &ctx->mat.ca)))
		return rc;
	rc = read_pending(ctx, "key", &ctx->mat.key);
	if (rc && rc != CS_ENOTFOUND)
		return rc; /* the store cannot be read now: never "lost" for that */
	if (rc && reinstall)
		rc = engine_installed_key(ctx, &ctx->mat.key);
	if (rc) {
		/*
		 * Only a record from before the key store whose outputs are gone too (or a
		 * wiped key directory): the key is lost for good. A new order is the way
		 * out, and it is paid: it waits for an explicit retry, which the plan shows.
		 */
		state_str_set(&ctx->rec->change, plan_change_name(CHANGE_REPLACE));
		state_str_set(&ctx->rec->step, "prepare");
		return cs_error(CS_EINVALID,
				"%s: the private key of this DigiCert certificate is lost (not in the key store nor "
				"the outputs); apply --retry-failed orders a new certificate (paid)",
				ctx->rec->name);
	}
	return 0;
}

/* What to do with an order (ours, adopted or followed). */
static int follow(struct step_ctx *ctx, struct digicert *dc, const struct digicert_order *o, enum step_status *st)
{
	if (o->id)
		step_set_id_num(ctx->rec, ID_ORDER, o->id);
	if (o->certificate_id)
		step_set_id_num(ctx->rec, ID_CERT, o->certificate_id);
	if (o->chain) {
		int rc = take_material(ctx, o->chain, 0);

		if (rc)
			return rc;
		step_next(ctx, "install", st);
		return 0;
	}
	if (util_streq(o->status, "issued")) {
		step_next(ctx, "download", st);
		return 0;
	}
	if (digicert_status_terminal(o->status)) {
		state_str_set(&ctx->rec->step, "prepare");
		ctx->fail_class = STATE_FAIL_REJECTED;
		return cs_error(CS_EINVALID,
				"%s: DigiCert order %lld is %s (issuer %s): not ordered again; change the manifest or "
				"apply --retry-failed",
				ctx->rec->name, step_id_num(ctx->rec, ID_ORDER), o->status, dc->name);
	}
	state_str_set(&ctx->rec->step, "await");
	step_poll_later(ctx, ID_POLLS, dc->poll_min, dc->poll_max, st);
	return 0;
}

static int step_order(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	const struct cert_spec *s = ctx->spec;
	struct digicert_order_req req;
	struct digicert_order o;
	struct buf csr = BUF_INIT;
	char alt[37];
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = read_pending(ctx, "csr", &csr))) {
		if (rc != CS_ENOTFOUND)
			return rc;
		step_next(ctx, "prepare", st);
		return 0;
	}
	if ((rc = digicert_auth_key(dc)))
		goto out;
	if (!token_usable(ctx, dc, &csr)) {
		step_next(ctx, "place", st);
		goto out;
	}
	/* Write-ahead: the id and the step "find" are durable before DigiCert hears of the order. */
	if (state_cert_id(ctx->rec, ID_INTENT))
		snprintf(alt, sizeof(alt), "%s", state_cert_id(ctx->rec, ID_INTENT));
	else if ((rc = crypto_uuid(alt)))
		goto out;
	state_cert_set_id(ctx->rec, ID_INTENT, alt);
	step_intent_begin(ctx, ID_INTENT_RULE, dc->timeout);
	state_str_set(&ctx->rec->step, "find");
	if ((rc = engine_journal(ctx)))
		goto out;
	log_emit(LV_INFO, &ctx->log, "ordering a DigiCert certificate (alternative_order_id %s)", alt);
	memset(&req, 0, sizeof(req));
	req.product = dc->product;
	req.common_name = s->common_name;
	req.dns_names = s->dns_names;
	req.n_dns = s->n_dns;
	req.csr = csr.data;
	req.dcv_method = digicert_method_name(digicert_spec_method(dc, s));
	req.alternative_order_id = alt;
	if (util_streq(ctx->rec->change, plan_change_name(CHANGE_RENEW)))
		req.renewal_of = step_id_num(ctx->rec, ID_INSTALLED_ORDER);
	req.auth_key_id = dc->auth_key_select ? dc->auth_key_id : NULL;
	step_intent_send_hook(ctx, ID_INTENT_RULE, dc->timeout);
	rc = digicert_order_create(dc, &req, &o);
	step_intent_send_hook(NULL, NULL, 0);
	if (rc)
		goto out; /* the step stays "find": a retry looks (by the in-flight rule) before it orders */
	state_cert_set_id(ctx->rec, ID_INTENT, NULL);
	step_intent_clear(ctx, ID_INTENT_RULE);
	step_set_id_num(ctx->rec, ID_POLLS, 0);
	state_cert_event(ctx->rec, ctx->now, "ordered DigiCert certificate: order %lld%s", o.id,
			 o.chain ? " (issued at once)" : " (pending)");
	log_emit(LV_INFO, &ctx->log, "DigiCert order %lld %s", o.id,
		 o.chain ? "issued at once" : "is pending; following it");
	if (o.chain) {
		rc = follow(ctx, dc, &o, st);
	} else {
		step_set_id_num(ctx->rec, ID_ORDER, o.id);
		step_set_id_num(ctx->rec, ID_CERT, o.certificate_id);
		step_next(ctx, "await", st);
	}
out:
	digicert_order_clear(&o);
	buf_free(&csr);
	return rc;
}

/*
 * The order's crash recovery, by the in-flight rule: once the first request
 * can no longer land, look the order up by its alternative_order_id; order
 * again (with the same id) only when a second look, a settle margin after a
 * first empty one, finds nothing either.
 */
static int step_find(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	const char *alt = state_cert_id(ctx->rec, ID_INTENT);
	struct digicert_order o;
	int rc;

	if (!alt) {
		step_next(ctx, step_id_num(ctx->rec, ID_ORDER) ? "await" : "order", st);
		return 0;
	}
	if ((rc = step_intent_wait(ctx, ID_INTENT_RULE, dc->timeout)))
		return rc;
	for (int look = 0;; look++) {
		rc = digicert_order_find(dc, alt, &o);
		if (rc != CS_ENOTFOUND)
			break;
		if (look == 1) {
			log_emit(LV_WARN, &ctx->log,
				 "the order with alternative_order_id %s never reached DigiCert (two looks after it "
				 "could have landed); ordering",
				 alt);
			step_intent_clear(ctx, ID_INTENT_RULE);
			step_next(ctx, "order", st); /* sent again with the same id */
			return 0;
		}
		log_emit(LV_INFO, &ctx->log, "the order %s is not at DigiCert; looking once more in %llds", alt,
			 (long long)step_intent_settle(dc->timeout));
		if ((rc = step_sleep_until(ctx, ctx->now + step_intent_settle(dc->timeout))))
			return rc;
	}
	if (rc)
		return rc;
	log_emit(LV_INFO, &ctx->log, "adopting DigiCert order %lld (%s) instead of ordering again", o.id,
		 o.status ? o.status : "?");
	state_cert_event(ctx->rec, ctx->now, "adopted DigiCert order %lld", o.id);
	state_cert_set_id(ctx->rec, ID_INTENT, NULL);
	step_intent_clear(ctx, ID_INTENT_RULE);
	step_set_id_num(ctx->rec, ID_ORDER, o.id);
	step_set_id_num(ctx->rec, ID_CERT, o.certificate_id);
	step_next(ctx, "await", st);
	digicert_order_clear(&o);
	return 0;
}

static int step_await(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	long long id = step_id_num(ctx->rec, ID_ORDER);
	struct digicert_order o, chk;
	struct buf csr = BUF_INIT;
	int rc;

	memset(&chk, 0, sizeof(chk));
	if (!id) {
		step_next(ctx, "find", st);
		return 0;
	}
	rc = digicert_order_info(dc, id, &o);
	if (rc == CS_ENOTFOUND) {
		/* Never ordered again silently: --retry-failed (or run's explicit retry) starts a new order. */
		state_cert_event(ctx->rec, ctx->now, "pending DigiCert order %lld is gone (HTTP 404)", id);
		state_cert_set_id(ctx->rec, ID_ORDER, NULL);
		state_cert_set_id(ctx->rec, ID_CERT, NULL);
		state_cert_set_id(ctx->rec, ID_POLLS, NULL);
		state_str_set(&ctx->rec->step, "prepare");
		ctx->fail_class = STATE_FAIL_REJECTED;
		return cs_error(CS_EINVALID,
				"%s: the pending DigiCert order %lld is gone at DigiCert (issuer %s); not ordered "
				"again without you: apply --retry-failed places a new order",
				ctx->rec->name, id, dc->name);
	}
	if (rc)
		return rc;
	if (util_streq(o.status, "issued") || digicert_status_terminal(o.status)) {
		rc = follow(ctx, dc, &o, st);
		goto out;
	}
	/* Still pending: make sure what DigiCert should find is a token it can verify, then ask it to look. */
	if (ctx->rec->n_tokens && !read_pending(ctx, "csr", &csr)) {
		if ((rc = digicert_auth_key(dc)))
			goto out;
		if (!token_usable(ctx, dc, &csr)) {
			step_next(ctx, "place", st);
			goto out;
		}
	}
	rc = digicert_check_dcv(dc, id, &chk);
	if (rc == 1 || (!rc && !util_streq(chk.status, "issued"))) {
		rc = 0;
		step_poll_later(ctx, ID_POLLS, dc->poll_min, dc->poll_max, st);
		goto out;
	}
	if (rc)
		goto out;
	if (chk.certificate_id)
		step_set_id_num(ctx->rec, ID_CERT, chk.certificate_id);
	log_emit(LV_INFO, &ctx->log, "DigiCert order %lld is issued", id);
	step_next(ctx, "download", st);
out:
	digicert_order_clear(&o);
	digicert_order_clear(&chk);
	buf_free(&csr);
	return rc;
}

static int step_download(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	int reinstall = !step_id_num(ctx->rec, ID_ORDER);
	long long cid = reinstall ? step_id_num(ctx->rec, ID_INSTALLED_CERT) : step_id_num(ctx->rec, ID_CERT);
	struct buf cert = BUF_INIT, ca = BUF_INIT, all = BUF_INIT;
	struct digicert_order o;
	int rc;

	if (!cid && !reinstall) {
		/* the certificate id comes with the order info once issued */
		if ((rc = digicert_order_info(dc, step_id_num(ctx->rec, ID_ORDER), &o)))
			return rc;
		cid = o.certificate_id;
		digicert_order_clear(&o);
	}
	if (!cid)
		return cs_error(CS_EINVALID, "%s: no DigiCert certificate id recorded to download", ctx->rec->name);
	if ((rc = digicert_download(dc, cid, &cert, &ca)))
		goto out;
	buf_append(&all, cert.data, cert.len);
	buf_append(&all, ca.data, ca.len);
	if ((rc = take_material(ctx, all.data, reinstall)))
		goto out;
	step_set_id_num(ctx->rec, ID_CERT, cid);
	step_next(ctx, "install", st);
out:
	buf_free(&cert);
	buf_free(&ca);
	buf_free(&all);
	return rc;
}

/* Lost outputs: the installed certificate and key from the key store, with no request to DigiCert. */
static int step_reinstall(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	(void)dc;
	return step_reinstall_or(ctx, "download", st);
}

/*
 * An install that fails (a full disk: retried from the key store) must not
 * hold the validation tokens in DNS meanwhile: the certificate is issued, so
 * they go now. Keeps install's error.
 */
static int install_failed(struct step_ctx *ctx, struct digicert *dc, int rc)
{
	char *msg = xstrdup(cs_errmsg());

	if (ctx->rec->n_tokens && remove_tokens(ctx, dc, ctx->rec->n_tokens) == 0) {
		state_cert_set_id(ctx->rec, ID_TOKEN, NULL);
		log_emit(LV_INFO, &ctx->log, "removed the DigiCert request tokens (the certificate is issued)");
	} else if (ctx->rec->n_tokens) {
		log_emit(LV_WARN, &ctx->log, "%s", cs_errmsg());
	}
	rc = cs_error(rc, "%s", msg);
	free(msg);
	return rc;
}

static int step_install(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	long long order = step_id_num(ctx->rec, ID_ORDER), cert = step_id_num(ctx->rec, ID_CERT);
	int rc;

	if (!material_present(&ctx->mat) && engine_pending_material(ctx)) {
		step_next(ctx, "download", st); /* resumed: the chain was only in memory */
		return 0;
	}
	if ((rc = engine_install(ctx)))
		return install_failed(ctx, dc, rc);
	if (order) {
		step_set_id_num(ctx->rec, ID_INSTALLED_ORDER, order);
		step_set_id_num(ctx->rec, ID_INSTALLED_CERT, cert);
	}
	state_cert_set_id(ctx->rec, ID_ORDER, NULL);
	state_cert_set_id(ctx->rec, ID_CERT, NULL);
	state_cert_set_id(ctx->rec, ID_POLLS, NULL);
	/*
	 * The key now lives in the key store (and the outputs), but the pending
	 * key file goes only once the record says so: killed in between, a rerun
	 * at "install"/"download" would find neither the file nor a recorded serial.
	 */
	step_next(ctx, "cleanup", st);
	if ((rc = engine_journal(ctx)))
		return rc;
	remove_pending(ctx); /* a failure here is retried by the cleanup step */
	return 0;
}

static int step_cleanup(struct step_ctx *ctx, struct digicert *dc, enum step_status *st)
{
	int rc;

	/* left by a run killed right after install journaled this step */
	if ((rc = remove_pending(ctx)))
		return rc; /* CS_ETRANSIENT: the next apply tries again */
	rc = remove_tokens(ctx, dc, ctx->rec->n_tokens);
	if (rc)
		return rc; /* CS_ETRANSIENT: the next apply tries again */
	state_cert_set_id(ctx->rec, ID_TOKEN, NULL);
	log_emit(LV_INFO, &ctx->log, "removed the DigiCert request tokens");
	*st = STEP_DONE;
	return 0;
}

/* The leaf of the order's certificate (order info's chain, else its download) against the imported one. */
static int import_compare(struct digicert *dc, const struct digicert_order *o, const char *dir, const char *serial,
			  const char *fingerprint)
{
	struct buf cert = BUF_INIT, ca = BUF_INIT;
	struct crypto_cert *leaf = NULL;
	struct crypto_cert_info info;
	int rc;

	memset(&info, 0, sizeof(info));
	if (o->chain)
		buf_puts(&cert, o->chain);
	else if ((rc = digicert_download(dc, o->certificate_id, &cert, &ca)))
		goto out;
	if ((rc = crypto_cert_from_pem(cert.data, cert.len, "the order's certificate", &leaf)) ||
	    (rc = crypto_cert_info(leaf, &info)))
		goto out;
	if (strcmp(info.serial, serial))
		rc = cs_error(CS_EINVALID,
			      "DigiCert order %lld (issuer %s) is not the certificate in %s: serial %s there, %s in "
			      "tls.crt",
			      o->id, dc->name, dir, info.serial, serial);
	else if (strcmp(info.fingerprint, fingerprint))
		rc = cs_error(CS_EINVALID,
			      "DigiCert order %lld (issuer %s) is not the certificate in %s: same serial %s, but "
			      "fingerprint %s there, %s in tls.crt",
			      o->id, dc->name, dir, serial, info.fingerprint, fingerprint);
out:
	crypto_cert_info_free(&info);
	crypto_cert_free(leaf);
	buf_free(&cert);
	buf_free(&ca);
	return rc;
}

int digicert_import(const struct issuer *is, struct state_cert *rec, long long order_id, const char *dir,
		    const char *serial, const char *fingerprint)
{
	struct digicert *dc = is->priv;
	struct digicert_order o;
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = digicert_session(dc)))
		return rc;
	rc = digicert_order_info(dc, order_id, &o);
	if (rc == CS_ENOTFOUND) {
		rc = cs_error(CS_ENOTFOUND, "DigiCert has no order %lld (issuer %s: HTTP 404)", order_id, dc->name);
		goto out;
	}
	if (rc)
		goto out;
	o.id = order_id;
	if (!util_streq(o.status, "issued") || !o.certificate_id) {
		rc = cs_error(CS_EINVALID, "DigiCert order %lld (issuer %s) is %s, not issued: nothing to import",
			      order_id, dc->name, o.status ? o.status : "without a status");
		goto out;
	}
	if ((rc = import_compare(dc, &o, dir, serial, fingerprint)))
		goto out;
	/* what install records: a renewal sends renewal_of_order_id, plan --refresh follows the order */
	step_set_id_num(rec, ID_INSTALLED_ORDER, order_id);
	step_set_id_num(rec, ID_INSTALLED_CERT, o.certificate_id);
out:
	digicert_order_clear(&o);
	digicert_session_end(dc);
	return rc;
}

typedef int (*digicert_step_fn)(struct step_ctx *ctx, struct digicert *dc, enum step_status *st);

static const struct {
	const char *name;
	digicert_step_fn run;
	int needs_session;
} digicert_steps[] = {
	{"prepare", step_prepare, 0}, {"place", step_place, 1},	    {"order", step_order, 1},
	{"find", step_find, 1},	      {"await", step_await, 1},	    {"download", step_download, 1},
	{"install", step_install, 0}, {"cleanup", step_cleanup, 0}, {"reinstall", step_reinstall, 0},
};

static int digicert_step(struct step_ctx *ctx, enum step_status *st)
{
	struct digicert *dc = ctx->issuer->priv;
	const char *step = ctx->rec->step ? ctx->rec->step : "";

	for (size_t i = 0; i < sizeof(digicert_steps) / sizeof(digicert_steps[0]); i++) {
		int rc;

		if (strcmp(step, digicert_steps[i].name))
			continue;
		if (digicert_steps[i].needs_session && (rc = digicert_session(dc)))
			return rc;
		return digicert_steps[i].run(ctx, dc, st);
	}
	return cs_error(CS_EINVALID, "%s: the digicert issuer has no step \"%s\"", ctx->rec->name, step);
}

/* Removal: placed tokens and a pending key go too (a pending order is left alone: never cancelled). */
static int digicert_release(struct step_ctx *ctx)
{
	struct digicert *dc = ctx->issuer->priv;
	int rc = remove_tokens(ctx, dc, ctx->rec->n_tokens);

	if (!rc)
		rc = remove_pending(ctx);
	return rc;
}

/* plan --refresh: a revoked, expired or vanished order needs a new certificate. */
static int digicert_refresh(const struct issuer *is, const struct state_cert *rec, int64_t now,
			    struct plan_drift *drift)
{
	struct digicert *dc = is->priv;
	long long id = step_id_num(rec, ID_INSTALLED_ORDER);
	struct digicert_order o;
	int rc;

	(void)now;
	if (!id)
		return 0;
	if ((rc = digicert_session(dc)))
		return rc;
	rc = digicert_order_info(dc, id, &o);
	if (rc == CS_ENOTFOUND) {
		drift->what = xasprintf("DigiCert order %lld is gone", id);
		drift->needs_new = 1;
		return 0;
	}
	if (rc)
		return rc;
	if (digicert_status_terminal(o.status) && o.status && strcmp(o.status, "expired")) {
		drift->what = xasprintf("DigiCert order %lld is %s", id, o.status);
		drift->needs_new = 1;
	}
	digicert_order_clear(&o);
	return 0;
}

/* DV products cover the name with and without "www." (the free "plus" SAN), and a wildcard its base name. */
static void digicert_extra_names(const struct issuer *is, const struct cert_spec *s, char ***out, size_t *n)
{
	(void)is;
	*n = 0;
	*out = xcalloc(s->n_dns + 1, sizeof(char *));
	for (size_t i = 0; i < s->n_dns; i++) {
		const char *name = s->dns_names[i];

		if (!strncmp(name, "*.", 2))
			(*out)[(*n)++] = xstrdup(name + 2);
		else if (!strncmp(name, "www.", 4))
			(*out)[(*n)++] = xstrdup(name + 4);
		else
			(*out)[(*n)++] = xasprintf("www.%s", name);
	}
}

static void digicert_end_run(const struct issuer *is)
{
	digicert_session_end(is->priv);
}

const struct provider_ops provider_digicert = {
	.type = "digicert",
	.config_parse = digicert_config_parse,
	.config_free = digicert_config_free,
	.config_check = digicert_config_check,
	.check_spec = digicert_check_spec,
	.plan = digicert_plan,
	.step = digicert_step,
	.refresh = digicert_refresh,
	.release = digicert_release,
	.extra_names = digicert_extra_names,
	.webhook = NULL,
	.dns = NULL,
	.end_run = digicert_end_run,
	.check = digicert_check,
	.account_plan = digicert_account_plan,
};
