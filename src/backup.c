/*
 * backup.c - online backup and restore with SQLite's backup API.
 *
 * Backup copies the database as of one moment (one read transaction on a
 * pooled reader connection, all pages in one step): in WAL mode writers go
 * on meanwhile and their later commits are simply not in the copy. The copy
 * is written to a temporary file of its own next to the destination
 * (".sqlcached-tmp-<pid>-<n>", created with O_EXCL, so concurrent backups
 * to one name never share one and its name is short whatever the
 * destination's), synced, and renamed, so a crash never leaves a
 * half-written file under the final name.
 *
 * Restore holds the database's lock (dblock.h) from start to end, so it
 * refuses while a daemon or any other sqlcached_open() has the database,
 * and no daemon can open it halfway. It checks that the source is an
 * intact sqlcached database, copies it to a temporary file, brings the
 * copy to this build's schema, then raises every ever-increasing counter
 * of the copy (the rows of meta: versions, fencing tokens; sqlite_sequence:
 * order ids) to at least the value the replaced database had reached, so
 * no ETag, token or order id it ever issued is issued again. Then the
 * copy is renamed over the database.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dblock.h"
#include "engine.h"
#include "storage_sqlite.h"
#include "log.h"

#define TEMP_PREFIX ".sqlcached-tmp-"
#define TEMP_ATTEMPTS 100

/* Run a static statement with ?1 = name (may be NULL: unbound) and ?2 =
 * value; *count (may be NULL) = the first column of the first row, or the
 * rows changed when there is no row. SQLite result code. */
static int run_sql(sqlite3 *db, const char *sql, const char *name, int64_t value, int64_t *count)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && name)
        rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= 2)
        rc = sqlite3_bind_int64(st, 2, value);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (count)
            *count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : sqlite3_changes(db);
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------------------------------
 * Files: temporary copies, moving them into place
 * ------------------------------------------------------------------------ */

static atomic_ulong temp_seq;

/* A file-system error as a status: a full disk is 507, a name too long for
 * the file system 400, a directory in the way 409, other storage trouble
 * (read-only, I/O, permissions) 503. */
static sqlcached_status_t errno_status(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return SQLCACHED_STORAGE_FULL;
    case ENAMETOOLONG:
        return SQLCACHED_INVALID_ARGUMENT;
    case EISDIR:
    case ENOTEMPTY:
    case EEXIST:
        return SQLCACHED_CONFLICT;
    case EROFS:
    case EACCES:
    case EPERM:
    case EIO:
        return SQLCACHED_UNAVAILABLE;
    default:
        return SQLCACHED_INTERNAL;
    }
}

/* Create a new empty file in the directory of path, named TEMP_PREFIX
 * "<pid>-<n>" (O_EXCL: never one another process or thread uses), and
 * write its name into tmp. */
static sqlcached_status_t make_temp(const char *path, char *tmp, size_t tmplen, char *err,
                                    size_t errlen)
{
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    for (int i = 0; i < TEMP_ATTEMPTS; i++) {
        unsigned long n = atomic_fetch_add(&temp_seq, 1);
        if (snprintf(tmp, tmplen, "%.*s" TEMP_PREFIX "%ld-%lu", dirlen, path, (long)getpid(), n) >=
            (int)tmplen) {
            snprintf(err, errlen, "path too long");
            return SQLCACHED_INVALID_ARGUMENT;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(fd);
            return SQLCACHED_OK;
        }
        if (errno != EEXIST) {
            int e = errno;
            snprintf(err, errlen, "cannot create a temporary file %s: %s", tmp, strerror(e));
            tmp[0] = '\0';
            return errno_status(e);
        }
    }
    snprintf(err, errlen, "no free temporary file name next to %s", path);
    tmp[0] = '\0';
    return SQLCACHED_INTERNAL;
}

/* Remove a temporary copy and whatever SQLite may have left next to it. */
static void unlink_temp(const char *tmp)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char path[4200];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s%s", tmp, suffixes[i]);
        unlink(path);
    }
}

/* Copy every page of src (schema "main") into the database at path. */
static int copy_database(sqlite3 *src, const char *path, char *err, size_t errlen)
{
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (!b) {
            rc = sqlite3_errcode(dst);
        } else {
            rc = sqlite3_backup_step(b, -1);
            int frc = sqlite3_backup_finish(b);
            rc = rc == SQLITE_DONE ? frc : rc;
        }
    }
    /* the pages say WAL, as the source's do: make the copy one
     * self-contained file that opens read-only without -wal and -shm */
    if (rc == SQLITE_OK)
        rc = run_sql(dst, "PRAGMA journal_mode = DELETE", NULL, 0, NULL);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot write %s: %s", path,
                 dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
    if (sqlite3_close(dst) != SQLITE_OK && rc == SQLITE_OK) {
        snprintf(err, errlen, "cannot close %s", path);
        rc = SQLITE_ERROR;
    }
    return rc;
}

/* Copy src into a new temporary file next to path (its name in tmp; on
 * failure it is removed and tmp is ""). */
static sqlcached_status_t copy_to_temp(sqlite3 *src, const char *path, char *tmp, size_t tmplen,
                                       char *err, size_t errlen)
{
    sqlcached_status_t st = make_temp(path, tmp, tmplen, err, errlen);
    if (st != SQLCACHED_OK)
        return st;
    int rc = copy_database(src, tmp, err, errlen);
    if (rc != SQLITE_OK) {
        unlink_temp(tmp);
        tmp[0] = '\0';
        return store_status(rc);
    }
    return SQLCACHED_OK;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Sync the directory holding path, so that a rename in it is durable. */
static int fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        return fsync_path(".", O_DIRECTORY);
    snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    return fsync_path(dir, O_DIRECTORY);
}

/* Sync tmp and rename it to path; tmp is removed on failure. */
static sqlcached_status_t move_into_place(const char *tmp, const char *path, char *err,
                                          size_t errlen)
{
    if (fsync_path(tmp, 0) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot move the copy to %s: %s", path,
                 e == EISDIR ? "it is a directory" : strerror(e));
        unlink_temp(tmp);
        return errno_status(e);
    }
    if (fsync_dir_of(path) != 0)
        log_warn("backup", "cannot sync the directory of %s: %s", path, strerror(errno));
    return SQLCACHED_OK;
}

/* ------------------------------------------------------------------------
 * Backup
 * ------------------------------------------------------------------------ */

/* The destination must not be a directory (409 rather than a failed copy). */
static sqlcached_status_t check_dest(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s is a directory", path);
        return SQLCACHED_CONFLICT;
    }
    return SQLCACHED_OK;
}

sqlcached_status_t sqlcached_backup(sqlcached_t *db, const char *dest_path, char *err,
                                    size_t errlen)
{
    char scratch[1];
    if (!err)
        err = scratch, errlen = sizeof scratch;
    if (!dest_path || !*dest_path) {
        snprintf(err, errlen, "empty path");
        return SQLCACHED_INVALID_ARGUMENT;
    }
    if (storage_backend_for(db->path) != &storage_sqlite) {
        snprintf(err, errlen,
                 "the data is in PostgreSQL: back it up with pg_dump or "
                 "PostgreSQL's own backups (pg_basebackup, WAL archiving), not through sqlcached");
        return SQLCACHED_CONFLICT;
    }
    sqlcached_status_t st = check_dest(dest_path, err, errlen);
    if (st != SQLCACHED_OK)
        return st;
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r) {
        snprintf(err, errlen, "no reader connection");
        return SQLCACHED_UNAVAILABLE;
    }
    char tmp[4096];
    st = copy_to_temp(store_conn_db(r), dest_path, tmp, sizeof tmp, err, errlen);
    store_reader_release(db->store, r);
    if (st == SQLCACHED_OK)
        st = move_into_place(tmp, dest_path, err, errlen);
    if (st == SQLCACHED_OK)
        log_info("backup", "backed up to %s", dest_path);
    return st;
}

/* ------------------------------------------------------------------------
 * The counters a restore must not let go back
 * ------------------------------------------------------------------------ */

typedef enum { COUNTER_META, COUNTER_SEQUENCE } counter_kind_t;

typedef struct counter_row {
    counter_kind_t kind;
    char *name; /* meta.name or sqlite_sequence.name (a table) */
    int64_t value;
} counter_row_t;

typedef struct counters {
    counter_row_t *rows;
    size_t n, cap;
} counters_t;

static void counters_free(counters_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->rows[i].name);
    free(c->rows);
}

static int counters_add(counters_t *c, counter_kind_t kind, const char *name, int64_t value)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        counter_row_t *grown = realloc(c->rows, cap * sizeof *grown);
        if (!grown)
            return -1;
        c->rows = grown;
        c->cap = cap;
    }
    char *copy = strdup(name ? name : "");
    if (!copy)
        return -1;
    c->rows[c->n++] = (counter_row_t){kind, copy, value};
    return 0;
}

static const char SQL_META_ALL[] = "SELECT name, value FROM meta";
static const char SQL_SEQ_ALL[] = "SELECT name, seq FROM sqlite_sequence";
static const char SQL_HAS_TABLE[] =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1";
static const char SQL_META_RAISE[] = "UPDATE meta SET value = ?2 WHERE name = ?1 AND value < ?2";
static const char SQL_META_HAS[] = "SELECT COUNT(*) FROM meta WHERE name = ?1";
static const char SQL_SEQ_RAISE[] =
    "UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1 AND seq < ?2";
static const char SQL_SEQ_HAS[] = "SELECT COUNT(*) FROM sqlite_sequence WHERE name = ?1";
static const char SQL_SEQ_INSERT[] = "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)";

/* Append every row of a two-column query (name, value) to out. */
static int read_rows(sqlite3 *db, const char *sql, counter_kind_t kind, counters_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = counters_add(out, kind, (const char *)sqlite3_column_text(st, 0),
                          sqlite3_column_int64(st, 1)) == 0
                 ? SQLITE_OK
                 : SQLITE_NOMEM;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The counters of the database at path (opened read-write, so that a WAL
 * left by a crash is recovered first, and checkpointed when closed). A
 * missing or empty file has none. */
static sqlcached_status_t read_counters(const char *path, counters_t *out, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return SQLCACHED_OK;
        int e = errno;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return errno_status(e);
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s is a directory", path);
        return SQLCACHED_CONFLICT;
    }
    if (S_ISREG(sb.st_mode) && sb.st_size == 0)
        return SQLCACHED_OK;
    sqlite3 *db = NULL;
    int64_t has_seq = 0;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = read_rows(db, SQL_META_ALL, COUNTER_META, out);
    if (rc == SQLITE_OK)
        rc = run_sql(db, SQL_HAS_TABLE, "sqlite_sequence", 0, &has_seq);
    if (rc == SQLITE_OK && has_seq)
        rc = read_rows(db, SQL_SEQ_ALL, COUNTER_SEQUENCE, out);
    if (rc != SQLITE_OK)
        snprintf(err, errlen,
                 "cannot read the counters of %s, the database being replaced (%s); move it "
                 "away to restore anyway, but versions, fencing tokens and order ids it "
                 "issued may then be issued again",
                 path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (sqlite3_close(db) != SQLITE_OK && rc == SQLITE_OK) {
        snprintf(err, errlen, "cannot close %s", path);
        rc = SQLITE_ERROR;
    }
    return rc == SQLITE_OK ? SQLCACHED_OK : SQLCACHED_CONFLICT;
}

/* Raise one counter of the copy to at least r->value. */
static int raise_one(sqlite3 *db, const counter_row_t *r, bool have_seq)
{
    bool meta = r->kind == COUNTER_META;
    if (!meta && !have_seq)
        return SQLITE_OK;
    int64_t n = 0;
    int rc = run_sql(db, meta ? SQL_META_RAISE : SQL_SEQ_RAISE, r->name, r->value, &n);
    if (rc != SQLITE_OK || n > 0) {
        if (rc == SQLITE_OK)
            log_info("backup", "restore: %s %s continues after %lld, as in the replaced database",
                     meta ? "counter" : "the ids of", r->name, (long long)r->value);
        return rc;
    }
    rc = run_sql(db, meta ? SQL_META_HAS : SQL_SEQ_HAS, r->name, 0, &n);
    if (rc != SQLITE_OK || n > 0)
        return rc; /* the copy is already at or above it */
    if (meta) {    /* only a newer build's migration could add it: leave it to that */
        log_warn("backup",
                 "restore: counter %s of the replaced database is unknown to this "
                 "sqlcached; not carried over",
                 r->name);
        return SQLITE_OK;
    }
    rc = run_sql(db, SQL_HAS_TABLE, r->name, 0, &n);
    if (rc == SQLITE_OK && n > 0) {
        rc = run_sql(db, SQL_SEQ_INSERT, r->name, r->value, NULL);
        log_info("backup",
                 "restore: the ids of %s continue after %lld, as in the replaced "
                 "database",
                 r->name, (long long)r->value);
    }
    return rc;
}

/* Raise every counter of the database at path to its value in old, in one
 * transaction. */
static sqlcached_status_t raise_counters(const char *path, const counters_t *old, char *err,
                                         size_t errlen)
{
    if (old->n == 0)
        return SQLCACHED_OK;
    sqlite3 *db = NULL;
    int64_t have_seq = 0;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = run_sql(db, "BEGIN IMMEDIATE", NULL, 0, NULL);
    if (rc == SQLITE_OK)
        rc = run_sql(db, SQL_HAS_TABLE, "sqlite_sequence", 0, &have_seq);
    for (size_t i = 0; rc == SQLITE_OK && i < old->n; i++)
        rc = raise_one(db, &old->rows[i], have_seq > 0);
    if (rc == SQLITE_OK)
        rc = run_sql(db, "COMMIT", NULL, 0, NULL);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot carry the counters over to the restored copy: %s",
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (sqlite3_close(db) != SQLITE_OK && rc == SQLITE_OK) {
        snprintf(err, errlen, "cannot close %s", path);
        rc = SQLITE_ERROR;
    }
    return store_status(rc);
}

/* ------------------------------------------------------------------------
 * Restore
 * ------------------------------------------------------------------------ */

/* Is the file an intact sqlcached database? */
static int check_source(sqlite3 *src, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(src, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    st = NULL;
    if (ok)
        ok = sqlite3_prepare_v2(src, "SELECT COUNT(*) FROM schema_migrations", -1, &st, NULL) ==
                 SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    if (!ok)
        snprintf(err, errlen, "not an intact sqlcached database: %s", sqlite3_errmsg(src));
    return ok ? 0 : -1;
}

/* Apply this build's pending migrations to the copy (a backup made by an
 * older build may lack a counter row, which a later migration would create
 * at 0 after the counters were carried over). */
static sqlcached_status_t migrate_copy(const char *path, char *err, size_t errlen)
{
    store_config_t cfg = {.path = path,
                          .durability = SQLCACHED_DURABILITY_FULL,
                          .busy_timeout_ms = 5000};
    store_t *s = store_open(&cfg, err, errlen);
    if (!s)
        return SQLCACHED_INTERNAL;
    store_close(s);
    return SQLCACHED_OK;
}

/* The copy gets the permission bits of the database it replaces. */
static void keep_mode(const char *tmp, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && chmod(tmp, sb.st_mode & 07777) != 0)
        log_warn("backup", "cannot give %s the mode of %s: %s", tmp, path, strerror(errno));
}

/* Remove what SQLite keeps next to the database at path: a stale WAL or
 * journal must never be applied to the restored file. */
static sqlcached_status_t remove_companions(const char *path, char *err, size_t errlen)
{
    static const char *const suffixes[] = {"-wal", "-shm", "-journal"};
    char side[4096];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        if (snprintf(side, sizeof side, "%s%s", path, suffixes[i]) >= (int)sizeof side) {
            snprintf(err, errlen, "path too long");
            return SQLCACHED_INVALID_ARGUMENT;
        }
        if (unlink(side) != 0 && errno != ENOENT) {
            int e = errno;
            snprintf(err, errlen, "cannot remove %s: %s", side, strerror(e));
            return errno_status(e);
        }
    }
    return SQLCACHED_OK;
}

/* Copy the checked backup src into a temporary file next to db_path and
 * prepare it (schema, counters above old); its name in tmp. */
static sqlcached_status_t prepare_copy(sqlite3 *src, const char *db_path, const counters_t *old,
                                       char *tmp, size_t tmplen, char *err, size_t errlen)
{
    sqlcached_status_t st = copy_to_temp(src, db_path, tmp, tmplen, err, errlen);
    if (st == SQLCACHED_OK)
        st = migrate_copy(tmp, err, errlen);
    if (st == SQLCACHED_OK)
        st = raise_counters(tmp, old, err, errlen);
    if (st == SQLCACHED_OK)
        keep_mode(tmp, db_path);
    return st;
}

sqlcached_status_t sqlcached_restore(const char *backup_path, const char *db_path, char *err,
                                     size_t errlen)
{
    char scratch[1];
    if (!err)
        err = scratch, errlen = sizeof scratch;
    if (!backup_path || !db_path || !*db_path) {
        snprintf(err, errlen, "empty path");
        return SQLCACHED_INVALID_ARGUMENT;
    }
    if (storage_backend_for(db_path) != &storage_sqlite) {
        snprintf(err, errlen,
                 "the data is in PostgreSQL: restore it with pg_restore or "
                 "PostgreSQL's own tools, not through sqlcached");
        return SQLCACHED_INVALID_ARGUMENT;
    }
    char real[PATH_MAX];
    if (realpath(db_path, real)) /* replace the file a symbolic link points to */
        db_path = real;
    int lock = -1;
    sqlite3 *src = NULL;
    counters_t old = {0};
    char tmp[4096] = "";
    sqlcached_status_t st = dblock_acquire(db_path, &lock, err, errlen);
    if (st == SQLCACHED_OK) {
        st = SQLCACHED_INVALID_ARGUMENT;
        if (sqlite3_open_v2(backup_path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
            snprintf(err, errlen, "cannot open %s: %s", backup_path, sqlite3_errmsg(src));
        else if (check_source(src, err, errlen) == 0)
            st = read_counters(db_path, &old, err, errlen);
    }
    if (st == SQLCACHED_OK)
        st = prepare_copy(src, db_path, &old, tmp, sizeof tmp, err, errlen);
    sqlite3_close(src);
    if (st == SQLCACHED_OK)
        st = remove_companions(db_path, err, errlen);
    if (st == SQLCACHED_OK)
        st = move_into_place(tmp, db_path, err, errlen);
    else if (tmp[0])
        unlink_temp(tmp);
    counters_free(&old);
    dblock_release(lock);
    return st;
}
