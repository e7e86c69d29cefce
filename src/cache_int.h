/*
 * cache_int.h - internals shared by cache.c (entries, read path),
 * cache_table.c (slots, hash table) and cache_policy.c (eviction). Not
 * part of the public API.
 *
 * Names: the functions declared here start with ci_, so that a reader
 * tells them from cache.h's interface (cache_*); ci_do_* run with the
 * shard's lock held by the caller (as do all of cache_table.c's).
 *
 * Memory layout of one entry, chosen to keep the per-entry overhead small:
 *
 *   cache_value_t (one malloc): 20-byte header | key | value | [heap slot
 *   index, 4 bytes, only when the entry has a TTL] | [content type + NUL,
 *   only when it could not be interned]
 *
 *   struct slot (12 bytes, in per-shard pages of 256): the value pointer
 *   compressed to 46 bits, the two 24-bit links of the entry's policy list
 *   (slot indices) and the list the entry is in (2 bits).
 *
 *   hash table: 4 bytes per bucket (24-bit slot index + 8-bit probe
 *   distance), Robin Hood with linear probing and backward-shift deletion;
 *   it grows above a load of 0.93 and shrinks below 0.25, each time to a
 *   load of about 0.87 (cache_table.c).
 *
 *   TTL heap: for entries with a TTL only, (expires_at, slot) pairs in a
 *   binary min-heap; the value remembers its heap position.
 *
 * Every field of a shard is protected by the shard's mutex. The immutable
 * parts of a value (lengths, version, key, data, content type) are read
 * without locks by whoever holds a reference; the mutable heap position is
 * only touched under the lock while the entry is in the table.
 */
#ifndef SQLCACHED_CACHE_INT_H
#define SQLCACHED_CACHE_INT_H

#include "cache.h"
#include "sketch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* ---- values ------------------------------------------------------------ */

#define VAL_NEGATIVE 0x01u  /* negative entry: the key is absent */
#define VAL_TTL 0x02u       /* a heap position follows the value bytes */
#define VAL_CTYPE_INL 0x04u /* the content type string follows */
#define VAL_SLIDE                                                                                  \
    0x08u /* a sliding trailer (expires_at, sliding_ms: two
                                int64, unaligned) follows the heap position */

struct cache_value {
    atomic_uint refs;
    uint32_t vlen;
    uint32_t ver_lo, ver_hi; /* split so the header stays 4-aligned, 20 B */
    uint16_t klen;
    uint8_t ctype;         /* interned content type index, 0 = "" */
    uint8_t flags;         /* VAL_*, immutable */
    unsigned char bytes[]; /* key, value, then the optional trailers */
};

static inline const unsigned char *val_key(const cache_value_t *v)
{
    return v->bytes;
}

/* Heap position trailer (VAL_TTL only). Unaligned, so memcpy. */
static inline uint32_t val_heap_pos(const cache_value_t *v)
{
    uint32_t pos;
    __builtin_memcpy(&pos, v->bytes + v->klen + v->vlen, sizeof(pos));
    return pos;
}

static inline void val_set_heap_pos(cache_value_t *v, uint32_t pos)
{
    __builtin_memcpy(v->bytes + v->klen + v->vlen, &pos, sizeof(pos));
}

/* ---- slots and lists ----------------------------------------------------- */

#define IDX_BITS 24
#define IDX_MASK ((1u << IDX_BITS) - 1)
#define MAX_SLOTS IDX_MASK
#define PAGE_SHIFT 8
#define PAGE_SLOTS (1u << PAGE_SHIFT)

/* Lists. Slot indices 0..NLISTS-1 are their sentinels (circular lists). For
 * the LRU-ordered policies list 0 holds entries (volatile-lru: only those
 * with a TTL; list 1 the rest). allkeys-lfu uses all three as W-TinyLFU's
 * window, probation and protected segments. */
#define NLISTS 3
#define LIST_WINDOW 0
#define LIST_PROBATION 1
#define LIST_PROTECTED 2
#define FIRST_SLOT NLISTS

/* A slot is 12 bytes: three 32-bit words holding the two 24-bit links, the
 * list (2 bits) and the value pointer compressed to 46 bits (malloc
 * returns 16-byte aligned addresses, and user addresses on the 64-bit
 * targets we run on are below 2^48, so pointer >> 4 fits; value_new()
 * refuses, as out of memory, a pointer that would not).
 *   w[0] = prev | ptr bits 0..7 << 24
 *   w[1] = next | list << 24 | ptr bits 8..13 << 26
 *   w[2] = ptr bits 14..45
 */
struct slot {
    uint32_t w[3];
};

#define PTR_SHIFT 4
#define PTR_BITS 46

static inline bool ptr_packable(const void *p)
{
    uintptr_t u = (uintptr_t)p;
    return (u & ((1u << PTR_SHIFT) - 1)) == 0 && (uint64_t)u >> (PTR_SHIFT + PTR_BITS) == 0;
}

static inline cache_value_t *slot_val(const struct slot *sl)
{
    uint64_t c = (uint64_t)(sl->w[0] >> 24) | (uint64_t)(sl->w[1] >> 26) << 8 |
                 (uint64_t)sl->w[2] << 14;
    return (cache_value_t *)(uintptr_t)(c << PTR_SHIFT);
}

static inline void slot_set_val(struct slot *sl, const cache_value_t *v)
{
    uint64_t c = (uint64_t)(uintptr_t)v >> PTR_SHIFT;

    sl->w[0] = (sl->w[0] & IDX_MASK) | (uint32_t)(c & 0xff) << 24;
    sl->w[1] = (sl->w[1] & 0x03ffffffu) | (uint32_t)(c >> 8 & 0x3f) << 26;
    sl->w[2] = (uint32_t)(c >> 14);
}

static inline uint32_t slot_prev(const struct slot *sl)
{
    return sl->w[0] & IDX_MASK;
}

static inline void slot_set_prev(struct slot *sl, uint32_t idx)
{
    sl->w[0] = (sl->w[0] & ~IDX_MASK) | idx;
}

static inline uint32_t slot_next(const struct slot *sl)
{
    return sl->w[1] & IDX_MASK;
}

static inline unsigned slot_list(const struct slot *sl)
{
    return sl->w[1] >> IDX_BITS & 3;
}

static inline void slot_set_next(struct slot *sl, uint32_t idx, unsigned list)
{
    sl->w[1] = (sl->w[1] & 0xfc000000u) | idx | (uint32_t)list << IDX_BITS;
}

/* ---- single-flight ------------------------------------------------------ */

struct cache_load {
    struct cache_load *next; /* shard's in-flight list */
    uint64_t hash;
    unsigned refs; /* owner + waiters, under the shard lock */
    bool done;     /* finished or abandoned */
    bool stale;    /* invalidated since it began */
    bool leader;   /* waiters wait for it (not a timeout loader) */
    uint32_t klen;
    unsigned char key[];
};

/* ---- shard ---------------------------------------------------------------- */

/* W-TinyLFU ghosts (cache_policy.c): keys that recently left the cache,
 * which steer the window size. */
struct ghosts {
    uint32_t *slot;      /* direct-mapped, 0 = empty */
    uint32_t n;          /* slots */
    uint32_t wseq, mseq; /* departures from the window / from main */
};

struct shard {
    pthread_mutex_t lock;
    pthread_cond_t loaded; /* broadcast when a load ends */

    uint32_t *table; /* buckets: 0 empty, else slot | distance << 24 */
    uint32_t tcap;
    uint32_t count; /* live entries */

    struct slot **pages;
    uint32_t npages;
    uint32_t free_slot;   /* free list through .next; 0 = none */
    uint32_t next_unused; /* first never-used slot */

    int64_t *hexp; /* TTL heap */
    uint32_t *hslot;
    uint32_t hcount, hcap;

    size_t mem;         /* accounted bytes */
    size_t entry_bytes; /* sum of entry charges (part of mem) */
    size_t vol_bytes;   /* charges of entries with a TTL */
    size_t limit;       /* bytes; 0 = none */
    size_t max_entries; /* 0 = none */

    uint64_t seg_weight[NLISTS]; /* LFU: weight per segment */
    double window_frac;          /* LFU: window share of the capacity */
    sketch_t sketch;
    struct ghosts ghost;
    uint64_t rng;

    struct cache_load *inflight;

    uint64_t hits, misses, negative_hits, evictions, expirations, rejected;
    uint64_t sf_waits, sf_timeouts, fills_dropped;
};

struct cache {
    cache_config_t cfg;
    unsigned nshards;
    atomic_uint expire_cursor;
    struct shard shards[];
};

/* ---- helpers shared by cache.c and cache_policy.c ------------------------ */

static inline struct slot *slot_at(const struct shard *s, uint32_t idx)
{
    return &s->pages[idx >> PAGE_SHIFT][idx & (PAGE_SLOTS - 1)];
}

/* Bytes an allocation of n bytes costs: glibc's chunk (8-byte header,
 * 16-byte granularity, 32-byte minimum). */
static inline size_t alloc_cost(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

size_t ci_entry_charge(const cache_value_t *v);
uint64_t ci_entry_weight(const struct shard *s, const cache_value_t *v);
uint64_t ci_shard_capacity(const struct shard *s);
uint64_t ci_key_hash(const cache_t *c, const void *key, size_t klen);
uint64_t ci_slot_hash(const cache_t *c, const struct shard *s, uint32_t idx);
uint64_t ci_rng_next(uint64_t *state);

/* Removes the entry in slot idx from the table, its list and the heap and
 * drops the table's reference. Caller holds the lock. */
void ci_do_unlink_entry(cache_t *c, struct shard *s, uint32_t idx);

/* policy (cache_policy.c); the caller holds the shard lock */
void ci_policy_init(cache_t *c, struct shard *s);
void ci_policy_record(cache_t *c, struct shard *s, uint64_t hash);
void ci_policy_insert(cache_t *c, struct shard *s, uint32_t idx);
void ci_policy_hit(cache_t *c, struct shard *s, uint32_t idx);
void ci_policy_unlink(struct shard *s, uint32_t idx);
/* Whether evicting can free need_bytes and need_entries for a new entry. */
bool ci_policy_reclaimable(cache_t *c, struct shard *s, size_t need_bytes, size_t need_entries);
/* Bytes allocated by the policy's structures (sketch, ghosts). */
size_t ci_policy_bytes(const struct shard *s);
/* Frees them. */
void ci_policy_free(struct shard *s);
/* Bytes the policy's structures grow by on one more insert, and the
 * allocation doing it (0 or -1). */
size_t ci_policy_growth_bytes(const cache_t *c, const struct shard *s);
int ci_policy_reserve(const cache_t *c, struct shard *s);
/* Evicts until the shard is within its limits. Returns false if that is
 * impossible without evicting `newest` (left in place for the caller to
 * remove). W-TinyLFU may evict `newest` itself like any other entry. */
bool ci_do_evict(cache_t *c, struct shard *s, uint32_t newest);

/* Accounting and values (cache.c). */
void ci_update_mem(struct shard *s);
bool ci_value_is(const cache_value_t *v, const void *key, size_t klen);

/* Slots and the hash table (cache_table.c); the caller holds the shard
 * lock. Slots: add a page of PAGE_SLOTS (0 or -1), whether one is free,
 * take one (one must be available), give one back. */
int ci_add_page(struct shard *s);
bool ci_slot_available(const struct shard *s);
uint32_t ci_slot_take(struct shard *s);
void ci_slot_put(struct shard *s, uint32_t idx);
/* The bucket holding key (hash h), or UINT32_MAX. */
uint32_t ci_table_find(const struct shard *s, const void *key, size_t klen, uint64_t h);
/* The bucket holding slot idx, which is in the table. */
uint32_t ci_table_find_slot(const struct shard *s, uint64_t h, uint32_t idx);
/* Places slot idx (the table has room); false if a probe distance would
 * overflow (the table must grow; nothing changed). */
bool ci_table_place(uint32_t *table, uint32_t tcap, uint32_t idx, uint64_t h);
/* Empties bucket i (backward shift). */
void ci_table_delete(struct shard *s, uint32_t i);
/* Rebuilds the table with ncap buckets: 0, or -1 (unchanged). */
int ci_table_resize(const cache_t *c, struct shard *s, uint32_t ncap);
/* Buckets for n entries; whether one more entry needs a larger table. */
uint32_t ci_grown_cap(uint32_t n);
bool ci_table_needs_growth(const struct shard *s);

void ci_list_init(struct shard *s);
void ci_list_push_front(struct shard *s, unsigned list, uint32_t idx);
void ci_list_remove(struct shard *s, uint32_t idx);
uint32_t ci_list_back(const struct shard *s, unsigned list);

#endif
