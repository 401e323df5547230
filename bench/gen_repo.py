#!/usr/bin/env python3
"""Generates a git repository of N certificate manifests for benchmarks.

usage: gen_repo.py DIR N [--per-file K]

Writes DIR/repo (a git repository whose certificates/ folder holds N
Certificate documents, K per file) and DIR/certsync.yaml (built-in CA,
state and outputs under DIR).
"""
import argparse
import os
import subprocess
from pathlib import Path

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.test",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.test")


def doc(i, issuer="internal", domain=None):
    if domain:  # a provider's zone: every name inside it
        return (
            "apiVersion: certsync/v1\n"
            "kind: Certificate\n"
            "metadata:\n"
            f"  name: cert-{i:05d}\n"
            "spec:\n"
            f"  issuer: {issuer}\n"
            f"  dnsNames: [host-{i}.{domain}]\n"
            f"  output: {{directory: cert-{i:05d}}}\n"
        )
    return (
        "apiVersion: certsync/v1\n"
        "kind: Certificate\n"
        "metadata:\n"
        f"  name: cert-{i:05d}\n"
        f"  labels: {{team: team-{i % 17}}}\n"
        "spec:\n"
        "  issuer: internal\n"
        f"  commonName: host-{i}.svc{i % 50}.example.test\n"
        f"  dnsNames: [host-{i}.svc{i % 50}.example.test, alt-{i}.example.test]\n"
        "  renewBefore: 720h\n"
        "  privateKey: {algorithm: ECDSA, size: 256}\n"
        f"  output: {{directory: team-{i % 17}/cert-{i:05d}}}\n"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("n", type=int)
    ap.add_argument("--per-file", type=int, default=1)
    ap.add_argument("--issuer", default="internal", help="the issuer the manifests name")
    ap.add_argument("--domain", default=None, help="put every name in this domain (provider benches)")
    a = ap.parse_args()
    root = Path(a.dir)
    repo = root / "repo"
    certs = repo / "certificates"
    certs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    for start in range(0, a.n, a.per_file):
        docs = [doc(i, a.issuer, a.domain) for i in range(start, min(a.n, start + a.per_file))]
        sub = certs / f"team-{(start // a.per_file) % 17}"
        sub.mkdir(exist_ok=True)
        (sub / f"certs-{start:05d}.yaml").write_text("---\n".join(docs))
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=GIT_ENV)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"{a.n} certificates"], check=True, env=GIT_ENV)
    (root / "certsync.yaml").write_text(
        "source: {repo: repo, ref: main, path: certificates}\n"
        "state: {path: state/state.json}\n"
        "output: {root: certs}\n"
        "issuers:\n  internal: {type: ca, generate: {dir: ca}}\n"
        "policy: {prune: true}\n"
    )


if __name__ == "__main__":
    main()
