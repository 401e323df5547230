/* The manifest parser end to end: YAML (either reader), the Certificate schema, then the checks across the set. */
#include <stdlib.h>
#include <string.h>

#include "../manifests/manifest.h"
#include "fuzz.h"

static int fuzz_issuer_exists(void *arg, const char *issuer)
{
	(void)arg;
	return !strcmp(issuer, "ca") || !strcmp(issuer, "internal");
}

static const char *fuzz_issuer_at(void *arg, size_t i)
{
	static const char *const names[] = {"ca", "internal"};

	(void)arg;
	return i < 2 ? names[i] : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct manifest_ctx ctx = {fuzz_issuer_exists, NULL, NULL, fuzz_issuer_at};
	struct diags d = DIAGS_INIT;
	struct cert_spec **specs = NULL;
	unsigned char *bad;
	size_t n = 0;
	int rc = manifest_parse_file("fuzz.yaml", (const char *)data, size, &specs, &n, &d);

	FUZZ_CHECK(rc == 0 || d.n > 0); /* a refusal always says why */
	bad = calloc(n + 1, 1);
	manifest_check_set(specs, n, &ctx, bad, &d);
	for (size_t i = 0; i < d.n; i++)
		free(diag_format(&d.v[i]));
	for (size_t i = 0; i < n; i++)
		cert_spec_free(specs[i]);
	free(specs);
	free(bad);
	diags_free(&d);
	return 0;
}
