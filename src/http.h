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

#include "sqlcached.h"

#define HTTP_MAX_PARAMS 4

typedef struct http_server http_server_t;

typedef struct http_config {
    const char *host;          /* numeric address or name to bind */
    uint16_t port;             /* 0 = any free port (see http_port) */
    unsigned threads;          /* worker threads in MHD's pool */
    size_t max_body;           /* larger request bodies get 413 */
    const char *auth_token;    /* NULL = no auth on /v1/... */
    unsigned max_connections;  /* 0 = MHD's default */
    unsigned connection_timeout_s; /* idle timeout per connection */
    const char *admin_token;   /* NULL = /v1/admin/... takes auth_token */
    const char *backup_dir;    /* NULL = backups disabled */
    const char *access_log;    /* path, "-" = stderr, NULL = off */
    const json_t *settings;    /* effective configuration, secrets masked */
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
    struct metrics *metrics; /* the server's, for /metrics and /v1/stats */
    const http_config_t *cfg; /* the server's configuration */
    const char *method;
    const struct http_route *route;
    http_param_t params[HTTP_MAX_PARAMS];
    char param_buf[128]; /* decoded params that fit (else params own a malloc) */
    char *body;     /* request body (NUL-terminated), owned by the request */
    size_t body_len;
    size_t body_cap;
    bool body_too_large;
    bool replied;   /* a reply was queued */
    int status;     /* HTTP status of the reply */
    size_t reply_bytes; /* body size of the reply, for the access log */
    char *url;      /* raw path, kept only for the access log */
    int64_t started_ns;
    enum MHD_Result (*resume)(struct http_request *req); /* see http_suspend */
    void *state;    /* a handler's state across a suspension; free()d at the end */
} http_request_t;

typedef enum MHD_Result (*http_handler_fn)(http_request_t *req);

typedef struct http_route {
    const char *method;  /* "GET", "PUT", "POST", "DELETE" */
    const char *pattern; /* "/v1/kv/{key}/incr": {name} matches one segment */
    http_handler_fn handler;
    const char *name;    /* metrics label, e.g. "kv_get" */
} http_route_t;

/* The routing table (http.c) and its length. */
extern const http_route_t http_routes[];
extern const size_t http_route_count;

/* Start serving. NULL on failure with a message in err. */
http_server_t *http_start(const http_config_t *cfg, sqlcached_t *db, char *err, size_t errlen);

/* The bound port (useful with port 0). */
uint16_t http_port(const http_server_t *srv);

/* Stop accepting, let in-flight requests finish (bounded wait), stop. */
void http_stop(http_server_t *srv);

/* --- replies (each queues the response; returns MHD's result) --------- */

/* 200 with a text body (taken over, freed with free()) of this type. */
enum MHD_Result http_reply_text(http_request_t *req, char *text, const char *content_type);

/* 2xx JSON reply; takes ownership of obj (freed even on failure). */
enum MHD_Result http_reply_json(http_request_t *req, unsigned status, json_t *obj);

/* Empty reply (204, 304...), with an optional ETag version (< 0: none). */
enum MHD_Result http_reply_empty(http_request_t *req, unsigned status, int64_t etag);

/* problem+json for one of the contract's codes ("invalid_json", ...);
 * the HTTP status comes from the table in http.c. */
enum MHD_Result http_reply_problem(http_request_t *req, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* problem+json for a library outcome (not SQLCACHED_OK). */
enum MHD_Result http_reply_status(http_request_t *req, sqlcached_status_t st, const char *detail);

/* 304 Not Modified for a value (ETag, X-Cache); takes the reference. */
enum MHD_Result http_reply_not_modified(http_request_t *req, sqlcached_value_t *value);

/* A stored value verbatim; takes ownership of the reference. */
enum MHD_Result http_reply_value(http_request_t *req, sqlcached_value_t *value);

/* http_reply_json with an ETag header for `etag` (< 0: none). */
enum MHD_Result http_reply_json_etag(http_request_t *req, unsigned status, json_t *obj,
                                     int64_t etag);

/* --- asynchronous handlers ------------------------------------------ */

/* Park the request without a reply, so that the worker thread serves other
 * connections meanwhile (a handler that waits for a group commit). Call it
 * from the handler before starting the work whose completion calls
 * http_resume(), then return the MHD_YES this returns. After the resume,
 * `resume` runs on a worker thread and must queue the reply. */
enum MHD_Result http_suspend(http_request_t *req, http_handler_fn resume);

/* Wake a suspended request; any thread, exactly once per http_suspend.
 * The caller must not touch req afterwards. */
void http_resume(http_request_t *req);

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
bool http_json_int(http_request_t *req, json_t *obj, const char *name, bool optional,
                   int64_t dflt, int64_t min, int64_t max, int64_t *out);

/* Member `name` of obj as a string of 1..max bytes of UTF-8 (jansson
 * guarantees UTF-8; NUL is refused at parse time). The pointer is borrowed
 * from obj. On failure replies 400 invalid_argument and returns false. */
bool http_json_string(http_request_t *req, json_t *obj, const char *name, size_t max,
                      const char **out, size_t *len);

/* Decode %XX escapes of s[0..n) into a new buffer (NUL-terminated, caller
 * frees). plus_is_space for query strings. NULL when badly encoded or out
 * of memory (*bad tells which). */
char *http_percent_decode(const char *s, size_t n, bool plus_is_space, size_t *outlen, bool *bad);

/* The same into out (room for n + 1 bytes); false when badly encoded. */
bool http_percent_decode_into(char *out, const char *s, size_t n, bool plus_is_space,
                              size_t *outlen);

/* Write s[0..n) as a JSON string (quotes included) into out, which has
 * room for HTTP_JSON_QUOTED_MAX(n) bytes, escaped exactly as jansson's
 * compact dump escapes it (s is valid UTF-8, as jansson requires). Returns
 * the length written (no NUL). */
#define HTTP_JSON_QUOTED_MAX(n) (6 * (n) + 2)
size_t http_json_quote(char *out, const char *s, size_t n);

/* A 2xx reply with a JSON text already rendered (copied), and an ETag
 * header for `etag` (< 0: none). */
enum MHD_Result http_reply_json_text(http_request_t *req, unsigned status, const char *text,
                                     size_t len, int64_t etag);

/* True if the bytes are valid UTF-8 without NUL. */
bool http_utf8_ok(const char *s, size_t n);

/* Constant-time comparison of two byte strings of possibly different length. */
bool http_token_equal(const char *a, const char *b);

/* Check path parameter idx as a text identifier of 1..max bytes (UTF-8,
 * no NUL); on failure replies 400 naming `what` and returns false. */
bool http_param_text(http_request_t *req, int idx, size_t max, const char *what);

#endif
