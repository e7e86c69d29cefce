/*
 * sqlcached.c - opening and closing a store, its clock, and the maintenance
 * thread that purges expired rows in the background.
 *
 * The maintenance thread sleeps on a condition variable for
 * purge_interval_ms between rounds so that sqlcached_close() can wake it at
 * once. Each round does bounded work (kv_purge_expired and lease_sweep in
 * slices) so it never holds the writer long. The lease module runs its own
 * timer thread for waiters (lease.c); this sweep is its backstop.
 */
#include <build_config.h>

#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lease.h"
#include "log.h"

#define PURGE_SLICE_ROWS 500
#define PURGE_MAX_SLICES 20

static const char *const status_names[SQLCACHED_STATUS_COUNT] = {
    [SQLCACHED_OK] = "ok",
    [SQLCACHED_NOT_FOUND] = "not_found",
    [SQLCACHED_INVALID_ARGUMENT] = "invalid_argument",
    [SQLCACHED_PRECONDITION_FAILED] = "precondition_failed",
    [SQLCACHED_CONFLICT] = "conflict",
    [SQLCACHED_NOT_INTEGER] = "not_integer",
    [SQLCACHED_SOLD_OUT] = "sold_out",
    [SQLCACHED_ALREADY_ORDERED] = "already_ordered",
    [SQLCACHED_LEASE_HELD] = "lease_held",
    [SQLCACHED_NOT_OWNER] = "not_owner",
    [SQLCACHED_STORAGE_FULL] = "storage_full",
    [SQLCACHED_UNAVAILABLE] = "unavailable",
    [SQLCACHED_NOMEM] = "unavailable",
    [SQLCACHED_INTERNAL] = "internal",
};

const char *sqlcached_status_name(sqlcached_status_t status)
{
    if ((unsigned)status >= SQLCACHED_STATUS_COUNT)
        return "internal";
    return status_names[status];
}

const char *sqlcached_version(void)
{
    return PACKAGE_VERSION;
}

void sqlcached_options_init(sqlcached_options_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->path = "sqlcached.db";
    opts->durability = SQLCACHED_DURABILITY_FULL;
    opts->busy_timeout_ms = 5000;
    opts->max_batch = 256;
    opts->purge_interval_ms = 1000;
}

static int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t engine_now(const sqlcached_t *db)
{
    if (db->opts.clock_ms)
        return db->opts.clock_ms(db->opts.clock_arg);
    return wall_clock_ms();
}

int64_t sqlcached_now_ms(const sqlcached_t *db)
{
    return engine_now(db);
}

static void maintenance_round(sqlcached_t *db)
{
    int64_t now = engine_now(db);
    for (int i = 0; i < PURGE_MAX_SLICES; i++)
        if (kv_purge_expired(db, now, PURGE_SLICE_ROWS) < PURGE_SLICE_ROWS)
            break;
    for (int i = 0; i < PURGE_MAX_SLICES; i++)
        if (lease_sweep(db, now, PURGE_SLICE_ROWS) < PURGE_SLICE_ROWS)
            break;
}

static void *maintenance_main(void *arg)
{
    sqlcached_t *db = arg;
    pthread_mutex_lock(&db->maint_lock);
    while (!db->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long long ns = until.tv_nsec + (long long)db->opts.purge_interval_ms * 1000000LL;
        until.tv_sec += ns / 1000000000LL;
        until.tv_nsec = ns % 1000000000LL;
        int rc = 0;
        while (!db->stopping && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&db->maint_cond, &db->maint_lock, &until);
        if (db->stopping)
            break;
        pthread_mutex_unlock(&db->maint_lock);
        maintenance_round(db);
        pthread_mutex_lock(&db->maint_lock);
    }
    pthread_mutex_unlock(&db->maint_lock);
    return NULL;
}

static int start_maintenance(sqlcached_t *db, char *err, size_t errlen)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0 ||
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&db->maint_cond, &attr) != 0) {
        snprintf(err, errlen, "cannot create the maintenance condition");
        return -1;
    }
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&db->maint_lock, NULL);
    if (db->opts.purge_interval_ms < 0)
        return 0;
    if (db->opts.purge_interval_ms == 0)
        db->opts.purge_interval_ms = 1000;
    if (pthread_create(&db->maintenance, NULL, maintenance_main, db) != 0) {
        snprintf(err, errlen, "cannot start the maintenance thread: %s", strerror(errno));
        return -1;
    }
    db->maintenance_started = true;
    return 0;
}

sqlcached_status_t sqlcached_open(const sqlcached_options_t *opts, sqlcached_t **out,
                                  char *err, size_t errlen)
{
    char scratch[1];
    if (!err) {
        err = scratch;
        errlen = sizeof scratch;
    }
    *out = NULL;
    sqlcached_options_t defaults;
    if (!opts) {
        sqlcached_options_init(&defaults);
        opts = &defaults;
    }
    sqlcached_t *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(opts->path ? opts->path : "sqlcached.db"))) {
        free(db);
        snprintf(err, errlen, "out of memory");
        return SQLCACHED_NOMEM;
    }
    db->opts = *opts;
    db->opts.path = db->path;
    store_config_t cfg = {
        .path = db->path,
        .durability = opts->durability,
        .busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000,
        .max_batch = opts->max_batch,
    };
    db->store = store_open(&cfg, err, errlen);
    if (db->store)
        db->leases = lease_registry_create(db, err, errlen);
    if (!db->leases || start_maintenance(db, err, errlen) != 0) {
        sqlcached_close(db);
        return SQLCACHED_INTERNAL;
    }
    *out = db;
    return SQLCACHED_OK;
}

void sqlcached_close(sqlcached_t *db)
{
    if (!db)
        return;
    if (db->maintenance_started) {
        pthread_mutex_lock(&db->maint_lock);
        db->stopping = true;
        pthread_cond_signal(&db->maint_cond);
        pthread_mutex_unlock(&db->maint_lock);
        pthread_join(db->maintenance, NULL);
        pthread_cond_destroy(&db->maint_cond);
        pthread_mutex_destroy(&db->maint_lock);
    }
    lease_registry_destroy(db->leases); /* before the store: its timer writes */
    store_close(db->store);
    free(db->path);
    free(db);
}
