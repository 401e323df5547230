"""The postgres backend's local decoded snapshot (docs/state.md): `plan` keeps the state it read in
<source.cacheDir>/state-pg-<id>.snap (and `apply` the state it wrote last) and reads it instead of
every row while the header row is the one it was made from. Every write by another process (apply's journal, state rm, a second apply) is
seen by the next plan, and so is SQL run on the rows by hand (the schema's triggers move the header row), by running
replicas too; a damaged or foreign snapshot is ignored and rebuilt; a cache directory that
cannot be written is no error; nothing secret is in the file."""
import json
import re
import shutil
import time
from types import SimpleNamespace

from conftest import manifest
from pg_env import use_postgres
from pg_env import free_port
from test_run import daemons, run_config  # noqa: F401 (daemons is a fixture)

SNAPSHOT_USED = "read from its snapshot"
SNAPSHOT_NOT_USED = "snapshot not used"


def pg_env(env, pg, cache="cache", schema="certsync"):
    env.write_config()
    text = env.config.read_text().replace("  path: certificates\n", f"  path: certificates\n  cacheDir: {cache}\n", 1)
    env.config.write_text(text)
    use_postgres(env, pg, schema=schema)
    return env


def add_cert(env, name):
    env.repo.write(f"{name}.yaml", manifest(name, [f"{name}.example.test"]))
    env.repo.commit(f"add {name}")


def snapshots(env, cache="cache"):
    return sorted((env.dir / cache).glob("state-pg-*.snap"))


def header(pg):
    lineage, serial = pg.psql("SELECT lineage || ' ' || serial FROM certsync.header").split()
    return lineage, int(serial)


def plan(env, code=0):
    """`plan -v`: (stdout, stderr); the plan must say the stored lineage and serial."""
    r = env.run("plan", "-v", "--detailed-exitcode", check=code)
    return r.out, r.err


def assert_plan_is_current(env, pg, code=0):
    out, err = plan(env, code)
    lineage, serial = header(pg)
    assert f"state {lineage[:8]} serial {serial}" in out, out
    return out, err


def test_plan_reads_the_snapshot_and_sees_every_write_by_another_process(env, pg):
    pg_env(env, pg)
    add_cert(env, "web")
    add_cert(env, "api")
    env.run("apply", check=0)
    [snap] = snapshots(env)  # apply keeps the snapshot of what it wrote last
    assert oct(snap.stat().st_mode & 0o777) == "0o600"
    out, err = assert_plan_is_current(env, pg)
    assert SNAPSHOT_USED in err and "No changes" in out, err
    snap.unlink()  # without it: the rows, and the plan writes one
    out, err = assert_plan_is_current(env, pg)
    assert SNAPSHOT_USED not in err and "No changes" in out, err
    out, err = assert_plan_is_current(env, pg)
    assert SNAPSHOT_USED in err and "No changes" in out, err

    # state rm in another process: the next plan creates the certificate again
    env.run("state", "rm", "web", check=0)
    out, err = assert_plan_is_current(env, pg, code=2)
    assert SNAPSHOT_USED not in err and "+ web" in out, out
    out, err = assert_plan_is_current(env, pg, code=2)
    assert SNAPSHOT_USED in err and "+ web" in out, out

    # apply in another process (its journal writes and its save): the next plan has nothing to do, from
    # the snapshot that apply kept of what it wrote
    env.run("apply", check=0)
    out, err = assert_plan_is_current(env, pg)
    assert SNAPSHOT_USED in err and "No changes" in out, out
    rec = json.loads(env.run("state", "show", "web", check=0).out)
    assert rec["phase"] == "ready"

    # a new certificate applied by another process, then a source-only commit
    add_cert(env, "mail")
    env.run("apply", check=0)
    out, _ = assert_plan_is_current(env, pg)
    assert "No changes" in out, out
    before = header(pg)
    env.repo.write("README", "not a certificate\n")
    env.repo.commit("docs only")
    env.run("apply", check=0)
    assert header(pg)[1] > before[1]  # the source alone was written
    out, err = assert_plan_is_current(env, pg)
    assert "No changes" in out and SNAPSHOT_USED in err, out  # kept by that apply after its source write
    assert [ln.split()[0] for ln in env.run("state", "list", check=0).out.splitlines()[1:]] == ["api", "mail", "web"]

    # nothing secret in the snapshot: no key material, no database password, no encryption key
    [snap] = snapshots(env)
    data = snap.read_bytes()
    assert b"PRIVATE KEY" not in data and b"BEGIN" not in data
    assert pg.password.encode() not in data and pg.key.encode() not in data
    for name in ("web", "api", "mail"):
        key = (env.cert_dir(name) / "tls.key").read_bytes()
        body = b"".join(key.splitlines()[1:-1])
        assert body[:40] not in data
    assert pg.password not in snap.name


def test_a_damaged_or_foreign_snapshot_is_ignored_and_rebuilt(env, pg):
    pg_env(env, pg)
    add_cert(env, "web")
    env.run("apply", check=0)
    plan(env)
    [snap] = snapshots(env)
    good = snap.read_bytes()
    for bad in (b"", b"CSSNAP\r\n", good[: len(good) // 2], good[:-1] + bytes([good[-1] ^ 1])):
        snap.write_bytes(bad)
        out, err = assert_plan_is_current(env, pg)
        assert SNAPSHOT_NOT_USED in err and SNAPSHOT_USED not in err and "No changes" in out, err
        out, err = assert_plan_is_current(env, pg)  # rebuilt by the plan before
        assert SNAPSHOT_USED in err, err

    # another schema on the same server and cache: its own snapshot; the first one's, put in its place, is not used
    other = env.dir / "other.yaml"
    other.write_text(env.config.read_text().replace("schema: certsync", "schema: other"))
    r = env.run("state", "list", check=0)  # reads certsync: the snapshot stays
    assert "web" in r.out
    env.config.write_text(other.read_text())
    r = env.run("plan", "-v", "--detailed-exitcode", check=2)  # an empty schema: everything to create
    assert "+ web" in r.out, r
    env.run("apply", check=0)
    r = env.run("plan", "-v", "--detailed-exitcode", check=0)
    [snap_other] = [s for s in snapshots(env) if s != snap]
    shutil.copy(snap, snap_other)
    r = env.run("plan", "-v", "--detailed-exitcode", check=0)
    assert SNAPSHOT_NOT_USED in r.err and SNAPSHOT_USED not in r.err, r.err
    lineage = pg.psql("SELECT lineage FROM other.header")
    assert f"state {lineage[:8]}" in r.out, r.out


def test_a_cache_directory_that_cannot_be_written_only_costs_time(env, pg):
    (env.dir / "blocker").write_text("a file where the cache directory would be\n")
    pg_env(env, pg, cache="blocker/cache")
    add_cert(env, "web")
    env.run("apply", check=0)
    for _ in range(2):
        out, err = assert_plan_is_current(env, pg)
        assert "No changes" in out and SNAPSHOT_USED not in err, err
    assert (env.dir / "blocker").is_file()


def test_run_keeps_the_snapshot_of_what_it_wrote_when_it_stops(env, pg, daemons):  # noqa: F811
    run_config(env, interval="1s")
    text = env.config.read_text().replace("  path: certificates\n", "  path: certificates\n  cacheDir: cache\n", 1)
    env.config.write_text(text)
    use_postgres(env, pg)
    add_cert(env, "web")
    d = daemons(env, args=("-v",))
    d.wait_log(r"^reconcile done: 1 done", timeout=60)
    d.wait_ready()
    for snap in snapshots(env):
        snap.unlink()  # whatever run's own loads left: the one that counts is written as it stops
    d.stop()
    assert snapshots(env)
    out, err = assert_plan_is_current(env, pg)  # the header row alone: run kept what it saved last
    assert SNAPSHOT_USED in err and "No changes" in out, err


def test_a_hand_edit_of_the_rows_is_seen_by_the_next_plan(env, pg):
    """SQL by hand on certs (DELETE, UPDATE, TRUNCATE) moves the header row (schema version 3's triggers): the
    next plan reads the rows, not the snapshot, and shows what the edit means."""
    pg_env(env, pg)
    add_cert(env, "web")
    add_cert(env, "api")
    env.run("apply", check=0)
    out, err = assert_plan_is_current(env, pg)
    assert SNAPSHOT_USED in err and "No changes" in out, err
    _, serial = header(pg)

    pg.psql("DELETE FROM certsync.certs WHERE name = 'web'")
    out, err = plan(env, code=None)
    assert "+ web" in out and "api" not in out and SNAPSHOT_USED not in err, out
    assert header(pg)[1] == serial + 1  # the edit took the serial one up (replicas follow it)
    out, err = assert_plan_is_current(env, pg, code=2)
    out, err = assert_plan_is_current(env, pg, code=2)  # the snapshot that plan wrote: the same answer
    assert SNAPSHOT_USED in err and "+ web" in out, out
    env.run("apply", check=0)
    out, _ = assert_plan_is_current(env, pg)
    assert "No changes" in out, out

    pg.psql("UPDATE certsync.certs SET doc = jsonb_set(doc::jsonb, '{spec_hash}', '\"edited\"')::text"
            " WHERE name = 'api'")
    out, err = assert_plan_is_current(env, pg, code=2)
    assert SNAPSHOT_USED not in err and "api" in out and "web" not in out, out
    env.run("apply", check=0)

    pg.psql("TRUNCATE certsync.certs")
    out, err = assert_plan_is_current(env, pg, code=2)
    assert SNAPSHOT_USED not in err and "+ web" in out and "+ api" in out, out


def wait_cert_log(d, pattern, cert, start=0, timeout=30):
    """The index of d's first log line from start on whose message matches pattern, about certificate cert."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with d.lock:
            lines = list(d.lines[start:])
        for i, line in enumerate(lines):
            if line.get("certificate") == cert and re.search(pattern, line.get("message", "")):
                return start + i
        assert d.proc.poll() is None, f"certsync run exited {d.proc.returncode}: {d.raw}"
        time.sleep(0.05)
    raise AssertionError(f"no log line about {cert} matching {pattern!r} in {d.messages()}")


def test_running_replicas_see_a_hand_edit(env, pg, daemons):  # noqa: F811
    """A hand DELETE of a certificate's row while two replicas run: the follower hears of it (NOTIFY) and
    its refresh drops the certificate (its outputs pruned); the leader hears of it too, reads the state again
    and issues the certificate anew at its next pass, with no failed write, and the follower installs it
    again."""
    run_config(env, interval="1s")
    base = env.config.read_text().replace("  path: certificates\n", "  path: certificates\n  cacheDir: cache\n", 1)
    env.config.write_text(base)
    use_postgres(env, pg, lease="3s")
    base = env.config.read_text()
    reps = []
    for i in range(2):
        port = free_port()
        cfg = env.dir / f"r{i}.yaml"
        cfg.write_text(base.replace("  root: certs\n", f"  root: certs-r{i}\n", 1)
                       .replace("  cacheDir: cache\n", f"  cacheDir: cache-r{i}\n", 1)
                       .replace(f"listen: 127.0.0.1:{env.port}", f"listen: 127.0.0.1:{port}", 1))
        reps.append(SimpleNamespace(config=cfg, dir=env.dir, port=port))
    add_cert(env, "web")
    add_cert(env, "api")
    leader = daemons(reps[0])
    leader.wait_log(r"^reconcile done: 2 done", timeout=60)
    follower = daemons(reps[1])
    for name in ("web", "api"):
        wait_cert_log(follower, r"installed certificate [0-9a-f]+ from the shared state", name)
    assert (env.dir / "certs-r1" / "web").is_dir()
    _, serial = header(pg)

    mark = len(leader.messages())
    pg.psql("DELETE FROM certsync.certs WHERE name = 'web'")
    at = wait_cert_log(follower, r"^removed from the shared state", "web")
    leader.wait_log(r"^read the state again after another process changed it \(serial %d\)" % (serial + 1),
                    start=mark)
    wait_cert_log(follower, r"installed certificate [0-9a-f]+ from the shared state", "web", start=at)
    assert not any("changed under this process" in m for m in leader.messages()[mark:]), leader.messages()[mark:]
    assert header(pg)[1] > serial + 1

    # and a new certificate in the repository goes as usual
    add_cert(env, "mail")
    for name in ("web", "mail"):
        wait_cert_log(follower, r"installed certificate [0-9a-f]+ from the shared state", name, start=at)
    assert (env.dir / "certs-r1" / "web").is_dir()
    listed = env.run("state", "list", check=0).out.splitlines()[1:]
    assert [ln.split()[0] for ln in listed] == ["api", "mail", "web"], listed
