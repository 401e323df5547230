"""The commands on the postgres state backend (docs/state.md, docs/cli.md), against a real
PostgreSQL server (the `pg` fixture: a fresh database per test) and the built-in CA issuer:
apply/plan/state list|show|rm, reinstall from the encrypted key store, the lease against a
second writer, a wrong or missing encryptionKey, state migrate both ways, state rekey, and
secrets (the database password, the encryption key) in no output of any command."""
import base64
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import cert_serial, check_outputs, manifest, pubkey
from pg_env import use_postgres

SCHEMA = "certsync"

# Both sides of `state migrate` in one config: the file state (path) and the database (url, key).
BOTH_SIDES = ("  url: {env: CERTSYNC_DATABASE_URL}\n"
              "  encryptionKey: {env: CERTSYNC_STATE_KEY}\n")


class Outputs:
    """Every stdout/stderr a test saw, for the secrets check at its end."""

    def __init__(self):
        self.texts = []

    def add(self, r):
        self.texts += [r.out, r.err]
        return r


@pytest.fixture
def seen():
    return Outputs()


def run(env, seen, *args, check=None, env_vars=None):
    return seen.add(env.run(*args, check=check, env=env_vars))


def assert_no_secrets(seen, pg, *extra):
    secrets = [pg.password, pg.key, *extra]
    for text in seen.texts:
        for s in secrets:
            assert s not in text, f"a secret appears in an output:\n{text}"


def add_cert(env, name, host=None, commit=True):
    env.repo.write(f"{name}.yaml", manifest(name, [host or f"{name}.example.test"]))
    if commit:
        env.repo.commit(f"add {name}")


def lose_outputs(env, name):
    link = env.cert_dir(name)
    target = link.parent / os.readlink(link)
    link.unlink()
    shutil.rmtree(target)


def header(pg):
    """(lineage, serial) of the stored state, or None before the first write."""
    if not pg.psql(f"SELECT to_regclass('{SCHEMA}.header')"):
        return None
    row = pg.psql(f"SELECT lineage || ' ' || serial FROM {SCHEMA}.header")
    if not row:
        return None
    lineage, serial = row.split()
    return lineage, int(serial)


def lease_row(pg):
    return pg.psql(f"SELECT holder, host, pid, operation, epoch FROM {SCHEMA}.lease")


def pg_env(env, pg, prune=True):
    """The Env switched to the postgres backend on pg's database."""
    env.write_config(prune=prune)
    use_postgres(env, pg, schema=SCHEMA)
    return env


def store_entries(keydir):
    """{relative path: bytes} of a file key store."""
    store = Path(keydir) / "store"
    if not store.exists():
        return {}
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*.pem"))}


# ---------- apply, state list/show, plan ----------

def test_apply_then_state_list_show_and_plan_says_no_changes(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    add_cert(env, "api")
    r = run(env, seen, "apply", check=0)
    assert "2 done" in r.out, r
    for name in ("web", "api"):
        check_outputs(env.cert_dir(name), [f"{name}.example.test"])
    # Nothing on disk beside the config: the state and the keys are in the database.
    assert not env.state.exists() and not (env.dir / "state").exists()
    assert pg.psql(f"SELECT count(*) FROM {SCHEMA}.certs") == "2"
    assert pg.psql(f"SELECT count(*) FROM {SCHEMA}.keys") == "2"
    lineage, serial = header(pg)
    assert serial > 0

    r = run(env, seen, "state", "list", check=0)
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "PHASE", "ISSUER"]
    assert [ln.split()[:3] for ln in lines[1:]] == [["api", "ready", "internal"], ["web", "ready", "internal"]]
    rec = json.loads(run(env, seen, "state", "show", "web", check=0).out)
    assert rec["phase"] == "ready" and rec["serial"] == cert_serial(env.cert_dir("web") / "tls.crt")
    r = run(env, seen, "state", "show", "nope", check=1)
    assert 'no certificate "nope" in the state' in r.err

    r = run(env, seen, "plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r
    assert f"state {lineage[:8]} serial {serial}" in r.out, r
    plan = json.loads(run(env, seen, "plan", "--format", "json", check=0).out)
    assert plan["state"]["lineage"] == lineage and plan["state"]["serial"] == serial
    # A second apply with nothing to do writes nothing.
    run(env, seen, "apply", check=0)
    assert header(pg) == (lineage, serial)
    assert_no_secrets(seen, pg)


def test_lost_outputs_are_reinstalled_from_the_database_without_a_new_certificate(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    run(env, seen, "apply", check=0)
    d = env.cert_dir("web")
    serial, key = cert_serial(d / "tls.crt"), (d / "tls.key").read_bytes()
    sealed = pg.psql(f"SELECT encode(sealed, 'hex') FROM {SCHEMA}.keys WHERE cert = 'web'")
    # The key is in the database, encrypted: neither the PEM nor its base64 body appears in the row.
    body = b"".join(key.splitlines()[1:-1])
    assert body.hex() not in sealed and b"PRIVATE KEY".hex() not in sealed
    lose_outputs(env, "web")
    plan = json.loads(run(env, seen, "plan", "--format", "json").out)
    assert [(c["name"], c["action"], c["paid"]) for c in plan["changes"]] == [("web", "reinstall", False)], plan
    r = run(env, seen, "apply", check=0)
    assert "1 done" in r.out and "from the key store" in r.err, r
    assert cert_serial(d / "tls.crt") == serial
    assert (d / "tls.key").read_bytes() == key
    check_outputs(d, ["web.example.test"])
    assert not (env.dir / "state").exists()  # no file key store was used
    run(env, seen, "plan", "--detailed-exitcode", check=0)
    assert_no_secrets(seen, pg)


# ---------- the lease: a second writer ----------

def test_a_second_writer_fails_at_once_naming_the_holder_while_plan_still_works(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    run(env, seen, "apply", check=0)
    before = header(pg)
    # Another process holds the lease: a replica on another host, renewed a moment ago.
    pg.psql(f"UPDATE {SCHEMA}.lease SET holder = 'replica-b:77', host = 'host-b', pid = 77, operation = 'run', "
            "epoch = epoch + 1, acquired_at = now() - interval '5 minutes', renewed_at = now(), "
            "expires_at = now() + interval '1 hour'")
    add_cert(env, "api")
    t0 = time.monotonic()
    r = run(env, seen, "apply", check=1)
    took = time.monotonic() - t0
    assert took < 5, f"apply waited {took:.1f}s for the lease"
    err = r.err
    assert "replica-b:77" in err and "host-b" in err, r
    assert "api" not in r.out  # no plan was applied
    assert not env.cert_dir("api").exists()
    assert header(pg) == before
    assert lease_row(pg).startswith("replica-b:77|host-b|77|run|")
    # state rm is a write too; plan and state list only read.
    r = run(env, seen, "state", "rm", "web", check=1)
    assert "replica-b:77" in r.err, r
    r = run(env, seen, "plan", "--detailed-exitcode", check=2)
    assert "+ api" in r.out, r
    run(env, seen, "state", "list", check=0)
    assert lease_row(pg).startswith("replica-b:77|host-b|77|run|")  # never taken by a reader
    # Once the lease has expired, apply takes it (a new epoch) and goes on.
    pg.psql(f"UPDATE {SCHEMA}.lease SET expires_at = now() - interval '1 second'")
    epoch = int(lease_row(pg).split("|")[4])
    r = run(env, seen, "apply", check=0)
    assert "1 done" in r.out, r
    check_outputs(env.cert_dir("api"), ["api.example.test"])
    assert int(lease_row(pg).split("|")[4]) > epoch
    assert_no_secrets(seen, pg)


# ---------- the encryption key ----------

def test_a_wrong_encryption_key_stops_apply_at_start_up_and_writes_nothing(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    run(env, seen, "apply", check=0)
    add_cert(env, "api")
    before = (header(pg), lease_row(pg), pg.psql(f"SELECT count(*) FROM {SCHEMA}.keys"))
    wrong = base64.b64encode(os.urandom(32)).decode()
    r = run(env, seen, "apply", check=1, env_vars={"CERTSYNC_STATE_KEY": wrong})
    assert "state.encryptionKey" in r.err, r
    assert "api" not in r.out and not env.cert_dir("api").exists(), r
    assert (header(pg), lease_row(pg), pg.psql(f"SELECT count(*) FROM {SCHEMA}.keys")) == before
    # Not base64 of 32 bytes: refused too, naming the field and never the value.
    r = run(env, seen, "apply", check=1, env_vars={"CERTSYNC_STATE_KEY": "c2hvcnQta2V5"})
    assert "state.encryptionKey" in r.err and "c2hvcnQta2V5" not in r.err, r
    assert (header(pg), lease_row(pg)) == before[:2]
    # validate --credentials says the same, and ok with the right key.
    r = run(env, seen, "validate", "--credentials", check=1, env_vars={"CERTSYNC_STATE_KEY": wrong})
    assert "error: state (postgres host=127.0.0.1" in r.err and "state.encryptionKey" in r.err, r
    r = run(env, seen, "validate", "--credentials", check=0)
    assert f"state (postgres host=127.0.0.1 port={pg.server.port} dbname={pg.name} user=certsync schema " \
           f"{SCHEMA}): ok" in r.out, r
    assert_no_secrets(seen, pg, wrong)


def test_a_missing_encryption_key_is_a_config_error(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    r = run(env, seen, "apply", check=1, env_vars={"CERTSYNC_STATE_KEY": ""})
    assert "state.encryptionKey: environment variable CERTSYNC_STATE_KEY" in r.err and "is not set" in r.err, r
    assert not env.cert_dir("web").exists()
    assert header(pg) is None
    # Left out of the config: a located config error, before anything is opened.
    env.config.write_text(env.config.read_text().replace("  encryptionKey: {env: CERTSYNC_STATE_KEY}\n", ""))
    r = run(env, seen, "plan", check=1)
    assert 'certsync.yaml:6:3: state: backend postgres needs "encryptionKey"' in r.err, r
    assert "1 problem in the config" in r.err
    assert_no_secrets(seen, pg)


def test_rekey_moves_every_entry_to_the_new_key(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    add_cert(env, "api")
    run(env, seen, "apply", check=0)
    old, new = pg.key, base64.b64encode(os.urandom(32)).decode()
    text = env.config.read_text().replace(
        "  encryptionKey: {env: CERTSYNC_STATE_KEY}\n",
        "  encryptionKey: {env: CERTSYNC_STATE_KEY}\n  previousEncryptionKey: {env: CERTSYNC_OLD_STATE_KEY}\n")
    env.config.write_text(text)
    rotated = {"CERTSYNC_STATE_KEY": new, "CERTSYNC_OLD_STATE_KEY": old}
    r = run(env, seen, "state", "rekey", check=0, env_vars=rotated)
    assert "Re-encrypted 2 key store entries" in r.out, r
    r = run(env, seen, "state", "rekey", check=0, env_vars=rotated)
    assert "nothing re-encrypted" in r.out, r
    # The new key alone now opens everything: a lost output is reinstalled with it.
    env.config.write_text(env.config.read_text().replace(
        "  previousEncryptionKey: {env: CERTSYNC_OLD_STATE_KEY}\n", ""))
    key = (env.cert_dir("web") / "tls.key").read_bytes()
    lose_outputs(env, "web")
    r = run(env, seen, "apply", check=0, env_vars={"CERTSYNC_STATE_KEY": new})
    assert "from the key store" in r.err, r
    assert (env.cert_dir("web") / "tls.key").read_bytes() == key
    # ... and the old one no longer does.
    r = run(env, seen, "apply", check=1, env_vars={"CERTSYNC_STATE_KEY": old})
    assert "state.encryptionKey" in r.err, r
    assert_no_secrets(seen, pg, new)


# ---------- state rm, restore ----------

def test_state_rm_and_restore_on_postgres(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    add_cert(env, "api")
    run(env, seen, "apply", check=0)
    _, serial = header(pg)
    r = run(env, seen, "state", "rm", "web", check=0)
    assert "Removed web from the state (its output files were left in place)." in r.out
    assert pg.psql(f"SELECT name FROM {SCHEMA}.certs ORDER BY name") == "api"
    assert header(pg)[1] > serial
    assert env.cert_dir("web").exists()
    r = run(env, seen, "state", "list", check=0)
    assert [ln.split()[0] for ln in r.out.splitlines()[1:]] == ["api"]
    r = run(env, seen, "state", "rm", "web", check=1)
    assert 'no certificate "web" in the state' in r.err
    plan = json.loads(run(env, seen, "plan", "--format", "json").out)
    assert [(c["name"], c["action"]) for c in plan["changes"]] == [("web", "create")], plan
    r = run(env, seen, "state", "restore", check=1)
    assert "file backend" in r.err and "pg_dump" in r.err, r
    assert_no_secrets(seen, pg)


# ---------- pull-request plans ----------

def test_pr_plan_reads_the_database_with_with_state(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    run(env, seen, "apply", check=0)
    lineage, serial = header(pg)
    env.repo.git("checkout", "-q", "-b", "feature")
    add_cert(env, "api")
    r = run(env, seen, "plan", "--base", "main", "--head", "feature", "--format", "json")
    assert json.loads(r.out)["state"] is None, r
    r = run(env, seen, "plan", "--base", "main", "--head", "feature", "--with-state", "--format", "json")
    plan = json.loads(r.out)
    assert plan["state"]["lineage"] == lineage and plan["state"]["serial"] == serial, r
    assert [c["name"] for c in plan["changes"]] == ["api"]
    r = run(env, seen, "plan", "--with-state", check=64)
    assert "--with-state is for --base plans" in r.err
    assert_no_secrets(seen, pg)


# ---------- state migrate ----------

def both_sides(env, backend="file"):
    text = env.config.read_text().replace("state:\n  path: state/state.json\n",
                                          "state:\n  path: state/state.json\n" + BOTH_SIDES)
    if backend == "postgres":
        text = text.replace("state:\n", "state:\n  backend: postgres\n")
    env.config.write_text(text)


def test_migrate_file_to_postgres_and_back_is_lossless(env, pg, seen, tmp_path):
    env.write_config()
    add_cert(env, "web")
    add_cert(env, "api")
    add_cert(env, "db")
    run(env, seen, "apply", check=0)
    # Accounts and webhook ids travel too (a DNSimple issuer would have written them).
    doc = env.state_json()
    doc["accounts"] = {"internal": {"note": "kept"}}
    doc["webhook_ids"] = ["req-1", "req-2"]
    env.state.write_text(json.dumps(doc))
    original = env.state_json()
    keys = store_entries(env.dir / "state" / "keys")
    assert len(keys) == 3

    both_sides(env)
    r = run(env, seen, "state", "migrate", "--to", "postgres", check=0)
    assert f"Copied the state from file {env.state} to postgres host=127.0.0.1" in r.out, r
    assert f"lineage {original['lineage']}, serial {original['serial']} (now {original['serial'] + 1} in the " \
           "target), 3 certificates, 1 issuer account, 2 webhook ids" in r.out, r
    assert "3 key store entries" in r.out, r
    assert header(pg) == (original["lineage"], original["serial"] + 1)
    assert pg.psql(f"SELECT count(*) FROM {SCHEMA}.keys") == "3"
    assert env.state_json() == original  # the source is left as it was

    # A non-empty target is refused, saying what is there.
    r = run(env, seen, "state", "migrate", "--to", "postgres", check=1)
    assert (f"already holds a state (lineage {original['lineage'][:8]}, serial {original['serial'] + 1}, "
            "3 certificates): nothing copied") in r.err, r
    assert "--force" in r.err

    # On postgres now: nothing to do.
    text = env.config.read_text()
    env.config.write_text(text.replace("state:\n", "state:\n  backend: postgres\n"))
    r = run(env, seen, "plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r

    # And back, to a fresh file (with its own key directory): equal but for the serial.
    back = tmp_path / "back" / "state.json"
    r = run(env, seen, "state", "migrate", "--to", "file", "--state", str(back), check=0)
    assert "Copied the state from postgres host=127.0.0.1" in r.out and f"to file {back}" in r.out, r
    round_trip = json.loads(back.read_text())
    assert round_trip["lineage"] == original["lineage"]
    assert round_trip["serial"] == original["serial"] + 2  # one save into postgres, one back
    strip = lambda d: {k: v for k, v in d.items() if k != "serial"}  # noqa: E731
    assert strip(round_trip) == strip(original)
    assert store_entries(back.parent / "keys") == keys

    # Lost outputs come back from the database, not from the file store.
    key = (env.cert_dir("db") / "tls.key").read_bytes()
    shutil.rmtree(env.dir / "state" / "keys")
    lose_outputs(env, "db")
    r = run(env, seen, "apply", check=0)
    assert "from the key store" in r.err and (env.cert_dir("db") / "tls.key").read_bytes() == key, r
    assert not (env.dir / "state" / "keys").exists()

    # The existing file is a non-empty target too; --force replaces it, lineage kept, serial moving on.
    r = run(env, seen, "state", "migrate", "--to", "file", check=1)
    assert f"file {env.state} already holds a state (lineage {original['lineage'][:8]}" in r.err, r
    _, pg_serial = header(pg)
    r = run(env, seen, "state", "migrate", "--to", "file", "--force", check=0)
    assert "(replacing its state)" in r.out, r
    replaced = env.state_json()
    assert replaced["lineage"] == original["lineage"] and replaced["serial"] == pg_serial + 1
    assert sorted(replaced["certificates"]) == ["api", "db", "web"]
    assert store_entries(env.dir / "state" / "keys") == keys
    assert_no_secrets(seen, pg)


def test_migrate_refuses_what_it_cannot_do(env, pg, seen):
    env.write_config()
    both_sides(env)
    r = run(env, seen, "state", "migrate", "--to", "postgres", check=1)
    assert "there is no state in file" in r.err and "nothing to copy" in r.err, r
    assert header(pg) is None
    r = run(env, seen, "state", "migrate", check=64)
    assert "--to postgres or --to file" in r.err
    run(env, seen, "state", "migrate", "--to", "sqlite", check=64)
    run(env, seen, "state", "list", "--force", check=64)
    # Without the database in the config there is no postgres side.
    env.write_config()
    add_cert(env, "web")
    run(env, seen, "apply", check=0)
    r = run(env, seen, "state", "migrate", "--to", "postgres", check=1)
    assert "the postgres side needs state.url and state.encryptionKey" in r.err, r
    # A malformed key is found before anything is copied.
    both_sides(env)
    r = run(env, seen, "state", "migrate", "--to", "postgres", check=1,
            env_vars={"CERTSYNC_STATE_KEY": "bm90LTMyLWJ5dGVz"})
    assert "state.encryptionKey" in r.err, r
    assert header(pg) is None
    # The target's lease is held by a running replica: refused at once, naming it.
    pg.psql(f"UPDATE {SCHEMA}.lease SET holder = 'replica-c:9', host = 'host-c', pid = 9, operation = 'run', "
            "epoch = epoch + 1, acquired_at = now(), renewed_at = now(), expires_at = now() + interval '1 hour'")
    t0 = time.monotonic()
    r = run(env, seen, "state", "migrate", "--to", "postgres", check=1)
    assert time.monotonic() - t0 < 5 and "replica-c:9" in r.err, r
    assert header(pg) is None
    r = run(env, seen, "state", "rekey", check=1)
    assert "file backend" in r.err
    assert_no_secrets(seen, pg)


# ---------- secrets ----------

def test_secrets_appear_in_no_output_even_on_errors_and_debug(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    run(env, seen, "-v", "apply", check=0)
    run(env, seen, "-v", "plan")
    run(env, seen, "-v", "state", "list", check=0)
    run(env, seen, "state", "show", "web", check=0)
    run(env, seen, "validate", "--credentials", check=0)
    run(env, seen, "--log-format", "json", "plan")
    # The server refuses the login, or is not there: the messages name it, never the password.
    bad_pw = pg.url.replace(pg.password, pg.password[::-1])
    r = run(env, seen, "plan", check=1, env_vars={"CERTSYNC_DATABASE_URL": bad_pw})
    assert "postgres" in r.err and "127.0.0.1" in r.err, r
    down = pg.url.replace(f":{pg.server.port}/", ":1/")
    r = run(env, seen, "apply", check=1, env_vars={"CERTSYNC_DATABASE_URL": down})
    assert "127.0.0.1" in r.err, r
    r = run(env, seen, "validate", "--credentials", check=1, env_vars={"CERTSYNC_DATABASE_URL": down})
    # A URL that libpq cannot parse is quoted nowhere either.
    r = run(env, seen, "plan", check=1, env_vars={"CERTSYNC_DATABASE_URL": f"postgresql://certsync:{pg.password}@["})
    # The password through PGPASSWORD instead of the URL.
    no_pw = pg.url.replace(f":{pg.password}@", "@")
    r = run(env, seen, "-v", "plan", check=0, env_vars={"CERTSYNC_DATABASE_URL": no_pw, "PGPASSWORD": pg.password})
    assert_no_secrets(seen, pg, pg.password[::-1])


def test_migrate_force_replaces_a_database_state_with_other_records_and_lineage(env, pg, seen):
    # The database holds an older state of its own (another lineage, a certificate since removed) ...
    pg_env(env, pg)
    add_cert(env, "old")
    run(env, seen, "apply", check=0)
    old_lineage, old_serial = header(pg)
    # ... and the file state is the one to keep.
    env.repo.remove("old.yaml")
    add_cert(env, "web", commit=False)
    add_cert(env, "api")
    env.write_config()
    both_sides(env)
    run(env, seen, "apply", check=0)
    doc = env.state_json()
    assert doc["lineage"] != old_lineage and sorted(doc["certificates"]) == ["api", "web"]
    r = run(env, seen, "state", "migrate", "--to", "postgres", check=1)
    assert f"already holds a state (lineage {old_lineage[:8]}, serial {old_serial}, 1 certificate)" in r.err, r
    assert header(pg) == (old_lineage, old_serial)
    r = run(env, seen, "state", "migrate", "--to", "postgres", "--force", check=0)
    assert "(replacing its state)" in r.out, r
    assert header(pg) == (doc["lineage"], max(doc["serial"], old_serial) + 1)
    assert pg.psql(f"SELECT string_agg(name, ',' ORDER BY name) FROM {SCHEMA}.certs") == "api,web"
    env.config.write_text(env.config.read_text().replace("state:\n", "state:\n  backend: postgres\n"))
    r = run(env, seen, "state", "list", check=0)
    assert [ln.split()[0] for ln in r.out.splitlines()[1:]] == ["api", "web"]
    r = run(env, seen, "plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r
    assert_no_secrets(seen, pg)


def test_saved_plans_on_postgres_apply_once_then_are_stale(env, pg, seen):
    pg_env(env, pg)
    add_cert(env, "web")
    plan = env.dir / "plan.json"
    r = run(env, seen, "plan", "--out", str(plan), check=0)
    assert json.loads(plan.read_text())["state"] is None
    r = run(env, seen, "apply", str(plan), check=0)
    assert "1 done" in r.out, r
    lineage, serial = header(pg)
    r = run(env, seen, "apply", str(plan), check=1)
    assert f"stale plan: it was made with no state, but the state now exists (lineage {lineage[:8]}, serial " \
           f"{serial})" in r.err, r
    add_cert(env, "api")
    run(env, seen, "plan", "--out", str(plan), check=0)
    run(env, seen, "state", "rm", "web", check=0)
    r = run(env, seen, "apply", str(plan), check=1)
    assert f"stale plan: it was made for state lineage {lineage[:8]} serial {serial}, but the state is now " \
           f"lineage {lineage[:8]} serial {serial + 1}" in r.err, r
    assert not env.cert_dir("api").exists()
    assert_no_secrets(seen, pg)
