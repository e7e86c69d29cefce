/*
 * sqlcached.c - opening and closing a store (SQLite, memory tier, bloom
 * filter), its clock, its statistics, and the maintenance thread.
 *
 * The maintenance thread ticks every MAINT_TICK_MS on a condition variable
 * (so sqlcached_close() wakes it at once) and does bounded work per tick:
 * active expiry of the memory tier every tick, a purge of expired rows in
 * SQLite every purge_interval_ms, and a rebuild of the bloom filter when
 * deletes have left too many stale bits in it. Its first job is the initial
 * build of the bloom filter from SQLite, so that opening a large store does
 * not wait for a scan of every key: until that build is done the filter is
 * fed by writes but not consulted. Opening takes the database's exclusive lock first
 * (dblock.h) and closing releases it last, so two stores never share one
 * file: their memory tiers, bloom filters and sold-out flags would each
 * miss the other's writes. The purge also sweeps expired leases
 * (lease_sweep, in slices); the lease module runs its own timer thread for
 * waiters (lease.c), and this sweep is its backstop.
 */
#include <build_config.h>

#include "engine.h"
#include "storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "payment.h"
#include "dblock.h"
#include "lease.h"
#include "queue.h"
#include "log.h"
#include "watch.h"

#define PURGE_SLICE_ROWS 500
#define PURGE_MAX_SLICES 20
#define MAINT_TICK_MS 100
#define EXPIRE_WORK_PER_TICK 2000
#define ITEM_TIER_MIN ((size_t)1 << 20)
#define READER_CACHE_MAX ((size_t)2000 << 10) /* SQLite's default cache_size */
#define IDLE_TX_MIN_MS 1000
#define LEASE_RECHECK_MS 500 /* cluster: a missed release message costs at most this */

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
    [SQLCACHED_NOT_JSON] = "not_json",
    [SQLCACHED_ORDER_NOT_PENDING] = "order_not_pending",
    [SQLCACHED_CLAIM_EXPIRED] = "claim_expired",
    [SQLCACHED_HISTORY_TRUNCATED] = "history_truncated",
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
    opts->sqlite_cache = 64u << 20;
    opts->purge_interval_ms = 1000;
    opts->cache_memory = 64u << 20;
    opts->cache_policy = "allkeys-lfu";
    opts->negative_ttl_ms = 5000;
    opts->ttl_jitter_percent = 0;
    opts->bloom_filter = 1;
    opts->hotkeys = 1;
    opts->seckill_strategy = SQLCACHED_SECKILL_STOCK;
    opts->seckill_retries = 3;
    opts->member_timeout_ms = 2000;
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

bool engine_tier_usable(const sqlcached_t *db)
{
    return !db->cluster || cluster_trusted(db->cluster);
}

int64_t sqlcached_now_ms(const sqlcached_t *db)
{
    return engine_now(db);
}

static void purge_rows(sqlcached_t *db, int64_t now)
{
    for (int i = 0; i < PURGE_MAX_SLICES; i++)
        if (kv_purge_expired(db, now, PURGE_SLICE_ROWS) < PURGE_SLICE_ROWS)
            break;
    for (int i = 0; i < PURGE_MAX_SLICES; i++)
        if (lease_sweep(db, now, PURGE_SLICE_ROWS) < PURGE_SLICE_ROWS)
            break;
}

/* The maintenance thread's job that never waits: the database or its WAL
 * removed or replaced under the store (store_check_files()). The first
 * time, an empty write wakes the writer, which refuses it and checkpoints
 * what its open WAL holds into its open database file. */
static sqlcached_status_t wake_write(store_conn_t *w, void *arg)
{
    (void)w;
    (void)arg;
    return SQLCACHED_OK;
}

static void wake_done(void *cls, sqlcached_status_t status)
{
    (void)cls;
    (void)status;
}

/* Returns true while writes are refused for good (nothing to purge). */
static bool check_files(sqlcached_t *db)
{
    if (store_check_files(db->store) &&
        store_write_async(db->store, wake_write, NULL, NULL, wake_done, NULL) != SQLCACHED_OK)
        log_warn("store", "cannot wake the writer: it checkpoints at the next write");
    sqlcached_health_t h;
    store_health(db->store, &h);
    return h.files_moved;
}

void engine_bloom_distrust(sqlcached_t *db)
{
    kv_bloom_distrust(db->kv);
}

static void maintenance_tick(sqlcached_t *db, int64_t *last_purge)
{
    bool refusing = check_files(db);
    int64_t now = engine_now(db);
    if (db->cache)
        cache_expire_cycle(db->cache, now, EXPIRE_WORK_PER_TICK);
    if (db->item_cache)
        cache_expire_cycle(db->item_cache, now, EXPIRE_WORK_PER_TICK / 4);
    /* with watches open, an expired key's 'expire' change comes within
     * WATCH_PURGE_MS (plus a tick) of its expiry (docs/watch.md) */
    int64_t every = db->opts.purge_interval_ms;
    if (every > WATCH_PURGE_MS && watch_active(db->watch))
        every = WATCH_PURGE_MS;
    if (every > 0 && !refusing && (now - *last_purge >= every || now < *last_purge)) {
        purge_rows(db, now);
        *last_purge = now;
    }
    if (!refusing)
        watch_maintain(db->watch, now);
    kv_bloom_maintain(db);
}

static void *maintenance_main(void *arg)
{
    sqlcached_t *db = arg;
    int64_t last_purge = engine_now(db);
    kv_bloom_catch_up(db);
    pthread_mutex_lock(&db->maint_lock);
    while (!db->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long long ns = until.tv_nsec + (long long)MAINT_TICK_MS * 1000000LL;
        until.tv_sec += ns / 1000000000LL;
        until.tv_nsec = ns % 1000000000LL;
        int rc = 0;
        while (!db->stopping && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&db->maint_cond, &db->maint_lock, &until);
        if (db->stopping)
            break;
        pthread_mutex_unlock(&db->maint_lock);
        maintenance_tick(db, &last_purge);
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
    if (db->opts.purge_interval_ms == 0)
        db->opts.purge_interval_ms = 1000;
    if (pthread_create(&db->maintenance, NULL, maintenance_main, db) != 0) {
        snprintf(err, errlen, "cannot start the maintenance thread: %s", strerror(errno));
        return -1;
    }
    db->maintenance_started = true;
    return 0;
}

static void before_fill(void *arg, cache_load_t *load)
{
    (void)load;
    sqlcached_t *db = arg;
    db->opts.testing_before_fill(db->opts.testing_arg);
}

/* Two tiers out of one memory budget: KV keys, and flash-sale items (a 16th,
 * at least 1 MiB, so item ids and KV keys never share a namespace). */
static int open_cache(sqlcached_t *db, char *err, size_t errlen)
{
    cache_config_t cc;
    cache_config_init(&cc);
    if (db->opts.cache_policy) {
        cc.policy = cache_policy_from_name(db->opts.cache_policy);
        if (cc.policy == CACHE_POLICY_INVALID) {
            snprintf(err, errlen, "unknown eviction policy '%s'", db->opts.cache_policy);
            return -1;
        }
    }
    if (db->opts.negative_ttl_ms > 0)
        cc.negative_ttl_ms = db->opts.negative_ttl_ms;
    cc.disable_fill_guard = db->opts.testing_disable_fill_guard;
    if (db->opts.testing_before_fill) {
        cc.on_fill = before_fill;
        cc.on_fill_arg = db;
    }
    size_t total = db->opts.cache_memory;
    size_t items = total / 16 > ITEM_TIER_MIN ? total / 16 : ITEM_TIER_MIN;
    if (items >= total)
        items = total / 2;
    cc.memory_limit = total - items;
    db->cache = cache_create(&cc);
    cc.memory_limit = items;
    db->item_cache = db->cache ? cache_create(&cc) : NULL;
    if (!db->item_cache) {
        snprintf(err, errlen, "cannot create the memory tier (%zu bytes)", total);
        return -1;
    }
    return 0;
}

/* The memory tier (empty) and KV's state (its bloom filter is built by
 * the maintenance thread; writes feed it from now on, see bloom.h). */
static int open_memory_tier(sqlcached_t *db, char *err, size_t errlen)
{
    if (db->opts.hotkeys && !(db->hotkeys = hotkeys_create(SQLCACHED_HOTKEYS_HALF_LIFE_MS))) {
        snprintf(err, errlen, "cannot create the hot-keys table");
        return -1;
    }
    if (db->opts.cache_memory && open_cache(db, err, errlen) != 0)
        return -1;
    db->kv = kv_open(db, err, errlen);
    return db->kv ? 0 : -1;
}

/* Join the cluster of the shared database (PostgreSQL). */
static int open_cluster(sqlcached_t *db, char *err, size_t errlen)
{
    if (db->opts.member_timeout_ms < SQLCACHED_MEMBER_TIMEOUT_MIN ||
        db->opts.member_timeout_ms > SQLCACHED_MEMBER_TIMEOUT_MAX) {
        snprintf(err, errlen, "member timeout must be %d to %d ms", SQLCACHED_MEMBER_TIMEOUT_MIN,
                 SQLCACHED_MEMBER_TIMEOUT_MAX);
        return -1;
    }
    db->cluster = cluster_open(db, err, errlen);
    if (!db->cluster)
        return -1;
    lease_set_recheck(db->leases, LEASE_RECHECK_MS);
    queue_set_recheck(db->queues, LEASE_RECHECK_MS);
    return 0;
}

sqlcached_status_t sqlcached_open(const sqlcached_options_t *opts, sqlcached_t **out, char *err,
                                  size_t errlen)
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
    if ((opts->seckill_strategy != SQLCACHED_SECKILL_STOCK &&
         opts->seckill_strategy != SQLCACHED_SECKILL_VERSION &&
         opts->seckill_strategy != SQLCACHED_SECKILL_TESTING_NAIVE) ||
        opts->seckill_retries < 0 || opts->seckill_retries > SQLCACHED_SECKILL_RETRIES_MAX) {
        snprintf(err, errlen, "invalid seckill strategy or retries (0 to %d)",
                 SQLCACHED_SECKILL_RETRIES_MAX);
        return SQLCACHED_INVALID_ARGUMENT;
    }
    if (opts->on_write != SQLCACHED_ON_WRITE_REPLACE &&
        opts->on_write != SQLCACHED_ON_WRITE_INVALIDATE) {
        snprintf(err, errlen, "invalid on_write mode (replace or invalidate)");
        return SQLCACHED_INVALID_ARGUMENT;
    }
    sqlcached_t *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(opts->path ? opts->path : "sqlcached.db")) ||
        !(db->seckill = seckill_create())) {
        if (db)
            free(db->path);
        free(db);
        snprintf(err, errlen, "out of memory");
        return SQLCACHED_NOMEM;
    }
    db->opts = *opts;
    db->opts.path = db->path;
    db->started_at = engine_now(db);
    db->lock_fd = -1;
    db->advertise = strdup(opts->advertise ? opts->advertise : "");
    db->payment = payment_create(db); /* before the cluster: it may note deadlines */
    if (!db->advertise || !db->payment) {
        sqlcached_close(db);
        snprintf(err, errlen, "out of memory");
        return SQLCACHED_NOMEM;
    }
    db->opts.advertise = db->advertise;
    /* One process per SQLite file; many nodes may share one PostgreSQL. */
    bool sqlite = storage_backend_for(db->path) == &storage_sqlite;
    sqlcached_status_t st = sqlite ? dblock_acquire(db->path, &db->lock_fd, err, errlen)
                                   : SQLCACHED_OK;
    if (st != SQLCACHED_OK) {
        sqlcached_close(db);
        return st;
    }
    store_config_t cfg = {
        .path = db->path,
        .durability = opts->durability,
        .busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000,
        .max_batch = opts->max_batch,
        .max_pages = opts->testing_max_pages,
        /* 0 to the store means its default: 1 byte gives SQLite's minimum */
        .writer_cache = opts->sqlite_cache ? opts->sqlite_cache : 1,
        /* a paused node's open transaction must not hold the others'
         * writes for longer than its membership would */
        .idle_tx_timeout_ms = (int)(opts->member_timeout_ms > IDLE_TX_MIN_MS
                                        ? opts->member_timeout_ms
                                        : IDLE_TX_MIN_MS),
        .reader_cache = opts->sqlite_cache == 0                 ? 1
                        : opts->sqlite_cache < READER_CACHE_MAX ? opts->sqlite_cache
                                                                : READER_CACHE_MAX,
    };
    db->store = store_open(&cfg, err, errlen);
    if (db->store && open_memory_tier(db, err, errlen) == 0)
        db->leases = lease_registry_create(db, err, errlen);
    if (db->leases && !(db->watch = watch_hub_open(db, err, errlen))) {
        sqlcached_close(db);
        return SQLCACHED_INTERNAL;
    }
    if (db->leases && !(db->queues = queue_registry_create(db, err, errlen))) {
        sqlcached_close(db);
        return SQLCACHED_INTERNAL;
    }
    if (db->leases && !sqlite && open_cluster(db, err, errlen) != 0) {
        sqlcached_close(db);
        return SQLCACHED_UNAVAILABLE;
    }
    if (db->leases && payment_start(db->payment, err, errlen) != 0) {
        sqlcached_close(db);
        return SQLCACHED_INTERNAL;
    }
    if (!db->leases || start_maintenance(db, err, errlen) != 0) {
        sqlcached_close(db);
        return SQLCACHED_INTERNAL;
    }
    *out = db;
    return SQLCACHED_OK;
}

void sqlcached_drain(sqlcached_t *db, unsigned timeout_ms)
{
    store_drain(db->store, timeout_ms);
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
    payment_destroy(db->payment);       /* before the store: its timer writes */
    queue_registry_stop(db->queues);    /* before the store: its claims write */
    lease_registry_destroy(db->leases); /* before the store: its timer writes */
    cluster_close(db->cluster);         /* after the last write */
    queue_registry_destroy(db->queues); /* after the link thread (it wakes claims) */
    watch_hub_close(db->watch);         /* after the link thread (it kicks it) */
    store_close(db->store);
    cache_destroy(db->cache);
    cache_destroy(db->item_cache);
    kv_close(db->kv);
    hotkeys_destroy(db->hotkeys);
    seckill_destroy(db->seckill);
    dblock_release(db->lock_fd); /* last: the file is closed */
    free(db->advertise);
    free(db->path);
    free(db);
}

/* Add one tier's figures (KV keys and items are two tiers of one budget).
 * A read the tier answered absent from a negative entry is a miss: the
 * client got no value from memory (negative_hits stays as its subset). */
static void add_cache_stats(sqlcached_stats_t *out, cache_t *c)
{
    if (!c)
        return;
    cache_stats_t cs;
    cache_stats(c, &cs);
    out->cache_hits += cs.hits;
    out->cache_misses += cs.misses + cs.negative_hits;
    out->cache_evictions += cs.evictions;
    out->cache_expirations += cs.expirations;
    out->cache_entries += cs.entries;
    out->cache_memory_bytes += cs.memory;
    out->cache_memory_limit += cs.memory_limit;
    out->cache_singleflight_waits += cs.sf_waits;
    out->cache_negative_hits += cs.negative_hits;
    out->cache_fills_dropped += cs.fills_dropped;
}

void sqlcached_stats(sqlcached_t *db, sqlcached_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->cache_policy = db->opts.cache_policy ? db->opts.cache_policy : "allkeys-lfu";
    add_cache_stats(out, db->cache);
    add_cache_stats(out, db->item_cache);
    out->storage_backend = sqlcached_storage_backend(db);
    kv_stats(db->kv, out);
    out->on_write = db->opts.on_write == SQLCACHED_ON_WRITE_INVALIDATE ? "invalidate" : "replace";
    sqlcached_seckill_stats_t sk;
    sqlcached_seckill_stats(db, &sk);
    out->seckill_orders = sk.orders;
    out->seckill_sold_out = sk.sold_out;
    out->seckill_already_ordered = sk.already_ordered;
    out->seckill_conflicts = sk.conflicts;
    lease_stats(db->leases, &out->lease_acquisitions, &out->lease_waiters);
    out->leases_held = lease_count_live(db, engine_now(db));
    /* every GET not answered with a value from a memory tier is a miss:
     * bloom skips and reads past the tier too (a Redis keyspace_misses) */
    out->cache_misses +=
        out->cache_bloom_skips + atomic_load_explicit(&db->tier_bypass_reads, memory_order_relaxed);
    store_stats_t stats;
    store_stats(db->store, &stats);
    out->write_transactions = stats.write_transactions;
    out->writes_committed = stats.writes_committed;
    out->write_errors = stats.write_errors;
    if (db->cluster)
        cluster_stats(db->cluster, &out->cluster);
    sqlcached_payment_stats_t pay;
    sqlcached_payment_stats(db, &pay);
    out->orders_pending = pay.pending;
    out->orders_paid = pay.paid;
    out->orders_cancelled = pay.cancelled;
    out->orders_auto_cancelled = pay.auto_cancelled;
}

_Static_assert(HOTKEYS_KEY_MAX == SQLCACHED_KEY_MAX, "hot keys hold every key");
_Static_assert(HOTKEYS_CAPACITY == SQLCACHED_HOTKEYS_TRACKED, "documented table size");
_Static_assert(HOTKEYS_HALF_LIFE_MS == SQLCACHED_HOTKEYS_HALF_LIFE_MS, "documented half-life");

void sqlcached_hotkeys_free(sqlcached_hotkeys_t *list)
{
    free(list); /* one allocation: header, entries, key bytes */
}

/* One allocation for the list: header, n entries, then the key bytes. */
static sqlcached_hotkeys_t *hotkeys_list(const hotkeys_item_t *items, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += items[i].klen;
    sqlcached_hotkeys_t *list = malloc(sizeof *list + n * sizeof *list->keys + bytes);
    if (!list)
        return NULL;
    list->keys = (sqlcached_hotkey_t *)(list + 1);
    unsigned char *p = (unsigned char *)(list->keys + n);
    for (size_t i = 0; i < n; i++) {
        memcpy(p, items[i].key, items[i].klen);
        list->keys[i] = (sqlcached_hotkey_t){p, items[i].klen, items[i].count, items[i].error};
        p += items[i].klen;
    }
    list->n = n;
    list->enabled = 1;
    list->half_life_ms = SQLCACHED_HOTKEYS_HALF_LIFE_MS;
    return list;
}

sqlcached_status_t sqlcached_hotkeys(sqlcached_t *db, unsigned limit, sqlcached_hotkeys_t **out)
{
    *out = NULL;
    if (limit < 1 || limit > SQLCACHED_HOTKEYS_LIMIT_MAX)
        return SQLCACHED_INVALID_ARGUMENT;
    hotkeys_item_t *items = db->hotkeys ? malloc(limit * sizeof *items) : NULL;
    if (db->hotkeys && !items)
        return SQLCACHED_NOMEM;
    size_t n = db->hotkeys ? hotkeys_top(db->hotkeys, engine_now(db), items, limit) : 0;
    *out = hotkeys_list(items, n);
    free(items);
    if (!*out)
        return SQLCACHED_NOMEM;
    (*out)->enabled = db->hotkeys != NULL;
    return SQLCACHED_OK;
}

sqlcached_status_t sqlcached_cluster_members(sqlcached_t *db, int64_t *self, sqlcached_member_fn fn,
                                             void *cls)
{
    if (db->cluster) {
        *self = cluster_node_id(db->cluster);
        return cluster_members(db->cluster, fn, cls);
    }
    *self = 1;
    sqlcached_member_t me = {
        .id = 1,
        .address = db->opts.advertise ? db->opts.advertise : "",
        .up = 1,
        .heartbeat_at = engine_now(db),
        .started_at = db->started_at,
    };
    fn(cls, &me);
    return SQLCACHED_OK;
}

void sqlcached_health(sqlcached_t *db, sqlcached_health_t *out)
{
    store_health(db->store, out);
}

const char *sqlcached_storage_backend(const sqlcached_t *db)
{
    return store_backend_name(db->store);
}

/* ------------------------------------------------------------------------
 * Policy names and the log level, for users that see only sqlcached.h
 * ------------------------------------------------------------------------ */

int sqlcached_policy_valid(const char *name)
{
    return name && cache_policy_from_name(name) != CACHE_POLICY_INVALID;
}

void sqlcached_set_log_level(sqlcached_log_level_t level)
{
    log_set_level((log_level_t)level);
}
