"""/metrics as Prometheus and cert-manager users expect it: cert-manager's issuer_name/issuer_kind labels, the
client libraries' process_* metrics, counters present at zero before their first event, promtool's approval,
and 405 with Allow for a wrong method on every endpoint (checked with curl)."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import manifest
from test_run import SECRET, Daemon, dns_issuer, run_config, sim, token_env  # noqa: F401 (fixtures)


def series(text, name):
    """{frozenset(labels): value} of one metric name."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            labels = head[len(name):].strip("{}")
            pairs = [p.split("=", 1) for p in labels.split('",') if p] if labels else []
            out[frozenset((k, v.strip('"')) for k, v in pairs)] = float(value)
    return out


def test_first_scrape_has_every_known_counter_at_zero_and_process_metrics(env, sim, token_env):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (Debian package prometheus)"
    run_config(env, interval="1h", extra_issuers=dns_issuer(sim, poll="1s"))
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    t0 = time.time()
    d = Daemon(env)
    try:
        d.wait_http()
        first = d.metrics()  # as early as a scraper can get it
        for result in ("success", "failure"):
            assert frozenset({("result", result)}) in series(first, "certsync_reconcile_total"), first
            assert frozenset({("result", result)}) in series(first, "certsync_source_fetches_total"), first
        hooks = series(first, "certsync_webhook_events_total")
        for labels in ({"provider": "any", "event": "unknown", "outcome": "forged"},
                       {"provider": "unknown", "event": "unknown", "outcome": "unknown_provider"},
                       {"provider": "dnsimple", "event": "unknown", "outcome": "malformed"},
                       {"provider": "dnsimple", "event": "unknown", "outcome": "oversized"},
                       {"provider": "dnsimple", "event": "unknown", "outcome": "queue_full"}):
            assert hooks.get(frozenset(labels.items())) == 0, (labels, hooks)
        assert series(first, "certsync_reconcile_total")[frozenset({("result", "failure")})] == 0
        d.wait_ready()
        text = d.metrics()
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr + text
        # cert-manager's label names beside certsync's own, on every certificate series.
        exp = series(text, "certsync_certificate_expiration_timestamp_seconds")
        assert frozenset({("name", "a"), ("issuer", "internal"), ("issuer_name", "internal"),
                          ("issuer_kind", "ca")}) in exp, exp
        for name in ("certsync_certificate_ready_status", "certsync_certificate_failing",
                     "certsync_certificate_failed_attempts", "certsync_certificate_renewal_timestamp_seconds"):
            for labels in series(text, name):
                keys = dict(labels)
                assert keys["issuer_name"] == keys["issuer"] and keys["issuer_kind"] == "ca", (name, labels)
        # process_* from /proc/self, checked against what /proc says about the process from outside.
        pid = d.proc.pid
        proc = {k: v for k, v in (((n, s[frozenset()]) for n, s in (
            (n, series(text, n)) for n in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                                           "process_start_time_seconds"))))}
        assert t0 - 2 <= proc["process_start_time_seconds"] <= time.time() + 1, proc
        assert 0 < proc["process_cpu_seconds_total"] < 600
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        assert abs(proc["process_open_fds"] - fds) <= 4, (proc, fds)
        with open(f"/proc/{pid}/limits") as f:
            soft = next(l.split()[3] for l in f if l.startswith("Max open files"))
        assert proc["process_max_fds"] == float(soft)
        rss = d.rss_kib() * 1024
        assert 0.5 * rss < proc["process_resident_memory_bytes"] < 2 * rss, (proc, rss)
        assert proc["process_virtual_memory_bytes"] > proc["process_resident_memory_bytes"]
        for fam in ("process_cpu_seconds_total counter", "process_open_fds gauge"):
            assert f"# TYPE {fam}\n" in text
    finally:
        assert d.stop()[0] == 0


def curl(port, method, path):
    """(status, headers) of one request made by curl."""
    verb = ["-I"] if method == "HEAD" else ["-X", method]  # -X HEAD would wait for a body
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", *verb, "--max-time", "10",
                        *(["-d", "x"] if method in ("POST", "PUT", "PATCH") else []),
                        f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace("\r", "").split("\n")
    status = int(lines[0].split()[1])
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    return status, headers


def test_a_wrong_method_on_every_endpoint_is_405_with_allow(env):
    assert shutil.which("curl"), "curl is missing"
    run_config(env, interval="1h")
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    d = Daemon(env)
    try:
        d.wait_ready()
        wrong = [("POST", "/healthz", "GET, HEAD"), ("PUT", "/readyz", "GET, HEAD"),
                 ("DELETE", "/metrics", "GET, HEAD"), ("PATCH", "/metrics", "GET, HEAD"),
                 ("GET", f"/webhooks/dnsimple/{SECRET}", "POST"), ("PUT", "/webhooks/dnsimple/wrong", "POST"),
                 ("GET", "/retry", "POST"), ("DELETE", "/retry/a", "POST"),
                 ("POST", "/.well-known/acme-challenge/tok", "GET, HEAD")]
        for method, path, allow in wrong:
            status, headers = curl(env.port, method, path)
            assert (status, headers.get("allow")) == (405, allow), (method, path, status, headers)
        for method, path, want in (("GET", "/metrics", 200), ("HEAD", "/healthz", 200), ("GET", "/readyz", 200),
                                   ("GET", "/nothing", 404), ("DELETE", "/nothing", 404),
                                   ("POST", "/retry", 404)):  # no adminToken: /retry is off
            assert curl(env.port, method, path)[0] == want, (method, path)
        # A wrong method never reads as a forged delivery.
        assert d.metric("certsync_webhook_events_total", outcome="forged") == 0
    finally:
        assert d.stop()[0] == 0
