/*
 * Differential: the fast YAML reader (manifests/yfast.c) against libyaml.
 * Wherever the fast reader accepts a text, libyaml must accept it too and
 * give the same tree: node types, text, quoting, line:col, documents.
 */
#include <string.h>

#include "../manifests/internal.h"
#include "fuzz.h"

static void same_node(const struct ynode *a, const struct ynode *b)
{
	FUZZ_CHECK((a == NULL) == (b == NULL));
	if (!a)
		return;
	FUZZ_CHECK(a->type == b->type);
	FUZZ_CHECK(a->line == b->line && a->col == b->col);
	FUZZ_CHECK(a->n == b->n);
	if (a->type == YNODE_SCALAR) {
		FUZZ_CHECK(a->len == b->len && !memcmp(a->str, b->str, a->len));
		FUZZ_CHECK(a->quoted == b->quoted);
	} else if (a->type == YNODE_MAP) {
		for (size_t i = 0; i < 2 * a->n; i++)
			same_node(a->kv[i], b->kv[i]);
	} else {
		for (size_t i = 0; i < a->n; i++)
			same_node(a->items[i], b->items[i]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diags d = DIAGS_INIT;
	struct yfile *fast = NULL, *lib = NULL;

	/* the fast reader's own contract starts after the checks both readers share */
	if (size > MANIFEST_MAX_FILE_BYTES || manifest_text_check("f.yaml", (const char *)data, size, &d))
		goto out;
	if (!manifest_yfast_parse("f.yaml", (const char *)data, size, &fast))
		goto out; /* outside the subset: libyaml's alone */
	FUZZ_CHECK(manifest_ylib_parse("f.yaml", (const char *)data, size, &lib, &d) == 0);
	FUZZ_CHECK(d.n == 0);
	FUZZ_CHECK(fast->n_docs == lib->n_docs);
	for (size_t i = 0; i < fast->n_docs; i++) {
		FUZZ_CHECK(fast->docs[i].line == lib->docs[i].line && fast->docs[i].col == lib->docs[i].col);
		same_node(fast->docs[i].root, lib->docs[i].root);
	}
out:
	manifest_yaml_free(fast);
	manifest_yaml_free(lib);
	diags_free(&d);
	return 0;
}
