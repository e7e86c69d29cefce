/*
 * crash_queue.c - the delay-queue domain of the crash loop (see crash.h).
 *
 * One queue. Workers enqueue jobs with fresh ids (delay 0..200 ms), and
 * claim (max 1..3, visibility 5 s, no waiting: a waiting request would only
 * be dropped by the kill) then ack what they got. The model keeps each
 * job's state under one mutex (never held across a request):
 *   ENQ_DOUBT  enqueue sent, no answer: it may or may not exist;
 *   PRESENT    enqueue acknowledged: it must exist until we ack it;
 *   ACK_DOUBT  ack sent, no answer: it may still exist;
 *   ACKED      ack answered 204: it must never come back;
 *   ABSENT     an in-doubt enqueue that did not happen.
 * Claimed jobs stay PRESENT (a claim changes no promise: a job whose claim
 * was never acked is due again at the claim's end).
 *
 * Online: a claim must hand out only jobs the model knows (PRESENT or in
 * doubt), never an ACKED one, each with a claim token above every token
 * acknowledged before the request was sent (tokens only grow).
 * check_file: the `claim_token` counter in meta is >= the largest token
 * acknowledged (each acknowledged token above it counts as a lost write).
 * check_restart: every PRESENT job is there (else lost), every ACKED one
 * is not (else a violation: an acked job came back); in-doubt ones are
 * resolved to what the daemon holds; then a probe claim (of a job enqueued
 * for it) must get a token above every token acknowledged before the kill.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"

#define MAX_JOBS 6000 /* then the workers only claim and ack */
#define QUEUE "crash-q"
#define PROBE_QUEUE "crash-q-probe"

typedef enum { J_NONE, J_ENQ_DOUBT, J_PRESENT, J_ACK_DOUBT, J_ACKED, J_ABSENT } jstate_t;

typedef struct cq_model {
    pthread_mutex_t lock;
    unsigned char state[MAX_JOBS];
    int next;          /* ids handed to enqueues: 0..next-1 */
    int64_t max_token; /* the largest claim token acknowledged */
    int64_t *tokens;   /* tokens acknowledged since the last restart */
    size_t ntokens, cap;
    unsigned probes;
} cq_model_t;

static void count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

static void *cq_create(unsigned workers)
{
    (void)workers;
    cq_model_t *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void cq_destroy(void *model)
{
    cq_model_t *m = model;
    pthread_mutex_destroy(&m->lock);
    free(m->tokens);
    free(m);
}

static void set_state(cq_model_t *m, int n, jstate_t s)
{
    pthread_mutex_lock(&m->lock);
    m->state[n] = (unsigned char)s;
    pthread_mutex_unlock(&m->lock);
}

/* Under m->lock: an acknowledged token. */
static void note_token_locked(cq_model_t *m, int64_t token)
{
    if (token > m->max_token)
        m->max_token = token;
    if (m->ntokens == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        int64_t *grown = realloc(m->tokens, cap * sizeof *grown);
        if (grown) {
            m->tokens = grown;
            m->cap = cap;
        }
    }
    if (m->ntokens < m->cap)
        m->tokens[m->ntokens++] = token;
}

/* ------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------ */

static int enqueue(cq_model_t *m, rel_worker_t *w, rel_report_t *r)
{
    pthread_mutex_lock(&m->lock);
    int n = m->next < MAX_JOBS ? m->next++ : -1;
    if (n >= 0)
        m->state[n] = J_ENQ_DOUBT;
    pthread_mutex_unlock(&m->lock);
    if (n < 0)
        return 0;
    rel_client_t *c = w->client;
    char body[96];
    int len = snprintf(body, sizeof body, "{\"payload\":{\"n\":%d},\"id\":\"j%d\",\"delay_ms\":%d}",
                       n, n, (int)(rel_rand(&w->rng) % 4) * 50);
    if (rel_request(c, "POST", "/v1/queues/" QUEUE "/jobs", body, (size_t)len) != REL_ANSWERED) {
        count(&r->in_doubt);
        return -1;
    }
    if (c->status == 201) {
        count(&r->acked);
        pthread_mutex_lock(&m->lock);
        if (m->state[n] == J_ENQ_DOUBT) /* a claim may have seen (and acked) it already */
            m->state[n] = J_PRESENT;
        pthread_mutex_unlock(&m->lock);
    } else if (c->status == 200) { /* the same id again: only after an in-doubt retry, never */
        count(&r->violations);
        rel_fail("queue", "enqueue of the new id j%d answered 200: %s", n, c->body);
    } else if (c->status != 503) { /* 503: in doubt, resolved at the next restart */
        count(&r->violations);
        rel_fail("queue", "enqueue j%d answered %ld %s", n, c->status, c->body);
    }
    return 0;
}

/* Ack job n under token; the model learns the outcome. */
static int ack(cq_model_t *m, int n, int64_t token, rel_worker_t *w, rel_report_t *r)
{
    rel_client_t *c = w->client;
    char path[96], body[64];
    snprintf(path, sizeof path, "/v1/queues/" QUEUE "/jobs/j%d/ack", n);
    int len = snprintf(body, sizeof body, "{\"claim_token\":%" PRId64 "}", token);
    set_state(m, n, J_ACK_DOUBT);
    if (rel_request(c, "POST", path, body, (size_t)len) != REL_ANSWERED) {
        count(&r->in_doubt);
        return -1;
    }
    if (c->status == 204) {
        count(&r->acked);
        set_state(m, n, J_ACKED);
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "claim_expired") == 0) {
        set_state(m, n, J_PRESENT); /* the claim ran out (a slow round): due again */
    } else if (c->status == 404) {
        count(&r->violations);
        rel_fail("queue", "ack of j%d under its claim %" PRId64 ": 404 (the job vanished)", n,
                 token);
        set_state(m, n, J_ABSENT);
    } else {
        set_state(m, n, J_PRESENT); /* 503: not acked */
        if (c->status != 503) {
            count(&r->violations);
            rel_fail("queue", "POST %s answered %ld %s", path, c->status, c->body);
        }
    }
    return 0;
}

/* Check one claimed job against the model (under m->lock); its number, or
 * -1 when it must not be acked. */
static int check_claimed(cq_model_t *m, const char *id, int64_t token, int64_t before,
                         rel_report_t *r)
{
    int n = -1;
    if (sscanf(id, "j%d", &n) != 1 || n < 0 || n >= m->next) {
        count(&r->violations);
        rel_fail("queue", "claim handed out a job never enqueued: %s", id);
        return -1;
    }
    jstate_t s = m->state[n];
    if (s == J_ACKED || s == J_ABSENT) {
        count(&r->violations);
        rel_fail("queue", "claim handed out j%d, %s", n,
                 s == J_ACKED ? "acked before: an acked job came back" : "never enqueued");
        return -1;
    }
    if (token <= before) {
        count(&r->violations);
        rel_fail("queue",
                 "claim token %" PRId64 " of j%d not above the %" PRId64 " acknowledged before",
                 token, n, before);
    }
    note_token_locked(m, token);
    if (s == J_ENQ_DOUBT)
        m->state[n] = J_PRESENT; /* it exists: the enqueue happened */
    return n;
}

/* The jobs of the last claim answer: up to 3 (id, token) pairs. */
static int parse_jobs(rel_client_t *c, char ids[3][32], int64_t tokens[3])
{
    int k = 0;
    const char *p = c->body;
    while (k < 3 && (p = strstr(p, "\"id\":\"")) != NULL) {
        p += 6;
        const char *end = strchr(p, '"');
        const char *t = strstr(p, "\"claim_token\":");
        if (!end || !t || (size_t)(end - p) >= sizeof ids[0])
            return -1;
        memcpy(ids[k], p, (size_t)(end - p));
        ids[k][end - p] = '\0';
        tokens[k] = strtoll(t + 14, NULL, 10);
        k++;
        p = t;
    }
    return k;
}

static int claim_and_ack(cq_model_t *m, rel_worker_t *w, rel_report_t *r)
{
    rel_client_t *c = w->client;
    char body[96];
    int max = 1 + (int)(rel_rand(&w->rng) % 3);
    int len = snprintf(body, sizeof body, "{\"worker\":\"c%u\",\"visibility_ms\":5000,\"max\":%d}",
                       w->id, max);
    pthread_mutex_lock(&m->lock);
    int64_t before = m->max_token;
    pthread_mutex_unlock(&m->lock);
    if (rel_request(c, "POST", "/v1/queues/" QUEUE "/claim", body, (size_t)len) != REL_ANSWERED) {
        count(&r->in_doubt);
        return -1;
    }
    if (c->status == 503)
        return 0;
    char ids[3][32];
    int64_t tokens[3];
    int k = c->status == 200 ? parse_jobs(c, ids, tokens) : -1;
    if (k < 0 || k > max) {
        count(&r->violations);
        rel_fail("queue", "claim answered %ld %s", c->status, c->body);
        return 0;
    }
    count(&r->acked); /* a claim is a write too */
    int nums[3];
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < k; i++)
        nums[i] = check_claimed(m, ids[i], tokens[i], before, r);
    pthread_mutex_unlock(&m->lock);
    for (int i = 0; i < k; i++)
        if (nums[i] >= 0 && ack(m, nums[i], tokens[i], w, r) != 0)
            return -1;
    return 0;
}

static int cq_step(void *model, rel_worker_t *w, rel_report_t *r)
{
    cq_model_t *m = model;
    return rel_rand(&w->rng) % 2 ? enqueue(m, w, r) : claim_and_ack(m, w, r);
}

/* ------------------------------------------------------------------------
 * Checkers
 * ------------------------------------------------------------------------ */

static const char SQL_TOKEN[] = "SELECT value FROM meta WHERE name = 'claim_token'";

static void cq_check_file(void *model, dbread_t *db, rel_report_t *r)
{
    cq_model_t *m = model;
    int64_t persisted = -1;
    if (dbread_int(db, SQL_TOKEN, NULL, &persisted) != 0)
        persisted = -1;
    if (persisted >= m->max_token)
        return;
    uint64_t above = 0;
    for (size_t i = 0; i < m->ntokens; i++)
        above += m->tokens[i] > persisted;
    r->lost += above ? above : 1;
    rel_fail("queue",
             "file: claim_token counter %" PRId64 ", %" PRId64 " acknowledged "
             "(%" PRIu64 " tokens above it)",
             persisted, m->max_token, above);
}

/* GET job n: 1 present, 0 absent, -1 no usable answer. */
static int job_present(rel_client_t *c, int n)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/queues/" QUEUE "/jobs/j%d", n);
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED)
        return -1;
    return c->status == 200 ? 1 : c->status == 404 ? 0 : -1;
}

/* A fresh job claimed at once must get a token above every one
 * acknowledged before. */
static void probe_token(cq_model_t *m, rel_client_t *c, rel_report_t *r)
{
    char body[96];
    int len = snprintf(body, sizeof body, "{\"payload\":0,\"id\":\"p%u\"}", ++m->probes);
    const char claim[] = "{\"worker\":\"probe\",\"visibility_ms\":100}";
    int64_t token = 0;
    char ids[3][32];
    int64_t tokens[3];
    if (rel_request(c, "POST", "/v1/queues/" PROBE_QUEUE "/jobs", body, (size_t)len) !=
            REL_ANSWERED ||
        c->status != 201 ||
        rel_request(c, "POST", "/v1/queues/" PROBE_QUEUE "/claim", claim, sizeof claim - 1) !=
            REL_ANSWERED ||
        c->status != 200 || parse_jobs(c, ids, tokens) != 1 ||
        (token = tokens[0]) <= m->max_token) {
        r->violations++;
        rel_fail("queue",
                 "probe claim after restart: %ld, token %" PRId64 ", largest acknowledged %" PRId64
                 " %s",
                 c->status, token, m->max_token, c->body);
        return;
    }
    r->acked++;
    note_token_locked(m, token);
}

static void cq_check_restart(void *model, rel_client_t *c, rel_report_t *r)
{
    cq_model_t *m = model;
    for (int n = 0; n < m->next; n++) {
        jstate_t s = m->state[n];
        if (s == J_ABSENT || s == J_NONE)
            continue;
        int there = job_present(c, n);
        if (there < 0) {
            r->violations++;
            rel_fail("queue", "GET j%d after restart: no usable answer (%ld)", n, c->status);
            continue;
        }
        if (s == J_PRESENT && !there) {
            r->lost++;
            rel_fail("queue", "j%d: enqueued (acknowledged), gone after the restart", n);
        } else if (s == J_ACKED && there) {
            r->violations++;
            rel_fail("queue", "j%d: acked, back after the restart", n);
        }
        if (s == J_ENQ_DOUBT)
            m->state[n] = there ? J_PRESENT : J_ABSENT;
        else if (s == J_ACK_DOUBT)
            m->state[n] = there ? J_PRESENT : J_ACKED;
        else if (s == J_PRESENT && !there)
            m->state[n] = J_ABSENT; /* counted once */
    }
    m->ntokens = 0; /* persisted: the file check covers the next cycle's tokens */
    probe_token(m, c, r);
}

const rel_domain_t rel_domain_queue = {
    .name = "queue",
    .weight = 1,
    .create = cq_create,
    .destroy = cq_destroy,
    .step = cq_step,
    .check_file = cq_check_file,
    .check_restart = cq_check_restart,
};
