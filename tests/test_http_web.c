/*
 * test_http_web.c - the dashboard (src/api_web.c) over real HTTP: GET /,
 * /dashboard.css and /dashboard.js answer the files of web/ byte for byte,
 * with their types, Cache-Control: no-cache and a strict
 * Content-Security-Policy; they need no token while /v1 does; and the page
 * refers only to paths this daemon serves. (tests/browser_dashboard.sh
 * runs the page itself in a browser.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "daemon.h"
#include "testutil.h"

typedef daemon_fixture_t fixture_t;

static int setup(void **state)
{
    static const char *const args[] = {"--auth-token", "web-token", "--durability", "normal", NULL};
    return daemon_fixture_start(state, args);
}

/* The file web/NAME of the source tree (malloc'd, NUL-terminated). */
static char *read_web_file(const char *name, size_t *len)
{
    const char *srcdir = getenv("SQLCACHED_SRCDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/web/%s", srcdir ? srcdir : ".", name);
    char *buf = testutil_read_file(path, len);
    assert_non_null(buf);
    return buf;
}

static client_resp_t get(const fixture_t *f, const char *path)
{
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "GET", path, NULL, NULL, 0, &r), 0);
    return r;
}

/* GET path without a token answers web/file verbatim with this type. */
static client_resp_t expect_file(const fixture_t *f, const char *path, const char *file,
                                 const char *type)
{
    client_resp_t r = get(f, path);
    assert_int_equal(r.status, 200);
    client_header_is(&r, "Content-Type", type);
    client_header_is(&r, "Cache-Control", "no-cache");
    client_header_is(&r, "X-Content-Type-Options", "nosniff");
    size_t len;
    char *want = read_web_file(file, &len);
    assert_int_equal(r.body_len, len);
    assert_memory_equal(r.body, want, len);
    free(want);
    return r;
}

static void test_http_web_files_served_without_token(void **state)
{
    fixture_t *f = *state;
    client_resp_t r = expect_file(f, "/", "dashboard.html", "text/html; charset=utf-8");
    char *csp = client_header(&r, "Content-Security-Policy");
    assert_non_null(csp);
    assert_non_null(strstr(csp, "default-src 'none'"));
    assert_non_null(strstr(csp, "script-src 'self'"));
    assert_non_null(strstr(csp, "style-src 'self'"));
    assert_non_null(strstr(csp, "connect-src 'self'"));
    assert_null(strstr(csp, "unsafe"));
    assert_null(strstr(csp, "http"));
    free(csp);
    client_resp_free(&r);
    r = expect_file(f, "/dashboard.css", "dashboard.css", "text/css; charset=utf-8");
    client_resp_free(&r);
    r = expect_file(f, "/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8");
    client_resp_free(&r);
    /* the figures themselves still need the token */
    r = get(f, "/v1/stats");
    assert_int_equal(r.status, 401);
    client_resp_free(&r);
}

/* Every src= and href= of the page is a path of this daemon ("/x", not
 * "//host" nor "scheme:"), and GET answers it 200. */
static void test_http_web_page_refers_only_to_own_paths(void **state)
{
    fixture_t *f = *state;
    size_t len;
    char *html = read_web_file("dashboard.html", &len);
    int refs = 0;
    for (const char *p = html; (p = strpbrk(p, "sh")) != NULL; p++) {
        size_t skip = strncmp(p, "src=\"", 5) == 0 ? 5 : strncmp(p, "href=\"", 6) == 0 ? 6 : 0;
        if (!skip || (p > html && p[-1] != ' ' && p[-1] != '\n'))
            continue;
        const char *v = p + skip;
        const char *end = strchr(v, '"');
        assert_non_null(end);
        char path[256];
        snprintf(path, sizeof path, "%.*s", (int)(end - v), v);
        if (path[0] != '/' || path[1] == '/')
            fail_msg("the page refers to \"%s\", not a path of the daemon", path);
        client_resp_t r = get(f, path);
        if (r.status != 200)
            fail_msg("the page refers to %s, answered %ld", path, r.status);
        client_resp_free(&r);
        refs++;
    }
    assert_true(refs >= 2); /* the style sheet and the script at least */
    free(html);
}

static void test_http_web_methods_and_paths(void **state)
{
    fixture_t *f = *state;
    client_resp_t r;
    assert_int_equal(client_request(&f->d, "POST", "/", NULL, "x", 1, &r), 0);
    assert_int_equal(r.status, 405);
    client_header_is(&r, "Allow", "GET");
    client_resp_free(&r);
    static const char *const absent[] = {"/index.html", "/dashboard", "/dashboard.js/x",
                                         "/web/dashboard.js"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        r = get(f, absent[i]);
        if (r.status != 404)
            fail_msg("GET %s: got %ld, want 404", absent[i], r.status);
        client_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_web_files_served_without_token, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_web_page_refers_only_to_own_paths, setup,
                                        daemon_fixture_stop),
        cmocka_unit_test_setup_teardown(test_http_web_methods_and_paths, setup,
                                        daemon_fixture_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
