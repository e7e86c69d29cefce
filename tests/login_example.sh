#!/bin/sh
# Run docs/examples/login.sh against a daemon started here (port 0, a
# temporary database, stopped by PID; every wait is bounded) and check the
# status of every step it prints, then that the attempt counter counted and
# the profile holds the merged fields.
set -eu
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
bin=${SQLCACHED_BIN:-src/sqlcached}
command -v curl >/dev/null 2>&1 || { echo "login_example: curl not found" >&2; exit 77; }
. "$srcdir/tests/daemon.sh"

dir=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-login-example-XXXXXX")
pid=
cleanup() {
    set +e # daemon_stop's kill of a process already gone fails
    [ -z "$pid" ] || daemon_stop "$pid"
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "login_example: $*" >&2; cat "$dir/run.out" "$dir/daemon.log" >&2; exit 1; }

: >"$dir/daemon.log"
: >"$dir/run.out"
"$bin" --listen 127.0.0.1:0 --db "$dir/db" >"$dir/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$dir/daemon.log" "$pid")
[ -n "$port" ] || fail "the daemon did not start in 10 s"
BASE_URL=http://127.0.0.1:$port
export BASE_URL

for run in 1 2; do
    timeout 30 sh "$srcdir/docs/examples/login.sh" 15550001111 >"$dir/run.out" 2>&1 ||
        fail "run $run failed"
    cat "$dir/run.out"
    if [ $run = 1 ]; then window=201; profile=201; else window=412; profile=200; fi
    for want in "attempts-window: PUT /v1/kv/attempts:15550001111?ttl=3600 -> $window" \
                "count-attempt: POST /v1/kv/attempts:15550001111/incr -> 200" \
                "send-code: PUT /v1/kv/code:15550001111?ttl=300 -> 201" \
                "resend-refused: PUT /v1/kv/code:15550001111?ttl=300 -> 412" \
                "verify: DELETE /v1/kv/code:15550001111 -> 200" \
                "verify-again: DELETE /v1/kv/code:15550001111 -> 404" \
                "use-session: GET /v1/kv/session:" \
                "profile-create: PATCH /v1/kv/profile:15550001111 -> $profile" \
                "profile-update: PATCH /v1/kv/profile:15550001111 -> 200" \
                "profile-read: GET /v1/kv/profile:15550001111 -> 200" \
                "logout: DELETE /v1/kv/session:" \
                "login: ok"; do
        grep -qF "$want" "$dir/run.out" || fail "run $run: no line '$want'"
    done
    grep -q '^create-session: PUT /v1/kv/session:[0-9a-f]\{32\}?ttl=1800&sliding=true -> 201$' \
        "$dir/run.out" || fail "run $run: no session created"
    grep -q '^session-gone: GET /v1/kv/session:[0-9a-f]\{32\} -> 404$' "$dir/run.out" ||
        fail "run $run: the session outlived the logout"
done
# The second run's profile-create was a merge (200) into the first's
# profile; the counter counted both runs.
[ "$(curl -sS "$BASE_URL/v1/kv/attempts:15550001111")" = 2 ] || fail "attempts not counted"
profile=$(curl -sS "$BASE_URL/v1/kv/profile:15550001111")
for m in '"phone":"15550001111"' '"logins":1' '"name":"Ada"' '"last_login":{"at":"now","via":"sms"}'; do
    case $profile in *"$m"*) ;; *) fail "profile without $m: $profile" ;; esac
done
[ ${#profile} = 85 ] || fail "profile: $profile"
# Too many attempts: the example stops before sending a code.
MAX_ATTEMPTS=2 timeout 30 sh "$srcdir/docs/examples/login.sh" 15550001111 >"$dir/run.out" 2>&1 &&
    fail "a third code within the hour was sent with MAX_ATTEMPTS=2"
grep -q 'too many codes' "$dir/run.out" || fail "no refusal message"
echo "login_example: ok"
