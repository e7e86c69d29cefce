#!/bin/bash
# sessions-wrk.sh - the cost of the session calls under wrk (docs/sessions.md):
#   1. GET hit throughput of a sliding key against a plain key, in
#      alternating runs on one daemon (the machine's noise hits both alike):
#      plain, sliding, plain, sliding, ... BENCH_ROUNDS pairs; prints each
#      run and the ratio of the medians (sliding / plain).
#   2. PATCH throughput (JSON merge patch of one member, bench/kv-patch.lua,
#      over BENCH_KEYS keys).
# The daemon runs on a temporary database (--listen 127.0.0.1:0, the port
# read from its log), --durability normal unless BENCH_DURABILITY says
# otherwise, and is stopped by PID. Not part of `make check`. Needs wrk
# (bench/kv-wrk.sh installs it) and curl. Environment (defaults in
# brackets): SQLCACHED_BIN [src/sqlcached]  BENCH_DURATION [5s]
# BENCH_CONNECTIONS [64]  BENCH_THREADS [2]  BENCH_ROUNDS [3]
# BENCH_KEYS [1000]  BENCH_DURABILITY [normal]  BENCH_SLIDING_TTL [60]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${SQLCACHED_SRCDIR:-$here/..}
bin=${SQLCACHED_BIN:-$srcdir/src/sqlcached}
duration=${BENCH_DURATION:-5s}
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}
rounds=${BENCH_ROUNDS:-3}
durability=${BENCH_DURABILITY:-normal}
ttl=${BENCH_SLIDING_TTL:-60}
export BENCH_KEYS=${BENCH_KEYS:-1000}

die() {
    echo "sessions-wrk: $*" >&2
    exit 1
}
[ -x "$bin" ] || die "no daemon at $bin (run make first)"
command -v wrk >/dev/null 2>&1 || die "wrk not found (bench/kv-wrk.sh installs it)"
command -v curl >/dev/null 2>&1 || die "curl not found"

# daemon_port and daemon_stop (bounded waits), shared with the test scripts
# shellcheck source=tests/daemon.sh
. "$srcdir/tests/daemon.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-bench-XXXXXX")
pid=""
stop_daemon() {
    [ -n "$pid" ] || return 0
    daemon_stop "$pid" || true
    pid=""
}
trap 'stop_daemon; rm -rf "$tmp"' EXIT

"$bin" --listen 127.0.0.1:0 --db "$tmp/db" --durability "$durability" >"$tmp/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$tmp/daemon.log" "$pid")
[ -n "$port" ] || { cat "$tmp/daemon.log" >&2; die "the daemon did not start"; }
base=http://127.0.0.1:$port

value=$(printf 'v%.0s' $(seq 1 100))
put() { # put PATH: 201 expected
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT \
        -H 'Content-Type: application/octet-stream' --data-binary "$value" "$base$1")
    [ "$code" = 201 ] || die "PUT $1: HTTP $code"
}
put /v1/kv/bench:plain
put "/v1/kv/bench:sliding?ttl=$ttl&sliding=true"

# run_wrk NAME ARGS...: prints "NAME requests/s p99 non-2xx", keeps requests/s in $rps
run_wrk() {
    local name=$1 p99 non2xx
    shift
    timeout 120 wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@" >"$tmp/run.out" 2>&1 ||
        { cat "$tmp/run.out" >&2; die "wrk failed ($name)"; }
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$tmp/run.out")
    p99=$(sed -n 's/^ *99% *\([0-9.]*[a-z]*\).*/\1/p' "$tmp/run.out")
    non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$tmp/run.out")
    printf '%-14s %12s %10s %8s\n' "$name" "${rps:-?}" "${p99:-?}" "${non2xx:-0}"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "wrk: $threads threads, $conns connections, $duration per run, keep-alive;" \
     "--durability $durability; sliding ttl $ttl s; $(nproc) CPUs"
printf '%-14s %12s %10s %8s\n' run requests/s p99 non-2xx
plain=() sliding=()
for _ in $(seq 1 "$rounds"); do
    run_wrk GET-plain "$base/v1/kv/bench:plain"
    plain+=("$rps")
    run_wrk GET-sliding "$base/v1/kv/bench:sliding"
    sliding+=("$rps")
done
mp=$(printf '%s\n' "${plain[@]}" | median)
ms=$(printf '%s\n' "${sliding[@]}" | median)
printf 'GET hit medians: plain %s, sliding %s requests/s; sliding/plain = %s\n' "$mp" "$ms" \
    "$(awk "BEGIN { printf \"%.3f\", $ms / $mp }")"
run_wrk PATCH -s "$here/kv-patch.lua" "$base"
writes=$(curl -s "$base/v1/stats" | sed -n 's/.*"writes":\([0-9]*\).*/\1/p')
echo "writes committed in all (PATCHes and sliding extensions): ${writes:-?}"
