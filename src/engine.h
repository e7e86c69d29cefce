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

#include <stdatomic.h>

#include "cache.h"
#include "hotkeys.h"
#include "kv.h"
#include "seckill.h"
#include "sqlcached.h"
#include "store.h"

struct sqlcached {
    sqlcached_options_t opts;
    char *path;      /* owned copy of opts.path */
    char *advertise; /* owned copy of opts.advertise ("" when none) */
    int lock_fd;     /* holds the database's lock (dblock.h); -1 = none */
    store_t *store;
    cache_t *cache;      /* NULL when cache_memory is 0 */
    cache_t *item_cache; /* flash-sale items; NULL when cache_memory is 0 */
    kv_t *kv;            /* KV's own state: bloom filter, counters (kv.h) */
    hotkeys_t *hotkeys;  /* KV reads counted for sqlcached_hotkeys; NULL when off */
    /* GETs (KV and items) answered without consulting a memory tier: none
     * configured, not trusted (engine_tier_usable), or out of memory. Each
     * is a miss (sqlcached_stats). */
    atomic_uint_fast64_t tier_bypass_reads;
    seckill_t *seckill;            /* flash-sale fast-path state (its own locking) */
    struct lease_registry *leases; /* lease waiters and their timer (lease.c) */
    struct queue_registry *queues; /* waiting queue claims and their timer (queue.c) */
    struct cluster *cluster;       /* the node, on a shared database (cluster.c); else NULL */
    struct payment *payment;       /* payment deadlines and their timer (payment.c) */
    struct watch_hub *watch;       /* the change log's dispatcher (watch.c) */
    int64_t started_at;            /* engine_now() at open */

    /* maintenance thread: purges expired rows every purge_interval_ms */
    pthread_t maintenance;
    bool maintenance_started;
    bool stopping; /* under maint_lock */
    pthread_mutex_t maint_lock;
    pthread_cond_t maint_cond;
};

/* May the memory tiers (and the sold-out flags) answer now? Always on one
 * node; in a cluster only while the node trusts them (cluster.h). */
bool engine_tier_usable(const sqlcached_t *db);

/* The bloom filter may miss keys (a cluster node that missed messages):
 * not consulted until the maintenance thread has rebuilt it. */
void engine_bloom_distrust(sqlcached_t *db);

/* The store's clock, in ms. */
int64_t engine_now(const sqlcached_t *db);

#endif
