/*
 * storage_pg_watch.c - the change log on PostgreSQL (the watch operations
 * of storage.h).
 *
 * Schema (sql/postgresql/008_watch.sql): kv_changes(version BIGINT PRIMARY
 * KEY, key BYTEA, kind TEXT, expires_at BIGINT) and kv_changes_trimmed.
 *
 * Order with several writers (several nodes on one database): a reader
 * asks for "versions greater than the last one I saw", so a version must
 * never become visible before a smaller one that may still commit. It
 * cannot: every writer locks the rows of meta (the version counter among
 * them) FOR UPDATE right after BEGIN and holds them to COMMIT
 * (storage_pg.c), so the transactions that take versions run one after
 * the other, each taking versions above those of every transaction
 * committed before it. PostgreSQL makes a commit visible
 * (ProcArrayEndTransaction) before it releases its locks, so by the time
 * the next writer holds the counter, the previous one's rows are visible
 * to every new snapshot: any snapshot that sees version v sees every
 * smaller version that will ever exist. (A commit answered "in doubt"
 * changes nothing: its locks are held until the server ends it.)
 */
#include "storage_pg.h"

static const char SQL_APPEND[] =
    "INSERT INTO kv_changes (version, key, kind, expires_at) VALUES ($1, $2, $3, $4)";
static const char SQL_RANGE[] = "SELECT version, key, kind, expires_at FROM kv_changes "
                                "WHERE version > $1 AND version <= $2 ORDER BY version LIMIT $3";
static const char SQL_BOUNDS[] =
    "SELECT (SELECT version FROM kv_changes_trimmed WHERE id = 1), "
    "COALESCE(MIN(version), 0), COALESCE(MAX(version), 0), COUNT(*) FROM kv_changes";
static const char SQL_EDGES[] = "SELECT (SELECT version FROM kv_changes_trimmed WHERE id = 1), "
                                "COALESCE(MAX(version), 0) FROM kv_changes";
static const char SQL_CUTOFF[] =
    "SELECT version FROM kv_changes ORDER BY version DESC LIMIT 1 OFFSET $1";
static const char SQL_TRIM[] = "DELETE FROM kv_changes WHERE version <= $1";
static const char SQL_TRIMMED[] =
    "UPDATE kv_changes_trimmed SET version = GREATEST(version, $1) WHERE id = 1";
static const char SQL_EXPIRED[] =
    "SELECT version, key, 'x'::text, expires_at FROM kv WHERE expires_at <= $1 "
    "ORDER BY expires_at LIMIT $2";
static const char SQL_REMOVE_EXPIRED[] = "DELETE FROM kv WHERE key = $1 AND expires_at <= $2";

static sqlcached_status_t watch_append(store_conn_t *w, int64_t version, char kind, const void *key,
                                       size_t klen, int64_t expires_at)
{
    char k[2] = {kind, 0};
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, version);
    pg_params_bytes(&p, key, klen);
    pg_params_text(&p, k);
    if (expires_at > 0)
        pg_params_int64(&p, expires_at);
    else
        pg_params_null(&p);
    return storage_pg_run(w, SQL_APPEND, &p, NULL);
}

/* Rows (version, key, kind, expires_at) of r, each to fn. */
static sqlcached_status_t each_change(PGresult *r, storage_change_fn fn, void *cls)
{
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        storage_change_row_t row = {.version = pg_conn_col_int64(r, i, 0)};
        row.key = pg_conn_col_bytes(r, i, 1, &row.klen);
        const char *k = pg_conn_col_text(r, i, 2);
        row.kind = k && k[0] ? k[0] : 'p';
        row.expires_at = pg_conn_col_int64(r, i, 3);
        if (!fn(cls, &row)) {
            PQclear(r);
            return SQLCACHED_NOMEM;
        }
    }
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t watch_range(store_conn_t *c, int64_t after, int64_t upto, unsigned limit,
                                      storage_change_fn fn, void *cls)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, after);
    pg_params_int64(&p, upto);
    pg_params_int64(&p, limit);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_RANGE, &p, &r);
    return status == SQLCACHED_OK ? each_change(r, fn, cls) : status;
}

static sqlcached_status_t watch_bounds(store_conn_t *c, storage_watch_bounds_t *out)
{
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_BOUNDS, NULL, &r);
    if (status != SQLCACHED_OK)
        return status;
    if (PQntuples(r) == 1)
        *out = (storage_watch_bounds_t){pg_conn_col_int64(r, 0, 0), pg_conn_col_int64(r, 0, 1),
                                        pg_conn_col_int64(r, 0, 2), pg_conn_col_int64(r, 0, 3)};
    else
        status = SQLCACHED_INTERNAL;
    PQclear(r);
    return status;
}

static sqlcached_status_t watch_edges(store_conn_t *c, int64_t *trimmed, int64_t *newest)
{
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_EDGES, NULL, &r);
    if (status != SQLCACHED_OK)
        return status;
    if (PQntuples(r) == 1) {
        *trimmed = pg_conn_col_int64(r, 0, 0);
        *newest = pg_conn_col_int64(r, 0, 1);
    } else {
        status = SQLCACHED_INTERNAL;
    }
    PQclear(r);
    return status;
}

static sqlcached_status_t watch_trim(store_conn_t *w, int64_t keep, int64_t *removed)
{
    *removed = 0;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, keep);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_CUTOFF, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    int64_t cut = PQntuples(r) == 1 ? pg_conn_col_int64(r, 0, 0) : 0;
    PQclear(r);
    if (cut == 0)
        return SQLCACHED_OK;
    pg_params_init(&p);
    pg_params_int64(&p, cut);
    r = NULL;
    status = storage_pg_run(w, SQL_TRIM, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    *removed = pg_conn_affected(r);
    PQclear(r);
    return storage_pg_run(w, SQL_TRIMMED, &p, NULL);
}

static sqlcached_status_t watch_expired(store_conn_t *w, int64_t now, unsigned limit,
                                        storage_change_fn fn, void *cls)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, now);
    pg_params_int64(&p, limit);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_EXPIRED, &p, &r);
    return status == SQLCACHED_OK ? each_change(r, fn, cls) : status;
}

static sqlcached_status_t watch_remove_expired(store_conn_t *w, const void *key, size_t klen,
                                               int64_t now, bool *removed)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, klen);
    pg_params_int64(&p, now);
    PGresult *r = NULL;
    *removed = false;
    sqlcached_status_t status = storage_pg_run(w, SQL_REMOVE_EXPIRED, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    *removed = pg_conn_affected(r) > 0;
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t watch_replace_logged(store_conn_t *w, const void *key, size_t klen,
                                               const void *value, size_t vlen,
                                               const char *content_type, int64_t version,
                                               int64_t expires_at, int64_t now, int64_t *previous)
{
    return storage_pg_replace_with(w, true, key, klen, value, vlen, content_type, version,
                                   expires_at, now, previous);
}

const storage_watch_ops_t storage_pg_watch = {
    .replace_logged = watch_replace_logged,
    .append = watch_append,
    .range = watch_range,
    .bounds = watch_bounds,
    .edges = watch_edges,
    .trim = watch_trim,
    .expired = watch_expired,
    .remove_expired = watch_remove_expired,
};
