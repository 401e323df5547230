"""A published output link never points at files whose data is not durable (issue 16).

outputs_publish writes a new generation directory, syncs it, and swaps the
certificate's link to it. Traced with strace on the real binary: by the time
the link is renamed into place, every file of the generation it names has
been fsync'ed (successfully), and so has the generation directory itself.
A change that drops or reorders one of those syncs fails here.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, manifest

STRACE = shutil.which("strace")
CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")


def completed_calls(trace):
    """(syscall, args, result) in completion order, joining strace's "unfinished ... resumed" halves."""
    pending, out = {}, []
    for line in trace.read_text().splitlines():
        m = re.match(r"^(\d+)\s+(.*) <unfinished \.\.\.>$", line)
        if m:
            pending[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^(\d+)\s+<\.\.\. \w+ resumed>(.*)$", line)
        if m and m.group(1) in pending:
            line = f"{m.group(1)} {pending.pop(m.group(1))}{m.group(2)}"
        c = CALL.match(line)
        if c:
            out.append((c.group(2), c.group(3), int(c.group(4))))
    return out


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (DEB_TEST lists it)")
def test_every_file_of_a_generation_is_synced_before_its_link_is_published(env):
    names = ["www", "api", "mail"]
    for n in names:
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.com"]))
    env.repo.commit()
    trace = env.dir / "strace.txt"
    run_env = dict(os.environ)  # LeakSanitizer cannot run under ptrace: leaks are the other tests' business
    run_env["ASAN_OPTIONS"] = ":".join(filter(None, [run_env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    proc = subprocess.run([STRACE, "-f", "-y", "-qq", "-o", str(trace), "-e",
                           "trace=fsync,fdatasync,symlink,symlinkat,rename,renameat,renameat2", BIN, "apply",
                           "--auto-approve", "--parallelism", "2", "--config", str(env.config)],
                          cwd=env.dir, capture_output=True, text=True, timeout=300, env=run_env)
    assert proc.returncode == 0, proc.stderr

    synced, gen_of_tmp, published = set(), {}, {}
    for call, args, rc in completed_calls(trace):
        if rc != 0:
            continue
        if call in ("fsync", "fdatasync"):
            m = re.match(r"\d+<(.*)>$", args)
            assert m, args
            synced.add(m.group(1))
        elif call in ("symlink", "symlinkat"):
            m = re.match(r'"([^"]+)",\s*(?:[^,]+,\s*)?"([^"]+)"$', args)
            gen_of_tmp[os.path.basename(m.group(2))] = m.group(1)
        elif call.startswith("rename"):
            paths = re.findall(r'"([^"]+)"', args)
            src, dst = os.path.basename(paths[0]), os.path.basename(paths[-1])
            if src not in gen_of_tmp or dst not in names:
                continue
            gen = gen_of_tmp[src]
            gendir = env.out / gen
            files = sorted(os.listdir(gendir))
            assert {"tls.crt", "tls.key", "ca.crt"} <= set(files), files
            for f in files:
                assert any(p.endswith(f"/{gen}/{f}") for p in synced), (dst, gen, f, "not synced before the link")
            assert any(p.endswith(f"/{gen}") for p in synced), (dst, gen, "directory not synced before the link")
            published[dst] = gen
    assert sorted(published) == sorted(names), published
    for n in names:
        assert os.readlink(env.out / n) == published[n]
