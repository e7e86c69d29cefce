#!/bin/sh
# The C sources follow .clang-format: clang-format 14 --dry-run -Werror
# over every .c and .h of src/, include/, tests/, tools/, fuzz/ and the top
# directory (not the files the build generates). First it shows that the
# check catches a badly formatted file, so that a pass means something.
# Skipped (77) without clang-format 14: another version formats otherwise.
# To format the tree: FORMAT_APPLY=1 sh tests/format_check.sh
set -eu
srcdir=${SQLCACHED_SRCDIR:-.}
cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
    for c in clang-format-14 clang-format; do
        if command -v "$c" >/dev/null 2>&1; then cf=$c; break; fi
    done
fi
if [ -z "$cf" ]; then
    echo "format_check: skipped: no clang-format (scripts/install-deps installs it)"
    exit 77
fi
case "$("$cf" --version)" in
*"version 14."*) ;;
*) echo "format_check: skipped: $("$cf" --version) is not clang-format 14"; exit 77 ;;
esac

# The files: the sources in the tree, not the generated ones (a build in
# the source directory writes those beside them).
files=$(cd "$srcdir" && {
    find src include tests tools fuzz -name '*.[ch]' -type f
    find . -maxdepth 1 -name '*.[ch]' -type f
} | sed 's|^\./||' | grep -v -x -e 'src/sql_migrations.c' -e 'src/pg_migrations.c' \
    -e 'src/web_assets.c' -e 'build_config.h' | sort)

if [ "${FORMAT_APPLY:-0}" = 1 ]; then
    # shellcheck disable=SC2086
    (cd "$srcdir" && "$cf" -i --style=file $files)
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-format-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$srcdir/.clang-format" "$tmp/.clang-format"
printf 'int f(int a){\nreturn a+1;}\n' > "$tmp/bad.c"
if (cd "$tmp" && "$cf" --dry-run -Werror --style=file bad.c) >/dev/null 2>&1; then
    echo "format_check: $cf --dry-run -Werror passed a badly formatted file"
    exit 1
fi

# shellcheck disable=SC2086
if ! out=$(cd "$srcdir" && "$cf" --dry-run -Werror --style=file $files 2>&1); then
    echo "$out" | head -60
    n=$(echo "$out" | grep -c 'error: code should be clang-formatted' || true)
    echo "format_check: $n places not formatted as .clang-format says;"
    echo "  format them with: FORMAT_APPLY=1 sh tests/format_check.sh"
    exit 1
fi
echo "format_check: $(echo "$files" | wc -l) files formatted as .clang-format says"
