/*
 * http.h - the HTTP front: libmicrohttpd daemon, routing, bodies, auth,
 * and the replies handlers send (JSON, problem+json, raw values).
 *
 * http.c is the only place that turns library outcomes into HTTP statuses
 * (one table, keyed by the problem code). Handlers (api_*.c) parse the
 * request, call the library and reply with one of the http_reply_* calls;
 * each handler must queue exactly one reply and return its result.
 */
#ifndef SQLCACHED_HTTP_H
#define SQLCACHED_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sqlcached.h"

#define HTTP_MAX_PARAMS 4

typedef struct http_server http_server_t;

typedef struct http_config {
    const char *host;              /* numeric address or name to bind */
    uint16_t port;                 /* 0 = any free port (see http_port) */
    unsigned threads;              /* worker threads in MHD's pool */
    size_t max_body;               /* larger request bodies get 413 */
    const char *auth_token;        /* NULL = no auth on /v1/... */
    unsigned max_connections;      /* 0 = MHD's default */
    unsigned connection_timeout_s; /* idle timeout per connection */
    const char *admin_token;       /* NULL = /v1/admin/... takes auth_token */
    const char *backup_dir;        /* NULL = backups disabled */
    const char *access_log;        /* path, "-" = stderr, NULL = off */
    const json_t *settings;        /* effective configuration, secrets masked */
    unsigned shutdown_timeout_ms;  /* http_stop: how long requests in flight get
                                     (0 = 10 s) */
} http_config_t;

/* A decoded path parameter ({key}, {id}, ...). */
typedef struct http_param {
    char *data; /* owned by the request, NUL-terminated for convenience */
    size_t len;
} http_param_t;

struct metrics;

typedef struct http_request {
    struct MHD_Connection *conn;
    sqlcached_t *db;
    struct metrics *metrics;  /* the server's, for /metrics and /v1/stats */
    const http_config_t *cfg; /* the server's configuration */
    const char *method;
    const struct http_route *route;
    http_param_t params[HTTP_MAX_PARAMS];
    char *body; /* request body (NUL-terminated), owned by the request;
                       a handler may take it over (then sets it NULL) */
    size_t body_len;
    size_t body_cap;
    bool body_too_large;
    bool replied;       /* a reply was queued */
    int status;         /* HTTP status of the reply */
    size_t reply_bytes; /* body size of the reply, for the access log */
    char *url;          /* raw path, kept only for the access log */
    int64_t started_ns;

    /* Parking (http_suspend / http_resume), under the server's park lock. */
    http_server_t *srv;
    bool suspended;      /* parked: MHD_suspend_connection called, not resumed */
    bool wake_pending;   /* http_resume came before http_suspend */
    bool park_wanted;    /* http_suspend called; MHD suspends on its next call */
    bool aborted;        /* woken or refused because the server is stopping */
    bool park_past_stop; /* set by the handler: stays parked when the server
                            stops, its http_resume being bound to come by the
                            stop deadline (a queued write: see api_kv.c) */
    struct http_request *park_prev, *park_next;

    /* A handler's state across calls of a parked request; ctx_free(ctx)
     * runs when the request completes, if ctx is still set. Before it,
     * ctx_undelivered(ctx) (if set) runs when the request ends without its
     * reply sent in full (the client is gone, the connection failed, the
     * server stopped): MHD's termination code is not COMPLETED_OK. */
    void *ctx;
    void (*ctx_free)(void *ctx);
    void (*ctx_undelivered)(void *ctx);
    bool started;               /* on_request has seen it (it may be created earlier) */
    bool target_known;          /* target_len was taken from the raw request line */
    size_t target_len;          /* request target up to the first NUL, query included */
    const char *target_problem; /* static: why the target is refused, or NULL */
    bool close_after;           /* the reply closes the connection (framing errors) */
} http_request_t;

typedef enum MHD_Result (*http_handler_fn)(http_request_t *req);

typedef struct http_route {
    const char *method;  /* "GET", "PUT", "POST", "DELETE" */
    const char *pattern; /* "/v1/kv/{key}/incr": {name} matches one segment */
    http_handler_fn handler;
    const char *name; /* metrics label, e.g. "kv_get" */
} http_route_t;

/* The routing table (http.c) and its length. */
extern const http_route_t http_routes[];
extern const size_t http_route_count;

/* Start serving. NULL on failure with a message in err. */
http_server_t *http_start(const http_config_t *cfg, sqlcached_t *db, char *err, size_t errlen);

/* The bound port (useful with port 0). */
uint16_t http_port(const http_server_t *srv);

/* Answer new requests 503 (closing their connections), let in-flight
 * requests finish, stop. The wait ends shutdown_timeout_ms (CLOCK_MONOTONIC)
 * plus HTTP_STOP_GRACE_MS after the call at the latest; a request parked
 * then is resumed with req->aborted set (see http_suspend) or closed. */
#define HTTP_STOP_GRACE_MS 1000
void http_stop(http_server_t *srv);

/* --- replies (each queues the response; returns MHD's result) --------- */

/* 200 with a text body (taken over, freed with free()) of this type. */
enum MHD_Result http_reply_text(http_request_t *req, char *text, const char *content_type);

/* 200 with a static body (never freed nor changed: an embedded file) of
 * this type, with `Cache-Control: no-cache` and `X-Content-Type-Options:
 * nosniff`; csp (may be NULL) is sent as `Content-Security-Policy`. */
enum MHD_Result http_reply_static(http_request_t *req, const char *body, size_t len,
                                  const char *content_type, const char *csp);

/* 2xx JSON reply; takes ownership of obj (freed even on failure). */
enum MHD_Result http_reply_json(http_request_t *req, unsigned status, json_t *obj);

/* Empty reply (204, 304...), with an optional ETag version (< 0: none). */
enum MHD_Result http_reply_empty(http_request_t *req, unsigned status, int64_t etag);

/* problem+json for one of the contract's codes ("invalid_json", ...);
 * the HTTP status comes from the table in http.c. */
enum MHD_Result http_reply_problem(http_request_t *req, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* http_reply_problem with extra members merged into the problem object
 * (e.g. "retry_after_ms"); takes ownership of extra, which may be NULL. */
enum MHD_Result http_reply_problem_with(http_request_t *req, const char *code, json_t *extra,
                                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* problem+json for a library outcome (not SQLCACHED_OK). */
enum MHD_Result http_reply_status(http_request_t *req, sqlcached_status_t st, const char *detail);

/* 304 Not Modified for a value (ETag, X-Cache); takes the reference. */
enum MHD_Result http_reply_not_modified(http_request_t *req, sqlcached_value_t *value);

/* A stored value verbatim; takes ownership of the reference. */
enum MHD_Result http_reply_value(http_request_t *req, sqlcached_value_t *value);

/* http_reply_value without X-Cache, with one more header `name: value`
 * (a deleted value returned by DELETE). Takes the reference. */
enum MHD_Result http_reply_value_header(http_request_t *req, sqlcached_value_t *value,
                                        const char *name, const char *hvalue);

/* http_reply_json with an ETag header for `etag` (< 0: none). */
enum MHD_Result http_reply_json_etag(http_request_t *req, unsigned status, json_t *obj,
                                     int64_t etag);

/* Reply with a JSON text (taken over, freed with free(); NULL: out of
 * memory, answered 503), with an ETag unless etag < 0. For texts built
 * without a tree (json_text.h). */
enum MHD_Result http_reply_json_text(http_request_t *req, unsigned status, char *text,
                                     int64_t etag);

/* http_reply_json with one more response header `name: value`. */
enum MHD_Result http_reply_json_header(http_request_t *req, unsigned status, json_t *obj,
                                       const char *name, const char *value);
/* --- parking a request without holding a worker thread --------------- */

/* Park the request (MHD_suspend_connection, on MHD's next call: see
 * http.c): the handler then returns MHD_YES without a reply, and MHD calls
 * it again once someone calls http_resume(). Returns false when the
 * request must be answered now
 * instead: http_resume() already came (a wake that raced the park), or the
 * server is stopping (req->aborted is then set) and req->park_past_stop is
 * not set. A request parked without park_past_stop is woken with
 * req->aborted set as soon as the server begins to stop; with it, only if
 * it is still parked at the end of http_stop's wait. Call from the
 * handler. */
bool http_suspend(http_request_t *req);

/* Wake a request parked by http_suspend(), or about to be. Any thread;
 * the request must not have been answered yet. */
void http_resume(http_request_t *req);

/* --- streams: a 200 of unknown length (Server-Sent Events) ----------- *
 * The body comes from fn, called by MHD whenever it can send more; when
 * fn has nothing, the connection is suspended (no thread is held) until
 * http_stream_wake(). When the server stops, fn is called with stopping
 * set and the stream then ends. */
typedef struct http_stream http_stream_t;

/* Up to max bytes of body into buf: > 0 bytes written; 0: nothing now
 * (parks until http_stream_wake); -1: the body is complete. */
typedef ssize_t (*http_stream_fn)(void *cls, char *buf, size_t max, bool stopping);

/* A stream for req, not yet answered (NULL: out of memory); wakes may
 * come from now on. Freed by http_reply_stream, or by http_stream_free
 * when the request is answered some other way. */
http_stream_t *http_stream_new(http_request_t *req);
void http_stream_free(http_stream_t *s);

/* 200 with this content type and the body fn(cls, ...) gives. Takes s
 * over; free_cls(cls) runs when the response ends (once no wake can come
 * any more, it must stop them: close what calls http_stream_wake), then s
 * is freed; also when the reply fails. */
enum MHD_Result http_reply_stream(http_request_t *req, http_stream_t *s, const char *content_type,
                                  http_stream_fn fn, void *cls, void (*free_cls)(void *cls));

/* fn has more to give: resume the stream. Any thread. */
void http_stream_wake(http_stream_t *s);

/* --- request helpers ------------------------------------------------- */

/* A request header or NULL. */
const char *http_header(const http_request_t *req, const char *name);

/* A query argument, percent-decoded ('+' is a space) into a new buffer the
 * caller frees. Returns 1 if present, 0 if absent, -1 if badly encoded. */
int http_query(const http_request_t *req, const char *name, char **out, size_t *len);

/* Parse the body as a JSON object whose members are all among `members`
 * (NULL-terminated). An empty body gives an empty object when allow_empty.
 * On failure replies 400 and returns NULL: invalid_json for a body that is
 * not JSON text, invalid_argument for valid JSON of the wrong shape (not an
 * object, unknown or duplicate member, NUL in a string, number out of
 * range). The caller owns the result. */
json_t *http_body_object(http_request_t *req, bool allow_empty, const char *const members[]);

/* Member `name` of obj as an int64 in [min, max]; absent gives `dflt` when
 * optional. On failure replies 400 invalid_argument and returns false. */
bool http_json_int(http_request_t *req, json_t *obj, const char *name, bool optional, int64_t dflt,
                   int64_t min, int64_t max, int64_t *out);

/* Member `name` of obj as a string of 1..max bytes of UTF-8 (jansson
 * guarantees UTF-8; NUL is refused at parse time). The pointer is borrowed
 * from obj. On failure replies 400 invalid_argument and returns false. */
bool http_json_string(http_request_t *req, json_t *obj, const char *name, size_t max,
                      const char **out, size_t *len);

/* Decode %XX escapes of s[0..n) into a new buffer (NUL-terminated, caller
 * frees). plus_is_space for query strings. NULL when badly encoded or out
 * of memory (*bad tells which). */
char *http_percent_decode(const char *s, size_t n, bool plus_is_space, size_t *outlen, bool *bad);

/* True if the bytes are valid UTF-8 without NUL. */
bool http_utf8_ok(const char *s, size_t n);

/* Constant-time comparison of two byte strings of possibly different length. */
bool http_token_equal(const char *a, const char *b);

/* Check path parameter idx as a text identifier of 1..max bytes (UTF-8,
 * no NUL); on failure replies 400 naming `what` and returns false. */
bool http_param_text(http_request_t *req, int idx, size_t max, const char *what);

/* --- pure parsing (no connection, no reply; for the handlers' wrappers
 * above, for unit tests and for the fuzz targets in fuzz/) ------------- */

/* Why a body, a member or a path was refused: one of the contract's problem
 * codes ("invalid_json", "invalid_argument", "unavailable") and a detail. */
typedef struct http_error {
    const char *code;
    char detail[256];
} http_error_t;

/* The result of routing a method and a raw path. */
typedef struct http_match {
    const http_route_t *route;            /* see http_route() */
    http_param_t params[HTTP_MAX_PARAMS]; /* decoded; owned, see http_match_free() */
} http_match_t;

/* Route `method` and a raw path (no query string, not percent-decoded).
 * Returns 200 (route and decoded params set), 404 (no route has this path),
 * 405 (route is a same-path route with another method, for Allow), 400 (a
 * parameter is badly percent-encoded) or 503 (out of memory). out is always
 * initialised: release it with http_match_free() whatever the result. */
int http_route(const char *method, const char *path, http_match_t *out);

/* Free the decoded params of a match. Cannot fail; safe to call twice. */
void http_match_free(http_match_t *m);

/* True if s[0..n) is a text identifier of 1..max bytes: UTF-8, no NUL. */
bool http_text_ok(const char *s, size_t n, size_t max);

/* http_body_object() without a request: parse body[0..len) (need not be
 * NUL-terminated) as a JSON object whose members are all among `members`.
 * Returns a new object (caller owns it) or NULL with err filled. */
json_t *http_parse_object(const char *body, size_t len, bool allow_empty,
                          const char *const members[], http_error_t *err);

/* http_json_int() and http_json_string() without a request: false with err
 * filled ("invalid_argument"). The string is borrowed from obj. */
bool http_member_int(json_t *obj, const char *name, bool optional, int64_t dflt, int64_t min,
                     int64_t max, int64_t *out, http_error_t *err);
bool http_member_string(json_t *obj, const char *name, size_t max, const char **out, size_t *len,
                        http_error_t *err);

#endif
