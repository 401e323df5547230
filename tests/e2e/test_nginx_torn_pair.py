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

from conftest import manifest
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
        self.count = 0  # handshakes so far (read by the test while this thread runs)
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
                self.count += 1
            except OSError as e:  # refused, reset, TLS alert, timeout
                self.errors.append(repr(e))
            self.stop.wait(0.01)  # pacing only: ~50 handshakes a second leave the 2 cores to certsync and nginx

def leaf_der(crt):
    """The DER of the first certificate in a PEM file (the leaf)."""
    return ssl.PEM_cert_to_DER_cert(crt.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")


def cert_facts(crt):
    """(serial, SAN text, public key) of a PEM certificate, in one openssl call."""
    r = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-serial", "-ext", "subjectAltName", "-pubkey"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    serial, rest = r.stdout.split("\n", 1)
    san, pub = rest.split("-----BEGIN PUBLIC KEY-----", 1)
    return serial.split("=", 1)[1].lower(), san, "-----BEGIN PUBLIC KEY-----" + pub


def key_pub(key):
    r = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def served_der(port):
    """The leaf nginx serves on a new connection, or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            with ctx.wrap_socket(s, server_hostname="www.example.test") as t:
                return t.getpeercert(binary_form=True)
    except OSError:
        return None


def snapshot(gen):
    """The files of a generation directory, by name."""
    return {p.name: p.read_bytes() for p in gen.iterdir()}


def www(i):
    return manifest("www", ["www.example.test", f"r{i}.example.test"])


def wait_served(ngx, der, what, timeout=10):
    """Waits until a new connection to nginx gets the certificate der."""
    deadline = time.time() + timeout
    while served_der(ngx.port) != der:
        assert time.time() < deadline, f"timed out waiting for {what}: " + ngx.log()
        time.sleep(0.05)


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
    published = [leaf_der(first / "tls.crt")]
    keys = {key_pub(first / "tls.key")}
    wait_served(ngx, published[0], "nginx serving the first certificate")
    client = Client(ngx.port)
    client.start()
    try:
        for i in range(1, ROUNDS + 1):
            before = client.count
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
            serial, san, pub = cert_facts(gen / "tls.crt")
            assert f"DNS:r{i}.example.test" in san, san
            key = key_pub(gen / "tls.key")
            assert key == pub, f"round {i}: the published pair does not match"
            assert key not in keys, f"round {i}: the renewal kept the key (a torn pair could not show)"
            keys.add(key)
            published.append(leaf_der(gen / "tls.crt"))
            # nginx ends up serving the new certificate: the hook's reload read a matching pair.
            wait_served(ngx, published[-1], f"round {i}: nginx serving serial {serial}")
            assert client.count > before or client.errors, f"round {i}: the client made no handshake"
            assert not client.errors, f"round {i}: {client.errors[:5]}"
    finally:
        client.stop.set()
        client.join(timeout=10)
    assert not client.errors, client.errors[:5]
    assert (ngx.prefix / "nginx.pid").read_text().strip() == master, "nginx was restarted, not reloaded"
    assert set(client.seen) <= set(published), "nginx served a certificate certsync never published"
    assert len(client.seen) >= ROUNDS // 2, f"the client saw {len(client.seen)} of {len(published)} certificates"
    log = ngx.log()
    bad = [line for line in log.splitlines() if any(b in line for b in BAD_LOG)]
    assert not bad, "\n".join(bad)
    # Nothing was swept: every generation of the loop is on disk (all within the 60 s default).
    hidden = {p for p in env.out.iterdir() if p.name.startswith(".www.") and p.is_dir()}
    assert hidden == set(gens), (sorted(hidden), sorted(gens))
