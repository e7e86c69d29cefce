/*
 * test_history.c - tests of the history checker (history.c) on small
 * hand-written histories: what counts as stale, missing or phantom, and how
 * indeterminate operations (HOP_UNKNOWN: a request to a paused or killed
 * node left unanswered) are taken: such a write may be read, never makes a
 * read stale; such a delete may explain a 404.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "history.h"

/* An operation on key 0 by client c, sent at t0 and answered at t1 (ms). */
static hop_t op(unsigned c, hop_kind_t kind, hop_result_t result, int64_t t0, int64_t t1,
                int64_t version, int64_t value)
{
    return (hop_t){.client = c,
                   .kind = kind,
                   .result = result,
                   .invoke = t0 * 1000000,
                   .complete = t1 * 1000000,
                   .version = version,
                   .value = value,
                   .status = result == HOP_OK       ? 200
                             : result == HOP_ABSENT ? 404
                                                    : 0};
}

static history_report_t check(const hop_t *ops, size_t n)
{
    history_report_t r;
    assert_int_equal(history_check(ops, n, 1, &r, NULL, 0), 0);
    return r;
}

/* A read of an older version once a newer write was answered is stale. */
static void test_stale(void **state)
{
    (void)state;
    hop_t h[] = {op(0, HOP_PUT, HOP_OK, 0, 1, 5, 50), op(0, HOP_PUT, HOP_OK, 2, 3, 6, 60),
                 op(1, HOP_GET, HOP_OK, 4, 5, 5, 50)};
    history_report_t r = check(h, 3);
    assert_int_equal(r.reads_checked, 1);
    assert_int_equal(r.stale, 1);
    assert_int_equal(history_violations(&r), 1);
}

/* A read of a version no write has is a phantom; an unanswered write
 * (HOP_ERROR) counts as an error, and does not explain it either. */
static void test_phantom_and_error(void **state)
{
    (void)state;
    hop_t h[] = {op(0, HOP_PUT, HOP_ERROR, 0, 1, 0, 70), op(1, HOP_GET, HOP_OK, 2, 3, 7, 70)};
    history_report_t r = check(h, 2);
    assert_int_equal(r.phantom, 1);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.indeterminate, 0);
}

/* An indeterminate PUT may have been applied: a read of its value is no
 * phantom, but still stale if older than an answered write. */
static void test_read_of_indeterminate_write(void **state)
{
    (void)state;
    hop_t h[] = {op(0, HOP_PUT, HOP_UNKNOWN, 0, 1, 0, 70), op(1, HOP_GET, HOP_OK, 2, 3, 7, 70),
                 op(2, HOP_PUT, HOP_OK, 4, 5, 8, 80), op(1, HOP_GET, HOP_OK, 6, 7, 7, 70)};
    history_report_t r = check(h, 4);
    assert_int_equal(r.indeterminate, 1);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.from_indeterminate, 2);
    assert_int_equal(r.phantom, 0);
    assert_int_equal(r.stale, 1);
    /* another value than the indeterminate PUT's: a phantom after all */
    h[1].value = 71;
    r = check(h, 2);
    assert_int_equal(r.phantom, 1);
    /* a PUT sent after the read completed cannot explain it */
    h[1].value = 70;
    h[0] = op(0, HOP_PUT, HOP_UNKNOWN, 4, 5, 0, 70);
    r = check(h, 2);
    assert_int_equal(r.phantom + r.future, 1);
}

/* An indeterminate write never makes a read stale. */
static void test_indeterminate_write_not_stale(void **state)
{
    (void)state;
    hop_t h[] = {op(0, HOP_PUT, HOP_OK, 0, 1, 5, 50), op(1, HOP_PUT, HOP_UNKNOWN, 2, 3, 0, 60),
                 op(2, HOP_GET, HOP_OK, 4, 5, 5, 50)};
    history_report_t r = check(h, 3);
    assert_int_equal(history_violations(&r), 0);
}

/* A 404 after an answered write is missing, unless a delete (answered, or
 * indeterminate and sent before the read completed) can be placed between. */
static void test_missing_and_indeterminate_delete(void **state)
{
    (void)state;
    hop_t h[] = {op(0, HOP_PUT, HOP_OK, 0, 1, 5, 50), op(1, HOP_GET, HOP_ABSENT, 4, 5, 0, 0),
                 op(2, HOP_DELETE, HOP_UNKNOWN, 2, 3, 0, 0)};
    history_report_t r = check(h, 2);
    assert_int_equal(r.missing, 1);
    r = check(h, 3);
    assert_int_equal(r.missing, 0);
    assert_int_equal(history_violations(&r), 0);
    /* given up on before the write was sent, it may still land after it
     * (a paused node that resumes) */
    h[2] = op(2, HOP_DELETE, HOP_UNKNOWN, 0, 1, 0, 0);
    h[0] = op(0, HOP_PUT, HOP_OK, 2, 3, 5, 50);
    r = check(h, 3);
    assert_int_equal(r.missing, 0);
    h[2].result = HOP_OK; /* answered before the write was sent: it cannot */
    h[2].status = 204;
    r = check(h, 3);
    assert_int_equal(r.missing, 1);
    /* sent after the 404 was answered: explains nothing */
    h[2] = op(2, HOP_DELETE, HOP_UNKNOWN, 6, 7, 0, 0);
    r = check(h, 3);
    assert_int_equal(r.missing, 1);
    /* nor does it resurrect: an indeterminate delete is not answered */
    hop_t g[] = {op(0, HOP_PUT, HOP_OK, 0, 1, 5, 50), op(2, HOP_DELETE, HOP_UNKNOWN, 2, 3, 0, 0),
                 op(1, HOP_GET, HOP_OK, 4, 5, 5, 50)};
    r = check(g, 3);
    assert_int_equal(history_violations(&r), 0);
    g[1].result = HOP_OK;
    g[1].status = 204;
    r = check(g, 3);
    assert_int_equal(r.resurrected, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale),
        cmocka_unit_test(test_phantom_and_error),
        cmocka_unit_test(test_read_of_indeterminate_write),
        cmocka_unit_test(test_indeterminate_write_not_stale),
        cmocka_unit_test(test_missing_and_indeterminate_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
