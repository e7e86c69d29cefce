/*
 * sidedb.h - a test's own connection to the database of a store, on
 * either backend (testutil.h): a sqlite3 handle on the SQLite file, or a
 * pg_conn on the PostgreSQL URL. For what a test must see or do behind the
 * store's back: read what was committed, change a row, hold the lock that
 * every write needs (a stalled writer, as another process or node makes
 * one).
 *
 * Statement text is static (scripts/check-sql checks the callers) and must
 * be valid on both backends: no parameters. Failures are reported on
 * stderr and returned; nothing here asserts. One thread at a time.
 */
#ifndef SQLCACHED_TEST_SIDEDB_H
#define SQLCACHED_TEST_SIDEDB_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sidedb sidedb_t;

/* Connect to the store at location (a SQLite path or a postgresql:// URL,
 * as testutil_db gives it). NULL on failure. */
sidedb_t *sidedb_open(const char *location);

/* Close (rolling back an open transaction); NULL is allowed. */
void sidedb_close(sidedb_t *c);

/* Run one statement of static text; true when it succeeded. */
bool sidedb_exec(sidedb_t *c, const char *sql);

/* The integer of a one-row query of static text, or -1. */
int64_t sidedb_int(sidedb_t *c, const char *sql);

/* Take the lock every write of a store needs and keep it: SQLite's write
 * lock (BEGIN IMMEDIATE), or on PostgreSQL the row lock of the version
 * counter (BEGIN; UPDATE meta ...), which every write takes. A store's
 * writer then waits until sidedb_unlock or its busy timeout. */
bool sidedb_lock_writes(sidedb_t *c);

/* End that transaction (ROLLBACK). */
bool sidedb_unlock(sidedb_t *c);

/* The committed value of kv row `key` (malloc'd, NUL-terminated; the
 * caller frees), NULL when there is none; *err set on a failure. */
char *sidedb_kv_value(sidedb_t *c, const char *key, bool *err);

#endif
