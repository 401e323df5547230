"""No torn pairs with a real nginx under a renewal loop (issue 14 item 2; docs/run.md "Reading the outputs safely").

nginx opens tls.crt and tls.key by the symlinked path, separately, each time it (re)loads. certsync publishes
each renewal (a new certificate with a new key) by one symlink swap and then runs hooks.afterApply, which
reloads nginx; the replaced generation stays on disk, unchanged, for output.keepPreviousFor (default 60 s).
While applies run back to back, a client keeps opening TLS connections: every handshake must succeed (a torn
or missing pair would fail nginx's reload or a handshake), nginx must end up serving each new serial without
a restart, its error.log must show no failed certificate load, and every replaced generation must still be
there, byte for byte, right after the swap that retired it."""
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from conftest import cert_names, cert_serial, manifest, pubkey
from test_nginx_reload import hooks_yaml, nginx_for, pytestmark  # noqa: F401 (fixture; skip without nginx)

ROUNDS = 15
BAD_LOG = ("key values mismatch", "cannot load certificate", "BIO_new_file", "[emerg]", "[alert]", "[crit]")


class Client(threading.Thread):
    """Opens TLS connections to nginx back to back until stopped; records each peer certificate and failure."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.seen = {}  # DER -> handshakes that got it
        self.errors = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE  # no chain check; the handshake still proves nginx holds the key

    def run(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    with self.ctx.wrap_socket(s, server_hostname="www.example.test") as t:
                        der = t.getpeercert(binary_form=True)
                        t.sendall(b"GET / HTTP/1.0\r\nHost: www.example.test\r\n\r\n")
                        body = t.recv(4096)
                if not body.startswith(b"HTTP/1.1 200"):
                    self.errors.append(f"unexpected answer {body[:40]!r}")
                self.seen[der] = self.seen.get(der, 0) + 1
            except OSError as e:  # refused, reset, TLS alert, timeout
                self.errors.append(repr(e))

    def handshakes(self):
        return sum(self.seen.values())


def der_serial(der):
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().strip().split("=", 1)[1].lower().lstrip("0")


def snapshot(gen):
    """The files of a generation directory, by name."""
    return {p.name: p.read_bytes() for p in gen.iterdir()}


def www(i):
    return manifest("www", ["www.example.test", f"r{i}.example.test"])


def test_nginx_never_sees_a_torn_pair_under_a_renewal_loop(env, nginx_for):
    link = env.out / "www"
    ngx = nginx_for(link)
    env.repo.write("www.yaml", www(0))
    env.repo.commit()
    env.run("apply", check=0)
    ngx.start()
    master = (ngx.prefix / "nginx.pid").read_text().strip()
    # From now on each apply reloads nginx (output.keepPreviousFor left at its default).
    env.write_config(extra=hooks_yaml(ngx.reload_argv()))
    first = Path(os.path.realpath(link))
    gens = {first: snapshot(first)}  # every generation published so far, as published
    serials = [cert_serial(link / "tls.crt")]
    keys = {pubkey(link / "tls.key", True)}
    assert ngx.serial() == serials[0]
    client = Client(ngx.port)
    client.start()
    try:
        for i in range(1, ROUNDS + 1):
            before = client.handshakes()
            env.repo.write("www.yaml", www(i))
            env.repo.commit(f"round {i}")
            r = env.run("apply", check=0)
            assert "afterApply hook ran for 1 certificate" in r.err, r
            gen = Path(os.path.realpath(link))
            assert gen not in gens, f"round {i}: no new generation was published"
            # Right after the swap every replaced generation is still there, unchanged (within keepPreviousFor).
            for old, files in gens.items():
                assert old.is_dir(), f"round {i}: replaced generation {old.name} is gone within the grace period"
                assert snapshot(old) == files, f"round {i}: replaced generation {old.name} was modified"
            gens[gen] = snapshot(gen)
            assert cert_names(gen / "tls.crt") == sorted(["www.example.test", f"r{i}.example.test"])
            key = pubkey(gen / "tls.key", True)
            assert key == pubkey(gen / "tls.crt", False), f"round {i}: the published pair does not match"
            assert key not in keys, f"round {i}: the renewal kept the key (no torn pair could show)"
            keys.add(key)
            serials.append(cert_serial(gen / "tls.crt"))
            # nginx ends up serving the new certificate (the hook's reload read a matching pair).
            ngx.wait(lambda: ngx.serial() == serials[-1], f"round {i}: nginx serving serial {serials[-1]}", timeout=10)
            assert client.handshakes() > before or client.errors, f"round {i}: the client made no handshake"
            assert not client.errors, f"round {i}: {client.errors[:5]}"
    finally:
        client.stop.set()
        client.join(timeout=10)
    assert not client.errors, client.errors[:5]
    assert (ngx.prefix / "nginx.pid").read_text().strip() == master, "nginx was restarted, not reloaded"
    served = {der_serial(der) for der in client.seen}
    assert served <= set(serials), f"nginx served certificates certsync never published: {served - set(serials)}"
    assert len(served) >= ROUNDS // 2, f"the client saw too few generations: {len(served)} of {len(serials)}"
    log = ngx.log()
    bad = [line for line in log.splitlines() if any(b in line for b in BAD_LOG)]
    assert not bad, "\n".join(bad)
    # Nothing was swept: every generation of the loop is on disk (all within the 60 s default).
    hidden = sorted(p for p in env.out.iterdir() if p.name.startswith(".www.") and p.is_dir())
    assert set(hidden) == set(gens), (hidden, list(gens))
