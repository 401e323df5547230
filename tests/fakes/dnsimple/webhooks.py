"""Webhook deliveries for the DNSimple simulator (dnsimple.md §4).

Every event is POSTed to every registered, unsuppressed webhook as DNSimple
does: the documented payload (data / name / actor / account / api_version /
request_identifier), Python-style JSON, content-type application/json and a
DNSimple-Webhook-Notifier user agent. Only an exact 200 acknowledges; anything
else is retried with exponential backoff (compressed: retry_base seconds,
doubling) for at most max_attempts attempts, and a webhook with suppress_after
consecutive failed attempts is suppressed (suppressed_at set, no more events).

The simulator talks to loopback only: a webhook URL on any other host is
accepted by the API but its deliveries are recorded as skipped.

Tests can hold deliveries and release them in another order, replay events
(duplicates: same request_identifier) and inject unknown events.
"""
import fnmatch
import http.client
import ipaddress
import json
import random
import ssl
import threading
import time
import uuid
from urllib.parse import urlsplit

USER_AGENT = "DNSimple-Webhook-Notifier/8fd98a84516b72d5b863b27f93fcbaef61f06c03"
SYSTEM_ACTOR = {"id": "system", "entity": "dnsimple", "pretty": "support@dnsimple.com"}


def is_loopback_host(host):
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Deliverer:
    def __init__(self, sim):
        self.sim = sim  # store.Sim: lock, config, webhooks, generation
        self.reset()

    def reset(self):
        self.events = []       # every emitted payload, in order
        self.deliveries = []   # one entry per attempt
        self.hold = False
        self.held = []

    # ---- emitting ----

    def emit(self, name, data, actor=None):
        """Builds the payload of one event and delivers it (caller holds sim.lock)."""
        acct = self.sim.account
        payload = {"data": data, "name": name, "actor": actor or SYSTEM_ACTOR,
                   "account": {"id": acct["id"], "display": acct["name"], "identifier": acct["identifier"]},
                   "api_version": "v2", "request_identifier": str(uuid.uuid4())}
        self.events.append(payload)
        patterns = self.sim.config["webhook_events"]
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return payload
        if self.hold:
            self.held.append(payload)
        else:
            for w in self.targets():
                self.spawn(w["id"], [payload])
        return payload

    def targets(self, webhook_id=None):
        return [w for w in self.sim.webhooks.values()
                if w["suppressed_at"] is None and (webhook_id is None or w["id"] == webhook_id)]

    def spawn(self, webhook_id, payloads):
        """Delivers payloads to one webhook, in order, on a thread of their own."""
        t = threading.Thread(target=self._run, args=(webhook_id, payloads, self.sim.generation), daemon=True)
        t.start()

    def send(self, payloads, webhook_id=None):
        """Sends payloads (in this order) to every target; returns the number of deliveries started."""
        n = 0
        for w in self.targets(webhook_id):
            self.spawn(w["id"], list(payloads))
            n += len(payloads)
        return n

    def flush(self, order="fifo", webhook_id=None):
        held, self.held = self.held, []
        self.hold = False
        if order == "reverse":
            held.reverse()
        elif order == "shuffle":
            random.shuffle(held)
        elif order != "fifo":
            raise ValueError(f"unknown order {order!r}")
        return self.send(held, webhook_id) if held else 0

    # ---- delivering ----

    def _run(self, webhook_id, payloads, generation):
        for p in payloads:
            self._deliver(webhook_id, p, generation)

    def _deliver(self, webhook_id, payload, generation):
        cfg = self.sim.config
        for attempt in range(1, int(cfg["webhook_max_attempts"]) + 1):
            with self.sim.lock:
                w = self.sim.webhooks.get(webhook_id)
                if generation != self.sim.generation or w is None or w["suppressed_at"] is not None:
                    return
                url = w["url"]
            status, error = self._post(url, payload, float(cfg["webhook_timeout"]))
            with self.sim.lock:
                if generation != self.sim.generation:
                    return
                self.deliveries.append({"webhook_id": webhook_id, "url": url, "name": payload["name"],
                                        "request_identifier": payload["request_identifier"], "attempt": attempt,
                                        "status": status, "error": error, "time": time.time()})
                w = self.sim.webhooks.get(webhook_id)
                if w is None:
                    return
                if status == 200:
                    w["failures"] = 0
                    return
                if error == "skipped":
                    return  # not a loopback URL: never delivered, never retried
                w["failures"] += 1
                if w["failures"] >= int(cfg["webhook_suppress_after"]):
                    w["suppressed_at"] = time.time()
                    return
            if attempt < int(cfg["webhook_max_attempts"]):
                time.sleep(float(cfg["webhook_retry_base"]) * (2 ** (attempt - 1)))

    @staticmethod
    def _post(url, payload, timeout):
        u = urlsplit(url)
        if not is_loopback_host(u.hostname):
            return None, "skipped"
        body = json.dumps(payload).encode()  # Python-style separators, as the fixture shows
        try:
            if u.scheme == "https":
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=timeout, context=ctx)
            else:
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
            path = (u.path or "/") + ("?" + u.query if u.query else "")
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                           "User-Agent": USER_AGENT})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return resp.status, None
        except Exception as e:  # connection refused, timeout, TLS failure: a failed attempt
            return None, f"{type(e).__name__}: {e}"
