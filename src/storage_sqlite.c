/*
 * storage_sqlite.c - the SQLite backend's engine (storage.h): connections
 * and their statement cache, migrations, the group-commit transaction
 * statements, the counters in `meta`, the writer's wait for locks and the
 * check of the files under the store; and the backend's table of
 * operations. Each domain's statements live in a file of their own beside
 * this one (storage_sqlite_kv.c, _seckill.c, _lease.c).
 *
 * Data structures:
 *   - sqlite_conn_t: a store_conn_t, then one sqlite3 handle plus a small
 *     cache of prepared statements keyed by the address of their static SQL
 *     text, and (writer only) PRAGMA data_version at the last check.
 *   - storage_db_t: the path, the settings, the writer connection between
 *     open and its hand-over, the identity (st_dev, st_ino) of the
 *     database file and its -wal taken at open, the writer's lock wait.
 *
 * Counters: the writer caches them across transactions (store.c) while
 * PRAGMA data_version says no other connection committed since: one
 * process per database (sqlcached_open's lock), so that is the rule.
 *
 * Files: check() compares the paths with the files opened (a file removed
 * or replaced under the store means every later commit would go to a file
 * nobody will read again); salvage() then checkpoints the WAL the writer
 * still holds open into the database file it still holds open.
 *
 * Locks held by other connections: the writer waits for them with its own
 * busy handler (on_writer_busy: SQLite's steps, busy_timeout_ms at most,
 * and never past the store's stop deadline), not sqlite3_busy_timeout(),
 * so that a stop can cut the wait.
 */
#include "storage_sqlite.h"

#include <errno.h>
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

typedef struct sqlite_conn {
    store_conn_t base; /* first: a store_conn_t * is a sqlite_conn_t * */
    sqlite3 *db;
    cached_stmt_t *stmts;
    size_t nstmts, capstmts;
    int64_t data_version; /* writer only: PRAGMA data_version at the last check */
} sqlite_conn_t;

/* Which file a path named when the store opened it. */
typedef struct file_id {
    bool known;
    dev_t dev;
    ino_t ino;
} file_id_t;

struct storage_db {
    store_config_t cfg; /* cfg.path points to path */
    char *path;
    char *wal_path;
    store_t *store;          /* for its stop deadline */
    sqlite_conn_t *writer;   /* opened by open(), handed over by conn_open() */
    file_id_t db_id, wal_id; /* taken at open */
    int64_t busy_since_ms;   /* writer thread: start of the current lock wait */
};

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_SAVEPOINT[] = "SAVEPOINT w";
static const char SQL_RELEASE[] = "RELEASE w";
static const char SQL_ROLLBACK_TO[] = "ROLLBACK TO w";
static const char SQL_COUNTER_GET[] = "SELECT value FROM meta WHERE name = ?1";
static const char SQL_COUNTER_SET[] = "UPDATE meta SET value = ?2 WHERE name = ?1";
static const char SQL_DATA_VERSION[] = "PRAGMA data_version";

static sqlite_conn_t *lite(store_conn_t *c)
{
    return (sqlite_conn_t *)c;
}

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
    return lite(c)->db;
}

sqlite3_stmt *store_stmt(store_conn_t *sc, const char *sql)
{
    sqlite_conn_t *c = lite(sc);
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

/* Run a statement that returns no rows; SQLite's result code. */
static int exec_stmt(store_conn_t *c, const char *sql)
{
    sqlite3_stmt *st = store_stmt(c, sql);
    sqlite3 *db = lite(c)->db;
    if (!st)
        return sqlite3_errcode(db) ? sqlite3_errcode(db) : SQLITE_ERROR;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* exec_stmt() as a library status. */
static sqlcached_status_t exec_status(store_conn_t *c, const char *sql)
{
    return store_status(exec_stmt(c, sql));
}

static void conn_close(store_conn_t *sc)
{
    sqlite_conn_t *c = lite(sc);
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

static sqlite_conn_t *conn_new(const storage_db_t *d, int flags, char *err, size_t errlen)
{
    sqlite_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base.backend = &storage_sqlite;
    int rc = sqlite3_open_v2(d->path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database %s: %s", d->path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_busy_timeout(c->db, d->cfg.busy_timeout_ms); /* the writer's: see below */
    if (rc == SQLITE_OK)
        rc = exec_static(c->db, "PRAGMA foreign_keys = ON");
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure database %s: %s", d->path, sqlite3_errmsg(c->db));
        goto fail;
    }
    return c;
fail:
    sqlite3_close(c->db);
    free(c);
    return NULL;
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
    int rc = sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1,
                                &st, NULL);
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
    int rc = sqlite3_prepare_v2(
        db,
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
    int rc = sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?1", -1,
                                &st, NULL);
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
static int migrate(storage_db_t *s, char *err, size_t errlen)
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
        snprintf(err, errlen, "%s has schema version %d, newer than this sqlcached (%d)", s->path,
                 current, latest);
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
 * The files under the store
 * ------------------------------------------------------------------------ */

static void file_id_take(const char *path, file_id_t *id)
{
    struct stat sb;
    id->known = stat(path, &sb) == 0;
    if (id->known) {
        id->dev = sb.st_dev;
        id->ino = sb.st_ino;
    }
}

/* NULL while path still names the file seen at open, else what happened. */
static const char *file_id_lost(const char *path, const file_id_t *id)
{
    struct stat sb;
    if (!id->known)
        return NULL;
    if (stat(path, &sb) != 0)
        return errno == ENOENT ? "removed" : "no longer accessible";
    if (sb.st_dev != id->dev || sb.st_ino != id->ino)
        return "replaced by another file";
    return NULL;
}

static bool check_files(storage_db_t *d, char *reason, size_t len)
{
    const char *what = file_id_lost(d->path, &d->db_id);
    const char *which = d->path;
    if (!what) {
        what = file_id_lost(d->wal_path, &d->wal_id);
        which = d->wal_path;
    }
    if (!what)
        return false;
    snprintf(reason, len, "%s was %s while open: writes are refused until the store is reopened",
             which, what);
    return true;
}

/* Copy what the WAL the writer holds open has into the database file it
 * holds open, so that acknowledged writes no longer depend on a WAL nobody
 * will find after a crash. */
static void salvage(store_conn_t *w)
{
    int logged = 0, frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(lite(w)->db, NULL, SQLITE_CHECKPOINT_FULL, &logged, &frames);
    if (rc == SQLITE_OK)
        log_warn("store",
                 "checkpointed %d of %d WAL frames into the database file opened at "
                 "start",
                 frames, logged);
    else
        log_error("store", "checkpoint after the files moved failed: %s", sqlite3_errstr(rc));
}

/* ------------------------------------------------------------------------
 * Counters
 * ------------------------------------------------------------------------ */

static sqlcached_status_t counter_get(store_conn_t *w, const char *name, int64_t *value)
{
    sqlite3_stmt *st = store_stmt(w, SQL_COUNTER_GET);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlcached_status_t status = store_status(rc);
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(st, 0);
    } else if (rc == SQLITE_DONE) {
        log_error("store", "counter %s is missing from meta", name);
        status = SQLCACHED_INTERNAL;
    }
    sqlite3_reset(st);
    return status;
}

static sqlcached_status_t counter_set(store_conn_t *w, const char *name, int64_t value, bool *found)
{
    sqlite3_stmt *st = store_stmt(w, SQL_COUNTER_SET);
    if (!st)
        return SQLCACHED_INTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, value);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    *found = sqlite3_changes(lite(w)->db) > 0;
    return rc == SQLITE_DONE ? SQLCACHED_OK : store_status(rc);
}

/* Nobody else committed since the last check (PRAGMA data_version). */
static bool counters_valid(store_conn_t *w)
{
    sqlite3_stmt *st = store_stmt(w, SQL_DATA_VERSION);
    int64_t v = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    if (st)
        sqlite3_reset(st);
    bool valid = v >= 0 && v == lite(w)->data_version;
    lite(w)->data_version = v;
    return valid;
}

/* ------------------------------------------------------------------------
 * Waiting for locks
 * ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The writer's busy handler (SQLite calls it with the number of earlier
 * calls for this lock): sleep in SQLite's own steps and try again, until
 * busy_timeout_ms after the first call or the stop deadline, whichever
 * comes first; 0 = give up (the statement fails SQLITE_BUSY). */
static int on_writer_busy(void *arg, int count)
{
    static const int steps_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    enum { NSTEPS = sizeof steps_ms / sizeof steps_ms[0] };
    storage_db_t *s = arg;
    int64_t now = mono_ms();
    if (count == 0)
        s->busy_since_ms = now;
    int64_t until = s->busy_since_ms + s->cfg.busy_timeout_ms;
    int64_t deadline = store_deadline_ms(s->store);
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

/* ------------------------------------------------------------------------
 * The engine
 * ------------------------------------------------------------------------ */

static sqlcached_status_t tx_begin(store_conn_t *w)
{
    return exec_status(w, SQL_BEGIN);
}

static sqlcached_status_t tx_savepoint(store_conn_t *w)
{
    return exec_status(w, SQL_SAVEPOINT);
}

static sqlcached_status_t tx_release(store_conn_t *w)
{
    return exec_status(w, SQL_RELEASE);
}

static sqlcached_status_t tx_rollback_to(store_conn_t *w)
{
    return exec_status(w, SQL_ROLLBACK_TO);
}

static bool tx_open(store_conn_t *w)
{
    return !sqlite3_get_autocommit(lite(w)->db);
}

static sqlcached_status_t tx_commit(store_conn_t *w)
{
    return exec_status(w, SQL_COMMIT);
}

static void tx_rollback(store_conn_t *w)
{
    exec_stmt(w, SQL_ROLLBACK);
}

static void describe_error(store_conn_t *c, char *buf, size_t len)
{
    sqlite3 *db = lite(c)->db;
    int rc = sqlite3_extended_errcode(db), sys = sqlite3_system_errno(db);
    if (sys)
        snprintf(buf, len, "%s (SQLite code %d: %s)", sqlite3_errstr(rc), rc, strerror(sys));
    else
        snprintf(buf, len, "%s (SQLite code %d)", sqlite3_errstr(rc), rc);
}

static int64_t changes(store_conn_t *w)
{
    return sqlite3_total_changes64(lite(w)->db);
}

static int configure_writer(storage_db_t *s, char *err, size_t errlen)
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

static void db_close(storage_db_t *d)
{
    if (!d)
        return;
    conn_close(d->writer ? &d->writer->base : NULL); /* NULL once handed over */
    free(d->wal_path);
    free(d->path);
    free(d);
}

static storage_db_t *db_open(const store_config_t *cfg, store_t *s, char *err, size_t errlen)
{
    storage_db_t *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(cfg->path)) || asprintf(&d->wal_path, "%s-wal", cfg->path) < 0) {
        if (d)
            d->wal_path = NULL;
        snprintf(err, errlen, "out of memory");
        db_close(d);
        return NULL;
    }
    d->cfg = *cfg;
    d->cfg.path = d->path;
    d->store = s;
    if (d->cfg.writer_cache == 0)
        d->cfg.writer_cache = WRITER_CACHE_DEFAULT;
    if (d->cfg.reader_cache == 0)
        d->cfg.reader_cache = READER_CACHE_DEFAULT;
    d->writer = conn_new(d, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
    if (!d->writer || configure_writer(d, err, errlen) != 0 || migrate(d, err, errlen) != 0) {
        db_close(d);
        return NULL;
    }
    /* after migrate(): the writer has read the database, so its WAL is open */
    file_id_take(d->path, &d->db_id);
    file_id_take(d->wal_path, &d->wal_id);
    return d;
}

static store_conn_t *conn_open(storage_db_t *d, bool writer, char *err, size_t errlen)
{
    if (writer) {
        sqlite_conn_t *w = d->writer;
        d->writer = NULL;
        if (!w)
            snprintf(err, errlen, "the writer connection was handed over already");
        return w ? &w->base : NULL;
    }
    sqlite_conn_t *c = conn_new(d, SQLITE_OPEN_READWRITE, err, errlen);
    if (!c)
        return NULL;
    if (exec_static(c->db, "PRAGMA query_only = 1") != SQLITE_OK ||
        set_cache_size(c->db, d->cfg.reader_cache) != SQLITE_OK) {
        snprintf(err, errlen, "reader setup: %s", sqlite3_errmsg(c->db));
        conn_close(&c->base);
        return NULL;
    }
    return &c->base;
}

static const storage_engine_ops_t engine = {
    .open = db_open,
    .close = db_close,
    .conn_open = conn_open,
    .conn_close = conn_close,
    .begin = tx_begin,
    .savepoint = tx_savepoint,
    .release = tx_release,
    .rollback_to = tx_rollback_to,
    .in_transaction = tx_open,
    .commit = tx_commit,
    .rollback = tx_rollback,
    .describe_error = describe_error,
    .changes = changes,
    .counter_get = counter_get,
    .counter_set = counter_set,
    .counters_valid = counters_valid,
    .check = check_files,
    .salvage = salvage,
};

const storage_backend_t storage_sqlite = {
    .name = "sqlite",
    .engine = &engine,
    .kv = &storage_sqlite_kv,
    .seckill = &storage_sqlite_seckill,
    .lease = &storage_sqlite_lease,
    .queue = &storage_sqlite_queue,
    .watch = &storage_sqlite_watch,
};
