/*
 * The saved-plan reader (`apply plan.json`): a file trusted no more than a
 * manifest. What it accepts is rendered in every format, and its JSON
 * rendering must read back.
 */
#include <stdlib.h>

#include "../reconciler/plan/plan.h"
#include "../util/buf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plan *p = NULL, *back = NULL;
	struct buf b = BUF_INIT;

	if (plan_from_json((const char *)data, size, "plan.json", &p))
		return 0;
	plan_render_text(p, 0, &b);
	buf_clear(&b);
	plan_render_text(p, PLAN_TEXT_COLOR | PLAN_TEXT_ASCII, &b);
	buf_clear(&b);
	plan_render_markdown(p, &b);
	buf_clear(&b);
	plan_render_github(p, &b);
	buf_clear(&b);
	FUZZ_CHECK(plan_render_json(p, &b) == 0);
	if (plan_from_json(b.data, b.len, "again.json", &back)) {
		fprintf(stderr, "the JSON rendering does not read back:\n%s\n", b.data);
		FUZZ_CHECK(!"a rendered plan reads back");
	}
	plan_free(back);
	plan_free(p);
	buf_free(&b);
	return 0;
}
