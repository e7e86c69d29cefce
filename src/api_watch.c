/*
 * api_watch.c - HTTP handlers of watches: GET /v1/watch (Server-Sent
 * Events) and the blocking form of GET /v1/kv/{key} (?wait=&index=).
 * docs/watch.md describes both; the library's watch (sqlcached_watch_*)
 * does the reading.
 *
 * No thread per watcher. A stream is a response of unknown length
 * (http_reply_stream): when its watch has nothing to send, the connection
 * is suspended, and the watch's wake (a change of its prefix, a keep-alive
 * tick) resumes it. A blocking GET parks its request (http_suspend) and is
 * resumed the same way, or at its deadline.
 *
 * Memory per stream: its sse_t with a carry buffer of CARRY_MAX bytes (the
 * one event that did not fit in MHD's buffer), the library's watch (a
 * cursor and the prefix), and MHD's connection; whatever the lag, events
 * are read from the change log as MHD takes them, never queued. A client
 * that does not read stays where it is; when its cursor leaves the
 * history the stream ends, and its reconnection gets 410.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"

#define CARRY_MAX 4096          /* > one event: a key of 512 bytes escaped, framing */
#define KEEPALIVE_AFTER_MS 5000 /* a comment when nothing was written for that long */
#define WAIT_MAX_S 300

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A query argument as an integer in [min, max]: 1 found, 0 absent, -1
 * invalid (400 answered). */
static int query_int(http_request_t *req, const char *name, int64_t min, int64_t max, int64_t *out)
{
    char *s = NULL;
    size_t n = 0;
    int found = http_query(req, name, &s, &n);
    if (found == 0)
        return 0;
    int64_t v = 0;
    bool ok = found > 0 && n > 0 && n <= 19;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        v = v * 10 + (s[i] - '0');
    }
    free(s);
    if (!ok || v < min || v > max) {
        http_reply_problem(req, "invalid_argument", "%s must be an integer in %lld..%lld", name,
                           (long long)min, (long long)max);
        return -1;
    }
    *out = v;
    return 1;
}

static enum MHD_Result reply_truncated(http_request_t *req, int64_t oldest)
{
    json_t *extra = json_pack("{s:I}", "oldest", (json_int_t)oldest);
    return http_reply_problem_with(req, "history_truncated", extra,
                                   "changes after this version are no longer kept; "
                                   "list again and watch from the listing");
}

static enum MHD_Result reply_open_failed(http_request_t *req, sqlcached_status_t st, int64_t oldest)
{
    if (st == SQLCACHED_HISTORY_TRUNCATED)
        return reply_truncated(req, oldest);
    if (st == SQLCACHED_UNAVAILABLE)
        return http_reply_problem(req, "unavailable", "too many watchers (--max-watchers)");
    return http_reply_status(req, st, "cannot watch");
}

/* ------------------------------------------------------------------------
 * GET /v1/watch?prefix=P&since=V
 * ------------------------------------------------------------------------ */

typedef struct sse {
    sqlcached_watch_t *watch;
    http_stream_t *stream; /* the wake's target */
    char carry[CARRY_MAX];
    size_t carry_len, carry_off;
    bool started, over;
    int64_t last_write; /* monotonic ms */
} sse_t;

static void sse_wake(void *cls)
{
    sse_t *s = cls;
    http_stream_wake(s->stream);
}

static void sse_free(void *cls)
{
    sse_t *s = cls;
    sqlcached_watch_close(s->watch); /* no wake after it */
    free(s);
}

static const char *kind_name(char kind)
{
    return kind == SQLCACHED_CHANGE_DELETE   ? "delete"
           : kind == SQLCACHED_CHANGE_EXPIRE ? "expire"
                                             : "put";
}

/* One event into s->carry. */
static void sse_format(sse_t *s, const sqlcached_change_t *c)
{
    json_t *key = json_stringn(c->key, c->key_len); /* NULL: not UTF-8 */
    json_t *data = json_pack("{s:o,s:I,s:o}", "key", key ? key : json_null(), "version",
                             (json_int_t)c->version, "expires_at",
                             c->expires_at > 0 ? json_integer(c->expires_at) : json_null());
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    int n = snprintf(s->carry, sizeof s->carry, "id: %lld\nevent: %s\ndata: %s\n\n",
                     (long long)c->version, kind_name(c->kind), text ? text : "{}");
    free(text);
    s->carry_len = n > 0 && (size_t)n < sizeof s->carry ? (size_t)n : 0;
    s->carry_off = 0;
}

/* Copy the carry into buf as far as it fits; true when all of it went. */
static bool sse_flush(sse_t *s, char *buf, size_t max, size_t *used)
{
    size_t n = s->carry_len - s->carry_off;
    if (n > max - *used)
        n = max - *used;
    memcpy(buf + *used, s->carry + s->carry_off, n);
    *used += n;
    s->carry_off += n;
    return s->carry_off == s->carry_len;
}

static void sse_comment(sse_t *s, const char *text)
{
    int n = snprintf(s->carry, sizeof s->carry, ": %s\n\n", text);
    s->carry_len = n > 0 ? (size_t)n : 0;
    s->carry_off = 0;
}

static ssize_t sse_fill(void *cls, char *buf, size_t max, bool stopping)
{
    sse_t *s = cls;
    if (stopping)
        return -1;
    size_t used = 0;
    if (!s->started) {
        s->started = true;
        sse_comment(s, "watching"); /* the headers go out now */
    }
    for (int i = 0; i < 64 && used < max; i++) {
        if (s->carry_off < s->carry_len && !sse_flush(s, buf, max, &used))
            break;
        if (s->over)
            break;
        sqlcached_change_t c;
        size_t n = 0;
        sqlcached_status_t st = sqlcached_watch_next(s->watch, &c, 1, &n);
        if (st != SQLCACHED_OK)
            s->over = true; /* truncated or failed: the client reconnects */
        if (st != SQLCACHED_OK || n == 0)
            break;
        sse_format(s, &c);
    }
    int64_t now = mono_ms();
    if (used == 0 && !s->over && now - s->last_write >= KEEPALIVE_AFTER_MS) {
        sse_comment(s, "keep-alive");
        sse_flush(s, buf, max, &used);
    }
    if (used)
        s->last_write = now;
    return used ? (ssize_t)used : s->over && s->carry_off == s->carry_len ? -1 : 0;
}

/* since from Last-Event-ID, else ?since; -1 when neither. */
static bool watch_since(http_request_t *req, int64_t *since)
{
    *since = -1;
    const char *last = http_header(req, "Last-Event-ID");
    if (last) {
        char *end = NULL;
        long long v = strtoll(last, &end, 10);
        if (!*last || *end || v < 0 || last[0] == '-' || last[0] == '+' || last[0] == ' ') {
            http_reply_problem(req, "invalid_argument", "Last-Event-ID must be a version");
            return false;
        }
        *since = v;
        return true;
    }
    return query_int(req, "since", 0, INT64_MAX / 2, since) >= 0;
}

enum MHD_Result api_watch(http_request_t *req)
{
    char *prefix = NULL;
    size_t plen = 0;
    int found = http_query(req, "prefix", &prefix, &plen);
    if (found < 0 || (found > 0 && (plen > SQLCACHED_KEY_MAX || !http_utf8_ok(prefix, plen)))) {
        free(prefix);
        return http_reply_problem(req, "invalid_argument", "bad prefix");
    }
    int64_t since;
    if (!watch_since(req, &since)) {
        free(prefix);
        return MHD_YES;
    }
    sse_t *s = calloc(1, sizeof *s);
    http_stream_t *stream = s ? http_stream_new(req) : NULL;
    if (!stream) {
        free(s);
        free(prefix);
        return http_reply_problem(req, "unavailable", "out of memory");
    }
    s->stream = stream;
    s->last_write = mono_ms();
    int64_t oldest = 0;
    sqlcached_status_t st = sqlcached_watch_open(req->db, prefix, found > 0 ? plen : 0, since, 0,
                                                 sse_wake, s, &s->watch, &oldest);
    free(prefix);
    if (st != SQLCACHED_OK) {
        http_stream_free(stream);
        free(s);
        return reply_open_failed(req, st, oldest);
    }
    return http_reply_stream(req, stream, "text/event-stream", sse_fill, s, sse_free);
}

/* ------------------------------------------------------------------------
 * GET /v1/kv/{key}?wait=S&index=V
 * ------------------------------------------------------------------------ */

typedef struct kv_wait {
    sqlcached_watch_t *watch;
    int64_t index;
} kv_wait_t;

static void kv_wait_wake(void *cls)
{
    http_resume(cls);
}

static void kv_wait_free(void *ctx)
{
    kv_wait_t *w = ctx;
    sqlcached_watch_close(w->watch);
    free(w);
}

/* The key's version now (0: absent); false after answering a failure. */
static bool key_version(http_request_t *req, int64_t *version)
{
    sqlcached_value_t *v = NULL;
    sqlcached_status_t st = sqlcached_kv_get(req->db, req->params[0].data, req->params[0].len, &v);
    *version = st == SQLCACHED_OK ? v->version : 0;
    sqlcached_value_release(v);
    if (st != SQLCACHED_OK && st != SQLCACHED_NOT_FOUND) {
        http_reply_status(req, st, "cannot read the key");
        return false;
    }
    return true;
}

/* Did the watch see a change of the key itself, newer than the version
 * the client has? (drains what came; the watch may have opened before
 * the dispatcher read a change that the key's version already shows) */
static bool key_changed(http_request_t *req, sqlcached_watch_t *w, int64_t index)
{
    const http_param_t *k = &req->params[0];
    sqlcached_change_t c[4];
    size_t n = 0;
    bool changed = false;
    for (int round = 0; round < 64; round++) {
        if (sqlcached_watch_next(w, c, 4, &n) != SQLCACHED_OK)
            return true; /* cannot tell: answer the state now */
        for (size_t i = 0; i < n; i++)
            changed |= c[i].key_len == k->len && memcmp(c[i].key, k->data, k->len) == 0 &&
                       c[i].version > index;
        if (n < 4)
            break;
    }
    return changed;
}

/* Answer the key's state now, the watch closed first (no wake after). */
static enum MHD_Result kv_wait_answer(http_request_t *req)
{
    kv_wait_t *w = req->ctx;
    if (w) {
        sqlcached_watch_close(w->watch);
        w->watch = NULL;
    }
    return api_kv_get_now(req);
}

/* Park the waiting read, or answer it if its key changed, its time is
 * up or the server stops. A wake that came before the park (a change of
 * another key under the prefix, or one the key's version already showed)
 * is looked at here too. */
static enum MHD_Result kv_wait_park(http_request_t *req)
{
    kv_wait_t *w = req->ctx;
    for (int i = 0; i < 16; i++) {
        if (req->aborted || sqlcached_watch_timed_out(w->watch) ||
            key_changed(req, w->watch, w->index))
            return kv_wait_answer(req);
        if (http_suspend(req))
            return MHD_YES;
    }
    return kv_wait_answer(req); /* woken over and over: answer the state now */
}

bool api_kv_wants_wait(http_request_t *req)
{
    char *s = NULL;
    size_t n = 0;
    int found = http_query(req, "wait", &s, &n);
    free(s);
    return found != 0 || req->ctx;
}

enum MHD_Result api_kv_get_wait(http_request_t *req)
{
    kv_wait_t *w = req->ctx;
    if (w) /* resumed: a change under the key's prefix, the deadline, a stop */
        return kv_wait_park(req);
    int64_t wait_s = 0, index = 0;
    if (query_int(req, "wait", 1, WAIT_MAX_S, &wait_s) < 0)
        return MHD_YES;
    int has_index = query_int(req, "index", 0, INT64_MAX / 2, &index);
    if (has_index < 0)
        return MHD_YES;
    w = calloc(1, sizeof *w);
    if (!w)
        return http_reply_problem(req, "unavailable", "out of memory");
    int64_t oldest = 0;
    const http_param_t *k = &req->params[0];
    sqlcached_status_t st = sqlcached_watch_open(req->db, k->data, k->len, -1, wait_s * 1000,
                                                 kv_wait_wake, req, &w->watch, &oldest);
    if (st != SQLCACHED_OK) {
        free(w);
        return reply_open_failed(req, st, oldest);
    }
    req->ctx = w;
    req->ctx_free = kv_wait_free;
    int64_t current = 0; /* read after the watch opened: no change falls between */
    if (!key_version(req, &current))
        return MHD_YES;
    w->index = has_index ? index : current;
    if (current != w->index)
        return kv_wait_answer(req);
    return kv_wait_park(req);
}

/* ------------------------------------------------------------------------
 * Figures: /v1/stats "watch" and /metrics
 * ------------------------------------------------------------------------ */

json_t *api_watch_json(sqlcached_t *db)
{
    sqlcached_watch_stats_t s;
    sqlcached_watch_stats(db, &s);
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "watchers", (json_int_t)s.watchers, "events_sent",
                     (json_int_t)s.events_sent, "truncated", (json_int_t)s.truncated,
                     "history_size", (json_int_t)s.history_size, "history_oldest",
                     (json_int_t)s.history_oldest, "history_newest", (json_int_t)s.history_newest);
}

char *api_watch_prometheus(char *text, sqlcached_t *db)
{
    if (!text)
        return NULL;
    sqlcached_watch_stats_t s;
    sqlcached_watch_stats(db, &s);
    char add[1400];
    int n = snprintf(
        add, sizeof add,
        "# HELP sqlcached_watchers Watch streams and blocking GETs open.\n"
        "# TYPE sqlcached_watchers gauge\nsqlcached_watchers %llu\n"
        "# HELP sqlcached_watch_events_sent_total Changes handed to watchers.\n"
        "# TYPE sqlcached_watch_events_sent_total counter\n"
        "sqlcached_watch_events_sent_total %llu\n"
        "# HELP sqlcached_watch_truncated_total Watches refused or ended: history truncated "
        "(410).\n"
        "# TYPE sqlcached_watch_truncated_total counter\nsqlcached_watch_truncated_total %llu\n"
        "# HELP sqlcached_watch_history_size Changes kept in the change log.\n"
        "# TYPE sqlcached_watch_history_size gauge\nsqlcached_watch_history_size %lld\n"
        "# HELP sqlcached_watch_history_oldest_version The oldest version kept.\n"
        "# TYPE sqlcached_watch_history_oldest_version gauge\n"
        "sqlcached_watch_history_oldest_version %lld\n",
        (unsigned long long)s.watchers, (unsigned long long)s.events_sent,
        (unsigned long long)s.truncated, (long long)s.history_size, (long long)s.history_oldest);
    size_t len = strlen(text);
    char *out = n > 0 ? realloc(text, len + (size_t)n + 1) : NULL;
    if (!out) {
        free(text);
        return NULL;
    }
    memcpy(out + len, add, (size_t)n + 1);
    return out;
}
