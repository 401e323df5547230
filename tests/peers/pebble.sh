#!/bin/sh
# A real ACME server for the tests: Debian's Pebble on loopback, in DIR.
#
#   pebble.sh start DIR     prints the directory URL once it answers
#   pebble.sh stop DIR
#
# Settings come from the environment (all optional except the ports):
#   PEBBLE_PORT, PEBBLE_MGMT_PORT   the ACME and management listeners (127.0.0.1)
#   PEBBLE_HTTP_PORT                where Pebble's VA fetches http-01 answers (default 5002)
#   PEBBLE_DNS                      host:port of the DNS server the VA asks (required by the VA; default 127.0.0.1:53)
#   PEBBLE_EAB_KID, PEBBLE_EAB_HMAC external account binding required with this key (base64url)
#   PEBBLE_BLOCKLIST                comma-separated names refused with rejectedIdentifier
#   PEBBLE_VALIDITY                 certificate lifetime in seconds (default 3600)
#   PEBBLE_VA_NOSLEEP, PEBBLE_VA_ALWAYS_VALID, PEBBLE_WFE_NONCEREJECT, PEBBLE_AUTHZREUSE, ... are Pebble's own.
# DIR/ca.pem is the trust anchor of Pebble's TLS listener (pass it as caFile);
# DIR/roots.pem (after start) is the root that signs the certificates Pebble issues.
set -eu
cmd=$1 dir=$2

case $cmd in
start)
	: "${PEBBLE_PORT:?}" "${PEBBLE_MGMT_PORT:?}"
	mkdir -p "$dir"
	cd "$dir"
	if [ ! -s localhost.pem ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
			-subj "/CN=certsync test Pebble TLS CA" -keyout ca.key -out ca.pem 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
			-keyout localhost.key -out localhost.csr 2>/dev/null
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' > ext.cnf
		openssl x509 -req -in localhost.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
			-out localhost.pem -extfile ext.cnf 2>/dev/null
	fi
	eab=false keys=""
	if [ -n "${PEBBLE_EAB_KID:-}" ]; then
		eab=true
		keys=", \"externalAccountMACKeys\": {\"$PEBBLE_EAB_KID\": \"$PEBBLE_EAB_HMAC\"}"
	fi
	block=""
	if [ -n "${PEBBLE_BLOCKLIST:-}" ]; then
		block=", \"domainBlocklist\": [\"$(echo "$PEBBLE_BLOCKLIST" | sed 's/,/", "/g')\"]"
	fi
	cat > pebble.json <<JSON
{ "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$dir/localhost.pem",
    "privateKey": "$dir/localhost.key",
    "httpPort": ${PEBBLE_HTTP_PORT:-5002}, "tlsPort": 0,
    "ocspResponderURL": "",
    "certificateValidityPeriod": ${PEBBLE_VALIDITY:-3600},
    "externalAccountBindingRequired": $eab$keys$block } }
JSON
	pebble -config pebble.json -dnsserver "${PEBBLE_DNS:-127.0.0.1:53}" > pebble.log 2>&1 &
	echo $! > pebble.pid
	i=0
	until curl -sf --cacert ca.pem "https://127.0.0.1:$PEBBLE_PORT/dir" > /dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$(cat pebble.pid)" 2>/dev/null; then
			echo "pebble did not start:" >&2
			cat pebble.log >&2
			exit 1
		fi
		sleep 0.05
	done
	curl -sf --cacert ca.pem "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" > roots.pem
	echo "https://127.0.0.1:$PEBBLE_PORT/dir"
	;;
stop)
	if [ -s "$dir/pebble.pid" ]; then
		kill "$(cat "$dir/pebble.pid")" 2>/dev/null || true
		rm -f "$dir/pebble.pid"
	fi
	;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac
