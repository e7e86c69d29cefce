/*
 * test_watch.c - the change log and its watches through the library
 * (sqlcached_watch_*): every kind of write recorded once, in version
 * order, with its kind and expiry; prefixes; the wake; since= read back
 * from the log (pages of it) after the store is reopened; the history
 * trimmed to watch_history and HISTORY_TRUNCATED with the oldest version
 * kept; max_watchers. Both backends (tests/pg/test_watch.pg).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqlcached.h"
#include "testutil.h"

static atomic_int wakes;

static void on_wake(void *cls)
{
    (void)cls;
    atomic_fetch_add(&wakes, 1);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sqlcached_t *open_with(const char *dir, int64_t history, unsigned max_watchers)
{
    char *path = testutil_db(dir, "w.db");
    assert_non_null(path);
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.path = path;
    o.durability = SQLCACHED_DURABILITY_NORMAL;
    o.watch_history = history;
    o.max_watchers = max_watchers;
    sqlcached_t *db = NULL;
    char err[256];
    sqlcached_status_t st = sqlcached_open(&o, &db, err, sizeof err);
    if (st != SQLCACHED_OK)
        fprintf(stderr, "open: %s\n", err);
    free(path);
    assert_int_equal(st, SQLCACHED_OK);
    return db;
}

static int64_t put(sqlcached_t *db, const char *key, int64_t ttl_ms)
{
    sqlcached_put_options_t o = {.ttl_ms = ttl_ms};
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(db, key, strlen(key), "v", 1, &o, &r), SQLCACHED_OK);
    return r.version;
}

/* The next n changes of w (waiting up to 5 s for them). */
static size_t next_n(sqlcached_watch_t *w, sqlcached_change_t *out, size_t n)
{
    size_t got = 0;
    int64_t until = mono_ms() + 5000;
    while (got < n && mono_ms() < until) {
        size_t k = 0;
        assert_int_equal(sqlcached_watch_next(w, out + got, n - got, &k), SQLCACHED_OK);
        got += k;
        if (!k)
            usleep(10000);
    }
    return got;
}

static void expect(const sqlcached_change_t *c, char kind, const char *key, int64_t version)
{
    assert_int_equal(c->kind, kind);
    assert_string_equal(c->key, key);
    assert_int_equal(c->key_len, strlen(key));
    if (version)
        assert_int_equal(c->version, version);
}

static void test_watch_every_write(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    sqlcached_t *db = open_with(dir, 0, 0);
    sqlcached_watch_t *w = NULL, *all = NULL;
    assert_int_equal(sqlcached_watch_open(db, "k", 1, -1, 0, on_wake, NULL, &w, NULL),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_watch_open(db, NULL, 0, -1, 0, on_wake, NULL, &all, NULL),
                     SQLCACHED_OK);
    int w0 = atomic_load(&wakes);
    int64_t v1 = put(db, "k1", 60000);
    int64_t vx = put(db, "x", 0);
    int64_t v2 = 0, n = 0;
    assert_int_equal(sqlcached_kv_incr(db, "k2", 2, 5, &n, &v2), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_delete(db, "k1", 2, NULL), SQLCACHED_OK);
    sqlcached_txn_t *t = NULL;
    assert_int_equal(sqlcached_txn_new(&t), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_add_put(t, SQLCACHED_TXN_SUCCESS, "k3", 2, "t", 1, NULL, 0),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_add_delete(t, SQLCACHED_TXN_SUCCESS, "k2", 2), SQLCACHED_OK);
    assert_int_equal(sqlcached_txn_commit(db, t), SQLCACHED_OK);
    sqlcached_txn_free(t);
    sqlcached_value_t *taken = NULL;
    assert_int_equal(sqlcached_kv_take(db, "k3", 2, NULL, &taken), SQLCACHED_OK);
    sqlcached_value_release(taken);
    sqlcached_change_t c[8];
    assert_int_equal(next_n(w, c, 6), 6);
    expect(&c[0], 'p', "k1", v1);
    assert_true(c[0].expires_at > 0);
    expect(&c[1], 'p', "k2", v2);
    assert_int_equal(c[1].expires_at, 0);
    expect(&c[2], 'd', "k1", 0);
    expect(&c[3], 'p', "k3", 0);
    expect(&c[4], 'd', "k2", 0);
    expect(&c[5], 'd', "k3", 0);
    for (int i = 1; i < 6; i++)
        assert_true(c[i].version > c[i - 1].version);
    size_t k = 0;
    assert_int_equal(sqlcached_watch_next(w, c, 8, &k), SQLCACHED_OK);
    assert_int_equal(k, 0);
    assert_int_equal(sqlcached_watch_cursor(w), c[5].version);
    assert_int_equal(next_n(all, c, 7), 7); /* "x" too */
    expect(&c[1], 'p', "x", vx);
    assert_true(atomic_load(&wakes) > w0);
    assert_false(sqlcached_watch_timed_out(w));
    sqlcached_watch_stats_t s;
    sqlcached_watch_stats(db, &s);
    assert_int_equal(s.watchers, 2);
    assert_true(s.events_sent >= 13);
    sqlcached_watch_close(w);
    sqlcached_watch_close(all);
    sqlcached_watch_stats(db, &s);
    assert_int_equal(s.watchers, 0);
    sqlcached_close(db);
    testutil_rmdir(dir);
}

/* since= after a reopen: the changes come from the log, page after page. */
static void test_watch_since_from_the_log(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    sqlcached_t *db = open_with(dir, 0, 0);
    int64_t v[600];
    for (int i = 0; i < 600; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s%d", i % 3 ? "a" : "b", i);
        v[i] = put(db, key, 0);
    }
    sqlcached_close(db);
    db = open_with(dir, 0, 0);
    sqlcached_watch_t *w = NULL;
    assert_int_equal(sqlcached_watch_open(db, "a", 1, v[9], 0, on_wake, NULL, &w, NULL),
                     SQLCACHED_OK);
    static sqlcached_change_t c[600];
    size_t got = next_n(w, c, 600);
    int j = 0;
    for (int i = 10; i < 600; i++)
        if (i % 3) {
            assert_true((size_t)j < got);
            assert_int_equal(c[j].version, v[i]);
            j++;
        }
    assert_int_equal(got, (size_t)j);
    sqlcached_watch_close(w);
    sqlcached_close(db);
    testutil_rmdir(dir);
}

static void test_watch_history_truncated(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    sqlcached_t *db = open_with(dir, 10, 2);
    int64_t first = put(db, "h", 0);
    for (int i = 0; i < 30; i++)
        put(db, "h", 0);
    /* the maintenance thread trims every few seconds */
    sqlcached_status_t st = SQLCACHED_OK;
    int64_t oldest = 0;
    for (int64_t until = mono_ms() + 10000; mono_ms() < until && st == SQLCACHED_OK;) {
        sqlcached_watch_t *w = NULL;
        st = sqlcached_watch_open(db, NULL, 0, first, 0, on_wake, NULL, &w, &oldest);
        sqlcached_watch_close(w);
        if (st == SQLCACHED_OK)
            usleep(100000);
    }
    assert_int_equal(st, SQLCACHED_HISTORY_TRUNCATED);
    assert_true(oldest > first + 1); /* the trim may run while the writes go on */
    sqlcached_watch_stats_t s;
    sqlcached_watch_stats(db, &s);
    assert_true(s.truncated >= 1);
    /* as of the last trim (one during the writes saw more) */
    for (int64_t until = mono_ms() + 12000; s.history_size > 10 && mono_ms() < until;) {
        usleep(200000);
        sqlcached_watch_stats(db, &s);
    }
    assert_true(s.history_size <= 10 && s.history_size > 0);
    /* from oldest - 1 on, all is there */
    sqlcached_watch_t *w = NULL;
    assert_int_equal(sqlcached_watch_open(db, NULL, 0, oldest - 1, 0, on_wake, NULL, &w, NULL),
                     SQLCACHED_OK);
    sqlcached_change_t c;
    assert_int_equal(next_n(w, &c, 1), 1);
    assert_int_equal(c.version, oldest);
    /* max_watchers 2 */
    sqlcached_watch_t *w2 = NULL, *w3 = NULL;
    assert_int_equal(sqlcached_watch_open(db, NULL, 0, -1, 0, on_wake, NULL, &w2, NULL),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_watch_open(db, NULL, 0, -1, 0, on_wake, NULL, &w3, NULL),
                     SQLCACHED_UNAVAILABLE);
    assert_null(w3);
    /* a deadline */
    sqlcached_watch_close(w2);
    assert_int_equal(sqlcached_watch_open(db, NULL, 0, -1, 300, on_wake, NULL, &w2, NULL),
                     SQLCACHED_OK);
    int64_t until = mono_ms() + 3000;
    while (!sqlcached_watch_timed_out(w2) && mono_ms() < until)
        usleep(20000);
    assert_true(sqlcached_watch_timed_out(w2));
    sqlcached_watch_close(w2);
    sqlcached_watch_close(w);
    sqlcached_close(db);
    testutil_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_every_write),
        cmocka_unit_test(test_watch_since_from_the_log),
        cmocka_unit_test(test_watch_history_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
