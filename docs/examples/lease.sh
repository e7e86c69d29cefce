#!/bin/sh
# A job that runs under a lease, with curl:
#   1. acquire the lease (waiting up to WAIT_MS for the current holder),
#   2. keep it alive with a watchdog that renews it every TTL_MS/3 (as
#      Redisson's lock watchdog does) for as long as the job runs,
#   3. do the work, passing the fencing token to the resource,
#   4. stop the watchdog and release the lease.
#
# Usage: B=http://127.0.0.1:8080 sh docs/examples/lease.sh [NAME] [OWNER]
# Environment: B (base URL), TTL_MS (default 3000), WAIT_MS (default 10000),
# WORK_SECONDS (default 5). Needs curl and a sleep that takes fractions.
set -eu

B=${B:-http://127.0.0.1:8080}
NAME=${1:-nightly-report}
OWNER=${2:-$(hostname)-$$}
TTL_MS=${TTL_MS:-3000}
WAIT_MS=${WAIT_MS:-10000}
WORK_SECONDS=${WORK_SECONDS:-5}

# POST a JSON body; prints the response body, returns 0 only on HTTP 200.
post() {
    out=$(curl -sS -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' \
          -d "$2" "$B/v1/leases/$NAME/$1") || return 1
    code=$(printf '%s\n' "$out" | tail -n 1)
    printf '%s\n' "$out" | sed '$d'
    [ "$code" = 200 ]
}

# The integer member $1 of the JSON object on stdin.
member() {
    sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# 1. Acquire. A 409 lease_held means another owner kept it for WAIT_MS.
if ! lease=$(post acquire "{\"owner\":\"$OWNER\",\"ttl_ms\":$TTL_MS,\"wait_ms\":$WAIT_MS}"); then
    echo "not acquired: $lease" >&2
    exit 1
fi
token=$(printf '%s' "$lease" | member token)
echo "acquired $NAME as $OWNER, fencing token $token"

# 2. The watchdog: renew every TTL_MS/3. If a renewal is refused (409
#    not_owner: the lease expired, e.g. this machine stalled longer than
#    TTL_MS), the job must stop: another holder may already have it.
interval=$(awk "BEGIN { printf \"%.3f\", $TTL_MS / 3000 }")
job=$$
(
    while sleep "$interval"; do
        if ! post renew "{\"owner\":\"$OWNER\",\"ttl_ms\":$TTL_MS}" >/dev/null; then
            echo "watchdog: lost the lease $NAME" >&2
            kill -TERM "$job"
            exit 1
        fi
        echo "watchdog: renewed $NAME for $TTL_MS ms"
    done
) &
watchdog=$!

finish() {
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    if post release "{\"owner\":\"$OWNER\"}" >/dev/null; then
        echo "released $NAME"
    fi
}
trap 'finish; exit 1' TERM INT
trap finish EXIT

# 3. The work. Every write to the protected resource carries the token; the
#    resource remembers the highest token it has seen and refuses smaller
#    ones (see docs/leases.md). Here the "resource" is a KV key that
#    records which holding wrote last.
end=$(( $(date +%s) + WORK_SECONDS ))
while [ "$(date +%s)" -lt "$end" ]; do
    curl -sS -o /dev/null -X PUT -H "X-Fencing-Token: $token" \
         --data-binary "written by $OWNER with token $token" "$B/v1/kv/$NAME-output"
    sleep 0.2
done
still=$(curl -sS "$B/v1/leases/$NAME")
echo "work done; lease still ours: $(printf '%s' "$still" | member token) = $token"
