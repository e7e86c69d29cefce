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
 * The window size adapts (hill climbing): every sample of 10 x capacity
 * requests the hit ratio is compared with the previous sample's; if it
 * improved, the window keeps moving the same way, otherwise the direction
 * reverses. Steps start at 6.25% of the capacity and decay by 2% per
 * sample. Caffeine also restarts the step when the hit ratio jumps by 5
 * points; on the reference traces those jumps are phase changes of the
 * workload, not effects of the window, and restarting measured worse, so
 * there is no restart. A larger window favours recency (LRU-like traces),
 * a smaller one frequency (loops, scans).
 */
#include "cache_int.h"


#define VOLATILE_SAMPLES 5
#define PROTECTED_SHARE  0.80
#define WINDOW_INITIAL   0.01
#define WINDOW_MAX       0.80
#define CLIMB_STEP       0.0625
#define CLIMB_DECAY      0.98
#define CLIMB_SAMPLE     10   /* requests per sample, times capacity */

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

void list_init(struct shard *s)
{
    for (unsigned l = 0; l < NLISTS; l++) {
        struct slot *head = slot_at(s, l);
        slot_set_prev(head, l);
        set_next(head, l, l);
    }
}

void list_push_front(struct shard *s, unsigned list, uint32_t idx)
{
    struct slot *head = slot_at(s, list), *sl = slot_at(s, idx);
    uint32_t first = next_of(head);

    slot_set_prev(sl, list);
    set_next(sl, first, list);
    slot_set_prev(slot_at(s, first), idx);
    set_next(head, idx, list);
}

void list_remove(struct shard *s, uint32_t idx)
{
    struct slot *sl = slot_at(s, idx), *p = slot_at(s, slot_prev(sl));
    uint32_t n = next_of(sl);

    set_next(p, n, slot_list(p));
    slot_set_prev(slot_at(s, n), slot_prev(sl));
}

/* Returns the least recent entry of a list, or 0 when it is empty. */
uint32_t list_back(const struct shard *s, unsigned list)
{
    uint32_t idx = slot_prev(slot_at(s, list));
    return idx == list ? 0 : idx;
}

static uint64_t weight_of(const struct shard *s, uint32_t idx)
{
    return entry_weight(s, slot_val(slot_at(s, idx)));
}

/* Moves idx to the front of `list`, keeping the segment weights. */
static void move_to(struct shard *s, uint32_t idx, unsigned list)
{
    uint64_t w = weight_of(s, idx);

    s->seg_weight[slot_list(slot_at(s, idx))] -= w;
    list_remove(s, idx);
    list_push_front(s, list, idx);
    s->seg_weight[list] += w;
}

/* ======================================================================
 * Hooks called by cache.c
 * ====================================================================== */

static bool uses_sketch(const cache_t *c)
{
    return c->cfg.policy == CACHE_POLICY_ALLKEYS_LFU ||
           c->cfg.policy == CACHE_POLICY_VOLATILE_LFU;
}

static bool is_tinylfu(const cache_t *c)
{
    return c->cfg.policy == CACHE_POLICY_ALLKEYS_LFU;
}

void policy_init(cache_t *c, struct shard *s)
{
    s->climb.step = CLIMB_STEP;
    s->climb.prev_rate = 0;
    s->window_frac = WINDOW_INITIAL;
    if (uses_sketch(c))
        (void)sketch_reset(&s->sketch, s->max_entries ? s->max_entries : 64);
}

/* Entries the sketch would need after one more insert, or 0 if it fits. */
static size_t sketch_wanted(const cache_t *c, const struct shard *s)
{
    if (!uses_sketch(c) || s->count + 1 <= s->sketch.capacity ||
        s->max_entries != 0)
        return 0;
    return (size_t)s->sketch.capacity + s->sketch.capacity / 4 + 1;
}

size_t policy_growth_bytes(const cache_t *c, const struct shard *s)
{
    size_t want = sketch_wanted(c, s);

    if (want == 0)
        return 0;
    return sketch_bytes_for(want) - sketch_bytes(&s->sketch);
}

int policy_reserve(const cache_t *c, struct shard *s)
{
    size_t want = sketch_wanted(c, s);

    return want == 0 ? 0 : sketch_reset(&s->sketch, want);
}

static void climb_adjust(struct shard *s)
{
    struct climber *cl = &s->climb;
    uint64_t req = cl->hits + cl->misses;
    double rate = (double)cl->hits / (double)req;
    double change = rate - cl->prev_rate;
    double amount = change >= 0 ? cl->step : -cl->step;

    cl->step = amount * CLIMB_DECAY;
    cl->prev_rate = rate;
    cl->hits = cl->misses = 0;
    s->window_frac += amount;
    if (s->window_frac < 0)
        s->window_frac = 0;
    if (s->window_frac > WINDOW_MAX)
        s->window_frac = WINDOW_MAX;
}

void policy_record(cache_t *c, struct shard *s, uint64_t hash)
{
    uint64_t sample;

    if (!uses_sketch(c))
        return;
    sketch_increment(&s->sketch, hash);
    if (!is_tinylfu(c))
        return;
    s->climb.misses++; /* turned into a hit by policy_hit */
    sample = CLIMB_SAMPLE * (uint64_t)(s->max_entries ? s->max_entries
                                                       : s->count + 1);
    if (s->climb.hits + s->climb.misses >= sample)
        climb_adjust(s);
}

void policy_insert(cache_t *c, struct shard *s, uint32_t idx)
{
    const cache_value_t *v = slot_val(slot_at(s, idx));
    unsigned list = 0;

    if (c->cfg.policy == CACHE_POLICY_VOLATILE_LRU && !(v->flags & VAL_TTL))
        list = 1;
    if (is_tinylfu(c))
        list = LIST_WINDOW;
    list_push_front(s, list, idx);
    s->seg_weight[list] += entry_weight(s, v);
}

static void protected_overflow(struct shard *s)
{
    uint64_t cap = shard_capacity(s);
    uint64_t main = cap - (uint64_t)((double)cap * s->window_frac);
    uint64_t pmax = (uint64_t)((double)main * PROTECTED_SHARE);

    while (s->seg_weight[LIST_PROTECTED] > pmax) {
        uint32_t idx = list_back(s, LIST_PROTECTED);
        if (idx == 0)
            break;
        move_to(s, idx, LIST_PROBATION);
    }
}

void policy_hit(cache_t *c, struct shard *s, uint32_t idx)
{
    unsigned list = slot_list(slot_at(s, idx));

    if (!is_tinylfu(c)) {
        move_to(s, idx, list);
        return;
    }
    s->climb.hits++;
    s->climb.misses--;
    if (list == LIST_PROBATION) {
        move_to(s, idx, LIST_PROTECTED);
        protected_overflow(s);
    } else {
        move_to(s, idx, list);
    }
}

void policy_unlink(struct shard *s, uint32_t idx)
{
    struct slot *sl = slot_at(s, idx);

    s->seg_weight[slot_list(sl)] -= entry_weight(s, slot_val(sl));
    list_remove(s, idx);
}

bool policy_reclaimable(cache_t *c, struct shard *s, size_t need_bytes,
                        size_t need_entries)
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

static uint32_t lru_victim(const struct shard *s, unsigned list,
                           uint32_t newest)
{
    uint32_t idx = list_back(s, list);
    return idx == newest ? 0 : idx; /* newest is the front: list of one */
}

static uint32_t random_victim(struct shard *s, uint32_t newest)
{
    uint32_t i;

    if (s->count < 2)
        return 0;
    i = (uint32_t)(((rng_next(&s->rng) & 0xffffffffu) * s->tcap) >> 32);
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
    return (uint32_t)(((rng_next(&s->rng) & 0xffffffffu) * s->hcount) >> 32);
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

static uint32_t volatile_lfu_victim(cache_t *c, struct shard *s,
                                    uint32_t newest)
{
    uint32_t best = 0;
    unsigned best_f = 16;

    if (s->hcount == 0 || (s->hcount == 1 && s->hslot[0] == newest))
        return 0;
    for (int n = 0; n < VOLATILE_SAMPLES; n++) {
        uint32_t idx = s->hslot[random_heap_pos(s)];
        unsigned f;
        if (idx == newest)
            continue;
        f = sketch_frequency(&s->sketch, slot_hash(c, s, idx));
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
    return (s->limit && s->mem > s->limit) ||
           (s->max_entries && s->count > s->max_entries);
}

static void evict(cache_t *c, struct shard *s, uint32_t idx)
{
    do_unlink_entry(c, s, idx);
    s->evictions++;
}

/* ======================================================================
 * W-TinyLFU
 * ====================================================================== */

static bool admit(cache_t *c, struct shard *s, uint32_t cand, uint32_t victim)
{
    unsigned fc = sketch_frequency(&s->sketch, slot_hash(c, s, cand));
    unsigned fv = sketch_frequency(&s->sketch, slot_hash(c, s, victim));

    /* ties keep the victim: on loops that keeps main stable */
    return fc > fv;
}

/* Main's least recent entry other than cand, or 0. */
static uint32_t main_victim(const struct shard *s, uint32_t cand)
{
    uint32_t idx = list_back(s, LIST_PROBATION);

    if (idx == cand)
        idx = slot_prev(slot_at(s, idx));
    if (idx >= FIRST_SLOT)
        return idx;
    return list_back(s, LIST_PROTECTED);
}

/* Moves the window's LRU entry into probation and makes room for it in
 * main by dueling with main's LRU entries. */
static void window_overflow(cache_t *c, struct shard *s)
{
    uint32_t cand = list_back(s, LIST_WINDOW);

    move_to(s, cand, LIST_PROBATION);
    while (over_limit(s)) {
        uint32_t victim = main_victim(s, cand);
        if (victim == 0 || !admit(c, s, cand, victim)) {
            evict(c, s, cand);
            return;
        }
        evict(c, s, victim);
    }
}

static bool tinylfu_evict(cache_t *c, struct shard *s)
{
    uint64_t wmax = (uint64_t)((double)shard_capacity(s) * s->window_frac);

    while (s->seg_weight[LIST_WINDOW] > wmax && list_back(s, LIST_WINDOW))
        window_overflow(c, s);
    /* window below its share but the shard is full: main shrinks */
    while (over_limit(s)) {
        uint32_t idx = main_victim(s, 0);
        if (idx == 0)
            idx = list_back(s, LIST_WINDOW);
        if (idx == 0)
            return false;
        evict(c, s, idx);
    }
    protected_overflow(s);
    return true;
}

bool do_evict(cache_t *c, struct shard *s, uint32_t newest)
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
