/* RFC 2136 UPDATE messages with TSIG (ldns): built, signed, and their answers verified and classified. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../state/state.h"
#include "../../util/dnsq.h"
#include "../../util/err.h"
#include "../../util/util.h"
#include "../provider.h"
#include "rfc2136.h"

/* TSIG RR fields (RFC 8945 §4.2) as ldns numbers them. */
#define TSIG_F_ALG 0
#define TSIG_F_TIME 1
#define TSIG_F_FUDGE 2
#define TSIG_F_MAC 3
#define TSIG_F_ORIG_ID 4
#define TSIG_F_ERROR 5
#define TSIG_F_OTHER 6
#define TSIG_KEY_MAX 256 /* bytes of a decoded secret */

/*
 * ldns 1.8.3 signs and verifies hmac-sha256/512/1/md5 itself; it cannot do
 * hmac-sha224 and misspells hmac-sha384 ("hmac-shac384."). For those two the
 * MAC is computed here with OpenSSL over the same RFC 8945 input; ldns still
 * builds, encodes and parses every record.
 */
static const struct {
	const char *label, *ldns;
	const EVP_MD *(*own)(void); /* NULL: ldns computes it */
} algs[] = {
	{"hmac-sha256", "hmac-sha256.", NULL}, {"hmac-sha384", "hmac-sha384.", EVP_sha384},
	{"hmac-sha512", "hmac-sha512.", NULL}, {"hmac-sha224", "hmac-sha224.", EVP_sha224},
	{"hmac-sha1", "hmac-sha1.", NULL},     {"hmac-md5", "hmac-md5.sig-alg.reg.int.", NULL},
};

/* The digest this file computes itself for an ldns algorithm name, or NULL (ldns does). */
static const EVP_MD *own_md(const char *alg)
{
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (!strcasecmp(alg, algs[i].ldns))
			return algs[i].own ? algs[i].own() : NULL;
	return NULL;
}

const char *rfc2136_alg(const char *configured, const char **label)
{
	size_t n = configured ? strlen(configured) : 0;

	if (n && configured[n - 1] == '.')
		n--;
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if ((n == strlen(algs[i].label) && !strncasecmp(configured, algs[i].label, n)) ||
		    (n + 1 == strlen(algs[i].ldns) && !strncasecmp(configured, algs[i].ldns, n))) {
			if (label)
				*label = algs[i].label;
			return algs[i].ldns;
		}
	return NULL;
}

int rfc2136_b64_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0, pad = 0;

	if (!n || n > RFC2136_SECRET_MAX || n % 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '=') {
			if (i < n - 2)
				return -1;
			pad++;
		} else if (pad || (!isalnum(c) && c != '+' && c != '/'))
			return -1;
	}
	return 0;
}

void rfc2136_msg_free(struct rfc2136_msg *m)
{
	if (!m)
		return;
	free(m->wire);
	buf_free(&m->mac);
	memset(m, 0, sizeof(*m));
}

/* The TXT value as character-strings of at most 255 bytes each. */
static int txt_rdfs(ldns_rr *rr, const char *value)
{
	size_t n = strlen(value), at = 0;
	uint8_t chunk[256];

	if (n > RFC2136_VALUE_MAX)
		return cs_error(CS_EINVALID, "TXT value of %zu bytes (at most %d)", n, RFC2136_VALUE_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)value[i] < 0x20 || (unsigned char)value[i] > 0x7e)
			return cs_error(CS_EINVALID, "TXT value with a control or non-ASCII byte at %zu", i);
	do {
		size_t len = n - at > 255 ? 255 : n - at;
		chunk[0] = (uint8_t)len;
		memcpy(chunk + 1, value + at, len);
		ldns_rr_push_rdf(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, len + 1, chunk));
		at += len;
	} while (at < n);
	return 0;
}

/* The update RR: "owner ttl IN TXT value" to add, "owner 0 NONE TXT value" to delete that value only. */
static int update_rr(const struct rfc2136 *r, const char *owner, const char *value, int add, ldns_rr **out)
{
	ldns_rr *rr = ldns_rr_new();
	ldns_rdf *o = ldns_dname_new_frm_str(owner);
	int rc;

	if (!o) {
		ldns_rr_free(rr);
		return cs_error(CS_EINVALID, "\"%.80s\" is not a DNS name", owner);
	}
	ldns_rr_set_owner(rr, o);
	ldns_rr_set_type(rr, LDNS_RR_TYPE_TXT);
	ldns_rr_set_class(rr, add ? LDNS_RR_CLASS_IN : LDNS_RR_CLASS_NONE);
	ldns_rr_set_ttl(rr, add ? (uint32_t)r->ttl : 0);
	if ((rc = txt_rdfs(rr, value))) {
		ldns_rr_free(rr);
		return rc;
	}
	*out = rr;
	return 0;
}

/* ---------- TSIG computed here (hmac-sha224, hmac-sha384) ---------- */

/* Decodes the canonical base64 secret into key (at most TSIG_KEY_MAX bytes); its length or -1. */
static int tsig_key(const char *secret, unsigned char key[TSIG_KEY_MAX])
{
	size_t n = strlen(secret), pad = 0;
	unsigned char tmp[RFC2136_SECRET_MAX];
	int len;

	if (rfc2136_b64_ok(secret) || n / 4 * 3 > sizeof(tmp))
		return -1;
	pad = (n && secret[n - 1] == '=') + (n > 1 && secret[n - 2] == '=');
	if ((len = EVP_DecodeBlock(tmp, (const unsigned char *)secret, (int)n)) < 0 || (size_t)len < pad ||
	    (size_t)len - pad > TSIG_KEY_MAX) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -1;
	}
	len -= (int)pad;
	memcpy(key, tmp, (size_t)len);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return len;
}

/*
 * The MAC of RFC 8945 §4.3: HMAC over [request MAC (its size and bytes)],
 * the message without its TSIG, and the TSIG variables. rdfs are the TSIG
 * fields (algorithm, time, fudge, error, other as ldns holds them).
 */
static int tsig_hmac(const EVP_MD *md, const char *secret, const ldns_rdf *req_mac, const uint8_t *msg, size_t len,
		     const ldns_rdf *key_name, const ldns_rdf *const f[7], unsigned char *mac, unsigned int *mac_len)
{
	unsigned char key[TSIG_KEY_MAX];
	ldns_buffer *v = ldns_buffer_new(len + 512);
	ldns_rdf *kn = ldns_rdf_clone(key_name), *an = ldns_rdf_clone(f[TSIG_F_ALG]);
	int klen = tsig_key(secret, key), ok;

	ldns_dname2canonical(kn);
	ldns_dname2canonical(an);
	if (req_mac)
		ldns_buffer_write(v, ldns_rdf_data(req_mac), ldns_rdf_size(req_mac));
	ldns_buffer_write(v, msg, len);
	ldns_rdf2buffer_wire_canonical(v, kn);
	ldns_buffer_write_u16(v, LDNS_RR_CLASS_ANY);
	ldns_buffer_write_u32(v, 0);
	ldns_rdf2buffer_wire_canonical(v, an);
	ldns_buffer_write(v, ldns_rdf_data(f[TSIG_F_TIME]), ldns_rdf_size(f[TSIG_F_TIME]));
	ldns_buffer_write(v, ldns_rdf_data(f[TSIG_F_FUDGE]), ldns_rdf_size(f[TSIG_F_FUDGE]));
	ldns_buffer_write(v, ldns_rdf_data(f[TSIG_F_ERROR]), ldns_rdf_size(f[TSIG_F_ERROR]));
	ldns_buffer_write(v, ldns_rdf_data(f[TSIG_F_OTHER]), ldns_rdf_size(f[TSIG_F_OTHER]));
	ok = klen >= 0 && ldns_buffer_status_ok(v) &&
	     HMAC(md, key, klen, ldns_buffer_begin(v), ldns_buffer_position(v), mac, mac_len);
	OPENSSL_cleanse(key, sizeof(key));
	ldns_rdf_deep_free(kn);
	ldns_rdf_deep_free(an);
	ldns_buffer_free(v);
	return ok ? 0 : -1;
}

static ldns_rdf *rdf_u16(uint16_t v)
{
	return ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, v);
}

/* 2-byte length + data, as a TSIG MAC or Other Data field. */
static ldns_rdf *rdf_u16_data(const unsigned char *d, size_t n)
{
	uint8_t b[2 + EVP_MAX_MD_SIZE];

	b[0] = (uint8_t)(n >> 8);
	b[1] = (uint8_t)n;
	if (n)
		memcpy(b + 2, d, n);
	return ldns_rdf_new_frm_data(LDNS_RDF_TYPE_INT16_DATA, n + 2, b);
}

/* Signs the request p like ldns_pkt_tsig_sign, with the MAC computed by md. */
static int own_tsig_sign(ldns_pkt *p, const char *key_name, const char *secret, uint16_t fudge, const char *alg,
			 const EVP_MD *md)
{
	uint64_t now = (uint64_t)util_now();
	uint8_t t[6] = {(uint8_t)(now >> 40), (uint8_t)(now >> 32), (uint8_t)(now >> 24),
			(uint8_t)(now >> 16), (uint8_t)(now >> 8),  (uint8_t)now};
	ldns_rdf *f[7] = {ldns_dname_new_frm_str(alg),
			  ldns_rdf_new_frm_data(LDNS_RDF_TYPE_TSIGTIME, 6, t),
			  rdf_u16(fudge),
			  NULL,
			  rdf_u16((uint16_t)ldns_pkt_id(p)),
			  rdf_u16(0),
			  rdf_u16_data(NULL, 0)};
	ldns_rdf *kn = ldns_dname_new_frm_str(key_name);
	uint8_t *wire = NULL;
	size_t len = 0;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	ldns_rr *rr = NULL;
	int rc = -1;

	for (size_t i = 0; i < 7; i++)
		if (i != TSIG_F_MAC && !f[i])
			goto out;
	if (!kn || ldns_pkt2wire(&wire, p, &len) != LDNS_STATUS_OK ||
	    tsig_hmac(md, secret, NULL, wire, len, kn, (const ldns_rdf *const *)f, mac, &mac_len))
		goto out;
	f[TSIG_F_MAC] = rdf_u16_data(mac, mac_len);
	rr = ldns_rr_new();
	ldns_rr_set_owner(rr, kn);
	kn = NULL;
	ldns_rr_set_type(rr, LDNS_RR_TYPE_TSIG);
	ldns_rr_set_class(rr, LDNS_RR_CLASS_ANY);
	ldns_rr_set_ttl(rr, 0);
	for (size_t i = 0; i < 7; i++) {
		ldns_rr_push_rdf(rr, f[i]);
		f[i] = NULL;
	}
	ldns_pkt_set_tsig(p, rr);
	rc = 0;
out:
	for (size_t i = 0; i < 7; i++)
		ldns_rdf_deep_free(f[i]);
	ldns_rdf_deep_free(kn);
	free(wire);
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

/*
 * Verifies the answer a (its wire ans) like ldns_pkt_tsig_verify: the TSIG
 * is its last record, uncompressed; the MAC covers the request MAC, the
 * message as sent (original ID, ARCOUNT without the TSIG) and the variables.
 */
static int own_tsig_verify(const ldns_pkt *a, const uint8_t *ans, size_t alen, const char *key_name, const char *secret,
			   const ldns_rdf *req_mac, const EVP_MD *md)
{
	const ldns_rr *tsig = ldns_pkt_tsig(a);
	const ldns_rdf *f[7], *got;
	ldns_rdf *kn = ldns_dname_new_frm_str(key_name);
	uint8_t *tw = NULL, *msg = NULL;
	size_t tl = 0;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	uint16_t ar;
	int ok = 0;

	if (!kn || ldns_rr_rd_count(tsig) != 7 || ldns_dname_compare(kn, ldns_rr_owner(tsig)))
		goto out;
	for (size_t i = 0; i < 7; i++)
		f[i] = ldns_rr_rdf(tsig, i);
	if (ldns_rr2wire(&tw, tsig, LDNS_SECTION_ADDITIONAL, &tl) != LDNS_STATUS_OK || alen < 12 + tl ||
	    memcmp(ans + alen - tl, tw, tl) || ldns_rdf_size(f[TSIG_F_ORIG_ID]) != 2)
		goto out;
	msg = xmalloc(alen - tl);
	memcpy(msg, ans, alen - tl);
	memcpy(msg, ldns_rdf_data(f[TSIG_F_ORIG_ID]), 2);
	ar = (uint16_t)((msg[10] << 8) | msg[11]);
	if (!ar)
		goto out;
	ar--;
	msg[10] = (uint8_t)(ar >> 8);
	msg[11] = (uint8_t)ar;
	if (tsig_hmac(md, secret, req_mac, msg, alen - tl, kn, f, mac, &mac_len))
		goto out;
	got = f[TSIG_F_MAC];
	ok = ldns_rdf_size(got) == 2 + (size_t)mac_len && !CRYPTO_memcmp(ldns_rdf_data(got) + 2, mac, mac_len);
out:
	ldns_rdf_deep_free(kn);
	free(tw);
	free(msg);
	return ok;
}

/* ldns's TSIG for the algorithms it has, this file's for the others. */
static ldns_status tsig_sign(ldns_pkt *p, const char *key_name, const char *secret, const char *alg)
{
	const EVP_MD *md = own_md(alg);

	if (rfc2136_b64_ok(secret)) /* checked first: ldns leaks on a secret it cannot decode */
		return LDNS_STATUS_INVALID_B64;
	if (!md)
		return ldns_pkt_tsig_sign(p, key_name, secret, RFC2136_FUDGE, alg, NULL);
	return own_tsig_sign(p, key_name, secret, RFC2136_FUDGE, alg, md) ? LDNS_STATUS_CRYPTO_TSIG_ERR
									  : LDNS_STATUS_OK;
}

static int tsig_verify(ldns_pkt *a, const uint8_t *ans, size_t alen, const char *key_name, const char *secret,
		       const char *alg, const ldns_rdf *req_mac)
{
	const EVP_MD *md = own_md(alg);
	char *got = ldns_rdf2str(ldns_rr_rdf(ldns_pkt_tsig(a), TSIG_F_ALG));
	int same = got && !strcasecmp(got, alg);

	free(got);
	if (!same)
		return 0;
	if (!md)
		return ldns_pkt_tsig_verify(a, ans, alen, key_name, secret, req_mac);
	return own_tsig_verify(a, ans, alen, key_name, secret, req_mac, md);
}

/* Signs p with the key and keeps the request MAC in out->mac; then p's wire into out. */
static int sign_and_encode(const struct rfc2136 *r, const char *secret, ldns_pkt *p, struct rfc2136_msg *out)
{
	ldns_status st;
	const ldns_rr *tsig;
	const ldns_rdf *mac;

	ldns_pkt_set_random_id(p);
	if ((st = tsig_sign(p, r->key_name, secret, r->alg)) != LDNS_STATUS_OK)
		return provider_fail(STATE_FAIL_CONFIG,
				     cs_error(CS_EAUTH, "issuer %s: cannot sign with TSIG key %s (%s): %s", r->name,
					      r->key_name, r->alg_label, ldns_get_errorstr_by_id(st)));
	if (!(tsig = ldns_pkt_tsig(p)) || !(mac = ldns_rr_rdf(tsig, TSIG_F_MAC)))
		return cs_error(CS_ERROR, "issuer %s: the signed message has no TSIG MAC", r->name);
	buf_init(&out->mac, 0);
	buf_append(&out->mac, ldns_rdf_data(mac), ldns_rdf_size(mac));
	if (ldns_pkt2wire(&out->wire, p, &out->len) != LDNS_STATUS_OK) {
		rfc2136_msg_free(out);
		return cs_error(CS_ERROR, "issuer %s: cannot encode the DNS message", r->name);
	}
	return 0;
}

int rfc2136_msg_build(const struct rfc2136 *r, const char *secret, const char *zone, const char *owner,
		      const char *value, int add, struct rfc2136_msg *out)
{
	ldns_rr_list *up = ldns_rr_list_new(), *none = ldns_rr_list_new();
	ldns_rr *rr = NULL;
	ldns_rdf *z = ldns_dname_new_frm_str(zone);
	ldns_pkt *p = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!z) {
		rc = cs_error(CS_EINVALID, "\"%.80s\" is not a DNS zone", zone);
		goto out;
	}
	if ((rc = update_rr(r, owner, value, add, &rr)))
		goto out;
	ldns_rr_list_push_rr(up, rr);
	p = ldns_update_pkt_new(z, LDNS_RR_CLASS_IN, none, up, NULL);
	z = NULL; /* the packet owns it */
	if (!p) {
		rc = cs_error(CS_ERROR, "issuer %s: cannot build the UPDATE of zone %s", r->name, zone);
		goto out;
	}
	ldns_pkt_set_rd(p, false);
	rc = sign_and_encode(r, secret, p, out);
out:
	ldns_rdf_deep_free(z);
	ldns_rr_list_deep_free(up);
	ldns_rr_list_deep_free(none);
	ldns_pkt_free(p);
	return rc;
}

/* ---------- answers ---------- */

static const char *rcode_name(int rcode)
{
	static const char *const names[] = {"NOERROR",	"FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
					    "YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE"};
	return rcode >= 0 && rcode < (int)(sizeof(names) / sizeof(names[0])) ? names[rcode] : "an unknown rcode";
}

/* A TSIG error (RFC 8945 §5.3.2) reported by the server: the request was not accepted as signed. */
static int tsig_error(const struct rfc2136 *r, int err)
{
	const char *why = err == 16   ? "BADSIG: the secret does not match the nameserver's copy of the key"
			  : err == 17 ? "BADKEY: the nameserver does not know this key name and algorithm"
			  : err == 18 ? "BADTIME: this host's clock and the nameserver's differ by more than 300 s"
				      : "TSIG error";
	return provider_fail(STATE_FAIL_CONFIG,
			     cs_error(CS_EAUTH, "issuer %s: nameserver %s rejected TSIG key %s (%s): %s (%d)", r->name,
				      r->server, r->key_name, r->alg_label, why, err));
}

/* The answer's rcode as the driver's result. */
static int answer_rcode(const struct rfc2136 *r, const char *zone, int rcode)
{
	const char *what = zone ? zone : ".";

	switch (rcode) {
	case LDNS_RCODE_NOERROR: return 0;
	case LDNS_RCODE_SERVFAIL:
		return cs_error(CS_ETRANSIENT, "issuer %s: nameserver %s answered SERVFAIL for zone %s", r->name,
				r->server, what);
	case LDNS_RCODE_REFUSED:
		return provider_fail(
			STATE_FAIL_CONFIG,
			cs_error(CS_EAUTH,
				 "issuer %s: the nameserver %s refused the update of zone %s (check the TSIG "
				 "key's update-policy)",
				 r->name, r->server, what));
	case LDNS_RCODE_NOTAUTH:
		return provider_fail(STATE_FAIL_CONFIG,
				     cs_error(CS_EAUTH,
					      "issuer %s: nameserver %s is not authoritative for zone %s or does not "
					      "accept TSIG key %s (NOTAUTH)",
					      r->name, r->server, what, r->key_name));
	case LDNS_RCODE_NOTZONE:
		return provider_fail(STATE_FAIL_CONFIG, cs_error(CS_EINVALID,
								 "issuer %s: the record is not within zone %s (NOTZONE "
								 "from %s)",
								 r->name, what, r->server));
	default:
		return provider_fail(STATE_FAIL_CONFIG,
				     cs_error(CS_EINVALID,
					      "issuer %s: nameserver %s answered %s to the update of zone %s (does it "
					      "take dynamic updates?)",
					      r->name, r->server, rcode_name(rcode), what));
	}
}

/* Parses the answer and verifies its TSIG against the request's MAC; *rcode on success. */
static int answer_verify(const struct rfc2136 *r, const char *secret, const struct rfc2136_msg *q, const uint8_t *ans,
			 size_t alen, int *rcode)
{
	ldns_pkt *a = NULL;
	ldns_rdf *mac = NULL;
	const ldns_rr *tsig;
	const ldns_rdf *ef;
	int rc = 0, err = 0;

	if (ldns_wire2pkt(&a, ans, alen) != LDNS_STATUS_OK)
		return cs_error(CS_ETRANSIENT, "issuer %s: malformed answer from %s", r->name, r->server);
	tsig = ldns_pkt_tsig(a);
	if (tsig && (ef = ldns_rr_rdf(tsig, TSIG_F_ERROR)) && ldns_rdf_size(ef) == 2)
		err = ldns_rdf2native_int16(ef);
	if (err) /* such an answer is unsigned (the server could not sign): the rcode says NOTAUTH */
		rc = tsig_error(r, err);
	else if (!tsig)
		rc = provider_fail(STATE_FAIL_CONFIG,
				   cs_error(CS_EAUTH,
					    "issuer %s: nameserver %s answered %s without a TSIG signature (is key %s "
					    "configured there?)",
					    r->name, r->server, rcode_name(ldns_pkt_get_rcode(a)), r->key_name));
	else if (!(mac = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_INT16_DATA, q->mac.len, q->mac.data)) ||
		 !tsig_verify(a, ans, alen, r->key_name, secret, r->alg, mac))
		rc = provider_fail(
			STATE_FAIL_CONFIG,
			cs_error(CS_EAUTH,
				 "issuer %s: the TSIG signature of the answer from %s does not verify with key "
				 "%s (a wrong secret, or not the nameserver answering)",
				 r->name, r->server, r->key_name));
	else
		*rcode = ldns_pkt_get_rcode(a);
	ldns_rdf_deep_free(mac);
	ldns_pkt_free(a);
	return rc;
}

int rfc2136_msg_answer(const struct rfc2136 *r, const char *secret, const struct rfc2136_msg *q, const char *zone,
		       const uint8_t *ans, size_t alen)
{
	int rc, rcode = 0;

	if ((rc = answer_verify(r, secret, q, ans, alen, &rcode)))
		return rc;
	return answer_rcode(r, zone, rcode);
}

int rfc2136_probe(const struct rfc2136 *r, const char *secret, const char *zone)
{
	struct rfc2136_msg q = {0};
	ldns_rdf *name = ldns_dname_new_frm_str(zone ? zone : ".");
	ldns_pkt *p = NULL;
	uint8_t *ans = NULL;
	size_t alen = 0;
	int rc, rcode = 0;

	if (!name || !(p = ldns_pkt_query_new(name, LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, 0))) {
		ldns_rdf_deep_free(name);
		return cs_error(CS_EINVALID, "\"%.80s\" is not a DNS zone", zone);
	}
	if ((rc = sign_and_encode(r, secret, p, &q)) ||
	    (rc = dnsq_exchange(r->server, (int)(r->timeout * 1000), q.wire, q.len, &ans, &alen)) ||
	    (rc = answer_verify(r, secret, &q, ans, alen, &rcode)))
		goto out;
	/* Without a configured zone the root is asked: any signed answer proves the key. */
	if (zone && rcode != LDNS_RCODE_NOERROR)
		rc = cs_error(
			rcode == LDNS_RCODE_SERVFAIL ? CS_ETRANSIENT : CS_EINVALID,
			"issuer %s: nameserver %s answered %s to a signed SOA query for zone %s (is it the zone's "
			"primary?)",
			r->name, r->server, rcode_name(rcode), zone);
out:
	free(ans);
	rfc2136_msg_free(&q);
	ldns_pkt_free(p);
	return rc;
}
