/*
 * api_ops.c - operational endpoints: health, Prometheus metrics, JSON stats.
 */
#include <string.h>

#include "api.h"
#include "metrics.h"

/* 200 {"status": "ok"} while the store can write; otherwise 503
 * problem+json `unavailable` whose detail says why, with the library's
 * last write error (`last_error`, `last_error_at`) and `files_moved`. */
enum MHD_Result api_health(http_request_t *req)
{
    sqlcached_health_t h;
    sqlcached_health(req->db, &h);
    if (h.writable)
        return http_reply_json(req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
    json_t *extra =
        json_pack("{s:b, s:o, s:o}", "files_moved", h.files_moved, "last_error",
                  h.last_error_at ? json_string(sqlcached_status_name(h.last_error)) : json_null(),
                  "last_error_at", h.last_error_at ? json_integer(h.last_error_at) : json_null());
    return http_reply_problem_with(req, "unavailable", extra, "the store cannot write: %s",
                                   h.reason);
}

enum MHD_Result api_metrics(http_request_t *req)
{
    sqlcached_stats_t lib;
    sqlcached_stats(req->db, &lib);
    char *text = metrics_prometheus(req->metrics, &lib);
    sqlcached_queue_stats_t qs;
    sqlcached_queue_counts_t depth;
    sqlcached_queue_stats(req->db, &qs);
    if (text && sqlcached_queue_counts(req->db, NULL, 0, &depth) != SQLCACHED_OK)
        memset(&depth, 0, sizeof depth); /* the store cannot be read now */
    if (text)
        text = metrics_queue_prometheus(text, &qs, &depth);
    text = api_watch_prometheus(text, req->db);
    if (!text)
        return http_reply_problem(req, "unavailable", "out of memory");
    return http_reply_text(req, text, "text/plain; version=0.0.4; charset=utf-8");
}

enum MHD_Result api_stats(http_request_t *req)
{
    sqlcached_stats_t lib;
    sqlcached_stats(req->db, &lib);
    json_t *doc = metrics_json(req->metrics, &lib);
    sqlcached_queue_stats_t qs;
    sqlcached_queue_counts_t depth;
    sqlcached_queue_stats(req->db, &qs);
    if (doc && sqlcached_queue_counts(req->db, NULL, 0, &depth) != SQLCACHED_OK)
        memset(&depth, 0, sizeof depth); /* the store cannot be read now */
    if (doc && json_object_set_new(doc, "watch", api_watch_json(req->db)) != 0) {
        json_decref(doc);
        doc = NULL;
    }
    if (doc && json_object_set_new(doc, "queues", metrics_queue_json(&qs, &depth)) != 0) {
        json_decref(doc);
        doc = NULL;
    }
    if (!doc)
        return http_reply_problem(req, "unavailable", "out of memory");
    return http_reply_json(req, MHD_HTTP_OK, doc);
}
