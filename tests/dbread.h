/*
 * dbread.h - read-only access to a sqlcached database of either backend,
 * for checkers that verify what the daemon stored (the crash loop after a
 * kill, the PostgreSQL outage test): a SQLite file path, or a postgresql://
 * (postgres://) URL read through libpq.
 *
 * Queries are static SQL text only, with values as parameters ($1, $2...:
 * SQLite reads "$1" as a named parameter, bound here by position, so one
 * text serves both backends where the SQL itself is common). Every column
 * comes back as text (NULL for SQL NULL); libpq's text format, SQLite's
 * sqlite3_column_text. scripts/check-sql checks every call site.
 *
 * A handle is used by one thread at a time.
 */
#ifndef SQLCACHED_TEST_DBREAD_H
#define SQLCACHED_TEST_DBREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dbread dbread_t;

/* Open db read-only (a path: SQLite; a postgresql:// URL: PostgreSQL).
 * NULL with the reason in err. */
dbread_t *dbread_open(const char *db, char *err, size_t errlen);

/* Close and free; NULL is allowed. */
void dbread_close(dbread_t *d);

bool dbread_is_pg(const dbread_t *d);

/* The message of the last failure (owned by d). */
const char *dbread_errmsg(const dbread_t *d);

/* Called with each row's ncols columns (borrowed for the call; NULL for
 * SQL NULL); a non-zero return stops the query and is returned by it. */
typedef int (*dbread_row_fn)(void *cls, int ncols, const char *const *cols);

/* Run the static SQL text sql with nparams text parameters (may be 0);
 * each row to on_row (may be NULL). 0, on_row's non-zero return, or -1 on
 * failure (dbread_errmsg says why). */
int dbread_query(dbread_t *d, const char *sql, int nparams, const char *const *params,
                 dbread_row_fn on_row, void *cls);

/* The first column of the first row of sql (one optional text parameter,
 * NULL = none) as an integer into *out. 0, or -1 (failure, no row, NULL). */
int dbread_int(dbread_t *d, const char *sql, const char *param, int64_t *out);

#endif
