#!/usr/bin/env bash
# Starts this machine's Postgres and Redis if they are not answering, for CI
# and local development. Redis runs without persistence: tests do not need it.
set -euo pipefail

wait_for() { # wait_for <what> <command...>
	local what=$1
	shift
	for _ in $(seq 30); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 1
	done
	echo "$what did not come up in 30s" >&2
	return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
	version=$(ls /etc/postgresql | sort -V | tail -n 1)
	echo "starting Postgres $version"
	pg_ctlcluster --skip-systemctl-redirect "$version" main start
	wait_for Postgres pg_isready -q -h 127.0.0.1 -p 5432
fi

if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != PONG ]; then
	echo "starting Redis"
	redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi
