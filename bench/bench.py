#!/usr/bin/env python3
"""make bench: certsync measured against DESIGN §10 (never part of make test).

Prints one table:
- no-op plan wall time and peak RSS (state present, no refresh) for 1,000 and
  10,000 certificates, one and ten per file, and 100,000 one per file
  (BENCH_100K=0 leaves that size out: setting it up is a 100,000-certificate apply);
- the plan after a one-file commit in those repositories, cold: the first plan
  process after each of BENCH_RUNS commits (its parse cache misses that file),
  and beside it, at 10,000, its floor on this machine: the same output stat
  calls alone (bench/stat_floor.c) and a process start;
- at 10,000, the output root restored from a copy (new inodes): the plan
  before and after the apply that records the new signatures;
- apply of 1,000 new certificates on the built-in CA;
- apply of 1,000 new certificates against the DNSimple and DigiCert
  simulators with 50 ms injected per request, beside the bound
  request-count x latency / parallelism;
- provider requests per issued certificate;
- apply against a rate-limited DNSimple simulator: share of the allowed rate
  used, 429s;
- the webhook endpoint's throughput on loopback (wrk, when installed);
- the PostgreSQL state backend (when make bench passes a server's URL in
  CERTSYNC_BENCH_PG_URL and a key store key in CERTSYNC_BENCH_STATE_KEY):
  the no-op plan of 10,000 certificates (1 per file) on postgres next to the
  file backend's in the same run (the file state moved over with
  `certsync state migrate --to postgres`), and bench/pg_state.c's load,
  journal() and one-record save() of a 10,000-record state;
- replicas on one PostgreSQL state: failover time (SIGKILL of the leader to
  the new leader's lease) and propagation leader → follower (bench/replicas.py).

Then bench/acme.py's own table (BENCH_ACME=0 leaves it out): 50 new
certificates from one Pebble by certsync, lego in a loop, lego x8, certbot
and uacme (wall time, certificates per minute, CPU and ACME requests per
certificate); a client that is not installed is skipped with a note.

Each engine figure is the median of BENCH_RUNS runs (default 5); provider
figures are one run each (they take minutes). The machine and the commit are
printed. BENCH_QUICK=1 runs smaller provider figures (100 certificates).
"""
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import acme  # noqa: E402
import providers  # noqa: E402
import replicas  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
LATENCY = 0.05
PARALLELISM = int(os.environ.get("BENCH_PARALLELISM", "8"))
PG_URL = os.environ.get("CERTSYNC_BENCH_PG_URL")
PG_ENV = dict(os.environ, CERTSYNC_DATABASE_URL=PG_URL or "", CERTSYNC_STATE_KEY=os.environ.get(
    "CERTSYNC_BENCH_STATE_KEY", ""))
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@b")


def time_once(cmd, cwd, env=None, before=None):
    """One run's wall time (s) and peak RSS (MiB) by /usr/bin/time; before() runs first (untimed)."""
    if before:
        before()
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env)
    if out.returncode not in (0, 2):
        sys.exit(f"bench: {' '.join(cmd)} failed: {out.stderr[-500:]}")
    w, m = out.stderr.strip().splitlines()[-1].split()
    return float(w), int(m) / 1024


def measure(cmd, cwd, env=None, before=None):
    """Median wall time and RSS of RUNS runs."""
    runs = [time_once(cmd, cwd, env, (lambda i=i: before(i)) if before else None) for i in range(RUNS)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def verdict(ok):
    return "met" if ok else "NOT met"


def one_file_commits(binary, d):
    """The plan right after each of RUNS one-file commits (one certificate's renewBefore edited, a different file
    each time): the first process to see the commit, so its parse cache misses that file. Median wall, RSS."""
    files = sorted((d / "repo" / "certificates").rglob("*.yaml"))

    def commit(i):
        files[i].write_text(files[i].read_text().replace("renewBefore: 720h", "renewBefore: 30d", 1))
        subprocess.run(["git", "-C", str(d / "repo"), "commit", "-qam", f"one file {i}"], check=True, env=GIT_ENV)

    return measure([binary, "plan", "--config", "certsync.yaml"], d, before=commit)


def commit_phases(binary, d, index):
    """One more one-file commit, then `plan -v`: where the cold plan's time goes."""
    f = sorted((d / "repo" / "certificates").rglob("*.yaml"))[index]
    f.write_text(f.read_text().replace("renewBefore: 720h", "renewBefore: 30d", 1))
    subprocess.run(["git", "-C", str(d / "repo"), "commit", "-qam", "one file, -v"], check=True, env=GIT_ENV)
    log = subprocess.run([binary, "plan", "--config", "certsync.yaml", "-v", "--log-format", "text"], cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    rxs = {"manifests": r"manifests read in (\d+) ms", "parsed": r"(\d+) parsed, \d+ from the parse cache",
           "state": r"certificates loaded in (\d+) ms", "outputs": r"checked in (\d+) ms"}
    p = {k: (m.group(1) if (m := re.search(rx, log)) else "?") for k, rx in rxs.items()}
    return (f"manifests {p['manifests']} ms ({p['parsed']} parsed, the rest from the parse cache), beside: "
            f"state {p['state']} ms, then outputs {p['outputs']} ms")


def output_paths(root):
    """Every published output file under root, relative to it, as certsync's cold check stats them (through the
    link)."""
    paths = []
    for dirpath, dirnames, _ in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in sorted(dirnames):
            if not name.startswith(".") and os.path.islink(os.path.join(dirpath, name)):
                link = name if rel == "." else f"{rel}/{name}"
                paths += [f"{link}/tls.crt", f"{link}/tls.key", f"{link}/ca.crt"]
    return paths


def floor(binary, floor_tool, d):
    """What no cold plan can go under on this machine, measured beside it: the same fstatat calls alone
    (bench/stat_floor.c, threads as certsync uses them), and a process start with certsync's libraries."""
    paths = output_paths(d / "certs")
    listing = d / "floor-paths"
    listing.write_text("\n".join(paths) + "\n")
    threads = str(min(4, os.cpu_count() or 1, max(1, len(paths) // 3 // 1024)))
    runs = [float(run_or_die([floor_tool, str(d / "certs"), str(listing), threads]).split()[1]) for _ in range(RUNS)]
    start, _ = measure([binary, "version"], d)
    return (f"{len(paths)} fstatat on {threads} threads {statistics.median(runs):.0f} ms | "
            f"{start * 1000:.0f} ms")


def restored_root(binary, d):
    """The output root copied with cp -a (what a backup restore or a move to a new volume does: the same bytes,
    new inodes): the plans read every file until an apply records the new signatures, once."""
    root = d / "certs"
    copy = d / "certs.copy"
    run_or_die([binary, "apply", "--config", "certsync.yaml"], cwd=d)  # what the commits before asked: done first
    run_or_die(["cp", "-a", str(root), str(copy)])
    shutil.rmtree(root)
    copy.rename(root)
    before, _ = measure([binary, "plan", "--config", "certsync.yaml"], d)
    apply_wall, _ = time_once([binary, "apply", "--config", "certsync.yaml"], d)
    after, _ = measure([binary, "plan", "--config", "certsync.yaml"], d)
    return f"{before:.3f} s | {apply_wall:.2f} s | {after:.3f} s"


def engine_rows(binary, tmp, rows, floor_tool=None):
    sizes = [(1000, 10), (1000, 1), (10000, 10), (10000, 1)]
    if os.environ.get("BENCH_100K") != "0":
        sizes.append((100000, 1))
    for n, per_file in sizes:
        d = tmp / f"r{n}-{per_file}"
        subprocess.run([sys.executable, str(HERE / "gen_repo.py"), str(d), str(n), "--per-file", str(per_file)],
                       check=True)
        cfg = ["--config", "certsync.yaml"]
        t0 = time.perf_counter()
        subprocess.run([binary, "apply", *cfg, "--parallelism", "2"], cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        apply_s = time.perf_counter() - t0
        wall, rss = measure([binary, "plan", *cfg], d)
        target = {10000: ("≤ 0.5 s, ≤ 64 MiB", 0.5, 64), 100000: ("≤ 1.5 s, ≤ 400 MiB", 1.5, 400)}.get(n)
        rows.append((f"no-op plan, {n} certs, {per_file}/file", f"{wall:.3f} s, {rss:.1f} MiB",
                     target[0] if target else "", verdict(wall <= target[1] and rss <= target[2]) if target else ""))
        if n == 10000 and per_file == 1:
            postgres_plan_rows(binary, d, wall, rows)
        if n == 100000:
            rows.append((f"  apply of {n} new certs, built-in CA, parallelism 2 (to set it up)", f"{apply_s:.0f} s",
                         "", ""))
        # One-file commit: one certificate's renewBefore (a setting: no new certificate).
        wall, rss = one_file_commits(binary, d)
        rows.append((f"plan after a one-file commit (cold: the first plan to see it), {n} certs, {per_file}/file",
                     f"{wall:.3f} s, {rss:.1f} MiB", "≤ 0.05 s" if n == 10000 else "",
                     verdict(wall <= 0.05) if n == 10000 else ""))
        if n >= 10000 and per_file == 1:
            rows.append(("  where it goes (one plan -v after one more commit)", commit_phases(binary, d, RUNS), "", ""))
        if n == 10000 and per_file == 1 and floor_tool:
            rows.append(("  its floor here: the outputs' stat calls alone | a process start (certsync version)",
                         floor(binary, floor_tool, d), "", ""))
        if n == 10000 and per_file == 1:
            ms = daemon_commit_pass(binary, d)
            rows.append((f"certsync run: pass after a one-file commit, {n} certs, {per_file}/file",
                         f"{ms['total']} ms (manifests {ms['load']} ms, plan {ms['plan']} ms)", "≤ 20 ms",
                         verdict(ms["total"] <= 20)))
        if n == 1000 and per_file == 10:
            rows.append(("apply, 1000 new certs, built-in CA, parallelism 2", f"{apply_s:.2f} s", "", ""))
        if n == 10000 and per_file == 1:
            rows.append((f"output root restored from a copy (new inodes), {n} certs: plan | the apply after it | "
                         "plan", restored_root(binary, d), "", ""))
        shutil.rmtree(d)


PG_STATE = """state:
  backend: postgres
  url: {env: CERTSYNC_DATABASE_URL}
  schema: bench_plan
  encryptionKey: {env: CERTSYNC_STATE_KEY}
  path: state/state.json
"""
PG_PLAN = "no-op plan, 10000 certs, 1/file, postgres backend"


def run_or_die(cmd, cwd=None, env=None):
    out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed (exit {out.returncode}): {out.stderr[-800:]}")
    return out.stdout


def plan_phases(binary, d, cfg, env=None):
    """One `plan -v`'s own timings (ms): manifests read, state opened and loaded, outputs checked."""
    log = subprocess.run([binary, "plan", "--config", cfg, "-v", "--log-format", "text"], cwd=d, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    rxs = {"manifests": r"manifests read in (\d+) ms", "state": r"certificates loaded in (\d+) ms",
           "outputs": r"checked in (\d+) ms"}
    return {k: (m.group(1) if (m := re.search(rx, log)) else "?") for k, rx in rxs.items()}


def postgres_plan_rows(binary, d, file_wall, rows):
    """The file state the apply wrote, moved to the postgres backend; then the same no-op plan on it."""
    if not PG_URL:
        rows.append((PG_PLAN, "not measured: no server (make bench passes CERTSYNC_BENCH_PG_URL)", "", ""))
        return
    text = (d / "certsync.yaml").read_text()
    (d / "certsync-pg.yaml").write_text(re.sub(r"^state: .*\n", PG_STATE, text, flags=re.M))
    t0 = time.perf_counter()
    run_or_die([binary, "state", "migrate", "--to", "postgres", "--config", "certsync-pg.yaml"], d, PG_ENV)
    migrate_s = time.perf_counter() - t0
    rc = subprocess.run([binary, "plan", "--config", "certsync-pg.yaml", "--detailed-exitcode"], cwd=d, env=PG_ENV,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if rc:
        sys.exit(f"bench: the plan on the migrated postgres state is not a no-op (exit {rc})")
    wall, rss = measure([binary, "plan", "--config", "certsync-pg.yaml"], d, PG_ENV)
    ratio = wall / file_wall if file_wall else float("inf")
    rows.append((PG_PLAN, f"{wall:.3f} s, {rss:.1f} MiB = {ratio:.2f}x the file backend's {file_wall:.3f} s",
                 "≤ 2x file, ≤ 64 MiB", verdict(ratio <= 2 and rss <= 64)))
    f = plan_phases(binary, d, "certsync.yaml")
    p = plan_phases(binary, d, "certsync-pg.yaml", PG_ENV)
    rows.append(("  one plan -v each, postgres | file",
                 f"state open + load {p['state']} | {f['state']} ms; manifests {p['manifests']} | {f['manifests']} "
                 f"ms (beside the state); outputs {p['outputs']} | {f['outputs']} ms", "", ""))
    rows.append(("state migrate --to postgres, 10000 certs and their keys", f"{migrate_s:.1f} s", "", ""))


def pg_state_rows(tool, rows):
    """bench/pg_state.c on a 10,000-record state: load on both backends, journal(), a one-record save()."""
    if not PG_URL or not tool:
        rows.append(("postgres state: load, journal, save", "not measured: run through make bench", "", ""))
        return
    out = run_or_die([tool, PG_URL, "10000"])
    f = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)

    def nums(key):
        return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", f[key])]

    pl, _ = nums("load postgres")
    fl, = nums("load file")
    fetch, mb, decode = nums("load postgres parts")
    rtt, = nums("round trip")
    jmed, jmax, jcpu, jrt = nums("journal")
    smed, scpu, srt = nums("save one record")
    rows.append(("state load, 10000 records, postgres | file backend (pg_state.c)",
                 f"{pl:.0f} | {fl:.0f} ms = {pl / fl:.2f}x", "", ""))
    rows.append(("  postgres load: fetch | decode (records + digests) | rest",
                 f"{fetch:.0f} ms ({mb:.1f} MB) | {decode:.0f} ms | {max(pl - fetch - decode, 0):.0f} ms", "", ""))
    if "postgres with a local snapshot" in f:
        sopen, sfirst, snext = nums("postgres with a local snapshot")
        rows.append(("  postgres with a local snapshot (cacheDir): open | first load | next loads",
                     f"{sopen:.0f} ms (connect, schema check) | {sfirst:.0f} ms (rows, snapshot written) | "
                     f"{snext:.0f} ms (header row, snapshot)", "", ""))
    rows.append(("one-certificate change written (journal()), 10000-record state, median of 100",
                 f"{jmed:.2f} ms (max {jmax:.1f} ms); {jrt:.0f} round trips of {rtt:.2f} ms, client CPU {jcpu:.2f} ms",
                 "≤ 5 ms", verdict(jmed <= 5)))
    trips = {k.split(" round trips")[0]: v for k, v in f.items() if " round trips, median ms" in k}
    rows.append(("  journal()'s round trips (statement: median ms of 20 traced)", trips.get("journal", "?"), "", ""))
    rows.append(("save() with one record changed, 10000-record state, median of 100",
                 f"{smed:.0f} ms (client CPU {scpu:.0f} ms: every record encoded and hashed to find it); "
                 f"{srt:.0f} round trips", "", ""))
    rows.append(("  save()'s round trips (statement: median ms of 20 traced)", trips.get("save", "?"), "", ""))


def daemon_commit_pass(binary, d, passes=5):
    """`certsync run` keeps parsed manifests and the state in memory: the cost of following a one-file commit,
    from its debug log (manifest load + plan of the pass), median of a few commits."""
    cfg = d / "certsync.yaml"
    cfg.write_text(cfg.read_text().replace("path: certificates}", "path: certificates, interval: 1s}"))
    proc = subprocess.Popen([binary, "run", "--config", "certsync.yaml", "-v", "--log-format", "text"], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stderr], daemon=True).start()

    def wait_for(rx, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                m = re.search(rx, lines.get(timeout=1))
            except queue.Empty:
                continue
            if m:
                return m
        proc.kill()
        sys.exit(f"bench: certsync run never logged {rx!r}")

    loads, plans = [], []
    try:
        wait_for(r"planned \d+ certificates in")  # the first pass
        files = sorted((d / "repo" / "certificates").rglob("*.yaml"))
        for i in range(passes):
            f = files[-(i + 1)]  # files the cold-plan rows above did not edit
            f.write_text(f.read_text().replace("renewBefore: 720h", "renewBefore: 30d", 1))
            subprocess.run(["git", "-C", str(d / "repo"), "commit", "-qam", f"one file {i}"], check=True, env=GIT_ENV)
            loads.append(int(wait_for(r"manifests at \w+ loaded in (\d+) ms").group(1)))
            plans.append(int(wait_for(r"planned \d+ certificates in (\d+) ms").group(1)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    load, plan = statistics.median(loads), statistics.median(plans)
    return {"load": load, "plan": plan, "total": load + plan}


def eta_row(e, target):
    """The row of an apply's printed finish time against its actual finish."""
    errs = [e["first"]] + [e[p] for p in (25, 50, 75) if e[p] is not None]
    return ("  its ETA vs the actual finish (error / run time)",
            f"first {e['first'] * 100:.1f}% ({e['bound']}-bound, printed at {e['first_at']:.1f} s), "
            + ", ".join(f"at {p}%: " + (f"{e[p] * 100:.1f}%" if e[p] is not None else "none") for p in (25, 50, 75))
            + f"; {e['printed']} lines", target, verdict(max(errs) <= 0.10) if target else "")


def provider_rows(binary, tmp, rows):
    n = 100 if QUICK else 1000
    r = providers.dnsimple_apply(binary, tmp, n, LATENCY, PARALLELISM)
    rows.append((f"apply, {n} new certs, DNSimple sim, {LATENCY * 1000:.0f} ms/request, parallelism {PARALLELISM}",
                 f"{r['wall']:.1f} s (bound {r['bound']:.1f} s, {r['wall'] / r['bound']:.2f}x)",
                 "≤ 2x bound; issue 16: ≤ 1.1x", verdict(r["wall"] <= 1.1 * r["bound"])))
    rows.append(eta_row(r["eta"], ""))
    rows.append(("DNSimple requests per issued cert (apply --wait, polling)", f"{r['per_cert']:.2f}",
                 "4 + polls", verdict(r["per_cert"] <= 6)))
    ops = ", ".join(f"{k.replace('/v2/{account}/domains/{domain}/certificates', '…')} {v / n:g}"
                    for k, v in sorted(r["by_op"].items()))
    rows.append(("  per cert, by operation", ops, "", ""))
    r = providers.digicert_apply(binary, tmp, n, LATENCY, PARALLELISM)
    rows.append((f"apply, {n} new certs, DigiCert sim (TXT via DNSimple sim), {LATENCY * 1000:.0f} ms/request, "
                 f"parallelism {PARALLELISM}",
                 f"{r['wall']:.1f} s (bound {r['bound']:.1f} s, {r['wall'] / r['bound']:.2f}x)", "≤ 2x bound",
                 verdict(r["wall"] <= 2 * r["bound"])))
    orders = r["dc"].get("POST /order/certificate/{product}", 0)
    authkey = sum(v for k, v in r["dc"].items() if "auth-key" in k)
    dns = sum(r["dns"].values())
    rows.append(("DigiCert requests per issued cert",
                 f"{orders / n:g} order + {dns / n:g} DNS; AuthKey: {authkey} requests per run (list, create)",
                 "1 order (+ DNS create/delete), AuthKey once", verdict(orders == n and authkey <= 2)))
    w = providers.webhook_throughput(binary, tmp)
    errs = w["non2xx"] or w["socket_errors"] or not w["alive"]
    rows.append(("webhook endpoint, loopback, wrk -t2 -c16 (certsync run)",
                 f"{w['rate']:.0f} req/s, {w['non2xx']} non-2xx{', socket errors ' + w['socket_errors'] if w['socket_errors'] else ''}",
                 "≥ 5000 req/s, no errors", verdict(w["rate"] >= 5000 and not errs)))
    # Rate-limited: 50 requests per 10 s window (DNSimple's 2,400/hour, compressed 7.2x).
    rl = providers.dnsimple_rate_limited(binary, tmp, 20 if QUICK else 60, limit=50, window=10)
    rows.append((f"apply, {rl['n']} certs, DNSimple sim limited to {rl['limit']}/{rl['window']} s",
                 f"{rl['used'] * 100:.0f}% of the allowed rate, {rl['429']} 429s, {rl['wall']:.0f} s",
                 "≥ 90%, 0 429s", verdict(rl["used"] >= 0.9 and rl["429"] == 0)))
    rows.append(eta_row(rl["eta"], "within 10%"))

def main():
    binary = str(Path(sys.argv[1]).resolve())
    pg_tool = str(Path(sys.argv[2]).resolve()) if len(sys.argv) > 2 else None
    floor_tool = str(Path(sys.argv[3]).resolve()) if len(sys.argv) > 3 else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    print(f"certsync bench: commit {commit}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.platform()}, median of {RUNS} runs")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="certsync-bench-"))
    try:
        engine_rows(binary, tmp, rows, floor_tool)
        pg_state_rows(pg_tool, rows)
        replicas.replica_rows(binary, tmp, rows)  # failover and propagation on a server of its own
        provider_rows(binary, tmp, rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    widths = [max(len(r[i]) for r in rows + [("measure", "result", "target", "")]) for i in range(4)]
    print(f"{'measure':<{widths[0]}}  {'result':<{widths[1]}}  {'target':<{widths[2]}}  verdict")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    sys.stdout.flush()
    if os.environ.get("BENCH_ACME") != "0":
        try:
            acme.report(binary)  # its own table; a client that is missing or fails is a line in it
        except Exception as e:  # the figures above are printed already: say what broke, never lose them
            print(f"ACME bench failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
