#!/bin/sh
# Run the examples of docs/watch.md against a daemon started here (port 0,
# a temporary database, stopped by PID; every wait bounded): each ```sh
# block in order, in one directory, its output compared with the ```text
# block that follows it (timestamps of 13 digits read as T).
set -eu
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
bin=${SQLCACHED_BIN:-src/sqlcached}
command -v curl >/dev/null 2>&1 || { echo "watch_example: curl not found" >&2; exit 77; }
. "$srcdir/tests/daemon.sh"

dir=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-watch-example-XXXXXX")
pid=
cleanup() {
    rc=$?
    set +e # daemon_stop's last kill may find the daemon gone
    [ -z "$pid" ] || daemon_stop "$pid"
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
fail() { echo "watch_example: $*" >&2; cat "$dir/daemon.log" >&2; exit 1; }

# the blocks: N.sh and N.expected
awk -v dir="$dir" '
    /^```sh$/ { n++; out = dir "/" n ".sh"; printf "" > out; inblk = 1; next }
    /^```text$/ && n > 0 { out = dir "/" n ".expected"; printf "" > out; inblk = 1; next }
    /^```/ { inblk = 0; next }
    inblk { print >> out }
' "$srcdir/docs/watch.md"
blocks=$(find "$dir" -maxdepth 1 -name "*.sh" | wc -l)
[ "$blocks" -ge 5 ] || fail "only $blocks examples found in docs/watch.md"

: >"$dir/daemon.log"
"$bin" --listen 127.0.0.1:0 --db "$dir/db" --durability normal >"$dir/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$dir/daemon.log" "$pid")
[ -n "$port" ] || fail "the daemon did not start in 10 s"
B=http://127.0.0.1:$port
export B
mkdir "$dir/work"
i=1
while [ "$i" -le "$blocks" ]; do
    [ -f "$dir/$i.expected" ] || fail "example $i has no output block"
    # (its exit status is curl's, 28 where --max-time ends a stream: the
    # output is what is checked)
    (cd "$dir/work" && timeout 30 sh "$dir/$i.sh") >"$dir/$i.out" 2>&1 || true
    sed 's/[0-9]\{13\}/T/g' "$dir/$i.out" >"$dir/$i.norm"
    if ! cmp -s "$dir/$i.norm" "$dir/$i.expected"; then
        echo "watch_example: example $i:"; cat "$dir/$i.sh"
        diff "$dir/$i.expected" "$dir/$i.norm" || true
        fail "example $i: output differs from docs/watch.md"
    fi
    i=$((i + 1))
done
echo "watch_example: $blocks examples of docs/watch.md ran as documented"
