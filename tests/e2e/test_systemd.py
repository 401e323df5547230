"""certsync under systemd: the Type=notify protocol end to end (a real datagram socket standing in for systemd's
NOTIFY_SOCKET), the publication stamp a .path unit watches, and the shipped units through systemd-analyze verify."""
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, manifest
from test_run import Daemon, run_config

ROOT = Path(__file__).resolve().parents[2]


class NotifySocket:
    """An AF_UNIX datagram socket (a path, or an abstract name) and the messages certsync sends to it."""

    def __init__(self, abstract=False, on_message=None):
        self.dir = tempfile.mkdtemp(prefix="csn-", dir="/tmp")  # sun_path holds 107 bytes: keep it short
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"certsync-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.on_message = on_message
        self.messages = []  # (monotonic time, {key: value})
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            extra = self.on_message(fields) if self.on_message else None
            with self.lock:
                self.messages.append((time.monotonic(), fields, extra))

    def with_key(self, key):
        with self.lock:
            return [(t, f, x) for t, f, x in self.messages if key in f]

    def wait(self, key, count=1, timeout=30, proc=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.with_key(key)
            if len(got) >= count:
                return got
            if proc is not None:
                assert proc.poll() is None, f"certsync exited {proc.returncode}"
            time.sleep(0.02)
        raise AssertionError(f"{count} x {key} not received in {timeout}s: {self.messages}")

    def close(self):
        self.done = True
        self.thread.join(timeout=2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    made = []

    def make(**kw):
        s = NotifySocket(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def start(env, sock, extra_env=None):
    full = {"NOTIFY_SOCKET": sock.address}
    full.update(extra_env or {})
    return Daemon(env, extra_env=full)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_after_the_first_pass_then_watchdog_pings_and_stopping(env, notify, abstract):
    run_config(env, interval="1h")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.write("www.yaml", manifest("www", ["www.example.test"], extra="output: {directory: shop/www}"))
    env.repo.commit()
    # What the outputs hold at the moment READY=1 arrives: the first pass must be complete by then.
    sock = notify(abstract=abstract, on_message=lambda f: {
        "a": (env.out / "a" / "tls.crt").exists(), "www": (env.out / "shop" / "www" / "tls.crt").exists()})
    d = start(env, sock, {"WATCHDOG_USEC": "400000"})
    ready = sock.wait("READY", proc=d.proc)
    t_ready, fields, seen = ready[0]
    assert fields["READY"] == "1" and seen == {"a": True, "www": True}, ready
    assert "2 certificates, 2 ready, 0 pending, 0 failed" in fields["STATUS"], fields
    assert fields["STATUS"].startswith("main@sha1:" + env.repo.git("rev-parse", "HEAD")), fields
    assert len(sock.with_key("READY")) == 1  # once
    # WATCHDOG=1 at half of WATCHDOG_USEC (0.2 s) while the loop keeps completing passes.
    pings = sock.wait("WATCHDOG", count=5, timeout=20, proc=d.proc)
    assert all(f["WATCHDOG"] == "1" for _, f, _ in pings)
    gaps = [b[0] - a[0] for a, b in zip(pings, pings[1:])]
    assert all(0.1 < g < 2.0 for g in gaps), gaps
    d.wait_log(r"systemd watchdog: pinging every 200 ms")
    d.signal(signal.SIGTERM)
    assert d.stop()[0] == 0
    stopping = sock.wait("STOPPING")
    assert stopping[0][1]["STOPPING"] == "1"


def test_a_git_outage_at_start_still_reports_ready_with_the_reason(env, notify):
    """No ExecStartPre validate and no readiness gate on git: the service comes up, says why it serves nothing."""
    run_config(env, interval="1h")
    shutil.rmtree(env.repo.path)  # the source is gone (a git outage, a bad URL)
    sock = notify()
    d = start(env, sock)
    fields = sock.wait("READY", proc=d.proc)[0][1]
    assert fields["STATUS"].startswith("source fetch failed (serving no revision yet): "), fields
    assert d.get("/healthz")[0] == 200 and d.get("/readyz")[0] == 503
    assert not sock.with_key("WATCHDOG")  # no WATCHDOG_USEC: no pings, no thread
    assert not any("systemd watchdog" in m for m in d.messages())
    assert d.stop()[0] == 0


def test_status_follows_a_new_commit_and_watchdog_pid_of_another_process_means_no_pings(env, notify):
    run_config(env, interval="1s")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    sock = notify()
    d = start(env, sock, {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    sock.wait("READY", proc=d.proc)
    env.repo.write("b.yaml", manifest("b", ["b.example.test"]))
    head = env.repo.commit()
    deadline = time.time() + 30
    while not any(f["STATUS"].startswith(f"main@sha1:{head}: 2 certificates, 2 ready")
                  for _, f, _ in sock.with_key("STATUS")):
        assert time.time() < deadline, sock.messages
        assert d.proc.poll() is None
        time.sleep(0.05)
    # Only changes are sent: no repeated STATUS line for the idle passes of the 1 s interval.
    statuses = [f["STATUS"] for _, f, _ in sock.with_key("STATUS")]
    assert len(statuses) == len(set(statuses)), statuses
    assert not sock.with_key("WATCHDOG")
    assert d.stop()[0] == 0


# ---------------------------------------------------------------- the publication stamp

IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x8, 0x80, 0x100


class Inotify:
    """A non-recursive inotify watch on one directory (what a systemd .path unit has on a file's parent)."""

    def __init__(self, directory):
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        wd = self.libc.inotify_add_watch(self.fd, str(directory).encode(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
        assert wd >= 0, ctypes.get_errno()

    def names(self):
        out = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(data):
                _, mask, _, n = struct.unpack_from("iIII", data, i)
                out.append((data[i + 16:i + 16 + n].rstrip(b"\0").decode(), mask))
                i += 16 + n

    def close(self):
        os.close(self.fd)


def test_a_nested_publication_rewrites_the_stamp_a_root_watch_sees(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    env.run("apply", check=0)
    stamp = env.out / ".certsync-published"
    when, directory = stamp.read_text().split()
    assert directory == "a" and abs(int(when) - time.time()) < 120
    watch = Inotify(env.out)  # one watch on output.root, as PathChanged=<root>/.certsync-published has
    try:
        env.repo.write("www.yaml", manifest("www", ["www.example.test"], extra="output: {directory: shop/www}"))
        env.repo.commit()
        env.run("apply", check=0)
        assert stamp.read_text().split()[1] == "shop/www"
        events = watch.names()
        # The nested swap itself happens in root/shop, invisible to the watch; the stamp's rename is not.
        assert (".certsync-published", IN_MOVED_TO) in events, events
        assert not any(n == "www" for n, _ in events)
        assert oct(stamp.stat().st_mode & 0o777) == "0o644"
        # Nothing to do: no publication, no stamp event.
        env.run("apply", check=0)
        assert not [e for e in watch.names() if e[0] == ".certsync-published"]
    finally:
        watch.close()
    assert not list(env.out.glob(".certsync-published.tmp*"))


# ---------------------------------------------------------------- the units


def test_units_pass_systemd_analyze_verify_as_installed(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd; make test-deps installs it)"
    prefix = tmp_path / "usr"
    build = Path(BIN).parent  # -o: installed as built (a sanitizer build is never remade without its flags)
    r = subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={build}", "-o", f"{build}/certsync", f"PREFIX={prefix}",
                        "install"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    units = prefix / "lib" / "systemd" / "system"
    svc = (units / "certsync.service").read_text()
    assert f"ExecStart={prefix}/bin/certsync run" in svc and "/usr/local/" not in svc
    assert "Type=notify" in svc and "WatchdogSec=" in svc
    assert not any(l.startswith("ExecStartPre") for l in svc.splitlines())
    path_unit = (units / "certsync-reload-nginx.path").read_text()
    assert "PathChanged=/var/lib/certsync/certs/.certsync-published" in path_unit
    r = subprocess.run([analyze, "verify", "--man=no", *(str(u) for u in sorted(units.iterdir()))],
                       capture_output=True, text=True, cwd=units)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
