/*
 * store.h - the source of truth as the domain modules use it: group-
 * committed writes, pooled readers, counters; over a backend (SQLite or
 * PostgreSQL, chosen by the path: see storage.h).
 *
 * One writer connection is owned by a writer thread. Callers hand it a write
 * function through store_write(); the thread runs every write queued at that
 * moment in one transaction (group commit), each inside its own SAVEPOINT so
 * a write that fails its condition is rolled back without touching its
 * neighbours, then commits once and wakes the callers. store_write() returns
 * only after the commit is durable (per the durability mode).
 *
 * Reads run on reader connections from a pool: a thread acquires one, runs
 * its statements, releases it. The pool grows to the number of threads that
 * read at once (one reader per worker thread).
 *
 * Rows are read and written through the operations of the storage seam
 * (storage.h) on the connection a write function or a reader is given;
 * each backend prepares its statements once per connection, from static
 * text only: never SQL built from input.
 */
#ifndef SQLCACHED_STORE_H
#define SQLCACHED_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "sqlcached.h"

typedef struct store store_t;
typedef struct store_conn store_conn_t;

typedef struct store_config {
    const char *path; /* a SQLite file, or a postgresql:// URL */
    sqlcached_durability_t durability;
    int busy_timeout_ms;
    unsigned max_batch;
    unsigned max_pages;  /* tests only: PRAGMA max_page_count; 0 = none */
    size_t writer_cache; /* page cache of the writer, bytes; 0 = 64 MiB */
    size_t reader_cache; /* page cache of each reader, bytes; 0 = 2000 KiB */
    /* A shared database (PostgreSQL): a writer session that sits inside a
     * transaction this long (its process paused) is ended by the server,
     * so the locks it holds stop blocking the other nodes; 0 = never. */
    int idle_tx_timeout_ms;
} store_config_t;

/* A write run by the writer thread inside a transaction and a savepoint.
 * Return SQLCACHED_OK to keep its changes; any other status rolls back this
 * write only and is returned by store_write(). */
typedef sqlcached_status_t (*store_write_fn)(store_conn_t *w, void *arg);

typedef struct store_stats {
    uint64_t write_transactions; /* committed transactions */
    uint64_t writes_committed;   /* writes inside them (rows per txn = ratio) */
    uint64_t write_errors;       /* transactions that failed to begin or commit */
} store_stats_t;

/* Open or create the database, set WAL and the durability mode, apply the
 * pending migrations, start the writer thread. NULL on failure with a
 * message in err. */
store_t *store_open(const store_config_t *cfg, char *err, size_t errlen);

/* Drain and stop the writer, close every connection. NULL is allowed. */
void store_close(store_t *s);

/* Set the stop deadline, timeout_ms from now (CLOCK_MONOTONIC): from then
 * on the writer starts no write. A batch still waiting for a lock held by
 * another connection gives up, and every write queued then or later fails
 * SQLCACHED_UNAVAILABLE without running (store_write returns it, on_done
 * gets it), so nothing of it is ever stored. Writes committed before the
 * deadline are unaffected. Returns at once; cannot fail. A later call can
 * only bring the deadline nearer. */
void store_drain(store_t *s, unsigned timeout_ms);

/* Run fn(w, arg) in the next group transaction and wait for its commit.
 * Returns fn's status, or the error that prevented the commit (then nothing
 * of fn's work is stored). */
sqlcached_status_t store_write(store_t *s, store_write_fn fn, void *arg);

/* Called by the writer thread right after the commit of a write whose fn
 * returned SQLCACHED_OK, before the writer answers any write of this batch
 * or starts the next one. Must not block on the store. */
typedef void (*store_commit_fn)(void *arg);

/* store_write(), plus on_commit(arg) run as above. This is where a write
 * makes itself visible to the read path (memory-tier invalidation): done
 * there, no later write can observe the new state (say, answer 404 to a
 * DELETE) while the memory tier still serves the old one. */
sqlcached_status_t store_write_then(store_t *s, store_write_fn fn, store_commit_fn on_commit,
                                    void *arg);

/* Called by the writer thread once an asynchronous write has committed
 * (status SQLCACHED_OK) or failed. It must not block for long: the next
 * batch waits for it. */
typedef void (*store_done_fn)(void *cls, sqlcached_status_t status);

/* Queue fn(w, arg) for the next group transaction and return at once.
 * SQLCACHED_OK: on_commit(arg) (may be NULL) runs as for store_write_then,
 * then on_done(cls, status) is called exactly once, on the writer thread,
 * after the commit (status as store_write() would return it) and after the
 * on_commit hooks of the whole batch; arg must stay valid until then. Any
 * other status (no memory, stopping, past the store_drain deadline):
 * nothing was queued and neither is called. */
sqlcached_status_t store_write_async(store_t *s, store_write_fn fn, store_commit_fn on_commit,
                                     void *arg, store_done_fn on_done, void *cls);

/* Take the next value of the persisted store-wide counter `name` (a row of
 * the meta table), inside a write. */
sqlcached_status_t store_counter_next(store_conn_t *w, const char *name, int64_t *out);

/* Borrow a reader connection (NULL when none can be opened); give it back
 * with store_reader_release(). */
store_conn_t *store_reader_acquire(store_t *s);
void store_reader_release(store_t *s, store_conn_t *c);

void store_stats(store_t *s, store_stats_t *out);

/* Whether the store can write, and why not (see sqlcached_health()).
 * Cannot fail. */
void store_health(store_t *s, sqlcached_health_t *out);

/* Run the backend's check of its storage (SQLite: compare the database file
 * and its -wal with the files the store opened, st_dev and st_ino). If it
 * fails (SQLite: either was removed or replaced), log an error once and
 * refuse every later write (SQLCACHED_UNAVAILABLE) until the store is
 * closed. Returns true when this call saw it happen (once per store).
 * Any thread. */
bool store_check_files(store_t *s);

/* The stop deadline set by store_drain() (CLOCK_MONOTONIC ms), 0 = none:
 * a backend waiting for a lock gives up at it. */
int64_t store_deadline_ms(store_t *s);

/* The backend's name ("sqlite", "postgresql"), static. */
const char *store_backend_name(const store_t *s);

/* Embedded migrations (generated from sql/ at build time). */
/* ------------------------------------------------------------------------
 * Hooks of the writer's transactions (the cluster, cluster.c). All run on
 * the writer thread.
 * ------------------------------------------------------------------------ */
typedef struct store_hooks {
    /* Inside a write: it changes `key` of `kind` (a domain's letter). */
    void (*note)(void *cls, char kind, const void *key, size_t len, int64_t version);
    /* After the batch's writes, before its COMMIT (w in the transaction):
     * a failure fails the whole batch. */
    sqlcached_status_t (*before_commit)(void *cls, store_conn_t *w);
    /* Around the on_commit hooks of a committed batch. */
    void (*on_commit_begin)(void *cls);
    void (*on_commit_end)(void *cls);
    /* After the commit (and the on_commit hooks), before any answer
     * (committed false: the batch failed; forget its notes). A failure
     * turns the answers of a committed batch into that status. */
    sqlcached_status_t (*after_commit)(void *cls, store_conn_t *w, bool committed);
} store_hooks_t;

/* Install hooks (borrowed, with cls) before the first write; NULL = none. */
void store_set_hooks(store_t *s, const store_hooks_t *hooks, void *cls);

/* Inside a write function: tell the hooks what the write changes (nothing
 * without hooks). */
void store_note(store_conn_t *w, char kind, const void *key, size_t len, int64_t version);

/* A connection of its own for the cluster link (storage.h, "Cluster"),
 * closed with store_link_close(); NULL with a message when the backend
 * has no cluster (SQLite) or the connection failed. */
store_conn_t *store_link_open(store_t *s, char *err, size_t errlen);
void store_link_close(store_t *s, store_conn_t *l);

typedef struct store_migration {
    int version;
    const char *name;
    const char *sql;
} store_migration_t;
extern const store_migration_t store_migrations[];
extern const int store_migration_count;

#endif
