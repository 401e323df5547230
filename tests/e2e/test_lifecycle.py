"""plan → apply → no changes → edit → replace → delete → remove/orphan, with outputs checked by openssl."""
import json
import os
import re

from conftest import cert_names, cert_serial, check_outputs, manifest


def test_full_lifecycle(env):
    env.repo.write("web/www.yaml", manifest("www", ["www.example.test", "example.test"]))
    env.repo.write("api.yaml", manifest("api", ["api.example.test"], extra="privateKey: {algorithm: RSA, size: 2048}"))
    commit = env.repo.commit("two certificates")

    r = env.run("plan", "--detailed-exitcode", check=2)
    assert "+ api" in r.out and "+ www" in r.out, r
    assert commit[:12] in r.out
    assert "2 to create" in r.out

    r = env.run("apply", check=0)
    assert "2 done" in r.out, r
    check_outputs(env.cert_dir("www"), ["example.test", "www.example.test"])
    check_outputs(env.cert_dir("api"), ["api.example.test"])
    st = env.state_json()
    assert st["source"]["commit"] == commit
    assert set(st["certificates"]) == {"api", "www"}
    assert all(c["phase"] == "ready" for c in st["certificates"].values())

    r = env.run("plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r
    assert f"last applied {commit[:12]}" in r.out, r
    assert env.plan_json()["state"]["applied_commit"] == commit

    # Edit the SANs: a replacement with a new certificate for the new names.
    old_serial = cert_serial(env.cert_dir("www") / "tls.crt")
    env.repo.write("web/www.yaml", manifest("www", ["www.example.test", "example.test", "shop.example.test"]))
    env.repo.commit("add a SAN")
    plan = env.plan_json()
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("www", "replace")]
    env.run("apply", check=0)
    check_outputs(env.cert_dir("www"), ["example.test", "shop.example.test", "www.example.test"])
    assert cert_serial(env.cert_dir("www") / "tls.crt") != old_serial
    env.run("plan", "--detailed-exitcode", check=0)

    # Delete a manifest with prune: outputs deleted, record forgotten.
    env.repo.remove("api.yaml")
    env.repo.commit("drop api")
    plan = env.plan_json()
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("api", "remove")]
    env.run("apply", check=0)
    assert not env.cert_dir("api").exists()
    assert "api" not in env.state_json()["certificates"]
    leftovers = [p.name for p in env.out.iterdir() if p.name.startswith(".api")]
    assert leftovers == []


def test_orphan_without_prune_is_kept(env):
    env.write_config(prune=False)
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("README.md", "certificates live here\n")  # keeps the folder in git
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.remove("a.yaml")
    env.repo.commit("remove a")
    r = env.run("plan", "--detailed-exitcode", check=0)
    assert "orphan" in r.out.lower(), r
    plan = env.plan_json()
    assert plan["changes"][0]["action"] == "orphan"
    env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    assert "a" in env.state_json()["certificates"]


def test_cosmetic_edit_plans_nothing(env):
    env.repo.write("a.yaml", manifest("a", ["b.example.test", "a.example.test"], extra="renewBefore: 720h"))
    env.repo.commit()
    env.run("apply", check=0)
    env.repo.write("a.yaml", manifest("a", ["A.example.test", "b.example.test."], extra="renewBefore: 30d"))
    env.repo.commit("reorder and respell")
    env.run("plan", "--detailed-exitcode", check=0)


def test_renew_when_inside_renew_before(env):
    # The issuer gives 2h certificates; renewBefore 3h puts the certificate inside its window.
    env.write_config(extra_issuers="short:\n  type: ca\n  generate: {dir: ca2}\n  duration: 2h\n")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], issuer="short", extra="renewBefore: 30m"))
    env.repo.commit()
    env.run("apply", check=0)
    env.run("plan", "--detailed-exitcode", check=0)
    serial = cert_serial(env.cert_dir("a") / "tls.crt")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], issuer="short", extra="renewBefore: 3h"))
    env.repo.commit("renew early")
    plan = env.plan_json()
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("a", "renew")]
    assert plan["changes"][0]["reason_code"] == "renewal_due"
    env.run("apply", check=0)
    assert cert_serial(env.cert_dir("a") / "tls.crt") != serial
    check_outputs(env.cert_dir("a"), ["a.example.test"], valid_for=3600)


def test_reinstall_when_output_missing_or_altered(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    (env.cert_dir("a") / "tls.crt").write_text("tampered\n")
    plan = env.plan_json()
    assert [(c["name"], c["action"], c["reason_code"]) for c in plan["changes"]] == [("a", "reinstall", "output_altered")]
    env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    (env.cert_dir("a") / "ca.crt").unlink()
    plan = env.plan_json()
    assert plan["changes"][0]["reason_code"] == "output_missing"
    env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    env.run("plan", "--detailed-exitcode", check=0)


def test_output_is_a_symlink_to_a_generation(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="output: {directory: team/a}"))
    env.repo.commit()
    env.run("apply", check=0)
    link = env.out / "team" / "a"
    assert link.is_symlink()
    first = os.readlink(link)
    assert first.startswith(".a.") and "/" not in first
    env.repo.write("a.yaml", manifest("a", ["a.example.test", "b.example.test"], extra="output: {directory: team/a}"))
    env.repo.commit()
    env.run("apply", check=0)
    second = os.readlink(link)
    assert second != first
    # The replaced generation stays output.keepPreviousFor (60 s by default) for readers between two opens.
    assert sorted(p.name for p in (env.out / "team").iterdir()) == sorted(["a", first, second])


def test_rotation_never_keeps_the_key(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="privateKey: {rotationPolicy: Never}"))
    env.repo.commit()
    env.run("apply", check=0)
    key = (env.cert_dir("a") / "tls.key").read_text()
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra="privateKey: {rotationPolicy: Never}\nrenewBefore: 2400h"))
    env.repo.commit()
    env.run("apply", check=0)
    assert (env.cert_dir("a") / "tls.key").read_text() == key


def test_key_types(env):
    for i, (alg, size) in enumerate([("RSA", 2048), ("RSA", 3072), ("ECDSA", 256), ("ECDSA", 384)]):
        env.repo.write(f"k{i}.yaml", manifest(f"k{i}", [f"k{i}.example.test"],
                                              extra=f"privateKey: {{algorithm: {alg}, size: {size}}}"))
    env.repo.commit()
    env.run("apply", check=0)
    from conftest import openssl
    for i, (alg, size) in enumerate([("RSA", 2048), ("RSA", 3072), ("ECDSA", 256), ("ECDSA", 384)]):
        check_outputs(env.cert_dir(f"k{i}"), [f"k{i}.example.test"])
        text = openssl("pkey", "-in", str(env.cert_dir(f"k{i}") / "tls.key"), "-noout", "-text").stdout
        assert f"{size} bit" in text, text[:200]


def test_state_has_no_private_keys_and_is_private(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    for f in env.state.parent.iterdir():
        if f.is_file():
            assert "PRIVATE KEY" not in f.read_text(errors="replace"), f
            if f.name.startswith("state.json"):
                assert (f.stat().st_mode & 0o777) == 0o600, f
    ca_key = (env.dir / "ca" / "ca.key")
    assert (ca_key.stat().st_mode & 0o777) == 0o600
    key = (env.cert_dir("a") / "tls.key").read_text()
    body = "".join(key.strip().splitlines()[1:-1])
    r = env.run("plan", "--format", "json")
    assert body[:40] not in r.out and body[:40] not in r.err


def test_state_commands(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    r = env.run("state", "list", check=0)
    assert re.search(r"^a\s+ready\s+internal", r.out, re.M), r
    r = env.run("state", "show", "b", check=0)
    rec = json.loads(r.out)
    assert rec["phase"] == "ready" and rec["issuer"] == "internal"
    r = env.run("state", "show", "zzz", check=1)
    assert "no certificate" in r.err
    env.run("state", "rm", "b", check=0)
    assert "b" not in env.state_json()["certificates"]
    assert (env.cert_dir("b") / "tls.crt").exists()  # rm forgets; it does not delete outputs
    plan = env.plan_json()
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("b", "create")]


def test_apply_json_and_markdown_formats(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], labels={"team": "web"}))
    env.repo.commit()
    plan = env.plan_json()
    assert plan["format_version"] == "1.2"
    assert plan["state"] is None
    assert plan["summary"]["create"] == 1
    assert plan["changes"][0]["labels"] == {"team": "web"}
    r = env.run("plan", "--format", "markdown", check=0)
    assert "<!-- certsync-plan -->" in r.out
    r = env.run("plan", "--format", "yaml")
    assert r.code == 64 and "unknown format" in r.err


def test_text_plan_has_no_colour_when_not_a_tty(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    r = env.run("plan", check=0)
    assert "\x1b[" not in r.out


def test_ca_from_files_and_self_signed(env):
    from conftest import openssl
    ca_dir = env.dir / "myca"
    ca_dir.mkdir()
    r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                "-subj", "/CN=Operator CA", "-keyout", str(ca_dir / "ca.key"), "-out", str(ca_dir / "ca.crt"),
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    assert r.returncode == 0, r.stderr
    (ca_dir / "ca.key").chmod(0o600)
    env.write_config(extra_issuers="""\
        files:
          type: ca
          ca: {certFile: myca/ca.crt, keyFile: myca/ca.key}
        self:
          type: ca
          selfSigned: true
        """)
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], issuer="files"))
    env.repo.write("s.yaml", manifest("s", ["s.example.test"], issuer="self"))
    env.repo.commit()
    env.run("apply", check=0)
    check_outputs(env.cert_dir("a"), ["a.example.test"])
    assert (env.cert_dir("a") / "ca.crt").read_text() == (ca_dir / "ca.crt").read_text()
    check_outputs(env.cert_dir("s"), ["s.example.test"])  # ca.crt is the certificate itself
    # a CA key others can read is refused, naming the file, and nothing is issued with it
    (ca_dir / "ca.key").chmod(0o644)
    env.repo.write("b.yaml", manifest("b", ["b.example.test"], issuer="files"))
    env.repo.commit()
    r = env.run("apply", check=1)
    assert "readable by group or others" in r.err and "ca.key" in r.err, r
    assert not env.cert_dir("b").exists()
