/*
 * test_http_txn.c - POST /v1/txn over real HTTP against the daemon
 * (CONTRACT.md "Transactions", api/openapi.yaml): every answer shape,
 * both branches, get after put, value_base64, 409 not_integer with
 * op_index rolling everything back, versions, no stale read after a
 * transaction, every 400, the 128 bound, 405, 413, 401; and, on
 * PostgreSQL (tests/pg/test_http_txn.pg), a cluster of two nodes: a
 * transaction answered on node A is seen at once by GETs on node B, whose
 * memory tier held the old values.
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

#include <cmocka.h>
#include <curl/curl.h>

#include "cluster.h"
#include "daemon.h"
#include "testutil.h"

#define TOKEN "txn-token"

static int setup_default(void **state)
{
    return daemon_fixture_start(state, NULL);
}

static int setup_small_body(void **state)
{
    static const char *const args[] = {"--max-body", "1024", NULL};
    return daemon_fixture_start(state, args);
}

static int setup_auth(void **state)
{
    static const char *const args[] = {"--auth-token", TOKEN, NULL};
    return daemon_fixture_start(state, args);
}

/* POST /v1/txn with body; asserts the status; the parsed body (caller
 * decrefs). */
static json_t *txn(const daemon_t *d, const char *body, long status)
{
    client_resp_t r = client_req(d, "POST", "/v1/txn", NULL, body, strlen(body));
    if (r.status != status)
        fail_msg("POST /v1/txn %.200s: expected %ld, got %ld: %.400s", body, status, r.status,
                 r.body);
    if (status >= 400) {
        char *ct = client_header(&r, "Content-Type");
        assert_non_null(ct);
        assert_string_equal(ct, "application/problem+json");
        free(ct);
    }
    json_t *j = client_json(&r);
    client_resp_free(&r);
    assert_non_null(j);
    return j;
}

/* PUT a value; its version. */
static int64_t put(const daemon_t *d, const char *key, const char *value)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    client_resp_t r = client_req(d, "PUT", path, NULL, value, strlen(value));
    assert_true(r.status == 200 || r.status == 201);
    json_t *j = client_json(&r);
    int64_t v = json_integer_value(json_object_get(j, "version"));
    json_decref(j);
    client_resp_free(&r);
    return v;
}

/* GET: status, and the body in *value (malloc'd) and ETag version. */
static long get(const daemon_t *d, const char *key, char **value, int64_t *version)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    client_resp_t r = client_req(d, "GET", path, NULL, NULL, 0);
    long st = r.status;
    if (value)
        *value = st == 200 ? strdup(r.body) : NULL;
    if (version) {
        char *etag = client_header(&r, "ETag");
        *version = etag ? strtoll(etag + 1, NULL, 10) : 0;
        free(etag);
    }
    client_resp_free(&r);
    return st;
}

static void value_is(const daemon_t *d, const char *key, const char *want, int64_t ver)
{
    char *v = NULL;
    int64_t got;
    assert_int_equal(get(d, key, &v, &got), 200);
    assert_string_equal(v, want);
    if (ver > 0)
        assert_int_equal(got, ver);
    free(v);
}

static json_t *result(json_t *body, size_t i)
{
    json_t *r = json_array_get(json_object_get(body, "results"), i);
    assert_non_null(r);
    return r;
}

static int64_t jint(json_t *o, const char *m)
{
    json_t *v = json_object_get(o, m);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *m)
{
    json_t *v = json_object_get(o, m);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* ------------------------------------------------------------------------
 * The contract's rows
 * ------------------------------------------------------------------------ */

/* Compares hold: success ops in order, one result each, in the contract's
 * shapes; a get sees the put before it; versions above every earlier one. */
static void test_http_txn_success(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    int64_t va = put(d, "s-a", "1");
    int64_t vb = put(d, "s-b", "gone soon");
    char body[1024];
    snprintf(body, sizeof body,
             "{\"compare\": [{\"key\": \"s-a\", \"version\": %lld},"
             " {\"key\": \"s-new\", \"exists\": false}],"
             " \"success\": [{\"op\": \"put\", \"key\": \"s-new\", \"value\": \"h\\u00e9llo\","
             " \"content_type\": \"text/plain\", \"ttl\": 600},"
             " {\"op\": \"get\", \"key\": \"s-new\"},"
             " {\"op\": \"incr\", \"key\": \"s-a\", \"by\": 41},"
             " {\"op\": \"incr\", \"key\": \"s-ctr\"},"
             " {\"op\": \"delete\", \"key\": \"s-b\"},"
             " {\"op\": \"delete\", \"key\": \"s-b\"},"
             " {\"op\": \"get\", \"key\": \"s-b\"}],"
             " \"failure\": [{\"op\": \"put\", \"key\": \"s-never\", \"value\": \"x\"}]}",
             (long long)va);
    json_t *j = txn(d, body, 200);
    assert_true(json_is_true(json_object_get(j, "succeeded")));
    assert_int_equal(json_array_size(json_object_get(j, "results")), 7);
    json_t *r = result(j, 0);
    assert_string_equal(jstr(r, "op"), "put");
    assert_string_equal(jstr(r, "key"), "s-new");
    int64_t vput = jint(r, "version");
    assert_true(vput > vb);
    r = result(j, 1);
    assert_string_equal(jstr(r, "op"), "get");
    assert_true(json_is_true(json_object_get(r, "found")));
    assert_string_equal(jstr(r, "value"), "h\xc3\xa9llo");
    assert_string_equal(jstr(r, "content_type"), "text/plain");
    assert_int_equal(jint(r, "version"), vput);
    r = result(j, 2);
    assert_string_equal(jstr(r, "op"), "incr");
    assert_int_equal(jint(r, "value"), 42);
    int64_t vincr = jint(r, "version");
    assert_true(vincr > vput);
    assert_int_equal(jint(result(j, 3), "value"), 1);
    r = result(j, 4);
    assert_string_equal(jstr(r, "op"), "delete");
    assert_true(json_is_true(json_object_get(r, "deleted")));
    assert_true(json_is_false(json_object_get(result(j, 5), "deleted")));
    r = result(j, 6);
    assert_true(json_is_false(json_object_get(r, "found")));
    assert_true(json_is_null(json_object_get(r, "value")));
    assert_true(json_is_null(json_object_get(r, "content_type")));
    assert_true(json_is_null(json_object_get(r, "version")));
    json_decref(j);
    value_is(d, "s-a", "42", vincr);
    value_is(d, "s-new", "h\xc3\xa9llo", vput);
    assert_int_equal(get(d, "s-b", NULL, NULL), 404);
    assert_int_equal(get(d, "s-never", NULL, NULL), 404);
    assert_true(put(d, "s-after", "1") > vincr);
}

/* A compare that does not hold runs the failure ops only. */
static void test_http_txn_failure_branch(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    int64_t v = put(d, "f-a", "1");
    char body[512];
    snprintf(body, sizeof body,
             "{\"compare\": [{\"key\": \"f-a\", \"version\": %lld}],"
             " \"success\": [{\"op\": \"put\", \"key\": \"f-a\", \"value\": \"2\"}],"
             " \"failure\": [{\"op\": \"get\", \"key\": \"f-a\"},"
             " {\"op\": \"put\", \"key\": \"f-b\", \"value\": \"fallback\"}]}",
             (long long)v + 1000);
    json_t *j = txn(d, body, 200);
    assert_true(json_is_false(json_object_get(j, "succeeded")));
    assert_int_equal(json_array_size(json_object_get(j, "results")), 2);
    assert_string_equal(jstr(result(j, 0), "value"), "1");
    assert_int_equal(jint(result(j, 0), "version"), v);
    json_decref(j);
    value_is(d, "f-a", "1", v);
    value_is(d, "f-b", "fallback", 0);
    /* only success, no compare: succeeded */
    j = txn(d, "{\"success\": []}", 200);
    assert_true(json_is_true(json_object_get(j, "succeeded")));
    assert_int_equal(json_array_size(json_object_get(j, "results")), 0);
    json_decref(j);
    /* exists: true on an absent key fails */
    j = txn(d, "{\"compare\": [{\"key\": \"f-none\", \"exists\": true}], \"success\": []}", 200);
    assert_true(json_is_false(json_object_get(j, "succeeded")));
    json_decref(j);
}

/* A get of bytes that are not UTF-8 answers value_base64. */
static void test_http_txn_value_base64(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    static const char *const ct[] = {"Content-Type: application/x-bin", NULL};
    client_resp_t r = client_req(d, "PUT", "/v1/kv/b64", ct, "\xff\xfe\x00", 3);
    assert_int_equal(r.status, 201);
    client_resp_free(&r);
    json_t *j = txn(d, "{\"success\": [{\"op\": \"get\", \"key\": \"b64\"}]}", 200);
    json_t *g = result(j, 0);
    assert_null(json_object_get(g, "value"));
    assert_string_equal(jstr(g, "value_base64"), "//4A");
    assert_string_equal(jstr(g, "content_type"), "application/x-bin");
    json_decref(j);
}

/* An incr of a non-integer: 409 not_integer with op_index, and nothing of
 * the transaction stored. */
static void test_http_txn_not_integer_rolls_back(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    int64_t va = put(d, "n-a", "1");
    int64_t vt = put(d, "n-text", "hello");
    json_t *j = txn(d,
                    "{\"success\": [{\"op\": \"put\", \"key\": \"n-a\", \"value\": \"2\"},"
                    " {\"op\": \"delete\", \"key\": \"n-text\"},"
                    " {\"op\": \"put\", \"key\": \"n-text\", \"value\": \"x\"},"
                    " {\"op\": \"put\", \"key\": \"n-created\", \"value\": \"1\"},"
                    " {\"op\": \"incr\", \"key\": \"n-text\"}]}",
                    409);
    assert_string_equal(jstr(j, "code"), "not_integer");
    assert_int_equal(jint(j, "op_index"), 4);
    assert_int_equal(jint(j, "status"), 409);
    json_decref(j);
    value_is(d, "n-a", "1", va);
    value_is(d, "n-text", "hello", vt);
    assert_int_equal(get(d, "n-created", NULL, NULL), 404);
    /* in the failure branch too */
    j = txn(d,
            "{\"compare\": [{\"key\": \"n-a\", \"exists\": false}], \"success\": [],"
            " \"failure\": [{\"op\": \"incr\", \"key\": \"n-a\"},"
            " {\"op\": \"incr\", \"key\": \"n-text\", \"by\": 2}]}",
            409);
    assert_int_equal(jint(j, "op_index"), 1);
    json_decref(j);
    value_is(d, "n-a", "1", va);
}

/* No stale read: keys held by the memory tier are served with the
 * transaction's writes right after its answer. */
static void test_http_txn_no_stale_read(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    put(d, "t-hot", "old");
    put(d, "t-del", "old");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get(d, "t-hot", NULL, NULL), 200);
        assert_int_equal(get(d, "t-del", NULL, NULL), 200);
    }
    json_t *j = txn(d,
                    "{\"success\": [{\"op\": \"put\", \"key\": \"t-hot\", \"value\": \"new\"},"
                    " {\"op\": \"delete\", \"key\": \"t-del\"}]}",
                    200);
    int64_t v = jint(result(j, 0), "version");
    json_decref(j);
    value_is(d, "t-hot", "new", v);
    assert_int_equal(get(d, "t-del", NULL, NULL), 404);
}

/* Every malformed body is 400 with a problem naming what is wrong. */
static void test_http_txn_bad_requests(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    static const struct {
        const char *body, *code, *detail;
    } cases[] = {
        {"{", "invalid_json", NULL},
        {"", "invalid_json", NULL},
        {"[]", "invalid_argument", "object"},
        {"{\"success\": [], \"other\": 1}", "invalid_argument", "other"},
        {"{\"compare\": []}", "invalid_argument", "success"},
        {"{\"success\": {}}", "invalid_argument", "success"},
        {"{\"success\": [], \"failure\": 3}", "invalid_argument", "failure"},
        {"{\"success\": [1]}", "invalid_argument", "success[0]"},
        {"{\"success\": [{\"key\": \"k\"}]}", "invalid_argument", "success[0].op"},
        {"{\"success\": [{\"op\": \"set\", \"key\": \"k\"}]}", "invalid_argument", "op"},
        {"{\"success\": [{\"op\": \"get\"}]}", "invalid_argument", "success[0].key"},
        {"{\"success\": [{\"op\": \"get\", \"key\": \"\"}]}", "invalid_argument", "key"},
        {"{\"success\": [{\"op\": \"get\", \"key\": 5}]}", "invalid_argument", "key"},
        {"{\"success\": [{\"op\": \"get\", \"key\": \"k\", \"value\": \"v\"}]}", "invalid_argument",
         "value"},
        {"{\"success\": [{\"op\": \"delete\", \"key\": \"k\", \"by\": 1}]}", "invalid_argument",
         "by"},
        {"{\"success\": [{\"op\": \"put\", \"key\": \"k\"}]}", "invalid_argument",
         "success[0].value"},
        {"{\"success\": [{\"op\": \"put\", \"key\": \"k\", \"value\": 1}]}", "invalid_argument",
         "value"},
        {"{\"success\": [{\"op\": \"put\", \"key\": \"k\", \"value\": \"v\", \"ttl\": 0}]}",
         "invalid_argument", "ttl"},
        {"{\"success\": [{\"op\": \"put\", \"key\": \"k\", \"value\": \"v\", \"ttl\": \"5\"}]}",
         "invalid_argument", "ttl"},
        {"{\"success\": [{\"op\": \"put\", \"key\": \"k\", \"value\": \"v\", \"ttl\": -1}]}",
         "invalid_argument", "ttl"},
        {"{\"success\": [{\"op\": \"put\", \"key\": \"k\", \"value\": \"v\", "
         "\"content_type\": \"\"}]}",
         "invalid_argument", "content_type"},
        {"{\"success\": [{\"op\": \"incr\", \"key\": \"k\", \"by\": 1.5}]}", "invalid_argument",
         "by"},
        {"{\"success\": [{\"op\": \"incr\", \"key\": \"k\", \"by\": \"1\"}]}", "invalid_argument",
         "by"},
        {"{\"compare\": [{\"key\": \"k\"}], \"success\": []}", "invalid_argument", "compare[0]"},
        {"{\"compare\": [{\"key\": \"k\", \"version\": 1, \"exists\": true}], \"success\": []}",
         "invalid_argument", "exactly one"},
        {"{\"compare\": [{\"key\": \"k\", \"version\": -1}], \"success\": []}", "invalid_argument",
         "version"},
        {"{\"compare\": [{\"key\": \"k\", \"version\": \"1\"}], \"success\": []}",
         "invalid_argument", "version"},
        {"{\"compare\": [{\"key\": \"k\", \"exists\": 1}], \"success\": []}", "invalid_argument",
         "exists"},
        {"{\"compare\": [{\"key\": \"k\", \"exists\": true, \"x\": 1}], \"success\": []}",
         "invalid_argument", "x"},
        {"{\"success\": [{\"op\": \"get\", \"key\": \"a\\u0000b\"}]}", "invalid_argument", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        client_resp_t r =
            client_req(d, "POST", "/v1/txn", NULL, cases[i].body, strlen(cases[i].body));
        json_t *j = client_json(&r);
        if (r.status != 400 || !j || strcmp(jstr(j, "code"), cases[i].code) != 0 ||
            (cases[i].detail && !strstr(jstr(j, "detail"), cases[i].detail)))
            fail_msg("case %zu %s: got %ld %s", i, cases[i].body, r.status, r.body);
        json_decref(j);
        client_resp_free(&r);
    }
    /* a key of 513 bytes */
    char big[700];
    char key[514];
    memset(key, 'k', 513);
    key[513] = '\0';
    snprintf(big, sizeof big, "{\"success\": [{\"op\": \"get\", \"key\": \"%s\"}]}", key);
    json_decref(txn(d, big, 400));
    key[512] = '\0';
    snprintf(big, sizeof big, "{\"success\": [{\"op\": \"get\", \"key\": \"%s\"}]}", key);
    json_decref(txn(d, big, 200));
    assert_int_equal(get(d, "b-never", NULL, NULL), 404);
}

/* At most 128 compares and ops in all: 128 is served, 129 is 400. */
static void test_http_txn_bound(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    for (int n = 128; n <= 129; n++) {
        size_t cap = 64 + (size_t)n * 64;
        char *body = malloc(cap);
        size_t o = (size_t)snprintf(body, cap, "{\"compare\": [");
        for (int i = 0; i < 40; i++)
            o += (size_t)snprintf(body + o, cap - o, "%s{\"key\": \"bd%d\", \"exists\": false}",
                                  i ? ", " : "", i);
        o += (size_t)snprintf(body + o, cap - o, "], \"success\": [");
        for (int i = 40; i < 100; i++)
            o += (size_t)snprintf(body + o, cap - o,
                                  "%s{\"op\": \"put\", \"key\": \"bd%d\", \"value\": \"v\"}",
                                  i > 40 ? ", " : "", i);
        o += (size_t)snprintf(body + o, cap - o, "], \"failure\": [");
        for (int i = 100; i < n; i++)
            o += (size_t)snprintf(body + o, cap - o, "%s{\"op\": \"get\", \"key\": \"bd%d\"}",
                                  i > 100 ? ", " : "", i);
        snprintf(body + o, cap - o, "]}");
        json_t *j = txn(d, body, n == 128 ? 200 : 400);
        if (n == 128)
            assert_int_equal(json_array_size(json_object_get(j, "results")), 60);
        else
            assert_non_null(strstr(jstr(j, "detail"), "128"));
        json_decref(j);
        free(body);
    }
}

static void test_http_txn_method_not_allowed(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    client_resp_t r = client_req(d, "GET", "/v1/txn", NULL, NULL, 0);
    assert_int_equal(r.status, 405);
    char *allow = client_header(&r, "Allow");
    assert_non_null(allow);
    assert_non_null(strstr(allow, "POST"));
    free(allow);
    client_resp_free(&r);
}

/* A body above --max-body: 413, nothing stored. */
static void test_http_txn_body_too_large(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    char body[2048];
    char value[1500];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    snprintf(body, sizeof body,
             "{\"success\": [{\"op\": \"put\", \"key\": \"big\", \"value\": \"%s\"}]}", value);
    json_t *j = txn(d, body, 413);
    assert_string_equal(jstr(j, "code"), "payload_too_large");
    json_decref(j);
    assert_int_equal(get(d, "big", NULL, NULL), 404);
}

static void test_http_txn_auth(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    const char *body = "{\"success\": [{\"op\": \"put\", \"key\": \"au\", \"value\": \"1\"}]}";
    client_resp_t r = client_req(d, "POST", "/v1/txn", NULL, body, strlen(body));
    assert_int_equal(r.status, 401);
    client_resp_free(&r);
    static const char *const bearer[] = {"Authorization: Bearer " TOKEN, NULL};
    r = client_req(d, "POST", "/v1/txn", bearer, body, strlen(body));
    assert_int_equal(r.status, 200);
    client_resp_free(&r);
}

/* ------------------------------------------------------------------------
 * Stress over HTTP: 16 clients move units between 8 keys with
 * compare-and-swap transactions (on one daemon, or spread over the nodes
 * of a cluster); every transaction that reads all 8 keys sees the same
 * sum, and so does a plain GET of each at the end, on every node.
 * ------------------------------------------------------------------------ */

#define HS_KEYS 8
#define HS_CLIENTS 16
#define HS_MOVES 15
#define HS_UNITS 100

typedef struct hstress {
    daemon_t *nodes[2];
    int nnodes;
    unsigned seed;
    int moves, conflicts, bad_sums, errors;
} hstress_t;

/* POST a body; the parsed 200 answer or NULL (no assert: other threads). */
static json_t *hs_post(const daemon_t *d, const char *body)
{
    client_resp_t r;
    json_t *j = NULL;
    if (client_request(d, "POST", "/v1/txn", NULL, body, strlen(body), &r) == 0 && r.status == 200)
        j = client_json(&r);
    client_resp_free(&r);
    return j;
}

/* All keys in one transaction: values and versions; -1 on error. */
static int hs_read(const daemon_t *d, int64_t vals[], int64_t vers[], int64_t *sum)
{
    char body[1024];
    size_t o = (size_t)snprintf(body, sizeof body, "{\"success\": [");
    for (int i = 0; i < HS_KEYS; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s{\"op\": \"get\", \"key\": \"hs-%d\"}",
                              i ? ", " : "", i);
    snprintf(body + o, sizeof body - o, "]}");
    json_t *j = hs_post(d, body);
    json_t *res = json_object_get(j, "results");
    int rc = json_array_size(res) == HS_KEYS ? 0 : -1;
    *sum = 0;
    for (int i = 0; rc == 0 && i < HS_KEYS; i++) {
        json_t *r = json_array_get(res, (size_t)i);
        const char *v = json_string_value(json_object_get(r, "value"));
        json_t *ver = json_object_get(r, "version");
        if (!v || !json_is_integer(ver)) {
            rc = -1;
            break;
        }
        vals[i] = strtoll(v, NULL, 10);
        vers[i] = json_integer_value(ver);
        *sum += vals[i];
    }
    json_decref(j);
    return rc;
}

static void *hs_client(void *arg)
{
    hstress_t *s = arg;
    int64_t vals[HS_KEYS], vers[HS_KEYS], sum;
    for (int n = 0, tries = 0; n < HS_MOVES && tries < 100 * HS_MOVES; tries++) {
        const daemon_t *d = s->nodes[rand_r(&s->seed) % (unsigned)s->nnodes];
        if (hs_read(d, vals, vers, &sum) != 0) {
            s->errors++;
            return NULL;
        }
        s->bad_sums += sum != HS_KEYS * HS_UNITS;
        int a = (int)(rand_r(&s->seed) % HS_KEYS);
        int b = (a + 1 + (int)(rand_r(&s->seed) % (HS_KEYS - 1))) % HS_KEYS;
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"compare\": [{\"key\": \"hs-%d\", \"version\": %lld},"
                 " {\"key\": \"hs-%d\", \"version\": %lld}],"
                 " \"success\": [{\"op\": \"put\", \"key\": \"hs-%d\", \"value\": \"%lld\"},"
                 " {\"op\": \"put\", \"key\": \"hs-%d\", \"value\": \"%lld\"}]}",
                 a, (long long)vers[a], b, (long long)vers[b], a, (long long)(vals[a] - 1), b,
                 (long long)(vals[b] + 1));
        d = s->nodes[rand_r(&s->seed) % (unsigned)s->nnodes];
        json_t *j = hs_post(d, body);
        if (!j) {
            s->errors++;
            return NULL;
        }
        if (json_is_true(json_object_get(j, "succeeded")))
            n++, s->moves++;
        else
            s->conflicts++;
        json_decref(j);
    }
    return NULL;
}

static void http_stress(daemon_t *const nodes[], int nnodes)
{
    char v[16];
    snprintf(v, sizeof v, "%d", HS_UNITS);
    for (int i = 0; i < HS_KEYS; i++) {
        char k[16];
        snprintf(k, sizeof k, "hs-%d", i);
        put(nodes[0], k, v);
    }
    hstress_t s[HS_CLIENTS];
    pthread_t th[HS_CLIENTS];
    for (int i = 0; i < HS_CLIENTS; i++) {
        s[i] = (hstress_t){.nnodes = nnodes, .seed = (unsigned)(i * 104729 + 7)};
        for (int k = 0; k < nnodes; k++)
            s[i].nodes[k] = nodes[k];
        assert_int_equal(pthread_create(&th[i], NULL, hs_client, &s[i]), 0);
    }
    int moves = 0, conflicts = 0, bad = 0, errors = 0;
    for (int i = 0; i < HS_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        moves += s[i].moves, conflicts += s[i].conflicts, bad += s[i].bad_sums;
        errors += s[i].errors;
    }
    print_message("http stress (%d node%s): %d moves, %d compare failures, %d bad sums, "
                  "%d errors\n",
                  nnodes, nnodes > 1 ? "s" : "", moves, conflicts, bad, errors);
    assert_int_equal(errors, 0);
    assert_int_equal(bad, 0);
    assert_int_equal(moves, HS_CLIENTS * HS_MOVES);
    for (int k = 0; k < nnodes; k++) { /* plain GETs (memory tier) on every node */
        int64_t sum = 0;
        for (int i = 0; i < HS_KEYS; i++) {
            char key[16], *val = NULL;
            snprintf(key, sizeof key, "hs-%d", i);
            assert_int_equal(get(nodes[k], key, &val, NULL), 200);
            sum += strtoll(val, NULL, 10);
            free(val);
        }
        assert_int_equal(sum, HS_KEYS * HS_UNITS);
    }
}

static void test_http_txn_stress(void **state)
{
    daemon_t *d = &((daemon_fixture_t *)*state)->d;
    daemon_t *nodes[] = {d};
    http_stress(nodes, 1);
}

/* ------------------------------------------------------------------------
 * Cluster (PostgreSQL form only): a transaction on node A, GETs on node B
 * ------------------------------------------------------------------------ */

/* The value and ETag of key on node d as the model expects? (no assert) */
static bool is_current(const daemon_t *d, const char *key, const char *want, int64_t ver)
{
    char *v = NULL;
    int64_t got = 0;
    long st = get(d, key, &v, &got);
    bool ok = want ? st == 200 && strcmp(v, want) == 0 && (ver <= 0 || got == ver) : st == 404;
    free(v);
    return ok;
}

/* 20 rounds on two nodes: node B caches two keys, a transaction on node A
 * moves a unit between them, creates a key and then deletes one; B must
 * answer each change at once. Returns how many of B's reads were stale. */
static int cluster_rounds(bool sabotage)
{
    cluster_t c;
    memset(&c, 0, sizeof c);
    static const char *const args[] = {"--threads", "2", NULL};
    static const char *const broken[] = {"--threads", "2", "--testing-skip-cluster-invalidation",
                                         NULL};
    assert_int_equal(cluster_start(&c, 2, sabotage ? broken : args), 0);
    daemon_t *a = cluster_node(&c, 0), *b = cluster_node(&c, 1);
    int stale = 0;
    for (int round = 0; round < 20; round++) {
        char k1[32], k2[32], k3[32], body[512];
        snprintf(k1, sizeof k1, "cl-a%d", round);
        snprintf(k2, sizeof k2, "cl-b%d", round);
        snprintf(k3, sizeof k3, "cl-new%d", round);
        int64_t v1 = put(b, k1, "10"), v2 = put(b, k2, "0");
        for (int i = 0; i < 2; i++) { /* node B caches both, and k3's absence */
            assert_int_equal(get(b, k1, NULL, NULL), 200);
            assert_int_equal(get(b, k2, NULL, NULL), 200);
            assert_int_equal(get(b, k3, NULL, NULL), 404);
        }
        snprintf(body, sizeof body,
                 "{\"compare\": [{\"key\": \"%s\", \"version\": %lld},"
                 " {\"key\": \"%s\", \"version\": %lld}],"
                 " \"success\": [{\"op\": \"incr\", \"key\": \"%s\", \"by\": -1},"
                 " {\"op\": \"incr\", \"key\": \"%s\", \"by\": 1},"
                 " {\"op\": \"put\", \"key\": \"%s\", \"value\": \"x\"}]}",
                 k1, (long long)v1, k2, (long long)v2, k1, k2, k3);
        json_t *j = txn(a, body, 200);
        assert_true(json_is_true(json_object_get(j, "succeeded")));
        int64_t n1 = jint(result(j, 0), "version"), n2 = jint(result(j, 1), "version");
        json_decref(j);
        stale += !is_current(b, k1, "9", n1);
        stale += !is_current(b, k2, "1", n2);
        stale += !is_current(b, k3, "x", 0);
        /* a delete through a transaction on A: B answers 404 at once */
        snprintf(body, sizeof body, "{\"success\": [{\"op\": \"delete\", \"key\": \"%s\"}]}", k1);
        json_decref(txn(a, body, 200));
        stale += !is_current(b, k1, NULL, 0);
    }
    if (!sabotage) { /* and the stress test spread over both nodes */
        daemon_t *nodes[] = {a, b};
        http_stress(nodes, 2);
    }
    assert_int_equal(cluster_stop(&c), 0);
    return stale;
}

static void skip_unless_pg(void)
{
    if (!testutil_backend_pg()) {
        print_message("skipped on SQLite: a cluster needs PostgreSQL "
                      "(tests/pg/test_http_txn.pg)\n");
        skip();
    }
}

static void test_http_txn_cluster(void **state)
{
    (void)state;
    skip_unless_pg();
    int stale = cluster_rounds(false);
    print_message("cluster: %d stale reads on node B after transactions on node A\n", stale);
    assert_int_equal(stale, 0);
}

/* The same against nodes that skip the cross-node invalidation: the check
 * must see stale reads, or it would pass a broken cluster. */
static void test_http_txn_cluster_not_blind(void **state)
{
    (void)state;
    skip_unless_pg();
    int stale = cluster_rounds(true);
    print_message("cluster without invalidation: %d stale reads\n", stale);
    assert_true(stale > 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest txn_tests[] = {
        cmocka_unit_test(test_http_txn_success),
        cmocka_unit_test(test_http_txn_failure_branch),
        cmocka_unit_test(test_http_txn_value_base64),
        cmocka_unit_test(test_http_txn_not_integer_rolls_back),
        cmocka_unit_test(test_http_txn_no_stale_read),
        cmocka_unit_test(test_http_txn_bad_requests),
        cmocka_unit_test(test_http_txn_bound),
        cmocka_unit_test(test_http_txn_method_not_allowed),
        cmocka_unit_test(test_http_txn_stress),
    };
    const struct CMUnitTest body_limit[] = {
        cmocka_unit_test(test_http_txn_body_too_large),
    };
    const struct CMUnitTest auth[] = {
        cmocka_unit_test(test_http_txn_auth),
    };
    const struct CMUnitTest cluster[] = {
        cmocka_unit_test(test_http_txn_cluster),
        cmocka_unit_test(test_http_txn_cluster_not_blind),
    };
    int failed = cmocka_run_group_tests_name("txn", txn_tests, setup_default, daemon_fixture_stop);
    failed += cmocka_run_group_tests_name("body_limit", body_limit, setup_small_body,
                                          daemon_fixture_stop);
    failed += cmocka_run_group_tests_name("auth", auth, setup_auth, daemon_fixture_stop);
    failed += cmocka_run_group_tests_name("cluster", cluster, NULL, NULL);
    curl_global_cleanup();
    int stop_failures = daemon_fixture_stop_failures();
    if (stop_failures)
        fprintf(stderr, "%d daemon(s) did not exit 0 on SIGTERM\n", stop_failures);
    return failed || stop_failures ? 1 : 0;
}
