/* JOSE: base64url, JWK/thumbprint (RFC 7638 vector), JWS verified back with OpenSSL, the EAB MAC, dns-01 values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/buf.h"
#include "../../util/crypto.h"
#include "../../util/crypto_int.h" /* to wrap a public-only key built from the RFC's n and e */
#include "../../util/err.h"
#include "../../util/jose.h"
#include "../../util/util.h"

/* RFC 7638 §3.1: the RSA key and its thumbprint. */
static const char RFC7638_N[] = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
				"_BJECPebWKRXjBZCiFV4n3oknjh"
				"Mstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
				"FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQv"
				"RL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_"
				"xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnq"
				"DKgw";
static const char RFC7638_THUMBPRINT[] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

static BIGNUM *bn_from_b64url(const char *s)
{
	struct buf b = BUF_INIT;
	BIGNUM *bn;

	assert_int_equal(jose_b64url_decode(s, &b), 0);
	bn = BN_bin2bn((const unsigned char *)b.data, (int)b.len, NULL);
	buf_free(&b);
	assert_non_null(bn);
	return bn;
}

/* An EVP_PKEY from fromdata params (public key only). */
static EVP_PKEY *pkey_from(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pk = NULL;

	assert_non_null(params);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pk;
}

/* The public key a JWK describes, as an ACME server would rebuild it. */
static EVP_PKEY *pkey_from_jwk(const json_t *jwk)
{
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *n = NULL, *e = NULL;
	EVP_PKEY *pk;

	assert_non_null(kty);
	if (!strcmp(kty, "RSA")) {
		n = bn_from_b64url(json_string_value(json_object_get(jwk, "n")));
		e = bn_from_b64url(json_string_value(json_object_get(jwk, "e")));
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
		pk = pkey_from("RSA", bld);
	} else {
		static const struct {
			const char *crv, *group;
		} groups[] = {{"P-256", "prime256v1"}, {"P-384", "secp384r1"}, {"P-521", "secp521r1"}};
		const char *crv = json_string_value(json_object_get(jwk, "crv")), *group = NULL;
		struct buf x = BUF_INIT, y = BUF_INIT, pt = BUF_INIT;

		assert_string_equal(kty, "EC");
		for (size_t i = 0; i < 3; i++)
			if (crv && !strcmp(crv, groups[i].crv))
				group = groups[i].group;
		assert_non_null(group);
		assert_int_equal(jose_b64url_decode(json_string_value(json_object_get(jwk, "x")), &x), 0);
		assert_int_equal(jose_b64url_decode(json_string_value(json_object_get(jwk, "y")), &y), 0);
		assert_int_equal(x.len, y.len);
		buf_append(&pt, "\x04", 1);
		buf_append(&pt, x.data, x.len);
		buf_append(&pt, y.data, y.len);
		OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
		OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt.data, pt.len);
		pk = pkey_from("EC", bld);
		buf_free(&x);
		buf_free(&y);
		buf_free(&pt);
	}
	BN_free(n);
	BN_free(e);
	return pk;
}

static json_t *json_of_b64url(const char *s)
{
	struct buf b = BUF_INIT;
	json_error_t je;
	json_t *j;

	assert_int_equal(jose_b64url_decode(s, &b), 0);
	j = json_loadb(b.data, b.len, 0, &je);
	buf_free(&b);
	assert_non_null(j);
	return j;
}

/* ---------- base64url ---------- */

static void check_b64(const char *raw, size_t n, const char *enc)
{
	char *got = jose_b64url(raw, n);
	struct buf b = BUF_INIT;

	assert_string_equal(got, enc);
	assert_int_equal(jose_b64url_decode(enc, &b), 0);
	assert_int_equal(b.len, n);
	assert_memory_equal(b.data, raw, n);
	free(got);
	buf_free(&b);
}

static void test_jose_b64url_encodes_and_decodes_every_tail_length(void **s)
{
	(void)s;
	check_b64("", 0, "");
	check_b64("f", 1, "Zg");
	check_b64("fo", 2, "Zm8");
	check_b64("foo", 3, "Zm9v");
	check_b64("foob", 4, "Zm9vYg");
	check_b64("\xfb\xff", 2, "-_8");      /* the two URL-safe characters */
	check_b64("\x00\x00\x00", 3, "AAAA"); /* NUL bytes survive */
}

static void test_jose_b64url_decode_accepts_padding_only_when_complete(void **s)
{
	struct buf b = BUF_INIT;

	(void)s;
	assert_int_equal(jose_b64url_decode("Zg==", &b), 0);
	assert_int_equal(b.len, 1);
	assert_int_equal(b.data[0], 'f');
	assert_int_equal(jose_b64url_decode("Zm8=", &b), 0);
	assert_int_equal(b.len, 2);
	assert_int_equal(jose_b64url_decode("Zg=", &b), CS_EINVALID);
	assert_non_null(strstr(cs_errmsg(), "not base64url"));
	buf_free(&b);
}

static void test_jose_b64url_decode_refuses_what_is_not_base64url(void **s)
{
	static const char *const bad[] = {"Z", "Zm9vY", "ab+c", "ab/c", "Zm9v!", "Zg==Zg", "Zm 9v", "Zm9v\n", "===="};
	struct buf b = BUF_INIT;

	(void)s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = jose_b64url_decode(bad[i], &b);

		if (rc != CS_EINVALID)
			fail_msg("\"%s\" decoded (rc %d)", bad[i], rc);
		assert_non_null(strstr(cs_errmsg(), "not base64url"));
	}
	buf_free(&b);
}

/* ---------- JWK and thumbprint ---------- */

static void test_jose_rsa_jwk_and_thumbprint_match_rfc7638(void **s)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *n = bn_from_b64url(RFC7638_N), *e = bn_from_b64url("AQAB");
	struct crypto_key key;
	char *jwk, *want, tp[44];

	(void)s;
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
	key.pkey = pkey_from("RSA", bld);
	jwk = jose_jwk(&key);
	want = xasprintf("{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"%s\"}", RFC7638_N);
	assert_string_equal(jwk, want);
	assert_int_equal(jose_thumbprint(&key, tp), 0);
	assert_string_equal(tp, RFC7638_THUMBPRINT);
	assert_string_equal(jose_alg(&key), "RS256");
	EVP_PKEY_free(key.pkey);
	BN_free(n);
	BN_free(e);
	free(jwk);
	free(want);
}

/*
 * A P-256 key whose x starts with a zero byte (found with openssl ecparam -genkey in a loop): the
 * JWK must keep the 32-byte width. Expected values from the openssl CLI:
 *   openssl ec -text shows pub 04 007f85da...; x, y | xxd -r -p | basenc --base64url | tr -d =
 *   printf '%s' "$JWK" | openssl dgst -sha256 -binary | basenc --base64url | tr -d =
 */
static void test_jose_ec_jwk_is_canonical_with_padded_coordinates(void **s)
{
	static const char pem[] = "-----BEGIN EC PRIVATE KEY-----\n"
				  "MHcCAQEEIJrTPPhWffK1zcTcI/R3BAGnQs0ynmo5ZLAoWxHzZFBooAoGCCqGSM49\n"
				  "AwEHoUQDQgAEAH+F2rSUOriRmGSn4yn4GSCfmQ2SQ4ypVuYbxVttgqcUGsKMcxNz\n"
				  "2VUwbUHjTvjgaEgmfFcHUoQIGmsO6GQr3w==\n"
				  "-----END EC PRIVATE KEY-----\n";
	struct crypto_key *key = NULL;
	char *jwk, tp[44];

	(void)s;
	assert_int_equal(crypto_key_from_pem(pem, strlen(pem), "test key", &key), 0);
	jwk = jose_jwk(key);
	assert_string_equal(jwk,
			    "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"AH-F2rSUOriRmGSn4yn4GSCfmQ2SQ4ypVuYbxVttgqc\","
			    "\"y\":\"FBrCjHMTc9lVMG1B40744GhIJnxXB1KECBprDuhkK98\"}");
	assert_string_equal(jose_alg(key), "ES256");
	assert_int_equal(jose_thumbprint(key, tp), 0);
	assert_string_equal(tp, "uCIG-y_6LFGvACcYuccP3Fsg14UZd43zyeSDHXbi25o");
	free(jwk);
	crypto_key_free(key);
}

/* P-521 coordinates are 66 bytes even when the top bytes are zero: try keys until one has a short x or y. */
static void test_jose_p521_coordinates_are_always_66_bytes(void **s)
{
	(void)s;
	for (int i = 0; i < 8; i++) {
		struct crypto_key key = {EVP_EC_gen("P-521")};
		json_error_t je;
		char *jwk = jose_jwk(&key);
		json_t *j = json_loads(jwk, 0, &je);
		struct buf x = BUF_INIT, y = BUF_INIT;

		assert_non_null(j);
		assert_string_equal(json_string_value(json_object_get(j, "crv")), "P-521");
		assert_int_equal(jose_b64url_decode(json_string_value(json_object_get(j, "x")), &x), 0);
		assert_int_equal(jose_b64url_decode(json_string_value(json_object_get(j, "y")), &y), 0);
		assert_int_equal(x.len, 66);
		assert_int_equal(y.len, 66);
		assert_string_equal(jose_alg(&key), "ES512");
		buf_free(&x);
		buf_free(&y);
		json_decref(j);
		free(jwk);
		EVP_PKEY_free(key.pkey);
	}
}

/* ---------- JWS ---------- */

/*
 * Verifies a flattened JWS as a server does: rebuild the key from the jwk
 * (or use expect_key for a kid), turn r‖s back into DER, EVP_DigestVerify.
 * Returns the protected header (caller decrefs).
 */
static json_t *verify_jws(const char *jws, const EVP_PKEY *expect_key, const char *expect_alg, size_t coord)
{
	json_error_t je;
	json_t *j = json_loads(jws, 0, &je), *prot;
	const char *p = json_string_value(json_object_get(j, "protected"));
	const char *pl = json_string_value(json_object_get(j, "payload"));
	const char *sg = json_string_value(json_object_get(j, "signature"));
	struct buf sig = BUF_INIT;
	EVP_PKEY *pk;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	const unsigned char *verify_sig;
	size_t verify_len;
	char *input;
	int der_len = 0;

	assert_non_null(j);
	assert_int_equal(json_object_size(j), 3);
	assert_non_null(p);
	assert_non_null(pl);
	assert_non_null(sg);
	prot = json_of_b64url(p);
	assert_string_equal(json_string_value(json_object_get(prot, "alg")), expect_alg);
	pk = json_object_get(prot, "jwk") ? pkey_from_jwk(json_object_get(prot, "jwk")) : NULL;
	if (pk)
		assert_int_equal(EVP_PKEY_eq(pk, expect_key), 1);
	assert_int_equal(jose_b64url_decode(sg, &sig), 0);
	if (coord) {
		ECDSA_SIG *es = ECDSA_SIG_new();

		assert_int_equal(sig.len, 2 * coord); /* raw r‖s, not DER */
		ECDSA_SIG_set0(es, BN_bin2bn((unsigned char *)sig.data, (int)coord, NULL),
			       BN_bin2bn((unsigned char *)sig.data + coord, (int)coord, NULL));
		der_len = i2d_ECDSA_SIG(es, &der);
		assert_true(der_len > 0);
		ECDSA_SIG_free(es);
		verify_sig = der;
		verify_len = (size_t)der_len;
	} else {
		verify_sig = (const unsigned char *)sig.data;
		verify_len = sig.len;
	}
	input = xasprintf("%s.%s", p, pl);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, crypto_sig_md(expect_key), NULL, (EVP_PKEY *)expect_key), 1);
	assert_int_equal(EVP_DigestVerify(md, verify_sig, verify_len, (unsigned char *)input, strlen(input)), 1);
	/* one flipped bit of the input fails */
	input[0] ^= 1;
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, crypto_sig_md(expect_key), NULL, (EVP_PKEY *)expect_key), 1);
	assert_int_not_equal(EVP_DigestVerify(md, verify_sig, verify_len, (unsigned char *)input, strlen(input)), 1);
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	EVP_PKEY_free(pk);
	buf_free(&sig);
	free(input);
	json_decref(j);
	return prot;
}

static void sign_and_verify(struct crypto_key *key, const char *alg, size_t coord)
{
	char *jws = NULL;
	json_t *prot, *j;
	json_error_t je;
	struct buf pl = BUF_INIT;

	/* with the jwk (newAccount) */
	assert_int_equal(jose_sign(key, NULL, "nonce-1", "https://ca.test/new-acct", "{\"contact\":[]}", &jws), 0);
	prot = verify_jws(jws, key->pkey, alg, coord);
	assert_string_equal(json_string_value(json_object_get(prot, "nonce")), "nonce-1");
	assert_string_equal(json_string_value(json_object_get(prot, "url")), "https://ca.test/new-acct");
	assert_null(json_object_get(prot, "kid"));
	j = json_loads(jws, 0, &je);
	assert_int_equal(jose_b64url_decode(json_string_value(json_object_get(j, "payload")), &pl), 0);
	assert_string_equal(pl.data, "{\"contact\":[]}");
	json_decref(j);
	json_decref(prot);
	free(jws);

	/* with the kid, POST-as-GET: empty payload, no jwk */
	jws = NULL;
	assert_int_equal(jose_sign(key, "https://ca.test/acct/1", "n\"2", "https://ca.test/order/1", NULL, &jws), 0);
	prot = verify_jws(jws, key->pkey, alg, coord);
	assert_string_equal(json_string_value(json_object_get(prot, "kid")), "https://ca.test/acct/1");
	assert_string_equal(json_string_value(json_object_get(prot, "nonce")), "n\"2"); /* escaped, not injected */
	assert_null(json_object_get(prot, "jwk"));
	j = json_loads(jws, 0, &je);
	assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
	json_decref(j);
	json_decref(prot);
	free(jws);
	buf_free(&pl);
}

static void test_jose_es256_and_es384_signatures_verify_as_raw_r_s(void **s)
{
	struct crypto_key *k256 = NULL, *k384 = NULL;

	(void)s;
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &k256), 0);
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 384, &k384), 0);
	/* several signatures: r or s with leading zero bytes must still be full width */
	for (int i = 0; i < 8; i++) {
		sign_and_verify(k256, "ES256", 32);
		sign_and_verify(k384, "ES384", 48);
	}
	crypto_key_free(k256);
	crypto_key_free(k384);
}

static void test_jose_es512_signature_verifies(void **s)
{
	struct crypto_key key = {EVP_EC_gen("P-521")};

	(void)s;
	for (int i = 0; i < 4; i++)
		sign_and_verify(&key, "ES512", 66);
	EVP_PKEY_free(key.pkey);
}

static void test_jose_rs256_signature_verifies(void **s)
{
	struct crypto_key *key = NULL;

	(void)s;
	assert_int_equal(crypto_key_generate(CRYPTO_RSA, 2048, &key), 0);
	sign_and_verify(key, "RS256", 0);
	crypto_key_free(key);
}

/* ---------- EAB ---------- */

static void test_jose_eab_is_an_hs256_jws_over_the_account_jwk(void **s)
{
	static const unsigned char hmac_key[] = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
	struct crypto_key *key = NULL;
	char *eab, *jwk, *input;
	json_t *j, *prot;
	json_error_t je;
	struct buf pl = BUF_INIT, sig = BUF_INIT;
	unsigned char mac[32];
	unsigned int mac_len = 0;
	const char *p, *payload;

	(void)s;
	assert_int_equal(crypto_key_generate(CRYPTO_ECDSA, 256, &key), 0);
	eab = jose_eab(key, "kid-1", hmac_key, sizeof(hmac_key) - 1, "https://ca.test/new-acct");
	assert_non_null(eab);
	j = json_loads(eab, 0, &je);
	assert_non_null(j);
	p = json_string_value(json_object_get(j, "protected"));
	payload = json_string_value(json_object_get(j, "payload"));
	prot = json_of_b64url(p);
	assert_string_equal(json_string_value(json_object_get(prot, "alg")), "HS256");
	assert_string_equal(json_string_value(json_object_get(prot, "kid")), "kid-1");
	assert_string_equal(json_string_value(json_object_get(prot, "url")), "https://ca.test/new-acct");
	assert_null(json_object_get(prot, "nonce")); /* RFC 8555 §7.3.4: no nonce in the inner JWS */
	jwk = jose_jwk(key);
	assert_int_equal(jose_b64url_decode(payload, &pl), 0);
	assert_string_equal(pl.data, jwk);
	/* the MAC, recomputed with OpenSSL's HMAC */
	input = xasprintf("%s.%s", p, payload);
	assert_non_null(HMAC(EVP_sha256(), hmac_key, (int)sizeof(hmac_key) - 1, (unsigned char *)input, strlen(input),
			     mac, &mac_len));
	assert_int_equal(jose_b64url_decode(json_string_value(json_object_get(j, "signature")), &sig), 0);
	assert_int_equal(sig.len, 32);
	assert_memory_equal(sig.data, mac, 32);
	/* another key gives another MAC */
	assert_non_null(HMAC(EVP_sha256(), "other", 5, (unsigned char *)input, strlen(input), mac, &mac_len));
	assert_memory_not_equal(sig.data, mac, 32);
	json_decref(prot);
	json_decref(j);
	buf_free(&pl);
	buf_free(&sig);
	free(input);
	free(jwk);
	free(eab);
	crypto_key_free(key);
}

/* ---------- challenges ---------- */

static void test_jose_key_authorization_and_dns01_value_match_known_vectors(void **s)
{
	char *ka, v[44];

	(void)s;
	ka = jose_key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", RFC7638_THUMBPRINT);
	assert_string_equal(ka,
			    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	/*
	 * printf '%s' 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' |
	 *   openssl dgst -sha256 -binary | basenc --base64url | tr -d '='
	 */
	jose_dns01_value(ka, v);
	assert_string_equal(v, "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8");
	free(ka);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jose_b64url_encodes_and_decodes_every_tail_length),
		cmocka_unit_test(test_jose_b64url_decode_accepts_padding_only_when_complete),
		cmocka_unit_test(test_jose_b64url_decode_refuses_what_is_not_base64url),
		cmocka_unit_test(test_jose_rsa_jwk_and_thumbprint_match_rfc7638),
		cmocka_unit_test(test_jose_ec_jwk_is_canonical_with_padded_coordinates),
		cmocka_unit_test(test_jose_p521_coordinates_are_always_66_bytes),
		cmocka_unit_test(test_jose_es256_and_es384_signatures_verify_as_raw_r_s),
		cmocka_unit_test(test_jose_es512_signature_verifies),
		cmocka_unit_test(test_jose_rs256_signature_verifies),
		cmocka_unit_test(test_jose_eab_is_an_hs256_jws_over_the_account_jwk),
		cmocka_unit_test(test_jose_key_authorization_and_dns01_value_match_known_vectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
