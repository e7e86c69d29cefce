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

/* api_kv.c */
enum MHD_Result api_kv_get(http_request_t *req);
enum MHD_Result api_kv_put(http_request_t *req);
enum MHD_Result api_kv_delete(http_request_t *req);
enum MHD_Result api_kv_incr(http_request_t *req);
enum MHD_Result api_kv_list(http_request_t *req);

/* api_items.c */
enum MHD_Result api_items_list(http_request_t *req);
enum MHD_Result api_items_get(http_request_t *req);
enum MHD_Result api_items_put(http_request_t *req);
enum MHD_Result api_items_order(http_request_t *req);
enum MHD_Result api_items_order_get(http_request_t *req);
enum MHD_Result api_items_orders_list(http_request_t *req);

#endif
