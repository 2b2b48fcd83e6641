#!/usr/bin/env bash
# A local cluster of kvnode processes on loopback, for trying the store by hand.
#
#   local-cluster.sh up         start KV_NODES nodes (default 3) on ports from KV_BASE_PORT (7001)
#   local-cluster.sh down       stop every node of the folder (SIGTERM, then SIGKILL after 10 s)
#   local-cluster.sh status     which are running
#   local-cluster.sh join       start one more node that joins the running cluster (the next id and port)
#   local-cluster.sh leave NODE decommission NODE (e.g. n2): it hands its ranges over and stops
#   local-cluster.sh members    the membership as the first running node sees it
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
# Every node this folder has seen: the seed nodes and those that joined.
known() { { seq 1 "$nodes"; ls "$dir" 2>/dev/null | sed -n 's/^n\([0-9][0-9]*\)\.pid$/\1/p'; } | sort -n | uniq; }
secret() { if [ -n "${KV_CLUSTER_SECRET:-}" ]; then echo "$KV_CLUSTER_SECRET"; else cat "$dir/secret"; fi; }
admin() { curl -sf -H "x-kv-cluster-secret: $(secret)" "$@"; }
first_running() { for i in $(known); do if alive "$i"; then echo "$i"; return; fi; done; echo "no node is running" >&2; exit 1; }

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
  for i in $(known); do
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
  for i in $(known); do
    if alive "$i"; then echo "n$i running (pid $(pid_of "$i")) at http://127.0.0.1:$(port_of "$i")"; else echo "n$i stopped"; fi
  done
}

join() {
  [ -x "$bin" ] || { echo "kvnode binary not found at $bin (run: cargo build --release -p cluster)" >&2; exit 1; }
  local seed; seed=$(first_running)
  local i=$(( $(known | tail -n 1) + 1 ))
  KV_CLUSTER_SECRET=$(secret); export KV_CLUSTER_SECRET
  mkdir -p "$dir/n$i"
  setsid "$bin" --node-id "n$i" --listen "127.0.0.1:$(port_of "$i")" --data-dir "$dir/n$i" \
    --join "n$seed=127.0.0.1:$(port_of "$seed")" >"$dir/n$i.out" 2>"$dir/n$i.log" </dev/null &
  echo $! >"$dir/n$i.pid"
  local url="http://127.0.0.1:$(port_of "$i")"
  echo "n$i joins through n$seed; its progress: curl -H 'x-kv-cluster-secret: ...' $url/admin/v1/membership" >&2
  for _ in $(seq 1 1200); do
    if admin "$url/admin/v1/membership" 2>/dev/null | grep -q '"status":"normal"'; then echo "$url"; return; fi
    if ! alive "$i"; then echo "node n$i exited; its log ($dir/n$i.log) ends with:" >&2; tail -n 20 "$dir/n$i.log" >&2; exit 1; fi
    sleep 0.1
  done
  echo "n$i has not finished joining within 2 minutes; see $dir/n$i.log" >&2; exit 1
}

leave() {
  local node=${1:?usage: $0 leave NODE (e.g. n2)}
  local i=${node#n}
  alive "$i" || { echo "$node is not running" >&2; exit 1; }
  admin -X POST "http://127.0.0.1:$(port_of "$i")/admin/v1/leave" >/dev/null \
    || { echo "$node refused to leave; its log: $dir/$node.log" >&2; exit 1; }
  echo "$node is handing its ranges over" >&2
  for _ in $(seq 1 1200); do
    if ! alive "$i"; then rm -f "$dir/$node.pid"; echo "$node left the cluster and stopped"; return; fi
    sleep 0.1
  done
  echo "$node is still leaving after 2 minutes; see $dir/$node.log" >&2; exit 1
}

members() {
  local i; i=$(first_running)
  admin "http://127.0.0.1:$(port_of "$i")/admin/v1/membership"; echo
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  join) join ;;
  leave) leave "${2:-}" ;;
  members) members ;;
  *) echo "usage: $0 up|down|status|join|leave NODE|members" >&2; exit 2 ;;
esac
