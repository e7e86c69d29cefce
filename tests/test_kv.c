/*
 * test_kv.c - tests of src/kv.c through the public API (include/sqlcached.h).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "testutil.h"

/* The store of a test: testutil.h. */
typedef testutil_fixture_t fixture_t;

static int setup(void **state)
{
    return testutil_fixture_setup(state, "kv.db", true);
}

static int teardown(void **state)
{
    return testutil_fixture_teardown(state);
}

static sqlcached_status_t put(sqlcached_t *db, const char *k, const char *v,
                              sqlcached_write_result_t *r)
{
    return sqlcached_kv_put(db, k, strlen(k), v, strlen(v), NULL, r);
}

enum cond { IF_VERSION, IF_PRESENT, IF_ABSENT, IF_NOT_VERSION };

/* A precondition of one kind; ver is used by the version kinds. */
static sqlcached_preconditions_t cond(enum cond c, const int64_t *ver)
{
    sqlcached_preconditions_t p = {{0}, {0}};
    sqlcached_match_t one = {SQLCACHED_MATCH_VERSIONS, ver, 1};
    sqlcached_match_t any = {SQLCACHED_MATCH_ANY, NULL, 0};
    switch (c) {
    case IF_VERSION:
        p.if_match = one;
        break;
    case IF_PRESENT:
        p.if_match = any;
        break;
    case IF_ABSENT:
        p.if_none_match = any;
        break;
    case IF_NOT_VERSION:
        p.if_none_match = one;
        break;
    }
    return p;
}

static sqlcached_status_t put_cond(sqlcached_t *db, const char *k, const char *v, enum cond c,
                                   int64_t ver)
{
    sqlcached_put_options_t o = {.pre = cond(c, &ver)};
    return sqlcached_kv_put(db, k, strlen(k), v, strlen(v), &o, NULL);
}

static sqlcached_status_t delete_if(sqlcached_t *db, const char *k, int64_t ver)
{
    sqlcached_preconditions_t p = cond(IF_VERSION, &ver);
    return sqlcached_kv_delete(db, k, strlen(k), &p);
}

/* The value of k as a malloc'd string, or NULL if absent. */
static char *get_str(sqlcached_t *db, const char *k, int64_t *version)
{
    sqlcached_value_t *v = NULL;
    if (sqlcached_kv_get(db, k, strlen(k), &v) != SQLCACHED_OK)
        return NULL;
    char *s = strndup(v->data, v->len);
    if (version)
        *version = v->version;
    sqlcached_value_release(v);
    return s;
}

static void assert_value(sqlcached_t *db, const char *k, const char *expected)
{
    char *s = get_str(db, k, NULL);
    assert_non_null(s);
    assert_string_equal(s, expected);
    free(s);
}

static void test_kv_put_then_get(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t r1, r2;
    assert_int_equal(put(f->db, "a", "hello", &r1), SQLCACHED_OK);
    assert_true(r1.created);
    assert_true(r1.version > 0);
    assert_int_equal(r1.expires_at, 0);
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_get(f->db, "a", 1, &v), SQLCACHED_OK);
    assert_int_equal(v->len, 5);
    assert_memory_equal(v->data, "hello", 5);
    assert_string_equal(v->content_type, "application/octet-stream");
    assert_int_equal(v->version, r1.version);
    sqlcached_value_release(v);
    assert_int_equal(put(f->db, "a", "world", &r2), SQLCACHED_OK);
    assert_false(r2.created);
    assert_true(r2.version > r1.version);
    assert_value(f->db, "a", "world");
}

static void test_kv_absent_is_not_found(void **state)
{
    fixture_t *f = *state;
    sqlcached_value_t *v = (sqlcached_value_t *)1;
    assert_int_equal(sqlcached_kv_get(f->db, "nope", 4, &v), SQLCACHED_NOT_FOUND);
    assert_null(v);
}

static void test_kv_binary_value_and_content_type(void **state)
{
    fixture_t *f = *state;
    const unsigned char bytes[] = {0, 1, 2, 255, 0, 10};
    sqlcached_put_options_t o = {.content_type = "image/x-test"};
    assert_int_equal(sqlcached_kv_put(f->db, "bin", 3, bytes, sizeof bytes, &o, NULL),
                     SQLCACHED_OK);
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_get(f->db, "bin", 3, &v), SQLCACHED_OK);
    assert_int_equal(v->len, sizeof bytes);
    assert_memory_equal(v->data, bytes, sizeof bytes);
    assert_string_equal(v->content_type, "image/x-test");
    sqlcached_value_release(v);
    /* An empty value is a value. */
    assert_int_equal(sqlcached_kv_put(f->db, "empty", 5, NULL, 0, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_get(f->db, "empty", 5, &v), SQLCACHED_OK);
    assert_int_equal(v->len, 0);
    sqlcached_value_release(v);
}

static void test_kv_rejects_bad_keys_and_options(void **state)
{
    fixture_t *f = *state;
    char big[SQLCACHED_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    assert_int_equal(sqlcached_kv_put(f->db, big, 0, "v", 1, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_kv_put(f->db, big, sizeof big, "v", 1, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_kv_put(f->db, big, SQLCACHED_KEY_MAX, "v", 1, NULL, NULL),
                     SQLCACHED_OK);
    sqlcached_put_options_t o = {.ttl_ms = -1};
    assert_int_equal(sqlcached_kv_put(f->db, "k", 1, "v", 1, &o, NULL), SQLCACHED_INVALID_ARGUMENT);
    o = (sqlcached_put_options_t){.content_type = "bad\ntype"};
    assert_int_equal(sqlcached_kv_put(f->db, "k", 1, "v", 1, &o, NULL), SQLCACHED_INVALID_ARGUMENT);
    sqlcached_value_t *v;
    assert_int_equal(sqlcached_kv_get(f->db, big, sizeof big, &v), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_kv_delete(f->db, big, 0, NULL), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_kv_incr(f->db, big, sizeof big, 1, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    /* Nothing was stored by the rejected calls. */
    assert_int_equal(sqlcached_kv_get(f->db, "k", 1, &v), SQLCACHED_NOT_FOUND);
}

static void test_kv_conditional_put(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t r;
    /* If-Match on an absent key fails. */
    assert_int_equal(put_cond(f->db, "c", "x", IF_VERSION, 1), SQLCACHED_PRECONDITION_FAILED);
    assert_int_equal(put_cond(f->db, "c", "x", IF_PRESENT, 0), SQLCACHED_PRECONDITION_FAILED);
    assert_int_equal(put_cond(f->db, "c", "v1", IF_ABSENT, 0), SQLCACHED_OK);
    assert_int_equal(put_cond(f->db, "c", "v2", IF_ABSENT, 0), SQLCACHED_PRECONDITION_FAILED);
    int64_t ver;
    free(get_str(f->db, "c", &ver));
    assert_int_equal(put_cond(f->db, "c", "v2", IF_VERSION, ver + 1),
                     SQLCACHED_PRECONDITION_FAILED);
    assert_value(f->db, "c", "v1");
    sqlcached_put_options_t o = {.pre = cond(IF_VERSION, &ver)};
    assert_int_equal(sqlcached_kv_put(f->db, "c", 1, "v3", 2, &o, &r), SQLCACHED_OK);
    assert_true(r.version > ver);
    assert_int_equal(put_cond(f->db, "c", "v4", IF_PRESENT, 0), SQLCACHED_OK);
    assert_value(f->db, "c", "v4");
    /* If-None-Match with versions: write unless the current one is listed. */
    int64_t cur;
    free(get_str(f->db, "c", &cur));
    assert_int_equal(put_cond(f->db, "c", "v5", IF_NOT_VERSION, cur),
                     SQLCACHED_PRECONDITION_FAILED);
    assert_int_equal(put_cond(f->db, "c", "v5", IF_NOT_VERSION, cur - 1), SQLCACHED_OK);
    /* A list: any listed version matches; both headers must hold. */
    free(get_str(f->db, "c", &cur));
    int64_t list[] = {cur - 100, cur};
    sqlcached_put_options_t both = {.pre = {.if_match = {SQLCACHED_MATCH_VERSIONS, list, 2},
                                            .if_none_match = {SQLCACHED_MATCH_VERSIONS, list, 1}}};
    assert_int_equal(sqlcached_kv_put(f->db, "c", 1, "v6", 2, &both, NULL), SQLCACHED_OK);
    both.pre.if_none_match = (sqlcached_match_t){SQLCACHED_MATCH_ANY, NULL, 0};
    assert_int_equal(sqlcached_kv_put(f->db, "c", 1, "v7", 2, &both, NULL),
                     SQLCACHED_PRECONDITION_FAILED);
    assert_value(f->db, "c", "v6");
    /* A VERSIONS match without versions is a caller error. */
    both.pre.if_match = (sqlcached_match_t){SQLCACHED_MATCH_VERSIONS, NULL, 0};
    assert_int_equal(sqlcached_kv_put(f->db, "c", 1, "v8", 2, &both, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
}

static void test_kv_delete(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_delete(f->db, "d", 1, NULL), SQLCACHED_NOT_FOUND);
    /* If-Match on an absent key is a failed precondition, not "absent". */
    assert_int_equal(delete_if(f->db, "d", 1), SQLCACHED_PRECONDITION_FAILED);
    assert_int_equal(put(f->db, "d", "x", &r), SQLCACHED_OK);
    assert_int_equal(delete_if(f->db, "d", r.version + 1), SQLCACHED_PRECONDITION_FAILED);
    assert_value(f->db, "d", "x");
    assert_int_equal(delete_if(f->db, "d", r.version), SQLCACHED_OK);
    assert_null(get_str(f->db, "d", NULL));
    assert_int_equal(sqlcached_kv_delete(f->db, "d", 1, NULL), SQLCACHED_NOT_FOUND);
}

static void test_kv_versions_never_reused(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t r1, r2, r3;
    assert_int_equal(put(f->db, "v", "1", &r1), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_delete(f->db, "v", 1, NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "v", "1", &r2), SQLCACHED_OK);
    assert_true(r2.created);
    assert_true(r2.version > r1.version);
    sqlcached_close(f->db);
    f->db = testutil_open(f->dir, "kv.db", &f->clock);
    assert_non_null(f->db);
    int64_t ver;
    free(get_str(f->db, "v", &ver));
    assert_int_equal(ver, r2.version); /* persisted with its version */
    assert_int_equal(put(f->db, "other", "x", &r3), SQLCACHED_OK);
    assert_true(r3.version > r2.version);
}

static void test_kv_ttl_expires(void **state)
{
    fixture_t *f = *state;
    sqlcached_put_options_t o = {.ttl_ms = 10000};
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(f->db, "t", 1, "x", 1, &o, &r), SQLCACHED_OK);
    assert_int_equal(r.expires_at, f->clock.now + 10000);
    f->clock.now += 9999;
    assert_value(f->db, "t", "x");
    f->clock.now += 1;
    assert_null(get_str(f->db, "t", NULL));
    /* Expired behaves as absent for every call. */
    assert_int_equal(sqlcached_kv_delete(f->db, "t", 1, NULL), SQLCACHED_NOT_FOUND);
    assert_int_equal(put_cond(f->db, "t", "y", IF_PRESENT, 0), SQLCACHED_PRECONDITION_FAILED);
    int64_t value;
    assert_int_equal(sqlcached_kv_incr(f->db, "t", 1, 5, &value, NULL), SQLCACHED_OK);
    assert_int_equal(value, 5);
    assert_value(f->db, "t", "5");
}

static void test_kv_put_without_ttl_clears_expiry(void **state)
{
    fixture_t *f = *state;
    sqlcached_put_options_t o = {.ttl_ms = 1000};
    assert_int_equal(sqlcached_kv_put(f->db, "p", 1, "x", 1, &o, NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "p", "y", NULL), SQLCACHED_OK);
    f->clock.now += 5000;
    assert_value(f->db, "p", "y");
}

static void test_kv_purge_removes_expired_rows(void **state)
{
    fixture_t *f = *state;
    sqlcached_put_options_t o = {.ttl_ms = 1000};
    for (int i = 0; i < 30; i++) {
        char k[16];
        snprintf(k, sizeof k, "e%d", i);
        assert_int_equal(sqlcached_kv_put(f->db, k, strlen(k), "x", 1, &o, NULL), SQLCACHED_OK);
    }
    assert_int_equal(put(f->db, "keep", "x", NULL), SQLCACHED_OK);
    assert_int_equal(kv_purge_expired(f->db, f->clock.now, 100), 0);
    f->clock.now += 1000;
    assert_int_equal(kv_purge_expired(f->db, f->clock.now, 20), 20);
    assert_int_equal(kv_purge_expired(f->db, f->clock.now, 20), 10);
    assert_int_equal(kv_purge_expired(f->db, f->clock.now, 20), 0);
    assert_value(f->db, "keep", "x");
}

static void test_kv_incr(void **state)
{
    fixture_t *f = *state;
    int64_t value, version, v2;
    assert_int_equal(sqlcached_kv_incr(f->db, "n", 1, 1, &value, &version), SQLCACHED_OK);
    assert_int_equal(value, 1);
    assert_int_equal(sqlcached_kv_incr(f->db, "n", 1, -10, &value, &v2), SQLCACHED_OK);
    assert_int_equal(value, -9);
    assert_true(v2 > version);
    assert_value(f->db, "n", "-9");
    sqlcached_value_t *v;
    assert_int_equal(sqlcached_kv_get(f->db, "n", 1, &v), SQLCACHED_OK);
    assert_string_equal(v->content_type, "text/plain; charset=utf-8");
    sqlcached_value_release(v);
}

static void test_kv_incr_keeps_content_type_and_ttl(void **state)
{
    fixture_t *f = *state;
    sqlcached_put_options_t o = {.ttl_ms = 5000, .content_type = "application/json"};
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(f->db, "j", 1, "41", 2, &o, &r), SQLCACHED_OK);
    int64_t value;
    assert_int_equal(sqlcached_kv_incr(f->db, "j", 1, 1, &value, NULL), SQLCACHED_OK);
    assert_int_equal(value, 42);
    sqlcached_value_t *v;
    assert_int_equal(sqlcached_kv_get(f->db, "j", 1, &v), SQLCACHED_OK);
    assert_string_equal(v->content_type, "application/json");
    sqlcached_value_release(v);
    f->clock.now = r.expires_at - 1;
    assert_value(f->db, "j", "42");
    f->clock.now = r.expires_at; /* the TTL of the PUT still applies */
    assert_null(get_str(f->db, "j", NULL));
}

static void test_kv_incr_rejects_non_integers(void **state)
{
    fixture_t *f = *state;
    const char *bad[] = {"abc",
                         "",
                         " 1",
                         "1 ",
                         "+1",
                         "1.5",
                         "--1",
                         "-",
                         "01",
                         "-0",
                         "99999999999999999999",
                         "9223372036854775808"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(put(f->db, "b", bad[i], NULL), SQLCACHED_OK);
        assert_int_equal(sqlcached_kv_incr(f->db, "b", 1, 1, NULL, NULL), SQLCACHED_NOT_INTEGER);
        assert_value(f->db, "b", bad[i]); /* unchanged */
    }
    assert_int_equal(put(f->db, "b", "9223372036854775807", NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_incr(f->db, "b", 1, 1, NULL, NULL), SQLCACHED_NOT_INTEGER);
    assert_int_equal(put(f->db, "b", "-9223372036854775808", NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_incr(f->db, "b", 1, -1, NULL, NULL), SQLCACHED_NOT_INTEGER);
    int64_t value;
    assert_int_equal(sqlcached_kv_incr(f->db, "b", 1, 1, &value, NULL), SQLCACHED_OK);
    assert_int_equal(value, INT64_MIN + 1);
    assert_int_equal(put(f->db, "b", "0", NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_incr(f->db, "b", 1, 0, &value, NULL), SQLCACHED_OK);
    assert_int_equal(value, 0);
}

/* Collect every key of a listing, page by page. */
static int list_all(sqlcached_t *db, const char *prefix, unsigned limit, char out[][16], int *pages)
{
    char after[SQLCACHED_KEY_MAX] = "";
    size_t alen = 0;
    int n = 0;
    *pages = 0;
    for (int guard = 0; guard < 100; guard++) {
        sqlcached_keys_t *page = NULL;
        assert_int_equal(sqlcached_kv_list(db, prefix, strlen(prefix), after, alen, limit, &page),
                         SQLCACHED_OK);
        (*pages)++;
        for (size_t i = 0; i < page->count; i++, n++)
            snprintf(out[n], 16, "%.*s", (int)page->lens[i], (const char *)page->keys[i]);
        int more = page->has_more;
        if (page->count) {
            alen = page->lens[page->count - 1];
            memcpy(after, page->keys[page->count - 1], alen);
        }
        sqlcached_keys_free(page);
        if (!more)
            break;
    }
    return n;
}

static void test_kv_list_pages_in_byte_order(void **state)
{
    fixture_t *f = *state;
    const char *keys[] = {"user:3", "user:1", "user:10", "user:2", "other", "usez", "user"};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(put(f->db, keys[i], "x", NULL), SQLCACHED_OK);
    char out[16][16];
    int pages;
    int n = list_all(f->db, "user:", 2, out, &pages);
    assert_int_equal(n, 4);
    assert_int_equal(pages, 2);
    assert_string_equal(out[0], "user:1");
    assert_string_equal(out[1], "user:10");
    assert_string_equal(out[2], "user:2");
    assert_string_equal(out[3], "user:3");
    n = list_all(f->db, "", 1000, out, &pages);
    assert_int_equal(n, 7);
    assert_string_equal(out[0], "other");
    assert_string_equal(out[6], "usez");
}

static void test_kv_list_skips_expired_and_checks_limit(void **state)
{
    fixture_t *f = *state;
    sqlcached_put_options_t o = {.ttl_ms = 100};
    assert_int_equal(sqlcached_kv_put(f->db, "a1", 2, "x", 1, &o, NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "a2", "x", NULL), SQLCACHED_OK);
    f->clock.now += 100;
    char out[4][16];
    int pages;
    assert_int_equal(list_all(f->db, "a", 10, out, &pages), 1);
    assert_string_equal(out[0], "a2");
    sqlcached_keys_t *page;
    assert_int_equal(sqlcached_kv_list(f->db, "", 0, NULL, 0, 0, &page),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_kv_list(f->db, "", 0, NULL, 0, SQLCACHED_LIST_LIMIT_MAX + 1, &page),
                     SQLCACHED_INVALID_ARGUMENT);
}

static void test_kv_list_prefix_of_high_bytes(void **state)
{
    fixture_t *f = *state;
    const char k1[] = "\xff\xff"
                      "a",
               k2[] = "\xff\xff", k3[] = "\xfe";
    assert_int_equal(sqlcached_kv_put(f->db, k1, 3, "x", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_put(f->db, k2, 2, "x", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_put(f->db, k3, 1, "x", 1, NULL, NULL), SQLCACHED_OK);
    sqlcached_keys_t *page;
    assert_int_equal(sqlcached_kv_list(f->db, k2, 2, NULL, 0, 10, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 2);
    assert_int_equal(page->lens[0], 2);
    assert_int_equal(page->lens[1], 3);
    sqlcached_keys_free(page);
}

typedef struct writer_arg {
    sqlcached_t *db;
    int id;
    int64_t versions[100];
} writer_arg_t;

static void *concurrent_writer(void *p)
{
    writer_arg_t *a = p;
    char k[32];
    for (int i = 0; i < 100; i++) {
        sqlcached_write_result_t r = {0};
        snprintf(k, sizeof k, "w%d-%d", a->id, i % 10);
        if (sqlcached_kv_put(a->db, k, strlen(k), "v", 1, NULL, &r) != SQLCACHED_OK)
            r.version = -1;
        a->versions[i] = r.version;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_kv_concurrent_writes_get_unique_versions(void **state)
{
    fixture_t *f = *state;
    enum { T = 8 };
    writer_arg_t args[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        args[i].db = f->db;
        args[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, concurrent_writer, &args[i]), 0);
    }
    int64_t all[T * 100];
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        memcpy(all + i * 100, args[i].versions, sizeof args[i].versions);
        for (int j = 1; j < 100; j++) /* each thread sees its versions grow */
            assert_true(args[i].versions[j] > args[i].versions[j - 1]);
    }
    qsort(all, T * 100, sizeof all[0], cmp64);
    assert_true(all[0] > 0);
    for (int i = 1; i < T * 100; i++)
        assert_true(all[i] > all[i - 1]);
}

/* --- asynchronous writes ------------------------------------------------ */

/* A completion: the status and how many times it came, waited on with a
 * condition variable (bounded). */
typedef struct completion {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    sqlcached_status_t st;
} completion_t;

static void completion_init(completion_t *c)
{
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->calls = 0;
    c->st = SQLCACHED_INTERNAL;
}

static void on_done(void *cls, sqlcached_status_t st)
{
    completion_t *c = cls;
    pthread_mutex_lock(&c->lock);
    c->calls++;
    c->st = st;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* Wait (10 s at most) for `calls` completions; the last status. */
static sqlcached_status_t completion_wait(completion_t *c, int calls)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&c->lock);
    while (c->calls < calls && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0)
        ;
    assert_int_equal(c->calls, calls);
    sqlcached_status_t st = c->st;
    pthread_mutex_unlock(&c->lock);
    return st;
}

static void test_kv_delete_async(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t r;
    completion_t c;
    completion_init(&c);
    assert_int_equal(put(f->db, "gone", "x", &r), SQLCACHED_OK);
    /* a failed precondition, then a delete, then an absent key */
    int64_t wrong = r.version + 100;
    sqlcached_preconditions_t p = cond(IF_VERSION, &wrong);
    assert_int_equal(sqlcached_kv_delete_async(f->db, "gone", 4, &p, on_done, &c), SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 1), SQLCACHED_PRECONDITION_FAILED);
    assert_int_equal(sqlcached_kv_delete_async(f->db, "gone", 4, NULL, on_done, &c), SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 2), SQLCACHED_OK);
    assert_null(get_str(f->db, "gone", NULL)); /* visible once done was called */
    assert_int_equal(sqlcached_kv_delete_async(f->db, "gone", 4, NULL, on_done, &c), SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 3), SQLCACHED_NOT_FOUND);
    /* bad arguments: refused at once, done never called */
    assert_int_equal(sqlcached_kv_delete_async(f->db, "", 0, NULL, on_done, &c),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_kv_delete_async(f->db, "k", 1, NULL, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    usleep(50000);
    assert_int_equal(completion_wait(&c, 3), SQLCACHED_NOT_FOUND);
}

static void test_kv_incr_async(void **state)
{
    fixture_t *f = *state;
    completion_t c;
    completion_init(&c);
    int64_t value = 0, version = 0;
    assert_int_equal(sqlcached_kv_incr_async(f->db, "n", 1, 5, &value, &version, on_done, &c),
                     SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 1), SQLCACHED_OK);
    assert_int_equal(value, 5);
    int64_t seen;
    char *s = get_str(f->db, "n", &seen);
    assert_string_equal(s, "5");
    free(s);
    assert_int_equal(seen, version);
    assert_int_equal(put(f->db, "text", "abc", NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_incr_async(f->db, "text", 4, 1, &value, NULL, on_done, &c),
                     SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 2), SQLCACHED_NOT_INTEGER);
    assert_int_equal(value, 5); /* untouched on failure */
}

/* Many increments queued at once from one thread: every one counted, and
 * they share transactions (what the asynchronous calls are for). */
static void test_kv_incr_async_batches(void **state)
{
    fixture_t *f = *state;
    enum { N = 200 };
    completion_t c;
    completion_init(&c);
    sqlcached_stats_t before, after;
    sqlcached_stats(f->db, &before);
    for (int i = 0; i < N; i++)
        assert_int_equal(sqlcached_kv_incr_async(f->db, "many", 4, 1, NULL, NULL, on_done, &c),
                         SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, N), SQLCACHED_OK);
    char *s = get_str(f->db, "many", NULL);
    assert_string_equal(s, "200");
    free(s);
    sqlcached_stats(f->db, &after);
    uint64_t txns = after.write_transactions - before.write_transactions;
    assert_true(txns >= 1);
    assert_true(txns < N);
}

/* --- hot keys ------------------------------------------------------------ */

static void read_n(sqlcached_t *db, const char *k, int n)
{
    for (int i = 0; i < n; i++) {
        sqlcached_value_t *v = NULL;
        sqlcached_status_t st = sqlcached_kv_get(db, k, strlen(k), &v);
        assert_true(st == SQLCACHED_OK || st == SQLCACHED_NOT_FOUND);
        sqlcached_value_release(v);
    }
}

static int hot_is(const sqlcached_hotkey_t *h, const char *k)
{
    return h->klen == strlen(k) && memcmp(h->key, k, h->klen) == 0;
}

/* The keys read most (present or absent) come first with their counts;
 * writes are not reads; the counts halve every half-life. */
static void test_kv_hotkeys_name_the_keys_read_most(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(put(f->db, "warm", "v", NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "hot", "v", NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "written-only", "v", NULL), SQLCACHED_OK);
    read_n(f->db, "hot", 12);
    read_n(f->db, "absent", 6);
    read_n(f->db, "warm", 3);
    sqlcached_hotkeys_t *list = NULL;
    assert_int_equal(sqlcached_hotkeys(f->db, 10, &list), SQLCACHED_OK);
    assert_int_equal(list->enabled, 1);
    assert_int_equal(list->half_life_ms, SQLCACHED_HOTKEYS_HALF_LIFE_MS);
    assert_int_equal(list->n, 3);
    assert_true(hot_is(&list->keys[0], "hot"));
    assert_int_equal(list->keys[0].count, 12);
    assert_true(hot_is(&list->keys[1], "absent"));
    assert_int_equal(list->keys[1].count, 6);
    assert_true(hot_is(&list->keys[2], "warm"));
    sqlcached_hotkeys_free(list);
    assert_int_equal(sqlcached_hotkeys(f->db, 1, &list), SQLCACHED_OK);
    assert_int_equal(list->n, 1);
    sqlcached_hotkeys_free(list);
    /* one half-life later */
    f->clock.now += SQLCACHED_HOTKEYS_HALF_LIFE_MS;
    assert_int_equal(sqlcached_hotkeys(f->db, 10, &list), SQLCACHED_OK);
    assert_int_equal(list->keys[0].count, 6);
    sqlcached_hotkeys_free(list);
    assert_int_equal(sqlcached_hotkeys(f->db, 0, &list), SQLCACHED_INVALID_ARGUMENT);
    assert_null(list);
    assert_int_equal(sqlcached_hotkeys(f->db, SQLCACHED_HOTKEYS_LIMIT_MAX + 1, &list),
                     SQLCACHED_INVALID_ARGUMENT);
    sqlcached_hotkeys_free(NULL);
}

/* --- sessions and one-time values: sliding expiry, take, merge patch ---- */

static sqlcached_status_t put_sliding(sqlcached_t *db, const char *k, const char *v, int64_t ttl_ms,
                                      sqlcached_write_result_t *r)
{
    sqlcached_put_options_t o = {.ttl_ms = ttl_ms, .sliding = 1};
    return sqlcached_kv_put(db, k, strlen(k), v, strlen(v), &o, r);
}

/* Is k among the live keys (a listing: reads nothing that slides)? */
static bool listed(sqlcached_t *db, const char *k)
{
    sqlcached_keys_t *page = NULL;
    assert_int_equal(sqlcached_kv_list(db, k, strlen(k), NULL, 0, 10, &page), SQLCACHED_OK);
    bool found = false;
    for (size_t i = 0; i < page->count; i++)
        found |= page->lens[i] == strlen(k) && memcmp(page->keys[i], k, page->lens[i]) == 0;
    sqlcached_keys_free(page);
    return found;
}

/* A write of another key: once it returns, every write queued before it
 * (an extension a read queued) has committed. */
static void flush_writes(sqlcached_t *db)
{
    assert_int_equal(put(db, "flush", "x", NULL), SQLCACHED_OK);
}

static uint64_t writes_committed(sqlcached_t *db)
{
    sqlcached_stats_t st;
    sqlcached_stats(db, &st);
    return st.writes_committed;
}

static void test_kv_sliding_read_extends_within_bounds(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    sqlcached_write_result_t r;
    assert_int_equal(put_sliding(f->db, "s", "v", 10000, &r), SQLCACHED_OK);
    assert_int_equal(r.expires_at, t0 + 10000);
    f->clock.now = t0 + 8000;
    assert_value(f->db, "s", "v"); /* read at t0 + 8 s: expires in [t0 + 18 s, t0 + 19 s] */
    flush_writes(f->db);
    f->clock.now = t0 + 17999;
    assert_true(listed(f->db, "s"));
    f->clock.now = t0 + 19000;
    assert_false(listed(f->db, "s"));
    assert_null(get_str(f->db, "s", NULL)); /* expired: a read does not revive it */
    f->clock.now = t0 + 17000;              /* even seen from before the expiry */
    flush_writes(f->db);
    f->clock.now = t0 + 19000;
    assert_false(listed(f->db, "s"));
}

static void test_kv_sliding_hits_stay_in_memory_and_coalesce(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    assert_int_equal(put_sliding(f->db, "s", "v", 10000, NULL), SQLCACHED_OK);
    assert_value(f->db, "s", "v"); /* into the tier */
    f->clock.now = t0 + 8000;
    sqlcached_stats_t before;
    sqlcached_stats(f->db, &before);
    for (int i = 0; i < 200; i++)
        assert_value(f->db, "s", "v");
    flush_writes(f->db);
    sqlcached_stats_t after;
    sqlcached_stats(f->db, &after);
    /* one extension (plus the flush), not one write per read */
    assert_true(after.writes_committed - before.writes_committed <= 3);
    assert_true(after.storage_reads - before.storage_reads <= 1);
    assert_true(after.cache_hits - before.cache_hits >= 199);
    /* the tier holds the extended expiry: still a hit past the first one */
    f->clock.now = t0 + 12000;
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_get(f->db, "s", 1, &v), SQLCACHED_OK);
    assert_true(v->from_cache);
    sqlcached_value_release(v);
}

static void test_kv_sliding_repeated_reads_keep_it_alive(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    assert_int_equal(put_sliding(f->db, "s", "v", 5000, NULL), SQLCACHED_OK);
    for (int i = 1; i <= 20; i++) { /* 60 s of reads 3 s apart: 12 TTLs */
        f->clock.now = t0 + i * 3000;
        assert_value(f->db, "s", "v");
        flush_writes(f->db);
    }
    uint64_t w = writes_committed(f->db);
    f->clock.now += 4999;
    assert_true(listed(f->db, "s"));
    f->clock.now += 1001; /* 5 s + 1 s after the last read */
    assert_false(listed(f->db, "s"));
    assert_null(get_str(f->db, "s", NULL));
    assert_true(writes_committed(f->db) == w);
}

static void test_kv_sliding_flag_rules(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    sqlcached_put_options_t bad = {.sliding = 1};
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "v", 1, &bad, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_kv_patch(f->db, "s", 1, "{}", 2, &bad, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    /* a PUT without sliding clears the flag */
    assert_int_equal(put_sliding(f->db, "s", "v", 10000, NULL), SQLCACHED_OK);
    sqlcached_put_options_t plain = {.ttl_ms = 10000};
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "w", 1, &plain, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 8000;
    assert_value(f->db, "s", "w");
    flush_writes(f->db);
    f->clock.now = t0 + 10000;
    assert_null(get_str(f->db, "s", NULL));
    /* incr of a sliding key slides; a write sets now + ttl exactly */
    assert_int_equal(put_sliding(f->db, "n", "1", 10000, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 18000;
    int64_t value;
    assert_int_equal(sqlcached_kv_incr(f->db, "n", 1, 1, &value, NULL), SQLCACHED_OK);
    assert_int_equal(value, 2);
    f->clock.now = t0 + 27999;
    assert_true(listed(f->db, "n"));
    f->clock.now = t0 + 28000;
    assert_false(listed(f->db, "n"));
    /* an expired sliding key is absent for conditional writes and incr */
    assert_int_equal(put_cond(f->db, "n", "y", IF_PRESENT, 0), SQLCACHED_PRECONDITION_FAILED);
    assert_int_equal(sqlcached_kv_incr(f->db, "n", 1, 1, &value, NULL), SQLCACHED_OK);
    assert_int_equal(value, 1);
}

static void test_kv_sliding_flag_persists(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    assert_int_equal(put_sliding(f->db, "s", "v", 10000, NULL), SQLCACHED_OK);
    sqlcached_close(f->db); /* a restart: nothing of it left in memory */
    f->db = testutil_open(f->dir, "kv.db", &f->clock);
    assert_non_null(f->db);
    f->clock.now = t0 + 8000;
    assert_value(f->db, "s", "v");
    flush_writes(f->db);
    f->clock.now = t0 + 17000;
    assert_true(listed(f->db, "s"));
}

static void test_kv_take(void **state)
{
    fixture_t *f = *state;
    sqlcached_put_options_t o = {.content_type = "text/plain"};
    sqlcached_write_result_t r;
    assert_int_equal(sqlcached_kv_put(f->db, "code", 4, "123456", 6, &o, &r), SQLCACHED_OK);
    int64_t wrong = r.version + 1;
    sqlcached_preconditions_t p = cond(IF_VERSION, &wrong);
    sqlcached_value_t *v = (sqlcached_value_t *)1;
    assert_int_equal(sqlcached_kv_take(f->db, "code", 4, &p, &v), SQLCACHED_PRECONDITION_FAILED);
    assert_null(v);
    assert_value(f->db, "code", "123456");
    p = cond(IF_VERSION, &r.version);
    assert_int_equal(sqlcached_kv_take(f->db, "code", 4, &p, &v), SQLCACHED_OK);
    assert_non_null(v);
    assert_int_equal(v->len, 6);
    assert_memory_equal(v->data, "123456", 6);
    assert_string_equal(v->content_type, "text/plain");
    assert_int_equal(v->version, r.version);
    sqlcached_value_release(v);
    assert_null(get_str(f->db, "code", NULL));
    assert_int_equal(sqlcached_kv_take(f->db, "code", 4, NULL, &v), SQLCACHED_NOT_FOUND);
    assert_null(v);
    assert_int_equal(sqlcached_kv_take(f->db, "code", 4, &p, &v), SQLCACHED_PRECONDITION_FAILED);
    /* an expired key is absent; the take is a write (takes a version) */
    sqlcached_put_options_t ttl = {.ttl_ms = 1000};
    assert_int_equal(sqlcached_kv_put(f->db, "e", 1, "x", 1, &ttl, NULL), SQLCACHED_OK);
    f->clock.now += 1000;
    assert_int_equal(sqlcached_kv_take(f->db, "e", 1, NULL, &v), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_kv_take(f->db, "", 0, NULL, &v), SQLCACHED_INVALID_ARGUMENT);
    sqlcached_write_result_t r2;
    assert_int_equal(put(f->db, "t", "1", &r), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_take(f->db, "t", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "t", "2", &r2), SQLCACHED_OK);
    assert_true(r2.version > r.version + 1);
    assert_true(r2.created);
}

typedef struct taker {
    sqlcached_t *db;
    pthread_barrier_t *go;
    sqlcached_status_t st;
    char got[16];
} taker_t;

static void *take_once(void *arg)
{
    taker_t *t = arg;
    pthread_barrier_wait(t->go);
    sqlcached_value_t *v = NULL;
    t->st = sqlcached_kv_take(t->db, "otp", 3, NULL, &v);
    if (v) {
        snprintf(t->got, sizeof t->got, "%.*s", (int)v->len, (const char *)v->data);
        sqlcached_value_release(v);
    }
    return NULL;
}

static void test_kv_concurrent_takes_have_one_winner(void **state)
{
    fixture_t *f = *state;
    enum { T = 8, ROUNDS = 20 };
    for (int round = 0; round < ROUNDS; round++) {
        char code[16];
        snprintf(code, sizeof code, "c%d", round);
        assert_int_equal(put(f->db, "otp", code, NULL), SQLCACHED_OK);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, T);
        taker_t t[T];
        pthread_t th[T];
        for (int i = 0; i < T; i++) {
            t[i] = (taker_t){.db = f->db, .go = &go};
            assert_int_equal(pthread_create(&th[i], NULL, take_once, &t[i]), 0);
        }
        int winners = 0;
        for (int i = 0; i < T; i++) {
            pthread_join(th[i], NULL);
            if (t[i].st == SQLCACHED_OK) {
                winners++;
                assert_string_equal(t[i].got, code);
            } else {
                assert_int_equal(t[i].st, SQLCACHED_NOT_FOUND);
            }
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(winners, 1);
    }
}

static void test_kv_take_async(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(put(f->db, "a", "one", NULL), SQLCACHED_OK);
    completion_t c;
    completion_init(&c);
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_take_async(f->db, "a", 1, NULL, &v, on_done, &c), SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 1), SQLCACHED_OK);
    assert_non_null(v);
    assert_memory_equal(v->data, "one", 3);
    sqlcached_value_release(v);
    v = NULL;
    assert_int_equal(sqlcached_kv_take_async(f->db, "a", 1, NULL, &v, on_done, &c), SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 2), SQLCACHED_NOT_FOUND);
    assert_null(v);
    assert_int_equal(sqlcached_kv_take_async(f->db, "a", 1, NULL, &v, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
}

static sqlcached_status_t patch(sqlcached_t *db, const char *k, const char *body,
                                sqlcached_write_result_t *r)
{
    return sqlcached_kv_patch(db, k, strlen(k), body, strlen(body), NULL, r);
}

static void assert_json_value(sqlcached_t *db, const char *k, const char *expected)
{
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_get(db, k, strlen(k), &v), SQLCACHED_OK);
    assert_string_equal(v->content_type, "application/json");
    char *s = strndup(v->data, v->len);
    assert_string_equal(s, expected);
    free(s);
    sqlcached_value_release(v);
}

static void test_kv_patch_merges(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t r;
    assert_int_equal(patch(f->db, "u", "{\"name\":\"Ada\",\"tags\":[1]}", &r), SQLCACHED_OK);
    assert_true(r.created);
    assert_int_equal(r.expires_at, 0);
    assert_json_value(f->db, "u", "{\"name\":\"Ada\",\"tags\":[1]}");
    assert_int_equal(patch(f->db, "u", "{\"addr\":{\"city\":\"X\",\"zip\":\"1\"}}", &r),
                     SQLCACHED_OK);
    assert_false(r.created);
    assert_int_equal(patch(f->db, "u", "{\"tags\":null,\"addr\":{\"zip\":null,\"c\":2}}", &r),
                     SQLCACHED_OK);
    assert_json_value(f->db, "u", "{\"name\":\"Ada\",\"addr\":{\"city\":\"X\",\"c\":2}}");
    int64_t v0;
    char *s = get_str(f->db, "u", &v0);
    free(s);
    assert_int_equal(v0, r.version);
    /* If-Match as for PUT */
    int64_t wrong = r.version + 100;
    sqlcached_put_options_t o = {.pre = cond(IF_VERSION, &wrong)};
    assert_int_equal(sqlcached_kv_patch(f->db, "u", 1, "{\"a\":1}", 7, &o, NULL),
                     SQLCACHED_PRECONDITION_FAILED);
    o.pre = cond(IF_VERSION, &r.version);
    assert_int_equal(sqlcached_kv_patch(f->db, "u", 1, "{\"a\":1}", 7, &o, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_patch(f->db, "absent", 6, "{}", 2, &o, NULL),
                     SQLCACHED_PRECONDITION_FAILED);
    o.pre = cond(IF_ABSENT, NULL);
    assert_int_equal(sqlcached_kv_patch(f->db, "u", 1, "{}", 2, &o, NULL),
                     SQLCACHED_PRECONDITION_FAILED);
    /* not a JSON object: not_json, nothing written */
    assert_int_equal(put(f->db, "t", "hello", NULL), SQLCACHED_OK);
    assert_int_equal(patch(f->db, "t", "{\"a\":1}", NULL), SQLCACHED_NOT_JSON);
    assert_value(f->db, "t", "hello");
    assert_int_equal(put(f->db, "arr", "[1,2]", NULL), SQLCACHED_OK);
    assert_int_equal(patch(f->db, "arr", "{\"a\":1}", NULL), SQLCACHED_NOT_JSON);
    /* malformed patches */
    assert_int_equal(patch(f->db, "u", "{\"a\":", NULL), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(patch(f->db, "u", "{\"a\":1,\"a\":2}", NULL), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(patch(f->db, "", "{}", NULL), SQLCACHED_INVALID_ARGUMENT);
}

/* {"a":{"a":...{}...}} nested `depth` levels, malloc'd. */
static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 6 + 1), *p = s;
    for (int i = 0; i < depth - 1; i++)
        p += sprintf(p, "{\"a\":");
    p += sprintf(p, "{}");
    for (int i = 0; i < depth - 1; i++)
        *p++ = '}';
    *p = '\0';
    return s;
}

static void test_kv_patch_depth_is_bounded(void **state)
{
    fixture_t *f = *state;
    char *ok = nested(SQLCACHED_PATCH_DEPTH_MAX);
    char *deep = nested(SQLCACHED_PATCH_DEPTH_MAX + 1);
    char *very = nested(100000); /* deeper than jansson's parser takes */
    assert_int_equal(patch(f->db, "d", ok, NULL), SQLCACHED_OK);
    assert_int_equal(patch(f->db, "d", ok, NULL), SQLCACHED_OK);
    assert_int_equal(patch(f->db, "d", deep, NULL), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(patch(f->db, "d", very, NULL), SQLCACHED_INVALID_ARGUMENT);
    assert_json_value(f->db, "d", ok);
    free(ok);
    free(deep);
    free(very);
}

static void test_kv_patch_expiry(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    sqlcached_put_options_t o = {.ttl_ms = 10000, .content_type = "application/json"};
    assert_int_equal(sqlcached_kv_put(f->db, "k", 1, "{}", 2, &o, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 5000;
    sqlcached_write_result_t r;
    assert_int_equal(patch(f->db, "k", "{\"a\":1}", &r), SQLCACHED_OK);
    assert_int_equal(r.expires_at, t0 + 10000); /* kept */
    sqlcached_put_options_t ttl = {.ttl_ms = 60000};
    assert_int_equal(sqlcached_kv_patch(f->db, "k", 1, "{\"b\":1}", 7, &ttl, &r), SQLCACHED_OK);
    assert_int_equal(r.expires_at, t0 + 65000);
    /* a sliding key slides on a patch */
    assert_int_equal(put_sliding(f->db, "s", "{}", 10000, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 9000;
    assert_int_equal(patch(f->db, "s", "{\"a\":1}", &r), SQLCACHED_OK);
    assert_int_equal(r.expires_at, t0 + 19000);
    f->clock.now = t0 + 18999;
    assert_true(listed(f->db, "s"));
    f->clock.now = t0 + 19000;
    assert_false(listed(f->db, "s"));
    assert_int_equal(patch(f->db, "s", "{\"a\":2}", &r), SQLCACHED_OK);
    assert_true(r.created); /* expired: patched from {} */
    assert_json_value(f->db, "s", "{\"a\":2}");
}

typedef struct patcher {
    sqlcached_t *db;
    pthread_barrier_t *go;
    int id;
    sqlcached_status_t st;
} patcher_t;

static void *patch_member(void *arg)
{
    patcher_t *p = arg;
    char body[64];
    snprintf(body, sizeof body, "{\"m%d\":%d}", p->id, p->id);
    pthread_barrier_wait(p->go);
    p->st = sqlcached_kv_patch(p->db, "h", 1, body, strlen(body), NULL, NULL);
    return NULL;
}

static void test_kv_concurrent_patches_keep_every_member(void **state)
{
    fixture_t *f = *state;
    enum { T = 50 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, T);
    patcher_t p[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        p[i] = (patcher_t){.db = f->db, .go = &go, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, patch_member, &p[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(p[i].st, SQLCACHED_OK);
    }
    pthread_barrier_destroy(&go);
    char *s = get_str(f->db, "h", NULL);
    assert_non_null(s);
    for (int i = 0; i < T; i++) {
        char member[32];
        snprintf(member, sizeof member, "\"m%d\":%d", i, i);
        if (!strstr(s, member))
            fail_msg("member m%d lost: %s", i, s);
    }
    free(s);
}

static void test_kv_patch_async(void **state)
{
    fixture_t *f = *state;
    completion_t c;
    completion_init(&c);
    sqlcached_write_result_t r = {0};
    assert_int_equal(sqlcached_kv_patch_async(f->db, "p", 1, "{\"x\":true}", 10, NULL, &r, on_done,
                                              &c),
                     SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 1), SQLCACHED_OK);
    assert_true(r.created && r.version > 0);
    assert_json_value(f->db, "p", "{\"x\":true}");
    assert_int_equal(sqlcached_kv_patch_async(f->db, "p", 1, "nope", 4, NULL, &r, on_done, &c),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(put(f->db, "p", "text", NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_kv_patch_async(f->db, "p", 1, "{}", 2, NULL, &r, on_done, &c),
                     SQLCACHED_OK);
    assert_int_equal(completion_wait(&c, 2), SQLCACHED_NOT_JSON);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_kv_put_then_get),
        T(test_kv_absent_is_not_found),
        T(test_kv_binary_value_and_content_type),
        T(test_kv_rejects_bad_keys_and_options),
        T(test_kv_conditional_put),
        T(test_kv_delete),
        T(test_kv_versions_never_reused),
        T(test_kv_ttl_expires),
        T(test_kv_put_without_ttl_clears_expiry),
        T(test_kv_purge_removes_expired_rows),
        T(test_kv_incr),
        T(test_kv_incr_keeps_content_type_and_ttl),
        T(test_kv_incr_rejects_non_integers),
        T(test_kv_list_pages_in_byte_order),
        T(test_kv_list_skips_expired_and_checks_limit),
        T(test_kv_list_prefix_of_high_bytes),
        T(test_kv_concurrent_writes_get_unique_versions),
        T(test_kv_delete_async),
        T(test_kv_incr_async),
        T(test_kv_incr_async_batches),
        T(test_kv_hotkeys_name_the_keys_read_most),
        T(test_kv_sliding_read_extends_within_bounds),
        T(test_kv_sliding_hits_stay_in_memory_and_coalesce),
        T(test_kv_sliding_repeated_reads_keep_it_alive),
        T(test_kv_sliding_flag_rules),
        T(test_kv_sliding_flag_persists),
        T(test_kv_take),
        T(test_kv_concurrent_takes_have_one_winner),
        T(test_kv_take_async),
        T(test_kv_patch_merges),
        T(test_kv_patch_depth_is_bounded),
        T(test_kv_patch_expiry),
        T(test_kv_concurrent_patches_keep_every_member),
        T(test_kv_patch_async),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
