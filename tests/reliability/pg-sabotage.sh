#!/bin/sh
# pg-sabotage.sh - show that the PostgreSQL forms of the reliability
# checkers can fail: build sqlcached with SQLCACHED_TESTING_PG_LATE_COMMIT
# (src/storage_pg.c: each batch is answered before its COMMIT, which the
# next batch sends) and run, against that daemon on a throwaway PostgreSQL:
#   - the crash loop (kill -9 of the daemon): every domain must report lost
#     writes (test_crash --expect-lost);
#   - the consistency checker: must report violations
#     (test_consistency --expect-violations; readers do not see the batch
#     that was answered but not committed);
#   - the outage test (PostgreSQL stopped under load): must fail (the batch
#     answered but not committed is rolled back by the stop).
# Exit 0 when all three caught the broken daemon, 1 otherwise. Not part of
# `make check` (it builds a second tree: a minute or two on 2 cores).
#
# Usage: tests/reliability/pg-sabotage.sh   (from anywhere; needs the
# PostgreSQL server binaries, like the tests). The build goes to a
# temporary directory, removed at the end unless SABOTAGE_KEEP=1.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-sabotage-XXXXXX")
chmod 755 "$work" # pg-cluster: the postgres user must reach its directory
[ "${SABOTAGE_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/build"
# the sources (tracked and new files), configured out of tree
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done; :' sh |
    tar --null -T - -cf -) | tar -C "$work/src" -xf -
(cd "$work/src" && ./autogen.sh >/dev/null 2>&1) || { echo "pg-sabotage: autogen failed" >&2; exit 1; }
cd "$work/build"
../src/configure CPPFLAGS=-DSQLCACHED_TESTING_PG_LATE_COMMIT >configure.log 2>&1 || {
    cat configure.log; exit 1; }
make -j2 src/sqlcached tests/test_crash tests/test_consistency tests/test_pg_outage \
    >make.log 2>&1 || { tail -30 make.log; exit 1; }
export SQLCACHED_BIN="$work/build/src/sqlcached" SQLCACHED_SRCDIR="$work/src"

status=0
echo "pg-sabotage: crash loop (must report lost writes in every domain)"
./tests/test_crash --backend postgresql --cycles 3 --expect-lost 2>crash.err || status=1
grep -c "" crash.err | sed 's/^/pg-sabotage: crash loop findings printed: /'
echo "pg-sabotage: consistency checker (must report violations)"
./tests/test_consistency --backend postgresql --expect-violations 2>&1 |
    grep -v '^violation' | tee consistency.out
grep -q "violations reported, as expected" consistency.out || status=1
echo "pg-sabotage: outage test (must fail)"
if ./tests/test_pg_outage >outage.out 2>outage.err; then
    echo "pg-sabotage: the outage test PASSED the broken daemon"
    status=1
fi
cat outage.out
[ "$status" -eq 0 ] && echo "pg-sabotage: every checker caught the broken daemon" ||
    echo "pg-sabotage: FAILED: a checker missed the broken daemon"
exit "$status"
