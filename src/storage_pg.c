/*
 * storage_pg.c - the PostgreSQL backend's engine (storage.h): connections,
 * migrations, the group-commit transaction, the counters in `meta`; and
 * the backend's table of operations. Each domain's statements live in a
 * file of their own beside this one (storage_pg_kv.c, _seckill.c,
 * _lease.c); the libpq layer under all of them is pg_conn.c.
 *
 * Data structures:
 *   - pg_store_conn_t: a store_conn_t, then its pg_conn_t.
 *   - storage_db_t: the URL and settings, the writer connection between
 *     open (which migrates through it) and its hand-over, and how many
 *     transactions the writer committed (the "changes" of the engine: any
 *     commit that reached PostgreSQL proves the store can write).
 *
 * Durability: --durability full sets synchronous_commit = on (a COMMIT is
 * answered once its WAL is flushed, on the standbys too where the server
 * says so); normal sets it off (a crash of PostgreSQL may lose the last
 * transactions it answered; a crash of sqlcached loses nothing).
 *
 * Counters: every row of meta is locked (SELECT ... ORDER BY name FOR
 * UPDATE: always in the same order, or two nodes' writers deadlock on
 * them) right after BEGIN, before any write's savepoint (a lock taken inside a
 * savepoint is released by its ROLLBACK TO), and held to COMMIT, so values
 * grow in commit order, also with other writers on the same database;
 * never cached across transactions (counters_valid is always false).
 *
 * A lost connection: the writer's batch fails UNAVAILABLE (503) and the
 * next one reconnects, with the backoff of pg_conn.c; a COMMIT whose answer
 * was lost is logged as in doubt and answered UNAVAILABLE, never 2xx.
 */
#include "storage_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct storage_db {
    char *url;
    pg_conn_config_t pgcfg;  /* the readers' (read-only); pgcfg.url points to url */
    pg_store_conn_t *writer; /* opened by open(), handed over by conn_open() */
    int lock_timeout_ms;     /* the writer's and the cluster link's */
    int idle_tx_timeout_ms;  /* the writer's and the cluster link's */
};

static const char SQL_LOCK_COUNTERS[] = "SELECT name FROM meta ORDER BY name FOR UPDATE";
static const char SQL_COUNTER_GET[] = "SELECT value FROM meta WHERE name = $1 FOR UPDATE";
static const char SQL_COUNTER_SET[] = "UPDATE meta SET value = $2 WHERE name = $1";

pg_conn_t *store_pg_conn(store_conn_t *c)
{
    return pgc(c)->pg;
}

sqlcached_status_t storage_pg_run(store_conn_t *c, const char *sql, const pg_params_t *p,
                                  PGresult **out)
{
    return pg_conn_rc_status(pg_conn_run(pgc(c)->pg, sql, p, out));
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

static pg_store_conn_t *conn_new(const pg_conn_config_t *cfg, char *err, size_t errlen)
{
    pg_store_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base.backend = &storage_pg;
    pg_conn_rc_t rc;
    c->pg = pg_conn_open(cfg, &rc, err, errlen);
    if (!c->pg) {
        free(c);
        return NULL;
    }
    return c;
}

static void conn_close(store_conn_t *c)
{
    if (!c)
        return;
    pg_conn_close(pgc(c)->pg);
    free(c);
}

static void db_close(storage_db_t *d)
{
    if (!d)
        return;
    conn_close(d->writer ? &d->writer->base : NULL);
    free(d->url);
    free(d);
}

static int64_t stop_deadline(void *s)
{
    return store_deadline_ms(s);
}

static storage_db_t *db_open(const store_config_t *cfg, store_t *s, char *err, size_t errlen)
{
    storage_db_t *d = calloc(1, sizeof *d);
    if (!d || !(d->url = strdup(cfg->path))) {
        free(d);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* readers: read-only sessions, as SQLite's (query_only) */
    d->pgcfg = (pg_conn_config_t){.url = d->url, .durability = cfg->durability, .read_only = true};
    /* the writer: a wait for a row lock held elsewhere (another node, a
     * psql session) ends after the busy timeout, as SQLite's busy handler,
     * and at the store's stop deadline */
    pg_conn_config_t wcfg = {.url = d->url,
                             .durability = cfg->durability,
                             .lock_timeout_ms = cfg->busy_timeout_ms,
                             .idle_tx_timeout_ms = cfg->idle_tx_timeout_ms,
                             .deadline_ms = stop_deadline,
                             .deadline_arg = s};
    d->lock_timeout_ms = cfg->busy_timeout_ms;
    d->idle_tx_timeout_ms = cfg->idle_tx_timeout_ms;
    d->writer = conn_new(&wcfg, err, errlen);
    if (!d->writer || pg_conn_migrate(d->writer->pg, err, errlen) != PG_CONN_OK) {
        db_close(d);
        return NULL;
    }
    return d;
}

store_conn_t *storage_pg_link_open(storage_db_t *d, char *err, size_t errlen)
{
    pg_conn_config_t cfg = d->pgcfg;
    cfg.read_only = false;
    cfg.lock_timeout_ms = d->lock_timeout_ms;
    cfg.idle_tx_timeout_ms = d->idle_tx_timeout_ms;
    /* synchronous_commit off: what the link commits (acknowledgements,
     * heartbeats, registrations) is visible to the other sessions at once
     * and need not outlive a crash of PostgreSQL (every node then loses
     * its link and rejoins); waiting for a WAL flush per acknowledgement
     * would make every write wait for the others' disk too. */
    cfg.durability = SQLCACHED_DURABILITY_NORMAL;
    pg_store_conn_t *c = conn_new(&cfg, err, errlen);
    return c ? &c->base : NULL;
}

static store_conn_t *conn_open(storage_db_t *d, bool writer, char *err, size_t errlen)
{
    if (writer) {
        pg_store_conn_t *w = d->writer;
        d->writer = NULL;
        if (!w)
            snprintf(err, errlen, "the writer connection was handed over already");
        return w ? &w->base : NULL;
    }
    pg_store_conn_t *c = conn_new(&d->pgcfg, err, errlen);
    return c ? &c->base : NULL;
}

/* ------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------ */

/* SQLCACHED_TESTING_PG_LATE_COMMIT: a build broken on purpose, to show
 * that the reliability checkers see writes answered before their commit
 * (tests/reliability/pg-sabotage.sh): tx_commit() answers at once and
 * leaves the transaction open; the batches of the next LATE_COMMIT_MS go
 * on in it, and the first batch after that commits it before its BEGIN.
 * So what was answered in the last LATE_COMMIT_MS is lost when sqlcached
 * dies or PostgreSQL stops. Never in a real build. */
#ifdef SQLCACHED_TESTING_PG_LATE_COMMIT
#define LATE_COMMIT_MS 100

static int64_t late_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
#endif

static bool tx_open(store_conn_t *w);

static sqlcached_status_t tx_begin(store_conn_t *w)
{
#ifdef SQLCACHED_TESTING_PG_LATE_COMMIT
    pg_store_conn_t *c = pgc(w);
    if (c->late_since && pg_conn_in_transaction(c->pg) && tx_open(w) &&
        late_now_ms() - c->late_since < LATE_COMMIT_MS)
        return SQLCACHED_OK; /* go on in the open transaction */
    if (c->late_since && pg_conn_in_transaction(c->pg))
        pg_conn_commit(c->pg);
    c->late_since = 0;
#endif
    pg_conn_t *pg = pgc(w)->pg;
    sqlcached_status_t st = pg_conn_rc_status(pg_conn_begin(pg));
    if (st != SQLCACHED_OK)
        return st;
    /* The counter rows, locked before any write's savepoint: a lock taken
     * inside one would go with its ROLLBACK TO, and another writer could
     * then take the values this transaction has handed out. */
    st = pg_conn_rc_status(pg_conn_run(pg, SQL_LOCK_COUNTERS, NULL, NULL));
    if (st != SQLCACHED_OK)
        pg_conn_rollback(pg);
    return st;
}

static sqlcached_status_t tx_savepoint(store_conn_t *w)
{
    return pg_conn_rc_status(pg_conn_savepoint_later(pgc(w)->pg));
}

static sqlcached_status_t tx_release(store_conn_t *w)
{
    return pg_conn_rc_status(pg_conn_release_later(pgc(w)->pg));
}

static sqlcached_status_t tx_rollback_to(store_conn_t *w)
{
    return pg_conn_rc_status(pg_conn_rollback_to(pgc(w)->pg));
}

/* A transaction whose connection is gone is over: end it here, so the
 * next begin can reconnect. */
static bool tx_open(store_conn_t *w)
{
    pg_conn_t *pg = pgc(w)->pg;
    if (!pg_conn_in_transaction(pg))
        return false;
    if (PQstatus(pg_conn_raw(pg)) == CONNECTION_OK)
        return true;
    pg_conn_rollback(pg);
    return false;
}

static sqlcached_status_t tx_commit(store_conn_t *w)
{
#ifdef SQLCACHED_TESTING_PG_LATE_COMMIT
    if (!pgc(w)->late_since)
        pgc(w)->late_since = late_now_ms();
    pgc(w)->commits++;
    return SQLCACHED_OK;
#endif
    pg_conn_rc_t rc = pg_conn_commit(pgc(w)->pg);
    if (rc == PG_CONN_IN_DOUBT)
        log_error("store", "the connection to PostgreSQL broke before COMMIT was answered: "
                           "the batch's writes are in doubt (committed or not); answered 503");
    if (rc == PG_CONN_OK)
        pgc(w)->commits++;
    return pg_conn_rc_status(rc);
}

static void tx_rollback(store_conn_t *w)
{
    pg_conn_rollback(pgc(w)->pg);
}

static void describe_error(store_conn_t *c, char *buf, size_t len)
{
    const char *state = pg_conn_sqlstate(pgc(c)->pg);
    if (state[0])
        snprintf(buf, len, "%s (SQLSTATE %s)", pg_conn_errmsg(pgc(c)->pg), state);
    else
        snprintf(buf, len, "%s", pg_conn_errmsg(pgc(c)->pg));
}

static int64_t changes(store_conn_t *w)
{
    return pgc(w)->commits;
}

/* ------------------------------------------------------------------------
 * Counters
 * ------------------------------------------------------------------------ */

static sqlcached_status_t counter_get(store_conn_t *w, const char *name, int64_t *value)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, name);
    PGresult *r = NULL;
    sqlcached_status_t st = storage_pg_run(w, SQL_COUNTER_GET, &p, &r);
    if (st != SQLCACHED_OK)
        return st;
    if (PQntuples(r) == 1) {
        *value = pg_conn_col_int64(r, 0, 0);
    } else {
        log_error("store", "counter %s is missing from meta", name);
        st = SQLCACHED_INTERNAL;
    }
    PQclear(r);
    return st;
}

static sqlcached_status_t counter_set(store_conn_t *w, const char *name, int64_t value, bool *found)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, name);
    pg_params_int64(&p, value);
    PGresult *r = NULL;
    sqlcached_status_t st = storage_pg_run(w, SQL_COUNTER_SET, &p, &r);
    if (st == SQLCACHED_OK) {
        *found = pg_conn_affected(r) > 0;
        PQclear(r);
    }
    return st;
}

static bool counters_valid(store_conn_t *w)
{
    (void)w;
    return false;
}

static const storage_engine_ops_t engine = {
    .open = db_open,
    .close = db_close,
    .conn_open = conn_open,
    .conn_close = conn_close,
    .begin = tx_begin,
    .savepoint = tx_savepoint,
    .release = tx_release,
    .rollback_to = tx_rollback_to,
    .in_transaction = tx_open,
    .commit = tx_commit,
    .rollback = tx_rollback,
    .describe_error = describe_error,
    .changes = changes,
    .counter_get = counter_get,
    .counter_set = counter_set,
    .counters_valid = counters_valid,
    .check = NULL,
    .salvage = NULL,
};

const storage_backend_t storage_pg = {
    .name = "postgresql",
    .engine = &engine,
    .kv = &storage_pg_kv,
    .seckill = &storage_pg_seckill,
    .lease = &storage_pg_lease,
    .cluster = &storage_pg_cluster,
    .queue = &storage_pg_queue,
    .watch = &storage_pg_watch,
};
