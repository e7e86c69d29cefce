/*
 * test_http_kv.c - the key-value contract over real HTTP against the daemon.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

typedef struct fixture {
    char *dir;
    daemon_t d;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    *state = f;
    return f->dir && daemon_start(&f->d, f->dir, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = daemon_stop(&f->d);
    daemon_free(&f->d);
    testutil_rmdir(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void test_http_kv_put_get_roundtrip(void **state)
{
    fixture_t *f = *state;
    client_resp_t r;
    const char *h[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(client_request(&f->d, "PUT", "/v1/kv/a", h, "hello", 5, &r), 0);
    assert_int_equal(r.status, 201);
    client_resp_free(&r);
    assert_int_equal(client_request(&f->d, "GET", "/v1/kv/a", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    client_resp_free(&r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_kv_put_get_roundtrip, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
