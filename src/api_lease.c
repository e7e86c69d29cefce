/*
 * api_lease.c - HTTP handlers of leases (/v1/leases/{name}...).
 *
 * Lease names come from the path segment after percent-decoding (1..256
 * bytes of UTF-8 without NUL); bodies are JSON objects whose members are
 * checked strictly (unknown, missing, null, wrong type or out of range:
 * 400 invalid_argument).
 *
 * Waiting acquirers never hold a worker thread: the handler queues a
 * waiter (sqlcached_lease_acquire_async) and parks the request
 * (http_suspend). The library calls on_wake() from the thread that decides
 * the outcome (a release, the timer at a deadline or an expiry), which
 * resumes the request; MHD then calls the handler again and it answers
 * from sqlcached_lease_wait_end(). The waiter is in the request's ctx
 * until then, so a request that completes some other way still frees it.
 *
 * A lease granted to a waiter whose client is gone goes back at once
 * (sqlcached_lease_give_back), never held until its ttl_ms with nobody to use
 * it: when the request completes before the handler collected the grant,
 * and when MHD reports that the 200 carrying it was not sent in full
 * (ctx_undelivered: the connection failed, e.g. the client reset it while
 * parked). A client that only half-closed still gets its answer (see the
 * parking comment of http.c). What TCP cannot tell: a client that closed
 * its socket (FIN) looks like a half-closed one until the answer is
 * written, and that write succeeds; such a lease lives until its ttl_ms.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

typedef struct lease_body {
    const char *owner;
    size_t owner_len;
    int64_t ttl_ms;
    int64_t wait_ms;
} lease_body_t;

/* ------------------------------------------------------------------------
 * Request parsing
 * ------------------------------------------------------------------------ */

/* Check the name and parse the body; NULL after replying 400. The body is
 * returned (b->owner points into it): the caller decrefs it. */
static json_t *parse(http_request_t *req, const char *const allowed[], lease_body_t *b)
{
    if (!http_param_text(req, 0, SQLCACHED_LEASE_NAME_MAX, "lease name"))
        return NULL;
    json_t *obj = http_body_object(req, false, allowed);
    if (!obj)
        return NULL;
    bool ok =
        http_json_string(req, obj, "owner", SQLCACHED_LEASE_OWNER_MAX, &b->owner, &b->owner_len);
    for (int i = 1; ok && allowed[i]; i++) {
        if (strcmp(allowed[i], "ttl_ms") == 0)
            ok = http_json_int(req, obj, "ttl_ms", false, 0, SQLCACHED_LEASE_TTL_MIN_MS,
                               SQLCACHED_LEASE_TTL_MAX_MS, &b->ttl_ms);
        else if (strcmp(allowed[i], "wait_ms") == 0)
            ok = http_json_int(req, obj, "wait_ms", true, 0, 0, SQLCACHED_LEASE_WAIT_MAX_MS,
                               &b->wait_ms);
    }
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

static enum MHD_Result reply_lease(http_request_t *req, const sqlcached_lease_t *l)
{
    json_t *obj = json_pack("{s:s%, s:s%, s:I, s:I, s:I}", "name", l->name, l->name_len, "owner",
                            l->owner, l->owner_len, "token", (json_int_t)l->token, "count",
                            (json_int_t)l->count, "expires_at", (json_int_t)l->expires_at);
    return http_reply_json(req, MHD_HTTP_OK, obj);
}

/* 409 lease_held with the time left on the holder's lease. */
static enum MHD_Result reply_held(http_request_t *req, const sqlcached_lease_t *holder)
{
    int64_t left = holder->expires_at - sqlcached_now_ms(req->db);
    json_t *extra = json_pack("{s:I}", "retry_after_ms", (json_int_t)(left > 0 ? left : 0));
    return http_reply_problem_with(req, "lease_held", extra, "the lease is held by another owner");
}

static enum MHD_Result reply_acquired(http_request_t *req, sqlcached_status_t st,
                                      const sqlcached_lease_t *l)
{
    if (st == SQLCACHED_OK)
        return reply_lease(req, l);
    if (st == SQLCACHED_LEASE_HELD)
        return reply_held(req, l);
    return http_reply_status(req, st, "the lease was not acquired");
}

/* ------------------------------------------------------------------------
 * POST /v1/leases/{name}/acquire   {"owner", "ttl_ms", "wait_ms"}
 * ------------------------------------------------------------------------ */

/* A waiting acquire's state: req->ctx from the park until the request
 * completes (freed by acquire_free). */
typedef struct acquire_ctx {
    sqlcached_t *db;
    sqlcached_lease_wait_t *waiter; /* until its outcome is collected */
    bool granted;                   /* `lease` was granted and answered */
    sqlcached_lease_t lease;
} acquire_ctx_t;

static void on_wake(void *arg, sqlcached_status_t outcome)
{
    (void)outcome; /* collected by finish_wait() */
    http_resume(arg);
}

/* Give a lease granted to a client that will never use it back. */
static void give_back(sqlcached_t *db, const sqlcached_lease_t *l)
{
    sqlcached_status_t st = sqlcached_lease_give_back(db, l);
    if (st != SQLCACHED_OK && st != SQLCACHED_NOT_OWNER)
        log_warn("lease", "a lease granted to a client that is gone was not given back: %s",
                 sqlcached_status_name(st));
}

/* ctx_free: a waiter still here was never answered: a grant goes back. */
static void acquire_free(void *ctx)
{
    acquire_ctx_t *a = ctx;
    sqlcached_lease_t l;
    if (a->waiter && sqlcached_lease_wait_end(a->waiter, &l) == SQLCACHED_OK)
        give_back(a->db, &l);
    free(a);
}

/* ctx_undelivered: the 200 granting the lease did not reach the client. */
static void acquire_undelivered(void *ctx)
{
    acquire_ctx_t *a = ctx;
    if (a->granted)
        give_back(a->db, &a->lease);
    a->granted = false;
}

/* The parked request was resumed (or could not park): answer. */
static enum MHD_Result finish_wait(http_request_t *req)
{
    acquire_ctx_t *a = req->ctx;
    sqlcached_lease_t l;
    sqlcached_status_t st = sqlcached_lease_wait_end(a->waiter, &l);
    a->waiter = NULL;
    if (st == SQLCACHED_LEASE_HELD && req->aborted)
        return http_reply_problem(req, "unavailable", "the server is stopping");
    enum MHD_Result r = reply_acquired(req, st, &l);
    if (st == SQLCACHED_OK && req->status == MHD_HTTP_OK) {
        a->granted = true; /* until MHD reports the answer sent */
        a->lease = l;
    } else if (st == SQLCACHED_OK) {
        give_back(req->db, &l); /* answered with an error (out of memory) */
    }
    return r;
}

enum MHD_Result api_lease_acquire(http_request_t *req)
{
    if (req->ctx) /* called again after http_resume */
        return finish_wait(req);
    static const char *const allowed[] = {"owner", "ttl_ms", "wait_ms", NULL};
    lease_body_t b = {0};
    json_t *body = parse(req, allowed, &b);
    if (!body)
        return MHD_YES;
    acquire_ctx_t *a = b.wait_ms > 0 ? calloc(1, sizeof *a) : NULL;
    if (b.wait_ms > 0 && !a) {
        json_decref(body);
        return http_reply_problem(req, "unavailable", "out of memory");
    }
    const http_param_t *name = &req->params[0];
    sqlcached_lease_t l;
    sqlcached_lease_wait_t *w = NULL;
    sqlcached_status_t st = sqlcached_lease_acquire_async(req->db, name->data, name->len, b.owner,
                                                          b.owner_len, b.ttl_ms, b.wait_ms, &l,
                                                          on_wake, req, &w);
    json_decref(body);
    if (st == SQLCACHED_OK && w) {
        a->db = req->db;
        a->waiter = w;
        req->ctx = a;
        req->ctx_free = acquire_free;
        req->ctx_undelivered = acquire_undelivered;
        if (http_suspend(req))
            return MHD_YES;
        return finish_wait(req);
    }
    free(a);
    return reply_acquired(req, st, &l);
}

/* ------------------------------------------------------------------------
 * POST /v1/leases/{name}/renew     {"owner", "ttl_ms"}
 * POST /v1/leases/{name}/release   {"owner"}
 * GET  /v1/leases/{name}
 * ------------------------------------------------------------------------ */

enum MHD_Result api_lease_renew(http_request_t *req)
{
    static const char *const allowed[] = {"owner", "ttl_ms", NULL};
    lease_body_t b = {0};
    json_t *body = parse(req, allowed, &b);
    if (!body)
        return MHD_YES;
    const http_param_t *name = &req->params[0];
    sqlcached_lease_t l;
    sqlcached_status_t st =
        sqlcached_lease_renew(req->db, name->data, name->len, b.owner, b.owner_len, b.ttl_ms, &l);
    json_decref(body);
    if (st == SQLCACHED_NOT_OWNER)
        return http_reply_problem(req, "not_owner",
                                  "the lease is free, expired or held by another owner");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the lease was not renewed");
    return reply_lease(req, &l);
}

enum MHD_Result api_lease_release(http_request_t *req)
{
    static const char *const allowed[] = {"owner", NULL};
    lease_body_t b = {0};
    json_t *body = parse(req, allowed, &b);
    if (!body)
        return MHD_YES;
    const http_param_t *name = &req->params[0];
    sqlcached_lease_t l;
    sqlcached_status_t st =
        sqlcached_lease_release(req->db, name->data, name->len, b.owner, b.owner_len, &l);
    json_decref(body);
    if (st == SQLCACHED_NOT_OWNER)
        return http_reply_problem(req, "not_owner",
                                  "the lease is free, expired or held by another owner");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the lease was not released");
    json_t *obj =
        json_pack("{s:s%, s:I}", "name", name->data, name->len, "count", (json_int_t)l.count);
    return http_reply_json(req, MHD_HTTP_OK, obj);
}

enum MHD_Result api_lease_get(http_request_t *req)
{
    if (!http_param_text(req, 0, SQLCACHED_LEASE_NAME_MAX, "lease name"))
        return MHD_YES;
    const http_param_t *name = &req->params[0];
    sqlcached_lease_t l;
    sqlcached_status_t st = sqlcached_lease_get(req->db, name->data, name->len, &l);
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no live lease of this name");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot read the lease");
    return reply_lease(req, &l);
}
