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
    # -o: the binary under test is installed as built (a sanitizer build is never remade without its flags).
    make(f"BUILD={build}", "-o", f"{build}/certsync", f"DESTDIR={dest}", "PREFIX=/usr", "install")
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
    make(f"BUILD={build}", "-o", f"{build}/certsync", f"DESTDIR={dest}", "PREFIX=/usr", "uninstall")
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


# ---------------------------------------------------------------- the container image

def dockerignore_rules(text):
    """(regex, exclude?) per line, as Docker's patternmatcher reads .dockerignore."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
        rx, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        rules.append((re.compile(rx + r"\Z"), not negate))
    return rules


def dockerignore_sends(rules, path):
    """Whether `COPY . .` sends path: the last rule matching it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    excluded = False
    for rx, exclude in rules:
        if any(rx.match(c) for c in candidates):
            excluded = exclude
    return not excluded


def test_dockerignore_matcher_follows_docker_semantics():
    rules = dockerignore_rules("*\n!src/\n**/*.key\n")
    assert not dockerignore_sends(rules, "Makefile")
    assert dockerignore_sends(rules, "src/a/b.c")
    assert not dockerignore_sends(rules, "src/a/ca.key")
    assert not dockerignore_sends(dockerignore_rules("build\n"), "build/obj/x.o")
    assert dockerignore_sends(dockerignore_rules("/build\n"), "src/buildx")


# What a developer's checkout has beside the tracked files (make run, make, a local state, keys, an env file).
HOST_FILES = [".run/ca/ca.key", ".run/ca/ca.crt", ".run/state/state.json", ".run/certs/shop-www/tls.key",
              ".run/repo/certificates/a.yaml", "build/certsync", "build/obj/util/buf.o", "build/asan/certsync",
              ".git/config", ".git/objects/ab/cdef", "state.json", "state/state.json", "state/state.json.backup",
              "keys/store/a/1.pem", "reconciler/keys/x.pem", "certsync.key", "examples/systemd/env", ".env",
              "docs/build/x.html", "util/.git/HEAD", "tests/e2e/__pycache__/x.pyc", "secret.p12"]
NEVER = re.compile(r"(^|/)(\.git|build|\.run|keys)(/|$)|\.(key|pem|p12|pfx)$|(^|/)state\.json|(^|/)\.?env$")


def dockerfile_stages():
    """[(from line, [instructions])] of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        else:
            stages[-1][1].append(line)
    return stages


def apt_packages(instructions):
    pkgs = set()
    for ins in instructions:
        if ins.startswith("RUN") and "apt-get install" in ins:
            words = shlex.split(ins[3:].split("apt-get install", 1)[1].split("&&", 1)[0])
            pkgs |= {w for w in words if not w.startswith("-")}
    return pkgs


def test_the_build_context_leaves_out_keys_state_build_and_git_and_holds_what_the_build_needs(tmp_path):
    rules = dockerignore_rules((ROOT / ".dockerignore").read_text())
    present = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() or p.is_symlink()]
    candidates = sorted(set(git_files()) | set(HOST_FILES) | set(present))
    sent = [p for p in candidates if dockerignore_sends(rules, p)]
    leaked = [p for p in sent if NEVER.search(p)]
    assert not leaked, leaked
    for p in HOST_FILES:
        assert p not in sent, p
    needed = [p for p in git_files() if p.split("/")[0] in ("util", "manifests", "state", "reconciler", "tools")
              or p in ("Makefile", "docs/cli.md", "LICENSE", "README.md")
              or p.startswith(("docs/", "examples/systemd/", "examples/prometheus/"))]
    missing = [p for p in needed if p not in sent]
    assert not missing, missing
    assert not [p for p in sent if p.startswith(("tests/", "fuzz/", "bench/", "examples/kubernetes/"))]
    # The build stage's command, run on exactly what the context holds (-O0: the test checks completeness,
    # not the optimiser; /out becomes a temporary directory).
    ctx = tmp_path / "ctx"
    for p in sent:
        if p in git_files():
            (ctx / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / p, ctx / p)
    (build_from, build_ins), (_, run_ins) = dockerfile_stages()[0], dockerfile_stages()[-1]
    runs = [i[3:].strip() for i in build_ins if i.startswith("RUN") and "make" in i]
    assert len(runs) == 1, build_ins
    out = tmp_path / "out"
    cmd = runs[0].replace("DESTDIR=/out", f"DESTDIR={out}").replace('-j"$(nproc)"', "-j2")
    r = subprocess.run(["sh", "-c", cmd], cwd=ctx, capture_output=True, text=True, env=dict(os.environ, OPT="-O0"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for ins in run_ins:
        if ins.startswith("COPY --from=build"):
            src = ins.split()[2]
            assert (out / src[len("/out/"):]).exists(), ins
    r = subprocess.run([str(out / "usr/local/bin/certsync"), "version"], capture_output=True, text=True)
    assert r.returncode == 0, r


def test_dockerfile_is_multi_stage_and_runs_as_non_root_with_runtime_libraries_only():
    stages = dockerfile_stages()
    assert len(stages) == 2
    (build_from, build_ins), (run_from, run_ins) = stages
    assert build_from == "FROM debian:bookworm-slim AS build" and run_from == "FROM debian:bookworm-slim"
    assert "COPY . ." in build_ins and not any(i.startswith("COPY . ") for i in run_ins)
    # The build stage installs what `make deps` does (the Makefile's DEB_BUILD, less git and the openssl CLI).
    mk = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    deb_build = set(re.search(r"^DEB_BUILD := (.*)$", mk, re.M).group(1).split()) - {"git", "openssl"}
    assert deb_build <= apt_packages(build_ins), deb_build - apt_packages(build_ins)
    # The runtime stage: no compiler, no -dev package; a package for every library the binary links.
    runtime = apt_packages(run_ins)
    assert not [p for p in runtime if p.endswith("-dev") or p in ("build-essential", "gcc", "make", "pkg-config")]
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                        subprocess.run(["readelf", "-d", BIN], capture_output=True, text=True, check=True).stdout)
    assert needed
    libs = {}
    for line in subprocess.run(["ldd", BIN], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            libs[m.group(1)] = m.group(2)
    for lib in needed:
        if lib.startswith(("libc.so", "libasan", "libubsan", "libm.so", "libpthread")):
            continue  # libc6 is in the base image (sanitizer builds link their runtimes)
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(libs[lib])], capture_output=True, text=True)
        assert owner.returncode == 0, owner.stderr
        pkg = owner.stdout.split(":")[0]
        assert pkg in runtime, f"{lib} comes from {pkg}, which the runtime stage does not install"
    users = [i.split(None, 1)[1] for i in run_ins if i.startswith("USER ")]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), users  # numeric: runAsNonRoot checks it
    assert any('ENTRYPOINT ["/usr/local/bin/certsync"]' == i for i in run_ins)
