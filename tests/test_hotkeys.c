/*
 * test_hotkeys.c - tests of src/hotkeys.c: the heavy hitters come out on
 * top with counts that bound the truth (Space-Saving), the table stays at
 * its fixed size under many distinct keys, counts halve every half-life,
 * keys are bytes (NUL included, up to 512), and concurrent readers lose
 * no counts of a monitored key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotkeys.h"

#define HALF 1000 /* ms: the half-life of these tests */

static void rec(hotkeys_t *h, const char *k, int64_t now)
{
    hotkeys_record(h, k, strlen(k), now);
}

static size_t top(hotkeys_t *h, int64_t now, hotkeys_item_t **out, size_t max)
{
    *out = calloc(max, sizeof **out);
    assert_non_null(*out);
    return hotkeys_top(h, now, *out, max);
}

static int is_key(const hotkeys_item_t *it, const char *k)
{
    return it->klen == strlen(k) && memcmp(it->key, k, it->klen) == 0;
}

static void test_hotkeys_empty(void **state)
{
    (void)state;
    hotkeys_t *h = hotkeys_create(HALF);
    assert_non_null(h);
    hotkeys_item_t *out;
    assert_int_equal(top(h, 0, &out, 10), 0);
    free(out);
    hotkeys_destroy(h);
    hotkeys_destroy(NULL);
    assert_null(hotkeys_create(0));
}

/* Ten keys read 1000, 900, ... 100 times among 5000 keys read once each:
 * they are the top ten, in order, and each count bounds the true count
 * from above, count - error from below. */
static void test_hotkeys_heavy_hitters_on_top(void **state)
{
    (void)state;
    hotkeys_t *h = hotkeys_create(HALF);
    assert_non_null(h);
    char k[32];
    int noise = 0;
    for (int round = 0; round < 1000; round++) {
        for (int i = 0; i < 10; i++) {
            if (round < 1000 - 100 * i) {
                snprintf(k, sizeof k, "hot:%d", i);
                rec(h, k, 0);
            }
        }
        for (int j = 0; j < 5; j++) {
            snprintf(k, sizeof k, "noise:%d", noise++);
            rec(h, k, 0);
        }
    }
    hotkeys_item_t *out;
    assert_int_equal(top(h, 0, &out, 10), 10);
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "hot:%d", i);
        uint64_t truth = (uint64_t)(1000 - 100 * i);
        assert_true(is_key(&out[i], k));
        assert_true(out[i].count >= truth);
        assert_true(out[i].count - out[i].error <= truth);
    }
    free(out);
    hotkeys_destroy(h);
}

/* Many distinct keys: the table never holds more than its capacity, and
 * a limit larger than the table answers at most the table. */
static void test_hotkeys_memory_is_fixed(void **state)
{
    (void)state;
    hotkeys_t *h = hotkeys_create(HALF);
    assert_non_null(h);
    char k[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        rec(h, k, 0);
    }
    hotkeys_item_t *out;
    size_t n = top(h, 0, &out, HOTKEYS_CAPACITY + 10);
    assert_true(n > 0);
    assert_true(n <= HOTKEYS_CAPACITY);
    for (size_t i = 1; i < n; i++)
        assert_true(out[i - 1].count >= out[i].count);
    free(out);
    assert_int_equal(top(h, 0, &out, 3), 3);
    free(out);
    hotkeys_destroy(h);
}

/* Counts halve every half-life; a key whose count reaches 0 leaves. */
static void test_hotkeys_counts_decay(void **state)
{
    (void)state;
    hotkeys_t *h = hotkeys_create(HALF);
    assert_non_null(h);
    for (int i = 0; i < 8; i++)
        rec(h, "old", 10);
    rec(h, "new", 10);
    hotkeys_item_t *out;
    assert_int_equal(top(h, 10, &out, 10), 2);
    assert_true(is_key(&out[0], "old"));
    assert_int_equal(out[0].count, 8);
    free(out);
    assert_int_equal(top(h, HALF + 10, &out, 10), 1); /* new: 1 -> 0, gone */
    assert_true(is_key(&out[0], "old"));
    assert_int_equal(out[0].count, 4);
    free(out);
    for (int i = 0; i < 10; i++)
        rec(h, "new", 2 * HALF + 10);
    assert_int_equal(top(h, 2 * HALF + 10, &out, 10), 2); /* old: 2 */
    assert_true(is_key(&out[0], "new"));
    assert_int_equal(out[0].count, 10);
    assert_int_equal(out[1].count, 2);
    free(out);
    assert_int_equal(top(h, 100 * HALF, &out, 10), 0); /* all gone */
    free(out);
    hotkeys_destroy(h);
}

/* Keys are bytes: a NUL inside, 512 bytes kept; 0 and 513 bytes ignored. */
static void test_hotkeys_keys_are_bytes(void **state)
{
    (void)state;
    hotkeys_t *h = hotkeys_create(HALF);
    assert_non_null(h);
    const unsigned char bin[] = {0xff, 0x00, 'a'};
    unsigned char big[HOTKEYS_KEY_MAX + 1];
    memset(big, 'b', sizeof big);
    hotkeys_record(h, bin, sizeof bin, 0);
    hotkeys_record(h, bin, sizeof bin, 0);
    hotkeys_record(h, big, HOTKEYS_KEY_MAX, 0);
    hotkeys_record(h, big, HOTKEYS_KEY_MAX + 1, 0);
    hotkeys_record(h, big, 0, 0);
    hotkeys_item_t *out;
    assert_int_equal(top(h, 0, &out, 10), 2);
    assert_int_equal(out[0].klen, sizeof bin);
    assert_memory_equal(out[0].key, bin, sizeof bin);
    assert_int_equal(out[0].count, 2);
    assert_int_equal(out[1].klen, HOTKEYS_KEY_MAX);
    free(out);
    hotkeys_destroy(h);
}

typedef struct worker {
    hotkeys_t *h;
    int id;
} worker_t;

static void *reader(void *arg)
{
    worker_t *w = arg;
    char k[32];
    for (int i = 0; i < 20000; i++) {
        rec(w->h, "shared", 0);
        if (i % 100 == 0) {
            snprintf(k, sizeof k, "t%d:%d", w->id, i);
            rec(w->h, k, 0);
        }
    }
    return NULL;
}

/* Four threads reading one hot key (and a few others): no count lost. */
static void test_hotkeys_concurrent_readers(void **state)
{
    (void)state;
    hotkeys_t *h = hotkeys_create(HALF);
    assert_non_null(h);
    pthread_t t[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){h, i};
        assert_int_equal(pthread_create(&t[i], NULL, reader, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    hotkeys_item_t *out;
    assert_true(top(h, 0, &out, 1) == 1);
    assert_true(is_key(&out[0], "shared"));
    assert_int_equal(out[0].count, 80000);
    assert_int_equal(out[0].error, 0);
    free(out);
    hotkeys_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hotkeys_empty),
        cmocka_unit_test(test_hotkeys_heavy_hitters_on_top),
        cmocka_unit_test(test_hotkeys_memory_is_fixed),
        cmocka_unit_test(test_hotkeys_counts_decay),
        cmocka_unit_test(test_hotkeys_keys_are_bytes),
        cmocka_unit_test(test_hotkeys_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
