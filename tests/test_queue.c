/*
 * test_queue.c - tests of src/queue.c through the public calls
 * (sqlcached_queue_*): enqueue (idempotent ids, server-made ids), get,
 * counts, claim in due order with strictly increasing tokens, visibility
 * expiry and late acks, nack, cancel, every argument bound, waiting claims
 * woken by an enqueue and by a due time (latencies printed), the
 * asynchronous claim, restart, and 16 workers over 2,000 jobs (each acked
 * exactly once, none lost). Runs on SQLite and, as tests/pg/test_queue.pg,
 * on PostgreSQL.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define T0 1700000000000LL
#define Q "mail"
#define QL (sizeof Q - 1)
#define S(x) x, strlen(x)

/* The store of a test: testutil.h. */
typedef testutil_fixture_t fixture_t;

static int setup(void **state)
{
    return testutil_fixture_setup(state, "queue.db", true);
}

/* On the wall clock: the timer's wake-ups at a due time. */
static int setup_wall(void **state)
{
    return testutil_fixture_setup(state, "queue.db", false);
}

static int teardown(void **state)
{
    return testutil_fixture_teardown(state);
}

static sqlcached_status_t enqueue(sqlcached_t *db, const char *id, const char *payload,
                                  int64_t delay_ms)
{
    return sqlcached_queue_enqueue(db, Q, QL, id, id ? strlen(id) : 0, S(payload), delay_ms, NULL,
                                   NULL);
}

static sqlcached_jobs_t *claim(sqlcached_t *db, unsigned max, int64_t vis, int64_t wait)
{
    sqlcached_jobs_t *jobs = NULL;
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w1"), vis, wait, max, &jobs),
                     SQLCACHED_OK);
    assert_non_null(jobs);
    return jobs;
}

/* ------------------------------------------------------------------------ */

static void test_enqueue_get_counts(void **state)
{
    fixture_t *f = *state;
    sqlcached_job_t job;
    int created = -1;
    assert_int_equal(sqlcached_queue_enqueue(f->db, Q, QL, S("a"), S("{\"n\":1}"), 0, &job,
                                             &created),
                     SQLCACHED_OK);
    assert_int_equal(created, 1);
    assert_string_equal(job.id, "a");
    assert_string_equal(job.queue, Q);
    assert_string_equal(job.payload, "{\"n\":1}");
    assert_int_equal(job.state, SQLCACHED_JOB_READY);
    assert_int_equal(job.run_at, T0);
    assert_int_equal(job.attempts, 0);
    sqlcached_job_clear(&job);
    assert_int_equal(enqueue(f->db, "b", "2", 5000), SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("b"), &job), SQLCACHED_OK);
    assert_int_equal(job.state, SQLCACHED_JOB_DELAYED);
    assert_int_equal(job.run_at, T0 + 5000);
    assert_string_equal(job.payload, "2");
    sqlcached_job_clear(&job);
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("zz"), &job), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_queue_get(f->db, S("other"), S("a"), &job), SQLCACHED_NOT_FOUND);
    sqlcached_queue_counts_t c;
    assert_int_equal(sqlcached_queue_counts(f->db, Q, QL, &c), SQLCACHED_OK);
    assert_int_equal(c.ready, 1);
    assert_int_equal(c.delayed, 1);
    assert_int_equal(c.claimed, 0);
    sqlcached_jobs_t *jobs = claim(f->db, 5, 1000, 0);
    assert_int_equal(jobs->count, 1);
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_counts(f->db, Q, QL, &c), SQLCACHED_OK);
    assert_int_equal(c.ready + c.delayed * 10 + c.claimed * 100, 110);
    assert_int_equal(sqlcached_queue_counts(f->db, NULL, 0, &c), SQLCACHED_OK);
    assert_int_equal(c.claimed, 1);
    assert_int_equal(sqlcached_queue_counts(f->db, S("empty"), &c), SQLCACHED_OK);
    assert_int_equal(c.ready + c.delayed + c.claimed, 0);
}

static void test_enqueue_is_idempotent_and_makes_ids(void **state)
{
    fixture_t *f = *state;
    sqlcached_job_t job;
    int created = -1;
    assert_int_equal(enqueue(f->db, "same", "\"first\"", 1000), SQLCACHED_OK);
    f->clock.now += 10;
    assert_int_equal(sqlcached_queue_enqueue(f->db, Q, QL, S("same"), S("\"second\""), 0, &job,
                                             &created),
                     SQLCACHED_OK);
    assert_int_equal(created, 0);
    assert_string_equal(job.payload, "\"first\"");
    assert_int_equal(job.run_at, T0 + 1000);
    assert_int_equal(job.state, SQLCACHED_JOB_DELAYED);
    sqlcached_job_clear(&job);
    /* the same id in another queue is another job */
    assert_int_equal(sqlcached_queue_enqueue(f->db, S("q2"), S("same"), S("1"), 0, NULL, &created),
                     SQLCACHED_OK);
    assert_int_equal(created, 1);
    sqlcached_job_t a, b;
    assert_int_equal(sqlcached_queue_enqueue(f->db, Q, QL, NULL, 0, S("1"), 0, &a, NULL),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_enqueue(f->db, Q, QL, NULL, 0, S("1"), 0, &b, NULL),
                     SQLCACHED_OK);
    assert_int_equal(a.id_len, 32);
    assert_string_not_equal(a.id, b.id);
    sqlcached_job_clear(&a);
    sqlcached_job_clear(&b);
    sqlcached_queue_counts_t c;
    assert_int_equal(sqlcached_queue_counts(f->db, Q, QL, &c), SQLCACHED_OK);
    assert_int_equal(c.ready + c.delayed, 3);
}

static void test_claims_in_due_order_with_increasing_tokens(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(enqueue(f->db, "c", "3", 300), SQLCACHED_OK);
    assert_int_equal(enqueue(f->db, "a", "1", 100), SQLCACHED_OK);
    assert_int_equal(enqueue(f->db, "b", "2", 200), SQLCACHED_OK);
    assert_int_equal(enqueue(f->db, "later", "4", 10000), SQLCACHED_OK);
    sqlcached_jobs_t *jobs = claim(f->db, 10, 1000, 0);
    assert_int_equal(jobs->count, 0); /* nothing due yet */
    sqlcached_jobs_free(jobs);
    f->clock.now += 300;
    jobs = claim(f->db, 2, 1000, 0);
    assert_int_equal(jobs->count, 2);
    assert_string_equal(jobs->jobs[0].id, "a");
    assert_string_equal(jobs->jobs[1].id, "b");
    assert_true(jobs->jobs[0].claim_token > 0);
    assert_true(jobs->jobs[1].claim_token > jobs->jobs[0].claim_token);
    assert_int_equal(jobs->jobs[0].attempts, 1);
    assert_int_equal(jobs->jobs[0].state, SQLCACHED_JOB_CLAIMED);
    assert_int_equal(jobs->jobs[0].run_at, f->clock.now + 1000);
    int64_t last = jobs->jobs[1].claim_token;
    sqlcached_jobs_free(jobs);
    jobs = claim(f->db, 10, 1000, 0);
    assert_int_equal(jobs->count, 1);
    assert_string_equal(jobs->jobs[0].id, "c");
    assert_string_equal(jobs->jobs[0].payload, "3");
    assert_true(jobs->jobs[0].claim_token > last);
    sqlcached_jobs_free(jobs);
    /* a claim on another queue takes nothing of this one */
    jobs = NULL;
    assert_int_equal(sqlcached_queue_claim(f->db, S("other"), S("w"), 1000, 0, 10, &jobs),
                     SQLCACHED_OK);
    assert_int_equal(jobs->count, 0);
    sqlcached_jobs_free(jobs);
}

static void test_visibility_expiry_and_late_ack(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(enqueue(f->db, "j", "1", 0), SQLCACHED_OK);
    sqlcached_jobs_t *jobs = claim(f->db, 1, 1000, 0);
    assert_int_equal(jobs->count, 1);
    int64_t t1 = jobs->jobs[0].claim_token;
    sqlcached_jobs_free(jobs);
    /* held: nobody else gets it */
    jobs = claim(f->db, 1, 1000, 0);
    assert_int_equal(jobs->count, 0);
    sqlcached_jobs_free(jobs);
    sqlcached_job_t job;
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("j"), &job), SQLCACHED_OK);
    assert_int_equal(job.state, SQLCACHED_JOB_CLAIMED);
    sqlcached_job_clear(&job);
    f->clock.now += 1000; /* the claim ends */
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("j"), &job), SQLCACHED_OK);
    assert_int_equal(job.state, SQLCACHED_JOB_READY);
    sqlcached_job_clear(&job);
    assert_int_equal(sqlcached_queue_ack(f->db, Q, QL, S("j"), t1), SQLCACHED_CLAIM_EXPIRED);
    jobs = claim(f->db, 1, 1000, 0);
    assert_int_equal(jobs->count, 1);
    int64_t t2 = jobs->jobs[0].claim_token;
    assert_true(t2 > t1);
    assert_int_equal(jobs->jobs[0].attempts, 2);
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_ack(f->db, Q, QL, S("j"), t1), SQLCACHED_CLAIM_EXPIRED);
    assert_int_equal(sqlcached_queue_nack(f->db, Q, QL, S("j"), t1, 0), SQLCACHED_CLAIM_EXPIRED);
    assert_int_equal(sqlcached_queue_ack(f->db, Q, QL, S("j"), t2), SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_ack(f->db, Q, QL, S("j"), t2), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("j"), &job), SQLCACHED_NOT_FOUND);
    sqlcached_queue_stats_t st;
    sqlcached_queue_stats(f->db, &st);
    assert_int_equal(st.count, 1);
    assert_string_equal(st.by_queue[0].queue, Q);
    assert_int_equal(st.by_queue[0].enqueued, 1);
    assert_int_equal(st.by_queue[0].claimed, 2);
    assert_int_equal(st.by_queue[0].acked, 1);
    assert_int_equal(st.by_queue[0].expired_claims, 1);
}

static void test_nack_and_cancel(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(enqueue(f->db, "j", "1", 0), SQLCACHED_OK);
    sqlcached_jobs_t *jobs = claim(f->db, 1, 5000, 0);
    int64_t t1 = jobs->jobs[0].claim_token;
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_nack(f->db, Q, QL, S("j"), t1, 2000), SQLCACHED_OK);
    sqlcached_job_t job;
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("j"), &job), SQLCACHED_OK);
    assert_int_equal(job.state, SQLCACHED_JOB_DELAYED);
    assert_int_equal(job.run_at, T0 + 2000);
    sqlcached_job_clear(&job);
    /* the nacked claim is over */
    assert_int_equal(sqlcached_queue_ack(f->db, Q, QL, S("j"), t1), SQLCACHED_CLAIM_EXPIRED);
    jobs = claim(f->db, 1, 5000, 0);
    assert_int_equal(jobs->count, 0);
    sqlcached_jobs_free(jobs);
    f->clock.now += 2000;
    jobs = claim(f->db, 1, 5000, 0);
    assert_int_equal(jobs->count, 1);
    int64_t t2 = jobs->jobs[0].claim_token;
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_nack(f->db, Q, QL, S("j"), t2, 0), SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("j"), &job), SQLCACHED_OK);
    assert_int_equal(job.state, SQLCACHED_JOB_READY);
    sqlcached_job_clear(&job);
    assert_int_equal(sqlcached_queue_cancel(f->db, Q, QL, S("j")), SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_cancel(f->db, Q, QL, S("j")), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_queue_nack(f->db, Q, QL, S("j"), t2, 0), SQLCACHED_NOT_FOUND);
    /* a claimed job can be cancelled too */
    assert_int_equal(enqueue(f->db, "k", "1", 0), SQLCACHED_OK);
    jobs = claim(f->db, 1, 5000, 0);
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_cancel(f->db, Q, QL, S("k")), SQLCACHED_OK);
}

static void test_invalid_arguments(void **state)
{
    fixture_t *f = *state;
    sqlcached_t *db = f->db;
    char big[SQLCACHED_QUEUE_NAME_MAX + 2];
    memset(big, 'x', sizeof big);
    sqlcached_jobs_t *jobs = NULL;
    const sqlcached_status_t bad = SQLCACHED_INVALID_ARGUMENT;
    assert_int_equal(sqlcached_queue_enqueue(db, "", 0, NULL, 0, S("1"), 0, NULL, NULL), bad);
    assert_int_equal(sqlcached_queue_enqueue(db, big, SQLCACHED_QUEUE_NAME_MAX + 1, NULL, 0, S("1"),
                                             0, NULL, NULL),
                     bad);
    assert_int_equal(sqlcached_queue_enqueue(db, big, SQLCACHED_QUEUE_NAME_MAX, NULL, 0, S("1"), 0,
                                             NULL, NULL),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, big, SQLCACHED_JOB_ID_MAX + 1, S("1"), 0,
                                             NULL, NULL),
                     bad);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, big, SQLCACHED_JOB_ID_MAX, S("1"), 0, NULL,
                                             NULL),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, "", 0, S("1"), 0, NULL, NULL), bad);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, "a\0b", 3, S("1"), 0, NULL, NULL), bad);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, NULL, 0, "", 0, 0, NULL, NULL), bad);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, NULL, 0, S("1"), -1, NULL, NULL), bad);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, NULL, 0, S("1"),
                                             SQLCACHED_QUEUE_DELAY_MAX_MS + 1, NULL, NULL),
                     bad);
    assert_int_equal(sqlcached_queue_enqueue(db, Q, QL, NULL, 0, S("1"),
                                             SQLCACHED_QUEUE_DELAY_MAX_MS, NULL, NULL),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w"), 99, 0, 1, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w"), 3600001, 0, 1, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w"), 1000, -1, 1, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w"), 1000, 30001, 1, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w"), 1000, 0, 0, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w"), 1000, 0, 101, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, "", 0, 1000, 0, 1, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, "", 0, S("w"), 1000, 0, 1, &jobs), bad);
    assert_int_equal(sqlcached_queue_claim(db, Q, QL, S("w"), 100, 0, 100, &jobs), SQLCACHED_OK);
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_ack(db, Q, QL, S("a"), 0), bad);
    assert_int_equal(sqlcached_queue_ack(db, Q, QL, "", 0, 1), bad);
    assert_int_equal(sqlcached_queue_nack(db, Q, QL, S("a"), 1, -1), bad);
    assert_int_equal(sqlcached_queue_nack(db, Q, QL, S("a"), 1, SQLCACHED_QUEUE_DELAY_MAX_MS + 1),
                     bad);
    assert_int_equal(sqlcached_queue_cancel(db, Q, QL, "", 0), bad);
    sqlcached_job_t job;
    assert_int_equal(sqlcached_queue_get(db, "", 0, S("a"), &job), bad);
    sqlcached_queue_counts_t c;
    assert_int_equal(sqlcached_queue_counts(db, "", 0, &c), bad);
}

static void test_survives_reopen(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(enqueue(f->db, "j", "{\"keep\":true}", 0), SQLCACHED_OK);
    assert_int_equal(enqueue(f->db, "k", "2", 0), SQLCACHED_OK);
    sqlcached_jobs_t *jobs = claim(f->db, 1, 5000, 0);
    int64_t t1 = jobs->jobs[0].claim_token;
    sqlcached_jobs_free(jobs);
    sqlcached_close(f->db);
    f->db = testutil_open(f->dir, "queue.db", &f->clock);
    assert_non_null(f->db);
    sqlcached_job_t job;
    assert_int_equal(sqlcached_queue_get(f->db, Q, QL, S("j"), &job), SQLCACHED_OK);
    assert_string_equal(job.payload, "{\"keep\":true}");
    assert_int_equal(job.state, SQLCACHED_JOB_CLAIMED);
    sqlcached_job_clear(&job);
    jobs = claim(f->db, 1, 5000, 0);
    assert_int_equal(jobs->count, 1);
    assert_string_equal(jobs->jobs[0].id, "k");
    assert_true(jobs->jobs[0].claim_token > t1);
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_ack(f->db, Q, QL, S("j"), t1), SQLCACHED_OK);
}

/* ------------------------------------------------------------------------
 * Waiting claims
 * ------------------------------------------------------------------------ */

typedef struct waiter {
    sqlcached_t *db;
    int64_t wait_ms;
    sqlcached_status_t st;
    sqlcached_jobs_t *jobs;
    int64_t got_at; /* wall ms */
} waiter_t;

static void *wait_claim(void *arg)
{
    waiter_t *w = arg;
    w->st = sqlcached_queue_claim(w->db, Q, QL, S("waiter"), 5000, w->wait_ms, 1, &w->jobs);
    w->got_at = testutil_wall_ms();
    return NULL;
}

static void test_wait_times_out_empty(void **state)
{
    fixture_t *f = *state;
    int64_t t = testutil_wall_ms();
    sqlcached_jobs_t *jobs = claim(f->db, 1, 1000, 200);
    int64_t took = testutil_wall_ms() - t;
    assert_int_equal(jobs->count, 0);
    sqlcached_jobs_free(jobs);
    assert_true(took >= 190);
    assert_true(took < 2000 * testutil_scale());
}

static void test_waiter_woken_by_enqueue(void **state)
{
    fixture_t *f = *state;
    waiter_t w = {.db = f->db, .wait_ms = 10000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_claim, &w), 0);
    usleep(200000); /* parked */
    int64_t t = testutil_wall_ms();
    assert_int_equal(enqueue(f->db, "now", "1", 0), SQLCACHED_OK);
    pthread_join(th, NULL);
    assert_int_equal(w.st, SQLCACHED_OK);
    assert_int_equal(w.jobs->count, 1);
    assert_string_equal(w.jobs->jobs[0].id, "now");
    sqlcached_jobs_free(w.jobs);
    print_message("enqueue to parked claimer: %lld ms (%s)\n", (long long)(w.got_at - t),
                  testutil_backend_name());
    assert_true(w.got_at - t < 1000 * testutil_scale());
}

static void test_waiter_woken_at_due_time(void **state)
{
    fixture_t *f = *state;
    int64_t worst = 0;
    for (int round = 0; round < 5; round++) {
        waiter_t w = {.db = f->db, .wait_ms = 10000};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, wait_claim, &w), 0);
        usleep(50000);
        char id[16];
        snprintf(id, sizeof id, "d%d", round);
        sqlcached_job_t job;
        assert_int_equal(sqlcached_queue_enqueue(f->db, Q, QL, S(id), S("1"), 300, &job, NULL),
                         SQLCACHED_OK);
        int64_t run_at = job.run_at;
        sqlcached_job_clear(&job);
        pthread_join(th, NULL);
        assert_int_equal(w.st, SQLCACHED_OK);
        assert_int_equal(w.jobs->count, 1);
        assert_string_equal(w.jobs->jobs[0].id, id);
        sqlcached_jobs_free(w.jobs);
        int64_t late = w.got_at - run_at;
        print_message("run_at to parked claimer: %lld ms (%s)\n", (long long)late,
                      testutil_backend_name());
        assert_true(late >= 0);
        if (late > worst)
            worst = late;
    }
    /* the contract's bound is 100 ms; a loaded test machine gets some slack */
    assert_true(worst < 250 * testutil_scale());
}

/* A claim expiring makes its job due again: a parked claimer gets it. */
static void test_waiter_woken_by_claim_expiry(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(enqueue(f->db, "e", "1", 0), SQLCACHED_OK);
    sqlcached_jobs_t *jobs = claim(f->db, 1, 300, 0);
    assert_int_equal(jobs->count, 1);
    int64_t until = jobs->jobs[0].run_at;
    sqlcached_jobs_free(jobs);
    waiter_t w = {.db = f->db, .wait_ms = 10000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_claim, &w), 0);
    pthread_join(th, NULL);
    assert_int_equal(w.jobs->count, 1);
    assert_int_equal(w.jobs->jobs[0].attempts, 2);
    print_message("claim end to parked claimer: %lld ms\n", (long long)(w.got_at - until));
    assert_true(w.got_at - until < 1000 * testutil_scale());
    sqlcached_jobs_free(w.jobs);
}

typedef struct async_result {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    sqlcached_status_t st;
} async_result_t;

static void on_done(void *cls, sqlcached_status_t st)
{
    async_result_t *r = cls;
    pthread_mutex_lock(&r->lock);
    r->calls++;
    r->st = st;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void test_async_claim(void **state)
{
    fixture_t *f = *state;
    async_result_t r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    sqlcached_jobs_t *jobs = NULL;
    assert_int_equal(sqlcached_queue_claim_async(f->db, Q, QL, S("w"), 1000, 5000, 3, &jobs,
                                                 on_done, &r),
                     SQLCACHED_OK);
    usleep(100000);
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.calls, 0); /* parked */
    pthread_mutex_unlock(&r.lock);
    assert_int_equal(enqueue(f->db, "x", "1", 0), SQLCACHED_OK);
    pthread_mutex_lock(&r.lock);
    for (int i = 0; i < 100 && r.calls == 0; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&r.cond, &r.lock, &ts);
    }
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.st, SQLCACHED_OK);
    pthread_mutex_unlock(&r.lock);
    assert_int_equal(jobs->count, 1);
    sqlcached_jobs_free(jobs);
    assert_int_equal(sqlcached_queue_claim_async(f->db, Q, QL, S("w"), 1, 0, 1, &jobs, on_done, &r),
                     SQLCACHED_INVALID_ARGUMENT);
    /* a claim still waiting when the store closes ends UNAVAILABLE */
    assert_int_equal(sqlcached_queue_claim_async(f->db, Q, QL, S("w"), 1000, 30000, 1, &jobs,
                                                 on_done, &r),
                     SQLCACHED_OK);
    usleep(100000);
    sqlcached_close(f->db);
    f->db = NULL;
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.st, SQLCACHED_UNAVAILABLE);
    assert_null(jobs);
    f->db = testutil_open(f->dir, "queue.db", NULL);
}

/* ------------------------------------------------------------------------
 * 16 workers, 2,000 jobs: each acked exactly once, none lost
 * ------------------------------------------------------------------------ */

#define JOBS 2000
#define WORKERS 16

typedef struct pool {
    sqlcached_t *db;
    atomic_int acked[JOBS];
    atomic_int total;
    atomic_int errors;
} pool_t;

static void *worker_main(void *arg)
{
    pool_t *p = arg;
    char name[32];
    snprintf(name, sizeof name, "w%p", (void *)&name);
    int64_t stop = testutil_wall_ms() + 60000 * testutil_scale();
    while (atomic_load(&p->total) < JOBS && testutil_wall_ms() < stop) {
        sqlcached_jobs_t *jobs = NULL;
        if (sqlcached_queue_claim(p->db, Q, QL, S(name), 60000, 200, 10, &jobs) != SQLCACHED_OK) {
            atomic_fetch_add(&p->errors, 1);
            continue;
        }
        for (size_t i = 0; i < jobs->count; i++) {
            sqlcached_job_t *j = &jobs->jobs[i];
            int n = atoi(j->payload);
            sqlcached_status_t st =
                sqlcached_queue_ack(p->db, Q, QL, j->id, j->id_len, j->claim_token);
            if (st != SQLCACHED_OK || n < 0 || n >= JOBS) {
                atomic_fetch_add(&p->errors, 1);
                continue;
            }
            atomic_fetch_add(&p->acked[n], 1);
            atomic_fetch_add(&p->total, 1);
        }
        sqlcached_jobs_free(jobs);
    }
    return NULL;
}

static void test_concurrent_workers_ack_each_job_once(void **state)
{
    fixture_t *f = *state;
    pool_t *p = calloc(1, sizeof *p);
    p->db = f->db;
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, p), 0);
    for (int n = 0; n < JOBS; n++) { /* while the workers claim */
        char id[16], payload[16];
        snprintf(id, sizeof id, "job-%d", n);
        snprintf(payload, sizeof payload, "%d", n);
        assert_int_equal(enqueue(f->db, id, payload, n % 3 ? 0 : 50), SQLCACHED_OK);
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&p->errors), 0);
    assert_int_equal(atomic_load(&p->total), JOBS);
    for (int n = 0; n < JOBS; n++)
        assert_int_equal(atomic_load(&p->acked[n]), 1);
    sqlcached_queue_counts_t c;
    assert_int_equal(sqlcached_queue_counts(f->db, Q, QL, &c), SQLCACHED_OK);
    assert_int_equal(c.ready + c.delayed + c.claimed, 0);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enqueue_get_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_is_idempotent_and_makes_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims_in_due_order_with_increasing_tokens, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_visibility_expiry_and_late_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_times_out_empty, setup_wall, teardown),
        cmocka_unit_test_setup_teardown(test_waiter_woken_by_enqueue, setup_wall, teardown),
        cmocka_unit_test_setup_teardown(test_waiter_woken_at_due_time, setup_wall, teardown),
        cmocka_unit_test_setup_teardown(test_waiter_woken_by_claim_expiry, setup_wall, teardown),
        cmocka_unit_test_setup_teardown(test_async_claim, setup_wall, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_workers_ack_each_job_once, setup_wall,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
