"""SIGKILL during ACME issuance against the real Pebble: every certificate is issued exactly once.

certsync journals the order URL as soon as newOrder answers and finalize
before it is sent (docs/acme.md, "Steps and crash safety"); an order whose
answer was lost is found again in the account's orders list (Pebble has
one). So whatever the kill point, a rerun converges with, per certificate:
one order, one finalize, one issued certificate (Pebble's own log), outputs
that verify against Pebble's root, and no challenge file or TXT record left.

The kills happen on events, never after a sleep: a line of `apply -v`
(killed from the reader thread), Pebble's VA fetching an http-01 answer
from the web root (killed inside the request, before it is answered), a
line appearing in Pebble's or BIND's log, or a temporary file created in
the web root (inotify). A sample of the log-line kill points runs by
default; CERTSYNC_TEST_LONG=1 (make test-long) runs all of them, and
CERTSYNC_TEST_SEED=N replays one run of the random test.

Pebble runs with PEBBLE_VA_NOSLEEP=1 and PEBBLE_WFE_NONCEREJECT=0 here, so
that every POST in its log is a real request (a badNonce retry would be
logged too); test_acme_conformance leaves the 5 % badNonce on.
"""
import json
import os
import random
import re
import signal
import threading

import pytest

from acme_env import DirWatch, Http01, KillableApply, challenge_files, verify_acme_outputs
from conftest import manifest

CRASH = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


def converge(env, *extra):
    """apply until done; the plan then has nothing to do and no record holds a step or a token."""
    r = env.run("apply", "--wait", "90s", "-v", *extra, timeout=300)
    assert r.code == 0, r
    r2 = env.run("plan", "--detailed-exitcode")
    assert r2.code == 0 and "No changes" in r2.out, r2
    for name, rec in env.state_json()["certificates"].items():
        assert rec["phase"] == "ready" and not rec.get("step"), (name, rec)
        assert not rec.get("tokens"), (name, rec)
    return r


def write_certs(env, certs):
    for name, names in certs.items():
        env.repo.write(f"{name}.yaml", manifest(name, [f'"{n}"' for n in names], issuer="le"))
    env.repo.commit()


def answer_files(webroot):
    """challenge_files without the temporary files of an interrupted atomic write (their own test below)."""
    return [f for f in challenge_files(webroot) if not TMP.search(f)]


TMP = re.compile(r"\.tmp\.\d+\.\d+$")  # fsutil_write_atomic's "<path>.tmp.<pid>.<n>"


def issued_once(env, pebble, certs, in_flight=0):
    """One order, one finalize, one certificate per manifest; the installed ones are those Pebble issued.

    in_flight: newOrder/finalize requests the kill may have cut while Pebble had them (Pebble logs a request
    as it starts; if it is still handling it when the rerun looks, the rerun finds no order in the account's
    list, or an order still "ready", and rightly orders or finalizes again; only one is ever finalized).
    Elsewhere a second order or finalize POST means the rerun lost track of what the CA already had."""
    log = pebble.log()
    issued = pebble.issued()
    assert len(issued) == len(certs) and len(set(issued)) == len(issued), issued
    assert pebble.finalizations() == len(certs), log
    posts = len(re.findall(r"POST /finalize-order/ ", log))
    assert len(certs) <= posts <= len(certs) + in_flight, f"{posts} finalize requests: one was sent twice"
    orders = pebble.orders_created()
    assert len(certs) <= orders <= len(certs) + in_flight, f"{orders} orders: a second one while the first could finish"
    serials = {verify_acme_outputs(env.cert_dir(n), names, pebble.roots).lstrip("0") for n, names in certs.items()}
    assert serials == {s.lstrip("0") for s in issued}


class LogWatch:
    """Calls fire() the moment the count-th line matching rx (since now) appears in a peer's log file (polled
    every 2 ms)."""

    def __init__(self, path, rx, fire, count=1):
        self.path, self.rx, self.fire, self.count = path, re.compile(rx), fire, count
        self.start = len(path.read_text(errors="replace")) if path.exists() else 0
        self.stop = threading.Event()
        self.hit = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            text = self.path.read_text(errors="replace")[self.start:] if self.path.exists() else ""
            if len(self.rx.findall(text)) >= self.count:
                self.fire()
                self.hit.set()
                return
            self.stop.wait(0.002)

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def web(env, peers, tmp_path):
    h = Http01(peers, tmp_path / "webroot", env=CRASH)
    env.write_config(extra_issuers=h.issuer_yaml())
    return h


# ---------------------------------------------------------------- random kills over twenty issuances


def test_sigkill_at_random_points_of_twenty_issuances(env, web):
    seed = int(os.environ.get("CERTSYNC_TEST_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    print(f"CERTSYNC_TEST_SEED={seed}")  # shown with a failure: replays this run
    certs = {f"r{i:02d}": [f"r{i:02d}.peers.test"] + ([f"alt{i:02d}.peers.test"] if i % 3 == 0 else [])
             for i in range(20)}
    write_certs(env, certs)
    kills, history = 0, []
    for _ in range(8):
        a = KillableApply(env, "--wait", "60s", "--parallelism", "4")
        if rng.random() < 0.5:
            n = rng.randint(1, 150)  # the n-th line of apply -v
            history.append(f"line {n}")
            a.kill_when(lambda line, i, n=n: i >= n)
        else:
            k = len(web.challenge_gets()) + rng.randint(1, 20)  # inside the k-th answer the VA fetches
            history.append(f"get {k}")
            web.server.on_get = lambda path, k=k, a=a: len(web.challenge_gets()) >= k and a.kill()
        killed = a.finish()
        web.server.on_get = None
        if not killed:
            assert a.proc.returncode == 0, f"seed {seed} {history}\n{a.text()}"
            break
        kills += 1
    assert kills >= 2, f"seed {seed}: apply ended before the kills ({history})"
    converge(env, "--parallelism", "4")
    issued_once(env, web.pebble, certs, in_flight=4 * kills)  # parallelism 4: as many in flight
    assert answer_files(web.webroot) == [], f"seed {seed} {history}"


# ---------------------------------------------------------------- deterministic kill points

LOG_POINTS = [
    ("before-order", r"\[c0\] running step \(step order\)"),
    ("ordered", r"\[c0\] ACME order \S+ is "),  # the order URL journaled
    ("authorize", r"\[c0\] running step \(step authorize\)"),
    ("placing", r"\[c0\] placing the http-01 answer"),  # the token journaled, not placed yet
    ("validate-asked", r"\[c0\] asked the CA to validate"),
    ("finalize", r"\[c0\] running step \(step finalize\)"),
    ("finalize-sent", r"\[c0\] finalizing ACME order"),  # finalize journaled, being sent
    ("download", r"\[c0\] running step \(step download\)"),
    ("install", r"\[c0\] running step \(step install\)"),
    ("published", r"\[c0\] published certificate"),  # outputs and key store written, the record not yet
    ("cleanup", r"\[c0\] running step \(step cleanup\)"),
]
LONG = os.environ.get("CERTSYNC_TEST_LONG") == "1"
DEFAULT_POINTS = {"ordered", "placing", "finalize-sent", "install"}
TWO = {"c0": ["c0.peers.test", "c0b.peers.test"], "c1": ["c1.peers.test"]}


@pytest.mark.parametrize("point,pattern", [pytest.param(*p, id=p[0]) for p in LOG_POINTS
                                           if LONG or p[0] in DEFAULT_POINTS])
def test_sigkill_at_each_step(env, web, point, pattern):
    write_certs(env, TWO)
    a = KillableApply(env, "--wait", "60s", "--parallelism", "2").kill_when(
        lambda line, i, rx=re.compile(pattern): bool(rx.search(line)))
    assert a.finish(), a.text()
    converge(env, "--parallelism", "2")
    issued_once(env, web.pebble, TWO, in_flight=1 if point in ("before-order", "finalize-sent") else 0)
    assert answer_files(web.webroot) == []


def test_sigkill_when_the_ca_has_the_order_but_certsync_not_its_answer(env, web):
    """Killed the moment Pebble added the order: its URL may not be journaled; the rerun finds it, orders none."""
    write_certs(env, TWO)
    a = KillableApply(env, "--wait", "60s", "--parallelism", "2")
    w = LogWatch(web.pebble.dir / "pebble.log", r"Added order ", a.kill)
    a.finish()
    w.close()
    assert w.hit.is_set() and a.killed.is_set(), a.text()
    converge(env, "--parallelism", "2")
    issued_once(env, web.pebble, TWO)


def test_sigkill_while_the_va_fetches_the_journaled_token(env, web):
    """Killed inside the VA's GET of the answer: the token was journaled, placed and the challenge answered."""
    write_certs(env, TWO)
    a = KillableApply(env, "--wait", "60s", "--parallelism", "2")
    web.server.on_get = lambda path: "/.well-known/acme-challenge/" in path and a.kill()
    assert a.finish(), a.text()
    web.server.on_get = None
    shown = [env.run("state", "show", n) for n in TWO]  # the state as the journal left it
    assert all(r.code == 0 for r in shown), shown
    assert any(json.loads(r.out).get("tokens") for r in shown), shown  # the token is journaled before it is placed
    converge(env, "--parallelism", "2")
    issued_once(env, web.pebble, TWO)
    assert challenge_files(web.webroot) == []


def test_sigkill_after_finalize_reached_the_ca(env, web):
    """Killed the moment Pebble processes a finalize: the rerun follows that order, never finalizes again."""
    write_certs(env, TWO)
    a = KillableApply(env, "--wait", "60s", "--parallelism", "2")
    w = LogWatch(web.pebble.dir / "pebble.log", r"Processing finalization", a.kill)
    a.finish()
    w.close()
    assert w.hit.is_set() and a.killed.is_set(), a.text()
    converge(env, "--parallelism", "2")
    issued_once(env, web.pebble, TWO)


def test_sigkill_inside_the_atomic_write_of_an_answer_leaves_no_file(env, web):
    """Killed between the creation of an answer's temporary file and its rename (inotify on the web root's
    acme-challenge directory; the process is stopped first, then the file is checked still there, so the kill
    is known to land inside that window; the window is short, so a new certificate is tried until it did):
    the rerun removes the answer and its temporary file, nothing stays in the web root."""
    chal = web.webroot / ".well-known" / "acme-challenge"
    chal.mkdir(parents=True)
    certs, inside = {}, []
    for i in range(6):
        certs[f"w{i}"] = [f"w{i}.peers.test"]
        write_certs(env, {f"w{i}": certs[f"w{i}"]})
        a = KillableApply(env, "--wait", "60s")

        def stop_then_kill(name, a=a):
            os.kill(a.proc.pid, signal.SIGSTOP)
            inside.append((chal / name).exists())  # still the temporary file: not renamed yet
            a.kill()

        w = DirWatch(chal, lambda name: bool(TMP.search(name)), stop_then_kill)
        a.finish()
        w.close()
        if inside and inside[-1]:
            break
    assert inside and inside[-1], (inside, a.text())
    assert any(TMP.search(f) for f in challenge_files(web.webroot))  # what the crash left
    converge(env)
    issued_once(env, web.pebble, certs)
    assert challenge_files(web.webroot) == []


# ---------------------------------------------------------------- dns-01: a placed TXT record survives no crash


def test_sigkill_after_a_txt_record_was_placed(env, peers, monkeypatch):
    bind = peers.bind(["peers.test"])
    pebble = peers.pebble(dns=bind.server, env=CRASH)
    monkeypatch.setenv("TSIG_SECRET", bind.secret)
    env.write_config(extra_issuers=pebble.issuer_yaml("le", solvers=bind.dns01_solver(), extra="  pollInterval: 1s\n")
                     + bind.issuer_yaml("corpdns"))
    certs = {"d0": ["d0.peers.test", "*.d0.peers.test"], "d1": ["d1.peers.test"]}
    write_certs(env, certs)
    a = KillableApply(env, "--wait", "60s", "--parallelism", "2")
    w = LogWatch(bind.dir / "named.log", r"adding an RR at '_acme-challenge", a.kill)
    a.finish()
    w.close()
    assert w.hit.is_set() and a.killed.is_set(), a.text()
    assert bind.acme_txt([n for ns in certs.values() for n in ns]), "the crash left no record to remove"
    converge(env, "--parallelism", "2")
    issued_once(env, pebble, certs)
    assert bind.acme_txt([n for ns in certs.values() for n in ns]) == {}


def test_sigkill_at_random_dns_updates(env, peers, monkeypatch):
    """Killed at the k-th TSIG-signed update BIND applies (an add or a delete), three times, in parallel work on
    an apex + wildcard certificate and two others: converges, issued once each, no TXT record left."""
    seed = int(os.environ.get("CERTSYNC_TEST_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    print(f"CERTSYNC_TEST_SEED={seed}")
    bind = peers.bind(["peers.test"])
    pebble = peers.pebble(dns=bind.server, env=CRASH)
    monkeypatch.setenv("TSIG_SECRET", bind.secret)
    env.write_config(extra_issuers=pebble.issuer_yaml("le", solvers=bind.dns01_solver(), extra="  pollInterval: 1s\n")
                     + bind.issuer_yaml("corpdns"))
    certs = {"x0": ["x0.peers.test", "*.x0.peers.test"], "x1": ["x1.peers.test"], "x2": ["x2.peers.test"]}
    write_certs(env, certs)
    history = []
    for _ in range(3):
        k = rng.randint(1, 6)
        history.append(k)
        a = KillableApply(env, "--wait", "60s", "--parallelism", "3")
        w = LogWatch(bind.dir / "named.log", r"updating zone '[^']*': (adding|deleting) an RR", a.kill, count=k)
        a.finish()
        w.close()
        if not a.killed.is_set():
            assert a.proc.returncode == 0, (seed, history, a.text())
            break
    converge(env, "--parallelism", "3")
    issued_once(env, pebble, certs, in_flight=3 * len(history))
    assert bind.acme_txt([n for ns in certs.values() for n in ns]) == {}, (seed, history)
