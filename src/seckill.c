/*
 * seckill.c - flash sale: items, orders, the optimistic stock decrement and
 * the sold-out fast path.
 *
 * Storage: items and orders through the seckill operations of the storage
 * seam (storage.h), one order per (item, user). Placing an order is one
 * write (one savepoint in the writer's group transaction): insert the order
 * - the backend's uniqueness guard answers already_ordered, a missing item
 * not_found - then take one unit with a guarded update (storage_take_unit):
 *
 *   stock strategy:    guard stock > 0
 *                      no row: sold out.
 *   version strategy:  the item's version is read first on a reader
 *                      connection, then guard version = that version too
 *                      no row: another write came first; read again and
 *                      retry, at most `seckill_retries` times, then give up
 *                      with SQLCACHED_UNAVAILABLE.
 *
 *   naive (testing): stock read on a reader connection, then written back
 *                      one lower without a guard (place_naive): oversells,
 *                      for tests and the demo only.
 *
 * Any refusal returns a non-OK status from the write function, so the
 * savepoint rollback removes the inserted order (and the version taken).
 * Because the order is inserted before stock is looked at, a user who holds
 * an order learns SQLCACHED_ALREADY_ORDERED even when the item is sold out.
 *
 * Sold-out fast path. A small hash table of item_state_t, one per item seen,
 * remembers "sold out as of version V" (sold_out_version). It is set only
 * from a committed observation: an order that committed with stock left 0,
 * or a refusal followed by a read on a reader connection (committed data)
 * that saw stock 0 - so it is rebuilt lazily after a restart. An item
 * whose flag is valid is refused without a write; whether the user holds an
 * order is still checked on a reader connection, because already_ordered
 * wins. Only a reset raises stock, and a reset's version is higher than any
 * version seen before it commits, so the flag is valid while
 *     resets_in_flight == 0 && sold_out_version >= reset_version.
 * A reset bumps resets_in_flight before its write (the fast path is off for
 * the item until it is answered) and records its version after the commit.
 *
 * Locking: the table is split in STATE_SHARDS shards, each with a mutex that
 * guards its buckets and every field of the states in them. No lock is held
 * across a database call. Counters are atomics.
 *
 * Memory tier: item reads go through db->item_cache (an instance of the
 * memory tier of its own, so item ids and KV keys never share a namespace),
 * with single-flight and the stale-fill guard as for KV reads; every
 * committed change of an item (reset, order) invalidates it in the writer
 * thread right after the commit (store_write_then), before any answer, so
 * no read after an answered change sees the item older. Items are
 * invalidated under either --on-write mode (replacing one would need the
 * whole row, which an order does not read).
 *
 * Payment deadline (payment.c): an item with a payment timeout takes
 * pending orders; their pay, cancel and automatic cancellation live in
 * payment.c. What changes here: the order insert makes the order pending
 * (the backend reads the item's timeout in the same statement) and, after
 * the commit, tells the deadline timer its pay_by (and the other nodes,
 * with a CLUSTER_DEADLINE note); a user's cancelled order is no order for
 * already_ordered. A unit that comes back is noted like a reset
 * (seckill_note_reset at the version of the change), which voids older
 * sold-out flags here and, through its CLUSTER_RESET note, on every node.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "engine.h"
#include "payment.h"
#include "storage.h"
#include "utf8.h"

#define STATE_BUCKETS 1024
#define STATE_SHARDS 32

/* ------------------------------------------------------------------------
 * In-memory state: the sold-out flags and the counters
 * ------------------------------------------------------------------------ */

typedef struct item_state {
    struct item_state *next;
    int64_t reset_version;     /* version of the latest committed reset seen */
    int64_t sold_out_version;  /* stock was 0 at this version; 0 = never seen */
    unsigned resets_in_flight; /* resets between their start and their answer */
    char id[];
} item_state_t;

struct seckill {
    pthread_mutex_t locks[STATE_SHARDS];
    atomic_uint_fast64_t forgets; /* seckill_forget_flags() calls: voids observations in flight */
    item_state_t *buckets[STATE_BUCKETS];
    atomic_uint_fast64_t orders, sold_out, sold_out_fast, already_ordered, conflicts, retries;
};

seckill_t *seckill_create(void)
{
    seckill_t *sk = calloc(1, sizeof *sk);
    if (!sk)
        return NULL;
    for (int i = 0; i < STATE_SHARDS; i++)
        pthread_mutex_init(&sk->locks[i], NULL);
    return sk;
}

void seckill_destroy(seckill_t *sk)
{
    if (!sk)
        return;
    for (int i = 0; i < STATE_BUCKETS; i++) {
        item_state_t *state = sk->buckets[i];
        while (state) {
            item_state_t *next = state->next;
            free(state);
            state = next;
        }
    }
    for (int i = 0; i < STATE_SHARDS; i++)
        pthread_mutex_destroy(&sk->locks[i]);
    free(sk);
}

/* FNV-1a over the id's bytes. */
static unsigned bucket_of(const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % STATE_BUCKETS;
}

static pthread_mutex_t *lock_of(seckill_t *sk, unsigned bucket)
{
    return &sk->locks[bucket % STATE_SHARDS];
}

/* The state of item `id` in `bucket`, created when `create` (NULL when
 * absent, or out of memory). Caller holds the bucket's shard lock. */
static item_state_t *do_state_find(seckill_t *sk, unsigned bucket, const char *id, bool create)
{
    for (item_state_t *state = sk->buckets[bucket]; state; state = state->next)
        if (strcmp(state->id, id) == 0)
            return state;
    if (!create)
        return NULL;
    size_t n = strlen(id);
    item_state_t *state = calloc(1, sizeof *state + n + 1);
    if (!state)
        return NULL;
    memcpy(state->id, id, n + 1);
    state->next = sk->buckets[bucket];
    sk->buckets[bucket] = state;
    return state;
}

static bool do_flag_valid(const item_state_t *state)
{
    return state && state->resets_in_flight == 0 && state->sold_out_version > 0 &&
           state->sold_out_version >= state->reset_version;
}

bool seckill_flag_is_set(seckill_t *sk, const char *item_id)
{
    unsigned b = bucket_of(item_id);
    pthread_mutex_lock(lock_of(sk, b));
    bool set = do_flag_valid(do_state_find(sk, b, item_id, false));
    pthread_mutex_unlock(lock_of(sk, b));
    return set;
}

/* Remember that the item had no stock left at `version` (committed), an
 * observation begun when seckill_forget_flags() had run `forgets` times:
 * void if it ran since (the node may have missed a reset meanwhile). */
static void flag_set(seckill_t *sk, const char *item_id, int64_t version, uint64_t forgets)
{
    unsigned b = bucket_of(item_id);
    pthread_mutex_lock(lock_of(sk, b));
    item_state_t *state = NULL;
    if (atomic_load(&sk->forgets) == forgets)
        state = do_state_find(sk, b, item_id, true);
    if (state && version > state->sold_out_version)
        state->sold_out_version = version;
    pthread_mutex_unlock(lock_of(sk, b));
}

void seckill_forget_flags(seckill_t *sk)
{
    atomic_fetch_add(&sk->forgets, 1); /* first: flag_set checks it under the shard lock */
    for (unsigned b = 0; b < STATE_BUCKETS; b++) {
        pthread_mutex_lock(lock_of(sk, b));
        for (item_state_t *state = sk->buckets[b]; state; state = state->next)
            state->sold_out_version = 0;
        pthread_mutex_unlock(lock_of(sk, b));
    }
}

/* A reset of the item starts: the fast path is off for it until
 * reset_end(). Returns whether the state could be marked (else there is
 * no state, so no flag to honour, and reset_end must not unmark). */
static bool reset_begin(seckill_t *sk, const char *item_id)
{
    unsigned b = bucket_of(item_id);
    pthread_mutex_lock(lock_of(sk, b));
    item_state_t *state = do_state_find(sk, b, item_id, true);
    if (state)
        state->resets_in_flight++;
    pthread_mutex_unlock(lock_of(sk, b));
    return state != NULL;
}

static void reset_end(seckill_t *sk, const char *item_id, bool begun, bool committed,
                      int64_t version);

void seckill_note_reset(seckill_t *sk, const char *item_id, int64_t version)
{
    reset_end(sk, item_id, false, true, version);
}

/* The reset ended; when it committed, at `version`, every sold-out
 * observation older than it is void. */
static void reset_end(seckill_t *sk, const char *item_id, bool begun, bool committed,
                      int64_t version)
{
    unsigned b = bucket_of(item_id);
    pthread_mutex_lock(lock_of(sk, b));
    item_state_t *state = do_state_find(sk, b, item_id, committed);
    if (state && committed && version > state->reset_version)
        state->reset_version = version;
    if (state && begun)
        state->resets_in_flight--;
    pthread_mutex_unlock(lock_of(sk, b));
}

void sqlcached_seckill_stats(sqlcached_t *db, sqlcached_seckill_stats_t *out)
{
    seckill_t *sk = db->seckill;
    out->orders = atomic_load(&sk->orders);
    out->sold_out = atomic_load(&sk->sold_out);
    out->sold_out_fast = atomic_load(&sk->sold_out_fast);
    out->already_ordered = atomic_load(&sk->already_ordered);
    out->conflicts = atomic_load(&sk->conflicts);
    out->retries = atomic_load(&sk->retries);
}

/* Count an answer of sqlcached_order_place(). */
static sqlcached_status_t count_answer(seckill_t *sk, sqlcached_status_t st)
{
    switch (st) {
    case SQLCACHED_OK:
        atomic_fetch_add(&sk->orders, 1);
        break;
    case SQLCACHED_SOLD_OUT:
        atomic_fetch_add(&sk->sold_out, 1);
        break;
    case SQLCACHED_ALREADY_ORDERED:
        atomic_fetch_add(&sk->already_ordered, 1);
        break;
    default:
        break;
    }
    return st;
}

/* ------------------------------------------------------------------------
 * Memory tier seam (the tier is a separate module, not wired in yet)
 * ------------------------------------------------------------------------ */

/* Drop the item from the memory tier after a committed change. */
static void tier_invalidate(sqlcached_t *db, const char *id)
{
    if (db->item_cache)
        cache_invalidate(db->item_cache, id, strlen(id));
}

/* ------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------ */

/* True for 1..max bytes of valid UTF-8 (the NUL terminator ends it). */
static bool text_ok(const char *s, size_t max)
{
    if (!s)
        return false;
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max && utf8_valid(s, n);
}

/* ------------------------------------------------------------------------
 * Reads (reader connections)
 * ------------------------------------------------------------------------ */

/* The item, read on a pooled reader connection. */
static sqlcached_status_t item_read(sqlcached_t *db, const char *id, sqlcached_item_t *out)
{
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    sqlcached_status_t st = storage_item_get(r, id, out);
    store_reader_release(db->store, r);
    return st;
}

/* The user's order of the item, read on a pooled reader connection. */
static sqlcached_status_t order_read(sqlcached_t *db, const char *item_id, const char *user_id,
                                     sqlcached_order_t *out)
{
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    sqlcached_status_t st = storage_order_get(r, item_id, user_id, out);
    store_reader_release(db->store, r);
    return st;
}

/* A miss this thread leads: read the store, fill the tier (guarded). The
 * cached value is the item struct itself, which holds no pointers. */
static sqlcached_status_t item_load(sqlcached_t *db, cache_load_t *load, const char *id,
                                    sqlcached_item_t *out)
{
    sqlcached_status_t st = item_read(db, id, out);
    if (st == SQLCACHED_OK) {
        cache_fill_t fill = {out, sizeof *out, NULL, out->version, 0, 0};
        cache_load_finish(db->item_cache, load, &fill, engine_now(db));
    } else if (st == SQLCACHED_NOT_FOUND) {
        cache_load_finish(db->item_cache, load, NULL, engine_now(db));
    } else {
        cache_load_abandon(db->item_cache, load);
    }
    return st;
}

sqlcached_status_t sqlcached_item_get(sqlcached_t *db, const char *id, sqlcached_item_t *out)
{
    if (!text_ok(id, SQLCACHED_ITEM_ID_MAX) || !out)
        return SQLCACHED_INVALID_ARGUMENT;
    if (!db->item_cache || !engine_tier_usable(db)) {
        atomic_fetch_add_explicit(&db->tier_bypass_reads, 1, memory_order_relaxed);
        return item_read(db, id, out);
    }
    cache_value_t *cv = NULL;
    cache_load_t *load = NULL;
    switch (cache_fetch(db->item_cache, id, strlen(id), engine_now(db), &cv, &load)) {
    case CACHE_HIT:
        memcpy(out, cache_value_data(cv), sizeof *out);
        cache_value_release(cv);
        out->from_cache = 1;
        return SQLCACHED_OK;
    case CACHE_NEGATIVE:
        return SQLCACHED_NOT_FOUND;
    case CACHE_LEAD:
        return item_load(db, load, id, out);
    default: /* the tier could not help (memory) */
        atomic_fetch_add_explicit(&db->tier_bypass_reads, 1, memory_order_relaxed);
        return item_read(db, id, out);
    }
}

sqlcached_status_t sqlcached_order_get(sqlcached_t *db, const char *item_id, const char *user_id,
                                       sqlcached_order_t *out)
{
    if (!text_ok(item_id, SQLCACHED_ITEM_ID_MAX) || !text_ok(user_id, SQLCACHED_USER_ID_MAX) ||
        !out)
        return SQLCACHED_INVALID_ARGUMENT;
    return order_read(db, item_id, user_id, out);
}

void sqlcached_orders_free(sqlcached_orders_t *orders)
{
    if (!orders)
        return;
    free(orders->orders);
    free(orders);
}

sqlcached_status_t sqlcached_order_list(sqlcached_t *db, const char *item_id, int64_t after,
                                        unsigned limit, sqlcached_orders_t **out)
{
    *out = NULL;
    if (!text_ok(item_id, SQLCACHED_ITEM_ID_MAX) || after < 0 || limit < 1 ||
        limit > SQLCACHED_LIST_LIMIT_MAX)
        return SQLCACHED_INVALID_ARGUMENT;
    sqlcached_orders_t *page = calloc(1, sizeof *page);
    if (page && !(page->orders = calloc(limit, sizeof *page->orders))) {
        free(page);
        page = NULL;
    }
    if (!page)
        return SQLCACHED_NOMEM;
    store_conn_t *r = store_reader_acquire(db->store);
    sqlcached_status_t status = r ? storage_order_list(r, item_id, after, limit, page)
                                  : SQLCACHED_UNAVAILABLE;
    if (r)
        store_reader_release(db->store, r);
    if (status != SQLCACHED_OK) {
        sqlcached_orders_free(page);
        return status;
    }
    *out = page;
    return SQLCACHED_OK;
}

void sqlcached_items_free(sqlcached_items_t *items)
{
    if (!items)
        return;
    free(items->items);
    free(items);
}

sqlcached_status_t sqlcached_item_list(sqlcached_t *db, const char *after, unsigned limit,
                                       sqlcached_items_t **out)
{
    if (!out)
        return SQLCACHED_INVALID_ARGUMENT;
    *out = NULL;
    if (!after)
        after = ""; /* every id is 1 byte or more, so sorts after "" */
    if ((after[0] && !text_ok(after, SQLCACHED_ITEM_ID_MAX)) || limit < 1 ||
        limit > SQLCACHED_LIST_LIMIT_MAX)
        return SQLCACHED_INVALID_ARGUMENT;
    sqlcached_items_t *page = calloc(1, sizeof *page);
    if (page && !(page->items = calloc(limit, sizeof *page->items))) {
        free(page);
        page = NULL;
    }
    if (!page)
        return SQLCACHED_NOMEM;
    store_conn_t *r = store_reader_acquire(db->store);
    sqlcached_status_t status = r ? storage_item_list(r, after, limit, page)
                                  : SQLCACHED_UNAVAILABLE;
    if (r)
        store_reader_release(db->store, r);
    if (status != SQLCACHED_OK) {
        sqlcached_items_free(page);
        return status;
    }
    *out = page;
    return SQLCACHED_OK;
}

/* ------------------------------------------------------------------------
 * Item create / reset (writer)
 * ------------------------------------------------------------------------ */

typedef struct put_job {
    sqlcached_t *db;
    const char *id, *name;
    int64_t stock;
    int64_t payment_timeout_ms; /* 0 = orders final */
    int64_t version;            /* out */
    bool created;               /* out */
} put_job_t;

static sqlcached_status_t tx_item_put(store_conn_t *w, void *arg)
{
    put_job_t *p = arg;
    sqlcached_status_t status = store_counter_next(w, "version", &p->version);
    if (status != SQLCACHED_OK)
        return status;
    store_note(w, CLUSTER_RESET, p->id, strlen(p->id), p->version);
    return storage_item_reset(w, p->id, p->name, p->stock, p->payment_timeout_ms, p->version,
                              &p->created);
}

/* Run by the writer thread after the commit, before any answer (see
 * store_write_then): no later write can reveal the change while the memory
 * tier still serves the item as it was. */
static void item_put_committed(void *arg)
{
    put_job_t *p = arg;
    tier_invalidate(p->db, p->id);
}

sqlcached_status_t sqlcached_item_put(sqlcached_t *db, const char *id, const char *name,
                                      int64_t stock, sqlcached_item_t *out, int *created)
{
    return sqlcached_item_put_payment(db, id, name, stock, 0, out, created);
}

sqlcached_status_t sqlcached_item_put_payment(sqlcached_t *db, const char *id, const char *name,
                                              int64_t stock, int64_t payment_timeout_ms,
                                              sqlcached_item_t *out, int *created)
{
    if (!text_ok(id, SQLCACHED_ITEM_ID_MAX) || !text_ok(name, SQLCACHED_ITEM_NAME_MAX) ||
        stock < 0 || stock > SQLCACHED_STOCK_MAX ||
        (payment_timeout_ms != 0 && (payment_timeout_ms < SQLCACHED_PAYMENT_TIMEOUT_MIN_MS ||
                                     payment_timeout_ms > SQLCACHED_PAYMENT_TIMEOUT_MAX_MS)))
        return SQLCACHED_INVALID_ARGUMENT;
    put_job_t job = {.db = db,
                     .id = id,
                     .name = name,
                     .stock = stock,
                     .payment_timeout_ms = payment_timeout_ms};
    uint64_t forgets = atomic_load(&db->seckill->forgets);
    bool begun = reset_begin(db->seckill, id);
    sqlcached_status_t st = store_write_then(db->store, tx_item_put, item_put_committed, &job);
    if (st == SQLCACHED_OK) {
        if (stock == 0) /* sold out from the start */
            flag_set(db->seckill, id, job.version, forgets);
    }
    reset_end(db->seckill, id, begun, st == SQLCACHED_OK, job.version);
    if (st != SQLCACHED_OK)
        return st;
    if (out) {
        memset(out, 0, sizeof *out);
        strcpy(out->id, id);
        strcpy(out->name, name);
        out->stock = out->initial_stock = stock;
        out->version = job.version;
        out->payment_timeout_ms = payment_timeout_ms;
    }
    if (created)
        *created = job.created;
    return SQLCACHED_OK;
}

/* ------------------------------------------------------------------------
 * Placing an order (writer)
 * ------------------------------------------------------------------------ */

typedef struct order_job {
    sqlcached_t *db;
    const char *item_id, *user_id;
    int64_t now;
    bool by_version;          /* strategy of this try */
    int64_t expected_version; /* version strategy: the version read */
    bool naive;               /* testing naive strategy: write naive_* blindly */
    int64_t naive_stock, naive_sold;
    sqlcached_order_t order; /* out: the order inserted */
    int64_t version;         /* out: the item's new version */
    int64_t stock_left;      /* out */
} order_job_t;

/* Take one unit under the try's guard. No row: SOLD_OUT (stock guard) or
 * CONFLICT (version guard). */
static sqlcached_status_t take_unit(store_conn_t *w, order_job_t *j)
{
    sqlcached_status_t st = storage_take_unit(w, j->item_id, j->version,
                                              j->by_version ? j->expected_version : 0,
                                              &j->stock_left);
    if (st == SQLCACHED_NOT_FOUND)
        return j->by_version ? SQLCACHED_CONFLICT : SQLCACHED_SOLD_OUT;
    return st;
}

static sqlcached_status_t tx_order(store_conn_t *w, void *arg)
{
    order_job_t *j = arg;
    store_note(w, CLUSTER_ITEM, j->item_id, strlen(j->item_id), 0);
    sqlcached_status_t st = storage_order_insert(w, j->item_id, j->user_id, j->now, &j->order);
    if (st == SQLCACHED_OK && j->order.state == SQLCACHED_ORDER_PENDING)
        store_note(w, CLUSTER_DEADLINE, j->item_id, strlen(j->item_id), j->order.pay_by);
    if (st == SQLCACHED_OK)
        st = store_counter_next(w, "version", &j->version);
    if (st == SQLCACHED_OK && j->naive) {
        st = storage_set_stock(w, j->item_id, j->version, j->naive_stock, j->naive_sold);
        j->stock_left = j->naive_stock;
    } else if (st == SQLCACHED_OK) {
        st = take_unit(w, j);
    }
    return st; /* not OK: the savepoint rollback removes the order */
}

/* The answer for an item known to have no stock: already_ordered if the
 * user holds a pending or paid order (read on a reader connection), else
 * sold_out. */
static sqlcached_status_t refuse_sold_out(sqlcached_t *db, const char *item_id, const char *user_id)
{
    sqlcached_order_t o;
    sqlcached_status_t st = order_read(db, item_id, user_id, &o);
    if (st == SQLCACHED_OK && o.state == SQLCACHED_ORDER_CANCELLED)
        st = SQLCACHED_NOT_FOUND;
    if (st == SQLCACHED_OK)
        return SQLCACHED_ALREADY_ORDERED;
    return st == SQLCACHED_NOT_FOUND ? SQLCACHED_SOLD_OUT : st;
}

/* After the writer said sold out: confirm on committed data and set the
 * flag, so that later orders skip the writer (this is how the flag comes
 * back after a restart). */
static void learn_sold_out(sqlcached_t *db, const char *item_id)
{
    sqlcached_item_t item;
    uint64_t forgets = atomic_load(&db->seckill->forgets);
    if (item_read(db, item_id, &item) == SQLCACHED_OK && item.stock == 0)
        flag_set(db->seckill, item_id, item.version, forgets);
}

/* Run by the writer thread after the order's commit (as item_put_committed);
 * a pending order's deadline goes to the timer. */
static void order_committed(void *arg)
{
    order_job_t *j = arg;
    tier_invalidate(j->db, j->item_id);
    if (j->order.state == SQLCACHED_ORDER_PENDING)
        payment_note_deadline(j->db->payment, j->order.pay_by);
}

/* One write of the order; on success the bookkeeping that follows it. */
static sqlcached_status_t write_order(sqlcached_t *db, order_job_t *job)
{
    uint64_t forgets = atomic_load(&db->seckill->forgets);
    sqlcached_status_t st = store_write_then(db->store, tx_order, order_committed, job);
    if (st == SQLCACHED_OK) {
        if (job->stock_left == 0)
            flag_set(db->seckill, job->item_id, job->version, forgets);
    }
    return st;
}

static sqlcached_status_t place_by_stock(sqlcached_t *db, order_job_t *job)
{
    sqlcached_status_t st = write_order(db, job);
    if (st == SQLCACHED_SOLD_OUT)
        learn_sold_out(db, job->item_id);
    return st;
}

/* Read the version, write guarded by it; on a newer version read again,
 * up to seckill_retries more times. */
static sqlcached_status_t place_by_version(sqlcached_t *db, order_job_t *job)
{
    job->by_version = true;
    for (int attempt = 0; attempt <= db->opts.seckill_retries; attempt++) {
        if (attempt > 0)
            atomic_fetch_add(&db->seckill->retries, 1);
        sqlcached_item_t item;
        uint64_t forgets = atomic_load(&db->seckill->forgets);
        sqlcached_status_t st = item_read(db, job->item_id, &item);
        if (st != SQLCACHED_OK)
            return st;
        if (item.stock == 0) {
            flag_set(db->seckill, job->item_id, item.version, forgets);
            return refuse_sold_out(db, job->item_id, job->user_id);
        }
        job->expected_version = item.version;
        st = write_order(db, job);
        if (st != SQLCACHED_CONFLICT)
            return st;
    }
    atomic_fetch_add(&db->seckill->conflicts, 1);
    return SQLCACHED_UNAVAILABLE;
}

/* Tests and demos only (SQLCACHED_SECKILL_TESTING_NAIVE): "check then
 * decrement" as it is first written. The stock is read on a reader
 * connection; if some is left, a separate write inserts the order and
 * writes back the stock and sold that were read, one unit moved, with no
 * guard. Buyers who read the same stock all succeed, each writing the
 * same figures: more orders than units (oversell), which the guarded
 * strategies never allow. */
static sqlcached_status_t place_naive(sqlcached_t *db, order_job_t *job)
{
    sqlcached_item_t item;
    sqlcached_status_t st = item_read(db, job->item_id, &item);
    if (st != SQLCACHED_OK)
        return st;
    if (item.stock <= 0)
        return refuse_sold_out(db, job->item_id, job->user_id);
    job->naive = true;
    job->naive_stock = item.stock - 1;
    job->naive_sold = item.sold + 1;
    return write_order(db, job);
}

static sqlcached_status_t place(sqlcached_t *db, order_job_t *job)
{
    switch (db->opts.seckill_strategy) {
    case SQLCACHED_SECKILL_VERSION:
        return place_by_version(db, job);
    case SQLCACHED_SECKILL_TESTING_NAIVE:
        return place_naive(db, job);
    default:
        return place_by_stock(db, job);
    }
}

sqlcached_status_t sqlcached_order_place(sqlcached_t *db, const char *item_id, const char *user_id,
                                         sqlcached_order_t *out)
{
    if (!text_ok(item_id, SQLCACHED_ITEM_ID_MAX) || !text_ok(user_id, SQLCACHED_USER_ID_MAX))
        return SQLCACHED_INVALID_ARGUMENT;
    seckill_t *sk = db->seckill;
    if (engine_tier_usable(db) && seckill_flag_is_set(sk, item_id)) {
        sqlcached_status_t st = refuse_sold_out(db, item_id, user_id);
        if (st == SQLCACHED_SOLD_OUT)
            atomic_fetch_add(&sk->sold_out_fast, 1);
        return count_answer(sk, st);
    }
    order_job_t job = {.db = db, .item_id = item_id, .user_id = user_id, .now = engine_now(db)};
    sqlcached_status_t st = place(db, &job);
    if (st == SQLCACHED_OK && out)
        *out = job.order;
    return count_answer(sk, st);
}
