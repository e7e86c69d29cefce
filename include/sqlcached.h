/*
 * sqlcached.h - public API of libsqlcached, a persistent cache.
 *
 * SQLite is the source of truth; an in-memory tier sits in front of it.
 * A process opens one store (sqlcached_t) on a database file and calls it
 * from any number of threads: every call is thread-safe.
 *
 * Conventions:
 *   - Calls the caller must branch on return sqlcached_status_t, 0 = OK.
 *   - Keys and values are byte strings (pointer + length), never
 *     NUL-terminated requirements.
 *   - Times are Unix epoch milliseconds (int64_t). 0 means "none" for an
 *     expiry time.
 *   - A result returned through an out-pointer is owned by the caller and is
 *     freed with the matching *_release / *_free call named in its comment.
 *   - Nothing here knows about HTTP.
 */
#ifndef SQLCACHED_H
#define SQLCACHED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

typedef struct sqlcached sqlcached_t; /* an open store (opaque) */

typedef enum sqlcached_status {
    SQLCACHED_OK = 0,
    SQLCACHED_NOT_FOUND,           /* key / item / order / lease absent */
    SQLCACHED_INVALID_ARGUMENT,    /* a size or range check failed */
    SQLCACHED_PRECONDITION_FAILED, /* conditional write: version mismatch */
    SQLCACHED_CONFLICT,            /* optimistic retries exhausted */
    SQLCACHED_NOT_INTEGER,         /* incr on a non-integer or overflow */
    SQLCACHED_SOLD_OUT,            /* flash sale: no stock left */
    SQLCACHED_ALREADY_ORDERED,     /* flash sale: one order per user */
    SQLCACHED_LEASE_HELD,          /* lease held by another owner */
    SQLCACHED_NOT_OWNER,           /* renew/release by a non-holder */
    SQLCACHED_STORAGE_FULL,        /* the disk or database is full */
    SQLCACHED_UNAVAILABLE,         /* database busy/locked, try again */
    SQLCACHED_NOMEM,               /* allocation failed */
    SQLCACHED_INTERNAL,            /* unexpected database error */
    SQLCACHED_NOT_JSON,            /* merge patch: the stored value is not a JSON object */
    SQLCACHED_ORDER_NOT_PENDING,   /* flash sale: pay/cancel of an order not pending */
    SQLCACHED_CLAIM_EXPIRED,       /* queue: not the job's current live claim */
    SQLCACHED_HISTORY_TRUNCATED,   /* watch: changes asked for left the history */
    SQLCACHED_STATUS_COUNT
} sqlcached_status_t;

typedef enum sqlcached_durability {
    SQLCACHED_DURABILITY_FULL = 0, /* fsync every commit (synchronous=FULL) */
    SQLCACHED_DURABILITY_NORMAL    /* survive a process crash, not power loss */
} sqlcached_durability_t;

/* How an order takes a unit of stock (see "Flash sale" below). */
typedef enum sqlcached_seckill_strategy {
    SQLCACHED_SECKILL_STOCK = 0, /* decrement guarded by stock > 0 (default) */
    SQLCACHED_SECKILL_VERSION,   /* guarded by the version read before; retried */
    /* Tests and demos only, never in production: "check then decrement"
     * without a guard (the stock read on a reader connection, then
     * written back one lower in a separate write). It oversells: this is
     * the race the two strategies above exist to prevent. */
    SQLCACHED_SECKILL_TESTING_NAIVE
} sqlcached_seckill_strategy_t;

/* What a committed write does to the memory tier's copy of its key (see
 * docs/consistency.md). Either way it runs in the store's writer thread
 * after the commit and before any answer, marks the key's loads in flight
 * stale (the fill guard), and no acknowledged write is ever followed by
 * an older read. */
typedef enum sqlcached_on_write {
    SQLCACHED_ON_WRITE_REPLACE = 0, /* a key the tier holds gets the value
                                     * written; others are invalidated (default) */
    SQLCACHED_ON_WRITE_INVALIDATE   /* update the database, then delete the
                                     * cached copy: the next read misses */
} sqlcached_on_write_t;

/* Options for sqlcached_open(). Fill with sqlcached_options_init(), then set
 * what differs from the defaults. */
typedef struct sqlcached_options {
    const char *path;                  /* database file; default "sqlcached.db" */
    sqlcached_durability_t durability; /* default FULL */
    int busy_timeout_ms;               /* wait for a lock held by another process; default 5000 */
    unsigned max_batch;                /* group commit: most writes per transaction; default 256 */
    /* SQLite page cache, bytes: the writer connection's, default 64 MiB;
     * each reader connection gets the smaller of this and SQLite's default
     * 2000 KiB. 0 = the fewest pages SQLite works with. */
    size_t sqlite_cache;
    int purge_interval_ms; /* background purge of expired rows; default 1000, < 0 = off */
    /* Memory tier (see docs/architecture.md). */
    size_t cache_memory;            /* bytes; default 64 MiB; 0 = no memory tier */
    const char *cache_policy;       /* Redis name; default (and NULL) "allkeys-lfu" */
    int64_t negative_ttl_ms;        /* absent keys remembered this long; default 5000 */
    unsigned ttl_jitter_percent;    /* spread TTLs by +-N% (0..50); default 0 */
    int bloom_filter;               /* 1 = skip SQLite for never-written keys; default 1 */
    int hotkeys;                    /* 1 = count KV reads for sqlcached_hotkeys; default 1 */
    int testing_disable_fill_guard; /* tests only: allow stale fills */
    /* tests only: called by a reader between its SQLite read and its fill
     * of the memory tier (the window of the stale-fill race). */
    void (*testing_before_fill)(void *arg);
    void *testing_arg;
    /* tests only: cap the database at this many pages (PRAGMA
     * max_page_count on the writer), so a test can fill it and see
     * SQLCACHED_STORAGE_FULL without a small file system; 0 = no cap. */
    unsigned testing_max_pages;
    /* Clock for expiry decisions; NULL = the wall clock (CLOCK_REALTIME).
     * Tests inject a fake clock here. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    sqlcached_seckill_strategy_t seckill_strategy; /* default SQLCACHED_SECKILL_STOCK */
    int seckill_retries;                           /* version strategy: retries after the first try,
                          * 0..SQLCACHED_SECKILL_RETRIES_MAX; default 3 */
    /* Memory tier after every KV write (PUT, DELETE, incr, and any write
     * added later: they share one after-commit path); items are always
     * invalidated. Default SQLCACHED_ON_WRITE_REPLACE. */
    sqlcached_on_write_t on_write;
    /* Cluster (a shared database: PostgreSQL; ignored on SQLite): this
     * node's membership lease, SQLCACHED_MEMBER_TIMEOUT_MIN..MAX ms,
     * default 2000; where the other nodes reach it ("host:port", shown by
     * sqlcached_cluster_members; NULL = ""). */
    int64_t member_timeout_ms;
    const char *advertise;
    /* tests only: send no invalidations to the other nodes (their memory
     * tiers then serve stale values: for showing that checkers see it) */
    int testing_skip_cluster_invalidation;
    /* tests only: the payment deadline forgets its guard and cancels paid
     * orders whose pay_by passed too (for showing that checkers see it) */
    int testing_payment_unguarded;
    /* Watch (see "Watch" below): changes kept in the change log, 0 =
     * SQLCACHED_WATCH_HISTORY_DEFAULT; watches open at once, 0 =
     * SQLCACHED_MAX_WATCHERS_DEFAULT. */
    int64_t watch_history;
    unsigned max_watchers;
} sqlcached_options_t;

#define SQLCACHED_MEMBER_TIMEOUT_MIN 200
#define SQLCACHED_MEMBER_TIMEOUT_MAX 60000

/* A value read from the store. Immutable and reference counted: release it
 * with sqlcached_value_release() once done (safe from any thread). */
typedef struct sqlcached_value {
    const void *data;         /* value bytes (not NUL-terminated) */
    size_t len;               /* number of value bytes */
    const char *content_type; /* NUL-terminated */
    int64_t version;          /* version of the write that stored it */
    int from_cache;           /* 1 if served from the memory tier */
} sqlcached_value_t;

/* One precondition on the current version of a key (HTTP If-Match /
 * If-None-Match). The versions array is borrowed for the call. */
typedef enum sqlcached_match_kind {
    SQLCACHED_MATCH_NONE = 0, /* no condition */
    SQLCACHED_MATCH_ANY,      /* "*": the key exists */
    SQLCACHED_MATCH_VERSIONS  /* the key exists with one of versions[] */
} sqlcached_match_kind_t;

typedef struct sqlcached_match {
    sqlcached_match_kind_t kind;
    const int64_t *versions;
    size_t count;
} sqlcached_match_t;

/* Both must hold for a write to happen (else SQLCACHED_PRECONDITION_FAILED):
 * if_match matches the current version, and if_none_match does not (so
 * if_none_match ANY means "only if absent", SET NX). An absent or expired
 * key has no version: it fails every if_match and passes every
 * if_none_match. */
typedef struct sqlcached_preconditions {
    sqlcached_match_t if_match;
    sqlcached_match_t if_none_match;
} sqlcached_preconditions_t;

typedef struct sqlcached_put_options {
    const char *content_type; /* NULL = "application/octet-stream" */
    int64_t ttl_ms;           /* > 0: expire after this long; 0 = never */
    sqlcached_preconditions_t pre;
    /* 1: the expiry slides (needs ttl_ms > 0, else INVALID_ARGUMENT): every
     * read and write of the key moves it to now + ttl_ms (see "Sessions and
     * one-time values" below); 0: a plain TTL (clears a previous sliding). */
    int sliding;
} sqlcached_put_options_t;

typedef struct sqlcached_write_result {
    int64_t version;    /* version assigned to this write */
    int64_t expires_at; /* ms, 0 = never */
    int created;        /* 1 if the key was absent before */
} sqlcached_write_result_t;

/* A page of keys from sqlcached_kv_list(). Free with sqlcached_keys_free(). */
typedef struct sqlcached_keys {
    size_t count;
    const void **keys; /* count key byte strings */
    size_t *lens;      /* their lengths */
    int has_more;      /* 1 if another page follows the last key */
} sqlcached_keys_t;

/* Key and value limits. */
#define SQLCACHED_KEY_MAX 512
#define SQLCACHED_CONTENT_TYPE_MAX 255
#define SQLCACHED_LIST_LIMIT_MAX 1000
/* Longest TTL accepted (2^31-1 seconds, about 68 years). */
#define SQLCACHED_TTL_MAX_MS (2147483647LL * 1000)

/* ------------------------------------------------------------------------
 * Opening and closing
 * ------------------------------------------------------------------------ */

/* Fill opts with the defaults. Cannot fail. */
void sqlcached_options_init(sqlcached_options_t *opts);

/* Open (creating if needed) the store at opts->path, apply pending schema
 * migrations, and start the writer and maintenance threads.
 * The store holds an exclusive lock on "<path>-lock" (flock) until
 * sqlcached_close(): while it is open, another sqlcached_open() of the same
 * file, in this process or another, fails with SQLCACHED_CONFLICT. The
 * kernel releases the lock when the process dies; the lock file stays.
 * Returns SQLCACHED_OK and *out on success. On failure *out is NULL and, if
 * err is not NULL, a message is written to err (at most errlen bytes). */
sqlcached_status_t sqlcached_open(const sqlcached_options_t *opts, sqlcached_t **out, char *err,
                                  size_t errlen);

/* Stop the background threads and close every connection. Calls in flight
 * on other threads must have returned. NULL is allowed. */
void sqlcached_close(sqlcached_t *db);

/* Bound the stop: timeout_ms from now (a monotonic clock), the store stops
 * starting writes. A write still waiting then for a database lock held by
 * another process, or still queued, and any write submitted later, fails
 * with SQLCACHED_UNAVAILABLE and is never stored; its caller is told as
 * for any failure (the synchronous call returns, an asynchronous call's
 * done is called). Writes answered before are unaffected. Returns at once;
 * cannot fail. Call before sqlcached_close() so that it cannot wait up to
 * busy_timeout_ms per queued batch; a second call can only bring the
 * deadline nearer. */
void sqlcached_drain(sqlcached_t *db, unsigned timeout_ms);

/* Stable snake_case name of a status ("not_found", ...). Cannot fail. */
const char *sqlcached_status_name(sqlcached_status_t status);

/* Library version string, e.g. "0.1.0". */
const char *sqlcached_version(void);

/* The source of truth of an open store: "sqlite" or "postgresql" (static). */
const char *sqlcached_storage_backend(const sqlcached_t *db);

/* The current time in ms as the store sees it (its clock). */
int64_t sqlcached_now_ms(const sqlcached_t *db);

/* ------------------------------------------------------------------------
 * Key-value store
 *
 * A key is 1..SQLCACHED_KEY_MAX bytes (else SQLCACHED_INVALID_ARGUMENT).
 * Every write takes the next value of one store-wide persisted counter as
 * its version: versions never repeat, across deletes and restarts.
 * Expired keys behave exactly as absent keys.
 * ------------------------------------------------------------------------ */

/* Read a key. On SQLCACHED_OK *out is a new reference the caller releases
 * with sqlcached_value_release(). Absent or expired: SQLCACHED_NOT_FOUND. */
sqlcached_status_t sqlcached_kv_get(sqlcached_t *db, const void *key, size_t klen,
                                    sqlcached_value_t **out);

/* Drop a reference returned by sqlcached_kv_get(). NULL is allowed. */
void sqlcached_value_release(sqlcached_value_t *value);

/* Store a value (copied). opts may be NULL (unconditional, no TTL, default
 * content type). A failed condition returns SQLCACHED_PRECONDITION_FAILED
 * and changes nothing. result may be NULL. */
sqlcached_status_t sqlcached_kv_put(sqlcached_t *db, const void *key, size_t klen,
                                    const void *value, size_t vlen,
                                    const sqlcached_put_options_t *opts,
                                    sqlcached_write_result_t *result);

/* Completion of an asynchronous call: status is what the synchronous call
 * would have returned. Called on a library thread (the store's writer),
 * which it must not hold up for long: copy what you need and hand off. */
typedef void (*sqlcached_done_fn)(void *cls, sqlcached_status_t status);

/* sqlcached_kv_put() without waiting for the commit: the write joins the
 * next group transaction and this returns at once. SQLCACHED_OK: done(cls,
 * status) is called exactly once, after the commit and after the write is
 * visible to every later read, with *result filled (when non-NULL) if the
 * status is SQLCACHED_OK. key, value, opts (its content type and version
 * lists) and result are borrowed: they must stay valid until done is
 * called. Any other return (bad argument, no memory, closing): nothing was
 * queued and done is never called. */
sqlcached_status_t sqlcached_kv_put_async(sqlcached_t *db, const void *key, size_t klen,
                                          const void *value, size_t vlen,
                                          const sqlcached_put_options_t *opts,
                                          sqlcached_write_result_t *result, sqlcached_done_fn done,
                                          void *cls);

/* Delete a key. pre may be NULL (unconditional); a failed precondition is
 * SQLCACHED_PRECONDITION_FAILED, checked before existence, so If-Match on an
 * absent key fails that way. Absent: SQLCACHED_NOT_FOUND. */
sqlcached_status_t sqlcached_kv_delete(sqlcached_t *db, const void *key, size_t klen,
                                       const sqlcached_preconditions_t *pre);

/* sqlcached_kv_delete() without waiting for the commit, as
 * sqlcached_kv_put_async(): SQLCACHED_OK means done(cls, status) is called
 * exactly once, after the commit and after the delete is visible to every
 * later read, with the status sqlcached_kv_delete() would have returned.
 * key and pre (its version lists) are borrowed until then. Any other
 * return: nothing was queued and done is never called. */
sqlcached_status_t sqlcached_kv_delete_async(sqlcached_t *db, const void *key, size_t klen,
                                             const sqlcached_preconditions_t *pre,
                                             sqlcached_done_fn done, void *cls);

/* Atomically add `by` to a base-10 int64 value (absent counts as 0, and is
 * created as text/plain without expiry; an existing key keeps its content
 * type and expiry). Non-integer value or overflow: SQLCACHED_NOT_INTEGER.
 * value_out and version_out may be NULL. */
sqlcached_status_t sqlcached_kv_incr(sqlcached_t *db, const void *key, size_t klen, int64_t by,
                                     int64_t *value_out, int64_t *version_out);

/* sqlcached_kv_incr() without waiting for the commit, as
 * sqlcached_kv_put_async(): on SQLCACHED_OK, *value_out and *version_out
 * (either may be NULL) are filled before done(cls, SQLCACHED_OK) is called.
 * key, value_out and version_out are borrowed until done is called. */
sqlcached_status_t sqlcached_kv_incr_async(sqlcached_t *db, const void *key, size_t klen,
                                           int64_t by, int64_t *value_out, int64_t *version_out,
                                           sqlcached_done_fn done, void *cls);

/* List live keys starting with prefix, in byte order, strictly after `after`
 * (NULL/0 = from the start), at most `limit` (1..SQLCACHED_LIST_LIMIT_MAX).
 * On SQLCACHED_OK *out is owned by the caller: sqlcached_keys_free(). */
sqlcached_status_t sqlcached_kv_list(sqlcached_t *db, const void *prefix, size_t plen,
                                     const void *after, size_t alen, unsigned limit,
                                     sqlcached_keys_t **out);

/* Free a page from sqlcached_kv_list(). NULL is allowed. */
void sqlcached_keys_free(sqlcached_keys_t *keys);

/* ------------------------------------------------------------------------
 * Backup and restore
 * ------------------------------------------------------------------------ */

/* Copy the whole store as of one moment into dest_path (through a
 * temporary file of its own, ".sqlcached-tmp-<pid>-<n>" in the same
 * directory, and a rename), while reads and writes go on. The copy is one
 * self-contained file (rollback journal mode). SQLCACHED_CONFLICT when
 * dest_path is a directory, SQLCACHED_INVALID_ARGUMENT when the file system
 * cannot hold its name, SQLCACHED_STORAGE_FULL when the disk is full.
 * On failure a message goes to err (may be NULL). */
sqlcached_status_t sqlcached_backup(sqlcached_t *db, const char *dest_path, char *err,
                                    size_t errlen);

/* Replace the database at db_path with the backup at backup_path, after
 * checking the backup is an intact sqlcached database. Holds the lock of
 * db_path (see sqlcached_open) throughout: SQLCACHED_CONFLICT when a store
 * has it open. The restored database gets this build's schema, and every
 * persisted counter (versions, fencing tokens, order ids) continues above
 * the value the replaced database had reached, so none is issued twice; a
 * db_path that exists but whose counters cannot be read is refused
 * (SQLCACHED_CONFLICT). On failure a message goes to err (may be NULL). */
sqlcached_status_t sqlcached_restore(const char *backup_path, const char *db_path, char *err,
                                     size_t errlen);

/* ------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------ */

/* A snapshot of the store's counters (monotonic since open) and gauges. */
/* A node of a cluster (sqlcached_cluster_members), borrowed for the
 * callback. */
typedef struct sqlcached_member {
    int64_t id;
    const char *address;  /* as it advertised itself; "" when not given */
    int up;               /* 1 while its membership lease runs */
    int64_t heartbeat_at; /* epoch ms (the database's clock): its last renewal */
    int64_t started_at;   /* epoch ms (its own clock) */
} sqlcached_member_t;

typedef void (*sqlcached_member_fn)(void *cls, const sqlcached_member_t *member);

typedef struct sqlcached_cluster_stats {
    int enabled;  /* 1 on a shared database (a node of a cluster) */
    int64_t node; /* this node's id */
    int trusted;  /* 1: its memory tiers may answer (membership held) */
    uint64_t messages_sent, messages_received;
    uint64_t ack_waits;       /* committed batches that waited for the others */
    uint64_t ack_wait_ms_max; /* the longest such wait */
    uint64_t evictions;       /* members evicted for renewing without answering */
    uint64_t tier_drops;      /* times the tiers were emptied (membership lost) */
} sqlcached_cluster_stats_t;

typedef struct sqlcached_stats {
    /* memory tier. Reads = KV GETs (sqlcached_kv_get) and item reads
     * (sqlcached_item_get). cache_hits: reads answered with a value from
     * the memory tier; cache_misses: every other read, however it was
     * answered (from the store, absent from a negative entry or the bloom
     * filter, or past a tier that is off or not trusted), so
     * hit ratio = hits / (hits + misses). cache_negative_hits and
     * cache_bloom_skips are subsets of cache_misses. */
    uint64_t cache_hits, cache_misses, cache_evictions, cache_expirations;
    uint64_t cache_entries, cache_memory_bytes, cache_memory_limit;
    uint64_t cache_singleflight_waits, cache_negative_hits, cache_bloom_skips;
    uint64_t cache_fills_dropped; /* fills refused by the stale-fill guard */
    uint64_t storage_reads;       /* key reads that went to the store */
    /* KV writes, after their commit: cached copies replaced by the value
     * written (on_write replace) and cached copies removed */
    uint64_t cache_write_replaced, cache_write_invalidated;
    const char *on_write;        /* static string: "replace" or "invalidate" */
    const char *cache_policy;    /* static string, e.g. "allkeys-lfu" */
    const char *storage_backend; /* static string: "sqlite" */
    /* The store's writer: group commit = writes_committed / write_transactions */
    uint64_t write_transactions, writes_committed, write_errors;
    /* flash sale */
    uint64_t seckill_orders, seckill_sold_out, seckill_already_ordered, seckill_conflicts;
    /* leases */
    uint64_t lease_acquisitions, lease_waiters, leases_held;
    /* cluster (all 0 on one node) */
    sqlcached_cluster_stats_t cluster;
    /* flash sale, payment deadline (see sqlcached_payment_stats) */
    uint64_t orders_pending, orders_paid, orders_cancelled; /* orders now, store-wide */
    uint64_t orders_auto_cancelled; /* cancelled by this process at pay_by */
} sqlcached_stats_t;

/* Fill out with the current figures. Cannot fail. */
void sqlcached_stats(sqlcached_t *db, sqlcached_stats_t *out);

/* ------------------------------------------------------------------------
 * Hot keys
 *
 * With options.hotkeys on (the default), every KV GET (sqlcached_kv_get,
 * of a key present or absent) is counted in a fixed-size heavy-hitters
 * table (Space-Saving: SQLCACHED_HOTKEYS_TRACKED keys, about 270 KiB)
 * whose counts halve every SQLCACHED_HOTKEYS_HALF_LIFE_MS, so the keys it
 * names are the ones read most often recently.
 * ------------------------------------------------------------------------ */

#define SQLCACHED_HOTKEYS_LIMIT_MAX 100
#define SQLCACHED_HOTKEYS_TRACKED 512
#define SQLCACHED_HOTKEYS_HALF_LIFE_MS 10000

/* One hot key. count estimates its reads (halved every half-life) and is
 * never below the truth; count - error is a lower bound. */
typedef struct sqlcached_hotkey {
    const void *key; /* klen bytes, not NUL-terminated; owned by the list */
    size_t klen;
    uint64_t count, error;
} sqlcached_hotkey_t;

typedef struct sqlcached_hotkeys {
    int enabled;          /* 0: tracking is off (options.hotkeys) */
    int64_t half_life_ms; /* SQLCACHED_HOTKEYS_HALF_LIFE_MS */
    size_t n;             /* entries in keys, highest count first */
    sqlcached_hotkey_t *keys;
} sqlcached_hotkeys_t;

/* The at most `limit` (1..SQLCACHED_HOTKEYS_LIMIT_MAX) keys read most
 * often recently, highest count first (ties in key byte order), into
 * *out, which the caller frees with sqlcached_hotkeys_free. Tracking off:
 * OK with enabled 0 and no keys. SQLCACHED_INVALID_ARGUMENT for a bad
 * limit, SQLCACHED_NOMEM; then *out is NULL. */
sqlcached_status_t sqlcached_hotkeys(sqlcached_t *db, unsigned limit, sqlcached_hotkeys_t **out);

/* Frees a list from sqlcached_hotkeys; NULL is a no-op. */
void sqlcached_hotkeys_free(sqlcached_hotkeys_t *list);

/* ------------------------------------------------------------------------
 * Cluster
 *
 * Every store opened on the same shared database (PostgreSQL, same
 * schema) is a node of one cluster; on SQLite a store is a cluster of one.
 * ------------------------------------------------------------------------ */

/* This node's id into *self, and every member (this one included) to fn,
 * by id. On SQLite: *self = 1 and one member, itself, up. */
sqlcached_status_t sqlcached_cluster_members(sqlcached_t *db, int64_t *self, sqlcached_member_fn fn,
                                             void *cls);

/* ------------------------------------------------------------------------
 * Health
 * ------------------------------------------------------------------------ */

/* Whether the store can write now. A write transaction that fails for the
 * storage (full, locked past the busy timeout, I/O error, read-only, cannot
 * open, corrupt) makes the store not writable until the next transaction
 * commits. The database file or its WAL removed or replaced while the store
 * is open (checked about every 100 ms) makes it refuse every write
 * (SQLCACHED_UNAVAILABLE) until it is closed and opened again: writes
 * committed then would be lost at the next crash. Filled into
 * caller-owned memory; nothing to free. */
typedef struct sqlcached_health {
    int writable;                  /* 1: no reason known why a write would fail */
    int files_moved;               /* 1: a file was removed or replaced (latched) */
    sqlcached_status_t last_error; /* of the last failed write transaction since
                                    * open (kept after recovery); SQLCACHED_OK: none */
    int64_t last_error_at;         /* when, wall-clock epoch ms; 0 = never */
    char reason[512];              /* why it is not writable; "" when writable */
} sqlcached_health_t;

/* Fill *out with the store's health. Cannot fail. */
void sqlcached_health(sqlcached_t *db, sqlcached_health_t *out);

/* ------------------------------------------------------------------------
 * Flash sale (seckill)
 *
 * An item has a stock; an order takes one unit for one user, and a user
 * holds at most one order per item (one pending or paid order: see
 * "Payment deadline" below). Invariants, under any concurrency and across
 * crashes: stock + sold equals the stock the item was last reset to; the
 * number of the item's pending and paid orders equals sold; stock is never
 * negative.
 * Every change of an item (reset, order) takes the next store-wide version.
 *
 * Ids are NUL-terminated UTF-8 strings: item ids and user ids
 * 1..128 bytes, names 1..256 bytes (else SQLCACHED_INVALID_ARGUMENT).
 *
 * Once an item is seen sold out, later orders are refused from memory
 * without a write (a user who holds an order still gets
 * SQLCACHED_ALREADY_ORDERED, checked on a reader connection). That state is
 * a cache of the database, cleared by a reset and rebuilt after a restart
 * from the first refusal; it never decides anything the database would not.
 * ------------------------------------------------------------------------ */

#define SQLCACHED_ITEM_ID_MAX 128
#define SQLCACHED_ITEM_NAME_MAX 256
#define SQLCACHED_USER_ID_MAX 128
#define SQLCACHED_STOCK_MAX INT32_MAX
#define SQLCACHED_SECKILL_RETRIES_MAX 1000

typedef struct sqlcached_item {
    char id[SQLCACHED_ITEM_ID_MAX + 1];
    char name[SQLCACHED_ITEM_NAME_MAX + 1];
    int64_t stock;              /* units left, >= 0 */
    int64_t sold;               /* units sold since the last reset = its orders */
    int64_t initial_stock;      /* the stock of the last reset = stock + sold */
    int64_t version;            /* version of the last change */
    int from_cache;             /* 1 if served from the memory tier */
    int64_t payment_timeout_ms; /* 0 = orders final when placed (see
                                 * "Payment deadline" below) */
} sqlcached_item_t;

/* The state of an order (see "Payment deadline" below). */
typedef enum sqlcached_order_state {
    SQLCACHED_ORDER_PAID = 0, /* final: paid, or placed on an item without
                                * a payment timeout */
    SQLCACHED_ORDER_PENDING,  /* waiting for payment until pay_by */
    SQLCACHED_ORDER_CANCELLED /* cancelled; its unit went back to stock */
} sqlcached_order_state_t;

typedef struct sqlcached_order {
    int64_t order_id; /* store-wide, increasing, never reused */
    char item_id[SQLCACHED_ITEM_ID_MAX + 1];
    char user_id[SQLCACHED_USER_ID_MAX + 1];
    int64_t created_at; /* ms */
    sqlcached_order_state_t state;
    int64_t pay_by;     /* ms; 0 = none (placed without a payment timeout) */
    int64_t settled_at; /* ms: when it was paid or cancelled; 0 = not (yet) */
} sqlcached_order_t;

/* A page of orders from sqlcached_order_list(). Free with
 * sqlcached_orders_free(). */
typedef struct sqlcached_orders {
    size_t count;
    sqlcached_order_t *orders; /* count orders in order_id order */
    int has_more;              /* 1 if another page follows the last order */
} sqlcached_orders_t;

/* A page of items from sqlcached_item_list(). Free with
 * sqlcached_items_free(). */
typedef struct sqlcached_items {
    size_t count;
    sqlcached_item_t *items; /* count items in id byte order (from_cache 0) */
    int has_more;            /* 1 if another page follows the last item */
} sqlcached_items_t;

/* Counters since open (never reset): answers of sqlcached_order_place(). */
typedef struct sqlcached_seckill_stats {
    uint64_t orders;          /* orders placed (SQLCACHED_OK) */
    uint64_t sold_out;        /* refused SQLCACHED_SOLD_OUT ... */
    uint64_t sold_out_fast;   /* ... of which without a write (sold-out flag) */
    uint64_t already_ordered; /* refused SQLCACHED_ALREADY_ORDERED */
    uint64_t conflicts;       /* version strategy: retries exhausted,
                               * answered SQLCACHED_UNAVAILABLE */
    uint64_t retries;         /* version strategy: tries lost to a newer version */
} sqlcached_seckill_stats_t;

/* Create the item with `stock` units, or reset it: name and stock replaced,
 * sold = 0, every order of the item deleted, all in one transaction.
 * stock is 0..SQLCACHED_STOCK_MAX. On SQLCACHED_OK, *out (may be NULL)
 * holds the item as written and *created (may be NULL) is 1 if it was new. */
sqlcached_status_t sqlcached_item_put(sqlcached_t *db, const char *id, const char *name,
                                      int64_t stock, sqlcached_item_t *out, int *created);

/* Read an item into *out. Absent: SQLCACHED_NOT_FOUND. */
sqlcached_status_t sqlcached_item_get(sqlcached_t *db, const char *id, sqlcached_item_t *out);

/* The items whose id sorts strictly after `after` (NULL or "" = from the
 * first), in id byte order, at most `limit` (1..SQLCACHED_LIST_LIMIT_MAX),
 * read from SQLite on a reader connection (committed data; the memory tier
 * is not used). `after` need not be an existing id; if given it must be
 * valid UTF-8 of at most SQLCACHED_ITEM_ID_MAX bytes, else
 * SQLCACHED_INVALID_ARGUMENT, as for a limit out of range. On SQLCACHED_OK
 * *out is owned by the caller: sqlcached_items_free(). Out of memory:
 * SQLCACHED_NOMEM; no reader connection: SQLCACHED_UNAVAILABLE. */
sqlcached_status_t sqlcached_item_list(sqlcached_t *db, const char *after, unsigned limit,
                                       sqlcached_items_t **out);

/* Free a page from sqlcached_item_list(). NULL is allowed. */
void sqlcached_items_free(sqlcached_items_t *items);

/* Place user_id's order for the item (one write: insert the order, then
 * take a unit under the store's strategy). Returns:
 *   SQLCACHED_OK               the order exists; *out (may be NULL) holds it
 *   SQLCACHED_ALREADY_ORDERED  the user already holds an order for the item
 *                              (wins over sold out)
 *   SQLCACHED_SOLD_OUT         no stock left
 *   SQLCACHED_NOT_FOUND        no such item
 *   SQLCACHED_UNAVAILABLE      version strategy: every try met a newer
 *                              version (or the database was busy)
 * Anything but OK wrote nothing. */
sqlcached_status_t sqlcached_order_place(sqlcached_t *db, const char *item_id, const char *user_id,
                                         sqlcached_order_t *out);

/* Read user_id's order for the item. No such order (or item):
 * SQLCACHED_NOT_FOUND. */
sqlcached_status_t sqlcached_order_get(sqlcached_t *db, const char *item_id, const char *user_id,
                                       sqlcached_order_t *out);

/* The item's orders with order_id > after (0 = from the first), in order_id
 * order, at most `limit` (1..SQLCACHED_LIST_LIMIT_MAX). No such item:
 * SQLCACHED_NOT_FOUND. On SQLCACHED_OK *out is owned by the caller:
 * sqlcached_orders_free(). */
sqlcached_status_t sqlcached_order_list(sqlcached_t *db, const char *item_id, int64_t after,
                                        unsigned limit, sqlcached_orders_t **out);

/* Free a page from sqlcached_order_list(). NULL is allowed. */
void sqlcached_orders_free(sqlcached_orders_t *orders);

/* Copy the flash-sale counters into *out. Cannot fail. */
void sqlcached_seckill_stats(sqlcached_t *db, sqlcached_seckill_stats_t *out);

/* ------------------------------------------------------------------------
 * Flash sale: payment deadline
 *
 * An item put with a payment timeout (SQLCACHED_PAYMENT_TIMEOUT_MIN_MS..
 * SQLCACHED_PAYMENT_TIMEOUT_MAX_MS) takes orders as SQLCACHED_ORDER_PENDING
 * with pay_by = created_at + the timeout. An order still pending at pay_by
 * is cancelled by the store within 1 s (a timer on the earliest pay_by,
 * also right after a restart for deadlines that passed while closed, and
 * by any node of a cluster): its unit goes back to stock, exactly once.
 * A user whose order was cancelled may order again. Invariants: stock +
 * sold = the stock of the last reset; sold = the item's pending and paid
 * orders; a user holds at most one pending-or-paid order per item; a paid
 * order is never cancelled.
 * ------------------------------------------------------------------------ */

#define SQLCACHED_PAYMENT_TIMEOUT_MIN_MS 1000
#define SQLCACHED_PAYMENT_TIMEOUT_MAX_MS 86400000

/* sqlcached_item_put() with a payment timeout: 0 = orders final (as
 * sqlcached_item_put), else SQLCACHED_PAYMENT_TIMEOUT_MIN_MS..MAX_MS (other
 * values: SQLCACHED_INVALID_ARGUMENT). */
sqlcached_status_t sqlcached_item_put_payment(sqlcached_t *db, const char *id, const char *name,
                                              int64_t stock, int64_t payment_timeout_ms,
                                              sqlcached_item_t *out, int *created);

/* Pay user_id's order of the item. Returns:
 *   SQLCACHED_OK                 it is paid now (it was pending and its
 *                                pay_by had not passed), or was paid
 *                                already (unchanged); *out (may be NULL)
 *                                holds it
 *   SQLCACHED_ORDER_NOT_PENDING  it is cancelled (one whose pay_by passed
 *                                is cancelled by this call if the timer
 *                                has not done it yet)
 *   SQLCACHED_NOT_FOUND          the user holds no order of the item */
sqlcached_status_t sqlcached_order_pay(sqlcached_t *db, const char *item_id, const char *user_id,
                                       sqlcached_order_t *out);

/* Cancel user_id's pending order of the item: SQLCACHED_OK (*out, may be
 * NULL, holds it cancelled) and its unit goes back to stock in the same
 * write. Paid or cancelled: SQLCACHED_ORDER_NOT_PENDING; no order:
 * SQLCACHED_NOT_FOUND. */
sqlcached_status_t sqlcached_order_cancel(sqlcached_t *db, const char *item_id, const char *user_id,
                                          sqlcached_order_t *out);

/* Orders by state, store-wide (counted on a reader connection at most once
 * a second, so up to 1 s old; all 0 when it cannot be read), and this
 * process's deadline counters since open. */
typedef struct sqlcached_payment_stats {
    uint64_t pending, paid, cancelled; /* orders now in each state */
    uint64_t auto_cancelled;           /* orders this process cancelled at pay_by */
    uint64_t user_cancelled;           /* sqlcached_order_cancel() answered OK */
    uint64_t payments;                 /* sqlcached_order_pay() moved pending to paid */
} sqlcached_payment_stats_t;

/* Fill *out. Cannot fail. */
void sqlcached_payment_stats(sqlcached_t *db, sqlcached_payment_stats_t *out);

/* The name of an order state ("pending", "paid", "cancelled"), static. */
const char *sqlcached_order_state_name(sqlcached_order_state_t state);

/* ------------------------------------------------------------------------
 * Leases (distributed locks) with fencing tokens
 *
 * A lease name is 1..SQLCACHED_LEASE_NAME_MAX bytes and an owner
 * 1..SQLCACHED_LEASE_OWNER_MAX bytes, any bytes but NUL; ttl_ms is
 * SQLCACHED_LEASE_TTL_MIN_MS..SQLCACHED_LEASE_TTL_MAX_MS and wait_ms
 * 0..SQLCACHED_LEASE_WAIT_MAX_MS. Anything else: SQLCACHED_INVALID_ARGUMENT.
 *
 * A lease is live while now < expires_at; an expired lease is free for
 * every call. Each call is one atomic write (or read). Each time a lease
 * passes to a new holder it takes the next value of one persisted
 * store-wide counter as its fencing token, so tokens strictly increase
 * across names and restarts; re-entrant acquisitions and renewals keep the
 * token. Pass the token to the resource the lease protects (see
 * docs/leases.md).
 *
 * Waiting acquirers are served first come, first served: a lease that
 * becomes free goes to the oldest waiter on its name, never to a newcomer.
 * ------------------------------------------------------------------------ */

#define SQLCACHED_LEASE_NAME_MAX 256
#define SQLCACHED_LEASE_OWNER_MAX 128
#define SQLCACHED_LEASE_TTL_MIN_MS 100
#define SQLCACHED_LEASE_TTL_MAX_MS 3600000
#define SQLCACHED_LEASE_WAIT_MAX_MS 30000

/* A lease as stored. Filled by the calls below into caller-owned memory;
 * nothing to free. */
typedef struct sqlcached_lease {
    char name[SQLCACHED_LEASE_NAME_MAX + 1]; /* NUL-terminated */
    size_t name_len;
    char owner[SQLCACHED_LEASE_OWNER_MAX + 1]; /* NUL-terminated */
    size_t owner_len;
    int64_t token;      /* fencing token of this holding */
    int64_t count;      /* acquisitions not yet released (0 after the last release) */
    int64_t expires_at; /* ms */
} sqlcached_lease_t;

/* Acquire `name` for `owner` for ttl_ms.
 *   Free or expired: acquired with count 1 and a new token.
 *   Live and held by `owner`: re-entrant, count + 1, same token, expiry
 *     moved to now + ttl_ms.
 *   Held by another owner: waits up to wait_ms (blocking the calling
 *     thread) for it to be handed over, else SQLCACHED_LEASE_HELD.
 * On SQLCACHED_OK *out is the lease now held; on SQLCACHED_LEASE_HELD the
 * current holder's (retry after out->expires_at), or all zero if the lease
 * became free just as the wait ended. out may be NULL. */
sqlcached_status_t sqlcached_lease_acquire(sqlcached_t *db, const char *name, size_t name_len,
                                           const char *owner, size_t owner_len, int64_t ttl_ms,
                                           int64_t wait_ms, sqlcached_lease_t *out);

/* Extend a live lease held by `owner` to now + ttl_ms (count and token
 * unchanged); *out is the lease. Free, expired or held by another owner:
 * SQLCACHED_NOT_OWNER and nothing changes. out may be NULL. */
sqlcached_status_t sqlcached_lease_renew(sqlcached_t *db, const char *name, size_t name_len,
                                         const char *owner, size_t owner_len, int64_t ttl_ms,
                                         sqlcached_lease_t *out);

/* Release one acquisition of a live lease held by `owner`: count - 1; at 0
 * the lease is free (or handed to the first waiter). *out is the lease
 * with the remaining count. Free, expired or held by another owner:
 * SQLCACHED_NOT_OWNER. out may be NULL. */
sqlcached_status_t sqlcached_lease_release(sqlcached_t *db, const char *name, size_t name_len,
                                           const char *owner, size_t owner_len,
                                           sqlcached_lease_t *out);

/* Read a live lease into *out. Free or expired: SQLCACHED_NOT_FOUND. */
sqlcached_status_t sqlcached_lease_get(sqlcached_t *db, const char *name, size_t name_len,
                                       sqlcached_lease_t *out);

/* ------------------------------------------------------------------------
 * Sessions and one-time values (KV additions)
 *
 * Sliding expiry (sqlcached_put_options_t.sliding): the key expires no
 * earlier than ttl_ms after its last read (sqlcached_kv_get answering OK)
 * or write, and no later than ttl_ms + max(1000, ttl_ms / 10) after it. A
 * read that finds the persisted expiry short of now + ttl_ms queues one
 * extension to now + ttl_ms + max(1000, ttl_ms / 10) / 2 with the writer's
 * next batch and returns at once (reads of the same key meanwhile queue
 * nothing more); the memory tier keeps answering the key.
 * ------------------------------------------------------------------------ */

/* Deepest nesting of a merge patch ({} or [] is one level). */
#define SQLCACHED_PATCH_DEPTH_MAX 64

/* Read and delete a key in one write (a one-time code): on SQLCACHED_OK
 * *out is the deleted value (a new reference: sqlcached_value_release()),
 * with its content type and version. Preconditions and outcomes as for
 * sqlcached_kv_delete(); of concurrent takes of one key exactly one gets
 * SQLCACHED_OK, the others SQLCACHED_NOT_FOUND. */
sqlcached_status_t sqlcached_kv_take(sqlcached_t *db, const void *key, size_t klen,
                                     const sqlcached_preconditions_t *pre, sqlcached_value_t **out);

/* sqlcached_kv_take() without waiting for the commit, as
 * sqlcached_kv_delete_async(): *out is set before done(cls, SQLCACHED_OK);
 * key, pre and out are borrowed until done is called. */
sqlcached_status_t sqlcached_kv_take_async(sqlcached_t *db, const void *key, size_t klen,
                                           const sqlcached_preconditions_t *pre,
                                           sqlcached_value_t **out, sqlcached_done_fn done,
                                           void *cls);

/* Apply a JSON merge patch (RFC 7396; patch[0..plen) is JSON text nested at
 * most SQLCACHED_PATCH_DEPTH_MAX deep, else SQLCACHED_INVALID_ARGUMENT) to
 * the stored value, inside the write's transaction, so concurrent patches
 * of distinct members all survive. The stored value must be a JSON object
 * (else SQLCACHED_NOT_JSON); an absent key is patched from {} and created
 * (result->created). The result is stored as compact JSON with content
 * type application/json. opts may be NULL; its content_type is ignored;
 * its ttl_ms > 0 (and sliding) set the expiry as for a put, else the key
 * keeps its expiry (a sliding key slides). Preconditions as for a put. */
sqlcached_status_t sqlcached_kv_patch(sqlcached_t *db, const void *key, size_t klen,
                                      const void *patch, size_t plen,
                                      const sqlcached_put_options_t *opts,
                                      sqlcached_write_result_t *result);

/* sqlcached_kv_patch() without waiting for the commit, as
 * sqlcached_kv_put_async(). */
sqlcached_status_t sqlcached_kv_patch_async(sqlcached_t *db, const void *key, size_t klen,
                                            const void *patch, size_t plen,
                                            const sqlcached_put_options_t *opts,
                                            sqlcached_write_result_t *result,
                                            sqlcached_done_fn done, void *cls);

/* ------------------------------------------------------------------------
 * Transactions
 *
 * A transaction is a list of compares and two lists of operations: every
 * compare is evaluated, then the `success` operations run if all hold,
 * else the `failure` operations; all in one write of the group commit:
 * atomic (all or nothing is stored), isolated (no other write lands
 * between the compares and the operations), durable once answered, and
 * visible to every later read (memory tier included) before the answer.
 * Every write of a transaction takes a new version from the store-wide
 * counter; a get sees the writes of earlier operations of the same
 * transaction.
 *
 * Build one with sqlcached_txn_new() and the sqlcached_txn_compare_* and
 * sqlcached_txn_add_* calls (they copy their arguments), run it once with
 * sqlcached_txn_commit() or sqlcached_txn_commit_async(), read its
 * results, free it with sqlcached_txn_free(). At most SQLCACHED_TXN_MAX
 * compares and operations in all (the call that would add one more
 * answers SQLCACHED_INVALID_ARGUMENT). A txn is used by one thread at a
 * time.
 * ------------------------------------------------------------------------ */

#define SQLCACHED_TXN_MAX 128

typedef struct sqlcached_txn sqlcached_txn_t; /* opaque */

typedef enum sqlcached_txn_branch {
    SQLCACHED_TXN_SUCCESS = 0, /* run when every compare holds */
    SQLCACHED_TXN_FAILURE      /* run otherwise */
} sqlcached_txn_branch_t;

typedef enum sqlcached_txn_op {
    SQLCACHED_TXN_GET = 0,
    SQLCACHED_TXN_PUT,
    SQLCACHED_TXN_DELETE,
    SQLCACHED_TXN_INCR
} sqlcached_txn_op_t;

/* The result of one operation run, owned by the txn (valid until
 * sqlcached_txn_free or the next commit). */
typedef struct sqlcached_txn_result {
    sqlcached_txn_op_t op;
    const void *key;
    size_t klen;
    int found;         /* get: the key was live; delete: it was deleted */
    const void *value; /* get (found): the value bytes */
    size_t vlen;
    const char *content_type; /* get (found): NUL-terminated */
    int64_t version;          /* get (found), put, incr: the row's version */
    int64_t number;           /* incr: the value after the increment */
    int64_t expires_at;       /* get (found), put, incr: ms, 0 = never */
} sqlcached_txn_result_t;

/* A new, empty transaction into *out (free with sqlcached_txn_free).
 * SQLCACHED_NOMEM; then *out is NULL. */
sqlcached_status_t sqlcached_txn_new(sqlcached_txn_t **out);

/* Free a transaction and its results. NULL is allowed. Not while an
 * asynchronous commit of it is in flight. */
void sqlcached_txn_free(sqlcached_txn_t *txn);

/* Compare: the key's current version is `version` (0: the key is absent
 * or expired). version < 0 or a bad key: SQLCACHED_INVALID_ARGUMENT. */
sqlcached_status_t sqlcached_txn_compare_version(sqlcached_txn_t *txn, const void *key, size_t klen,
                                                 int64_t version);

/* Compare: the key is live (exists 1) or absent or expired (exists 0). */
sqlcached_status_t sqlcached_txn_compare_exists(sqlcached_txn_t *txn, const void *key, size_t klen,
                                                int exists);

/* Operations, appended to `branch`. put: content_type NULL =
 * "application/octet-stream" (1..SQLCACHED_CONTENT_TYPE_MAX printable
 * ASCII), ttl_ms 0 = no expiry, else 1..SQLCACHED_TTL_MAX_MS. incr: as
 * sqlcached_kv_incr (an absent key counts as 0; a value that is not a
 * base-10 64-bit integer, or an overflow, fails the whole transaction with
 * SQLCACHED_NOT_INTEGER). Bad arguments: SQLCACHED_INVALID_ARGUMENT, and
 * nothing is added. */
sqlcached_status_t sqlcached_txn_add_get(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                         const void *key, size_t klen);
sqlcached_status_t sqlcached_txn_add_put(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                         const void *key, size_t klen, const void *value,
                                         size_t vlen, const char *content_type, int64_t ttl_ms);
sqlcached_status_t sqlcached_txn_add_delete(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                            const void *key, size_t klen);
sqlcached_status_t sqlcached_txn_add_incr(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                          const void *key, size_t klen, int64_t by);

/* Run the transaction and wait for its commit. SQLCACHED_OK: it committed
 * (whichever branch ran: sqlcached_txn_succeeded); results are readable.
 * SQLCACHED_NOT_INTEGER: the operation sqlcached_txn_failed_op() names
 * failed and nothing was stored. Any other status: nothing was stored.
 * A txn runs once: a second commit is SQLCACHED_INVALID_ARGUMENT. */
sqlcached_status_t sqlcached_txn_commit(sqlcached_t *db, sqlcached_txn_t *txn);

/* sqlcached_txn_commit() without waiting, as sqlcached_kv_put_async():
 * SQLCACHED_OK means done(cls, status) is called exactly once, after the
 * commit and after every write is visible to every later read; txn is
 * borrowed until then (read its results in done or after it). Any other
 * return: nothing was queued and done is never called. */
sqlcached_status_t sqlcached_txn_commit_async(sqlcached_t *db, sqlcached_txn_t *txn,
                                              sqlcached_done_fn done, void *cls);

/* After a commit: 1 if every compare held (the success operations ran),
 * 0 if the failure operations ran. */
int sqlcached_txn_succeeded(const sqlcached_txn_t *txn);

/* After a commit: how many results (one per operation of the branch run),
 * and result i (0-based; NULL when out of range). */
size_t sqlcached_txn_result_count(const sqlcached_txn_t *txn);
const sqlcached_txn_result_t *sqlcached_txn_result(const sqlcached_txn_t *txn, size_t i);

/* After SQLCACHED_NOT_INTEGER: the index of the failing operation within
 * the branch that ran (-1 otherwise). */
int sqlcached_txn_failed_op(const sqlcached_txn_t *txn);

/* ------------------------------------------------------------------------
 * Delay queue
 *
 * Durable jobs that become due at a time, claimed by workers with a
 * visibility timeout: at-least-once delivery, never lost once enqueued,
 * never held by two workers at once (see docs/queues.md).
 *
 * A queue name is 1..SQLCACHED_QUEUE_NAME_MAX bytes, a job id and a worker
 * 1..SQLCACHED_JOB_ID_MAX bytes, any bytes but NUL; a payload is
 * 1..SQLCACHED_JOB_PAYLOAD_MAX bytes without NUL (the HTTP API stores JSON
 * text). delay_ms is 0..SQLCACHED_QUEUE_DELAY_MAX_MS, visibility_ms
 * SQLCACHED_QUEUE_VISIBILITY_MIN_MS..SQLCACHED_QUEUE_VISIBILITY_MAX_MS,
 * wait_ms 0..SQLCACHED_QUEUE_WAIT_MAX_MS, max 1..SQLCACHED_QUEUE_CLAIM_MAX.
 * Anything else: SQLCACHED_INVALID_ARGUMENT.
 *
 * A job is delayed until its run_at, then ready (due). A claim takes up to
 * max due jobs of a queue, earliest run_at first: each gets a new
 * claim_token (strictly increasing store-wide, persisted, never repeated:
 * like fencing tokens), attempts + 1, and is claimed until now +
 * visibility_ms; its run_at becomes that time. A claim not acked or
 * nacked by then makes the job due again (a later claim gets a larger
 * token). Ack removes the job; nack makes it due after delay_ms; both
 * only under the job's current live claim (else SQLCACHED_CLAIM_EXPIRED,
 * or SQLCACHED_NOT_FOUND when there is no such job).
 * ------------------------------------------------------------------------ */

#define SQLCACHED_QUEUE_NAME_MAX 256
#define SQLCACHED_JOB_ID_MAX 128
#define SQLCACHED_JOB_PAYLOAD_MAX (64 * 1024 * 1024)
#define SQLCACHED_QUEUE_DELAY_MAX_MS 2592000000LL /* 30 days */
#define SQLCACHED_QUEUE_VISIBILITY_MIN_MS 100
#define SQLCACHED_QUEUE_VISIBILITY_MAX_MS 3600000
#define SQLCACHED_QUEUE_WAIT_MAX_MS 30000
#define SQLCACHED_QUEUE_CLAIM_MAX 100

typedef enum sqlcached_job_state {
    SQLCACHED_JOB_DELAYED = 0, /* not due before run_at */
    SQLCACHED_JOB_READY,       /* due: the next claim may take it */
    SQLCACHED_JOB_CLAIMED      /* claimed until run_at */
} sqlcached_job_state_t;

/* A job. Filled by the calls below; its payload is owned by the job:
 * sqlcached_job_clear() frees it (a job inside sqlcached_jobs_t is freed
 * with the list). */
typedef struct sqlcached_job {
    char queue[SQLCACHED_QUEUE_NAME_MAX + 1]; /* NUL-terminated */
    size_t queue_len;
    char id[SQLCACHED_JOB_ID_MAX + 1]; /* NUL-terminated */
    size_t id_len;
    char *payload; /* NUL-terminated, owned */
    size_t payload_len;
    sqlcached_job_state_t state;
    int64_t run_at;      /* due at (claimed: the claim's end), epoch ms */
    int64_t attempts;    /* claims so far */
    int64_t claim_token; /* the last claim's token, 0 = never claimed */
} sqlcached_job_t;

/* Free a job's payload (the struct itself is the caller's). NULL allowed. */
void sqlcached_job_clear(sqlcached_job_t *job);

/* Jobs handed out by a claim: free with sqlcached_jobs_free(). */
typedef struct sqlcached_jobs {
    size_t count;
    sqlcached_job_t jobs[]; /* count of them, earliest run_at first */
} sqlcached_jobs_t;

void sqlcached_jobs_free(sqlcached_jobs_t *jobs);

/* Counts of a queue's jobs by state. */
typedef struct sqlcached_queue_counts {
    uint64_t delayed, ready, claimed;
} sqlcached_queue_counts_t;

/* Enqueue a job due after delay_ms. id NULL (id_len 0): the store makes a
 * unique id. A given id makes the call idempotent: when (queue, id)
 * exists, nothing changes, *created is 0 and *out is the existing job.
 * out (its payload then the caller's: sqlcached_job_clear) and created
 * may be NULL. */
sqlcached_status_t sqlcached_queue_enqueue(sqlcached_t *db, const char *queue, size_t queue_len,
                                           const char *id, size_t id_len, const char *payload,
                                           size_t payload_len, int64_t delay_ms,
                                           sqlcached_job_t *out, int *created);

/* Claim up to max due jobs for worker. With wait_ms > 0 and nothing due,
 * waits (without a thread per waiter: the calling thread sleeps) until a
 * job becomes due or is enqueued (on any node of a cluster), or wait_ms
 * passes. On SQLCACHED_OK *out holds 0..max jobs: the caller frees it with
 * sqlcached_jobs_free(). */
sqlcached_status_t sqlcached_queue_claim(sqlcached_t *db, const char *queue, size_t queue_len,
                                         const char *worker, size_t worker_len,
                                         int64_t visibility_ms, int64_t wait_ms, unsigned max,
                                         sqlcached_jobs_t **out);

/* sqlcached_queue_claim() without blocking the calling thread: returns at
 * once; SQLCACHED_OK means done(cls, status) is called exactly once, on a
 * library thread, when the claim has answered (at the latest wait_ms
 * later), with *out set as for the synchronous call when status is
 * SQLCACHED_OK (else *out is NULL). queue and worker are copied; out is
 * borrowed until done is called. Any other return: nothing was started and
 * done is never called. */
sqlcached_status_t sqlcached_queue_claim_async(sqlcached_t *db, const char *queue, size_t queue_len,
                                               const char *worker, size_t worker_len,
                                               int64_t visibility_ms, int64_t wait_ms, unsigned max,
                                               sqlcached_jobs_t **out, sqlcached_done_fn done,
                                               void *cls);

/* Ack: the job is done and removed. SQLCACHED_CLAIM_EXPIRED when
 * claim_token is not the job's current live claim, SQLCACHED_NOT_FOUND when
 * there is no such job. */
sqlcached_status_t sqlcached_queue_ack(sqlcached_t *db, const char *queue, size_t queue_len,
                                       const char *id, size_t id_len, int64_t claim_token);

/* Nack: the claim ends and the job is due again after delay_ms. Statuses
 * as sqlcached_queue_ack(). */
sqlcached_status_t sqlcached_queue_nack(sqlcached_t *db, const char *queue, size_t queue_len,
                                        const char *id, size_t id_len, int64_t claim_token,
                                        int64_t delay_ms);

/* Cancel (delete) a job in any state; SQLCACHED_NOT_FOUND when absent. */
sqlcached_status_t sqlcached_queue_cancel(sqlcached_t *db, const char *queue, size_t queue_len,
                                          const char *id, size_t id_len);

/* Read a job into *out (its payload then the caller's:
 * sqlcached_job_clear). SQLCACHED_NOT_FOUND when absent. */
sqlcached_status_t sqlcached_queue_get(sqlcached_t *db, const char *queue, size_t queue_len,
                                       const char *id, size_t id_len, sqlcached_job_t *out);

/* Counts of the queue's jobs by state now (queue NULL: of every queue). */
sqlcached_status_t sqlcached_queue_counts(sqlcached_t *db, const char *queue, size_t queue_len,
                                          sqlcached_queue_counts_t *out);

/* Queue figures for metrics, since open on this node: by queue (the first
 * SQLCACHED_QUEUE_STATS_MAX queues seen by name; every later one is added
 * up under the name "_other"). expired_claims: jobs claimed again after a
 * claim that ended unacked. */
#define SQLCACHED_QUEUE_STATS_MAX 16
typedef struct sqlcached_queue_stat {
    char queue[SQLCACHED_QUEUE_NAME_MAX + 1];
    uint64_t enqueued, claimed, acked, expired_claims;
} sqlcached_queue_stat_t;

typedef struct sqlcached_queue_stats {
    size_t count; /* entries used in by_queue */
    sqlcached_queue_stat_t by_queue[SQLCACHED_QUEUE_STATS_MAX + 1];
    uint64_t waiters; /* claims parked now, waiting for a job */
} sqlcached_queue_stats_t;

/* Fill out with the figures above. Cannot fail. */
void sqlcached_queue_stats(sqlcached_t *db, sqlcached_queue_stats_t *out);

/* ------------------------------------------------------------------------
 * Asynchronous lease acquire, policy names and the library's log level
 * ------------------------------------------------------------------------ */

/* A queued asynchronous acquire (sqlcached_lease_acquire_async). */
typedef struct sqlcached_lease_wait sqlcached_lease_wait_t;

/* sqlcached_lease_acquire() without blocking the calling thread, in the
 * idiom of the kv *_async calls (sqlcached_done_fn). name and owner are
 * copied; out is filled before this returns. *wait is NULL unless queued:
 *   SQLCACHED_OK, *wait NULL: acquired; *out is the lease.
 *   SQLCACHED_OK, *wait set: held by another owner and queued (wait_ms >
 *     0 only); *out is the holder's lease. done(cls, status) is called
 *     once, on a library thread, when the outcome is known (it must be
 *     quick and must not call the lease calls), unless
 *     sqlcached_lease_wait_end() is called first. In every case collect
 *     the outcome with sqlcached_lease_wait_end(), which frees the wait.
 *   SQLCACHED_LEASE_HELD (wait_ms == 0): *out is the holder's lease.
 *   any other status: nothing was queued; done is never called. */
sqlcached_status_t sqlcached_lease_acquire_async(sqlcached_t *db, const char *name, size_t name_len,
                                                 const char *owner, size_t owner_len,
                                                 int64_t ttl_ms, int64_t wait_ms,
                                                 sqlcached_lease_t *out, sqlcached_done_fn done,
                                                 void *cls, sqlcached_lease_wait_t **wait);

/* Collect the outcome of a queued acquire and free it. Still queued: it is
 * cancelled (SQLCACHED_LEASE_HELD); a grant in progress is waited for
 * (briefly). On return done is not running and never will. Returns
 * SQLCACHED_OK (granted, *out the lease), SQLCACHED_LEASE_HELD (*out the
 * current holder, all zero when the lease is free by now) or
 * SQLCACHED_UNAVAILABLE (the store closed). out may be NULL. */
sqlcached_status_t sqlcached_lease_wait_end(sqlcached_lease_wait_t *wait, sqlcached_lease_t *out);

/* Give back one acquisition of the holding *lease (name, owner and token as
 * granted: a lease granted to a caller that is gone), handing the lease on
 * like a release. Expired, or changed hands since: SQLCACHED_NOT_OWNER and
 * nothing happens. */
sqlcached_status_t sqlcached_lease_give_back(sqlcached_t *db, const sqlcached_lease_t *lease);

/* 1 if name is an eviction policy sqlcached_options_t.cache_policy takes
 * ("allkeys-lfu", "allkeys-lru", ...), else 0. */
int sqlcached_policy_valid(const char *name);

/* How much the library logs on stderr; process-wide, default INFO. */
typedef enum sqlcached_log_level {
    SQLCACHED_LOG_ERROR = 0,
    SQLCACHED_LOG_WARN,
    SQLCACHED_LOG_INFO,
    SQLCACHED_LOG_DEBUG
} sqlcached_log_level_t;

void sqlcached_set_log_level(sqlcached_log_level_t level);

/* ------------------------------------------------------------------------
 * Watch: the change log and its readers (docs/watch.md)
 *
 * Every committed KV change (put, delete, incr, merge patch, take,
 * transaction writes, and the purge of an expired key, which takes a
 * version of its own) is recorded with its version in the transaction of
 * the change. A watch reads the changes of keys that start with a prefix,
 * in version order, each once, from its own cursor; on a shared database
 * (a cluster) it sees every node's changes.
 * ------------------------------------------------------------------------ */
#define SQLCACHED_WATCH_HISTORY_DEFAULT 100000
#define SQLCACHED_WATCH_HISTORY_MIN 10
#define SQLCACHED_MAX_WATCHERS_DEFAULT 1000
/* wake() comes at least this often while nothing happens (keep-alives) */
#define SQLCACHED_WATCH_KEEPALIVE_MS 10000

typedef enum sqlcached_change_kind {
    SQLCACHED_CHANGE_PUT = 'p',    /* the key has a (new) value */
    SQLCACHED_CHANGE_DELETE = 'd', /* deleted (DELETE, read-and-delete, txn) */
    SQLCACHED_CHANGE_EXPIRE = 'x'  /* expired, removed by the purge */
} sqlcached_change_kind_t;

typedef struct sqlcached_change {
    int64_t version;
    int64_t expires_at; /* after the change; 0 = never, or no value */
    char kind;          /* sqlcached_change_kind_t */
    size_t key_len;
    char key[SQLCACHED_KEY_MAX + 1]; /* a copy, NUL-terminated */
} sqlcached_change_t;

typedef struct sqlcached_watch sqlcached_watch_t;

/* Called on a library thread when a watch may have changes to read, at
 * its deadline, and at least every SQLCACHED_WATCH_KEEPALIVE_MS. Must be
 * quick and must not call the watch functions. */
typedef void (*sqlcached_wake_fn)(void *cls);

/* Open a watch on the keys starting with prefix (plen 0: every key), for
 * the changes with a version greater than since (since < 0: those that
 * commit from now on). wait_ms > 0: a deadline that far ahead, when wake
 * comes once more and sqlcached_watch_timed_out() turns true. *out is
 * freed by sqlcached_watch_close(). Status: OK; HISTORY_TRUNCATED: changes
 * after since are no longer all kept, *oldest (may be NULL) is the oldest
 * version still kept (or the next one to come); UNAVAILABLE:
 * max_watchers are open already, or the store cannot be read. */
sqlcached_status_t sqlcached_watch_open(sqlcached_t *db, const void *prefix, size_t plen,
                                        int64_t since, int64_t wait_ms, sqlcached_wake_fn wake,
                                        void *cls, sqlcached_watch_t **out, int64_t *oldest);

/* Up to max changes after the watch's cursor, in version order, into
 * out[0..*n); the cursor moves past them (and past changes of other keys
 * read on the way). *n 0: none for now (wake comes when there may be).
 * HISTORY_TRUNCATED: the cursor fell out of the history (a reader slower
 * than --watch-history changes): the watch is over. Any thread, one at a
 * time per watch. */
sqlcached_status_t sqlcached_watch_next(sqlcached_watch_t *w, sqlcached_change_t *out, size_t max,
                                        size_t *n);

/* The version the watch has read up to. */
int64_t sqlcached_watch_cursor(const sqlcached_watch_t *w);

/* 1 once the deadline given to sqlcached_watch_open has passed, else 0. */
int sqlcached_watch_timed_out(const sqlcached_watch_t *w);

/* Close and free; once it returns wake is not running and never will.
 * NULL is allowed. */
void sqlcached_watch_close(sqlcached_watch_t *w);

typedef struct sqlcached_watch_stats {
    uint64_t watchers;      /* watches open now */
    uint64_t events_sent;   /* changes handed out by sqlcached_watch_next */
    uint64_t truncated;     /* HISTORY_TRUNCATED answers */
    int64_t history_size;   /* changes kept (as of the last trim) */
    int64_t history_oldest; /* the oldest version kept, 0 = none */
    int64_t history_newest; /* the newest version read from the log */
} sqlcached_watch_stats_t;

/* Fill out. Cannot fail. */
void sqlcached_watch_stats(sqlcached_t *db, sqlcached_watch_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* SQLCACHED_H */
