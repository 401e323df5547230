"""Fault injection and the rate limiter of the DigiCert simulator.

Faults are switched on per operation (or "*") through /_sim/fault. Rate limits
follow digicert.md §1: rolling windows counted per API key (1000 requests per
3 minutes and 100 per 5 seconds by default); over either, every request gets
429 request_limit_exceeded.
"""
import collections
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import simcommon  # noqa: E402


# Modes that answer instead of running the operation.
PRE_MODES = {"500_html", "502_html", "503_html", "timeout", "close", "429"}
# Modes that run the operation, then spoil or withhold the answer.
POST_MODES = {"hang_after", "500_after", "truncated_json", "short_body", "empty_body", "extra_fields", "stale_auth_key"}
# "delay": the operation is held `seconds` before it runs (a proxy or a queue in front of the
# provider), then answered normally; a client that gave up meanwhile still gets it done.
DELAY_MODES = {"delay"}
MODES = PRE_MODES | POST_MODES | DELAY_MODES

HTML_500 = (b"<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n"
            b"<body><h1>Internal Server Error</h1><p>The server encountered an internal error and was unable "
            b"to complete your request.</p></body></html>\n")
HTML_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
HTML_503 = (b"<html>\r\n<head><title>503 Service Unavailable</title></head>\r\n<body>\r\n"
            b"<center><h1>503 Service Unavailable</h1></center>\r\n</body>\r\n</html>\r\n")


FaultError = simcommon.FaultError


class Faults(simcommon.Faults):
    """The shared fault list with this simulator's modes."""

    def __init__(self):
        super().__init__(MODES)


def add_extra_fields(obj):
    """Unknown fields in every JSON object of a response (clients must ignore them)."""
    if isinstance(obj, dict):
        for v in list(obj.values()):
            add_extra_fields(v)
        obj["sim_unknown_field"] = "ignore me"
        obj["zz_future_attribute"] = {"nested": [1, 2, 3]}
    elif isinstance(obj, list):
        for v in obj:
            add_extra_fields(v)
    return obj


def stale_auth_keys(obj):
    """Every auth_key value in a response replaced by one that does not verify: a client holding a stale key
    (read just before a rotation) makes tokens DigiCert rejects, and must recover once it reads the real one."""
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            if k == "auth_key" and isinstance(v, str):
                obj[k] = "stale-" + v[::-1]
            else:
                stale_auth_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            stale_auth_keys(v)
    return obj


DEFAULT_LIMITS = [[1000, 180.0], [100, 5.0]]


class RateLimiter:
    """Rolling windows per API key: [[requests, seconds], ...]; a request passes only if every window has room."""

    def __init__(self, limits=None):
        self.lock = threading.Lock()
        self.limits = [list(x) for x in (limits or DEFAULT_LIMITS)]
        self.hits = collections.defaultdict(collections.deque)

    def set(self, limits):
        with self.lock:
            self.limits = [[int(n), float(s)] for n, s in limits]
            self.hits.clear()

    def reset(self):
        with self.lock:
            self.hits.clear()

    def take(self, key, now=None):
        now = time.monotonic() if now is None else now
        with self.lock:
            q = self.hits[key]
            longest = max((s for _, s in self.limits), default=0)
            while q and q[0] <= now - longest:
                q.popleft()
            for n, s in self.limits:
                recent = sum(1 for t in q if t > now - s) if s < longest else len(q)
                if recent >= n:
                    return False
            q.append(now)
            return True

    def view(self):
        with self.lock:
            return {"limits": [list(x) for x in self.limits]}
