#!/bin/bash
# The monitoring files of contrib/ against the daemon they watch:
#
#   contrib/prometheus/alerts.yml   `promtool check rules` passes, and its
#                                   alerts are the ones docs/operations.md
#                                   lists (same names, both ways);
#   contrib/grafana/sqlcached.json  valid JSON with a Prometheus datasource
#                                   variable that every panel and query
#                                   uses; every query is valid PromQL
#                                   (`promtool check rules` on a rules file
#                                   made of them, Grafana's variables
#                                   replaced by values);
#   tests/prometheus/alerts_test.yml  `promtool test rules`: each alert
#                                   fires on the series it is for (with its
#                                   labels and summary) and not on a healthy
#                                   instance; every alert has a case;
#   both                            every metric a query or rule names is
#                                   one a live daemon exports on /metrics
#                                   (a histogram family NAME as NAME_bucket,
#                                   NAME_sum, NAME_count), except Prometheus'
#                                   own `up`.
#
# The daemon is ours: the build's src/sqlcached on a free loopback port with
# a temporary database, stopped by PID; every wait is bounded.
#
# First shows, on doctored copies of the files, that each check catches
# what it is for (a metric renamed in a query, a broken query, an alert
# missing from the docs), so that a pass means something.
#
# Needs promtool (Debian package `prometheus`), jq and curl
# (scripts/install-deps installs them). A missing promtool fails the test,
# unless SQLCACHED_TEST_NO_PROMTOOL=1, when the test is skipped (77) after
# the checks that need no promtool.
set -u

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${SQLCACHED_SRCDIR:-$here/..}
# shellcheck source=tests/daemon.sh
. "$srcdir/tests/daemon.sh"
builddir=${SQLCACHED_BUILDDIR:-$srcdir}
bin=${SQLCACHED_BIN:-$builddir/src/sqlcached}
dashboard=$srcdir/contrib/grafana/sqlcached.json
rules=$srcdir/contrib/prometheus/alerts.yml
rules_test=$srcdir/tests/prometheus/alerts_test.yml
ops=$srcdir/docs/operations.md

fail() {
    echo "monitoring_files: $*" >&2
    exit 1
}

command -v jq >/dev/null 2>&1 || fail "jq not found (scripts/install-deps installs jq)"
command -v curl >/dev/null 2>&1 || fail "curl not found (scripts/install-deps installs curl)"
[ -x "$bin" ] || fail "no daemon at $bin (build first)"
have_promtool=1
if ! command -v promtool >/dev/null 2>&1; then
    [ "${SQLCACHED_TEST_NO_PROMTOOL:-}" = 1 ] ||
        fail "promtool not found: install the Debian package prometheus (scripts/install-deps does)," \
            "or set SQLCACHED_TEST_NO_PROMTOOL=1 to skip this test"
    have_promtool=0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-monitoring-XXXXXX") || fail "mktemp failed"
pid=""
cleanup() {
    [ -z "$pid" ] || daemon_stop "$pid"
    rm -rf "$tmp"
}
trap cleanup EXIT

# ------------------------------------------------------------- extraction

# The PromQL expressions of a dashboard, one a line.
dashboard_exprs() {
    jq -r '[.. | objects | select(has("targets")) | .targets[]? | .expr // empty]
           | .[] | gsub("\n"; " ")' "$1"
}

# The queries of the dashboard's query variables (label_values(...)).
dashboard_var_queries() {
    jq -r '.templating.list[]? | select(.type == "query")
           | (.query | if type == "object" then .query else . end), .definition
           | strings' "$1"
}

# The expr of each rule of a rules file, one a line: `expr: ONE LINE` or a
# block scalar (`expr: |` and the lines indented deeper).
rule_exprs() {
    awk '
        inblock {
            if ($0 ~ /^[[:space:]]*$/) next
            match($0, /^ */)
            if (RLENGTH > ind) { buf = buf " " substr($0, RLENGTH + 1); next }
            print buf; inblock = 0
        }
        /^[[:space:]]*expr:[[:space:]]*[|>][-+]?[[:space:]]*$/ {
            match($0, /^ */); ind = RLENGTH; inblock = 1; buf = ""; next
        }
        /^[[:space:]]*expr:/ { sub(/^[[:space:]]*expr:[[:space:]]*/, ""); print; next }
        END { if (inblock) print buf }
    ' "$1"
}

rule_count() {
    grep -cE '^[[:space:]]*-[[:space:]]*(alert|record):' "$1"
}

# The metric names of PromQL expressions (stdin, one a line), one a line:
# the identifiers left once strings, label matchers, ranges and
# by/without/on/ignoring lists are removed, that are neither a function
# call nor a keyword.
metric_names() {
    jq -Rr '
        gsub("\"([^\"\\\\]|\\\\.)*\""; "") | gsub("\\{[^}]*\\}"; "") | gsub("\\[[^\\]]*\\]"; "")
        | gsub("\\b(by|without|on|ignoring|group_left|group_right)\\s*\\([^)]*\\)"; "")
        | [scan("(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*(?![A-Za-z0-9_:]*\\s*\\()")]
        | map(select(. as $w | ["and", "or", "unless", "bool", "offset", "by", "without",
                               "on", "ignoring", "group_left", "group_right", "inf", "nan"]
                     | index($w | ascii_downcase) | not))
        | .[]'
}

# The metrics a /metrics page (file) exports, one a line: every sample's
# name, and for each family its name (with the three series of a
# histogram or summary).
exported_names() {
    awk '
        $1 == "#" && $2 == "TYPE" {
            print $3
            if ($4 == "histogram") { print $3 "_bucket"; print $3 "_sum"; print $3 "_count" }
            if ($4 == "summary") { print $3 "_sum"; print $3 "_count" }
            next
        }
        /^[a-zA-Z_:]/ { n = $1; sub(/\{.*/, "", n); print n }
    ' "$1" | sort -u
}

# The alert names of the rules file, and those docs/operations.md lists in
# its "Monitoring with Prometheus" section (as `SqlcachedName`).
rule_alerts() {
    sed -n 's/^[[:space:]]*-[[:space:]]*alert:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' "$1" | sort -u
}
doc_alerts() {
    awk '/^## / { on = ($0 ~ /^## Monitoring with Prometheus/) } on' "$1" |
        grep -o '`Sqlcached[A-Za-z0-9_]*`' | tr -d '`' | sort -u
}

# -------------------------------------------------------------- the checks
# Each prints one line per problem and returns 1 if there was any.

# check_dashboard FILE: structure and the datasource variable.
check_dashboard() {
    jq -e . "$1" >/dev/null 2>&1 || { echo "$1: not valid JSON"; return 1; }
    jq -r '
        (if ([.templating.list[]? | select(.type == "datasource" and .query == "prometheus"
                                           and .name == "datasource")] | length) == 1
         then empty else "no datasource variable of type prometheus named datasource" end),
        (.panels[] | select(.type != "row") |
            (if .datasource.uid == "${datasource}" then empty
             else "panel \(.title): datasource is not ${datasource}" end),
            (if ((.targets // []) | length) > 0 then empty else "panel \(.title): no query" end),
            (.targets[]? | if .datasource.uid == "${datasource}" and ((.expr // "") | length) > 0
                           then empty else "panel: a query without expr or ${datasource}" end))
    ' "$1" | grep . && return 1
    return 0
}

# check_promql DASHBOARD: every query parses (promtool, Grafana's
# variables replaced by values).
check_promql() {
    n=0
    {
        echo '{"groups": [{"name": "dashboard", "rules": ['
        dashboard_exprs "$1" | sed -e 's/\$__rate_interval/5m/g; s/\$__interval/1m/g' \
            -e 's/\$__range/1h/g; s/\$instance/.*/g' |
            while IFS= read -r e; do
                [ "$n" -gt 0 ] && echo ','
                jq -n --arg e "$e" --arg r "dashboard:query$n" '{record: $r, expr: $e}'
                n=$((n + 1))
            done
        echo ']}]}'
    } >"$tmp/dashboard-rules.json"
    if grep -q '\$' "$tmp/dashboard-rules.json"; then
        echo "$1: a query uses a variable other than \$instance and \$__rate_interval/\$__interval/\$__range:"
        grep '\$' "$tmp/dashboard-rules.json"
        return 1
    fi
    promtool check rules "$tmp/dashboard-rules.json" >"$tmp/promtool.out" 2>&1 ||
        { echo "$1: promtool rejects a query:"; cat "$tmp/promtool.out"; return 1; }
    return 0
}

# check_metrics DASHBOARD RULES EXPORTED: every metric used is exported.
check_metrics() {
    bad=0
    got=$(dashboard_exprs "$1" | wc -l) want=$(jq '[.. | objects | .targets? // empty | .[]] | length' "$1")
    [ "$got" -eq "$want" ] || { echo "$1: read $got queries of $want"; bad=1; }
    got=$(rule_exprs "$2" | grep -c .) want=$(rule_count "$2")
    [ "$got" -eq "$want" ] || { echo "$2: read $got expr of $want rules"; bad=1; }
    for src in "$1" "$2"; do
        if [ "$src" = "$1" ]; then
            exprs=$(dashboard_exprs "$src")
        else
            exprs=$(rule_exprs "$src")
        fi
        while IFS= read -r e; do
            [ -n "$e" ] || continue
            names=$(printf '%s\n' "$e" | metric_names)
            [ -n "$names" ] || { echo "$src: a query names no metric: $e"; bad=1; }
            for m in $names; do
                [ "$m" = up ] && continue
                grep -qx "$m" "$3" || { echo "$src: $m is not in /metrics (in: $e)"; bad=1; }
            done
        done <<EOF
$exprs
EOF
    done
    for m in $(dashboard_var_queries "$1" | grep -o 'sqlcached_[A-Za-z0-9_:]*'); do
        grep -qx "$m" "$3" || { echo "$1: variable query metric $m is not in /metrics"; bad=1; }
    done
    return $bad
}

# check_docs RULES OPS: the same alerts in both, and the docs name the files.
check_docs() {
    bad=0
    rule_alerts "$1" >"$tmp/alerts.rules"
    doc_alerts "$2" >"$tmp/alerts.docs"
    [ -s "$tmp/alerts.rules" ] || { echo "$1: no alert"; bad=1; }
    comm -23 "$tmp/alerts.rules" "$tmp/alerts.docs" | sed "s|^|$2 does not list the alert |" | grep . && bad=1
    comm -13 "$tmp/alerts.rules" "$tmp/alerts.docs" | sed "s|^|$1 has no alert |" | grep . && bad=1
    for f in contrib/prometheus/alerts.yml contrib/grafana/sqlcached.json; do
        grep -q "$f" "$2" || { echo "$2 does not name $f"; bad=1; }
    done
    return $bad
}

# check_rule_tests RULES TESTS: promtool test rules passes (TESTS reads
# RULES as ../../contrib/prometheus/alerts.yml), and every alert has a case.
check_rule_tests() {
    bad=0
    for a in $(rule_alerts "$1"); do
        grep -q "alertname: $a\$" "$2" || { echo "$2: no case for the alert $a"; bad=1; }
    done
    promtool test rules "$2" >"$tmp/promtool-test.out" 2>&1 ||
        { echo "promtool test rules $2 failed:"; cat "$tmp/promtool-test.out"; bad=1; }
    return $bad
}

# ------------------------------------------------------ the live /metrics
env -u SQLCACHED_AUTH_TOKEN -u SQLCACHED_ADMIN_TOKEN "$bin" --listen 127.0.0.1:0 --db "$tmp/sqlcached.db" \
    --durability normal >"$tmp/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$tmp/daemon.log" "$pid")
if [ -z "$port" ]; then
    cat "$tmp/daemon.log" >&2
    fail "the daemon did not start"
fi
url=http://127.0.0.1:$port
# one request first, so that the labelled series have samples too
curl -sS --noproxy '*' --max-time 5 -o /dev/null "$url/v1/kv/monitoring" ||
    fail "GET $url/v1/kv/monitoring failed"
curl -sS --noproxy '*' --max-time 5 -f -o "$tmp/metrics.txt" "$url/metrics" ||
    fail "GET $url/metrics failed"
exported_names "$tmp/metrics.txt" >"$tmp/exported"
grep -qx sqlcached_http_request_duration_seconds_bucket "$tmp/exported" ||
    fail "/metrics has no sqlcached_http_request_duration_seconds histogram"
echo "ok   the daemon exports $(wc -l <"$tmp/exported") metric names"

# -------------------------------------------- the checks catch what they should
cp "$dashboard" "$tmp/renamed.json" && cp "$rules" "$tmp/renamed.yml" ||
    fail "cannot copy the files to $tmp"
sed -i 's/sqlcached_cache_hits_total/sqlcached_cache_hit_total/' "$tmp/renamed.json" "$tmp/renamed.yml"
if check_metrics "$tmp/renamed.json" "$rules" "$tmp/exported" >/dev/null ||
    check_metrics "$dashboard" "$tmp/renamed.yml" "$tmp/exported" >/dev/null; then
    fail "the metric check misses a metric renamed in a query"
fi
echo "ok   the metric check catches a renamed metric"
grep -v 'SqlcachedSlow' "$ops" >"$tmp/ops.md"
check_docs "$rules" "$tmp/ops.md" >/dev/null && fail "the docs check misses an alert the docs lack"
echo "ok   the docs check catches an alert missing from docs/operations.md"
if [ "$have_promtool" = 1 ]; then
    jq '(.panels[] | select(.type != "row") | .targets[0].expr) |= . + ")"' "$dashboard" \
        >"$tmp/broken.json" || fail "jq failed"
    check_promql "$tmp/broken.json" >/dev/null && fail "the PromQL check misses a broken query"
    echo "ok   the PromQL check catches a broken query"
    # the rule tests against a rules file whose SqlcachedDown never fires
    mkdir -p "$tmp/t/tests/prometheus" "$tmp/t/contrib/prometheus" || fail "mkdir failed"
    cp "$rules_test" "$tmp/t/tests/prometheus/" || fail "cannot copy $rules_test"
    sed 's/up{job="sqlcached"} == 0/up{job="sqlcached"} == 2/' "$rules" >"$tmp/t/contrib/prometheus/alerts.yml"
    check_rule_tests "$tmp/t/contrib/prometheus/alerts.yml" "$tmp/t/tests/prometheus/alerts_test.yml" \
        >/dev/null && fail "the rule tests miss an alert that never fires"
    echo "ok   the rule tests catch an alert that never fires"
fi

# ---------------------------------------------------------- the real files
status=0
if out=$(check_dashboard "$dashboard"); then
    echo "ok   $dashboard: a Prometheus datasource variable, used by every panel"
else
    echo "$out"
    status=1
fi
if out=$(check_metrics "$dashboard" "$rules" "$tmp/exported"); then
    echo "ok   every metric of the dashboard ($(dashboard_exprs "$dashboard" | wc -l) queries)" \
        "and the rules ($(rule_count "$rules")) is in /metrics"
else
    echo "$out"
    status=1
fi
if out=$(check_docs "$rules" "$ops"); then
    echo "ok   docs/operations.md lists the alerts of alerts.yml: $(tr '\n' ' ' <"$tmp/alerts.rules")"
else
    echo "$out"
    status=1
fi
[ "$status" -eq 0 ] || fail "failed"

if [ "$have_promtool" = 0 ]; then
    echo "monitoring_files: skipped the promtool checks: no promtool and SQLCACHED_TEST_NO_PROMTOOL=1" \
        "(Debian package prometheus provides it)"
    exit 77
fi
promtool check rules "$rules" || fail "promtool check rules $rules failed"
echo "ok   promtool check rules $rules"
check_promql "$dashboard" || fail "a dashboard query is not valid PromQL"
echo "ok   every dashboard query is valid PromQL (promtool)"
check_rule_tests "$rules" "$rules_test" || fail "the alert rules' tests failed"
echo "ok   promtool test rules $rules_test: every alert fires when it should, only then"
echo "monitoring_files: passed"
exit 0
