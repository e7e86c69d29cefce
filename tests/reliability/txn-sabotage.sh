#!/bin/sh
# txn-sabotage.sh - show that the crash loop's transactions domain
# (crash_txn.c) can fail: build sqlcached with SQLCACHED_TESTING_TXN_SPLIT
# (src/txn.c: each transaction is committed in two separate writes, the
# second 50 ms after the first) and run the crash loop against it: kills
# that land between the two writes leave transactions stored in part,
# which the domain must report (test_crash --expect-partial passes only
# then). Exit 0 when it did, 1 otherwise. Not part of `make check` (it
# builds a second tree: a minute or two on 2 cores).
#
# Usage: tests/reliability/txn-sabotage.sh [test_crash flags, default
# --backend sqlite --cycles 5 --durability normal --on-write replace]
# (from anywhere). The build goes to a temporary directory, removed at the
# end unless SABOTAGE_KEEP=1.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-txn-sabotage-XXXXXX")
chmod 755 "$work" # pg-cluster: the postgres user must reach its directory
[ "${SABOTAGE_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/build"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done; :' sh |
    tar --null -T - -cf -) | tar -C "$work/src" -xf -
(cd "$work/src" && ./autogen.sh >/dev/null 2>&1) || { echo "txn-sabotage: autogen failed" >&2; exit 1; }
cd "$work/build"
../src/configure CPPFLAGS=-DSQLCACHED_TESTING_TXN_SPLIT >configure.log 2>&1 || {
    cat configure.log; exit 1; }
make -j2 src/sqlcached tests/test_crash >make.log 2>&1 || { tail -30 make.log; exit 1; }
export SQLCACHED_BIN="$work/build/src/sqlcached" SQLCACHED_SRCDIR="$work/src"
[ $# -gt 0 ] || set -- --backend sqlite --cycles 5 --durability normal --on-write replace
echo "txn-sabotage: crash loop (must report partial transactions)"
if ./tests/test_crash --expect-partial "$@" 2>crash.err; then
    grep -c "partial transaction" crash.err | sed 's/^/txn-sabotage: partial findings printed: /'
    echo "txn-sabotage: the transactions checker caught the broken daemon"
    exit 0
fi
echo "txn-sabotage: FAILED: the transactions checker missed the broken daemon"
exit 1
