"""A real nginx serves the certificate certsync writes; a renewal runs hooks.afterApply, which reloads nginx
(`nginx -s reload` with the test's own -c/-p), and nginx then serves the new certificate. This is the
sidecar/host wiring of examples/kubernetes and examples/systemd, with a real server."""
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import cert_serial, manifest
from pg_env import free_port
from test_run import daemons, run_config  # noqa: F401 (fixture)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHORT = "short:\n  type: ca\n  generate: {dir: ca2}\n  duration: 2h\n"

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed (Makefile DEB_TEST)")


class Nginx:
    """nginx on a free loopback port with its own prefix, config, pid and logs in the test directory."""

    def __init__(self, d, cert_dir):
        self.prefix = d / "nginx"
        (self.prefix / "tmp").mkdir(parents=True)
        self.port = free_port()
        self.conf = self.prefix / "nginx.conf"
        user = "user root;\n" if os.geteuid() == 0 else ""
        tmp = self.prefix / "tmp"
        self.conf.write_text(f"""{user}worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log;
events {{ worker_connections 32; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {cert_dir}/tls.crt;
        ssl_certificate_key {cert_dir}/tls.key;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
""")
        self.argv = [NGINX, "-e", str(self.prefix / "error.log"), "-c", str(self.conf), "-p", str(self.prefix)]

    def start(self):
        r = subprocess.run(self.argv, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        self.wait(lambda: self.serial() is not None, "nginx answering TLS")

    def reload_argv(self):
        return self.argv + ["-s", "reload"]

    def serial(self):
        """The serial of the certificate nginx serves now (lowercase hex), or None."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                with ctx.wrap_socket(s, server_hostname="www.example.test") as t:
                    der = t.getpeercert(binary_form=True)
        except OSError:
            return None
        r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True)
        return r.stdout.decode().strip().split("=", 1)[1].lower().lstrip("0")

    def wait(self, pred, what, timeout=20):
        deadline = time.time() + timeout
        while not pred():
            assert time.time() < deadline, f"timed out waiting for {what}: " + self.log()
            time.sleep(0.1)

    def log(self):
        p = self.prefix / "error.log"
        return p.read_text() if p.exists() else ""

    def stop(self):
        subprocess.run(self.argv + ["-s", "stop"], capture_output=True)
        pid = self.prefix / "nginx.pid"
        deadline = time.time() + 10
        while pid.exists() and time.time() < deadline:
            time.sleep(0.05)


@pytest.fixture
def nginx_for(tmp_path):
    started = []

    def make(cert_dir):
        n = Nginx(tmp_path, cert_dir)
        started.append(n)
        return n

    yield make
    for n in started:
        n.stop()


def hooks_yaml(argv):
    return "hooks:\n  afterApply: [" + ", ".join(f'"{a}"' for a in argv) + "]\n"


def test_renewal_reloads_nginx_through_after_apply(env, nginx_for):
    cert_dir = env.out / "web" / "www"
    ngx = nginx_for(cert_dir)
    env.write_config(extra_issuers=SHORT, extra=hooks_yaml(ngx.reload_argv()))
    www = manifest("www", ["www.example.test"], issuer="short", extra="renewBefore: 30m\noutput: {directory: web/www}")
    env.repo.write("www.yaml", www)
    env.repo.commit()
    r = env.run("apply", check=0)  # nginx is not running yet: its reload fails, and is owed
    assert "afterApply hook" in r.err
    ngx.start()
    first = cert_serial(cert_dir / "tls.crt")
    assert ngx.serial() == first
    env.run("apply", check=0)  # the owed reload (nothing else to do) now succeeds
    assert not any("hooks.after_apply" in x.get("ids", {}) for x in env.state_json()["certificates"].values())
    # A renewal: a new certificate (and key) is published, then nginx is told to reload.
    env.repo.write("www.yaml", www.replace("renewBefore: 30m", "renewBefore: 3h"))
    env.repo.commit("renew")
    r = env.run("apply", check=0)
    assert "afterApply hook ran for 1 certificate" in r.err, r
    second = cert_serial(cert_dir / "tls.crt")
    assert second != first
    ngx.wait(lambda: ngx.serial() == second, "nginx serving the renewed certificate")
    assert "[emerg]" not in ngx.log()


def test_run_reloads_nginx_once_for_two_certificates(env, nginx_for, daemons):
    cert_dir = env.out / "www"
    ngx = nginx_for(cert_dir)
    counter = env.dir / "reloads"
    hook = env.dir / "reload.sh"
    hook.write_text("#!/bin/sh\necho \"$CERTSYNC_CHANGED\" >> " + str(counter) + "\nexec " +
                    " ".join(ngx.reload_argv()) + "\n")
    hook.chmod(0o755)
    env.repo.write("www.yaml", manifest("www", ["www.example.test"], issuer="short", extra="renewBefore: 30m"))
    env.repo.write("api.yaml", manifest("api", ["api.example.test"], issuer="short", extra="renewBefore: 30m"))
    env.repo.commit()
    run_config(env, interval="1s", extra_issuers=SHORT, extra=hooks_yaml([str(hook)]))
    env.run("apply", check=0)  # nginx is not up yet: the reload is owed
    ngx.start()
    env.run("apply", check=0)  # and done now
    counter.unlink()
    first = cert_serial(cert_dir / "tls.crt")
    d = daemons(env)
    d.wait_ready()
    start = len(d.messages())
    for n in ("www", "api"):
        env.repo.write(f"{n}.yaml", manifest(n, [f"{n}.example.test"], issuer="short", extra="renewBefore: 3h"))
    env.repo.commit("renew both")
    d.wait_log(r"afterApply hook ran for 2 certificates", timeout=30, start=start)
    second = cert_serial(cert_dir / "tls.crt")
    assert second != first
    ngx.wait(lambda: ngx.serial() == second, "nginx serving the renewed certificate")
    assert counter.read_text().split("\n") == ["api www", ""]  # one reload for both renewals
    d.stop()
