"""The simulated CertCentral account: AuthKeys, orders, certificates, DCV, configuration.

Handlers (api.py) call into Sim with sim.lock held only for short state reads
and writes; the slow parts (openssl, DNS and HTTP lookups) run outside it.
"""
import datetime as dt
import secrets
import string
import threading
import time

import dcv
import faults
import reqtoken
from ca import CA

PRODUCTS = {
    # name_id: (name, brand of the issuing ICA, wildcard rule)
    "ssl_dv_geotrust": ("GeoTrust Standard DV", "geotrust", "single"),
    "ssl_dv_rapidssl": ("RapidSSL Standard DV", "rapidssl", "single"),
    "wildcard_dv_geotrust": ("GeoTrust Wildcard DV", "geotrust", "wildcard"),
    "wildcard_dv_rapidssl": ("RapidSSL Wildcard DV", "rapidssl", "wildcard"),
    "cloud_dv_geotrust": ("GeoTrust Cloud DV", "geotrust", "any"),
    "ssl_dv_geotrust_flex": ("GeoTrust DV SSL", "geotrust", "any"),
}
DCV_METHODS = ("dns-txt-token", "http-token", "dns-cname-token", "email")
TOKEN_METHODS = ("dns-txt-token", "http-token")
PAYMENT_METHODS = ("balance", "card", "profile", "wire_transfer")
SIGNATURE_HASHES = ("sha256", "sha384", "sha512")
ORDER_STATUSES = ("pending", "needs_approval", "processing", "issued", "reissue_pending", "waiting_pickup",
                  "needs_csr", "rejected", "canceled", "revoked", "expired")
SERVER_PLATFORMS = {-1: "OTHER", 2: "Apache", 3: "Apache + MOD SSL", 36: "nginx"}

DEFAULT_CONFIG = {
    "immediate": True,              # false: never issue at order time (POST /_sim/immediate)
    "clock_offset": 0,              # seconds added to the simulator's clock (token windows, dates)
    "token_skew_seconds": 60,       # how far in the future a token timestamp may be
    "token_max_age_days": 30,       # §3.2
    "tolerant_csr_hash": True,      # §3.3: also try the CSR without trailing whitespace / as bare base64
    "dns_parent_coverage": True,    # §4.2: a TXT on a parent domain covers its subdomains (DNS methods only)
    "require_approval": False,      # true: orders without skip_approval wait in needs_approval
    "dcv_reuse_days": 0,            # >0: a validated domain issues later orders at once for that long
    "strict_product_names": True,   # product name rules (standard = FQDN [+ www], wildcard = *.x [+ x])
    "strict_csr_names": False,      # true: names in the CSR must all be in the order (the real API ignores them)
    "chain_includes_root": True,    # certificate_chain ends with the root (as the seed's example)
    "max_cert_validity_days": None,  # None: by date (397, 199 from 2026-02-24, 99 from 2027-02-24, 46 from 2029)
    "auto_poll_seconds": 0,         # >0: DigiCert's own DCV polling of pending orders
    "list_default_limit": 1000,
    "list_max_limit": 1000,
    "products": sorted(PRODUCTS),   # enabled products (flex "must be enabled by DigiCert")
    "timeout_seconds": 30,          # default sleep of the timeout / hang_after faults
    "require_json_content_type": True,
    "rate_limits": [list(x) for x in faults.DEFAULT_LIMITS],
    "latency": 0.0,                 # seconds added to every API request (make bench injects 50 ms)
}
ALNUM = string.ascii_letters + string.digits


class ApiError(Exception):
    """An error answer: {"errors":[{"code","message"}, ...]}."""

    def __init__(self, status, code, message, more=()):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.errors = [{"code": code, "message": message}] + [{"code": c, "message": m} for c, m in more]

    def body(self):
        return {"errors": [dict(e) for e in self.errors]}


def iso(t):
    return None if t is None else dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S+00:00")


def day(t):
    return None if t is None else dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y-%m-%d")


def public_max_days(now):
    for since, days in (("2029-02-24", 46), ("2027-02-24", 99), ("2026-02-24", 199)):
        if now >= dt.datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp():
            return days
    return 397


class Sim:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.ca = CA(args.state_dir + "/ca")
        self.dns = dcv.DNS(args.dns_url, args.zone, server=args.dns_server)
        self.http = dcv.HTTP(parse_port_map(args.http_port_map))
        self.faults = faults.Faults()
        self.rate = faults.RateLimiter()
        self.reset()

    def reset(self):
        with self.lock:
            self.config = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_CONFIG.items()}
            if self.args.rate_limit:
                self.config["rate_limits"] = [[int(n), float(s)] for n, s in
                                              (x.split("/") for x in self.args.rate_limit)]
            self.rate.set(self.config["rate_limits"])
            self.faults.clear()
            self.authkeys = {}        # auth_key_id -> {id, value, created, expires, deleted}
            self.orders = {}          # order id -> order dict
            self.certs = {}           # certificate id -> order id
            self.requests = {}        # request id -> order id
            self.validated = {}       # domain -> time of validation (dcv_reuse_days)
            self.counters = {}
            self.log = []
            self.next_order, self.next_cert, self.next_request = 1000001, 2000001, 3000001
            self.dns.local = []
            self.http.map = dict(parse_port_map(self.args.http_port_map))
            if self.args.auth_key:
                self.set_authkey(self.args.auth_key)

    def now(self):
        return time.time() + float(self.config["clock_offset"])

    def bump(self, key, n=1):
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + n

    # ---------- AuthKeys (§2) ----------

    def active_keys(self):
        now = self.now()
        return [k for k in self.authkeys.values()
                if not k["deleted"] and (k["expires"] is None or k["expires"] > now)]

    def permanent_key(self):
        return next((k for k in self.active_keys() if k["expires"] is None), None)

    def new_authkey(self, days=None, value=None):
        kid = secrets.token_hex(8)
        k = {"id": kid, "value": value or "".join(secrets.choice(ALNUM) for _ in range(32)),
             "created": self.now(), "expires": None if days is None else self.now() + days * 86400,
             "deleted": False}
        self.authkeys[kid] = k
        return k

    def set_authkey(self, value, kid=None):
        """Sets (or rotates) the permanent AuthKey's value, creating it if needed (control API)."""
        k = self.permanent_key()
        if k is None:
            k = self.new_authkey(value=value)
        else:
            k["value"] = value
        if kid and kid != k["id"]:
            del self.authkeys[k["id"]]
            k["id"] = kid
            self.authkeys[kid] = k
        return k

    @staticmethod
    def authkey_view(k):
        out = {"auth_key_id": k["id"], "auth_key": k["value"]}
        if k["expires"] is not None:
            out["expiration_datetime"] = iso(k["expires"])
        return out

    def signing_keys(self, order):
        """The AuthKey values a request token of this order may be made with (§2 "Several AuthKeys")."""
        if order.get("auth_key_id"):
            k = self.authkeys.get(order["auth_key_id"])
            return [k["value"]] if k and k in self.active_keys() else []
        k = self.permanent_key()
        if k:
            return [k["value"]]
        active = self.active_keys()
        return [active[0]["value"]] if len(active) == 1 else []

    # ---------- ids ----------

    def alloc_ids(self):
        with self.lock:
            ids = self.next_order, self.next_cert, self.next_request
            self.next_order += 1
            self.next_cert += 1
            self.next_request += 1
            return ids

    def order(self, ref):
        """An order by id, or by the thumbprint or serial number of its certificate (§6.1); else 404."""
        ref = str(ref)
        if ref.isdigit() and int(ref) in self.orders:
            return self.orders[int(ref)]
        for o in self.orders.values():
            leaf = o["leaf"]
            if leaf and ref.upper() in (leaf.thumbprint, leaf.serial, leaf.serial.lstrip("0")):
                return o
        raise ApiError(404, "not_found|order", "The requested order was not found.")

    def order_by_cert(self, cid):
        oid = self.certs.get(int(cid)) if str(cid).isdigit() else None
        if oid is None:
            raise ApiError(404, "not_found|certificate", "The requested certificate was not found.")
        return self.orders[oid]

    # ---------- DCV (§4) ----------

    def check_names(self, order, names, allow_tokens, allow_random):
        """{name: (approved, how)} after looking for tokens of order at names; also a list of notes.

        Runs outside the lock: DNS and HTTP lookups can be slow.
        """
        with self.lock:
            keys = self.signing_keys(order) if allow_tokens and order["use_auth_key"] else []
            cfg = dict(self.config)
            rv = order["dcv_random_value"] if allow_random and order["rv_expires"] > self.now() else None
        now = self.now()
        notes, out = [], {}
        method = order["dcv_method"]
        view = self.dns.snapshot(notes) if method in ("dns-txt-token", "dns-cname-token") else None
        for name in names:
            out[name] = (False, None)
            if method == "email":
                continue
            base = name[2:] if name.startswith("*.") else name
            texts = []
            if method in ("dns-txt-token", "dns-cname-token"):
                zone = view.zone_of(base)
                for owner in dcv.dns_lookup_names(name, zone, cfg["dns_parent_coverage"]):
                    if method == "dns-txt-token":
                        texts += [(owner, t) for t in view.records(owner, "TXT")]
                    elif owner.startswith("_dnsauth.") and rv:
                        for c in view.records(owner, "CNAME"):
                            if c.lower().rstrip(".") == f"{rv}.dcv.digicert.com":
                                out[name] = (True, "cname:" + owner)
            elif method == "http-token" and not name.startswith("*."):
                body = self.http.fetch(name, notes)
                if body is not None:
                    texts.append((name, body))
            for where, text in texts:
                if out[name][0]:
                    break
                if keys:
                    r = reqtoken.verify(text, keys, order["csr"], now, cfg["token_skew_seconds"],
                                        cfg["tolerant_csr_hash"], cfg["token_max_age_days"] * 86400)
                    if r.ok:
                        out[name] = (True, f"request_token:{r.variant}:{where}")
                        self.bump("token_verified")
                        self.bump("token_variant_" + r.variant)
                        continue
                    if r.reason != "no_token":
                        notes.append(f"{name}: token at {where}: {r.reason}")
                        self.bump("token_" + r.reason)
                if rv and rv in text:
                    out[name] = (True, "random_value:" + where)
            if not out[name][0] and not texts and method != "dns-cname-token":
                notes.append(f"{name}: nothing found ({method})")
        return out, notes

    def reused(self, name):
        days = self.config["dcv_reuse_days"]
        t = self.validated.get(name[2:] if name.startswith("*.") else name)
        return bool(days) and t is not None and self.now() - t < days * 86400

    # ---------- issuance ----------

    def leaf_days(self, order):
        cfg_max = self.config["max_cert_validity_days"]
        days = cfg_max if cfg_max else public_max_days(self.now())
        if order["cert_validity_days"]:
            days = min(days, order["cert_validity_days"])
        remaining = (order["order_valid_till"] - self.now()) / 86400
        return max(1, min(days, int(remaining) if remaining >= 1 else 1))

    def sign(self, order):
        """A real leaf for the order (outside the lock); the caller stores it with finish_issue."""
        now = self.now()
        return self.ca.issue(order["csr_pem"], order["key_type"], order["names"], order["brand"], now,
                             now + self.leaf_days(order) * 86400 - 1, order["signature_hash"])

    def finish_issue(self, order, leaf):
        """Records leaf as the order's certificate (lock held): status issued, domains validated."""
        if order["leaf"] is not None:
            return False
        order["leaf"] = leaf
        order["status"] = "issued"
        order["date_issued"] = self.now()
        for n in order["names"]:
            order["domains"][n] = "approved"
            self.validated[n[2:] if n.startswith("*.") else n] = self.now()
        for r in order["requests"]:
            if r["status"] in ("pending", "submitted"):
                r["status"] = "approved"
        self.bump("issued")
        return True

    def chain(self, order):
        return self.ca.chain(order["leaf"].pem, order["common_name"], order["brand"],
                             root=self.config["chain_includes_root"])

    def try_complete(self, order, names=None):
        """check-dcv's work: looks again for tokens, records approvals, issues when all are approved.

        Returns {name: status} and the notes. Call without the lock.
        """
        names = names or order["names"]
        todo = [n for n in names if order["domains"].get(n) != "approved"]
        found, notes = self.check_names(order, todo, allow_tokens=True, allow_random=True)
        with self.lock:
            for n, (ok, how) in found.items():
                if ok:
                    order["domains"][n] = "approved"
                    order["dcv_how"][n] = how
            order["dcv_notes"] = notes
            ready = order["status"] == "pending" and all(order["domains"][n] == "approved" for n in order["names"])
        if ready:
            leaf = self.sign(order)
            with self.lock:
                if order["status"] == "pending":
                    self.finish_issue(order, leaf)
        return {n: order["domains"][n] for n in names}, notes

    def set_status(self, order, status):
        """Control API: forces a status; issued signs a real certificate if the order has none."""
        if status == "issued" and order["leaf"] is None:
            leaf = self.sign(order)
            with self.lock:
                self.finish_issue(order, leaf)
        with self.lock:
            order["status"] = status
            for r in order["requests"]:
                if status in ("rejected", "canceled") and r["status"] in ("pending", "submitted"):
                    r["status"] = "rejected"

    def poll_once(self):
        """DigiCert's own DCV polling (auto_poll_seconds): every pending order is checked once."""
        with self.lock:
            pending = [o for o in self.orders.values() if o["status"] == "pending"]
        for o in pending:
            try:
                self.try_complete(o)
            except Exception:  # a poll must never kill the thread
                self.bump("_poll_errors")

    def start_poller(self):
        def loop():
            while True:
                secs = float(self.config["auto_poll_seconds"] or 0)
                time.sleep(secs if secs > 0 else 0.5)
                if secs > 0:
                    self.poll_once()
        threading.Thread(target=loop, daemon=True, name="dcv-poller").start()


def parse_port_map(items):
    """["host=127.0.0.1:P", ...] -> {host: "127.0.0.1:P"}."""
    out = {}
    for item in items or []:
        host, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise ValueError(f"--http-port-map wants host=127.0.0.1:PORT, not {item!r}")
        out[host.strip().lower()] = target.strip()
    return out
