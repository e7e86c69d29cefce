/*
 * cache.c - the memory tier: sharded hash table, entries, TTL, memory
 * accounting and the single-flight read path. Eviction lives in
 * cache_policy.c, the frequency sketch in sketch.c.
 *
 * Data structure (details in cache_int.h): keys hash to one of `nshards`
 * shards; each shard has its own mutex, a Robin Hood hash table of 32-bit
 * buckets pointing into an array of 12-byte slots, the policy lists threaded
 * through the slots, and a min-heap of the entries that have a TTL. An entry
 * is one malloc'd cache_value_t holding header, key and value; the table
 * owns one reference and readers take more, so a value evicted while an
 * HTTP response still sends it stays valid until released.
 *
 * Invariants, under the shard lock:
 *   - count == number of non-empty buckets == number of slots with a value;
 *   - mem == entry_bytes + bytes of the shard's own structures, and
 *     mem <= limit and count <= max_entries after every call returns;
 *   - an entry is in the heap iff it has a TTL (VAL_TTL).
 *
 * Fill guard: every load in flight is registered on its shard. An
 * invalidation of a key marks the registered loads of that key stale, and
 * a stale load's fill is dropped. Because a load is registered before the
 * loader reads the database, a write that commits after that read always
 * invalidates after the registration, so it either marks the load or (if
 * the fill came first) removes the filled entry.
 *
 * Locking: one shard lock at a time, never nested. cache_value_release()
 * needs no lock (atomic refcount).
 */
#include "cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ======================================================================
 * Hashing and random numbers
 * ====================================================================== */

static uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

uint64_t ci_key_hash(const cache_t *c, const void *key, size_t klen)
{
    const unsigned char *p = key;
    uint64_t h = c->cfg.seed ^ (klen * 0x9e3779b97f4a7c15ull), w;

    for (; klen >= 8; klen -= 8, p += 8) {
        memcpy(&w, p, 8);
        h ^= fmix64(w);
        h = (h << 27 | h >> 37) * 0x9e3779b97f4a7c15ull;
    }
    w = 0;
    memcpy(&w, p, klen);
    return fmix64(h ^ w ^ (uint64_t)klen << 56);
}

uint64_t ci_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static struct shard *shard_of(cache_t *c, uint64_t h)
{
    return &c->shards[((h >> 32) * c->nshards) >> 32];
}

/* ======================================================================
 * Content types: interned process-wide into a fixed static table (no
 * per-cache memory, nothing to free). Index 0 is "". A type that does not
 * fit (too long, table full) is stored inline after the value instead.
 * ====================================================================== */

#define CTYPE_SLOTS 255
#define CTYPE_LEN 64

static char ctype_names[CTYPE_SLOTS][CTYPE_LEN];
static atomic_uint ctype_count = 1;
static pthread_mutex_t ctype_lock = PTHREAD_MUTEX_INITIALIZER;

static int ctype_find(const char *name, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        if (strcmp(ctype_names[i], name) == 0)
            return (int)i;
    return -1;
}

/* Returns the interned index of name, or -1 if it has to go inline. */
static int ctype_intern(const char *name)
{
    int i;

    if (name == NULL || *name == '\0')
        return 0;
    if (strlen(name) >= CTYPE_LEN)
        return -1;
    i = ctype_find(name, atomic_load_explicit(&ctype_count, memory_order_acquire));
    if (i >= 0)
        return i;
    pthread_mutex_lock(&ctype_lock);
    unsigned n = atomic_load_explicit(&ctype_count, memory_order_relaxed);
    i = ctype_find(name, n);
    if (i < 0 && n < CTYPE_SLOTS) {
        strcpy(ctype_names[n], name);
        atomic_store_explicit(&ctype_count, n + 1, memory_order_release);
        i = (int)n;
    }
    pthread_mutex_unlock(&ctype_lock);
    return i;
}

/* ======================================================================
 * Values
 * ====================================================================== */

#define SLIDE_LEN (2 * sizeof(int64_t))

/* Offset of the content type trailer after key and value. */
static size_t ctype_offset(const cache_value_t *v)
{
    return ((v->flags & VAL_TTL) ? sizeof(uint32_t) : 0) + ((v->flags & VAL_SLIDE) ? SLIDE_LEN : 0);
}

static size_t trailer_size(const cache_value_t *v)
{
    size_t n = ctype_offset(v);
    if (v->flags & VAL_CTYPE_INL)
        n += strlen((const char *)v->bytes + v->klen + v->vlen + n) + 1;
    return n;
}

size_t ci_entry_charge(const cache_value_t *v)
{
    return alloc_cost(sizeof(*v) + v->klen + v->vlen + trailer_size(v));
}

/* Builds a value holding one reference. Returns NULL on allocation
 * failure. fill may be NULL for a negative entry. */
static cache_value_t *value_new(const void *key, size_t klen, const cache_fill_t *fill, bool ttl)
{
    const char *ct = fill ? fill->content_type : NULL;
    size_t vlen = fill ? fill->len : 0;
    int ci = ctype_intern(ct);
    size_t ctl = ci < 0 ? strlen(ct) + 1 : 0;
    bool slide = fill && fill->sliding_ms > 0 && ttl;
    size_t ttl_len = (ttl ? sizeof(uint32_t) : 0) + (slide ? SLIDE_LEN : 0);
    cache_value_t *v;

    if (vlen > UINT32_MAX)
        return NULL;
    v = malloc(sizeof(*v) + klen + vlen + ttl_len + ctl);
    if (v != NULL && !ptr_packable(v)) { /* see struct slot */
        free(v);
        return NULL;
    }
    if (v == NULL)
        return NULL;
    atomic_init(&v->refs, 1);
    v->vlen = (uint32_t)vlen;
    v->ver_lo = (uint32_t)(fill ? (uint64_t)fill->version : 0);
    v->ver_hi = (uint32_t)(fill ? (uint64_t)fill->version >> 32 : 0);
    v->klen = (uint16_t)klen;
    v->ctype = ci < 0 ? 0 : (uint8_t)ci;
    v->flags = (uint8_t)((fill ? 0 : VAL_NEGATIVE) | (ttl ? VAL_TTL : 0) |
                         (ci < 0 ? VAL_CTYPE_INL : 0) | (slide ? VAL_SLIDE : 0));
    memcpy(v->bytes, key, klen);
    if (vlen)
        memcpy(v->bytes + klen, fill->data, vlen);
    if (slide) {
        int64_t t[2] = {fill->expires_at, fill->sliding_ms};
        memcpy(v->bytes + klen + vlen + sizeof(uint32_t), t, SLIDE_LEN);
    }
    if (ci < 0)
        memcpy(v->bytes + klen + vlen + ttl_len, ct, ctl);
    return v;
}

const void *cache_value_data(const cache_value_t *v)
{
    return v->bytes + v->klen;
}

size_t cache_value_len(const cache_value_t *v)
{
    return v->vlen;
}

int64_t cache_value_version(const cache_value_t *v)
{
    return (int64_t)((uint64_t)v->ver_hi << 32 | v->ver_lo);
}

const char *cache_value_content_type(const cache_value_t *v)
{
    if (v->flags & VAL_CTYPE_INL)
        return (const char *)v->bytes + v->klen + v->vlen + ctype_offset(v);
    return ctype_names[v->ctype];
}

bool cache_value_sliding(const cache_value_t *v, int64_t *expires_at, int64_t *sliding_ms)
{
    if (!(v->flags & VAL_SLIDE))
        return false;
    int64_t t[2];
    memcpy(t, v->bytes + v->klen + v->vlen + sizeof(uint32_t), SLIDE_LEN);
    *expires_at = t[0];
    *sliding_ms = t[1];
    return true;
}

void cache_value_retain(cache_value_t *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void cache_value_release(cache_value_t *v)
{
    if (v != NULL && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        free(v);
}

bool ci_value_is(const cache_value_t *v, const void *key, size_t klen)
{
    return v->klen == klen && memcmp(v->bytes, key, klen) == 0;
}

/* ======================================================================
 * Memory accounting
 * ====================================================================== */

static size_t table_bytes(uint32_t tcap)
{
    return tcap ? alloc_cost((size_t)tcap * sizeof(uint32_t)) : 0;
}

static size_t pages_bytes(uint32_t npages)
{
    size_t arr = 1;
    while (arr < npages)
        arr <<= 1;
    return npages ? npages * alloc_cost(PAGE_SLOTS * sizeof(struct slot)) +
                        alloc_cost(arr * sizeof(struct slot *))
                  : 0;
}

static size_t heap_bytes(uint32_t hcap)
{
    return hcap ? alloc_cost(hcap * sizeof(int64_t)) + alloc_cost(hcap * sizeof(uint32_t)) : 0;
}

void ci_update_mem(struct shard *s)
{
    s->mem = s->entry_bytes + table_bytes(s->tcap) + pages_bytes(s->npages) + heap_bytes(s->hcap) +
             ci_policy_bytes(s);
}

uint64_t ci_entry_weight(const struct shard *s, const cache_value_t *v)
{
    return s->max_entries ? 1 : ci_entry_charge(v);
}

/* Capacity for entries in weight units (entries, or bytes left after the
 * shard's structures). */
uint64_t ci_shard_capacity(const struct shard *s)
{
    size_t structs = s->mem - s->entry_bytes;

    if (s->max_entries)
        return s->max_entries;
    return s->limit > structs ? s->limit - structs : 0;
}

/* ======================================================================
 * TTL heap (min-heap on expires_at; values remember their position)
 * ====================================================================== */

static void heap_set(struct shard *s, uint32_t pos, int64_t exp, uint32_t idx)
{
    s->hexp[pos] = exp;
    s->hslot[pos] = idx;
    val_set_heap_pos(slot_val(slot_at(s, idx)), pos);
}

static void heap_up(struct shard *s, uint32_t pos)
{
    int64_t exp = s->hexp[pos];
    uint32_t idx = s->hslot[pos];

    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (s->hexp[parent] <= exp)
            break;
        heap_set(s, pos, s->hexp[parent], s->hslot[parent]);
        pos = parent;
    }
    heap_set(s, pos, exp, idx);
}

static void heap_down(struct shard *s, uint32_t pos)
{
    int64_t exp = s->hexp[pos];
    uint32_t idx = s->hslot[pos];

    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= s->hcount)
            break;
        if (child + 1 < s->hcount && s->hexp[child + 1] < s->hexp[child])
            child++;
        if (s->hexp[child] >= exp)
            break;
        heap_set(s, pos, s->hexp[child], s->hslot[child]);
        pos = child;
    }
    heap_set(s, pos, exp, idx);
}

static int heap_reserve(struct shard *s)
{
    uint32_t ncap;
    int64_t *ne;
    uint32_t *ns;

    if (s->hcount < s->hcap)
        return 0;
    ncap = s->hcap ? s->hcap * 2 : 16;
    ne = realloc(s->hexp, ncap * sizeof(*ne));
    if (ne == NULL)
        return -1;
    s->hexp = ne;
    ns = realloc(s->hslot, ncap * sizeof(*ns));
    if (ns == NULL)
        return -1;
    s->hslot = ns;
    s->hcap = ncap;
    ci_update_mem(s);
    return 0;
}

static void heap_push(struct shard *s, uint32_t idx, int64_t exp)
{
    uint32_t pos = s->hcount++;

    s->hexp[pos] = exp;
    s->hslot[pos] = idx;
    heap_up(s, pos);
}

static void heap_remove(struct shard *s, uint32_t pos)
{
    uint32_t last = --s->hcount;

    if (pos == last)
        return;
    heap_set(s, pos, s->hexp[last], s->hslot[last]);
    if (pos > 0 && s->hexp[pos] < s->hexp[(pos - 1) / 2])
        heap_up(s, pos);
    else
        heap_down(s, pos);
}

static int64_t entry_expiry(const struct shard *s, const cache_value_t *v)
{
    return (v->flags & VAL_TTL) ? s->hexp[val_heap_pos(v)] : 0;
}

/* ======================================================================
 * Entries
 * ====================================================================== */

/* Bytes the shard's structures grow by if one more entry is inserted. */
static size_t growth_bytes(const cache_t *c, const struct shard *s, bool ttl)
{
    size_t g = 0;

    if (ci_table_needs_growth(s))
        g += table_bytes(ci_grown_cap(s->count + 1)) - table_bytes(s->tcap);
    if (!ci_slot_available(s))
        g += pages_bytes(s->npages + 1) - pages_bytes(s->npages);
    if (ttl && s->hcount == s->hcap)
        g += heap_bytes(s->hcap ? s->hcap * 2 : 16) - heap_bytes(s->hcap);
    return g + ci_policy_growth_bytes(c, s);
}

/* Makes room in the structures for one more entry. Returns 0 or -1. */
static int reserve_entry(cache_t *c, struct shard *s, bool ttl)
{
    if (ci_table_needs_growth(s) && ci_table_resize(c, s, ci_grown_cap(s->count + 1)) != 0)
        return -1;
    if (!ci_slot_available(s)) {
        if (s->npages * PAGE_SLOTS >= MAX_SLOTS || ci_add_page(s) != 0)
            return -1;
    }
    if (ttl && heap_reserve(s) != 0)
        return -1;
    if (ci_policy_reserve(c, s) != 0)
        return -1;
    ci_update_mem(s);
    return 0;
}

/* Links value v (taking the caller's reference) after reserve_entry().
 * Returns its slot, or 0 if the table could not place it (v not taken). */
static uint32_t do_link_entry(cache_t *c, struct shard *s, cache_value_t *v, uint64_t h,
                              int64_t expires_at)
{
    uint32_t idx = ci_slot_take(s);
    size_t charge = ci_entry_charge(v);

    slot_set_val(slot_at(s, idx), v);
    if (!ci_table_place(s->table, s->tcap, idx, h)) {
        /* pathological probe length: grow once and retry */
        if (ci_table_resize(c, s, ci_grown_cap(s->tcap)) != 0 ||
            !ci_table_place(s->table, s->tcap, idx, h)) {
            ci_slot_put(s, idx);
            return 0;
        }
    }
    if (v->flags & VAL_TTL)
        heap_push(s, idx, expires_at);
    s->count++;
    s->entry_bytes += charge;
    if (v->flags & VAL_TTL)
        s->vol_bytes += charge;
    ci_update_mem(s);
    ci_policy_insert(c, s, idx);
    return idx;
}

static void maybe_shrink(const cache_t *c, struct shard *s)
{
    if (s->tcap > 64 && (uint64_t)s->count * 4 < s->tcap)
        (void)ci_table_resize(c, s, ci_grown_cap(s->count)); /* ok to stay big */
}

void ci_do_unlink_entry(cache_t *c, struct shard *s, uint32_t idx)
{
    cache_value_t *v = slot_val(slot_at(s, idx));
    size_t charge = ci_entry_charge(v);

    ci_table_delete(s, ci_table_find_slot(s, ci_slot_hash(c, s, idx), idx));
    ci_policy_unlink(s, idx);
    if (v->flags & VAL_TTL) {
        heap_remove(s, val_heap_pos(v));
        s->vol_bytes -= charge;
    }
    s->count--;
    s->entry_bytes -= charge;
    ci_slot_put(s, idx);
    maybe_shrink(c, s);
    ci_update_mem(s);
    cache_value_release(v);
}

/* Finds a live entry. Expired entries are removed on the way (lazy expiry)
 * and reported as absent. Returns the slot index or 0. */
static uint32_t do_lookup(cache_t *c, struct shard *s, const void *key, size_t klen, uint64_t h,
                          int64_t now_ms)
{
    uint32_t b = ci_table_find(s, key, klen, h), idx;
    int64_t exp;

    if (b == UINT32_MAX)
        return 0;
    idx = s->table[b] & IDX_MASK;
    exp = entry_expiry(s, slot_val(slot_at(s, idx)));
    if (exp != 0 && exp <= now_ms) {
        ci_do_unlink_entry(c, s, idx);
        s->expirations++;
        return 0;
    }
    return idx;
}

/* Removes up to max expired entries, soonest first. Returns how many. */
static size_t do_reclaim_expired(cache_t *c, struct shard *s, int64_t now_ms, size_t max)
{
    size_t n = 0;

    while (n < max && s->hcount > 0 && s->hexp[0] <= now_ms) {
        ci_do_unlink_entry(c, s, s->hslot[0]);
        s->expirations++;
        n++;
    }
    return n;
}

/* Checks that the policy can make room for an entry of `charge` bytes:
 * CACHE_OK, CACHE_TOOBIG (it would not fit in an empty shard) or
 * CACHE_FULL (the policy may not evict enough). */
static cache_outcome_t do_admissible(cache_t *c, struct shard *s, size_t charge, bool ttl)
{
    size_t grow = growth_bytes(c, s, ttl);
    size_t after = s->mem + charge + grow;
    size_t need_b = s->limit && after > s->limit ? after - s->limit : 0;
    size_t need_e = s->max_entries && s->count + 1 > s->max_entries ? 1 : 0;
    size_t structs = s->mem - s->entry_bytes;

    if (s->limit && charge + structs + grow > s->limit)
        return CACHE_TOOBIG;
    if ((need_b || need_e) && !ci_policy_reclaimable(c, s, need_b, need_e))
        return CACHE_FULL;
    return CACHE_OK;
}

/*
 * Stores v (taking the caller's reference on CACHE_OK only). Returns
 * CACHE_OK, CACHE_OLDER (a newer entry, or a positive entry in place of a
 * negative v, is cached), CACHE_FULL/CACHE_TOOBIG (not admitted; counted
 * in `rejected`) or CACHE_NOMEM.
 */
static cache_outcome_t do_store(cache_t *c, struct shard *s, cache_value_t *v, uint64_t h,
                                int64_t expires_at, int64_t now_ms)
{
    uint32_t idx = do_lookup(c, s, val_key(v), v->klen, h, now_ms);
    bool ttl = (v->flags & VAL_TTL) != 0;
    cache_outcome_t r;

    if (idx != 0) {
        const cache_value_t *old = slot_val(slot_at(s, idx));
        if (((v->flags & VAL_NEGATIVE) && !(old->flags & VAL_NEGATIVE)) ||
            cache_value_version(old) > cache_value_version(v))
            return CACHE_OLDER;
        ci_do_unlink_entry(c, s, idx);
    }
    do_reclaim_expired(c, s, now_ms, 8);
    r = do_admissible(c, s, ci_entry_charge(v), ttl);
    if (r != CACHE_OK) {
        s->rejected++;
        return r;
    }
    if (reserve_entry(c, s, ttl) != 0)
        return CACHE_NOMEM;
    idx = do_link_entry(c, s, v, h, expires_at);
    if (idx == 0)
        return CACHE_NOMEM;
    if (!ci_do_evict(c, s, idx) && slot_val(slot_at(s, idx)) == v) {
        cache_value_retain(v);         /* the caller keeps its reference */
        ci_do_unlink_entry(c, s, idx); /* drops the table's */
        s->rejected++;
        return CACHE_FULL;
    }
    return CACHE_OK;
}

/* ======================================================================
 * Single-flight loads
 * ====================================================================== */

static struct cache_load *find_leader(const struct shard *s, const void *key, size_t klen,
                                      uint64_t h)
{
    for (struct cache_load *ld = s->inflight; ld; ld = ld->next)
        if (ld->leader && ld->hash == h && ld->klen == klen && memcmp(ld->key, key, klen) == 0)
            return ld;
    return NULL;
}

static struct cache_load *do_start_load(struct shard *s, const void *key, size_t klen, uint64_t h,
                                        bool leader)
{
    struct cache_load *ld = malloc(sizeof(*ld) + klen);

    if (ld == NULL)
        return NULL;
    ld->hash = h;
    ld->refs = 1;
    ld->done = false;
    ld->stale = false;
    ld->leader = leader;
    ld->klen = (uint32_t)klen;
    memcpy(ld->key, key, klen);
    ld->next = s->inflight;
    s->inflight = ld;
    s->misses++;
    return ld;
}

static void do_put_load(struct cache_load *ld)
{
    if (--ld->refs == 0)
        free(ld);
}

/* Unregisters ld, marks it done and wakes everyone waiting on the shard. */
static void do_end_load(struct shard *s, struct cache_load *ld)
{
    for (struct cache_load **pp = &s->inflight; *pp; pp = &(*pp)->next) {
        if (*pp == ld) {
            *pp = ld->next;
            break;
        }
    }
    ld->done = true;
    ld->leader = false;
    pthread_cond_broadcast(&s->loaded);
    do_put_load(ld);
}

static struct timespec deadline_after(int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Waits until ld ends or the deadline passes. Returns true if it ended. */
static bool do_wait_load(struct shard *s, struct cache_load *ld, const struct timespec *deadline)
{
    bool done;

    ld->refs++;
    while (!ld->done)
        if (pthread_cond_timedwait(&s->loaded, &s->lock, deadline) == ETIMEDOUT)
            break;
    done = ld->done;
    do_put_load(ld);
    return done;
}

/* Looks the key up for a reader. Returns HIT (with a reference in *value),
 * NEGATIVE or MISS, counting hits. */
static cache_outcome_t do_read(cache_t *c, struct shard *s, const void *key, size_t klen,
                               uint64_t h, int64_t now_ms, cache_value_t **value)
{
    uint32_t idx = do_lookup(c, s, key, klen, h, now_ms);
    cache_value_t *v;

    if (idx == 0)
        return CACHE_MISS;
    ci_policy_hit(c, s, idx);
    v = slot_val(slot_at(s, idx));
    if (v->flags & VAL_NEGATIVE) {
        s->negative_hits++;
        return CACHE_NEGATIVE;
    }
    s->hits++;
    cache_value_retain(v);
    *value = v;
    return CACHE_HIT;
}

static bool key_ok(const void *key, size_t klen)
{
    return key != NULL && klen > 0 && klen <= CACHE_KEY_MAX;
}

cache_outcome_t cache_fetch(cache_t *c, const void *key, size_t klen, int64_t now_ms,
                            cache_value_t **value, cache_load_t **load)
{
    uint64_t h = ci_key_hash(c, key, klen);
    struct shard *s = shard_of(c, h);
    struct timespec deadline = {0, 0};
    bool waited = false;
    cache_outcome_t r;

    *value = NULL;
    *load = NULL;
    if (!key_ok(key, klen))
        return CACHE_EINVAL;
    pthread_mutex_lock(&s->lock);
    ci_policy_record(c, s, h);
    for (;;) {
        r = do_read(c, s, key, klen, h, now_ms, value);
        if (r != CACHE_MISS)
            break;
        struct cache_load *ld = find_leader(s, key, klen, h);
        if (ld == NULL) {
            *load = do_start_load(s, key, klen, h, true);
            break;
        }
        if (!waited) {
            waited = true;
            s->sf_waits++;
            deadline = deadline_after(c->cfg.load_wait_ms);
        }
        if (!do_wait_load(s, ld, &deadline)) {
            s->sf_timeouts++;
            *load = do_start_load(s, key, klen, h, false);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (r == CACHE_MISS)
        r = *load ? CACHE_LEAD : CACHE_NOMEM;
    return r;
}

const void *cache_load_key(const cache_load_t *load, size_t *klen)
{
    *klen = load->klen;
    return load->key;
}

/* Builds the value a fill (or a negative fill) stores. */
static cache_value_t *fill_value(const cache_t *c, const void *key, size_t klen,
                                 const cache_fill_t *fill, int64_t now_ms, int64_t *expires_at)
{
    *expires_at = fill ? fill->expires_at
                       : now_ms + (c->cfg.negative_ttl_ms > 0 ? c->cfg.negative_ttl_ms : 1);
    return value_new(key, klen, fill, *expires_at != 0);
}

cache_outcome_t cache_load_finish(cache_t *c, cache_load_t *load, const cache_fill_t *fill,
                                  int64_t now_ms)
{
    struct shard *s = shard_of(c, load->hash);
    int64_t exp;
    cache_value_t *v;
    cache_outcome_t r;

    if (c->cfg.on_fill)
        c->cfg.on_fill(c->cfg.on_fill_arg, load);
    v = fill_value(c, load->key, load->klen, fill, now_ms, &exp);
    pthread_mutex_lock(&s->lock);
    if (load->stale && !c->cfg.disable_fill_guard) {
        s->fills_dropped++;
        r = CACHE_DROPPED;
    } else {
        r = v ? do_store(c, s, v, load->hash, exp, now_ms) : CACHE_NOMEM;
    }
    do_end_load(s, load);
    pthread_mutex_unlock(&s->lock);
    if (r != CACHE_OK)
        cache_value_release(v);
    return r;
}

void cache_load_abandon(cache_t *c, cache_load_t *load)
{
    struct shard *s = shard_of(c, load->hash);

    pthread_mutex_lock(&s->lock);
    do_end_load(s, load);
    pthread_mutex_unlock(&s->lock);
}

/* ======================================================================
 * Plain get / set / invalidate
 * ====================================================================== */

cache_outcome_t cache_get(cache_t *c, const void *key, size_t klen, int64_t now_ms,
                          cache_value_t **value)
{
    uint64_t h;
    struct shard *s;
    cache_outcome_t r;

    *value = NULL;
    if (!key_ok(key, klen))
        return CACHE_EINVAL;
    h = ci_key_hash(c, key, klen);
    s = shard_of(c, h);
    pthread_mutex_lock(&s->lock);
    ci_policy_record(c, s, h);
    r = do_read(c, s, key, klen, h, now_ms, value);
    if (r == CACHE_MISS)
        s->misses++;
    pthread_mutex_unlock(&s->lock);
    return r;
}

cache_outcome_t cache_set(cache_t *c, const void *key, size_t klen, const cache_fill_t *fill,
                          int64_t now_ms)
{
    uint64_t h;
    struct shard *s;
    cache_value_t *v;
    cache_outcome_t r;

    if (!key_ok(key, klen) || fill == NULL)
        return CACHE_EINVAL;
    h = ci_key_hash(c, key, klen);
    s = shard_of(c, h);
    v = value_new(key, klen, fill, fill->expires_at != 0);
    if (v == NULL)
        return CACHE_NOMEM;
    pthread_mutex_lock(&s->lock);
    r = do_store(c, s, v, h, fill->expires_at, now_ms);
    pthread_mutex_unlock(&s->lock);
    if (r != CACHE_OK)
        cache_value_release(v);
    return r;
}

/* Marks every load of the key in flight stale: its fill will be dropped. */
static void do_mark_loads_stale(struct shard *s, const void *key, size_t klen, uint64_t h)
{
    for (struct cache_load *ld = s->inflight; ld; ld = ld->next)
        if (ld->hash == h && ld->klen == klen && memcmp(ld->key, key, klen) == 0)
            ld->stale = true;
}

/* Removes the key's entry, if any, and marks its loads stale. Returns
 * whether an entry was removed. */
static bool do_invalidate(cache_t *c, struct shard *s, const void *key, size_t klen, uint64_t h)
{
    uint32_t b = ci_table_find(s, key, klen, h);

    if (b != UINT32_MAX)
        ci_do_unlink_entry(c, s, s->table[b] & IDX_MASK);
    do_mark_loads_stale(s, key, klen, h);
    return b != UINT32_MAX;
}

int cache_invalidate(cache_t *c, const void *key, size_t klen)
{
    uint64_t h;
    struct shard *s;
    bool removed;

    if (!key_ok(key, klen))
        return 0;
    h = ci_key_hash(c, key, klen);
    s = shard_of(c, h);
    pthread_mutex_lock(&s->lock);
    removed = do_invalidate(c, s, key, klen, h);
    pthread_mutex_unlock(&s->lock);
    return removed;
}

void cache_clear(cache_t *c)
{
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        /* Removing an entry may shift the next bucket back into this one,
         * or shrink the table (then start over); count > 0 means some
         * bucket is not empty. */
        uint32_t b = 0;
        while (s->count > 0) {
            uint32_t cap = s->tcap;
            if (b >= cap)
                b = 0;
            if (s->table[b] == 0) {
                b++;
                continue;
            }
            ci_do_unlink_entry(c, s, s->table[b] & IDX_MASK);
            if (s->tcap != cap)
                b = 0;
        }
        for (struct cache_load *ld = s->inflight; ld; ld = ld->next)
            ld->stale = true;
        pthread_mutex_unlock(&s->lock);
    }
}

cache_outcome_t cache_replace(cache_t *c, const void *key, size_t klen, const cache_fill_t *fill,
                              int64_t now_ms)
{
    uint64_t h;
    struct shard *s;
    cache_value_t *v;
    cache_outcome_t r;
    bool held;

    if (!key_ok(key, klen) || fill == NULL)
        return CACHE_EINVAL;
    h = ci_key_hash(c, key, klen);
    s = shard_of(c, h);
    /* A key the tier does not hold (positive or negative entry) is not
     * admitted by a write, which must not push out a key that is read:
     * only its loads in flight are marked stale, under one lock. */
    pthread_mutex_lock(&s->lock);
    held = ci_table_find(s, key, klen, h) != UINT32_MAX;
    if (!held)
        do_mark_loads_stale(s, key, klen, h);
    pthread_mutex_unlock(&s->lock);
    if (!held)
        return CACHE_MISS;
    /* Built outside the lock; the entry may change meanwhile, which
     * do_store sorts out (the version check, admission). */
    v = value_new(key, klen, fill, fill->expires_at != 0);
    pthread_mutex_lock(&s->lock);
    if (v != NULL) {
        do_mark_loads_stale(s, key, klen, h);
        r = do_store(c, s, v, h, fill->expires_at, now_ms);
        if (r != CACHE_OK && r != CACHE_OLDER) /* not stored: no old copy either */
            do_invalidate(c, s, key, klen, h);
    } else {
        r = CACHE_NOMEM;
        do_invalidate(c, s, key, klen, h);
    }
    pthread_mutex_unlock(&s->lock);
    if (v != NULL && r != CACHE_OK)
        cache_value_release(v);
    return r;
}

/* ======================================================================
 * TTL
 * ====================================================================== */

size_t cache_expire_cycle(cache_t *c, int64_t now_ms, size_t max_work)
{
    size_t removed = 0, work = 0;

    for (unsigned n = 0; n < c->nshards && work < max_work; n++) {
        unsigned i = atomic_fetch_add(&c->expire_cursor, 1) % c->nshards;
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        size_t k = do_reclaim_expired(c, s, now_ms, max_work - work);
        pthread_mutex_unlock(&s->lock);
        removed += k;
        work += k + 1; /* looking at a shard's heap top is work too */
    }
    return removed;
}

int64_t cache_jitter_ttl(int64_t ttl_ms, unsigned percent, uint64_t *rng)
{
    int64_t span;

    if (ttl_ms <= 0 || percent == 0)
        return ttl_ms;
    if (percent > 100)
        percent = 100;
    span = ttl_ms / 100 * (int64_t)percent + ttl_ms % 100 * percent / 100;
    if (span == 0)
        return ttl_ms;
    int64_t off = (int64_t)(ci_rng_next(rng) % (uint64_t)(2 * span + 1)) - span;
    return ttl_ms + off > 0 ? ttl_ms + off : 1;
}

/* ======================================================================
 * Create / destroy / stats / names
 * ====================================================================== */

void cache_config_init(cache_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->memory_limit = 64u << 20;
    cfg->shards = 16;
    cfg->policy = CACHE_POLICY_ALLKEYS_LFU;
    cfg->negative_ttl_ms = 5000;
    cfg->load_wait_ms = 2000;
    cfg->seed = 0x5eed5eed5eed5eedull;
}

static size_t share(size_t total, unsigned n, unsigned i)
{
    return total / n + (i < total % n ? 1 : 0);
}

static int shard_init(cache_t *c, struct shard *s, unsigned i)
{
    pthread_condattr_t ca;

    memset(s, 0, sizeof(*s));
    s->limit = share(c->cfg.memory_limit, c->nshards, i);
    s->max_entries = share(c->cfg.max_entries, c->nshards, i);
    if (c->cfg.max_entries && s->max_entries == 0)
        s->max_entries = 1;
    s->rng = c->cfg.seed ^ (0x9e3779b97f4a7c15ull * (i + 1));
    s->next_unused = FIRST_SLOT;
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        return -1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&s->loaded, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0 || ci_add_page(s) != 0) {
        pthread_mutex_destroy(&s->lock);
        if (rc == 0)
            pthread_cond_destroy(&s->loaded);
        return -1;
    }
    ci_list_init(s);
    ci_policy_init(c, s);
    ci_update_mem(s);
    return 0;
}

static void shard_free(struct shard *s)
{
    for (uint32_t idx = FIRST_SLOT; idx < s->next_unused; idx++)
        cache_value_release(slot_val(slot_at(s, idx)));
    for (uint32_t p = 0; p < s->npages; p++)
        free(s->pages[p]);
    free(s->pages);
    free(s->table);
    free(s->hexp);
    free(s->hslot);
    ci_policy_free(s);
    pthread_cond_destroy(&s->loaded);
    pthread_mutex_destroy(&s->lock);
}

cache_t *cache_create(const cache_config_t *cfg)
{
    cache_t *c;
    unsigned n = cfg->shards;

    if (n == 0 || n > 1024 || cfg->policy < 0 || cfg->policy >= CACHE_POLICY_COUNT ||
        (cfg->memory_limit == 0 && cfg->max_entries == 0))
        return NULL;
    c = calloc(1, sizeof(*c) + n * sizeof(struct shard));
    if (c == NULL)
        return NULL;
    c->cfg = *cfg;
    c->nshards = n;
    for (unsigned i = 0; i < n; i++) {
        if (shard_init(c, &c->shards[i], i) != 0) {
            c->nshards = i;
            cache_destroy(c);
            return NULL;
        }
    }
    return c;
}

void cache_destroy(cache_t *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->nshards; i++)
        shard_free(&c->shards[i]);
    free(c);
}

void cache_stats(cache_t *c, cache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        out->hits += s->hits;
        out->misses += s->misses;
        out->negative_hits += s->negative_hits;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->rejected += s->rejected;
        out->sf_waits += s->sf_waits;
        out->sf_timeouts += s->sf_timeouts;
        out->fills_dropped += s->fills_dropped;
        out->entries += s->count;
        out->memory += s->mem;
        out->memory_limit += s->limit;
        pthread_mutex_unlock(&s->lock);
    }
}

static const char *const policy_names[CACHE_POLICY_COUNT] = {
    "noeviction",   "allkeys-lru",    "volatile-lru",    "allkeys-lfu",
    "volatile-lfu", "allkeys-random", "volatile-random", "volatile-ttl",
};

cache_policy_t cache_policy_from_name(const char *name)
{
    for (int i = 0; name != NULL && i < CACHE_POLICY_COUNT; i++)
        if (strcmp(policy_names[i], name) == 0)
            return (cache_policy_t)i;
    return CACHE_POLICY_INVALID;
}

const char *cache_policy_name(cache_policy_t policy)
{
    return policy >= 0 && policy < CACHE_POLICY_COUNT ? policy_names[policy] : NULL;
}

const char *cache_outcome_name(cache_outcome_t outcome)
{
    static const char *const names[] = {
        "ok",    "hit",  "negative", "lead",  "miss",   "dropped",
        "older", "full", "toobig",   "nomem", "einval",
    };
    return (unsigned)outcome < sizeof(names) / sizeof(names[0]) ? names[outcome] : "unknown";
}
