#!/bin/sh
# Run docs/examples/txn.sh against a daemon started here (port 0, a
# temporary database, stopped by PID; every wait bounded) and check every
# status it reports: a move that succeeds (both counts written), a move
# with versions that went stale (nothing written, exit 3), a move of more
# than the stock (exit 2).
set -eu
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
bin=${SQLCACHED_BIN:-src/sqlcached}
command -v curl >/dev/null 2>&1 || { echo "txn_example: curl not found" >&2; exit 77; }
. "$srcdir/tests/daemon.sh"

dir=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-txn-example-XXXXXX")
pid=
cleanup() {
    rc=$?
    set +e # daemon_stop's last kill may find the daemon gone
    [ -z "$pid" ] || daemon_stop "$pid"
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
fail() { echo "txn_example: $*" >&2; cat "$dir/daemon.log" >&2; exit 1; }

: >"$dir/daemon.log"
"$bin" --listen 127.0.0.1:0 --db "$dir/db" >"$dir/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$dir/daemon.log" "$pid")
[ -n "$port" ] || fail "the daemon did not start in 10 s"
B=http://127.0.0.1:$port
export B
example() { timeout 30 sh "$srcdir/docs/examples/txn.sh" "$@"; }
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
value() { curl -s "$B/v1/kv/$1"; }
etag() { curl -s -D - -o /dev/null "$B/v1/kv/$1" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: "\([0-9]*\)"$/\1/p'; }

[ "$(status -X PUT -H "Content-Type: text/plain" -d 10 "$B/v1/kv/stock:warehouse")" = 201 ] || fail "PUT warehouse"

# 1. A move to a key that does not exist yet (version 0): succeeds.
example stock:warehouse stock:shop 3 >"$dir/1.out" 2>&1 || { cat "$dir/1.out"; fail "move 1"; }
cat "$dir/1.out"
grep -qx 'GET stock:warehouse 200' "$dir/1.out" || fail "move 1: GET warehouse"
grep -qx 'GET stock:shop 404' "$dir/1.out" || fail "move 1: GET shop"
grep -qx 'POST /v1/txn 200' "$dir/1.out" || fail "move 1: POST"
grep -q '^moved 3 ' "$dir/1.out" || fail "move 1: not moved"
[ "$(value stock:warehouse)" = 7 ] && [ "$(value stock:shop)" = 3 ] || fail "move 1: counts"

# 2. Versions read, then another client changes the warehouse: the move
#    with the old versions is refused and writes nothing.
vw=$(etag stock:warehouse)
vs=$(etag stock:shop)
[ "$(status -X PUT -H "Content-Type: text/plain" -d 20 "$B/v1/kv/stock:warehouse")" = 200 ] || fail "PUT warehouse 20"
rc=0
example stock:warehouse stock:shop 2 "$vw" "$vs" >"$dir/2.out" 2>&1 || rc=$?
cat "$dir/2.out"
[ "$rc" = 3 ] || fail "move 2: exit $rc, not 3 (conflict)"
grep -qx 'POST /v1/txn 200' "$dir/2.out" || fail "move 2: POST"
grep -q '^conflict: .*"succeeded": *false' "$dir/2.out" || fail "move 2: no conflict reported"
[ "$(value stock:warehouse)" = 20 ] && [ "$(value stock:shop)" = 3 ] || fail "move 2: counts changed"

# 3. With fresh versions it goes through.
example stock:warehouse stock:shop 2 >"$dir/3.out" 2>&1 || { cat "$dir/3.out"; fail "move 3"; }
cat "$dir/3.out"
[ "$(value stock:warehouse)" = 18 ] && [ "$(value stock:shop)" = 5 ] || fail "move 3: counts"

# 4. More than the stock: refused before any write.
rc=0
example stock:shop stock:warehouse 6 >"$dir/4.out" 2>&1 || rc=$?
cat "$dir/4.out"
[ "$rc" = 2 ] || fail "move 4: exit $rc, not 2 (not enough stock)"
[ "$(value stock:warehouse)" = 18 ] && [ "$(value stock:shop)" = 5 ] || fail "move 4: counts changed"
echo "txn_example: ok"
