#!/usr/bin/env python3
"""A tiny ACME directory with renewalInfo (RFC 9773) for test_acme_client.c (Pebble 2.4 has no ARI).

Prints "PORT <n>" when listening on 127.0.0.1; stops when stdin closes. Paths:
  /dir                   a directory whose renewalInfo is /ari/
  /ari/<anything>.short  a window, Retry-After: 5 (below the client's floor)
  /ari/<anything>.long   a window, Retry-After: 172800 (2 days, above its ceiling)
  /ari/<anything>.hour   a window, Retry-After: 3600
  /ari/<anything>.none   a window, no Retry-After
  /ari/<anything>.bad    a window that ends before it starts
  /ari/<anything>.gone   404 with a problem document
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WINDOW = {"suggestedWindow": {"start": "2030-01-02T03:04:05Z", "end": "2030-01-03T03:04:05Z"},
          "explanationURL": "https://ca.test/why"}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj, ctype="application/json", headers=()):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        base = "http://127.0.0.1:%d" % self.server.server_address[1]
        if self.path == "/dir":
            self.send(200, {"newNonce": base + "/nonce", "newAccount": base + "/acct", "newOrder": base + "/order",
                            "renewalInfo": base + "/ari/"})
            return
        kind = self.path.rsplit(".", 1)[-1]
        if not self.path.startswith("/ari/") or kind == "gone":
            self.send(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "no such certificate"},
                      ctype="application/problem+json")
        elif kind == "bad":
            self.send(200, {"suggestedWindow": {"start": "2030-01-03T00:00:00Z", "end": "2030-01-02T00:00:00Z"}})
        else:
            ra = {"short": [("Retry-After", "5")], "long": [("Retry-After", "172800")],
                  "hour": [("Retry-After", "3600")]}.get(kind, [])
            self.send(200, WINDOW, headers=ra)


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    print("PORT", srv.server_address[1], flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), srv.shutdown()), daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
