#!/bin/sh
# on-pg.sh - run a test program on PostgreSQL. make check runs each test of
# a store twice: as tests/NAME (SQLite) and as the entry tests/pg/NAME.pg,
# which automake hands to this script (PG_LOG_COMPILER); it runs
# tests/NAME with SQLCACHED_TEST_BACKEND=postgresql, so that every store
# the program opens lives in a throwaway PostgreSQL (tests/testutil.h;
# tests/readme_examples.sh starts one itself).
# scripts/check-valgrind runs the same entries the same way.
# Usage: on-pg.sh DIR/pg/NAME.pg [ARGS...]
set -eu
[ $# -ge 1 ] || { echo "usage: on-pg.sh DIR/pg/NAME.pg [ARGS...]" >&2; exit 2; }
entry=$1
shift
prog=$(dirname "$(dirname "$entry")")/$(basename "$entry" .pg)
# a test script lives in the source tree (a VPATH build has no copy)
[ -x "$prog" ] || [ -z "${SQLCACHED_SRCDIR:-}" ] || prog=$SQLCACHED_SRCDIR/tests/$(basename "$prog")
[ -x "$prog" ] || { echo "on-pg.sh: no test program $prog for $entry" >&2; exit 2; }
SQLCACHED_TEST_BACKEND=postgresql
export SQLCACHED_TEST_BACKEND
exec "$prog" "$@"
