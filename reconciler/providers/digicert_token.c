/* DigiCert request tokens for immediate DV issuance (§3): timestamp + base36(HMAC-SHA256). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../util/crypto.h"
#include "../../util/util.h"
#include "digicert.h"

void digicert_timestamp(int64_t t, char out[DIGICERT_TS_LEN + 1])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, DIGICERT_TS_LEN + 1, "%Y%m%d%H%M%S", &tm);
}

void digicert_base36(const unsigned char mac[32], char out[DIGICERT_B36_LEN + 1])
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	unsigned char n[32];
	size_t pos = DIGICERT_B36_LEN;

	/* Schoolbook long division by 36 of the big-endian number; 36^50 > 2^256, so 50 digits always suffice. */
	memcpy(n, mac, sizeof(n));
	out[DIGICERT_B36_LEN] = '\0';
	while (pos > 0) {
		unsigned rem = 0;

		for (size_t i = 0; i < sizeof(n); i++) {
			unsigned cur = rem * 256 + n[i];

			n[i] = (unsigned char)(cur / 36);
			rem = cur % 36;
		}
		out[--pos] = digits[rem];
	}
	crypto_wipe(n, sizeof(n));
}

void digicert_request_token(const char *auth_key, size_t key_len, const char ts[DIGICERT_TS_LEN], const char *csr,
			    size_t csr_len, char out[DIGICERT_TOKEN_LEN + 1])
{
	size_t len = DIGICERT_TS_LEN + csr_len;
	char *msg = xmalloc(len);
	unsigned char mac[32];

	memcpy(msg, ts, DIGICERT_TS_LEN);
	memcpy(msg + DIGICERT_TS_LEN, csr, csr_len);
	crypto_hmac_sha256(auth_key, key_len, msg, len, mac);
	memcpy(out, ts, DIGICERT_TS_LEN);
	digicert_base36(mac, out + DIGICERT_TS_LEN);
	crypto_wipe(mac, sizeof(mac));
	free(msg);
}

int64_t digicert_token_time(const char *token)
{
	char iso[32];
	int64_t t;

	if (!token || strlen(token) != DIGICERT_TOKEN_LEN || strspn(token, "0123456789") < DIGICERT_TS_LEN)
		return 0;
	snprintf(iso, sizeof(iso), "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", token, token + 4, token + 6, token + 8, token + 10,
		 token + 12);
	return util_parse_time(iso, &t) ? 0 : t;
}
