#!/usr/bin/env bash
# A whole-machine CPU profile of one operation on a local 3-node cluster:
# wrk drives the operation (the neutral bench's shape, 32 connections)
# while `perf record` samples every CPU. Prints the share of the machine
# by rough category (profile-categories.awk, with the CPU microseconds per
# operation each comes to), by thread name, by object and by symbol (top
# TOP, 40), so that a claim of "where the time goes" can be checked on any
# machine.
#
#   profile.sh BIN put|strong|eventual
#
# SECS (12) and CONNECTIONS (32) shape it; wrk and perf must be on the
# PATH. The raw samples stay in PERF_DATA (/tmp/kv-profile.data).
set -euo pipefail

[ $# -ge 2 ] || { sed -n 2,13p "$0" >&2; exit 2; }
bin=$1; op=$2
secs=${SECS:-12}; connections=${CONNECTIONS:-32}; top=${TOP:-40}
data=${PERF_DATA:-/tmp/kv-profile.data}
root=$(cd "$(dirname "$0")/../.." && pwd)
script_dir=$root/cluster/scripts
work=$(mktemp -d /tmp/profile.XXXXXX)
for tool in wrk perf; do command -v $tool >/dev/null || { echo "$tool is not on the PATH" >&2; exit 1; }; done
# shellcheck source=wrk-lua.sh
. "$script_dir/wrk-lua.sh"
wrk_request_line "$op" >/dev/null || exit 2

cluster() { KV_CLUSTER_DIR=$work/c KVNODE_BIN=$bin KV_BASE_PORT=7401 KV_CLUSTER_SECRET=abababababababab \
  "$script_dir/local-cluster.sh" "$1" >/dev/null; }
cleanup() { cluster down || true; rm -rf "$work"; }
trap cleanup EXIT
cluster up
wrk_preload "$work" 7401
wrk_run_lua "$work/run.lua" "$op"

wrk -t2 -c "$connections" -d "$((secs + 2))s" --timeout 5s -s "$work/run.lua" http://127.0.0.1:7401 >"$work/wrk.out" &
wrk_pid=$!
sleep 1
perf record -q -e cpu-clock -F 999 -a -o "$data" -- sleep "$secs" 2>/dev/null
wait "$wrk_pid"
awk '/WRK_RESULT/ {printf "wrk: %.0f %s/s, p99 %.2f ms, %d errors\n", $2/($3/1e6), op, $6/1000, $4}' op="$op" "$work/wrk.out"
ops_per_s=$(awk '/WRK_RESULT/ {printf "%.0f", $2/($3/1e6)}' "$work/wrk.out")
report() { perf report -i "$data" --stdio --no-children --percent-limit 0.3 "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'; }
# Each category's share of the machine, and what that is per operation
# (the machine's CPU time per second, over the operations per second).
echo "== by category (share of the machine; microseconds of CPU per $op)"
perf report -i "$data" --stdio --no-children -t '@' --sort comm,dso,sym 2>/dev/null |
  awk -f "$script_dir/profile-categories.awk" | sort -rn |
  awk -v cpus="$(nproc)" -v ops="$ops_per_s" '{s = $1; sub(/%/, "", s); printf "%s  %6.1f us\n", $0, s / 100 * cpus * 1e6 / ops}'
echo "== by thread"; report --sort comm | head -20
echo "== by object"; report --sort dso | head -12
echo "== by symbol"; report --sort sym | head -"$top"
