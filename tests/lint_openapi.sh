#!/bin/sh
# Lint api/openapi.yaml with Redocly's CLI (from the npm registry).
# Needs npx; fails when it is missing so that CI never silently skips it.
set -e
srcdir=${SQLCACHED_SRCDIR:-$(dirname "$0")/..}
if ! command -v npx >/dev/null 2>&1; then
    echo "lint_openapi: npx not found (install nodejs and npm: scripts/install-deps)" >&2
    exit 1
fi
cd "$srcdir"
exec npx --yes @redocly/cli@2.77.0 lint --format=stylish api/openapi.yaml
