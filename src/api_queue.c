/*
 * api_queue.c - HTTP handlers of the delay queue (/v1/queues/{queue}...).
 *
 * Queue names and job ids come from path segments after percent-decoding
 * (1..256 and 1..128 bytes of UTF-8 without NUL); bodies are JSON objects
 * whose members are checked strictly (unknown, missing, null, wrong type
 * or out of range: 400 invalid_argument). A payload is any JSON value,
 * stored as its compact text (bounded by --max-body with the rest of the
 * body) and answered as the JSON it was.
 *
 * A claim with wait_ms never holds a worker thread: the handler starts
 * sqlcached_queue_claim_async() and parks the request (http_suspend); the
 * library's completion resumes it and MHD calls the handler again, which
 * answers from the claim's state. That state is reference-counted (the
 * request and the claim in flight): a request that ends first (client
 * gone, server stopping: answered 503) leaves it valid for the completion,
 * which then frees the jobs it claimed. Such jobs (and jobs whose 200 did
 * not reach the client) are not lost: they are due again when their
 * visibility ends (at-least-once delivery).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

static const char *state_name(sqlcached_job_state_t s)
{
    return s == SQLCACHED_JOB_DELAYED   ? "delayed"
           : s == SQLCACHED_JOB_CLAIMED ? "claimed"
                                        : "ready";
}

/* The job as JSON (claim_token only when asked); NULL when out of memory. */
static json_t *job_json(const sqlcached_job_t *j, bool with_token)
{
    json_t *payload = json_loadb(j->payload, j->payload_len, JSON_DECODE_ANY, NULL);
    if (!payload)
        payload = json_stringn(j->payload, j->payload_len); /* not stored by this API */
    json_t *obj = json_pack("{s:s%, s:s%, s:o, s:s, s:I, s:I}", "id", j->id, j->id_len, "queue",
                            j->queue, j->queue_len, "payload", payload, "state",
                            state_name(j->state), "run_at", (json_int_t)j->run_at, "attempts",
                            (json_int_t)j->attempts);
    if (obj && with_token &&
        json_object_set_new(obj, "claim_token", json_integer(j->claim_token)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static enum MHD_Result reply_job(http_request_t *req, unsigned status, const sqlcached_job_t *j)
{
    return http_reply_json(req, status, job_json(j, false));
}

static enum MHD_Result reply_jobs(http_request_t *req, const sqlcached_jobs_t *jobs)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < jobs->count; i++)
        if (json_array_append_new(arr, job_json(&jobs->jobs[i], true)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    return http_reply_json(req, MHD_HTTP_OK, arr ? json_pack("{s:o}", "jobs", arr) : NULL);
}

/* 409 claim_expired, 404 or the status's own problem. */
static enum MHD_Result reply_claim_status(http_request_t *req, sqlcached_status_t st,
                                          const char *what)
{
    if (st == SQLCACHED_CLAIM_EXPIRED)
        return http_reply_problem(req, "claim_expired",
                                  "the token is not the job's current unexpired claim");
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no such job");
    return http_reply_status(req, st, what);
}

/* ------------------------------------------------------------------------
 * Request parsing
 * ------------------------------------------------------------------------ */

/* Check the queue name (param 0) and, when has_id, the job id (param 1). */
static bool path_ok(http_request_t *req, bool has_id)
{
    return http_param_text(req, 0, SQLCACHED_QUEUE_NAME_MAX, "queue name") &&
           (!has_id || http_param_text(req, 1, SQLCACHED_JOB_ID_MAX, "job id"));
}

/* ------------------------------------------------------------------------
 * POST /v1/queues/{queue}/jobs   {"payload", "delay_ms"?, "id"?}
 * ------------------------------------------------------------------------ */

enum MHD_Result api_queue_enqueue(http_request_t *req)
{
    static const char *const allowed[] = {"payload", "delay_ms", "id", NULL};
    if (!path_ok(req, false))
        return MHD_YES;
    json_t *obj = http_body_object(req, false, allowed);
    if (!obj)
        return MHD_YES;
    int64_t delay_ms = 0;
    const char *id = NULL;
    size_t id_len = 0;
    json_t *payload = json_object_get(obj, "payload");
    bool ok =
        http_json_int(req, obj, "delay_ms", true, 0, 0, SQLCACHED_QUEUE_DELAY_MAX_MS, &delay_ms) &&
        (!json_object_get(obj, "id") ||
         http_json_string(req, obj, "id", SQLCACHED_JOB_ID_MAX, &id, &id_len));
    if (ok && !payload) {
        http_reply_problem(req, "invalid_argument", "payload is required (any JSON value)");
        ok = false;
    }
    char *text = ok ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (ok && !text) {
        http_reply_problem(req, "unavailable", "out of memory");
        ok = false;
    }
    if (!ok) {
        json_decref(obj);
        return MHD_YES;
    }
    const http_param_t *q = &req->params[0];
    sqlcached_job_t job;
    int created = 0;
    sqlcached_status_t st = sqlcached_queue_enqueue(req->db, q->data, q->len, id, id_len, text,
                                                    strlen(text), delay_ms, &job, &created);
    free(text);
    json_decref(obj);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the job was not enqueued");
    enum MHD_Result r = reply_job(req, created ? MHD_HTTP_CREATED : MHD_HTTP_OK, &job);
    sqlcached_job_clear(&job);
    return r;
}

/* ------------------------------------------------------------------------
 * POST /v1/queues/{queue}/claim   {"worker", "visibility_ms", "wait_ms"?, "max"?}
 * ------------------------------------------------------------------------ */

typedef struct claim_state {
    atomic_int refs;
    pthread_mutex_t lock;
    http_request_t *req; /* under lock; NULL once the request completed */
    bool done;           /* under lock: the claim answered */
    sqlcached_status_t st;
    sqlcached_jobs_t *jobs;
} claim_state_t;

static void claim_state_release(claim_state_t *cs)
{
    if (atomic_fetch_sub(&cs->refs, 1) == 1) {
        sqlcached_jobs_free(cs->jobs); /* never answered: due again after visibility */
        pthread_mutex_destroy(&cs->lock);
        free(cs);
    }
}

/* ctx_free: the request completed; the claim may still be in flight. */
static void claim_state_detach(void *ctx)
{
    claim_state_t *cs = ctx;
    pthread_mutex_lock(&cs->lock);
    cs->req = NULL;
    pthread_mutex_unlock(&cs->lock);
    claim_state_release(cs);
}

/* The library's completion (a library thread). */
static void on_claimed(void *cls, sqlcached_status_t st)
{
    claim_state_t *cs = cls;
    pthread_mutex_lock(&cs->lock);
    cs->st = st;
    cs->done = true;
    if (cs->req)
        http_resume(cs->req);
    pthread_mutex_unlock(&cs->lock);
    claim_state_release(cs);
}

/* Answer from the claim's state (called again after the resume, or at
 * once when the park was refused). */
static enum MHD_Result finish_claim(http_request_t *req)
{
    claim_state_t *cs = req->ctx;
    pthread_mutex_lock(&cs->lock);
    bool done = cs->done;
    sqlcached_status_t st = cs->st;
    sqlcached_jobs_t *jobs = done && st == SQLCACHED_OK ? cs->jobs : NULL;
    if (jobs)
        cs->jobs = NULL;
    pthread_mutex_unlock(&cs->lock);
    if (!done) /* the server is stopping: the claim ends without us */
        return http_reply_problem(req, "unavailable", "the server is stopping");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the claim failed");
    enum MHD_Result r = reply_jobs(req, jobs);
    sqlcached_jobs_free(jobs);
    return r;
}

enum MHD_Result api_queue_claim(http_request_t *req)
{
    if (req->ctx) /* called again after http_resume */
        return finish_claim(req);
    static const char *const allowed[] = {"worker", "visibility_ms", "wait_ms", "max", NULL};
    if (!path_ok(req, false))
        return MHD_YES;
    json_t *obj = http_body_object(req, false, allowed);
    if (!obj)
        return MHD_YES;
    const char *worker = NULL;
    size_t worker_len = 0;
    int64_t vis = 0, wait_ms = 0, max = 1;
    bool ok =
        http_json_string(req, obj, "worker", SQLCACHED_JOB_ID_MAX, &worker, &worker_len) &&
        http_json_int(req, obj, "visibility_ms", false, 0, SQLCACHED_QUEUE_VISIBILITY_MIN_MS,
                      SQLCACHED_QUEUE_VISIBILITY_MAX_MS, &vis) &&
        http_json_int(req, obj, "wait_ms", true, 0, 0, SQLCACHED_QUEUE_WAIT_MAX_MS, &wait_ms) &&
        http_json_int(req, obj, "max", true, 1, 1, SQLCACHED_QUEUE_CLAIM_MAX, &max);
    claim_state_t *cs = ok ? calloc(1, sizeof *cs) : NULL;
    if (ok && (!cs || pthread_mutex_init(&cs->lock, NULL) != 0)) {
        free(cs);
        cs = NULL;
        http_reply_problem(req, "unavailable", "out of memory");
    }
    if (!cs) {
        json_decref(obj);
        return MHD_YES;
    }
    atomic_init(&cs->refs, 2); /* the request's and the claim's */
    cs->req = req;
    req->ctx = cs;
    req->ctx_free = claim_state_detach;
    const http_param_t *q = &req->params[0];
    sqlcached_status_t st = sqlcached_queue_claim_async(req->db, q->data, q->len, worker,
                                                        worker_len, vis, wait_ms, (unsigned)max,
                                                        &cs->jobs, on_claimed, cs);
    json_decref(obj);
    if (st != SQLCACHED_OK) {
        claim_state_release(cs); /* the claim's reference: nothing started */
        return http_reply_status(req, st, "the claim failed");
    }
    if (http_suspend(req))
        return MHD_YES;
    return finish_claim(req);
}

/* ------------------------------------------------------------------------
 * POST /v1/queues/{queue}/jobs/{id}/ack    {"claim_token"}
 * POST /v1/queues/{queue}/jobs/{id}/nack   {"claim_token", "delay_ms"?}
 * ------------------------------------------------------------------------ */

static enum MHD_Result settle(http_request_t *req, bool nack)
{
    static const char *const ack_members[] = {"claim_token", NULL};
    static const char *const nack_members[] = {"claim_token", "delay_ms", NULL};
    if (!path_ok(req, true))
        return MHD_YES;
    json_t *obj = http_body_object(req, false, nack ? nack_members : ack_members);
    if (!obj)
        return MHD_YES;
    int64_t token = 0, delay_ms = 0;
    bool ok = http_json_int(req, obj, "claim_token", false, 0, 1, INT64_MAX, &token) &&
              (!nack || http_json_int(req, obj, "delay_ms", true, 0, 0,
                                      SQLCACHED_QUEUE_DELAY_MAX_MS, &delay_ms));
    json_decref(obj);
    if (!ok)
        return MHD_YES;
    const http_param_t *q = &req->params[0], *id = &req->params[1];
    sqlcached_status_t st =
        nack ? sqlcached_queue_nack(req->db, q->data, q->len, id->data, id->len, token, delay_ms)
             : sqlcached_queue_ack(req->db, q->data, q->len, id->data, id->len, token);
    if (st != SQLCACHED_OK)
        return reply_claim_status(req, st,
                                  nack ? "the job was not nacked" : "the job was not acked");
    return http_reply_empty(req, MHD_HTTP_NO_CONTENT, -1);
}

enum MHD_Result api_queue_ack(http_request_t *req)
{
    return settle(req, false);
}

enum MHD_Result api_queue_nack(http_request_t *req)
{
    return settle(req, true);
}

/* ------------------------------------------------------------------------
 * GET /v1/queues/{queue}/jobs/{id}, DELETE /v1/queues/{queue}/jobs/{id},
 * GET /v1/queues/{queue}
 * ------------------------------------------------------------------------ */

enum MHD_Result api_queue_job_get(http_request_t *req)
{
    if (!path_ok(req, true))
        return MHD_YES;
    const http_param_t *q = &req->params[0], *id = &req->params[1];
    sqlcached_job_t job;
    sqlcached_status_t st = sqlcached_queue_get(req->db, q->data, q->len, id->data, id->len, &job);
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no such job");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot read the job");
    enum MHD_Result r = reply_job(req, MHD_HTTP_OK, &job);
    sqlcached_job_clear(&job);
    return r;
}

enum MHD_Result api_queue_job_cancel(http_request_t *req)
{
    if (!path_ok(req, true))
        return MHD_YES;
    const http_param_t *q = &req->params[0], *id = &req->params[1];
    sqlcached_status_t st = sqlcached_queue_cancel(req->db, q->data, q->len, id->data, id->len);
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no such job");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the job was not cancelled");
    return http_reply_empty(req, MHD_HTTP_NO_CONTENT, -1);
}

enum MHD_Result api_queue_get(http_request_t *req)
{
    if (!path_ok(req, false))
        return MHD_YES;
    const http_param_t *q = &req->params[0];
    sqlcached_queue_counts_t c;
    sqlcached_status_t st = sqlcached_queue_counts(req->db, q->data, q->len, &c);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot count the queue's jobs");
    json_t *obj = json_pack("{s:s%, s:I, s:I, s:I}", "queue", q->data, q->len, "delayed",
                            (json_int_t)c.delayed, "ready", (json_int_t)c.ready, "claimed",
                            (json_int_t)c.claimed);
    return http_reply_json(req, MHD_HTTP_OK, obj);
}
