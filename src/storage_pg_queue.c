/*
 * storage_pg_queue.c - delay-queue rows on PostgreSQL (the queue
 * operations of storage.h).
 *
 * Schema (sql/postgresql/006_queue.sql): jobs as on SQLite. Many nodes'
 * writers share the table, so a claim reads the due rows FOR UPDATE SKIP
 * LOCKED (a row another claim has locked is left to it, and the rows read
 * stay locked to COMMIT), then changes each with a conditional UPDATE
 * (still due, still under the token it was read with): one job is never
 * handed to two claimers. Queue names, ids, workers and payloads travel as
 * text with their length (pg_params_bytes); the domain accepts no NUL in
 * them.
 */
#include <string.h>

#include "storage_pg.h"

static const char SQL_INSERT[] =
    "INSERT INTO jobs (queue, id, payload, run_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (queue, id) DO NOTHING";
static const char SQL_GET[] = "SELECT seq, queue, id, payload, run_at, attempts, claim_token, "
                              "(CASE WHEN worker IS NULL THEN 0 ELSE 1 END)::bigint "
                              "FROM jobs WHERE queue = $1 AND id = $2";
static const char SQL_DUE[] =
    "SELECT seq, claim_token, (CASE WHEN worker IS NULL THEN 0 ELSE 1 END)::bigint "
    "FROM jobs WHERE queue = $1 AND run_at <= $2 "
    "ORDER BY run_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED";
static const char SQL_TAKE[] =
    "UPDATE jobs SET worker = $5, claim_token = $4, run_at = $6, attempts = attempts + 1 "
    "WHERE seq = $1 AND claim_token = $2 AND run_at <= $3 "
    "RETURNING seq, queue, id, payload, run_at, attempts, claim_token, "
    "(CASE WHEN worker IS NULL THEN 0 ELSE 1 END)::bigint";
static const char SQL_ACK[] = "DELETE FROM jobs WHERE queue = $1 AND id = $2 AND claim_token = $3 "
                              "AND worker IS NOT NULL AND run_at > $4";
static const char SQL_NACK[] =
    "UPDATE jobs SET worker = NULL, run_at = $5 WHERE queue = $1 AND id = $2 "
    "AND claim_token = $3 AND worker IS NOT NULL AND run_at > $4";
static const char SQL_REMOVE[] = "DELETE FROM jobs WHERE queue = $1 AND id = $2";
static const char SQL_NEXT_DUE[] = "SELECT min(run_at) FROM jobs WHERE queue = $1";
static const char SQL_COUNTS[] =
    "SELECT count(*) FILTER (WHERE worker IS NULL AND run_at > $2), "
    "count(*) FILTER (WHERE run_at <= $2), "
    "count(*) FILTER (WHERE worker IS NOT NULL AND run_at > $2) FROM jobs WHERE queue = $1";
static const char SQL_COUNTS_ALL[] =
    "SELECT count(*) FILTER (WHERE worker IS NULL AND run_at > $1), "
    "count(*) FILTER (WHERE run_at <= $1), "
    "count(*) FILTER (WHERE worker IS NOT NULL AND run_at > $1) FROM jobs";

static void params_key(pg_params_t *p, const char *queue, size_t qn, const char *id, size_t idn)
{
    pg_params_init(p);
    pg_params_bytes(p, queue, qn);
    pg_params_bytes(p, id, idn);
}

/* Row i of r (seq, queue, id, payload, run_at, attempts, claim_token,
 * claimed) to on_row. */
static sqlcached_status_t row_to(const PGresult *r, int i, storage_job_fn on_row, void *cls)
{
    storage_job_row_t row;
    row.seq = pg_conn_col_int64(r, i, 0);
    row.queue = pg_conn_col_bytes(r, i, 1, &row.queue_len);
    row.id = pg_conn_col_bytes(r, i, 2, &row.id_len);
    row.payload = pg_conn_col_bytes(r, i, 3, &row.payload_len);
    row.run_at = pg_conn_col_int64(r, i, 4);
    row.attempts = pg_conn_col_int64(r, i, 5);
    row.claim_token = pg_conn_col_int64(r, i, 6);
    row.claimed = pg_conn_col_int64(r, i, 7) != 0;
    return on_row(cls, &row);
}

/* The outcome of a statement returning at most one job row (r freed). */
static sqlcached_status_t job_result(sqlcached_status_t status, PGresult *r, storage_job_fn on_row,
                                     void *cls)
{
    if (status != SQLCACHED_OK)
        return status;
    status = PQntuples(r) < 1 ? SQLCACHED_NOT_FOUND : row_to(r, 0, on_row, cls);
    PQclear(r);
    return status;
}

/* The outcome of a change (r freed): NOT_FOUND when it touched no row. */
static sqlcached_status_t change_result(sqlcached_status_t status, PGresult *r)
{
    if (status != SQLCACHED_OK)
        return status;
    status = pg_conn_affected(r) > 0 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    PQclear(r);
    return status;
}

static sqlcached_status_t job_insert(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                     size_t idn, const char *payload, size_t pn, int64_t run_at,
                                     bool *inserted)
{
    pg_params_t p;
    params_key(&p, queue, qn, id, idn);
    pg_params_bytes(&p, payload, pn);
    pg_params_int64(&p, run_at);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_INSERT, &p, &r);
    status = change_result(status, r);
    *inserted = status == SQLCACHED_OK;
    return status == SQLCACHED_NOT_FOUND ? SQLCACHED_OK : status;
}

static sqlcached_status_t job_get(store_conn_t *c, const char *queue, size_t qn, const char *id,
                                  size_t idn, storage_job_fn on_row, void *cls)
{
    pg_params_t p;
    params_key(&p, queue, qn, id, idn);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_GET, &p, &r);
    return job_result(status, r, on_row, cls);
}

static sqlcached_status_t job_due(store_conn_t *w, const char *queue, size_t qn, int64_t now,
                                  unsigned limit, storage_due_fn on_due, void *cls)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, queue, qn);
    pg_params_int64(&p, now);
    pg_params_int64(&p, limit);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_DUE, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    int n = PQntuples(r);
    for (int i = 0; i < n && status == SQLCACHED_OK; i++)
        if (!on_due(cls, pg_conn_col_int64(r, i, 0), pg_conn_col_int64(r, i, 1),
                    pg_conn_col_int64(r, i, 2) != 0))
            status = SQLCACHED_NOMEM;
    PQclear(r);
    return status;
}

static sqlcached_status_t job_take(store_conn_t *w, int64_t seq, int64_t old_token, int64_t now,
                                   int64_t token, const char *worker, size_t wn, int64_t until,
                                   storage_job_fn on_row, void *cls)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, seq);
    pg_params_int64(&p, old_token);
    pg_params_int64(&p, now);
    pg_params_int64(&p, token);
    pg_params_bytes(&p, worker, wn);
    pg_params_int64(&p, until);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_TAKE, &p, &r);
    return job_result(status, r, on_row, cls);
}

static sqlcached_status_t job_ack(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                  size_t idn, int64_t token, int64_t now)
{
    pg_params_t p;
    params_key(&p, queue, qn, id, idn);
    pg_params_int64(&p, token);
    pg_params_int64(&p, now);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_ACK, &p, &r);
    return change_result(status, r);
}

static sqlcached_status_t job_nack(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                   size_t idn, int64_t token, int64_t now, int64_t run_at)
{
    pg_params_t p;
    params_key(&p, queue, qn, id, idn);
    pg_params_int64(&p, token);
    pg_params_int64(&p, now);
    pg_params_int64(&p, run_at);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_NACK, &p, &r);
    return change_result(status, r);
}

static sqlcached_status_t job_remove(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                     size_t idn)
{
    pg_params_t p;
    params_key(&p, queue, qn, id, idn);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_REMOVE, &p, &r);
    return change_result(status, r);
}

static sqlcached_status_t job_next_due(store_conn_t *c, const char *queue, size_t qn,
                                       int64_t *run_at)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, queue, qn);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_NEXT_DUE, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    if (PQntuples(r) < 1 || pg_conn_col_null(r, 0, 0))
        status = SQLCACHED_NOT_FOUND;
    else
        *run_at = pg_conn_col_int64(r, 0, 0);
    PQclear(r);
    return status;
}

static sqlcached_status_t job_counts(store_conn_t *r, const char *queue, size_t qn, int64_t now,
                                     storage_queue_counts_t *out)
{
    pg_params_t p;
    pg_params_init(&p);
    if (queue)
        pg_params_bytes(&p, queue, qn);
    pg_params_int64(&p, now);
    PGresult *res = NULL;
    sqlcached_status_t status = storage_pg_run(r, queue ? SQL_COUNTS : SQL_COUNTS_ALL, &p, &res);
    if (status != SQLCACHED_OK)
        return status;
    if (PQntuples(res) < 1) {
        PQclear(res);
        return SQLCACHED_INTERNAL;
    }
    out->delayed = (uint64_t)pg_conn_col_int64(res, 0, 0);
    out->ready = (uint64_t)pg_conn_col_int64(res, 0, 1);
    out->claimed = (uint64_t)pg_conn_col_int64(res, 0, 2);
    PQclear(res);
    return SQLCACHED_OK;
}

const storage_queue_ops_t storage_pg_queue = {
    .insert = job_insert,
    .get = job_get,
    .due = job_due,
    .take = job_take,
    .ack = job_ack,
    .nack = job_nack,
    .remove = job_remove,
    .next_due = job_next_due,
    .counts = job_counts,
};
