/*
 * The parse cache's record reader (cert_spec_unpack): it never reads past
 * the record, and what it accepts is canonical: packing it again gives the
 * same bytes (so nothing in a record is ignored or reinterpreted).
 */
#include <string.h>

#include "../manifests/manifest.h"
#include "../util/buf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cert_spec *s = cert_spec_unpack(data, size);
	struct buf b = BUF_INIT;

	if (!s)
		return 0;
	cert_spec_pack(s, &b);
	FUZZ_CHECK(b.len == size && !memcmp(b.data, data, size));
	buf_free(&b);
	cert_spec_free(s);
	return 0;
}
