/*
 * The state decoder, and a round trip: whatever it accepts encodes to a text
 * that decodes again, and encoding that gives the same bytes. The pull
 * parser is also held to be as strict as jansson with JSON_REJECT_DUPLICATES:
 * what it accepts, jansson accepts.
 */
#include <jansson.h>
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

	json_error_t e;
	json_t *j;

	if (state_decode((const char *)data, size, "fuzz.json", &st, &refused))
		return 0;
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
	if (!j)
		fprintf(stderr, "accepted, but jansson says %d:%d: %s\n", e.line, e.column, e.text);
	FUZZ_CHECK(j != NULL);
	json_decref(j);
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
