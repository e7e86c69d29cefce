/*
 * crash_txn.c - the transactions domain of the crash loop (see crash.h).
 *
 * Groups of three keys (crash-t<g>-a, -b, -c). Every transaction of a
 * group compares a's version with the one the model knows and, when it
 * holds, writes sequence number s+1 to a and b (put) and adds 1 to the
 * counter c (incr), then reads a back (a get sees the puts before it):
 *
 *   compare: a.version == V
 *   success: put a "s+1", put b "s+1", incr c, get a
 *   failure: get a, get b, get c
 *
 * So a group's stored state is always (s, s, s + offset) for some s, the
 * offset being fixed per group (c's value when the group was first seen
 * or last resynchronised). A state that is not of that form is a
 * transaction stored in part: reported as "partial" (counted in
 * report.partial and as a violation). Requests on a group are serialized
 * by its mutex, held across the request, so the model knows the exact
 * state after each answered transaction: an acknowledged transaction must
 * be wholly present after every later restart (s below the acknowledged
 * sequence: lost), an unanswered one wholly present or wholly absent
 * (s at most the acknowledged sequence plus the transactions in doubt).
 * Online, an answer with succeeded false while nothing is in doubt, a
 * get that does not see the puts, or results of the wrong shape are
 * violations. check_restart reads each group with plain GETs (the read
 * path, memory tier included) and resolves what was in doubt.
 */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"

#define GROUPS 16

typedef struct txn_group {
    pthread_mutex_t lock; /* held across each request on the group */
    int64_t seq;          /* a and b after the last answered transaction */
    int64_t offset;       /* c = seq + offset */
    int64_t version_a;    /* a's version then (0: absent) */
    int ndoubts;          /* unanswered transactions since then */
} txn_group_t;

typedef struct txn_model {
    txn_group_t groups[GROUPS];
} txn_model_t;

static void *txn_create(unsigned workers)
{
    (void)workers;
    txn_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    for (int i = 0; i < GROUPS; i++)
        pthread_mutex_init(&m->groups[i].lock, NULL);
    return m;
}

static void txn_destroy(void *model)
{
    txn_model_t *m = model;
    for (int i = 0; i < GROUPS; i++)
        pthread_mutex_destroy(&m->groups[i].lock);
    free(m);
}

static void count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

/* A group's state as read: a, b as sequence numbers (0 when absent), c's
 * value, a's version. */
typedef struct seen {
    int64_t a, b, c, version_a;
} seen_t;

/* Compare a seen state with the model (lock held), count what is wrong,
 * then adopt it. */
static void observe(txn_group_t *g, int idx, const seen_t *s, const char *how, rel_report_t *r)
{
    if (s->a != s->b || s->c - s->a != g->offset) {
        count(&r->partial);
        count(&r->violations);
        rel_fail("txn",
                 "group t%d (%s): partial transaction: a=%" PRId64 " b=%" PRId64 " c=%" PRId64
                 " (expected a = b = c - %" PRId64 ")",
                 idx, how, s->a, s->b, s->c, g->offset);
    } else if (s->a < g->seq) {
        count(&r->lost);
        rel_fail("txn",
                 "group t%d (%s): transaction %" PRId64 " was acknowledged, %" PRId64 " is stored",
                 idx, how, g->seq, s->a);
    } else if (s->a > g->seq + g->ndoubts) {
        count(&r->violations);
        rel_fail("txn",
                 "group t%d (%s): transaction %" PRId64 " stored, only %" PRId64
                 " acknowledged and %d in doubt",
                 idx, how, s->a, g->seq, g->ndoubts);
    }
    g->seq = s->a;
    g->offset = s->c - s->a;
    g->version_a = s->version_a;
    g->ndoubts = 0;
}

/* A result's string value as a sequence number (absent: 0). */
static int64_t result_seq(json_t *res)
{
    json_t *v = json_object_get(res, "value");
    return json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) : 0;
}

static int64_t result_int(json_t *res, const char *member)
{
    json_t *v = json_object_get(res, member);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* The answer of a committed transaction (200), checked against the model. */
static void answered(txn_group_t *g, int idx, json_t *body, rel_report_t *r)
{
    json_t *results = json_object_get(body, "results");
    bool succeeded = json_is_true(json_object_get(body, "succeeded"));
    if (json_array_size(results) != (succeeded ? 4 : 3)) {
        count(&r->violations);
        rel_fail("txn", "group t%d: results of the wrong shape", idx);
        return;
    }
    if (!succeeded) { /* the failure gets: what an in-doubt one left */
        if (g->ndoubts == 0) {
            count(&r->violations);
            rel_fail("txn",
                     "group t%d: compare on a's version %" PRId64 " failed, nobody "
                     "else writes it",
                     idx, g->version_a);
        }
        seen_t s = {result_seq(json_array_get(results, 0)), result_seq(json_array_get(results, 1)),
                    result_seq(json_array_get(results, 2)),
                    result_int(json_array_get(results, 0), "version")};
        if (s.version_a < 0)
            s.version_a = 0; /* absent: null */
        observe(g, idx, &s, "failure gets", r);
        return;
    }
    count(&r->acked);
    int64_t seq = result_seq(json_array_get(results, 3));
    int64_t va = result_int(json_array_get(results, 0), "version");
    int64_t c = result_int(json_array_get(results, 2), "value");
    rel_note_version(result_int(json_array_get(results, 2), "version"));
    if (seq != g->seq + 1 || va != result_int(json_array_get(results, 3), "version") ||
        c - seq != g->offset) {
        count(&r->violations);
        rel_fail("txn",
                 "group t%d: transaction %" PRId64 " answered get a=%" PRId64 " (version %" PRId64
                 "), c=%" PRId64,
                 idx, g->seq + 1, seq, va, c);
    }
    g->seq = seq;
    g->offset = c - seq;
    g->version_a = va;
    g->ndoubts = 0;
}

static int txn_step(void *model, rel_worker_t *w, rel_report_t *r)
{
    txn_model_t *m = model;
    int idx = (int)(rel_rand(&w->rng) % GROUPS);
    txn_group_t *g = &m->groups[idx];
    if (pthread_mutex_trylock(&g->lock) != 0)
        return 0;
    char body[768];
    int64_t next = g->seq + 1;
    int n = snprintf(body, sizeof body,
                     "{\"compare\": [{\"key\": \"crash-t%d-a\", \"version\": %" PRId64 "}],"
                     " \"success\": [{\"op\": \"put\", \"key\": \"crash-t%d-a\", \"value\": "
                     "\"%" PRId64 "\"}, {\"op\": \"put\", \"key\": \"crash-t%d-b\", \"value\": "
                     "\"%" PRId64 "\"}, {\"op\": \"incr\", \"key\": \"crash-t%d-c\"},"
                     " {\"op\": \"get\", \"key\": \"crash-t%d-a\"}],"
                     " \"failure\": [{\"op\": \"get\", \"key\": \"crash-t%d-a\"},"
                     " {\"op\": \"get\", \"key\": \"crash-t%d-b\"},"
                     " {\"op\": \"get\", \"key\": \"crash-t%d-c\"}]}",
                     idx, g->version_a, idx, next, idx, next, idx, idx, idx, idx, idx);
    int rc = 0;
    if (rel_request(w->client, "POST", "/v1/txn", body, (size_t)n) != REL_ANSWERED) {
        count(&r->in_doubt);
        g->ndoubts++;
        rc = -1;
    } else if (w->client->status != 200) {
        count(&r->violations);
        rel_fail("txn", "POST /v1/txn (group t%d) answered %ld %s", idx, w->client->status,
                 w->client->body);
    } else {
        json_t *j = json_loads(w->client->body, 0, NULL);
        if (j)
            answered(g, idx, j, r);
        else
            count(&r->violations);
        json_decref(j);
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* GET one key of a group: its integer value (0 when absent) and version;
 * false without a usable answer. */
static bool read_key(rel_client_t *c, int idx, char which, int64_t *value, int64_t *version)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/kv/crash-t%d-%c", idx, which);
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED)
        return false;
    *value = c->status == 200 ? strtoll(c->body, NULL, 10) : 0;
    *version = c->status == 200 ? c->etag : 0;
    return c->status == 200 || c->status == 404;
}

static void txn_check_restart(void *model, rel_client_t *c, rel_report_t *r)
{
    txn_model_t *m = model;
    for (int i = 0; i < GROUPS; i++) {
        seen_t s;
        int64_t vb, vc;
        if (!read_key(c, i, 'a', &s.a, &s.version_a) || !read_key(c, i, 'b', &s.b, &vb) ||
            !read_key(c, i, 'c', &s.c, &vc)) {
            count(&r->violations);
            rel_fail("txn", "group t%d after restart: no usable answer (%ld)", i, c->status);
            continue;
        }
        observe(&m->groups[i], i, &s, "after restart", r);
    }
}

const rel_domain_t rel_domain_txn = {
    .name = "txn",
    .weight = 1,
    .create = txn_create,
    .destroy = txn_destroy,
    .step = txn_step,
    .check_file = NULL, /* the loop checks integrity and the version counter */
    .check_restart = txn_check_restart,
};
