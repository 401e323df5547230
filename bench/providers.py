"""Provider-side figures for make bench: applies against the simulators with
injected latency, requests per issued certificate, and rate-limit use.

Each function starts its own simulator, generates a repository, runs the real
binary and reads the simulator's counters. Nothing here is a test: the
figures are printed, and compared with DESIGN §10 by the caller.
"""
import calendar
import json
import re
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAKES = HERE.parent / "tests" / "fakes"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
TOKEN = "bench-token-0123456789"


class Sim:
    """A simulator process on an ephemeral loopback port."""

    def __init__(self, script, args):
        self.proc = subprocess.Popen([PYTHON, str(script), "--port", "0", *args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            raise SystemExit(f"bench: {script} did not start: {line!r}")
        self.url = line.split()[1]

    def ctl(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_sim/" + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def api_requests(self):
        """Requests to the provider API by route ("POST /v2/{account}/..."), from the simulator's counters."""
        return {k: v for k, v in self.ctl("counters").items() if re.match(r"(GET|POST|PUT|PATCH|DELETE) /", k)}

    def cpu(self):
        """CPU seconds the simulator used so far, with its children (openssl, if any), from /proc."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def gen(d, n, issuer, domain):
    subprocess.run([sys.executable, str(HERE / "gen_repo.py"), str(d), str(n), "--per-file", "10", "--issuer", issuer,
                    "--domain", domain], check=True)


def write_config(d, issuers, max_paid):
    (d / "certsync.yaml").write_text(
        "source: {repo: repo, ref: main, path: certificates}\n"
        "state: {path: state/state.json}\n"
        "output: {root: certs}\n"
        "issuers:\n" + issuers +
        f"policy: {{prune: true, maxPaidOrders: {max_paid}}}\n")


ETA_RE = re.compile(r"ETA (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \(in [^)]*\), (rate|latency)-bound")


def apply(binary, d, parallelism, env, log=None):
    """Runs apply --wait; returns its wall time. log, a list, gets (unix time, line) for every stderr line as it
    arrives, and (start, None) and (end, None) around the run."""
    t0 = time.perf_counter()
    start = time.time()
    p = subprocess.Popen([binary, "apply", "--config", "certsync.yaml", "--parallelism", str(parallelism),
                          "--auto-approve", "--wait", "3600s"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, **env))
    err = []

    def read_err():
        for line in p.stderr:
            err.append((time.time(), line))

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    out = p.stdout.read()
    rc = p.wait()
    reader.join(timeout=30)
    wall = time.perf_counter() - t0
    if log is not None:
        log.append((start, None))
        log.extend(err)
        log.append((start + wall, None))
    if rc != 0:
        raise SystemExit(f"bench: apply failed ({rc}): {out[-2000:]}{''.join(l for _, l in err)[-2000:]}")
    return wall


def eta_errors(log):
    """The finish estimates an apply printed against its actual finish: the first one (and when it came), and
    the latest one printed by 25, 50 and 75 % of the run. Errors are |estimate - finish| / run time."""
    start, end = log[0][0], log[-1][0]
    run = end - start
    etas = []
    for t, line in log[1:-1]:
        m = ETA_RE.search(line)
        if m:
            etas.append((t, calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ")), m.group(2)))
    if not etas:
        raise SystemExit("bench: the apply printed no ETA")
    out = {"run": run, "printed": len(etas), "first_at": etas[0][0] - start, "bound": etas[0][2],
           "first": abs(etas[0][1] - end) / run}
    for pct in (25, 50, 75):
        seen = [e for e in etas if e[0] - start <= run * pct / 100]
        out[pct] = abs(seen[-1][1] - end) / run if seen else None
    return out


def dnsimple_apply(binary, tmp, n, latency, parallelism, rate_limit=10**9, rate_window=3600):
    """Applies n new certificates through the DNSimple simulator. Returns the figures (and the ETA errors)."""
    d = tmp / f"dnsimple-{n}-{rate_limit}"
    sim = Sim(FAKES / "dnsimple" / "server.py",
              ["--state-dir", str(tmp / f"sim-dnsimple-{n}-{rate_limit}"), "--token", TOKEN, "--account", "1010",
               "--domain", "bench.test", "--rate-limit", str(rate_limit), "--rate-window", str(rate_window)])
    try:
        sim.ctl("config", {"latency": latency})
        gen(d, n, "dns", "bench.test")
        write_config(d, "  dns:\n    type: dnsimple\n    account: \"1010\"\n    token: {env: BENCH_DNSIMPLE_TOKEN}\n"
                     f"    baseURL: {sim.url}\n    zones: [bench.test]\n    pollInterval: 1s\n"
                     f"    rateWindow: {rate_window}s\n", n + 10)
        log = []
        wall = apply(binary, d, parallelism, {"BENCH_DNSIMPLE_TOKEN": TOKEN}, log)
        counters = sim.ctl("counters")
        reqs = sim.api_requests()
        total = sum(reqs.values())
        return {"wall": wall, "requests": total, "per_cert": total / n, "by_op": reqs,
                "bound": total * latency / parallelism, "429": counters.get("_ratelimited", 0),
                "eta": eta_errors(log), "sim_cpu": sim.cpu()}
    finally:
        sim.stop()


def dnsimple_rate_limited(binary, tmp, n, limit, window):
    """Applies n certificates through a simulator allowing limit requests per window seconds.

    used = requests / (allowed rate x elapsed), with the elapsed time counted
    from the first request to the last whole window the run needed: a fixed
    window lets a run start with a full budget, so raw requests / wall would
    flatter it.
    """
    r = dnsimple_apply(binary, tmp, n, 0.0, 4, rate_limit=limit, rate_window=window)
    windows = max(1, -(-r["requests"] // limit))  # ceil: the windows the requests needed at best
    spent = max(r["wall"], (windows - 1) * window)
    return {"n": n, "limit": limit, "window": window, "wall": r["wall"], "429": r["429"],
            "used": min(1.0, r["requests"] / (limit / window * spent)) if spent else 1.0,
            "requests": r["requests"], "eta": r["eta"]}


DC_KEY = "bench-digicert-devkey-0123456789"


def digicert_apply(binary, tmp, n, latency, parallelism):
    """Applies n new certificates through the DigiCert simulator, tokens placed as TXT records through the
    DNSimple simulator's zone API (the DNS the DigiCert simulator reads). Both get the latency."""
    d = tmp / f"digicert-{n}"
    dns = Sim(FAKES / "dnsimple" / "server.py",
              ["--state-dir", str(tmp / "sim-dc-dns"), "--token", TOKEN, "--account", "1010", "--domain",
               "bench.test", "--rate-limit", str(10**9)])
    dc = None
    try:
        dc = Sim(FAKES / "digicert" / "server.py",
                 ["--state-dir", str(tmp / "sim-dc"), "--api-key", DC_KEY, "--dns-url", dns.url,
                  "--rate-limit", f"{10**9}/1"])
        dns.ctl("config", {"latency": latency})
        dc.ctl("config", {"latency": latency})
        gen(d, n, "dc", "bench.test")
        write_config(d, "  dns:\n    type: dnsimple\n    account: \"1010\"\n    token: {env: BENCH_DNSIMPLE_TOKEN}\n"
                     f"    baseURL: {dns.url}\n    zones: [bench.test]\n"
                     "  dc:\n    type: digicert\n    apiKey: {env: BENCH_DIGICERT_KEY}\n"
                     f"    baseURL: {dc.url}/services/v2\n    product: ssl_dv_geotrust\n    skipApproval: true\n"
                     "    validation: {method: dns-txt-token, dns: {issuer: dns, label: '@'}}\n"
                     "    pollInterval: 1s\n", n + 10)
        wall = apply(binary, d, parallelism, {"BENCH_DNSIMPLE_TOKEN": TOKEN, "BENCH_DIGICERT_KEY": DC_KEY})
        dc_reqs, dns_reqs = dc.api_requests(), dns.api_requests()
        total = sum(dc_reqs.values()) + sum(dns_reqs.values())
        return {"wall": wall, "requests": total, "per_cert": total / n, "dc": dc_reqs, "dns": dns_reqs,
                "bound": total * latency / parallelism, "sim_cpu": {"digicert": dc.cpu(), "dnsimple": dns.cpu()},
                "429": dc.ctl("counters").get("_ratelimited", 0) + dns.ctl("counters").get("_ratelimited", 0)}
    finally:
        if dc:
            dc.stop()
        dns.stop()


WEBHOOK_SECRET = "bench-webhook-secret-0123"


def webhook_throughput(binary, tmp, seconds=5, connections=16):
    """wrk against `certsync run`'s webhook endpoint on loopback: valid certificate.issue deliveries
    (one request_identifier, so after the first they are duplicates the loop drops), all answered."""
    import shutil
    import socket
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("bench: wrk is missing (Debian package wrk; make test-deps installs it)")
    d = tmp / "webhook"
    sim = Sim(FAKES / "dnsimple" / "server.py",
              ["--state-dir", str(tmp / "sim-webhook"), "--token", TOKEN, "--account", "1010", "--domain",
               "bench.test", "--rate-limit", str(10**9)])
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = None
    try:
        gen(d, 10, "dns", "bench.test")
        write_config(d, "  dns:\n    type: dnsimple\n    account: \"1010\"\n    token: {env: BENCH_DNSIMPLE_TOKEN}\n"
                     f"    baseURL: {sim.url}\n    zones: [bench.test]\n    pollInterval: 1s\n", 20)
        cfg = d / "certsync.yaml"
        cfg.write_text(cfg.read_text().replace("path: certificates}", "path: certificates, interval: 1h}")
                       + f"server:\n  listen: 127.0.0.1:{port}\n  webhookSecret: {{env: BENCH_WEBHOOK_SECRET}}\n")
        env = dict(os.environ, BENCH_DNSIMPLE_TOKEN=TOKEN, BENCH_WEBHOOK_SECRET=WEBHOOK_SECRET)
        proc = subprocess.Popen([binary, "run", "--config", "certsync.yaml"], cwd=d, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit("bench: certsync run did not become ready")
            time.sleep(0.2)
        script = d / "post.lua"
        script.write_text('wrk.method = "POST"\n'
                          'wrk.body = \'{"name":"certificate.issue","request_identifier":"bench-1",'
                          '"data":{"certificate":{"id":1}}}\'\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')
        r = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                            f"http://127.0.0.1:{port}/webhooks/dnsimple/{WEBHOOK_SECRET}"],
                           capture_output=True, text=True, timeout=seconds + 60)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", r.stdout).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
        errors = re.search(r"Socket errors: (.*)", r.stdout)
        return {"rate": rate, "non2xx": int(non2xx.group(1)) if non2xx else 0,
                "socket_errors": errors.group(1) if errors else "", "alive": proc.poll() is None}
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
        sim.stop()
