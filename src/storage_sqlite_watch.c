/*
 * storage_sqlite_watch.c - the change log on SQLite (the watch operations
 * of storage.h).
 *
 * Schema (sql/sqlite/008_watch.sql): kv_changes(version INTEGER PRIMARY
 * KEY, key, kind, expires_at) and kv_changes_trimmed (one row). version is
 * the rowid, so ranges and bounds are lookups in the table's own b-tree.
 * One writer connection appends; readers see whole commits (WAL).
 */
#include "storage_sqlite.h"

static const char SQL_APPEND[] =
    "INSERT INTO kv_changes (version, key, kind, expires_at) VALUES (?1, ?2, ?3, ?4)";
static const char SQL_RANGE[] = "SELECT version, key, kind, expires_at FROM kv_changes "
                                "WHERE version > ?1 AND version <= ?2 ORDER BY version LIMIT ?3";
static const char SQL_BOUNDS[] =
    "SELECT (SELECT version FROM kv_changes_trimmed WHERE id = 1), "
    "COALESCE(MIN(version), 0), COALESCE(MAX(version), 0), COUNT(*) FROM kv_changes";
static const char SQL_EDGES[] = "SELECT (SELECT version FROM kv_changes_trimmed WHERE id = 1), "
                                "COALESCE(MAX(version), 0) FROM kv_changes";
static const char SQL_CUTOFF[] =
    "SELECT version FROM kv_changes ORDER BY version DESC LIMIT 1 OFFSET ?1";
static const char SQL_TRIM[] = "DELETE FROM kv_changes WHERE version <= ?1";
static const char SQL_TRIMMED[] =
    "UPDATE kv_changes_trimmed SET version = MAX(version, ?1) WHERE id = 1";
static const char SQL_EXPIRED[] = "SELECT key, version, expires_at FROM kv WHERE expires_at <= ?1 "
                                  "ORDER BY expires_at LIMIT ?2";
static const char SQL_REMOVE_EXPIRED[] = "DELETE FROM kv WHERE key = ?1 AND expires_at <= ?2";

static sqlcached_status_t step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t watch_append(store_conn_t *w, int64_t version, char kind, const void *key,
                                       size_t klen, int64_t expires_at)
{
    sqlite3_stmt *st = store_stmt(w, SQL_APPEND);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, version);
    store_bind_bytes(st, 2, key, klen);
    sqlite3_bind_text(st, 3, &kind, 1, SQLITE_TRANSIENT);
    if (expires_at > 0)
        sqlite3_bind_int64(st, 4, expires_at);
    return step_done(st);
}

/* Rows of a statement selecting (key, version, expires_at) or (version,
 * key, kind, expires_at), each to fn. */
static sqlcached_status_t each_change(sqlite3_stmt *st, bool expired, storage_change_fn fn,
                                      void *cls)
{
    int rc;
    sqlcached_status_t status = SQLCACHED_OK;
    while (status == SQLCACHED_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        storage_change_row_t row = {.kind = 'x'};
        int kc = expired ? 0 : 1;
        row.version = sqlite3_column_int64(st, expired ? 1 : 0);
        row.key = sqlite3_column_blob(st, kc);
        row.klen = (size_t)sqlite3_column_bytes(st, kc);
        if (!expired) {
            const unsigned char *k = sqlite3_column_text(st, 2);
            row.kind = k && k[0] ? (char)k[0] : 'p';
        }
        row.expires_at = sqlite3_column_int64(st, 3 - (expired ? 1 : 0));
        if (!fn(cls, &row))
            status = SQLCACHED_NOMEM;
    }
    if (status == SQLCACHED_OK && rc != SQLITE_DONE)
        status = store_status(rc);
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t watch_range(store_conn_t *r, int64_t after, int64_t upto, unsigned limit,
                                      storage_change_fn fn, void *cls)
{
    sqlite3_stmt *st = store_stmt(r, SQL_RANGE);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, upto);
    sqlite3_bind_int64(st, 3, limit);
    return each_change(st, false, fn, cls);
}

static sqlcached_status_t watch_bounds(store_conn_t *r, storage_watch_bounds_t *out)
{
    sqlite3_stmt *st = store_stmt(r, SQL_BOUNDS);
    if (!st)
        return SQLCACHED_INTERNAL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = (storage_watch_bounds_t){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                        sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3)};
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t watch_edges(store_conn_t *r, int64_t *trimmed, int64_t *newest)
{
    sqlite3_stmt *st = store_stmt(r, SQL_EDGES);
    if (!st)
        return SQLCACHED_INTERNAL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *trimmed = sqlite3_column_int64(st, 0);
        *newest = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t watch_trim(store_conn_t *w, int64_t keep, int64_t *removed)
{
    *removed = 0;
    sqlite3_stmt *st = store_stmt(w, SQL_CUTOFF);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, keep);
    int rc = sqlite3_step(st);
    int64_t cut = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
    st = store_stmt(w, SQL_TRIM);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, cut);
    sqlcached_status_t status = step_done(st);
    if (status != SQLCACHED_OK)
        return status;
    *removed = sqlite3_changes(store_conn_db(w));
    st = store_stmt(w, SQL_TRIMMED);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, cut);
    return step_done(st);
}

static sqlcached_status_t watch_expired(store_conn_t *w, int64_t now, unsigned limit,
                                        storage_change_fn fn, void *cls)
{
    sqlite3_stmt *st = store_stmt(w, SQL_EXPIRED);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, limit);
    return each_change(st, true, fn, cls);
}

static sqlcached_status_t watch_remove_expired(store_conn_t *w, const void *key, size_t klen,
                                               int64_t now, bool *removed)
{
    sqlite3_stmt *st = store_stmt(w, SQL_REMOVE_EXPIRED);
    if (!st)
        return SQLCACHED_INTERNAL;
    store_bind_bytes(st, 1, key, klen);
    sqlite3_bind_int64(st, 2, now);
    sqlcached_status_t status = step_done(st);
    *removed = status == SQLCACHED_OK && sqlite3_changes(store_conn_db(w)) > 0;
    return status;
}

const storage_watch_ops_t storage_sqlite_watch = {
    .append = watch_append,
    .range = watch_range,
    .bounds = watch_bounds,
    .edges = watch_edges,
    .trim = watch_trim,
    .expired = watch_expired,
    .remove_expired = watch_remove_expired,
};
