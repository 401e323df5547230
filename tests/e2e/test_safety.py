"""Stale plans, the state lock, crashes at any point, and invalid revisions."""
import json
import os
import random
import signal
import time

from conftest import check_outputs, manifest


def test_saved_plan_applies_and_then_is_stale(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    r = env.run("plan", "--out", "plan.json", check=0)
    assert "Saved the plan" in r.err
    saved = json.loads((env.dir / "plan.json").read_text())
    assert saved["changes"][0]["name"] == "a"
    env.run("apply", "plan.json", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    # Applying the same plan again: the state moved on since.
    r = env.run("apply", "plan.json", check=1)
    assert "stale plan" in r.err, r


def test_saved_plan_refused_after_new_commit(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.run("plan", "--out", "plan.json", check=0)
    env.repo.write("c.yaml", manifest("c", ["c.example.test"]))
    env.repo.commit()
    r = env.run("apply", "plan.json", check=1)
    assert "stale plan" in r.err and "commit" in r.err, r
    assert not env.cert_dir("b").exists()


def test_saved_plan_refused_for_another_lineage(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.run("plan", "--out", "plan.json", check=0)
    plan = json.loads((env.dir / "plan.json").read_text())
    plan["state"]["lineage"] = "00000000-0000-4000-8000-000000000000"
    (env.dir / "plan.json").write_text(json.dumps(plan))
    r = env.run("apply", "plan.json", check=1)
    assert "stale plan" in r.err and "lineage" in r.err, r


def test_second_apply_is_refused_while_one_runs(env):
    hook = env.dir / "slow-hook.sh"
    hook.write_text("#!/bin/sh\nsleep 4\n")
    hook.chmod(0o755)
    env.write_config(extra=f"hooks:\n  onChange: [{hook}]\n  timeout: 30s\n")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    first = env.popen("apply")
    lock = env.state.with_name("state.json.lock")
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not (lock.exists() and lock.stat().st_size > 0):
            time.sleep(0.02)
        second = None
        while time.time() < deadline:
            second = env.run("apply")
            if second.code == 1 and "locked" in second.err:
                break
            time.sleep(0.1)
        assert second is not None and "locked by apply" in second.err, second
        assert f"pid {first.pid}" in second.err, second
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    env.run("apply", check=0)


def test_kill_at_random_points_then_converge(env):
    """SIGKILL apply several times mid-flight; the next apply converges and
    never redoes a certificate that was already finished."""
    names = [f"c{i:02d}" for i in range(24)]
    # Replaced generations go at once: a generation a killed apply had linked stays keepPreviousFor (60 s by
    # default) after the next apply replaces it, and this test counts what is left behind.
    env.config.write_text(env.config.read_text().replace("output:\n  root: certs\n",
                                                         "output:\n  root: certs\n  keepPreviousFor: 0\n"))
    assert "keepPreviousFor: 0" in env.config.read_text()
    for n in names:
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test"], extra="privateKey: {algorithm: RSA, size: 2048}"))
    env.repo.commit()
    rng = random.Random(1234)
    finished = {}
    for round_ in range(6):
        p = env.popen("apply", "--parallelism", "2")
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.communicate()
        if not env.state.exists() and not env.state.with_name("state.json.journal").exists():
            continue
        r = env.run("state", "list", check=0)
        for line in r.out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[1] == "ready":
                rec = json.loads(env.run("state", "show", parts[0], check=0).out)
                if parts[0] in finished:
                    assert finished[parts[0]] == rec["serial"], f"{parts[0]} was issued again after it was done"
                finished[parts[0]] = rec["serial"]
    r = env.run("apply", check=0)
    r = env.run("plan", "--detailed-exitcode", check=0)
    st = env.state_json()
    assert sorted(st["certificates"]) == names
    for n in names:
        rec = st["certificates"][n]
        assert rec["phase"] == "ready"
        if n in finished:
            assert rec["serial"] == finished[n], f"{n} was issued again after it was done"
        check_outputs(env.cert_dir(n), [f"{n}.example.test"])
    # No half-published generations left behind.
    gens = [p.name for p in env.out.iterdir() if p.name.startswith(".") and p.name != ".certsync-published"]
    assert len(gens) == len(names), gens


def test_invalid_revision_applies_nothing_unless_allow_partial(env):
    env.repo.write("good.yaml", manifest("good", ["good.example.test"]))
    env.repo.write("bad.yaml", manifest("bad", ["bad..example.test"]))
    env.repo.commit()
    r = env.run("validate", check=1)
    assert "bad.yaml:" in r.out and "dnsNames" in r.out, r
    r = env.run("plan", check=1)
    assert "bad.yaml" in r.out, r
    r = env.run("apply", check=1)
    assert "nothing applied" in r.err, r
    assert not env.cert_dir("good").exists()
    r = env.run("apply", "--allow-partial", check=1)
    check_outputs(env.cert_dir("good"), ["good.example.test"])
    assert not env.cert_dir("bad").exists()


def test_validate_reports_every_problem_with_positions(env):
    env.repo.write("one.yaml", manifest("dup", ["a.example.test"]) + "---\n" +
                   manifest("x", ["x.example.test"], issuer="nosuch"))
    env.repo.write("two.yaml", manifest("dup", ["b.example.test"]) + "---\n" +
                   manifest("k", ["k.example.test"], extra="privateKey: {algorithm: RSA, size: 1024}"))
    env.repo.commit()
    r = env.run("validate", check=1)
    lines = r.out.strip().splitlines()
    assert any(l.startswith("certificates/one.yaml:") and "duplicate" in l for l in lines), r
    assert any(l.startswith("certificates/two.yaml:") and "1024" in l for l in lines), r
    assert any("unknown issuer \"nosuch\"" in l for l in lines), r
    for l in lines:
        assert l.startswith("certificates/"), l
    env.repo.write("two.yaml", manifest("dup2", ["b.example.test"]))
    env.repo.write("one.yaml", manifest("dup", ["a.example.test"]))
    env.repo.commit()
    r = env.run("validate", check=0)
    assert "2 certificates in 2 files" in r.out


def test_reads_the_commit_not_the_working_tree(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))  # not committed
    plan = env.plan_json()
    assert [c["name"] for c in plan["changes"]] == ["a"]


def test_bad_config_reports_positions(env):
    env.config.write_text("source: {repo: repo}\nstate: {path: s.json}\noutput: {root: out}\n"
                          "issuers:\n  internal: {type: ca, selfsigned: true}\n")
    r = env.run("validate", check=1)
    assert "certsync.yaml:5:" in r.err and "selfsigned" in r.err and "did you mean \"selfSigned\"" in r.err, r


def test_corrupt_state_is_refused_naming_the_backup(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    assert env.state.with_name("state.json.backup").exists()
    env.state.write_text('{"version": 1, "lineage": ')
    r = env.run("plan", check=1)
    assert "state" in r.err and "backup" in r.err, r
    env.state.write_text('{"version": 99}')
    r = env.run("apply", check=1)
    assert "version 99" in r.err, r


def test_invalid_manifest_is_never_pruned(env):
    """With prune on, a manifest that becomes invalid is not a deleted one: its certificate stays."""
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("b.yaml", manifest("b", ["b..example.test"]))
    env.repo.commit("break b")
    plan = json.loads(env.run("plan", "--format", "json", check=1).out)
    assert plan["summary"]["errors"] == 1
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("b", "orphan")]
    env.run("apply", "--allow-partial", check=1)
    check_outputs(env.cert_dir("b"), ["b.example.test"])
    assert "b" in env.state_json()["certificates"]
