/*
 * kv_session.c - the KV calls a session of a client uses beyond plain
 * reads and writes: sliding expiry's coalesced extensions (queued by
 * sqlcached_kv_get in kv.c), read-and-delete and JSON merge patch. Apart
 * from kv.c because each is a self-contained write with its own job type
 * and commit hook; they share kv.c's value type, preconditions and
 * after-commit path through kv_session_int.h and kv_int.h. The rules of
 * kv.c's file comment (writes on the writer thread, the memory tier, the
 * cluster) hold here too.
 *
 * Sliding expiry (a row with sliding_ms > 0): every write of the key sets
 * expires_at = now + sliding_ms; a read (sqlcached_kv_get) that finds the
 * expiry short of now + sliding_ms queues an extension (slide_maybe) to
 * now + sliding_ms + slack, slack = max(1 s, sliding_ms / 10) / 2, through
 * the writer's next batch, and answers without waiting for it. One
 * extension per key is in flight at a time (slides[]), so a hot key costs
 * one or two writes per slack (a read that fetched the entry just before
 * an extension's commit hook replaced it may queue one more), and a hit
 * stays a memory read: the tier entry
 * carries (expires_at, sliding_ms) (cache_value_sliding) and expires with
 * the persisted expiry it was filled or replaced with. Expiries only grow
 * between writes, so a tier entry never outlives the row; an entry that
 * expires (say, on a node whose copy predates another node's extension)
 * is a miss that reloads the row. The extension takes no version and
 * notes nothing for the cluster: other nodes' copies expire no later than
 * the row. After it commits the tier gets the new expiry (replace), or,
 * when nothing was extended (another node extended further, a newer
 * write), loses the entry so that the next read loads the row.
 *
 * Read-and-delete (sqlcached_kv_take) and merge patch (sqlcached_kv_patch)
 * read the row on the writer connection inside the write, so concurrent
 * ones are serialized by the writer like any write.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "engine.h"
#include "json_patch.h"
#include "watch.h"
#include "kv_int.h"
#include "kv_session_int.h"
#include "log.h"
#include "storage.h"

static const char JSON_CONTENT_TYPE[] = "application/json";

/* ------------------------------------------------------------------------
 * Sliding expiry: coalesced extensions (see the top of the file)
 * ------------------------------------------------------------------------ */

/* Keys with an extension in flight, per store: a small table keyed by
 * (store, key) under one lock, taken only by reads that need an
 * extension. A read skips its own extension only when the one in flight
 * reaches now + sliding_ms already. A key whose slot holds another key is
 * extended without a slot (no coalescing then, still correct). The slot
 * is freed by the commit hook, as the tier learns the new expiry. */
#define SLIDE_SLOTS 64

typedef struct slide_slot {
    const sqlcached_t *db; /* NULL: free */
    int64_t expires_at;    /* the extension in flight */
    size_t klen;
    unsigned char key[SQLCACHED_KEY_MAX];
} slide_slot_t;

static pthread_mutex_t slides_lock = PTHREAD_MUTEX_INITIALIZER;
static slide_slot_t slides[SLIDE_SLOTS];

typedef struct slide_job {
    sqlcached_t *db;
    kv_value_t *value; /* a reference: the bytes for the tier */
    int64_t sliding_ms, expires_at;
    int slot; /* index in slides[], or -1 */
    bool extended;
    size_t klen;
    unsigned char key[];
} slide_job_t;

/* The half-tolerance a read extends beyond now + sliding_ms: the key then
 * expires no later than sliding_ms + max(1 s, sliding_ms / 10) after it. */
static int64_t slide_slack(int64_t sliding_ms)
{
    int64_t tolerance = sliding_ms / 10 > 1000 ? sliding_ms / 10 : 1000;
    return tolerance / 2;
}

static size_t slide_index(const sqlcached_t *db, const void *key, size_t klen)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)db;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ ((const unsigned char *)key)[i]) * 1099511628211ULL;
    return (size_t)(h % SLIDE_SLOTS);
}

/* Claim the key's slot for an extension to expires_at: its index, -1 when
 * the slot is taken (go ahead without one), -2 when an extension of this
 * key to at least `needed` is in flight (skip). */
static int slide_claim(const sqlcached_t *db, const void *key, size_t klen, int64_t needed,
                       int64_t expires_at)
{
    size_t i = slide_index(db, key, klen);
    int r;
    pthread_mutex_lock(&slides_lock);
    slide_slot_t *sl = &slides[i];
    if (!sl->db) {
        sl->db = db;
        sl->expires_at = expires_at;
        sl->klen = klen;
        memcpy(sl->key, key, klen);
        r = (int)i;
    } else if (sl->db == db && sl->klen == klen && memcmp(sl->key, key, klen) == 0 &&
               sl->expires_at >= needed) {
        r = -2;
    } else {
        r = -1;
    }
    pthread_mutex_unlock(&slides_lock);
    return r;
}

/* Free the job's slot, once. */
static void slide_unclaim(slide_job_t *j)
{
    if (j->slot < 0)
        return;
    pthread_mutex_lock(&slides_lock);
    slides[j->slot].db = NULL;
    pthread_mutex_unlock(&slides_lock);
    j->slot = -1;
}

static void slide_job_free(slide_job_t *j)
{
    slide_unclaim(j);
    sqlcached_value_release(&j->value->pub);
    free(j);
}

static sqlcached_status_t tx_slide(store_conn_t *w, void *arg)
{
    slide_job_t *j = arg;
    /* The writer's clock: a row that expired meanwhile stays expired. */
    return storage_kv_extend(w, j->key, j->klen, j->value->pub.version, engine_now(j->db),
                             j->expires_at, &j->extended);
}

/* After the commit: the tier learns the new expiry, or forgets the key
 * when nothing was extended (the next read loads the row as it is). */
static void slide_committed(void *arg)
{
    slide_job_t *j = arg;
    sqlcached_t *db = j->db;
    if (!db->cache) {
        slide_unclaim(j);
        return;
    }
    if (j->extended && (!db->cluster || cluster_replace_ok(db->cluster))) {
        const sqlcached_value_t *v = &j->value->pub;
        cache_fill_t fill = {v->data,    v->len,        v->content_type,
                             v->version, j->expires_at, j->sliding_ms};
        cache_replace(db->cache, j->key, j->klen, &fill, engine_now(db));
    } else {
        cache_invalidate(db->cache, j->key, j->klen);
    }
    slide_unclaim(j);
}

static void slide_done(void *cls, sqlcached_status_t st)
{
    slide_job_t *j = cls;
    if (st != SQLCACHED_OK && st != SQLCACHED_UNAVAILABLE)
        log_warn("kv", "extending a sliding key failed: %s", sqlcached_status_name(st));
    slide_job_free(j);
}

/* A read of a sliding key at `now` (v: the value answered): queue an
 * extension when the expiry the read saw is short of now + sliding_ms. */
void kvs_slide_maybe(sqlcached_t *db, const void *key, size_t klen, kv_value_t *v,
                     const read_expiry_t *ex, int64_t now)
{
    int64_t needed = now + ex->sliding_ms;
    if (ex->expires_at <= 0 || ex->expires_at >= needed)
        return;
    int64_t target = needed + slide_slack(ex->sliding_ms);
    slide_job_t *j = malloc(sizeof *j + klen);
    if (!j)
        return;
    int slot = slide_claim(db, key, klen, needed, target);
    if (slot == -2) {
        free(j);
        return;
    }
    atomic_fetch_add(&v->refs, 1);
    *j = (slide_job_t){.db = db,
                       .value = v,
                       .sliding_ms = ex->sliding_ms,
                       .expires_at = target,
                       .slot = slot,
                       .klen = klen};
    memcpy(j->key, key, klen);
    if (store_write_async(db->store, tx_slide, slide_committed, j, slide_done, j) != SQLCACHED_OK)
        slide_job_free(j);
}

/* ------------------------------------------------------------------------
 * Read-and-delete (sqlcached_kv_take)
 * ------------------------------------------------------------------------ */

typedef struct take_job {
    delete_job_t del;  /* first: delete_committed gets &del */
    kv_value_t *value; /* the row deleted (owned until handed out) */
} take_job_t;

static sqlcached_status_t tx_take(store_conn_t *w, void *arg)
{
    take_job_t *t = arg;
    delete_job_t *d = &t->del;
    store_note(w, CLUSTER_KEY, d->key, d->klen, 0);
    sqlcached_value_release(t->value ? &t->value->pub : NULL);
    t->value = NULL;
    row_copy_t copy = {0};
    sqlcached_status_t st = storage_kv_get(w, d->key, d->klen, d->now, kvs_copy_row, &copy);
    if (st != SQLCACHED_OK && st != SQLCACHED_NOT_FOUND)
        return st;
    t->value = copy.value;
    int64_t current = t->value ? t->value->pub.version : 0, version;
    if (!kvs_preconditions_hold(d->pre, current))
        return SQLCACHED_PRECONDITION_FAILED;
    if (current == 0)
        return SQLCACHED_NOT_FOUND;
    st = store_counter_next(w, "version", &version);
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_DELETE, d->key, d->klen, version, 0);
    if (st != SQLCACHED_OK)
        return st;
    return storage_kv_remove(w, d->key, d->klen);
}

/* The value of a finished take to the caller on OK, else dropped. */
static void take_hand_out(take_job_t *t, sqlcached_status_t st, sqlcached_value_t **out)
{
    if (st == SQLCACHED_OK && out && t->value)
        *out = &t->value->pub;
    else
        sqlcached_value_release(t->value ? &t->value->pub : NULL);
    t->value = NULL;
}

sqlcached_status_t sqlcached_kv_take(sqlcached_t *db, const void *key, size_t klen,
                                     const sqlcached_preconditions_t *pre, sqlcached_value_t **out)
{
    if (out)
        *out = NULL;
    if (!kvs_key_ok(key, klen) || !kvs_preconditions_ok(pre))
        return SQLCACHED_INVALID_ARGUMENT;
    take_job_t job = {.del = {db, key, klen, pre, engine_now(db)}, .value = NULL};
    sqlcached_status_t st = store_write_then(db->store, tx_take, kvs_delete_committed, &job);
    take_hand_out(&job, st, out);
    return st;
}

/* An asynchronous take in flight: freed by on_take_done. */
typedef struct take_async {
    take_job_t job; /* first: delete_committed gets &job.del */
    sqlcached_value_t **out;
    sqlcached_done_fn done;
    void *cls;
} take_async_t;

static void on_take_done(void *cls, sqlcached_status_t st)
{
    take_async_t *a = cls;
    take_hand_out(&a->job, st, a->out);
    kvs_async_finish(a, a->done, a->cls, st);
}

sqlcached_status_t sqlcached_kv_take_async(sqlcached_t *db, const void *key, size_t klen,
                                           const sqlcached_preconditions_t *pre,
                                           sqlcached_value_t **out, sqlcached_done_fn done,
                                           void *cls)
{
    if (!done || !kvs_key_ok(key, klen) || !kvs_preconditions_ok(pre))
        return SQLCACHED_INVALID_ARGUMENT;
    if (out)
        *out = NULL;
    take_async_t *a = malloc(sizeof *a);
    if (!a)
        return SQLCACHED_NOMEM;
    *a = (take_async_t){.job = {.del = {db, key, klen, pre, engine_now(db)}},
                        .out = out,
                        .done = done,
                        .cls = cls};
    sqlcached_status_t st =
        store_write_async(db->store, tx_take, kvs_delete_committed, &a->job, on_take_done, a);
    if (st != SQLCACHED_OK)
        free(a);
    return st;
}

/* ------------------------------------------------------------------------
 * JSON merge patch (sqlcached_kv_patch; json_patch.c does the merging)
 * ------------------------------------------------------------------------ */

typedef struct patch_job {
    sqlcached_t *db;
    const void *key;
    size_t klen;
    json_t *patch; /* owned */
    const sqlcached_preconditions_t *pre;
    int64_t now, ttl_ms, sliding_ms; /* ttl_ms 0: keep the row's expiry */
    /* the row written (text owned) */
    char *text;
    size_t text_len;
    int64_t expires_at, row_sliding_ms;
    sqlcached_write_result_t result;
} patch_job_t;

/* The live row of a patch's key: merged into j->text, its expiry kept. */
static sqlcached_status_t patch_read(void *cls, const storage_kv_row_t *row)
{
    patch_job_t *j = cls;
    j->result.version = row->version;
    j->expires_at = row->expires_at;
    j->row_sliding_ms = row->sliding_ms;
    if (!kvs_preconditions_hold(j->pre, row->version))
        return SQLCACHED_PRECONDITION_FAILED;
    return json_patch_apply(row->value, row->value_len, j->patch, &j->text, &j->text_len);
}

/* The expiry the patched row gets: ?ttl (sliding or not), else the row's
 * (a sliding row's moves to now + its sliding TTL). */
static void patch_expiry(patch_job_t *j)
{
    if (j->ttl_ms > 0) {
        j->expires_at = j->now + j->ttl_ms;
        j->row_sliding_ms = j->sliding_ms;
    } else if (j->row_sliding_ms > 0) {
        j->expires_at = j->now + j->row_sliding_ms;
    }
}

static sqlcached_status_t tx_patch(store_conn_t *w, void *arg)
{
    patch_job_t *j = arg;
    store_note(w, CLUSTER_KEY, j->key, j->klen, 0);
    free(j->text);
    j->text = NULL;
    j->result = (sqlcached_write_result_t){0};
    j->expires_at = j->row_sliding_ms = 0;
    sqlcached_status_t st = storage_kv_get(w, j->key, j->klen, j->now, patch_read, j);
    if (st == SQLCACHED_NOT_FOUND) {
        if (!kvs_preconditions_hold(j->pre, 0))
            return SQLCACHED_PRECONDITION_FAILED;
        st = json_patch_apply(NULL, 0, j->patch, &j->text, &j->text_len);
    }
    if (st != SQLCACHED_OK)
        return st;
    bool created = j->result.version == 0;
    patch_expiry(j);
    int64_t version;
    st = store_counter_next(w, "version", &version);
    if (st == SQLCACHED_OK)
        st = storage_kv_upsert_sliding(w, j->key, j->klen, j->text, j->text_len, JSON_CONTENT_TYPE,
                                       version, j->expires_at, j->row_sliding_ms);
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_PUT, j->key, j->klen, version, j->expires_at);
    if (st == SQLCACHED_OK)
        j->result = (sqlcached_write_result_t){version, j->expires_at, created};
    return st;
}

static void patch_committed(void *arg)
{
    patch_job_t *j = arg;
    cache_fill_t written = {j->text,           j->text_len,   JSON_CONTENT_TYPE,
                            j->result.version, j->expires_at, j->row_sliding_ms};
    kv_after_commit(j->db, j->key, j->klen, &written, j->now);
}

static void patch_job_clear(patch_job_t *j)
{
    json_decref(j->patch);
    free(j->text);
}

/* Check a patch's arguments and fill its job (the key and preconditions
 * borrowed; the patch parsed here, in the caller's thread). */
static sqlcached_status_t patch_setup(sqlcached_t *db, const void *key, size_t klen,
                                      const void *patch, size_t plen,
                                      const sqlcached_put_options_t *opts, patch_job_t *job)
{
    static const sqlcached_put_options_t none = {0};
    if (!opts)
        opts = &none;
    memset(job, 0, sizeof *job);
    if (!kvs_key_ok(key, klen) || (plen && !patch) || !kvs_preconditions_ok(&opts->pre) ||
        opts->ttl_ms < 0 || opts->ttl_ms > SQLCACHED_TTL_MAX_MS ||
        (opts->sliding && opts->ttl_ms == 0))
        return SQLCACHED_INVALID_ARGUMENT;
    sqlcached_status_t st = json_patch_parse(patch, plen, &job->patch);
    if (st != SQLCACHED_OK)
        return st;
    job->db = db, job->key = key, job->klen = klen, job->pre = &opts->pre;
    job->now = engine_now(db);
    job->ttl_ms = opts->ttl_ms;
    job->sliding_ms = opts->sliding ? opts->ttl_ms : 0;
    return SQLCACHED_OK;
}

sqlcached_status_t sqlcached_kv_patch(sqlcached_t *db, const void *key, size_t klen,
                                      const void *patch, size_t plen,
                                      const sqlcached_put_options_t *opts,
                                      sqlcached_write_result_t *result)
{
    patch_job_t job;
    sqlcached_status_t st = patch_setup(db, key, klen, patch, plen, opts, &job);
    if (st != SQLCACHED_OK)
        return st;
    st = store_write_then(db->store, tx_patch, patch_committed, &job);
    if (st == SQLCACHED_OK && result)
        *result = job.result;
    patch_job_clear(&job);
    return st;
}

/* An asynchronous patch in flight: freed by on_patch_done. */
typedef struct patch_async {
    patch_job_t job; /* first: patch_committed gets &job */
    sqlcached_write_result_t *result;
    sqlcached_done_fn done;
    void *cls;
} patch_async_t;

static void on_patch_done(void *cls, sqlcached_status_t st)
{
    patch_async_t *a = cls;
    if (st == SQLCACHED_OK && a->result)
        *a->result = a->job.result;
    patch_job_clear(&a->job);
    kvs_async_finish(a, a->done, a->cls, st);
}

sqlcached_status_t sqlcached_kv_patch_async(sqlcached_t *db, const void *key, size_t klen,
                                            const void *patch, size_t plen,
                                            const sqlcached_put_options_t *opts,
                                            sqlcached_write_result_t *result,
                                            sqlcached_done_fn done, void *cls)
{
    if (!done)
        return SQLCACHED_INVALID_ARGUMENT;
    patch_async_t *a = malloc(sizeof *a);
    if (!a)
        return SQLCACHED_NOMEM;
    sqlcached_status_t st = patch_setup(db, key, klen, patch, plen, opts, &a->job);
    if (st == SQLCACHED_OK) {
        a->result = result, a->done = done, a->cls = cls;
        st = store_write_async(db->store, tx_patch, patch_committed, &a->job, on_patch_done, a);
        if (st != SQLCACHED_OK)
            patch_job_clear(&a->job);
    }
    if (st != SQLCACHED_OK)
        free(a);
    return st;
}
