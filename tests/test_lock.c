/*
 * test_lock.c - one process per database: the exclusive lock taken by
 * sqlcached_open() on "<db>-lock". A second daemon on the same file
 * refuses to start (exit 1, a message naming the lock), readers of the file
 * (the sqlite3 library read-only) keep working, kill -9 of the holder frees
 * the lock, a second sqlcached_open() in one process is refused, and
 * --restore into the database of a running daemon is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sqlite3.h>

#include "daemon.h"
#include "testutil.h"

static long put(const daemon_t *d, const char *path, const char *body)
{
    client_resp_t r;
    assert_int_equal(client_request(d, "PUT", path, NULL, body, strlen(body), &r), 0);
    long status = r.status;
    client_resp_free(&r);
    return status;
}

static long get(const daemon_t *d, const char *path, const char *expect_body)
{
    client_resp_t r;
    assert_int_equal(client_request(d, "GET", path, NULL, NULL, 0, &r), 0);
    long status = r.status;
    if (expect_body && status == 200)
        assert_string_equal(r.body, expect_body);
    client_resp_free(&r);
    return status;
}

/* A read through the sqlite3 library, read-only, as the sqlite3 shell or
 * a monitoring script would: the number of rows of kv, or -1. */
static int sqlite_count_keys(const char *db_path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM kv", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* A second daemon on the database of a running one exits 1 at once with a
 * message; the first keeps serving, and a read-only reader still works.
 * After kill -9 of the first, the second starts (nothing to clean up). */
static void test_lock_second_daemon_refused(void **state)
{
    daemon_fixture_t *f = *state;
    daemon_t *a = &f->d;
    assert_int_equal(put(a, "/v1/kv/k", "from-a"), 201);

    const char *args[] = {"--listen", "127.0.0.1:0", "--db", a->db_path, NULL};
    char out[4096];
    int rc = daemon_run(args, 5000, out, sizeof out);
    printf("# second daemon: exit %d, output: %s", rc, out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "in use"));
    assert_non_null(strstr(out, "-lock"));

    assert_int_equal(get(a, "/v1/kv/k", "from-a"), 200);
    assert_int_equal(sqlite_count_keys(a->db_path), 1);

    daemon_kill(a); /* kill -9: the kernel drops the lock */
    assert_int_equal(daemon_restart(a), 0);
    assert_int_equal(get(a, "/v1/kv/k", "from-a"), 200);
}

/* Embedded users are protected as well: a second sqlcached_open() of the
 * same file, even in the same process and through a symbolic link, fails
 * with SQLCACHED_CONFLICT; after sqlcached_close() of the first, it
 * succeeds. */
static void test_lock_library_second_open_refused(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    assert_non_null(dir);
    char *path = testutil_path(dir, "lib.db");
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.path = path;
    o.durability = SQLCACHED_DURABILITY_NORMAL;
    sqlcached_t *first = NULL, *second = NULL;
    char err[512] = "";
    assert_int_equal(sqlcached_open(&o, &first, err, sizeof err), SQLCACHED_OK);
    sqlcached_status_t st = sqlcached_open(&o, &second, err, sizeof err);
    printf("# second open: %s: %s\n", sqlcached_status_name(st), st ? err : "");
    assert_int_equal(st, SQLCACHED_CONFLICT);
    assert_null(second);
    assert_non_null(strstr(err, "in use"));
    /* nor through another name of the file: a symbolic link */
    char *link = testutil_path(dir, "link.db");
    assert_int_equal(symlink(path, link), 0);
    o.path = link;
    assert_int_equal(sqlcached_open(&o, &second, err, sizeof err), SQLCACHED_CONFLICT);
    assert_null(second);
    o.path = path;
    free(link);
    sqlcached_close(first);
    assert_int_equal(sqlcached_open(&o, &second, err, sizeof err), SQLCACHED_OK);
    sqlcached_close(second);
    free(path);
    testutil_rmdir(dir);
}

/* --restore into the database of a running daemon exits 1 with a message
 * and changes nothing: the daemon's writes made after the backup are still
 * there after it restarts. */
static void test_lock_restore_refused_while_daemon_runs(void **state)
{
    daemon_fixture_t *f = *state;
    daemon_t *d = &f->d;
    assert_int_equal(put(d, "/v1/kv/old", "1"), 201);
    /* a backup of the database as it is now, through the sqlite3 library */
    char backup[700];
    snprintf(backup, sizeof backup, "%s/backup.db", d->dir);
    sqlite3 *src = NULL, *dst = NULL;
    assert_int_equal(sqlite3_open_v2(d->db_path, &src, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_open(backup, &dst), SQLITE_OK);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    assert_non_null(b);
    assert_int_equal(sqlite3_backup_step(b, -1), SQLITE_DONE);
    assert_int_equal(sqlite3_backup_finish(b), SQLITE_OK);
    sqlite3_close(dst);
    sqlite3_close(src);
    assert_int_equal(put(d, "/v1/kv/new", "2"), 201);

    const char *args[] = {"--restore", backup, "--db", d->db_path, NULL};
    char out[4096];
    int rc = daemon_run(args, 10000, out, sizeof out);
    printf("# restore under a running daemon: exit %d, output: %s", rc, out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "in use"));

    assert_int_equal(put(d, "/v1/kv/after", "3"), 201);
    assert_int_equal(daemon_stop(d), 0);
    assert_int_equal(daemon_restart(d), 0);
    assert_int_equal(get(d, "/v1/kv/old", "1"), 200);
    assert_int_equal(get(d, "/v1/kv/new", "2"), 200);
    assert_int_equal(get(d, "/v1/kv/after", "3"), 200);
}

static int setup(void **state)
{
    return daemon_fixture_start(state, NULL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lock_second_daemon_refused, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test(test_lock_library_second_open_refused),
        cmocka_unit_test_setup_teardown(test_lock_restore_refused_while_daemon_runs, setup,
                                        daemon_fixture_stop),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
