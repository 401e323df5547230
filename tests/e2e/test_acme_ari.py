"""ACME renewal information (RFC 9773), revocation and http-01 answered by certsync itself, end to end against
a real Pebble (with tests/e2e/ari_server.py in front for renewalInfo) and pebble-challtestsrv as its DNS."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ari_server import AriServer, ari_cert_id, rfc3339
from acme_env import wait_until
from conftest import BIN, cert_names, cert_serial, manifest, openssl, pubkey

NAME = "www.ari.test"


@pytest.fixture
def acme(peers):
    """Pebble (no VA sleeps) resolving every name to 127.0.0.1, with the ARI front; (pebble, ari)."""
    cts = peers.challtestsrv()
    peb = peers.pebble(dns=cts.server, env={"PEBBLE_VA_NOSLEEP": "1"})
    ari = peers._keep(AriServer(peb))
    return peb, ari


def acme_issuer(peb, directory, solvers="- http01: {serve: true}\n", extra=""):
    return peb.issuer_yaml(solvers=solvers, extra=extra).replace(f"directory: {peb.directory}",
                                                                 f"directory: {directory}")


def setup_env(env, peb, ari, policy="", listen=True, interval=None):
    """Issuer "le" through the ARI front answering http-01 itself on Pebble's http port; certificate www."""
    server = f"server:\n  listen: 127.0.0.1:{peb.http_port}\n" if listen else ""
    env.write_config(extra_issuers=acme_issuer(peb, ari.directory), extra=policy + server)
    if interval:
        text = env.config.read_text().replace("  path: certificates\n", f"  path: certificates\n  interval: {interval}\n")
        env.config.write_text(text)
    env.repo.write("www.yaml", manifest("www", [NAME], issuer="le"))
    env.repo.commit()


def check_outputs(d, peb):
    """The key matches, the name is right, and the chain verifies to Pebble's root."""
    crt, key = d / "tls.crt", d / "tls.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert pubkey(crt, False) == pubkey(key, True), "certificate does not match key"
    assert cert_names(crt) == [NAME]
    assert (d / "ca.crt").exists()
    r = openssl("verify", "-CAfile", str(peb.roots), "-untrusted", str(crt), str(crt))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def pebble_status(peb, serial):
    """The management API's view of a certificate: {"Status": "Valid"|"Revoked", "Reason": ...}."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(peb.ca_file))
    with urllib.request.urlopen(f"https://127.0.0.1:{peb.mgmt_port}/cert-status-by-serial/{serial}", context=ctx,
                                timeout=10) as r:
        return json.load(r)


def rec(env, name="www"):
    return env.state_json()["certificates"][name]


# ---------------------------------------------------------------- ARI


def test_ari_window_is_asked_after_install_and_shown_in_every_plan_format(env, acme):
    peb, ari = acme
    now = time.time()
    start, end = now + 1200, now + 1500  # inside the 1 h certificate, before its ⅓-lifetime point
    ari.set_window(start, end)
    setup_env(env, peb, ari)
    env.run("apply", check=0)
    crt = env.cert_dir("www") / "tls.crt"
    check_outputs(env.cert_dir("www"), peb)
    # The id asked is the certificate's own (AKI keyIdentifier . serial), once, after the install.
    assert ari.asked_ids() == [ari_cert_id(crt)]
    # No renewal yet: the window is ahead; every format shows it.
    r = env.run("plan", "--detailed-exitcode", check=0)
    assert "Renewal windows suggested by the CA (ARI):" in r.out, r
    assert re.search(rf"www +{rfc3339(start)} → {rfc3339(end)}, renews at ", r.out), r.out
    p = env.plan_json()
    w = p["renewal_windows"]
    assert [x["name"] for x in w] == ["www"] and w[0]["start"] == rfc3339(start) and w[0]["end"] == rfc3339(end)
    assert rfc3339(start) <= w[0]["renew_at"] <= rfc3339(end)
    md = env.run("plan", "--format", "markdown", check=0).out
    assert "### Renewal windows suggested by the CA (ARI)" in md and rfc3339(start) in md
    ids = rec(env)["ids"]
    assert ids["acme.ari.id"] == ari_cert_id(crt) and int(ids["acme.ari.start"]) == int(start)


def test_a_window_in_the_past_renews_now_and_the_new_order_replaces_the_old_certificate(env, acme):
    peb, ari = acme
    now = time.time()
    ari.set_window(now - 600, now - 300)  # the CA says: renew now
    setup_env(env, peb, ari)
    env.run("apply", check=0)
    crt = env.cert_dir("www") / "tls.crt"
    first_serial, first_id = cert_serial(crt), ari_cert_id(crt)
    # (a badNonce retry sends a request again: Pebble rejects 5 % of nonces, so payloads may repeat)
    assert all(o.get("replaces") is None for o in ari.order_payloads())  # a first certificate replaces nothing
    p = env.plan_json()
    [c] = p["changes"]
    assert c["action"] == "renew" and c["reason_code"] == "renewal_due", c
    assert c["reason"].startswith("inside the CA's suggested renewal window (ARI) "), c
    text = env.run("plan").out
    assert "inside the CA's suggested renewal window (ARI)" in text
    ari.set_window(time.time() + 1200, time.time() + 1500)  # the successor's window is ahead
    env.run("apply", check=0)
    orders = ari.order_payloads()
    assert orders[-1].get("replaces") == first_id, orders
    assert cert_serial(crt) != first_serial
    check_outputs(env.cert_dir("www"), peb)
    assert ari.asked_ids() == [first_id, ari_cert_id(crt)]
    assert env.run("plan", "--detailed-exitcode").code == 0  # settled: nothing due


def expire_retry_after(env):
    """As if the Retry-After of the recorded window had passed (the state says when to ask again)."""
    st = env.state_json()
    st["certificates"]["www"]["ids"]["acme.ari.next"] = str(int(time.time()) - 1)
    env.state.write_text(json.dumps(st))


def test_apply_from_cron_asks_again_once_retry_after_passes(env, acme):
    peb, ari = acme
    ari.set_window(time.time() + 1200, time.time() + 1500)
    setup_env(env, peb, ari)
    env.run("apply", check=0)
    first_id = ari_cert_id(env.cert_dir("www") / "tls.crt")
    env.run("apply", check=0)
    assert ari.asked_ids() == [first_id]  # Retry-After (an hour) has not passed: not asked again
    ari.set_window(time.time() - 600, time.time() - 300)
    expire_retry_after(env)
    r = env.run("apply", check=0)
    assert "inside the CA's suggested renewal window (ARI)" in r.out, r
    assert ari.asked_ids()[:2] == [first_id, first_id]
    assert ari.order_payloads()[-1].get("replaces") == first_id


def test_run_asks_again_when_retry_after_passes_and_renews_inside_the_new_window(env, acme):
    peb, ari = acme
    ari.set_window(time.time() + 1200, time.time() + 1500)
    setup_env(env, peb, ari, interval="1s")
    env.run("apply", check=0)
    crt = env.cert_dir("www") / "tls.crt"
    first_id = ari_cert_id(crt)
    # The CA moves the window into the past, and Retry-After has passed (the state says when to ask again).
    ari.set_window(time.time() - 600, time.time() - 300)
    expire_retry_after(env)
    full = dict(os.environ, CERTSYNC_LOG_FORMAT="text")
    proc = subprocess.Popen([BIN, "run", "--config", str(env.config)], cwd=env.dir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)
    try:
        wait_until(lambda: any(o.get("replaces") == first_id for o in ari.order_payloads()), timeout=60,
                   what="a renewal order from run replacing the first certificate")
        def renewed():
            try:
                return ari_cert_id(crt) != first_id
            except subprocess.CalledProcessError:  # read while the symlink swaps
                return False

        wait_until(renewed, timeout=60, what="the renewed certificate installed")
        assert ari.asked_ids()[:2] == [first_id, first_id]  # after the install, then again by run
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "renewal window suggested by the CA (ARI)" in err


# ---------------------------------------------------------------- revocation


def test_revoke_revokes_at_the_ca_with_the_reason_and_the_next_apply_replaces_it(env, acme):
    peb, ari = acme
    setup_env(env, peb, ari)
    env.run("apply", check=0)
    crt = env.cert_dir("www") / "tls.crt"
    serial = cert_serial(crt)
    assert pebble_status(peb, serial)["Status"] == "Valid"
    r = env.run("revoke", "www", "--reason", "keyCompromise", check=0)
    assert f"Revoked www (serial {serial}, reason keyCompromise)" in r.out, r
    st = pebble_status(peb, serial)
    assert st["Status"] == "Revoked", st
    assert {x.get("reason") for x in ari.revocation_payloads()} == {1}
    history = " ".join(e["what"] for e in rec(env)["history"])
    assert "revoked serial" in history and "keyCompromise" in history
    [c] = env.plan_json()["changes"]
    assert c["action"] == "replace" and c["reason_code"] == "revoked", c
    env.run("apply", check=0)
    assert cert_serial(crt) != serial
    check_outputs(env.cert_dir("www"), peb)
    assert env.run("plan", "--detailed-exitcode").code == 0


def test_a_revoked_certificate_key_is_not_reused_even_with_rotation_never(env, acme):
    peb, ari = acme
    setup_env(env, peb, ari)
    env.repo.write("www.yaml", manifest("www", [NAME], issuer="le", extra="privateKey: {rotationPolicy: Never}"))
    env.repo.commit()
    env.run("apply", check=0)
    crt = env.cert_dir("www") / "tls.crt"
    old = pubkey(crt, False)
    env.run("revoke", "www", "--reason", "keyCompromise", check=0)
    env.run("apply", check=0)
    check_outputs(env.cert_dir("www"), peb)
    assert pubkey(crt, False) != old  # the replacement has a new key


def test_revoke_refuses_what_it_cannot_revoke(env, acme):
    peb, ari = acme
    setup_env(env, peb, ari)
    env.repo.write("internal.yaml", manifest("int", ["int.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    r = env.run("revoke", "int", check=1)
    assert "issued by internal (type ca): certsync revoke revokes certificates of acme issuers only" in r.err, r
    r = env.run("revoke", "nope", check=1)
    assert "nope: no certificate of that name in the state" in r.err, r
    r = env.run("revoke", "www", "--reason", "bored", check=64)
    assert 'unknown revocation reason "bored"' in r.err, r
    assert not ari.revocation_payloads()


def test_revoke_on_remove_revokes_before_the_outputs_go(env, acme):
    peb, ari = acme
    setup_env(env, peb, ari, policy="  revokeOnRemove: true\n")
    env.repo.write("keep.yaml", manifest("keep", ["keep.example.test"]))  # the folder stays when www goes
    env.repo.commit()
    env.run("apply", check=0)
    serial = cert_serial(env.cert_dir("www") / "tls.crt")
    env.repo.remove("www.yaml")
    env.repo.commit()
    p = env.plan_json()
    assert [(c["name"], c["action"]) for c in p["changes"]] == [("www", "remove")]
    env.run("apply", check=0)
    assert pebble_status(peb, serial)["Status"] == "Revoked"
    assert {x.get("reason") for x in ari.revocation_payloads()} == {5}  # cessationOfOperation
    assert not env.cert_dir("www").exists()
    assert "www" not in env.state_json()["certificates"]


# ---------------------------------------------------------------- http-01 answered by certsync


def test_apply_answers_http01_itself_and_stops_listening_after(env, acme):
    peb, ari = acme
    setup_env(env, peb, ari)
    env.run("apply", check=0)
    check_outputs(env.cert_dir("www"), peb)
    assert len(peb.issued()) == 1
    # The listener was the apply's only: nothing answers there any more.
    import socket

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", peb.http_port), timeout=5).close()


def test_serve_without_server_listen_is_a_validate_error(env, acme):
    peb, ari = acme
    setup_env(env, peb, ari, listen=False)
    r = env.run("validate", check=1)
    assert ("issuers.le.solvers[0]: http01.serve needs server.listen (the address the CA's validation reaches, "
            "port 80 behind your load balancer)") in r.err, r
    r = env.run("apply", check=1)
    assert "http01.serve needs server.listen" in r.err, r
    assert not peb.issued()


def test_run_answers_http01_on_its_listener(env, acme):
    peb, ari = acme
    setup_env(env, peb, ari, interval="1s")
    full = dict(os.environ, CERTSYNC_LOG_FORMAT="text")
    proc = subprocess.Popen([BIN, "run", "--config", str(env.config)], cwd=env.dir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)

    def ready():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{peb.http_port}/readyz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_until(ready, timeout=60, what="run to issue and be ready")
        check_outputs(env.cert_dir("www"), peb)
        # Answers are held only while validated: none is left, and an unknown token is 404.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{peb.http_port}/.well-known/acme-challenge/abc", timeout=2)
            raise AssertionError("an unknown token was answered")
        except urllib.error.HTTPError as e:
            assert e.code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
