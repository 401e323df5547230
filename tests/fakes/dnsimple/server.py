#!/usr/bin/env python3
"""A DNSimple API v2 simulator for certsync's tests (standard library + the openssl CLI).

Follows ../shared/api/dnsimple.md: bearer auth, /v2/{account}/... paths, the
{"data": ...} envelope with pagination (per_page 30 by default, 100 at most),
Let's Encrypt purchase / issue / renewal / download / private key, zone
records (TXT content returned quoted, "Matching record already exists"),
webhooks (list without pagination, deliveries with request_identifier),
X-RateLimit-* headers and 429s. Issuance is asynchronous: new → requesting →
issued after --issue-delay seconds, with real certificates from a local CA.

Test controls live under /_sim/ (no auth): counters, log, faults, rate
limits, forced states, seeding, auto-renewal, webhook replays, zone dumps.

usage: server.py --port 0 --state-dir DIR [--token T] [--account ID]
                 [--domain NAME ...] [--issue-delay S]
Prints "READY http://127.0.0.1:PORT" when listening.
"""
import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.RLock()


def now_iso(t=None):
    return dt.datetime.fromtimestamp(t if t is not None else time.time(), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CA:
    """A Let's Encrypt-like root + intermediate, made once per state dir."""

    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.root, self.inter, self.ikey = (os.path.join(d, n) for n in ("root.pem", "inter.pem", "inter.key"))
        if not os.path.exists(self.inter):
            rk = os.path.join(d, "root.key")
            self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650",
                      "-subj", "/CN=Simulated ISRG Root X1", "-keyout", rk, "-out", self.root)
            csr = os.path.join(d, "inter.csr")
            self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
                      "/CN=Simulated R3", "-keyout", self.ikey, "-out", csr)
            ext = os.path.join(d, "inter.ext")
            open(ext, "w").write("basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
            self._run("x509", "-req", "-in", csr, "-CA", self.root, "-CAkey", rk, "-CAcreateserial", "-days", "1825",
                      "-extfile", ext, "-out", self.inter)
        self.n = 0

    @staticmethod
    def _run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def issue(self, names, algorithm, days):
        with LOCK:
            self.n += 1
            base = os.path.join(self.d, f"leaf{self.n}-{uuid.uuid4().hex[:6]}")
        key, csr, crt, ext = base + ".key", base + ".csr", base + ".crt", base + ".ext"
        if algorithm == "RSA":
            self._run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
            self._run("pkey", "-in", key, "-traditional", "-out", key)  # PKCS#1 like the fixture
        else:
            self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        self._run("req", "-new", "-key", key, "-subj", f"/CN={names[0]}", "-out", csr)
        open(ext, "w").write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                             "extendedKeyUsage=serverAuth\nsubjectAltName=" + ",".join("DNS:" + n for n in names) + "\n")
        self._run("x509", "-req", "-in", csr, "-CA", self.inter, "-CAkey", self.ikey, "-CAcreateserial",
                  "-days", str(days), "-extfile", ext, "-out", crt)
        end = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-enddate"], capture_output=True,
                             text=True).stdout.strip().split("=", 1)[1]
        expires = dt.datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)
        return open(crt).read(), open(key).read(), expires.timestamp()


class State:
    def __init__(self, a):
        self.a = a
        self.ca = CA(os.path.join(a.state_dir, "ca"))
        self.reset()

    def reset(self):
        self.certs = {}          # id -> dict
        self.next_id = 101967
        self.renewals = {}       # renewal id -> dict
        self.records = {}        # zone -> list of records
        self.next_record = 1
        self.webhooks = []
        self.next_webhook = 1
        self.counters = {}
        self.log = []
        self.faults = []         # {"endpoint", "mode", "count", "retry_after"}
        self.rl = {"limit": 2400, "remaining": 2400, "reset": int(time.time()) + 3600}
        self.deliveries = []     # delivered payloads (for replay)
        self.issue_delay = self.a.issue_delay
        self.domains = {d: i + 1 for i, d in enumerate(self.a.domain)}


S = None

ROUTES = [
    ("GET", r"/v2/whoami", "whoami"),
    ("GET", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates", "listCertificates"),
    ("POST", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates/letsencrypt", "purchaseLetsencryptCertificate"),
    ("POST", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates/letsencrypt/(?P<id>\d+)/issue",
     "issueLetsencryptCertificate"),
    ("POST", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates/letsencrypt/(?P<id>\d+)/renewals",
     "purchaseRenewalLetsencryptCertificate"),
    ("POST", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates/letsencrypt/(?P<id>\d+)/renewals/(?P<rid>\d+)/issue",
     "issueRenewalLetsencryptCertificate"),
    ("GET", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates/(?P<id>\d+)", "getCertificate"),
    ("GET", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates/(?P<id>\d+)/download", "downloadCertificate"),
    ("GET", r"/v2/(?P<acc>\d+)/domains/(?P<dom>[^/]+)/certificates/(?P<id>\d+)/private_key", "getCertificatePrivateKey"),
    ("GET", r"/v2/(?P<acc>\d+)/zones/(?P<zone>[^/]+)/records", "listZoneRecords"),
    ("POST", r"/v2/(?P<acc>\d+)/zones/(?P<zone>[^/]+)/records", "createZoneRecord"),
    ("DELETE", r"/v2/(?P<acc>\d+)/zones/(?P<zone>[^/]+)/records/(?P<id>\d+)", "deleteZoneRecord"),
    ("GET", r"/v2/(?P<acc>\d+)/webhooks", "listWebhooks"),
    ("POST", r"/v2/(?P<acc>\d+)/webhooks", "createWebhook"),
    ("DELETE", r"/v2/(?P<acc>\d+)/webhooks/(?P<id>\d+)", "deleteWebhook"),
]


class ApiError(Exception):
    def __init__(self, status, message, errors=None):
        self.status, self.message, self.errors = status, message, errors


def cert_view(c):
    """The Certificate object (§2.1), with the deprecated fields the fixtures still carry."""
    exp = c.get("expires_at")
    return {"id": c["id"], "domain_id": c["domain_id"], "contact_id": 2511, "name": c["name"],
            "common_name": c["common_name"], "years": 1, "csr": c.get("csr"), "state": c["state"],
            "auto_renew": c["auto_renew"], "alternate_names": c["alternate_names"],
            "authority_identifier": "letsencrypt", "created_at": c["created_at"], "updated_at": c["updated_at"],
            "expires_at": now_iso(exp) if exp else None, "expires_on": now_iso(exp)[:10] if exp else None}


def paginate(items, q):
    per = min(int(q.get("per_page", ["30"])[0]), 100)
    page = max(int(q.get("page", ["1"])[0]), 1)
    total = len(items)
    pages = max((total + per - 1) // per, 1)
    return {"data": items[(page - 1) * per: page * per],
            "pagination": {"current_page": page, "per_page": per, "total_entries": total, "total_pages": pages}}


def deliver(event, cert):
    payload = {"data": {"certificate": cert_view(cert)}, "name": event,
               "actor": {"id": "system", "entity": "dnsimple", "pretty": "support@dnsimple.com"},
               "account": {"id": int(S.a.account), "display": "Sim", "identifier": "sim"},
               "api_version": "v2", "request_identifier": str(uuid.uuid4())}
    S.deliveries.append(payload)
    for w in list(S.webhooks):
        threading.Thread(target=post_webhook, args=(w["url"], payload), daemon=True).start()


def post_webhook(url, payload):
    body = json.dumps(payload, indent=None, separators=(", ", ": ")).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "content-type": "application/json", "user-agent": "DNSimple-Webhook-Notifier/sim"})
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except Exception:
        pass


def finish_issue(cid):
    """Moves a requesting certificate to issued with a real certificate."""
    with LOCK:
        c = S.certs.get(cid)
        if not c or c["state"] != "requesting":
            return
        names = [c["common_name"]] + [n for n in c["alternate_names"] if n != c["common_name"]]
        if c["name"] == "www":
            names.append(c["domain"])
        algo = c["algorithm"]
    pem, key, expires = S.ca.issue(list(dict.fromkeys(names)), algo, 90)
    with LOCK:
        if c["state"] != "requesting":
            return
        c.update(state="issued", pem=pem, key=key, expires_at=expires, updated_at=now_iso(),
                 csr="-----BEGIN CERTIFICATE REQUEST-----\nsimulated\n-----END CERTIFICATE REQUEST-----\n")
    deliver("certificate.issue", c)


def start_issue(c):
    c["state"] = "requesting"
    c["updated_at"] = now_iso()
    delay = S.issue_delay
    if delay < 0:
        return  # stays requesting until /_sim/certificate_state
    t = threading.Timer(delay, finish_issue, args=(c["id"],))
    t.daemon = True
    t.start()


def new_cert(dom, name, alt, auto_renew, algo, state="new"):
    with LOCK:
        cid = S.next_id
        S.next_id += 1
    cn = f"{name}.{dom}" if name else dom
    c = {"id": cid, "domain_id": S.domains.get(dom, 1), "domain": dom, "name": name, "common_name": cn,
         "alternate_names": sorted(alt), "auto_renew": bool(auto_renew), "state": state, "algorithm": algo,
         "created_at": now_iso(), "updated_at": now_iso(), "expires_at": None, "csr": None}
    S.certs[cid] = c
    return c


def domain_or_404(dom):
    if dom not in S.domains:
        raise ApiError(404, f"Domain `{dom}` not found")


def cert_or_404(dom, cid):
    c = S.certs.get(int(cid))
    if not c or c["domain"] != dom:
        raise ApiError(404, f"Certificate `{cid}` not found")
    return c


def handle(op, m, q, body):
    acc = m.groupdict().get("acc")
    if acc is not None and acc != S.a.account:
        raise ApiError(404, f"Account `{acc}` not found")
    if op == "whoami":
        return 200, {"data": {"user": None, "account": {"id": int(S.a.account), "email": "sim@example.test",
                                                        "name": "Sim", "plan_identifier": "teams-v1-monthly",
                                                        "created_at": now_iso(), "updated_at": now_iso()}}}
    if op == "listCertificates":
        domain_or_404(m["dom"])
        items = sorted((c for c in S.certs.values() if c["domain"] == m["dom"]), key=lambda c: -c["id"])
        return 200, paginate([cert_view(c) for c in items], q)
    if op == "purchaseLetsencryptCertificate":
        domain_or_404(m["dom"])
        name = body.get("name", "www")
        alt = body.get("alternate_names", []) or []
        algo = body.get("signature_algorithm", "ECDSA")
        if algo not in ("ECDSA", "RSA"):
            raise ApiError(400, "Validation failed", {"signature_algorithm": ["is not included in the list"]})
        for n in alt:
            if not (n == m["dom"] or n.endswith("." + m["dom"])):
                raise ApiError(400, "Validation failed", {"alternate_names": [f"{n} is not in the domain"]})
        if len(alt) > 100:
            raise ApiError(400, "Validation failed", {"alternate_names": ["too many names"]})
        c = new_cert(m["dom"], name, alt, body.get("auto_renew", False), algo)
        return 201, {"data": {"id": c["id"], "certificate_id": c["id"], "state": "new", "auto_renew": c["auto_renew"],
                              "created_at": c["created_at"], "updated_at": c["updated_at"]}}
    if op == "issueLetsencryptCertificate":
        c = cert_or_404(m["dom"], m["id"])
        if c["state"] != "new":
            raise ApiError(400, f"Certificate `{c['id']}` cannot be issued (state {c['state']})")
        start_issue(c)
        return 202, {"data": cert_view(c)}
    if op == "purchaseRenewalLetsencryptCertificate":
        old = cert_or_404(m["dom"], m["id"])
        if old["auto_renew"]:
            raise ApiError(400, "Certificate uses the auto renewal feature and cannot be renewed manually")
        if old["state"] != "issued":
            raise ApiError(400, f"Certificate `{old['id']}` cannot be renewed (state {old['state']})")
        new = new_cert(old["domain"], old["name"], old["alternate_names"], body.get("auto_renew", False),
                       body.get("signature_algorithm", old["algorithm"]))
        with LOCK:
            rid = 65082 + len(S.renewals)
            S.renewals[rid] = {"id": rid, "old": old["id"], "new": new["id"], "state": "new"}
        return 201, {"data": {"id": rid, "old_certificate_id": old["id"], "new_certificate_id": new["id"],
                              "state": "new", "auto_renew": new["auto_renew"], "created_at": now_iso(),
                              "updated_at": now_iso()}}
    if op == "issueRenewalLetsencryptCertificate":
        old = cert_or_404(m["dom"], m["id"])
        r = S.renewals.get(int(m["rid"]))
        if not r or r["old"] != old["id"]:
            raise ApiError(404, f"Renewal `{m['rid']}` not found")
        new = S.certs[r["new"]]
        if new["state"] != "new":
            raise ApiError(400, "Renewal cannot be issued")
        r["state"] = "renewing"
        start_issue(new)
        return 202, {"data": cert_view(new)}
    if op == "getCertificate":
        return 200, {"data": cert_view(cert_or_404(m["dom"], m["id"]))}
    if op == "downloadCertificate":
        c = cert_or_404(m["dom"], m["id"])
        if c["state"] != "issued":
            raise ApiError(428, "Certificate not issued")
        chain = open(S.ca.inter).read().rstrip("\n")  # chain entries may lack the trailing newline (§2.9)
        return 200, {"data": {"server": c["pem"], "root": None, "chain": [chain]}}
    if op == "getCertificatePrivateKey":
        c = cert_or_404(m["dom"], m["id"])
        if c["state"] != "issued" or not c.get("key"):
            raise ApiError(428, "Private key not present")
        return 200, {"data": {"private_key": c["key"]}}
    if op == "listZoneRecords":
        zone = m["zone"]
        if zone not in S.domains:
            raise ApiError(404, f"Zone `{zone}` not found")
        recs = S.records.get(zone, [])
        if "name" in q:
            recs = [r for r in recs if r["name"] == q["name"][0]]
        if "type" in q:
            recs = [r for r in recs if r["type"] == q["type"][0]]
        return 200, paginate(recs, q)
    if op == "createZoneRecord":
        zone = m["zone"]
        if zone not in S.domains:
            raise ApiError(404, f"Zone `{zone}` not found")
        if "name" not in body or body["name"] is None:
            raise ApiError(400, "Validation failed", {"name": ["can't be null"]})
        for f in ("type", "content"):
            if not body.get(f):
                raise ApiError(400, "Validation failed", {f: ["can't be blank"]})
        content = body["content"]
        if body["type"] == "TXT" and not (content.startswith('"') and content.endswith('"')):
            content = '"' + content.replace('"', '\\"') + '"'  # normalised and returned quoted (§3.2)
        recs = S.records.setdefault(zone, [])
        if any(r["name"] == body["name"] and r["type"] == body["type"] and r["content"] == content for r in recs):
            raise ApiError(400, "Validation failed", {"base": ["Matching record already exists for this zone"]})
        with LOCK:
            rid = S.next_record
            S.next_record += 1
        r = {"id": rid, "zone_id": zone, "parent_id": None, "name": body["name"], "content": content,
             "ttl": body.get("ttl", 3600), "priority": None, "type": body["type"], "system_record": False,
             "regions": ["global"], "created_at": now_iso(), "updated_at": now_iso()}
        recs.append(r)
        return 201, {"data": r}
    if op == "deleteZoneRecord":
        recs = S.records.get(m["zone"], [])
        for r in recs:
            if r["id"] == int(m["id"]):
                recs.remove(r)
                return 204, None
        raise ApiError(404, f"Record `{m['id']}` not found")
    if op == "listWebhooks":
        return 200, {"data": [{"id": w["id"], "url": w["url"], "suppressed_at": None} for w in S.webhooks]}
    if op == "createWebhook":
        url = body.get("url", "")
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ApiError(400, "Validation failed", {"url": ["must be HTTPS"]})
        with LOCK:
            w = {"id": S.next_webhook, "url": url}
            S.next_webhook += 1
            S.webhooks.append(w)
        return 201, {"data": {"id": w["id"], "url": url, "suppressed_at": None}}
    if op == "deleteWebhook":
        S.webhooks = [w for w in S.webhooks if w["id"] != int(m["id"])]
        return 204, None
    raise ApiError(404, "Not Found")


def add_extra_fields(obj):
    if isinstance(obj, dict):
        obj["sim_unknown_field"] = {"nested": [1, 2]}
        for v in obj.values():
            add_extra_fields(v)
    elif isinstance(obj, list):
        for v in obj:
            add_extra_fields(v)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body=None, ctype="application/json", headers=(), raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        self.send_response(status)
        if data or status != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        u = urlparse(self.path)
        if u.path.startswith("/_sim/"):
            return self.control(u, raw)
        op, m = None, None
        for method, pat, name in ROUTES:
            mm = re.fullmatch(pat, u.path)
            if mm and method == self.command:
                op, m = name, mm
                break
        with LOCK:
            key = op or f"{self.command} {u.path}"
            S.counters[key] = S.counters.get(key, 0) + 1
            S.log.append({"method": self.command, "path": self.path, "op": op, "time": time.time(),
                          "authorization": bool(self.headers.get("Authorization")),
                          "body": raw.decode(errors="replace")})
            rl = S.rl
            if time.time() >= rl["reset"]:  # a new window
                rl["remaining"] = rl["limit"]
                rl["reset"] = int(time.time()) + 3600
            rl_headers = [("X-RateLimit-Limit", str(rl["limit"])), ("x-ratelimit-remaining", str(max(rl["remaining"] - 1, 0))),
                          ("X-Ratelimit-Reset", str(rl["reset"]))]
            fault = next((f for f in S.faults if f["endpoint"] in ("*", op) and f.get("count", 1) != 0), None)
            if fault and fault.get("count", -1) > 0:
                fault["count"] -= 1
        if self.headers.get("Authorization") != f"Bearer {S.a.token}":
            return self.send(401, {"message": "Authentication failed"}, headers=rl_headers)
        if rl["remaining"] <= 0:
            with LOCK:
                S.counters["_ratelimited"] = S.counters.get("_ratelimited", 0) + 1
            return self.send(429, {"message": "quota exceeded"}, headers=rl_headers)
        rl["remaining"] -= 1
        if fault:
            mode = fault["mode"]
            if mode in ("500_html", "502_html"):
                code = int(mode[:3])
                return self.send(code, raw=b"<html><body><h1>%d Bad Gateway</h1></body></html>" % code,
                                 ctype="text/html", headers=rl_headers)
            if mode == "429":
                return self.send(429, {"message": "quota exceeded"},
                                 headers=rl_headers + [("Retry-After", str(fault.get("retry_after", "1")))])
            if mode == "timeout":
                time.sleep(fault.get("seconds", 30))
                self.close_connection = True
                return
        if op is None:
            return self.send(404, {"message": "Not Found"}, headers=rl_headers)
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self.send(400, {"message": "Invalid JSON"}, headers=rl_headers)
        try:
            with LOCK:
                status, out = handle(op, m, parse_qs(u.query), body)
        except ApiError as e:
            err = {"message": e.message}
            if e.errors is not None:
                err["errors"] = e.errors
            return self.send(e.status, err, headers=rl_headers)
        if fault and fault["mode"] == "hang_after":
            # the request took effect, but the answer never comes (a crash window for clients)
            time.sleep(fault.get("seconds", 30))
            self.close_connection = True
            return
        if fault and fault["mode"] == "extra_fields" and out is not None:
            add_extra_fields(out)
        if fault and fault["mode"] == "empty_body":
            return self.send(status, raw=b"", headers=rl_headers)
        if fault and fault["mode"] == "truncated_json" and out is not None:
            data = json.dumps(out).encode()
            return self.send(status, raw=data[: len(data) // 2], headers=rl_headers)
        self.send(status, out, headers=rl_headers)

    do_GET = do_POST = do_DELETE = do_PATCH = do_any

    def control(self, u, raw):
        body = json.loads(raw) if raw.strip() else {}
        p = u.path[len("/_sim/"):]
        with LOCK:
            if p == "counters":
                return self.send(200, S.counters)
            if p == "log":
                return self.send(200, S.log)
            if p == "reset":
                S.reset()
                return self.send(200, {})
            if p == "fault":
                if self.command == "DELETE":
                    S.faults = []
                else:
                    S.faults.append({"endpoint": body.get("endpoint", "*"), "mode": body["mode"],
                                     "count": body.get("count", -1), "retry_after": body.get("retry_after", "1"),
                                     "seconds": body.get("seconds", 30)})
                return self.send(200, {})
            if p == "ratelimit":
                S.rl = {"limit": body.get("limit", 2400), "remaining": body.get("remaining", 2400),
                        "reset": int(time.time()) + int(body.get("reset_in", 3600))}
                return self.send(200, {})
            if p == "issue_delay":
                S.issue_delay = float(body["seconds"])
                return self.send(200, {})
            if p == "certificate_state":
                c = S.certs[int(body["id"])]
                if body["state"] == "issued":
                    c["state"] = "requesting"
                    threading.Thread(target=finish_issue, args=(c["id"],), daemon=True).start()
                else:
                    c["state"] = body["state"]
                return self.send(200, cert_view(c))
            if p == "certificates":
                return self.send(200, [cert_view(c) for c in S.certs.values()])
            if p == "seed_certificates":
                made = []
                for i in range(int(body.get("count", 1))):
                    c = new_cert(body["domain"], body.get("name", f"seed{i}"), body.get("alternate_names", []),
                                 body.get("auto_renew", False), "ECDSA", state=body.get("state", "cancelled"))
                    made.append(c["id"])
                return self.send(200, {"ids": made})
            if p == "renew":
                old = S.certs[int(body["id"])]
                new = new_cert(old["domain"], old["name"], old["alternate_names"], old["auto_renew"], old["algorithm"])
                start_issue(new)
                return self.send(200, {"id": new["id"]})
            if p == "webhook_replay":
                mode = body.get("mode", "duplicate")
                if not S.deliveries:
                    return self.send(409, {"message": "nothing delivered yet"})
                last = S.deliveries[-1]
                payloads = {"duplicate": [last, last], "out_of_order": list(reversed(S.deliveries[-3:])),
                            "unknown_event": [dict(last, name="sim.unknown_event", request_identifier=str(uuid.uuid4()))]}[mode]
                for w in S.webhooks:
                    for pl in payloads:
                        threading.Thread(target=post_webhook, args=(w["url"], pl), daemon=True).start()
                return self.send(200, {"sent": len(payloads) * len(S.webhooks)})
            m = re.fullmatch(r"zone/([^/]+)/records", p)
            if m:
                return self.send(200, S.records.get(m.group(1), []))
            if p == "zones":
                return self.send(200, sorted(S.domains))
        return self.send(404, {"message": "unknown control"})


def main():
    global S
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--token", default="dnsimple-test-token")
    ap.add_argument("--account", default="1010")
    ap.add_argument("--domain", action="append", default=[])
    ap.add_argument("--issue-delay", type=float, default=0.0)
    a = ap.parse_args()
    if not a.domain:
        a.domain = ["pizza.company"]
    S = State(a)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.handle_error = lambda *args: None
    print(f"READY http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
