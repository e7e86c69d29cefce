#!/bin/sh
# The flash-sale demo (make demo): for each strategy, start a daemon on a
# fresh temporary database and a free loopback port, run
# `sqlcached-bench seckill` against it, and stop the daemon by its PID.
# The third run is "check then decrement" without a guard (the daemon's
# testing-only --testing-seckill-naive: stock read, then written back one
# lower in a separate write): it must oversell, which the bench reports as
# failed checks; the demo fails if it does not, or if a guarded strategy
# fails any check.
# Usage: demo.sh SQLCACHED BENCH [bench flags...]   (default S=100 U=10000 K=2 C=64)
# The daemon runs with its defaults except --threads (DEMO_THREADS, default
# 16: a worker thread waits while its order is committed, so the number of
# threads bounds the orders in flight). DEMO_DAEMON_FLAGS: more daemon
# flags, e.g. "--seckill-retries 10".
set -e
daemon=$1; bench=$2; shift 2
[ $# -gt 0 ] || set -- -S 100 -U 10000 -K 2 -C 64
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-demo-XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
status=0
for strategy in stock version naive; do
    rm -f "$tmp"/demo.db*
    : > "$tmp/daemon.log"
    if [ "$strategy" = naive ]; then flags=--testing-seckill-naive
    else flags="--seckill-strategy $strategy"; fi
    "$daemon" --listen 127.0.0.1:0 --db "$tmp/demo.db" $flags \
        --threads "${DEMO_THREADS:-16}" ${DEMO_DAEMON_FLAGS:-} > "$tmp/daemon.log" 2>&1 &
    pid=$!
    port=
    for _ in $(seq 100); do   # the bound port, from the start-up line (up to 10 s)
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/daemon.log")
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "demo: the daemon did not start:" >&2; cat "$tmp/daemon.log" >&2; exit 1
    fi
    if [ "$strategy" = naive ]; then
        echo "=== strategy: naive check then decrement, TESTING ONLY (sqlcached pid $pid, port $port) ==="
        "$bench" seckill --url "http://127.0.0.1:$port" --item demo "$@" > "$tmp/naive.out" || true
        cat "$tmp/naive.out"
        if grep -q 'FAIL  no oversell' "$tmp/naive.out"; then
            echo "demo: the naive strategy oversold, as expected: the FAILs above are the point"
        else
            echo "demo: the naive strategy did not oversell this time (a race: run again)"; status=1
        fi
    else
        echo "=== strategy: $strategy (sqlcached pid $pid, port $port) ==="
        "$bench" seckill --url "http://127.0.0.1:$port" --item demo "$@" || status=1
    fi
    kill "$pid"; wait "$pid" || true; pid=
    echo
done
exit $status
