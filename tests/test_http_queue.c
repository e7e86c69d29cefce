/*
 * test_http_queue.c - the delay queue's contract over real HTTP against the
 * daemon (tests/daemon.h): each endpoint and error (every bound, strict
 * bodies, 404, 405, 409 claim_expired, 413 past --max-body), idempotent
 * enqueue, due order, visibility expiry and a late ack refused, claims
 * parked on 2 worker threads woken by an enqueue and at a due time
 * (latencies printed), parked claims answered 503 when the daemon stops,
 * the metrics, and jobs surviving SIGKILL and a restart. Runs on SQLite
 * and, as tests/pg/test_http_queue.pg, on PostgreSQL.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "testutil.h"

typedef daemon_fixture_t fixture_t;

/* Two worker threads: parked claims must not need one each. A small
 * --max-body for the 413 test. */
static const char *const daemon_args[] = {"--threads", "2", "--max-body", "4096", NULL};

static int setup(void **state)
{
    return daemon_fixture_start(state, daemon_args);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* A request with a JSON body (printf format, NULL = none); returns the
 * status, the body parsed into *out when out is not NULL (NULL for an
 * empty body; caller decrefs). */
static long call(const daemon_t *d, const char *method, const char *path, json_t **out,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static long call(const daemon_t *d, const char *method, const char *path, json_t **out,
                 const char *fmt, ...)
{
    char body[8192] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(body, sizeof body, fmt, ap);
        va_end(ap);
    }
    client_resp_t r;
    const char *h[] = {"Content-Type: application/json", NULL};
    assert_int_equal(client_request(d, method, path, h, fmt ? body : NULL, strlen(body), &r), 0);
    long status = r.status;
    if (out)
        *out = r.body_len ? client_json(&r) : NULL;
    client_resp_free(&r);
    return status;
}

/* The call answers a problem with this status and code. */
static void expect_problem(const daemon_t *d, const char *method, const char *path,
                           const char *body, long expected, const char *code)
{
    json_t *p = NULL;
    long st = body ? call(d, method, path, &p, "%s", body) : call(d, method, path, &p, NULL);
    if (st != expected || !p)
        fail_msg("%s %s %s: %ld, expected %ld", method, path, body ? body : "", st, expected);
    assert_string_equal(client_str_member(p, "code"), code);
    assert_int_equal(client_int_member(p, "status"), expected);
    json_decref(p);
}

/* Claim and return the jobs array (caller decrefs the whole answer *ans). */
static json_t *claim(const daemon_t *d, const char *queue, const char *body, json_t **ans)
{
    char path[300];
    snprintf(path, sizeof path, "/v1/queues/%s/claim", queue);
    assert_int_equal(call(d, "POST", path, ans, "%s", body), 200);
    json_t *jobs = json_object_get(*ans, "jobs");
    assert_true(json_is_array(jobs));
    assert_int_equal(json_object_size(*ans), 1);
    return jobs;
}

/* ------------------------------------------------------------------------
 * Each endpoint
 * ------------------------------------------------------------------------ */

static void test_http_queue_enqueue_get_claim_ack(void **state)
{
    fixture_t *f = *state;
    json_t *a, *b, *g;
    assert_int_equal(call(&f->d, "POST", "/v1/queues/mail/jobs", &a,
                          "{\"payload\":{\"to\":\"a@example.com\",\"n\":[1,2]},\"id\":\"m1\"}"),
                     201);
    assert_string_equal(client_str_member(a, "id"), "m1");
    assert_string_equal(client_str_member(a, "queue"), "mail");
    assert_string_equal(client_str_member(a, "state"), "ready");
    assert_int_equal(client_int_member(a, "attempts"), 0);
    assert_true(client_int_member(a, "run_at") > 0);
    assert_int_equal(json_object_size(a), 6);
    json_t *payload = json_pack("{s:s, s:[i,i]}", "to", "a@example.com", "n", 1, 2);
    assert_true(json_equal(json_object_get(a, "payload"), payload));
    /* the same id again: 200, the existing job, nothing changed */
    assert_int_equal(call(&f->d, "POST", "/v1/queues/mail/jobs", &b,
                          "{\"payload\":\"other\",\"id\":\"m1\",\"delay_ms\":5000}"),
                     200);
    assert_true(json_equal(a, b));
    json_decref(b);
    assert_int_equal(call(&f->d, "GET", "/v1/queues/mail/jobs/m1", &g, NULL), 200);
    assert_true(json_equal(a, g));
    json_decref(g);
    json_decref(a);
    /* a server-made id */
    assert_int_equal(call(&f->d, "POST", "/v1/queues/mail/jobs", &a,
                          "{\"payload\":null,\"delay_ms\":60000}"),
                     201);
    assert_int_equal(strlen(client_str_member(a, "id")), 32);
    assert_string_equal(client_str_member(a, "state"), "delayed");
    assert_true(json_is_null(json_object_get(a, "payload")));
    json_decref(a);
    assert_int_equal(call(&f->d, "GET", "/v1/queues/mail", &g, NULL), 200);
    assert_int_equal(client_int_member(g, "ready"), 1);
    assert_int_equal(client_int_member(g, "delayed"), 1);
    assert_int_equal(client_int_member(g, "claimed"), 0);
    assert_string_equal(client_str_member(g, "queue"), "mail");
    json_decref(g);
    /* claim */
    json_t *ans;
    json_t *jobs =
        claim(&f->d, "mail", "{\"worker\":\"w1\",\"visibility_ms\":30000,\"max\":10}", &ans);
    assert_int_equal(json_array_size(jobs), 1);
    json_t *j = json_array_get(jobs, 0);
    assert_string_equal(client_str_member(j, "id"), "m1");
    assert_string_equal(client_str_member(j, "state"), "claimed");
    assert_int_equal(client_int_member(j, "attempts"), 1);
    assert_true(json_equal(json_object_get(j, "payload"), payload));
    int64_t token = client_int_member(j, "claim_token");
    assert_true(token >= 1);
    json_decref(ans);
    json_decref(payload);
    assert_int_equal(call(&f->d, "GET", "/v1/queues/mail/jobs/m1", &g, NULL), 200);
    assert_string_equal(client_str_member(g, "state"), "claimed");
    json_decref(g);
    /* ack with another token: 409; with its own: 204; again: 404 */
    char body[64];
    snprintf(body, sizeof body, "{\"claim_token\":%lld}", (long long)token + 1000);
    expect_problem(&f->d, "POST", "/v1/queues/mail/jobs/m1/ack", body, 409, "claim_expired");
    json_t *none;
    assert_int_equal(call(&f->d, "POST", "/v1/queues/mail/jobs/m1/ack", &none,
                          "{\"claim_token\":%lld}", (long long)token),
                     204);
    assert_null(none);
    snprintf(body, sizeof body, "{\"claim_token\":%lld}", (long long)token);
    expect_problem(&f->d, "POST", "/v1/queues/mail/jobs/m1/ack", body, 404, "not_found");
    expect_problem(&f->d, "GET", "/v1/queues/mail/jobs/m1", NULL, 404, "not_found");
}

static void test_http_queue_nack_cancel_and_due_order(void **state)
{
    fixture_t *f = *state;
    json_t *a, *ans;
    const char *ids[] = {"c", "a", "b"};
    const int delays[] = {600, 200, 400};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(call(&f->d, "POST", "/v1/queues/q/jobs", &a,
                              "{\"payload\":%d,\"id\":\"%s\",\"delay_ms\":%d}", i, ids[i],
                              delays[i]),
                         201);
        json_decref(a);
    }
    json_t *jobs = claim(&f->d, "q", "{\"worker\":\"w\",\"visibility_ms\":100,\"max\":3}", &ans);
    assert_int_equal(json_array_size(jobs), 0); /* none due yet */
    json_decref(ans);
    usleep(700000);
    jobs = claim(&f->d, "q", "{\"worker\":\"w\",\"visibility_ms\":10000,\"max\":3}", &ans);
    assert_int_equal(json_array_size(jobs), 3);
    int64_t prev = 0, tokens[3];
    for (int i = 0; i < 3; i++) {
        json_t *j = json_array_get(jobs, (size_t)i);
        static const char *const order[] = {"a", "b", "c"};
        assert_string_equal(client_str_member(j, "id"), order[i]);
        tokens[i] = client_int_member(j, "claim_token");
        assert_true(tokens[i] > prev);
        prev = tokens[i];
    }
    json_decref(ans);
    /* nack a with a delay: delayed, then due again */
    json_t *none;
    assert_int_equal(call(&f->d, "POST", "/v1/queues/q/jobs/a/nack", &none,
                          "{\"claim_token\":%lld,\"delay_ms\":300}", (long long)tokens[0]),
                     204);
    assert_int_equal(call(&f->d, "GET", "/v1/queues/q/jobs/a", &a, NULL), 200);
    assert_string_equal(client_str_member(a, "state"), "delayed");
    json_decref(a);
    char body[64];
    snprintf(body, sizeof body, "{\"claim_token\":%lld}", (long long)tokens[0]);
    expect_problem(&f->d, "POST", "/v1/queues/q/jobs/a/nack", body, 409, "claim_expired");
    expect_problem(&f->d, "POST", "/v1/queues/q/jobs/zz/nack", body, 404, "not_found");
    /* b without delay: ready at once */
    assert_int_equal(call(&f->d, "POST", "/v1/queues/q/jobs/b/nack", &none,
                          "{\"claim_token\":%lld}", (long long)tokens[1]),
                     204);
    assert_int_equal(call(&f->d, "GET", "/v1/queues/q/jobs/b", &a, NULL), 200);
    assert_string_equal(client_str_member(a, "state"), "ready");
    json_decref(a);
    /* cancel: 204, then 404 */
    assert_int_equal(call(&f->d, "DELETE", "/v1/queues/q/jobs/c", &none, NULL), 204);
    expect_problem(&f->d, "DELETE", "/v1/queues/q/jobs/c", NULL, 404, "not_found");
    snprintf(body, sizeof body, "{\"claim_token\":%lld}", (long long)tokens[2]);
    expect_problem(&f->d, "POST", "/v1/queues/q/jobs/c/ack", body, 404, "not_found");
}

static void test_http_queue_visibility_expiry_and_late_ack(void **state)
{
    fixture_t *f = *state;
    json_t *a, *ans;
    assert_int_equal(call(&f->d, "POST", "/v1/queues/v/jobs", &a, "{\"payload\":1,\"id\":\"j\"}"),
                     201);
    json_decref(a);
    char body[96];
    int64_t vis = 200 * testutil_scale(); /* valgrind: the second claim must come within it */
    snprintf(body, sizeof body, "{\"worker\":\"slow\",\"visibility_ms\":%lld}", (long long)vis);
    json_t *jobs = claim(&f->d, "v", body, &ans);
    int64_t t1 = client_int_member(json_array_get(jobs, 0), "claim_token");
    json_decref(ans);
    jobs = claim(&f->d, "v", "{\"worker\":\"other\",\"visibility_ms\":200}", &ans);
    assert_int_equal(json_array_size(jobs), 0); /* held */
    json_decref(ans);
    usleep((useconds_t)(vis + 100) * 1000);
    assert_int_equal(call(&f->d, "GET", "/v1/queues/v/jobs/j", &a, NULL), 200);
    assert_string_equal(client_str_member(a, "state"), "ready");
    json_decref(a);
    snprintf(body, sizeof body, "{\"claim_token\":%lld}", (long long)t1);
    expect_problem(&f->d, "POST", "/v1/queues/v/jobs/j/ack", body, 409, "claim_expired");
    jobs = claim(&f->d, "v", "{\"worker\":\"other\",\"visibility_ms\":10000}", &ans);
    assert_int_equal(json_array_size(jobs), 1);
    assert_true(client_int_member(json_array_get(jobs, 0), "claim_token") > t1);
    assert_int_equal(client_int_member(json_array_get(jobs, 0), "attempts"), 2);
    json_decref(ans);
    expect_problem(&f->d, "POST", "/v1/queues/v/jobs/j/ack", body, 409, "claim_expired");
}

static void test_http_queue_bad_requests(void **state)
{
    fixture_t *f = *state;
    const daemon_t *d = &f->d;
    static const char *const bad_enqueue[] = {
        "{}",                          /* payload missing */
        "{\"payload\":1,\"extra\":1}", /* unknown member */
        "{\"payload\":1,\"delay_ms\":-1}",
        "{\"payload\":1,\"delay_ms\":2592000001}",
        "{\"payload\":1,\"delay_ms\":\"5\"}",
        "{\"payload\":1,\"delay_ms\":null}",
        "{\"payload\":1,\"id\":\"\"}",
        "{\"payload\":1,\"id\":7}",
        "{\"payload\":1,\"id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", /* 129 */
        "[1]",
        NULL};
    for (int i = 0; bad_enqueue[i]; i++)
        expect_problem(d, "POST", "/v1/queues/q/jobs", bad_enqueue[i], 400, "invalid_argument");
    expect_problem(d, "POST", "/v1/queues/q/jobs", "{\"payload\":", 400, "invalid_json");
    json_t *a;
    assert_int_equal(call(d, "POST", "/v1/queues/q/jobs", &a,
                          "{\"payload\":1,\"delay_ms\":2592000000,\"id\":\"%0128d\"}", 0),
                     201);
    json_decref(a);
    static const char *const bad_claim[] = {
        "{\"visibility_ms\":1000}",
        "{\"worker\":\"w\"}",
        "{\"worker\":\"w\",\"visibility_ms\":99}",
        "{\"worker\":\"w\",\"visibility_ms\":3600001}",
        "{\"worker\":\"w\",\"visibility_ms\":1000,\"wait_ms\":-1}",
        "{\"worker\":\"w\",\"visibility_ms\":1000,\"wait_ms\":30001}",
        "{\"worker\":\"w\",\"visibility_ms\":1000,\"max\":0}",
        "{\"worker\":\"w\",\"visibility_ms\":1000,\"max\":101}",
        "{\"worker\":\"w\",\"visibility_ms\":1000,\"other\":1}",
        "{\"worker\":\"\",\"visibility_ms\":1000}",
        NULL};
    for (int i = 0; bad_claim[i]; i++)
        expect_problem(d, "POST", "/v1/queues/q/claim", bad_claim[i], 400, "invalid_argument");
    json_t *ans;
    claim(d, "q", "{\"worker\":\"w\",\"visibility_ms\":100,\"wait_ms\":0,\"max\":100}", &ans);
    json_decref(ans);
    claim(d, "q", "{\"worker\":\"w\",\"visibility_ms\":3600000,\"max\":1}", &ans);
    json_decref(ans);
    static const char *const bad_ack[] = {"{}", "{\"claim_token\":0}", "{\"claim_token\":\"1\"}",
                                          "{\"claim_token\":1,\"delay_ms\":1}", NULL};
    for (int i = 0; bad_ack[i]; i++)
        expect_problem(d, "POST", "/v1/queues/q/jobs/x/ack", bad_ack[i], 400, "invalid_argument");
    static const char *const bad_nack[] = {"{}", "{\"claim_token\":1,\"delay_ms\":-1}",
                                           "{\"claim_token\":1,\"delay_ms\":2592000001}",
                                           "{\"claim_token\":1,\"x\":1}", NULL};
    for (int i = 0; bad_nack[i]; i++)
        expect_problem(d, "POST", "/v1/queues/q/jobs/x/nack", bad_nack[i], 400, "invalid_argument");
    /* names: 257 bytes of queue, 129 of id */
    char path[600];
    snprintf(path, sizeof path, "/v1/queues/%0257d", 0);
    expect_problem(d, "GET", path, NULL, 400, "invalid_argument");
    snprintf(path, sizeof path, "/v1/queues/%0256d", 0);
    assert_int_equal(call(d, "GET", path, &a, NULL), 200);
    json_decref(a);
    snprintf(path, sizeof path, "/v1/queues/q/jobs/%0129d", 0);
    expect_problem(d, "GET", path, NULL, 400, "invalid_argument");
    expect_problem(d, "GET", "/v1/queues/q/jobs/%00", NULL, 400, "invalid_argument");
    /* methods */
    expect_problem(d, "PUT", "/v1/queues/q/jobs/x", NULL, 405, "method_not_allowed");
    expect_problem(d, "GET", "/v1/queues/q/claim", NULL, 405, "method_not_allowed");
    expect_problem(d, "DELETE", "/v1/queues/q", NULL, 405, "method_not_allowed");
    expect_problem(d, "GET", "/v1/queues/q/jobs/x/ack", NULL, 405, "method_not_allowed");
    /* a payload past --max-body (4096 here): 413, never stored */
    char *big = malloc(6000);
    int n = snprintf(big, 6000, "{\"payload\":\"");
    memset(big + n, 'x', 5000);
    snprintf(big + n + 5000, 6000 - (size_t)n - 5000, "\",\"id\":\"big\"}");
    expect_problem(d, "POST", "/v1/queues/q/jobs", big, 413, "payload_too_large");
    free(big);
    expect_problem(d, "GET", "/v1/queues/q/jobs/big", NULL, 404, "not_found");
}

/* ------------------------------------------------------------------------
 * Waiting claims
 * ------------------------------------------------------------------------ */

typedef struct parked {
    const daemon_t *d;
    const char *queue;
    int wait_ms;
    long status;
    json_t *ans;
    int64_t got_at; /* wall ms */
} parked_t;

static void *park_claim(void *arg)
{
    parked_t *p = arg;
    char path[300];
    snprintf(path, sizeof path, "/v1/queues/%s/claim", p->queue);
    p->status = call(p->d, "POST", path, &p->ans,
                     "{\"worker\":\"parked\",\"visibility_ms\":30000,\"wait_ms\":%d}", p->wait_ms);
    p->got_at = testutil_wall_ms();
    return NULL;
}

#define PARKED 6

static void test_http_queue_parked_claims_woken(void **state)
{
    fixture_t *f = *state;
    /* more parked claims than worker threads: each woken by one enqueue */
    parked_t ps[PARKED];
    pthread_t th[PARKED];
    for (int i = 0; i < PARKED; i++) {
        ps[i] = (parked_t){.d = &f->d, .queue = "w", .wait_ms = 20000};
        assert_int_equal(pthread_create(&th[i], NULL, park_claim, &ps[i]), 0);
    }
    usleep(300000);
    json_t *a, *g;
    /* GETs are served while they are parked */
    assert_int_equal(call(&f->d, "GET", "/v1/queues/w", &g, NULL), 200);
    json_decref(g);
    int64_t t0 = testutil_wall_ms();
    for (int i = 0; i < PARKED; i++) {
        assert_int_equal(call(&f->d, "POST", "/v1/queues/w/jobs", &a,
                              "{\"payload\":%d,\"id\":\"n%d\"}", i, i),
                         201);
        json_decref(a);
    }
    int64_t worst = 0;
    for (int i = 0; i < PARKED; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ps[i].status, 200);
        assert_int_equal(json_array_size(json_object_get(ps[i].ans, "jobs")), 1);
        json_decref(ps[i].ans);
        if (ps[i].got_at - t0 > worst)
            worst = ps[i].got_at - t0;
    }
    print_message("%d parked claims served %lld ms after the first enqueue (%s)\n", PARKED,
                  (long long)worst, testutil_backend_name());
    assert_true(worst < 5000 * testutil_scale());
    /* at a due time */
    for (int round = 0; round < 3; round++) {
        parked_t p = {.d = &f->d, .queue = "due", .wait_ms = 20000};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, park_claim, &p), 0);
        usleep(100000);
        assert_int_equal(call(&f->d, "POST", "/v1/queues/due/jobs", &a,
                              "{\"payload\":1,\"delay_ms\":400}"),
                         201);
        int64_t run_at = client_int_member(a, "run_at");
        json_decref(a);
        pthread_join(t, NULL);
        assert_int_equal(p.status, 200);
        assert_int_equal(json_array_size(json_object_get(p.ans, "jobs")), 1);
        json_decref(p.ans);
        print_message("run_at to parked HTTP claimer: %lld ms (%s)\n",
                      (long long)(p.got_at - run_at), testutil_backend_name());
        assert_true(p.got_at - run_at < 250 * testutil_scale());
    }
    /* a wait that ends with nothing: 200 [] */
    parked_t p = {.d = &f->d, .queue = "empty", .wait_ms = 300};
    int64_t t1 = testutil_wall_ms();
    park_claim(&p);
    assert_int_equal(p.status, 200);
    assert_int_equal(json_array_size(json_object_get(p.ans, "jobs")), 0);
    assert_true(p.got_at - t1 >= 290);
    json_decref(p.ans);
}

static void test_http_queue_parked_claims_get_503_on_stop(void **state)
{
    fixture_t *f = *state;
    parked_t ps[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ps[i] = (parked_t){.d = &f->d, .queue = "stop", .wait_ms = 30000};
        assert_int_equal(pthread_create(&th[i], NULL, park_claim, &ps[i]), 0);
    }
    usleep(300000);
    int64_t t0 = testutil_wall_ms();
    assert_int_equal(daemon_stop(&f->d), 0);
    assert_true(testutil_wall_ms() - t0 < 20000);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ps[i].status, 503);
        assert_string_equal(client_str_member(ps[i].ans, "code"), "unavailable");
        json_decref(ps[i].ans);
    }
}

/* ------------------------------------------------------------------------
 * Metrics and restarts
 * ------------------------------------------------------------------------ */

static void test_http_queue_metrics(void **state)
{
    fixture_t *f = *state;
    json_t *a, *ans;
    assert_int_equal(call(&f->d, "POST", "/v1/queues/m/jobs", &a, "{\"payload\":1}"), 201);
    json_decref(a);
    assert_int_equal(call(&f->d, "POST", "/v1/queues/m/jobs", &a,
                          "{\"payload\":1,\"delay_ms\":60000}"),
                     201);
    json_decref(a);
    json_t *jobs = claim(&f->d, "m", "{\"worker\":\"w\",\"visibility_ms\":10000}", &ans);
    char path[400];
    snprintf(path, sizeof path, "/v1/queues/m/jobs/%s/ack",
             client_str_member(json_array_get(jobs, 0), "id"));
    json_t *none;
    assert_int_equal(call(&f->d, "POST", path, &none, "{\"claim_token\":%lld}",
                          (long long)client_int_member(json_array_get(jobs, 0), "claim_token")),
                     204);
    json_decref(ans);
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    const char *want[] = {"sqlcached_queue_jobs_enqueued_total{queue=\"m\"} 2\n",
                          "sqlcached_queue_jobs_claimed_total{queue=\"m\"} 1\n",
                          "sqlcached_queue_jobs_acked_total{queue=\"m\"} 1\n",
                          "sqlcached_queue_expired_claims_total{queue=\"m\"} 0\n",
                          "sqlcached_queue_jobs{state=\"delayed\"} 1\n",
                          "sqlcached_queue_jobs{state=\"ready\"} 0\n",
                          "sqlcached_queue_jobs{state=\"claimed\"} 0\n",
                          "sqlcached_queue_waiting_claims 0\n",
                          NULL};
    for (int i = 0; want[i]; i++)
        if (!strstr(r.body, want[i]))
            fail_msg("/metrics lacks %s", want[i]);
    client_resp_free(&r);
    json_t *s;
    assert_int_equal(call(&f->d, "GET", "/v1/stats", &s, NULL), 200);
    json_t *q = json_object_get(s, "queues");
    assert_int_equal(client_int_member(json_object_get(json_object_get(q, "by_queue"), "m"),
                                       "acked"),
                     1);
    assert_int_equal(client_int_member(json_object_get(q, "jobs"), "delayed"), 1);
    json_decref(s);
}

static void test_http_queue_jobs_survive_kill(void **state)
{
    fixture_t *f = *state;
    json_t *a, *ans;
    assert_int_equal(call(&f->d, "POST", "/v1/queues/k/jobs", &a,
                          "{\"payload\":{\"keep\":1},\"id\":\"k1\"}"),
                     201);
    json_decref(a);
    assert_int_equal(call(&f->d, "POST", "/v1/queues/k/jobs", &a, "{\"payload\":2,\"id\":\"k2\"}"),
                     201);
    json_decref(a);
    json_t *jobs = claim(&f->d, "k", "{\"worker\":\"w\",\"visibility_ms\":60000}", &ans);
    int64_t t1 = client_int_member(json_array_get(jobs, 0), "claim_token");
    json_decref(ans);
    daemon_kill(&f->d);
    assert_int_equal(daemon_restart(&f->d), 0);
    assert_int_equal(call(&f->d, "GET", "/v1/queues/k", &a, NULL), 200);
    assert_int_equal(client_int_member(a, "claimed"), 1);
    assert_int_equal(client_int_member(a, "ready"), 1);
    json_decref(a);
    jobs = claim(&f->d, "k", "{\"worker\":\"w\",\"visibility_ms\":60000}", &ans);
    assert_int_equal(json_array_size(jobs), 1);
    assert_string_equal(client_str_member(json_array_get(jobs, 0), "id"), "k2");
    assert_true(client_int_member(json_array_get(jobs, 0), "claim_token") > t1);
    json_decref(ans);
    json_t *none;
    assert_int_equal(call(&f->d, "POST", "/v1/queues/k/jobs/k1/ack", &none,
                          "{\"claim_token\":%lld}", (long long)t1),
                     204);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_queue_enqueue_get_claim_ack, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_queue_nack_cancel_and_due_order, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_queue_visibility_expiry_and_late_ack, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_queue_bad_requests, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_queue_parked_claims_woken, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_queue_parked_claims_get_503_on_stop, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_queue_metrics, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_queue_jobs_survive_kill, setup,
                                        daemon_fixture_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
