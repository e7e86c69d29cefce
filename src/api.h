/*
 * api.h - HTTP handlers: parse the request, call the library, reply.
 * One file per area (api_kv.c, api_ops.c, ...); the routing table in
 * http.c points at these. Each handler queues exactly one reply.
 */
#ifndef SQLCACHED_API_H
#define SQLCACHED_API_H

#include "http.h"

/* api_ops.c */
enum MHD_Result api_health(http_request_t *req);
enum MHD_Result api_metrics(http_request_t *req);
enum MHD_Result api_stats(http_request_t *req);

/* api_web.c */
enum MHD_Result api_web_dashboard(http_request_t *req);
enum MHD_Result api_web_css(http_request_t *req);
enum MHD_Result api_web_js(http_request_t *req);

/* api_admin.c */
enum MHD_Result api_admin_config(http_request_t *req);
enum MHD_Result api_admin_backup(http_request_t *req);

/* api_hotkeys.c */
enum MHD_Result api_stats_hotkeys(http_request_t *req);
/* The body of GET /v1/stats/hotkeys for list (a new reference; NULL on
 * allocation failure). Pure. */
json_t *api_hotkeys_json(const sqlcached_hotkeys_t *list);

/* api_cluster.c */
enum MHD_Result api_cluster(http_request_t *req);

/* api_kv.c */

/* A parsed If-Match / If-None-Match header, as a library match (its
 * versions point into the struct: do not copy it while match is in use). */
#define API_MAX_ETAGS 16
typedef struct api_etag_list {
    sqlcached_match_t match;
    int64_t versions[API_MAX_ETAGS];
} api_etag_list_t;

/* Parse an If-Match / If-None-Match value: "*" or a comma-separated list of
 * 1..16 strong ("42") or weak (W/"42") entity tags of positive versions.
 * Weak tags count as their version when weak_matches (If-None-Match), and
 * as -1 (never matching) otherwise. False if malformed; cannot fail
 * otherwise. Pure (used by the handlers, the tests and fuzz/). */
bool api_kv_parse_etags(const char *h, bool weak_matches, api_etag_list_t *out);

/* A whole string of decimal digits s[0..n) as 1..max; false otherwise
 * (empty, sign, non-digit, 0, above max or above INT64_MAX). Pure. */
bool api_kv_parse_positive(const char *s, size_t n, int64_t max, int64_t *out);

enum MHD_Result api_kv_get(http_request_t *req);
/* GET as without ?wait (the key param checked). */
enum MHD_Result api_kv_get_now(http_request_t *req);
enum MHD_Result api_kv_put(http_request_t *req);
enum MHD_Result api_kv_delete(http_request_t *req);
enum MHD_Result api_kv_incr(http_request_t *req);
enum MHD_Result api_kv_list(http_request_t *req);
enum MHD_Result api_kv_patch(http_request_t *req);

/* api_items.c */
enum MHD_Result api_items_list(http_request_t *req);
enum MHD_Result api_items_get(http_request_t *req);
enum MHD_Result api_items_put(http_request_t *req);
enum MHD_Result api_items_order(http_request_t *req);
enum MHD_Result api_items_order_get(http_request_t *req);
enum MHD_Result api_items_orders_list(http_request_t *req);
enum MHD_Result api_items_order_pay(http_request_t *req);
enum MHD_Result api_items_order_cancel(http_request_t *req);
/* api_lease.c */
enum MHD_Result api_lease_get(http_request_t *req);
enum MHD_Result api_lease_acquire(http_request_t *req);
enum MHD_Result api_lease_renew(http_request_t *req);
enum MHD_Result api_lease_release(http_request_t *req);
/* api_queue.c */
enum MHD_Result api_queue_get(http_request_t *req);
enum MHD_Result api_queue_enqueue(http_request_t *req);
enum MHD_Result api_queue_claim(http_request_t *req);
enum MHD_Result api_queue_job_get(http_request_t *req);
enum MHD_Result api_queue_job_cancel(http_request_t *req);
enum MHD_Result api_queue_ack(http_request_t *req);
enum MHD_Result api_queue_nack(http_request_t *req);

/* api_txn.c */
enum MHD_Result api_txn(http_request_t *req);

/* api_hotkeys.c: RFC 4648 base64 (with '=' padding) of n bytes, as a new
 * JSON string; NULL on allocation failure. */
json_t *api_base64_json(const void *p, size_t n);

/* api_watch.c */
enum MHD_Result api_watch(http_request_t *req);
/* Does this GET /v1/kv/{key} ask to wait (?wait, or parked already)? */
bool api_kv_wants_wait(http_request_t *req);
enum MHD_Result api_kv_get_wait(http_request_t *req);
/* The watch figures for /v1/stats (new object, NULL: no memory) and
 * appended to the /metrics text (realloc'd; NULL and freed on failure). */
json_t *api_watch_json(sqlcached_t *db);
char *api_watch_prometheus(char *text, sqlcached_t *db);

#endif
