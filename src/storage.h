/*
 * storage.h - the storage seam: what the domain modules (kv, seckill,
 * lease, ...) need from a source of truth, as row-level operations with
 * plain C structs in and a sqlcached_status_t out. No SQL dialect is seen
 * above this header; each backend implements the operations in its own
 * files, next to its statements (storage_sqlite_*.c).
 *
 * Shape (after SQLite's sqlite3_io_methods): a backend is a table of
 * function pointers, one sub-table per domain; every connection knows its
 * backend (store_conn_backend()), and the inline storage_*() wrappers below
 * dispatch through it, so a domain module calls storage_item_get(r, ...)
 * and never names a backend.
 *
 * Connections: `w` is the writer connection inside a group transaction and
 * the write's savepoint (store_write()), `r` a reader connection
 * (store_reader_acquire()); an operation documented "r or w" runs on
 * either. Text arguments are NUL-terminated and borrowed for the call;
 * results are copied into caller-owned structs before the call returns.
 *
 * Statuses: SQLCACHED_OK, the documented outcome statuses of each
 * operation, or a storage failure (SQLCACHED_UNAVAILABLE, _STORAGE_FULL,
 * _INTERNAL) mapped by the backend.
 */
#ifndef SQLCACHED_STORAGE_H
#define SQLCACHED_STORAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "sqlcached.h"
#include "store.h"

/* Flash sale: items(id, name, stock, sold, initial_stock, version) and
 * orders(order_id, item_id, user_id, created_at), one order per (item,
 * user). */
typedef struct storage_seckill_ops {
    /* r or w. NOT_FOUND when there is no such item. */
    sqlcached_status_t (*item_get)(store_conn_t *c, const char *id, sqlcached_item_t *out);
    /* w. Create the item, or reset it (name, stock, sold 0, initial_stock)
     * and delete its orders; *created tells which. */
    sqlcached_status_t (*item_reset)(store_conn_t *w, const char *id, const char *name,
                                     int64_t stock, int64_t version, bool *created);
    /* r. Up to `limit` items with id > after (""), in id order; one row
     * more than asked sets page->has_more. page->items has room for limit. */
    sqlcached_status_t (*item_list)(store_conn_t *r, const char *after, unsigned limit,
                                    sqlcached_items_t *page);
    /* w. Insert the order, created at `now`; its id in *order_id.
     * ALREADY_ORDERED when the user holds one, NOT_FOUND when the item does
     * not exist. */
    sqlcached_status_t (*order_insert)(store_conn_t *w, const char *item_id,
                                       const char *user_id, int64_t now, int64_t *order_id);
    /* w. Take one unit of stock and set the item's version to `version`,
     * only while stock > 0 and, when expected_version > 0, only while the
     * item's version is expected_version. *stock_left: the stock after.
     * NOT_FOUND when no row qualified (sold out, or another version). */
    sqlcached_status_t (*take_unit)(store_conn_t *w, const char *item_id, int64_t version,
                                    int64_t expected_version, int64_t *stock_left);
    /* r or w. NOT_FOUND when the user holds no order of the item. */
    sqlcached_status_t (*order_get)(store_conn_t *c, const char *item_id, const char *user_id,
                                    sqlcached_order_t *out);
    /* r. Orders of the item with order_id > after, in id order, as
     * item_list. NOT_FOUND when the item does not exist. */
    sqlcached_status_t (*order_list)(store_conn_t *r, const char *item_id, int64_t after,
                                     unsigned limit, sqlcached_orders_t *page);
} storage_seckill_ops_t;

typedef struct storage_backend {
    const char *name; /* "sqlite" */
    const storage_seckill_ops_t *seckill;
} storage_backend_t;

extern const storage_backend_t storage_sqlite;

/* The backend connection c belongs to. */
const storage_backend_t *store_conn_backend(store_conn_t *c);

/* ------------------------------------------------------------------------
 * Dispatch: one wrapper per operation
 * ------------------------------------------------------------------------ */

static inline sqlcached_status_t storage_item_get(store_conn_t *c, const char *id,
                                                  sqlcached_item_t *out)
{
    return store_conn_backend(c)->seckill->item_get(c, id, out);
}

static inline sqlcached_status_t storage_item_reset(store_conn_t *w, const char *id,
                                                    const char *name, int64_t stock,
                                                    int64_t version, bool *created)
{
    return store_conn_backend(w)->seckill->item_reset(w, id, name, stock, version, created);
}

static inline sqlcached_status_t storage_item_list(store_conn_t *r, const char *after,
                                                   unsigned limit, sqlcached_items_t *page)
{
    return store_conn_backend(r)->seckill->item_list(r, after, limit, page);
}

static inline sqlcached_status_t storage_order_insert(store_conn_t *w, const char *item_id,
                                                      const char *user_id, int64_t now,
                                                      int64_t *order_id)
{
    return store_conn_backend(w)->seckill->order_insert(w, item_id, user_id, now, order_id);
}

static inline sqlcached_status_t storage_take_unit(store_conn_t *w, const char *item_id,
                                                   int64_t version, int64_t expected_version,
                                                   int64_t *stock_left)
{
    return store_conn_backend(w)->seckill->take_unit(w, item_id, version, expected_version,
                                                     stock_left);
}

static inline sqlcached_status_t storage_order_get(store_conn_t *c, const char *item_id,
                                                   const char *user_id, sqlcached_order_t *out)
{
    return store_conn_backend(c)->seckill->order_get(c, item_id, user_id, out);
}

static inline sqlcached_status_t storage_order_list(store_conn_t *r, const char *item_id,
                                                    int64_t after, unsigned limit,
                                                    sqlcached_orders_t *page)
{
    return store_conn_backend(r)->seckill->order_list(r, item_id, after, limit, page);
}

#endif
