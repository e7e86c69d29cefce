#!/bin/sh
# The library's boundary, checked on the built objects (after jansson's
# test/suites/api/check-exports):
#   1. libsqlcached.so exports sqlcached_* and nothing else, and every
#      function include/sqlcached.h declares;
#   2. the daemon (src/main.c and libdaemon: http*, api_*, config, metrics)
#      uses the library only through it: no undefined symbol of its objects
#      is one that the library's internal objects (libcore) define, other
#      than sqlcached_*. (The daemon has its own copies of log.c and utf8.c.)
# Needs nm; skipped (77) when the shared library was not built.
set -u
b=${SQLCACHED_BUILDDIR:-.}
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
so=$b/src/.libs/libsqlcached.so
command -v nm >/dev/null 2>&1 || { echo "check_exports: nm not found"; exit 77; }
[ -f "$so" ] || { echo "check_exports: $so not built (--disable-shared?)"; exit 77; }
daemon_objs="$b/src/sqlcached-main.o $b/src/.libs/libdaemon.a"
core=$b/src/.libs/libcore.a
for f in $daemon_objs $core; do
    [ -f "$f" ] || { echo "check_exports: $f missing"; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-exports-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
rc=0

# 1. The exports.
nm -D --defined-only "$so" | awk '{ print $NF }' |
    grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u >"$tmp/exports"
if grep -v '^sqlcached_' "$tmp/exports" >"$tmp/bad"; then
    echo "check_exports: libsqlcached exports names outside sqlcached_*:"
    sed 's/^/  /' "$tmp/bad"
    rc=1
fi
sed -n 's/^[a-z].*[ *]\(sqlcached_[a-z0-9_]*\)(.*/\1/p' "$srcdir/include/sqlcached.h" |
    sort -u >"$tmp/declared"
if comm -23 "$tmp/declared" "$tmp/exports" | grep . >"$tmp/missing"; then
    echo "check_exports: declared in sqlcached.h but not exported:"
    sed 's/^/  /' "$tmp/missing"
    rc=1
fi

# 2. What the daemon's objects need of the library's internals.
nm -g --defined-only $daemon_objs 2>/dev/null | awk 'NF >= 3 { print $3 }' |
    sort -u >"$tmp/daemon_defined"
nm -u $daemon_objs 2>/dev/null | awk 'NF >= 2 { print $2 }' | sort -u |
    comm -23 - "$tmp/daemon_defined" >"$tmp/daemon_needs"
nm -g --defined-only "$core" 2>/dev/null | awk 'NF >= 3 { print $3 }' |
    grep -v '^sqlcached_' | sort -u >"$tmp/internal"
if comm -12 "$tmp/daemon_needs" "$tmp/internal" | grep . >"$tmp/bad"; then
    echo "check_exports: the daemon uses internal symbols of the library:"
    for s in $(cat "$tmp/bad"); do
        printf '  %s (in' "$s"
        nm -A -u $daemon_objs 2>/dev/null | awk -v s="$s" '$NF == s { sub(/:$/, "", $1); n = split($1, p, /[:\/]/); printf " %s", p[n] }'
        echo ")"
    done
    rc=1
fi
[ $rc -eq 0 ] && echo "check_exports: $(wc -l <"$tmp/exports") exports, all sqlcached_*; the daemon needs $(grep -c '^sqlcached_' "$tmp/daemon_needs") of them and no internal symbol"
exit $rc
