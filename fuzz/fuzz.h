/*
 * Shared by the libFuzzer harnesses (fuzz/README.md): the entry point's
 * prototype (the build uses -Wmissing-prototypes -Werror) and a check that
 * aborts, so libFuzzer records the input as a crash.
 */
#ifndef CS_FUZZ_FUZZ_H
#define CS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                                               \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                       \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

#endif
