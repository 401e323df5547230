"""state import of an existing DigiCert order (--id ORDER --from DIR) against the DigiCert simulator: the files
are checked as for a ca import, the order's certificate must be the one in DIR, and the next renewal renews that
order (renewal_of_order_id) instead of placing an unrelated one."""
import json
import re
import shutil

from conftest import cert_serial, manifest
from digicert_env import API_KEY, AUTH_KEY, DNS_TOKEN, dc, dc_ca_dir, denv, dns, web  # noqa: F401

NAMES = ["pizza.company", "www.pizza.company", "shop.pizza.company"]


def shop(extra=""):
    return manifest("shop", NAMES, issuer="dc", extra="commonName: pizza.company\n" + extra)


def order_bodies(dc):
    return [json.loads(e["body"]) for e in dc.log("order_create")]


def keep(env, to):
    """A copy of the current outputs (as a user's existing directory)."""
    to.mkdir(parents=True)
    for f in ("tls.crt", "tls.key", "ca.crt"):
        shutil.copy(env.cert_dir("shop") / f, to / f)
    return to


def no_secrets(r):
    for s in (API_KEY, AUTH_KEY, DNS_TOKEN, "PRIVATE KEY"):
        assert s not in r.out + r.err, r


def test_state_import_adopts_a_digicert_order_with_its_files(denv, dc):
    env = denv
    env.repo.write("shop.yaml", shop())
    env.repo.commit()
    env.run("apply", "--auto-approve", check=0)
    first = env.state_json()["certificates"]["shop"]["ids"]["digicert.installed_order_id"]
    old = keep(env, env.dir / "old")
    env.repo.write("shop.yaml", shop("renewBefore: 4900h\n"))
    env.repo.commit("renew")
    env.run("apply", "--auto-approve", check=0)
    second = env.state_json()["certificates"]["shop"]["ids"]["digicert.installed_order_id"]
    assert second != first and dc.count("order_create") == 2
    cur = keep(env, env.dir / "cur")
    serial = cert_serial(cur / "tls.crt")
    env.repo.write("shop.yaml", shop())
    env.repo.commit("back")
    env.run("state", "rm", "shop", check=0)
    shutil.rmtree(env.out)

    # refusals, each one line, and nothing written
    r = env.run("state", "import", "shop", "--issuer", "dc", "--id", second, check=1)
    assert "a digicert import needs --from DIR" in r.err and "never has the private key" in r.err, r
    r = env.run("state", "import", "shop", "--issuer", "dc", "--id", "x1", "--from", str(cur), check=1)
    assert '--id: a DigiCert order id is a positive number, not "x1"' in r.err, r
    r = env.run("state", "import", "shop", "--issuer", "dc", "--id", "987654", "--from", str(cur), check=1)
    assert "DigiCert has no order 987654 (issuer dc: HTTP 404)" in r.err and len(r.err.strip().splitlines()) == 1, r
    r = env.run("state", "import", "shop", "--issuer", "dc", "--id", first, "--from", str(cur), check=1)
    assert f"DigiCert order {first} (issuer dc) is not the certificate in {cur}: serial " in r.err, r
    assert f"{serial} in tls.crt" in r.err and len(r.err.strip().splitlines()) == 1, r
    shutil.copy(old / "tls.key", env.dir / "other.key")
    bad = keep_files(cur, env.dir / "bad", key=env.dir / "other.key")
    r = env.run("state", "import", "shop", "--issuer", "dc", "--id", second, "--from", str(bad), check=1)
    assert "does not match tls.key" in r.err, r
    r = env.run("state", "list", check=None)
    assert "shop" not in r.out, r
    no_secrets(r)
    env.run("state", "import", "shop", "--issuer", "dc", "--id", second, "--from", str(cur), "--nope", check=64)
    r = env.run("state", "list", "--from", str(cur), check=64)
    assert "--from are options of state import" in r.err, r

    r = env.run("state", "import", "shop", "--issuer", "dc", "--id", second, "--from", str(cur), check=0)
    assert "Imported shop" in r.out, r
    no_secrets(r)
    rec = env.state_json()["certificates"]["shop"]
    assert rec["ids"]["digicert.installed_order_id"] == second and rec["phase"] == "ready", rec
    assert rec["serial"] == serial, rec
    plan = env.plan_json()
    (ch,) = plan["changes"]
    assert ch["action"] == "reinstall" and not ch["paid"], ch
    env.run("apply", check=0)  # free: no consent needed, nothing ordered
    assert dc.count("order_create") == 2
    assert cert_serial(env.cert_dir("shop") / "tls.crt") == serial
    r = env.run("plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r

    # the renewal renews the imported order
    env.repo.write("shop.yaml", shop("renewBefore: 4900h\n"))
    env.repo.commit("renew again")
    env.run("apply", "--auto-approve", check=0)
    bodies = order_bodies(dc)
    assert len(bodies) == 3 and bodies[2]["renewal_of_order_id"] == int(second), bodies[2]
    assert cert_serial(env.cert_dir("shop") / "tls.crt") != serial


def keep_files(src, to, key):
    to.mkdir(parents=True)
    for f in ("tls.crt", "ca.crt"):
        shutil.copy(src / f, to / f)
    shutil.copy(key, to / "tls.key")
    return to


def test_state_import_from_is_refused_for_the_other_issuers(env):
    env.repo.write("web.yaml", manifest("web", ["web.example.test"]))
    env.repo.commit()
    r = env.run("state", "import", "web", "--issuer", "internal", "--id", "x", "--from", "y", check=1)
    assert "--from is for digicert imports (a ca import reads the directory given as --id)" in r.err, r
    assert re.search(r"state import NAME --issuer ISSUER --id DIR\|ID \[--from DIR\]",
                     env.run("state", "--help", check=0).out)
