"""source.verify (Flux's spec.verify, mode head): real gpg and ssh-keygen -Y signatures on local commits."""
import json
import re
import subprocess
import time

import pytest

from conftest import check_outputs, manifest
from git_env import Gpg, commit_signed, keygen
from test_run import daemons, run_config  # noqa: F401 (fixture)


@pytest.fixture
def gpg(tmp_path):
    g = Gpg(tmp_path / "gpg-a")
    yield g
    g.stop()


@pytest.fixture
def gpg_other(tmp_path):
    g = Gpg(tmp_path / "gpg-b", name="Mallory", email="mallory@example.test")
    yield g
    g.stop()


def verify_config(env, keys):
    text = env.config.read_text().replace("  path: certificates\n",
                                          f"  path: certificates\n  verify:\n    mode: HEAD\n    keys: {{file: {keys}}}\n", 1)
    env.config.write_text(text)


def test_gpg_signed_head_is_applied_and_unsigned_or_foreign_heads_are_refused(env, gpg, gpg_other, tmp_path):
    verify_config(env, gpg.public(tmp_path / "trusted.asc"))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    good = commit_signed(env.repo, "gpg", gpg)
    plan = env.plan_json()
    assert plan["source"]["commit"] == good and [c["name"] for c in plan["changes"]] == ["a"]
    env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])

    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    saved = env.dir / "plan.json"
    commit_signed(env.repo, "gpg", gpg)
    env.run("plan", "--out", str(saved), check=0)
    env.repo.git("commit", "-q", "--amend", "--no-gpg-sign", "-m", "re-committed unsigned")
    r = env.run("apply", str(saved), check=1)
    assert "is not verified" in r.err and "unsigned" in r.err, r
    unsigned = env.repo.git("rev-parse", "HEAD")
    for cmd in ("plan", "apply"):
        r = env.run(cmd, check=1)
        assert f"commit {unsigned[:12]} is not verified" in r.err and "unsigned" in r.err, r
    assert not env.cert_dir("b").exists()

    foreign = commit_signed(env.repo, "gpg", gpg_other)
    r = env.run("plan", check=1)
    keyid = gpg_other.fpr[-16:]
    assert f"commit {foreign[:12]} is not verified" in r.err and keyid in r.err and "not in source.verify.keys" in r.err, r

    # A signed commit whose content was altered afterwards: a bad signature, never applied.
    env.repo.write("c.yaml", manifest("c", ["c.example.test"]))
    commit_signed(env.repo, "gpg", gpg)
    raw = env.repo.git("cat-file", "commit", "HEAD") + "\n"
    forged = raw.replace("signed change", "signed change (edited)")
    r = subprocess.run(["git", "-C", str(env.repo.path), "hash-object", "-t", "commit", "-w", "--stdin"],
                       input=forged, capture_output=True, text=True, check=True)
    env.repo.git("update-ref", "refs/heads/main", r.stdout.strip())
    r = env.run("apply", check=1)
    assert "bad signature" in r.err and gpg.fpr[-16:] in r.err, r
    assert not env.cert_dir("c").exists()

    # The user's own keyring is never consulted: a key there does not make a commit trusted.
    env.repo.git("reset", "-q", "--hard", foreign)
    r = env.run("plan", check=1, env={"GNUPGHOME": str(gpg_other.home)})
    assert "not in source.verify.keys" in r.err, r


def test_ssh_signed_head_is_verified_with_allowed_signers(env, tmp_path):
    key, pub = keygen(tmp_path / "signer")
    other, other_pub = keygen(tmp_path / "other")
    verify_config(env, pub)
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    good = commit_signed(env.repo, "ssh", key)
    plan = env.plan_json()
    assert plan["source"]["commit"] == good
    env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    bad = commit_signed(env.repo, "ssh", other)
    fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(other_pub)], capture_output=True, text=True,
                        check=True).stdout.split()[1]
    r = env.run("apply", check=1)
    assert f"commit {bad[:12]} is not verified" in r.err and fp in r.err and "not in source.verify.keys" in r.err, r
    assert not env.cert_dir("b").exists()
    # A key file can hold both kinds: the SSH line among armored OpenPGP keys still counts.
    mixed = tmp_path / "mixed"
    mixed.write_text("# team keys\n" + other_pub.read_text())
    verify_config_text = env.config.read_text().replace(str(pub), str(mixed))
    env.config.write_text(verify_config_text)
    env.plan_json()


def test_verify_config_errors_have_locations(env):
    text = env.config.read_text().replace("  path: certificates\n", "  path: certificates\n  verify:\n    mode: tag\n", 1)
    env.config.write_text(text)
    r = env.run("validate", check=1)
    assert re.search(r"certsync\.yaml:\d+:\d+: source\.verify\.mode: \"tag\" is not supported", r.err), r
    assert re.search(r"certsync\.yaml:\d+:\d+: source\.verify: missing required field \"keys\"", r.err), r


def test_run_keeps_the_last_verified_revision(env, gpg, tmp_path, daemons):
    run_config(env, interval="1s")
    verify_config(env, gpg.public(tmp_path / "trusted.asc"))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    good = commit_signed(env.repo, "gpg", gpg)
    d = daemons(env)
    d.wait_ready()
    d.wait_log(rf"commit {good[:12]}: signature verified \(OpenPGP key {gpg.fpr}")
    assert d.metric("certsync_source_verified", head=good) == 1
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    unsigned = env.repo.commit()
    i = d.wait_log(rf"commit {unsigned[:12]} is not verified: it is unsigned")
    deadline = time.time() + 10
    while time.time() < deadline:
        code, body = d.get("/readyz")
        ready = json.loads(body)
        if ready["source"].get("verified") is False:
            break
        time.sleep(0.05)
    assert ready["source"]["verified"] is False and "unsigned" in ready["source"]["verify_error"], ready
    assert ready["revision"] == f"main@sha1:{good}"
    assert d.metric("certsync_source_verified", head=unsigned) == 0
    r = subprocess.run(["promtool", "check", "metrics"], input=d.metrics(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not env.cert_dir("b").exists()
    # A signed commit on top is applied.
    env.repo.write("c.yaml", manifest("c", ["c.example.test"]))
    signed = commit_signed(env.repo, "gpg", gpg)
    d.wait_log(rf"commit {signed[:12]}: signature verified", start=i)
    deadline = time.time() + 30
    while not (env.cert_dir("c") / "tls.crt").exists() and time.time() < deadline:
        time.sleep(0.05)
    check_outputs(env.cert_dir("c"), ["c.example.test"])
    # Refused once, not verified (nor logged) again at each of the fetches that followed.
    assert sum(1 for m in d.messages() if f"commit {unsigned[:12]} is not verified" in m) == 1
    code, body = d.get("/readyz")
    assert json.loads(body)["source"]["verified"] is True
