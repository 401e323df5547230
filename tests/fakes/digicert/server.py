#!/usr/bin/env python3
"""A DigiCert CertCentral Services API v2 simulator for certsync's tests (standard library + the openssl CLI).

Implements the DV part of ../../../../shared/api/digicert.md: X-DC-DEVKEY auth,
AuthKeys, DV orders with body validation, immediate issuance when the AuthKey
request token verifies (recomputed over the CSR string as received, found in
TXT records held by the DNSimple simulator or in fileauth.txt served from a
loopback webroot), pending orders completed by check-dcv, order info, list,
downloads of real certificates, rolling-window rate limits and fault modes.
When this simulator and the document disagree, the document wins.

Test controls live under /_sim/ (see control.py and README.md).

usage: server.py --port 0 --state-dir DIR --api-key KEY [--dns-url http://127.0.0.1:P] [--dns-server HOST:PORT] [--zone NAME ...]
                 [--http-port-map host=127.0.0.1:P ...] [--auth-key VALUE] [--readonly-api-key KEY]
                 [--rate-limit N/SECONDS ...] [--verbose]
Prints "READY http://127.0.0.1:PORT" on stdout once listening (127.0.0.1 only), and nothing else.
"""
import argparse
import json
import os
import sys
import time
import traceback
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import api  # noqa: E402
import simcommon  # noqa: E402
import control  # noqa: E402
import faults  # noqa: E402
from simcommon import compact  # noqa: E402
from store import ApiError, Sim  # noqa: E402

BASE = "/services/v2"
MAX_BODY = 4 * 1024 * 1024
LOG_BODY_MAX = 65536


def err(code, message):
    return {"errors": [{"code": code, "message": message}]}


RATE_LIMITED = err("request_limit_exceeded", "Service unavailable, please limit request volume")


class Handler(simcommon.SimHandler):
    server_version = "Apache"
    label = "digicert-sim"
    max_body = MAX_BODY

    # ---------- plumbing ----------

    def respond(self, status, data=b"", ctype="application/json", entry=None, declared_length=None):
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data) if declared_length is None else declared_length))
        else:
            data = b""
        # Headers and body in one write (two small writes meet Nagle + delayed ACK).
        self._headers_buffer.append(b"\r\n" + data)
        self.wait_latency()  # the answer is ready: only its write is left after the injected latency
        self.flush_headers()
        if entry is not None:
            entry["status"] = status

    def dispatch(self):
        self.answer_at = None
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return self.respond(400, compact(err("bad_request_format", "The request body could not be read.")))
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
            self.respond(500, compact(err("simulator_error", f"{type(e).__name__}: {e}")))

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

    def begin(self, route, path, query, raw, devkey):
        sim = self.sim
        op = route.op if route else None
        with sim.lock:
            key = f"{self.command} {route.template}" if route else f"{self.command} {path}"
            for k in ([op] if op else []) + [key]:
                sim.counters[k] = sim.counters.get(k, 0) + 1
            headers = {k: ("<redacted>" if k.lower() == "x-dc-devkey" else v) for k, v in self.headers.items()}
            entry = {"seq": len(sim.log), "time": time.time(), "method": self.command, "path": self.path,
                     "op": op, "route": route.template if route else None, "query": query, "devkey": devkey,
                     "headers": headers, "body": raw[:LOG_BODY_MAX].decode("utf-8", errors="replace"),
                     "status": None, "error": None, "fault": None}
            if self.command in ("POST", "PUT") and "Content-Length" not in self.headers \
                    and "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                entry["no_content_length"] = True
                sim.counters["_missing_content_length"] = sim.counters.get("_missing_content_length", 0) + 1
            if "User-Agent" not in self.headers:
                sim.counters["_missing_user_agent"] = sim.counters.get("_missing_user_agent", 0) + 1
            sim.log.append(entry)
        return entry

    def role(self):
        """("full" | "view" | None, "ok" | "missing" | "wrong") for the X-DC-DEVKEY header."""
        key = self.headers.get("X-DC-DEVKEY")
        if key is None or not key.strip():
            return None, "missing"
        if key.strip() == self.sim.args.api_key:
            return "full", "ok"
        if self.sim.args.readonly_api_key and key.strip() == self.sim.args.readonly_api_key:
            return "view", "ok"
        return None, "wrong"

    def fail(self, e, entry):
        entry["error"] = e.errors[0]["code"]
        self.respond(e.status, compact(e.body()), entry=entry)

    def api(self, path, query, raw):
        sim = self.sim
        sub = path[len(BASE):] if path.startswith(BASE + "/") or path == BASE else None
        route, found = api.match(self.command, sub.rstrip("/") or "/") if sub is not None else (None, [])
        role, devkey = self.role()
        entry = self.begin(route, path, query, raw, devkey)
        # make bench's injected round trip (the server is threaded, so requests overlap): the answer is due
        # latency seconds from now, and the work below happens meanwhile
        self.start_latency(float(sim.config.get("latency") or 0))
        if role is None:
            sim.bump("_unauthorized")
            if devkey == "missing":
                return self.fail(ApiError(401, "missing_api_key", "An API key is required: send it in the "
                                                                  "X-DC-DEVKEY header."), entry)
            return self.fail(ApiError(401, "invalid_api_key", "The API key provided is invalid."), entry)
        if not sim.rate.take(self.headers.get("X-DC-DEVKEY").strip()):
            sim.bump("_ratelimited")
            entry["error"] = "request_limit_exceeded"
            return self.respond(429, compact(RATE_LIMITED), entry=entry)

        fault = sim.faults.take(route.op if route else None)
        seconds = None
        if fault:
            entry["fault"] = fault["mode"]
            sim.bump("_faults")
            seconds = fault["seconds"] if fault["seconds"] is not None else sim.config["timeout_seconds"]
            if fault["mode"] in faults.PRE_MODES:
                return self.pre_fault(fault, seconds, entry)
            if fault["mode"] in faults.DELAY_MODES:
                time.sleep(float(seconds))
                entry["delayed"] = float(seconds)

        try:
            if route is None:
                raise ApiError(404, "not_found|route", "The requested route does not exist.")
            if role == "view" and self.command != "GET":
                raise ApiError(403, "access_denied|missing_permission", "Your API key does not have permission "
                                                                        "to perform this action.")
            body = {}
            if raw.strip():
                ctype = self.headers.get("Content-Type", "").lower()
                if sim.config["require_json_content_type"] and "json" not in ctype:
                    raise ApiError(400, "bad_request_format", "Send the body as JSON with Content-Type: "
                                                              "application/json.")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    raise ApiError(400, "bad_request_format", "The request body is not a valid JSON object.")
            req = api.Request(found, query, body, self.headers, role)
            status, obj = route.handler(sim, req)
        except ApiError as e:
            entry["error"] = e.errors[0]["code"]
            status, obj = e.status, e.body()
        if fault:
            return self.post_fault(fault, seconds, status, obj, entry)
        self.send_result(status, obj, entry)

    def send_result(self, status, obj, entry):
        if obj is None:
            return self.respond(status, b"", entry=entry)
        if isinstance(obj, tuple):
            return self.respond(status, obj[1], obj[0], entry=entry)
        self.respond(status, compact(obj), entry=entry)

    def pre_fault(self, fault, seconds, entry):
        mode = fault["mode"]
        if mode == "500_html":
            return self.respond(500, faults.HTML_500, "text/html; charset=utf-8", entry)
        if mode == "502_html":
            return self.respond(502, faults.HTML_502, "text/html", entry)
        if mode == "503_html":
            return self.respond(503, faults.HTML_503, "text/html", entry)
        if mode == "429":
            return self.respond(429, compact(RATE_LIMITED), entry=entry)
        if mode == "timeout":
            return self.hang(seconds, entry, "timeout")
        if mode == "close":
            entry["status"] = "closed"
            self.close_connection = True
            return None
        raise AssertionError(mode)

    def post_fault(self, fault, seconds, status, obj, entry):
        mode = fault["mode"]
        if isinstance(obj, tuple):  # a download: spoil the bytes
            ctype, data = obj
        else:
            ctype, data = "application/json", (compact(obj) if obj is not None else b"")
        if mode == "hang_after":  # the operation took effect; the answer never comes
            return self.hang(seconds, entry, "hang_after")
        if mode == "500_after":  # the operation took effect; the answer is lost in a 500 from the front
            return self.respond(500, faults.HTML_500, "text/html; charset=utf-8", entry)
        if mode == "delay":
            return self.send_result(status, obj, entry)
        if mode == "extra_fields":
            if isinstance(obj, (dict, list)):
                data = compact(faults.add_extra_fields(obj))
            return self.respond(status, data, ctype, entry=entry)
        if mode == "stale_auth_key":
            if isinstance(obj, (dict, list)):
                data = compact(faults.stale_auth_keys(obj))
            return self.respond(status, data, ctype, entry=entry)
        if mode == "truncated_json":  # consistent headers, a body cut in the middle
            return self.respond(status, data[: len(data) // 2], ctype, entry=entry)
        if mode == "short_body":  # Content-Length of the whole body, half of it sent, connection closed
            self.close_connection = True
            return self.respond(status, data[: len(data) // 2], ctype, entry=entry, declared_length=len(data))
        if mode == "empty_body":  # the real status (204 becomes 200), a JSON content type and no body
            return self.respond(200 if status == 204 else status, b"", "application/json", entry=entry)
        raise AssertionError(mode)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="DigiCert CertCentral Services API v2 simulator")
    ap.add_argument("--port", type=int, default=0, help="0 = an ephemeral port")
    ap.add_argument("--state-dir", required=True, help="holds the simulated CA (ca/), made once and reused")
    ap.add_argument("--api-key", required=True, help="the X-DC-DEVKEY value accepted (full permissions)")
    ap.add_argument("--readonly-api-key", default=None, help="a view-only key (role 102: GET only)")
    ap.add_argument("--dns-url", default=None, help="the DNSimple simulator's base URL (its /_sim/ zone store)")
    ap.add_argument("--dns-server", default=None, metavar="HOST:PORT",
                    help="a real DNS server asked (UDP, no recursion) for TXT/CNAME tokens, e.g. a test BIND")
    ap.add_argument("--zone", action="append", default=[], help="zones to search if the DNS simulator has no "
                                                                "/_sim/zones; repeatable")
    ap.add_argument("--http-port-map", action="append", default=[], metavar="HOST=127.0.0.1:PORT",
                    help="where http://HOST/ is served (loopback only); HOST * maps every host; repeatable")
    ap.add_argument("--auth-key", default=None, help="start with this permanent AuthKey")
    ap.add_argument("--rate-limit", action="append", default=[], metavar="N/SECONDS",
                    help="rolling windows (default 1000/180 and 100/5); repeatable")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.state_dir, exist_ok=True)
    Handler.sim = Sim(args)
    Handler.sim.start_poller()
    Handler.verbose = args.verbose
    simcommon.serve(Handler, args.port)


if __name__ == "__main__":
    main()
