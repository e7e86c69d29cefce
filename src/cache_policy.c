/*
 * cache_policy.c - eviction policies of the memory tier.
 *
 * Every function here runs with the shard lock held (cache.c takes it).
 * Entries sit in circular doubly linked lists threaded through the slots
 * (see cache_int.h); the TTL heap gives the volatile policies their
 * candidates.
 *
 *   noeviction       nothing is evicted; a store that does not fit is
 *                    refused (expired entries are still reclaimed).
 *   allkeys-lru      exact LRU: one list, most recent at the front.
 *   volatile-lru     exact LRU among entries with a TTL: they live in
 *                    list 0, the others in list 1 (never evicted).
 *   allkeys-lfu      W-TinyLFU with an adaptive window, see below.
 *   volatile-lfu     among entries with a TTL: sample VOLATILE_SAMPLES at
 *                    random from the TTL heap, evict the least frequent by
 *                    the aging sketch (sampled, as Redis does).
 *   allkeys-random   a random occupied hash bucket.
 *   volatile-random  a random position of the TTL heap.
 *   volatile-ttl     the soonest expiry (the heap top).
 * volatile-* policies with no entry carrying a TTL behave as noeviction.
 *
 * ---- W-TinyLFU -----------------------------------------------------------
 * A small LRU window admits every new entry. An entry pushed out of the
 * window becomes a candidate for the main space (segmented LRU: probation
 * and protected, 80% protected). When main is full the candidate duels
 * with probation's LRU entry: the one the count-min sketch deems less
 * frequent is evicted. The sketch halves all counters every 10 x capacity
 * increments, so frequency ages. A hit in probation promotes to protected;
 * protected overflow demotes to probation.
 *
 * The window size adapts from ghosts, as ARC balances its two lists: a
 * small direct-mapped table (one slot per 8 expected entries, 4 bytes
 * each: a 12-bit fingerprint, the side and a 19-bit sequence number)
 * remembers keys that left the cache, either as a candidate rejected on
 * leaving the window or as a victim evicted from main. When a missed key
 * comes back and its ghost is found, the side it left from was too small:
 * the window grows by one entry for a window ghost and shrinks by one for
 * a main ghost. Only ghosts within the reach count: the key must have left
 * at most max(window, 10% of capacity) departures ago on its side (and
 * within what main could give up), so the test compares the marginal
 * value of a little more window with that of a little more main. A loop
 * longer than the cache never brings a ghost back within the reach, so
 * the window stays small there; a recency-friendly phase moves it up
 * within a few hundred misses, much faster than hill climbing on sampled
 * hit ratios, which it replaces. The window stays within 0..80%.
 */
#include "cache_int.h"

#include <limits.h>
#include <stdlib.h>

#define VOLATILE_SAMPLES 5
#define PROTECTED_SHARE 0.80
#define WINDOW_INITIAL 0.01
#define WINDOW_MAX 0.80

/* ======================================================================
 * Lists
 * ====================================================================== */

static uint32_t next_of(const struct slot *sl)
{
    return slot_next(sl);
}

static void set_next(struct slot *sl, uint32_t idx, unsigned list)
{
    slot_set_next(sl, idx, list);
}

void ci_list_init(struct shard *s)
{
    for (unsigned l = 0; l < NLISTS; l++) {
        struct slot *head = slot_at(s, l);
        slot_set_prev(head, l);
        set_next(head, l, l);
    }
}

void ci_list_push_front(struct shard *s, unsigned list, uint32_t idx)
{
    struct slot *head = slot_at(s, list), *sl = slot_at(s, idx);
    uint32_t first = next_of(head);

    slot_set_prev(sl, list);
    set_next(sl, first, list);
    slot_set_prev(slot_at(s, first), idx);
    set_next(head, idx, list);
}

void ci_list_remove(struct shard *s, uint32_t idx)
{
    struct slot *sl = slot_at(s, idx), *p = slot_at(s, slot_prev(sl));
    uint32_t n = next_of(sl);

    set_next(p, n, slot_list(p));
    slot_set_prev(slot_at(s, n), slot_prev(sl));
}

/* Returns the least recent entry of a list, or 0 when it is empty. */
uint32_t ci_list_back(const struct shard *s, unsigned list)
{
    uint32_t idx = slot_prev(slot_at(s, list));
    return idx == list ? 0 : idx;
}

static uint64_t weight_of(const struct shard *s, uint32_t idx)
{
    return ci_entry_weight(s, slot_val(slot_at(s, idx)));
}

/* Moves idx to the front of `list`, keeping the segment weights. */
static void move_to(struct shard *s, uint32_t idx, unsigned list)
{
    uint64_t w = weight_of(s, idx);

    s->seg_weight[slot_list(slot_at(s, idx))] -= w;
    ci_list_remove(s, idx);
    ci_list_push_front(s, list, idx);
    s->seg_weight[list] += w;
}

/* ======================================================================
 * Hooks called by cache.c
 * ====================================================================== */

static bool uses_sketch(const cache_t *c)
{
    return c->cfg.policy == CACHE_POLICY_ALLKEYS_LFU || c->cfg.policy == CACHE_POLICY_VOLATILE_LFU;
}

static bool is_tinylfu(const cache_t *c)
{
    return c->cfg.policy == CACHE_POLICY_ALLKEYS_LFU;
}

/* ======================================================================
 * W-TinyLFU window adaptation (ghosts)
 * ====================================================================== */

/* Direct-mapped slots of the ghost table per expected entry (0.5 bytes an
 * entry). One per 10 or 16 entries missed the hit-ratio targets of ps or
 * cs on some cache seeds (docs/memory-tier.md). */
#define GHOST_SLOTS_PER_ENTRY 0.125
#define GHOST_MIN_SLOTS 16
/* A ghost slot: 12-bit fingerprint | side (1 bit) | 19-bit sequence. */
#define GHOST_SEQ_BITS 19
#define GHOST_SEQ_MASK ((1u << GHOST_SEQ_BITS) - 1)
#define GHOST_SIDE_MAIN (1u << GHOST_SEQ_BITS)
/* Reach of a ghost: the window's size, at least this share of capacity. */
#define GHOST_REACH_MIN 0.10

static uint32_t ghost_slots_for(size_t entries)
{
    double n = (double)entries * GHOST_SLOTS_PER_ENTRY;

    return n < GHOST_MIN_SLOTS ? GHOST_MIN_SLOTS : n > (double)(1u << 30) ? 1u << 30 : (uint32_t)n;
}

static size_t ghost_bytes_for(size_t entries)
{
    return (size_t)ghost_slots_for(entries) * sizeof(uint32_t);
}

size_t ci_policy_bytes(const struct shard *s)
{
    return sketch_bytes(&s->sketch) + (size_t)s->ghost.n * sizeof(*s->ghost.slot);
}

/* Replaces the ghost table by an empty one for `entries`. 0 or -1. */
static int ghost_reset(struct shard *s, size_t entries)
{
    uint32_t n = ghost_slots_for(entries);
    uint32_t *slot = calloc(n, sizeof(*slot));

    if (slot == NULL)
        return -1;
    free(s->ghost.slot);
    s->ghost.slot = slot;
    s->ghost.n = n;
    return 0;
}

void ci_policy_free(struct shard *s)
{
    free(s->ghost.slot);
    s->ghost.slot = NULL;
    s->ghost.n = 0;
    sketch_free(&s->sketch);
}

static uint32_t *ghost_slot(const struct shard *s, uint64_t h)
{
    return &s->ghost.slot[((h & 0xffffffffu) * s->ghost.n) >> 32];
}

static uint32_t ghost_fp(uint64_t h)
{
    return (uint32_t)(h >> 52) << (GHOST_SEQ_BITS + 1);
}

/* Remembers a key leaving the cache: a candidate the window could not
 * place in main, or an entry evicted from main. */
static void ghost_add(struct shard *s, uint64_t h, bool main)
{
    struct ghosts *g = &s->ghost;
    uint32_t seq = main ? ++g->mseq : ++g->wseq;

    if (g->n == 0)
        return;
    *ghost_slot(s, h) = ghost_fp(h) | (main ? GHOST_SIDE_MAIN : 0) | (seq & GHOST_SEQ_MASK);
}

/* A missed key is being inserted: if it left recently (within the reach),
 * the side it left from was too small by one entry. */
static void ghost_check(struct shard *s, uint64_t h)
{
    struct ghosts *g = &s->ghost;
    uint32_t *sl, e, dist;
    double cap, win, reach;

    if (g->n == 0)
        return;
    sl = ghost_slot(s, h);
    e = *sl;
    if (e == 0 || (e & ~(GHOST_SIDE_MAIN | GHOST_SEQ_MASK)) != ghost_fp(h))
        return;
    *sl = 0;
    cap = (double)ci_shard_capacity(s);
    if (cap < 1)
        return;
    win = cap * s->window_frac;
    reach = win > GHOST_REACH_MIN * cap ? win : GHOST_REACH_MIN * cap;
    if (reach > cap - win)
        reach = cap - win;
    if (e & GHOST_SIDE_MAIN) {
        dist = (g->mseq - e) & GHOST_SEQ_MASK;
        if (dist <= reach)
            s->window_frac -= 1.0 / cap;
    } else {
        dist = (g->wseq - e) & GHOST_SEQ_MASK;
        if (dist <= reach)
            s->window_frac += 1.0 / cap;
    }
    if (s->window_frac < 0)
        s->window_frac = 0;
    if (s->window_frac > WINDOW_MAX)
        s->window_frac = WINDOW_MAX;
}

void ci_policy_init(cache_t *c, struct shard *s)
{
    size_t entries = s->max_entries ? s->max_entries : 64;

    s->window_frac = WINDOW_INITIAL;
    if (uses_sketch(c))
        (void)sketch_reset(&s->sketch, entries);
    if (is_tinylfu(c))
        (void)ghost_reset(s, entries);
}

/* Entries the sketch would need after one more insert, or 0 if it fits.
 * It grows in steps of 1/8 while a byte-limited shard fills (a resize
 * starts the sketch over, which matters little then: nothing is evicted
 * until the shard is full, and it stops growing when it is). */
static size_t sketch_wanted(const cache_t *c, const struct shard *s)
{
    if (!uses_sketch(c) || s->count + 1 <= s->sketch.capacity || s->max_entries != 0)
        return 0;
    return (size_t)s->sketch.capacity + s->sketch.capacity / 8 + 1;
}

size_t ci_policy_growth_bytes(const cache_t *c, const struct shard *s)
{
    size_t want = sketch_wanted(c, s);

    if (want == 0)
        return 0;
    return sketch_bytes_for(want) - sketch_bytes(&s->sketch) +
           (is_tinylfu(c) ? ghost_bytes_for(want) - (size_t)s->ghost.n * sizeof(uint32_t) : 0);
}

int ci_policy_reserve(const cache_t *c, struct shard *s)
{
    size_t want = sketch_wanted(c, s);

    if (want == 0)
        return 0;
    if (is_tinylfu(c) && ghost_reset(s, want) != 0)
        return -1;
    return sketch_reset(&s->sketch, want);
}

void ci_policy_record(cache_t *c, struct shard *s, uint64_t hash)
{
    if (uses_sketch(c))
        sketch_increment(&s->sketch, hash);
}

void ci_policy_insert(cache_t *c, struct shard *s, uint32_t idx)
{
    const cache_value_t *v = slot_val(slot_at(s, idx));
    unsigned list = 0;

    if (c->cfg.policy == CACHE_POLICY_VOLATILE_LRU && !(v->flags & VAL_TTL))
        list = 1;
    if (is_tinylfu(c)) {
        list = LIST_WINDOW;
        ghost_check(s, ci_slot_hash(c, s, idx));
    }
    ci_list_push_front(s, list, idx);
    s->seg_weight[list] += ci_entry_weight(s, v);
}

static void protected_overflow(struct shard *s)
{
    uint64_t cap = ci_shard_capacity(s);
    uint64_t main = cap - (uint64_t)((double)cap * s->window_frac);
    uint64_t pmax = (uint64_t)((double)main * PROTECTED_SHARE);

    while (s->seg_weight[LIST_PROTECTED] > pmax) {
        uint32_t idx = ci_list_back(s, LIST_PROTECTED);
        if (idx == 0)
            break;
        move_to(s, idx, LIST_PROBATION);
    }
}

void ci_policy_hit(cache_t *c, struct shard *s, uint32_t idx)
{
    unsigned list = slot_list(slot_at(s, idx));

    if (!is_tinylfu(c)) {
        move_to(s, idx, list);
        return;
    }
    if (list == LIST_PROBATION) {
        move_to(s, idx, LIST_PROTECTED);
        protected_overflow(s);
    } else {
        move_to(s, idx, list);
    }
}

void ci_policy_unlink(struct shard *s, uint32_t idx)
{
    struct slot *sl = slot_at(s, idx);

    s->seg_weight[slot_list(sl)] -= ci_entry_weight(s, slot_val(sl));
    ci_list_remove(s, idx);
}

bool ci_policy_reclaimable(cache_t *c, struct shard *s, size_t need_bytes, size_t need_entries)
{
    switch (c->cfg.policy) {
    case CACHE_POLICY_NOEVICTION:
        return false;
    case CACHE_POLICY_VOLATILE_LRU:
    case CACHE_POLICY_VOLATILE_LFU:
    case CACHE_POLICY_VOLATILE_RANDOM:
    case CACHE_POLICY_VOLATILE_TTL:
        return s->vol_bytes >= need_bytes && s->hcount >= need_entries;
    default:
        return s->entry_bytes >= need_bytes && s->count >= need_entries;
    }
}

/* ======================================================================
 * Victim selection for everything but W-TinyLFU
 * ====================================================================== */

static uint32_t lru_victim(const struct shard *s, unsigned list, uint32_t newest)
{
    uint32_t idx = ci_list_back(s, list);
    return idx == newest ? 0 : idx; /* newest is the front: list of one */
}

static uint32_t random_victim(struct shard *s, uint32_t newest)
{
    uint32_t i;

    if (s->count < 2)
        return 0;
    i = (uint32_t)(((ci_rng_next(&s->rng) & 0xffffffffu) * s->tcap) >> 32);
    for (;;) {
        uint32_t idx = s->table[i] & IDX_MASK;
        if (s->table[i] != 0 && idx != newest)
            return idx;
        if (++i == s->tcap)
            i = 0;
    }
}

static uint32_t random_heap_pos(struct shard *s)
{
    return (uint32_t)(((ci_rng_next(&s->rng) & 0xffffffffu) * s->hcount) >> 32);
}

static uint32_t volatile_random_victim(struct shard *s, uint32_t newest)
{
    uint32_t idx;

    if (s->hcount == 0 || (s->hcount == 1 && s->hslot[0] == newest))
        return 0;
    do
        idx = s->hslot[random_heap_pos(s)];
    while (idx == newest);
    return idx;
}

static uint32_t ttl_victim(const struct shard *s, uint32_t newest)
{
    if (s->hcount == 0)
        return 0;
    if (s->hslot[0] != newest)
        return s->hslot[0];
    if (s->hcount == 1)
        return 0;
    if (s->hcount == 2 || s->hexp[1] <= s->hexp[2])
        return s->hslot[1];
    return s->hslot[2];
}

static uint32_t volatile_lfu_victim(cache_t *c, struct shard *s, uint32_t newest)
{
    uint32_t best = 0;
    unsigned best_f = UINT_MAX;

    if (s->hcount == 0 || (s->hcount == 1 && s->hslot[0] == newest))
        return 0;
    for (int n = 0; n < VOLATILE_SAMPLES; n++) {
        uint32_t idx = s->hslot[random_heap_pos(s)];
        unsigned f;
        if (idx == newest)
            continue;
        f = sketch_frequency(&s->sketch, ci_slot_hash(c, s, idx));
        if (f < best_f) {
            best_f = f;
            best = idx;
        }
    }
    return best ? best : volatile_random_victim(s, newest);
}

static uint32_t pick_victim(cache_t *c, struct shard *s, uint32_t newest)
{
    switch (c->cfg.policy) {
    case CACHE_POLICY_ALLKEYS_LRU:
    case CACHE_POLICY_VOLATILE_LRU:
        return lru_victim(s, 0, newest);
    case CACHE_POLICY_VOLATILE_LFU:
        return volatile_lfu_victim(c, s, newest);
    case CACHE_POLICY_ALLKEYS_RANDOM:
        return random_victim(s, newest);
    case CACHE_POLICY_VOLATILE_RANDOM:
        return volatile_random_victim(s, newest);
    case CACHE_POLICY_VOLATILE_TTL:
        return ttl_victim(s, newest);
    default:
        return 0;
    }
}

static bool over_limit(const struct shard *s)
{
    return (s->limit && s->mem > s->limit) || (s->max_entries && s->count > s->max_entries);
}

static void evict(cache_t *c, struct shard *s, uint32_t idx)
{
    ci_do_unlink_entry(c, s, idx);
    s->evictions++;
}

/* ======================================================================
 * W-TinyLFU
 * ====================================================================== */

/* Main's least recent entry other than cand, or 0. */
static uint32_t main_victim(const struct shard *s, uint32_t cand)
{
    uint32_t idx = ci_list_back(s, LIST_PROBATION);

    if (idx == cand)
        idx = slot_prev(slot_at(s, idx));
    if (idx >= FIRST_SLOT)
        return idx;
    return ci_list_back(s, LIST_PROTECTED);
}

/* Moves the window's LRU entry into probation and makes room for it in
 * main by dueling with main's LRU entries: the one the sketch deems less
 * frequent is evicted (ties keep the victim: on loops that keeps main
 * stable). Either way the loser is remembered as a ghost. */
static void window_overflow(cache_t *c, struct shard *s)
{
    uint32_t cand = ci_list_back(s, LIST_WINDOW);
    uint64_t hc = ci_slot_hash(c, s, cand);
    unsigned fc = sketch_frequency(&s->sketch, hc);

    move_to(s, cand, LIST_PROBATION);
    while (over_limit(s)) {
        uint32_t victim = main_victim(s, cand);
        uint64_t hv = victim ? ci_slot_hash(c, s, victim) : 0;
        if (victim == 0 || fc <= sketch_frequency(&s->sketch, hv)) {
            ghost_add(s, hc, false);
            evict(c, s, cand);
            return;
        }
        ghost_add(s, hv, true);
        evict(c, s, victim);
    }
}

static bool tinylfu_evict(cache_t *c, struct shard *s)
{
    uint64_t wmax = (uint64_t)((double)ci_shard_capacity(s) * s->window_frac);

    while (s->seg_weight[LIST_WINDOW] > wmax && ci_list_back(s, LIST_WINDOW))
        window_overflow(c, s);
    /* window below its share but the shard is full: main shrinks */
    while (over_limit(s)) {
        uint32_t idx = main_victim(s, 0);
        if (idx == 0)
            idx = ci_list_back(s, LIST_WINDOW);
        if (idx == 0)
            return false;
        evict(c, s, idx);
    }
    protected_overflow(s);
    return true;
}

bool ci_do_evict(cache_t *c, struct shard *s, uint32_t newest)
{
    if (is_tinylfu(c))
        return tinylfu_evict(c, s);
    while (over_limit(s)) {
        uint32_t idx = pick_victim(c, s, newest);
        if (idx == 0)
            return false;
        evict(c, s, idx);
    }
    return true;
}
