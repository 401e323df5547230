"""x509lite against real OpenSSL: the leaves, keys and requests the simulators now make in Python must be
what openssl would accept and show, and what openssl makes must parse and verify here.

/usr/bin/python3 -m pytest -q tests/fakes/test_x509lite.py
"""
import datetime as dt
import hashlib
import os
import random
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "dnsimple"))
import x509lite as x  # noqa: E402
import ca as dnsimple_ca  # noqa: E402  (tests/fakes/dnsimple/ca.py)


def openssl(*args, data=None, check=True):
    p = subprocess.run(["openssl", *args], input=data, capture_output=True, text=True)
    if check and p.returncode:
        raise AssertionError(f"openssl {' '.join(args)}: {p.stderr}")
    return p


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return dnsimple_ca.CA(str(tmp_path_factory.mktemp("ca")))


def openssl_date(t):
    """The -text form of a notBefore/notAfter: 'Dec  5 18:13:13 2026 GMT'."""
    d = dt.datetime.fromtimestamp(int(t), dt.timezone.utc)
    return f"{d:%b} {d.day:2d} {d:%H:%M:%S} {d.year} GMT"


def check_leaf(ca, tmp, names, algorithm, not_before, not_after, fmt="sec1"):
    """Issues a leaf and checks everything openssl can say about it."""
    got = ca.issue(names, algorithm, not_before, not_after, fmt)
    stem = "e5" if algorithm == "ECDSA" else "r11"
    cert = tmp / "leaf.pem"
    cert.write_text(got.cert_pem)
    # verified now (the CA was just made: its root is not backdated), or without the time checks when the
    # leaf is not valid now (its dates are then checked in the text below)
    attime = [] if not_before <= time.time() <= not_after else ["-no_check_time"]
    r = openssl("verify", *attime, "-CAfile", ca.path("root.pem"), "-untrusted", ca.path(stem + ".pem"), str(cert))
    assert r.stdout.strip() == f"{cert}: OK"
    text = openssl("x509", "-noout", "-text", data=got.cert_pem).stdout
    assert "Version: 3 (0x2)" in text
    assert ("ecdsa-with-SHA256" if algorithm == "ECDSA" else "sha256WithRSAEncryption") in text
    issuer = "Simulated E5" if algorithm == "ECDSA" else "Simulated R11"
    assert f"Issuer: C = US, O = Simulated Let's Encrypt, CN = {issuer}" in text
    subject = f"CN = {names[0]}" if len(names[0]) <= 64 else "O = Simulated"
    assert re.search(r"^\s*Subject: (.*)$", text, re.M).group(1) == subject
    assert f"Not Before: {openssl_date(not_before)}" in text
    assert f"Not After : {openssl_date(not_after)}" in text
    san = re.search(r"X509v3 Subject Alternative Name: \n\s*(.*)\n", text).group(1)
    assert san == ", ".join("DNS:" + n for n in names)
    assert re.search(r"X509v3 Basic Constraints: critical\n\s*CA:FALSE\n", text)
    usage = "Digital Signature" if algorithm == "ECDSA" else "Digital Signature, Key Encipherment"
    assert re.search(r"X509v3 Key Usage: critical\n\s*" + usage + "\n", text)
    assert re.search(r"X509v3 Extended Key Usage: \n\s*TLS Web Server Authentication, TLS Web Client Authentication",
                     text)
    inter = openssl("x509", "-noout", "-text", "-in", ca.path(stem + ".pem")).stdout
    ski = re.search(r"Subject Key Identifier: \n\s*(\S+)", inter).group(1)
    assert re.search(r"Authority Key Identifier: \n\s*(?:keyid:)?" + re.escape(ski) + "\n", text)
    serial = int(openssl("x509", "-noout", "-serial", data=got.cert_pem).stdout.strip().split("=")[1], 16)
    assert 0 < serial < 2 ** 159
    # SKI = SHA-1 of the public key bits (RFC 5280 4.2.1.2 method 1, openssl's "hash")
    spki = x.parse(x.unpem(openssl("x509", "-noout", "-pubkey", data=got.cert_pem).stdout)[1])
    own_ski = hashlib.sha1(spki.children()[1].bitstring()).hexdigest().upper()
    assert re.search(r"Subject Key Identifier: \n\s*(\S+)", text).group(1).replace(":", "") == own_ski
    # the key: its PEM form, readable by openssl, matching the certificate
    label = {"RSA": "RSA PRIVATE KEY", "ECDSA": "EC PRIVATE KEY" if fmt == "sec1" else "PRIVATE KEY"}[algorithm]
    assert got.key_pem.startswith(f"-----BEGIN {label}-----\n")
    again = openssl("pkey", *(["-traditional"] if label != "PRIVATE KEY" else []), data=got.key_pem).stdout
    assert again == got.key_pem  # byte for byte what openssl writes for that key
    if algorithm == "ECDSA":
        assert "ASN1 OID: prime256v1" in openssl("pkey", "-noout", "-text", data=got.key_pem).stdout
    pub_key = openssl("pkey", "-pubout", data=got.key_pem).stdout
    pub_cert = openssl("x509", "-noout", "-pubkey", data=got.cert_pem).stdout
    assert pub_key == pub_cert
    # the CSR: a real PKCS#10 signed by the leaf key
    r = openssl("req", "-verify", "-noout", "-text", data=got.csr_pem)
    assert "verify OK" in r.stderr + r.stdout
    assert openssl("req", "-noout", "-pubkey", data=got.csr_pem).stdout == pub_cert
    assert re.search(r"^\s*Subject: (.*)$", r.stdout, re.M).group(1) == subject
    assert got.not_before == int(not_before) and got.not_after == int(not_after)
    return got, text


def test_many_ecdsa_leaves(ca, tmp_path):
    rnd = random.Random(16)
    now = time.time()
    for i in range(40):
        n = rnd.randint(1, 6)
        names = [f"h{i}-{j}-{rnd.randrange(10**6)}.pizza.company" for j in range(n)]
        if i % 5 == 0:
            names.append(f"*.w{i}.pizza.company")
        if i % 7 == 0:
            names.insert(0, "pizza.company")
        check_leaf(ca, tmp_path, names, "ECDSA", now - rnd.randint(0, 7200), now + rnd.randint(3600, 90 * 86400),
                   "sec1" if i % 2 else "pkcs8")


def test_rsa_leaves(ca, tmp_path):
    now = time.time()
    for i in range(3):
        check_leaf(ca, tmp_path, [f"r{i}.pizza.company", "pizza.company"], "RSA", now - 3600, now + 86400)


def test_long_names_and_many_sans(ca, tmp_path):
    now = time.time()
    long_cn = "a" * 60 + ".pizza.company"  # 74 characters: no CN, /O=Simulated
    check_leaf(ca, tmp_path, [long_cn, "b.pizza.company"], "ECDSA", now - 3600, now + 86400)
    check_leaf(ca, tmp_path, ["x" * 50 + ".pizza.company"], "ECDSA", now - 3600, now + 86400)  # exactly 64
    # SAN extension lengths over 127 and 255 bytes (long-form DER lengths of 1 and 2 bytes), and a
    # certificate of many kilobytes (DNSimple allows 100 names)
    for count in (5, 12, 100):
        names = [f"{'n' * 40}{k}.pizza.company" for k in range(count)]
        got, _ = check_leaf(ca, tmp_path, names, "ECDSA", now - 3600, now + 86400, "pkcs8")
        der = x.unpem(got.cert_pem)[1]
        assert len(der) > {5: 300, 12: 700, 100: 5000}[count]


def test_wildcards(ca, tmp_path):
    now = time.time()
    check_leaf(ca, tmp_path, ["*.pizza.company", "pizza.company"], "ECDSA", now - 3600, now + 86400)
    check_leaf(ca, tmp_path, ["*.a.pizza.company", "*.b.pizza.company"], "RSA", now - 3600, now + 86400)


def test_generalized_time_after_2049(ca, tmp_path):
    nb = dt.datetime(2049, 12, 31, 12, 0, tzinfo=dt.timezone.utc).timestamp()
    na = dt.datetime(2050, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc).timestamp()
    got, _ = check_leaf(ca, tmp_path, ["late.pizza.company"], "ECDSA", nb, na)
    parsed = openssl("asn1parse", data=got.cert_pem).stdout
    assert "UTCTIME           :491231120000Z" in parsed
    assert "GENERALIZEDTIME   :20500102030405Z" in parsed


def test_ec_signature_verified_by_openssl_and_back(tmp_path):
    for curve, h in ((x.P256, "sha256"), (x.P384, "sha384"), (x.P384, "sha256"), (x.P256, "sha512")):
        key = x.ECKey.generate(curve)
        (tmp_path / "k.pem").write_text(key.pem("pkcs8"))
        data = os.urandom(200)
        (tmp_path / "d").write_bytes(data)
        (tmp_path / "s").write_bytes(key.sign(data, h))
        openssl("pkey", "-in", str(tmp_path / "k.pem"), "-pubout", "-out", str(tmp_path / "p.pem"))
        r = openssl("dgst", "-" + h, "-verify", str(tmp_path / "p.pem"), "-signature", str(tmp_path / "s"),
                    str(tmp_path / "d"))
        assert "Verified OK" in r.stdout
        # openssl's signature, our verification (and a flipped bit fails)
        openssl("dgst", "-" + h, "-sign", str(tmp_path / "k.pem"), "-out", str(tmp_path / "s2"), str(tmp_path / "d"))
        sig = (tmp_path / "s2").read_bytes()
        assert x.ec_verify(curve, key.pub, data, h, sig)
        assert not x.ec_verify(curve, key.pub, data[:-1] + bytes([data[-1] ^ 1]), h, sig)


def test_point_arithmetic_matches_openssl_public_keys(tmp_path):
    """The public point of keys openssl generated: generic and comb multiplication agree with it."""
    for curve in ("prime256v1", "secp384r1"):
        pem = openssl("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}").stdout
        key = x.load_private_key(pem)  # reads openssl's public point and computes its own
        c = key.curve
        assert c.mul_g(key.d) == key.pub == c.mul(key.d, c.g)
        assert c.mul_g(c.n - 1) == (c.g[0], c.p - c.g[1])
        assert c.mul_g(c.n) is None


def test_rsa_signature_verified_by_openssl(tmp_path):
    pem = openssl("genrsa", "-traditional", "2048").stdout
    key = x.load_private_key(pem)
    (tmp_path / "k.pem").write_text(pem)
    data = b"certsync" * 50
    (tmp_path / "d").write_bytes(data)
    for h in ("sha256", "sha384"):
        sig = key.sign(data, h)
        (tmp_path / "s").write_bytes(sig)
        openssl("pkey", "-in", str(tmp_path / "k.pem"), "-pubout", "-out", str(tmp_path / "p.pem"))
        r = openssl("dgst", "-" + h, "-verify", str(tmp_path / "p.pem"), "-signature", str(tmp_path / "s"),
                    str(tmp_path / "d"))
        assert "Verified OK" in r.stdout
        assert x.rsa_verify(key.n, key.e, data, h, sig)
        assert not x.rsa_verify(key.n, key.e, data + b"!", h, sig)


@pytest.mark.parametrize("keyopts,key_type,bits,curve", [
    (["-newkey", "rsa:2048"], "rsa", 2048, None),
    (["-newkey", "rsa:1024"], "rsa", 1024, None),
    (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"], "ecc", 256, "prime256v1"),
    (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"], "ecc", 384, "secp384r1"),
    (["-newkey", "ed25519"], "ed25519", 256, None),
])
def test_csr_parser_on_openssl_requests(tmp_path, keyopts, key_type, bits, curve):
    sans = [f"s{i}.example.com" for i in range(30)] + ["*.example.com"]
    r = openssl("req", "-new", *keyopts, "-nodes", "-subj", "/C=US/O=Org/CN=www.example.com", "-keyout",
                str(tmp_path / "k.pem"), "-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans))
    csr = x.CSR(x.unpem(r.stdout)[1])
    assert (csr.key_type, csr.key_bits, csr.curve) == (key_type, bits, curve)
    assert csr.subject_cn == "www.example.com"
    assert csr.sans == sans
    assert csr.sig_ok == (key_type != "ed25519")  # Ed25519 signatures are not checked here
    # a changed byte inside the signed part breaks the signature
    der = bytearray(x.unpem(r.stdout)[1])
    i = bytes(der).index(b"www.example.com")
    der[i] = ord("W")
    if key_type != "ed25519":
        assert not x.CSR(bytes(der)).sig_ok


def test_der_reader_rejects_truncation():
    cert = x.seq(x.integer(5), x.octets(b"a" * 300))
    assert x.parse(cert).children()[1].content == b"a" * 300
    for cut in (1, 2, 5, len(cert) - 1):
        with pytest.raises(x.DERError):
            x.parse(cert[:cut])
    with pytest.raises(x.DERError):
        x.parse(cert + b"\x00")


# ---------- the DigiCert simulator: leaves for the client's CSR, signed by RSA intermediates ----------

def _digicert_ca(tmp_path_factory):
    import importlib.util
    spec = importlib.util.spec_from_file_location("digicert_ca", os.path.join(HERE, "digicert", "ca.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.CA(str(tmp_path_factory.mktemp("dcca")))


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    return _digicert_ca(tmp_path_factory)


@pytest.mark.parametrize("keyopts,key_type,md,brand", [
    (["-newkey", "rsa:2048"], "rsa", "sha256", "geotrust"),
    (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"], "ecc", "sha384", "rapidssl"),
    (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"], "ecc", "sha512", "geotrust"),
])
def test_digicert_leaf_for_openssl_csr(dc, tmp_path, keyopts, key_type, md, brand):
    mod, ca_ = dc
    names = ["shop.example.com", "www.shop.example.com", "*.img.example.com"] + \
        [f"n{i}-{'x' * 30}.example.com" for i in range(8)]
    csr_pem = openssl("req", "-new", *keyopts, "-nodes", "-subj", "/CN=ignored.example.com", "-keyout",
                      str(tmp_path / "k.pem")).stdout
    info = mod.parse_csr(csr_pem.replace("\n", "\r\n"))
    assert info.sig_ok and info.key_type == key_type and info.names() == ["ignored.example.com"]
    now = time.time()
    leaf = ca_.issue(info.pem, key_type, names, brand, now - 60, now + 30 * 86400 - 1, md)
    (tmp_path / "leaf.pem").write_text(leaf.pem)
    stem = mod.INTERMEDIATES[brand][0]
    r = openssl("verify", "-CAfile", ca_.path("root.pem"), "-untrusted", ca_.path(stem + ".pem"),
                str(tmp_path / "leaf.pem"))
    assert r.stdout.strip().endswith(": OK")
    text = openssl("x509", "-noout", "-text", data=leaf.pem).stdout
    assert f"Signature Algorithm: {md}WithRSAEncryption" in text
    assert re.search(r"^\s*Subject: CN = shop.example.com$", text, re.M)
    assert f"Issuer: C = US, O = Simulated DigiCert Inc, OU = www.digicert.com, CN = {mod.INTERMEDIATES[brand][1]}" \
        in text
    assert "Policy: 2.23.140.1.2.1" in text
    assert re.search(r"X509v3 Subject Alternative Name: \n\s*(.*)\n", text).group(1) == \
        ", ".join("DNS:" + n for n in names)
    usage = "Digital Signature, Key Encipherment" if key_type == "rsa" else "Digital Signature"
    assert re.search(r"X509v3 Key Usage: critical\n\s*" + usage + "\n", text)
    assert f"Not Before: {openssl_date(now - 60)}" in text
    assert f"Not After : {openssl_date(now + 30 * 86400 - 1)}" in text
    assert openssl("x509", "-noout", "-serial", data=leaf.pem).stdout.strip() == "serial=" + leaf.serial
    fp = openssl("x509", "-noout", "-fingerprint", "-sha1", data=leaf.pem).stdout.strip().split("=")[1]
    assert fp.replace(":", "") == leaf.thumbprint
    assert openssl("x509", "-noout", "-pubkey", data=leaf.pem).stdout == \
        openssl("pkey", "-pubout", "-in", str(tmp_path / "k.pem")).stdout
    # a long first name: no CN, as the openssl path did (-subj /O=Simulated)
    long = "l" * 70 + ".example.com"
    leaf = ca_.issue(info.pem, key_type, [long], brand, now - 60, now + 86400, md)
    assert re.search(r"^\s*Subject: O = Simulated$", openssl("x509", "-noout", "-text", data=leaf.pem).stdout, re.M)


def test_digicert_csr_checks(dc, tmp_path):
    mod, _ = dc
    with pytest.raises(ValueError, match="not a PEM or base64"):
        mod.parse_csr("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="cannot parse the request"):
        mod.parse_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    good = openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=a.example.com", "-keyout",
                   str(tmp_path / "k.pem"), "-addext", "subjectAltName=DNS:a.example.com,DNS:b.example.com").stdout
    info = mod.parse_csr(good)
    assert info.sig_ok and info.key_bits == 2048 and info.names() == ["a.example.com", "b.example.com"]
    assert info.sig_alg == "sha256WithRSAEncryption"
    # one changed byte in the signed part: the signature no longer verifies (as openssl says too)
    der = bytearray(x.unpem(good)[1])
    i = bytes(der).index(b"b.example.com")
    der[i] = ord("c")
    bad = x.pem("CERTIFICATE REQUEST", bytes(der))
    r = openssl("req", "-noout", "-verify", data=bad, check=False)
    assert "verify failure" in r.stderr  # (openssl 3.0 still exits 0 then)
    assert not mod.parse_csr(bad).sig_ok
    # an old SHA-1 request still verifies (openssl 3 accepts it); 1024-bit RSA is read as such
    sha1 = openssl("req", "-new", "-newkey", "rsa:1024", "-sha1", "-nodes", "-subj", "/CN=old.example.com",
                   "-keyout", str(tmp_path / "k1.pem")).stdout
    info = mod.parse_csr(sha1)
    assert info.sig_ok and info.key_bits == 1024 and info.sig_alg == "sha1WithRSAEncryption"
    # key types not computed in Python: openssl checks the signature, the type is reported for the refusal
    for opts, kt, curve in ((["-newkey", "ed25519"], "ed25519", None),
                            (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp521r1"], "ecc", "secp521r1")):
        pem_ = openssl("req", "-new", *opts, "-nodes", "-subj", "/CN=e.example.com", "-keyout",
                       str(tmp_path / "k2.pem")).stdout
        info = mod.parse_csr(pem_)
        assert info.sig_ok and info.key_type == kt and info.curve == curve
