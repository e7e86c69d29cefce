#!/bin/bash
# txn-wrk.sh - transactions per second under wrk, beside single PUTs in the
# same run (same daemon, same database, same wrk settings).
#
# For each durability mode it starts the daemon on a temporary database
# (--listen 127.0.0.1:0, stopped by PID), creates the 64 guard keys the
# transactions compare, then runs wrk with keep-alive connections:
#   PUT     single PUT of a 100-byte value to a random key (kv-put.lua)
#   TXN2    POST /v1/txn: 2 compares ("exists" on guard keys, always
#           true) and 2 puts of 100-byte values to random keys (txn.lua)
#   TXN16   the same with 16 puts: keys written per second = 16 x req/s
# and prints requests/s, keys written/s, p99 and non-2xx per run.
#
# Not part of `make check`. Environment (defaults in brackets):
#   SQLCACHED_BIN [src/sqlcached]   BENCH_DURATION [10s]
#   BENCH_CONNECTIONS [64]          BENCH_THREADS [2]
#   BENCH_KEYS [100000]             BENCH_MODES ["full normal"]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${SQLCACHED_SRCDIR:-$here/..}
bin=${SQLCACHED_BIN:-$srcdir/src/sqlcached}
duration=${BENCH_DURATION:-10s}
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}
modes=${BENCH_MODES:-full normal}
export BENCH_KEYS=${BENCH_KEYS:-100000}

die() {
    echo "txn-wrk: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "no daemon at $bin (run make first)"
command -v curl >/dev/null 2>&1 || die "curl not found (scripts/install-deps)"
command -v wrk >/dev/null 2>&1 || die "wrk not found (bench/kv-wrk.sh installs it)"

# daemon_port and daemon_stop (bounded waits), shared with the test scripts
# shellcheck source=tests/daemon.sh
. "$srcdir/tests/daemon.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-txn-bench-XXXXXX")
pid=""
stop_daemon() {
    [ -n "$pid" ] || return 0
    daemon_stop "$pid" || true
    pid=""
}
trap 'stop_daemon; rm -rf "$tmp"' EXIT

# start_daemon MODE: sets pid and port
start_daemon() {
    rm -f "$tmp"/db*
    "$bin" --listen 127.0.0.1:0 --db "$tmp/db" --durability "$1" \
        >"$tmp/daemon.log" 2>&1 &
    pid=$!
    port=$(daemon_port "$tmp/daemon.log" "$pid")
    [ -n "$port" ] && return 0
    cat "$tmp/daemon.log" >&2
    die "the daemon did not start"
}

# run_wrk NAME KEYS_PER_REQUEST ARGS...: runs wrk, prints a row
run_wrk() {
    local name=$1 per=$2
    shift 2
    timeout 120 wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@" >"$tmp/$name.out" 2>&1 ||
        { cat "$tmp/$name.out" >&2; die "wrk failed ($name)"; }
    local rps p99 non2xx
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$tmp/$name.out")
    p99=$(sed -n 's/^ *99% *\([0-9.]*[a-z]*\).*/\1/p' "$tmp/$name.out")
    non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$tmp/$name.out")
    printf '%-8s %-6s %12s %14s %10s %8s\n' "$mode" "$name" "${rps:-?}" \
        "$(awk "BEGIN { printf \"%.0f\", ${rps:-0} * $per }")" "${p99:-?}" "${non2xx:-0}"
}

echo "wrk: $threads threads, $conns connections, $duration per run, keep-alive;" \
     "100-byte values over $BENCH_KEYS keys; $(nproc) CPUs"
printf '%-8s %-6s %12s %14s %10s %8s\n' durability op requests/s keys_written/s p99 non-2xx
for mode in $modes; do
    start_daemon "$mode"
    for g in $(seq 0 63); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT -d 1 \
            "http://127.0.0.1:$port/v1/kv/bench:g$g")
        [ "$code" = 201 ] || die "creating guard key bench:g$g: HTTP $code"
    done
    run_wrk PUT 1 -s "$here/kv-put.lua" "http://127.0.0.1:$port"
    BENCH_TXN_PUTS=2 run_wrk TXN2 2 -s "$here/txn.lua" "http://127.0.0.1:$port"
    BENCH_TXN_PUTS=16 run_wrk TXN16 16 -s "$here/txn.lua" "http://127.0.0.1:$port"
    stop_daemon
done
