"""Review of the postgres backend as a user meets it (docs/state.md): what `state migrate --force`
leaves in the replaced key store, and what connection errors look like."""
from test_pg_cli import SCHEMA, Outputs, add_cert, assert_no_secrets, both_sides, pg_env, run, store_entries


def keys_of(pg):
    return pg.psql(f"SELECT string_agg(DISTINCT cert, ',' ORDER BY cert) FROM {SCHEMA}.keys")


def test_migrate_force_to_postgres_removes_the_replaced_states_keys(env, pg):
    seen = Outputs()
    # The database's state has "old" (and its private key, encrypted, in the key store) ...
    pg_env(env, pg)
    add_cert(env, "old")
    run(env, seen, "apply", check=0)
    assert keys_of(pg) == "old"
    # ... the file state, which replaces it, has "web" only.
    env.repo.remove("old.yaml")
    add_cert(env, "web")
    env.write_config()
    both_sides(env)
    run(env, seen, "apply", check=0)
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
    run(env, seen, "apply", check=0)
    assert [k.split("/")[0] for k in store_entries(env.dir / "state" / "keys")] == ["old"]
    # The database's state (web) replaces the file's (old).
    pg_env(env, pg)
    env.repo.remove("old.yaml")
    add_cert(env, "web")
    text = env.config.read_text()
    env.config.write_text(text.replace("  backend: postgres\n", "  backend: postgres\n  path: state/state.json\n"))
    run(env, seen, "apply", check=0)
    r = run(env, seen, "state", "migrate", "--to", "file", "--force", check=0)
    assert "(replacing its state)" in r.out, r
    assert [k.split("/")[0] for k in store_entries(env.dir / "state" / "keys")] == ["web"]
    assert not (env.dir / "state" / "keys" / "store" / "old").exists()
    assert_no_secrets(seen, pg)
