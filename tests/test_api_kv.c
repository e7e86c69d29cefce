/*
 * test_api_kv.c - the pure parsers of src/api_kv.c: entity-tag lists
 * (If-Match, If-None-Match) and the positive decimals of ttl and limit.
 * The handlers themselves are tested over HTTP in test_http_kv.c. Also the
 * body of GET /v1/stats/hotkeys (src/api_hotkeys.c), base64 keys included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"

static bool positive(const char *s, int64_t max, int64_t *v)
{
    return api_kv_parse_positive(s, strlen(s), max, v);
}

static void test_api_kv_parse_positive(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_true(positive("1", 10, &v));
    assert_int_equal(v, 1);
    assert_true(positive("9223372036854775807", INT64_MAX, &v));
    assert_true(v == INT64_MAX);
    const char *bad[] = {"", "0", "11", "-1", "+1", " 1", "1 ", "1a", "00000000000000000001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(positive(bad[i], 10, &v));
}

/* Regression (found by fuzz/fuzz_etag.c and fuzz/fuzz_route.c under UBSan):
 * 19 digits above INT64_MAX overflowed a signed integer (undefined
 * behaviour) on ?ttl=, ?limit=, If-Match and If-None-Match. In a plain
 * build the wrapped value happened to be negative and was refused, so
 * without the fix this test fails only under `make check-sanitizers`. */
static void test_api_kv_parse_positive_19_digits_do_not_overflow(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_false(positive("9223372036854775808", INT64_MAX, &v));
    assert_false(positive("9999999999999999999", INT64_MAX, &v));
    assert_false(positive("9999999999999999999", 1000, &v));
    api_etag_list_t l;
    assert_false(api_kv_parse_etags("\"9223372036854775808\"", false, &l));
    assert_false(api_kv_parse_etags("W/\"9999999999999999999\"", true, &l));
}

static void test_api_kv_parse_etags(void **state)
{
    (void)state;
    api_etag_list_t l;
    assert_true(api_kv_parse_etags("*", false, &l));
    assert_int_equal(l.match.kind, SQLCACHED_MATCH_ANY);
    assert_true(api_kv_parse_etags(" \"1\", W/\"2\" ,\"3\"", false, &l));
    assert_int_equal(l.match.kind, SQLCACHED_MATCH_VERSIONS);
    assert_int_equal(l.match.count, 3);
    assert_true(l.versions[0] == 1 && l.versions[1] == -1 && l.versions[2] == 3);
    assert_true(api_kv_parse_etags("W/\"2\"", true, &l));
    assert_true(l.versions[0] == 2);
    const char *bad[] = {"", " , ", "1", "\"\"", "\"0\"", "\"-1\"", "*, \"1\"", "W/1", "\"1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(api_kv_parse_etags(bad[i], false, &l));
    char many[256] = "";
    for (int i = 1; i <= API_MAX_ETAGS + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "\"%d\",", i);
    assert_false(api_kv_parse_etags(many, false, &l));
}

/* The hot-keys body: UTF-8 keys as "key", other bytes as "key_base64"
 * (RFC 4648, padded: 1, 2 and 3 trailing bytes). */
static void test_api_hotkeys_json(void **state)
{
    (void)state;
    sqlcached_hotkey_t keys[] = {
        {"user:42", 7, 9, 1}, {"\xff", 1, 5, 0},        {"\xff\xfe", 2, 4, 0},
        {"a\xc3(", 3, 3, 0},  {"caf\xc3\xa9", 5, 2, 0},
    };
    sqlcached_hotkeys_t list = {1, 10000, 5, keys};
    json_t *j = api_hotkeys_json(&list);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(s, "{\"enabled\":true,\"half_life_ms\":10000,\"keys\":["
                           "{\"count\":9,\"error\":1,\"key\":\"user:42\"},"
                           "{\"count\":5,\"error\":0,\"key_base64\":\"/w==\"},"
                           "{\"count\":4,\"error\":0,\"key_base64\":\"//4=\"},"
                           "{\"count\":3,\"error\":0,\"key_base64\":\"YcMo\"},"
                           "{\"count\":2,\"error\":0,\"key\":\"caf\u00e9\"}],"
                           "\"tracked\":512}");
    free(s);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_kv_parse_positive),
        cmocka_unit_test(test_api_kv_parse_positive_19_digits_do_not_overflow),
        cmocka_unit_test(test_api_kv_parse_etags),
        cmocka_unit_test(test_api_hotkeys_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
