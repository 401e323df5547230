/*
 * The state decoder, and a round trip: whatever it accepts encodes to a text
 * that decodes again, and encoding that gives the same bytes. The pull
 * parser is also held to be as strict as jansson with JSON_REJECT_DUPLICATES:
 * what it accepts, jansson accepts.
 *
 * The same input is also one journal line (state.json.journal): a record
 * line or a source line. What the line decoder accepts, jansson accepts, it
 * is one kind or the other, a source line is within state_source_check's
 * bounds, and it encodes to a line that decodes to the same entry.
 */
#include <jansson.h>
#include <string.h>

#include "../state/state.h"
#include "../state/state_int.h"
#include "../util/buf.h"
#include "fuzz.h"

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* A decoded journal entry's encoding (without its '\n' when decoded again). */
static void journal_encode(const struct state_journal_entry *e, struct buf *out)
{
	if (e->name)
		state_journal_encode(e->serial, e->name, e->rec, out);
	else
		state_journal_encode_source(e->serial, e->source_url, e->source_ref, e->source_commit, out);
}

static void fuzz_journal_line(const uint8_t *data, size_t size)
{
	struct state_journal_entry e, back;
	struct buf a = BUF_INIT, b = BUF_INIT;
	json_error_t err;
	json_t *j;

	if (state_journal_decode((const char *)data, size, "fuzz.journal", 1, &e))
		return;
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		fprintf(stderr, "journal line accepted, but jansson says %d:%d: %s\n", err.line, err.column, err.text);
	FUZZ_CHECK(j != NULL);
	json_decref(j);
	FUZZ_CHECK(e.serial > 0);
	FUZZ_CHECK(!e.name != !e.source_commit); /* one kind or the other */
	FUZZ_CHECK(e.name || state_source_check(e.source_url, e.source_ref, e.source_commit) == 0);
	FUZZ_CHECK(!e.rec || (e.name && !strcmp(e.rec->name, e.name)));
	journal_encode(&e, &a);
	FUZZ_CHECK(a.len > 0 && a.data[a.len - 1] == '\n' && !memchr(a.data, '\n', a.len - 1));
	if (state_journal_decode(a.data, a.len - 1, "fuzz.journal", 1, &back)) {
		fprintf(stderr, "re-decoding failed on:\n%s\n", a.data);
		FUZZ_CHECK(!"the encoding of a decoded journal line decodes");
	}
	FUZZ_CHECK(back.serial == e.serial && same_str(back.name, e.name) && !back.rec == !e.rec);
	FUZZ_CHECK(same_str(back.source_url, e.source_url) && same_str(back.source_ref, e.source_ref) &&
		   same_str(back.source_commit, e.source_commit));
	journal_encode(&back, &b);
	FUZZ_CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
	state_journal_entry_clear(&back);
	state_journal_entry_clear(&e);
	buf_free(&a);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state *st = NULL, *back = NULL;
	struct buf a = BUF_INIT, b = BUF_INIT;
	int refused = 0;

	json_error_t e;
	json_t *j;

	fuzz_journal_line(data, size);
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
