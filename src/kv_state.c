/*
 * kv_state.c - KV's own state (kv.h): opening and closing it, the bloom
 * filter's readiness and upkeep, the figures for sqlcached_stats. The KV
 * calls that use it are in kv.c; the struct is in kv_int.h.
 *
 * The bloom filter is sized at open for twice the keys the store holds
 * (at least BLOOM_MIN_CAPACITY) and starts not ready: the maintenance
 * thread fills it from the store (kv_bloom_catch_up) while writes already
 * feed it, and until then reads do not consult it. A cluster node that may
 * have missed other nodes' keys makes it not ready again
 * (kv_bloom_distrust); a rebuild that saw such a call meanwhile does not
 * make it ready (bloom_drops).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"
#include "kv_int.h"
#include "storage.h"

#define BLOOM_MIN_CAPACITY (1u << 20)
#define BLOOM_FP_RATE 0.01
#define BLOOM_STALE_REBUILD 0.25

/* An upper bound of the number of keys, without a scan. */
static long long count_keys(sqlcached_t *db)
{
    store_conn_t *r = store_reader_acquire(db->store);
    int64_t n = -1;
    if (r && storage_kv_count_bound(r, &n) != SQLCACHED_OK)
        n = -1;
    store_reader_release(db->store, r);
    return n;
}

kv_t *kv_open(sqlcached_t *db, char *err, size_t errlen)
{
    if (db->opts.ttl_jitter_percent > 50) {
        snprintf(err, errlen, "TTL jitter must be 0 to 50 percent");
        return NULL;
    }
    kv_t *kv = calloc(1, sizeof *kv);
    if (!kv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&kv->jitter_rng, (uint64_t)engine_now(db) | 1);
    if (!db->opts.bloom_filter)
        return kv;
    long long keys = count_keys(db);
    size_t capacity = keys > BLOOM_MIN_CAPACITY / 2 ? (size_t)keys * 2 : BLOOM_MIN_CAPACITY;
    if (keys < 0 || !(kv->bloom = bloom_create(capacity, BLOOM_FP_RATE))) {
        snprintf(err, errlen, "cannot build the bloom filter of keys");
        free(kv);
        return NULL;
    }
    return kv;
}

void kv_close(kv_t *kv)
{
    if (!kv)
        return;
    bloom_destroy(kv->bloom);
    free(kv);
}

void kv_note_key(kv_t *kv, const void *key, size_t klen)
{
    if (kv->bloom)
        bloom_add(kv->bloom, key, klen);
}

void kv_bloom_distrust(kv_t *kv)
{
    if (!kv->bloom)
        return;
    atomic_fetch_add(&kv->bloom_drops, 1); /* first: see kv_bloom_catch_up */
    atomic_store_explicit(&kv->bloom_ready, false, memory_order_release);
}

void kv_bloom_catch_up(sqlcached_t *db)
{
    kv_t *kv = db->kv;
    if (!kv->bloom || atomic_load_explicit(&kv->bloom_ready, memory_order_acquire))
        return;
    uint64_t drops = atomic_load(&kv->bloom_drops);
    if (kv_bloom_rebuild(db) == 0 && atomic_load(&kv->bloom_drops) == drops)
        atomic_store_explicit(&kv->bloom_ready, true, memory_order_release);
}

void kv_bloom_maintain(sqlcached_t *db)
{
    if (db->kv->bloom && bloom_stale_ratio(db->kv->bloom) > BLOOM_STALE_REBUILD)
        kv_bloom_rebuild(db);
    kv_bloom_catch_up(db);
}

void kv_stats(const kv_t *kv, sqlcached_stats_t *out)
{
    out->storage_reads = atomic_load_explicit(&kv->storage_reads, memory_order_relaxed);
    out->cache_write_replaced = atomic_load_explicit(&kv->write_replaced, memory_order_relaxed);
    out->cache_write_invalidated =
        atomic_load_explicit(&kv->write_invalidated, memory_order_relaxed);
    out->cache_bloom_skips = atomic_load_explicit(&kv->bloom_skips, memory_order_relaxed);
}
