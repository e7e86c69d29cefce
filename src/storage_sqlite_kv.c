/*
 * storage_sqlite_kv.c - key-value rows on SQLite (the kv operations of
 * storage.h).
 *
 * Schema (sql/sqlite/001_kv.sql): kv(key BLOB PRIMARY KEY, value BLOB, content_type
 * TEXT, version INTEGER, expires_at INTEGER NULL). Keys are BLOBs, so they
 * sort bytewise; listing by prefix is a range scan [prefix, prefix + 0xFF
 * x (KEY_MAX + 1)), which holds every key that starts with the prefix.
 * Expired rows stay until purged; every read filters them with `now`.
 * sliding_ms (sql/sqlite/005_kv_sliding.sql): the sliding TTL of the row, 0
 * = none; a plain upsert stores 0.
 */
#include <string.h>

#include "storage_sqlite.h"

static const char SQL_GET[] =
    "SELECT value, content_type, version, expires_at, sliding_ms FROM kv WHERE key = ?1";
static const char SQL_GET_META[] = "SELECT version, expires_at FROM kv WHERE key = ?1";
static const char SQL_UPSERT[] =
    "INSERT INTO kv (key, value, content_type, version, expires_at, sliding_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
    "content_type = excluded.content_type, version = excluded.version, "
    "expires_at = excluded.expires_at, sliding_ms = excluded.sliding_ms";
static const char SQL_EXTEND[] =
    "UPDATE kv SET expires_at = ?3 WHERE key = ?1 AND version = ?2 AND sliding_ms > 0 "
    "AND expires_at > ?4 AND expires_at < ?3";
static const char SQL_DELETE[] = "DELETE FROM kv WHERE key = ?1";
static const char SQL_LIST[] = "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 AND key > ?3 "
                               "AND (expires_at IS NULL OR expires_at > ?4) ORDER BY key LIMIT ?5";
static const char SQL_PURGE[] = "DELETE FROM kv WHERE rowid IN "
                                "(SELECT rowid FROM kv WHERE expires_at <= ?1 LIMIT ?2)";
static const char SQL_ALL_KEYS[] = "SELECT key FROM kv";
/* rowids only grow (no row is ever given a smaller one), so the largest
 * bounds the row count; an index lookup, not a scan. */
static const char SQL_COUNT_BOUND[] = "SELECT COALESCE(MAX(rowid), 0) FROM kv";

static bool is_live(sqlite3_stmt *st, int expires_col, int64_t now)
{
    if (sqlite3_column_type(st, expires_col) == SQLITE_NULL)
        return true;
    return sqlite3_column_int64(st, expires_col) > now;
}

static sqlcached_status_t kv_get(store_conn_t *c, const void *key, size_t klen, int64_t now,
                                 storage_kv_row_fn on_row, void *cls)
{
    sqlite3_stmt *st = store_stmt(c, SQL_GET);
    if (!st)
        return SQLCACHED_INTERNAL;
    store_bind_bytes(st, 1, key, klen);
    int rc = sqlite3_step(st);
    sqlcached_status_t status = SQLCACHED_NOT_FOUND;
    if (rc == SQLITE_ROW && is_live(st, 3, now)) {
        const char *ct = (const char *)sqlite3_column_text(st, 1);
        storage_kv_row_t row = {
            .value = sqlite3_column_blob(st, 0),
            .value_len = (size_t)sqlite3_column_bytes(st, 0),
            .content_type = ct ? ct : "",
            .content_type_len = ct ? (size_t)sqlite3_column_bytes(st, 1) : 0,
            .version = sqlite3_column_int64(st, 2),
            .expires_at = sqlite3_column_int64(st, 3),
            .sliding_ms = sqlite3_column_int64(st, 4),
        };
        status = on_row(cls, &row);
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        status = store_status(rc);
    }
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t kv_version(store_conn_t *w, const void *key, size_t klen, int64_t now,
                                     int64_t *version)
{
    sqlite3_stmt *st = store_stmt(w, SQL_GET_META);
    if (!st)
        return SQLCACHED_INTERNAL;
    store_bind_bytes(st, 1, key, klen);
    int rc = sqlite3_step(st);
    *version = 0;
    if (rc == SQLITE_ROW && is_live(st, 1, now))
        *version = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t kv_upsert_sliding(store_conn_t *w, const void *key, size_t klen,
                                            const void *value, size_t vlen,
                                            const char *content_type, int64_t version,
                                            int64_t expires_at, int64_t sliding_ms)
{
    sqlite3_stmt *st = store_stmt(w, SQL_UPSERT);
    if (!st)
        return SQLCACHED_INTERNAL;
    store_bind_bytes(st, 1, key, klen);
    store_bind_bytes(st, 2, value, vlen);
    sqlite3_bind_text(st, 3, content_type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, version);
    if (expires_at > 0)
        sqlite3_bind_int64(st, 5, expires_at);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_int64(st, 6, sliding_ms);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t kv_upsert(store_conn_t *w, const void *key, size_t klen,
                                    const void *value, size_t vlen, const char *content_type,
                                    int64_t version, int64_t expires_at)
{
    return kv_upsert_sliding(w, key, klen, value, vlen, content_type, version, expires_at, 0);
}

static sqlcached_status_t kv_extend(store_conn_t *w, const void *key, size_t klen, int64_t version,
                                    int64_t now, int64_t expires_at, bool *extended)
{
    *extended = false;
    sqlite3_stmt *st = store_stmt(w, SQL_EXTEND);
    if (!st)
        return SQLCACHED_INTERNAL;
    store_bind_bytes(st, 1, key, klen);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_int64(st, 3, expires_at);
    sqlite3_bind_int64(st, 4, now);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return store_status(rc);
    *extended = sqlite3_changes(store_conn_db(w)) > 0;
    return SQLCACHED_OK;
}

static sqlcached_status_t kv_remove(store_conn_t *w, const void *key, size_t klen)
{
    sqlite3_stmt *st = store_stmt(w, SQL_DELETE);
    if (!st)
        return SQLCACHED_INTERNAL;
    store_bind_bytes(st, 1, key, klen);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

/* Step st, handing column 0 of each row to on_key, up to `limit` rows (0 =
 * all); *has_more (may be NULL) when a row beyond the limit exists. */
static sqlcached_status_t each_key(sqlite3_stmt *st, unsigned limit, storage_key_fn on_key,
                                   void *cls, bool *has_more)
{
    unsigned n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (limit && n == limit) {
            *has_more = true;
            return SQLCACHED_OK;
        }
        if (!on_key(cls, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0)))
            return SQLCACHED_NOMEM;
        n++;
    }
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t kv_list(store_conn_t *r, const void *prefix, size_t plen,
                                  const void *after, size_t alen, int64_t now, unsigned limit,
                                  storage_key_fn on_key, void *cls, bool *has_more)
{
    /* Every key of the prefix sorts below prefix + 0xFF..., and 513 bytes of
     * 0xFF sort above every key when the prefix is empty. */
    unsigned char upper[SQLCACHED_KEY_MAX * 2 + 1];
    if (plen) /* prefix may be NULL when empty: memcpy(_, NULL, 0) is undefined */
        memcpy(upper, prefix, plen);
    memset(upper + plen, 0xff, SQLCACHED_KEY_MAX + 1);
    *has_more = false;
    sqlite3_stmt *st = store_stmt(r, SQL_LIST);
    if (!st)
        return SQLCACHED_INTERNAL;
    store_bind_bytes(st, 1, prefix, plen);
    store_bind_bytes(st, 2, upper, plen + SQLCACHED_KEY_MAX + 1);
    store_bind_bytes(st, 3, after, alen);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int(st, 5, (int)limit + 1);
    sqlcached_status_t status = each_key(st, limit, on_key, cls, has_more);
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t kv_purge_expired(store_conn_t *w, int64_t now, int max_rows, int *purged)
{
    sqlite3_stmt *st = store_stmt(w, SQL_PURGE);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, max_rows);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return store_status(rc);
    *purged = sqlite3_changes(store_conn_db(w));
    return SQLCACHED_OK;
}

static sqlcached_status_t kv_scan_keys(store_conn_t *r, storage_key_fn on_key, void *cls)
{
    sqlite3_stmt *st = store_stmt(r, SQL_ALL_KEYS);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlcached_status_t status = each_key(st, 0, on_key, cls, NULL);
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t kv_count_bound(store_conn_t *r, int64_t *count)
{
    sqlite3_stmt *st = store_stmt(r, SQL_COUNT_BOUND);
    if (!st)
        return SQLCACHED_INTERNAL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *count = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLCACHED_OK : store_status(rc);
}

const storage_kv_ops_t storage_sqlite_kv = {
    .get = kv_get,
    .version = kv_version,
    .upsert = kv_upsert,
    .remove = kv_remove,
    .list = kv_list,
    .purge_expired = kv_purge_expired,
    .scan_keys = kv_scan_keys,
    .count_bound = kv_count_bound,
    .upsert_sliding = kv_upsert_sliding,
    .extend = kv_extend,
};
