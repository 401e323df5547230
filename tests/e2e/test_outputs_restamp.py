"""An output root copied or restored with its content unchanged (new inodes, other mtimes) is as installed: no plan
shows a change for it. Its files are read once to show that, and apply (or run) records their new signatures, so the
plans after it check them by stat again instead of reading every file of every certificate (reconciler/outputs.c,
outputs_restamp). An edit after that is still seen."""
import os
import re
import shutil
import signal
import time

from conftest import manifest
from test_run import daemons, run_config  # noqa: F401 (daemons is a fixture)

NAMES = ["a", "b", "c"]


def by_content(result):
    """How many certificates' outputs the run's `-v` log says were shown as installed by their content."""
    m = re.search(r"outputs of \d+ certificates checked in \d+ ms \((?:.*; )?(\d+) by content\)", result)
    assert m, result
    return int(m.group(1))


def restore_from_backup(root, age_s=600):
    """What a backup restore or a move to a new volume does: the same bytes, new inodes, the backup's mtimes."""
    backup = root.with_name(root.name + ".backup")
    shutil.copytree(root, backup, symlinks=True)
    shutil.rmtree(root)
    backup.rename(root)
    old = time.time() - age_s
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (old, old))


def write_manifests(env):
    for name in NAMES:
        env.repo.write(f"{name}.yaml", manifest(name, [f"{name}.example.test"]))
    env.repo.commit()


def test_apply_records_a_restored_output_root_once(env):
    write_manifests(env)
    env.run("apply", check=0)
    before = {n: (env.out / n / "tls.crt").read_bytes() for n in NAMES}
    serial = env.state_json()["serial"]

    restore_from_backup(env.out)
    r = env.run("plan", "-v", "--detailed-exitcode", check=0)  # as installed: nothing to do
    assert by_content(r.err) == 3, r
    assert re.search(r"the files of 3 certificates' outputs were copied, restored or touched since they were "
                     r"installed, their content unchanged: this plan read them; certsync apply records", r.err), r
    r = env.run("plan", "-v", "--detailed-exitcode", check=0)
    assert by_content(r.err) == 3, "a plan records nothing: the next one reads the files again"

    r = env.run("apply", "-v", check=0)
    assert re.search(r"the files of 3 certificates' outputs were copied, restored or touched, their content "
                     r"unchanged: their new signatures are recorded", r.err), r
    assert env.state_json()["serial"] == serial + 1
    assert {n: (env.out / n / "tls.crt").read_bytes() for n in NAMES} == before, "nothing was reinstalled"
    r = env.run("plan", "-v", "--detailed-exitcode", check=0)
    assert by_content(r.err) == 0, r
    r = env.run("apply", "-v", check=0)
    assert "new signatures are recorded" not in r.err and env.state_json()["serial"] == serial + 1

    # The recorded signatures are the files' own: an edit in place is still a change.
    path = env.out / "b" / "tls.crt"
    data = bytearray(path.read_bytes())
    at = data.index(b"\n", data.index(b"BEGIN")) + 10
    data[at] = ord("A") if data[at] != ord("A") else ord("B")
    with open(path, "r+b") as f:
        f.write(data)
    plan = env.plan_json()
    assert [c["name"] for c in plan["changes"] if c["action"] != "none"] == ["b"], plan
    env.run("apply", check=0)
    assert path.read_bytes() == before["b"]


def test_a_restored_file_just_written_waits_for_a_later_apply(env):
    """A file modified in the last seconds is not recorded: a second write in the same timestamp tick would keep the
    signature taken now."""
    write_manifests(env)
    env.run("apply", check=0)
    restore_from_backup(env.out, age_s=0)
    r = env.run("apply", "-v", check=0)
    assert "new signatures are recorded" not in r.err and "a later look does it" in r.err, r
    assert by_content(env.run("plan", "-v", check=0).err) == 3
    old = time.time() - 600
    for n in NAMES:
        for f in ("tls.crt", "tls.key", "ca.crt"):
            os.utime(env.out / n / f, (old, old))
    r = env.run("apply", "-v", check=0)
    assert "new signatures are recorded" in r.err, r
    assert by_content(env.run("plan", "-v", check=0).err) == 0


def test_run_records_touched_outputs_and_saves_them(env, daemons):  # noqa: F811
    run_config(env, interval="1h")  # passes only on SIGUSR1
    write_manifests(env)
    d = daemons(env, args=("-v",))
    d.wait_ready()
    old = time.time() - 600
    for n in NAMES:
        for f in ("tls.crt", "tls.key", "ca.crt"):
            os.utime(env.out / n / f, (old, old))
    start = len(d.messages())
    d.signal(signal.SIGUSR1)
    d.wait_log(r"the files of 3 certificates' outputs were copied, restored or touched", start=start)
    i = d.wait_log(r"^planned \d+ certificates in \d+ ms .*: 0 due", start=start)
    assert not any(m.startswith("reinstall") for m in d.messages()[start:i + 1])
    assert d.stop()[0] == 0
    assert by_content(env.run("plan", "-v", "--detailed-exitcode", check=0).err) == 0
