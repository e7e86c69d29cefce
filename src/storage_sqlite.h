/*
 * storage_sqlite.h - what the SQLite backend's files share: the statement
 * cache and status mapping of a store connection (store.c), and the
 * per-domain operation tables gathered by storage_sqlite.c into
 * storage_sqlite (storage.h). Private to the backend's files.
 */
#ifndef SQLCACHED_STORAGE_SQLITE_H
#define SQLCACHED_STORAGE_SQLITE_H

#include <sqlite3.h>

#include "storage.h"

/* store.c: the SQLite side of a store connection. */

/* The prepared statement for the static SQL text `sql` on this connection,
 * reset with its bindings cleared; NULL if it fails to prepare (logged).
 * The connection owns it: do not finalize. */
sqlite3_stmt *store_stmt(store_conn_t *c, const char *sql);

/* The connection's sqlite3 handle (for sqlite3_changes and errmsg). */
sqlite3 *store_conn_db(store_conn_t *c);

/* Map an SQLite result code to a library status. */
sqlcached_status_t store_status(int sqlite_rc);

/* Bind a byte string as a BLOB, including the empty one. */
int store_bind_bytes(sqlite3_stmt *st, int idx, const void *p, size_t n);

extern const storage_kv_ops_t storage_sqlite_kv;
extern const storage_seckill_ops_t storage_sqlite_seckill;
extern const storage_lease_ops_t storage_sqlite_lease;
extern const storage_queue_ops_t storage_sqlite_queue;
extern const storage_watch_ops_t storage_sqlite_watch;

#endif
