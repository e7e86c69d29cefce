/*
 * http.c - libmicrohttpd daemon, routing, request bodies, auth and replies.
 *
 * Request life cycle (MHD calls on_request several times per request):
 *   on_uri:   allocate the http_request_t when MHD has read the request
 *             line; freed in on_completed, or when the connection closes if
 *             MHD dropped the request without completing it (the
 *             connection's conn_slot_t, see on_connection).
 *   1st call: refuse a head that is not valid HTTP/1.1 framing (400/501,
 *             closing: bad_head, http_framing.c), check the
 *             bearer token for /v1/..., resolve the route (404, or 405 with
 *             Allow), reject a declared Content-Length above max_body (413).
 *             Rejections are answered before any body is read.
 *   next calls: append upload data to the body; past max_body the rest is
 *             discarded and the request gets 413 (nothing is stored).
 *   last call: run the route's handler, which queues exactly one reply.
 *
 * URLs: MHD is told not to unescape (identity unescape callback), so path
 * segments arrive raw and are percent-decoded strictly (http_parse.c): %2F in a
 * key stays inside the key, and a bad escape is a 400.
 *
 * Outcome -> HTTP status: one table, `problems`, keyed by the contract's
 * problem codes. Library statuses map to codes by sqlcached_status_name().
 *
 * Parking: a handler that must wait for an event (a lease acquirer
 * waiting for the holder) parks its request with http_suspend() instead of
 * blocking a worker thread; whoever produces the event calls http_resume()
 * from any thread, and MHD calls the handler again, which answers. Parked
 * requests are on the server's `parked` list under `park_lock`; MHD must
 * never see a resume for a connection it has not suspended (undefined
 * behaviour), hence the wake_pending flag for a wake that comes first.
 * MHD_suspend_connection() is called one event-loop turn after the
 * handler asked to park (see "Parking" below): a client that half-closes
 * its connection after the request (shutdown(SHUT_WR), as nc -N does)
 * would otherwise lose its answer.
 *
 * Shutdown: http_stop() sets `draining` (every new request is answered 503
 * `unavailable`, and every reply from then on closes its connection),
 * resumes every parked request with req->aborted set (its handler answers
 * 503 at once) and refuses new parking, except for requests marked
 * park_past_stop (queued writes, whose outcome the writer decides by the
 * stop deadline: main.c bounds the store with the same timeout), waits
 * for the requests in flight to complete until shutdown_timeout_ms +
 * HTTP_STOP_GRACE_MS (CLOCK_MONOTONIC), resumes whatever is still parked,
 * then stops MHD (which must not hold suspended connections).
 * Not MHD_quiesce_daemon(): with epoll worker threads it
 * races with their event loops, which remove the listen socket from their
 * epoll sets too, and the loser of the race aborts the process (libmicrohttpd
 * 0.9.75, "Failed to remove listen FD from epoll set"; seen in CI).
 */
#include "http.h"
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "http_framing.h"
#include "json_text.h"
#include "log.h"
#include "metrics.h"

#define DRAIN_WAIT_MS 10000 /* shutdown_timeout_ms when not set */

/* Per-connection memory for the request line and headers (and the read
 * buffer): a request whose head does not fit gets 431 (or 414 for the URL)
 * and is closed. The longest legitimate head is a 512-byte key
 * percent-encoded (1.5 KiB), prefix and after (3 KiB), a 4 KiB token and
 * ordinary headers: about 7.5 KiB (tests/test_http_framing.c sends it).
 * Not MHD's default of 32 KiB: MHD zeroes this memory for every request on
 * a connection, and at 32 KiB that memset was most of a GET hit's
 * instructions and evicted the rest from the L1 cache (GET throughput:
 * 0.71x nginx at 32 KiB, 0.84x at 16, 0.92x at 8, A/B of 3 rounds). 12 KiB
 * costs 3% against 8 and leaves room above the longest head, which at
 * 8 KiB was dropped without an answer. */
#define HTTP_HEADER_MEMORY (12 * 1024)

/* ------------------------------------------------------------------------
 * The routing table
 * ------------------------------------------------------------------------ */

const http_route_t http_routes[] = {
    {"GET", "/", api_web_dashboard, "dashboard"},
    {"GET", "/dashboard.css", api_web_css, "dashboard_css"},
    {"GET", "/dashboard.js", api_web_js, "dashboard_js"},
    {"GET", "/healthz", api_health, "healthz"},
    {"GET", "/metrics", api_metrics, "metrics"},
    {"GET", "/v1/stats", api_stats, "stats"},
    {"GET", "/v1/stats/hotkeys", api_stats_hotkeys, "stats_hotkeys"},
    {"GET", "/v1/cluster", api_cluster, "cluster"},
    {"GET", "/v1/admin/config", api_admin_config, "admin_config"},
    {"POST", "/v1/admin/backup", api_admin_backup, "admin_backup"},
    {"GET", "/v1/kv", api_kv_list, "kv_list"},
    {"GET", "/v1/kv/{key}", api_kv_get, "kv_get"},
    {"GET", "/v1/watch", api_watch, "watch"},
    {"PUT", "/v1/kv/{key}", api_kv_put, "kv_put"},
    {"DELETE", "/v1/kv/{key}", api_kv_delete, "kv_delete"},
    {"PATCH", "/v1/kv/{key}", api_kv_patch, "kv_patch"},
    {"POST", "/v1/kv/{key}/incr", api_kv_incr, "kv_incr"},
    {"GET", "/v1/items", api_items_list, "item_list"},
    {"GET", "/v1/items/{id}", api_items_get, "item_get"},
    {"PUT", "/v1/items/{id}", api_items_put, "item_put"},
    {"GET", "/v1/items/{id}/orders", api_items_orders_list, "order_list"},
    {"POST", "/v1/items/{id}/orders", api_items_order, "order_create"},
    {"GET", "/v1/items/{id}/orders/{user_id}", api_items_order_get, "order_get"},
    {"POST", "/v1/items/{id}/orders/{user_id}/pay", api_items_order_pay, "order_pay"},
    {"POST", "/v1/items/{id}/orders/{user_id}/cancel", api_items_order_cancel, "order_cancel"},
    {"GET", "/v1/leases/{name}", api_lease_get, "lease_get"},
    {"POST", "/v1/leases/{name}/acquire", api_lease_acquire, "lease_acquire"},
    {"POST", "/v1/leases/{name}/renew", api_lease_renew, "lease_renew"},
    {"POST", "/v1/leases/{name}/release", api_lease_release, "lease_release"},
    {"POST", "/v1/txn", api_txn, "txn"},
    /* delay queue */
    {"GET", "/v1/queues/{queue}", api_queue_get, "queue_get"},
    {"POST", "/v1/queues/{queue}/jobs", api_queue_enqueue, "queue_enqueue"},
    {"POST", "/v1/queues/{queue}/claim", api_queue_claim, "queue_claim"},
    {"GET", "/v1/queues/{queue}/jobs/{id}", api_queue_job_get, "queue_job_get"},
    {"DELETE", "/v1/queues/{queue}/jobs/{id}", api_queue_job_cancel, "queue_job_cancel"},
    {"POST", "/v1/queues/{queue}/jobs/{id}/ack", api_queue_ack, "queue_ack"},
    {"POST", "/v1/queues/{queue}/jobs/{id}/nack", api_queue_nack, "queue_nack"},
};
const size_t http_route_count = sizeof http_routes / sizeof http_routes[0];

/* ------------------------------------------------------------------------
 * Problems: the one table from outcome to HTTP status
 * ------------------------------------------------------------------------ */

typedef struct problem {
    const char *code;
    unsigned status;
    const char *title;
} problem_t;

static const problem_t problems[] = {
    {"invalid_json", 400, "Request body is not valid JSON"},
    {"invalid_argument", 400, "Invalid argument"},
    {"unauthorized", 401, "Missing or invalid bearer token"},
    {"not_found", 404, "Not found"},
    {"method_not_allowed", 405, "Method not allowed"},
    {"precondition_failed", 412, "Precondition failed"},
    {"payload_too_large", 413, "Request body too large"},
    {"conflict", 409, "Conflict"},
    {"not_integer", 409, "Value is not a 64-bit integer"},
    {"not_json", 409, "Stored value is not a JSON object"},
    {"unsupported_media_type", 415, "Unsupported media type"},
    {"sold_out", 409, "Sold out"},
    {"already_ordered", 409, "User already holds an order for this item"},
    {"order_not_pending", 409, "Order is not pending"},
    {"lease_held", 409, "Lease held"},
    {"not_owner", 409, "Not the lease owner"},
    {"claim_expired", 409, "Not the job's current claim"},
    {"history_truncated", 410, "The changes asked for are no longer kept"},
    {"storage_full", 507, "Storage full"},
    {"not_implemented", 501, "Not implemented"},
    {"unavailable", 503, "Service unavailable, retry later"},
    {"internal", 500, "Internal error"},
};

static const char *allow_header(const http_request_t *req);

static const problem_t *problem_for(const char *code)
{
    for (size_t i = 0; i < sizeof problems / sizeof problems[0]; i++)
        if (strcmp(problems[i].code, code) == 0)
            return &problems[i];
    return &problems[sizeof problems / sizeof problems[0] - 1];
}

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

enum MHD_Result hi_queue(http_request_t *req, unsigned status, struct MHD_Response *resp,
                         size_t bytes)
{
    req->reply_bytes = bytes;
    if (!resp)
        return MHD_NO;
    if (atomic_load_explicit(&req->srv->draining, memory_order_relaxed) &&
        !MHD_get_response_header(resp, MHD_HTTP_HEADER_CONNECTION))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result r = hi_queue_kept(req, status, resp, bytes);
    MHD_destroy_response(resp);
    return r;
}

enum MHD_Result hi_queue_kept(http_request_t *req, unsigned status, struct MHD_Response *resp,
                              size_t bytes)
{
    req->reply_bytes = bytes;
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    req->replied = true;
    req->status = (int)status;
    return r;
}

static void add_etag(struct MHD_Response *resp, int64_t etag)
{
    char buf[32];
    size_t n = 0;
    buf[n++] = '"';
    n += json_text_format_int(buf + n, etag);
    buf[n++] = '"';
    buf[n] = '\0';
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, buf);
}

/* A response holding `text` (taken over; freed by MHD with free()); its
 * length goes to *len. */
static struct MHD_Response *text_response(char *text, const char *content_type, size_t *len)
{
    if (!text)
        return NULL;
    *len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(*len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return resp;
}

enum MHD_Result http_reply_text(http_request_t *req, char *text, const char *content_type)
{
    size_t len = 0;
    struct MHD_Response *resp = text_response(text, content_type, &len);
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    return hi_queue(req, MHD_HTTP_OK, resp, len);
}

enum MHD_Result http_reply_static(http_request_t *req, const char *body, size_t len,
                                  const char *content_type, const char *csp)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (csp)
        MHD_add_response_header(resp, "Content-Security-Policy", csp);
    return hi_queue(req, MHD_HTTP_OK, resp, len);
}

/* The text of obj (taken over; freed even on failure; caller frees the
 * text), NULL when out of memory. */
static char *json_text_of(json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(obj);
    return text;
}

/* A JSON response for obj (taken over; freed even on failure), its body
 * length in *len; NULL when out of memory. */
static struct MHD_Response *json_response(json_t *obj, size_t *len)
{
    return text_response(json_text_of(obj), "application/json", len);
}

enum MHD_Result http_reply_json_etag(http_request_t *req, unsigned status, json_t *obj,
                                     int64_t etag)
{
    return http_reply_json_text(req, status, json_text_of(obj), etag);
}

enum MHD_Result http_reply_json_text(http_request_t *req, unsigned status, char *text, int64_t etag)
{
    size_t len = 0;
    struct MHD_Response *resp = text_response(text, "application/json", &len);
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    if (etag >= 0)
        add_etag(resp, etag);
    return hi_queue(req, status, resp, len);
}

enum MHD_Result http_reply_json_header(http_request_t *req, unsigned status, json_t *obj,
                                       const char *name, const char *value)
{
    size_t len = 0;
    struct MHD_Response *resp = json_response(obj, &len);
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    MHD_add_response_header(resp, name, value);
    return hi_queue(req, status, resp, len);
}

enum MHD_Result http_reply_json(http_request_t *req, unsigned status, json_t *obj)
{
    return http_reply_json_etag(req, status, obj, -1);
}

enum MHD_Result http_reply_empty(http_request_t *req, unsigned status, int64_t etag)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    if (etag >= 0)
        add_etag(resp, etag);
    return hi_queue(req, status, resp, 0);
}

/* The problem object as text; extra members (owned, may be NULL) are
 * added without overriding the standard ones. */
static char *problem_text(const problem_t *p, const char *detail, json_t *extra)
{
    char type[80];
    snprintf(type, sizeof type, "urn:sqlcached:problem:%s", p->code);
    json_t *obj = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", p->title, "status",
                            (int)p->status, "detail", detail, "code", p->code);
    if (obj && extra)
        json_object_update_missing(obj, extra);
    json_decref(extra);
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(obj);
    return text;
}

static void add_problem_headers(http_request_t *req, const problem_t *p, struct MHD_Response *resp)
{
    if (req->close_after)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (p->status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (p->status == 503)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (p->status == 405 && req->route)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow_header(req));
}

static enum MHD_Result reply_problem_v(http_request_t *req, const char *code, json_t *extra,
                                       const char *fmt, va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof detail, fmt, ap);
    if (!http_utf8_ok(detail, strlen(detail)))
        snprintf(detail, sizeof detail, "%s", "request rejected");
    const problem_t *p = problem_for(code);
    size_t len = 0;
    struct MHD_Response *resp =
        text_response(problem_text(p, detail, extra), "application/problem+json", &len);
    if (!resp)
        return MHD_NO;
    add_problem_headers(req, p, resp);
    return hi_queue(req, p->status, resp, len);
}

enum MHD_Result http_reply_problem(http_request_t *req, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result rc = reply_problem_v(req, code, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

enum MHD_Result http_reply_problem_with(http_request_t *req, const char *code, json_t *extra,
                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result rc = reply_problem_v(req, code, extra, fmt, ap);
    va_end(ap);
    return rc;
}

enum MHD_Result http_reply_status(http_request_t *req, sqlcached_status_t st, const char *detail)
{
    if (st == SQLCACHED_INTERNAL)
        log_error("http", "%s %s: internal error", req->method,
                  req->route ? req->route->name : "?");
    sqlcached_health_t h; /* a storage failure says which */
    if (st == SQLCACHED_UNAVAILABLE || st == SQLCACHED_STORAGE_FULL || st == SQLCACHED_INTERNAL)
        sqlcached_health(req->db, &h);
    else
        h.writable = 1;
    if (!h.writable)
        return http_reply_problem(req, sqlcached_status_name(st), "%s: %s", detail, h.reason);
    return http_reply_problem(req, sqlcached_status_name(st), "%s", detail);
}

static void release_value(void *cls)
{
    sqlcached_value_release(cls);
}

enum MHD_Result http_reply_not_modified(http_request_t *req, sqlcached_value_t *value)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp) {
        add_etag(resp, value->version);
        MHD_add_response_header(resp, "X-Cache", value->from_cache ? "HIT" : "MISS");
    }
    sqlcached_value_release(value);
    return hi_queue(req, MHD_HTTP_NOT_MODIFIED, resp, 0);
}

struct MHD_Response *hi_value_response(sqlcached_value_t *value, const char *name,
                                       const char *hvalue)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback_cls(value->len, (void *)value->data,
                                                               release_value, value);
    if (!resp) {
        sqlcached_value_release(value);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, value->content_type);
    add_etag(resp, value->version);
    MHD_add_response_header(resp, name, hvalue);
    return resp;
}

enum MHD_Result http_reply_value(http_request_t *req, sqlcached_value_t *value)
{
    /* a server that is stopping adds "Connection: close" (hi_queue), which
     * a kept reply must not carry on */
    if (value->from_cache && !atomic_load_explicit(&req->srv->draining, memory_order_relaxed))
        return hi_reply_hit(req, value);
    size_t len = value->len;
    struct MHD_Response *resp =
        hi_value_response(value, "X-Cache", value->from_cache ? "HIT" : "MISS");
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    return hi_queue(req, MHD_HTTP_OK, resp, len);
}

enum MHD_Result http_reply_value_header(http_request_t *req, sqlcached_value_t *value,
                                        const char *name, const char *hvalue)
{
    size_t len = value->len;
    struct MHD_Response *resp = hi_value_response(value, name, hvalue);
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    return hi_queue(req, MHD_HTTP_OK, resp, len);
}

/* ------------------------------------------------------------------------
 * Request helpers
 * ------------------------------------------------------------------------ */

const char *http_header(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int http_query(const http_request_t *req, const char *name, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw) {
        /* "?name" without "=" is present with an empty value */
        if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name),
                                          NULL, NULL) != MHD_YES)
            return 0;
        raw = "";
    }
    bool bad;
    *out = http_percent_decode(raw, strlen(raw), true, len, &bad);
    if (!*out)
        return -1;
    return 1;
}

json_t *http_body_object(http_request_t *req, bool allow_empty, const char *const members[])
{
    http_error_t err;
    json_t *obj = http_parse_object(req->body, req->body_len, allow_empty, members, &err);
    if (!obj)
        http_reply_problem(req, err.code, "%s", err.detail);
    return obj;
}

bool http_json_int(http_request_t *req, json_t *obj, const char *name, bool optional, int64_t dflt,
                   int64_t min, int64_t max, int64_t *out)
{
    http_error_t err;
    if (http_member_int(obj, name, optional, dflt, min, max, out, &err))
        return true;
    http_reply_problem(req, err.code, "%s", err.detail);
    return false;
}

bool http_json_string(http_request_t *req, json_t *obj, const char *name, size_t max,
                      const char **out, size_t *len)
{
    http_error_t err;
    if (http_member_string(obj, name, max, out, len, &err))
        return true;
    http_reply_problem(req, err.code, "%s", err.detail);
    return false;
}

bool http_param_text(http_request_t *req, int idx, size_t max, const char *what)
{
    const http_param_t *p = &req->params[idx];
    if (p->len == 0 || p->len > max) {
        http_reply_problem(req, "invalid_argument", "%s must be 1 to %zu bytes, got %zu", what, max,
                           p->len);
        return false;
    }
    if (!http_text_ok(p->data, p->len, max)) {
        http_reply_problem(req, "invalid_argument", "%s must be valid UTF-8 without NUL", what);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Routing a request (matching a path: http_route() in http_parse.c)
 * ------------------------------------------------------------------------ */

/* Route the request; the decoded params move into req (freed with it). */
static int route_request(http_request_t *req, const char *path)
{
    http_match_t m;
    int rc = http_route(req->method, path, &m);
    req->route = m.route;
    memcpy(req->params, m.params, sizeof req->params);
    return rc;
}

static void free_params(http_request_t *req)
{
    for (int i = 0; i < HTTP_MAX_PARAMS; i++) {
        free(req->params[i].data);
        req->params[i] = (http_param_t){NULL, 0};
    }
}

static const char *allow_header(const http_request_t *req)
{
    static _Thread_local char allow[64];
    allow[0] = '\0';
    for (size_t i = 0; i < http_route_count; i++) {
        if (strcmp(http_routes[i].pattern, req->route->pattern) != 0)
            continue;
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", http_routes[i].method);
    }
    return allow;
}

/* ------------------------------------------------------------------------
 * Parking: suspend and resume (see the file comment)
 *
 * Why the suspend waits one turn (libmicrohttpd 0.9.75, epoll, read in
 * connection.c and daemon.c). While a connection is suspended MHD does not
 * update its event_loop_info (MHD_connection_update_event_loop_info
 * returns early), so it keeps the value it had before the handler ran:
 * READ, the request's last bytes having just been read. On resume,
 * resume_suspended_connections() puts the connection on the ready list as
 * readable and writable, and MHD_epoll() then handles it either
 *   - through the timeout sweep, which calls MHD_connection_handle_idle()
 *     on the tail of the timeout list, i.e. only when the connection is
 *     alone among its worker's active ones: the handler answers first; or
 *   - through call_handlers(), which with event_loop_info READ calls
 *     MHD_connection_handle_read() before anything else. If the client's
 *     FIN has arrived (at any time before this point: a suspended
 *     connection is out of the epoll set and nothing is read), recv()
 *     returns 0 and, the request being complete (state
 *     FULL_REQ_RECEIVED), MHD closes the connection with
 *     MHD_REQUEST_TERMINATED_WITH_ERROR without calling the handler again.
 * So a half-closed client lost its answer whenever other connections were
 * active on the same worker (load, concurrent clients), after the write
 * had been committed or the lease granted.
 *
 * The remedy: when a handler asks to park, nothing is suspended yet and
 * the final call returns with no response. MHD then leaves the connection
 * in FULL_REQ_RECEIVED with event_loop_info BLOCK (waiting for the
 * application), which it never reads in, keeps it on the ready list and
 * calls the handler again on its next turn, at once; on_request() suspends
 * then (unless the wake came
 * meanwhile), so the connection is suspended and resumed in BLOCK: after
 * the resume MHD calls the handler, which answers, and reads only once the
 * answer is sent. The cost is one more loop turn per parked request.
 * ------------------------------------------------------------------------ */

static void park_unlink(http_server_t *srv, http_request_t *req)
{
    if (req->park_prev)
        req->park_prev->park_next = req->park_next;
    else
        srv->parked = req->park_next;
    if (req->park_next)
        req->park_next->park_prev = req->park_prev;
    req->park_prev = req->park_next = NULL;
}

/* Under park_lock: park now, unless a wake came first or the server is
 * stopping (then req->aborted is set). Returns whether it parked. */
static bool park_locked(http_server_t *srv, http_request_t *req, bool suspend)
{
    bool refused = srv->stopping && !req->park_past_stop;
    bool park = !req->wake_pending && !refused;
    req->wake_pending = false;
    req->aborted = refused;
    req->park_wanted = park && !suspend;
    if (park && suspend) {
        MHD_suspend_connection(req->conn);
        req->suspended = true;
        req->park_prev = NULL;
        req->park_next = srv->parked;
        if (srv->parked)
            srv->parked->park_prev = req;
        srv->parked = req;
    }
    return park;
}

bool http_suspend(http_request_t *req)
{
    http_server_t *srv = req->srv;
    pthread_mutex_lock(&srv->park_lock);
    bool park = park_locked(srv, req, false); /* suspended on the next call */
    pthread_mutex_unlock(&srv->park_lock);
    return park;
}

/* MHD's call after a handler asked to park (see above): suspend now.
 * False when the wake came meanwhile, or the server is stopping: then the
 * handler runs again at once, as after a resume. */
static bool park_now(http_request_t *req)
{
    http_server_t *srv = req->srv;
    pthread_mutex_lock(&srv->park_lock);
    bool parked = park_locked(srv, req, true);
    pthread_mutex_unlock(&srv->park_lock);
    return parked;
}

void http_resume(http_request_t *req)
{
    http_server_t *srv = req->srv;
    pthread_mutex_lock(&srv->park_lock);
    if (req->suspended) {
        req->suspended = false;
        park_unlink(srv, req);
        MHD_resume_connection(req->conn); /* MHD calls the handler again */
    } else {
        req->wake_pending = true; /* the handler has not parked yet */
    }
    pthread_mutex_unlock(&srv->park_lock);
}

/* Stop parking; wake every parked request with req->aborted set (but
 * those marked park_past_stop unless `all`), and every suspended stream
 * (it ends). */
static void resume_all(http_server_t *srv, bool all)
{
    pthread_mutex_lock(&srv->park_lock);
    srv->stopping = true;
    for (http_stream_t *s = srv->streams; s; s = s->next)
        if (s->suspended) {
            s->suspended = false;
            MHD_resume_connection(s->conn);
        }
    for (http_request_t *req = srv->parked, *next; req; req = next) {
        next = req->park_next;
        if (req->park_past_stop && !all)
            continue;
        req->aborted = true;
        req->suspended = false;
        park_unlink(srv, req);
        MHD_resume_connection(req->conn);
    }
    pthread_mutex_unlock(&srv->park_lock);
}

/* ------------------------------------------------------------------------
 * MHD callbacks
 * ------------------------------------------------------------------------ */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Routes that answer user data without naming it: the admin token guards
 * them as it guards /v1/admin/... (the routed pattern, so no spelling of
 * the path slips past). */
static bool admin_guarded(const http_request_t *req, const char *url)
{
    return strncmp(url, "/v1/admin/", 10) == 0 ||
           (req->route && strcmp(req->route->pattern, "/v1/stats/hotkeys") == 0);
}

/* /v1/admin/... and /v1/stats/hotkeys take the admin token when one is
 * set; the rest of /v1/... (and those without an admin token) the auth
 * token, when set. */
static bool authorized(http_server_t *srv, http_request_t *req, const char *url)
{
    const char *token = srv->auth_token;
    if (srv->cfg.admin_token && admin_guarded(req, url))
        token = srv->cfg.admin_token;
    if (!token)
        return true;
    const char *h = http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    return http_token_equal(h + 7, token);
}

static bool declared_too_large(http_server_t *srv, http_request_t *req)
{
    const char *cl = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return false;
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    return *end == '\0' && n > srv->cfg.max_body;
}

/* MHD ends the URL at a NUL byte of the request line ("PUT /v1/kv/a\0b"
 * would be served as /v1/kv/a). on_uri() measured the target up to its first
 * NUL; the version, which MHD leaves right after the target and a space,
 * shows how long the target really was. */
static bool target_has_nul(const http_request_t *req, const char *url, const char *version)
{
    uintptr_t u = (uintptr_t)url, v = (uintptr_t)version;
    if (!req->target_known || v <= u || v - u > HTTP_HEADER_MEMORY || version[-1] != '\0')
        return false; /* no version, or not laid out as expected: no verdict */
    return req->target_len + 1 < v - u;
}

/* Where MHD left the request head in its buffer: the request line starts at
 * `method` (the space after it overwritten with a NUL) and the whole head
 * is header_size bytes from there. */
typedef struct head_span {
    uintptr_t start, end; /* end = 0: not known, no layout verdict */
} head_span_t;

typedef struct head_check {
    http_framing_t framing;
    head_span_t span;
    bool folded;
} head_check_t;

/* MHD 0.9.75 keeps a field's name and value in the received head: the name
 * where its line starts, the colon overwritten with a NUL, then optional
 * whitespace and the value. An obs-fold continuation line is instead
 * appended to the *name*, which MHD copies out of the head to a new block
 * of its pool (connection.c, process_broken_line: `last` is the name), so
 * a folded field is one whose name is not in place. Later versions of MHD
 * parse folding differently: the check applies up to 0.9.75 only. */
static bool field_in_place(const head_span_t *h, const char *name, size_t name_len,
                           const char *value)
{
    uintptr_t n = (uintptr_t)name, v = (uintptr_t)value;
    if (h->end == 0)
        return true; /* no verdict */
    if (n < h->start || v <= n + name_len || v >= h->end || name[name_len] != '\0')
        return false;
    for (const char *p = name + name_len + 1; p < value; p++)
        if (*p != ' ' && *p != '\t')
            return false;
    return true;
}

static enum MHD_Result check_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    head_check_t *c = cls;
    if (!field_in_place(&c->span, key, key_size, value))
        c->folded = true;
    http_framing_field(&c->framing, key, key_size, value ? value : "", value ? value_size : 0);
    return MHD_YES;
}

/* True if the running libmicrohttpd lays the head out as field_in_place
 * expects (0.9.75 and earlier). */
static bool mhd_version_lays_out_head(void)
{
    unsigned a = 0, b = 0, c = 0;
    const char *v = MHD_get_version();
    if (!v || sscanf(v, "%u.%u.%u", &a, &b, &c) != 3)
        return false;
    return a == 0 && (b < 9 || (b == 9 && c <= 75));
}

/* mhd_version_lays_out_head(), asked once per process: the library does
 * not change under a running daemon (and parsing its version on every
 * request was 1,700 of a GET's instructions). */
static pthread_once_t mhd_layout_once = PTHREAD_ONCE_INIT;
static bool mhd_layout_is_known;

static void ask_mhd_layout(void)
{
    mhd_layout_is_known = mhd_version_lays_out_head();
}

static bool mhd_layout_known(void)
{
    pthread_once(&mhd_layout_once, ask_mhd_layout);
    return mhd_layout_is_known;
}

static head_span_t head_span(const http_request_t *req)
{
    head_span_t h = {0, 0};
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (ci && req->method && ci->header_size > 0 && ci->header_size <= HTTP_HEADER_MEMORY &&
        mhd_layout_known()) {
        h.start = (uintptr_t)req->method;
        h.end = h.start + ci->header_size;
    }
    return h;
}

/* Is the head valid HTTP/1.1 framing (see http_framing.h)? Two
 * Content-Lengths, Content-Length with Transfer-Encoding, a field name that
 * is not a token ("Content-Length : 5"), a folded line, two Hosts: a proxy
 * in front may see another request boundary than we do (request
 * smuggling). Returns the detail for the answer (400, or 501 when *code is
 * set to "not_implemented"), or NULL. */
static const char *bad_head(const http_request_t *req, const char *version, const char **code)
{
    head_check_t c = {.span = head_span(req), .folded = false};
    http_framing_init(&c.framing, strcmp(version, MHD_HTTP_VERSION_1_0) == 0);
    MHD_get_connection_values_n(req->conn, MHD_HEADER_KIND, check_field, &c);
    if (c.folded)
        return "a header field line is folded (obsolete line folding)";
    if (http_framing_finish(&c.framing) == HTTP_FRAMING_OK)
        return NULL;
    if (c.framing.verdict == HTTP_FRAMING_UNSUPPORTED)
        *code = "not_implemented";
    return c.framing.detail;
}

/* First call for a request: checks that need no body. Returns MHD_YES with
 * nothing queued to go on reading the body. */
static enum MHD_Result on_first_call(http_server_t *srv, http_request_t *req, const char *url,
                                     const char *version)
{
    const char *code = "invalid_argument";
    const char *bad = target_has_nul(req, url, version) ? "NUL byte in the request target"
                      : req->target_problem             ? req->target_problem
                                                        : bad_head(req, version, &code);
    if (bad) {
        req->close_after = true;
        return http_reply_problem(req, code, "%s", bad);
    }
    int routed = route_request(req, url); /* first, so metrics know the route */
    if (atomic_load_explicit(&srv->draining, memory_order_acquire)) {
        req->close_after = true;
        return http_reply_problem(req, "unavailable", "the server is stopping");
    }
    if (strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0) {
        if (!authorized(srv, req, url))
            return http_reply_problem(req, "unauthorized", "a valid bearer token is required");
    }
    switch (routed) {
    case 404:
        return http_reply_problem(req, "not_found", "no route for this path");
    case 405:
        return http_reply_problem(req, "method_not_allowed", "%s is not allowed here", req->method);
    case 400:
        if (declared_too_large(srv, req))
            break; /* the body size is checked before the path is validated: 413 */
        return http_reply_problem(req, "invalid_argument", "bad percent-encoding in the path");
    case 503:
        return http_reply_problem(req, "unavailable", "out of memory");
    default:
        break;
    }
    if (declared_too_large(srv, req))
        return http_reply_problem(req, "payload_too_large", "the body is over %zu bytes",
                                  srv->cfg.max_body);
    return MHD_YES;
}

static bool append_body(http_server_t *srv, http_request_t *req, const char *data, size_t n)
{
    if (req->body_too_large || req->body_len + n > srv->cfg.max_body) {
        req->body_too_large = true;
        return true;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 256;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        char *grown = realloc(req->body, cap);
        if (!grown)
            return false;
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
    return true;
}

/* Per connection (MHD's socket context, from MHD_OPTION_NOTIFY_CONNECTION):
 * the request of the connection that MHD has not reported complete yet.
 * MHD 0.9.75 does not report every request it has begun: when it gives up
 * on a request head itself, some paths set the connection's state to
 * CLOSED directly instead of calling MHD_connection_close_(), the only
 * place (with the keep-alive reset) that calls the completion callback.
 * The one a client can trigger at will: a query string with more
 * arguments than the connection's memory holds (~500). The arguments
 * are parsed after the URI log callback (on_uri) made the request;
 * connection_add_header() queues a 431 (transmit_error_response_len), but
 * parse_initial_message_line() returns MHD_YES and
 * MHD_connection_handle_idle() overwrites the state with URL_RECEIVED; the
 * next attempt to grow the (released) read buffer fails and calls
 * transmit_error_response_len() again, which, finding stop_with_error
 * set, sets state = MHD_CONNECTION_CLOSED (connection.c:2281-2286): no
 * answer, no completion. The connection is still cleaned up, and that
 * always reports MHD_CONNECTION_NOTIFY_CLOSED: the request is freed there. */
typedef struct conn_slot {
    http_request_t *req;
} conn_slot_t;

static conn_slot_t *connection_slot(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* A request record for conn, registered in its slot (freed by
 * release_request); NULL when out of memory (or the slot is missing). */
static http_request_t *new_request(struct MHD_Connection *conn)
{
    conn_slot_t *slot = connection_slot(conn);
    http_request_t *req = slot ? calloc(1, sizeof *req) : NULL;
    if (req)
        slot->req = req;
    return req;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    http_server_t *srv = cls;
    http_request_t *req = *con_cls;
    if (!req || !req->started) {
        if (!req && !(req = new_request(conn)))
            return MHD_NO;
        *con_cls = req;
        req->started = true;
        req->conn = conn;
        req->db = srv->db;
        req->metrics = srv->metrics;
        req->cfg = &srv->cfg;
        req->srv = srv;
        req->method = method;
        req->started_ns = mono_ns();
        atomic_fetch_add(&srv->in_flight, 1);
        if (srv->access_log && !(req->url = strdup(url)))
            return MHD_NO; /* on_completed frees req */
        return on_first_call(srv, req, url, version);
    }
    if (req->replied)
        return MHD_YES; /* rejected early; MHD drops the body */
    if (*upload_data_size > 0) {
        bool ok = append_body(srv, req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (req->body_too_large)
        return http_reply_problem(req, "payload_too_large", "the body is over %zu bytes",
                                  srv->cfg.max_body);
    if (req->park_wanted && park_now(req))
        return MHD_YES;
    return req->route->handler(req);
}

/* One line in Common Log Format: host - - [time] "METHOD path" status bytes.
 * The query string is left out (it may carry data the operator did not
 * mean to log); headers (and so tokens) never appear. */
static void log_access(http_server_t *srv, const http_request_t *req, struct MHD_Connection *conn)
{
    char host[INET6_ADDRSTRLEN] = "-";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        const void *addr = sa->sa_family == AF_INET6
                               ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                               : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
        inet_ntop(sa->sa_family, addr, host, sizeof host);
    }
    char stamp[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%d/%b/%Y:%H:%M:%S +0000", gmtime_r(&now, &tm));
    pthread_mutex_lock(&srv->log_lock);
    fprintf(srv->access_log, "%s - - [%s] \"%s %s\" %d %zu\n", host, stamp, req->method,
            req->url ? req->url : "-", req->replied ? req->status : 0, req->reply_bytes);
    fflush(srv->access_log);
    pthread_mutex_unlock(&srv->log_lock);
}

/* End of a request, whether MHD reported it complete or dropped it: log,
 * count and free everything it owns. `delivered`: MHD reported it
 * complete (MHD_REQUEST_TERMINATED_COMPLETED_OK), so the client got the
 * reply. */
static void release_request(http_server_t *srv, struct MHD_Connection *conn, http_request_t *req,
                            bool delivered)
{
    conn_slot_t *slot = connection_slot(conn);
    if (slot && slot->req == req)
        slot->req = NULL;
    if (!req->started) { /* created by on_uri, ended before on_request */
        free(req);
        return;
    }
    if (req->replied)
        metrics_observe(srv->metrics, req->route, req->method, (unsigned)req->status,
                        (double)(mono_ns() - req->started_ns) / 1e9);
    if (srv->access_log)
        log_access(srv, req, conn);
    free(req->url);
    if (req->ctx && req->ctx_undelivered && !delivered)
        req->ctx_undelivered(req->ctx); /* the client did not get the reply */
    if (req->ctx && req->ctx_free)
        req->ctx_free(req->ctx);
    free_params(req);
    free(req->body);
    free(req);
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_request_t *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    release_request(cls, conn, req, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
}

/* Connection opened: its slot (NULL when out of memory: on_uri and
 * on_request then refuse its requests). Closed: free a request MHD never
 * completed, and the slot. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(conn_slot_t));
        return;
    }
    conn_slot_t *slot = *socket_context;
    if (slot && slot->req) {
        log_debug("http", "freeing a request that libmicrohttpd dropped");
        release_request(cls, conn, slot->req, false);
    }
    free(slot);
    *socket_context = NULL;
}

/* MHD's URI log callback, called with the raw request target (query
 * included) before it is split: create the request here to note the
 * target's length up to its first NUL (see target_has_nul) and whether it
 * is visible ASCII (MHD keeps a target with a space in it: "GET /a b
 * HTTP/1.1" is target "/a b"). Its result is on_request's *con_cls; NULL
 * lets on_request create the request. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    http_request_t *req = new_request(conn);
    if (req) {
        req->target_len = uri ? strlen(uri) : 0;
        req->target_known = uri != NULL;
        req->target_problem = uri ? http_framing_target(uri, req->target_len) : NULL;
    }
    return req;
}

/* Keep URLs raw: routing decodes each path segment itself. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

/* ------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------ */

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, char *err,
                   size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static uint16_t bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : 0;
}

static void close_access_log(http_server_t *srv)
{
    if (srv->access_log && srv->access_log != stderr)
        fclose(srv->access_log);
    srv->access_log = NULL;
}

http_server_t *http_start(const http_config_t *cfg, sqlcached_t *db, char *err, size_t errlen)
{
    http_server_t *srv = calloc(1, sizeof *srv);
    struct sockaddr_storage ss;
    if (srv)
        pthread_mutex_init(&srv->park_lock, NULL);
    if (!srv || resolve(cfg->host, cfg->port, &ss, err, errlen) != 0)
        goto fail;
    srv->cfg = *cfg;
    srv->db = db;
    if (!(srv->metrics = metrics_create(http_routes, http_route_count)))
        goto fail;
    pthread_mutex_init(&srv->log_lock, NULL);
    if (cfg->access_log) {
        srv->access_log = strcmp(cfg->access_log, "-") == 0 ? stderr : fopen(cfg->access_log, "a");
        if (!srv->access_log) {
            snprintf(err, errlen, "cannot open the access log %s: %s", cfg->access_log,
                     strerror(errno));
            goto fail;
        }
    }
    if (cfg->auth_token && !(srv->auth_token = strdup(cfg->auth_token)))
        goto fail;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->daemon =
        MHD_start_daemon(flags, cfg->port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
                         (unsigned int)(cfg->threads ? cfg->threads : 1),
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                         MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                         MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL,
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned int)(cfg->connection_timeout_s ? cfg->connection_timeout_s : 60),
                         MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned int)(cfg->max_connections ? cfg->max_connections : 10000),
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_HEADER_MEMORY,
                         /* 0, not 1: at 1 MHD itself refuses a missing Host (400 with its
         * header block sent twice, see bad_head) and closes on a space in
         * the target without any status; bad_head checks both. */
                         MHD_OPTION_STRICT_FOR_CLIENT, (int)0, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%u (address in use or not permitted)", cfg->host,
                 cfg->port);
        goto fail;
    }
    srv->port = bound_port(srv->daemon);
    return srv;
fail:
    if (srv && !err[0])
        snprintf(err, errlen, "out of memory");
    if (srv) {
        free(srv->auth_token);
        metrics_destroy(srv->metrics);
        close_access_log(srv);
        pthread_mutex_destroy(&srv->park_lock);
    }
    free(srv);
    return NULL;
}

uint16_t http_port(const http_server_t *srv)
{
    return srv->port;
}

void http_stop(http_server_t *srv)
{
    if (!srv)
        return;
    unsigned timeout = srv->cfg.shutdown_timeout_ms ? srv->cfg.shutdown_timeout_ms : DRAIN_WAIT_MS;
    int64_t deadline = mono_ns() + ((int64_t)timeout + HTTP_STOP_GRACE_MS) * 1000000;
    atomic_store_explicit(&srv->draining, true, memory_order_release);
    resume_all(srv, false); /* parked requests are answered 503 now, not at their deadline */
    while (atomic_load(&srv->in_flight) > 0 && mono_ns() < deadline)
        usleep(5000);
    if (atomic_load(&srv->in_flight) > 0) {
        log_warn("http", "stopping with %d requests still in flight", atomic_load(&srv->in_flight));
        resume_all(srv, true); /* MHD must not be stopped with suspended connections */
    }
    MHD_stop_daemon(srv->daemon);
    metrics_destroy(srv->metrics);
    close_access_log(srv);
    pthread_mutex_destroy(&srv->park_lock);
    free(srv->auth_token);
    free(srv);
}
