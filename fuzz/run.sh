#!/usr/bin/env bash
# Runs every fuzz target (or those named after SECONDS) for SECONDS each
# with libFuzzer, through cargo-fuzz on the stable toolchain, and prints
# per target the inputs run and whether it crashed. Exits non-zero if any
# target crashed; the input that did is under fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# `-s none`: no sanitizer. AddressSanitizer needs nightly's -Zsanitizer,
# and safe Rust gets little from it; what the targets look for (panics:
# out-of-range slices, overflow, failed assertions) needs none.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request rpc_codec record wal_replay)
cargo=${CARGO:-cargo}

# One build for all targets (they share the instrumented cluster crate).
$cargo fuzz build -s none
mkdir -p logs
failed=0
rows=()
for target in "${targets[@]}"; do
  # A sync request or reply carries 8 KiB of digests; libFuzzer's default
  # 4 KiB input limit would never reach their decoders.
  max_len=4096
  [ "$target" = rpc_codec ] && max_len=16384
  # New inputs go to corpus/ (not in git); seeds/ holds the committed
  # starting points and the inputs of crashes found and fixed.
  mkdir -p "corpus/$target" "seeds/$target"
  log="logs/$target.log"
  start=$(date +%s)
  status=0
  $cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  # The final stats say how many inputs ran; after a crash they are not
  # printed, and the last status line's count is used.
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
  if [ "$status" -eq 0 ]; then
    crashes=0
  else
    crashes=1
    failed=1
    echo "== $target failed (exit $status); its log, $(pwd)/$log, ends:" >&2
    tail -n 40 "$log" >&2
  fi
  rows+=("$(printf '%-12s %14s %9s %8s' "$target" "${execs:-0}" "${elapsed}s" "$crashes")")
done
printf '%-12s %14s %9s %8s\n' target inputs time crashes
printf '%s\n' "${rows[@]}"
passed=0
for row in "${rows[@]}"; do [ "${row##* }" = 0 ] && passed=$((passed + 1)); done
echo "fuzz: $passed passed, $((${#targets[@]} - passed)) failed"
exit $failed
