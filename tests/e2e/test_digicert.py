"""The digicert issuer end to end against the DigiCert simulator (tests/fakes/digicert), which verifies request
tokens in the DNSimple simulator's zone store or in fileauth.txt served from a loopback webroot."""
import json
import os
import signal
import time
from pathlib import Path

from conftest import cert_names, cert_serial, manifest, openssl, pubkey
from digicert_env import API_KEY, AUTH_KEY, dc, dc_ca_dir, denv, dns, issuer_yaml, web  # noqa: F401

NAMES = ["pizza.company", "www.pizza.company", "shop.pizza.company"]


def shop(extra=""):
    return manifest("shop", NAMES, issuer="dc", extra="commonName: pizza.company\n" + extra)


def check_digicert_outputs(d, names):
    """tls.crt = leaf + intermediate, ca.crt = the root; the key matches; the chain verifies to the root."""
    d = Path(d)
    crt, key, ca = d / "tls.crt", d / "tls.key", d / "ca.crt"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert pubkey(crt, False) == pubkey(key, True), "certificate does not match key"
    assert cert_names(crt) == sorted(names)
    assert crt.read_text().count("BEGIN CERTIFICATE") == 2
    assert ca.read_text().count("BEGIN CERTIFICATE") == 1
    r = openssl("x509", "-in", str(ca), "-noout", "-subject", "-issuer")
    assert "Root" in r.stdout and r.stdout.count("Root") == 2, r.stdout  # self-signed root
    r = openssl("verify", "-CAfile", str(ca), "-untrusted", str(crt), str(crt))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def record(env, name="shop"):
    """The record as `state show` gives it (the journal replayed: state.json may not exist yet)."""
    r = env.run("state", "show", name, check=0)
    return json.loads(r.out)


def sim_order(dc, i=0):
    """The simulator's internal view of the i-th order (names, how each was proven)."""
    orders = dc.orders()
    orders = orders if isinstance(orders, list) else orders["orders"]
    return dc.ctl(f"orders/{orders[i]['id']}")


def order_bodies(dc):
    return [json.loads(e["body"]) for e in dc.log("order_create")]


def test_instant_issuance_with_a_txt_token_at_the_name(denv, dc, dns):
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    plan = denv.plan_json()
    ch = plan["changes"][0]
    assert ch["paid"] and ch["product"] == "cloud_dv_geotrust"
    assert ch["steps"] == ["prepare", "place", "order", "await", "download", "install", "cleanup"]
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)
    c = dc.ctl("counters")
    assert c["order_create"] == 1 and c["immediate_issued"] == 1
    assert c.get("token_variant_exact", 0) >= 1 and not c.get("token_variant_rstrip") and not c.get(
        "token_variant_base64")
    body = order_bodies(dc)[0]
    assert body["use_auth_key"] is True and body["dcv_method"] == "dns-txt-token"
    assert body["certificate"]["common_name"] == "pizza.company"
    assert sorted(body["certificate"]["dns_names"]) == ["shop.pizza.company", "www.pizza.company"]
    assert body["certificate"]["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
    assert body["order_validity"] == {"years": 1} and body["skip_approval"] is True
    assert len(body["alternative_order_id"]) == 36 and "renewal_of_order_id" not in body
    order = sim_order(dc)
    assert order["dcv_how"] == {n: f"request_token:exact:{n}" for n in NAMES}
    # the TXT records were removed after issuance; nothing pending is left behind
    assert dns.txt() == []
    rec = denv.state_json()["certificates"]["shop"]
    assert rec["phase"] == "ready" and not rec.get("tokens")
    assert rec["ids"]["digicert.installed_order_id"] == str(order["id"])
    # the pending order's key and CSR are gone; the key lives on in the key store, by serial
    keys = denv.state.parent / "keys"
    assert not list(keys.glob("digicert-*"))
    assert [p.name for p in (keys / "store" / "shop").iterdir()] == [rec["serial"] + ".pem"]
    denv.run("plan", "--detailed-exitcode", check=0)


def test_instant_issuance_with_a_token_at_dnsauth(denv, dc, dns):
    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url, label="_dnsauth"))
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    dc.ctl("fault", {"endpoint": "order_create", "mode": "extra_fields", "count": 1})
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    assert sim_order(dc)["dcv_how"] == {n: f"request_token:exact:_dnsauth.{n}" for n in NAMES}
    c = dns.ctl("counters")
    assert c.get("createZoneRecord", 0) == 3 and c.get("deleteZoneRecord", 0) == 3
    assert dns.txt() == []
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)


def test_http_token_through_the_webroot(denv, dc, web):
    denv.repo.write("shop.yaml", shop("validation: {method: http-token}\n"))
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    body = order_bodies(dc)[0]
    assert body["dcv_method"] == "http-token"
    assert sim_order(dc)["dcv_how"] == {n: f"request_token:exact:{n}" for n in NAMES}
    assert dc.count("token_verified") == 3
    assert not web.fileauth().exists(), "fileauth.txt was not removed after issuance"
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)


def test_wildcards_need_dns_validation(denv, dc):
    denv.repo.write("w.yaml", manifest("wild", ['"*.pizza.company"'], issuer="dc",
                                       extra="validation: {method: http-token}\n"))
    denv.repo.commit()
    r = denv.run("validate", check=1)
    assert "wildcard names need DNS validation" in r.out + r.err, r
    assert dc.count("order_create") == 0


def test_config_errors_name_file_line_and_column(denv, dc, dns):
    def where(needle):
        for i, line in enumerate(denv.config.read_text().splitlines()):
            if needle in line:
                return f"certsync.yaml:{i + 1}:{line.index(needle) + 1}:"
        raise AssertionError(needle)

    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url, product="ev_plus"))
    r = denv.run("validate", check=1)
    assert where("ev_plus") + ' product: "ev_plus" is not one of' in r.out + r.err, r
    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url).replace("issuer: dns,", "issuer: nodns,"))
    r = denv.run("validate", check=1)
    assert where("nodns") + ' issuers.dc.validation.dns: no issuer named "nodns"' in r.out + r.err, r
    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url).replace("issuer: dns,", "issuer: internal,"))
    r = denv.run("validate", check=1)
    assert "cannot place DNS records" in r.out + r.err, r


def test_a_stale_authkey_leaves_the_order_pending_until_fixed(denv, dc, dns):
    dc.ctl("fault", {"endpoint": "auth_keys_list", "mode": "stale_auth_key"})
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 pending" in r.out, r
    rec = denv.state_json()["certificates"]["shop"]
    assert rec["phase"] == "pending" and rec["step"] == "await"
    assert len(rec["tokens"]) == 3 and len(dns.txt()) == 3
    assert dc.count("token_hmac_mismatch") >= 1 and dc.count("immediate_issued") == 0
    # the pending key and CSR survive in the key store, 0600
    pending = denv.state.parent / "keys" / "store" / "shop"
    assert sorted(p.name for p in pending.iterdir()) == ["pending-csr", "pending-key"]
    assert "PRIVATE KEY" in (pending / "pending-key").read_text()
    assert not list((denv.state.parent / "keys").glob("digicert-*"))
    for k in (denv.state.parent / "keys").glob("*"):
        assert (k.stat().st_mode & 0o077) == 0
    plan = denv.plan_json()
    assert plan["changes"][0]["action"] == "resume"
    dc.ctl("fault", method="DELETE")
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    assert "does not match the account's AuthKey" in r.err, r
    assert dc.count("order_create") == 1 and dc.count("check_dcv") >= 1
    # check-dcv is a bodiless PUT: Content-Length: 0 and a User-Agent, as the doc asks (§1)
    assert dc.count("_missing_content_length") == 0 and dc.count("_missing_user_agent") == 0
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)
    assert dns.txt() == []
    assert not list((denv.state.parent / "keys").glob("digicert-*"))  # the pending key went into the key store


def test_kill_after_the_order_never_orders_twice(denv, dc, dns):
    dc.ctl("fault", {"endpoint": "order_create", "mode": "hang_after", "count": 1, "seconds": 20})
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    p = denv.popen("apply", "--auto-approve")
    deadline = time.time() + 30
    while time.time() < deadline and dc.count("order_create") < 1:
        time.sleep(0.05)
    time.sleep(0.3)  # the order took effect at DigiCert; certsync has not heard back
    p.send_signal(signal.SIGKILL)
    p.communicate()
    dc.ctl("fault", method="DELETE")
    rec = record(denv)
    assert rec["step"] == "find" and rec["ids"]["digicert.alternative_order_id"]
    r = denv.run("apply", "--auto-approve", check=0)
    assert "adopting DigiCert order" in r.err, r
    assert dc.count("order_create") == 1 and dc.count("order_list") == 1
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)
    assert dns.txt() == []


def test_order_that_never_reached_digicert_is_sent_with_the_same_id(denv, dc):
    dc.ctl("fault", {"endpoint": "order_create", "mode": "503_html", "count": 1})
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=1)
    assert "HTTP 503" in r.err and "issuer dc: digicert orderCertificate" in r.err, r
    rec = denv.state_json()["certificates"]["shop"]
    assert rec["step"] == "find" and rec["attempts"] == 1
    alt = rec["ids"]["digicert.alternative_order_id"]
    r = denv.run("apply", "--auto-approve", "--retry-failed", check=0)
    state = denv.state_json()["certificates"]["shop"]
    if state["phase"] != "ready":  # next_try backoff: run past it
        r = denv.run("apply", "--auto-approve", "--wait", "120s", check=0, timeout=300)
    bodies = order_bodies(dc)
    assert len(bodies) == 2 and all(b["alternative_order_id"] == alt for b in bodies), r
    assert dc.count("issued") == 1


def test_renewal_orders_with_renewal_of_order_id_and_a_new_key(denv, dc, dns):
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    d = denv.cert_dir("shop")
    old_serial, old_key = cert_serial(d / "tls.crt"), pubkey(d / "tls.key", True)
    first = denv.state_json()["certificates"]["shop"]["ids"]["digicert.installed_order_id"]
    denv.repo.write("shop.yaml", shop("renewBefore: 4900h\n"))
    denv.repo.commit()
    plan = denv.plan_json()
    assert plan["changes"][0]["action"] == "renew" and plan["changes"][0]["paid"]
    denv.run("apply", "--auto-approve", check=0)
    bodies = order_bodies(dc)
    assert len(bodies) == 2 and bodies[1]["renewal_of_order_id"] == int(first)
    assert bodies[0]["certificate"]["csr"] != bodies[1]["certificate"]["csr"]
    assert cert_serial(d / "tls.crt") != old_serial and pubkey(d / "tls.key", True) != old_key
    check_digicert_outputs(d, NAMES)
    assert dns.txt() == []


def test_renewal_keeps_the_key_with_rotation_never(denv, dc):
    keep = "privateKey: {algorithm: ECDSA, size: 256, rotationPolicy: Never}\n"
    denv.repo.write("shop.yaml", shop(keep))
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    d = denv.cert_dir("shop")
    old_serial, old_key = cert_serial(d / "tls.crt"), pubkey(d / "tls.key", True)
    denv.repo.write("shop.yaml", shop(keep + "renewBefore: 4900h\n"))
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    assert dc.count("order_create") == 2
    assert cert_serial(d / "tls.crt") != old_serial and pubkey(d / "tls.key", True) == old_key


def test_terminal_order_status_is_reported(denv, dc):
    dc.ctl("fault", {"endpoint": "auth_keys_list", "mode": "stale_auth_key"})  # the token never verifies
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 pending" in r.out, r
    oid = int(denv.state_json()["certificates"]["shop"]["ids"]["digicert.order_id"])
    dc.ctl("order_status", {"id": oid, "status": "rejected"})
    r = denv.run("apply", "--auto-approve", check=1)
    assert f"DigiCert order {oid} is rejected" in r.err and "issuer dc" in r.err, r
    assert dc.count("order_create") == 1


def test_wrong_api_key_is_permanent_and_names_the_issuer(denv, dc):
    import os
    os.environ["DIGICERT_API_KEY"] = "wrong-devkey-value-xyz"
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=1)
    assert "issuer dc: DigiCert refused the API key" in r.err and "401" in r.err, r
    assert denv.state_json()["certificates"]["shop"]["phase"] == "failed"
    assert "wrong-devkey-value-xyz" not in r.out + r.err


def test_rate_limited_order_backs_off_and_is_sent_once_more(denv, dc):
    dc.ctl("fault", {"endpoint": "order_create", "mode": "429", "count": 1})
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    t0 = time.time()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    assert time.time() - t0 >= 1  # backed off before sending again
    log = dc.log("order_create")
    assert [e["status"] for e in log] == [429, 201] and log[0]["fault"] == "429"
    assert dc.count("issued") == 1


def test_no_secret_appears_anywhere(denv, dc, dns):
    # No AuthKey yet: certsync creates one (and must keep it to itself too).
    dc.ctl("authkey", method="DELETE")
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    outs = []
    for args in (["plan", "--format", "json"], ["apply", "--auto-approve", "-v", "--log-format", "json"],
                 ["state", "show", "shop"], ["plan", "--refresh"], ["plan", "--format", "markdown"]):
        r = denv.run(*args)
        outs += [r.out, r.err]
    assert dc.count("auth_key_create") == 1
    auth_key = dc.ctl("authkey")["auth_key"]
    assert auth_key and auth_key != AUTH_KEY
    key_pem = (denv.cert_dir("shop") / "tls.key").read_text()
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    store = denv.state.parent / "keys" / "store"
    for f in denv.state.parent.rglob("*"):
        if f.is_file() and store not in f.parents:
            outs.append(f.read_text(errors="replace"))
    # the key is kept only in the key store: 0600 files in 0700 directories
    assert not list((denv.state.parent / "keys").glob("digicert-*"))
    kept = [f for f in store.rglob("*") if f.is_file()]
    assert len(kept) == 1 and key_body in "".join(kept[0].read_text().split("\n"))
    assert all((f.stat().st_mode & 0o777) == 0o600 for f in kept)
    assert all((d.stat().st_mode & 0o777) == 0o700 for d in (store.parent, store, kept[0].parent))
    text = "\n".join(outs)
    assert '"msg"' in text or "level" in text  # the JSON log was captured
    for secret in (API_KEY, auth_key, key_body, key_body[:40]):
        assert secret not in text


def test_failed_token_cleanup_is_retried_on_the_next_apply(denv, dc, dns):
    # DNSimple refuses deletions for two minutes: more than certsync waits in place.
    dns.ctl("fault", {"endpoint": "deleteZoneRecord", "mode": "429", "retry_after": "120"})
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve")
    assert "could not remove a placed DigiCert token" in r.err, r
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)  # installed all the same
    rec = denv.state_json()["certificates"]["shop"]
    assert rec["step"] == "cleanup" and len(rec["tokens"]) == 3 and len(dns.txt()) == 3
    assert denv.plan_json()["changes"][0]["action"] == "resume"
    dns.ctl("fault", method="DELETE")
    r = denv.run("apply", "--auto-approve", check=0)
    assert dns.txt() == [] and not denv.state_json()["certificates"]["shop"].get("tokens"), r
    assert dc.count("order_create") == 1
    denv.run("plan", "--detailed-exitcode", check=0)


def test_removing_a_certificate_removes_its_placed_tokens(denv, dc, dns, web):
    dc.ctl("fault", {"endpoint": "auth_keys_list", "mode": "stale_auth_key"})  # stays pending, tokens out
    denv.repo.write("shop.yaml", shop("validation: {method: http-token}\n"))
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    assert web.fileauth().exists() and len(denv.state_json()["certificates"]["shop"]["tokens"]) == 1
    denv.repo.remove("shop.yaml")
    denv.repo.write("other.yaml", manifest("other", ["other.test"]))
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "shop" not in denv.state_json()["certificates"], r
    assert not web.fileauth().exists()
    keys = denv.state.parent / "keys"
    assert not list(keys.glob("digicert-*")) and not (keys / "store" / "shop").exists()
    assert (keys / "store" / "other").is_dir()  # the certificate that stays keeps its key


def test_a_token_older_than_25_days_is_placed_again(denv, dc, dns):
    dc.ctl("fault", {"endpoint": "auth_keys_list", "mode": "stale_auth_key"})  # the order stays pending
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    st = denv.state_json()
    old = st["certificates"]["shop"]["ids"]["digicert.token"]
    aged = "20" + time.strftime("%y%m%d%H%M%S", time.gmtime(time.time() - 26 * 86400)) + old[14:]
    st["certificates"]["shop"]["ids"]["digicert.token"] = aged
    denv.state.write_text(json.dumps(st))
    time.sleep(1.1)  # a token is per second: the new one must differ from the first
    r = denv.run("apply", "--auto-approve", check=0)
    assert "days old; placing a new one" in r.err, r
    new = denv.state_json()["certificates"]["shop"]["ids"]["digicert.token"]
    assert new not in (old, aged) and abs(int(new[:8]) - int(time.strftime("%Y%m%d", time.gmtime()))) <= 1
    assert {v for _, v in dns.txt()} == {new}
    assert dc.count("order_create") == 1


def test_a_pending_key_left_by_the_previous_version_is_found_and_moved_into_the_key_store(denv, dc, dns, tmp_path):
    """An upgrade in the middle of a paid order: the previous version kept the pending key and CSR as
    <keyDir>/digicert-<name>.key/.csr. They must be found (no second order, the same key), then moved."""
    dc.ctl("fault", {"endpoint": "auth_keys_list", "mode": "stale_auth_key"})  # the order stays pending
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 pending" in r.out, r
    assert dc.count("order_create") == 1
    keys = denv.state.parent / "keys"
    pending = keys / "store" / "shop"
    key_text = (pending / "pending-key").read_text()
    for slot in ("key", "csr"):  # what the previous version would have left
        old = keys / f"digicert-shop.{slot}"
        old.write_text((pending / f"pending-{slot}").read_text())
        old.chmod(0o600)
        (pending / f"pending-{slot}").unlink()
    dc.ctl("fault", method="DELETE")
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    assert "moved the pending order's csr" in r.err and "into the key store" in r.err, r
    assert dc.count("order_create") == 1  # the paid order was not placed again
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)
    (tmp_path / "old.key").write_text(key_text)
    assert pubkey(denv.cert_dir("shop") / "tls.key", True) == pubkey(tmp_path / "old.key", True)
    assert not list(keys.glob("digicert-*"))
    rec = denv.state_json()["certificates"]["shop"]
    assert [p.name for p in pending.iterdir()] == [rec["serial"] + ".pem"]


def test_reinstall_comes_from_the_key_store_and_keeps_the_key(denv, dc):
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    d = denv.cert_dir("shop")
    serial, key = cert_serial(d / "tls.crt"), pubkey(d / "tls.key", True)
    (d / "tls.crt").write_text("tampered\n")
    plan = denv.plan_json()
    assert plan["changes"][0]["action"] == "reinstall" and not plan["changes"][0]["paid"]
    assert plan["changes"][0]["steps"] == ["reinstall"]
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    assert cert_serial(d / "tls.crt") == serial and pubkey(d / "tls.key", True) == key
    assert dc.count("order_create") == 1 and dc.count("download_certificate") == 0
    check_digicert_outputs(d, NAMES)


def test_several_ttl_authkeys_the_longest_is_named_in_the_order(denv, dc):
    import urllib.request
    dc.ctl("authkey", method="DELETE")
    ids = []
    for days in (5, 90):
        req = urllib.request.Request(f"{dc.url}/services/v2/account/auth-key/{days}", data=b"", method="POST",
                                     headers={"X-DC-DEVKEY": API_KEY, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            ids.append(json.loads(resp.read())["auth_key_id"])
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    assert str(order_bodies(dc)[0]["auth_key_id"]) == str(ids[1])
    assert dc.count("immediate_issued") == 1 and dc.count("auth_key_create") == 2  # the test's own two


def test_refresh_notices_a_revoked_order(denv, dc):
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    denv.run("plan", "--refresh", "--detailed-exitcode", check=0)
    oid = int(denv.state_json()["certificates"]["shop"]["ids"]["digicert.installed_order_id"])
    dc.ctl("order_status", {"id": oid, "status": "revoked"})
    ch = denv.plan_json("--refresh")["changes"][0]
    assert ch["action"] == "replace" and ch["reason_code"] == "drift" and "revoked" in ch["reason"], ch
    assert denv.plan_json()["changes"] == []  # without --refresh nothing is asked


def test_certificates_in_parallel_share_the_zone_and_the_webroot(denv, dc, dns, web):
    denv.repo.write("shop.yaml", shop())
    for n in ("api", "blog", "mail"):
        denv.repo.write(f"{n}.yaml", manifest(n, [f"{n}.pizza.company"], issuer="dc",
                                               extra="validation: {method: http-token}\n"))
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", "--parallelism", "4", check=0)
    assert "4 done" in r.out, r
    assert dc.count("order_create") == 4 and dc.count("immediate_issued") == 4
    for n in ("api", "blog", "mail"):
        check_digicert_outputs(denv.cert_dir(n), [f"{n}.pizza.company"])
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)
    assert dns.txt() == [] and not web.fileauth().exists()
    assert dc.count("auth_keys_list") == 1  # the AuthKey is read once per run


def test_a_pending_order_that_vanishes_fails_and_is_not_ordered_again(denv, dc):
    """Issue 11: an order DigiCert no longer knows is a failure with its reason; only --retry-failed orders again."""
    dc.ctl("fault", {"endpoint": "auth_keys_list", "mode": "stale_auth_key", "count": 1})  # stays pending once
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 pending" in r.out, r
    oid = int(denv.state_json()["certificates"]["shop"]["ids"]["digicert.order_id"])
    dc.ctl("forget_order", {"id": oid})
    r = denv.run("apply", "--auto-approve")
    assert r.code == 1 and f"the pending DigiCert order {oid} is gone at DigiCert" in r.err, r
    assert "--retry-failed" in r.err
    denv.run("apply", "--auto-approve")
    assert dc.count("order_create") == 1  # nothing ordered without the operator
    r = denv.run("apply", "--auto-approve", "--retry-failed", "--wait", "60s", check=0)
    assert dc.count("order_create") == 2, r
    check_digicert_outputs(denv.cert_dir("shop"), NAMES)


def test_key_temp_files_of_a_killed_run_are_swept(denv, dc, tmp_path):
    """Issue 15: digicert-<name>.key.tmp.<pid>.<n> left by a SIGKILLed run goes on the next prepare."""
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    keys = denv.state.parent / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    stale = keys / f"digicert-shop.key.tmp.{dead.pid}.0"
    stale.write_text("half a key")
    mine = keys / f"digicert-shop.key.tmp.{os.getpid()}.0"  # a live process's: kept
    mine.write_text("in use")
    store = keys / "store" / "shop"  # the key store's own temporary pending files
    store.mkdir(parents=True)
    stale_pending = store / f"pending-key.tmp.{dead.pid}.0"
    stale_pending.write_text("half a key")
    denv.repo.write("shop.yaml", shop())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert not stale.exists(), r
    assert not stale_pending.exists(), r
    assert mine.exists()
    assert not [p for p in keys.iterdir() if ".tmp." in p.name and p != mine]
