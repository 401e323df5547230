"""The `acme` issuer and the `rfc2136` DNS driver against the REAL Pebble and BIND (docs/acme.md).

Every test starts its own peers on free loopback ports (tests/peers/) with
PEBBLE_VA_NOSLEEP=1, so validation is real but immediate. What is checked is
the user contract: the config names, the steps, the error classes and their
messages, the cleanup of every placed record, and Pebble's own log of what
was ordered, validated, finalized and issued.
"""
import base64
import json
import os
import re

import pytest

from acme_env import Http01, challenge_files, eab_key, verify_acme_outputs
from conftest import manifest

FAST = {"PEBBLE_VA_NOSLEEP": "1"}
ZONE = "peers.test"


def q(names):
    """YAML flow items for names ("*." must be quoted)."""
    return [f'"{n}"' for n in names]


def converged(env, names):
    """Every named certificate is ready, with no step and no placed token left in the state."""
    st = env.state_json()["certificates"]
    for n in names:
        rec = st[n]
        assert rec["phase"] == "ready" and not rec.get("step"), (n, rec)
        assert not rec.get("tokens"), (n, rec)


def log_lines(text, level):
    """The lines of a text log (`<time> <level> <message>`) at level."""
    return [ln for ln in text.splitlines() if re.match(rf"\S+\s+{level}\b", ln)]


def write_certs(env, certs, issuer="le"):
    for name, names in certs.items():
        env.repo.write(f"{name}.yaml", manifest(name, q(names), issuer=issuer))
    return env.repo.commit()


@pytest.fixture
def dns01(env, peers, monkeypatch):
    """BIND authoritative for peers.test (TSIG), Pebble validating against it, issuers le (dns01) + corpdns."""
    bind = peers.bind([ZONE])
    pebble = peers.pebble(dns=bind.server, env=FAST)
    monkeypatch.setenv("TSIG_SECRET", bind.secret)
    env.write_config(extra_issuers=pebble.issuer_yaml("le", solvers=bind.dns01_solver(), extra="  pollInterval: 1s\n")
                     + bind.issuer_yaml("corpdns"))
    return env, bind, pebble


# ---------------------------------------------------------------- dns-01 through rfc2136 (BIND, TSIG)


def test_dns01_rfc2136_wildcard_and_apex_in_one_order(dns01):
    env, bind, pebble = dns01
    certs = {"wild": ["wild.peers.test", "*.wild.peers.test"], "plain": ["dns1.peers.test", "dns2.peers.test"]}
    write_certs(env, certs)
    r = env.run("apply", "--wait", "60s", "-v", "--parallelism", "2")
    assert r.code == 0, r
    converged(env, certs)
    for name, names in certs.items():
        verify_acme_outputs(env.cert_dir(name), names, pebble.roots)
    assert len(pebble.issued()) == 2 and pebble.orders_created() == 2, pebble.issued()
    assert pebble.finalizations() == 2
    # the apex and the wildcard share one TXT name: both values were served at once, through TSIG-signed updates
    adds = [u for u in bind.updates() if "adding an RR at '_acme-challenge.wild.peers.test'" in u]
    assert len(adds) >= 2 and all("key certsync-key" in u for u in adds), bind.updates()
    # each value is added and removed on its own: the other name's value is never wiped with the RRset
    assert not any("deleting rrset" in u for u in bind.updates()), bind.updates()
    assert pebble.validations() == 4, pebble.log()  # one per name, each once
    # nothing left in the zone
    assert bind.acme_txt([n for ns in certs.values() for n in ns]) == {}
    r = env.run("plan", "--detailed-exitcode")
    assert r.code == 0 and "No changes" in r.out, r


def test_rfc2136_wrong_tsig_secret_is_one_configuration_error(dns01, monkeypatch):
    env, bind, pebble = dns01
    wrong = base64.b64encode(b"not the key of this server 12345").decode()
    monkeypatch.setenv("TSIG_SECRET", wrong)
    write_certs(env, {"w": ["w.peers.test"]})
    r = env.run("apply", "--wait", "30s", "-v")
    assert r.code == 1, r
    rec = env.state_json()["certificates"]["w"]
    assert rec["failure_class"] == "config", rec
    err = rec["last_error"]
    assert "corpdns" in err and bind.server in err, err  # names the DNS issuer and the nameserver
    errors = log_lines(r.err, "error")
    assert len(errors) == 1 and "corpdns" in errors[0] and bind.server in errors[0], r.err  # one clear message
    assert wrong not in r.err + r.out + json.dumps(env.state_json())
    assert bind.secret not in r.err + r.out
    assert not any("adding an RR" in u for u in bind.updates()), bind.updates()  # BIND refused them all
    assert bind.acme_txt(["w.peers.test"]) == {}
    assert len(pebble.issued()) == 0 and pebble.orders_created() <= 1
    assert not any(t.get("placed_at") for t in rec.get("tokens", [])), rec  # journaled, never placed
    # the plan says why, and retries it (a configuration problem) once the secret is right
    p = env.run("plan")
    assert "w" in p.out and "corpdns" in p.out, p
    monkeypatch.setenv("TSIG_SECRET", bind.secret)
    r = env.run("apply", "--wait", "60s", "-v")
    assert r.code == 0, r
    converged(env, ["w"])
    verify_acme_outputs(env.cert_dir("w"), ["w.peers.test"], pebble.roots)
    assert len(pebble.issued()) == 1 and pebble.finalizations() == 1
    assert pebble.orders_created() == 1, pebble.log()  # the first order was resumed, not left half-done
    assert bind.acme_txt(["w.peers.test"]) == {}


# ---------------------------------------------------------------- EAB


def test_eab_required_by_pebble(env, peers, tmp_path, monkeypatch):
    kid, hmac = eab_key()
    h = Http01(peers, tmp_path / "webroot", eab=(kid, hmac), env=FAST)
    monkeypatch.setenv("ACME_EAB_HMAC", hmac)
    env.write_config(extra_issuers=h.issuer_yaml())
    write_certs(env, {"e": ["eab.peers.test"]})
    r = env.run("apply", "--wait", "30s", "-v")
    assert r.code == 1, r
    rec = env.state_json()["certificates"]["e"]
    assert rec["failure_class"] == "config", rec
    assert "externalAccountBinding" in rec["last_error"] and re.search(r"\ble\b", rec["last_error"]), rec
    assert "externalAccountBinding" in r.err, r
    assert pebble_accounts(h) == 0 and h.pebble.orders_created() == 0
    # a key the CA does not know for this kid: refused, a configuration problem too
    monkeypatch.setenv("ACME_EAB_HMAC", eab_key()[1])
    env.write_config(extra_issuers=h.issuer_yaml(
        extra=f"  pollInterval: 1s\n  externalAccountBinding: {{keyID: {kid}, hmacKey: {{env: ACME_EAB_HMAC}}}}\n"))
    r = env.run("apply", "--wait", "30s", "-v")
    assert r.code == 1, r
    rec = env.state_json()["certificates"]["e"]
    assert rec["failure_class"] == "config", rec
    assert pebble_accounts(h) == 0 and h.pebble.orders_created() == 0
    assert os.environ["ACME_EAB_HMAC"] not in r.err + r.out + env.state.read_text()
    monkeypatch.setenv("ACME_EAB_HMAC", hmac)
    env.write_config(extra_issuers=h.issuer_yaml(
        extra=f"  pollInterval: 1s\n  externalAccountBinding: {{keyID: {kid}, hmacKey: {{env: ACME_EAB_HMAC}}}}\n"))
    r = env.run("apply", "--wait", "60s", "-v")
    assert r.code == 0, r
    converged(env, ["e"])
    verify_acme_outputs(env.cert_dir("e"), ["eab.peers.test"], h.pebble.roots)
    assert f'Successful newAccount Binding with CA using kid "{kid}"' in h.pebble.log()
    assert pebble_accounts(h) == 1 and len(h.pebble.issued()) == 1
    assert challenge_files(h.webroot) == []
    everything = r.err + r.out + env.state.read_text()
    assert hmac not in everything


def pebble_accounts(h):
    return h.pebble.accounts()


# ---------------------------------------------------------------- badNonce left on


def test_default_bad_nonce_rate_many_certificates_in_parallel(env, peers, tmp_path):
    """Batches of 10 certificates at parallelism 4 until certsync met a badNonce (at most 3 batches: with 5 % of
    some 80 signed requests per batch refused, one batch nearly always does); each batch converges in one
    apply without an error."""
    h = Http01(peers, tmp_path / "webroot", env=FAST)  # PEBBLE_WFE_NONCEREJECT not set: 5 % of nonces refused
    assert "Configured to reject 5% of good nonces" in h.pebble.log()
    env.write_config(extra_issuers=h.issuer_yaml())
    certs, retries = {}, 0
    for batch in range(3):
        new = {f"n{batch}{i}": [f"n{batch}{i}.peers.test"] for i in range(10)}
        certs.update(new)
        write_certs(env, new)
        r = env.run("apply", "--wait", "60s", "--parallelism", "4", "-v", timeout=180)
        assert r.code == 0, r
        assert not log_lines(r.err, "error") and "will retry" not in r.err, r  # every badNonce retried at once
        assert "10 done" in r.out, r
        retries += len(re.findall(r"badNonce, signing again with a fresh nonce", r.err))
        if retries:
            break
    assert retries, "no badNonce met in 30 certificates"
    converged(env, certs)
    for name, names in certs.items():
        verify_acme_outputs(env.cert_dir(name), names, h.pebble.roots)
    assert len(h.pebble.issued()) == len(certs) and h.pebble.finalizations() == len(certs)
    assert h.pebble.accounts() == 1  # one account for the runs, however many workers
    assert challenge_files(h.webroot) == []


# ---------------------------------------------------------------- rejectedIdentifier


def test_rejected_identifier_fails_that_certificate_only(env, peers, tmp_path):
    h = Http01(peers, tmp_path / "webroot", env=FAST, blocklist=["blocked.peers.test"])
    env.write_config(extra_issuers=h.issuer_yaml())
    certs = {"ok1": ["ok1.peers.test"], "bad": ["fine.peers.test", "blocked.peers.test"], "ok2": ["ok2.peers.test"]}
    write_certs(env, certs)
    r = env.run("apply", "--wait", "60s", "--parallelism", "3", "-v")
    assert r.code == 1, r
    for n in ("ok1", "ok2"):
        verify_acme_outputs(env.cert_dir(n), certs[n], h.pebble.roots)
    converged(env, ["ok1", "ok2"])
    rec = env.state_json()["certificates"]["bad"]
    assert rec["phase"] == "failed" and rec["failure_class"] == "rejected", rec
    # Pebble's whole problem: its type, its detail and the identifier
    detail = "Order included an identifier for which issuance is forbidden by policy"
    for text in (rec["last_error"], r.err):
        assert "rejectedIdentifier" in text and detail in text and "blocked.peers.test" in text, text
    show = env.run("state", "show", "bad")
    assert show.code == 0 and "rejectedIdentifier" in show.out and detail in show.out, show
    plan = env.run("plan")
    assert "bad" in plan.out and "rejectedIdentifier" in plan.out and detail in plan.out, plan
    pj = env.run("plan", "--format", "json")
    assert pj.code == 1, pj  # exit 1: a failed certificate
    pj = json.loads(pj.out)
    failed = [c for c in pj.get("failed", []) if c.get("name") == "bad"]
    assert failed and failed[0]["failure_class"] == "rejected" and detail in failed[0]["last_error"], pj
    assert not (tmp_path / "certs" / "bad" / "tls.crt").exists()
    # failed until the manifest changes: the next apply orders nothing more for it
    orders = h.pebble.orders_created()
    r = env.run("apply", "--wait", "30s", "-v")
    assert h.pebble.orders_created() == orders, r
    assert len(h.pebble.issued()) == 2
    assert challenge_files(h.webroot) == []
    # and the manifest fixed: it is issued
    write_certs(env, {"bad": ["fine.peers.test"]})
    r = env.run("apply", "--wait", "60s", "-v")
    assert r.code == 0, r
    verify_acme_outputs(env.cert_dir("bad"), ["fine.peers.test"], h.pebble.roots)


# ---------------------------------------------------------------- validate: wildcards need dns-01


def test_wildcard_with_only_http01_is_a_validate_error(env, tmp_path):
    (tmp_path / "webroot").mkdir()
    env.write_config(extra_issuers=f"""\
        le:
          type: acme
          directory: https://127.0.0.1:9/dir
          termsOfServiceAgreed: true
          solvers:
            - http01: {{webroot: {tmp_path / 'webroot'}}}
              match: {{dnsZones: [web.test]}}
        """)
    env.repo.write("star.yaml", manifest("star", ["apex.web.test", '"*.apex.web.test"'], issuer="le"))
    env.repo.write("fine.yaml", manifest("fine", ["www.web.test"], issuer="le"))
    env.repo.write("nomatch.yaml", manifest("nomatch", ["www.other.test"], issuer="le"))
    env.repo.commit()
    r = env.run("validate")
    assert r.code == 1, r
    text = r.out + r.err
    star = [ln for ln in text.splitlines() if "*.apex.web.test" in ln]
    assert star and "star" in star[0] and re.search(r"dns-?01", star[0]), text
    assert "star.yaml:" in star[0], text  # where: file:line:col
    other = [ln for ln in text.splitlines() if "www.other.test" in ln]
    assert other and "nomatch" in other[0], text  # a name no solver matches
    assert "www.web.test" not in text  # the valid certificate is not reported
    r = env.run("plan")
    assert r.code == 1 and re.search(r"\*\.apex\.web\.test.*dns-?01", r.out + r.err), r


# ---------------------------------------------------------------- authorization reuse


def test_valid_authorization_is_reused_on_renewal(env, peers, tmp_path):
    h = Http01(peers, tmp_path / "webroot", env=dict(FAST, PEBBLE_AUTHZREUSE="100"))
    env.write_config(extra_issuers=h.issuer_yaml())
    env.repo.write("a.yaml", manifest("a", ["reuse.peers.test"], issuer="le"))
    env.repo.commit()
    r = env.run("apply", "--wait", "60s", "-v")
    assert r.code == 0, r
    first = verify_acme_outputs(env.cert_dir("a"), ["reuse.peers.test"], h.pebble.roots)
    gets, vals = len(h.challenge_gets()), h.pebble.validations()
    assert gets >= 1 and vals == 1, (h.server.requests, vals)
    # renewBefore longer than the 1 h lifetime: a renewal is due at once
    env.repo.write("a.yaml", manifest("a", ["reuse.peers.test"], issuer="le", extra="renewBefore: 2h\n"))
    env.repo.commit()
    r = env.run("apply", "--wait", "60s", "-v")
    assert r.code == 0, r
    second = verify_acme_outputs(env.cert_dir("a"), ["reuse.peers.test"], h.pebble.roots)
    assert second != first and len(h.pebble.issued()) == 2 and h.pebble.orders_created() == 2
    # the second order's authorization was already valid: no challenge answered, no request to the web root
    assert h.pebble.validations() == vals, h.pebble.log()
    assert len(h.challenge_gets()) == gets, h.server.requests
    assert challenge_files(h.webroot) == []


# ---------------------------------------------------------------- secrets never leak


def test_eab_key_and_tsig_secret_never_leak(env, peers, monkeypatch):
    bind = peers.bind([ZONE])
    kid, hmac = eab_key()
    pebble = peers.pebble(dns=bind.server, env=FAST, eab=(kid, hmac))
    monkeypatch.setenv("TSIG_SECRET", bind.secret)
    monkeypatch.setenv("ACME_EAB_HMAC", hmac)
    eab = f"  pollInterval: 1s\n  externalAccountBinding: {{keyID: {kid}, hmacKey: {{env: ACME_EAB_HMAC}}}}\n"
    env.write_config(extra_issuers=pebble.issuer_yaml("le", solvers=bind.dns01_solver(), extra=eab)
                     + bind.issuer_yaml("corpdns"))
    base = write_certs(env, {"s1": ["s1.peers.test", "*.s1.peers.test"]})
    texts = []

    def keep(r):
        texts.append(f"{r.out}\n{r.err}")
        return r

    keep(env.run("validate"))
    for fmt in ("text", "json", "markdown", "github"):
        keep(env.run("plan", "--format", fmt))
    r = keep(env.run("apply", "--wait", "60s", "-v"))
    assert r.code == 0, r
    verify_acme_outputs(env.cert_dir("s1"), ["s1.peers.test", "*.s1.peers.test"], pebble.roots)
    head = write_certs(env, {"s2": ["s2.peers.test"]})
    for fmt in ("text", "json", "markdown", "github"):
        keep(env.run("plan", "--format", fmt))
        keep(env.run("plan", "--base", base, "--head", head, "--format", fmt))
    r = keep(env.run("apply", "--wait", "60s", "-v", "--log-format", "json"))
    assert r.code == 0, r
    keep(env.run("state", "list"))
    keep(env.run("state", "show", "s1"))
    # failures carry their messages too: a refused TSIG key and a refused EAB binding
    monkeypatch.setenv("TSIG_SECRET", base64.b64encode(b"x" * 32).decode())
    write_certs(env, {"s3": ["s3.peers.test"]})
    keep(env.run("apply", "--wait", "30s", "-v"))
    keep(env.run("plan", "--format", "json"))
    keep(env.run("state", "show", "s3"))
    monkeypatch.setenv("TSIG_SECRET", bind.secret)
    files = [p for p in env.dir.rglob("*") if p.is_file() and ".git" not in p.parts]
    texts += [p.read_bytes().decode("latin-1") for p in files]
    everything = "\n".join(texts)
    assert "s1" in everything and len(files) > 3
    for secret in secret_forms(bind.secret) + secret_forms(hmac):
        assert secret not in everything, f"secret leaked: {secret}"


def secret_forms(b64):
    """The secret as configured, in the other base64 alphabet, and its bytes in hex."""
    raw = base64.urlsafe_b64decode(b64.replace("+", "-").replace("/", "_") + "=" * (-len(b64) % 4))
    return sorted({b64, base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("="),
                   raw.hex()})
