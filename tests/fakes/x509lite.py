"""Just enough X.509 for the provider simulators, in pure Python (standard library only).

The simulators used to sign every leaf with three or four `openssl` processes
(~40 ms of CPU each on a small VM, most of it process start). This module does
the per-leaf work in-process instead, producing the same shapes `openssl req` +
`openssl ca` + `openssl pkey` produced:

- DER encoding and a minimal DER reader (definite lengths only, as DER requires);
- NIST P-256 and P-384 (Jacobian coordinates, a fixed-base comb table for the
  generator, not constant-time: test infrastructure only), key generation with
  `secrets`, ECDSA signing and verification;
- RSA PKCS#1 v1.5 signing (CRT) and verification, for keys that openssl made;
- certificates (version 3, random 159-bit serial, explicit validity, the leaf
  extensions of the simulated CAs), PKCS#10 requests and their parsing, private
  keys in SEC1, PKCS#1 and PKCS#8.

The CA certificates themselves are still made once by openssl; their keys are
read here from the PEM files openssl wrote.
"""
import base64
import datetime as dt
import hashlib
import re
import secrets

# --------------------------------------------------------------------------- DER


def _len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, content):
    return bytes([tag]) + _len(len(content)) + content


def seq(*items):
    return tlv(0x30, b"".join(items))


def set_of(*items):
    return tlv(0x31, b"".join(sorted(items)))


def integer(n):
    if n < 0:
        raise ValueError("negative INTEGER")
    return tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def oid(dotted):
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def octets(b):
    return tlv(0x04, b)


def bits(b):
    return tlv(0x03, b"\x00" + b)


def boolean(v):
    return tlv(0x01, b"\xff" if v else b"\x00")


def utf8(s):
    return tlv(0x0C, s.encode())


NULL = b"\x05\x00"


def ctx(n, content, constructed=True):
    """A context-specific tag [n]: explicit (constructed, content is the inner TLV) or implicit (primitive)."""
    return tlv((0xA0 if constructed else 0x80) | n, content)


def der_time(t):
    """UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5), from Unix seconds."""
    d = dt.datetime.fromtimestamp(int(t), dt.timezone.utc)
    if 1950 <= d.year < 2050:
        return tlv(0x17, d.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(0x18, d.strftime("%Y%m%d%H%M%SZ").encode())


class DERError(ValueError):
    pass


class Node:
    """One TLV of a DER blob: tag, the whole encoding (raw) and the content."""

    __slots__ = ("tag", "raw", "content")

    def __init__(self, tag, raw, content):
        self.tag, self.raw, self.content = tag, raw, content

    def children(self):
        return parse_all(self.content)

    def int(self):
        if self.tag != 0x02 or not self.content:
            raise DERError("expected an INTEGER")
        return int.from_bytes(self.content, "big", signed=True)

    def oid(self):
        if self.tag != 0x06 or not self.content:
            raise DERError("expected an OBJECT IDENTIFIER")
        c = self.content
        first = c[0]
        parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
        v = 0
        for b in c[1:]:
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                parts.append(v)
                v = 0
        return ".".join(map(str, parts))

    def bitstring(self):
        if self.tag != 0x03 or not self.content or self.content[0] > 7:
            raise DERError("expected a BIT STRING")
        return self.content[1:]


def parse_one(data, pos=0):
    """(Node, next position) of the TLV at pos. Raises DERError on anything truncated or not DER."""
    if pos + 2 > len(data):
        raise DERError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("multi-byte tags are not supported")
    n = data[pos + 1]
    i = pos + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or i + k > len(data):
            raise DERError("bad DER length")
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    if i + n > len(data):
        raise DERError("truncated DER")
    return Node(tag, bytes(data[pos:i + n]), bytes(data[i:i + n])), i + n


def parse(data):
    node, end = parse_one(data)
    if end != len(data):
        raise DERError("trailing data after DER")
    return node


def parse_all(data):
    out, pos = [], 0
    while pos < len(data):
        node, pos = parse_one(data, pos)
        out.append(node)
    return out


PEM_RX = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def pem(label, der):
    b = base64.b64encode(der).decode()
    return f"-----BEGIN {label}-----\n" + "".join(b[i:i + 64] + "\n" for i in range(0, len(b), 64)) + \
        f"-----END {label}-----\n"


def unpem(text, label=None):
    """(label, DER) of the first PEM block in text (of that label, if given)."""
    for m in PEM_RX.finditer(text):
        if label is None or m.group(1) == label:
            return m.group(1), base64.b64decode(re.sub(r"\s+", "", m.group(2)))
    raise DERError(f"no PEM block{' ' + label if label else ''}")


# --------------------------------------------------------------------------- OIDs

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_CN = "2.5.4.3"
OID_O = "2.5.4.10"
OID_EXT_REQ = "1.2.840.113549.1.9.14"
OID_SAN = "2.5.29.17"
SIG_OIDS = {  # signature algorithm OID: (key type, hash)
    "1.2.840.10045.4.3.2": ("ec", "sha256"), "1.2.840.10045.4.3.3": ("ec", "sha384"),
    "1.2.840.10045.4.3.4": ("ec", "sha512"), "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"), "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10045.4.1": ("ec", "sha1"), "1.2.840.113549.1.1.5": ("rsa", "sha1"),  # old, still verified by openssl
}
SIG_NAMES = {  # as openssl names them in -text output
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256", "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512", "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption", "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption", "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1", "1.3.101.112": "ED25519", "1.3.101.113": "ED448",
}
SIG_ALG = {("ec", h): seq(oid(o)) for o, (k, h) in SIG_OIDS.items() if k == "ec" and h != "sha1"}
SIG_ALG.update({("rsa", h): seq(oid(o), NULL) for o, (k, h) in SIG_OIDS.items() if k == "rsa" and h != "sha1"})
DIGEST_INFO = {  # RFC 8017 9.2 note 1
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

# --------------------------------------------------------------------------- elliptic curves


class Curve:
    """A short-Weierstrass curve y^2 = x^3 - 3x + b over GF(p), prime order n."""

    def __init__(self, name, oid_, p, b, gx, gy, n):
        self.name, self.oid, self.p, self.b, self.n = name, oid_, p, b, n
        self.g = (gx, gy)
        self.size = (p.bit_length() + 7) // 8
        self.bits = p.bit_length()
        self._comb = None

    def on_curve(self, pt):
        x, y = pt
        p = self.p
        return 0 <= x < p and 0 <= y < p and (y * y - (x * x * x - 3 * x + self.b)) % p == 0

    # Jacobian (X, Y, Z) ~ (X/Z^2, Y/Z^3); None is the point at infinity.
    def _double(self, P):
        if P is None:
            return None
        X1, Y1, Z1 = P
        if Y1 == 0:
            return None
        p = self.p
        delta = Z1 * Z1 % p
        gamma = Y1 * Y1 % p
        beta = X1 * gamma % p
        alpha = 3 * (X1 - delta) * (X1 + delta) % p
        X3 = (alpha * alpha - 8 * beta) % p
        Z3 = ((Y1 + Z1) ** 2 - gamma - delta) % p
        Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % p
        return (X3, Y3, Z3)

    def _add(self, P, Q):
        """Jacobian + Jacobian."""
        if P is None:
            return Q
        if Q is None:
            return P
        p = self.p
        X1, Y1, Z1 = P
        X2, Y2, Z2 = Q
        Z1Z1, Z2Z2 = Z1 * Z1 % p, Z2 * Z2 % p
        U1, U2 = X1 * Z2Z2 % p, X2 * Z1Z1 % p
        S1, S2 = Y1 * Z2 * Z2Z2 % p, Y2 * Z1 * Z1Z1 % p
        H, r = (U2 - U1) % p, (S2 - S1) % p
        if H == 0:
            return self._double(P) if r == 0 else None
        HH = H * H % p
        HHH = H * HH % p
        V = U1 * HH % p
        X3 = (r * r - HHH - 2 * V) % p
        Y3 = (r * (V - X3) - S1 * HHH) % p
        Z3 = Z1 * Z2 * H % p
        return (X3, Y3, Z3)

    def _add_affine(self, P, q):
        """Jacobian + affine (mixed addition); q is an (x, y) tuple."""
        if P is None:
            return (q[0], q[1], 1)
        p = self.p
        X1, Y1, Z1 = P
        Z1Z1 = Z1 * Z1 % p
        U2 = q[0] * Z1Z1 % p
        S2 = q[1] * Z1 * Z1Z1 % p
        H, r = (U2 - X1) % p, (S2 - Y1) % p
        if H == 0:
            return self._double(P) if r == 0 else None
        HH = H * H % p
        HHH = H * HH % p
        V = X1 * HH % p
        X3 = (r * r - HHH - 2 * V) % p
        Y3 = (r * (V - X3) - Y1 * HHH) % p
        Z3 = Z1 * H % p
        return (X3, Y3, Z3)

    def affine(self, P):
        if P is None:
            return None
        X, Y, Z = P
        zi = pow(Z, -1, self.p)
        zi2 = zi * zi % self.p
        return (X * zi2 % self.p, Y * zi2 * zi % self.p)

    def mul(self, k, pt):
        """k * pt for an affine point (4-bit fixed window)."""
        table = [None, (pt[0], pt[1], 1)]
        for _ in range(14):
            table.append(self._add_affine(table[-1], pt))
        R = None
        for shift in range(((k.bit_length() + 3) // 4) * 4 - 4, -4, -4):
            R = self._double(self._double(self._double(self._double(R))))
            d = (k >> shift) & 15
            if d:
                R = self._add(R, table[d])
        return self.affine(R)

    def _comb_table(self):
        """comb[i][d] = d * 16^i * G (affine), for d in 1..15 (index 0 unused)."""
        if self._comb is None:
            comb = []
            base = self.g
            for _ in range((self.n.bit_length() + 3) // 4):
                row = [None, base]
                acc = (base[0], base[1], 1)
                for _ in range(14):
                    acc = self._add_affine(acc, base)
                    row.append(self.affine(acc))
                comb.append(row)
                base = self.affine(self._add_affine(acc, base))  # 16 * base
            self._comb = comb
        return self._comb

    def mul_g(self, k):
        """k * G with the precomputed comb: no doublings, one mixed addition per nibble."""
        comb = self._comb_table()
        R = None
        i = 0
        while k:
            d = k & 15
            if d:
                R = self._add_affine(R, comb[i][d])
            k >>= 4
            i += 1
        return self.affine(R)

    def point_bytes(self, pt):
        return b"\x04" + pt[0].to_bytes(self.size, "big") + pt[1].to_bytes(self.size, "big")

    def point_from_bytes(self, b):
        if len(b) != 1 + 2 * self.size or b[0] != 4:
            raise ValueError(f"{self.name}: only uncompressed points are supported")
        pt = (int.from_bytes(b[1:1 + self.size], "big"), int.from_bytes(b[1 + self.size:], "big"))
        if not self.on_curve(pt):
            raise ValueError(f"{self.name}: the public key is not on the curve")
        return pt


P256 = Curve("prime256v1", "1.2.840.10045.3.1.7",
             0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff,
             0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b,
             0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
             0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5,
             0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551)
P384 = Curve("secp384r1", "1.3.132.0.34",
             int("ffffffffffffffffffffffffffffffffffffffffffffffff"
                 "fffffffffffffffeffffffff0000000000000000ffffffff", 16),
             int("b3312fa7e23ee7e4988e056be3f82d19181d9c6efe814112"
                 "0314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef", 16),
             int("aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b98"
                 "59f741e082542a385502f25dbf55296c3a545e3872760ab7", 16),
             int("3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147c"
                 "e9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f", 16),
             int("ffffffffffffffffffffffffffffffffffffffffffffffff"
                 "c7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16))
CURVES = {c.oid: c for c in (P256, P384)}
CURVE_NAMES = {"1.3.132.0.35": "secp521r1", "1.3.132.0.10": "secp256k1"}  # known but not computed on here


def _hash_int(digest, n):
    e = int.from_bytes(digest, "big")
    excess = len(digest) * 8 - n.bit_length()
    return e >> excess if excess > 0 else e


class ECKey:
    """An EC private key (d) on a curve, with its public point."""

    def __init__(self, curve, d, pub=None):
        self.curve, self.d = curve, d
        self.pub = pub or curve.mul_g(d)
        self.type = "ec"

    @classmethod
    def generate(cls, curve):
        return cls(curve, secrets.randbelow(curve.n - 1) + 1)

    def spki(self):
        return seq(seq(oid(OID_EC_PUBLIC_KEY), oid(self.curve.oid)), bits(self.curve.point_bytes(self.pub)))

    def public_bits(self):
        return self.curve.point_bytes(self.pub)

    def sign(self, data, hash_name):
        c = self.curve
        e = _hash_int(hashlib.new(hash_name, data).digest(), c.n)
        while True:
            k = secrets.randbelow(c.n - 1) + 1
            r = c.mul_g(k)[0] % c.n
            if r == 0:
                continue
            s = pow(k, -1, c.n) * (e + r * self.d) % c.n
            if s:
                return seq(integer(r), integer(s))

    def sec1(self):
        """ECPrivateKey (RFC 5915) with the curve parameters and the public key, as `openssl pkey -traditional`."""
        c = self.curve
        return seq(integer(1), octets(self.d.to_bytes(c.size, "big")), ctx(0, oid(c.oid)),
                   ctx(1, bits(c.point_bytes(self.pub))))

    def pkcs8(self):
        """PrivateKeyInfo as `openssl pkey` writes it: the inner ECPrivateKey without parameters."""
        c = self.curve
        inner = seq(integer(1), octets(self.d.to_bytes(c.size, "big")), ctx(1, bits(c.point_bytes(self.pub))))
        return seq(integer(0), seq(oid(OID_EC_PUBLIC_KEY), oid(c.oid)), octets(inner))

    def pem(self, fmt="sec1"):
        return pem("EC PRIVATE KEY", self.sec1()) if fmt == "sec1" else pem("PRIVATE KEY", self.pkcs8())


def ec_verify(curve, pub, data, hash_name, sig_der):
    """True if sig_der (ECDSA-Sig-Value) is pub's signature of data."""
    try:
        s_node = parse(sig_der)
        r, s = (n.int() for n in s_node.children())
    except (DERError, ValueError):
        return False
    n = curve.n
    if not (0 < r < n and 0 < s < n):
        return False
    e = _hash_int(hashlib.new(hash_name, data).digest(), n)
    w = pow(s, -1, n)
    a = curve.mul_g(e * w % n)
    b = curve.mul(r * w % n, pub)
    if a is None or b is None:
        pt = a or b
    else:
        pt = curve.affine(curve._add_affine((a[0], a[1], 1), b))
    return pt is not None and pt[0] % n == r


# --------------------------------------------------------------------------- RSA


class RSAKey:
    """An RSA private key (from PKCS#1 or PKCS#8 DER), signing with PKCS#1 v1.5 and the CRT."""

    def __init__(self, n, e, d, p, q, dp, dq, qinv):
        self.n, self.e, self.d, self.p, self.q, self.dp, self.dq, self.qinv = n, e, d, p, q, dp, dq, qinv
        self.type = "rsa"

    @classmethod
    def from_pkcs1(cls, der):
        f = [x.int() for x in parse(der).children()]
        if len(f) < 9 or f[0] != 0:
            raise DERError("not a two-prime RSAPrivateKey")
        return cls(*f[1:9])

    def spki(self):
        return seq(seq(oid(OID_RSA), NULL), bits(seq(integer(self.n), integer(self.e))))

    def public_bits(self):
        return seq(integer(self.n), integer(self.e))

    def sign(self, data, hash_name):
        k = (self.n.bit_length() + 7) // 8
        t = DIGEST_INFO[hash_name] + hashlib.new(hash_name, data).digest()
        m = int.from_bytes(b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t, "big")
        m1, m2 = pow(m, self.dp, self.p), pow(m, self.dq, self.q)
        s = m2 + self.q * (self.qinv * (m1 - m2) % self.p)
        if pow(s, self.e, self.n) != m:  # a fault check, as openssl does
            raise ValueError("RSA signature check failed")
        return s.to_bytes(k, "big")


def rsa_verify(n, e, data, hash_name, sig):
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    t = DIGEST_INFO[hash_name] + hashlib.new(hash_name, data).digest()
    if k < len(t) + 11:
        return False
    return pow(s, e, n).to_bytes(k, "big") == b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def load_private_key(text):
    """ECKey or RSAKey from a PEM private key: PKCS#8 (unencrypted), SEC1 or PKCS#1."""
    label, der = unpem(text)
    if label == "RSA PRIVATE KEY":
        return RSAKey.from_pkcs1(der)
    if label == "EC PRIVATE KEY":
        return _ec_from_sec1(der, None)
    if label != "PRIVATE KEY":
        raise DERError(f"unsupported private key PEM {label}")
    _ver, alg, key = parse(der).children()[:3]
    alg = alg.children()
    if alg[0].oid() == OID_RSA:
        return RSAKey.from_pkcs1(key.content)
    if alg[0].oid() == OID_EC_PUBLIC_KEY:
        return _ec_from_sec1(key.content, CURVES[alg[1].oid()])
    raise DERError("unsupported private key algorithm " + alg[0].oid())


def _ec_from_sec1(der, curve):
    f = parse(der).children()
    d = int.from_bytes(f[1].content, "big")
    pub = None
    for x in f[2:]:
        if x.tag == 0xA0:
            curve = CURVES[x.children()[0].oid()]
        elif x.tag == 0xA1:
            pub = x.children()[0].bitstring()
    if curve is None:
        raise DERError("EC private key without a curve")
    return ECKey(curve, d, curve.point_from_bytes(pub) if pub else None)


# --------------------------------------------------------------------------- names, requests, certificates


def name(cn=None, o=None):
    """A Name with one RDN, as `openssl req -subj /CN=x` (or /O=x) writes it: UTF8String."""
    rdns = []
    if o is not None:
        rdns.append(set_of(seq(oid(OID_O), utf8(o))))
    if cn is not None:
        rdns.append(set_of(seq(oid(OID_CN), utf8(cn))))
    return seq(*rdns)


def leaf_subject(names):
    """openssl's -subj for a leaf: /CN=first name, or /O=Simulated when it is over 64 characters
    (Let's Encrypt then leaves the CN out)."""
    return name(cn=names[0]) if len(names[0]) <= 64 else name(o="Simulated")


def _signed(tbs, key, hash_name):
    return seq(tbs, SIG_ALG[(key.type, hash_name)], bits(key.sign(tbs, hash_name)))


def make_csr(key, subject_der, hash_name="sha256", sans=None):
    """A PKCS#10 request signed by key. Without sans its attributes are empty, as `openssl req -new -subj`."""
    attrs = b""
    if sans:
        ext = seq(oid(OID_SAN), octets(seq(*(ctx(2, n.encode("ascii"), constructed=False) for n in sans))))
        attrs = seq(oid(OID_EXT_REQ), set_of(seq(ext)))
    return _signed(seq(integer(0), subject_der, key.spki(), ctx(0, attrs)), key, hash_name)


EKU_SERVER_CLIENT = seq(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))
KEY_USAGE = {  # named bits, as the DER BIT STRING (unused-bits byte first) openssl writes
    "digitalSignature": b"\x07\x80",
    "digitalSignature,keyEncipherment": b"\x05\xa0",
}


def cert_serial_hex(der):
    """The serial number of a certificate (DER) as `openssl x509 -serial` prints it: the content bytes, hex."""
    tbs = parse(der).children()[0].children()
    return tbs[1 if tbs[0].tag == 0xA0 else 0].content.hex().upper()


def _ext(oid_, value, critical=False):
    return seq(oid(oid_), boolean(True), octets(value)) if critical else seq(oid(oid_), octets(value))


class Issuer:
    """A CA certificate and its key, as openssl made them: signs leaves the way `openssl ca` with the
    simulators' [leaf] sections did."""

    def __init__(self, cert_pem, key_pem):
        _, der = unpem(cert_pem, "CERTIFICATE")
        tbs = parse(der).children()[0].children()
        i = 1 if tbs[0].tag == 0xA0 else 0
        self.subject_der = tbs[i + 4].raw
        self.ski = None
        for node in tbs[i + 6:]:
            if node.tag == 0xA3:
                for ext in node.children()[0].children():
                    f = ext.children()
                    if f[0].oid() == "2.5.29.14":
                        self.ski = parse(f[-1].content).content
        if self.ski is None:
            raise DERError("the issuer certificate has no subject key identifier")
        self.key = load_private_key(key_pem)
        self.cert_pem = cert_pem

    def sign_leaf(self, public_key, subject_der, names, not_before, not_after, key_usage, hash_name="sha256",
                  policies=None):
        """The leaf certificate (DER) for public_key: an ECKey/RSAKey, or a CSR (its SubjectPublicKeyInfo is
        copied as is, as `openssl ca` does). policies: certificatePolicies OIDs (before the SANs)."""
        if isinstance(public_key, CSR):
            spki, pub_bits = public_key.spki.raw, public_key.public_bits
        else:
            spki, pub_bits = public_key.spki(), public_key.public_bits()
        exts = [
            _ext("2.5.29.19", seq(), critical=True),
            _ext("2.5.29.15", tlv(0x03, KEY_USAGE[key_usage]), critical=True),
            _ext("2.5.29.37", EKU_SERVER_CLIENT),
            _ext("2.5.29.14", octets(hashlib.sha1(pub_bits).digest())),
            _ext("2.5.29.35", seq(ctx(0, self.ski, constructed=False))),
        ]
        if policies:
            exts.append(_ext("2.5.29.32", seq(*(seq(oid(p)) for p in policies))))
        exts.append(_ext(OID_SAN, seq(*(ctx(2, n.encode("ascii"), constructed=False) for n in names))))
        serial = secrets.randbits(159) or 1  # openssl ca -rand_serial: 159 random bits
        tbs = seq(ctx(0, integer(2)), integer(serial), SIG_ALG[(self.key.type, hash_name)], self.subject_der,
                  seq(der_time(not_before), der_time(not_after)), subject_der, spki, ctx(3, seq(*exts)))
        return _signed(tbs, self.key, hash_name)


def cached_issuer(cache, key, read, stem, error):
    """The Issuer of intermediate `stem` (read(stem + ".pem"), read(stem + ".key"): the PEMs openssl wrote),
    loaded once into cache[key]; one that cannot be loaded raises error(message)."""
    iss = cache.get(key)
    if iss is None:
        try:
            iss = Issuer(read(stem + ".pem"), read(stem + ".key"))
        except (ValueError, KeyError, IndexError) as e:
            raise error(f"cannot load the {stem} intermediate: {e}") from e
        cache[key] = iss
    return iss

class CSR:
    """What a PKCS#10 request holds, parsed from DER and its signature checked (sig_ok; None with verify=False,
    for a request checked before)."""

    def __init__(self, der, verify=True):
        root = parse(der)
        parts = root.children()
        if root.tag != 0x30 or len(parts) != 3:
            raise DERError("not a certificate request")
        info, alg, sig = parts
        f = info.children()
        if info.tag != 0x30 or len(f) < 3 or f[0].int() != 0:
            raise DERError("not a version 1 certificate request")
        self.subject = f[1]
        self.spki = f[2]
        self.sig_oid = alg.children()[0].oid()
        self.sig_alg = SIG_NAMES.get(self.sig_oid, self.sig_oid)
        self.subject_cn = None
        for rdn in self.subject.children():
            for atv in rdn.children():
                a = atv.children()
                if a[0].oid() == OID_CN:
                    self.subject_cn = a[1].content.decode("utf-8", "replace")
        kalg = self.spki.children()[0].children()
        self.key_oid = kalg[0].oid()
        self.public_bits = self.spki.children()[1].bitstring()
        self.key_type, self.key_bits, self.curve, self._pub = "unknown", 0, None, None
        if self.key_oid == OID_RSA:
            n, e = (x.int() for x in parse(self.public_bits).children())
            self.key_type, self.key_bits, self._pub = "rsa", n.bit_length(), (n, e)
        elif self.key_oid == OID_EC_PUBLIC_KEY and len(kalg) > 1 and kalg[1].tag == 0x06:
            c = kalg[1].oid()
            self.key_type = "ecc"
            if c in CURVES:
                cv = CURVES[c]
                self.curve, self.key_bits = cv.name, cv.bits
                self._pub = (cv, cv.point_from_bytes(self.public_bits))
            else:
                self.curve = CURVE_NAMES.get(c, c)
                self.key_bits = {"secp521r1": 521, "secp256k1": 256}.get(self.curve, 0)
        elif self.key_oid in ("1.3.101.112", "1.3.101.113"):
            self.key_type = "ed25519" if self.key_oid == "1.3.101.112" else "ed448"
            self.key_bits = 256 if self.key_type == "ed25519" else 456
        self.sans = []
        if len(f) > 3 and f[3].tag == 0xA0:
            for attr in f[3].children():
                a = attr.children()
                if a[0].oid() != OID_EXT_REQ:
                    continue
                for ext in a[1].children()[0].children():
                    e = ext.children()
                    if e[0].oid() == OID_SAN:
                        self.sans += [g.content.decode("ascii", "replace")
                                      for g in parse(e[-1].content).children() if g.tag == 0x82]
        self.sig_ok = self._verify(info.raw, sig.bitstring()) if verify else None

    def can_verify(self):
        """False for keys whose signatures are not computed here (Ed25519, Ed448, other curves): sig_ok is then
        False, and a caller that must know asks openssl."""
        return self._pub is not None

    def _verify(self, tbs, sig):
        alg = SIG_OIDS.get(self.sig_oid)
        if alg is None or self._pub is None or alg[0] != ("rsa" if self.key_type == "rsa" else "ec"):
            return False
        if alg[0] == "rsa":
            return rsa_verify(*self._pub, tbs, alg[1], sig)
        return ec_verify(*self._pub, tbs, alg[1], sig)
