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
 */
#include <string.h>

#include "storage_sqlite.h"

static const char SQL_ITEM_GET[] =
    "SELECT id, name, stock, sold, initial_stock, version FROM items WHERE id = ?1";
static const char SQL_ITEM_EXISTS[] = "SELECT 1 FROM items WHERE id = ?1";
static const char SQL_ITEM_UPSERT[] =
    "INSERT INTO items (id, name, stock, sold, initial_stock, version) "
    "VALUES (?1, ?2, ?3, 0, ?3, ?4) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, stock = excluded.stock, "
    "sold = 0, initial_stock = excluded.initial_stock, version = excluded.version";
static const char SQL_ORDERS_DELETE[] = "DELETE FROM orders WHERE item_id = ?1";
static const char SQL_ORDER_INSERT[] =
    "INSERT INTO orders (item_id, user_id, created_at) VALUES (?1, ?2, ?3)";
static const char SQL_TAKE_BY_STOCK[] =
    "UPDATE items SET stock = stock - 1, sold = sold + 1, version = ?1 "
    "WHERE id = ?2 AND stock > 0 RETURNING stock";
static const char SQL_TAKE_BY_VERSION[] =
    "UPDATE items SET stock = stock - 1, sold = sold + 1, version = ?1 "
    "WHERE id = ?2 AND version = ?3 AND stock > 0 RETURNING stock";
static const char SQL_SET_STOCK[] =
    "UPDATE items SET stock = ?1, sold = ?2, version = ?3 WHERE id = ?4 RETURNING 1";
static const char SQL_ITEM_LIST[] =
    "SELECT id, name, stock, sold, initial_stock, version FROM items "
    "WHERE id > ?1 ORDER BY id LIMIT ?2";
static const char SQL_ORDER_GET[] =
    "SELECT order_id, item_id, user_id, created_at FROM orders "
    "WHERE item_id = ?1 AND user_id = ?2";
static const char SQL_ORDER_LIST[] =
    "SELECT order_id, item_id, user_id, created_at FROM orders "
    "WHERE item_id = ?1 AND order_id > ?2 ORDER BY order_id LIMIT ?3";

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
}

static void order_from_row(sqlite3_stmt *st, sqlcached_order_t *out)
{
    out->order_id = sqlite3_column_int64(st, 0);
    copy_text(out->item_id, sizeof out->item_id, st, 1);
    copy_text(out->user_id, sizeof out->user_id, st, 2);
    out->created_at = sqlite3_column_int64(st, 3);
}

/* One row of `sql` bound to (a, b) into *item or *order (either may be
 * NULL: then only whether a row exists). */
static sqlcached_status_t read_one(store_conn_t *c, const char *sql, const char *a,
                                   const char *b, sqlcached_item_t *item,
                                   sqlcached_order_t *order)
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
                                     int64_t stock, int64_t version, bool *created)
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

static sqlcached_status_t order_insert(store_conn_t *w, const char *item_id,
                                       const char *user_id, int64_t now, int64_t *order_id)
{
    sqlite3_stmt *st = store_stmt(w, SQL_ORDER_INSERT);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, item_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        *order_id = sqlite3_last_insert_rowid(store_conn_db(w));
        return SQLCACHED_OK;
    }
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

const storage_seckill_ops_t storage_sqlite_seckill = {
    .item_get = item_get,
    .item_reset = item_reset,
    .item_list = item_list,
    .order_insert = order_insert,
    .take_unit = take_unit,
    .set_stock = set_stock,
    .order_get = order_get,
    .order_list = order_list,
};
