"""A commit that changes no certificate costs a few bytes, not a rewrite of the state
(state_note_source, docs/architecture.md "Writes"): `run` and `apply` record "the source is now
at commit X" as one journal line beside state.json, which stays as it was; plan (text, JSON,
Markdown) reads it over the snapshot; a kill -9 right after loses nothing; the next real change
does a full save that folds the journal. On postgres the header row alone moves."""
import json
import os
import re
import signal
import time

from conftest import manifest
from pg_env import use_postgres
from test_run import daemons, run_config  # noqa: F401 (daemons: a fixture)

SNAP_USED = "read from its snapshot"


def ident(path):
    """What a rewrite would change: inode, size, mtime (ns)."""
    s = os.stat(path)
    return s.st_ino, s.st_size, s.st_mtime_ns


def journal(env):
    p = env.state.with_name("state.json.journal")
    if not p.exists():
        return []
    return [json.loads(l) for l in p.read_text().splitlines()]


def source_lines(env):
    return [l for l in journal(env) if "source" in l]


def applied(env):
    """The commit plan says was last applied, with the debug log of that plan."""
    r = env.run("plan", "--format", "json", "-v")
    assert r.code in (0, 2), r
    return json.loads(r.out)["state"]["applied_commit"], r.err


def noop_commit(env, n=1):
    """A one-file commit outside the manifests' folder: no certificate changes."""
    (env.repo.path / "README.md").write_text(f"notes {n}\n")
    return env.repo.commit(f"readme {n}")


def wait_for(cond, what, timeout=30, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        assert proc is None or proc.poll() is None, f"certsync exited while waiting for {what}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_follows_a_noop_commit_without_rewriting_the_state(env, daemons):
    run_config(env, interval="1s")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    first = env.repo.commit("add a")
    d = daemons(env)
    d.wait_ready()
    d.wait_log(r"reconcile done: 1 done")
    wait_for(lambda: env.state_json()["source"]["commit"] == first, "the first save")
    before, serial = ident(env.state), env.state_json()["serial"]

    head = noop_commit(env)
    lines = wait_for(lambda: [l for l in source_lines(env) if l["source"]["commit"] == head],
                     "the source line", proc=d.proc)
    assert lines[0]["serial"] == serial + 1
    assert lines[0]["source"]["ref"] == "main"
    assert lines[0]["source"]["url"] == str(env.repo.path)
    # The next fetches come and go (event: the fetch counter moves on twice): still no rewrite.
    fetches = d.metric("certsync_source_fetches_total", result="success")
    wait_for(lambda: d.metric("certsync_source_fetches_total", result="success") >= fetches + 2,
             "two more fetches", proc=d.proc)
    assert ident(env.state) == before, "state.json was rewritten for a commit that changes nothing"
    assert env.state_json()["source"]["commit"] == first
    commit, log = applied(env)
    assert commit == head, log
    r = env.run("plan", check=0)
    assert f"last applied {head[:12]}" in r.out, r

    # A kill -9 right after: the line was durable before the pass went on.
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    assert ident(env.state) == before
    assert applied(env)[0] == head

    # The next real change is a full save: the journal folds into state.json.
    d2 = daemons(env)
    d2.wait_ready()
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    head2 = env.repo.commit("add b")
    wait_for(lambda: (env.cert_dir("b") / "tls.crt").exists(), "b installed", proc=d2.proc)
    d2.wait_log(r"reconcile done: 1 done")
    wait_for(lambda: env.state_json()["source"]["commit"] == head2, "the full save", proc=d2.proc)
    assert ident(env.state)[0] != before[0]
    assert source_lines(env) == []
    assert env.state_json()["serial"] > serial + 1
    assert applied(env)[0] == head2
    code, _ = d2.stop()
    assert code == 0


def test_apply_after_a_noop_commit_does_not_rewrite_the_state(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit("add a and b")
    env.run("apply", check=0)
    before = ident(env.state)
    saved = env.state_json()
    bak = env.state.with_name("state.json.backup")
    backup = bak.read_bytes() if bak.exists() else None

    heads = []
    for n in (1, 2):
        heads.append(noop_commit(env, n))
        r = env.run("apply", check=0)
        assert "No changes" in r.out, r
        assert ident(env.state) == before, "apply rewrote state.json for a commit that changes nothing"
        assert (bak.read_bytes() if bak.exists() else None) == backup
    assert [l["source"]["commit"] for l in source_lines(env)] == heads
    assert [l["serial"] for l in journal(env)] == [saved["serial"] + 1, saved["serial"] + 2]

    # Every reader sees it: plan (over the snapshot), JSON, Markdown (the PR plan), state list.
    env.run("plan", "--format", "json")  # the first load after a save may re-check a racy snapshot
    commit, log = applied(env)
    assert commit == heads[-1] and SNAP_USED in log, log
    plan = env.plan_json()
    assert plan["state"]["serial"] == saved["serial"] + 2
    r = env.run("plan", "--format", "markdown", check=0)
    assert f"last applied sha1:{heads[-1][:12]}" in r.out, r
    r = env.run("state", "list", check=0)
    assert "a" in r.out and "b" in r.out, r
    # An apply with nothing new to record writes nothing at all.
    r = env.run("apply", check=0)
    assert len(journal(env)) == 2 and ident(env.state) == before

    # A real change: one full save, the journal folded, the serial goes on from the lines.
    env.repo.remove("b.yaml")
    head = env.repo.commit("remove b")
    env.run("apply", check=0)
    assert journal(env) == []
    st = env.state_json()
    assert st["source"]["commit"] == head and st["lineage"] == saved["lineage"]
    assert st["serial"] > saved["serial"] + 2
    assert set(st["certificates"]) == {"a"}
    assert applied(env)[0] == head


def test_a_damaged_source_line_is_refused_with_its_place(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit("add a")
    env.run("apply", check=0)
    noop_commit(env)
    env.run("apply", check=0)
    jnl = env.state.with_name("state.json.journal")
    text = jnl.read_text()
    jnl.write_text(re.sub(r'"commit":"[0-9a-f]+"', '"commit":"not-hex"', text) + text)
    r = env.run("plan")
    assert r.code == 1, r
    assert "state.json.journal:1: source.commit: expected 40 or 64 lowercase hex digits" in r.err, r
    assert len([l for l in r.err.splitlines() if l.startswith("error")]) == 1, r
    # apply refuses too, and writes nothing
    before = ident(env.state)
    r = env.run("apply")
    assert r.code == 1 and "state.json.journal:1:" in r.err, r
    assert ident(env.state) == before


def test_postgres_apply_after_a_noop_commit_moves_the_header_alone(env, pg):
    use_postgres(env, pg)
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit("add a")
    env.run("apply", check=0)
    serial = int(pg.psql("SELECT serial FROM certsync.header"))
    rows = pg.psql("SELECT name || ' ' || changed_serial FROM certsync.certs ORDER BY name")
    head = noop_commit(env)
    r = env.run("apply", check=0)
    assert "No changes" in r.out, r
    assert pg.psql("SELECT serial || ' ' || source_commit FROM certsync.header") == f"{serial + 1} {head}"
    assert pg.psql("SELECT name || ' ' || changed_serial FROM certsync.certs ORDER BY name") == rows
    assert env.plan_json()["state"]["applied_commit"] == head
