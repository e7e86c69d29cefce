#!/bin/sh
# Lint api/openapi.yaml with Redocly's CLI (from the npm registry).
# Needs npx (Node 18.17 or later: the pinned 1.x release runs on Debian 12's
# nodejs); fails when it is missing so that CI never silently skips it.
set -e
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
if ! command -v npx >/dev/null 2>&1; then
    echo "lint_openapi: npx not found (install nodejs and npm: scripts/install-deps)" >&2
    exit 1
fi
cd "$srcdir"
exec npx --yes @redocly/cli@1.34.5 lint --format=stylish api/openapi.yaml
