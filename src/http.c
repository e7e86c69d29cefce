/*
 * http.c - libmicrohttpd daemon, routing, request bodies, auth and replies.
 *
 * Request life cycle (MHD calls on_request several times per request):
 *   1st call: allocate the http_request_t (freed in on_completed), check the
 *             bearer token for /v1/..., resolve the route (404, or 405 with
 *             Allow), reject a declared Content-Length above max_body (413).
 *             Rejections are answered before any body is read.
 *   next calls: append upload data to the body; past max_body the rest is
 *             discarded and the request gets 413 (nothing is stored).
 *   last call: run the route's handler, which queues exactly one reply, or
 *             parks the request (http_suspend) until its work is done
 *             elsewhere (a PUT's group commit); when http_resume wakes it,
 *             MHD calls on_request again and the handler's `resume`
 *             function queues the reply.
 *
 * URLs: MHD is told not to unescape (identity unescape callback), so path
 * segments arrive raw and are percent-decoded here strictly: %2F inside a
 * key stays inside the key, and a bad escape is a 400.
 *
 * Outcome -> HTTP status: one table, `problems`, keyed by the contract's
 * problem codes. Library statuses map to codes by sqlcached_status_name().
 *
 * Shutdown: http_stop() quiesces the listen socket, waits (bounded) for the
 * requests in flight to complete, then stops MHD.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "metrics.h"

#define DRAIN_WAIT_MS 10000

/* Memory of one connection: request line, headers, read and write buffers.
 * MHD zeroes all of it for every request, so MHD's default of 32 KiB cost
 * about 5% of the CPU of a GET at high rates; 16 KiB still takes 8 KiB
 * and more of headers (a 4 KiB bearer token, a 1.5 KiB escaped key, long
 * If-Match lists). Larger request heads are refused by MHD (431). */
#define HTTP_CONNECTION_MEMORY (16 * 1024)

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
};

/* ------------------------------------------------------------------------
 * The routing table
 * ------------------------------------------------------------------------ */

const http_route_t http_routes[] = {
    {"GET", "/healthz", api_health, "healthz"},
    {"GET", "/metrics", api_metrics, "metrics"},
    {"GET", "/v1/stats", api_stats, "stats"},
    {"GET", "/v1/admin/config", api_admin_config, "admin_config"},
    {"POST", "/v1/admin/backup", api_admin_backup, "admin_backup"},
    {"GET", "/v1/kv", api_kv_list, "kv_list"},
    {"GET", "/v1/kv/{key}", api_kv_get, "kv_get"},
    {"PUT", "/v1/kv/{key}", api_kv_put, "kv_put"},
    {"DELETE", "/v1/kv/{key}", api_kv_delete, "kv_delete"},
    {"POST", "/v1/kv/{key}/incr", api_kv_incr, "kv_incr"},
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
    {"sold_out", 409, "Sold out"},
    {"already_ordered", 409, "User already holds an order for this item"},
    {"lease_held", 409, "Lease held by another owner"},
    {"not_owner", 409, "Caller does not hold the lease"},
    {"storage_full", 507, "Storage full"},
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

static enum MHD_Result queue(http_request_t *req, unsigned status, struct MHD_Response *resp,
                             size_t bytes)
{
    req->reply_bytes = bytes;
    if (!resp)
        return MHD_NO;
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    req->replied = true;
    req->status = (int)status;
    return r;
}

static void add_etag(struct MHD_Response *resp, int64_t etag)
{
    char buf[32];
    snprintf(buf, sizeof buf, "\"%lld\"", (long long)etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, buf);
}

/* A response holding `text` (taken over; freed by MHD with free()); its
 * length goes to *len. */
static struct MHD_Response *text_response(char *text, const char *content_type, size_t *len)
{
    if (!text)
        return NULL;
    *len = strlen(text);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(*len, text, MHD_RESPMEM_MUST_FREE);
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
    return queue(req, MHD_HTTP_OK, resp, len);
}

enum MHD_Result http_reply_json_etag(http_request_t *req, unsigned status, json_t *obj,
                                     int64_t etag)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(obj);
    size_t len = 0;
    struct MHD_Response *resp = text_response(text, "application/json", &len);
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    if (etag >= 0)
        add_etag(resp, etag);
    return queue(req, status, resp, len);
}

enum MHD_Result http_reply_json_text(http_request_t *req, unsigned status, const char *text,
                                     size_t len, int64_t etag)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (etag >= 0)
        add_etag(resp, etag);
    return queue(req, status, resp, len);
}

size_t http_json_quote(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    out[j++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            out[j++] = (char)c;
            continue;
        }
        out[j++] = '\\';
        switch (c) {
        case '"': out[j++] = '"'; break;
        case '\\': out[j++] = '\\'; break;
        case '\b': out[j++] = 'b'; break;
        case '\f': out[j++] = 'f'; break;
        case '\n': out[j++] = 'n'; break;
        case '\r': out[j++] = 'r'; break;
        case '\t': out[j++] = 't'; break;
        default:
            memcpy(out + j, "u00", 3);
            out[j + 3] = hex[c >> 4];
            out[j + 4] = hex[c & 15];
            j += 5;
        }
    }
    out[j++] = '"';
    return j;
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
    return queue(req, status, resp, 0);
}

static char *problem_text(const problem_t *p, const char *detail)
{
    char type[80];
    snprintf(type, sizeof type, "urn:sqlcached:problem:%s", p->code);
    json_t *obj = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", p->title,
                            "status", (int)p->status, "detail", detail, "code", p->code);
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(obj);
    return text;
}

static void add_problem_headers(http_request_t *req, const problem_t *p,
                                struct MHD_Response *resp)
{
    if (p->status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (p->status == 503)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (p->status == 405 && req->route)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow_header(req));
}

enum MHD_Result http_reply_problem(http_request_t *req, const char *code, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (!http_utf8_ok(detail, strlen(detail)))
        snprintf(detail, sizeof detail, "%s", "request rejected");
    const problem_t *p = problem_for(code);
    size_t len = 0;
    struct MHD_Response *resp =
        text_response(problem_text(p, detail), "application/problem+json", &len);
    if (!resp)
        return MHD_NO;
    add_problem_headers(req, p, resp);
    return queue(req, p->status, resp, len);
}

enum MHD_Result http_reply_status(http_request_t *req, sqlcached_status_t st, const char *detail)
{
    if (st == SQLCACHED_INTERNAL)
        log_error("http", "%s %s: internal error", req->method, req->route ? req->route->name : "?");
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
    return queue(req, MHD_HTTP_NOT_MODIFIED, resp, 0);
}

enum MHD_Result http_reply_value(http_request_t *req, sqlcached_value_t *value)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        value->len, (void *)value->data, release_value, value);
    if (!resp) {
        sqlcached_value_release(value);
        return http_reply_problem(req, "unavailable", "out of memory");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, value->content_type);
    add_etag(resp, value->version);
    MHD_add_response_header(resp, "X-Cache", value->from_cache ? "HIT" : "MISS");
    return queue(req, MHD_HTTP_OK, resp, value->len);
}

/* ------------------------------------------------------------------------
 * Request helpers
 * ------------------------------------------------------------------------ */

const char *http_header(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool http_percent_decode_into(char *out, const char *s, size_t n, bool plus_is_space,
                              size_t *outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return false;
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[j++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
        }
    }
    out[j] = '\0';
    *outlen = j;
    return true;
}

char *http_percent_decode(const char *s, size_t n, bool plus_is_space, size_t *outlen, bool *bad)
{
    *bad = false;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    if (!http_percent_decode_into(out, s, n, plus_is_space, outlen)) {
        free(out);
        *bad = true;
        return NULL;
    }
    return out;
}

bool http_utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

bool http_token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t n = la > lb ? la : lb;
    volatile unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
        diff |= ca ^ cb;
    }
    return diff == 0;
}

int http_query(const http_request_t *req, const char *name, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw) {
        /* "?name" without "=" is present with an empty value */
        if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name,
                                          strlen(name), NULL, NULL) != MHD_YES)
            return 0;
        raw = "";
    }
    bool bad;
    *out = http_percent_decode(raw, strlen(raw), true, len, &bad);
    if (!*out)
        return -1;
    return 1;
}

/* Parse errors that mean "JSON, but not acceptable" rather than "not JSON". */
static bool shape_error(enum json_error_code code)
{
    return code == json_error_duplicate_key || code == json_error_numeric_overflow ||
           code == json_error_null_character || code == json_error_null_byte_in_key ||
           code == json_error_stack_overflow;
}

static const char *unknown_member(json_t *obj, const char *const members[])
{
    const char *name;
    json_t *value;
    json_object_foreach(obj, name, value) {
        bool known = false;
        for (int i = 0; members && members[i] && !known; i++)
            known = strcmp(name, members[i]) == 0;
        if (!known)
            return name;
    }
    return NULL;
}

json_t *http_body_object(http_request_t *req, bool allow_empty, const char *const members[])
{
    if (req->body_len == 0 && allow_empty)
        return json_object();
    json_error_t err;
    /* JSON_DECODE_ANY: a scalar ("1") is JSON of the wrong shape, not invalid JSON */
    json_t *obj = json_loadb(req->body ? req->body : "", req->body_len,
                             JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!obj) {
        enum json_error_code code = json_error_code(&err);
        if (code == json_error_out_of_memory)
            http_reply_problem(req, "unavailable", "out of memory");
        else
            http_reply_problem(req, shape_error(code) ? "invalid_argument" : "invalid_json",
                               "line %d, column %d: %s", err.line, err.column, err.text);
        return NULL;
    }
    const char *unknown = json_is_object(obj) ? unknown_member(obj, members) : NULL;
    if (!json_is_object(obj) || unknown) {
        if (unknown)
            http_reply_problem(req, "invalid_argument", "unknown member \"%s\"", unknown);
        else
            http_reply_problem(req, "invalid_argument", "the body must be a JSON object");
        json_decref(obj);
        return NULL;
    }
    return obj;
}

bool http_json_int(http_request_t *req, json_t *obj, const char *name, bool optional,
                   int64_t dflt, int64_t min, int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (!v && optional) {
        *out = dflt;
        return true;
    }
    if (!v || !json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        http_reply_problem(req, "invalid_argument", "\"%s\" must be an integer from %lld to %lld",
                           name, (long long)min, (long long)max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

bool http_json_string(http_request_t *req, json_t *obj, const char *name, size_t max,
                      const char **out, size_t *len)
{
    json_t *v = json_object_get(obj, name);
    if (!v || !json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max) {
        http_reply_problem(req, "invalid_argument", "\"%s\" must be a string of 1 to %zu bytes",
                           name, max);
        return false;
    }
    *out = json_string_value(v);
    *len = json_string_length(v);
    return true;
}

bool http_param_text(http_request_t *req, int idx, size_t max, const char *what)
{
    const http_param_t *p = &req->params[idx];
    if (p->len == 0 || p->len > max) {
        http_reply_problem(req, "invalid_argument", "%s must be 1 to %zu bytes, got %zu", what,
                           max, p->len);
        return false;
    }
    if (!http_utf8_ok(p->data, p->len)) {
        http_reply_problem(req, "invalid_argument", "%s must be valid UTF-8 without NUL", what);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------ */

/* Match a raw path against a pattern; on success fill the raw params
 * (pointing into path). One pass over both strings, no allocation. A
 * parameter matches one segment, possibly empty inside the path
 * ("/v1/kv//incr") but not at its end ("/v1/kv/" matches no route).
 * Returns 1 on match, 0 on no match. */
static int match_route(const char *pattern, const char *path, http_param_t *params)
{
    int np = 0;
    for (;;) {
        if (*pattern == '{') {
            if (np == HTTP_MAX_PARAMS || *path == '\0')
                return 0;
            const char *seg = path;
            while (*path && *path != '/')
                path++;
            params[np].data = (char *)seg; /* raw for now */
            params[np].len = (size_t)(path - seg);
            np++;
            while (*pattern && *pattern != '/')
                pattern++;
            continue;
        }
        if (*pattern != *path)
            return 0;
        if (*pattern == '\0')
            return 1;
        pattern++, path++;
    }
}

static void free_params(http_request_t *req)
{
    for (int i = 0; i < HTTP_MAX_PARAMS; i++) {
        char *p = req->params[i].data;
        if (p < req->param_buf || p >= req->param_buf + sizeof req->param_buf)
            free(p);
        req->params[i] = (http_param_t){NULL, 0};
    }
}

/* Decode the raw params that match_route left in place: into the
 * request's own small buffer while they fit (a decoded segment is never
 * longer than the raw one), else into a new allocation. */
static int decode_params(http_request_t *req, http_param_t *raw)
{
    size_t used = 0;
    for (int i = 0; i < HTTP_MAX_PARAMS && raw[i].data; i++) {
        bool bad;
        http_param_t *p = &req->params[i];
        if (raw[i].len < sizeof req->param_buf - used) {
            p->data = req->param_buf + used;
            if (!http_percent_decode_into(p->data, raw[i].data, raw[i].len, false, &p->len))
                return -1;
            used += p->len + 1;
            continue;
        }
        p->data = http_percent_decode(raw[i].data, raw[i].len, false, &p->len, &bad);
        if (!p->data)
            return bad ? -1 : -2;
    }
    return 0;
}

/* Find the route; sets req->route to a same-path route when only the
 * method differs (so 405 can list Allow). Returns 200, 404, 405, 400. */
static int route_request(http_request_t *req, const char *path)
{
    const http_route_t *path_match = NULL;
    for (size_t i = 0; i < http_route_count; i++) {
        http_param_t raw[HTTP_MAX_PARAMS] = {{0}};
        if (match_route(http_routes[i].pattern, path, raw) != 1)
            continue;
        if (!path_match)
            path_match = &http_routes[i];
        if (strcmp(http_routes[i].method, req->method) != 0)
            continue;
        req->route = &http_routes[i];
        int rc = decode_params(req, raw);
        return rc == 0 ? 200 : rc == -1 ? 400 : 503;
    }
    req->route = path_match;
    return path_match ? 405 : 404;
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
 * MHD callbacks
 * ------------------------------------------------------------------------ */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* /v1/admin/... takes the admin token when one is set; the rest of /v1/...
 * (and admin without an admin token) the auth token, when set. */
static bool authorized(http_server_t *srv, http_request_t *req, const char *url)
{
    const char *token = srv->auth_token;
    if (srv->cfg.admin_token && strncmp(url, "/v1/admin/", 10) == 0)
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

/* First call for a request: checks that need no body. Returns MHD_YES with
 * nothing queued to go on reading the body. */
static enum MHD_Result on_first_call(http_server_t *srv, http_request_t *req, const char *url)
{
    int routed = route_request(req, url); /* first, so metrics know the route */
    if (strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0) {
        if (!authorized(srv, req, url))
            return http_reply_problem(req, "unauthorized", "a valid bearer token is required");
    }
    switch (routed) {
    case 404:
        return http_reply_problem(req, "not_found", "no route for this path");
    case 405:
        return http_reply_problem(req, "method_not_allowed", "%s is not allowed here",
                                  req->method);
    case 400:
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
        size_t cap = req->body_cap ? req->body_cap : 1024;
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    http_server_t *srv = cls;
    http_request_t *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->conn = conn;
        req->db = srv->db;
        req->metrics = srv->metrics;
        req->cfg = &srv->cfg;
        if (srv->access_log && !(req->url = strdup(url))) {
            free(req);
            return MHD_NO;
        }
        req->method = method;
        req->started_ns = mono_ns();
        *con_cls = req;
        atomic_fetch_add(&srv->in_flight, 1);
        return on_first_call(srv, req, url);
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
    if (req->resume) { /* back from http_suspend */
        http_handler_fn resume = req->resume;
        req->resume = NULL;
        return resume(req);
    }
    return req->route->handler(req);
}

enum MHD_Result http_suspend(http_request_t *req, http_handler_fn resume)
{
    req->resume = resume;
    MHD_suspend_connection(req->conn);
    return MHD_YES;
}

void http_resume(http_request_t *req)
{
    MHD_resume_connection(req->conn);
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

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    http_server_t *srv = cls;
    http_request_t *req = *con_cls;
    if (!req)
        return;
    if (req->replied)
        metrics_observe(srv->metrics, req->route, req->method, (unsigned)req->status,
                        (double)(mono_ns() - req->started_ns) / 1e9);
    if (srv->access_log)
        log_access(srv, req, conn);
    free(req->url);
    free(req->state);
    free_params(req);
    free(req->body);
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
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
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
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
    srv->daemon = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)(cfg->threads ? cfg->threads : 1),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)(cfg->connection_timeout_s ? cfg->connection_timeout_s : 60),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(cfg->max_connections ? cfg->max_connections : 10000),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
        MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%u (address in use or not permitted)",
                 cfg->host, cfg->port);
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
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    for (int waited = 0; atomic_load(&srv->in_flight) > 0 && waited < DRAIN_WAIT_MS; waited += 10)
        usleep(10000);
    if (atomic_load(&srv->in_flight) > 0)
        log_warn("http", "stopping with %d requests still in flight", atomic_load(&srv->in_flight));
    MHD_stop_daemon(srv->daemon);
    metrics_destroy(srv->metrics);
    close_access_log(srv);
    free(srv->auth_token);
    free(srv);
}
