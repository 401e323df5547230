"""A DigiCert-like CA for the simulator.

One root ("Simulated DigiCert Global Root G2") and two intermediates signed by
it, as DigiCert's DV brands have: "Simulated GeoTrust TLS RSA CA G1" for the
GeoTrust products and "Simulated RapidSSL TLS RSA CA G1" for RapidSSL. They are
generated once per state directory (under a file lock, so simulators sharing a
directory agree) and reused.

The CA certificates are made once with the openssl CLI. Leaves are signed
in-process by ../x509lite.py (pure Python, RSA PKCS#1 v1.5 with the CRT: a few
ms and no process) for the CSR's own public key, in the shape `openssl ca` gave
them (version 3, 159-bit random serial, the [leaf] extensions below, the
order's signature hash). The subject and SANs come from the order body, not from
the CSR (digicert.md §5.2: the API does not read names from the CSR).

Also here: CSR parsing (x509lite's DER reader; signatures of RSA and P-256/P-384
keys checked in Python, other key types by `openssl req -verify`) and the
download formats of §6.4.
"""
import base64
import datetime as dt
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import x509lite  # noqa: E402

ROOT = ("root", "Simulated DigiCert Global Root G2",
        "/C=US/O=Simulated DigiCert Inc/OU=www.digicert.com/CN=Simulated DigiCert Global Root G2")
INTERMEDIATES = {
    # brand: (file stem, common name, subject, ca_cert id as order info shows it)
    "geotrust": ("geotrust", "Simulated GeoTrust TLS RSA CA G1",
                 "/C=US/O=Simulated DigiCert Inc/OU=www.digicert.com/CN=Simulated GeoTrust TLS RSA CA G1",
                 "5BB9BA4DF8D35E1F"),
    "rapidssl": ("rapidssl", "Simulated RapidSSL TLS RSA CA G1",
                 "/C=US/O=Simulated DigiCert Inc/OU=www.digicert.com/CN=Simulated RapidSSL TLS RSA CA G1",
                 "2A4E8D6C1B0F7E35"),
}

CA_CONFIG = """\
[ ca ]
default_ca = sim
[ sim ]
database = index.txt
serial = serial
new_certs_dir = .
default_md = {md}
policy = policy_any
unique_subject = no
copy_extensions = none
preserve = no
[ policy_any ]
countryName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
[ intermediate ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,digitalSignature,keyCertSign,cRLSign
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


class OpenSSLError(Exception):
    pass


def openssl(*args, cwd=None, data=None):
    p = subprocess.run(["openssl", *args], cwd=cwd, input=data, capture_output=True, text=True)
    if p.returncode:
        raise OpenSSLError(f"openssl {args[0]}: {p.stderr.strip()}")
    return p.stdout


def asn1_time(t):
    return dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y%m%d%H%M%SZ")


PEM_RX = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def normalise_csr(text):
    """A clean PEM (64-column base64, LF) from a CSR string as clients send it.

    Accepts a full PEM, a PEM whose newlines were stripped or turned into CRLF,
    a NEW CERTIFICATE REQUEST header, or bare base64. None if it holds no base64.
    """
    m = PEM_RX.search(text)
    body = m.group(2) if m else text
    if m and "CERTIFICATE REQUEST" not in m.group(1):
        return None
    body = re.sub(r"\s+", "", body)
    if not body or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", body):
        return None
    try:
        base64.b64decode(body, validate=True)
    except ValueError:
        return None
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE REQUEST-----\n"


class CSRInfo:
    """What the simulator reads from a CSR: key type and size, subject CN, SANs, signature check."""

    def __init__(self, pem, key_type, key_bits, curve, subject_cn, sans, sig_ok, sig_alg):
        self.pem, self.key_type, self.key_bits, self.curve = pem, key_type, key_bits, curve
        self.subject_cn, self.sans, self.sig_ok, self.sig_alg = subject_cn, sans, sig_ok, sig_alg

    def names(self):
        out = []
        for n in ([self.subject_cn] if self.subject_cn else []) + self.sans:
            if n.lower() not in out:
                out.append(n.lower())
        return out


def parse_csr(text):
    """CSRInfo for a CSR string, or raises ValueError with the reason."""
    pem = normalise_csr(text)
    if pem is None:
        raise ValueError("not a PEM or base64 certificate request")
    try:
        c = x509lite.CSR(x509lite.unpem(pem)[1])
    except Exception as e:  # any malformed DER: the request cannot be read
        raise ValueError(f"cannot parse the request: {e}") from None
    sig_ok = c.sig_ok
    if not c.can_verify():  # Ed25519, other curves: openssl checks those signatures
        p = subprocess.run(["openssl", "req", "-noout", "-verify"], input=pem, capture_output=True, text=True)
        sig_ok = p.returncode == 0 and "verify OK" in (p.stderr + p.stdout)
    return CSRInfo(pem, c.key_type, c.key_bits, c.curve, c.subject_cn, c.sans, sig_ok, c.sig_alg)


def pem_der(pem):
    m = PEM_RX.search(pem)
    return base64.b64decode(re.sub(r"\s+", "", m.group(2)))


def split_pems(text):
    return [m.group(0) + "\n" for m in PEM_RX.finditer(text)]


class Leaf:
    """A signed certificate and what order info shows of it."""

    def __init__(self, pem, serial, thumbprint, not_before, not_after):
        self.pem, self.serial, self.thumbprint = pem, serial, thumbprint
        self.not_before, self.not_after = not_before, not_after


class CA:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(self.dir, "complete")):
                self._generate()
        self.root_pem = self._read("root.pem")
        self.root_cn = ROOT[1]
        self.intermediate_pem = {b: self._read(v[0] + ".pem") for b, v in INTERMEDIATES.items()}
        self._issuers = {}

    def _read(self, name):
        with open(os.path.join(self.dir, name)) as f:
            return f.read()

    def path(self, name):
        return os.path.join(self.dir, name)

    def _generate(self):
        work = tempfile.mkdtemp(prefix="gen-", dir=self.dir)
        try:
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7300", "-subj", ROOT[2],
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout", "root.key", "-out", "root.pem", cwd=work)
            now = dt.datetime.now(dt.timezone.utc).timestamp()
            names = ["root.key", "root.pem"]
            for stem, _cn, subject, _id in INTERMEDIATES.values():
                openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", stem + ".key",
                        "-out", stem + ".csr", cwd=work)
                self._sign(work, os.path.join(work, stem + ".csr"), os.path.join(work, "root.pem"),
                           os.path.join(work, "root.key"), "intermediate", now - 86400, now + 10 * 365 * 86400,
                           os.path.join(work, stem + ".pem"))
                names += [stem + ".key", stem + ".pem"]
            for name in names:
                os.chmod(os.path.join(work, name), 0o600 if name.endswith(".key") else 0o644)
                os.replace(os.path.join(work, name), os.path.join(self.dir, name))
            with open(os.path.join(self.dir, "complete"), "w") as f:
                f.write("generated by the DigiCert simulator\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _sign(work, csr, ca_cert, ca_key, section, not_before, not_after, out, md="sha256"):
        db = tempfile.mkdtemp(prefix="db-", dir=work)
        with open(os.path.join(db, "ca.cnf"), "w") as f:
            f.write(CA_CONFIG.format(md=md))
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("01\n")
        args = ["ca", "-batch", "-config", "ca.cnf", "-extensions", section, "-notext", "-rand_serial",
                "-in", csr, "-cert", ca_cert, "-keyfile", ca_key,
                "-startdate", asn1_time(not_before), "-enddate", asn1_time(not_after), "-out", out]
        openssl(*args, cwd=db)

    def issuer(self, brand):
        """The x509lite.Issuer of a brand's intermediate, loaded once (its key from the PEM openssl wrote)."""
        return x509lite.cached_issuer(self._issuers, brand, self._read, INTERMEDIATES[brand][0], OpenSSLError)

    def issue(self, csr_pem, key_type, names, brand, not_before, not_after, signature_hash="sha256"):
        """A leaf for the CSR's public key with names (the first is the subject CN, if it fits in 64)."""
        csr = x509lite.CSR(x509lite.unpem(csr_pem)[1], verify=False)  # checked when the order was placed
        usage = "digitalSignature,keyEncipherment" if key_type == "rsa" else "digitalSignature"
        der = self.issuer(brand).sign_leaf(csr, x509lite.leaf_subject(names), names, not_before, not_after, usage,
                                           signature_hash, policies=["2.23.140.1.2.1"])
        pem = x509lite.pem("CERTIFICATE", der)
        return Leaf(pem, x509lite.cert_serial_hex(der), hashlib.sha1(der).hexdigest().upper(), int(not_before),
                    int(not_after))

    def ca_cert_view(self, brand):
        return {"id": INTERMEDIATES[brand][3], "name": INTERMEDIATES[brand][1]}

    def chain(self, leaf_pem, common_name, brand, root=True):
        """certificate_chain entries of §5.3 a): end-entity first, then issuers."""
        out = [{"subject_common_name": common_name, "pem": leaf_pem},
               {"subject_common_name": INTERMEDIATES[brand][1], "pem": self.intermediate_pem[brand]}]
        if root:
            out.append({"subject_common_name": self.root_cn, "pem": self.root_pem})
        return out


def file_stem(common_name):
    return re.sub(r"[^a-z0-9]+", "_", common_name.lower().replace("*", "star")).strip("_") or "certificate"


PEM_TYPE = "application/x-pem-file"
FORMATS = ["pem_all", "pem_noroot", "pem_nointermediate", "pem", "crt", "p7b", "cer", "default", "default_pem",
           "default_cer", "apache"]


def render(fmt, leaf_pem, inter_pem, root_pem, common_name):
    """(content type, body bytes) of a download format (§6.4), or None for an unknown format."""
    stem = file_stem(common_name)
    if fmt in ("pem_all", "pem"):
        return PEM_TYPE, (leaf_pem + inter_pem + root_pem).encode()
    if fmt == "pem_noroot":
        return PEM_TYPE, (leaf_pem + inter_pem).encode()
    if fmt in ("pem_nointermediate", "crt"):
        return PEM_TYPE, leaf_pem.encode()
    if fmt in ("p7b", "cer"):
        p7 = openssl("crl2pkcs7", "-nocrl", "-certfile", "/dev/stdin", data=leaf_pem + inter_pem + root_pem)
        return "application/x-pkcs7-certificates", p7.encode()
    if fmt in ("default", "default_pem", "default_cer", "apache"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            ext = ".cer" if fmt == "default_cer" else ".crt"
            z.writestr(stem + ext, leaf_pem)
            z.writestr("DigiCertCA.crt", inter_pem)
            if fmt != "apache":
                z.writestr("TrustedRoot.crt", root_pem)
        return "application/zip", buf.getvalue()
    return None
