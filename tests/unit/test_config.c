/* certsync.yaml: schema, defaults, credential references, error quality. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../reconciler/backends.h"
#include "../../reconciler/config.h"
#include "../../reconciler/provider.h"
#include "../../state/keystore.h"
#include "../../state/state.h"
#include "../../state/state_pg.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/redact.h"
#include "../../util/util.h"
#include "testutil.h"

static const char *good = "source:\n"
			  "  repo: repo\n"
			  "  ref: main\n"
			  "  path: certificates\n"
			  "  interval: 2m\n"
			  "state:\n"
			  "  path: /var/lib/certsync/state.json\n"
			  "output:\n"
			  "  root: certs\n"
			  "issuers:\n"
			  "  internal:\n"
			  "    type: ca\n"
			  "    generate: {dir: ca}\n"
			  "  self:\n"
			  "    type: ca\n"
			  "    selfSigned: true\n"
			  "    duration: 30d\n"
			  "policy:\n"
			  "  prune: true\n"
			  "  maxPaidOrders: 3\n"
			  "hooks:\n"
			  "  onChange: [/usr/sbin/nginx, -s, reload]\n";

/* Parses text as /etc/certsync/certsync.yaml; returns the config (or NULL) and the diagnostics as lines. */
static struct config *parse(const char *text, char **diag_text)
{
	struct diags d = DIAGS_INIT;
	struct config *c = NULL;
	struct buf b = BUF_INIT;

	config_parse("/etc/certsync/certsync.yaml", text, strlen(text), &c, &d);
	for (size_t i = 0; i < d.n; i++) {
		char *s = diag_format(&d.v[i]);

		buf_printf(&b, "%s\n", s);
		free(s);
	}
	*diag_text = buf_detach(&b);
	diags_free(&d);
	return c;
}

static void test_config_parses_every_section(void **state)
{
	char *diag;
	struct config *c = parse(good, &diag);

	(void)state;
	assert_string_equal(diag, "");
	assert_non_null(c);
	assert_string_equal(c->source.repo, "/etc/certsync/repo");
	assert_string_equal(c->source.ref, "main");
	assert_string_equal(c->source.path, "certificates");
	assert_int_equal(c->source.interval, 120);
	assert_string_equal(c->state_path, "/var/lib/certsync/state.json");
	assert_string_equal(c->key_dir, "/var/lib/certsync/keys");
	assert_string_equal(c->source.cache_dir, "/var/lib/certsync/cache");
	assert_string_equal(c->output_root, "/etc/certsync/certs");
	assert_int_equal(c->n_issuers, 2);
	assert_non_null(config_issuer(c, "internal"));
	assert_string_equal(config_issuer(c, "self")->ops->type, "ca");
	assert_null(config_issuer(c, "nope"));
	assert_int_equal(c->policy.prune, 1);
	assert_int_equal(c->policy.max_paid_orders, 3);
	assert_int_equal(c->hooks.n_on_change, 3);
	assert_string_equal(c->hooks.on_change[2], "reload");
	assert_null(c->hooks.on_change[3]);
	config_free(c);
	free(diag);
}

static void test_config_defaults(void **state)
{
	char *diag;
	struct config *c = parse("source: {repo: https://git.example.com/certs.git}\nstate: {path: s/state.json}\n"
				 "output: {root: /srv/certs}\nissuers: {ca: {type: ca, selfSigned: true}}\n",
				 &diag);

	(void)state;
	assert_string_equal(diag, "");
	assert_string_equal(c->source.repo, "https://git.example.com/certs.git");
	assert_string_equal(c->source.ref, "HEAD");
	assert_string_equal(c->source.path, "");
	assert_int_equal(c->source.interval, 60);
	assert_int_equal(c->policy.max_paid_orders, 10);
	assert_int_equal(c->policy.prune, 0);
	assert_string_equal(c->server.listen, "127.0.0.1:9402");
	assert_string_equal(c->state_path, "/etc/certsync/s/state.json");
	config_free(c);
	free(diag);
}

static void test_config_reports_all_problems_with_positions(void **state)
{
	char *diag;
	struct config *c = parse("source:\n"
				 "  repo: repo\n"
				 "  reff: main\n"
				 "  interval: soon\n"
				 "state: {path: s.json}\n"
				 "output: {root: out}\n"
				 "issuers:\n"
				 "  internal:\n"
				 "    type: venafi\n"
				 "  self:\n"
				 "    type: ca\n"
				 "policy:\n"
				 "  maxPaidOrders: lots\n"
				 "  prune: yes\n",
				 &diag);

	(void)state;
	assert_null(c);
	assert_string_equal(
		diag, "/etc/certsync/certsync.yaml:3:3: unknown field \"reff\" in source (did you mean \"ref\"?)\n"
		      "/etc/certsync/certsync.yaml:4:13: source.interval: \"soon\" is not a duration (use units d, h, "
		      "m, s: \"720h\", \"30d\", \"1h30m\")\n"
		      "/etc/certsync/certsync.yaml:9:11: issuers.internal.type: unknown issuer type \"venafi\" (known "
		      "types: ca, dnsimple, digicert, rfc2136, acme)\n"
		      "/etc/certsync/certsync.yaml:11:5: issuers.self: give exactly one of ca: {certFile, keyFile}, "
		      "generate: {dir}, or selfSigned: true\n"
		      "/etc/certsync/certsync.yaml:13:18: policy.maxPaidOrders: expected an integer, got \"lots\"\n"
		      "/etc/certsync/certsync.yaml:14:10: policy.prune: expected true or false, got \"yes\"\n");
	free(diag);
}

static void test_config_requires_sections(void **state)
{
	char *diag;
	struct config *c = parse("policy: {prune: false}\n", &diag);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(diag, "missing required section \"source\""));
	assert_non_null(strstr(diag, "missing required section \"state\""));
	assert_non_null(strstr(diag, "missing required section \"output\""));
	assert_non_null(strstr(diag, "missing required section \"issuers\""));
	free(diag);
}

static void test_config_refuses_inline_secrets(void **state)
{
	char *diag;
	struct config *c = parse("source: {repo: https://x.test/r.git, token: ghp_secret123}\nstate: {path: s.json}\n"
				 "output: {root: out}\nissuers: {ca: {type: ca, selfSigned: true}}\n",
				 &diag);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(diag, "1:45: source.token: a secret cannot be written in the config"));
	assert_null(strstr(diag, "ghp_secret123"));
	free(diag);
}

static void test_config_cred_env_and_file(void **state)
{
	char *dir = test_mkdtemp();
	char *ok = test_write(dir, "token", "s3cret-token\n", 0600);
	char *open_file = test_write(dir, "open", "s3cret-token\n", 0644);
	struct cred c = {CRED_ENV, (char *)"CERTSYNC_TEST_TOKEN", (char *)"c.yaml:1:1"};
	struct buf b = BUF_INIT;

	(void)state;
	unsetenv("CERTSYNC_TEST_TOKEN");
	assert_int_equal(config_cred_read(&c, "source.token", &b), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "CERTSYNC_TEST_TOKEN"));
	setenv("CERTSYNC_TEST_TOKEN", "env-value", 1);
	assert_int_equal(config_cred_read(&c, "source.token", &b), 0);
	assert_string_equal(b.data, "env-value");
	buf_wipe(&b);
	c.kind = CRED_FILE;
	c.ref = ok;
	assert_int_equal(config_cred_read(&c, "source.token", &b), 0);
	assert_string_equal(b.data, "s3cret-token"); /* trailing newline stripped */
	buf_wipe(&b);
	c.ref = open_file;
	assert_int_equal(config_cred_read(&c, "source.token", &b), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "readable by group or others"));
	assert_null(strstr(cs_errmsg(), "s3cret"));
	buf_wipe(&b);
	unsetenv("CERTSYNC_TEST_TOKEN");
	free(ok);
	free(open_file);
	test_rmdir(dir);
}

static void test_config_overrides(void **state)
{
	char *diag;
	struct config *c = parse(good, &diag);

	(void)state;
	config_override(c, "https://git.example.com/other.git", "feature-x", "certs", "/tmp/st/state.json", NULL);
	assert_string_equal(c->source.repo, "https://git.example.com/other.git");
	assert_string_equal(c->source.ref, "feature-x");
	assert_string_equal(c->source.path, "certs");
	assert_string_equal(c->state_path, "/tmp/st/state.json");
	assert_string_equal(c->key_dir, "/tmp/st/keys");
	assert_string_equal(c->output_root, "/etc/certsync/certs");
	config_free(c);
	free(diag);
}

static void test_config_load_missing_file(void **state)
{
	struct diags d = DIAGS_INIT;
	struct config *c = NULL;

	(void)state;
	assert_int_equal(config_load("/nonexistent/certsync.yaml", &c, &d), CS_ENOTFOUND);
	assert_non_null(strstr(cs_errmsg(), "/nonexistent/certsync.yaml"));
	assert_null(c);
	diags_free(&d);
}

static void test_config_duplicate_issuer_and_bad_hook(void **state)
{
	char *diag;
	struct config *c = parse("source: {repo: r}\nstate: {path: s.json}\noutput: {root: out}\n"
				 "issuers:\n  a: {type: ca, selfSigned: true}\n  a: {type: ca, selfSigned: true}\n"
				 "hooks: {onChange: [nginx, -s, reload]}\n",
				 &diag);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(diag, "duplicate"));
	assert_non_null(strstr(diag, "7:20: hooks.onChange: the command must be an absolute path"));
	free(diag);
}

/* issue 15: a complex or null issuer key crashed the parser (strlen(NULL)); now a located error. */
static void test_config_refuses_non_string_issuer_keys(void **state)
{
	static const char *const keys[] = {"? ?", "? {a: b}", "? [a]", "? ~", "~: {type: ca}"};
	const char *head = "source: {repo: r}\nstate: {path: s.json}\noutput: {root: o}\nissuers:\n  ";

	(void)state;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char *text = xasprintf("%s%s\n", head, keys[i]), *diag = NULL;
		struct config *c = parse(text, &diag);

		assert_null(c);
		assert_non_null(strstr(diag, "/etc/certsync/certsync.yaml:5:"));
		assert_non_null(strstr(diag, "a map key must be a string"));
		free(diag);
		free(text);
	}
	{
		char *diag = NULL; /* the reporter's file */

		assert_null(parse("issuers:\n ? ?\n", &diag));
		assert_non_null(strstr(diag, "/etc/certsync/certsync.yaml:2:4: a map key must be a string, got a map"));
		free(diag);
	}
}

static void test_config_checks_server_listen_and_public_url(void **state)
{
	char *diag;
	struct config *c = parse("source: {repo: r}\nstate: {path: s.json}\noutput: {root: out}\n"
				 "issuers:\n  a: {type: ca, selfSigned: true}\n"
				 "server: {listen: localhost, publicURL: \"ftp://x\"}\n",
				 &diag);

	(void)state;
	assert_null(c);
	assert_non_null(strstr(diag, "6:18: server.listen: expected HOST:PORT, got \"localhost\""));
	assert_non_null(strstr(diag, "6:40: server.publicURL: expected an https:// URL"));
	free(diag);
	c = parse("source: {repo: r}\nstate: {path: s.json}\noutput: {root: out}\n"
		  "issuers:\n  a: {type: ca, selfSigned: true}\n"
		  "server: {listen: \"[::1]:9402\", publicURL: https://certsync.example.com}\n",
		  &diag);
	assert_non_null(c);
	assert_string_equal(c->server.listen, "[::1]:9402");
	config_free(c);
	free(diag);
}

/* ---------- the state section: file and postgres backends ---------- */

static const char *pg_tail = "output: {root: out}\nissuers: {ca: {type: ca, selfSigned: true}}\n";

static struct config *parse_state(const char *state_yaml, char **diag)
{
	char *text = xasprintf("source: {repo: repo}\n%s%s", state_yaml, pg_tail);
	struct config *c = parse(text, diag);

	free(text);
	return c;
}

static void test_config_state_defaults_to_the_file_backend(void **state)
{
	char *diag;
	struct config *c = parse_state("state: {path: s/state.json}\n", &diag);

	(void)state;
	assert_string_equal(diag, "");
	assert_int_equal(c->state.backend, STATE_BACKEND_FILE);
	assert_string_equal(c->state.schema, "certsync");
	assert_int_equal(c->state.lease_ms, 15000);
	assert_null(c->state.replica_id);
	assert_int_equal(c->state.url.kind, CRED_NONE);
	assert_int_equal(c->state.encryption_key.kind, CRED_NONE);
	assert_string_equal(c->key_dir, "/etc/certsync/s/keys");
	config_free(c);
	free(diag);
}

static void test_config_state_postgres(void **state)
{
	char *diag;
	struct config *c = parse_state("state:\n"
				       "  backend: postgres\n"
				       "  url: {env: CERTSYNC_DATABASE_URL}\n"
				       "  schema: certsync_prod\n"
				       "  encryptionKey: {env: CERTSYNC_STATE_KEY}\n"
				       "  previousEncryptionKey: {file: secrets/old-key}\n"
				       "  leaseDuration: 30s\n"
				       "  replicaId: web-1\n",
				       &diag);

	(void)state;
	assert_string_equal(diag, "");
	assert_non_null(c);
	assert_int_equal(c->state.backend, STATE_BACKEND_POSTGRES);
	assert_int_equal(c->state.url.kind, CRED_ENV);
	assert_string_equal(c->state.url.ref, "CERTSYNC_DATABASE_URL");
	assert_string_equal(c->state.url.where, "/etc/certsync/certsync.yaml:4:8");
	assert_string_equal(c->state.schema, "certsync_prod");
	assert_int_equal(c->state.encryption_key.kind, CRED_ENV);
	assert_int_equal(c->state.previous_encryption_key.kind, CRED_FILE);
	assert_string_equal(c->state.previous_encryption_key.ref, "/etc/certsync/secrets/old-key");
	assert_int_equal(c->state.lease_ms, 30000);
	assert_string_equal(c->state.replica_id, "web-1");
	/* no state.path: no file-side paths, and a local repository needs no cache */
	assert_null(c->state_path);
	assert_null(c->key_dir);
	assert_null(c->source.cache_dir);
	config_free(c);
	free(diag);
}

static void test_config_state_postgres_with_path_for_migrate(void **state)
{
	char *diag;
	struct config *c = parse_state("state:\n"
				       "  backend: postgres\n"
				       "  path: /var/lib/certsync/state.json\n"
				       "  url: {env: U}\n"
				       "  encryptionKey: {env: K}\n",
				       &diag);

	(void)state;
	assert_string_equal(diag, "");
	assert_string_equal(c->state_path, "/var/lib/certsync/state.json");
	assert_string_equal(c->key_dir, "/var/lib/certsync/keys");
	assert_string_equal(c->state.schema, "certsync");
	config_free(c);
	free(diag);
	/* The file backend may name the database too: the other side of state migrate. */
	c = parse_state("state: {path: s.json, url: {env: U}, encryptionKey: {file: k}}\n", &diag);
	assert_non_null(c);
	assert_int_equal(c->state.backend, STATE_BACKEND_FILE);
	assert_int_equal(c->state.encryption_key.kind, CRED_FILE);
	config_free(c);
	free(diag);
}

static void test_config_state_postgres_errors_are_located(void **state)
{
	char *diag;
	struct config *c = parse_state("state:\n"
				       "  backend: postgres\n"
				       "  schema: Prod-1\n"
				       "  leaseDuration: 2s\n",
				       &diag);

	(void)state;
	assert_null(c);
	assert_string_equal(
		diag, "/etc/certsync/certsync.yaml:3:3: state: backend postgres needs \"url\" (the database's libpq "
		      "URL, e.g. {env: CERTSYNC_DATABASE_URL})\n"
		      "/etc/certsync/certsync.yaml:3:3: state: backend postgres needs \"encryptionKey\" (base64 of 32 "
		      "random bytes, e.g. {env: CERTSYNC_STATE_KEY}; make one with: openssl rand -base64 32)\n"
		      "/etc/certsync/certsync.yaml:4:11: state.schema: \"Prod-1\" is not a plain identifier (lowercase "
		      "letters, digits and _, not starting with a digit or pg_, at most 63 characters)\n"
		      "/etc/certsync/certsync.yaml:5:18: state.leaseDuration: must be from 3s to 10m, got 2s\n");
	free(diag);
	c = parse_state("state:\n"
			"  backend: sqlite\n"
			"  url: postgresql://certsync:hunter2-pw@db/certsync\n"
			"  encryptionKey: c2VjcmV0\n"
			"  leaseDuration: 11m\n"
			"  replicaId: \"\"\n",
			&diag);
	assert_null(c);
	assert_string_equal(
		diag, "/etc/certsync/certsync.yaml:3:3: state: missing required field \"path\"\n"
		      "/etc/certsync/certsync.yaml:3:12: state.backend: unknown backend \"sqlite\" (file or postgres)\n"
		      "/etc/certsync/certsync.yaml:4:8: state.url: a secret cannot be written in the config; use {env: "
		      "NAME} or {file: PATH}\n"
		      "/etc/certsync/certsync.yaml:5:18: state.encryptionKey: a secret cannot be written in the "
		      "config; use {env: NAME} or {file: PATH}\n"
		      "/etc/certsync/certsync.yaml:6:18: state.leaseDuration: must be from 3s to 10m, got 11m\n"
		      "/etc/certsync/certsync.yaml:7:14: state.replicaId: must be 1 to 128 characters on one line, no "
		      "tabs\n");
	assert_null(strstr(diag, "hunter2"));
	free(diag);
}

static void test_config_state_postgres_remote_repo_needs_a_cache_dir(void **state)
{
	char *diag;
	struct config *c = parse("source: {repo: https://git.example.com/certs.git}\n"
				 "state: {backend: postgres, url: {env: U}, encryptionKey: {env: K}}\n"
				 "output: {root: out}\nissuers: {ca: {type: ca, selfSigned: true}}\n",
				 &diag);

	(void)state;
	assert_null(c);
	assert_string_equal(diag, "/etc/certsync/certsync.yaml:1:9: source: a remote repository needs \"cacheDir\" "
				  "when state.path is not set (the postgres backend has no state directory to keep "
				  "the clone beside)\n");
	free(diag);
	c = parse("source: {repo: https://git.example.com/certs.git, cacheDir: /var/cache/certsync}\n"
		  "state: {backend: postgres, url: {env: U}, encryptionKey: {env: K}}\n"
		  "output: {root: out}\nissuers: {ca: {type: ca, selfSigned: true}}\n",
		  &diag);
	assert_string_equal(diag, "");
	assert_string_equal(c->source.cache_dir, "/var/cache/certsync");
	config_free(c);
	free(diag);
}

static void test_config_git_ssh_verify_receiver_and_suspend(void **state)
{
	static const char *tail =
		"state: {path: s.json}\noutput: {root: out}\nissuers: {ca: {type: ca, selfSigned: true}}\n";
	char *diag, *text;
	struct config *c;

	(void)state;
	/* An scp-like remote is a remote (never a path under the config's directory) and needs its key and host keys.
	 */
	text = xasprintf("source: {repo: \"git@git.example.test:acme/certs.git\"}\n%s", tail);
	c = parse(text, &diag);
	assert_null(c);
	assert_non_null(strstr(diag, "1:9: source: an SSH repository needs \"knownHosts\""));
	assert_non_null(strstr(diag, "1:9: source: an SSH repository needs \"sshKey\""));
	free(diag);
	free(text);
	text = xasprintf(
		"source:\n  repo: git@git.example.test:acme/certs.git\n  sshKey: {file: deploy}\n"
		"  sshKeyPassphrase: {env: PASS}\n  knownHosts: {file: known_hosts}\n"
		"  verify: {mode: HEAD, keys: {file: keys.asc}}\n  receiverSecret: {env: RX}\n  suspend: true\n%s",
		tail);
	c = parse(text, &diag);
	assert_string_equal(diag, "");
	assert_string_equal(c->source.repo, "git@git.example.test:acme/certs.git");
	assert_string_equal(c->source.ssh_key.ref, "/etc/certsync/deploy");
	assert_int_equal(c->source.ssh_passphrase.kind, CRED_ENV);
	assert_string_equal(c->source.known_hosts.ref, "/etc/certsync/known_hosts");
	assert_int_equal(c->source.verify.on, 1);
	assert_string_equal(c->source.verify.keys.ref, "/etc/certsync/keys.asc");
	assert_int_equal(c->source.receiver_secret.kind, CRED_ENV);
	assert_int_equal(c->source.suspend, 1);
	config_free(c);
	free(diag);
	free(text);
	/* Bad values: each located, the secret never written inline. */
	text = xasprintf(
		"source:\n  repo: repo\n  verify: {mode: tag}\n  receiverSecret: hunter2\n  suspend: maybe\n%s", tail);
	c = parse(text, &diag);
	assert_null(c);
	assert_non_null(strstr(diag, "3:18: source.verify.mode: \"tag\" is not supported"));
	assert_non_null(strstr(diag, "3:11: source.verify: missing required field \"keys\""));
	assert_non_null(strstr(diag, "4:19: source.receiverSecret: a secret cannot be written in the config"));
	assert_non_null(strstr(diag, "5:12: source.suspend:"));
	free(diag);
	free(text);
}

static void test_config_state_override_selects_the_file_backend(void **state)
{
	char *diag;
	struct config *c = parse_state("state: {backend: postgres, url: {env: U}, encryptionKey: {env: K}}\n", &diag);

	(void)state;
	assert_string_equal(diag, "");
	config_override(c, NULL, NULL, NULL, "/tmp/st/state.json", NULL);
	assert_int_equal(c->state.backend, STATE_BACKEND_FILE);
	assert_string_equal(c->state_path, "/tmp/st/state.json");
	assert_string_equal(c->key_dir, "/tmp/st/keys");
	assert_string_equal(c->source.cache_dir, "/tmp/st/cache");
	assert_int_equal(c->state.url.kind, CRED_ENV); /* still there for state migrate */
	config_free(c);
	free(diag);
}

/* ---------- the backends factory (reconciler/backends.c) ---------- */

static struct config *pg_config(const char *schema)
{
	char *diag, *text = xasprintf("state:\n"
				      "  backend: postgres\n"
				      "  url: {env: CERTSYNC_TEST_DB_URL}\n"
				      "  schema: %s\n"
				      "  encryptionKey: {env: CERTSYNC_TEST_STATE_KEY}\n",
				      schema);
	struct config *c = parse_state(text, &diag);

	assert_string_equal(diag, "");
	free(diag);
	free(text);
	return c;
}

static void test_backends_file_is_the_state_file_and_key_dir(void **state)
{
	char *dir = test_mkdtemp(), *diag, *yaml = xasprintf("state: {path: %s/state.json}\n", dir);
	struct config *c = parse_state(yaml, &diag);
	struct state_backend *be = NULL;
	struct keystore *ks = NULL;
	struct keystore_item it;
	struct state *st = NULL;
	char desc[256], *want = xasprintf("file %s/state.json", dir);

	(void)state;
	backends_describe(c, desc, sizeof(desc));
	assert_string_equal(desc, want);
	assert_int_equal(backends_open_state(c, &be), 0);
	assert_int_equal(state_lock(be, "test"), 0);
	assert_int_equal(state_load(be, &st), 0);
	state_cert_put(st, "web");
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(backends_open_keystore(c, &ks), 0);
	keystore_item_init(&it);
	assert_int_equal(keystore_get(ks, "web", "ab", &it), CS_ENOTFOUND);
	keystore_item_wipe(&it);
	keystore_close(ks);
	state_unlock(be);
	state_backend_free(be);
	state_free(st);
	free(want);
	want = xasprintf("%s/state.json", dir);
	assert_true(access(want, F_OK) == 0);
	/* The file side of a postgres config without state.path: a message naming the field. */
	config_free(c);
	setenv("CERTSYNC_TEST_DB_URL", "postgresql://u@127.0.0.1:1/db", 1);
	c = pg_config("certsync");
	assert_int_equal(backends_open_state_as(c, STATE_BACKEND_FILE, &be), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "state.path is not set"));
	assert_null(be);
	unsetenv("CERTSYNC_TEST_DB_URL");
	config_free(c);
	free(want);
	free(yaml);
	free(diag);
	test_rmdir(dir);
}

static void test_backends_postgres_describe_and_secrets(void **state)
{
	struct config *c = pg_config("certsync_x");
	const char *url = "postgresql://certsync:Pa%40ss-w0rd-xyz@db.internal:6543/certs?sslmode=disable";
	const char *key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=";
	char desc[256], *red;
	struct keystore *ks = NULL;

	(void)state;
	unsetenv("CERTSYNC_TEST_DB_URL");
	backends_describe(c, desc, sizeof(desc));
	assert_string_equal(desc, "postgres (state.url unreadable) schema certsync_x");
	setenv("CERTSYNC_TEST_DB_URL", url, 1);
	backends_describe(c, desc, sizeof(desc));
	assert_string_equal(desc, "postgres host=db.internal port=6543 dbname=certs user=certsync schema certsync_x");
	/* The password (decoded and as written) is now redacted wherever it would appear. */
	red = redact_dup("dial postgresql://certsync:Pa%40ss-w0rd-xyz@db.internal: password Pa@ss-w0rd-xyz refused");
	assert_null(strstr(red, "w0rd"));
	free(red);
	/* A missing, then a malformed key: CS_EAUTH naming state.encryptionKey, before any connection. */
	unsetenv("CERTSYNC_TEST_STATE_KEY");
	assert_int_equal(backends_open_keystore(c, &ks), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "state.encryptionKey: environment variable CERTSYNC_TEST_STATE_KEY"));
	setenv("CERTSYNC_TEST_STATE_KEY", "c2hvcnQ=", 1);
	assert_int_equal(backends_open_keystore(c, &ks), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "state.encryptionKey"));
	assert_non_null(strstr(cs_errmsg(), "certsync.yaml:6:18"));
	assert_null(strstr(cs_errmsg(), "c2hvcnQ="));
	assert_null(ks);
	/* A well-formed key is registered as a secret once read. */
	setenv("CERTSYNC_TEST_STATE_KEY", key, 1);
	setenv("CERTSYNC_TEST_DB_URL", "postgresql://certsync:Pa%40ss-w0rd-xyz@127.0.0.1:1/certs?connect_timeout=2", 1);
	assert_int_equal(backends_open_keystore(c, &ks), CS_ETRANSIENT); /* nothing listens on port 1 */
	assert_null(strstr(cs_errmsg(), "w0rd"));
	red = redact_dup(key);
	assert_string_equal(red, "[REDACTED]");
	free(red);
	unsetenv("CERTSYNC_TEST_DB_URL");
	unsetenv("CERTSYNC_TEST_STATE_KEY");
	config_free(c);
}

/* Against the server `make unit` started: the factory opens both, and a second key is refused. */
static void test_backends_postgres_open_and_wrong_key(void **state)
{
	char *schema = test_pg_schema();
	struct config *c = pg_config(schema);
	struct state_backend *be = NULL;
	struct keystore *ks = NULL;
	struct state *st = NULL;

	(void)state;
	setenv("CERTSYNC_TEST_DB_URL", test_pg_url(), 1);
	setenv("CERTSYNC_TEST_STATE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
	assert_int_equal(backends_open_state(c, &be), 0);
	assert_int_equal(state_load(be, &st), 0);
	assert_int_equal(st->serial, 0);
	assert_int_equal(backends_open_keystore(c, &ks), 0);
	keystore_close(ks);
	ks = NULL;
	setenv("CERTSYNC_TEST_STATE_KEY", "HxAREhMUFRYXGBkaGxwdHh8AAQIDBAUGBwgJCgsMDQ4=", 1);
	assert_int_equal(backends_open_keystore(c, &ks), CS_EAUTH);
	assert_non_null(strstr(cs_errmsg(), "state.encryptionKey"));
	assert_null(ks);
	state_free(st);
	state_backend_free(be);
	unsetenv("CERTSYNC_TEST_DB_URL");
	unsetenv("CERTSYNC_TEST_STATE_KEY");
	config_free(c);
	free(schema);
}

/* state migrate --force on postgres: state_pg_clear empties the stored state so another lineage can be saved. */
static void test_backends_postgres_clear_lets_another_lineage_in(void **state)
{
	char *schema = test_pg_schema();
	struct config *c = pg_config(schema);
	struct state_backend *be = NULL;
	struct state *st = NULL, *other = state_new(), *back = NULL;

	(void)state;
	setenv("CERTSYNC_TEST_DB_URL", test_pg_url(), 1);
	assert_int_equal(backends_open_state(c, &be), 0);
	assert_int_equal(state_lock(be, "test"), 0);
	assert_int_equal(state_load(be, &st), 0);
	state_cert_put(st, "a");
	state_cert_put(st, "b");
	assert_int_equal(state_save(be, st), 0);
	assert_int_equal(state_save(be, st), 0);
	/* Another lineage is refused as it is ... */
	state_cert_put(other, "c");
	other->serial = st->serial;
	assert_int_equal(state_save(be, other), CS_ECONFLICT);
	/* ... and saved once the stored state was cleared. */
	assert_int_equal(state_pg_clear(be), 0);
	assert_int_equal(state_save(be, other), 0);
	assert_int_equal(other->serial, 3);
	state_unlock(be);
	assert_int_equal(state_load(be, &back), 0);
	assert_string_equal(back->lineage, other->lineage);
	assert_int_equal(back->serial, 3);
	assert_int_equal(state_cert_count(back), 1);
	assert_non_null(state_cert_get(back, "c"));
	/* Without the lock nothing is cleared. */
	assert_int_equal(state_pg_clear(be), CS_EFENCED);
	state_free(back);
	state_free(st);
	state_free(other);
	state_backend_free(be);
	unsetenv("CERTSYNC_TEST_DB_URL");
	config_free(c);
	free(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_parses_every_section),
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_reports_all_problems_with_positions),
		cmocka_unit_test(test_config_requires_sections),
		cmocka_unit_test(test_config_refuses_inline_secrets),
		cmocka_unit_test(test_config_cred_env_and_file),
		cmocka_unit_test(test_config_overrides),
		cmocka_unit_test(test_config_load_missing_file),
		cmocka_unit_test(test_config_duplicate_issuer_and_bad_hook),
		cmocka_unit_test(test_config_checks_server_listen_and_public_url),
		cmocka_unit_test(test_config_refuses_non_string_issuer_keys),
		cmocka_unit_test(test_config_state_defaults_to_the_file_backend),
		cmocka_unit_test(test_config_state_postgres),
		cmocka_unit_test(test_config_state_postgres_with_path_for_migrate),
		cmocka_unit_test(test_config_state_postgres_errors_are_located),
		cmocka_unit_test(test_config_state_postgres_remote_repo_needs_a_cache_dir),
		cmocka_unit_test(test_config_state_override_selects_the_file_backend),
		cmocka_unit_test(test_config_git_ssh_verify_receiver_and_suspend),
		cmocka_unit_test(test_backends_file_is_the_state_file_and_key_dir),
		cmocka_unit_test(test_backends_postgres_describe_and_secrets),
		cmocka_unit_test(test_backends_postgres_open_and_wrong_key),
		cmocka_unit_test(test_backends_postgres_clear_lets_another_lineage_in),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
