"""The crash-and-fault matrix: certsync pays once, whatever happens.

Every case ends with the same checks: one purchase/order per certificate
(the simulators' own records), no validation token left in the zone or the
webroot, a state that plans "No changes", and the outputs installed.

- SIGKILL at every logged step of the DNSimple and DigiCert flows: apply runs
  with -v and is killed the moment a given log line appears (never after a
  sleep); a second apply must converge.
- Lost replies on paid requests (the provider bought, the answer was a 500)
  with several certificates of one domain and parallelism > 1.
- The in-flight window: the provider records a paid request only after a
  delay; apply is killed 0.5 s after sending it and the rerun starts at once.

A sample of the kill points runs by default; CERTSYNC_TEST_LONG=1 (make
test-long) runs all of them.
"""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import manifest
from digicert_env import API_KEY, DNS_TOKEN, dc, dc_ca_dir, dns, issuer_yaml, web  # noqa: F401
from test_digicert import check_digicert_outputs
from dnsimple_env import TOKEN, Sim, sim, with_dnsimple  # noqa: F401 (sim is a fixture)
from test_dnsimple import check_dnsimple_outputs

LONG = os.environ.get("CERTSYNC_TEST_LONG") == "1"


def sample(points, default):
    """All kill points under CERTSYNC_TEST_LONG=1, else the default sample."""
    chosen = points if LONG else [p for p in points if p[0] in default]
    return [pytest.param(*p, id=p[0]) for p in chosen]


class Apply:
    """An apply whose stderr is read line by line, to be killed when a line matches."""

    def __init__(self, env, *args):
        self.proc = env.popen("apply", "--auto-approve", "-v", *args)
        self.lines = []
        self.matched = threading.Event()
        self.rx = None
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            if self.rx and not self.matched.is_set() and self.rx.search(line):
                self.proc.send_signal(signal.SIGKILL)  # from the reader: no delay between the line and the kill
                self.matched.set()
        self.done.set()

    def kill_on(self, pattern, timeout=60):
        """SIGKILLs apply when a stderr line matches; True if it did (False: apply ended first)."""
        self.rx = re.compile(pattern)
        for line in list(self.lines):
            if self.rx.search(line) and not self.matched.is_set():
                self.proc.send_signal(signal.SIGKILL)
                self.matched.set()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.done.wait(10)
        return self.matched.is_set()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.done.wait(10)

    def text(self):
        return "".join(self.lines)


def wait_for(pred, what, timeout=60):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def converge(env, *extra, settled=True):
    """apply until done; settled: the plan then has nothing to do."""
    r = env.run("apply", "--auto-approve", "--wait", "90s", "-v", *extra, timeout=300)
    assert r.code == 0, r
    r2 = env.run("plan", "--detailed-exitcode")
    assert r2.code in (0, 2), r2  # the state reads back
    assert not settled or (r2.code == 0 and "No changes" in r2.out), r2
    st = env.state_json()
    for name, rec in st["certificates"].items():
        assert rec["phase"] == "ready" and not rec.get("step"), (name, rec)
        assert not rec.get("tokens"), (name, rec)
    return r


# ---------------------------------------------------------------- DNSimple

DNS_CERTS = {
    "shop": ("www.pizza.company", ["www.pizza.company", "pizza.company", "shop.pizza.company"]),
    "api": ("api.pizza.company", ["api.pizza.company", "api2.pizza.company"]),
    "mail": ("mail.pizza.company", ["mail.pizza.company"]),
}


@pytest.fixture
def dsenv(env, sim):
    yield from with_dnsimple(env, sim, timeout="2s")


def dns_manifests(env, names):
    for n in names:
        cn, dns = DNS_CERTS[n]
        env.repo.write(f"{n}.yaml", manifest(n, dns, issuer="dns", extra=f"commonName: {cn}\n"))
    env.repo.commit()


def check_dnsimple_paid_once(env, sim, names, requests=None):
    certs = [c for c in sim.ctl("certificates") if c["state"] not in ("cancelled", "failed", "refunded")]
    for n in names:
        cn, dns = DNS_CERTS[n]
        mine = [c for c in certs if c["common_name"] == cn]
        assert len(mine) == 1, (n, mine)
        check_dnsimple_outputs(env.cert_dir(n), dns)
    assert len(certs) == len(names), certs
    assert sim.count("purchaseLetsencryptCertificate") == (len(names) if requests is None else requests)


DNS_POINTS = [
    ("find", r"\[shop\] running step \(step find\)"),
    ("purchase", r"\[shop\] running step \(step purchase\)"),
    ("purchase-sent", r"\[shop\] purchasing a DNSimple certificate"),
    ("purchased", r"\[shop\] purchased DNSimple certificate"),
    ("issue", r"\[shop\] running step \(step issue\)"),
    ("await", r"\[shop\] running step \(step await\)"),
    ("download", r"\[shop\] running step \(step download\)"),
    ("install", r"\[shop\] running step \(step install\)"),
    ("complete", r"\[shop\] create complete"),
]


@pytest.mark.parametrize("point,pattern", sample(DNS_POINTS, {"purchase-sent", "install"}))
def test_dnsimple_sigkill_at_every_step(dsenv, sim, point, pattern):
    dns_manifests(dsenv, ["shop", "api"])
    a = Apply(dsenv, "--wait", "60s", "--parallelism", "2")
    assert a.kill_on(pattern), a.text()
    converge(dsenv)
    check_dnsimple_paid_once(dsenv, sim, ["shop", "api"])


DNS_RENEW_POINTS = [
    ("renew-purchase", r"\[shop\] running step \(step renew-purchase\)"),
    ("renew-sent", r"\[shop\] purchasing a DNSimple renewal"),
    ("renew-purchased", r"\[shop\] purchased DNSimple renewal"),
    ("renew-issue", r"\[shop\] running step \(step renew-issue\)"),
    ("renew-await", r"\[shop\] running step \(step await\)"),
    ("renew-download", r"\[shop\] running step \(step download\)"),
    ("renew-install", r"\[shop\] running step \(step install\)"),
]


@pytest.mark.parametrize("point,pattern", sample(DNS_RENEW_POINTS, {"renew-issue"}))
def test_dnsimple_sigkill_during_a_renewal(dsenv, sim, point, pattern):
    dns_manifests(dsenv, ["shop"])
    converge(dsenv)
    first = dsenv.state_json()["certificates"]["shop"]["ids"]["dnsimple.certificate_id"]
    cn, dns = DNS_CERTS["shop"]
    dsenv.repo.write("shop.yaml", manifest("shop", dns, issuer="dns", extra=f"commonName: {cn}\nrenewBefore: 2200h\n"))
    dsenv.repo.commit()
    a = Apply(dsenv, "--wait", "60s")
    assert a.kill_on(pattern), a.text()
    converge(dsenv, settled=False)  # renewBefore 2200h > the 90-day lifetime: always due again
    paid = sim.count("purchaseLetsencryptCertificate") + sim.count("purchaseRenewalLetsencryptCertificate")
    assert paid == 2, sim.ctl("counters")  # the first purchase and one renewal (or its recovery's purchase)
    assert dsenv.state_json()["certificates"]["shop"]["ids"]["dnsimple.certificate_id"] != first
    check_dnsimple_outputs(dsenv.cert_dir("shop"), dns)


def test_dnsimple_killed_after_the_renewal_issue_follows_it(dsenv, sim):
    """Killed after the renewal's issue was sent; it landed: the rerun's issue gets a 400 and follows the certificate."""
    dns_manifests(dsenv, ["shop"])
    converge(dsenv)
    cn, dns = DNS_CERTS["shop"]
    dsenv.repo.write("shop.yaml", manifest("shop", dns, issuer="dns", extra=f"commonName: {cn}\nrenewBefore: 2200h\n"))
    dsenv.repo.commit()
    sim.ctl("fault", {"endpoint": "issueRenewalLetsencryptCertificate", "mode": "delay", "count": 1, "seconds": 1})
    a = Apply(dsenv, "--wait", "60s")
    wait_for(lambda: sim.count("issueRenewalLetsencryptCertificate") >= 1, "the renewal's issue sent")
    a.kill()
    wait_for(lambda: all(c["state"] != "new" for c in sim.ctl("certificates")), "the renewal's issue landed")
    r = dsenv.run("apply", "--auto-approve", "--wait", "60s", "-v")
    assert r.code == 0 and "1 done" in r.out, r
    assert sim.count("purchaseRenewalLetsencryptCertificate") == 1
    assert sim.count("purchaseLetsencryptCertificate") == 1
    check_dnsimple_outputs(dsenv.cert_dir("shop"), dns)


@pytest.mark.parametrize("mode", ["500_after", "hang_after"] if LONG else ["500_after"])
@pytest.mark.parametrize("rnd", range(4 if LONG else 1))
def test_dnsimple_lost_replies_on_one_domain_in_parallel(dsenv, sim, mode, rnd):
    """Every purchase is bought but answered 500 (or never): the rerun adopts, for every name, in parallel."""
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": mode, "count": -1, "seconds": 3})
    dns_manifests(dsenv, ["shop", "api", "mail"])
    r = dsenv.run("apply", "--auto-approve", "--parallelism", "4", timeout=120)
    assert r.code == 1 and sim.count("purchaseLetsencryptCertificate") == 3, r
    # The fault stays armed: a second purchase would be bought too, and counted.
    r = converge(dsenv, "--parallelism", "4")
    assert r.err.count("adopting DNSimple certificate") == 3, r
    assert "((null))" not in r.err
    check_dnsimple_paid_once(dsenv, sim, ["shop", "api", "mail"])


def test_dnsimple_in_flight_purchase_is_never_bought_twice(dsenv, sim):
    """DNSimple records each purchase 1.5 s late; apply dies 0.5 s after sending; the rerun starts at once.

    (One domain's purchases are sent one after the other, so the kill finds one in flight.)
    """
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "delay", "count": -1, "seconds": 1.5})
    dns_manifests(dsenv, ["shop", "api"])
    a = Apply(dsenv, "--parallelism", "2")
    wait_for(lambda: sim.count("purchaseLetsencryptCertificate") >= 1, "a purchase sent")
    time.sleep(0.5)  # the scenario's own timing: the kill lands inside the in-flight window
    a.kill()
    assert not sim.ctl("certificates")  # nothing recorded yet: a look now would find nothing
    r = converge(dsenv, "--parallelism", "2")
    check_dnsimple_paid_once(dsenv, sim, ["shop", "api"])
    assert "may still reach the provider" in r.err, r


def test_dnsimple_purchase_that_never_arrived_is_sent_after_two_looks(dsenv, sim):
    """A purchase refused before DNSimple saw it (a 500 from the front): bought once, after two empty looks."""
    sim.ctl("fault", {"endpoint": "purchaseLetsencryptCertificate", "mode": "500_html", "count": 1})
    dns_manifests(dsenv, ["shop"])
    assert dsenv.run("apply", "--auto-approve").code == 1
    r = converge(dsenv)
    assert "looking once more" in r.err and "never reached DNSimple" in r.err, r
    lists = [e for e in sim.ctl("log") if e["op"] == "listCertificates"]
    assert len(lists) >= 2
    check_dnsimple_paid_once(dsenv, sim, ["shop"], requests=2)  # the refused request and the real one


# ---------------------------------------------------------------- DigiCert


DC_CERTS = {
    "alpha": ["alpha.pizza.company", "beta.pizza.company"],
    "gamma": ["gamma.pizza.company"],
}


@pytest.fixture
def dcenv(env, dc, dns, web):
    env.write_config(extra_issuers=issuer_yaml(dc.url, dns.url).replace("timeout: 5s", "timeout: 2s"))
    os.environ["DNSIMPLE_TOKEN"] = DNS_TOKEN
    os.environ["DIGICERT_API_KEY"] = API_KEY
    yield env
    os.environ.pop("DNSIMPLE_TOKEN", None)
    os.environ.pop("DIGICERT_API_KEY", None)


def dc_manifests(env, names, extra=""):
    for n in names:
        env.repo.write(f"{n}.yaml", manifest(n, DC_CERTS[n], issuer="dc", extra=extra))
    env.repo.commit()


def check_digicert_paid_once(env, dc, dns, web, names):
    orders = dc.orders()
    for n in names:
        mine = [o for o in orders if sorted(o["names"]) == sorted(DC_CERTS[n])]
        assert len(mine) == 1, (n, orders)
        check_digicert_outputs(env.cert_dir(n), DC_CERTS[n])
    assert len(orders) == len(names), orders
    assert dns.txt() == []  # no request token left in the zone
    fa = web.fileauth()
    assert not fa.exists() or not fa.read_text().strip()


DC_POINTS = [
    ("prepare", r"\[alpha\] running step \(step prepare\)"),
    ("place", r"\[alpha\] running step \(step place\)"),
    ("placing-token", r"\[alpha\] placing the request token"),
    ("placed", r"\[alpha\] placed the DigiCert request token"),
    ("order", r"\[alpha\] running step \(step order\)"),
    ("order-sent", r"\[alpha\] ordering a DigiCert certificate"),
    ("ordered", r"\[alpha\] DigiCert order \d+"),
    ("install", r"\[alpha\] running step \(step install\)"),
    ("published", r"\[alpha\] published certificate"),  # outputs and key store written, record not yet
    ("cleanup", r"\[alpha\] running step \(step cleanup\)"),
    ("complete", r"\[alpha\] create complete"),
]


@pytest.mark.parametrize("point,pattern", sample(DC_POINTS, {"placing-token", "order-sent", "published", "cleanup"}))
def test_digicert_sigkill_at_every_step(dcenv, dc, dns, web, point, pattern):
    dc_manifests(dcenv, ["alpha", "gamma"])
    a = Apply(dcenv, "--wait", "60s", "--parallelism", "2")
    assert a.kill_on(pattern), a.text()
    converge(dcenv)
    check_digicert_paid_once(dcenv, dc, dns, web, ["alpha", "gamma"])


@pytest.mark.parametrize("mode", ["500_after", "hang_after"] if LONG else ["500_after"])
def test_digicert_lost_replies_in_parallel(dcenv, dc, dns, web, mode):
    dc.ctl("fault", {"endpoint": "order_create", "mode": mode, "count": -1, "seconds": 3})
    dc_manifests(dcenv, ["alpha", "gamma"])
    r = dcenv.run("apply", "--auto-approve", "--parallelism", "2", timeout=120)
    assert r.code == 1 and len(dc.orders()) == 2, r
    r = converge(dcenv, "--parallelism", "2")
    assert r.err.count("adopting DigiCert order") == 2, r
    check_digicert_paid_once(dcenv, dc, dns, web, ["alpha", "gamma"])


def test_digicert_in_flight_order_is_never_ordered_twice(dcenv, dc, dns, web):
    """DigiCert records each order 1.5 s late; apply dies 0.5 s after sending; the rerun starts at once."""
    dc.ctl("fault", {"endpoint": "order_create", "mode": "delay", "count": -1, "seconds": 1.5})
    dc_manifests(dcenv, ["alpha", "gamma"])
    a = Apply(dcenv, "--parallelism", "2")
    wait_for(lambda: dc.count("order_create") >= 2, "both orders sent")
    time.sleep(0.5)  # the scenario's own timing: the kill lands inside the in-flight window
    a.kill()
    assert not dc.orders()
    r = converge(dcenv, "--parallelism", "2")
    check_digicert_paid_once(dcenv, dc, dns, web, ["alpha", "gamma"])
    assert "may still reach the provider" in r.err, r


def test_digicert_http_token_kill_while_placing_leaves_no_line(dcenv, dc, dns, web):
    dc_manifests(dcenv, ["alpha"], extra="validation: {method: http-token}\n")
    a = Apply(dcenv, "--wait", "60s")
    assert a.kill_on(r"\[alpha\] placing the request token"), a.text()
    converge(dcenv)
    check_digicert_paid_once(dcenv, dc, dns, web, ["alpha"])
