#!/bin/sh
# Move stock between two keys with one transaction, with curl: the move
# happens only if neither key changed since it was read (compare-and-swap
# on both versions), so two clients moving stock at once never lose a unit.
#   1. read both counts and their versions (GET: the ETag is the version),
#   2. POST /v1/txn: compare both versions; success: write both new counts;
#      failure: read both again (the answer says what changed),
#   3. on a conflict (succeeded false), start over, at most 5 times.
#
# Usage: B=http://127.0.0.1:8080 sh docs/examples/txn.sh FROM TO N [FROM_VERSION TO_VERSION]
# With the two versions given (read earlier by the caller), step 1 reads
# only the counts and step 3 does not retry: a conflict exits 3.
# Exit: 0 moved, 1 an error, 2 not enough stock at FROM, 3 conflict.
# Prints each HTTP status it gets ("GET stock:a 200", "POST /v1/txn 200").
set -eu

B=${B:-http://127.0.0.1:8080}
FROM=${1:?usage: txn.sh FROM TO N [FROM_VERSION TO_VERSION]}
TO=${2:?}
N=${3:?}
GIVEN_FROM=${4:-}
GIVEN_TO=${5:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/txn-example-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# GET key: the count into $count, its version into $version (404: 0 and 0).
read_key() {
    code=$(curl -sS -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' "$B/v1/kv/$1")
    echo "GET $1 $code"
    case $code in
    200) count=$(cat "$tmp/b")
         version=$(tr -d '\r' <"$tmp/h" | sed -n 's/^[Ee][Tt][Aa][Gg]: "\([0-9]*\)"$/\1/p') ;;
    404) count=0 version=0 ;;
    *) echo "cannot read $1" >&2; exit 1 ;;
    esac
}

attempts=0
while :; do
    attempts=$((attempts + 1))
    read_key "$FROM"; from_count=$count; from_version=${GIVEN_FROM:-$version}
    read_key "$TO"; to_count=$count; to_version=${GIVEN_TO:-$version}
    if [ "$from_count" -lt "$N" ]; then
        echo "not enough stock: $FROM has $from_count, $N asked" >&2
        exit 2
    fi
    # 2. One transaction: both versions unchanged -> write both counts.
    #    (Version 0 compares an absent key.)
    body=$(cat <<JSON
{"compare": [{"key": "$FROM", "version": $from_version},
             {"key": "$TO", "version": $to_version}],
 "success": [{"op": "put", "key": "$FROM", "value": "$((from_count - N))", "content_type": "text/plain"},
             {"op": "put", "key": "$TO", "value": "$((to_count + N))", "content_type": "text/plain"}],
 "failure": [{"op": "get", "key": "$FROM"}, {"op": "get", "key": "$TO"}]}
JSON
)
    code=$(curl -sS -o "$tmp/b" -w '%{http_code}' -X POST \
           -H 'Content-Type: application/json' -d "$body" "$B/v1/txn")
    echo "POST /v1/txn $code"
    [ "$code" = 200 ] || { cat "$tmp/b" >&2; echo >&2; exit 1; }
    if grep -q '"succeeded": *true' "$tmp/b"; then
        echo "moved $N from $FROM ($((from_count - N)) left) to $TO ($((to_count + N)))"
        exit 0
    fi
    # 3. Someone changed a count meanwhile: nothing was written; the
    #    failure branch's gets show the current state.
    echo "conflict: $(cat "$tmp/b")"
    if [ -n "$GIVEN_FROM" ] || [ "$attempts" -ge 5 ]; then
        exit 3
    fi
done
