/*
 * test_txn.c - tests of src/txn.c (sqlcached_txn_*) through the public API,
 * on SQLite and (tests/pg/test_txn.pg) on PostgreSQL: compares, both
 * branches, get after put in one transaction, all-or-nothing on a failing
 * operation, versions, the memory tier after transaction writes, the
 * 128-item bound, the asynchronous form, and a stress test of 16 clients
 * moving units between 8 keys with compare-and-swap transactions.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

/* The store of a test: testutil.h. */
typedef testutil_fixture_t fixture_t;

static int setup(void **state)
{
    return testutil_fixture_setup(state, "txn.db", true);
}

static int teardown(void **state)
{
    return testutil_fixture_teardown(state);
}

static int64_t put(sqlcached_t *db, const char *k, const char *v)
{
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(db, k, strlen(k), v, strlen(v), NULL, &r), SQLCACHED_OK);
    return r.version;
}

/* The value of k as a malloc'd string (NULL if absent), its version in *ver. */
static char *get(sqlcached_t *db, const char *k, int64_t *ver)
{
    sqlcached_value_t *v = NULL;
    sqlcached_status_t st = sqlcached_kv_get(db, k, strlen(k), &v);
    if (st == SQLCACHED_NOT_FOUND)
        return NULL;
    assert_int_equal(st, SQLCACHED_OK);
    char *s = strndup(v->data, v->len);
    if (ver)
        *ver = v->version;
    sqlcached_value_release(v);
    return s;
}

static sqlcached_txn_t *txn_new(void)
{
    sqlcached_txn_t *t = NULL;
    assert_int_equal(sqlcached_txn_new(&t), SQLCACHED_OK);
    return t;
}

#define S SQLCACHED_TXN_SUCCESS
#define F SQLCACHED_TXN_FAILURE

static void add_put(sqlcached_txn_t *t, sqlcached_txn_branch_t b, const char *k, const char *v)
{
    assert_int_equal(sqlcached_txn_add_put(t, b, k, strlen(k), v, strlen(v), NULL, 0),
                     SQLCACHED_OK);
}

static void add_get(sqlcached_txn_t *t, sqlcached_txn_branch_t b, const char *k)
{
    assert_int_equal(sqlcached_txn_add_get(t, b, k, strlen(k)), SQLCACHED_OK);
}

static void assert_value(const sqlcached_txn_result_t *r, const char *v)
{
    assert_non_null(r);
    assert_true(r->found);
    assert_int_equal(r->vlen, strlen(v));
    assert_memory_equal(r->value, v, r->vlen);
}

/* Compares hold: the success ops run in order, each write with a new
 * version above every version answered before; a get sees the earlier
 * put of the same transaction. */
static void test_txn_success_runs_ops_in_order(void **state)
{
    fixture_t *f = *state;
    int64_t va = put(f->db, "a", "1");
    int64_t vb = put(f->db, "b", "x");
    sqlcached_txn_t *t = txn_new();
    assert_int_equal(sqlcached_txn_compare_version(t, "a", 1, va), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_compare_exists(t, "c", 1, 0), SQLCACHED_OK);
    add_put(t, S, "c", "new");
    add_get(t, S, "c");
    assert_int_equal(sqlcached_txn_add_incr(t, S, "a", 1, 41), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_add_delete(t, S, "b", 1), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_add_delete(t, S, "zz", 2), SQLCACHED_OK);
    add_get(t, S, "b");
    add_put(t, F, "never", "1");
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_true(sqlcached_txn_succeeded(t));
    assert_int_equal(sqlcached_txn_result_count(t), 6);
    const sqlcached_txn_result_t *put_c = sqlcached_txn_result(t, 0);
    assert_int_equal(put_c->op, SQLCACHED_TXN_PUT);
    assert_true(put_c->version > vb);
    const sqlcached_txn_result_t *get_c = sqlcached_txn_result(t, 1);
    assert_value(get_c, "new");
    assert_int_equal(get_c->version, put_c->version);
    assert_string_equal(get_c->content_type, "application/octet-stream");
    const sqlcached_txn_result_t *incr = sqlcached_txn_result(t, 2);
    assert_int_equal(incr->number, 42);
    assert_true(incr->version > put_c->version);
    assert_true(sqlcached_txn_result(t, 3)->found);  /* b deleted */
    assert_false(sqlcached_txn_result(t, 4)->found); /* zz was absent */
    assert_false(sqlcached_txn_result(t, 5)->found); /* b is gone for a later get */
    assert_null(sqlcached_txn_result(t, 6));
    int64_t incr_version = incr->version;
    sqlcached_txn_free(t);
    int64_t v;
    char *s = get(f->db, "a", &v);
    assert_string_equal(s, "42");
    assert_int_equal(v, incr_version);
    free(s);
    assert_null(get(f->db, "b", NULL));
    assert_null(get(f->db, "never", NULL));
    s = get(f->db, "c", NULL);
    assert_string_equal(s, "new");
    free(s);
    /* a later single write still gets a larger version */
    assert_true(put(f->db, "d", "1") > v);
}

/* A compare that fails runs the failure ops (and only them). */
static void test_txn_compare_failure_runs_failure_ops(void **state)
{
    fixture_t *f = *state;
    int64_t va = put(f->db, "a", "1");
    sqlcached_txn_t *t = txn_new();
    assert_int_equal(sqlcached_txn_compare_version(t, "a", 1, va + 1000), SQLCACHED_OK);
    add_put(t, S, "a", "success");
    add_get(t, F, "a");
    add_put(t, F, "f", "failure");
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_false(sqlcached_txn_succeeded(t));
    assert_int_equal(sqlcached_txn_result_count(t), 2);
    assert_value(sqlcached_txn_result(t, 0), "1");
    assert_int_equal(sqlcached_txn_result(t, 0)->version, va);
    sqlcached_txn_free(t);
    char *s = get(f->db, "a", NULL);
    assert_string_equal(s, "1");
    free(s);
    s = get(f->db, "f", NULL);
    assert_string_equal(s, "failure");
    free(s);
    /* exists compares: a present key fails exists=false, an absent one
     * fails exists=true; version 0 matches an absent key */
    t = txn_new();
    assert_int_equal(sqlcached_txn_compare_exists(t, "a", 1, 0), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_false(sqlcached_txn_succeeded(t));
    sqlcached_txn_free(t);
    t = txn_new();
    assert_int_equal(sqlcached_txn_compare_exists(t, "nope", 4, 1), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_false(sqlcached_txn_succeeded(t));
    sqlcached_txn_free(t);
    t = txn_new();
    assert_int_equal(sqlcached_txn_compare_version(t, "nope", 4, 0), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_compare_exists(t, "a", 1, 1), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_true(sqlcached_txn_succeeded(t));
    sqlcached_txn_free(t);
}

/* An incr of a non-integer fails the whole transaction: NOT_INTEGER with
 * the op's index, and nothing of it stored (earlier puts, deletes and
 * incrs of the same transaction included). */
static void test_txn_failed_op_rolls_back_everything(void **state)
{
    fixture_t *f = *state;
    int64_t va = put(f->db, "a", "1");
    int64_t vt = put(f->db, "text", "hello");
    int64_t vn = put(f->db, "n", "5");
    sqlcached_txn_t *t = txn_new();
    add_put(t, S, "a", "changed");
    assert_int_equal(sqlcached_txn_add_incr(t, S, "n", 1, 1), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_add_delete(t, S, "text", 4), SQLCACHED_OK);
    add_put(t, S, "text", "hello again");
    add_put(t, S, "created", "1");
    assert_int_equal(sqlcached_txn_add_incr(t, S, "a", 1, 1), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_NOT_INTEGER);
    assert_int_equal(sqlcached_txn_failed_op(t), 5);
    sqlcached_txn_free(t);
    int64_t v;
    char *s = get(f->db, "a", &v);
    assert_string_equal(s, "1");
    assert_int_equal(v, va);
    free(s);
    s = get(f->db, "text", &v);
    assert_string_equal(s, "hello");
    assert_int_equal(v, vt);
    free(s);
    s = get(f->db, "n", &v);
    assert_string_equal(s, "5");
    assert_int_equal(v, vn);
    free(s);
    assert_null(get(f->db, "created", NULL));
    /* overflow too */
    put(f->db, "max", "9223372036854775807");
    t = txn_new();
    assert_int_equal(sqlcached_txn_add_incr(t, S, "max", 3, 1), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_NOT_INTEGER);
    assert_int_equal(sqlcached_txn_failed_op(t), 0);
    sqlcached_txn_free(t);
}

/* Arguments: at most SQLCACHED_TXN_MAX compares and ops in all; bad keys,
 * negative versions, bad content types and TTLs refused; a txn runs once. */
static void test_txn_bounds_and_arguments(void **state)
{
    fixture_t *f = *state;
    sqlcached_txn_t *t = txn_new();
    char key[16];
    for (int i = 0; i < SQLCACHED_TXN_MAX; i++) {
        snprintf(key, sizeof key, "k%d", i);
        sqlcached_status_t st = i % 3 == 0 ? sqlcached_txn_compare_exists(t, key, strlen(key), 0)
                                : i % 3 == 1
                                    ? sqlcached_txn_add_put(t, S, key, strlen(key), "v", 1, NULL, 0)
                                    : sqlcached_txn_add_get(t, F, key, strlen(key));
        assert_int_equal(st, SQLCACHED_OK);
    }
    assert_int_equal(sqlcached_txn_add_get(t, S, "x", 1), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_compare_exists(t, "x", 1, 1), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_true(sqlcached_txn_succeeded(t));
    assert_int_equal(sqlcached_txn_result_count(t), 43);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_INVALID_ARGUMENT);
    sqlcached_txn_free(t);

    t = txn_new();
    char big[SQLCACHED_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    assert_int_equal(sqlcached_txn_add_get(t, S, big, sizeof big), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_add_get(t, S, "", 0), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_compare_version(t, "a", 1, -1), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_add_put(t, S, "a", 1, "v", 1, "bad\n", 0),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_add_put(t, S, "a", 1, "v", 1, NULL, -1),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_add_get(t, 7, "a", 1), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK); /* empty: succeeded */
    assert_true(sqlcached_txn_succeeded(t));
    assert_int_equal(sqlcached_txn_result_count(t), 0);
    sqlcached_txn_free(t);
    sqlcached_txn_free(NULL);
}

/* Puts keep content type and TTL; incr keeps the row's content type and
 * expiry and creates an absent key as a counter; expired keys are absent
 * for compares and gets. */
static void test_txn_put_options_and_expiry(void **state)
{
    fixture_t *f = *state;
    sqlcached_txn_t *t = txn_new();
    assert_int_equal(sqlcached_txn_add_put(t, S, "s", 1, "v", 1, "text/plain", 10000),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_add_incr(t, S, "ctr", 3, -5), SQLCACHED_OK);
    add_get(t, S, "s");
    add_get(t, S, "ctr");
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_result(t, 0)->expires_at, f->clock.now + 10000);
    assert_int_equal(sqlcached_txn_result(t, 1)->number, -5);
    assert_string_equal(sqlcached_txn_result(t, 2)->content_type, "text/plain");
    assert_int_equal(sqlcached_txn_result(t, 2)->expires_at, f->clock.now + 10000);
    assert_value(sqlcached_txn_result(t, 3), "-5");
    assert_string_equal(sqlcached_txn_result(t, 3)->content_type, "text/plain; charset=utf-8");
    sqlcached_txn_free(t);
    f->clock.now += 10000; /* s expires */
    t = txn_new();
    assert_int_equal(sqlcached_txn_compare_exists(t, "s", 1, 0), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_compare_version(t, "s", 1, 0), SQLCACHED_OK);
    add_get(t, S, "s");
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_true(sqlcached_txn_succeeded(t));
    assert_false(sqlcached_txn_result(t, 0)->found);
    sqlcached_txn_free(t);
}

/* Sliding keys: a get of one moves its expiry to now + its sliding TTL
 * (persisted: seen after a restart of the reads), an incr slides it and
 * keeps the flag, a put clears the flag (as a PUT without sliding=true). */
static void test_txn_sliding_keys(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    sqlcached_put_options_t o = {.ttl_ms = 10000, .sliding = 1};
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "v", 1, &o, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_put(f->db, "n", 1, "1", 1, &o, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_put(f->db, "p", 1, "x", 1, &o, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 8000;
    sqlcached_txn_t *t = txn_new();
    add_get(t, S, "s");
    assert_int_equal(sqlcached_txn_add_incr(t, S, "n", 1, 1), SQLCACHED_OK);
    add_put(t, S, "p", "y");
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_result(t, 0)->expires_at, t0 + 18000);
    assert_int_equal(sqlcached_txn_result(t, 1)->expires_at, t0 + 18000);
    assert_int_equal(sqlcached_txn_result(t, 2)->expires_at, 0);
    sqlcached_txn_free(t);
    f->clock.now = t0 + 17500; /* past the first expiry: alive by the txn's slide */
    t = txn_new();
    add_get(t, S, "s");
    add_get(t, S, "n");
    add_get(t, S, "p");
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    assert_true(sqlcached_txn_result(t, 0)->found);
    assert_int_equal(sqlcached_txn_result(t, 0)->expires_at, t0 + 27500);
    assert_true(sqlcached_txn_result(t, 1)->found);
    assert_value(sqlcached_txn_result(t, 1), "2");
    assert_int_equal(sqlcached_txn_result(t, 2)->expires_at, 0); /* no longer sliding */
    sqlcached_txn_free(t);
    f->clock.now = t0 + 27400; /* the plain read path sees the slide too */
    char *v = get(f->db, "s", NULL);
    assert_non_null(v);
    free(v);
}

/* The memory tier: a key cached before the transaction is served with the
 * transaction's write right after it (replaced or invalidated), also for
 * deletes; never the old value. */
static void test_txn_no_stale_read_from_tier(void **state)
{
    fixture_t *f = *state;
    put(f->db, "hot", "old");
    put(f->db, "gone", "old");
    for (int i = 0; i < 3; i++) { /* cached (and marked hot) */
        free(get(f->db, "hot", NULL));
        free(get(f->db, "gone", NULL));
    }
    assert_null(get(f->db, "absent", NULL)); /* a negative entry */
    sqlcached_txn_t *t = txn_new();
    add_put(t, S, "hot", "new");
    assert_int_equal(sqlcached_txn_add_delete(t, S, "gone", 4), SQLCACHED_OK);
    add_put(t, S, "absent", "here");
    add_put(t, S, "hot", "newer"); /* twice: the later one wins */
    assert_int_equal(sqlcached_txn_commit(f->db, t), SQLCACHED_OK);
    int64_t second = sqlcached_txn_result(t, 3)->version;
    sqlcached_txn_free(t);
    int64_t v;
    char *s = get(f->db, "hot", &v);
    assert_string_equal(s, "newer");
    assert_int_equal(v, second);
    free(s);
    assert_null(get(f->db, "gone", NULL));
    s = get(f->db, "absent", NULL);
    assert_string_equal(s, "here");
    free(s);
}

typedef struct async_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    sqlcached_status_t st;
} async_wait_t;

static void on_done(void *cls, sqlcached_status_t st)
{
    async_wait_t *w = cls;
    pthread_mutex_lock(&w->lock);
    w->st = st;
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static sqlcached_status_t wait_done(async_wait_t *w)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&w->lock);
    while (!w->done && pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
        ;
    int done = w->done;
    pthread_mutex_unlock(&w->lock);
    assert_true(done);
    return w->st;
}

/* The asynchronous form: done once, after the writes are visible. */
static void test_txn_async(void **state)
{
    fixture_t *f = *state;
    sqlcached_txn_t *t = txn_new();
    add_put(t, S, "async", "1");
    add_get(t, S, "async");
    async_wait_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    assert_int_equal(sqlcached_txn_commit_async(f->db, t, NULL, NULL), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_txn_commit_async(f->db, t, on_done, &w), SQLCACHED_OK);
    assert_int_equal(wait_done(&w), SQLCACHED_OK);
    assert_value(sqlcached_txn_result(t, 1), "1");
    sqlcached_txn_free(t);
    char *s = get(f->db, "async", NULL);
    assert_string_equal(s, "1");
    free(s);
    /* a failing op, asynchronously */
    t = txn_new();
    add_put(t, S, "async", "2");
    assert_int_equal(sqlcached_txn_add_incr(t, S, "async", 5, 1), SQLCACHED_OK);
    add_put(t, S, "async", "x");
    assert_int_equal(sqlcached_txn_add_incr(t, S, "async", 5, 1), SQLCACHED_OK);
    w.done = 0;
    assert_int_equal(sqlcached_txn_commit_async(f->db, t, on_done, &w), SQLCACHED_OK);
    assert_int_equal(wait_done(&w), SQLCACHED_NOT_INTEGER);
    assert_int_equal(sqlcached_txn_failed_op(t), 3);
    sqlcached_txn_free(t);
    s = get(f->db, "async", NULL);
    assert_string_equal(s, "1");
    free(s);
}

/* ------------------------------------------------------------------------
 * Stress: 16 clients move units between 8 keys with compare-and-swap
 * ------------------------------------------------------------------------ */

#define STRESS_KEYS 8
#define STRESS_CLIENTS 16
#define STRESS_MOVES 40
#define STRESS_UNITS 100

typedef struct stress {
    sqlcached_t *db;
    unsigned seed;
    int bad_sums, moves, conflicts, errors;
} stress_t;

static void stress_key(char *buf, int i)
{
    snprintf(buf, 16, "acct-%d", i);
}

/* Read all keys in one transaction: the sum, and each value and version. */
static int read_all(sqlcached_t *db, int64_t vals[], int64_t vers[], int64_t *sum)
{
    sqlcached_txn_t *t = NULL;
    if (sqlcached_txn_new(&t) != SQLCACHED_OK)
        return -1;
    char k[16];
    for (int i = 0; i < STRESS_KEYS; i++) {
        stress_key(k, i);
        sqlcached_txn_add_get(t, S, k, strlen(k));
    }
    int rc = sqlcached_txn_commit(db, t) == SQLCACHED_OK ? 0 : -1;
    *sum = 0;
    for (int i = 0; rc == 0 && i < STRESS_KEYS; i++) {
        const sqlcached_txn_result_t *r = sqlcached_txn_result(t, (size_t)i);
        char num[32];
        snprintf(num, sizeof num, "%.*s", (int)r->vlen, (const char *)r->value);
        vals[i] = strtoll(num, NULL, 10);
        vers[i] = r->version;
        *sum += vals[i];
    }
    sqlcached_txn_free(t);
    return rc;
}

/* One move of a unit from key a to key b if both are unchanged since read. */
static int move(sqlcached_t *db, int a, int b, const int64_t vals[], const int64_t vers[],
                bool *succeeded)
{
    sqlcached_txn_t *t = NULL;
    if (sqlcached_txn_new(&t) != SQLCACHED_OK)
        return -1;
    char ka[16], kb[16], va[32], vb[32];
    stress_key(ka, a);
    stress_key(kb, b);
    snprintf(va, sizeof va, "%" PRId64, vals[a] - 1);
    snprintf(vb, sizeof vb, "%" PRId64, vals[b] + 1);
    sqlcached_txn_compare_version(t, ka, strlen(ka), vers[a]);
    sqlcached_txn_compare_version(t, kb, strlen(kb), vers[b]);
    sqlcached_txn_add_put(t, S, ka, strlen(ka), va, strlen(va), NULL, 0);
    sqlcached_txn_add_put(t, S, kb, strlen(kb), vb, strlen(vb), NULL, 0);
    int rc = sqlcached_txn_commit(db, t) == SQLCACHED_OK ? 0 : -1;
    *succeeded = sqlcached_txn_succeeded(t);
    sqlcached_txn_free(t);
    return rc;
}

static void *stress_client(void *arg)
{
    stress_t *s = arg;
    int64_t vals[STRESS_KEYS], vers[STRESS_KEYS], sum;
    for (int n = 0; n < STRESS_MOVES;) {
        if (read_all(s->db, vals, vers, &sum) != 0) {
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
            return NULL;
        }
        if (sum != STRESS_KEYS * STRESS_UNITS)
            __atomic_add_fetch(&s->bad_sums, 1, __ATOMIC_RELAXED);
        int a = (int)(rand_r(&s->seed) % STRESS_KEYS);
        int b = (a + 1 + (int)(rand_r(&s->seed) % (STRESS_KEYS - 1))) % STRESS_KEYS;
        bool ok;
        if (move(s->db, a, b, vals, vers, &ok) != 0) {
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
            return NULL;
        }
        if (ok)
            n++;
        __atomic_add_fetch(ok ? &s->moves : &s->conflicts, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_txn_stress_cas_moves_keep_the_sum(void **state)
{
    fixture_t *f = *state;
    char k[16], v[16];
    snprintf(v, sizeof v, "%d", STRESS_UNITS);
    for (int i = 0; i < STRESS_KEYS; i++) {
        stress_key(k, i);
        put(f->db, k, v);
    }
    stress_t s[STRESS_CLIENTS];
    pthread_t th[STRESS_CLIENTS];
    for (int i = 0; i < STRESS_CLIENTS; i++) {
        s[i] = (stress_t){.db = f->db, .seed = (unsigned)(i * 7919 + 1)};
        assert_int_equal(pthread_create(&th[i], NULL, stress_client, &s[i]), 0);
    }
    int bad = 0, moves = 0, conflicts = 0, errors = 0;
    for (int i = 0; i < STRESS_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        bad += s[i].bad_sums, moves += s[i].moves, conflicts += s[i].conflicts;
        errors += s[i].errors;
    }
    print_message("stress: %d moves, %d compare failures, %d bad sums, %d errors\n", moves,
                  conflicts, bad, errors);
    assert_int_equal(errors, 0);
    assert_int_equal(bad, 0);
    assert_int_equal(moves, STRESS_CLIENTS * STRESS_MOVES);
    int64_t sum = 0; /* at the end, through the read path (memory tier) */
    for (int i = 0; i < STRESS_KEYS; i++) {
        stress_key(k, i);
        char *s1 = get(f->db, k, NULL);
        assert_non_null(s1);
        sum += strtoll(s1, NULL, 10);
        free(s1);
    }
    assert_int_equal(sum, STRESS_KEYS * STRESS_UNITS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_txn_success_runs_ops_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_compare_failure_runs_failure_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_failed_op_rolls_back_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_bounds_and_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_sliding_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_put_options_and_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_no_stale_read_from_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_stress_cas_moves_keep_the_sum, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
