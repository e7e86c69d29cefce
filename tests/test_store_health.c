/*
 * test_store_health.c - the store's health and its SQLite settings, through
 * the library (include/sqlcached.h), with internals (engine.h) only to read
 * the connections' PRAGMAs:
 *   - store_status(): the one mapping from SQLite result codes;
 *   - an I/O error on commit (a file size limit, RLIMIT_FSIZE, makes the
 *     next WAL append fail with EFBIG = SQLITE_IOERR_WRITE, as a file
 *     system remounted read-only does with EROFS; no root needed) answers
 *     SQLCACHED_UNAVAILABLE, not SQLCACHED_INTERNAL, and the health says
 *     the store cannot write and why; the next commit makes it writable;
 *   - sqlite_cache sets PRAGMA cache_size on the writer and the readers.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "engine.h"
#include "storage_sqlite.h"
#include "testutil.h"

static void test_store_status_maps_sqlite_codes(void **state)
{
    (void)state;
    static const struct {
        int rc;
        sqlcached_status_t want;
    } rows[] = {
        {SQLITE_OK, SQLCACHED_OK},
        {SQLITE_DONE, SQLCACHED_OK},
        {SQLITE_FULL, SQLCACHED_STORAGE_FULL},
        {SQLITE_BUSY, SQLCACHED_UNAVAILABLE},
        {SQLITE_BUSY_SNAPSHOT, SQLCACHED_UNAVAILABLE},
        {SQLITE_LOCKED, SQLCACHED_UNAVAILABLE},
        {SQLITE_IOERR, SQLCACHED_UNAVAILABLE},
        {SQLITE_IOERR_WRITE, SQLCACHED_UNAVAILABLE},
        {SQLITE_IOERR_FSYNC, SQLCACHED_UNAVAILABLE},
        {SQLITE_IOERR_READ, SQLCACHED_UNAVAILABLE},
        {SQLITE_IOERR_SHMMAP, SQLCACHED_UNAVAILABLE},
        {SQLITE_READONLY, SQLCACHED_UNAVAILABLE},
        {SQLITE_READONLY_DBMOVED, SQLCACHED_UNAVAILABLE},
        {SQLITE_READONLY_RECOVERY, SQLCACHED_UNAVAILABLE},
        {SQLITE_CANTOPEN, SQLCACHED_UNAVAILABLE},
        {SQLITE_CANTOPEN_ISDIR, SQLCACHED_UNAVAILABLE},
        {SQLITE_PROTOCOL, SQLCACHED_UNAVAILABLE},
        {SQLITE_NOMEM, SQLCACHED_NOMEM},
        {SQLITE_IOERR_NOMEM, SQLCACHED_NOMEM},
        {SQLITE_CORRUPT, SQLCACHED_INTERNAL},
        {SQLITE_NOTADB, SQLCACHED_INTERNAL},
        {SQLITE_ERROR, SQLCACHED_INTERNAL},
        {SQLITE_MISUSE, SQLCACHED_INTERNAL},
        {SQLITE_CONSTRAINT_UNIQUE, SQLCACHED_INTERNAL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (store_status(rows[i].rc) != rows[i].want)
            print_error("SQLite code %d: got %s, want %s\n", rows[i].rc,
                        sqlcached_status_name(store_status(rows[i].rc)),
                        sqlcached_status_name(rows[i].want));
        assert_int_equal(store_status(rows[i].rc), rows[i].want);
    }
}

static sqlcached_t *open_store(const char *dir, size_t sqlite_cache, int set_cache)
{
    char *path = testutil_path(dir, "health.db");
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.path = path;
    o.purge_interval_ms = -1; /* no background writes */
    if (set_cache)
        o.sqlite_cache = sqlite_cache;
    sqlcached_t *db = NULL;
    char err[256] = "";
    if (sqlcached_open(&o, &db, err, sizeof err) != SQLCACHED_OK)
        print_error("open: %s\n", err);
    free(path);
    return db;
}

static sqlcached_status_t put(sqlcached_t *db, const char *key, size_t vlen)
{
    char *v = malloc(vlen);
    assert_non_null(v);
    memset(v, 'v', vlen);
    sqlcached_status_t st = sqlcached_kv_put(db, key, strlen(key), v, vlen, NULL, NULL);
    free(v);
    return st;
}

static void test_store_health_io_error_is_unavailable_then_recovers(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    assert_non_null(dir);
    sqlcached_t *db = open_store(dir, 0, 0);
    assert_non_null(db);
    assert_int_equal(put(db, "before", 100), SQLCACHED_OK);
    sqlcached_health_t h;
    sqlcached_health(db, &h);
    assert_int_equal(h.writable, 1);
    assert_int_equal(h.last_error_at, 0);
    assert_string_equal(h.reason, "");

    /* the WAL may not grow past its current end: the next frame's write
     * (at exactly that offset) fails with EFBIG */
    char *wal = testutil_path(dir, "health.db-wal");
    struct stat st;
    assert_int_equal(stat(wal, &st), 0);
    assert_true(st.st_size > 0);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = (struct rlimit){.rlim_cur = (rlim_t)st.st_size, .rlim_max = saved.rlim_max};
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    sqlcached_status_t failed = put(db, "during", 20000);
    sqlcached_health(db, &h);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    print_message("put with the WAL capped at %lld bytes: %s; health writable %d: %s\n",
                  (long long)st.st_size, sqlcached_status_name(failed), h.writable, h.reason);
    assert_int_equal(failed, SQLCACHED_UNAVAILABLE); /* was SQLCACHED_INTERNAL (500) */
    assert_int_equal(h.writable, 0);
    assert_int_equal(h.files_moved, 0);
    assert_int_equal(h.last_error, SQLCACHED_UNAVAILABLE);
    assert_true(h.last_error_at > 0);
    assert_non_null(strstr(h.reason, "disk I/O error"));

    /* reads go on; the failed write is not there */
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_get(db, "before", 6, &v), SQLCACHED_OK);
    sqlcached_value_release(v);
    assert_int_equal(sqlcached_kv_get(db, "during", 6, &v), SQLCACHED_NOT_FOUND);

    /* room again: the next commit makes the store writable */
    assert_int_equal(put(db, "after", 100), SQLCACHED_OK);
    int64_t at = h.last_error_at;
    sqlcached_health(db, &h);
    assert_int_equal(h.writable, 1);
    assert_string_equal(h.reason, "");
    assert_int_equal(h.last_error, SQLCACHED_UNAVAILABLE); /* kept as history */
    assert_int_equal(h.last_error_at, at);
    sqlcached_close(db);
    free(wal);
    testutil_rmdir(dir);
}

static sqlcached_status_t read_cache_size(store_conn_t *c, void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(store_conn_db(c), "PRAGMA cache_size", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        *(int64_t *)arg = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return SQLCACHED_OK;
}

/* PRAGMA cache_size (negative: KiB) of the writer and of a reader. */
static void cache_sizes(sqlcached_t *db, int64_t *writer, int64_t *reader)
{
    *writer = *reader = 0;
    assert_int_equal(store_write(db->store, read_cache_size, writer), SQLCACHED_OK);
    store_conn_t *r = store_reader_acquire(db->store);
    assert_non_null(r);
    read_cache_size(r, reader);
    store_reader_release(db->store, r);
}

static void test_store_sqlite_cache_sets_cache_size(void **state)
{
    (void)state;
    static const struct {
        int set;
        size_t bytes;
        int64_t writer, reader;
    } rows[] = {
        {0, 0, -65536, -2000},                  /* the defaults: 64 MiB, SQLite's own */
        {1, (size_t)1 << 20, -1024, -1024},     /* 1 MiB: both bounded by it */
        {1, (size_t)100 << 20, -102400, -2000}, /* readers never above the default */
        {1, 1500, -2, -2},                      /* rounded up to KiB */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char *dir = testutil_mkdtemp();
        assert_non_null(dir);
        sqlcached_t *db = open_store(dir, rows[i].bytes, rows[i].set);
        assert_non_null(db);
        int64_t w, r;
        cache_sizes(db, &w, &r);
        print_message("sqlite_cache %zu: writer cache_size %lld, reader %lld\n", rows[i].bytes,
                      (long long)w, (long long)r);
        assert_int_equal(w, rows[i].writer);
        assert_int_equal(r, rows[i].reader);
        sqlcached_close(db);
        testutil_rmdir(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_status_maps_sqlite_codes),
        cmocka_unit_test(test_store_health_io_error_is_unavailable_then_recovers),
        cmocka_unit_test(test_store_sqlite_cache_sets_cache_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
