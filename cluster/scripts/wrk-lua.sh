# Sourced by ab.sh and profile.sh: the wrk scripts of the neutral bench's
# shape (100-byte values over 10,000 keys), and a preload that writes every
# key first so that gets find them.

wrk_value=$(head -c 100 /dev/zero | tr '\0' '\007' | base64 -w0)
wrk_keys=$(seq 0 9999 | sed 's/.*/"bench-&"/' | paste -sd,)
wrk_put="return wrk.format(\"POST\", \"/api/v1/item\", json, '{\"key\":\"' .. key .. '\",\"value\":\"' .. value .. '\"}')"

wrk_request_line() { # wrk_request_line put|strong|eventual
  case $1 in
    put) echo "$wrk_put" ;;
    strong) echo 'return wrk.format("GET", "/api/v1/item?key=" .. key .. "&consistency=strong")' ;;
    eventual) echo 'return wrk.format("GET", "/api/v1/item?key=" .. key)' ;;
    *) echo "unknown operation $1 (put, strong or eventual)" >&2; return 2 ;;
  esac
}

wrk_lua() { # wrk_lua FILE KEY_LINE REQUEST_LINE
  cat >"$1" <<EOF
local keys = {$wrk_keys}
local value = "$wrk_value"
local json = {["Content-Type"] = "application/json"}
local threads = 0
function setup(thread)
  thread:set("offset", threads * 1000)
  threads = threads + 1
end
local counter = 0
function init(args)
  counter = offset or 0
end
function request()
  counter = counter + 1
  $2
  $3
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
EOF
}

# The run script: keys in a stride, so that consecutive requests differ.
wrk_run_lua() { # wrk_run_lua FILE OP
  local line
  line=$(wrk_request_line "$2") || return 2
  wrk_lua "$1" 'local key = keys[(counter * 7919) % #keys + 1]' "$line"
}

wrk_preload() { # wrk_preload WORK_DIR PORT...
  local dir=$1; shift
  # One pass over the keys and one more request: wrk may call request()
  # once without sending it, which would leave a key unwritten.
  wrk_lua "$dir/preload.lua" \
    'if counter > #keys + 1 then return wrk.format("GET", "/health") end local key = keys[(counter - 1) % #keys + 1]' \
    "$wrk_put"
  for port in "$@"; do wrk -t1 -c16 -d8s -s "$dir/preload.lua" "http://127.0.0.1:$port" >/dev/null; done
}
