"""The DNSimple simulator (tests/fakes/dnsimple) for the end-to-end tests:
the process, its control API, and an env whose issuer "dns" uses it."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parents[1] / "fakes" / "dnsimple" / "server.py"
TOKEN = "dnsimple-e2e-secret-token-0123456789"


class Sim:
    def __init__(self, tmp, args=()):
        self.proc = subprocess.Popen([sys.executable if "pytest" in sys.modules else "python3", str(SIM), "--port", "0",
                                      "--state-dir", str(tmp / "sim"), "--token", TOKEN, "--account", "1010",
                                      "--domain", "pizza.company", "--issue-delay", "0.3", *args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("READY "), line
        self.url = line.split()[1]

    def ctl(self, path, body=None, method=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_sim/" + path, data=data,
                                     method=method or ("POST" if data is not None else "GET"))
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/v2/1010/" + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def count(self, op):
        return self.ctl("counters").get(op, 0)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    yield s
    s.stop()


def dns_issuer(sim, poll="1s", timeout="3s", rate_window=None):
    """The config of issuer "dns" on the simulator (token from DNSIMPLE_TOKEN); rate_window: its rateWindow."""
    window = f"          rateWindow: {rate_window}\n" if rate_window else ""
    return f"""\
        dns:
          type: dnsimple
          account: "1010"
          token: {{env: DNSIMPLE_TOKEN}}
          baseURL: {sim.url}
          zones: [pizza.company]
          pollInterval: {poll}
          timeout: {timeout}
{window}        """


def with_dnsimple(env, sim, timeout="3s", token=TOKEN):
    """Generator for fixtures: env configured with issuer "dns"; DNSIMPLE_TOKEN set (or unset with token=None)."""
    env.write_config(extra_issuers=dns_issuer(sim, timeout=timeout))
    if token:
        os.environ["DNSIMPLE_TOKEN"] = token
    else:
        os.environ.pop("DNSIMPLE_TOKEN", None)
    try:
        yield env
    finally:
        os.environ.pop("DNSIMPLE_TOKEN", None)
