/*
 * cache_table.c - the memory tier's per-shard index: the slots (12-byte
 * records in pages of 256, a free list through their links) and the hash
 * table over them (Robin Hood, linear probing, backward-shift deletion).
 * Layouts in cache_int.h; the entries, the TTL heap, the accounting and
 * the read path that use them are in cache.c, eviction in cache_policy.c.
 * Every function here is called with the shard's lock held.
 */
#include "cache_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * Slots
 * ====================================================================== */

int ci_add_page(struct shard *s)
{
    uint32_t arr = 1;
    struct slot *page;

    while (arr < s->npages)
        arr <<= 1;
    if (s->npages == arr || s->npages == 0) {
        uint32_t ncap = s->npages ? arr * 2 : 1;
        struct slot **np = realloc(s->pages, ncap * sizeof(*np));
        if (np == NULL)
            return -1;
        s->pages = np;
    }
    page = calloc(PAGE_SLOTS, sizeof(*page));
    if (page == NULL)
        return -1;
    s->pages[s->npages++] = page;
    ci_update_mem(s);
    return 0;
}

bool ci_slot_available(const struct shard *s)
{
    return s->free_slot != 0 || s->next_unused < s->npages * PAGE_SLOTS;
}

/* Returns a free slot index; the caller made one available. */
uint32_t ci_slot_take(struct shard *s)
{
    uint32_t idx = s->free_slot;

    if (idx != 0) {
        s->free_slot = slot_next(slot_at(s, idx));
        return idx;
    }
    return s->next_unused++;
}

void ci_slot_put(struct shard *s, uint32_t idx)
{
    struct slot *sl = slot_at(s, idx);

    slot_set_val(sl, NULL);
    slot_set_next(sl, s->free_slot, 0);
    s->free_slot = idx;
}

/* ======================================================================
 * Hash table: Robin Hood, linear probing, backward-shift deletion.
 * Bucket = slot index | probe distance << 24; 0 = empty.
 * ====================================================================== */

#define DIST_MAX 255u

static uint32_t home_of(uint64_t h, uint32_t tcap)
{
    return (uint32_t)(((h & 0xffffffffu) * tcap) >> 32);
}

/* Returns the bucket holding key, or UINT32_MAX. */
uint32_t ci_table_find(const struct shard *s, const void *key, size_t klen, uint64_t h)
{
    uint32_t i, dist;

    if (s->tcap == 0)
        return UINT32_MAX;
    i = home_of(h, s->tcap);
    for (dist = 0;; dist++) {
        uint32_t b = s->table[i];
        if (b == 0 || (b >> IDX_BITS) < dist)
            return UINT32_MAX;
        if (ci_value_is(slot_val(slot_at(s, b & IDX_MASK)), key, klen))
            return i;
        if (++i == s->tcap)
            i = 0;
    }
}

/* Places slot idx. The table has room. Returns false if a probe distance
 * would overflow (the table then needs to grow; nothing was changed). */
bool ci_table_place(uint32_t *table, uint32_t tcap, uint32_t idx, uint64_t h)
{
    uint32_t i = home_of(h, tcap), dist = 0, probe = i;

    /* dry run: make sure no displaced bucket's distance would overflow */
    for (uint32_t d = 0; table[probe] != 0; d++) {
        if (d >= DIST_MAX - 1 || (table[probe] >> IDX_BITS) >= DIST_MAX - 1)
            return false;
        if (++probe == tcap)
            probe = 0;
    }
    for (;;) {
        uint32_t b = table[i];
        if (b == 0) {
            table[i] = idx | dist << IDX_BITS;
            return true;
        }
        if ((b >> IDX_BITS) < dist) {
            table[i] = idx | dist << IDX_BITS;
            idx = b & IDX_MASK;
            dist = b >> IDX_BITS;
        }
        if (++i == tcap)
            i = 0;
        dist++;
    }
}

void ci_table_delete(struct shard *s, uint32_t i)
{
    for (;;) {
        uint32_t j = i + 1 == s->tcap ? 0 : i + 1;
        uint32_t b = s->table[j];
        if (b == 0 || (b >> IDX_BITS) == 0) {
            s->table[i] = 0;
            return;
        }
        s->table[i] = b - (1u << IDX_BITS);
        i = j;
    }
}

uint64_t ci_slot_hash(const cache_t *c, const struct shard *s, uint32_t idx)
{
    const cache_value_t *v = slot_val(slot_at(s, idx));
    return ci_key_hash(c, val_key(v), v->klen);
}

/* Rebuilds the table with ncap buckets. Returns 0 or -1 (unchanged). */
int ci_table_resize(const cache_t *c, struct shard *s, uint32_t ncap)
{
    uint32_t *nt = calloc(ncap, sizeof(*nt));

    if (nt == NULL)
        return -1;
    for (uint32_t i = 0; i < s->tcap; i++) {
        uint32_t idx = s->table[i] & IDX_MASK;
        if (s->table[i] != 0 && !ci_table_place(nt, ncap, idx, ci_slot_hash(c, s, idx))) {
            free(nt);
            return -1;
        }
    }
    free(s->table);
    s->table = nt;
    s->tcap = ncap;
    ci_update_mem(s);
    return 0;
}

/* Room for n entries at a load of about 0.87 (the table grows at 0.93):
 * a smaller step than 1.3x, for less empty bucket space per entry. */
uint32_t ci_grown_cap(uint32_t n)
{
    uint64_t cap = ((uint64_t)n * 115 / 100 + 15) & ~(uint64_t)15;
    return cap < 64 ? 64 : (uint32_t)cap;
}

bool ci_table_needs_growth(const struct shard *s)
{
    return (uint64_t)(s->count + 1) * 100 > (uint64_t)s->tcap * 93;
}

uint32_t ci_table_find_slot(const struct shard *s, uint64_t h, uint32_t idx)
{
    uint32_t i = home_of(h, s->tcap);

    while ((s->table[i] & IDX_MASK) != idx)
        if (++i == s->tcap)
            i = 0;
    return i;
}
