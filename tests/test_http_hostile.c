/*
 * test_http_hostile.c - hostile clients against the real daemon, over raw
 * sockets (libcurl would normalise most of these requests away):
 * slowloris (1000 idle half-sent requests while a normal client is timed),
 * the connection limit and the idle timeout, huge headers and URLs,
 * truncated bodies, bodies longer than Content-Length, chunked bodies over
 * --max-body, invalid UTF-8 and NUL in keys, odd methods, numbers that
 * overflow. Each gets a 4xx or a closed connection; afterwards the daemon
 * still answers /healthz, nothing was stored, and it exits 0 on SIGTERM
 * (under --enable-sanitizers, with no sanitizer report).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

#define SLOW_CONNECTIONS 1000
#define MAX_BODY "1024"

typedef daemon_fixture_t fixture_t;

/* ------------------------------------------------------------------------
 * Raw HTTP
 * ------------------------------------------------------------------------ */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The status of the i-th response (0-based) in a raw reply, or 0. */
static int nth_status(const char *reply, int i)
{
    const char *p = reply;
    for (;;) {
        p = strstr(p, "HTTP/1.");
        if (!p)
            return 0;
        if (i-- == 0)
            return atoi(p + 9);
        p += 9;
    }
}

/* Send a raw request (then half-close when shut_wr), read what comes back
 * until the daemon closes or timeout_ms; returns the first status (0 =
 * none: the connection was closed without a response). */
static int raw_exchange(const daemon_t *d, const void *req, size_t n, bool shut_wr, char *reply,
                        size_t replylen, int timeout_ms)
{
    int fd = daemon_raw_connect(d);
    assert_true(fd >= 0);
    daemon_raw_send(fd, req, n);
    if (shut_wr)
        shutdown(fd, SHUT_WR);
    bool closed;
    int64_t t0 = testutil_mono_ms();
    daemon_raw_read_all(fd, reply, replylen, timeout_ms, &closed);
    if (!closed)
        printf("  (the daemon kept the connection open for %lld ms)\n",
               (long long)(testutil_mono_ms() - t0));
    close(fd);
    return nth_status(reply, 0);
}

/* A hostile request must get a 4xx or no response at all (closed). */
static void expect_refused(int status, const char *what, const char *reply)
{
    if (status != 0 && (status < 400 || status > 499))
        fail_msg("%s: expected a 4xx or a closed connection, got %d: %.300s", what, status, reply);
    printf("  %-44s -> %s%d\n", what, status ? "HTTP " : "closed, ", status);
}

static long curl_status(const daemon_t *d, const char *method, const char *path, char **body)
{
    client_resp_t r;
    if (client_request(d, method, path, NULL, NULL, 0, &r) != 0) {
        client_resp_free(&r);
        fail_msg("%s %s: no response", method, path);
    }
    long status = r.status;
    if (body)
        *body = strdup(r.body);
    client_resp_free(&r);
    return status;
}

static void expect_healthy(const daemon_t *d)
{
    assert_int_equal(curl_status(d, "GET", "/healthz", NULL), 200);
}

/* ------------------------------------------------------------------------
 * Fixtures
 * ------------------------------------------------------------------------ */

/* Enough descriptors for SLOW_CONNECTIONS on both sides (the daemon
 * inherits the limit). Returns the soft limit now in force. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rlim_t want = 4096;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static int setup_hostile(void **state)
{
    raise_nofile();
    static const char *const args[] = {"--max-body", MAX_BODY,    "--max-connections",
                                       "1200",       "--threads", "2",
                                       NULL};
    return daemon_fixture_start(state, args);
}

static int setup_few_connections(void **state)
{
    static const char *const args[] = {"--max-connections", "8", NULL};
    return daemon_fixture_start(state, args);
}

static int setup_short_timeout(void **state)
{
    static const char *const args[] = {"--timeout", "1", NULL};
    return daemon_fixture_start(state, args);
}

/* ------------------------------------------------------------------------
 * Slowloris and connection limits
 * ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One normal request on a fresh connection, timed from connect to the
 * complete response (microseconds); -1 if it failed. */
static double timed_healthz(const daemon_t *d)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char reply[2048];
    double t0 = now_us();
    int status = raw_exchange(d, req, sizeof req - 1, false, reply, sizeof reply, 5000);
    double t1 = now_us();
    return status == 200 && strstr(reply, "\"ok\"") ? t1 - t0 : -1;
}

/* 1000 connections each send half a request line and then nothing; a
 * normal client is still served at once. */
static void test_hostile_slowloris(void **state)
{
    fixture_t *f = *state;
    rlim_t nofile = raise_nofile();
    if (nofile < SLOW_CONNECTIONS + 100) {
        printf("  RLIMIT_NOFILE is %lu: too low for %d connections\n", (unsigned long)nofile,
               SLOW_CONNECTIONS);
        skip();
    }
    static int fds[SLOW_CONNECTIONS];
    int open_count = 0;
    for (int i = 0; i < SLOW_CONNECTIONS; i++) {
        fds[i] = daemon_raw_connect(&f->d);
        if (fds[i] < 0)
            break;
        open_count++;
        daemon_raw_send(fds[i], "GET /v1/kv/sl", 13);
    }
    assert_int_equal(open_count, SLOW_CONNECTIONS);
    usleep(200000); /* let the daemon accept them all */

    enum { SAMPLES = 50 };
    double us[SAMPLES];
    for (int i = 0; i < SAMPLES; i++) {
        us[i] = timed_healthz(&f->d);
        assert_true(us[i] >= 0);
    }
    qsort(us, SAMPLES, sizeof us[0], cmp_double);
    double p50 = us[SAMPLES / 2] / 1000, p99 = us[SAMPLES - 2] / 1000, max = us[SAMPLES - 1] / 1000;
    printf("  with %d idle half-sent requests open: GET /healthz on a new connection "
           "p50 %.2f ms, p98 %.2f ms, max %.2f ms (%d samples)\n",
           SLOW_CONNECTIONS, p50, p99, max, SAMPLES);

    /* the slow connections were really held open by the daemon */
    int still_open = 0;
    for (int i = 0; i < SLOW_CONNECTIONS; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        if (poll(&p, 1, 0) == 0)
            still_open++;
    }
    printf("  %d of %d slow connections still open\n", still_open, SLOW_CONNECTIONS);
    assert_true(still_open >= SLOW_CONNECTIONS * 9 / 10);
    for (int i = 0; i < SLOW_CONNECTIONS; i++)
        close(fds[i]);
    /* the requirement: served within 100 ms; the median must meet it with
     * room to spare, so that a loaded machine does not make this flaky */
    if (testutil_scale() == 1)
        assert_true(p50 < 100.0);
    expect_healthy(&f->d);
}

/* Past --max-connections a new connection is closed at once; the daemon
 * serves again once the idle ones go. */
static void test_hostile_connection_limit(void **state)
{
    fixture_t *f = *state;
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = daemon_raw_connect(&f->d);
        assert_true(fds[i] >= 0);
        daemon_raw_send(fds[i], "GET /he", 7);
    }
    usleep(100000);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char reply[1024];
    /* MHD stops accepting at the limit: the 9th waits in the listen queue */
    int status = raw_exchange(&f->d, req, sizeof req - 1, false, reply, sizeof reply, 500);
    printf("  9th connection with --max-connections 8: %s%d\n", status ? "HTTP " : "not served, ",
           status);
    assert_int_equal(status, 0);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    bool served = false;
    for (int i = 0; i < 100 * testutil_scale() && !served; i++) { /* up to 2 s */
        served = timed_healthz(&f->d) >= 0;
        if (!served)
            usleep(20000);
    }
    assert_true(served);
}

/* A connection that stops sending is closed after --timeout. */
static void test_hostile_idle_timeout(void **state)
{
    fixture_t *f = *state;
    int fd = daemon_raw_connect(&f->d);
    assert_true(fd >= 0);
    static const char req[] = "PUT /v1/kv/idle HTTP/1.1\r\nHost: t\r\n"
                              "Content-Length: 10\r\n\r\nabc";
    daemon_raw_send(fd, req, sizeof req - 1);
    int64_t t0 = testutil_mono_ms();
    char reply[1024];
    bool closed;
    daemon_raw_read_all(fd, reply, sizeof reply, 5000, &closed);
    int64_t waited = testutil_mono_ms() - t0;
    close(fd);
    printf("  --timeout 1: idle connection closed after %lld ms\n", (long long)waited);
    assert_true(closed);
    assert_true(waited >= 500 && waited < 5000 * testutil_scale());
    assert_int_equal(curl_status(&f->d, "GET", "/v1/kv/idle", NULL), 404);
}

/* ------------------------------------------------------------------------
 * Malformed and oversized requests
 * ------------------------------------------------------------------------ */

static void test_hostile_huge_headers(void **state)
{
    fixture_t *f = *state;
    size_t big = 256 * 1024;
    char *req = malloc(big + 256);
    char *reply = malloc(8192);
    assert_non_null(req);
    assert_non_null(reply);

    int n = snprintf(req, 256, "PUT /v1/kv/hugeheader HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + n, 'a', big);
    n += (int)big;
    n += snprintf(req + n, 256, "\r\nContent-Length: 1\r\n\r\nx");
    expect_refused(raw_exchange(&f->d, req, (size_t)n, false, reply, 8192, 5000), "256 KiB header",
                   reply);

    n = snprintf(req, 256, "PUT /v1/kv/hugeheaders HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 4000; i++)
        n += snprintf(req + n, 64, "X-H%d: v\r\n", i);
    n += snprintf(req + n, 64, "Content-Length: 1\r\n\r\nx");
    expect_refused(raw_exchange(&f->d, req, (size_t)n, false, reply, 8192, 5000), "4000 headers",
                   reply);

    n = snprintf(req, 256, "PUT /v1/kv/");
    memset(req + n, 'k', big);
    n += (int)big;
    n += snprintf(req + n, 256, " HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
    expect_refused(raw_exchange(&f->d, req, (size_t)n, false, reply, 8192, 5000), "256 KiB URL",
                   reply);
    free(req);
    free(reply);
    expect_healthy(&f->d);
}

/* Content-Length 100, 10 bytes sent, then the client closes: nothing is
 * stored. */
static void test_hostile_truncated_body(void **state)
{
    fixture_t *f = *state;
    static const char req[] = "PUT /v1/kv/truncated HTTP/1.1\r\nHost: t\r\n"
                              "Content-Length: 100\r\n\r\n0123456789";
    int fd = daemon_raw_connect(&f->d);
    assert_true(fd >= 0);
    daemon_raw_send(fd, req, sizeof req - 1);
    usleep(50000);
    close(fd);
    usleep(100000);
    assert_int_equal(curl_status(&f->d, "GET", "/v1/kv/truncated", NULL), 404);
}

/* A body longer than its Content-Length: the request is the declared bytes
 * (stored as such); the rest is read as a next request and refused. */
static void test_hostile_body_longer_than_declared(void **state)
{
    fixture_t *f = *state;
    static const char req[] = "PUT /v1/kv/declared HTTP/1.1\r\nHost: t\r\n"
                              "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                              "helloPUT-SMUGGLED /v1/kv/smuggled\r\n\r\n";
    char reply[4096];
    int first = raw_exchange(&f->d, req, sizeof req - 1, false, reply, sizeof reply, 3000);
    int second = nth_status(reply, 1);
    printf("  body longer than Content-Length            -> HTTP %d, then %s%d\n", first,
           second ? "HTTP " : "closed, ", second);
    assert_int_equal(first, 201);
    assert_true(second == 0 || (second >= 400 && second <= 499));
    char *body = NULL;
    assert_int_equal(curl_status(&f->d, "GET", "/v1/kv/declared", &body), 200);
    assert_string_equal(body, "hello");
    free(body);
    assert_int_equal(curl_status(&f->d, "GET", "/v1/kv/smuggled", NULL), 404);
}

static void test_hostile_chunked_over_limit(void **state)
{
    fixture_t *f = *state;
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "PUT /v1/kv/chunked HTTP/1.1\r\nHost: t\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < 8; i++) { /* 8 x 512 bytes, over --max-body 1024 */
        n += snprintf(req + n, sizeof req - (size_t)n, "200\r\n");
        memset(req + n, 'c', 512);
        n += 512;
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    }
    n += snprintf(req + n, sizeof req - (size_t)n, "0\r\n\r\n");
    char reply[2048];
    int status = raw_exchange(&f->d, req, (size_t)n, false, reply, sizeof reply, 3000);
    expect_refused(status, "chunked body of 4 KiB (max-body 1 KiB)", reply);
    assert_int_equal(status, 413);

    static const char bad[] = "PUT /v1/kv/chunked HTTP/1.1\r\nHost: t\r\n"
                              "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    expect_refused(raw_exchange(&f->d, bad, sizeof bad - 1, false, reply, sizeof reply, 3000),
                   "chunk size not hexadecimal", reply);
    static const char huge[] = "PUT /v1/kv/chunked HTTP/1.1\r\nHost: t\r\n"
                               "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc";
    expect_refused(raw_exchange(&f->d, huge, sizeof huge - 1, true, reply, sizeof reply, 3000),
                   "chunk size of 2^72", reply);
    assert_int_equal(curl_status(&f->d, "GET", "/v1/kv/chunked", NULL), 404);
}

static void test_hostile_bad_keys(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *what;
        const char *req;
        size_t len;
    } cases[] = {
#define CASE(what, s) {what, s, sizeof s - 1}
        CASE("key %ff%fe (invalid UTF-8)", "PUT /v1/kv/%ff%fe HTTP/1.1\r\nHost: t\r\n"
                                           "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("key a%00b (NUL)", "PUT /v1/kv/a%00b HTTP/1.1\r\nHost: t\r\n"
                                "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("key %C0%AF (overlong /)", "PUT /v1/kv/%C0%AF HTTP/1.1\r\nHost: t\r\n"
                                        "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("key %ED%A0%80 (surrogate)", "PUT /v1/kv/%ED%A0%80 HTTP/1.1\r\nHost: t\r\n"
                                          "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("raw 0xff bytes in the key", "PUT /v1/kv/\xff\xfe HTTP/1.1\r\nHost: t\r\n"
                                          "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("raw NUL in the request line", "PUT /v1/kv/a\0b HTTP/1.1\r\nHost: t\r\n"
                                            "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("key %zz (bad escape)", "PUT /v1/kv/%zz HTTP/1.1\r\nHost: t\r\n"
                                     "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("If-Match \"9999999999999999999\"",
             "PUT /v1/kv/big HTTP/1.1\r\nHost: t\r\nIf-Match: \"9999999999999999999\"\r\n"
             "Content-Length: 1\r\nConnection: close\r\n\r\nx"),
        CASE("?ttl=9999999999999999999", "PUT /v1/kv/big?ttl=9999999999999999999 HTTP/1.1\r\n"
                                         "Host: t\r\nContent-Length: 1\r\nConnection: close"
                                         "\r\n\r\nx"),
        CASE("?limit=9223372036854775808", "GET /v1/kv?limit=9223372036854775808 HTTP/1.1\r\n"
                                           "Host: t\r\nConnection: close\r\n\r\n"),
#undef CASE
    };
    char reply[2048];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status =
            raw_exchange(&f->d, cases[i].req, cases[i].len, false, reply, sizeof reply, 3000);
        expect_refused(status, cases[i].what, reply);
    }
    expect_healthy(&f->d);
}

static void test_hostile_methods(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *what;
        const char *req;
        size_t len;
    } cases[] = {
#define CASE(what, s) {what, s, sizeof s - 1}
        CASE("TRACE", "TRACE /v1/kv/m HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        CASE("CONNECT", "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        CASE("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        CASE("lower-case put", "put /v1/kv/m HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                               "Connection: close\r\n\r\nx"),
        CASE("made-up method", "FROB /v1/kv/m HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        CASE("control bytes", "P\x01T /v1/kv/m HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        CASE("binary garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        CASE("no version", "PUT /v1/kv/m\r\n\r\n"),
        CASE("Content-Length twice", "PUT /v1/kv/m HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                                     "Content-Length: 2\r\nConnection: close\r\n\r\nxy"),
        CASE("Content-Length -1", "PUT /v1/kv/m HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n"
                                  "Connection: close\r\n\r\nx"),
        CASE("Content-Length and chunked",
             "PUT /v1/kv/m HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: "
             "chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
#undef CASE
    };
    char reply[2048];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status =
            raw_exchange(&f->d, cases[i].req, cases[i].len, true, reply, sizeof reply, 3000);
        if (strcmp(cases[i].what, "Content-Length and chunked") == 0 && status == 201) {
            /* RFC 9112 6.3: chunked wins over Content-Length; accepted as
             * the one chunk "x", so delete it again below */
            printf("  %-44s -> HTTP 201 (chunked framing wins)\n", cases[i].what);
            continue;
        }
        expect_refused(status, cases[i].what, reply);
    }
    long st = curl_status(&f->d, "DELETE", "/v1/kv/m", NULL);
    assert_true(st == 404 || st == 204);
    expect_healthy(&f->d);
}

/* Last in its group: after everything above, only what the well-formed
 * request stored is there. */
static void test_hostile_nothing_stored(void **state)
{
    fixture_t *f = *state;
    char *body = NULL;
    assert_int_equal(curl_status(&f->d, "GET", "/v1/kv?limit=1000", &body), 200);
    printf("  keys after the hostile requests: %s\n", body);
    assert_string_equal(body, "{\"keys\":[\"declared\"],\"next\":null}");
    free(body);
    expect_healthy(&f->d);
}

/* A stop while a PUT is still sending its body: new requests get 503
 * `unavailable` with Connection: close, the PUT in flight finishes and is
 * stored, and the daemon exits 0. */
static void test_hostile_stop_with_a_request_in_flight(void **state)
{
    fixture_t *f = *state;
    static const char head[] = "PUT /v1/kv/drain:slow HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello";
    int fd = daemon_raw_connect(&f->d);
    assert_true(fd >= 0);
    assert_true(daemon_raw_send(fd, head, sizeof head - 1));
    usleep(200000 * (useconds_t)testutil_scale()); /* the daemon has begun the request */
    assert_int_equal(kill(f->d.pid, SIGTERM), 0);

    /* bounded: the stop begins within a few seconds of the signal */
    long status = 0;
    char *conn = NULL, *body = NULL;
    for (int i = 0; i < 100 * testutil_scale() && status != 503; i++) {
        client_resp_t r;
        if (client_request(&f->d, "GET", "/healthz", NULL, NULL, 0, &r) == 0) {
            status = r.status;
            if (status == 503) {
                conn = client_header(&r, "Connection");
                body = strdup(r.body);
            }
        }
        client_resp_free(&r);
        if (status != 503)
            usleep(50000);
    }
    assert_int_equal(status, 503);
    assert_non_null(conn);
    assert_string_equal(conn, "close");
    assert_non_null(strstr(body, "\"code\":\"unavailable\""));
    free(conn);
    free(body);

    /* the request in flight is finished and answered */
    assert_true(daemon_raw_send(fd, "world", 5));
    char reply[4096];
    bool closed;
    daemon_raw_read_all(fd, reply, sizeof reply, 5000, &closed);
    close(fd);
    assert_int_equal(nth_status(reply, 0), 201);
    assert_non_null(strstr(reply, "Connection: close"));
    assert_int_equal(daemon_stop(&f->d), 0);

    assert_int_equal(daemon_restart(&f->d), 0);
    char *got = NULL;
    assert_int_equal(curl_status(&f->d, "GET", "/v1/kv/drain:slow", &got), 200);
    assert_string_equal(got, "helloworld");
    free(got);
}

static int setup_default(void **state)
{
    return daemon_fixture_start(state, NULL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest hostile[] = {
        cmocka_unit_test(test_hostile_slowloris),
        cmocka_unit_test(test_hostile_huge_headers),
        cmocka_unit_test(test_hostile_truncated_body),
        cmocka_unit_test(test_hostile_body_longer_than_declared),
        cmocka_unit_test(test_hostile_chunked_over_limit),
        cmocka_unit_test(test_hostile_bad_keys),
        cmocka_unit_test(test_hostile_methods),
        cmocka_unit_test(test_hostile_nothing_stored),
    };
    const struct CMUnitTest limits[] = {
        cmocka_unit_test_setup_teardown(test_hostile_connection_limit, setup_few_connections,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_hostile_idle_timeout, setup_short_timeout,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_hostile_stop_with_a_request_in_flight, setup_default,
                                        daemon_fixture_stop),
    };
    int failed =
        cmocka_run_group_tests_name("hostile", hostile, setup_hostile, daemon_fixture_stop);
    failed += cmocka_run_group_tests_name("limits", limits, NULL, NULL);
    curl_global_cleanup();
    int stop_failures = daemon_fixture_stop_failures();
    if (stop_failures)
        fprintf(stderr, "%d daemon(s) did not exit 0 on SIGTERM\n", stop_failures);
    return failed || stop_failures ? 1 : 0;
}
