/*
 * hotkeys.c - Space-Saving heavy hitters with periodic halving (hotkeys.h).
 *
 * A shard holds up to HOTKEYS_SLOTS keys with a count and an error each.
 * A read of a monitored key adds one to its count; a read of another key
 * takes a free slot (count 1, error 0) or, when the shard is full, the slot
 * of the key with the smallest count m, which becomes (count m + 1,
 * error m): Space-Saving. The hashes and counts sit in arrays of their own
 * so the scan of a read touches a few cache lines, not the key bytes.
 *
 * Decay: every half-life (epoch = now / half_life) the counts and errors of
 * a shard are shifted right by the epochs passed, lazily, by the first call
 * that locks the shard in a new epoch; keys whose count reaches 0 leave.
 * A clock that steps back only moves the epoch back (no decay).
 *
 * Locking: one mutex per shard; nothing is allocated after create.
 */
#include "hotkeys.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct shard {
    alignas(64) pthread_mutex_t lock;
    int64_t epoch;
    unsigned used;
    uint64_t hash[HOTKEYS_SLOTS];
    uint64_t count[HOTKEYS_SLOTS];
    uint64_t error[HOTKEYS_SLOTS];
    uint16_t klen[HOTKEYS_SLOTS];
    unsigned char key[HOTKEYS_SLOTS][HOTKEYS_KEY_MAX];
};

struct hotkeys {
    struct shard *shards; /* HOTKEYS_SHARDS, 64-byte aligned */
    int64_t half_life_ms;
};

/* FNV-1a, then a murmur3 finalizer so the top bits (the shard) mix well. */
static uint64_t key_hash(const unsigned char *key, size_t klen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ key[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

hotkeys_t *hotkeys_create(int64_t half_life_ms)
{
    if (half_life_ms <= 0)
        return NULL;
    hotkeys_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->shards = aligned_alloc(alignof(struct shard), HOTKEYS_SHARDS * sizeof *h->shards);
    if (!h->shards) {
        free(h);
        return NULL;
    }
    memset(h->shards, 0, HOTKEYS_SHARDS * sizeof *h->shards);
    h->half_life_ms = half_life_ms;
    for (int i = 0; i < HOTKEYS_SHARDS; i++) {
        if (pthread_mutex_init(&h->shards[i].lock, NULL) != 0) {
            while (i-- > 0)
                pthread_mutex_destroy(&h->shards[i].lock);
            free(h->shards);
            free(h);
            return NULL;
        }
    }
    return h;
}

void hotkeys_destroy(hotkeys_t *h)
{
    if (!h)
        return;
    for (int i = 0; i < HOTKEYS_SHARDS; i++)
        pthread_mutex_destroy(&h->shards[i].lock);
    free(h->shards);
    free(h);
}

/* Moves slot `from` into slot `to` (both < used). Lock held. */
static void do_move(struct shard *s, unsigned to, unsigned from)
{
    s->hash[to] = s->hash[from];
    s->count[to] = s->count[from];
    s->error[to] = s->error[from];
    s->klen[to] = s->klen[from];
    memcpy(s->key[to], s->key[from], s->klen[from]);
}

/* Brings the shard's counts to epoch e: halve once per epoch passed, drop
 * the keys that reach 0. Lock held. */
static void do_decay(struct shard *s, int64_t e)
{
    if (e <= s->epoch) {
        s->epoch = e;
        return;
    }
    int64_t shift = e - s->epoch;
    s->epoch = e;
    for (unsigned i = 0; i < s->used;) {
        s->count[i] = shift >= 64 ? 0 : s->count[i] >> shift;
        s->error[i] = shift >= 64 ? 0 : s->error[i] >> shift;
        if (s->count[i] == 0) {
            if (i != --s->used)
                do_move(s, i, s->used);
            continue; /* the slot moved here was not decayed yet */
        }
        i++;
    }
}

void hotkeys_record(hotkeys_t *h, const void *key, size_t klen, int64_t now_ms)
{
    if (!h || !key || klen == 0 || klen > HOTKEYS_KEY_MAX)
        return;
    uint64_t hv = key_hash(key, klen);
    struct shard *s = &h->shards[hv >> 60]; /* HOTKEYS_SHARDS == 16 */
    pthread_mutex_lock(&s->lock);
    do_decay(s, now_ms / h->half_life_ms);
    unsigned i, min = 0;
    for (i = 0; i < s->used; i++) {
        if (s->hash[i] == hv && s->klen[i] == klen && memcmp(s->key[i], key, klen) == 0) {
            s->count[i]++;
            goto out;
        }
        if (s->count[i] < s->count[min])
            min = i;
    }
    if (s->used < HOTKEYS_SLOTS) {
        i = s->used++;
        s->count[i] = 1;
        s->error[i] = 0;
    } else {
        i = min;
        s->error[i] = s->count[i];
        s->count[i]++;
    }
    s->hash[i] = hv;
    s->klen[i] = (uint16_t)klen;
    memcpy(s->key[i], key, klen);
out:
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------------
 * Top N: rank the counts of every shard, then copy the keys of the best
 * (a key replaced between the two steps is skipped).
 * ------------------------------------------------------------------------ */

typedef struct cand {
    uint64_t count, error, hash;
    unsigned shard;
} cand_t;

static int by_count_desc(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int item_order(const void *a, const void *b)
{
    const hotkeys_item_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

/* Copies the key of candidate c into *out if the shard still holds it. */
static bool copy_key(hotkeys_t *h, const cand_t *c, hotkeys_item_t *out)
{
    struct shard *s = &h->shards[c->shard];
    bool found = false;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < s->used && !found; i++) {
        if (s->hash[i] != c->hash)
            continue;
        memcpy(out->key, s->key[i], s->klen[i]);
        out->klen = s->klen[i];
        out->count = c->count;
        out->error = c->error;
        found = true;
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

size_t hotkeys_top(hotkeys_t *h, int64_t now_ms, hotkeys_item_t *out, size_t max)
{
    cand_t cand[HOTKEYS_CAPACITY];
    size_t n = 0, got = 0;
    if (!h || max == 0)
        return 0;
    for (unsigned sh = 0; sh < HOTKEYS_SHARDS; sh++) {
        struct shard *s = &h->shards[sh];
        pthread_mutex_lock(&s->lock);
        do_decay(s, now_ms / h->half_life_ms);
        for (unsigned i = 0; i < s->used; i++)
            cand[n++] = (cand_t){s->count[i], s->error[i], s->hash[i], sh};
        pthread_mutex_unlock(&s->lock);
    }
    qsort(cand, n, sizeof *cand, by_count_desc);
    for (size_t i = 0; i < n && got < max; i++)
        if (copy_key(h, &cand[i], &out[got]))
            got++;
    qsort(out, got, sizeof *out, item_order);
    return got;
}
