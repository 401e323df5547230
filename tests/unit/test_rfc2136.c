/* The rfc2136 DNS driver: UPDATE messages and TSIG (ldns), and updates against a real BIND 9. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "../../reconciler/config.h"
#include "../../reconciler/provider.h"
#include "../../reconciler/providers/rfc2136.h"
#include "../../util/dnsq.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "bindpeer.h"
#include "testutil.h"

#define KEY "certsync-key."
#define SECRET "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM=" /* a known key for the message tests */
#define WRONG "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc0NTY="

static struct bindpeer ns;
static char *dir;
static struct config *cfg;

static const char *const zones[] = {"e.test", "f.test"};
static const char *const extras[] = {"_acme-challenge.alias IN CNAME _acme-challenge.real.f.test.\n", NULL};

static struct config *load(const char *issuers, struct diags *d)
{
	char *yaml = xasprintf("source: {repo: r}\nstate: {path: s.json}\noutput: {root: o}\nissuers:\n%s", issuers);
	struct config *c = NULL;

	config_parse("/etc/certsync/certsync.yaml", yaml, strlen(yaml), &c, d);
	free(yaml);
	return c;
}

static int start(void **state)
{
	struct diags d = DIAGS_INIT;
	char *issuers;

	(void)state;
	dir = test_mkdtemp();
	if (bindpeer_start(&ns, dir, zones, extras, 2))
		return -1;
	setenv("CERTSYNC_TEST_TSIG", ns.secret, 1);
	setenv("CERTSYNC_TEST_TSIG_WRONG", WRONG, 1);
	setenv("CERTSYNC_TEST_TSIG_BAD", "%%-bad-secret-%%", 1);
	issuers = xasprintf(
		"  corpdns:\n    type: rfc2136\n    nameserver: %s\n"
		"    tsig: {name: certsync-key, secret: {env: CERTSYNC_TEST_TSIG}}\n"
		"  listed:\n    type: rfc2136\n    nameserver: %s\n    ttl: 120\n    zones: [f.test, e.test]\n"
		"    tsig: {name: certsync-key., algorithm: HMAC-SHA256, secret: {env: CERTSYNC_TEST_TSIG}}\n"
		"  wrongsecret:\n    type: rfc2136\n    nameserver: %s\n"
		"    tsig: {name: certsync-key., secret: {env: CERTSYNC_TEST_TSIG_WRONG}}\n"
		"  wrongkey:\n    type: rfc2136\n    nameserver: %s\n"
		"    tsig: {name: other-key., secret: {env: CERTSYNC_TEST_TSIG}}\n"
		"  notbase64:\n    type: rfc2136\n    nameserver: %s\n"
		"    tsig: {name: certsync-key., secret: {env: CERTSYNC_TEST_TSIG_BAD}}\n"
		"  elsewhere:\n    type: rfc2136\n    nameserver: %s\n    zones: [other.test]\n"
		"    tsig: {name: certsync-key., secret: {env: CERTSYNC_TEST_TSIG}}\n",
		ns.server, ns.server, ns.server, ns.server, ns.server, ns.server);
	cfg = load(issuers, &d);
	diags_print(&d, stderr);
	diags_free(&d);
	free(issuers);
	return cfg ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	config_free(cfg);
	bindpeer_stop(&ns);
	test_rmdir(dir);
	return 0;
}

/* All diagnostics as text (caller frees). */
static char *diags_text(const struct diags *d)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	diags_print(d, f);
	fclose(f);
	return text;
}

/* Runs a shell command; its output (caller frees). */
static char *run(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	struct buf b = BUF_INIT;
	char chunk[512];
	size_t n;

	while (p && (n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		buf_append(&b, chunk, n);
	if (p)
		pclose(p);
	return buf_detach(&b);
}

/* ---------- messages ---------- */

static struct rfc2136 known_key(const char *alg)
{
	struct rfc2136 r = {.name = "corpdns", .server = "127.0.0.1:53", .key_name = KEY, .ttl = 60, .timeout = 5};

	r.alg = rfc2136_alg(alg, &r.alg_label);
	return r;
}

static ldns_pkt *parse(const struct rfc2136_msg *m)
{
	ldns_pkt *p = NULL;

	assert_int_equal(ldns_wire2pkt(&p, m->wire, m->len), LDNS_STATUS_OK);
	return p;
}

static void expect_txt(const ldns_rr *rr, const char *owner, ldns_rr_class cls, uint32_t ttl, const char *value)
{
	char *o = ldns_rdf2str(ldns_rr_owner(rr)), *v = ldns_rdf2str(ldns_rr_rdf(rr, 0));

	assert_string_equal(o, owner);
	assert_int_equal(ldns_rr_get_type(rr), LDNS_RR_TYPE_TXT);
	assert_int_equal(ldns_rr_get_class(rr), cls);
	assert_int_equal(ldns_rr_ttl(rr), ttl);
	assert_int_equal(ldns_rr_rd_count(rr), 1);
	assert_string_equal(v, value);
	free(o);
	free(v);
}

static void test_update_add_message(void **state)
{
	struct rfc2136 r = known_key("hmac-sha256");
	struct rfc2136_msg m;
	ldns_pkt *p;
	const ldns_rr *q;
	char *zs;

	(void)state;
	assert_int_equal(
		rfc2136_msg_build(&r, SECRET, "example.com", "_acme-challenge.www.example.com", "tok-1", 1, &m), 0);
	p = parse(&m);
	assert_int_equal(ldns_pkt_get_opcode(p), LDNS_PACKET_UPDATE);
	assert_false(ldns_pkt_rd(p));
	/* zone section: the zone's SOA, IN */
	assert_int_equal(ldns_update_zocount(p), 1);
	q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
	zs = ldns_rdf2str(ldns_rr_owner(q));
	assert_string_equal(zs, "example.com.");
	free(zs);
	assert_int_equal(ldns_rr_get_type(q), LDNS_RR_TYPE_SOA);
	assert_int_equal(ldns_rr_get_class(q), LDNS_RR_CLASS_IN);
	/* no prerequisites; one update: the TXT value with the TTL */
	assert_int_equal(ldns_update_prcount(p), 0);
	assert_int_equal(ldns_update_upcount(p), 1);
	expect_txt(ldns_rr_list_rr(ldns_pkt_authority(p), 0), "_acme-challenge.www.example.com.", LDNS_RR_CLASS_IN, 60,
		   "\"tok-1\"");
	/* signed with the key: verifies with it, not with another */
	assert_non_null(ldns_pkt_tsig(p));
	assert_true(ldns_pkt_tsig_verify(p, m.wire, m.len, KEY, SECRET, NULL));
	assert_false(ldns_pkt_tsig_verify(p, m.wire, m.len, KEY, WRONG, NULL));
	assert_true(m.mac.len > 2);
	ldns_pkt_free(p);
	rfc2136_msg_free(&m);
}

static void test_update_delete_removes_only_the_value(void **state)
{
	struct rfc2136 r = known_key("hmac-sha256");
	struct rfc2136_msg m;
	ldns_pkt *p;

	(void)state;
	assert_int_equal(rfc2136_msg_build(&r, SECRET, "example.com", "_acme-challenge.example.com", "tok-2", 0, &m),
			 0);
	p = parse(&m);
	assert_int_equal(ldns_update_prcount(p), 0);
	assert_int_equal(ldns_update_upcount(p), 1);
	/* class NONE, TTL 0, with the value: "delete this RR from the RRset" (RFC 2136 2.5.4), never ANY */
	expect_txt(ldns_rr_list_rr(ldns_pkt_authority(p), 0), "_acme-challenge.example.com.", LDNS_RR_CLASS_NONE, 0,
		   "\"tok-2\"");
	assert_true(ldns_pkt_tsig_verify(p, m.wire, m.len, KEY, SECRET, NULL));
	ldns_pkt_free(p);
	rfc2136_msg_free(&m);
}

static void test_update_long_value_is_split_and_bad_values_refused(void **state)
{
	struct rfc2136 r = known_key("hmac-sha256");
	struct rfc2136_msg m;
	char big[600];
	ldns_pkt *p;
	const ldns_rr *rr;

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(rfc2136_msg_build(&r, SECRET, "example.com", "x.example.com", big, 1, &m), 0);
	p = parse(&m);
	rr = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
	assert_int_equal(ldns_rr_rd_count(rr), 3); /* 255 + 255 + 89 */
	ldns_pkt_free(p);
	rfc2136_msg_free(&m);
	assert_int_equal(rfc2136_msg_build(&r, SECRET, "example.com", "x.example.com", "a\nb", 1, &m), CS_EINVALID);
	assert_int_equal(rfc2136_msg_build(&r, "%%%not base64", "example.com", "x.example.com", "v", 1, &m), CS_EAUTH);
	assert_null(strstr(cs_errmsg(), "%%%not"));
}

static void test_every_tsig_algorithm_signs_and_verifies(void **state)
{
	static const char *const names[] = {"hmac-sha256", "hmac-sha384", "hmac-sha512",
					    "hmac-sha224", "hmac-sha1",	  "hmac-md5"};
	const char *label = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct rfc2136 r = known_key(names[i]);
		struct rfc2136_msg m;
		ldns_pkt *p;
		char *alg;

		assert_non_null(r.alg);
		assert_string_equal(r.alg_label, names[i]);
		assert_int_equal(rfc2136_msg_build(&r, SECRET, "example.com", "x.example.com", "v", 1, &m), 0);
		p = parse(&m);
		alg = ldns_rdf2str(ldns_rr_rdf(ldns_pkt_tsig(p), 0));
		assert_string_equal(alg, r.alg);
		if (i == 1 || i == 3) { /* computed by certsync (ldns cannot): BIND verifies it below */
			const ldns_rr *t = ldns_pkt_tsig(p);
			assert_int_equal(ldns_rdf_size(ldns_rr_rdf(t, 3)), 2 + (i == 1 ? 48 : 28));
			assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(t, 2)), 300);
			assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(t, 4)), ldns_pkt_id(p));
		} else
			assert_true(ldns_pkt_tsig_verify(p, m.wire, m.len, KEY, SECRET, NULL));
		free(alg);
		ldns_pkt_free(p);
		rfc2136_msg_free(&m);
	}
	assert_string_equal(rfc2136_alg("HMAC-MD5.SIG-ALG.REG.INT.", &label), "hmac-md5.sig-alg.reg.int.");
	assert_string_equal(label, "hmac-md5");
	assert_null(rfc2136_alg("hmac-sha3", NULL));
	assert_int_equal(rfc2136_b64_ok(SECRET), 0);
	assert_int_equal(rfc2136_b64_ok("abc"), -1);
	assert_int_equal(rfc2136_b64_ok("ab=c"), -1);
	assert_int_equal(rfc2136_b64_ok(""), -1);
}

/* A nameserver's answer to m: rcode, signed with secret (NULL: unsigned), optional TSIG error. */
static void answer(const struct rfc2136_msg *m, int rcode, const char *secret, uint8_t **wire, size_t *len)
{
	ldns_pkt *q = parse(m), *a = ldns_pkt_new();
	ldns_rdf *mac = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_INT16_DATA, m->mac.len, m->mac.data);

	ldns_pkt_set_id(a, ldns_pkt_id(q));
	ldns_pkt_set_qr(a, true);
	ldns_pkt_set_opcode(a, LDNS_PACKET_UPDATE);
	ldns_pkt_set_rcode(a, (uint8_t)rcode);
	if (secret)
		assert_int_equal(ldns_pkt_tsig_sign(a, KEY, secret, 300, "hmac-sha256.", mac), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt2wire(wire, a, len), LDNS_STATUS_OK);
	ldns_rdf_deep_free(mac);
	ldns_pkt_free(q);
	ldns_pkt_free(a);
}

static int check_answer(int rcode, const char *secret)
{
	struct rfc2136 r = known_key("hmac-sha256");
	struct rfc2136_msg m;
	uint8_t *w = NULL;
	size_t wl = 0;
	int rc;

	assert_int_equal(rfc2136_msg_build(&r, SECRET, "example.com", "x.example.com", "v", 1, &m), 0);
	answer(&m, rcode, secret, &w, &wl);
	rc = rfc2136_msg_answer(&r, SECRET, &m, "example.com", w, wl);
	free(w);
	rfc2136_msg_free(&m);
	return rc;
}

static void test_answers_are_verified_and_classified(void **state)
{
	(void)state;
	assert_int_equal(check_answer(LDNS_RCODE_NOERROR, SECRET), 0);
	/* forged or unsigned answers are never taken for a success */
	assert_int_equal(check_answer(LDNS_RCODE_NOERROR, WRONG), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "does not verify with key certsync-key."));
	assert_string_equal(provider_fail_class_take(), "config");
	assert_int_equal(check_answer(LDNS_RCODE_NOERROR, NULL), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "without a TSIG signature"));
	/* rcodes */
	assert_int_equal(check_answer(LDNS_RCODE_REFUSED, SECRET), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "the nameserver 127.0.0.1:53 refused the update of zone example.com (check "
					    "the TSIG key's update-policy)"));
	assert_string_equal(provider_fail_class_take(), "config");
	assert_int_equal(check_answer(LDNS_RCODE_SERVFAIL, SECRET), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "SERVFAIL"));
	assert_null(provider_fail_class_take());
	assert_int_equal(check_answer(LDNS_RCODE_NOTAUTH, SECRET), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "not authoritative for zone example.com"));
	assert_int_equal(check_answer(LDNS_RCODE_NOTZONE, SECRET), CS_EINVALID);
	assert_int_equal(check_answer(LDNS_RCODE_NOTIMPL, SECRET), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "NOTIMP"));
}

/* ---------- config ---------- */

static void test_config_errors(void **state)
{
	struct diags d = DIAGS_INIT;
	struct config *c;
	char *out;

	(void)state;
	c = load("  x:\n    type: rfc2136\n    nameserver: \"a b:99999\"\n    ttl: 0\n    timeout: 400s\n"
		 "    zones: [\"bad..zone\"]\n"
		 "    tsig: {name: k., algorithm: hmac-sha3, secret: literal-secret}\n"
		 "  y:\n    type: rfc2136\n    nameserver: 127.0.0.1\n",
		 &d);
	assert_null(c);
	out = diags_text(&d);
	assert_non_null(strstr(out, "nameserver: DNS server \"a b:99999\""));
	assert_non_null(strstr(out, "ttl"));
	assert_non_null(strstr(out, "timeout: must be between 1s and 300s"));
	assert_non_null(strstr(out, "zones: \"bad..zone\""));
	assert_non_null(strstr(out, "tsig.algorithm: \"hmac-sha3\" is not one of"));
	assert_non_null(strstr(out, "tsig.secret"));
	assert_non_null(strstr(out, "issuers.y: tsig is required"));
	free(out);
	diags_free(&d);
}

static void test_a_manifest_naming_it_is_refused(void **state)
{
	const struct issuer *is = config_issuer(cfg, "corpdns");
	struct cert_spec s = {.name = "www", .file = "certs/www.yaml", .line = 1, .col = 1};
	struct diags d = DIAGS_INIT;
	struct plan_steps steps;
	char *out;

	(void)state;
	is->ops->check_spec(is, &s, &d);
	out = diags_text(&d);
	assert_non_null(strstr(out, "certs/www.yaml:1:1: certificate \"www\": issuer corpdns (rfc2136) only places "
				    "DNS records; it issues no certificates"));
	assert_int_equal(is->ops->plan(is, CHANGE_CREATE, &s, NULL, &steps), CS_EINVALID);
	free(out);
	diags_free(&d);
}

/* ---------- against BIND ---------- */

static int has(const char *name, const char *value)
{
	int found = -1;

	assert_int_equal(dnsq_txt_has(ns.server, name, value, &found), 0);
	return found;
}

static void test_updates_against_bind_add_and_delete_exact_values(void **state)
{
	const struct issuer *is = config_issuer(cfg, "corpdns");
	const struct dns_driver *dns = is->ops->dns;
	char *ref1 = NULL, *ref2 = NULL, *zone = NULL, *log, *cmd;

	(void)state;
	/* zone discovery by SOA against the nameserver */
	assert_int_equal(dns->zone_for(is, "_acme-challenge.a.b.e.test", &zone), 0);
	assert_string_equal(zone, "e.test");
	free(zone);
	/* the apex and its wildcard share one name: two values side by side */
	assert_int_equal(dns->txt_create(is, "_acme-challenge.e.test", "apex-tok", &ref1), 0);
	assert_string_equal(ref1, "e.test _acme-challenge.e.test apex-tok");
	assert_int_equal(dns->txt_create(is, "_acme-challenge.e.test", "wild-tok", &ref2), 0);
	assert_int_equal(has("_acme-challenge.e.test", "apex-tok"), 1);
	assert_int_equal(has("_acme-challenge.e.test", "wild-tok"), 1);
	/* placing it again changes nothing */
	free(ref2);
	assert_int_equal(dns->txt_create(is, "_acme-challenge.e.test", "wild-tok", &ref2), 0);
	/* deleting one value leaves the other */
	assert_int_equal(dns->txt_delete(is, "_acme-challenge.e.test", "apex-tok", ref1), 0);
	assert_int_equal(has("_acme-challenge.e.test", "apex-tok"), 0);
	assert_int_equal(has("_acme-challenge.e.test", "wild-tok"), 1);
	/* without a ref (a crash before it was recorded) the zone is found again */
	assert_int_equal(dns->txt_delete(is, "_acme-challenge.e.test", "wild-tok", NULL), 0);
	assert_int_equal(has("_acme-challenge.e.test", "wild-tok"), 0);
	/* deleting what is gone is fine */
	assert_int_equal(dns->txt_delete(is, "_acme-challenge.e.test", "wild-tok", ref2), 0);
	/* the ref names the value placed: removing an older token with the caller's newer one deletes the old */
	free(ref2);
	assert_int_equal(dns->txt_create(is, "_acme-challenge.e.test", "old-tok", &ref2), 0);
	free(ref1);
	assert_int_equal(dns->txt_create(is, "_acme-challenge.e.test", "new-tok", &ref1), 0);
	assert_int_equal(dns->txt_delete(is, "_acme-challenge.e.test", "new-tok", ref2), 0);
	assert_int_equal(has("_acme-challenge.e.test", "old-tok"), 0);
	assert_int_equal(has("_acme-challenge.e.test", "new-tok"), 1);
	/* an older two-field ref ("zone owner") deletes the value given */
	assert_int_equal(dns->txt_delete(is, "_acme-challenge.e.test", "new-tok", "e.test _acme-challenge.e.test"), 0);
	assert_int_equal(has("_acme-challenge.e.test", "new-tok"), 0);
	log = run(cmd = xasprintf("cat %s/named.log", ns.dir));
	assert_non_null(strstr(log, "adding an RR at '_acme-challenge.e.test' TXT \"apex-tok\""));
	assert_non_null(strstr(log, "deleting an RR at _acme-challenge.e.test TXT"));
	free(log);
	free(cmd);
	free(ref1);
	free(ref2);
}

static void test_updates_follow_a_cname_into_its_zone(void **state)
{
	const struct issuer *is = config_issuer(cfg, "corpdns");
	char *ref = NULL, *zone = NULL;

	(void)state;
	assert_int_equal(is->ops->dns->zone_for(is, "_acme-challenge.alias.e.test", &zone), 0);
	assert_string_equal(zone, "f.test");
	assert_int_equal(is->ops->dns->txt_create(is, "_acme-challenge.alias.e.test", "via-cname", &ref), 0);
	assert_string_equal(ref, "f.test _acme-challenge.real.f.test via-cname");
	assert_int_equal(has("_acme-challenge.real.f.test", "via-cname"), 1);
	assert_int_equal(is->ops->dns->txt_delete(is, "_acme-challenge.alias.e.test", "via-cname", ref), 0);
	assert_int_equal(has("_acme-challenge.real.f.test", "via-cname"), 0);
	free(zone);
	free(ref);
}

static void test_configured_zones_win_and_ttl_applies(void **state)
{
	const struct issuer *is = config_issuer(cfg, "listed");
	char *ref = NULL, *zone = NULL, *cmd, *out;

	(void)state;
	assert_int_equal(is->ops->dns->zone_for(is, "_acme-challenge.x.F.test", &zone), 0);
	assert_string_equal(zone, "f.test");
	free(zone);
	assert_int_equal(is->ops->dns->zone_for(is, "_acme-challenge.x.g.test", &zone), CS_ENOTFOUND);
	assert_non_null(
		strstr(cs_errmsg(), "no configured zone contains _acme-challenge.x.g.test (issuers.listed.zones)"));
	assert_int_equal(is->ops->dns->txt_create(is, "_acme-challenge.t.f.test", "ttl-tok", &ref), 0);
	assert_int_equal(has("_acme-challenge.t.f.test", "ttl-tok"), 1);
	cmd = xasprintf("dig +norec +noall +answer -p %d @127.0.0.1 TXT _acme-challenge.t.f.test", ns.port);
	out = run(cmd);
	if (!strstr(out, " 120\tIN\tTXT\t\"ttl-tok\""))
		fail_msg("dig: %s", out);
	free(out);
	free(cmd);
	assert_int_equal(is->ops->dns->txt_delete(is, "_acme-challenge.t.f.test", "ttl-tok", ref), 0);
	free(ref);
}

/* An update through the issuer's own messages, its signed answer optionally altered in one bit. */
static int update_raw(const struct issuer *is, const char *secret, const char *zone, int tamper)
{
	const struct rfc2136 *r = is->priv;
	struct rfc2136_msg m;
	uint8_t *ans = NULL;
	size_t alen = 0;
	int rc;

	assert_int_equal(rfc2136_msg_build(r, secret, zone, zone, "raw", 1, &m), 0);
	assert_int_equal(dnsq_exchange(r->server, 3000, m.wire, m.len, &ans, &alen), 0);
	if (tamper)
		ans[3] ^= 0x10; /* the CD bit: covered by the MAC */
	rc = rfc2136_msg_answer(r, secret, &m, zone, ans, alen);
	free(ans);
	rfc2136_msg_free(&m);
	return rc;
}

static void test_tsig_algorithms_ldns_lacks_work_with_bind(void **state)
{
	static const char *const algs[] = {"hmac-sha384", "hmac-sha224", "hmac-sha512"};
	static const char *const gz[] = {"g.test"};

	(void)state;
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		struct bindpeer b;
		struct diags d = DIAGS_INIT;
		struct config *c;
		char *issuers, *ref = NULL;
		const struct issuer *is;
		int found = 0;

		assert_int_equal(bindpeer_start_alg(&b, dir, algs[i], gz, NULL, 1), 0);
		setenv("CERTSYNC_TEST_TSIG_ALG", b.secret, 1);
		issuers = xasprintf(
			"  alg:\n    type: rfc2136\n    nameserver: %s\n"
			"    tsig: {name: certsync-key., algorithm: %s, secret: {env: CERTSYNC_TEST_TSIG_ALG}}\n",
			b.server, algs[i]);
		c = load(issuers, &d);
		assert_non_null(c);
		is = config_issuer(c, "alg");
		/* BIND accepts the signed update and its signed answer verifies */
		assert_int_equal(is->ops->dns->txt_create(is, "_acme-challenge.g.test", algs[i], &ref), 0);
		assert_int_equal(dnsq_txt_has(b.server, "_acme-challenge.g.test", algs[i], &found), 0);
		assert_int_equal(found, 1);
		assert_int_equal(is->ops->dns->txt_delete(is, "_acme-challenge.g.test", algs[i], ref), 0);
		assert_int_equal(dnsq_txt_has(b.server, "_acme-challenge.g.test", algs[i], &found), 0);
		assert_int_equal(found, 0);
		/* an answer altered on the way does not verify */
		assert_int_equal(update_raw(is, b.secret, "g.test", 0), 0);
		assert_int_equal(update_raw(is, b.secret, "g.test", 1), CS_EAUTH);
		assert_non_null(strstr(cs_errmsg(), "does not verify"));
		free(ref);
		free(issuers);
		config_free(c);
		diags_free(&d);
		bindpeer_stop(&b);
	}
}

static void expect_refused(const char *issuer, int code, const char *text)
{
	const struct issuer *is = config_issuer(cfg, issuer);
	char *ref = NULL;

	assert_int_equal(is->ops->dns->txt_create(is, "_acme-challenge.e.test", "tok", &ref), code);
	assert_null(ref);
	if (!strstr(cs_errmsg(), text))
		fail_msg("%s: got \"%s\", want \"%s\"", issuer, cs_errmsg(), text);
	assert_null(strstr(cs_errmsg(), ns.secret));
	assert_null(strstr(cs_errmsg(), WRONG));
}

static void test_bind_refusals_are_clear_configuration_errors(void **state)
{
	(void)state;
	expect_refused("wrongsecret", CS_EAUTH, "BADSIG: the secret does not match");
	expect_refused("wrongkey", CS_EAUTH, "BADKEY: the nameserver does not know this key");
	expect_refused("notbase64", CS_EAUTH, "issuer notbase64: tsig.secret");
}

static void test_check_offline_and_online(void **state)
{
	static const struct {
		const char *issuer;
		int online;
		const char *note, *problem;
	} cases[] = {
		{"corpdns", 0, "TSIG key certsync-key. (hmac-sha256) for nameserver", NULL},
		{"corpdns", 1, "answers with TSIG key certsync-key. (hmac-sha256)", NULL},
		{"listed", 1, "for zone f.test", NULL},
		{"wrongsecret", 0, "TSIG key", NULL},
		{"wrongsecret", 1, NULL, "BADSIG"},
		{"wrongkey", 1, NULL, "BADKEY"},
		{"notbase64", 0, NULL, "is not base64"},
		{"elsewhere", 1, NULL, "REFUSED to a signed SOA query for zone other.test"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct issuer *is = config_issuer(cfg, cases[i].issuer);
		struct provider_check c = {0};

		is->ops->check(is, cases[i].online, &c);
		if (cases[i].note) {
			assert_int_equal(c.n_problems, 0);
			assert_non_null(strstr(c.note, cases[i].note));
		} else {
			assert_int_equal(c.n_problems, 1);
			if (!strstr(c.problems[0], cases[i].problem))
				fail_msg("%s: %s", cases[i].issuer, c.problems[0]);
			assert_null(strstr(c.problems[0], ns.secret));
		}
		provider_check_free(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_add_message),
		cmocka_unit_test(test_update_delete_removes_only_the_value),
		cmocka_unit_test(test_update_long_value_is_split_and_bad_values_refused),
		cmocka_unit_test(test_every_tsig_algorithm_signs_and_verifies),
		cmocka_unit_test(test_answers_are_verified_and_classified),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_a_manifest_naming_it_is_refused),
		cmocka_unit_test(test_updates_against_bind_add_and_delete_exact_values),
		cmocka_unit_test(test_updates_follow_a_cname_into_its_zone),
		cmocka_unit_test(test_configured_zones_win_and_ttl_applies),
		cmocka_unit_test(test_bind_refusals_are_clear_configuration_errors),
		cmocka_unit_test(test_tsig_algorithms_ldns_lacks_work_with_bind),
		cmocka_unit_test(test_check_offline_and_online),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
