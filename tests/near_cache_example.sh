#!/bin/sh
# Run tests/near_cache_example.py: docs/examples/near-cache.py against
# daemons that the script starts itself (src/sqlcached, 127.0.0.1 port 0, a
# small --watch-history when the daemon has it, stopped by PID; every wait
# bounded). It checks the near cache's staleness bound (500 ms) with the
# stream connected, held down, silent, after a 410 and across a restart.
# On SQLite one daemon on a temporary database; with
# SQLCACHED_TEST_BACKEND=postgresql (tests/pg/near_cache_example.sh.pg) two
# nodes on a throwaway PostgreSQL (scripts/pg-cluster): the writers write
# to one, the near cache reads and watches the other.
# Skips (77) without python3 or when the daemon has no GET /v1/watch.
set -eu
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
bin=${SQLCACHED_BIN:-src/sqlcached}
command -v python3 >/dev/null 2>&1 || { echo "near_cache_example: python3 not found" >&2; exit 77; }

pgdir=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    [ -z "$pgdir" ] || sh "$srcdir/scripts/pg-cluster" remove "$pgdir"
}
trap cleanup EXIT
set -- --bin "$bin"
if [ "${SQLCACHED_TEST_BACKEND:-sqlite}" = postgresql ]; then
    if [ "${SQLCACHED_TEST_NO_PG:-}" = 1 ]; then
        echo "SQLCACHED_TEST_NO_PG=1: PostgreSQL tests skipped"
        exit 77
    fi
    # a directory of its own: the server's user must be able to reach it
    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-near-cache-pg-XXXXXX")
    SQLCACHED_PG_OWNER=$$ sh "$srcdir/scripts/pg-cluster" start "$pgdir" >/dev/null || {
        echo "near_cache_example: no PostgreSQL (scripts/pg-cluster start failed)" >&2
        exit 1
    }
    db=$(sh "$srcdir/scripts/pg-cluster" newdb "$pgdir")
    set -- "$@" --db "$db" --nodes 2
fi
rc=0
SQLCACHED_SRCDIR=$srcdir timeout 240 python3 "$srcdir/tests/near_cache_example.py" "$@" || rc=$?
exit $rc
