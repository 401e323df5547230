/* The git push receiver's decisions (pure): which forge sent a delivery, whether it is genuine, what it asks. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_server.h"

#include "../../util/crypto.h"

/*
 * "<prefix><64 hex>" against HMAC-SHA256(secret, body), compared without an
 * early exit: GitHub's and Flux's generic-hmac "sha256=", Gitea's bare hex.
 */
static int server_hmac_ok(const char *header, const char *prefix, const char *body, size_t len, const char *secret)
{
	unsigned char mac[32];
	char hex[65], given[65];
	size_t pl = strlen(prefix);
	int ok;

	if (!header || strncasecmp(header, prefix, pl) || strlen(header + pl) != 64)
		return 0;
	crypto_hmac_sha256(secret, strlen(secret), body ? body : "", len, mac);
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	/* Senders use lowercase hex; accept uppercase too. */
	for (size_t i = 0; i < 64; i++) {
		char c = header[pl + i];

		given[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
	}
	given[64] = '\0';
	ok = server_secret_equal(given, 64, hex, 64);
	crypto_wipe(mac, sizeof(mac));
	return ok;
}

/* Events that mean "the repository moved": fetch. Anything else is acknowledged and ignored. */
static int server_is_push_event(const char *event)
{
	static const char *const push[] = {"push", "Push Hook", "Tag Push Hook", "System Hook"};

	for (size_t i = 0; i < sizeof(push) / sizeof(push[0]); i++)
		if (!strcmp(event, push[i]))
			return 1;
	return 0;
}

enum git_rx server_git_receive(const struct git_rx_headers *h, const char *body, size_t len, const char *secret)
{
	if (!secret || !*secret)
		return GIT_RX_FORGED;
	if (h->github_event) {
		/* GitHub signs every delivery when the webhook has a secret: an unsigned one is not GitHub's. */
		if (!server_hmac_ok(h->github_signature, "sha256=", body, len, secret))
			return GIT_RX_FORGED;
		if (!strcmp(h->github_event, "ping"))
			return GIT_RX_PING;
		return server_is_push_event(h->github_event) ? GIT_RX_FETCH : GIT_RX_IGNORED;
	}
	if (h->gitea_event) {
		if (!server_hmac_ok(h->gitea_signature, "", body, len, secret))
			return GIT_RX_FORGED;
		return server_is_push_event(h->gitea_event) ? GIT_RX_FETCH : GIT_RX_IGNORED;
	}
	if (h->gitlab_event || h->gitlab_token) {
		const char *t = h->gitlab_token;

		if (!t || !server_secret_equal(t, strlen(t), secret, strlen(secret)))
			return GIT_RX_FORGED;
		return !h->gitlab_event || server_is_push_event(h->gitlab_event) ? GIT_RX_FETCH : GIT_RX_IGNORED;
	}
	/* Flux's generic-hmac: a signature, when given, must be right. */
	if (h->signature)
		return server_hmac_ok(h->signature, "sha256=", body, len, secret) ? GIT_RX_FETCH : GIT_RX_FORGED;
	/* The generic form: the secret in the path (already checked) is the whole credential. */
	return GIT_RX_FETCH;
}
