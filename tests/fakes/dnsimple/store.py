"""The simulated DNSimple account: domains, zones, certificates, renewals, records, webhooks.

Holds all state in memory behind one lock, applies the business rules of
dnsimple.md (§2 certificates, §3 zone records, §4 webhooks) and renders the
documented object shapes. HTTP concerns live in api.py and server.py.
"""
import concurrent.futures
import datetime as dt
import json
import math
import os
import re
import secrets
import threading
import time
from urllib.parse import urlsplit

from ca import CA, OpenSSLError
from faults import Faults, RateWindow
from webhooks import SYSTEM_ACTOR, Deliverer, is_loopback_host

DEFAULT_CONFIG = {
    "issue_delay": 0.0,            # seconds from issue to issued; negative: stays "requesting"
    "issue_outcome": "issued",     # "issued" or "failed"
    "cert_validity_days": 90.0,    # Let's Encrypt: 90 days
    "backdate_seconds": 3600,      # notBefore = issuance - 1 h, as Let's Encrypt does
    "download_root": False,        # download's "root": null as in the fixture; True: the root PEM
    "ec_key_format": "sec1",       # ECDSA private_key: "sec1" (BEGIN EC PRIVATE KEY) or "pkcs8"
    "contact_id": False,           # the removed contact_id field (old fixtures carry 2511)
    "strict_webhook_https": False,  # True: http:// webhook URLs refused even on loopback
    "webhook_events": ["*"],       # fnmatch patterns of event names that are delivered
    "webhook_retry_base": 0.5,     # first retry delay; doubles per attempt (DNSimple: hours, compressed)
    "webhook_max_attempts": 10,
    "webhook_suppress_after": 15,  # consecutive failed attempts
    "webhook_timeout": 10.0,
    "timeout_seconds": 30.0,       # default sleep of the "timeout" and "hang_after" faults
    "acme_txt_records": False,     # True: _acme-challenge TXT records appear in the zone while requesting
    "per_page_default": 30,
    "per_page_max": 100,
    "latency": 0.0,                # seconds added to every API request (make bench injects 50 ms)
    # A wrong download (for certificate verification tests): None, "other_names" (a valid leaf for
    # www.other-domain.test), "expired" (the right names, expired 3738 days ago) or "recorded" (both, as
    # DNSimple's recorded downloadCertificate fixture is). /private_key then serves that leaf's key.
    "download_wrong": None,
}
DEFAULT_PLAN = {"letsencrypt": True, "wildcard": True, "san": True, "custom_name": True, "regions": True}

RECORD_TYPES = ["A", "AAAA", "ALIAS", "CAA", "CNAME", "DNSKEY", "DS", "HINFO", "MX", "NAPTR", "NS", "POOL", "PTR",
                "SOA", "SPF", "SRV", "SSHFP", "TXT", "URL"]
REGIONS = ["global", "SV1", "ORD", "IAD", "AMS", "TKO", "SYD", "CDG", "FRA"]
LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
HOSTNAME_RE = re.compile(rf"^(?:\*\.)?{LABEL}(?:\.{LABEL})*$")
NAME_RE = re.compile(rf"^(?:\*|(?:\*\.)?{LABEL}(?:\.{LABEL})*)$")


class ApiError(Exception):
    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors

    def body(self):
        b = {"message": self.message}
        if self.errors is not None:
            b["errors"] = self.errors
        return b


def validation(errors):
    return ApiError(400, "Validation failed", errors)


def iso(t):
    return None if t is None else dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(t):
    return None if t is None else iso(t)[:10]


def txt_normalize(content):
    """TXT content as DNSimple stores it (§3.2): quoted input verbatim; otherwise split into
    255-character strings, each wrapped in double quotes with inner quotes escaped."""
    if len(content) >= 2 and content.startswith('"') and content.endswith('"'):
        return content
    parts = [content[i:i + 255] for i in range(0, len(content), 255)] or [""]
    return " ".join('"' + p.replace('"', '\\"') + '"' for p in parts)


class Sim:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.ca = CA(os.path.join(args.state_dir, "ca"))
        acct = int(args.account)
        self.account = {"id": acct, "email": "example-account@example.com", "name": "Example Account",
                        "identifier": "example-account", "plan_identifier": "teams-v1-monthly",
                        "created_at": "2015-09-18T23:04:37Z", "updated_at": "2016-06-09T20:03:39Z"}
        self.user = {"id": 1, "email": "example-user@example.com", "created_at": "2015-09-18T23:04:37Z",
                     "updated_at": "2016-06-09T20:03:39Z"}
        self.generation = 0
        self.faults = Faults()
        self.deliverer = Deliverer(self)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(os.cpu_count() or 2, 2))
        self.reset()

    # ---------- lifecycle ----------

    def reset(self):
        with self.lock:
            self.generation += 1
            self.config = dict(DEFAULT_CONFIG, issue_delay=float(self.args.issue_delay))
            self.plan = dict(DEFAULT_PLAN)
            self.next = {"domain": 289333, "zone": 1, "record": 1, "cert": 101967, "renewal": 65082, "webhook": 1}
            self.domains, self.zones = {}, {}
            self.certs, self.renewals, self.webhooks = {}, {}, {}
            self.counters, self.log = {}, []
            self.faults.clear()
            self.rate = RateWindow(self.args.rate_limit, getattr(self.args, "rate_window", 3600))
            self.rate_unauth = RateWindow(self.args.unauth_rate_limit)
            self.deliverer.reset()
            for d in self.args.domain:
                self.add_domain(d)
            for z in self.args.zone:
                self.add_zone(z)

    def new_id(self, kind):
        n = self.next[kind]
        self.next[kind] = n + 1
        return n

    def add_domain(self, name):
        name = name.lower().rstrip(".")
        if name not in self.domains:
            self.domains[name] = {"id": self.new_id("domain"), "name": name}
        self.add_zone(name)
        return self.domains[name]

    def add_zone(self, name):
        """A zone with DNSimple's system records at the apex: one SOA and four NS (fixture listZoneRecords)."""
        name = name.lower().rstrip(".")
        if name in self.zones:
            return self.zones[name]
        now = time.time()
        z = {"id": self.new_id("zone"), "name": name, "created_at": now, "updated_at": now, "records": []}
        self.zones[name] = z
        serial = int(now)
        self._add_record(z, "", "SOA", f"ns1.dnsimple.com admin.dnsimple.com {serial} 86400 7200 604800 300",
                         3600, None, ["global"], system=True)
        for i in range(1, 5):
            self._add_record(z, "", "NS", f"ns{i}.dnsimple.com", 3600, None, ["global"], system=True)
        return z

    def actor(self, principal):
        """The webhook actor of an API call (real payloads: id is a string, §4.2)."""
        if principal == "user":
            return {"id": str(self.user["id"]), "entity": "user", "pretty": self.user["email"]}
        if principal == "account":
            return {"id": str(self.account["id"]), "entity": "account", "pretty": self.account["email"]}
        return SYSTEM_ACTOR

    def emit(self, name, data, actor=None):
        return self.deliverer.emit(name, data, actor)

    def dump(self):
        """Everything but secrets-free niceties: for debugging (GET /_sim/state, --dump-state)."""
        with self.lock:
            return {"account": self.account, "config": self.config, "plan": self.plan,
                    "domains": list(self.domains.values()),
                    "zones": {n: [self.record_view(r) for r in z["records"]] for n, z in self.zones.items()},
                    "certificates": [self.cert_sim_view(c) for c in self.certs.values()],
                    "renewals": [self.renewal_view(r) for r in self.renewals.values()],
                    "webhooks": [self.webhook_view(w) for w in self.webhooks.values()],
                    "rate_limit": self.rate.view(), "faults": self.faults.list(),
                    "events": self.deliverer.events, "deliveries": self.deliverer.deliveries}

    def write_dump(self):
        path = os.path.join(self.args.state_dir, "state.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.dump(), f, indent=1, default=str)
        os.replace(tmp, path)
        return path

    # ---------- views (the documented shapes) ----------

    def cert_view(self, c):
        """Certificate (§2.1): key order as the fixture; csr/expires_* null until issued."""
        v = {"id": c["id"], "domain_id": c["domain_id"]}
        if self.config["contact_id"]:
            v["contact_id"] = 2511
        v.update({"name": c["name"], "common_name": c["common_name"], "years": 1, "csr": c["csr"],
                  "state": c["state"], "auto_renew": c["auto_renew"], "alternate_names": list(c["alternate_names"]),
                  "authority_identifier": "letsencrypt", "created_at": iso(c["created_at"]),
                  "updated_at": iso(c["updated_at"]), "expires_at": iso(c["expires_at"]),
                  "expires_on": day(c["expires_at"])})
        return v

    def cert_sim_view(self, c):
        """The API view plus what only the simulator knows (for /_sim/ calls)."""
        return dict(self.cert_view(c), domain=c["domain"], signature_algorithm=c["algorithm"],
                    names=self.cert_names(c), private_key_present=bool(c["key"]) and not c["key_removed"],
                    error=c.get("error"))

    @staticmethod
    def purchase_view(c):
        return {"id": c["id"], "certificate_id": c["id"], "state": "new", "auto_renew": c["auto_renew"],
                "created_at": iso(c["created_at"]), "updated_at": iso(c["created_at"])}

    @staticmethod
    def renewal_view(r):
        return {"id": r["id"], "old_certificate_id": r["old"], "new_certificate_id": r["new"], "state": r["state"],
                "auto_renew": r["auto_renew"], "created_at": iso(r["created_at"]), "updated_at": iso(r["updated_at"])}

    @staticmethod
    def record_view(r):
        return {"id": r["id"], "zone_id": r["zone"], "parent_id": None, "name": r["name"], "content": r["content"],
                "ttl": r["ttl"], "priority": r["priority"], "type": r["type"], "system_record": r["system"],
                "regions": list(r["regions"]), "created_at": iso(r["created_at"]), "updated_at": iso(r["updated_at"])}

    def zone_view(self, z):
        return {"id": z["id"], "account_id": self.account["id"], "name": z["name"], "reverse": False,
                "secondary": False, "last_transferred_at": None, "active": True,
                "created_at": iso(z["created_at"]), "updated_at": iso(z["updated_at"])}

    @staticmethod
    def webhook_view(w):
        return {"id": w["id"], "url": w["url"], "suppressed_at": iso(w["suppressed_at"])}

    # ---------- lookups ----------

    def domain(self, ref):
        ref = str(ref)
        d = self.domains.get(ref.lower())
        if d is None and ref.isdigit():
            d = next((x for x in self.domains.values() if x["id"] == int(ref)), None)
        if d is None:
            raise ApiError(404, f"Domain `{ref}` not found")
        return d

    def cert(self, domain, ref):
        c = self.certs.get(int(ref)) if str(ref).isdigit() else None
        if c is None or c["domain"] != domain["name"]:
            raise ApiError(404, f"Certificate `{ref}` not found")
        return c

    def zone(self, ref):
        z = self.zones.get(str(ref).lower())
        if z is None:
            raise ApiError(404, f"Zone `{ref}` not found")
        return z

    def record(self, zone, ref):
        r = next((x for x in zone["records"] if str(x["id"]) == str(ref)), None)
        if r is None:
            raise ApiError(404, f"Record `{ref}` not found")
        return r

    def webhook(self, ref):
        w = self.webhooks.get(int(ref)) if str(ref).isdigit() else None
        if w is None:
            raise ApiError(404, f"Webhook `{ref}` not found")
        return w

    # ---------- certificates ----------

    def plan_error(self, feature):
        return ApiError(412, f"The certificate requires the {feature} feature that is not available on the "
                             f"current plan for the account {self.account['email']}")

    def validate_purchase(self, domain, body):
        """Returns (name, alternate_names, auto_renew, algorithm) for a purchase body, or raises."""
        dom = domain["name"]
        errors = {}
        name = body.get("name", "www")
        if not isinstance(name, str) or (name and not NAME_RE.match(name.lower())):
            errors["name"] = ["is invalid"]
        alt = body.get("alternate_names", [])
        if alt is None:
            alt = []
        if not isinstance(alt, list) or not all(isinstance(n, str) for n in alt):
            errors["alternate_names"] = ["must be an array of strings"]
            alt = []
        alt = [n.lower().rstrip(".") for n in alt]
        for n in alt:
            if not HOSTNAME_RE.match(n) or not (n == dom or n.endswith("." + dom)):
                errors.setdefault("alternate_names", []).append(f"{n} is not a valid name in the domain {dom}")
        auto_renew = body.get("auto_renew", False)
        if auto_renew is None:
            auto_renew = False
        if not isinstance(auto_renew, bool):
            errors["auto_renew"] = ["is not a boolean"]
        algo = body.get("signature_algorithm", "ECDSA") or "ECDSA"
        if algo not in ("ECDSA", "RSA"):
            errors["signature_algorithm"] = ["is not included in the list"]
        if errors:
            raise validation(errors)
        name = name.lower()
        if len(self.names_for(dom, name, alt)) > 100:
            raise validation({"alternate_names": ["is too long (maximum is 100 names)"]})
        if not self.plan["letsencrypt"]:
            raise ApiError(412, f"Let's Encrypt feature is not enabled for the account {self.account['email']}")
        if name.startswith("*") and not self.plan["wildcard"]:
            raise self.plan_error("wildcard")
        if name not in ("www",) and not name.startswith("*") and not self.plan["custom_name"]:
            raise self.plan_error("custom-name")
        if alt and not self.plan["san"]:
            raise self.plan_error("SAN")
        return name, alt, auto_renew, algo

    @staticmethod
    def names_for(dom, name, alt):
        """The DNS names of the certificate: the common name, the apex for "www" (§2.3), then the SANs."""
        names = [f"{name}.{dom}" if name else dom]
        if name == "www":
            names.append(dom)
        names += alt
        return list(dict.fromkeys(names))

    def cert_names(self, c):
        return self.names_for(c["domain"], c["name"], c["alternate_names"])

    def new_cert(self, domain, name, alt, auto_renew, algo, state="new"):
        now = time.time()
        c = {"id": self.new_id("cert"), "domain": domain["name"], "domain_id": domain["id"], "name": name,
             "common_name": f"{name}.{domain['name']}" if name else domain["name"], "alternate_names": list(alt),
             "auto_renew": bool(auto_renew), "algorithm": algo, "state": state, "created_at": now,
             "updated_at": now, "expires_at": None, "csr": None, "pem": None, "key": None, "key_removed": False,
             "token": None, "acme_records": []}
        self.certs[c["id"]] = c
        return c

    def start_issue(self, c):
        """new → requesting; a timer moves it on after issue_delay (negative: never)."""
        c["state"] = "requesting"
        c["updated_at"] = time.time()
        c["csr"] = None
        token = c["token"] = object()
        if self.config["acme_txt_records"]:
            self._acme_records(c, create=True)
        delay = float(self.config["issue_delay"])
        if delay >= 0:
            t = threading.Timer(delay, self.complete_issue, args=(c["id"], token))
            t.daemon = True
            t.start()

    def complete_issue(self, cid, token, outcome=None):
        """requesting → issued with a real certificate (or → failed); fires certificate.issue."""
        with self.lock:
            c = self.certs.get(cid)
            if c is None or c["token"] is not token or c["state"] != "requesting":
                return
            outcome = outcome or self.config["issue_outcome"]
            names, algo = self.cert_names(c), c["algorithm"]
            now = time.time()
            not_before = now - float(self.config["backdate_seconds"])
            not_after = not_before + float(self.config["cert_validity_days"]) * 86400
            ec_format = self.config["ec_key_format"]
        issued, error = None, None
        if outcome == "issued":
            try:
                issued = self.ca.issue(names, algo, not_before, not_after, ec_format)
            except OpenSSLError as e:
                error = str(e)
        with self.lock:
            if self.certs.get(cid) is not c or c["token"] is not token or c["state"] != "requesting":
                return
            c["token"] = None
            c["updated_at"] = time.time()
            if c["acme_records"]:
                self._acme_records(c, create=False)
            renewal = next((r for r in self.renewals.values() if r["new"] == cid), None)
            if issued is None:
                c["state"], c["error"] = "failed", error or "simulated issuance failure"
                if renewal:
                    renewal.update(state="failed", updated_at=time.time())
                return
            c.update(state="issued", pem=issued.cert_pem, key=issued.key_pem, csr=issued.csr_pem,
                     expires_at=issued.not_after, key_removed=False)
            if renewal:
                renewal.update(state="renewed", updated_at=time.time())
            self.emit("certificate.issue", {"certificate": self.cert_view(c)})

    def issue_now(self, c):
        """Issues c synchronously (control calls): through requesting, on the same path as the timer."""
        with self.lock:
            c["state"] = "requesting"
            token = c["token"] = object()
        self.complete_issue(c["id"], token, outcome="issued")

    def _acme_records(self, c, create):
        """DNSimple runs DNS-01 itself (§2): optional visible _acme-challenge TXT records while requesting."""
        z = self.zones.get(c["domain"])
        if z is None:
            return
        if create:
            for n in self.cert_names(c):
                label = n[: -len(c["domain"])].rstrip(".").lstrip("*").lstrip(".")
                name = "_acme-challenge" + ("." + label if label else "")
                r = self._add_record(z, name, "TXT", txt_normalize(secrets.token_urlsafe(32)), 60, None, ["global"])
                c["acme_records"].append(r["id"])
                self.emit("zone_record.create", {"zone_record": self.record_view(r)})
        else:
            for rid in c["acme_records"]:
                r = next((x for x in z["records"] if x["id"] == rid), None)
                if r:
                    z["records"].remove(r)
                    self.emit("zone_record.delete", {"zone_record": self.record_view(r)})
            c["acme_records"] = []

    def purchase_renewal(self, old, body):
        if old["auto_renew"]:
            raise ApiError(400, f"Certificate `{old['id']}` uses the auto renewal feature and cannot be renewed "
                                "manually")
        if old["state"] != "issued" or (old["expires_at"] or 0) <= time.time():
            raise ApiError(400, f"Certificate `{old['id']}` cannot be renewed")
        errors = {}
        auto_renew = body.get("auto_renew", False)
        if auto_renew is None:
            auto_renew = False
        if not isinstance(auto_renew, bool):
            errors["auto_renew"] = ["is not a boolean"]
        algo = body.get("signature_algorithm", "ECDSA") or "ECDSA"  # the documented default, not the old one's
        if algo not in ("ECDSA", "RSA"):
            errors["signature_algorithm"] = ["is not included in the list"]
        if errors:
            raise validation(errors)
        new = self.new_cert(self.domains[old["domain"]], old["name"], old["alternate_names"], auto_renew, algo)
        now = time.time()
        r = {"id": self.new_id("renewal"), "old": old["id"], "new": new["id"], "state": "new",
             "auto_renew": bool(auto_renew), "created_at": now, "updated_at": now}
        self.renewals[r["id"]] = r
        return r

    def issue_renewal(self, old, rid):
        r = self.renewals.get(int(rid)) if str(rid).isdigit() else None
        if r is None or r["old"] != old["id"]:
            raise ApiError(404, f"Renewal `{rid}` not found")
        new = self.certs.get(r["new"])
        if new is None or new["state"] != "new":
            raise ApiError(400, f"Renewal `{rid}` cannot be issued")
        r.update(state="renewing", updated_at=time.time())
        self.start_issue(new)
        return new

    def auto_renew(self, old, fail=False):
        """DNSimple's own auto-renewal (§2.11): a new certificate id with the same names and algorithm."""
        if fail:
            self.emit("certificate.auto_renewal_failed", {"certificate": self.cert_view(old)})
            return None
        new = self.new_cert(self.domains[old["domain"]], old["name"], old["alternate_names"], old["auto_renew"],
                            old["algorithm"])
        self.start_issue(new)
        return new

    def remove_private_key(self, c):
        c["key_removed"] = True
        c["updated_at"] = time.time()
        self.emit("certificate.remove_private_key", {"certificate": self.cert_view(c)}, self.actor("user"))

    def force_state(self, c, state):
        if state == "issued" and not c["pem"]:
            self.issue_now(c)
            return
        with self.lock:
            c["token"] = None
            c["state"] = state
            c["updated_at"] = time.time()
            if state == "requesting":
                c["token"] = object()  # stuck: no timer
            if state == "issued":
                self.emit("certificate.issue", {"certificate": self.cert_view(c)})

    def seed(self, domain, count, name, alt, state, auto_renew=False, algo="ECDSA", expires_in=None):
        """Pre-created certificates; issued ones carry real certificates (signed in parallel)."""
        with self.lock:
            made = [self.new_cert(domain, name if name is not None else f"seed{i}", alt, auto_renew, algo,
                                  state="new") for i in range(count)]
            for c in made:
                if state != "issued":
                    c["state"] = state
                    c["token"] = object() if state == "requesting" else None  # stuck in requesting
        futures = [self.pool.submit(self._seed_issue, c, expires_in) for c in made if state == "issued"]
        for f in futures:
            f.result()
        return made

    def _seed_issue(self, c, expires_in):
        with self.lock:
            validity = float(self.config["cert_validity_days"]) * 86400
            not_after = time.time() + (float(expires_in) if expires_in is not None else validity)
            not_before = min(not_after - 60, time.time() - float(self.config["backdate_seconds"]))
            names, fmt = self.cert_names(c), self.config["ec_key_format"]
        issued = self.ca.issue(names, c["algorithm"], not_before, not_after, fmt)
        with self.lock:
            c.update(state="issued", pem=issued.cert_pem, key=issued.key_pem, csr=issued.csr_pem,
                     expires_at=issued.not_after, updated_at=time.time())

    # ---------- zone records ----------

    def _add_record(self, z, name, rtype, content, ttl, priority, regions, system=False):
        now = time.time()
        r = {"id": self.new_id("record"), "zone": z["name"], "name": name, "type": rtype, "content": content,
             "ttl": ttl, "priority": priority, "regions": regions, "system": system, "created_at": now,
             "updated_at": now}
        z["records"].append(r)
        return r

    def validate_record(self, body, creating, rtype=None):
        """Field checks shared by create and update; returns the cleaned fields."""
        errors, out = {}, {}
        if creating or "name" in body:
            if body.get("name") is None:
                errors["name"] = ["can't be null"]
            elif not isinstance(body["name"], str):
                errors["name"] = ["is invalid"]
            else:
                out["name"] = body["name"].rstrip(".")
        if creating:
            t = body.get("type")
            if not t:
                errors["type"] = ["can't be blank"]
            elif not isinstance(t, str) or t.upper() not in RECORD_TYPES:
                errors["record_type"] = ["unsupported"]
            else:
                rtype = out["type"] = t.upper()
        if creating or "content" in body:
            content = body.get("content")
            if not isinstance(content, str) or content == "":
                errors["content"] = ["can't be blank"]
            else:
                if rtype == "TXT":
                    content = txt_normalize(content)
                    if len(content) > 1000:
                        errors["content"] = ["is too long (maximum is 1000 characters)"]
                out["content"] = content
        if "ttl" in body and body["ttl"] is not None:
            if isinstance(body["ttl"], bool) or not isinstance(body["ttl"], int) or body["ttl"] < 0:
                errors["ttl"] = ["is not a number"]
            else:
                out["ttl"] = body["ttl"]
        if "priority" in body and body["priority"] is not None:
            if isinstance(body["priority"], bool) or not isinstance(body["priority"], int):
                errors["priority"] = ["is not a number"]
            else:
                out["priority"] = body["priority"]
        if "regions" in body and body["regions"] is not None:
            regs = body["regions"]
            if not isinstance(regs, list) or not regs or any(x not in REGIONS for x in regs):
                errors["regions"] = ["is invalid"]
            else:
                out["regions"] = regs
        if errors:
            raise validation(errors)
        if out.get("regions", ["global"]) != ["global"] and not self.plan["regions"]:
            raise ApiError(412, "Zone record regions are not available on the current plan for the account "
                                f"{self.account['email']}")
        return out

    def create_record(self, z, body, actor):
        f = self.validate_record(body, creating=True)
        for r in z["records"]:
            if (r["name"].lower() == f["name"].lower() and r["type"] == f["type"]
                    and r["content"] == f["content"]):
                raise validation({"base": ["Matching record already exists for this zone"]})
        r = self._add_record(z, f["name"], f["type"], f["content"], f.get("ttl", 3600), f.get("priority"),
                             f.get("regions", ["global"]))
        self.emit("zone_record.create", {"zone_record": self.record_view(r)}, actor)
        return r

    def update_record(self, z, r, body, actor):
        if r["system"]:
            raise ApiError(400, "System records cannot be modified")
        f = self.validate_record(body, creating=False, rtype=r["type"])
        r.update(f)
        r["updated_at"] = time.time()
        self.emit("zone_record.update", {"zone_record": self.record_view(r)}, actor)
        return r

    def delete_record(self, z, r, actor):
        if r["system"]:
            raise ApiError(400, "System records cannot be deleted")
        z["records"].remove(r)
        self.emit("zone_record.delete", {"zone_record": self.record_view(r)}, actor)

    # ---------- webhooks ----------

    def create_webhook(self, body, actor):
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise validation({"url": ["can't be blank"]})
        u = urlsplit(url)
        https_ok = u.scheme == "https" and bool(u.hostname)
        loopback_http = (u.scheme == "http" and is_loopback_host(u.hostname)
                         and not self.config["strict_webhook_https"])
        if not (https_ok or loopback_http):
            raise validation({"url": ["must be a valid HTTPS URL"]})
        w = {"id": self.new_id("webhook"), "url": url, "suppressed_at": None, "failures": 0}
        self.webhooks[w["id"]] = w
        self.emit("webhook.create", {"webhook": self.webhook_view(w)}, actor)
        return w

    def delete_webhook(self, w, actor):
        del self.webhooks[w["id"]]
        self.emit("webhook.delete", {"webhook": self.webhook_view(w)}, actor)


# ---------- listing helpers ----------

def sort_items(items, sort, keys, default):
    """Applies sort=field:dir[,field:dir...] (the first key has priority, §5.3); unknown fields are a 400."""
    spec = []
    for part in (sort or default).split(","):
        field, _, direction = part.strip().partition(":")
        direction = direction or "asc"
        if field not in keys or direction not in ("asc", "desc"):
            raise ApiError(400, f"Invalid sorting field `{part.strip()}`")
        spec.append((field, direction))
    out = list(items)
    for field, direction in reversed(spec):
        out.sort(key=keys[field], reverse=(direction == "desc"))
    return out


def paginate(items, query, config):
    """{"data": page, "pagination": {...}} with page (default 1) and per_page (default 30, at most 100)."""
    def num(name, default):
        try:
            v = int(query.get(name, [""])[0])
        except ValueError:
            return default
        return v if v >= 1 else default
    per_page = min(num("per_page", int(config["per_page_default"])), int(config["per_page_max"]))
    page = num("page", 1)
    total = len(items)
    return {"data": items[(page - 1) * per_page: page * per_page],
            "pagination": {"current_page": page, "per_page": per_page, "total_entries": total,
                           "total_pages": math.ceil(total / per_page)}}
