/*
 * test_http_seckill.c - the flash-sale contract over real HTTP against the
 * daemon: each endpoint and error, the invariants under concurrent
 * clients, both strategies, and a SIGKILL + restart.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

typedef daemon_fixture_t fixture_t;

static int setup(void **state)
{
    static const char *const args[] = {"--durability", "normal", "--threads", "4", NULL};
    return daemon_fixture_start(state, args);
}

static int setup_version(void **state)
{
    static const char *const args[] = {
        "--durability",      "normal", "--threads", "8", "--seckill-strategy", "version",
        "--seckill-retries", "0",      NULL};
    return daemon_fixture_start(state, args);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static const char *const JSON_HEADERS[] = {"Content-Type: application/json", NULL};

/* One request with a text body (NULL: none); asserts a response came. */
static client_resp_t call(const fixture_t *f, const char *method, const char *path,
                          const char *body)
{
    client_resp_t r;
    assert_int_equal(client_request(&f->d, method, path, body ? JSON_HEADERS : NULL, body,
                                    body ? strlen(body) : 0, &r),
                     0);
    return r;
}

/* Assert a problem answer with this status and code. */
static void expect_problem(const fixture_t *f, const char *method, const char *path,
                           const char *body, long status, const char *code)
{
    client_resp_t r = call(f, method, path, body);
    if (r.status != status)
        fail_msg("%s %s %s: got %ld %s, want %ld %s", method, path, body ? body : "", r.status,
                 r.body, status, code);
    char *ct = client_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_string_equal(ct, "application/problem+json");
    free(ct);
    json_t *j = client_json(&r);
    assert_non_null(j);
    if (strcmp(json_string_value(json_object_get(j, "code")), code) != 0)
        fail_msg("%s %s %s: code %s, want %s", method, path, body ? body : "",
                 json_string_value(json_object_get(j, "code")), code);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    json_decref(j);
    client_resp_free(&r);
}

/* A 2xx JSON answer with this status; returns the parsed body. */
static json_t *expect_json(const fixture_t *f, const char *method, const char *path,
                           const char *body, long status)
{
    client_resp_t r = call(f, method, path, body);
    if (r.status != status)
        fail_msg("%s %s %s: got %ld %s, want %ld", method, path, body ? body : "", r.status, r.body,
                 status);
    char *ct = client_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_string_equal(ct, "application/json");
    free(ct);
    json_t *j = client_json(&r);
    assert_non_null(j);
    client_resp_free(&r);
    return j;
}

static json_int_t jint(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *jstr(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void put_item(const fixture_t *f, const char *id, int stock)
{
    char path[256], body[128];
    snprintf(path, sizeof path, "/v1/items/%s", id);
    snprintf(body, sizeof body, "{\"name\": \"Item %s\", \"stock\": %d}", id, stock);
    client_resp_t r = call(f, "PUT", path, body);
    assert_true(r.status == 200 || r.status == 201);
    client_resp_free(&r);
}

/* POST an order; returns the HTTP status. */
static long place(const fixture_t *f, const char *id, const char *user)
{
    char path[256], body[256];
    snprintf(path, sizeof path, "/v1/items/%s/orders", id);
    snprintf(body, sizeof body, "{\"user_id\": \"%s\"}", user);
    client_resp_t r = call(f, "POST", path, body);
    long status = r.status;
    client_resp_free(&r);
    return status;
}

static void expect_item(const fixture_t *f, const char *id, json_int_t stock, json_int_t sold)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/items/%s", id);
    json_t *it = expect_json(f, "GET", path, NULL, 200);
    assert_int_equal(jint(it, "stock"), stock);
    assert_int_equal(jint(it, "sold"), sold);
    json_decref(it);
}

/* Every order of the item (all pages), as one JSON array. */
static json_t *all_orders(const fixture_t *f, const char *id)
{
    json_t *all = json_array();
    json_int_t after = 0;
    for (;;) {
        char path[256];
        snprintf(path, sizeof path, "/v1/items/%s/orders?limit=7&after=%lld", id, (long long)after);
        json_t *page = expect_json(f, "GET", path, NULL, 200);
        json_array_extend(all, json_object_get(page, "orders"));
        json_t *next = json_object_get(page, "next");
        bool more = json_is_integer(next);
        if (more)
            after = json_integer_value(next);
        json_decref(page);
        if (!more)
            return all;
    }
}

/* ------------------------------------------------------------------------
 * Items
 * ------------------------------------------------------------------------ */

static void test_http_seckill_item_put_and_get(void **state)
{
    fixture_t *f = *state;
    json_t *it = expect_json(f, "PUT", "/v1/items/sku-1",
                             "{\"name\": \"Limited sneaker\", \"stock\": 100}", 201);
    assert_string_equal(jstr(it, "id"), "sku-1");
    assert_string_equal(jstr(it, "name"), "Limited sneaker");
    assert_int_equal(jint(it, "stock"), 100);
    assert_int_equal(jint(it, "sold"), 0);
    json_int_t v1 = jint(it, "version");
    assert_int_equal(json_object_size(it), 6);
    json_decref(it);

    client_resp_t r = call(f, "GET", "/v1/items/sku-1", NULL);
    assert_int_equal(r.status, 200);
    char *xcache = client_header(&r, "X-Cache");
    assert_non_null(xcache);
    assert_true(strcmp(xcache, "MISS") == 0 || strcmp(xcache, "HIT") == 0);
    free(xcache);
    it = client_json(&r);
    client_resp_free(&r);
    assert_int_equal(jint(it, "version"), v1);
    assert_int_equal(json_object_size(it), 6);
    json_decref(it);

    it = expect_json(f, "PUT", "/v1/items/sku-1", "{\"stock\": 3, \"name\": \"Boot\"}", 200);
    assert_string_equal(jstr(it, "name"), "Boot");
    assert_int_equal(jint(it, "stock"), 3);
    assert_true(jint(it, "version") > v1);
    json_decref(it);
    /* an id with an encoded slash and non-ASCII characters */
    it = expect_json(f, "PUT", "/v1/items/a%2Fb%C3%A9", "{\"name\": \"x\", \"stock\": 0}", 201);
    assert_string_equal(jstr(it, "id"), "a/b\xc3\xa9");
    json_decref(it);
    expect_item(f, "a%2Fb%C3%A9", 0, 0);
    expect_problem(f, "GET", "/v1/items/none", NULL, 404, "not_found");
}

static void test_http_seckill_item_bad_input(void **state)
{
    fixture_t *f = *state;
    const char *P = "/v1/items/x";
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"stock\": ", 400, "invalid_json");
    expect_problem(f, "PUT", P, "", 400, "invalid_json");
    expect_problem(f, "PUT", P, "[1]", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"stock\": 1}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"\", \"stock\": 1}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": 5, \"stock\": 1}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": null, \"stock\": 1}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\"}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"stock\": -1}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"stock\": 1.5}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"stock\": 5.0}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"stock\": \"5\"}", 400, "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"stock\": 2147483648}", 400,
                   "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"stock\": 1, \"price\": 3}", 400,
                   "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"n\", \"name\": \"m\", \"stock\": 1}", 400,
                   "invalid_argument");
    expect_problem(f, "PUT", P, "{\"name\": \"a\\u0000b\", \"stock\": 1}", 400, "invalid_argument");
    char body[400];
    char name[258];
    memset(name, 'n', 257);
    name[257] = '\0';
    snprintf(body, sizeof body, "{\"name\": \"%s\", \"stock\": 1}", name);
    expect_problem(f, "PUT", P, body, 400, "invalid_argument");
    name[256] = '\0';
    snprintf(body, sizeof body, "{\"name\": \"%s\", \"stock\": 2147483647}", name);
    json_decref(expect_json(f, "PUT", P, body, 201));
    char path[300] = "/v1/items/";
    memset(path + 10, 'i', 129);
    path[139] = '\0';
    expect_problem(f, "PUT", path, "{\"name\": \"n\", \"stock\": 1}", 400, "invalid_argument");
    expect_problem(f, "GET", path, NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items/%zz", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items/%00", NULL, 400, "invalid_argument");
    path[138] = '\0'; /* 128 bytes is fine */
    json_decref(expect_json(f, "PUT", path, "{\"name\": \"n\", \"stock\": 1}", 201));
    /* nothing was written by the refused requests */
    expect_item(f, "x", 2147483647, 0);
}

/* The id of the page's i-th item, checked to have the six members. */
static const char *page_id(json_t *page, size_t i)
{
    json_t *it = json_array_get(json_object_get(page, "items"), i);
    assert_non_null(it);
    assert_int_equal(json_object_size(it), 6);
    return jstr(it, "id");
}

static void test_http_seckill_item_list(void **state)
{
    fixture_t *f = *state;
    json_t *page = expect_json(f, "GET", "/v1/items", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(page, "items")), 0);
    assert_true(json_is_null(json_object_get(page, "next")));
    assert_int_equal(json_object_size(page), 2);
    json_decref(page);
    put_item(f, "b", 4);
    put_item(f, "a%2Fz", 2);
    put_item(f, "a", 3);
    assert_int_equal(place(f, "a", "u1"), 201);
    page = expect_json(f, "GET", "/v1/items?limit=2", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(page, "items")), 2);
    assert_string_equal(page_id(page, 0), "a");
    assert_string_equal(page_id(page, 1), "a/z");
    json_t *a = json_array_get(json_object_get(page, "items"), 0);
    assert_string_equal(jstr(a, "name"), "Item a");
    assert_int_equal(jint(a, "stock"), 2);
    assert_int_equal(jint(a, "sold"), 1);
    assert_string_equal(jstr(page, "next"), "a/z");
    json_decref(page);
    page = expect_json(f, "GET", "/v1/items?limit=2&after=a%2Fz", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(page, "items")), 1);
    assert_string_equal(page_id(page, 0), "b");
    assert_true(json_is_null(json_object_get(page, "next")));
    json_decref(page);
    page = expect_json(f, "GET", "/v1/items?after=", NULL, 200); /* empty: from the first */
    assert_int_equal(json_array_size(json_object_get(page, "items")), 3);
    json_decref(page);
    expect_problem(f, "GET", "/v1/items?limit=0", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items?limit=1001", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items?limit=x", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items?limit=", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items?after=%zz", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items?after=%FF", NULL, 400, "invalid_argument");
    char path[300] = "/v1/items?after=";
    size_t n = strlen(path);
    memset(path + n, 'i', 129);
    path[n + 129] = '\0';
    expect_problem(f, "GET", path, NULL, 400, "invalid_argument");
    path[n + 128] = '\0'; /* 128 bytes is an id */
    json_decref(expect_json(f, "GET", path, NULL, 200));
    client_resp_t r = call(f, "PUT", "/v1/items", "{}");
    assert_int_equal(r.status, 405);
    char *allow = client_header(&r, "Allow");
    assert_non_null(allow);
    assert_string_equal(allow, "GET");
    free(allow);
    client_resp_free(&r);
}

static void test_http_seckill_method_not_allowed(void **state)
{
    fixture_t *f = *state;
    client_resp_t r = call(f, "DELETE", "/v1/items/x/orders", NULL);
    assert_int_equal(r.status, 405);
    char *allow = client_header(&r, "Allow");
    assert_non_null(allow);
    assert_string_equal(allow, "GET, POST");
    free(allow);
    client_resp_free(&r);
    r = call(f, "POST", "/v1/items/x", "{}");
    assert_int_equal(r.status, 405);
    allow = client_header(&r, "Allow");
    assert_string_equal(allow, "GET, PUT");
    free(allow);
    client_resp_free(&r);
}

/* ------------------------------------------------------------------------
 * Orders
 * ------------------------------------------------------------------------ */

static void test_http_seckill_order_flow(void **state)
{
    fixture_t *f = *state;
    put_item(f, "sku", 2);
    client_resp_t r = call(f, "POST", "/v1/items/sku/orders", "{\"user_id\": \"u 1/\xc3\xa9\"}");
    assert_int_equal(r.status, 201);
    char *loc = client_header(&r, "Location");
    assert_non_null(loc);
    assert_string_equal(loc, "/v1/items/sku/orders/u%201%2F%C3%A9");
    json_t *o = client_json(&r);
    client_resp_free(&r);
    assert_true(jint(o, "order_id") > 0);
    assert_string_equal(jstr(o, "item_id"), "sku");
    assert_string_equal(jstr(o, "user_id"), "u 1/\xc3\xa9");
    assert_true(jint(o, "created_at") > 1600000000000LL);
    assert_int_equal(json_object_size(o), 7);
    /* the Location is the order */
    json_t *got = expect_json(f, "GET", loc, NULL, 200);
    assert_true(json_equal(got, o));
    json_decref(got);
    free(loc);

    expect_problem(f, "POST", "/v1/items/sku/orders", "{\"user_id\": \"u 1/\xc3\xa9\"}", 409,
                   "already_ordered");
    assert_int_equal(place(f, "sku", "u2"), 201);
    expect_problem(f, "POST", "/v1/items/sku/orders", "{\"user_id\": \"u3\"}", 409, "sold_out");
    /* already_ordered wins over sold_out */
    expect_problem(f, "POST", "/v1/items/sku/orders", "{\"user_id\": \"u2\"}", 409,
                   "already_ordered");
    expect_item(f, "sku", 0, 2);
    expect_problem(f, "GET", "/v1/items/sku/orders/u3", NULL, 404, "not_found");
    expect_problem(f, "GET", "/v1/items/none/orders/u2", NULL, 404, "not_found");
    expect_problem(f, "POST", "/v1/items/none/orders", "{\"user_id\": \"u2\"}", 404, "not_found");

    /* pages */
    json_t *page = expect_json(f, "GET", "/v1/items/sku/orders?limit=1", NULL, 200);
    json_t *list = json_object_get(page, "orders");
    assert_int_equal(json_array_size(list), 1);
    assert_true(json_equal(json_array_get(list, 0), o));
    assert_int_equal(jint(page, "next"), jint(o, "order_id"));
    char path[128];
    snprintf(path, sizeof path, "/v1/items/sku/orders?limit=1&after=%lld",
             (long long)jint(o, "order_id"));
    json_decref(page);
    page = expect_json(f, "GET", path, NULL, 200);
    list = json_object_get(page, "orders");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(jstr(json_array_get(list, 0), "user_id"), "u2");
    assert_true(json_is_null(json_object_get(page, "next")));
    json_decref(page);
    page = expect_json(f, "GET", "/v1/items/sku/orders", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(page, "orders")), 2);
    assert_true(json_is_null(json_object_get(page, "next")));
    json_decref(page);
    json_decref(o);

    /* a reset deletes the orders and sells again */
    json_decref(expect_json(f, "PUT", "/v1/items/sku", "{\"name\": \"n\", \"stock\": 1}", 200));
    page = expect_json(f, "GET", "/v1/items/sku/orders", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(page, "orders")), 0);
    json_decref(page);
    assert_int_equal(place(f, "sku", "u3"), 201);
    expect_item(f, "sku", 0, 1);
}

static void test_http_seckill_order_bad_input(void **state)
{
    fixture_t *f = *state;
    put_item(f, "sku", 5);
    const char *P = "/v1/items/sku/orders";
    expect_problem(f, "POST", P, "{\"user_id\": ", 400, "invalid_json");
    expect_problem(f, "POST", P, "", 400, "invalid_json");
    expect_problem(f, "POST", P, "{}", 400, "invalid_argument");
    expect_problem(f, "POST", P, "{\"user_id\": \"\"}", 400, "invalid_argument");
    expect_problem(f, "POST", P, "{\"user_id\": 7}", 400, "invalid_argument");
    expect_problem(f, "POST", P, "{\"user_id\": null}", 400, "invalid_argument");
    expect_problem(f, "POST", P, "{\"user_id\": \"u\", \"qty\": 2}", 400, "invalid_argument");
    expect_problem(f, "POST", P, "\"u\"", 400, "invalid_argument");
    char user[130], body[200];
    memset(user, 'u', 129);
    user[129] = '\0';
    snprintf(body, sizeof body, "{\"user_id\": \"%s\"}", user);
    expect_problem(f, "POST", P, body, 400, "invalid_argument");
    char path[300];
    snprintf(path, sizeof path, "/v1/items/sku/orders/%s", user);
    expect_problem(f, "GET", path, NULL, 400, "invalid_argument");
    user[128] = '\0';
    assert_int_equal(place(f, "sku", user), 201);
    expect_problem(f, "GET", "/v1/items/sku/orders?limit=0", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items/sku/orders?limit=1001", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items/sku/orders?limit=x", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items/sku/orders?after=-1", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items/sku/orders?after=1.5", NULL, 400, "invalid_argument");
    expect_problem(f, "GET", "/v1/items/sku/orders?after=99999999999999999999", NULL, 400,
                   "invalid_argument");
    expect_problem(f, "GET", "/v1/items/none/orders", NULL, 404, "not_found");
    /* only the valid order was taken */
    expect_item(f, "sku", 4, 1);
}

/* ------------------------------------------------------------------------
 * Concurrency through the daemon
 * ------------------------------------------------------------------------ */

#define HC_THREADS 8
#define HC_USERS 60
#define HC_TRIES 2
#define HC_STOCK 20

typedef struct hrun {
    const fixture_t *f;
    pthread_mutex_t lock;
    json_int_t ok_order_id[HC_USERS];
    int ok_twice;
    int s201, sold_out, already, s503, no_retry_after, other;
} hrun_t;

typedef struct hworker {
    hrun_t *run;
    int index;
} hworker_t;

/* Classify one order answer into the run's counts. */
static void record(hrun_t *run, int user, client_resp_t *r)
{
    json_t *j = r->status ? client_json(r) : NULL;
    const char *code = j ? json_string_value(json_object_get(j, "code")) : NULL;
    char *retry = client_header(r, "Retry-After");
    pthread_mutex_lock(&run->lock);
    if (r->status == 201) {
        run->s201++;
        if (run->ok_order_id[user])
            run->ok_twice++;
        run->ok_order_id[user] = json_integer_value(json_object_get(j, "order_id"));
    } else if (r->status == 409 && code && strcmp(code, "sold_out") == 0) {
        run->sold_out++;
    } else if (r->status == 409 && code && strcmp(code, "already_ordered") == 0) {
        run->already++;
    } else if (r->status == 503 && code && strcmp(code, "unavailable") == 0) {
        run->s503++;
        run->no_retry_after += retry == NULL;
    } else {
        run->other++;
    }
    pthread_mutex_unlock(&run->lock);
    free(retry);
    json_decref(j);
}

static void *hworker_main(void *arg)
{
    hworker_t *w = arg;
    for (int t = 0; t < HC_TRIES; t++) {
        for (int u = w->index; u < HC_USERS; u += HC_THREADS) {
            char body[64];
            snprintf(body, sizeof body, "{\"user_id\": \"user-%d\"}", u);
            client_resp_t r;
            if (client_request(&w->run->f->d, "POST", "/v1/items/hot/orders", JSON_HEADERS, body,
                               strlen(body), &r) == 0)
                record(w->run, u, &r);
            else
                r.status = 0, record(w->run, u, &r);
            client_resp_free(&r);
        }
    }
    return NULL;
}

/* Run the sale through the daemon and check the invariants; returns the
 * units sold. */
static json_int_t http_sale(const fixture_t *f, hrun_t *run)
{
    memset(run, 0, sizeof *run);
    run->f = f;
    pthread_mutex_init(&run->lock, NULL);
    put_item(f, "hot", HC_STOCK);
    pthread_t threads[HC_THREADS];
    hworker_t workers[HC_THREADS];
    for (int i = 0; i < HC_THREADS; i++) {
        workers[i] = (hworker_t){run, i};
        pthread_create(&threads[i], NULL, hworker_main, &workers[i]);
    }
    for (int i = 0; i < HC_THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&run->lock);
    print_message("201 %d, sold_out %d, already_ordered %d, 503 %d, other %d\n", run->s201,
                  run->sold_out, run->already, run->s503, run->other);

    json_t *it = expect_json(f, "GET", "/v1/items/hot", NULL, 200);
    json_int_t stock = jint(it, "stock"), sold = jint(it, "sold");
    json_decref(it);
    json_t *orders = all_orders(f, "hot");
    json_int_t by_user[HC_USERS] = {0};
    size_t i;
    json_t *o;
    json_array_foreach (orders, i, o) {
        int u = -1;
        assert_int_equal(sscanf(jstr(o, "user_id"), "user-%d", &u), 1);
        assert_true(u >= 0 && u < HC_USERS);
        assert_int_equal(by_user[u], 0); /* no user holds two orders */
        by_user[u] = jint(o, "order_id");
    }
    assert_int_equal(run->other, 0);
    assert_int_equal(run->ok_twice, 0);
    assert_int_equal(run->no_retry_after, 0);
    assert_true(stock >= 0);                                     /* never negative */
    assert_int_equal(stock + sold, HC_STOCK);                    /* stock + sold == initial */
    assert_int_equal((json_int_t)json_array_size(orders), sold); /* orders == sold */
    assert_int_equal(run->s201, sold);
    for (int u = 0; u < HC_USERS; u++) /* every 201 exists */
        if (run->ok_order_id[u])
            assert_int_equal(by_user[u], run->ok_order_id[u]);
    json_decref(orders);
    return sold;
}

static void test_http_seckill_concurrent_stock(void **state)
{
    fixture_t *f = *state;
    hrun_t *run = calloc(1, sizeof *run);
    assert_int_equal(http_sale(f, run), HC_STOCK); /* U > S: everything sells */
    assert_int_equal(run->s503, 0);
    assert_true(run->sold_out > 0);
    free(run);
}

static void test_http_seckill_concurrent_version(void **state)
{
    fixture_t *f = *state; /* version strategy, no retries */
    hrun_t *run = calloc(1, sizeof *run);
    http_sale(f, run);
    /* eight clients racing on one version: some lose and get 503 */
    assert_true(run->s503 > 0);
    free(run);
}

/* ------------------------------------------------------------------------
 * Crash and restart
 * ------------------------------------------------------------------------ */

static void test_http_seckill_restart(void **state)
{
    fixture_t *f = *state;
    put_item(f, "gone", 2);
    put_item(f, "again", 1);
    put_item(f, "kept", 5);
    assert_int_equal(place(f, "gone", "u1"), 201);
    assert_int_equal(place(f, "gone", "u2"), 201);
    assert_int_equal(place(f, "gone", "u3"), 409); /* flag set in memory */
    assert_int_equal(place(f, "again", "u1"), 201);
    assert_int_equal(place(f, "kept", "u1"), 201);
    assert_int_equal(place(f, "kept", "u2"), 201);
    json_t *before = all_orders(f, "gone");

    daemon_kill(&f->d);
    assert_int_equal(daemon_restart(&f->d), 0);

    expect_item(f, "gone", 0, 2);
    expect_item(f, "again", 0, 1);
    expect_item(f, "kept", 3, 2);
    json_t *after = all_orders(f, "gone");
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    /* the sold-out item still refuses, and still knows its buyers */
    expect_problem(f, "POST", "/v1/items/gone/orders", "{\"user_id\": \"u3\"}", 409, "sold_out");
    expect_problem(f, "POST", "/v1/items/gone/orders", "{\"user_id\": \"u4\"}", 409, "sold_out");
    expect_problem(f, "POST", "/v1/items/gone/orders", "{\"user_id\": \"u1\"}", 409,
                   "already_ordered");
    expect_problem(f, "POST", "/v1/items/again/orders", "{\"user_id\": \"u2\"}", 409, "sold_out");
    /* a reset item sells again; the one with stock goes on selling */
    json_decref(expect_json(f, "PUT", "/v1/items/again", "{\"name\": \"n\", \"stock\": 1}", 200));
    assert_int_equal(place(f, "again", "u2"), 201);
    assert_int_equal(place(f, "kept", "u3"), 201);
    expect_item(f, "again", 0, 1);
    expect_item(f, "kept", 2, 3);
}

/* ------------------------------------------------------------------------
 * Payment deadline
 * ------------------------------------------------------------------------ */

static void put_item_paying(const fixture_t *f, const char *id, int stock, int timeout_ms)
{
    char path[256], body[160];
    snprintf(path, sizeof path, "/v1/items/%s", id);
    snprintf(body, sizeof body,
             "{\"name\": \"Item %s\", \"stock\": %d, \"payment_timeout_ms\": %d}", id, stock,
             timeout_ms);
    json_t *it = expect_json(f, "PUT", path, body, 201);
    assert_int_equal(jint(it, "payment_timeout_ms"), timeout_ms);
    json_decref(it);
}

static json_t *get_order(const fixture_t *f, const char *id, const char *user)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/items/%s/orders/%s", id, user);
    return expect_json(f, "GET", path, NULL, 200);
}

/* Poll the order every 5 ms until its state is `want` (at most max_ms);
 * returns the wall clock when it was first seen so, or -1. */
static int64_t wait_order_state(const fixture_t *f, const char *id, const char *user,
                                const char *want, int max_ms)
{
    int64_t until = testutil_wall_ms() + max_ms;
    do {
        json_t *o = get_order(f, id, user);
        bool done = strcmp(jstr(o, "state"), want) == 0;
        json_decref(o);
        if (done)
            return testutil_wall_ms();
        struct timespec pause = {0, 5000000};
        nanosleep(&pause, NULL);
    } while (testutil_wall_ms() < until);
    return -1;
}

static json_int_t stat_auto_cancellations(const fixture_t *f)
{
    json_t *st = expect_json(f, "GET", "/v1/stats", NULL, 200);
    json_t *sk = json_object_get(st, "seckill");
    json_int_t n = jint(sk, "auto_cancellations");
    json_decref(st);
    return n;
}

static void test_http_seckill_payment_calls(void **state)
{
    fixture_t *f = *state;
    /* the item option: range, type, null */
    expect_problem(f, "PUT", "/v1/items/p",
                   "{\"name\": \"n\", \"stock\": 1, \"payment_timeout_ms\": 999}", 400,
                   "invalid_argument");
    expect_problem(f, "PUT", "/v1/items/p",
                   "{\"name\": \"n\", \"stock\": 1, \"payment_timeout_ms\": 86400001}", 400,
                   "invalid_argument");
    expect_problem(f, "PUT", "/v1/items/p",
                   "{\"name\": \"n\", \"stock\": 1, \"payment_timeout_ms\": \"60000\"}", 400,
                   "invalid_argument");
    json_t *it = expect_json(f, "PUT", "/v1/items/f",
                             "{\"name\": \"n\", \"stock\": 2, \"payment_timeout_ms\": null}", 201);
    assert_true(json_is_null(json_object_get(it, "payment_timeout_ms")));
    json_decref(it);
    put_item_paying(f, "p", 3, 60000);

    /* a pending order, then paid (twice: unchanged) */
    json_t *o = expect_json(f, "POST", "/v1/items/p/orders", "{\"user_id\": \"alice\"}", 201);
    assert_string_equal(jstr(o, "state"), "pending");
    assert_int_equal(jint(o, "pay_by"), jint(o, "created_at") + 60000);
    assert_true(json_is_null(json_object_get(o, "settled_at")));
    json_decref(o);
    o = expect_json(f, "POST", "/v1/items/p/orders/alice/pay", NULL, 200);
    assert_string_equal(jstr(o, "state"), "paid");
    assert_true(json_is_null(json_object_get(o, "pay_by")));
    json_int_t settled = jint(o, "settled_at");
    assert_int_equal(json_object_size(o), 7);
    json_decref(o);
    o = expect_json(f, "POST", "/v1/items/p/orders/alice/pay", "{}", 200);
    assert_string_equal(jstr(o, "state"), "paid");
    assert_int_equal(jint(o, "settled_at"), settled);
    json_decref(o);
    expect_problem(f, "POST", "/v1/items/p/orders/alice/cancel", NULL, 409, "order_not_pending");

    /* cancel: 200, the unit back; then neither pay nor cancel */
    json_decref(expect_json(f, "POST", "/v1/items/p/orders", "{\"user_id\": \"bob\"}", 201));
    expect_item(f, "p", 1, 2);
    o = expect_json(f, "POST", "/v1/items/p/orders/bob/cancel", NULL, 200);
    assert_string_equal(jstr(o, "state"), "cancelled");
    json_decref(o);
    expect_item(f, "p", 2, 1);
    expect_problem(f, "POST", "/v1/items/p/orders/bob/pay", NULL, 409, "order_not_pending");
    expect_problem(f, "POST", "/v1/items/p/orders/bob/cancel", NULL, 409, "order_not_pending");
    expect_item(f, "p", 2, 1);
    o = get_order(f, "p", "bob");
    assert_string_equal(jstr(o, "state"), "cancelled");
    json_decref(o);
    /* re-ordering after a cancel */
    o = expect_json(f, "POST", "/v1/items/p/orders", "{\"user_id\": \"bob\"}", 201);
    assert_string_equal(jstr(o, "state"), "pending");
    json_decref(o);
    expect_problem(f, "POST", "/v1/items/p/orders", "{\"user_id\": \"bob\"}", 409,
                   "already_ordered");
    json_t *all = all_orders(f, "p");
    assert_int_equal(json_array_size(all), 3);
    assert_string_equal(jstr(json_array_get(all, 1), "state"), "cancelled");
    json_decref(all);

    /* errors: no order, no item, bad ids, a body, the method */
    expect_problem(f, "POST", "/v1/items/p/orders/carol/pay", NULL, 404, "not_found");
    expect_problem(f, "POST", "/v1/items/p/orders/carol/cancel", NULL, 404, "not_found");
    expect_problem(f, "POST", "/v1/items/nope/orders/alice/pay", NULL, 404, "not_found");
    expect_problem(f, "POST", "/v1/items/p/orders/alice/pay", "{\"x\": 1}", 400,
                   "invalid_argument");
    expect_problem(f, "POST", "/v1/items/p/orders/alice/pay", "[", 400, "invalid_json");
    char path[512] = "/v1/items/p/orders/";
    size_t n = strlen(path);
    memset(path + n, 'u', 129);
    strcpy(path + n + 129, "/pay");
    expect_problem(f, "POST", path, NULL, 400, "invalid_argument");
    client_resp_t r = call(f, "GET", "/v1/items/p/orders/alice/pay", NULL);
    assert_int_equal(r.status, 405);
    char *allow = client_header(&r, "Allow");
    assert_string_equal(allow, "POST");
    free(allow);
    client_resp_free(&r);

    /* an item without a timeout: orders are paid at once */
    o = expect_json(f, "POST", "/v1/items/f/orders", "{\"user_id\": \"alice\"}", 201);
    assert_string_equal(jstr(o, "state"), "paid");
    assert_true(json_is_null(json_object_get(o, "pay_by")));
    json_decref(o);
    json_decref(expect_json(f, "POST", "/v1/items/f/orders/alice/pay", NULL, 200));
    expect_problem(f, "POST", "/v1/items/f/orders/alice/cancel", NULL, 409, "order_not_pending");

    json_t *st = expect_json(f, "GET", "/v1/stats", NULL, 200);
    json_t *by = json_object_get(json_object_get(st, "seckill"), "orders_by_state");
    assert_int_equal(jint(by, "pending"), 1);
    assert_int_equal(jint(by, "paid"), 2);
    assert_int_equal(jint(by, "cancelled"), 1);
    json_decref(st);
}

/* An unpaid order is cancelled within 1 s of pay_by, once; the unit comes
 * back and the sold-out fast path lets the next buyer in. */
static void test_http_seckill_deadline(void **state)
{
    fixture_t *f = *state;
    put_item_paying(f, "d", 1, 1000);
    json_t *o = expect_json(f, "POST", "/v1/items/d/orders", "{\"user_id\": \"alice\"}", 201);
    json_int_t pay_by = jint(o, "pay_by");
    json_decref(o);
    expect_problem(f, "POST", "/v1/items/d/orders", "{\"user_id\": \"bob\"}", 409, "sold_out");
    int64_t seen = wait_order_state(f, "d", "alice", "cancelled", 3000);
    assert_true(seen > 0);
    assert_true(seen - pay_by <= 1000);
    o = get_order(f, "d", "alice");
    json_int_t settled = jint(o, "settled_at");
    json_decref(o);
    assert_true(settled >= pay_by && settled - pay_by <= 1000);
    print_message("pay_by to cancelled: %lld ms (settled_at), seen after %lld ms\n",
                  (long long)(settled - pay_by), (long long)(seen - pay_by));
    expect_item(f, "d", 1, 0);
    json_decref(expect_json(f, "POST", "/v1/items/d/orders", "{\"user_id\": \"bob\"}", 201));
    json_decref(expect_json(f, "POST", "/v1/items/d/orders/bob/pay", NULL, 200));
    expect_item(f, "d", 0, 1);
    /* exactly once: nothing more comes back later, the paid order stays */
    struct timespec pause = {1, 500000000};
    nanosleep(&pause, NULL);
    expect_item(f, "d", 0, 1);
    json_t *b = get_order(f, "d", "bob");
    assert_string_equal(jstr(b, "state"), "paid");
    json_decref(b);
    assert_int_equal(stat_auto_cancellations(f), 1);
    /* a cancelled user orders again: sold out now */
    expect_problem(f, "POST", "/v1/items/d/orders", "{\"user_id\": \"alice\"}", 409, "sold_out");
}

/* A deadline that passed while the daemon was down is honoured right
 * after the start. */
static void test_http_seckill_deadline_restart(void **state)
{
    fixture_t *f = *state;
    put_item_paying(f, "r", 2, 1000);
    json_t *o = expect_json(f, "POST", "/v1/items/r/orders", "{\"user_id\": \"alice\"}", 201);
    json_decref(o);
    json_decref(expect_json(f, "POST", "/v1/items/r/orders", "{\"user_id\": \"bob\"}", 201));
    json_decref(expect_json(f, "POST", "/v1/items/r/orders/bob/pay", NULL, 200));
    daemon_kill(&f->d);
    struct timespec pause = {1, 500000000};
    nanosleep(&pause, NULL);
    int64_t started = testutil_wall_ms();
    assert_int_equal(daemon_restart(&f->d), 0);
    int64_t ready = testutil_wall_ms(); /* the daemon answers from here on */
    int64_t seen = wait_order_state(f, "r", "alice", "cancelled", 3000 * testutil_scale());
    assert_true(seen > 0);
    print_message("cancelled %lld ms after the restart began, %lld ms after it answered\n",
                  (long long)(seen - started), (long long)(seen - ready));
    /* within the contract's 1 s of the start (slower under valgrind) */
    assert_true(seen - ready <= 1000 * testutil_scale());
    o = get_order(f, "r", "bob");
    assert_string_equal(jstr(o, "state"), "paid");
    json_decref(o);
    expect_item(f, "r", 1, 1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_seckill_item_put_and_get, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_item_bad_input, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_item_list, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_method_not_allowed, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_order_flow, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_order_bad_input, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_concurrent_stock, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_concurrent_version, setup_version,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_restart, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_payment_calls, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_deadline, setup, daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_seckill_deadline_restart, setup,
                                        daemon_fixture_stop),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
