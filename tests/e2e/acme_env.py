"""Real ACME and DNS peers for the end-to-end tests (tests/peers/*.sh).

Pebble (Debian's ACME test server), pebble-challtestsrv (a DNS server that
answers A 127.0.0.1 for every name) and BIND 9 (an authoritative server
taking TSIG-signed RFC 2136 updates), each on free loopback ports in the
test's own directory, stopped when the test ends. Also a plain HTTP server
for http-01 web roots.

Fixtures (loaded by conftest's pytest_plugins):
  peers   a Peers factory: peers.bind(zones), peers.challtestsrv(),
          peers.pebble(dns=..., **settings), peers.webroot_server(root, port)
"""
import base64
import functools
import http.server
import os
import re
import shutil
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
    def log_message(self, *a):
        pass


class WebrootServer:
    """A plain HTTP server on 127.0.0.1:port serving root (the http-01 web root Pebble's VA fetches from)."""

    def __init__(self, root, port):
        Path(root).mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
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
