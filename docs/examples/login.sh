#!/bin/sh
# A phone login on sqlcached, with curl: every step is one atomic call.
#   1. send a code: count the attempt (incr on a per-phone counter that
#      lives an hour), then store the code for 5 minutes only if none is
#      pending (PUT If-None-Match: *),
#   2. verify it: read and delete it in one step (DELETE with Prefer:
#      return=representation), so a code works once, even if two requests
#      race with it,
#   3. create the session: a token whose 30-minute expiry slides with every
#      use (PUT ?ttl=1800&sliding=true),
#   4. use the session (each GET pushes its expiry back),
#   5. update the profile field by field (PATCH, JSON merge patch),
#   6. log out (DELETE).
# Each call prints "step: METHOD path -> status"; an unexpected status ends
# the script with exit 1. The last line is "login: ok".
#
# Usage: BASE_URL=http://127.0.0.1:8080 sh docs/examples/login.sh [PHONE]
# Environment: BASE_URL (default http://127.0.0.1:8080), MAX_ATTEMPTS
# (codes per phone and hour, default 5). Needs curl and od.
set -eu

BASE_URL=${BASE_URL:-http://127.0.0.1:8080}
PHONE=${1:-15551234567}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-5}
out=$(mktemp "${TMPDIR:-/tmp}/login-example-XXXXXX")
trap 'rm -f "$out"' EXIT

# call STEP WANT METHOD PATH [curl args...]: the body goes to $out, the
# status must be one of WANT (a space-separated list).
call() {
    step=$1 want=$2 method=$3 path=$4
    shift 4
    code=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" "$@" "$BASE_URL$path")
    echo "$step: $method $path -> $code"
    for w in $want; do
        [ "$code" = "$w" ] && return 0
    done
    echo "$step: wanted $want: $(cat "$out")" >&2
    exit 1
}

# The integer member $1 of the JSON object in $out.
member() {
    sed -n "s/.*\"$1\":\([0-9-]*\).*/\1/p" "$out"
}

# 1. Send a code. The attempt counter gets its one-hour window from the
#    PUT that creates it (If-None-Match: * leaves a running window alone:
#    201 the first time, 412 after), then incr counts this attempt.
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'If-None-Match: *' \
       -H 'Content-Type: text/plain' --data-binary 0 "$BASE_URL/v1/kv/attempts:$PHONE?ttl=3600")
echo "attempts-window: PUT /v1/kv/attempts:$PHONE?ttl=3600 -> $code"
[ "$code" = 201 ] || [ "$code" = 412 ] || exit 1
call count-attempt 200 POST "/v1/kv/attempts:$PHONE/incr" \
     -H 'Content-Type: application/json' -d '{"by": 1}'
attempts=$(member value)
if [ "$attempts" -gt "$MAX_ATTEMPTS" ]; then
    echo "too many codes for $PHONE this hour ($attempts)" >&2
    exit 1
fi
sent=$(printf '%06d' $(( $(od -An -N4 -tu4 /dev/urandom) % 1000000 )))
call send-code 201 PUT "/v1/kv/code:$PHONE?ttl=300" -H 'If-None-Match: *' \
     -H 'Content-Type: text/plain' --data-binary "$sent"
echo "(an SMS would carry $sent to $PHONE)"
# A second code while this one is pending is refused: 412.
call resend-refused 412 PUT "/v1/kv/code:$PHONE?ttl=300" -H 'If-None-Match: *' \
     -H 'Content-Type: text/plain' --data-binary 000000

# 2. Verify: the code the user typed against the one stored, read and
#    deleted at once. 404: no code (expired, or already used).
typed=$sent
call verify 200 DELETE "/v1/kv/code:$PHONE" -H 'Prefer: return=representation'
[ "$(cat "$out")" = "$typed" ] || { echo "wrong code" >&2; exit 1; }
call verify-again 404 DELETE "/v1/kv/code:$PHONE" -H 'Prefer: return=representation'

# 3. The session: 30 minutes after its last use.
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
call create-session 201 PUT "/v1/kv/session:$token?ttl=1800&sliding=true" \
     -H 'Content-Type: application/json' --data-binary "{\"phone\":\"$PHONE\"}"

# 4. Each request of the user reads its session (and so keeps it alive).
call use-session 200 GET "/v1/kv/session:$token"

# 5. The profile, one field at a time: concurrent updates of different
#    fields never lose each other; null removes a field. The first patch
#    creates it (201), or merges into an existing one (200).
call profile-create "201 200" PATCH "/v1/kv/profile:$PHONE" \
     -H 'Content-Type: application/merge-patch+json' \
     --data-binary "{\"phone\":\"$PHONE\",\"name\":null,\"logins\":1}"
call profile-update 200 PATCH "/v1/kv/profile:$PHONE" \
     -H 'Content-Type: application/merge-patch+json' \
     --data-binary '{"name":"Ada","last_login":{"at":"now","via":"sms"}}'
call profile-read 200 GET "/v1/kv/profile:$PHONE"
echo "profile: $(cat "$out")"

# 6. Log out: the session is gone at once, on every node.
call logout 204 DELETE "/v1/kv/session:$token"
call session-gone 404 GET "/v1/kv/session:$token"
echo "login: ok"
