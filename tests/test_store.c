/*
 * test_store.c - tests of src/store.c: migrations, counters, group commit,
 * readers, the stop deadline; on SQLite, or on PostgreSQL under
 * SQLCACHED_TEST_BACKEND=postgresql (testutil.h).
 *
 * What a test needs to see or change behind the store's back goes through
 * a connection of its own to the same database (tests/sidedb.h), with
 * statement text valid on both. The writes under test go
 * through the seam (storage_kv_*). Tests of SQLite itself (WAL, a file
 * that is not a database, the SQLite result codes) are skipped on
 * PostgreSQL, which has its own equivalents where one exists.
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

#include "pg_conn.h"
#include "sidedb.h"
#include "storage_sqlite.h"
#include "testutil.h"

typedef struct fixture {
    char *dir;
    char *path;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    f->path = f->dir ? testutil_db(f->dir, "store.db") : NULL;
    *state = f;
    return f->dir && f->path ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    free(f->path);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

static store_t *open_store(fixture_t *f)
{
    char err[256] = "";
    store_config_t cfg = {.path = f->path,
                          .durability = SQLCACHED_DURABILITY_NORMAL,
                          .busy_timeout_ms = 1000,
                          .max_batch = 64};
    store_t *s = store_open(&cfg, err, sizeof err);
    if (!s)
        fprintf(stderr, "store_open: %s\n", err);
    return s;
}

static int64_t query_int(const char *location, const char *sql)
{
    sidedb_t *c = sidedb_open(location);
    assert_non_null(c);
    int64_t v = sidedb_int(c, sql);
    sidedb_close(c);
    return v;
}

static const char SQL_COUNT_MIGRATIONS[] = "SELECT COUNT(*) FROM schema_migrations";
static const char SQL_VERSION[] = "SELECT value FROM meta WHERE name = 'version'";
static const char SQL_COUNT_ITEMS[] = "SELECT COUNT(*) FROM items";
static const char SQL_DROP_ORDERS[] = "DROP TABLE orders";
static const char SQL_DROP_ITEMS[] = "DROP TABLE items";
static const char SQL_FORGET_002[] = "DELETE FROM schema_migrations WHERE version = 2";
/* PostgreSQL's 002 adds the order_id counter (SQLite: AUTOINCREMENT) */
static const char SQL_FORGET_ORDER_ID[] = "DELETE FROM meta WHERE name = 'order_id'";
static const char SQL_FUTURE[] = "INSERT INTO schema_migrations VALUES (9999, 'future', 0)";
static const char SQL_VERSION_1000[] = "UPDATE meta SET value = 1000 WHERE name = 'version'";

static int migration_count(void)
{
    return testutil_backend_pg() ? pg_conn_migration_count : store_migration_count;
}

static void test_store_applies_and_records_migrations(void **state)
{
    fixture_t *f = *state;
    store_t *s = open_store(f);
    assert_non_null(s);
    store_close(s);
    assert_int_equal(query_int(f->path, SQL_COUNT_MIGRATIONS), migration_count());
    assert_int_equal(query_int(f->path, SQL_VERSION), 0);
    /* Reopening applies nothing twice. */
    s = open_store(f);
    assert_non_null(s);
    store_close(s);
    assert_int_equal(query_int(f->path, SQL_COUNT_MIGRATIONS), migration_count());
}

static void test_store_uses_wal(void **state)
{
    TESTUTIL_SKIP_ON_PG("WAL mode is SQLite's");
    fixture_t *f = *state;
    store_t *s = open_store(f);
    assert_non_null(s);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    store_close(s);
}

static void test_store_applies_a_missing_middle_migration(void **state)
{
    fixture_t *f = *state;
    store_close(open_store(f));
    /* a database that recorded 001 and 003 but never had 002 */
    sidedb_t *c = sidedb_open(f->path);
    assert_non_null(c);
    assert_true(sidedb_exec(c, SQL_DROP_ORDERS));
    assert_true(sidedb_exec(c, SQL_DROP_ITEMS));
    assert_true(sidedb_exec(c, SQL_FORGET_002));
    assert_true(sidedb_exec(c, SQL_FORGET_ORDER_ID));
    sidedb_close(c);
    store_t *s = open_store(f);
    assert_non_null(s);
    store_close(s);
    assert_int_equal(query_int(f->path, SQL_COUNT_MIGRATIONS), migration_count());
    assert_int_equal(query_int(f->path, SQL_COUNT_ITEMS), 0);
}

static void test_store_refuses_newer_schema(void **state)
{
    fixture_t *f = *state;
    store_close(open_store(f));
    sidedb_t *c = sidedb_open(f->path);
    assert_non_null(c);
    assert_true(sidedb_exec(c, SQL_FUTURE));
    sidedb_close(c);
    char err[256] = "";
    store_config_t cfg = {.path = f->path, .busy_timeout_ms = 100};
    assert_null(store_open(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "newer"));
}

/* Something that is not a sqlcached database: a text file (SQLite); a URL
 * naming a database the server does not have (PostgreSQL). */
static void test_store_refuses_non_database(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    store_config_t cfg = {.path = f->path, .busy_timeout_ms = 100};
    char url[512];
    if (testutil_backend_pg()) {
        /* postgresql://...:PORT/postgres?options=... -> .../no_such_db?options=... */
        const char *q = strstr(f->path, "/postgres?");
        assert_non_null(q);
        snprintf(url, sizeof url, "%.*s/no_such_db%s", (int)(q - f->path), f->path, q + 9);
        cfg.path = url;
    } else {
        FILE *fp = fopen(f->path, "w");
        assert_non_null(fp);
        fputs("this is not a database, just text that is long enough to have a header\n", fp);
        fclose(fp);
    }
    assert_null(store_open(&cfg, err, sizeof err));
    print_message("%s\n", err);
    assert_true(strlen(err) > 0);
    if (testutil_backend_pg())
        assert_non_null(strstr(err, "no_such_db"));
}

static void test_store_refuses_unwritable_path(void **state)
{
    TESTUTIL_SKIP_ON_PG("a SQLite path that cannot be created (PostgreSQL: a missing "
                        "database, test_store_refuses_non_database)");
    (void)state;
    char err[256] = "";
    store_config_t cfg = {.path = "/nonexistent-dir/sub/x.db", .busy_timeout_ms = 100};
    assert_null(store_open(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
}

static sqlcached_status_t take_version(store_conn_t *w, void *arg)
{
    return store_counter_next(w, "version", arg);
}

static void test_store_counter_grows_across_restarts(void **state)
{
    fixture_t *f = *state;
    store_t *s = open_store(f);
    int64_t a = 0, b = 0, c = 0;
    assert_int_equal(store_write(s, take_version, &a), SQLCACHED_OK);
    assert_int_equal(store_write(s, take_version, &b), SQLCACHED_OK);
    assert_true(b > a && a > 0);
    store_close(s);
    s = open_store(f);
    assert_int_equal(store_write(s, take_version, &c), SQLCACHED_OK);
    assert_true(c > b);
    store_close(s);
}

/* The writer counts in memory between transactions: a value committed by
 * another connection meanwhile must still be seen, and each transaction
 * must leave meta at the last value handed out. */
static void test_store_counter_sees_other_writers(void **state)
{
    fixture_t *f = *state;
    store_t *s = open_store(f);
    int64_t a = 0, b = 0;
    assert_int_equal(store_write(s, take_version, &a), SQLCACHED_OK);
    assert_int_equal(query_int(f->path, SQL_VERSION), a);
    sidedb_t *c = sidedb_open(f->path);
    assert_non_null(c);
    assert_true(sidedb_exec(c, SQL_VERSION_1000));
    sidedb_close(c);
    assert_int_equal(store_write(s, take_version, &b), SQLCACHED_OK);
    assert_int_equal(b, 1001);
    assert_int_equal(query_int(f->path, SQL_VERSION), 1001);
    store_close(s);
}

/* Async writes: the callback runs once, after the commit, with the status. */
typedef struct async_ctx {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    sqlcached_status_t status;
} async_ctx_t;

static void on_async_done(void *cls, sqlcached_status_t status)
{
    async_ctx_t *c = cls;
    pthread_mutex_lock(&c->lock);
    c->calls++;
    c->status = status;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void test_store_write_async_calls_back_after_commit(void **state)
{
    fixture_t *f = *state;
    store_t *s = open_store(f);
    async_ctx_t c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, SQLCACHED_INTERNAL};
    int64_t v = 0;
    assert_int_equal(store_write_async(s, take_version, NULL, &v, on_async_done, &c), SQLCACHED_OK);
    pthread_mutex_lock(&c.lock);
    while (c.calls == 0)
        pthread_cond_wait(&c.cond, &c.lock);
    pthread_mutex_unlock(&c.lock);
    assert_int_equal(c.status, SQLCACHED_OK);
    assert_true(v > 0);
    assert_int_equal(query_int(f->path, SQL_VERSION), v);
    store_close(s);
    assert_int_equal(c.calls, 1);
}

/* Another connection takes the lock every write needs (sidedb.h). */
static sidedb_t *hold_lock(const char *location)
{
    sidedb_t *lock = sidedb_open(location);
    assert_non_null(lock);
    assert_true(sidedb_lock_writes(lock));
    return lock;
}

/* Wait for c's callback, at most ms. */
static void wait_done(async_ctx_t *c, int64_t ms)
{
    int64_t t0 = testutil_mono_ms();
    pthread_mutex_lock(&c->lock);
    while (c->calls == 0 && testutil_mono_ms() - t0 < ms) {
        pthread_mutex_unlock(&c->lock);
        usleep(10000);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
}

/* A write that waits for a lock held by another connection fails
 * UNAVAILABLE once the busy timeout has passed (SQLite's busy handler,
 * PostgreSQL's lock_timeout), not never; the store writes again once the
 * lock is gone. */
static void test_store_lock_wait_ends_at_the_busy_timeout(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    store_config_t cfg = {.path = f->path, .busy_timeout_ms = 300};
    store_t *s = store_open(&cfg, err, sizeof err);
    assert_non_null(s);
    sidedb_t *lock = hold_lock(f->path);
    async_ctx_t c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, SQLCACHED_INTERNAL};
    int64_t v = 0, t0 = testutil_mono_ms();
    assert_int_equal(store_write_async(s, take_version, NULL, &v, on_async_done, &c), SQLCACHED_OK);
    wait_done(&c, 30000);
    int64_t took = testutil_mono_ms() - t0;
    assert_true(sidedb_unlock(lock)); /* before any assertion: store_close waits */
    sidedb_close(lock);
    print_message("the write failed %lld ms after it began (busy timeout 300 ms)\n",
                  (long long)took);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, SQLCACHED_UNAVAILABLE);
    assert_true(took >= 290);
    assert_int_equal(store_write(s, take_version, &v), SQLCACHED_OK);
    store_close(s);
    assert_int_equal(query_int(f->path, SQL_VERSION), v);
}

/* store_drain: writes waiting behind a lock held by another connection
 * fail UNAVAILABLE at the deadline (not after busy_timeout), queued ones
 * are never run, later ones are refused, and none is stored even once the
 * lock goes away. */
static void test_store_drain_cuts_the_wait_for_a_lock(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    store_config_t cfg = {.path = f->path, .busy_timeout_ms = 60000};
    store_t *s = store_open(&cfg, err, sizeof err);
    assert_non_null(s);
    int64_t before = query_int(f->path, SQL_VERSION);
    sidedb_t *lock = hold_lock(f->path);
    enum { N = 3 };
    async_ctx_t c[N];
    int64_t v[N] = {0};
    for (int i = 0; i < N; i++) {
        c[i] = (async_ctx_t){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
                             SQLCACHED_INTERNAL};
        assert_int_equal(store_write_async(s, take_version, NULL, &v[i], on_async_done, &c[i]),
                         SQLCACHED_OK);
        usleep(50000); /* the first waits for the lock, the others queue */
    }
    int64_t t0 = testutil_mono_ms();
    store_drain(s, 200);
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&c[i].lock);
        while (c[i].calls == 0 && testutil_mono_ms() - t0 < 30000) {
            pthread_mutex_unlock(&c[i].lock);
            usleep(10000);
            pthread_mutex_lock(&c[i].lock);
        }
        pthread_mutex_unlock(&c[i].lock);
        assert_int_equal(c[i].calls, 1); /* well before the 60 s busy timeout */
        assert_int_equal(c[i].status, SQLCACHED_UNAVAILABLE);
    }
    int64_t took = testutil_mono_ms() - t0;
    print_message("queued writes failed %lld ms after a 200 ms deadline was set\n",
                  (long long)took);
    assert_true(took >= 190);
    int64_t late = 0;
    assert_int_equal(store_write(s, take_version, &late), SQLCACHED_UNAVAILABLE);
    assert_true(sidedb_unlock(lock));
    sidedb_close(lock);
    assert_int_equal(store_write(s, take_version, &late), SQLCACHED_UNAVAILABLE);
    store_close(s);
    assert_int_equal(query_int(f->path, SQL_VERSION), before);
}

static sqlcached_status_t missing_counter(store_conn_t *w, void *arg)
{
    return store_counter_next(w, "no-such-counter", arg);
}

static void test_store_missing_counter_is_internal(void **state)
{
    fixture_t *f = *state;
    store_t *s = open_store(f);
    int64_t v;
    assert_int_equal(store_write(s, missing_counter, &v), SQLCACHED_INTERNAL);
    store_close(s);
}

/* --- group commit: one transaction, a failing write rolled back alone --- */

typedef struct batch_ctx {
    store_t *s;
    atomic_int submitted;
    atomic_int writer_blocked; /* block_writer is running in the writer */
    atomic_int release_writer;
} batch_ctx_t;

typedef struct insert_arg {
    batch_ctx_t *ctx;
    const char *name;
    sqlcached_status_t result; /* what the job returns after inserting */
    sqlcached_status_t got;
} insert_arg_t;

static sqlcached_status_t insert_then(store_conn_t *w, void *arg)
{
    insert_arg_t *a = arg;
    sqlcached_status_t st =
        storage_kv_upsert(w, a->name, strlen(a->name), "v", 1, "text/plain", 1, 0);
    return st != SQLCACHED_OK ? st : a->result;
}

static sqlcached_status_t on_row(void *cls, const storage_kv_row_t *row)
{
    (void)cls;
    (void)row;
    return SQLCACHED_OK;
}

/* Is key stored? (through a reader of the store) */
static bool stored(store_t *s, const char *key)
{
    store_conn_t *r = store_reader_acquire(s);
    assert_non_null(r);
    sqlcached_status_t st = storage_kv_get(r, key, strlen(key), 0, on_row, NULL);
    store_reader_release(s, r);
    assert_true(st == SQLCACHED_OK || st == SQLCACHED_NOT_FOUND);
    return st == SQLCACHED_OK;
}

static sqlcached_status_t block_writer(store_conn_t *w, void *arg)
{
    (void)w;
    batch_ctx_t *ctx = arg;
    atomic_store(&ctx->writer_blocked, 1);
    for (int i = 0; i < 500 && !atomic_load(&ctx->release_writer); i++)
        usleep(2000);
    return SQLCACHED_OK;
}

static void *submit(void *arg)
{
    insert_arg_t *a = arg;
    atomic_fetch_add(&a->ctx->submitted, 1);
    a->got = store_write(a->ctx->s, insert_then, a);
    return NULL;
}

static void *blocker(void *arg)
{
    batch_ctx_t *ctx = arg;
    store_write(ctx->s, block_writer, ctx);
    return NULL;
}

static void test_store_group_commit_isolates_failures(void **state)
{
    fixture_t *f = *state;
    batch_ctx_t ctx = {.s = open_store(f)};
    assert_non_null(ctx.s);
    store_stats_t before, after;
    pthread_t tb, t[3];
    insert_arg_t args[3] = {
        {&ctx, "b", SQLCACHED_OK, 0},
        {&ctx, "c", SQLCACHED_PRECONDITION_FAILED, 0},
        {&ctx, "d", SQLCACHED_OK, 0},
    };
    assert_int_equal(pthread_create(&tb, NULL, blocker, &ctx), 0);
    /* the blocker occupies the writer (bounded wait, not a guess) */
    for (int i = 0; i < 5000 && !atomic_load(&ctx.writer_blocked); i++)
        usleep(1000);
    assert_true(atomic_load(&ctx.writer_blocked));
    store_stats(ctx.s, &before);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, submit, &args[i]), 0);
    for (int i = 0; i < 500 && atomic_load(&ctx.submitted) < 3; i++)
        usleep(1000);
    usleep(50000); /* let them queue behind the blocker */
    atomic_store(&ctx.release_writer, 1);
    pthread_join(tb, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    store_stats(ctx.s, &after);
    assert_int_equal(args[0].got, SQLCACHED_OK);
    assert_int_equal(args[1].got, SQLCACHED_PRECONDITION_FAILED);
    assert_int_equal(args[2].got, SQLCACHED_OK);
    /* The three queued writes shared one transaction. */
    assert_int_equal(after.write_transactions - before.write_transactions, 2);
    assert_int_equal(after.writes_committed - before.writes_committed, 4);
    assert_true(stored(ctx.s, "b"));
    assert_false(stored(ctx.s, "c"));
    assert_true(stored(ctx.s, "d"));
    store_close(ctx.s);
}

static void test_store_status_maps_sqlite_errors(void **state)
{
    TESTUTIL_SKIP_ON_PG("SQLite result codes (PostgreSQL's SQLSTATE mapping: "
                        "test_pg_conn_classify)");
    (void)state;
    assert_int_equal(store_status(SQLITE_OK), SQLCACHED_OK);
    assert_int_equal(store_status(SQLITE_FULL), SQLCACHED_STORAGE_FULL);
    assert_int_equal(store_status(SQLITE_BUSY), SQLCACHED_UNAVAILABLE);
    assert_int_equal(store_status(SQLITE_BUSY_SNAPSHOT), SQLCACHED_UNAVAILABLE);
    assert_int_equal(store_status(SQLITE_LOCKED), SQLCACHED_UNAVAILABLE);
    assert_int_equal(store_status(SQLITE_NOMEM), SQLCACHED_NOMEM);
    assert_int_equal(store_status(SQLITE_CORRUPT), SQLCACHED_INTERNAL);
}

static void test_store_readers_are_pooled(void **state)
{
    fixture_t *f = *state;
    store_t *s = open_store(f);
    store_conn_t *a = store_reader_acquire(s);
    store_conn_t *b = store_reader_acquire(s);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    store_reader_release(s, a);
    assert_ptr_equal(store_reader_acquire(s), a);
    /* Readers cannot write. */
    assert_int_not_equal(storage_kv_upsert(a, "k", 1, "v", 1, "text/plain", 1, 0), SQLCACHED_OK);
    assert_false(stored(s, "k"));
    store_reader_release(s, a);
    store_reader_release(s, b);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_applies_and_records_migrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_uses_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refuses_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_applies_a_missing_middle_migration, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_refuses_non_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refuses_unwritable_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_counter_grows_across_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_missing_counter_is_internal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_counter_sees_other_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_write_async_calls_back_after_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_group_commit_isolates_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_lock_wait_ends_at_the_busy_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_drain_cuts_the_wait_for_a_lock, setup, teardown),
        cmocka_unit_test(test_store_status_maps_sqlite_errors),
        cmocka_unit_test_setup_teardown(test_store_readers_are_pooled, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
