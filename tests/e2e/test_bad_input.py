"""Hostile input end to end (issue 15): configs with map, list or null keys (validate, and `run` given one by
SIGHUP), deeply nested flow YAML, and git file names holding a newline or a terminal escape."""
import re
import signal
import time

from conftest import manifest
from test_run import daemons, run_config  # noqa: F401  (daemons is a fixture)

# Issuer keys that crashed the config parser (strlen(NULL) / strcmp(NULL)): exit 139 before.
BAD_KEYS = ["? ?", "? {a: b}", "? [a]", "? ~", "~: {type: ca}"]


def test_validate_refuses_non_string_issuer_keys_with_a_position(env):
    good = env.config.read_text()
    for key in BAD_KEYS:
        env.config.write_text(good.replace("issuers:\n", f"issuers:\n  {key}\n", 1))
        r = env.run("validate", check=1)
        assert re.search(r"certsync\.yaml:\d+:\d+: a map key must be a string", r.err + r.out), (key, r)
    env.config.write_text("issuers:\n ? ?\n")
    r = env.run("validate", check=1)
    assert "certsync.yaml:2:4: a map key must be a string, got a map" in r.err + r.out, r


def test_sighup_with_a_non_string_key_keeps_the_running_config(env, daemons):  # noqa: F811
    run_config(env, interval="1h")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    d = daemons(env)
    d.wait_ready()
    good = env.config.read_text()
    for key in BAD_KEYS:
        env.config.write_text(good.replace("issuers:\n", f"issuers:\n  {key}\n", 1))
        n = len(d.messages())
        d.signal(signal.SIGHUP)
        d.wait_log(r"keeping the running one", start=n)
        assert any(re.search(r"certsync\.yaml:\d+:\d+: a map key must be a string", m) for m in d.messages()[n:])
        assert d.proc.poll() is None and d.get("/readyz")[0] == 200
    # the old config is the one that runs: a new certificate is still issued with it
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    n = len(d.messages())
    d.signal(signal.SIGUSR1)
    d.wait_log(r"reconcile done: 1 done", start=n)
    assert (env.cert_dir("b") / "tls.crt").exists()
    assert d.stop()[0] == 0


def test_deeply_nested_flow_yaml_is_refused_at_the_limit(env):
    # 1 MiB (the file limit) of '[': libyaml alone took about 12 minutes on it.
    env.repo.write("deep.yaml", "[" * (1024 * 1024))
    env.repo.write("ok.yaml", manifest("ok", ["ok.example.test"]))
    env.repo.commit()
    t0 = time.monotonic()
    r = env.run("validate", check=1, timeout=60)
    took = time.monotonic() - t0
    assert "certificates/deep.yaml:1:65: nesting deeper than 64 levels" in r.out + r.err, r
    print(f"validate with 1 MiB of '[': {took:.2f} s")
    # the same in the config
    env.config.write_text("source: " + "{a: " * 200000)
    r = env.run("validate", check=1, timeout=60)
    assert re.search(r"certsync\.yaml:1:\d+: nesting deeper than 64 levels", r.out + r.err), r


def test_git_file_names_with_control_characters_are_escaped(env):
    name = "x\nerror: forged\x1b[31m.yaml"
    env.repo.write(name, manifest("Bad", ["bad.example.test"]))
    env.repo.commit()
    r = env.run("validate", check=1)
    out = r.out + r.err
    assert "\x1b" not in out and "\nerror: forged" not in out, out
    assert "certificates/x\\nerror: forged\\x1b[31m.yaml:4:9: metadata.name" in out, out
    for fmt in ("text", "markdown", "github", "json"):
        r = env.run("plan", "--format", fmt)
        assert r.code in (1, 2, 0), r
        assert "\x1b" not in r.out and "\nerror: forged" not in r.out, (fmt, r.out)
