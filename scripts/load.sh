#!/usr/bin/env bash
# Loopback load test: the same handler bare and behind the wxlogin layer.
#
#   scripts/load.sh                          # 10 s per run, 2 rounds (bare, layer, bare, layer)
#   LOAD_SECONDS=30 LOAD_ROUNDS=3 scripts/load.sh
#   LOAD_CONNECTIONS=128 LOAD_THREADS=2 scripts/load.sh
#   LOAD_USERS=1000 scripts/load.sh         # 1000 sessions in rotation (a wrk Lua script)
#
# Builds `examples/bare_and_layer.rs` in release, starts it (bare and layer on
# two loopback ports, plus the fake WeChat), logs one user in through the fake
# (`POST /_fake/wx.login` for a code, then `POST /wx/login`), checks the token
# works, then runs wrk (or oha if wrk is missing) against both with the same
# `Authorization` header, alternating bare and layer so drift on a shared
# machine hits both. With LOAD_USERS=N (wrk only) it logs N users in and
# each wrk thread walks their N tokens, one per request, on both sides: one
# token puts every request on one cached session, which the two cores then
# share; many users spread them, as real traffic does. Prints requests/s and
# latency percentiles per run, and the layer/bare throughput ratio from the
# summed requests/s of each side.
# Every run is bounded (`timeout`); only 127.0.0.1 is used.
#
# The load generator shares the machine with the server: on a 2-core box both
# fight for the same cores, so absolute numbers are low and the ratio is what
# to read. The server's tokio runtime has one worker per core.
set -euo pipefail

SECONDS_PER_RUN=${LOAD_SECONDS:-10}
ROUNDS=${LOAD_ROUNDS:-2}
CONNECTIONS=${LOAD_CONNECTIONS:-64}
THREADS=${LOAD_THREADS:-2}
USERS=${LOAD_USERS:-1}
[[ "$USERS" =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: LOAD_USERS must be a positive number" >&2; exit 2; }

cd "$(dirname "$0")/.."

if command -v wrk >/dev/null; then
    tool=wrk
elif command -v oha >/dev/null; then
    tool=oha
else
    echo "load.sh: needs wrk (apt-get install -y wrk) or oha (cargo install oha)" >&2
    exit 2
fi

cargo build --release --example bare_and_layer >&2
bin=target/release/examples/bare_and_layer

work=$(mktemp -d)
"$bin" >"$work/server.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 200); do
    grep -q '^layer on ' "$work/server.log" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.05
done
fake=$(sed -n 's/^fake wechat on //p' "$work/server.log")
bare=$(sed -n 's/^bare on //p' "$work/server.log")
layer=$(sed -n 's/^layer on //p' "$work/server.log")
[ -n "$layer" ] || { echo "load.sh: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
# Logs one user in through the fake WeChat and prints the session token.
login() {
    local openid=$1 code token
    for _ in 1 2 3 4 5; do
        code=$(curl -fsS --max-time 5 -X POST "$fake/_fake/wx.login" \
            -H 'content-type: application/json' -d "{\"openid\":\"$openid\"}" | json_field code)
        # Empty on a 429 (the login rate cap): wait for the next second.
        token=$(curl -sS --max-time 10 -X POST "$layer/wx/login" \
            -H 'content-type: application/json' -d "{\"code\":\"$code\"}" | json_field token)
        [ -n "$token" ] && { echo "$token"; return; }
        sleep 1
    done
    echo "load.sh: login of $openid failed" >&2
    exit 1
}
token=$(login o-load-user)
auth="Authorization: Bearer $token"
script=()
if [ "$USERS" -gt 1 ]; then
    [ "$tool" = wrk ] || { echo "load.sh: LOAD_USERS needs wrk" >&2; exit 2; }
    tokens=("$token")
    for i in $(seq 2 "$USERS"); do
        t=$(login "o-load-user-$i") # its own assignment, so that set -e sees a failure
        tokens+=("$t")
    done
    {
        printf 'local tokens = {'
        printf '"%s",' "${tokens[@]}"
        printf '}\n'
        # Each wrk thread starts at its own place (set before it starts) and
        # steps by one token per request.
        printf 'local started = 0\n'
        printf 'function setup(thread)\n'
        printf '  thread:set("offset", math.floor(started * #tokens / %d))\n' "$THREADS"
        printf '  started = started + 1\nend\n'
        printf 'local i = 0\nfunction init(args) i = offset or 0 end\n'
        printf 'function request()\n  i = i %% #tokens + 1\n'
        printf '  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[i]})\nend\n'
    } >"$work/users.lua"
    script=(-s "$work/users.lua")
fi
for url in "$bare/" "$layer/"; do
    got=$(curl -fsS --max-time 5 -H "$auth" "$url")
    [ "$got" = "hello o-load-user" ] || { echo "load.sh: $url answered '$got'" >&2; exit 1; }
done
# Without the token the layer refuses: the load below really goes through it.
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$layer/")
[ "$status" = 401 ] || { echo "load.sh: layer without token answered $status" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load: $(uptime | sed 's/.*load average/load average/')"
echo "tool: $tool, ${SECONDS_PER_RUN}s per run, $CONNECTIONS connections, $THREADS threads, $ROUNDS rounds, $USERS user(s)"
echo

# Prints "rps p50 p90 p99" (latencies in ms) for one run.
run() {
    local url=$1
    if [ "$tool" = wrk ]; then
        timeout $((SECONDS_PER_RUN + 15)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" \
            --latency -H "$auth" ${script[@]+"${script[@]}"} "$url" >"$work/out"
        awk '
            function ms(v) {
                if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
                if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
                if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
                return v
            }
            /^ +50%/ { p50 = ms($2) } /^ +90%/ { p90 = ms($2) } /^ +99%/ { p99 = ms($2) }
            /^Requests\/sec:/ { rps = $2 }
            /Non-2xx/ { bad = $NF }
            END {
                if (bad > 0) { print "non-2xx responses: " bad > "/dev/stderr"; exit 1 }
                printf "%.0f %.3f %.3f %.3f\n", rps, p50, p90, p99
            }' "$work/out"
    else
        timeout $((SECONDS_PER_RUN + 15)) oha --no-tui -z "${SECONDS_PER_RUN}s" -c "$CONNECTIONS" \
            --output-format json -H "$auth" "$url" >"$work/out"
        python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
codes = d.get("statusCodeDistribution", {})
if any(k != "200" for k in codes):
    sys.exit("non-200 responses: %s" % codes)
p = d["latencyPercentiles"]
print("%.0f %.3f %.3f %.3f" % (d["summary"]["requestsPerSec"], p["p50"] * 1e3, p["p90"] * 1e3, p["p99"] * 1e3))
' "$work/out"
    fi
}

printf '%-6s %-6s %12s %10s %10s %10s\n' round side "req/s" "p50 ms" "p90 ms" "p99 ms"
bare_sum=0
layer_sum=0
for round in $(seq "$ROUNDS"); do
    for side in bare layer; do
        if [ "$side" = bare ]; then url="$bare/"; else url="$layer/"; fi
        read -r rps p50 p90 p99 < <(run "$url")
        printf '%-6s %-6s %12s %10s %10s %10s\n' "$round" "$side" "$rps" "$p50" "$p90" "$p99"
        if [ "$side" = bare ]; then
            bare_sum=$((bare_sum + rps))
        else
            layer_sum=$((layer_sum + rps))
        fi
    done
done
echo
awk -v b="$bare_sum" -v l="$layer_sum" -v n="$ROUNDS" 'BEGIN {
    printf "mean req/s: bare %.0f, layer %.0f; layer/bare throughput = %.3f\n", b / n, l / n, l / b
}'
