"""The simulator's test-control API under /_sim/ (not part of CertCentral; no auth).

Each handler takes (sim, method, query, body, match) and returns (status, JSON body).
"""
import re
import secrets

import faults
import reqtoken
from store import DEFAULT_CONFIG, ORDER_STATUSES, ApiError, iso, parse_port_map

SIM_STATUSES = ("issued", "rejected", "canceled", "revoked", "expired", "pending", "needs_approval", "processing",
                "waiting_pickup", "reissue_pending")


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def need(body, key):
    if key not in body:
        raise ControlError(400, f"missing {key!r}")
    return body[key]


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
    elif method == "POST":
        try:
            return 200, {"fault": sim.faults.add(body)}
        except (faults.FaultError, ValueError, TypeError) as e:
            raise ControlError(400, str(e))
    return 200, {"faults": sim.faults.list()}


def order_sim_view(sim, o):
    out = {k: v for k, v in o.items() if k not in ("leaf",)}
    out["date_created"] = iso(o["date_created"])
    out["order_valid_till"] = iso(o["order_valid_till"])
    leaf = o["leaf"]
    out["certificate"] = None if leaf is None else {"pem": leaf.pem, "serial": leaf.serial,
                                                    "thumbprint": leaf.thumbprint,
                                                    "not_before": leaf.not_before, "not_after": leaf.not_after}
    return out


def order_status(sim, method, query, body, m):
    st = need(body, "status")
    if st not in SIM_STATUSES:
        raise ControlError(400, f"status must be one of {', '.join(SIM_STATUSES)}")
    with sim.lock:
        try:
            o = sim.order(need(body, "id"))
        except ApiError:
            raise ControlError(404, f"no order {body['id']}")
    sim.set_status(o, st)
    with sim.lock:
        return 200, order_sim_view(sim, o)


def forget_order(sim, method, query, body, m):
    """{"id"}: the order vanishes (the API answers 404 for it from now on)."""
    with sim.lock:
        try:
            o = sim.order(need(body, "id"))
        except ApiError:
            raise ControlError(404, f"no order {body['id']}")
        del sim.orders[o["id"]]
        return 200, {"id": o["id"]}


def orders_(sim, method, query, body, m):
    with sim.lock:
        if m.group(1):
            try:
                return 200, order_sim_view(sim, sim.order(m.group(1)))
            except ApiError:
                raise ControlError(404, f"no order {m.group(1)}")
        return 200, [order_sim_view(sim, o) for o in sorted(sim.orders.values(), key=lambda o: o["id"])]


def authkey(sim, method, query, body, m):
    with sim.lock:
        if method == "POST":
            value = body.get("value") or "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz"
                                                                "23456789") for _ in range(32))
            if not isinstance(value, str):
                raise ControlError(400, "value must be a string")
            sim.set_authkey(value, body.get("id"))
        elif method == "DELETE":
            for k in sim.authkeys.values():
                k["deleted"] = True
        k = sim.permanent_key()
        return 200, {"auth_key_id": k["id"] if k else None, "auth_key": k["value"] if k else None,
                     "keys": [dict(sim.authkey_view(x), deleted=x["deleted"], active=x in sim.active_keys())
                              for x in sim.authkeys.values()]}


def token(sim, method, query, body, m):
    csr = need(body, "csr")
    ts = body.get("timestamp") or reqtoken.timestamp(sim.now() - 60)
    with sim.lock:
        key = body.get("auth_key") or (sim.permanent_key() or {}).get("value")
    if not key:
        raise ControlError(409, "no AuthKey: set one with POST /_sim/authkey")
    return 200, {"token": reqtoken.make(key, ts, csr), "timestamp": ts}


def immediate(sim, method, query, body, m):
    with sim.lock:
        if method == "POST":
            sim.config["immediate"] = bool(need(body, "enabled"))
        return 200, {"enabled": sim.config["immediate"]}


def config(sim, method, query, body, m):
    with sim.lock:
        if method == "POST":
            unknown = [k for k in body if k not in DEFAULT_CONFIG]
            if unknown:
                raise ControlError(400, f"unknown config keys {unknown}; known: {sorted(DEFAULT_CONFIG)}")
            sim.config.update(body)
            if "rate_limits" in body:
                sim.rate.set(body["rate_limits"])
        return 200, dict(sim.config)


def ratelimit_reset(sim, method, query, body, m):
    sim.rate.reset()
    return 200, sim.rate.view()


def http_map(sim, method, query, body, m):
    with sim.lock:
        if method == "POST":
            if "host" in body:
                sim.http.map.update(parse_port_map([f"{body['host']}={need(body, 'target')}"]))
            else:
                sim.http.map.update(parse_port_map([f"{h}={t}" for h, t in body.items()]))
        elif method == "DELETE":
            h = body.get("host")
            if h:
                sim.http.map.pop(h.lower(), None)
            else:
                sim.http.map.clear()
        return 200, dict(sim.http.map)


def dns_record(sim, method, query, body, m):
    with sim.lock:
        if method == "POST":
            rec = {"name": str(need(body, "name")).lower().rstrip("."), "type": str(body.get("type", "TXT")).upper(),
                   "content": str(need(body, "content"))}
            sim.dns.local.append(rec)
        elif method == "DELETE":
            name = body.get("name")
            sim.dns.local = [r for r in sim.dns.local if name is not None and r["name"] != name.lower().rstrip(".")]
        return 200, list(sim.dns.local)


def ca(sim, method, query, body, m):
    return 200, {"root": sim.ca.root_pem, "intermediates": dict(sim.ca.intermediate_pem),
                 "root_path": sim.ca.path("root.pem")}


def poll(sim, method, query, body, m):
    sim.poll_once()
    with sim.lock:
        return 200, {o["id"]: o["status"] for o in sim.orders.values()}


def reset(sim, method, query, body, m):
    sim.reset()
    return 200, {}


CONTROLS = [
    ("counters", ("GET", "DELETE"), counters),
    ("log", ("GET", "DELETE"), log),
    ("fault", ("GET", "POST", "DELETE"), fault),
    ("order_status", ("POST",), order_status),
    ("forget_order", ("POST",), forget_order),
    (r"orders(?:/([^/]+))?", ("GET",), orders_),
    ("authkey", ("GET", "POST", "DELETE"), authkey),
    ("token", ("POST",), token),
    ("immediate", ("GET", "POST"), immediate),
    ("config", ("GET", "POST"), config),
    ("ratelimit_reset", ("POST",), ratelimit_reset),
    ("http_map", ("GET", "POST", "DELETE"), http_map),
    ("dns_record", ("GET", "POST", "DELETE"), dns_record),
    ("ca", ("GET",), ca),
    ("poll", ("POST",), poll),
    ("reset", ("POST",), reset),
]
_CONTROLS = [(re.compile("^" + p + "$"), methods, fn) for p, methods, fn in CONTROLS]
assert set(ORDER_STATUSES) >= set(SIM_STATUSES)


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
                return 400, {"message": f"bad control request: {type(e).__name__}: {e}"}
    return 404, {"message": f"unknown control /_sim/{path}", "known": [p for p, _, _ in CONTROLS]}
