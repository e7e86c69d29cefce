/*
 * storage_pg_lease.c - lease rows on PostgreSQL (the lease operations of
 * storage.h).
 *
 * Schema (sql/postgresql/003_leases.sql): leases(name, owner, token, count,
 * expires_at) as on SQLite. Every change guarded by its owner is one
 * conditional statement (UPDATE/DELETE ... WHERE owner = $2 AND expires_at
 * > $3 ... RETURNING the row), so the check and the change cannot come
 * apart, and the row lock it takes keeps it so across connections.
 * Names and owners travel as text with their length (pg_params_bytes): the
 * domain accepts no NUL in them.
 */
#include <string.h>

#include "storage_pg.h"

static const char SQL_GET[] =
    "SELECT owner, token, count, expires_at FROM leases WHERE name = $1 AND expires_at > $2";
static const char SQL_COUNT_LIVE[] = "SELECT count(*) FROM leases WHERE expires_at > $1";
static const char SQL_PUT[] =
    "INSERT INTO leases (name, owner, token, count, expires_at) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, token = EXCLUDED.token, "
    "count = EXCLUDED.count, expires_at = EXCLUDED.expires_at";
static const char SQL_REENTER[] = "UPDATE leases SET count = count + 1, expires_at = $4 "
                                  "WHERE name = $1 AND owner = $2 AND expires_at > $3 "
                                  "RETURNING owner, token, count, expires_at";
static const char SQL_RENEW[] = "UPDATE leases SET expires_at = $4 "
                                "WHERE name = $1 AND owner = $2 AND expires_at > $3 "
                                "RETURNING owner, token, count, expires_at";
static const char SQL_RELEASE_ONE[] =
    "UPDATE leases SET count = count - 1 "
    "WHERE name = $1 AND owner = $2 AND expires_at > $3 AND count > 1 "
    "RETURNING owner, token, count, expires_at";
static const char SQL_RELEASE_LAST[] =
    "DELETE FROM leases WHERE name = $1 AND owner = $2 AND expires_at > $3 AND count = 1 "
    "RETURNING owner, token, 0, expires_at";
/* The releases again, for one holding only (its token): lease_release_grant(). */
static const char SQL_RELEASE_ONE_TOKEN[] =
    "UPDATE leases SET count = count - 1 "
    "WHERE name = $1 AND owner = $2 AND expires_at > $3 AND token = $4 AND count > 1 "
    "RETURNING owner, token, count, expires_at";
static const char SQL_RELEASE_LAST_TOKEN[] =
    "DELETE FROM leases "
    "WHERE name = $1 AND owner = $2 AND expires_at > $3 AND token = $4 AND count = 1 "
    "RETURNING owner, token, 0, expires_at";
static const char SQL_DELETE_EXPIRED[] = "DELETE FROM leases WHERE name = $1 AND expires_at <= $2";
static const char SQL_EXPIRED[] =
    "SELECT name FROM leases WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2";

static void copy_text(char *dst, size_t *len, size_t max, const char *src, size_t n)
{
    if (!src || n > max)
        n = 0, src = "";
    memmove(dst, src, n); /* src may be dst: a row of the lease being filled */
    dst[n] = '\0';
    *len = n;
}

/* Step: the first row of r (owner, token, count, expires_at) into *out. */
static sqlcached_status_t lease_from_result(PGresult *r, const char *name, size_t n,
                                            sqlcached_lease_t *out)
{
    if (PQntuples(r) < 1) {
        PQclear(r);
        return SQLCACHED_NOT_FOUND;
    }
    size_t on;
    const char *owner = pg_conn_col_bytes(r, 0, 0, &on);
    copy_text(out->name, &out->name_len, SQLCACHED_LEASE_NAME_MAX, name, n);
    copy_text(out->owner, &out->owner_len, SQLCACHED_LEASE_OWNER_MAX, owner, on);
    out->token = pg_conn_col_int64(r, 0, 1);
    out->count = pg_conn_col_int64(r, 0, 2);
    out->expires_at = pg_conn_col_int64(r, 0, 3);
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t lease_get(store_conn_t *c, const char *name, size_t n, int64_t live_at,
                                    sqlcached_lease_t *out)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, name, n);
    pg_params_int64(&p, live_at);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_GET, &p, &r);
    return status == SQLCACHED_OK ? lease_from_result(r, name, n, out) : status;
}

static sqlcached_status_t lease_put(store_conn_t *w, const sqlcached_lease_t *l)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, l->name, l->name_len);
    pg_params_bytes(&p, l->owner, l->owner_len);
    pg_params_int64(&p, l->token);
    pg_params_int64(&p, l->count);
    pg_params_int64(&p, l->expires_at);
    return storage_pg_run(w, SQL_PUT, &p, NULL);
}

static sqlcached_status_t lease_change(store_conn_t *w, storage_lease_change_t change,
                                       const char *name, size_t n, const char *owner, size_t on,
                                       int64_t now, int64_t expires_at, int64_t token,
                                       sqlcached_lease_t *out)
{
    bool by_token = token > 0;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, name, n);
    pg_params_bytes(&p, owner, on);
    pg_params_int64(&p, now);
    if (change == STORAGE_LEASE_REENTER || change == STORAGE_LEASE_RENEW)
        pg_params_int64(&p, expires_at);
    else if (by_token)
        pg_params_int64(&p, token);
    PGresult *r = NULL;
    sqlcached_status_t status = SQLCACHED_INTERNAL;
    switch (change) {
    case STORAGE_LEASE_REENTER:
        status = storage_pg_run(w, SQL_REENTER, &p, &r);
        break;
    case STORAGE_LEASE_RENEW:
        status = storage_pg_run(w, SQL_RENEW, &p, &r);
        break;
    case STORAGE_LEASE_RELEASE_ONE:
        status = storage_pg_run(w, by_token ? SQL_RELEASE_ONE_TOKEN : SQL_RELEASE_ONE, &p, &r);
        break;
    case STORAGE_LEASE_RELEASE_LAST:
        status = storage_pg_run(w, by_token ? SQL_RELEASE_LAST_TOKEN : SQL_RELEASE_LAST, &p, &r);
        break;
    }
    return status == SQLCACHED_OK ? lease_from_result(r, name, n, out) : status;
}

static sqlcached_status_t lease_delete_expired(store_conn_t *w, const char *name, size_t n,
                                               int64_t now)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, name, n);
    pg_params_int64(&p, now);
    return storage_pg_run(w, SQL_DELETE_EXPIRED, &p, NULL);
}

static sqlcached_status_t lease_expired(store_conn_t *w, int64_t now, int limit,
                                        storage_key_fn on_name, void *cls)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, now);
    pg_params_int64(&p, limit);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_EXPIRED, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    int rows = PQntuples(r);
    for (int i = 0; i < rows && status == SQLCACHED_OK; i++) {
        size_t len;
        const void *name = pg_conn_col_bytes(r, i, 0, &len);
        if (!on_name(cls, name, len))
            status = SQLCACHED_NOMEM;
    }
    PQclear(r);
    return status;
}

static sqlcached_status_t lease_count_live(store_conn_t *r, int64_t now, uint64_t *count)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, now);
    PGresult *res = NULL;
    sqlcached_status_t status = storage_pg_run(r, SQL_COUNT_LIVE, &p, &res);
    if (status == SQLCACHED_OK) {
        *count = (uint64_t)pg_conn_col_int64(res, 0, 0);
        PQclear(res);
    }
    return status;
}

const storage_lease_ops_t storage_pg_lease = {
    .get = lease_get,
    .put = lease_put,
    .change = lease_change,
    .delete_expired = lease_delete_expired,
    .expired = lease_expired,
    .count_live = lease_count_live,
};
