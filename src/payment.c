/*
 * payment.c - the flash sale's payment deadlines: pay, cancel, and the
 * timer that cancels orders still pending at their pay_by.
 *
 * Storage: the orders' state, pay_by and settled_at (sql 007), through the
 * seckill operations of the storage seam. Every change of an order's state
 * is one conditional change of the backend (storage_order_settle,
 * storage_orders_cancel_due: only while state = 'pending'), and the unit of
 * a cancelled order goes back to stock in the same write
 * (storage_return_units, at a new version). So an order leaves pending at
 * most once, whoever races for it - a pay and the deadline, a user's cancel
 * and the deadline, the timers of two cluster nodes: on SQLite the single
 * writer orders them, on PostgreSQL the row lock and the re-check of the
 * condition after a wait do. Hence, with the order insert and take_unit of
 * seckill.c: sold = pending + paid orders, stock + sold = the reset stock,
 * a unit is returned once per cancelled order, a paid order never changes.
 * A pay after pay_by is refused (order_not_pending) and cancels the order
 * itself if the timer has not yet: "pending at pay_by" always ends
 * cancelled.
 *
 * The timer. One thread sleeps until the earliest pay_by it knows
 * (`earliest`, store clock ms; at most MAX_SLEEP_MS at a time, so a jump of
 * the store clock is noticed, and RESCAN_MS when it knows none), then
 * cancels every order due at that moment in one write (DUE_BATCH at a
 * time), then reads the next earliest pending pay_by from the store (an
 * index lookup). It learns deadlines from the orders this process commits
 * (seckill.c, after the commit) and from the other nodes' CLUSTER_DEADLINE
 * notes (cluster.c), each through payment_note_deadline(). Its first job
 * is that read, so a deadline that passed while the store was closed is
 * honoured right after the start. A note that comes while it reads the
 * store (`scanning`) is kept in `noted_in_scan` and not lost when the read
 * sets `earliest`. A node that may have missed notes (its cluster link
 * was down) reads again (payment_rescan), and so does every node every
 * RESCAN_MS while idle, as a backstop; correctness does not depend on
 * which node cancels, only the first one changes anything.
 *
 * The sold-out flags. A returned unit is noted like a reset at the version
 * of the change: seckill_note_reset() in the write's on_commit hook (here,
 * before any answer) and a CLUSTER_RESET note (every other node, before
 * the write is answered), so no node keeps refusing orders from memory
 * while a unit is back.
 *
 * Locking: `lock` guards earliest, noted_in_scan, scanning, rescan and
 * stopping; `cond` (CLOCK_MONOTONIC) wakes the timer. No lock is held
 * across a store write; `counts_lock` is held across the one read that
 * counts the orders by state (a scan, so done at most once a second for
 * every scrape of the metrics). Counters are atomics.
 */
#include "payment.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "engine.h"
#include "log.h"
#include "storage.h"
#include "utf8.h"

#define DUE_BATCH 256        /* orders cancelled per write */
#define MAX_SLEEP_MS 1000    /* longest sleep while a deadline is known */
#define RESCAN_MS 10000      /* idle: read the earliest pay_by again this often */
#define BACKOFF_MS 100       /* after a failed read or write */
#define WARN_EVERY_MS 10000  /* log a failing timer at most this often */
#define COUNTS_FRESH_MS 1000 /* orders by state: counted at most this often */
#define NONE INT64_MAX

struct payment {
    sqlcached_t *db;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int64_t earliest;      /* earliest pending pay_by known; NONE */
    int64_t noted_in_scan; /* earliest noted while scanning; NONE */
    bool scanning, rescan, stopping, started;
    pthread_t thread;
    int64_t warned_at; /* timer thread: mono ms of its last warning */
    atomic_uint_fast64_t auto_cancelled, user_cancelled, payments;
    /* orders by state, as last counted (a scan of the orders: not on every
     * scrape); counts_lock guards them */
    pthread_mutex_t counts_lock;
    uint64_t counts[3];
    int64_t counted_at; /* mono ms; 0 = never */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* True for 1..max bytes of valid UTF-8 (the NUL terminator ends it). */
static bool text_ok(const char *s, size_t max)
{
    if (!s)
        return false;
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max && utf8_valid(s, n);
}

const char *sqlcached_order_state_name(sqlcached_order_state_t state)
{
    switch (state) {
    case SQLCACHED_ORDER_PENDING:
        return "pending";
    case SQLCACHED_ORDER_CANCELLED:
        return "cancelled";
    default:
        return "paid";
    }
}

/* ------------------------------------------------------------------------
 * Returning units (writer)
 * ------------------------------------------------------------------------ */

/* Inside a write: put n units of the item back at a new version (*version),
 * noted for the other nodes like a reset. A missing or short item breaks
 * the invariants: INTERNAL, so the write rolls back. */
static sqlcached_status_t return_units(store_conn_t *w, const char *item_id, int64_t n,
                                       int64_t *version)
{
    sqlcached_status_t st = store_counter_next(w, "version", version);
    int64_t stock;
    if (st == SQLCACHED_OK)
        st = storage_return_units(w, item_id, n, *version, &stock);
    if (st == SQLCACHED_NOT_FOUND) {
        log_warn("payment", "item '%s' cannot take back %lld units", item_id, (long long)n);
        st = SQLCACHED_INTERNAL;
    }
    if (st == SQLCACHED_OK)
        store_note(w, CLUSTER_RESET, item_id, strlen(item_id), *version);
    return st;
}

/* On the writer thread after a commit that returned units of the item at
 * `version`: the item leaves the memory tier, older sold-out flags go. */
static void units_returned(sqlcached_t *db, const char *item_id, int64_t version)
{
    if (db->item_cache)
        cache_invalidate(db->item_cache, item_id, strlen(item_id));
    seckill_note_reset(db->seckill, item_id, version);
}

/* ------------------------------------------------------------------------
 * Pay and cancel (one order)
 * ------------------------------------------------------------------------ */

typedef struct settle_job {
    sqlcached_t *db;
    const char *item_id, *user_id;
    int64_t now;
    sqlcached_order_t order;    /* out */
    sqlcached_status_t outcome; /* out: the call's answer when the write is OK */
    bool returned;              /* out: a unit went back, at `version` */
    bool paid_now;              /* out: this call moved it from pending to paid */
    int64_t version;
} settle_job_t;

/* Cancel the job's pending order (pay_by passed or not) and return its unit.
 * NOT_FOUND: it is not pending. */
static sqlcached_status_t cancel_one(store_conn_t *w, settle_job_t *j)
{
    sqlcached_status_t st = storage_order_settle(w, j->item_id, j->user_id,
                                                 SQLCACHED_ORDER_CANCELLED, j->now, &j->order);
    if (st == SQLCACHED_OK)
        st = return_units(w, j->item_id, 1, &j->version);
    j->returned = st == SQLCACHED_OK;
    return st;
}

/* The order was not pending (or, paying, past its pay_by): why, from its row. */
static sqlcached_status_t not_pending(store_conn_t *w, settle_job_t *j)
{
    sqlcached_status_t st = storage_order_get(w, j->item_id, j->user_id, &j->order);
    if (st != SQLCACHED_OK)
        return st; /* NOT_FOUND: no order */
    return j->order.state == SQLCACHED_ORDER_PAID ? SQLCACHED_OK : SQLCACHED_ORDER_NOT_PENDING;
}

static sqlcached_status_t tx_pay(store_conn_t *w, void *arg)
{
    settle_job_t *j = arg;
    j->returned = false;
    j->outcome = SQLCACHED_OK;
    sqlcached_status_t st =
        storage_order_settle(w, j->item_id, j->user_id, SQLCACHED_ORDER_PAID, j->now, &j->order);
    j->paid_now = st == SQLCACHED_OK;
    if (st != SQLCACHED_NOT_FOUND)
        return st;
    st = not_pending(w, j);
    if (st != SQLCACHED_ORDER_NOT_PENDING || j->order.state != SQLCACHED_ORDER_PENDING)
        return st; /* no order, paid (OK, unchanged), cancelled, or a failure */
    /* pending past its pay_by: the deadline wins; cancel it now */
    j->outcome = SQLCACHED_ORDER_NOT_PENDING;
    return cancel_one(w, j);
}

static sqlcached_status_t tx_cancel(store_conn_t *w, void *arg)
{
    settle_job_t *j = arg;
    j->returned = false;
    j->outcome = SQLCACHED_OK;
    sqlcached_status_t st = cancel_one(w, j);
    if (st != SQLCACHED_NOT_FOUND)
        return st;
    st = not_pending(w, j);
    return st == SQLCACHED_OK ? SQLCACHED_ORDER_NOT_PENDING : st;
}

/* The counters, and the returned unit's bookkeeping (writer thread, after
 * the commit, before any answer). A pay that found its order past pay_by
 * counts as an automatic cancellation: the deadline cancelled it. */
static void settle_committed(void *arg)
{
    settle_job_t *j = arg;
    payment_t *p = j->db->payment;
    if (j->returned)
        units_returned(j->db, j->item_id, j->version);
    if (j->returned && j->outcome == SQLCACHED_ORDER_NOT_PENDING)
        atomic_fetch_add(&p->auto_cancelled, 1);
    else if (j->returned)
        atomic_fetch_add(&p->user_cancelled, 1);
    if (j->paid_now)
        atomic_fetch_add(&p->payments, 1);
}

static sqlcached_status_t settle(sqlcached_t *db, const char *item_id, const char *user_id,
                                 store_write_fn fn, sqlcached_order_t *out)
{
    if (!text_ok(item_id, SQLCACHED_ITEM_ID_MAX) || !text_ok(user_id, SQLCACHED_USER_ID_MAX))
        return SQLCACHED_INVALID_ARGUMENT;
    settle_job_t job = {.db = db, .item_id = item_id, .user_id = user_id, .now = engine_now(db)};
    sqlcached_status_t st = store_write_then(db->store, fn, settle_committed, &job);
    if (st == SQLCACHED_OK)
        st = job.outcome;
    if (st == SQLCACHED_OK && out)
        *out = job.order;
    return st;
}

sqlcached_status_t sqlcached_order_pay(sqlcached_t *db, const char *item_id, const char *user_id,
                                       sqlcached_order_t *out)
{
    return settle(db, item_id, user_id, tx_pay, out);
}

sqlcached_status_t sqlcached_order_cancel(sqlcached_t *db, const char *item_id, const char *user_id,
                                          sqlcached_order_t *out)
{
    return settle(db, item_id, user_id, tx_cancel, out);
}

/* The orders by state, counted on a reader connection at most every
 * COUNTS_FRESH_MS (all 0 when it cannot be read). */
static void order_counts(payment_t *p, uint64_t counts[3])
{
    pthread_mutex_lock(&p->counts_lock);
    int64_t now = mono_ms();
    if (!p->counted_at || now - p->counted_at >= COUNTS_FRESH_MS) {
        store_conn_t *r = store_reader_acquire(p->db->store);
        if (!r || storage_order_counts(r, p->counts) != SQLCACHED_OK)
            p->counts[0] = p->counts[1] = p->counts[2] = 0;
        if (r)
            store_reader_release(p->db->store, r);
        p->counted_at = now;
    }
    memcpy(counts, p->counts, sizeof p->counts);
    pthread_mutex_unlock(&p->counts_lock);
}

void sqlcached_payment_stats(sqlcached_t *db, sqlcached_payment_stats_t *out)
{
    memset(out, 0, sizeof *out);
    uint64_t counts[3];
    order_counts(db->payment, counts);
    out->paid = counts[SQLCACHED_ORDER_PAID];
    out->pending = counts[SQLCACHED_ORDER_PENDING];
    out->cancelled = counts[SQLCACHED_ORDER_CANCELLED];
    out->auto_cancelled = atomic_load(&db->payment->auto_cancelled);
    out->user_cancelled = atomic_load(&db->payment->user_cancelled);
    out->payments = atomic_load(&db->payment->payments);
}

/* ------------------------------------------------------------------------
 * Cancelling due orders (the timer's write)
 * ------------------------------------------------------------------------ */

typedef struct due_item {
    char id[SQLCACHED_ITEM_ID_MAX + 1];
    int64_t units, version;
} due_item_t;

typedef struct due_job {
    sqlcached_t *db;
    int64_t now;
    due_item_t *items; /* owned; the items whose orders were cancelled */
    size_t count, cap;
    size_t orders; /* orders cancelled */
} due_job_t;

/* One cancelled order: count its unit under its item. */
static sqlcached_status_t on_due_order(void *cls, const sqlcached_order_t *o)
{
    due_job_t *j = cls;
    j->orders++;
    for (size_t i = 0; i < j->count; i++) {
        if (strcmp(j->items[i].id, o->item_id) == 0) {
            j->items[i].units++;
            return SQLCACHED_OK;
        }
    }
    if (j->count == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 8;
        due_item_t *grown = realloc(j->items, cap * sizeof *grown);
        if (!grown)
            return SQLCACHED_NOMEM;
        j->items = grown;
        j->cap = cap;
    }
    due_item_t *it = &j->items[j->count++];
    memcpy(it->id, o->item_id, sizeof it->id);
    it->units = 1;
    it->version = 0;
    return SQLCACHED_OK;
}

static sqlcached_status_t tx_cancel_due(store_conn_t *w, void *arg)
{
    due_job_t *j = arg;
    j->count = j->orders = 0; /* a write may run again (a retried batch) */
    sqlcached_status_t st = storage_orders_cancel_due(w, j->now, DUE_BATCH,
                                                      j->db->opts.testing_payment_unguarded != 0,
                                                      on_due_order, j);
    for (size_t i = 0; st == SQLCACHED_OK && i < j->count; i++)
        st = return_units(w, j->items[i].id, j->items[i].units, &j->items[i].version);
    return st;
}

static void due_committed(void *arg)
{
    due_job_t *j = arg;
    for (size_t i = 0; i < j->count; i++)
        units_returned(j->db, j->items[i].id, j->items[i].version);
    atomic_fetch_add(&j->db->payment->auto_cancelled, j->orders);
}

/* Cancel the orders due at `now` (up to DUE_BATCH). -1 when the write
 * failed, else how many were cancelled. */
static long cancel_due(payment_t *p, int64_t now)
{
    due_job_t job = {.db = p->db, .now = now};
    sqlcached_status_t st = store_write_then(p->db->store, tx_cancel_due, due_committed, &job);
    free(job.items);
    if (st != SQLCACHED_OK) {
        if (!p->warned_at || mono_ms() - p->warned_at >= WARN_EVERY_MS) {
            log_warn("payment", "cancelling orders past their pay_by failed: %s (retrying)",
                     sqlcached_status_name(st));
            p->warned_at = mono_ms();
        }
        return -1;
    }
    return (long)job.orders;
}

/* ------------------------------------------------------------------------
 * The timer
 * ------------------------------------------------------------------------ */

void payment_note_deadline(payment_t *p, int64_t pay_by)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->scanning && pay_by < p->noted_in_scan)
        p->noted_in_scan = pay_by;
    if (pay_by < p->earliest) {
        p->earliest = pay_by;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
}

void payment_rescan(payment_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->rescan = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Under lock: read the earliest pending pay_by from the store (the lock
 * released meanwhile). False when the read failed (rescan stays due). */
static bool do_scan(payment_t *p)
{
    p->rescan = false;
    p->scanning = true;
    p->noted_in_scan = NONE;
    pthread_mutex_unlock(&p->lock);
    int64_t pay_by = NONE;
    store_conn_t *r = store_reader_acquire(p->db->store);
    sqlcached_status_t st = r ? storage_next_pay_by(r, &pay_by) : SQLCACHED_UNAVAILABLE;
    if (r)
        store_reader_release(p->db->store, r);
    pthread_mutex_lock(&p->lock);
    p->scanning = false;
    if (st != SQLCACHED_OK && st != SQLCACHED_NOT_FOUND) {
        p->rescan = true;
        return false;
    }
    if (st == SQLCACHED_NOT_FOUND)
        pay_by = NONE;
    p->earliest = pay_by < p->noted_in_scan ? pay_by : p->noted_in_scan;
    return true;
}

static void timed_wait(payment_t *p, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + ms * 1000000LL;
    until.tv_sec += ns / 1000000000LL;
    until.tv_nsec = ns % 1000000000LL;
    pthread_cond_timedwait(&p->cond, &p->lock, &until);
}

/* Under lock: cancel what is due at now (the lock released meanwhile),
 * then look up the next deadline. False after a failure. */
static bool do_fire(payment_t *p, int64_t now)
{
    pthread_mutex_unlock(&p->lock);
    long n = cancel_due(p, now);
    pthread_mutex_lock(&p->lock);
    if (n < 0)
        return false;
    return do_scan(p); /* the next earliest (or more due, beyond DUE_BATCH) */
}

static void *timer_main(void *arg)
{
    payment_t *p = arg;
    int64_t scanned_at = mono_ms();
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        bool ok = true;
        if (p->rescan || mono_ms() - scanned_at >= RESCAN_MS) {
            ok = do_scan(p);
            scanned_at = mono_ms();
        }
        int64_t now = engine_now(p->db);
        if (ok && !p->stopping && p->earliest <= now)
            ok = do_fire(p, now);
        if (p->stopping)
            break;
        if (!ok) {
            timed_wait(p, BACKOFF_MS);
            continue;
        }
        if (p->earliest <= engine_now(p->db))
            continue;
        int64_t sleep = p->earliest == NONE ? RESCAN_MS : p->earliest - engine_now(p->db);
        timed_wait(p, sleep < MAX_SLEEP_MS || p->earliest == NONE ? sleep : MAX_SLEEP_MS);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Create, start, destroy
 * ------------------------------------------------------------------------ */

payment_t *payment_create(sqlcached_t *db)
{
    payment_t *p = calloc(1, sizeof *p);
    pthread_condattr_t attr;
    if (!p || pthread_condattr_init(&attr) != 0) {
        free(p);
        return NULL;
    }
    p->db = db;
    p->earliest = p->noted_in_scan = NONE;
    p->rescan = true; /* the first job: deadlines that passed while closed */
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->counts_lock, NULL);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    return p;
}

int payment_start(payment_t *p, char *err, size_t errlen)
{
    if (pthread_create(&p->thread, NULL, timer_main, p) != 0) {
        snprintf(err, errlen, "cannot start the payment deadline thread: %s", strerror(errno));
        return -1;
    }
    p->started = true;
    return 0;
}

void payment_destroy(payment_t *p)
{
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->lock);
        p->stopping = true;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->counts_lock);
    free(p);
}
