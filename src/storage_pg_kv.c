/*
 * storage_pg_kv.c - key-value rows on PostgreSQL (the kv operations of
 * storage.h).
 *
 * Schema (sql/postgresql/001_kv.sql): kv(key BYTEA PRIMARY KEY, value
 * BYTEA, content_type TEXT, version BIGINT, expires_at BIGINT NULL). BYTEA
 * compares bytewise (memcmp, then the shorter first), as SQLite compares
 * BLOBs, so listing by prefix is the same range scan as on SQLite. Expired
 * rows stay until purged; every read filters them with `now`. Results come
 * back in binary format (pg_conn_run). sliding_ms
 * (sql/postgresql/005_kv_sliding.sql): the sliding TTL of the row, 0 =
 * none; a plain upsert or replace stores 0.
 */
#include <stdlib.h>
#include <string.h>

#include "storage_pg.h"

static const char SQL_GET[] =
    "SELECT value, content_type, version, expires_at, sliding_ms FROM kv WHERE key = $1";
static const char SQL_GET_META[] = "SELECT version, expires_at FROM kv WHERE key = $1";
static const char SQL_UPSERT[] =
    "INSERT INTO kv (key, value, content_type, version, expires_at, sliding_ms) "
    "VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
    "content_type = EXCLUDED.content_type, version = EXCLUDED.version, "
    "expires_at = EXCLUDED.expires_at, sliding_ms = EXCLUDED.sliding_ms";
static const char SQL_EXTEND[] =
    "UPDATE kv SET expires_at = $3 WHERE key = $1 AND version = $2 AND sliding_ms > 0 "
    "AND expires_at > $4 AND expires_at < $3";
/* The upsert, returning the version of the live row it replaced (NULL when
 * none): every part of a statement sees the rows as they were before it,
 * so `old` is the row before this write (earlier writes of the same
 * transaction included). */
static const char SQL_REPLACE[] =
    "WITH old AS (SELECT version FROM kv WHERE key = $1 "
    "AND (expires_at IS NULL OR expires_at > $6)) "
    "INSERT INTO kv (key, value, content_type, version, expires_at) "
    "VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
    "content_type = EXCLUDED.content_type, version = EXCLUDED.version, "
    "expires_at = EXCLUDED.expires_at, sliding_ms = 0 "
    "RETURNING (SELECT version FROM old)";
/* SQL_REPLACE with the change's row (sql/postgresql/008_watch.sql) inserted
 * by the same statement: a plain PUT stays one pipelined statement
 * (storage_pg_watch.c). */
static const char SQL_REPLACE_LOGGED[] =
    "WITH old AS (SELECT version FROM kv WHERE key = $1 "
    "AND (expires_at IS NULL OR expires_at > $6)), "
    "change AS (INSERT INTO kv_changes (version, key, kind, expires_at) "
    "VALUES ($4, $1, 'p', $5)) "
    "INSERT INTO kv (key, value, content_type, version, expires_at) "
    "VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
    "content_type = EXCLUDED.content_type, version = EXCLUDED.version, "
    "expires_at = EXCLUDED.expires_at, sliding_ms = 0 "
    "RETURNING (SELECT version FROM old)";
static const char SQL_DELETE[] = "DELETE FROM kv WHERE key = $1";
static const char SQL_LIST[] = "SELECT key FROM kv WHERE key >= $1 AND key < $2 AND key > $3 "
                               "AND (expires_at IS NULL OR expires_at > $4) ORDER BY key LIMIT $5";
static const char SQL_PURGE[] = "DELETE FROM kv WHERE key IN "
                                "(SELECT key FROM kv WHERE expires_at <= $1 LIMIT $2)";
/* Keyset pages: a scan of millions of keys never holds them all at once. */
static const char SQL_KEYS_AFTER[] = "SELECT key FROM kv WHERE key > $1 ORDER BY key LIMIT $2";
static const char SQL_COUNT[] = "SELECT count(*) FROM kv";

#define SCAN_PAGE 10000

static bool is_live(const PGresult *r, int expires_col, int64_t now)
{
    return pg_conn_col_null(r, 0, expires_col) || pg_conn_col_int64(r, 0, expires_col) > now;
}

static sqlcached_status_t kv_get(store_conn_t *c, const void *key, size_t klen, int64_t now,
                                 storage_kv_row_fn on_row, void *cls)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, klen);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_GET, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    status = SQLCACHED_NOT_FOUND;
    if (PQntuples(r) == 1 && is_live(r, 3, now)) {
        storage_kv_row_t row = {.version = pg_conn_col_int64(r, 0, 2),
                                .expires_at = pg_conn_col_int64(r, 0, 3),
                                .sliding_ms = pg_conn_col_int64(r, 0, 4)};
        row.value = pg_conn_col_bytes(r, 0, 0, &row.value_len);
        row.content_type = pg_conn_col_bytes(r, 0, 1, &row.content_type_len);
        status = on_row(cls, &row);
    }
    PQclear(r);
    return status;
}

static sqlcached_status_t kv_version(store_conn_t *w, const void *key, size_t klen, int64_t now,
                                     int64_t *version)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, klen);
    PGresult *r = NULL;
    *version = 0;
    sqlcached_status_t status = storage_pg_run(w, SQL_GET_META, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    if (PQntuples(r) == 1 && is_live(r, 1, now))
        *version = pg_conn_col_int64(r, 0, 0);
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t kv_upsert_sliding(store_conn_t *w, const void *key, size_t klen,
                                            const void *value, size_t vlen,
                                            const char *content_type, int64_t version,
                                            int64_t expires_at, int64_t sliding_ms)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, klen);
    pg_params_bytes(&p, value, vlen);
    pg_params_text(&p, content_type);
    pg_params_int64(&p, version);
    if (expires_at > 0)
        pg_params_int64(&p, expires_at);
    else
        pg_params_null(&p);
    pg_params_int64(&p, sliding_ms);
    return storage_pg_run(w, SQL_UPSERT, &p, NULL);
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
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, klen);
    pg_params_int64(&p, version);
    pg_params_int64(&p, expires_at);
    pg_params_int64(&p, now);
    PGresult *r = NULL;
    *extended = false;
    sqlcached_status_t status = storage_pg_run(w, SQL_EXTEND, &p, &r);
    if (status == SQLCACHED_OK) {
        *extended = pg_conn_affected(r) > 0;
        PQclear(r);
    }
    return status;
}

/* Where the answer of a pipelined replace goes. */
typedef struct replace_answer {
    int64_t *previous;
    sqlcached_status_t *status; /* the write's (store_conn_t job_status) */
} replace_answer_t;

static void replace_answered(void *cls, pg_conn_rc_t rc, const PGresult *r)
{
    replace_answer_t *a = cls;
    if (rc == PG_CONN_OK)
        *a->previous = PQntuples(r) == 1 ? pg_conn_col_int64(r, 0, 0) : 0; /* NULL reads 0 */
    else if (*a->status == SQLCACHED_OK)
        *a->status = pg_conn_rc_status(rc);
    free(a);
}

/* Inside a write of the group commit the statement is pipelined
 * (pg_conn_run_later): its answer comes with the next statement sent, the
 * COMMIT at the latest; elsewhere it runs at once. */
static sqlcached_status_t kv_replace(store_conn_t *w, const void *key, size_t klen,
                                     const void *value, size_t vlen, const char *content_type,
                                     int64_t version, int64_t expires_at, int64_t now,
                                     int64_t *previous)
{
    return storage_pg_replace_with(w, false, key, klen, value, vlen, content_type, version,
                                   expires_at, now, previous);
}

sqlcached_status_t storage_pg_replace_with(store_conn_t *w, bool logged, const void *key,
                                           size_t klen, const void *value, size_t vlen,
                                           const char *content_type, int64_t version,
                                           int64_t expires_at, int64_t now, int64_t *previous)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, klen);
    pg_params_bytes(&p, value, vlen);
    pg_params_text(&p, content_type);
    pg_params_int64(&p, version);
    if (expires_at > 0)
        pg_params_int64(&p, expires_at);
    else
        pg_params_null(&p);
    pg_params_int64(&p, now);
    if (w->job_status) {
        replace_answer_t *a = malloc(sizeof *a);
        if (!a)
            return SQLCACHED_NOMEM;
        *a = (replace_answer_t){previous, w->job_status};
        *previous = 0;
        pg_conn_rc_t rc =
            logged
                ? pg_conn_run_later(store_pg_conn(w), SQL_REPLACE_LOGGED, &p, replace_answered, a)
                : pg_conn_run_later(store_pg_conn(w), SQL_REPLACE, &p, replace_answered, a);
        if (rc != PG_CONN_OK)
            free(a);
        return pg_conn_rc_status(rc);
    }
    PGresult *r = NULL;
    sqlcached_status_t status = logged ? storage_pg_run(w, SQL_REPLACE_LOGGED, &p, &r)
                                       : storage_pg_run(w, SQL_REPLACE, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    *previous = PQntuples(r) == 1 ? pg_conn_col_int64(r, 0, 0) : 0; /* NULL reads 0 */
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t kv_remove(store_conn_t *w, const void *key, size_t klen)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, klen);
    return storage_pg_run(w, SQL_DELETE, &p, NULL);
}

static sqlcached_status_t kv_list(store_conn_t *r, const void *prefix, size_t plen,
                                  const void *after, size_t alen, int64_t now, unsigned limit,
                                  storage_key_fn on_key, void *cls, bool *has_more)
{
    /* Every key of the prefix sorts below prefix + 0xFF..., and 513 bytes of
     * 0xFF sort above every key when the prefix is empty. */
    unsigned char upper[SQLCACHED_KEY_MAX * 2 + 1];
    if (plen)
        memcpy(upper, prefix, plen);
    memset(upper + plen, 0xff, SQLCACHED_KEY_MAX + 1);
    *has_more = false;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, prefix, plen);
    pg_params_bytes(&p, upper, plen + SQLCACHED_KEY_MAX + 1);
    pg_params_bytes(&p, after, alen);
    pg_params_int64(&p, now);
    pg_params_int64(&p, (int64_t)limit + 1);
    PGresult *res = NULL;
    sqlcached_status_t status = storage_pg_run(r, SQL_LIST, &p, &res);
    if (status != SQLCACHED_OK)
        return status;
    int n = PQntuples(res);
    for (int i = 0; i < n && status == SQLCACHED_OK; i++) {
        if ((unsigned)i == limit) {
            *has_more = true;
            break;
        }
        size_t len;
        const void *k = pg_conn_col_bytes(res, i, 0, &len);
        if (!on_key(cls, k, len))
            status = SQLCACHED_NOMEM;
    }
    PQclear(res);
    return status;
}

static sqlcached_status_t kv_purge_expired(store_conn_t *w, int64_t now, int max_rows, int *purged)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, now);
    pg_params_int64(&p, max_rows);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_PURGE, &p, &r);
    if (status == SQLCACHED_OK) {
        *purged = (int)pg_conn_affected(r);
        PQclear(r);
    }
    return status;
}

static sqlcached_status_t kv_scan_keys(store_conn_t *r, storage_key_fn on_key, void *cls)
{
    unsigned char last[SQLCACHED_KEY_MAX];
    size_t last_len = 0;
    for (;;) {
        pg_params_t p;
        pg_params_init(&p);
        pg_params_bytes(&p, last, last_len);
        pg_params_int64(&p, SCAN_PAGE);
        PGresult *res = NULL;
        sqlcached_status_t status = storage_pg_run(r, SQL_KEYS_AFTER, &p, &res);
        if (status != SQLCACHED_OK)
            return status;
        int n = PQntuples(res);
        for (int i = 0; i < n && status == SQLCACHED_OK; i++) {
            size_t len;
            const void *k = pg_conn_col_bytes(res, i, 0, &len);
            if (!on_key(cls, k, len))
                status = SQLCACHED_NOMEM;
            else if (i == n - 1 && len <= sizeof last)
                memcpy(last, k, last_len = len);
        }
        PQclear(res);
        if (status != SQLCACHED_OK || n < SCAN_PAGE)
            return status;
    }
}

static sqlcached_status_t kv_count_bound(store_conn_t *r, int64_t *count)
{
    PGresult *res = NULL;
    sqlcached_status_t status = storage_pg_run(r, SQL_COUNT, NULL, &res);
    if (status == SQLCACHED_OK) {
        *count = pg_conn_col_int64(res, 0, 0);
        PQclear(res);
    }
    return status;
}

const storage_kv_ops_t storage_pg_kv = {
    .get = kv_get,
    .version = kv_version,
    .upsert = kv_upsert,
    .replace = kv_replace,
    .remove = kv_remove,
    .list = kv_list,
    .purge_expired = kv_purge_expired,
    .scan_keys = kv_scan_keys,
    .count_bound = kv_count_bound,
    .upsert_sliding = kv_upsert_sliding,
    .extend = kv_extend,
};
