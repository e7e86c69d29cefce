/*
 * storage_sqlite.h - the SQLite backend's per-domain operation tables,
 * gathered by storage_sqlite.c into storage_sqlite (storage.h). Private to
 * the backend's files.
 */
#ifndef SQLCACHED_STORAGE_SQLITE_H
#define SQLCACHED_STORAGE_SQLITE_H

#include "storage.h"

extern const storage_kv_ops_t storage_sqlite_kv;
extern const storage_seckill_ops_t storage_sqlite_seckill;
extern const storage_lease_ops_t storage_sqlite_lease;

#endif
