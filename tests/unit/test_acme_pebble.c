/*
 * The ACME protocol client against the real Pebble (Debian's pebble, started
 * by tests/peers/pebble.sh on free loopback ports): accounts with EAB and
 * terms, a whole issuance with a wildcard, alternate chains, revocation,
 * badNonce retries from several threads, rejectedIdentifier,
 * accountDoesNotExist, orderNotReady and the paged orders list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../reconciler/providers/acme.h"
#include "../../reconciler/providers/acme_client_int.h"
#include "../../reconciler/providers/acme_wire.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/http.h"
#include "../../util/jose.h"
#include "../../util/util.h"
#include "testutil.h"

#define EAB_KID "kid-core"
#define EAB_HMAC "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"

struct pebble {
	char *dir;
	int port, mgmt;
	char url[128];
	char *ca; /* trust for Pebble's TLS listener */
};

/* A: EAB required, a blocklist, an alternate root, three orders per page. B: half of all nonces refused. */
static struct pebble peb_a, peb_b;

static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Starts Pebble through the shared harness with env (assignments "A=1 B=2"); fills p. */
static int pebble_start(struct pebble *p, const char *env)
{
	char *cmd;
	FILE *f;

	p->dir = test_mkdtemp();
	p->port = free_port();
	p->mgmt = free_port();
	cmd = xasprintf("env PEBBLE_PORT=%d PEBBLE_MGMT_PORT=%d PEBBLE_VA_NOSLEEP=1 PEBBLE_VA_ALWAYS_VALID=1 "
			"PEBBLE_DNS=127.0.0.1:%d %s sh %s/tests/peers/pebble.sh start %s",
			p->port, p->mgmt, free_port(), env, test_srcdir(), p->dir);
	f = popen(cmd, "r");
	free(cmd);
	if (!f || !fgets(p->url, sizeof(p->url), f)) {
		if (f)
			pclose(f);
		return -1;
	}
	p->url[strcspn(p->url, "\n")] = '\0';
	p->ca = xasprintf("%s/ca.pem", p->dir);
	return pclose(f) == 0 && !strncmp(p->url, "https://", 8) ? 0 : -1;
}

static void pebble_stop(struct pebble *p)
{
	char *cmd = xasprintf("sh %s/tests/peers/pebble.sh stop %s", test_srcdir(), p->dir);

	if (system(cmd) != 0)
		fprintf(stderr, "stopping pebble in %s failed\n", p->dir);
	free(cmd);
	free(p->ca);
	test_rmdir(p->dir);
	memset(p, 0, sizeof(*p));
}

static int setup(void **state)
{
	(void)state;
	if (pebble_start(&peb_a, "PEBBLE_EAB_KID=" EAB_KID " PEBBLE_EAB_HMAC=" EAB_HMAC
				 " PEBBLE_BLOCKLIST=blocked.core.test PEBBLE_ALTERNATE_ROOTS=1"
				 " PEBBLE_WFE_ORDERS_PER_PAGE=3 PEBBLE_AUTHZREUSE=0") ||
	    pebble_start(&peb_b, "PEBBLE_WFE_NONCEREJECT=50"))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pebble_stop(&peb_a);
	pebble_stop(&peb_b);
	return 0;
}

static struct acme_client *client_for(const struct pebble *p, const char *issuer)
{
	struct acme_client_opts o = {issuer, p->url, p->ca, 30, "certsync-test"};
	struct acme_client *c = NULL;

	assert_int_equal(acme_client_new(&o, &c), 0);
	return c;
}

/* A client with a fresh account (EAB on A). The key is the caller's to free after the client. */
static struct acme_client *account_on(const struct pebble *p, const char *issuer, struct crypto_key **key)
{
	struct acme_client *c = client_for(p, issuer);
	struct buf hmac = BUF_INIT;
	struct acme_account_req r = {NULL, "ops@core.test", 1, 0, NULL, NULL};

	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, key), 0);
	r.key = *key;
	if (p == &peb_a) {
		assert_int_equal(jose_b64url_decode(EAB_HMAC, &hmac), 0);
		r.eab_kid = EAB_KID;
		r.eab_hmac = &hmac;
	}
	/* on B half the nonces are refused: six in a row (1 in 64) is retried here, not what this is about */
	for (int i = 0; acme_client_account(c, &r, NULL); i++)
		if (i == 2 || !strstr(cs_errmsg(), "badNonce"))
			fail_msg("account: %s", cs_errmsg());
	buf_wipe(&hmac);
	return c;
}

static void expect_class(const char *cls)
{
	const char *got = provider_fail_class_take();

	if (!got || strcmp(got, cls))
		fail_msg("class %s, expected %s (%s)", got ? got : "(none)", cls, cs_errmsg());
}

/* ---------- accounts ---------- */

static void test_pebble_account_needs_eab_and_terms_and_is_found_again(void **s)
{
	struct acme_client *c = client_for(&peb_a, "pa");
	struct crypto_key *key = NULL;
	struct buf hmac = BUF_INIT, wrong = BUF_INIT;
	struct acme_account_req r = {NULL, "ops@core.test", 1, 0, NULL, NULL};
	const struct acme_directory *d;
	char *url1 = NULL, *url2 = NULL, tp[44];

	(void)s;
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	r.key = key;
	assert_int_equal(acme_client_directory(c, &d), 0);
	assert_true(d->eab_required);
	assert_non_null(d->terms_of_service);
	assert_null(d->renewal_info);

	/* no EAB configured: refused before any request, naming the setting */
	assert_int_equal(acme_client_account(c, &r, &url1), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "issuer pa: "));
	assert_non_null(strstr(cs_errmsg(), "externalAccountBinding"));
	expect_class(STATE_FAIL_CONFIG);

	/* terms not agreed */
	assert_int_equal(jose_b64url_decode(EAB_HMAC, &hmac), 0);
	r.eab_kid = EAB_KID;
	r.eab_hmac = &hmac;
	r.terms_agreed = 0;
	assert_int_equal(acme_client_account(c, &r, &url1), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "termsOfServiceAgreed"));
	expect_class(STATE_FAIL_CONFIG);

	/* a wrong MAC key: Pebble refuses the binding; nothing of the key in the message */
	r.terms_agreed = 1;
	buf_append(&wrong, "not the right key, 32 bytes long", 32);
	r.eab_hmac = &wrong;
	assert_int_not_equal(acme_client_account(c, &r, &url1), 0);
	assert_non_null(strstr(cs_errmsg(), "acme newAccount /sign-me-up"));
	assert_null(strstr(cs_errmsg(), "not the right key"));
	assert_null(acme_client_thumbprint(c));

	/* right: registered (201), then found again (200) with the same URL */
	r.eab_hmac = &hmac;
	if (acme_client_account(c, &r, &url1))
		fail_msg("%s", cs_errmsg());
	assert_non_null(url1);
	assert_int_equal(strncmp(url1, "https://127.0.0.1:", 18), 0);
	assert_int_equal(acme_client_account(c, &r, &url2), 0);
	assert_string_equal(url1, url2);
	assert_int_equal(jose_thumbprint(key, tp), 0);
	assert_string_equal(acme_client_thumbprint(c), tp);
	/* the answers' Replay-Nonces were pooled, within the bound */
	assert_true(acme_nonce_count(c) >= 1 && acme_nonce_count(c) <= ACME_MAX_NONCES);
	free(url1);
	free(url2);
	buf_wipe(&hmac);
	buf_free(&wrong);
	acme_client_free(c);
	crypto_key_free(key);
}

static void test_pebble_only_return_existing_with_a_fresh_key_is_account_does_not_exist(void **s)
{
	struct acme_client *c = client_for(&peb_a, "pa");
	struct crypto_key *key = NULL;
	struct acme_account_req r = {NULL, NULL, 0, 1, NULL, NULL};
	char *url = NULL;

	(void)s;
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 384, &key), 0);
	r.key = key;
	assert_int_equal(acme_client_account(c, &r, &url), CS_EAUTH);
	assert_null(url);
	assert_non_null(strstr(cs_errmsg(), "accountDoesNotExist"));
	assert_non_null(strstr(cs_errmsg(), "issuer pa: acme newAccount /sign-me-up: "));
	expect_class(STATE_FAIL_CONFIG);
	/* and no account was made for it: POSTs need one */
	struct http_response res;
	assert_int_equal(acme_client_post(c, "acme getOrder", peb_a.url, NULL, NULL, &res, NULL), CS_ERROR);
	acme_client_free(c);
	crypto_key_free(key);
}

/* ---------- a whole issuance ---------- */

/* Polls the authorization until it leaves "pending" (Pebble validates in the background). */
static void authz_wait(struct acme_client *c, const char *url, struct acme_authz *a)
{
	int64_t until = util_mono_ms() + 20000;

	for (;;) {
		struct timespec ts = {0, 50 * 1000 * 1000};

		if (acme_authz_get(c, url, a))
			fail_msg("%s", cs_errmsg());
		if (strcmp(a->status, "pending") || util_mono_ms() > until)
			return;
		acme_authz_free(a);
		nanosleep(&ts, NULL);
	}
}

static void order_wait(struct acme_client *c, const char *url, const char *until_not, struct acme_order *o)
{
	int64_t until = util_mono_ms() + 20000;

	for (;;) {
		struct timespec ts = {0, 50 * 1000 * 1000};

		if (acme_order_get(c, url, o))
			fail_msg("%s", cs_errmsg());
		if (strcmp(o->status, until_not) || util_mono_ms() > until)
			return;
		acme_order_free(o);
		nanosleep(&ts, NULL);
	}
}

/* Answers each authorization of o: http-01 for plain names, dns-01 for the wildcard (Pebble: ALWAYS_VALID). */
static void solve_all(struct acme_client *c, const struct acme_order *o, int *saw_wildcard)
{
	for (size_t i = 0; i < o->n_authorizations; i++) {
		struct acme_authz a;
		struct acme_challenge answered;
		const struct acme_challenge *ch = NULL;
		char *ka;

		assert_int_equal(acme_authz_get(c, o->authorizations[i], &a), 0);
		assert_string_equal(a.status, "pending");
		*saw_wildcard |= a.wildcard;
		if (a.wildcard)
			assert_string_equal(a.identifier, "core.test"); /* without the "*." */
		for (size_t k = 0; k < a.n_challenges; k++)
			if (!strcmp(a.challenges[k].type, a.wildcard ? "dns-01" : "http-01"))
				ch = &a.challenges[k];
		assert_non_null(ch);
		assert_non_null(ch->token);
		ka = jose_key_authorization(ch->token, acme_client_thumbprint(c));
		assert_non_null(strchr(ka, '.'));
		assert_int_equal(acme_challenge_respond(c, ch->url, &answered), 0);
		assert_string_equal(answered.url, ch->url);
		acme_challenge_free(&answered);
		free(ka);
		acme_authz_free(&a);
		authz_wait(c, o->authorizations[i], &a);
		assert_string_equal(a.status, "valid");
		acme_authz_free(&a);
	}
}

/* The alternate chains' URLs of a certificate (POST-as-GET, Link rel="alternate"). */
static size_t alternates(struct acme_client *c, const char *cert_url, char **out, size_t max)
{
	struct http_response res;
	size_t n;

	assert_int_equal(
		acme_client_post(c, "test cert", cert_url, NULL, "application/pem-certificate-chain", &res, NULL), 0);
	n = acme_links(&res, cert_url, "alternate", out, max);
	http_response_free(&res);
	return n;
}

static char *top_issuer(const struct buf *pem)
{
	struct crypto_cert **v = NULL;
	struct crypto_cert_info info;
	size_t n = 0;
	char *cn;

	assert_int_equal(crypto_certs_from_pem(pem->data, pem->len, "chain", &v, &n), 0);
	assert_true(n >= 2);
	memset(&info, 0, sizeof(info));
	assert_int_equal(crypto_cert_info(v[n - 1], &info), 0);
	cn = xstrdup(info.issuer_cn);
	crypto_cert_info_free(&info);
	crypto_certs_free(v, n);
	assert_non_null(cn);
	return cn;
}

/* GET the management API's status of a serial: "Valid" or "Revoked". */
static void cert_status(const struct pebble *p, const char *serial, char *out, size_t n)
{
	struct http_client_opts ho = {"certsync-test", p->ca, 0, 0, 0, 0, 0};
	struct http_client *h = NULL;
	struct http_request req;
	struct http_response res;
	char *url = xasprintf("https://127.0.0.1:%d/cert-status-by-serial/%s", p->mgmt, serial);
	const char *st;

	assert_int_equal(http_client_new(&ho, &h), 0);
	http_request_json(&req, "pebble status", "GET", url, NULL, NULL, HTTP_RETRY_SAFE);
	assert_int_equal(http_do(h, &req, &res), 0);
	assert_int_equal(res.status, 200);
	st = strstr(res.body.data, "\"Status\": \"");
	if (!st)
		st = strstr(res.body.data, "\"Status\":\"");
	assert_non_null(st);
	st = strchr(st + 9, '"') + 1;
	snprintf(out, n, "%.*s", (int)strcspn(st, "\""), st);
	http_response_free(&res);
	http_client_free(h);
	free(url);
}

static void test_pebble_issues_a_wildcard_certificate_picks_a_chain_and_revokes_it(void **s)
{
	struct crypto_key *acct = NULL, *key = NULL;
	struct acme_client *c = account_on(&peb_a, "pa", &acct);
	char *names[] = {"www.core.test", "*.core.test"};
	const char *sans[] = {"www.core.test", "*.core.test"};
	struct acme_order o, fin, done;
	struct buf csr = BUF_INIT, der = BUF_INIT, pem = BUF_INIT, alt_pem = BUF_INIT, pick = BUF_INIT;
	struct crypto_cert *leaf = NULL;
	struct crypto_cert_info info;
	char *alts[ACME_MAX_ALTERNATES], *cn_default, *cn_alt, *cn_pick, status[32], *roots;
	size_t n_alts, roots_len = 0;
	int wildcard = 0;

	(void)s;
	assert_int_equal(acme_order_new(c, names, 2, NULL, NULL, &o), 0);
	assert_string_equal(o.status, "pending");
	assert_non_null(o.url);
	assert_int_equal(o.n_identifiers, 2);
	assert_int_equal(o.n_authorizations, 2);
	assert_non_null(o.finalize);
	assert_true(o.expires > util_now());
	solve_all(c, &o, &wildcard);
	assert_true(wildcard);

	/* the order is ready once both authorizations are valid */
	order_wait(c, o.url, "pending", &fin);
	assert_string_equal(fin.status, "ready");
	acme_order_free(&fin);

	/* finalize with a CSR from certsync's key */
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	assert_int_equal(crypto_csr_create(key, "www.core.test", sans, 2, &csr), 0);
	assert_int_equal(jose_pem_to_der(csr.data, csr.len, "CERTIFICATE REQUEST", &der), 0);
	if (acme_order_finalize(c, &o, &der, &fin))
		fail_msg("finalize: %s", cs_errmsg());
	assert_string_equal(fin.url, o.url);
	order_wait(c, o.url, "processing", &done);
	assert_string_equal(done.status, "valid");
	assert_non_null(done.certificate);

	/* the default chain, then an alternate one chosen by its top issuer's CN */
	assert_int_equal(acme_download(c, done.certificate, NULL, &pem), 0);
	cn_default = top_issuer(&pem);
	n_alts = alternates(c, done.certificate, alts, ACME_MAX_ALTERNATES);
	assert_true(n_alts >= 1);
	assert_int_equal(acme_download(c, alts[0], NULL, &alt_pem), 0);
	cn_alt = top_issuer(&alt_pem);
	assert_string_not_equal(cn_default, cn_alt);
	assert_int_equal(acme_download(c, done.certificate, cn_alt, &pick), 0);
	cn_pick = top_issuer(&pick);
	assert_string_equal(cn_pick, cn_alt);
	free(cn_pick);
	/* a preferred CN no chain has: the default */
	assert_int_equal(acme_download(c, done.certificate, "No Such Root", &pick), 0);
	cn_pick = top_issuer(&pick);
	assert_string_equal(cn_pick, cn_default);

	/* the leaf is for certsync's key and names, and chains to Pebble's root */
	assert_int_equal(crypto_cert_from_pem(pem.data, pem.len, "leaf", &leaf), 0);
	assert_int_equal(crypto_cert_matches_key(leaf, key), 1);
	memset(&info, 0, sizeof(info));
	assert_int_equal(crypto_cert_info(leaf, &info), 0);
	assert_true(crypto_names_contain((const char *const *)info.dns_names, info.n_dns, "*.core.test"));
	assert_true(crypto_names_contain((const char *const *)info.dns_names, info.n_dns, "www.core.test"));
	roots = fsutil_join(peb_a.dir, "roots.pem");
	{
		struct buf r = BUF_INIT;

		assert_int_equal(fsutil_read_file(roots, 1 << 20, &r), 0);
		roots_len = r.len;
		if (crypto_cert_verify_chain(pem.data, pem.len, r.data, r.len, 0))
			fail_msg("%s", cs_errmsg());
		buf_free(&r);
	}
	assert_true(roots_len > 0);

	/* revoke (keyCompromise): Pebble's management API says so; a second time is alreadyRevoked */
	cert_status(&peb_a, info.serial, status, sizeof(status));
	assert_string_equal(status, "Valid");
	if (acme_revoke(c, pem.data, pem.len, 1))
		fail_msg("revoke: %s", cs_errmsg());
	cert_status(&peb_a, info.serial, status, sizeof(status));
	assert_string_equal(status, "Revoked");
	assert_int_equal(acme_revoke(c, pem.data, pem.len, 1), CS_ECONFLICT);
	assert_non_null(strstr(cs_errmsg(), "alreadyRevoked"));
	assert_int_equal(acme_revoke(c, pem.data, pem.len, 7), CS_EINVALID); /* 7 is not a reason code */

	/* Pebble has no renewalInfo */
	{
		struct acme_renewal_info ri;
		char *id = NULL;

		assert_int_equal(acme_ari_cert_id(pem.data, pem.len, &id), 0);
		assert_non_null(strchr(id, '.'));
		assert_int_equal(acme_ari_get(c, id, &ri), CS_ENOTFOUND);
		free(id);
	}

	for (size_t i = 0; i < n_alts; i++)
		free(alts[i]);
	crypto_cert_info_free(&info);
	crypto_cert_free(leaf);
	free(roots);
	free(cn_default);
	free(cn_alt);
	free(cn_pick);
	buf_free(&csr);
	buf_free(&der);
	buf_free(&pem);
	buf_free(&alt_pem);
	buf_free(&pick);
	acme_order_free(&o);
	acme_order_free(&fin);
	acme_order_free(&done);
	acme_client_free(c);
	crypto_key_free(acct);
	crypto_key_free(key);
}

/* ---------- problems ---------- */

static void test_pebble_rejected_identifier_is_a_manifest_problem(void **s)
{
	struct crypto_key *acct = NULL;
	struct acme_client *c = account_on(&peb_a, "pa", &acct);
	char *names[] = {"ok.core.test", "blocked.core.test"};
	struct acme_order o;

	(void)s;
	assert_int_equal(acme_order_new(c, names, 2, NULL, NULL, &o), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "issuer pa: acme newOrder /order-plz: rejectedIdentifier (400)"));
	assert_non_null(strstr(cs_errmsg(), "blocked.core.test"));
	expect_class(STATE_FAIL_REJECTED);
	acme_client_free(c);
	crypto_key_free(acct);
}

static void test_pebble_finalize_before_validation_is_order_not_ready(void **s)
{
	struct crypto_key *acct = NULL, *key = NULL;
	struct acme_client *c = account_on(&peb_a, "pa", &acct);
	char *names[] = {"early.core.test"};
	const char *sans[] = {"early.core.test"};
	struct acme_order o, fin;
	struct buf csr = BUF_INIT, der = BUF_INIT;

	(void)s;
	assert_int_equal(acme_order_new(c, names, 1, NULL, NULL, &o), 0);
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	assert_int_equal(crypto_csr_create(key, names[0], sans, 1, &csr), 0);
	assert_int_equal(jose_pem_to_der(csr.data, csr.len, "CERTIFICATE REQUEST", &der), 0);
	assert_int_equal(acme_order_finalize(c, &o, &der, &fin), CS_ECONFLICT);
	assert_non_null(strstr(cs_errmsg(), "orderNotReady"));
	buf_free(&csr);
	buf_free(&der);
	acme_order_free(&o);
	acme_client_free(c);
	crypto_key_free(acct);
	crypto_key_free(key);
}

static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static int seen_400, seen_ok, seen_pages;

static void count_pages(void *arg, const char *op, long status, int64_t ms, const struct http_ratelimit *rl)
{
	(void)arg;
	(void)ms;
	(void)rl;
	pthread_mutex_lock(&seen_mu);
	seen_pages += !strcmp(op, "acme listOrders") && status == 200;
	pthread_mutex_unlock(&seen_mu);
}

static void test_pebble_account_orders_follow_every_page(void **s)
{
	struct crypto_key *acct = NULL;
	struct acme_client *c = account_on(&peb_a, "pa", &acct);
	char *made[5], **urls = NULL;
	size_t n = 0;

	(void)s;
	for (int i = 0; i < 5; i++) { /* three per page: two pages */
		char name[64], *names[] = {name};
		struct acme_order o;

		snprintf(name, sizeof(name), "list%d.core.test", i);
		assert_int_equal(acme_order_new(c, names, 1, NULL, NULL, &o), 0);
		made[i] = xstrdup(o.url);
		acme_order_free(&o);
	}
	http_set_global_observer(count_pages, NULL);
	if (acme_account_orders(c, &urls, &n))
		fail_msg("%s", cs_errmsg());
	http_set_global_observer(NULL, NULL);
	assert_int_equal(n, 5);
	assert_int_equal(seen_pages, 2); /* Link rel="next" was followed */
	for (int i = 0; i < 5; i++) {
		int found = 0;

		for (size_t k = 0; k < n; k++)
			found |= !strcmp(urls[k], made[i]);
		if (!found)
			fail_msg("order %s is not in the list", made[i]);
		free(made[i]);
	}
	for (size_t k = 0; k < n; k++)
		free(urls[k]);
	free(urls);
	acme_client_free(c);
	crypto_key_free(acct);
}

/* ---------- badNonce ---------- */

static void count_answers(void *arg, const char *op, long status, int64_t ms, const struct http_ratelimit *rl)
{
	(void)arg;
	(void)ms;
	(void)rl;
	if (strcmp(op, "acme getOrder"))
		return;
	pthread_mutex_lock(&seen_mu);
	seen_400 += status == 400;
	seen_ok += status == 200;
	pthread_mutex_unlock(&seen_mu);
}

struct worker {
	struct acme_client *c;
	const char *url;
	int ok, bad_nonce_left, other;
};

static void *get_orders(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 5; i++) {
		struct acme_order o;
		int rc = acme_order_get(w->c, w->url, &o);

		if (!rc) {
			w->ok++;
			acme_order_free(&o);
		} else if (strstr(cs_errmsg(), "badNonce")) {
			w->bad_nonce_left++; /* six refusals in a row: 1 in 64 at Pebble's 50 % */
		} else {
			w->other++;
		}
	}
	return NULL;
}

static void test_pebble_bad_nonces_are_signed_again_from_several_threads(void **s)
{
	struct crypto_key *acct = NULL;
	struct acme_client *c = account_on(&peb_b, "pb", &acct);
	char *names[] = {"nonce.core.test"};
	struct acme_order o;
	struct worker w[4];
	pthread_t t[4];
	int ok = 0, left = 0;

	(void)s;
	for (int i = 0; acme_order_new(c, names, 1, NULL, NULL, &o); i++)
		if (i == 2 || !strstr(cs_errmsg(), "badNonce"))
			fail_msg("newOrder: %s", cs_errmsg());
	http_set_global_observer(count_answers, NULL);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){c, o.url, 0, 0, 0};
		assert_int_equal(pthread_create(&t[i], NULL, get_orders, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ok += w[i].ok;
		left += w[i].bad_nonce_left;
		assert_int_equal(w[i].other, 0);
	}
	http_set_global_observer(NULL, NULL);
	/* Pebble refused about half the nonces; retrying got nearly every request through */
	if (ok < 17 || seen_400 == 0)
		fail_msg("%d of 20 requests succeeded (%d gave up on badNonce), %d badNonce answers", ok, left,
			 seen_400);
	assert_int_equal(seen_ok, ok);
	assert_true(acme_nonce_count(c) <= ACME_MAX_NONCES);
	acme_order_free(&o);
	acme_client_free(c);
	crypto_key_free(acct);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pebble_account_needs_eab_and_terms_and_is_found_again),
		cmocka_unit_test(test_pebble_only_return_existing_with_a_fresh_key_is_account_does_not_exist),
		cmocka_unit_test(test_pebble_issues_a_wildcard_certificate_picks_a_chain_and_revokes_it),
		cmocka_unit_test(test_pebble_rejected_identifier_is_a_manifest_problem),
		cmocka_unit_test(test_pebble_finalize_before_validation_is_order_not_ready),
		cmocka_unit_test(test_pebble_account_orders_follow_every_page),
		cmocka_unit_test(test_pebble_bad_nonces_are_signed_again_from_several_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
