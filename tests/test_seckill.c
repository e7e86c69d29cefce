/*
 * test_seckill.c - tests of src/seckill.c (items, orders, strategies, the
 * sold-out fast path) through the public API, plus concurrent runs that
 * check the flash-sale invariants.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "engine.h"
#include "testutil.h"

typedef struct fixture {
    char *dir;
    testutil_clock_t clock;
    sqlcached_seckill_strategy_t strategy;
    int retries;
    int unguarded; /* testing_payment_unguarded */
    sqlcached_t *db;
} fixture_t;

static sqlcached_t *open_db(fixture_t *f)
{
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.durability = SQLCACHED_DURABILITY_NORMAL;
    o.purge_interval_ms = -1;
    o.clock_ms = testutil_clock_read;
    o.clock_arg = &f->clock;
    o.seckill_strategy = f->strategy;
    o.seckill_retries = f->retries;
    o.testing_payment_unguarded = f->unguarded;
    return testutil_open_opts(f->dir, "seckill.db", &o);
}

static int setup_with(void **state, sqlcached_seckill_strategy_t strategy, int retries)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    f->clock.now = 1700000000000LL;
    f->strategy = strategy;
    f->retries = retries;
    f->db = open_db(f);
    *state = f;
    return f->db ? 0 : -1;
}

static int setup(void **state)
{
    return setup_with(state, SQLCACHED_SECKILL_STOCK, 3);
}

static int setup_unguarded(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    f->clock.now = 1700000000000LL;
    f->retries = 3;
    f->unguarded = 1;
    f->db = open_db(f);
    *state = f;
    return f->db ? 0 : -1;
}

static int setup_version(void **state)
{
    return setup_with(state, SQLCACHED_SECKILL_VERSION, 3);
}

static int setup_version_no_retry(void **state)
{
    return setup_with(state, SQLCACHED_SECKILL_VERSION, 0);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

static void reopen(fixture_t *f)
{
    sqlcached_close(f->db);
    f->db = open_db(f);
    assert_non_null(f->db);
}

static sqlcached_item_t get_item(sqlcached_t *db, const char *id)
{
    sqlcached_item_t it;
    assert_int_equal(sqlcached_item_get(db, id, &it), SQLCACHED_OK);
    return it;
}

static sqlcached_status_t order(sqlcached_t *db, const char *item, const char *user)
{
    return sqlcached_order_place(db, item, user, NULL);
}

static size_t count_orders(sqlcached_t *db, const char *item)
{
    size_t n = 0;
    int64_t after = 0;
    for (;;) {
        sqlcached_orders_t *page = NULL;
        assert_int_equal(sqlcached_order_list(db, item, after, 1000, &page), SQLCACHED_OK);
        n += page->count;
        int more = page->has_more;
        if (page->count)
            after = page->orders[page->count - 1].order_id;
        sqlcached_orders_free(page);
        if (!more)
            return n;
    }
}

/* ------------------------------------------------------------------------
 * Items
 * ------------------------------------------------------------------------ */

static void test_seckill_put_creates_then_resets(void **state)
{
    fixture_t *f = *state;
    sqlcached_item_t it;
    int created = -1;
    assert_int_equal(sqlcached_item_put(f->db, "sku", "Sneaker", 3, &it, &created), SQLCACHED_OK);
    assert_int_equal(created, 1);
    assert_string_equal(it.id, "sku");
    assert_string_equal(it.name, "Sneaker");
    assert_int_equal(it.stock, 3);
    assert_int_equal(it.sold, 0);
    assert_true(it.version > 0);
    sqlcached_item_t got = get_item(f->db, "sku");
    assert_string_equal(got.name, "Sneaker");
    assert_int_equal(got.stock, 3);
    assert_int_equal(got.initial_stock, 3);
    assert_int_equal(got.version, it.version);
    assert_int_equal(got.from_cache, 0);

    assert_int_equal(order(f->db, "sku", "u1"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "sku", "u2"), SQLCACHED_OK);
    got = get_item(f->db, "sku");
    assert_int_equal(got.stock, 1);
    assert_int_equal(got.sold, 2);

    sqlcached_item_t reset;
    assert_int_equal(sqlcached_item_put(f->db, "sku", "Boot", 10, &reset, &created), SQLCACHED_OK);
    assert_int_equal(created, 0);
    assert_true(reset.version > got.version);
    got = get_item(f->db, "sku");
    assert_string_equal(got.name, "Boot");
    assert_int_equal(got.stock, 10);
    assert_int_equal(got.sold, 0);
    assert_int_equal(got.initial_stock, 10);
    assert_int_equal(got.version, reset.version);
    /* the reset deleted the orders: the users may order again */
    assert_int_equal(count_orders(f->db, "sku"), 0);
    sqlcached_order_t o;
    assert_int_equal(sqlcached_order_get(f->db, "sku", "u1", &o), SQLCACHED_NOT_FOUND);
    assert_int_equal(order(f->db, "sku", "u1"), SQLCACHED_OK);
    /* NULL outputs are allowed */
    assert_int_equal(sqlcached_item_put(f->db, "other", "x", 1, NULL, NULL), SQLCACHED_OK);
}

static void test_seckill_item_reads_go_through_the_tier(void **state)
{
    fixture_t *f = *state;
    sqlcached_item_t it;
    sqlcached_order_t o;
    assert_int_equal(sqlcached_item_put(f->db, "tier", "Tiered", 5, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_get(f->db, "tier", &it), SQLCACHED_OK);
    assert_int_equal(it.from_cache, 0);
    assert_int_equal(sqlcached_item_get(f->db, "tier", &it), SQLCACHED_OK);
    assert_int_equal(it.from_cache, 1);
    assert_int_equal(it.stock, 5);
    /* an order invalidates: the next read is fresh and shows it */
    assert_int_equal(sqlcached_order_place(f->db, "tier", "u1", &o), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_get(f->db, "tier", &it), SQLCACHED_OK);
    assert_int_equal(it.from_cache, 0);
    assert_int_equal(it.stock, 4);
    assert_int_equal(it.sold, 1);
    /* so does a reset */
    assert_int_equal(sqlcached_item_get(f->db, "tier", &it), SQLCACHED_OK);
    assert_int_equal(it.from_cache, 1);
    assert_int_equal(sqlcached_item_put(f->db, "tier", "Again", 9, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_get(f->db, "tier", &it), SQLCACHED_OK);
    assert_int_equal(it.stock, 9);
    assert_string_equal(it.name, "Again");
    /* an absent item is remembered, and forgotten when it is created */
    assert_int_equal(sqlcached_item_get(f->db, "later", &it), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_item_get(f->db, "later", &it), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_item_put(f->db, "later", "Now", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_get(f->db, "later", &it), SQLCACHED_OK);
}

/* Item reads count as KV GETs do: a read answered absent (from the store
 * or from a negative entry) is a miss, a read of a cached item a hit. */
static void test_seckill_item_reads_count_hits_and_misses(void **state)
{
    fixture_t *f = *state;
    sqlcached_item_t it;
    sqlcached_stats_t s0, s1;
    sqlcached_stats(f->db, &s0);
    assert_int_equal(sqlcached_item_get(f->db, "nope", &it), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_item_get(f->db, "nope", &it), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_item_put(f->db, "yes", "Yes", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_get(f->db, "yes", &it), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_get(f->db, "yes", &it), SQLCACHED_OK);
    assert_int_equal(it.from_cache, 1);
    sqlcached_stats(f->db, &s1);
    assert_int_equal(s1.cache_misses, s0.cache_misses + 3);
    assert_int_equal(s1.cache_hits, s0.cache_hits + 1);
    assert_int_equal(s1.cache_negative_hits, s0.cache_negative_hits + 1);
}

static void test_seckill_absent_item(void **state)
{
    fixture_t *f = *state;
    sqlcached_item_t it;
    sqlcached_order_t o;
    sqlcached_orders_t *page = (sqlcached_orders_t *)1;
    assert_int_equal(sqlcached_item_get(f->db, "none", &it), SQLCACHED_NOT_FOUND);
    assert_int_equal(order(f->db, "none", "u1"), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_order_get(f->db, "none", "u1", &o), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_order_list(f->db, "none", 0, 10, &page), SQLCACHED_NOT_FOUND);
    assert_null(page);
    /* nothing was created by the refused order */
    assert_int_equal(sqlcached_item_get(f->db, "none", &it), SQLCACHED_NOT_FOUND);
}

static void test_seckill_rejects_bad_arguments(void **state)
{
    fixture_t *f = *state;
    char id129[130], name257[258];
    memset(id129, 'i', 129);
    id129[129] = '\0';
    memset(name257, 'n', 257);
    name257[257] = '\0';
    const sqlcached_status_t BAD = SQLCACHED_INVALID_ARGUMENT;
    assert_int_equal(sqlcached_item_put(f->db, "", "n", 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, NULL, "n", 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, id129, "n", 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, "i", "", 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, "i", NULL, 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, "i", name257, 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, "i", "n", -1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, "i", "n", (int64_t)INT32_MAX + 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, "\xff", "n", 1, NULL, NULL), BAD);
    assert_int_equal(sqlcached_item_put(f->db, "i", "\xc0\x80", 1, NULL, NULL), BAD);
    /* the bounds themselves are fine */
    id129[128] = '\0';
    name257[256] = '\0';
    assert_int_equal(sqlcached_item_put(f->db, id129, name257, INT32_MAX, NULL, NULL),
                     SQLCACHED_OK);
    assert_int_equal(sqlcached_item_put(f->db, "i", "caf\xc3\xa9", 0, NULL, NULL), SQLCACHED_OK);
    char user129[130];
    memset(user129, 'u', 129);
    user129[129] = '\0';
    assert_int_equal(order(f->db, "i", ""), BAD);
    assert_int_equal(order(f->db, "i", NULL), BAD);
    assert_int_equal(order(f->db, "i", user129), BAD);
    assert_int_equal(order(f->db, "", "u"), BAD);
    sqlcached_order_t o;
    sqlcached_item_t it;
    assert_int_equal(sqlcached_order_get(f->db, "i", user129, &o), BAD);
    assert_int_equal(sqlcached_item_get(f->db, "", &it), BAD);
    sqlcached_orders_t *page;
    assert_int_equal(sqlcached_order_list(f->db, "i", 0, 0, &page), BAD);
    assert_int_equal(sqlcached_order_list(f->db, "i", 0, 1001, &page), BAD);
    assert_int_equal(sqlcached_order_list(f->db, "i", -1, 10, &page), BAD);
    user129[128] = '\0';
    assert_int_equal(order(f->db, id129, user129), SQLCACHED_OK);
}

/* ------------------------------------------------------------------------
 * Orders
 * ------------------------------------------------------------------------ */

static void test_seckill_order_roundtrip(void **state)
{
    fixture_t *f = *state;
    sqlcached_item_t before;
    assert_int_equal(sqlcached_item_put(f->db, "sku", "S", 5, &before, NULL), SQLCACHED_OK);
    f->clock.now += 123;
    sqlcached_order_t o;
    assert_int_equal(sqlcached_order_place(f->db, "sku", "alice", &o), SQLCACHED_OK);
    assert_true(o.order_id > 0);
    assert_string_equal(o.item_id, "sku");
    assert_string_equal(o.user_id, "alice");
    assert_int_equal(o.created_at, f->clock.now);
    sqlcached_item_t after = get_item(f->db, "sku");
    assert_int_equal(after.stock, 4);
    assert_int_equal(after.sold, 1);
    assert_true(after.version > before.version);
    sqlcached_order_t got;
    assert_int_equal(sqlcached_order_get(f->db, "sku", "alice", &got), SQLCACHED_OK);
    assert_int_equal(got.order_id, o.order_id);
    assert_string_equal(got.user_id, "alice");
    assert_string_equal(got.item_id, "sku");
    assert_int_equal(got.created_at, o.created_at);
    assert_int_equal(sqlcached_order_get(f->db, "sku", "bob", &got), SQLCACHED_NOT_FOUND);
    /* the same user may order another item */
    assert_int_equal(sqlcached_item_put(f->db, "sku2", "S2", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "sku2", "alice"), SQLCACHED_OK);
}

static void test_seckill_one_order_per_user(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put(f->db, "sku", "S", 5, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "sku", "alice"), SQLCACHED_OK);
    sqlcached_item_t it = get_item(f->db, "sku");
    assert_int_equal(order(f->db, "sku", "alice"), SQLCACHED_ALREADY_ORDERED);
    sqlcached_item_t again = get_item(f->db, "sku");
    assert_int_equal(again.stock, 4);
    assert_int_equal(again.sold, 1);
    assert_int_equal(again.version, it.version); /* a refusal changes nothing */
    assert_int_equal(count_orders(f->db, "sku"), 1);
    sqlcached_seckill_stats_t s;
    sqlcached_seckill_stats(f->db, &s);
    assert_int_equal(s.orders, 1);
    assert_int_equal(s.already_ordered, 1);
}

static void test_seckill_sold_out_and_fast_path(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put(f->db, "sku", "S", 2, NULL, NULL), SQLCACHED_OK);
    assert_false(seckill_flag_is_set(f->db->seckill, "sku"));
    assert_int_equal(order(f->db, "sku", "u1"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "sku", "u2"), SQLCACHED_OK);
    /* the order that took the last unit set the flag */
    assert_true(seckill_flag_is_set(f->db->seckill, "sku"));
    sqlcached_item_t it = get_item(f->db, "sku");
    assert_int_equal(order(f->db, "sku", "u3"), SQLCACHED_SOLD_OUT);
    /* already_ordered wins over sold_out, also on the fast path */
    assert_int_equal(order(f->db, "sku", "u1"), SQLCACHED_ALREADY_ORDERED);
    sqlcached_item_t after = get_item(f->db, "sku");
    assert_int_equal(after.stock, 0);
    assert_int_equal(after.sold, 2);
    assert_int_equal(after.version, it.version);
    sqlcached_seckill_stats_t s;
    sqlcached_seckill_stats(f->db, &s);
    assert_int_equal(s.orders, 2);
    assert_int_equal(s.sold_out, 1);
    assert_int_equal(s.sold_out_fast, 1);
    assert_int_equal(s.already_ordered, 1);
    assert_int_equal(count_orders(f->db, "sku"), 2);
}

static void test_seckill_reset_clears_sold_out(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put(f->db, "sku", "S", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "sku", "u1"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "sku", "u2"), SQLCACHED_SOLD_OUT);
    assert_true(seckill_flag_is_set(f->db->seckill, "sku"));
    assert_int_equal(sqlcached_item_put(f->db, "sku", "S", 2, NULL, NULL), SQLCACHED_OK);
    assert_false(seckill_flag_is_set(f->db->seckill, "sku"));
    assert_int_equal(order(f->db, "sku", "u2"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "sku", "u1"), SQLCACHED_OK); /* its order was deleted */
    assert_int_equal(order(f->db, "sku", "u3"), SQLCACHED_SOLD_OUT);
    /* a reset to stock 0 is sold out at once */
    assert_int_equal(sqlcached_item_put(f->db, "sku", "S", 0, NULL, NULL), SQLCACHED_OK);
    assert_true(seckill_flag_is_set(f->db->seckill, "sku"));
    assert_int_equal(order(f->db, "sku", "u1"), SQLCACHED_SOLD_OUT);
    sqlcached_item_t it = get_item(f->db, "sku");
    assert_int_equal(it.stock, 0);
    assert_int_equal(it.sold, 0);
}

static void test_seckill_flag_rebuilt_after_reopen(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put(f->db, "gone", "S", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_put(f->db, "again", "S", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "gone", "u1"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "again", "u1"), SQLCACHED_OK);
    reopen(f);
    /* memory is empty after a restart; the database still knows */
    assert_false(seckill_flag_is_set(f->db->seckill, "gone"));
    assert_int_equal(order(f->db, "gone", "u1"), SQLCACHED_ALREADY_ORDERED);
    assert_int_equal(order(f->db, "gone", "u2"), SQLCACHED_SOLD_OUT);
    assert_true(seckill_flag_is_set(f->db->seckill, "gone"));
    assert_int_equal(order(f->db, "gone", "u3"), SQLCACHED_SOLD_OUT);
    sqlcached_seckill_stats_t s;
    sqlcached_seckill_stats(f->db, &s);
    assert_int_equal(s.sold_out, 2);
    assert_int_equal(s.sold_out_fast, 1);
    /* a reset item sells again */
    assert_int_equal(sqlcached_item_put(f->db, "again", "S", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "again", "u2"), SQLCACHED_OK);
    sqlcached_item_t it = get_item(f->db, "gone");
    assert_int_equal(it.stock, 0);
    assert_int_equal(it.sold, 1);
}

static void test_seckill_list_pages(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put(f->db, "a", "A", 10, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_put(f->db, "b", "B", 10, NULL, NULL), SQLCACHED_OK);
    char user[16];
    for (int i = 0; i < 5; i++) {
        snprintf(user, sizeof user, "u%d", i);
        assert_int_equal(order(f->db, "a", user), SQLCACHED_OK);
        assert_int_equal(order(f->db, "b", user), SQLCACHED_OK); /* interleaved ids */
    }
    sqlcached_orders_t *page = NULL;
    assert_int_equal(sqlcached_order_list(f->db, "a", 0, 2, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 2);
    assert_true(page->has_more);
    assert_string_equal(page->orders[0].user_id, "u0");
    assert_string_equal(page->orders[1].user_id, "u1");
    assert_string_equal(page->orders[1].item_id, "a");
    assert_true(page->orders[0].order_id < page->orders[1].order_id);
    int64_t after = page->orders[1].order_id;
    sqlcached_orders_free(page);
    assert_int_equal(sqlcached_order_list(f->db, "a", after, 2, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 2);
    assert_true(page->has_more);
    assert_string_equal(page->orders[0].user_id, "u2");
    after = page->orders[1].order_id;
    sqlcached_orders_free(page);
    assert_int_equal(sqlcached_order_list(f->db, "a", after, 2, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 1);
    assert_false(page->has_more);
    assert_string_equal(page->orders[0].user_id, "u4");
    after = page->orders[0].order_id;
    sqlcached_orders_free(page);
    /* exactly `limit` left: no further page */
    assert_int_equal(sqlcached_order_list(f->db, "b", 0, 5, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 5);
    assert_false(page->has_more);
    sqlcached_orders_free(page);
    assert_int_equal(sqlcached_order_list(f->db, "a", after, 10, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 0);
    assert_false(page->has_more);
    sqlcached_orders_free(page);
    sqlcached_orders_free(NULL);
}

/* Item ids in byte order (so "B" < "a" < "a\xc3\xa9" < "b"), pages split
 * where `limit` says, `after` exclusive and not necessarily an id. */
static void test_seckill_item_list_pages(void **state)
{
    fixture_t *f = *state;
    sqlcached_items_t *page = NULL;
    assert_int_equal(sqlcached_item_list(f->db, NULL, 10, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 0);
    assert_false(page->has_more);
    sqlcached_items_free(page);
    static const char *const ids[] = {"b", "a\xc3\xa9", "B", "a"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(sqlcached_item_put(f->db, ids[i], "N", 5 + i, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "a", "u1"), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_list(f->db, NULL, 2, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 2);
    assert_true(page->has_more);
    assert_string_equal(page->items[0].id, "B");
    assert_string_equal(page->items[1].id, "a");
    assert_int_equal(page->items[1].stock, 8 - 1);
    assert_int_equal(page->items[1].sold, 1);
    assert_int_equal(page->items[1].initial_stock, 8);
    assert_string_equal(page->items[1].name, "N");
    assert_true(page->items[1].version > page->items[0].version);
    sqlcached_items_free(page);
    assert_int_equal(sqlcached_item_list(f->db, "a", 2, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 2); /* exactly `limit` left: no further page */
    assert_false(page->has_more);
    assert_string_equal(page->items[0].id, "a\xc3\xa9");
    assert_string_equal(page->items[1].id, "b");
    sqlcached_items_free(page);
    assert_int_equal(sqlcached_item_list(f->db, "aa", 1000, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 2);
    assert_string_equal(page->items[0].id, "a\xc3\xa9");
    sqlcached_items_free(page);
    assert_int_equal(sqlcached_item_list(f->db, "", 1, &page), SQLCACHED_OK);
    assert_string_equal(page->items[0].id, "B");
    sqlcached_items_free(page);
    assert_int_equal(sqlcached_item_list(f->db, "b", 5, &page), SQLCACHED_OK);
    assert_int_equal(page->count, 0);
    assert_false(page->has_more);
    sqlcached_items_free(page);
    sqlcached_items_free(NULL);
}

static void test_seckill_item_list_rejects_bad_arguments(void **state)
{
    fixture_t *f = *state;
    sqlcached_items_t *page = (sqlcached_items_t *)&page; /* must be reset to NULL */
    assert_int_equal(sqlcached_item_list(f->db, NULL, 0, &page), SQLCACHED_INVALID_ARGUMENT);
    assert_null(page);
    assert_int_equal(sqlcached_item_list(f->db, NULL, SQLCACHED_LIST_LIMIT_MAX + 1, &page),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_item_list(f->db, "\xff", 10, &page), SQLCACHED_INVALID_ARGUMENT);
    char long_id[SQLCACHED_ITEM_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(sqlcached_item_list(f->db, long_id, 10, &page), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_item_list(f->db, NULL, 10, NULL), SQLCACHED_INVALID_ARGUMENT);
    long_id[SQLCACHED_ITEM_ID_MAX] = '\0'; /* the longest id is a valid `after` */
    assert_int_equal(sqlcached_item_list(f->db, long_id, SQLCACHED_LIST_LIMIT_MAX, &page),
                     SQLCACHED_OK);
    assert_int_equal(page->count, 0);
    sqlcached_items_free(page);
}

static void test_seckill_order_ids_never_reused(void **state)
{
    fixture_t *f = *state;
    sqlcached_order_t o1, o2;
    assert_int_equal(sqlcached_item_put(f->db, "a", "A", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_order_place(f->db, "a", "u", &o1), SQLCACHED_OK);
    assert_int_equal(sqlcached_item_put(f->db, "a", "A", 1, NULL, NULL), SQLCACHED_OK);
    reopen(f);
    assert_int_equal(sqlcached_order_place(f->db, "a", "u", &o2), SQLCACHED_OK);
    assert_true(o2.order_id > o1.order_id);
}

/* ------------------------------------------------------------------------
 * The version strategy
 * ------------------------------------------------------------------------ */

static void test_seckill_version_strategy_sequential(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put(f->db, "v", "V", 2, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "none", "u1"), SQLCACHED_NOT_FOUND);
    assert_int_equal(order(f->db, "v", "u1"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "v", "u1"), SQLCACHED_ALREADY_ORDERED);
    assert_int_equal(order(f->db, "v", "u2"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "v", "u3"), SQLCACHED_SOLD_OUT);
    assert_int_equal(order(f->db, "v", "u2"), SQLCACHED_ALREADY_ORDERED);
    sqlcached_item_t it = get_item(f->db, "v");
    assert_int_equal(it.stock, 0);
    assert_int_equal(it.sold, 2);
    sqlcached_seckill_stats_t s;
    sqlcached_seckill_stats(f->db, &s);
    assert_int_equal(s.orders, 2);
    assert_int_equal(s.conflicts, 0);
    assert_int_equal(s.retries, 0);
    /* reopened, the item's stock 0 is seen on the read before any write */
    reopen(f);
    assert_int_equal(order(f->db, "v", "u3"), SQLCACHED_SOLD_OUT);
    assert_true(seckill_flag_is_set(f->db->seckill, "v"));
    assert_int_equal(sqlcached_item_put(f->db, "v", "V", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "v", "u3"), SQLCACHED_OK);
}

/* ------------------------------------------------------------------------
 * Concurrency: many threads, one item, more users than stock, retries
 * ------------------------------------------------------------------------ */

#define RUN_THREADS 16
#define RUN_USERS 240
#define RUN_TRIES 2
#define RUN_STOCK 60

typedef struct run {
    sqlcached_t *db;
    const char *item;
    int stock;
    pthread_barrier_t start;
    pthread_mutex_t lock;
    int64_t ok_order_id[RUN_USERS]; /* the order answered OK per user, 0 = none */
    int ok_twice;                   /* a user answered OK twice: never allowed */
    int counts[SQLCACHED_STATUS_COUNT];
    volatile int done;
    int monitor_bad; /* the monitor saw stock < 0 or stock + sold != stock */
} run_t;

typedef struct worker {
    run_t *run;
    int index;
} worker_t;

static void *run_worker(void *arg)
{
    worker_t *w = arg;
    run_t *r = w->run;
    /* each thread serves the users u with u % RUN_THREADS == index; every
     * user tries RUN_TRIES times, the tries spread over the run */
    unsigned seed = (unsigned)w->index * 7919u + 1;
    int mine[RUN_USERS * RUN_TRIES], n = 0;
    for (int t = 0; t < RUN_TRIES; t++)
        for (int u = w->index; u < RUN_USERS; u += RUN_THREADS)
            mine[n++] = u;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rand_r(&seed) % (unsigned)(i + 1));
        int tmp = mine[i];
        mine[i] = mine[j];
        mine[j] = tmp;
    }
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < n; i++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", mine[i]);
        sqlcached_order_t o;
        sqlcached_status_t st = sqlcached_order_place(r->db, r->item, user, &o);
        pthread_mutex_lock(&r->lock);
        r->counts[st]++;
        if (st == SQLCACHED_OK) {
            if (r->ok_order_id[mine[i]])
                r->ok_twice++;
            r->ok_order_id[mine[i]] = o.order_id;
        }
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

static void *run_monitor(void *arg)
{
    run_t *r = arg;
    while (!r->done) {
        sqlcached_item_t it;
        if (sqlcached_item_get(r->db, r->item, &it) == SQLCACHED_OK &&
            (it.stock < 0 || it.stock + it.sold != r->stock))
            r->monitor_bad++;
    }
    return NULL;
}

/* Every order of the item, checked: no user twice; returns the count and
 * fills by_user[u] with the order id of user-u. */
static size_t collect_orders(run_t *r, int64_t *by_user)
{
    size_t n = 0;
    int64_t after = 0;
    for (;;) {
        sqlcached_orders_t *page = NULL;
        assert_int_equal(sqlcached_order_list(r->db, r->item, after, 100, &page), SQLCACHED_OK);
        for (size_t i = 0; i < page->count; i++) {
            int u = -1;
            assert_int_equal(sscanf(page->orders[i].user_id, "user-%d", &u), 1);
            assert_true(u >= 0 && u < RUN_USERS);
            assert_int_equal(by_user[u], 0); /* no duplicate users */
            by_user[u] = page->orders[i].order_id;
        }
        n += page->count;
        int more = page->has_more;
        if (page->count)
            after = page->orders[page->count - 1].order_id;
        sqlcached_orders_free(page);
        if (!more)
            return n;
    }
}

/* Run the sale and check the invariants; returns the units sold. */
static int64_t run_sale(sqlcached_t *db, bool expect_sell_out, run_t *r)
{
    memset(r, 0, sizeof *r);
    r->db = db;
    r->item = "hot";
    r->stock = RUN_STOCK;
    assert_int_equal(sqlcached_item_put(db, r->item, "Hot item", RUN_STOCK, NULL, NULL),
                     SQLCACHED_OK);
    pthread_barrier_init(&r->start, NULL, RUN_THREADS);
    pthread_mutex_init(&r->lock, NULL);
    pthread_t threads[RUN_THREADS], monitor;
    worker_t workers[RUN_THREADS];
    pthread_create(&monitor, NULL, run_monitor, r);
    for (int i = 0; i < RUN_THREADS; i++) {
        workers[i] = (worker_t){r, i};
        pthread_create(&threads[i], NULL, run_worker, &workers[i]);
    }
    for (int i = 0; i < RUN_THREADS; i++)
        pthread_join(threads[i], NULL);
    r->done = 1;
    pthread_join(monitor, NULL);
    pthread_barrier_destroy(&r->start);
    pthread_mutex_destroy(&r->lock);

    sqlcached_item_t it = get_item(db, r->item);
    print_message("sold %lld of %d: ok %d, sold_out %d, already_ordered %d, unavailable %d\n",
                  (long long)it.sold, RUN_STOCK, r->counts[SQLCACHED_OK],
                  r->counts[SQLCACHED_SOLD_OUT], r->counts[SQLCACHED_ALREADY_ORDERED],
                  r->counts[SQLCACHED_UNAVAILABLE]);
    int64_t by_user[RUN_USERS] = {0};
    size_t orders = collect_orders(r, by_user);
    assert_int_equal(r->monitor_bad, 0);
    assert_int_equal(r->ok_twice, 0);
    assert_true(it.stock >= 0);
    assert_int_equal(it.stock + it.sold, RUN_STOCK);    /* stock + sold == initial */
    assert_int_equal((int64_t)orders, it.sold);         /* orders == sold */
    assert_int_equal(r->counts[SQLCACHED_OK], it.sold); /* every OK is one unit */
    for (int u = 0; u < RUN_USERS; u++)                 /* every OK order exists */
        if (r->ok_order_id[u])
            assert_int_equal(by_user[u], r->ok_order_id[u]);
    int answered = 0;
    for (int s = 0; s < SQLCACHED_STATUS_COUNT; s++)
        answered += r->counts[s];
    assert_int_equal(answered, RUN_USERS * RUN_TRIES);
    assert_int_equal(r->counts[SQLCACHED_OK] + r->counts[SQLCACHED_SOLD_OUT] +
                         r->counts[SQLCACHED_ALREADY_ORDERED] + r->counts[SQLCACHED_UNAVAILABLE],
                     answered);
    if (expect_sell_out) {
        assert_int_equal(it.sold, RUN_STOCK);
        assert_int_equal(r->counts[SQLCACHED_UNAVAILABLE], 0);
    }
    sqlcached_seckill_stats_t s;
    sqlcached_seckill_stats(db, &s);
    assert_int_equal(s.orders, (uint64_t)r->counts[SQLCACHED_OK]);
    assert_int_equal(s.sold_out, (uint64_t)r->counts[SQLCACHED_SOLD_OUT]);
    assert_int_equal(s.already_ordered, (uint64_t)r->counts[SQLCACHED_ALREADY_ORDERED]);
    assert_int_equal(s.conflicts, (uint64_t)r->counts[SQLCACHED_UNAVAILABLE]);
    return it.sold;
}

static void test_seckill_concurrent_stock_strategy(void **state)
{
    fixture_t *f = *state;
    run_t *r = calloc(1, sizeof *r);
    assert_int_equal(run_sale(f->db, true, r), RUN_STOCK);
    /* more users than stock: once sold out, the flag answered */
    sqlcached_seckill_stats_t s;
    sqlcached_seckill_stats(f->db, &s);
    assert_true(s.sold_out > 0);
    free(r);
}

static void test_seckill_concurrent_version_strategy(void **state)
{
    fixture_t *f = *state;
    run_t *r = calloc(1, sizeof *r);
    int64_t sold = run_sale(f->db, false, r);
    assert_true(sold > 0);
    free(r);
}

static void test_seckill_concurrent_version_conflicts(void **state)
{
    fixture_t *f = *state; /* version strategy without retries */
    run_t *r = calloc(1, sizeof *r);
    run_sale(f->db, false, r);
    sqlcached_seckill_stats_t s;
    sqlcached_seckill_stats(f->db, &s);
    /* 16 threads reading one version and writing against it: most lose */
    assert_true(s.conflicts > 0);
    assert_int_equal(s.retries, 0);
    free(r);
}

/* Orders race with resets: the sold-out flag must never refuse an order
 * that the database would take. */
static void *reset_loop(void *arg)
{
    run_t *r = arg;
    for (int i = 0; i < 20 && !r->done; i++)
        sqlcached_item_put(r->db, r->item, "Hot item", 5, NULL, NULL);
    return NULL;
}

static void test_seckill_resets_during_orders(void **state)
{
    fixture_t *f = *state;
    run_t *r = calloc(1, sizeof *r);
    r->db = f->db;
    r->item = "hot";
    assert_int_equal(sqlcached_item_put(f->db, "hot", "Hot item", 5, NULL, NULL), SQLCACHED_OK);
    pthread_barrier_init(&r->start, NULL, RUN_THREADS);
    pthread_mutex_init(&r->lock, NULL);
    pthread_t threads[RUN_THREADS], resetter;
    worker_t workers[RUN_THREADS];
    for (int i = 0; i < RUN_THREADS; i++) {
        workers[i] = (worker_t){r, i};
        pthread_create(&threads[i], NULL, run_worker, &workers[i]);
    }
    pthread_create(&resetter, NULL, reset_loop, r);
    for (int i = 0; i < RUN_THREADS; i++)
        pthread_join(threads[i], NULL);
    r->done = 1;
    pthread_join(resetter, NULL);
    pthread_barrier_destroy(&r->start);
    pthread_mutex_destroy(&r->lock);
    sqlcached_item_t it = get_item(f->db, "hot");
    assert_int_equal(it.stock + it.sold, 5);
    assert_int_equal(count_orders(f->db, "hot"), (size_t)it.sold);
    /* after the last reset, new users can buy exactly what is left */
    int64_t left = it.stock;
    for (int i = 0; i < left; i++) {
        char user[32];
        snprintf(user, sizeof user, "late-%d", i);
        assert_int_equal(order(f->db, "hot", user), SQLCACHED_OK);
    }
    assert_int_equal(order(f->db, "hot", "late-x"), SQLCACHED_SOLD_OUT);
    assert_int_equal(sqlcached_item_put(f->db, "hot", "Hot item", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "hot", "late-x"), SQLCACHED_OK);
    free(r);
}

/* ------------------------------------------------------------------------
 * Payment deadline
 * ------------------------------------------------------------------------ */

static sqlcached_order_t get_order(sqlcached_t *db, const char *item, const char *user)
{
    sqlcached_order_t o;
    assert_int_equal(sqlcached_order_get(db, item, user, &o), SQLCACHED_OK);
    return o;
}

/* Poll (real time, every 5 ms, at most max_ms) until the user's order is
 * in `want`; returns the state last seen. */
static sqlcached_order_state_t wait_state(sqlcached_t *db, const char *item, const char *user,
                                          sqlcached_order_state_t want, int max_ms)
{
    int64_t until = testutil_mono_ms() + max_ms;
    sqlcached_order_t o = get_order(db, item, user);
    while (o.state != want && testutil_mono_ms() < until) {
        struct timespec pause = {0, 5000000};
        nanosleep(&pause, NULL);
        o = get_order(db, item, user);
    }
    return o.state;
}

/* The contract's invariants for one item: stock + sold = initial; sold =
 * pending + paid orders; no user holds two pending-or-paid orders. Returns
 * how many orders are in each state. */
static void check_payment_invariants(sqlcached_t *db, const char *item, int64_t initial,
                                     size_t counts[3])
{
    sqlcached_item_t it = get_item(db, item);
    assert_int_equal(it.stock + it.sold, initial);
    counts[0] = counts[1] = counts[2] = 0;
    sqlcached_orders_t *page = NULL;
    assert_int_equal(sqlcached_order_list(db, item, 0, SQLCACHED_LIST_LIMIT_MAX, &page),
                     SQLCACHED_OK);
    assert_false(page->has_more);
    for (size_t i = 0; i < page->count; i++) {
        const sqlcached_order_t *o = &page->orders[i];
        counts[o->state]++;
        if (o->state == SQLCACHED_ORDER_CANCELLED)
            continue;
        for (size_t j = i + 1; j < page->count; j++)
            if (page->orders[j].state != SQLCACHED_ORDER_CANCELLED)
                assert_string_not_equal(o->user_id, page->orders[j].user_id);
    }
    sqlcached_orders_free(page);
    assert_int_equal(it.sold,
                     (int64_t)(counts[SQLCACHED_ORDER_PENDING] + counts[SQLCACHED_ORDER_PAID]));
}

static void test_seckill_payment_calls(void **state)
{
    fixture_t *f = *state;
    sqlcached_t *db = f->db;
    int64_t t0 = f->clock.now;
    assert_int_equal(sqlcached_item_put_payment(db, "p", "P", 5, 999, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_item_put_payment(db, "p", "P", 5, 86400001, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_item_put_payment(db, "p", "P", 5, -1, NULL, NULL),
                     SQLCACHED_INVALID_ARGUMENT);
    sqlcached_item_t it;
    assert_int_equal(sqlcached_item_put_payment(db, "p", "P", 5, 60000, &it, NULL), SQLCACHED_OK);
    assert_int_equal(it.payment_timeout_ms, 60000);
    assert_int_equal(get_item(db, "p").payment_timeout_ms, 60000);

    sqlcached_order_t o;
    assert_int_equal(sqlcached_order_place(db, "p", "alice", &o), SQLCACHED_OK);
    assert_int_equal(o.state, SQLCACHED_ORDER_PENDING);
    assert_int_equal(o.pay_by, t0 + 60000);
    assert_int_equal(o.settled_at, 0);
    assert_int_equal(get_order(db, "p", "alice").state, SQLCACHED_ORDER_PENDING);
    /* still one live order per user */
    assert_int_equal(sqlcached_order_place(db, "p", "alice", NULL), SQLCACHED_ALREADY_ORDERED);

    f->clock.now = t0 + 10;
    assert_int_equal(sqlcached_order_pay(db, "p", "alice", &o), SQLCACHED_OK);
    assert_int_equal(o.state, SQLCACHED_ORDER_PAID);
    assert_int_equal(o.settled_at, t0 + 10);
    f->clock.now = t0 + 20;
    assert_int_equal(sqlcached_order_pay(db, "p", "alice", &o), SQLCACHED_OK); /* unchanged */
    assert_int_equal(o.settled_at, t0 + 10);
    assert_int_equal(sqlcached_order_cancel(db, "p", "alice", NULL), SQLCACHED_ORDER_NOT_PENDING);
    assert_int_equal(get_order(db, "p", "alice").state, SQLCACHED_ORDER_PAID);

    /* cancel: the unit goes back */
    assert_int_equal(sqlcached_order_place(db, "p", "bob", &o), SQLCACHED_OK);
    int64_t bob_first = o.order_id;
    assert_int_equal(get_item(db, "p").stock, 3);
    assert_int_equal(sqlcached_order_cancel(db, "p", "bob", &o), SQLCACHED_OK);
    assert_int_equal(o.state, SQLCACHED_ORDER_CANCELLED);
    assert_int_equal(get_item(db, "p").stock, 4);
    assert_int_equal(sqlcached_order_cancel(db, "p", "bob", NULL), SQLCACHED_ORDER_NOT_PENDING);
    assert_int_equal(sqlcached_order_pay(db, "p", "bob", NULL), SQLCACHED_ORDER_NOT_PENDING);
    assert_int_equal(get_item(db, "p").stock, 4); /* returned once */

    /* no order, no item, bad arguments */
    assert_int_equal(sqlcached_order_pay(db, "p", "carol", NULL), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_order_cancel(db, "p", "carol", NULL), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_order_pay(db, "nope", "alice", NULL), SQLCACHED_NOT_FOUND);
    assert_int_equal(sqlcached_order_pay(db, "", "alice", NULL), SQLCACHED_INVALID_ARGUMENT);
    assert_int_equal(sqlcached_order_cancel(db, "p", "", NULL), SQLCACHED_INVALID_ARGUMENT);

    /* a cancelled user may order again: a new order, pending */
    assert_int_equal(sqlcached_order_place(db, "p", "bob", &o), SQLCACHED_OK);
    assert_true(o.order_id > bob_first);
    assert_int_equal(o.state, SQLCACHED_ORDER_PENDING);
    assert_int_equal(get_order(db, "p", "bob").order_id, o.order_id);
    assert_int_equal(sqlcached_order_place(db, "p", "bob", NULL), SQLCACHED_ALREADY_ORDERED);

    /* an item without a timeout: orders are final (paid) */
    assert_int_equal(sqlcached_item_put(db, "f", "F", 2, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_order_place(db, "f", "alice", &o), SQLCACHED_OK);
    assert_int_equal(o.state, SQLCACHED_ORDER_PAID);
    assert_int_equal(o.pay_by, 0);
    assert_int_equal(sqlcached_order_pay(db, "f", "alice", NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_order_cancel(db, "f", "alice", NULL), SQLCACHED_ORDER_NOT_PENDING);

    size_t counts[3];
    check_payment_invariants(db, "p", 5, counts);
    assert_int_equal(counts[SQLCACHED_ORDER_PENDING], 1);
    assert_int_equal(counts[SQLCACHED_ORDER_PAID], 1);
    assert_int_equal(counts[SQLCACHED_ORDER_CANCELLED], 1);
    sqlcached_payment_stats_t ps;
    sqlcached_payment_stats(db, &ps);
    assert_int_equal(ps.pending, 1);
    assert_int_equal(ps.paid, 2);
    assert_int_equal(ps.cancelled, 1);
    assert_int_equal(ps.payments, 1);
    assert_int_equal(ps.user_cancelled, 1);
    assert_int_equal(ps.auto_cancelled, 0);
    /* a reset deletes the orders and keeps (or drops) the timeout */
    assert_int_equal(sqlcached_item_put(db, "p", "P", 1, NULL, NULL), SQLCACHED_OK);
    assert_int_equal(get_item(db, "p").payment_timeout_ms, 0);
    assert_int_equal(sqlcached_order_place(db, "p", "bob", &o), SQLCACHED_OK);
    assert_int_equal(o.state, SQLCACHED_ORDER_PAID);
}

static void test_seckill_pay_after_deadline_cancels(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put_payment(f->db, "p", "P", 1, 1000, NULL, NULL),
                     SQLCACHED_OK);
    assert_int_equal(order(f->db, "p", "alice"), SQLCACHED_OK);
    f->clock.now += 1000; /* pay_by reached: too late to pay */
    assert_int_equal(sqlcached_order_pay(f->db, "p", "alice", NULL), SQLCACHED_ORDER_NOT_PENDING);
    assert_int_equal(get_order(f->db, "p", "alice").state, SQLCACHED_ORDER_CANCELLED);
    assert_int_equal(get_item(f->db, "p").stock, 1);
    /* the timer finds nothing left to return */
    struct timespec pause = {1, 200000000};
    nanosleep(&pause, NULL);
    size_t counts[3];
    check_payment_invariants(f->db, "p", 1, counts);
    assert_int_equal(get_item(f->db, "p").stock, 1);
    sqlcached_payment_stats_t ps;
    sqlcached_payment_stats(f->db, &ps);
    assert_int_equal(ps.auto_cancelled, 1);
}

static void test_seckill_deadline_cancels_once(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put_payment(f->db, "p", "P", 1, 1000, NULL, NULL),
                     SQLCACHED_OK);
    assert_int_equal(order(f->db, "p", "alice"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "p", "bob"), SQLCACHED_SOLD_OUT);
    assert_true(seckill_flag_is_set(f->db->seckill, "p"));
    f->clock.now += 999; /* not yet */
    assert_int_equal(wait_state(f->db, "p", "alice", SQLCACHED_ORDER_CANCELLED, 1200),
                     SQLCACHED_ORDER_PENDING);
    f->clock.now += 1;
    assert_int_equal(wait_state(f->db, "p", "alice", SQLCACHED_ORDER_CANCELLED, 2000),
                     SQLCACHED_ORDER_CANCELLED);
    sqlcached_order_t o = get_order(f->db, "p", "alice");
    assert_int_equal(o.settled_at, f->clock.now);
    assert_int_equal(get_item(f->db, "p").stock, 1);
    /* the unit is back: the sold-out flag no longer refuses */
    assert_false(seckill_flag_is_set(f->db->seckill, "p"));
    assert_int_equal(order(f->db, "p", "bob"), SQLCACHED_OK);
    struct timespec pause = {1, 200000000};
    nanosleep(&pause, NULL);
    size_t counts[3];
    check_payment_invariants(f->db, "p", 1, counts);
    assert_int_equal(counts[SQLCACHED_ORDER_CANCELLED], 1);
    assert_int_equal(counts[SQLCACHED_ORDER_PENDING], 1);
    sqlcached_payment_stats_t ps;
    sqlcached_payment_stats(f->db, &ps);
    assert_int_equal(ps.auto_cancelled, 1);
}

static void test_seckill_deadline_passed_while_closed(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put_payment(f->db, "p", "P", 3, 1000, NULL, NULL),
                     SQLCACHED_OK);
    assert_int_equal(order(f->db, "p", "alice"), SQLCACHED_OK);
    assert_int_equal(order(f->db, "p", "bob"), SQLCACHED_OK);
    assert_int_equal(sqlcached_order_pay(f->db, "p", "bob", NULL), SQLCACHED_OK);
    sqlcached_close(f->db);
    f->db = NULL;
    f->clock.now += 5000;
    f->db = open_db(f);
    assert_non_null(f->db);
    int64_t t = testutil_mono_ms();
    assert_int_equal(wait_state(f->db, "p", "alice", SQLCACHED_ORDER_CANCELLED, 1000),
                     SQLCACHED_ORDER_CANCELLED);
    assert_true(testutil_mono_ms() - t <= 1000);
    assert_int_equal(get_order(f->db, "p", "bob").state, SQLCACHED_ORDER_PAID);
    size_t counts[3];
    check_payment_invariants(f->db, "p", 3, counts);
    assert_int_equal(get_item(f->db, "p").stock, 2);
}

#define RACE_USERS 64
#define RACE_THREADS 4

typedef struct race {
    sqlcached_t *db;
    pthread_barrier_t start;
    sqlcached_status_t answers[RACE_USERS];
} race_t;

typedef struct race_worker {
    race_t *r;
    int id;
} race_worker_t;

static void *race_pay(void *arg)
{
    race_worker_t *w = arg;
    pthread_barrier_wait(&w->r->start);
    for (int u = w->id; u < RACE_USERS; u += RACE_THREADS) {
        char user[32];
        snprintf(user, sizeof user, "u%d", u);
        w->r->answers[u] = sqlcached_order_pay(w->r->db, "race", user, NULL);
        struct timespec pause = {0, 300000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void test_seckill_pay_races_deadline(void **state)
{
    fixture_t *f = *state;
    race_t *r = calloc(1, sizeof *r);
    r->db = f->db;
    assert_int_equal(sqlcached_item_put_payment(f->db, "race", "R", RACE_USERS, 1000, NULL, NULL),
                     SQLCACHED_OK);
    for (int u = 0; u < RACE_USERS; u++) {
        char user[32];
        snprintf(user, sizeof user, "u%d", u);
        assert_int_equal(order(f->db, "race", user), SQLCACHED_OK);
    }
    pthread_barrier_init(&r->start, NULL, RACE_THREADS + 1);
    pthread_t threads[RACE_THREADS];
    race_worker_t workers[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        workers[i] = (race_worker_t){r, i};
        pthread_create(&threads[i], NULL, race_pay, &workers[i]);
    }
    pthread_barrier_wait(&r->start);
    struct timespec pause = {0, 3000000};
    nanosleep(&pause, NULL);
    f->clock.now += 1000; /* the deadline passes while they pay */
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&r->start);
    size_t paid = 0, refused = 0;
    for (int u = 0; u < RACE_USERS; u++) {
        char user[32];
        snprintf(user, sizeof user, "u%d", u);
        assert_true(r->answers[u] == SQLCACHED_OK || r->answers[u] == SQLCACHED_ORDER_NOT_PENDING);
        sqlcached_order_state_t want = r->answers[u] == SQLCACHED_OK ? SQLCACHED_ORDER_PAID
                                                                     : SQLCACHED_ORDER_CANCELLED;
        /* never both: a paid answer stays paid, a refused one is cancelled */
        assert_int_equal(wait_state(f->db, "race", user, want, 2000), want);
        paid += want == SQLCACHED_ORDER_PAID;
        refused += want == SQLCACHED_ORDER_CANCELLED;
    }
    size_t counts[3];
    check_payment_invariants(f->db, "race", RACE_USERS, counts);
    assert_int_equal(counts[SQLCACHED_ORDER_PAID], paid);
    assert_int_equal(counts[SQLCACHED_ORDER_CANCELLED], refused);
    assert_int_equal(counts[SQLCACHED_ORDER_PENDING], 0);
    sqlcached_payment_stats_t ps;
    sqlcached_payment_stats(f->db, &ps);
    assert_int_equal(ps.auto_cancelled, refused); /* each unit returned once */
    assert_int_equal(ps.payments, paid);
    print_message("pay racing the deadline: %zu paid, %zu cancelled\n", paid, refused);
    free(r);
}

/* The testing-only switch breaks the guard: a paid order whose pay_by
 * passed is cancelled (so the crash loop's check can be seen to fail). */
static void test_seckill_testing_unguarded_cancels_paid(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_item_put_payment(f->db, "p", "P", 2, 1000, NULL, NULL),
                     SQLCACHED_OK);
    assert_int_equal(order(f->db, "p", "alice"), SQLCACHED_OK);
    assert_int_equal(sqlcached_order_pay(f->db, "p", "alice", NULL), SQLCACHED_OK);
    assert_int_equal(order(f->db, "p", "bob"), SQLCACHED_OK);
    f->clock.now += 1000;
    assert_int_equal(wait_state(f->db, "p", "bob", SQLCACHED_ORDER_CANCELLED, 2000),
                     SQLCACHED_ORDER_CANCELLED);
    assert_int_equal(get_order(f->db, "p", "alice").state, SQLCACHED_ORDER_CANCELLED);
}

/* A database written before payment deadlines (migrations 001-003 only)
 * opens with its orders paid, their ids kept, and AUTOINCREMENT going on
 * above the highest id ever handed out (SQLite: the migration rebuilds the
 * orders table). */
static void test_seckill_payment_migration_keeps_v1_orders(void **state)
{
    fixture_t *f = *state;
    TESTUTIL_SKIP_ON_PG("the SQLite migration rebuilds the orders table");
    sqlcached_close(f->db);
    f->db = NULL;
    char *path = testutil_db(f->dir, "seckill.db");
    assert_non_null(path);
    remove(path);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    const char *srcdir = getenv("SQLCACHED_SRCDIR");
    static const char *const files[] = {"001_kv.sql", "002_seckill.sql", "003_leases.sql"};
    assert_int_equal(sqlite3_exec(raw,
                                  "CREATE TABLE schema_migrations (version INTEGER "
                                  "PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER "
                                  "NOT NULL)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    for (int i = 0; i < 3; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/sql/sqlite/%s", srcdir ? srcdir : ".", files[i]);
        char *sql = testutil_read_file(file, NULL);
        assert_non_null(sql);
        assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
        free(sql);
    }
    static const char setup_sql[] =
        "INSERT INTO schema_migrations VALUES (1, '001_kv.sql', 0), (2, '002_seckill.sql', 0), "
        "(3, '003_leases.sql', 0);"
        "UPDATE meta SET value = 20 WHERE name = 'version';"
        "INSERT INTO items VALUES ('old', 'Old', 2, 3, 5, 20);"
        "INSERT INTO orders (order_id, item_id, user_id, created_at) VALUES "
        "(1, 'old', 'a', 100), (2, 'old', 'b', 101), (7, 'old', 'c', 102);"
        "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'orders';";
    assert_int_equal(sqlite3_exec(raw, setup_sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    free(path);

    f->db = open_db(f);
    assert_non_null(f->db);
    sqlcached_order_t o = get_order(f->db, "old", "c");
    assert_int_equal(o.order_id, 7);
    assert_int_equal(o.state, SQLCACHED_ORDER_PAID);
    assert_int_equal(o.pay_by, 0);
    assert_int_equal(o.created_at, 102);
    assert_int_equal(sqlcached_order_pay(f->db, "old", "a", NULL), SQLCACHED_OK);
    assert_int_equal(sqlcached_order_cancel(f->db, "old", "a", NULL), SQLCACHED_ORDER_NOT_PENDING);
    assert_int_equal(order(f->db, "old", "b"), SQLCACHED_ALREADY_ORDERED);
    assert_int_equal(sqlcached_order_place(f->db, "old", "d", &o), SQLCACHED_OK);
    assert_int_equal(o.order_id, 10); /* above every id handed out before */
    assert_int_equal(o.state, SQLCACHED_ORDER_PAID);
    size_t counts[3];
    check_payment_invariants(f->db, "old", 5, counts);
    assert_int_equal(counts[SQLCACHED_ORDER_PAID], 4);
    assert_int_equal(get_item(f->db, "old").payment_timeout_ms, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seckill_put_creates_then_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_item_reads_go_through_the_tier, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_seckill_absent_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_item_reads_count_hits_and_misses, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_seckill_rejects_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_order_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_one_order_per_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_sold_out_and_fast_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_reset_clears_sold_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_flag_rebuilt_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_item_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_item_list_rejects_bad_arguments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_seckill_order_ids_never_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_version_strategy_sequential, setup_version,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_seckill_concurrent_stock_strategy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_concurrent_version_strategy, setup_version,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_seckill_concurrent_version_conflicts,
                                        setup_version_no_retry, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_resets_during_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_payment_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_pay_after_deadline_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_deadline_cancels_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_deadline_passed_while_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_pay_races_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_testing_unguarded_cancels_paid,
                                        setup_unguarded, teardown),
        cmocka_unit_test_setup_teardown(test_seckill_payment_migration_keeps_v1_orders, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
