/*
 * api_kv.c - HTTP handlers of the key-value store (/v1/kv...).
 *
 * Keys come from the path segment after percent-decoding: 1..512 bytes of
 * UTF-8 without NUL (so every key can be listed as a JSON string).
 * Versions are exposed as strong ETags, "<version>". Preconditions
 * (RFC 9110), evaluated by the library inside the write's transaction:
 *   PUT/DELETE If-Match: * or "<v>", ...   (weak tags never match)
 *   PUT/DELETE If-None-Match: * or "<v>", ... (If-None-Match: * = SET NX)
 *   GET If-None-Match: * or "<v>", ...     (304 when one matches, weakly)
 *   PATCH If-Match / If-None-Match as for PUT
 * Sessions and one-time values: PUT (and PATCH) ?sliding=true with ?ttl=
 * (a sliding expiry); DELETE with Prefer: return=representation (read and
 * delete: 200 with the deleted value, Preference-Applied); PATCH with
 * Content-Type: application/merge-patch+json (RFC 7396, else 415).
 */
#include <errno.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "json_text.h"
#include "log.h"

/* Parse a whole decimal string of digits into 1..max; false otherwise
 * (19 digits can exceed INT64_MAX: checked before each step, no overflow). */
bool api_kv_parse_positive(const char *s, size_t n, int64_t max, int64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int digit = s[i] - '0';
        if (v > (INT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    if (v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

/* One entity tag: "123" or W/"123" (weak). The quotes are part of the
 * syntax (RFC 9110 8.8.3): a bare 123 is malformed. */
static bool parse_etag(const char *s, size_t n, int64_t *version, bool *weak)
{
    *weak = n >= 2 && s[0] == 'W' && s[1] == '/';
    if (*weak)
        s += 2, n -= 2;
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return false;
    return api_kv_parse_positive(s + 1, n - 2, INT64_MAX, version);
}

bool api_kv_parse_etags(const char *h, bool weak_matches, api_etag_list_t *out)
{
    memset(out, 0, sizeof *out);
    out->match.versions = out->versions;
    size_t count = 0;
    bool star = false;
    for (const char *p = h; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        size_t len = n;
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        bool weak;
        if (len == 1 && p[0] == '*')
            star = true;
        else if (count == API_MAX_ETAGS || !parse_etag(p, len, &out->versions[count], &weak))
            return false;
        else if (weak && !weak_matches)
            out->versions[count++] = -1; /* no version is negative: never matches */
        else
            count++;
        p += n;
    }
    if (star && count)
        return false;
    out->match.kind = star ? SQLCACHED_MATCH_ANY : SQLCACHED_MATCH_VERSIONS;
    out->match.count = count;
    return star || count > 0;
}

static bool etag_matches(const api_etag_list_t *l, int64_t version)
{
    if (l->match.kind == SQLCACHED_MATCH_ANY)
        return true;
    for (size_t i = 0; i < l->match.count; i++)
        if (l->versions[i] == version)
            return true;
    return false;
}

/* Read If-Match and If-None-Match of a write into pre (pointing into the
 * two lists); false after replying 400. */
static bool read_preconditions(http_request_t *req, api_etag_list_t *im, api_etag_list_t *inm,
                               sqlcached_preconditions_t *pre)
{
    const char *h_im = http_header(req, MHD_HTTP_HEADER_IF_MATCH);
    const char *h_inm = http_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH);
    memset(pre, 0, sizeof *pre);
    if (h_im && !api_kv_parse_etags(h_im, false, im)) {
        http_reply_problem(req, "invalid_argument",
                           "If-Match must be * or a list of entity tags like \"42\"");
        return false;
    }
    if (h_inm && !api_kv_parse_etags(h_inm, true, inm)) {
        http_reply_problem(req, "invalid_argument",
                           "If-None-Match must be * or a list of entity tags like \"42\"");
        return false;
    }
    if (h_im)
        pre->if_match = im->match;
    if (h_inm)
        pre->if_none_match = inm->match;
    return true;
}

/* The text of a write's reply, {"key":K,"<name2>":v2,"<name3>":v3} with
 * v3 null when v3_null (caller frees; NULL when out of memory): rendered
 * without a jansson tree, the write path's replies being most of its
 * allocations otherwise. */
static char *write_reply_text(const http_param_t *key, const char *name2, int64_t v2,
                              const char *name3, int64_t v3, bool v3_null)
{
    json_text_t t;
    json_text_init(&t, key->len + 80);
    json_text_raw(&t, "{", 1);
    json_text_name(&t, "key");
    json_text_string(&t, key->data, key->len);
    json_text_member(&t, name2);
    json_text_int(&t, v2);
    json_text_member(&t, name3);
    if (v3_null)
        json_text_null(&t);
    else
        json_text_int(&t, v3);
    json_text_raw(&t, "}", 1);
    size_t len;
    return json_text_take(&t, &len);
}

/* {"key", "version", "expires_at"}: the reply of PUT and PATCH. */
static char *stored_reply_text(const http_param_t *key, const sqlcached_write_result_t *res)
{
    return write_reply_text(key, "version", res->version, "expires_at", res->expires_at,
                            res->expires_at <= 0);
}

/* ------------------------------------------------------------------------
 * GET /v1/kv/{key}
 * ------------------------------------------------------------------------ */

enum MHD_Result api_kv_get(http_request_t *req)
{
    if (!req->ctx && !http_param_text(req, 0, SQLCACHED_KEY_MAX, "key"))
        return MHD_YES;
    if (api_kv_wants_wait(req)) /* blocking read: api_watch.c */
        return api_kv_get_wait(req);
    return api_kv_get_now(req);
}

enum MHD_Result api_kv_get_now(http_request_t *req)
{
    const char *inm = http_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH);
    api_etag_list_t tags;
    if (inm && !api_kv_parse_etags(inm, true, &tags))
        return http_reply_problem(req, "invalid_argument", "malformed If-None-Match");
    sqlcached_value_t *v = NULL;
    sqlcached_status_t st = sqlcached_kv_get(req->db, req->params[0].data, req->params[0].len, &v);
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no such key");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot read the key");
    if (inm && etag_matches(&tags, v->version))
        return http_reply_not_modified(req, v);
    return http_reply_value(req, v);
}

/* ------------------------------------------------------------------------
 * Writes parked until their group commit (PUT, DELETE, incr)
 *
 * The write is queued for the next group commit and the connection parked
 * meanwhile (http_suspend), so a worker thread keeps serving its other
 * connections and the writes that arrive together share one transaction
 * and one fsync. The writer thread's completion records the outcome and
 * resumes the request; MHD then calls the handler again, which sees
 * req->ctx and answers.
 *
 * Only the writer decides: a queued write is answered after its
 * completion ran, with its outcome (2xx = committed; an error = not
 * stored, and never will be), never before. So the request stays parked
 * when the server stops (park_past_stop); the stop is bounded in the
 * store instead (sqlcached_drain: at the deadline the writer gives up
 * waiting for a lock and fails every write it has not started), so every
 * parked write learns its true outcome by then. Should a handler still be
 * called without an outcome (http_stop's last resort after its grace), it
 * closes the connection without an answer: neither 2xx nor an error could
 * be known to be true.
 *
 * Ownership: whatever the library borrows until the completion (key,
 * body, content type, If-Match lists, result fields) lives in the write
 * state, which is reference-counted: one reference for the request
 * (dropped when it completes: ctx_free) and one for the queued write
 * (dropped by the completion); the last one frees it. A connection that
 * ends before the commit (a client gone, a forced stop) thus leaves the
 * queued write valid memory, and the completion resumes the request only
 * while it is attached (ws->req, under ws->lock).
 * ------------------------------------------------------------------------ */

typedef struct write_state {
    atomic_int refs;
    pthread_mutex_t lock;
    http_request_t *req;       /* under lock; NULL once the request completed */
    sqlcached_put_options_t o; /* PUT; DELETE uses o.pre only */
    api_etag_list_t im, inm;
    sqlcached_write_result_t res; /* PUT, PATCH */
    sqlcached_value_t *taken;     /* DELETE returning the value (owned once done) */
    int64_t value, version;       /* incr */
    sqlcached_status_t st;
    atomic_int done; /* set by the writer thread once the fields above are final */
    char *body;      /* PUT: the request body, taken over from the request */
    size_t body_len;
    size_t klen;
    char bytes[]; /* the key, NUL, the content type (PUT), NUL */
} write_state_t;

static void write_state_release(write_state_t *ws)
{
    if (atomic_fetch_sub(&ws->refs, 1) == 1) {
        pthread_mutex_destroy(&ws->lock);
        sqlcached_value_release(ws->taken);
        free(ws->body);
        free(ws);
    }
}

/* ctx_free: the request completed; the queued write may still run. */
static void write_state_detach(void *ctx)
{
    write_state_t *ws = ctx;
    pthread_mutex_lock(&ws->lock);
    ws->req = NULL;
    pthread_mutex_unlock(&ws->lock);
    write_state_release(ws);
}

/* A new state in req->ctx with a copy of the key and of content_type (may
 * be NULL), or NULL after answering 503. */
static write_state_t *write_state_new(http_request_t *req, const char *content_type)
{
    const http_param_t *key = &req->params[0];
    size_t ctlen = content_type ? strlen(content_type) : 0;
    write_state_t *ws = calloc(1, sizeof *ws + key->len + 1 + ctlen + 1);
    if (!ws || pthread_mutex_init(&ws->lock, NULL) != 0) {
        free(ws);
        http_reply_problem(req, "unavailable", "out of memory");
        return NULL;
    }
    atomic_init(&ws->refs, 1);
    atomic_init(&ws->done, 0);
    ws->req = req;
    memcpy(ws->bytes, key->data, key->len);
    ws->klen = key->len;
    if (content_type)
        ws->o.content_type = memcpy(ws->bytes + key->len + 1, content_type, ctlen + 1);
    req->ctx = ws;
    req->ctx_free = write_state_detach;
    return ws;
}

/* Take a reference for the write about to be queued (released by
 * on_write_done, or by park_write when nothing was queued). */
static write_state_t *write_state_hold(write_state_t *ws)
{
    atomic_fetch_add(&ws->refs, 1);
    return ws;
}

/* On the writer thread, after the whole batch was made visible to readers:
 * record the outcome and wake the parked request, if it is still there. */
static void on_write_done(void *cls, sqlcached_status_t st)
{
    write_state_t *ws = cls;
    ws->st = st;
    atomic_store(&ws->done, 1);
    pthread_mutex_lock(&ws->lock);
    if (ws->req)
        http_resume(ws->req);
    pthread_mutex_unlock(&ws->lock);
    write_state_release(ws);
}

/* After submitting (st: what the async call returned): park until the
 * writer's completion, or answer at once with `reply` when nothing was
 * queued or the completion was quicker than the park. */
static enum MHD_Result park_write(http_request_t *req, sqlcached_status_t st, http_handler_fn reply)
{
    write_state_t *ws = req->ctx;
    if (st != SQLCACHED_OK) {
        write_state_release(ws); /* the queued write's reference: nothing was queued */
        ws->st = st;
        atomic_store(&ws->done, 1);
        return reply(req);
    }
    req->park_past_stop = true;
    if (http_suspend(req))
        return MHD_YES;
    return reply(req);
}

/* The state of a finished write, or NULL when the writer has not decided
 * yet: only when http_stop gave up waiting (see above); the connection is
 * then to be closed without an answer (return MHD_NO). */
static write_state_t *write_finished(http_request_t *req)
{
    write_state_t *ws = req->ctx;
    if (atomic_load(&ws->done))
        return ws;
    log_warn("http",
             "%s of a key still undecided at the stop deadline: connection closed "
             "without an answer",
             req->method);
    return NULL;
}

static enum MHD_Result reply_precondition_failed(http_request_t *req)
{
    return http_reply_problem(req, "precondition_failed",
                              "If-Match or If-None-Match does not hold for the key's "
                              "current version");
}

/* ------------------------------------------------------------------------
 * PUT /v1/kv/{key}
 * ------------------------------------------------------------------------ */

/* Read ?ttl= into ms; false after replying 400. */
static bool put_ttl(http_request_t *req, int64_t *ttl_ms)
{
    char *raw;
    size_t n;
    int rc = http_query(req, "ttl", &raw, &n);
    *ttl_ms = 0;
    int64_t secs = 0;
    bool ok = rc == 0 ||
              (rc == 1 && api_kv_parse_positive(raw, n, SQLCACHED_TTL_MAX_MS / 1000, &secs));
    free(raw);
    if (!ok) {
        http_reply_problem(req, "invalid_argument",
                           "ttl must be a positive whole number of seconds, at most %lld",
                           (long long)(SQLCACHED_TTL_MAX_MS / 1000));
        return false;
    }
    *ttl_ms = secs * 1000;
    return true;
}

/* Read ?sliding= (true or false) into o->sliding, with ?ttl= required for
 * true; false after replying 400. */
static bool put_sliding(http_request_t *req, sqlcached_put_options_t *o)
{
    char *raw;
    size_t n;
    int rc = http_query(req, "sliding", &raw, &n);
    bool yes = rc == 1 && n == 4 && memcmp(raw, "true", 4) == 0;
    bool ok = rc == 0 || yes || (rc == 1 && n == 5 && memcmp(raw, "false", 5) == 0);
    free(raw);
    if (!ok) {
        http_reply_problem(req, "invalid_argument", "sliding must be true or false");
        return false;
    }
    if (yes && o->ttl_ms == 0) {
        http_reply_problem(req, "invalid_argument", "sliding=true needs a ttl");
        return false;
    }
    o->sliding = yes;
    return true;
}

static enum MHD_Result put_reply(http_request_t *req)
{
    write_state_t *ws = write_finished(req);
    if (!ws)
        return MHD_NO;
    sqlcached_status_t st = ws->st;
    const http_param_t *key = &req->params[0];
    if (st == SQLCACHED_PRECONDITION_FAILED)
        return reply_precondition_failed(req);
    if (st == SQLCACHED_INVALID_ARGUMENT) /* key and ttl were checked above */
        return http_reply_problem(req, "invalid_argument",
                                  "Content-Type must be 1 to %d printable ASCII characters",
                                  SQLCACHED_CONTENT_TYPE_MAX);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the value was not stored");
    return http_reply_json_text(req, ws->res.created ? MHD_HTTP_CREATED : MHD_HTTP_OK,
                                stored_reply_text(key, &ws->res), ws->res.version);
}

enum MHD_Result api_kv_put(http_request_t *req)
{
    if (req->ctx) /* called again after http_resume */
        return put_reply(req);
    if (!http_param_text(req, 0, SQLCACHED_KEY_MAX, "key"))
        return MHD_YES;
    const char *ct = http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && !ct[0])
        ct = NULL; /* empty: the default, as when absent */
    write_state_t *ws = write_state_new(req, ct);
    if (!ws)
        return MHD_YES;
    if (!put_ttl(req, &ws->o.ttl_ms) || !put_sliding(req, &ws->o) ||
        !read_preconditions(req, &ws->im, &ws->inm, &ws->o.pre))
        return MHD_YES;
    ws->body = req->body; /* taken over: the queued write may outlive the request */
    ws->body_len = req->body_len;
    req->body = NULL;
    req->body_len = req->body_cap = 0;
    return park_write(req,
                      sqlcached_kv_put_async(req->db, ws->bytes, ws->klen, ws->body, ws->body_len,
                                             &ws->o, &ws->res, on_write_done, write_state_hold(ws)),
                      put_reply);
}

/* ------------------------------------------------------------------------
 * DELETE /v1/kv/{key}
 * ------------------------------------------------------------------------ */

/* Does the Prefer header (RFC 7240) ask for return=representation? */
static bool prefers_representation(http_request_t *req)
{
    const char *h = http_header(req, "Prefer");
    static const char want[] = "return=representation";
    for (const char *p = h; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",;");
        size_t len = n;
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == sizeof want - 1 && strncasecmp(p, want, len) == 0)
            return true;
        p += strcspn(p, ","); /* skip this preference's parameters */
    }
    return false;
}

static enum MHD_Result delete_reply(http_request_t *req)
{
    write_state_t *ws = write_finished(req);
    if (!ws)
        return MHD_NO;
    if (ws->st == SQLCACHED_OK && ws->taken) {
        sqlcached_value_t *v = ws->taken;
        ws->taken = NULL;
        return http_reply_value_header(req, v, "Preference-Applied", "return=representation");
    }
    if (ws->st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no such key");
    if (ws->st == SQLCACHED_PRECONDITION_FAILED)
        return reply_precondition_failed(req);
    if (ws->st != SQLCACHED_OK)
        return http_reply_status(req, ws->st, "the key was not deleted");
    return http_reply_empty(req, MHD_HTTP_NO_CONTENT, -1);
}

enum MHD_Result api_kv_delete(http_request_t *req)
{
    if (req->ctx) /* called again after http_resume */
        return delete_reply(req);
    if (!http_param_text(req, 0, SQLCACHED_KEY_MAX, "key"))
        return MHD_YES;
    write_state_t *ws = write_state_new(req, NULL);
    if (!ws || !read_preconditions(req, &ws->im, &ws->inm, &ws->o.pre))
        return MHD_YES;
    if (prefers_representation(req))
        return park_write(req,
                          sqlcached_kv_take_async(req->db, ws->bytes, ws->klen, &ws->o.pre,
                                                  &ws->taken, on_write_done, write_state_hold(ws)),
                          delete_reply);
    return park_write(req,
                      sqlcached_kv_delete_async(req->db, ws->bytes, ws->klen, &ws->o.pre,
                                                on_write_done, write_state_hold(ws)),
                      delete_reply);
}

/* ------------------------------------------------------------------------
 * PATCH /v1/kv/{key}   Content-Type: application/merge-patch+json
 * ------------------------------------------------------------------------ */

/* Is the request's media type (parameters aside) application/merge-patch+json? */
static bool is_merge_patch(const char *ct)
{
    static const char want[] = "application/merge-patch+json";
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == sizeof want - 1 && strncasecmp(ct, want, n) == 0;
}

static enum MHD_Result patch_reply(http_request_t *req)
{
    write_state_t *ws = write_finished(req);
    if (!ws)
        return MHD_NO;
    sqlcached_status_t st = ws->st;
    if (st == SQLCACHED_PRECONDITION_FAILED)
        return reply_precondition_failed(req);
    if (st == SQLCACHED_NOT_JSON)
        return http_reply_problem(req, "not_json", "the stored value is not a JSON object");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the value was not patched");
    return http_reply_json_text(req, ws->res.created ? MHD_HTTP_CREATED : MHD_HTTP_OK,
                                stored_reply_text(&req->params[0], &ws->res), ws->res.version);
}

enum MHD_Result api_kv_patch(http_request_t *req)
{
    if (req->ctx) /* called again after http_resume */
        return patch_reply(req);
    if (!http_param_text(req, 0, SQLCACHED_KEY_MAX, "key"))
        return MHD_YES;
    if (!is_merge_patch(http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return http_reply_problem(req, "unsupported_media_type",
                                  "PATCH takes Content-Type: application/merge-patch+json");
    write_state_t *ws = write_state_new(req, NULL);
    if (!ws)
        return MHD_YES;
    if (!put_ttl(req, &ws->o.ttl_ms) || !put_sliding(req, &ws->o) ||
        !read_preconditions(req, &ws->im, &ws->inm, &ws->o.pre))
        return MHD_YES;
    sqlcached_status_t st = sqlcached_kv_patch_async(req->db, ws->bytes, ws->klen, req->body,
                                                     req->body_len, &ws->o, &ws->res, on_write_done,
                                                     write_state_hold(ws));
    if (st == SQLCACHED_INVALID_ARGUMENT) { /* key, ttl and conditions were checked above */
        write_state_release(ws);            /* nothing was queued */
        return http_reply_problem(req, "invalid_json",
                                  "the body must be JSON nested at most %d levels deep",
                                  SQLCACHED_PATCH_DEPTH_MAX);
    }
    return park_write(req, st, patch_reply);
}

/* ------------------------------------------------------------------------
 * POST /v1/kv/{key}/incr   body {"by": N} (optional)
 * ------------------------------------------------------------------------ */

static enum MHD_Result incr_reply(http_request_t *req)
{
    write_state_t *ws = write_finished(req);
    if (!ws)
        return MHD_NO;
    if (ws->st == SQLCACHED_NOT_INTEGER)
        return http_reply_problem(req, "not_integer",
                                  "the value is not a base-10 64-bit integer, or would overflow");
    if (ws->st != SQLCACHED_OK)
        return http_reply_status(req, ws->st, "the value was not changed");
    const http_param_t *key = &req->params[0];
    return http_reply_json_text(req, MHD_HTTP_OK,
                                write_reply_text(key, "value", ws->value, "version", ws->version,
                                                 false),
                                ws->version);
}

enum MHD_Result api_kv_incr(http_request_t *req)
{
    if (req->ctx) /* called again after http_resume */
        return incr_reply(req);
    if (!http_param_text(req, 0, SQLCACHED_KEY_MAX, "key"))
        return MHD_YES;
    static const char *const members[] = {"by", NULL};
    json_t *body = http_body_object(req, true, members);
    int64_t n;
    bool ok = body && http_json_int(req, body, "by", true, 1, INT64_MIN, INT64_MAX, &n);
    json_decref(body);
    if (!ok)
        return MHD_YES;
    write_state_t *ws = write_state_new(req, NULL);
    if (!ws)
        return MHD_YES;
    return park_write(req,
                      sqlcached_kv_incr_async(req->db, ws->bytes, ws->klen, n, &ws->value,
                                              &ws->version, on_write_done, write_state_hold(ws)),
                      incr_reply);
}

/* ------------------------------------------------------------------------
 * GET /v1/kv?prefix=P&limit=N&after=K
 * ------------------------------------------------------------------------ */

static bool list_limit(http_request_t *req, unsigned *limit)
{
    char *raw;
    size_t n;
    int rc = http_query(req, "limit", &raw, &n);
    int64_t v = 100;
    bool ok = rc == 0 || (rc == 1 && api_kv_parse_positive(raw, n, SQLCACHED_LIST_LIMIT_MAX, &v));
    free(raw);
    if (!ok)
        http_reply_problem(req, "invalid_argument", "limit must be a whole number from 1 to %d",
                           SQLCACHED_LIST_LIMIT_MAX);
    *limit = (unsigned)v;
    return ok;
}

/* Read a key-like query argument (prefix, after); false after replying. */
static bool list_arg(http_request_t *req, const char *name, char **out, size_t *len)
{
    int rc = http_query(req, name, out, len);
    if (rc < 0 || *len > SQLCACHED_KEY_MAX) {
        free(*out);
        *out = NULL;
        http_reply_problem(req, "invalid_argument", "%s must be percent-encoded, at most %d bytes",
                           name, SQLCACHED_KEY_MAX);
        return false;
    }
    return true;
}

static json_t *page_json(const sqlcached_keys_t *page)
{
    json_t *keys = json_array();
    json_t *next = json_null();
    for (size_t i = 0; keys && i < page->count; i++) {
        json_t *k = json_stringn(page->keys[i], page->lens[i]);
        if (k)
            json_array_append_new(keys, k); /* non-UTF-8 keys (library use) are skipped */
    }
    if (page->has_more && page->count > 0) {
        json_decref(next);
        next = json_stringn(page->keys[page->count - 1], page->lens[page->count - 1]);
    }
    return json_pack("{s:o, s:o}", "keys", keys, "next", next ? next : json_null());
}

enum MHD_Result api_kv_list(http_request_t *req)
{
    char *prefix = NULL, *after = NULL;
    size_t plen = 0, alen = 0;
    unsigned limit;
    if (!list_limit(req, &limit) || !list_arg(req, "prefix", &prefix, &plen) ||
        !list_arg(req, "after", &after, &alen)) {
        free(prefix);
        return MHD_YES;
    }
    sqlcached_keys_t *page = NULL;
    sqlcached_status_t st = sqlcached_kv_list(req->db, prefix, plen, after, alen, limit, &page);
    free(prefix);
    free(after);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot list keys");
    json_t *body = page_json(page);
    sqlcached_keys_free(page);
    return http_reply_json(req, MHD_HTTP_OK, body);
}
