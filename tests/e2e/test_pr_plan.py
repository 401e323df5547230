"""Pull-request plans (DESIGN §6): `certsync plan --base REF --head REF` on real
git repositories and branches, with no credentials and no state; golden output
for every format, exit codes, renames, merge bases, the paid-order cap and the
GitHub Actions form."""
import json
import os
import re
from pathlib import Path

import pytest

from conftest import manifest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "pr"
FORMATS = {"text": "txt", "markdown": "md", "json": "json", "github": "github"}

# A paid issuer whose credentials are never set in these tests: a PR plan must not need them.
PAID_ISSUER = """
le:
  type: dnsimple
  account: {env: CERTSYNC_TEST_UNSET_ACCOUNT}
  token: {file: /nonexistent/dnsimple-token}
  zones: [example.com]
"""


def www(name="shop-www", names=("www.example.com",), issuer="internal", extra=""):
    return manifest(name, list(names), issuer=issuer, extra=extra)


@pytest.fixture
def pr(env):
    """main with three certificates, then a `feature` branch off it."""
    env.write_config(extra_issuers=PAID_ISSUER)
    env.repo.write("shop/www.yaml", www())
    env.repo.write("shop/api.yaml", www("shop-api", ["api.example.com"]))
    env.repo.write("legacy.yaml", www("legacy", ["old.example.com"]))
    env.base = env.repo.commit("base")
    env.repo.git("checkout", "-q", "-b", "feature")
    return env


def pr_plan(env, *args, fmt="text", base="main", head="feature", env_vars=None):
    return env.run("plan", "--base", base, "--head", head, "--format", fmt, "--detailed-exitcode", *args,
                   env=env_vars)


def normalise(env, text):
    """Commit ids and temp paths vary per run: placeholders keep the goldens stable."""
    for rev in env.repo.git("rev-list", "--all").split():
        text = text.replace(rev, "<" + env.repo.git("name-rev", "--name-only", rev) + ">")
        text = text.replace(rev[:12], "<" + env.repo.git("name-rev", "--name-only", rev) + ">")
    repo = str(env.repo.path)
    return text.replace(repo, "<repo>").replace(repo.replace("_", "&#95;"), "<repo>")


def golden(name, text):
    path = GOLDEN / name
    if os.environ.get("CERTSYNC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path} (run with CERTSYNC_UPDATE_GOLDEN=1)"
    expected = path.read_text()
    if text != expected:
        Path(str(path) + ".got").write_text(text)
    assert text == expected, f"{path} differs; see {path}.got"


def every_kind(env):
    """One commit on feature with every kind of change a reviewer meets."""
    env.repo.write("shop/www.yaml", www(names=["www.example.com", "api2.example.com"], extra="renewBefore: 20d"))
    env.repo.write("shop/api.yaml", www("shop-api", ["api.example.com"], extra="output:\n  directory: api-moved"))
    env.repo.remove("legacy.yaml")
    env.repo.write("multi.yaml", www("paid-one", ["one.example.com"], issuer="le") + "---\n"
                   + www("paid-two", ["two.example.com"], issuer="le") + "---\n" + www("free", ["free.example.com"]))
    env.repo.commit("every kind")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_kind_of_change_golden(pr, fmt):
    every_kind(pr)
    r = pr_plan(pr, fmt=fmt)
    assert r.code == 2, r
    assert r.err == "", r
    golden(f"every-kind.{FORMATS[fmt]}", normalise(pr, r.out))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_invalid_manifest_golden(pr, fmt):
    pr.repo.write("bad.yaml", www("bad", ["bad_name.example.com"]) + "---\n"
                  + www("typo", ["t.example.com"], issuer="interal"))
    pr.repo.write("new.yaml", www("new", ["new.example.com"]))
    pr.repo.commit("a bad manifest")
    r = pr_plan(pr, fmt=fmt)
    assert r.code == 1, r
    golden(f"invalid.{FORMATS[fmt]}", normalise(pr, r.out))


def test_no_changes_exit_0(pr):
    pr.repo.commit("empty")
    r = pr_plan(pr)
    assert r.code == 0, r
    assert "No changes" in r.out
    # Reordering names and a cosmetic edit are not changes either.
    pr.repo.write("shop/www.yaml", www(names=["WWW.example.com."]))
    pr.repo.commit("cosmetic")
    assert pr_plan(pr).code == 0


def test_exit_code_without_detailed_is_0_on_changes(pr):
    pr.repo.write("new.yaml", www("new", ["new.example.com"]))
    pr.repo.commit()
    r = pr.run("plan", "--base", "main", "--head", "feature")
    assert r.code == 0, r
    assert "+ new" in r.out


def test_each_field_kind_is_a_field_difference(pr):
    pr.repo.write("shop/www.yaml", www(names=["shop.example.com"], extra="""
        commonName: shop.example.com
        privateKey: {algorithm: RSA, size: 3072, rotationPolicy: Never}
        duration: 2160h
        renewBefore: 10d
        output: {directory: www2}
    """))
    pr.repo.write("shop/api.yaml", www("shop-api", ["api.example.com"], issuer="le"))
    pr.repo.commit()
    plan = json.loads(pr_plan(pr, fmt="json").out)
    by = {c["name"]: c for c in plan["changes"]}
    diffs = {d["field"]: d["text"] for d in by["shop-www"]["diffs"]}
    assert by["shop-www"]["action"] == "replace"
    assert diffs["dnsNames"] in ("- www.example.com", "+ shop.example.com")
    texts = [d["text"] for d in by["shop-www"]["diffs"] if d["field"] == "dnsNames"]
    assert sorted(texts) == ["+ shop.example.com", "- www.example.com"]
    assert diffs["commonName"] == "www.example.com → shop.example.com"
    assert diffs["privateKey"] == "ECDSA 256 → RSA 3072"
    assert diffs["privateKey.rotationPolicy"] == "Always → Never"
    assert diffs["duration"] == "(default) → 90d"
    assert diffs["renewBefore"] == "(default) → 10d"
    assert diffs["output.directory"] == "shop-www → www2"
    # A new issuer is a replacement by another provider, and it is paid.
    api = by["shop-api"]
    assert api["action"] == "replace" and api["reason_code"] == "issuer_changed"
    assert {d["field"]: d["text"] for d in api["diffs"]}["issuer"] == "internal → le"
    assert api["paid"] and api["provider"] == "dnsimple"


def test_setting_only_edits_are_notes_not_changes(pr):
    pr.repo.write("shop/www.yaml", www(extra="renewBefore: 10d\nprivateKey: {rotationPolicy: Never}"))
    pr.repo.commit()
    r = pr_plan(pr, fmt="json")
    assert r.code == 0, r
    plan = json.loads(r.out)
    assert plan["changes"] == []
    notes = "\n".join(plan["warnings"])
    assert "shop-www: renewBefore: (default) → 10d" in notes
    assert "rotationPolicy: Always → Never" in notes


def test_rename_is_remove_plus_create_said_plainly(pr):
    pr.repo.remove("shop/api.yaml")
    pr.repo.write("shop/api.yaml", www("shop-api-v2", ["api.example.com"]))
    pr.repo.commit("rename")
    plan = json.loads(pr_plan(pr, fmt="json").out)
    by = {c["name"]: c for c in plan["changes"]}
    assert set(by) == {"shop-api", "shop-api-v2"}
    assert by["shop-api-v2"]["action"] == "create" and by["shop-api-v2"]["reason_code"] == "renamed"
    assert "renamed from shop-api" in by["shop-api-v2"]["reason"]
    assert by["shop-api"]["action"] == "remove" and "renamed to shop-api-v2" in by["shop-api"]["reason"]
    # A rename that also edits the spec is not the same certificate: plain remove + create.
    pr.repo.write("shop/api.yaml", www("shop-api-v2", ["api.example.com", "api3.example.com"]))
    pr.repo.commit("rename and edit")
    by = {c["name"]: c for c in json.loads(pr_plan(pr, fmt="json").out)["changes"]}
    assert by["shop-api-v2"]["reason_code"] == "new" and by["shop-api"]["reason_code"] == "not_in_manifests"


def test_prune_off_removals_are_orphans(pr):
    pr.write_config(prune=False, extra_issuers=PAID_ISSUER)
    pr.repo.remove("legacy.yaml")
    pr.repo.commit()
    r = pr_plan(pr)
    assert "? legacy" in r.out and "policy.prune is off" in r.out, r


def test_branch_behind_main_uses_the_merge_base(pr):
    """main moved on after the branch was cut: its changes are not the PR's."""
    pr.repo.write("feature-only.yaml", www("feature-only", ["f.example.com"]))
    pr.repo.commit("feature")
    pr.repo.git("checkout", "-q", "main")
    pr.repo.write("main-only.yaml", www("main-only", ["m.example.com"]))
    pr.repo.remove("legacy.yaml")
    pr.repo.commit("main moved on")
    plan = json.loads(pr_plan(pr, fmt="json").out)
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("feature-only", "create")]
    assert plan["source"]["base_commit"] == pr.base  # the merge base, not main's tip
    assert plan["source"]["commit"] == pr.repo.git("rev-parse", "feature")


def test_refs_resolve_tags_commits_and_remote_branches(pr):
    pr.repo.write("new.yaml", www("new", ["new.example.com"]))
    head = pr.repo.commit()
    pr.repo.git("tag", "v1")
    for base, h in ((pr.base, head), ("main", "v1"), ("main~0", "HEAD")):
        plan = json.loads(pr_plan(pr, fmt="json", base=base, head=h).out)
        assert [c["name"] for c in plan["changes"]] == ["new"], (base, h)
    r = pr_plan(pr, base="no-such-branch")
    assert r.code == 1 and "no-such-branch" in r.err, r


def test_needs_no_credentials_and_no_state(pr):
    """Credentials unset and the state file corrupt: a PR plan reads neither."""
    pr.state.parent.mkdir(parents=True, exist_ok=True)
    pr.state.write_text("{ this is not json")
    pr.repo.write("paid.yaml", www("paid", ["www.example.com"], issuer="le"))
    pr.repo.commit()
    env_vars = {"CERTSYNC_TEST_UNSET_ACCOUNT": ""}
    r = pr_plan(pr, env_vars=env_vars)
    assert r.code == 2, r
    assert "no state" in r.out
    assert "[paid: letsencrypt: purchase, or adopt a matching certificate if one exists]" in r.out
    # Naming the state reads it (and this one is broken).
    r = pr_plan(pr, "--state", str(pr.state))
    assert r.code == 1 and "state" in r.err, r


def test_with_state_shows_renewals_due(pr):
    """--state adds the renewals the state shows as due, beside the manifest changes."""
    pr.repo.git("checkout", "-q", "main")
    pr.write_config(extra_issuers=PAID_ISSUER + "short:\n  type: ca\n  generate: {dir: ca2}\n  duration: 2h\n")
    pr.repo.write("short.yaml", www("short", ["s.example.com"], issuer="short", extra="renewBefore: 30m"))
    pr.repo.commit("short-lived")
    assert pr.run("apply").code == 0
    pr.repo.git("checkout", "-q", "-b", "feature2")
    pr.repo.write("short.yaml", www("short", ["s.example.com"], issuer="short", extra="renewBefore: 3h"))
    pr.repo.write("new.yaml", www("new", ["new.example.com"]))
    pr.repo.commit()
    without = json.loads(pr_plan(pr, fmt="json", head="feature2").out)
    assert without["state"] is None
    assert [c["name"] for c in without["changes"]] == ["new"]
    assert any("short: renewBefore: 30m → 3h" in w for w in without["warnings"]), without["warnings"]
    plan = json.loads(pr_plan(pr, "--state", str(pr.state), fmt="json", head="feature2").out)
    assert plan["state"] is not None
    by = {c["name"]: (c["action"], c["reason_code"]) for c in plan["changes"]}
    assert by == {"new": ("create", "new"), "short": ("renew", "renewal_due")}, plan
    assert plan["summary"]["unchanged"] == 3, plan["summary"]


def test_paid_orders_over_the_cap_are_an_error(pr):
    pr.write_config(extra_issuers=PAID_ISSUER, extra="")
    text = pr.config.read_text().replace("policy:\n", "policy:\n  maxPaidOrders: 1\n")
    pr.config.write_text(text)
    pr.repo.write("paid.yaml", www("paid-a", ["a.example.com"], issuer="le") + "---\n"
                  + www("paid-b", ["b.example.com"], issuer="le"))
    pr.repo.commit()
    r = pr_plan(pr, fmt="markdown")
    assert r.code == 1, r
    assert "2 paid orders, over policy.maxPaidOrders (1)" in r.out
    assert "paid orders deferred" in r.out


def test_github_format_annotations_and_step_summary(pr, tmp_path):
    pr.repo.write("bad.yaml", www("bad", ["bad_name.example.com"]))
    pr.repo.write("paid.yaml", www("paid", ["www.example.com"], issuer="le"))
    pr.repo.commit()
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n")
    r = pr_plan(pr, fmt="github", env_vars={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.code == 1, r
    lines = r.out.splitlines()
    err = [ln for ln in lines if ln.startswith("::error ")]
    assert err == ["::error file=certificates/bad.yaml,line=7,col=14,title=certsync::spec.dnsNames[0]: "
                   "\"bad_name.example.com\" is not a valid DNS name: only letters, digits and '-' are allowed "
                   "in a label"], r.out
    assert any(ln.startswith("::notice file=certificates/paid.yaml,line=4,") for ln in lines)
    body = summary.read_text()
    assert body.startswith("previous step\n<!-- certsync-plan -->\n")
    assert "**certsync plan: errors**" in body


def test_github_escapes_workflow_command_syntax(pr):
    """A manifest cannot forge a workflow command or end one early."""
    pr.repo.write("we,ird:name.yaml", "apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n"
                  "  name: \"x\\n::set-output name=a::b %0A\"\nspec: {issuer: internal, dnsNames: [a.example.com]}\n")
    pr.repo.commit()
    r = pr_plan(pr, fmt="github")
    assert r.code == 1, r
    err = [ln for ln in r.out.splitlines() if ln.startswith("::error ")]
    assert len(err) == 1, r.out
    assert err[0].startswith("::error file=certificates/we%2Cird%3Aname.yaml,line=4,"), err
    assert not any(ln.startswith("::set-output") for ln in r.out.splitlines())


def test_markdown_is_stable_and_marked_for_in_place_updates(pr):
    every_kind(pr)
    a = pr_plan(pr, fmt="markdown").out
    b = pr_plan(pr, fmt="markdown").out
    assert a == b
    assert a.startswith("<!-- certsync-plan -->\n**certsync plan**: ")
    assert "<details>" in a and "paid" in a


def test_large_change_1000_manifests(pr):
    for i in range(1000):
        pr.repo.write(f"bulk/c{i:04d}.yaml", www(f"bulk-{i:04d}", [f"h{i}.example.com"],
                                                  issuer="le" if i % 100 == 0 else "internal"))
    pr.repo.commit("bulk")
    r = pr_plan(pr, fmt="json")
    assert r.code == 2, r
    plan = json.loads(r.out)
    assert len(plan["changes"]) == 1000
    assert {c["action"] for c in plan["changes"]} == {"create"}
    assert sum(c["paid"] for c in plan["changes"]) == 10
    md = pr_plan(pr, fmt="markdown").out
    assert len(md) < 65536  # a GitHub comment
    assert re.search(r"\| <code>\+</code> create \| 1000 \|", md), md[:2000]


def test_usage_errors(pr):
    r = pr.run("plan", "--head", "feature")
    assert r.code == 64 and "--head needs --base" in r.err, r
    r = pr.run("plan", "--base", "main", "--refresh")
    assert r.code == 64, r
    r = pr.run("plan", "--base", "main", "--format", "yaml")
    assert r.code == 64 and "github" in r.err, r


SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "ci" / "certsync-pr-plan.sh"


def run_script(env, tmp_path, github=True):
    import subprocess
    from conftest import BIN
    md = tmp_path / "comment.md"
    summary = tmp_path / "summary.md"
    e = dict(os.environ, CERTSYNC=BIN, CERTSYNC_CONFIG=str(env.config), CERTSYNC_REPO=str(env.repo.path),
             PLAN_MARKDOWN=str(md), GITHUB_STEP_SUMMARY=str(summary), GITHUB_ACTIONS="true" if github else "")
    p = subprocess.run(["sh", str(SCRIPT), "main", "feature"], cwd=env.dir, env=e, capture_output=True, text=True,
                       timeout=60)
    return p, md, summary


def test_ci_script_as_the_workflows_run_it(pr, tmp_path):
    """examples/ci/certsync-pr-plan.sh: comment body, annotations, job summary, verdict."""
    p, md, summary = run_script(pr, tmp_path)
    assert p.returncode == 0, p.stderr
    assert md.read_text().startswith("<!-- certsync-plan -->\n**certsync plan**: No changes")
    pr.repo.write("new.yaml", www("new", ["new.example.com"]))
    pr.repo.commit()
    p, md, summary = run_script(pr, tmp_path)
    assert p.returncode == 2, p.stderr
    assert "1 to create" in md.read_text() and "+ new" in p.stdout
    assert summary.read_text().count("<!-- certsync-plan -->") == 2  # one job summary per run
    pr.repo.write("bad.yaml", www("bad", ["bad_name.example.com"]))
    pr.repo.commit()
    p, md, _ = run_script(pr, tmp_path)
    assert p.returncode == 1, p.stderr
    assert "::error file=certificates/bad.yaml,line=7,col=14," in p.stdout
    assert "**certsync plan: errors**" in md.read_text()
    p, _, _ = run_script(pr, tmp_path, github=False)
    assert p.returncode == 1 and "::error" not in p.stdout and "error: certificates/bad.yaml:7:14" in p.stdout


def test_repo_option_reads_another_checkout_or_a_url(pr, tmp_path):
    """--repo PATH|URL overrides source.repo: a CI checkout, or a clone of a URL."""
    pr.repo.write("new.yaml", www("new", ["new.example.com"]))
    pr.repo.commit()
    import shutil
    other = tmp_path / "ci-checkout"
    shutil.copytree(pr.repo.path, other)
    pr.repo.write("later.yaml", www("later", ["later.example.com"]))  # not in the copy
    pr.repo.commit()
    for repo in (str(other), f"file://{other}"):
        r = pr.run("plan", "--repo", repo, "--base", "main", "--head", "feature", "--format", "json")
        assert r.code == 0, r
        assert [c["name"] for c in json.loads(r.out)["changes"]] == ["new"], repo
