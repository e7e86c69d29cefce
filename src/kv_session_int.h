/*
 * kv_session_int.h - what kv.c (reads, PUT, DELETE, incr, list) and
 * kv_session.c (sliding expiry's extensions, read-and-delete, merge patch)
 * share: the value type, the row copy of a read, the delete job that a
 * take reuses, and the helpers each file gives the other. Not part of the
 * library's interface (see kv.h); other domain modules use kv_int.h.
 */
#ifndef SQLCACHED_KV_SESSION_INT_H
#define SQLCACHED_KV_SESSION_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "sqlcached.h"
#include "storage.h"

/* ------------------------------------------------------------------------
 * Types (kv.c)
 * ------------------------------------------------------------------------ */

typedef struct kv_value {
    sqlcached_value_t pub; /* first: the public view */
    atomic_int refs;
    cache_value_t *cached; /* non-NULL: pub points into this reference */
    char bytes[];          /* else: content type NUL, then the value bytes */
} kv_value_t;

/* A read row, copied into a new value. */
typedef struct row_copy {
    kv_value_t *value;
    int64_t expires_at;
    int64_t sliding_ms;
} row_copy_t;

/* What a read learnt of the key's expiry, for kvs_slide_maybe(). */
typedef struct read_expiry {
    int64_t expires_at, sliding_ms; /* sliding_ms 0: nothing to slide */
} read_expiry_t;

typedef struct delete_job {
    sqlcached_t *db;
    const void *key;
    size_t klen;
    const sqlcached_preconditions_t *pre;
    int64_t now;
} delete_job_t;
/* ------------------------------------------------------------------------
 * Given by kv.c
 * ------------------------------------------------------------------------ */

/* A valid key: 1..SQLCACHED_KEY_MAX bytes. */
bool kvs_key_ok(const void *key, size_t klen);

/* Do the preconditions hold for `current` (0 = absent)? NULL: yes. */
bool kvs_preconditions_hold(const sqlcached_preconditions_t *pre, int64_t current);

/* Are the preconditions well formed? NULL: yes. */
bool kvs_preconditions_ok(const sqlcached_preconditions_t *pre);

/* The end of an asynchronous call: free(record), then done(cls, st). */
void kvs_async_finish(void *record, sqlcached_done_fn done, void *cls, sqlcached_status_t st);

/* A read callback (storage_kv_get): the row into a new value (cls: a
 * row_copy_t). */
sqlcached_status_t kvs_copy_row(void *cls, const storage_kv_row_t *row);

/* The commit hook of a delete (arg: a delete_job_t): kv.c's after-commit
 * path with no new value. */
void kvs_delete_committed(void *arg);

/* ------------------------------------------------------------------------
 * Given by kv_session.c
 * ------------------------------------------------------------------------ */

/* A read of a sliding key at `now` (v: the value answered): queue an
 * extension when the expiry the read saw is short of now + sliding_ms. */
void kvs_slide_maybe(sqlcached_t *db, const void *key, size_t klen, kv_value_t *v,
                     const read_expiry_t *ex, int64_t now);

#endif
