#!/bin/sh
# Run docs/examples/lease.sh against a daemon started here: port 0 (the
# daemon picks a free one and logs it), a temporary database, stopped by
# PID; every wait is bounded. Checks that the watchdog kept the lease past
# its TTL, that a second owner waited for it and got a larger token, and
# that the lease is free at the end.
set -eu
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
bin=${SQLCACHED_BIN:-src/sqlcached}
command -v curl >/dev/null 2>&1 || { echo "lease_example: curl not found" >&2; exit 77; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-lease-example-XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "lease_example: $*" >&2; cat "$dir/daemon.log" >&2; exit 1; }

: >"$dir/daemon.log" # exists before the first look at it, however late the daemon starts
"$bin" --listen 127.0.0.1:0 --db "$dir/db" >"$dir/daemon.log" 2>&1 &
pid=$!
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
    kill -0 "$pid" 2>/dev/null || fail "the daemon exited"
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/daemon.log")
    [ -n "$port" ] || sleep 0.1
    i=$((i + 1))
done
[ -n "$port" ] || fail "the daemon did not start in 10 s"
B=http://127.0.0.1:$port
export B

# First owner: TTL 1500 ms, works 3 s, so only the watchdog keeps it (the
# TTL leaves room for a renewal delayed by a loaded machine).
TTL_MS=1500 WORK_SECONDS=3 timeout 30 sh "$srcdir/docs/examples/lease.sh" example first \
    >"$dir/first.out" 2>&1 &
first=$!
sleep 0.5
# Second owner: waits (up to 10 s) for the first to release.
TTL_MS=1500 WORK_SECONDS=1 WAIT_MS=10000 timeout 30 sh "$srcdir/docs/examples/lease.sh" \
    example second >"$dir/second.out" 2>&1 || { cat "$dir/second.out" >&2; fail "second run failed"; }
wait "$first" || { cat "$dir/first.out" >&2; fail "first run failed"; }

cat "$dir/first.out" "$dir/second.out"
grep -q 'watchdog: renewed example' "$dir/first.out" || fail "the watchdog never renewed"
grep -q '^released example' "$dir/first.out" || fail "the first owner did not release"
grep -q '^released example' "$dir/second.out" || fail "the second owner did not release"
t1=$(sed -n 's/^acquired example as first, fencing token \([0-9]*\)$/\1/p' "$dir/first.out")
t2=$(sed -n 's/^acquired example as second, fencing token \([0-9]*\)$/\1/p' "$dir/second.out")
[ -n "$t1" ] && [ -n "$t2" ] && [ "$t2" -gt "$t1" ] || fail "tokens: first '$t1', second '$t2'"
grep -q "lease still ours: $t1 = $t1" "$dir/first.out" || fail "the first owner lost its lease"
code=$(curl -s -o /dev/null -w '%{http_code}' "$B/v1/leases/example")
[ "$code" = 404 ] || fail "the lease is not free at the end ($code)"
echo "lease_example: ok"
