/*
 * dblock.h - one process per database file: an exclusive lock on the
 * sibling file "<db>-lock".
 *
 * flock() on a file of its own, never a POSIX (fcntl) lock on the database:
 * SQLite keeps its own POSIX locks on the database file and closing any
 * descriptor of that file would drop them. An flock belongs to the open
 * file description, so a second open in the same process is refused as
 * well, and the kernel releases it when the process dies (kill -9 leaves
 * nothing to clean up). The lock file holds the holder's pid, for messages
 * only; it is never deleted (deleting it would let two processes lock two
 * different files of the same name). A database reached through a
 * symbolic link is locked beside its target, where SQLite keeps its -wal
 * and -shm, so two names of one file meet on one lock. Readers of the
 * database through SQLite (the sqlite3 shell, a backup) do not look at it.
 */
#ifndef SQLCACHED_DBLOCK_H
#define SQLCACHED_DBLOCK_H

#include <stddef.h>

#include "sqlcached.h"

/* Take the lock of the database at db_path, without waiting. SQLCACHED_OK
 * and *fd_out = the descriptor that holds it (release with
 * dblock_release), or *fd_out = -1 for a database that is no file
 * (":memory:" or ""). SQLCACHED_CONFLICT when another process, or another
 * open in this one, holds it; other statuses when the lock file cannot be
 * opened or locked. On failure a message goes to err. */
sqlcached_status_t dblock_acquire(const char *db_path, int *fd_out, char *err, size_t errlen);

/* Release the lock taken by dblock_acquire (-1 is allowed). Cannot fail. */
void dblock_release(int fd);

#endif
