#!/usr/bin/env python3
"""A DNSimple API v2 simulator for certsync's tests (Python standard library + the openssl CLI).

Implements the endpoints of ../../../../shared/api/dnsimple.md with their
documented shapes, status codes and quirks: bearer auth, the {"data": ...}
envelope, pagination (per_page 30 by default, 100 at most), Let's Encrypt
purchase / issue / renewals / download / private key with asynchronous
issuance (new -> requesting -> issued) of real certificates from a simulated
Let's Encrypt CA, zone records (TXT content returned quoted, "Matching record
already exists"), webhooks with deliveries, X-RateLimit-* headers and 429s.
When this simulator and the document disagree, the document wins.

Test controls live under /_sim/ (see control.py and README.md).

usage: server.py --port 0 --state-dir DIR [--issue-delay S] [--token T] [--user-token T]
                 [--account ID] [--domain NAME ...] [--zone NAME ...] [--rate-limit N]
Prints "READY http://127.0.0.1:PORT" on stdout once listening (127.0.0.1 only), and nothing else.
"""
import argparse
import json
import os
import sys
import time
import traceback
import uuid
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import api  # noqa: E402
import simcommon  # noqa: E402
import control  # noqa: E402
import faults  # noqa: E402
from simcommon import compact  # noqa: E402
from store import ApiError, Sim  # noqa: E402

MAX_BODY = 10 * 1024 * 1024


class Handler(simcommon.SimHandler):
    server_version = "nginx"
    label = "dnsimple-sim"
    max_body = MAX_BODY

    # ---------- plumbing ----------

    def respond(self, status, data=b"", ctype="application/json", headers=(), entry=None, declared_length=None):
        self.send_response(status)
        if status != 204 and not (status == 405 and not data):
            self.send_header("Content-Type", ctype)
        if status != 204:
            self.send_header("Content-Length", str(len(data) if declared_length is None else declared_length))
        for k, v in headers:
            self.send_header(k, v)
        if entry is not None and entry.get("request_id"):  # DNSimple's X-Request-Id, on every API answer
            self.send_header("X-Request-Id", entry["request_id"])
        # Headers and body in one write: two small writes would meet Nagle + delayed ACK (40 ms each).
        self._headers_buffer.append(b"\r\n" + data)
        self.wait_latency()  # the answer is ready: only its write is left after the injected latency
        self.flush_headers()
        if entry is not None:
            entry["status"] = status
            entry["answered"] = time.time()

    def dispatch(self):
        self.answer_at = None
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return self.respond(400, compact({"message": "Bad Request"}))
        u = urlsplit(self.path)
        query = parse_qs(u.query, keep_blank_values=True)
        try:
            if u.path.startswith("/_sim/"):
                return self.control(u.path[len("/_sim/"):], query, raw)
            return self.api(u.path, query, raw)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a simulator bug: say so loudly, in the API's error shape
            traceback.print_exc(file=sys.stderr)
            self.respond(500, compact({"message": f"simulator error: {type(e).__name__}: {e}"}))

    def control(self, path, query, raw):
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as e:
            return self.respond(400, json.dumps({"message": f"invalid JSON: {e}"}).encode())
        status, obj = control.dispatch(self.sim, self.command, path, query, body)
        self.respond(status, json.dumps(obj, default=str).encode())

    # ---------- the API ----------

    def principal(self):
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        if token == self.sim.args.token:
            return "account"
        if self.sim.args.user_token and token == self.sim.args.user_token:
            return "user"
        return None

    def begin(self, route, path, query, raw):
        sim = self.sim
        op = route.op if route else None
        with sim.lock:
            key = f"{self.command} {route.template}" if route else f"{self.command} {path}"
            for k in ([op] if op else []) + [key]:
                sim.counters[k] = sim.counters.get(k, 0) + 1
            entry = {"seq": len(sim.log), "time": time.time(), "method": self.command, "path": self.path,
                     "op": op, "route": route.template if route else None, "query": query,
                     "authorization": "Authorization" in self.headers,
                     "headers": {k: v for k, v in self.headers.items()},
                     "body": raw.decode("utf-8", errors="replace"), "status": None, "fault": None}
            sim.log.append(entry)
        return entry

    def bump(self, key):
        with self.sim.lock:
            self.sim.counters[key] = self.sim.counters.get(key, 0) + 1

    def api(self, path, query, raw):
        sim = self.sim
        route, found = api.match(self.command, path)
        entry = self.begin(route, path, query, raw)
        entry["request_id"] = str(uuid.uuid4())
        # make bench's injected round trip (the server is threaded, so requests overlap): the answer is due
        # latency seconds from now, and the work below happens meanwhile
        self.start_latency(float(sim.config.get("latency") or 0))
        principal = self.principal()
        window = sim.rate if principal else sim.rate_unauth
        if not window.take():
            self.bump("_ratelimited")
            return self.respond(429, compact({"message": "quota exceeded"}), headers=window.headers(), entry=entry)
        rl = window.headers()
        if principal is None:
            self.bump("_unauthorized")
            return self.respond(401, compact({"message": "Authentication failed"}), headers=rl, entry=entry)

        fault = sim.faults.take(route.op if route else None)
        if fault:
            entry["fault"] = fault["mode"]
            self.bump("_faults")
            seconds = fault["seconds"] if fault["seconds"] is not None else sim.config["timeout_seconds"]
            if fault["mode"] in faults.PRE_MODES:
                return self.pre_fault(fault, seconds, rl, entry)
            if fault["mode"] in faults.DELAY_MODES:
                time.sleep(float(seconds))
                entry["delayed"] = float(seconds)

        if route is None:
            if found:  # the path exists with other methods (§5.1: empty body and an Allow header)
                return self.respond(405, b"", headers=rl + [("Allow", ", ".join(found))], entry=entry)
            return self.respond(404, compact({"message": "Not Found"}), headers=rl, entry=entry)

        body = {}
        if raw.strip():
            if "json" in self.headers.get("Content-Type", "").lower():
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    return self.respond(400, compact({"message": "Invalid JSON body"}), headers=rl, entry=entry)
            else:
                entry["body_ignored"] = True  # not application/json: the server does not read it
        req = api.Request(found, query, body, principal, sim.actor(principal))
        with sim.lock:
            try:
                status, obj = api.call(sim, route, req)
            except ApiError as e:
                status, obj = e.status, e.body()
        if sim.args.dump_state and self.command != "GET":
            sim.write_dump()
        if fault:
            return self.post_fault(fault, seconds, status, obj, rl, entry)
        self.respond(status, compact(obj) if obj is not None else b"", headers=rl, entry=entry)

    def pre_fault(self, fault, seconds, rl, entry):
        mode = fault["mode"]
        if mode == "500_html":
            return self.respond(500, faults.RAILS_500, "text/html; charset=utf-8", rl, entry)
        if mode == "502_html":  # from the nginx in front: no rate-limit headers
            return self.respond(502, faults.NGINX_502, "text/html", (), entry)
        if mode == "503_html":
            return self.respond(503, faults.NGINX_503, "text/html", (), entry)
        if mode == "reply":  # a canned answer: status and JSON body as armed (e.g. a 400 with field errors)
            return self.respond(int(fault["status"] or 400), compact(fault["body"] if fault["body"] is not None
                                                                      else {"message": fault["message"] or ""}),
                                headers=rl, entry=entry)
        if mode == "504_json":
            return self.respond(504, compact({"message": fault["message"] or
                                              "Could not query zone, connection timed out"}), headers=rl,
                                entry=entry)
        if mode == "429":  # a per-endpoint limit: Remaining may still be high (§5.2)
            headers = list(rl)
            if fault["retry_after"] is not None:
                headers.append(("Retry-After", str(fault["retry_after"])))
            return self.respond(429, compact({"message": fault["message"] or "quota exceeded"}), headers=headers,
                                entry=entry)
        if mode == "timeout":
            return self.hang(seconds, entry, "timeout")
        if mode == "close":
            entry["status"] = "closed"
            self.close_connection = True
            return None
        raise AssertionError(mode)

    def post_fault(self, fault, seconds, status, obj, rl, entry):
        mode = fault["mode"]
        data = compact(obj) if obj is not None else b""
        if mode == "hang_after":  # the operation took effect; the answer never comes
            return self.hang(seconds, entry, "hang_after")
        if mode == "500_after":  # the operation took effect; the answer is lost in a 500 from the front
            return self.respond(500, faults.RAILS_500, "text/html; charset=utf-8", rl, entry)
        if mode == "delay":
            return self.respond(status, data, headers=rl, entry=entry)
        if mode == "extra_fields":
            data = compact(faults.add_extra_fields(obj)) if obj is not None else b""
            return self.respond(status, data, headers=rl, entry=entry)
        if mode == "truncated_json":  # consistent headers, a body cut in the middle
            return self.respond(status, data[: len(data) // 2], headers=rl, entry=entry)
        if mode == "short_body":  # Content-Length of the whole body, half of it sent, connection closed
            self.close_connection = True
            return self.respond(status, data[: len(data) // 2], headers=rl, entry=entry, declared_length=len(data))
        if mode == "empty_body":  # Content-Type: application/json and nothing else (§6.15)
            return self.respond(200 if status == 204 else status, b"", headers=rl, entry=entry)
        if mode == "html_200":  # fixture success-with-malformed-json
            return self.respond(200, faults.HTML_200, "text/html", rl, entry)
        raise AssertionError(mode)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="DNSimple API v2 simulator")
    ap.add_argument("--port", type=int, default=0, help="0 = an ephemeral port")
    ap.add_argument("--state-dir", required=True, help="holds the simulated CA (and state.json dumps)")
    ap.add_argument("--issue-delay", type=float, default=0.0,
                    help="seconds from issue to issued (0: at once, asynchronously; negative: never)")
    ap.add_argument("--token", default="dnsimple-test-token", help="the account token")
    ap.add_argument("--user-token", default=None, help="an optional user token (whoami shows the user)")
    ap.add_argument("--account", default="1010", help="the numeric account id")
    ap.add_argument("--domain", action="append", default=[], help="a domain (and its zone); repeatable")
    ap.add_argument("--zone", action="append", default=[], help="a zone without a domain; repeatable")
    ap.add_argument("--rate-limit", type=int, default=2400, help="authenticated requests per hour")
    ap.add_argument("--rate-window", type=int, default=3600,
                    help="seconds per rate-limit window (DNSimple: one hour; make bench compresses it)")
    ap.add_argument("--unauth-rate-limit", type=int, default=30, help="unauthenticated requests per hour")
    ap.add_argument("--dump-state", action="store_true", help="write STATE_DIR/state.json after every write")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    a = ap.parse_args(argv)
    if not a.account.isdigit():
        ap.error("--account must be numeric")
    if not a.domain and not a.zone:
        a.domain = ["pizza.company"]
    return a


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.state_dir, exist_ok=True)
    Handler.sim = Sim(args)
    Handler.verbose = args.verbose
    simcommon.serve(Handler, args.port)


if __name__ == "__main__":
    main()
