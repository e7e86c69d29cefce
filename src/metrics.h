/*
 * metrics.h - request counters and latency histograms of the daemon, and
 * the rendering of every figure (these plus the library's sqlcached_stats)
 * as Prometheus text (GET /metrics) and JSON (GET /v1/stats).
 *
 * Label sets are bounded: route = a pattern of the routing table or
 * "other"; method = one of a fixed list or "OTHER"; status = one of the
 * statuses the daemon answers. Updates are lock-free (relaxed atomics);
 * a render is a consistent-enough snapshot, as Prometheus expects.
 */
#ifndef SQLCACHED_METRICS_H
#define SQLCACHED_METRICS_H

#include <jansson.h>
#include <stddef.h>

#include "http.h"
#include "sqlcached.h"

typedef struct metrics metrics_t;

/* Counters for these routes (borrowed; must outlive the metrics). NULL on
 * allocation failure. */
metrics_t *metrics_create(const http_route_t *routes, size_t nroutes);
void metrics_destroy(metrics_t *m);

/* Count one answered request. route NULL = "other". */
void metrics_observe(metrics_t *m, const http_route_t *route, const char *method, unsigned status,
                     double seconds);

/* Prometheus text exposition 0.0.4; malloc'd, caller frees; NULL on ENOMEM. */
char *metrics_prometheus(const metrics_t *m, const sqlcached_stats_t *lib);

/* The /v1/stats document (new reference), NULL on ENOMEM. */
json_t *metrics_json(const metrics_t *m, const sqlcached_stats_t *lib);

/* Delay queue: append its families to a metrics_prometheus() text (taken
 * over: the result replaces it; NULL on ENOMEM, the text then freed). */
char *metrics_queue_prometheus(char *text, const sqlcached_queue_stats_t *qs,
                               const sqlcached_queue_counts_t *depth);
/* The "queues" member of /v1/stats (new reference), NULL on ENOMEM. */
json_t *metrics_queue_json(const sqlcached_queue_stats_t *qs,
                           const sqlcached_queue_counts_t *depth);

#endif
