"""ACME Renewal Information (RFC 9773) in front of Pebble 2.4, which has none.

An HTTPS server on a free loopback port, with Pebble's own TLS certificate
(so the issuer's caFile is Pebble's ca.pem). Every request is passed through
to Pebble unchanged, the Host header included: Pebble builds every URL it
hands out, and checks the JWS "url" of every POST, from the Host header, so
the client talks to this server throughout and signs for its URLs. On the
way it

  - adds "renewalInfo" (its own URL) to the directory,
  - answers GET renewalInfo/<id> with the window the test set (and a
    Retry-After), recording the ids asked,
  - records the payloads of newOrder and revokeCert requests (to see
    "replaces" and the revocation reason).

Pebble 2.4 ignores a "replaces" it does not know (Go's JSON decoding drops
unknown fields), so only this server can tell that a renewal sent it.
"""
import base64
import datetime
import http.client
import http.server
import json
import ssl
import threading
import time
from pathlib import Path

from pg_env import free_port

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding", "te", "upgrade"}


def rfc3339(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class AriServer:
    """The front: ari.directory is the URL to configure; set_window() chooses what renewalInfo says."""

    def __init__(self, pebble):
        self.pebble = pebble
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.directory = f"https://{self.host}/dir"
        self.renewal_info = f"https://{self.host}/renewal-info"
        self.lock = threading.Lock()
        self.asked = []  # ARI ids asked, in order
        self.orders = []  # newOrder payloads (dicts), in order
        self.revocations = []  # revokeCert payloads (dicts)
        self.window = (time.time() + 86400, time.time() + 2 * 86400)
        self.retry_after = 3600
        self.client_ctx = ssl.create_default_context(cafile=str(pebble.ca_file))
        handler = self._handler_class()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(str(Path(pebble.dir) / "localhost.pem"), str(Path(pebble.dir) / "localhost.key"))
        self.httpd.socket = sctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set_window(self, start, end, retry_after=3600):
        """What renewalInfo answers from now on (unix seconds; Retry-After in seconds)."""
        with self.lock:
            self.window = (start, end)
            self.retry_after = retry_after

    def asked_ids(self):
        with self.lock:
            return list(self.asked)

    def order_payloads(self):
        with self.lock:
            return list(self.orders)

    def revocation_payloads(self):
        with self.lock:
            return list(self.revocations)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---------------------------------------------------------------- the handler

    def _handler_class(self):
        ari = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _upstream(self, body):
                conn = http.client.HTTPSConnection("127.0.0.1", ari.pebble.port, context=ari.client_ctx, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                headers["Host"] = ari.host  # Pebble's URLs (and its JWS url check) follow this
                if body:
                    headers["Content-Length"] = str(len(body))
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    return r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in HOP], data
                finally:
                    conn.close()

            def _record(self, body):
                try:
                    payload = json.loads(b64url_decode(json.loads(body)["payload"]) or b"{}")
                except (ValueError, KeyError, TypeError):
                    return
                with ari.lock:
                    if self.path.endswith("/order-plz"):
                        ari.orders.append(payload)
                    elif self.path.endswith("/revoke-cert"):
                        ari.revocations.append(payload)

            def _renewal_info(self):
                cert_id = self.path[len("/renewal-info"):].strip("/")
                with ari.lock:
                    ari.asked.append(cert_id)
                    start, end = ari.window
                    retry = ari.retry_after
                body = json.dumps({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}).encode()
                self._send(200, body, [("Content-Type", "application/json"), ("Retry-After", str(retry))])

            def _proxy(self):
                body = self._body()
                if self.command == "POST":
                    self._record(body)
                status, headers, data = self._upstream(body)
                if self.command == "GET" and self.path == "/dir" and status == 200:
                    d = json.loads(data)
                    d["renewalInfo"] = ari.renewal_info
                    data = json.dumps(d).encode()
                self._send(status, data, headers)

            def do_GET(self):
                if self.path.startswith("/renewal-info"):
                    return self._renewal_info()
                return self._proxy()

            def do_HEAD(self):
                return self._proxy()

            def do_POST(self):
                return self._proxy()

        return Handler


def ari_cert_id(pem_path):
    """RFC 9773 certificate id of a PEM certificate: base64url(AKI keyIdentifier) "." base64url(serial DER)."""
    import subprocess

    aki = subprocess.run(["openssl", "x509", "-in", str(pem_path), "-noout", "-ext", "authorityKeyIdentifier"],
                         capture_output=True, text=True, check=True).stdout
    hexid = "".join(line.strip() for line in aki.splitlines()[1:]).replace("keyid:", "").replace(":", "")
    serial = subprocess.run(["openssl", "x509", "-in", str(pem_path), "-noout", "-serial"], capture_output=True,
                            text=True, check=True).stdout.strip().split("=", 1)[1]
    sb = bytes.fromhex(serial if len(serial) % 2 == 0 else "0" + serial)
    if sb[0] & 0x80:
        sb = b"\x00" + sb  # the DER INTEGER's content octets keep the sign
    enc = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    return enc(bytes.fromhex(hexid)) + "." + enc(sb)
