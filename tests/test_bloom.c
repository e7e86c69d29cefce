/*
 * test_bloom.c - tests of src/bloom.c: no false negatives, a bounded false
 * positive rate, delete semantics and rebuilds under concurrent adds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "bloom.h"

static size_t key_of(char *buf, size_t cap, const char *prefix, long i)
{
    return (size_t)snprintf(buf, cap, "%s:%ld", prefix, i);
}

static void test_bloom_no_false_negatives(void **state)
{
    bloom_t *b = bloom_create(100000, 0.01);
    char k[32];
    long fp = 0;

    (void)state;
    assert_non_null(b);
    for (long i = 0; i < 100000; i++)
        bloom_add(b, k, key_of(k, sizeof(k), "in", i));
    for (long i = 0; i < 100000; i++)
        assert_true(bloom_may_contain(b, k, key_of(k, sizeof(k), "in", i)));
    for (long i = 0; i < 100000; i++)
        fp += bloom_may_contain(b, k, key_of(k, sizeof(k), "out", i));
    assert_true(fp < 2000); /* 1% target, 2% allowed */
    bloom_destroy(b);
}

static void test_bloom_deleted_key_stays_maybe_until_rebuild(void **state)
{
    bloom_t *b = bloom_create(1000, 0.001);
    char k[32];

    (void)state;
    for (long i = 0; i < 500; i++)
        bloom_add(b, k, key_of(k, sizeof(k), "key", i));
    /* key:0 .. key:249 are deleted from the store */
    for (long i = 0; i < 250; i++)
        bloom_note_delete(b);
    assert_true(bloom_stale_ratio(b) > 0.4);
    assert_true(bloom_may_contain(b, k, key_of(k, sizeof(k), "key", 3)));
    bloom_rebuild_begin(b);
    for (long i = 250; i < 500; i++)
        bloom_rebuild_add(b, k, key_of(k, sizeof(k), "key", i));
    bloom_add(b, k, key_of(k, sizeof(k), "new", 1)); /* during the rebuild */
    bloom_rebuild_end(b);
    long gone = 0;
    for (long i = 0; i < 250; i++)
        gone += !bloom_may_contain(b, k, key_of(k, sizeof(k), "key", i));
    assert_true(gone > 240);
    for (long i = 250; i < 500; i++)
        assert_true(bloom_may_contain(b, k, key_of(k, sizeof(k), "key", i)));
    assert_true(bloom_may_contain(b, k, key_of(k, sizeof(k), "new", 1)));
    assert_true(bloom_stale_ratio(b) == 0.0);
    bloom_clear(b);
    assert_false(bloom_may_contain(b, k, key_of(k, sizeof(k), "key", 300)));
    bloom_destroy(b);
}

struct adder {
    bloom_t *b;
    atomic_long added;
    atomic_bool stop;
    atomic_long false_negatives;
};

/* Adds keys and checks every key it added so far is still present. */
static void *on_add(void *arg)
{
    struct adder *a = arg;
    char k[32];

    for (long i = 0; !atomic_load(&a->stop) && i < 200000; i++) {
        atomic_store(&a->added, i + 1); /* the commit, then the add */
        bloom_add(a->b, k, key_of(k, sizeof(k), "c", i));
        long j = i / 2;
        if (!bloom_may_contain(a->b, k, key_of(k, sizeof(k), "c", j)))
            atomic_fetch_add(&a->false_negatives, 1);
    }
    return NULL;
}

static void test_bloom_rebuild_keeps_concurrent_adds(void **state)
{
    struct adder a = {.b = bloom_create(400000, 0.01)};
    pthread_t t;
    char k[32];

    (void)state;
    pthread_create(&t, NULL, on_add, &a);
    for (int round = 0; round < 20; round++) {
        bloom_rebuild_begin(a.b);
        long upto = atomic_load(&a.added); /* the "store scan" */
        for (long i = 0; i < upto; i++)
            bloom_rebuild_add(a.b, k, key_of(k, sizeof(k), "c", i));
        bloom_rebuild_end(a.b);
    }
    atomic_store(&a.stop, true);
    pthread_join(t, NULL);
    long n = atomic_load(&a.added);
    for (long i = 0; i < n; i++)
        assert_true(bloom_may_contain(a.b, k, key_of(k, sizeof(k), "c", i)));
    assert_int_equal(atomic_load(&a.false_negatives), 0);
    bloom_destroy(a.b);
}

static void test_bloom_rejects_bad_arguments(void **state)
{
    (void)state;
    assert_null(bloom_create(0, 0.01));
    assert_null(bloom_create(10, 0));
    assert_null(bloom_create(10, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bloom_no_false_negatives),
        cmocka_unit_test(test_bloom_deleted_key_stays_maybe_until_rebuild),
        cmocka_unit_test(test_bloom_rebuild_keeps_concurrent_adds),
        cmocka_unit_test(test_bloom_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
