/*
 * test_storage_pg.c - the PostgreSQL backend's kv replace (storage_kv_replace:
 * the upsert that reports the version it replaced, used by a PUT without
 * preconditions), through the library on a throwaway PostgreSQL
 * (tests/pg.c): "created" is true exactly when no live row was there
 * (absent, deleted or expired), also for several writes of one key in one
 * group transaction, and versions grow in commit order; inside a write the
 * statement is pipelined (its answer comes with the next statement sent),
 * and one that fails there fails alone. The delay queue's claim skips the
 * rows another transaction holds locked (FOR UPDATE SKIP LOCKED). The
 * replace clears a sliding flag (sql/postgresql/005_kv_sliding.sql) as
 * every plain PUT must.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "pg.h"
#include "pg_conn.h"
#include "sqlcached.h"
#include "testutil.h"

static pg_fixture_t fx;

typedef struct fixture {
    testutil_clock_t clock;
    sqlcached_t *db;
    char url[256];
} fixture_t;

/* A trigger that fails every write of the key "boom" (SQLSTATE 22023:
 * invalid_parameter_value, a data exception: INVALID_ARGUMENT). */
static const char SQL_BOOM_FN[] =
    "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.key = '\\x626f6f6d'::bytea THEN "
    "RAISE EXCEPTION 'boom' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$";
static const char SQL_BOOM_TRIGGER[] = "CREATE TRIGGER kv_boom BEFORE INSERT OR UPDATE ON kv "
                                       "FOR EACH ROW EXECUTE FUNCTION boom()";

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

/* A library over a fresh schema, with a fake clock. */
static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f || pg_fixture_new_db(&fx, f->url, sizeof f->url) != 0) {
        free(f);
        return -1;
    }
    f->clock.now = 1700000000000LL;
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.path = f->url;
    o.purge_interval_ms = -1;
    o.clock_ms = testutil_clock_read;
    o.clock_arg = &f->clock;
    char err[256] = "";
    if (sqlcached_open(&o, &f->db, err, sizeof err) != SQLCACHED_OK) {
        fprintf(stderr, "open: %s\n", err);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sqlcached_close(f->db);
    free(f);
    return 0;
}

static sqlcached_status_t put(sqlcached_t *db, const char *k, const char *v, int64_t ttl_ms,
                              sqlcached_write_result_t *r)
{
    sqlcached_put_options_t o = {.ttl_ms = ttl_ms};
    return sqlcached_kv_put(db, k, strlen(k), v, strlen(v), &o, r);
}

/* The stored value of k equals v. */
static void assert_value(sqlcached_t *db, const char *k, const char *v)
{
    sqlcached_value_t *got = NULL;
    assert_int_equal(sqlcached_kv_get(db, k, strlen(k), &got), SQLCACHED_OK);
    assert_int_equal(got->len, strlen(v));
    assert_memory_equal(got->data, v, strlen(v));
    sqlcached_value_release(got);
}

static void test_replace_reports_created(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t a, b, c, d;
    assert_int_equal(put(f->db, "k", "1", 0, &a), SQLCACHED_OK);
    assert_true(a.created);
    assert_int_equal(put(f->db, "k", "2", 0, &b), SQLCACHED_OK);
    assert_false(b.created);
    assert_true(b.version > a.version);
    assert_value(f->db, "k", "2");

    assert_int_equal(sqlcached_kv_delete(f->db, "k", 1, NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "k", "3", 0, &c), SQLCACHED_OK);
    assert_true(c.created);
    assert_true(c.version > b.version);

    /* an expired row is absent: the next write creates the key */
    assert_int_equal(put(f->db, "t", "1", 1000, &d), SQLCACHED_OK);
    assert_true(d.created);
    assert_int_equal(put(f->db, "t", "2", 1000, &d), SQLCACHED_OK);
    assert_false(d.created); /* still live */
    f->clock.now += 2000;
    assert_int_equal(put(f->db, "t", "3", 0, &d), SQLCACHED_OK);
    assert_true(d.created);
    assert_int_equal(d.expires_at, 0);
    assert_value(f->db, "t", "3");
}

/* Writes with preconditions take the other path (read, check, upsert). */
static void test_conditional_puts_unchanged(void **state)
{
    fixture_t *f = *state;
    sqlcached_write_result_t a;
    sqlcached_match_t any = {SQLCACHED_MATCH_ANY, NULL, 0};
    sqlcached_put_options_t absent = {.pre = {.if_none_match = any}};
    assert_int_equal(sqlcached_kv_put(f->db, "c", 1, "1", 1, &absent, &a), SQLCACHED_OK);
    assert_true(a.created);
    assert_int_equal(sqlcached_kv_put(f->db, "c", 1, "2", 1, &absent, NULL),
                     SQLCACHED_PRECONDITION_FAILED);
    assert_value(f->db, "c", "1");
}

#define SAME_KEY_WRITES 16
#define BATCH_WRITES 16

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    sqlcached_status_t status[SAME_KEY_WRITES];
    int order[SAME_KEY_WRITES]; /* completion order */
} waiter_t;

typedef struct one_write {
    waiter_t *w;
    int i;
    sqlcached_write_result_t r;
} one_write_t;

static void on_done(void *cls, sqlcached_status_t st)
{
    one_write_t *o = cls;
    pthread_mutex_lock(&o->w->lock);
    o->w->status[o->i] = st;
    o->w->order[o->w->done++] = o->i;
    pthread_cond_signal(&o->w->cond);
    pthread_mutex_unlock(&o->w->lock);
}

/* Many writes of one new key queued at once (they share group
 * transactions): exactly the first one creates it, and versions grow in
 * the order the writes complete. */
static void test_replace_same_key_in_one_batch(void **state)
{
    fixture_t *f = *state;
    waiter_t w = {.done = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    one_write_t ws[SAME_KEY_WRITES];
    char vals[SAME_KEY_WRITES][8];
    for (int i = 0; i < SAME_KEY_WRITES; i++) {
        ws[i] = (one_write_t){.w = &w, .i = i};
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        assert_int_equal(sqlcached_kv_put_async(f->db, "same", 4, vals[i], strlen(vals[i]), NULL,
                                                &ws[i].r, on_done, &ws[i]),
                         SQLCACHED_OK);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&w.lock);
    while (w.done < SAME_KEY_WRITES && pthread_cond_timedwait(&w.cond, &w.lock, &until) == 0)
        ;
    pthread_mutex_unlock(&w.lock);
    assert_int_equal(w.done, SAME_KEY_WRITES);
    int created = 0;
    for (int i = 0; i < SAME_KEY_WRITES; i++) {
        assert_int_equal(w.status[i], SQLCACHED_OK);
        created += ws[i].r.created;
        if (i > 0)
            assert_true(ws[w.order[i]].r.version > ws[w.order[i - 1]].r.version);
    }
    assert_int_equal(created, 1);
    assert_true(ws[w.order[0]].r.created);
    assert_value(f->db, "same", vals[w.order[SAME_KEY_WRITES - 1]]);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
}

/* Writes queued at once (they share group transactions, their statements
 * one pipeline), one of which the database refuses: that one fails alone,
 * every other one is stored and answered as such. */
static void test_failed_write_in_pipeline_fails_alone(void **state)
{
    fixture_t *f = *state;
    pg_conn_config_t cfg = {.url = f->url, .durability = SQLCACHED_DURABILITY_FULL};
    pg_conn_rc_t rc;
    char err[256];
    pg_conn_t *c = pg_conn_open(&cfg, &rc, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(pg_conn_run(c, SQL_BOOM_FN, NULL, NULL), PG_CONN_OK);
    assert_int_equal(pg_conn_run(c, SQL_BOOM_TRIGGER, NULL, NULL), PG_CONN_OK);
    pg_conn_close(c);

    waiter_t w = {.done = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    one_write_t ws[BATCH_WRITES];
    char keys[BATCH_WRITES][8];
    for (int i = 0; i < BATCH_WRITES; i++) {
        ws[i] = (one_write_t){.w = &w, .i = i};
        snprintf(keys[i], sizeof keys[i], i == BATCH_WRITES / 2 ? "boom" : "b%d", i);
        assert_int_equal(sqlcached_kv_put_async(f->db, keys[i], strlen(keys[i]), keys[i],
                                                strlen(keys[i]), NULL, &ws[i].r, on_done, &ws[i]),
                         SQLCACHED_OK);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&w.lock);
    while (w.done < BATCH_WRITES && pthread_cond_timedwait(&w.cond, &w.lock, &until) == 0)
        ;
    pthread_mutex_unlock(&w.lock);
    assert_int_equal(w.done, BATCH_WRITES);
    for (int i = 0; i < BATCH_WRITES; i++) {
        sqlcached_value_t *got = NULL;
        if (i == BATCH_WRITES / 2) {
            assert_int_equal(w.status[i], SQLCACHED_INVALID_ARGUMENT);
            assert_int_equal(sqlcached_kv_get(f->db, "boom", 4, &got), SQLCACHED_NOT_FOUND);
            continue;
        }
        assert_int_equal(w.status[i], SQLCACHED_OK);
        assert_true(ws[i].r.created);
        assert_value(f->db, keys[i], keys[i]);
    }
    /* the writer goes on */
    sqlcached_write_result_t r;
    assert_int_equal(put(f->db, "after", "1", 0, &r), SQLCACHED_OK);
    assert_true(r.created);
    assert_int_equal(put(f->db, "boom", "1", 0, NULL), SQLCACHED_INVALID_ARGUMENT);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
}

/* ------------------------------------------------------------------------
 * Delay queue: a claim skips the rows another transaction holds (another
 * node's claim in flight) instead of waiting for them or taking them.
 * ------------------------------------------------------------------------ */

static const char SQL_OTHER_CLAIM[] =
    "UPDATE jobs SET worker = 'other-node', claim_token = 999999, run_at = 1700000060000 "
    "WHERE queue = 'q' AND id = 'a'";

static void test_queue_claim_skips_locked_rows(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sqlcached_queue_enqueue(f->db, "q", 1, "a", 1, "1", 1, 0, NULL, NULL),
                     SQLCACHED_OK);
    f->clock.now += 1;
    assert_int_equal(sqlcached_queue_enqueue(f->db, "q", 1, "b", 1, "2", 1, 0, NULL, NULL),
                     SQLCACHED_OK);
    pg_conn_config_t cfg = {.url = f->url, .durability = SQLCACHED_DURABILITY_FULL};
    pg_conn_rc_t rc;
    char err[256];
    pg_conn_t *c = pg_conn_open(&cfg, &rc, err, sizeof err);
    assert_non_null(c);
    /* another node's claim of "a", not committed yet: its row is locked */
    assert_int_equal(pg_conn_begin(c), PG_CONN_OK);
    assert_int_equal(pg_conn_run(c, SQL_OTHER_CLAIM, NULL, NULL), PG_CONN_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sqlcached_jobs_t *jobs = NULL;
    assert_int_equal(sqlcached_queue_claim(f->db, "q", 1, "w", 1, 1000, 0, 2, &jobs), SQLCACHED_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(jobs->count, 1); /* "a" skipped, not waited for */
    assert_string_equal(jobs->jobs[0].id, "b");
    sqlcached_jobs_free(jobs);
    assert_true(t1.tv_sec - t0.tv_sec < 2);
    assert_int_equal(pg_conn_commit(c), PG_CONN_OK);
    pg_conn_close(c);
    /* committed: "a" is the other node's until its claim ends */
    assert_int_equal(sqlcached_queue_claim(f->db, "q", 1, "w", 1, 1000, 0, 2, &jobs), SQLCACHED_OK);
    assert_int_equal(jobs->count, 0);
    sqlcached_jobs_free(jobs);
    sqlcached_job_t job;
    assert_int_equal(sqlcached_queue_get(f->db, "q", 1, "a", 1, &job), SQLCACHED_OK);
    assert_int_equal(job.state, SQLCACHED_JOB_CLAIMED);
    assert_int_equal(job.claim_token, 999999);
    sqlcached_job_clear(&job);
}

/* A plain PUT (the replace path) over a sliding key: the row stops
 * sliding, so a read near its expiry extends nothing. */
static void test_replace_clears_sliding(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = f->clock.now;
    sqlcached_put_options_t o = {.ttl_ms = 10000, .sliding = 1};
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "a", 1, &o, NULL), SQLCACHED_OK);
    assert_int_equal(put(f->db, "s", "b", 10000, NULL), SQLCACHED_OK); /* replace */
    f->clock.now = t0 + 8000;
    assert_value(f->db, "s", "b"); /* would queue an extension if still sliding */
    assert_int_equal(put(f->db, "flush", "x", 0, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 10000;
    sqlcached_value_t *v = NULL;
    assert_int_equal(sqlcached_kv_get(f->db, "s", 1, &v), SQLCACHED_NOT_FOUND);
    /* and a sliding PUT over it slides again */
    f->clock.now = t0 + 20000;
    assert_int_equal(sqlcached_kv_put(f->db, "s", 1, "c", 1, &o, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 28000;
    assert_value(f->db, "s", "c");
    assert_int_equal(put(f->db, "flush", "y", 0, NULL), SQLCACHED_OK);
    f->clock.now = t0 + 37000;
    assert_value(f->db, "s", "c");
}

int main(void)
{
    if (pg_fixture_skip())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replace_reports_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_clears_sliding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional_puts_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_same_key_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_in_pipeline_fails_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_claim_skips_locked_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
