/*
 * http_int.h - what http.c (the daemon, routing, replies, parking) and
 * http_stream.c (streamed replies: Server-Sent Events) share: the server's
 * state, a stream's state (http.c's resume_all ends the suspended streams
 * when the server stops) and the one reply path. Not part of the HTTP
 * front's interface to the handlers (see http.h).
 */
#ifndef SQLCACHED_HTTP_INT_H
#define SQLCACHED_HTTP_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "http.h"
#include "metrics.h"

struct http_server {
    struct MHD_Daemon *daemon;
    http_config_t cfg;
    char *auth_token;
    sqlcached_t *db;
    metrics_t *metrics;
    FILE *access_log;
    pthread_mutex_t log_lock;
    atomic_int in_flight;
    uint16_t port;
    pthread_mutex_t park_lock;
    http_request_t *parked;      /* suspended requests, under park_lock */
    bool stopping;               /* under park_lock: no more parking */
    struct http_stream *streams; /* replying streams, under park_lock */
    atomic_bool draining;        /* http_stop has begun: refuse new requests */
};

/* A streamed reply (http_stream.c); the list and the flags are under the
 * server's park_lock. */
struct http_stream {
    http_server_t *srv;
    struct MHD_Connection *conn;
    http_stream_fn fn;
    void *cls;
    void (*free_cls)(void *cls);
    bool replying; /* in srv->streams */
    bool suspended, pending;
    struct http_stream *prev, *next;
};

/* Queue resp (NULL: MHD_NO) as the request's reply with status, and drop
 * the caller's reference to it; bytes is the body's length for the access
 * log. Defined in http.c. */
enum MHD_Result hi_queue(http_request_t *req, unsigned status, struct MHD_Response *resp,
                         size_t bytes);

/* hi_queue without dropping a reference: resp is kept by the caller and
 * may be queued again (a kept reply of http_hits.c; nothing may add a
 * header to it). Defined in http.c. */
enum MHD_Result hi_queue_kept(http_request_t *req, unsigned status, struct MHD_Response *resp,
                              size_t bytes);

/* A 200 response for value: its bytes, Content-Type, ETag and the header
 * `name: hvalue`. Takes the value reference, which the response releases
 * when MHD frees it; NULL (and the reference released) when out of
 * memory. Defined in http.c. */
struct MHD_Response *hi_value_response(sqlcached_value_t *value, const char *name,
                                       const char *hvalue);

/* Reply 200 with a value served from the memory tier (from_cache), reusing
 * the reply this worker thread built for the same tier entry before; takes
 * the value reference. Defined in http_hits.c. */
enum MHD_Result hi_reply_hit(http_request_t *req, sqlcached_value_t *value);

#endif
