/* The operator's config (certsync.yaml): schema, issuers (every provider's config parser), credentials. */
#include <stdlib.h>

#include "../reconciler/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diags d = DIAGS_INIT;
	struct config *c = NULL;
	int rc = config_parse("/fuzz/certsync.yaml", (const char *)data, size, &c, &d);

	FUZZ_CHECK((rc == 0) == (c != NULL));
	FUZZ_CHECK(rc == 0 || d.n > 0);
	for (size_t i = 0; i < d.n; i++)
		free(diag_format(&d.v[i]));
	config_free(c);
	diags_free(&d);
	return 0;
}
