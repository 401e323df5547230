"""Replicas of `certsync run` on one PostgreSQL state (issue 12): one leader by lease calls the providers and
writes the state, the followers install every certificate from the shared state and key store into their own
output roots. Real PostgreSQL (pg_env), the DigiCert and DNSimple simulators, the real binary."""
import collections
import os
import random
import re
import signal
import time
from types import SimpleNamespace

import pytest

from conftest import BIN, cert_names, openssl, pubkey
from digicert_env import API_KEY, DNS_TOKEN, ZONE, dc, dc_ca_dir, dns, web  # noqa: F401
from pg_env import use_postgres
from pg_env import free_port
from test_run import SECRET, Daemon

# Sanitizer builds run several times slower: the propagation bound (2 s) is held on the plain build only.
SLOW = 3.0 if any(k in BIN for k in ("/asan/", "/tsan/", "valgrind")) else 1.0
LEASE = 3.0  # seconds: the shortest state.leaseDuration, so that failovers are quick
BOUND = 2 * LEASE  # the failover bound the issue sets


def issuers(dc_url, dns_url, dns_poll="1s"):
    """DigiCert (validated through the DNSimple zone) and DNSimple's Let's Encrypt purchases, one simulator each."""
    return f"""\
        dns:
          type: dnsimple
          account: "1010"
          token: {{env: DNSIMPLE_TOKEN}}
          baseURL: {dns_url}
          zones: [{ZONE}]
          pollInterval: {dns_poll}
          timeout: 5s
        dc:
          type: digicert
          apiKey: {{env: DIGICERT_API_KEY}}
          baseURL: {dc_url}/services/v2
          product: cloud_dv_geotrust
          orderValidity: 1
          skipApproval: true
          validation:
            method: dns-txt-token
            dns: {{issuer: dns, label: "@"}}
          pollInterval: 1s
          timeout: 5s
        """


def cert_yaml(name, issuer):
    host = f"{name}.{ZONE}"
    return (f"apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n  name: {name}\nspec:\n  issuer: {issuer}\n"
            f"  commonName: {host}\n  dnsNames: [{host}]\n")


class Cluster:
    """Replicas of one config on one database: each with its own output root and HTTP port."""

    def __init__(self, env, db, dc_sim, dns_sim, dns_poll="1s", public_url_of=None):
        self.env, self.db, self.dc, self.dns = env, db, dc_sim, dns_sim
        self.replicas = []
        self.n = 0
        env.write_config(extra_issuers=issuers(dc_sim.url, dns_sim.url, dns_poll))
        use_postgres(env, db, lease=f"{int(LEASE)}s")
        self.base = env.config.read_text().replace("  path: certificates\n",
                                                    "  path: certificates\n  interval: 1s\n", 1).replace(
            "  prune: true\n", "  prune: true\n  maxPaidOrders: 100\n", 1)  # 20 paid certificates in one commit
        self.public_port = public_url_of

    def start(self, port=None):
        """A new replica (r0, r1, ...): its config differs only in the output root and the listen port."""
        i = self.n
        self.n += 1
        port = port or free_port()
        server = f"server:\n  listen: 127.0.0.1:{port}\n  webhookSecret: {{env: CERTSYNC_WEBHOOK_SECRET}}\n"
        if self.public_port:
            server += f"  publicURL: http://127.0.0.1:{self.public_port}/\n"
        cfg = self.env.dir / f"r{i}.yaml"
        # each replica keeps its own local state snapshot (state-pg-*.snap), as a Pod on its own disk would
        cfg.write_text(self.base.replace("  root: certs\n", f"  root: certs-r{i}\n", 1).replace(
            "  interval: 1s\n", f"  interval: 1s\n  cacheDir: cache-r{i}\n", 1) + server)
        ns = SimpleNamespace(config=cfg, dir=self.env.dir, port=port, out=self.env.dir / f"certs-r{i}")
        d = Daemon(ns)
        d.name, d.out = f"r{i}", ns.out
        self.replicas.append(d)
        return d

    def live(self):
        return [d for d in self.replicas if d.proc.poll() is None]

    def leaders(self):
        out = []
        for d in self.live():
            try:
                if d.metric("certsync_leader") == 1:
                    out.append(d)
            except OSError:
                pass
        return out

    def close(self):
        for d in self.replicas:
            if d.proc.poll() is None:
                try:
                    os.kill(d.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                d.proc.kill()
                d.proc.wait()
        for d in self.replicas:
            (self.env.dir / f"{d.name}.log").write_text("".join(d.raw))  # for a failure's post-mortem
            bad = [l for l in d.raw if "Sanitizer" in l or "runtime error:" in l]
            assert not bad, "".join(d.raw)
            for text in d.raw:  # no secret in any replica's log
                assert self.db.password not in text and self.db.key not in text and SECRET not in text
                assert API_KEY not in text and DNS_TOKEN not in text


@pytest.fixture
def provider_env(monkeypatch):
    monkeypatch.setenv("DNSIMPLE_TOKEN", DNS_TOKEN)
    monkeypatch.setenv("DIGICERT_API_KEY", API_KEY)


@pytest.fixture
def cluster(env, pg, dc, dns, provider_env):
    c = Cluster(env, pg, dc, dns)
    yield c
    c.close()


def wait_until(what, fn, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def log_index(d, pattern, start=0):
    for i, m in enumerate(d.messages()[start:]):
        if re.search(pattern, m):
            return start + i
    return None


def installed(d, names):
    """name -> (leaf PEM, key PEM) of what replica d's output root holds, for those of names it has."""
    out = {}
    for n in names:
        crt, key = d.out / n / "tls.crt", d.out / n / "tls.key"
        try:
            out[n] = (crt.read_text(), key.read_text())
        except OSError:
            pass
    return out


def check_replicas_agree(reps, names):
    """Every replica holds every certificate, the same leaf and the same key everywhere, and a valid set."""
    first = installed(reps[0], names)
    assert sorted(first) == sorted(names), (reps[0].name, sorted(set(names) - set(first)))
    for d in reps[1:]:
        got = installed(d, names)
        assert got == first, (d.name, [n for n in names if got.get(n) != first.get(n)])
    for n in names:
        crt, key, ca = (reps[0].out / n / f for f in ("tls.crt", "tls.key", "ca.crt"))
        assert pubkey(crt, False) == pubkey(key, True), n
        assert f"{n}.{ZONE}" in cert_names(crt)
        r = openssl("verify", "-partial_chain", "-CAfile", str(ca), "-untrusted", str(crt), str(crt))
        assert r.returncode == 0, (n, r.stdout + r.stderr)
        for d in reps:
            assert ((d.out / n / "tls.key").stat().st_mode & 0o777) == 0o600


def orders_per_name(dc_sim, dns_sim):
    """How many DigiCert orders and DNSimple purchases each host name got."""
    counts = collections.Counter(o["common_name"] for o in dc_sim.orders())
    for c in dns_sim.ctl("certificates"):
        counts[c["common_name"]] += 1
    return counts


def provider_requests(dc_sim, dns_sim):
    """Every request the simulators answered so far, by simulator and operation (their counters)."""
    out = {f"digicert {k}": v for k, v in dc_sim.ctl("counters").items()}
    out.update({f"dnsimple {k}": v for k, v in dns_sim.ctl("counters").items()})
    return out


def header_serial(db):
    return int(db.psql("SELECT serial FROM certsync.header"))


def add_certs(env, names):
    for n in names:
        env.repo.write(f"{n}.yaml", cert_yaml(n, "dc" if n.startswith("dc") else "dns"))
    return env.repo.commit(f"add {', '.join(names)}")


def wait_all_ready(reps, timeout):
    for d in reps:
        d.wait_ready(timeout=timeout)


# ---------------------------------------------------------------- three replicas, twenty certificates


def test_three_replicas_share_twenty_certificates_bought_once(cluster, env, dc, dns, pg):
    names = [f"dc{i:02d}" for i in range(10)] + [f"le{i:02d}" for i in range(10)]
    add_certs(env, names)
    reps = [cluster.start() for _ in range(3)]
    wait_all_ready(reps, timeout=120)
    check_replicas_agree(reps, names)
    assert dc.count("order_create") == 10
    assert dns.ctl("counters").get("purchaseLetsencryptCertificate", 0) == 10
    assert set(orders_per_name(dc, dns).values()) == {1}
    assert [d.metric("certsync_leader") for d in reps].count(1) == 1
    leader = cluster.leaders()[0]
    for d in reps:
        code, body = d.get("/readyz")
        assert code == 200 and '"role":"%s"' % ("leader" if d is leader else "follower") in body, body
        assert d.metric("certsync_state_lag_seconds") == 0
        # Every replica reports the shared state's certificates.
        assert d.metric("certsync_certificate_ready_status", condition="True") == 20
    # Followers wrote nothing: the serial moved only through the leader, and no follower called a provider.
    for d in reps:
        if d is not leader:
            assert log_index(d, r"reconciling \d+ change") is None, d.name
            assert log_index(d, r"installed certificate [0-9a-f]+ from the shared state") is not None
    # A new certificate reaches every replica within 2 s of the leader installing it.
    mark = len(leader.messages())
    add_certs(env, ["le99"])
    leader.wait_log(r"(create|resume) complete", start=mark, timeout=60)
    t_installed = time.time()
    for d in reps:
        if d is not leader:
            wait_until(f"{d.name} installs le99", lambda d=d: (d.out / "le99" / "tls.crt").exists(), timeout=10)
    assert time.time() - t_installed < 2.0 * SLOW + 0.5  # the leader's log line is read up to a poll late
    check_replicas_agree(reps, names + ["le99"])


# ---------------------------------------------------------------- failover


def test_leader_killed_ten_times_during_issuance_fails_over_in_bound_without_buying_twice(cluster, env, dc, dns):
    rnd = random.Random(1201)
    reps = [cluster.start() for _ in range(3)]
    wait_until("a leader", lambda: len(cluster.leaders()) == 1, timeout=30)
    names, failovers = [], []
    for round_ in range(10):
        batch = [f"dc{round_:02d}", f"le{round_:02d}"]
        names += batch
        add_certs(env, batch)
        leader = wait_until("one leader", lambda: (lambda l: l[0] if len(l) == 1 else None)(cluster.leaders()),
                            timeout=BOUND + 5)
        # A random moment of the leader's work on the new commit: fetching, ordering, polling or installing.
        time.sleep(rnd.uniform(0.0, 2.0))
        marks = {d: len(d.messages()) for d in cluster.live() if d is not leader}
        leader.proc.kill()
        t_kill = time.time()
        leader.proc.wait()
        new = wait_until("a new leader", lambda: next(
            (d for d, m in marks.items() if log_index(d, r"took the state's lease", m) is not None), None),
            timeout=BOUND + 2)
        failovers.append(time.time() - t_kill)
        assert new is not leader
        cluster.start()  # the Deployment replaces the killed Pod
    live = cluster.live()
    assert len(live) == 3
    wait_all_ready(live, timeout=120)
    check_replicas_agree(live, names)
    per_name = orders_per_name(dc, dns)
    assert sorted(per_name) == sorted(f"{n}.{ZONE}" for n in names)
    assert set(per_name.values()) == {1}, per_name  # zero duplicate orders or purchases
    assert dc.count("order_create") == 10
    assert dns.ctl("counters").get("purchaseLetsencryptCertificate", 0) == 10
    assert max(failovers) < BOUND, failovers
    assert len(cluster.leaders()) == 1


def test_a_stopped_leader_resumed_after_its_lease_expired_neither_calls_nor_writes(cluster, env, dc, dns, pg):
    dns.ctl("issue_delay", {"seconds": 2.0})  # the leader has work in progress when it is stopped
    a = cluster.start()
    a.wait_log(r"took the state's lease", timeout=30)
    b = cluster.start()
    b.wait_log(r"following the leader", timeout=30)
    names = ["dc00", "dc01", "le00", "le01"]
    add_certs(env, names)
    a.wait_log(r"waiting for the provider", timeout=30)
    os.kill(a.proc.pid, signal.SIGSTOP)
    t_stop = time.time()
    b.wait_log(r"took the state's lease", timeout=BOUND + 2)
    assert time.time() - t_stop < BOUND + 1
    b.wait_ready(timeout=60)
    before_calls, before_serial = provider_requests(dc, dns), header_serial(pg)
    mark = len(a.messages())
    time.sleep(max(0.0, t_stop + LEASE + 0.5 - time.time()))  # well past its lease (already, as b leads)
    os.kill(a.proc.pid, signal.SIGCONT)
    a.wait_log(r"lease lapsed|write was refused", start=mark, timeout=10)
    a.wait_ready(timeout=30)  # a follower now, with b's certificates in its own outputs
    check_replicas_agree([a, b], names)
    assert provider_requests(dc, dns) == before_calls  # a made no provider call after it resumed
    assert header_serial(pg) == before_serial  # and no write
    assert a.metric("certsync_leader") == 0 and b.metric("certsync_leader") == 1
    assert log_index(a, r"reconciling \d+ change", mark) is None, a.messages()[mark:]
    assert set(orders_per_name(dc, dns).values()) == {1}


# ---------------------------------------------------------------- the database restarted


@pytest.fixture
def own_cluster(env, pg_own, dc, dns, provider_env):
    c = Cluster(env, pg_own, dc, dns)
    yield c
    c.close()


def test_database_restarted_mid_apply_reconnects_and_converges(own_cluster, env, dc, dns, pg_own):
    cluster = own_cluster
    dns.ctl("issue_delay", {"seconds": 1.0})
    reps = [cluster.start(), cluster.start()]
    wait_until("a leader", lambda: len(cluster.leaders()) == 1, timeout=30)
    leader = cluster.leaders()[0]
    names = [f"dc{i:02d}" for i in range(3)] + [f"le{i:02d}" for i in range(3)]
    add_certs(env, names)
    leader.wait_log(r"reconciling \d+ change", start=0, timeout=30)
    pg_own.server.restart()
    wait_all_ready(reps, timeout=120)
    check_replicas_agree(reps, names)
    assert set(orders_per_name(dc, dns).values()) == {1}
    assert sorted(orders_per_name(dc, dns)) == sorted(f"{n}.{ZONE}" for n in names)
    assert len(cluster.leaders()) == 1


# ---------------------------------------------------------------- webhooks on a follower


def test_a_follower_forwards_a_provider_webhook_to_the_leader(env, pg, dc, dns, provider_env):
    port_b = free_port()
    # The webhook URL every replica registers points at b (as a Service would pick any Pod); polling is rare,
    # so only the webhook, forwarded by b, can finish the issuance in time.
    cluster = Cluster(env, pg, dc, dns, dns_poll="10m", public_url_of=port_b)
    try:
        dns.ctl("issue_delay", {"seconds": 1.0})
        a = cluster.start()
        a.wait_log(r"took the state's lease", timeout=30)
        b = cluster.start(port=port_b)
        b.wait_log(r"following the leader", timeout=30)
        hooks = dns.ctl("webhook_deliveries")
        add_certs(env, ["le00"])
        a.wait_log(r"waiting for the provider", timeout=30)
        b.wait_log(r"webhook certificate\.issue: forwarded to the leader", timeout=30)
        a.wait_log(r"a follower received a webhook for it: reconciling now", timeout=10)
        a.wait_log(r"resume complete", timeout=30)
        wait_all_ready([a, b], timeout=30)
        check_replicas_agree([a, b], ["le00"])
        assert len(dns.ctl("webhook_deliveries")) > len(hooks)
        assert b.metric("certsync_webhook_events_total", provider="dnsimple", event="certificate.issue",
                        outcome="accepted") == 1
        assert dns.ctl("counters").get("purchaseLetsencryptCertificate", 0) == 1
    finally:
        cluster.close()
