/*
 * watch.c - the change log and its watches (sqlcached_watch_*).
 *
 * Recording: each KV write calls watch_log() once it has its version, so
 * the change goes into kv_changes in the transaction of the change (the
 * storage seam's watch operations; no SQL here). The purge of expired keys
 * (watch_purge_expired) gives each removed key a version and an 'x'
 * change. The maintenance thread trims the log to --watch-history
 * (watch_maintain).
 *
 * Reading: one dispatcher thread per store reads the log in version order
 * ("version > head", on a reader connection) when a commit kicks it
 * (watch_kick: kv.c's after-commit path; cluster.c when another node
 * says it wrote) and at least every POLL_MS, keeps the newest RING_CAP
 * changes in a ring (every change with base < version <= head is there),
 * and wakes exactly the watches with a change of their prefix past their
 * cursor. While no watch is open it reads nothing on a kick (a reader
 * transaction per commit was 5% of a PUT's CPU): once per READ_EVERY_MS it
 * only moves an empty ring to the log's newest version, and the first
 * watch to open does the same, so it never starts with a backlog.
 * Versions become visible in version order on both backends (one
 * writer on SQLite; storage_pg_watch.c says why on PostgreSQL, also with
 * several nodes), so "greater than the last one read" never skips one.
 *
 * A watch is a cursor, a prefix and a wake callback: no thread, no queue.
 * sqlcached_watch_next() copies changes past the cursor from the ring, or,
 * for a cursor behind the ring (a slow reader, or since= in the past),
 * from the log through a reader connection, at most PAGE rows per call.
 * So the memory of a watch is its struct and prefix, whatever its lag; a
 * cursor that falls behind the trimmed history gets HISTORY_TRUNCATED.
 *
 * Locking: hub->lock guards the ring, head, base and the list of watches;
 * wake callbacks run under it (so sqlcached_watch_close, which takes it,
 * returns only once no wake is running). No storage call holds it.
 */
#include "watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "engine.h"
#include "log.h"
#include "storage.h"

#define RING_CAP 8192
#define BATCH 1024
#define PAGE 256
#define POLL_MS 200        /* the dispatcher's tick: deadlines, keep-alives */
#define READ_EVERY_MS 1000 /* the log is read at least this often */
#define TRIM_EVERY_MS 5000
#define PURGE_KEYS_MAX 1000

typedef struct ring_entry {
    int64_t version, expires_at;
    char kind;
    size_t klen;
    char *key; /* owned, NUL-terminated */
} ring_entry_t;

struct sqlcached_watch {
    watch_hub_t *hub;
    char *prefix; /* owned */
    size_t plen;
    int64_t cursor;   /* under hub->lock */
    int64_t deadline; /* engine ms, 0 = none */
    atomic_bool timed_out;
    sqlcached_wake_fn wake;
    void *cls;
    int64_t last_wake; /* monotonic ms, under hub->lock */
    sqlcached_watch_t *prev, *next;
};

struct watch_hub {
    sqlcached_t *db;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool kicked, stopping;
    ring_entry_t *ring; /* RING_CAP entries, start..start+count */
    size_t start, count;
    int64_t base, head;
    sqlcached_watch_t *watches;
    unsigned nwatches, max_watches;
    int64_t keep;
    int64_t last_trim;
    atomic_uint_fast64_t events_sent, truncated;
    atomic_int_fast64_t hist_size, hist_oldest;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Recording
 * ------------------------------------------------------------------------ */

sqlcached_status_t watch_log(store_conn_t *w, char kind, const void *key, size_t klen,
                             int64_t version, int64_t expires_at)
{
    return storage_watch(w)->append(w, version, kind, key, klen, expires_at);
}

sqlcached_status_t watch_replace(store_conn_t *w, const void *key, size_t klen, const void *value,
                                 size_t vlen, const char *content_type, int64_t version,
                                 int64_t expires_at, int64_t now, int64_t *previous)
{
    const storage_watch_ops_t *ops = storage_watch(w);
    if (ops->replace_logged)
        return ops->replace_logged(w, key, klen, value, vlen, content_type, version, expires_at,
                                   now, previous);
    sqlcached_status_t st = watch_log(w, SQLCACHED_CHANGE_PUT, key, klen, version, expires_at);
    if (st == SQLCACHED_OK)
        st = storage_kv_replace(w, key, klen, value, vlen, content_type, version, expires_at, now,
                                previous);
    return st;
}

void watch_kick(watch_hub_t *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->kicked = true;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* Expired keys found by the purge (copies), to remove one by one. */
typedef struct expired_keys {
    ring_entry_t *e;
    size_t n, cap;
} expired_keys_t;

static bool collect_expired(void *cls, const storage_change_row_t *row)
{
    expired_keys_t *x = cls;
    if (x->n == x->cap)
        return false;
    char *k = malloc(row->klen + 1);
    if (!k)
        return false;
    memcpy(k, row->key, row->klen);
    k[row->klen] = '\0';
    x->e[x->n++] = (ring_entry_t){0, row->expires_at, 'x', row->klen, k};
    return true;
}

sqlcached_status_t watch_purge_expired(store_conn_t *w, int64_t now, int max_rows, int *purged)
{
    *purged = 0;
    size_t cap = max_rows > 0 && max_rows < PURGE_KEYS_MAX ? (size_t)max_rows : PURGE_KEYS_MAX;
    expired_keys_t x = {calloc(cap, sizeof(ring_entry_t)), 0, cap};
    if (!x.e)
        return SQLCACHED_NOMEM;
    sqlcached_status_t st = storage_watch(w)->expired(w, now, (unsigned)cap, collect_expired, &x);
    for (size_t i = 0; st == SQLCACHED_OK && i < x.n; i++) {
        bool removed = false;
        int64_t version;
        st = storage_watch(w)->remove_expired(w, x.e[i].key, x.e[i].klen, now, &removed);
        if (st == SQLCACHED_OK && removed) {
            /* the other nodes read the log at once (and drop their copies) */
            store_note(w, CLUSTER_KEY, x.e[i].key, x.e[i].klen, 0);
            st = store_counter_next(w, "version", &version);
        }
        if (st == SQLCACHED_OK && removed)
            st = watch_log(w, SQLCACHED_CHANGE_EXPIRE, x.e[i].key, x.e[i].klen, version,
                           x.e[i].expires_at);
        if (st == SQLCACHED_OK && removed)
            (*purged)++;
    }
    for (size_t i = 0; i < x.n; i++)
        free(x.e[i].key);
    free(x.e);
    return st;
}

/* ------------------------------------------------------------------------
 * The ring (under hub->lock)
 * ------------------------------------------------------------------------ */

static ring_entry_t *ring_at(watch_hub_t *h, size_t i)
{
    return &h->ring[(h->start + i) % RING_CAP];
}

/* The first logical index whose version > v (count when none). */
static size_t ring_after(watch_hub_t *h, int64_t v)
{
    size_t lo = 0, hi = h->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(h, mid)->version <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Take e over (its key) as the newest entry. */
static void ring_push(watch_hub_t *h, ring_entry_t *e)
{
    if (h->count == RING_CAP) {
        ring_entry_t *old = ring_at(h, 0);
        h->base = old->version;
        free(old->key);
        h->start = (h->start + 1) % RING_CAP;
        h->count--;
    }
    *ring_at(h, h->count) = *e;
    h->count++;
    h->head = e->version;
}

static bool prefix_match(const sqlcached_watch_t *w, const char *key, size_t klen)
{
    return klen >= w->plen && memcmp(key, w->prefix, w->plen) == 0;
}

/* ------------------------------------------------------------------------
 * The dispatcher
 * ------------------------------------------------------------------------ */

typedef struct batch {
    ring_entry_t e[BATCH];
    size_t n;
    int64_t trimmed; /* the log's trimmed version, read after the rows */
} batch_t;

static bool collect_batch(void *cls, const storage_change_row_t *row)
{
    batch_t *b = cls;
    char *k = malloc(row->klen + 1);
    if (!k || b->n == BATCH) {
        free(k);
        return false;
    }
    memcpy(k, row->key, row->klen);
    k[row->klen] = '\0';
    b->e[b->n++] = (ring_entry_t){row->version, row->expires_at, row->kind, row->klen, k};
    return true;
}

/* Read the changes after `after` from the log into b, then the trimmed
 * version (a trim may have removed changes the dispatcher had not read
 * yet: see skip_trimmed). */
static sqlcached_status_t read_batch(watch_hub_t *h, int64_t after, batch_t *b)
{
    b->n = 0;
    b->trimmed = 0;
    store_conn_t *r = store_reader_acquire(h->db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    sqlcached_status_t st = storage_watch(r)->range(r, after, INT64_MAX, BATCH, collect_batch, b);
    int64_t newest = 0;
    if (st == SQLCACHED_OK)
        st = storage_watch(r)->edges(r, &b->trimmed, &newest);
    store_reader_release(h->db->store, r);
    return st;
}

/* The trim removed changes after the head (a dispatcher that fell more
 * than --watch-history behind): the ring can no longer vouch for every
 * change after its base. Empty it and start after the trimmed version, so
 * that a watch behind it reads the log and learns it is truncated. Under
 * the lock. */
static void skip_trimmed(watch_hub_t *h, int64_t trimmed)
{
    if (trimmed <= h->head)
        return;
    for (size_t i = 0; i < h->count; i++)
        free(ring_at(h, i)->key);
    h->start = h->count = 0;
    h->base = h->head = trimmed;
}

/* Nobody watches: instead of reading every change, empty the ring and
 * start it after `newest`, the log's newest version (read without the
 * lock). Every change after the new base is then still read into the
 * ring, so it vouches for base < version <= head as before. Under the
 * lock; nothing happens if a watch came meanwhile or the ring is ahead. */
static void jump_to(watch_hub_t *h, int64_t newest)
{
    if (h->watches || newest <= h->head)
        return;
    for (size_t i = 0; i < h->count; i++)
        free(ring_at(h, i)->key);
    h->start = h->count = 0;
    h->base = h->head = newest;
}

/* The log's newest version in *newest (0 when empty). */
static sqlcached_status_t read_newest(watch_hub_t *h, int64_t *newest)
{
    store_conn_t *r = store_reader_acquire(h->db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    int64_t trimmed = 0;
    sqlcached_status_t st = storage_watch(r)->edges(r, &trimmed, newest);
    store_reader_release(h->db->store, r);
    return st;
}

/* Push b into the ring, then wake the watches it concerns, those past
 * their deadline and those due a keep-alive. Under the lock. */
static void dispatch(watch_hub_t *h, batch_t *b, int64_t now_mono)
{
    size_t pushed = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->e[i].version <= h->head) { /* read twice: a read raced a kick */
            free(b->e[i].key);
            continue;
        }
        ring_push(h, &b->e[i]);
        pushed++;
    }
    size_t first = h->count - (pushed < h->count ? pushed : h->count);
    int64_t now = engine_now(h->db);
    for (sqlcached_watch_t *w = h->watches; w; w = w->next) {
        bool wake = false;
        for (size_t i = first; !wake && i < h->count; i++) {
            ring_entry_t *e = ring_at(h, i);
            wake = e->version > w->cursor && prefix_match(w, e->key, e->klen);
        }
        if (w->deadline && now >= w->deadline && !atomic_load(&w->timed_out)) {
            atomic_store(&w->timed_out, true);
            wake = true;
        }
        if (now_mono - w->last_wake >= SQLCACHED_WATCH_KEEPALIVE_MS)
            wake = true;
        if (wake) {
            w->last_wake = now_mono;
            w->wake(w->cls);
        }
    }
}

static void *dispatcher_main(void *arg)
{
    watch_hub_t *h = arg;
    batch_t *b = malloc(sizeof *b);
    int64_t last_read = 0;
    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        if (!h->kicked) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += POLL_MS * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&h->cond, &h->lock, &until);
        }
        if (h->stopping)
            break;
        int64_t now_mono = mono_ms();
        /* with no watch, a commit's kick reads nothing: the ring only
         * follows the log's newest version, once per READ_EVERY_MS */
        bool idle = h->watches == NULL;
        bool due = now_mono - last_read >= READ_EVERY_MS;
        bool read = b && !idle && (h->kicked || due);
        bool jump = b && idle && due;
        h->kicked = false;
        int64_t after = h->head, newest = 0;
        pthread_mutex_unlock(&h->lock);
        sqlcached_status_t st = SQLCACHED_OK;
        if (read || jump)
            last_read = now_mono;
        if (read)
            st = read_batch(h, after, b);
        else if (b)
            b->n = 0;
        if (jump)
            st = read_newest(h, &newest);
        pthread_mutex_lock(&h->lock);
        if (jump && st == SQLCACHED_OK)
            jump_to(h, newest);
        if (st != SQLCACHED_OK && st != SQLCACHED_NOMEM)
            log_warn("watch", "reading the change log failed: %s", sqlcached_status_name(st));
        if (b) {
            if (read && st == SQLCACHED_OK)
                skip_trimmed(h, b->trimmed);
            dispatch(h, b, now_mono);
            if (b->n == BATCH)
                h->kicked = true; /* more to read */
        }
    }
    pthread_mutex_unlock(&h->lock);
    free(b);
    return NULL;
}

watch_hub_t *watch_hub_open(sqlcached_t *db, char *err, size_t errlen)
{
    watch_hub_t *h = calloc(1, sizeof *h);
    if (h)
        h->ring = calloc(RING_CAP, sizeof(ring_entry_t));
    if (!h || !h->ring) {
        if (h)
            free(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->db = db;
    h->keep = db->opts.watch_history > 0 ? db->opts.watch_history : SQLCACHED_WATCH_HISTORY_DEFAULT;
    h->max_watches = db->opts.max_watchers ? db->opts.max_watchers : SQLCACHED_MAX_WATCHERS_DEFAULT;
    sqlcached_status_t st = read_newest(h, &h->head);
    if (st != SQLCACHED_OK) {
        snprintf(err, errlen, "cannot read the change log: %s", sqlcached_status_name(st));
        free(h->ring);
        free(h);
        return NULL;
    }
    h->base = h->head;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&h->lock, NULL);
    if (pthread_create(&h->thread, NULL, dispatcher_main, h) != 0) {
        snprintf(err, errlen, "cannot start the watch dispatcher");
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->lock);
        free(h->ring);
        free(h);
        return NULL;
    }
    return h;
}

void watch_hub_close(watch_hub_t *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->thread, NULL);
    for (size_t i = 0; i < h->count; i++)
        free(ring_at(h, i)->key);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    free(h->ring);
    free(h);
}

/* ------------------------------------------------------------------------
 * Trimming and figures
 * ------------------------------------------------------------------------ */

typedef struct trim_job {
    int64_t keep, removed;
} trim_job_t;

static sqlcached_status_t do_trim(store_conn_t *w, void *arg)
{
    trim_job_t *t = arg;
    return storage_watch(w)->trim(w, t->keep, &t->removed);
}

void watch_maintain(watch_hub_t *h, int64_t now)
{
    if (!h || (now - h->last_trim < TRIM_EVERY_MS && now >= h->last_trim))
        return;
    h->last_trim = now;
    trim_job_t t = {h->keep, 0};
    sqlcached_status_t st = store_write(h->db->store, do_trim, &t);
    if (st != SQLCACHED_OK)
        log_warn("watch", "trimming the change log failed: %s", sqlcached_status_name(st));
    store_conn_t *r = store_reader_acquire(h->db->store);
    storage_watch_bounds_t b = {0};
    st = r ? storage_watch(r)->bounds(r, &b) : SQLCACHED_UNAVAILABLE;
    if (r)
        store_reader_release(h->db->store, r);
    if (st == SQLCACHED_OK) {
        atomic_store(&h->hist_size, b.count);
        atomic_store(&h->hist_oldest, b.oldest);
    }
}

bool watch_active(watch_hub_t *h)
{
    if (!h)
        return false;
    pthread_mutex_lock(&h->lock);
    bool active = h->nwatches > 0;
    pthread_mutex_unlock(&h->lock);
    return active;
}

void sqlcached_watch_stats(sqlcached_t *db, sqlcached_watch_stats_t *out)
{
    *out = (sqlcached_watch_stats_t){0};
    watch_hub_t *h = db->watch;
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    out->watchers = h->nwatches;
    out->history_newest = h->head;
    pthread_mutex_unlock(&h->lock);
    out->events_sent = atomic_load(&h->events_sent);
    out->truncated = atomic_load(&h->truncated);
    out->history_size = atomic_load(&h->hist_size);
    out->history_oldest = atomic_load(&h->hist_oldest);
}

/* ------------------------------------------------------------------------
 * Watches
 * ------------------------------------------------------------------------ */

/* HISTORY_TRUNCATED, counted, with the oldest version kept in *oldest. */
static sqlcached_status_t truncated(watch_hub_t *h, store_conn_t *r, int64_t *oldest)
{
    atomic_fetch_add(&h->truncated, 1);
    storage_watch_bounds_t b = {0};
    if (oldest && storage_watch(r)->bounds(r, &b) == SQLCACHED_OK)
        *oldest = b.oldest ? b.oldest : b.newest + 1;
    return SQLCACHED_HISTORY_TRUNCATED;
}

sqlcached_status_t sqlcached_watch_open(sqlcached_t *db, const void *prefix, size_t plen,
                                        int64_t since, int64_t wait_ms, sqlcached_wake_fn wake,
                                        void *cls, sqlcached_watch_t **out, int64_t *oldest)
{
    *out = NULL;
    watch_hub_t *h = db->watch;
    if (!h || !wake || (plen && !prefix) || plen > SQLCACHED_KEY_MAX || wait_ms < 0)
        return !h ? SQLCACHED_UNAVAILABLE : SQLCACHED_INVALID_ARGUMENT;
    int64_t newest = 0; /* without since=: the log's newest version is "now" */
    if (since < 0) {
        sqlcached_status_t st = read_newest(h, &newest);
        if (st != SQLCACHED_OK)
            return st;
    }
    if (since >= 0) {
        store_conn_t *r = store_reader_acquire(db->store);
        if (!r)
            return SQLCACHED_UNAVAILABLE;
        int64_t trimmed = 0, log_newest = 0;
        sqlcached_status_t st = storage_watch(r)->edges(r, &trimmed, &log_newest);
        if (st == SQLCACHED_OK && since < trimmed)
            st = truncated(h, r, oldest);
        store_reader_release(db->store, r);
        if (st != SQLCACHED_OK)
            return st;
    }
    sqlcached_watch_t *w = calloc(1, sizeof *w);
    if (w)
        w->prefix = malloc(plen + 1);
    if (!w || !w->prefix) {
        free(w);
        return SQLCACHED_NOMEM;
    }
    memcpy(w->prefix, prefix ? prefix : "", plen);
    w->prefix[plen] = '\0';
    *w = (sqlcached_watch_t){.hub = h,
                             .prefix = w->prefix,
                             .plen = plen,
                             .wake = wake,
                             .cls = cls,
                             .last_wake = mono_ms()};
    if (wait_ms > 0)
        w->deadline = engine_now(db) + wait_ms;
    pthread_mutex_lock(&h->lock);
    if (h->nwatches >= h->max_watches) {
        pthread_mutex_unlock(&h->lock);
        free(w->prefix);
        free(w);
        return SQLCACHED_UNAVAILABLE;
    }
    jump_to(h, newest); /* the first watch after an idle spell: no backlog to read */
    w->cursor = since >= 0 ? since : h->head > newest ? h->head : newest;
    w->next = h->watches;
    if (h->watches)
        h->watches->prev = w;
    h->watches = w;
    h->nwatches++;
    pthread_mutex_unlock(&h->lock);
    *out = w;
    return SQLCACHED_OK;
}

void sqlcached_watch_close(sqlcached_watch_t *w)
{
    if (!w)
        return;
    watch_hub_t *h = w->hub;
    pthread_mutex_lock(&h->lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    h->nwatches--;
    pthread_mutex_unlock(&h->lock);
    free(w->prefix);
    free(w);
}

int64_t sqlcached_watch_cursor(const sqlcached_watch_t *w)
{
    pthread_mutex_lock(&w->hub->lock);
    int64_t c = w->cursor;
    pthread_mutex_unlock(&w->hub->lock);
    return c;
}

int sqlcached_watch_timed_out(const sqlcached_watch_t *w)
{
    return atomic_load(&w->timed_out);
}

static void copy_change(sqlcached_change_t *c, int64_t version, char kind, const char *key,
                        size_t klen, int64_t expires_at)
{
    c->version = version;
    c->kind = kind;
    c->expires_at = expires_at;
    c->key_len = klen;
    memcpy(c->key, key, klen);
    c->key[klen] = '\0';
}

/* From the ring (w->cursor >= base), under the lock. */
static size_t next_from_ring(watch_hub_t *h, sqlcached_watch_t *w, sqlcached_change_t *out,
                             size_t max)
{
    size_t n = 0, i = ring_after(h, w->cursor);
    for (; i < h->count && n < max; i++) {
        ring_entry_t *e = ring_at(h, i);
        if (prefix_match(w, e->key, e->klen))
            copy_change(&out[n++], e->version, e->kind, e->key, e->klen, e->expires_at);
        w->cursor = e->version;
    }
    if (i == h->count && w->cursor < h->head)
        w->cursor = h->head;
    return n;
}

/* A page of the log read for a cursor behind the ring. */
typedef struct log_page {
    const sqlcached_watch_t *w;
    sqlcached_change_t *out;
    size_t max, n, rows;
    int64_t last; /* version of the last row looked at */
} log_page_t;

static bool page_row(void *cls, const storage_change_row_t *row)
{
    log_page_t *p = cls;
    if (p->n == p->max)
        return false;
    p->rows++;
    p->last = row->version;
    if (prefix_match(p->w, row->key, row->klen) && row->klen <= SQLCACHED_KEY_MAX)
        copy_change(&p->out[p->n++], row->version, row->kind, row->key, row->klen, row->expires_at);
    return true;
}

/* From the log: the changes after `from` up to `upto` (the ring's base). */
static sqlcached_status_t next_from_log(watch_hub_t *h, sqlcached_watch_t *w, int64_t from,
                                        int64_t upto, sqlcached_change_t *out, size_t max,
                                        size_t *n)
{
    store_conn_t *r = store_reader_acquire(h->db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    log_page_t p = {w, out, max, 0, 0, from};
    sqlcached_status_t st = storage_watch(r)->range(r, from, upto, PAGE, page_row, &p);
    bool stopped = st == SQLCACHED_NOMEM && p.n == max;
    int64_t trimmed = 0, newest = 0;
    if (st == SQLCACHED_OK || stopped)
        st = storage_watch(r)->edges(r, &trimmed, &newest);
    if (st == SQLCACHED_OK && from < trimmed) /* rows may have gone before the read */
        st = truncated(h, r, NULL);
    store_reader_release(h->db->store, r);
    if (st != SQLCACHED_OK)
        return st;
    pthread_mutex_lock(&h->lock);
    if (w->cursor == from) /* one reader per watch: always so */
        w->cursor = stopped || p.rows == PAGE ? p.last : upto;
    pthread_mutex_unlock(&h->lock);
    *n = p.n;
    return SQLCACHED_OK;
}

sqlcached_status_t sqlcached_watch_next(sqlcached_watch_t *w, sqlcached_change_t *out, size_t max,
                                        size_t *n)
{
    *n = 0;
    if (!w || !out || !max)
        return SQLCACHED_INVALID_ARGUMENT;
    watch_hub_t *h = w->hub;
    pthread_mutex_lock(&h->lock);
    int64_t from = w->cursor, upto = h->base;
    if (from >= upto)
        *n = next_from_ring(h, w, out, max);
    pthread_mutex_unlock(&h->lock);
    sqlcached_status_t st = SQLCACHED_OK;
    if (from < upto)
        st = next_from_log(h, w, from, upto, out, max, n);
    if (*n)
        atomic_fetch_add(&h->events_sent, *n);
    return st;
}
