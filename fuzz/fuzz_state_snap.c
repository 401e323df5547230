/*
 * The state snapshot reader (state.json.snap), past its checksum: the input
 * is a snapshot whose CRC, total length and key the harness makes right, so
 * every length, count and offset in it reaches the decoder. Whatever it
 * accepts is a state that encodes to JSON which decodes again, and a state
 * that frees cleanly (records and strings in the arena).
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../state/state.h"
#include "../state/state_int.h"
#include "../util/buf.h"
#include "fuzz.h"

/* The layout (state/state_snap.c). */
#define SUM_AT 16
#define HASHED_AT 24
#define KEY_AT (HASHED_AT + 8)
#define HEAD_LEN (KEY_AT + 88 + 4 * 8 + 8)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state_snap_key key;
	struct state *st = NULL, *back = NULL;
	struct buf j = BUF_INIT;
	unsigned char *img;
	uint64_t total = size, id[5];
	uint32_t sum;
	char path[64];
	int fd, refused = 0;

	if (size < HEAD_LEN || size > (1u << 20))
		return 0;
	img = malloc(size);
	memcpy(img, data, size);
	memcpy(img + HASHED_AT, &total, 8);
	memset(&key, 0, sizeof(key));
	memcpy(id, img + KEY_AT, sizeof(id));
	key.dev = id[0];
	key.ino = id[1];
	key.size = id[2];
	key.mtime_ns = (int64_t)id[3];
	key.ctime_ns = (int64_t)id[4];
	memcpy(key.lineage, img + KEY_AT + 40, 36);
	/* a lineage as a state file's head gives it: 1 to 36 characters (ASCII here, to keep it short) */
	if (!memchr(key.lineage, '\0', 36) || key.lineage[0] == '\0')
		memcpy(key.lineage, "fuzz", 5);
	for (char *p = key.lineage; *p; p++)
		*p = *p >= ' ' && *p < 0x7f && *p != '"' && *p != '\\' ? *p : 'x';
	memset(img + KEY_AT + 40, 0, 40);
	memcpy(img + KEY_AT + 40, key.lineage, strlen(key.lineage));
	memcpy(&key.serial, img + KEY_AT + 80, 8);
	if (key.serial > INT64_MAX) { /* a state file's head never says more: the reader refuses it */
		key.serial &= INT64_MAX;
		memcpy(img + KEY_AT + 80, &key.serial, 8);
	}
	sum = state_snap_crc(img + HASHED_AT, size - HASHED_AT);
	memcpy(img + SUM_AT, &sum, 4);
	fd = memfd_create("snap", 0);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(write(fd, img, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (state_snap_read(path, &key, &st) == 0) {
		FUZZ_CHECK(state_to_json(st, &j) == 0);
		if (state_decode(j.data, j.len, "fuzz.json", &back, &refused)) {
			fprintf(stderr, "the JSON of an accepted snapshot does not decode:\n%s\n", j.data);
			FUZZ_CHECK(!"the JSON of an accepted snapshot decodes");
		}
		state_free(back);
		state_free(st);
	}
	close(fd);
	buf_free(&j);
	free(img);
	return 0;
}
