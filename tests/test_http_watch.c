/*
 * test_http_watch.c - the watch contract over real HTTP against the
 * daemon (tests/daemon.h): Server-Sent Events of every kind of change
 * (put, delete, incr, PATCH, take, txn, expire) with their id, event and
 * data; prefixes; since and Last-Event-ID (after a dropped connection and
 * across a restart); 410 history_truncated with "oldest" past a small
 * --watch-history; 503 beyond --max-watchers; bad arguments; exactly-once
 * in-order delivery with 8 writers and 4 watchers on overlapping prefixes,
 * checked against the writers' acknowledged versions; 1,000 idle watchers
 * while /healthz answers; the blocking GET answered at once, woken by each
 * kind of change, and timing out.
 *
 * Streams are read over raw sockets with HTTP/1.0 (no chunked framing).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

typedef daemon_fixture_t fixture_t;

static const char *const daemon_args[] = {"--threads", "2", NULL};

static int setup(void **state)
{
    return daemon_fixture_start(state, daemon_args);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t scale(void)
{
    const char *w = getenv("SQLCACHED_WRAPPER");
    return w && *w ? 20 : 1;
}

/* ------------------------------------------------------------------------
 * A Server-Sent Events reader
 * ------------------------------------------------------------------------ */

typedef struct sse {
    int fd;
    long status;
    char buf[1 << 16];
    size_t len;
    bool body; /* headers read */
    bool closed;
} sse_t;

typedef struct event {
    int64_t id;
    char type[16];
    char data[1024];
} event_t;

/* Open GET path (with an extra header line, may be NULL); reads the
 * status line and headers (up to timeout). */
static sse_t *sse_open(const daemon_t *d, const char *path, const char *header)
{
    sse_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->fd = daemon_raw_connect(d);
    assert_true(s->fd >= 0);
    char req[2048];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: t\r\n%s%s\r\n", path, header ? header : "",
             header ? "\r\n" : "");
    assert_true(daemon_raw_send(s->fd, req, strlen(req)));
    return s;
}

/* Read more bytes, waiting up to ms; false on timeout or close. */
static bool sse_fill(sse_t *s, int ms)
{
    if (s->closed || s->len >= sizeof s->buf - 1)
        return false;
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return false;
    ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len);
    if (n <= 0) {
        s->closed = true;
        return false;
    }
    s->len += (size_t)n;
    s->buf[s->len] = '\0';
    return true;
}

static void sse_consume(sse_t *s, size_t n)
{
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
    s->buf[s->len] = '\0';
}

/* Headers: the status, within ms. */
static long sse_status(sse_t *s, int ms)
{
    int64_t until = mono_ms() + ms * scale();
    while (!s->body) {
        char *end = strstr(s->buf, "\r\n\r\n");
        if (end) {
            s->status = strtol(s->buf + 9, NULL, 10);
            s->body = true;
            sse_consume(s, (size_t)(end + 4 - s->buf));
            break;
        }
        int left = (int)(until - mono_ms());
        if (left <= 0 || !sse_fill(s, left))
            return s->closed && s->len > 12 ? strtol(s->buf + 9, NULL, 10) : 0;
    }
    return s->status;
}

/* The next event (comments skipped) within ms; false if none came. */
static bool sse_next(sse_t *s, event_t *e, int ms)
{
    int64_t until = mono_ms() + ms * scale();
    if (!s->body && sse_status(s, ms) != 200)
        return false;
    for (;;) {
        char *end;
        while ((end = strstr(s->buf, "\n\n"))) {
            *end = '\0';
            memset(e, 0, sizeof *e);
            bool any = false;
            for (char *line = s->buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                    *next++ = '\0';
                if (strncmp(line, "id: ", 4) == 0)
                    e->id = strtoll(line + 4, NULL, 10), any = true;
                else if (strncmp(line, "event: ", 7) == 0)
                    snprintf(e->type, sizeof e->type, "%s", line + 7);
                else if (strncmp(line, "data: ", 6) == 0)
                    snprintf(e->data, sizeof e->data, "%s", line + 6);
            }
            sse_consume(s, (size_t)(end + 2 - s->buf));
            if (any)
                return true;
        }
        int left = (int)(until - mono_ms());
        if (left <= 0 || !sse_fill(s, left))
            return false;
    }
}

static void sse_close(sse_t *s)
{
    if (s) {
        close(s->fd);
        free(s);
    }
}

/* e's data must be {"key": key, "version": e->id, "expires_at": ...}. */
static void check_data(const event_t *e, const char *key)
{
    json_error_t err;
    json_t *d = json_loads(e->data, 0, &err);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "key")), key);
    assert_int_equal(json_integer_value(json_object_get(d, "version")), e->id);
    assert_non_null(json_object_get(d, "expires_at"));
    assert_int_equal(json_object_size(d), 3);
    json_decref(d);
}

static void expect_event(sse_t *s, const char *type, const char *key, int64_t version)
{
    event_t e;
    assert_true(sse_next(s, &e, 3000));
    assert_string_equal(e.type, type);
    if (version > 0)
        assert_int_equal(e.id, version);
    check_data(&e, key);
}

/* ------------------------------------------------------------------------
 * HTTP helpers
 * ------------------------------------------------------------------------ */

/* A request; returns the status, the "version" of a JSON answer in *version. */
static long call(fixture_t *f, const char *method, const char *path, const char *body,
                 int64_t *version)
{
    client_resp_t r;
    const char *h[] = {strcmp(method, "PATCH") ? "Content-Type: application/json"
                                               : "Content-Type: application/merge-patch+json",
                       NULL};
    assert_int_equal(client_request(&f->d, method, path, h, body, body ? strlen(body) : 0, &r), 0);
    long status = r.status;
    if (version) {
        json_t *j = client_json(&r);
        *version = j ? json_integer_value(json_object_get(j, "version")) : 0;
        char *etag = client_header(&r, "ETag");
        if (etag && !*version)
            *version = strtoll(etag + 1, NULL, 10);
        free(etag);
        json_decref(j);
    }
    client_resp_free(&r);
    return status;
}

static int64_t put(fixture_t *f, const char *key, const char *value)
{
    char path[600];
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    int64_t v = 0;
    long st = call(f, "PUT", path, value, &v);
    assert_true(st == 200 || st == 201);
    return v;
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

static void test_watch_every_kind_of_change(void **state)
{
    fixture_t *f = *state;
    sse_t *s = sse_open(&f->d, "/v1/watch?prefix=w", NULL);
    assert_int_equal(sse_status(s, 3000), 200);
    int64_t v1 = put(f, "w1", "a");
    put(f, "other", "x"); /* not under the prefix */
    int64_t v2 = 0, v3 = 0, v4 = 0, v5 = 0, v6 = 0;
    assert_int_equal(call(f, "POST", "/v1/kv/w2/incr", NULL, &v2), 200);
    assert_int_equal(call(f, "PATCH", "/v1/kv/w3", "{\"a\":1}", &v3) / 100, 2);
    assert_int_equal(call(f, "DELETE", "/v1/kv/w1", NULL, NULL), 204);
    assert_int_equal(call(f, "POST", "/v1/txn",
                          "{\"success\":[{\"op\":\"put\",\"key\":\"w4\",\"value\":\"t\"},"
                          "{\"op\":\"delete\",\"key\":\"w3\"},{\"op\":\"incr\",\"key\":\"w2\"}]}",
                          NULL),
                     200);
    assert_int_equal(call(f, "PUT", "/v1/kv/w5?ttl=1", "e", &v5) / 100, 2);
    expect_event(s, "put", "w1", v1);
    expect_event(s, "put", "w2", v2);
    expect_event(s, "put", "w3", v3);
    expect_event(s, "delete", "w1", 0);
    expect_event(s, "put", "w4", 0);
    expect_event(s, "delete", "w3", 0);
    expect_event(s, "put", "w2", 0);
    expect_event(s, "put", "w5", v5);
    /* expiry: an expire event with a version of its own, within 2 s */
    int64_t t0 = mono_ms();
    event_t e;
    assert_true(sse_next(s, &e, 4000));
    assert_string_equal(e.type, "expire");
    assert_true(e.id > v5);
    check_data(&e, "w5");
    /* within 2 s of the expiry (expires_at, wall clock ms) */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t wall = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    json_t *d = json_loads(e.data, 0, NULL);
    int64_t expires_at = json_integer_value(json_object_get(d, "expires_at"));
    json_decref(d);
    fprintf(stderr, "expire event %lld ms after the expiry (waited %lld ms)\n",
            (long long)(wall - expires_at), (long long)(mono_ms() - t0));
    assert_true(expires_at > 0 && wall - expires_at <= 2000 * scale());
    (void)v4;
    (void)v6;
    sse_close(s);
}

static void test_watch_since_and_last_event_id(void **state)
{
    fixture_t *f = *state;
    int64_t a = put(f, "s1", "1");
    int64_t b = put(f, "s2", "2");
    int64_t c = put(f, "t1", "3");
    char path[128];
    snprintf(path, sizeof path, "/v1/watch?since=%lld", (long long)a);
    sse_t *s = sse_open(&f->d, path, NULL);
    expect_event(s, "put", "s2", b);
    expect_event(s, "put", "t1", c);
    sse_close(s);
    /* a dropped connection: Last-Event-ID resumes after the last event seen */
    s = sse_open(&f->d, "/v1/watch?prefix=s", NULL);
    assert_int_equal(sse_status(s, 3000), 200);
    int64_t d = put(f, "s3", "4");
    expect_event(s, "put", "s3", d);
    sse_close(s);
    int64_t e1 = put(f, "s4", "5"); /* while nobody watches */
    put(f, "x", "6");
    int64_t e2 = put(f, "s5", "7");
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %lld", (long long)d);
    s = sse_open(&f->d, "/v1/watch?prefix=s&since=0", hdr); /* the header wins */
    expect_event(s, "put", "s4", e1);
    expect_event(s, "put", "s5", e2);
    event_t ev;
    assert_false(sse_next(s, &ev, 300));
    sse_close(s);
    /* across a restart of the daemon */
    assert_int_equal(daemon_stop(&f->d), 0);
    assert_int_equal(daemon_restart(&f->d), 0);
    int64_t e3 = put(f, "s6", "8");
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %lld", (long long)e1);
    s = sse_open(&f->d, "/v1/watch?prefix=s", hdr);
    expect_event(s, "put", "s5", e2);
    expect_event(s, "put", "s6", e3);
    sse_close(s);
}

/* An idle stream gets a comment line at least every 15 s. */
static void test_watch_keep_alive(void **state)
{
    fixture_t *f = *state;
    sse_t *s = sse_open(&f->d, "/v1/watch?prefix=quiet", NULL);
    assert_int_equal(sse_status(s, 3000), 200);
    int64_t t0 = mono_ms();
    while (!strstr(s->buf, ": keep-alive\n\n") && mono_ms() - t0 < 16000 * scale())
        sse_fill(s, 500);
    assert_non_null(strstr(s->buf, ": keep-alive\n\n"));
    fprintf(stderr, "keep-alive comment after %lld ms\n", (long long)(mono_ms() - t0));
    assert_true(mono_ms() - t0 <= 15000 * scale());
    sse_close(s);
}

static void test_watch_bad_arguments(void **state)
{
    fixture_t *f = *state;
    const char *bad[] = {"/v1/watch?since=-1",       "/v1/watch?since=x",
                         "/v1/watch?since=",         "/v1/kv/k?wait=0",
                         "/v1/kv/k?wait=301",        "/v1/kv/k?wait=x",
                         "/v1/kv/k?wait=5&index=-1", NULL};
    for (int i = 0; bad[i]; i++) {
        client_resp_t r;
        assert_int_equal(client_request(&f->d, "GET", bad[i], NULL, NULL, 0, &r), 0);
        if (r.status != 400)
            fprintf(stderr, "%s: %ld\n", bad[i], r.status);
        assert_int_equal(r.status, 400);
        client_resp_free(&r);
    }
    sse_t *s = sse_open(&f->d, "/v1/watch", "Last-Event-ID: abc");
    assert_int_equal(sse_status(s, 3000), 400);
    sse_close(s);
}

/* ------------------------------------------------------------------------
 * 410 and 503 (daemons of their own)
 * ------------------------------------------------------------------------ */

static const char *const small_history_args[] = {"--threads", "2", "--watch-history", "10", NULL};

static int setup_small_history(void **state)
{
    return daemon_fixture_start(state, small_history_args);
}

static void test_watch_410_when_history_exceeded(void **state)
{
    fixture_t *f = *state;
    int64_t first = put(f, "h", "0");
    for (int i = 0; i < 40; i++)
        put(f, "h", "1");
    /* the trim runs in the background every few seconds */
    long status = 0;
    client_resp_t r;
    sse_t *s = NULL;
    for (int i = 0; i < 100 && status != 410; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/watch?since=%lld", (long long)first);
        sse_close(s);
        s = sse_open(&f->d, path, NULL);
        status = sse_status(s, 3000);
        if (status != 410)
            usleep(100000);
    }
    assert_int_equal(status, 410);
    while (sse_fill(s, 1000))
        ;
    json_t *j = json_loads(s->buf, 0, NULL);
    sse_close(s);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "history_truncated");
    int64_t oldest = json_integer_value(json_object_get(j, "oldest"));
    assert_true(oldest > first + 1); /* the trim may run while the writes go on */
    json_decref(j);
    /* from oldest - 1 on, everything is there */
    char path[64];
    snprintf(path, sizeof path, "/v1/watch?since=%lld", (long long)(oldest - 1));
    s = sse_open(&f->d, path, NULL);
    expect_event(s, "put", "h", oldest);
    sse_close(s);
    /* the 410s are counted; the history size (as of the last trim: one
     * that ran during the writes saw more) comes down to 10 */
    int64_t size = -1, until = mono_ms() + 12000 * scale();
    do {
        if (size >= 0)
            usleep(200000);
        assert_int_equal(client_request(&f->d, "GET", "/v1/stats", NULL, NULL, 0, &r), 0);
        j = client_json(&r);
        json_t *w = json_object_get(j, "watch");
        assert_true(json_integer_value(json_object_get(w, "truncated")) >= 1);
        size = json_integer_value(json_object_get(w, "history_size"));
        json_decref(j);
        client_resp_free(&r);
    } while (size > 10 && mono_ms() < until);
    assert_true(size <= 10 && size > 0);
}

/* A client that does not read: its stream stays where it is (the daemon
 * queues nothing for it); once its cursor has left the history, what was
 * already in the socket buffers arrives, in order and without a gap, then
 * the stream ends, and its reconnection gets 410. */
static void test_watch_slow_reader(void **state)
{
    fixture_t *f = *state;
    /* a small receive buffer, fixed before the connection (no autotuning) */
    sse_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    assert_int_equal(setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)f->d.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *req = "GET /v1/watch?prefix=slow HTTP/1.0\r\n\r\n";
    assert_true(daemon_raw_send(s->fd, req, strlen(req)));
    assert_int_equal(sse_status(s, 3000), 200);
    /* 16,000 changes of keys of ~450 bytes (~9 MB of events: more than the
     * socket buffers hold, and more than the 8,192 changes the daemon keeps
     * in memory beyond them), 100 per transaction: consecutive versions */
    static char body[64 * 1024];
    char pad[441];
    memset(pad, 'k', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int t = 0; t < 160; t++) {
        size_t n = (size_t)snprintf(body, sizeof body, "{\"success\":[");
        for (int i = 0; i < 100; i++)
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "%s{\"op\":\"put\",\"key\":\"slow%05d%s\",\"value\":\"v\"}",
                                  i ? "," : "", t * 100 + i, pad);
        snprintf(body + n, sizeof body - n, "]}");
        assert_int_equal(call(f, "POST", "/v1/txn", body, NULL), 200);
    }
    usleep(7000000); /* a trim (every 5 s) */
    int64_t last = 0, got = 0;
    event_t e;
    while (sse_next(s, &e, 3000)) {
        if (last)
            assert_int_equal(e.id, last + 1); /* consecutive versions, no gap */
        last = e.id;
        got++;
    }
    if (!s->closed)
        fprintf(stderr, "slow reader: %lld events, stream still open\n", (long long)got);
    assert_true(s->closed); /* the daemon ended the stream */
    fprintf(stderr, "slow reader: %lld of 16000 events arrived before the stream ended\n",
            (long long)got);
    assert_true(got > 0 && got < 16000);
    sse_close(s);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %lld", (long long)last);
    s = sse_open(&f->d, "/v1/watch?prefix=slow", hdr);
    assert_int_equal(sse_status(s, 3000), 410);
    sse_close(s);
}

static const char *const few_watchers_args[] = {"--threads", "2", "--max-watchers", "3", NULL};

static int setup_few_watchers(void **state)
{
    return daemon_fixture_start(state, few_watchers_args);
}

static void test_watch_503_beyond_max_watchers(void **state)
{
    fixture_t *f = *state;
    sse_t *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = sse_open(&f->d, "/v1/watch", NULL);
        assert_int_equal(sse_status(s[i], 3000), 200);
    }
    sse_t *x = sse_open(&f->d, "/v1/watch", NULL);
    assert_int_equal(sse_status(x, 3000), 503);
    sse_close(x);
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "GET", "/v1/kv/k?wait=1&index=0", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    client_resp_free(&r);
    assert_int_equal(client_request(&f->d, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr(r.body, "sqlcached_watchers 3\n"));
    client_resp_free(&r);
    sse_close(s[0]);
    /* the closed one frees its place once the daemon notices (a keep-alive
     * write at the latest) */
    put(f, "k", "v");
    int64_t until = mono_ms() + 15000 * scale();
    long status = 0;
    while (status != 200 && mono_ms() < until) {
        x = sse_open(&f->d, "/v1/watch", NULL);
        status = sse_status(x, 3000);
        sse_close(x);
        if (status != 200)
            usleep(200000);
    }
    assert_int_equal(status, 200);
    sse_close(s[1]);
    sse_close(s[2]);
}

/* ------------------------------------------------------------------------
 * Exactly once, in order: 8 writers, 4 watchers on overlapping prefixes
 * ------------------------------------------------------------------------ */

#define WRITERS 8
#define PER_WRITER 150

typedef struct writer_arg {
    fixture_t *f;
    int id;
    int64_t versions[PER_WRITER];
    char keys[PER_WRITER][32];
} writer_arg_t;

static void *writer_main(void *arg)
{
    writer_arg_t *w = arg;
    for (int i = 0; i < PER_WRITER; i++) {
        /* prefixes: "a<id>/..." for even writers, "b<id>/..." for odd */
        snprintf(w->keys[i], sizeof w->keys[i], "%c%d/%d", w->id % 2 ? 'b' : 'a', w->id, i % 7);
        char path[64];
        snprintf(path, sizeof path, "/v1/kv/%s", w->keys[i]);
        int64_t v = 0;
        long st = i % 5 == 4 ? call(w->f, "DELETE", path, NULL, NULL)
                             : call(w->f, "PUT", path, "v", &v);
        if (i % 5 == 4)
            v = st == 204 ? -1 : 0; /* version unknown from a 204: matched by key below */
        w->versions[i] = v;
    }
    return NULL;
}

static void test_watch_exactly_once_in_order(void **state)
{
    fixture_t *f = *state;
    const char *prefixes[4] = {"", "a", "b1", "a0/"};
    sse_t *s[4];
    for (int i = 0; i < 4; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/watch?prefix=%s", prefixes[i]);
        s[i] = sse_open(&f->d, path, NULL);
        assert_int_equal(sse_status(s[i], 3000), 200);
    }
    pthread_t t[WRITERS];
    static writer_arg_t w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].f = f;
        w[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    /* every acknowledged put (version known) and delete (204) */
    int expected_all = 0;
    for (int i = 0; i < WRITERS; i++)
        for (int j = 0; j < PER_WRITER; j++)
            expected_all += w[i].versions[j] != 0;
    for (int k = 0; k < 4; k++) {
        size_t plen = strlen(prefixes[k]);
        int expected = 0;
        for (int i = 0; i < WRITERS; i++)
            for (int j = 0; j < PER_WRITER; j++)
                expected += w[i].versions[j] != 0 && strncmp(w[i].keys[j], prefixes[k], plen) == 0;
        int64_t last = 0;
        int got = 0, puts_matched = 0;
        event_t e;
        while (got < expected && sse_next(s[k], &e, 5000)) {
            assert_true(e.id > last); /* version order, no repeat */
            last = e.id;
            json_t *d = json_loads(e.data, 0, NULL);
            const char *key = json_string_value(json_object_get(d, "key"));
            assert_non_null(key);
            assert_true(strncmp(key, prefixes[k], plen) == 0);
            /* a put event carries the version its writer was given */
            for (int i = 0; strcmp(e.type, "put") == 0 && i < WRITERS; i++)
                for (int j = 0; j < PER_WRITER; j++)
                    if (w[i].versions[j] == e.id) {
                        assert_string_equal(w[i].keys[j], key);
                        puts_matched++;
                    }
            json_decref(d);
            got++;
        }
        assert_int_equal(got, expected);
        int expected_puts = 0;
        for (int i = 0; i < WRITERS; i++)
            for (int j = 0; j < PER_WRITER; j++)
                expected_puts += w[i].versions[j] > 0 &&
                                 strncmp(w[i].keys[j], prefixes[k], plen) == 0;
        assert_int_equal(puts_matched, expected_puts);
        assert_false(sse_next(s[k], &e, 300)); /* nothing more */
        sse_close(s[k]);
    }
    (void)expected_all;
}

/* ------------------------------------------------------------------------
 * 1,000 idle watchers: /healthz still answers
 * ------------------------------------------------------------------------ */

static const char *const many_watchers_args[] = {"--threads", "2", "--max-watchers", "1100", NULL};

static int setup_many_watchers(void **state)
{
    return daemon_fixture_start(state, many_watchers_args);
}

static void test_watch_1000_idle_watchers(void **state)
{
    fixture_t *f = *state;
    enum { N = 1000 };
    static sse_t *s[N];
    for (int i = 0; i < N; i++)
        s[i] = sse_open(&f->d, i % 2 ? "/v1/watch?prefix=idle" : "/v1/watch", NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(sse_status(s[i], 10000), 200);
    int64_t worst = 0, sum = 0;
    for (int i = 0; i < 20; i++) {
        int64_t t0 = mono_ms();
        client_resp_t r;
        assert_int_equal(client_request(&f->d, "GET", "/healthz", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        client_resp_free(&r);
        int64_t dt = mono_ms() - t0;
        sum += dt;
        worst = dt > worst ? dt : worst;
    }
    fprintf(stderr, "GET /healthz with %d idle watchers: mean %lld ms, worst %lld ms\n", N,
            (long long)(sum / 20), (long long)worst);
    /* a write reaches every one of them */
    int64_t v = put(f, "idle1", "x");
    for (int i = 0; i < N; i++) {
        event_t e;
        assert_true(sse_next(s[i], &e, 10000));
        assert_int_equal(e.id, v);
        sse_close(s[i]);
    }
}

/* ------------------------------------------------------------------------
 * Blocking GET
 * ------------------------------------------------------------------------ */

typedef struct later {
    fixture_t *f;
    const char *method, *path, *body;
    int delay_ms;
} later_t;

static void *later_main(void *arg)
{
    later_t *l = arg;
    usleep((useconds_t)l->delay_ms * 1000);
    call(l->f, l->method, l->path, l->body, NULL);
    return NULL;
}

/* GET path (a blocking one) while `method path body` runs after 300 ms;
 * returns the status and how long the GET took. */
static long blocking_get(fixture_t *f, const char *get_path, const char *method, const char *path,
                         const char *body, int64_t *took, int64_t *version)
{
    pthread_t t;
    later_t l = {f, method, path, body, 300};
    if (method)
        assert_int_equal(pthread_create(&t, NULL, later_main, &l), 0);
    int64_t t0 = mono_ms();
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "GET", get_path, NULL, NULL, 0, &r), 0);
    *took = mono_ms() - t0;
    long st = r.status;
    char *etag = client_header(&r, "ETag");
    *version = etag ? strtoll(etag + 1, NULL, 10) : 0;
    free(etag);
    client_resp_free(&r);
    if (method)
        pthread_join(t, NULL);
    return st;
}

static void test_blocking_get(void **state)
{
    fixture_t *f = *state;
    int64_t took, v;
    int64_t v1 = put(f, "bg", "1");
    char path[128];
    /* index differs: at once */
    assert_int_equal(blocking_get(f, "/v1/kv/bg?wait=5&index=0", NULL, NULL, NULL, &took, &v), 200);
    assert_true(took < 2000);
    assert_int_equal(v, v1);
    /* absent key, index 0 ... nothing happens: the wait runs out, 404 */
    assert_int_equal(blocking_get(f, "/v1/kv/none?wait=1&index=0", NULL, NULL, NULL, &took, &v),
                     404);
    assert_true(took >= 900);
    /* a write to another key under the same prefix does not answer */
    snprintf(path, sizeof path, "/v1/kv/bg?wait=1&index=%lld", (long long)v1);
    assert_int_equal(blocking_get(f, path, "PUT", "/v1/kv/bg2", "x", &took, &v), 200);
    assert_true(took >= 900);
    assert_int_equal(v, v1);
    /* woken by a put */
    snprintf(path, sizeof path, "/v1/kv/bg?wait=10&index=%lld", (long long)v1);
    assert_int_equal(blocking_get(f, path, "PUT", "/v1/kv/bg", "2", &took, &v), 200);
    assert_true(took >= 250 && took < 5000);
    assert_true(v > v1);
    /* by an incr */
    int64_t cur = v;
    snprintf(path, sizeof path, "/v1/kv/n?wait=10&index=0");
    assert_int_equal(blocking_get(f, path, "POST", "/v1/kv/n/incr", NULL, &took, &v), 200);
    assert_true(took >= 250 && took < 5000);
    /* by a delete */
    snprintf(path, sizeof path, "/v1/kv/bg?wait=10&index=%lld", (long long)cur);
    assert_int_equal(blocking_get(f, path, "DELETE", "/v1/kv/bg", NULL, &took, &v), 404);
    assert_true(took >= 250 && took < 5000);
    /* by a transaction */
    assert_int_equal(blocking_get(f, "/v1/kv/bg?wait=10&index=0", "POST", "/v1/txn",
                                  "{\"success\":[{\"op\":\"put\",\"key\":\"bg\",\"value\":\"t\"}]}",
                                  &took, &v),
                     200);
    assert_true(took >= 250 && took < 5000);
    cur = v;
    /* by an expiry */
    assert_int_equal(call(f, "PUT", "/v1/kv/bx?ttl=1", "e", &v), 201);
    snprintf(path, sizeof path, "/v1/kv/bx?wait=10&index=%lld", (long long)v);
    long st = blocking_get(f, path, NULL, NULL, NULL, &took, &v);
    if (st != 404)
        fprintf(stderr, "expiry: GET answered %ld after %lld ms, version %lld\n", st,
                (long long)took, (long long)v);
    assert_int_equal(st, 404);
    assert_true(took < 3500);
    fprintf(stderr, "blocking GET woken by the expiry of a 1 s key after %lld ms\n",
            (long long)took);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_watch_every_kind_of_change, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_since_and_last_event_id, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_bad_arguments, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_keep_alive, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_410_when_history_exceeded, setup_small_history,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_slow_reader, setup_small_history,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_503_beyond_max_watchers, setup_few_watchers,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_exactly_once_in_order, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_watch_1000_idle_watchers, setup_many_watchers,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_blocking_get, setup, daemon_fixture_stop),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
