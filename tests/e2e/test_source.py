"""The git source: refs, remote clones in the cache, and overrides from the command line."""
import subprocess

from conftest import check_outputs, manifest


def test_ref_can_be_a_tag_or_a_commit(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    first = env.repo.commit()
    env.repo.git("tag", "v1")
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    plan = env.plan_json("--ref", "v1")
    assert [c["name"] for c in plan["changes"]] == ["a"]
    assert plan["source"]["commit"] == first
    plan = env.plan_json("--ref", first[:10])
    assert [c["name"] for c in plan["changes"]] == ["a"]
    r = env.run("plan", "--ref", "no-such-branch", check=1)
    assert "no-such-branch" in r.err


def test_remote_repository_is_cloned_into_the_cache_and_fetched(env, tmp_path):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(env.repo.path), str(bare)], check=True)
    url = f"file://{bare}"
    env.run("apply", "--repo", url, check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    assert any((env.dir / "state" / "cache").iterdir())
    assert env.state_json()["source"]["url"] == url
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.repo.git("push", "-q", str(bare), "main")
    plan = env.plan_json("--repo", url)
    assert [c["name"] for c in plan["changes"]] == ["b"]


def test_path_override_and_nested_directories(env):
    env.repo.write("team/x/deep/a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("team/notes.txt", "not a manifest\n")
    env.repo.commit()
    plan = env.plan_json()
    assert [c["name"] for c in plan["changes"]] == ["a"]
    plan = env.plan_json("--path", "certificates/team/x")
    assert [c["name"] for c in plan["changes"]] == ["a"]
    r = env.run("plan", "--path", "nowhere", check=1)
    assert "nowhere" in r.err
