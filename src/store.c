/*
 * store.c - SQLite connections, migrations and group commit (see store.h).
 *
 * Data structures:
 *   - store_conn_t: one sqlite3 handle plus a small cache of prepared
 *     statements keyed by the address of their static SQL text.
 *   - the writer: one connection owned by writer_main(); a FIFO of
 *     write_job_t that callers push (each job lives on its caller's stack
 *     until the job is marked done).
 *   - the reader pool: a free list of reader connections.
 *
 * Locking: `lock` guards the job queue and the stop flag; each job has its
 * own condition variable on which its caller waits. `pool_lock` guards the
 * reader free list. The writer connection is touched only by the writer
 * thread (and by store_open/store_close when the thread is not running).
 *
 * Group commit: the writer takes every job queued (up to max_batch), opens
 * one transaction, runs each job inside SAVEPOINT w, commits once, runs the
 * on_commit hook of each job that succeeded, then wakes the callers that
 * wait (store_write) and calls the completion callbacks of the others
 * (store_write_async, whose jobs are heap-allocated and freed by the writer
 * after their callback). If SQLite drops the transaction mid-batch
 * (SQLITE_FULL can do that), or the commit fails, every job of the batch
 * reports the error: nothing half-written is ever acknowledged.
 *
 * Health: every write transaction that fails records its error and the
 * time (under health_lock); the next commit that changed a row clears it
 * (one that changed nothing proves nothing: it writes no page). The identity
 * (st_dev, st_ino) of the database file and of its -wal, taken at open, is
 * compared with what the paths name now by store_check_files() (the
 * maintenance thread, every tick): a file removed or replaced under the
 * store means every later commit would go to a file nobody will read
 * again, so from then on every batch is refused (SQLCACHED_UNAVAILABLE)
 * until the store is reopened, and the writer checkpoints once, copying
 * the acknowledged writes from the WAL it still holds open into the
 * database file it still holds open.
 *
 * Locks held by other connections: the writer waits for them with its own
 * busy handler (on_writer_busy: SQLite's steps, busy_timeout_ms at most),
 * not sqlite3_busy_timeout(), so that the stop deadline can cut the wait.
 *
 * Stopping (store_drain): from the deadline on, the writer never starts a
 * job. A batch waiting for a lock gives up (every job fails UNAVAILABLE);
 * jobs still queued, or queued later, fail UNAVAILABLE without running;
 * their callers are told exactly as for any failed write, so a caller
 * learns every outcome from the writer and never has to guess: a job that
 * reported a failure was not stored and will not be. A batch that began
 * before the deadline runs to its commit.
 */
#include "storage_sqlite.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"

/* ------------------------------------------------------------------------
 * SQLite settings (measured with bench/compare; see docs/performance.md)
 *
 * cache_size, writer: 64 MiB of page cache by default (SQLite's default is
 *   2000 KiB), so the B-tree pages that writes touch stay in memory between
 *   transactions instead of being read again with pread(). Readers keep
 *   SQLite's default. Both are settable (store_config_t; the daemon's
 *   --sqlite-cache). Negative = KiB, as in SQLite.
 * wal_autocheckpoint, writer: SQLite's default, a checkpoint every 1000
 *   pages of WAL (about 4 MiB). The writer runs the checkpoint inside a
 *   commit, and no write of the group is answered until it is done: every
 *   PUT parked meanwhile waits for it, and at 64 connections soon every
 *   connection is a parked PUT. 10000 pages made each checkpoint ten times
 *   longer for no measurable throughput: PUT p99 25 ms against 5 ms, the
 *   90/10 mix with durability normal 40-55 ms against 13 ms (bench A/B,
 *   same requests/s within noise). A reader pays one hash lookup per page
 *   in the WAL either way.
 * mmap_size stays 0 (SQLite's default): a reader that finds the database
 *   changed by a commit drops its whole mapping (munmap, then a page fault
 *   per page touched again), so with a write every few milliseconds mmap
 *   made a 90/10 GET/PUT mix 15% slower than pread() into the page cache.
 * ------------------------------------------------------------------------ */

#define WRITER_CACHE_DEFAULT ((size_t)64 << 20)
#define READER_CACHE_DEFAULT ((size_t)2000 << 10) /* SQLite's own default */
static const char SQL_WAL_AUTOCHECKPOINT[] = "PRAGMA wal_autocheckpoint = 1000";

/* ------------------------------------------------------------------------
 * Connections and their statement cache
 * ------------------------------------------------------------------------ */

typedef struct cached_stmt {
    const char *sql;
    sqlite3_stmt *stmt;
} cached_stmt_t;

/* A persisted counter as the writer holds it between its transactions. */
typedef struct counter {
    char name[32];
    int64_t value; /* the last value handed out */
    bool dirty;    /* value is ahead of the meta row in this transaction */
} counter_t;

#define MAX_COUNTERS 8

struct store_conn {
    sqlite3 *db;
    cached_stmt_t *stmts;
    size_t nstmts, capstmts;
    counter_t counters[MAX_COUNTERS]; /* writer only: see store_counter_next */
    int ncounters;
    int64_t data_version; /* writer only: PRAGMA data_version at the last check */
    store_conn_t *next_free; /* reader pool link */
    store_conn_t *next_all;  /* every reader, for closing */
};

typedef struct write_job {
    store_write_fn fn;
    store_commit_fn on_commit; /* may be NULL */
    void *arg;
    sqlcached_status_t status;
    bool done;
    pthread_cond_t cond;   /* store_write: the caller waits on it */
    store_done_fn on_done; /* store_write_async: called, then the job freed */
    void *done_cls;
    struct write_job *next;
} write_job_t;

/* Which file a path named when the store opened it. */
typedef struct file_id {
    bool known;
    dev_t dev;
    ino_t ino;
} file_id_t;

/* What the store knows about its ability to write (under health_lock). */
typedef struct health {
    bool failing;                  /* the last write transaction failed */
    sqlcached_status_t last_error; /* of the last failed transaction */
    int64_t last_error_at;         /* wall clock, ms; 0 = never */
    char error[160];               /* its message */
    bool moved;                    /* a file was removed or replaced: latched */
    bool rescued;                  /* the writer has checkpointed since */
    char moved_reason[400];
} health_t;

struct store {
    store_config_t cfg;
    char *path;
    char *wal_path;
    store_conn_t *writer;
    file_id_t db_id, wal_id; /* taken at open */
    pthread_mutex_t health_lock;
    health_t health;

    pthread_t writer_thread;
    bool writer_started;
    pthread_mutex_t lock;
    pthread_cond_t queue_cond;
    write_job_t *head, *tail;
    bool stopping;
    store_stats_t stats; /* under lock */
    _Atomic int64_t deadline_ms; /* store_drain: CLOCK_MONOTONIC ms, 0 = none */
    int64_t busy_since_ms;       /* writer thread: start of the current lock wait */

    pthread_mutex_t pool_lock;
    store_conn_t *free_readers;
    store_conn_t *all_readers;
};

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_SAVEPOINT[] = "SAVEPOINT w";
static const char SQL_RELEASE[] = "RELEASE w";
static const char SQL_ROLLBACK_TO[] = "ROLLBACK TO w";
static const char SQL_COUNTER_NEXT[] =
    "UPDATE meta SET value = value + 1 WHERE name = ?1 RETURNING value";
static const char SQL_COUNTER_GET[] = "SELECT value FROM meta WHERE name = ?1";
static const char SQL_COUNTER_SET[] = "UPDATE meta SET value = ?2 WHERE name = ?1";
static const char SQL_DATA_VERSION[] = "PRAGMA data_version";

/* The one mapping from SQLite result codes (extended or not) to statuses:
 *   - SQLITE_FULL: the disk or the database (max_page_count) is full;
 *   - the storage cannot be used now, through no fault of the request:
 *     another process holds the lock past the busy timeout (BUSY, LOCKED),
 *     I/O errors (IOERR_*, which is what a file system remounted read-only
 *     or a failing disk gives), a read-only file or file system
 *     (READONLY_*), a file that cannot be opened (CANTOPEN_*), the WAL
 *     locking protocol (PROTOCOL): UNAVAILABLE (503, retry later);
 *   - no memory (NOMEM, IOERR_NOMEM): NOMEM;
 *   - everything else, a corrupt database (CORRUPT, NOTADB) included, is a
 *     bug or damage nobody can retry away: INTERNAL. */
sqlcached_status_t store_status(int rc)
{
    if (rc == SQLITE_IOERR_NOMEM)
        return SQLCACHED_NOMEM;
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return SQLCACHED_OK;
    case SQLITE_FULL:
        return SQLCACHED_STORAGE_FULL;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
        return SQLCACHED_UNAVAILABLE;
    case SQLITE_NOMEM:
        return SQLCACHED_NOMEM;
    default:
        return SQLCACHED_INTERNAL;
    }
}

int store_bind_bytes(sqlite3_stmt *st, int idx, const void *p, size_t n)
{
    /* sqlite3_bind_blob(NULL, 0) would bind NULL, not an empty blob. */
    if (n == 0)
        return sqlite3_bind_zeroblob(st, idx, 0);
    return sqlite3_bind_blob(st, idx, p, (int)n, SQLITE_TRANSIENT);
}

sqlite3 *store_conn_db(store_conn_t *c)
{
    return c->db;
}

sqlite3_stmt *store_stmt(store_conn_t *c, const char *sql)
{
    for (size_t i = 0; i < c->nstmts; i++) {
        if (c->stmts[i].sql == sql) {
            sqlite3_stmt *st = c->stmts[i].stmt;
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return st;
        }
    }
    if (c->nstmts == c->capstmts) {
        size_t cap = c->capstmts ? c->capstmts * 2 : 16;
        cached_stmt_t *grown = realloc(c->stmts, cap * sizeof *grown);
        if (!grown)
            return NULL;
        c->stmts = grown;
        c->capstmts = cap;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        log_error("store", "prepare failed: %s (%s)", sqlite3_errmsg(c->db), sql);
        sqlite3_finalize(st);
        return NULL;
    }
    c->stmts[c->nstmts++] = (cached_stmt_t){sql, st};
    return st;
}

/* Run a statement that returns no rows. */
static int exec_stmt(store_conn_t *c, const char *sql)
{
    sqlite3_stmt *st = store_stmt(c, sql);
    if (!st)
        return sqlite3_errcode(c->db) ? sqlite3_errcode(c->db) : SQLITE_ERROR;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void conn_close(store_conn_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nstmts; i++)
        sqlite3_finalize(c->stmts[i].stmt);
    free(c->stmts);
    if (sqlite3_close(c->db) != SQLITE_OK)
        log_error("store", "close: %s", sqlite3_errmsg(c->db));
    free(c);
}

/* Run one pragma-like statement that is static text (no input). */
static int exec_static(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

static store_conn_t *conn_open(const store_t *s, int flags, char *err, size_t errlen)
{
    store_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = sqlite3_open_v2(s->path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database %s: %s", s->path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_busy_timeout(c->db, s->cfg.busy_timeout_ms); /* the writer's: see below */
    if (rc == SQLITE_OK)
        rc = exec_static(c->db, "PRAGMA foreign_keys = ON");
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure database %s: %s", s->path,
                 sqlite3_errmsg(c->db));
        goto fail;
    }
    return c;
fail:
    sqlite3_close(c->db);
    free(c);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Migrations
 * ------------------------------------------------------------------------ */

/* Execute every statement of a static multi-statement script. */
static int exec_script(sqlite3 *db, const char *sql)
{
    const char *tail = sql;
    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, tail, -1, &st, &tail);
        if (rc != SQLITE_OK)
            return rc;
        if (!st) /* whitespace or a comment */
            continue;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return rc;
    }
    return SQLITE_OK;
}

static int applied_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                                -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int record_migration(sqlite3 *db, const store_migration_t *m)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO schema_migrations (version, name, applied_at) "
                                "VALUES (?1, ?2, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, m->version);
        sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    return rc;
}

static int apply_one(sqlite3 *db, const store_migration_t *m)
{
    int rc = exec_static(db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK)
        return rc;
    rc = exec_script(db, m->sql);
    if (rc == SQLITE_OK)
        rc = record_migration(db, m);
    if (rc == SQLITE_OK)
        rc = exec_static(db, "COMMIT");
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
        exec_static(db, "ROLLBACK");
    return rc;
}

/* Is migration `version` recorded? *out = 1 or 0. */
static int is_applied(sqlite3 *db, int version, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, version);
        rc = sqlite3_step(st) == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(db);
        *out = rc == SQLITE_OK && sqlite3_column_int(st, 0) > 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Apply, in order, every embedded migration the database has not recorded
 * (not only those above the highest recorded: a database made by a build
 * that had a later migration but not an earlier one still gets it). */
static int migrate(store_t *s, char *err, size_t errlen)
{
    sqlite3 *db = s->writer->db;
    int current = 0;
    int rc = exec_static(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                             " version INTEGER PRIMARY KEY,"
                             " name TEXT NOT NULL,"
                             " applied_at INTEGER NOT NULL)");
    if (rc == SQLITE_OK)
        rc = applied_version(db, &current);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s is not a usable sqlcached database: %s", s->path,
                 sqlite3_errmsg(db));
        return -1;
    }
    int latest = store_migrations[store_migration_count - 1].version;
    if (current > latest) {
        snprintf(err, errlen, "%s has schema version %d, newer than this sqlcached (%d)",
                 s->path, current, latest);
        return -1;
    }
    for (int i = 0; i < store_migration_count; i++) {
        const store_migration_t *m = &store_migrations[i];
        int applied = 0;
        if ((rc = is_applied(db, m->version, &applied)) == SQLITE_OK && applied)
            continue;
        if (rc == SQLITE_OK)
            rc = apply_one(db, m);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "migration %s failed: %s", m->name, sqlite3_errmsg(db));
            return -1;
        }
        log_info("store", "applied migration %s", m->name);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Health: the last write error, and the files under the store
 * ------------------------------------------------------------------------ */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A write transaction failed with rc (errno_ is the system error behind
 * it, 0 if none). Out of memory says nothing about the storage. */
static void health_failed(store_t *s, int rc, int errno_)
{
    if (store_status(rc) == SQLCACHED_NOMEM || rc == SQLITE_READONLY_DBMOVED)
        return;
    pthread_mutex_lock(&s->health_lock);
    s->health.failing = true;
    s->health.last_error = store_status(rc);
    s->health.last_error_at = wall_ms();
    if (errno_)
        snprintf(s->health.error, sizeof s->health.error, "%s (SQLite code %d: %s)",
                 sqlite3_errstr(rc), rc, strerror(errno_));
    else
        snprintf(s->health.error, sizeof s->health.error, "%s (SQLite code %d)",
                 sqlite3_errstr(rc), rc);
    pthread_mutex_unlock(&s->health_lock);
}

static void health_committed(store_t *s)
{
    pthread_mutex_lock(&s->health_lock);
    s->health.failing = false;
    pthread_mutex_unlock(&s->health_lock);
}

static bool files_moved(store_t *s)
{
    pthread_mutex_lock(&s->health_lock);
    bool moved = s->health.moved;
    pthread_mutex_unlock(&s->health_lock);
    return moved;
}

/* Once a file was moved: copy what the WAL the writer holds open has into
 * the database file it holds open, so that acknowledged writes no longer
 * depend on a WAL nobody will find after a crash. Writer thread only. */
static void rescue_once(store_t *s)
{
    pthread_mutex_lock(&s->health_lock);
    bool todo = s->health.moved && !s->health.rescued;
    s->health.rescued = true;
    pthread_mutex_unlock(&s->health_lock);
    if (!todo)
        return;
    int logged = 0, frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->writer->db, NULL, SQLITE_CHECKPOINT_FULL, &logged,
                                       &frames);
    if (rc == SQLITE_OK)
        log_warn("store", "checkpointed %d of %d WAL frames into the database file opened at "
                 "start", frames, logged);
    else
        log_error("store", "checkpoint after the files moved failed: %s", sqlite3_errstr(rc));
}

static void file_id_take(const char *path, file_id_t *id)
{
    struct stat st;
    id->known = stat(path, &st) == 0;
    if (id->known) {
        id->dev = st.st_dev;
        id->ino = st.st_ino;
    }
}

/* NULL while path still names the file seen at open, else what happened. */
static const char *file_id_lost(const char *path, const file_id_t *id)
{
    struct stat st;
    if (!id->known)
        return NULL;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? "removed" : "no longer accessible";
    if (st.st_dev != id->dev || st.st_ino != id->ino)
        return "replaced by another file";
    return NULL;
}

bool store_check_files(store_t *s)
{
    if (files_moved(s))
        return false;
    const char *what = file_id_lost(s->path, &s->db_id);
    const char *which = s->path;
    if (!what) {
        what = file_id_lost(s->wal_path, &s->wal_id);
        which = s->wal_path;
    }
    if (!what)
        return false;
    pthread_mutex_lock(&s->health_lock);
    s->health.moved = true;
    snprintf(s->health.moved_reason, sizeof s->health.moved_reason,
             "%s was %s while open: writes are refused until the store is reopened",
             which, what);
    pthread_mutex_unlock(&s->health_lock);
    log_error("store", "%s was %s while open: refusing every write from now on; stop "
              "sqlcached with SIGTERM (not SIGKILL) so that it checkpoints what it holds, "
              "then restart it", which, what);
    return true;
}

void store_health(store_t *s, sqlcached_health_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->health_lock);
    const health_t *h = &s->health;
    out->writable = !h->moved && !h->failing;
    out->files_moved = h->moved;
    out->last_error = h->last_error;
    out->last_error_at = h->last_error_at;
    if (h->moved)
        snprintf(out->reason, sizeof out->reason, "%s", h->moved_reason);
    else if (h->failing)
        snprintf(out->reason, sizeof out->reason, "the last write failed: %s", h->error);
    pthread_mutex_unlock(&s->health_lock);
}

/* ------------------------------------------------------------------------
 * The writer thread
 * ------------------------------------------------------------------------ */

/* The counter through SQL alone (a name the cache cannot hold). */
static sqlcached_status_t counter_next_sql(store_conn_t *w, const char *name, int64_t *out)
{
    sqlite3_stmt *st = store_stmt(w, SQL_COUNTER_NEXT);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return SQLCACHED_OK;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        log_error("store", "counter %s is missing from meta", name);
        return SQLCACHED_INTERNAL;
    }
    return store_status(rc);
}

/* Read counter `name` from meta into a new cache slot (inside the write
 * transaction, so nobody else can change it until the commit). */
static sqlcached_status_t counter_load(store_conn_t *w, const char *name, counter_t **out)
{
    sqlite3_stmt *st = store_stmt(w, SQL_COUNTER_GET);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlcached_status_t status = store_status(rc);
    if (rc == SQLITE_ROW) {
        counter_t *c = &w->counters[w->ncounters++];
        snprintf(c->name, sizeof c->name, "%s", name);
        c->value = sqlite3_column_int64(st, 0);
        c->dirty = false;
        *out = c;
    } else if (rc == SQLITE_DONE) {
        log_error("store", "counter %s is missing from meta", name);
        status = SQLCACHED_INTERNAL;
    }
    sqlite3_reset(st);
    return status;
}

/* Counters are read from meta once, then counted in memory by the writer;
 * the transaction writes each changed one back once, just before COMMIT
 * (counters_flush), instead of one UPDATE ... RETURNING per write, which
 * cost about as much as the write itself. A value taken by a write whose
 * savepoint is rolled back is skipped, not reused: versions still only
 * grow. When a transaction fails, or another connection committed since
 * (PRAGMA data_version), the cache is dropped and meta read afresh. */
sqlcached_status_t store_counter_next(store_conn_t *w, const char *name, int64_t *out)
{
    counter_t *c = NULL;
    for (int i = 0; i < w->ncounters && !c; i++)
        if (strcmp(w->counters[i].name, name) == 0)
            c = &w->counters[i];
    if (!c) {
        if (w->ncounters == MAX_COUNTERS || strlen(name) >= sizeof c->name)
            return counter_next_sql(w, name, out);
        sqlcached_status_t st = counter_load(w, name, &c);
        if (st != SQLCACHED_OK)
            return st;
    }
    c->value++;
    c->dirty = true;
    *out = c->value;
    return SQLCACHED_OK;
}

/* Write the counters changed in this transaction back to meta. */
static int counters_flush(store_conn_t *w)
{
    for (int i = 0; i < w->ncounters; i++) {
        counter_t *c = &w->counters[i];
        if (!c->dirty)
            continue;
        sqlite3_stmt *st = store_stmt(w, SQL_COUNTER_SET);
        if (!st)
            return SQLITE_ERROR;
        sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, c->value);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return rc;
        if (sqlite3_changes(w->db) == 0) {
            /* the row went away inside this transaction: forget it */
            w->counters[i--] = w->counters[--w->ncounters];
            continue;
        }
        c->dirty = false;
    }
    return SQLITE_OK;
}

/* At the start of a transaction: drop the cached counters if another
 * connection has committed since the last check. */
static void counters_revalidate(store_conn_t *w)
{
    sqlite3_stmt *st = store_stmt(w, SQL_DATA_VERSION);
    int64_t v = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    if (st)
        sqlite3_reset(st);
    if (v < 0 || v != w->data_version)
        w->ncounters = 0;
    w->data_version = v;
}

/* ------------------------------------------------------------------------
 * Waiting for locks, and the stop deadline
 * ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Has the stop deadline (store_drain) passed? */
static bool past_deadline(store_t *s)
{
    int64_t deadline = atomic_load(&s->deadline_ms);
    return deadline != 0 && mono_ms() >= deadline;
}

/* The writer's busy handler (SQLite calls it with the number of earlier
 * calls for this lock): sleep in SQLite's own steps and try again, until
 * busy_timeout_ms after the first call or the stop deadline, whichever
 * comes first; 0 = give up (the statement fails SQLITE_BUSY). */
static int on_writer_busy(void *arg, int count)
{
    static const int steps_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    enum { NSTEPS = sizeof steps_ms / sizeof steps_ms[0] };
    store_t *s = arg;
    int64_t now = mono_ms();
    if (count == 0)
        s->busy_since_ms = now;
    int64_t until = s->busy_since_ms + s->cfg.busy_timeout_ms;
    int64_t deadline = atomic_load(&s->deadline_ms);
    if (deadline != 0 && deadline < until)
        until = deadline;
    if (now >= until)
        return 0;
    int64_t step = steps_ms[count < NSTEPS ? count : NSTEPS - 1];
    if (step > until - now)
        step = until - now;
    struct timespec ts = {.tv_sec = step / 1000, .tv_nsec = (step % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 1;
}

void store_drain(store_t *s, unsigned timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    int64_t cur = atomic_load(&s->deadline_ms);
    while ((cur == 0 || deadline < cur) &&
           !atomic_compare_exchange_weak(&s->deadline_ms, &cur, deadline))
        ;
}

/* ------------------------------------------------------------------------
 * The writer thread: batches
 * ------------------------------------------------------------------------ */

/* Take up to max_batch jobs off the queue, waiting for at least one.
 * Returns NULL when stopping and the queue is empty. */
static write_job_t *take_batch(store_t *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->head && !s->stopping)
        pthread_cond_wait(&s->queue_cond, &s->lock);
    if (s->head && !s->stopping) {
        /* Woken by the first write: let the worker that queued it run on
         * (its other connections may hold writes too) before taking the
         * batch. When the writer shares a core with the workers this
         * turned batches of ~14 writes into ~40 under 64 connections of
         * PUTs, and of ~1 into ~15 in a 10%-write mix; on an idle core it
         * returns at once. */
        pthread_mutex_unlock(&s->lock);
        sched_yield();
        pthread_mutex_lock(&s->lock);
    }
    write_job_t *batch = s->head;
    write_job_t *last = batch;
    for (unsigned n = 1; last && last->next && n < s->cfg.max_batch; n++)
        last = last->next;
    if (last) {
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    return batch;
}

/* Run one job inside its savepoint. */
static void run_job(store_conn_t *w, write_job_t *job)
{
    int rc = exec_stmt(w, SQL_SAVEPOINT);
    if (rc != SQLITE_OK) {
        job->status = store_status(rc);
        return;
    }
    job->status = job->fn(w, job->arg);
    if (sqlite3_get_autocommit(w->db))
        return; /* SQLite rolled the whole transaction back */
    if (job->status != SQLCACHED_OK)
        exec_stmt(w, SQL_ROLLBACK_TO);
    rc = exec_stmt(w, SQL_RELEASE);
    if (rc != SQLITE_OK && job->status == SQLCACHED_OK)
        job->status = store_status(rc);
}

/* Mark every job of the batch that thought it succeeded as failed. */
static void fail_batch(write_job_t *batch, sqlcached_status_t st)
{
    for (write_job_t *j = batch; j; j = j->next)
        if (j->status == SQLCACHED_OK)
            j->status = st;
}

/* Run the batch in one transaction; returns SQLite's result of it (OK =
 * committed), each job's own status in job->status. */
static int run_transaction(store_conn_t *w, write_job_t *batch)
{
    int rc = exec_stmt(w, SQL_BEGIN);
    if (rc != SQLITE_OK)
        return rc;
    counters_revalidate(w);
    for (write_job_t *j = batch; j; j = j->next) {
        run_job(w, j);
        if (sqlite3_get_autocommit(w->db)) { /* SQLite dropped the transaction */
            rc = sqlite3_extended_errcode(w->db);
            for (write_job_t *k = j->next; k; k = k->next)
                k->status = store_status(rc ? rc : SQLITE_ERROR);
            return rc ? rc : SQLITE_ERROR;
        }
    }
    rc = counters_flush(w);
    return rc == SQLITE_OK ? exec_stmt(w, SQL_COMMIT) : rc;
}

/* Count the batch, wake its store_write callers, then call the completion
 * of each asynchronous job and free it. */
static void complete_batch(store_t *s, write_job_t *batch, unsigned n, bool committed)
{
    write_job_t *async_head = NULL, **async_tail = &async_head;
    pthread_mutex_lock(&s->lock);
    if (committed) {
        s->stats.write_transactions++;
        s->stats.writes_committed += n;
    } else {
        s->stats.write_errors++;
    }
    for (write_job_t *j = batch, *next; j; j = next) {
        next = j->next; /* a woken caller's job is gone at once */
        if (j->on_done) {
            j->next = NULL;
            *async_tail = j;
            async_tail = &j->next;
            continue;
        }
        j->done = true;
        pthread_cond_signal(&j->cond);
    }
    pthread_mutex_unlock(&s->lock);
    for (write_job_t *j = async_head, *next; j; j = next) {
        next = j->next;
        j->on_done(j->done_cls, j->status);
        free(j);
    }
}

static void run_batch(store_t *s, write_job_t *batch)
{
    store_conn_t *w = s->writer;
    unsigned n = 0;
    for (write_job_t *j = batch; j; j = j->next)
        j->status = SQLCACHED_OK, n++;
    if (past_deadline(s)) { /* stopping: never start a job after the deadline */
        log_warn("store", "stopping: %u queued writes not run (the stop deadline passed)", n);
        fail_batch(batch, SQLCACHED_UNAVAILABLE);
        complete_batch(s, batch, n, false);
        return;
    }
    if (files_moved(s)) { /* every commit would go to a file nobody reads */
        rescue_once(s);
        fail_batch(batch, SQLCACHED_UNAVAILABLE);
        complete_batch(s, batch, n, false);
        return;
    }
    sqlite3_int64 changes = sqlite3_total_changes64(w->db);
    int rc = run_transaction(w, batch);
    if (rc != SQLITE_OK) {
        w->ncounters = 0; /* meta holds the truth again after the rollback */
        log_warn("store", "write transaction failed: %s", sqlite3_errstr(rc));
        health_failed(s, rc, sqlite3_system_errno(w->db));
        if (!sqlite3_get_autocommit(w->db))
            exec_stmt(w, SQL_ROLLBACK);
        fail_batch(batch, store_status(rc));
    } else {
        if (sqlite3_total_changes64(w->db) != changes) /* it wrote something */
            health_committed(s);
        for (write_job_t *j = batch; j; j = j->next)
            if (j->status == SQLCACHED_OK && j->on_commit)
                j->on_commit(j->arg);
    }
    complete_batch(s, batch, n, rc == SQLITE_OK);
}

static void *writer_main(void *arg)
{
    store_t *s = arg;
    write_job_t *batch;
    while ((batch = take_batch(s)) != NULL)
        run_batch(s, batch);
    return NULL;
}

/* Append a job to the queue (caller holds lock); false when stopping or
 * past the stop deadline. */
static bool do_push_job(store_t *s, write_job_t *job)
{
    if (s->stopping || past_deadline(s))
        return false;
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    pthread_cond_signal(&s->queue_cond);
    return true;
}

sqlcached_status_t store_write(store_t *s, store_write_fn fn, void *arg)
{
    return store_write_then(s, fn, NULL, arg);
}

sqlcached_status_t store_write_then(store_t *s, store_write_fn fn, store_commit_fn on_commit,
                                    void *arg)
{
    write_job_t job = {.fn = fn, .on_commit = on_commit, .arg = arg,
                       .status = SQLCACHED_INTERNAL};
    if (pthread_cond_init(&job.cond, NULL) != 0)
        return SQLCACHED_NOMEM;
    pthread_mutex_lock(&s->lock);
    if (!do_push_job(s, &job)) {
        pthread_mutex_unlock(&s->lock);
        pthread_cond_destroy(&job.cond);
        return SQLCACHED_UNAVAILABLE;
    }
    while (!job.done)
        pthread_cond_wait(&job.cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    pthread_cond_destroy(&job.cond);
    return job.status;
}

sqlcached_status_t store_write_async(store_t *s, store_write_fn fn, store_commit_fn on_commit,
                                     void *arg, store_done_fn on_done, void *cls)
{
    write_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return SQLCACHED_NOMEM;
    *job = (write_job_t){.fn = fn, .on_commit = on_commit, .arg = arg,
                         .status = SQLCACHED_INTERNAL, .on_done = on_done, .done_cls = cls};
    pthread_mutex_lock(&s->lock);
    bool queued = do_push_job(s, job);
    pthread_mutex_unlock(&s->lock);
    if (!queued) {
        free(job);
        return SQLCACHED_UNAVAILABLE;
    }
    return SQLCACHED_OK;
}

/* PRAGMA cache_size for a page cache of at most `bytes` (rounded up to
 * KiB; SQLite still keeps the few pages a statement needs at 0). */
static int set_cache_size(sqlite3 *db, size_t bytes)
{
    char pragma[64]; /* an integer, not input text */
    unsigned long long kib = ((unsigned long long)bytes + 1023) / 1024;
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size = -%llu", kib);
    return exec_static(db, pragma);
}

/* ------------------------------------------------------------------------
 * Reader pool
 * ------------------------------------------------------------------------ */

store_conn_t *store_reader_acquire(store_t *s)
{
    pthread_mutex_lock(&s->pool_lock);
    store_conn_t *c = s->free_readers;
    if (c)
        s->free_readers = c->next_free;
    pthread_mutex_unlock(&s->pool_lock);
    if (c)
        return c;
    char err[256];
    c = conn_open(s, SQLITE_OPEN_READWRITE, err, sizeof err);
    if (!c) {
        log_error("store", "%s", err);
        return NULL;
    }
    if (exec_static(c->db, "PRAGMA query_only = 1") != SQLITE_OK ||
        set_cache_size(c->db, s->cfg.reader_cache) != SQLITE_OK) {
        log_error("store", "reader setup: %s", sqlite3_errmsg(c->db));
        conn_close(c);
        return NULL;
    }
    pthread_mutex_lock(&s->pool_lock);
    c->next_all = s->all_readers;
    s->all_readers = c;
    pthread_mutex_unlock(&s->pool_lock);
    return c;
}

void store_reader_release(store_t *s, store_conn_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->pool_lock);
    c->next_free = s->free_readers;
    s->free_readers = c;
    pthread_mutex_unlock(&s->pool_lock);
}

/* ------------------------------------------------------------------------
 * Open and close
 * ------------------------------------------------------------------------ */

static int configure_writer(store_t *s, char *err, size_t errlen)
{
    sqlite3 *db = s->writer->db;
    int rc = sqlite3_busy_handler(db, on_writer_busy, s);
    if (rc == SQLITE_OK)
        rc = exec_static(db, "PRAGMA journal_mode = WAL");
    if (rc == SQLITE_OK)
        rc = set_cache_size(db, s->cfg.writer_cache);
    if (rc == SQLITE_OK)
        rc = exec_static(db, SQL_WAL_AUTOCHECKPOINT);
    if (rc == SQLITE_OK)
        rc = exec_static(db, s->cfg.durability == SQLCACHED_DURABILITY_NORMAL
                                 ? "PRAGMA synchronous = NORMAL"
                                 : "PRAGMA synchronous = FULL");
    if (rc == SQLITE_OK && s->cfg.max_pages) {
        char pragma[64]; /* an integer, not input text */
        snprintf(pragma, sizeof pragma, "PRAGMA max_page_count = %u", s->cfg.max_pages);
        rc = exec_static(db, pragma);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure %s: %s", s->path, sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

store_t *store_open(const store_config_t *cfg, char *err, size_t errlen)
{
    store_t *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(cfg->path))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    s->cfg = *cfg;
    s->cfg.path = s->path;
    if (s->cfg.max_batch == 0)
        s->cfg.max_batch = 256;
    if (s->cfg.writer_cache == 0)
        s->cfg.writer_cache = WRITER_CACHE_DEFAULT;
    if (s->cfg.reader_cache == 0)
        s->cfg.reader_cache = READER_CACHE_DEFAULT;
    pthread_mutex_init(&s->health_lock, NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->queue_cond, NULL);
    s->writer = conn_open(s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
    if (!s->writer || configure_writer(s, err, errlen) != 0 || migrate(s, err, errlen) != 0)
        goto fail;
    if (asprintf(&s->wal_path, "%s-wal", s->path) < 0) {
        s->wal_path = NULL;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* after migrate(): the writer has read the database, so its WAL is open */
    file_id_take(s->path, &s->db_id);
    file_id_take(s->wal_path, &s->wal_id);
    if (pthread_create(&s->writer_thread, NULL, writer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(errno));
        goto fail;
    }
    s->writer_started = true;
    return s;
fail:
    store_close(s);
    return NULL;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->queue_cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer_thread, NULL);
    }
    for (store_conn_t *c = s->all_readers, *next; c; c = next) {
        next = c->next_all;
        conn_close(c);
    }
    if (s->writer) /* the last connection to close checkpoints the WAL */
        conn_close(s->writer);
    pthread_cond_destroy(&s->queue_cond);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->health_lock);
    free(s->wal_path);
    free(s->path);
    free(s);
}

void store_stats(store_t *s, store_stats_t *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}
