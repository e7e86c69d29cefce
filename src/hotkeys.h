/*
 * hotkeys.h - the keys read most often recently: a bounded heavy-hitters
 * table (Space-Saving, Metwally et al. 2005) whose counts halve every
 * half-life, so "often" means "recently".
 *
 * Memory is fixed at creation: HOTKEYS_SHARDS shards of HOTKEYS_SLOTS
 * monitored keys each (512 keys of up to HOTKEYS_KEY_MAX bytes, about
 * 270 KiB in all), whatever the traffic. A key belongs to one shard (by
 * its hash), so each shard is an exact Space-Saving summary of its keys:
 * a key read more than (reads of the shard) / HOTKEYS_SLOTS times is in
 * the table, and its estimated count is at most `error` above the truth.
 *
 * Thread safety: every call may run from any thread; each shard has its
 * own lock, held for one scan of its 32 slots.
 */
#ifndef SQLCACHED_HOTKEYS_H
#define SQLCACHED_HOTKEYS_H

#include <stddef.h>
#include <stdint.h>

#define HOTKEYS_SHARDS 16
#define HOTKEYS_SLOTS 32
#define HOTKEYS_KEY_MAX 512
#define HOTKEYS_CAPACITY (HOTKEYS_SHARDS * HOTKEYS_SLOTS)
#define HOTKEYS_HALF_LIFE_MS 10000

typedef struct hotkeys hotkeys_t;

/* One monitored key, as hotkeys_top copies it out. */
typedef struct hotkeys_item {
    unsigned char key[HOTKEYS_KEY_MAX];
    size_t klen;
    uint64_t count; /* estimated reads, decayed: never below the true (decayed) count */
    uint64_t error; /* count - error is a lower bound of the true count */
} hotkeys_item_t;

/* A new, empty table whose counts halve every half_life_ms (> 0); NULL
 * on allocation failure. Free with hotkeys_destroy. */
hotkeys_t *hotkeys_create(int64_t half_life_ms);

/* Frees the table; NULL is a no-op. */
void hotkeys_destroy(hotkeys_t *h);

/* Counts one read of key at now_ms (the caller's clock, ms). Keys of 0 or
 * more than HOTKEYS_KEY_MAX bytes are ignored. Cannot fail; allocates
 * nothing. */
void hotkeys_record(hotkeys_t *h, const void *key, size_t klen, int64_t now_ms);

/* Copies the at most `max` keys with the highest counts at now_ms into
 * out (an array of max items the caller owns), highest count first (ties
 * in key byte order). Returns how many were copied. Cannot fail. */
size_t hotkeys_top(hotkeys_t *h, int64_t now_ms, hotkeys_item_t *out, size_t max);

#endif
