/*
 * storage_sqlite_queue.c - delay-queue rows on SQLite (the queue
 * operations of storage.h).
 *
 * Schema (sql/sqlite/006_queue.sql): jobs(seq, queue, id, payload, run_at,
 * attempts, claim_token, worker), indexed by (queue, run_at, seq). One
 * writer connection changes the table, so the due rows a claim reads stay
 * due until its conditional UPDATE (which checks again anyway). Every
 * change guarded by a claim token is one conditional statement.
 */
#include <string.h>

#include "storage_sqlite.h"

static const char SQL_INSERT[] =
    "INSERT INTO jobs (queue, id, payload, run_at) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (queue, id) DO NOTHING";
static const char SQL_GET[] =
    "SELECT seq, queue, id, payload, run_at, attempts, claim_token, worker IS NOT NULL "
    "FROM jobs WHERE queue = ?1 AND id = ?2";
static const char SQL_DUE[] =
    "SELECT seq, claim_token, worker IS NOT NULL FROM jobs WHERE queue = ?1 AND run_at <= ?2 "
    "ORDER BY run_at, seq LIMIT ?3";
static const char SQL_TAKE[] =
    "UPDATE jobs SET worker = ?5, claim_token = ?4, run_at = ?6, attempts = attempts + 1 "
    "WHERE seq = ?1 AND claim_token = ?2 AND run_at <= ?3 "
    "RETURNING seq, queue, id, payload, run_at, attempts, claim_token, worker IS NOT NULL";
static const char SQL_ACK[] = "DELETE FROM jobs WHERE queue = ?1 AND id = ?2 AND claim_token = ?3 "
                              "AND worker IS NOT NULL AND run_at > ?4";
static const char SQL_NACK[] =
    "UPDATE jobs SET worker = NULL, run_at = ?5 WHERE queue = ?1 AND id = ?2 "
    "AND claim_token = ?3 AND worker IS NOT NULL AND run_at > ?4";
static const char SQL_REMOVE[] = "DELETE FROM jobs WHERE queue = ?1 AND id = ?2";
static const char SQL_NEXT_DUE[] = "SELECT min(run_at) FROM jobs WHERE queue = ?1";
static const char SQL_COUNTS[] =
    "SELECT coalesce(sum(worker IS NULL AND run_at > ?2), 0), coalesce(sum(run_at <= ?2), 0), "
    "coalesce(sum(worker IS NOT NULL AND run_at > ?2), 0) FROM jobs WHERE queue = ?1";
static const char SQL_COUNTS_ALL[] =
    "SELECT coalesce(sum(worker IS NULL AND run_at > ?1), 0), coalesce(sum(run_at <= ?1), 0), "
    "coalesce(sum(worker IS NOT NULL AND run_at > ?1), 0) FROM jobs";

static void bind_text(sqlite3_stmt *st, int idx, const char *p, size_t n)
{
    sqlite3_bind_text(st, idx, p, (int)n, SQLITE_STATIC);
}

static void bind_key(sqlite3_stmt *st, const char *queue, size_t qn, const char *id, size_t idn)
{
    bind_text(st, 1, queue, qn);
    bind_text(st, 2, id, idn);
}

static const char *col_text(sqlite3_stmt *st, int col, size_t *len)
{
    const char *p = (const char *)sqlite3_column_text(st, col);
    *len = p ? (size_t)sqlite3_column_bytes(st, col) : 0;
    return p ? p : "";
}

/* The current row of a statement selecting a job (seq, queue, id, payload,
 * run_at, attempts, claim_token, claimed), to on_row. */
static sqlcached_status_t row_to(sqlite3_stmt *st, storage_job_fn on_row, void *cls)
{
    storage_job_row_t row;
    row.seq = sqlite3_column_int64(st, 0);
    row.queue = col_text(st, 1, &row.queue_len);
    row.id = col_text(st, 2, &row.id_len);
    row.payload = col_text(st, 3, &row.payload_len);
    row.run_at = sqlite3_column_int64(st, 4);
    row.attempts = sqlite3_column_int64(st, 5);
    row.claim_token = sqlite3_column_int64(st, 6);
    row.claimed = sqlite3_column_int(st, 7) != 0;
    return on_row(cls, &row);
}

/* Step a statement returning at most one job row. */
static sqlcached_status_t step_job(sqlite3_stmt *st, storage_job_fn on_row, void *cls)
{
    int rc = sqlite3_step(st);
    sqlcached_status_t status = rc == SQLITE_ROW    ? row_to(st, on_row, cls)
                                : rc == SQLITE_DONE ? SQLCACHED_NOT_FOUND
                                                    : store_status(rc);
    sqlite3_reset(st);
    return status;
}

/* Step a change; NOT_FOUND when it touched no row. */
static sqlcached_status_t step_change(store_conn_t *w, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return store_status(rc);
    return sqlite3_changes(store_conn_db(w)) > 0 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
}

static sqlcached_status_t job_insert(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                     size_t idn, const char *payload, size_t pn, int64_t run_at,
                                     bool *inserted)
{
    sqlite3_stmt *st = store_stmt(w, SQL_INSERT);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_key(st, queue, qn, id, idn);
    bind_text(st, 3, payload, pn);
    sqlite3_bind_int64(st, 4, run_at);
    sqlcached_status_t status = step_change(w, st);
    *inserted = status == SQLCACHED_OK;
    return status == SQLCACHED_NOT_FOUND ? SQLCACHED_OK : status;
}

static sqlcached_status_t job_get(store_conn_t *c, const char *queue, size_t qn, const char *id,
                                  size_t idn, storage_job_fn on_row, void *cls)
{
    sqlite3_stmt *st = store_stmt(c, SQL_GET);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_key(st, queue, qn, id, idn);
    return step_job(st, on_row, cls);
}

static sqlcached_status_t job_due(store_conn_t *w, const char *queue, size_t qn, int64_t now,
                                  unsigned limit, storage_due_fn on_due, void *cls)
{
    sqlite3_stmt *st = store_stmt(w, SQL_DUE);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_text(st, 1, queue, qn);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, limit);
    int rc;
    sqlcached_status_t status = SQLCACHED_OK;
    while (status == SQLCACHED_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        if (!on_due(cls, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                    sqlite3_column_int(st, 2) != 0))
            status = SQLCACHED_NOMEM;
    if (status == SQLCACHED_OK && rc != SQLITE_DONE)
        status = store_status(rc);
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t job_take(store_conn_t *w, int64_t seq, int64_t old_token, int64_t now,
                                   int64_t token, const char *worker, size_t wn, int64_t until,
                                   storage_job_fn on_row, void *cls)
{
    sqlite3_stmt *st = store_stmt(w, SQL_TAKE);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, old_token);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, token);
    bind_text(st, 5, worker, wn);
    sqlite3_bind_int64(st, 6, until);
    return step_job(st, on_row, cls);
}

static sqlcached_status_t job_ack(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                  size_t idn, int64_t token, int64_t now)
{
    sqlite3_stmt *st = store_stmt(w, SQL_ACK);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_key(st, queue, qn, id, idn);
    sqlite3_bind_int64(st, 3, token);
    sqlite3_bind_int64(st, 4, now);
    return step_change(w, st);
}

static sqlcached_status_t job_nack(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                   size_t idn, int64_t token, int64_t now, int64_t run_at)
{
    sqlite3_stmt *st = store_stmt(w, SQL_NACK);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_key(st, queue, qn, id, idn);
    sqlite3_bind_int64(st, 3, token);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, run_at);
    return step_change(w, st);
}

static sqlcached_status_t job_remove(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                     size_t idn)
{
    sqlite3_stmt *st = store_stmt(w, SQL_REMOVE);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_key(st, queue, qn, id, idn);
    return step_change(w, st);
}

static sqlcached_status_t job_next_due(store_conn_t *c, const char *queue, size_t qn,
                                       int64_t *run_at)
{
    sqlite3_stmt *st = store_stmt(c, SQL_NEXT_DUE);
    if (!st)
        return SQLCACHED_INTERNAL;
    bind_text(st, 1, queue, qn);
    int rc = sqlite3_step(st);
    bool none = rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_NULL;
    if (rc == SQLITE_ROW)
        *run_at = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return store_status(rc);
    return none ? SQLCACHED_NOT_FOUND : SQLCACHED_OK;
}

static sqlcached_status_t job_counts(store_conn_t *r, const char *queue, size_t qn, int64_t now,
                                     storage_queue_counts_t *out)
{
    sqlite3_stmt *st = store_stmt(r, queue ? SQL_COUNTS : SQL_COUNTS_ALL);
    if (!st)
        return SQLCACHED_INTERNAL;
    if (queue) {
        bind_text(st, 1, queue, qn);
        sqlite3_bind_int64(st, 2, now);
    } else {
        sqlite3_bind_int64(st, 1, now);
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->delayed = (uint64_t)sqlite3_column_int64(st, 0);
        out->ready = (uint64_t)sqlite3_column_int64(st, 1);
        out->claimed = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLCACHED_OK : store_status(rc);
}

const storage_queue_ops_t storage_sqlite_queue = {
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
