/*
 * txn.c - multi-key transactions over the KV rows (sqlcached_txn_*).
 *
 * A transaction (sqlcached_txn_t) is a list of items, each a compare or an
 * operation of the success or failure branch, every argument copied into
 * one allocation per item (owned by the txn). Committing it runs one
 * function (tx_run) as ONE write of the store's group commit: on SQLite one
 * savepoint of the group transaction, on PostgreSQL the same within the
 * group transaction. Inside it the compares read the current versions, the
 * chosen branch's operations run in order on the writer connection, which
 * sees its own uncommitted rows (so a get sees the earlier writes of the
 * same transaction), and every write takes the next value of the store's
 * version counter. A failing operation (incr of a non-integer) returns
 * SQLCACHED_NOT_INTEGER: the store rolls the savepoint back, so nothing of
 * the transaction is stored. The writer runs writes one at a time, so no
 * other write lands between the compares and the operations (isolation).
 *
 * Visibility: each written key is noted for the other nodes of a cluster
 * (store_note, as a single write does), and after the commit the writer
 * thread calls kv_after_commit (kv.c: memory tier per --on-write, bloom
 * filter) for every written key in the order written, before any answer:
 * the no-stale-read guarantee of single writes covers transactions.
 *
 * Results (values read by get, incr's text) are copied into buffers the
 * txn owns, freed by the next commit or sqlcached_txn_free.
 *
 * Threads: a txn is built and read by one thread; while a commit runs the
 * writer thread owns it (tx_run, txn_committed, on_txn_done).
 *
 * Test-only build (-DSQLCACHED_TESTING_TXN_SPLIT): the operations are
 * committed in two separate writes, the compares and the first operation,
 * then, after a pause, the rest: a transaction interrupted by a crash between the
 * two is stored in part. It exists so that the crash loop can show that its
 * transaction checker reports partial transactions (tests/reliability).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "watch.h"
#include "cluster.h"
#include "engine.h"
#include "kv_int.h"
#include "storage.h"

typedef enum item_kind {
    ITEM_COMPARE_VERSION,
    ITEM_COMPARE_EXISTS,
    ITEM_OP, /* op says which */
} item_kind_t;

typedef struct txn_item {
    item_kind_t kind;
    sqlcached_txn_op_t op;
    sqlcached_txn_branch_t branch;
    char *key; /* owned: key, then value, then content type NUL */
    size_t klen;
    const char *value;
    size_t vlen;
    const char *content_type; /* put; NULL = the default */
    int64_t ttl_ms, by, version;
    int exists;
} txn_item_t;

/* A key written by the transaction, for the after-commit path. */
typedef struct txn_written {
    const void *key;
    size_t klen;
    bool deleted;
    cache_fill_t row; /* points into the items or the result buffers */
} txn_written_t;

struct sqlcached_txn {
    txn_item_t items[SQLCACHED_TXN_MAX];
    size_t n;
    /* the run */
    sqlcached_t *db;
    int64_t now;
    bool used;
    int succeeded, failed_op;
    sqlcached_txn_branch_t branch;
    size_t op_from, op_to; /* the branch's operations this write runs */
    bool compared;         /* the compares were evaluated (split build: stage 2) */
    sqlcached_txn_result_t results[SQLCACHED_TXN_MAX];
    char *bufs[SQLCACHED_TXN_MAX]; /* owned copies behind results[i] */
    size_t nresults;
    txn_written_t written[SQLCACHED_TXN_MAX];
    size_t nwritten;
    int64_t got_sliding_ms; /* the sliding TTL of the row copy_get() saw */
    sqlcached_done_fn done;
    void *cls;
};

static bool key_ok(const void *key, size_t klen)
{
    return key && klen >= 1 && klen <= SQLCACHED_KEY_MAX;
}

sqlcached_status_t sqlcached_txn_new(sqlcached_txn_t **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return SQLCACHED_NOMEM;
    (*out)->failed_op = -1;
    return SQLCACHED_OK;
}

static void free_results(sqlcached_txn_t *t)
{
    for (size_t i = 0; i < t->nresults; i++) {
        free(t->bufs[i]);
        t->bufs[i] = NULL;
    }
    t->nresults = 0;
    t->nwritten = 0;
}

void sqlcached_txn_free(sqlcached_txn_t *txn)
{
    if (!txn)
        return;
    free_results(txn);
    for (size_t i = 0; i < txn->n; i++)
        free(txn->items[i].key);
    free(txn);
}

/* Append an item with copies of key, value and content type (may be NULL). */
static sqlcached_status_t add_item(sqlcached_txn_t *t, const txn_item_t *proto, const void *key,
                                   size_t klen, const void *value, size_t vlen, const char *ct)
{
    if (!t || t->used || t->n >= SQLCACHED_TXN_MAX || !key_ok(key, klen) || (vlen && !value) ||
        vlen > (size_t)INT32_MAX || proto->branch > SQLCACHED_TXN_FAILURE)
        return SQLCACHED_INVALID_ARGUMENT;
    size_t ctlen = ct ? strlen(ct) : 0;
    char *buf = malloc(klen + vlen + ctlen + 1);
    if (!buf)
        return SQLCACHED_NOMEM;
    txn_item_t *it = &t->items[t->n++];
    *it = *proto;
    it->key = memcpy(buf, key, klen);
    it->klen = klen;
    it->value = vlen ? memcpy(buf + klen, value, vlen) : buf + klen;
    it->vlen = vlen;
    if (ct) {
        memcpy(buf + klen + vlen, ct, ctlen + 1);
        it->content_type = buf + klen + vlen;
    }
    return SQLCACHED_OK;
}

sqlcached_status_t sqlcached_txn_compare_version(sqlcached_txn_t *txn, const void *key, size_t klen,
                                                 int64_t version)
{
    if (version < 0)
        return SQLCACHED_INVALID_ARGUMENT;
    txn_item_t proto = {.kind = ITEM_COMPARE_VERSION, .version = version};
    return add_item(txn, &proto, key, klen, NULL, 0, NULL);
}

sqlcached_status_t sqlcached_txn_compare_exists(sqlcached_txn_t *txn, const void *key, size_t klen,
                                                int exists)
{
    txn_item_t proto = {.kind = ITEM_COMPARE_EXISTS, .exists = exists != 0};
    return add_item(txn, &proto, key, klen, NULL, 0, NULL);
}

sqlcached_status_t sqlcached_txn_add_get(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                         const void *key, size_t klen)
{
    txn_item_t proto = {.kind = ITEM_OP, .op = SQLCACHED_TXN_GET, .branch = branch};
    return add_item(txn, &proto, key, klen, NULL, 0, NULL);
}

sqlcached_status_t sqlcached_txn_add_put(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                         const void *key, size_t klen, const void *value,
                                         size_t vlen, const char *content_type, int64_t ttl_ms)
{
    if ((content_type && !kv_content_type_ok(content_type)) || ttl_ms < 0 ||
        ttl_ms > SQLCACHED_TTL_MAX_MS)
        return SQLCACHED_INVALID_ARGUMENT;
    txn_item_t proto = {.kind = ITEM_OP,
                        .op = SQLCACHED_TXN_PUT,
                        .branch = branch,
                        .ttl_ms = ttl_ms};
    return add_item(txn, &proto, key, klen, value, vlen, content_type);
}

sqlcached_status_t sqlcached_txn_add_delete(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                            const void *key, size_t klen)
{
    txn_item_t proto = {.kind = ITEM_OP, .op = SQLCACHED_TXN_DELETE, .branch = branch};
    return add_item(txn, &proto, key, klen, NULL, 0, NULL);
}

sqlcached_status_t sqlcached_txn_add_incr(sqlcached_txn_t *txn, sqlcached_txn_branch_t branch,
                                          const void *key, size_t klen, int64_t by)
{
    txn_item_t proto = {.kind = ITEM_OP, .op = SQLCACHED_TXN_INCR, .branch = branch, .by = by};
    return add_item(txn, &proto, key, klen, NULL, 0, NULL);
}

/* ------------------------------------------------------------------------
 * The write (run by the writer thread)
 * ------------------------------------------------------------------------ */

/* Does every compare hold (on w, at t->now)? */
static sqlcached_status_t compares_hold(store_conn_t *w, sqlcached_txn_t *t, bool *holds)
{
    *holds = true;
    for (size_t i = 0; i < t->n; i++) {
        const txn_item_t *it = &t->items[i];
        if (it->kind == ITEM_OP)
            continue;
        int64_t current;
        sqlcached_status_t st = storage_kv_version(w, it->key, it->klen, t->now, &current);
        if (st != SQLCACHED_OK)
            return st;
        if (it->kind == ITEM_COMPARE_VERSION ? current != it->version
                                             : (current != 0) != (it->exists != 0))
            *holds = false;
    }
    return SQLCACHED_OK;
}

static void note_written(sqlcached_txn_t *t, const txn_item_t *it, const cache_fill_t *row)
{
    txn_written_t *wr = &t->written[t->nwritten++];
    *wr = (txn_written_t){.key = it->key, .klen = it->klen, .deleted = row == NULL};
    if (row)
        wr->row = *row;
}

/* A get's row, copied into the result's own buffer. */
static sqlcached_status_t copy_get(void *cls, const storage_kv_row_t *row)
{
    sqlcached_txn_t *t = cls;
    size_t i = t->nresults;
    char *buf = malloc(row->value_len + row->content_type_len + 1);
    if (!buf)
        return SQLCACHED_NOMEM;
    t->bufs[i] = buf;
    if (row->value_len)
        memcpy(buf, row->value, row->value_len);
    memcpy(buf + row->value_len, row->content_type, row->content_type_len);
    buf[row->value_len + row->content_type_len] = '\0';
    sqlcached_txn_result_t *r = &t->results[i];
    r->found = 1;
    r->value = buf;
    r->vlen = row->value_len;
    r->content_type = buf + row->value_len;
    r->version = row->version;
    r->expires_at = row->expires_at;
    t->got_sliding_ms = row->sliding_ms;
    return SQLCACHED_OK;
}

/* A get of a live sliding key is a read that moves its expiry to now +
 * its sliding TTL, in this transaction (never shortened). The tier keeps
 * the shorter expiry it holds: past it, a read there is a miss that loads
 * the row again. */
static sqlcached_status_t op_get(store_conn_t *w, sqlcached_txn_t *t, const txn_item_t *it)
{
    t->got_sliding_ms = 0;
    sqlcached_status_t st = storage_kv_get(w, it->key, it->klen, t->now, copy_get, t);
    if (st == SQLCACHED_NOT_FOUND)
        return SQLCACHED_OK;
    if (st != SQLCACHED_OK || t->got_sliding_ms <= 0)
        return st;
    sqlcached_txn_result_t *r = &t->results[t->nresults];
    int64_t target = t->now + t->got_sliding_ms;
    bool extended = false;
    st = storage_kv_extend(w, it->key, it->klen, r->version, t->now, target, &extended);
    if (st == SQLCACHED_OK && extended)
        r->expires_at = target;
    return st;
}

static sqlcached_status_t op_put(store_conn_t *w, sqlcached_txn_t *t, const txn_item_t *it)
{
    sqlcached_txn_result_t *r = &t->results[t->nresults];
    const char *ct = it->content_type ? it->content_type : kv_default_content_type;
    int64_t expires_at = it->ttl_ms > 0 ? kv_expiry(t->db, t->now, it->ttl_ms) : 0;
    store_note(w, CLUSTER_KEY, it->key, it->klen, 0);
    /* A put clears the sliding flag, as a PUT without sliding=true does. */
    sqlcached_status_t st = store_counter_next(w, "version", &r->version);
    if (st == SQLCACHED_OK)
        st = storage_kv_upsert(w, it->key, it->klen, it->value, it->vlen, ct, r->version,
                               expires_at);
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_PUT, it->key, it->klen, r->version, expires_at);
    if (st != SQLCACHED_OK)
        return st;
    r->expires_at = expires_at;
    cache_fill_t row = {it->value, it->vlen, ct, r->version, expires_at, 0};
    note_written(t, it, &row);
    return SQLCACHED_OK;
}

static sqlcached_status_t op_delete(store_conn_t *w, sqlcached_txn_t *t, const txn_item_t *it)
{
    int64_t current, version;
    sqlcached_status_t st = storage_kv_version(w, it->key, it->klen, t->now, &current);
    if (st != SQLCACHED_OK || current == 0)
        return st; /* absent: deleted 0, no write */
    store_note(w, CLUSTER_KEY, it->key, it->klen, 0);
    st = store_counter_next(w, "version", &version); /* a delete takes a version too */
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_DELETE, it->key, it->klen, version, 0);
    if (st == SQLCACHED_OK)
        st = storage_kv_remove(w, it->key, it->klen);
    if (st != SQLCACHED_OK)
        return st;
    t->results[t->nresults].found = 1;
    note_written(t, it, NULL);
    return SQLCACHED_OK;
}

/* The live row of an incr's key: its integer, content type and expiry,
 * kept in the result's buffer (the text written goes there too). */
typedef struct incr_row {
    int64_t value, expires_at, sliding_ms;
    char content_type[SQLCACHED_CONTENT_TYPE_MAX + 1];
} incr_row_t;

static sqlcached_status_t incr_read(void *cls, const storage_kv_row_t *row)
{
    incr_row_t *ir = cls;
    if (!kv_parse_int64(row->value, row->value_len, &ir->value))
        return SQLCACHED_NOT_INTEGER;
    if (row->content_type_len)
        snprintf(ir->content_type, sizeof ir->content_type, "%.*s", (int)row->content_type_len,
                 row->content_type);
    ir->expires_at = row->expires_at;
    ir->sliding_ms = row->sliding_ms;
    return SQLCACHED_OK;
}

static sqlcached_status_t op_incr(store_conn_t *w, sqlcached_txn_t *t, const txn_item_t *it)
{
    sqlcached_txn_result_t *r = &t->results[t->nresults];
    incr_row_t ir = {0}; /* an absent key counts as 0 */
    snprintf(ir.content_type, sizeof ir.content_type, "%s", kv_counter_content_type);
    store_note(w, CLUSTER_KEY, it->key, it->klen, 0);
    sqlcached_status_t st = storage_kv_get(w, it->key, it->klen, t->now, incr_read, &ir);
    if (st != SQLCACHED_OK && st != SQLCACHED_NOT_FOUND)
        return st;
    if (__builtin_add_overflow(ir.value, it->by, &ir.value))
        return SQLCACHED_NOT_INTEGER;
    if (ir.sliding_ms > 0) /* a write of a sliding key moves its expiry */
        ir.expires_at = t->now + ir.sliding_ms;
    char *buf = malloc(24 + strlen(ir.content_type) + 1);
    if (!buf)
        return SQLCACHED_NOMEM;
    t->bufs[t->nresults] = buf;
    int len = snprintf(buf, 24, "%" PRId64, ir.value);
    char *ct = strcpy(buf + 24, ir.content_type);
    st = store_counter_next(w, "version", &r->version);
    if (st == SQLCACHED_OK)
        st = storage_kv_upsert_sliding(w, it->key, it->klen, buf, (size_t)len, ct, r->version,
                                       ir.expires_at, ir.sliding_ms);
    if (st == SQLCACHED_OK)
        st = watch_log(w, SQLCACHED_CHANGE_PUT, it->key, it->klen, r->version, ir.expires_at);
    if (st != SQLCACHED_OK)
        return st;
    r->number = ir.value;
    r->expires_at = ir.expires_at;
    cache_fill_t row = {buf, (size_t)len, ct, r->version, ir.expires_at, ir.sliding_ms};
    note_written(t, it, &row);
    return SQLCACHED_OK;
}

static sqlcached_status_t run_op(store_conn_t *w, sqlcached_txn_t *t, const txn_item_t *it)
{
    sqlcached_txn_result_t *r = &t->results[t->nresults];
    *r = (sqlcached_txn_result_t){.op = it->op, .key = it->key, .klen = it->klen};
    t->bufs[t->nresults] = NULL;
    sqlcached_status_t st;
    switch (it->op) {
    case SQLCACHED_TXN_GET:
        st = op_get(w, t, it);
        break;
    case SQLCACHED_TXN_PUT:
        st = op_put(w, t, it);
        break;
    case SQLCACHED_TXN_DELETE:
        st = op_delete(w, t, it);
        break;
    default:
        st = op_incr(w, t, it);
        break;
    }
    t->nresults++; /* its buffer (if any) is freed with the others */
    return st;
}

static sqlcached_status_t tx_run(store_conn_t *w, void *arg)
{
    sqlcached_txn_t *t = arg;
    if (!t->compared) {
        free_results(t); /* a write is run once; this only keeps it exact */
        bool holds;
        sqlcached_status_t st = compares_hold(w, t, &holds);
        if (st != SQLCACHED_OK)
            return st;
        t->succeeded = holds;
        t->branch = holds ? SQLCACHED_TXN_SUCCESS : SQLCACHED_TXN_FAILURE;
    }
    size_t index = 0;
    for (size_t i = 0; i < t->n; i++) {
        const txn_item_t *it = &t->items[i];
        if (it->kind != ITEM_OP || it->branch != t->branch)
            continue;
        if (index >= t->op_from && index < t->op_to) {
            sqlcached_status_t st = run_op(w, t, it);
            if (st != SQLCACHED_OK) {
                if (st == SQLCACHED_NOT_INTEGER)
                    t->failed_op = (int)index;
                return st;
            }
        }
        index++;
    }
    return SQLCACHED_OK;
}

/* After the commit, on the writer thread before any answer: every written
 * key, in the order written, through kv.c's one after-commit path. */
static void txn_committed(void *arg)
{
    sqlcached_txn_t *t = arg;
    for (size_t i = 0; i < t->nwritten; i++) {
        const txn_written_t *wr = &t->written[i];
        kv_after_commit(t->db, wr->key, wr->klen, wr->deleted ? NULL : &wr->row, t->now);
    }
}

static sqlcached_status_t run_setup(sqlcached_t *db, sqlcached_txn_t *t)
{
    if (!db || !t || t->used)
        return SQLCACHED_INVALID_ARGUMENT;
    t->used = true;
    t->db = db;
    t->now = engine_now(db);
    t->failed_op = -1;
    t->compared = false;
    t->op_from = 0;
    t->op_to = SQLCACHED_TXN_MAX;
    return SQLCACHED_OK;
}

#ifdef SQLCACHED_TESTING_TXN_SPLIT
/* Test-only: the compares and the first operation of the branch in one
 * write, the rest in a second one 50 ms later (see the top of the file). */
static sqlcached_status_t split_commit(sqlcached_t *db, sqlcached_txn_t *t)
{
    t->op_to = 1;
    sqlcached_status_t st = store_write_then(db->store, tx_run, txn_committed, t);
    if (st != SQLCACHED_OK)
        return st;
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    t->compared = true;
    t->op_from = t->op_to;
    t->op_to = SQLCACHED_TXN_MAX;
    t->nwritten = 0;
    st = store_write_then(db->store, tx_run, txn_committed, t);
    return st;
}
#endif

sqlcached_status_t sqlcached_txn_commit(sqlcached_t *db, sqlcached_txn_t *txn)
{
    sqlcached_status_t st = run_setup(db, txn);
    if (st != SQLCACHED_OK)
        return st;
#ifdef SQLCACHED_TESTING_TXN_SPLIT
    return split_commit(db, txn);
#else
    return store_write_then(db->store, tx_run, txn_committed, txn);
#endif
}

#ifndef SQLCACHED_TESTING_TXN_SPLIT
/* On the writer thread, after the whole batch is visible to readers. */
static void on_txn_done(void *cls, sqlcached_status_t st)
{
    sqlcached_txn_t *t = cls;
    t->done(t->cls, st);
}
#endif

sqlcached_status_t sqlcached_txn_commit_async(sqlcached_t *db, sqlcached_txn_t *txn,
                                              sqlcached_done_fn done, void *cls)
{
    if (!done)
        return SQLCACHED_INVALID_ARGUMENT;
    sqlcached_status_t st = run_setup(db, txn);
    if (st != SQLCACHED_OK)
        return st;
#ifdef SQLCACHED_TESTING_TXN_SPLIT
    done(cls, split_commit(db, txn));
    return SQLCACHED_OK;
#else
    txn->done = done;
    txn->cls = cls;
    st = store_write_async(db->store, tx_run, txn_committed, txn, on_txn_done, txn);
    if (st != SQLCACHED_OK)
        txn->used = false; /* nothing was queued: it may be committed again */
    return st;
#endif
}

int sqlcached_txn_succeeded(const sqlcached_txn_t *txn)
{
    return txn && txn->succeeded;
}

size_t sqlcached_txn_result_count(const sqlcached_txn_t *txn)
{
    return txn ? txn->nresults : 0;
}

const sqlcached_txn_result_t *sqlcached_txn_result(const sqlcached_txn_t *txn, size_t i)
{
    return txn && i < txn->nresults ? &txn->results[i] : NULL;
}

int sqlcached_txn_failed_op(const sqlcached_txn_t *txn)
{
    return txn ? txn->failed_op : -1;
}
