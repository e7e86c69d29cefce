/*
 * dblock.c - the exclusive lock of a database file (see dblock.h).
 */
#include "dblock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The pid written in the lock file by its holder ("?" when unreadable). */
static void holder_pid(int fd, char *out, size_t outlen)
{
    char buf[24];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    size_t len = 0;
    while (n > 0 && len < (size_t)n && buf[len] >= '0' && buf[len] <= '9')
        len++;
    if (len == 0)
        snprintf(out, outlen, "?");
    else
        snprintf(out, outlen, "%.*s", (int)len, buf);
}

/* Record our pid in the lock file we hold (for the messages of others). */
static void write_pid(int fd)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        return; /* only a message would lack it */
}

sqlcached_status_t dblock_acquire(const char *db_path, int *fd_out, char *err, size_t errlen)
{
    *fd_out = -1;
    if (!db_path || !*db_path || strcmp(db_path, ":memory:") == 0)
        return SQLCACHED_OK;
    char path[PATH_MAX + 8], real[PATH_MAX];
    struct stat sb;
    /* beside the file itself, as SQLite puts -wal and -shm: two names of
     * one database through a symbolic link must meet on one lock file */
    const char *base = realpath(db_path, real) ? real : db_path;
    if (snprintf(path, sizeof path, "%s-lock", base) >= (int)sizeof path) {
        snprintf(err, errlen, "database path too long: %s", db_path);
        return SQLCACHED_INVALID_ARGUMENT;
    }
    if (stat(db_path, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* no lock file beside it */
        snprintf(err, errlen, "cannot open database %s: it is a directory", db_path);
        return SQLCACHED_INVALID_ARGUMENT;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open database %s: cannot open its lock file %s: %s", db_path,
                 path, strerror(errno));
        return SQLCACHED_INTERNAL;
    }
    int rc;
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        int e = errno;
        char pid[24];
        holder_pid(fd, pid, sizeof pid);
        close(fd);
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen,
                     "database %s is in use by another process (pid %s holds %s): "
                     "only one sqlcached may open a database at a time",
                     db_path, pid, path);
            return SQLCACHED_CONFLICT;
        }
        snprintf(err, errlen, "cannot lock database %s (%s): %s", db_path, path, strerror(e));
        return SQLCACHED_INTERNAL;
    }
    write_pid(fd);
    *fd_out = fd;
    return SQLCACHED_OK;
}

void dblock_release(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the only descriptor of the description unlocks */
}
