/*
 * test_routes.c - every route of the routing table (src/http.c) is
 * described in api/openapi.yaml: its path under `paths:` and its method as
 * an operation of that path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <strings.h>

#include <cmocka.h>

#include "http.h"
#include "testutil.h"

static char *read_spec(void)
{
    const char *srcdir = getenv("SQLCACHED_SRCDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/api/openapi.yaml", srcdir ? srcdir : ".");
    return testutil_read_file(path, NULL);
}

/* The text of the path item "  /path:" up to the next path at the same
 * indentation (a malloc'd copy), or NULL. */
static char *path_item(const char *spec, const char *pattern)
{
    const char *paths = strstr(spec, "\npaths:\n");
    if (!paths)
        return NULL;
    char needle[512];
    snprintf(needle, sizeof needle, "\n  %s:\n", pattern);
    const char *start = strstr(paths, needle);
    if (!start)
        return NULL;
    start += strlen(needle);
    const char *end = start;
    /* the item ends at the next line indented by exactly two spaces, or at
     * the next top-level key */
    while ((end = strchr(end, '\n')) != NULL) {
        if ((end[1] == ' ' && end[2] == ' ' && end[3] != ' ') || (end[1] != ' ' && end[1] != '\n'))
            break;
        end++;
    }
    size_t n = end ? (size_t)(end - start) : strlen(start);
    return strndup(start, n);
}

static void test_routes_are_in_the_spec(void **state)
{
    (void)state;
    char *spec = read_spec();
    assert_non_null(spec);
    assert_true(http_route_count > 0);
    for (size_t i = 0; i < http_route_count; i++) {
        const http_route_t *r = &http_routes[i];
        char *item = path_item(spec, r->pattern);
        if (!item)
            fail_msg("route %s %s is not a path in api/openapi.yaml", r->method, r->pattern);
        char op[32];
        snprintf(op, sizeof op, "\n    %s:", r->method);
        for (char *p = op; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        char *with_nl = NULL;
        assert_true(asprintf(&with_nl, "\n%s", item) > 0);
        if (!strstr(with_nl, op))
            fail_msg("route %s %s has no %s operation in api/openapi.yaml", r->method, r->pattern,
                     r->method);
        free(with_nl);
        free(item);
    }
    free(spec);
}

static void test_routes_checker_finds_missing_paths(void **state)
{
    (void)state;
    char *spec = read_spec();
    assert_non_null(spec);
    assert_null(path_item(spec, "/v1/no-such-route/{x}"));
    free(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_are_in_the_spec),
        cmocka_unit_test(test_routes_checker_finds_missing_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
