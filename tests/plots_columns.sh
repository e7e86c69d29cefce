#!/bin/sh
# The committed data of docs/plots/ keeps the columns scripts/plots writes
# now: each TSV's header line (its first line not starting with "#") must
# equal `scripts/plots --header KIND` (hit-ratio: "entries", the policies
# sqlcached-sim reports, "opt"; bench-compare; bench-scale), every row has
# that many fields, every TSV has its SVG, and every policy and system has
# its colour in the palette of web/dashboard.css (and the dashboard a rule
# for each policy). So a new policy, or a changed column, fails here until
# `make plots` is run again. Fast: no simulation (the policy list comes
# from a one-request run of sqlcached-sim).
#
# First shows that the check catches a renamed column and a missing
# colour, on doctored copies, so that a pass means something.
set -u

srcdir=${SQLCACHED_SRCDIR:-.}
builddir=${SQLCACHED_BUILDDIR:-$srcdir}
plots=$srcdir/scripts/plots
SIM=$builddir/tools/sqlcached-sim
export SIM
[ -x "$SIM" ] || { echo "plots_columns: no $SIM (build first)"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-plots-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# check DIR CSS: prints one line per problem; status 1 if any.
check() {
    dir=$1 css=$2 bad=0
    for need in hitratio-zipf-0.8 hitratio-zipf-0.99 bench-compare bench-scale; do
        [ -f "$dir/$need.tsv" ] || { echo "$need.tsv: missing"; bad=1; }
    done
    for tsv in "$dir"/*.tsv; do
        name=$(basename "$tsv" .tsv)
        case $name in
        bench-compare | bench-scale) kind=$name ;;
        hitratio-*) kind=hit-ratio ;;
        *) echo "$name.tsv: not a file scripts/plots writes"; bad=1; continue ;;
        esac
        want=$(bash "$plots" --header "$kind") || { echo "scripts/plots --header $kind failed"; return 1; }
        got=$(grep -v '^#' "$tsv" | head -n 1)
        if [ "$got" != "$want" ]; then
            echo "$name.tsv: columns '$got'; scripts/plots writes '$want' (run make plots)"
            bad=1
        fi
        rows=$(grep -v '^#' "$tsv" | awk -F'\t' -v n="$(echo "$want" | awk -F'\t' '{ print NF }')" \
               'NR > 1 && NF != n { print NR }' | head -n 1)
        [ -z "$rows" ] || { echo "$name.tsv: a row without one field per column"; bad=1; }
        [ "$(grep -v '^#' "$tsv" | wc -l)" -ge 2 ] || { echo "$name.tsv: no rows"; bad=1; }
        [ -s "$dir/$name.svg" ] || { echo "$name.svg: missing beside $name.tsv"; bad=1; }
        case $kind in
        hit-ratio) names=$(echo "$want" | cut -f 2- | tr '\t' '\n' | sed 's/^/policy-/') ;;
        bench-compare) names=$(grep -v '^#' "$tsv" | awk -F'\t' 'NR > 1 { print "system-" $2 }' | sort -u) ;;
        *) names=system-sqlcached ;;
        esac
        for n in $names; do
            grep -Eq "^ *--$n: *#[0-9a-fA-F]{6};" "$css" || { echo "$css: no colour --$n"; bad=1; }
            case $n in policy-opt | system-*) continue ;; esac
            grep -qF "[data-policy=\"${n#policy-}\"] { color: var(--$n); }" "$css" ||
                { echo "$css: no [data-policy=\"${n#policy-}\"] rule"; bad=1; }
        done
    done
    return $bad
}

# A renamed column and a colour taken out must be caught.
cp -r "$srcdir/docs/plots" "$tmp/plots" && cp "$srcdir/web/dashboard.css" "$tmp/dashboard.css" || exit 1
sed -i 's/^entries\tnoeviction/entries\tno-eviction/' "$tmp/plots/hitratio-zipf-0.8.tsv"
sed -i '/^ *--system-webdis:/d' "$tmp/dashboard.css"
out=$(check "$tmp/plots" "$tmp/dashboard.css") && {
    echo "plots_columns: the check missed a renamed column and a missing colour"; exit 1; }
echo "$out" | grep -q "hitratio-zipf-0.8.tsv: columns 'entries	no-eviction" &&
    echo "$out" | grep -q "no colour --system-webdis" || {
    echo "plots_columns: unexpected report on the doctored copy:"; echo "$out"; exit 1; }
echo "ok   a renamed column and a missing colour are caught"

if ! out=$(check "$srcdir/docs/plots" "$srcdir/web/dashboard.css"); then
    echo "plots_columns: docs/plots/ no longer matches scripts/plots:"
    echo "$out"
    exit 1
fi
echo "ok   $(ls "$srcdir"/docs/plots/*.tsv | wc -l) TSVs of docs/plots/ have the columns scripts/plots writes"
