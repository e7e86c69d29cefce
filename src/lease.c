/*
 * lease.c - leases (distributed locks) with fencing tokens, and their
 * waiters.
 *
 * Storage: the lease operations of the storage seam (storage.h), one row
 * per held lease; the fencing token counter is the store counter
 * `fencing_token`. Every change is a write function run by the store's
 * writer thread (store_write), so the read-decide-write of each call is
 * atomic: writes are serialized and each runs in its own savepoint. Renew
 * and release are single conditional changes (storage_lease_change: only
 * while the owner holds the lease live), the way Redis does a
 * compare-and-delete in Lua. A row with expires_at <= now is free for every
 * call (lazy expiry); lease_sweep() deletes such rows.
 *
 * Waiters: the registry maps a lease name to an entry holding a FIFO queue
 * of waiters, and keeps every queued waiter on one list sorted by deadline
 * (CLOCK_MONOTONIC ms; a wait is a real duration even under a fake store
 * clock). A waiter is
 *   QUEUED    in its entry's queue and on the deadline list;
 *   GRANTING  chosen by a write function that wrote the lease for it, the
 *             transaction not yet known to have committed (still in the
 *             queue, off the deadline list);
 *   DONE      outcome known, out of every list.
 * Whenever a write finds a lease free (release to 0, expiry noticed by the
 * timer, the sweep or an acquire) and its entry has queued waiters, it
 * hands the lease to the first of them (and, re-entrantly, to any later
 * waiter of the same owner) in the same transaction: grant_waiters(). The
 * thread that ran store_write() then finishes those grants: DONE and woken
 * if the commit succeeded, back to QUEUED (same place) if it failed.
 *
 * The timer thread sleeps on `timer_cond` until the earliest waiter
 * deadline or the earliest holder expiry of a name with waiters (at most
 * TIMER_MAX_SLEEP_MS, so a jump of the store clock is noticed), and without
 * a timeout while nobody waits. It ends waiters whose deadline passed and
 * hands expired leases over; it never polls the store for waiters. Queueing a
 * waiter, a grant going back to the queue and an earlier expiry signal it.
 *
 * Locking: `lock` guards the registry (entries, queues, the deadline list,
 * waiter state). The writer thread takes it briefly inside write
 * functions, so store_write() is never called with it held. Wake callbacks
 * run without it. Each waiter has a condition variable (on `lock`) on which
 * its owner sleeps: an in-process acquirer until DONE, lease_wait_end()
 * while GRANTING or while the wake callback runs.
 *
 * A grant whose caller is gone (the daemon could not deliver the answer)
 * is given back by lease_release_grant(): a release of that one holding
 * (name, owner and token), which hands the lease on like any release.
 *
 * Ownership: a waiter is allocated by lease_acquire_start() and freed by
 * lease_wait_end() (or by lease_acquire_start() itself when not queued).
 * An entry lives while its queue is not empty.
 */
#include "lease_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "engine.h"
#include "log.h"
#include "storage.h"

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static bool text_ok(const char *p, size_t n, size_t max)
{
    return p && n >= 1 && n <= max && !memchr(p, '\0', n);
}

static bool ttl_ok(int64_t ttl_ms)
{
    return ttl_ms >= SQLCACHED_LEASE_TTL_MIN_MS && ttl_ms <= SQLCACHED_LEASE_TTL_MAX_MS;
}

void li_set_name(sqlcached_lease_t *l, const char *name, size_t n)
{
    memcpy(l->name, name, n);
    l->name[n] = '\0';
    l->name_len = n;
}

static void lease_set_owner(sqlcached_lease_t *l, const char *owner, size_t n)
{
    memcpy(l->owner, owner, n);
    l->owner[n] = '\0';
    l->owner_len = n;
}

/* ------------------------------------------------------------------------
 * Hand-over and grant completion
 * ------------------------------------------------------------------------ */

/* Choose the waiters to hand a free lease to: the first QUEUED one and any
 * later QUEUED one of the same owner (re-entrant). They become GRANTING,
 * chained through next_done with their lease filled but for the token.
 * Returns the chain (NULL when nobody waits) and the row to write. */
static lease_waiter_t *pick_grantees(lease_registry_t *reg, const char *name, size_t n, int64_t now,
                                     sqlcached_lease_t *row)
{
    pthread_mutex_lock(&reg->lock);
    lease_entry_t *e = li_do_find_entry(reg, name, n);
    lease_waiter_t *first = NULL, *last = NULL;
    for (lease_waiter_t *w = e ? e->head : NULL; w; w = w->qnext) {
        if (w->state != W_QUEUED)
            continue;
        if (first &&
            (w->owner_len != first->owner_len || memcmp(w->owner, first->owner, w->owner_len) != 0))
            continue;
        w->state = W_GRANTING;
        e->queued--;
        li_do_deadline_remove(reg, w);
        w->next_done = NULL;
        if (last)
            last->next_done = w;
        else
            first = w;
        last = w;
        row->count++;
        w->lease.count = row->count;
        w->lease.expires_at = now + w->ttl_ms;
        row->expires_at = w->lease.expires_at;
    }
    if (first) {
        lease_set_owner(row, first->owner, first->owner_len);
        e->expires_at = row->expires_at;
    }
    pthread_mutex_unlock(&reg->lock);
    return first;
}

/* Inside a write: the lease `name` is free; hand it to its waiters, if
 * any. Appends them to *grants (finished by li_finish_grants after the
 * commit) and sets *holder to the new row. Returns SQLCACHED_OK with
 * *granted telling whether anyone got it. */
static sqlcached_status_t grant_waiters(store_conn_t *w, lease_registry_t *reg, const char *name,
                                        size_t n, int64_t now, lease_waiter_t **grants,
                                        sqlcached_lease_t *holder, bool *granted)
{
    sqlcached_lease_t row = {0};
    li_set_name(&row, name, n);
    lease_waiter_t *chain = pick_grantees(reg, name, n, now, &row);
    *granted = chain != NULL;
    if (!chain)
        return SQLCACHED_OK;
    lease_waiter_t *last = chain;
    while (last->next_done)
        last = last->next_done;
    last->next_done = *grants;
    *grants = chain;
    sqlcached_status_t st = store_counter_next(w, "fencing_token", &row.token);
    if (st == SQLCACHED_OK)
        st = storage_lease_put(w, &row);
    if (st == SQLCACHED_OK)
        atomic_fetch_add_explicit(&reg->grants, 1, memory_order_relaxed);
    for (lease_waiter_t *g = chain; g != last->next_done; g = g->next_done) {
        int64_t count = g->lease.count, expires_at = g->lease.expires_at;
        g->lease = row;
        g->lease.count = count;
        g->lease.expires_at = expires_at;
    }
    if (holder)
        *holder = row;
    return st;
}

/* After store_write: grants of a committed write are done (waiters woken);
 * those of a failed one go back to their place in the queue. */
void li_finish_grants(lease_registry_t *reg, lease_waiter_t *grants, sqlcached_status_t st)
{
    lease_waiter_t *wake = NULL;
    pthread_mutex_lock(&reg->lock);
    for (lease_waiter_t *g = grants, *next; g; g = next) {
        next = g->next_done;
        if (st == SQLCACHED_OK) {
            if (li_do_complete(reg, g, SQLCACHED_OK)) {
                g->next_done = wake;
                wake = g;
            }
        } else {
            g->state = W_QUEUED;
            g->entry->queued++;
            li_do_deadline_insert(reg, g);
            pthread_cond_broadcast(&g->cond);
            pthread_cond_signal(&reg->timer_cond);
        }
    }
    pthread_mutex_unlock(&reg->lock);
    for (lease_waiter_t *g = wake, *next; g; g = next) {
        next = g->next_done;
        li_notify(reg, g);
    }
}

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */

/* Read the row of name inside a write. *found: a row exists (live or not). */
static sqlcached_status_t read_row(store_conn_t *c, const char *name, size_t n,
                                   sqlcached_lease_t *l, bool *found)
{
    sqlcached_status_t st = storage_lease_get(c, name, n, INT64_MIN, l);
    *found = st == SQLCACHED_OK;
    return st == SQLCACHED_NOT_FOUND ? SQLCACHED_OK : st;
}

sqlcached_status_t sqlcached_lease_get(sqlcached_t *db, const char *name, size_t name_len,
                                       sqlcached_lease_t *out)
{
    if (!text_ok(name, name_len, SQLCACHED_LEASE_NAME_MAX) || !out)
        return SQLCACHED_INVALID_ARGUMENT;
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    sqlcached_status_t status = storage_lease_get(r, name, name_len, engine_now(db), out);
    store_reader_release(db->store, r);
    return status;
}

/* ------------------------------------------------------------------------
 * Acquire (run by the writer thread)
 * ------------------------------------------------------------------------ */

typedef enum acquire_outcome { ACQ_GOT, ACQ_HELD, ACQ_QUEUED } acquire_outcome_t;

typedef struct acquire_job {
    lease_registry_t *reg;
    const char *name, *owner;
    size_t name_len, owner_len;
    int64_t ttl_ms, now;
    lease_waiter_t *waiter; /* queue it when held (NULL: do not wait) */
    acquire_outcome_t outcome;
    sqlcached_lease_t lease; /* the lease got, or the holder's */
    lease_waiter_t *grants;  /* waiters handed the lease by this write */
} acquire_job_t;

/* Re-enter a live lease the caller already holds. *done when it did. */
static sqlcached_status_t try_reenter(store_conn_t *w, acquire_job_t *j, bool *done)
{
    sqlcached_status_t st = storage_lease_change(w, STORAGE_LEASE_REENTER, j->name, j->name_len,
                                                 j->owner, j->owner_len, j->now, j->now + j->ttl_ms,
                                                 0, &j->lease);
    *done = st == SQLCACHED_OK;
    if (st == SQLCACHED_NOT_FOUND)
        return SQLCACHED_OK;
    if (*done)
        li_note_expiry(j->reg, j->name, j->name_len, j->lease.expires_at);
    return st;
}

/* The lease is free and nobody waits: take it with a new token. */
static sqlcached_status_t take_free(store_conn_t *w, acquire_job_t *j)
{
    sqlcached_lease_t *l = &j->lease;
    memset(l, 0, sizeof *l);
    li_set_name(l, j->name, j->name_len);
    lease_set_owner(l, j->owner, j->owner_len);
    l->count = 1;
    l->expires_at = j->now + j->ttl_ms;
    sqlcached_status_t st = store_counter_next(w, "fencing_token", &l->token);
    if (st == SQLCACHED_OK)
        st = storage_lease_put(w, l);
    if (st == SQLCACHED_OK)
        atomic_fetch_add_explicit(&j->reg->grants, 1, memory_order_relaxed);
    j->outcome = ACQ_GOT;
    return st;
}

/* Held by another owner: queue the waiter if there is one. */
static sqlcached_status_t held(acquire_job_t *j)
{
    j->outcome = ACQ_HELD;
    if (!j->waiter)
        return SQLCACHED_OK;
    lease_registry_t *reg = j->reg;
    pthread_mutex_lock(&reg->lock);
    bool ok = !reg->stopping &&
              li_do_enqueue(reg, j->waiter, j->name, j->name_len, j->lease.expires_at);
    sqlcached_status_t st = ok              ? SQLCACHED_OK
                            : reg->stopping ? SQLCACHED_UNAVAILABLE
                                            : SQLCACHED_NOMEM;
    pthread_mutex_unlock(&reg->lock);
    if (ok)
        j->outcome = ACQ_QUEUED;
    return st;
}

static sqlcached_status_t tx_acquire(store_conn_t *w, void *arg)
{
    acquire_job_t *j = arg;
    j->grants = NULL;
    for (int pass = 0; pass < 2; pass++) {
        bool done, found, granted = false;
        sqlcached_status_t st = try_reenter(w, j, &done);
        if (st != SQLCACHED_OK || done) {
            j->outcome = ACQ_GOT;
            return st;
        }
        st = read_row(w, j->name, j->name_len, &j->lease, &found);
        if (st != SQLCACHED_OK)
            return st;
        if (found && j->lease.expires_at > j->now)
            return held(j);
        /* Free: the waiters queued on it come first. */
        st =
            grant_waiters(w, j->reg, j->name, j->name_len, j->now, &j->grants, &j->lease, &granted);
        if (st != SQLCACHED_OK)
            return st;
        if (!granted)
            return take_free(w, j);
        /* handed over; go round once more: it may be ours re-entrantly */
    }
    return held(j);
}

/* ------------------------------------------------------------------------
 * Acquire: the calls
 * ------------------------------------------------------------------------ */

/* lease_acquire_start() with either wake callback (the other NULL). */
static sqlcached_status_t acquire_start(sqlcached_t *db, const char *name, size_t name_len,
                                        const char *owner, size_t owner_len, int64_t ttl_ms,
                                        int64_t wait_ms, lease_wake_fn on_wake,
                                        sqlcached_done_fn done, void *arg, sqlcached_lease_t *out,
                                        lease_waiter_t **waiter)
{
    *waiter = NULL;
    if (!text_ok(name, name_len, SQLCACHED_LEASE_NAME_MAX) ||
        !text_ok(owner, owner_len, SQLCACHED_LEASE_OWNER_MAX) || !ttl_ok(ttl_ms) || wait_ms < 0 ||
        wait_ms > SQLCACHED_LEASE_WAIT_MAX_MS)
        return SQLCACHED_INVALID_ARGUMENT;
    acquire_job_t job = {
        .reg = db->leases,
        .name = name,
        .name_len = name_len,
        .owner = owner,
        .owner_len = owner_len,
        .ttl_ms = ttl_ms,
        .now = engine_now(db),
    };
    if (wait_ms > 0) {
        job.waiter = li_waiter_new(db->leases, name, name_len, owner, owner_len, ttl_ms, wait_ms,
                                   on_wake, done, arg);
        if (!job.waiter)
            return SQLCACHED_NOMEM;
    }
    sqlcached_status_t st = store_write(db->store, tx_acquire, &job);
    li_finish_grants(db->leases, job.grants, st);
    if (job.outcome == ACQ_QUEUED && st != SQLCACHED_OK) {
        /* Queued, then the commit failed. The queueing itself stood: a
         * later committed release may have handed the lease over already. */
        sqlcached_status_t got = lease_wait_end(job.waiter, out);
        return got == SQLCACHED_OK ? SQLCACHED_OK : st;
    }
    if (job.outcome != ACQ_QUEUED)
        li_waiter_free(job.waiter);
    if (st != SQLCACHED_OK)
        return st;
    if (out)
        *out = job.lease;
    if (job.outcome == ACQ_QUEUED)
        *waiter = job.waiter;
    return job.outcome == ACQ_HELD ? SQLCACHED_LEASE_HELD : SQLCACHED_OK;
}

sqlcached_status_t lease_acquire_start(sqlcached_t *db, const char *name, size_t name_len,
                                       const char *owner, size_t owner_len, int64_t ttl_ms,
                                       int64_t wait_ms, lease_wake_fn on_wake, void *arg,
                                       sqlcached_lease_t *out, lease_waiter_t **waiter)
{
    return acquire_start(db, name, name_len, owner, owner_len, ttl_ms, wait_ms, on_wake, NULL, arg,
                         out, waiter);
}

sqlcached_status_t sqlcached_lease_acquire_async(sqlcached_t *db, const char *name, size_t name_len,
                                                 const char *owner, size_t owner_len,
                                                 int64_t ttl_ms, int64_t wait_ms,
                                                 sqlcached_lease_t *out, sqlcached_done_fn done,
                                                 void *cls, sqlcached_lease_wait_t **wait)
{
    if (!done)
        return SQLCACHED_INVALID_ARGUMENT;
    return acquire_start(db, name, name_len, owner, owner_len, ttl_ms, wait_ms, NULL, done, cls,
                         out, wait);
}

sqlcached_status_t sqlcached_lease_wait_end(sqlcached_lease_wait_t *wait, sqlcached_lease_t *out)
{
    return lease_wait_end(wait, out);
}

sqlcached_status_t sqlcached_lease_acquire(sqlcached_t *db, const char *name, size_t name_len,
                                           const char *owner, size_t owner_len, int64_t ttl_ms,
                                           int64_t wait_ms, sqlcached_lease_t *out)
{
    lease_waiter_t *w = NULL;
    sqlcached_status_t st = lease_acquire_start(db, name, name_len, owner, owner_len, ttl_ms,
                                                wait_ms, NULL, NULL, out, &w);
    if (st != SQLCACHED_OK || !w)
        return st;
    lease_registry_t *reg = db->leases;
    pthread_mutex_lock(&reg->lock);
    while (w->state != W_DONE)
        pthread_cond_wait(&w->cond, &reg->lock);
    pthread_mutex_unlock(&reg->lock);
    return lease_wait_end(w, out);
}

/* ------------------------------------------------------------------------
 * Renew and release (run by the writer thread)
 * ------------------------------------------------------------------------ */

typedef struct owner_job {
    lease_registry_t *reg;
    const char *name, *owner;
    size_t name_len, owner_len;
    int64_t ttl_ms, now;
    int64_t token; /* release: only this holding (0: any) */
    sqlcached_lease_t lease;
    lease_waiter_t *grants;
} owner_job_t;

/* Apply an owner-guarded change to the job's lease (to the holding with
 * the job's token only, when it has one). *hit when it matched. */
static sqlcached_status_t run_conditional(store_conn_t *w, storage_lease_change_t change,
                                          owner_job_t *j, bool *hit)
{
    sqlcached_status_t st = storage_lease_change(w, change, j->name, j->name_len, j->owner,
                                                 j->owner_len, j->now, j->now + j->ttl_ms, j->token,
                                                 &j->lease);
    *hit = st == SQLCACHED_OK;
    return st == SQLCACHED_NOT_FOUND ? SQLCACHED_OK : st;
}

static sqlcached_status_t tx_renew(store_conn_t *w, void *arg)
{
    owner_job_t *j = arg;
    bool hit;
    sqlcached_status_t st = run_conditional(w, STORAGE_LEASE_RENEW, j, &hit);
    if (st != SQLCACHED_OK)
        return st;
    if (!hit)
        return SQLCACHED_NOT_OWNER;
    li_note_expiry(j->reg, j->name, j->name_len, j->lease.expires_at);
    return SQLCACHED_OK;
}

static sqlcached_status_t tx_release(store_conn_t *w, void *arg)
{
    owner_job_t *j = arg;
    bool hit, granted;
    j->grants = NULL;
    sqlcached_status_t st = run_conditional(w, STORAGE_LEASE_RELEASE_ONE, j, &hit);
    if (st != SQLCACHED_OK || hit)
        return st;
    st = run_conditional(w, STORAGE_LEASE_RELEASE_LAST, j, &hit); /* compare-and-delete */
    if (st != SQLCACHED_OK)
        return st;
    if (!hit)
        return SQLCACHED_NOT_OWNER;
    store_note(w, CLUSTER_LEASE, j->name, j->name_len, 0); /* waiters on other nodes */
    return grant_waiters(w, j->reg, j->name, j->name_len, j->now, &j->grants, NULL, &granted);
}

static sqlcached_status_t owner_call(sqlcached_t *db, store_write_fn fn, const char *name,
                                     size_t name_len, const char *owner, size_t owner_len,
                                     int64_t ttl_ms, sqlcached_lease_t *out)
{
    if (!text_ok(name, name_len, SQLCACHED_LEASE_NAME_MAX) ||
        !text_ok(owner, owner_len, SQLCACHED_LEASE_OWNER_MAX) ||
        (fn == tx_renew && !ttl_ok(ttl_ms)))
        return SQLCACHED_INVALID_ARGUMENT;
    owner_job_t job = {
        .reg = db->leases,
        .name = name,
        .name_len = name_len,
        .owner = owner,
        .owner_len = owner_len,
        .ttl_ms = ttl_ms,
        .now = engine_now(db),
    };
    sqlcached_status_t st = store_write(db->store, fn, &job);
    li_finish_grants(db->leases, job.grants, st);
    if (st == SQLCACHED_OK && out)
        *out = job.lease;
    return st;
}

sqlcached_status_t sqlcached_lease_renew(sqlcached_t *db, const char *name, size_t name_len,
                                         const char *owner, size_t owner_len, int64_t ttl_ms,
                                         sqlcached_lease_t *out)
{
    return owner_call(db, tx_renew, name, name_len, owner, owner_len, ttl_ms, out);
}

sqlcached_status_t sqlcached_lease_release(sqlcached_t *db, const char *name, size_t name_len,
                                           const char *owner, size_t owner_len,
                                           sqlcached_lease_t *out)
{
    return owner_call(db, tx_release, name, name_len, owner, owner_len, 0, out);
}

sqlcached_status_t lease_release_grant(sqlcached_t *db, const sqlcached_lease_t *l)
{
    owner_job_t job = {
        .reg = db->leases,
        .name = l->name,
        .name_len = l->name_len,
        .owner = l->owner,
        .owner_len = l->owner_len,
        .token = l->token,
        .now = engine_now(db),
    };
    sqlcached_status_t st = store_write(db->store, tx_release, &job);
    li_finish_grants(db->leases, job.grants, st);
    return st;
}

sqlcached_status_t sqlcached_lease_give_back(sqlcached_t *db, const sqlcached_lease_t *lease)
{
    return lease_release_grant(db, lease);
}

/* ------------------------------------------------------------------------
 * Expiry: hand-over of expired leases and the sweep (writer thread)
 * ------------------------------------------------------------------------ */

/* The lease `name` if expired (or absent): hand it to its waiters, or
 * delete the expired row. A live lease only refreshes the timer's view. */
static sqlcached_status_t expire_one(store_conn_t *w, expire_job_t *j, const name_ref_t *n)
{
    sqlcached_lease_t row;
    bool found, granted;
    sqlcached_status_t st = read_row(w, n->name, n->len, &row, &found);
    if (st != SQLCACHED_OK)
        return st;
    if (found && row.expires_at > j->now) {
        li_note_expiry(j->reg, n->name, n->len, row.expires_at);
        return SQLCACHED_OK;
    }
    st = grant_waiters(w, j->reg, n->name, n->len, j->now, &j->grants, NULL, &granted);
    if (st != SQLCACHED_OK || granted || !found)
        return st;
    j->swept++;
    return storage_lease_delete_expired(w, n->name, n->len, j->now);
}

sqlcached_status_t li_tx_handover(store_conn_t *w, void *arg)
{
    expire_job_t *j = arg;
    j->grants = NULL;
    for (size_t i = 0; i < j->count; i++) {
        sqlcached_status_t st = expire_one(w, j, &j->names[i]);
        if (st != SQLCACHED_OK)
            return st;
    }
    return SQLCACHED_OK;
}

void li_names_free(expire_job_t *j)
{
    for (size_t i = 0; i < j->count; i++)
        free(j->names[i].name);
    free(j->names);
    j->names = NULL;
    j->count = j->cap = 0;
}

bool li_names_add(void *cls, const void *name, size_t len)
{
    expire_job_t *j = cls;
    if (j->count == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 16;
        name_ref_t *grown = realloc(j->names, cap * sizeof *grown);
        if (!grown)
            return false;
        j->names = grown;
        j->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, name, len);
    copy[len] = '\0';
    j->names[j->count++] = (name_ref_t){copy, len};
    return true;
}

/* Collect the names of up to `limit` expired leases. */
static sqlcached_status_t collect_expired(store_conn_t *w, expire_job_t *j, int limit)
{
    return storage_lease_expired(w, j->now, limit, li_names_add, j);
}

typedef struct sweep_job {
    expire_job_t e;
    int limit;
} sweep_job_t;

static sqlcached_status_t tx_sweep(store_conn_t *w, void *arg)
{
    sweep_job_t *s = arg;
    li_names_free(&s->e);
    s->e.swept = 0;
    sqlcached_status_t st = collect_expired(w, &s->e, s->limit);
    if (st == SQLCACHED_OK)
        st = li_tx_handover(w, &s->e);
    if (st == SQLCACHED_OK)
        s->e.swept = (int)s->e.count;
    return st;
}

int lease_sweep(sqlcached_t *db, int64_t now, int max_rows)
{
    sweep_job_t job = {.e = {.reg = db->leases, .now = now}, .limit = max_rows};
    sqlcached_status_t st = store_write(db->store, tx_sweep, &job);
    li_finish_grants(db->leases, job.e.grants, st);
    li_names_free(&job.e);
    if (st != SQLCACHED_OK) {
        log_warn("lease", "sweep of expired leases failed: %s", sqlcached_status_name(st));
        return -1;
    }
    return job.e.swept;
}

uint64_t lease_count_live(sqlcached_t *db, int64_t now)
{
    store_conn_t *r = store_reader_acquire(db->store);
    uint64_t n = 0;
    if (r && storage_lease_count_live(r, now, &n) != SQLCACHED_OK)
        n = 0;
    store_reader_release(db->store, r);
    return n;
}

void lease_stats(lease_registry_t *reg, uint64_t *grants, uint64_t *waiting)
{
    *grants = reg ? atomic_load_explicit(&reg->grants, memory_order_relaxed) : 0;
    long n = reg ? atomic_load_explicit(&reg->waiting, memory_order_relaxed) : 0;
    *waiting = n > 0 ? (uint64_t)n : 0;
}
