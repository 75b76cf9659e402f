#!/usr/bin/env bash
# Debian-packaged servers the tests use, installed with apt-get when missing and run on loopback only,
# each in a throw-away data directory under var/services/. `start` writes var/services.env (sourced by
# deploy/test.sh) with the addresses; `stop` stops what `start` started and removes its data.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)/var/services
env_file=$(pwd)/var/services.env

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT=${HGW_TEST_REDIS_PORT:-63799}

need() {  # need BINARY-GLOB PACKAGE...: install the packages when the binary is missing
  if ! compgen -G "$1" >/dev/null; then
    echo "services: installing ${*:2} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postinst would start a system-wide server; the tests run their own on loopback.
    # An existing policy-rc.d (the base image's guard) is left exactly as it was.
    local made_guard=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_guard=1
    fi
    local ok=0
    (apt-get update -qq && apt-get install -y -qq "${@:2}" >/dev/null) || ok=1
    [ "$made_guard" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return $ok
  fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

start_postgres() {
  need "/usr/lib/postgresql/*/bin/pg_ctl" postgresql
  local bin dir port
  bin=$(pg_bin); dir=$root/postgres; port=${HGW_TEST_PG_PORT:-$(free_port)}
  rm -rf "$dir"; mkdir -p "$dir"; chown postgres "$dir" 2>/dev/null || true
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  run_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
  run_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off" start >/dev/null \
    || { tail -20 "$dir/log" >&2; return 1; }
  echo "HGW_TEST_PG_DSN=postgresql://postgres@127.0.0.1:$port/postgres" >> "$env_file"
}

stop_postgres() {
  local bin dir
  bin=$(pg_bin); dir=$root/postgres
  if [ -n "$bin" ] && [ -d "$dir/data" ]; then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    else "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true; fi
  fi
  rm -rf "$dir"
}

start_redis() {
  need "/usr/bin/redis-server" redis-server
  local dir=$root/redis
  stop_redis  # a server left by an interrupted run would hold the port
  mkdir -p "$dir"
  # No persistence: the data directory is thrown away at stop; --daemonize writes the pid file we stop by.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/log" --save "" --appendonly no
  for _ in $(seq 50); do  # bounded: 5 s for the server to answer
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null
  echo "HGW_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" >> "$env_file"
  # The tests stop and restart this server (outage scenarios) with the same arguments.
  echo "HGW_TEST_REDIS_SERVER=$(command -v redis-server)" >> "$env_file"
}

stop_redis() {
  local dir=$root/redis
  if [ -f "$dir/redis.pid" ]; then
    local pid
    pid=$(cat "$dir/redis.pid")  # read once: redis removes the file as it exits
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start)
    mkdir -p "$root"; chmod 755 "$root" "$(dirname "$root")"; : > "$env_file"
    start_postgres
    start_redis
    ;;
  stop)
    stop_postgres
    stop_redis
    rm -f "$env_file"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
