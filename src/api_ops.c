/*
 * api_ops.c - operational endpoints: health, Prometheus metrics, JSON stats.
 */
#include "api.h"
#include "metrics.h"

enum MHD_Result api_health(http_request_t *req)
{
    return http_reply_json(req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

enum MHD_Result api_metrics(http_request_t *req)
{
    sqlcached_stats_t lib;
    sqlcached_stats(req->db, &lib);
    char *text = metrics_prometheus(req->metrics, &lib);
    if (!text)
        return http_reply_problem(req, "unavailable", "out of memory");
    return http_reply_text(req, text, "text/plain; version=0.0.4; charset=utf-8");
}

enum MHD_Result api_stats(http_request_t *req)
{
    sqlcached_stats_t lib;
    sqlcached_stats(req->db, &lib);
    json_t *doc = metrics_json(req->metrics, &lib);
    if (!doc)
        return http_reply_problem(req, "unavailable", "out of memory");
    return http_reply_json(req, MHD_HTTP_OK, doc);
}
