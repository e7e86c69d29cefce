/*
 * pg_conn.h - the libpq layer under the PostgreSQL backend: one connection,
 * its prepared statements, transactions, migrations and reconnection.
 *
 * A pg_conn_t wraps one PGconn and is used by one thread at a time (the
 * writer, or a reader between acquire and release), like store_conn_t.
 *
 * Statements: only static SQL text, prepared once per connection on first
 * use (PQprepare) and cached by the address of the text, then run with
 * PQexecPrepared: values travel as parameters (pg_params_t), never inside
 * the SQL (scripts/check-sql checks every call site). Results come back in
 * binary format; read them with the pg_conn_col_* accessors.
 *
 * Outcomes: every call returns a pg_conn_rc_t, classified from the SQLSTATE
 * (pg_conn_classify) or from the state of the connection;
 * pg_conn_rc_status() turns it into a sqlcached_status_t.
 *
 * Connection loss: a call on a broken connection outside a transaction
 * first reconnects (pg_conn_ensure), at most once per backoff interval,
 * which doubles from backoff_min_ms to backoff_max_ms while the server
 * stays away; meanwhile calls fail at once with PG_CONN_UNAVAILABLE.
 * Inside a transaction nothing reconnects: the transaction is gone, every
 * call fails until pg_conn_rollback() ends it. A COMMIT whose answer is
 * lost returns PG_CONN_IN_DOUBT: it may or may not have committed.
 */
#ifndef SQLCACHED_PG_CONN_H
#define SQLCACHED_PG_CONN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"

typedef struct pg_conn pg_conn_t;

typedef enum pg_conn_rc {
    PG_CONN_OK = 0,
    PG_CONN_UNIQUE,      /* 23505 unique_violation */
    PG_CONN_FOREIGN_KEY, /* 23503 foreign_key_violation (a referenced row is missing) */
    PG_CONN_RETRY,       /* 40001 serialization_failure, 40P01 deadlock: run the
                          * transaction again */
    PG_CONN_FULL,        /* 53100 disk_full */
    PG_CONN_INVALID,     /* class 22, data exception (e.g. bytes that are not UTF-8) */
    PG_CONN_UNAVAILABLE, /* no connection (class 08, server shutting down or
                          * starting, too many connections, read-only standby,
                          * lock or statement timeout) */
    PG_CONN_IN_DOUBT,    /* the connection was lost during COMMIT */
    PG_CONN_NOMEM,       /* allocation failed in this process */
    PG_CONN_ERROR        /* anything else: a bug or an unexpected server error */
} pg_conn_rc_t;

typedef struct pg_conn_config {
    const char *url;                   /* postgresql:// or postgres:// URI (borrowed) */
    sqlcached_durability_t durability; /* FULL: synchronous_commit on; NORMAL: off */
    int connect_timeout_ms;            /* 0 = 5000; libpq counts whole seconds, >= 2 */
    int backoff_min_ms;                /* 0 = 50: first wait after a failed reconnect */
    int backoff_max_ms;                /* 0 = 2000: the wait doubles up to this */
    bool read_only;                    /* every transaction read-only (readers) */
    int lock_timeout_ms;               /* > 0: a statement that waits longer for a
                                        * lock fails (55P03, UNAVAILABLE); 0 = none */
    int idle_tx_timeout_ms;            /* > 0: the server ends the session when it
                                        * sits inside a transaction this long
                                        * without a statement (a paused process):
                                        * its locks go with it; 0 = never */
    /* Optional: a CLOCK_MONOTONIC time in ms (0 = none) past which a
     * statement still running is cancelled (57014, UNAVAILABLE): the
     * store's stop deadline. Called from the connection's thread while a
     * statement runs, about every 100 ms. */
    int64_t (*deadline_ms)(void *arg);
    void *deadline_arg;
} pg_conn_config_t;

/* True if s names a PostgreSQL database (starts with postgresql:// or
 * postgres://) rather than a SQLite file. */
bool pg_conn_is_url(const char *s);

/* Connect, set synchronous_commit per the durability mode. Returns the
 * connection, or NULL with *rc (PG_CONN_UNAVAILABLE: server unreachable or
 * refusing; PG_CONN_INVALID: not a postgresql:// URL or a bad one;
 * PG_CONN_NOMEM; PG_CONN_ERROR: e.g. authentication or no such database)
 * and a message in err (never the password). cfg is copied; cfg->url too. */
pg_conn_t *pg_conn_open(const pg_conn_config_t *cfg, pg_conn_rc_t *rc, char *err, size_t errlen);

/* Close the connection and free everything. NULL is allowed. */
void pg_conn_close(pg_conn_t *c);

/* The underlying PGconn (borrowed; for PQ calls this layer lacks). */
PGconn *pg_conn_raw(pg_conn_t *c);

/* Make sure the connection is up: OK at once when it is; otherwise, unless
 * inside a transaction or within the backoff interval (then
 * PG_CONN_UNAVAILABLE at once), reconnect (blocking up to the connect
 * timeout), forget the prepared statements, apply the settings again. */
pg_conn_rc_t pg_conn_ensure(pg_conn_t *c);

/* Milliseconds until pg_conn_ensure() will try to reconnect (0 = now or
 * connected). For a caller that wants to sleep rather than spin. */
int pg_conn_backoff_ms(pg_conn_t *c);

/* Reconnections that succeeded since the open (a test hook). */
unsigned pg_conn_reconnects(pg_conn_t *c);

/* The SQLSTATE of the last failed call ("" if none or no server answer)
 * and its message (never empty after a failure); owned by c, valid until
 * the next call. */
const char *pg_conn_sqlstate(const pg_conn_t *c);
const char *pg_conn_errmsg(const pg_conn_t *c);

/* ------------------------------------------------------------------------
 * Parameters: up to PG_CONN_MAX_PARAMS values for one statement. Strings
 * and byte strings are borrowed until the call that uses them returns.
 * Cannot fail: one more than the maximum is reported by that call
 * (PG_CONN_ERROR).
 * ------------------------------------------------------------------------ */
#define PG_CONN_MAX_PARAMS 16

typedef struct pg_params {
    int n;
    bool overflow;
    const char *values[PG_CONN_MAX_PARAMS];
    int lengths[PG_CONN_MAX_PARAMS];
    int formats[PG_CONN_MAX_PARAMS];
    char ints[PG_CONN_MAX_PARAMS][24]; /* integers, as decimal text */
} pg_params_t;

void pg_params_init(pg_params_t *p);
void pg_params_int64(pg_params_t *p, int64_t v);    /* any integer column */
void pg_params_text(pg_params_t *p, const char *s); /* NUL-terminated; NULL = SQL NULL */
void pg_params_bytes(pg_params_t *p, const void *data, size_t len); /* BYTEA, may be empty */
void pg_params_null(pg_params_t *p);

/* ------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------ */

/* Run the static SQL text sql (its address names the prepared statement:
 * always pass the same static array) with params p (NULL = none). On
 * PG_CONN_OK, if out is not NULL, *out is the result (binary format), which
 * the caller frees with PQclear(); otherwise *out is NULL. */
pg_conn_rc_t pg_conn_run(pg_conn_t *c, const char *sql, const pg_params_t *p, PGresult **out);

/* Rows affected by an INSERT/UPDATE/DELETE result (PQcmdTuples), 0 if
 * none. */
int64_t pg_conn_affected(const PGresult *r);

/* Column accessors for binary results. col_int64 reads int2, int4 and int8
 * (and 0 for NULL); col_bytes returns the raw bytes of BYTEA or TEXT (NUL-
 * terminated by libpq, so col_text is the same for TEXT). Borrowed from r. */
bool pg_conn_col_null(const PGresult *r, int row, int col);
int64_t pg_conn_col_int64(const PGresult *r, int row, int col);
const void *pg_conn_col_bytes(const PGresult *r, int row, int col, size_t *len);
const char *pg_conn_col_text(const PGresult *r, int row, int col);

/* ------------------------------------------------------------------------
 * Transactions (group commit: BEGIN, then SAVEPOINT / RELEASE or
 * ROLLBACK TO per write, one COMMIT). All return pg_conn_rc_t.
 * ------------------------------------------------------------------------ */
pg_conn_rc_t pg_conn_begin(pg_conn_t *c);
pg_conn_rc_t pg_conn_savepoint(pg_conn_t *c);   /* SAVEPOINT w */
pg_conn_rc_t pg_conn_release(pg_conn_t *c);     /* RELEASE w */
pg_conn_rc_t pg_conn_rollback_to(pg_conn_t *c); /* ROLLBACK TO w: undo one write */
/* PG_CONN_IN_DOUBT when the connection broke before COMMIT's answer came
 * back; any failure ends the transaction (nothing is left open). */
pg_conn_rc_t pg_conn_commit(pg_conn_t *c);
/* Ends the transaction whatever happened to the connection; returns how the
 * ROLLBACK went (PG_CONN_OK also when the connection was already gone: the
 * server rolls back a transaction whose connection ends). */
pg_conn_rc_t pg_conn_rollback(pg_conn_t *c);
bool pg_conn_in_transaction(const pg_conn_t *c);

/* Deferred forms for the group commit: inside a transaction the statement
 * is queued and sent with the next one (pg_conn_run, pg_conn_commit, ...)
 * in one pipeline, one round trip; outside one it runs at once. PG_CONN_OK
 * when queued; a failure of a queued statement is returned by the call
 * that sent it, and ends the whole transaction (rolled back: the caller
 * finds pg_conn_in_transaction() false). */
pg_conn_rc_t pg_conn_savepoint_later(pg_conn_t *c); /* SAVEPOINT w */
pg_conn_rc_t pg_conn_release_later(pg_conn_t *c);   /* RELEASE w */

/* The answer to a pg_conn_run_later() statement: rc, and the result (binary
 * format, borrowed for the call; NULL unless rc is PG_CONN_OK). */
typedef void (*pg_conn_result_fn)(void *cls, pg_conn_rc_t rc, const PGresult *res);

/* A write of the group commit whose answer can wait: inside a transaction,
 * the static SQL text sql with a copy of p (NULL = none) is queued like
 * the deferred SAVEPOINT / RELEASE and sent with the next statement that
 * is answered (at the latest pg_conn_commit); outside one it runs at once.
 * PG_CONN_OK: on_result(cls, ...) is called exactly once, at the latest
 * when the transaction ends (with the failure if it never ran). Any other
 * return: nothing was queued, on_result is not called. The statement must
 * run inside SAVEPOINT w, as the last statement of its write before
 * RELEASE w: if it fails, the pipeline undoes it with ROLLBACK TO w and
 * goes on with the others (see pg_conn.c). */
pg_conn_rc_t pg_conn_run_later(pg_conn_t *c, const char *sql, const pg_params_t *p,
                               pg_conn_result_fn on_result, void *cls);

/* ------------------------------------------------------------------------
 * Migrations
 * ------------------------------------------------------------------------ */
typedef struct pg_conn_migration {
    int version;
    const char *name;
    const char *sql;
} pg_conn_migration_t;

/* Embedded sql/postgresql/ (generated at build time: src/pg_migrations.c). */
extern const pg_conn_migration_t pg_conn_migrations[];
extern const int pg_conn_migration_count;

/* Apply, in one transaction under a transaction-level advisory lock (so
 * two processes opening one database at once apply each migration once),
 * every migration of list[0..n) (in version order) not yet recorded in
 * schema_migrations, and record it. Refuses a database whose schema is
 * newer than the list. PG_CONN_OK, or the failure with a message in err. */
pg_conn_rc_t pg_conn_migrate_list(pg_conn_t *c, const pg_conn_migration_t *list, int n, char *err,
                                  size_t errlen);

/* pg_conn_migrate_list() of the embedded migrations. */
pg_conn_rc_t pg_conn_migrate(pg_conn_t *c, char *err, size_t errlen);

/* ------------------------------------------------------------------------
 * Outcomes
 * ------------------------------------------------------------------------ */

/* The outcome a SQLSTATE stands for (NULL or "" = PG_CONN_ERROR). */
pg_conn_rc_t pg_conn_classify(const char *sqlstate);

/* The library status for an outcome: UNIQUE -> CONFLICT (a caller that
 * expects one, like an order insert, maps it itself), FOREIGN_KEY ->
 * NOT_FOUND, RETRY -> CONFLICT, FULL -> STORAGE_FULL, INVALID ->
 * INVALID_ARGUMENT, UNAVAILABLE and IN_DOUBT -> UNAVAILABLE, NOMEM, ERROR
 * -> INTERNAL. */
sqlcached_status_t pg_conn_rc_status(pg_conn_rc_t rc);

/* A constant name for logs ("unique_violation", ...). */
const char *pg_conn_rc_name(pg_conn_rc_t rc);

#endif
