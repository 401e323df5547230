/*
 * The DNSimple DNS driver's zone of a name: the configured zones, else the
 * account's zone list (GET /v2/{account}/zones, every page, once per run),
 * the longest suffix winning (docs/acme.md, "Zone discovery").
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../state/state.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "dnsimple.h"

#define DNSIMPLE_MAX_ZONES 10000

/* 1 when zone is fqdn or a parent of it (label-wise, case-insensitive). */
static int zone_holds(const char *zone, const char *fqdn)
{
	size_t fl = strlen(fqdn), zl = strlen(zone);

	return zl <= fl && !strcasecmp(fqdn + fl - zl, zone) && (zl == fl || fqdn[fl - zl - 1] == '.');
}

/* The longest of zones holding fqdn, or NULL. */
static const char *longest(char *const *zones, size_t n, const char *fqdn)
{
	const char *best = NULL;

	for (size_t i = 0; i < n; i++)
		if (zone_holds(zones[i], fqdn) && (!best || strlen(zones[i]) > strlen(best)))
			best = zones[i];
	return best;
}

struct zone_list {
	char **v;
	size_t n;
	struct dnsimple *d;
};

static void zone_list_free(struct zone_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* One Zone object of the list: its name, checked (an answer is untrusted) and lowercased. */
static int zone_item(const void *json, void *arg)
{
	struct zone_list *l = arg;
	const char *name = json_string_value(json_object_get((const json_t *)json, "name"));
	char *z;

	if (!name || manifest_check_dns_name(name, 0))
		return cs_error(CS_ETRANSIENT, "issuer %s: listZones: a zone without a valid \"name\"", l->d->name);
	if (l->n >= DNSIMPLE_MAX_ZONES)
		return cs_error(CS_EINVALID,
				"issuer %s: the account has more than %d zones (list them in issuers.%s.zones)",
				l->d->name, DNSIMPLE_MAX_ZONES, l->d->name);
	z = xstrdup(name);
	for (char *p = z; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(char *));
	l->v[l->n++] = z;
	return 0;
}

/* Lists the account's zones into the run's cache (once: another worker may have done it meanwhile). */
static int list_account_zones(struct dnsimple *d)
{
	struct zone_list l = {.d = d};
	char *path;
	int rc;

	pthread_mutex_lock(&d->mu);
	rc = d->acct_zones_listed;
	pthread_mutex_unlock(&d->mu);
	if (rc)
		return 0;
	path = xasprintf("%s/zones?sort=id:asc", d->account_id);
	rc = dnsimple_list_pages(d, "dnsimple listZones", path, zone_item, &l);
	free(path);
	if (rc) {
		zone_list_free(&l);
		return rc;
	}
	pthread_mutex_lock(&d->mu);
	if (!d->acct_zones_listed) {
		d->acct_zones = l.v;
		d->n_acct_zones = l.n;
		d->acct_zones_listed = 1;
		l.v = NULL;
		l.n = 0;
	}
	pthread_mutex_unlock(&d->mu);
	zone_list_free(&l);
	return 0;
}

int dnsimple_zone_of(struct dnsimple *d, const char *fqdn, char **zone)
{
	const char *z;
	size_t n;
	int rc;

	if (d->n_zones) {
		if (!(z = longest(d->zones, d->n_zones, fqdn)))
			return provider_fail(STATE_FAIL_CONFIG,
					     cs_error(CS_ENOTFOUND,
						      "issuer %s: no configured zone contains %s (issuers.%s.zones)",
						      d->name, fqdn, d->name));
		*zone = xstrdup(z);
		return 0;
	}
	if ((rc = dnsimple_session(d)) || (rc = list_account_zones(d)))
		return rc;
	pthread_mutex_lock(&d->mu);
	z = longest(d->acct_zones, d->n_acct_zones, fqdn);
	*zone = z ? xstrdup(z) : NULL;
	n = d->n_acct_zones;
	pthread_mutex_unlock(&d->mu);
	if (!*zone)
		return provider_fail(
			STATE_FAIL_CONFIG,
			cs_error(CS_ENOTFOUND,
				 "issuer %s: no zone of DNSimple account %s contains %s (%zu zone%s listed; add "
				 "the zone in DNSimple or list issuers.%s.zones)",
				 d->name, d->account_id, fqdn, n, n == 1 ? "" : "s", d->name));
	return 0;
}

int dnsimple_dns_zone_for(const struct issuer *is, const char *fqdn, char **zone)
{
	return dnsimple_zone_of(is->priv, fqdn, zone);
}
