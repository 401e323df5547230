"""The DNSimple API v2 endpoints of the simulator: routes (operation ids of the OpenAPI file) and handlers.

Each handler takes (sim, req) with sim.lock held and returns (status, body or
None), or raises store.ApiError. Shapes and codes follow dnsimple.md.
"""
import re
import time
from urllib.parse import unquote

from store import ApiError, paginate, sort_items


class Request:
    def __init__(self, params, query, body, principal, actor):
        self.params, self.query, self.body, self.principal, self.actor = params, query, body, principal, actor

    def q(self, name):
        v = self.query.get(name)
        return v[0] if v else None


def account_view(a):
    return {k: a[k] for k in ("id", "email", "name", "plan_identifier", "created_at", "updated_at")}


def check_account(sim, req):
    if req.params.get("account") != str(sim.account["id"]):
        raise ApiError(404, f"Account `{req.params.get('account')}` not found")


# ---------- identity ----------

def whoami(sim, req):
    if req.principal == "user":
        return 200, {"data": {"user": dict(sim.user), "account": None}}
    return 200, {"data": {"user": None, "account": account_view(sim.account)}}


def list_accounts(sim, req):
    return 200, {"data": [account_view(sim.account)]}  # no pagination key (fixture listAccounts)


# ---------- certificates (§2) ----------

CERT_SORT = {"id": lambda c: c["id"], "common_name": lambda c: c["common_name"],
             "expiration": lambda c: (c["expires_at"] is None, c["expires_at"] or 0)}


def list_certificates(sim, req):
    d = sim.domain(req.params["domain"])
    certs = [c for c in sim.certs.values() if c["domain"] == d["name"]]
    certs = sort_items(certs, req.q("sort"), CERT_SORT, "id:desc")
    page = paginate(certs, req.query, sim.config)
    page["data"] = [sim.cert_view(c) for c in page["data"]]
    return 200, page


def get_certificate(sim, req):
    d = sim.domain(req.params["domain"])
    return 200, {"data": sim.cert_view(sim.cert(d, req.params["certificate"]))}


def wrong_issue(sim, c):
    """The leaf a "download_wrong" mode serves instead of c's (made once per certificate and mode)."""
    mode = sim.config["download_wrong"]
    if not mode:
        return None
    if mode not in ("other_names", "expired", "recorded"):
        raise ApiError(500, f"simulator: unknown download_wrong mode {mode!r}")
    if c.get("wrong", (None,))[0] != mode:
        now = time.time()
        names = sim.cert_names(c) if mode == "expired" else ["www.other-domain.test"]
        nb, na = (now - 3800 * 86400, now - 3738 * 86400) if mode != "other_names" else (now - 3600, now + 80 * 86400)
        c["wrong"] = (mode, sim.ca.issue(names, c["algorithm"], nb, na, sim.config["ec_key_format"]))
    return c["wrong"][1]


def download_certificate(sim, req):
    d = sim.domain(req.params["domain"])
    c = sim.cert(d, req.params["certificate"])
    if c["state"] != "issued" or not c["pem"]:
        raise ApiError(428, "Certificate not issued")
    wrong = wrong_issue(sim, c)
    # §2.9: root is null in the fixture; chain entries carry no trailing newline.
    chain = sim.ca.chain_pem[c["algorithm"]].rstrip("\n")
    root = sim.ca.root_pem if sim.config["download_root"] else None
    return 200, {"data": {"server": wrong.cert_pem if wrong else c["pem"], "root": root, "chain": [chain]}}


def get_private_key(sim, req):
    d = sim.domain(req.params["domain"])
    c = sim.cert(d, req.params["certificate"])
    if c["state"] != "issued" or not c["key"] or c["key_removed"]:
        raise ApiError(428, "Private key not present")
    wrong = wrong_issue(sim, c)
    return 200, {"data": {"private_key": wrong.key_pem if wrong else c["key"]}}


def purchase(sim, req):
    d = sim.domain(req.params["domain"])
    name, alt, auto_renew, algo = sim.validate_purchase(d, req.body)
    c = sim.new_cert(d, name, alt, auto_renew, algo)
    return 201, {"data": sim.purchase_view(c)}


def issue(sim, req):
    d = sim.domain(req.params["domain"])
    c = sim.cert(d, req.params["certificate"])  # OAS: purchaseId; equal to certificate_id (§2.4)
    if c["state"] != "new":
        raise ApiError(400, f"Certificate `{c['id']}` cannot be issued")
    sim.start_issue(c)
    return 202, {"data": sim.cert_view(c)}


def purchase_renewal(sim, req):
    d = sim.domain(req.params["domain"])
    old = sim.cert(d, req.params["certificate"])
    return 201, {"data": sim.renewal_view(sim.purchase_renewal(old, req.body))}


def issue_renewal(sim, req):
    d = sim.domain(req.params["domain"])
    old = sim.cert(d, req.params["certificate"])
    new = sim.issue_renewal(old, req.params["renewal"])
    return 202, {"data": sim.cert_view(new)}  # the new certificate, not the renewal (§2.6)


# ---------- zones and records (§3) ----------

RECORD_SORT = {"id": lambda r: r["id"], "name": lambda r: r["name"], "content": lambda r: r["content"],
               "type": lambda r: r["type"]}


ZONE_SORT = {"id": lambda z: z["id"], "name": lambda z: z["name"]}


def list_zones(sim, req):
    """listZones: the account's zones, name_like filter, sort id/name, paginated like every list."""
    zones = list(sim.zones.values())
    like = req.q("name_like")
    if like:
        zones = [z for z in zones if like.lower() in z["name"]]
    zones = sort_items(zones, req.q("sort"), ZONE_SORT, "id:asc")
    page = paginate(zones, req.query, sim.config)
    page["data"] = [sim.zone_view(z) for z in page["data"]]
    return 200, page


def get_zone(sim, req):
    return 200, {"data": sim.zone_view(sim.zone(req.params["zone"]))}


def list_records(sim, req):
    z = sim.zone(req.params["zone"])
    recs = z["records"]
    name, like, rtype = req.q("name"), req.q("name_like"), req.q("type")
    if name:  # an empty name= is treated as no filter (§3.3 leaves it open)
        recs = [r for r in recs if r["name"].lower() == name.lower()]
    if like:
        recs = [r for r in recs if like.lower() in r["name"].lower()]
    if rtype:
        recs = [r for r in recs if r["type"] == rtype.upper()]
    recs = sort_items(recs, req.q("sort"), RECORD_SORT, "id:asc")
    page = paginate(recs, req.query, sim.config)
    page["data"] = [sim.record_view(r) for r in page["data"]]
    return 200, page


def create_record(sim, req):
    z = sim.zone(req.params["zone"])
    return 201, {"data": sim.record_view(sim.create_record(z, req.body, req.actor))}


def get_record(sim, req):
    z = sim.zone(req.params["zone"])
    return 200, {"data": sim.record_view(sim.record(z, req.params["record"]))}


def update_record(sim, req):
    z = sim.zone(req.params["zone"])
    r = sim.record(z, req.params["record"])
    return 200, {"data": sim.record_view(sim.update_record(z, r, req.body, req.actor))}


def delete_record(sim, req):
    z = sim.zone(req.params["zone"])
    sim.delete_record(z, sim.record(z, req.params["record"]), req.actor)
    return 204, None


# ---------- webhooks (§4) ----------

def list_webhooks(sim, req):
    hooks = sort_items(sim.webhooks.values(), req.q("sort"), {"id": lambda w: w["id"]}, "id:asc")
    return 200, {"data": [sim.webhook_view(w) for w in hooks]}  # no pagination key (§4.1)


def create_webhook(sim, req):
    return 201, {"data": sim.webhook_view(sim.create_webhook(req.body, req.actor))}


def get_webhook(sim, req):
    return 200, {"data": sim.webhook_view(sim.webhook(req.params["webhook"]))}


def delete_webhook(sim, req):
    sim.delete_webhook(sim.webhook(req.params["webhook"]), req.actor)
    return 204, None


CERTS = "/v2/{account}/domains/{domain}/certificates"
LE = CERTS + "/letsencrypt"
RECORDS = "/v2/{account}/zones/{zone}/records"
ROUTES = [
    ("GET", "/v2/whoami", "whoami", whoami),
    ("GET", "/v2/accounts", "listAccounts", list_accounts),
    ("GET", CERTS, "listCertificates", list_certificates),
    ("GET", CERTS + "/{certificate}", "getCertificate", get_certificate),
    ("GET", CERTS + "/{certificate}/download", "downloadCertificate", download_certificate),
    ("GET", CERTS + "/{certificate}/private_key", "getCertificatePrivateKey", get_private_key),
    ("POST", LE, "purchaseLetsencryptCertificate", purchase),
    ("POST", LE + "/{certificate}/issue", "issueLetsencryptCertificate", issue),
    ("POST", LE + "/{certificate}/renewals", "purchaseRenewalLetsencryptCertificate", purchase_renewal),
    ("POST", LE + "/{certificate}/renewals/{renewal}/issue", "issueRenewalLetsencryptCertificate", issue_renewal),
    ("GET", "/v2/{account}/zones", "listZones", list_zones),
    ("GET", "/v2/{account}/zones/{zone}", "getZone", get_zone),
    ("GET", RECORDS, "listZoneRecords", list_records),
    ("POST", RECORDS, "createZoneRecord", create_record),
    ("GET", RECORDS + "/{record}", "getZoneRecord", get_record),
    ("PATCH", RECORDS + "/{record}", "updateZoneRecord", update_record),
    ("DELETE", RECORDS + "/{record}", "deleteZoneRecord", delete_record),
    ("GET", "/v2/{account}/webhooks", "listWebhooks", list_webhooks),
    ("POST", "/v2/{account}/webhooks", "createWebhook", create_webhook),
    ("GET", "/v2/{account}/webhooks/{webhook}", "getWebhook", get_webhook),
    ("DELETE", "/v2/{account}/webhooks/{webhook}", "deleteWebhook", delete_webhook),
]


class Route:
    def __init__(self, method, template, op, handler):
        self.method, self.template, self.op, self.handler = method, template, op, handler
        self.regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


_ROUTES = [Route(*r) for r in ROUTES]


def match(method, path):
    """(route, params) for method+path; (None, allowed methods) when only the method is wrong;
    (None, []) when nothing matches."""
    allowed = []
    for r in _ROUTES:
        m = r.regex.match(path)
        if not m:
            continue
        if r.method == method:
            return r, {k: unquote(v) for k, v in m.groupdict().items()}
        allowed.append(r.method)
    return None, sorted(set(allowed))


def call(sim, route, req):
    if "account" in req.params:
        check_account(sim, req)
    return route.handler(sim, req)
