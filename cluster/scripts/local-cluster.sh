#!/usr/bin/env bash
# A local cluster of kvnode processes on loopback, for trying the store by hand.
#
#   local-cluster.sh up      start KV_NODES nodes (default 3) on ports from KV_BASE_PORT (7001)
#   local-cluster.sh down    stop them (SIGTERM, then SIGKILL after 10 s)
#   local-cluster.sh status  which are running
#
# Data, logs and pid files live under KV_CLUSTER_DIR (default .cluster/ at the
# project root): .cluster/n1/ is node n1's data, .cluster/n1.log its log.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${KV_CLUSTER_DIR:-$root/.cluster}
base_port=${KV_BASE_PORT:-7001}
nodes=${KV_NODES:-3}
bin=${KVNODE_BIN:-$root/target/release/kvnode}

port_of() { echo $((base_port + $1 - 1)); }
pid_of() { cat "$dir/n$1.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

up() {
  [ -x "$bin" ] || { echo "kvnode binary not found at $bin (run: cargo build --release -p cluster)" >&2; exit 1; }
  mkdir -p "$dir"
  for i in $(seq 1 "$nodes"); do
    if alive "$i"; then echo "node n$i is already running (pid $(pid_of "$i")); run 'make cluster-down' first" >&2; exit 1; fi
  done
  # One secret for the cluster's internal traffic, made once and kept in
  # $dir/secret (mode 600); KV_CLUSTER_SECRET overrides it.
  if [ -z "${KV_CLUSTER_SECRET:-}" ]; then
    if [ ! -s "$dir/secret" ]; then
      (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/secret")
    fi
    KV_CLUSTER_SECRET=$(cat "$dir/secret")
  fi
  export KV_CLUSTER_SECRET
  local peers=""
  for i in $(seq 1 "$nodes"); do peers+="${peers:+,}n$i=127.0.0.1:$(port_of "$i")"; done
  for i in $(seq 1 "$nodes"); do
    mkdir -p "$dir/n$i"
    setsid "$bin" --node-id "n$i" --listen "127.0.0.1:$(port_of "$i")" --data-dir "$dir/n$i" --peers "$peers" \
      >"$dir/n$i.out" 2>"$dir/n$i.log" </dev/null &
    echo $! >"$dir/n$i.pid"
  done
  for i in $(seq 1 "$nodes"); do
    local url="http://127.0.0.1:$(port_of "$i")"
    for _ in $(seq 1 300); do
      curl -sf "$url/health" >/dev/null 2>&1 && break
      if ! alive "$i"; then echo "node n$i exited; its log ($dir/n$i.log) ends with:" >&2; tail -n 20 "$dir/n$i.log" >&2; down; exit 1; fi
      sleep 0.1
    done
    curl -sf "$url/health" >/dev/null 2>&1 || { echo "node n$i did not answer at $url within 30 s" >&2; down; exit 1; }
  done
  for i in $(seq 1 "$nodes"); do echo "http://127.0.0.1:$(port_of "$i")"; done
}

down() {
  for i in $(seq 1 "$nodes"); do
    if alive "$i"; then
      local pid; pid=$(pid_of "$i")
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then echo "node n$i ignored SIGTERM for 10 s; killing it" >&2; kill -KILL "$pid"; fi
      echo "stopped n$i"
    fi
    rm -f "$dir/n$i.pid"
  done
}

status() {
  for i in $(seq 1 "$nodes"); do
    if alive "$i"; then echo "n$i running (pid $(pid_of "$i")) at http://127.0.0.1:$(port_of "$i")"; else echo "n$i stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
