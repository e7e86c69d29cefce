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

/* A store connection of this backend: a store_conn_t, then its libpq
 * connection. */
typedef struct pg_store_conn {
    store_conn_t base; /* first: a store_conn_t * is a pg_store_conn_t * */
    pg_conn_t *pg;
    int64_t commits; /* writer: transactions committed */
#ifdef SQLCACHED_TESTING_PG_LATE_COMMIT
    int64_t late_since; /* ms: first batch answered but not committed, 0 = none */
#endif
    /* cluster link (storage_pg_cluster.c): LISTEN holds on this session
     * only while pg_conn_reconnects() still equals listen_mark */
    bool listening;
    unsigned listen_mark;
} pg_store_conn_t;

static inline pg_store_conn_t *pgc(store_conn_t *c)
{
    return (pg_store_conn_t *)c;
}

/* A writable connection of its own for the cluster link (LISTEN, the
 * membership rows), with the writer's lock timeout. NULL with a message. */
store_conn_t *storage_pg_link_open(storage_db_t *d, char *err, size_t errlen);

/* The libpq connection of a PostgreSQL store connection (borrowed). */
pg_conn_t *store_pg_conn(store_conn_t *c);

/* Run sql with params p on c's connection; the outcome as a library status
 * (and *out the result on OK when out is not NULL, freed with PQclear). */
sqlcached_status_t storage_pg_run(store_conn_t *c, const char *sql, const pg_params_t *p,
                                  PGresult **out);

/* kv replace() (storage_pg_kv.c); logged: its statement also inserts the
 * 'p' change into kv_changes (the watch's replace_logged). */
sqlcached_status_t storage_pg_replace_with(store_conn_t *w, bool logged, const void *key,
                                           size_t klen, const void *value, size_t vlen,
                                           const char *content_type, int64_t version,
                                           int64_t expires_at, int64_t now, int64_t *previous);

extern const storage_kv_ops_t storage_pg_kv;
extern const storage_seckill_ops_t storage_pg_seckill;
extern const storage_lease_ops_t storage_pg_lease;
extern const storage_cluster_ops_t storage_pg_cluster;
extern const storage_queue_ops_t storage_pg_queue;
extern const storage_watch_ops_t storage_pg_watch;

#endif
