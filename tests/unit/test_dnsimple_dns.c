/* The DNSimple DNS driver (TXT create / find / delete) against the DNSimple simulator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../reconciler/config.h"
#include "../../reconciler/provider.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "testutil.h"

static pid_t sim_pid;
static char url[128];
static char *dir;
static struct config *cfg;

static int start(void **state)
{
	int out[2];
	char line[160] = "", *yaml, *script, *sdir;
	FILE *f;
	struct diags d = DIAGS_INIT;

	(void)state;
	dir = test_mkdtemp();
	script = xasprintf("%s/tests/fakes/dnsimple/server.py", test_srcdir());
	sdir = xasprintf("%s/sim", dir);
	if (pipe(out))
		return -1;
	sim_pid = fork();
	if (sim_pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		execl("/usr/bin/python3", "python3", script, "--port", "0", "--state-dir", sdir, "--token", "t0k3n-dns",
		      "--account", "1010", "--domain", "pizza.company", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	f = fdopen(out[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "READY %127s", url) != 1)
		return -1;
	fclose(f);
	setenv("CERTSYNC_TEST_DNS_TOKEN", "t0k3n-dns", 1);
	yaml = xasprintf(
		"source: {repo: r}\nstate: {path: s.json}\noutput: {root: o}\nissuers:\n"
		"  dns:\n    type: dnsimple\n    account: \"1010\"\n    token: {env: CERTSYNC_TEST_DNS_TOKEN}\n"
		"    baseURL: %s\n    zones: [pizza.company]\n"
		"  disc:\n    type: dnsimple\n    account: \"1010\"\n    token: {env: CERTSYNC_TEST_DNS_TOKEN}\n"
		"    baseURL: %s\n",
		url, url);
	config_parse("/tmp/c.yaml", yaml, strlen(yaml), &cfg, &d);
	diags_print(&d, stderr);
	diags_free(&d);
	free(yaml);
	free(script);
	free(sdir);
	return cfg ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	config_free(cfg);
	kill(sim_pid, SIGTERM);
	waitpid(sim_pid, NULL, 0);
	test_rmdir(dir);
	return 0;
}

/* The zone's TXT records as the simulator holds them. */
static char *zone_dump(void)
{
	char *cmd = xasprintf("curl -s %s/_sim/zone/pizza.company/records", url);
	FILE *p = popen(cmd, "r");
	struct buf b = BUF_INIT;
	char chunk[512];
	size_t n;

	while (p && (n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		buf_append(&b, chunk, n);
	if (p)
		pclose(p);
	free(cmd);
	return buf_detach(&b);
}

static void test_dns_txt_create_find_and_delete(void **state)
{
	const struct issuer *is = config_issuer(cfg, "dns");
	const struct dns_driver *dns = is->ops->dns;
	char *ref = NULL, *ref2 = NULL, *z;

	(void)state;
	assert_non_null(dns);
	/* a record at a name inside the zone: the name is sent relative to it */
	assert_int_equal(dns->txt_create(is, "_dnsauth.www.pizza.company", "token-abc", &ref), 0);
	z = zone_dump();
	assert_non_null(strstr(z, "\"name\": \"_dnsauth.www\""));
	assert_non_null(strstr(z, "token-abc"));
	free(z);
	/* creating it again hits "Matching record already exists": found by listing, same record */
	assert_int_equal(dns->txt_create(is, "_dnsauth.www.pizza.company", "token-abc", &ref2), 0);
	assert_string_equal(ref, ref2);
	/* the apex is the empty name, always sent */
	free(ref2);
	assert_int_equal(dns->txt_create(is, "pizza.company", "apex-token", &ref2), 0);
	z = zone_dump();
	assert_non_null(strstr(z, "\"name\": \"\""));
	free(z);
	assert_int_equal(dns->txt_delete(is, "_dnsauth.www.pizza.company", "token-abc", ref), 0);
	assert_int_equal(dns->txt_delete(is, "pizza.company", "apex-token", NULL), 0); /* found by content */
	z = zone_dump();
	assert_string_equal(z, "[]");
	free(z);
	/* deleting what is gone is fine; a name outside every zone is not */
	assert_int_equal(dns->txt_delete(is, "_dnsauth.www.pizza.company", "token-abc", ref), 0);
	free(ref2);
	ref2 = NULL;
	assert_int_equal(dns->txt_create(is, "www.other.test", "x", &ref2), CS_ENOTFOUND);
	assert_null(ref2);
	assert_non_null(strstr(cs_errmsg(), "no configured zone contains www.other.test"));
	free(ref);
	free(ref2);
	is->ops->end_run(is);
}

/* POSTs a JSON body to the simulator's control path; its answer (caller frees). */
static char *sim_ctl(const char *path, const char *body)
{
	char *cmd = body ? xasprintf("curl -s -X POST -d '%s' %s/_sim/%s", body, url, path)
			 : xasprintf("curl -s %s/_sim/%s", url, path);
	FILE *p = popen(cmd, "r");
	struct buf b = BUF_INIT;
	char chunk[512];
	size_t n;

	while (p && (n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		buf_append(&b, chunk, n);
	if (p)
		pclose(p);
	free(cmd);
	return buf_detach(&b);
}

static void test_dns_zone_discovered_from_the_account_zone_list(void **state)
{
	const struct issuer *is = config_issuer(cfg, "disc");
	const struct dns_driver *dns = is->ops->dns;
	struct buf names = BUF_INIT;
	char *ref = NULL, *zone = NULL, *out;

	(void)state;
	/* 150 zones: the list spans two pages of 100 */
	buf_puts(&names, "{\"names\": [\"shop.test\", \"sub.shop.test\"");
	for (int i = 0; i < 148; i++)
		buf_printf(&names, ", \"z%03d.example\"", i);
	buf_puts(&names, "]}");
	free(sim_ctl("zones", names.data));
	assert_non_null(dns->zone_for);
	/* the longest suffix wins */
	assert_int_equal(dns->zone_for(is, "_dnsauth.a.sub.shop.test", &zone), 0);
	assert_string_equal(zone, "sub.shop.test");
	free(zone);
	assert_int_equal(dns->zone_for(is, "_dnsauth.shop.test", &zone), 0);
	assert_string_equal(zone, "shop.test");
	free(zone);
	assert_int_equal(dns->zone_for(is, "_dnsauth.x.z147.example", &zone), 0); /* on the second page */
	assert_string_equal(zone, "z147.example");
	free(zone);
	assert_int_equal(dns->zone_for(is, "_dnsauth.nowhere.test", &zone), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "no zone of DNSimple account 1010 contains _dnsauth.nowhere.test"));
	/* the record goes into the discovered zone, relative to it */
	assert_int_equal(dns->txt_create(is, "_dnsauth.a.sub.shop.test", "disc-token", &ref), 0);
	assert_int_equal(strncmp(ref, "sub.shop.test/", 14), 0);
	out = sim_ctl("zone/sub.shop.test/records", NULL);
	assert_non_null(strstr(out, "\"name\": \"_dnsauth.a\""));
	assert_non_null(strstr(out, "disc-token"));
	free(out);
	assert_int_equal(dns->txt_delete(is, "_dnsauth.a.sub.shop.test", "disc-token", NULL), 0);
	out = sim_ctl("zone/sub.shop.test/records", NULL);
	assert_string_equal(out, "[]");
	free(out);
	/* listed once for the run: two pages */
	out = sim_ctl("counters", NULL);
	if (!strstr(out, "\"listZones\": 2,") && !strstr(out, "\"listZones\": 2}"))
		fail_msg("counters: %s", out);
	free(out);
	free(ref);
	buf_free(&names);
	is->ops->end_run(is);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns_txt_create_find_and_delete),
		cmocka_unit_test(test_dns_zone_discovered_from_the_account_zone_list),
	};

	return cmocka_run_group_tests(tests, start, stop);
}
