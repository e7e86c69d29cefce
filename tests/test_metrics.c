/*
 * test_metrics.c - tests of src/metrics.c: counting, and Prometheus text
 * that a strict line parser accepts (no malformed line, no duplicate
 * series, cumulative buckets), and the JSON document.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static const http_route_t routes[] = {
    {"GET", "/v1/kv/{key}", NULL, "kv_get"},
    {"PUT", "/v1/kv/{key}", NULL, "kv_put"},
    {"GET", "/healthz", NULL, "healthz"},
};

static int is_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

/* Validate one sample line `name{l="v",...} value`; 0 if well-formed. */
static int check_sample(const char *line)
{
    const char *p = line;
    size_t n = strcspn(p, "{ ");
    if (!is_name(p, n))
        return -1;
    p += n;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t ln = strcspn(p, "=");
            if (!is_name(p, ln) || p[ln] != '=' || p[ln + 1] != '"')
                return -1;
            p += ln + 2;
            while (*p && *p != '"') {
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == 'n'))
                    p++;
                else if (*p == '\\' || *p == '\n')
                    return -1;
                p++;
            }
            if (*p != '"')
                return -1;
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return -1;
        }
        p++;
    }
    if (*p != ' ')
        return -1;
    p++;
    char *end;
    strtod(p, &end);
    if (end == p || *end != '\0')
        return -1;
    return 0;
}

/* Check every line; count samples; fail on a duplicate series. */
static int check_exposition(const char *text, int *samples)
{
    char *copy = strdup(text);
    char *seen[4096];
    int nseen = 0, rc = 0;
    *samples = 0;
    for (char *line = strtok(copy, "\n"); line && rc == 0; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            const char *name = line + 7;
            size_t n = strcspn(name, " ");
            rc = is_name(name, n) && name[n] == ' ' ? 0 : -1;
            if (rc == 0 && line[2] == 'T') {
                const char *type = name + n + 1;
                rc = strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                             strcmp(type, "histogram") == 0
                         ? 0
                         : -1;
            }
            continue;
        }
        rc = check_sample(line);
        size_t keylen = strrchr(line, ' ') - line;
        for (int i = 0; i < nseen && rc == 0; i++)
            if (strlen(seen[i]) == keylen && strncmp(seen[i], line, keylen) == 0)
                rc = -2;
        if (rc == 0 && nseen < 4096)
            seen[nseen++] = strndup(line, keylen);
        (*samples)++;
        if (rc)
            fprintf(stderr, "bad line: %s\n", line);
    }
    for (int i = 0; i < nseen; i++)
        free(seen[i]);
    free(copy);
    return rc;
}

static void test_metrics_checker_rejects_malformed_lines(void **state)
{
    (void)state;
    int n;
    assert_int_equal(check_exposition("a_b{x=\"1\"} 3\n", &n), 0);
    assert_int_not_equal(check_exposition("a b 3\n", &n), 0);
    assert_int_not_equal(check_exposition("a{x=1} 3\n", &n), 0);
    assert_int_not_equal(check_exposition("a{x=\"1\"} three\n", &n), 0);
    assert_int_not_equal(check_exposition("a 1\na 2\n", &n), 0);
    assert_int_not_equal(check_exposition("# TYPE a countr\n", &n), 0);
}

static void test_metrics_counts_requests_by_route_method_status(void **state)
{
    (void)state;
    metrics_t *m = metrics_create(routes, 3);
    assert_non_null(m);
    metrics_observe(m, &routes[0], "GET", 200, 0.0002);
    metrics_observe(m, &routes[0], "GET", 200, 0.003);
    metrics_observe(m, &routes[1], "PUT", 201, 0.02);
    metrics_observe(m, NULL, "BREW", 404, 0.00001);
    sqlcached_stats_t lib = {.cache_hits = 3,
                             .cache_misses = 1,
                             .seckill_sold_out = 7,
                             .cache_policy = "allkeys-lru",
                             .leases_held = 2,
                             .write_transactions = 4,
                             .writes_committed = 10,
                             .storage_backend = "sqlite"};
    char *text = metrics_prometheus(m, &lib);
    assert_non_null(text);
    int samples;
    assert_int_equal(check_exposition(text, &samples), 0);
    assert_true(samples > 20);
    assert_non_null(strstr(text, "sqlcached_http_requests_total{route=\"/v1/kv/{key}\","
                                 "method=\"GET\",status=\"200\"} 2\n"));
    assert_non_null(strstr(text, "{route=\"other\",method=\"OTHER\",status=\"404\"} 1\n"));
    /* GET and PUT share the pattern's histogram: 3 observations */
    assert_non_null(strstr(text, "sqlcached_http_request_duration_seconds_count"
                                 "{route=\"/v1/kv/{key}\"} 3\n"));
    assert_non_null(strstr(text, "_bucket{route=\"/v1/kv/{key}\",le=\"0.00025\"} 1\n"));
    assert_non_null(strstr(text, "_bucket{route=\"/v1/kv/{key}\",le=\"0.005\"} 2\n"));
    assert_non_null(strstr(text, "_bucket{route=\"/v1/kv/{key}\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "sqlcached_cache_hits_total 3\n"));
    assert_non_null(strstr(text, "sqlcached_seckill_rejections_total{reason=\"sold_out\"} 7\n"));
    assert_non_null(strstr(text, "sqlcached_leases_held 2\n"));
    assert_non_null(strstr(text, "sqlcached_storage_writes_total 10\n"));
    assert_non_null(strstr(text, "sqlcached_storage_write_transactions_total 4\n"));
    assert_non_null(strstr(text, "sqlcached_sqlite_writes_total 10\n")); /* the alias */
    free(text);
    json_t *doc = metrics_json(m, &lib);
    assert_non_null(doc);
    assert_true(json_real_value(json_object_get(json_object_get(doc, "cache"), "hit_ratio")) ==
                0.75);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "cache"), "policy")),
                        "allkeys-lru");
    assert_int_equal(json_array_size(json_object_get(doc, "requests")), 3);
    json_t *storage = json_object_get(doc, "storage");
    assert_true(json_real_value(json_object_get(storage, "writes_per_transaction")) == 2.5);
    assert_string_equal(json_string_value(json_object_get(storage, "backend")), "sqlite");
    assert_true(json_real_value(json_object_get(json_object_get(doc, "sqlite"),
                                                "writes_per_transaction")) == 2.5);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "leases"), "held")),
                     2);
    assert_int_equal(json_array_size(json_object_get(doc, "request_duration_seconds")), 2);
    json_decref(doc);
    metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_checker_rejects_malformed_lines),
        cmocka_unit_test(test_metrics_counts_requests_by_route_method_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
