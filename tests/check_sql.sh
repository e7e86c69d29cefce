#!/bin/sh
# SQL only through prepared statements of constant text: run
# scripts/check-sql over the sources, and first show that it catches SQL
# built at run time (so that a pass means something).
set -eu
srcdir=${SQLCACHED_SRCDIR:-.}
check="$srcdir/scripts/check-sql"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlcached-checksql-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/bad.c" <<'C'
static const char SQL_OK[] = "SELECT 1";
int lookup(sqlite3 *db, const char *key)
{
    char sql[256];
    sqlite3_stmt *st;
    snprintf(sql, sizeof sql, "SELECT v FROM kv WHERE key = '%s'", key);
    sqlite3_prepare_v2(db, SQL_OK, -1, &st, NULL);
    sqlite3_exec(db, "DELETE FROM kv", NULL, NULL, NULL);
    return sqlite3_prepare_v2(db, sql, -1, &st, NULL);
}
C
if out=$(perl "$check" "$tmp/bad.c"); then
    echo "check_sql: scripts/check-sql missed SQL built with snprintf:"; echo "$out"; exit 1
fi
echo "$out" | grep -q "bad.c:9: sqlite3_prepare_v2() in lookup(): SQL argument 'sql'" || {
    echo "check_sql: unexpected report:"; echo "$out"; exit 1; }

perl "$check" "$srcdir/src" "$srcdir/tools" "$srcdir/tests" "$srcdir/fuzz"
