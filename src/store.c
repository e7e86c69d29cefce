/*
 * store.c - the group-commit writer, the reader pool, the writer's counter
 * cache, health and the stop deadline, over any backend (see store.h, and
 * storage.h for what a backend provides).
 *
 * Data structures:
 *   - the writer: one backend connection owned by writer_main(); a FIFO of
 *     write_job_t that callers push (each job lives on its caller's stack
 *     until the job is marked done).
 *   - the reader pool: a free list of reader connections.
 *
 * Locking: `lock` guards the job queue and the stop flag; each job has its
 * own condition variable on which its caller waits. `pool_lock` guards the
 * reader free list. The writer connection is touched only by the writer
 * thread (and by store_open/store_close when the thread is not running).
 *
 * Group commit: the writer takes every job queued (up to max_batch), opens
 * one transaction, runs each job inside a savepoint, commits once, runs the
 * on_commit hook of each job that succeeded, then wakes the callers that
 * wait (store_write) and calls the completion callbacks of the others
 * (store_write_async, whose jobs are heap-allocated and freed by the writer
 * after their callback). A backend that pipelines statements may learn
 * that a job failed only after its function returned, at the latest at
 * COMMIT: it stores the failure in the job's status (w->job_status, set
 * around each job), which is what decides on_commit and the answer. If
 * the backend drops the transaction mid-batch
 * (SQLITE_FULL can do that, a lost connection does), or the commit fails,
 * every job of the batch reports the error: nothing half-written is ever
 * acknowledged.
 *
 * Health: every write transaction that fails records its error and the
 * time (under health_lock); the next commit that changed a row clears it
 * (one that changed nothing proves nothing: on SQLite it writes no page).
 * The backend's check (store_check_files(), the maintenance thread, every
 * tick; SQLite compares its files with those it opened) can latch "writes
 * refused": from then on every batch is refused (SQLCACHED_UNAVAILABLE)
 * until the store is reopened, and the writer lets the backend salvage
 * once what was acknowledged (SQLite checkpoints the WAL it still holds
 * open into the database file it still holds open).
 *
 * Stopping (store_drain): from the deadline on, the writer never starts a
 * job. A batch waiting for a lock gives up (the backend's wait looks at
 * store_deadline_ms()); jobs still queued, or queued later, fail
 * UNAVAILABLE without running; their callers are told exactly as for any
 * failed write, so a caller learns every outcome from the writer and never
 * has to guess: a job that reported a failure was not stored and will not
 * be. A batch that began before the deadline runs to its commit.
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "storage.h"

typedef struct write_job {
    store_write_fn fn;
    store_commit_fn on_commit; /* may be NULL */
    void *arg;
    sqlcached_status_t status;
    bool done;
    pthread_cond_t cond;   /* store_write: the caller waits on it */
    store_done_fn on_done; /* store_write_async: called, then the job freed */
    void *done_cls;
    struct write_job *next;
} write_job_t;

/* What the store knows about its ability to write (under health_lock). */
typedef struct health {
    bool failing;                  /* the last write transaction failed */
    sqlcached_status_t last_error; /* of the last failed transaction */
    int64_t last_error_at;         /* wall clock, ms; 0 = never */
    char error[160];               /* its message */
    bool moved;                    /* the backend's check failed: latched */
    bool rescued;                  /* the writer has salvaged since */
    char moved_reason[400];
} health_t;

struct store {
    store_config_t cfg;
    char *path;
    const storage_backend_t *backend;
    storage_db_t *db;
    store_conn_t *writer;
    pthread_mutex_t health_lock;
    health_t health;

    pthread_t writer_thread;
    bool writer_started;
    pthread_mutex_t lock;
    pthread_cond_t queue_cond;
    write_job_t *head, *tail;
    bool stopping;
    store_stats_t stats;         /* under lock */
    _Atomic int64_t deadline_ms; /* store_drain: CLOCK_MONOTONIC ms, 0 = none */

    pthread_mutex_t pool_lock;
    store_conn_t *free_readers;
    store_conn_t *all_readers;
};

/* ------------------------------------------------------------------------
 * Backends
 * ------------------------------------------------------------------------ */

const storage_backend_t *storage_backend_for(const char *path)
{
    if (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0)
        return &storage_pg;
    return &storage_sqlite;
}

const char *store_backend_name(const store_t *s)
{
    return s->backend->name;
}

void store_set_hooks(store_t *s, const store_hooks_t *hooks, void *cls)
{
    pthread_mutex_lock(&s->lock); /* the writer reads them after taking a batch */
    s->writer->hooks = hooks;
    s->writer->hooks_cls = cls;
    pthread_mutex_unlock(&s->lock);
}

void store_note(store_conn_t *w, char kind, const void *key, size_t len, int64_t version)
{
    if (w->hooks)
        w->hooks->note(w->hooks_cls, kind, key, len, version);
}

store_conn_t *store_link_open(store_t *s, char *err, size_t errlen)
{
    if (!s->backend->cluster) {
        snprintf(err, errlen, "the %s backend has no cluster", s->backend->name);
        return NULL;
    }
    return s->backend->cluster->link_open(s->db, err, errlen);
}

void store_link_close(store_t *s, store_conn_t *l)
{
    if (l)
        s->backend->engine->conn_close(l);
}

/* ------------------------------------------------------------------------
 * Health: the last write error, and the backend's check
 * ------------------------------------------------------------------------ */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A write transaction failed with st (the writer's last error says why).
 * Out of memory says nothing about the storage; once writes are refused
 * the reason is already known. */
static void health_failed(store_t *s, sqlcached_status_t st)
{
    if (st == SQLCACHED_NOMEM)
        return;
    char why[sizeof s->health.error];
    s->backend->engine->describe_error(s->writer, why, sizeof why);
    pthread_mutex_lock(&s->health_lock);
    if (!s->health.moved) {
        s->health.failing = true;
        s->health.last_error = st;
        s->health.last_error_at = wall_ms();
        snprintf(s->health.error, sizeof s->health.error, "%s", why);
    }
    pthread_mutex_unlock(&s->health_lock);
}

static void health_committed(store_t *s)
{
    pthread_mutex_lock(&s->health_lock);
    s->health.failing = false;
    pthread_mutex_unlock(&s->health_lock);
}

static bool writes_refused(store_t *s)
{
    pthread_mutex_lock(&s->health_lock);
    bool moved = s->health.moved;
    pthread_mutex_unlock(&s->health_lock);
    return moved;
}

/* Once writes are refused: let the backend keep what was acknowledged.
 * Writer thread only. */
static void salvage_once(store_t *s)
{
    pthread_mutex_lock(&s->health_lock);
    bool todo = s->health.moved && !s->health.rescued;
    s->health.rescued = true;
    pthread_mutex_unlock(&s->health_lock);
    if (todo && s->backend->engine->salvage)
        s->backend->engine->salvage(s->writer);
}

bool store_check_files(store_t *s)
{
    char reason[sizeof s->health.moved_reason];
    if (writes_refused(s) || !s->backend->engine->check ||
        !s->backend->engine->check(s->db, reason, sizeof reason))
        return false;
    pthread_mutex_lock(&s->health_lock);
    s->health.moved = true;
    snprintf(s->health.moved_reason, sizeof s->health.moved_reason, "%s", reason);
    pthread_mutex_unlock(&s->health_lock);
    log_error("store",
              "%s; stop sqlcached with SIGTERM (not SIGKILL) so that it keeps what it "
              "holds, then restart it",
              reason);
    return true;
}

void store_health(store_t *s, sqlcached_health_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->health_lock);
    const health_t *h = &s->health;
    out->writable = !h->moved && !h->failing;
    out->files_moved = h->moved;
    out->last_error = h->last_error;
    out->last_error_at = h->last_error_at;
    if (h->moved)
        snprintf(out->reason, sizeof out->reason, "%s", h->moved_reason);
    else if (h->failing)
        snprintf(out->reason, sizeof out->reason, "the last write failed: %s", h->error);
    pthread_mutex_unlock(&s->health_lock);
}

/* ------------------------------------------------------------------------
 * Counters
 * ------------------------------------------------------------------------ */

/* The counter through the backend alone (a name the cache cannot hold). */
static sqlcached_status_t counter_next_uncached(store_conn_t *w, const char *name, int64_t *out)
{
    const storage_engine_ops_t *e = w->backend->engine;
    int64_t v;
    bool found;
    sqlcached_status_t st = e->counter_get(w, name, &v);
    if (st == SQLCACHED_OK)
        st = e->counter_set(w, name, v + 1, &found);
    if (st == SQLCACHED_OK && !found)
        st = SQLCACHED_INTERNAL;
    if (st == SQLCACHED_OK)
        *out = v + 1;
    return st;
}

/* Counters are read from the store once, then counted in memory by the
 * writer; the transaction writes each changed one back once, just before
 * COMMIT (counters_flush), instead of one UPDATE ... RETURNING per write,
 * which cost about as much as the write itself. A value taken by a write
 * whose savepoint is rolled back is skipped, not reused: versions still
 * only grow. When a transaction fails, or the backend says another writer
 * may have counted since (counters_valid), the cache is dropped and the
 * rows read afresh (and, read inside the transaction, locked until its
 * commit: values grow in commit order). */
sqlcached_status_t store_counter_next(store_conn_t *w, const char *name, int64_t *out)
{
    store_counter_t *c = NULL;
    for (int i = 0; i < w->ncounters && !c; i++)
        if (strcmp(w->counters[i].name, name) == 0)
            c = &w->counters[i];
    if (!c) {
        if (w->ncounters == STORE_MAX_COUNTERS || strlen(name) >= sizeof c->name)
            return counter_next_uncached(w, name, out);
        int64_t value;
        sqlcached_status_t st = w->backend->engine->counter_get(w, name, &value);
        if (st != SQLCACHED_OK)
            return st;
        c = &w->counters[w->ncounters++];
        snprintf(c->name, sizeof c->name, "%s", name);
        c->value = value;
        c->dirty = false;
    }
    c->value++;
    c->dirty = true;
    *out = c->value;
    return SQLCACHED_OK;
}

/* Write the counters changed in this transaction back. */
static sqlcached_status_t counters_flush(store_conn_t *w)
{
    for (int i = 0; i < w->ncounters; i++) {
        store_counter_t *c = &w->counters[i];
        if (!c->dirty)
            continue;
        bool found;
        sqlcached_status_t st = w->backend->engine->counter_set(w, c->name, c->value, &found);
        if (st != SQLCACHED_OK)
            return st;
        if (!found) {
            /* the row went away inside this transaction: forget it */
            w->counters[i--] = w->counters[--w->ncounters];
            continue;
        }
        c->dirty = false;
    }
    return SQLCACHED_OK;
}

/* ------------------------------------------------------------------------
 * The stop deadline
 * ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t store_deadline_ms(store_t *s)
{
    return atomic_load(&s->deadline_ms);
}

/* Has the stop deadline (store_drain) passed? */
static bool past_deadline(store_t *s)
{
    int64_t deadline = atomic_load(&s->deadline_ms);
    return deadline != 0 && mono_ms() >= deadline;
}

void store_drain(store_t *s, unsigned timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    int64_t cur = atomic_load(&s->deadline_ms);
    while ((cur == 0 || deadline < cur) &&
           !atomic_compare_exchange_weak(&s->deadline_ms, &cur, deadline))
        ;
}

/* ------------------------------------------------------------------------
 * The writer thread: batches
 * ------------------------------------------------------------------------ */

/* Take up to max_batch jobs off the queue, waiting for at least one.
 * Returns NULL when stopping and the queue is empty. */
static write_job_t *take_batch(store_t *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->head && !s->stopping)
        pthread_cond_wait(&s->queue_cond, &s->lock);
    if (s->head && !s->stopping) {
        /* Woken by the first write: let the worker that queued it run on
         * (its other connections may hold writes too) before taking the
         * batch. When the writer shares a core with the workers this
         * turned batches of ~14 writes into ~40 under 64 connections of
         * PUTs, and of ~1 into ~15 in a 10%-write mix; on an idle core it
         * returns at once. */
        pthread_mutex_unlock(&s->lock);
        sched_yield();
        pthread_mutex_lock(&s->lock);
    }
    write_job_t *batch = s->head;
    write_job_t *last = batch;
    for (unsigned n = 1; last && last->next && n < s->cfg.max_batch; n++)
        last = last->next;
    if (last) {
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    return batch;
}

/* Run one job inside its savepoint. */
static void run_job(store_conn_t *w, write_job_t *job)
{
    const storage_engine_ops_t *e = w->backend->engine;
    sqlcached_status_t st = e->savepoint(w);
    if (st != SQLCACHED_OK) {
        job->status = st;
        return;
    }
    w->job_status = &job->status; /* a later failure of this write lands there */
    job->status = job->fn(w, job->arg);
    if (!e->in_transaction(w))
        return; /* the backend ended the whole transaction */
    if (job->status != SQLCACHED_OK)
        e->rollback_to(w);
    st = e->release(w);
    if (st != SQLCACHED_OK && job->status == SQLCACHED_OK)
        job->status = st;
}

/* Mark every job of the batch that thought it succeeded as failed. */
static void fail_batch(write_job_t *batch, sqlcached_status_t st)
{
    for (write_job_t *j = batch; j; j = j->next)
        if (j->status == SQLCACHED_OK)
            j->status = st;
}

/* Run the batch in one transaction; returns how it went (OK = committed),
 * each job's own status in job->status. */
static sqlcached_status_t run_transaction(store_conn_t *w, write_job_t *batch)
{
    const storage_engine_ops_t *e = w->backend->engine;
    sqlcached_status_t st = e->begin(w);
    if (st != SQLCACHED_OK)
        return st;
    if (!e->counters_valid(w))
        w->ncounters = 0;
    for (write_job_t *j = batch; j; j = j->next) {
        run_job(w, j);
        if (!e->in_transaction(w)) { /* the backend dropped the transaction */
            st = j->status != SQLCACHED_OK ? j->status : SQLCACHED_INTERNAL;
            for (write_job_t *k = j->next; k; k = k->next)
                k->status = st;
            return st;
        }
    }
    st = counters_flush(w);
    if (st == SQLCACHED_OK && w->hooks)
        st = w->hooks->before_commit(w->hooks_cls, w);
    return st == SQLCACHED_OK ? e->commit(w) : st;
}

/* The on_commit hooks of a committed batch, then the hooks' wait; a
 * failure of that wait becomes every job's answer. */
static void run_commit_hooks(store_conn_t *w, write_job_t *batch)
{
    const store_hooks_t *h = w->hooks;
    if (h)
        h->on_commit_begin(w->hooks_cls);
    for (write_job_t *j = batch; j; j = j->next)
        if (j->status == SQLCACHED_OK && j->on_commit)
            j->on_commit(j->arg);
    if (!h)
        return;
    h->on_commit_end(w->hooks_cls);
    sqlcached_status_t st = h->after_commit(w->hooks_cls, w, true);
    if (st != SQLCACHED_OK)
        fail_batch(batch, st);
}

/* Count the batch, wake its store_write callers, then call the completion
 * of each asynchronous job and free it. */
static void complete_batch(store_t *s, write_job_t *batch, unsigned n, bool committed)
{
    write_job_t *async_head = NULL, **async_tail = &async_head;
    pthread_mutex_lock(&s->lock);
    if (committed) {
        s->stats.write_transactions++;
        s->stats.writes_committed += n;
    } else {
        s->stats.write_errors++;
    }
    for (write_job_t *j = batch, *next; j; j = next) {
        next = j->next; /* a woken caller's job is gone at once */
        if (j->on_done) {
            j->next = NULL;
            *async_tail = j;
            async_tail = &j->next;
            continue;
        }
        j->done = true;
        pthread_cond_signal(&j->cond);
    }
    pthread_mutex_unlock(&s->lock);
    for (write_job_t *j = async_head, *next; j; j = next) {
        next = j->next;
        j->on_done(j->done_cls, j->status);
        free(j);
    }
}

static void run_batch(store_t *s, write_job_t *batch)
{
    store_conn_t *w = s->writer;
    const storage_engine_ops_t *e = s->backend->engine;
    unsigned n = 0;
    for (write_job_t *j = batch; j; j = j->next)
        j->status = SQLCACHED_OK, n++;
    if (past_deadline(s)) { /* stopping: never start a job after the deadline */
        log_warn("store", "stopping: %u queued writes not run (the stop deadline passed)", n);
        fail_batch(batch, SQLCACHED_UNAVAILABLE);
        complete_batch(s, batch, n, false);
        return;
    }
    if (writes_refused(s)) { /* commits could not be trusted to last */
        salvage_once(s);
        fail_batch(batch, SQLCACHED_UNAVAILABLE);
        complete_batch(s, batch, n, false);
        return;
    }
    int64_t changes = e->changes(w);
    sqlcached_status_t st = run_transaction(w, batch);
    w->job_status = NULL; /* every answer is in: the commit or rollback waited for them */
    if (st != SQLCACHED_OK) {
        w->ncounters = 0; /* the stored counters hold the truth again after the rollback */
        char why[256];
        e->describe_error(w, why, sizeof why);
        log_warn("store", "write transaction failed: %s", why);
        health_failed(s, st);
        if (e->in_transaction(w))
            e->rollback(w);
        if (w->hooks)
            w->hooks->after_commit(w->hooks_cls, w, false);
        fail_batch(batch, st);
    } else {
        if (e->changes(w) != changes) /* it wrote something */
            health_committed(s);
        run_commit_hooks(w, batch);
    }
    complete_batch(s, batch, n, st == SQLCACHED_OK);
}

static void *writer_main(void *arg)
{
    store_t *s = arg;
    write_job_t *batch;
    while ((batch = take_batch(s)) != NULL)
        run_batch(s, batch);
    return NULL;
}

/* Append a job to the queue (caller holds lock); false when stopping or
 * past the stop deadline. */
static bool do_push_job(store_t *s, write_job_t *job)
{
    if (s->stopping || past_deadline(s))
        return false;
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    pthread_cond_signal(&s->queue_cond);
    return true;
}

sqlcached_status_t store_write(store_t *s, store_write_fn fn, void *arg)
{
    return store_write_then(s, fn, NULL, arg);
}

sqlcached_status_t store_write_then(store_t *s, store_write_fn fn, store_commit_fn on_commit,
                                    void *arg)
{
    write_job_t job = {.fn = fn, .on_commit = on_commit, .arg = arg, .status = SQLCACHED_INTERNAL};
    if (pthread_cond_init(&job.cond, NULL) != 0)
        return SQLCACHED_NOMEM;
    pthread_mutex_lock(&s->lock);
    if (!do_push_job(s, &job)) {
        pthread_mutex_unlock(&s->lock);
        pthread_cond_destroy(&job.cond);
        return SQLCACHED_UNAVAILABLE;
    }
    while (!job.done)
        pthread_cond_wait(&job.cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    pthread_cond_destroy(&job.cond);
    return job.status;
}

sqlcached_status_t store_write_async(store_t *s, store_write_fn fn, store_commit_fn on_commit,
                                     void *arg, store_done_fn on_done, void *cls)
{
    write_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return SQLCACHED_NOMEM;
    *job = (write_job_t){.fn = fn,
                         .on_commit = on_commit,
                         .arg = arg,
                         .status = SQLCACHED_INTERNAL,
                         .on_done = on_done,
                         .done_cls = cls};
    pthread_mutex_lock(&s->lock);
    bool queued = do_push_job(s, job);
    pthread_mutex_unlock(&s->lock);
    if (!queued) {
        free(job);
        return SQLCACHED_UNAVAILABLE;
    }
    return SQLCACHED_OK;
}

/* ------------------------------------------------------------------------
 * Reader pool
 * ------------------------------------------------------------------------ */

store_conn_t *store_reader_acquire(store_t *s)
{
    pthread_mutex_lock(&s->pool_lock);
    store_conn_t *c = s->free_readers;
    if (c)
        s->free_readers = c->next_free;
    pthread_mutex_unlock(&s->pool_lock);
    if (c)
        return c;
    char err[256];
    c = s->backend->engine->conn_open(s->db, false, err, sizeof err);
    if (!c) {
        log_error("store", "%s", err);
        return NULL;
    }
    pthread_mutex_lock(&s->pool_lock);
    c->next_all = s->all_readers;
    s->all_readers = c;
    pthread_mutex_unlock(&s->pool_lock);
    return c;
}

void store_reader_release(store_t *s, store_conn_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->pool_lock);
    c->next_free = s->free_readers;
    s->free_readers = c;
    pthread_mutex_unlock(&s->pool_lock);
}

/* ------------------------------------------------------------------------
 * Open and close
 * ------------------------------------------------------------------------ */

store_t *store_open(const store_config_t *cfg, char *err, size_t errlen)
{
    store_t *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(cfg->path))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    s->cfg = *cfg;
    s->cfg.path = s->path;
    if (s->cfg.max_batch == 0)
        s->cfg.max_batch = 256;
    s->backend = storage_backend_for(s->path);
    pthread_mutex_init(&s->health_lock, NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->queue_cond, NULL);
    s->db = s->backend->engine->open(&s->cfg, s, err, errlen);
    if (!s->db)
        goto fail;
    s->writer = s->backend->engine->conn_open(s->db, true, err, errlen);
    if (!s->writer)
        goto fail;
    if (pthread_create(&s->writer_thread, NULL, writer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(errno));
        goto fail;
    }
    s->writer_started = true;
    return s;
fail:
    store_close(s);
    return NULL;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->queue_cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer_thread, NULL);
    }
    for (store_conn_t *c = s->all_readers, *next; c; c = next) {
        next = c->next_all;
        s->backend->engine->conn_close(c);
    }
    if (s->writer) /* SQLite: the last connection to close checkpoints the WAL */
        s->backend->engine->conn_close(s->writer);
    if (s->db)
        s->backend->engine->close(s->db);
    pthread_cond_destroy(&s->queue_cond);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->health_lock);
    free(s->path);
    free(s);
}

void store_stats(store_t *s, store_stats_t *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}
