/*
 * storage_pg_seckill.c - the flash sale's rows on PostgreSQL (the seckill
 * operations of storage.h).
 *
 * Schema (sql/postgresql/002_seckill.sql): items and orders as on SQLite,
 * with UNIQUE(item_id, user_id) as the one-order-per-user guard (23505)
 * and the foreign key finding a missing item (23503), so order_insert is
 * one INSERT whose constraint errors are its outcomes. Order ids come from
 * the store counter `order_id`, taken inside the write's transaction, so
 * they grow in commit order (a SEQUENCE would not). take_unit is one
 * guarded UPDATE ... RETURNING; its row lock makes it safe across
 * connections (and nodes).
 *
 * Payment deadline (sql/postgresql/007_payment.sql): orders gained state,
 * pay_by and settled_at; the guard is a partial unique index over the
 * orders that are not cancelled (still 23505). An order is inserted by
 * INSERT ... SELECT from its item (no item, no row: NOT_FOUND). Every
 * change of state is one UPDATE ... WHERE state = 'pending' ... RETURNING:
 * a second writer (a pay racing the deadline, another node's timer) waits
 * for the first one's row lock, then re-checks the condition under READ
 * COMMITTED and finds the order no longer pending, so it changes once.
 */
#include <string.h>

#include "storage_pg.h"

static const char SQL_ITEM_GET[] = "SELECT id, name, stock, sold, initial_stock, version, "
                                   "COALESCE(payment_timeout_ms, 0) FROM items WHERE id = $1";
static const char SQL_ITEM_EXISTS[] = "SELECT 1 FROM items WHERE id = $1";
static const char SQL_ITEM_UPSERT[] =
    "INSERT INTO items (id, name, stock, sold, initial_stock, version, payment_timeout_ms) "
    "VALUES ($1, $2, $3, 0, $3, $4, NULLIF($5::bigint, 0)) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, stock = EXCLUDED.stock, "
    "sold = 0, initial_stock = EXCLUDED.initial_stock, version = EXCLUDED.version, "
    "payment_timeout_ms = EXCLUDED.payment_timeout_ms";
static const char SQL_ORDERS_DELETE[] = "DELETE FROM orders WHERE item_id = $1";
static const char SQL_ORDER_INSERT[] =
    "INSERT INTO orders (order_id, item_id, user_id, created_at, state, pay_by) "
    "SELECT $1, id, $3, $4::bigint, "
    "CASE WHEN payment_timeout_ms > 0 THEN 'pending' ELSE 'paid' END, "
    "CASE WHEN payment_timeout_ms > 0 THEN $4::bigint + payment_timeout_ms END "
    "FROM items WHERE id = $2 RETURNING order_id, item_id, user_id, created_at, state, "
    "COALESCE(pay_by, 0), COALESCE(settled_at, 0)";
static const char SQL_TAKE_BY_STOCK[] =
    "UPDATE items SET stock = stock - 1, sold = sold + 1, version = $1 "
    "WHERE id = $2 AND stock > 0 RETURNING stock";
static const char SQL_TAKE_BY_VERSION[] =
    "UPDATE items SET stock = stock - 1, sold = sold + 1, version = $1 "
    "WHERE id = $2 AND version = $3 AND stock > 0 RETURNING stock";
static const char SQL_SET_STOCK[] =
    "UPDATE items SET stock = $1, sold = $2, version = $3 WHERE id = $4 RETURNING 1";
static const char SQL_ITEM_LIST[] =
    "SELECT id, name, stock, sold, initial_stock, version, "
    "COALESCE(payment_timeout_ms, 0) FROM items WHERE id > $1 ORDER BY id LIMIT $2";
static const char SQL_ORDER_GET[] =
    "SELECT order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0) FROM orders "
    "WHERE item_id = $1 AND user_id = $2 ORDER BY order_id DESC LIMIT 1";
static const char SQL_ORDER_LIST[] =
    "SELECT order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0) FROM orders "
    "WHERE item_id = $1 AND order_id > $2 ORDER BY order_id LIMIT $3";
static const char SQL_ORDER_PAY[] =
    "UPDATE orders SET state = 'paid', settled_at = $3 "
    "WHERE item_id = $1 AND user_id = $2 AND state = 'pending' AND pay_by > $3 "
    "RETURNING order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0)";
static const char SQL_ORDER_CANCEL[] =
    "UPDATE orders SET state = 'cancelled', settled_at = $3 "
    "WHERE item_id = $1 AND user_id = $2 AND state = 'pending' RETURNING order_id, item_id, user_id, created_at, state, "
    "COALESCE(pay_by, 0), COALESCE(settled_at, 0)";
static const char SQL_CANCEL_DUE[] =
    "UPDATE orders SET state = 'cancelled', settled_at = $1 "
    "WHERE order_id IN (SELECT order_id FROM orders WHERE state = 'pending' "
    "AND pay_by <= $1 ORDER BY pay_by LIMIT $2) AND state = 'pending' AND pay_by <= $1 "
    "RETURNING order_id, item_id, user_id, created_at, state, COALESCE(pay_by, 0), "
    "COALESCE(settled_at, 0)";
/* Tests only: the guard `state = 'pending'` forgotten (paid orders whose
 * pay_by passed are cancelled too), for showing that checkers see it. */
static const char SQL_CANCEL_DUE_UNGUARDED[] =
    "UPDATE orders SET state = 'cancelled', settled_at = $1 "
    "WHERE order_id IN (SELECT order_id FROM orders WHERE state <> 'cancelled' "
    "AND pay_by <= $1 ORDER BY pay_by LIMIT $2) RETURNING order_id, item_id, user_id, created_at, state, "
    "COALESCE(pay_by, 0), COALESCE(settled_at, 0)";
static const char SQL_RETURN_UNITS[] =
    "UPDATE items SET stock = stock + $1, sold = sold - $1, version = $2 "
    "WHERE id = $3 AND sold >= $1 RETURNING stock";
static const char SQL_NEXT_PAY_BY[] =
    "SELECT pay_by FROM orders WHERE state = 'pending' ORDER BY pay_by LIMIT 1";
static const char SQL_ORDER_COUNTS[] = "SELECT state, COUNT(*) FROM orders GROUP BY state";

/* Copy a text column into dst[cap] (truncating, always terminated). */
static void copy_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    size_t n;
    const char *s = pg_conn_col_bytes(r, row, col, &n);
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

static void item_from_row(const PGresult *r, int row, sqlcached_item_t *out)
{
    copy_text(out->id, sizeof out->id, r, row, 0);
    copy_text(out->name, sizeof out->name, r, row, 1);
    out->stock = pg_conn_col_int64(r, row, 2);
    out->sold = pg_conn_col_int64(r, row, 3);
    out->initial_stock = pg_conn_col_int64(r, row, 4);
    out->version = pg_conn_col_int64(r, row, 5);
    out->from_cache = 0;
    out->payment_timeout_ms = pg_conn_col_int64(r, row, 6);
}

/* The state stored as text (a CHECK constraint allows only these). */
static sqlcached_order_state_t state_of(const char *s)
{
    if (s && strcmp(s, "pending") == 0)
        return SQLCACHED_ORDER_PENDING;
    if (s && strcmp(s, "cancelled") == 0)
        return SQLCACHED_ORDER_CANCELLED;
    return SQLCACHED_ORDER_PAID;
}

static void order_from_row(const PGresult *r, int row, sqlcached_order_t *out)
{
    out->order_id = pg_conn_col_int64(r, row, 0);
    copy_text(out->item_id, sizeof out->item_id, r, row, 1);
    copy_text(out->user_id, sizeof out->user_id, r, row, 2);
    out->created_at = pg_conn_col_int64(r, row, 3);
    out->state = state_of(pg_conn_col_text(r, row, 4));
    out->pay_by = pg_conn_col_int64(r, row, 5);
    out->settled_at = pg_conn_col_int64(r, row, 6);
}

/* One row of `sql` bound to (a, b) into *item or *order (either may be
 * NULL: then only whether a row exists). */
static sqlcached_status_t read_one(store_conn_t *c, const char *sql, const char *a, const char *b,
                                   sqlcached_item_t *item, sqlcached_order_t *order)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, a);
    if (b)
        pg_params_text(&p, b);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, sql, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    status = PQntuples(r) > 0 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    if (status == SQLCACHED_OK && item)
        item_from_row(r, 0, item);
    if (status == SQLCACHED_OK && order)
        order_from_row(r, 0, order);
    PQclear(r);
    return status;
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
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, id);
    pg_params_text(&p, name);
    pg_params_int64(&p, stock);
    pg_params_int64(&p, version);
    pg_params_int64(&p, payment_timeout_ms);
    status = storage_pg_run(w, SQL_ITEM_UPSERT, &p, NULL);
    if (status != SQLCACHED_OK || *created)
        return status;
    pg_params_init(&p);
    pg_params_text(&p, id);
    return storage_pg_run(w, SQL_ORDERS_DELETE, &p, NULL);
}

static sqlcached_status_t item_list(store_conn_t *r, const char *after, unsigned limit,
                                    sqlcached_items_t *page)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, after);
    pg_params_int64(&p, (int64_t)limit + 1);
    PGresult *res = NULL;
    sqlcached_status_t status = storage_pg_run(r, SQL_ITEM_LIST, &p, &res);
    if (status != SQLCACHED_OK)
        return status;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        if (page->count == limit) {
            page->has_more = 1;
            break;
        }
        item_from_row(res, i, &page->items[page->count++]);
    }
    PQclear(res);
    return SQLCACHED_OK;
}

static sqlcached_status_t order_insert(store_conn_t *w, const char *item_id, const char *user_id,
                                       int64_t now, sqlcached_order_t *out)
{
    int64_t order_id;
    sqlcached_status_t status = store_counter_next(w, "order_id", &order_id);
    if (status != SQLCACHED_OK)
        return status;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, order_id);
    pg_params_text(&p, item_id);
    pg_params_text(&p, user_id);
    pg_params_int64(&p, now);
    PGresult *r = NULL;
    pg_conn_rc_t rc = pg_conn_run(store_pg_conn(w), SQL_ORDER_INSERT, &p, &r);
    if (rc == PG_CONN_UNIQUE)
        return SQLCACHED_ALREADY_ORDERED;
    if (rc == PG_CONN_FOREIGN_KEY)
        return SQLCACHED_NOT_FOUND;
    if (rc != PG_CONN_OK)
        return pg_conn_rc_status(rc);
    status = PQntuples(r) == 1 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND; /* no row: no item */
    if (status == SQLCACHED_OK)
        order_from_row(r, 0, out);
    PQclear(r);
    return status;
}

static sqlcached_status_t take_unit(store_conn_t *w, const char *item_id, int64_t version,
                                    int64_t expected_version, int64_t *stock_left)
{
    bool by_version = expected_version > 0;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, version);
    pg_params_text(&p, item_id);
    if (by_version)
        pg_params_int64(&p, expected_version);
    PGresult *r = NULL;
    sqlcached_status_t status =
        storage_pg_run(w, by_version ? SQL_TAKE_BY_VERSION : SQL_TAKE_BY_STOCK, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    status = PQntuples(r) == 1 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    if (status == SQLCACHED_OK)
        *stock_left = pg_conn_col_int64(r, 0, 0);
    PQclear(r);
    return status;
}

/* Tests and demos only: the unguarded write of the naive strategy. */
static sqlcached_status_t set_stock(store_conn_t *w, const char *item_id, int64_t version,
                                    int64_t stock, int64_t sold)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, stock);
    pg_params_int64(&p, sold);
    pg_params_int64(&p, version);
    pg_params_text(&p, item_id);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_SET_STOCK, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    status = PQntuples(r) == 1 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    PQclear(r);
    return status;
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
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, item_id);
    pg_params_int64(&p, after);
    pg_params_int64(&p, (int64_t)limit + 1);
    PGresult *res = NULL;
    status = storage_pg_run(r, SQL_ORDER_LIST, &p, &res);
    if (status != SQLCACHED_OK)
        return status;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        if (page->count == limit) {
            page->has_more = 1;
            break;
        }
        order_from_row(res, i, &page->orders[page->count++]);
    }
    PQclear(res);
    return SQLCACHED_OK;
}

/* ------------------------------------------------------------------------
 * Payment deadline
 * ------------------------------------------------------------------------ */

/* Run `sql` and pass every row as an order to fn (NULL: the first row into
 * *one). NOT_FOUND when no row came. */
static sqlcached_status_t run_orders(store_conn_t *c, const char *sql, const pg_params_t *p,
                                     storage_order_fn fn, void *cls, sqlcached_order_t *one)
{
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, sql, p, &r);
    if (status != SQLCACHED_OK)
        return status;
    int n = PQntuples(r);
    status = n > 0 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    if (one && n > 0)
        order_from_row(r, 0, one);
    for (int i = 0; fn && i < n && status == SQLCACHED_OK; i++) {
        sqlcached_order_t o;
        order_from_row(r, i, &o);
        status = fn(cls, &o);
    }
    PQclear(r);
    return status;
}

static sqlcached_status_t order_settle(store_conn_t *w, const char *item_id, const char *user_id,
                                       sqlcached_order_state_t to, int64_t now,
                                       sqlcached_order_t *out)
{
    if (to != SQLCACHED_ORDER_PAID && to != SQLCACHED_ORDER_CANCELLED)
        return SQLCACHED_INVALID_ARGUMENT;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, item_id);
    pg_params_text(&p, user_id);
    pg_params_int64(&p, now);
    return run_orders(w, to == SQLCACHED_ORDER_PAID ? SQL_ORDER_PAY : SQL_ORDER_CANCEL, &p, NULL,
                      NULL, out);
}

static sqlcached_status_t orders_cancel_due(store_conn_t *w, int64_t now, int limit,
                                            bool testing_unguarded, storage_order_fn fn, void *cls)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, now);
    pg_params_int64(&p, limit);
    sqlcached_status_t status =
        run_orders(w, testing_unguarded ? SQL_CANCEL_DUE_UNGUARDED : SQL_CANCEL_DUE, &p, fn, cls,
                   NULL);
    return status == SQLCACHED_NOT_FOUND ? SQLCACHED_OK : status;
}

static sqlcached_status_t return_units(store_conn_t *w, const char *item_id, int64_t n,
                                       int64_t version, int64_t *stock_after)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, n);
    pg_params_int64(&p, version);
    pg_params_text(&p, item_id);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(w, SQL_RETURN_UNITS, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    status = PQntuples(r) == 1 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    if (status == SQLCACHED_OK)
        *stock_after = pg_conn_col_int64(r, 0, 0);
    PQclear(r);
    return status;
}

static sqlcached_status_t next_pay_by(store_conn_t *c, int64_t *pay_by)
{
    pg_params_t p;
    pg_params_init(&p);
    PGresult *r = NULL;
    sqlcached_status_t status = storage_pg_run(c, SQL_NEXT_PAY_BY, &p, &r);
    if (status != SQLCACHED_OK)
        return status;
    status = PQntuples(r) == 1 ? SQLCACHED_OK : SQLCACHED_NOT_FOUND;
    if (status == SQLCACHED_OK)
        *pay_by = pg_conn_col_int64(r, 0, 0);
    PQclear(r);
    return status;
}

static sqlcached_status_t order_counts(store_conn_t *r, uint64_t counts[3])
{
    pg_params_t p;
    pg_params_init(&p);
    PGresult *res = NULL;
    sqlcached_status_t status = storage_pg_run(r, SQL_ORDER_COUNTS, &p, &res);
    if (status != SQLCACHED_OK)
        return status;
    counts[0] = counts[1] = counts[2] = 0;
    for (int i = 0; i < PQntuples(res); i++)
        counts[state_of(pg_conn_col_text(res, i, 0))] += (uint64_t)pg_conn_col_int64(res, i, 1);
    PQclear(res);
    return SQLCACHED_OK;
}

const storage_seckill_ops_t storage_pg_seckill = {
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
