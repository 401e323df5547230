"""Status is never greener than reality (issue 11): failed certificates are planned with their
failure class and what fixes them, apply and plan exit non-zero while one stays failed, credentials
quoted by a provider never reach state, plans or logs, and a state-write stop names its first cause."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import check_outputs, manifest, openssl
from dnsimple_env import TOKEN, Sim, sim, with_dnsimple  # noqa: F401 (sim is a fixture)
from test_dnsimple import www


def ca_files(env, mode):
    """A CA certificate and key in env.dir/ca-files, the key with the given mode."""
    d = env.dir / "ca-files"
    d.mkdir()
    r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                "-subj", "/CN=status test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    assert r.returncode == 0, r.stderr
    os.chmod(d / "ca.key", mode)
    return d


def fixed_ca_env(env, mode):
    d = ca_files(env, mode)
    env.write_config(extra_issuers=f"""\
        fixed:
          type: ca
          ca: {{certFile: {d / 'ca.crt'}, keyFile: {d / 'ca.key'}}}
        """)
    return d


@pytest.fixture
def denv(env, sim):
    """Issuer "dns" on the simulator, DNSIMPLE_TOKEN not set (the operator's mistake)."""
    yield from with_dnsimple(env, sim, token=None)


def record(env, name):
    return env.state_json()["certificates"][name]


# ---------- configuration failures: fix the mistake, and the next apply converges ----------

def test_ca_key_too_open_fails_as_config_and_converges_once_fixed(env):
    d = fixed_ca_env(env, 0o644)
    env.repo.write("www.yaml", manifest("www", ["www.example.test"], issuer="fixed"))
    env.repo.commit()
    r = env.run("apply", "--auto-approve", check=1)
    assert "failed (config)" in r.err and "chmod 600" in r.err, r
    assert "fix the configuration or credentials" in r.err and "change the manifest" not in r.err, r
    rec = record(env, "www")
    assert rec["phase"] == "failed" and rec["failure_class"] == "config", rec
    assert rec["attempts"] == 1 and rec["next_try"] > rec["last_error_time"], rec
    assert not (env.cert_dir("www") / "tls.crt").exists()

    # Not fixed yet: the plan still retries it (nothing was bought) and says which fix applies.
    r = env.run("plan", "--detailed-exitcode", check=2)
    assert "! www" in r.out and "retry" in r.out and "configuration or credentials" in r.out, r
    assert "No changes" not in r.out and "change the manifest" not in r.out, r
    plan = env.plan_json()
    ch = plan["changes"][0]
    assert (ch["action"], ch["reason_code"], ch["failure_class"]) == ("resume", "retry", "config"), ch
    assert plan["summary"]["retry"] == 1 and plan["summary"]["has_changes"] is True
    r = env.run("apply", "--auto-approve", check=1)  # still broken: fails again, backs off further
    assert record(env, "www")["attempts"] == 2

    os.chmod(d / "ca.key", 0o600)
    env.run("plan", "--detailed-exitcode", check=2)
    r = env.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    rec = record(env, "www")
    assert rec["phase"] == "ready" and "failure_class" not in rec and "last_error" not in rec, rec
    assert rec.get("attempts", 0) == 0
    check_outputs(env.cert_dir("www"), ["www.example.test"])
    r = env.run("plan", "--detailed-exitcode", check=0)
    assert "No changes. Certificates match the manifests (1 unchanged)." in r.out, r


def test_missing_dnsimple_token_fails_as_config_and_converges_once_set(denv, sim):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=1)
    assert "DNSIMPLE_TOKEN" in r.err and "failed (config)" in r.err, r
    rec = record(denv, "shop-www")
    assert rec["failure_class"] == "config" and rec["phase"] == "failed", rec
    assert sim.count("purchaseLetsencryptCertificate") == 0
    r = denv.run("plan", "--detailed-exitcode", check=2)
    assert "! shop-www" in r.out and "DNSIMPLE_TOKEN" in r.out and "No changes" not in r.out, r
    assert "change the manifest" not in r.out, r
    # The paid change is shown for what it may do.
    assert "purchase, or adopt a matching certificate if one exists" in r.out, r

    os.environ["DNSIMPLE_TOKEN"] = TOKEN
    r = denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    assert "1 done" in r.out, r
    assert sim.count("purchaseLetsencryptCertificate") == 1
    assert (denv.cert_dir("shop-www") / "tls.crt").exists()
    denv.run("plan", "--detailed-exitcode", check=0)


# ---------- rejections wait for the operator, and nothing reads as green meanwhile ----------

def test_rejected_certificate_is_listed_and_apply_exits_1_until_retried(denv, sim):
    os.environ["DNSIMPLE_TOKEN"] = TOKEN
    sim.ctl("issue_delay", {"seconds": -1})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)
    cid = int(record(denv, "shop-www")["ids"]["dnsimple.pending_id"])
    sim.ctl("certificate_state", {"id": cid, "state": "failed"})
    denv.run("apply", "--auto-approve", check=1)
    rec = record(denv, "shop-www")
    assert rec["phase"] == "failed" and rec["failure_class"] == "rejected", rec

    for fmt in ("text", "json", "markdown", "github"):
        r = denv.run("plan", "--format", fmt, "--detailed-exitcode", check=1)
        assert "No changes" not in r.out, (fmt, r)
        assert "change the manifest" in r.out and "--retry-failed" in r.out, (fmt, r)
    r = denv.run("plan", check=1)
    assert "x shop-www" in r.out and "Failed: 1 certificate failed" in r.out, r
    plan = json.loads(denv.run("plan", "--format", "json", check=1).out)
    assert plan["changes"] == [] and plan["summary"]["failed"] == 1 and plan["summary"]["unchanged"] == 0
    assert plan["failed"][0]["name"] == "shop-www" and plan["failed"][0]["failure_class"] == "rejected"

    r = denv.run("apply", "--auto-approve", check=1)  # nothing to do, but the certificate is still failed
    assert "failed at the end of this apply" in r.out, r
    assert sim.count("purchaseLetsencryptCertificate") == 1

    sim.ctl("issue_delay", {"seconds": 0.2})
    denv.run("plan", "--retry-failed", "--detailed-exitcode", check=2)
    denv.run("apply", "--auto-approve", "--retry-failed", "--wait", "60s", check=0)
    assert sim.count("purchaseLetsencryptCertificate") == 2
    denv.run("plan", "--detailed-exitcode", check=0)


def test_every_manifest_invalid_is_an_error_not_no_changes(env):
    env.repo.write("a.yaml", "bogus: [\n")
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]).replace("dnsNames", "dnsNamez"))
    env.repo.commit()
    for fmt in ("text", "markdown", "github"):
        r = env.run("plan", "--format", fmt, "--detailed-exitcode", check=1)
        assert "No changes" not in r.out, (fmt, r)
        assert "a.yaml" in r.out and "b.yaml" in r.out, (fmt, r)
    r = env.run("plan", check=1)
    assert "Errors: 3 problems" in r.out and "unchanged" not in r.out, r
    r = env.run("plan", "--format", "json", check=1)
    plan = json.loads(r.out)
    assert plan["summary"]["errors"] == 3 and plan["summary"]["has_changes"] is False


# ---------- credentials quoted back by a provider ----------

def test_credential_quoted_in_an_error_body_is_never_stored_or_printed(denv, sim):
    os.environ["DNSIMPLE_TOKEN"] = TOKEN
    sim.ctl("fault", {"endpoint": "listCertificates", "mode": "504_json", "count": -1,
                      "message": f"invalid request from token Bearer {TOKEN} (Authorization: Bearer {TOKEN}; "
                                 f"raw {TOKEN})"})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    texts = []
    for fmt in ("text", "json"):
        r = denv.run("apply", "--auto-approve", "--log-format", fmt)
        assert r.code == 1, r
        texts += [r.out, r.err]
    rec = record(denv, "shop-www")
    assert rec["failure_class"] == "transient" and "[REDACTED]" in rec["last_error"], rec
    for fmt in ("text", "json", "markdown", "github"):
        r = denv.run("plan", "--format", fmt)
        texts += [r.out, r.err]
        assert "REDACTED" in r.out, (fmt, r)
    r = denv.run("state", "show", "shop-www", check=0)
    texts += [r.out, r.err]
    for f in denv.state.parent.rglob("*"):
        if f.is_file():
            texts.append(f.read_text(errors="replace"))
    for t in texts:
        assert TOKEN not in t

    # A record written before redaction existed: plans and state show still never print the credential.
    doc = denv.state_json()
    doc["certificates"]["shop-www"]["last_error"] = "HTTP 400 from token Bearer legacy-secret-123456"
    denv.state.write_text(json.dumps(doc, indent=2))
    for args in (["plan"], ["plan", "--format", "json"], ["plan", "--format", "markdown"],
                 ["plan", "--format", "github"], ["state", "show", "shop-www"]):
        r = denv.run(*args)
        assert "legacy-secret-123456" not in r.out + r.err, (args, r)
        assert "REDACTED" in r.out, (args, r)


# ---------- a full disk: the first cause, not a later symptom ----------

def test_state_on_a_full_disk_reports_the_first_cause(env):
    for n in ("a", "b", "c", "d"):
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test"]))
    env.repo.commit()
    state_dir = env.state.parent
    state_dir.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(state_dir)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    try:
        # Two of four pages taken: the lock and the first journal lines fit, the rest does not.
        (state_dir / "filler").write_bytes(b"\0" * 8192)
        r = env.run("apply", "--auto-approve", check=1)
        assert "state could not be written" in r.err, r
        assert "No space left on device" in r.err, r
        assert "no such file" not in r.err, r
    finally:
        subprocess.run(["umount", str(state_dir)], check=True)


# ---------- a lost state next to its backup ----------

def test_lost_state_with_a_backup_is_said_and_paid_changes_wait_for_the_operator(denv, sim):
    os.environ["DNSIMPLE_TOKEN"] = TOKEN
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.run("apply", "--auto-approve", "--wait", "60s", check=0)
    denv.repo.write("api.yaml", manifest("api", ["api.example.test"]))
    denv.repo.commit()
    denv.run("apply", "--auto-approve", check=0)  # a second save: state.json.backup now exists
    backup = Path(str(denv.state) + ".backup")
    assert backup.exists()
    denv.state.unlink()

    r = denv.run("plan")
    assert "state.json.backup" in r.out and "certsync state restore" in r.out, r
    r = denv.run("apply", "--auto-approve", check=1)
    assert "certsync state restore" in r.err and "--ignore-backup" in r.err, r
    assert sim.count("purchaseLetsencryptCertificate") == 1
    assert not denv.state.exists()

    r = denv.run("state", "restore", check=0)
    assert "Restored" in r.out, r
    r = denv.run("plan", "--detailed-exitcode")
    assert "+ shop-www" not in r.out, r
    denv.run("state", "restore", check=1)  # the state exists now: nothing to restore
    assert sim.count("purchaseLetsencryptCertificate") == 1
