/*
 * watch.h - the change log (every committed KV change with its version)
 * and the watches that read it (sqlcached_watch_*; docs/watch.md).
 *
 * Ownership: watch_hub_open() (sqlcached_open) creates the hub and its
 * dispatcher thread, watch_hub_close() (sqlcached_close, before the store
 * closes) stops and frees it; every watch must be closed before. The
 * other calls borrow.
 */
#ifndef SQLCACHED_WATCH_H
#define SQLCACHED_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"
#include "store.h"

typedef struct watch_hub watch_hub_t;

/* Start the hub of db (its store open): NULL with a message in err. */
watch_hub_t *watch_hub_open(sqlcached_t *db, char *err, size_t errlen);

/* Stop the dispatcher and free the hub. NULL is allowed. */
void watch_hub_close(watch_hub_t *h);

/* Inside a KV write, once its version is taken: record the change (kind
 * sqlcached_change_kind_t; expires_at the key's after it, 0 = never). */
sqlcached_status_t watch_log(store_conn_t *w, char kind, const void *key, size_t klen,
                             int64_t version, int64_t expires_at);

/* storage_kv_replace() (a plain PUT: same contract) that also records
 * its 'p' change, in one statement where the backend can. */
sqlcached_status_t watch_replace(store_conn_t *w, const void *key, size_t klen, const void *value,
                                 size_t vlen, const char *content_type, int64_t version,
                                 int64_t expires_at, int64_t now, int64_t *previous);

/* After a commit that may have logged changes, or when another node
 * says it did: the dispatcher reads the log now. Any thread; NULL ok. */
void watch_kick(watch_hub_t *h);

/* Inside a write (the maintenance purge): delete up to max_rows expired
 * keys, each with a version of its own and an 'x' change; how many in
 * *purged. */
sqlcached_status_t watch_purge_expired(store_conn_t *w, int64_t now, int max_rows, int *purged);

/* Are watches open now? (the purge then runs every WATCH_PURGE_MS at
 * least). NULL: false. */
#define WATCH_PURGE_MS 1000
bool watch_active(watch_hub_t *h);

/* Maintenance thread, every tick: trim the log to --watch-history (every
 * few seconds) and refresh the history figures. */
void watch_maintain(watch_hub_t *h, int64_t now);

#endif
