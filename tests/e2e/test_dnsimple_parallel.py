"""DNSimple purchases run in parallel (issue 16): one list per run, purchases for different names at the same
time, and still never two purchases for the same names, even when one purchase's outcome is unknown."""
import pytest

from conftest import manifest
from dnsimple_env import sim, with_dnsimple  # noqa: F401 (sim is a fixture)


@pytest.fixture
def denv(env, sim):
    yield from with_dnsimple(env, sim)


def write(env, certs):
    for name, names in certs.items():
        env.repo.write(f"{name}.yaml", manifest(name, names, issuer="dns"))
    env.repo.commit()


def purchases(sim):
    return [e for e in sim.ctl("log") if e["op"] == "purchaseLetsencryptCertificate"]


def test_purchases_for_different_names_overlap_on_one_list(denv, sim):
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "delay", "count": -1, "seconds": 1.0})
    write(denv, {f"c{i}": [f"c{i}.pizza.company"] for i in range(4)})
    r = denv.run("apply", "--auto-approve", "--parallelism", "4", "--wait", "60s")
    assert r.code == 0, r
    bought = sorted(e["time"] for e in purchases(sim))
    assert len(bought) == 4, bought
    # Held 1 s each: one after the other they would start a second apart; in parallel, within one.
    assert bought[-1] - bought[0] < 0.9, bought
    assert sim.count("listCertificates") == 1


def test_same_names_twice_in_one_apply_are_bought_once(denv, sim):
    write(denv, {"shop": ["shop.pizza.company"], "shop-copy": ["shop.pizza.company"]})
    r = denv.run("apply", "--auto-approve", "--parallelism", "4", "--wait", "60s")
    assert r.code == 0, r
    assert len(purchases(sim)) == 1, r
    assert "adopting DNSimple certificate" in r.err, r
    for name in ("shop", "shop-copy"):
        assert (denv.cert_dir(name) / "tls.crt").exists()


def test_a_purchase_of_unknown_outcome_makes_the_next_look_list_again(denv, sim):
    """The first purchase lands but is answered 500: the copy's look lists again and adopts it."""
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "500_after", "count": 1})
    write(denv, {"shop": ["shop.pizza.company"], "shop-copy": ["shop.pizza.company"]})
    r = denv.run("apply", "--auto-approve", "--parallelism", "4", "--wait", "60s")
    assert len(purchases(sim)) == 1, r
    assert sim.count("listCertificates") >= 2, r
    assert "adopting DNSimple certificate" in r.err, r
