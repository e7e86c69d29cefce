/*
 * sketch.c - aging count-min sketch (see sketch.h).
 *
 * Layout: SKETCH_ROWS rows of `width` 64-bit words, each word holding 16
 * counters of 4 bits. Row r picks a word and a nibble from its own remix of
 * the key hash. Width: one word per row for every 17 expected entries
 * gives 3.76 counters per entry in total (1.88 bytes per entry); the
 * doorkeeper that follows the rows adds 4 bits per entry (2.38 bytes in
 * all). With the doorkeeper absorbing one-time keys this small sketch
 * measured as well as 16 counters per entry without one on the reference
 * traces; one word per 17 entries met the hit-ratio targets on every cache
 * seed tried, one per 18 or 20 did not (docs/memory-tier.md). The width is
 * not rounded to a power of two (rows index by multiply-shift), so the
 * table is never up to twice the size it was asked for.
 */
#include "sketch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ENTRIES_PER_WORD 17
#define DOOR_BITS 4 /* doorkeeper bits per entry */

static const uint64_t row_seed[SKETCH_ROWS] = {
    0x9e3779b97f4a7c15ull,
    0xc2b2ae3d27d4eb4full,
    0x165667b19e3779f9ull,
    0xd6e8feb86659fd93ull,
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

static uint32_t door_words_for(size_t entries)
{
    size_t w = (entries * DOOR_BITS + 63) / 64;

    if (w < 8)
        w = 8;
    if (w > (1u << 30))
        w = 1u << 30;
    return (uint32_t)w;
}

size_t sketch_bytes_for(size_t entries)
{
    return ((size_t)width_for(entries) * SKETCH_ROWS + door_words_for(entries)) * sizeof(uint64_t);
}

int sketch_reset(sketch_t *s, size_t entries)
{
    uint32_t per_row = width_for(entries), dw = door_words_for(entries);
    uint64_t *words = calloc((size_t)per_row * SKETCH_ROWS + dw, sizeof(*words));

    if (words == NULL)
        return -1;
    free(s->words);
    s->words = words;
    s->width = per_row;
    s->door = words + (size_t)per_row * SKETCH_ROWS;
    s->door_words = dw;
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
static uint64_t *counter_at(const sketch_t *s, uint64_t h, int r, unsigned *shift)
{
    uint64_t x = remix(h, r);
    size_t word = (size_t)r * s->width + (size_t)(((x & 0xffffffffu) * s->width) >> 32);
    *shift = (unsigned)((x >> 58) & 15) * 4;
    return &s->words[word];
}

static void halve(sketch_t *s)
{
    size_t n = (size_t)s->width * SKETCH_ROWS;
    for (size_t i = 0; i < n; i++)
        s->words[i] = (s->words[i] >> 1) & 0x7777777777777777ull;
    memset(s->door, 0, (size_t)s->door_words * sizeof(uint64_t));
    s->additions /= 2;
}

/* The doorkeeper's two bits for hash h. */
static void door_bits(const sketch_t *s, uint64_t h, size_t *b0, size_t *b1)
{
    uint64_t x = h * 0x9fb21c651e98df25ull;
    size_t nbits = (size_t)s->door_words * 64;

    *b0 = (size_t)(((x >> 32) * nbits) >> 32);
    *b1 = (size_t)(((x & 0xffffffffu) * nbits) >> 32);
}

static bool door_has(const sketch_t *s, uint64_t h)
{
    size_t b0, b1;

    door_bits(s, h, &b0, &b1);
    return (s->door[b0 / 64] >> (b0 % 64) & 1) && (s->door[b1 / 64] >> (b1 % 64) & 1);
}

void sketch_increment(sketch_t *s, uint64_t hash)
{
    bool added = false;

    if (s->words == NULL)
        return;
    if (!door_has(s, hash)) {
        size_t b0, b1;
        door_bits(s, hash, &b0, &b1);
        s->door[b0 / 64] |= 1ull << (b0 % 64);
        s->door[b1 / 64] |= 1ull << (b1 % 64);
        if (++s->additions >= s->sample_size)
            halve(s);
        return;
    }
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
    return min + (door_has(s, hash) ? 1 : 0);
}

size_t sketch_bytes(const sketch_t *s)
{
    return s->words ? ((size_t)s->width * SKETCH_ROWS + s->door_words) * sizeof(uint64_t) : 0;
}
