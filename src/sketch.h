/*
 * sketch.h - count-min sketch of 4-bit counters that ages: the frequency
 * estimate behind the LFU policies.
 *
 * Each key touches one counter in each of four rows; its estimate is the
 * minimum of the four. Every increment bumps all four (a conservative
 * update, bumping only the minimum ones, measured worse on loop traces:
 * it lets just-seen keys outrank equally frequent older ones). After
 * sample_size increments every counter is halved, so old popularity
 * fades. A doorkeeper (a bloom filter of 4 bits per entry, two bits per
 * key) takes each key's first sighting so that keys seen once do not
 * crowd the counters; it is cleared at each halving, and a key in it
 * counts one more. Not thread-safe: the owner's lock covers
 * it (one sketch per cache shard).
 */
#ifndef SQLCACHED_SKETCH_H
#define SQLCACHED_SKETCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct sketch {
    uint64_t *words;      /* 16 counters of 4 bits per word, then the
                             doorkeeper */
    uint32_t width;       /* words per row (any number >= 16) */
    uint32_t additions;   /* increments since the last halving */
    uint32_t sample_size; /* halve after this many increments */
    uint32_t capacity;    /* entries it was sized for */
    uint64_t *door;       /* doorkeeper bloom filter (inside words) */
    uint32_t door_words;
} sketch_t;

#define SKETCH_ROWS 4

/* Sizes the sketch for about `entries` live keys and zeroes it, replacing
 * any previous table. Returns 0, or -1 on allocation failure (the sketch
 * is then unchanged). s must be zeroed before the first call. */
int sketch_reset(sketch_t *s, size_t entries);

/* Frees the table. Cannot fail. */
void sketch_free(sketch_t *s);

/* Records one access of the key with this hash. Cannot fail. */
void sketch_increment(sketch_t *s, uint64_t hash);

/* Returns the estimated recent access count, 0..16. */
unsigned sketch_frequency(const sketch_t *s, uint64_t hash);

/* Bytes allocated for the table. */
size_t sketch_bytes(const sketch_t *s);

/* Bytes a sketch sized for `entries` would allocate. */
size_t sketch_bytes_for(size_t entries);

#endif
