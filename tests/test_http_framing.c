/*
 * test_http_framing.c - request heads that are not valid HTTP/1.1 framing,
 * sent over raw sockets to the real daemon (libcurl would never send them),
 * and what comes back, parsed byte by byte: exactly one status line and one
 * header block, the body its Content-Length announces, then the daemon
 * closes the connection. Also the per-request memory of requests that
 * libmicrohttpd drops itself (a query of ~600 arguments): the daemon's RSS
 * must stay flat over 20,000 of them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

typedef daemon_fixture_t fixture_t;

/* ------------------------------------------------------------------------
 * Raw HTTP
 * ------------------------------------------------------------------------ */

static bool wrapped(void)
{
    const char *w = getenv("SQLCACHED_WRAPPER");
    return w && *w;
}

static bool sanitized(void)
{
    const char *s = getenv("SAN_CFLAGS");
    return s && *s;
}

/* What a reply is on the wire. */
typedef struct wire {
    int status;        /* of the first status line, 0 if none */
    int status_lines;  /* lines that start with "HTTP/1." */
    int header_blocks; /* blank lines ending a header block, before the body */
    bool well_formed;  /* one head, then exactly Content-Length bytes, nothing more */
    bool closed;       /* the daemon closed the connection */
    bool problem_json; /* Content-Type: application/problem+json */
    bool conn_close;   /* Connection: close */
    char raw[8192];
    size_t len;
} wire_t;

static const char *header_in(const char *head, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = head; p && p < head + n;) {
        if ((size_t)(head + n - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            return p + nl + 1;
        p = memchr(p, '\n', (size_t)(head + n - p));
        p = p ? p + 1 : NULL;
    }
    return NULL;
}

/* Parse w->raw: the status line, the header lines up to the blank line,
 * then a body of Content-Length bytes; count status lines (every line
 * starting with "HTTP/1.") and header blocks (every head that follows). */
static void parse_wire(wire_t *w)
{
    const char *p = w->raw, *end = w->raw + w->len;
    for (const char *l = p; l && l < end;) {
        w->status_lines += (size_t)(end - l) >= 7 && memcmp(l, "HTTP/1.", 7) == 0;
        l = memchr(l, '\n', (size_t)(end - l));
        l = l ? l + 1 : NULL;
    }
    if (w->len < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0)
        return;
    w->status = atoi(p + 9);
    const char *blank = NULL;
    for (const char *q = p; q + 4 <= end; q++)
        if (memcmp(q, "\r\n\r\n", 4) == 0 && !blank)
            blank = q;
    if (!blank)
        return;
    size_t head_len = (size_t)(blank - p) + 2;
    const char *cl = header_in(p, head_len, "Content-Length");
    const char *ct = header_in(p, head_len, "Content-Type");
    const char *cc = header_in(p, head_len, "Connection");
    w->problem_json = ct && strncmp(ct, " application/problem+json", 25) == 0;
    w->conn_close = cc && strncasecmp(cc, " close", 6) == 0;
    const char *body = blank + 4;
    size_t body_len = cl ? strtoul(cl, NULL, 10) : 0;
    w->header_blocks = 1;
    /* a second head right after the first one (in what would be the body) */
    for (const char *q = body; q + 4 <= end; q++)
        if (memcmp(q, "\r\n\r\n", 4) == 0)
            w->header_blocks++;
    w->well_formed = cl && (size_t)(end - body) == body_len;
}

/* Send req (len bytes), read the reply until the daemon closes (at most
 * 5 s) and parse it. */
static void exchange(const daemon_t *d, const char *req, size_t len, wire_t *w)
{
    memset(w, 0, sizeof *w);
    int fd = daemon_raw_connect(d);
    assert_true(fd >= 0);
    daemon_raw_send(fd, req, len);
    w->len = daemon_raw_read_all(fd, w->raw, sizeof w->raw, 5000, &w->closed);
    close(fd);
    parse_wire(w);
}

static void print_wire(const char *what, const wire_t *w)
{
    printf("  %-46s -> %d, %d status line(s), %d header block(s), %s%s\n", what, w->status,
           w->status_lines, w->header_blocks, w->well_formed ? "well-formed" : "MALFORMED",
           w->closed ? ", closed" : ", still open after 5 s");
}

/* Exactly one response with this status, one header block, nothing after
 * its body, and the connection closed; false (with the bytes printed) if
 * not. */
static bool one_answer(const char *what, const wire_t *w, int status, bool problem)
{
    print_wire(what, w);
    if (w->status != status || w->status_lines != 1 || w->header_blocks != 1 || !w->well_formed ||
        !w->closed || (problem && (!w->problem_json || !w->conn_close))) {
        printf("    expected exactly one %d%s and a close, got %zu bytes:\n%.600s\n", status,
               problem ? " problem+json with Connection: close" : "", w->len, w->raw);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Framing
 * ------------------------------------------------------------------------ */

#define CASE(what, s, st)                                                                          \
    {                                                                                              \
        what, s, sizeof s - 1, st                                                                  \
    }
typedef struct shape {
    const char *what;
    const char *req;
    size_t len;
    int status;
} shape_t;

/* The request a tolerant front end sees as one PUT with a 44-byte body,
 * which the daemon used to read as a PUT with no body followed by a
 * DELETE of /v1/kv/victim. */
#define SMUGGLED_DELETE "DELETE /v1/kv/victim HTTP/1.1\r\nHost: t\r\n\r\n"

static const shape_t bad_shapes[] = {
    CASE("Content-Length : N (space before the colon)",
         "PUT /v1/kv/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length : 44\r\n\r\n" SMUGGLED_DELETE,
         400),
    CASE("Content-Length<TAB>: N",
         "PUT /v1/kv/smuggle HTTP/1.1\r\nHost: t\r\n"
         "Content-Length\t: 44\r\n\r\n" SMUGGLED_DELETE,
         400),
    CASE("folded line (obs-fold)", "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n", 400),
    CASE("folded Transfer-Encoding",
         "PUT /v1/kv/fold HTTP/1.1\r\nHost: t\r\n"
         "Transfer-Encoding: x\r\n chunked\r\n\r\n"
         "1\r\nx\r\n0\r\n\r\n",
         400),
    CASE("Transfer-Encoding: gzip, chunked",
         "PUT /v1/kv/te HTTP/1.1\r\nHost: t\r\n"
         "Transfer-Encoding: gzip, chunked\r\n\r\n"
         "1\r\nx\r\n0\r\n\r\n",
         501),
    CASE("Transfer-Encoding: chunked<SP>",
         "PUT /v1/kv/te HTTP/1.1\r\nHost: t\r\n"
         "Transfer-Encoding: chunked \r\n\r\n"
         "1\r\nx\r\n0\r\n\r\n",
         400),
    CASE("Transfer-Encoding: chunked, gzip",
         "PUT /v1/kv/te HTTP/1.1\r\nHost: t\r\n"
         "Transfer-Encoding: chunked, gzip\r\n\r\n"
         "1\r\nx\r\n0\r\n\r\n",
         400),
    CASE("Transfer-Encoding: gzip",
         "PUT /v1/kv/te HTTP/1.1\r\nHost: t\r\n"
         "Transfer-Encoding: gzip\r\n\r\nx",
         400),
    CASE("Transfer-Encoding: chunked, chunked",
         "PUT /v1/kv/te HTTP/1.1\r\nHost: t\r\n"
         "Transfer-Encoding: chunked, chunked\r\n\r\n"
         "1\r\nx\r\n0\r\n\r\n",
         400),
    CASE("Transfer-Encoding in HTTP/1.0",
         "PUT /v1/kv/te HTTP/1.0\r\nHost: t\r\n"
         "Transfer-Encoding: chunked\r\n\r\n"
         "1\r\nx\r\n0\r\n\r\n",
         400),
    CASE("two Host fields", "GET /healthz HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400),
    CASE("no Host (HTTP/1.1)", "GET /healthz HTTP/1.1\r\n\r\n", 400),
    CASE("Host with a space", "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    CASE("space in the request target", "GET /v1/kv/a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    CASE("tab in the request target", "GET /v1/kv/a\tb HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    CASE("empty field name", "GET /healthz HTTP/1.1\r\n: x\r\nHost: t\r\n\r\n", 400),
    CASE("control byte in a value", "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x01z\r\n\r\n", 400),
    CASE("bare CR in a value", "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400),
};

/* Each of the n shapes must get one_answer; all are tried before failing. */
static void expect_each_answered_once(const daemon_t *d, const shape_t *shapes, size_t n,
                                      bool problem)
{
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        wire_t w;
        exchange(d, shapes[i].req, shapes[i].len, &w);
        failed += !one_answer(shapes[i].what, &w, shapes[i].status, problem);
    }
    if (failed)
        fail_msg("%zu of %zu requests were not answered exactly once", failed, n);
}

/* Each shape: one 400 (or 501) problem, one header block, closed. */
static void test_framing_bad_heads(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(client_status(&f->d, "PUT", "/v1/kv/victim", NULL, "still here"), 201);
    expect_each_answered_once(&f->d, bad_shapes, sizeof bad_shapes / sizeof bad_shapes[0], true);
    /* nothing was smuggled: the DELETE never ran, no PUT stored anything */
    assert_int_equal(client_status(&f->d, "GET", "/v1/kv/victim", NULL, NULL), 200);
    assert_int_equal(client_status(&f->d, "GET", "/v1/kv/smuggle", NULL, NULL), 404);
    assert_int_equal(client_status(&f->d, "GET", "/v1/kv/te", NULL, NULL), 404);
    assert_int_equal(client_status(&f->d, "GET", "/v1/kv/fold", NULL, NULL), 404);
}

/* libmicrohttpd's own answers (it refuses these before the daemon sees
 * them) have one header block too: a missing Host used to come back with
 * two (see http.c, MHD_OPTION_STRICT_FOR_CLIENT). */
static void test_framing_library_answers_once(void **state)
{
    fixture_t *f = *state;
    static const shape_t own[] = {
        CASE("header line without a colon", "GET /healthz HTTP/1.1\r\nHost: t\r\nfoo\r\n\r\n", 400),
        CASE("bad chunk size",
             "PUT /v1/kv/c HTTP/1.1\r\nHost: t\r\n"
             "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
             400),
        CASE("HTTP/2.0 request line", "GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    };
    expect_each_answered_once(&f->d, own, sizeof own / sizeof own[0], false);
    /* Known and left: a Content-Length MHD cannot parse is answered by MHD
     * with its header block twice; nothing in the daemon runs for it. */
    static const shape_t known[] = {
        CASE("Content-Length: abc (libmicrohttpd)",
             "PUT /v1/kv/c HTTP/1.1\r\nHost: t\r\n"
             "Content-Length: abc\r\n\r\n",
             400),
    };
    wire_t w;
    exchange(&f->d, known[0].req, known[0].len, &w);
    print_wire(known[0].what, &w);
    assert_int_equal(w.status, 400);
    assert_true(w.closed);
}

/* Valid heads in their less usual spellings are still served. */
static void test_framing_valid_heads(void **state)
{
    fixture_t *f = *state;
    static const shape_t good[] = {
        CASE("no space after the colons",
             "PUT /v1/kv/ok1 HTTP/1.1\r\nHost:t\r\n"
             "Content-Length:1\r\nConnection: close\r\n\r\nx",
             201),
        CASE("Transfer-Encoding: CHUNKED",
             "PUT /v1/kv/ok2 HTTP/1.1\r\nHost: t\r\n"
             "Transfer-Encoding: CHUNKED\r\nConnection: close"
             "\r\n\r\n1\r\nx\r\n0\r\n\r\n",
             201),
        CASE("HTTP/1.0 without Host", "GET /healthz HTTP/1.0\r\n\r\n", 200),
        CASE("Host with a port and an IPv6 literal",
             "GET /healthz HTTP/1.1\r\n"
             "Host: [::1]:8080\r\nConnection: close"
             "\r\n\r\n",
             200),
    };
    expect_each_answered_once(&f->d, good, sizeof good / sizeof good[0], false);
    /* keep-alive: two requests on one connection, two answers */
    static const char two[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    wire_t w;
    exchange(&f->d, two, sizeof two - 1, &w);
    const char *second = strstr(w.raw, "HTTP/1.1 200");
    second = second ? strstr(second + 1, "HTTP/1.1 200") : NULL;
    printf("  two requests on one connection -> %s\n", second ? "two 200s" : w.raw);
    assert_non_null(second);
    assert_true(w.closed);
}
#undef CASE

/* ------------------------------------------------------------------------
 * The head's size: 12 KiB of connection memory (src/http.c)
 * ------------------------------------------------------------------------ */

/* A request for GET /v1/kv with prefix and after each a 512-byte key
 * percent-encoded (1.5 KiB each), a 4,096-byte bearer token (the longest
 * --auth-token takes; without one configured the header is ignored),
 * `extra` more bytes in one header, and browser-like headers. Caller
 * frees. */
static char *list_request(size_t extra, size_t *len)
{
    size_t cap = 16384 + extra;
    char *req = malloc(cap);
    assert_non_null(req);
    size_t n = (size_t)snprintf(req, cap, "GET /v1/kv?prefix=");
    for (int i = 0; i < 512; i++)
        n += (size_t)snprintf(req + n, cap - n, "%s", i & 1 ? "%A9" : "%C3");
    n += (size_t)snprintf(req + n, cap - n, "&after=");
    for (int i = 0; i < 512; i++)
        n += (size_t)snprintf(req + n, cap - n, "%s", i & 1 ? "%A9" : "%C3");
    n += (size_t)snprintf(req + n, cap - n,
                          "&limit=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                          "(KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
                          "Accept: application/json\r\nAccept-Language: en-US,en;q=0.9\r\n"
                          "Connection: close\r\nAuthorization: Bearer ");
    memset(req + n, 't', 4096);
    n += 4096;
    n += (size_t)snprintf(req + n, cap - n, "\r\nX-Extra: ");
    memset(req + n, 'x', extra);
    n += extra;
    n += (size_t)snprintf(req + n, cap - n, "\r\n\r\n");
    *len = n;
    return req;
}

/* The longest legitimate head (about 7.4 KiB), and one 3 KiB longer, are
 * answered; one that does not fit the connection's memory gets the
 * library's 431. */
static void test_framing_head_size(void **state)
{
    fixture_t *f = *state;
    size_t len;
    char *req = list_request(0, &len);
    wire_t w;
    exchange(&f->d, req, len, &w);
    print_wire("the longest legitimate head", &w);
    printf("    (%zu bytes)\n", len);
    assert_int_equal(w.status, 200);
    free(req);
    req = list_request(3072, &len);
    exchange(&f->d, req, len, &w);
    print_wire("the longest legitimate head + 3 KiB", &w);
    assert_int_equal(w.status, 200);
    free(req);
    req = list_request(6144, &len);
    exchange(&f->d, req, len, &w);
    print_wire("a head over 13 KiB", &w);
    assert_int_equal(w.status, 431);
    assert_true(w.closed);
    free(req);
}

/* ------------------------------------------------------------------------
 * Requests libmicrohttpd drops: their memory
 * ------------------------------------------------------------------------ */

#define QUERY_ARGS 600 /* more than the 12 KiB of a connection holds (~170) */

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    long kib = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (fp)
        fclose(fp);
    return kib;
}

/* n connections that each send the request and close at once. */
static void send_dropped(const daemon_t *d, const char *req, size_t len, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = daemon_raw_connect(d);
        assert_true(fd >= 0);
        daemon_raw_send(fd, req, len);
        close(fd);
    }
}

static char *many_args_request(size_t *len)
{
    size_t cap = 32 + QUERY_ARGS * 12 + 64;
    char *req = malloc(cap);
    assert_non_null(req);
    size_t n = (size_t)snprintf(req, cap, "GET /v1/kv?");
    for (int i = 0; i < QUERY_ARGS; i++)
        n += (size_t)snprintf(req + n, cap - n, "%sa%d=1", i ? "&" : "", i);
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: t\r\n\r\n");
    *len = n;
    return req;
}

/* 20,000 requests MHD drops without completing them: RSS stays flat
 * (they leaked 240 bytes each, ~5.7 MB per 20,000). Under valgrind or the
 * sanitizers a few hundred suffice: a leak is reported at the daemon's
 * exit, which daemon_fixture_stop checks. */
static void test_framing_dropped_requests_freed(void **state)
{
    fixture_t *f = *state;
    size_t len;
    char *req = many_args_request(&len);
    bool measure = !wrapped() && !sanitized();
    int n = measure ? 20000 : 300;
    send_dropped(&f->d, req, len, n); /* warm up: connection memory, arenas */
    assert_int_equal(client_status(&f->d, "GET", "/healthz", NULL, NULL), 200);
    long before = rss_kib(f->d.pid);
    send_dropped(&f->d, req, len, n);
    assert_int_equal(client_status(&f->d, "GET", "/healthz", NULL, NULL), 200);
    usleep(200 * 1000); /* the last connections are cleaned up */
    assert_int_equal(client_status(&f->d, "GET", "/healthz", NULL, NULL), 200);
    long after = rss_kib(f->d.pid);
    printf("  %d dropped requests: RSS %ld -> %ld KiB (%+ld KiB, %+.1f MB per 100,000)\n", n,
           before, after, after - before, (double)(after - before) * 100000.0 / n / 1024.0);
    free(req);
    if (measure) {
        assert_true(before > 0 && after > 0);
        assert_true(after - before < 2048); /* the leak grew it by ~5,600 KiB */
    }
}

static int setup(void **state)
{
    static const char *const args[] = {"--threads", "2", NULL};
    return daemon_fixture_start(state, args);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_bad_heads),
        cmocka_unit_test(test_framing_library_answers_once),
        cmocka_unit_test(test_framing_valid_heads),
        cmocka_unit_test(test_framing_head_size),
        cmocka_unit_test(test_framing_dropped_requests_freed),
    };
    int failed = cmocka_run_group_tests_name("framing", tests, setup, daemon_fixture_stop);
    curl_global_cleanup();
    int stop_failures = daemon_fixture_stop_failures();
    if (stop_failures)
        fprintf(stderr, "%d daemon(s) did not exit 0 on SIGTERM\n", stop_failures);
    return failed || stop_failures ? 1 : 0;
}
