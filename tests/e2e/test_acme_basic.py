"""The acme issuer end to end against the real Pebble (tests/peers): http-01 through a web root, dns-01 through an
rfc2136 issuer against BIND, renewal, reinstall without a new order, and the answers always removed."""
import json
import os
from pathlib import Path

import pytest

from acme_env import eab_key
from conftest import cert_names, cert_serial, manifest, openssl, pubkey

NAMES = ["peers.test", "www.peers.test"]
STEPS = ["prepare", "order", "authorize", "finalize", "download", "install", "cleanup"]


def check_acme_outputs(d, names, pebble):
    """The key matches, the names are right, and the chain verifies to Pebble's root."""
    d = Path(d)
    crt, key, ca = d / "tls.crt", d / "tls.key", d / "ca.crt"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert pubkey(crt, False) == pubkey(key, True), "certificate does not match key"
    assert cert_names(crt) == sorted(names)
    assert ca.exists()
    r = openssl("verify", "-CAfile", str(pebble.roots), "-untrusted", str(crt), str(crt))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def record(env, name):
    r = env.run("state", "show", name, check=0)
    return json.loads(r.out)


def no_secret_in(env):
    """Nothing private in the state file, and the account key lives in the key store only."""
    text = env.state.read_text() if env.state.exists() else ""
    assert "PRIVATE KEY" not in text


@pytest.fixture
def web(env, peers):
    """Pebble validating http-01 against a web root served on its http port (every name is 127.0.0.1)."""
    cts = peers.challtestsrv()
    root = env.dir / "www"
    pebble, _ = peers.pebble_with_webroot(cts.server, root, env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0"})
    env.write_config(extra_issuers=pebble.issuer_yaml(solvers=f"- http01: {{webroot: {root}}}\n"))
    env.pebble, env.webroot = pebble, root
    return env


def challenge_files(root):
    d = Path(root) / ".well-known" / "acme-challenge"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_http01_webroot_issues_then_no_changes(web):
    web.repo.write("site.yaml", manifest("site", NAMES, issuer="le"))
    web.repo.commit()
    plan = web.plan_json()
    ch = plan["changes"][0]
    assert ch["action"] == "create" and not ch["paid"], ch
    assert ch["steps"] == STEPS, ch
    r = web.run("apply", "--wait", "2m", check=0)
    assert "1 done" in r.out, r
    check_acme_outputs(web.cert_dir("site"), NAMES, web.pebble)
    assert web.pebble.orders_created() == 1 and len(web.pebble.issued()) == 1
    assert cert_serial(web.cert_dir("site") / "tls.crt") == web.pebble.issued()[0].lstrip("0")
    # the answers are gone from the web root and from the record
    assert challenge_files(web.webroot) == []
    rec = web.state_json()["certificates"]["site"]
    assert rec["phase"] == "ready" and not rec.get("tokens"), rec
    assert rec["ids"]["acme.installed_certificate"].startswith("https://127.0.0.1:")
    assert "acme.order" not in rec["ids"] and "acme.ordering" not in rec["ids"]
    no_secret_in(web)
    r = web.run("apply", check=0)
    assert "No changes" in r.out, r
    assert web.pebble.orders_created() == 1


def test_account_is_registered_once_and_reused(web):
    web.repo.write("a.yaml", manifest("a", ["a.peers.test"], issuer="le"))
    web.repo.write("b.yaml", manifest("b", ["b.peers.test"], issuer="le"))
    web.repo.commit()
    r = web.run("apply", "--wait", "2m", check=0)
    assert "2 done" in r.out, r
    log = web.pebble.log()
    created = log.count("There are now 1 accounts") + log.count("There are now 2 accounts")
    web.repo.write("c.yaml", manifest("c", ["c.peers.test"], issuer="le"))
    web.repo.commit()
    r = web.run("apply", "--wait", "2m", check=0)
    assert "1 done" in r.out, r
    # the second run found the same account with the stored key: no new account at Pebble
    assert "There are now 2 accounts" not in web.pebble.log(), (created, web.pebble.log()[-2000:])
    for n in ("a", "b", "c"):
        check_acme_outputs(web.cert_dir(n), [f"{n}.peers.test"], web.pebble)


def test_reinstall_after_lost_outputs_makes_no_new_order(web):
    web.repo.write("site.yaml", manifest("site", NAMES, issuer="le"))
    web.repo.commit()
    web.run("apply", "--wait", "2m", check=0)
    d = web.cert_dir("site")
    serial = cert_serial(d / "tls.crt")
    for f in ("tls.crt", "tls.key", "ca.crt"):
        (d / f).unlink()
    plan = web.plan_json()
    assert plan["changes"][0]["action"] == "reinstall", plan
    assert plan["changes"][0]["steps"] == ["reinstall"]
    r = web.run("apply", check=0)
    assert "1 done" in r.out, r
    assert cert_serial(d / "tls.crt") == serial
    check_acme_outputs(d, NAMES, web.pebble)
    assert web.pebble.orders_created() == 1


def test_renewal_orders_again_with_a_new_key(web):
    web.repo.write("site.yaml", manifest("site", NAMES, issuer="le"))
    web.repo.commit()
    web.run("apply", "--wait", "2m", check=0)
    d = web.cert_dir("site")
    old_serial, old_key = cert_serial(d / "tls.crt"), pubkey(d / "tls.key", True)
    # Pebble issues for an hour: a renewBefore longer than that makes it due now
    web.repo.write("site.yaml", manifest("site", NAMES, issuer="le", extra="renewBefore: 2h\n"))
    web.repo.commit()
    plan = web.plan_json()
    assert plan["changes"][0]["action"] == "renew" and not plan["changes"][0]["paid"], plan
    r = web.run("apply", "--wait", "2m", check=0)
    assert "1 done" in r.out, r
    assert web.pebble.orders_created() == 2 and len(web.pebble.issued()) == 2
    assert cert_serial(d / "tls.crt") != old_serial and pubkey(d / "tls.key", True) != old_key
    check_acme_outputs(d, NAMES, web.pebble)
    assert challenge_files(web.webroot) == []


def test_webroot_per_host(env, peers):
    """"{host}" in the webroot: the answer goes under the name's own document root."""
    cts = peers.challtestsrv()
    root = env.dir / "sites"
    pebble, _ = peers.pebble_with_webroot(cts.server, root / "one.peers.test", env={"PEBBLE_VA_NOSLEEP": "1"})
    env.write_config(extra_issuers=pebble.issuer_yaml(solvers=f"- http01: {{webroot: \"{root}/{{host}}\"}}\n"))
    env.repo.write("one.yaml", manifest("one", ["one.peers.test"], issuer="le"))
    env.repo.commit()
    r = env.run("apply", "--wait", "2m", check=0)
    assert "1 done" in r.out, r
    check_acme_outputs(env.cert_dir("one"), ["one.peers.test"], pebble)
    assert challenge_files(root / "one.peers.test") == []


def test_wildcard_without_dns01_is_a_validate_error(web):
    web.repo.write("wild.yaml", manifest("wild", ["\"*.peers.test\""], issuer="le"))
    web.repo.commit()
    r = web.run("validate", check=1)
    assert 'certificate "wild": wildcard *.peers.test needs a dns01 solver' in (r.out + r.err), r
    assert web.pebble.orders_created() == 0


def test_dns01_through_rfc2136_with_a_wildcard(env, peers):
    bind = peers.bind(zones=["peers.test"])
    pebble = peers.pebble(dns=bind.server, env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0"})
    solvers = f"- dns01: {{provider: corpdns, resolvers: [\"{bind.server}\"], propagation: {{interval: 1s}}}}\n"
    env.write_config(extra_issuers=pebble.issuer_yaml(solvers=solvers) + bind.issuer_yaml())
    names = ["peers.test", "*.peers.test"]
    quoted = ["peers.test", "\"*.peers.test\""]
    env.repo.write("wild.yaml", manifest("wild", quoted, issuer="le"))
    env.repo.commit()
    plan = env.plan_json()
    assert plan["changes"][0]["steps"] == STEPS
    r = env.run("apply", "--wait", "2m", check=0, env={"TSIG_SECRET": bind.secret})
    assert "1 done" in r.out, r
    check_acme_outputs(env.cert_dir("wild"), names, pebble)
    assert pebble.orders_created() == 1
    # both answers (the name and its wildcard share _acme-challenge.peers.test) were removed
    assert bind.txt("_acme-challenge.peers.test") == []
    rec = env.state_json()["certificates"]["wild"]
    assert not rec.get("tokens"), rec
    assert bind.secret not in env.state.read_text() and bind.secret not in r.out + r.err


def test_failed_challenge_is_reported_whole_and_a_new_order_follows(env, peers):
    """No web server yet: Pebble's validation fails; the problem is shown whole, the answers are removed, and the
    next apply places a new order (the failed one can never be finalized)."""
    cts = peers.challtestsrv()
    pebble = peers.pebble(dns=cts.server, env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0"})
    root = env.dir / "www"
    env.write_config(extra_issuers=pebble.issuer_yaml(solvers=f"- http01: {{webroot: {root}}}\n"))
    env.repo.write("site.yaml", manifest("site", ["www.peers.test"], issuer="le"))
    env.repo.commit()
    r = env.run("apply")
    assert r.code != 0 and "1 failed" in r.out, r
    assert "http-01 challenge for www.peers.test failed: connection (400)" in r.err, r
    assert "connection refused" in r.err and "a new order follows at the next attempt" in r.err, r
    rec = record(env, "site")
    assert rec["failure_class"] == "transient" and rec["step"] == "order", rec
    assert not rec.get("tokens") and challenge_files(root) == []
    peers.webroot_server(root, pebble.http_port)
    r = env.run("apply", check=0)
    assert "1 done" in r.out, r
    assert pebble.orders_created() == 2
    check_acme_outputs(env.cert_dir("site"), ["www.peers.test"], pebble)
    assert challenge_files(root) == []


def test_validate_checks_the_directory_and_the_eab_key(env, peers):
    """validate --credentials reads the EAB key (never shown); --online reads the directory: EAB required, ToS."""
    cts = peers.challtestsrv()
    kid, hmac = eab_key()
    pebble = peers.pebble(dns=cts.server, eab=(kid, hmac), env={"PEBBLE_VA_NOSLEEP": "1"})
    root = env.dir / "www"
    root.mkdir()
    sol = f"- http01: {{webroot: {root}}}\n"
    env.write_config(extra_issuers=pebble.issuer_yaml(solvers=sol))
    env.repo.commit()
    r = env.run("validate", "--online")
    assert r.code == 1 and "issuer le: the CA requires externalAccountBinding (keyID, hmacKey)" in r.err, r
    eab = f"  externalAccountBinding: {{keyID: {kid}, hmacKey: {{env: EAB_HMAC}}}}\n"
    env.write_config(extra_issuers=pebble.issuer_yaml(solvers=sol, extra=eab))
    r = env.run("validate", "--credentials")
    assert r.code == 1 and "externalAccountBinding.hmacKey: environment variable EAB_HMAC" in r.err, r
    r = env.run("validate", "--credentials", env={"EAB_HMAC": "@@@###$$$"})
    assert r.code == 1 and "externalAccountBinding.hmacKey is not base64url" in r.err, r
    r = env.run("validate", "--online", env={"EAB_HMAC": hmac})
    assert f"issuer le (acme): ok: ACME directory {pebble.directory}" in r.out, r
    env.write_config(extra_issuers=pebble.issuer_yaml(solvers=sol, extra=eab).replace(
        "termsOfServiceAgreed: true", "termsOfServiceAgreed: false"))
    r = env.run("validate", "--online", env={"EAB_HMAC": hmac})
    assert "the CA has terms of service" in r.err and "set termsOfServiceAgreed: true" in r.err, r
    assert hmac not in r.out + r.err


class RetryAfterFront:
    """An HTTPS front for Pebble (which never sends Retry-After) adding "Retry-After: <n>" to every answer about an
    order that is not finished, and recording when each order was read. Requests pass through with their Host header,
    so Pebble builds every URL (and checks every JWS url) for the front."""

    def __init__(self, pebble, seconds):
        import http.client
        import http.server
        import ssl
        import threading
        import time

        from pg_env import free_port

        self.port, self.seconds, self.reads, self.lock = free_port(), seconds, [], threading.Lock()
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        cctx = ssl.create_default_context(cafile=str(pebble.ca_file))
        front = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPSConnection("127.0.0.1", pebble.port, context=cctx, timeout=30)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
                conn.request(self.command, self.path, body=body or None, headers=hdrs)
                res = conn.getresponse()
                data = res.read()
                extra = []
                if self.path.startswith("/my-order/"):
                    unfinished = res.status == 200 and json.loads(data).get("status") in ("pending", "processing")
                    if unfinished:
                        extra.append(("Retry-After", str(front.seconds)))
                    with front.lock:
                        front.reads.append((time.monotonic(), unfinished))
                self.send_response(res.status)
                for k, v in res.getheaders():
                    if k.lower() not in ("connection", "content-length", "transfer-encoding"):
                        self.send_header(k, v)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_HEAD = relay

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(str(pebble.dir / "localhost.pem"), str(pebble.dir / "localhost.key"))
        self.httpd.socket = sctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_retry_after_is_honoured_between_polls(env, peers):
    """The CA's Retry-After decides when an unfinished order is read again (never sooner)."""
    cts = peers.challtestsrv()
    root = env.dir / "www"
    pebble, _ = peers.pebble_with_webroot(cts.server, root, env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0"})
    front = peers._keep(RetryAfterFront(pebble, 2))
    yaml = pebble.issuer_yaml(solvers=f"- http01: {{webroot: {root}}}\n").replace(pebble.directory, front.directory)
    env.write_config(extra_issuers=yaml)
    env.repo.write("site.yaml", manifest("site", ["www.peers.test"], issuer="le"))
    env.repo.commit()
    r = env.run("apply", "--wait", "2m", check=0)
    assert "1 done" in r.out, r
    check_acme_outputs(env.cert_dir("site"), ["www.peers.test"], pebble)
    reads = list(front.reads)
    told = [(a, b) for a, b in zip(reads, reads[1:]) if a[1]]  # reads that followed an answer with Retry-After
    assert told, reads
    # never sooner than the CA asked (whole seconds: at least 1 s of the 2 s), where 250 ms would be the default
    assert all(b[0] - a[0] >= 0.95 for a, b in told), [round(b[0] - a[0], 2) for a, b in told]
