#!/bin/bash
# Run the curl examples of README.md against a daemon of our own and check
# the HTTP status of each.
#
# The examples are the fenced block between <!-- readme-examples:begin -->
# and <!-- readme-examples:end -->. A command may span lines ending in '\';
# its last line ends with "# -> NNN", the status it must get. Comment lines
# and blank lines are skipped. Each command runs as written, with
# localhost:8080 replaced by the test daemon's address and curl told to
# print only the status (and to give up after 10 s).
#
# The daemon gets a temporary directory and --listen 127.0.0.1:0; its port
# is read from its start-up log line. It is stopped by PID. Every wait is
# bounded. Environment: SQLCACHED_BIN (the daemon), SQLCACHED_SRCDIR (where
# README.md is); both default to this checkout. With
# SQLCACHED_TEST_BACKEND=postgresql (make check's tests/pg/readme_examples.sh.pg)
# the daemon's database is a throwaway PostgreSQL (scripts/pg-cluster),
# removed at the end; SQLCACHED_TEST_NO_PG=1 then skips (exit 77).
set -u

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${SQLCACHED_SRCDIR:-$here/..}
# shellcheck source=tests/daemon.sh
. "$srcdir/tests/daemon.sh"
bin=${SQLCACHED_BIN:-$srcdir/src/sqlcached}
readme=$srcdir/README.md

fail() {
    echo "readme_examples: $*" >&2
    exit 1
}

command -v curl >/dev/null 2>&1 || fail "curl not found (scripts/install-deps installs it)"
[ -x "$bin" ] || fail "no daemon at $bin (build first)"
[ -r "$readme" ] || fail "cannot read $readme"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-readme-XXXXXX") || fail "mktemp failed"
pid=""
pgdir=""
cleanup() {
    [ -z "$pid" ] || daemon_stop "$pid"
    rm -rf "$tmp"
    [ -z "$pgdir" ] || sh "$srcdir/scripts/pg-cluster" remove "$pgdir"
}
trap cleanup EXIT

# ------------------------------------------------------------ the examples
examples=()   # commands, continuation lines joined
expected=()   # their statuses
in_block=0 in_fence=0 cmd=""
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
    "<!-- readme-examples:begin -->"*) in_block=1; continue ;;
    "<!-- readme-examples:end -->"*) break ;;
    esac
    [ "$in_block" = 1 ] || continue
    if [[ $line == '```'* ]]; then
        in_fence=$((1 - in_fence))
        continue
    fi
    [ "$in_fence" = 1 ] || continue
    if [[ $line =~ ^(.*)\\[[:space:]]*$ ]]; then
        cmd+="${BASH_REMATCH[1]} "
        continue
    fi
    cmd+=$line
    if [[ $cmd =~ ^[[:space:]]*(#.*)?$ ]]; then
        cmd=""
        continue
    fi
    if [[ $cmd =~ ^[[:space:]]*(curl[[:space:]].*[^[:space:]])[[:space:]]+#[[:space:]]*-\>[[:space:]]*([0-9]{3})[[:space:]]*$ ]]; then
        examples+=("${BASH_REMATCH[1]}")
        expected+=("${BASH_REMATCH[2]}")
    else
        fail "README example without '# -> STATUS' or not a curl command: $cmd"
    fi
    cmd=""
done <"$readme"
[ -z "$cmd" ] || fail "README example ends with a '\\' continuation: $cmd"
[ "${#examples[@]}" -ge 10 ] || fail "found ${#examples[@]} examples in $readme, expected at least 10 (markers moved?)"

# -------------------------------------------------------------- the daemon
db=$tmp/sqlcached.db
if [ "${SQLCACHED_TEST_BACKEND:-sqlite}" = postgresql ]; then
    if [ "${SQLCACHED_TEST_NO_PG:-}" = 1 ]; then
        echo "SQLCACHED_TEST_NO_PG=1: PostgreSQL tests skipped"
        exit 77
    fi
    # a directory of its own: the server's user must be able to reach it
    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-readme-pg-XXXXXX") || fail "mktemp failed"
    SQLCACHED_PG_OWNER=$$ sh "$srcdir/scripts/pg-cluster" start "$pgdir" >/dev/null ||
        fail "no PostgreSQL (scripts/pg-cluster start failed)"
    db=$(sh "$srcdir/scripts/pg-cluster" newdb "$pgdir") || fail "scripts/pg-cluster newdb failed"
fi
echo "readme_examples: database $db"
"$bin" --listen 127.0.0.1:0 --db "$db" >"$tmp/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$tmp/daemon.log" "$pid")
if [ -z "$port" ]; then
    cat "$tmp/daemon.log" >&2
    fail "the daemon did not start"
fi
for _ in $(seq 1 100); do # up to 10 s
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
done

# ------------------------------------------------------------------ the run
passed=0 failed=0
for i in "${!examples[@]}"; do
    c=${examples[$i]}
    case "$c" in
    *localhost:8080*) ;;
    *) echo "FAIL (does not use localhost:8080): $c"; failed=$((failed + 1)); continue ;;
    esac
    run=${c//localhost:8080/127.0.0.1:$port}
    run="curl -s -o /dev/null -w '%{http_code}' --max-time 10 --noproxy '*' ${run#curl }"
    got=$(eval "$run" 2>&1)
    if [ "$got" = "${expected[$i]}" ]; then
        echo "ok   ${expected[$i]}  $c"
        passed=$((passed + 1))
    else
        echo "FAIL expected ${expected[$i]}, got '$got': $c"
        failed=$((failed + 1))
    fi
done

echo "readme_examples: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    echo "--- daemon log ---"
    cat "$tmp/daemon.log"
    exit 1
fi
exit 0
