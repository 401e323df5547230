/* The provider table: every issuer type certsync knows. Adding a driver adds a line here. */
#include "../provider.h"

#include <string.h>

extern const struct provider_ops provider_ca, provider_dnsimple, provider_digicert, provider_rfc2136, provider_acme;

static const struct provider_ops *const providers[] = {
	&provider_ca, &provider_dnsimple, &provider_digicert, &provider_rfc2136, &provider_acme,
};

const struct provider_ops *provider_find(const char *type)
{
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
		if (type && !strcmp(providers[i]->type, type))
			return providers[i];
	return NULL;
}

const char *provider_type_list(void)
{
	return "known types: ca, dnsimple, digicert, rfc2136, acme";
}
