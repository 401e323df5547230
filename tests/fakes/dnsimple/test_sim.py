"""Self-test of the DNSimple simulator against ../../../../shared/api/dnsimple.md.

Run: /usr/bin/python3 -m pytest -q tests/fakes/dnsimple/test_sim.py
One simulator process serves the whole module; every test starts from /_sim/reset.
"""
import http.client
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent / "server.py"
TOKEN = "sim-selftest-account-token"
USER_TOKEN = "sim-selftest-user-token"
ACCOUNT = "1010"
DOMAIN = "pizza.company"
CERT_KEYS = {"id", "domain_id", "name", "common_name", "years", "csr", "state", "auto_renew", "alternate_names",
             "authority_identifier", "created_at", "updated_at", "expires_at", "expires_on"}
RECORD_KEYS = {"id", "zone_id", "parent_id", "name", "content", "ttl", "priority", "type", "system_record", "regions",
               "created_at", "updated_at"}


class Reply:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self):
        return json.loads(self.raw) if self.raw else None

    def header(self, name):
        return self.headers.get(name)  # http.client headers: case-insensitive


class Sim:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(SERVER), "--port", "0", "--state-dir", str(state_dir), "--token", TOKEN,
             "--user-token", USER_TOKEN, "--account", ACCOUNT, "--domain", DOMAIN, "--domain", "bingo.pizza",
             "--issue-delay", "0.3"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), line
        self.url = line.split()[1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def request(self, method, path, body=None, token=TOKEN, headers=None, raw=None, timeout=10):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Accept": "application/json", "User-Agent": "sim-selftest/1"}
        if data is not None:
            h["Content-Type"] = "application/json"
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Reply(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.headers, e.read())

    def api(self, method, path, body=None, **kw):
        return self.request(method, f"/v2/{ACCOUNT}/{path}", body, **kw)

    def ctl(self, path, body=None, method=None):
        r = self.request(method or ("POST" if body is not None else "GET"), "/_sim/" + path, body, token=None)
        assert r.status == 200, (path, r.status, r.raw)
        return r.json

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Sim(tmp_path_factory.mktemp("dnsimple-sim"))
    yield s
    s.stop()


@pytest.fixture
def sim(server):
    server.ctl("reset", {})
    server.ctl("config", {"webhook_retry_base": 0.05})
    return server


def wait_for(pred, timeout=10.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met in time")


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, input=input)


def purchase(sim, body=None, domain=DOMAIN):
    r = sim.api("POST", f"domains/{domain}/certificates/letsencrypt", body if body is not None else {})
    assert r.status == 201, r.raw
    return r.json["data"]["certificate_id"]


def issued(sim, cid, domain=DOMAIN):
    def check():
        d = sim.api("GET", f"domains/{domain}/certificates/{cid}").json["data"]
        return d if d["state"] == "issued" else None
    return wait_for(check)


def rate_headers_present(r):
    return all(r.header(h) is not None for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))


# ---------------------------------------------------------------- auth, whoami, envelope

def test_whoami_account_and_user_tokens(sim):
    r = sim.request("GET", "/v2/whoami")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    d = r.json["data"]
    assert d["user"] is None
    assert set(d["account"]) == {"id", "email", "name", "plan_identifier", "created_at", "updated_at"}
    assert d["account"]["id"] == int(ACCOUNT)
    u = sim.request("GET", "/v2/whoami", token=USER_TOKEN).json["data"]
    assert u["account"] is None and u["user"]["id"] == 1
    accts = sim.request("GET", "/v2/accounts").json
    assert accts == {"data": [d["account"]]}  # no pagination key


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_bad_credentials_are_401_with_the_documented_body(sim, token):
    r = sim.api("GET", "domains/pizza.company/certificates", token=token)
    assert r.status == 401 and r.json == {"message": "Authentication failed"}
    assert rate_headers_present(r) and r.header("X-RateLimit-Limit") == "30"  # unauthenticated: 30/hour
    assert sim.ctl("counters")["_unauthorized"] == 1


def test_rate_limit_headers_on_every_response(sim):
    for r in (sim.request("GET", "/v2/whoami"), sim.api("GET", "domains/nope.test/certificates"),
              sim.api("GET", "no/such/path")):
        assert rate_headers_present(r), r.headers
        assert r.header("X-RateLimit-Limit") == "2400"
    assert int(r.header("X-RateLimit-Reset")) > time.time()


def test_unknown_path_404_wrong_method_405_wrong_account_404(sim):
    r = sim.api("GET", "no/such/path")
    assert r.status == 404 and r.json == {"message": "Not Found"}
    r = sim.api("POST", "domains/pizza.company/certificates/1", {})
    assert r.status == 405 and r.raw == b"" and r.header("Allow") == "GET"
    r = sim.request("GET", "/v2/9999/domains/pizza.company/certificates")
    assert r.status == 404 and "9999" in r.json["message"]


def test_keep_alive_connection_is_reused(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def call(method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=auth)
        r = conn.getresponse()
        return r.status, r.read()

    assert call("GET", "/v2/whoami")[0] == 200
    sock = conn.sock
    status, raw = call("POST", f"/v2/{ACCOUNT}/zones/{DOMAIN}/records", {"name": "k", "type": "TXT", "content": "v"})
    assert status == 201
    rid = json.loads(raw)["data"]["id"]
    assert call("GET", f"/v2/{ACCOUNT}/zones/{DOMAIN}/records?name=k")[0] == 200
    assert call("DELETE", f"/v2/{ACCOUNT}/zones/{DOMAIN}/records/{rid}") == (204, b"")
    assert call("GET", f"/v2/{ACCOUNT}/domains/{DOMAIN}/certificates/12345")[0] == 404
    assert call("POST", f"/v2/{ACCOUNT}/domains/{DOMAIN}/certificates/1", {})[0] == 405
    assert call("GET", "/v2/whoami")[0] == 200
    assert conn.sock is sock, "the connection was not kept alive"
    conn.close()


# ---------------------------------------------------------------- certificates

def test_purchase_issue_download_with_a_real_certificate(sim, tmp_path):
    r = sim.api("POST", "domains/pizza.company/certificates/letsencrypt",
                {"alternate_names": ["shop.pizza.company"], "contact_id": 2511})
    assert r.status == 201
    p = r.json["data"]
    assert set(p) == {"id", "certificate_id", "state", "auto_renew", "created_at", "updated_at"}
    assert p["state"] == "new" and p["auto_renew"] is False and p["id"] == p["certificate_id"]
    cid = p["certificate_id"]

    c = sim.api("GET", f"domains/pizza.company/certificates/{cid}").json["data"]
    assert set(c) == CERT_KEYS  # contact_id was removed from the schema
    assert (c["name"], c["common_name"], c["alternate_names"]) == ("www", "www.pizza.company", ["shop.pizza.company"])
    assert c["state"] == "new" and c["authority_identifier"] == "letsencrypt" and c["years"] == 1
    r = sim.api("GET", f"domains/pizza.company/certificates/{cid}/download")
    assert r.status == 428 and r.json == {"message": "Certificate not issued"}
    r = sim.api("GET", f"domains/pizza.company/certificates/{cid}/private_key")
    assert r.status == 428 and r.json == {"message": "Private key not present"}

    r = sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid}/issue")  # no body, like Go
    assert r.status == 202
    d = r.json["data"]
    assert set(d) == CERT_KEYS and d["id"] == cid
    assert (d["state"], d["csr"], d["expires_at"], d["expires_on"]) == ("requesting", None, None, None)
    assert sim.api("GET", f"domains/pizza.company/certificates/{cid}").json["data"]["state"] == "requesting"

    c = issued(sim, cid)
    assert c["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
    assert c["expires_on"] == c["expires_at"][:10]
    dl = sim.api("GET", f"domains/pizza.company/certificates/{cid}/download").json["data"]
    assert set(dl) == {"server", "root", "chain"}
    assert dl["root"] is None and len(dl["chain"]) == 1
    assert dl["server"].endswith("-----END CERTIFICATE-----\n")
    assert dl["chain"][0].endswith("-----END CERTIFICATE-----")  # no trailing newline (§2.9)
    key = sim.api("GET", f"domains/pizza.company/certificates/{cid}/private_key").json["data"]["private_key"]
    assert key.startswith("-----BEGIN EC PRIVATE KEY-----")

    leaf, chain, keyf = tmp_path / "leaf.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    leaf.write_text(dl["server"])
    chain.write_text(dl["chain"][0] + "\n")
    keyf.write_text(key)
    root = sim.ctl("ca")["root_path"]
    v = openssl("verify", "-CAfile", root, "-untrusted", str(chain), str(leaf))
    assert v.returncode == 0 and "OK" in v.stdout, v.stdout + v.stderr
    assert openssl("x509", "-in", str(leaf), "-noout", "-checkend", "0").returncode == 0
    assert openssl("x509", "-in", str(leaf), "-noout", "-checkend", str(91 * 86400)).returncode == 1
    pub_cert = openssl("x509", "-in", str(leaf), "-noout", "-pubkey").stdout
    pub_key = openssl("pkey", "-in", str(keyf), "-pubout").stdout
    assert pub_cert and pub_cert == pub_key
    san = openssl("x509", "-in", str(leaf), "-noout", "-ext", "subjectAltName").stdout
    assert sorted(x.strip()[4:] for x in san.split("\n", 1)[1].split(",")) == [
        "pizza.company", "shop.pizza.company", "www.pizza.company"]  # "www" covers the apex too
    end = openssl("x509", "-in", str(leaf), "-noout", "-enddate").stdout.strip().split("=", 1)[1]
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(end, "%b %d %H:%M:%S %Y %Z")) == c["expires_at"]
    counters = sim.ctl("counters")
    assert counters["purchaseLetsencryptCertificate"] == 1 and counters["issueLetsencryptCertificate"] == 1
    assert counters["POST /v2/{account}/domains/{domain}/certificates/letsencrypt"] == 1


def test_rsa_custom_name_wildcard_and_apex(sim, tmp_path):
    api = purchase(sim, {"name": "api", "signature_algorithm": "RSA", "auto_renew": True})
    wild = purchase(sim, {"name": "*"})
    apex = purchase(sim, {"name": ""})
    by_id = {c["id"]: c for c in sim.api("GET", "domains/pizza.company/certificates").json["data"]}
    assert by_id[api]["common_name"] == "api.pizza.company" and by_id[api]["auto_renew"] is True
    assert by_id[wild]["common_name"] == "*.pizza.company"
    assert by_id[apex]["common_name"] == "pizza.company"
    sim.ctl("certificate_state", {"id": api, "state": "issued"})
    key = sim.api("GET", f"domains/pizza.company/certificates/{api}/private_key").json["data"]["private_key"]
    assert key.startswith("-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1, as the fixture
    sim.ctl("certificate_state", {"id": wild, "state": "issued"})
    leaf = tmp_path / "w.pem"
    leaf.write_text(sim.api("GET", f"domains/pizza.company/certificates/{wild}/download").json["data"]["server"])
    assert "DNS:*.pizza.company" in openssl("x509", "-in", str(leaf), "-noout", "-ext", "subjectAltName").stdout


def test_domain_by_id_and_purchase_errors(sim):
    dom_id = sim.api("GET", "domains/pizza.company/certificates/" + str(purchase(sim))).json["data"]["domain_id"]
    assert sim.api("GET", f"domains/{dom_id}/certificates").status == 200  # {domain} is a name or an id
    r = sim.api("POST", "domains/nope.test/certificates/letsencrypt", {})
    assert r.status == 404 and r.json == {"message": "Domain `nope.test` not found"}
    r = sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {"alternate_names": ["www.other.test"]})
    assert r.status == 400 and r.json["message"] == "Validation failed" and "alternate_names" in r.json["errors"]
    r = sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {"signature_algorithm": "DSA"})
    assert r.status == 400 and isinstance(r.json["errors"]["signature_algorithm"], list)
    r = sim.api("GET", "domains/pizza.company/certificates/999")
    assert r.status == 404 and r.json == {"message": "Certificate `999` not found"}
    r = sim.api("GET", "domains/bingo.pizza/certificates/" + str(purchase(sim)))  # another domain's certificate
    assert r.status == 404


def test_plan_gating_is_412(sim):
    sim.ctl("plan", {"wildcard": False, "san": False})
    r = sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {"name": "*"})
    assert r.status == 412 and "wildcard feature" in r.json["message"]
    r = sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {"alternate_names": ["a.pizza.company"]})
    assert r.status == 412 and "SAN feature" in r.json["message"]
    assert sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {}).status == 201


def test_issue_is_not_repeatable_and_states_can_be_forced(sim):
    cid = purchase(sim)
    assert sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid}/issue", {}).status == 202
    r = sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid}/issue", {})
    assert r.status == 400 and "message" in r.json
    for state in ("failed", "cancelled", "refunded", "rejected"):
        assert sim.ctl("certificate_state", {"id": cid, "state": state})["state"] == state
        assert sim.api("GET", f"domains/pizza.company/certificates/{cid}").json["data"]["state"] == state
    sim.ctl("certificate_state", {"id": cid, "state": "requesting"})
    time.sleep(0.5)
    assert sim.api("GET", f"domains/pizza.company/certificates/{cid}").json["data"]["state"] == "requesting"


def test_issue_delay_negative_keeps_requesting_and_outcome_failed(sim):
    sim.ctl("issue_delay", {"seconds": -1})
    cid = purchase(sim)
    sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid}/issue")
    time.sleep(0.4)
    assert sim.api("GET", f"domains/pizza.company/certificates/{cid}").json["data"]["state"] == "requesting"
    sim.ctl("config", {"issue_delay": 0, "issue_outcome": "failed"})
    cid2 = purchase(sim)
    sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid2}/issue")
    wait_for(lambda: sim.api("GET", f"domains/pizza.company/certificates/{cid2}").json["data"]["state"] == "failed")


def test_manual_renewal_makes_a_new_certificate(sim):
    old = purchase(sim)
    sim.ctl("certificate_state", {"id": old, "state": "issued"})
    r = sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{old}/renewals",
                {"signature_algorithm": "RSA"})
    assert r.status == 201
    ren = r.json["data"]
    assert set(ren) == {"id", "old_certificate_id", "new_certificate_id", "state", "auto_renew", "created_at",
                        "updated_at"}
    assert ren["old_certificate_id"] == old and ren["new_certificate_id"] != old and ren["state"] == "new"
    new = ren["new_certificate_id"]
    ids = [c["id"] for c in sim.api("GET", "domains/pizza.company/certificates").json["data"]]
    assert ids == [new, old]  # newest first
    r = sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{old}/renewals/424242/issue")
    assert r.status == 404
    r = sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{old}/renewals/{ren['id']}/issue")
    assert r.status == 202
    assert r.json["data"]["id"] == new and r.json["data"]["state"] == "requesting"  # the new certificate itself
    issued(sim, new)
    key = sim.api("GET", f"domains/pizza.company/certificates/{new}/private_key").json["data"]["private_key"]
    assert key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert sim.api("GET", f"domains/pizza.company/certificates/{old}").json["data"]["state"] == "issued"


def test_renewal_refused_for_auto_renew_and_unissued_certificates(sim):
    auto = purchase(sim, {"auto_renew": True})
    sim.ctl("certificate_state", {"id": auto, "state": "issued"})
    assert sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{auto}/renewals", {}).status == 400
    fresh = purchase(sim)
    assert sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{fresh}/renewals", {}).status == 400


def test_auto_renewal_and_private_key_removal_controls(sim):
    old = purchase(sim, {"auto_renew": True})
    sim.ctl("certificate_state", {"id": old, "state": "issued"})
    new = sim.ctl("renew", {"id": old})["id"]
    assert new != old
    c = issued(sim, new)
    assert c["auto_renew"] is True and c["common_name"] == "www.pizza.company"
    sim.ctl("remove_private_key", {"id": new})
    r = sim.api("GET", f"domains/pizza.company/certificates/{new}/private_key")
    assert r.status == 428 and r.json == {"message": "Private key not present"}
    assert sim.ctl("renew", {"id": old, "fail": True})["event"] == "certificate.auto_renewal_failed"


def test_pagination_sorting_and_seeding(sim):
    target = sim.ctl("seed_certificates", {"domain": DOMAIN, "count": 1, "names": ["www.pizza.company",
                                                                                 "pizza.company", "a.pizza.company"],
                                           "state": "issued"})["ids"][0]
    sim.ctl("seed_certificates", {"domain": DOMAIN, "count": 64, "state": "cancelled"})
    r = sim.api("GET", "domains/pizza.company/certificates").json
    assert r["pagination"] == {"current_page": 1, "per_page": 30, "total_entries": 65, "total_pages": 3}
    assert len(r["data"]) == 30
    ids = [c["id"] for c in r["data"]]
    assert ids == sorted(ids, reverse=True)  # default: id descending
    last = sim.api("GET", "domains/pizza.company/certificates?page=3").json
    assert len(last["data"]) == 5 and last["data"][-1]["id"] == target and last["pagination"]["current_page"] == 3
    assert last["data"][-1]["alternate_names"] == ["a.pizza.company"] and last["data"][-1]["state"] == "issued"
    assert sim.api("GET", f"domains/pizza.company/certificates/{target}/download").status == 200
    big = sim.api("GET", "domains/pizza.company/certificates?per_page=500").json
    assert big["pagination"]["per_page"] == 100 and len(big["data"]) == 65
    asc = sim.api("GET", "domains/pizza.company/certificates?sort=id:asc&per_page=100").json["data"]
    assert [c["id"] for c in asc] == sorted(c["id"] for c in asc) and asc[0]["id"] == target
    byname = sim.api("GET", "domains/pizza.company/certificates?sort=common_name:desc,id:asc&per_page=100").json
    names = [c["common_name"] for c in byname["data"]]
    assert names == sorted(names, reverse=True)
    exp = sim.api("GET", "domains/pizza.company/certificates?sort=expiration:asc&per_page=1").json["data"]
    assert exp[0]["id"] == target  # the only one with an expiry
    assert sim.api("GET", "domains/pizza.company/certificates?sort=bogus:asc").status == 400
    beyond = sim.api("GET", "domains/pizza.company/certificates?page=9").json
    assert beyond["data"] == [] and beyond["pagination"]["total_pages"] == 3


# ---------------------------------------------------------------- zone records

def test_zone_and_system_records(sim):
    z = sim.api("GET", "zones/pizza.company")
    assert z.status == 200 and z.json["data"]["name"] == "pizza.company" and z.json["data"]["active"] is True
    r = sim.api("GET", "zones/pizza.company/records").json
    assert r["pagination"]["total_entries"] == 5
    assert [x["type"] for x in r["data"]] == ["SOA", "NS", "NS", "NS", "NS"]
    assert all(x["name"] == "" and x["system_record"] and set(x) == RECORD_KEYS for x in r["data"])
    assert sim.api("GET", "zones/pizza.company/records?type=TXT").json["data"] == []
    r = sim.api("DELETE", f"zones/pizza.company/records/{r['data'][0]['id']}")
    assert r.status == 400
    r = sim.api("GET", "zones/nope.test/records")
    assert r.status == 404 and r.json == {"message": "Zone `nope.test` not found"}


def test_list_zones_paginated_filtered_sorted(sim):
    r = sim.api("GET", "zones").json
    assert [z["name"] for z in r["data"]] == ["pizza.company", "bingo.pizza"]  # id ascending
    assert r["pagination"] == {"current_page": 1, "per_page": 30, "total_entries": 2, "total_pages": 1}
    assert set(r["data"][0]) == {"id", "account_id", "name", "reverse", "secondary", "last_transferred_at", "active",
                                 "created_at", "updated_at"}
    assert r["data"][0]["account_id"] == int(ACCOUNT)
    names = sim.ctl("zones", {"names": [f"z{i:02d}.example" for i in range(40)] + ["Shop.Test."]})
    assert "shop.test" in names and len(names) == 43
    p1 = sim.api("GET", "zones?per_page=20").json
    assert p1["pagination"]["total_pages"] == 3 and len(p1["data"]) == 20
    p3 = sim.api("GET", "zones?per_page=20&page=3").json
    assert [z["name"] for z in p3["data"]] == ["z38.example", "z39.example", "shop.test"]
    assert [z["name"] for z in sim.api("GET", "zones?name_like=shop").json["data"]] == ["shop.test"]
    byname = sim.api("GET", "zones?sort=name:desc&per_page=100").json["data"]
    assert byname[0]["name"] == "z39.example" and byname[-1]["name"] == "bingo.pizza"
    assert sim.api("GET", "zones", token=None).status == 401


def test_txt_records_create_quote_duplicate_list_delete(sim):
    r = sim.api("POST", "zones/pizza.company/records",
                {"name": "_acme-challenge.www", "type": "TXT", "content": "tok-1", "ttl": 60})
    assert r.status == 201
    rec = r.json["data"]
    assert set(rec) == RECORD_KEYS
    assert (rec["zone_id"], rec["name"], rec["content"], rec["ttl"], rec["priority"], rec["regions"],
            rec["system_record"], rec["parent_id"]) == (
        "pizza.company", "_acme-challenge.www", '"tok-1"', 60, None, ["global"], False, None)
    r = sim.api("POST", "zones/pizza.company/records",
                {"name": "_acme-challenge.www", "type": "TXT", "content": "tok-1"})
    assert r.status == 400 and r.json == {"message": "Validation failed",
                                          "errors": {"base": ["Matching record already exists for this zone"]}}
    r = sim.api("POST", "zones/pizza.company/records", {"name": "_acme-challenge.www", "type": "TXT",
                                                        "content": '"tok-1"'})  # quoted input: the same record
    assert r.status == 400
    second = sim.api("POST", "zones/pizza.company/records", {"name": "_acme-challenge.www", "type": "TXT",
                                                             "content": "tok-2"}).json["data"]
    apex = sim.api("POST", "zones/pizza.company/records", {"name": "", "type": "TXT", "content": "apex"})
    assert apex.status == 201 and apex.json["data"]["name"] == "" and apex.json["data"]["ttl"] == 3600
    q = sim.api("POST", "zones/pizza.company/records", {"name": "q", "type": "TXT", "content": 'say "hi"'}).json
    assert q["data"]["content"] == '"say \\"hi\\""'
    long = sim.api("POST", "zones/pizza.company/records", {"name": "long", "type": "TXT", "content": "x" * 300}).json
    assert long["data"]["content"] == '"' + "x" * 255 + '" "' + "x" * 45 + '"'
    assert sim.api("POST", "zones/pizza.company/records", {"name": "big", "type": "TXT",
                                                           "content": "y" * 1200}).status == 400

    got = sim.api("GET", "zones/pizza.company/records?name=_acme-challenge.www&type=TXT").json
    assert [x["content"] for x in got["data"]] == ['"tok-1"', '"tok-2"'] and "pagination" in got
    like = sim.api("GET", "zones/pizza.company/records?name_like=acme").json["data"]
    assert len(like) == 2
    everything = sim.api("GET", "zones/pizza.company/records?name=&type=TXT").json["data"]
    assert len(everything) == 5  # an empty name= filters nothing
    by_content = sim.api("GET", "zones/pizza.company/records?name=_acme-challenge.www&sort=content:desc").json
    assert [x["content"] for x in by_content["data"]] == ['"tok-2"', '"tok-1"']

    r = sim.api("DELETE", f"zones/pizza.company/records/{second['id']}")
    assert r.status == 204 and r.raw == b"" and r.header("Content-Type") is None
    r = sim.api("DELETE", f"zones/pizza.company/records/{second['id']}")
    assert r.status == 404 and r.json == {"message": f"Record `{second['id']}` not found"}
    dump = sim.ctl("zone/pizza.company/records")
    assert {x["name"] for x in dump} == {"_acme-challenge.www", "", "q", "long"}  # no system records
    assert len(sim.ctl("zone/pizza.company/records?all=1")) == len(dump) + 5


def test_record_validation_errors(sim):
    r = sim.api("POST", "zones/pizza.company/records", {"type": "TXT", "content": "x"})
    assert r.status == 400 and r.json["errors"] == {"name": ["can't be null"]}
    r = sim.api("POST", "zones/pizza.company/records", {"name": "a", "type": "BOGUS", "content": "", "ttl": "x"})
    assert r.status == 400 and r.json["message"] == "Validation failed"
    assert r.json["errors"] == {"record_type": ["unsupported"], "content": ["can't be blank"],
                                "ttl": ["is not a number"]}
    r = sim.api("POST", "zones/pizza.company/records", raw=b'{"name": "a", "type": "TXT", "content": "x"}',
                headers={"Content-Type": "text/plain"})
    assert r.status == 400  # a body that is not application/json is not read
    rec = sim.api("POST", "zones/pizza.company/records", {"name": "mx", "type": "MX", "content": "mx.example.com",
                                                          "priority": 10, "regions": ["SV1", "IAD"]}).json["data"]
    assert rec["priority"] == 10 and rec["regions"] == ["SV1", "IAD"]
    p = sim.api("PATCH", f"zones/pizza.company/records/{rec['id']}", {"name": "", "ttl": 120}).json["data"]
    assert p["name"] == "" and p["ttl"] == 120 and p["type"] == "MX"
    assert sim.api("GET", f"zones/pizza.company/records/{rec['id']}").json["data"] == p


# ---------------------------------------------------------------- webhooks

class Listener:
    """A webhook receiver: records every delivery; answers statuses[i] to the i-th one (200 afterwards)."""

    def __init__(self, statuses=()):
        self.got, self.statuses = [], list(statuses)
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.got.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hooks/dnsimple/s3cret"

    def names(self):
        return [b["name"] for _, b in self.got]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def listener():
    ls = []

    def make(statuses=()):
        ls.append(Listener(statuses))
        return ls[-1]
    yield make
    for x in ls:
        x.close()


def test_webhooks_list_create_get_delete(sim):
    r = sim.api("GET", "webhooks")
    assert r.status == 200 and r.json == {"data": []}  # no pagination
    r = sim.api("POST", "webhooks", {"url": "https://webhook.test"})
    assert r.status == 201 and r.json["data"] == {"id": 1, "url": "https://webhook.test", "suppressed_at": None}
    assert sim.api("POST", "webhooks", {"url": "http://webhook.test/plain"}).status == 400  # must be HTTPS
    assert sim.api("POST", "webhooks", {}).status == 400
    assert sim.api("GET", "webhooks/1").json["data"]["url"] == "https://webhook.test"
    r = sim.api("DELETE", "webhooks/1")
    assert r.status == 204 and r.raw == b""
    r = sim.api("GET", "webhooks/1")
    assert r.status == 404 and r.json == {"message": "Webhook `1` not found"}
    sim.ctl("config", {"strict_webhook_https": True})
    assert sim.api("POST", "webhooks", {"url": "http://127.0.0.1:9/x"}).status == 400


def test_webhook_deliveries_certificate_issue(sim, listener):
    ls = listener()
    assert sim.api("POST", "webhooks", {"url": ls.url}).status == 201
    cid = purchase(sim)
    sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid}/issue", {})
    wait_for(lambda: "certificate.issue" in ls.names())
    headers, ev = next((h, b) for h, b in ls.got if b["name"] == "certificate.issue")
    assert set(ev) == {"data", "name", "actor", "account", "api_version", "request_identifier"}
    assert ev["api_version"] == "v2" and ev["actor"] == {"id": "system", "entity": "dnsimple",
                                                         "pretty": "support@dnsimple.com"}
    assert set(ev["account"]) == {"id", "display", "identifier"} and ev["account"]["id"] == int(ACCOUNT)
    assert ev["data"]["certificate"]["id"] == cid and ev["data"]["certificate"]["state"] == "issued"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("DNSimple-Webhook-Notifier/")
    assert "webhook.create" in ls.names()  # every account event reaches every webhook
    create = next(b for _, b in ls.got if b["name"] == "webhook.create")
    assert isinstance(create["actor"]["id"], str)


def test_webhook_duplicates_out_of_order_unknown_events(sim, listener):
    ls = listener()
    sim.api("POST", "webhooks", {"url": ls.url})
    for i in range(3):
        sim.api("POST", "zones/pizza.company/records", {"name": f"r{i}", "type": "TXT", "content": "v"})
    wait_for(lambda: ls.names().count("zone_record.create") == 3)
    events = sim.ctl("events")
    last3 = [e["request_identifier"] for e in events[-3:]]
    n = len(ls.got)
    dup = sim.ctl("webhook_replay", {"mode": "duplicate"})
    wait_for(lambda: len(ls.got) == n + 2)
    assert [b["request_identifier"] for _, b in ls.got].count(dup["request_identifier"]) == 3
    n = len(ls.got)
    sim.ctl("webhook_replay", {"mode": "out_of_order"})
    wait_for(lambda: len(ls.got) == n + 3)
    assert [b["request_identifier"] for _, b in ls.got[n:]] == list(reversed(last3))
    sim.ctl("webhook_replay", {"mode": "unknown_event"})
    wait_for(lambda: "sim.unknown_event" in ls.names())
    sim.ctl("webhook_replay", {"mode": "unknown_event", "name": "certificate.brand_new_thing"})
    wait_for(lambda: "certificate.brand_new_thing" in ls.names())

    sim.ctl("webhook_hold", {"hold": True})
    n = len(ls.got)
    for i in range(3):
        sim.api("POST", "zones/pizza.company/records", {"name": f"h{i}", "type": "TXT", "content": "v"})
    time.sleep(0.2)
    assert len(ls.got) == n  # held
    assert sim.ctl("webhook_flush", {"order": "reverse"})["sent"] == 3
    wait_for(lambda: len(ls.got) == n + 3)
    assert [b["data"]["zone_record"]["name"] for _, b in ls.got[n:]] == ["h2", "h1", "h0"]


def test_webhook_retries_until_200_and_suppression(sim, listener):
    flaky = listener(statuses=[500, 204])  # 204 is not 200: an error for DNSimple (§4.4)
    sim.api("POST", "webhooks", {"url": flaky.url})
    wait_for(lambda: len(flaky.got) == 3)
    rids = {b["request_identifier"] for _, b in flaky.got}
    assert len(rids) == 1 and flaky.names() == ["webhook.create"] * 3
    deliveries = wait_for(lambda: (lambda d: d if len(d) == 3 else None)(sim.ctl("webhook_deliveries")))
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 500), (2, 204), (3, 200)]

    sim.ctl("reset", {})
    sim.ctl("config", {"webhook_retry_base": 0.01, "webhook_suppress_after": 4, "webhook_max_attempts": 10})
    dead = listener(statuses=[500] * 100)
    hook = sim.api("POST", "webhooks", {"url": dead.url}).json["data"]
    wait_for(lambda: sim.api("GET", f"webhooks/{hook['id']}").json["data"]["suppressed_at"] is not None)
    assert len(dead.got) == 4


# ---------------------------------------------------------------- faults

def test_fault_html_5xx_and_json_504(sim):
    sim.ctl("fault", {"endpoint": "listCertificates", "mode": "500_html", "count": 1})
    r = sim.api("GET", "domains/pizza.company/certificates")
    assert r.status == 500 and r.header("Content-Type").startswith("text/html") and r.raw.startswith(b"<!DOCTYPE")
    assert sim.api("GET", "domains/pizza.company/certificates").status == 200  # count 1: used up
    sim.ctl("fault", {"endpoint": "whoami", "mode": "502_html"})
    for _ in range(2):
        r = sim.request("GET", "/v2/whoami")
        assert r.status == 502 and r.header("Content-Type") == "text/html" and b"502 Bad Gateway" in r.raw
    assert sim.api("GET", "domains/pizza.company/certificates").status == 200  # other endpoints unaffected
    sim.ctl("fault", method="DELETE")
    assert sim.request("GET", "/v2/whoami").status == 200
    sim.ctl("fault", {"endpoint": "*", "mode": "504_json", "count": 1})
    r = sim.request("GET", "/v2/whoami")
    assert r.status == 504 and r.json == {"message": "Could not query zone, connection timed out"}
    # a canned answer, without running the operation; every answer has an X-Request-Id that the log keeps
    body = {"message": "Validation failed", "errors": {"content": ["can't be blank", "is too short"],
                                                        "ttl": ["is not a number"]}}
    sim.ctl("fault", {"endpoint": "createZoneRecord", "mode": "reply", "status": 400, "body": body, "count": 1})
    r = sim.api("POST", "zones/pizza.company/records", {"name": "x", "type": "TXT", "content": "v"})
    assert r.status == 400 and r.json == body
    rid = r.header("X-Request-Id")
    assert rid and sim.ctl("log?op=createZoneRecord")[-1]["request_id"] == rid
    assert sim.api("POST", "zones/pizza.company/records", {"name": "x", "type": "TXT", "content": "v"}).status == 201
    assert sim.request("GET", "/v2/whoami").header("X-Request-Id") != rid


def test_fault_truncated_empty_html200_and_extra_fields(sim):
    purchase(sim)
    sim.ctl("fault", {"endpoint": "listCertificates", "mode": "truncated_json", "count": 1})
    r = sim.api("GET", "domains/pizza.company/certificates")
    assert r.status == 200 and int(r.header("Content-Length")) == len(r.raw) > 0
    with pytest.raises(ValueError):
        json.loads(r.raw)
    sim.ctl("fault", {"endpoint": "listCertificates", "mode": "empty_body", "count": 1})
    r = sim.api("GET", "domains/pizza.company/certificates")
    assert r.status == 200 and r.raw == b"" and r.header("Content-Type") == "application/json"
    sim.ctl("fault", {"endpoint": "listCertificates", "mode": "html_200", "count": 1})
    r = sim.api("GET", "domains/pizza.company/certificates")
    assert r.status == 200 and r.header("Content-Type") == "text/html"
    sim.ctl("fault", {"endpoint": "*", "mode": "extra_fields"})
    body = sim.api("GET", "domains/pizza.company/certificates").json
    assert "sim_unknown_field" in body and "sim_unknown_field" in body["pagination"]
    assert all("sim_unknown_field" in c for c in body["data"])
    assert body["data"][0]["common_name"] == "www.pizza.company"


def test_fault_429_retry_after_seconds_and_http_date(sim):
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "429", "count": 1, "retry_after": "5"})
    r = sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {})
    assert r.status == 429 and r.header("Retry-After") == "5" and r.json == {"message": "quota exceeded"}
    assert int(r.header("X-RateLimit-Remaining")) > 0  # a per-endpoint limit (§5.2)
    date = "Mon, 01 Jun 2026 00:00:00 GMT"
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "429", "count": 1, "retry_after": date,
                      "message": "Monthly request cap reached"})
    r = sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {})
    assert r.header("Retry-After") == date and r.json == {"message": "Monthly request cap reached"}
    assert sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {}).status == 201
    assert len(sim.ctl("certificates")) == 1  # the 429s bought nothing


def test_fault_timeout_and_hang_after(sim):
    sim.ctl("fault", {"endpoint": "getCertificatePrivateKey", "mode": "timeout", "count": 1, "seconds": 1.5})
    t0 = time.time()
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        sim.api("GET", "domains/pizza.company/certificates/1/private_key", timeout=0.5)
    assert time.time() - t0 < 1.4
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "hang_after", "count": 1, "seconds": 1})
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {}, timeout=0.5)
    assert len(sim.ctl("certificates")) == 1  # the purchase happened; its answer was lost
    log = sim.ctl("log")
    assert [e["status"] for e in log if e["fault"]] == ["timeout", "hang_after"]


def test_fault_500_after_and_delay(sim):
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "500_after", "count": 1})
    r = sim.request("POST", "/v2/1010/domains/pizza.company/certificates/letsencrypt", {"name": "a"})
    assert r.status == 500
    assert len(sim.ctl("certificates")) == 1  # bought, although the answer said otherwise
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "delay", "count": 1, "seconds": 1.5})
    t0 = time.time()
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        sim.api("POST", "domains/pizza.company/certificates/letsencrypt", {"name": "b"}, timeout=0.5)
    assert len(sim.ctl("certificates")) == 1  # still held in front of the provider
    deadline = t0 + 10
    while len(sim.ctl("certificates")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(sim.ctl("certificates")) == 2 and time.time() - t0 >= 1.4  # then it lands


def test_fault_skip_and_bad_mode(sim):
    sim.ctl("fault", {"endpoint": "whoami", "mode": "500_html", "count": 1, "skip": 1})
    assert sim.request("GET", "/v2/whoami").status == 200
    assert sim.request("GET", "/v2/whoami").status == 500
    assert sim.request("GET", "/v2/whoami").status == 200
    r = sim.request("POST", "/_sim/fault", {"endpoint": "*", "mode": "nonsense"}, token=None)
    assert r.status == 400


# ---------------------------------------------------------------- rate limit, counters, log

def test_rate_limit_window_and_429(sim):
    sim.ctl("ratelimit", {"limit": 50, "remaining": 2, "reset_in": 1.5})
    r1, r2 = sim.request("GET", "/v2/whoami"), sim.request("GET", "/v2/whoami")
    assert (r1.status, r1.header("X-RateLimit-Remaining")) == (200, "1")
    assert (r2.status, r2.header("X-RateLimit-Remaining")) == (200, "0")
    r3 = sim.request("GET", "/v2/whoami")
    assert r3.status == 429 and r3.json == {"message": "quota exceeded"}
    assert r3.header("X-RateLimit-Remaining") == "0" and r3.header("X-RateLimit-Limit") == "50"
    reset = int(r3.header("X-RateLimit-Reset"))
    assert time.time() - 1 <= reset <= time.time() + 2
    assert sim.ctl("counters")["_ratelimited"] == 1
    time.sleep(max(reset - time.time(), 0) + 0.1)
    r4 = sim.request("GET", "/v2/whoami")
    assert r4.status == 200 and r4.header("X-RateLimit-Remaining") == "49"


def test_counters_and_log(sim):
    sim.request("GET", "/v2/whoami")
    sim.request("GET", "/v2/whoami", token=None)
    cid = purchase(sim, {"name": "www"})
    sim.api("GET", f"domains/pizza.company/certificates/{cid}")
    c = sim.ctl("counters")
    assert c["whoami"] == 2 and c["GET /v2/whoami"] == 2
    assert c["purchaseLetsencryptCertificate"] == 1 and c["getCertificate"] == 1
    assert c["GET /v2/{account}/domains/{domain}/certificates/{certificate}"] == 1
    log = sim.ctl("log")
    assert [e["op"] for e in log] == ["whoami", "whoami", "purchaseLetsencryptCertificate", "getCertificate"]
    assert [e["authorization"] for e in log] == [True, False, True, True]
    assert [e["status"] for e in log] == [200, 401, 201, 200]
    assert json.loads(log[2]["body"]) == {"name": "www"} and log[2]["method"] == "POST"
    assert log[3]["route"] == "/v2/{account}/domains/{domain}/certificates/{certificate}"
    assert sim.ctl("log?op=whoami")[1]["authorization"] is False
    sim.ctl("counters", method="DELETE")
    assert sim.ctl("counters") == {}


def test_config_switches_contact_id_root_and_pkcs8(sim):
    sim.ctl("config", {"contact_id": True, "download_root": True, "ec_key_format": "pkcs8"})
    cid = purchase(sim)
    sim.ctl("certificate_state", {"id": cid, "state": "issued"})
    assert sim.api("GET", f"domains/pizza.company/certificates/{cid}").json["data"]["contact_id"] == 2511
    dl = sim.api("GET", f"domains/pizza.company/certificates/{cid}/download").json["data"]
    assert dl["root"] == sim.ctl("ca")["root"]
    key = sim.api("GET", f"domains/pizza.company/certificates/{cid}/private_key").json["data"]["private_key"]
    assert key.startswith("-----BEGIN PRIVATE KEY-----")
    r = sim.request("POST", "/_sim/config", {"no_such_knob": 1}, token=None)
    assert r.status == 400


def test_acme_challenge_records_while_requesting(sim):
    sim.ctl("config", {"acme_txt_records": True, "issue_delay": -1})
    cid = purchase(sim, {"alternate_names": ["shop.pizza.company"]})
    sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid}/issue")
    names = sorted(r["name"] for r in sim.ctl("zone/pizza.company/records"))
    assert names == ["_acme-challenge", "_acme-challenge.shop", "_acme-challenge.www"]
    sim.ctl("certificate_state", {"id": cid, "state": "issued"})
    assert sim.ctl("zone/pizza.company/records") == []


def test_reset_forgets_everything_but_the_ca(sim):
    root = sim.ctl("ca")["root"]
    purchase(sim)
    sim.api("POST", "webhooks", {"url": "https://webhook.test"})
    sim.ctl("fault", {"endpoint": "*", "mode": "500_html"})
    sim.ctl("reset", {})
    assert sim.ctl("certificates") == [] and sim.ctl("counters") == {}
    assert sim.api("GET", "webhooks").json == {"data": []}
    assert purchase(sim) == 101967
    assert sim.ctl("ca")["root"] == root
