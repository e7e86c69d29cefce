/*
 * metrics.c - request counters, latency histograms and their rendering.
 *
 * Layout: one flat array of atomic counters indexed by
 * (route, method, status), where route nroutes means "other", and per route
 * a histogram (bucket counts, count, sum in ns). Each slot is updated with
 * relaxed atomic adds; readers see each counter monotonic.
 *
 * Rendering writes into a growing text buffer (Prometheus) or builds a
 * jansson document (JSON); both list only label sets seen so far, except
 * the seckill rejection reasons, present from start as the spec says.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const methods[] = {"GET",  "PUT",     "POST",  "DELETE",
                                      "HEAD", "OPTIONS", "PATCH", "OTHER"};
#define NMETHODS (sizeof methods / sizeof methods[0])

static const unsigned statuses[] = {200, 201, 204, 304, 400, 401, 404,
                                    405, 409, 412, 413, 500, 503, 507};
#define NSTATUSES (sizeof statuses / sizeof statuses[0])

static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct histogram {
    atomic_uint_fast64_t le[NBUCKETS]; /* non-cumulative; summed on render */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_ns;
} histogram_t;

struct metrics {
    const http_route_t *routes;
    size_t nroutes;
    atomic_uint_fast64_t *counts; /* (nroutes + 1) * NMETHODS * NSTATUSES */
    histogram_t *hist;            /* nroutes + 1, used at canonical indexes */
    size_t *canonical;            /* route -> first route of the same pattern */
};

metrics_t *metrics_create(const http_route_t *routes, size_t nroutes)
{
    metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->routes = routes;
    m->nroutes = nroutes;
    m->counts = calloc((nroutes + 1) * NMETHODS * NSTATUSES, sizeof *m->counts);
    m->hist = calloc(nroutes + 1, sizeof *m->hist);
    m->canonical = calloc(nroutes + 1, sizeof *m->canonical);
    if (!m->counts || !m->hist || !m->canonical) {
        metrics_destroy(m);
        return NULL;
    }
    /* Routes sharing a pattern (GET and PUT /v1/kv/{key}) share a histogram,
     * whose only label is the pattern. */
    for (size_t r = 0; r <= nroutes; r++) {
        m->canonical[r] = r;
        for (size_t q = 0; q < r && r < nroutes; q++)
            if (strcmp(routes[q].pattern, routes[r].pattern) == 0) {
                m->canonical[r] = q;
                break;
            }
    }
    return m;
}

void metrics_destroy(metrics_t *m)
{
    if (!m)
        return;
    free(m->counts);
    free(m->hist);
    free(m->canonical);
    free(m);
}

static size_t method_index(const char *method)
{
    for (size_t i = 0; i < NMETHODS - 1; i++)
        if (strcmp(methods[i], method) == 0)
            return i;
    return NMETHODS - 1;
}

static int status_index(unsigned status)
{
    for (size_t i = 0; i < NSTATUSES; i++)
        if (statuses[i] == status)
            return (int)i;
    return -1;
}

static const char *route_label(const metrics_t *m, size_t r)
{
    return r < m->nroutes ? m->routes[r].pattern : "other";
}

void metrics_observe(metrics_t *m, const http_route_t *route, const char *method, unsigned status,
                     double seconds)
{
    size_t r = route ? (size_t)(route - m->routes) : m->nroutes;
    int s = status_index(status);
    if (r > m->nroutes || s < 0)
        return;
    size_t slot = (r * NMETHODS + method_index(method)) * NSTATUSES + (size_t)s;
    atomic_fetch_add_explicit(&m->counts[slot], 1, memory_order_relaxed);
    histogram_t *h = &m->hist[m->canonical[r]];
    size_t b = 0;
    while (b < NBUCKETS && seconds > buckets[b])
        b++;
    if (b < NBUCKETS)
        atomic_fetch_add_explicit(&h->le[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint_fast64_t)(seconds * 1e9), memory_order_relaxed);
}

static uint64_t load(const atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Prometheus text
 * ------------------------------------------------------------------------ */

typedef struct text {
    char *p;
    size_t len, cap;
    int failed;
} text_t;

__attribute__((format(printf, 2, 3))) static void put(text_t *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *grown = realloc(t->p, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->p = grown;
        t->cap = cap;
    }
}

static void family(text_t *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(text_t *t, const char *name, const char *type, const char *help, uint64_t v)
{
    family(t, name, type, help);
    put(t, "%s %llu\n", name, (unsigned long long)v);
}

static void render_requests(text_t *t, const metrics_t *m)
{
    family(t, "sqlcached_http_requests_total", "counter", "HTTP requests answered.");
    for (size_t r = 0; r <= m->nroutes; r++)
        for (size_t mi = 0; mi < NMETHODS; mi++)
            for (size_t s = 0; s < NSTATUSES; s++) {
                uint64_t v = load(&m->counts[(r * NMETHODS + mi) * NSTATUSES + s]);
                if (v)
                    put(t,
                        "sqlcached_http_requests_total{route=\"%s\",method=\"%s\","
                        "status=\"%u\"} %llu\n",
                        route_label(m, r), methods[mi], statuses[s], (unsigned long long)v);
            }
}

static void render_histograms(text_t *t, const metrics_t *m)
{
    const char *name = "sqlcached_http_request_duration_seconds";
    family(t, name, "histogram", "HTTP request latency, from first byte to the answer queued.");
    for (size_t r = 0; r <= m->nroutes; r++) {
        const histogram_t *h = &m->hist[r];
        uint64_t count = load(&h->count);
        if (!count || m->canonical[r] != r)
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += load(&h->le[b]);
            put(t, "%s_bucket{route=\"%s\",le=\"%g\"} %llu\n", name, route_label(m, r), buckets[b],
                (unsigned long long)cum);
        }
        put(t, "%s_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name, route_label(m, r),
            (unsigned long long)count);
        put(t, "%s_sum{route=\"%s\"} %.9f\n", name, route_label(m, r), load(&h->sum_ns) / 1e9);
        put(t, "%s_count{route=\"%s\"} %llu\n", name, route_label(m, r), (unsigned long long)count);
    }
}

static void render_library(text_t *t, const sqlcached_stats_t *s)
{
    scalar(t, "sqlcached_cache_hits_total", "counter",
           "Reads (KV and item GETs) answered with a value from the memory tier.", s->cache_hits);
    scalar(t, "sqlcached_cache_misses_total", "counter",
           "Reads not answered with a value from the memory tier (absent keys included).",
           s->cache_misses);
    scalar(t, "sqlcached_cache_evictions_total", "counter",
           "Entries evicted to stay under the limit.", s->cache_evictions);
    scalar(t, "sqlcached_cache_expirations_total", "counter",
           "Entries removed because their TTL ran out.", s->cache_expirations);
    scalar(t, "sqlcached_cache_entries", "gauge", "Entries in the memory tier.", s->cache_entries);
    scalar(t, "sqlcached_cache_memory_bytes", "gauge", "Bytes used by the memory tier.",
           s->cache_memory_bytes);
    scalar(t, "sqlcached_cache_memory_limit_bytes", "gauge", "Memory limit of the memory tier.",
           s->cache_memory_limit);
    scalar(t, "sqlcached_cache_singleflight_waits_total", "counter",
           "Reads that waited for another reader's load of the same key.",
           s->cache_singleflight_waits);
    scalar(t, "sqlcached_cache_negative_hits_total", "counter",
           "Reads answered absent from a negative entry (a subset of the misses).",
           s->cache_negative_hits);
    scalar(t, "sqlcached_cache_bloom_skips_total", "counter",
           "Reads of never-written keys answered without a storage read (a subset of the "
           "misses).",
           s->cache_bloom_skips);
    scalar(t, "sqlcached_cache_fills_dropped_total", "counter",
           "Fills refused by the stale-fill guard (a write came during the read).",
           s->cache_fills_dropped);
    scalar(t, "sqlcached_cache_write_replaced_total", "counter",
           "Cached copies a KV write replaced with its value (--on-write replace).",
           s->cache_write_replaced);
    scalar(t, "sqlcached_cache_write_invalidated_total", "counter",
           "Cached copies a KV write removed.", s->cache_write_invalidated);
    scalar(t, "sqlcached_storage_write_transactions_total", "counter",
           "Write transactions committed by the store (group commit).", s->write_transactions);
    scalar(t, "sqlcached_storage_writes_total", "counter",
           "Writes committed inside those transactions.", s->writes_committed);
    scalar(t, "sqlcached_storage_write_errors_total", "counter",
           "Write transactions that failed to begin or commit.", s->write_errors);
    scalar(t, "sqlcached_storage_reads_total", "counter",
           "Key reads that went to the store (memory-tier misses).", s->storage_reads);
    const sqlcached_cluster_stats_t *c = &s->cluster;
    scalar(t, "sqlcached_cluster_trusted", "gauge",
           "1 while this node's memory tier may answer (always 1 on one node).",
           c->enabled ? (uint64_t)c->trusted : 1);
    scalar(t, "sqlcached_cluster_messages_sent_total", "counter",
           "Messages this node sent to the other nodes.", c->messages_sent);
    scalar(t, "sqlcached_cluster_messages_received_total", "counter",
           "Messages this node received on the cluster's channel.", c->messages_received);
    scalar(t, "sqlcached_cluster_ack_waits_total", "counter",
           "Committed write batches that waited for the other nodes' acknowledgements.",
           c->ack_waits);
    scalar(t, "sqlcached_cluster_evictions_total", "counter",
           "Members evicted for renewing without acknowledging.", c->evictions);
    scalar(t, "sqlcached_cluster_tier_drops_total", "counter",
           "Times this node emptied its memory tier (membership lost, or joining).", c->tier_drops);
    /* The names of the previous release, kept for one more as aliases. */
    scalar(t, "sqlcached_sqlite_write_transactions_total", "counter",
           "Deprecated alias of sqlcached_storage_write_transactions_total.",
           s->write_transactions);
    scalar(t, "sqlcached_sqlite_writes_total", "counter",
           "Deprecated alias of sqlcached_storage_writes_total.", s->writes_committed);
    scalar(t, "sqlcached_sqlite_write_errors_total", "counter",
           "Deprecated alias of sqlcached_storage_write_errors_total.", s->write_errors);
    scalar(t, "sqlcached_seckill_orders_total", "counter", "Orders placed.", s->seckill_orders);
    family(t, "sqlcached_seckill_rejections_total", "counter", "Orders refused, by reason.");
    put(t, "sqlcached_seckill_rejections_total{reason=\"sold_out\"} %llu\n",
        (unsigned long long)s->seckill_sold_out);
    put(t, "sqlcached_seckill_rejections_total{reason=\"already_ordered\"} %llu\n",
        (unsigned long long)s->seckill_already_ordered);
    put(t, "sqlcached_seckill_rejections_total{reason=\"unavailable\"} %llu\n",
        (unsigned long long)s->seckill_conflicts);
    family(t, "sqlcached_seckill_orders_by_state", "gauge", "Orders now, by state (store-wide).");
    put(t, "sqlcached_seckill_orders_by_state{state=\"pending\"} %llu\n",
        (unsigned long long)s->orders_pending);
    put(t, "sqlcached_seckill_orders_by_state{state=\"paid\"} %llu\n",
        (unsigned long long)s->orders_paid);
    put(t, "sqlcached_seckill_orders_by_state{state=\"cancelled\"} %llu\n",
        (unsigned long long)s->orders_cancelled);
    scalar(t, "sqlcached_seckill_auto_cancellations_total", "counter",
           "Orders this node cancelled because their pay_by passed.", s->orders_auto_cancelled);
    scalar(t, "sqlcached_lease_acquisitions_total", "counter", "Leases granted to a new holder.",
           s->lease_acquisitions);
    scalar(t, "sqlcached_lease_waiters", "gauge", "Acquirers waiting for a lease.",
           s->lease_waiters);
    scalar(t, "sqlcached_leases_held", "gauge", "Leases held (not expired).", s->leases_held);
}

char *metrics_prometheus(const metrics_t *m, const sqlcached_stats_t *lib)
{
    text_t t = {malloc(8192), 0, 8192, 0};
    if (!t.p)
        return NULL;
    render_requests(&t, m);
    render_histograms(&t, m);
    render_library(&t, lib);
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    return t.p;
}

/* ------------------------------------------------------------------------
 * JSON
 * ------------------------------------------------------------------------ */

static json_t *json_requests(const metrics_t *m)
{
    json_t *arr = json_array();
    for (size_t r = 0; arr && r <= m->nroutes; r++)
        for (size_t mi = 0; mi < NMETHODS; mi++)
            for (size_t s = 0; s < NSTATUSES; s++) {
                uint64_t v = load(&m->counts[(r * NMETHODS + mi) * NSTATUSES + s]);
                if (v)
                    json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:I}", "route",
                                                         route_label(m, r), "method", methods[mi],
                                                         "status", (int)statuses[s], "count",
                                                         (json_int_t)v));
            }
    return arr;
}

static json_t *json_histograms(const metrics_t *m)
{
    json_t *arr = json_array();
    for (size_t r = 0; arr && r <= m->nroutes; r++) {
        const histogram_t *h = &m->hist[r];
        uint64_t count = load(&h->count), cum = 0;
        if (!count || m->canonical[r] != r)
            continue;
        json_t *bs = json_array();
        for (size_t b = 0; bs && b < NBUCKETS; b++) {
            cum += load(&h->le[b]);
            json_array_append_new(bs, json_pack("{s:f, s:I}", "le", buckets[b], "count",
                                                (json_int_t)cum));
        }
        json_array_append_new(arr, json_pack("{s:s, s:I, s:f, s:o}", "route", route_label(m, r),
                                             "count", (json_int_t)count, "sum",
                                             load(&h->sum_ns) / 1e9, "buckets", bs));
    }
    return arr;
}

static json_t *json_library(const sqlcached_stats_t *s)
{
    uint64_t lookups = s->cache_hits + s->cache_misses;
    json_t *cache =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:s}", "hits",
                  (json_int_t)s->cache_hits, "misses", (json_int_t)s->cache_misses, "evictions",
                  (json_int_t)s->cache_evictions, "expirations", (json_int_t)s->cache_expirations,
                  "entries", (json_int_t)s->cache_entries, "memory_bytes",
                  (json_int_t)s->cache_memory_bytes, "memory_limit_bytes",
                  (json_int_t)s->cache_memory_limit, "singleflight_waits",
                  (json_int_t)s->cache_singleflight_waits, "negative_hits",
                  (json_int_t)s->cache_negative_hits, "bloom_skips",
                  (json_int_t)s->cache_bloom_skips, "hit_ratio",
                  lookups ? (double)s->cache_hits / (double)lookups : 0.0, "policy",
                  s->cache_policy ? s->cache_policy : "noeviction");
    if (cache &&
        json_object_update_new(cache,
                               json_pack("{s:I, s:s, s:I, s:I}", "fills_dropped",
                                         (json_int_t)s->cache_fills_dropped, "on_write",
                                         s->on_write ? s->on_write : "replace", "write_replaced",
                                         (json_int_t)s->cache_write_replaced, "write_invalidated",
                                         (json_int_t)s->cache_write_invalidated)) != 0) {
        json_decref(cache);
        cache = NULL;
    }
    json_t *seckill = json_pack("{s:I, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}, s:I}", "orders",
                                (json_int_t)s->seckill_orders, "rejections", "sold_out",
                                (json_int_t)s->seckill_sold_out, "already_ordered",
                                (json_int_t)s->seckill_already_ordered, "unavailable",
                                (json_int_t)s->seckill_conflicts, "orders_by_state", "pending",
                                (json_int_t)s->orders_pending, "paid", (json_int_t)s->orders_paid,
                                "cancelled", (json_int_t)s->orders_cancelled, "auto_cancellations",
                                (json_int_t)s->orders_auto_cancelled);
    double per_txn =
        s->write_transactions ? (double)s->writes_committed / (double)s->write_transactions : 0.0;
    json_t *storage = json_pack("{s:s, s:I, s:I, s:I, s:f, s:I}", "backend",
                                s->storage_backend ? s->storage_backend : "sqlite",
                                "write_transactions", (json_int_t)s->write_transactions, "writes",
                                (json_int_t)s->writes_committed, "write_errors",
                                (json_int_t)s->write_errors, "writes_per_transaction", per_txn,
                                "reads", (json_int_t)s->storage_reads);
    /* "sqlite": the previous release's name of the writer's figures, kept
     * for one more release. */
    json_t *sqlite = json_pack("{s:I, s:I, s:I, s:f}", "write_transactions",
                               (json_int_t)s->write_transactions, "writes",
                               (json_int_t)s->writes_committed, "write_errors",
                               (json_int_t)s->write_errors, "writes_per_transaction", per_txn);
    json_t *leases = json_pack("{s:I, s:I, s:I}", "acquisitions", (json_int_t)s->lease_acquisitions,
                               "waiters", (json_int_t)s->lease_waiters, "held",
                               (json_int_t)s->leases_held);
    const sqlcached_cluster_stats_t *c = &s->cluster;
    json_t *cluster =
        json_pack("{s:b, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "enabled", c->enabled, "node",
                  (json_int_t)(c->enabled ? c->node : 1), "trusted", c->enabled ? c->trusted : 1,
                  "messages_sent", (json_int_t)c->messages_sent, "messages_received",
                  (json_int_t)c->messages_received, "ack_waits", (json_int_t)c->ack_waits,
                  "ack_wait_ms_max", (json_int_t)c->ack_wait_ms_max, "evictions",
                  (json_int_t)c->evictions, "tier_drops", (json_int_t)c->tier_drops);
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "cache", cache, "seckill", seckill,
                     "storage", storage, "sqlite", sqlite, "leases", leases, "cluster", cluster);
}

json_t *metrics_json(const metrics_t *m, const sqlcached_stats_t *lib)
{
    json_t *doc = json_library(lib);
    if (doc) {
        json_object_set_new(doc, "requests", json_requests(m));
        json_object_set_new(doc, "request_duration_seconds", json_histograms(m));
    }
    return doc;
}

/* ------------------------------------------------------------------------
 * Delay queue: jobs by queue (a bounded label set: the library's first
 * SQLCACHED_QUEUE_STATS_MAX queues by name, the rest as "_other") and the
 * depth by state of every queue together.
 * ------------------------------------------------------------------------ */

/* A label value with \\, \" and \n escaped (Prometheus text format). */
static void put_label(text_t *t, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            put(t, "\\%c", *s);
        else if (*s == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *s);
    }
}

static void queue_family(text_t *t, const sqlcached_queue_stats_t *qs, const char *name,
                         const char *help, size_t field)
{
    family(t, name, "counter", help);
    for (size_t i = 0; i < qs->count; i++) {
        const sqlcached_queue_stat_t *s = &qs->by_queue[i];
        const uint64_t v[] = {s->enqueued, s->claimed, s->acked, s->expired_claims};
        put(t, "%s{queue=\"", name);
        put_label(t, s->queue);
        put(t, "\"} %llu\n", (unsigned long long)v[field]);
    }
}

char *metrics_queue_prometheus(char *text, const sqlcached_queue_stats_t *qs,
                               const sqlcached_queue_counts_t *depth)
{
    size_t len = strlen(text);
    text_t t = {text, len, len + 1, 0};
    queue_family(&t, qs, "sqlcached_queue_jobs_enqueued_total", "Jobs enqueued, by queue.", 0);
    queue_family(&t, qs, "sqlcached_queue_jobs_claimed_total", "Jobs handed to a claim, by queue.",
                 1);
    queue_family(&t, qs, "sqlcached_queue_jobs_acked_total", "Jobs acked (done), by queue.", 2);
    queue_family(&t, qs, "sqlcached_queue_expired_claims_total",
                 "Jobs claimed again after a claim that ended unacked, by queue.", 3);
    family(&t, "sqlcached_queue_jobs", "gauge", "Jobs of every queue, by state.");
    put(&t, "sqlcached_queue_jobs{state=\"delayed\"} %llu\n", (unsigned long long)depth->delayed);
    put(&t, "sqlcached_queue_jobs{state=\"ready\"} %llu\n", (unsigned long long)depth->ready);
    put(&t, "sqlcached_queue_jobs{state=\"claimed\"} %llu\n", (unsigned long long)depth->claimed);
    scalar(&t, "sqlcached_queue_waiting_claims", "gauge", "Claims waiting for a job.", qs->waiters);
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    return t.p;
}

json_t *metrics_queue_json(const sqlcached_queue_stats_t *qs, const sqlcached_queue_counts_t *depth)
{
    json_t *by = json_object();
    for (size_t i = 0; by && i < qs->count; i++) {
        const sqlcached_queue_stat_t *s = &qs->by_queue[i];
        json_object_set_new(by, s->queue,
                            json_pack("{s:I, s:I, s:I, s:I}", "enqueued", (json_int_t)s->enqueued,
                                      "claimed", (json_int_t)s->claimed, "acked",
                                      (json_int_t)s->acked, "expired_claims",
                                      (json_int_t)s->expired_claims));
    }
    return json_pack("{s:o*, s:{s:I, s:I, s:I}, s:I}", "by_queue", by, "jobs", "delayed",
                     (json_int_t)depth->delayed, "ready", (json_int_t)depth->ready, "claimed",
                     (json_int_t)depth->claimed, "waiting_claims", (json_int_t)qs->waiters);
}
