/*
 * The state decoder, and a round trip: whatever it accepts encodes to a text
 * that decodes again, and encoding that gives the same bytes.
 */
#include <string.h>

#include "../state/state.h"
#include "../state/state_int.h"
#include "../util/buf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state *st = NULL, *back = NULL;
	struct buf a = BUF_INIT, b = BUF_INIT;
	int refused = 0;

	if (state_decode((const char *)data, size, "fuzz.json", &st, &refused))
		return 0;
	FUZZ_CHECK(state_to_json(st, &a) == 0);
	if (state_decode(a.data, a.len, "fuzz.json", &back, &refused)) {
		fprintf(stderr, "re-decoding failed on:\n%s\n", a.data);
		FUZZ_CHECK(!"the encoding of a decoded state decodes");
	}
	FUZZ_CHECK(state_to_json(back, &b) == 0);
	FUZZ_CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
	buf_free(&a);
	buf_free(&b);
	state_free(back);
	state_free(st);
	return 0;
}
