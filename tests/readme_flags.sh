#!/bin/sh
# Every flag that `sqlcached --help` lists is in the README's flags table and
# in the man page, so neither goes stale when a flag is added.
set -eu
bin=${SQLCACHED_BIN:?}
srcdir=${SQLCACHED_SRCDIR:?}
missing=0
flags=$("$bin" --help | grep -o -- '--[a-z][a-z-]*' | sort -u)
[ -n "$flags" ] || { echo "readme_flags: --help listed no flags"; exit 1; }
for f in $flags; do
    if ! grep -q -- "\`$f" "$srcdir/README.md"; then
        echo "readme_flags: $f is not in README.md"; missing=1
    fi
    man=$(printf '%s' "$f" | sed 's/-/\\\\-/g')
    if ! grep -q -- "$man" "$srcdir/docs/sqlcached.1"; then
        echo "readme_flags: $f is not in docs/sqlcached.1"; missing=1
    fi
done
[ $missing -eq 0 ] && echo "readme_flags: $(echo "$flags" | wc -l) flags documented"
exit $missing
