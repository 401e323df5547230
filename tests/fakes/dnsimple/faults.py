"""Fault injection and rate-limit windows for the DNSimple simulator.

Faults are switched on per operation id (or "*") by tests through /_sim/fault.
Rate limiting follows dnsimple.md §5.2: a fixed hourly window per credential
class, X-RateLimit-Limit/-Remaining/-Reset on every response, and
429 {"message":"quota exceeded"} once the window is spent.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import simcommon  # noqa: E402


# Modes that answer instead of running the operation.
PRE_MODES = {"500_html", "502_html", "503_html", "504_json", "timeout", "close", "429", "reply"}
# Modes that run the operation, then spoil or withhold the answer.
POST_MODES = {"hang_after", "500_after", "truncated_json", "short_body", "empty_body", "html_200", "extra_fields"}
# "delay": the operation is held `seconds` before it runs (a proxy or a queue in front of the
# provider), then answered normally; a client that gave up meanwhile still gets it done.
DELAY_MODES = {"delay"}
MODES = PRE_MODES | POST_MODES | DELAY_MODES

NGINX_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
NGINX_503 = (b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
             b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
             b"</body>\r\n</html>\r\n")
RAILS_500 = (b"<!DOCTYPE html>\n<html>\n<head>\n  <title>We're sorry, but something went wrong (500)</title>\n"
             b"</head>\n<body>\n  <div class=\"dialog\">\n    <h1>We're sorry, but something went wrong.</h1>\n"
             b"  </div>\n</body>\n</html>\n")
HTML_200 = b"<html><head><title>DNSimple</title></head><body>Hello, this is not JSON</body></html>\n"


FaultError = simcommon.FaultError


class Faults(simcommon.Faults):
    """The shared fault list with this simulator's modes."""

    def __init__(self):
        super().__init__(MODES, {"retry_after": "1", "message": None, "status": None, "body": None})


def add_extra_fields(obj):
    """Unknown fields in every object of a response (clients must ignore them)."""
    if isinstance(obj, dict):
        for v in list(obj.values()):
            add_extra_fields(v)
        obj["sim_unknown_field"] = {"nested": [1, {"deeper": None}], "flag": True}
        obj["zz_future_attribute"] = "ignore me"
    elif isinstance(obj, list):
        for v in obj:
            add_extra_fields(v)
    return obj


class RateWindow:
    """A fixed window: limit requests until reset (Unix time), then a fresh window of window seconds."""

    def __init__(self, limit, window=3600):
        self.lock = threading.Lock()
        self.window = window
        self.set(limit, limit, window)

    def set(self, limit, remaining, reset_in):
        with self.lock:
            self.limit = int(limit)
            self.remaining = int(remaining)
            self.reset = int(time.time() + float(reset_in))

    def _roll(self):
        now = time.time()
        if now >= self.reset:
            self.remaining = self.limit
            self.reset = int(now) + self.window

    def take(self):
        """Consumes one request; False when the window is spent."""
        with self.lock:
            self._roll()
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True

    def headers(self):
        # The case varies in DNSimple's own answers (docs vs fixtures): all three spellings appear here,
        # so clients must match header names case-insensitively (dnsimple.md §5.2).
        with self.lock:
            self._roll()
            return [("X-RateLimit-Limit", str(self.limit)), ("x-ratelimit-remaining", str(max(self.remaining, 0))),
                    ("X-Ratelimit-Reset", str(self.reset))]

    def view(self):
        with self.lock:
            self._roll()
            return {"limit": self.limit, "remaining": self.remaining, "reset": self.reset,
                    "reset_in": max(self.reset - time.time(), 0)}
