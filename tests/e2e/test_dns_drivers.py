"""DNS drivers end to end: DigiCert's validation.dns through an rfc2136 issuer against a real BIND (the DigiCert
simulator reads the tokens from that BIND), and DNSimple finding its zone through the account's zone list."""
import textwrap

import pytest

from conftest import manifest
from digicert_env import API_KEY, DNS_TOKEN, ZONE, DcSim, dc_ca_dir, dns, web  # noqa: F401

NAMES = ["pizza.company", "www.pizza.company", "shop.pizza.company"]


def shop(issuer="dc"):
    return manifest("shop", NAMES, issuer=issuer, extra="commonName: pizza.company\n")


def digicert_yaml(dc_url, dns_issuer, label):
    return textwrap.dedent(f"""\
        dc:
          type: digicert
          apiKey: {{env: DIGICERT_API_KEY}}
          baseURL: {dc_url}/services/v2
          product: cloud_dv_geotrust
          orderValidity: 1
          skipApproval: true
          validation:
            method: dns-txt-token
            dns: {{issuer: {dns_issuer}, label: {label}}}
          pollInterval: 1s
          timeout: 5s
        """)


@pytest.fixture
def bind(peers):
    return peers.bind([ZONE])


@pytest.fixture
def dc_bind(dc_ca_dir, web, bind):
    s = DcSim(dc_ca_dir, None, web, dns_server=bind.server, zones=[ZONE])
    yield s
    s.stop()


@pytest.fixture
def secrets(monkeypatch, bind):
    monkeypatch.setenv("TSIG_SECRET", bind.secret)
    monkeypatch.setenv("DIGICERT_API_KEY", API_KEY)
    monkeypatch.setenv("DNSIMPLE_TOKEN", DNS_TOKEN)


def first_order(dc):
    """The simulator's view of the first order (names, how each was proven)."""
    orders = dc.orders()
    return dc.ctl(f"orders/{(orders if isinstance(orders, list) else orders['orders'])[0]['id']}")


def no_secret(bind, *texts):
    for t in texts:
        assert bind.secret not in t and API_KEY not in t


def test_digicert_dns_validation_through_rfc2136_on_bind(env, bind, dc_bind, secrets):
    # no zones listed: the rfc2136 driver finds pizza.company by asking BIND for SOA records
    env.write_config(extra_issuers=bind.issuer_yaml() + digicert_yaml(dc_bind.url, "corpdns", "_dnsauth"))
    env.repo.write("shop.yaml", shop())
    env.repo.commit()
    r = env.run("validate", "--online", check=0)
    assert "corpdns" in r.out and "answers with TSIG key certsync-key. (hmac-sha256)" in r.out, r
    r = env.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    order = first_order(dc_bind)
    # the simulator found each token in BIND, over DNS
    assert order["dcv_how"] == {n: f"request_token:exact:_dnsauth.{n}" for n in NAMES}
    log = bind.log()
    for n in NAMES:
        assert f"adding an RR at '_dnsauth.{n}' TXT" in log, log
        assert f"deleting an RR at _dnsauth.{n} TXT" in log, log
        assert bind.txt(f"_dnsauth.{n}") == []  # removed after issuance
    rec = env.state_json()["certificates"]["shop"]
    assert rec["phase"] == "ready" and not rec.get("tokens")
    no_secret(bind, r.out, r.err, env.state.read_text())


def test_a_certificate_naming_an_rfc2136_issuer_is_a_validate_error(env, bind, secrets):
    env.write_config(extra_issuers=bind.issuer_yaml())
    env.repo.write("shop.yaml", shop(issuer="corpdns"))
    env.repo.commit()
    r = env.run("validate", check=1)
    assert ('certificate "shop": issuer corpdns (rfc2136) only places DNS records; it issues no certificates'
            in r.out + r.err), r


def test_rfc2136_with_a_wrong_secret_fails_clearly_and_keeps_nothing(env, bind, dc_bind, monkeypatch):
    monkeypatch.setenv("TSIG_SECRET", "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc0NTY=")
    monkeypatch.setenv("DIGICERT_API_KEY", API_KEY)
    env.write_config(extra_issuers=bind.issuer_yaml() + digicert_yaml(dc_bind.url, "corpdns", "'@'"))
    env.repo.write("shop.yaml", shop())
    env.repo.commit()
    r = env.run("validate", "--online", check=1)
    assert "BADSIG: the secret does not match the nameserver's copy of the key" in r.out + r.err, r
    r = env.run("apply", "--auto-approve", check=1)
    assert "BADSIG" in r.out + r.err, r
    assert dc_bind.ctl("counters").get("order_create", 0) == 0  # nothing bought without a placed token
    assert "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc0NTY=" not in r.out + r.err + env.state.read_text()


def test_dnsimple_without_zones_finds_its_zone_through_the_api(env, dns, web, dc_ca_dir, secrets):
    # the account holds more zones than the one in question (and a longer suffix that does not match)
    dns.ctl("zones", {"names": ["company", "other.pizza", "shop.test"]})
    dc = DcSim(dc_ca_dir, dns, web)
    try:
        env.write_config(extra_issuers=textwrap.dedent(f"""\
            dns:
              type: dnsimple
              account: "1010"
              token: {{env: DNSIMPLE_TOKEN}}
              baseURL: {dns.url}
              timeout: 5s
            """) + digicert_yaml(dc.url, "dns", "_dnsauth"))
        env.repo.write("shop.yaml", shop())
        env.repo.commit()
        r = env.run("apply", "--auto-approve", check=0)
        assert "1 done" in r.out, r
        assert "no configured zone contains" not in r.out + r.err
        order = first_order(dc)
        assert order["dcv_how"] == {n: f"request_token:exact:_dnsauth.{n}" for n in NAMES}
        created = dns.ctl("log?op=createZoneRecord")
        assert {e["path"].split("/")[4] for e in created} == {ZONE}, created  # pizza.company, not "company"
        assert dns.txt() == []
        assert dns.ctl("counters").get("listZones") == 1  # once for the run
    finally:
        dc.stop()


@pytest.mark.parametrize("point", [
    pytest.param(r"TXT record placed at _dnsauth\.www\.pizza\.company", id="after-first-placement"),
    pytest.param(r"running step \(step order\)", id="before-order"),
])
def test_rfc2136_records_are_removed_after_a_crash(env, bind, dc_bind, secrets, point):
    from test_crash_matrix import Apply, converge
    env.write_config(extra_issuers=bind.issuer_yaml() + digicert_yaml(dc_bind.url, "corpdns", "_dnsauth"))
    env.repo.write("shop.yaml", shop())
    env.repo.commit()
    a = Apply(env)
    assert a.kill_on(point), a.text()
    assert any(bind.txt(f"_dnsauth.{n}") for n in NAMES)  # the crash left a placed record behind
    converge(env)
    assert dc_bind.ctl("counters")["order_create"] == 1
    for n in NAMES:
        assert bind.txt(f"_dnsauth.{n}") == [], n  # every record removed, the orphaned one included
