/*
 * storage_sqlite.c - the SQLite backend's table of operations (storage.h).
 *
 * Each domain's statements live in a file of their own beside this one
 * (storage_sqlite_seckill.c, ...). Every store_conn_t is a SQLite connection
 * today, so store_conn_backend() has one answer; a second backend gives
 * its connections their own table.
 */
#include "storage_sqlite.h"

const storage_backend_t storage_sqlite = {
    .name = "sqlite",
    .kv = &storage_sqlite_kv,
    .seckill = &storage_sqlite_seckill,
    .lease = &storage_sqlite_lease,
};

const storage_backend_t *store_conn_backend(store_conn_t *c)
{
    (void)c;
    return &storage_sqlite;
}
