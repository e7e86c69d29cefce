/*
 * crash_kv.c - the key-value domain of the crash loop (see crash.h).
 *
 * Two key spaces:
 *   - value keys (PUT, DELETE, GET): operations on one key are serialized
 *     by the key's mutex, held across the request, so the model knows the
 *     exact state after each acknowledged operation: present with
 *     (version, value) or absent. Requests without an answer are kept as a
 *     short list of possible outcomes. Online, every answer must agree with
 *     the model (a GET, a PUT's 200/201, a DELETE's 204/404 all reveal the
 *     state), so a write lost across a restart is also caught by the first
 *     operation that touches the key afterwards.
 *   - counters (incr by 1..5, from any thread at once): the model keeps the
 *     committed base plus the acknowledged and in-doubt sums since the last
 *     restart; after a restart base + acked <= value <= base + acked + doubt.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"

#define VALUE_KEYS 64
#define COUNTERS 8
#define MAX_DOUBTS 8
#define VALUE_MAX 48

typedef struct kv_outcome {
    bool present;
    int64_t version; /* 0 = unknown (an in-doubt PUT) */
    char value[VALUE_MAX];
} kv_outcome_t;

typedef struct kv_key {
    pthread_mutex_t lock;            /* held across each request on the key */
    kv_outcome_t acked;              /* the state after the last answered operation */
    kv_outcome_t doubts[MAX_DOUBTS]; /* unanswered operations since then */
    int ndoubts;
    uint64_t seq;
} kv_key_t;

typedef struct kv_counter {
    pthread_mutex_t lock; /* guards the sums, not held across requests */
    int64_t base;         /* the value seen at the last restart */
    int64_t acked, doubt; /* sums of increments since then */
} kv_counter_t;

typedef struct kv_model {
    kv_key_t keys[VALUE_KEYS];
    kv_counter_t counters[COUNTERS];
} kv_model_t;

static void *kv_create(unsigned workers)
{
    (void)workers;
    kv_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    for (int i = 0; i < VALUE_KEYS; i++)
        pthread_mutex_init(&m->keys[i].lock, NULL);
    for (int i = 0; i < COUNTERS; i++)
        pthread_mutex_init(&m->counters[i].lock, NULL);
    return m;
}

static void kv_destroy(void *model)
{
    kv_model_t *m = model;
    for (int i = 0; i < VALUE_KEYS; i++)
        pthread_mutex_destroy(&m->keys[i].lock);
    for (int i = 0; i < COUNTERS; i++)
        pthread_mutex_destroy(&m->counters[i].lock);
    free(m);
}

static void count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------
 * Value keys
 * ------------------------------------------------------------------------ */

/* Does the observed state match one the model allows? */
static bool allowed(const kv_key_t *k, const kv_outcome_t *seen)
{
    const kv_outcome_t *a = &k->acked;
    if (a->present == seen->present &&
        (!a->present || (a->version == seen->version && strcmp(a->value, seen->value) == 0)))
        return true;
    for (int i = 0; i < k->ndoubts; i++) {
        const kv_outcome_t *d = &k->doubts[i];
        if (!d->present && !seen->present)
            return true;
        if (d->present && seen->present && strcmp(d->value, seen->value) == 0 &&
            seen->version > a->version)
            return true;
    }
    return false;
}

/* The observed state contradicts the model: name it and count it. */
static void contradiction(kv_key_t *k, int idx, const kv_outcome_t *seen, const char *how,
                          rel_report_t *r)
{
    const kv_outcome_t *a = &k->acked;
    bool lost = a->present ? !seen->present || seen->version < a->version : seen->present;
    if (lost && k->ndoubts == 0)
        count(&r->lost);
    else
        count(&r->violations);
    rel_fail("kv",
             "key v%d (%s): expected %s v%" PRId64 " '%s' (+%d in doubt), saw %s v%" PRId64 " '%s'",
             idx, how, a->present ? "present" : "absent", a->version, a->value, k->ndoubts,
             seen->present ? "present" : "absent", seen->version, seen->value);
}

/* An answer revealed the state `seen` of key k (lock held). */
static void observe(kv_key_t *k, int idx, const kv_outcome_t *seen, const char *how,
                    rel_report_t *r)
{
    if (!allowed(k, seen))
        contradiction(k, idx, seen, how, r);
    k->acked = *seen;
    k->ndoubts = 0;
}

static void add_doubt(kv_key_t *k, const kv_outcome_t *o, rel_report_t *r)
{
    count(&r->in_doubt);
    if (k->ndoubts < MAX_DOUBTS)
        k->doubts[k->ndoubts++] = *o;
}

/* Read the key's state over HTTP into *seen; the transport result. */
static rel_transport_t read_key(rel_client_t *c, int idx, kv_outcome_t *seen, rel_report_t *r)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/kv/crash-v%d", idx);
    memset(seen, 0, sizeof *seen);
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED)
        return REL_IN_DOUBT;
    if (c->status == 200) {
        seen->present = true;
        seen->version = c->etag;
        snprintf(seen->value, sizeof seen->value, "%s", c->body);
    } else if (c->status != 404) {
        count(&r->violations);
        rel_fail("kv", "GET crash-v%d answered %ld %s", idx, c->status, c->body);
    }
    return REL_ANSWERED;
}

static int put_key(kv_key_t *k, int idx, rel_worker_t *w, rel_report_t *r)
{
    char path[64];
    kv_outcome_t o = {.present = true};
    snprintf(path, sizeof path, "/v1/kv/crash-v%d", idx);
    snprintf(o.value, sizeof o.value, "w%u-%" PRIu64, w->id, ++k->seq);
    if (rel_request(w->client, "PUT", path, o.value, strlen(o.value)) != REL_ANSWERED) {
        add_doubt(k, &o, r);
        return -1;
    }
    if (w->client->status != 200 && w->client->status != 201) {
        count(&r->violations);
        rel_fail("kv", "PUT %s answered %ld %s", path, w->client->status, w->client->body);
        return 0;
    }
    count(&r->acked);
    o.version = w->client->etag;
    rel_note_version(o.version);
    /* 201 says it was absent, 200 that it was present: check the model */
    kv_outcome_t before = k->acked;
    bool was_present = w->client->status == 200;
    if (k->ndoubts == 0 && before.present != was_present) {
        before.present = was_present; /* what the answer revealed */
        contradiction(k, idx, &before, "PUT status", r);
    } else if (k->ndoubts == 0 && o.version <= before.version) {
        count(&r->violations);
        rel_fail("kv", "PUT %s: version %" PRId64 " not above %" PRId64, path, o.version,
                 before.version);
    }
    k->acked = o;
    k->ndoubts = 0;
    return 0;
}

static int delete_key(kv_key_t *k, int idx, rel_worker_t *w, rel_report_t *r)
{
    char path[64];
    kv_outcome_t o = {.present = false};
    snprintf(path, sizeof path, "/v1/kv/crash-v%d", idx);
    if (rel_request(w->client, "DELETE", path, NULL, 0) != REL_ANSWERED) {
        add_doubt(k, &o, r);
        return -1;
    }
    long st = w->client->status;
    if (st == 204) {
        count(&r->acked);
        if (k->ndoubts == 0 && !k->acked.present) {
            kv_outcome_t seen = k->acked;
            seen.present = true;
            contradiction(k, idx, &seen, "DELETE 204", r);
        }
        k->acked = o;
        k->ndoubts = 0;
    } else if (st == 404) {
        observe(k, idx, &o, "DELETE 404", r);
    } else {
        count(&r->violations);
        rel_fail("kv", "DELETE %s answered %ld %s", path, st, w->client->body);
    }
    return 0;
}

static int step_value_key(kv_model_t *m, rel_worker_t *w, rel_report_t *r)
{
    int idx = (int)(rel_rand(&w->rng) % VALUE_KEYS);
    kv_key_t *k = &m->keys[idx];
    if (pthread_mutex_trylock(&k->lock) != 0)
        return 0; /* another worker has it: pick again next time */
    unsigned dice = (unsigned)(rel_rand(&w->rng) % 10);
    int rc = 0;
    kv_outcome_t seen;
    if (dice < 5) {
        rc = put_key(k, idx, w, r);
    } else if (dice < 7) {
        rc = delete_key(k, idx, w, r);
    } else if (read_key(w->client, idx, &seen, r) == REL_ANSWERED) {
        observe(k, idx, &seen, "GET", r);
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Counters
 * ------------------------------------------------------------------------ */

static int step_counter(kv_model_t *m, rel_worker_t *w, rel_report_t *r)
{
    int idx = (int)(rel_rand(&w->rng) % COUNTERS);
    kv_counter_t *ctr = &m->counters[idx];
    int64_t by = 1 + (int64_t)(rel_rand(&w->rng) % 5);
    char path[64], body[32];
    snprintf(path, sizeof path, "/v1/kv/crash-c%d/incr", idx);
    int n = snprintf(body, sizeof body, "{\"by\":%" PRId64 "}", by);
    rel_transport_t t = rel_request(w->client, "POST", path, body, (size_t)n);
    if (t == REL_ANSWERED && w->client->status != 200) {
        count(&r->violations);
        rel_fail("kv", "POST %s answered %ld %s", path, w->client->status, w->client->body);
        return 0;
    }
    pthread_mutex_lock(&ctr->lock);
    if (t == REL_ANSWERED)
        ctr->acked += by;
    else
        ctr->doubt += by;
    pthread_mutex_unlock(&ctr->lock);
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        return -1;
    }
    count(&r->acked);
    rel_note_version(w->client->etag);
    return 0;
}

static int kv_step(void *model, rel_worker_t *w, rel_report_t *r)
{
    kv_model_t *m = model;
    if (rel_rand(&w->rng) % 4 == 0)
        return step_counter(m, w, r);
    return step_value_key(m, w, r);
}

/* ------------------------------------------------------------------------
 * Checkers
 * ------------------------------------------------------------------------ */

static void check_counter(kv_counter_t *ctr, int idx, rel_client_t *c, rel_report_t *r)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/kv/crash-c%d", idx);
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED ||
        (c->status != 200 && c->status != 404)) {
        count(&r->violations);
        rel_fail("kv", "GET %s after restart: no usable answer (%ld)", path, c->status);
        return;
    }
    int64_t value = c->status == 200 ? strtoll(c->body, NULL, 10) : 0;
    int64_t low = ctr->base + ctr->acked, high = low + ctr->doubt;
    if (value < low) {
        r->lost += (uint64_t)(low - value); /* counted in increments */
        rel_fail("kv", "counter c%d = %" PRId64 ", below the %" PRId64 " acknowledged", idx, value,
                 low);
    } else if (value > high) {
        r->violations++;
        rel_fail("kv", "counter c%d = %" PRId64 ", above acknowledged + in doubt = %" PRId64, idx,
                 value, high);
    }
    ctr->base = value;
    ctr->acked = ctr->doubt = 0;
}

static void kv_check_restart(void *model, rel_client_t *c, rel_report_t *r)
{
    kv_model_t *m = model;
    for (int i = 0; i < VALUE_KEYS; i++) {
        kv_outcome_t seen;
        if (read_key(c, i, &seen, r) != REL_ANSWERED) {
            r->violations++;
            rel_fail("kv", "GET crash-v%d after restart: no answer", i);
            continue;
        }
        observe(&m->keys[i], i, &seen, "after restart", r);
    }
    for (int i = 0; i < COUNTERS; i++)
        check_counter(&m->counters[i], i, c, r);
}

const rel_domain_t rel_domain_kv = {
    .name = "kv",
    .weight = 1,
    .create = kv_create,
    .destroy = kv_destroy,
    .step = kv_step,
    .check_file = NULL, /* the loop checks integrity and the version counter */
    .check_restart = kv_check_restart,
};
