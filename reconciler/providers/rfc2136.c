/*
 * The rfc2136 issuer: no certificates, only a DNS driver that places and
 * removes TXT records on a primary nameserver by dynamic UPDATE (RFC 2136)
 * signed with TSIG, for other issuers' validations (acme dns01, DigiCert
 * validation.dns). The zone of a name is the configured one, else found by
 * asking the nameserver for SOA records up the labels (docs/acme.md).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/dnsq.h"
#include "../../util/err.h"
#include "../../util/log.h"
#include "../../util/util.h"
#include "../provider.h"
#include "rfc2136.h"

#define RFC2136_TIMEOUT 10
#define RFC2136_TTL 60

/* ---------- config ---------- */

static void rfc2136_free(void *priv)
{
	struct rfc2136 *r = priv;

	if (!r)
		return;
	free(r->name);
	free(r->server);
	free(r->key_name);
	config_cred_free(&r->secret);
	for (size_t i = 0; i < r->n_zones; i++)
		free(r->zones[i]);
	free(r->zones);
	free(r);
}

/* A DNS name from config, lowercase, without its trailing dot; NULL (diagnostic added) if invalid. */
static char *config_dns_name(const struct ynode *v, const char *file, const char *what, struct diags *dg)
{
	const char *s, *why;
	char *out;
	size_t n;

	if (ynode_string(v, file, what, dg, &s))
		return NULL;
	out = xstrdup(s);
	n = strlen(out);
	if (n > 1 && out[n - 1] == '.')
		out[n - 1] = 0;
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if ((why = manifest_check_dns_name(out, 0))) {
		diags_add(dg, file, v->line, v->col, "%s: \"%s\": %s", what, s, why);
		free(out);
		return NULL;
	}
	return out;
}

static void rfc2136_parse_zones(struct rfc2136 *r, const struct ynode *v, const char *file, struct diags *dg)
{
	if (ynode_expect(v, YNODE_SEQ, file, "zones", dg))
		return;
	r->zones = xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++) {
		char *z = config_dns_name(v->items[i], file, "zones", dg);
		if (z)
			r->zones[r->n_zones++] = z;
	}
}

static void rfc2136_parse_tsig(struct rfc2136 *r, const struct ynode *node, const char *file, const char *what,
			       struct diags *dg)
{
	static const char *const keys[] = {"name", "algorithm", "secret", NULL};
	const struct ynode *v;
	const char *s;
	char *kn;

	if (ynode_expect(node, YNODE_MAP, file, "tsig", dg))
		return;
	ynode_check_keys(node, keys, file, what, dg);
	if (!(v = ynode_get(node, "name")))
		diags_add(dg, file, node->line, node->col, "%s: name is required (the key's name, e.g. certsync-key.)",
			  what);
	else if ((kn = config_dns_name(v, file, "tsig.name", dg))) {
		r->key_name = xasprintf("%s.", kn);
		free(kn);
	}
	if ((v = ynode_get(node, "algorithm")) && !ynode_string(v, file, "tsig.algorithm", dg, &s) &&
	    !(r->alg = rfc2136_alg(s, &r->alg_label)))
		diags_add(dg, file, v->line, v->col,
			  "tsig.algorithm: \"%s\" is not one of hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, "
			  "hmac-sha1, hmac-md5",
			  s);
	if (!(v = ynode_get(node, "secret")))
		diags_add(
			dg, file, node->line, node->col,
			"%s: secret is required ({env: TSIG_SECRET} or {file: PATH}: base64, as tsig-keygen prints it)",
			what);
	else
		config_parse_cred(v, file, "tsig.secret", 0, dg, &r->secret);
}

static int rfc2136_config(const struct ynode *node, const char *file, const char *name, struct diags *dg, void **priv)
{
	static const char *const keys[] = {"type", "nameserver", "tsig", "zones", "timeout", "ttl", NULL};
	struct rfc2136 *r = xcalloc(1, sizeof(*r));
	char *what = xasprintf("issuers.%s", name), *tw = xasprintf("issuers.%s.tsig", name);
	const struct ynode *v;
	size_t before = dg->n;
	const char *s;
	char host[256];
	int port;
	int64_t ttl = RFC2136_TTL;

	r->name = xstrdup(name);
	r->alg = rfc2136_alg("hmac-sha256", &r->alg_label);
	r->timeout = RFC2136_TIMEOUT;
	ynode_check_keys(node, keys, file, what, dg);
	if (!(v = ynode_get(node, "nameserver")))
		diags_add(dg, file, node->line, node->col,
			  "%s: nameserver is required (the primary that takes dynamic updates, host:port)", what);
	else if (!ynode_string(v, file, "nameserver", dg, &s)) {
		if (dnsq_parse_server(s, host, sizeof(host), &port))
			diags_add(dg, file, v->line, v->col, "nameserver: %s", cs_errmsg());
		else
			r->server = xstrdup(s);
	}
	if (!(v = ynode_get(node, "tsig")))
		diags_add(dg, file, node->line, node->col,
			  "%s: tsig is required ({name: KEY., algorithm: hmac-sha256, secret: {env: TSIG_SECRET}})",
			  what);
	else
		rfc2136_parse_tsig(r, v, file, tw, dg);
	if ((v = ynode_get(node, "zones")))
		rfc2136_parse_zones(r, v, file, dg);
	if ((v = ynode_get(node, "timeout")) && !ynode_duration(v, file, "timeout", dg, &r->timeout) &&
	    (r->timeout < 1 || r->timeout > 300))
		diags_add(dg, file, v->line, v->col, "timeout: must be between 1s and 300s");
	if ((v = ynode_get(node, "ttl")))
		ynode_int(v, file, "ttl", 1, 86400, dg, &ttl);
	r->ttl = (int)ttl;
	free(what);
	free(tw);
	if (dg->n > before) {
		rfc2136_free(r);
		return CS_EINVALID;
	}
	*priv = r;
	return 0;
}

/* ---------- what it is not ---------- */

static void rfc2136_check_spec(const struct issuer *is, const struct cert_spec *s, struct diags *d)
{
	diags_add(d, s->file, s->line, s->col,
		  "certificate \"%s\": issuer %s (rfc2136) only places DNS records; it issues no certificates (name it "
		  "in an acme dns01 solver or a DigiCert validation.dns instead)",
		  s->name, is->name);
}

static int rfc2136_plan(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
			const struct state_cert *rec, struct plan_steps *out)
{
	(void)kind;
	(void)s;
	(void)rec;
	memset(out, 0, sizeof(*out));
	return cs_error(CS_EINVALID, "issuer %s (rfc2136) only places DNS records; it issues no certificates",
			is->name);
}

static int rfc2136_step(struct step_ctx *ctx, enum step_status *status)
{
	(void)status;
	return cs_error(CS_EINVALID, "issuer %s (rfc2136) only places DNS records; it issues no certificates",
			ctx->issuer->name);
}

/* ---------- the DNS driver ---------- */

/* Reads the TSIG secret into b (buf_wipe it) and checks it is base64. Errors never show it. */
static int rfc2136_secret(const struct rfc2136 *r, struct buf *b)
{
	int rc;

	if ((rc = config_cred_read(&r->secret, "tsig.secret", b)))
		return provider_fail(STATE_FAIL_CONFIG, rc);
	log_add_secret(b->data); /* redacted from every log line, whatever prints it */
	if (rfc2136_b64_ok(b->data))
		return provider_fail(STATE_FAIL_CONFIG,
				     cs_error(CS_EAUTH,
					      "issuer %s: tsig.secret (%s) is not base64 (as tsig-keygen prints it)",
					      r->name, r->secret.where ? r->secret.where : r->secret.ref));
	return 0;
}

/* The longest configured zone that is fqdn or a parent of it, or NULL. */
static const char *rfc2136_configured_zone(const struct rfc2136 *r, const char *fqdn)
{
	const char *best = NULL;
	size_t fl = strlen(fqdn);

	for (size_t i = 0; i < r->n_zones; i++) {
		size_t zl = strlen(r->zones[i]);
		if (zl <= fl && !strcasecmp(fqdn + fl - zl, r->zones[i]) && (zl == fl || fqdn[fl - zl - 1] == '.') &&
		    (!best || zl > strlen(best)))
			best = r->zones[i];
	}
	return best;
}

/*
 * Where fqdn's record goes: *zone and *owner (caller frees). The configured
 * zones when there are any; else the nameserver's answers (a CNAME at fqdn
 * is followed, the SOA walk names the zone).
 */
static int rfc2136_locate(const struct rfc2136 *r, const char *fqdn, char **zone, char **owner)
{
	const char *srv[1] = {r->server};
	const char *z;
	int rc;

	if (r->n_zones) {
		if (!(z = rfc2136_configured_zone(r, fqdn)))
			return provider_fail(STATE_FAIL_CONFIG,
					     cs_error(CS_ENOTFOUND,
						      "issuer %s: no configured zone contains %s (issuers.%s.zones)",
						      r->name, fqdn, r->name));
		*zone = xstrdup(z);
		*owner = xstrdup(fqdn);
		return 0;
	}
	if ((rc = dnsq_find_zone(srv, 1, fqdn, owner, zone)))
		return rc == CS_ETRANSIENT
			       ? rc
			       : provider_fail(STATE_FAIL_CONFIG, cs_error(rc, "issuer %s: %s", r->name, cs_errmsg()));
	return 0;
}

static int rfc2136_zone_for(const struct issuer *is, const char *fqdn, char **zone)
{
	char *owner = NULL;
	int rc = rfc2136_locate(is->priv, fqdn, zone, &owner);

	free(owner);
	return rc;
}

static void rfc2136_check_servers(const struct issuer *is, char ***out, size_t *n)
{
	const struct rfc2136 *r = is->priv;

	*out = xcalloc(1, sizeof(char *));
	(*out)[0] = xstrdup(r->server);
	*n = 1;
}

/* Sends one signed UPDATE (add or delete-value) and checks its signed answer. */
static int rfc2136_update(const struct rfc2136 *r, const char *zone, const char *owner, const char *value, int add)
{
	struct buf secret = BUF_INIT;
	struct rfc2136_msg q = {0};
	uint8_t *ans = NULL;
	size_t alen = 0;
	int rc;

	if ((rc = rfc2136_secret(r, &secret)) || (rc = rfc2136_msg_build(r, secret.data, zone, owner, value, add, &q)))
		goto out;
	if ((rc = dnsq_exchange(r->server, (int)(r->timeout * 1000), q.wire, q.len, &ans, &alen))) {
		rc = cs_error(rc, "issuer %s: update of zone %s: %s", r->name, zone, cs_errmsg());
		goto out;
	}
	rc = rfc2136_msg_answer(r, secret.data, &q, zone, ans, alen);
out:
	free(ans);
	rfc2136_msg_free(&q);
	buf_wipe(&secret);
	return rc;
}

/*
 * The ref of a placed record: "<zone> <owner> <value>" (no DNS name holds a
 * space; the value is the rest). It names the exact value placed: a caller
 * removing an older token may pass its current one. An older "<zone>
 * <owner>" ref leaves *value NULL.
 */
static int rfc2136_ref_parse(const char *ref, char **zone, char **owner, char **value)
{
	const char *sp = ref ? strchr(ref, ' ') : NULL, *sp2;

	if (!sp || sp == ref || !sp[1] || sp[1] == ' ')
		return -1;
	sp2 = strchr(sp + 1, ' ');
	*zone = xstrndup(ref, (size_t)(sp - ref));
	*owner = sp2 ? xstrndup(sp + 1, (size_t)(sp2 - sp - 1)) : xstrdup(sp + 1);
	*value = sp2 && sp2[1] ? xstrdup(sp2 + 1) : NULL;
	return 0;
}

static int rfc2136_txt_create(const struct issuer *is, const char *fqdn, const char *value, char **ref)
{
	const struct rfc2136 *r = is->priv;
	char *zone = NULL, *owner = NULL;
	int rc;

	if ((rc = rfc2136_locate(r, fqdn, &zone, &owner)) || (rc = rfc2136_update(r, zone, owner, value, 1)))
		goto out;
	log_debug("issuer %s: TXT record placed at %s in zone %s", r->name, owner, zone);
	*ref = xasprintf("%s %s %s", zone, owner, value);
out:
	free(zone);
	free(owner);
	return rc;
}

static int rfc2136_txt_delete(const struct issuer *is, const char *fqdn, const char *value, const char *ref)
{
	const struct rfc2136 *r = is->priv;
	char *zone = NULL, *owner = NULL, *placed = NULL;
	int rc = 0;

	if (rfc2136_ref_parse(ref, &zone, &owner, &placed) && (rc = rfc2136_locate(r, fqdn, &zone, &owner)))
		goto out;
	rc = rfc2136_update(r, zone, owner, placed ? placed : value, 0);
out:
	free(zone);
	free(owner);
	free(placed);
	return rc;
}

/* validate --credentials [--online]: the secret reads as base64; online, a signed SOA query verifies. */
static void rfc2136_check(const struct issuer *is, int online, struct provider_check *out)
{
	const struct rfc2136 *r = is->priv;
	struct buf secret = BUF_INIT;
	const char *zone = r->n_zones ? r->zones[0] : NULL;

	if (rfc2136_secret(r, &secret))
		provider_check_problem(out, "%s", cs_errmsg());
	else if (!online)
		provider_check_note(out, "TSIG key %s (%s) for nameserver %s", r->key_name, r->alg_label, r->server);
	else if (rfc2136_probe(r, secret.data, zone))
		provider_check_problem(out, "%s", cs_errmsg());
	else
		provider_check_note(out, "nameserver %s answers with TSIG key %s (%s)%s%s", r->server, r->key_name,
				    r->alg_label, zone ? " for zone " : "", zone ? zone : "");
	buf_wipe(&secret);
}

static const struct dns_driver rfc2136_dns = {
	.txt_create = rfc2136_txt_create,
	.txt_delete = rfc2136_txt_delete,
	.zone_for = rfc2136_zone_for,
	.check_servers = rfc2136_check_servers,
};

const struct provider_ops provider_rfc2136 = {
	.type = "rfc2136",
	.config_parse = rfc2136_config,
	.config_free = rfc2136_free,
	.check_spec = rfc2136_check_spec,
	.plan = rfc2136_plan,
	.step = rfc2136_step,
	.dns = &rfc2136_dns,
	.check = rfc2136_check,
};
