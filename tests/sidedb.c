/*
 * sidedb.c - see sidedb.h. One struct for both backends: exactly one of
 * db (SQLite) and pg (PostgreSQL) is set.
 */
#include "sidedb.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conn.h"

struct sidedb {
    sqlite3 *db;
    pg_conn_t *pg;
};

static const char SQL_BEGIN_IMMEDIATE[] = "BEGIN IMMEDIATE";
static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_LOCK_VERSION[] = "UPDATE meta SET value = value WHERE name = 'version'";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_KV_VALUE_SQLITE[] = "SELECT value FROM kv WHERE key = ?1";
static const char SQL_KV_VALUE_PG[] = "SELECT value FROM kv WHERE key = $1";

sidedb_t *sidedb_open(const char *location)
{
    sidedb_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (pg_conn_is_url(location)) {
        pg_conn_config_t cfg = {.url = location, .durability = SQLCACHED_DURABILITY_FULL};
        pg_conn_rc_t rc;
        char err[256] = "";
        c->pg = pg_conn_open(&cfg, &rc, err, sizeof err);
        if (!c->pg) {
            fprintf(stderr, "sidedb: %s\n", err);
            free(c);
            return NULL;
        }
        return c;
    }
    if (sqlite3_open_v2(location, &c->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(c->db, 5000) != SQLITE_OK) {
        fprintf(stderr, "sidedb: %s: %s\n", location, sqlite3_errmsg(c->db));
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    return c;
}

void sidedb_close(sidedb_t *c)
{
    if (!c)
        return;
    pg_conn_close(c->pg);
    if (c->db && sqlite3_close(c->db) != SQLITE_OK)
        fprintf(stderr, "sidedb: close: %s\n", sqlite3_errmsg(c->db));
    free(c);
}

bool sidedb_exec(sidedb_t *c, const char *sql)
{
    if (c->pg) {
        if (pg_conn_run(c->pg, sql, NULL, NULL) == PG_CONN_OK)
            return true;
        fprintf(stderr, "sidedb: %s: %s\n", sql, pg_conn_errmsg(c->pg));
        return false;
    }
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) == SQLITE_OK)
        return true;
    fprintf(stderr, "sidedb: %s: %s\n", sql, sqlite3_errmsg(c->db));
    return false;
}

int64_t sidedb_int(sidedb_t *c, const char *sql)
{
    int64_t v = -1;
    if (c->pg) {
        PGresult *res = NULL;
        if (pg_conn_run(c->pg, sql, NULL, &res) == PG_CONN_OK && PQntuples(res) == 1)
            v = pg_conn_col_int64(res, 0, 0);
        PQclear(res);
        return v;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

bool sidedb_lock_writes(sidedb_t *c)
{
    if (c->pg)
        return sidedb_exec(c, SQL_BEGIN) && sidedb_exec(c, SQL_LOCK_VERSION);
    return sidedb_exec(c, SQL_BEGIN_IMMEDIATE);
}

bool sidedb_unlock(sidedb_t *c)
{
    return sidedb_exec(c, SQL_ROLLBACK);
}

static char *pg_kv_value(sidedb_t *c, const char *key, bool *err)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, strlen(key));
    PGresult *res = NULL;
    char *v = NULL;
    *err = pg_conn_run(c->pg, SQL_KV_VALUE_PG, &p, &res) != PG_CONN_OK;
    if (!*err && PQntuples(res) == 1) {
        size_t n = 0;
        const void *b = pg_conn_col_bytes(res, 0, 0, &n);
        v = strndup(b ? b : "", n);
        *err = v == NULL;
    }
    PQclear(res);
    return v;
}

char *sidedb_kv_value(sidedb_t *c, const char *key, bool *err)
{
    *err = false;
    if (c->pg)
        return pg_kv_value(c, key, err);
    sqlite3_stmt *st = NULL;
    char *v = NULL;
    if (sqlite3_prepare_v2(c->db, SQL_KV_VALUE_SQLITE, -1, &st, NULL) != SQLITE_OK) {
        *err = true;
        return NULL;
    }
    sqlite3_bind_blob(st, 1, key, (int)strlen(key), SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *b = sqlite3_column_blob(st, 0);
        v = strndup(b ? b : "", (size_t)sqlite3_column_bytes(st, 0));
    }
    *err = rc == SQLITE_ROW ? v == NULL : rc != SQLITE_DONE;
    sqlite3_finalize(st);
    return v;
}
