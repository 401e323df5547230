/* The http-01 answers certsync serves itself (`http01: {serve: true}`): which issuers need the built-in server. */
#include "acme.h"

#include <stdio.h>
#include <string.h>

/* The acme issuer's parsed config, or NULL for any other issuer. */
static const struct acme *serve_acme(const struct issuer *is)
{
	const struct provider_ops *ops = provider_find("acme");

	return ops && is->ops == ops ? is->priv : NULL;
}

void acme_serve_check(const struct config *cfg, const struct issuer *is, const char *file, struct diags *d)
{
	const struct acme *a = serve_acme(is);

	if (!a || cfg->server.listen)
		return;
	for (size_t i = 0; i < a->n_solvers; i++)
		if (a->solvers[i].kind == ACME_HTTP01_SERVE)
			diags_add(d, file, a->solvers[i].line, a->solvers[i].col,
				  "issuers.%s.solvers[%zu]: " ACME_SERVE_NEEDS_LISTEN, is->name, i);
}

int acme_serve_needed(const struct config *cfg, char *where, size_t n)
{
	for (size_t k = 0; k < cfg->n_issuers; k++) {
		const struct acme *a = serve_acme(&cfg->issuers[k]);

		for (size_t i = 0; a && i < a->n_solvers; i++) {
			if (a->solvers[i].kind != ACME_HTTP01_SERVE)
				continue;
			snprintf(where, n, "issuers.%s.solvers[%zu]", cfg->issuers[k].name, i);
			return 1;
		}
	}
	return 0;
}
