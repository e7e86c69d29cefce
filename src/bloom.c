/*
 * bloom.c - rebuildable bloom filter of existing keys (see bloom.h).
 *
 * Two bit arrays of m bits each; `live` (0 or 1) says which one answers
 * lookups. Outside a rebuild only the live array is written. A rebuild
 * zeroes the other array, sets `rebuilding` so adds write both, lets the
 * rebuilder fill it, then flips `live`.
 *
 * A reader that loaded `live` just before a flip may still be reading the
 * old array, which the next rebuild will zero. Readers therefore announce
 * themselves on a per-array counter, and bloom_rebuild_begin() waits for
 * the array it is about to zero to have no readers.
 *
 * Bits: k probes derived from one 64-bit hash by double hashing
 * (h1 + i * h2), the standard Kirsch-Mitzenmacher construction.
 */
#include "bloom.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct bloom {
    _Atomic uint64_t *bits[2];
    uint64_t nbits;
    unsigned k;
    atomic_int live;
    atomic_bool rebuilding;
    atomic_int readers[2];
    atomic_uint_fast64_t added, deleted;
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_key(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0x243f6a8885a308d3ull ^ len, w;

    for (; len >= 8; len -= 8, p += 8) {
        memcpy(&w, p, 8);
        h = mix(h ^ w);
    }
    w = 0;
    memcpy(&w, p, len);
    return mix(h ^ w ^ 0x13198a2e03707344ull);
}

bloom_t *bloom_create(size_t capacity, double fp_rate)
{
    bloom_t *b;
    double m;

    if (capacity == 0 || !(fp_rate > 0 && fp_rate < 1))
        return NULL;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    m = -(double)capacity * log(fp_rate) / (M_LN2 * M_LN2);
    b->nbits = ((uint64_t)m + 63) & ~(uint64_t)63;
    b->k = (unsigned)lround(m / (double)capacity * M_LN2);
    if (b->k < 1)
        b->k = 1;
    for (int i = 0; i < 2; i++) {
        b->bits[i] = calloc(b->nbits / 64, sizeof(uint64_t));
        if (b->bits[i] == NULL) {
            bloom_destroy(b);
            return NULL;
        }
    }
    return b;
}

void bloom_destroy(bloom_t *b)
{
    if (b == NULL)
        return;
    free((void *)b->bits[0]);
    free((void *)b->bits[1]);
    free(b);
}

static void set_bits(_Atomic uint64_t *bits, const bloom_t *b, uint64_t h)
{
    uint64_t h1 = h, h2 = (h >> 32 | h << 32) | 1;

    for (unsigned i = 0; i < b->k; i++) {
        uint64_t bit = (h1 + i * h2) % b->nbits;
        atomic_fetch_or_explicit(&bits[bit / 64], 1ull << (bit % 64), memory_order_relaxed);
    }
}

static bool test_bits(_Atomic uint64_t *bits, const bloom_t *b, uint64_t h)
{
    uint64_t h1 = h, h2 = (h >> 32 | h << 32) | 1;

    for (unsigned i = 0; i < b->k; i++) {
        uint64_t bit = (h1 + i * h2) % b->nbits;
        uint64_t w = atomic_load_explicit(&bits[bit / 64], memory_order_relaxed);
        if (!(w & 1ull << (bit % 64)))
            return false;
    }
    return true;
}

void bloom_add(bloom_t *b, const void *key, size_t len)
{
    uint64_t h = hash_key(key, len);
    int live = atomic_load(&b->live);

    set_bits(b->bits[live], b, h);
    /* during a rebuild, or if a rebuild ended meanwhile, write the other
     * array too: it is (or just became) the live one */
    if (atomic_load(&b->rebuilding) || atomic_load(&b->live) != live)
        set_bits(b->bits[!live], b, h);
    atomic_fetch_add_explicit(&b->added, 1, memory_order_relaxed);
}

bool bloom_may_contain(bloom_t *b, const void *key, size_t len)
{
    uint64_t h = hash_key(key, len);
    int live;
    bool r;

    for (;;) {
        live = atomic_load(&b->live);
        atomic_fetch_add(&b->readers[live], 1);
        if (atomic_load(&b->live) == live)
            break;
        atomic_fetch_sub(&b->readers[live], 1);
    }
    r = test_bits(b->bits[live], b, h);
    atomic_fetch_sub(&b->readers[live], 1);
    return r;
}

void bloom_note_delete(bloom_t *b)
{
    atomic_fetch_add_explicit(&b->deleted, 1, memory_order_relaxed);
}

double bloom_stale_ratio(bloom_t *b)
{
    uint64_t a = atomic_load(&b->added), d = atomic_load(&b->deleted);
    return a ? (double)d / (double)a : 0.0;
}

static void zero_bits(_Atomic uint64_t *bits, uint64_t nbits)
{
    for (uint64_t i = 0; i < nbits / 64; i++)
        atomic_store_explicit(&bits[i], 0, memory_order_relaxed);
}

void bloom_clear(bloom_t *b)
{
    zero_bits(b->bits[0], b->nbits);
    zero_bits(b->bits[1], b->nbits);
    atomic_store(&b->added, 0);
    atomic_store(&b->deleted, 0);
}

void bloom_rebuild_begin(bloom_t *b)
{
    int spare = !atomic_load(&b->live);

    while (atomic_load(&b->readers[spare]) != 0)
        sched_yield();
    zero_bits(b->bits[spare], b->nbits);
    atomic_store(&b->rebuilding, true);
}

void bloom_rebuild_add(bloom_t *b, const void *key, size_t len)
{
    set_bits(b->bits[!atomic_load(&b->live)], b, hash_key(key, len));
}

void bloom_rebuild_end(bloom_t *b)
{
    int live = atomic_load(&b->live);

    atomic_store(&b->live, !live);
    atomic_store(&b->rebuilding, false);
    atomic_store(&b->deleted, 0);
}

size_t bloom_bytes(const bloom_t *b)
{
    return 2 * (size_t)(b->nbits / 8);
}
