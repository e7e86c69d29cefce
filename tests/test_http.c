/*
 * test_http.c - unit tests of the request helpers in src/http.c
 * (percent-decoding, UTF-8 validation, constant-time token comparison).
 * End-to-end behaviour is tested over real HTTP in test_http_kv.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "http.h"

static void test_http_percent_decode(void **state)
{
    (void)state;
    size_t n;
    bool bad;
    char *s = http_percent_decode("a%2Fb%20c+d", 11, false, &n, &bad);
    assert_non_null(s);
    assert_int_equal(n, 7);
    assert_memory_equal(s, "a/b c+d", 7);
    free(s);
    s = http_percent_decode("a+b%2b", 6, true, &n, &bad);
    assert_string_equal(s, "a b+");
    free(s);
    s = http_percent_decode("%00x", 4, false, &n, &bad);
    assert_int_equal(n, 2);
    assert_int_equal(s[0], '\0');
    free(s);
    const char *broken[] = {"%", "%4", "%zz", "a%g1", "%%"};
    for (size_t i = 0; i < 5; i++) {
        assert_null(http_percent_decode(broken[i], strlen(broken[i]), false, &n, &bad));
        assert_true(bad);
    }
}

static void test_http_utf8_validation(void **state)
{
    (void)state;
    assert_true(http_utf8_ok("plain", 5));
    assert_true(http_utf8_ok("caf\xc3\xa9", 5));
    assert_true(http_utf8_ok("\xf0\x9f\x98\x80", 4));
    assert_false(http_utf8_ok("a\0b", 3));         /* NUL */
    assert_false(http_utf8_ok("\xc3", 1));         /* truncated */
    assert_false(http_utf8_ok("\xc0\xaf", 2));     /* overlong */
    assert_false(http_utf8_ok("\xed\xa0\x80", 3)); /* surrogate */
    assert_false(http_utf8_ok("\xff", 1));
    assert_false(http_utf8_ok("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
}

static void test_http_token_equal(void **state)
{
    (void)state;
    assert_true(http_token_equal("secret", "secret"));
    assert_false(http_token_equal("secret", "secreT"));
    assert_false(http_token_equal("secret", "secret2"));
    assert_false(http_token_equal("secret2", "secret"));
    assert_false(http_token_equal("", "x"));
    assert_true(http_token_equal("", ""));
}

/* http_route: method + raw path -> route and decoded params, no MHD. */
static void test_http_route_pure(void **state)
{
    (void)state;
    http_match_t m;
    assert_int_equal(http_route("GET", "/v1/kv/a%2Fb", &m), 200);
    assert_string_equal(m.route->name, "kv_get");
    assert_int_equal(m.params[0].len, 3);
    assert_memory_equal(m.params[0].data, "a/b", 3);
    http_match_free(&m);
    assert_int_equal(http_route("POST", "/v1/kv/x/incr", &m), 200);
    assert_string_equal(m.route->name, "kv_incr");
    http_match_free(&m);
    assert_int_equal(http_route("TRACE", "/v1/kv/x", &m), 405);
    assert_string_equal(m.route->pattern, "/v1/kv/{key}");
    http_match_free(&m);
    assert_int_equal(http_route("GET", "/v1/kv/%zz", &m), 400);
    http_match_free(&m);
    assert_int_equal(http_route("GET", "/v1/nope", &m), 404);
    assert_null(m.route);
    http_match_free(&m);
    assert_int_equal(http_route("GET", "", &m), 404);
    http_match_free(&m);
    /* segment edges: a parameter may be empty, never spans a '/' */
    assert_int_equal(http_route("GET", "/v1/kv/", &m), 200);
    assert_string_equal(m.route->name, "kv_get");
    assert_int_equal(m.params[0].len, 0);
    http_match_free(&m);
    assert_int_equal(http_route("GET", "/v1/kv", &m), 200);
    assert_string_equal(m.route->name, "kv_list");
    http_match_free(&m);
    assert_int_equal(http_route("GET", "/v1/kv/a/b", &m), 404);
    http_match_free(&m);
    assert_int_equal(http_route("GET", "/v1/kv/a/incr", &m), 405);
    assert_string_equal(m.route->name, "kv_incr");
    http_match_free(&m);
    assert_int_equal(http_route("GET", "/", &m), 200);
    assert_string_equal(m.route->name, "dashboard");
    http_match_free(&m);
    assert_int_equal(http_route("GET", "/healthz/", &m), 404);
    http_match_free(&m);
    assert_int_equal(http_route("GET", "//", &m), 404);
    http_match_free(&m);
    assert_int_equal(http_route("POST", "/v1/items/i%201/orders/u%2F1/pay", &m), 200);
    assert_string_equal(m.route->name, "order_pay");
    assert_memory_equal(m.params[0].data, "i 1", 3);
    assert_memory_equal(m.params[1].data, "u/1", 3);
    http_match_free(&m);
    assert_true(http_text_ok("k", 1, 512));
    assert_false(http_text_ok("", 0, 512));
    assert_false(http_text_ok("a\0b", 3, 512));
    assert_false(http_text_ok("abc", 3, 2));
}

/* http_parse_object and the member readers, no request. */
static void test_http_parse_object_pure(void **state)
{
    (void)state;
    static const char *const members[] = {"by", "name", NULL};
    http_error_t err;
    json_t *o = http_parse_object("", 0, true, members, &err);
    assert_non_null(o);
    json_decref(o);
    assert_null(http_parse_object("", 0, false, members, &err));
    assert_string_equal(err.code, "invalid_json");
    assert_null(http_parse_object("{\"by\":1,\"by\":2}", 15, false, members, &err));
    assert_string_equal(err.code, "invalid_argument");
    assert_null(http_parse_object("[1]", 3, false, members, &err));
    assert_string_equal(err.code, "invalid_argument");
    assert_null(http_parse_object("{\"x\":1}", 7, false, members, &err));
    assert_string_equal(err.detail, "unknown member \"x\"");
    o = http_parse_object("{\"by\":-3,\"name\":\"n\"} trailing", 20, false, members, &err);
    assert_non_null(o);
    int64_t by;
    assert_true(http_member_int(o, "by", false, 0, -10, 10, &by, &err));
    assert_int_equal(by, -3);
    assert_false(http_member_int(o, "by", false, 0, 0, 10, &by, &err));
    assert_string_equal(err.code, "invalid_argument");
    const char *name;
    size_t len;
    assert_true(http_member_string(o, "name", 8, &name, &len, &err));
    assert_string_equal(name, "n");
    assert_false(http_member_string(o, "by", 8, &name, &len, &err));
    json_decref(o);
}

/* Equal-length near misses, the difference at every position (first,
 * middle, last byte; one bit or all bits), are all refused. */
static void test_http_token_equal_near_misses(void **state)
{
    (void)state;
    char a[64], b[64];
    memset(a, 'k', 63);
    a[63] = '\0';
    for (size_t i = 0; i < 63; i++) {
        for (int flip = 1; flip <= 0x7f; flip = flip * 2 + 1) {
            memcpy(b, a, sizeof a);
            b[i] = (char)(b[i] ^ flip);
            assert_false(http_token_equal(a, b));
            assert_false(http_token_equal(b, a));
        }
    }
    assert_true(http_token_equal(a, a));
}

/* An early-exit comparison, for calibration only. */
static bool __attribute__((noinline)) early_exit_equal(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Best time (ns) of `reps` comparisons, over `rounds` rounds. */
static double best_ns(bool (*eq)(const char *, const char *), const char *a, const char *b)
{
    double best = 1e18;
    volatile bool sink = false;
    for (int round = 0; round < 30; round++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 200; i++)
            sink ^= eq(a, b);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
        if (ns < best)
            best = ns;
    }
    (void)sink;
    return best / 200;
}

/* No early exit: with a 4096-byte token, a guess wrong in its first byte
 * takes as long as one wrong in its last byte. The same measurement of an
 * early-exit comparison (strcmp) shows the difference it would have to
 * detect, so the test cannot pass by measuring nothing. */
static void test_http_token_equal_does_not_exit_early(void **state)
{
    (void)state;
    enum { N = 4096 };
    char *secret = malloc(N + 1), *first = malloc(N + 1), *last = malloc(N + 1);
    assert_non_null(secret);
    assert_non_null(first);
    assert_non_null(last);
    memset(secret, 's', N);
    secret[N] = '\0';
    memcpy(first, secret, N + 1);
    memcpy(last, secret, N + 1);
    first[0] = 'x';
    last[N - 1] = 'x';
    double ct_first = best_ns(http_token_equal, secret, first);
    double ct_last = best_ns(http_token_equal, secret, last);
    double ee_first = best_ns(early_exit_equal, secret, first);
    double ee_last = best_ns(early_exit_equal, secret, last);
    double ct_ratio = ct_last / ct_first, ee_ratio = ee_last / ee_first;
    printf("  4096-byte token, wrong first byte vs wrong last byte: http_token_equal "
           "%.0f / %.0f ns (x%.2f), strcmp %.0f / %.0f ns (x%.1f)\n",
           ct_first, ct_last, ct_ratio, ee_first, ee_last, ee_ratio);
    assert_true(ee_ratio > 4.0);                   /* the measurement can see an early exit */
    assert_true(ct_ratio > 0.5 && ct_ratio < 2.0); /* and sees none here */
    free(secret);
    free(first);
    free(last);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_percent_decode),
        cmocka_unit_test(test_http_utf8_validation),
        cmocka_unit_test(test_http_token_equal),
        cmocka_unit_test(test_http_token_equal_near_misses),
        cmocka_unit_test(test_http_token_equal_does_not_exit_early),
        cmocka_unit_test(test_http_route_pure),
        cmocka_unit_test(test_http_parse_object_pure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
