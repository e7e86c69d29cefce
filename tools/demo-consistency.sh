#!/bin/sh
# The consistency demo (make demo-consistency): the same short concurrent
# read/write load (GET, PUT, DELETE, incr on a few keys) against three
# daemons, each started by the consistency checker on a fresh temporary
# SQLite database and a free loopback port, and stopped by its PID:
#   1. --on-write invalidate, fill guard on
#   2. --on-write replace (the default), fill guard on
#   3. --on-write invalidate with the guard disabled (testing-only flag)
# then a side-by-side table: reads checked, stale reads found, fills
# dropped by the guard, hit ratio. Every run passes
# --testing-fill-delay-us so that readers sleep between their database read
# and their fill of the memory tier: the stale-fill race then happens often.
# Exit 0 when runs 1 and 2 show no stale read and run 3 some.
# Usage: demo-consistency.sh SQLCACHED TEST_CONSISTENCY
# DEMO_OPS (default 6000), DEMO_DELAY_US (default 1000), DEMO_SEED.
set -eu
daemon=$1; checker=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-demo-consistency-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
srcdir=$(cd "$(dirname "$0")/.." && pwd)
set -- --demo --ops "${DEMO_OPS:-6000}" --delay-us "${DEMO_DELAY_US:-1000}"
[ -n "${DEMO_SEED:-}" ] && set -- "$@" --seed "$DEMO_SEED"
status=0
# the checker bounds its own runs (client timeouts, daemon stop by PID);
# timeout(1) bounds the whole demo anyway
SQLCACHED_BIN=$(cd "$(dirname "$daemon")" && pwd)/$(basename "$daemon") \
SQLCACHED_SRCDIR=$srcdir TMPDIR=$tmp \
    timeout -k 10 300 "$checker" "$@" > "$tmp/out" 2>&1 || status=$?
# the checker's per-violation detail lines are left out (see the log lines)
grep -v '^violation:' "$tmp/out" || true
exit $status
