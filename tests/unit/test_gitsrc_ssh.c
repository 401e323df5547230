/* SSH remotes without a network: URL forms and host keys against known_hosts text; the git receiver's verdicts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../reconciler/server/http_server.h"
#include "../../reconciler/source/gitsrc.h"
#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/util.h"

/* An ed25519 host key blob (as in known_hosts) and another one. */
#define KEY_A "AAAAC3NzaC1lZDI1NTE5AAAAILwjAkOR7nHHyn9VmAwFrtXRz2Tf8/2ntn6XhHjB5Tw2"
#define KEY_B "AAAAC3NzaC1lZDI1NTE5AAAAIMbNJluzjRQx/DP7C44KzEa2HG6VHo1Hztx7pMBsMH8B"

static void blob_of(const char *b64, struct buf *out)
{
	char *t = xstrdup(b64);

	for (char *c = t; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	buf_init(out, 0);
	assert_int_equal(jose_b64url_decode(t, out), 0);
	free(t);
}

static int check(const char *kh, const char *host, unsigned port, const char *key_b64, char *why, size_t n)
{
	struct buf b;
	int rc;

	blob_of(key_b64, &b);
	why[0] = '\0';
	rc = gitsrc_known_hosts_check(kh, host, port, (const unsigned char *)b.data, b.len, NULL, why, n);
	buf_free(&b);
	return rc;
}

static void test_gitsrc_ssh_url_forms(void **state)
{
	struct gitsrc_ssh_url u;

	(void)state;
	assert_int_equal(gitsrc_ssh_parse("git@github.com:acme/certs.git", &u), 0);
	assert_string_equal(u.user, "git");
	assert_string_equal(u.host, "github.com");
	assert_int_equal(u.port, 22);
	assert_string_equal(u.path, "acme/certs.git");
	gitsrc_ssh_url_free(&u);
	assert_int_equal(gitsrc_ssh_parse("ssh://deploy@Git.Example.TEST:2222/srv/certs.git", &u), 0);
	assert_string_equal(u.user, "deploy");
	assert_string_equal(u.host, "git.example.test");
	assert_int_equal(u.port, 2222);
	assert_string_equal(u.path, "/srv/certs.git");
	gitsrc_ssh_url_free(&u);
	assert_int_equal(gitsrc_ssh_parse("ssh://[::1]:2200/r.git", &u), 0);
	assert_null(u.user);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 2200);
	gitsrc_ssh_url_free(&u);
	assert_int_equal(gitsrc_ssh_parse("git+ssh://host/r.git", &u), 0);
	gitsrc_ssh_url_free(&u);
	assert_int_equal(gitsrc_ssh_parse("ssh://user:pw@host/r.git", &u), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "password"));
	assert_null(strstr(cs_errmsg(), "pw@"));
	assert_int_equal(gitsrc_ssh_parse("ssh://host:99999/r.git", &u), CS_EINVALID);
	assert_int_equal(gitsrc_ssh_parse("ssh://host", &u), CS_EINVALID);
	assert_int_equal(gitsrc_ssh_parse("https://host/r.git", &u), CS_EINVALID);
}

static void test_gitsrc_remote_or_local_path(void **state)
{
	(void)state;
	assert_true(gitsrc_is_remote("git@github.com:acme/certs.git"));
	assert_true(gitsrc_is_remote("host:repo"));
	assert_true(gitsrc_is_remote("https://x/y"));
	assert_true(gitsrc_is_remote("user@[::1]:r.git"));
	assert_false(gitsrc_is_remote("repo"));
	assert_false(gitsrc_is_remote("/srv/git:weird/repo"));
	assert_false(gitsrc_is_remote("./a:b"));
	assert_false(gitsrc_is_remote("dir/sub:x"));
	assert_true(gitsrc_is_ssh_url("ssh://h/r"));
	assert_false(gitsrc_is_ssh_url("file:///r"));
}

static void test_known_hosts_accepts_the_known_key_only(void **state)
{
	char why[1024], kh[1024];

	(void)state;
	snprintf(kh, sizeof(kh), "# comment\n\nother.test ssh-ed25519 %s\ngit.test,10.0.0.1 ssh-ed25519 %s\n", KEY_B,
		 KEY_A);
	assert_int_equal(check(kh, "git.test", 22, KEY_A, why, sizeof(why)), 0);
	assert_int_equal(check(kh, "10.0.0.1", 22, KEY_A, why, sizeof(why)), 0);
	/* Another port is another name: "[git.test]:2222". */
	assert_int_equal(check(kh, "git.test", 2222, KEY_A, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "[git.test]:2222"));
	assert_non_null(strstr(why, "not in source.knownHosts"));
	assert_non_null(strstr(why, "ssh-keyscan -p 2222 git.test"));
	/* Known with another key: a changed host key, named with both fingerprints. */
	assert_int_equal(check(kh, "other.test", 22, KEY_A, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "changed"));
	assert_non_null(strstr(why, "ssh-ed25519 SHA256:"));
	/* Known only with a key of another type: not called a change, the missing type is named. */
	snprintf(kh, sizeof(kh), "git.test ssh-rsa %s\n", KEY_B);
	assert_int_equal(check(kh, "git.test", 22, KEY_A, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "has only a ssh-rsa key for it"));
	assert_null(strstr(why, "changed"));
	/* Unknown host: its fingerprint, as ssh-keygen -l prints it. */
	assert_int_equal(check("", "new.test", 22, KEY_A, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "new.test (ssh-ed25519 SHA256:"));
}

static void test_known_hosts_patterns_ports_hashes_and_markers(void **state)
{
	char why[1024], kh[2048], name[64], salt_b64[64], *hash_b64;
	unsigned char salt[20], mac[20];
	struct buf b;

	(void)state;
	snprintf(kh, sizeof(kh), "[127.0.0.1]:2222 ssh-ed25519 %s\n*.corp.test,!bad.corp.test ssh-ed25519 %s\n", KEY_A,
		 KEY_A);
	assert_int_equal(check(kh, "127.0.0.1", 2222, KEY_A, why, sizeof(why)), 0);
	assert_int_equal(check(kh, "git.corp.test", 22, KEY_A, why, sizeof(why)), 0);
	assert_int_equal(check(kh, "bad.corp.test", 22, KEY_A, why, sizeof(why)), -1);
	/* @revoked wins over a plain line with the same key; @cert-authority never matches. */
	snprintf(kh, sizeof(kh),
		 "git.test ssh-ed25519 %s\n@revoked * ssh-ed25519 %s\n@cert-authority * ssh-ed25519 %s\n", KEY_A, KEY_A,
		 KEY_B);
	assert_int_equal(check(kh, "git.test", 22, KEY_A, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "@revoked"));
	assert_int_equal(check(kh, "git.test", 22, KEY_B, why, sizeof(why)), -1);
	/* A hashed name (HashKnownHosts): HMAC-SHA1 of "[host]:port" keyed with the salt. */
	memset(salt, 7, sizeof(salt));
	snprintf(name, sizeof(name), "[git.test]:2200");
	crypto_hmac_sha1(salt, sizeof(salt), name, strlen(name), mac);
	hash_b64 = jose_b64url(salt, sizeof(salt));
	snprintf(salt_b64, sizeof(salt_b64), "%s", hash_b64);
	free(hash_b64);
	hash_b64 = jose_b64url(mac, sizeof(mac));
	snprintf(kh, sizeof(kh), "|1|%s=|%s= ssh-ed25519 %s\n", salt_b64, hash_b64, KEY_A);
	free(hash_b64);
	assert_int_equal(check(kh, "git.test", 2200, KEY_A, why, sizeof(why)), 0);
	assert_int_equal(check(kh, "git.test", 22, KEY_A, why, sizeof(why)), -1);
	/* Only the SHA-256 of the key (no raw key from the library): the same verdicts. */
	blob_of(KEY_A, &b);
	{
		unsigned char sha[32];

		crypto_sha256(b.data, b.len, sha);
		assert_int_equal(gitsrc_known_hosts_check(kh, "git.test", 2200, NULL, 0, sha, why, sizeof(why)), 0);
		sha[0] ^= 1;
		assert_int_equal(gitsrc_known_hosts_check(kh, "git.test", 2200, NULL, 0, sha, why, sizeof(why)), -1);
	}
	buf_free(&b);
}

static void test_git_receiver_verdicts(void **state)
{
	const char *secret = "rx-secret", *body = "{\"ref\":\"refs/heads/main\"}";
	unsigned char mac[32];
	char sig[80];
	struct git_rx_headers h;

	(void)state;
	crypto_hmac_sha256(secret, strlen(secret), body, strlen(body), mac);
	snprintf(sig, sizeof(sig), "sha256=");
	for (size_t i = 0; i < 32; i++)
		snprintf(sig + 7 + 2 * i, 3, "%02x", mac[i]);
	memset(&h, 0, sizeof(h));
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FETCH); /* generic */
	assert_int_equal(server_git_receive(&h, body, strlen(body), NULL), GIT_RX_FORGED);
	h.github_event = "push";
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FORGED); /* unsigned */
	h.github_signature = sig;
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FETCH);
	assert_int_equal(server_git_receive(&h, body, strlen(body) - 1, secret), GIT_RX_FORGED); /* body changed */
	assert_int_equal(server_git_receive(&h, body, strlen(body), "rx-secreT"), GIT_RX_FORGED);
	h.github_event = "ping";
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_PING);
	h.github_event = "issues";
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_IGNORED);
	memset(&h, 0, sizeof(h));
	h.gitlab_event = "Push Hook";
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FORGED);
	h.gitlab_token = "rx-secre";
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FORGED);
	h.gitlab_token = secret;
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FETCH);
	h.gitlab_event = "Tag Push Hook";
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FETCH);
	h.gitlab_event = "Merge Request Hook";
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_IGNORED);
	/* Gitea: the bare hex HMAC. */
	memset(&h, 0, sizeof(h));
	h.gitea_event = "push";
	h.gitea_signature = sig + 7;
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FETCH);
	h.gitea_signature = sig;
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FORGED);
	/* Flux's generic-hmac: X-Signature, when present, must match. */
	memset(&h, 0, sizeof(h));
	h.signature = sig;
	assert_int_equal(server_git_receive(&h, body, strlen(body), secret), GIT_RX_FETCH);
	assert_int_equal(server_git_receive(&h, "{}", 2, secret), GIT_RX_FORGED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gitsrc_ssh_url_forms),
		cmocka_unit_test(test_gitsrc_remote_or_local_path),
		cmocka_unit_test(test_known_hosts_accepts_the_known_key_only),
		cmocka_unit_test(test_known_hosts_patterns_ports_hashes_and_markers),
		cmocka_unit_test(test_git_receiver_verdicts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
