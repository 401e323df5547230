"""Helpers for the git-as-teams-run-it tests: a real sshd on loopback serving bare repositories,
deploy keys, and signed commits (gpg and ssh-keygen -Y)."""
import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path, kind="ed25519", passphrase=""):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "", "-f", str(path)], check=True)
    return Path(path), Path(str(path) + ".pub")


class Sshd:
    """sshd -D on a free loopback port with its own host key, authorized_keys in the test dir."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.host_key, self.host_pub = keygen(self.dir / "host_ed25519")
        self.authorized = self.dir / "authorized_keys"
        self.authorized.write_text("")
        self.authorized.chmod(0o600)
        self.log = self.dir / "sshd.log"
        self.proc = None
        self.port = None

    def authorize(self, pub):
        with open(self.authorized, "a") as f:
            f.write(Path(pub).read_text())

    def known_hosts_line(self, key_pub=None):
        key = Path(key_pub or self.host_pub).read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def start(self):
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory (root)
        for _ in range(5):
            self.port = free_port()
            cfg = self.dir / "sshd_config"
            cfg.write_text(
                f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
                f"AuthorizedKeysFile {self.authorized}\nPidFile {self.dir / 'sshd.pid'}\n"
                "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n"
                "AllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\n"
            )
            logf = open(self.log, "w")
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=logf, stderr=logf)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if "Server listening" in self.log.read_text():
                    return self
                time.sleep(0.02)
            self.stop()
        raise AssertionError("sshd did not start: " + self.log.read_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def sshd(tmp_path):
    s = Sshd(tmp_path / "sshd").start()
    yield s
    s.stop()


def bare_clone(src, dst):
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(dst)], check=True)
    return Path(dst)


# ---------- signatures ----------

class Gpg:
    """A throw-away GNUPGHOME with one signing key (no passphrase)."""

    def __init__(self, d, name="Signer", email="signer@example.test"):
        self.home = Path(d)
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        self.env = dict(os.environ, GNUPGHOME=str(self.home))
        r = subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{email}>",
                            "ed25519", "sign", "never"], env=self.env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        self.fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def public(self, path):
        out = subprocess.run(["gpg", "--batch", "--armor", "--export", self.fpr], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        Path(path).write_text(out)
        return Path(path)

    def stop(self):
        subprocess.run(["gpgconf", "--kill", "all"], env=self.env, capture_output=True)


def commit_signed(repo, how, key, msg="signed change"):
    """Commits repo's changes signed with gpg (key: Gpg) or ssh (key: private key path)."""
    repo.git("add", "-A")
    env = dict(os.environ)
    if how == "gpg":
        args = ["-c", "gpg.format=openpgp", "commit", "-q", "--allow-empty", f"-S{key.fpr}", "-m", msg]
        env["GNUPGHOME"] = str(key.home)
    else:
        args = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "--allow-empty", "-S",
                "-m", msg]
    from conftest import GIT_ENV
    env.update(GIT_ENV)
    r = subprocess.run(["git", "-C", str(repo.path), *args], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return repo.git("rev-parse", "HEAD")
