/*
 * The DigiCert driver's private interface. So far: the request token of
 * immediate DV issuance (../shared/api/digicert.md §3), a pure function with
 * pinned test vectors; the driver itself is issue #4.
 */
#ifndef CS_RECONCILER_PROVIDERS_DIGICERT_H
#define CS_RECONCILER_PROVIDERS_DIGICERT_H

#include <stddef.h>
#include <stdint.h>

#define DIGICERT_TS_LEN 14 /* yyyyMMddHHmmss */
#define DIGICERT_B36_LEN 50
#define DIGICERT_TOKEN_LEN (DIGICERT_TS_LEN + DIGICERT_B36_LEN)

/* UTC timestamp "yyyyMMddHHmmss" of t (unix seconds). */
void digicert_timestamp(int64_t t, char out[DIGICERT_TS_LEN + 1]);

/*
 * The request token: timestamp + lowercase base36(HMAC-SHA256(key = AuthKey,
 * msg = timestamp ‖ CSR)) left-padded with '0' to 50 characters. csr must be
 * exactly the string sent as certificate.csr in the order.
 */
void digicert_request_token(const char *auth_key, size_t key_len, const char ts[DIGICERT_TS_LEN], const char *csr,
			    size_t csr_len, char out[DIGICERT_TOKEN_LEN + 1]);

/* Writes a 32-byte big-endian unsigned integer in base 36, left-padded with '0' to 50 digits. */
void digicert_base36(const unsigned char mac[32], char out[DIGICERT_B36_LEN + 1]);

/*
 * The token's timestamp as unix seconds (0 if the token is malformed), to
 * decide when a placed token must be regenerated (older than 25 days; valid 30).
 */
int64_t digicert_token_time(const char *token);

#endif
