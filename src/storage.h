/*
 * storage.h - the storage seam: what the domain modules (kv, seckill,
 * lease, ...) need from a source of truth, as row-level operations with
 * plain C structs in and a sqlcached_status_t out. No SQL dialect is seen
 * above this header; each backend implements the operations in its own
 * files, next to its statements (storage_sqlite_*.c).
 *
 * Shape (after SQLite's table of VFS io methods): a backend is a table of
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

/* Key-value rows: kv(key BYTES, value BYTES, content_type, version,
 * expires_at ms or none). A row whose expires_at <= now is absent for every
 * operation that takes `now`. */
typedef struct storage_kv_row {
    const void *value; /* borrowed: valid during the callback only */
    size_t value_len;
    const char *content_type; /* borrowed, NUL-terminated */
    size_t content_type_len;
    int64_t version;
    int64_t expires_at; /* 0 = never */
    int64_t sliding_ms; /* > 0: the expiry slides by this much (kv.c); 0 = not */
} storage_kv_row_t;

/* Called with a row, borrowed for the call; its status is the operation's. */
typedef sqlcached_status_t (*storage_kv_row_fn)(void *cls, const storage_kv_row_t *row);

/* Called with each key of a scan; false stops it (the scan answers NOMEM). */
typedef bool (*storage_key_fn)(void *cls, const void *key, size_t klen);

typedef struct storage_kv_ops {
    /* r or w. The live row of key to on_row (at most once). NOT_FOUND when
     * there is none, else on_row's status. */
    sqlcached_status_t (*get)(store_conn_t *c, const void *key, size_t klen, int64_t now,
                              storage_kv_row_fn on_row, void *cls);
    /* w. The live row's version in *version, 0 when absent or expired. */
    sqlcached_status_t (*version)(store_conn_t *w, const void *key, size_t klen, int64_t now,
                                  int64_t *version);
    /* w. Insert or replace the row (expires_at 0 = never). */
    sqlcached_status_t (*upsert)(store_conn_t *w, const void *key, size_t klen, const void *value,
                                 size_t vlen, const char *content_type, int64_t version,
                                 int64_t expires_at);
    /* w, optional (NULL: the caller runs version() then upsert()). upsert()
     * that also puts the version of the live row it replaced (0 when absent
     * or expired at now) in *previous, in one statement: on a backend where
     * each statement is a round trip (PostgreSQL) an unconditional PUT then
     * costs none of its own (it goes with the next one). *previous may be
     * filled after the call returns, at the latest before the commit
     * returns, and a failure may then come through w->job_status: read
     * *previous from the write's on_commit hook, and run no other
     * statement in the write after this one. */
    sqlcached_status_t (*replace)(store_conn_t *w, const void *key, size_t klen, const void *value,
                                  size_t vlen, const char *content_type, int64_t version,
                                  int64_t expires_at, int64_t now, int64_t *previous);
    /* w. Delete the row, if any. */
    sqlcached_status_t (*remove)(store_conn_t *w, const void *key, size_t klen);
    /* r. Up to `limit` live keys that start with prefix and sort after
     * `after` (bytewise), in order, each to on_key; *has_more when another
     * follows. */
    sqlcached_status_t (*list)(store_conn_t *r, const void *prefix, size_t plen, const void *after,
                               size_t alen, int64_t now, unsigned limit, storage_key_fn on_key,
                               void *cls, bool *has_more);
    /* w. Delete up to max_rows rows expired at `now`; how many in *purged. */
    sqlcached_status_t (*purge_expired)(store_conn_t *w, int64_t now, int max_rows, int *purged);
    /* r. Every key, expired or not, to on_key. */
    sqlcached_status_t (*scan_keys)(store_conn_t *r, storage_key_fn on_key, void *cls);
    /* r. An upper bound of the number of rows, found without a scan. */
    sqlcached_status_t (*count_bound)(store_conn_t *r, int64_t *count);

    /* Sliding expiry (sql/NNN/005_kv_sliding.sql). upsert() and replace()
     * store sliding_ms 0 (a plain write clears the flag). */
    /* w. upsert() that stores sliding_ms (0 = not sliding). */
    sqlcached_status_t (*upsert_sliding)(store_conn_t *w, const void *key, size_t klen,
                                         const void *value, size_t vlen, const char *content_type,
                                         int64_t version, int64_t expires_at, int64_t sliding_ms);
    /* w. Move the expiry of the row (key, version) to expires_at if it is
     * a sliding row, live at `now`, expiring before expires_at (never
     * shortens it, never revives an expired row); *extended tells whether
     * it did. Takes no version: the value did not change. */
    sqlcached_status_t (*extend)(store_conn_t *w, const void *key, size_t klen, int64_t version,
                                 int64_t now, int64_t expires_at, bool *extended);
} storage_kv_ops_t;

/* Leases: leases(name, owner, token, count, expires_at), one row per held
 * lease; live while expires_at > now. Rows come back as sqlcached_lease_t
 * (name, owner, token, count, expires_at). */
typedef enum storage_lease_change {
    STORAGE_LEASE_REENTER,      /* count + 1, expires_at = the new expiry */
    STORAGE_LEASE_RENEW,        /* expires_at = the new expiry */
    STORAGE_LEASE_RELEASE_ONE,  /* count - 1, only while count > 1 */
    STORAGE_LEASE_RELEASE_LAST, /* delete the row, only while count = 1; the
                                   row comes back with count 0 */
} storage_lease_change_t;

typedef struct storage_lease_ops {
    /* r or w. The row of name: any row when live_at is INT64_MIN, else only
     * one with expires_at > live_at. NOT_FOUND when there is none. */
    sqlcached_status_t (*get)(store_conn_t *c, const char *name, size_t n, int64_t live_at,
                              sqlcached_lease_t *out);
    /* w. Insert or replace the row of l->name. */
    sqlcached_status_t (*put)(store_conn_t *w, const sqlcached_lease_t *l);
    /* w. Apply `change` to the lease of name if `owner` holds it live at
     * `now` (and the change's own condition holds) and, when token > 0,
     * under that fencing token; the row after it into *out. NOT_FOUND when
     * nothing matched. expires_at: the new expiry of REENTER and RENEW. */
    sqlcached_status_t (*change)(store_conn_t *w, storage_lease_change_t change, const char *name,
                                 size_t n, const char *owner, size_t on, int64_t now,
                                 int64_t expires_at, int64_t token, sqlcached_lease_t *out);
    /* w. Delete the row of name if it expired at `now`. */
    sqlcached_status_t (*delete_expired)(store_conn_t *w, const char *name, size_t n, int64_t now);
    /* w. The names of up to `limit` rows expired at `now`, earliest expiry
     * first, to on_name. */
    sqlcached_status_t (*expired)(store_conn_t *w, int64_t now, int limit, storage_key_fn on_name,
                                  void *cls);
    /* r. How many leases are live at `now`. */
    sqlcached_status_t (*count_live)(store_conn_t *r, int64_t now, uint64_t *count);
} storage_lease_ops_t;

/* Flash sale: items(id, name, stock, sold, initial_stock, version,
 * payment_timeout_ms) and orders(order_id, item_id, user_id, created_at,
 * state, pay_by, settled_at), at most one pending-or-paid order per (item,
 * user); cancelled orders stay as history. */

/* Called with each order an operation changed, borrowed for the call; a
 * status other than OK ends the operation with it. */
typedef sqlcached_status_t (*storage_order_fn)(void *cls, const sqlcached_order_t *order);

typedef struct storage_seckill_ops {
    /* r or w. NOT_FOUND when there is no such item. */
    sqlcached_status_t (*item_get)(store_conn_t *c, const char *id, sqlcached_item_t *out);
    /* w. Create the item, or reset it (name, stock, sold 0, initial_stock,
     * payment_timeout_ms: 0 = none) and delete its orders; *created tells
     * which. */
    sqlcached_status_t (*item_reset)(store_conn_t *w, const char *id, const char *name,
                                     int64_t stock, int64_t payment_timeout_ms, int64_t version,
                                     bool *created);
    /* r. Up to `limit` items with id > after (""), in id order; one row
     * more than asked sets page->has_more. page->items has room for limit. */
    sqlcached_status_t (*item_list)(store_conn_t *r, const char *after, unsigned limit,
                                    sqlcached_items_t *page);
    /* w. Insert the order, created at `now`: pending with pay_by = now +
     * the item's payment_timeout_ms when it has one, else paid; the row
     * into *out. ALREADY_ORDERED when the user holds a pending or paid
     * one, NOT_FOUND when the item does not exist. */
    sqlcached_status_t (*order_insert)(store_conn_t *w, const char *item_id, const char *user_id,
                                       int64_t now, sqlcached_order_t *out);
    /* w. Take one unit of stock and set the item's version to `version`,
     * only while stock > 0 and, when expected_version > 0, only while the
     * item's version is expected_version. *stock_left: the stock after.
     * NOT_FOUND when no row qualified (sold out, or another version). */
    sqlcached_status_t (*take_unit)(store_conn_t *w, const char *item_id, int64_t version,
                                    int64_t expected_version, int64_t *stock_left);
    /* w, tests and demos only (SQLCACHED_SECKILL_TESTING_NAIVE): write
     * stock and sold as given and set the version, with no guard at all
     * (the blind write of "check then decrement"). NOT_FOUND when there is
     * no such item. */
    sqlcached_status_t (*set_stock)(store_conn_t *w, const char *item_id, int64_t version,
                                    int64_t stock, int64_t sold);
    /* r or w. The user's newest order of the item (the pending or paid one
     * when there is one, else the latest cancelled). NOT_FOUND when none. */
    sqlcached_status_t (*order_get)(store_conn_t *c, const char *item_id, const char *user_id,
                                    sqlcached_order_t *out);
    /* r. Orders of the item with order_id > after, in id order, as
     * item_list. NOT_FOUND when the item does not exist. */
    sqlcached_status_t (*order_list)(store_conn_t *r, const char *item_id, int64_t after,
                                     unsigned limit, sqlcached_orders_t *page);

    /* Payment deadline (sql 007) */
    /* w. Move the user's pending order to `to` with settled_at = now, in one
     * conditional change: to PAID only while pay_by > now, to CANCELLED
     * any time; the row after into *out. NOT_FOUND when no pending order
     * qualified (none, paid, cancelled, or past pay_by for PAID). The
     * item's stock is not touched (see return_units). */
    sqlcached_status_t (*order_settle)(store_conn_t *w, const char *item_id, const char *user_id,
                                       sqlcached_order_state_t to, int64_t now,
                                       sqlcached_order_t *out);
    /* w. Cancel up to `limit` orders pending with pay_by <= now (earliest
     * first), settled_at = now, in one conditional change (only rows still
     * pending change: a racing writer on another connection cannot cancel
     * one twice); each row after it to fn. testing_unguarded (tests
     * only): the guard forgotten, paid orders whose pay_by passed are
     * cancelled too (for showing that checkers see it). */
    sqlcached_status_t (*orders_cancel_due)(store_conn_t *w, int64_t now, int limit,
                                            bool testing_unguarded, storage_order_fn fn, void *cls);
    /* w. Put n units back: stock + n, sold - n, version = `version`, only
     * while sold >= n; *stock_after. NOT_FOUND when no row qualified. */
    sqlcached_status_t (*return_units)(store_conn_t *w, const char *item_id, int64_t n,
                                       int64_t version, int64_t *stock_after);
    /* r or w. The earliest pay_by of a pending order; NOT_FOUND when none. */
    sqlcached_status_t (*next_pay_by)(store_conn_t *c, int64_t *pay_by);
    /* r. How many orders are in each state, counts[sqlcached_order_state_t]. */
    sqlcached_status_t (*order_counts)(store_conn_t *r, uint64_t counts[3]);
} storage_seckill_ops_t;

/* ------------------------------------------------------------------------
 * Delay queue: jobs(seq, queue, id, payload, run_at, attempts, claim_token,
 * worker), one row per job not yet acked or cancelled (sql/.../006_queue.sql).
 * run_at is when the job is due next (its delay's end, or its claim's
 * end); worker is set while it is claimed. Claimed at `now` means worker
 * set and run_at > now; delayed: worker unset and run_at > now; else ready.
 * ------------------------------------------------------------------------ */

/* A job row, borrowed for the callback. payload is NUL-terminated. */
typedef struct storage_job_row {
    int64_t seq;
    const char *queue, *id, *payload;
    size_t queue_len, id_len, payload_len;
    int64_t run_at, attempts, claim_token;
    bool claimed; /* worker set (a claim, live or expired) */
} storage_job_row_t;

typedef sqlcached_status_t (*storage_job_fn)(void *cls, const storage_job_row_t *row);
/* Called with each due job's seq, token and whether it was claimed (a
 * claim that ended unacked); false stops (NOMEM). */
typedef bool (*storage_due_fn)(void *cls, int64_t seq, int64_t claim_token, bool claimed);

typedef struct storage_queue_counts {
    uint64_t delayed, ready, claimed;
} storage_queue_counts_t;

typedef struct storage_queue_ops {
    /* w. Insert the job (not claimed, attempts 0) unless (queue, id)
     * exists; *inserted tells which. */
    sqlcached_status_t (*insert)(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                 size_t idn, const char *payload, size_t pn, int64_t run_at,
                                 bool *inserted);
    /* r or w. The job to on_row; NOT_FOUND when absent. */
    sqlcached_status_t (*get)(store_conn_t *c, const char *queue, size_t qn, const char *id,
                              size_t idn, storage_job_fn on_row, void *cls);
    /* w. Up to `limit` jobs of queue due at now (run_at <= now), earliest
     * run_at first (then seq), each to on_due; rows another transaction
     * holds locked are skipped (PostgreSQL: FOR UPDATE SKIP LOCKED, the
     * rows then locked to COMMIT). */
    sqlcached_status_t (*due)(store_conn_t *w, const char *queue, size_t qn, int64_t now,
                              unsigned limit, storage_due_fn on_due, void *cls);
    /* w. Claim the job seq if it is still due at now under old_token:
     * worker, claim_token = token, run_at = until, attempts + 1; the row
     * after it to on_row. NOT_FOUND when it no longer qualified. */
    sqlcached_status_t (*take)(store_conn_t *w, int64_t seq, int64_t old_token, int64_t now,
                               int64_t token, const char *worker, size_t wn, int64_t until,
                               storage_job_fn on_row, void *cls);
    /* w. Ack: delete the job if its claim `token` is live at now. NOT_FOUND
     * otherwise. */
    sqlcached_status_t (*ack)(store_conn_t *w, const char *queue, size_t qn, const char *id,
                              size_t idn, int64_t token, int64_t now);
    /* w. Nack: if its claim `token` is live at now, unclaim the job, due
     * at run_at. NOT_FOUND otherwise. */
    sqlcached_status_t (*nack)(store_conn_t *w, const char *queue, size_t qn, const char *id,
                               size_t idn, int64_t token, int64_t now, int64_t run_at);
    /* w. Delete the job; NOT_FOUND when absent. */
    sqlcached_status_t (*remove)(store_conn_t *w, const char *queue, size_t qn, const char *id,
                                 size_t idn);
    /* r or w. The earliest run_at of queue's jobs; NOT_FOUND when none. */
    sqlcached_status_t (*next_due)(store_conn_t *c, const char *queue, size_t qn, int64_t *run_at);
    /* r. The jobs of queue (NULL: of every queue) by state at now. */
    sqlcached_status_t (*counts)(store_conn_t *r, const char *queue, size_t qn, int64_t now,
                                 storage_queue_counts_t *out);
} storage_queue_ops_t;

/* ------------------------------------------------------------------------
 * Cluster: the nodes that share one database, and a channel between them
 * (cluster.c above the seam). Only a backend that many processes share
 * has it (PostgreSQL); SQLite's is NULL (one process per file).
 *
 * The link `l` is a connection of its own (link_open; closed with the
 * engine's conn_close) used by one thread: it listens on the channel and
 * holds the node's membership. Any failure of the link that may have lost
 * the channel (a reconnection included) answers UNAVAILABLE until
 * listen() has run again on it.
 * ------------------------------------------------------------------------ */
typedef struct storage_db storage_db_t;

typedef struct storage_node {
    int64_t id, epoch;
    const char *address;  /* borrowed for the callback */
    int64_t started_at;   /* ms, the node's wall clock */
    int64_t heartbeat_at; /* ms, the database's clock at its last renewal */
    int64_t lease_ms;
    int64_t db_now; /* ms, the database's clock when the row was read */
} storage_node_t;

/* Called with each node, borrowed for the call. */
typedef void (*storage_node_fn)(void *cls, const storage_node_t *node);
/* Called with each message received, borrowed for the call. */
typedef void (*storage_message_fn)(void *cls, const char *payload, size_t len);

/* Longest message payload (PostgreSQL's NOTIFY takes < 8000 bytes). */
#define STORAGE_MESSAGE_MAX 7900

typedef struct storage_cluster_ops {
    store_conn_t *(*link_open)(storage_db_t *db, char *err, size_t errlen);
    /* l: (re)connect if needed and listen on the cluster's channel. */
    sqlcached_status_t (*listen)(store_conn_t *l);
    /* l: wait up to timeout_ms for messages, each to fn; OK also when none
     * came. */
    sqlcached_status_t (*receive)(store_conn_t *l, int timeout_ms, storage_message_fn fn,
                                  void *cls);
    /* w (inside the transaction: sent if and when it commits) or l (at
     * once): a message to every listening node, this one included. */
    sqlcached_status_t (*publish)(store_conn_t *c, const char *payload);
    /* l, in a transaction of its own that locks the counters as writes
     * do: register (id 0: a new id into *id) with a new epoch into *epoch,
     * heartbeat now. */
    sqlcached_status_t (*join)(store_conn_t *l, int64_t *id, const char *address,
                               int64_t started_at, int64_t lease_ms, int64_t *epoch);
    /* l: heartbeat now, if the row (id, epoch) is still there (*held). */
    sqlcached_status_t (*renew)(store_conn_t *l, int64_t id, int64_t epoch, bool *held);
    /* l: delete the row (id, epoch): a clean stop. */
    sqlcached_status_t (*leave)(store_conn_t *l, int64_t id, int64_t epoch);
    /* r, w or l: every node's row, by id. */
    sqlcached_status_t (*nodes)(store_conn_t *c, storage_node_fn fn, void *cls);
    /* r, w or l: the row (id, epoch) if still there (*found), into *out
     * (address NULL). */
    sqlcached_status_t (*node)(store_conn_t *c, int64_t id, int64_t epoch, bool *found,
                               storage_node_t *out);
    /* w (outside a transaction) or l: delete the row (id, epoch) if its
     * heartbeat is still heartbeat_at (*evicted): it cannot renew again. */
    sqlcached_status_t (*evict)(store_conn_t *c, int64_t id, int64_t epoch, int64_t heartbeat_at,
                                bool *evicted);
    /* l: delete rows down for longer than older_than_ms. */
    sqlcached_status_t (*forget_down)(store_conn_t *l, int64_t older_than_ms);
} storage_cluster_ops_t;

/* ------------------------------------------------------------------------
 * The engine: connections, group-commit transactions, counters
 *
 * What store.c (the group-commit writer, the reader pool, the counter cache,
 * health and the stop deadline: everything above the seam) needs from a
 * backend. A backend's open database is its own type (storage_db_t); each
 * of its connections is its own struct that begins with a store_conn_t.
 * Every call that can fail returns a library status; describe_error() tells
 * the last failure on a connection in words, for the log and /healthz.
 * ------------------------------------------------------------------------ */

/* A counter as the writer holds it between its transactions (store.c). */
typedef struct store_counter {
    char name[32];
    int64_t value; /* the last value handed out */
    bool dirty;    /* value is ahead of the stored row in this transaction */
} store_counter_t;

#define STORE_MAX_COUNTERS 8

/* The part of every connection that belongs to store.c. */
struct store_conn {
    const struct storage_backend *backend;
    store_counter_t counters[STORE_MAX_COUNTERS]; /* writer only */
    int ncounters;
    store_conn_t *next_free; /* reader pool link */
    store_conn_t *next_all;  /* every reader, for closing */
    /* Writer, inside a write (store.c sets it before each write's function):
     * that write's status. A backend that learns only later that a
     * statement of the write failed (PostgreSQL's pipelined writes) stores
     * the failure there, at the latest before its commit returns; the write
     * is then reported failed and its on_commit hook not run. NULL
     * elsewhere. */
    sqlcached_status_t *job_status;
    /* Writer: what a write changed, for the cluster (store_note(); NULL
     * when nobody listens). */
    const struct store_hooks *hooks;
    void *hooks_cls;
};

typedef struct storage_engine_ops {
    /* Open (create) the database cfg->path names, bring its schema up to
     * date, check it is usable. s is the store being opened (for
     * store_deadline_ms()). NULL with a message in err. */
    storage_db_t *(*open)(const store_config_t *cfg, store_t *s, char *err, size_t errlen);
    /* After every connection is closed. */
    void (*close)(storage_db_t *db);
    /* The writer connection (once, at open) or a reader (read-only). */
    store_conn_t *(*conn_open)(storage_db_t *db, bool writer, char *err, size_t errlen);
    void (*conn_close)(store_conn_t *c);

    /* Group commit, on the writer: begin; per write savepoint, then
     * release or rollback_to + release; commit once (or rollback). */
    sqlcached_status_t (*begin)(store_conn_t *w);
    sqlcached_status_t (*savepoint)(store_conn_t *w);
    sqlcached_status_t (*release)(store_conn_t *w);
    sqlcached_status_t (*rollback_to)(store_conn_t *w);
    /* False once the backend has ended the transaction on its own (SQLite
     * drops it on some errors, a lost connection takes it with it). */
    bool (*in_transaction)(store_conn_t *w);
    /* UNAVAILABLE for a commit whose outcome is unknown (the connection
     * broke before its answer): logged as in doubt by the backend. */
    sqlcached_status_t (*commit)(store_conn_t *w);
    void (*rollback)(store_conn_t *w);
    /* The last failure on c in words (for logs and health). */
    void (*describe_error)(store_conn_t *c, char *buf, size_t len);
    /* A number that grows with every row a commit changes (so a commit
     * that wrote nothing can be told from one that did). */
    int64_t (*changes)(store_conn_t *w);

    /* The stored counter `name` inside the writer's transaction, locked
     * against other writers until the commit. INTERNAL when missing. */
    sqlcached_status_t (*counter_get)(store_conn_t *w, const char *name, int64_t *value);
    /* Store it; *found false when the row went away. */
    sqlcached_status_t (*counter_set)(store_conn_t *w, const char *name, int64_t value,
                                      bool *found);
    /* At the start of a transaction: may the writer keep counting from the
     * values it cached in earlier ones (nobody else wrote since)? */
    bool (*counters_valid)(store_conn_t *w);

    /* Any thread, every maintenance tick: true when the backend finds that
     * commits can no longer be trusted to last (SQLite: its files were
     * removed or replaced), with the reason; the store then refuses every
     * write. May be NULL. */
    bool (*check)(storage_db_t *db, char *reason, size_t len);
    /* Writer thread, once after check() said so: keep what was
     * acknowledged (SQLite: checkpoint into the file still open). May be
     * NULL. */
    void (*salvage)(store_conn_t *w);
} storage_engine_ops_t;

typedef struct storage_backend {
    const char *name; /* "sqlite", "postgresql" */
    const storage_engine_ops_t *engine;
    const storage_kv_ops_t *kv;
    const storage_seckill_ops_t *seckill;
    const storage_lease_ops_t *lease;
    const storage_cluster_ops_t *cluster; /* NULL: one process per database */
    const storage_queue_ops_t *queue;
    const struct storage_watch_ops *watch; /* storage.h, "Watch" */
} storage_backend_t;

extern const storage_backend_t storage_sqlite;
extern const storage_backend_t storage_pg;

/* The backend that `path` names: a postgresql:// or postgres:// URL is
 * PostgreSQL, anything else a SQLite file. */
const storage_backend_t *storage_backend_for(const char *path);

/* The backend connection c belongs to. */
static inline const storage_backend_t *store_conn_backend(store_conn_t *c)
{
    return c->backend;
}

/* ------------------------------------------------------------------------
 * Dispatch: one wrapper per operation
 * ------------------------------------------------------------------------ */

static inline sqlcached_status_t storage_kv_get(store_conn_t *c, const void *key, size_t klen,
                                                int64_t now, storage_kv_row_fn on_row, void *cls)
{
    return store_conn_backend(c)->kv->get(c, key, klen, now, on_row, cls);
}

static inline sqlcached_status_t storage_kv_version(store_conn_t *w, const void *key, size_t klen,
                                                    int64_t now, int64_t *version)
{
    return store_conn_backend(w)->kv->version(w, key, klen, now, version);
}

/* Does w's backend have kv replace()? */
static inline bool storage_kv_has_replace(store_conn_t *w)
{
    return store_conn_backend(w)->kv->replace != NULL;
}

/* Only when storage_kv_has_replace(w). */
static inline sqlcached_status_t storage_kv_replace(store_conn_t *w, const void *key, size_t klen,
                                                    const void *value, size_t vlen,
                                                    const char *content_type, int64_t version,
                                                    int64_t expires_at, int64_t now,
                                                    int64_t *previous)
{
    return store_conn_backend(w)->kv->replace(w, key, klen, value, vlen, content_type, version,
                                              expires_at, now, previous);
}

static inline sqlcached_status_t storage_kv_upsert(store_conn_t *w, const void *key, size_t klen,
                                                   const void *value, size_t vlen,
                                                   const char *content_type, int64_t version,
                                                   int64_t expires_at)
{
    return store_conn_backend(w)->kv->upsert(w, key, klen, value, vlen, content_type, version,
                                             expires_at);
}

static inline sqlcached_status_t storage_kv_remove(store_conn_t *w, const void *key, size_t klen)
{
    return store_conn_backend(w)->kv->remove(w, key, klen);
}

static inline sqlcached_status_t storage_kv_list(store_conn_t *r, const void *prefix, size_t plen,
                                                 const void *after, size_t alen, int64_t now,
                                                 unsigned limit, storage_key_fn on_key, void *cls,
                                                 bool *has_more)
{
    return store_conn_backend(r)->kv->list(r, prefix, plen, after, alen, now, limit, on_key, cls,
                                           has_more);
}

static inline sqlcached_status_t storage_kv_purge_expired(store_conn_t *w, int64_t now,
                                                          int max_rows, int *purged)
{
    return store_conn_backend(w)->kv->purge_expired(w, now, max_rows, purged);
}

static inline sqlcached_status_t storage_kv_scan_keys(store_conn_t *r, storage_key_fn on_key,
                                                      void *cls)
{
    return store_conn_backend(r)->kv->scan_keys(r, on_key, cls);
}

static inline sqlcached_status_t storage_kv_count_bound(store_conn_t *r, int64_t *count)
{
    return store_conn_backend(r)->kv->count_bound(r, count);
}

static inline sqlcached_status_t storage_kv_upsert_sliding(store_conn_t *w, const void *key,
                                                           size_t klen, const void *value,
                                                           size_t vlen, const char *content_type,
                                                           int64_t version, int64_t expires_at,
                                                           int64_t sliding_ms)
{
    return store_conn_backend(w)->kv->upsert_sliding(w, key, klen, value, vlen, content_type,
                                                     version, expires_at, sliding_ms);
}

static inline sqlcached_status_t storage_kv_extend(store_conn_t *w, const void *key, size_t klen,
                                                   int64_t version, int64_t now, int64_t expires_at,
                                                   bool *extended)
{
    return store_conn_backend(w)->kv->extend(w, key, klen, version, now, expires_at, extended);
}

static inline sqlcached_status_t storage_item_get(store_conn_t *c, const char *id,
                                                  sqlcached_item_t *out)
{
    return store_conn_backend(c)->seckill->item_get(c, id, out);
}

static inline sqlcached_status_t storage_item_reset(store_conn_t *w, const char *id,
                                                    const char *name, int64_t stock,
                                                    int64_t payment_timeout_ms, int64_t version,
                                                    bool *created)
{
    return store_conn_backend(w)->seckill->item_reset(w, id, name, stock, payment_timeout_ms,
                                                      version, created);
}

static inline sqlcached_status_t storage_item_list(store_conn_t *r, const char *after,
                                                   unsigned limit, sqlcached_items_t *page)
{
    return store_conn_backend(r)->seckill->item_list(r, after, limit, page);
}

static inline sqlcached_status_t storage_order_insert(store_conn_t *w, const char *item_id,
                                                      const char *user_id, int64_t now,
                                                      sqlcached_order_t *out)
{
    return store_conn_backend(w)->seckill->order_insert(w, item_id, user_id, now, out);
}

static inline sqlcached_status_t storage_take_unit(store_conn_t *w, const char *item_id,
                                                   int64_t version, int64_t expected_version,
                                                   int64_t *stock_left)
{
    return store_conn_backend(w)->seckill->take_unit(w, item_id, version, expected_version,
                                                     stock_left);
}

static inline sqlcached_status_t storage_set_stock(store_conn_t *w, const char *item_id,
                                                   int64_t version, int64_t stock, int64_t sold)
{
    return store_conn_backend(w)->seckill->set_stock(w, item_id, version, stock, sold);
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

static inline sqlcached_status_t storage_order_settle(store_conn_t *w, const char *item_id,
                                                      const char *user_id,
                                                      sqlcached_order_state_t to, int64_t now,
                                                      sqlcached_order_t *out)
{
    return store_conn_backend(w)->seckill->order_settle(w, item_id, user_id, to, now, out);
}

static inline sqlcached_status_t storage_orders_cancel_due(store_conn_t *w, int64_t now, int limit,
                                                           bool testing_unguarded,
                                                           storage_order_fn fn, void *cls)
{
    return store_conn_backend(w)->seckill->orders_cancel_due(w, now, limit, testing_unguarded, fn,
                                                             cls);
}

static inline sqlcached_status_t storage_return_units(store_conn_t *w, const char *item_id,
                                                      int64_t n, int64_t version,
                                                      int64_t *stock_after)
{
    return store_conn_backend(w)->seckill->return_units(w, item_id, n, version, stock_after);
}

static inline sqlcached_status_t storage_next_pay_by(store_conn_t *c, int64_t *pay_by)
{
    return store_conn_backend(c)->seckill->next_pay_by(c, pay_by);
}

static inline sqlcached_status_t storage_order_counts(store_conn_t *r, uint64_t counts[3])
{
    return store_conn_backend(r)->seckill->order_counts(r, counts);
}

static inline sqlcached_status_t storage_lease_get(store_conn_t *c, const char *name, size_t n,
                                                   int64_t live_at, sqlcached_lease_t *out)
{
    return store_conn_backend(c)->lease->get(c, name, n, live_at, out);
}

static inline sqlcached_status_t storage_lease_put(store_conn_t *w, const sqlcached_lease_t *l)
{
    return store_conn_backend(w)->lease->put(w, l);
}

static inline sqlcached_status_t storage_lease_change(store_conn_t *w,
                                                      storage_lease_change_t change,
                                                      const char *name, size_t n, const char *owner,
                                                      size_t on, int64_t now, int64_t expires_at,
                                                      int64_t token, sqlcached_lease_t *out)
{
    return store_conn_backend(w)->lease->change(w, change, name, n, owner, on, now, expires_at,
                                                token, out);
}

static inline sqlcached_status_t storage_lease_delete_expired(store_conn_t *w, const char *name,
                                                              size_t n, int64_t now)
{
    return store_conn_backend(w)->lease->delete_expired(w, name, n, now);
}

static inline sqlcached_status_t storage_lease_expired(store_conn_t *w, int64_t now, int limit,
                                                       storage_key_fn on_name, void *cls)
{
    return store_conn_backend(w)->lease->expired(w, now, limit, on_name, cls);
}

static inline sqlcached_status_t storage_lease_count_live(store_conn_t *r, int64_t now,
                                                          uint64_t *count)
{
    return store_conn_backend(r)->lease->count_live(r, now, count);
}

/* Delay queue (storage_queue_ops_t): callers use the table directly,
 * storage_queue(c)->insert(c, ...). */
static inline const storage_queue_ops_t *storage_queue(store_conn_t *c)
{
    return store_conn_backend(c)->queue;
}

/* ------------------------------------------------------------------------
 * Watch: kv_changes(version, key, kind, expires_at), one row per committed
 * KV change (sql/.../008_watch.sql), and the largest version trimmed from
 * it. Kinds: 'p' put (any write that leaves a value), 'd' delete, 'x'
 * expire (the purge removed the key).
 * ------------------------------------------------------------------------ */
typedef struct storage_change_row {
    int64_t version;
    const void *key; /* borrowed for the callback */
    size_t klen;
    char kind;
    int64_t expires_at; /* 0 = never (or deleted) */
} storage_change_row_t;

/* Called with each change, borrowed for the call; false stops (NOMEM). */
typedef bool (*storage_change_fn)(void *cls, const storage_change_row_t *row);

typedef struct storage_watch_bounds {
    int64_t trimmed;        /* the largest version removed from the log, 0 = none */
    int64_t oldest, newest; /* versions kept, 0 = the log is empty */
    int64_t count;          /* rows kept */
} storage_watch_bounds_t;

typedef struct storage_watch_ops {
    /* w. Record a change at `version`. */
    sqlcached_status_t (*append)(store_conn_t *w, int64_t version, char kind, const void *key,
                                 size_t klen, int64_t expires_at);
    /* r. Up to `limit` changes with after < version <= upto, in version
     * order, each to fn. */
    sqlcached_status_t (*range)(store_conn_t *r, int64_t after, int64_t upto, unsigned limit,
                                storage_change_fn fn, void *cls);
    /* r. The log's bounds (count: a scan of the log). */
    sqlcached_status_t (*bounds)(store_conn_t *r, storage_watch_bounds_t *out);
    /* r. The largest version trimmed (0 = none) and the newest kept (0 =
     * none): two index lookups. */
    sqlcached_status_t (*edges)(store_conn_t *r, int64_t *trimmed, int64_t *newest);
    /* w. Keep the newest `keep` rows: delete the older ones and raise the
     * trimmed version to the largest deleted; how many went in *removed. */
    sqlcached_status_t (*trim)(store_conn_t *w, int64_t keep, int64_t *removed);
    /* w. Up to `limit` rows of kv expired at now, earliest expiry first,
     * each to fn as a change of kind 'x' (version: the row's). */
    sqlcached_status_t (*expired)(store_conn_t *w, int64_t now, unsigned limit,
                                  storage_change_fn fn, void *cls);
    /* w. Delete the kv row of key if it is expired at now (*removed). */
    sqlcached_status_t (*remove_expired)(store_conn_t *w, const void *key, size_t klen, int64_t now,
                                         bool *removed);
    /* w, optional (NULL: append() then the kv replace()): the kv
     * replace() and the append() of its 'p' change in one statement (a
     * backend where each statement is a round trip). */
    sqlcached_status_t (*replace_logged)(store_conn_t *w, const void *key, size_t klen,
                                         const void *value, size_t vlen, const char *content_type,
                                         int64_t version, int64_t expires_at, int64_t now,
                                         int64_t *previous);
} storage_watch_ops_t;

/* Watch (storage_watch_ops_t): callers use the table directly,
 * storage_watch(c)->append(c, ...). */
static inline const storage_watch_ops_t *storage_watch(store_conn_t *c)
{
    return store_conn_backend(c)->watch;
}

#endif
