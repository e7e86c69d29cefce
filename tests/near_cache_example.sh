#!/bin/sh
# Run tests/near_cache_example.py: docs/examples/near-cache.py against a
# daemon that the script starts itself (src/sqlcached, 127.0.0.1 port 0, a
# temporary database, a small --watch-history when the daemon has it,
# stopped by PID; every wait bounded). It checks the near cache's staleness
# bound (500 ms) with the stream connected, held down, and after a 410.
# Skips (77) without python3 or when the daemon has no GET /v1/watch.
set -eu
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
bin=${SQLCACHED_BIN:-src/sqlcached}
command -v python3 >/dev/null 2>&1 || { echo "near_cache_example: python3 not found" >&2; exit 77; }
SQLCACHED_SRCDIR=$srcdir exec timeout 180 python3 "$srcdir/tests/near_cache_example.py" --bin "$bin"
