"""certsync run follows changes to the outputs with inotify (reconciler/outwatch.c): a pass looks again only at
certificates whose directories had events, and still notices (and repairs) an edit in place that keeps size and
mtime, a replacement by rename and a moved parent directory; with inotify off, over its watch limit or after its
queue overflowed, every output is checked by stat and the same repairs happen."""
import os
import re
import signal
from pathlib import Path

from conftest import manifest
from test_run import daemons, run_config  # noqa: F401 (daemons is a fixture)

NAMES = {"a": "a", "b": "team/b", "c": "team/c"}


def configure(env):
    run_config(env, interval="1h")  # passes only when the test sends SIGUSR1
    for name, directory in NAMES.items():
        env.repo.write(f"{name}.yaml", manifest(name, [f"{name}.example.test"], extra=f"output: {{directory: {directory}}}"))
    env.repo.commit()


def start(env, daemons, extra_env=None):  # noqa: F811
    d = daemons(env, args=("-v",), extra_env=extra_env)
    d.wait_ready()
    return d


def one_pass(d):
    """Sends SIGUSR1 and waits for the whole pass; returns (looked at again, due, the pass's messages)."""
    start = len(d.messages())
    d.signal(signal.SIGUSR1)
    i = d.wait_log(r"^planned \d+ certificates in \d+ ms .*: \d+ due", start=start)
    msgs = d.messages()
    due = int(re.search(r": (\d+) due", msgs[i]).group(1))
    end = i
    if due:
        done = d.wait_log(r"^reconcile done", start=i)
        end = d.wait_log(r"^outputs of \d+ certificates checked", start=done)
        msgs = d.messages()
    looked = [m for m in msgs[start:i] if m.startswith("outputs of ")]
    assert len(looked) == 1, msgs[start:]
    m = re.search(r"\((\d+) looked at again", looked[0])
    return int(m.group(1)), due, msgs[start:end + 1]


def edit_in_place_keeping_size_and_mtime(path):
    """Flips one character of the PEM body through the published link, then puts size and times back."""
    st = os.stat(path)
    data = bytearray(Path(path).read_bytes())
    at = data.index(b"\n", data.index(b"BEGIN")) + 10
    data[at] = ord("A") if data[at] != ord("A") else ord("B")
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def replace_by_rename(path):
    """A different file of the same size renamed over it (how editors and config tools write)."""
    data = bytearray(Path(path).read_bytes())
    at = data.index(b"\n", data.index(b"BEGIN")) + 12
    data[at] = ord("A") if data[at] != ord("A") else ord("B")
    tmp = Path(str(path) + ".new")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def test_run_repairs_edits_in_place_and_replacements_seen_by_inotify(env, daemons):  # noqa: F811
    configure(env)
    d = start(env, daemons)
    original = {n: (env.out / p / "tls.crt").read_bytes() for n, p in NAMES.items()}
    assert one_pass(d)[:2] == (0, 0), "a quiet pass looks at nothing again"

    # An edit that keeps size and mtime: the stat check of a cold plan cannot see it, the watched pass does.
    edit_in_place_keeping_size_and_mtime(env.out / "team/b/tls.crt")
    assert (env.out / "team/b/tls.crt").read_bytes() != original["b"]
    assert env.run("plan", "--detailed-exitcode").code == 0, "the cold plan's stat check misses it (by design)"
    looked, due, msgs = one_pass(d)
    assert (looked, due) == (1, 1), msgs
    assert any(m.startswith("reinstall complete") for m in msgs), msgs
    assert (env.out / "team/b/tls.crt").read_bytes() == original["b"]

    replace_by_rename(env.out / "a/tls.crt")
    looked, due, msgs = one_pass(d)
    assert (looked, due) == (1, 1), msgs
    assert (env.out / "a/tls.crt").read_bytes() == original["a"]

    # A parent directory moved away: both certificates under it are reinstalled, and watched again.
    os.rename(env.out / "team", env.out / "moved")
    looked, due, msgs = one_pass(d)
    assert due == 2 and looked >= 2, msgs
    assert (env.out / "team/c/tls.crt").read_bytes() == original["c"]
    edit_in_place_keeping_size_and_mtime(env.out / "team/c/tls.crt")
    looked, due, msgs = one_pass(d)
    assert (looked, due) == (1, 1), msgs
    assert (env.out / "team/c/tls.crt").read_bytes() == original["c"]
    assert one_pass(d)[:2] == (0, 0)
    env.run("plan", "--detailed-exitcode", check=0)
    assert d.stop()[0] == 0


def edit_in_place(path):
    """An ordinary edit in place (mtime moves): what the stat check sees."""
    data = bytearray(Path(path).read_bytes())
    at = data.index(b"\n", data.index(b"BEGIN")) + 10
    data[at] = ord("A") if data[at] != ord("A") else ord("B")
    with open(path, "r+b") as f:
        f.write(data)


def repairs_by_stat(env, d, original):
    edit_in_place(env.out / "team/b/tls.crt")
    looked, due, msgs = one_pass(d)
    assert (looked, due) == (3, 1), msgs
    assert (env.out / "team/b/tls.crt").read_bytes() == original["b"]
    replace_by_rename(env.out / "a/tls.crt")
    looked, due, msgs = one_pass(d)
    assert (looked, due) == (3, 1), msgs
    assert (env.out / "a/tls.crt").read_bytes() == original["a"]


def test_run_without_inotify_checks_every_output_by_stat(env, daemons):  # noqa: F811
    configure(env)
    d = start(env, daemons, extra_env={"CERTSYNC_OUTWATCH": "off"})
    d.wait_log(r"CERTSYNC_OUTWATCH=off: every output is checked by stat at every pass")
    original = {n: (env.out / p / "tls.crt").read_bytes() for n, p in NAMES.items()}
    looked, due, msgs = one_pass(d)
    assert (looked, due) == (3, 0), msgs
    assert any("inotify is off" in m for m in msgs), msgs
    repairs_by_stat(env, d, original)
    assert d.stop()[0] == 0


def test_run_over_its_watch_limit_says_so_once_and_checks_by_stat(env, daemons):  # noqa: F811
    configure(env)
    d = start(env, daemons, extra_env={"CERTSYNC_OUTWATCH_MAX": "2"})  # root, team: then the limit
    original = {n: (env.out / p / "tls.crt").read_bytes() for n, p in NAMES.items()}
    repairs_by_stat(env, d, original)
    said = [m for m in d.messages() if "CERTSYNC_OUTWATCH_MAX directories are watched already" in m]
    assert len(said) == 1, said
    assert "every output is checked by stat at every pass from now on" in said[0]
    assert d.stop()[0] == 0


def test_run_after_an_inotify_queue_overflow_checks_everything_and_watches_anew(env, daemons):  # noqa: F811
    configure(env)
    d = start(env, daemons)
    original = {n: (env.out / p / "tls.crt").read_bytes() for n, p in NAMES.items()}
    assert one_pass(d)[:2] == (0, 0)
    # More events than the kernel queues (alternating files: identical events in a row are merged), no change.
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    files = [os.path.realpath(env.out / "a" / f) for f in ("tls.crt", "ca.crt")]
    times = [(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns) for f in files]
    for i in range(limit + 1000):
        os.utime(files[i % 2], ns=times[i % 2])
    looked, due, msgs = one_pass(d)
    assert any("inotify queue overflowed" in m for m in msgs), msgs
    assert (looked, due) == (3, 0), msgs
    # Watched anew: an edit that keeps size and mtime is still seen.
    edit_in_place_keeping_size_and_mtime(env.out / "team/b/tls.crt")
    looked, due, msgs = one_pass(d)
    assert (looked, due) == (1, 1), msgs
    assert (env.out / "team/b/tls.crt").read_bytes() == original["b"]
    assert d.stop()[0] == 0
