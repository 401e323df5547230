"""The file backend's journal under many workers (group commit, issue 16).

Eight workers journal at once and share their fdatasync. What must still
hold, checked on the real binary: the journal's lines are whole and in
serial order, every purchase that was sent had its write-ahead line in the
journal first, and a SIGKILL in the middle of it all (while lines wait for
a shared sync) never leads to a second purchase.
"""
import json
import re

import pytest

from conftest import manifest
from dnsimple_env import sim, with_dnsimple  # noqa: F401 (sim is a fixture)
from test_crash_matrix import Apply, converge

N = 16


@pytest.fixture
def denv(env, sim):
    yield from with_dnsimple(env, sim, timeout="2s")


class NthMatch:
    """A pattern for Apply.kill_on that matches from its n-th matching line on."""

    def __init__(self, pattern, n):
        self.rx, self.n, self.seen = re.compile(pattern), n, 0

    def search(self, line):
        if self.rx.search(line):
            self.seen += 1
        return self.seen >= self.n


def kill_on_nth(a, pattern, n, timeout=120):
    """Apply.kill_on, from the n-th line matching pattern on (the reader thread calls rx.search per line)."""
    m = NthMatch(pattern, n)
    for line in list(a.lines):  # lines read before the matcher was set (none match this late in a run, usually)
        m.search(line)
    a.rx = m
    if m.seen >= n and not a.matched.is_set():
        a.proc.kill()
        a.matched.set()
    a.proc.wait(timeout=timeout)
    a.done.wait(10)
    return a.matched.is_set()


def journal_lines(env):
    path = env.state.parent / (env.state.name + ".journal")
    data = path.read_text()
    assert data.endswith("\n"), data[-200:]  # a SIGKILL never leaves half a line: one write() per line
    return [json.loads(line) for line in data.splitlines()]


def test_a_kill_among_eight_journaling_workers_keeps_order_and_pays_once(denv, sim):
    for i in range(N):
        denv.repo.write(f"c{i:02d}.yaml", manifest(f"c{i:02d}", [f"c{i:02d}.pizza.company"], issuer="dns"))
    denv.repo.commit()
    a = Apply(denv, "--wait", "60s", "--parallelism", "8")
    assert kill_on_nth(a, r"\[c\d\d\] purchased DNSimple certificate \d+", N // 2), a.text()

    lines = journal_lines(denv)
    serials = [line["serial"] for line in lines]
    assert serials == sorted(set(serials)), serials  # strictly increasing: the file's order is the serials'
    intents = {line["name"] for line in lines
               if line.get("record") and "dnsimple.purchase_intent" in line["record"].get("ids", {})}
    sent = {m.group(1) for m in (re.search(r"\[(c\d\d)\] purchasing a DNSimple certificate", x) for x in a.lines)
            if m}
    assert len(sent) >= N // 2 - 1, a.text()
    assert sent <= intents, (sorted(sent - intents), a.text())  # the write-ahead line came first, every time

    converge(denv)
    certs = [c for c in sim.ctl("certificates") if c["state"] not in ("cancelled", "failed", "refunded")]
    for i in range(N):
        mine = [c for c in certs if c["common_name"] == f"c{i:02d}.pizza.company"]
        assert len(mine) == 1, (i, mine)
    assert sim.count("purchaseLetsencryptCertificate") == N
