/*
 * Webhook bodies as the server hands them to a provider: the DNSimple
 * driver's webhook op against a state with records that match by id and by
 * common name. Whatever the body, the answer is an error, a duplicate, an
 * ignored delivery or names of records of this issuer.
 */
#include <string.h>

#include "../reconciler/config.h"
#include "../reconciler/provider.h"
#include "../state/state.h"
#include "fuzz.h"

static struct state *fuzz_state(void)
{
	struct state *st = state_new();
	struct state_cert *c;

	c = state_cert_put(st, "www");
	state_str_set(&c->issuer, "dns");
	state_cert_set_id(c, "dnsimple.certificate_id", "101");
	state_cert_set_id(c, "dnsimple.common_name", "www.pizza.company");
	c = state_cert_put(st, "shop");
	state_str_set(&c->issuer, "dns");
	state_cert_set_id(c, "dnsimple.pending_id", "102");
	c = state_cert_put(st, "other");
	state_str_set(&c->issuer, "elsewhere");
	state_cert_set_id(c, "dnsimple.certificate_id", "101");
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct provider_ops *ops = provider_find("dnsimple");
	struct issuer is = {"dns", ops, NULL, 1, 1};
	struct state *st = fuzz_state();
	struct webhook_result r;
	int rc;

	FUZZ_CHECK(ops && ops->webhook);
	rc = ops->webhook(&is, (const char *)data, size, st, &r);
	if (!rc) {
		FUZZ_CHECK(r.event != NULL);
		for (size_t i = 0; i < r.n_names; i++)
			FUZZ_CHECK(!strcmp(r.names[i], "www") || !strcmp(r.names[i], "shop"));
	}
	webhook_result_free(&r);
	state_free(st);
	return 0;
}
