#!/usr/bin/env python3
"""make bench: engine figures on generated repositories (not part of make test).

Prints one table: no-op plan wall time and peak RSS (state present, no
refresh) for 1,000 and 10,000 certificates, one and ten per file; the plan
after a one-file commit; the apply of 1,000 new certificates on the built-in
CA. Each figure is the median of several runs; the machine and commit are
printed. The provider-side figures of issue #7 (simulator latency, requests
per certificate, webhook throughput) are not measured here yet.
"""
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def measure(cmd, cwd):
    walls, rss = [], []
    for _ in range(RUNS):
        out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], cwd=cwd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        if out.returncode not in (0, 2):
            sys.exit(f"bench: {' '.join(cmd)} failed: {out.stderr[-500:]}")
        w, m = out.stderr.strip().splitlines()[-1].split()
        walls.append(float(w))
        rss.append(int(m) / 1024)
    return statistics.median(walls), statistics.median(rss)


def main():
    binary = str(Path(sys.argv[1]).resolve())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    print(f"certsync bench: commit {commit}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.platform()}, median of {RUNS} runs")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="certsync-bench-"))
    try:
        for n, per_file in ((1000, 10), (1000, 1), (10000, 10), (10000, 1)):
            d = tmp / f"r{n}-{per_file}"
            subprocess.run([sys.executable, str(HERE / "gen_repo.py"), str(d), str(n), "--per-file", str(per_file)],
                           check=True)
            cfg = ["--config", "certsync.yaml"]
            t0 = time.perf_counter()
            subprocess.run([binary, "apply", *cfg, "--parallelism", "2"], cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            apply_s = time.perf_counter() - t0
            wall, rss = measure([binary, "plan", *cfg], d)
            rows.append((f"no-op plan, {n} certs, {per_file}/file", f"{wall:.3f} s", f"{rss:.1f} MiB"))
            # one-file commit: change one certificate's renewBefore (a cosmetic edit: no new certificate)
            f = sorted((d / "repo" / "certificates").rglob("*.yaml"))[0]
            f.write_text(f.read_text().replace("renewBefore: 720h", "renewBefore: 30d", 1))
            subprocess.run(["git", "-C", str(d / "repo"), "commit", "-qam", "one file"], check=True,
                           env=dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
                                    GIT_COMMITTER_EMAIL="b@b"))
            wall, rss = measure([binary, "plan", *cfg], d)
            rows.append((f"plan after a one-file commit, {n} certs, {per_file}/file", f"{wall:.3f} s", f"{rss:.1f} MiB"))
            if n == 1000 and per_file == 10:
                rows.append(("apply, 1000 new certificates, built-in CA, parallelism 2", f"{apply_s:.2f} s", "-"))
            shutil.rmtree(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'wall':>10}  {'peak RSS':>10}")
    for name, wall, rss in rows:
        print(f"{name:<{w}}  {wall:>10}  {rss:>10}")


if __name__ == "__main__":
    main()
