"""The dnsimple issuer end to end against the DNSimple simulator (tests/fakes/dnsimple)."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import cert_names, cert_serial, manifest, openssl, pubkey
from dnsimple_env import SIM, TOKEN, Sim, sim, with_dnsimple  # noqa: F401 (sim is a fixture)

@pytest.fixture
def denv(env, sim):
    yield from with_dnsimple(env, sim)


def check_dnsimple_outputs(d, names):
    crt, key, ca = d / "tls.crt", d / "tls.key", d / "ca.crt"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert pubkey(crt, False) == pubkey(key, True)
    assert cert_names(crt) == sorted(names)
    # ca.crt holds the intermediate (DNSimple's root is null): verify the leaf up to it.
    r = openssl("verify", "-partial_chain", "-CAfile", str(ca), str(crt))
    assert r.returncode == 0, r.stdout + r.stderr


def www(extra=""):
    return manifest("shop-www", ["www.pizza.company", "pizza.company", "shop.pizza.company"], issuer="dns",
                    extra="commonName: www.pizza.company\n" + extra)


def test_issue_with_sans_in_four_requests(denv, sim):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    plan = denv.plan_json()
    ch = plan["changes"][0]
    assert ch["paid"] and ch["product"] == "letsencrypt"
    assert ch["steps"] == ["find", "purchase", "issue", "await", "download", "install"]
    r = denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    assert "1 done" in r.out, r
    check_dnsimple_outputs(denv.cert_dir("shop-www"), ["pizza.company", "shop.pizza.company", "www.pizza.company"])
    c = sim.ctl("counters")
    assert c["purchaseLetsencryptCertificate"] == 1
    assert c["issueLetsencryptCertificate"] == 1
    assert c["downloadCertificate"] == 1 and c["getCertificatePrivateKey"] == 1
    body = json.loads([e for e in sim.ctl("log") if e["op"] == "purchaseLetsencryptCertificate"][0]["body"])
    assert body == {"name": "www", "alternate_names": ["shop.pizza.company"], "auto_renew": False,
                    "signature_algorithm": "ECDSA"}
    denv.run("plan", "--detailed-exitcode", check=0)


def test_wildcard_maps_to_star(denv, sim):
    denv.repo.write("w.yaml", manifest("wild", ['"*.pizza.company"'], issuer="dns"))
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    body = json.loads([e for e in sim.ctl("log") if e["op"] == "purchaseLetsencryptCertificate"][0]["body"])
    assert body["name"] == "*" and body["alternate_names"] == []
    check_dnsimple_outputs(denv.cert_dir("wild"), ["*.pizza.company"])


def test_names_outside_the_domain_are_a_validation_error(denv, sim):
    denv.repo.write("x.yaml", manifest("x", ["www.pizza.company", "www.other.test"], issuer="dns"))
    denv.repo.commit()
    r = denv.run("validate", check=1)
    assert "www.other.test is not within the DNSimple domain pizza.company" in r.out, r
    assert sim.count("purchaseLetsencryptCertificate") == 0


def test_adopts_an_existing_certificate_found_on_page_two(denv, sim):
    p = sim.api("POST", "domains/pizza.company/certificates/letsencrypt",
                {"name": "www", "alternate_names": ["shop.pizza.company"], "signature_algorithm": "ECDSA"})
    cid = p["data"]["certificate_id"]
    sim.api("POST", f"domains/pizza.company/certificates/letsencrypt/{cid}/issue", {})
    sim.ctl("seed_certificates", {"domain": "pizza.company", "count": 120, "state": "cancelled"})
    for _ in range(50):
        if sim.api("GET", f"domains/pizza.company/certificates/{cid}")["data"]["state"] == "issued":
            break
        time.sleep(0.1)
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    c = sim.ctl("counters")
    assert c["purchaseLetsencryptCertificate"] == 1  # the test's own: certsync bought nothing
    assert c["listCertificates"] >= 2  # it paged
    rec = denv.state_json()["certificates"]["shop-www"]
    assert rec["ids"]["dnsimple.certificate_id"] == str(cid)


def test_pending_issuance_completes_on_the_next_apply(denv, sim):
    sim.ctl("issue_delay", {"seconds": 3})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 pending" in r.out, r
    rec = denv.state_json()["certificates"]["shop-www"]
    assert rec["phase"] == "pending" and rec["step"] == "await"
    plan = denv.plan_json()
    assert plan["changes"][0]["action"] == "resume"
    time.sleep(3.5)
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    assert sim.count("purchaseLetsencryptCertificate") == 1
    check_dnsimple_outputs(denv.cert_dir("shop-www"), ["pizza.company", "shop.pizza.company", "www.pizza.company"])


def test_kill_after_the_purchase_never_buys_twice(denv, sim):
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "hang_after", "count": 1, "seconds": 20})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    p = denv.popen("apply", "--auto-approve")
    deadline = time.time() + 20
    while time.time() < deadline and sim.count("purchaseLetsencryptCertificate") < 1:
        time.sleep(0.05)
    time.sleep(0.3)  # the purchase took effect at DNSimple; certsync has not heard back
    p.send_signal(signal.SIGKILL)
    p.communicate()
    sim.ctl("fault", method="DELETE")
    r = denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    assert "adopting DNSimple certificate" in r.err, r
    assert sim.count("purchaseLetsencryptCertificate") == 1
    check_dnsimple_outputs(denv.cert_dir("shop-www"), ["pizza.company", "shop.pizza.company", "www.pizza.company"])


def test_renewal_without_auto_renew_buys_a_renewal(denv, sim):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    old = cert_serial(denv.cert_dir("shop-www") / "tls.crt")
    denv.repo.write("www.yaml", www("renewBefore: 2200h\n"))
    denv.repo.commit()
    plan = denv.plan_json()
    assert plan["changes"][0]["action"] == "renew"
    assert plan["changes"][0]["steps"][0] == "renew-purchase" and plan["changes"][0]["paid"]
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    c = sim.ctl("counters")
    assert c["purchaseRenewalLetsencryptCertificate"] == 1 and c["issueRenewalLetsencryptCertificate"] == 1
    assert c["purchaseLetsencryptCertificate"] == 1
    assert cert_serial(denv.cert_dir("shop-www") / "tls.crt") != old


def test_auto_renew_installs_dnsimples_own_renewal(denv, sim):
    denv.repo.write("www.yaml", www("autoRenew: true\n"))
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    first = int(denv.state_json()["certificates"]["shop-www"]["ids"]["dnsimple.certificate_id"])
    body = json.loads([e for e in sim.ctl("log") if e["op"] == "purchaseLetsencryptCertificate"][0]["body"])
    assert body["auto_renew"] is True
    time.sleep(1.1)  # the renewal must expire later than the installed one
    new = sim.ctl("renew", {"id": first})["id"]
    time.sleep(1.5)
    denv.repo.write("www.yaml", www("autoRenew: true\nrenewBefore: 2200h\n"))
    denv.repo.commit()
    plan = denv.plan_json()
    assert plan["changes"][0]["steps"] == ["find-renewal", "download", "install"]
    assert not plan["changes"][0]["paid"]
    denv.run("apply", "--auto-approve", "--wait", "30s", check=0)
    c = sim.ctl("counters")
    assert c.get("purchaseRenewalLetsencryptCertificate", 0) == 0
    assert c["purchaseLetsencryptCertificate"] == 1
    assert denv.state_json()["certificates"]["shop-www"]["ids"]["dnsimple.certificate_id"] == str(new)


def test_terminal_state_is_reported_and_not_bought_again(denv, sim):
    sim.ctl("issue_delay", {"seconds": -1})  # stays requesting
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    cid = int(denv.state_json()["certificates"]["shop-www"]["ids"]["dnsimple.pending_id"])
    sim.ctl("certificate_state", {"id": cid, "state": "failed"})
    r = denv.run("apply", "--auto-approve", check=1)
    assert "shop-www" in r.err and "failed" in r.err and "not purchased again" in r.err, r
    r = denv.run("apply", "--auto-approve", check=1)  # nothing done, but the certificate is still failed
    assert sim.count("purchaseLetsencryptCertificate") == 1
    assert "--retry-failed" in r.out + r.err
    sim.ctl("issue_delay", {"seconds": 0.2})
    denv.run("apply", "--auto-approve", "--retry-failed", "--wait", "60s", check=0)
    assert sim.count("purchaseLetsencryptCertificate") == 2


@pytest.mark.parametrize("mode,endpoint", [("500_html", "listCertificates"), ("502_html", "downloadCertificate"),
                                           ("truncated_json", "getCertificate"), ("empty_body", "listCertificates"),
                                           ("extra_fields", "*"), ("timeout", "getCertificatePrivateKey")])
def test_fault_modes_converge_without_losing_state(denv, sim, mode, endpoint):
    sim.ctl("fault", {"endpoint": endpoint, "mode": mode, "count": 2 if mode != "extra_fields" else -1,
                      "seconds": 5})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", timeout=300)
    sim.ctl("fault", method="DELETE")
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0, timeout=300)
    denv.run("plan", "--detailed-exitcode", check=0)
    assert sim.count("purchaseLetsencryptCertificate") == 1
    check_dnsimple_outputs(denv.cert_dir("shop-www"), ["pizza.company", "shop.pizza.company", "www.pizza.company"])


def test_429_with_retry_after_is_honoured(denv, sim):
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "429", "count": 1, "retry_after": "1"})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    t0 = time.time()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    assert time.time() - t0 >= 1
    purchases = [e for e in sim.ctl("log") if e["op"] == "purchaseLetsencryptCertificate"]
    assert len(purchases) == 2 and purchases[1]["time"] - purchases[0]["time"] >= 0.9
    assert len([c for c in sim.ctl("certificates") if c["state"] != "cancelled"]) == 1


def test_token_never_appears_anywhere(denv, sim):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    outs = []
    for args in (["plan", "--format", "json"], ["apply", "--auto-approve", "--wait", "60s", "-v", "--log-format", "json"],
                 ["state", "show", "shop-www"], ["plan", "--refresh"]):
        r = denv.run(*args)
        outs += [r.out, r.err]
    os.environ["DNSIMPLE_TOKEN"] = "wrong-token-value-xyz"
    denv.repo.write("api.yaml", manifest("api", ["api.pizza.company"], issuer="dns"))
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve")
    assert r.code == 1 and "401" in r.err and "dns" in r.err, r
    outs += [r.out, r.err]
    for f in denv.state.parent.rglob("*"):
        if f.is_file():
            outs.append(f.read_text(errors="replace"))
    for text in outs:
        assert TOKEN not in text
        assert "wrong-token-value-xyz" not in text


def test_rate_limit_budget_is_respected_without_429s(denv, sim):
    """With 3 requests left in the window, certsync waits for the reset instead of earning 429s."""
    t0 = time.time()  # the window resets 2 to 3 s after this (whole seconds), however long the commit takes
    sim.ctl("ratelimit", {"limit": 2400, "remaining": 3, "reset_in": 3})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    assert time.time() - t0 >= 2
    assert sim.count("_ratelimited") == 0
    assert sim.count("purchaseLetsencryptCertificate") == 1


def test_refresh_shows_drift_at_the_provider(denv, sim):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    denv.run("plan", "--refresh", "--detailed-exitcode", check=0)
    cid = int(denv.state_json()["certificates"]["shop-www"]["ids"]["dnsimple.certificate_id"])
    sim.ctl("certificate_state", {"id": cid, "state": "refunded"})
    plan = denv.plan_json("--refresh")
    ch = plan["changes"][0]
    assert ch["action"] == "replace" and ch["reason_code"] == "drift" and "refunded" in ch["reason"], ch
    assert denv.plan_json()["changes"] == []  # without --refresh nothing is asked


def test_simulator_zone_records_behave_like_dnsimple(denv, sim):
    """The quirks the DNS driver relies on: quoted TXT content, duplicates refused."""
    rec = sim.api("POST", "zones/pizza.company/records", {"name": "_dnsauth.www", "type": "TXT", "content": "tok"})
    assert rec["data"]["content"] == '"tok"'  # DNSimple returns TXT content quoted
    with pytest.raises(urllib.error.HTTPError) as e:
        sim.api("POST", "zones/pizza.company/records", {"name": "_dnsauth.www", "type": "TXT", "content": "tok"})
    assert e.value.code == 400


def test_simulator_delivers_webhooks_with_duplicates_and_unknown_events(denv, sim):
    """certificate.issue deliveries (as DNSimple sends them) reach a registered URL, replays included."""
    import http.server
    import threading

    got = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        sim.api("POST", "webhooks", {"url": f"http://127.0.0.1:{srv.server_address[1]}/webhooks/dnsimple/s3cret"})
        denv.repo.write("www.yaml", www())
        denv.repo.commit()
        denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
        deadline = time.time() + 10
        while time.time() < deadline and not got:
            time.sleep(0.05)
        issued = [g for g in got if g["name"] == "certificate.issue"]
        assert issued, [g["name"] for g in got]  # webhook.create etc. may come first
        first = issued[0]
        assert first["data"]["certificate"]["id"] == int(
            denv.state_json()["certificates"]["shop-www"]["ids"]["dnsimple.certificate_id"])
        sim.ctl("webhook_replay", {"mode": "duplicate", "request_identifier": first["request_identifier"]})
        sim.ctl("webhook_replay", {"mode": "unknown_event"})
        deadline = time.time() + 10
        while time.time() < deadline and (
                sum(g["request_identifier"] == first["request_identifier"] for g in got) < 3
                or not any(g["name"] == "sim.unknown_event" for g in got)):
            time.sleep(0.05)
        ids = [g["request_identifier"] for g in got]
        assert ids.count(first["request_identifier"]) == 3  # at-least-once: the same event again
        assert any(g["name"] == "sim.unknown_event" for g in got)
    finally:
        srv.shutdown()


def test_a_waiting_certificate_frees_its_worker(denv, sim):
    """apply --wait with one worker: while one certificate waits for issuance, the others go on.

    Asserted on the order of the simulator's requests, not on time: every
    purchase comes before the first download, which a worker that slept
    through its certificate's wait could not do.
    """
    sim.ctl("issue_delay", {"seconds": 1.5})
    for i in range(3):
        denv.repo.write(f"c{i}.yaml", manifest(f"c{i}", [f"c{i}.pizza.company"], issuer="dns"))
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", "--wait", "120s", "--parallelism", "1", check=0)
    assert "3 done" in r.out, r
    ops = [e["op"] for e in sim.ctl("log")]
    purchases = [i for i, op in enumerate(ops) if op == "purchaseLetsencryptCertificate"]
    downloads = [i for i, op in enumerate(ops) if op == "downloadCertificate"]
    assert len(purchases) == 3 and len(downloads) == 3, ops
    assert max(purchases) < min(downloads), ops
    for i in range(3):
        check_dnsimple_outputs(denv.cert_dir(f"c{i}"), [f"c{i}.pizza.company"])


def test_a_pending_certificate_that_vanishes_fails_and_is_not_bought_again(denv, sim):
    """Issue 11: a 404 on a pending certificate is a failure with its reason; only --retry-failed buys again."""
    sim.ctl("issue_delay", {"seconds": -1})  # stays requesting
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    cid = int(denv.state_json()["certificates"]["shop-www"]["ids"]["dnsimple.pending_id"])
    sim.ctl("forget_certificate", {"id": cid})
    r = denv.run("apply", "--auto-approve")
    assert r.code == 1, r
    assert f"pending DNSimple certificate {cid} is gone at DNSimple (HTTP 404)" in r.err, r
    assert "--retry-failed" in r.err
    rec = denv.state_json()["certificates"]["shop-www"]
    assert rec["phase"] == "failed" and "dnsimple.pending_id" not in rec.get("ids", {}), rec
    denv.run("apply", "--auto-approve")
    denv.run("apply", "--auto-approve", "--wait", "10s")
    assert sim.count("purchaseLetsencryptCertificate") == 1  # nothing bought without the operator
    sim.ctl("issue_delay", {"seconds": 0.2})
    r = denv.run("apply", "--auto-approve", "--retry-failed", "--wait", "60s", check=0)
    assert sim.count("purchaseLetsencryptCertificate") == 2, r
    check_dnsimple_outputs(denv.cert_dir("shop-www"), ["pizza.company", "shop.pizza.company", "www.pizza.company"])
