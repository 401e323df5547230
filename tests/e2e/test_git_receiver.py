"""The git push receiver (POST /webhooks/git/<secret>: GitHub, GitLab, generic) and suspend (per certificate and
for the whole source), against `certsync run`."""
import hashlib
import hmac
import json
import signal
import time
import urllib.error
import urllib.request

from conftest import check_outputs, manifest
from test_run import daemons, run_config  # noqa: F401 (fixture)

RX_SECRET = "rx-secret-8c1e5b0d2f"


def rx_config(env, interval="1h"):
    """A run config whose interval is long: only a push (or a restart) makes it fetch."""
    run_config(env, interval=interval)
    text = env.config.read_text().replace("  path: certificates\n",
                                          "  path: certificates\n  receiverSecret: {env: CERTSYNC_RX_SECRET}\n", 1)
    env.config.write_text(text)


def post(env, path, body=b"{}", headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{env.port}{path}", data=body, method="POST",
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def github_headers(body, event="push", secret=RX_SECRET):
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": "sha256=" + sig, "X-GitHub-Delivery": "1"}


def wait_file(path, timeout=30):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), path


def start(env, daemons):
    d = daemons(env, extra_env={"CERTSYNC_RX_SECRET": RX_SECRET})
    d.wait_ready()
    return d


def test_a_push_fetches_at_once_github_gitlab_and_generic(env, daemons):
    rx_config(env)
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    d = start(env, daemons)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    body = json.dumps({"ref": "refs/heads/main"}).encode()

    # GitHub: ping is answered, a bad signature is refused and fetches nothing, a signed push fetches now.
    assert post(env, f"/webhooks/git/{RX_SECRET}", body, github_headers(body, "ping"))[0] == 200
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    code, _ = post(env, f"/webhooks/git/{RX_SECRET}", body, github_headers(body, secret="wrong"))
    assert code == 403
    code, _ = post(env, f"/webhooks/git/{RX_SECRET}", body, {"X-GitHub-Event": "push"})
    assert code == 403
    assert post(env, "/webhooks/git/not-the-secret", body, github_headers(body))[0] == 404
    assert not env.cert_dir("b").exists()
    code, text = post(env, f"/webhooks/git/{RX_SECRET}", body, github_headers(body))
    assert code == 202 and json.loads(text) == {"queued": "fetch"}
    d.wait_log("git push received: fetching now")
    wait_file(env.cert_dir("b") / "tls.crt")

    # GitLab: the token header must be the secret (compared in constant time).
    env.repo.write("c.yaml", manifest("c", ["c.example.test"]))
    env.repo.commit()
    assert post(env, f"/webhooks/git/{RX_SECRET}", body, {"X-Gitlab-Event": "Push Hook",
                                                          "X-Gitlab-Token": "nope"})[0] == 403
    assert post(env, f"/webhooks/git/{RX_SECRET}", body, {"X-Gitlab-Event": "Issue Hook",
                                                          "X-Gitlab-Token": RX_SECRET})[0] == 202
    assert not env.cert_dir("c").exists()
    assert post(env, f"/webhooks/git/{RX_SECRET}", body, {"X-Gitlab-Event": "Push Hook",
                                                          "X-Gitlab-Token": RX_SECRET})[0] == 202
    wait_file(env.cert_dir("c") / "tls.crt")

    # A large push payload (GitHub lists the pushed commits) is still verified and acted on.
    big = json.dumps({"ref": "refs/heads/main", "commits": ["x" * 1000] * 200}).encode()
    assert post(env, f"/webhooks/git/{RX_SECRET}", big, github_headers(big))[0] == 202

    # Gitea (bare hex HMAC) and Flux's generic-hmac (X-Signature): a wrong signature is refused.
    sig = github_headers(body)["X-Hub-Signature-256"]
    assert post(env, f"/webhooks/git/{RX_SECRET}", body, {"X-Gitea-Event": "push", "X-Gitea-Signature": "0" * 64})[0] == 403
    assert post(env, f"/webhooks/git/{RX_SECRET}", body, {"X-Gitea-Event": "push", "X-Gitea-Signature": sig[7:]})[0] == 202
    assert post(env, f"/webhooks/git/{RX_SECRET}", b"{}", {"X-Signature": sig})[0] == 403
    assert post(env, f"/webhooks/git/{RX_SECRET}", body, {"X-Signature": sig})[0] == 202

    # Generic: the secret path alone.
    env.repo.write("e.yaml", manifest("e", ["e.example.test"]))
    env.repo.commit()
    assert post(env, f"/webhooks/git/{RX_SECRET}", b"")[0] == 202
    wait_file(env.cert_dir("e") / "tls.crt")

    # The provider webhook secret does not open the git receiver, and "git" is never a provider.
    assert post(env, "/webhooks/git/wh-secret-4f1d2a9c7b", body)[0] == 404
    assert d.metric("certsync_webhook_events_total", provider="git", outcome="forged") >= 3
    assert d.metric("certsync_webhook_events_total", provider="git", outcome="fetch") >= 3
    d.stop()
    assert RX_SECRET not in "".join(d.raw)


def test_receiver_is_off_without_its_secret(env, daemons):
    run_config(env, interval="1h")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    d = daemons(env)
    d.wait_ready()
    assert post(env, f"/webhooks/git/{RX_SECRET}", b"")[0] == 404


def test_suspended_certificate_gets_no_changes(env, daemons):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"], extra="suspend: true"))
    env.repo.commit()
    r = env.run("plan", check=0)
    assert "b: suspended (spec.suspend: true" in r.out + r.err, r
    plan = env.plan_json()
    assert [c["name"] for c in plan["changes"]] == ["a"]
    assert any("b: suspended" in w for w in plan["warnings"])
    env.run("apply", check=0)
    assert not env.cert_dir("b").exists()
    # A suspended certificate's spec change (names) plans nothing either; resuming plans it.
    before = env.repo.git("rev-parse", "HEAD")
    env.repo.write("a.yaml", manifest("a", ["a.example.test", "a2.example.test"], extra="suspend: true"))
    env.repo.commit()
    plan = env.plan_json()
    assert plan["changes"] == []
    # A pull-request plan says the same: no replace for a suspended certificate.
    r = env.run("plan", "--base", before, "--head", "main", "--format", "json", check=0)
    pr = json.loads(r.out)
    assert pr["changes"] == [] and any("a: suspended" in w for w in pr["warnings"]), pr
    env.repo.write("a.yaml", manifest("a", ["a.example.test", "a2.example.test"]))
    env.repo.commit()
    plan = env.plan_json()
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("a", "replace")]
    env.repo.write("b.yaml", manifest("b", ["b.example.test"], extra="suspend: maybe"))
    env.repo.commit()
    r = env.run("validate", check=1)
    assert "certificates/b.yaml:8:12: spec.suspend: expected true or false" in r.out, r


def test_suspended_source_neither_fetches_nor_applies(env, daemons):
    rx_config(env, interval="1s")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    d = start(env, daemons)
    env.config.write_text(env.config.read_text().replace("  receiverSecret:", "  suspend: true\n  receiverSecret:", 1))
    d.signal(signal.SIGHUP)
    i = d.wait_log("source.suspend is true")
    code, body = d.get("/readyz")
    ready = json.loads(body)
    assert ready["source"]["suspended"] is True and "suspended" in ready["source"]["reason"], ready
    assert code == 200  # suspending keeps serving what is installed
    assert d.metric("certsync_source_suspended") == 1
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    assert post(env, f"/webhooks/git/{RX_SECRET}", b"")[0] == 202
    d.wait_log("git push received: ignored", start=i)
    # Several loop turns (interval 1s) pass: nothing is fetched or applied.
    t0 = d.metric("certsync_loop_last_pass_timestamp_seconds")
    deadline = time.time() + 30
    while d.metric("certsync_loop_last_pass_timestamp_seconds") < t0 + 2.5 and time.time() < deadline:
        time.sleep(0.1)
    assert not env.cert_dir("b").exists()
    assert not any("source at" in m for m in d.messages()[i:])
    env.config.write_text(env.config.read_text().replace("  suspend: true\n", "", 1))
    d.signal(signal.SIGHUP)
    wait_file(env.cert_dir("b") / "tls.crt")
    assert d.metric("certsync_source_suspended") == 0
