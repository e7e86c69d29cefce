/*
 * test_http.c - unit tests of the request helpers in src/http.c
 * (percent-decoding, UTF-8 validation, constant-time token comparison).
 * End-to-end behaviour is tested over real HTTP in test_http_kv.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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
    assert_false(http_utf8_ok("a\0b", 3));          /* NUL */
    assert_false(http_utf8_ok("\xc3", 1));          /* truncated */
    assert_false(http_utf8_ok("\xc0\xaf", 2));      /* overlong */
    assert_false(http_utf8_ok("\xed\xa0\x80", 3));  /* surrogate */
    assert_false(http_utf8_ok("\xff", 1));
    assert_false(http_utf8_ok("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
}

/* http_json_quote must render exactly what jansson does (the PUT reply is
 * built with it): every ASCII byte, and multi-byte UTF-8. */
static void test_http_json_quote_matches_jansson(void **state)
{
    (void)state;
    char in[160];
    size_t n = 0;
    for (int c = 1; c < 128; c++)
        in[n++] = (char)c;
    memcpy(in + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/", 10);
    n += 10;
    json_t *str = json_stringn(in, n);
    assert_non_null(str);
    char *want = json_dumps(str, JSON_COMPACT | JSON_ENCODE_ANY);
    char got[HTTP_JSON_QUOTED_MAX(sizeof in)];
    size_t len = http_json_quote(got, in, n);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(want);
    json_decref(str);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_percent_decode),
        cmocka_unit_test(test_http_utf8_validation),
        cmocka_unit_test(test_http_token_equal),
        cmocka_unit_test(test_http_json_quote_matches_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
