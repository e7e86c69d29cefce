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

# The same for libpq: PQexec only with constant text, and PQprepare /
# PQexecParams never with text built at run time.
cat > "$tmp/bad_pg.c" <<'C'
static const char SQL_GET[] = "SELECT v FROM kv WHERE key = $1";
int lookup(PGconn *conn, const char *key)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT v FROM kv WHERE key = '%s'", key);
    PQclear(PQexec(conn, "BEGIN"));
    PQclear(PQprepare(conn, "s0", SQL_GET, 1, NULL));
    PQclear(PQexec(conn, sql));
    PQclear(PQprepare(conn, "s1", sql, 0, NULL));
    PQclear(PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1));
    return 0;
}
C
if out=$(perl "$check" "$tmp/bad_pg.c"); then
    echo "check_sql: scripts/check-sql missed libpq SQL built with snprintf:"; echo "$out"; exit 1
fi
for want in "bad_pg.c:8: PQexec() in lookup(): SQL argument 'sql'" \
            "bad_pg.c:9: PQprepare() in lookup(): SQL argument 'sql'" \
            "bad_pg.c:10: PQexecParams() in lookup(): SQL argument 'sql'" \
            "check-sql: 3 of 5 SQL calls"; do
    echo "$out" | grep -qF "$want" || { echo "check_sql: expected '$want' in:"; echo "$out"; exit 1; }
done

perl "$check" "$srcdir/src" "$srcdir/tools" "$srcdir/tests" "$srcdir/tests/reliability" \
    "$srcdir/fuzz"
