/*
 * storage_sqlite_lease.c - lease rows on SQLite (the lease operations of
 * storage.h).
 *
 * Schema (sql/sqlite/003_leases.sql): leases(name TEXT PRIMARY KEY, owner, token,
 * count, expires_at). Every change guarded by its owner is one conditional
 * statement (UPDATE/DELETE ... WHERE owner = ? AND expires_at > now ...
 * RETURNING the row), the way Redis does a compare-and-delete in Lua, so
 * the check and the change cannot come apart.
 */
#include <string.h>

#include "storage_sqlite.h"

static const char SQL_GET[] =
    "SELECT owner, token, count, expires_at FROM leases WHERE name = ?1 AND expires_at > ?2";
static const char SQL_COUNT_LIVE[] = "SELECT COUNT(*) FROM leases WHERE expires_at > ?1";
static const char SQL_PUT[] =
    "INSERT INTO leases (name, owner, token, count, expires_at) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, token = excluded.token, "
    "count = excluded.count, expires_at = excluded.expires_at";
static const char SQL_REENTER[] = "UPDATE leases SET count = count + 1, expires_at = ?4 "
                                  "WHERE name = ?1 AND owner = ?2 AND expires_at > ?3 "
                                  "RETURNING owner, token, count, expires_at";
static const char SQL_RENEW[] = "UPDATE leases SET expires_at = ?4 "
                                "WHERE name = ?1 AND owner = ?2 AND expires_at > ?3 "
                                "RETURNING owner, token, count, expires_at";
static const char SQL_RELEASE_ONE[] =
    "UPDATE leases SET count = count - 1 "
    "WHERE name = ?1 AND owner = ?2 AND expires_at > ?3 AND count > 1 "
    "RETURNING owner, token, count, expires_at";
static const char SQL_RELEASE_LAST[] =
    "DELETE FROM leases WHERE name = ?1 AND owner = ?2 AND expires_at > ?3 AND count = 1 "
    "RETURNING owner, token, 0, expires_at";
/* The releases again, for one holding only (its token): lease_release_grant(). */
static const char SQL_RELEASE_ONE_TOKEN[] =
    "UPDATE leases SET count = count - 1 "
    "WHERE name = ?1 AND owner = ?2 AND expires_at > ?3 AND token = ?4 AND count > 1 "
    "RETURNING owner, token, count, expires_at";
static const char SQL_RELEASE_LAST_TOKEN[] =
    "DELETE FROM leases "
    "WHERE name = ?1 AND owner = ?2 AND expires_at > ?3 AND token = ?4 AND count = 1 "
    "RETURNING owner, token, 0, expires_at";
static const char SQL_DELETE_EXPIRED[] = "DELETE FROM leases WHERE name = ?1 AND expires_at <= ?2";
static const char SQL_EXPIRED[] =
    "SELECT name FROM leases WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2";

static void bind_text(sqlite3_stmt *st, int idx, const char *p, size_t n)
{
    sqlite3_bind_text(st, idx, p, (int)n, SQLITE_STATIC);
}

static void copy_text(char *dst, size_t *len, size_t max, const char *src, size_t n)
{
    if (!src || n > max)
        n = 0, src = "";
    memmove(dst, src, n); /* src may be dst: a row of the lease being filled */
    dst[n] = '\0';
    *len = n;
}

/* Fill l from a row (owner, token, count, expires_at) of the lease name. */
static void lease_from_row(sqlcached_lease_t *l, const char *name, size_t n, sqlite3_stmt *st)
{
    copy_text(l->name, &l->name_len, SQLCACHED_LEASE_NAME_MAX, name, n);
    copy_text(l->owner, &l->owner_len, SQLCACHED_LEASE_OWNER_MAX,
              (const char *)sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    l->token = sqlite3_column_int64(st, 1);
    l->count = sqlite3_column_int64(st, 2);
    l->expires_at = sqlite3_column_int64(st, 3);
}

/* Step a statement that returns at most one lease row of name into *out. */
static sqlcached_status_t step_row(sqlite3_stmt *st, const char *name, size_t n,
                                   sqlcached_lease_t *out)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        lease_from_row(out, name, n, st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return SQLCACHED_OK;
    return rc == SQLITE_DONE ? SQLCACHED_NOT_FOUND : store_status(rc);
}

static sqlcached_status_t step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t lease_get(store_conn_t *c, const char *name, size_t n, int64_t live_at,
                                    sqlcached_lease_t *out)
{
    sqlite3_stmt *st = store_stmt(c, SQL_GET);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_text(st, 1, name, n);
    sqlite3_bind_int64(st, 2, live_at);
    return step_row(st, name, n, out);
}

static sqlcached_status_t lease_put(store_conn_t *w, const sqlcached_lease_t *l)
{
    sqlite3_stmt *st = store_stmt(w, SQL_PUT);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_text(st, 1, l->name, l->name_len);
    bind_text(st, 2, l->owner, l->owner_len);
    sqlite3_bind_int64(st, 3, l->token);
    sqlite3_bind_int64(st, 4, l->count);
    sqlite3_bind_int64(st, 5, l->expires_at);
    return step_done(st);
}

static sqlcached_status_t lease_change(store_conn_t *w, storage_lease_change_t change,
                                       const char *name, size_t n, const char *owner, size_t on,
                                       int64_t now, int64_t expires_at, int64_t token,
                                       sqlcached_lease_t *out)
{
    sqlite3_stmt *st = NULL;
    bool by_token = token > 0;
    switch (change) {
    case STORAGE_LEASE_REENTER:
        st = store_stmt(w, SQL_REENTER);
        break;
    case STORAGE_LEASE_RENEW:
        st = store_stmt(w, SQL_RENEW);
        break;
    case STORAGE_LEASE_RELEASE_ONE:
        st = store_stmt(w, by_token ? SQL_RELEASE_ONE_TOKEN : SQL_RELEASE_ONE);
        break;
    case STORAGE_LEASE_RELEASE_LAST:
        st = store_stmt(w, by_token ? SQL_RELEASE_LAST_TOKEN : SQL_RELEASE_LAST);
        break;
    }
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_text(st, 1, name, n);
    bind_text(st, 2, owner, on);
    sqlite3_bind_int64(st, 3, now);
    if (change == STORAGE_LEASE_REENTER || change == STORAGE_LEASE_RENEW)
        sqlite3_bind_int64(st, 4, expires_at);
    else if (by_token)
        sqlite3_bind_int64(st, 4, token);
    return step_row(st, name, n, out);
}

static sqlcached_status_t lease_delete_expired(store_conn_t *w, const char *name, size_t n,
                                               int64_t now)
{
    sqlite3_stmt *st = store_stmt(w, SQL_DELETE_EXPIRED);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_text(st, 1, name, n);
    sqlite3_bind_int64(st, 2, now);
    return step_done(st);
}

static sqlcached_status_t lease_expired(store_conn_t *w, int64_t now, int limit,
                                        storage_key_fn on_name, void *cls)
{
    sqlite3_stmt *st = store_stmt(w, SQL_EXPIRED);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, limit);
    int rc;
    sqlcached_status_t status = SQLCACHED_OK;
    while (status == SQLCACHED_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        if (!on_name(cls, sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0)))
            status = SQLCACHED_NOMEM;
    if (status == SQLCACHED_OK && rc != SQLITE_DONE)
        status = store_status(rc);
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t lease_count_live(store_conn_t *r, int64_t now, uint64_t *count)
{
    sqlite3_stmt *st = store_stmt(r, SQL_COUNT_LIVE);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *count = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLCACHED_OK : store_status(rc);
}

const storage_lease_ops_t storage_sqlite_lease = {
    .get = lease_get,
    .put = lease_put,
    .change = lease_change,
    .delete_expired = lease_delete_expired,
    .expired = lease_expired,
    .count_live = lease_count_live,
};
