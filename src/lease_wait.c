/*
 * lease_wait.c - the waiters of leases: the registry (lease name -> FIFO
 * queue of waiters, the deadline list), the waiters' life cycle
 * (lease_wait_end) and the timer thread that ends waiters at their
 * deadline and hands expired leases over. The writes themselves (the
 * hand-over inside a transaction, the grants after it) are lease.c's; the
 * states, the locking and the ownership of a waiter are described there.
 */
#include "lease_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "log.h"

#define TIMER_MAX_SLEEP_MS 1000
#define TIMER_BACKOFF_MS 100
#define HANDOFF_BATCH 64

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

lease_entry_t *li_do_find_entry(lease_registry_t *reg, const char *name, size_t n)
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
    lease_entry_t *e = li_do_find_entry(reg, name, n);
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
void li_do_deadline_insert(lease_registry_t *reg, lease_waiter_t *w)
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

void li_do_deadline_remove(lease_registry_t *reg, lease_waiter_t *w)
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
bool li_do_enqueue(lease_registry_t *reg, lease_waiter_t *w, const char *name, size_t n,
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
    li_do_deadline_insert(reg, w);
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
    li_do_deadline_remove(reg, w);
    if (!e->head)
        do_drop_entry(reg, e);
}

/* Mark w DONE with status (leaving every list). Returns true when its wake
 * callback must be called (then w->notifying is set; see li_notify()). */
bool li_do_complete(lease_registry_t *reg, lease_waiter_t *w, sqlcached_status_t status)
{
    do_dequeue(reg, w);
    w->state = W_DONE;
    w->status = status;
    w->notifying = w->on_wake != NULL || w->done != NULL;
    pthread_cond_broadcast(&w->cond);
    return w->notifying;
}

/* Run w's wake callback (lock not held), then let lease_wait_end go on. */
void li_notify(lease_registry_t *reg, lease_waiter_t *w)
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
void li_note_expiry(lease_registry_t *reg, const char *name, size_t n, int64_t expires_at)
{
    pthread_mutex_lock(&reg->lock);
    lease_entry_t *e = li_do_find_entry(reg, name, n);
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
    lease_entry_t *e = li_do_find_entry(reg, name, n);
    if (e && e->queued > 0) {
        e->expires_at = INT64_MIN; /* due now: the timer hands it over */
        pthread_cond_signal(&reg->timer_cond);
    }
    pthread_mutex_unlock(&reg->lock);
}

/* ------------------------------------------------------------------------
 * Waiters
 * ------------------------------------------------------------------------ */

lease_waiter_t *li_waiter_new(lease_registry_t *reg, const char *name, size_t name_len,
                              const char *owner, size_t owner_len, int64_t ttl_ms, int64_t wait_ms,
                              lease_wake_fn on_wake, sqlcached_done_fn done, void *arg)
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
    li_set_name(&w->lease, name, name_len);
    memcpy(w->owner, owner, owner_len);
    w->owner_len = owner_len;
    return w;
}

void li_waiter_free(lease_waiter_t *w)
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
    li_waiter_free(w);
    return status;
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
static bool do_due_handovers(lease_registry_t *reg, int64_t now_m, int64_t now_e, expire_job_t *j)
{
    for (lease_entry_t *e = reg->entries; e && j->count < HANDOFF_BATCH; e = e->next) {
        if (!do_entry_due(reg, e, now_m, now_e))
            continue;
        if (!li_names_add(j, e->name, e->name_len))
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
        if (li_do_complete(reg, w, SQLCACHED_LEASE_HELD)) {
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
    sqlcached_status_t st = store_write(reg->db->store, li_tx_handover, j);
    li_finish_grants(reg, j->grants, st);
    if (st != SQLCACHED_OK) {
        log_warn("lease", "hand-over of expired leases failed: %s", sqlcached_status_name(st));
        pthread_mutex_lock(&reg->lock);
        reg->backoff_until = mono_ms() + TIMER_BACKOFF_MS;
        pthread_mutex_unlock(&reg->lock);
    }
    li_names_free(j);
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
        li_names_free(&j);
        lease_waiter_t *wake = do_due_deadlines(reg, now_m);
        if (wake) {
            pthread_mutex_unlock(&reg->lock);
            for (lease_waiter_t *w = wake, *next; w; w = next) {
                next = w->next_done;
                li_notify(reg, w);
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
        if (li_do_complete(reg, w, SQLCACHED_UNAVAILABLE)) {
            w->next_done = wake;
            wake = w;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    for (lease_waiter_t *w = wake, *next; w; w = next) {
        next = w->next_done;
        li_notify(reg, w);
    }
    if (reg->timer_started)
        pthread_join(reg->timer, NULL);
    pthread_cond_destroy(&reg->timer_cond);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}
