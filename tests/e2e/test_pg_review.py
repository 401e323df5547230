"""Review of the postgres backend as a user meets it (docs/state.md): what `state migrate --force`
leaves in the replaced key store, and what connection errors look like."""
import time

from conftest import manifest
from digicert_env import API_KEY, AUTH_KEY, DNS_TOKEN, dc, dc_ca_dir, denv, dns, web  # noqa: F401
from pg_env import use_postgres
from test_pg_cli import SCHEMA, Outputs, add_cert, assert_no_secrets, both_sides, pg_env, run, store_entries


def keys_of(pg):
    return pg.psql(f"SELECT string_agg(DISTINCT cert, ',' ORDER BY cert) FROM {SCHEMA}.keys")


def test_migrate_force_to_postgres_removes_the_replaced_states_keys(env, pg):
    seen = Outputs()
    # The database's state has "old" (and its private key, encrypted, in the key store) ...
    pg_env(env, pg)
    add_cert(env, "old")
    run(env, seen, "apply", "--auto-approve", check=0)
    assert keys_of(pg) == "old"
    # ... the file state, which replaces it, has "web" only.
    env.repo.remove("old.yaml")
    add_cert(env, "web")
    env.write_config()
    both_sides(env)
    run(env, seen, "apply", "--auto-approve", check=0)
    r = run(env, seen, "state", "migrate", "--to", "postgres", "--force", check=0)
    assert "(replacing its state)" in r.out, r
    assert "1 key store certificate or pending slot of the replaced state removed from the target" in r.out, r
    # The replaced state's key does not linger in the database where nothing would ever remove it.
    assert keys_of(pg) == "web"
    assert_no_secrets(seen, pg)


def test_migrate_force_to_file_removes_the_replaced_states_keys(env, pg):
    seen = Outputs()
    env.write_config()
    add_cert(env, "old")
    run(env, seen, "apply", "--auto-approve", check=0)
    assert [k.split("/")[0] for k in store_entries(env.dir / "state" / "keys")] == ["old"]
    # The database's state (web) replaces the file's (old).
    pg_env(env, pg)
    env.repo.remove("old.yaml")
    add_cert(env, "web")
    text = env.config.read_text()
    env.config.write_text(text.replace("  backend: postgres\n", "  backend: postgres\n  path: state/state.json\n"))
    run(env, seen, "apply", "--auto-approve", check=0)
    r = run(env, seen, "state", "migrate", "--to", "file", "--force", check=0)
    assert "(replacing its state)" in r.out, r
    assert [k.split("/")[0] for k in store_entries(env.dir / "state" / "keys")] == ["web"]
    assert not (env.dir / "state" / "keys" / "store" / "old").exists()
    assert_no_secrets(seen, pg)


def test_the_database_stopped_while_digicert_orders_are_in_flight_orders_nothing_twice(denv, dc, pg_own):
    """docs/state.md, failure modes: the step in progress fails, nothing is bought twice once the database is back."""
    seen = Outputs()
    use_postgres(denv, pg_own, schema=SCHEMA, lease="3s")
    for n in ("a", "b"):
        denv.repo.write(f"{n}.yaml", manifest(n, [f"{n}.pizza.company"], issuer="dc",
                                              extra=f"commonName: {n}.pizza.company\n"))
    denv.repo.commit("two paid certificates")
    # DigiCert takes its time to answer the orders; the database goes away meanwhile.
    dc.ctl("fault", {"endpoint": "order_create", "mode": "delay", "seconds": 3, "count": 2})
    proc = denv.popen("apply", "--auto-approve")
    deadline = time.monotonic() + 30
    while dc.count("order_create") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pg_own.server.stop()
    out, err = proc.communicate(timeout=60)
    seen.texts += [out, err]
    assert proc.returncode == 1, err
    assert "cannot connect" in err or "connection lost" in err, err
    assert "FATAL" not in err and "could not connect" not in err.lower().replace("cannot connect", ""), err
    assert dc.count("order_create") == 2
    # Back: the next apply (once the ended apply's lease ran out) adopts both orders instead of ordering again.
    pg_own.server.start()
    deadline = time.monotonic() + 30
    while True:
        r = run(denv, seen, "apply", "--auto-approve")
        if r.code == 0 or time.monotonic() > deadline:
            break
        assert "is locked by apply" in r.err, r
        time.sleep(0.5)
    assert r.code == 0, r
    assert dc.count("order_create") == 2, dc.ctl("counters")
    assert "adopting DigiCert order" in r.err, r
    r = run(denv, seen, "plan", "--detailed-exitcode", check=0)
    assert "No changes" in r.out, r
    assert_no_secrets(seen, pg_own, API_KEY, AUTH_KEY, DNS_TOKEN)
