/* DNS queries with ldns (util/dnsq.h): zone discovery, NS lookups, TXT checks. Answers are untrusted. */
#include "dnsq.h"
#include "libversion.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ldns/ldns.h>

#include "err.h"
#include "util.h"

#define DNSQ_NAME_MAX 254   /* 253 characters + NUL */
#define DNSQ_MAX_RRS 256    /* RRs looked at in one section of one answer */
#define DNSQ_MAX_LABELS 127 /* candidates of the SOA walk */
#define DNSQ_EDNS_SIZE 1232
#define DNSQ_ERR_MAX 600

void dnsq_servers_free(struct dnsq_servers *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->addr[i]);
	free(s->addr);
	s->addr = NULL;
	s->n = 0;
}

/* ---------- servers ---------- */

/* The servers of one operation; one that did not answer is skipped for the rest of it (while others remain). */
struct dnsq_set {
	struct dnsq_servers s;
	unsigned char dead[DNSQ_MAX_SERVERS];
	size_t n_dead;
};

static int dnsq_parse_port(const char *p, int *port)
{
	long v = 0;

	if (!*p || strlen(p) > 5)
		return -1;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

static int dnsq_host_ok(const char *h, size_t len)
{
	if (!len || len >= DNSQ_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)h[i]) && !strchr(".-_:%", h[i]))
			return 0;
	return 1;
}

int dnsq_parse_server(const char *s, char *host, size_t host_len, int *port)
{
	const char *h = s, *colon, *pstr = NULL;
	size_t hl;
	int p = 53;

	if (!s || !*s)
		return cs_error(CS_EINVALID, "empty DNS server address");
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || (close[1] && close[1] != ':'))
			return cs_error(CS_EINVALID, "DNS server \"%.80s\": expected [IPv6]:port", s);
		h = s + 1;
		hl = (size_t)(close - h);
		if (close[1] == ':')
			pstr = close + 2;
	} else if ((colon = strchr(s, ':')) && !strchr(colon + 1, ':')) {
		hl = (size_t)(colon - s);
		pstr = colon + 1;
	} else
		hl = strlen(s); /* a name, an IPv4 address or a bare IPv6 address */
	if (!dnsq_host_ok(h, hl) || hl >= host_len)
		return cs_error(CS_EINVALID, "DNS server \"%.80s\": not a host, host:port or [IPv6]:port", s);
	if (pstr && dnsq_parse_port(pstr, &p))
		return cs_error(CS_EINVALID, "DNS server \"%.80s\": the port must be 1-65535", s);
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = p;
	return 0;
}

/* The socket address of server (a literal address, else the first address getaddrinfo gives). */
static int dnsq_sockaddr(const char *server, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[DNSQ_NAME_MAX];
	int port, rc, grc;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

	if ((rc = dnsq_parse_server(server, host, sizeof(host), &port)))
		return rc;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		*len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*v6);
		return 0;
	}
	if ((grc = getaddrinfo(host, NULL, &hints, &ai)) || !ai)
		return cs_error(grc == EAI_AGAIN ? CS_ETRANSIENT : CS_EINVALID, "DNS server %s: cannot resolve %s: %s",
				server, host, grc ? gai_strerror(grc) : "no address");
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	if (ss->ss_family == AF_INET)
		v4->sin_port = htons((uint16_t)port);
	else
		v6->sin6_port = htons((uint16_t)port);
	freeaddrinfo(ai);
	return 0;
}

/* "127.0.0.1:53" / "[::1]:53" for an address rdf of resolv.conf. */
static char *dnsq_rdf_server(const ldns_rdf *a, int port)
{
	char txt[INET6_ADDRSTRLEN];
	int af = ldns_rdf_get_type(a) == LDNS_RDF_TYPE_AAAA ? AF_INET6 : AF_INET;
	size_t want = af == AF_INET6 ? 16 : 4;

	if (ldns_rdf_size(a) != want || !inet_ntop(af, ldns_rdf_data(a), txt, sizeof(txt)))
		return NULL;
	return af == AF_INET6 ? xasprintf("[%s]:%d", txt, port) : xasprintf("%s:%d", txt, port);
}

/* The servers to ask: the caller's, else /etc/resolv.conf's (bounded by DNSQ_MAX_SERVERS). */
static int dnsq_server_set(const char *const *given, size_t n, struct dnsq_set *set)
{
	struct dnsq_servers *out = &set->s;
	ldns_resolver *res = NULL;
	ldns_status st;

	memset(set, 0, sizeof(*set));
	out->addr = xcalloc(DNSQ_MAX_SERVERS, sizeof(char *));
	out->n = 0;
	if (n) {
		for (size_t i = 0; i < n && out->n < DNSQ_MAX_SERVERS; i++)
			out->addr[out->n++] = xstrdup(given[i]);
		return 0;
	}
	if ((st = ldns_resolver_new_frm_file(&res, NULL)) != LDNS_STATUS_OK) {
		dnsq_servers_free(out);
		return cs_error(CS_ERROR, "cannot read the system resolvers (/etc/resolv.conf): %s",
				ldns_get_errorstr_by_id(st));
	}
	for (size_t i = 0; i < ldns_resolver_nameserver_count(res) && out->n < DNSQ_MAX_SERVERS; i++) {
		char *s = dnsq_rdf_server(ldns_resolver_nameservers(res)[i], ldns_resolver_port(res));
		if (s)
			out->addr[out->n++] = s;
	}
	ldns_resolver_deep_free(res);
	if (!out->n) {
		dnsq_servers_free(out);
		return cs_error(CS_ENOTFOUND, "no nameserver in /etc/resolv.conf (give resolvers explicitly)");
	}
	return 0;
}

/* ---------- one exchange ---------- */

static int dnsq_wire_send(const char *server, const struct sockaddr_storage *ss, socklen_t sl, ldns_buffer *q, int tcp,
			  int timeout_ms, uint8_t **ans, size_t *alen)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	ldns_status st;

	*ans = NULL;
	*alen = 0;
	st = tcp ? ldns_tcp_send(ans, q, ss, sl, tv, alen) : ldns_udp_send(ans, q, ss, sl, tv, alen);
	if (st != LDNS_STATUS_OK || !*ans) {
		free(*ans);
		*ans = NULL;
		return cs_error(CS_ETRANSIENT, "%s: no answer within %d ms over %s (%s)", server, timeout_ms,
				tcp ? "TCP" : "UDP", ldns_get_errorstr_by_id(st));
	}
	return 0;
}

int dnsq_exchange(const char *server, int timeout_ms, const uint8_t *query, size_t len, uint8_t **answer,
		  size_t *answer_len)
{
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	ldns_buffer *q = NULL;
	uint8_t *ans = NULL;
	size_t alen = 0;
	int rc;

	if (len < 12 || len > 65535)
		return cs_error(CS_EINVALID, "DNS message of %zu bytes", len);
	if (timeout_ms <= 0)
		timeout_ms = DNSQ_TIMEOUT_MS;
	if ((rc = dnsq_sockaddr(server, &ss, &sl)))
		return rc;
	q = ldns_buffer_new(len);
	ldns_buffer_write(q, query, len); /* ldns sends the bytes before the position */
	if ((rc = dnsq_wire_send(server, &ss, sl, q, len > 512, timeout_ms, &ans, &alen)))
		goto out;
	if (alen >= 12 && (ans[2] & 0x02) && len <= 512) { /* truncated: the whole answer over TCP */
		free(ans);
		if ((rc = dnsq_wire_send(server, &ss, sl, q, 1, timeout_ms, &ans, &alen)))
			goto out;
	}
	if (alen < 12 || !(ans[2] & 0x80) || memcmp(ans, query, 2)) {
		rc = cs_error(CS_ETRANSIENT, "%s: the answer is not a DNS response to the query (%zu bytes)", server,
			      alen);
		goto out;
	}
	*answer = ans;
	*answer_len = alen;
	ans = NULL;
out:
	free(ans);
	ldns_buffer_free(q);
	return rc;
}

/* ---------- names ---------- */

/* 1 when s is a host name we accept from the caller or from an answer ("_acme-challenge.x.example"). */
static int dnsq_name_ok(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (!n || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (!label)
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_' && c != '*')
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0;
}

/* A dname rdf as "a.example" (lowercase, no trailing dot) into out; 0 or -1 when it is not a plain name. */
static int dnsq_dname_str(const ldns_rdf *d, char out[DNSQ_NAME_MAX])
{
	char *s;
	size_t n;
	int ok;

	if (!d || ldns_rdf_get_type(d) != LDNS_RDF_TYPE_DNAME || !(s = ldns_rdf2str(d)))
		return -1;
	n = strlen(s);
	if (n && s[n - 1] == '.')
		s[--n] = 0;
	for (char *p = s; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	ok = n < DNSQ_NAME_MAX && dnsq_name_ok(s);
	if (ok)
		memcpy(out, s, n + 1);
	free(s);
	return ok ? 0 : -1;
}

/* 1 when zone is name or a parent of it (label-wise). */
static int dnsq_in_zone(const char *name, const char *zone)
{
	size_t n = strlen(name), z = strlen(zone);

	if (z > n || strcmp(name + n - z, zone))
		return 0;
	return z == n || name[n - z - 1] == '.';
}

static void dnsq_lower(const char *in, char out[DNSQ_NAME_MAX])
{
	size_t n = strlen(in);

	if (n && in[n - 1] == '.')
		n--;
	if (n >= DNSQ_NAME_MAX)
		n = DNSQ_NAME_MAX - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = 0;
}

/* ---------- queries ---------- */

static const char *dnsq_rcode_name(int rcode)
{
	static const char *const names[] = {"NOERROR",	"FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
					    "YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE"};
	return rcode >= 0 && rcode < (int)(sizeof(names) / sizeof(names[0])) ? names[rcode] : "an unknown rcode";
}

/* Sends name/type to one server (RD as asked) and parses the answer into *out. */
static int dnsq_query_one(const char *server, const char *name, ldns_rr_type type, int rd, ldns_pkt **out)
{
	ldns_rdf *qname = NULL;
	ldns_pkt *q = NULL, *a = NULL;
	uint8_t *wire = NULL, *ans = NULL;
	size_t wlen = 0, alen = 0;
	int rc = CS_ERROR;

	if (!(qname = ldns_dname_new_frm_str(name))) {
		rc = cs_error(CS_EINVALID, "\"%.80s\" is not a DNS name", name);
		goto out;
	}
	if (!(q = ldns_pkt_query_new(qname, type, LDNS_RR_CLASS_IN, rd ? LDNS_RD : 0))) {
		ldns_rdf_deep_free(qname);
		rc = cs_error(CS_ERROR, "cannot build a DNS query for %s", name);
		goto out;
	}
	ldns_pkt_set_random_id(q);
	ldns_pkt_set_edns_udp_size(q, DNSQ_EDNS_SIZE);
	if (ldns_pkt2wire(&wire, q, &wlen) != LDNS_STATUS_OK) {
		rc = cs_error(CS_ERROR, "cannot encode a DNS query for %s", name);
		goto out;
	}
	if ((rc = dnsq_exchange(server, DNSQ_TIMEOUT_MS, wire, wlen, &ans, &alen)))
		goto out;
	if (ldns_wire2pkt(&a, ans, alen) != LDNS_STATUS_OK) {
		rc = cs_error(CS_ETRANSIENT, "%s: malformed answer to %s", server, name);
		goto out;
	}
	*out = a;
	a = NULL;
	rc = 0;
out:
	ldns_pkt_free(a);
	ldns_pkt_free(q);
	free(wire);
	free(ans);
	return rc;
}

/*
 * Asks the servers in turn until one answers NOERROR or NXDOMAIN (*out).
 * Otherwise CS_ETRANSIENT naming each server's failure; *refused is 1 when
 * every server answered, and with REFUSED or NOTAUTH (it serves no zone
 * holding the name).
 */
static int dnsq_ask(struct dnsq_set *set, const char *name, ldns_rr_type type, int rd, ldns_pkt **out, int *refused)
{
	char why[DNSQ_ERR_MAX] = "";
	size_t used = 0;
	int n_refused = 0, n_asked = 0;

	*refused = 0;
	for (size_t i = 0; i < set->s.n; i++) {
		ldns_pkt *a = NULL;
		int rcode, w;

		if (set->dead[i] && set->n_dead < set->s.n)
			continue;
		n_asked++;
		if (dnsq_query_one(set->s.addr[i], name, type, rd, &a) == 0) {
			rcode = ldns_pkt_get_rcode(a);
			if (rcode == LDNS_RCODE_NOERROR || rcode == LDNS_RCODE_NXDOMAIN) {
				*out = a;
				return 0;
			}
			n_refused += rcode == LDNS_RCODE_REFUSED || rcode == LDNS_RCODE_NOTAUTH;
			ldns_pkt_free(a);
			w = snprintf(why + used, sizeof(why) - used, "%s%s answered %s", used ? "; " : "",
				     set->s.addr[i], dnsq_rcode_name(rcode));
		} else {
			if (!set->dead[i]) {
				set->dead[i] = 1;
				set->n_dead++;
			}
			w = snprintf(why + used, sizeof(why) - used, "%s%s", used ? "; " : "", cs_errmsg());
		}
		if (w > 0)
			used = (size_t)w >= sizeof(why) - used ? sizeof(why) - 1 : used + (size_t)w;
	}
	*refused = n_asked && n_refused == n_asked;
	return cs_error(CS_ETRANSIENT, "DNS %s %s: %s",
			ldns_rr_descript(type) ? ldns_rr_descript(type)->_name : "query", name, why);
}

/* The first rr of type at owner in list (bounded), or NULL. */
static const ldns_rr *dnsq_find_rr(const ldns_rr_list *list, const char *owner, ldns_rr_type type)
{
	size_t n = ldns_rr_list_rr_count(list);
	char o[DNSQ_NAME_MAX];

	for (size_t i = 0; i < n && i < DNSQ_MAX_RRS; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(list, i);
		if (ldns_rr_get_type(rr) == type && !dnsq_dname_str(ldns_rr_owner(rr), o) && !strcmp(o, owner))
			return rr;
	}
	return NULL;
}

/*
 * Follows the CNAME chain at name (at most DNSQ_MAX_CNAMES links) into out.
 * A server refusing the name ends the chain there (it is not its zone).
 */
static int dnsq_follow_cnames(struct dnsq_set *set, const char *name, char out[DNSQ_NAME_MAX])
{
	char cur[DNSQ_NAME_MAX];
	int rc = 0, refused;

	dnsq_lower(name, cur);
	for (int hops = 0;; hops++) {
		ldns_pkt *a = NULL;
		const ldns_rr *rr;
		char next[DNSQ_NAME_MAX];

		if ((rc = dnsq_ask(set, cur, LDNS_RR_TYPE_CNAME, 1, &a, &refused))) {
			if (!refused)
				return rc;
			break;
		}
		rr = dnsq_find_rr(ldns_pkt_answer(a), cur, LDNS_RR_TYPE_CNAME);
		if (rr && dnsq_dname_str(ldns_rr_rdf(rr, 0), next)) {
			ldns_pkt_free(a);
			return cs_error(CS_EINVALID, "the CNAME at %s points to an invalid name", cur);
		}
		ldns_pkt_free(a);
		if (!rr)
			break;
		if (hops >= DNSQ_MAX_CNAMES)
			return cs_error(CS_EINVALID, "the CNAME chain at %s is longer than %d links", name,
					DNSQ_MAX_CNAMES);
		memcpy(cur, next, sizeof(cur));
	}
	memcpy(out, cur, DNSQ_NAME_MAX);
	return 0;
}

/*
 * The zone an answer to "cand SOA" names: an SOA at cand in the answer, an
 * SOA at cand or a parent in the authority section (a negative answer), or
 * the owner of a referral's NS records (a zone delegated below). "" if none.
 */
static void dnsq_answer_zone(const ldns_pkt *a, const char *cand, char zone[DNSQ_NAME_MAX])
{
	const ldns_rr_list *auth = ldns_pkt_authority(a);
	char o[DNSQ_NAME_MAX];

	zone[0] = 0;
	if (dnsq_find_rr(ldns_pkt_answer(a), cand, LDNS_RR_TYPE_SOA)) {
		memcpy(zone, cand, strlen(cand) + 1);
		return;
	}
	if (ldns_rr_list_rr_count(ldns_pkt_answer(a)))
		return; /* a CNAME or other data at cand: not an apex */
	for (ldns_rr_type t = LDNS_RR_TYPE_SOA;; t = LDNS_RR_TYPE_NS) {
		for (size_t i = 0; i < ldns_rr_list_rr_count(auth) && i < DNSQ_MAX_RRS; i++) {
			const ldns_rr *rr = ldns_rr_list_rr(auth, i);
			if (ldns_rr_get_type(rr) == t && !dnsq_dname_str(ldns_rr_owner(rr), o) &&
			    dnsq_in_zone(cand, o)) {
				memcpy(zone, o, strlen(o) + 1);
				return;
			}
		}
		if (t == LDNS_RR_TYPE_NS)
			return;
	}
}

/* Walks up from name asking for SOA until an answer names the zone. */
static int dnsq_soa_walk(struct dnsq_set *set, const char *name, char zone[DNSQ_NAME_MAX])
{
	const char *cand = name;
	int rc, refused;

	for (int i = 0; cand && *cand && i < DNSQ_MAX_LABELS; i++) {
		ldns_pkt *a = NULL;
		const char *dot;

		if ((rc = dnsq_ask(set, cand, LDNS_RR_TYPE_SOA, 1, &a, &refused)) && !refused)
			return rc;
		if (!rc) {
			dnsq_answer_zone(a, cand, zone);
			ldns_pkt_free(a);
			if (zone[0])
				return 0;
		}
		dot = strchr(cand, '.');
		cand = dot ? dot + 1 : NULL;
	}
	return cs_error(CS_ENOTFOUND, "no DNS zone holds %s (asked %s%s for its SOA)", name, set->s.addr[0],
			set->s.n > 1 ? " and others" : "");
}

int dnsq_find_zone(const char *const *resolvers, size_t n_resolvers, const char *fqdn, char **target, char **zone)
{
	struct dnsq_set set;
	char t[DNSQ_NAME_MAX], z[DNSQ_NAME_MAX], in[DNSQ_NAME_MAX];
	int rc;

	if (!fqdn || strlen(fqdn) >= DNSQ_NAME_MAX)
		return cs_error(CS_EINVALID, "not a DNS name: \"%.80s\"", fqdn ? fqdn : "");
	dnsq_lower(fqdn, in);
	if (!dnsq_name_ok(in))
		return cs_error(CS_EINVALID, "not a DNS name: \"%.80s\"", fqdn);
	if ((rc = dnsq_server_set(resolvers, n_resolvers, &set)))
		return rc;
	if ((rc = dnsq_follow_cnames(&set, in, t)))
		goto out;
	if ((rc = dnsq_soa_walk(&set, t, z))) {
		if (rc == CS_ENOTFOUND && strcmp(t, in))
			rc = cs_error(rc, "%s (the CNAME target of %s)", cs_errmsg(), in);
		goto out;
	}
	*target = xstrdup(t);
	*zone = xstrdup(z);
out:
	dnsq_servers_free(&set.s);
	return rc;
}

/* Appends each A/AAAA address of the answer as "addr:53" / "[addr]:53" (deduplicated, bounded). */
static void dnsq_add_addresses(const ldns_pkt *a, struct dnsq_servers *out)
{
	const ldns_rr_list *ans = ldns_pkt_answer(a);

	for (size_t i = 0; i < ldns_rr_list_rr_count(ans) && i < DNSQ_MAX_RRS && out->n < DNSQ_MAX_SERVERS; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ans, i);
		ldns_rr_type t = ldns_rr_get_type(rr);
		char *s;
		int dup = 0;

		if ((t != LDNS_RR_TYPE_A && t != LDNS_RR_TYPE_AAAA) || ldns_rr_rd_count(rr) != 1 ||
		    !(s = dnsq_rdf_server(ldns_rr_rdf(rr, 0), 53)))
			continue;
		for (size_t j = 0; j < out->n && !dup; j++)
			dup = !strcmp(out->addr[j], s);
		if (dup)
			free(s);
		else
			out->addr[out->n++] = s;
	}
}

/* The NS names of zone (owner == zone, bounded) into names. */
static size_t dnsq_ns_names(const ldns_pkt *a, const char *zone, char names[][DNSQ_NAME_MAX], size_t max)
{
	const ldns_rr_list *ans = ldns_pkt_answer(a);
	char o[DNSQ_NAME_MAX];
	size_t n = 0;

	for (size_t i = 0; i < ldns_rr_list_rr_count(ans) && i < DNSQ_MAX_RRS && n < max; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ans, i);
		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_NS && ldns_rr_rd_count(rr) == 1 &&
		    !dnsq_dname_str(ldns_rr_owner(rr), o) && !strcmp(o, zone) &&
		    !dnsq_dname_str(ldns_rr_rdf(rr, 0), names[n]))
			n++;
	}
	return n;
}

int dnsq_zone_nameservers(const char *const *resolvers, size_t n_resolvers, const char *zone, struct dnsq_servers *out)
{
	static const ldns_rr_type types[] = {LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA};
	struct dnsq_set set;
	struct dnsq_servers res = {0};
	char z[DNSQ_NAME_MAX], (*names)[DNSQ_NAME_MAX] = NULL;
	ldns_pkt *a = NULL;
	size_t n_names;
	int rc, refused, transient = 0;

	if (!zone || strlen(zone) >= DNSQ_NAME_MAX)
		return cs_error(CS_EINVALID, "not a DNS zone: \"%.80s\"", zone ? zone : "");
	dnsq_lower(zone, z);
	if (!dnsq_name_ok(z))
		return cs_error(CS_EINVALID, "not a DNS zone: \"%.80s\"", zone);
	if ((rc = dnsq_server_set(resolvers, n_resolvers, &set)) ||
	    (rc = dnsq_ask(&set, z, LDNS_RR_TYPE_NS, 1, &a, &refused)))
		goto out;
	names = xcalloc(DNSQ_MAX_SERVERS, sizeof(*names));
	if (!(n_names = dnsq_ns_names(a, z, names, DNSQ_MAX_SERVERS))) {
		rc = cs_error(CS_ENOTFOUND, "zone %s has no NS records (asked %s)", z, set.s.addr[0]);
		goto out;
	}
	res.addr = xcalloc(DNSQ_MAX_SERVERS, sizeof(char *));
	for (size_t i = 0; i < n_names; i++)
		for (size_t k = 0; k < 2; k++) {
			ldns_pkt *h = NULL;
			if (dnsq_ask(&set, names[i], types[k], 1, &h, &refused)) {
				transient |= !refused;
				continue;
			}
			dnsq_add_addresses(h, &res);
			ldns_pkt_free(h);
		}
	if (!res.n) {
		rc = cs_error(transient ? CS_ETRANSIENT : CS_ENOTFOUND,
			      "no address for the nameservers of zone %s (%s%s)", z, names[0],
			      n_names > 1 ? ", …" : "");
		goto out;
	}
	*out = res;
	res.addr = NULL;
	res.n = 0;
out:
	ldns_pkt_free(a);
	free(names);
	dnsq_servers_free(&res);
	dnsq_servers_free(&set.s);
	return rc;
}

/* 1 when the TXT record's character-strings, concatenated, are exactly value. */
static int dnsq_txt_equals(const ldns_rr *rr, const char *value)
{
	size_t vl = strlen(value), at = 0;

	for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
		const ldns_rdf *f = ldns_rr_rdf(rr, i);
		const uint8_t *d = ldns_rdf_data(f);
		size_t sz = ldns_rdf_size(f), len;

		if (ldns_rdf_get_type(f) != LDNS_RDF_TYPE_STR || sz < 1 || (len = d[0]) + 1 > sz)
			return 0;
		if (at + len > vl || memcmp(value + at, d + 1, len))
			return 0;
		at += len;
	}
	return at == vl;
}

int dnsq_txt_has(const char *server, const char *fqdn, const char *value, int *found)
{
	char name[DNSQ_NAME_MAX], o[DNSQ_NAME_MAX];
	ldns_pkt *a = NULL;
	const ldns_rr_list *ans;
	int rc, rcode, hit = 0;

	if (!fqdn || strlen(fqdn) >= DNSQ_NAME_MAX)
		return cs_error(CS_EINVALID, "not a DNS name: \"%.80s\"", fqdn ? fqdn : "");
	dnsq_lower(fqdn, name);
	if (!dnsq_name_ok(name))
		return cs_error(CS_EINVALID, "not a DNS name: \"%.80s\"", fqdn);
	if ((rc = dnsq_query_one(server, name, LDNS_RR_TYPE_TXT, 0, &a)))
		return rc;
	rcode = ldns_pkt_get_rcode(a);
	if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) {
		rc = cs_error(CS_ETRANSIENT, "%s answered %s to TXT %s", server, dnsq_rcode_name(rcode), name);
		goto out;
	}
	ans = ldns_pkt_answer(a);
	for (size_t i = 0; i < ldns_rr_list_rr_count(ans) && i < DNSQ_MAX_RRS && !hit; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ans, i);
		hit = ldns_rr_get_type(rr) == LDNS_RR_TYPE_TXT && !dnsq_dname_str(ldns_rr_owner(rr), o) &&
		      !strcmp(o, name) && dnsq_txt_equals(rr, value);
	}
	*found = hit;
out:
	ldns_pkt_free(a);
	return rc;
}

void libversion_ldns(char *out, size_t n)
{
	snprintf(out, n, "ldns %s", ldns_version());
}
