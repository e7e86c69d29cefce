/*
 * sim_core.c - trace reading, workload generation, replay through the
 * cache module and Belady's OPT (see sim.h).
 */
#include "sim.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ======================================================================
 * Traces
 * ====================================================================== */

static int trace_push(sim_trace_t *t, uint64_t key)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 4096;
        uint64_t *nk = realloc(t->keys, ncap * sizeof(*nk));
        if (nk == NULL)
            return -1;
        t->keys = nk;
        t->cap = ncap;
    }
    t->keys[t->n++] = key;
    return 0;
}

void sim_trace_free(sim_trace_t *t)
{
    free(t->keys);
    memset(t, 0, sizeof(*t));
}

static int parse_line(const char *line, uint64_t *key)
{
    char *end;

    while (isspace((unsigned char)*line))
        line++;
    if (*line == '\0')
        return 1; /* blank */
    if (!isdigit((unsigned char)*line))
        return -1;
    *key = strtoull(line, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0' ? 0 : -1;
}

int sim_trace_read(const char *path, sim_trace_t *t)
{
    gzFile f = strcmp(path, "-") == 0 ? gzdopen(0, "rb") : gzopen(path, "rb");
    char line[256];
    int rc = 0;

    memset(t, 0, sizeof(*t));
    if (f == NULL)
        return -1;
    while (rc == 0 && gzgets(f, line, sizeof(line)) != NULL) {
        uint64_t key;
        int p = parse_line(line, &key);
        if (p < 0 || (p == 0 && trace_push(t, key) != 0))
            rc = -1;
    }
    if (!gzeof(f))
        rc = -1;
    gzclose(f);
    if (rc != 0)
        sim_trace_free(t);
    return rc;
}

static uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Cumulative Zipf distribution over ranks 1..keys. */
static double *zipf_cdf(double s, size_t keys)
{
    double *cdf = malloc(keys * sizeof(*cdf)), sum = 0;

    if (cdf == NULL)
        return NULL;
    for (size_t i = 0; i < keys; i++) {
        sum += 1.0 / pow((double)(i + 1), s);
        cdf[i] = sum;
    }
    for (size_t i = 0; i < keys; i++)
        cdf[i] /= sum;
    return cdf;
}

static size_t zipf_draw(const double *cdf, size_t keys, uint64_t *rng)
{
    double u = (double)(splitmix(rng) >> 11) * 0x1.0p-53;
    size_t lo = 0, hi = keys - 1;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo + 1;
}

int sim_trace_zipf(sim_trace_t *t, double s, size_t keys, size_t requests, size_t scan_len,
                   size_t scan_every, uint64_t seed)
{
    double *cdf;
    uint64_t rng = seed, next_scan_key = keys + 1;
    int rc = 0;

    memset(t, 0, sizeof(*t));
    if (keys == 0 || s < 0 || (scan_len && scan_every == 0))
        return -1;
    cdf = zipf_cdf(s, keys);
    if (cdf == NULL)
        return -1;
    for (size_t i = 0; rc == 0 && i < requests; i++) {
        rc = trace_push(t, zipf_draw(cdf, keys, &rng));
        if (scan_len && (i + 1) % scan_every == 0)
            for (size_t j = 0; rc == 0 && j < scan_len; j++)
                rc = trace_push(t, next_scan_key++);
    }
    free(cdf);
    if (rc != 0)
        sim_trace_free(t);
    return rc;
}

/* ======================================================================
 * Replay through the cache
 * ====================================================================== */

static cache_t *sim_cache(cache_policy_t policy, const sim_options_t *opt)
{
    cache_config_t cfg;

    cache_config_init(&cfg);
    cfg.policy = policy;
    cfg.shards = opt->shards ? opt->shards : 1;
    cfg.memory_limit = opt->memory;
    cfg.max_entries = opt->entries;
    if (opt->seed)
        cfg.seed = opt->seed;
    return cache_create(&cfg);
}

int sim_run(const sim_trace_t *t, cache_policy_t policy, const sim_options_t *opt,
            sim_result_t *out)
{
    size_t vsize = opt->value_size ? opt->value_size : 100;
    char *value = calloc(1, vsize);
    cache_t *c = sim_cache(policy, opt);
    cache_stats_t st;

    if (c == NULL || value == NULL) {
        cache_destroy(c);
        free(value);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->policy = cache_policy_name(policy);
    for (size_t i = 0; i < t->n; i++) {
        cache_value_t *v;
        cache_load_t *ld;
        int64_t now = (int64_t)i + 1;
        cache_outcome_t r = cache_fetch(c, &t->keys[i], sizeof(t->keys[i]), now, &v, &ld);
        if (r == CACHE_HIT) {
            out->hits++;
            cache_value_release(v);
        } else if (r == CACHE_LEAD) {
            cache_fill_t fill = {
                .data = value,
                .len = vsize,
                .version = 1,
                .expires_at = opt->ttl_ms ? now + opt->ttl_ms : 0,
            };
            cache_load_finish(c, ld, &fill, now);
        }
    }
    cache_stats(c, &st);
    out->requests = t->n;
    out->evictions = st.evictions;
    out->resident = st.entries;
    cache_destroy(c);
    free(value);
    return 0;
}

/* ======================================================================
 * Belady's OPT
 *
 * Keys are first renumbered densely; next[i] is the index of the next
 * request for the same key (n = never). The cache is a max-heap on next
 * use with lazy deletion: a key's live heap item is the one whose next use
 * equals the key's recorded one.
 * ====================================================================== */

struct idmap {
    uint64_t *keys;
    uint32_t *ids;
    size_t cap;
};

static uint32_t idmap_get(struct idmap *m, uint64_t key, uint32_t *next_id)
{
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (m->cap - 1);

    while (m->ids[i] != 0) {
        if (m->keys[i] == key)
            return m->ids[i] - 1;
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = key;
    m->ids[i] = ++*next_id;
    return m->ids[i] - 1;
}

/* Dense ids for the trace's keys; *nids set. NULL on allocation failure. */
static uint32_t *dense_ids(const sim_trace_t *t, uint32_t *nids)
{
    struct idmap m = {0};
    uint32_t *ids = malloc((t->n ? t->n : 1) * sizeof(*ids));

    m.cap = 1024;
    while (m.cap < 2 * t->n)
        m.cap <<= 1;
    m.keys = malloc(m.cap * sizeof(*m.keys));
    m.ids = calloc(m.cap, sizeof(*m.ids));
    *nids = 0;
    if (ids && m.keys && m.ids)
        for (size_t i = 0; i < t->n; i++)
            ids[i] = idmap_get(&m, t->keys[i], nids);
    else {
        free(ids);
        ids = NULL;
    }
    free(m.keys);
    free(m.ids);
    return ids;
}

struct heap_item {
    size_t next;
    uint32_t id;
};

static void heap_push(struct heap_item *h, size_t *n, struct heap_item it)
{
    size_t i = (*n)++;

    while (i > 0 && h[(i - 1) / 2].next < it.next) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = it;
}

static struct heap_item heap_pop(struct heap_item *h, size_t *n)
{
    struct heap_item top = h[0], last = h[--*n];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1].next > h[c].next)
            c++;
        if (h[c].next <= last.next)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

/* Drops stale items from the top so h[0] is a live cached key. */
static void heap_settle(struct heap_item *h, size_t *n, const size_t *cur)
{
    while (*n > 0 && cur[h[0].id] != h[0].next)
        heap_pop(h, n);
}

static size_t *next_uses(const uint32_t *ids, size_t n, uint32_t nids)
{
    size_t *next = malloc((n ? n : 1) * sizeof(*next));
    size_t *last = malloc((nids ? nids : 1) * sizeof(*last));

    if (next && last) {
        for (uint32_t k = 0; k < nids; k++)
            last[k] = n;
        for (size_t i = n; i-- > 0;) {
            next[i] = last[ids[i]];
            last[ids[i]] = i;
        }
    } else {
        free(next);
        next = NULL;
    }
    free(last);
    return next;
}

#define NOT_CACHED ((size_t)-1)

int sim_opt(const sim_trace_t *t, size_t capacity, sim_result_t *out)
{
    uint32_t nids;
    uint32_t *ids = dense_ids(t, &nids);
    size_t *next = ids ? next_uses(ids, t->n, nids) : NULL;
    size_t *cur = next ? malloc((nids ? nids : 1) * sizeof(*cur)) : NULL;
    struct heap_item *h = malloc((t->n + 1) * sizeof(*h));
    size_t hn = 0, cached = 0;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    out->policy = "opt";
    if (cur == NULL || h == NULL)
        goto out;
    for (uint32_t k = 0; k < nids; k++)
        cur[k] = NOT_CACHED;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t id = ids[i];
        if (cur[id] != NOT_CACHED) {
            out->hits++;
        } else if (capacity == 0) {
            continue;
        } else if (cached == capacity) {
            heap_settle(h, &hn, cur);
            if (h[0].next <= next[i])
                continue; /* bypass: the newcomer is needed last */
            cur[heap_pop(h, &hn).id] = NOT_CACHED;
            out->evictions++;
        } else {
            cached++;
        }
        cur[id] = next[i];
        heap_push(h, &hn, (struct heap_item){next[i], id});
        if (hn > 4 * capacity + 16) { /* compact stale items */
            size_t w = 0;
            for (size_t r = 0; r < hn; r++)
                if (cur[h[r].id] == h[r].next)
                    h[w++] = h[r];
            size_t m = w;
            hn = 0;
            for (size_t r = 0; r < m; r++)
                heap_push(h, &hn, h[r]);
        }
    }
    out->requests = t->n;
    out->resident = cached;
    rc = 0;
out:
    free(ids);
    free(next);
    free(cur);
    free(h);
    return rc;
}

/* ======================================================================
 * Sizes
 * ====================================================================== */

int sim_parse_size(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    double mul = 1;

    if (end == s || v < 0)
        return -1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mul = 1024.0;
        end++;
        break;
    case 'M':
        mul = 1024.0 * 1024;
        end++;
        break;
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 'T':
        mul = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (toupper((unsigned char)*end) == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}
