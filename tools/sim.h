/*
 * sim.h - trace replay through the memory tier, Belady's OPT and workload
 * generation. Used by sqlcached-sim (tools/sim.c) and by the tests.
 */
#ifndef SQLCACHED_SIM_H
#define SQLCACHED_SIM_H

#include "cache.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sim_trace {
    uint64_t *keys;
    size_t n;
    size_t cap;
} sim_trace_t;

typedef struct sim_options {
    size_t entries;    /* capacity in entries (max_entries); or */
    size_t memory;     /* capacity in bytes (memory_limit) */
    size_t value_size; /* bytes stored per entry; default 100 */
    unsigned shards;   /* default 1, comparable with single-cache figures */
    int64_t ttl_ms;    /* TTL per entry in logical ms (1 per request);
                            0 = none, so volatile-* behave as noeviction */
    uint64_t seed;
} sim_options_t;

typedef struct sim_result {
    const char *policy; /* static name; "opt" for Belady */
    uint64_t requests;
    uint64_t hits;
    uint64_t evictions;
    uint64_t resident; /* entries cached at the end */
} sim_result_t;

/* Reads one unsigned integer key per line from path ("-" = stdin); gzip
 * input is decompressed transparently. Blank lines are skipped. Returns 0,
 * or -1 (I/O error, malformed line, out of memory) with t emptied. */
int sim_trace_read(const char *path, sim_trace_t *t);

/* Generates `requests` Zipf(s)-distributed keys over 1..keys; when
 * scan_len > 0, after every scan_every requests a scan of scan_len keys
 * never seen before is appended. Deterministic for a given seed. Returns
 * 0 or -1 (out of memory, bad arguments). */
int sim_trace_zipf(sim_trace_t *t, double s, size_t keys, size_t requests, size_t scan_len,
                   size_t scan_every, uint64_t seed);

void sim_trace_free(sim_trace_t *t);

/* Replays the trace through a fresh cache with this policy: each request
 * is cache_fetch(); a miss loads (cache_load_finish) a value of
 * value_size bytes. Returns 0 or -1 (cache creation failed). */
int sim_run(const sim_trace_t *t, cache_policy_t policy, const sim_options_t *opt,
            sim_result_t *out);

/* Belady's OPT for `capacity` entries: on a miss with a full cache, the
 * cached key (or the requested one, which is then not admitted) whose next
 * use is farthest is dropped. O(n log capacity) with next-use indices. */
int sim_opt(const sim_trace_t *t, size_t capacity, sim_result_t *out);

/* Parses "64MB", "1GB", "512k", "100" (binary multiples). Returns 0/-1. */
int sim_parse_size(const char *s, size_t *out);

#endif
