#!/bin/sh
# make run: keep a small git repository in sync with examples/manifests and
# reconcile it with the built-in CA issuer. Run it twice: the second time
# there is nothing to change.
set -eu
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
work=$2
src=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$work"
repo=$work/repo
if [ ! -d "$repo/.git" ]; then
	git init -q "$repo"
	git -C "$repo" symbolic-ref HEAD refs/heads/main
fi
rm -rf "$repo/certificates"
cp -R "$src/manifests" "$repo/certificates"
git -C "$repo" add -A
if ! git -C "$repo" diff --cached --quiet 2>/dev/null || ! git -C "$repo" rev-parse -q --verify HEAD >/dev/null; then
	git -C "$repo" -c user.name=certsync -c user.email=certsync@localhost commit -q -m "Sync examples/manifests"
	echo "== committed examples/manifests to $repo"
fi
[ -f "$work/certsync.yaml" ] || cp "$src/certsync.yaml" "$work/certsync.yaml"

cd "$work"
echo "== certsync apply (config $work/certsync.yaml)"
"$bin" apply --config certsync.yaml
echo
echo "== certsync state list"
"$bin" state list --config certsync.yaml
echo
echo "Certificates are in $work/certs (tls.crt, tls.key, ca.crt); the CA is $work/ca/ca.crt."
