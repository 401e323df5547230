/* util/dnsq against a real BIND 9: zone discovery, CNAME chains, NS lookup, TXT checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/dnsq.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "bindpeer.h"
#include "testutil.h"

static struct bindpeer ns;
static char *dir;
static const char *srv[1];

static const char *const zones[] = {"a.test", "c.a.test", "b.test"};
static const char *const extras[] = {
	/* a.test */
	"_acme-challenge.www IN CNAME _acme-challenge.www.b.test.\n"
	"_acme-challenge.two IN CNAME hop1\n"
	"hop1 IN CNAME _acme-challenge.www.b.test.\n"
	"_acme-challenge.loop IN CNAME loop2\n"
	"loop2 IN CNAME _acme-challenge.loop\n"
	"_acme-challenge.out IN CNAME _acme-challenge.www.elsewhere.test.\n"
	"_acme-challenge.t IN TXT \"tok-1\"\n"
	"_acme-challenge.t IN TXT \"part1\" \"part2\"\n"
	"c IN NS ns1.c.a.test.\n"
	"sub IN NS ns.elsewhere.test.\n",
	NULL,
	NULL,
};

static int start(void **state)
{
	(void)state;
	dir = test_mkdtemp();
	if (bindpeer_start(&ns, dir, zones, extras, 3))
		return -1;
	srv[0] = ns.server;
	return 0;
}

static int stop(void **state)
{
	(void)state;
	bindpeer_stop(&ns);
	test_rmdir(dir);
	return 0;
}

static void expect_zone(const char *fqdn, const char *want_target, const char *want_zone)
{
	char *target = NULL, *zone = NULL;
	int rc = dnsq_find_zone(srv, 1, fqdn, &target, &zone);

	if (rc)
		fprintf(stderr, "%s: %s\n", fqdn, cs_errmsg());
	assert_int_equal(rc, 0);
	assert_string_equal(target, want_target);
	assert_string_equal(zone, want_zone);
	free(target);
	free(zone);
}

static void test_find_zone_of_a_deep_name_from_the_negative_answer(void **state)
{
	(void)state;
	expect_zone("_acme-challenge.p.q.r.a.test", "_acme-challenge.p.q.r.a.test", "a.test");
	expect_zone("_ACME-challenge.X.y.a.test.", "_acme-challenge.x.y.a.test", "a.test");
	expect_zone("a.test", "a.test", "a.test");
}

static void test_find_zone_prefers_the_child_zone(void **state)
{
	(void)state;
	expect_zone("_acme-challenge.x.y.z.c.a.test", "_acme-challenge.x.y.z.c.a.test", "c.a.test");
}

static void test_find_zone_of_a_delegated_name_is_the_child(void **state)
{
	(void)state;
	expect_zone("_acme-challenge.www.sub.a.test", "_acme-challenge.www.sub.a.test", "sub.a.test");
}

static void test_find_zone_follows_cnames_into_another_zone(void **state)
{
	(void)state;
	expect_zone("_acme-challenge.www.a.test", "_acme-challenge.www.b.test", "b.test");
	expect_zone("_acme-challenge.two.a.test", "_acme-challenge.www.b.test", "b.test");
}

static void test_find_zone_refuses_a_cname_loop(void **state)
{
	char *target = NULL, *zone = NULL;

	(void)state;
	assert_int_equal(dnsq_find_zone(srv, 1, "_acme-challenge.loop.a.test", &target, &zone), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "longer than 8"));
	assert_null(target);
}

static void test_find_zone_not_served_is_not_found(void **state)
{
	char *target = NULL, *zone = NULL;

	(void)state;
	assert_int_equal(dnsq_find_zone(srv, 1, "_acme-challenge.www.other.test", &target, &zone), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "no DNS zone holds _acme-challenge.www.other.test"));
	/* A CNAME out of the server's zones names both ends. */
	assert_int_equal(dnsq_find_zone(srv, 1, "_acme-challenge.out.a.test", &target, &zone), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "_acme-challenge.www.elsewhere.test"));
	assert_non_null(strstr(cs_errmsg(), "CNAME target of _acme-challenge.out.a.test"));
	assert_int_equal(dnsq_find_zone(srv, 1, "bad name..test", &target, &zone), CS_EINVALID);
}

static void test_find_zone_with_no_server_answering_is_transient_and_bounded(void **state)
{
	char dead[32], *target = NULL, *zone = NULL;
	const char *servers[2] = {dead, NULL};
	int64_t t0;

	(void)state;
	snprintf(dead, sizeof(dead), "127.0.0.1:%d", bindpeer_free_port());
	t0 = util_mono_ms();
	assert_int_equal(dnsq_find_zone(servers, 1, "_acme-challenge.www.a.test", &target, &zone), CS_ETRANSIENT);
	assert_true(util_mono_ms() - t0 < DNSQ_TIMEOUT_MS + 1500);
	assert_non_null(strstr(cs_errmsg(), dead));
	/* The next server answers. */
	servers[1] = ns.server;
	assert_int_equal(dnsq_find_zone(servers, 2, "_acme-challenge.q.a.test", &target, &zone), 0);
	assert_string_equal(zone, "a.test");
	free(target);
	free(zone);
}

static void test_zone_nameservers_resolves_the_ns_records(void **state)
{
	struct dnsq_servers nss = {0};

	(void)state;
	assert_int_equal(dnsq_zone_nameservers(srv, 1, "b.test", &nss), 0);
	assert_int_equal(nss.n, 1);
	assert_string_equal(nss.addr[0], "127.0.0.1:53");
	dnsq_servers_free(&nss);
	/* sub.a.test's NS (ns.elsewhere.test) has no address this server knows. */
	assert_int_equal(dnsq_zone_nameservers(srv, 1, "sub.a.test", &nss), CS_ENOTFOUND);
	assert_int_equal(dnsq_zone_nameservers(srv, 1, "other.test", &nss), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "REFUSED"));
}

static void test_txt_has_matches_exact_values(void **state)
{
	int found = -1;

	(void)state;
	assert_int_equal(dnsq_txt_has(ns.server, "_acme-challenge.t.a.test", "tok-1", &found), 0);
	assert_int_equal(found, 1);
	assert_int_equal(dnsq_txt_has(ns.server, "_acme-challenge.t.a.test", "part1part2", &found), 0);
	assert_int_equal(found, 1);
	assert_int_equal(dnsq_txt_has(ns.server, "_acme-challenge.t.a.test", "tok-", &found), 0);
	assert_int_equal(found, 0);
	assert_int_equal(dnsq_txt_has(ns.server, "_acme-challenge.t.a.test", "part1", &found), 0);
	assert_int_equal(found, 0);
	assert_int_equal(dnsq_txt_has(ns.server, "_acme-challenge.none.a.test", "tok-1", &found), 0);
	assert_int_equal(found, 0);
	assert_int_equal(dnsq_txt_has(ns.server, "_acme-challenge.x.other.test", "tok-1", &found), CS_ETRANSIENT);
	assert_non_null(strstr(cs_errmsg(), "REFUSED"));
}

static void test_parse_server_forms(void **state)
{
	char host[64];
	int port = 0;

	(void)state;
	assert_int_equal(dnsq_parse_server("127.0.0.1", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 53);
	assert_int_equal(dnsq_parse_server("ns1.example.com:5353", host, sizeof(host), &port), 0);
	assert_string_equal(host, "ns1.example.com");
	assert_int_equal(port, 5353);
	assert_int_equal(dnsq_parse_server("[::1]:54", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 54);
	assert_int_equal(dnsq_parse_server("::1", host, sizeof(host), &port), 0);
	assert_int_equal(port, 53);
	assert_int_equal(dnsq_parse_server("1.2.3.4:0", host, sizeof(host), &port), CS_EINVALID);
	assert_int_equal(dnsq_parse_server("1.2.3.4:65536", host, sizeof(host), &port), CS_EINVALID);
	assert_int_equal(dnsq_parse_server("[::1", host, sizeof(host), &port), CS_EINVALID);
	assert_int_equal(dnsq_parse_server("a b:53", host, sizeof(host), &port), CS_EINVALID);
	assert_int_equal(dnsq_parse_server("", host, sizeof(host), &port), CS_EINVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_zone_of_a_deep_name_from_the_negative_answer),
		cmocka_unit_test(test_find_zone_prefers_the_child_zone),
		cmocka_unit_test(test_find_zone_of_a_delegated_name_is_the_child),
		cmocka_unit_test(test_find_zone_follows_cnames_into_another_zone),
		cmocka_unit_test(test_find_zone_refuses_a_cname_loop),
		cmocka_unit_test(test_find_zone_not_served_is_not_found),
		cmocka_unit_test(test_find_zone_with_no_server_answering_is_transient_and_bounded),
		cmocka_unit_test(test_zone_nameservers_resolves_the_ns_records),
		cmocka_unit_test(test_txt_has_matches_exact_values),
		cmocka_unit_test(test_parse_server_forms),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
