/*
 * test_storage_faults.c - the daemon when storage fails, over real HTTP:
 *   - disk full: with --testing-max-pages the database cannot grow; writes
 *     answer 507 storage_full, reads go on, nothing half-written; deleting
 *     frees room for a write at once; after a restart without the cap,
 *     writes work again, every acknowledged write is there, none answered
 *     507 is, and PRAGMA integrity_check is ok;
 *     /healthz answers 503 while full, 200 again after the next commit;
 *   - busy: another connection holds the write lock (BEGIN IMMEDIATE);
 *     writes answer 503 unavailable with Retry-After after --busy-timeout,
 *     concurrent writers too (no worker hangs), reads go on, /healthz
 *     answers 503, and writes work again once the lock is released;
 *   - I/O error: the daemon runs under a file size limit (RLIMIT_FSIZE, no
 *     root needed) that ends its WAL at a frame boundary, so the next
 *     commit fails with EFBIG = SQLITE_IOERR_WRITE (what a file system
 *     remounted read-only gives, as EROFS): writes answer 503 unavailable
 *     saying why, not 500, /healthz 503 with the reason, reads go on; after
 *     a restart without the limit every acknowledged write is there;
 *   - files moved: the -wal unlinked, or the database replaced by rename,
 *     under the running daemon: within a bounded wait writes answer 503
 *     saying which file, /healthz 503 with files_moved; after the WAL was
 *     unlinked even a SIGKILL loses no acknowledged write.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "daemon.h"
#include "relclient.h"
#include "testutil.h"

#define MAX_KEYS 2000
#define VALUE_LEN 3000

static int slow(void)
{
    const char *w = getenv("SQLCACHED_WRAPPER");
    return w && *w ? 20 : 1;
}

typedef struct fixture {
    char *dir;
    daemon_t d;
    rel_client_t c;
} fixture_t;

static int start(fixture_t *f, const char *const args[])
{
    f->dir = testutil_mkdtemp();
    if (!f->dir || daemon_start(&f->d, f->dir, args) != 0)
        return -1;
    return rel_client_init(&f->c, f->d.base_url, 30000L * slow());
}

/* Stop the daemon cleanly; the directory stays for the caller. */
static void finish(fixture_t *f)
{
    assert_int_equal(daemon_stop(&f->d), 0);
    rel_client_free(&f->c);
    daemon_free(&f->d);
}

/* PRAGMA integrity_check on the (closed) database: 1 if "ok". */
static int integrity_ok(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

static void value_of(int i, char *buf)
{
    memset(buf, 'a' + i % 26, VALUE_LEN);
    snprintf(buf, 16, "%06d:", i);
    buf[7] = 'x'; /* keep the fill after the NUL snprintf wrote */
}

/* Every key below n (acked[i] set) reads back its value. */
static void assert_all_present(rel_client_t *c, const bool *acked, int n)
{
    char want[VALUE_LEN], path[64];
    for (int i = 0; i < n; i++) {
        if (!acked[i])
            continue;
        value_of(i, want);
        snprintf(path, sizeof path, "/v1/kv/full-%d", i);
        assert_int_equal(rel_request(c, "GET", path, NULL, 0), REL_ANSWERED);
        assert_int_equal(c->status, 200);
        assert_int_equal(c->len, VALUE_LEN);
        assert_memory_equal(c->body, want, VALUE_LEN);
    }
}

/* GET /healthz answers `status`; when 503, a problem `unavailable` whose
 * last_error is `last_error` (NULL: not checked) and whose detail contains
 * `reason` (NULL: not checked). */
static void assert_health(rel_client_t *c, long status, const char *last_error, const char *reason)
{
    assert_int_equal(rel_request(c, "GET", "/healthz", NULL, 0), REL_ANSWERED);
    if (c->status != status)
        print_error("/healthz: %ld %s\n", c->status, c->body);
    assert_int_equal(c->status, status);
    if (status == 200) {
        char st[16] = "";
        assert_int_equal(rel_json_string(c, "status", st, sizeof st), 0);
        assert_string_equal(st, "ok");
        return;
    }
    assert_string_equal(rel_problem_code(c), "unavailable");
    char text[600] = "";
    if (last_error) {
        assert_int_equal(rel_json_string(c, "last_error", text, sizeof text), 0);
        assert_string_equal(text, last_error);
    }
    assert_int_equal(rel_json_string(c, "detail", text, sizeof text), 0);
    if (reason && !strstr(text, reason))
        print_error("/healthz detail '%s' does not say '%s'\n", text, reason);
    assert_true(!reason || strstr(text, reason));
}

/* The last answer was a problem whose detail contains `what`. */
static void assert_detail_says(rel_client_t *c, const char *what)
{
    char detail[600] = "";
    assert_int_equal(rel_json_string(c, "detail", detail, sizeof detail), 0);
    if (!strstr(detail, what))
        print_error("detail '%s' does not say '%s'\n", detail, what);
    assert_non_null(strstr(detail, what));
}

/* ------------------------------------------------------------------------
 * Disk full
 * ------------------------------------------------------------------------ */

/* PUT until the store is full; returns how many were acknowledged. */
static int fill_until_full(rel_client_t *c, bool *acked, int *first_full)
{
    char value[VALUE_LEN], path[64];
    int n = 0;
    *first_full = -1;
    for (int i = 0; i < MAX_KEYS && *first_full < 0; i++) {
        value_of(i, value);
        snprintf(path, sizeof path, "/v1/kv/full-%d", i);
        assert_int_equal(rel_request(c, "PUT", path, value, VALUE_LEN), REL_ANSWERED);
        if (c->status == 201) {
            acked[i] = true;
            n++;
        } else {
            assert_int_equal(c->status, 507);
            assert_string_equal(rel_problem_code(c), "storage_full");
            *first_full = i;
        }
    }
    return n;
}

static void test_storage_full_answers_507_and_recovers(void **state)
{
    (void)state;
    fixture_t f = {0};
    const char *args[] = {"--testing-max-pages", "48", "--threads", "4", NULL};
    assert_int_equal(start(&f, args), 0);
    static bool acked[MAX_KEYS];
    memset(acked, 0, sizeof acked);
    int full_at, n = fill_until_full(&f.c, acked, &full_at);
    assert_true(full_at > 0); /* some writes fit, then the cap was hit */
    assert_true(n > 0);
    /* still full for every kind of growing write; reads still served */
    char value[VALUE_LEN];
    value_of(full_at, value);
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/full-more", value, VALUE_LEN), REL_ANSWERED);
    assert_int_equal(f.c.status, 507);
    assert_all_present(&f.c, acked, full_at);
    assert_health(&f.c, 503, "storage_full", "database or disk is full");
    /* nothing is latched: deleting frees pages, and a write fits again */
    for (int i = 0; i < 4; i++) {
        char del[64];
        snprintf(del, sizeof del, "/v1/kv/full-%d", i);
        assert_int_equal(rel_request(&f.c, "DELETE", del, NULL, 0), REL_ANSWERED);
        assert_int_equal(f.c.status, 204);
        acked[i] = false;
    }
    char again[VALUE_LEN];
    value_of(0, again);
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/full-0", again, VALUE_LEN), REL_ANSWERED);
    assert_int_equal(f.c.status, 201);
    acked[0] = true;
    assert_health(&f.c, 200, NULL, NULL);
    /* space returns: restart without the cap */
    assert_int_equal(daemon_stop(&f.d), 0);
    assert_true(integrity_ok(f.d.db_path));
    daemon_free(&f.d);
    f.d.args[f.d.nargs++] = strdup("--threads");
    f.d.args[f.d.nargs++] = strdup("4");
    assert_int_equal(daemon_restart(&f.d), 0);
    rel_client_set_base(&f.c, f.d.base_url);
    assert_all_present(&f.c, acked, full_at);
    char path[64]; /* what answered 507 was not stored */
    snprintf(path, sizeof path, "/v1/kv/full-%d", full_at);
    assert_int_equal(rel_request(&f.c, "GET", path, NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 404);
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/full-more", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 404);
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/full-more", value, VALUE_LEN), REL_ANSWERED);
    assert_int_equal(f.c.status, 201);
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/full-more", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 200);
    print_message("storage full after %d writes of %d bytes; all %d present after restart\n", n,
                  VALUE_LEN, n);
    finish(&f);
    assert_true(integrity_ok(f.d.db_path));
    testutil_rmdir(f.dir);
}

/* ------------------------------------------------------------------------
 * Busy
 * ------------------------------------------------------------------------ */

typedef struct writer {
    pthread_t thread;
    const daemon_t *d;
    int id;
    rel_transport_t transport;
    long status;
    int retry_after;
    char code[32];
    int64_t elapsed_ms;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    rel_client_t c;
    char path[64];
    snprintf(path, sizeof path, "/v1/kv/busy-%d", w->id);
    w->transport = REL_IN_DOUBT;
    if (rel_client_init(&c, w->d->base_url, 20000L * slow()) != 0)
        return NULL;
    int64_t t0 = rel_now_ns();
    w->transport = rel_request(&c, "PUT", path, "v", 1);
    w->elapsed_ms = (rel_now_ns() - t0) / 1000000;
    w->status = c.status;
    w->retry_after = c.retry_after;
    snprintf(w->code, sizeof w->code, "%s", rel_problem_code(&c));
    rel_client_free(&c);
    return NULL;
}

static sqlite3 *hold_write_lock(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static void test_storage_busy_answers_503_then_recovers(void **state)
{
    (void)state;
    fixture_t f = {0};
    const char *args[] = {"--busy-timeout", "300", "--threads", "4", NULL};
    assert_int_equal(start(&f, args), 0);
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/before", "old", 3), REL_ANSWERED);
    assert_int_equal(f.c.status, 201);
    sqlite3 *lock = hold_write_lock(f.d.db_path);
    /* one writer: 503 with Retry-After after about the busy timeout */
    int64_t t0 = rel_now_ns();
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/during", "new", 3), REL_ANSWERED);
    int64_t ms = (rel_now_ns() - t0) / 1000000;
    assert_int_equal(f.c.status, 503);
    assert_string_equal(rel_problem_code(&f.c), "unavailable");
    assert_true(f.c.retry_after >= 1);
    assert_true(ms >= 250 && ms < 5000 * slow());
    assert_int_equal(rel_request(&f.c, "POST", "/v1/kv/ctr/incr", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 503);
    assert_int_equal(rel_request(&f.c, "DELETE", "/v1/kv/before", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 503);
    /* many writers at once: every one answered, none hangs */
    writer_t w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (writer_t){.d = &f.d, .id = i};
        assert_int_equal(pthread_create(&w[i].thread, NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(w[i].thread, NULL);
        assert_int_equal(w[i].transport, REL_ANSWERED);
        assert_int_equal(w[i].status, 503);
        assert_string_equal(w[i].code, "unavailable");
        assert_true(w[i].retry_after >= 1);
        assert_true(w[i].elapsed_ms < 10000 * slow());
    }
    assert_health(&f.c, 503, "unavailable", "locked");
    /* reads are not blocked by a writer (WAL) */
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/before", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 200);
    assert_string_equal(f.c.body, "old");
    /* the lock goes away: writes work again, nothing failed was stored */
    assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(lock);
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/during", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 404);
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/during", "new", 3), REL_ANSWERED);
    assert_int_equal(f.c.status, 201);
    assert_health(&f.c, 200, NULL, NULL);
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/during", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 200);
    assert_string_equal(f.c.body, "new");
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/before", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 200);
    finish(&f);
    assert_true(integrity_ok(f.d.db_path));
    testutil_rmdir(f.dir);
}

/* ------------------------------------------------------------------------
 * I/O error
 * ------------------------------------------------------------------------ */

/* WAL layout with 4096-byte pages: a 32-byte header, then frames of a
 * 24-byte header and a page. A limit at a frame boundary makes the write of
 * the next frame's header start exactly at the limit: EFBIG, nothing
 * written (a write across the limit would be short, which SQLite reports
 * as SQLITE_FULL instead). */
/* The failing PUT must leave fewer frames than the incr that follows it
 * needs (else that incr commits): with the change log (008_watch.sql) a
 * PUT writes one more page, and 64 left room for it; 66 does not. */
#define WAL_FRAMES_ALLOWED 66
#define WAL_LIMIT (32 + WAL_FRAMES_ALLOWED * (24 + 4096))

/* Start the daemon under RLIMIT_FSIZE = limit (it inherits the limit; this
 * process gets its own back at once). The database is created first
 * without the limit and the daemon stopped cleanly, which empties the WAL:
 * so the limit counts the frames of this test's writes only, whatever the
 * schema migrations wrote when the database was created. */
static int start_limited(fixture_t *f, const char *const args[], rlim_t limit)
{
    struct rlimit saved, lim;
    if (start(f, args) != 0 || daemon_stop(&f->d) != 0)
        return -1;
    if (getrlimit(RLIMIT_FSIZE, &saved) != 0)
        return -1;
    lim = (struct rlimit){.rlim_cur = limit, .rlim_max = saved.rlim_max};
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
        return -1;
    int rc = daemon_restart(&f->d);
    if (setrlimit(RLIMIT_FSIZE, &saved) != 0)
        return -1;
    rel_client_set_base(&f->c, f->d.base_url);
    return rc;
}

static void test_storage_io_error_answers_503_and_healthz(void **state)
{
    (void)state;
    fixture_t f = {0};
    const char *args[] = {"--threads", "2", NULL};
    assert_int_equal(start_limited(&f, args, WAL_LIMIT), 0);
    assert_health(&f.c, 200, NULL, NULL);
    static bool acked[MAX_KEYS];
    memset(acked, 0, sizeof acked);
    char value[VALUE_LEN], path[64];
    int n = 0, failed_at = -1;
    long failed_status = 0;
    for (int i = 0; i < MAX_KEYS && failed_at < 0; i++) {
        value_of(i, value);
        snprintf(path, sizeof path, "/v1/kv/full-%d", i);
        assert_int_equal(rel_request(&f.c, "PUT", path, value, VALUE_LEN), REL_ANSWERED);
        if (f.c.status == 201) {
            acked[i] = true;
            n++;
            continue;
        }
        failed_at = i;
        failed_status = f.c.status;
        print_message("WAL limited to %d bytes: PUT %d answered %ld %s\n", WAL_LIMIT, i, f.c.status,
                      f.c.body);
    }
    assert_true(n > 0 && failed_at > 0);
    assert_int_equal(failed_status, 503); /* was 500 internal */
    assert_string_equal(rel_problem_code(&f.c), "unavailable");
    assert_true(f.c.retry_after >= 1);
    assert_detail_says(&f.c, "disk I/O error");
    assert_health(&f.c, 503, "unavailable", "disk I/O error"); /* was 200 */
    /* every kind of write, again */
    assert_int_equal(rel_request(&f.c, "POST", "/v1/kv/ctr/incr", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 503);
    assert_int_equal(rel_request(&f.c, "DELETE", "/v1/kv/full-0", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 503);
    assert_all_present(&f.c, acked, failed_at); /* reads go on */
    /* the file system works again: restart without the limit */
    assert_int_equal(daemon_stop(&f.d), 0);
    assert_true(integrity_ok(f.d.db_path));
    assert_int_equal(daemon_restart(&f.d), 0);
    rel_client_set_base(&f.c, f.d.base_url);
    assert_health(&f.c, 200, NULL, NULL);
    assert_all_present(&f.c, acked, failed_at);
    snprintf(path, sizeof path, "/v1/kv/full-%d", failed_at);
    assert_int_equal(rel_request(&f.c, "GET", path, NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 404);
    print_message("%d writes acknowledged before the I/O error, all present after restart\n", n);
    finish(&f);
    testutil_rmdir(f.dir);
}

/* ------------------------------------------------------------------------
 * Files moved under the daemon
 * ------------------------------------------------------------------------ */

/* PUT /v1/kv/probe-N until one is refused, for at most ~5 s (x slow);
 * marks the acknowledged ones. Returns the index refused, -1 if none. */
static int put_until_refused(rel_client_t *c, bool *acked, int64_t *waited_ms)
{
    int64_t t0 = rel_now_ns();
    char path[64];
    for (int i = 0; i < 250 * slow(); i++) {
        snprintf(path, sizeof path, "/v1/kv/probe-%d", i);
        assert_int_equal(rel_request(c, "PUT", path, "p", 1), REL_ANSWERED);
        if (c->status != 201) {
            *waited_ms = (rel_now_ns() - t0) / 1000000;
            return i;
        }
        acked[i] = true;
        usleep(20000);
    }
    return -1;
}

static void assert_probes_present(rel_client_t *c, const bool *acked, int n)
{
    char path[64];
    for (int i = 0; i < n; i++) {
        if (!acked[i])
            continue;
        snprintf(path, sizeof path, "/v1/kv/probe-%d", i);
        assert_int_equal(rel_request(c, "GET", path, NULL, 0), REL_ANSWERED);
        assert_int_equal(c->status, 200);
        assert_string_equal(c->body, "p");
    }
}

static void test_storage_wal_removed_refuses_writes(void **state)
{
    (void)state;
    fixture_t f = {0};
    const char *args[] = {"--threads", "2", NULL};
    assert_int_equal(start(&f, args), 0);
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/before", "old", 3), REL_ANSWERED);
    assert_int_equal(f.c.status, 201);
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", f.d.db_path);
    assert_int_equal(unlink(wal), 0);
    static bool acked[2000];
    memset(acked, 0, sizeof acked);
    int64_t ms = 0;
    int refused = put_until_refused(&f.c, acked, &ms);
    print_message("-wal unlinked: first write refused after %d acknowledged, %lld ms: %ld %s\n",
                  refused, (long long)ms, f.c.status, f.c.body);
    assert_true(refused >= 0); /* was: every PUT 201, to be lost at the next crash */
    assert_int_equal(f.c.status, 503);
    assert_string_equal(rel_problem_code(&f.c), "unavailable");
    assert_detail_says(&f.c, "-wal was removed");
    assert_health(&f.c, 503, NULL, "-wal was removed");
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/after", "x", 1), REL_ANSWERED);
    assert_int_equal(f.c.status, 503);
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/before", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 200);
    /* the worst case: killed; nothing acknowledged may be gone */
    daemon_kill(&f.d);
    assert_true(integrity_ok(f.d.db_path));
    assert_int_equal(daemon_restart(&f.d), 0);
    rel_client_set_base(&f.c, f.d.base_url);
    assert_health(&f.c, 200, NULL, NULL);
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/before", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 200);
    assert_probes_present(&f.c, acked, refused);
    assert_int_equal(rel_request(&f.c, "GET", "/v1/kv/after", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 404);
    finish(&f);
    testutil_rmdir(f.dir);
}

/* Copy the database (with what its WAL holds) to a new file and rename it
 * over the original, as a careless restore would. */
static void replace_database(const char *db_path)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new", db_path);
    sqlite3 *src = NULL, *dst = NULL;
    assert_int_equal(sqlite3_open_v2(db_path, &src, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_open(tmp, &dst), SQLITE_OK);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    assert_non_null(b);
    assert_int_equal(sqlite3_backup_step(b, -1), SQLITE_DONE);
    assert_int_equal(sqlite3_backup_finish(b), SQLITE_OK);
    assert_int_equal(sqlite3_close(dst), SQLITE_OK);
    assert_int_equal(sqlite3_close(src), SQLITE_OK);
    assert_int_equal(rename(tmp, db_path), 0);
}

static void test_storage_db_replaced_refuses_writes(void **state)
{
    (void)state;
    fixture_t f = {0};
    const char *args[] = {"--threads", "2", NULL};
    assert_int_equal(start(&f, args), 0);
    assert_int_equal(rel_request(&f.c, "PUT", "/v1/kv/before", "old", 3), REL_ANSWERED);
    assert_int_equal(f.c.status, 201);
    replace_database(f.d.db_path);
    static bool acked[2000];
    memset(acked, 0, sizeof acked);
    int64_t ms = 0;
    int refused = put_until_refused(&f.c, acked, &ms);
    print_message("database replaced: first write refused after %d acknowledged, %lld ms: "
                  "%ld %s\n",
                  refused, (long long)ms, f.c.status, f.c.body);
    assert_true(refused >= 0); /* was: every PUT 201, into a file nobody reads again */
    assert_int_equal(f.c.status, 503);
    assert_string_equal(rel_problem_code(&f.c), "unavailable");
    assert_detail_says(&f.c, "was replaced by another file");
    assert_health(&f.c, 503, NULL, "was replaced by another file");
    assert_int_equal(rel_request(&f.c, "DELETE", "/v1/kv/before", NULL, 0), REL_ANSWERED);
    assert_int_equal(f.c.status, 503);
    finish(&f);
    testutil_rmdir(f.dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_storage_full_answers_507_and_recovers),
        cmocka_unit_test(test_storage_busy_answers_503_then_recovers),
        cmocka_unit_test(test_storage_io_error_answers_503_and_healthz),
        cmocka_unit_test(test_storage_wal_removed_refuses_writes),
        cmocka_unit_test(test_storage_db_replaced_refuses_writes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
