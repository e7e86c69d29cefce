/*
 * kv.h - the key-value module's own state (kv_t), like seckill_t and
 * lease_registry_t for theirs: the bloom filter of keys and whether it may
 * be trusted, the TTL-jitter generator and KV's counters (reads that went
 * to the store, reads the bloom filter answered, the tier's write
 * outcomes). The store's hub (engine.h) holds the handle; the KV calls are
 * the public sqlcached_kv_* (kv.c). Not public.
 *
 * Lifetime: kv_open() after the store is open (the filter is sized from
 * the number of keys), kv_close() after the last write. Everything in it
 * is atomic or the bloom filter's own (bloom.h): no lock.
 */
#ifndef SQLCACHED_KV_H
#define SQLCACHED_KV_H

#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"

typedef struct kv kv_t;

/* KV's state for db (db->opts and db->store are read): NULL with a
 * message in err on a bad setting or no memory. Caller kv_close()s it. */
kv_t *kv_open(sqlcached_t *db, char *err, size_t errlen);

/* Free it (NULL is fine). */
void kv_close(kv_t *kv);

/* A key another node wrote: the bloom filter learns it. */
void kv_note_key(kv_t *kv, const void *key, size_t klen);

/* The bloom filter may miss keys (a cluster node that missed messages):
 * not consulted until kv_bloom_catch_up() has rebuilt it. */
void kv_bloom_distrust(kv_t *kv);

/* On the maintenance thread: rebuild the bloom filter when it is not
 * ready (at the start, after kv_bloom_distrust); ready only if no distrust
 * came during the build. */
void kv_bloom_catch_up(sqlcached_t *db);

/* On the maintenance thread, each tick: rebuild the bloom filter when too
 * much of it is stale (deletes), then kv_bloom_catch_up(). */
void kv_bloom_maintain(sqlcached_t *db);

/* KV's figures into out: storage_reads, cache_bloom_skips,
 * cache_write_replaced, cache_write_invalidated. */
void kv_stats(const kv_t *kv, sqlcached_stats_t *out);

/* kv.c: delete up to `max_rows` expired rows; returns how many went, or -1. */
int kv_purge_expired(sqlcached_t *db, int64_t now, int max_rows);

/* kv.c: (re)fill the bloom filter from every key in the store; 0 or -1. */
int kv_bloom_rebuild(sqlcached_t *db);

#endif
