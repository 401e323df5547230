"""Reloads and outputs (issue 14, items 1-3): hooks.afterApply once per apply/pass, the previous output
generation kept for output.keepPreviousFor (no torn pairs for readers that resolve the directory once),
and output.formats (chain.pem, combined.pem, keystore.p12, tls.der, key.der) in the same generation."""
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import cert_serial, check_outputs, manifest, openssl, pubkey
from test_run import daemons, run_config  # noqa: F401 (fixture)

SHORT = "short:\n  type: ca\n  generate: {dir: ca2}\n  duration: 2h\n"


def recorder(tmp_path, name="after", fail_first=False):
    """A hook script appending its CERTSYNC_*/RENEWED_* environment as one JSON line per call."""
    log = tmp_path / f"{name}.jsonl"
    marker = tmp_path / f"{name}.failed-once"
    script = tmp_path / f"{name}.py"
    fail = f"if not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w').close()\n    sys.exit(3)\n" \
        if fail_first else ""
    script.write_text(
        "#!/usr/bin/python3\nimport json, os, sys\n" + fail +
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith(('CERTSYNC_', 'RENEWED_'))}) + '\\n')\n")
    script.chmod(0o755)
    return script, log


def calls(log):
    return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


def test_after_apply_runs_once_for_n_renewals(env, tmp_path):
    after, after_log = recorder(tmp_path)
    each, each_log = recorder(tmp_path, "each")
    env.write_config(extra_issuers=SHORT, extra=f"hooks:\n  afterApply: [{after}]\n  onChange: [{each}]\n")
    for n in "abc":
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test", f"www.{n}.example.test"], issuer="short",
                                             extra=f"renewBefore: 30m\noutput: {{directory: shop/{n}}}"))
    env.repo.commit()
    env.run("apply", check=0)
    first = calls(after_log)
    assert len(first) == 1, first
    c = first[0]
    assert c["CERTSYNC_EVENT"] == "afterApply" and c["CERTSYNC_CHANGED"] == "a b c"
    assert c["CERTSYNC_CHANGED_COUNT"] == "3"
    assert c["CERTSYNC_CHANGED_DIRS"].split() == [str(env.out / "shop" / n) for n in "abc"]
    assert c["CERTSYNC_CHANGED_DOMAINS"].split() == sorted(
        [f"{n}.example.test" for n in "abc"] + [f"www.{n}.example.test" for n in "abc"])
    assert "RENEWED_LINEAGE" not in c  # certbot's per-lineage names belong to onChange
    per = calls(each_log)
    assert len(per) == 3  # onChange: once per certificate, with certbot's deploy-hook names
    a = [p for p in per if p["CERTSYNC_CERT_NAME"] == "a"][0]
    assert a["RENEWED_LINEAGE"] == str(env.out / "shop" / "a") == a["CERTSYNC_CERT_DIR"]
    assert a["RENEWED_DOMAINS"] == "a.example.test www.a.example.test"
    # A no-op apply runs nothing.
    env.run("apply", check=0)
    assert len(calls(after_log)) == 1
    # Three renewals in one apply: one call naming all three.
    serials = {n: cert_serial(env.cert_dir(f"shop/{n}") / "tls.crt") for n in "abc"}
    for n in "abc":
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test", f"www.{n}.example.test"], issuer="short",
                                             extra=f"renewBefore: 3h\noutput: {{directory: shop/{n}}}"))
    env.repo.commit("renew all three")
    assert [c["action"] for c in env.plan_json()["changes"]] == ["renew"] * 3
    env.run("apply", check=0)
    assert all(cert_serial(env.cert_dir(f"shop/{n}") / "tls.crt") != serials[n] for n in "abc")
    got = calls(after_log)
    assert len(got) == 2 and got[1]["CERTSYNC_CHANGED"] == "a b c", got
    assert len(calls(each_log)) == 6
    assert not any("hooks.after_apply" in r.get("ids", {}) for r in env.state_json()["certificates"].values())


def test_failed_after_apply_is_owed_and_run_by_the_next_apply(env, tmp_path):
    after, after_log = recorder(tmp_path, fail_first=True)
    env.write_config(extra=f"hooks:\n  afterApply: [{after}]\n")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    r = env.run("apply", check=0)
    assert "afterApply hook" in r.err and "failed (status 3)" in r.err, r
    recs = env.state_json()["certificates"]
    assert recs["a"]["ids"]["hooks.after_apply"] == "1" and recs["b"]["ids"]["hooks.after_apply"] == "1"
    assert calls(after_log) == []
    # Nothing changed in git, but the reload is owed: the next apply runs it for both.
    env.run("apply", check=0)
    got = calls(after_log)
    assert len(got) == 1 and got[0]["CERTSYNC_CHANGED"] == "a b", got
    assert not any("hooks.after_apply" in r.get("ids", {}) for r in env.state_json()["certificates"].values())
    env.run("apply", check=0)
    assert len(calls(after_log)) == 1


def test_after_apply_in_run_once_per_pass_and_retried(env, tmp_path, daemons):
    after, after_log = recorder(tmp_path, fail_first=True)
    run_config(env, interval="1h", extra=f"hooks:\n  afterApply: [{after}]\n")
    for n in "abcd":
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test"]))
    env.repo.commit()
    d = daemons(env)
    d.wait_ready()
    d.wait_log(r"afterApply hook .* failed \(status 3\)")
    assert calls(after_log) == []
    d.signal(signal.SIGUSR1)  # retries what is owed now instead of after the backoff
    deadline = time.time() + 15
    while not calls(after_log):
        assert time.time() < deadline, d.messages()
        time.sleep(0.05)
    got = calls(after_log)
    assert len(got) == 1 and got[0]["CERTSYNC_CHANGED"] == "a b c d"
    d.stop()
    assert not any("hooks.after_apply" in r.get("ids", {}) for r in env.state_json()["certificates"].values())


# ---------- no torn pairs ----------

def test_reader_resolving_the_directory_once_never_sees_a_torn_pair(env):
    """Under a loop of renewals (each with a new key), a reader that resolves the output directory once and
    then opens tls.crt and tls.key separately, by path, slowly, always gets a matching pair."""
    env.write_config(extra="")
    env.config.write_text(env.config.read_text().replace("  root: certs\n", "  root: certs\n  keepPreviousFor: 60s\n"))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="privateKey: {size: 256}"))
    env.repo.commit()
    env.run("apply", check=0)
    link = env.cert_dir("a")
    pairs, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            d = os.path.realpath(link)  # resolve once: both opens go to one generation
            try:
                crt = Path(d, "tls.crt").read_bytes()
                time.sleep(0.03)  # a slow reader straddles swaps
                key = Path(d, "tls.key").read_bytes()
                pairs.append((d, crt, key))
            except OSError as e:
                errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(8):
            env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra=f"privateKey: {{size: {384 if i % 2 == 0 else 256}}}"))
            env.repo.commit(f"rekey {i}")
            env.run("apply", check=0)
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    gens = {d for d, _, _ in pairs}
    assert len(gens) >= 3, "the reader did not see several generations"
    for crt, key in {(c, k) for _, c, k in pairs}:
        c = openssl("x509", "-noout", "-pubkey", input=crt.decode()).stdout
        k = openssl("pkey", "-pubout", input=key.decode()).stdout
        assert c and c == k, "a torn pair: the certificate and key do not match"
    # Every generation a reader may still hold is there within the grace period.
    hidden = sorted(p.name for p in env.out.iterdir() if p.name.startswith(".a."))
    assert len(hidden) == 9


def test_previous_generation_goes_after_the_grace_period(env, daemons):
    run_config(env, interval="1h")
    env.config.write_text(env.config.read_text().replace("  root: certs\n", "  root: certs\n  keepPreviousFor: 2s\n"))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    old = Path(os.path.realpath(env.cert_dir("a")))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="privateKey: {algorithm: RSA}"))
    env.repo.commit("rekey")
    env.run("apply", check=0)
    assert old.is_dir() and (old / "tls.key").exists()  # kept: a reader may be between its two opens
    assert Path(os.path.realpath(env.cert_dir("a"))) != old
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    # The daemon's timer removes it once the grace period has passed, without another change.
    d = daemons(env)
    d.wait_ready()
    deadline = time.time() + 15
    while old.exists():
        assert time.time() < deadline, d.messages()
        time.sleep(0.1)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    d.stop()
    # keepPreviousFor: 0 removes the old generation at once (the behaviour before the grace period).
    env.config.write_text(env.config.read_text().replace("keepPreviousFor: 2s", "keepPreviousFor: 0"))
    cur = Path(os.path.realpath(env.cert_dir("a")))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit("rekey again")
    env.run("apply", check=0)
    assert not cur.exists()


def test_apply_sweeps_expired_generations(env):
    env.config.write_text(env.config.read_text().replace("  root: certs\n", "  root: certs\n  keepPreviousFor: 1s\n"))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    old = Path(os.path.realpath(env.cert_dir("a")))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="privateKey: {algorithm: RSA}"))
    env.repo.commit("rekey")
    env.run("apply", check=0)
    assert old.exists()
    time.sleep(2.1)  # the grace period itself is what is tested here
    env.run("apply", check=0)  # a no-op apply removes what expired
    assert not old.exists()
    check_outputs(env.cert_dir("a"), ["a.example.test"])


# ---------- output.formats ----------

def make_ca_with_intermediate(d):
    """root -> intermediate; certFile = intermediate then root (the signing CA first)."""
    d.mkdir()
    ext = d / "ext.cnf"
    ext.write_text("[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")
    for args in (
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
         "-subj", "/CN=Test Root", "-keyout", "root.key", "-out", "root.crt"],
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Test Intermediate",
         "-keyout", "int.key", "-out", "int.csr"],
        ["x509", "-req", "-in", "int.csr", "-CA", "root.crt", "-CAkey", "root.key", "-CAcreateserial", "-days",
         "30", "-extfile", "ext.cnf", "-extensions", "v3", "-out", "int.crt"],
    ):
        r = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    (d / "chain.crt").write_text((d / "int.crt").read_text() + (d / "root.crt").read_text())
    (d / "int.key").chmod(0o600)
    return d / "chain.crt", d / "int.key"


def pem_blocks(text, kind):
    return text.count(f"-----BEGIN {kind}")


def test_formats_written_in_the_same_generation(env, tmp_path):
    chain, key = make_ca_with_intermediate(tmp_path / "ca-int")
    env.write_config(extra_issuers=f"inter:\n  type: ca\n  ca: {{certFile: {chain}, keyFile: {key}}}\n")
    env.config.write_text(env.config.read_text().replace(
        "  root: certs\n", "  root: certs\n  pkcs12Password: {env: P12_PASSWORD}\n"))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], issuer="inter", extra="""\
        output:
          formats: [combined.pem, chain.pem, keystore.p12, tls.der, key.der]
        """))
    env.repo.commit()
    penv = {"P12_PASSWORD": "p12-secret-9d1c"}
    r = env.run("apply", check=0, env=penv)
    assert "p12-secret-9d1c" not in r.out + r.err
    d = env.cert_dir("a")
    assert pubkey(d / "tls.crt", False) == pubkey(d / "tls.key", True)
    r = openssl("verify", "-CAfile", str(d / "ca.crt"), "-untrusted", str(d / "chain.pem"), str(d / "tls.crt"))
    assert r.returncode == 0, r.stdout + r.stderr
    # Every file is in the published generation itself.
    gen = Path(os.path.realpath(d))
    assert sorted(p.name for p in gen.iterdir()) == sorted(
        ["tls.crt", "tls.key", "ca.crt", "combined.pem", "chain.pem", "keystore.p12", "tls.der", "key.der"])
    for f, mode in (("combined.pem", 0o600), ("keystore.p12", 0o600), ("key.der", 0o600), ("chain.pem", 0o644),
                    ("tls.der", 0o644)):
        assert (d / f).stat().st_mode & 0o777 == mode, f
    # chain.pem: the intermediates only.
    ch = (d / "chain.pem").read_text()
    assert pem_blocks(ch, "CERTIFICATE") == 1
    assert "Test Intermediate" in openssl("x509", "-noout", "-subject", input=ch).stdout
    # combined.pem: the key, then the leaf and the intermediate (HAProxy's order).
    comb = (d / "combined.pem").read_text()
    assert comb.index("PRIVATE KEY") < comb.index("BEGIN CERTIFICATE")
    assert pem_blocks(comb, "CERTIFICATE") == 2
    assert openssl("pkey", "-pubout", input=comb).stdout == pubkey(d / "tls.key", True)
    assert "a.example.test" in openssl("x509", "-noout", "-subject", input=comb).stdout
    # DER forms of the leaf and the key.
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(d / "tls.der"), "-noout", "-serial"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and cert_serial(d / "tls.crt") in r.stdout.lower()
    r = subprocess.run(["openssl", "pkey", "-inform", "DER", "-in", str(d / "key.der"), "-pubout"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == pubkey(d / "tls.key", True)
    # keystore.p12: modern PBES2/AES-256-CBC with a SHA-256 MAC, readable with the configured password.
    r = subprocess.run(["openssl", "pkcs12", "-in", str(d / "keystore.p12"), "-passin", "env:P12_PASSWORD",
                        "-info", "-noout"], capture_output=True, text=True, env=dict(os.environ, **penv))
    assert r.returncode == 0, r.stderr
    assert "MAC: sha256" in r.stderr + r.stdout
    assert "PBES2, PBKDF2, AES-256-CBC" in r.stderr + r.stdout
    r = subprocess.run(["openssl", "pkcs12", "-in", str(d / "keystore.p12"), "-passin", "env:P12_PASSWORD",
                        "-nodes"], capture_output=True, text=True, env=dict(os.environ, **penv))
    assert r.returncode == 0 and pem_blocks(r.stdout, "CERTIFICATE") == 3  # leaf, intermediate, root
    assert "Test Root" in r.stdout and "a.example.test" in r.stdout
    bad = subprocess.run(["openssl", "pkcs12", "-in", str(d / "keystore.p12"), "-passin", "pass:wrong", "-noout"],
                         capture_output=True, text=True)
    assert bad.returncode != 0
    # A changed list is a reinstall of the same certificate, not a new one.
    serial = cert_serial(d / "tls.crt")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], issuer="inter", extra="output: {formats: [tls.der]}"))
    env.repo.commit("fewer formats")
    plan = env.plan_json()
    assert [(c["action"], c["reason_code"]) for c in plan["changes"]] == [("reinstall", "output_formats")]
    env.run("apply", check=0, env=penv)
    assert cert_serial(d / "tls.crt") == serial
    assert sorted(p.name for p in Path(os.path.realpath(d)).iterdir()) == ["ca.crt", "tls.crt", "tls.der", "tls.key"]
    env.run("plan", "--detailed-exitcode", check=0, env=penv)
    # A format file deleted by hand is noticed and put back.
    (Path(os.path.realpath(d)) / "tls.der").unlink()
    assert [c["action"] for c in env.plan_json()["changes"]] == ["reinstall"]
    env.run("apply", check=0, env=penv)
    assert (d / "tls.der").exists()


def test_keystore_without_a_password_is_refused_at_validate(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="output: {formats: [keystore.p12]}"))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"], extra="output: {formats: [tls.der, CombinedPEM]}"))
    env.repo.commit()
    r = env.run("validate", check=1)
    assert "certificates/a.yaml:8:21: spec.output.formats: keystore.p12 needs a password: set " \
           "output.pkcs12Password" in r.out + r.err, r
    assert 'certificates/b.yaml:8:31: spec.output.formats[1]: "CombinedPEM" is not a format certsync writes ' \
           '(did you mean "combined.pem"?)' in r.out + r.err, r
