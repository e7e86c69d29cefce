/*
 * storage_sqlite_seckill.c - the flash sale's rows on SQLite (the seckill
 * operations of storage.h).
 *
 * Schema (sql/sqlite/002_seckill.sql): items(id, name, stock, sold, initial_stock,
 * version) and orders(order_id INTEGER PRIMARY KEY, item_id REFERENCES
 * items, user_id, created_at) with UNIQUE(item_id, user_id). The unique
 * constraint is the one-order-per-user guard and the foreign key finds a
 * missing item, so order_insert is one INSERT whose constraint errors are
 * its outcomes. take_unit is one guarded UPDATE ... RETURNING: the guard is
 * `stock > 0`, plus `version = ?` for the version strategy.
 *
 * Payment deadline (sql/sqlite/007_payment.sql): the table was rebuilt with
 * a state, pay_by and settled_at, and the uniqueness guard became a partial
 * unique index over the orders that are not cancelled. An order is
 * inserted by INSERT ... SELECT from its item (state and pay_by follow the
 * item's payment_timeout_ms; no item, no row: NOT_FOUND). Every change of
 * state is one UPDATE ... WHERE state = 'pending' ... RETURNING, so an
 * order leaves pending once.
 */
#include <string.h>

#include "storage_sqlite.h"

static const char SQL_ITEM_GET[] = "SELECT id, name, stock, sold, initial_stock, version, "
                                   "COALESCE(payment_timeout_ms, 0) FROM items WHERE id = ?1";
static const char SQL_ITEM_EXISTS[] = "SELECT 1 FROM items WHERE id = ?1";
static const char SQL_ITEM_UPSERT[] =
    "INSERT INTO items (id, name, stock, sold, initial_stock, version, payment_timeout_ms) "
    "VALUES (?1, ?2, ?3, 0, ?3, ?4, NULLIF(?5, 0)) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, stock = excluded.stock, "
    "sold = 0, initial_stock = excluded.initial_stock, version = excluded.version, "
    "payment_timeout_ms = excluded.payment_timeout_ms";
static const char SQL_ORDERS_DELETE[] = "DELETE FROM orders WHERE item_id = ?1";
static const char SQL_ORDER_INSERT[] =
    "INSERT INTO orders (item_id, user_id, created_at, state, pay_by) "
    "SELECT id, ?2, ?3, CASE WHEN payment_timeout_ms > 0 THEN 'pending' ELSE 'paid' END, "
    "CASE WHEN payment_timeout_ms > 0 THEN ?3 + payment_timeout_ms END "
    "FROM items WHERE id = ?1 RETURNING order_id, item_id, user_id, created_at, state, "
    "COALESCE(pay_by, 0), COALESCE(settled_at, 0)";
static const char SQL_TAKE_BY_STOCK[] =
    "UPDATE items SET stock = stock - 1, sold = sold + 1, version = ?1 "
    "WHERE id = ?2 AND stock > 0 RETURNING stock";
static const char SQL_TAKE_BY_VERSION[] =
    "UPDATE items SET stock = stock - 1, sold = sold + 1, version = ?1 "
    "WHERE id = ?2 AND version = ?3 AND stock > 0 RETURNING stock";
static const char SQL_SET_STOCK[] =
    "UPDATE items SET stock = ?1, sold = ?2, version = ?3 WHERE id = ?4 RETURNING 1";
static const char SQL_ITEM_LIST[] =
    "SELECT id, name, stock, sold, initial_stock, version, "
    "COALESCE(payment_timeout_ms, 0) FROM items WHERE id > ?1 ORDER BY id LIMIT ?2";
static const char SQL_ORDER_GET[] =
    "SELECT order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0) FROM orders "
    "WHERE item_id = ?1 AND user_id = ?2 ORDER BY order_id DESC LIMIT 1";
static const char SQL_ORDER_LIST[] =
    "SELECT order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0) FROM orders "
    "WHERE item_id = ?1 AND order_id > ?2 ORDER BY order_id LIMIT ?3";
static const char SQL_ORDER_PAY[] =
    "UPDATE orders SET state = 'paid', settled_at = ?3 "
    "WHERE item_id = ?1 AND user_id = ?2 AND state = 'pending' AND pay_by > ?3 "
    "RETURNING order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0)";
static const char SQL_ORDER_CANCEL[] =
    "UPDATE orders SET state = 'cancelled', settled_at = ?3 "
    "WHERE item_id = ?1 AND user_id = ?2 AND state = 'pending' RETURNING order_id, item_id, user_id, created_at, state, "
    "COALESCE(pay_by, 0), COALESCE(settled_at, 0)";
static const char SQL_CANCEL_DUE[] =
    "UPDATE orders SET state = 'cancelled', settled_at = ?1 "
    "WHERE order_id IN (SELECT order_id FROM orders WHERE state = 'pending' "
    "AND pay_by <= ?1 ORDER BY pay_by LIMIT ?2) AND state = 'pending' AND pay_by <= ?1 "
    "RETURNING order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0)";
/* Tests only: the guard `state = 'pending'` forgotten (paid orders whose
 * pay_by passed are cancelled too), for showing that checkers see it. */
static const char SQL_CANCEL_DUE_UNGUARDED[] =
    "UPDATE orders SET state = 'cancelled', settled_at = ?1 "
    "WHERE order_id IN (SELECT order_id FROM orders WHERE state <> 'cancelled' "
    "AND pay_by <= ?1 ORDER BY pay_by LIMIT ?2) RETURNING order_id, item_id, user_id, created_at, state, "
    "COALESCE(pay_by, 0), COALESCE(settled_at, 0)";
static const char SQL_RETURN_UNITS[] =
    "UPDATE items SET stock = stock + ?1, sold = sold - ?1, version = ?2 "
    "WHERE id = ?3 AND sold >= ?1 RETURNING stock";
static const char SQL_NEXT_PAY_BY[] =
    "SELECT pay_by FROM orders WHERE state = 'pending' ORDER BY pay_by LIMIT 1";
static const char SQL_ORDER_COUNTS[] = "SELECT state, COUNT(*) FROM orders GROUP BY state";

/* Copy a text column into dst[cap] (truncating, always terminated). */
static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (!s)
        n = 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

static void item_from_row(sqlite3_stmt *st, sqlcached_item_t *out)
{
    copy_text(out->id, sizeof out->id, st, 0);
    copy_text(out->name, sizeof out->name, st, 1);
    out->stock = sqlite3_column_int64(st, 2);
    out->sold = sqlite3_column_int64(st, 3);
    out->initial_stock = sqlite3_column_int64(st, 4);
    out->version = sqlite3_column_int64(st, 5);
    out->from_cache = 0;
    out->payment_timeout_ms = sqlite3_column_int64(st, 6);
}

/* The state stored as text (a CHECK constraint allows only these). */
static sqlcached_order_state_t state_of(const unsigned char *s)
{
    if (s && strcmp((const char *)s, "pending") == 0)
        return SQLCACHED_ORDER_PENDING;
    if (s && strcmp((const char *)s, "cancelled") == 0)
        return SQLCACHED_ORDER_CANCELLED;
    return SQLCACHED_ORDER_PAID;
}

static void order_from_row(sqlite3_stmt *st, sqlcached_order_t *out)
{
    out->order_id = sqlite3_column_int64(st, 0);
    copy_text(out->item_id, sizeof out->item_id, st, 1);
    copy_text(out->user_id, sizeof out->user_id, st, 2);
    out->created_at = sqlite3_column_int64(st, 3);
    out->state = state_of(sqlite3_column_text(st, 4));
    out->pay_by = sqlite3_column_int64(st, 5);
    out->settled_at = sqlite3_column_int64(st, 6);
}

/* One row of `sql` bound to (a, b) into *item or *order (either may be
 * NULL: then only whether a row exists). */
static sqlcached_status_t read_one(store_conn_t *c, const char *sql, const char *a, const char *b,
                                   sqlcached_item_t *item, sqlcached_order_t *order)
{
    sqlite3_stmt *st = store_stmt(c, sql);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlcached_status_t status = SQLCACHED_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        status = SQLCACHED_OK;
        if (item)
            item_from_row(st, item);
        if (order)
            order_from_row(st, order);
    } else if (rc != SQLITE_DONE) {
        status = store_status(rc);
    }
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t item_get(store_conn_t *c, const char *id, sqlcached_item_t *out)
{
    return read_one(c, SQL_ITEM_GET, id, NULL, out, NULL);
}

static sqlcached_status_t item_reset(store_conn_t *w, const char *id, const char *name,
                                     int64_t stock, int64_t payment_timeout_ms, int64_t version,
                                     bool *created)
{
    sqlcached_status_t status = read_one(w, SQL_ITEM_EXISTS, id, NULL, NULL, NULL);
    if (status != SQLCACHED_OK && status != SQLCACHED_NOT_FOUND)
        return status;
    *created = status == SQLCACHED_NOT_FOUND;
    sqlite3_stmt *st = store_stmt(w, SQL_ITEM_UPSERT);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, stock);
    sqlite3_bind_int64(st, 4, version);
    sqlite3_bind_int64(st, 5, payment_timeout_ms);
    status = step_done(st);
    if (status != SQLCACHED_OK || *created)
        return status;
    st = store_stmt(w, SQL_ORDERS_DELETE);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    return step_done(st);
}

static sqlcached_status_t item_list(store_conn_t *r, const char *after, unsigned limit,
                                    sqlcached_items_t *page)
{
    sqlite3_stmt *st = store_stmt(r, SQL_ITEM_LIST);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, after, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)limit + 1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (page->count == limit) {
            page->has_more = 1;
            break;
        }
        item_from_row(st, &page->items[page->count++]);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

static sqlcached_status_t order_insert(store_conn_t *w, const char *item_id, const char *user_id,
                                       int64_t now, sqlcached_order_t *out)
{
    sqlite3_stmt *st = store_stmt(w, SQL_ORDER_INSERT);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, item_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    int rc = sqlite3_step(st);
    bool inserted = rc == SQLITE_ROW;
    if (inserted) {
        order_from_row(st, out);
        rc = sqlite3_step(st); /* DONE: the statement completes */
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) /* no row: no such item */
        return inserted ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return SQLCACHED_ALREADY_ORDERED;
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        return SQLCACHED_NOT_FOUND;
    return store_status(rc);
}

static sqlcached_status_t take_unit(store_conn_t *w, const char *item_id, int64_t version,
                                    int64_t expected_version, int64_t *stock_left)
{
    bool by_version = expected_version > 0;
    sqlite3_stmt *st = store_stmt(w, by_version ? SQL_TAKE_BY_VERSION : SQL_TAKE_BY_STOCK);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, version);
    sqlite3_bind_text(st, 2, item_id, -1, SQLITE_STATIC);
    if (by_version)
        sqlite3_bind_int64(st, 3, expected_version);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *stock_left = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return SQLCACHED_OK;
    return rc == SQLITE_DONE ? SQLCACHED_NOT_FOUND : store_status(rc);
}

/* Tests and demos only: the unguarded write of the naive strategy. */
static sqlcached_status_t set_stock(store_conn_t *w, const char *item_id, int64_t version,
                                    int64_t stock, int64_t sold)
{
    sqlite3_stmt *st = store_stmt(w, SQL_SET_STOCK);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, stock);
    sqlite3_bind_int64(st, 2, sold);
    sqlite3_bind_int64(st, 3, version);
    sqlite3_bind_text(st, 4, item_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return SQLCACHED_OK;
    return rc == SQLITE_DONE ? SQLCACHED_NOT_FOUND : store_status(rc);
}

static sqlcached_status_t order_get(store_conn_t *c, const char *item_id, const char *user_id,
                                    sqlcached_order_t *out)
{
    return read_one(c, SQL_ORDER_GET, item_id, user_id, NULL, out);
}

static sqlcached_status_t order_list(store_conn_t *r, const char *item_id, int64_t after,
                                     unsigned limit, sqlcached_orders_t *page)
{
    sqlcached_status_t status = read_one(r, SQL_ITEM_EXISTS, item_id, NULL, NULL, NULL);
    if (status != SQLCACHED_OK)
        return status;
    sqlite3_stmt *st = store_stmt(r, SQL_ORDER_LIST);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, item_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, (int)limit + 1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (page->count == limit) {
            page->has_more = 1;
            break;
        }
        order_from_row(st, &page->orders[page->count++]);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

/* ------------------------------------------------------------------------
 * Payment deadline
 * ------------------------------------------------------------------------ */

/* Step `st` to the end, each row as an order to fn (NULL: into *one, the
 * first row only). NOT_FOUND when no row came. Resets st. */
static sqlcached_status_t step_orders(sqlite3_stmt *st, storage_order_fn fn, void *cls,
                                      sqlcached_order_t *one)
{
    sqlcached_status_t status = SQLCACHED_NOT_FOUND;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlcached_order_t o;
        order_from_row(st, one && status == SQLCACHED_NOT_FOUND ? one : &o);
        if (status == SQLCACHED_NOT_FOUND)
            status = SQLCACHED_OK;
        if (fn && (status = fn(cls, one ? one : &o)) != SQLCACHED_OK)
            break;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_status(rc);
    return status;
}

static sqlcached_status_t order_settle(store_conn_t *w, const char *item_id, const char *user_id,
                                       sqlcached_order_state_t to, int64_t now,
                                       sqlcached_order_t *out)
{
    if (to != SQLCACHED_ORDER_PAID && to != SQLCACHED_ORDER_CANCELLED)
        return SQLCACHED_INVALID_ARGUMENT;
    sqlite3_stmt *st = store_stmt(w, to == SQLCACHED_ORDER_PAID ? SQL_ORDER_PAY : SQL_ORDER_CANCEL);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, item_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    return step_orders(st, NULL, NULL, out);
}

static sqlcached_status_t orders_cancel_due(store_conn_t *w, int64_t now, int limit,
                                            bool testing_unguarded, storage_order_fn fn, void *cls)
{
    sqlite3_stmt *st = store_stmt(w, testing_unguarded ? SQL_CANCEL_DUE_UNGUARDED : SQL_CANCEL_DUE);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, limit);
    sqlcached_status_t status = step_orders(st, fn, cls, NULL);
    return status == SQLCACHED_NOT_FOUND ? SQLCACHED_OK : status;
}

static sqlcached_status_t return_units(store_conn_t *w, const char *item_id, int64_t n,
                                       int64_t version, int64_t *stock_after)
{
    sqlite3_stmt *st = store_stmt(w, SQL_RETURN_UNITS);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_int64(st, 1, n);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_text(st, 3, item_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *stock_after = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return SQLCACHED_OK;
    return rc == SQLITE_DONE ? SQLCACHED_NOT_FOUND : store_status(rc);
}

static sqlcached_status_t next_pay_by(store_conn_t *c, int64_t *pay_by)
{
    sqlite3_stmt *st = store_stmt(c, SQL_NEXT_PAY_BY);
    if (!st)
        return SQLCACHED_INTERNAL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *pay_by = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return SQLCACHED_OK;
    return rc == SQLITE_DONE ? SQLCACHED_NOT_FOUND : store_status(rc);
}

static sqlcached_status_t order_counts(store_conn_t *r, uint64_t counts[3])
{
    sqlite3_stmt *st = store_stmt(r, SQL_ORDER_COUNTS);
    if (!st)
        return SQLCACHED_INTERNAL;
    counts[0] = counts[1] = counts[2] = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        counts[state_of(sqlite3_column_text(st, 0))] += (uint64_t)sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

const storage_seckill_ops_t storage_sqlite_seckill = {
    .item_get = item_get,
    .item_reset = item_reset,
    .item_list = item_list,
    .order_insert = order_insert,
    .take_unit = take_unit,
    .set_stock = set_stock,
    .order_get = order_get,
    .order_list = order_list,
    .order_settle = order_settle,
    .orders_cancel_due = orders_cancel_due,
    .return_units = return_units,
    .next_pay_by = next_pay_by,
    .order_counts = order_counts,
};
