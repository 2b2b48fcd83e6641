#!/usr/bin/env bash
# A/B of two kvnode builds on this machine, in the same run: both clusters
# run side by side (A on ports 7201-7203, B on 7301-7303), and wrk drives
# one operation at each in turn, ROUNDS short rounds each, the order
# swapped every other round. Prints each round and the medians of ops/s,
# p99 and the whole machine's CPU per operation (wrk included).
#
#   ab.sh BIN_A BIN_B [put|strong|eventual]
#
# ROUNDS (7), SECS (5), CONNECTIONS (32) and THREADS (2) shape it; wrk must
# be on the PATH. The wrk script is the neutral bench's (100-byte values
# over 10,000 keys, every key written first).
set -euo pipefail

[ $# -ge 2 ] || { sed -n 2,12p "$0" >&2; exit 2; }
bin_a=$1; bin_b=$2; op=${3:-put}
rounds=${ROUNDS:-7}; secs=${SECS:-5}; connections=${CONNECTIONS:-32}; threads=${THREADS:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/ab.XXXXXX)
script_dir=$root/cluster/scripts
command -v wrk >/dev/null || { echo "wrk is not on the PATH (apt-get install wrk)" >&2; exit 1; }

cluster() { # cluster up|down NAME BIN PORT
  KV_CLUSTER_DIR=$work/$2 KVNODE_BIN=$3 KV_BASE_PORT=$4 KV_CLUSTER_SECRET=abababababababab \
    "$script_dir/local-cluster.sh" "$1" >/dev/null
}
cleanup() { cluster down a "$bin_a" 7201 || true; cluster down b "$bin_b" 7301 || true; rm -rf "$work"; }
trap cleanup EXIT
cluster up a "$bin_a" 7201
cluster up b "$bin_b" 7301

# shellcheck source=wrk-lua.sh
. "$script_dir/wrk-lua.sh"
wrk_request_line "$op" >/dev/null || exit 2
# Every key written first, on both, so that gets find them.
wrk_preload "$work" 7201 7301
wrk_run_lua "$work/run.lua" "$op"

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
run() { # run PORT -> "ops p99_ms cpu_us_per_op errors"
  local before after out
  before=$(busy)
  out=$(wrk -t "$threads" -c "$connections" -d "${secs}s" --timeout 5s -s "$work/run.lua" "http://127.0.0.1:$1" | grep WRK_RESULT)
  after=$(busy)
  echo "$out" | awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    '{printf "%.0f %.2f %.1f %d\n", $2/($3/1e6), $6/1000, ticks*1e6/hz/$2, $4}'
}
echo "round | A ops/s p99_ms cpu_us/op errors | B ops/s p99_ms cpu_us/op errors"
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then a=$(run 7201); b=$(run 7301); else b=$(run 7301); a=$(run 7201); fi
  echo "$r | $a | $b"
  echo "$a" >>"$work/a.runs"; echo "$b" >>"$work/b.runs"
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for side in a b; do
  f=$work/$side.runs
  echo "median $side: ops/s $(cut -d' ' -f1 "$f" | median)  p99_ms $(cut -d' ' -f2 "$f" | median)  cpu_us/op $(cut -d' ' -f3 "$f" | median)  errors $(cut -d' ' -f4 "$f" | paste -sd+ | bc)"
done
