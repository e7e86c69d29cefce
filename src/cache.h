/*
 * cache.h - the memory tier: a sharded, size-bounded hash table of immutable
 * refcounted entries with Redis-named eviction policies, TTLs, negative
 * entries and a single-flight read path with a fill guard.
 *
 * No SQL and no HTTP here. Times are passed in as milliseconds (now_ms) and
 * the cache never reads the clock for expiry; only the bounded single-flight
 * wait uses the monotonic clock.
 *
 * Typical read path (what the KV layer does):
 *
 *     cache_value_t *v; cache_load_t *ld;
 *     switch (cache_fetch(c, key, klen, now, &v, &ld)) {
 *     case CACHE_HIT:      answer(v); cache_value_release(v); break;
 *     case CACHE_NEGATIVE: answer_404(); break;
 *     case CACHE_LEAD:     row = read_db(key);
 *                          cache_load_finish(c, ld, row ? &fill : NULL, now);
 *                          break;
 *     default:             answer_503();
 *     }
 *
 * Write path: commit to the database, then cache_invalidate(c, key, klen),
 * or cache_replace() with the value written.
 */
#ifndef SQLCACHED_CACHE_H
#define SQLCACHED_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cache cache_t;
typedef struct cache_value cache_value_t;
typedef struct cache_load cache_load_t;

/* Outcomes. CACHE_OK is 0; the fetch outcomes are distinct values. */
typedef enum cache_outcome {
    CACHE_OK = 0,   /* stored */
    CACHE_HIT,      /* fetch/get: a value reference was returned */
    CACHE_NEGATIVE, /* fetch/get: the key is known to be absent */
    CACHE_LEAD,     /* fetch: miss; the caller loads and must finish */
    CACHE_MISS,     /* get: nothing cached */
    CACHE_DROPPED,  /* fill refused: the key was invalidated during load */
    CACHE_OLDER,    /* store refused: a higher version is cached */
    CACHE_FULL,     /* not admitted: nothing evictable under the policy */
    CACHE_TOOBIG,   /* the entry alone exceeds a shard's limit */
    CACHE_NOMEM,    /* allocation failed; nothing changed */
    CACHE_EINVAL    /* bad argument (empty or over-long key) */
} cache_outcome_t;

typedef enum cache_policy {
    CACHE_POLICY_INVALID = -1,
    CACHE_POLICY_NOEVICTION = 0,
    CACHE_POLICY_ALLKEYS_LRU,
    CACHE_POLICY_VOLATILE_LRU,
    CACHE_POLICY_ALLKEYS_LFU,
    CACHE_POLICY_VOLATILE_LFU,
    CACHE_POLICY_ALLKEYS_RANDOM,
    CACHE_POLICY_VOLATILE_RANDOM,
    CACHE_POLICY_VOLATILE_TTL,
    CACHE_POLICY_COUNT
} cache_policy_t;

/* Longest key accepted, in bytes. */
#define CACHE_KEY_MAX 65535u

typedef struct cache_config {
    size_t memory_limit;     /* bytes, all shards together; 0 = no byte limit */
    size_t max_entries;      /* entries, all shards together; 0 = no count limit */
    unsigned shards;         /* 1..1024; default 16 */
    cache_policy_t policy;   /* default allkeys-lfu */
    int64_t negative_ttl_ms; /* lifetime of negative entries; default 5000 */
    int64_t load_wait_ms;    /* single-flight wait bound; default 2000 */
    uint64_t seed;           /* hashing and random eviction; default fixed */
    int disable_fill_guard;  /* tests only: let stale fills through */
    /* Test seam: called by cache_load_finish before it takes the shard
     * lock, so a test can run an invalidation exactly there. */
    void (*on_fill)(void *arg, cache_load_t *load);
    void *on_fill_arg;
} cache_config_t;

/* What a load or a store puts in the cache. The bytes are copied. */
typedef struct cache_fill {
    const void *data;
    size_t len;
    const char *content_type; /* NULL = "" */
    int64_t version;
    int64_t expires_at; /* absolute ms; 0 = no TTL */
    int64_t sliding_ms; /* > 0 (with expires_at): kept with the value
                                 for cache_value_sliding(); 0 = not sliding */
} cache_fill_t;

typedef struct cache_stats {
    uint64_t hits;
    uint64_t misses; /* fetch LEADs plus get misses */
    uint64_t negative_hits;
    uint64_t evictions;
    uint64_t expirations;   /* lazy plus active */
    uint64_t rejected;      /* stores not admitted (FULL/TOOBIG) */
    uint64_t sf_waits;      /* fetches that waited for another loader */
    uint64_t sf_timeouts;   /* waits that gave up and became loaders */
    uint64_t fills_dropped; /* fills refused by the guard */
    uint64_t entries;
    uint64_t memory; /* accounted bytes (entries + structures) */
    uint64_t memory_limit;
} cache_stats_t;

/* Fills *cfg with the defaults. Cannot fail. */
void cache_config_init(cache_config_t *cfg);

/* Returns a new cache, or NULL on allocation failure or a bad config
 * (no limit at all, shard count out of range, unknown policy). The config
 * is copied. */
cache_t *cache_create(const cache_config_t *cfg);

/* Frees every entry the cache holds. Values still referenced by callers
 * stay valid until released. Outstanding loads must be finished first. */
void cache_destroy(cache_t *c);

/*
 * The read path with single-flight. Returns:
 *   CACHE_HIT       *value holds a reference; release it.
 *   CACHE_NEGATIVE  a negative entry says the key is absent.
 *   CACHE_LEAD      a miss; *load is the caller's ticket, which it must pass
 *                   to cache_load_finish() or cache_load_abandon().
 *   CACHE_NOMEM, CACHE_EINVAL  nothing returned.
 * When another thread is loading the key, the call waits for it (counted in
 * sf_waits) and then looks again. The wait is bounded by load_wait_ms: after
 * that the caller gets CACHE_LEAD with its own ticket (counted in
 * sf_timeouts); the fill guard still protects that ticket, only the
 * one-loader-per-key guarantee is given up.
 */
cache_outcome_t cache_fetch(cache_t *c, const void *key, size_t klen, int64_t now_ms,
                            cache_value_t **value, cache_load_t **load);

/*
 * Ends a load: stores fill, or a negative entry (expiring after
 * negative_ttl_ms) when fill is NULL, then wakes the waiters. Takes
 * ownership of load and frees it in every case. Returns CACHE_OK,
 * CACHE_DROPPED (the key was invalidated after the load began),
 * CACHE_OLDER (a higher version is cached), CACHE_FULL, CACHE_TOOBIG or
 * CACHE_NOMEM; in all but CACHE_OK nothing was stored.
 */
cache_outcome_t cache_load_finish(cache_t *c, cache_load_t *load, const cache_fill_t *fill,
                                  int64_t now_ms);

/* Ends a load without storing anything (the source failed). One waiter
 * becomes the next loader. Takes ownership of load. Cannot fail. */
void cache_load_abandon(cache_t *c, cache_load_t *load);

/* Key of a load ticket (borrowed; valid until the ticket is finished). */
const void *cache_load_key(const cache_load_t *load, size_t *klen);

/* Plain lookup without single-flight: CACHE_HIT (with *value), CACHE_NEGATIVE,
 * CACHE_MISS or CACHE_EINVAL. */
cache_outcome_t cache_get(cache_t *c, const void *key, size_t klen, int64_t now_ms,
                          cache_value_t **value);

/* Unguarded store (only the version check applies): for callers that know
 * the value is current. Same returns as cache_load_finish. */
cache_outcome_t cache_set(cache_t *c, const void *key, size_t klen, const cache_fill_t *fill,
                          int64_t now_ms);

/* Removes the key (positive or negative entry) and marks every load of the
 * key in flight as stale, so its fill is dropped. Call after the database
 * commit. Returns 1 if an entry was removed, 0 if none. Cannot fail. */
int cache_invalidate(cache_t *c, const void *key, size_t klen);

/* Removes every entry and marks every load in flight stale (their fills
 * are dropped): the tier forgets all it knew. */
void cache_clear(cache_t *c);

/* After a committed write of the key with the value in fill: when the key
 * has an entry (a value, or a negative entry: it is being read), replaces
 * it (so a key that is read stays in memory across its writes); otherwise does what cache_invalidate does, without
 * admitting the key. Either way every load of the key in flight is marked
 * stale. Call after the database commit, in commit order (the writes of
 * one key must not be replaced out of order). Returns CACHE_OK (stored),
 * CACHE_MISS (nothing was cached: only invalidated), CACHE_OLDER (a
 * higher version is cached and stays), or CACHE_FULL, CACHE_TOOBIG,
 * CACHE_NOMEM, CACHE_EINVAL (not stored, and no older copy is left). */
cache_outcome_t cache_replace(cache_t *c, const void *key, size_t klen, const cache_fill_t *fill,
                              int64_t now_ms);

/* Active expiry: removes entries whose expiry is <= now_ms, soonest first,
 * looking at no more than max_work entries in total across shards (each
 * call resumes at the next shard). Returns the number removed. */
size_t cache_expire_cycle(cache_t *c, int64_t now_ms, size_t max_work);

/* Returns ttl_ms spread uniformly within +-percent, to keep keys written
 * together from expiring together. *rng is any nonzero state; updated. */
int64_t cache_jitter_ttl(int64_t ttl_ms, unsigned percent, uint64_t *rng);

/* Snapshot of the counters (not atomic across shards). Cannot fail. */
void cache_stats(cache_t *c, cache_stats_t *out);

/* Policy names as Redis spells them; from_name returns CACHE_POLICY_INVALID
 * for an unknown name, name returns NULL for an invalid policy. */
cache_policy_t cache_policy_from_name(const char *name);
const char *cache_policy_name(cache_policy_t policy);
const char *cache_outcome_name(cache_outcome_t outcome);

/* Values: immutable once cached; the accessors read without locking. */
const void *cache_value_data(const cache_value_t *v);
size_t cache_value_len(const cache_value_t *v);
int64_t cache_value_version(const cache_value_t *v);
const char *cache_value_content_type(const cache_value_t *v);
/* A value stored with sliding_ms > 0 and an expiry: true, with both as
 * they were stored (immutable; the entry expires at *expires_at). */
bool cache_value_sliding(const cache_value_t *v, int64_t *expires_at, int64_t *sliding_ms);
void cache_value_retain(cache_value_t *v);
/* Drops one reference; the last one frees the value. NULL is a no-op. */
void cache_value_release(cache_value_t *v);

#endif
