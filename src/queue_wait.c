/*
 * queue_wait.c - the claims that wait for a job: the registry (queue name
 * -> FIFO of parked claims, each entry's next_due), the kicks that run
 * parked claims again, the timer thread (next_due, deadlines, the cluster
 * recheck) and the registry's creation and stop. Apart from queue.c, which
 * runs the claims' writes and answers them, as lease_wait.c is from
 * lease.c. How a claim waits, the locking and the ownership of a claim are
 * described in queue.c's file comment; the types are in queue_int.h.
 */
#include "queue_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

#define TIMER_MAX_SLEEP_MS 1000

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

static qentry_t *do_find_entry(queue_registry_t *reg, const char *name, size_t n)
{
    qentry_t *e = reg->buckets[name_hash(name, n) % QUEUE_BUCKETS];
    for (; e; e = e->hnext)
        if (e->name_len == n && memcmp(e->name, name, n) == 0)
            return e;
    return NULL;
}

static qentry_t *do_get_entry(queue_registry_t *reg, const char *name, size_t n)
{
    qentry_t *e = do_find_entry(reg, name, n);
    if (e)
        return e;
    e = calloc(1, sizeof *e + n + 1);
    if (!e)
        return NULL;
    memcpy(e->name, name, n);
    e->name_len = n;
    e->next_due = INT64_MAX;
    e->checked_at = qi_mono_ms();
    qentry_t **bucket = &reg->buckets[name_hash(name, n) % QUEUE_BUCKETS];
    e->hnext = *bucket;
    *bucket = e;
    e->next = reg->entries;
    if (reg->entries)
        reg->entries->prev = e;
    reg->entries = e;
    return e;
}

static void do_drop_entry(queue_registry_t *reg, qentry_t *e)
{
    qentry_t **p = &reg->buckets[name_hash(e->name, e->name_len) % QUEUE_BUCKETS];
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

/* Park c at the tail of its queue's entry; false when out of memory. */
bool qi_do_park(queue_registry_t *reg, qclaim_t *c)
{
    qentry_t *e = do_get_entry(reg, c->queue, c->queue_len);
    if (!e)
        return false;
    c->entry = e;
    c->prev = e->tail;
    c->next = NULL;
    if (e->tail)
        e->tail->next = c;
    else
        e->head = c;
    e->tail = c;
    if (c->next_due < e->next_due)
        e->next_due = c->next_due;
    reg->parked++;
    pthread_cond_signal(&reg->timer_cond);
    return true;
}

/* Take c out of its entry (the entry goes once empty). */
static void do_unpark(queue_registry_t *reg, qclaim_t *c)
{
    qentry_t *e = c->entry;
    if (c->prev)
        c->prev->next = c->next;
    else
        e->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        e->tail = c->prev;
    c->prev = c->next = NULL;
    c->entry = NULL;
    reg->parked--;
    if (!e->head)
        do_drop_entry(reg, e);
}

/* Move up to n parked claims of e (n 0: all) to the kicked list, to run
 * again; the timer thread runs them. */
static void do_kick(queue_registry_t *reg, qentry_t *e, size_t n)
{
    size_t moved = 0;
    while (e->head && (n == 0 || moved < n)) {
        qclaim_t *c = e->head;
        bool last = c->next == NULL;
        do_unpark(reg, c);
        reg->running++;
        c->next = reg->kicked;
        reg->kicked = c;
        moved++;
        if (last)
            break; /* e is freed */
    }
    if (moved)
        pthread_cond_signal(&reg->timer_cond);
}

/* A job of queue is due at run_at (enqueued or nacked, here or on another
 * node): kick one parked claim if it is due now, else let the timer know. */
void qi_job_due_at(queue_registry_t *reg, const char *queue, size_t n, int64_t run_at)
{
    pthread_mutex_lock(&reg->lock);
    qentry_t *e = do_find_entry(reg, queue, n);
    if (e && run_at <= engine_now(reg->db)) {
        do_kick(reg, e, 1);
    } else if (e && run_at < e->next_due) {
        e->next_due = run_at;
        pthread_cond_signal(&reg->timer_cond);
    }
    pthread_mutex_unlock(&reg->lock);
}

void queue_remote_due(queue_registry_t *reg, const char *queue, size_t n, int64_t run_at)
{
    atomic_fetch_add(&reg->epoch, 1);
    qi_job_due_at(reg, queue, n, run_at);
}

void queue_set_recheck(queue_registry_t *reg, int64_t ms)
{
    pthread_mutex_lock(&reg->lock);
    reg->recheck_ms = ms;
    pthread_cond_signal(&reg->timer_cond);
    pthread_mutex_unlock(&reg->lock);
}

/* ------------------------------------------------------------------------
 * The timer thread
 * ------------------------------------------------------------------------ */

/* Under the lock: kick the entries whose next_due came (or, in a cluster,
 * whose recheck is due); collect claims whose deadline passed into *ended.
 * Returns whether anything happened. */
static bool do_due(queue_registry_t *reg, int64_t now_m, int64_t now_e, qclaim_t **ended)
{
    bool any = false;
    for (qentry_t *e = reg->entries, *next; e; e = next) {
        next = e->next;
        for (qclaim_t *c = e->head, *cn; c; c = cn) {
            cn = c->next;
            if (c->deadline > now_m)
                continue;
            bool last = e->head == c && !c->next;
            do_unpark(reg, c);
            c->next = *ended;
            *ended = c;
            any = true;
            if (last)
                break; /* e is freed */
        }
    }
    for (qentry_t *e = reg->entries, *next; e; e = next) {
        next = e->next;
        bool recheck = reg->recheck_ms > 0 && now_m - e->checked_at >= reg->recheck_ms;
        if (e->next_due <= now_e || recheck) {
            e->next_due = INT64_MAX;
            e->checked_at = now_m;
            do_kick(reg, e, 0);
            any = true;
        }
    }
    return any;
}

/* Under the lock: how long the timer may sleep (ms). */
static int64_t do_sleep_ms(queue_registry_t *reg, int64_t now_m, int64_t now_e)
{
    int64_t sleep = TIMER_MAX_SLEEP_MS;
    for (qentry_t *e = reg->entries; e; e = e->next) {
        if (e->next_due != INT64_MAX && e->next_due - now_e < sleep)
            sleep = e->next_due - now_e;
        if (reg->recheck_ms > 0 && e->checked_at + reg->recheck_ms - now_m < sleep)
            sleep = e->checked_at + reg->recheck_ms - now_m;
        for (qclaim_t *c = e->head; c; c = c->next)
            if (c->deadline - now_m < sleep)
                sleep = c->deadline - now_m;
    }
    return sleep > 0 ? sleep : 0;
}

static void timed_wait(queue_registry_t *reg, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + ms * 1000000LL;
    until.tv_sec += ns / 1000000000LL;
    until.tv_nsec = ns % 1000000000LL;
    pthread_cond_timedwait(&reg->timer_cond, &reg->lock, &until);
}

/* Run the kicked claims again (lock not held); each counted in running. */
static void run_kicked(queue_registry_t *reg, qclaim_t *list)
{
    for (qclaim_t *c = list, *next; c; c = next) {
        next = c->next;
        c->next = NULL;
        sqlcached_status_t st;
        if (qi_submit(c, &st))
            continue;
        qi_complete(c, st);
        qi_not_running(reg);
    }
}

static void *timer_main(void *arg)
{
    queue_registry_t *reg = arg;
    pthread_mutex_lock(&reg->lock);
    while (!reg->stopping) {
        qclaim_t *ended = NULL;
        bool any = do_due(reg, qi_mono_ms(), engine_now(reg->db), &ended);
        qclaim_t *kicked = reg->kicked;
        reg->kicked = NULL;
        if (any || kicked) {
            pthread_mutex_unlock(&reg->lock);
            run_kicked(reg, kicked);
            for (qclaim_t *c = ended, *next; c; c = next) {
                next = c->next;
                qi_complete(c, SQLCACHED_OK); /* waited to the end: no job */
            }
            pthread_mutex_lock(&reg->lock);
            continue;
        }
        if (!reg->entries) { /* nobody waits: sleep until a claim parks */
            pthread_cond_wait(&reg->timer_cond, &reg->lock);
            continue;
        }
        int64_t sleep = do_sleep_ms(reg, qi_mono_ms(), engine_now(reg->db));
        if (sleep > 0)
            timed_wait(reg, sleep);
    }
    pthread_mutex_unlock(&reg->lock);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Create and destroy
 * ------------------------------------------------------------------------ */

queue_registry_t *queue_registry_create(sqlcached_t *db, char *err, size_t errlen)
{
    queue_registry_t *reg = calloc(1, sizeof *reg);
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
    pthread_cond_init(&reg->idle_cond, NULL);
    atomic_init(&reg->epoch, 0);
    if (pthread_create(&reg->timer, NULL, timer_main, reg) != 0) {
        snprintf(err, errlen, "cannot start the queue timer thread: %s", strerror(errno));
        queue_registry_destroy(reg);
        return NULL;
    }
    reg->timer_started = true;
    return reg;
}

void queue_registry_stop(queue_registry_t *reg)
{
    if (!reg)
        return;
    pthread_mutex_lock(&reg->lock);
    bool was = reg->stopping;
    reg->stopping = true;
    pthread_cond_signal(&reg->timer_cond);
    pthread_mutex_unlock(&reg->lock);
    if (was)
        return;
    if (reg->timer_started)
        pthread_join(reg->timer, NULL);
    reg->timer_started = false;
    pthread_mutex_lock(&reg->lock);
    qclaim_t *ended = reg->kicked;
    for (qclaim_t *c = ended; c; c = c->next)
        reg->running--;
    reg->kicked = NULL;
    while (reg->entries) {
        qclaim_t *c = reg->entries->head;
        do_unpark(reg, c);
        c->next = ended;
        ended = c;
    }
    pthread_mutex_unlock(&reg->lock);
    for (qclaim_t *c = ended, *next; c; c = next) {
        next = c->next;
        qi_complete(c, SQLCACHED_UNAVAILABLE);
    }
    pthread_mutex_lock(&reg->lock);
    while (reg->running > 0) /* bounded: each write in flight completes */
        pthread_cond_wait(&reg->idle_cond, &reg->lock);
    pthread_mutex_unlock(&reg->lock);
}

void queue_registry_destroy(queue_registry_t *reg)
{
    if (!reg)
        return;
    queue_registry_stop(reg);
    pthread_cond_destroy(&reg->idle_cond);
    pthread_cond_destroy(&reg->timer_cond);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}
