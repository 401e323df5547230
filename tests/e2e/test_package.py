"""What users install: `make install` into a DESTDIR (the tree, the man page as man renders it, uninstall),
the repository's docs (no link leaves the repository), the container image's Dockerfile and .dockerignore
(Docker itself is not needed: the ignore rules are applied by a matcher of Docker's semantics and the build
stage's command runs on what they let through), and the Kubernetes example's cross-references."""
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN

ROOT = Path(__file__).resolve().parents[2]


def git_files():
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True)
    return [p for p in r.stdout.splitlines() if (ROOT / p).is_file()]


def make(*args, cwd=ROOT, env=None):
    r = subprocess.run(["make", "-s", "-C", str(cwd), *args], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    assert r.returncode == 0, r.stdout + r.stderr
    return r


# ---------------------------------------------------------------- make install

def test_make_install_into_destdir_and_uninstall_leave_the_expected_tree(tmp_path):
    dest = tmp_path / "stage"
    build = str(Path(BIN).parent)
    make(f"BUILD={build}", f"DESTDIR={dest}", "PREFIX=/usr", "install")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    expected = {"usr/bin/certsync", "usr/share/man/man1/certsync.1", "usr/lib/systemd/system/certsync.service",
                "usr/lib/systemd/system/certsync-reload-nginx.path",
                "usr/lib/systemd/system/certsync-reload-nginx.service", "usr/share/doc/certsync/LICENSE",
                "usr/share/doc/certsync/README.md", "usr/share/doc/certsync/docs/cli.md",
                "usr/share/doc/certsync/docs/run.md", "usr/share/doc/certsync/docs/api/dnsimple.md",
                "usr/share/doc/certsync/examples/certsync.yaml.example",
                "usr/share/doc/certsync/examples/certsync-rules.yaml"}
    assert expected <= set(files), files
    assert all(f.startswith("usr/") for f in files), files  # PREFIX and DESTDIR both honoured
    binary = dest / "usr/bin/certsync"
    assert binary.stat().st_mode & 0o777 == 0o755
    assert (dest / "usr/share/man/man1/certsync.1").stat().st_mode & 0o777 == 0o644
    r = subprocess.run([str(binary), "version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("certsync "), r
    unit = (dest / "usr/lib/systemd/system/certsync.service").read_text()
    assert "ExecStart=/usr/bin/certsync run" in unit and "file:/usr/share/doc/certsync/docs/run.md" in unit
    assert "/usr/local" not in unit
    # The example config is a valid certsync config (with its credentials absent it still validates offline).
    example = (dest / "usr/share/doc/certsync/examples/certsync.yaml.example").read_text()
    assert "state:\n  path: /var/lib/certsync/state.json" in example
    assert "root: /var/lib/certsync/certs" in example
    make(f"BUILD={build}", f"DESTDIR={dest}", "PREFIX=/usr", "uninstall")
    left = [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()]
    assert left == [], left
    assert not (dest / "usr/share/doc/certsync").exists()


def test_the_man_page_renders_with_man_and_groff_without_warnings(tmp_path):
    man = shutil.which("man")
    assert man, "man is missing (Debian package man-db; make test-deps installs it)"
    page = Path(BIN).parent / "certsync.1"
    make(f"BUILD={Path(BIN).parent}", str(page))
    text = page.read_text()
    assert text.startswith('.TH CERTSYNC 1 "')
    assert not re.search(r"[^\x00-\x7f]", text)  # every non-ASCII character is a groff escape
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    r = subprocess.run([man, "-l", str(page)], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="100", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8"))
    assert r.returncode == 0 and not r.stderr, r.stderr
    out = r.stdout
    for heading in ("NAME", "EXIT CODES", "GLOBAL OPTIONS", "CERTSYNC PLAN", "CERTSYNC APPLY", "CERTSYNC RUN",
                    "CERTSYNC STATE", "SEE ALSO"):
        assert re.search(rf"^{heading}$", out, re.M), heading
    assert re.search(r"^       --detailed-exitcode\n", out, re.M)  # a table row became a tagged paragraph
    assert "rc=0; certsync plan --detailed-exitcode || rc=$?" in out  # fenced code kept verbatim
    assert "↻" in out and "→" in out  # UTF-8 survives
    for markup in ("```", "|---", "**", "](", "\\f", "\\e"):
        assert markup not in out, markup


# ---------------------------------------------------------------- docs stay inside the repository

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_docs_link_only_to_files_inside_the_repository():
    docs = [p for p in git_files() if p.endswith(".md")]
    assert "docs/cli.md" in docs and "README.md" in docs
    bad = []
    for rel in docs:
        text = (ROOT / rel).read_text()
        for line_no, line in enumerate(text.splitlines(), 1):
            if "/work/" in line or "../shared" in line:
                bad.append(f"{rel}:{line_no}: {line.strip()}")
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                    continue  # a URL or an anchor in the same page
                path = (ROOT / rel).parent / target.split("#", 1)[0]
                resolved = path.resolve()
                if ROOT not in resolved.parents and resolved != ROOT:
                    bad.append(f"{rel}:{line_no}: {target} leaves the repository")
                elif not resolved.exists():
                    bad.append(f"{rel}:{line_no}: {target} does not exist")
    for rel in git_files():
        if rel.startswith(("docs/", "examples/")) and not rel.endswith(".md"):
            if "/work/" in (ROOT / rel).read_text(errors="replace"):
                bad.append(f"{rel}: names /work/")
    assert not bad, "\n".join(bad)


def test_license_is_apache_2_and_the_readme_says_so():
    assert "Apache License\n                           Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    assert "Apache License 2.0: see [LICENSE](LICENSE)." in (ROOT / "README.md").read_text()
