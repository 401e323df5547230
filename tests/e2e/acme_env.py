"""Real ACME and DNS peers for the end-to-end tests (tests/peers/*.sh).

Pebble (Debian's ACME test server), pebble-challtestsrv (a DNS server that
answers A 127.0.0.1 for every name) and BIND 9 (an authoritative server
taking TSIG-signed RFC 2136 updates), each on free loopback ports in the
test's own directory, stopped when the test ends. Also a plain HTTP server
for http-01 web roots.

Fixtures (loaded by conftest's pytest_plugins):
  peers   a Peers factory: peers.bind(zones), peers.challtestsrv(),
          peers.pebble(dns=..., **settings), peers.webroot_server(root, port)
Helpers: Http01 (Pebble + challtestsrv + a web root, its issuer YAML), verify_acme_outputs (the outputs
          verify against Pebble's root), challenge_files, Bind.dns01_solver/updates/acme_txt,
          KillableApply (apply -v killed on a line or from any thread), DirWatch (inotify on a directory)
"""
import base64
import functools
import http.server
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pg_env import free_port

PEERS = Path(__file__).resolve().parents[1] / "peers"


def _sh(script, *args, env=None):
    full = dict(os.environ)
    full.update(env or {})
    r = subprocess.run(["sh", str(PEERS / script), *map(str, args)], capture_output=True, text=True, env=full)
    if r.returncode:
        raise AssertionError(f"{script} {' '.join(map(str, args))}: {r.stdout}{r.stderr}")
    return r.stdout.strip()


class Bind:
    """BIND 9 authoritative for zones on 127.0.0.1:port; TSIG key certsync-key. (hmac-sha256)."""

    def __init__(self, root, zones):
        self.dir = Path(root) / f"bind-{free_port()}"
        self.port = free_port()
        self.zones = list(zones)
        self.secret = _sh("bind.sh", "start", self.dir, self.port, *self.zones)
        self.server = f"127.0.0.1:{self.port}"
        self.key_name = "certsync-key."

    def dig(self, rtype, name):
        """The records of name (answer section, +short) as a list of strings."""
        r = subprocess.run(["dig", "+short", "+norec", "+time=2", "+tries=1", "-p", str(self.port), "@127.0.0.1",
                            rtype, name], capture_output=True, text=True)
        return [line for line in r.stdout.splitlines() if line]

    def txt(self, name):
        return [v.strip('"') for v in self.dig("TXT", name)]

    def log(self):
        return (self.dir / "named.log").read_text(errors="replace")

    def issuer_yaml(self, name="corpdns", secret_env="TSIG_SECRET"):
        """An rfc2136 issuer entry for this server (the secret from the environment variable secret_env)."""
        return (f"{name}:\n  type: rfc2136\n  nameserver: {self.server}\n"
                f"  tsig: {{name: {self.key_name}, algorithm: hmac-sha256, secret: {{env: {secret_env}}}}}\n")

    def updates(self):
        """The dynamic updates named applied (its update log lines: adding/deleting records)."""
        return [line for line in self.log().splitlines()
                if "updating zone" in line and ("adding an RR" in line or "deleting" in line)]

    def acme_txt(self, names):
        """{fqdn: [values]} of every _acme-challenge TXT record still served for names ("*." stripped)."""
        left = {}
        for n in names:
            fqdn = "_acme-challenge." + n.removeprefix("*.")
            v = self.txt(fqdn)
            if v:
                left[fqdn] = v
        return left

    def dns01_solver(self, provider="corpdns", timeout="20s", match=None):
        """A dns01 solver (YAML list item) through provider, discovering zones and checking propagation here."""
        m = f"  match: {{dnsZones: [{', '.join(match)}]}}\n" if match else ""
        return (f"- dns01:\n    provider: {provider}\n    resolvers: [\"{self.server}\"]\n"
                f"    propagation: {{timeout: {timeout}, interval: 1s, nameservers: [\"{self.server}\"]}}\n{m}")

    def stop(self):
        _sh("bind.sh", "stop", self.dir)


class ChallTestSrv:
    """pebble-challtestsrv: A 127.0.0.1 for every name, TXT through its management API."""

    def __init__(self, root):
        self.dir = Path(root) / f"cts-{free_port()}"
        self.dns_port, self.mgmt_port = free_port(), free_port()
        _sh("challtestsrv.sh", "start", self.dir, self.dns_port, self.mgmt_port)
        self.server = f"127.0.0.1:{self.dns_port}"

    def stop(self):
        _sh("challtestsrv.sh", "stop", self.dir)


class Pebble:
    """A Pebble ACME server. settings: http_port, eab=(kid, hmac_b64url), blocklist=[...], validity, env={...}."""

    def __init__(self, root, dns, http_port=None, eab=None, blocklist=(), validity=3600, env=None):
        self.dir = Path(root) / f"pebble-{free_port()}"
        self.port, self.mgmt_port = free_port(), free_port()
        self.http_port = http_port or free_port()
        e = {"PEBBLE_PORT": str(self.port), "PEBBLE_MGMT_PORT": str(self.mgmt_port),
             "PEBBLE_HTTP_PORT": str(self.http_port), "PEBBLE_DNS": dns, "PEBBLE_VALIDITY": str(validity)}
        if eab:
            e["PEBBLE_EAB_KID"], e["PEBBLE_EAB_HMAC"] = eab
        if blocklist:
            e["PEBBLE_BLOCKLIST"] = ",".join(blocklist)
        e.update(env or {})
        self.directory = _sh("pebble.sh", "start", self.dir, env=e)
        self.ca_file = self.dir / "ca.pem"  # trust for Pebble's own TLS listener (issuer caFile)
        self.roots = self.dir / "roots.pem"  # the root of the certificates it issues

    def log(self):
        return (self.dir / "pebble.log").read_text(errors="replace")

    def orders_created(self):
        return len(re.findall(r"Added order ", self.log()))

    def finalizations(self):
        return len(re.findall(r"is fully authorized. Processing finalization", self.log()))

    def issued(self):
        """Serials of the certificates issued so far (hex), in order."""
        return re.findall(r"Issued certificate serial ([0-9a-f]+) for order", self.log())

    def validations(self):
        """Challenge validations the VA started (one per challenge answered, whatever its three attempts)."""
        return len(re.findall(r"Pulled a task from the Tasks queue", self.log()))

    def challenge_posts(self):
        return len(re.findall(r"POST /chalZ/ ", self.log()))

    def accounts(self):
        """Accounts created so far (Pebble logs the count after each)."""
        n = re.findall(r"There are now (\d+) accounts in memory", self.log())
        return int(n[-1]) if n else 0

    def cert_status(self, serial_hex):
        """'Valid' or 'Revoked' from the management API."""
        import json
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt_port}/cert-status-by-serial/{serial_hex}",
                                    context=ctx, timeout=10) as r:
            return json.load(r)["Status"]

    def issuer_yaml(self, name="le", solvers="- http01: {serve: true}\n", extra=""):
        """An acme issuer entry for this server; solvers is YAML (a list) put under `solvers:`."""
        sol = "".join("    " + line + "\n" for line in solvers.splitlines())
        return (f"{name}:\n  type: acme\n  directory: {self.directory}\n  email: ops@example.test\n"
                f"  termsOfServiceAgreed: true\n  caFile: {self.ca_file}\n{extra}  solvers:\n{sol}")

    def stop(self):
        _sh("pebble.sh", "stop", self.dir)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    server_obj = None  # the WebrootServer, set per server (class attribute of a subclass)

    def log_message(self, *a):
        pass

    def do_GET(self):
        w = self.server_obj
        if w is not None:
            with w.lock:
                w.requests.append(self.path)
            if w.on_get:
                w.on_get(self.path)
        super().do_GET()


class WebrootServer:
    """A plain HTTP server on 127.0.0.1:port serving root (the http-01 web root Pebble's VA fetches from).

    .requests lists the paths asked for (in order); .on_get(path), when set, is called before each answer
    (a test can SIGKILL certsync there: the token was journaled, placed and the challenge answered).
    """

    def __init__(self, root, port):
        Path(root).mkdir(parents=True, exist_ok=True)
        self.root = Path(root)
        self.requests = []
        self.lock = threading.Lock()
        self.on_get = None
        cls = type("_Handler", (_QuietHandler,), {"server_obj": self})
        handler = functools.partial(cls, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def eab_key():
    """A fresh EAB (kid, base64url HMAC key) pair."""
    return "kid-1", base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


class Peers:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="certsync-e2e-peers.")
        self.started = []

    def _keep(self, p):
        self.started.append(p)
        return p

    def bind(self, zones=("peers.test",)):
        return self._keep(Bind(self.root, zones))

    def challtestsrv(self):
        return self._keep(ChallTestSrv(self.root))

    def pebble(self, dns, **kw):
        return self._keep(Pebble(self.root, dns, **kw))

    def webroot_server(self, root, port):
        return self._keep(WebrootServer(root, port))

    def pebble_with_webroot(self, dns, root, **kw):
        """A web root server on a port the kernel picked, then Pebble validating http-01 against it: no window
        in which another process can take a port chosen free (that race failed a run once)."""
        srv = self.webroot_server(root, 0)
        return self.pebble(dns, http_port=srv.port, **kw), srv

    def close(self):
        for p in reversed(self.started):
            try:
                p.stop()
            except Exception:  # stop the others whatever happens
                pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def peers():
    p = Peers()
    try:
        yield p
    finally:
        p.close()


def wait_until(pred, timeout=30, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def challenge_files(webroot):
    """Every file left under a web root (http-01 answers are files under .well-known/acme-challenge/)."""
    root = Path(webroot)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def verify_acme_outputs(cert_dir, names, roots):
    """tls.crt (leaf + chain) / tls.key / ca.crt of cert_dir: a matching pair for exactly names that verifies
    against the ACME server's root (roots: a PEM file), and a 0600 key. Returns the leaf's serial (hex)."""
    d = Path(cert_dir)
    crt, key = d / "tls.crt", d / "tls.key"
    assert crt.exists() and key.exists() and (d / "ca.crt").exists(), sorted(p.name for p in d.iterdir())
    assert (key.stat().st_mode & 0o777) == 0o600, oct(key.stat().st_mode)

    def run(*a):
        r = subprocess.run(["openssl", *a], capture_output=True, text=True)
        assert r.returncode == 0, (a, r.stderr)
        return r.stdout

    assert run("x509", "-in", str(crt), "-noout", "-pubkey") == run("pkey", "-in", str(key), "-pubout"), \
        "certificate does not match key"
    san = run("x509", "-in", str(crt), "-noout", "-ext", "subjectAltName")
    got = sorted(p.strip()[4:] for p in san.replace("\n", ",").split(",") if p.strip().startswith("DNS:"))
    assert got == sorted(names), (got, names)
    v = subprocess.run(["openssl", "verify", "-CAfile", str(roots), "-untrusted", str(crt), str(crt)],
                       capture_output=True, text=True)
    assert v.returncode == 0 and ": OK" in v.stdout, v.stdout + v.stderr
    return run("x509", "-in", str(crt), "-noout", "-serial").strip().split("=", 1)[1].lower()


class Http01:
    """Pebble validating http-01 against a web root served on its httpPort (names resolve through challtestsrv)."""

    def __init__(self, peers, root, **pebble_kw):
        self.cts = peers.challtestsrv()
        self.webroot = Path(root)
        self.pebble, self.server = peers.pebble_with_webroot(self.cts.server, self.webroot, **pebble_kw)

    def issuer_yaml(self, name="le", extra="  pollInterval: 1s\n"):
        return self.pebble.issuer_yaml(name, solvers=f"- http01: {{webroot: {self.webroot}}}\n", extra=extra)

    def challenge_gets(self):
        return [p for p in self.server.requests if "/.well-known/acme-challenge/" in p]


class KillableApply:
    """`certsync apply -v ...` whose stderr is read line by line; kill() SIGKILLs it at once, from any thread.

    kill_when(pred): SIGKILL as soon as pred(line, n_lines) is true for a stderr line (checked in the reader,
    so nothing runs between the line and the kill). finish() waits for the end; .killed tells if it was killed.
    """

    def __init__(self, env, *args, extra_env=None):
        self.proc = env.popen("apply", "-v", *args, env=extra_env)
        self.lines = []
        self.pred = None
        self.killed = threading.Event()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.kill_lock = threading.Lock()
        self.out = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()), daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            with self.lock:
                self.lines.append(line)
                pred = self.pred
                n = len(self.lines)
            if pred and pred(line, n):
                self.kill()
        self.done.set()

    def kill(self):
        with self.kill_lock:  # several threads may fire at once (the VA fetches each answer three times)
            if self.killed.is_set() or self.proc.returncode is not None:
                return
            self.killed.set()  # before the signal: finish() may return the moment the process is gone
            os.kill(self.proc.pid, signal.SIGKILL)  # not send_signal: its poll() could reap and skip it

    def kill_when(self, pred):
        with self.lock:
            self.pred = pred
            seen = list(self.lines)
        for i, line in enumerate(seen):
            if pred(line, i + 1):
                self.kill()
                break
        return self

    def finish(self, timeout=120):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("apply did not finish:\n" + self.text())
        self.done.wait(10)
        return self.killed.is_set()

    def text(self):
        with self.lock:
            return "".join(self.lines)


class DirWatch:
    """inotify (through libc) on one directory: fire(name) runs in a thread the moment a file is created in it
    whose name satisfies pred(name). Nothing is polled: the thread blocks on the inotify descriptor."""

    IN_CREATE, IN_MOVED_TO = 0x100, 0x80

    def __init__(self, path, pred, fire):
        import ctypes
        import select

        self._select = select
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        assert self.fd >= 0, ctypes.get_errno()
        wd = libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_CREATE | self.IN_MOVED_TO)
        assert wd >= 0, (path, ctypes.get_errno())
        self.pred, self.fire = pred, fire
        self.hit = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import struct

        while not self.stop.is_set() and not self.hit.is_set():
            if not self._select.select([self.fd], [], [], 0.2)[0]:
                continue
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + 16 <= len(data):
                _, _, _, n = struct.unpack_from("iIII", data, off)
                name = data[off + 16:off + 16 + n].rstrip(b"\0").decode(errors="replace")
                off += 16 + n
                if self.pred(name) and not self.hit.is_set():
                    self.fire(name)
                    self.hit.set()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        os.close(self.fd)
