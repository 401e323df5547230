"""Provider errors in full, validate --credentials/--online, and account actions in plans (issue 11 items 5 and 6),
end to end against the DNSimple and DigiCert simulators."""
import json
import os
import urllib.request

from conftest import manifest, openssl
from digicert_env import API_KEY, DNS_TOKEN, ZONE, dc, dc_ca_dir, denv, dns, issuer_yaml, web  # noqa: F401


def www():
    """One name, so exactly one TXT record is created (at "www")."""
    return manifest("www", [f"www.{ZONE}"], issuer="dc", extra=f"commonName: www.{ZONE}\n")


def json_lines(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def dns_api(dns, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{dns.url}/v2/1010/{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {DNS_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def test_a_400_on_zone_record_create_shows_every_field_message_and_the_request_id(denv, dc, dns):
    dns.ctl("fault", {"endpoint": "createZoneRecord", "mode": "reply", "status": 400, "count": 1,
                      "body": {"message": "Validation failed",
                               "errors": {"content": ["can't be blank", "is too short"],
                                          "ttl": ["is not a number"]}}})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", "--log-format", "json", check=1)
    text = r.out + r.err
    assert "Validation failed: content: can't be blank, is too short; ttl: is not a number" in text, r
    assert "not found" not in text, r  # not replaced by a follow-up lookup
    assert dns.ctl("counters").get("listZoneRecords", 0) == 0
    rid = dns.ctl("log?op=createZoneRecord")[0]["request_id"]
    failed = [j for j in json_lines(r.err) if j.get("request_id")]
    assert failed and failed[0]["request_id"] == rid and failed[0]["issuer"] == "dns", r.err
    assert "createZoneRecord: HTTP 400" in failed[0]["message"]
    # nothing was ordered, and the record says why
    assert dc.count("order_create") == 0
    rec = json.loads(denv.run("state", "show", "www", check=0).out)
    assert "ttl: is not a number" in rec["last_error"]
    assert DNS_TOKEN not in text and API_KEY not in text


def test_an_already_exists_400_whose_record_cannot_be_found_reports_the_create_error(denv, dc, dns):
    """Issue 11's reproduction: the lookup after a 400 must not replace the create's own message."""
    dns.ctl("fault", {"endpoint": "createZoneRecord", "mode": "reply", "status": 400, "count": 1,
                      "body": {"message": "Validation failed",
                               "errors": {"base": ["Matching record already exists for this zone"]}}})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=1)
    assert "HTTP 400 Validation failed: base: Matching record already exists for this zone" in r.err, r
    assert "TXT record" not in r.err, r
    assert dns.ctl("counters").get("listZoneRecords", 0) >= 1  # it did look, by name
    assert all("name=www" in e["path"] for e in dns.ctl("log?op=listZoneRecords"))


def test_the_txt_lookup_follows_pages_and_filters_by_name(denv, dc, dns):
    dns.ctl("config", {"per_page_max": 2})
    for i in range(3):  # three older TXT records at the same name: ours lands on page 2
        dns_api(dns, "POST", f"zones/{ZONE}/records", {"name": "www", "type": "TXT", "content": f"other-{i}"})
    dns_api(dns, "POST", f"zones/{ZONE}/records", {"name": "api", "type": "TXT", "content": "elsewhere"})
    # The create takes effect but its answer is cut: certsync must find the record it made.
    dns.ctl("fault", {"endpoint": "createZoneRecord", "mode": "truncated_json", "count": 1})
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("apply", "--auto-approve", check=0)
    assert "1 done" in r.out, r
    paths = [e["path"] for e in dns.ctl("log?op=listZoneRecords")]
    assert any("page=2" in p for p in paths), paths
    assert all("name=www" in p and "type=TXT" in p for p in paths), paths
    assert dns.ctl("counters")["createZoneRecord"] == 4 + 1  # the test's four, then ours once: found, not made twice


# ---------- validate --credentials / --online ----------

def test_validate_online_with_good_credentials_names_the_accounts(denv, dc, dns):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("validate", "--online", check=0)
    assert "issuer dns (dnsimple): ok: DNSimple account 1010" in r.out, r
    assert "issuer dc (digicert): ok: DigiCert user certsync-sim (id 125039), account 5137495" in r.out, r
    assert "issuer internal (ca): ok" in r.out, r
    assert dns.ctl("counters").get("whoami") == 1 and dc.count("user_me") == 1
    # nothing that changes or costs anything
    assert dc.count("auth_key_create") == 0 and dc.count("order_create") == 0
    assert set(dns.ctl("counters")) <= {"whoami", "GET /v2/whoami"}


def test_plain_validate_opens_no_socket_and_needs_no_secret(denv, dc, dns):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("validate", check=0, env={"DNSIMPLE_TOKEN": "", "DIGICERT_API_KEY": ""})
    assert "valid" in r.out
    r = denv.run("validate", "--credentials", check=1, env={"DNSIMPLE_TOKEN": ""})
    assert "error: issuer dns: token: environment variable DNSIMPLE_TOKEN" in r.err and "is not set" in r.err, r
    assert "issuer dc (digicert): ok" in r.out
    assert "(checked offline)" in r.err
    assert dns.ctl("counters") == {} and dc.ctl("counters").get("user_me", 0) == 0


def test_validate_online_reports_a_refused_token_per_issuer(denv, dc, dns):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    r = denv.run("validate", "--online", check=1,
                 env={"DNSIMPLE_TOKEN": "wrong-dnsimple-token", "DIGICERT_API_KEY": "wrong-digicert-key"})
    assert ("error: issuer dns: DNSimple refused the credentials (dnsimple whoami: HTTP 401 Authentication failed)"
            in r.err), r
    assert ("error: issuer dc: DigiCert refused the API key (digicert userMe: HTTP 401 invalid_api_key: "
            "The API key provided is invalid.)" in r.err), r
    assert "2 credential or provider problems" in r.err
    assert "wrong-dnsimple-token" not in r.out + r.err and "wrong-digicert-key" not in r.out + r.err


def test_validate_online_missing_env_and_open_file_are_reported_without_a_call(denv, dc, dns, tmp_path):
    key = tmp_path / "digicert.key"
    key.write_text(API_KEY + "\n")
    key.chmod(0o644)
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url).replace("{env: DIGICERT_API_KEY}",
                                                                          f"{{file: {key}}}"))
    r = denv.run("validate", "--online", check=1, env={"DNSIMPLE_TOKEN": ""})
    assert "error: issuer dns: token: environment variable DNSIMPLE_TOKEN" in r.err, r
    assert f"error: issuer dc: apiKey: {key} is readable by group or others (mode 0644)" in r.err, r
    assert dns.ctl("counters").get("whoami", 0) == 0 and dc.count("user_me") == 0
    assert API_KEY not in r.out + r.err
    key.chmod(0o600)
    r = denv.run("validate", "--online", check=1, env={"DNSIMPLE_TOKEN": ""})
    assert "issuer dc (digicert): ok: DigiCert user" in r.out, r
    assert dc.count("user_me") == 1


def test_validate_online_checks_the_dnsimple_account_id(denv, dc, dns):
    denv.repo.commit()
    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url).replace('account: "1010"', 'account: "2020"'))
    r = denv.run("validate", "--online", check=1)
    assert "error: issuer dns: GET " in r.err and "/v2/whoami: the token belongs to DNSimple account 1010" in r.err
    assert "not the configured account 2020" in r.err, r


def test_validate_online_ca_issuer_key_mismatch_and_mode(env, tmp_path):
    other = tmp_path / "other"
    env.repo.write("a.yaml", manifest("a", ["a.example.test"]))
    env.repo.commit()
    r = env.run("validate", "--online", check=0)
    assert "issuer internal (ca): ok: no CA yet: apply generates one in" in r.out, r
    assert not (env.dir / "ca").exists()  # validate writes nothing
    env.run("apply", "--auto-approve", check=0)  # generates ca/
    r = env.run("validate", "--online", check=0)
    assert "issuer internal (ca): ok" in r.out, r
    os.chmod(env.dir / "ca" / "ca.key", 0o644)
    r = env.run("validate", "--credentials", check=1)
    assert "error: issuer internal: CA key" in r.err and "readable by group or others" in r.err, r
    os.chmod(env.dir / "ca" / "ca.key", 0o600)
    other.mkdir()
    env.config.write_text(env.config.read_text().replace("generate: {dir: ca}",
                                                         f"ca: {{certFile: {env.dir}/ca/ca.crt, "
                                                         f"keyFile: {other}/k.key}}"))
    assert openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-out", str(other / "k.key")).returncode == 0
    os.chmod(other / "k.key", 0o600)
    r = env.run("validate", "--credentials", check=1)
    assert "error: issuer internal:" in r.err and "does not match the key" in r.err, r


# ---------- account actions in plans ----------

def test_the_plan_lists_the_authkey_creation_before_the_first_digicert_apply_only(denv, dc, dns, tmp_path):
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    line = "issuer dc: create an AuthKey for the DigiCert account (once, if the account has none"
    r = denv.run("plan", check=0)
    assert "Account actions:" in r.out and line in r.out, r
    p = denv.plan_json()
    assert len(p["account_actions"]) == 1 and p["account_actions"][0].startswith(line)
    r = denv.run("plan", "--format", "markdown", check=0)
    assert "### Account actions" in r.out and line in r.out, r
    r = denv.run("plan", "--format", "github", check=0)
    assert "::notice" in r.out and line in r.out, r
    saved = tmp_path / "plan.json"
    denv.run("plan", "--out", str(saved), check=0)
    assert json.loads(saved.read_text())["account_actions"] == p["account_actions"]
    r = denv.run("apply", "--auto-approve", str(saved), check=0)
    assert "1 done" in r.out, r
    assert dc.count("auth_keys_list") >= 1
    # after the first apply the state shows the AuthKey in use: not listed again, even for a new certificate
    denv.repo.write("api.yaml", manifest("api", [f"api.{ZONE}"], issuer="dc", extra=f"commonName: api.{ZONE}\n"))
    denv.repo.commit()
    p = denv.plan_json()
    assert [c["name"] for c in p["changes"]] == ["api"]
    assert p["account_actions"] == []
    assert "Account actions" not in denv.run("plan", check=0).out


def test_the_plan_lists_the_webhook_registration_when_public_url_is_set(denv, dc, dns):
    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url),
                      extra="server:\n  publicURL: https://certsync.example.test\n"
                            "  webhookSecret: {env: CERTSYNC_WEBHOOK_SECRET}\n")
    denv.repo.write("dns.yaml", manifest("dns-www", [f"www.{ZONE}"], issuer="dns",
                                         extra=f"commonName: www.{ZONE}\n"))
    denv.repo.commit()
    p = denv.plan_json()
    assert any(a.startswith("issuer dns: certsync run registers a webhook with the DNSimple account")
               for a in p["account_actions"]), p["account_actions"]
    denv.write_config(extra_issuers=issuer_yaml(dc.url, dns.url))
    assert denv.plan_json()["account_actions"] == []


def test_run_logs_its_account_actions_before_doing_them(denv, dc, dns):
    """The plan of `run` is its log: the webhook registration and the AuthKey are announced first."""
    from test_run import Daemon, run_config

    run_config(denv, extra_issuers=issuer_yaml(dc.url, dns.url))
    denv.config.write_text(denv.config.read_text().replace("server:\n",
                                                           "server:\n  publicURL: https://certsync.example.test\n", 1))
    denv.repo.write("www.yaml", www())
    denv.repo.commit()
    d = Daemon(denv)
    try:
        hook = d.wait_log(r"^issuer dns: planned account action: register a webhook with the dnsimple account")
        made = d.wait_log(r"registered the DNSimple webhook")
        assert hook < made
        key = d.wait_log(r"^planned account action: issuer dc: create an AuthKey for the DigiCert account")
        done = d.wait_log(r"create complete", timeout=60)
        assert key < done
        assert not [m for m in d.messages() if "webhooks/" in m and "certsync.example.test" in m]  # secret URL
    finally:
        d.signal(15)
        d.proc.wait(timeout=30)
