/*
 * test_http_shutdown.c - SIGTERM with writes parked behind a stalled
 * writer, against the real daemon.
 *
 * A second connection (this test's) holds the lock every write needs
 * (SQLite: BEGIN IMMEDIATE; PostgreSQL, under SQLCACHED_TEST_BACKEND=
 * postgresql: the row lock of the version counter), the daemon runs with a long --busy-timeout and a short
 * --shutdown-timeout, PUTs, a DELETE and an incr are parked waiting for
 * their commit, then the daemon gets SIGTERM. Checked: it exits 0 (under
 * --enable-sanitizers or valgrind, with no report), within the deadline
 * plus the grace it documents; every client gets an HTTP answer; a 2xx
 * answer means the write is in the database afterwards, any other answer
 * means it is not (nothing commits after its client was told otherwise).
 * Two cases: the lock is released before the deadline (every write
 * commits and is answered 2xx), and it is held past it (every write is
 * answered 503 and none is stored).
 */
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>
#include <curl/curl.h>
#include "daemon.h"
#include "sidedb.h"
#include "testutil.h"

typedef daemon_fixture_t fixture_t;

#define GRACE_MS 1000 /* HTTP_STOP_GRACE_MS in src/http.h */
#define NPARKED 6

/* Longer waits and deadlines under valgrind ($SQLCACHED_WRAPPER). */
static int64_t scale(void)
{
    const char *w = getenv("SQLCACHED_WRAPPER");
    return w && *w ? 5 : 1;
}

/* ------------------------------------------------------------------------
 * Requests parked in a libcurl multi handle
 * ------------------------------------------------------------------------ */

typedef enum { W_PUT, W_DELETE, W_INCR } write_kind_t;

typedef struct pending {
    CURL *easy;
    write_kind_t kind;
    char key[32];
    char body[64];
    client_buf_t resp; /* the response body */
    long status;       /* 0 = no HTTP answer */
    bool done;
} pending_t;

static void pending_add(CURLM *m, const fixture_t *f, pending_t *p, write_kind_t kind,
                        const char *key, struct curl_slist *headers)
{
    static const char *const methods[] = {"PUT", "DELETE", "POST"};
    char url[300];
    p->kind = kind;
    snprintf(p->key, sizeof p->key, "%s", key);
    snprintf(url, sizeof url, "%s/v1/kv/%s%s", f->d.base_url, key, kind == W_INCR ? "/incr" : "");
    snprintf(p->body, sizeof p->body, "%s", kind == W_PUT ? "value-of-" : "");
    if (kind == W_PUT)
        strncat(p->body, key, sizeof p->body - strlen(p->body) - 1);
    else if (kind == W_INCR)
        snprintf(p->body, sizeof p->body, "{\"by\":1}");
    p->easy = curl_easy_init();
    assert_non_null(p->easy);
    curl_easy_setopt(p->easy, CURLOPT_URL, url);
    curl_easy_setopt(p->easy, CURLOPT_CUSTOMREQUEST, methods[kind]);
    if (kind != W_DELETE)
        curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, client_buf_append);
    curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, &p->resp);
    curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
    curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, 120000L);
    assert_int_equal(curl_multi_add_handle(m, p->easy), CURLM_OK);
}

/* Drive the transfers for up to ms; returns how many completed. */
static int pump(CURLM *m, int64_t ms)
{
    int completed = 0;
    int64_t until = testutil_mono_ms() + ms;
    do {
        int running, queued;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            pending_t *p;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &p->status);
            p->done = true;
            completed++;
        }
        curl_multi_poll(m, NULL, 0, 10, NULL);
    } while (testutil_mono_ms() < until);
    return completed;
}

/* Pump until every request has been sent whole (the daemon then parks
 * it), bounded; none may be answered meanwhile (the writer is stalled). */
static void pump_until_sent(CURLM *m, pending_t *ps, int n)
{
    int64_t until = testutil_mono_ms() + 10000 * scale();
    for (;;) {
        assert_int_equal(pump(m, 20), 0);
        int sent = 0;
        for (int i = 0; i < n; i++) {
            curl_off_t up = 0;
            curl_easy_getinfo(ps[i].easy, CURLINFO_SIZE_UPLOAD_T, &up);
            sent += ps[i].kind == W_DELETE || up == (curl_off_t)strlen(ps[i].body);
        }
        if (sent == n)
            break;
        if (testutil_mono_ms() > until)
            fail_msg("only %d of %d writes were sent", sent, n);
    }
    assert_int_equal(pump(m, 300 * scale()), 0); /* the daemon reads and queues them */
}

static void pending_free(CURLM *m, pending_t *ps, int n)
{
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, ps[i].easy);
        curl_easy_cleanup(ps[i].easy);
        free(ps[i].resp.p);
    }
}

/* ------------------------------------------------------------------------
 * The database, read and locked by this test
 * ------------------------------------------------------------------------ */

/* A connection holding the lock every write needs (sidedb.h: SQLite's
 * write lock, PostgreSQL's row lock of the version counter): a stalled
 * writer as another process would make it. */
static sidedb_t *hold_write_lock(const char *location)
{
    sidedb_t *db = sidedb_open(location);
    assert_non_null(db);
    assert_true(sidedb_lock_writes(db));
    return db;
}

static void release_write_lock(sidedb_t *db)
{
    if (!db)
        return;
    assert_true(sidedb_unlock(db));
    sidedb_close(db);
}

/* The stored value of key (malloc'd, NUL-terminated) or NULL when absent. */
static char *stored(sidedb_t *db, const char *key)
{
    bool err = false;
    char *v = sidedb_kv_value(db, key, &err);
    assert_false(err);
    return v;
}

/* Is the write of p in the database? */
static bool write_stored(sidedb_t *db, const pending_t *p)
{
    char *v = stored(db, p->key);
    bool in = p->kind == W_PUT      ? v && strcmp(v, p->body) == 0
              : p->kind == W_DELETE ? v == NULL
                                    : v && strcmp(v, "42") == 0; /* incr of 41 */
    if (p->kind == W_DELETE)
        assert_true(!v || strcmp(v, "x") == 0);
    else if (p->kind == W_INCR)
        assert_true(v && (strcmp(v, "41") == 0 || strcmp(v, "42") == 0));
    else
        assert_true(!v || strcmp(v, p->body) == 0);
    free(v);
    return in;
}

/* Every client got an answer, and 2xx exactly for the writes stored. */
static void check_outcomes(const char *db_path, const pending_t *ps, int n, int *ok, int *refused)
{
    sidedb_t *db = sidedb_open(db_path);
    assert_non_null(db);
    *ok = *refused = 0;
    for (int i = 0; i < n; i++) {
        bool in = write_stored(db, &ps[i]);
        print_message("  %s %s: HTTP %ld, %s\n",
                      ps[i].kind == W_PUT      ? "PUT"
                      : ps[i].kind == W_DELETE ? "DELETE"
                                               : "incr",
                      ps[i].key, ps[i].status, in ? "stored" : "not stored");
        assert_true(ps[i].done);
        assert_true(ps[i].status >= 200); /* an HTTP answer, not a closed connection */
        assert_int_equal(ps[i].status / 100 == 2, in);
        *ok += in;
        *refused += !in;
    }
    sidedb_close(db);
}

/* ------------------------------------------------------------------------
 * The scenario
 * ------------------------------------------------------------------------ */

/* Start the daemon with a long busy timeout and this shutdown timeout. */
static void start(void **state, int64_t shutdown_timeout_ms)
{
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%lld", (long long)shutdown_timeout_ms);
    const char *const args[] = {
        "--busy-timeout", "120000", "--shutdown-timeout", timeout, "--threads", "2", NULL};
    assert_int_equal(daemon_fixture_start(state, args), 0);
}

static void put_plain(const fixture_t *f, const char *key, const char *value)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "PUT", path, NULL, value, strlen(value), &r), 0);
    assert_int_equal(r.status, 201);
    client_resp_free(&r);
}

/* Queue four PUTs, a DELETE and an incr behind the lock. */
static void park_writes(CURLM *m, const fixture_t *f, pending_t *ps, struct curl_slist *h)
{
    static const char *const keys[] = {"p0", "p1", "p2", "p3"};
    for (int i = 0; i < 4; i++)
        pending_add(m, f, &ps[i], W_PUT, keys[i], h);
    pending_add(m, f, &ps[4], W_DELETE, "del", h);
    pending_add(m, f, &ps[5], W_INCR, "n", h);
    pump_until_sent(m, ps, NPARKED);
}

/* SIGTERM, then serve the clients until the daemon exits or limit_ms
 * passes. Returns its exit status (128 + N for signal N), or -1 if it is
 * still running (then it is left running); the stop's duration in *took. */
static int stop_and_pump(fixture_t *f, CURLM *m, int64_t release_after_ms, sidedb_t **lock,
                         int64_t limit_ms, int64_t *took)
{
    int64_t t0 = testutil_mono_ms();
    assert_int_equal(kill(f->d.pid, SIGTERM), 0);
    for (;;) {
        int status;
        pid_t r = waitpid(f->d.pid, &status, WNOHANG);
        *took = testutil_mono_ms() - t0;
        if (r == f->d.pid) {
            f->d.pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (*lock && release_after_ms >= 0 && *took >= release_after_ms) {
            release_write_lock(*lock);
            *lock = NULL;
        }
        if (*took > limit_ms)
            return -1;
        pump(m, 10);
    }
}

/* The stop with NPARKED writes parked behind the lock, released
 * release_after_ms after SIGTERM (-1: held until the daemon exited).
 * Fills ok/refused with the writes stored and refused. */
static void run_stop(void **state, int64_t timeout_ms, int64_t release_after_ms, int *ok,
                     int *refused)
{
    start(state, timeout_ms);
    fixture_t *f = *state;
    put_plain(f, "del", "x");
    put_plain(f, "n", "41");
    sidedb_t *lock = hold_write_lock(f->d.db_path);
    CURLM *m = curl_multi_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    pending_t ps[NPARKED] = {{0}};
    park_writes(m, f, ps, h);
    int64_t limit = timeout_ms + GRACE_MS + 1500 * scale(), took = 0;
    int rc = stop_and_pump(f, m, release_after_ms, &lock, limit, &took);
    print_message("deadline %lld ms, lock %s: the daemon %s after %lld ms (status %d)\n",
                  (long long)timeout_ms, release_after_ms >= 0 ? "released" : "held",
                  rc >= 0 ? "exited" : "was still running", (long long)took, rc);
    release_write_lock(lock); /* before any assertion: a failed stop must not hang */
    if (rc < 0)
        daemon_kill(&f->d);
    int64_t until = testutil_mono_ms() + 2000 * scale();
    int answered = 0;
    for (int i = 0; i < NPARKED; i++)
        answered += ps[i].done;
    while (answered < NPARKED && testutil_mono_ms() < until)
        answered += pump(m, 50);
    assert_int_equal(rc, 0); /* exited 0 within the deadline and its grace */
    check_outcomes(f->d.db_path, ps, NPARKED, ok, refused);
    print_message("%d of %d writes answered: %d stored (2xx), %d refused\n", answered, NPARKED, *ok,
                  *refused);
    pending_free(m, ps, NPARKED);
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
}

/* The lock outlives the deadline: every parked write is answered 503 and
 * none is stored, even though the lock goes away right after. */
static void test_http_shutdown_stalled_writer_past_deadline(void **state)
{
    int ok, refused;
    run_stop(state, 1000 * scale(), -1, &ok, &refused);
    assert_int_equal(ok, 0);
    assert_int_equal(refused, NPARKED);
}

/* The lock goes away before the deadline: every parked write commits and
 * is answered 2xx before the daemon exits. */
static void test_http_shutdown_lock_released_before_deadline(void **state)
{
    int ok, refused;
    run_stop(state, 8000 * scale(), 300 * scale(), &ok, &refused);
    assert_int_equal(ok, NPARKED);
    assert_int_equal(refused, 0);
}

static int teardown(void **state)
{
    return *state ? daemon_fixture_stop(state) : 0;
}

static int setup(void **state)
{
    *state = NULL; /* each test starts its own daemon (its flags differ) */
    return 0;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_shutdown_stalled_writer_past_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_shutdown_lock_released_before_deadline, setup,
                                        teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
