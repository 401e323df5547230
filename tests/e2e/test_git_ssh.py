"""SSH remotes against a real sshd on loopback: deploy key from {env|file}, known_hosts checking."""
import subprocess
import time

from conftest import check_outputs, manifest
from git_env import bare_clone, keygen, sshd  # noqa: F401 (fixture)
from test_run import daemons, run_config  # noqa: F401 (fixture)


def ssh_setup(env, sshd, tmp_path, known=None, key=None):
    """A bare repo served over sshd, a deploy key, known_hosts, and the config pointing at them."""
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    bare = bare_clone(env.repo.path, tmp_path / "srv" / "certs.git")
    if key is None:
        key, pub = keygen(tmp_path / "deploy")
        sshd.authorize(pub)
    kh = tmp_path / "known_hosts"
    kh.write_text(known if known is not None else sshd.known_hosts_line())
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{bare}"
    text = env.config.read_text().replace(
        "source:\n  repo: repo\n",
        f"source:\n  repo: {url}\n  sshKey: {{file: {key}}}\n  knownHosts: {{file: {kh}}}\n"
        "  token: {env: CERTSYNC_TEST_UNSET_TOKEN}\n")
    env.config.write_text(text)
    return url, bare, key


def secret_free(env, key, *texts):
    k = key.read_text().strip().splitlines()
    body = "".join(k[1:-1])
    for t in texts:
        assert body[:40] not in t.replace("\n", "")
        assert "PRIVATE KEY" not in t


def test_plan_apply_and_run_fetch_over_ssh(env, sshd, tmp_path):
    url, bare, key = ssh_setup(env, sshd, tmp_path)
    plan = env.plan_json()
    assert [c["name"] for c in plan["changes"]] == ["a"]
    r = env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    # A push to the served repository is picked up by the next fetch.
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.repo.git("push", "-q", str(bare), "main")
    plan = env.plan_json()
    assert [c["name"] for c in plan["changes"]] == ["b"]
    state = env.state.read_text()
    assert env.state_json()["source"]["url"] == url
    secret_free(env, key, r.out, r.err, state)
    assert "publickey" in sshd.log.read_text()


def test_run_follows_an_ssh_remote(env, sshd, tmp_path, daemons):
    run_config(env, interval="1s")
    url, bare, key = ssh_setup(env, sshd, tmp_path)
    d = daemons(env)
    d.wait_ready()
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    d.wait_log(r"source .*ssh://.* opened")
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.repo.git("push", "-q", str(bare), "main")
    d.wait_log(r"source at main@sha1:.*: 2 certificates")
    deadline = time.time() + 30
    while not (env.cert_dir("b") / "tls.crt").exists() and time.time() < deadline:
        time.sleep(0.05)
    check_outputs(env.cert_dir("b"), ["b.example.test"])
    d.stop()
    secret_free(env, key, "".join(d.raw), env.state.read_text())


def test_deploy_key_from_env(env, sshd, tmp_path):
    key, pub = keygen(tmp_path / "envkey")
    sshd.authorize(pub)
    ssh_setup(env, sshd, tmp_path, key=key)
    env.config.write_text(env.config.read_text().replace(f"sshKey: {{file: {key}}}", "sshKey: {env: DEPLOY_KEY}"))
    r = env.run("plan", env={"DEPLOY_KEY": key.read_text()}, check=0)
    assert "+ a" in r.out, r
    r = env.run("plan")
    assert r.code == 1 and "DEPLOY_KEY" in r.err and "not set" in r.err, r


def test_unknown_or_changed_host_key_is_refused(env, sshd, tmp_path):
    other, other_pub = keygen(tmp_path / "other_host")
    url, bare, key = ssh_setup(env, sshd, tmp_path, known="")
    fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(sshd.host_pub)], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    kh = tmp_path / "known_hosts"
    kh.write_text("# nothing for this host\n127.0.0.2 " + " ".join(other_pub.read_text().split()[:2]) + "\n")
    r = env.run("plan", check=1)
    assert f"[127.0.0.1]:{sshd.port}" in r.err and fp in r.err and "not in source.knownHosts" in r.err, r
    # The same host with another key: a changed host key, never accepted.
    kh.write_text(sshd.known_hosts_line(other_pub))
    r = env.run("apply", check=1)
    assert "changed" in r.err and fp in r.err, r
    assert not (env.cert_dir("a") / "tls.crt").exists()
    assert "Accepted publickey" not in sshd.log.read_text()
    # Hashed known_hosts (HashKnownHosts yes) work.
    kh.write_text(sshd.known_hosts_line())
    subprocess.run(["ssh-keygen", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert "|1|" in kh.read_text()
    r = env.run("plan", check=0)
    secret_free(env, key, r.out, r.err)


def test_wrong_deploy_key_is_a_clear_auth_error(env, sshd, tmp_path):
    wrong, _ = keygen(tmp_path / "wrong")  # never authorized
    ssh_setup(env, sshd, tmp_path, key=wrong)
    r = env.run("plan", check=1)
    assert "refused the deploy key" in r.err and "source.sshKey" in r.err, r
    secret_free(env, wrong, r.out, r.err)
    # An encrypted key with its passphrase works; without it the error says so.
    enc, enc_pub = keygen(tmp_path / "enc", passphrase="s3cret-pass")
    sshd.authorize(enc_pub)
    pw = tmp_path / "pass"
    pw.write_text("s3cret-pass\n")
    pw.chmod(0o600)
    text = env.config.read_text().replace(str(wrong), str(enc))
    env.config.write_text(text)
    r = env.run("plan", check=1)
    assert "source.sshKey" in r.err or "passphrase" in r.err.lower(), r
    env.config.write_text(text.replace("  knownHosts:", f"  sshKeyPassphrase: {{file: {pw}}}\n  knownHosts:"))
    r = env.run("plan", check=0)
    assert "s3cret-pass" not in r.out + r.err


def test_ssh_source_needs_known_hosts_and_a_key(env, tmp_path):
    env.write_config()
    text = env.config.read_text().replace("  repo: repo\n", "  repo: git@git.example.test:acme/certs.git\n")
    env.config.write_text(text)
    r = env.run("validate", check=1)
    assert "knownHosts" in r.err and "sshKey" in r.err, r
    assert "certsync.yaml:" in r.err


def test_local_path_source_does_not_demand_a_token(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.config.write_text(env.config.read_text().replace(
        "  repo: repo\n", "  repo: repo\n  token: {env: CERTSYNC_TEST_UNSET_TOKEN}\n"))
    env.run("plan", check=0)
    env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
