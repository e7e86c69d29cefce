/*
 * test_lease.c - tests of src/lease.c: the public calls
 * (sqlcached_lease_*), the asynchronous acquire (lease_acquire_start /
 * lease_wait_end, and its public form sqlcached_lease_acquire_async), waiting, FIFO hand-over, expiry
 * and fencing tokens, and a concurrent test of mutual exclusion.
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

#include "engine.h"
#include "lease.h"
#include "testutil.h"

#define T0 1700000000000LL

/* The store of a test: testutil.h. */
typedef testutil_fixture_t fixture_t;

static int setup(void **state)
{
    return testutil_fixture_setup(state, "lease.db", true);
}

/* The same, on the wall clock (for the timer's hand-over at expiry). */
static int setup_wall(void **state)
{
    return testutil_fixture_setup(state, "lease.db", false);
}

static int teardown(void **state)
{
    return testutil_fixture_teardown(state);
}

static double mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static sqlcached_status_t acquire(sqlcached_t *db, const char *name, const char *owner, int64_t ttl,
                                  int64_t wait, sqlcached_lease_t *out)
{
    return sqlcached_lease_acquire(db, name, strlen(name), owner, strlen(owner), ttl, wait, out);
}

static sqlcached_status_t renew(sqlcached_t *db, const char *name, const char *owner, int64_t ttl,
                                sqlcached_lease_t *out)
{
    return sqlcached_lease_renew(db, name, strlen(name), owner, strlen(owner), ttl, out);
}

static sqlcached_status_t release(sqlcached_t *db, const char *name, const char *owner,
                                  sqlcached_lease_t *out)
{
    return sqlcached_lease_release(db, name, strlen(name), owner, strlen(owner), out);
}

static sqlcached_status_t get(sqlcached_t *db, const char *name, sqlcached_lease_t *out)
{
    return sqlcached_lease_get(db, name, strlen(name), out);
}

/* ------------------------------------------------------------------------
 * Each call
 * ------------------------------------------------------------------------ */

static void test_lease_acquire_free(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t l, g;
    assert_int_equal(acquire(f->db, "job", "w1", 5000, 0, &l), SQLCACHED_OK);
    assert_string_equal(l.name, "job");
    assert_int_equal(l.name_len, 3);
    assert_string_equal(l.owner, "w1");
    assert_int_equal(l.owner_len, 2);
    assert_int_equal(l.token, 1);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.expires_at, T0 + 5000);
    assert_int_equal(get(f->db, "job", &g), SQLCACHED_OK);
    assert_string_equal(g.name, l.name);
    assert_string_equal(g.owner, l.owner);
    assert_int_equal(g.token, l.token);
    assert_int_equal(g.count, l.count);
    assert_int_equal(g.expires_at, l.expires_at);
}

static void test_lease_acquire_reentrant(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, b;
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, &a), SQLCACHED_OK);
    f->clock.now += 600;
    assert_int_equal(acquire(f->db, "job", "w1", 2000, 0, &b), SQLCACHED_OK);
    assert_int_equal(b.count, 2);
    assert_int_equal(b.token, a.token);
    assert_int_equal(b.expires_at, T0 + 600 + 2000);
}

static void test_lease_acquire_held_by_other(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, b;
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, &a), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "job", "w2", 1000, 0, &b), SQLCACHED_LEASE_HELD);
    assert_string_equal(b.owner, "w1"); /* the holder, to compute a retry time */
    assert_int_equal(b.expires_at, a.expires_at);
    assert_int_equal(b.token, a.token);
    assert_int_equal(acquire(f->db, "job", "w2", 1000, 0, NULL), SQLCACHED_LEASE_HELD);
}

static void test_lease_acquire_after_expiry(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, b, c;
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, &a), SQLCACHED_OK);
    f->clock.now += 999;
    assert_int_equal(acquire(f->db, "job", "w2", 1000, 0, NULL), SQLCACHED_LEASE_HELD);
    f->clock.now += 1; /* now == expires_at: expired */
    assert_int_equal(get(f->db, "job", &b), SQLCACHED_NOT_FOUND);
    assert_int_equal(acquire(f->db, "job", "w2", 1000, 0, &b), SQLCACHED_OK);
    assert_int_equal(b.count, 1);
    assert_true(b.token > a.token);
    /* the first owner, after its own expiry, is a new holder too */
    f->clock.now += 1000;
    assert_int_equal(acquire(f->db, "job", "w2", 1000, 0, &c), SQLCACHED_OK);
    assert_int_equal(c.count, 1);
    assert_true(c.token > b.token);
}

static void test_lease_renew(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, r;
    assert_int_equal(renew(f->db, "job", "w1", 1000, &r), SQLCACHED_NOT_OWNER); /* free */
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, &a), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, &a), SQLCACHED_OK);
    f->clock.now += 500;
    assert_int_equal(renew(f->db, "job", "w1", 3000, &r), SQLCACHED_OK);
    assert_int_equal(r.expires_at, T0 + 500 + 3000);
    assert_int_equal(r.count, 2);
    assert_int_equal(r.token, a.token);
    assert_int_equal(renew(f->db, "job", "w2", 3000, NULL), SQLCACHED_NOT_OWNER);
    f->clock.now += 3000; /* expired: renewing is too late */
    assert_int_equal(renew(f->db, "job", "w1", 3000, NULL), SQLCACHED_NOT_OWNER);
    assert_int_equal(get(f->db, "job", &r), SQLCACHED_NOT_FOUND);
}

static void test_lease_release(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, r;
    assert_int_equal(release(f->db, "job", "w1", &r), SQLCACHED_NOT_OWNER); /* free */
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, &a), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, &a), SQLCACHED_OK);
    assert_int_equal(release(f->db, "job", "w2", &r), SQLCACHED_NOT_OWNER);
    assert_int_equal(release(f->db, "job", "w1", &r), SQLCACHED_OK);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.name, "job");
    assert_int_equal(get(f->db, "job", &r), SQLCACHED_OK); /* still held */
    assert_int_equal(release(f->db, "job", "w1", &r), SQLCACHED_OK);
    assert_int_equal(r.count, 0);
    assert_int_equal(r.token, a.token);
    assert_int_equal(get(f->db, "job", &r), SQLCACHED_NOT_FOUND);
    assert_int_equal(release(f->db, "job", "w1", NULL), SQLCACHED_NOT_OWNER);
    /* an expired lease cannot be released */
    assert_int_equal(acquire(f->db, "job", "w1", 1000, 0, NULL), SQLCACHED_OK);
    f->clock.now += 1000;
    assert_int_equal(release(f->db, "job", "w1", NULL), SQLCACHED_NOT_OWNER);
}

static void test_lease_get(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t l;
    assert_int_equal(get(f->db, "nothing", &l), SQLCACHED_NOT_FOUND);
    assert_int_equal(acquire(f->db, "a/b c", "o", 100, 0, NULL), SQLCACHED_OK);
    assert_int_equal(get(f->db, "a/b c", &l), SQLCACHED_OK);
    assert_string_equal(l.owner, "o");
    f->clock.now += 100;
    assert_int_equal(get(f->db, "a/b c", &l), SQLCACHED_NOT_FOUND);
}

static void test_lease_invalid_arguments(void **state)
{
    fixture_t *f = *state;
    sqlcached_t *db = f->db;
    char big[300];
    memset(big, 'n', sizeof big);
    sqlcached_lease_t l;
    const sqlcached_status_t INV = SQLCACHED_INVALID_ARGUMENT;
    /* names */
    assert_int_equal(sqlcached_lease_acquire(db, "", 0, "o", 1, 1000, 0, &l), INV);
    assert_int_equal(sqlcached_lease_acquire(db, NULL, 3, "o", 1, 1000, 0, &l), INV);
    assert_int_equal(sqlcached_lease_acquire(db, big, 257, "o", 1, 1000, 0, &l), INV);
    assert_int_equal(sqlcached_lease_acquire(db, "a\0b", 3, "o", 1, 1000, 0, &l), INV);
    assert_int_equal(sqlcached_lease_acquire(db, big, 256, "o", 1, 1000, 0, &l), SQLCACHED_OK);
    /* owners */
    assert_int_equal(sqlcached_lease_acquire(db, "n", 1, "", 0, 1000, 0, &l), INV);
    assert_int_equal(sqlcached_lease_acquire(db, "n", 1, big, 129, 1000, 0, &l), INV);
    assert_int_equal(sqlcached_lease_acquire(db, "n", 1, "o\0", 2, 1000, 0, &l), INV);
    assert_int_equal(sqlcached_lease_acquire(db, "n", 1, big, 128, 1000, 0, &l), SQLCACHED_OK);
    assert_int_equal(l.owner_len, 128);
    /* ttl_ms and wait_ms */
    assert_int_equal(acquire(db, "t", "o", 99, 0, &l), INV);
    assert_int_equal(acquire(db, "t", "o", 3600001, 0, &l), INV);
    assert_int_equal(acquire(db, "t", "o", 100, -1, &l), INV);
    assert_int_equal(acquire(db, "t", "o", 100, 30001, &l), INV);
    assert_int_equal(acquire(db, "t", "o", 3600000, 30000, &l), SQLCACHED_OK);
    assert_int_equal(acquire(db, "u", "o", 100, 0, &l), SQLCACHED_OK);
    /* renew, release, get */
    assert_int_equal(renew(db, "t", "o", 99, &l), INV);
    assert_int_equal(renew(db, "t", "o", 3600001, &l), INV);
    assert_int_equal(renew(db, "", "o", 1000, &l), INV);
    assert_int_equal(renew(db, "t", "", 1000, &l), INV);
    assert_int_equal(release(db, "", "o", &l), INV);
    assert_int_equal(release(db, "t", "", &l), INV);
    assert_int_equal(sqlcached_lease_release(db, big, 257, "o", 1, &l), INV);
    assert_int_equal(sqlcached_lease_get(db, big, 257, &l), INV);
    assert_int_equal(sqlcached_lease_get(db, "", 0, &l), INV);
    /* nothing invalid was written */
    assert_int_equal(get(db, "t", &l), SQLCACHED_OK);
    assert_int_equal(l.count, 1);
}

/* ------------------------------------------------------------------------
 * Fencing tokens
 * ------------------------------------------------------------------------ */

static void test_lease_tokens_increase_across_names(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, b, c, d;
    assert_int_equal(acquire(f->db, "a", "o", 1000, 0, &a), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "b", "o", 1000, 0, &b), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "a", "o", 1000, 0, &c), SQLCACHED_OK); /* re-entrant */
    assert_int_equal(release(f->db, "b", "o", NULL), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "b", "o", 1000, 0, &d), SQLCACHED_OK); /* new holding */
    assert_true(a.token < b.token);
    assert_int_equal(c.token, a.token);
    assert_true(d.token > b.token);
    /* a KV write does not take a fencing token, nor the reverse */
    assert_int_equal(sqlcached_kv_put(f->db, "k", 1, "v", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "c", "o", 1000, 0, &c), SQLCACHED_OK);
    assert_int_equal(c.token, d.token + 1);
}

static void test_lease_survives_reopen(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, b, c;
    assert_int_equal(acquire(f->db, "job", "w1", 60000, 0, &a), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "job", "w1", 60000, 0, &a), SQLCACHED_OK);
    sqlcached_close(f->db);
    f->db = testutil_open(f->dir, "lease.db", &f->clock);
    assert_non_null(f->db);
    assert_int_equal(get(f->db, "job", &b), SQLCACHED_OK);
    assert_string_equal(b.owner, "w1");
    assert_int_equal(b.token, a.token);
    assert_int_equal(b.count, 2);
    assert_int_equal(b.expires_at, a.expires_at);
    f->clock.now += 60000;
    assert_int_equal(acquire(f->db, "other", "w2", 1000, 0, &c), SQLCACHED_OK);
    assert_true(c.token > a.token);
}

/* ------------------------------------------------------------------------
 * Waiting (in-process, blocking)
 * ------------------------------------------------------------------------ */

static void test_lease_wait_times_out(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, b;
    assert_int_equal(acquire(f->db, "job", "w1", 5000, 0, &a), SQLCACHED_OK);
    int64_t t0 = testutil_mono_ms();
    assert_int_equal(acquire(f->db, "job", "w2", 1000, 150, &b), SQLCACHED_LEASE_HELD);
    int64_t waited = testutil_mono_ms() - t0;
    assert_true(waited >= 150);
    assert_true(waited < 5000); /* it did not wait for the holder's lease to end */
    assert_string_equal(b.owner, "w1");
    assert_int_equal(b.expires_at, a.expires_at);
    /* the timed-out waiter left no trace: a release frees the lease */
    assert_int_equal(release(f->db, "job", "w1", NULL), SQLCACHED_OK);
    assert_int_equal(get(f->db, "job", &b), SQLCACHED_NOT_FOUND);
}

typedef struct wake_arg {
    sqlcached_t *db;
    const char *owner;
    atomic_int queued_hint;
    sqlcached_status_t st;
    sqlcached_lease_t lease;
    double got_us;
} wake_arg_t;

static void *blocking_acquirer(void *p)
{
    wake_arg_t *a = p;
    atomic_store(&a->queued_hint, 1);
    a->st = acquire(a->db, "job", a->owner, 5000, 10000, &a->lease);
    a->got_us = mono_us();
    return NULL;
}

static void test_lease_waiter_wakes_on_release(void **state)
{
    fixture_t *f = *state;
    double worst = 0;
    for (int round = 0; round < 10; round++) {
        sqlcached_lease_t a;
        assert_int_equal(acquire(f->db, "job", "holder", 5000, 0, &a), SQLCACHED_OK);
        wake_arg_t w = {.db = f->db, .owner = "waiter"};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, blocking_acquirer, &w), 0);
        while (!atomic_load(&w.queued_hint))
            usleep(1000);
        usleep(30000 * testutil_scale()); /* let it queue */
        double t0 = mono_us();
        assert_int_equal(release(f->db, "job", "holder", NULL), SQLCACHED_OK);
        pthread_join(t, NULL);
        assert_int_equal(w.st, SQLCACHED_OK);
        assert_string_equal(w.lease.owner, "waiter");
        assert_true(w.lease.token > a.token);
        double latency_ms = (w.got_us - t0) / 1000.0;
        if (latency_ms > worst)
            worst = latency_ms;
        assert_int_equal(release(f->db, "job", "waiter", NULL), SQLCACHED_OK);
    }
    print_message("worst wake-up after release: %.2f ms\n", worst);
    assert_true(worst < 50.0 * (double)testutil_scale());
}

/* Wall clock: the timer thread hands the lease over when the holder
 * expires, without any call and without the maintenance sweep. */
static void test_lease_waiter_wakes_on_expiry(void **state)
{
    fixture_t *f = *state;
    sqlcached_lease_t a, b;
    assert_int_equal(acquire(f->db, "job", "holder", 300, 0, &a), SQLCACHED_OK);
    int64_t t0 = testutil_mono_ms();
    assert_int_equal(acquire(f->db, "job", "waiter", 1000, 5000, &b), SQLCACHED_OK);
    int64_t waited = testutil_mono_ms() - t0;
    assert_string_equal(b.owner, "waiter");
    assert_true(b.token > a.token);
    assert_true(b.expires_at >= a.expires_at + 1000);
    print_message("handed over %lld ms after the acquire (holder ttl 300 ms)\n", (long long)waited);
    assert_true(waited >= 250); /* not before the holder's expiry */
}

/* ------------------------------------------------------------------------
 * Waiting (asynchronous, as the daemon does): FIFO and hand-over
 * ------------------------------------------------------------------------ */

typedef struct wake_log {
    pthread_mutex_t lock;
    int order[16];
    int n;
} wake_log_t;

typedef struct async_waiter {
    wake_log_t *log;
    int id;
    lease_waiter_t *w;
} async_waiter_t;

static void on_wake(void *arg)
{
    async_waiter_t *a = arg;
    pthread_mutex_lock(&a->log->lock);
    a->log->order[a->log->n++] = a->id;
    pthread_mutex_unlock(&a->log->lock);
}

static int woken(wake_log_t *log)
{
    pthread_mutex_lock(&log->lock);
    int n = log->n;
    pthread_mutex_unlock(&log->lock);
    return n;
}

static void start_waiter(sqlcached_t *db, const char *owner, async_waiter_t *a)
{
    sqlcached_lease_t holder;
    assert_int_equal(lease_acquire_start(db, "job", 3, owner, strlen(owner), 1000, 30000, on_wake,
                                         a, &holder, &a->w),
                     SQLCACHED_OK);
    assert_non_null(a->w); /* queued */
}

static void test_lease_waiters_served_in_arrival_order(void **state)
{
    fixture_t *f = *state;
    wake_log_t log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    async_waiter_t ws[5];
    char owners[5][8];
    assert_int_equal(acquire(f->db, "job", "holder", 1000, 0, NULL), SQLCACHED_OK);
    for (int i = 0; i < 5; i++) {
        snprintf(owners[i], sizeof owners[i], "w%d", i);
        ws[i] = (async_waiter_t){&log, i, NULL};
        start_waiter(f->db, owners[i], &ws[i]);
    }
    assert_int_equal(woken(&log), 0);
    /* a newcomer does not jump the queue, even with the lease about to end */
    assert_int_equal(acquire(f->db, "job", "late", 1000, 0, NULL), SQLCACHED_LEASE_HELD);
    const char *prev = "holder";
    int64_t last_token = 0;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(release(f->db, "job", prev, NULL), SQLCACHED_OK);
        assert_int_equal(woken(&log), i + 1); /* woken before release returned */
        assert_int_equal(log.order[i], i);
        sqlcached_lease_t l;
        assert_int_equal(lease_wait_end(ws[i].w, &l), SQLCACHED_OK);
        assert_string_equal(l.owner, owners[i]);
        assert_int_equal(l.count, 1);
        assert_true(l.token > last_token);
        last_token = l.token;
        prev = owners[i];
    }
    assert_int_equal(release(f->db, "job", prev, NULL), SQLCACHED_OK);
    sqlcached_lease_t l;
    assert_int_equal(get(f->db, "job", &l), SQLCACHED_NOT_FOUND);
}

static void test_lease_expired_lease_goes_to_waiter_not_newcomer(void **state)
{
    fixture_t *f = *state;
    wake_log_t log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    async_waiter_t w = {&log, 1, NULL};
    sqlcached_lease_t a, l;
    assert_int_equal(acquire(f->db, "job", "holder", 1000, 0, &a), SQLCACHED_OK);
    start_waiter(f->db, "waiter", &w);
    f->clock.now += 1000; /* the holder expired; the timer has not run yet */
    assert_int_equal(acquire(f->db, "job", "newcomer", 1000, 0, &l), SQLCACHED_LEASE_HELD);
    assert_string_equal(l.owner, "waiter");
    assert_int_equal(woken(&log), 1);
    assert_int_equal(lease_wait_end(w.w, &l), SQLCACHED_OK);
    assert_string_equal(l.owner, "waiter");
    assert_true(l.token > a.token);
    assert_int_equal(l.expires_at, f->clock.now + 1000);
}

static void test_lease_sweep_hands_over_and_frees(void **state)
{
    fixture_t *f = *state;
    wake_log_t log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    async_waiter_t w = {&log, 1, NULL};
    sqlcached_lease_t l;
    assert_int_equal(acquire(f->db, "job", "holder", 1000, 0, NULL), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "lone", "holder", 1000, 0, NULL), SQLCACHED_OK);
    start_waiter(f->db, "waiter", &w);
    f->clock.now += 500;
    assert_int_equal(lease_sweep(f->db, f->clock.now, 100), 0); /* nothing expired */
    /* a renewal moves the expiry the sweep and the timer go by */
    assert_int_equal(renew(f->db, "job", "holder", 1000, NULL), SQLCACHED_OK);
    f->clock.now += 500;
    assert_int_equal(lease_sweep(f->db, f->clock.now, 100), 1); /* "lone" only */
    assert_int_equal(woken(&log), 0);
    f->clock.now += 500;
    /* "job" is handed over, by this sweep or by the timer thread just before */
    assert_in_range(lease_sweep(f->db, f->clock.now, 100), 0, 1);
    for (int i = 0; i < 2000 && woken(&log) == 0; i++)
        usleep(1000);
    assert_int_equal(woken(&log), 1);
    assert_int_equal(lease_wait_end(w.w, &l), SQLCACHED_OK);
    assert_int_equal(get(f->db, "job", &l), SQLCACHED_OK);
    assert_string_equal(l.owner, "waiter");
    assert_int_equal(lease_sweep(f->db, f->clock.now, 100), 0);
}

static void test_lease_reentrant_hold_is_released_fully_first(void **state)
{
    fixture_t *f = *state;
    wake_log_t log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    async_waiter_t b1 = {&log, 1, NULL}, c = {&log, 2, NULL}, b2 = {&log, 3, NULL};
    sqlcached_lease_t l;
    assert_int_equal(acquire(f->db, "job", "a", 1000, 0, NULL), SQLCACHED_OK);
    assert_int_equal(acquire(f->db, "job", "a", 1000, 0, NULL), SQLCACHED_OK);
    start_waiter(f->db, "b", &b1);
    start_waiter(f->db, "c", &c);
    start_waiter(f->db, "b", &b2);
    assert_int_equal(release(f->db, "job", "a", &l), SQLCACHED_OK);
    assert_int_equal(l.count, 1);
    assert_int_equal(woken(&log), 0);
    assert_int_equal(release(f->db, "job", "a", &l), SQLCACHED_OK);
    /* b's two waiters both get it (re-entrant), c still waits */
    assert_int_equal(woken(&log), 2);
    assert_int_equal(lease_wait_end(b1.w, &l), SQLCACHED_OK);
    assert_int_equal(l.count, 1);
    assert_int_equal(lease_wait_end(b2.w, &l), SQLCACHED_OK);
    assert_int_equal(l.count, 2);
    assert_int_equal(get(f->db, "job", &l), SQLCACHED_OK);
    assert_int_equal(l.count, 2);
    assert_int_equal(release(f->db, "job", "b", NULL), SQLCACHED_OK);
    assert_int_equal(woken(&log), 2);
    assert_int_equal(release(f->db, "job", "b", NULL), SQLCACHED_OK);
    assert_int_equal(woken(&log), 3);
    assert_int_equal(lease_wait_end(c.w, &l), SQLCACHED_OK);
    assert_string_equal(l.owner, "c");
}

static void test_lease_cancelled_waiter_is_never_woken(void **state)
{
    fixture_t *f = *state;
    wake_log_t log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    async_waiter_t w = {&log, 1, NULL};
    sqlcached_lease_t l;
    assert_int_equal(acquire(f->db, "job", "holder", 1000, 0, NULL), SQLCACHED_OK);
    start_waiter(f->db, "waiter", &w);
    assert_int_equal(lease_wait_end(w.w, &l), SQLCACHED_LEASE_HELD);
    assert_string_equal(l.owner, "holder");
    assert_int_equal(release(f->db, "job", "holder", NULL), SQLCACHED_OK);
    assert_int_equal(woken(&log), 0);
    assert_int_equal(get(f->db, "job", &l), SQLCACHED_NOT_FOUND);
}

static void test_lease_async_acquire_of_free_lease_does_not_queue(void **state)
{
    fixture_t *f = *state;
    lease_waiter_t *w = (lease_waiter_t *)1;
    sqlcached_lease_t l;
    assert_int_equal(lease_acquire_start(f->db, "job", 3, "o", 1, 1000, 30000, NULL, NULL, &l, &w),
                     SQLCACHED_OK);
    assert_null(w);
    assert_int_equal(l.count, 1);
    assert_int_equal(lease_acquire_start(f->db, "job", 3, "p", 1, 1000, 0, NULL, NULL, &l, &w),
                     SQLCACHED_LEASE_HELD);
    assert_null(w);
    assert_int_equal(lease_acquire_start(f->db, "job", 3, "p", 1, 99, 10, NULL, NULL, &l, &w),
                     SQLCACHED_INVALID_ARGUMENT);
}

/* The public form (sqlcached_lease_acquire_async, the daemon's): done()
 * reports the outcome, sqlcached_lease_wait_end() collects it (or cancels),
 * sqlcached_lease_give_back() returns a grant nobody will use. */
typedef struct done_log {
    pthread_mutex_t lock;
    int calls;
    sqlcached_status_t status;
} done_log_t;

static void on_done(void *cls, sqlcached_status_t status)
{
    done_log_t *d = cls;
    pthread_mutex_lock(&d->lock);
    d->calls++;
    d->status = status;
    pthread_mutex_unlock(&d->lock);
}

static int done_calls(done_log_t *d)
{
    pthread_mutex_lock(&d->lock);
    int n = d->calls;
    pthread_mutex_unlock(&d->lock);
    return n;
}

static void test_lease_public_async_acquire(void **state)
{
    fixture_t *f = *state;
    done_log_t d = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sqlcached_lease_t l, held;
    sqlcached_lease_wait_t *w = NULL;
    assert_int_equal(acquire(f->db, "job", "holder", 1000, 0, &held), SQLCACHED_OK);
    assert_int_equal(sqlcached_lease_acquire_async(f->db, "job", 3, "w", 1, 1000, 30000, &l,
                                                   on_done, &d, &w),
                     SQLCACHED_OK);
    assert_non_null(w); /* queued behind the holder, whose lease *out is */
    assert_string_equal(l.owner, "holder");
    assert_int_equal(done_calls(&d), 0);
    assert_int_equal(release(f->db, "job", "holder", NULL), SQLCACHED_OK);
    assert_int_equal(done_calls(&d), 1); /* called before the release returned */
    assert_int_equal(d.status, SQLCACHED_OK);
    assert_int_equal(sqlcached_lease_wait_end(w, &l), SQLCACHED_OK);
    assert_string_equal(l.owner, "w");
    assert_true(l.token > held.token);
    /* a grant nobody will use goes back: the lease is free again */
    assert_int_equal(sqlcached_lease_give_back(f->db, &l), SQLCACHED_OK);
    assert_int_equal(get(f->db, "job", &l), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_lease_give_back(f->db, &l), SQLCACHED_NOT_OWNER);
    /* collected before the outcome: cancelled, and done is never called */
    assert_int_equal(acquire(f->db, "job", "holder", 1000, 0, &held), SQLCACHED_OK);
    assert_int_equal(sqlcached_lease_acquire_async(f->db, "job", 3, "x", 1, 1000, 30000, &l,
                                                   on_done, &d, &w),
                     SQLCACHED_OK);
    assert_non_null(w);
    assert_int_equal(sqlcached_lease_wait_end(w, &l), SQLCACHED_LEASE_HELD);
    assert_string_equal(l.owner, "holder");
    assert_int_equal(release(f->db, "job", "holder", NULL), SQLCACHED_OK);
    assert_int_equal(get(f->db, "job", &l), SQLCACHED_NOT_FOUND);
    assert_int_equal(done_calls(&d), 1);
    /* free: acquired at once, nothing queued; no callback: refused */
    assert_int_equal(sqlcached_lease_acquire_async(f->db, "job", 3, "y", 1, 1000, 30000, &l,
                                                   on_done, &d, &w),
                     SQLCACHED_OK);
    assert_null(w);
    assert_string_equal(l.owner, "y");
    assert_int_equal(sqlcached_lease_acquire_async(f->db, "job", 3, "z", 1, 1000, 30000, &l, NULL,
                                                   NULL, &w),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(done_calls(&d), 1);
}

/* ------------------------------------------------------------------------
 * Concurrency: 16 threads x 100 rounds on one name, all waiting
 * ------------------------------------------------------------------------ */

#define THREADS 16
#define ROUNDS 100

typedef struct contention {
    sqlcached_t *db;
    atomic_int holders;
    atomic_int overlaps;
    atomic_int failures;
    pthread_mutex_t lock;
    int64_t tokens[THREADS * ROUNDS];
    int ntokens;
} contention_t;

typedef struct contender {
    contention_t *c;
    int id;
} contender_t;

static void *contend(void *p)
{
    contender_t *me = p;
    contention_t *c = me->c;
    char owner[16];
    snprintf(owner, sizeof owner, "t%d", me->id);
    unsigned seed = (unsigned)me->id * 2654435761u;
    for (int i = 0; i < ROUNDS; i++) {
        sqlcached_lease_t l;
        if (acquire(c->db, "hot", owner, 60000, 30000, &l) != SQLCACHED_OK || l.count != 1) {
            atomic_fetch_add(&c->failures, 1);
            continue;
        }
        if (atomic_fetch_add(&c->holders, 1) != 0)
            atomic_fetch_add(&c->overlaps, 1);
        pthread_mutex_lock(&c->lock);
        c->tokens[c->ntokens++] = l.token; /* in acquisition order: holders never overlap */
        pthread_mutex_unlock(&c->lock);
        usleep(rand_r(&seed) % 200);
        atomic_fetch_sub(&c->holders, 1);
        if (release(c->db, "hot", owner, &l) != SQLCACHED_OK || l.count != 0)
            atomic_fetch_add(&c->failures, 1);
    }
    return NULL;
}

static void test_lease_concurrent_holders_never_overlap(void **state)
{
    fixture_t *f = *state;
    contention_t *c = calloc(1, sizeof *c);
    c->db = f->db;
    pthread_mutex_init(&c->lock, NULL);
    pthread_t t[THREADS];
    contender_t me[THREADS];
    double t0 = mono_us();
    for (int i = 0; i < THREADS; i++) {
        me[i] = (contender_t){c, i};
        assert_int_equal(pthread_create(&t[i], NULL, contend, &me[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    double secs = (mono_us() - t0) / 1e6;
    print_message("%d acquire+release cycles in %.2f s (%.0f/s)\n", c->ntokens, secs,
                  c->ntokens / secs);
    assert_int_equal(atomic_load(&c->failures), 0);
    assert_int_equal(atomic_load(&c->overlaps), 0);
    assert_int_equal(c->ntokens, THREADS * ROUNDS);
    for (int i = 1; i < c->ntokens; i++)
        if (c->tokens[i] <= c->tokens[i - 1])
            fail_msg("token %lld at %d after %lld", (long long)c->tokens[i], i,
                     (long long)c->tokens[i - 1]);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lease_acquire_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_acquire_reentrant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_acquire_held_by_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_acquire_after_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_renew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_tokens_increase_across_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_wait_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_waiter_wakes_on_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_waiter_wakes_on_expiry, setup_wall, teardown),
        cmocka_unit_test_setup_teardown(test_lease_waiters_served_in_arrival_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lease_expired_lease_goes_to_waiter_not_newcomer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lease_sweep_hands_over_and_frees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_reentrant_hold_is_released_fully_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lease_cancelled_waiter_is_never_woken, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lease_async_acquire_of_free_lease_does_not_queue,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_public_async_acquire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_concurrent_holders_never_overlap, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
