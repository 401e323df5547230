#!/usr/bin/env python3
"""A tiny HTTP server for test_http.c: each path selects a behaviour.

Prints "PORT <n>" when listening on 127.0.0.1. Paths:
  /json                  200 {"ok":true} with rate-limit headers in mixed case
  /empty                 200 with an empty body and Content-Type: application/json
  /html502               502 text/html
  /status/<code>         that status with a JSON message and x-request-id: req-<code>
  /flaky/<key>/<n>       503 for the first n requests with that key, then 200
  /ratelimited/<key>     429 + Retry-After: 1 the first time, then 200
  /retry-date            429 with an HTTP-date Retry-After far in the future
  /slow                  sleeps 3 s before answering
  /big                   a 5 MiB body
  /count/<key>           200 with the number of requests seen for key
  /echo                  200 echoing method, body and selected headers as JSON
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
lock = threading.Lock()


def bump(key):
    with lock:
        counts[key] = counts.get(key, 0) + 1
        return counts[key]


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = self.path.split("?")[0].strip("/").split("/")
        bump("/" + "/".join(p))
        if p[0] == "json":
            self.send(200, '{"ok":true}', headers=[("x-ratelimit-limit", "2400"), ("X-RateLimit-Remaining", "2399"), ("Link", '<https://a.test/1>;rel="alternate"'), ("link", '<https://a.test/2>; rel="alternate"'),
                                                  ("X-RATELIMIT-RESET", "1900000000"), ("X-Request-Id", "req-42")])
        elif p[0] == "empty":
            self.send(200, "")
        elif p[0] == "html502":
            self.send(502, "<html><body>Bad Gateway</body></html>", ctype="text/html")
        elif p[0] == "status":
            self.send(int(p[1]), json.dumps({"message": f"status {p[1]}"}), headers=[("x-request-id", f"req-{p[1]}")])
        elif p[0] == "flaky":
            n = bump("flaky-" + p[1])
            if n <= int(p[2]):
                self.send(503, '{"message":"try later"}', headers=[("X-Request-ID", f"flaky-{n}")])
            else:
                self.send(200, '{"ok":true}')
        elif p[0] == "ratelimited":
            if bump("rl-" + p[1]) == 1:
                self.send(429, '{"message":"quota exceeded"}', headers=[("Retry-After", "1")])
            else:
                self.send(200, '{"ok":true}')
        elif p[0] == "retry-date":
            self.send(429, '{"message":"Monthly request cap reached"}',
                      headers=[("retry-after", "Mon, 01 Jun 2099 00:00:00 GMT")])
        elif p[0] == "slow":
            time.sleep(3)
            self.send(200, '{"ok":true}')
        elif p[0] == "big":
            self.send(200, b"x" * (5 * 1024 * 1024), ctype="text/plain")
        elif p[0] == "count":
            with lock:
                self.send(200, json.dumps({"count": counts.get("/" + "/".join(p[1:]), 0)}))
        elif p[0] == "echo":
            self.send(200, json.dumps({"method": self.command, "body": body.decode(),
                                       "auth": self.headers.get("Authorization"),
                                       "ua": self.headers.get("User-Agent")}))
        else:
            self.send(404, '{"message":"Not Found"}')

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    srv.handle_error = lambda *a: None  # clients that hang up early are expected
    print("PORT", srv.server_address[1], flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), srv.shutdown()), daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
