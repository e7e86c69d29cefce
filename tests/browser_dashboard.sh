#!/bin/bash
# The dashboard in a real browser: headless Chromium, driven by
# tests/browser/dashboard.mjs (Node with playwright-core, pinned in
# tests/browser/package-lock.json and installed by `npm ci` into
# $SQLCACHED_BUILDDIR/tests/browser), against a daemon of our own on a free
# loopback port with a temporary database and --auth-token. The script puts
# a workload through the API, checks that the page shows its figures, and
# saves a screenshot to $SQLCACHED_BUILDDIR/tests/browser/dashboard.png.
#
# Needs chromium, node and npm (scripts/install-deps installs them); fails
# when one is missing, so that CI never silently skips it. Skipped (77)
# under $SQLCACHED_WRAPPER (valgrind): the daemon's code paths are those of
# the HTTP tests. The daemon is stopped by PID; every wait is bounded.
set -u

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${SQLCACHED_SRCDIR:-$here/..}
# shellcheck source=tests/daemon.sh
. "$srcdir/tests/daemon.sh"
builddir=${SQLCACHED_BUILDDIR:-$srcdir}
bin=${SQLCACHED_BIN:-$builddir/src/sqlcached}
chromium=${CHROMIUM:-/usr/bin/chromium}
work=$builddir/tests/browser

fail() {
    echo "browser_dashboard: $*" >&2
    exit 1
}

if [ -n "${SQLCACHED_WRAPPER:-}" ]; then
    echo "browser_dashboard: skipped under SQLCACHED_WRAPPER"
    exit 77
fi
[ -x "$chromium" ] || fail "no Chromium at $chromium (scripts/install-deps installs chromium)"
command -v node >/dev/null 2>&1 || fail "node not found (scripts/install-deps installs nodejs)"
command -v npm >/dev/null 2>&1 || fail "npm not found (scripts/install-deps installs npm)"
[ -x "$bin" ] || fail "no daemon at $bin (build first)"

# ------------------------------------------------ playwright-core, pinned
mkdir -p "$work" || fail "cannot create $work"
for f in package.json package-lock.json dashboard.mjs; do
    if [ "$srcdir/tests/browser/$f" -ef "$work/$f" ]; then
        continue
    fi
    cp "$srcdir/tests/browser/$f" "$work/$f" || fail "cannot copy $f to $work"
done
# npm ci again only when the lockfile changed since the last install.
if ! cmp -s "$work/package-lock.json" "$work/node_modules/.sqlcached-lock"; then
    (cd "$work" && timeout 180 npm ci --no-audit --no-fund --loglevel=error) ||
        fail "npm ci in $work failed"
    cp "$work/package-lock.json" "$work/node_modules/.sqlcached-lock"
fi

# -------------------------------------------------------------- the daemon
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-browser-XXXXXX") || fail "mktemp failed"
pid=""
cleanup() {
    [ -z "$pid" ] || daemon_stop "$pid"
    rm -rf "$tmp"
}
trap cleanup EXIT

token="dash-$RANDOM$RANDOM$RANDOM"
SQLCACHED_AUTH_TOKEN=$token "$bin" --listen 127.0.0.1:0 --db "$tmp/sqlcached.db" \
    --durability normal >"$tmp/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$tmp/daemon.log" "$pid")
if [ -z "$port" ]; then
    cat "$tmp/daemon.log" >&2
    fail "the daemon did not start"
fi

# ------------------------------------------------------------------ the run
rm -f "$work/dashboard.png"
SQLCACHED_URL="http://127.0.0.1:$port" SQLCACHED_TOKEN=$token BROWSER_WORKDIR=$work \
    SCREENSHOT=$work/dashboard.png CHROMIUM=$chromium NO_PROXY='*' \
    timeout 150 node "$work/dashboard.mjs"
status=$?
if [ "$status" -ne 0 ]; then
    echo "--- daemon log ---"
    cat "$tmp/daemon.log"
    fail "the dashboard test failed (status $status); screenshot: $work/dashboard.png"
fi
echo "browser_dashboard: 1 passed, 0 failed"
exit 0
