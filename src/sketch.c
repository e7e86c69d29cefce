/*
 * sketch.c - aging count-min sketch (see sketch.h).
 *
 * Layout: SKETCH_ROWS rows of `width` 64-bit words, each word holding 16
 * counters of 4 bits. Row r picks a word and a nibble from its own remix of
 * the key hash. Width: one word per row for every four expected entries
 * gives 16 counters per entry in total (8 bytes per entry). The width is
 * not rounded to a power of two (rows index by multiply-shift), so the
 * table is never up to twice the size it was asked for.
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

static uint32_t width_for(size_t entries)
{
    size_t w = entries / ENTRIES_PER_WORD;

    if (w < 16)
        w = 16;
    if (w > (1u << 30))
        w = 1u << 30;
    return (uint32_t)w;
}

size_t sketch_bytes_for(size_t entries)
{
    return (size_t)width_for(entries) * SKETCH_ROWS * sizeof(uint64_t);
}

int sketch_reset(sketch_t *s, size_t entries)
{
    uint32_t per_row = width_for(entries);
    uint64_t *words = calloc((size_t)per_row * SKETCH_ROWS, sizeof(*words));

    if (words == NULL)
        return -1;
    free(s->words);
    s->words = words;
    s->width = per_row;
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
    size_t word = (size_t)r * s->width +
                  (size_t)(((x & 0xffffffffu) * s->width) >> 32);
    *shift = (unsigned)((x >> 58) & 15) * 4;
    return &s->words[word];
}

static void halve(sketch_t *s)
{
    size_t n = (size_t)s->width * SKETCH_ROWS;
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
    return s->words ? (size_t)s->width * SKETCH_ROWS * sizeof(uint64_t)
                    : 0;
}
