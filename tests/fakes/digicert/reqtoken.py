"""The AuthKey request token of immediate DV issuance (digicert.md §3), both sides.

Named reqtoken.py, not token.py: the simulator's folder is first on sys.path,
and a token.py there would shadow the standard library's `token` module
(which tokenize, linecache and traceback import).

make() builds a token; verify() does what the CA does with a TXT value or a
fileauth.txt body: scan it for candidate tokens (DCV-LIB looks for the current
or previous year as a possible token start and takes 64 characters),
recompute the HMAC over the CSR string and check the 30-day window.
"""
import datetime as dt
import hashlib
import hmac
import re

TS_LEN = 14
B36_LEN = 50
TOKEN_LEN = TS_LEN + B36_LEN
MAX_AGE_SECONDS = 30 * 86400  # §3.2: now <= timestamp + 30 days
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN_RX = re.compile(r"^[0-9]{14}[0-9a-z]{50}$")


def base36(mac):
    """The bytes as an unsigned big-endian integer in lowercase radix 36, left-padded with '0' to 50."""
    n = int.from_bytes(mac, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(DIGITS[r])
    return "".join(reversed(out)).rjust(B36_LEN, "0")


def hmac_hex(auth_key, timestamp, csr):
    return hmac.new(_b(auth_key), _b(timestamp) + _b(csr), hashlib.sha256).hexdigest()


def make(auth_key, timestamp, csr):
    """timestamp + pad50(base36(HMAC-SHA256(key = auth_key, msg = timestamp ‖ csr)))."""
    mac = hmac.new(_b(auth_key), _b(timestamp) + _b(csr), hashlib.sha256).digest()
    return timestamp + base36(mac)


def timestamp(t):
    """UTC yyyyMMddHHmmss of unix time t."""
    return dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y%m%d%H%M%S")


def parse_timestamp(ts):
    """Unix time of a yyyyMMddHHmmss UTC timestamp, or None if it is not a real date."""
    if len(ts) != TS_LEN or not ts.isdigit():
        return None
    try:
        return int(dt.datetime.strptime(ts, "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc).timestamp())
    except ValueError:
        return None


def _b(s):
    return s if isinstance(s, bytes) else s.encode("utf-8")


def csr_variants(csr, tolerant=True):
    """The CSR strings the HMAC is tried over, with a label each.

    §3.3 (rule for a mock): the csr string exactly as received; for tolerance
    also (a) without trailing whitespace and (b) the bare base64 body without
    header, footer or newlines.
    """
    out = [("exact", csr)]
    if tolerant:
        stripped = csr.rstrip()
        if stripped != csr:
            out.append(("rstrip", stripped))
        body = re.sub(r"-----(BEGIN|END) [A-Z ]+-----", "", csr)
        body = re.sub(r"\s+", "", body)
        if body and body not in (csr, stripped):
            out.append(("base64", body))
    return out


def candidates(text, now):
    """64-character substrings of text that start with the year of now, the year before or after."""
    found = []
    year = dt.datetime.fromtimestamp(int(now), dt.timezone.utc).year
    for y in (year, year - 1, year + 1):
        start = text.find(str(y))
        while start != -1:
            cand = text[start:start + TOKEN_LEN]
            if _TOKEN_RX.match(cand) and cand not in found:
                found.append(cand)
            start = text.find(str(y), start + 1)
    return found


class Result:
    """The outcome of looking at one text: ok, and why (reason) or how (variant, token)."""

    def __init__(self, ok, reason, token=None, variant=None):
        self.ok, self.reason, self.token, self.variant = ok, reason, token, variant

    def view(self):
        return {"ok": self.ok, "reason": self.reason, "token": self.token, "variant": self.variant}


# Reasons, from the least to the most informative (the best one is reported).
REASONS = ["no_token", "hmac_mismatch", "expired", "future"]


def verify(text, auth_keys, csr, now, skew=60, tolerant=True, max_age=MAX_AGE_SECONDS):
    """Whether text holds a valid request token for csr under one of auth_keys at time now.

    A token whose HMAC matches but whose timestamp is more than skew seconds in
    the future, or older than max_age, is refused (reason future / expired).
    """
    best = Result(False, "no_token")
    variants = csr_variants(csr, tolerant)
    for cand in candidates(text, now):
        ts = cand[:TS_LEN]
        t = parse_timestamp(ts)
        if t is None:
            continue
        match = None
        for key in auth_keys:
            for label, v in variants:
                if hmac.compare_digest(make(key, ts, v), cand):
                    match = label
                    break
            if match:
                break
        if not match:
            reason = "hmac_mismatch"
        elif t > now + skew:
            reason = "future"
        elif now > t + max_age:
            reason = "expired"
        else:
            return Result(True, "ok", cand, match)
        if REASONS.index(reason) > REASONS.index(best.reason):
            best = Result(False, reason, cand, match)
    return best
