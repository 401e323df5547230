"""Replicas on one PostgreSQL state (make bench, issue 12): failover and propagation times.

- failover: SIGKILL the leader, time until another replica logs its first
  successful lease (median and max over BENCH_FAILOVERS kills, default 5;
  leaseDuration 3 s, the shortest allowed: the bound is 2 x 3 s);
- propagation: the leader logs a certificate's install, time until the
  follower logs installing it from the shared state (median and max over
  BENCH_CHANGES changes, default 100; the built-in CA, a new certificate per
  change, SIGUSR1 makes the leader fetch at once).

Times are taken when each log line reaches this process (both replicas'
stderr are read by threads as it comes): a few milliseconds of pipe latency.
Uses a local server from tests/pg/pgtest.sh on a free loopback port.
"""
import base64
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PGTEST = ROOT / "tests" / "pg" / "pgtest.sh"
FAILOVERS = int(os.environ.get("BENCH_FAILOVERS", "5"))
CHANGES = int(os.environ.get("BENCH_CHANGES", "100"))
LEASE_S = 3
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@b")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Replica:
    """A `certsync run` whose log lines are kept with the monotonic time they arrived."""

    def __init__(self, binary, d, name, env):
        self.name = name
        self.proc = subprocess.Popen([binary, "run", "--config", f"{name}.yaml", "--log-format", "text"], cwd=d,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put((time.monotonic(), line))

    def wait_for(self, rx, timeout=60):
        """(arrival time, match) of the next line matching rx."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                t, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            m = re.search(rx, line)
            if m:
                return t, m
        raise SystemExit(f"bench: replica {self.name} (pid {self.proc.pid}) never logged {rx!r}; "
                         f"last lines: {self.seen[-5:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def setup(d, url):
    repo = d / "repo"
    (repo / "certificates").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "start"], check=True, env=GIT_ENV)
    base = ("source: {repo: repo, ref: main, path: certificates, interval: 1h}\n"
            "state:\n  backend: postgres\n  url: {env: CERTSYNC_DATABASE_URL}\n"
            f"  encryptionKey: {{env: CERTSYNC_STATE_KEY}}\n  leaseDuration: {LEASE_S}s\n"
            "issuers:\n  internal: {type: ca, generate: {dir: ca}}\n"
            "policy: {prune: true}\n")
    for name in ("a", "b"):
        (d / f"{name}.yaml").write_text(base + f"output: {{root: certs-{name}}}\n"
                                        f"server: {{listen: '127.0.0.1:{free_port()}'}}\n")
    env = dict(os.environ, CERTSYNC_DATABASE_URL=url, CERTSYNC_STATE_KEY=base64.b64encode(os.urandom(32)).decode())
    return repo, env


def commit_cert(repo, i):
    (repo / "certificates" / f"c{i:03d}.yaml").write_text(
        "apiVersion: certsync/v1\nkind: Certificate\nmetadata:\n"
        f"  name: c{i:03d}\nspec:\n  issuer: internal\n  dnsNames: [c{i:03d}.example.test]\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=GIT_ENV)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"c{i:03d}"], check=True, env=GIT_ENV)


def failover(binary, d, env):
    """Kills the leader FAILOVERS times; the killed one is started again as a follower each time."""
    reps = {"a": Replica(binary, d, "a", env)}
    times = []
    try:
        reps["a"].wait_for(r"took the state's lease")
        reps["b"] = Replica(binary, d, "b", env)  # started once a leads: b follows
        reps["b"].wait_for(r"following the leader")
        leader = "a"
        for _ in range(FAILOVERS):
            other = "b" if leader == "a" else "a"
            time.sleep(0.5)  # a moment after the last renewal, anywhere in the lease
            reps[leader].proc.kill()
            t_kill = time.monotonic()
            reps[leader].proc.wait()
            t_new, _ = reps[other].wait_for(r"took the state's lease", timeout=4 * LEASE_S)
            times.append(t_new - t_kill)
            reps[leader] = Replica(binary, d, leader, env)
            reps[leader].wait_for(r"following the leader")
            leader = other
    finally:
        for r in reps.values():
            r.stop()
    return times


def propagation(binary, d, repo, env):
    """CHANGES new certificates: leader's install → the follower's install of the same certificate."""
    a = Replica(binary, d, "a", env)
    times = []
    try:
        a.wait_for(r"took the state's lease")
        b = Replica(binary, d, "b", env)
        try:
            b.wait_for(r"following the leader")
            for i in range(CHANGES):
                commit_cert(repo, 500 + i)
                a.proc.send_signal(signal.SIGUSR1)  # fetch now
                t_leader, _ = a.wait_for(rf"c{500 + i:03d}.*create complete|create complete.*c{500 + i:03d}")
                t_follower, _ = b.wait_for(rf"c{500 + i:03d}.*installed certificate .* from the shared state|"
                                           rf"installed certificate .* from the shared state.*c{500 + i:03d}")
                times.append(t_follower - t_leader)
        finally:
            b.stop()
    finally:
        a.stop()
    return times


def replica_rows(binary, tmp, rows):
    pgdir = Path(tempfile.mkdtemp(prefix="certsync-bench-pg."))  # directly in /tmp: the postgres user enters it
    port = free_port()
    started = subprocess.run(["sh", str(PGTEST), "start", str(pgdir), str(port)], capture_output=True, text=True)
    if started.returncode:
        rows.append(("replicas on PostgreSQL", "skipped: no local server (" + started.stderr.strip()[-200:] + ")",
                     "", ""))
        return
    url = started.stdout.strip()
    d = Path(tmp) / "replicas"
    d.mkdir()
    try:
        repo, env = setup(d, url)
        f = failover(binary, d, env)
        rows.append((f"failover: SIGKILL leader → new leader's lease, {len(f)} kills, leaseDuration {LEASE_S}s",
                     f"median {statistics.median(f):.2f} s, max {max(f):.2f} s", f"≤ {2 * LEASE_S} s",
                     "met" if max(f) <= 2 * LEASE_S else "NOT met"))
        p = propagation(binary, d, repo, env)
        rows.append((f"propagation leader → follower, {len(p)} changes",
                     f"median {statistics.median(p) * 1000:.0f} ms, max {max(p) * 1000:.0f} ms", "≤ 2 s",
                     "met" if max(p) <= 2 else "NOT met"))
    finally:
        subprocess.run(["sh", str(PGTEST), "stop", str(pgdir)], capture_output=True)
        shutil.rmtree(pgdir, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":  # just these figures: python3 bench/replicas.py build/certsync
    import sys

    out = []
    tmpdir = tempfile.mkdtemp(prefix="certsync-bench-replicas-")
    try:
        replica_rows(str(Path(sys.argv[1]).resolve()), tmpdir, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    for r in out:
        print("  ".join(r))
