"""The simulator's test-control API under /_sim/ (not part of DNSimple; no auth).

Each handler takes (sim, method, query, body, match) and returns (status, json
body). Answers use json.dumps' default separators (", " / ": "); some C tests
grep them.
"""
import re
import time
import uuid

from faults import FaultError
from store import DEFAULT_CONFIG, DEFAULT_PLAN, ApiError

CERT_STATES = {"new", "purchased", "configured", "submitted", "issued", "rejected", "refunded", "cancelled",
               "requesting", "failed"}


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def need(body, key):
    if key not in body:
        raise ControlError(400, f"missing {key!r}")
    return body[key]


def cert_by_id(sim, cid):
    c = sim.certs.get(int(cid))
    if c is None:
        raise ControlError(404, f"no certificate {cid}")
    return c


def counters(sim, method, query, body, m):
    with sim.lock:
        if method == "DELETE":
            sim.counters = {}
        return 200, dict(sim.counters)


def log(sim, method, query, body, m):
    with sim.lock:
        if method == "DELETE":
            sim.log = []
            return 200, []
        entries = sim.log
        if "op" in query:
            entries = [e for e in entries if e["op"] == query["op"][0]]
        if "since" in query:
            entries = [e for e in entries if e["seq"] >= int(query["since"][0])]
        return 200, [dict(e) for e in entries]


def fault(sim, method, query, body, m):
    if method == "DELETE":
        sim.faults.clear(body.get("endpoint") or (query.get("endpoint") or [None])[0])
        return 200, {"faults": sim.faults.list()}
    if method == "GET":
        return 200, {"faults": sim.faults.list()}
    try:
        f = sim.faults.add(body)
    except (FaultError, ValueError, TypeError) as e:
        raise ControlError(400, str(e))
    return 200, {"fault": f}


def ratelimit(sim, method, query, body, m):
    if method == "POST":
        limit = body.get("limit", sim.rate.limit)
        sim.rate.set(limit, body.get("remaining", limit), body.get("reset_in", 3600))
    return 200, sim.rate.view()


def config(sim, method, query, body, m):
    with sim.lock:
        if method == "POST":
            unknown = [k for k in body if k not in DEFAULT_CONFIG]
            if unknown:
                raise ControlError(400, f"unknown config keys {unknown}; known: {sorted(DEFAULT_CONFIG)}")
            sim.config.update(body)
        return 200, dict(sim.config)


def issue_delay(sim, method, query, body, m):
    with sim.lock:
        sim.config["issue_delay"] = float(need(body, "seconds"))
        return 200, {"issue_delay": sim.config["issue_delay"]}


def plan(sim, method, query, body, m):
    with sim.lock:
        if method == "POST":
            unknown = [k for k in body if k not in DEFAULT_PLAN]
            if unknown:
                raise ControlError(400, f"unknown plan features {unknown}; known: {sorted(DEFAULT_PLAN)}")
            sim.plan.update({k: bool(v) for k, v in body.items()})
        return 200, dict(sim.plan)


def certificate_state(sim, method, query, body, m):
    state = need(body, "state")
    if state not in CERT_STATES:
        raise ControlError(400, f"unknown state {state!r}")
    with sim.lock:
        c = cert_by_id(sim, need(body, "id"))
    sim.force_state(c, state)  # "issued" signs a real certificate: not under the lock
    with sim.lock:
        return 200, sim.cert_sim_view(c)


def certificates(sim, method, query, body, m):
    with sim.lock:
        return 200, [sim.cert_sim_view(c) for c in sorted(sim.certs.values(), key=lambda c: c["id"])]


def forget_certificate(sim, method, query, body, m):
    """{"id"}: the certificate vanishes (the API answers 404 for it from now on)."""
    with sim.lock:
        c = cert_by_id(sim, need(body, "id"))
        del sim.certs[c["id"]]
        return 200, {"id": c["id"]}


def seed_certificates(sim, method, query, body, m):
    """{"domain", "count", "state", and either "names": [FQDNs] or "name" + "alternate_names"}."""
    state = body.get("state", "issued")
    if state not in CERT_STATES:
        raise ControlError(400, f"unknown state {state!r}")
    with sim.lock:
        try:
            d = sim.domain(need(body, "domain"))
        except ApiError as e:
            raise ControlError(404, e.message)
    name, alt = body.get("name"), body.get("alternate_names", [])
    if "names" in body:
        names = [n.lower().rstrip(".") for n in body["names"]]
        if not names:
            raise ControlError(400, "names is empty")
        outside = [n for n in names if n != d["name"] and not n.endswith("." + d["name"])]
        if outside:
            raise ControlError(400, f"names outside {d['name']}: {outside}")
        first = names[0]
        name = "" if first == d["name"] else first[: -len(d["name"]) - 1]
        alt = [n for n in names[1:] if not (name == "www" and n == d["name"])]
    made = sim.seed(d, int(body.get("count", 1)), name, alt, state, bool(body.get("auto_renew", False)),
                    body.get("signature_algorithm", "ECDSA"), body.get("expires_in"))
    return 200, {"ids": [c["id"] for c in made]}


def renew(sim, method, query, body, m):
    with sim.lock:
        old = cert_by_id(sim, need(body, "id"))
        new = sim.auto_renew(old, fail=bool(body.get("fail", False)))
        if new is None:
            return 200, {"id": None, "event": "certificate.auto_renewal_failed"}
        return 200, {"id": new["id"], "certificate": sim.cert_sim_view(new)}


def remove_private_key(sim, method, query, body, m):
    with sim.lock:
        c = cert_by_id(sim, need(body, "id"))
        sim.remove_private_key(c)
        return 200, sim.cert_sim_view(c)


def webhook_replay(sim, method, query, body, m):
    mode = body.get("mode", "duplicate")
    hook = body.get("webhook_id")
    with sim.lock:
        d = sim.deliverer
        events = d.events
        if mode == "duplicate":
            rid = body.get("request_identifier")
            ev = next((e for e in reversed(events) if rid in (None, e["request_identifier"])), None)
            if ev is None:
                raise ControlError(409, "no event to duplicate")
            return 200, {"sent": d.send([ev] * int(body.get("copies", 2)), hook),
                         "request_identifier": ev["request_identifier"]}
        if mode == "out_of_order":
            n = int(body.get("count", 3))
            if not events:
                raise ControlError(409, "no events to replay")
            batch = list(reversed(events[-n:]))
            return 200, {"sent": d.send(batch, hook), "order": [e["request_identifier"] for e in batch]}
        if mode == "unknown_event":
            last = events[-1] if events else None
            ev = {"data": body.get("data", last["data"] if last else {}),
                  "name": body.get("name", "sim.unknown_event"),
                  "actor": {"id": "system", "entity": "dnsimple", "pretty": "support@dnsimple.com"},
                  "account": {"id": sim.account["id"], "display": sim.account["name"],
                              "identifier": sim.account["identifier"]},
                  "api_version": "v2", "request_identifier": str(uuid.uuid4())}
            return 200, {"sent": d.send([ev], hook), "request_identifier": ev["request_identifier"]}
    raise ControlError(400, f"unknown mode {mode!r}")


def webhook_hold(sim, method, query, body, m):
    with sim.lock:
        sim.deliverer.hold = bool(body.get("hold", True))
        return 200, {"hold": sim.deliverer.hold, "held": len(sim.deliverer.held)}


def webhook_flush(sim, method, query, body, m):
    with sim.lock:
        try:
            return 200, {"sent": sim.deliverer.flush(body.get("order", "fifo"), body.get("webhook_id"))}
        except ValueError as e:
            raise ControlError(400, str(e))


def webhook_deliveries(sim, method, query, body, m):
    with sim.lock:
        return 200, list(sim.deliverer.deliveries)


def events(sim, method, query, body, m):
    with sim.lock:
        return 200, list(sim.deliverer.events)


def webhook_suppress(sim, method, query, body, m):
    with sim.lock:
        w = sim.webhooks.get(int(need(body, "id")))
        if w is None:
            raise ControlError(404, "no such webhook")
        suppressed = bool(body.get("suppressed", True))
        w["suppressed_at"] = time.time() if suppressed else None
        w["failures"] = 0
        return 200, sim.webhook_view(w)


def zone_records(sim, method, query, body, m):
    with sim.lock:
        z = sim.zones.get(m.group(1).lower())
        if z is None:
            raise ControlError(404, f"no zone {m.group(1)}")
        allrec = query.get("all", ["0"])[0] not in ("0", "", "false")
        return 200, [sim.record_view(r) for r in z["records"] if allrec or not r["system"]]


def zones(sim, method, query, body, m):
    """GET: the zone names; POST {"names": [...]}: adds zones (without domains)."""
    with sim.lock:
        if method == "POST":
            names = need(body, "names")
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise ControlError(400, "names: a list of zone names")
            for n in names:
                sim.add_zone(n)
        return 200, sorted(sim.zones)


def ca(sim, method, query, body, m):
    return 200, {"root": sim.ca.root_pem, "intermediates": dict(sim.ca.chain_pem),
                 "root_path": sim.ca.path("root.pem")}


def state(sim, method, query, body, m):
    return 200, sim.dump()


def dump(sim, method, query, body, m):
    return 200, {"path": sim.write_dump()}


def reset(sim, method, query, body, m):
    sim.reset()
    return 200, {}


CONTROLS = [
    ("counters", ("GET", "DELETE"), counters),
    ("log", ("GET", "DELETE"), log),
    ("fault", ("GET", "POST", "DELETE"), fault),
    ("ratelimit", ("GET", "POST"), ratelimit),
    ("config", ("GET", "POST"), config),
    ("issue_delay", ("POST",), issue_delay),
    ("plan", ("GET", "POST"), plan),
    ("certificate_state", ("POST",), certificate_state),
    ("certificates", ("GET",), certificates),
    ("seed_certificates", ("POST",), seed_certificates),
    ("forget_certificate", ("POST",), forget_certificate),
    ("renew", ("POST",), renew),
    ("remove_private_key", ("POST",), remove_private_key),
    ("webhook_replay", ("POST",), webhook_replay),
    ("webhook_hold", ("POST",), webhook_hold),
    ("webhook_flush", ("POST",), webhook_flush),
    ("webhook_deliveries", ("GET",), webhook_deliveries),
    ("webhook_suppress", ("POST",), webhook_suppress),
    ("events", ("GET",), events),
    (r"zone/([^/]+)/records", ("GET",), zone_records),
    ("zones", ("GET", "POST"), zones),
    ("ca", ("GET",), ca),
    ("state", ("GET",), state),
    ("dump", ("POST",), dump),
    ("reset", ("POST",), reset),
]
_CONTROLS = [(re.compile("^" + p + "$"), methods, fn) for p, methods, fn in CONTROLS]


def dispatch(sim, method, path, query, body):
    """(status, body) for a /_sim/ call; path is what follows /_sim/."""
    for rx, methods, fn in _CONTROLS:
        m = rx.match(path)
        if m:
            if method not in methods:
                return 405, {"message": f"use {' or '.join(methods)}"}
            try:
                return fn(sim, method, query, body, m)
            except ControlError as e:
                return e.status, {"message": e.message}
            except (KeyError, ValueError, TypeError) as e:
                return 400, {"message": f"bad control request: {e}"}
    return 404, {"message": f"unknown control /_sim/{path}",
                 "known": [p for p, _, _ in CONTROLS]}
