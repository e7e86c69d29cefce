#!/bin/sh
# queue-sabotage.sh - show that the crash loop's queue domain can fail:
# build sqlcached with SQLCACHED_TESTING_QUEUE_KEEP_ACKED (src/queue.c: an
# ack answers 204 but keeps the job, due again 200 ms later) and run the
# crash loop against that daemon (test_crash --expect-broken queue: passes
# only if the queue domain reports lost writes or violations, here "an
# acked job came back"). Exit 0 when it was caught, 1 otherwise. Not part
# of `make check` (it builds a second tree: a minute or two on 2 cores).
#
# Usage: tests/reliability/queue-sabotage.sh [test_crash flags, default
# --backend sqlite --cycles 3]. The build goes to a temporary directory,
# removed at the end unless SABOTAGE_KEEP=1.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-queue-sabotage-XXXXXX")
chmod 755 "$work" # pg-cluster: the postgres user must reach its directory
[ "${SABOTAGE_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/build"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done; :' sh |
    tar --null -T - -cf -) | tar -C "$work/src" -xf -
(cd "$work/src" && ./autogen.sh >/dev/null 2>&1) || { echo "queue-sabotage: autogen failed" >&2; exit 1; }
cd "$work/build"
../src/configure CPPFLAGS=-DSQLCACHED_TESTING_QUEUE_KEEP_ACKED >configure.log 2>&1 || {
    cat configure.log; exit 1; }
make -j2 src/sqlcached tests/test_crash >make.log 2>&1 || { tail -30 make.log; exit 1; }
export SQLCACHED_BIN="$work/build/src/sqlcached" SQLCACHED_SRCDIR="$work/src"
[ $# -gt 0 ] || set -- --backend sqlite --cycles 3
echo "queue-sabotage: crash loop against acks that keep the job (must be caught)"
if ./tests/test_crash "$@" --expect-broken queue 2>crash.err; then
    grep -m 3 "queue" crash.err | sed 's/^/queue-sabotage: e.g. /'
    echo "queue-sabotage: ok: the queue domain caught the broken daemon"
    exit 0
fi
echo "queue-sabotage: FAILED: the broken daemon went unnoticed" >&2
exit 1
