"""Where the simulator looks for tokens (digicert.md §4): DNS TXT/CNAME and fileauth.txt.

DNS answers come from the DNSimple simulator's test endpoints
(`GET {dns-url}/_sim/zones`, `GET {dns-url}/_sim/zone/<zone>/records`), from
a real authoritative server (--dns-server HOST:PORT, asked over UDP without
recursion, as DigiCert's resolvers would reach it) plus records a test adds
to this simulator directly (/_sim/dns_record). HTTP
lookups go to http://<host>/.well-known/pki-validation/fileauth.txt, with the
host mapped to a loopback address through --http-port-map: nothing leaves the
machine, and an unmapped host simply is not reachable.
"""
import http.client
import json
import random
import re
import socket
import struct
import urllib.request

FILE_PATH = "/.well-known/pki-validation/fileauth.txt"
MAX_FILE_BYTES = 5000  # DCV-LIB: body read capped at 5000 bytes
MAX_REDIRECTS = 5


def unquote_txt(content):
    """TXT content as a resolver would hand it over: DNSimple quotes it ("…" "…"); strings are joined."""
    c = content.strip()
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', c)
    if c.startswith('"') and parts:
        return "".join(p.replace('\\"', '"').replace("\\\\", "\\") for p in parts)
    return c


RTYPES = {"TXT": 16, "CNAME": 5}
MAX_POINTERS = 32


def _wire_name(msg, off):
    """(name, offset after it) of a possibly compressed name at off; raises ValueError on a malformed one."""
    labels, end, hops = [], None, 0
    while True:
        if off >= len(msg):
            raise ValueError("name past the end")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg) or hops >= MAX_POINTERS:
                raise ValueError("bad compression pointer")
            end = off + 2 if end is None else end
            off, hops = ((n & 0x3F) << 8) | msg[off + 1], hops + 1
            continue
        if n == 0:
            return ".".join(labels), (off + 1 if end is None else end)
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace").lower())
        off += 1 + n


def dns_query(server, name, rtype, timeout=2.0):
    """The records of rtype (TXT: strings joined; CNAME: the target) at name, asked of server ("host:port")
    over UDP without recursion. [] on NXDOMAIN/NODATA; raises OSError/ValueError when there is no usable answer."""
    host, port = server.rsplit(":", 1)
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    q += b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split("."))
    q += b"\0" + struct.pack(">HH", RTYPES[rtype], 1)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (host.strip("[]"), int(port)))
        msg = s.recv(65535)
    rid, flags, qd, an = struct.unpack(">HHHH", msg[:8])
    if rid != qid or not flags & 0x8000 or (flags & 0xF) not in (0, 3):
        raise ValueError(f"answer id {rid} flags {flags:#x}")
    off = 12
    for _ in range(qd):
        off = _wire_name(msg, off)[1] + 4
    out = []
    for _ in range(an):
        owner, off = _wire_name(msg, off)
        t, _c, _ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if owner == name.lower().rstrip(".") and t == RTYPES[rtype]:
            if rtype == "TXT":
                parts, i = [], 0
                while i < len(rdata):
                    parts.append(rdata[i + 1:i + 1 + rdata[i]].decode("utf-8", "replace"))
                    i += 1 + rdata[i]
                out.append("".join(parts))
            else:
                out.append(_wire_name(msg, off)[0])
        off += rdlen
    return out


class DNS:
    """Reads records from the DNSimple simulator's zone store, a real DNS server and local test records."""

    def __init__(self, url, zones, timeout=5.0, server=None):
        self.server = server
        self.url = url.rstrip("/") if url else None
        self.flag_zones = [z.lower().rstrip(".") for z in zones]
        self.timeout = timeout
        self.local = []  # [{"name": fqdn, "type", "content"}]

    def _get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as r:
            return json.loads(r.read().decode("utf-8"))

    def zones(self, log):
        zs = list(self.flag_zones)
        if self.url:
            try:
                zs = [z.lower().rstrip(".") for z in self._get("/_sim/zones")] or zs
            except Exception as e:  # missing endpoint or a DNS simulator that is down
                log.append(f"dns: zones from --zone flags ({type(e).__name__}: {e})")
        return zs

    def snapshot(self, log):
        """A View for one DCV check: the zone list is read once and each zone's records at most once."""
        return View(self, log)


class View:
    def __init__(self, dns, log):
        self.dns, self.log = dns, log
        self.zone_list = dns.zones(log) if dns.url else list(dns.flag_zones)
        self.cache = {}

    def zone_of(self, fqdn):
        zs = [z for z in self.zone_list if fqdn == z or fqdn.endswith("." + z)]
        return max(zs, key=len) if zs else None

    def _zone_records(self, zone):
        if zone not in self.cache:
            try:
                recs = self.dns._get(f"/_sim/zone/{zone}/records")
                self.cache[zone] = recs if isinstance(recs, list) else recs.get("data", [])
            except Exception as e:
                self.log.append(f"dns: zone {zone}: {type(e).__name__}: {e}")
                self.cache[zone] = []
        return self.cache[zone]

    def records(self, fqdn, rtype):
        """Contents (unquoted for TXT) of the records of type rtype at fqdn."""
        fqdn = fqdn.lower().rstrip(".")
        out = [r["content"] for r in self.dns.local if r["name"] == fqdn and r["type"] == rtype]
        zone = self.zone_of(fqdn) if self.dns.url else None
        if zone is not None:  # the most specific zone holds the name
            rel = "" if fqdn == zone else fqdn[: -len(zone) - 1]
            for r in self._zone_records(zone):
                if str(r.get("type", "")).upper() == rtype and str(r.get("name", "")).lower().rstrip(".") == rel:
                    out.append(str(r.get("content", "")))
        if rtype == "TXT":
            out = [unquote_txt(c) for c in out]
        if self.dns.server:
            try:
                out += dns_query(self.dns.server, fqdn, rtype)
            except (OSError, ValueError) as e:
                self.log.append(f"dns: {self.dns.server} {rtype} {fqdn}: {type(e).__name__}: {e}")
        return out


def dns_lookup_names(name, zone, parents):
    """The owner names checked for a domain: the name and _dnsauth.<name>, then (parents) each parent
    down to the zone apex, since a DNS method on a higher-level domain also covers its subdomains (§4.2)."""
    base = name[2:] if name.startswith("*.") else name
    chain = [base]
    if parents:
        labels = base.split(".")
        for i in range(1, len(labels) - 1):
            p = ".".join(labels[i:])
            if zone is not None and not (p == zone or p.endswith("." + zone)):
                break
            chain.append(p)
    out = []
    for n in chain:
        out += [n, "_dnsauth." + n]
    return out


class HTTP:
    """Fetches fileauth.txt from loopback servers standing in for the real hosts."""

    def __init__(self, port_map, timeout=5.0):
        self.map = dict(port_map)  # host -> "127.0.0.1:port"; "*" maps every host
        self.timeout = timeout

    def target(self, host):
        t = self.map.get(host.lower()) or self.map.get("*")
        if not t:
            return None
        h, _, p = t.rpartition(":")
        if h not in ("127.0.0.1", "localhost", "::1", "[::1]") and not h.startswith("127."):
            return None  # loopback only
        return h.strip("[]"), int(p)

    def fetch(self, host, log, path=FILE_PATH):
        """The body (text, at most 5000 bytes) at http://host/path, or None; follows up to 5 redirects."""
        for _ in range(MAX_REDIRECTS + 1):
            t = self.target(host)
            if t is None:
                log.append(f"http: {host} is not mapped to a loopback port")
                return None
            conn = http.client.HTTPConnection(t[0], t[1], timeout=self.timeout)
            try:
                conn.request("GET", path, headers={"Host": host, "User-Agent": "DigiCert DCV Bot/1.1 (sim)",
                                                   "Accept": "*/*"})
                r = conn.getresponse()
                if r.status in (301, 302, 303, 307, 308):
                    loc = r.getheader("Location") or ""
                    m = re.match(r"^https?://([^/:]+)(?::\d+)?(/.*)?$", loc)
                    if loc.startswith("/"):
                        path = loc
                    elif m:
                        host, path = m.group(1), m.group(2) or "/"
                    else:
                        log.append(f"http: {host}: bad redirect {loc!r}")
                        return None
                    continue
                if r.status != 200:
                    log.append(f"http: {host}{path}: status {r.status}")
                    return None
                return r.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
            except (OSError, http.client.HTTPException) as e:
                log.append(f"http: {host}{path}: {type(e).__name__}: {e}")
                return None
            finally:
                conn.close()
        log.append(f"http: {host}: too many redirects")
        return None
