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
#include "lease.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "engine.h"
#include "log.h"
#include "storage.h"

#define LEASE_BUCKETS 1024
#define TIMER_MAX_SLEEP_MS 1000
#define TIMER_BACKOFF_MS 100
#define HANDOFF_BATCH 64

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

typedef enum waiter_state { W_QUEUED, W_GRANTING, W_DONE } waiter_state_t;

typedef struct lease_entry {
    struct lease_entry *hnext;        /* hash chain */
    struct lease_entry *prev, *next;  /* every entry, for the timer */
    lease_waiter_t *head, *tail;      /* FIFO of waiters (QUEUED or GRANTING) */
    size_t queued;                    /* how many of them are QUEUED */
    int64_t expires_at;               /* the holder's expiry as last written */
    int64_t checked_at;               /* mono ms: last look at its row (recheck) */
    size_t name_len;
    char name[];
} lease_entry_t;

struct sqlcached_lease_wait {
    lease_registry_t *reg;
    lease_entry_t *entry;             /* while in a queue */
    lease_waiter_t *qprev, *qnext;    /* entry queue */
    lease_waiter_t *dprev, *dnext;    /* deadline list (QUEUED only) */
    lease_waiter_t *next_done;        /* a job's grants / the timer's batch */
    waiter_state_t state;
    bool on_deadline_list;
    bool notifying;                   /* on_wake is running */
    int64_t deadline;                 /* CLOCK_MONOTONIC ms */
    int64_t ttl_ms;
    lease_wake_fn on_wake;
    sqlcached_done_fn done;           /* the public form of on_wake */
    void *arg;
    pthread_cond_t cond;
    sqlcached_status_t status;        /* outcome once DONE */
    sqlcached_lease_t lease;          /* the lease granted */
    size_t owner_len;
    char owner[SQLCACHED_LEASE_OWNER_MAX + 1];
};

struct lease_registry {
    sqlcached_t *db;
    pthread_mutex_t lock;
    pthread_cond_t timer_cond;        /* CLOCK_MONOTONIC */
    pthread_t timer;
    bool timer_started;
    bool stopping;
    int64_t backoff_until;            /* mono ms: no hand-over before this after a failure */
    int64_t recheck_ms;               /* > 0: look at a waited-on lease this often */
    lease_entry_t *buckets[LEASE_BUCKETS];
    lease_entry_t *entries;
    lease_waiter_t *dhead, *dtail;
    /* figures for sqlcached_stats (a grant whose transaction then fails
     * still counts: rare, and only under storage errors) */
    atomic_uint_fast64_t grants;
    atomic_long waiting;
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool text_ok(const char *p, size_t n, size_t max)
{
    return p && n >= 1 && n <= max && !memchr(p, '\0', n);
}

static bool ttl_ok(int64_t ttl_ms)
{
    return ttl_ms >= SQLCACHED_LEASE_TTL_MIN_MS && ttl_ms <= SQLCACHED_LEASE_TTL_MAX_MS;
}

static void lease_set_name(sqlcached_lease_t *l, const char *name, size_t n)
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

static uint32_t name_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

/* ------------------------------------------------------------------------
 * The registry (callers hold reg->lock)
 * ------------------------------------------------------------------------ */

static lease_entry_t *do_find_entry(lease_registry_t *reg, const char *name, size_t n)
{
    lease_entry_t *e = reg->buckets[name_hash(name, n) % LEASE_BUCKETS];
    for (; e; e = e->hnext)
        if (e->name_len == n && memcmp(e->name, name, n) == 0)
            return e;
    return NULL;
}

/* The entry for name, created if needed; NULL when out of memory. */
static lease_entry_t *do_get_entry(lease_registry_t *reg, const char *name, size_t n)
{
    lease_entry_t *e = do_find_entry(reg, name, n);
    if (e)
        return e;
    e = calloc(1, sizeof *e + n + 1);
    if (!e)
        return NULL;
    memcpy(e->name, name, n);
    e->name_len = n;
    e->checked_at = mono_ms();
    lease_entry_t **bucket = &reg->buckets[name_hash(name, n) % LEASE_BUCKETS];
    e->hnext = *bucket;
    *bucket = e;
    e->next = reg->entries;
    if (reg->entries)
        reg->entries->prev = e;
    reg->entries = e;
    return e;
}

static void do_drop_entry(lease_registry_t *reg, lease_entry_t *e)
{
    lease_entry_t **p = &reg->buckets[name_hash(e->name, e->name_len) % LEASE_BUCKETS];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        reg->entries = e->next;
    if (e->next)
        e->next->prev = e->prev;
    free(e);
}

/* Insert into the deadline list, kept sorted (scan from the tail: waits
 * of one length arrive in deadline order). */
static void do_deadline_insert(lease_registry_t *reg, lease_waiter_t *w)
{
    lease_waiter_t *after = reg->dtail;
    while (after && after->deadline > w->deadline)
        after = after->dprev;
    w->dprev = after;
    w->dnext = after ? after->dnext : reg->dhead;
    if (w->dnext)
        w->dnext->dprev = w;
    else
        reg->dtail = w;
    if (after)
        after->dnext = w;
    else
        reg->dhead = w;
    w->on_deadline_list = true;
}

static void do_deadline_remove(lease_registry_t *reg, lease_waiter_t *w)
{
    if (!w->on_deadline_list)
        return;
    if (w->dprev)
        w->dprev->dnext = w->dnext;
    else
        reg->dhead = w->dnext;
    if (w->dnext)
        w->dnext->dprev = w->dprev;
    else
        reg->dtail = w->dprev;
    w->dprev = w->dnext = NULL;
    w->on_deadline_list = false;
}

/* Queue w at the tail of the entry for name (w->state becomes QUEUED). */
static bool do_enqueue(lease_registry_t *reg, lease_waiter_t *w, const char *name, size_t n,
                       int64_t holder_expires_at)
{
    lease_entry_t *e = do_get_entry(reg, name, n);
    if (!e)
        return false;
    w->entry = e;
    w->qprev = e->tail;
    w->qnext = NULL;
    if (e->tail)
        e->tail->qnext = w;
    else
        e->head = w;
    e->tail = w;
    e->queued++;
    e->expires_at = holder_expires_at;
    w->state = W_QUEUED;
    atomic_fetch_add_explicit(&reg->waiting, 1, memory_order_relaxed);
    do_deadline_insert(reg, w);
    pthread_cond_signal(&reg->timer_cond);
    return true;
}

/* Take w out of its entry's queue (and the entry away once empty). */
static void do_dequeue(lease_registry_t *reg, lease_waiter_t *w)
{
    lease_entry_t *e = w->entry;
    if (!e)
        return;
    atomic_fetch_sub_explicit(&reg->waiting, 1, memory_order_relaxed);
    if (w->state == W_QUEUED)
        e->queued--;
    if (w->qprev)
        w->qprev->qnext = w->qnext;
    else
        e->head = w->qnext;
    if (w->qnext)
        w->qnext->qprev = w->qprev;
    else
        e->tail = w->qprev;
    w->qprev = w->qnext = NULL;
    w->entry = NULL;
    do_deadline_remove(reg, w);
    if (!e->head)
        do_drop_entry(reg, e);
}

/* Mark w DONE with status (leaving every list). Returns true when its wake
 * callback must be called (then w->notifying is set; see notify()). */
static bool do_complete(lease_registry_t *reg, lease_waiter_t *w, sqlcached_status_t status)
{
    do_dequeue(reg, w);
    w->state = W_DONE;
    w->status = status;
    w->notifying = w->on_wake != NULL || w->done != NULL;
    pthread_cond_broadcast(&w->cond);
    return w->notifying;
}

/* Run w's wake callback (lock not held), then let lease_wait_end go on. */
static void notify(lease_registry_t *reg, lease_waiter_t *w)
{
    if (w->on_wake)
        w->on_wake(w->arg);
    else
        w->done(w->arg, w->status);
    pthread_mutex_lock(&reg->lock);
    w->notifying = false;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&reg->lock);
}

/* Record a holder's new expiry for the timer, if anyone waits on name. */
static void note_expiry(lease_registry_t *reg, const char *name, size_t n, int64_t expires_at)
{
    pthread_mutex_lock(&reg->lock);
    lease_entry_t *e = do_find_entry(reg, name, n);
    if (e) {
        if (expires_at < e->expires_at)
            pthread_cond_signal(&reg->timer_cond);
        e->expires_at = expires_at;
    }
    pthread_mutex_unlock(&reg->lock);
}

void lease_set_recheck(lease_registry_t *reg, int64_t ms)
{
    pthread_mutex_lock(&reg->lock);
    reg->recheck_ms = ms;
    pthread_cond_signal(&reg->timer_cond);
    pthread_mutex_unlock(&reg->lock);
}

void lease_remote_freed(lease_registry_t *reg, const char *name, size_t n)
{
    pthread_mutex_lock(&reg->lock);
    lease_entry_t *e = do_find_entry(reg, name, n);
    if (e && e->queued > 0) {
        e->expires_at = INT64_MIN; /* due now: the timer hands it over */
        pthread_cond_signal(&reg->timer_cond);
    }
    pthread_mutex_unlock(&reg->lock);
}

/* ------------------------------------------------------------------------
 * Hand-over and grant completion
 * ------------------------------------------------------------------------ */

/* Choose the waiters to hand a free lease to: the first QUEUED one and any
 * later QUEUED one of the same owner (re-entrant). They become GRANTING,
 * chained through next_done with their lease filled but for the token.
 * Returns the chain (NULL when nobody waits) and the row to write. */
static lease_waiter_t *pick_grantees(lease_registry_t *reg, const char *name, size_t n,
                                     int64_t now, sqlcached_lease_t *row)
{
    pthread_mutex_lock(&reg->lock);
    lease_entry_t *e = do_find_entry(reg, name, n);
    lease_waiter_t *first = NULL, *last = NULL;
    for (lease_waiter_t *w = e ? e->head : NULL; w; w = w->qnext) {
        if (w->state != W_QUEUED)
            continue;
        if (first && (w->owner_len != first->owner_len ||
                      memcmp(w->owner, first->owner, w->owner_len) != 0))
            continue;
        w->state = W_GRANTING;
        e->queued--;
        do_deadline_remove(reg, w);
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
 * any. Appends them to *grants (finished by finish_grants after the
 * commit) and sets *holder to the new row. Returns SQLCACHED_OK with
 * *granted telling whether anyone got it. */
static sqlcached_status_t grant_waiters(store_conn_t *w, lease_registry_t *reg,
                                        const char *name, size_t n, int64_t now,
                                        lease_waiter_t **grants, sqlcached_lease_t *holder,
                                        bool *granted)
{
    sqlcached_lease_t row = {0};
    lease_set_name(&row, name, n);
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
static void finish_grants(lease_registry_t *reg, lease_waiter_t *grants, sqlcached_status_t st)
{
    lease_waiter_t *wake = NULL;
    pthread_mutex_lock(&reg->lock);
    for (lease_waiter_t *g = grants, *next; g; g = next) {
        next = g->next_done;
        if (st == SQLCACHED_OK) {
            if (do_complete(reg, g, SQLCACHED_OK)) {
                g->next_done = wake;
                wake = g;
            }
        } else {
            g->state = W_QUEUED;
            g->entry->queued++;
            do_deadline_insert(reg, g);
            pthread_cond_broadcast(&g->cond);
            pthread_cond_signal(&reg->timer_cond);
        }
    }
    pthread_mutex_unlock(&reg->lock);
    for (lease_waiter_t *g = wake, *next; g; g = next) {
        next = g->next_done;
        notify(reg, g);
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
    lease_waiter_t *waiter;     /* queue it when held (NULL: do not wait) */
    acquire_outcome_t outcome;
    sqlcached_lease_t lease;    /* the lease got, or the holder's */
    lease_waiter_t *grants;     /* waiters handed the lease by this write */
} acquire_job_t;

/* Re-enter a live lease the caller already holds. *done when it did. */
static sqlcached_status_t try_reenter(store_conn_t *w, acquire_job_t *j, bool *done)
{
    sqlcached_status_t st =
        storage_lease_change(w, STORAGE_LEASE_REENTER, j->name, j->name_len, j->owner,
                             j->owner_len, j->now, j->now + j->ttl_ms, 0, &j->lease);
    *done = st == SQLCACHED_OK;
    if (st == SQLCACHED_NOT_FOUND)
        return SQLCACHED_OK;
    if (*done)
        note_expiry(j->reg, j->name, j->name_len, j->lease.expires_at);
    return st;
}

/* The lease is free and nobody waits: take it with a new token. */
static sqlcached_status_t take_free(store_conn_t *w, acquire_job_t *j)
{
    sqlcached_lease_t *l = &j->lease;
    memset(l, 0, sizeof *l);
    lease_set_name(l, j->name, j->name_len);
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
              do_enqueue(reg, j->waiter, j->name, j->name_len, j->lease.expires_at);
    sqlcached_status_t st = ok ? SQLCACHED_OK
                            : reg->stopping ? SQLCACHED_UNAVAILABLE : SQLCACHED_NOMEM;
    pthread_mutex_unlock(&reg->lock);
    if (ok)
        j->outcome = ACQ_QUEUED;
    return st;
}

static sqlcached_status_t do_acquire(store_conn_t *w, void *arg)
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
        st = grant_waiters(w, j->reg, j->name, j->name_len, j->now, &j->grants, &j->lease,
                           &granted);
        if (st != SQLCACHED_OK)
            return st;
        if (!granted)
            return take_free(w, j);
        /* handed over; go round once more: it may be ours re-entrantly */
    }
    return held(j);
}

/* ------------------------------------------------------------------------
 * Waiters
 * ------------------------------------------------------------------------ */

static lease_waiter_t *waiter_new(lease_registry_t *reg, const char *name, size_t name_len,
                                  const char *owner, size_t owner_len, int64_t ttl_ms,
                                  int64_t wait_ms, lease_wake_fn on_wake, sqlcached_done_fn done,
                                  void *arg)
{
    lease_waiter_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (pthread_cond_init(&w->cond, NULL) != 0) {
        free(w);
        return NULL;
    }
    w->reg = reg;
    w->deadline = mono_ms() + wait_ms;
    w->ttl_ms = ttl_ms;
    w->on_wake = on_wake;
    w->done = done;
    w->arg = arg;
    w->state = W_DONE; /* until queued */
    w->status = SQLCACHED_LEASE_HELD;
    lease_set_name(&w->lease, name, name_len);
    memcpy(w->owner, owner, owner_len);
    w->owner_len = owner_len;
    return w;
}

static void waiter_free(lease_waiter_t *w)
{
    if (!w)
        return;
    pthread_cond_destroy(&w->cond);
    free(w);
}

/* The holder to report with SQLCACHED_LEASE_HELD after a wait: read now
 * (all zero when the lease has become free meanwhile). */
static void current_holder(sqlcached_t *db, const char *name, size_t n, sqlcached_lease_t *out)
{
    if (sqlcached_lease_get(db, name, n, out) != SQLCACHED_OK)
        memset(out, 0, sizeof *out);
}

sqlcached_status_t lease_wait_end(lease_waiter_t *w, sqlcached_lease_t *out)
{
    lease_registry_t *reg = w->reg;
    pthread_mutex_lock(&reg->lock);
    while (w->state == W_GRANTING || w->notifying)
        pthread_cond_wait(&w->cond, &reg->lock);
    if (w->state == W_QUEUED) { /* cancelled while waiting */
        do_dequeue(reg, w);
        w->state = W_DONE;
        w->status = SQLCACHED_LEASE_HELD;
    }
    pthread_mutex_unlock(&reg->lock);
    sqlcached_status_t status = w->status;
    if (out && status == SQLCACHED_OK)
        *out = w->lease;
    else if (out && status == SQLCACHED_LEASE_HELD)
        current_holder(reg->db, w->lease.name, w->lease.name_len, out);
    waiter_free(w);
    return status;
}

/* ------------------------------------------------------------------------
 * Acquire: the calls
 * ------------------------------------------------------------------------ */

/* lease_acquire_start() with either wake callback (the other NULL). */
static sqlcached_status_t acquire_start(sqlcached_t *db, const char *name, size_t name_len,
                                        const char *owner, size_t owner_len, int64_t ttl_ms,
                                        int64_t wait_ms, lease_wake_fn on_wake,
                                        sqlcached_done_fn done, void *arg,
                                        sqlcached_lease_t *out, lease_waiter_t **waiter)
{
    *waiter = NULL;
    if (!text_ok(name, name_len, SQLCACHED_LEASE_NAME_MAX) ||
        !text_ok(owner, owner_len, SQLCACHED_LEASE_OWNER_MAX) || !ttl_ok(ttl_ms) ||
        wait_ms < 0 || wait_ms > SQLCACHED_LEASE_WAIT_MAX_MS)
        return SQLCACHED_INVALID_ARGUMENT;
    acquire_job_t job = {
        .reg = db->leases, .name = name, .name_len = name_len, .owner = owner,
        .owner_len = owner_len, .ttl_ms = ttl_ms, .now = engine_now(db),
    };
    if (wait_ms > 0) {
        job.waiter = waiter_new(db->leases, name, name_len, owner, owner_len, ttl_ms, wait_ms,
                                on_wake, done, arg);
        if (!job.waiter)
            return SQLCACHED_NOMEM;
    }
    sqlcached_status_t st = store_write(db->store, do_acquire, &job);
    finish_grants(db->leases, job.grants, st);
    if (job.outcome == ACQ_QUEUED && st != SQLCACHED_OK) {
        /* Queued, then the commit failed. The queueing itself stood: a
         * later committed release may have handed the lease over already. */
        sqlcached_status_t got = lease_wait_end(job.waiter, out);
        return got == SQLCACHED_OK ? SQLCACHED_OK : st;
    }
    if (job.outcome != ACQ_QUEUED)
        waiter_free(job.waiter);
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
    return acquire_start(db, name, name_len, owner, owner_len, ttl_ms, wait_ms, on_wake, NULL,
                         arg, out, waiter);
}

sqlcached_status_t sqlcached_lease_acquire_async(sqlcached_t *db, const char *name,
                                                 size_t name_len, const char *owner,
                                                 size_t owner_len, int64_t ttl_ms,
                                                 int64_t wait_ms, sqlcached_lease_t *out,
                                                 sqlcached_done_fn done, void *cls,
                                                 sqlcached_lease_wait_t **wait)
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
                                           const char *owner, size_t owner_len,
                                           int64_t ttl_ms, int64_t wait_ms,
                                           sqlcached_lease_t *out)
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
                                                 j->owner_len, j->now, j->now + j->ttl_ms,
                                                 j->token, &j->lease);
    *hit = st == SQLCACHED_OK;
    return st == SQLCACHED_NOT_FOUND ? SQLCACHED_OK : st;
}

static sqlcached_status_t do_renew(store_conn_t *w, void *arg)
{
    owner_job_t *j = arg;
    bool hit;
    sqlcached_status_t st = run_conditional(w, STORAGE_LEASE_RENEW, j, &hit);
    if (st != SQLCACHED_OK)
        return st;
    if (!hit)
        return SQLCACHED_NOT_OWNER;
    note_expiry(j->reg, j->name, j->name_len, j->lease.expires_at);
    return SQLCACHED_OK;
}

static sqlcached_status_t do_release(store_conn_t *w, void *arg)
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
        (fn == do_renew && !ttl_ok(ttl_ms)))
        return SQLCACHED_INVALID_ARGUMENT;
    owner_job_t job = {
        .reg = db->leases, .name = name, .name_len = name_len, .owner = owner,
        .owner_len = owner_len, .ttl_ms = ttl_ms, .now = engine_now(db),
    };
    sqlcached_status_t st = store_write(db->store, fn, &job);
    finish_grants(db->leases, job.grants, st);
    if (st == SQLCACHED_OK && out)
        *out = job.lease;
    return st;
}

sqlcached_status_t sqlcached_lease_renew(sqlcached_t *db, const char *name, size_t name_len,
                                         const char *owner, size_t owner_len, int64_t ttl_ms,
                                         sqlcached_lease_t *out)
{
    return owner_call(db, do_renew, name, name_len, owner, owner_len, ttl_ms, out);
}

sqlcached_status_t sqlcached_lease_release(sqlcached_t *db, const char *name, size_t name_len,
                                           const char *owner, size_t owner_len,
                                           sqlcached_lease_t *out)
{
    return owner_call(db, do_release, name, name_len, owner, owner_len, 0, out);
}

sqlcached_status_t lease_release_grant(sqlcached_t *db, const sqlcached_lease_t *l)
{
    owner_job_t job = {
        .reg = db->leases, .name = l->name, .name_len = l->name_len, .owner = l->owner,
        .owner_len = l->owner_len, .token = l->token, .now = engine_now(db),
    };
    sqlcached_status_t st = store_write(db->store, do_release, &job);
    finish_grants(db->leases, job.grants, st);
    return st;
}

sqlcached_status_t sqlcached_lease_give_back(sqlcached_t *db, const sqlcached_lease_t *lease)
{
    return lease_release_grant(db, lease);
}

/* ------------------------------------------------------------------------
 * Expiry: hand-over of expired leases and the sweep (writer thread)
 * ------------------------------------------------------------------------ */

typedef struct name_ref {
    char *name;
    size_t len;
} name_ref_t;

typedef struct expire_job {
    lease_registry_t *reg;
    int64_t now;
    name_ref_t *names;  /* hand-over: these names; sweep: filled by the job */
    size_t count, cap;
    int swept;
    lease_waiter_t *grants;
} expire_job_t;

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
        note_expiry(j->reg, n->name, n->len, row.expires_at);
        return SQLCACHED_OK;
    }
    st = grant_waiters(w, j->reg, n->name, n->len, j->now, &j->grants, NULL, &granted);
    if (st != SQLCACHED_OK || granted || !found)
        return st;
    j->swept++;
    return storage_lease_delete_expired(w, n->name, n->len, j->now);
}

static sqlcached_status_t do_handover(store_conn_t *w, void *arg)
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

static void names_free(expire_job_t *j)
{
    for (size_t i = 0; i < j->count; i++)
        free(j->names[i].name);
    free(j->names);
    j->names = NULL;
    j->count = j->cap = 0;
}

static bool names_add(void *cls, const void *name, size_t len)
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
    return storage_lease_expired(w, j->now, limit, names_add, j);
}

typedef struct sweep_job {
    expire_job_t e;
    int limit;
} sweep_job_t;

static sqlcached_status_t do_sweep(store_conn_t *w, void *arg)
{
    sweep_job_t *s = arg;
    names_free(&s->e);
    s->e.swept = 0;
    sqlcached_status_t st = collect_expired(w, &s->e, s->limit);
    if (st == SQLCACHED_OK)
        st = do_handover(w, &s->e);
    if (st == SQLCACHED_OK)
        s->e.swept = (int)s->e.count;
    return st;
}

int lease_sweep(sqlcached_t *db, int64_t now, int max_rows)
{
    sweep_job_t job = {.e = {.reg = db->leases, .now = now}, .limit = max_rows};
    sqlcached_status_t st = store_write(db->store, do_sweep, &job);
    finish_grants(db->leases, job.e.grants, st);
    names_free(&job.e);
    if (st != SQLCACHED_OK) {
        log_warn("lease", "sweep of expired leases failed: %s", sqlcached_status_name(st));
        return -1;
    }
    return job.e.swept;
}

/* ------------------------------------------------------------------------
 * The timer thread
 * ------------------------------------------------------------------------ */

/* Under the lock: is it time to look at e's row? When its holder has
 * expired by now_e, or (cluster) its last look is recheck_ms old: a
 * release on another node whose message was missed. */
static bool do_entry_due(const lease_registry_t *reg, const lease_entry_t *e, int64_t now_m,
                         int64_t now_e)
{
    return e->queued > 0 && (e->expires_at <= now_e ||
                             (reg->recheck_ms > 0 && now_m - e->checked_at >= reg->recheck_ms));
}

/* Under the lock: the names due for a look (at most HANDOFF_BATCH). */
static bool do_due_handovers(lease_registry_t *reg, int64_t now_m, int64_t now_e,
                             expire_job_t *j)
{
    for (lease_entry_t *e = reg->entries; e && j->count < HANDOFF_BATCH; e = e->next) {
        if (!do_entry_due(reg, e, now_m, now_e))
            continue;
        if (!names_add(j, e->name, e->name_len))
            return false;
        e->checked_at = now_m;
    }
    return true;
}

/* Under the lock: end every queued waiter whose deadline has passed;
 * returns the chain of those to notify. */
static lease_waiter_t *do_due_deadlines(lease_registry_t *reg, int64_t now_m)
{
    lease_waiter_t *wake = NULL;
    while (reg->dhead && reg->dhead->deadline <= now_m) {
        lease_waiter_t *w = reg->dhead;
        if (do_complete(reg, w, SQLCACHED_LEASE_HELD)) {
            w->next_done = wake;
            wake = w;
        }
    }
    return wake;
}

/* Under the lock: how long the timer may sleep (ms). */
static int64_t do_sleep_ms(lease_registry_t *reg, int64_t now_m, int64_t now_e)
{
    int64_t sleep = TIMER_MAX_SLEEP_MS;
    if (reg->dhead && reg->dhead->deadline - now_m < sleep)
        sleep = reg->dhead->deadline - now_m;
    for (lease_entry_t *e = reg->entries; e; e = e->next) {
        if (e->queued > 0 && e->expires_at - now_e < sleep)
            sleep = e->expires_at - now_e;
        if (e->queued > 0 && reg->recheck_ms > 0 && e->checked_at + reg->recheck_ms - now_m < sleep)
            sleep = e->checked_at + reg->recheck_ms - now_m;
    }
    if (reg->backoff_until - now_m > sleep)
        sleep = reg->backoff_until - now_m;
    return sleep > 0 ? sleep : 0;
}

/* Hand over the leases in j (lock not held). */
static void run_handovers(lease_registry_t *reg, expire_job_t *j)
{
    sqlcached_status_t st = store_write(reg->db->store, do_handover, j);
    finish_grants(reg, j->grants, st);
    if (st != SQLCACHED_OK) {
        log_warn("lease", "hand-over of expired leases failed: %s", sqlcached_status_name(st));
        pthread_mutex_lock(&reg->lock);
        reg->backoff_until = mono_ms() + TIMER_BACKOFF_MS;
        pthread_mutex_unlock(&reg->lock);
    }
    names_free(j);
}

static void timed_wait(lease_registry_t *reg, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + ms * 1000000LL;
    until.tv_sec += ns / 1000000000LL;
    until.tv_nsec = ns % 1000000000LL;
    pthread_cond_timedwait(&reg->timer_cond, &reg->lock, &until);
}

static void *timer_main(void *arg)
{
    lease_registry_t *reg = arg;
    pthread_mutex_lock(&reg->lock);
    while (!reg->stopping) {
        int64_t now_m = mono_ms(), now_e = engine_now(reg->db);
        expire_job_t j = {.reg = reg, .now = now_e};
        if (now_m >= reg->backoff_until && do_due_handovers(reg, now_m, now_e, &j) && j.count) {
            pthread_mutex_unlock(&reg->lock);
            run_handovers(reg, &j);
            pthread_mutex_lock(&reg->lock);
            continue;
        }
        names_free(&j);
        lease_waiter_t *wake = do_due_deadlines(reg, now_m);
        if (wake) {
            pthread_mutex_unlock(&reg->lock);
            for (lease_waiter_t *w = wake, *next; w; w = next) {
                next = w->next_done;
                notify(reg, w);
            }
            pthread_mutex_lock(&reg->lock);
            continue;
        }
        if (!reg->dhead) { /* nobody waits: sleep until a waiter is queued */
            pthread_cond_wait(&reg->timer_cond, &reg->lock);
            continue;
        }
        int64_t sleep = do_sleep_ms(reg, now_m, now_e);
        if (sleep > 0)
            timed_wait(reg, sleep);
    }
    pthread_mutex_unlock(&reg->lock);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Create and destroy
 * ------------------------------------------------------------------------ */

lease_registry_t *lease_registry_create(sqlcached_t *db, char *err, size_t errlen)
{
    lease_registry_t *reg = calloc(1, sizeof *reg);
    pthread_condattr_t attr;
    if (!reg || pthread_condattr_init(&attr) != 0) {
        snprintf(err, errlen, "out of memory");
        free(reg);
        return NULL;
    }
    reg->db = db;
    pthread_mutex_init(&reg->lock, NULL);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&reg->timer_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&reg->timer, NULL, timer_main, reg) != 0) {
        snprintf(err, errlen, "cannot start the lease timer thread: %s", strerror(errno));
        lease_registry_destroy(reg);
        return NULL;
    }
    reg->timer_started = true;
    return reg;
}

void lease_registry_destroy(lease_registry_t *reg)
{
    if (!reg)
        return;
    pthread_mutex_lock(&reg->lock);
    reg->stopping = true;
    pthread_cond_signal(&reg->timer_cond);
    lease_waiter_t *wake = NULL;
    while (reg->dhead) {
        lease_waiter_t *w = reg->dhead;
        if (do_complete(reg, w, SQLCACHED_UNAVAILABLE)) {
            w->next_done = wake;
            wake = w;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    for (lease_waiter_t *w = wake, *next; w; w = next) {
        next = w->next_done;
        notify(reg, w);
    }
    if (reg->timer_started)
        pthread_join(reg->timer, NULL);
    pthread_cond_destroy(&reg->timer_cond);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
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
