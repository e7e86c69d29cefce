/*
 * bloom.h - bloom filter of the keys that exist in the store: the
 * cache-penetration guard. A lookup for a key the filter has never seen
 * can be answered "absent" without touching the database.
 *
 * It is a plain (non-counting) filter, so it cannot delete. After a key is
 * deleted the filter keeps answering "maybe present" for it; that is only
 * a wasted lookup (the cache's negative entry or the database then says
 * absent), never a wrong answer. Such stale bits accumulate, so the owner
 * rebuilds the filter from the store when bloom_stale_ratio() grows (say
 * above 0.2) or on a timer:
 *
 *     bloom_rebuild_begin(b);
 *     for each key in the store: bloom_rebuild_add(b, key, len);
 *     bloom_rebuild_end(b);
 *
 * During a rebuild every bloom_add() goes to both the live and the new
 * bit array and lookups use the live one, so there is never a false
 * "absent": a key committed before the rebuild's scan is read by the scan,
 * and one committed after bloom_rebuild_begin() is added to both. Callers
 * must add a key after its database commit.
 *
 * Thread safety: add and may_contain are lock-free (atomic bit operations)
 * and may run from any thread at any time. One rebuild at a time (the
 * begin/add/end calls of a rebuild come from one thread).
 */
#ifndef SQLCACHED_BLOOM_H
#define SQLCACHED_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bloom bloom_t;

/* Sizes the filter for `capacity` keys at false-positive rate `fp_rate`
 * (0 < fp_rate < 1). Returns NULL on allocation failure or bad arguments. */
bloom_t *bloom_create(size_t capacity, double fp_rate);

/* Frees the filter. No call may be running. NULL is a no-op. */
void bloom_destroy(bloom_t *b);

/* Records that key exists. Cannot fail. */
void bloom_add(bloom_t *b, const void *key, size_t len);

/* false: key was never added since the last clear/rebuild (definitely
 * absent). true: it probably exists. */
bool bloom_may_contain(bloom_t *b, const void *key, size_t len);

/* Records that a key was deleted (only counted, for bloom_stale_ratio). */
void bloom_note_delete(bloom_t *b);

/* Deletes noted since the last rebuild, divided by keys added. */
double bloom_stale_ratio(bloom_t *b);

/* Empties the filter. Only safe when the store is empty too, or when
 * false "absent" answers are acceptable; use the rebuild otherwise. */
void bloom_clear(bloom_t *b);

/* Rebuild protocol, see the top of this file. */
void bloom_rebuild_begin(bloom_t *b);
void bloom_rebuild_add(bloom_t *b, const void *key, size_t len);
void bloom_rebuild_end(bloom_t *b);

/* Bytes allocated for the bit arrays. */
size_t bloom_bytes(const bloom_t *b);

#endif
