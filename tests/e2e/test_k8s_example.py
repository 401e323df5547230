"""The Kubernetes example (examples/kubernetes/) checked without a cluster: every YAML document loads, the
kustomization never contains a Secret (so an apply cannot overwrite the user's), the names, ports, volume
mounts and paths refer to each other consistently (Deployment, Services, Ingress, nginx config, certsync's
config, the example manifests), the config validates with the real binary, and the nginx reload hook of the
config reloads a real nginx after a new certificate (in a PID namespace of its own, as shareProcessNamespace
gives the Pod)."""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, Repo, cert_serial
from pg_env import free_port

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "examples" / "kubernetes"
EXAMPLES = [K8S, K8S / "replicas"]


def load(example):
    """{(kind, name): document} of the files the kustomization lists, and the kustomization itself."""
    kust = yaml.safe_load((example / "kustomization.yaml").read_text())
    docs = {}
    for res in kust["resources"]:
        for doc in yaml.safe_load_all((example / res).read_text()):
            if doc:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in docs, key
                docs[key] = doc
    return kust, docs


def certsync_config(docs):
    return yaml.safe_load(docs[("ConfigMap", "certsync")]["data"]["certsync.yaml"])


def example_manifests():
    specs = []
    for f in sorted((ROOT / "examples" / "manifests" / "shop").glob("*.yaml")):
        specs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return specs


@pytest.mark.parametrize("example", EXAMPLES, ids=["sidecar", "replicas"])
def test_the_kustomization_holds_no_secret_and_generates_none(example):
    kust, docs = load(example)
    assert not [k for k in docs if k[0] == "Secret"], docs.keys()
    assert "secretGenerator" not in kust and "generators" not in kust
    assert not list(example.glob("*secret*"))  # nothing a `kubectl apply -f dir/` would pick up either
    kubectl = shutil.which("kubectl")
    if kubectl:  # kustomize's own rendering, where kubectl is installed (it is not a Debian package)
        r = subprocess.run([kubectl, "kustomize", str(example)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
        assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == set(docs)
    # The README says how to create the Secret, with every variable the config reads.
    readme = (K8S / "README.md").read_text()
    wanted = set(re.findall(r"\{env: ([A-Z0-9_]+)\}", docs[("ConfigMap", "certsync")]["data"]["certsync.yaml"]))
    commands = re.findall(r"kubectl create secret generic certsync-credentials(.*?)```", readme, re.S)
    assert any(wanted <= set(re.findall(r"--from-literal=([A-Z0-9_]+)=", c)) for c in commands), wanted


@pytest.mark.parametrize("example", EXAMPLES, ids=["sidecar", "replicas"])
def test_names_ports_mounts_and_paths_refer_to_each_other(example):
    _, docs = load(example)
    dep = docs[("Deployment", "shop")]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    containers = {c["name"]: c for c in spec["containers"]}
    ports = {p["name"]: (c["name"], p["containerPort"]) for c in containers.values() for p in c.get("ports", [])}
    for c in containers.values():
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, (c["name"], m)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            p = c.get(probe)
            if p:
                port = (p.get("httpGet") or p.get("tcpSocket"))["port"]
                assert port in ports and ports[port][0] == c["name"], (c["name"], probe, port)
    for v in volumes.values():
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in docs, v
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in docs, v
    assert [e["secretRef"]["name"] for e in containers["certsync"]["envFrom"]] == ["certsync-credentials"]
    # certsync's config against its container: listen port, output root, state, config file.
    cfg = certsync_config(docs)
    cs = containers["certsync"]
    mounts = {m["mountPath"]: m["name"] for m in cs["volumeMounts"]}
    assert int(cfg["server"]["listen"].rsplit(":", 1)[1]) == ports["http"][1] and ports["http"][0] == "certsync"
    assert mounts[cfg["output"]["root"]] == "certs"
    conf_dir = cs["args"][cs["args"].index("--config") + 1].rsplit("/", 1)[0]
    assert volumes[mounts[conf_dir]]["configMap"]["name"] == "certsync"
    if cfg["state"].get("path"):
        assert any(cfg["state"]["path"].startswith(m + "/") and volumes[n].get("persistentVolumeClaim")
                   for m, n in mounts.items()), cfg["state"]
    # nginx reads the certificate where certsync publishes an example manifest's output directory.
    nginx = containers["shop"]
    nmounts = {m["mountPath"]: m for m in nginx["volumeMounts"]}
    conf = docs[("ConfigMap", "shop-nginx")]["data"]["default.conf"]
    conf_mount = next(m for m in nginx["volumeMounts"] if volumes[m["name"]].get("configMap", {}).get("name")
                      == "shop-nginx")
    assert conf_mount["mountPath"] == "/etc/nginx/conf.d"
    dirs = {s["spec"].get("output", {}).get("directory", s["metadata"]["name"]) for s in example_manifests()}
    for path in re.findall(r"ssl_certificate(?:_key)?\s+(\S+);", conf):
        mount = next(m for m in nmounts if path.startswith(m + "/"))
        assert nmounts[mount]["name"] == "certs" and nmounts[mount].get("readOnly")
        cert_dir, leaf = path[len(mount) + 1:].rsplit("/", 1)
        assert cert_dir in dirs and leaf in ("tls.crt", "tls.key"), (path, dirs)
    assert re.search(r"listen (\d+) ssl", conf).group(1) == str(ports["https"][1])
    # cfg's source.path is the repository folder the example manifests stand for.
    assert cfg["source"]["path"] == "certificates/shop"
    if example == K8S:
        issuers = set(cfg["issuers"])
        assert {s["spec"]["issuer"] for s in example_manifests()} <= issuers
        assert spec.get("shareProcessNamespace") is True  # the reload hook signals nginx
        assert spec["securityContext"]["runAsUser"] == 65532
        assert not [c for c in containers.values() if c.get("securityContext", {}).get("runAsUser")]
    # Services select the Pod and name its ports; the Ingress routes to them.
    services = {n: d for (k, n), d in docs.items() if k == "Service"}
    assert "certsync" in services
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= labels.items()
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, p
    assert services["certsync"]["spec"]["ports"][0]["targetPort"] == "http"
    ingresses = [d for (k, _), d in docs.items() if k == "Ingress"]
    if example != K8S:
        return
    assert len(ingresses) == 1
    routes = {}
    for rule in ingresses[0]["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            b = p["backend"]["service"]
            assert b["name"] in services and b["port"]["name"] in {x["name"] for x in services[b["name"]]["spec"]["ports"]}
            routes.setdefault(p["path"], set()).add((rule["host"], b["name"]))
    public_host = re.match(r"https://([^/:]+)", cfg["server"]["publicURL"]).group(1)
    assert routes["/webhooks/"] == {(public_host, "certsync")}
    names = {n for s in example_manifests() if s["metadata"]["name"] == "shop-www"
             for n in s["spec"].get("dnsNames", [])}
    assert routes["/.well-known/acme-challenge/"] == {(n, "certsync") for n in names}
    assert set(routes) == {"/webhooks/", "/.well-known/acme-challenge/"}  # /metrics, /retry stay inside
    assert public_host in ingresses[0]["spec"]["tls"][0]["hosts"]


def local_config(tmp_path, port):
    """The sidecar's certsync.yaml on this machine: local repo of examples/manifests/shop, paths in tmp_path,
    the built-in CA only (no network), the hook exactly as in the ConfigMap."""
    _, docs = load(K8S)
    cfg = certsync_config(docs)
    repo = Repo(tmp_path / "repo")
    for f in (ROOT / "examples" / "manifests" / "shop").glob("*.yaml"):
        repo.write("shop/" + f.name, f.read_text())
    repo.commit("the example manifests")
    cfg["source"] = {"repo": str(repo.path), "ref": "main", "path": "certificates/shop", "interval": "1s"}
    cfg["state"] = {"path": str(tmp_path / "state" / "state.json")}
    cfg["output"]["root"] = str(tmp_path / "certs")
    cfg["issuers"] = {"internal": {"type": "ca", "generate": {"dir": str(tmp_path / "ca")}}}
    cfg["server"] = {"listen": f"127.0.0.1:{port}"}
    path = tmp_path / "certsync.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, repo


def test_the_configmap_config_validates(tmp_path):
    config, _ = local_config(tmp_path, free_port())
    r = subprocess.run([BIN, "validate", "--config", str(config)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def served_serial(port, timeout=5):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with ctx.wrap_socket(s, server_hostname="www.pizza.test") as t:
            der = t.getpeercert(binary_form=True)
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True)
    return r.stdout.decode().strip().split("=", 1)[1].lower().lstrip("0")


def test_the_configmap_hook_reloads_nginx_after_a_new_certificate(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(nginx), "nginx is missing (Debian package nginx)"
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"no PID namespaces here (unshare: {probe.stderr.strip()})")
    http_port, tls_port = free_port(), free_port()
    config, repo = local_config(tmp_path, http_port)
    certs = tmp_path / "certs"
    # nginx.yaml's server block, its /certs made this test's output root, on a free port.
    _, docs = load(K8S)
    server = docs[("ConfigMap", "shop-nginx")]["data"]["default.conf"]
    server = server.replace("/certs/", f"{certs}/").replace("listen 8443 ssl", f"listen 127.0.0.1:{tls_port} ssl")
    (tmp_path / "nginx").mkdir()
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx/nginx.pid;\nerror_log {tmp_path}/nginx/error.log;\n"
                    "events {}\nhttp {\n  access_log off;\n"
                    f"  client_body_temp_path {tmp_path}/nginx/body;\n  proxy_temp_path {tmp_path}/nginx/proxy;\n"
                    f"  fastcgi_temp_path {tmp_path}/nginx/fcgi;\n  uwsgi_temp_path {tmp_path}/nginx/uwsgi;\n"
                    f"  scgi_temp_path {tmp_path}/nginx/scgi;\n{server}}}\n")
    # The certificate exists before nginx starts (as the Deployment's startup probe waits for it).
    r = subprocess.run([BIN, "apply", "--config", str(config)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    first = cert_serial(certs / "shop" / "www" / "tls.crt")
    log = open(tmp_path / "pod.log", "w")
    # One PID namespace for nginx and certsync, as shareProcessNamespace gives the Pod's containers.
    pod = subprocess.Popen([unshare, "--pid", "--mount-proc", "--kill-child", "/bin/sh", "-c",
                            f'"{nginx}" -c "{conf}" -p "{tmp_path}/nginx" && exec "{BIN}" run --config "{config}" '
                            "--log-format text"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.time() + 30
        while True:
            try:
                assert served_serial(tls_port) == first
                break
            except (OSError, ssl.SSLError):
                assert time.time() < deadline and pod.poll() is None, (tmp_path / "pod.log").read_text()
                time.sleep(0.1)
        # A new certificate for shop-www (a changed manifest: replaced, published, onChange run).
        www = ROOT / "examples" / "manifests" / "shop" / "www.yaml"
        repo.write("shop/www.yaml", www.read_text().replace("dnsNames: [www.pizza.test, pizza.test]",
                                                            "dnsNames: [www.pizza.test, pizza.test, shop.pizza.test]"))
        repo.commit("a new name")
        deadline = time.time() + 60
        while True:
            new = cert_serial(certs / "shop" / "www" / "tls.crt") if (certs / "shop" / "www").exists() else first
            if new != first and served_serial(tls_port) == new:
                break  # nginx serves the new certificate: the hook's SIGHUP reached its master
            assert time.time() < deadline, ("nginx still serves the old certificate",
                                            (tmp_path / "pod.log").read_text())
            assert pod.poll() is None, (tmp_path / "pod.log").read_text()
            time.sleep(0.1)
        text = (tmp_path / "pod.log").read_text()
        assert "no nginx master process" not in text, text
    finally:
        pod.send_signal(signal.SIGTERM)
        try:
            pod.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pod.kill()
            pod.wait()
        log.close()
