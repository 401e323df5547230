"""certsync run follows a commit from the set it already holds: git's tree diff names the manifests to read
again and only their certificates are checked against the rest (reconcile_desired_next). Whatever a commit does
(edit, add, remove, rename, a duplicate name, nested output directories, an unknown issuer, a whole directory
removed, a symlink or a non-manifest file), the set and the problems run reports are the ones `certsync validate`
finds reading the whole tree at that commit."""
import re

from conftest import manifest
from test_run import daemons, run_config  # noqa: F401 (daemons is a fixture)

INCREMENTAL = r"^manifests: \d+ files, \d+ changed since \w+, \d+ parsed"


def validate(env, commit):
    """(certificates, problems, problem lines) from a cold `certsync validate` at commit."""
    r = env.run("validate", "--ref", commit)
    lines = [l for l in r.out.splitlines() if l.strip()]
    m = re.search(r"(\d+) certificates? in \d+ files? at \w+: valid", r.out)
    if m:
        return int(m.group(1)), 0, []
    m = re.search(r"error: (\d+) problems? in the manifests at \w+ \((\d+) valid certificates?", r.err)
    assert m, r
    return int(m.group(2)), int(m.group(1)), sorted(lines)


def follow(env, d, msg):
    """Commits, waits for run to load it; returns (certificates, problems, problem lines, incremental?)."""
    head = env.repo.commit(msg)
    start = len(d.messages())
    i = d.wait_log(rf"^source at main@sha1:{head}: \d+ certificates, \d+ problems", start=start)
    lines = d.messages()[start:i + 1]
    m = re.search(r": (\d+) certificates, (\d+) problems", lines[-1])
    loaded = [k for k, l in enumerate(lines) if re.search(rf"^manifests at {head[:12]} loaded", l)]
    assert loaded, lines
    errors = sorted(l for l in lines[loaded[0] + 1:-1] if re.match(r"^[\w./-]+:\d+:\d+: ", l))
    incremental = any(re.search(INCREMENTAL, l) for l in lines)
    got = (int(m.group(1)), int(m.group(2)), errors)
    assert got == validate(env, head), (msg, got, lines)
    return got, incremental


def test_run_follows_each_commit_from_the_last_set_and_agrees_with_a_whole_read(env, daemons):  # noqa: F811
    run_config(env, interval="1s")
    for i in range(6):
        env.repo.write(f"team-{i % 2}/c{i}.yaml", manifest(f"c{i}", [f"c{i}.example.test"]))
    env.repo.commit()
    d = daemons(env, args=("-v",))
    d.wait_ready()

    env.repo.write("team-1/c3.yaml", manifest("c3", ["c3.example.test", "www.c3.example.test"]))
    (n, problems, _), inc = follow(env, d, "edit one")
    assert (n, problems, inc) == (6, 0, True)

    env.repo.write("team-0/extra.yaml", manifest("c7", ["c7.example.test"]))
    (n, problems, _), inc = follow(env, d, "add one")
    assert (n, problems, inc) == (7, 0, True)

    env.repo.git("mv", "certificates/team-0/extra.yaml", "certificates/team-1/moved.yml")
    (n, problems, _), inc = follow(env, d, "rename")
    assert (n, problems, inc) == (7, 0, True)

    # a duplicate name: both ends reported, neither kept; the set with problems is then read whole
    env.repo.write("team-0/dup.yaml", manifest("c1", ["dup.example.test"]))
    (n, problems, lines), _ = follow(env, d, "duplicate")
    assert (n, problems) == (6, 2) and all("duplicate certificate name" in l for l in lines)
    env.repo.remove("team-0/dup.yaml")
    (n, problems, _), inc = follow(env, d, "fix the duplicate")
    assert (n, problems, inc) == (7, 0, False)

    # the same name again, but the old one leaves in the same commit (a move between files): clean
    env.repo.remove("team-1/c5.yaml")
    env.repo.write("team-0/c5-new.yaml", manifest("c5", ["c5.example.test", "new.c5.example.test"]))
    (n, problems, _), inc = follow(env, d, "move c5")
    assert (n, problems, inc) == (7, 0, True)

    # an output directory inside another certificate's, both ways
    env.repo.write("team-0/inner.yaml", manifest("inner", ["inner.example.test"], extra="output: {directory: c0/inner}"))
    (n, problems, _), _ = follow(env, d, "nested")
    assert problems == 2 and n == 6
    env.repo.remove("team-0/inner.yaml")
    follow(env, d, "unnest")
    env.repo.write("team-0/c4.yaml", manifest("c4", ["c4.example.test"], extra="output: {directory: shared/c4}"))
    (n, problems, _), inc = follow(env, d, "c4 moves to shared/c4")
    assert (n, problems, inc) == (7, 0, True)
    env.repo.write("team-0/outer.yaml", manifest("outer", ["outer.example.test"], extra="output: {directory: shared}"))
    (n, problems, _), inc = follow(env, d, "outer around an existing one")
    assert (n, problems, inc) == (6, 2, False)
    env.repo.remove("team-0/outer.yaml")
    (n, problems, _), _ = follow(env, d, "no outer")
    assert (n, problems) == (7, 0)
    env.repo.write("team-0/outer.yaml", manifest("outer", ["outer.example.test"], extra="output: {directory: shared/c4/x}"))
    (n, problems, _), inc = follow(env, d, "inside an existing one")
    assert (n, problems, inc) == (6, 2, False)

    # an unknown issuer, then fixed
    env.repo.remove("team-0/outer.yaml")
    follow(env, d, "clean again")
    env.repo.write("team-0/c0.yaml", manifest("c0", ["c0.example.test"], issuer="nosuch"))
    (n, problems, lines), _ = follow(env, d, "unknown issuer")
    assert problems == 1 and "unknown issuer" in lines[0]
    env.repo.write("team-0/c0.yaml", manifest("c0", ["c0.example.test"]))
    follow(env, d, "known issuer")

    # a manifest file with no document in it, then removed
    env.repo.write("team-0/empty.yaml", "# nothing here yet\n")
    (n, problems, _), inc = follow(env, d, "empty file")
    assert (n, problems, inc) == (7, 0, True)
    env.repo.remove("team-0/empty.yaml")
    (n, problems, _), inc = follow(env, d, "no empty file")
    assert (n, problems, inc) == (7, 0, True)

    # files that are not manifests, a symlink, a mode change: nothing changes
    (env.repo.path / "certificates" / "README.md").write_text("not a manifest\n")
    (env.repo.path / "certificates" / "link.yaml").symlink_to("team-0/c0.yaml")
    (n, problems, _), inc = follow(env, d, "not manifests")
    assert (n, problems) == (7, 0)
    (env.repo.path / "certificates" / "team-0" / "c0.yaml").chmod(0o755)
    (n, problems, _), inc = follow(env, d, "mode")
    assert (n, problems, inc) == (7, 0, True)

    # a whole directory goes
    for p in sorted((env.repo.path / "certificates" / "team-1").iterdir()):
        p.unlink()
    (n, problems, _), inc = follow(env, d, "remove team-1")
    assert (n, problems, inc) == (4, 0, True)
    d.wait_log(r"^reconcile done", start=0)
