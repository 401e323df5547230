/* AES-256-GCM sealing: round trips, and nothing opens that was altered, truncated, moved or keyed otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/aead.h"
#include "../../util/buf.h"
#include "../../util/err.h"
#include "testutil.h"

static const char PT[] = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n";
static const char AAD[] = "certsync-keystore\0shop\0"
			  "1a2b";

static void key_fill(unsigned char key[AEAD_KEY_LEN], unsigned char seed)
{
	for (int i = 0; i < AEAD_KEY_LEN; i++)
		key[i] = (unsigned char)(seed + 7 * i);
}

static void seal(const unsigned char *key, struct buf *out)
{
	buf_init(out, 0);
	assert_int_equal(aead_seal(key, AAD, sizeof(AAD) - 1, PT, strlen(PT), out), 0);
	assert_int_equal(out->len, strlen(PT) + AEAD_OVERHEAD);
}

/* aead_open must fail with CS_EINVALID and leave out exactly as it was. */
static void refused(const unsigned char *key, const void *aad, size_t aad_len, const void *in, size_t in_len)
{
	struct buf out = BUF_INIT;

	buf_puts(&out, "before");
	assert_int_equal(aead_open(key, aad, aad_len, in, in_len, &out), CS_EINVALID);
	assert_int_equal(out.len, 6);
	assert_string_equal(out.data, "before");
	assert_null(strstr(cs_errmsg(), "PRIVATE"));
	buf_free(&out);
}

static void test_round_trip_appends_and_uses_a_fresh_nonce_each_time(void **unused)
{
	unsigned char key[AEAD_KEY_LEN];
	struct buf a, b, out = BUF_INIT;

	(void)unused;
	key_fill(key, 1);
	seal(key, &a);
	seal(key, &b);
	assert_memory_not_equal(a.data, b.data, AEAD_NONCE_LEN); /* random nonce per value */
	assert_memory_not_equal(a.data + AEAD_NONCE_LEN, b.data + AEAD_NONCE_LEN, strlen(PT));
	assert_null(memmem(a.data, a.len, "PRIVATE KEY", 11)); /* the ciphertext does not carry the text */
	buf_puts(&out, "prefix:");
	assert_int_equal(aead_open(key, AAD, sizeof(AAD) - 1, a.data, a.len, &out), 0);
	assert_int_equal(out.len, 7 + strlen(PT));
	assert_string_equal(out.data + 7, PT);
	buf_wipe(&out);
	/* an empty plaintext and empty associated data round trip too */
	buf_free(&a);
	buf_init(&a, 0);
	assert_int_equal(aead_seal(key, "", 0, "", 0, &a), 0);
	assert_int_equal(a.len, AEAD_OVERHEAD);
	assert_int_equal(aead_open(key, "", 0, a.data, a.len, &out), 0);
	assert_int_equal(out.len, 0);
	buf_free(&out);
	buf_free(&a);
	buf_free(&b);
}

static void test_any_flipped_bit_in_nonce_ciphertext_or_tag_is_refused(void **unused)
{
	unsigned char key[AEAD_KEY_LEN];
	struct buf s;
	size_t where[] = {0, AEAD_NONCE_LEN - 1, AEAD_NONCE_LEN, AEAD_NONCE_LEN + 10, 0, 0};

	(void)unused;
	key_fill(key, 2);
	seal(key, &s);
	where[4] = s.len - AEAD_TAG_LEN; /* first tag byte */
	where[5] = s.len - 1;		 /* last tag byte */
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		s.data[where[i]] ^= 0x01;
		refused(key, AAD, sizeof(AAD) - 1, s.data, s.len);
		s.data[where[i]] ^= 0x01;
	}
	/* untouched, it still opens */
	{
		struct buf out = BUF_INIT;

		assert_int_equal(aead_open(key, AAD, sizeof(AAD) - 1, s.data, s.len, &out), 0);
		buf_wipe(&out);
	}
	buf_free(&s);
}

static void test_wrong_key_and_wrong_associated_data_are_refused(void **unused)
{
	unsigned char key[AEAD_KEY_LEN], other[AEAD_KEY_LEN];
	static const char moved_cert[] = "certsync-keystore\0other\0"
					 "1a2b";
	static const char moved_serial[] = "certsync-keystore\0shop\0"
					   "1a2c";
	struct buf s;

	(void)unused;
	key_fill(key, 3);
	key_fill(other, 4);
	seal(key, &s);
	refused(other, AAD, sizeof(AAD) - 1, s.data, s.len);
	refused(key, moved_cert, sizeof(moved_cert) - 1, s.data, s.len);
	refused(key, moved_serial, sizeof(moved_serial) - 1, s.data, s.len);
	refused(key, AAD, sizeof(AAD) - 2, s.data, s.len); /* a byte shorter */
	refused(key, "", 0, s.data, s.len);
	buf_free(&s);
}

static void test_truncated_and_extended_values_are_refused(void **unused)
{
	unsigned char key[AEAD_KEY_LEN];
	struct buf s;

	(void)unused;
	key_fill(key, 5);
	seal(key, &s);
	refused(key, AAD, sizeof(AAD) - 1, s.data, s.len - 1);
	refused(key, AAD, sizeof(AAD) - 1, s.data, AEAD_OVERHEAD);
	refused(key, AAD, sizeof(AAD) - 1, s.data, AEAD_OVERHEAD - 1);
	refused(key, AAD, sizeof(AAD) - 1, s.data, 0);
	refused(key, AAD, sizeof(AAD) - 1, NULL, 0);
	buf_append(&s, "x", 1);
	refused(key, AAD, sizeof(AAD) - 1, s.data, s.len);
	buf_free(&s);
}

static void test_key_decode_takes_32_bytes_of_base64_only_and_never_echoes_the_value(void **unused)
{
	/* 32 bytes 0x00..0x1f */
	static const char good[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
	unsigned char key[AEAD_KEY_LEN], want[AEAD_KEY_LEN];
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{"", "is empty"},
		{"   \n", "is empty"},
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd", "decodes to 30 bytes"}, /* 30 bytes */
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==", "decodes to 34 bytes"},
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8*", "is not base64"},
		{"AAECAwQFBgcICQoLDA0ODxAREhMU FRYXGBkaGxwdHh8=", "is not base64"}, /* space inside */
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=A", "is not base64"}, /* data after padding */
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8===", "is not base64"},
	};
	char padded[128];

	(void)unused;
	for (int i = 0; i < AEAD_KEY_LEN; i++)
		want[i] = (unsigned char)i;
	assert_int_equal(aead_key_decode(good, strlen(good), "state.encryptionKey", key), 0);
	assert_memory_equal(key, want, AEAD_KEY_LEN);
	snprintf(padded, sizeof(padded), " \t%s\r\n", good); /* a key file with a newline */
	memset(key, 0, sizeof(key));
	assert_int_equal(aead_key_decode(padded, strlen(padded), "state.encryptionKey", key), 0);
	assert_memory_equal(key, want, AEAD_KEY_LEN);
	/* padding may be left out */
	memset(key, 0, sizeof(key));
	assert_int_equal(aead_key_decode(good, strlen(good) - 1, "k", key), 0);
	assert_memory_equal(key, want, AEAD_KEY_LEN);
	/* len bounds the text: what follows is not read */
	snprintf(padded, sizeof(padded), "%sGARBAGE", good);
	assert_int_equal(aead_key_decode(padded, strlen(good), "k", key), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(aead_key_decode(bad[i].text, strlen(bad[i].text), "state.previousEncryptionKey", key),
				 CS_EINVALID);
		assert_non_null(strstr(cs_errmsg(), "state.previousEncryptionKey"));
		assert_non_null(strstr(cs_errmsg(), bad[i].msg));
		if (strlen(bad[i].text) > 8) {
			char piece[9];

			snprintf(piece, sizeof(piece), "%s", bad[i].text + 8);
			assert_null(strstr(cs_errmsg(), piece)); /* the value is never echoed */
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_appends_and_uses_a_fresh_nonce_each_time),
		cmocka_unit_test(test_any_flipped_bit_in_nonce_ciphertext_or_tag_is_refused),
		cmocka_unit_test(test_wrong_key_and_wrong_associated_data_are_refused),
		cmocka_unit_test(test_truncated_and_extended_values_are_refused),
		cmocka_unit_test(test_key_decode_takes_32_bytes_of_base64_only_and_never_echoes_the_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
