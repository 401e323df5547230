/*
 * DNSimple webhook deliveries (§4): at least once, unordered, unsigned. The
 * payload only routes: it names a certificate id, and the driver re-fetches
 * that certificate through the API before anything is installed.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/err.h"
#include "../../util/util.h"
#include "dnsimple.h"

void webhook_result_free(struct webhook_result *r)
{
	for (size_t i = 0; i < r->n_names; i++)
		free(r->names[i]);
	free(r->names);
	free(r->event);
	memset(r, 0, sizeof(*r));
}

static int id_is(const struct state_cert *rec, const char *key, long long id)
{
	const char *v = state_cert_id(rec, key);

	return v && strtoll(v, NULL, 10) == id;
}

int dnsimple_webhook(const struct issuer *is, const char *body, size_t len, struct state *st,
		     struct webhook_result *out)
{
	json_t *j = NULL, *cert, *idv;
	json_error_t je;
	const char *name, *rid, *cn;
	struct state_cert **recs = NULL;
	size_t n = 0;
	long long id;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(j)) {
		rc = cs_error(CS_EINVALID, "issuer %s: DNSimple webhook body is not a JSON object (%d:%d: %s)",
			      is->name, je.line, je.column, je.text);
		goto out;
	}
	name = json_string_value(json_object_get(j, "name"));
	rid = json_string_value(json_object_get(j, "request_identifier"));
	if (!name || !rid || !*rid || strlen(rid) > 128) {
		rc = cs_error(CS_EINVALID,
			      "issuer %s: DNSimple webhook without a \"name\" or a \"request_identifier\" of at most "
			      "128 characters",
			      is->name);
		goto out;
	}
	out->event = xstrndup(name, strlen(name) > 64 ? 64 : strlen(name));
	if (state_webhook_seen(st, rid)) {
		out->duplicate = 1;
		goto out;
	}
	cert = json_object_get(json_object_get(j, "data"), "certificate");
	idv = json_object_get(cert, "id");
	if (strncmp(name, "certificate.", 12) || !json_is_integer(idv)) {
		out->ignored = 1;
		goto out;
	}
	/*
	 * DNSimple deleted its copy of a key: ours is in the key store, so there is
	 * nothing to look at again (and nothing that may lead to a purchase).
	 */
	if (!strcmp(name, "certificate.remove_private_key")) {
		out->ignored = 1;
		goto out;
	}
	id = json_integer_value(idv);
	cn = json_string_value(json_object_get(cert, "common_name"));
	recs = state_cert_list(st, &n);
	out->names = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		const struct state_cert *r = recs[i];
		const char *rcn = state_cert_id(r, "dnsimple.common_name");

		if (!util_streq(r->issuer, is->name))
			continue;
		/* Our certificate, or (auto-renewal: a new id) one for the same common name. */
		if (id_is(r, "dnsimple.pending_id", id) || id_is(r, "dnsimple.certificate_id", id) ||
		    (cn && rcn && !strcasecmp(cn, rcn)))
			out->names[out->n_names++] = xstrdup(r->name);
	}
	if (!out->n_names)
		out->ignored = 1;
out:
	free(recs);
	json_decref(j);
	return rc;
}
