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

/* api_kv.c */
enum MHD_Result api_kv_get(http_request_t *req);
enum MHD_Result api_kv_put(http_request_t *req);
enum MHD_Result api_kv_delete(http_request_t *req);
enum MHD_Result api_kv_incr(http_request_t *req);
enum MHD_Result api_kv_list(http_request_t *req);

/* api_lease.c */
enum MHD_Result api_lease_get(http_request_t *req);
enum MHD_Result api_lease_acquire(http_request_t *req);
enum MHD_Result api_lease_renew(http_request_t *req);
enum MHD_Result api_lease_release(http_request_t *req);

#endif
