#!/usr/bin/env python3
"""make bench, ACME part: certsync against lego, certbot and uacme on one Pebble.

usage: acme.py CERTSYNC_BINARY [--certs N] [--only NAME,...]
       (NAME: certsync, lego-loop, lego-x8, certbot, uacme)

Starts pebble-challtestsrv (the DNS server Pebble's VA asks: A 127.0.0.1
for every name) and Pebble (tests/peers/*.sh) on free loopback ports, with
real http-01 validation and:
  PEBBLE_VA_NOSLEEP=1        no random sleep before a validation
  PEBBLE_AUTHZREUSE=0        every order is validated (no reused authorization)
  PEBBLE_WFE_NONCEREJECT=0   no injected badNonce, for every client alike
                             (certbot 2.1 dies on two badNonce in a row)
A plain HTTP server (a thread of this process) serves one web root on
Pebble's httpPort; every client answers http-01 by writing files into it:
certsync (an `acme` issuer with an `http01: {webroot}` solver), lego
(--http.webroot), certbot (--webroot) and uacme (a hook script). Then each
client issues N (default 50) new certificates with unique names (a fresh
account directory, state or config per client; the first certificate pays
for the account registration), ECDSA P-256 certificate keys everywhere:
  certsync   one `certsync apply --wait 600s` of N manifests, default
             parallelism (4 workers; a certificate waiting on the CA is
             parked and its worker takes another)
  lego-loop  N lego processes one after the other
  lego-x8    N lego processes, 8 at a time (xargs -P8; one account
             directory per xargs slot, so 8 accounts as 8 loops would have)
  certbot    N certbot processes one after the other
  uacme      `uacme new` then N `uacme issue` one after the other
For each: wall time, certificates per minute, client CPU seconds per
certificate (user + system of the client processes and their children,
from os.wait4; Pebble, challtestsrv and the web-root server are excluded),
Pebble's own CPU per certificate (from /proc, shown apart), and ACME
requests per certificate (Pebble's "-> calling handler()" log lines
during the run, divided by N). A client counts only when Pebble's log shows
N more issued certificates and every process exited 0.

uacme (libcurl-gnutls) has no option for a CA file: it runs in a private
mount namespace (unshare -m, root only) where the system bundle plus
Pebble's TLS CA is bind-mounted over /etc/ssl/certs/ca-certificates.crt.
A missing client is skipped with a note; the others still run.
BENCH_ACME_PARALLELISM=N passes --parallelism N to certsync (experiments).
"""
import argparse
import functools
import http.server
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / "tests" / "peers"
CLIENTS = ("certsync", "lego-loop", "lego-x8", "certbot", "uacme")
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0", "PEBBLE_WFE_NONCEREJECT": "0"}
EMAIL = "bench@example.test"
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(script, *args, env=None):
    r = subprocess.run(["sh", str(PEERS / script), *map(str, args)], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    if r.returncode:
        raise RuntimeError(f"{script} {' '.join(map(str, args))}: {r.stdout}{r.stderr}".strip())
    return r.stdout.strip()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


class Peers:
    """challtestsrv, Pebble and the web-root server, in root; stop() ends exactly what start() started."""

    def __init__(self, root):
        root = self.root = Path(root).resolve()  # pebble.sh works in its directory
        self.webroot = root / "www"
        self.webroot.mkdir(parents=True)
        self.cts_dir, self.pebble_dir = root / "cts", root / "pebble"
        self.httpd = None
        self.cts = self.pebble = False

    def start(self):
        dns, mgmt = free_port(), free_port()
        sh("challtestsrv.sh", "start", self.cts_dir, dns, mgmt)
        self.cts = True
        self.http_port = free_port()
        self.port = free_port()
        env = dict(PEBBLE_ENV, PEBBLE_PORT=str(self.port), PEBBLE_MGMT_PORT=str(free_port()),
                   PEBBLE_HTTP_PORT=str(self.http_port), PEBBLE_DNS=f"127.0.0.1:{dns}")
        self.directory = sh("pebble.sh", "start", self.pebble_dir, env=env)
        self.pebble = True
        self.ca_file = self.pebble_dir / "ca.pem"
        self.pid = int((self.pebble_dir / "pebble.pid").read_text())
        handler = functools.partial(_Quiet, directory=str(self.webroot))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.http_port), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def counters(self):
        """(Pebble's log so far, Pebble CPU seconds so far)."""
        log = (self.pebble_dir / "pebble.log").read_text(errors="replace")
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return log, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.pebble:
            sh("pebble.sh", "stop", self.pebble_dir)
        if self.cts:
            sh("challtestsrv.sh", "stop", self.cts_dir)


REQUEST_RX = re.compile(r"^Pebble \S+ \S+ (\S+ /[^ ]*) -> calling handler\(\)$", re.M)


def requests_by_endpoint(log):
    """{"POST /authZ/": count, ...} from Pebble's log lines "METHOD /path/ -> calling handler()"."""
    out = {}
    for m in REQUEST_RX.finditer(log):
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out


class Run:
    """Child processes of one client: wall clock from the first start, CPU from os.wait4."""

    def __init__(self, log):
        self.log = log
        self.cpu = 0.0
        self.failed = 0
        self.lock = threading.Lock()

    def proc(self, cmd, env=None, cwd=None):
        with open(self.log, "ab") as out:
            out.write(f"$ {' '.join(map(str, cmd))}\n".encode())
            out.flush()
            p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, cwd=cwd)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
        with self.lock:
            self.cpu += ru.ru_utime + ru.ru_stime
            if p.returncode:
                self.failed += 1
        return p.returncode


def names(tag, run_id, n):
    return [f"{tag}-{run_id}-{i:02d}.bench.test" for i in range(n)]


# ---- the clients: each issues n certificates into d; returns a Run ----

def run_certsync(binary, peers, d, n, run_id):
    repo = d / "repo"
    (repo / "certificates").mkdir(parents=True)
    for i, name in enumerate(names("cs", run_id, n)):
        (repo / "certificates" / f"c{i:02d}.yaml").write_text(
            "apiVersion: certsync/v1\nkind: Certificate\n"
            f"metadata: {{name: c{i:02d}}}\n"
            f"spec:\n  issuer: pebble\n  dnsNames: [{name}]\n"
            "  privateKey: {algorithm: ECDSA, size: 256}\n"
            f"  output: {{directory: c{i:02d}}}\n")
    genv = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
                GIT_COMMITTER_EMAIL="b@b")
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "certificates"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=genv)
    (d / "certsync.yaml").write_text(
        "source: {repo: repo, ref: main, path: certificates}\n"
        "state: {path: state/state.json}\n"
        "output: {root: certs}\n"
        "issuers:\n"
        "  pebble:\n    type: acme\n"
        f"    directory: {peers.directory}\n    email: {EMAIL}\n    termsOfServiceAgreed: true\n"
        f"    caFile: {peers.ca_file}\n"
        f"    solvers:\n      - http01: {{webroot: {peers.webroot}}}\n")
    r = Run(d / "client.log")
    # --wait: a certificate waiting on the CA (an authorization or order being polled) is parked in this
    # apply, and its worker takes another, instead of being left pending for the next apply.
    par = os.environ.get("BENCH_ACME_PARALLELISM")  # for experiments; the comparison uses the default
    r.proc([binary, "apply", "--config", "certsync.yaml", "--wait", "600s", *(["--parallelism", par] if par else [])],
           cwd=d)
    return r


def lego_base(peers):
    """lego's flags for Pebble, http-01 through the shared web root; add --path, -d NAME and run."""
    return ["lego", "--server", peers.directory, "--accept-tos", "--email", EMAIL, "--key-type", "ec256",
            "--http", "--http.webroot", peers.webroot]


def run_lego_loop(binary, peers, d, n, run_id):
    env = dict(os.environ, LEGO_CA_CERTIFICATES=str(peers.ca_file))
    r = Run(d / "client.log")
    for name in names("ll", run_id, n):
        r.proc([*lego_base(peers), "--path", d / "lego", "-d", name, "run"], env=env, cwd=d)
    return r


def run_lego_x8(binary, peers, d, n, run_id):
    env = dict(os.environ, LEGO_CA_CERTIFICATES=str(peers.ca_file))
    (d / "names").write_text("".join(x + "\n" for x in names("lp", run_id, n)))
    # One account directory per xargs slot ($SLOT 0..7): two lego processes never share one.
    cmd = ["xargs", "-a", d / "names", "-P8", "-I{}", "--process-slot-var=SLOT", "sh", "-c",
           'name=$1; shift; exec "$@" --path "slot$SLOT" -d "$name" run', "lego-x8", "{}", *lego_base(peers)]
    r = Run(d / "client.log")
    r.proc(cmd, env=env, cwd=d)  # xargs exits 123 when any lego failed: r.failed is then 1
    return r


def run_certbot(binary, peers, d, n, run_id):
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(peers.ca_file))
    r = Run(d / "client.log")
    for name in names("cb", run_id, n):
        r.proc(["certbot", "certonly", "-n", "--agree-tos", "-m", EMAIL, "--server", peers.directory,
                "--config-dir", d / "config", "--work-dir", d / "work", "--logs-dir", d / "logs",
                "--key-type", "ecdsa", "--elliptic-curve", "secp256r1", "--webroot", "-w", peers.webroot,
                "-d", name], env=env, cwd=d)
    return r


UACME_HOOK = """#!/bin/sh
# uacme challenge hook (man uacme): METHOD TYPE IDENT TOKEN AUTH; http-01 only, into the web root.
dir='{webroot}/.well-known/acme-challenge'
[ "$2" = http-01 ] || exit 1
case "$1" in
begin) mkdir -p "$dir" && printf '%s' "$5" > "$dir/$4" ;;
done|failed) rm -f "$dir/$4" ;;
*) exit 1 ;;
esac
"""


def run_uacme(binary, peers, d, n, run_id):
    hook = d / "hook.sh"
    hook.write_text(UACME_HOOK.format(webroot=peers.webroot))
    hook.chmod(0o755)
    bundle = d / "bundle.pem"
    bundle.write_bytes(SYSTEM_BUNDLE.read_bytes() + peers.ca_file.read_bytes())
    base = ["uacme", "-c", d / "conf", "-a", peers.directory, "-t", "EC", "-b", "256", "-o"]
    lines = [" ".join(map(str, [*base, "-y", "new", EMAIL]))]
    lines += [" ".join(map(str, [*base, "-h", hook, "issue", name])) for name in names("ua", run_id, n)]
    # One shell in a private mount namespace runs the loop; each failed uacme adds 1 to the exit status.
    script = d / "loop.sh"
    script.write_text(f"mount --bind '{bundle}' '{SYSTEM_BUNDLE}' || exit 200\nf=0\n" +
                      "".join(f"{line} || f=$((f + 1))\n" for line in lines) + "exit $f\n")
    r = Run(d / "client.log")
    rc = r.proc(["unshare", "-m", "sh", script], cwd=d)
    if rc == 200:
        raise RuntimeError("could not bind-mount the CA bundle in a private mount namespace (needs root)")
    r.failed = rc
    return r


RUNNERS = {"certsync": run_certsync, "lego-loop": run_lego_loop, "lego-x8": run_lego_x8,
           "certbot": run_certbot, "uacme": run_uacme}


def missing(client, binary):
    if client == "certsync":
        return None if os.access(binary, os.X_OK) else f"{binary} is not built"
    tool = {"lego-loop": "lego", "lego-x8": "lego"}.get(client, client)
    for t in [tool] + (["xargs"] if client == "lego-x8" else []) + (["unshare"] if client == "uacme" else []):
        if not shutil.which(t):
            return f"{t} is not installed (Debian package {tool}; make bench installs it)"
    if client == "uacme" and os.geteuid() != 0:
        return "uacme has no CA file option: it needs root for a private mount namespace with Pebble's CA"
    return None


def versions():
    out = {}
    for pkg in ("pebble", "lego", "certbot", "uacme"):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "not installed"
    return out


def machine():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model})"


def measure(client, binary, peers, root, n, run_id):
    d = root / client
    d.mkdir()
    log0, cpu0 = peers.counters()
    t0 = time.perf_counter()
    r = RUNNERS[client](binary, peers, d, n, run_id)
    wall = time.perf_counter() - t0
    log1, cpu1 = peers.counters()
    log = log1[len(log0):]  # Pebble only appends
    issued = log.count("Issued certificate serial")
    res = {"client": client, "wall": wall, "issued": issued, "failed": r.failed, "cpu": r.cpu,
           "requests": log.count("-> calling handler()"), "by_endpoint": requests_by_endpoint(log),
           "pebble_cpu": cpu1 - cpu0, "log": r.log}
    res["ok"] = issued == n and r.failed == 0
    return res


def table(results, n):
    head = ("client", "certs issued", "wall s", "certs/min", "client CPU s/cert", "requests/cert",
            "Pebble CPU s/cert")
    rows = []
    for r in results:
        if "skipped" in r:
            rows.append((r["client"], "skipped: " + r["skipped"], "", "", "", "", ""))
            continue
        issued = max(r["issued"], 1)
        note = "" if r["ok"] else " (a client process failed)"
        rows.append((r["client"], f"{r['issued']}/{n}{note}", f"{r['wall']:.1f}", f"{r['issued'] * 60 / r['wall']:.1f}",
                     f"{r['cpu'] / issued:.3f}", f"{r['requests'] / issued:.1f}", f"{r['pebble_cpu'] / issued:.3f}"))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdicts(results):
    by = {r["client"]: r for r in results if r.get("ok")}
    cs = by.get("certsync")
    if not cs:
        ran = any(r["client"] == "certsync" and "skipped" not in r for r in results)
        return ["targets: not judged (" + ("certsync did not issue every certificate" if ran else "certsync not run") +
                ")"]
    rate = lambda r: r["issued"] * 60 / r["wall"]  # noqa: E731
    cpu = lambda r: r["cpu"] / r["issued"]  # noqa: E731
    out = []
    if "lego-loop" in by:
        x = rate(cs) / rate(by["lego-loop"])
        out.append(f"≥ 10x lego-in-a-loop's certificates per minute: {x:.1f}x — {'met' if x >= 10 else 'NOT met'}")
    if "lego-x8" in by:
        x = rate(cs) / rate(by["lego-x8"])
        out.append(f"ahead of lego x8: {x:.2f}x — {'met' if x > 1 else 'NOT met'}")
    peers = [r for k, r in by.items() if k != "certsync"]
    if peers:
        best = min(peers, key=cpu)
        ok = all(cpu(cs) < cpu(p) for p in peers)
        out.append(f"less CPU per certificate than every peer: {cpu(cs):.3f} s vs the lowest peer's "
                   f"{cpu(best):.3f} s ({best['client']}) — {'met' if ok else 'NOT met'}")
    return out


def report(binary, n=50, only=CLIENTS, out=sys.stdout):
    """Runs the comparison and prints it; never raises for a missing or failing client."""
    binary = str(Path(binary).resolve())
    print(f"\nACME: certsync against lego, certbot and uacme on one Pebble ({n} new certificates each, http-01)",
          file=out)
    if not shutil.which("pebble") or not shutil.which("pebble-challtestsrv"):
        print("ACME bench skipped: pebble and pebble-challtestsrv are not installed (Debian package pebble)", file=out)
        return []
    v = versions()
    print(f"machine: {machine()}; Pebble {v['pebble']} with " + " ".join(f"{k}={x}" for k, x in PEBBLE_ENV.items()) +
          f"; lego {v['lego']}, certbot {v['certbot']}, uacme {v['uacme']}", file=out)
    root = Path(tempfile.mkdtemp(prefix="certsync-acme-bench-"))
    peers = Peers(root)
    results = []
    run_id = secrets.token_hex(3)
    try:
        peers.start()
        for client in only:
            why = missing(client, binary)
            if why:
                results.append({"client": client, "skipped": why})
                continue
            try:
                res = measure(client, binary, peers, root, n, run_id)
            except Exception as e:  # one client's trouble must not stop the others
                results.append({"client": client, "skipped": f"failed: {e}"})
                continue
            results.append(res)
            if not res["ok"]:
                tail = res["log"].read_text(errors="replace")[-1500:]
                print(f"{client}: {res['issued']}/{n} issued, failed process(es): {res['failed']}; "
                      f"end of {res['log'].name}:\n{tail}", file=out)
            out.flush()
    except RuntimeError as e:
        print(f"ACME bench skipped: {e}", file=out)
        return results
    finally:
        peers.stop()
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"(scratch kept in {root})", file=out)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results, n), file=out)
    print("requests per certificate by endpoint (Pebble's log):", file=out)
    for r in results:
        if r.get("issued"):
            parts = ", ".join(f"{k} {v / r['issued']:.2f}" for k, v in sorted(r["by_endpoint"].items()))
            print(f"  {r['client']}: {parts}", file=out)
    for line in verdicts(results):
        print(line, file=out)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--certs", type=int, default=int(os.environ.get("BENCH_ACME_CERTS", "50")))
    ap.add_argument("--only", default=os.environ.get("BENCH_ACME_ONLY", ",".join(CLIENTS)),
                    help="comma-separated clients: " + ", ".join(CLIENTS))
    a = ap.parse_args()
    only = [c for c in a.only.split(",") if c]
    bad = [c for c in only if c not in RUNNERS]
    if bad:
        ap.error(f"unknown client(s) {', '.join(bad)}; known: {', '.join(CLIENTS)}")
    report(a.binary, a.certs, only)


if __name__ == "__main__":
    main()
