/*
 * engine.h - the inside of an open store (sqlcached_t), shared by the
 * library's modules (kv.c, and the modules that build on it). Not public.
 *
 * Ownership: sqlcached_open() creates every member, sqlcached_close()
 * destroys them in reverse order. Members are read-only after open except
 * where a module documents its own locking.
 */
#ifndef SQLCACHED_ENGINE_H
#define SQLCACHED_ENGINE_H

#include <pthread.h>
#include <stdbool.h>

#include "sqlcached.h"
#include "store.h"

struct sqlcached {
    sqlcached_options_t opts;
    char *path; /* owned copy of opts.path */
    store_t *store;
    struct lease_registry *leases; /* lease waiters and their timer (lease.c) */

    /* maintenance thread: purges expired rows every purge_interval_ms */
    pthread_t maintenance;
    bool maintenance_started;
    bool stopping;               /* under maint_lock */
    pthread_mutex_t maint_lock;
    pthread_cond_t maint_cond;
};

/* The store's clock, in ms. */
int64_t engine_now(const sqlcached_t *db);

/* kv.c: delete up to `max_rows` expired rows; returns how many went, or -1. */
int kv_purge_expired(sqlcached_t *db, int64_t now, int max_rows);

#endif
