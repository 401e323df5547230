"""Subject and SAN fields for the built-in CA with cert-manager's names (issue 14, item 4): the CA issues
them, install verifies them, and issuers that cannot issue them refuse the manifest at validate."""
from conftest import manifest, openssl, pubkey

PROFILE = """\
ipAddresses: [127.0.0.1, "2001:db8::1"]
uris: [spiffe://cluster.local/ns/web/sa/api]
emailAddresses: [ops@example.test]
subject:
  organizations: [Pizza Company]
  organizationalUnits: [Web]
  countries: [DE]
  localities: [Berlin]
  provinces: [Berlin]
  streetAddresses: [Hauptstrasse 1]
  postalCodes: ["10115"]
  serialNumber: "4711"
usages: [digital signature, key encipherment, server auth, client auth]
"""


def text(path):
    r = openssl("x509", "-in", str(path), "-noout", "-text")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_ca_issues_subject_and_san_fields(env):
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra=PROFILE))
    env.repo.commit()
    env.run("apply", check=0)
    t = text(env.cert_dir("a") / "tls.crt")
    subject = [l for l in t.splitlines() if l.strip().startswith("Subject:")][0]
    for part in ("C = DE", "ST = Berlin", "L = Berlin", "street = Hauptstrasse 1", "postalCode = 10115",
                 "O = Pizza Company", "OU = Web", "serialNumber = 4711", "CN = a.example.test"):
        assert part in subject, subject
    san = t.split("X509v3 Subject Alternative Name:")[1].splitlines()[1].strip()
    assert san == ("DNS:a.example.test, IP Address:127.0.0.1, IP Address:2001:DB8:0:0:0:0:0:1, "
                   "URI:spiffe://cluster.local/ns/web/sa/api, email:ops@example.test"), san
    assert "Digital Signature, Key Encipherment" in t
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in t
    assert "CA:FALSE" in t
    r = openssl("verify", "-CAfile", str(env.cert_dir("a") / "ca.crt"), str(env.cert_dir("a") / "tls.crt"))
    assert r.returncode == 0, r.stdout + r.stderr
    env.run("plan", "--detailed-exitcode", check=0)  # installed as asked: nothing to do
    # An IP added is a new certificate (the names changed), verified again at install.
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], extra=PROFILE.replace("127.0.0.1", "127.0.0.2")))
    env.repo.commit("another IP")
    assert [c["action"] for c in env.plan_json()["changes"]] == ["replace"]
    env.run("apply", check=0)
    assert "IP Address:127.0.0.2" in text(env.cert_dir("a") / "tls.crt")


def test_ca_issues_a_client_certificate_and_an_intermediate_ca(env):
    env.repo.write("client.yaml", manifest("client", [], extra="""\
        commonName: robot.example.test
        emailAddresses: [robot@example.test]
        usages: [digital signature, client auth]
        """).replace("  dnsNames: []\n", ""))
    env.repo.write("sub.yaml", manifest("sub", ["sub-ca.example.test"], extra="""\
        isCA: true
        pathLen: 0
        subject: {organizations: [Pizza Company]}
        usages: [cert sign, crl sign, digital signature]
        """))
    env.repo.commit()
    env.run("apply", check=0)
    c = text(env.cert_dir("client") / "tls.crt")
    assert "TLS Web Client Authentication" in c and "TLS Web Server Authentication" not in c
    assert "Key Encipherment" not in c  # exactly the usages written
    s = text(env.cert_dir("sub") / "tls.crt")
    assert "CA:TRUE, pathlen:0" in s
    assert "Digital Signature, Certificate Sign, CRL Sign" in s
    assert "Extended Key Usage" not in s
    # The intermediate works as one: a leaf signed with its key verifies through it to the root.
    d = env.cert_dir("sub")
    leaf_key = env.dir / "leaf.key"
    r = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
                "/CN=leaf.example.test", "-keyout", str(leaf_key), "-out", str(env.dir / "leaf.csr"))
    assert r.returncode == 0, r.stderr
    r = openssl("x509", "-req", "-in", str(env.dir / "leaf.csr"), "-CA", str(d / "tls.crt"), "-CAkey",
                str(d / "tls.key"), "-CAcreateserial", "-days", "1", "-out", str(env.dir / "leaf.crt"))
    assert r.returncode == 0, r.stderr
    r = openssl("verify", "-CAfile", str(d / "ca.crt"), "-untrusted", str(d / "tls.crt"), str(env.dir / "leaf.crt"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert pubkey(d / "tls.crt", False) == pubkey(d / "tls.key", True)


def test_public_issuers_refuse_what_they_cannot_issue_at_validate(env):
    env.write_config(extra_issuers="""\
        dns:
          type: dnsimple
          account: "1010"
          token: {env: DNSIMPLE_TOKEN}
          zones: [example.test]
        """)
    env.repo.write("a.yaml", manifest("a", ["a.example.test"], issuer="dns", extra="""\
        ipAddresses: [127.0.0.1]
        isCA: true
        """))
    env.repo.write("b.yaml", manifest("b", ["b.example.test"], extra="secretName: b-tls"))
    env.repo.commit()
    r = env.run("validate", check=1)
    out = r.out + r.err
    assert ("certificates/a.yaml:8:16: spec.ipAddresses: issuer dns (type dnsimple) cannot put ipAddresses in a "
            "certificate") in out, r
    assert "certificates/a.yaml:9:9: spec.isCA: issuer dns (type dnsimple) cannot put isCA" in out, r
    assert ("certificates/b.yaml:8:15: spec.secretName is cert-manager's field: certsync writes files, not "
            "Kubernetes Secrets: name the directory under the output root with spec.output.directory "
            "(e.g. output: {directory: b-tls})") in out, r
    # Nothing is applied from a revision with problems.
    r = env.run("apply")
    assert r.code == 1 and not env.out.exists() or not any(env.out.iterdir()), r
