"""Self-test of the DigiCert CertCentral simulator.

Run: /usr/bin/python3 -m pytest -q tests/fakes/digicert/test_sim.py

Starts the simulator on port 0 with a stand-in for the DNSimple simulator's
/_sim/zone endpoints and a loopback webroot server (both http.server, here).
"""
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reqtoken  # noqa: E402

API_KEY = "test-devkey-0123"
VIEW_KEY = "view-only-devkey"
AUTH_KEY = "SimAuthKey0123456789abcdefghijkl"
OPENSSL = "openssl"


# ---------- stand-ins: the DNSimple simulator's zone store and a webroot server ----------

class FakeDNS:
    """GET /_sim/zones and /_sim/zone/<zone>/records, as the DNSimple simulator answers them."""

    def __init__(self, zones, with_zones_endpoint=True):
        self.zones = {z: [] for z in zones}
        self.with_zones_endpoint = with_zones_endpoint
        self.hits = 0
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                fake.hits += 1
                m = re.fullmatch(r"/_sim/zone/([^/]+)/records", self.path.split("?")[0])
                if self.path == "/_sim/zones" and fake.with_zones_endpoint:
                    body, status = sorted(fake.zones), 200
                elif m and m.group(1) in fake.zones:
                    body, status = fake.zones[m.group(1)], 200
                else:
                    body, status = {"message": "not found"}, 404
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def add(self, zone, name, rtype, content):
        rid = sum(len(v) for v in self.zones.values()) + 1
        self.zones[zone].append({"id": rid, "zone_id": zone, "parent_id": None, "name": name, "type": rtype,
                                 "content": content, "ttl": 3600, "priority": None, "system_record": False,
                                 "regions": ["global"]})

    def txt(self, zone, name, value, quote=True):
        self.add(zone, name, "TXT", f'"{value}"' if quote else value)

    def clear(self):
        for z in self.zones:
            self.zones[z] = []

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class Webroot:
    """Serves ROOT/<host>/<path> for the Host header: one loopback port standing in for many sites."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="webroot-")
        root = self.root

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                p = os.path.join(root, host, self.path.lstrip("/"))
                if os.path.isfile(p):
                    data, status = open(p, "rb").read(), 200
                else:
                    data, status = b"not found", 404
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def put(self, host, text):
        d = os.path.join(self.root, host, ".well-known", "pki-validation")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "fileauth.txt"), "w") as f:
            f.write(text)

    def clear(self):
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root, exist_ok=True)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---------- the simulator process ----------

def start_sim(state_dir, *extra):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--state-dir", state_dir,
                          "--api-key", API_KEY, *extra], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("READY http://127.0.0.1:"), line
    return p, line.split()[1]


class Client:
    def __init__(self, url):
        self.url = url
        self.host, self.port = url[len("http://"):].split(":")

    def call(self, method, path, body=None, key=API_KEY, headers=None, raw=None, timeout=10):
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=timeout)
        h = {"User-Agent": "certsync-test"}
        if key is not None:
            h["X-DC-DEVKEY"] = key
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None or method in ("POST", "PUT"):
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        full = path if path.startswith("/_sim/") else "/services/v2" + path
        conn.request(method, full, body=data if data is not None else (b"" if method in ("POST", "PUT") else None),
                     headers=h)
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        ctype = r.getheader("Content-Type") or ""
        out = payload
        if "json" in ctype and payload:
            try:
                out = json.loads(payload)
            except ValueError:
                pass
        return r.status, out, r

    def sim(self, method, path, body=None):
        status, out, _ = self.call(method, "/_sim/" + path, body, key=None)
        assert status == 200, (path, status, out)
        return out


@pytest.fixture(scope="module")
def env():
    tmp = tempfile.mkdtemp(prefix="dcsim-")
    dns = FakeDNS(["dns.test", "other.test"])
    web = Webroot()
    p, url = start_sim(os.path.join(tmp, "state"), "--dns-url", dns.url, "--readonly-api-key", VIEW_KEY,
                       "--http-port-map", f"web.test=127.0.0.1:{web.port}",
                       "--http-port-map", f"www.web.test=127.0.0.1:{web.port}")
    e = type("Env", (), {})()
    e.dns, e.web, e.c, e.tmp, e.url = dns, web, Client(url), tmp, url
    yield e
    p.terminate()
    p.wait(5)
    dns.close()
    web.close()
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(web.root, ignore_errors=True)
    for kp in _KEYS.values():
        shutil.rmtree(os.path.dirname(kp), ignore_errors=True)


@pytest.fixture
def sim(env):
    env.c.sim("POST", "reset")
    env.c.sim("POST", "authkey", {"value": AUTH_KEY})
    env.dns.clear()
    env.web.clear()
    return env


_KEYS = {}


def csr_for(cn, sans=(), kind="rsa"):
    """A fresh CSR (PEM, LF, one trailing newline) for a cached key; returns (csr, key path)."""
    if kind not in _KEYS:
        d = tempfile.mkdtemp(prefix="dcsim-key-")
        kp = os.path.join(d, "key.pem")
        args = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt",
                                                                 "ec_paramgen_curve:prime256v1"]
        subprocess.run([OPENSSL, "req", "-new", *args, "-nodes", "-subj", "/CN=x", "-keyout", kp, "-out",
                        os.path.join(d, "x.csr")], check=True, capture_output=True)
        _KEYS[kind] = kp
    kp = _KEYS[kind]
    args = [OPENSSL, "req", "-new", "-key", kp, "-subj", f"/CN={cn}"]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return out, kp


def ts_now(offset=-60):
    return reqtoken.timestamp(time.time() + offset)


def order_body(cn, csr, dns_names=(), method="dns-txt-token", **extra):
    b = {"certificate": {"common_name": cn, "dns_names": list(dns_names), "csr": csr, "signature_hash": "sha256",
                         "server_platform": {"id": -1}},
         "order_validity": {"years": 1}, "dcv_method": method, "use_auth_key": True, "skip_approval": True,
         "payment_method": "balance"}
    b.update(extra)
    return b


def verify_chain(env, chain_pems, key_path):
    """openssl verify of the leaf against the simulator's root + intermediate; the leaf's key is the CSR's."""
    ca = env.c.sim("GET", "ca")
    d = tempfile.mkdtemp(prefix="chain-", dir=env.tmp)
    leaf, inter = chain_pems[0], "".join(chain_pems[1:2])
    for name, text in (("leaf.pem", leaf), ("inter.pem", inter), ("root.pem", ca["root"])):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    r = subprocess.run([OPENSSL, "verify", "-CAfile", "root.pem", "-untrusted", "inter.pem", "leaf.pem"], cwd=d,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "leaf.pem: OK" in r.stdout, r.stdout + r.stderr
    pub_leaf = subprocess.run([OPENSSL, "x509", "-noout", "-pubkey", "-in", os.path.join(d, "leaf.pem")],
                              capture_output=True, text=True, check=True).stdout
    pub_key = subprocess.run([OPENSSL, "pkey", "-pubout", "-in", key_path], capture_output=True, text=True,
                             check=True).stdout
    assert pub_leaf == pub_key
    return subprocess.run([OPENSSL, "x509", "-noout", "-ext", "subjectAltName", "-subject", "-in",
                           os.path.join(d, "leaf.pem")], capture_output=True, text=True, check=True).stdout


# ---------- §3.4 token vectors and the verifier ----------

KEY34 = "EXAMPLE-AUTHKEY-0123456789abcdef"
TS34 = "20240115093000"


def test_token_vectors_of_section_3_4():
    v1 = reqtoken.make(KEY34, TS34, "MIIBexampleCSR2")
    assert reqtoken.hmac_hex(KEY34, TS34, "MIIBexampleCSR2") == \
        "008605dc8b15d3b85c12be7e1f0c671ba120ff2f865a282713807e77d88fbb69"
    assert int("008605dc8b15d3b85c12be7e1f0c671ba120ff2f865a282713807e77d88fbb69", 16) == \
        236797961247691888150925871855664854678269728660914709486194582701151861609
    assert v1 == "2024011509300000gws7ia1e31c5nl07bmxi4f4fk6en28a909rx8x8f4txz3vxl"
    assert reqtoken.hmac_hex(KEY34, TS34, "MIIBexampleCSRbase64bodyNoHeaders") == \
        "e135a7abb27c70cf0f5a57a3b24112349f4922ccc0dc2517d985a3ce24213263"
    assert reqtoken.make(KEY34, TS34, "MIIBexampleCSRbase64bodyNoHeaders") == \
        "202401150930005m2l3538g1vt4g40i7em7in9adjpg760lzeul3yl3tjz4oyk4j"
    pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBexample\n-----END CERTIFICATE REQUEST-----\n"
    assert reqtoken.hmac_hex(KEY34, TS34, pem) == "60c6e6836a10995fc2fe3da184562c3204d2dd3242cd2c7c90a5025ca842718b"
    assert reqtoken.make(KEY34, TS34, pem) == "202401150930002eu14qqrq8kwji8mdss4ib8hnwq7jrw1q74qc987l4yz3xz897"
    assert reqtoken.base36(b"\x00" * 32) == "0" * 50 and len(reqtoken.base36(b"\xff" * 32)) == 50


def test_verifier_window_variants_and_surrounding_text():
    t0 = reqtoken.parse_timestamp(TS34)
    tok = reqtoken.make(KEY34, TS34, "MIIBexampleCSR2")
    ok = reqtoken.verify(f"v=foo {tok} trailing", [KEY34], "MIIBexampleCSR2", t0 + 3600)
    assert ok.ok and ok.variant == "exact" and ok.token == tok
    assert reqtoken.verify(tok, [KEY34], "MIIBexampleCSR2", t0 + 30 * 86400).ok
    assert reqtoken.verify(tok, [KEY34], "MIIBexampleCSR2", t0 + 30 * 86400 + 1).reason == "expired"
    assert reqtoken.verify(tok, [KEY34], "MIIBexampleCSR2", t0 - 30).ok  # inside the skew
    assert reqtoken.verify(tok, [KEY34], "MIIBexampleCSR2", t0 - 3600).reason == "future"
    assert reqtoken.verify(tok, ["other"], "MIIBexampleCSR2", t0).reason == "hmac_mismatch"
    assert reqtoken.verify("nothing here", [KEY34], "x", t0).reason == "no_token"
    # §3.3 tolerance: a token over the bare base64 body matches a PEM as received, unless strict.
    pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\nexample\n-----END CERTIFICATE REQUEST-----\n"
    tb = reqtoken.make(KEY34, TS34, "MIIBexample")
    assert reqtoken.verify(tb, [KEY34], pem, t0).variant == "base64"
    assert reqtoken.verify(reqtoken.make(KEY34, TS34, pem.rstrip()), [KEY34], pem, t0).variant == "rstrip"
    assert not reqtoken.verify(tb, [KEY34], pem, t0, tolerant=False).ok


# ---------- auth and AuthKeys (§1, §2) ----------

def test_missing_and_wrong_api_key(sim):
    st, body, r = sim.c.call("GET", "/account/auth-keys", key=None)
    assert st == 401 and body["errors"][0]["code"] == "missing_api_key"
    st, body, _ = sim.c.call("GET", "/account/auth-keys", key="nope")
    assert st == 401 and body["errors"][0]["code"] == "invalid_api_key"
    st, body, _ = sim.c.call("POST", "/account/auth-key", key=VIEW_KEY)
    assert st == 403 and body == {"errors": [{"code": "access_denied|missing_permission",
                                              "message": body["errors"][0]["message"]}]}
    st, body, _ = sim.c.call("GET", "/no/such/route")
    assert st == 404 and body["errors"][0]["code"] == "not_found|route"


def test_user_me_names_the_keys_user_and_needs_a_key(sim):
    st, body, _ = sim.c.call("GET", "/user/me")
    assert st == 200 and body["id"] == 125039 and body["account_id"] == 5137495
    assert body["container"]["id"] == 987654 and body["access_roles"][0]["name"] == "Administrator"
    st, body, _ = sim.c.call("GET", "/user/me", key=VIEW_KEY)
    assert st == 200 and body["access_roles"][0]["name"] == "View only"
    st, body, _ = sim.c.call("GET", "/user/me", key="nope")
    assert st == 401 and body["errors"][0]["code"] == "invalid_api_key"


def test_authkey_endpoints(sim):
    sim.c.sim("DELETE", "authkey")
    st, body, _ = sim.c.call("GET", "/account/auth-key")
    assert st == 404
    st, k1, _ = sim.c.call("POST", "/account/auth-key")
    assert st == 200 and set(k1) == {"auth_key_id", "auth_key"} and len(k1["auth_key"]) >= 20
    st, body, _ = sim.c.call("POST", "/account/auth-key")
    assert st == 400 and body["errors"][0]["code"] == "auth_key_exists_for_account"
    st, body, _ = sim.c.call("GET", "/account/auth-key")
    assert st == 200 and body == k1
    st, k2, _ = sim.c.call("POST", "/account/auth-key/7")
    assert st == 200 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", k2["expiration_datetime"])
    st, body, _ = sim.c.call("GET", "/account/auth-key")
    assert st == 400
    st, body, _ = sim.c.call("GET", "/account/auth-keys")
    assert st == 200 and body["auth_keys"] == [k1, k2]
    st, body, _ = sim.c.call("GET", f"/account/auth-key/{k2['auth_key_id']}")
    assert st == 200 and body == k2
    st, body, _ = sim.c.call("POST", "/account/auth-key/0")
    assert st == 400
    st, body, _ = sim.c.call("DELETE", f"/account/auth-key/{k2['auth_key_id']}")
    assert st == 204 and body == b""
    st, body, _ = sim.c.call("DELETE", "/account/auth-key")
    assert st == 204
    st, body, _ = sim.c.call("GET", "/account/auth-keys")
    assert body == {"auth_keys": []}
    assert sim.c.sim("GET", "authkey")["auth_key"] is None


# ---------- immediate issuance (§3, §4, §5.3 a) ----------

def test_dns_token_at_apex_issues_at_once_with_a_valid_chain(sim):
    csr, key = csr_for("dns.test", ["dns.test", "www.dns.test"])
    tok = reqtoken.make(AUTH_KEY, ts_now(), csr)
    sim.dns.txt("dns.test", "", "unrelated=1")
    sim.dns.txt("dns.test", "", tok)  # '@' (quoted, as DNSimple returns TXT content)
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, ["www.dns.test"]))
    assert st == 201, body
    assert set(body) == {"id", "certificate_id", "certificate_chain"}
    chain = body["certificate_chain"]
    assert [c["subject_common_name"] for c in chain] == ["dns.test", "Simulated GeoTrust TLS RSA CA G1",
                                                         "Simulated DigiCert Global Root G2"]
    out = verify_chain(sim, [c["pem"] for c in chain], key)
    assert "DNS:dns.test, DNS:www.dns.test" in out and "CN = dns.test" in out
    info = sim.c.call("GET", f"/order/certificate/{body['id']}")[1]
    assert info["status"] == "issued" and info["certificate"]["id"] == body["certificate_id"]
    assert sim.c.sim("GET", "counters")["token_variant_exact"] >= 1


def test_dns_token_at_dnsauth_and_wildcard(sim):
    csr, key = csr_for("app.dns.test", kind="ecc")
    sim.dns.txt("dns.test", "_dnsauth.app", reqtoken.make(AUTH_KEY, ts_now(), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_rapidssl", order_body("app.dns.test", csr))
    assert st == 201 and "certificate_chain" in body, body
    assert body["certificate_chain"][1]["subject_common_name"] == "Simulated RapidSSL TLS RSA CA G1"
    verify_chain(sim, [c["pem"] for c in body["certificate_chain"]], key)
    # *.x is validated at x: a token at _dnsauth.<apex>.
    wcsr, wkey = csr_for("*.dns.test", ["*.dns.test", "dns.test"])
    sim.dns.txt("dns.test", "_dnsauth", reqtoken.make(AUTH_KEY, ts_now(), wcsr))
    st, body, _ = sim.c.call("POST", "/order/certificate/wildcard_dv_geotrust",
                             order_body("*.dns.test", wcsr, ["dns.test"]))
    assert st == 201 and "certificate_chain" in body, body
    assert "DNS:*.dns.test, DNS:dns.test" in verify_chain(sim, [c["pem"] for c in body["certificate_chain"]], wkey)


def test_http_token_issues_at_once(sim):
    csr, key = csr_for("web.test")
    tok = reqtoken.make(AUTH_KEY, ts_now(), csr)
    sim.web.put("web.test", tok + "\n")
    sim.web.put("www.web.test", tok + "\n")
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("web.test", csr, ["www.web.test"], method="http-token"))
    assert st == 201 and "certificate_chain" in body, body
    verify_chain(sim, [c["pem"] for c in body["certificate_chain"]], key)
    # file DCV covers only the exact FQDN: no wildcard
    st, body, _ = sim.c.call("POST", "/order/certificate/wildcard_dv_geotrust",
                             order_body("*.web.test", csr, method="http-token"))
    assert st == 400 and body["errors"][0]["code"] == "invalid_dcv_method"


def test_http_token_missing_on_one_host_is_pending(sim):
    csr, _ = csr_for("web.test")
    sim.web.put("web.test", reqtoken.make(AUTH_KEY, ts_now(), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("web.test", csr, ["www.web.test"], method="http-token"))
    assert st == 201 and "certificate_chain" not in body
    st, err, _ = sim.c.call("PUT", f"/order/certificate/{body['id']}/check-dcv")
    assert st == 400 and err["errors"][0]["code"] == "file_random_value_not_found"


# ---------- pending orders and follow-up (§5.3 b, §6) ----------

def test_wrong_token_gives_pending_then_check_dcv_issues(sim):
    csr, key = csr_for("dns.test", ["dns.test"])
    sim.dns.txt("dns.test", "", reqtoken.make("not-the-authkey", ts_now(), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, alternative_order_id="cs-wrong-1"))
    assert st == 201 and "certificate_chain" not in body
    assert set(body) == {"id", "certificate_id", "dcv_random_value"}
    oid, cid = body["id"], body["certificate_id"]
    assert sim.c.sim("GET", "counters")["token_hmac_mismatch"] >= 1
    info = sim.c.call("GET", f"/order/certificate/{oid}")[1]
    assert info["status"] == "pending" and info["alternative_order_id"] == "cs-wrong-1"
    st, err, _ = sim.c.call("GET", f"/certificate/{cid}/download/format/pem_all")
    assert st == 400 and err["errors"][0]["code"] == "cert_unavailable_processing"
    st, err, _ = sim.c.call("PUT", f"/order/certificate/{oid}/check-dcv")
    assert st == 400 and err == {"errors": [{"code": "invalid_dns_txt", "message": "Could not find a valid TXT "
                                             "record for one or more domains."}]}
    sim.dns.clear()
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, ts_now(), csr))
    st, body, _ = sim.c.call("PUT", f"/order/certificate/{oid}/check-dcv")
    assert st == 200 and body == {"order_status": "issued", "certificate_id": cid, "dcv_status": "valid",
                                  "dns_name_validations": [{"dns_name": "dns.test", "status": "approved"}]}
    info = sim.c.call("GET", f"/order/certificate/{oid}")[1]
    c = info["certificate"]
    assert info["status"] == "issued" and c["thumbprint"] and c["serial_number"] and c["valid_till"]
    assert sim.c.call("GET", f"/order/certificate/{c['serial_number']}")[1]["id"] == oid
    # download formats (§6.4)
    n = {}
    for fmt in ("pem_all", "pem_noroot", "pem_nointermediate"):
        st, data, r = sim.c.call("GET", f"/certificate/{cid}/download/format/{fmt}")
        assert st == 200 and r.getheader("Content-Type") == "application/x-pem-file"
        n[fmt] = data.decode().count("-----BEGIN CERTIFICATE-----")
    assert n == {"pem_all": 3, "pem_noroot": 2, "pem_nointermediate": 1}
    st, data, _ = sim.c.call("GET", f"/certificate/download/order/{oid}/format/pem_noroot")
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", data.decode(), re.S)
    verify_chain(sim, pems, key)
    st, data, r = sim.c.call("GET", f"/certificate/{cid}/download/format/p7b")
    assert st == 200 and r.getheader("Content-Type") == "application/x-pkcs7-certificates"
    p7 = subprocess.run([OPENSSL, "pkcs7", "-print_certs", "-noout"], input=data, capture_output=True, check=True)
    assert p7.stdout.count(b"subject=") == 3
    st, data, r = sim.c.call("GET", f"/certificate/{cid}/download/format/default")
    assert r.getheader("Content-Type") == "application/zip"
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == ["DigiCertCA.crt", "TrustedRoot.crt",
                                                                     "dns_test.crt"]
    st, body, _ = sim.c.call("GET", f"/certificate/{cid}/chain")
    assert st == 200 and [i["subject_common_name"] for i in body["intermediates"]][0] == \
        "Simulated GeoTrust TLS RSA CA G1"
    st, err, _ = sim.c.call("GET", f"/certificate/{cid}/download/format/nope")
    assert st == 404


def test_token_window_expired_future_and_rotation(sim):
    csr, _ = csr_for("dns.test")
    old = reqtoken.timestamp(time.time() - 31 * 86400)
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, old, csr))
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, reqtoken.timestamp(time.time() + 3600), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert st == 201 and "certificate_chain" not in body
    cnt = sim.c.sim("GET", "counters")
    assert cnt["token_expired"] >= 1 and cnt["token_future"] >= 1
    # a token made with the AuthKey before rotation no longer verifies (§2: rotation voids tokens)
    sim.dns.clear()
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, ts_now(), csr))
    sim.c.sim("POST", "authkey", {"value": "rotated-key-value-000000000000000"})
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" not in body
    tok = sim.c.sim("POST", "token", {"csr": csr})["token"]
    sim.dns.txt("dns.test", "", tok)
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" in body


def test_csr_bytes_as_received_and_strict_mode(sim):
    csr, _ = csr_for("dns.test")
    bare = re.sub(r"-----[A-Z ]+-----|\s", "", csr)
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, ts_now(), bare))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" in body
    assert sim.c.sim("GET", "counters")["token_variant_base64"] == 1
    sim.c.sim("POST", "config", {"tolerant_csr_hash": False})
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" not in body
    # a CSR sent as bare base64 is accepted, and hashed as sent
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", bare))
    assert st == 201 and "certificate_chain" in body


def test_use_auth_key_false_and_random_value(sim):
    csr, _ = csr_for("dns.test")
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, ts_now(), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, use_auth_key=False))
    assert st == 201 and "certificate_chain" not in body
    oid, rv = body["id"], body["dcv_random_value"]
    why = sim.c.sim("GET", f"orders/{oid}")["immediate"]["why_not"]
    assert "use_auth_key is not true" in why
    st, _, _ = sim.c.call("PUT", f"/order/certificate/{oid}/check-dcv")
    assert st == 400
    sim.dns.txt("dns.test", "_dnsauth", rv)
    st, body, _ = sim.c.call("PUT", f"/order/certificate/{oid}/check-dcv")
    assert st == 200 and body["order_status"] == "issued"
    st, body, _ = sim.c.call("PUT", f"/order/certificate/{oid}/dcv-random-value")
    assert st == 200 and body["dcv_random_value"] == rv


def test_immediate_off_then_check_dcv_and_control_status(sim):
    sim.c.sim("POST", "immediate", {"enabled": False})
    csr, _ = csr_for("dns.test")
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, ts_now(), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" not in body
    st, res, _ = sim.c.call("PUT", f"/order/certificate/{body['id']}/check-dcv")
    assert st == 200 and res["order_status"] == "issued"
    st, b2, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert sim.c.sim("POST", "order_status", {"id": b2["id"], "status": "rejected"})["status"] == "rejected"
    assert sim.c.call("GET", f"/order/certificate/{b2['id']}")[1]["status"] == "rejected"
    st, err, _ = sim.c.call("PUT", f"/order/certificate/{b2['id']}/check-dcv")
    assert st == 400
    st, b3, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert sim.c.sim("POST", "order_status", {"id": b3["id"], "status": "issued"})["certificate"]["pem"]
    st, data, _ = sim.c.call("GET", f"/certificate/{b3['certificate_id']}/download/format/pem_all")
    assert st == 200
    # cancel (§7.4): note required, 204
    st, b4, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    st, err, _ = sim.c.call("PUT", f"/order/certificate/{b4['id']}/status", {"status": "canceled"})
    assert st == 400
    st, body, _ = sim.c.call("PUT", f"/order/certificate/{b4['id']}/status", {"status": "canceled", "note": "x"})
    assert st == 204 and sim.c.call("GET", f"/order/certificate/{b4['id']}")[1]["status"] == "canceled"


def test_auth_key_id_selector(sim):
    st, ttl, _ = sim.c.call("POST", "/account/auth-key/3")
    csr, _ = csr_for("dns.test")
    sim.dns.txt("dns.test", "", reqtoken.make(ttl["auth_key"], ts_now(), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" not in body  # the permanent key is used when none is named
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, auth_key_id=ttl["auth_key_id"]))
    assert "certificate_chain" in body
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, auth_key_id="missing"))
    assert st == 400 and body["errors"][0]["code"] == "invalid_auth_key"


def test_cname_method_and_automatic_polling(sim):
    csr, _ = csr_for("dns.test")
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, method="dns-cname-token", use_auth_key=False))
    assert st == 201 and "certificate_chain" not in body
    sim.dns.add("dns.test", "_dnsauth", "CNAME", body["dcv_random_value"] + ".dcv.digicert.com")
    sim.c.sim("POST", "config", {"auto_poll_seconds": 0.2})  # DigiCert's own DCV polling (§4.4)
    deadline = time.time() + 5
    while time.time() < deadline and sim.c.call("GET", f"/order/certificate/{body['id']}")[1]["status"] != "issued":
        time.sleep(0.1)
    assert sim.c.call("GET", f"/order/certificate/{body['id']}")[1]["status"] == "issued"
    assert sim.c.sim("GET", f"orders/{body['id']}")["dcv_how"]["dns.test"] == "cname:_dnsauth.dns.test"


def test_approval_reuse_revoke_and_clock(sim):
    csr, _ = csr_for("dns.test")
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, ts_now(), csr))
    sim.c.sim("POST", "config", {"require_approval": True})
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, skip_approval=False))
    assert "certificate_chain" not in body and body["requests"][0]["status"] == "pending"
    assert sim.c.call("GET", f"/order/certificate/{body['id']}")[1]["status"] == "needs_approval"
    st, res, _ = sim.c.call("PUT", f"/order/certificate/{body['id']}/check-dcv")
    assert st == 200 and res["order_status"] == "needs_approval" and res["dcv_status"] == "valid"
    st, _, _ = sim.c.call("PUT", f"/request/{body['requests'][0]['id']}/status", {"status": "approved"})
    assert st == 204 and sim.c.call("GET", f"/order/certificate/{body['id']}")[1]["status"] == "issued"
    # revoke: a pending request without skip_approval, 204 with it
    st, req, _ = sim.c.call("PUT", f"/order/certificate/{body['id']}/revoke", {"comments": "test"})
    assert st == 201 and req["type"] == "revoke" and req["status"] == "pending"
    st, _, _ = sim.c.call("PUT", f"/order/certificate/{body['id']}/revoke", {"skip_approval": True})
    assert st == 204 and sim.c.call("GET", f"/order/certificate/{body['id']}")[1]["status"] == "revoked"
    # domain validation reuse: with it on, a name validated earlier needs no token
    sim.c.sim("POST", "config", {"require_approval": False, "dcv_reuse_days": 30})
    sim.dns.clear()
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" in body
    # the simulator's clock: 31 days on, a token stamped now has expired
    sim.c.sim("POST", "config", {"dcv_reuse_days": 0, "clock_offset": 31 * 86400})
    sim.dns.txt("dns.test", "", reqtoken.make(AUTH_KEY, ts_now(), csr))
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert "certificate_chain" not in body and sim.c.sim("GET", "counters")["token_expired"] == 1


# ---------- list, renewals ----------

def test_list_orders_by_alternative_order_id(sim):
    csr, _ = csr_for("dns.test")
    ids = []
    for alt in ("alt-a", None, "alt-b"):
        extra = {"alternative_order_id": alt} if alt else {}
        ids.append(sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr, **extra))[1]["id"])
    st, body, _ = sim.c.call("GET", "/order/certificate?filters[alternative_order_id]=alt-b")
    assert st == 200 and [o["id"] for o in body["orders"]] == [ids[2]]
    o = body["orders"][0]
    assert o["alternative_order_id"] == "alt-b" and o["status"] == "pending" and o["product"]["name_id"] == \
        "ssl_dv_geotrust" and o["organization"] == [] and o["certificate"]["common_name"] == "dns.test"
    assert body["page"] == {"total": 1, "limit": 1000, "offset": 0}
    st, body, _ = sim.c.call("GET", "/order/certificate?sort=-id&limit=2&offset=0")
    assert [o["id"] for o in body["orders"]] == [ids[2], ids[1]] and body["page"]["total"] == 3
    st, body, _ = sim.c.call("GET", "/order/certificate?filters[status]=issued")
    assert body["orders"] == []
    st, data, r = sim.c.call("GET", "/order/certificate", headers={"Accept": "text/csv"})
    assert r.getheader("Content-Type") == "text/csv" and data.decode().count("\n") == 4
    # renewal_of_order_id (§7.6)
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust",
                             order_body("dns.test", csr, renewal_of_order_id=ids[0]))
    assert st == 201
    old = sim.c.call("GET", f"/order/certificate/{ids[0]}")[1]
    new = sim.c.call("GET", f"/order/certificate/{body['id']}")[1]
    assert old["is_renewed"] and old["renewed_order_id"] == body["id"] and new["is_renewal"]


# ---------- body validation ----------

def codes(body):
    return [e["code"] for e in body["errors"]]


def test_body_validation(sim):
    csr, _ = csr_for("dns.test")
    post = lambda prod, b, **kw: sim.c.call("POST", f"/order/certificate/{prod}", b, **kw)  # noqa: E731
    st, body, _ = post("ssl_dv_geotrust", None, raw=b"{not json")
    assert st == 400 and codes(body) == ["bad_request_format"]
    st, body, _ = post("ssl_plus", order_body("dns.test", csr))
    assert st == 404 and codes(body) == ["not_found|product"]
    st, body, _ = post("ssl_dv_geotrust", {"order_validity": {"years": 1}})
    assert st == 400 and codes(body) == ["missing_field|certificate"]
    b = order_body("dns.test", csr, dcv_method="carrier-pigeon")
    del b["certificate"]["csr"]
    b["use_auth_key"] = "yes"
    st, body, _ = post("ssl_dv_geotrust", b)
    assert st == 400 and set(codes(body)) == {"missing_field|certificate.csr", "invalid_dcv_method",
                                              "invalid_field|use_auth_key"}
    b = order_body("dns.test", csr)
    del b["order_validity"]
    assert codes(post("ssl_dv_geotrust", b)[1]) == ["missing_field|order_validity"]
    b["validity_years"] = 1  # the legacy field is still accepted
    assert post("ssl_dv_geotrust", b)[0] == 201
    st, body, _ = post("ssl_dv_geotrust", order_body("dns.test", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                                                 "-----END CERTIFICATE REQUEST-----\n"))
    assert st == 400 and codes(body) == ["csr_invalid_cannot_parse"]
    assert codes(post("ssl_dv_geotrust", order_body("dns.test", csr, ["api.dns.test"]))[1]) == ["invalid_dns_names"]
    assert codes(post("ssl_dv_geotrust", order_body("bad_name..test", csr))[1]) == ["invalid_common_name"]
    b = order_body("dns.test", csr)
    b["certificate"]["cert_validity"] = {"days": 400}
    b["order_validity"] = {"days": 200}
    assert codes(post("ssl_dv_geotrust", b)[1]) == ["cert_validity_exceeds_order_validity"]
    assert codes(post("ssl_dv_geotrust", order_body("dns.test", csr, renewal_of_order_id=1))[1]) == \
        ["invalid_renewal_of_order_id"]
    st, body, _ = post("ssl_dv_geotrust", order_body("dns.test", csr), headers={"Content-Type": "text/plain"})
    assert codes(body) == ["bad_request_format"]
    # names in the CSR are not read (§5.2): a mismatch is recorded, not refused, unless strict
    other, _ = csr_for("other.test")
    st, body, _ = post("ssl_dv_geotrust", order_body("dns.test", other))
    assert st == 201 and sim.c.sim("GET", "counters")["csr_names_mismatch"] == 1
    sim.c.sim("POST", "config", {"strict_csr_names": True})
    assert codes(post("ssl_dv_geotrust", order_body("dns.test", other))[1]) == ["csr_names_mismatch"]


# ---------- faults, rate limits, plumbing ----------

def test_faults(sim):
    csr, _ = csr_for("dns.test")
    oid = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))[1]["id"]
    path = f"/order/certificate/{oid}"
    sim.c.sim("POST", "fault", {"endpoint": "order_info", "mode": "500_html", "count": 1})
    st, body, r = sim.c.call("GET", path)
    assert st == 500 and r.getheader("Content-Type").startswith("text/html")
    assert sim.c.call("GET", path)[0] == 200
    sim.c.sim("POST", "fault", {"endpoint": "order_info", "mode": "502_html", "count": 1})
    assert sim.c.call("GET", path)[0] == 502
    sim.c.sim("POST", "fault", {"endpoint": "order_info", "mode": "truncated_json", "count": 1})
    st, body, _ = sim.c.call("GET", path)
    assert st == 200 and isinstance(body, bytes)
    with pytest.raises(ValueError):
        json.loads(body)
    sim.c.sim("POST", "fault", {"endpoint": "*", "mode": "empty_body", "count": 1})
    st, body, r = sim.c.call("GET", path)
    assert st == 200 and body == b"" and r.getheader("Content-Length") == "0"
    sim.c.sim("POST", "fault", {"endpoint": "order_info", "mode": "extra_fields", "count": 1})
    st, body, _ = sim.c.call("GET", path)
    assert body["sim_unknown_field"] and body["certificate"]["zz_future_attribute"]
    real = sim.c.call("GET", "/account/auth-keys")[1]["auth_keys"][0]["auth_key"]
    sim.c.sim("POST", "fault", {"endpoint": "auth_keys_list", "mode": "stale_auth_key", "count": 1})
    stale = sim.c.call("GET", "/account/auth-keys")[1]["auth_keys"][0]["auth_key"]
    assert stale != real and sim.c.call("GET", "/account/auth-keys")[1]["auth_keys"][0]["auth_key"] == real
    sim.c.sim("POST", "fault", {"endpoint": "order_create", "mode": "429", "count": 1})
    st, body, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert st == 429 and codes(body) == ["request_limit_exceeded"]
    sim.c.sim("POST", "fault", {"endpoint": "order_info", "mode": "timeout", "count": 1, "seconds": 1.5})
    t = time.time()
    with pytest.raises((TimeoutError, OSError)):
        sim.c.call("GET", path, timeout=0.5)
    assert time.time() - t < 1.4
    time.sleep(1.2)
    sim.c.sim("DELETE", "fault")
    assert sim.c.sim("GET", "fault")["faults"] == []
    cnt = sim.c.sim("GET", "counters")
    assert cnt["order_info"] == 7 and cnt["_faults"] == 8
    log = sim.c.sim("GET", "log?op=order_info")
    assert [e["fault"] for e in log][:2] == ["500_html", None] and log[0]["headers"]["X-DC-DEVKEY"] == "<redacted>"


def test_fault_500_after_and_delay(sim):
    csr, _ = csr_for("dns.test")
    sim.c.sim("POST", "fault", {"endpoint": "order_create", "mode": "500_after", "count": 1})
    st, _, _ = sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr))
    assert st == 500 and len(sim.c.sim("GET", "orders")) == 1  # ordered, although the answer said otherwise
    sim.c.sim("POST", "fault", {"endpoint": "order_create", "mode": "delay", "count": 1, "seconds": 1.5})
    t0 = time.time()
    with pytest.raises((TimeoutError, OSError)):
        sim.c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("dns.test", csr), timeout=0.5)
    assert len(sim.c.sim("GET", "orders")) == 1  # still held in front of the provider
    while len(sim.c.sim("GET", "orders")) < 2 and time.time() < t0 + 10:
        time.sleep(0.05)
    assert len(sim.c.sim("GET", "orders")) == 2 and time.time() - t0 >= 1.4  # then it lands


def test_rate_limit_429(sim):
    assert sim.c.sim("GET", "config")["rate_limits"] == [[1000, 180.0], [100, 5.0]]
    sim.c.sim("POST", "config", {"rate_limits": [[5, 60]]})
    got = [sim.c.call("GET", "/account/auth-keys")[0] for _ in range(7)]
    assert got == [200] * 5 + [429, 429]
    st, body, _ = sim.c.call("GET", "/product")
    assert st == 429 and body == {"errors": [{"code": "request_limit_exceeded",
                                              "message": "Service unavailable, please limit request volume"}]}
    sim.c.sim("POST", "ratelimit_reset")
    assert sim.c.call("GET", "/product")[0] == 200


def test_keep_alive_and_content_length(sim):
    conn = http.client.HTTPConnection("127.0.0.1", int(sim.c.port), timeout=5)
    for path in ("/services/v2/account/auth-keys", "/services/v2/product", "/services/v2/order/certificate"):
        conn.request("GET", path, headers={"X-DC-DEVKEY": API_KEY})
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200 and int(r.getheader("Content-Length")) == len(data)
    conn.putrequest("PUT", "/services/v2/order/certificate/1/check-dcv")  # no Content-Length: noted (§1)
    conn.putheader("X-DC-DEVKEY", API_KEY)
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 404 and json.loads(r.read())["errors"][0]["code"] == "not_found|order"
    conn.close()
    assert sim.c.sim("GET", "counters")["_missing_content_length"] == 1


def test_zones_from_flags_when_dns_sim_has_no_zone_list(env, tmp_path):
    dns = FakeDNS(["flags.test"], with_zones_endpoint=False)
    p, url = start_sim(env.tmp + "/state", "--dns-url", dns.url, "--zone", "flags.test", "--auth-key", AUTH_KEY)
    try:
        c = Client(url)
        csr, _ = csr_for("a.flags.test")
        dns.txt("flags.test", "a", reqtoken.make(AUTH_KEY, ts_now(), csr))
        st, body, _ = c.call("POST", "/order/certificate/ssl_dv_geotrust", order_body("a.flags.test", csr))
        assert st == 201 and "certificate_chain" in body, body
    finally:
        p.terminate()
        p.wait(5)
        dns.close()


# ---------------------------------------------------------------- --dns-server: tokens from a real DNS server

class _TinyDns:
    """A UDP DNS server on loopback answering from a {(name, qtype): [rdata bytes]} table; "mangle" answers
    a name with a compression loop."""

    def __init__(self, table, mangle=()):
        import socket
        self.table, self.mangle = table, set(mangle)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import struct
        while True:
            try:
                q, addr = self.sock.recvfrom(512)
            except OSError:
                return
            qid, flags = struct.unpack(">HH", q[:4])
            off, labels = 12, []
            while q[off]:
                labels.append(q[off + 1:off + 1 + q[off]].decode())
                off += 1 + q[off]
            qtype = struct.unpack(">H", q[off + 1:off + 3])[0]
            question = q[12:off + 5]
            name = ".".join(labels).lower()
            answers = self.table.get((name, qtype), [])
            body = b""
            for rdata in answers:
                owner = b"\xc0\x0c"  # a pointer to the question's name
                if name in self.mangle:
                    owner = b"\xc0\x30"  # points past the end: malformed
                body += owner + struct.pack(">HHIH", qtype, 1, 60, len(rdata)) + rdata
            rcode = 0 if any(k[0] == name for k in self.table) else 3
            hdr = struct.pack(">HHHHHH", qid, 0x8400 | rcode, 1, len(answers), 0, 0)
            self.sock.sendto(hdr + question + body, addr)

    def stop(self):
        self.sock.close()


def test_dns_query_reads_txt_and_cname_answers():
    import dcv
    txt = lambda *parts: b"".join(bytes([len(p)]) + p.encode() for p in parts)  # noqa: E731
    srv = _TinyDns({("_dnsauth.a.test", 16): [txt("tok-", "one"), txt("other")],
                    ("_dnsauth.b.test", 5): [b"\x03rv1\x03dcv\x08digicert\x03com\x00"],
                    ("bad.test", 16): [txt("x")]}, mangle=["bad.test"])
    try:
        server = f"127.0.0.1:{srv.port}"
        assert dcv.dns_query(server, "_dnsauth.a.test", "TXT") == ["tok-one", "other"]
        assert dcv.dns_query(server, "_DNSAUTH.A.test.", "TXT") == ["tok-one", "other"]
        assert dcv.dns_query(server, "_dnsauth.b.test", "CNAME") == ["rv1.dcv.digicert.com"]
        assert dcv.dns_query(server, "_dnsauth.c.test", "TXT") == []  # NXDOMAIN
        with pytest.raises(ValueError):
            dcv.dns_query(server, "bad.test", "TXT")
        # a View asks the server as well as the other sources, and notes a failure instead of raising
        notes = []
        view = dcv.DNS(None, ["a.test"], server=server).snapshot(notes)
        assert view.records("_dnsauth.a.test", "TXT") == ["tok-one", "other"]
        assert view.records("bad.test", "TXT") == [] and "bad.test" in notes[-1]
    finally:
        srv.stop()
