#!/bin/sh
# A throwaway PostgreSQL server for the tests (Debian's postgresql package):
# initdb and pg_ctl in DIR, as the unprivileged "postgres" user when run as
# root, listening on 127.0.0.1:PORT and a socket in DIR, password auth only.
#
#   pgtest.sh start DIR PORT   prints the database URL (user certsync, database certsync);
#                              commits are not flushed to disk unless PGTEST_DURABLE=1 (make bench)
#   pgtest.sh stop DIR         fast shutdown (DIR is left for the caller to remove)
#   pgtest.sh restart DIR      stop then start again on the same port
#   pgtest.sh kill DIR         SIGKILL the postmaster (a crash), no cleanup
set -eu
cmd=${1:?usage: pgtest.sh start|stop|restart|kill DIR [PORT]}
dir=${2:?DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "pgtest.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 2; }
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
ctl() {
	as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 "$@" >/dev/null
}
case $cmd in
start)
	port=${3:?PORT}
	mkdir -p "$dir"
	durable=off
	[ "${PGTEST_DURABLE:-0}" = 1 ] && durable=on
	[ "$(id -u)" = 0 ] && chown postgres "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		pw=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
		printf '%s\n' "$pw" >"$dir/pw"
		[ "$(id -u)" = 0 ] && chown postgres "$dir/pw"
		as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/pw" -E UTF8 \
			--no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
		cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = $durable
synchronous_commit = $durable
full_page_writes = $durable
max_connections = 200
CONF
		echo "$port" >"$dir/port"
		ctl start
		PGPASSWORD=$pw "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
			-c "CREATE ROLE certsync LOGIN CREATEDB PASSWORD '$pw'" -c "CREATE DATABASE certsync OWNER certsync" >/dev/null
	elif ! as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		ctl start
	fi
	echo "postgresql://certsync:$(cat "$dir/pw")@127.0.0.1:$(cat "$dir/port")/certsync"
	;;
stop)
	[ -f "$dir/data/postmaster.pid" ] && ctl stop -m fast || true
	;;
restart)
	[ -f "$dir/data/postmaster.pid" ] && ctl stop -m fast || true
	ctl start
	;;
kill)
	[ -f "$dir/data/postmaster.pid" ] && kill -9 "$(head -1 "$dir/data/postmaster.pid")" || true
	;;
*)
	echo "pgtest.sh: unknown command $cmd" >&2
	exit 2
	;;
esac
