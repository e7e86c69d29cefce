/*
 * backup.c - online backup and restore with SQLite's backup API.
 *
 * Backup copies the database as of one moment (one read transaction on a
 * pooled reader connection, all pages in one step): in WAL mode writers go
 * on meanwhile and their later commits are simply not in the copy. The copy
 * is written to "<dest>.tmp", synced, and renamed, so a crash never leaves a
 * half-written file under the final name.
 *
 * Restore checks that the source is an intact sqlcached database, then
 * copies it over the target path the same way. The target must not be open
 * in a running daemon (the backup API would wait on its locks, then fail).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "storage_sqlite.h"
#include "log.h"

/* Copy every page of src (schema "main") into a new database at path. */
static int copy_database(sqlite3 *src, const char *path, char *err, size_t errlen)
{
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
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
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot write %s: %s", path,
                 dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
    if (sqlite3_close(dst) != SQLITE_OK && rc == SQLITE_OK) {
        snprintf(err, errlen, "cannot close %s", path);
        rc = SQLITE_ERROR;
    }
    return rc;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copy src into tmp, then rename tmp to path. */
static sqlcached_status_t copy_then_rename(sqlite3 *src, const char *path, char *err,
                                           size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "path too long");
        return SQLCACHED_INVALID_ARGUMENT;
    }
    unlink(tmp);
    int rc = copy_database(src, tmp, err, errlen);
    if (rc == SQLITE_OK && (fsync_path(tmp) != 0 || rename(tmp, path) != 0)) {
        snprintf(err, errlen, "cannot move the copy to %s: %s", path, strerror(errno));
        rc = SQLITE_IOERR;
    }
    if (rc != SQLITE_OK) {
        unlink(tmp);
        return store_status(rc);
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
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r) {
        snprintf(err, errlen, "no reader connection");
        return SQLCACHED_UNAVAILABLE;
    }
    sqlcached_status_t st = copy_then_rename(store_conn_db(r), dest_path, err, errlen);
    store_reader_release(db->store, r);
    if (st == SQLCACHED_OK)
        log_info("backup", "backed up to %s", dest_path);
    return st;
}

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

sqlcached_status_t sqlcached_restore(const char *backup_path, const char *db_path, char *err,
                                     size_t errlen)
{
    char scratch[1];
    if (!err)
        err = scratch, errlen = sizeof scratch;
    sqlite3 *src = NULL;
    sqlcached_status_t st = SQLCACHED_INVALID_ARGUMENT;
    if (sqlite3_open_v2(backup_path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        snprintf(err, errlen, "cannot open %s: %s", backup_path, sqlite3_errmsg(src));
    else if (check_source(src, err, errlen) == 0)
        st = copy_then_rename(src, db_path, err, errlen);
    sqlite3_close(src);
    if (st == SQLCACHED_OK) {
        /* stale WAL/SHM of the old database must not be replayed on top */
        char side[4096];
        snprintf(side, sizeof side, "%s-wal", db_path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", db_path);
        unlink(side);
    }
    return st;
}
