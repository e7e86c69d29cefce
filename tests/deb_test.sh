#!/bin/sh
# The Debian packages (debian/): build them with dpkg-buildpackage from a
# copy of the source tree (the checkout stays clean), check them with
# lintian (no errors), install them with apt-get, run the installed daemon
# by hand as the sqlcached user on a free 127.0.0.1 port against a temporary
# database (a PUT and a GET with curl), build a program against the
# installed library (shared and static), then purge the packages again.
#
# `make check-deb` runs it (not part of `make check`: it installs packages
# system-wide). Needs root and dpkg-buildpackage (scripts/install-deps);
# without them it exits 77 (skipped). It refuses to touch a sqlcached
# package that was installed before it started (exit 77 too). Every wait
# is bounded. Environment: SQLCACHED_SRCDIR (default: this checkout).
set -u

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "${SQLCACHED_SRCDIR:-$here/..}" && pwd)
# shellcheck source=tests/daemon.sh
. "$srcdir/tests/daemon.sh"

say() { echo "deb_test: $*"; }
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
skip() { echo "deb_test: SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root (it installs the package with apt-get)"
for c in dpkg-buildpackage dh apt-get curl setpriv git; do
    command -v "$c" >/dev/null 2>&1 ||
        skip "$c not found (scripts/install-deps installs what is needed)"
done
# One run at a time on a machine (two CI runs would install and purge the
# same packages under each other): wait up to 20 min for the other.
command -v flock >/dev/null 2>&1 || skip "flock not found (util-linux)"
exec 9>/run/lock/sqlcached-deb_test.lock || fail "cannot open /run/lock/sqlcached-deb_test.lock"
flock -w 1200 9 || fail "another deb_test held /run/lock/sqlcached-deb_test.lock for 20 min"
for p in sqlcached libsqlcached-dev; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then
        skip "package $p is installed already; not touching it"
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-deb-XXXXXX") || fail "mktemp failed"
pid=""
installed=""
apt() {
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get -y -q \
        -o DPkg::Lock::Timeout=300 "$@"
}
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    if [ -n "$installed" ]; then
        apt purge sqlcached libsqlcached-dev >"$tmp/purge.log" 2>&1 ||
            { cat "$tmp/purge.log"; echo "deb_test: apt-get purge failed" >&2; }
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ----------------------------------------------------------------- build
# The copy: the files git knows (tracked, or untracked and not ignored), as
# they are in the working tree; no build products of the checkout.
mkdir "$tmp/src" || fail "mkdir failed"
# (safe.directory: CI runs as root in a checkout another user may own.)
git -c safe.directory='*' -C "$srcdir" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    skip "$srcdir is not a git checkout (the source copy is made with git ls-files)"
(cd "$srcdir" && git -c safe.directory='*' ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null) |
    tar -C "$tmp/src" -xf - || fail "copying the source tree failed"
[ -x "$tmp/src/debian/rules" ] || fail "no debian/rules in the copy of $srcdir"

say "dpkg-buildpackage -us -uc -b in $tmp/src (log: build.log)"
start=$(date +%s)
(cd "$tmp/src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
    timeout 1500 dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1 || {
    tail -n 60 "$tmp/build.log"; fail "dpkg-buildpackage failed"; }
say "built in $(( $(date +%s) - start )) s: $(cd "$tmp" && echo ./*.deb)"
deb=$(ls "$tmp"/sqlcached_*.deb 2>/dev/null | head -n 1)
devdeb=$(ls "$tmp"/libsqlcached-dev_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] && [ -n "$devdeb" ] || fail "dpkg-buildpackage made no sqlcached/libsqlcached-dev .deb"

# ---------------------------------------------------------------- lintian
if command -v lintian >/dev/null 2>&1; then
    changes=$(ls "$tmp"/sqlcached_*.changes | head -n 1)
    timeout 600 lintian --fail-on error "$changes" >"$tmp/lintian.log" 2>&1
    rc=$?
    grep -E '^[EW]: ' "$tmp/lintian.log" | sed 's/^/deb_test: lintian: /'
    [ "$rc" -eq 0 ] || { cat "$tmp/lintian.log"; fail "lintian reports errors (status $rc)"; }
    say "lintian: $(grep -c '^E: ' "$tmp/lintian.log") errors, $(grep -c '^W: ' "$tmp/lintian.log") warnings"
else
    say "lintian not installed: not linted"
fi

# ---------------------------------------------------------------- install
installed=1
apt install "$deb" "$devdeb" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"; fail "apt-get install of the packages failed"; }
say "installed: $(dpkg-query -W -f='${Package}=${Version} ' sqlcached libsqlcached-dev)"
for f in /usr/bin/sqlcached /usr/bin/sqlcached-sim /usr/bin/sqlcached-bench \
         /usr/share/man/man1/sqlcached.1.gz /etc/sqlcached/sqlcached.conf \
         /usr/include/sqlcached.h; do
    [ -e "$f" ] || fail "the packages did not install $f"
done
dpkg -L sqlcached | grep -q '/systemd/system/sqlcached\.service$' ||
    fail "no systemd unit in the sqlcached package"
getent passwd sqlcached >/dev/null || fail "the postinst created no sqlcached user"
[ "$(stat -c %U /var/lib/sqlcached)" = sqlcached ] ||
    fail "/var/lib/sqlcached is not owned by sqlcached"
[ "$(stat -c '%U:%G %a' /etc/sqlcached/sqlcached.conf)" = "root:sqlcached 640" ] ||
    fail "/etc/sqlcached/sqlcached.conf is $(stat -c '%U:%G %a' /etc/sqlcached/sqlcached.conf), expected root:sqlcached 640"
grep -q '^db = /var/lib/sqlcached/sqlcached.db$' /etc/sqlcached/sqlcached.conf ||
    fail "the installed configuration does not put the database in /var/lib/sqlcached"
/usr/bin/sqlcached --version >"$tmp/version" 2>&1 || fail "sqlcached --version failed"
say "$(cat "$tmp/version")"

# -------------------------------------------------------------- the daemon
# As the sqlcached user, with the installed configuration (flags win over
# it): --listen on a free port, --db in a directory of the test.
chmod 0711 "$tmp" && install -d -o sqlcached -g sqlcached -m 0700 "$tmp/data" ||
    fail "cannot make the data directory"
setpriv --reuid=sqlcached --regid=sqlcached --init-groups -- \
    /usr/bin/sqlcached --config /etc/sqlcached/sqlcached.conf \
    --listen 127.0.0.1:0 --db "$tmp/data/sqlcached.db" >"$tmp/daemon.log" 2>&1 &
pid=$!
port=$(daemon_port "$tmp/daemon.log" "$pid")
[ -n "$port" ] || { cat "$tmp/daemon.log" >&2; fail "the installed daemon did not start"; }
say "installed daemon, pid $pid, on 127.0.0.1:$port"
url="http://127.0.0.1:$port/v1/kv/deb-test"
code=$(curl -s -o "$tmp/put.out" -w '%{http_code}' --max-time 10 --noproxy '*' -X PUT \
    -H 'Content-Type: text/plain' --data-binary 'from the package' "$url")
[ "$code" = 201 ] || { cat "$tmp/put.out"; fail "PUT answered $code, expected 201"; }
code=$(curl -s -o "$tmp/get.out" -w '%{http_code}' --max-time 10 --noproxy '*' "$url")
[ "$code" = 200 ] || fail "GET answered $code, expected 200"
[ "$(cat "$tmp/get.out")" = "from the package" ] || fail "GET returned '$(cat "$tmp/get.out")'"
say "PUT 201, GET 200 with the value written"
kill -TERM "$pid"
for _ in $(seq 1 150); do # up to 15 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the daemon did not stop within 15 s of SIGTERM"
wait "$pid"
rc=$?
pid=""
[ "$rc" -eq 0 ] || { cat "$tmp/daemon.log" >&2; fail "the daemon exited with status $rc"; }
[ -s "$tmp/data/sqlcached.db" ] || fail "no database file written"

# ------------------------------------------------------- the library (-dev)
libdir=$(pkg-config --variable=libdir sqlcached) || fail "pkg-config knows no sqlcached"
# shellcheck disable=SC2046
cc -std=c11 $(pkg-config --cflags sqlcached) -o "$tmp/embed" "$srcdir/tests/embed.c" \
    $(pkg-config --libs sqlcached) || fail "cannot build against the shared library"
"$tmp/embed" "$tmp/embed.db" >"$tmp/embed.log" 2>&1 ||
    { cat "$tmp/embed.log"; fail "the program linked to libsqlcached.so failed"; }
# shellcheck disable=SC2046
cc -std=c11 $(pkg-config --cflags sqlcached) -o "$tmp/embed-static" "$srcdir/tests/embed.c" \
    "$libdir/libsqlcached.a" $(pkg-config --libs $(pkg-config --print-requires-private sqlcached)) \
    -pthread -lm ||
    fail "cannot build against libsqlcached.a"
"$tmp/embed-static" "$tmp/embed-static.db" >"$tmp/embed.log" 2>&1 ||
    { cat "$tmp/embed.log"; fail "the program linked to libsqlcached.a failed"; }
say "programs built against libsqlcached.so and libsqlcached.a work"

# ------------------------------------------------------------------ purge
installed=""
apt purge sqlcached libsqlcached-dev >"$tmp/purge.log" 2>&1 || {
    cat "$tmp/purge.log"; fail "apt-get purge failed"; }
for f in /usr/bin/sqlcached /etc/sqlcached /var/lib/sqlcached /usr/include/sqlcached.h; do
    [ ! -e "$f" ] || fail "$f is still there after apt-get purge"
done
say "purged; PASS"
exit 0
