#!/bin/sh
# pebble-challtestsrv as a test DNS server: answers A 127.0.0.1 for every
# name (no AAAA), TXT records set through its management API.
#
#   challtestsrv.sh start DIR DNS_PORT MGMT_PORT
#   challtestsrv.sh stop DIR
set -eu
cmd=$1 dir=$2

case $cmd in
start)
	mkdir -p "$dir"
	pebble-challtestsrv -management "127.0.0.1:$4" -dns01 "127.0.0.1:$3" -http01 "" -https01 "" \
		-tlsalpn01 "" -defaultIPv6 "" -defaultIPv4 127.0.0.1 > "$dir/challtestsrv.log" 2>&1 &
	echo $! > "$dir/challtestsrv.pid"
	i=0
	until dig +short +time=1 +tries=1 -p "$3" @127.0.0.1 A probe.test 2>/dev/null | grep -q '^127\.'; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$(cat "$dir/challtestsrv.pid")" 2>/dev/null; then
			echo "challtestsrv did not start:" >&2
			cat "$dir/challtestsrv.log" >&2
			exit 1
		fi
		sleep 0.05
	done
	;;
stop)
	if [ -s "$dir/challtestsrv.pid" ]; then
		kill "$(cat "$dir/challtestsrv.pid")" 2>/dev/null || true
		rm -f "$dir/challtestsrv.pid"
	fi
	;;
esac
