/*
 * kv_int.h - the parts of kv.c that other domain modules writing KV rows
 * (txn.c) share, so that every KV write keeps one set of rules: the
 * after-commit path of the memory tier and the bloom filter (--on-write),
 * content types, TTL jitter, the integer format of incr. Not public.
 */
#ifndef SQLCACHED_KV_INT_H
#define SQLCACHED_KV_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdatomic.h>

#include "bloom.h"
#include "cache.h"
#include "kv.h"
#include "sqlcached.h"

/* KV's state (kv.h), shared by kv.c and kv_state.c only. */
struct kv {
    bloom_t *bloom;                   /* NULL when bloom_filter is 0 */
    atomic_bool bloom_ready;          /* set once a build from the store is done */
    atomic_uint_fast64_t bloom_drops; /* kv_bloom_distrust() calls */
    atomic_uint_fast64_t bloom_skips;
    atomic_uint_fast64_t storage_reads;
    atomic_uint_fast64_t write_replaced, write_invalidated; /* kv.c after_commit */
    atomic_uint_fast64_t jitter_rng;
};

/* The content type of a PUT without one, and of a counter incr creates. */
extern const char kv_default_content_type[];
extern const char kv_counter_content_type[];

/* After a committed write of key, on the writer thread, in commit order,
 * before any answer: the memory tier and the bloom filter learn it
 * (written = the new row, NULL for a delete). See after_commit in kv.c.
 * Cannot fail. */
void kv_after_commit(sqlcached_t *db, const void *key, size_t klen, const cache_fill_t *written,
                     int64_t now);

/* 1..SQLCACHED_CONTENT_TYPE_MAX printable ASCII characters? Pure. */
bool kv_content_type_ok(const char *content_type);

/* The expiry of a write at `now` with ttl_ms > 0 (jittered as a PUT's). */
int64_t kv_expiry(sqlcached_t *db, int64_t now, int64_t ttl_ms);

/* A whole buffer as a base-10 int64 (incr's format); false otherwise. */
bool kv_parse_int64(const void *p, size_t n, int64_t *out);

#endif
