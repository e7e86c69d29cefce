#!/bin/sh
# Install into a temporary DESTDIR, then build a tiny program against the
# installed library through pkg-config and run it: the embedded use case
# (open a store in-process, put, get). Also checks the installed files.
set -eu
builddir=${SQLCACHED_BUILDDIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
make -s -C "$builddir" install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"; exit 1; }
prefix=$(sed -n 's/^prefix=//p' "$builddir/sqlcached.pc")
libdir=$(sed -n 's/^libdir=//p' "$builddir/sqlcached.pc" | sed "s|\${exec_prefix}|$prefix|; s|\${prefix}|$prefix|")
root="$tmp/root"
for f in "$prefix/bin/sqlcached" "$prefix/bin/sqlcached-sim" "$prefix/include/sqlcached.h" \
         "$prefix/share/man/man1/sqlcached.1" \
         "$prefix/share/man/man1/sqlcached-sim.1" "$prefix/share/man/man1/sqlcached-bench.1" \
         "$prefix/bin/sqlcached-bench" "$prefix/lib/systemd/system/sqlcached.service" \
         "$prefix/etc/sqlcached.conf" "$libdir/pkgconfig/sqlcached.pc"; do
    [ -e "$root$f" ] || { echo "install_test: missing $f"; exit 1; }
done
grep -q "ProtectSystem=strict" "$root$prefix/lib/systemd/system/sqlcached.service"
export PKG_CONFIG_PATH="$root$libdir/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$root"
cflags=$(pkg-config --cflags sqlcached)
libs=$(pkg-config --libs sqlcached)
# SAN_CFLAGS (from make check): a sanitizer build's library needs the
# program linked with the same runtime.
cc -std=c11 ${SAN_CFLAGS:-} $cflags -o "$tmp/embed" "${SQLCACHED_SRCDIR:?}/tests/embed.c" $libs
LD_LIBRARY_PATH="$root$libdir" "$tmp/embed" "$tmp/embed.db"
