"""What the provider simulators (dnsimple/, digicert/) share: the HTTP plumbing
of their request handler and server, and the armed-fault list. Each simulator
keeps what is its own provider's: routes, bodies, error shapes, fault modes,
rate limiting."""
import json
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class SimHandler(BaseHTTPRequestHandler):
    """Keep-alive, TCP_NODELAY, bounded request bodies (plain or chunked); subclasses implement dispatch()."""

    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length (204 has no body by definition)
    server_version = "sim"
    sys_version = ""
    label = "sim"  # the log prefix
    max_body = 4 * 1024 * 1024
    sim = None
    verbose = False

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write(f"{self.label}: " + (fmt % args) + "\n")

    def do_GET(self):
        self.dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if sum(map(len, chunks)) > self.max_body:
                    raise ValueError("body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > self.max_body:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    answer_at = None  # time.monotonic() when the current API answer is due (the injected latency), or None
    arrived = None  # time.monotonic() when the current request line had been read

    def parse_request(self):
        self.arrived = time.monotonic()
        return super().parse_request()

    def start_latency(self, latency):
        """make bench's injected round trip: the answer goes out latency seconds after the request line arrived.

        The simulator's own work (headers, body, auth, JSON, locks, signing) happens within that time instead of
        being added to it, so a request costs the client the latency it was told, and what is measured beyond
        the latency bound is the client's (the simulator's work only shows when it takes longer than that).
        """
        self.answer_at = (self.arrived or time.monotonic()) + latency if latency > 0 else None

    def wait_latency(self):
        """Sleeps until the answer is due (called by respond before it writes)."""
        if self.answer_at is not None:
            left = self.answer_at - time.monotonic()
            self.answer_at = None
            if left > 0:
                time.sleep(left)

    def hang(self, seconds, entry, label):
        """Accepts the request and never answers: sleeps, then closes the connection."""
        if entry is not None:
            entry["status"] = label
        time.sleep(float(seconds))
        self.close_connection = True


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        if self.RequestHandlerClass.verbose:
            traceback.print_exc(file=sys.stderr)


def serve(handler, port):
    """Listens on 127.0.0.1:port, prints "READY <url>" and serves until SIGTERM."""
    srv = SimServer(("127.0.0.1", port), handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stdout.write(f"READY http://127.0.0.1:{srv.server_address[1]}\n")
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        srv.server_close()


class FaultError(ValueError):
    pass


class Faults:
    """An ordered list of armed faults; the first one matching an operation applies.

    modes: the fault modes the simulator knows; extra: more fields of a fault
    with their defaults (taken from the spec when given)."""

    def __init__(self, modes, extra=None):
        self.modes = frozenset(modes)
        self.extra = dict(extra or {})
        self.lock = threading.Lock()
        self.items = []

    def add(self, spec):
        mode = spec.get("mode")
        if mode not in self.modes:
            raise FaultError(f"unknown fault mode {mode!r}; known: {sorted(self.modes)}")
        count = spec.get("count", -1)
        f = {"endpoint": spec.get("endpoint") or "*", "mode": mode, "count": -1 if count is None else int(count),
             "skip": int(spec.get("skip", 0)), "seconds": spec.get("seconds"), "hits": 0}
        f.update({k: spec.get(k, default) for k, default in self.extra.items()})
        with self.lock:
            self.items.append(f)
        return dict(f)

    def clear(self, endpoint=None):
        with self.lock:
            self.items = [f for f in self.items if endpoint is not None and f["endpoint"] != endpoint]

    def list(self):
        with self.lock:
            return [dict(f) for f in self.items]

    def take(self, op):
        """The fault for one request of operation op (None for none), consuming one use."""
        with self.lock:
            for f in self.items:
                if f["endpoint"] not in ("*", op) or f["count"] == 0:
                    continue
                if f["skip"] > 0:
                    f["skip"] -= 1
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                f["hits"] += 1
                return dict(f)
        return None
