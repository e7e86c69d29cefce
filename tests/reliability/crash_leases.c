/*
 * crash_leases.c - the lease domain of the crash loop (see crash.h).
 *
 * A few lease names, a few owners, short ttl_ms (100..999) and no waiting
 * (wait_ms 0: a waiting request would only be dropped by the kill). Workers
 * acquire, renew and release; each name's mutex is held across each
 * request on it, so the model knows the exact holding after every answer:
 * free, or (owner, token, count, expires_at). An unanswered request marks
 * the name in doubt until the restart reads it back.
 *
 * Expiry is judged on the wall clock, which the daemon uses too: a holding
 * is surely live if expires_at > now + SLACK_MS after the answer, surely
 * expired if expires_at <= now - SLACK_MS before the request; in between
 * both answers are accepted.
 *
 * Online: an acquire that makes a new holding must get a token above every
 * token acknowledged before the request was sent; a re-entrant one keeps
 * the token and adds one to count; a surely live lease is never given to a
 * second owner, a surely free one never refused.
 * check_file: the `fencing_token` counter in meta is >= the largest token
 * acknowledged (each acknowledged token above it counts as a lost write).
 * check_restart: every lease acknowledged as held and surely live is held
 * by the same owner with the same token, count and expiry; a free or
 * surely expired one is absent; then a new acquire of a fresh name must
 * get a token above every token acknowledged before the kill.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crash.h"
#include "testutil.h"

#define NAMES 8
#define OWNERS 3
#define TTL_MIN 100
#define TTL_SPAN 900
#define SLACK_MS 30

typedef struct ls_name {
    pthread_mutex_t lock; /* held across each request on the name */
    bool held;
    int owner;
    int64_t token, count, expires_at;
    bool doubt; /* a request without an answer since the last known state */
} ls_name_t;

typedef struct ls_model {
    ls_name_t names[NAMES];
    pthread_mutex_t tlock; /* guards the tokens below */
    int64_t max_token;     /* the largest token acknowledged */
    int64_t *tokens;       /* tokens of new holdings acknowledged since the last restart */
    size_t ntokens, cap;
    unsigned probes;
} ls_model_t;

static void count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

static void *ls_create(unsigned workers)
{
    (void)workers;
    ls_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    for (int i = 0; i < NAMES; i++)
        pthread_mutex_init(&m->names[i].lock, NULL);
    pthread_mutex_init(&m->tlock, NULL);
    return m;
}

static void ls_destroy(void *model)
{
    ls_model_t *m = model;
    for (int i = 0; i < NAMES; i++)
        pthread_mutex_destroy(&m->names[i].lock);
    pthread_mutex_destroy(&m->tlock);
    free(m->tokens);
    free(m);
}

static int64_t max_token(ls_model_t *m)
{
    pthread_mutex_lock(&m->tlock);
    int64_t t = m->max_token;
    pthread_mutex_unlock(&m->tlock);
    return t;
}

/* An acknowledged token of a new holding. */
static void note_token(ls_model_t *m, int64_t token)
{
    pthread_mutex_lock(&m->tlock);
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
    pthread_mutex_unlock(&m->tlock);
}

/* The model's state of n from now on (exact: no doubt left). */
static void set_state(ls_name_t *n, bool held, int owner, int64_t token, int64_t cnt,
                      int64_t expires_at)
{
    n->held = held;
    n->owner = owner;
    n->token = token;
    n->count = cnt;
    n->expires_at = expires_at;
    n->doubt = false;
}

/* The lease in the last body; false if it does not parse. */
static bool parse_lease(rel_client_t *c, int *owner, int64_t *token, int64_t *cnt,
                        int64_t *expires_at)
{
    char who[32];
    return rel_json_string(c, "owner", who, sizeof who) == 0 && sscanf(who, "o%d", owner) == 1 &&
           rel_json_int(c, "token", token) == 0 && rel_json_int(c, "count", cnt) == 0 &&
           rel_json_int(c, "expires_at", expires_at) == 0;
}

/* ------------------------------------------------------------------------
 * Operations (name lock held)
 * ------------------------------------------------------------------------ */

static int acquire(ls_model_t *m, ls_name_t *n, int idx, int owner, rel_worker_t *w,
                   rel_report_t *r)
{
    rel_client_t *c = w->client;
    int ttl = TTL_MIN + (int)(rel_rand(&w->rng) % TTL_SPAN);
    char path[64], body[96];
    snprintf(path, sizeof path, "/v1/leases/crash-l%d/acquire", idx);
    int len =
        snprintf(body, sizeof body, "{\"owner\":\"o%d\",\"ttl_ms\":%d,\"wait_ms\":0}", owner, ttl);
    int64_t before = max_token(m), t0 = testutil_wall_ms();
    rel_transport_t t = rel_request(c, "POST", path, body, (size_t)len);
    int64_t t1 = testutil_wall_ms();
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        n->doubt = true;
        return -1;
    }
    bool live = n->held && n->expires_at > t1 + SLACK_MS;
    bool free_ = !n->held || n->expires_at <= t0 - SLACK_MS;
    if (c->status == 200) {
        int who;
        int64_t token, cnt, exp;
        if (!parse_lease(c, &who, &token, &cnt, &exp) || who != owner) {
            count(&r->violations);
            rel_fail("leases", "acquire l%d: %s", idx, c->body);
            n->doubt = true;
            return 0;
        }
        count(&r->acked);
        bool reentrant = !free_ && n->owner == owner && token == n->token;
        if (!n->doubt && live && n->owner != owner) {
            count(&r->violations);
            rel_fail("leases",
                     "l%d: o%d got it (token %" PRId64 ") while o%d held it until %" PRId64
                     ", now %" PRId64,
                     idx, owner, token, n->owner, n->expires_at, t1);
        } else if (!n->doubt && live && n->owner == owner && !reentrant) {
            count(&r->violations);
            rel_fail("leases", "l%d: re-entrant acquire by o%d: token %" PRId64 ", held %" PRId64,
                     idx, owner, token, n->token);
        }
        if (reentrant) {
            if (!n->doubt && cnt != n->count + 1) {
                count(&r->violations);
                rel_fail("leases", "l%d: re-entrant count %" PRId64 " after %" PRId64, idx, cnt,
                         n->count);
            }
        } else {
            if (cnt != 1 || token <= before) {
                count(&r->violations);
                rel_fail("leases",
                         "l%d: new holding with count %" PRId64 ", token %" PRId64
                         " not above the %" PRId64 " acknowledged before",
                         idx, cnt, token, before);
            }
            note_token(m, token);
        }
        set_state(n, true, owner, token, cnt, exp);
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "lease_held") == 0) {
        if (!n->doubt && (free_ || (n->owner == owner && live))) {
            count(&r->violations);
            rel_fail("leases",
                     "l%d: o%d refused (lease_held); model: %s o%d until %" PRId64 ", now %" PRId64,
                     idx, owner, n->held ? "held by" : "free", n->owner, n->expires_at, t1);
        }
        /* held by another owner: the model's holding stands (or stays in doubt) */
    } else {
        count(&r->violations);
        rel_fail("leases", "POST %s answered %ld %s", path, c->status, c->body);
    }
    return 0;
}

/* release (renew = false) or renew */
static int give_back(ls_model_t *m, ls_name_t *n, int idx, int owner, bool renew, rel_worker_t *w,
                     rel_report_t *r)
{
    (void)m;
    rel_client_t *c = w->client;
    char path[64], body[96];
    int len;
    snprintf(path, sizeof path, "/v1/leases/crash-l%d/%s", idx, renew ? "renew" : "release");
    if (renew)
        len = snprintf(body, sizeof body, "{\"owner\":\"o%d\",\"ttl_ms\":%d}", owner,
                       TTL_MIN + (int)(rel_rand(&w->rng) % TTL_SPAN));
    else
        len = snprintf(body, sizeof body, "{\"owner\":\"o%d\"}", owner);
    int64_t t0 = testutil_wall_ms();
    rel_transport_t t = rel_request(c, "POST", path, body, (size_t)len);
    int64_t t1 = testutil_wall_ms();
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        n->doubt = true;
        return -1;
    }
    bool mine = n->held && n->owner == owner;
    bool live = mine && n->expires_at > t1 + SLACK_MS;
    bool gone = !mine || n->expires_at <= t0 - SLACK_MS;
    if (c->status == 200) {
        count(&r->acked);
        int64_t cnt = -1, exp = 0;
        rel_json_int(c, "count", &cnt);
        if (!n->doubt && gone) {
            count(&r->violations);
            rel_fail("leases",
                     "l%d: %s by o%d accepted; model: %s o%d until %" PRId64 ", now %" PRId64, idx,
                     renew ? "renew" : "release", owner, n->held ? "held by" : "free", n->owner,
                     n->expires_at, t0);
        } else if (!n->doubt && cnt != (renew ? n->count : n->count - 1)) {
            count(&r->violations);
            rel_fail("leases", "l%d: %s: count %" PRId64 " after %" PRId64, idx,
                     renew ? "renew" : "release", cnt, n->count);
        }
        if (renew) {
            int who;
            int64_t token;
            if (parse_lease(c, &who, &token, &cnt, &exp)) {
                if (!n->doubt && token != n->token) {
                    count(&r->violations);
                    rel_fail("leases", "l%d: renew changed the token %" PRId64 " to %" PRId64, idx,
                             n->token, token);
                }
                set_state(n, true, owner, token, cnt, exp);
            } else {
                n->doubt = true;
            }
        } else if (cnt == 0) {
            n->held = false;
            n->doubt = false;
        } else {
            n->count = cnt; /* the token and expiry stay (unknown if in doubt) */
        }
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "not_owner") == 0) {
        if (!n->doubt && live) {
            count(&r->violations);
            rel_fail("leases",
                     "l%d: %s by the holder o%d refused, held until %" PRId64 ", now %" PRId64, idx,
                     renew ? "renew" : "release", owner, n->expires_at, t1);
        }
        if (mine)
            n->held = false; /* expired (or lost) */
    } else {
        count(&r->violations);
        rel_fail("leases", "POST %s answered %ld %s", path, c->status, c->body);
    }
    return 0;
}

static int ls_step(void *model, rel_worker_t *w, rel_report_t *r)
{
    ls_model_t *m = model;
    int idx = (int)(rel_rand(&w->rng) % NAMES);
    ls_name_t *n = &m->names[idx];
    if (pthread_mutex_trylock(&n->lock) != 0)
        return 0; /* another worker has it: pick again next time */
    unsigned dice = (unsigned)(rel_rand(&w->rng) % 100);
    int owner = (int)(rel_rand(&w->rng) % OWNERS);
    if (dice >= 50 && n->held && rel_rand(&w->rng) % 5 != 0)
        owner = n->owner; /* mostly the holder gives back or renews */
    int rc;
    if (dice < 50)
        rc = acquire(m, n, idx, owner, w, r);
    else
        rc = give_back(m, n, idx, owner, dice >= 85, w, r);
    pthread_mutex_unlock(&n->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Checkers
 * ------------------------------------------------------------------------ */

static const char SQL_TOKEN[] = "SELECT value FROM meta WHERE name = 'fencing_token'";

static void ls_check_file(void *model, dbread_t *db, rel_report_t *r)
{
    ls_model_t *m = model;
    int64_t persisted = -1;
    if (dbread_int(db, SQL_TOKEN, NULL, &persisted) != 0)
        persisted = -1;
    if (persisted >= m->max_token)
        return;
    uint64_t above = 0;
    for (size_t i = 0; i < m->ntokens; i++)
        above += m->tokens[i] > persisted;
    r->lost += above ? above : 1;
    rel_fail("leases",
             "file: fencing_token counter %" PRId64 ", %" PRId64 " acknowledged "
             "(%" PRIu64 " tokens above it)",
             persisted, m->max_token, above);
}

static void check_name(ls_name_t *n, int idx, rel_client_t *c, rel_report_t *r)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/leases/crash-l%d", idx);
    int64_t t0 = testutil_wall_ms();
    rel_transport_t t = rel_request(c, "GET", path, NULL, 0);
    int64_t t1 = testutil_wall_ms();
    if (t != REL_ANSWERED || (c->status != 200 && c->status != 404)) {
        r->violations++;
        rel_fail("leases", "GET %s after restart: no usable answer (%ld)", path, c->status);
        n->doubt = true;
        return;
    }
    int who = -1;
    int64_t token = 0, cnt = 0, exp = 0;
    if (c->status == 200 && !parse_lease(c, &who, &token, &cnt, &exp)) {
        r->violations++;
        rel_fail("leases", "GET %s after restart: %s", path, c->body);
        n->doubt = true;
        return;
    }
    if (!n->doubt) {
        bool live = n->held && n->expires_at > t1 + SLACK_MS;
        bool free_ = !n->held || n->expires_at <= t0 - SLACK_MS;
        if (live && (c->status != 200 || who != n->owner || token != n->token || cnt != n->count ||
                     exp != n->expires_at)) {
            r->lost++;
            rel_fail("leases",
                     "l%d: held by o%d token %" PRId64 " count %" PRId64 " until %" PRId64
                     " (now %" PRId64 "), after restart: %ld %s",
                     idx, n->owner, n->token, n->count, n->expires_at, t1, c->status, c->body);
        } else if (free_ && c->status == 200) {
            r->violations++;
            if (n->held)
                rel_fail("leases",
                         "l%d: expired at %" PRId64 " (now %" PRId64 "), after "
                         "restart: %s",
                         idx, n->expires_at, t0, c->body);
            else
                rel_fail("leases", "l%d: free, after restart: %s", idx, c->body);
        }
    }
    set_state(n, c->status == 200, who, token, cnt, exp);
}

/* A fresh name must get a token above every one acknowledged before. */
static void probe_token(ls_model_t *m, rel_client_t *c, rel_report_t *r)
{
    char path[64];
    const char body[] = "{\"owner\":\"o0\",\"ttl_ms\":100,\"wait_ms\":0}";
    snprintf(path, sizeof path, "/v1/leases/crash-lprobe%u/acquire", ++m->probes);
    int64_t before = m->max_token, token = 0;
    if (rel_request(c, "POST", path, body, sizeof body - 1) != REL_ANSWERED || c->status != 200 ||
        rel_json_int(c, "token", &token) != 0 || token <= before) {
        r->violations++;
        rel_fail("leases",
                 "probe acquire after restart: %ld, token %" PRId64
                 ", largest acknowledged %" PRId64 " %s",
                 c->status, token, before, c->body);
        return;
    }
    r->acked++;
    note_token(m, token);
}

static void ls_check_restart(void *model, rel_client_t *c, rel_report_t *r)
{
    ls_model_t *m = model;
    for (int i = 0; i < NAMES; i++)
        check_name(&m->names[i], i, c, r);
    m->ntokens = 0; /* persisted: the file check covers the next cycle's tokens */
    probe_token(m, c, r);
}

const rel_domain_t rel_domain_leases = {
    .name = "leases",
    .weight = 1,
    .create = ls_create,
    .destroy = ls_destroy,
    .step = ls_step,
    .check_file = ls_check_file,
    .check_restart = ls_check_restart,
};
