"""The parse cache on disk (<state dir>/cache/manifests.cache): a cold plan parses only the blobs it has not
seen, and whatever happens to the cache or the repository (damage, another build's file, a force-push, a
rename) the plan is the one a cache-less run would make. A cold plan also notices an output edited in place."""
import json
import re

from conftest import manifest
from test_run import daemons, run_config  # noqa: F401 (daemons is a fixture)

CACHE = "state/cache/manifests.cache"


def counts(r):
    """(parsed, from the cache) from plan -v's debug line."""
    m = re.search(r"manifests: (\d+) files, (\d+) parsed, (\d+) from the parse cache", r.err)
    assert m, r
    return int(m.group(2)), int(m.group(3))


def plan_v(env):
    r = env.run("plan", "-v", "--format", "json")
    assert r.code in (0, 2), r
    return r, json.loads(r.out)


def changes(plan):
    return sorted((c["name"], c["action"]) for c in plan["changes"])


def fleet(env, n=6):
    for i in range(n):
        env.repo.write(f"team-{i % 2}/c{i}.yaml", manifest(f"c{i}", [f"c{i}.example.test"]))
    env.repo.commit()


def test_a_cold_plan_parses_only_the_files_a_commit_changed(env):
    fleet(env)
    r, first = plan_v(env)
    assert counts(r) == (6, 0)
    assert (env.dir / CACHE).stat().st_mode & 0o777 == 0o600
    r, again = plan_v(env)
    assert counts(r) == (0, 6) and again == first
    env.run("apply", check=0)
    before = (env.dir / CACHE).stat()
    env.repo.write("team-1/c3.yaml", manifest("c3", ["c3.example.test", "www.c3.example.test"]))
    env.repo.commit()
    r, plan = plan_v(env)
    assert counts(r) == (1, 5)
    assert changes(plan) == [("c3", "replace")], plan
    # the one parsed file was appended to the cache, not the whole cache written again
    after = (env.dir / CACHE).stat()
    assert after.st_ino == before.st_ino and before.st_size < after.st_size < before.st_size * 1.5, (before, after)
    # what the cache gave is what a parse gives: the same plan with the cache removed
    (env.dir / CACHE).unlink()
    r, fresh = plan_v(env)
    assert counts(r) == (6, 0) and fresh == plan


def damage_and_check(env, how, reason):
    path = env.dir / CACHE
    data = bytearray(path.read_bytes())
    path.write_bytes(how(data))
    r, plan = plan_v(env)
    assert counts(r) == (3, 0), (how, r)
    assert f"parse cache {path} ignored ({reason})" in r.err or f"ignored ({reason})" in r.err, r
    r, again = plan_v(env)  # rebuilt: the next run trusts it again
    assert counts(r) == (0, 3) and again == plan
    return plan


def flip(offset):
    def f(data):
        data[offset if offset >= 0 else len(data) + offset] ^= 0x20
        return bytes(data)
    return f


def test_a_damaged_or_foreign_cache_is_ignored_and_rebuilt(env):
    fleet(env, 3)
    env.run("apply", check=0)
    _, good = plan_v(env)
    assert good["changes"] == [] or all(c["action"] == "no-op" for c in good["changes"]), good
    assert damage_and_check(env, flip(-5), "checksum mismatch") == good
    assert damage_and_check(env, lambda d: bytes(d[: len(d) // 2]), "truncated") == good
    assert damage_and_check(env, flip(20), "written by another build") == good
    assert damage_and_check(env, flip(0), "not a parse cache of this version") == good
    assert damage_and_check(env, lambda d: b"junk", "shorter than its header") == good


def test_a_torn_append_keeps_the_rest_and_the_next_plan_writes_the_cache_whole(env):
    fleet(env, 12)
    env.run("apply", check=0)
    path = env.dir / CACHE
    whole = path.stat().st_size
    env.repo.write("team-0/c0.yaml", manifest("c0", ["c0.example.test", "www.c0.example.test"]))
    env.repo.commit()
    r, plan = plan_v(env)
    assert counts(r) == (1, 11) and path.stat().st_size > whole
    # a crash in the middle of the append: the segment is cut short
    path.write_bytes(path.read_bytes()[:-9])
    r, again = plan_v(env)
    assert counts(r) == (1, 11) and again == plan, r.err
    assert "is torn and ignored; the file is written whole next" in r.err, r.err
    assert path.stat().st_size > whole  # written whole, with the file it parsed again
    r, third = plan_v(env)
    assert counts(r) == (0, 12) and "is torn and ignored" not in r.err, r.err
    assert third == plan, (third, plan)


def test_a_cache_with_the_same_names_but_other_content_is_never_taken(env, tmp_path):
    """Another repository's cache (same paths, other blobs) copied over this one changes nothing."""
    fleet(env, 3)
    plan_v(env)
    other = tmp_path / "other"
    other.mkdir()
    from conftest import Env
    o = Env(other)
    for i in range(3):
        o.repo.write(f"team-{i % 2}/c{i}.yaml", manifest(f"c{i}", [f"other-{i}.example.test"]))
    o.repo.commit()
    o.run("plan", check=0)
    (env.dir / CACHE).write_bytes((other / CACHE).read_bytes())
    r, plan = plan_v(env)
    assert counts(r) == (3, 0), r
    names = {c["name"]: c for c in plan["changes"]}
    assert "other-0.example.test" not in json.dumps(plan), plan
    assert set(names) == {"c0", "c1", "c2"}


def test_a_force_push_is_planned_from_the_new_history(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    base = env.repo.commit("base")
    env.run("apply", check=0)
    env.repo.write("a.yaml", manifest("a", ["a.example.test", "b.example.test"]))
    env.repo.commit("adds b")
    r, plan = plan_v(env)
    assert changes(plan) == [("a", "replace")]
    # history rewritten: the branch now points at another child of base, which drops a and adds c
    env.repo.git("reset", "-q", "--hard", base)
    env.repo.remove("a.yaml")
    env.repo.write("c.yaml", manifest("c", ["c.example.test"]))
    env.repo.commit("rewritten")
    r, plan = plan_v(env)
    assert changes(plan) == [("a", "remove"), ("c", "create")], plan
    # and back to base itself: its blob is in no cache any more, and the plan is empty again
    env.repo.git("reset", "-q", "--hard", base)
    r, plan = plan_v(env)
    assert plan["changes"] == [] or all(c["action"] == "no-op" for c in plan["changes"]), plan


def test_a_renamed_file_is_named_by_its_new_path(env):
    env.repo.write("old/a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    plan_v(env)
    env.repo.git("mv", "certificates/old/a.yaml", "certificates/new-a.yaml")
    env.repo.write("dup.yaml", manifest("a", ["dup.example.test"]))  # a duplicate name names both files
    env.repo.commit()
    r = env.run("validate")
    assert r.code != 0, r
    assert "certificates/new-a.yaml" in r.err + r.out, r
    assert "old/a.yaml" not in r.err + r.out, r


def test_a_cold_plan_notices_an_output_edited_in_place(env):
    fleet(env, 3)
    env.run("apply", check=0)
    crt = env.cert_dir("c1") / "tls.crt"
    data = bytearray(crt.read_bytes())
    i = data.index(b"\n") + 5  # a base64 character of the body: same size, same inode
    data[i] = ord("A") if data[i] != ord("A") else ord("B")
    with open(crt, "r+b") as f:
        f.write(bytes(data))
    _, plan = plan_v(env)
    assert [(c["name"], c["action"], c["reason_code"]) for c in plan["changes"]] == [
        ("c1", "reinstall", "output_altered")], plan


def test_an_oversized_file_is_named_with_its_size_cold_and_from_the_cache(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("big.yaml", "# " + "x" * (1024 * 1024) + "\n")
    env.repo.commit()
    want = "certificates/big.yaml: file is 1048579 bytes; the limit is 1048576"
    for parsed in (2, 0):  # the first run reads both files, the second takes both from the cache
        r = env.run("validate", "-v")
        assert r.code != 0 and want in r.err + r.out, r
        assert re.search(rf"\b{parsed} parsed", r.err), r


def test_run_starts_from_the_parse_cache_and_adds_what_it_parsed(env, daemons):  # noqa: F811
    """A restarted `run` (a sidecar's pod, a service) parses only what the cache on disk does not hold."""
    run_config(env, interval="1s")
    fleet(env, 6)
    r, _ = plan_v(env)
    assert counts(r) == (6, 0)
    env.repo.write("team-1/c3.yaml", manifest("c3", ["c3.example.test", "www.c3.example.test"]))
    env.repo.commit()
    d = daemons(env, args=("-v",))
    d.wait_log(r"^manifests: 6 files, 1 parsed, 5 from the parse cache")
    d.wait_log(r"^source at main@sha1:\w+: 6 certificates, 0 problems")
    d.stop()
    r, _ = plan_v(env)
    assert counts(r) == (0, 6), r.err  # run added the file it parsed
    # without a cache, run parses everything (and writes one)
    (env.dir / CACHE).unlink()
    d = daemons(env, args=("-v",))
    d.wait_log(r"^manifests: 6 files, 6 parsed, 0 from the parse cache")
    d.stop()
    assert (env.dir / CACHE).exists()
