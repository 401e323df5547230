#!/bin/sh
# A real authoritative DNS server for the tests: Debian's BIND 9 on loopback,
# taking TSIG-signed RFC 2136 updates of TXT records.
#
#   bind.sh start DIR PORT ZONE...   prints the TSIG secret (base64) once named answers
#   bind.sh stop DIR
#
# Each zone gets an SOA, NS ns1.<zone> (A 127.0.0.1) and "* A 127.0.0.1" (so
# that http-01 names resolve for Pebble's VA). The TSIG key is named
# "certsync-key." (hmac-sha256) and may update any TXT record in the zones.
# Records in DIR/extra.<zone> (zone file syntax), when present, are added to <zone>.
# DIR/named.log has named's log, including every update.
set -eu
cmd=$1 dir=$2

case $cmd in
start)
	port=$3
	shift 3
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	cd "$dir"
	rm -f ./*.jnl
	[ -s tsig.key ] || tsig-keygen -a hmac-sha256 certsync-key. > tsig.key
	{
		echo "include \"$dir/tsig.key\";"
		echo "options { directory \"$dir\"; pid-file \"$dir/named.pid\"; session-keyfile none;"
		echo "  listen-on port $port { 127.0.0.1; }; listen-on-v6 { none; };"
		echo "  recursion no; dnssec-validation no; notify no; allow-transfer { none; }; };"
		echo "controls { };"
		echo "logging { channel e { stderr; severity info; print-time yes; };"
		echo "  category default { e; }; category update { e; }; };"
		for z in "$@"; do
			echo "zone \"$z\" { type primary; file \"$dir/db.$z\";"
			echo "  update-policy { grant certsync-key. zonesub TXT; }; };"
			printf '$TTL 60\n@ IN SOA ns1.%s. hostmaster.%s. ( 1 60 60 600 30 )\n  IN NS ns1.%s.\nns1 IN A 127.0.0.1\n* IN A 127.0.0.1\n' \
				"$z" "$z" "$z" > "db.$z"
			if [ -f "extra.$z" ]; then cat "extra.$z" >> "db.$z"; fi
		done
	} > named.conf
	# As the user running the tests (root in CI): named's -u would need every
	# directory up to DIR to be open to the bind user.
	named -g -c "$dir/named.conf" > named.log 2>&1 &
	echo $! > named.run.pid
	i=0
	until dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 SOA "$1" 2>/dev/null | grep -q '^ns1\.'; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$(cat named.run.pid)" 2>/dev/null; then
			echo "named did not start:" >&2
			cat named.log >&2
			exit 1
		fi
		sleep 0.05
	done
	sed -n 's/.*secret "\(.*\)";.*/\1/p' tsig.key
	;;
stop)
	if [ -s "$dir/named.run.pid" ]; then
		kill "$(cat "$dir/named.run.pid")" 2>/dev/null || true
		rm -f "$dir/named.run.pid"
	fi
	;;
*)
	echo "usage: $0 start DIR PORT ZONE... | stop DIR" >&2
	exit 2
	;;
esac
