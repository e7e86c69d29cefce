/*
 * sketch.c - aging count-min sketch (see sketch.h).
 *
 * Layout: SKETCH_ROWS rows of (mask + 1) 64-bit words, each word holding 16
 * counters of 4 bits. Row r picks a word and a nibble from its own remix of
 * the key hash. Width: one word per row for every four expected entries
 * gives 16 counters per entry in total (2 bytes per entry).
 */
#include "sketch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ENTRIES_PER_WORD 4

static const uint64_t row_seed[SKETCH_ROWS] = {
    0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
    0x165667b19e3779f9ull, 0xd6e8feb86659fd93ull,
};

static uint64_t remix(uint64_t h, int row)
{
    h = (h ^ row_seed[row]) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

static uint32_t ceil_pow2(size_t n)
{
    uint32_t p = 1;
    while (p < n && p < (1u << 30))
        p <<= 1;
    return p;
}

int sketch_reset(sketch_t *s, size_t entries)
{
    uint32_t per_row = ceil_pow2(entries / ENTRIES_PER_WORD < 16 ? 16
                                : entries / ENTRIES_PER_WORD);
    uint64_t *words = calloc((size_t)per_row * SKETCH_ROWS, sizeof(*words));

    if (words == NULL)
        return -1;
    free(s->words);
    s->words = words;
    s->mask = per_row - 1;
    s->capacity = entries < 1 ? 1 : (uint32_t)entries;
    s->sample_size = 10u * s->capacity;
    s->additions = 0;
    return 0;
}

void sketch_free(sketch_t *s)
{
    free(s->words);
    memset(s, 0, sizeof(*s));
}

/* Locates row r's counter for hash h: word pointer and bit shift. */
static uint64_t *counter_at(const sketch_t *s, uint64_t h, int r,
                            unsigned *shift)
{
    uint64_t x = remix(h, r);
    size_t word = (size_t)r * (s->mask + 1) + (x & s->mask);
    *shift = (unsigned)((x >> 58) & 15) * 4;
    return &s->words[word];
}

static void halve(sketch_t *s)
{
    size_t n = (size_t)(s->mask + 1) * SKETCH_ROWS;
    for (size_t i = 0; i < n; i++)
        s->words[i] = (s->words[i] >> 1) & 0x7777777777777777ull;
    s->additions /= 2;
}

void sketch_increment(sketch_t *s, uint64_t hash)
{
    bool added = false;

    if (s->words == NULL)
        return;
    for (int r = 0; r < SKETCH_ROWS; r++) {
        unsigned sh;
        uint64_t *w = counter_at(s, hash, r, &sh);
        if (((*w >> sh) & 15) != 15) {
            *w += 1ull << sh;
            added = true;
        }
    }
    if (added && ++s->additions >= s->sample_size)
        halve(s);
}

unsigned sketch_frequency(const sketch_t *s, uint64_t hash)
{
    unsigned min = 15, sh;

    if (s->words == NULL)
        return 0;
    for (int r = 0; r < SKETCH_ROWS; r++) {
        const uint64_t *w = counter_at(s, hash, r, &sh);
        unsigned v = (unsigned)(*w >> sh) & 15;
        if (v < min)
            min = v;
    }
    return min;
}

size_t sketch_bytes(const sketch_t *s)
{
    return s->words ? (size_t)(s->mask + 1) * SKETCH_ROWS * sizeof(uint64_t)
                    : 0;
}
