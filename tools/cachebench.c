/*
 * cachebench.c - microbenchmark of the memory tier alone.
 *
 *   cachebench [--seconds S] [--policy NAME] [--shards N]
 *       get/set ops per second with 1 and 2 threads: uniform keys over a
 *       key space 1/0.9 times the cache's entry capacity, so about 90% of
 *       gets hit; every miss is followed by a set.
 *
 *   cachebench --overhead [--count N] [--policy NAME] [--shards N]
 *       inserts N (default 1,000,000) entries of 16-byte keys and 100-byte
 *       values and prints the per-entry overhead: (memory - N * 116) / N,
 *       measured three ways: the cache's own accounting, the malloc arena
 *       delta (mallinfo2: in-use heap plus mmapped blocks) and the RSS
 *       delta.
 */
#include "cache.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct opts {
    double seconds;
    cache_policy_t policy;
    unsigned shards;
    size_t count;
    int overhead;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ======================================================================
 * Throughput
 * ====================================================================== */

#define CAPACITY 100000
#define KEYSPACE (CAPACITY * 10 / 9)

struct worker {
    cache_t *c;
    double seconds;
    uint64_t seed;
    uint64_t ops, hits, gets;
};

static void one_op(struct worker *w, uint64_t *rng, const char *value)
{
    char key[16];
    uint64_t k = next_rand(rng) % KEYSPACE;
    cache_value_t *v;

    memcpy(key, "key:", 4);
    memcpy(key + 4, &k, 8);
    memcpy(key + 12, "!!!!", 4);
    w->gets++;
    w->ops++;
    if (cache_get(w->c, key, sizeof(key), 0, &v) == CACHE_HIT) {
        w->hits++;
        cache_value_release(v);
        return;
    }
    cache_fill_t f = {.data = value, .len = 100, .version = 1};
    (void)cache_set(w->c, key, sizeof(key), &f, 0);
    w->ops++;
}

static void *on_worker(void *arg)
{
    struct worker *w = arg;
    static const char value[100];
    uint64_t rng = w->seed;
    double end = now_s() + w->seconds;

    while (now_s() < end)
        for (int i = 0; i < 1000; i++)
            one_op(w, &rng, value);
    return NULL;
}

static cache_t *bench_cache(const struct opts *o, size_t max_entries, size_t memory)
{
    cache_config_t cfg;

    cache_config_init(&cfg);
    cfg.policy = o->policy;
    cfg.shards = o->shards;
    cfg.max_entries = max_entries;
    cfg.memory_limit = memory;
    return cache_create(&cfg);
}

static int run_throughput(const struct opts *o, int threads)
{
    struct worker w[2] = {{0}};
    pthread_t t[2];
    uint64_t ops = 0, hits = 0, gets = 0;
    cache_t *c = bench_cache(o, CAPACITY, 0);

    if (c == NULL)
        return -1;
    /* warm up: fill the cache */
    w[0].c = c;
    w[0].seed = 99;
    for (int i = 0; i < 4 * KEYSPACE; i++)
        one_op(&w[0], &w[0].seed, (const char[100]){0});
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.c = c, .seconds = o->seconds, .seed = 7 + i};
        pthread_create(&t[i], NULL, on_worker, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        ops += w[i].ops;
        hits += w[i].hits;
        gets += w[i].gets;
    }
    printf("%-16s threads=%d shards=%-3u ops/s=%11.0f  hit_ratio=%.3f\n",
           cache_policy_name(o->policy), threads, o->shards, (double)ops / o->seconds,
           (double)hits / (double)gets);
    cache_destroy(c);
    return 0;
}

/* ======================================================================
 * Per-entry overhead
 * ====================================================================== */

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void print_overhead(const char *what, size_t bytes, size_t n)
{
    double raw = (double)n * 116.0;
    printf("  %-22s %12zu bytes  -> %6.2f bytes/entry overhead\n", what, bytes,
           ((double)bytes - raw) / (double)n);
}

static int run_overhead(const struct opts *o)
{
    static const char value[100];
    size_t heap0 = heap_in_use(), rss0 = rss_bytes();
    cache_t *c = bench_cache(o, 0, (size_t)4 << 30);
    cache_stats_t st;
    char key[24];

    if (c == NULL)
        return -1;
    for (size_t i = 0; i < o->count; i++) {
        snprintf(key, sizeof(key), "k%015zu", i % 1000000000000000u);
        cache_fill_t f = {.data = value,
                          .len = sizeof(value),
                          .content_type = "application/json",
                          .version = 1};
        if (cache_set(c, key, 16, &f, 0) != CACHE_OK)
            return -1;
    }
    cache_stats(c, &st);
    printf("%zu entries, 16-byte keys, 100-byte values, policy %s, "
           "%u shards (raw %zu bytes)\n",
           o->count, cache_policy_name(o->policy), o->shards, o->count * 116);
    print_overhead("cache accounting", st.memory, o->count);
    print_overhead("malloc arena delta", heap_in_use() - heap0, o->count);
    print_overhead("RSS delta", rss_bytes() - rss0, o->count);
    cache_destroy(c);
    return 0;
}

static int parse(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){.seconds = 2,
                       .policy = CACHE_POLICY_ALLKEYS_LFU,
                       .shards = 16,
                       .count = 1000000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--overhead") == 0) {
            o->overhead = 1;
            continue;
        }
        if (v == NULL)
            return -1;
        i++;
        if (strcmp(a, "--seconds") == 0)
            o->seconds = atof(v);
        else if (strcmp(a, "--policy") == 0)
            o->policy = cache_policy_from_name(v);
        else if (strcmp(a, "--shards") == 0)
            o->shards = (unsigned)atoi(v);
        else if (strcmp(a, "--count") == 0)
            o->count = (size_t)atoll(v);
        else
            return -1;
    }
    return o->policy == CACHE_POLICY_INVALID || o->count == 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct opts o;

    if (parse(&o, argc, argv) != 0) {
        fprintf(stderr, "usage: cachebench [--overhead [--count N]] "
                        "[--seconds S] [--policy NAME] [--shards N]\n");
        return 2;
    }
    if (o.overhead)
        return run_overhead(&o) == 0 ? 0 : 1;
    if (run_throughput(&o, 1) != 0 || run_throughput(&o, 2) != 0)
        return 1;
    return 0;
}
