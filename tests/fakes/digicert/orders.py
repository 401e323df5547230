"""Order placement (digicert.md §5): body validation, CSR parsing, request-token DCV, the 201 answers.

validate() turns a request body into an order dict or raises ApiError with
every problem found (the API may return several errors at once, §7.7).
"""
import calendar
import datetime as dt
import re
import secrets
import string

import ca as camod
from store import (DCV_METHODS, PAYMENT_METHODS, PRODUCTS, SERVER_PLATFORMS, SIGNATURE_HASHES, TOKEN_METHODS,
                   ApiError)

LABEL_RX = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_NAMES = 250
RV_CHARS = string.ascii_lowercase + string.digits


class Problems:
    def __init__(self):
        self.items = []

    def add(self, code, message):
        self.items.append((code, message))

    def raise_if_any(self, status=400):
        if self.items:
            (code, msg), rest = self.items[0], self.items[1:]
            raise ApiError(status, code, msg, rest)


def fqdn_ok(name, wildcard_ok=True):
    if not isinstance(name, str) or not name or len(name) > 253 or name != name.strip():
        return False
    n = name.lower().rstrip(".")
    labels = n.split(".")
    if labels[0] == "*":
        if not wildcard_ok:
            return False
        labels = labels[1:]
    if len(labels) < 2 or labels[-1].isdigit() or re.fullmatch(r"[0-9.]+", n):
        return False
    return all(LABEL_RX.match(lab) for lab in labels)


def add_months(t, months):
    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    return d.replace(year=y, month=m, day=min(d.day, calendar.monthrange(y, m)[1])).timestamp()


def parse_date(s):
    try:
        return dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp() + 86399
    except (TypeError, ValueError):
        return None


def is_bool(v):
    return isinstance(v, bool) or v in (0, 1)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def order_validity(body, now, p):
    """(order_valid_till, label) from order_validity, or the legacy validity_years / custom_expiration_date."""
    ov = body.get("order_validity")
    if ov is not None:
        if not isinstance(ov, dict) or not ov:
            p.add("invalid_order_validity", "order_validity must be an object with years, days or "
                                            "custom_expiration_date.")
            return None
        if "years" in ov:
            if not is_int(ov["years"]) or not 1 <= ov["years"] <= 3:
                p.add("invalid_order_validity", "order_validity.years must be 1, 2 or 3.")
                return None
            return add_months(now, 12 * ov["years"])
        if "days" in ov:
            if not is_int(ov["days"]) or not 1 <= ov["days"] <= 1095:
                p.add("invalid_order_validity", "order_validity.days must be between 1 and 1095.")
                return None
            return now + ov["days"] * 86400
        t = parse_date(ov.get("custom_expiration_date"))
        if t is None or t <= now or t > add_months(now, 36) + 86400:
            p.add("invalid_order_validity", "order_validity.custom_expiration_date must be a future "
                                            "YYYY-MM-DD date within three years.")
            return None
        return t
    if "validity_years" in body:
        v = body["validity_years"]
        if not is_int(v) or not 1 <= v <= 3:
            p.add("invalid_validity_years", "validity_years must be 1, 2 or 3.")
            return None
        return add_months(now, 12 * v)
    if "custom_expiration_date" in body:
        t = parse_date(body["custom_expiration_date"])
        if t is None or t <= now or t > add_months(now, 36) + 86400:
            p.add("invalid_custom_expiration_date", "custom_expiration_date must be a future YYYY-MM-DD date.")
            return None
        return t
    p.add("missing_field|order_validity", "order_validity (or validity_years) is required.")
    return None


def cert_validity_days(cert, now, order_till, p):
    cv = cert.get("cert_validity")
    if cv is None:
        return None
    if not isinstance(cv, dict):
        p.add("invalid_cert_validity", "certificate.cert_validity must be an object with days or years.")
        return None
    if "days" in cv and is_int(cv["days"]) and cv["days"] >= 1:
        days = cv["days"]
    elif "years" in cv and is_int(cv["years"]) and cv["years"] >= 1:
        days = int((add_months(now, 12 * cv["years"]) - now) / 86400)
    else:
        p.add("invalid_cert_validity", "certificate.cert_validity must be an object with days or years.")
        return None
    if order_till is not None and now + days * 86400 > order_till + 86400:
        p.add("cert_validity_exceeds_order_validity", "Certificate validity cannot exceed the order validity.")
        return None
    return days


def product_rules(product, cn, names, p):
    """The name mix each product allows (strict_product_names)."""
    rule = PRODUCTS[product][2]
    others = [n for n in names if n != cn]
    if rule == "single":
        if cn.startswith("*."):
            p.add("invalid_common_name", f"{product} does not secure wildcard names; use a wildcard product.")
        plus = cn[4:] if cn.startswith("www.") else "www." + cn
        bad = [n for n in others if n != plus]
        if bad:
            p.add("invalid_dns_names", f"{product} secures one name plus its www/base variant; "
                                       f"not allowed: {', '.join(bad)}.")
    elif rule == "wildcard":
        if not cn.startswith("*."):
            p.add("invalid_common_name", f"{product} needs a wildcard common_name (*.example.com).")
            return
        base = cn[2:]
        bad = [n for n in others if n != base and not (n.endswith("." + base) and n.count(".") == base.count(".") + 1
                                                       and not n.startswith("*."))]
        if bad:
            p.add("invalid_dns_names", f"{product} may add only names under {cn} or {base}; "
                                       f"not allowed: {', '.join(bad)}.")


def validate(sim, product, body, cfg, now):
    """The order dict for a valid body (CSR parsed, no ids yet), or raises ApiError."""
    if product not in PRODUCTS:
        raise ApiError(404, "not_found|product", "The requested product was not found.")
    if product not in cfg["products"]:
        raise ApiError(403, "access_denied|product_not_enabled",
                       "This product is not enabled for your account.")
    p = Problems()
    cert = body.get("certificate")
    if not isinstance(cert, dict):
        p.add("missing_field|certificate", "certificate is required.")
        p.raise_if_any()
    cn = cert.get("common_name")
    if not isinstance(cn, str) or not cn:
        p.add("missing_field|certificate.common_name", "certificate.common_name is required.")
    elif not fqdn_ok(cn):
        p.add("invalid_common_name", f"{cn!r} is not a valid fully qualified domain name.")
    dns_names = cert.get("dns_names", [])
    if dns_names is None:
        dns_names = []
    if not isinstance(dns_names, list) or not all(isinstance(n, str) for n in dns_names):
        p.add("invalid_dns_names", "certificate.dns_names must be a list of strings.")
        dns_names = []
    for n in dns_names:
        if not fqdn_ok(n):
            p.add("invalid_dns_names", f"{n!r} is not a valid fully qualified domain name.")
    csr = cert.get("csr")
    if not isinstance(csr, str) or not csr.strip():
        p.add("missing_field|certificate.csr", "certificate.csr is required.")
    sig = cert.get("signature_hash", "sha256")
    if sig not in SIGNATURE_HASHES:
        p.add("invalid_signature_hash", f"signature_hash must be one of {', '.join(SIGNATURE_HASHES)}.")
    platform = cert.get("server_platform", {"id": -1})
    if not isinstance(platform, dict) or not is_int(platform.get("id", -1)):
        p.add("invalid_server_platform", "certificate.server_platform must be {\"id\": <integer>}.")
        platform = {"id": -1}
    method = body.get("dcv_method", "email")
    if method not in DCV_METHODS:
        p.add("invalid_dcv_method", f"dcv_method must be one of {', '.join(DCV_METHODS)}.")
    for flag in ("use_auth_key", "skip_approval", "disable_ct", "disable_renewal_notifications", "auto_renew"):
        if flag in body and not is_bool(body[flag]):
            p.add(f"invalid_field|{flag}", f"{flag} must be a boolean.")
    pay = body.get("payment_method", "balance")
    if pay not in PAYMENT_METHODS:
        p.add("invalid_payment_method", f"payment_method must be one of {', '.join(PAYMENT_METHODS)}.")
    alt = body.get("alternative_order_id")
    if alt is not None and (not isinstance(alt, str) or not 1 <= len(alt) <= 64):
        p.add("invalid_alternative_order_id", "alternative_order_id must be a string of 1 to 64 characters.")
    akid = body.get("auth_key_id")
    if akid is not None and not isinstance(akid, str):
        p.add("invalid_field|auth_key_id", "auth_key_id must be a string.")
    renewal = body.get("renewal_of_order_id")
    if renewal is not None:
        with sim.lock:
            if not is_int(renewal) or renewal not in sim.orders:
                p.add("invalid_renewal_of_order_id", "renewal_of_order_id must be an order of this account.")
    till = order_validity(body, now, p)
    cv_days = cert_validity_days(cert, now, till, p) if isinstance(cert, dict) else None

    names = []
    if isinstance(cn, str) and cn:
        for n in [cn] + list(dns_names):
            n = n.lower().rstrip(".")
            if n not in names:
                names.append(n)
    if len(names) > MAX_NAMES:
        p.add("invalid_dns_names", f"At most {MAX_NAMES} names per order.")
    if method == "http-token" and any(n.startswith("*.") for n in names):
        p.add("invalid_dcv_method", "Wildcard domains must be validated with a DNS method (http-token covers "
                                    "only the exact FQDN).")
    if cfg["strict_product_names"] and names and not p.items:
        product_rules(product, names[0], names, p)
    p.raise_if_any()

    try:
        info = camod.parse_csr(csr)
    except ValueError as e:
        raise ApiError(400, "csr_invalid_cannot_parse", f"Unable to parse the CSR: {e}")
    if not info.sig_ok:
        raise ApiError(400, "csr_invalid_signature", "The CSR signature does not verify.")
    if info.key_type == "rsa" and info.key_bits < 2048:
        raise ApiError(400, "csr_invalid_key_size", "RSA keys must be at least 2048 bits.")
    if info.key_type == "ecc" and info.curve not in ("prime256v1", "secp384r1", "P-256", "P-384"):
        raise ApiError(400, "csr_invalid_key_type", "ECC keys must use P-256 or P-384.")
    if info.key_type not in ("rsa", "ecc"):
        raise ApiError(400, "csr_invalid_key_type", "The CSR key must be RSA or ECC.")
    mismatch = [n for n in info.names() if n not in names]
    if mismatch and cfg["strict_csr_names"]:
        raise ApiError(400, "csr_names_mismatch", f"Names in the CSR are not in the order: {', '.join(mismatch)}.")

    return {
        "product": product, "brand": PRODUCTS[product][1], "status": "pending",
        "common_name": names[0], "dns_names": [n.lower().rstrip(".") for n in dns_names], "names": names,
        "csr": csr, "csr_pem": info.pem, "key_type": info.key_type, "key_size": info.key_bits,
        "csr_names": info.names(), "csr_names_mismatch": mismatch,
        "signature_hash": sig, "server_platform": platform.get("id", -1), "cert_validity_days": cv_days,
        "order_valid_till": till, "dcv_method": method, "use_auth_key": bool(body.get("use_auth_key", False)),
        "auth_key_id": akid, "skip_approval": bool(body.get("skip_approval", False)),
        "payment_method": pay, "alternative_order_id": alt, "renewal_of_order_id": renewal,
        "is_renewed": False, "renewed_order_id": None, "disable_ct": bool(body.get("disable_ct", False)),
        "comments": body.get("comments"), "date_created": now, "date_issued": None,
        "dcv_random_value": "".join(secrets.choice(RV_CHARS) for _ in range(32)), "rv_expires": now + 30 * 86400,
        "requests": [], "leaf": None, "domains": {n: "pending" for n in names}, "dcv_how": {}, "dcv_notes": [],
        "immediate": None,
    }


def place(sim, product, body):
    """POST /order/certificate/{product}: (201, answer)."""
    with sim.lock:
        cfg = dict(sim.config)
        now = sim.now()
    order = validate(sim, product, body, cfg, now)
    if order["csr_names_mismatch"]:
        sim.bump("csr_names_mismatch")
    with sim.lock:
        if order["auth_key_id"] is not None:
            k = sim.authkeys.get(order["auth_key_id"])
            if k is None or k not in sim.active_keys():
                raise ApiError(400, "invalid_auth_key", "The named AuthKey is inactive, expired or missing.")
        needs_approval = cfg["require_approval"] and not order["skip_approval"]
        reused = {n: sim.reused(n) for n in order["names"]}
    # Immediate issuance (§5.3 a): every name proven by a request token (or already validated), no approval.
    why = []
    if not cfg["immediate"]:
        why.append("immediate issuance switched off (/_sim/immediate)")
    if needs_approval:
        why.append("needs approval")
    todo = [n for n in order["names"] if not reused[n]]
    if todo and not order["use_auth_key"]:
        why.append("use_auth_key is not true")
    if todo and order["dcv_method"] not in TOKEN_METHODS:
        why.append(f"dcv_method {order['dcv_method']} takes no request token")
    found, notes = {}, []
    if todo and order["use_auth_key"] and order["dcv_method"] in TOKEN_METHODS:
        with sim.lock:
            if not sim.signing_keys(order):
                why.append("no usable AuthKey on the account")
        found, notes = sim.check_names(order, todo, allow_tokens=True, allow_random=False)
    for n in order["names"]:
        if reused[n]:
            order["domains"][n] = "approved"
            order["dcv_how"][n] = "reused"
        elif found.get(n, (False, None))[0]:
            order["domains"][n] = "approved"
            order["dcv_how"][n] = found[n][1]
    missing = [n for n in order["names"] if order["domains"][n] != "approved"]
    if missing:
        why.append("not validated: " + ", ".join(missing))
    order["dcv_notes"] = notes
    leaf = sim.sign(order) if not why else None

    oid, cid, rid = sim.alloc_ids()
    with sim.lock:
        order["id"], order["certificate_id"] = oid, cid
        order["requests"] = [{"id": rid, "date": sim.now(), "type": "new_request",
                              "status": "pending" if needs_approval else "approved", "comments": None}]
        if needs_approval:
            order["status"] = "needs_approval"
        sim.orders[oid] = order
        sim.certs[cid] = oid
        sim.requests[rid] = oid
        if order["renewal_of_order_id"] is not None:
            old = sim.orders[order["renewal_of_order_id"]]
            old["is_renewed"], old["renewed_order_id"] = True, oid
        order["immediate"] = {"issued": leaf is not None, "why_not": why}
        if leaf is not None:
            sim.finish_issue(order, leaf)
            sim.bump("immediate_issued")
            return 201, {"id": oid, "certificate_id": cid, "certificate_chain": sim.chain(order)}
        sim.bump("orders_pending")
        out = {"id": oid, "certificate_id": cid, "dcv_random_value": order["dcv_random_value"]}
        if needs_approval:
            out["requests"] = [{"id": rid, "status": "pending"}]
        return 201, out


def server_platform_view(pid):
    return {"id": pid, "name": SERVER_PLATFORMS.get(pid, "OTHER")}
