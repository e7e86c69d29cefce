/*
 * kv.c - the key-value calls of the public API over the store.
 *
 * Reads run on a pooled reader connection; writes are functions run by the
 * store's writer thread inside a group transaction (store_write), each one
 * reading the current row, checking its condition, taking the next version
 * from the store-wide counter and writing, all in the same transaction.
 * Rows are reached through the kv operations of the storage seam
 * (storage.h); no SQL here.
 *
 * Expiry: a row whose expires_at <= now is treated as absent by every call;
 * writes overwrite it as if it were not there, and the maintenance thread
 * purges such rows in slices (kv_purge_expired).
 *
 * Memory tier (cache.c), when configured:
 *   read:  bloom filter says never written -> absent, no storage read;
 *          cache_fetch: HIT -> answer from the cached bytes (no copy);
 *          NEGATIVE -> absent; LEAD -> this thread is the key's single
 *          loader: read the store, cache_load_finish (the fill guard drops the
 *          fill if a write invalidated the key meanwhile), answer.
 *   write: commit (store_write_then), then, in the writer thread before
 *          it answers any write, after_commit: bloom_add (after the
 *          commit, see bloom.h) and, with on_write replace (default),
 *          cache_replace (PUT, incr: a key the tier holds gets the new
 *          value, others are only invalidated) or cache_invalidate
 *          (DELETE); with on_write invalidate, cache_invalidate for every
 *          write. Then return to the caller. So once a write is
 *          acknowledged no reader can get an older value: the cached copy
 *          is the new one or gone, and a fill that read before the commit
 *          is dropped by the guard.
 *
 * Hot keys: every GET of a valid key, present or absent, is counted in
 * db->hotkeys (hotkeys.h: a lock per shard, a scan of 32 slots, no
 * allocation) before anything else, when tracking is on.
 *
 * In a cluster (cluster.c) each write notes its key (store_note) for the
 * other nodes, which drop their copies before the write is answered; the
 * tier and the bloom filter answer only while the node trusts them
 * (engine_tier_usable), and --on-write replace falls back to invalidate
 * when another node's change may be newer (cluster_replace_ok).
 *
 * Sliding expiry (extensions of a sliding key on read), read-and-delete
 * and merge patch are in kv_session.c, which describes them.
 *
 * Values returned to callers are one allocation with an atomic reference
 * count, released by sqlcached_value_release: either header + content type +
 * bytes read from the store, or a header that holds a reference on a cached
 * value and points into it.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "engine.h"
#include "watch.h"
#include "kv_int.h"
#include "kv_session_int.h"
#include "log.h"
#include "storage.h"

static const char DEFAULT_CONTENT_TYPE[] = "application/octet-stream";
static const char COUNTER_CONTENT_TYPE[] = "text/plain; charset=utf-8";

/* ------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------ */

/* A new value with one reference; NULL on allocation failure. */
static kv_value_t *value_new(const void *data, size_t len, const char *ct, size_t ctlen)
{
    kv_value_t *v = malloc(sizeof *v + ctlen + 1 + len);
    if (!v)
        return NULL;
    memcpy(v->bytes, ct, ctlen);
    v->bytes[ctlen] = '\0';
    if (len)
        memcpy(v->bytes + ctlen + 1, data, len);
    v->pub =
        (sqlcached_value_t){.content_type = v->bytes, .data = v->bytes + ctlen + 1, .len = len};
    v->cached = NULL;
    atomic_init(&v->refs, 1);
    return v;
}

/* Wrap a cached value (taking over its reference); NULL on ENOMEM, and
 * then the reference is released. */
static kv_value_t *value_from_cache(cache_value_t *cv)
{
    kv_value_t *v = malloc(sizeof *v);
    if (!v) {
        cache_value_release(cv);
        return NULL;
    }
    v->pub = (sqlcached_value_t){
        .data = cache_value_data(cv),
        .len = cache_value_len(cv),
        .content_type = cache_value_content_type(cv),
        .version = cache_value_version(cv),
        .from_cache = 1,
    };
    v->cached = cv;
    atomic_init(&v->refs, 1);
    return v;
}

void sqlcached_value_release(sqlcached_value_t *value)
{
    if (!value)
        return;
    kv_value_t *v = (kv_value_t *)value;
    if (atomic_fetch_sub(&v->refs, 1) == 1) {
        cache_value_release(v->cached);
        free(v);
    }
}

bool kvs_key_ok(const void *key, size_t klen)
{
    return key && klen >= 1 && klen <= SQLCACHED_KEY_MAX;
}

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */

sqlcached_status_t kvs_copy_row(void *cls, const storage_kv_row_t *row)
{
    row_copy_t *out = cls;
    out->value = value_new(row->value, row->value_len, row->content_type, row->content_type_len);
    if (!out->value)
        return SQLCACHED_NOMEM;
    out->value->pub.version = row->version;
    out->expires_at = row->expires_at;
    out->sliding_ms = row->sliding_ms;
    return SQLCACHED_OK;
}

/* The live row of key, read on a pooled reader connection: on OK *out is
 * a new value and *expires_at its expiry (0 = none), *sliding_ms its
 * sliding TTL (0 = none). */
static sqlcached_status_t load_row(sqlcached_t *db, const void *key, size_t klen, int64_t now,
                                   kv_value_t **out, int64_t *expires_at, int64_t *sliding_ms)
{
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    atomic_fetch_add_explicit(&db->kv->storage_reads, 1, memory_order_relaxed);
    row_copy_t copy = {0};
    sqlcached_status_t status = storage_kv_get(r, key, klen, now, kvs_copy_row, &copy);
    store_reader_release(db->store, r);
    if (status == SQLCACHED_OK) {
        *out = copy.value;
        *expires_at = copy.expires_at;
        *sliding_ms = copy.sliding_ms;
    }
    return status;
}

/* A miss this thread leads: read the store, fill the tier (guarded), answer. */
static sqlcached_status_t load_and_fill(sqlcached_t *db, cache_load_t *load, const void *key,
                                        size_t klen, int64_t now, kv_value_t **out,
                                        read_expiry_t *ex)
{
    sqlcached_status_t status = load_row(db, key, klen, now, out, &ex->expires_at, &ex->sliding_ms);
    if (status == SQLCACHED_OK) {
        cache_fill_t fill = {(*out)->pub.data,    (*out)->pub.len, (*out)->pub.content_type,
                             (*out)->pub.version, ex->expires_at,  ex->sliding_ms};
        cache_load_finish(db->cache, load, &fill, now);
    } else if (status == SQLCACHED_NOT_FOUND) {
        cache_load_finish(db->cache, load, NULL, now); /* negative entry */
    } else {
        cache_load_abandon(db->cache, load);
    }
    return status;
}

static sqlcached_status_t get_through_cache(sqlcached_t *db, const void *key, size_t klen,
                                            int64_t now, kv_value_t **out, read_expiry_t *ex)
{
    cache_value_t *cv = NULL;
    cache_load_t *load = NULL;
    switch (cache_fetch(db->cache, key, klen, now, &cv, &load)) {
    case CACHE_HIT:
        if (!cache_value_sliding(cv, &ex->expires_at, &ex->sliding_ms))
            ex->sliding_ms = 0;
        *out = value_from_cache(cv);
        return *out ? SQLCACHED_OK : SQLCACHED_NOMEM;
    case CACHE_NEGATIVE:
        return SQLCACHED_NOT_FOUND;
    case CACHE_LEAD:
        return load_and_fill(db, load, key, klen, now, out, ex);
    default: /* the tier could not help (memory): read the store directly */
        atomic_fetch_add_explicit(&db->tier_bypass_reads, 1, memory_order_relaxed);
        return load_row(db, key, klen, now, out, &ex->expires_at, &ex->sliding_ms);
    }
}

sqlcached_status_t sqlcached_kv_get(sqlcached_t *db, const void *key, size_t klen,
                                    sqlcached_value_t **out)
{
    *out = NULL;
    if (!kvs_key_ok(key, klen))
        return SQLCACHED_INVALID_ARGUMENT;
    int64_t now = engine_now(db);
    read_expiry_t ex = {0, 0};
    if (db->hotkeys)
        hotkeys_record(db->hotkeys, key, klen, now);
    bool tier = engine_tier_usable(db); /* a clock read in a cluster: once */
    if (db->kv->bloom && atomic_load_explicit(&db->kv->bloom_ready, memory_order_acquire) && tier &&
        !bloom_may_contain(db->kv->bloom, key, klen)) {
        atomic_fetch_add_explicit(&db->kv->bloom_skips, 1, memory_order_relaxed);
        return SQLCACHED_NOT_FOUND;
    }
    kv_value_t *v = NULL;
    sqlcached_status_t status;
    if (db->cache && tier) {
        status = get_through_cache(db, key, klen, now, &v, &ex);
    } else {
        atomic_fetch_add_explicit(&db->tier_bypass_reads, 1, memory_order_relaxed);
        status = load_row(db, key, klen, now, &v, &ex.expires_at, &ex.sliding_ms);
    }
    if (status == SQLCACHED_OK) {
        if (ex.sliding_ms > 0)
            kvs_slide_maybe(db, key, klen, v, &ex, now);
        *out = &v->pub;
    }
    return status;
}

/* After a committed write of key: make it visible to every later read.
 * The one after-commit path of every KV write (PUT, DELETE, incr; a write
 * added later calls it too, and so follows --on-write). Run by the writer
 * thread (store_write_then) between the commit and any answer, so no later
 * write can reveal the new state (a DELETE's 404, a failed If-Match) while
 * the memory tier still holds the old one. `written` is the new value,
 * NULL for a delete. on_write replace: a key the tier holds gets it in
 * place of the old one (a hot key stays hot across its writes; the writer
 * thread runs these in commit order), any other key is invalidated.
 * on_write invalidate: every write deletes the cached copy (the textbook
 * update-then-delete), so the next read misses and reads the store. Both
 * mark the key's loads in flight stale. `now` is the write's own reading
 * of the clock (no second one per write). */
static void after_commit(sqlcached_t *db, const void *key, size_t klen, const cache_fill_t *written,
                         int64_t now)
{
    if (db->kv->bloom && written)
        bloom_add(db->kv->bloom, key, klen);
    else if (db->kv->bloom)
        bloom_note_delete(db->kv->bloom);
    if (db->cache) {
        if (written && db->opts.on_write == SQLCACHED_ON_WRITE_REPLACE &&
            (!db->cluster || cluster_replace_ok(db->cluster))) {
            if (cache_replace(db->cache, key, klen, written, now) == CACHE_OK)
                atomic_fetch_add_explicit(&db->kv->write_replaced, 1, memory_order_relaxed);
        } else if (cache_invalidate(db->cache, key, klen)) {
            atomic_fetch_add_explicit(&db->kv->write_invalidated, 1, memory_order_relaxed);
        }
    }
    /* Last: a watcher woken by the change reads the new value, never the
     * tier's old one. */
    watch_kick(db->watch); /* the change log has a new change */
}

/* ------------------------------------------------------------------------
 * Writes (run by the writer thread)
 * ------------------------------------------------------------------------ */

typedef struct put_job {
    sqlcached_t *db;
    const void *key, *val;
    size_t klen, vlen;
    const char *content_type;
    const sqlcached_preconditions_t *pre;
    int64_t expires_at, now;
    int64_t sliding_ms; /* > 0: a sliding key (never the replace path) */
    sqlcached_write_result_t result;
    bool replaced;    /* tx_put_replace: result.created comes from previous */
    int64_t previous; /* filled by the commit at the latest (storage_kv_replace) */
} put_job_t;

/* Does `current` (0 = absent) match m? A match of kind NONE is never asked. */
static bool matches(const sqlcached_match_t *m, int64_t current)
{
    if (current == 0)
        return false;
    if (m->kind == SQLCACHED_MATCH_ANY)
        return true;
    for (size_t i = 0; i < m->count; i++)
        if (m->versions[i] == current)
            return true;
    return false;
}

bool kvs_preconditions_hold(const sqlcached_preconditions_t *pre, int64_t current)
{
    if (!pre)
        return true;
    if (pre->if_match.kind != SQLCACHED_MATCH_NONE && !matches(&pre->if_match, current))
        return false;
    if (pre->if_none_match.kind != SQLCACHED_MATCH_NONE && matches(&pre->if_none_match, current))
        return false;
    return true;
}

static bool match_ok(const sqlcached_match_t *m)
{
    return m->kind <= SQLCACHED_MATCH_VERSIONS &&
           (m->kind != SQLCACHED_MATCH_VERSIONS || (m->versions && m->count > 0));
}

bool kvs_preconditions_ok(const sqlcached_preconditions_t *pre)
{
    return !pre || (match_ok(&pre->if_match) && match_ok(&pre->if_none_match));
}

static bool has_preconditions(const sqlcached_preconditions_t *pre)
{
    return pre && (pre->if_match.kind != SQLCACHED_MATCH_NONE ||
                   pre->if_none_match.kind != SQLCACHED_MATCH_NONE);
}

/* A PUT without preconditions on a backend that replaces a row and reports
 * the previous version in one statement (storage_kv_replace), whose answer
 * may come with the commit: created is set by put_committed. */
static sqlcached_status_t tx_put_replace(store_conn_t *w, put_job_t *p)
{
    int64_t version;
    sqlcached_status_t st = store_counter_next(w, "version", &version);
    if (st == SQLCACHED_OK) {
        p->replaced = true;
        p->previous = 0;
        st = watch_replace(w, p->key, p->klen, p->val, p->vlen, p->content_type, version,
                           p->expires_at, p->now, &p->previous); /* and its change */
    }
    if (st == SQLCACHED_OK)
        p->result = (sqlcached_write_result_t){version, p->expires_at, 0};
    return st;
}

static sqlcached_status_t tx_put(store_conn_t *w, void *arg)
{
    put_job_t *p = arg;
    store_note(w, CLUSTER_KEY, p->key, p->klen, 0);
    if (!has_preconditions(p->pre) && !p->sliding_ms && storage_kv_has_replace(w))
        return tx_put_replace(w, p);
    int64_t current, version;
    sqlcached_status_t st = storage_kv_version(w, p->key, p->klen, p->now, &current);
    if (st != SQLCACHED_OK)
        return st;
    if (!kvs_preconditions_hold(p->pre, current))
        return SQLCACHED_PRECONDITION_FAILED;
    st = store_counter_next(w, "version", &version);
    if (st == SQLCACHED_OK)
        st = storage_kv_upsert_sliding(w, p->key, p->klen, p->val, p->vlen, p->content_type,
                                       version, p->expires_at, p->sliding_ms);
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_PUT, p->key, p->klen, version, p->expires_at);
    if (st == SQLCACHED_OK)
        p->result = (sqlcached_write_result_t){version, p->expires_at, current == 0};
    return st;
}

static void put_committed(void *arg)
{
    put_job_t *p = arg;
    if (p->replaced)
        p->result.created = p->previous == 0;
    cache_fill_t written = {p->val,        p->vlen,      p->content_type, p->result.version,
                            p->expires_at, p->sliding_ms};
    after_commit(p->db, p->key, p->klen, &written, p->now);
}

static bool content_type_ok(const char *ct)
{
    size_t n = strlen(ct);
    if (n == 0 || n > SQLCACHED_CONTENT_TYPE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ct[i] < 0x20 || (unsigned char)ct[i] > 0x7e)
            return false;
    return true;
}

/* The TTL spread by +-ttl_jitter_percent (against expiry avalanches). */
static int64_t jitter_ttl(sqlcached_t *db, int64_t ttl_ms)
{
    if (!db->opts.ttl_jitter_percent)
        return ttl_ms;
    uint64_t rng = atomic_fetch_add(&db->kv->jitter_rng, 0x9e3779b97f4a7c15ULL) | 1;
    int64_t t = cache_jitter_ttl(ttl_ms, db->opts.ttl_jitter_percent, &rng);
    return t > 0 ? t : 1;
}

/* Check a put's arguments and fill its job (pointing into them). */
static sqlcached_status_t put_setup(sqlcached_t *db, const void *key, size_t klen,
                                    const void *value, size_t vlen,
                                    const sqlcached_put_options_t *opts, put_job_t *job)
{
    static const sqlcached_put_options_t none = {0};
    if (!opts)
        opts = &none;
    const char *ct = opts->content_type ? opts->content_type : DEFAULT_CONTENT_TYPE;
    if (!kvs_key_ok(key, klen) || (vlen && !value) || !content_type_ok(ct) ||
        !kvs_preconditions_ok(&opts->pre) || opts->ttl_ms < 0 ||
        opts->ttl_ms > SQLCACHED_TTL_MAX_MS || (opts->sliding && opts->ttl_ms == 0) ||
        vlen > (size_t)INT32_MAX)
        return SQLCACHED_INVALID_ARGUMENT;
    *job = (put_job_t){
        .db = db,
        .key = key,
        .klen = klen,
        .val = value,
        .vlen = vlen,
        .content_type = ct,
        .pre = &opts->pre,
        .now = engine_now(db),
    };
    /* A sliding TTL is not spread: its bounds are part of the contract. */
    job->sliding_ms = opts->sliding ? opts->ttl_ms : 0;
    job->expires_at = opts->sliding      ? job->now + opts->ttl_ms
                      : opts->ttl_ms > 0 ? job->now + jitter_ttl(db, opts->ttl_ms)
                                         : 0;
    return SQLCACHED_OK;
}

sqlcached_status_t sqlcached_kv_put(sqlcached_t *db, const void *key, size_t klen,
                                    const void *value, size_t vlen,
                                    const sqlcached_put_options_t *opts,
                                    sqlcached_write_result_t *result)
{
    put_job_t job;
    sqlcached_status_t st = put_setup(db, key, klen, value, vlen, opts, &job);
    if (st != SQLCACHED_OK)
        return st;
    st = store_write_then(db->store, tx_put, put_committed, &job);
    if (st == SQLCACHED_OK) {
        if (result)
            *result = job.result;
    }
    return st;
}

/* The end of an asynchronous call: free its record (the job and the
 * caller's completion), then call the completion. */
void kvs_async_finish(void *record, sqlcached_done_fn done, void *cls, sqlcached_status_t st)
{
    free(record);
    done(cls, st);
}

/* An asynchronous put in flight: freed by on_put_done. */
typedef struct put_async {
    put_job_t job; /* first: put_committed gets &job */
    sqlcached_write_result_t *result;
    sqlcached_done_fn done;
    void *cls;
} put_async_t;

/* On the writer thread, after put_committed has made the write visible to
 * readers (for every write of the batch, before any is answered): tell
 * the caller. */
static void on_put_done(void *cls, sqlcached_status_t st)
{
    put_async_t *a = cls;
    if (st == SQLCACHED_OK && a->result)
        *a->result = a->job.result;
    kvs_async_finish(a, a->done, a->cls, st);
}

sqlcached_status_t sqlcached_kv_put_async(sqlcached_t *db, const void *key, size_t klen,
                                          const void *value, size_t vlen,
                                          const sqlcached_put_options_t *opts,
                                          sqlcached_write_result_t *result, sqlcached_done_fn done,
                                          void *cls)
{
    if (!done)
        return SQLCACHED_INVALID_ARGUMENT;
    put_async_t *a = malloc(sizeof *a);
    if (!a)
        return SQLCACHED_NOMEM;
    sqlcached_status_t st = put_setup(db, key, klen, value, vlen, opts, &a->job);
    if (st == SQLCACHED_OK) {
        a->result = result, a->done = done, a->cls = cls;
        st = store_write_async(db->store, tx_put, put_committed, &a->job, on_put_done, a);
    }
    if (st != SQLCACHED_OK)
        free(a);
    return st;
}

static sqlcached_status_t tx_delete(store_conn_t *w, void *arg)
{
    delete_job_t *d = arg;
    int64_t current, version;
    store_note(w, CLUSTER_KEY, d->key, d->klen, 0);
    sqlcached_status_t st = storage_kv_version(w, d->key, d->klen, d->now, &current);
    if (st != SQLCACHED_OK)
        return st;
    if (!kvs_preconditions_hold(d->pre, current))
        return SQLCACHED_PRECONDITION_FAILED;
    if (current == 0)
        return SQLCACHED_NOT_FOUND;
    /* A delete is a write too: it advances the counter like any other. */
    st = store_counter_next(w, "version", &version);
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_DELETE, d->key, d->klen, version, 0);
    if (st != SQLCACHED_OK)
        return st;
    return storage_kv_remove(w, d->key, d->klen);
}

void kvs_delete_committed(void *arg)
{
    delete_job_t *d = arg;
    after_commit(d->db, d->key, d->klen, NULL, d->now);
}

sqlcached_status_t sqlcached_kv_delete(sqlcached_t *db, const void *key, size_t klen,
                                       const sqlcached_preconditions_t *pre)
{
    if (!kvs_key_ok(key, klen) || !kvs_preconditions_ok(pre))
        return SQLCACHED_INVALID_ARGUMENT;
    delete_job_t job = {db, key, klen, pre, engine_now(db)};
    return store_write_then(db->store, tx_delete, kvs_delete_committed, &job);
}

/* An asynchronous delete in flight: freed by on_delete_done. */
typedef struct delete_async {
    delete_job_t job; /* first: delete_committed gets &job */
    sqlcached_done_fn done;
    void *cls;
} delete_async_t;

/* On the writer thread, after the batch is visible to readers. */
static void on_delete_done(void *cls, sqlcached_status_t st)
{
    delete_async_t *a = cls;
    kvs_async_finish(a, a->done, a->cls, st);
}

sqlcached_status_t sqlcached_kv_delete_async(sqlcached_t *db, const void *key, size_t klen,
                                             const sqlcached_preconditions_t *pre,
                                             sqlcached_done_fn done, void *cls)
{
    if (!done || !kvs_key_ok(key, klen) || !kvs_preconditions_ok(pre))
        return SQLCACHED_INVALID_ARGUMENT;
    delete_async_t *a = malloc(sizeof *a);
    if (!a)
        return SQLCACHED_NOMEM;
    *a = (delete_async_t){.job = {db, key, klen, pre, engine_now(db)}, .done = done, .cls = cls};
    sqlcached_status_t st =
        store_write_async(db->store, tx_delete, kvs_delete_committed, &a->job, on_delete_done, a);
    if (st != SQLCACHED_OK)
        free(a);
    return st;
}

/* Parse a whole buffer as a base-10 int64: -?(0|[1-9][0-9]*). */
static bool parse_int64(const unsigned char *p, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = n > 0 && p[0] == '-';
    i = neg ? 1 : 0;
    if (i == n || n > 20 || (p[i] == '0' && (n - i > 1 || neg)))
        return false; /* empty, too long, leading zero or -0 */
    int64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        int d = p[i] - '0';
        if (__builtin_mul_overflow(v, 10, &v) ||
            (neg ? __builtin_sub_overflow(v, d, &v) : __builtin_add_overflow(v, d, &v)))
            return false;
    }
    *out = v;
    return true;
}

typedef struct incr_job {
    sqlcached_t *db;
    const void *key;
    size_t klen;
    int64_t by, now;
    int64_t value, version;
    /* the row written, for the memory tier */
    char text[24];
    size_t text_len;
    char content_type[SQLCACHED_CONTENT_TYPE_MAX + 1];
    int64_t expires_at;
    int64_t sliding_ms; /* the row's: a sliding key's expiry moves to now + it */
} incr_job_t;

/* The live row of an incr's key: its integer (into j->value), content type
 * and expiry, which the new value keeps. */
static sqlcached_status_t incr_read(void *cls, const storage_kv_row_t *row)
{
    incr_job_t *j = cls;
    if (!parse_int64(row->value, row->value_len, &j->value))
        return SQLCACHED_NOT_INTEGER;
    if (row->content_type_len)
        snprintf(j->content_type, sizeof j->content_type, "%s", row->content_type);
    j->expires_at = row->expires_at;
    j->sliding_ms = row->sliding_ms;
    if (j->sliding_ms > 0)
        j->expires_at = j->now + j->sliding_ms;
    return SQLCACHED_OK;
}

static sqlcached_status_t tx_incr(store_conn_t *w, void *arg)
{
    incr_job_t *j = arg;
    store_note(w, CLUSTER_KEY, j->key, j->klen, 0);
    j->value = 0; /* an absent key counts as 0 */
    j->expires_at = 0;
    j->sliding_ms = 0;
    snprintf(j->content_type, sizeof j->content_type, "%s", COUNTER_CONTENT_TYPE);
    sqlcached_status_t st = storage_kv_get(w, j->key, j->klen, j->now, incr_read, j);
    if (st != SQLCACHED_OK && st != SQLCACHED_NOT_FOUND)
        return st;
    if (__builtin_add_overflow(j->value, j->by, &j->value))
        return SQLCACHED_NOT_INTEGER;
    j->text_len = (size_t)snprintf(j->text, sizeof j->text, "%" PRId64, j->value);
    st = store_counter_next(w, "version", &j->version);
    if (st == SQLCACHED_OK)
        st = storage_kv_upsert_sliding(w, j->key, j->klen, j->text, j->text_len, j->content_type,
                                       j->version, j->expires_at, j->sliding_ms);
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_PUT, j->key, j->klen, j->version, j->expires_at);
    return st;
}

static void incr_committed(void *arg)
{
    incr_job_t *j = arg;
    cache_fill_t written = {j->text,    j->text_len,   j->content_type,
                            j->version, j->expires_at, j->sliding_ms};
    after_commit(j->db, j->key, j->klen, &written, j->now);
}

sqlcached_status_t sqlcached_kv_incr(sqlcached_t *db, const void *key, size_t klen, int64_t by,
                                     int64_t *value_out, int64_t *version_out)
{
    if (!kvs_key_ok(key, klen))
        return SQLCACHED_INVALID_ARGUMENT;
    incr_job_t job = {.db = db, .key = key, .klen = klen, .by = by, .now = engine_now(db)};
    sqlcached_status_t st = store_write_then(db->store, tx_incr, incr_committed, &job);
    if (st == SQLCACHED_OK) {
        if (value_out)
            *value_out = job.value;
        if (version_out)
            *version_out = job.version;
    }
    return st;
}

/* An asynchronous incr in flight: freed by on_incr_done. */
typedef struct incr_async {
    incr_job_t job; /* first: incr_committed gets &job */
    int64_t *value_out, *version_out;
    sqlcached_done_fn done;
    void *cls;
} incr_async_t;

/* On the writer thread, after the batch is visible to readers. */
static void on_incr_done(void *cls, sqlcached_status_t st)
{
    incr_async_t *a = cls;
    if (st == SQLCACHED_OK && a->value_out)
        *a->value_out = a->job.value;
    if (st == SQLCACHED_OK && a->version_out)
        *a->version_out = a->job.version;
    kvs_async_finish(a, a->done, a->cls, st);
}

sqlcached_status_t sqlcached_kv_incr_async(sqlcached_t *db, const void *key, size_t klen,
                                           int64_t by, int64_t *value_out, int64_t *version_out,
                                           sqlcached_done_fn done, void *cls)
{
    if (!done || !kvs_key_ok(key, klen))
        return SQLCACHED_INVALID_ARGUMENT;
    incr_async_t *a = malloc(sizeof *a);
    if (!a)
        return SQLCACHED_NOMEM;
    *a = (incr_async_t){
        .job = {.db = db, .key = key, .klen = klen, .by = by, .now = engine_now(db)},
        .value_out = value_out,
        .version_out = version_out,
        .done = done,
        .cls = cls,
    };
    sqlcached_status_t st =
        store_write_async(db->store, tx_incr, incr_committed, &a->job, on_incr_done, a);
    if (st != SQLCACHED_OK)
        free(a);
    return st;
}

typedef struct purge_job {
    int64_t now;
    int max_rows;
    int purged;
} purge_job_t;

static sqlcached_status_t tx_purge(store_conn_t *w, void *arg)
{
    purge_job_t *p = arg;
    return watch_purge_expired(w, p->now, p->max_rows, &p->purged); /* 'x' changes */
}

int kv_purge_expired(sqlcached_t *db, int64_t now, int max_rows)
{
    purge_job_t job = {now, max_rows, 0};
    sqlcached_status_t st = store_write(db->store, tx_purge, &job);
    if (st != SQLCACHED_OK) {
        log_warn("kv", "purge of expired keys failed: %s", sqlcached_status_name(st));
        return -1;
    }
    if (job.purged)
        log_debug("kv", "purged %d expired keys", job.purged);
    if (job.purged)
        watch_kick(db->watch);
    return job.purged;
}

static bool bloom_key(void *cls, const void *key, size_t klen)
{
    bloom_rebuild_add(cls, key, klen);
    return true;
}

/* Rebuild the bloom filter from every key in the store (see bloom.h). */
int kv_bloom_rebuild(sqlcached_t *db)
{
    if (!db->kv->bloom)
        return 0;
    store_conn_t *r = store_reader_acquire(db->store);
    sqlcached_status_t st = SQLCACHED_UNAVAILABLE;
    if (r) {
        bloom_rebuild_begin(db->kv->bloom);
        st = storage_kv_scan_keys(r, bloom_key, db->kv->bloom);
        /* A failed scan does not switch arrays: the live one stays (adds
         * keep going to both), and the next rebuild starts over. */
        if (st == SQLCACHED_OK)
            bloom_rebuild_end(db->kv->bloom);
        store_reader_release(db->store, r);
    }
    if (st != SQLCACHED_OK) {
        log_warn("kv", "bloom filter rebuild failed: %s", sqlcached_status_name(st));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Listing
 * ------------------------------------------------------------------------ */

void sqlcached_keys_free(sqlcached_keys_t *keys)
{
    if (!keys)
        return;
    for (size_t i = 0; i < keys->count; i++)
        free((void *)keys->keys[i]);
    free(keys->keys);
    free(keys->lens);
    free(keys);
}

/* Append a key to the page (room for it was allocated); false on
 * allocation failure. */
static bool page_append(void *cls, const void *key, size_t klen)
{
    sqlcached_keys_t *page = cls;
    void *copy = malloc(klen ? klen : 1);
    if (!copy)
        return false;
    if (klen)
        memcpy(copy, key, klen);
    page->keys[page->count] = copy;
    page->lens[page->count] = klen;
    page->count++;
    return true;
}

sqlcached_status_t sqlcached_kv_list(sqlcached_t *db, const void *prefix, size_t plen,
                                     const void *after, size_t alen, unsigned limit,
                                     sqlcached_keys_t **out)
{
    *out = NULL;
    if (limit < 1 || limit > SQLCACHED_LIST_LIMIT_MAX || (plen && !prefix) || (alen && !after) ||
        plen > SQLCACHED_KEY_MAX || alen > SQLCACHED_KEY_MAX)
        return SQLCACHED_INVALID_ARGUMENT;
    sqlcached_keys_t *page = calloc(1, sizeof *page);
    if (page) {
        page->keys = calloc(limit, sizeof *page->keys);
        page->lens = calloc(limit, sizeof *page->lens);
    }
    store_conn_t *r = page && page->keys && page->lens ? store_reader_acquire(db->store) : NULL;
    sqlcached_status_t status = !page || !page->keys || !page->lens ? SQLCACHED_NOMEM
                                : !r                                ? SQLCACHED_UNAVAILABLE
                                                                    : SQLCACHED_OK;
    if (status == SQLCACHED_OK) {
        bool more = false;
        status = storage_kv_list(r, prefix, plen, after, alen, engine_now(db), limit, page_append,
                                 page, &more);
        page->has_more = more;
    }
    if (r)
        store_reader_release(db->store, r);
    if (status != SQLCACHED_OK) {
        sqlcached_keys_free(page);
        return status;
    }
    *out = page;
    return SQLCACHED_OK;
}

/* ------------------------------------------------------------------------
 * Shared with other modules that write KV rows (kv_int.h: transactions)
 * ------------------------------------------------------------------------ */

const char kv_default_content_type[] = "application/octet-stream";
const char kv_counter_content_type[] = "text/plain; charset=utf-8";

void kv_after_commit(sqlcached_t *db, const void *key, size_t klen, const cache_fill_t *written,
                     int64_t now)
{
    after_commit(db, key, klen, written, now);
}

bool kv_content_type_ok(const char *content_type)
{
    return content_type_ok(content_type);
}

int64_t kv_expiry(sqlcached_t *db, int64_t now, int64_t ttl_ms)
{
    return now + jitter_ttl(db, ttl_ms);
}

bool kv_parse_int64(const void *p, size_t n, int64_t *out)
{
    return parse_int64(p, n, out);
}
