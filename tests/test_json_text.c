/*
 * test_json_text.c - the JSON texts of src/json_text.c are, byte for byte,
 * what json_dumps(JSON_COMPACT) gives for the same members: every byte
 * value that may appear in a UTF-8 string (alone and between others), the
 * integers at the edges of int64_t, and a reply as api_kv.c builds it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "json_text.h"

/* json_text's rendering of the string s[0..n) */
static char *text_of_string(const char *s, size_t n)
{
    json_text_t t;
    json_text_init(&t, 0);
    json_text_string(&t, s, n);
    size_t len;
    char *out = json_text_take(&t, &len);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    return out;
}

/* jansson's rendering of the same string */
static char *jansson_of_string(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    assert_non_null(j);
    char *out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    assert_non_null(out);
    return out;
}

static void assert_same_string(const char *s, size_t n)
{
    char *mine = text_of_string(s, n), *theirs = jansson_of_string(s, n);
    assert_string_equal(mine, theirs);
    free(mine);
    free(theirs);
}

static void test_every_ascii_byte(void **state)
{
    (void)state;
    for (int c = 1; c < 0x80; c++) {
        char one[1] = {(char)c};
        assert_same_string(one, 1);
        char three[3] = {'a', (char)c, 'b'};
        assert_same_string(three, 3);
    }
    assert_same_string("", 0);
}

static void test_utf8_and_runs(void **state)
{
    (void)state;
    const char *samples[] = {
        "plain key",
        "caf\xc3\xa9",
        "\xe2\x82\xac 5",
        "\xf0\x9f\x98\x80",
        "a\"b\\c/d",
        "line\nbreak\ttab\r",
        "\x01\x02\x1f\x7f end",
        "\"\"\"\\\\",
        "user:42/session",
        "\xe2\x80\xa8\xe2\x80\xa9",
    };
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        assert_same_string(samples[i], strlen(samples[i]));
    /* a long key (the 512-byte maximum, escapes spread through it) */
    char longkey[512];
    for (size_t i = 0; i < sizeof longkey; i++)
        longkey[i] = i % 37 == 0 ? '"' : i % 41 == 0 ? '\n' : (char)('a' + i % 26);
    assert_same_string(longkey, sizeof longkey);
}

static void test_integers(void **state)
{
    (void)state;
    const int64_t values[] = {0,          1,         -1,        9,
                              10,         99,        100,       1234567890123LL,
                              -987654321, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char mine[32];
        size_t n = json_text_format_int(mine, values[i]);
        mine[n] = '\0';
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)values[i]);
        assert_string_equal(mine, want);
    }
}

/* {"key":K,"version":V,"expires_at":null|E,"found":B}, written as api_kv.c
 * and api_txn.c write their replies */
static void test_reply_object(void **state)
{
    (void)state;
    const char *key = "cart:\"7\"";
    for (int with_expiry = 0; with_expiry < 2; with_expiry++) {
        json_text_t t;
        json_text_init(&t, 8); /* small: the buffer must grow */
        json_text_raw(&t, "{", 1);
        json_text_name(&t, "key");
        json_text_string(&t, key, strlen(key));
        json_text_member(&t, "version");
        json_text_int(&t, 42);
        json_text_member(&t, "expires_at");
        if (with_expiry)
            json_text_int(&t, 1764000000000LL);
        else
            json_text_null(&t);
        json_text_member(&t, "found");
        json_text_bool(&t, with_expiry);
        json_text_raw(&t, "}", 1);
        size_t len;
        char *mine = json_text_take(&t, &len);
        assert_non_null(mine);
        json_t *obj = json_pack("{s:s, s:I, s:o, s:b}", "key", key, "version", (json_int_t)42,
                                "expires_at",
                                with_expiry ? json_integer(1764000000000LL) : json_null(), "found",
                                with_expiry);
        char *theirs = json_dumps(obj, JSON_COMPACT);
        json_decref(obj);
        assert_string_equal(mine, theirs);
        assert_int_equal(len, strlen(theirs));
        free(mine);
        free(theirs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_ascii_byte),
        cmocka_unit_test(test_utf8_and_runs),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_reply_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
