/*
 * test_http_kv.c - the key-value part of the contract (CONTRACT.md,
 * api/openapi.yaml) over real HTTP against the daemon: writes, reads,
 * preconditions, expiry, counters, listing, key encoding, body limits,
 * routing, auth, restarts and start-up errors.
 *
 * Tests are grouped by the daemon flags they need; a group shares one
 * daemon (group setup/teardown) and each test uses keys of its own prefix,
 * so the file runs in seconds. Every teardown stops its daemon with SIGTERM
 * and fails unless it exits 0: under `make check-valgrind` the daemon runs
 * under `valgrind --error-exitcode=1`, so a memory error or leak in the
 * daemon fails the run (main() also counts such teardown failures, in case
 * cmocka does not report a failed group teardown in its exit status).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

#define TOKEN "s3cret-token"

typedef daemon_fixture_t fixture_t;

/* ------------------------------------------------------------------------
 * Fixtures
 * ------------------------------------------------------------------------ */

static int setup_default(void **state)
{
    return daemon_fixture_start(state, NULL);
}

static int setup_small_body(void **state)
{
    static const char *const args[] = {"--max-body", "1024", NULL};
    return daemon_fixture_start(state, args);
}

static int setup_one_worker(void **state)
{
    static const char *const args[] = {"--threads", "1", NULL};
    return daemon_fixture_start(state, args);
}

static int setup_auth(void **state)
{
    static const char *const args[] = {"--auth-token", TOKEN, NULL};
    return daemon_fixture_start(state, args);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static void sleep_ms(int64_t ms)
{
    if (ms > 0)
        usleep((useconds_t)(ms * 1000));
}

/* A request with a body given as a C string, no extra headers. */
static client_resp_t req_s(const daemon_t *d, const char *method, const char *path,
                           const char *body)
{
    return client_req(d, method, path, NULL, body, body ? strlen(body) : 0);
}

static void expect_status(const client_resp_t *r, long status)
{
    if (r->status != status)
        fail_msg("expected HTTP %ld, got %ld; body: %.400s", status, r->status, r->body);
}

/* Assert the status, then free the response. */
static void status_is(client_resp_t r, long status)
{
    long got = r.status;
    if (got != status)
        print_error("body: %.400s\n", r.body);
    client_resp_free(&r);
    assert_int_equal(got, status);
}

/* Assert a problem, then free the response. */
static void problem_is(client_resp_t r, long status, const char *code)
{
    client_assert_problem(&r, status, code);
    client_resp_free(&r);
}

/* The version in a strong ETag "<n>", n >= 1; fails the test otherwise. */
static int64_t etag_version(const client_resp_t *r)
{
    char *h = client_header(r, "ETag");
    if (!h)
        fail_msg("no ETag header");
    size_t n = strlen(h);
    char *end = NULL;
    long long v = n >= 3 && h[0] == '"' && h[n - 1] == '"' && h[1] >= '1' && h[1] <= '9'
                      ? strtoll(h + 1, &end, 10)
                      : 0;
    bool ok = v >= 1 && end == h + n - 1;
    if (!ok)
        print_error("ETag: %s\n", h);
    free(h);
    assert_true(ok);
    return v;
}

static int64_t json_int(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v))
        fail_msg("member \"%s\" is not an integer", name);
    return json_integer_value(v);
}

/* Check a PUT answer (status, ETag, {"key","version","expires_at"}) and
 * return the version. expires_at: 0 = must be null, else must be in
 * [expires_min, expires_max]. */
static int64_t check_written(const client_resp_t *r, long status, const char *key,
                             int64_t expires_min, int64_t expires_max)
{
    expect_status(r, status);
    client_header_is(r, "Content-Type", "application/json");
    int64_t v = etag_version(r);
    json_t *j = client_json(r);
    if (!j || !json_is_object(j))
        fail_msg("PUT answer is not a JSON object: %.400s", r->body);
    assert_int_equal(json_object_size(j), 3);
    json_t *k = json_object_get(j, "key");
    assert_true(json_is_string(k));
    assert_string_equal(json_string_value(k), key);
    assert_int_equal(json_int(j, "version"), v);
    json_t *e = json_object_get(j, "expires_at");
    if (expires_max == 0) {
        assert_true(json_is_null(e));
    } else {
        assert_true(json_is_integer(e));
        assert_in_range(json_integer_value(e), expires_min, expires_max);
    }
    json_decref(j);
    return v;
}

/* PUT body as text/plain; asserts the status and returns the version. */
static int64_t put_text(const daemon_t *d, const char *path, const char *body, long status)
{
    static const char *const h[] = {"Content-Type: text/plain", NULL};
    client_resp_t r = client_req(d, "PUT", path, h, body, strlen(body));
    expect_status(&r, status);
    int64_t v = etag_version(&r);
    client_resp_free(&r);
    return v;
}

/* GET path and assert 200 with exactly these bytes; returns the version. */
static int64_t get_is(const daemon_t *d, const char *path, const void *body, size_t len)
{
    client_resp_t r = client_req(d, "GET", path, NULL, NULL, 0);
    expect_status(&r, 200);
    assert_int_equal(r.body_len, len);
    assert_memory_equal(r.body, body, len);
    int64_t v = etag_version(&r);
    client_resp_free(&r);
    return v;
}

/* POST incr with body; asserts 200 and the value; returns the version. */
static int64_t incr_is(const daemon_t *d, const char *key, const char *body, int64_t want)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/kv/%s/incr", key);
    const char *h[] = {"Content-Type: application/json", NULL};
    client_resp_t r = client_req(d, "POST", path, h, body, body ? strlen(body) : 0);
    expect_status(&r, 200);
    client_header_is(&r, "Content-Type", "application/json");
    json_t *j = client_json(&r);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 3);
    assert_string_equal(json_string_value(json_object_get(j, "key")), key);
    assert_int_equal(json_int(j, "value"), want);
    int64_t v = json_int(j, "version");
    assert_int_equal(etag_version(&r), v);
    json_decref(j);
    client_resp_free(&r);
    return v;
}

/* The keys of one list page (a JSON array the caller decrefs) and next
 * (malloc'd, NULL when null). */
static json_t *list_page(const daemon_t *d, const char *query, char **next)
{
    char path[1024];
    snprintf(path, sizeof path, "/v1/kv?%s", query);
    client_resp_t r = client_req(d, "GET", path, NULL, NULL, 0);
    expect_status(&r, 200);
    client_header_is(&r, "Content-Type", "application/json");
    json_t *j = client_json(&r);
    client_resp_free(&r);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 2);
    json_t *keys = json_object_get(j, "keys"), *n = json_object_get(j, "next");
    assert_true(json_is_array(keys));
    assert_true(json_is_null(n) || json_is_string(n));
    *next = json_is_string(n) ? strdup(json_string_value(n)) : NULL;
    json_incref(keys);
    json_decref(j);
    return keys;
}

/* Assert a page holds exactly the keys in want (NULL-terminated). */
static void keys_are(json_t *keys, const char *const want[])
{
    size_t n = 0;
    while (want[n])
        n++;
    if (json_array_size(keys) != n) {
        char *s = json_dumps(keys, 0);
        print_error("keys: %s\n", s ? s : "?");
        free(s);
    }
    assert_int_equal(json_array_size(keys), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(keys, i)), want[i]);
}

/* The Allow header as a sorted comma-separated list without spaces. */
static void allow_is(const client_resp_t *r, const char *sorted)
{
    char *h = client_header(r, "Allow");
    if (!h)
        fail_msg("no Allow header");
    char *items[8];
    int n = 0;
    for (char *save, *tok = strtok_r(h, ", ", &save); tok && n < 8;
         tok = strtok_r(NULL, ", ", &save))
        items[n++] = tok;
    for (int i = 1; i < n; i++) /* insertion sort: a handful of methods */
        for (int j = i; j > 0 && strcmp(items[j - 1], items[j]) > 0; j--) {
            char *t = items[j];
            items[j] = items[j - 1];
            items[j - 1] = t;
        }
    char joined[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? "," : "",
                 items[i]);
    free(h);
    assert_string_equal(joined, sorted);
}

/* ------------------------------------------------------------------------
 * PUT and GET
 * ------------------------------------------------------------------------ */

static void test_http_kv_put_created_then_replaced(void **state)
{
    fixture_t *f = *state;
    static const char *const h[] = {"Content-Type: text/plain", NULL};
    client_resp_t r = client_req(&f->d, "PUT", "/v1/kv/put:a", h, "one", 3);
    int64_t v1 = check_written(&r, 201, "put:a", 0, 0);
    client_resp_free(&r);

    r = client_req(&f->d, "PUT", "/v1/kv/put:a", h, "two", 3);
    int64_t v2 = check_written(&r, 200, "put:a", 0, 0);
    client_resp_free(&r);
    assert_true(v2 > v1);
    assert_int_equal(get_is(&f->d, "/v1/kv/put:a", "two", 3), v2);

    /* unknown query parameters are ignored */
    r = client_req(&f->d, "PUT", "/v1/kv/put:q?colour=blue&ttl2=0", h, "q", 1);
    check_written(&r, 201, "put:q", 0, 0);
    client_resp_free(&r);
    get_is(&f->d, "/v1/kv/put:q?colour=blue", "q", 1);
}

static void test_http_kv_content_type_verbatim(void **state)
{
    fixture_t *f = *state;
    const char *json_ct[] = {"Content-Type: application/json; charset=utf-8", NULL};
    const char *odd_ct[] = {"Content-Type: Text/X-Odd;Param=\"A b\"", NULL};
    const char *no_ct[] = {"Content-Type:", NULL};    /* libcurl: send no Content-Type */
    const char *empty_ct[] = {"Content-Type;", NULL}; /* libcurl: send it empty */
    status_is(client_req(&f->d, "PUT", "/v1/kv/ct:json", json_ct, "{}", 2), 201);
    status_is(client_req(&f->d, "PUT", "/v1/kv/ct:odd", odd_ct, "x", 1), 201);
    status_is(client_req(&f->d, "PUT", "/v1/kv/ct:none", no_ct, "x", 1), 201);
    status_is(client_req(&f->d, "PUT", "/v1/kv/ct:empty", empty_ct, "x", 1), 201);
    static const struct {
        const char *path, *ct;
    } want[] = {
        {"/v1/kv/ct:json", "application/json; charset=utf-8"},
        {"/v1/kv/ct:odd", "Text/X-Odd;Param=\"A b\""},
        {"/v1/kv/ct:none", "application/octet-stream"},
        {"/v1/kv/ct:empty", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        client_resp_t r = client_req(&f->d, "GET", want[i].path, NULL, NULL, 0);
        expect_status(&r, 200);
        client_header_is(&r, "Content-Type", want[i].ct);
        client_resp_free(&r);
    }
    /* 255 bytes of Content-Type are stored, 256 are refused */
    char hdr[300];
    int n = snprintf(hdr, sizeof hdr, "Content-Type: application/x-");
    memset(hdr + n, 'z', 255 - strlen("application/x-"));
    hdr[n + 255 - strlen("application/x-")] = '\0';
    const char *long_ct[] = {hdr, NULL};
    status_is(client_req(&f->d, "PUT", "/v1/kv/ct:long", long_ct, "x", 1), 201);
    strcat(hdr, "z");
    problem_is(client_req(&f->d, "PUT", "/v1/kv/ct:long2", long_ct, "x", 1), 400,
               "invalid_argument");
    status_is(client_req(&f->d, "GET", "/v1/kv/ct:long2", NULL, NULL, 0), 404);
}

static void test_http_kv_value_bytes_verbatim(void **state)
{
    fixture_t *f = *state;
    static const char bin[] = {'a', '\0', 'b', (char)0xff, (char)0xfe, '\r', '\n', 0};
    const char *no_ct[] = {"Content-Type:", NULL};
    status_is(client_req(&f->d, "PUT", "/v1/kv/bytes:bin", no_ct, bin, sizeof bin), 201);
    get_is(&f->d, "/v1/kv/bytes:bin", bin, sizeof bin);
    status_is(client_req(&f->d, "PUT", "/v1/kv/bytes:empty", no_ct, "", 0), 201);
    get_is(&f->d, "/v1/kv/bytes:empty", "", 0);
    char big[64 * 1024];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 31 + 7);
    status_is(client_req(&f->d, "PUT", "/v1/kv/bytes:big", no_ct, big, sizeof big), 201);
    get_is(&f->d, "/v1/kv/bytes:big", big, sizeof big);
}

static void test_http_kv_get_etag_and_cache_header(void **state)
{
    fixture_t *f = *state;
    problem_is(client_req(&f->d, "GET", "/v1/kv/get:absent", NULL, NULL, 0), 404, "not_found");
    int64_t v = put_text(&f->d, "/v1/kv/get:a", "value", 201);
    for (int i = 0; i < 2; i++) { /* first and repeated read */
        client_resp_t r = client_req(&f->d, "GET", "/v1/kv/get:a", NULL, NULL, 0);
        expect_status(&r, 200);
        assert_string_equal(r.body, "value");
        client_header_is(&r, "Content-Type", "text/plain");
        assert_int_equal(etag_version(&r), v);
        char *xc = client_header(&r, "X-Cache");
        assert_non_null(xc);
        bool ok = strcmp(xc, "HIT") == 0 || strcmp(xc, "MISS") == 0;
        free(xc);
        client_resp_free(&r);
        assert_true(ok);
    }
}

static void test_http_kv_get_if_none_match(void **state)
{
    fixture_t *f = *state;
    int64_t v = put_text(&f->d, "/v1/kv/inm:a", "first", 201);
    char same[64], weak[64], list[64], other[64], bare[64];
    snprintf(same, sizeof same, "If-None-Match: \"%lld\"", (long long)v);
    snprintf(weak, sizeof weak, "If-None-Match: W/\"%lld\"", (long long)v);
    snprintf(list, sizeof list, "If-None-Match: \"1000000\", \"%lld\"", (long long)v);
    snprintf(other, sizeof other, "If-None-Match: \"%lld\"", (long long)v + 1000000);
    snprintf(bare, sizeof bare, "If-None-Match: %lld", (long long)v);
    const char *const matching[] = {same, weak, list, "If-None-Match: *"};
    for (size_t i = 0; i < 4; i++) {
        const char *h[] = {matching[i], NULL};
        client_resp_t r = client_req(&f->d, "GET", "/v1/kv/inm:a", h, NULL, 0);
        expect_status(&r, 304);
        assert_int_equal(r.body_len, 0);
        assert_int_equal(etag_version(&r), v);
        char *xc = client_header(&r, "X-Cache");
        assert_non_null(xc);
        free(xc);
        client_resp_free(&r);
    }
    const char *h_other[] = {other, NULL};
    client_resp_t r = client_req(&f->d, "GET", "/v1/kv/inm:a", h_other, NULL, 0);
    expect_status(&r, 200);
    assert_string_equal(r.body, "first");
    client_resp_free(&r);

    /* after a write the old tag no longer matches: the new value comes back */
    int64_t v2 = put_text(&f->d, "/v1/kv/inm:a", "second", 200);
    const char *h_same[] = {same, NULL};
    r = client_req(&f->d, "GET", "/v1/kv/inm:a", h_same, NULL, 0);
    expect_status(&r, 200);
    assert_string_equal(r.body, "second");
    assert_int_equal(etag_version(&r), v2);
    client_resp_free(&r);

    const char *h_bare[] = {bare, NULL};
    problem_is(client_req(&f->d, "GET", "/v1/kv/inm:a", h_bare, NULL, 0), 400, "invalid_argument");
    const char *h_absent[] = {"If-None-Match: *", NULL};
    problem_is(client_req(&f->d, "GET", "/v1/kv/inm:absent", h_absent, NULL, 0), 404, "not_found");
}

/* Once a write is answered, no later GET returns an older state, whether
 * the memory tier answers or not (absent keys are remembered too). */
static void test_http_kv_no_stale_reads(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 2; i++) /* a miss, then maybe a remembered miss */
        status_is(client_req(&f->d, "GET", "/v1/kv/fresh:a", NULL, NULL, 0), 404);
    int64_t v = put_text(&f->d, "/v1/kv/fresh:a", "one", 201);
    for (int i = 0; i < 2; i++) /* the fill, then maybe a hit */
        assert_int_equal(get_is(&f->d, "/v1/kv/fresh:a", "one", 3), v);
    v = put_text(&f->d, "/v1/kv/fresh:a", "two", 200);
    assert_int_equal(get_is(&f->d, "/v1/kv/fresh:a", "two", 3), v);
    v = incr_is(&f->d, "fresh:n", NULL, 1);
    assert_int_equal(get_is(&f->d, "/v1/kv/fresh:n", "1", 1), v);
    v = incr_is(&f->d, "fresh:n", NULL, 2);
    assert_int_equal(get_is(&f->d, "/v1/kv/fresh:n", "2", 1), v);
    status_is(client_req(&f->d, "DELETE", "/v1/kv/fresh:a", NULL, NULL, 0), 204);
    status_is(client_req(&f->d, "GET", "/v1/kv/fresh:a", NULL, NULL, 0), 404);
    v = put_text(&f->d, "/v1/kv/fresh:a", "three", 201);
    assert_int_equal(get_is(&f->d, "/v1/kv/fresh:a", "three", 5), v);
}

/* GET hits reuse the reply a worker thread built for the same tier entry
 * (src/http_hits.c): more keys than its table has slots (so slots are
 * taken over), each rewritten between reads with another Content-Type,
 * and a value over the size it keeps. Every read must carry the bytes,
 * type and version of the last write, never a kept older reply. */
static void test_http_kv_kept_hit_replies(void **state)
{
    fixture_t *f = *state;
    enum { KEYS = 150, ROUNDS = 3 };
    static const char *const types[] = {"text/plain", "application/json"};
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < KEYS; k++) {
            char path[64], body[64], ct[64];
            snprintf(path, sizeof path, "/v1/kv/kept:%d", k);
            int len = snprintf(body, sizeof body, "\"r%d-k%d\"", round, k);
            snprintf(ct, sizeof ct, "Content-Type: %s", types[(round + k) % 2]);
            const char *h[] = {ct, NULL};
            client_resp_t w = client_req(&f->d, "PUT", path, h, body, (size_t)len);
            expect_status(&w, round == 0 ? 201 : 200);
            int64_t v = etag_version(&w);
            client_resp_free(&w);
            for (int i = 0; i < 2; i++) {
                client_resp_t r = client_req(&f->d, "GET", path, NULL, NULL, 0);
                expect_status(&r, 200);
                assert_int_equal(r.body_len, (size_t)len);
                assert_memory_equal(r.body, body, (size_t)len);
                assert_int_equal(etag_version(&r), v);
                client_header_is(&r, "Content-Type", types[(round + k) % 2]);
                if (i == 1)
                    client_header_is(&r, "X-Cache", "HIT");
                client_resp_free(&r);
            }
        }
    }
    static char big[80 * 1024]; /* over what a worker keeps */
    for (int round = 0; round < 2; round++) {
        memset(big, 'a' + round, sizeof big);
        const char *h[] = {"Content-Type: application/octet-stream", NULL};
        status_is(client_req(&f->d, "PUT", "/v1/kv/kept:big", h, big, sizeof big),
                  round == 0 ? 201 : 200);
        for (int i = 0; i < 2; i++)
            get_is(&f->d, "/v1/kv/kept:big", big, sizeof big);
    }
}

/* ------------------------------------------------------------------------
 * TTL
 * ------------------------------------------------------------------------ */

static void test_http_kv_ttl_rejected(void **state)
{
    fixture_t *f = *state;
    static const char *const bad[] = {
        "ttl=0",
        "ttl=-1",
        "ttl=abc",
        "ttl=1.5",
        "ttl=",
        "ttl",
        "ttl=1e3",
        "ttl=%201",
        "ttl=1%20",
        "ttl=+1",
        "ttl=99999999999999999999",
        "ttl=2147483648",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/kv/ttlbad:%zu?%s", i, bad[i]);
        client_resp_t r = req_s(&f->d, "PUT", path, "x");
        if (r.status != 400)
            print_error("?%s\n", bad[i]);
        problem_is(r, 400, "invalid_argument");
        snprintf(path, sizeof path, "/v1/kv/ttlbad:%zu", i);
        status_is(client_req(&f->d, "GET", path, NULL, NULL, 0), 404);
    }
    /* the largest accepted TTL */
    status_is(req_s(&f->d, "PUT", "/v1/kv/ttlbad:max?ttl=2147483647", "x"), 201);
}

static void test_http_kv_ttl_expiry(void **state)
{
    fixture_t *f = *state;
    static const char *const keys[] = {"get", "put", "ifmatch", "delete", "incr", "ifnone"};
    const size_t nkeys = sizeof keys / sizeof keys[0];
    int64_t versions[6], expires = 0;
    static const char *const h[] = {"Content-Type: text/plain", NULL};
    for (size_t i = 0; i < nkeys; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/kv/exp:%s?ttl=1", keys[i]);
        int64_t before = testutil_wall_ms();
        client_resp_t r = client_req(&f->d, "PUT", path, h, "5", 1);
        int64_t after = testutil_wall_ms();
        char key[32];
        snprintf(key, sizeof key, "exp:%s", keys[i]);
        versions[i] = check_written(&r, 201, key, before + 1000, after + 1000);
        json_t *j = client_json(&r);
        int64_t e = json_int(j, "expires_at");
        json_decref(j);
        client_resp_free(&r);
        expires = e > expires ? e : expires;
    }
    /* a long TTL reports its expiry; a PUT without ttl clears the expiry */
    int64_t before = testutil_wall_ms();
    client_resp_t r = client_req(&f->d, "PUT", "/v1/kv/exp:long?ttl=3600", h, "x", 1);
    check_written(&r, 201, "exp:long", before + 3600000, testutil_wall_ms() + 3600000);
    client_resp_free(&r);
    status_is(client_req(&f->d, "PUT", "/v1/kv/exp:cleared?ttl=1", h, "x", 1), 201);
    r = client_req(&f->d, "PUT", "/v1/kv/exp:cleared", h, "y", 1);
    check_written(&r, 200, "exp:cleared", 0, 0);
    client_resp_free(&r);

    if (testutil_wall_ms() < expires - 200) /* still live (unless this machine is very slow) */
        status_is(client_req(&f->d, "GET", "/v1/kv/exp:get", NULL, NULL, 0), 200);

    sleep_ms(expires + 100 - testutil_wall_ms()); /* ~1.1 s */

    problem_is(client_req(&f->d, "GET", "/v1/kv/exp:get", NULL, NULL, 0), 404, "not_found");
    char *next;
    json_t *page = list_page(&f->d, "prefix=exp:", &next);
    keys_are(page, (const char *const[]){"exp:cleared", "exp:long", NULL});
    json_decref(page);
    free(next);
    get_is(&f->d, "/v1/kv/exp:cleared", "y", 1);

    /* an expired key is absent for every call */
    status_is(client_req(&f->d, "PUT", "/v1/kv/exp:put", h, "new", 3), 201);
    char im[64];
    snprintf(im, sizeof im, "If-Match: \"%lld\"", (long long)versions[2]);
    const char *h_im[] = {im, NULL};
    problem_is(client_req(&f->d, "PUT", "/v1/kv/exp:ifmatch", h_im, "x", 1), 412,
               "precondition_failed");
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/exp:delete", NULL, NULL, 0), 404, "not_found");
    r = req_s(&f->d, "POST", "/v1/kv/exp:incr/incr", NULL);
    expect_status(&r, 200);
    json_t *j = client_json(&r);
    assert_int_equal(json_int(j, "value"), 1); /* counted from 0, not from the expired 5 */
    json_decref(j);
    client_resp_free(&r);
    const char *h_nx[] = {"If-None-Match: *", NULL};
    status_is(client_req(&f->d, "PUT", "/v1/kv/exp:ifnone", h_nx, "x", 1), 201);
}

/* ------------------------------------------------------------------------
 * Sessions and one-time values: sliding expiry, read-and-delete, PATCH
 * ------------------------------------------------------------------------ */

/* Is key listed among the live keys (a listing does not slide)? */
static bool key_listed(const daemon_t *d, const char *key)
{
    char query[128], *next = NULL;
    snprintf(query, sizeof query, "prefix=%s", key);
    json_t *page = list_page(d, query, &next);
    bool found = false;
    for (size_t i = 0; i < json_array_size(page); i++)
        found |= strcmp(json_string_value(json_array_get(page, i)), key) == 0;
    json_decref(page);
    free(next);
    return found;
}

static void test_http_kv_sliding_real_time(void **state)
{
    fixture_t *f = *state;
    static const char *const h[] = {"Content-Type: text/plain", NULL};
    /* ttl 2 s: expires within [2 s, 3 s] after the last read or write */
    int64_t before = testutil_wall_ms();
    client_resp_t r = client_req(&f->d, "PUT", "/v1/kv/slide:s?ttl=2&sliding=true", h, "tok", 3);
    int64_t v = check_written(&r, 201, "slide:s", before + 2000, testutil_wall_ms() + 2000);
    client_resp_free(&r);
    /* reads 600 ms apart for 4.2 s (twice the TTL), GET 200 and 304 alike */
    char inm[64];
    snprintf(inm, sizeof inm, "If-None-Match: \"%lld\"", (long long)v);
    const char *h_inm[] = {inm, NULL};
    int64_t sent = 0, answered = 0; /* around the last read */
    for (int i = 0; i < 7; i++) {
        sleep_ms(600);
        sent = testutil_wall_ms();
        if (i % 2)
            get_is(&f->d, "/v1/kv/slide:s", "tok", 3);
        else
            status_is(client_req(&f->d, "GET", "/v1/kv/slide:s", h_inm, NULL, 0), 304);
        answered = testutil_wall_ms();
    }
    /* no more reads: still there 1.5 s after the last (a plain TTL of 2 s
     * from the PUT would be long gone), gone 3 s + margin after it */
    sleep_ms(sent + 1500 - testutil_wall_ms());
    if (testutil_wall_ms() < sent + 1900)
        assert_true(key_listed(&f->d, "slide:s"));
    sleep_ms(answered + 3300 - testutil_wall_ms());
    assert_false(key_listed(&f->d, "slide:s"));
    problem_is(client_req(&f->d, "GET", "/v1/kv/slide:s", NULL, NULL, 0), 404, "not_found");
}

static void test_http_kv_sliding_rejected(void **state)
{
    fixture_t *f = *state;
    problem_is(req_s(&f->d, "PUT", "/v1/kv/slide:bad?sliding=true", "x"), 400, "invalid_argument");
    problem_is(req_s(&f->d, "PUT", "/v1/kv/slide:bad?ttl=5&sliding=yes", "x"), 400,
               "invalid_argument");
    problem_is(req_s(&f->d, "PUT", "/v1/kv/slide:bad?ttl=5&sliding=", "x"), 400,
               "invalid_argument");
    static const char *const mp[] = {"Content-Type: application/merge-patch+json", NULL};
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/slide:bad?sliding=true", mp, "{}", 2), 400,
               "invalid_argument");
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/slide:bad?ttl=0", mp, "{}", 2), 400,
               "invalid_argument");
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/slide:bad?ttl=5&sliding=1", mp, "{}", 2), 400,
               "invalid_argument");
    const char *h_bad_if[] = {mp[0], "If-Match: 7", NULL};
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/slide:bad", h_bad_if, "{}", 2), 400,
               "invalid_argument");
    status_is(client_req(&f->d, "GET", "/v1/kv/slide:bad", NULL, NULL, 0), 404);
    int64_t before = testutil_wall_ms();
    client_resp_t r = req_s(&f->d, "PUT", "/v1/kv/slide:ok?ttl=5&sliding=false", "x");
    check_written(&r, 201, "slide:ok", before + 5000, testutil_wall_ms() + 5000);
    client_resp_free(&r);
}

static const char *const PREFER[] = {"Prefer: return=representation", NULL};

static void test_http_kv_read_and_delete(void **state)
{
    fixture_t *f = *state;
    int64_t v = put_text(&f->d, "/v1/kv/otp:a", "123456", 201);
    /* If-Match as for DELETE */
    char im[64];
    snprintf(im, sizeof im, "If-Match: \"%lld\"", (long long)v + 1);
    const char *h_wrong[] = {"Prefer: return=representation", im, NULL};
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/otp:a", h_wrong, NULL, 0), 412,
               "precondition_failed");
    snprintf(im, sizeof im, "If-Match: \"%lld\"", (long long)v);
    const char *h_right[] = {"Prefer: return=representation", im, NULL};
    client_resp_t r = client_req(&f->d, "DELETE", "/v1/kv/otp:a", h_right, NULL, 0);
    expect_status(&r, 200);
    assert_int_equal(r.body_len, 6);
    assert_memory_equal(r.body, "123456", 6);
    client_header_is(&r, "Content-Type", "text/plain");
    client_header_is(&r, "Preference-Applied", "return=representation");
    assert_int_equal(etag_version(&r), v);
    client_resp_free(&r);
    problem_is(client_req(&f->d, "GET", "/v1/kv/otp:a", NULL, NULL, 0), 404, "not_found");
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/otp:a", PREFER, NULL, 0), 404, "not_found");
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/otp:a", h_right, NULL, 0), 412,
               "precondition_failed");
    /* among other preferences; other values of return are plain deletes */
    put_text(&f->d, "/v1/kv/otp:b", "b", 201);
    const char *h_list[] = {"Prefer: respond-async, return=representation; x=1", NULL};
    r = client_req(&f->d, "DELETE", "/v1/kv/otp:b", h_list, NULL, 0);
    expect_status(&r, 200);
    client_header_is(&r, "Preference-Applied", "return=representation");
    client_resp_free(&r);
    put_text(&f->d, "/v1/kv/otp:c", "c", 201);
    const char *h_min[] = {"Prefer: return=minimal", NULL};
    r = client_req(&f->d, "DELETE", "/v1/kv/otp:c", h_min, NULL, 0);
    expect_status(&r, 204);
    char *applied = client_header(&r, "Preference-Applied");
    assert_null(applied);
    client_resp_free(&r);
    /* binary bytes with the stored content type */
    static const char bin[] = {'\0', '\xff', 'x'};
    const char *h_bin[] = {"Content-Type: application/x-bin", NULL};
    status_is(client_req(&f->d, "PUT", "/v1/kv/otp:bin", h_bin, bin, sizeof bin), 201);
    r = client_req(&f->d, "DELETE", "/v1/kv/otp:bin", PREFER, NULL, 0);
    expect_status(&r, 200);
    assert_int_equal(r.body_len, sizeof bin);
    assert_memory_equal(r.body, bin, sizeof bin);
    client_header_is(&r, "Content-Type", "application/x-bin");
    client_resp_free(&r);
}

enum { TAKERS = 16 };

typedef struct http_taker {
    const daemon_t *d;
    pthread_barrier_t *go;
    long status;
} http_taker_t;

static void *http_take(void *arg)
{
    http_taker_t *t = arg;
    pthread_barrier_wait(t->go);
    client_resp_t r;
    t->status =
        client_request(t->d, "DELETE", "/v1/kv/otp:race", PREFER, NULL, 0, &r) == 0 ? r.status : -1;
    client_resp_free(&r);
    return NULL;
}

static void test_http_kv_read_and_delete_one_winner(void **state)
{
    fixture_t *f = *state;
    for (int round = 0; round < 5; round++) {
        put_text(&f->d, "/v1/kv/otp:race", "code", 201);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, TAKERS);
        http_taker_t t[TAKERS];
        pthread_t th[TAKERS];
        for (int i = 0; i < TAKERS; i++) {
            t[i] = (http_taker_t){&f->d, &go, 0};
            assert_int_equal(pthread_create(&th[i], NULL, http_take, &t[i]), 0);
        }
        int ok = 0, gone = 0;
        for (int i = 0; i < TAKERS; i++) {
            pthread_join(th[i], NULL);
            ok += t[i].status == 200;
            gone += t[i].status == 404;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(ok, 1);
        assert_int_equal(gone, TAKERS - 1);
    }
}

static const char *const MERGE[] = {"Content-Type: application/merge-patch+json", NULL};

/* PATCH path with body as a merge patch: the status; the version in *v. */
static long patch_status(const daemon_t *d, const char *path, const char *body, int64_t *v)
{
    client_resp_t r = client_req(d, "PATCH", path, MERGE, body, strlen(body));
    long s = r.status;
    if (v && (s == 200 || s == 201))
        *v = etag_version(&r);
    client_resp_free(&r);
    return s;
}

/* GET path: 200, application/json, exactly `json`. */
static void json_is(const daemon_t *d, const char *path, const char *json)
{
    client_resp_t r = client_req(d, "GET", path, NULL, NULL, 0);
    expect_status(&r, 200);
    client_header_is(&r, "Content-Type", "application/json");
    if (r.body_len != strlen(json) || memcmp(r.body, json, r.body_len) != 0)
        fail_msg("GET %s: %.*s, want %s", path, (int)r.body_len, r.body, json);
    client_resp_free(&r);
}

static void test_http_kv_patch(void **state)
{
    fixture_t *f = *state;
    /* created from {} (201), then merged (200) */
    client_resp_t r =
        client_req(&f->d, "PATCH", "/v1/kv/pat:u", MERGE, "{\"a\":1,\"b\":{\"c\":2}}", 19);
    int64_t v1 = check_written(&r, 201, "pat:u", 0, 0);
    client_resp_free(&r);
    json_is(&f->d, "/v1/kv/pat:u", "{\"a\":1,\"b\":{\"c\":2}}");
    int64_t v2;
    assert_int_equal(patch_status(&f->d, "/v1/kv/pat:u", "{\"b\":{\"d\":3,\"c\":null},\"a\":null}",
                                  &v2),
                     200);
    assert_true(v2 > v1);
    json_is(&f->d, "/v1/kv/pat:u", "{\"b\":{\"d\":3}}");
    /* media types: parameters allowed, anything else 415 */
    const char *h_cs[] = {"Content-Type: Application/Merge-Patch+JSON; charset=utf-8", NULL};
    status_is(client_req(&f->d, "PATCH", "/v1/kv/pat:u", h_cs, "{\"e\":true}", 10), 200);
    const char *h_json[] = {"Content-Type: application/json", NULL};
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:u", h_json, "{}", 2), 415,
               "unsupported_media_type");
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:u", NULL, "{}", 2), 415,
               "unsupported_media_type");
    /* If-Match / If-None-Match as for PUT */
    char im[64];
    snprintf(im, sizeof im, "If-Match: \"%lld\"", (long long)v1);
    const char *h_stale[] = {MERGE[0], im, NULL};
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:u", h_stale, "{\"x\":1}", 7), 412,
               "precondition_failed");
    const char *h_nx[] = {MERGE[0], "If-None-Match: *", NULL};
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:u", h_nx, "{\"x\":1}", 7), 412,
               "precondition_failed");
    status_is(client_req(&f->d, "PATCH", "/v1/kv/pat:new", h_nx, "{\"x\":1}", 7), 201);
    json_is(&f->d, "/v1/kv/pat:u", "{\"b\":{\"d\":3},\"e\":true}");
    /* the stored value must be a JSON object */
    put_text(&f->d, "/v1/kv/pat:text", "hello", 201);
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:text", MERGE, "{\"a\":1}", 7), 409,
               "not_json");
    put_text(&f->d, "/v1/kv/pat:arr", "[1]", 201);
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:arr", MERGE, "{\"a\":1}", 7), 409,
               "not_json");
    get_is(&f->d, "/v1/kv/pat:text", "hello", 5);
    /* bodies: not JSON, too deep (400000 levels: never a stack overflow) */
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:u", MERGE, "{\"a\":", 5), 400,
               "invalid_json");
    enum { DEEP = 400000 }; /* under --max-body */
    char *deep = malloc(2 * DEEP);
    memset(deep, '[', DEEP);
    memset(deep + DEEP, ']', DEEP);
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:u", MERGE, deep, 2 * DEEP), 400,
               "invalid_json");
    char *nest = malloc(6 * 70 + 3), *p = nest;
    for (int i = 0; i < 65; i++) /* 65 levels */
        p += sprintf(p, "{\"a\":");
    p += sprintf(p, "1");
    for (int i = 0; i < 65; i++)
        *p++ = '}';
    *p = '\0';
    problem_is(client_req(&f->d, "PATCH", "/v1/kv/pat:deep", MERGE, nest, strlen(nest)), 400,
               "invalid_json");
    nest[strlen(nest) - 1] = '\0';
    assert_int_equal(patch_status(&f->d, "/v1/kv/pat:deep", nest + 5, NULL), 201); /* 64 */
    free(deep);
    free(nest);
    json_is(&f->d, "/v1/kv/pat:u", "{\"b\":{\"d\":3},\"e\":true}");
    /* the expiry is kept unless ?ttl= is given */
    int64_t before = testutil_wall_ms();
    status_is(client_req(&f->d, "PUT", "/v1/kv/pat:ttl?ttl=100", h_json, "{}", 2), 201);
    r = client_req(&f->d, "PATCH", "/v1/kv/pat:ttl", MERGE, "{\"a\":1}", 7);
    check_written(&r, 200, "pat:ttl", before + 100000, testutil_wall_ms() + 100000);
    client_resp_free(&r);
    before = testutil_wall_ms();
    r = client_req(&f->d, "PATCH", "/v1/kv/pat:ttl?ttl=3600", MERGE, "{\"a\":2}", 7);
    check_written(&r, 200, "pat:ttl", before + 3600000, testutil_wall_ms() + 3600000);
    client_resp_free(&r);
}

enum { PATCHERS = 50 };

typedef struct http_patcher {
    const daemon_t *d;
    pthread_barrier_t *go;
    int id;
    long status;
} http_patcher_t;

static void *http_patch_member(void *arg)
{
    http_patcher_t *p = arg;
    char body[64];
    snprintf(body, sizeof body, "{\"m%d\":%d}", p->id, p->id);
    pthread_barrier_wait(p->go);
    client_resp_t r;
    p->status = client_request(p->d, "PATCH", "/v1/kv/pat:h", MERGE, body, strlen(body), &r) == 0
                    ? r.status
                    : -1;
    client_resp_free(&r);
    return NULL;
}

static void test_http_kv_concurrent_patches(void **state)
{
    fixture_t *f = *state;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, PATCHERS);
    http_patcher_t p[PATCHERS];
    pthread_t th[PATCHERS];
    for (int i = 0; i < PATCHERS; i++) {
        p[i] = (http_patcher_t){&f->d, &go, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, http_patch_member, &p[i]), 0);
    }
    int created = 0;
    for (int i = 0; i < PATCHERS; i++) {
        pthread_join(th[i], NULL);
        assert_true(p[i].status == 200 || p[i].status == 201);
        created += p[i].status == 201;
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(created, 1);
    client_resp_t r = client_req(&f->d, "GET", "/v1/kv/pat:h", NULL, NULL, 0);
    expect_status(&r, 200);
    json_t *j = client_json(&r);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), PATCHERS);
    for (int i = 0; i < PATCHERS; i++) {
        char m[16];
        snprintf(m, sizeof m, "m%d", i);
        assert_int_equal(json_integer_value(json_object_get(j, m)), i);
    }
    json_decref(j);
    client_resp_free(&r);
}

/* ------------------------------------------------------------------------
 * Conditional writes
 * ------------------------------------------------------------------------ */

static void test_http_kv_put_if_match(void **state)
{
    fixture_t *f = *state;
    int64_t v1 = put_text(&f->d, "/v1/kv/im:a", "v1", 201);
    char hv1[64];
    snprintf(hv1, sizeof hv1, "If-Match: \"%lld\"", (long long)v1);
    const char *h1[] = {hv1, "Content-Type: text/plain", NULL};
    client_resp_t r = client_req(&f->d, "PUT", "/v1/kv/im:a", h1, "v2", 2);
    int64_t v2 = check_written(&r, 200, "im:a", 0, 0);
    client_resp_free(&r);

    /* stale tag: refused, nothing written */
    problem_is(client_req(&f->d, "PUT", "/v1/kv/im:a", h1, "v3", 2), 412, "precondition_failed");
    assert_int_equal(get_is(&f->d, "/v1/kv/im:a", "v2", 2), v2);

    /* a list naming the current version */
    char hl[96];
    snprintf(hl, sizeof hl, "If-Match: \"999999999\", \"%lld\"", (long long)v2);
    const char *h_list[] = {hl, NULL};
    r = client_req(&f->d, "PUT", "/v1/kv/im:a", h_list, "v3", 2);
    int64_t v3 = check_written(&r, 200, "im:a", 0, 0);
    client_resp_free(&r);

    /* a weak tag never matches; an unquoted one is malformed */
    char hw[64], hb[64];
    snprintf(hw, sizeof hw, "If-Match: W/\"%lld\"", (long long)v3);
    snprintf(hb, sizeof hb, "If-Match: %lld", (long long)v3);
    const char *h_weak[] = {hw, NULL}, *h_bare[] = {hb, NULL};
    problem_is(client_req(&f->d, "PUT", "/v1/kv/im:a", h_weak, "x", 1), 412, "precondition_failed");
    problem_is(client_req(&f->d, "PUT", "/v1/kv/im:a", h_bare, "x", 1), 400, "invalid_argument");
    const char *h_junk[] = {"If-Match: \"abc\"", NULL};
    problem_is(client_req(&f->d, "PUT", "/v1/kv/im:a", h_junk, "x", 1), 400, "invalid_argument");
    assert_int_equal(get_is(&f->d, "/v1/kv/im:a", "v3", 2), v3);

    /* If-Match: * needs the key to exist */
    const char *h_star[] = {"If-Match: *", NULL};
    status_is(client_req(&f->d, "PUT", "/v1/kv/im:a", h_star, "v4", 2), 200);
    problem_is(client_req(&f->d, "PUT", "/v1/kv/im:absent", h_star, "x", 1), 412,
               "precondition_failed");
    problem_is(client_req(&f->d, "PUT", "/v1/kv/im:absent", h1, "x", 1), 412,
               "precondition_failed");
    status_is(client_req(&f->d, "GET", "/v1/kv/im:absent", NULL, NULL, 0), 404);
}

static void test_http_kv_put_if_none_match(void **state)
{
    fixture_t *f = *state;
    const char *nx[] = {"If-None-Match: *", "Content-Type: text/plain", NULL};
    client_resp_t r = client_req(&f->d, "PUT", "/v1/kv/nx:a", nx, "first", 5);
    int64_t v = check_written(&r, 201, "nx:a", 0, 0);
    client_resp_free(&r);
    problem_is(client_req(&f->d, "PUT", "/v1/kv/nx:a", nx, "second", 6), 412,
               "precondition_failed");
    assert_int_equal(get_is(&f->d, "/v1/kv/nx:a", "first", 5), v);

    /* If-None-Match with tags: write unless the current version is listed */
    char hs[64], ho[64];
    snprintf(hs, sizeof hs, "If-None-Match: \"%lld\"", (long long)v);
    snprintf(ho, sizeof ho, "If-None-Match: \"%lld\"", (long long)v + 1000000);
    const char *h_same[] = {hs, NULL}, *h_other[] = {ho, NULL};
    problem_is(client_req(&f->d, "PUT", "/v1/kv/nx:a", h_same, "x", 1), 412, "precondition_failed");
    status_is(client_req(&f->d, "PUT", "/v1/kv/nx:a", h_other, "third", 5), 200);

    /* deleted: absent again, so SET NX succeeds */
    status_is(client_req(&f->d, "DELETE", "/v1/kv/nx:a", NULL, NULL, 0), 204);
    status_is(client_req(&f->d, "PUT", "/v1/kv/nx:a", nx, "fourth", 6), 201);
    get_is(&f->d, "/v1/kv/nx:a", "fourth", 6);
}

/* ------------------------------------------------------------------------
 * DELETE
 * ------------------------------------------------------------------------ */

static void test_http_kv_delete(void **state)
{
    fixture_t *f = *state;
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/del:absent", NULL, NULL, 0), 404, "not_found");
    const char *h_one[] = {"If-Match: \"1\"", NULL};
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/del:absent", h_one, NULL, 0), 412,
               "precondition_failed");

    int64_t v = put_text(&f->d, "/v1/kv/del:a", "x", 201);
    char hs[64], ho[64];
    snprintf(hs, sizeof hs, "If-Match: \"%lld\"", (long long)v);
    snprintf(ho, sizeof ho, "If-Match: \"%lld\"", (long long)v + 1000000);
    const char *h_same[] = {hs, NULL}, *h_other[] = {ho, NULL};
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/del:a", h_other, NULL, 0), 412,
               "precondition_failed");
    get_is(&f->d, "/v1/kv/del:a", "x", 1);

    client_resp_t r = client_req(&f->d, "DELETE", "/v1/kv/del:a", h_same, NULL, 0);
    expect_status(&r, 204);
    assert_int_equal(r.body_len, 0);
    client_resp_free(&r);
    problem_is(client_req(&f->d, "GET", "/v1/kv/del:a", NULL, NULL, 0), 404, "not_found");
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/del:a", NULL, NULL, 0), 404, "not_found");

    put_text(&f->d, "/v1/kv/del:b", "x", 201);
    const char *h_star[] = {"If-Match: *", NULL};
    status_is(client_req(&f->d, "DELETE", "/v1/kv/del:b", h_star, NULL, 0), 204);
    status_is(client_req(&f->d, "GET", "/v1/kv/del:b", NULL, NULL, 0), 404);
}

/* ------------------------------------------------------------------------
 * incr
 * ------------------------------------------------------------------------ */

static void test_http_kv_incr(void **state)
{
    fixture_t *f = *state;
    int64_t v1 = incr_is(&f->d, "cnt:a", NULL, 1); /* absent = 0, empty body = by 1 */
    int64_t v2 = incr_is(&f->d, "cnt:a", "{\"by\": 5}", 6);
    int64_t v3 = incr_is(&f->d, "cnt:a", "{\"by\": -10}", -4);
    int64_t v4 = incr_is(&f->d, "cnt:a", "{}", -3);
    assert_true(v1 < v2 && v2 < v3 && v3 < v4);
    client_resp_t r = client_req(&f->d, "GET", "/v1/kv/cnt:a", NULL, NULL, 0);
    expect_status(&r, 200);
    assert_string_equal(r.body, "-3");
    client_header_is(&r, "Content-Type", "text/plain; charset=utf-8");
    assert_int_equal(etag_version(&r), v4);
    client_resp_free(&r);

    /* an existing integer keeps its Content-Type */
    const char *ct[] = {"Content-Type: application/x-counter", NULL};
    status_is(client_req(&f->d, "PUT", "/v1/kv/cnt:b", ct, "41", 2), 201);
    incr_is(&f->d, "cnt:b", NULL, 42);
    r = client_req(&f->d, "GET", "/v1/kv/cnt:b", NULL, NULL, 0);
    assert_string_equal(r.body, "42");
    client_header_is(&r, "Content-Type", "application/x-counter");
    client_resp_free(&r);

    /* the edges of int64 */
    put_text(&f->d, "/v1/kv/cnt:max", "9223372036854775806", 201);
    incr_is(&f->d, "cnt:max", NULL, INT64_MAX);
    put_text(&f->d, "/v1/kv/cnt:min", "-9223372036854775807", 201);
    incr_is(&f->d, "cnt:min", "{\"by\": -1}", INT64_MIN);
    incr_is(&f->d, "cnt:big", "{\"by\": 9223372036854775807}", INT64_MAX);
}

static void test_http_kv_incr_not_integer(void **state)
{
    fixture_t *f = *state;
    static const char *const values[] = {
        "abc",
        "12abc",
        " 1",
        "1 ",
        "01",
        "-0",
        "+1",
        "",
        "1.5",
        "0x10",
        "9223372036854775808",
        "-9223372036854775809",
    };
    static const char *const h[] = {"Content-Type: text/plain", NULL};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/kv/nint:%zu", i);
        client_resp_t r = client_req(&f->d, "PUT", path, h, values[i], strlen(values[i]));
        int64_t v = etag_version(&r);
        client_resp_free(&r);
        snprintf(path, sizeof path, "/v1/kv/nint:%zu/incr", i);
        r = req_s(&f->d, "POST", path, NULL);
        if (r.status != 409)
            print_error("value \"%s\"\n", values[i]);
        problem_is(r, 409, "not_integer");
        snprintf(path, sizeof path, "/v1/kv/nint:%zu", i);
        assert_int_equal(get_is(&f->d, path, values[i], strlen(values[i])), v);
    }
    /* overflow either way: 409, value unchanged */
    put_text(&f->d, "/v1/kv/ovf:max", "9223372036854775807", 201);
    problem_is(req_s(&f->d, "POST", "/v1/kv/ovf:max/incr", NULL), 409, "not_integer");
    put_text(&f->d, "/v1/kv/ovf:min", "-9223372036854775808", 201);
    problem_is(req_s(&f->d, "POST", "/v1/kv/ovf:min/incr", "{\"by\": -1}"), 409, "not_integer");
    get_is(&f->d, "/v1/kv/ovf:max", "9223372036854775807", 19);
    get_is(&f->d, "/v1/kv/ovf:min", "-9223372036854775808", 20);
    incr_is(&f->d, "ovf:max", "{\"by\": -1}", INT64_MAX - 1);
}

static void test_http_kv_incr_bad_body(void **state)
{
    fixture_t *f = *state;
    static const char *const not_json[] = {"{", "not json", "{\"by\": 1,}", "{'by': 1}"};
    for (size_t i = 0; i < sizeof not_json / sizeof not_json[0]; i++)
        problem_is(req_s(&f->d, "POST", "/v1/kv/badincr/incr", not_json[i]), 400, "invalid_json");
    static const char *const bad_shape[] = {
        "{\"by\": \"x\"}",
        "{\"by\": 1.5}",
        "{\"by\": null}",
        "{\"by\": true}",
        "{\"step\": 1}",
        "[1]",
        "1",
        "{\"by\": 1, \"by\": 2}",
        "{\"by\": 9223372036854775808}",
    };
    for (size_t i = 0; i < sizeof bad_shape / sizeof bad_shape[0]; i++) {
        client_resp_t r = req_s(&f->d, "POST", "/v1/kv/badincr/incr", bad_shape[i]);
        if (r.status != 400)
            print_error("body %s\n", bad_shape[i]);
        problem_is(r, 400, "invalid_argument");
    }
    status_is(client_req(&f->d, "GET", "/v1/kv/badincr", NULL, NULL, 0), 404);
}

/* ------------------------------------------------------------------------
 * List
 * ------------------------------------------------------------------------ */

static void test_http_kv_list_paging(void **state)
{
    fixture_t *f = *state;
    static const char *const keys[] = {"lp:c", "lp:a",        "lp:e", "lp:b", "lp:d",
                                       "lp:Z", "lp:\xc3\xa9", "lpx",  "lo:z", "lp:gone"};
    static const char *const paths[] = {"/v1/kv/lp:c",      "/v1/kv/lp:a", "/v1/kv/lp:e",
                                        "/v1/kv/lp:b",      "/v1/kv/lp:d", "/v1/kv/lp:Z",
                                        "/v1/kv/lp:%C3%A9", "/v1/kv/lpx",  "/v1/kv/lo:z",
                                        "/v1/kv/lp:gone"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        put_text(&f->d, paths[i], keys[i], 201);
    status_is(client_req(&f->d, "DELETE", "/v1/kv/lp:gone", NULL, NULL, 0), 204);

    /* byte order, live keys of the prefix only, pages of 2 */
    static const char *const want[] = {"lp:Z", "lp:a", "lp:b",       "lp:c",
                                       "lp:d", "lp:e", "lp:\xc3\xa9"};
    size_t seen = 0;
    char query[256] = "prefix=lp:&limit=2";
    for (int page_no = 0; page_no < 10; page_no++) {
        char *next;
        json_t *page = list_page(&f->d, query, &next);
        for (size_t i = 0; i < json_array_size(page); i++, seen++) {
            assert_true(seen < 7);
            assert_string_equal(json_string_value(json_array_get(page, i)), want[seen]);
        }
        bool last = next == NULL;
        if (!last) {
            assert_int_equal(json_array_size(page), 2);
            assert_string_equal(next, want[seen - 1]);
            char *esc = curl_easy_escape(NULL, next, 0);
            snprintf(query, sizeof query, "prefix=lp:&limit=2&after=%s", esc);
            curl_free(esc);
        }
        json_decref(page);
        free(next);
        if (last)
            break;
    }
    assert_int_equal(seen, 7);

    /* a page that ends exactly at the last key has next = null */
    char *next;
    json_t *page = list_page(&f->d, "prefix=lp%3A&limit=7", &next);
    assert_int_equal(json_array_size(page), 7);
    assert_null(next);
    json_decref(page);
    page = list_page(&f->d, "prefix=lp:&limit=6", &next);
    assert_string_equal(next, "lp:e");
    json_decref(page);
    free(next);

    /* after need not exist; after past the end gives an empty last page */
    page = list_page(&f->d, "prefix=lp:&after=lp:bb&limit=2", &next);
    keys_are(page, (const char *const[]){"lp:c", "lp:d", NULL});
    json_decref(page);
    free(next);
    page = list_page(&f->d, "prefix=lp:&after=lp:%C3%BF", &next);
    keys_are(page, (const char *const[]){NULL});
    assert_null(next);
    json_decref(page);
}

static void test_http_kv_list_default_limit(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i <= 100; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/kv/ld:%03d", i);
        put_text(&f->d, path, "x", 201);
    }
    char *next;
    json_t *page = list_page(&f->d, "prefix=ld:", &next);
    assert_int_equal(json_array_size(page), 100);
    assert_string_equal(next, "ld:099");
    json_decref(page);
    free(next);
    page = list_page(&f->d, "prefix=ld:&after=ld:099", &next);
    keys_are(page, (const char *const[]){"ld:100", NULL});
    assert_null(next);
    json_decref(page);
    page = list_page(&f->d, "prefix=ld:&limit=1000", &next);
    assert_int_equal(json_array_size(page), 101);
    assert_null(next);
    json_decref(page);
}

static void test_http_kv_list_bad_arguments(void **state)
{
    fixture_t *f = *state;
    static const char *const bad[] = {
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=",
        "limit=99999999999999999999",
        "after=%zz",
        "prefix=%4",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/kv?%s", bad[i]);
        client_resp_t r = client_req(&f->d, "GET", path, NULL, NULL, 0);
        if (r.status != 400)
            print_error("?%s\n", bad[i]);
        problem_is(r, 400, "invalid_argument");
    }
    char path[1200];
    int n = snprintf(path, sizeof path, "/v1/kv?prefix=");
    memset(path + n, 'p', 513);
    path[n + 513] = '\0';
    problem_is(client_req(&f->d, "GET", path, NULL, NULL, 0), 400, "invalid_argument");
    path[n + 512] = '\0';
    status_is(client_req(&f->d, "GET", path, NULL, NULL, 0), 200);
    status_is(client_req(&f->d, "GET", "/v1/kv?limit=1000", NULL, NULL, 0), 200);
    status_is(client_req(&f->d, "GET", "/v1/kv?limit=1", NULL, NULL, 0), 200);
}

/* ------------------------------------------------------------------------
 * Versions
 * ------------------------------------------------------------------------ */

static void test_http_kv_versions_never_repeat(void **state)
{
    fixture_t *f = *state;
    int64_t v1 = put_text(&f->d, "/v1/kv/ver:a", "one", 201);
    int64_t vb = put_text(&f->d, "/v1/kv/ver:b", "b", 201);
    status_is(client_req(&f->d, "DELETE", "/v1/kv/ver:a", NULL, NULL, 0), 204);
    int64_t v2 = put_text(&f->d, "/v1/kv/ver:a", "one", 201);
    int64_t vc = incr_is(&f->d, "ver:c", NULL, 1);
    int64_t v3 = put_text(&f->d, "/v1/kv/ver:a", "two", 200);
    assert_true(v1 < vb && vb < v2 && v2 < vc && vc < v3);

    /* no ABA: the tag of the deleted incarnation does not match the new one */
    char h1[64];
    snprintf(h1, sizeof h1, "If-Match: \"%lld\"", (long long)v1);
    const char *h[] = {h1, NULL};
    problem_is(client_req(&f->d, "PUT", "/v1/kv/ver:a", h, "aba", 3), 412, "precondition_failed");
    get_is(&f->d, "/v1/kv/ver:a", "two", 3);
}

/* ------------------------------------------------------------------------
 * Keys in the path
 * ------------------------------------------------------------------------ */

static void test_http_kv_key_empty(void **state)
{
    fixture_t *f = *state;
    problem_is(req_s(&f->d, "PUT", "/v1/kv/", "x"), 400, "invalid_argument");
    problem_is(client_req(&f->d, "GET", "/v1/kv/", NULL, NULL, 0), 400, "invalid_argument");
    problem_is(client_req(&f->d, "DELETE", "/v1/kv/", NULL, NULL, 0), 400, "invalid_argument");
    problem_is(req_s(&f->d, "POST", "/v1/kv//incr", NULL), 400, "invalid_argument");
}

static void test_http_kv_key_length(void **state)
{
    fixture_t *f = *state;
    char path[4096], key[600];
    memset(key, 'k', 512);
    key[512] = '\0';
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    client_resp_t r = req_s(&f->d, "PUT", path, "x");
    check_written(&r, 201, key, 0, 0);
    client_resp_free(&r);
    get_is(&f->d, path, "x", 1);

    strcat(path, "k"); /* 513 bytes */
    problem_is(req_s(&f->d, "PUT", path, "x"), 400, "invalid_argument");
    problem_is(client_req(&f->d, "GET", path, NULL, NULL, 0), 400, "invalid_argument");
    problem_is(client_req(&f->d, "DELETE", path, NULL, NULL, 0), 400, "invalid_argument");
    strcat(path, "/incr");
    problem_is(req_s(&f->d, "POST", path, NULL), 400, "invalid_argument");

    /* the limit is on decoded bytes: 256 x "é" (2 bytes) = 512 */
    size_t n = (size_t)snprintf(path, sizeof path, "/v1/kv/");
    for (int i = 0; i < 256; i++)
        n += (size_t)snprintf(path + n, sizeof path - n, "%%C3%%A9");
    r = req_s(&f->d, "PUT", path, "e");
    expect_status(&r, 201);
    json_t *j = client_json(&r);
    assert_int_equal(json_string_length(json_object_get(j, "key")), 512);
    json_decref(j);
    client_resp_free(&r);
    strcat(path, "%C3%A9");
    problem_is(req_s(&f->d, "PUT", path, "e"), 400, "invalid_argument");
    problem_is(client_req(&f->d, "GET", "/v1/kv/k%", NULL, NULL, 0), 400, "invalid_argument");
}

static void test_http_kv_key_escaped_slash(void **state)
{
    fixture_t *f = *state;
    client_resp_t r = req_s(&f->d, "PUT", "/v1/kv/dir%2Ffile", "in a dir");
    check_written(&r, 201, "dir/file", 0, 0);
    client_resp_free(&r);
    get_is(&f->d, "/v1/kv/dir%2Ffile", "in a dir", 8);
    get_is(&f->d, "/v1/kv/dir%2ffile", "in a dir", 8); /* hex digits in either case */
    problem_is(client_req(&f->d, "GET", "/v1/kv/dir/file", NULL, NULL, 0), 404, "not_found");
    char *next;
    json_t *page = list_page(&f->d, "prefix=dir%2F", &next);
    keys_are(page, (const char *const[]){"dir/file", NULL});
    json_decref(page);
    free(next);
    r = req_s(&f->d, "POST", "/v1/kv/dir%2Fcount/incr", NULL);
    expect_status(&r, 200);
    json_t *j = client_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "key")), "dir/count");
    json_decref(j);
    client_resp_free(&r);
    get_is(&f->d, "/v1/kv/dir%2Fcount", "1", 1);
    status_is(client_req(&f->d, "DELETE", "/v1/kv/dir%2Ffile", NULL, NULL, 0), 204);
    status_is(client_req(&f->d, "GET", "/v1/kv/dir%2Ffile", NULL, NULL, 0), 404);

    /* in a path '+' is a plus, %20 a space */
    r = req_s(&f->d, "PUT", "/v1/kv/a+b%20c", "x");
    check_written(&r, 201, "a+b c", 0, 0);
    client_resp_free(&r);
    page = list_page(&f->d, "prefix=a%2Bb", &next);
    keys_are(page, (const char *const[]){"a+b c", NULL});
    json_decref(page);
    free(next);
}

static void test_http_kv_key_bad_encoding(void **state)
{
    fixture_t *f = *state;
    static const char *const keys[] = {
        "%zz",   "%4",  "ab%",       "%G0",    "%FF",          "%00",
        "a%00b", "%C3", "%ED%A0%80", "%C0%AF", "%F4%90%80%80",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char path[128], incr[128];
        snprintf(path, sizeof path, "/v1/kv/%s", keys[i]);
        snprintf(incr, sizeof incr, "/v1/kv/%s/incr", keys[i]);
        const struct {
            const char *method, *path, *body;
        } calls[] = {{"PUT", path, "x"},
                     {"GET", path, NULL},
                     {"DELETE", path, NULL},
                     {"POST", incr, NULL}};
        for (size_t c = 0; c < 4; c++) {
            client_resp_t r = req_s(&f->d, calls[c].method, calls[c].path, calls[c].body);
            if (r.status != 400)
                print_error("%s %s\n", calls[c].method, calls[c].path);
            problem_is(r, 400, "invalid_argument");
        }
    }
}

/* ------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------ */

static void test_http_unknown_route(void **state)
{
    fixture_t *f = *state;
    static const char *const paths[] = {
        "//",         "/nope",           "/v1",     "/v1/",       "/v1/nope",
        "/v1/kv/a/b", "/v1/kv/a/incr/x", "/v1/kvx", "/healthz/x", "/V1/kv/a"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        client_resp_t r = client_req(&f->d, "GET", paths[i], NULL, NULL, 0);
        if (r.status != 404)
            print_error("GET %s\n", paths[i]);
        problem_is(r, 404, "not_found");
    }
    problem_is(req_s(&f->d, "PUT", "/v1/kv/a/b", "x"), 404, "not_found");
}

static void test_http_wrong_method(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"POST", "/v1/kv/k", "DELETE,GET,PATCH,PUT"},
        {"OPTIONS", "/v1/kv/k", "DELETE,GET,PATCH,PUT"},
        {"PUT", "/v1/kv", "GET"},
        {"DELETE", "/v1/kv", "GET"},
        {"GET", "/v1/kv/k/incr", "POST"},
        {"PUT", "/v1/kv/k/incr", "POST"},
        {"PATCH", "/v1/kv/k/incr", "POST"},
        {"DELETE", "/healthz", "GET"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        client_resp_t r = client_req(&f->d, cases[i].method, cases[i].path, NULL, NULL, 0);
        if (r.status != 405)
            print_error("%s %s\n", cases[i].method, cases[i].path);
        client_assert_problem(&r, 405, "method_not_allowed");
        allow_is(&r, cases[i].allow);
        client_resp_free(&r);
    }
    status_is(client_req(&f->d, "GET", "/v1/kv/k", NULL, NULL, 0), 404); /* nothing written */
}

static void test_http_healthz(void **state)
{
    fixture_t *f = *state;
    client_resp_t r = client_req(&f->d, "GET", "/healthz", NULL, NULL, 0);
    expect_status(&r, 200);
    client_header_is(&r, "Content-Type", "application/json");
    json_t *j = client_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    client_resp_free(&r);
}

/* ------------------------------------------------------------------------
 * Body limit (daemon with --max-body 1024)
 * ------------------------------------------------------------------------ */

static const char *const chunked[] = {"Transfer-Encoding: chunked", NULL};

static void test_http_kv_body_at_limit(void **state)
{
    fixture_t *f = *state;
    char body[1024];
    memset(body, 'b', sizeof body);
    status_is(client_req(&f->d, "PUT", "/v1/kv/lim:cl", NULL, body, sizeof body), 201);
    get_is(&f->d, "/v1/kv/lim:cl", body, sizeof body);
    status_is(client_req(&f->d, "PUT", "/v1/kv/lim:chunked", chunked, body, sizeof body), 201);
    get_is(&f->d, "/v1/kv/lim:chunked", body, sizeof body);
}

static void test_http_kv_body_too_large(void **state)
{
    fixture_t *f = *state;
    static char body[64 * 1024];
    memset(body, 'b', sizeof body);
    static const size_t sizes[] = {1025, sizeof body};
    for (size_t i = 0; i < 2; i++) {
        problem_is(client_req(&f->d, "PUT", "/v1/kv/big:cl", NULL, body, sizes[i]), 413,
                   "payload_too_large");
        problem_is(client_req(&f->d, "GET", "/v1/kv/big:cl", NULL, NULL, 0), 404, "not_found");
        problem_is(client_req(&f->d, "PUT", "/v1/kv/big:chunked", chunked, body, sizes[i]), 413,
                   "payload_too_large");
        problem_is(client_req(&f->d, "GET", "/v1/kv/big:chunked", NULL, NULL, 0), 404, "not_found");
    }
    /* any endpoint, and a replaced value is not touched either */
    char json[1100];
    int n = snprintf(json, sizeof json, "{\"by\": 1%*s}", 1020, "");
    problem_is(client_req(&f->d, "POST", "/v1/kv/big:n/incr", NULL, json, (size_t)n), 413,
               "payload_too_large");
    problem_is(client_req(&f->d, "POST", "/v1/kv/big:n/incr", chunked, json, (size_t)n), 413,
               "payload_too_large");
    status_is(client_req(&f->d, "GET", "/v1/kv/big:n", NULL, NULL, 0), 404);
    put_text(&f->d, "/v1/kv/big:keep", "small", 201);
    problem_is(client_req(&f->d, "PUT", "/v1/kv/big:keep", chunked, body, 2048), 413,
               "payload_too_large");
    get_is(&f->d, "/v1/kv/big:keep", "small", 5);
    /* the size is checked before the path is validated */
    problem_is(client_req(&f->d, "PUT", "/v1/kv/%zz", NULL, body, 2048), 413, "payload_too_large");
    /* routing is decided before the size: 404 and 405 come first */
    problem_is(client_req(&f->d, "PUT", "/v1/nope", NULL, body, 2048), 404, "not_found");
    problem_is(client_req(&f->d, "POST", "/v1/kv/big:keep", NULL, body, 2048), 405,
               "method_not_allowed");
}

/* /v1/stats "cache" member (caller decrefs), with the given headers. */
static json_t *cache_stats(const daemon_t *d, const char *const headers[])
{
    client_resp_t r = client_req(d, "GET", "/v1/stats", headers, NULL, 0);
    expect_status(&r, 200);
    json_t *j = client_json(&r);
    client_resp_free(&r);
    json_t *c = json_incref(json_object_get(j, "cache"));
    json_decref(j);
    assert_non_null(c);
    return c;
}

/* A GET of an absent key is a miss however it was answered (bloom filter,
 * negative entry or the store), as in Redis' keyspace_misses; a GET
 * answered from the memory tier a hit; hit_ratio = hits / (hits + misses). */
static void test_http_kv_absent_gets_are_misses(void **state)
{
    fixture_t *f = *state;
    json_t *c0 = cache_stats(&f->d, NULL);
    status_is(req_s(&f->d, "GET", "/v1/kv/miss:never-written", NULL), 404);
    status_is(req_s(&f->d, "GET", "/v1/kv/miss:never-written", NULL), 404);
    json_t *c1 = cache_stats(&f->d, NULL);
    assert_int_equal(json_int(c1, "misses"), json_int(c0, "misses") + 2);
    assert_int_equal(json_int(c1, "hits"), json_int(c0, "hits"));
    put_text(&f->d, "/v1/kv/miss:present", "v", 201);
    status_is(req_s(&f->d, "GET", "/v1/kv/miss:present", NULL), 200); /* read, then cached */
    status_is(req_s(&f->d, "GET", "/v1/kv/miss:present", NULL), 200); /* from memory */
    json_t *c2 = cache_stats(&f->d, NULL);
    assert_int_equal(json_int(c2, "misses"), json_int(c1, "misses") + 1);
    assert_int_equal(json_int(c2, "hits"), json_int(c1, "hits") + 1);
    double hits = (double)json_int(c2, "hits"), misses = (double)json_int(c2, "misses");
    double ratio = json_real_value(json_object_get(c2, "hit_ratio"));
    assert_true(ratio > hits / (hits + misses) - 1e-9 && ratio < hits / (hits + misses) + 1e-9);
    json_decref(c0);
    json_decref(c1);
    json_decref(c2);
}

/* The hot key named in a hotkeys answer: its entry, or NULL. */
static json_t *hot_entry(json_t *keys, const char *member, const char *key)
{
    size_t i;
    json_t *e;
    json_array_foreach (keys, i, e) {
        json_t *k = json_object_get(e, member);
        if (json_is_string(k) && strcmp(json_string_value(k), key) == 0)
            return e;
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Auth (daemon with --auth-token)
 * ------------------------------------------------------------------------ */

static void unauthorized_is(client_resp_t r)
{
    client_assert_problem(&r, 401, "unauthorized");
    client_header_is(&r, "WWW-Authenticate", "Bearer");
    client_resp_free(&r);
}

static void test_http_auth_refused(void **state)
{
    fixture_t *f = *state;
    static const char *const bad[] = {
        NULL,
        "Authorization: Bearer wrong",
        "Authorization: Bearer " TOKEN "x",
        "Authorization: Bearer s3cret",
        "Authorization: Bearer",
        "Authorization: " TOKEN,
        "Authorization: Basic czNjcmV0LXRva2Vu",
        "Authorization: Bearer " TOKEN " " TOKEN,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *h[] = {bad[i], NULL};
        unauthorized_is(client_req(&f->d, "GET", "/v1/kv/auth:a", h, NULL, 0));
        unauthorized_is(client_req(&f->d, "PUT", "/v1/kv/auth:a", h, "x", 1));
        unauthorized_is(client_req(&f->d, "DELETE", "/v1/kv/auth:a", h, NULL, 0));
        unauthorized_is(client_req(&f->d, "POST", "/v1/kv/auth:a/incr", h, NULL, 0));
        unauthorized_is(client_req(&f->d, "GET", "/v1/kv", h, NULL, 0));
        unauthorized_is(client_req(&f->d, "GET", "/v1/nope", h, NULL, 0));       /* before 404 */
        unauthorized_is(client_req(&f->d, "POST", "/v1/kv/auth:a", h, NULL, 0)); /* before 405 */
    }
    /* nothing was written */
    const char *ok[] = {"Authorization: Bearer " TOKEN, NULL};
    status_is(client_req(&f->d, "GET", "/v1/kv/auth:a", ok, NULL, 0), 404);
}

static void test_http_auth_accepted(void **state)
{
    fixture_t *f = *state;
    const char *ok[] = {"Authorization: Bearer " TOKEN, NULL};
    const char *ok_lower[] = {"Authorization: bearer " TOKEN, NULL};
    status_is(client_req(&f->d, "PUT", "/v1/kv/auth:b", ok, "x", 1), 201);
    status_is(client_req(&f->d, "GET", "/v1/kv/auth:b", ok, NULL, 0), 200);
    status_is(client_req(&f->d, "GET", "/v1/kv/auth:b", ok_lower, NULL, 0), 200);
    status_is(client_req(&f->d, "POST", "/v1/kv/auth:c/incr", ok, NULL, 0), 200);
    status_is(client_req(&f->d, "GET", "/v1/kv?prefix=auth:", ok, NULL, 0), 200);
    status_is(client_req(&f->d, "DELETE", "/v1/kv/auth:b", ok, NULL, 0), 204);
    problem_is(client_req(&f->d, "GET", "/v1/nope", ok, NULL, 0), 404, "not_found");
}

static void test_http_auth_healthz_open(void **state)
{
    fixture_t *f = *state;
    status_is(client_req(&f->d, "GET", "/healthz", NULL, NULL, 0), 200);
    const char *wrong[] = {"Authorization: Bearer wrong", NULL};
    status_is(client_req(&f->d, "GET", "/healthz", wrong, NULL, 0), 200);
    problem_is(client_req(&f->d, "GET", "/nope", NULL, NULL, 0), 404, "not_found"); /* not /v1 */
}

/* GET /v1/stats/hotkeys: behind the auth token; the keys read most, with
 * counts, decoded; limit 1..100. */
static void test_http_auth_hotkeys(void **state)
{
    fixture_t *f = *state;
    static const char *const h[] = {"Authorization: Bearer " TOKEN, NULL};
    unauthorized_is(client_req(&f->d, "GET", "/v1/stats/hotkeys", NULL, NULL, 0));
    for (int i = 0; i < 60; i++)
        status_is(client_req(&f->d, "GET", "/v1/kv/hot:top", h, NULL, 0), 404);
    for (int i = 0; i < 20; i++)
        status_is(client_req(&f->d, "GET", "/v1/kv/hot:%C3%A9", h, NULL, 0), 404);
    client_resp_t r = client_req(&f->d, "GET", "/v1/stats/hotkeys?limit=100", h, NULL, 0);
    expect_status(&r, 200);
    client_header_is(&r, "Content-Type", "application/json");
    json_t *j = client_json(&r);
    client_resp_free(&r);
    assert_true(json_is_true(json_object_get(j, "enabled")));
    assert_int_equal(json_int(j, "tracked"), 512);
    assert_int_equal(json_int(j, "half_life_ms"), 10000);
    json_t *keys = json_object_get(j, "keys");
    json_t *top = hot_entry(keys, "key", "hot:top");
    json_t *bin = hot_entry(keys, "key", "hot:\xc3\xa9"); /* percent-decoded UTF-8 */
    assert_non_null(top);
    assert_non_null(bin);
    assert_true(json_int(top, "count") >= 30); /* 60, at most halved once meanwhile */
    assert_true(json_int(top, "count") > json_int(bin, "count"));
    assert_true(json_int(bin, "count") >= 10);
    assert_ptr_equal(json_array_get(keys, 0), top);
    json_decref(j);
    r = client_req(&f->d, "GET", "/v1/stats/hotkeys?limit=1", h, NULL, 0);
    expect_status(&r, 200);
    j = client_json(&r);
    client_resp_free(&r);
    assert_int_equal(json_array_size(json_object_get(j, "keys")), 1);
    json_decref(j);
    const char *bad[] = {"?limit=0", "?limit=101", "?limit=x",
                         "?limit=",  "?limit=-1",  "?limit=1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/stats/hotkeys%s", bad[i]);
        problem_is(client_req(&f->d, "GET", path, h, NULL, 0), 400, "invalid_argument");
    }
    problem_is(client_req(&f->d, "POST", "/v1/stats/hotkeys", h, NULL, 0), 405,
               "method_not_allowed");
}

static void test_http_auth_token_from_env(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    assert_non_null(dir);
    daemon_t d;
    setenv("SQLCACHED_AUTH_TOKEN", "env-token", 1);
    int rc = daemon_start(&d, dir, NULL);
    unsetenv("SQLCACHED_AUTH_TOKEN");
    assert_int_equal(rc, 0);
    const char *ok[] = {"Authorization: Bearer env-token", NULL};
    long without = client_status(&d, "GET", "/v1/kv/env", NULL, NULL);
    long with = client_status(&d, "GET", "/v1/kv/env", ok, NULL);
    int stop = daemon_stop(&d);
    daemon_free(&d);
    testutil_rmdir(dir);
    assert_int_equal(without, 401);
    assert_int_equal(with, 404);
    assert_int_equal(stop, 0);
}

/* ------------------------------------------------------------------------
 * Restarts (a daemon per test)
 * ------------------------------------------------------------------------ */

static void test_http_kv_survives_kill(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *path, *ct, *body;
    } rows[] = {
        {"/v1/kv/keep:a", "Content-Type: text/plain", "alpha"},
        {"/v1/kv/keep:b", "Content-Type: application/json", "{\"b\":2}"},
        {"/v1/kv/keep:c?ttl=3600", "Content-Type: image/png", "\x89PNG"},
        {"/v1/kv/keep%2Fd", "Content-Type:", "slash"},
    };
    int64_t versions[4], max = 0;
    for (size_t i = 0; i < 4; i++) {
        const char *h[] = {rows[i].ct, NULL};
        client_resp_t r =
            client_req(&f->d, "PUT", rows[i].path, h, rows[i].body, strlen(rows[i].body));
        expect_status(&r, 201);
        versions[i] = etag_version(&r);
        client_resp_free(&r);
    }
    put_text(&f->d, "/v1/kv/keep:gone", "x", 201);
    status_is(client_req(&f->d, "DELETE", "/v1/kv/keep:gone", NULL, NULL, 0), 204);
    int64_t vc = incr_is(&f->d, "keep:n", "{\"by\": 41}", 41);
    max = vc;
    /* the session calls: a read-and-delete, a patch, a sliding key */
    put_text(&f->d, "/v1/kv/keep:otp", "1234", 201);
    status_is(client_req(&f->d, "DELETE", "/v1/kv/keep:otp", PREFER, NULL, 0), 200);
    static const char *const mp[] = {"Content-Type: application/merge-patch+json", NULL};
    status_is(client_req(&f->d, "PATCH", "/v1/kv/keep:p", mp, "{\"a\":1}", 7), 201);
    status_is(client_req(&f->d, "PATCH", "/v1/kv/keep:p", mp, "{\"b\":2}", 7), 200);
    put_text(&f->d, "/v1/kv/keep:s?ttl=3600&sliding=true", "s", 201);

    daemon_kill(&f->d);
    assert_int_equal(daemon_restart(&f->d), 0);

    static const char *const get_paths[] = {"/v1/kv/keep:a", "/v1/kv/keep:b", "/v1/kv/keep:c",
                                            "/v1/kv/keep%2Fd"};
    static const char *const cts[] = {"text/plain", "application/json", "image/png",
                                      "application/octet-stream"};
    for (size_t i = 0; i < 4; i++) {
        client_resp_t r = client_req(&f->d, "GET", get_paths[i], NULL, NULL, 0);
        expect_status(&r, 200);
        assert_int_equal(r.body_len, strlen(rows[i].body));
        assert_memory_equal(r.body, rows[i].body, r.body_len);
        client_header_is(&r, "Content-Type", cts[i]);
        assert_int_equal(etag_version(&r), versions[i]);
        client_resp_free(&r);
    }
    status_is(client_req(&f->d, "GET", "/v1/kv/keep:gone", NULL, NULL, 0), 404);
    status_is(client_req(&f->d, "GET", "/v1/kv/keep:otp", NULL, NULL, 0), 404);
    get_is(&f->d, "/v1/kv/keep:p", "{\"a\":1,\"b\":2}", 13);
    get_is(&f->d, "/v1/kv/keep:s", "s", 1);
    int64_t vn = incr_is(&f->d, "keep:n", NULL, 42);
    assert_true(vn > max);
    int64_t vnew = put_text(&f->d, "/v1/kv/keep:a", "after", 200);
    assert_true(vnew > vn);
}

/* Concurrent writes with one worker thread: DELETE and incr are parked
 * until their group commit like PUT, so the writes of the clients waiting
 * together share a transaction (with a worker blocked per write, as
 * before, every transaction held exactly one). */
enum { BATCH_CLIENTS = 8, BATCH_ROUNDS = 20 };

static void *batch_client(void *arg)
{
    const daemon_t *d = ((void **)arg)[0];
    intptr_t id = (intptr_t)((void **)arg)[1];
    char path[64];
    for (int i = 0; i < BATCH_ROUNDS; i++) {
        client_resp_t r;
        if (client_request(d, "POST", "/v1/kv/batch:n/incr", NULL, NULL, 0, &r) != 0 ||
            r.status != 200)
            fprintf(stderr, "incr: status %ld\n", r.status);
        client_resp_free(&r);
        snprintf(path, sizeof path, "/v1/kv/batch:%d:%d", (int)id, i);
        if (client_request(d, "DELETE", path, NULL, NULL, 0, &r) != 0 || r.status != 404)
            fprintf(stderr, "delete: status %ld\n", r.status);
        client_resp_free(&r);
    }
    return NULL;
}

static int64_t storage_stat(const daemon_t *d, const char *name)
{
    client_resp_t r = client_req(d, "GET", "/v1/stats", NULL, NULL, 0);
    expect_status(&r, 200);
    json_t *j = client_json(&r);
    assert_non_null(j);
    int64_t v = json_int(json_object_get(j, "storage"), name);
    json_decref(j);
    client_resp_free(&r);
    return v;
}

static void test_http_writes_share_transactions(void **state)
{
    fixture_t *f = *state;
    int64_t writes0 = storage_stat(&f->d, "writes");
    int64_t txns0 = storage_stat(&f->d, "write_transactions");
    pthread_t th[BATCH_CLIENTS];
    void *args[BATCH_CLIENTS][2];
    for (intptr_t i = 0; i < BATCH_CLIENTS; i++) {
        args[i][0] = &f->d;
        args[i][1] = (void *)i;
        assert_int_equal(pthread_create(&th[i], NULL, batch_client, args[i]), 0);
    }
    for (int i = 0; i < BATCH_CLIENTS; i++)
        pthread_join(th[i], NULL);
    incr_is(&f->d, "batch:n", "{\"by\": 0}", BATCH_CLIENTS * BATCH_ROUNDS);
    int64_t writes = storage_stat(&f->d, "writes") - writes0;
    int64_t txns = storage_stat(&f->d, "write_transactions") - txns0;
    printf("  %lld writes (incr, DELETE of absent keys) in %lld transactions\n", (long long)writes,
           (long long)txns);
    assert_true(writes >= 2 * BATCH_CLIENTS * BATCH_ROUNDS);
    assert_true(txns < writes);
}

static void test_http_graceful_stop(void **state)
{
    fixture_t *f = *state;
    int64_t v = put_text(&f->d, "/v1/kv/stop:a", "kept", 201);
    assert_int_equal(daemon_stop(&f->d), 0); /* SIGTERM: exit 0 */
    assert_int_equal(daemon_restart(&f->d), 0);
    assert_int_equal(get_is(&f->d, "/v1/kv/stop:a", "kept", 4), v);
    assert_true(put_text(&f->d, "/v1/kv/stop:b", "x", 201) > v);
}

/* ------------------------------------------------------------------------
 * Start-up errors (no daemon)
 * ------------------------------------------------------------------------ */

static int run(const char *const args[], char *out, size_t outlen)
{
    return daemon_run(args, 10000, out, outlen);
}

static void test_http_startup_bad_flag_value(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"--threads", "0"},
        {"--threads", "many"},
        {"--max-body", "abc"},
        {"--max-body", "0"},
        {"--durability", "maybe"},
        {"--listen", "nowhere"},
        {"--listen", "127.0.0.1:70000"},
        {"--timeout", "0"},
        {"--log-level", "loud"},
        {"--max-connections", "0"},
        {"--auth-token", "has space"},
        {"--db", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = {"--listen", "127.0.0.1:0", cases[i][0], cases[i][1], NULL};
        char out[2048];
        int rc = run(args, out, sizeof out);
        if (rc != 1 || !strstr(out, cases[i][0]))
            print_error("%s %s: exit %d, output: %s\n", cases[i][0], cases[i][1], rc, out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, cases[i][0])); /* the message names the flag */
    }
}

static void test_http_startup_usage_error(void **state)
{
    (void)state;
    static const char *const cases[][2] = {{"--bogus", NULL},
                                           {"stray", NULL},
                                           {"--threads", NULL},
                                           {"-x", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = {"--listen", "127.0.0.1:0", cases[i][0], NULL};
        char out[2048];
        int rc = run(args, out, sizeof out);
        if (rc != 2 || !strstr(out, cases[i][0]))
            print_error("%s: exit %d, output: %s\n", cases[i][0], rc, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, cases[i][0]));
    }
}

/* PostgreSQL: a database the server does not have, and a server that is
 * not there: exit 1 naming PostgreSQL, not a crash or a hang. */
static void startup_unusable_pg(void)
{
    char *dir = testutil_mkdtemp();
    assert_non_null(dir);
    char *url = testutil_db(dir, "sqlcached.db");
    assert_non_null(url);
    const char *q = strstr(url, "/postgres?"); /* .../postgres?options=... */
    assert_non_null(q);
    char missing[600];
    snprintf(missing, sizeof missing, "%.*s/no_such_db%s", (int)(q - url), url, q + 9);
    const char *const urls[] = {missing, "postgresql://postgres@127.0.0.1:1/postgres"};
    for (size_t i = 0; i < 2; i++) {
        const char *args[] = {"--listen", "127.0.0.1:0", "--db", urls[i], NULL};
        char out[2048];
        int rc = run(args, out, sizeof out);
        print_message("--db %s: exit %d: %s", urls[i], rc, out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "PostgreSQL"));
    }
    free(url);
    testutil_rmdir(dir);
}

static void test_http_startup_unwritable_db(void **state)
{
    (void)state;
    if (testutil_backend_pg()) {
        startup_unusable_pg();
        return;
    }
    char *dir = testutil_mkdtemp();
    assert_non_null(dir);
    char file[512], under_file[600], missing[600];
    snprintf(file, sizeof file, "%s/plain-file", dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(under_file, sizeof under_file, "%s/x.db", file); /* parent is not a directory */
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.db", dir);
    const char *const paths[] = {under_file, missing, dir /* a directory */};
    int rcs[3];
    char outs[3][2048];
    for (size_t i = 0; i < 3; i++) {
        const char *args[] = {"--listen", "127.0.0.1:0", "--db", paths[i], NULL};
        rcs[i] = run(args, outs[i], sizeof outs[i]);
    }
    testutil_rmdir(dir);
    for (size_t i = 0; i < 3; i++) {
        if (rcs[i] <= 0 || rcs[i] >= 128)
            print_error("--db %s: exit %d, output: %s\n", paths[i], rcs[i], outs[i]);
        assert_true(rcs[i] > 0 && rcs[i] < 128); /* an error exit, not a crash or a hang */
        assert_non_null(strstr(outs[i], "database"));
    }
}

static void test_http_startup_help_and_version(void **state)
{
    (void)state;
    char out[4096];
    const char *help[] = {"--help", NULL};
    assert_int_equal(run(help, out, sizeof out), 0);
    assert_non_null(strstr(out, "Usage"));
    assert_non_null(strstr(out, "--max-body"));
    const char *version[] = {"--version", NULL};
    assert_int_equal(run(version, out, sizeof out), 0);
    assert_true(strncmp(out, "sqlcached ", 10) == 0);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest kv[] = {
        cmocka_unit_test(test_http_kv_put_created_then_replaced),
        cmocka_unit_test(test_http_kv_content_type_verbatim),
        cmocka_unit_test(test_http_kv_value_bytes_verbatim),
        cmocka_unit_test(test_http_kv_get_etag_and_cache_header),
        cmocka_unit_test(test_http_kv_get_if_none_match),
        cmocka_unit_test(test_http_kv_no_stale_reads),
        cmocka_unit_test(test_http_kv_kept_hit_replies),
        cmocka_unit_test(test_http_kv_ttl_rejected),
        cmocka_unit_test(test_http_kv_ttl_expiry),
        cmocka_unit_test(test_http_kv_put_if_match),
        cmocka_unit_test(test_http_kv_put_if_none_match),
        cmocka_unit_test(test_http_kv_delete),
        cmocka_unit_test(test_http_kv_incr),
        cmocka_unit_test(test_http_kv_incr_not_integer),
        cmocka_unit_test(test_http_kv_incr_bad_body),
        cmocka_unit_test(test_http_kv_list_paging),
        cmocka_unit_test(test_http_kv_list_default_limit),
        cmocka_unit_test(test_http_kv_list_bad_arguments),
        cmocka_unit_test(test_http_kv_versions_never_repeat),
        cmocka_unit_test(test_http_kv_key_empty),
        cmocka_unit_test(test_http_kv_key_length),
        cmocka_unit_test(test_http_kv_key_escaped_slash),
        cmocka_unit_test(test_http_kv_key_bad_encoding),
        cmocka_unit_test(test_http_unknown_route),
        cmocka_unit_test(test_http_wrong_method),
        cmocka_unit_test(test_http_healthz),
        cmocka_unit_test(test_http_kv_absent_gets_are_misses),
        cmocka_unit_test(test_http_kv_sliding_real_time),
        cmocka_unit_test(test_http_kv_sliding_rejected),
        cmocka_unit_test(test_http_kv_read_and_delete),
        cmocka_unit_test(test_http_kv_read_and_delete_one_winner),
        cmocka_unit_test(test_http_kv_patch),
        cmocka_unit_test(test_http_kv_concurrent_patches),
    };
    const struct CMUnitTest body_limit[] = {
        cmocka_unit_test(test_http_kv_body_at_limit),
        cmocka_unit_test(test_http_kv_body_too_large),
    };
    const struct CMUnitTest auth[] = {
        cmocka_unit_test(test_http_auth_refused),
        cmocka_unit_test(test_http_auth_accepted),
        cmocka_unit_test(test_http_auth_healthz_open),
        cmocka_unit_test(test_http_auth_token_from_env),
        cmocka_unit_test(test_http_auth_hotkeys),
    };
    const struct CMUnitTest lifecycle[] = {
        cmocka_unit_test_setup_teardown(test_http_kv_survives_kill, setup_default,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_writes_share_transactions, setup_one_worker,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_graceful_stop, setup_default,
                                        daemon_fixture_stop),
        cmocka_unit_test(test_http_startup_bad_flag_value),
        cmocka_unit_test(test_http_startup_usage_error),
        cmocka_unit_test(test_http_startup_unwritable_db),
        cmocka_unit_test(test_http_startup_help_and_version),
    };
    int failed = cmocka_run_group_tests_name("kv", kv, setup_default, daemon_fixture_stop);
    failed += cmocka_run_group_tests_name("body_limit", body_limit, setup_small_body,
                                          daemon_fixture_stop);
    failed += cmocka_run_group_tests_name("auth", auth, setup_auth, daemon_fixture_stop);
    failed += cmocka_run_group_tests_name("lifecycle", lifecycle, NULL, NULL);
    curl_global_cleanup();
    int stop_failures = daemon_fixture_stop_failures();
    if (stop_failures)
        fprintf(stderr, "%d daemon(s) did not exit 0 on SIGTERM\n", stop_failures);
    return failed || stop_failures ? 1 : 0;
}
