/*
 * test_pg_conn.c - tests of src/pg_conn.c against a throwaway PostgreSQL
 * (tests/pg.c): migrations (once, idempotent, two openers racing),
 * prepared statements, savepoints, SQLSTATE mapping, reconnection.
 *
 * One cluster for the program; a test that needs an empty schema takes a
 * fresh database (pg_fixture_new_db). Tests that stop the server start it
 * again before they end.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pg.h"
#include "pg_conn.h"

static pg_fixture_t fx;

static const char SQL_COUNT_MIGRATIONS[] = "SELECT COUNT(*) FROM schema_migrations";
static const char SQL_META[] = "SELECT value FROM meta WHERE name = $1";
static const char SQL_COUNT_PREPARED[] = "SELECT COUNT(*) FROM pg_prepared_statements";
static const char SQL_KV_PUT[] =
    "INSERT INTO kv (key, value, content_type, version, expires_at) VALUES ($1, $2, $3, $4, $5)";
static const char SQL_KV_GET[] =
    "SELECT value, content_type, version, expires_at FROM kv WHERE key = $1";
static const char SQL_KV_COUNT[] = "SELECT COUNT(*) FROM kv";
static const char SQL_ITEM_PUT[] =
    "INSERT INTO items (id, name, stock, sold, initial_stock, version) VALUES ($1, $1, $2, 0, $2, 1)";
static const char SQL_ORDER_PUT[] =
    "INSERT INTO orders (order_id, item_id, user_id, created_at) VALUES ($1, $2, $3, 0)";
static const char SQL_SYNC[] = "SELECT current_setting('synchronous_commit')";
static const char SQL_ONE[] = "SELECT 1";
static const char SQL_BACKEND_PID[] = "SELECT pg_backend_pid()";
static const char SQL_LAST_QUERY[] =
    "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1::int AND query = 'BEGIN'";

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static pg_conn_t *open_url(const char *url, sqlcached_durability_t d)
{
    pg_conn_config_t cfg = {.url = url, .durability = d, .connect_timeout_ms = 5000};
    pg_conn_rc_t rc = PG_CONN_ERROR;
    char err[512] = "";
    pg_conn_t *c = pg_conn_open(&cfg, &rc, err, sizeof err);
    if (!c)
        fprintf(stderr, "pg_conn_open: %s (%s)\n", err, pg_conn_rc_name(rc));
    return c;
}

/* A fresh database, migrated; its URL into url. */
static pg_conn_t *open_fresh(char *url, size_t len)
{
    assert_int_equal(pg_fixture_new_db(&fx, url, len), 0);
    pg_conn_t *c = open_url(url, SQLCACHED_DURABILITY_FULL);
    assert_non_null(c);
    char err[512] = "";
    pg_conn_rc_t rc = pg_conn_migrate(c, err, sizeof err);
    if (rc != PG_CONN_OK)
        fprintf(stderr, "migrate: %s\n", err);
    assert_int_equal(rc, PG_CONN_OK);
    return c;
}

/* One integer from sql with an optional text parameter. */
static int64_t query_int(pg_conn_t *c, const char *sql, const char *param)
{
    pg_params_t p;
    pg_params_init(&p);
    if (param)
        pg_params_text(&p, param);
    PGresult *res = NULL;
    pg_conn_rc_t rc = pg_conn_run(c, sql, &p, &res);
    if (rc != PG_CONN_OK)
        fprintf(stderr, "query failed: %s\n", pg_conn_errmsg(c));
    assert_int_equal(rc, PG_CONN_OK);
    assert_int_equal(PQntuples(res), 1);
    int64_t v = pg_conn_col_int64(res, 0, 0);
    PQclear(res);
    return v;
}

static pg_conn_rc_t kv_put(pg_conn_t *c, const char *key, const char *value, int64_t version)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, strlen(key));
    pg_params_bytes(&p, value, strlen(value));
    pg_params_text(&p, "text/plain");
    pg_params_int64(&p, version);
    pg_params_null(&p);
    return pg_conn_run(c, SQL_KV_PUT, &p, NULL);
}

/* Is key in kv? */
static int kv_has(pg_conn_t *c, const char *key)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, key, strlen(key));
    PGresult *res = NULL;
    assert_int_equal(pg_conn_run(c, SQL_KV_GET, &p, &res), PG_CONN_OK);
    int n = PQntuples(res);
    PQclear(res);
    return n;
}

/* Run SQL_ONE until it succeeds (the connection comes back), for at most
 * 20 s; returns the number of failed tries, or -1. */
static int wait_until_up(pg_conn_t *c)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0;; i++) {
        if (pg_conn_run(c, SQL_ONE, NULL, NULL) == PG_CONN_OK)
            return i;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 20)
            return -1;
        int b = pg_conn_backoff_ms(c);
        usleep((useconds_t)(b > 0 ? b : 50) * 1000);
    }
}

static int group_setup(void **state)
{
    (void)state;
    return pg_fixture_start(&fx);
}

static int group_teardown(void **state)
{
    (void)state;
    return pg_fixture_stop(&fx);
}

/* ------------------------------------------------------------------------
 * Migrations
 * ------------------------------------------------------------------------ */

static void test_pg_conn_migrations_applied_once(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    assert_int_equal(query_int(c, SQL_COUNT_MIGRATIONS, NULL), pg_conn_migration_count);
    assert_int_equal(query_int(c, SQL_META, "version"), 0);
    assert_int_equal(query_int(c, SQL_META, "order_id"), 0);
    assert_int_equal(query_int(c, SQL_META, "fencing_token"), 0);

    /* again, on the same and on a new connection: nothing more applied */
    char err[512] = "";
    assert_int_equal(pg_conn_migrate(c, err, sizeof err), PG_CONN_OK);
    pg_conn_t *c2 = open_url(url, SQLCACHED_DURABILITY_FULL);
    assert_non_null(c2);
    assert_int_equal(pg_conn_migrate(c2, err, sizeof err), PG_CONN_OK);
    assert_int_equal(query_int(c2, SQL_COUNT_MIGRATIONS, NULL), pg_conn_migration_count);
    assert_int_equal(query_int(c2, SQL_META, "version"), 0);
    pg_conn_close(c2);
    pg_conn_close(c);
}

static void test_pg_conn_newer_schema_refused(void **state)
{
    (void)state;
    char url[256], err[512] = "";
    pg_conn_t *c = open_fresh(url, sizeof url);
    /* a build that knows only the first migration */
    assert_int_equal(pg_conn_migrate_list(c, pg_conn_migrations, 1, err, sizeof err),
                     PG_CONN_ERROR);
    assert_non_null(strstr(err, "newer than this sqlcached"));
    assert_false(pg_conn_in_transaction(c));
    assert_int_equal(query_int(c, SQL_COUNT_MIGRATIONS, NULL), pg_conn_migration_count);
    pg_conn_close(c);
}

#define RACERS 4

typedef struct racer {
    const char *url;
    pthread_barrier_t *barrier;
    pg_conn_rc_t rc;
    char err[512];
} racer_t;

static void *race_migrate(void *arg)
{
    racer_t *r = arg;
    pg_conn_t *c = open_url(r->url, SQLCACHED_DURABILITY_FULL);
    pthread_barrier_wait(r->barrier);
    r->rc = c ? pg_conn_migrate(c, r->err, sizeof r->err) : PG_CONN_UNAVAILABLE;
    pg_conn_close(c);
    return NULL;
}

/* Several processes opening one new database at once: each migration is
 * applied exactly once and every opener succeeds. */
static void test_pg_conn_concurrent_openers(void **state)
{
    (void)state;
    char url[256];
    assert_int_equal(pg_fixture_new_db(&fx, url, sizeof url), 0);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, RACERS);
    racer_t r[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        r[i] = (racer_t){.url = url, .barrier = &barrier, .rc = PG_CONN_ERROR};
        assert_int_equal(pthread_create(&t[i], NULL, race_migrate, &r[i]), 0);
    }
    int failed = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(t[i], NULL);
        if (r[i].rc != PG_CONN_OK) {
            fprintf(stderr, "opener %d: %s: %s\n", i, pg_conn_rc_name(r[i].rc), r[i].err);
            failed++;
        }
    }
    pthread_barrier_destroy(&barrier);
    assert_int_equal(failed, 0);
    pg_conn_t *c = open_url(url, SQLCACHED_DURABILITY_FULL);
    assert_non_null(c);
    assert_int_equal(query_int(c, SQL_COUNT_MIGRATIONS, NULL), pg_conn_migration_count);
    assert_int_equal(query_int(c, SQL_META, "version"), 0);
    pg_conn_close(c);
}

/* ------------------------------------------------------------------------
 * Statements and transactions
 * ------------------------------------------------------------------------ */

/* Prepared once per connection, then reused; values round-trip as bytes
 * (NUL, 0xff, empty), integers and NULL; text that looks like SQL is data. */
static void test_pg_conn_prepared_statements(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    int64_t before = query_int(c, SQL_COUNT_PREPARED, NULL);
    const char bin[] = {'a', 0, (char)0xff, 'z'};
    const char *evil = "x'); DROP TABLE kv; --";
    for (int i = 0; i < 3; i++) {
        pg_params_t p;
        pg_params_init(&p);
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        pg_params_bytes(&p, key, strlen(key));
        pg_params_bytes(&p, i == 0 ? bin : evil, i == 0 ? sizeof bin : i == 1 ? strlen(evil) : 0);
        pg_params_text(&p, evil);
        pg_params_int64(&p, INT64_MAX - i);
        if (i == 2)
            pg_params_int64(&p, -5);
        else
            pg_params_null(&p);
        assert_int_equal(pg_conn_run(c, SQL_KV_PUT, &p, NULL), PG_CONN_OK);
    }
    /* SQL_KV_PUT and SQL_COUNT_PREPARED: one statement each on the server */
    assert_int_equal(query_int(c, SQL_COUNT_PREPARED, NULL), before + 1);
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 3);

    pg_params_t p;
    pg_params_init(&p);
    pg_params_bytes(&p, "k0", 2);
    PGresult *res = NULL;
    assert_int_equal(pg_conn_run(c, SQL_KV_GET, &p, &res), PG_CONN_OK);
    assert_int_equal(PQntuples(res), 1);
    size_t len = 0;
    const void *v = pg_conn_col_bytes(res, 0, 0, &len);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    assert_string_equal(pg_conn_col_text(res, 0, 1), evil);
    assert_true(pg_conn_col_int64(res, 0, 2) == INT64_MAX);
    assert_true(pg_conn_col_null(res, 0, 3));
    PQclear(res);

    pg_params_init(&p);
    pg_params_bytes(&p, "k2", 2);
    assert_int_equal(pg_conn_run(c, SQL_KV_GET, &p, &res), PG_CONN_OK);
    pg_conn_col_bytes(res, 0, 0, &len);
    assert_int_equal(len, 0);
    assert_false(pg_conn_col_null(res, 0, 0));
    assert_true(pg_conn_col_int64(res, 0, 3) == -5);
    PQclear(res);

    /* one parameter too many is refused, not truncated */
    pg_params_init(&p);
    for (int i = 0; i <= PG_CONN_MAX_PARAMS; i++)
        pg_params_int64(&p, i);
    assert_int_equal(pg_conn_run(c, SQL_ONE, &p, NULL), PG_CONN_ERROR);
    pg_conn_close(c);
}

/* Statement names stay valid while the connection's table of prepared
 * statements grows: a statement queued (SAVEPOINT, deferred) before a new
 * statement's first use is sent by its name after that use moved the table
 * (valgrind and ASan saw reads of freed memory there). */
static void test_pg_conn_names_survive_table_growth(void **state)
{
    (void)state;
    static const char *const sqls[] = {
        "SELECT 1::bigint",  "SELECT 2::bigint",  "SELECT 3::bigint",  "SELECT 4::bigint",
        "SELECT 5::bigint",  "SELECT 6::bigint",  "SELECT 7::bigint",  "SELECT 8::bigint",
        "SELECT 9::bigint",  "SELECT 10::bigint", "SELECT 11::bigint", "SELECT 12::bigint",
        "SELECT 13::bigint", "SELECT 14::bigint", "SELECT 15::bigint", "SELECT 16::bigint",
        "SELECT 17::bigint", "SELECT 18::bigint", "SELECT 19::bigint", "SELECT 20::bigint",
        "SELECT 21::bigint", "SELECT 22::bigint", "SELECT 23::bigint", "SELECT 24::bigint",
        "SELECT 25::bigint", "SELECT 26::bigint", "SELECT 27::bigint", "SELECT 28::bigint",
        "SELECT 29::bigint", "SELECT 30::bigint", "SELECT 31::bigint", "SELECT 32::bigint",
        "SELECT 33::bigint", "SELECT 34::bigint", "SELECT 35::bigint", "SELECT 36::bigint",
        "SELECT 37::bigint", "SELECT 38::bigint", "SELECT 39::bigint", "SELECT 40::bigint"};
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
        assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
        assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
        PGresult *res = NULL;
        assert_int_equal(pg_conn_run(c, sqls[i], NULL, &res), PG_CONN_OK);
        assert_true(pg_conn_col_int64(res, 0, 0) == (int64_t)i + 1);
        PQclear(res);
        assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
        assert_int_equal(pg_conn_commit(c), PG_CONN_OK);
    }
    pg_conn_close(c);
}

/* Group commit: a write that fails inside its savepoint is undone alone;
 * the writes before and after it commit. */
static void test_pg_conn_savepoint_rollback_keeps_neighbours(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    assert_int_equal(kv_put(c, "taken", "0", 1), PG_CONN_OK);

    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "a", "1", 2), PG_CONN_OK);
    assert_int_equal(pg_conn_release(c), PG_CONN_OK);

    assert_int_equal(pg_conn_savepoint(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "b", "2", 3), PG_CONN_OK);
    assert_int_equal(kv_put(c, "taken", "3", 3), PG_CONN_UNIQUE);
    assert_int_equal(pg_conn_rollback_to(c), PG_CONN_OK);
    assert_int_equal(pg_conn_release(c), PG_CONN_OK);

    assert_int_equal(pg_conn_savepoint(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "c", "4", 4), PG_CONN_OK);
    assert_int_equal(pg_conn_release(c), PG_CONN_OK);
    assert_int_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_false(pg_conn_in_transaction(c));

    pg_conn_t *other = open_url(url, SQLCACHED_DURABILITY_FULL);
    assert_non_null(other);
    assert_int_equal(kv_has(other, "a"), 1);
    assert_int_equal(kv_has(other, "b"), 0);
    assert_int_equal(kv_has(other, "c"), 1);
    assert_int_equal(query_int(other, SQL_KV_COUNT, NULL), 3);
    pg_conn_close(other);
    pg_conn_close(c);
}

/* PostgreSQL answers COMMIT of a transaction with a failed statement with
 * success (and rolls back): that must not be taken as a commit. */
static void test_pg_conn_commit_after_error_fails(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    assert_int_equal(kv_put(c, "taken", "0", 1), PG_CONN_OK);
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "new", "1", 2), PG_CONN_OK);
    assert_int_equal(kv_put(c, "taken", "1", 2), PG_CONN_UNIQUE);
    assert_int_not_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_false(pg_conn_in_transaction(c));
    assert_int_equal(kv_has(c, "new"), 0);
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 1);
    pg_conn_close(c);
}

/* Real constraint violations map to the right outcomes and statuses. */
static void test_pg_conn_violations_map(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, "item");
    pg_params_int64(&p, 5);
    assert_int_equal(pg_conn_run(c, SQL_ITEM_PUT, &p, NULL), PG_CONN_OK);

    const char *users[] = {"alice", "alice"};
    pg_conn_rc_t want[] = {PG_CONN_OK, PG_CONN_UNIQUE};
    for (int i = 0; i < 2; i++) {
        pg_params_init(&p);
        pg_params_int64(&p, i + 1);
        pg_params_text(&p, "item");
        pg_params_text(&p, users[i]);
        assert_int_equal(pg_conn_run(c, SQL_ORDER_PUT, &p, NULL), want[i]);
    }
    assert_string_equal(pg_conn_sqlstate(c), "23505");
    assert_int_equal(pg_conn_rc_status(PG_CONN_UNIQUE), SQLCACHED_CONFLICT);

    /* an order for a missing item: foreign key -> NOT_FOUND */
    pg_params_init(&p);
    pg_params_int64(&p, 3);
    pg_params_text(&p, "no-such-item");
    pg_params_text(&p, "bob");
    assert_int_equal(pg_conn_run(c, SQL_ORDER_PUT, &p, NULL), PG_CONN_FOREIGN_KEY);
    assert_int_equal(pg_conn_rc_status(PG_CONN_FOREIGN_KEY), SQLCACHED_NOT_FOUND);

    /* bytes that are not UTF-8 in a TEXT column: data exception */
    pg_params_init(&p);
    pg_params_int64(&p, 4);
    pg_params_text(&p, "item");
    pg_params_text(&p, "\xff\xfe");
    assert_int_equal(pg_conn_run(c, SQL_ORDER_PUT, &p, NULL), PG_CONN_INVALID);
    assert_int_equal(pg_conn_rc_status(PG_CONN_INVALID), SQLCACHED_INVALID_ARGUMENT);

    /* negative stock: a check violation is a bug, INTERNAL */
    pg_params_init(&p);
    pg_params_text(&p, "bad");
    pg_params_int64(&p, -1);
    assert_int_equal(pg_conn_run(c, SQL_ITEM_PUT, &p, NULL), PG_CONN_ERROR);
    assert_string_equal(pg_conn_sqlstate(c), "23514");
    assert_int_equal(pg_conn_rc_status(PG_CONN_ERROR), SQLCACHED_INTERNAL);
    pg_conn_close(c);
}

static void test_pg_conn_classify(void **state)
{
    (void)state;
    static const struct {
        const char *sqlstate;
        pg_conn_rc_t rc;
        sqlcached_status_t status;
    } cases[] = {
        {"53100", PG_CONN_FULL, SQLCACHED_STORAGE_FULL},
        {"08006", PG_CONN_UNAVAILABLE, SQLCACHED_UNAVAILABLE},
        {"08001", PG_CONN_UNAVAILABLE, SQLCACHED_UNAVAILABLE},
        {"57P01", PG_CONN_UNAVAILABLE, SQLCACHED_UNAVAILABLE},
        {"57P03", PG_CONN_UNAVAILABLE, SQLCACHED_UNAVAILABLE},
        {"53300", PG_CONN_UNAVAILABLE, SQLCACHED_UNAVAILABLE},
        {"25006", PG_CONN_UNAVAILABLE, SQLCACHED_UNAVAILABLE},
        {"40001", PG_CONN_RETRY, SQLCACHED_CONFLICT},
        {"40P01", PG_CONN_RETRY, SQLCACHED_CONFLICT},
        {"23505", PG_CONN_UNIQUE, SQLCACHED_CONFLICT},
        {"23503", PG_CONN_FOREIGN_KEY, SQLCACHED_NOT_FOUND},
        {"22021", PG_CONN_INVALID, SQLCACHED_INVALID_ARGUMENT},
        {"42P01", PG_CONN_ERROR, SQLCACHED_INTERNAL},
        {"XX000", PG_CONN_ERROR, SQLCACHED_INTERNAL},
        {"", PG_CONN_ERROR, SQLCACHED_INTERNAL},
        {NULL, PG_CONN_ERROR, SQLCACHED_INTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(pg_conn_classify(cases[i].sqlstate), cases[i].rc);
        assert_int_equal(pg_conn_rc_status(pg_conn_classify(cases[i].sqlstate)), cases[i].status);
    }
    assert_int_equal(pg_conn_rc_status(PG_CONN_IN_DOUBT), SQLCACHED_UNAVAILABLE);
    assert_int_equal(pg_conn_rc_status(PG_CONN_NOMEM), SQLCACHED_NOMEM);
}

static void test_pg_conn_durability_setting(void **state)
{
    (void)state;
    pg_conn_t *full = open_url(fx.url, SQLCACHED_DURABILITY_FULL);
    pg_conn_t *normal = open_url(fx.url, SQLCACHED_DURABILITY_NORMAL);
    assert_non_null(full);
    assert_non_null(normal);
    PGresult *res = NULL;
    assert_int_equal(pg_conn_run(full, SQL_SYNC, NULL, &res), PG_CONN_OK);
    assert_string_equal(pg_conn_col_text(res, 0, 0), "on");
    PQclear(res);
    assert_int_equal(pg_conn_run(normal, SQL_SYNC, NULL, &res), PG_CONN_OK);
    assert_string_equal(pg_conn_col_text(res, 0, 0), "off");
    PQclear(res);
    pg_conn_close(full);
    pg_conn_close(normal);
}

static void test_pg_conn_bad_urls(void **state)
{
    (void)state;
    const struct {
        const char *url;
        pg_conn_rc_t rc;
    } cases[] = {
        {"/var/lib/sqlcached.db", PG_CONN_INVALID},
        {"postgresql://postgres@127.0.0.1:5432/db?nosuchoption=1", PG_CONN_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pg_conn_config_t cfg = {.url = cases[i].url};
        pg_conn_rc_t rc = PG_CONN_OK;
        char err[512] = "";
        assert_null(pg_conn_open(&cfg, &rc, err, sizeof err));
        assert_int_equal(rc, cases[i].rc);
        assert_true(err[0] != '\0');
    }
    /* the server is up but the database does not exist: not UNAVAILABLE */
    char url[300];
    snprintf(url, sizeof url, "%s", fx.url);
    char *slash = strrchr(url, '/');
    snprintf(slash, sizeof url - (size_t)(slash - url), "/no_such_db");
    pg_conn_config_t cfg = {.url = url};
    pg_conn_rc_t rc = PG_CONN_OK;
    char err[512] = "";
    assert_null(pg_conn_open(&cfg, &rc, err, sizeof err));
    assert_int_equal(rc, PG_CONN_ERROR);
    assert_non_null(strstr(err, "no_such_db"));
    assert_true(pg_conn_is_url("postgres://h/d"));
    assert_false(pg_conn_is_url("postgresql:/h"));
}

/* ------------------------------------------------------------------------
 * Connection loss
 * ------------------------------------------------------------------------ */

/* The server restarts: the next call fails UNAVAILABLE (never a false OK),
 * then the connection comes back by itself with its prepared statements
 * and settings. */
static void test_pg_conn_reconnect_after_restart(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    pg_conn_close(c);
    c = open_url(url, SQLCACHED_DURABILITY_NORMAL);
    assert_non_null(c);
    assert_int_equal(kv_put(c, "before", "1", 1), PG_CONN_OK);

    assert_int_equal(pg_fixture_server_stop(&fx), 0);
    assert_int_equal(kv_put(c, "during", "1", 2), PG_CONN_UNAVAILABLE);
    assert_int_equal(pg_conn_rc_status(PG_CONN_UNAVAILABLE), SQLCACHED_UNAVAILABLE);
    assert_int_equal(pg_conn_ensure(c), PG_CONN_UNAVAILABLE);
    assert_int_equal(pg_fixture_server_start(&fx), 0);

    assert_true(wait_until_up(c) >= 0);
    assert_int_equal(pg_conn_reconnects(c), 1);
    /* SQL_KV_PUT was prepared before the restart: prepared again */
    assert_int_equal(kv_put(c, "after", "1", 3), PG_CONN_OK);
    assert_int_equal(kv_has(c, "before"), 1);
    assert_int_equal(kv_has(c, "during"), 0);
    assert_int_equal(kv_has(c, "after"), 1);
    PGresult *res = NULL;
    assert_int_equal(pg_conn_run(c, SQL_SYNC, NULL, &res), PG_CONN_OK);
    assert_string_equal(pg_conn_col_text(res, 0, 0), "off");
    PQclear(res);
    pg_conn_close(c);
}

/* The deferred savepoints of the group commit: nothing is sent until the
 * next statement, which carries them in one pipeline; a write that fails
 * inside its savepoint is still undone alone. */
static void test_pg_conn_deferred_savepoints_keep_neighbours(void **state)
{
    (void)state;
    char url[256], pid[24];
    pg_conn_t *c = open_fresh(url, sizeof url);
    pg_conn_t *other = open_url(url, SQLCACHED_DURABILITY_FULL);
    assert_non_null(other);
    snprintf(pid, sizeof pid, "%lld", (long long)query_int(c, SQL_BACKEND_PID, NULL));
    assert_int_equal(kv_put(c, "taken", "0", 1), PG_CONN_OK);
    /* prepare SAVEPOINT and RELEASE (a Parse shows in pg_stat_activity) */
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_commit(c), PG_CONN_OK);

    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    /* not sent yet: the server's last statement of c is still BEGIN */
    assert_int_equal(query_int(other, SQL_LAST_QUERY, pid), 1);
    assert_int_equal(kv_put(c, "a", "1", 2), PG_CONN_OK);
    assert_int_equal(query_int(other, SQL_LAST_QUERY, pid), 0);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);

    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "b", "2", 3), PG_CONN_OK);
    assert_int_equal(kv_put(c, "taken", "3", 3), PG_CONN_UNIQUE);
    assert_true(pg_conn_in_transaction(c)); /* the write's own failure */
    assert_int_equal(pg_conn_rollback_to(c), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);

    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "c", "4", 4), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    /* a write that runs no statement: its pair travels with the COMMIT */
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_false(pg_conn_in_transaction(c));

    assert_int_equal(kv_has(other, "a"), 1);
    assert_int_equal(kv_has(other, "b"), 0);
    assert_int_equal(kv_has(other, "c"), 1);
    assert_int_equal(query_int(other, SQL_KV_COUNT, NULL), 3);
    pg_conn_close(other);
    pg_conn_close(c);
}

/* What a pg_conn_run_later() statement was answered, and how often. */
typedef struct answer {
    int calls;
    pg_conn_rc_t rc;
} answer_t;

static void answered(void *cls, pg_conn_rc_t rc, const PGresult *res)
{
    answer_t *a = cls;
    a->calls++;
    a->rc = rc;
    assert_true((res != NULL) == (rc == PG_CONN_OK));
}

static pg_conn_rc_t kv_put_later(pg_conn_t *c, const char *key, int64_t version, answer_t *a)
{
    pg_params_t p;
    pg_params_init(&p);
    char k[32]; /* the copy must not depend on this buffer staying */
    snprintf(k, sizeof k, "%s", key);
    pg_params_bytes(&p, k, strlen(k));
    pg_params_bytes(&p, "v", 1);
    pg_params_text(&p, "text/plain");
    pg_params_int64(&p, version);
    pg_params_null(&p);
    *a = (answer_t){0};
    pg_conn_rc_t rc = pg_conn_run_later(c, SQL_KV_PUT, &p, answered, a);
    memset(k, 0, sizeof k);
    return rc;
}

/* Pipelined writes: each answered exactly once; one that fails is undone
 * alone (ROLLBACK TO w inside the pipeline) and the others commit; one
 * whose own write is still running hands its failure to the next
 * statement; a rollback answers what never ran. */
static void test_pg_conn_run_later(void **state)
{
    (void)state;
    char url[256];
    answer_t a, b, d, e, f;
    pg_conn_t *c = open_fresh(url, sizeof url);
    assert_int_equal(kv_put(c, "taken", "0", 1), PG_CONN_OK);

    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put_later(c, "a", 2, &a), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put_later(c, "taken", 3, &b), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put_later(c, "d", 4, &d), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_equal(a.calls + b.calls + d.calls, 0); /* nothing sent yet */
    assert_int_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, PG_CONN_OK);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, PG_CONN_UNIQUE);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, PG_CONN_OK);
    assert_int_equal(kv_has(c, "a"), 1);
    assert_int_equal(kv_has(c, "d"), 1);
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 3);

    /* the failing write's own next statement gets its failure */
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put_later(c, "taken", 5, &e), PG_CONN_OK);
    assert_int_equal(kv_put(c, "e", "1", 6), PG_CONN_UNIQUE);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.rc, PG_CONN_UNIQUE);
    assert_int_equal(pg_conn_rollback_to(c), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_int_equal(kv_has(c, "e"), 0);

    /* a rollback answers what never ran */
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put_later(c, "f", 7, &f), PG_CONN_OK);
    assert_int_equal(pg_conn_rollback(c), PG_CONN_OK);
    assert_int_equal(f.calls, 1);
    assert_int_not_equal(f.rc, PG_CONN_OK);
    assert_int_equal(kv_has(c, "f"), 0);
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 3);
    pg_conn_close(c);
}

/* A deferred statement that fails ends the whole transaction: the write
 * before it is not kept (a failed RELEASE must not leave its savepoint for
 * a later ROLLBACK TO), the call that sent it says so, and the connection
 * is usable afterwards. */
static void test_pg_conn_deferred_failure_ends_transaction(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "a", "1", 1), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK); /* no savepoint w: fails */
    assert_int_not_equal(kv_put(c, "b", "2", 2), PG_CONN_OK);
    assert_string_equal(pg_conn_sqlstate(c), "3B001"); /* the RELEASE's error */
    assert_false(pg_conn_in_transaction(c));
    assert_int_not_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_int_equal(query_int(c, SQL_ONE, NULL), 1);
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 0);

    /* the same when the failure comes with the COMMIT */
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "a", "1", 1), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_not_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_false(pg_conn_in_transaction(c));
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 0);
    pg_conn_close(c);
}

/* Deferred statements on a connection lost inside the transaction: they
 * fail with it, nothing is stored, and the connection comes back. */
static void test_pg_conn_deferred_lost_connection(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "lost", "1", 1), PG_CONN_OK);
    assert_int_equal(pg_conn_release_later(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint_later(c), PG_CONN_OK);
    assert_int_equal(pg_fixture_server_stop(&fx), 0);
    assert_int_equal(pg_fixture_server_start(&fx), 0);
    /* the deferred RELEASE and SAVEPOINT go first and fail: the
     * transaction is over at once */
    assert_int_equal(kv_put(c, "lost2", "1", 2), PG_CONN_UNAVAILABLE);
    assert_false(pg_conn_in_transaction(c));
    assert_int_not_equal(pg_conn_commit(c), PG_CONN_OK);
    assert_int_equal(pg_conn_rollback(c), PG_CONN_OK);
    assert_true(wait_until_up(c) >= 0);
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 0);
    pg_conn_close(c);
}

/* Lost inside a transaction: every call fails until the rollback, nothing
 * reconnects behind the transaction's back, and nothing of it is stored. */
static void test_pg_conn_lost_inside_transaction(void **state)
{
    (void)state;
    char url[256];
    pg_conn_t *c = open_fresh(url, sizeof url);
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_savepoint(c), PG_CONN_OK);
    assert_int_equal(kv_put(c, "lost", "1", 1), PG_CONN_OK);
    assert_int_equal(pg_fixture_server_stop(&fx), 0);
    assert_int_equal(pg_fixture_server_start(&fx), 0);
    assert_int_equal(pg_conn_release(c), PG_CONN_UNAVAILABLE);
    assert_int_equal(kv_put(c, "lost2", "1", 2), PG_CONN_UNAVAILABLE);
    pg_conn_rc_t rc = pg_conn_commit(c);
    assert_true(rc == PG_CONN_UNAVAILABLE || rc == PG_CONN_IN_DOUBT);
    assert_false(pg_conn_in_transaction(c));
    assert_int_equal(pg_conn_rollback(c), PG_CONN_OK);
    assert_true(wait_until_up(c) >= 0);
    assert_int_equal(query_int(c, SQL_KV_COUNT, NULL), 0);
    pg_conn_close(c);
}

/* The server is down: opening fails with UNAVAILABLE (503), not INTERNAL. */
static void test_pg_conn_down_is_unavailable(void **state)
{
    (void)state;
    assert_int_equal(pg_fixture_server_stop(&fx), 0);
    pg_conn_config_t cfg = {.url = fx.url, .connect_timeout_ms = 2000};
    pg_conn_rc_t rc = PG_CONN_OK;
    char err[512] = "";
    pg_conn_t *c = pg_conn_open(&cfg, &rc, err, sizeof err);
    int started = pg_fixture_server_start(&fx);
    assert_null(c);
    assert_int_equal(rc, PG_CONN_UNAVAILABLE);
    assert_int_equal(pg_conn_rc_status(rc), SQLCACHED_UNAVAILABLE);
    assert_non_null(strstr(err, "cannot connect"));
    assert_int_equal(started, 0);
}

int main(void)
{
    if (pg_fixture_skip())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg_conn_classify),
        cmocka_unit_test(test_pg_conn_migrations_applied_once),
        cmocka_unit_test(test_pg_conn_newer_schema_refused),
        cmocka_unit_test(test_pg_conn_concurrent_openers),
        cmocka_unit_test(test_pg_conn_prepared_statements),
        cmocka_unit_test(test_pg_conn_names_survive_table_growth),
        cmocka_unit_test(test_pg_conn_savepoint_rollback_keeps_neighbours),
        cmocka_unit_test(test_pg_conn_commit_after_error_fails),
        cmocka_unit_test(test_pg_conn_violations_map),
        cmocka_unit_test(test_pg_conn_durability_setting),
        cmocka_unit_test(test_pg_conn_bad_urls),
        cmocka_unit_test(test_pg_conn_reconnect_after_restart),
        cmocka_unit_test(test_pg_conn_lost_inside_transaction),
        cmocka_unit_test(test_pg_conn_down_is_unavailable),
        cmocka_unit_test(test_pg_conn_deferred_savepoints_keep_neighbours),
        cmocka_unit_test(test_pg_conn_deferred_failure_ends_transaction),
        cmocka_unit_test(test_pg_conn_deferred_lost_connection),
        cmocka_unit_test(test_pg_conn_run_later),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
