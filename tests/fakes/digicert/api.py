"""The CertCentral Services API v2 routes of the simulator and their handlers (digicert.md §2, §5-§7).

A handler takes (sim, req) and returns (status, body): a dict for JSON, None
for an empty body, or (content type, bytes) for a download. It raises
store.ApiError for error answers. Operation names (the first column of ROUTES)
are what /_sim/fault and /_sim/counters use.
"""
import csv
import io
import re
import secrets

import ca as camod
import orders
from store import DCV_METHODS, PRODUCTS, ApiError, day, iso


class Request:
    def __init__(self, params, query, body, headers, role):
        self.params, self.query, self.body, self.headers, self.role = params, query, body, headers, role

    def q(self, name, default=None):
        v = self.query.get(name)
        return v[0] if v else default


# ---------- AuthKeys (§2) ----------

def auth_key_create(sim, req):
    days = req.params.get("days")
    with sim.lock:
        if days is None:
            if sim.permanent_key() is not None:
                raise ApiError(400, "auth_key_exists_for_account", "An AuthKey has already been created for your "
                                                                   "account.")
            k = sim.new_authkey()
        else:
            if not days.isdigit() or int(days) < 1:
                raise ApiError(400, "invalid_auth_key_validity", "The AuthKey validity must be at least 1 day.")
            k = sim.new_authkey(days=int(days))
        return 200, sim.authkey_view(k)


def auth_key_get(sim, req):
    with sim.lock:
        keys = sim.active_keys()
        if not keys:
            raise ApiError(404, "not_found|auth_key", "No AuthKey exists for this account.")
        if len(keys) > 1:
            raise ApiError(400, "multiple_auth_keys", "Several AuthKeys exist; use "
                                                      "GET /account/auth-key/{auth_key_id}.")
        return 200, sim.authkey_view(keys[0])


def auth_key_get_id(sim, req):
    with sim.lock:
        k = sim.authkeys.get(req.params["id"])
        if k is None or k["deleted"]:
            raise ApiError(404, "not_found|auth_key", "The requested AuthKey was not found.")
        return 200, sim.authkey_view(k)


def auth_keys_list(sim, req):
    with sim.lock:
        return 200, {"auth_keys": [sim.authkey_view(k) for k in sorted(sim.active_keys(), key=lambda k: k["created"])]}


# The API key's user (CertCentral "user details", GET /user/me): the cheapest authenticated call.
SIM_USER = {"id": 125039, "username": "certsync-sim", "account_id": 5137495, "first_name": "Sim", "last_name": "User",
            "email": "certsync-sim@example.test", "status": "active",
            "container": {"id": 987654, "name": "Simulated Container", "is_active": True}}


def user_me(sim, req):
    view = dict(SIM_USER, access_roles=[{"id": 5, "name": "Administrator"} if req.role == "full"
                                        else {"id": 8, "name": "View only"}])
    return 200, view


def auth_key_delete(sim, req):
    with sim.lock:
        k = sim.permanent_key() or (sim.active_keys() or [None])[0]
        if k is None:
            raise ApiError(404, "not_found|auth_key", "No AuthKey exists for this account.")
        k["deleted"] = True  # voids every request token made with it (signing_keys no longer offers it)
        return 204, None


def auth_key_delete_id(sim, req):
    with sim.lock:
        k = sim.authkeys.get(req.params["id"])
        if k is None or k["deleted"]:
            raise ApiError(404, "not_found|auth_key", "The requested AuthKey was not found.")
        k["deleted"] = True
        return 204, None


# ---------- orders (§5, §6) ----------

def order_create(sim, req):
    return orders.place(sim, req.params["product"], req.body)


def product_view(name_id, full=False):
    name = PRODUCTS[name_id][0]
    out = {"group_name": "dv_ssl_certificate", "name_id": name_id, "name": name, "type": "dv_ssl_certificate"}
    if full:
        out.update({"validation_type": "DV", "allowed_validity_years": [1], "allowed_order_validity_years": [1, 2, 3],
                    "signature_hash_types": {"allowed_hash_types": [{"id": h, "name": h.upper()} for h in
                                                                    ("sha256", "sha384", "sha512")],
                                             "default_hash_type_id": "sha256"},
                    "csr_required": True, "allowed_dcv_methods": list(DCV_METHODS)})
    return out


def certificate_view(sim, o, full):
    leaf = o["leaf"]
    c = {"id": o["certificate_id"], "common_name": o["common_name"], "dns_names": list(o["names"]),
         "signature_hash": o["signature_hash"]}
    if leaf:
        c.update({"valid_till": day(leaf.not_after), "days_remaining": max(0, int((leaf.not_after - sim.now())
                                                                                 // 86400))})
    if not full:
        if leaf:
            c["serial_number"] = leaf.serial
        return c
    c.update({"date_created": iso(o["date_created"]), "csr": o["csr"], "key_size": o["key_size"],
              "server_platform": orders.server_platform_view(o["server_platform"]),
              "ca_cert": sim.ca.ca_cert_view(o["brand"])})
    if o["cert_validity_days"]:
        c["cert_validity"] = {"days": o["cert_validity_days"]}
    if leaf:
        c.update({"thumbprint": leaf.thumbprint, "serial_number": leaf.serial, "date_issued": iso(o["date_issued"]),
                  "valid_from": day(leaf.not_before)})
    return c


def order_view(sim, o):
    name, _brand, _rule = PRODUCTS[o["product"]]
    out = {"id": o["id"], "certificate": certificate_view(sim, o, True), "status": o["status"],
           "is_renewal": o["renewal_of_order_id"] is not None, "is_renewed": o["is_renewed"],
           "renewed_order_id": o["renewed_order_id"], "date_created": iso(o["date_created"]),
           "order_valid_till": day(o["order_valid_till"]), "dcv_method": o["dcv_method"],
           "product": {"name_id": o["product"], "name": name, "type": "dv_ssl_certificate", "validation_type": "DV"},
           "organization": [], "disable_ct": o["disable_ct"], "payment_method": o["payment_method"],
           "requests": [{"id": r["id"], "date": iso(r["date"]), "type": r["type"], "status": r["status"],
                         "comments": r["comments"]} for r in o["requests"]],
           "has_duplicates": False, "product_name_id": o["product"]}
    if o["alternative_order_id"] is not None:
        out["alternative_order_id"] = o["alternative_order_id"]
    if o["renewal_of_order_id"] is not None:
        out["renewal_of_order_id"] = o["renewal_of_order_id"]
    if o["comments"]:
        out["notes"] = o["comments"]
    return out


def list_view(sim, o):
    name = PRODUCTS[o["product"]][0]
    out = {"id": o["id"], "certificate": certificate_view(sim, o, False), "status": o["status"],
           "is_renewed": o["is_renewed"], "date_created": iso(o["date_created"]), "organization": [],
           "product": {"name_id": o["product"], "name": name, "type": "dv_ssl_certificate"},
           "has_duplicates": False, "product_name_id": o["product"]}
    if o["alternative_order_id"] is not None:
        out["alternative_order_id"] = o["alternative_order_id"]
    return out


def order_info(sim, req):
    with sim.lock:
        return 200, order_view(sim, sim.order(req.params["id"]))


def _cmp(value, spec):
    """filters[valid_till]-style comparisons: '>2025-01-01', '<…', '>=…', '<=…' or equality."""
    m = re.match(r"^(>=|<=|>|<)?(.*)$", spec)
    op, ref = m.group(1), m.group(2)
    if value is None:
        return False
    return {">": value > ref, "<": value < ref, ">=": value >= ref, "<=": value <= ref, None: value == ref}[op]


LIST_FILTERS = {
    "id": lambda o, v: str(o["id"]) == v,
    "status": lambda o, v: o["status"] == v or (v == "issued" and o["status"] == "expired"),
    "product_name_id": lambda o, v: o["product"] == v,
    "common_name": lambda o, v: o["common_name"] == v.lower(),
    "domain_name": lambda o, v: v.lower() in o["names"],
    "alternative_order_id": lambda o, v: o["alternative_order_id"] == v,
    "certificate_id": lambda o, v: str(o["certificate_id"]) == v,
    "serial_number": lambda o, v: bool(o["leaf"]) and o["leaf"].serial == v.upper(),
    "is_renewed": lambda o, v: o["is_renewed"] == (v in ("1", "true")),
    "search": lambda o, v: v.lower() in o["common_name"],
    "valid_till": lambda o, v: _cmp(day(o["leaf"].not_after) if o["leaf"] else None, v),
    "date_created": lambda o, v: _cmp(day(o["date_created"]), v),
}
SORT_KEYS = {"id": lambda o: o["id"], "date_created": lambda o: o["date_created"],
             "common_name": lambda o: o["common_name"], "status": lambda o: o["status"],
             "valid_till": lambda o: o["leaf"].not_after if o["leaf"] else 0,
             "product_name_id": lambda o: o["product"]}


def order_list(sim, req):
    with sim.lock:
        items = list(sim.orders.values())
        for k, vals in req.query.items():
            m = re.fullmatch(r"filters\[(\w+)\]", k)
            if not m:
                continue
            f = LIST_FILTERS.get(m.group(1))
            if f is None:
                continue  # filters the simulator does not model (organization_id, container_id, …) match all
            items = [o for o in items if f(o, vals[0])]
        items.sort(key=lambda o: o["id"])
        for key in reversed([s for s in (req.q("sort") or "").split(",") if s]):
            desc, key = key.startswith("-"), key.lstrip("-+")
            if key not in SORT_KEYS:
                raise ApiError(400, "invalid_sort", f"Cannot sort by {key}.")
            items.sort(key=SORT_KEYS[key], reverse=desc)
        try:
            offset = int(req.q("offset", 0))
            limit = int(req.q("limit", sim.config["list_default_limit"]))
        except ValueError:
            raise ApiError(400, "invalid_pagination", "offset and limit must be integers.")
        if offset < 0 or limit < 1 or limit > sim.config["list_max_limit"]:
            raise ApiError(400, "invalid_pagination", f"limit must be between 1 and {sim.config['list_max_limit']}.")
        page = items[offset:offset + limit]
        if "text/csv" in req.headers.get("Accept", ""):
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["order_id", "common_name", "status", "product_name_id", "date_created", "valid_till",
                        "alternative_order_id"])
            for o in page:
                w.writerow([o["id"], o["common_name"], o["status"], o["product"], iso(o["date_created"]),
                            day(o["leaf"].not_after) if o["leaf"] else "", o["alternative_order_id"] or ""])
            return 200, ("text/csv", buf.getvalue().encode())
        return 200, {"orders": [list_view(sim, o) for o in page],
                     "page": {"total": len(items), "limit": limit, "offset": offset}}


def check_dcv(sim, req):
    with sim.lock:
        o = sim.order(req.params["id"])
        status = o["status"]
    if status in ("rejected", "canceled", "revoked", "expired"):
        raise ApiError(400, "invalid_order_status", f"DCV cannot be checked on a {status} order.")
    names = None
    sel = (req.body or {}).get("dns_name_validations")
    if isinstance(sel, list) and sel:
        names = [(s.get("dns_name") if isinstance(s, dict) else s) for s in sel]
        names = [str(n).lower() for n in names if n]
        unknown = [n for n in names if n not in o["names"]]
        if unknown:
            raise ApiError(400, "invalid_dns_name", f"Not in the order: {', '.join(unknown)}.")
    if status in ("pending", "needs_approval", "waiting_pickup", "processing"):
        result, notes = sim.try_complete(o, names)
    else:
        result = {n: o["domains"].get(n, "approved") for n in (names or o["names"])}
    with sim.lock:
        if any(v != "approved" for v in result.values()):
            code, msg = {"http-token": ("file_random_value_not_found", "Could not find the random value at the "
                                        "expected file location for one or more domains."),
                         "dns-cname-token": ("invalid_dns_cname", "Could not find a valid CNAME record for one or "
                                             "more domains."),
                         "email": ("invalid_dcv_method", "Domains validated by email cannot be checked here.")
                         }.get(o["dcv_method"], ("invalid_dns_txt", "Could not find a valid TXT record for one or "
                                                                    "more domains."))
            raise ApiError(400, code, msg)
        all_ok = all(o["domains"][n] == "approved" for n in o["names"])
        return 200, {"order_status": o["status"], "certificate_id": o["certificate_id"],
                     "dcv_status": "valid" if all_ok else "pending",
                     "dns_name_validations": [{"dns_name": n, "status": v} for n, v in result.items()]}


def dcv_random_value(sim, req):
    with sim.lock:
        o = sim.order(req.params["id"])
        if o["dcv_method"] == "email":
            raise ApiError(400, "invalid_dcv_method", "The order's DCV method does not use a random value.")
        if o["rv_expires"] <= sim.now():
            o["dcv_random_value"] = secrets.token_hex(16)
            o["rv_expires"] = sim.now() + 30 * 86400
        return 200, {"dcv_random_value": o["dcv_random_value"], "expiration_date": iso(o["rv_expires"])}


def dcv_method(sim, req):
    m = (req.body or {}).get("dcv_method")
    if m not in DCV_METHODS:
        raise ApiError(400, "invalid_dcv_method", f"dcv_method must be one of {', '.join(DCV_METHODS)}.")
    with sim.lock:
        o = sim.order(req.params["id"])
        if m == "http-token" and any(n.startswith("*.") for n in o["names"]):
            raise ApiError(400, "invalid_dcv_method", "Wildcard domains must be validated with a DNS method.")
        o["dcv_method"] = m
        if m == "email":
            return 204, None
        return 200, {"dcv_random_value": o["dcv_random_value"], "expiration_date": iso(o["rv_expires"])}


def order_status(sim, req):
    b = req.body or {}
    st, note = b.get("status"), b.get("note")
    if st not in ("canceled", "renewed", "not_renewed"):
        raise ApiError(400, "invalid_status", "status must be canceled, renewed or not_renewed.")
    with sim.lock:
        o = sim.order(req.params["id"])
        if st == "canceled":
            if not isinstance(note, str) or not note.strip():
                raise ApiError(400, "missing_field|note", "A note is required to cancel an order.")
            if o["status"] == "reissue_pending":
                o["status"] = "issued"
            elif o["status"] in ("pending", "waiting_pickup", "needs_approval"):
                o["status"] = "canceled"
                for r in o["requests"]:
                    if r["status"] in ("pending", "submitted"):
                        r["status"] = "rejected"
            else:
                raise ApiError(400, "invalid_order_status", f"A {o['status']} order cannot be canceled.")
        else:
            o["is_renewed"] = st == "renewed"
        return 204, None


def _revoke(sim, o, b):
    if o["status"] != "issued":
        raise ApiError(400, "invalid_order_status", f"A {o['status']} order has no certificate to revoke.")
    if b.get("skip_approval") is True:
        o["status"] = "revoked"
        return 204, None
    rid = sim.next_request
    sim.next_request += 1
    r = {"id": rid, "date": sim.now(), "type": "revoke", "status": "pending",
         "comments": b.get("comments") or b.get("comment")}
    o["requests"].append(r)
    sim.requests[rid] = o["id"]
    return 201, {"id": rid, "date": iso(r["date"]), "type": "revoke", "status": "pending",
                 "requester": {"id": 1, "first_name": "API", "last_name": "User", "email": "api@example.com"},
                 "comments": r["comments"]}


def order_revoke(sim, req):
    with sim.lock:
        return _revoke(sim, sim.order(req.params["id"]), req.body or {})


def certificate_revoke(sim, req):
    with sim.lock:
        try:
            o = sim.order_by_cert(req.params["id"])
        except ApiError:
            o = sim.order(req.params["id"])  # by serial number
        return _revoke(sim, o, req.body or {})


def request_status(sim, req):
    b = req.body or {}
    st = b.get("status")
    if st not in ("approved", "rejected"):
        raise ApiError(400, "invalid_status", "status must be approved or rejected.")
    with sim.lock:
        oid = sim.requests.get(int(req.params["id"]))
        if oid is None:
            raise ApiError(404, "not_found|request", "The requested request was not found.")
        o = sim.orders[oid]
        r = next(r for r in o["requests"] if r["id"] == int(req.params["id"]))
        if r["status"] not in ("pending", "submitted"):
            raise ApiError(400, "invalid_request_status", f"The request is already {r['status']}.")
        r["status"] = st
        if r["type"] == "revoke":
            if st == "approved":
                o["status"] = "revoked"
            return 204, None
        if st == "rejected":
            o["status"] = "rejected"
            return 204, None
        if o["status"] == "needs_approval":
            o["status"] = "pending"
        ready = all(o["domains"][n] == "approved" for n in o["names"])
    if ready:  # the DCV was done before approval: issue now
        leaf = sim.sign(o)
        with sim.lock:
            if o["status"] == "pending":
                sim.finish_issue(o, leaf)
    return 204, None


# ---------- certificates (§6.4) ----------

def _download(sim, o, fmt):
    with sim.lock:
        leaf = o["leaf"]
        if leaf is None:
            raise ApiError(400, "cert_unavailable_processing", "Unable to download certificate, the certificate has "
                                                               "not yet been issued. Try again later.")
        inter, root = sim.ca.intermediate_pem[o["brand"]], sim.ca.root_pem
    out = camod.render(fmt, leaf.pem, inter, root, o["common_name"])
    if out is None:
        raise ApiError(404, "not_found|format", f"Unknown certificate format {fmt!r}; known: "
                                                f"{', '.join(camod.FORMATS)}.")
    return 200, out


def download_certificate(sim, req):
    with sim.lock:
        o = sim.order_by_cert(req.params["id"])
    return _download(sim, o, req.params["format"])


def download_order(sim, req):
    with sim.lock:
        o = sim.order(req.params["id"])
    return _download(sim, o, req.params["format"])


def certificate_chain(sim, req):
    with sim.lock:
        o = sim.order_by_cert(req.params["id"])
        if o["leaf"] is None:
            raise ApiError(400, "cert_unavailable_processing", "Unable to download certificate, the certificate has "
                                                               "not yet been issued. Try again later.")
        ch = sim.chain(o)
        return 200, {"intermediates": ch[1:]}


def product_list(sim, req):
    with sim.lock:
        return 200, {"products": [product_view(p) for p in sorted(sim.config["products"]) if p in PRODUCTS]}


def product_info(sim, req):
    p = req.params["product"]
    with sim.lock:
        if p not in PRODUCTS or p not in sim.config["products"]:
            raise ApiError(404, "not_found|product", "The requested product was not found.")
    return 200, product_view(p, full=True)


ROUTES = [
    # (operation, method, path template under /services/v2, handler)
    ("auth_key_create", "POST", "/account/auth-key", auth_key_create),
    ("auth_key_create", "POST", "/account/auth-key/{days:\\d+}", auth_key_create),
    ("auth_key_get", "GET", "/account/auth-key", auth_key_get),
    ("auth_key_get_id", "GET", "/account/auth-key/{id}", auth_key_get_id),
    ("auth_keys_list", "GET", "/account/auth-keys", auth_keys_list),
    ("user_me", "GET", "/user/me", user_me),
    ("auth_key_delete", "DELETE", "/account/auth-key", auth_key_delete),
    ("auth_key_delete_id", "DELETE", "/account/auth-key/{id}", auth_key_delete_id),
    ("order_list", "GET", "/order/certificate", order_list),
    ("order_info", "GET", "/order/certificate/{id}", order_info),
    ("check_dcv", "PUT", "/order/certificate/{id}/check-dcv", check_dcv),
    ("dcv_random_value", "PUT", "/order/certificate/{id}/dcv-random-value", dcv_random_value),
    ("dcv_method", "PUT", "/order/certificate/{id}/dcv-method", dcv_method),
    ("order_status", "PUT", "/order/certificate/{id}/status", order_status),
    ("order_revoke", "PUT", "/order/certificate/{id}/revoke", order_revoke),
    ("order_create", "POST", "/order/certificate/{product}", order_create),
    ("download_certificate", "GET", "/certificate/{id}/download/format/{format}", download_certificate),
    ("download_order", "GET", "/certificate/download/order/{id}/format/{format}", download_order),
    ("certificate_chain", "GET", "/certificate/{id}/chain", certificate_chain),
    ("certificate_revoke", "PUT", "/certificate/{id}/revoke", certificate_revoke),
    ("request_status", "PUT", "/request/{id:\\d+}/status", request_status),
    ("product_list", "GET", "/product", product_list),
    ("product_info", "GET", "/product/{product}", product_info),
]


class Route:
    def __init__(self, op, method, template, handler):
        self.op, self.method, self.template, self.handler = op, method, template, handler
        rx = re.sub(r"\{(\w+)(?::([^}]+))?\}", lambda m: f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})", template)
        self.rx = re.compile("^" + rx + "$")


_ROUTES = [Route(*r) for r in ROUTES]
OPERATIONS = sorted({r[0] for r in ROUTES})


def match(method, path):
    """(route, params) for method + path (path relative to /services/v2); (None, allowed methods) otherwise."""
    allowed = []
    for r in _ROUTES:
        m = r.rx.match(path)
        if m:
            if r.method == method:
                return r, m.groupdict()
            allowed.append(r.method)
    return None, allowed
