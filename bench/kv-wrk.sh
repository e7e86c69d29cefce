#!/bin/bash
# kv-wrk.sh - throughput and tail latency of the KV API under wrk.
#
# For each durability mode (--durability full, then normal) it starts the
# daemon on a temporary database (--listen 127.0.0.1:0, the port read from
# its log), stores one key with a 100-byte value, then runs wrk with
# keep-alive connections twice: GET of that key, and PUT of 100-byte values
# over many keys (bench/kv-put.lua). It prints requests/s and the 99th
# percentile latency of each run, and stops the daemon by PID.
#
# Not part of `make check`; run it with `make bench-kv`. Installs wrk with
# apt-get when it is missing. Environment (defaults in brackets):
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
    echo "kv-wrk: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "no daemon at $bin (run make first)"
command -v curl >/dev/null 2>&1 || die "curl not found (scripts/install-deps)"
if ! command -v wrk >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "kv-wrk: installing wrk" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 ||
        { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
    command -v wrk >/dev/null 2>&1 || die "could not install wrk"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-bench-XXXXXX")
pid=""
stop_daemon() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do # up to 30 s
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
}
trap 'stop_daemon; rm -rf "$tmp"' EXIT

# start_daemon MODE: sets pid and port
start_daemon() {
    rm -f "$tmp"/db*
    "$bin" --listen 127.0.0.1:0 --db "$tmp/db" --durability "$1" >"$tmp/daemon.log" 2>&1 &
    pid=$!
    port=""
    for _ in $(seq 1 100); do # up to 10 s
        port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$tmp/daemon.log" | head -n 1)
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$tmp/daemon.log" >&2
    die "the daemon did not start"
}

# run_wrk NAME ARGS...: runs wrk, keeps its output in $tmp/NAME.out, prints a row
run_wrk() {
    local name=$1
    shift
    # wrk stops by itself after $duration; the timeout only bounds a hang
    timeout 120 wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@" >"$tmp/$name.out" 2>&1 ||
        { cat "$tmp/$name.out" >&2; die "wrk failed ($name)"; }
    local rps p99 non2xx errors
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$tmp/$name.out")
    p99=$(sed -n 's/^ *99% *\([0-9.]*[a-z]*\).*/\1/p' "$tmp/$name.out")
    non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$tmp/$name.out")
    errors=$(sed -n 's/^ *Socket errors: *\(.*\)/\1/p' "$tmp/$name.out")
    printf '%-8s %-4s %12s %10s %8s  %s\n' "$mode" "$name" "${rps:-?}" "${p99:-?}" \
        "${non2xx:-0}" "${errors:-}"
}

value=$(printf 'v%.0s' $(seq 1 100))
echo "wrk: $threads threads, $conns connections, $duration per run, keep-alive;" \
     "PUT over $BENCH_KEYS keys; $(nproc) CPUs"
printf '%-8s %-4s %12s %10s %8s  %s\n' durability op requests/s p99 non-2xx "socket errors"
for mode in $modes; do
    start_daemon "$mode"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT \
        -H 'Content-Type: application/octet-stream' --data-binary "$value" \
        "http://127.0.0.1:$port/v1/kv/bench:get")
    [ "$code" = 201 ] || die "preloading the key: HTTP $code"
    run_wrk GET "http://127.0.0.1:$port/v1/kv/bench:get"
    run_wrk PUT -s "$here/kv-put.lua" "http://127.0.0.1:$port"
    stop_daemon
done
