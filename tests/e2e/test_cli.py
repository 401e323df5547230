"""The command line as Terraform users expect it: one error line with "did you mean", help, global options
before the command, colour rules, stream order in pipes, version, and progress on long applies."""
import os
import re
import subprocess

from conftest import BIN, manifest
from dnsimple_env import TOKEN, sim, with_dnsimple  # noqa: F401 (sim is a fixture)


def cli(env, *args, extra_env=None, merge=False):
    """The binary with args as given (no --config appended), from env's directory."""
    e = dict(os.environ)
    e.pop("NO_COLOR", None)
    e.update(extra_env or {})
    return subprocess.run([BIN, *args], cwd=env.dir, capture_output=not merge, text=True, timeout=120, env=e,
                          stdout=subprocess.PIPE if merge else None, stderr=subprocess.STDOUT if merge else None)


def test_mistyped_option_is_one_line_with_a_suggestion(env):
    r = env.run("plan", "--formt", "json", check=64)
    assert r.err.strip() == "error: unknown option --formt for certsync plan; did you mean --format?", r
    assert r.out == ""
    r = env.run("apply", "--paralelism", "2", check=64)
    assert r.err.strip().splitlines() == ["error: unknown option --paralelism for certsync apply; "
                                          "did you mean --parallelism?"], r
    r = env.run("plan", "--zzzzzzzz", check=64)
    assert len(r.err.strip().splitlines()) == 1 and "certsync help plan" in r.err, r
    r = env.run("plan", "--re", check=64)
    assert "ambiguous" in r.err and "--refresh" in r.err and "--ref" in r.err, r
    r = env.run("plan", "--refresh=yes", check=64)
    assert r.err.strip() == "error: option --refresh of certsync plan takes no value", r
    r = cli(env, "plan", "--format")
    assert r.returncode == 64 and r.stderr.strip() == "error: option --format of certsync plan needs a value", r


def test_mistyped_command_gets_a_suggestion(env):
    r = cli(env, "plna")
    assert r.returncode == 64 and r.stderr.strip() == 'error: unknown command "plna"; did you mean plan?', r
    r = cli(env, "stat", "list")
    assert r.returncode == 64 and "did you mean state?" in r.stderr, r
    r = cli(env, "--log-formt=json", "plan")
    assert r.returncode == 64 and "did you mean --log-format?" in r.stderr and len(r.stderr.splitlines()) == 1, r


def test_help_command_and_no_color_in_every_help(env):
    r = cli(env, "help")
    assert r.returncode == 0 and "plan" in r.stdout and "help" in r.stdout, r
    for name in ("validate", "plan", "apply", "show", "run", "state", "version"):
        r = cli(env, "help", name)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: certsync {name}"), r
        assert "--no-color" in r.stdout, (name, r.stdout)
        assert cli(env, name, "--help").stdout == r.stdout
    r = cli(env, "help", "aply")
    assert r.returncode == 64 and "did you mean apply?" in r.stderr, r


def test_global_options_before_the_command(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    r = cli(env, "--log-format=json", "--config", str(env.config), "-v", "plan", "--no-color")
    assert r.returncode == 0 and "+ a" in r.stdout, r
    # json logs: every stderr line is an object
    assert r.stderr and all(line.startswith("{") for line in r.stderr.splitlines()), r.stderr
    r = cli(env, "--state", str(env.dir / "other.json"), "--config", str(env.config), "plan", "--format", "json")
    assert r.returncode == 0 and '"lineage"' not in r.stdout.split('"changes"')[0].split('"state"')[0], r


def colour_plan(env, extra_env, *args):
    """The text plan written to a pseudo-terminal: does it carry ANSI colour?"""
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        e = dict(os.environ)
        e.pop("NO_COLOR", None)
        e.update(extra_env)
        os.chdir(env.dir)
        os.execve(BIN, [BIN, "plan", "--config", str(env.config), *args], e)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    return "\x1b[" in out.decode(errors="replace")


def test_term_dumb_no_color_and_no_color_flag(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    assert colour_plan(env, {"TERM": "xterm"})
    assert not colour_plan(env, {"TERM": "dumb"})
    assert not colour_plan(env, {"TERM": "xterm", "NO_COLOR": "1"})
    assert not colour_plan(env, {"TERM": "xterm"}, "--no-color")


def test_findings_come_before_the_summary_in_one_pipe(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="renewBefore: 30 days"))
    env.repo.write("b.yaml", manifest("b", ["b..example.test"]))
    env.repo.commit()
    r = cli(env, "validate", "--config", str(env.config), merge=True)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 3, r.stdout
    assert lines[0].startswith("certificates/a.yaml:") and lines[1].startswith("certificates/b.yaml:"), lines
    assert lines[2].startswith("error: 2 problems in the manifests"), lines
    # apply: the plan, then errors, in the order written
    r = cli(env, "apply", "--config", str(env.config), merge=True)
    out = r.stdout
    assert r.returncode == 1 and out.index("Plan:") < out.index("error: 2 problems"), out


def test_state_list_with_a_mistyped_state_file_says_so(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    r = env.run("state", "list", check=0)
    assert re.search(r"^a\s+ready", r.out, re.M), r
    r = env.run("state", "list", "--state", "typo.json", check=1)
    assert "typo.json" in r.err and "does not exist" in r.err and r.out == "", r
    r = env.run("state", "show", "a", "--state", "typo.json", check=1)
    assert "does not exist" in r.err, r


def test_local_source_does_not_need_the_token(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    text = env.config.read_text().replace("  ref: main\n", "  ref: main\n  token: {env: CERTSYNC_E2E_UNSET_TOKEN}\n")
    env.config.write_text(text)
    os.environ.pop("CERTSYNC_E2E_UNSET_TOKEN", None)
    r = env.run("plan", check=0)
    assert "+ a" in r.out and "CERTSYNC_E2E_UNSET_TOKEN" not in r.err, r
    env.run("apply", check=0)


def test_version_names_the_commit_and_the_libraries(env):
    r = cli(env, "version")
    assert r.returncode == 0, r
    first = r.stdout.splitlines()[0]
    m = re.match(r"certsync \S+ \(commit (\S+)\)$", first)
    assert m and m.group(1) != "", first
    head = subprocess.run(["git", "-C", os.path.dirname(BIN), "rev-parse", "--short=7", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    if head:
        assert m.group(1).startswith(head[:7]) or head[:7] in m.group(1), (first, head)
    for lib in ("libcurl", "OpenSSL", "libgit2", "libyaml", "jansson", "libmicrohttpd", "libpq", "ldns"):
        assert re.search(rf"^  {lib} \d", r.stdout, re.M), (lib, r.stdout)
    assert cli(env, "--version").stdout == r.stdout


def test_replace_is_shown_as_terraforms_destroy_create(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("a.yaml", manifest("a", ["a.example.test", "b.example.test"]))
    env.repo.commit()
    r = env.run("plan", check=0)
    assert re.search(r"^-/\+ a\s+replace", r.out, re.M), r
    assert not re.search(r"^~ ", r.out, re.M), r


def test_large_apply_prints_progress_every_hundred(env):
    for i in range(205):
        env.repo.write(f"c{i:03}.yaml", manifest(f"c{i:03}", [f"c{i}.example.test"],
                                                 extra="privateKey: {algorithm: ECDSA, size: 256}"))
    env.repo.commit()
    r = env.run("apply", "--parallelism", "4", check=0, timeout=600)
    lines = [ln for ln in r.err.splitlines() if "progress: " in ln]
    assert len(lines) >= 2, r.err[-2000:]
    assert "100 of 205 certificates finished" in lines[0] and "ETA" in lines[0], lines
    assert any("200 of 205" in ln for ln in lines), lines


def test_apply_wait_says_what_it_waits_for(env, sim):
    gen = with_dnsimple(env, sim)
    next(gen)
    try:
        sim.ctl("issue_delay", {"seconds": 12})
        env.repo.write("w.yaml", manifest("shop-www", ["www.pizza.company"], issuer="dns"))
        env.repo.commit()
        r = env.run("apply", "--auto-approve", "--wait", "60s", check=0, timeout=120)
        lines = [ln for ln in r.err.splitlines() if "waiting for the provider:" in ln]
        assert lines, r
        assert "shop-www" in lines[0] and "next poll in" in lines[0] and "--wait gives up in" in lines[0], lines
        assert "1 done" in r.out, r
    finally:
        gen.close()


def test_pr_plan_with_a_config_of_issuers_only(env):
    """Item 11: CI has no production config: plan --base --head needs only issuers."""
    env.repo.write("shop/www.yaml", manifest("shop-www", ["www.example.com"]))
    env.repo.commit("base")
    env.repo.git("checkout", "-q", "-b", "feature")
    env.repo.write("shop/new.yaml", manifest("shop-new", ["new.example.com"], issuer="le"))
    env.repo.write("shop/www.yaml", manifest("shop-www", ["www.example.com", "shop.example.com"]))
    env.repo.commit("feature")
    cfg = env.dir / "ci.yaml"
    cfg.write_text("issuers:\n  internal: {type: ca, generate: {dir: ca}}\n"
                   "  le:\n    type: dnsimple\n    account: {env: CERTSYNC_TEST_UNSET_ACCOUNT}\n"
                   "    token: {file: /nonexistent/dnsimple-token}\n    zones: [example.com]\n")
    # from the checkout, as a CI job runs it: the repository is the working directory
    r = subprocess.run([BIN, "plan", "--config", str(cfg), "--base", "main", "--head", "feature",
                        "--path", "certificates", "--detailed-exitcode"], cwd=env.repo.path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert "missing required section" not in r.stderr, r.stderr
    assert re.search(r"^\+ shop-new\s+create", r.stdout, re.M), r.stdout
    assert re.search(r"^-/\+ shop-www\s+replace", r.stdout, re.M), r.stdout
    assert "paid" in r.stdout
    # elsewhere, naming the repository; JSON too
    def run(*args):
        return subprocess.run([BIN, *args, "--config", str(cfg)], cwd=env.dir, capture_output=True, text=True,
                              timeout=60)
    r = run("plan", "--base", "main", "--head", "feature", "--repo", str(env.repo.path), "--path", "certificates",
            "--format", "json")
    assert r.returncode == 0, r
    import json
    assert sorted(c["name"] for c in json.loads(r.stdout)["changes"]) == ["shop-new", "shop-www"]
    # --with-state needs a state to read
    r = run("plan", "--base", "main", "--head", "feature", "--repo", str(env.repo.path), "--with-state")
    assert r.returncode == 1 and "no state section" in r.stderr, r
    # a plain plan still needs the whole config
    r = run("plan")
    assert r.returncode == 1 and 'missing required section "source"' in r.stderr, r


def pty_run(env, args, answer, extra_env=None):
    """The binary on a pseudo-terminal (stdin and stdout): answers the prompt with answer. (exit code, output)"""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        e = dict(os.environ)
        e.update(extra_env or {})
        os.chdir(env.dir)
        os.execve(BIN, [BIN, *args, "--config", str(env.config), "--no-color"], e)
    out, answered = b"", False
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"Enter a value:" in out:
            os.write(fd, answer.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def paid_env(env, sim):
    gen = with_dnsimple(env, sim)
    next(gen)
    env.repo.write("w.yaml", manifest("shop-www", ["www.pizza.company"], issuer="dns"))
    env.repo.write("i.yaml", manifest("internal-a", ["a.internal.test"]))
    env.repo.commit()
    return gen


def test_paid_apply_asks_on_a_terminal(env, sim):
    gen = paid_env(env, sim)
    try:
        code, out = pty_run(env, ["apply"], "no")
        assert code == 1, out
        assert "Do you want to perform these actions?" in out and "Only 'yes' will be accepted" in out, out
        assert "Apply cancelled." in out
        assert sim.count("purchaseLetsencryptCertificate") == 0 and not env.state.exists(), out
        assert out.index("shop-www") < out.index("Do you want")  # the plan comes first
        code, out = pty_run(env, ["apply", "--wait", "60s"], "yes")
        assert code == 0, out
        assert sim.count("purchaseLetsencryptCertificate") == 1 and "2 done" in out, out
        assert (env.cert_dir("shop-www") / "tls.crt").exists() and (env.cert_dir("internal-a") / "tls.crt").exists()
    finally:
        gen.close()


def test_paid_apply_without_a_terminal_is_refused(env, sim):
    gen = paid_env(env, sim)
    try:
        r = env.run("apply", check=1)
        assert "1 paid change" in r.err and "no terminal" in r.err and "--auto-approve" in r.err, r
        assert "Enter a value" not in r.out
        # the whole apply is refused, free changes too; nothing bought
        assert sim.count("purchaseLetsencryptCertificate") == 0 and not (env.cert_dir("internal-a") / "tls.crt").exists()
        # a saved plan was reviewed: applied without asking
        env.run("plan", "--out", "plan.json", check=0)
        r = env.run("apply", "plan.json", "--wait", "60s", check=0)
        assert sim.count("purchaseLetsencryptCertificate") == 1 and "2 done" in r.out, r
    finally:
        gen.close()


def test_auto_approve_and_free_plans_never_ask(env, sim):
    gen = paid_env(env, sim)
    try:
        r = env.run("apply", "--auto-approve", "--wait", "60s", check=0)
        assert sim.count("purchaseLetsencryptCertificate") == 1 and "2 done" in r.out, r
        # a free change on a terminal: no prompt (only paid orders need consent)
        env.repo.write("j.yaml", manifest("internal-b", ["b.internal.test"]))
        env.repo.commit()
        code, out = pty_run(env, ["apply"], "no")
        assert code == 0 and "Do you want" not in out and "1 done" in out, out
    finally:
        gen.close()


def test_show_renders_a_saved_plan_without_config(env, tmp_path):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.run("plan", "--out", "plan.json", check=0)
    text = env.run("plan", "--no-color", check=0).out
    # from another directory, with no config anywhere
    r = subprocess.run([BIN, "show", str(env.dir / "plan.json")], cwd=tmp_path.parent, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r
    assert r.stdout == text, (r.stdout, text)
    r = subprocess.run([BIN, "show", str(env.dir / "plan.json"), "--format", "json"], capture_output=True,
                       text=True, timeout=60)
    import json
    assert r.returncode == 0 and [c["name"] for c in json.loads(r.stdout)["changes"]] == ["a", "b"], r
    assert json.loads(r.stdout) == json.loads((env.dir / "plan.json").read_text())
    r = subprocess.run([BIN, "show", str(env.dir / "nope.json")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "nope.json" in r.stderr and len(r.stderr.splitlines()) == 1, r
    (env.dir / "bad.json").write_text("{not json")
    r = subprocess.run([BIN, "show", str(env.dir / "bad.json")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "bad.json" in r.stderr, r


def test_target_plans_and_applies_only_the_named_certificates(env):
    for n in ("a", "b", "c"):
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test"]))
    env.repo.commit()
    r = env.run("plan", "--target", "a", "--target", "c", "--detailed-exitcode", check=2)
    assert re.search(r"^\+ a\s", r.out, re.M) and re.search(r"^\+ c\s", r.out, re.M), r
    assert not re.search(r"^\+ b\s", r.out, re.M), r
    assert "2 to create" in r.out and "resource targeting is in effect" in r.out, r
    r = env.run("plan", "--target", "bb", check=1)
    assert r.err.strip() == ("error: --target bb: no certificate of that name in the manifests or the state; "
                             "did you mean b?"), r
    r = env.run("apply", "--target", "b", check=0)
    assert "1 done" in r.out and "targeting" in r.out, r
    assert (env.cert_dir("b") / "tls.crt").exists()
    assert not (env.cert_dir("a") / "tls.crt").exists() and not (env.cert_dir("c") / "tls.crt").exists()
    assert set(env.state_json()["certificates"]) == {"b"}
    # a saved targeted plan applies only its targets; --target with a plan file is a usage error
    env.run("plan", "--target", "a", "--out", "p.json", check=0)
    env.run("apply", "p.json", "--target", "a", check=64)
    env.run("apply", "p.json", check=0)
    assert set(env.state_json()["certificates"]) == {"a", "b"}
    r = env.run("plan", "--detailed-exitcode", check=2)
    assert "1 to create" in r.out and "targeting" not in r.out, r


def test_state_mv_keeps_the_certificate_of_a_renamed_manifest(env):
    from conftest import cert_serial
    env.repo.write("a.yaml", manifest("old-name", ["a.example.test"], extra="output: {directory: shop}"))
    env.repo.write("b.yaml", manifest("other", ["b.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    serial = cert_serial(env.out / "shop" / "tls.crt")
    env.repo.remove("a.yaml")
    env.repo.write("a2.yaml", manifest("new-name", ["a.example.test"], extra="output: {directory: shop}"))
    env.repo.commit("rename")
    r = env.run("plan", check=0)
    assert re.search(r"^\+ new-name\s+create", r.out, re.M), r  # without mv: a new certificate
    # refusals first: unknown, target taken, missing argument
    r = env.run("state", "mv", "nope", "new-name", check=1)
    assert 'no certificate "nope"' in r.err, r
    r = env.run("state", "mv", "old-name", "other", check=1)
    assert '"other" is already in the state' in r.err, r
    env.run("state", "mv", "old-name", check=64)
    r = env.run("state", "mv", "old-name", "new-name", check=0)
    assert "Moved old-name to new-name (and its key store entry)" in r.out, r
    assert set(env.state_json()["certificates"]) == {"new-name", "other"}
    r = env.run("plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r
    # the key moved with it: lost outputs come back from the key store, same certificate
    for f in ("tls.crt", "tls.key", "ca.crt"):
        (env.out / "shop" / f).unlink()
    r = env.run("plan", check=0)
    assert re.search(r"^! new-name\s+reinstall", r.out, re.M), r
    env.run("apply", check=0)
    assert cert_serial(env.out / "shop" / "tls.crt") == serial
    store = env.dir / "state" / "keys" / "store"
    assert (store / "new-name").is_dir() and not (store / "old-name").exists(), list(store.iterdir())


def test_json_plan_has_terraforms_resource_changes(env):
    """A policy written for Terraform's JSON plan (resource_changes[].change.actions) reads certsync's."""
    import json
    for n in ("keep", "swap", "gone"):
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test"], labels={"team": "web"}))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("swap.yaml", manifest("swap", ["swap.example.test", "more.example.test"]))
    env.repo.remove("gone.yaml")
    env.repo.write("new.yaml", manifest("new", ["new.example.test"], labels={"team": "api"}))
    env.repo.commit()
    plan = env.plan_json()
    assert plan["format_version"] == "1.2"
    rc = {r["address"]: r for r in plan["resource_changes"]}
    assert set(rc) == {"certsync_certificate.new", "certsync_certificate.swap", "certsync_certificate.gone"}
    assert rc["certsync_certificate.new"]["change"]["actions"] == ["create"]
    assert rc["certsync_certificate.new"]["change"]["before"] is None
    assert rc["certsync_certificate.new"]["change"]["after"]["labels"] == {"team": "api"}
    assert rc["certsync_certificate.swap"]["change"]["actions"] == ["delete", "create"]
    assert rc["certsync_certificate.swap"]["action_reason"] == "replace_because_cannot_update"
    assert rc["certsync_certificate.gone"]["change"]["actions"] == ["delete"]
    assert rc["certsync_certificate.gone"]["change"]["after"] is None
    for r in plan["resource_changes"]:
        assert r["type"] == "certsync_certificate" and r["mode"] == "managed" and r["name"] in r["address"]
        assert r["provider_name"] == "ca"
    # the conftest-style rule "no delete without review" finds exactly the replace and the removal
    deletes = sorted(r["name"] for r in plan["resource_changes"] if "delete" in r["change"]["actions"])
    assert deletes == ["gone", "swap"]
    # the existing fields are still there, and a saved plan with the new keys applies
    assert [c["action"] for c in plan["changes"]] == ["remove", "create", "replace"]
    env.run("plan", "--out", "p.json", check=0)
    assert json.loads((env.dir / "p.json").read_text())["resource_changes"] == plan["resource_changes"]
    env.run("apply", "p.json", check=0)


def test_state_import_adopts_an_existing_ca_output(env):
    import shutil
    from conftest import cert_serial, check_outputs
    env.repo.write("web.yaml", manifest("web", ["web.example.test", "example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    legacy = env.dir / "legacy" / "web"
    legacy.mkdir(parents=True)
    for f in ("tls.crt", "tls.key", "ca.crt"):
        shutil.copy(env.out / "web" / f, legacy / f)
    serial = cert_serial(legacy / "tls.crt")
    env.run("state", "rm", "web", check=0)
    shutil.rmtree(env.out)
    r = env.run("plan", check=0)
    assert re.search(r"^\+ web\s+create", r.out, re.M), r  # without import: a new certificate
    # refusals: wrong issuer, unknown manifest, bad directory, names not the manifest's
    r = env.run("state", "import", "web", "--issuer", "other", "--id", "legacy/web", check=1)
    assert "the manifest's issuer is internal, not other" in r.err, r
    r = env.run("state", "import", "nope", "--issuer", "internal", "--id", "legacy/web", check=1)
    assert "no valid manifest named nope" in r.err, r
    r = env.run("state", "import", "web", "--issuer", "internal", "--id", "legacy/none", check=1)
    assert "legacy/none/tls.crt: not found" in r.err, r
    env.run("state", "import", "web", "--issuer", "internal", check=64)
    env.repo.write("web.yaml", manifest("web", ["web.example.test"]))
    env.repo.commit("fewer names")
    r = env.run("state", "import", "web", "--issuer", "internal", "--id", "legacy/web", check=1)
    assert "not the manifest's dnsNames" in r.err, r
    assert not env.state.exists() or "web" not in env.state_json()["certificates"]
    env.repo.write("web.yaml", manifest("web", ["web.example.test", "example.test"]))
    env.repo.commit("back")
    r = env.run("state", "import", "web", "--issuer", "internal", "--id", "legacy/web", check=0)
    assert "Imported web" in r.out, r
    r = env.run("state", "import", "web", "--issuer", "internal", "--id", "legacy/web", check=1)
    assert "already in the state" in r.err, r
    r = env.run("plan", check=0)
    assert re.search(r"^! web\s+reinstall", r.out, re.M) and "0 to create" in r.out, r
    env.run("apply", check=0)
    check_outputs(env.cert_dir("web"), ["example.test", "web.example.test"])
    assert cert_serial(env.cert_dir("web") / "tls.crt") == serial
    r = env.run("plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r


def test_state_import_adopts_a_dnsimple_certificate_by_id(env, sim):
    import shutil
    from conftest import cert_names
    gen = with_dnsimple(env, sim)
    next(gen)
    try:
        env.repo.write("w.yaml", manifest("shop-www", ["www.pizza.company"], issuer="dns"))
        env.repo.commit()
        env.run("apply", "--auto-approve", "--wait", "60s", check=0)
        rec = env.state_json()["certificates"]["shop-www"]
        cid = rec["ids"]["dnsimple.certificate_id"]
        assert sim.count("purchaseLetsencryptCertificate") == 1
        env.run("state", "rm", "shop-www", check=0)
        shutil.rmtree(env.out)
        r = env.run("state", "import", "shop-www", "--issuer", "dns", "--id", "abc", check=1)
        assert "positive number" in r.err, r
        r = env.run("state", "import", "shop-www", "--issuer", "dns", "--id", str(cid), check=0)
        assert "Imported shop-www" in r.out, r
        plan = env.plan_json()
        (ch,) = plan["changes"]
        assert ch["action"] == "resume" and not ch["paid"] and "purchase" not in ch["steps"], ch
        r = env.run("apply", "--wait", "60s", check=0)  # free: no consent needed
        assert sim.count("purchaseLetsencryptCertificate") == 1, r
        assert cert_names(env.cert_dir("shop-www") / "tls.crt") == ["pizza.company", "www.pizza.company"]
        assert env.run("plan", "--detailed-exitcode", check=0)
        # an id DNSimple does not have: the apply says so and buys nothing
        env.run("state", "rm", "shop-www", check=0)
        env.run("state", "import", "shop-www", "--issuer", "dns", "--id", "987654", check=0)
        r = env.run("apply", "--wait", "30s", check=1)
        assert "987654" in (r.out + r.err) and sim.count("purchaseLetsencryptCertificate") == 1, r
    finally:
        gen.close()
