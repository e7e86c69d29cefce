/*
 * storage_pg.h - what the PostgreSQL backend's files share: the libpq
 * connection behind a store connection, and the per-domain operation
 * tables gathered into storage_pg (storage.h). Private to the backend's
 * files.
 */
#ifndef SQLCACHED_STORAGE_PG_H
#define SQLCACHED_STORAGE_PG_H

#include "pg_conn.h"
#include "storage.h"

/* The libpq connection of a PostgreSQL store connection (borrowed). */
pg_conn_t *store_pg_conn(store_conn_t *c);

/* Run sql with params p on c's connection; the outcome as a library status
 * (and *out the result on OK when out is not NULL, freed with PQclear). */
sqlcached_status_t storage_pg_run(store_conn_t *c, const char *sql, const pg_params_t *p,
                                  PGresult **out);

extern const storage_kv_ops_t storage_pg_kv;
extern const storage_seckill_ops_t storage_pg_seckill;
extern const storage_lease_ops_t storage_pg_lease;

#endif
