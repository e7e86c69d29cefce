/*
 * test_http_lease.c - the lease contract over real HTTP against the daemon
 * (tests/daemon.h): each endpoint and error, waiting (on release, on
 * expiry, timing out), 200 parked waiters that do not stop GETs from being
 * served, parked waiters answered 503 when the daemon stops, and a held
 * lease surviving SIGKILL and a restart.
 */
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
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

typedef daemon_fixture_t fixture_t;

/* Two worker threads whatever the machine: parked waiters must not need
 * one each. */
static const char *const daemon_args[] = {"--threads", "2", NULL};

static int setup(void **state)
{
    return daemon_fixture_start(state, daemon_args);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* POST a JSON body (printf format); returns the status, body parsed into
 * *out when out is not NULL (caller decrefs). */
static long post(fixture_t *f, const char *path, json_t **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static long post(fixture_t *f, const char *path, json_t **out, const char *fmt, ...)
{
    char body[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    client_resp_t r;
    const char *h[] = {"Content-Type: application/json", NULL};
    assert_int_equal(client_request(&f->d, "POST", path, h, body, strlen(body), &r), 0);
    long status = r.status;
    if (out) {
        *out = client_json(&r);
        assert_non_null(*out);
    }
    client_resp_free(&r);
    return status;
}

static long get(fixture_t *f, const char *path, json_t **out);

/* GET that must answer a problem with this status and code. */
#define GET_PROBLEM(f, path, expected, code)                                                       \
    do {                                                                                           \
        json_t *p_;                                                                                \
        long st_ = get((f), (path), &p_);                                                          \
        assert_non_null(p_);                                                                       \
        assert_problem(p_, st_, (expected), (code));                                               \
    } while (0)

static long get(fixture_t *f, const char *path, json_t **out)
{
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "GET", path, NULL, NULL, 0, &r), 0);
    long status = r.status;
    if (out)
        *out = client_json(&r);
    client_resp_free(&r);
    return status;
}

static void assert_problem(json_t *p, long status, long expected, const char *code);

/* A problem body with this status and code. */
static void assert_problem(json_t *p, long status, long expected, const char *code)
{
    assert_int_equal(status, expected);
    assert_string_equal(client_str_member(p, "code"), code);
    assert_int_equal(client_int_member(p, "status"), expected);
    json_decref(p);
}

/* ------------------------------------------------------------------------
 * Each endpoint
 * ------------------------------------------------------------------------ */

static void test_http_lease_acquire_renew_release_get(void **state)
{
    fixture_t *f = *state;
    json_t *a, *b, *g;
    assert_int_equal(post(f, "/v1/leases/job/acquire", &a, "{\"owner\":\"w1\",\"ttl_ms\":10000}"),
                     200);
    assert_string_equal(client_str_member(a, "name"), "job");
    assert_string_equal(client_str_member(a, "owner"), "w1");
    assert_int_equal(client_int_member(a, "count"), 1);
    int64_t token = client_int_member(a, "token");
    assert_true(token >= 1);
    assert_true(json_object_size(a) == 5);
    /* re-entrant */
    assert_int_equal(post(f, "/v1/leases/job/acquire", &b,
                          "{\"owner\":\"w1\",\"ttl_ms\":20000,\"wait_ms\":0}"),
                     200);
    assert_int_equal(client_int_member(b, "count"), 2);
    assert_int_equal(client_int_member(b, "token"), token);
    assert_true(client_int_member(b, "expires_at") > client_int_member(a, "expires_at"));
    json_decref(a);
    /* get */
    assert_int_equal(get(f, "/v1/leases/job", &g), 200);
    assert_true(json_equal(g, b));
    json_decref(g);
    json_decref(b);
    /* renew */
    assert_int_equal(post(f, "/v1/leases/job/renew", &a, "{\"owner\":\"w1\",\"ttl_ms\":60000}"),
                     200);
    assert_int_equal(client_int_member(a, "count"), 2);
    assert_int_equal(client_int_member(a, "token"), token);
    json_decref(a);
    /* release twice */
    assert_int_equal(post(f, "/v1/leases/job/release", &a, "{\"owner\":\"w1\"}"), 200);
    assert_int_equal(client_int_member(a, "count"), 1);
    assert_string_equal(client_str_member(a, "name"), "job");
    assert_int_equal(json_object_size(a), 2);
    json_decref(a);
    assert_int_equal(post(f, "/v1/leases/job/release", &a, "{\"owner\":\"w1\"}"), 200);
    assert_int_equal(client_int_member(a, "count"), 0);
    json_decref(a);
    GET_PROBLEM(f, "/v1/leases/job", 404, "not_found");
    /* a new holder gets a larger token */
    assert_int_equal(post(f, "/v1/leases/job/acquire", &a, "{\"owner\":\"w2\",\"ttl_ms\":100}"),
                     200);
    assert_true(client_int_member(a, "token") > token);
    json_decref(a);
}

static void test_http_lease_held_and_not_owner(void **state)
{
    fixture_t *f = *state;
    json_t *p;
    assert_int_equal(post(f, "/v1/leases/job/acquire", &p, "{\"owner\":\"w1\",\"ttl_ms\":5000}"),
                     200);
    json_decref(p);
    long st = post(f, "/v1/leases/job/acquire", &p, "{\"owner\":\"w2\",\"ttl_ms\":5000}");
    assert_int_equal(st, 409);
    int64_t retry = client_int_member(p, "retry_after_ms");
    assert_true(retry > 0 && retry <= 5000);
    assert_string_equal(client_str_member(p, "title"), "Lease held");
    assert_problem(p, st, 409, "lease_held");
    st = post(f, "/v1/leases/job/renew", &p, "{\"owner\":\"w2\",\"ttl_ms\":5000}");
    assert_problem(p, st, 409, "not_owner");
    st = post(f, "/v1/leases/job/release", &p, "{\"owner\":\"w2\"}");
    assert_problem(p, st, 409, "not_owner");
    st = post(f, "/v1/leases/free/renew", &p, "{\"owner\":\"w1\",\"ttl_ms\":5000}");
    assert_problem(p, st, 409, "not_owner");
    st = post(f, "/v1/leases/free/release", &p, "{\"owner\":\"w1\"}");
    assert_problem(p, st, 409, "not_owner");
}

static void test_http_lease_expiry(void **state)
{
    fixture_t *f = *state;
    json_t *a, *p;
    assert_int_equal(post(f, "/v1/leases/job/acquire", &a, "{\"owner\":\"w1\",\"ttl_ms\":100}"),
                     200);
    usleep(150000);
    GET_PROBLEM(f, "/v1/leases/job", 404, "not_found");
    long st = post(f, "/v1/leases/job/renew", &p, "{\"owner\":\"w1\",\"ttl_ms\":5000}");
    assert_problem(p, st, 409, "not_owner"); /* an expired lease is not renewed */
    st = post(f, "/v1/leases/job/release", &p, "{\"owner\":\"w1\"}");
    assert_problem(p, st, 409, "not_owner");
    json_t *b;
    assert_int_equal(post(f, "/v1/leases/job/acquire", &b, "{\"owner\":\"w2\",\"ttl_ms\":5000}"),
                     200);
    assert_true(client_int_member(b, "token") > client_int_member(a, "token"));
    assert_int_equal(client_int_member(b, "count"), 1);
    json_decref(a);
    json_decref(b);
}

typedef struct bad_case {
    const char *path;
    const char *body;
    const char *code;
} bad_case_t;

/* 257 and 129 bytes: one over the limits */
#define N257                                                                                       \
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
#define O129                                                                                       \
    "ooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooo"

static void test_http_lease_bad_input(void **state)
{
    fixture_t *f = *state;
    static const bad_case_t cases[] = {
        /* names */
        {"/v1/leases/" N257 "/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/%00/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/%zz/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/%ff/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/" N257 "/renew", "{\"owner\":\"o\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/" N257 "/release", "{\"owner\":\"o\"}", "invalid_argument"},
        /* owner */
        {"/v1/leases/n/acquire", "{\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"" O129 "\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":7,\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":null,\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"a\\u0000b\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/renew", "{\"owner\":\"\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/release", "{\"owner\":\"" O129 "\"}", "invalid_argument"},
        {"/v1/leases/n/release", "{}", "invalid_argument"},
        /* ttl_ms */
        {"/v1/leases/n/acquire", "{\"owner\":\"o\"}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":99}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":3600001}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":\"1000\"}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000.0}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":null}", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":100000000000000000000}",
         "invalid_argument"},
        {"/v1/leases/n/renew", "{\"owner\":\"o\"}", "invalid_argument"},
        {"/v1/leases/n/renew", "{\"owner\":\"o\",\"ttl_ms\":0}", "invalid_argument"},
        /* wait_ms */
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000,\"wait_ms\":-1}",
         "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000,\"wait_ms\":30001}",
         "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000,\"wait_ms\":true}",
         "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000,\"wait_ms\":null}",
         "invalid_argument"},
        /* shape */
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"ttl_ms\":1000,\"ttl\":5}", "invalid_argument"},
        {"/v1/leases/n/renew", "{\"owner\":\"o\",\"ttl_ms\":1000,\"wait_ms\":0}",
         "invalid_argument"},
        {"/v1/leases/n/release", "{\"owner\":\"o\",\"ttl_ms\":1000}", "invalid_argument"},
        {"/v1/leases/n/acquire", "[\"o\", 1000]", "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",\"owner\":\"p\",\"ttl_ms\":1000}",
         "invalid_argument"},
        {"/v1/leases/n/acquire", "{\"owner\":\"o\",", "invalid_json"},
        {"/v1/leases/n/acquire", "", "invalid_json"},
        {"/v1/leases/n/renew", "owner=o", "invalid_json"},
        {"/v1/leases/n/release", "{'owner':'o'}", "invalid_json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *p;
        long st = post(f, cases[i].path, &p, "%s", cases[i].body);
        json_t *code = json_object_get(p, "code");
        if (st != 400 || !json_is_string(code) ||
            strcmp(json_string_value(code), cases[i].code) != 0)
            fail_msg("case %zu: POST %.40s %s: got %ld %s", i, cases[i].path, cases[i].body, st,
                     json_is_string(code) ? json_string_value(code) : "(no code)");
        json_decref(p);
    }
    json_t *p;
    GET_PROBLEM(f, "/v1/leases/" N257, 400, "invalid_argument");
    /* nothing was taken: n is free, and the limits themselves are fine */
    GET_PROBLEM(f, "/v1/leases/n", 404, "not_found");
    char path[400];
    snprintf(path, sizeof path, "/v1/leases/%.256s/acquire", N257);
    assert_int_equal(post(f, path, &p,
                          "{\"owner\":\"%.128s\",\"ttl_ms\":3600000,\"wait_ms\":30000}", O129),
                     200);
    json_decref(p);
}

static void test_http_lease_method_not_allowed(void **state)
{
    fixture_t *f = *state;
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "DELETE", "/v1/leases/x", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    char *allow = client_header(&r, "Allow");
    assert_non_null(allow);
    assert_string_equal(allow, "GET");
    free(allow);
    client_resp_free(&r);
    assert_int_equal(client_request(&f->d, "GET", "/v1/leases/x/acquire", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    allow = client_header(&r, "Allow");
    assert_string_equal(allow, "POST");
    free(allow);
    client_resp_free(&r);
}

/* ------------------------------------------------------------------------
 * Waiting
 * ------------------------------------------------------------------------ */

static void test_http_lease_wait_times_out(void **state)
{
    fixture_t *f = *state;
    json_t *p;
    assert_int_equal(post(f, "/v1/leases/job/acquire", &p, "{\"owner\":\"w1\",\"ttl_ms\":60000}"),
                     200);
    json_decref(p);
    int64_t t0 = testutil_mono_ms();
    long st =
        post(f, "/v1/leases/job/acquire", &p, "{\"owner\":\"w2\",\"ttl_ms\":1000,\"wait_ms\":300}");
    int64_t waited = testutil_mono_ms() - t0;
    int64_t retry = client_int_member(p, "retry_after_ms");
    assert_true(retry > 55000 && retry <= 60000);
    assert_problem(p, st, 409, "lease_held");
    assert_true(waited >= 300);
    assert_true(waited < 30000); /* it did not wait for the holder's 60 s lease */
}

/* One waiter in a libcurl multi handle, answered later. */
typedef struct pending {
    CURL *easy;
    char body[256];
    char owner[32];
    client_buf_t resp; /* the response body */
    long status;
    bool done;
} pending_t;

static void pending_add(CURLM *m, fixture_t *f, pending_t *p, const char *name, const char *owner,
                        int wait_ms, struct curl_slist *headers)
{
    char url[300];
    snprintf(url, sizeof url, "%s/v1/leases/%s/acquire", f->d.base_url, name);
    snprintf(p->owner, sizeof p->owner, "%s", owner);
    snprintf(p->body, sizeof p->body, "{\"owner\":\"%s\",\"ttl_ms\":60000,\"wait_ms\":%d}", owner,
             wait_ms);
    p->easy = curl_easy_init();
    assert_non_null(p->easy);
    curl_easy_setopt(p->easy, CURLOPT_URL, url);
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, client_buf_append);
    curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, &p->resp);
    curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
    curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, 60000L * testutil_scale());
    curl_multi_add_handle(m, p->easy);
}

/* Drive the transfers for up to ms; returns how many completed. */
static int pump(CURLM *m, int ms)
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
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &p->status);
            p->done = true;
            completed++;
        }
        if (completed)
            break;
        curl_multi_poll(m, NULL, 0, 10, NULL);
    } while (testutil_mono_ms() < until);
    return completed;
}

/* Pump until every request of ps has been sent whole (the daemon then
 * holds it), bounded. */
static void pump_until_sent(CURLM *m, pending_t *ps, int n)
{
    int64_t until = testutil_mono_ms() + 10000 * testutil_scale();
    for (;;) {
        assert_int_equal(pump(m, 20), 0); /* nobody may be answered yet */
        int sent = 0;
        for (int i = 0; i < n; i++) {
            curl_off_t up = 0;
            curl_easy_getinfo(ps[i].easy, CURLINFO_SIZE_UPLOAD_T, &up);
            sent += up == (curl_off_t)strlen(ps[i].body);
        }
        if (sent == n)
            break;
        if (testutil_mono_ms() > until)
            fail_msg("only %d of %d waiters were sent", sent, n);
    }
    pump(m, 200 * (int)testutil_scale()); /* let the daemon read and queue the last ones */
}

static void pending_free(CURLM *m, pending_t *ps, int n)
{
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, ps[i].easy);
        curl_easy_cleanup(ps[i].easy);
        free(ps[i].resp.p);
    }
}

#define PARKED 200

static void test_http_lease_200_parked_waiters_do_not_block_gets(void **state)
{
    fixture_t *f = *state;
    json_t *p;
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "PUT", "/v1/kv/x", NULL, "v", 1, &r), 0);
    client_resp_free(&r);
    assert_int_equal(post(f, "/v1/leases/hot/acquire", &p,
                          "{\"owner\":\"holder\",\"ttl_ms\":60000}"),
                     200);
    int64_t last_token = client_int_member(p, "token");
    json_decref(p);

    CURLM *m = curl_multi_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    pending_t *ps = calloc(PARKED, sizeof *ps);
    for (int i = 0; i < PARKED; i++) {
        char owner[16];
        snprintf(owner, sizeof owner, "w%03d", i);
        pending_add(m, f, &ps[i], "hot", owner, 30000, h);
    }
    pump_until_sent(m, ps, PARKED);

    /* 200 requests parked on 2 worker threads: reads are still served */
    for (int i = 0; i < 20; i++) {
        int64_t t0 = testutil_mono_ms();
        assert_int_equal(client_request(&f->d, "GET", "/v1/kv/x", NULL, NULL, 0, &r), 0);
        int64_t took = testutil_mono_ms() - t0;
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "v");
        client_resp_free(&r);
        if (took > 10000) /* the waiters wait 30 s: a GET queued behind them would too */
            fail_msg("GET took %lld ms with %d waiters parked", (long long)took, PARKED);
    }
    assert_int_equal(pump(m, 0), 0);

    /* Release: each holder in turn hands the lease to the next waiter. */
    const char *holder = "holder";
    int served = 0;
    char prev[32];
    while (served < PARKED) {
        assert_int_equal(post(f, "/v1/leases/hot/release", &p, "{\"owner\":\"%s\"}", holder), 200);
        assert_int_equal(client_int_member(p, "count"), 0);
        json_decref(p);
        int64_t t0 = testutil_mono_ms();
        int n = 0;
        while (n == 0 && testutil_mono_ms() - t0 < 5000 * testutil_scale())
            n = pump(m, 100);
        assert_int_equal(n, 1); /* exactly one waiter per release */
        pending_t *got = NULL;
        for (int i = 0; i < PARKED; i++)
            if (ps[i].done && ps[i].status) {
                got = &ps[i];
                ps[i].status = 0; /* consumed */
            }
        assert_non_null(got);
        json_t *l = json_loads(got->resp.p, 0, NULL);
        assert_non_null(l);
        assert_string_equal(client_str_member(l, "owner"), got->owner);
        assert_true(client_int_member(l, "token") > last_token);
        last_token = client_int_member(l, "token");
        json_decref(l);
        snprintf(prev, sizeof prev, "%s", got->owner);
        holder = prev;
        served++;
    }
    assert_int_equal(post(f, "/v1/leases/hot/release", &p, "{\"owner\":\"%s\"}", holder), 200);
    json_decref(p);
    pending_free(m, ps, PARKED);
    free(ps);
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
}

static void test_http_lease_waiter_wakes_on_release_and_expiry(void **state)
{
    fixture_t *f = *state;
    json_t *p;
    CURLM *m = curl_multi_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    pending_t ps[2] = {{0}};
    /* on release */
    assert_int_equal(post(f, "/v1/leases/a/acquire", &p, "{\"owner\":\"holder\",\"ttl_ms\":60000}"),
                     200);
    json_decref(p);
    pending_add(m, f, &ps[0], "a", "waiter", 10000, h);
    pump_until_sent(m, &ps[0], 1);
    int64_t t0 = testutil_mono_ms();
    assert_int_equal(post(f, "/v1/leases/a/release", &p, "{\"owner\":\"holder\"}"), 200);
    json_decref(p);
    while (!ps[0].done && testutil_mono_ms() - t0 < 5000 * testutil_scale())
        pump(m, 100);
    int64_t took = testutil_mono_ms() - t0;
    assert_int_equal(ps[0].status, 200);
    /* granted by the release: the holder's lease had 60 s to run, the
     * waiter's wait 10 s (how fast is bench material, not a test's) */
    print_message("waiter answered %lld ms after the release\n", (long long)took);
    /* on expiry, with no call at all */
    assert_int_equal(post(f, "/v1/leases/b/acquire", &p, "{\"owner\":\"holder\",\"ttl_ms\":400}"),
                     200);
    int64_t expires_at = client_int_member(p, "expires_at");
    json_decref(p);
    pending_add(m, f, &ps[1], "b", "waiter", 10000, h);
    pump_until_sent(m, &ps[1], 1);
    while (!ps[1].done && testutil_mono_ms() - t0 < 10000 * testutil_scale())
        pump(m, 100);
    assert_int_equal(ps[1].status, 200);
    json_t *l = json_loads(ps[1].resp.p, 0, NULL);
    assert_string_equal(client_str_member(l, "owner"), "waiter");
    assert_true(client_int_member(l, "expires_at") >= expires_at + 60000);
    json_decref(l);
    pending_free(m, ps, 2);
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
}

#define STOPPED 20

static void test_http_lease_parked_waiters_get_503_on_stop(void **state)
{
    fixture_t *f = *state;
    json_t *p;
    assert_int_equal(post(f, "/v1/leases/job/acquire", &p,
                          "{\"owner\":\"holder\",\"ttl_ms\":60000}"),
                     200);
    json_decref(p);
    CURLM *m = curl_multi_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    pending_t ps[STOPPED] = {{0}};
    for (int i = 0; i < STOPPED; i++) {
        char owner[16];
        snprintf(owner, sizeof owner, "w%d", i);
        pending_add(m, f, &ps[i], "job", owner, 30000, h);
    }
    pump_until_sent(m, ps, STOPPED);
    int64_t t0 = testutil_mono_ms();
    assert_int_equal(daemon_stop(&f->d), 0); /* SIGTERM; returns once it exited */
    int64_t took = testutil_mono_ms() - t0;
    print_message("daemon stopped %lld ms after SIGTERM with %d waiters parked\n", (long long)took,
                  STOPPED);
    assert_true(took < 20000); /* it did not wait for the waiters' 30 s */
    int answered = 0;
    for (int64_t until = testutil_mono_ms() + 2000 * testutil_scale();
         answered < STOPPED && testutil_mono_ms() < until;)
        answered += pump(m, 50);
    for (int i = 0; i < STOPPED; i++) {
        assert_true(ps[i].done);
        assert_int_equal(ps[i].status, 503);
        json_t *prob = json_loads(ps[i].resp.p, 0, NULL);
        assert_non_null(prob);
        assert_string_equal(client_str_member(prob, "code"), "unavailable");
        json_decref(prob);
    }
    pending_free(m, ps, STOPPED);
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
    /* the holder's lease is untouched by the stop */
    assert_int_equal(daemon_restart(&f->d), 0);
    assert_int_equal(get(f, "/v1/leases/job", &p), 200);
    assert_string_equal(client_str_member(p, "owner"), "holder");
    json_decref(p);
}

/* ------------------------------------------------------------------------
 * Restart
 * ------------------------------------------------------------------------ */

static void test_http_lease_survives_sigkill(void **state)
{
    fixture_t *f = *state;
    json_t *a, *b;
    assert_int_equal(post(f, "/v1/leases/job/acquire", &a, "{\"owner\":\"w1\",\"ttl_ms\":60000}"),
                     200);
    json_decref(a);
    assert_int_equal(post(f, "/v1/leases/job/acquire", &a, "{\"owner\":\"w1\",\"ttl_ms\":60000}"),
                     200);
    daemon_kill(&f->d); /* SIGKILL */
    assert_int_equal(daemon_restart(&f->d), 0);
    assert_int_equal(get(f, "/v1/leases/job", &b), 200);
    assert_true(json_equal(a, b)); /* owner, token, count and expiry */
    json_decref(b);
    int64_t token = client_int_member(a, "token");
    json_decref(a);
    /* still held: another owner is refused, the holder can renew */
    long st = post(f, "/v1/leases/job/acquire", &b, "{\"owner\":\"w2\",\"ttl_ms\":1000}");
    assert_problem(b, st, 409, "lease_held");
    assert_int_equal(post(f, "/v1/leases/job/renew", &b, "{\"owner\":\"w1\",\"ttl_ms\":60000}"),
                     200);
    json_decref(b);
    /* the next new holders, of any name, get larger tokens */
    assert_int_equal(post(f, "/v1/leases/other/acquire", &b, "{\"owner\":\"w2\",\"ttl_ms\":1000}"),
                     200);
    assert_true(client_int_member(b, "token") > token);
    token = client_int_member(b, "token");
    json_decref(b);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(post(f, "/v1/leases/job/release", &b, "{\"owner\":\"w1\"}"), 200);
        json_decref(b);
    }
    assert_int_equal(post(f, "/v1/leases/job/acquire", &b, "{\"owner\":\"w2\",\"ttl_ms\":1000}"),
                     200);
    assert_true(client_int_member(b, "token") > token);
    json_decref(b);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_lease_acquire_renew_release_get, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_held_and_not_owner, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_expiry, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_bad_input, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_method_not_allowed, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_wait_times_out, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_200_parked_waiters_do_not_block_gets, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_waiter_wakes_on_release_and_expiry, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_parked_waiters_get_503_on_stop, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_lease_survives_sigkill, setup,
                                        daemon_fixture_stop),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
