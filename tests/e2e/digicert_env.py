"""Fixtures for the digicert issuer's end-to-end tests: the DNSimple simulator (its zone store is the DNS the
DigiCert simulator reads), a loopback webroot server for fileauth.txt, and the DigiCert simulator."""
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parents[1] / "fakes"
PY = sys.executable or "/usr/bin/python3"
DNS_TOKEN = "dnsimple-e2e-secret-token-for-digicert"
API_KEY = "digicert-e2e-devkey-SECRET-0123456789"
AUTH_KEY = "DigiCertE2EAuthKeySecret0123456789abcdef"
ZONE = "pizza.company"


def _start(args):
    proc = subprocess.Popen([PY, *map(str, args)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    return proc, line.split()[1]


def _ctl(url, path, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + "/_sim/" + path, data=data,
                                 method=method or ("POST" if data is not None else "GET"))
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


class DnsSim:
    def __init__(self, tmp):
        self.proc, self.url = _start([FAKES / "dnsimple" / "server.py", "--port", "0", "--state-dir", tmp / "dnssim",
                                      "--token", DNS_TOKEN, "--account", "1010", "--domain", ZONE])

    def ctl(self, path, body=None, method=None):
        return _ctl(self.url, path, body, method)

    def txt(self):
        """(name, content) of every TXT record in the zone."""
        recs = self.ctl(f"zone/{ZONE}/records")
        recs = recs if isinstance(recs, list) else recs.get("data", [])
        return [(r["name"], r["content"].strip('"')) for r in recs if r["type"] == "TXT"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Webroot:
    """Serves a directory over loopback HTTP for every host name (the DigiCert simulator's http-port-map *)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def fileauth(self):
        return self.root / ".well-known" / "pki-validation" / "fileauth.txt"

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


class DcSim:
    def __init__(self, ca_dir, dns, web, auth_key=AUTH_KEY, dns_server=None, zones=()):
        """dns: the DNSimple simulator whose zones it reads (or None); dns_server: a real DNS server
        ("127.0.0.1:PORT", e.g. a test BIND) it asks for tokens, within zones."""
        args = [FAKES / "digicert" / "server.py", "--port", "0", "--state-dir", ca_dir, "--api-key", API_KEY,
                "--http-port-map", f"*=127.0.0.1:{web.port}"]
        if dns:
            args += ["--dns-url", dns.url]
        if dns_server:
            args += ["--dns-server", dns_server]
        for z in zones:
            args += ["--zone", z]
        if auth_key:
            args += ["--auth-key", auth_key]
        self.proc, self.url = _start(args)

    def ctl(self, path, body=None, method=None):
        return _ctl(self.url, path, body, method)

    def count(self, op):
        return self.ctl("counters").get(op, 0)

    def log(self, op):
        return self.ctl(f"log?op={op}")

    def orders(self):
        return self.ctl("orders")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def dc_ca_dir(tmp_path_factory):
    """One simulated DigiCert CA for the whole session (made once: openssl is slow)."""
    return tmp_path_factory.mktemp("digicert-ca")


@pytest.fixture
def dns(tmp_path):
    s = DnsSim(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def web(tmp_path):
    w = Webroot(tmp_path / "webroot")
    yield w
    w.stop()


@pytest.fixture
def dc(dc_ca_dir, dns, web):
    s = DcSim(dc_ca_dir, dns, web)
    yield s
    s.stop()


def issuer_yaml(dc_url, dns_url, label="'@'", method="dns-txt-token", product="cloud_dv_geotrust", extra=""):
    return f"""\
        dns:
          type: dnsimple
          account: "1010"
          token: {{env: DNSIMPLE_TOKEN}}
          baseURL: {dns_url}
          zones: [{ZONE}]
          timeout: 5s
        dc:
          type: digicert
          apiKey: {{env: DIGICERT_API_KEY}}
          baseURL: {dc_url}/services/v2
          product: {product}
          orderValidity: 1
          skipApproval: true
          validation:
            method: {method}
            dns: {{issuer: dns, label: {label}}}
            webroot: webroot
          pollInterval: 1s
          timeout: 5s
        {extra}"""


@pytest.fixture
def denv(env, dc, dns, web):
    env.write_config(extra_issuers=issuer_yaml(dc.url, dns.url))
    os.environ["DNSIMPLE_TOKEN"] = DNS_TOKEN
    os.environ["DIGICERT_API_KEY"] = API_KEY
    yield env
    os.environ.pop("DNSIMPLE_TOKEN", None)
    os.environ.pop("DIGICERT_API_KEY", None)
