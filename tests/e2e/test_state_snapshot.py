"""The file backend's decoded-state snapshot (state.json.snap): plans read it
instead of decoding state.json, and never when state.json changed behind it:
a hand edit that keeps the serial, a restore of the backup, a damaged
snapshot. Each is planned from the JSON as it is now."""
import datetime
import json
import re

from conftest import manifest

SNAP_USED = "read from its snapshot"


def plan_v(env):
    """plan -v: (the JSON plan, the debug log)."""
    r = env.run("plan", "--format", "json", "-v")
    assert r.code in (0, 2), r
    return json.loads(r.out), r.err


def changes(plan):
    return [(c["name"], c["action"]) for c in plan["changes"]]


def test_plan_reads_the_snapshot_and_sees_a_hand_edit_that_keeps_the_serial(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    snap = env.state.with_name("state.json.snap")
    assert snap.exists() and (snap.stat().st_mode & 0o777) == 0o600
    plan, log = plan_v(env)
    assert changes(plan) == [] and SNAP_USED in log, log
    plan, log = plan_v(env)  # the second one too (the first may have re-checked a just-written state)
    assert changes(plan) == [] and SNAP_USED in log, log

    # By hand: a's certificate expired yesterday, same serial, same size.
    text = env.state.read_text()
    serial = env.state_json()["serial"]
    old = env.state_json()["certificates"]["a"]["not_after"]
    soon = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(soon) == len(old)
    edited = re.sub(r'("a": \{.*?"not_after": ")[^"]+', lambda m: m.group(1) + soon, text, count=1, flags=re.S)
    assert edited != text and len(edited) == len(text)
    with open(env.state, "r+") as f:  # in place: the same inode, as editors that rewrite the file do
        f.write(edited)
    assert env.state_json()["serial"] == serial

    plan, log = plan_v(env)
    assert changes(plan) == [("a", "renew")], plan
    assert plan["changes"][0]["reason_code"] == "expired"
    assert SNAP_USED not in log, log
    # the snapshot was rebuilt from the edited JSON: the next plan reads it and still sees the edit
    plan, log = plan_v(env)
    assert changes(plan) == [("a", "renew")] and SNAP_USED in log, log


def test_a_restored_backup_is_planned_not_the_newer_snapshot(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit("add b")
    env.run("apply", check=0)  # state: a and b; backup: a only; snapshot: a and b
    plan, log = plan_v(env)
    assert changes(plan) == [], log

    # the backup back in place, and beside it the snapshot of the newer state (a and b)
    snap = env.state.with_name("state.json.snap")
    stale = snap.read_bytes()
    env.state.unlink()
    env.run("state", "restore", check=0)
    assert set(env.state_json()["certificates"]) == {"a"}
    snap.write_bytes(stale)
    plan, log = plan_v(env)
    assert changes(plan) == [("b", "create")], plan
    assert "snapshot not used" in log, log


def test_a_damaged_snapshot_is_ignored_and_rebuilt(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    snap = env.state.with_name("state.json.snap")
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0x40
    snap.write_bytes(bytes(data))
    plan, log = plan_v(env)
    assert changes(plan) == [], plan
    assert "snapshot not used" in log and "checksum mismatch" in log, log
    plan, log = plan_v(env)
    assert changes(plan) == [] and SNAP_USED in log, log
    # a snapshot cut short
    snap.write_bytes(snap.read_bytes()[:100])
    plan, log = plan_v(env)
    assert changes(plan) == [] and SNAP_USED not in log, log


def test_the_snapshot_holds_no_secrets(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    snap = env.state.with_name("state.json.snap").read_bytes()
    key = (env.cert_dir("a") / "tls.key").read_text()
    body = "".join(key.strip().splitlines()[1:-1])
    assert b"PRIVATE KEY" not in snap
    assert body[:40].encode() not in snap
    ca_key = (env.dir / "ca" / "ca.key").read_text()
    assert "".join(ca_key.strip().splitlines()[1:-1])[:40].encode() not in snap
