/*
 * dbread.c - see dbread.h. SQLite through sqlite3_prepare_v2 / bind /
 * column_text on a read-only handle; PostgreSQL through PQexecParams with
 * text results, in a session whose transactions are read-only.
 */
#include "dbread.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DBREAD_MAX_COLS 16

struct dbread {
    sqlite3 *lite;
    PGconn *pg;
    char errmsg[256];
};

static const char SQL_READ_ONLY[] = "SET default_transaction_read_only = on";

static bool is_url(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

static void set_err(dbread_t *d, const char *msg)
{
    snprintf(d->errmsg, sizeof d->errmsg, "%s", msg && *msg ? msg : "unknown error");
    size_t n = strlen(d->errmsg);
    while (n > 0 && d->errmsg[n - 1] == '\n')
        d->errmsg[--n] = '\0';
}

static int open_pg(dbread_t *d, const char *url)
{
    d->pg = PQconnectdb(url);
    if (!d->pg || PQstatus(d->pg) != CONNECTION_OK) {
        set_err(d, d->pg ? PQerrorMessage(d->pg) : "out of memory");
        return -1;
    }
    PGresult *r = PQexec(d->pg, SQL_READ_ONLY);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        set_err(d, PQerrorMessage(d->pg));
    PQclear(r);
    return ok ? 0 : -1;
}

dbread_t *dbread_open(const char *db, char *err, size_t errlen)
{
    dbread_t *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc;
    if (is_url(db)) {
        rc = open_pg(d, db);
    } else {
        rc = sqlite3_open_v2(db, &d->lite, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK ? 0 : -1;
        if (rc != 0)
            set_err(d, d->lite ? sqlite3_errmsg(d->lite) : "out of memory");
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot open %s: %s", is_url(db) ? "the PostgreSQL database" : db,
                 d->errmsg);
        dbread_close(d);
        return NULL;
    }
    return d;
}

void dbread_close(dbread_t *d)
{
    if (!d)
        return;
    if (d->pg)
        PQfinish(d->pg);
    if (d->lite)
        sqlite3_close(d->lite);
    free(d);
}

bool dbread_is_pg(const dbread_t *d)
{
    return d->pg != NULL;
}

const char *dbread_errmsg(const dbread_t *d)
{
    return d->errmsg;
}

static int query_pg(dbread_t *d, const char *sql, int nparams, const char *const *params,
                    dbread_row_fn on_row, void *cls)
{
    PGresult *r = PQexecParams(d->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        set_err(d, PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    int rc = 0, ncols = PQnfields(r);
    if (ncols > DBREAD_MAX_COLS)
        ncols = DBREAD_MAX_COLS;
    for (int row = 0; rc == 0 && on_row && row < PQntuples(r); row++) {
        const char *cols[DBREAD_MAX_COLS];
        for (int c = 0; c < ncols; c++)
            cols[c] = PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
        rc = on_row(cls, ncols, cols);
    }
    PQclear(r);
    return rc;
}

static int query_lite(dbread_t *d, const char *sql, int nparams, const char *const *params,
                      dbread_row_fn on_row, void *cls)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->lite, sql, -1, &st, NULL) != SQLITE_OK) {
        set_err(d, sqlite3_errmsg(d->lite));
        return -1;
    }
    for (int i = 0; i < nparams; i++) {
        if (sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_TRANSIENT) != SQLITE_OK) {
            set_err(d, sqlite3_errmsg(d->lite));
            sqlite3_finalize(st);
            return -1;
        }
    }
    int rc = 0, step = SQLITE_DONE;
    int ncols = sqlite3_column_count(st);
    if (ncols > DBREAD_MAX_COLS)
        ncols = DBREAD_MAX_COLS;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *cols[DBREAD_MAX_COLS];
        for (int c = 0; c < ncols; c++)
            cols[c] = (const char *)sqlite3_column_text(st, c);
        if (on_row)
            rc = on_row(cls, ncols, cols);
    }
    if (rc == 0 && step != SQLITE_DONE) {
        set_err(d, sqlite3_errmsg(d->lite));
        rc = -1;
    }
    sqlite3_finalize(st);
    return rc;
}

int dbread_query(dbread_t *d, const char *sql, int nparams, const char *const *params,
                 dbread_row_fn on_row, void *cls)
{
    if (d->pg)
        return query_pg(d, sql, nparams, params, on_row, cls);
    return query_lite(d, sql, nparams, params, on_row, cls);
}

typedef struct first_int {
    bool found;
    int64_t value;
} first_int_t;

static int take_first(void *cls, int ncols, const char *const *cols)
{
    first_int_t *f = cls;
    if (ncols < 1 || !cols[0])
        return 1;
    f->value = strtoll(cols[0], NULL, 10);
    f->found = true;
    return 1; /* the first row is enough */
}

int dbread_int(dbread_t *d, const char *sql, const char *param, int64_t *out)
{
    first_int_t f = {0};
    const char *params[1] = {param};
    int rc = dbread_query(d, sql, param ? 1 : 0, params, take_first, &f);
    if (rc < 0 || !f.found)
        return -1;
    *out = f.value;
    return 0;
}
