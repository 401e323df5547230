"""Fixtures for the end-to-end tests: the real certsync binary, real git
repositories in a temp dir, and a config using the built-in CA issuer."""
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pg_env", "acme_env"]  # pg, pg_own, pg_server (a real PostgreSQL); peers (Pebble, BIND, challtestsrv)

BIN = os.environ.get("CERTSYNC_BIN") or str(Path(__file__).resolve().parents[2] / "build" / "certsync")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.test",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.test",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def manifest(name, names, issuer="internal", extra="", labels=None):
    """One Certificate document."""
    lines = [
        "apiVersion: certsync/v1",
        "kind: Certificate",
        "metadata:",
        f"  name: {name}",
    ]
    if labels:
        lines.append("  labels: {" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}")
    lines += ["spec:", f"  issuer: {issuer}", "  dnsNames: [" + ", ".join(names) + "]"]
    text = "\n".join(lines) + "\n"
    if extra:
        text += textwrap.indent(textwrap.dedent(extra).strip("\n"), "  ") + "\n"
    return text


class Repo:
    """A git repository with a working tree; manifests live under certificates/."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir(parents=True)
        self.git("init", "-q")
        self.git("symbolic-ref", "HEAD", "refs/heads/main")

    def git(self, *args, check=True):
        env = dict(os.environ, **GIT_ENV)
        r = subprocess.run(["git", "-C", str(self.path), *args], env=env, capture_output=True, text=True)
        if check and r.returncode:
            raise AssertionError(f"git {args}: {r.stderr}")
        return r.stdout.strip()

    def write(self, rel, text):
        p = self.path / "certificates" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def remove(self, rel):
        (self.path / "certificates" / rel).unlink()

    def commit(self, msg="change"):
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", msg)
        return self.git("rev-parse", "HEAD")


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"<exit {self.code}>\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Env:
    """A work directory with a repo, a config, state and outputs."""

    def __init__(self, tmp):
        self.dir = Path(tmp)
        self.repo = Repo(self.dir / "repo")
        self.config = self.dir / "certsync.yaml"
        self.state = self.dir / "state" / "state.json"
        self.out = self.dir / "certs"
        self.write_config()

    def write_config(self, prune=True, extra_issuers="", extra=""):
        """certsync.yaml with the built-in CA; extra_issuers/extra are YAML appended to issuers/the file."""
        text = (
            "source:\n  repo: repo\n  ref: main\n  path: certificates\n"
            "state:\n  path: state/state.json\n"
            "output:\n  root: certs\n"
            "issuers:\n  internal:\n    type: ca\n    generate: {dir: ca}\n"
            + textwrap.indent(textwrap.dedent(extra_issuers), "  ")
            + f"policy:\n  prune: {'true' if prune else 'false'}\n"
            + textwrap.dedent(extra)
        )
        self.config.write_text(text)

    def run(self, *args, check=None, timeout=120, env=None):
        full_env = dict(os.environ)
        full_env.pop("NO_COLOR", None)
        if env:
            full_env.update(env)
        proc = subprocess.run([BIN, *args, "--config", str(self.config)], cwd=self.dir, capture_output=True,
                              text=True, timeout=timeout, env=full_env)
        r = Result(proc)
        if check is not None:
            assert r.code == check, r
        return r

    def popen(self, *args, env=None):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.Popen([BIN, *args, "--config", str(self.config)], cwd=self.dir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)

    def state_json(self):
        return json.loads(self.state.read_text())

    def plan_json(self, *extra):
        r = self.run("plan", "--format", "json", *extra)
        assert r.code in (0, 2), r
        return json.loads(r.out)

    def cert_dir(self, name):
        return self.out / name


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e


def openssl(*args, input=None):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, input=input)
    return r


def cert_names(path):
    """The SAN DNS names of a PEM certificate file."""
    r = openssl("x509", "-in", str(path), "-noout", "-ext", "subjectAltName")
    assert r.returncode == 0, r.stderr
    names = []
    for part in r.stdout.replace("\n", ",").split(","):
        part = part.strip()
        if part.startswith("DNS:"):
            names.append(part[4:])
    return sorted(names)


def cert_serial(path):
    r = openssl("x509", "-in", str(path), "-noout", "-serial")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split("=", 1)[1].lower().lstrip("0")


def pubkey(path, is_key):
    if is_key:
        r = openssl("pkey", "-in", str(path), "-pubout")
    else:
        r = openssl("x509", "-in", str(path), "-noout", "-pubkey")
    assert r.returncode == 0, r.stderr
    return r.stdout


def check_outputs(d, names, valid_for=86400):
    """tls.crt/tls.key/ca.crt are a valid, matching, verifying set for names."""
    d = Path(d)
    crt, key, ca = d / "tls.crt", d / "tls.key", d / "ca.crt"
    for f in (crt, key, ca):
        assert f.exists(), f
    assert (key.stat().st_mode & 0o777) == 0o600
    assert pubkey(crt, False) == pubkey(key, True), "certificate does not match key"
    assert cert_names(crt) == sorted(names)
    r = openssl("verify", "-CAfile", str(ca), str(crt))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    assert openssl("x509", "-in", str(crt), "-noout", "-checkend", str(valid_for)).returncode == 0
