/*
 * api_txn.c - POST /v1/txn: a transaction of compares and KV operations
 * (sqlcached_txn_*), as the contract's "Transactions" section says.
 *
 * The body is parsed strictly (unknown members refused at every level;
 * every refusal is 400 problem+json naming the member, e.g.
 * `success[2].ttl`) straight into a library transaction; at most
 * SQLCACHED_TXN_MAX compares and operations in all. Values are JSON
 * strings, stored as their UTF-8 bytes; a get of bytes that are not UTF-8
 * answers "value_base64".
 *
 * The transaction is committed asynchronously and the request parked
 * meanwhile (http_suspend), as a single PUT is, so that transactions and
 * single writes arriving together share one group commit. Ownership: the
 * txn state is reference-counted, one reference for the request (dropped
 * when it completes: ctx_free) and one for the queued commit (dropped by
 * its completion); the last one frees it and the txn, so a client that
 * leaves before the commit leaves valid memory behind. Only the writer's
 * completion decides the answer (park_past_stop), as for api_kv.c's
 * writes.
 */
#include <stdatomic.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json_text.h"
#include "log.h"

/* ------------------------------------------------------------------------
 * Parsing the body into a transaction
 * ------------------------------------------------------------------------ */

/* Where an element is, for error details: "compare[3]". */
typedef struct where {
    const char *list;
    size_t index;
} where_t;

static bool bad(http_error_t *err, const where_t *at, const char *member, const char *what)
{
    err->code = "invalid_argument";
    snprintf(err->detail, sizeof err->detail, "%s[%zu]%s%s: %s", at->list, at->index,
             member ? "." : "", member ? member : "", what);
    return false;
}

/* Is every member of obj among `allowed`? Names the first that is not. */
static bool members_ok(json_t *obj, const char *const allowed[], const where_t *at,
                       http_error_t *err)
{
    const char *name;
    json_t *v;
    json_object_foreach (obj, name, v) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], name) != 0)
            i++;
        if (!allowed[i]) {
            char what[96];
            snprintf(what, sizeof what, "unknown member \"%.60s\"", name);
            return bad(err, at, NULL, what);
        }
    }
    return true;
}

/* The "key" member: a string of 1..SQLCACHED_KEY_MAX bytes. */
static bool member_key(json_t *obj, const where_t *at, const char **key, size_t *klen,
                       http_error_t *err)
{
    json_t *v = json_object_get(obj, "key");
    if (!json_is_string(v) || json_string_length(v) < 1 ||
        json_string_length(v) > SQLCACHED_KEY_MAX)
        return bad(err, at, "key", "must be a string of 1 to 512 bytes");
    *key = json_string_value(v);
    *klen = json_string_length(v);
    return true;
}

static bool parse_compare(sqlcached_txn_t *t, json_t *c, const where_t *at, http_error_t *err)
{
    static const char *const allowed[] = {"key", "version", "exists", NULL};
    const char *key;
    size_t klen;
    if (!json_is_object(c))
        return bad(err, at, NULL, "must be an object {\"key\", \"version\" or \"exists\"}");
    if (!members_ok(c, allowed, at, err) || !member_key(c, at, &key, &klen, err))
        return false;
    json_t *version = json_object_get(c, "version"), *exists = json_object_get(c, "exists");
    if ((version != NULL) == (exists != NULL))
        return bad(err, at, NULL, "needs exactly one of \"version\" and \"exists\"");
    if (version && (!json_is_integer(version) || json_integer_value(version) < 0))
        return bad(err, at, "version", "must be an integer >= 0 (0: the key is absent)");
    if (exists && !json_is_boolean(exists))
        return bad(err, at, "exists", "must be true or false");
    sqlcached_status_t st =
        version ? sqlcached_txn_compare_version(t, key, klen, json_integer_value(version))
                : sqlcached_txn_compare_exists(t, key, klen, json_is_true(exists));
    if (st != SQLCACHED_OK)
        return bad(err, at, NULL, "cannot be added (out of memory)");
    return true;
}

/* put's optional members: content_type and ttl (seconds). */
static bool put_options(json_t *op, const where_t *at, const char **ct, int64_t *ttl_ms,
                        http_error_t *err)
{
    json_t *v = json_object_get(op, "content_type");
    *ct = NULL;
    if (v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        size_t n = json_is_string(v) ? json_string_length(v) : 0;
        bool ok = n >= 1 && n <= SQLCACHED_CONTENT_TYPE_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] <= 0x7e;
        if (!ok)
            return bad(err, at, "content_type", "must be 1 to 255 printable ASCII characters");
        *ct = s;
    }
    v = json_object_get(op, "ttl");
    *ttl_ms = 0;
    if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
              json_integer_value(v) > SQLCACHED_TTL_MAX_MS / 1000))
        return bad(err, at, "ttl", "must be a positive whole number of seconds");
    if (v)
        *ttl_ms = json_integer_value(v) * 1000;
    return true;
}

static bool parse_op(sqlcached_txn_t *t, sqlcached_txn_branch_t b, json_t *op, const where_t *at,
                     http_error_t *err)
{
    static const char *const get_m[] = {"op", "key", NULL};
    static const char *const put_m[] = {"op", "key", "value", "content_type", "ttl", NULL};
    static const char *const incr_m[] = {"op", "key", "by", NULL};
    if (!json_is_object(op))
        return bad(err, at, NULL, "must be an object with \"op\" and \"key\"");
    const char *name = json_string_value(json_object_get(op, "op"));
    const char *key;
    size_t klen;
    sqlcached_status_t st = SQLCACHED_OK;
    if (!name || (strcmp(name, "get") && strcmp(name, "put") && strcmp(name, "delete") &&
                  strcmp(name, "incr")))
        return bad(err, at, "op", "must be \"get\", \"put\", \"delete\" or \"incr\"");
    bool is_put = !strcmp(name, "put"), is_incr = !strcmp(name, "incr");
    if (!members_ok(op,
                    is_put    ? put_m
                    : is_incr ? incr_m
                              : get_m,
                    at, err) ||
        !member_key(op, at, &key, &klen, err))
        return false;
    if (is_put) {
        json_t *v = json_object_get(op, "value");
        const char *ct;
        int64_t ttl_ms;
        if (!json_is_string(v))
            return bad(err, at, "value", "must be a string");
        if (!put_options(op, at, &ct, &ttl_ms, err))
            return false;
        st = sqlcached_txn_add_put(t, b, key, klen, json_string_value(v), json_string_length(v), ct,
                                   ttl_ms);
    } else if (is_incr) {
        json_t *by = json_object_get(op, "by");
        if (by && !json_is_integer(by))
            return bad(err, at, "by", "must be an integer");
        st = sqlcached_txn_add_incr(t, b, key, klen, by ? json_integer_value(by) : 1);
    } else if (!strcmp(name, "get")) {
        st = sqlcached_txn_add_get(t, b, key, klen);
    } else {
        st = sqlcached_txn_add_delete(t, b, key, klen);
    }
    if (st != SQLCACHED_OK)
        return bad(err, at, NULL, "cannot be added (out of memory)");
    return true;
}

/* One of the three lists; absent is [] unless required. */
static bool parse_list(sqlcached_txn_t *t, json_t *body, const char *list, bool required,
                       http_error_t *err)
{
    json_t *arr = json_object_get(body, list);
    err->code = "invalid_argument";
    if (!arr && !required)
        return true;
    if (!json_is_array(arr)) {
        snprintf(err->detail, sizeof err->detail, "\"%s\" must be an array", list);
        return false;
    }
    size_t i;
    json_t *el;
    json_array_foreach (arr, i, el) {
        where_t at = {list, i};
        bool ok =
            !strcmp(list, "compare")
                ? parse_compare(t, el, &at, err)
                : parse_op(t,
                           strcmp(list, "success") ? SQLCACHED_TXN_FAILURE : SQLCACHED_TXN_SUCCESS,
                           el, &at, err);
        if (!ok)
            return false;
    }
    return true;
}

/* The whole body into *out (a new txn the caller frees); false with err. */
static bool parse_txn(json_t *body, sqlcached_txn_t **out, http_error_t *err)
{
    static const char *const lists[] = {"compare", "success", "failure"};
    size_t total = 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *arr = json_object_get(body, lists[i]);
        total += json_is_array(arr) ? json_array_size(arr) : 0;
    }
    err->code = "invalid_argument";
    if (total > SQLCACHED_TXN_MAX) {
        snprintf(err->detail, sizeof err->detail, "%zu compares and operations: at most %d in all",
                 total, SQLCACHED_TXN_MAX);
        return false;
    }
    if (sqlcached_txn_new(out) != SQLCACHED_OK) {
        err->code = "unavailable";
        snprintf(err->detail, sizeof err->detail, "out of memory");
        return false;
    }
    for (size_t i = 0; i < 3; i++)
        if (!parse_list(*out, body, lists[i], i == 1, err)) {
            sqlcached_txn_free(*out);
            *out = NULL;
            return false;
        }
    return true;
}

/* ------------------------------------------------------------------------
 * The answer
 * ------------------------------------------------------------------------ */

/* A get's value: a string if it is UTF-8, else value_base64; null if the
 * key was absent. */
static void get_value_text(json_text_t *t, const sqlcached_txn_result_t *r)
{
    if (!r->found) {
        json_text_member(t, "value");
        json_text_null(t);
        return;
    }
    if (http_utf8_ok(r->value, r->vlen)) {
        json_text_member(t, "value");
        json_text_string(t, r->value, r->vlen);
        return;
    }
    json_t *b64 = api_base64_json(r->value, r->vlen);
    json_text_member(t, "value_base64");
    if (b64)
        json_text_string(t, json_string_value(b64), json_string_length(b64));
    else
        t->failed = true;
    json_decref(b64);
}

/* One result object of a transaction's reply. */
static void result_text(json_text_t *t, const sqlcached_txn_result_t *r)
{
    static const char *const ops[] = {
        [SQLCACHED_TXN_GET] = "get",
        [SQLCACHED_TXN_PUT] = "put",
        [SQLCACHED_TXN_DELETE] = "delete",
        [SQLCACHED_TXN_INCR] = "incr",
    };
    json_text_raw(t, "{", 1);
    json_text_name(t, "op");
    json_text_string(t, ops[r->op], strlen(ops[r->op]));
    json_text_member(t, "key");
    json_text_string(t, r->key, r->klen);
    switch (r->op) {
    case SQLCACHED_TXN_GET:
        json_text_member(t, "found");
        json_text_bool(t, r->found);
        get_value_text(t, r);
        json_text_member(t, "content_type");
        if (r->found)
            json_text_string(t, r->content_type, strlen(r->content_type));
        else
            json_text_null(t);
        json_text_member(t, "version");
        if (r->found)
            json_text_int(t, r->version);
        else
            json_text_null(t);
        break;
    case SQLCACHED_TXN_PUT:
        json_text_member(t, "version");
        json_text_int(t, r->version);
        break;
    case SQLCACHED_TXN_DELETE:
        json_text_member(t, "deleted");
        json_text_bool(t, r->found);
        break;
    default:
        json_text_member(t, "value");
        json_text_int(t, r->number);
        json_text_member(t, "version");
        json_text_int(t, r->version);
        break;
    }
    json_text_raw(t, "}", 1);
}

/* The reply's text, {"succeeded", "results"} (caller frees); NULL when out
 * of memory. Written without a jansson tree: for a transaction of 16 puts
 * the tree and json_dumps() were a sixth of the request's instructions. */
static char *txn_text(const sqlcached_txn_t *txn)
{
    size_t n = sqlcached_txn_result_count(txn);
    json_text_t t;
    json_text_init(&t, 64 + n * 96);
    json_text_raw(&t, "{", 1);
    json_text_name(&t, "succeeded");
    json_text_bool(&t, sqlcached_txn_succeeded(txn));
    json_text_member(&t, "results");
    json_text_raw(&t, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            json_text_raw(&t, ",", 1);
        result_text(&t, sqlcached_txn_result(txn, i));
    }
    json_text_raw(&t, "]}", 2);
    size_t len;
    return json_text_take(&t, &len);
}

/* ------------------------------------------------------------------------
 * The parked commit
 * ------------------------------------------------------------------------ */

typedef struct txn_state {
    atomic_int refs;
    pthread_mutex_t lock;
    http_request_t *req; /* under lock; NULL once the request completed */
    sqlcached_txn_t *txn;
    sqlcached_status_t st;
    atomic_int done; /* set by the writer thread once st and the results are final */
} txn_state_t;

static void state_release(txn_state_t *ts)
{
    if (atomic_fetch_sub(&ts->refs, 1) == 1) {
        pthread_mutex_destroy(&ts->lock);
        sqlcached_txn_free(ts->txn);
        free(ts);
    }
}

/* ctx_free: the request completed; the queued commit may still run. */
static void state_detach(void *ctx)
{
    txn_state_t *ts = ctx;
    pthread_mutex_lock(&ts->lock);
    ts->req = NULL;
    pthread_mutex_unlock(&ts->lock);
    state_release(ts);
}

/* On the writer thread, after the batch is visible to readers. */
static void on_txn_done(void *cls, sqlcached_status_t st)
{
    txn_state_t *ts = cls;
    ts->st = st;
    atomic_store(&ts->done, 1);
    pthread_mutex_lock(&ts->lock);
    if (ts->req)
        http_resume(ts->req);
    pthread_mutex_unlock(&ts->lock);
    state_release(ts);
}

static enum MHD_Result txn_reply(http_request_t *req)
{
    txn_state_t *ts = req->ctx;
    if (!atomic_load(&ts->done)) {
        log_warn("http", "a transaction still undecided at the stop deadline: connection "
                         "closed without an answer");
        return MHD_NO;
    }
    if (ts->st == SQLCACHED_NOT_INTEGER) {
        int index = sqlcached_txn_failed_op(ts->txn);
        return http_reply_problem_with(
            req, "not_integer", json_pack("{s:i}", "op_index", index),
            "%s[%d]: the value is not a base-10 64-bit integer, or would overflow; nothing "
            "of the transaction was stored",
            sqlcached_txn_succeeded(ts->txn) ? "success" : "failure", index);
    }
    if (ts->st != SQLCACHED_OK)
        return http_reply_status(req, ts->st, "the transaction was not stored");
    return http_reply_json_text(req, MHD_HTTP_OK, txn_text(ts->txn), -1);
}

/* A new state in req->ctx owning txn, or NULL after answering 503 (txn
 * freed). */
static txn_state_t *state_new(http_request_t *req, sqlcached_txn_t *txn)
{
    txn_state_t *ts = calloc(1, sizeof *ts);
    if (!ts || pthread_mutex_init(&ts->lock, NULL) != 0) {
        free(ts);
        sqlcached_txn_free(txn);
        http_reply_problem(req, "unavailable", "out of memory");
        return NULL;
    }
    atomic_init(&ts->refs, 1);
    atomic_init(&ts->done, 0);
    ts->req = req;
    ts->txn = txn;
    req->ctx = ts;
    req->ctx_free = state_detach;
    return ts;
}

enum MHD_Result api_txn(http_request_t *req)
{
    static const char *const members[] = {"compare", "success", "failure", NULL};
    if (req->ctx) /* called again after http_resume */
        return txn_reply(req);
    json_t *body = http_body_object(req, false, members);
    if (!body)
        return MHD_YES;
    http_error_t err;
    sqlcached_txn_t *txn = NULL;
    bool ok = parse_txn(body, &txn, &err);
    json_decref(body);
    if (!ok)
        return http_reply_problem(req, err.code, "%s", err.detail);
    txn_state_t *ts = state_new(req, txn);
    if (!ts)
        return MHD_YES;
    atomic_fetch_add(&ts->refs, 1); /* the queued commit's */
    sqlcached_status_t st = sqlcached_txn_commit_async(req->db, txn, on_txn_done, ts);
    if (st != SQLCACHED_OK) {
        state_release(ts); /* nothing was queued */
        ts->st = st;
        atomic_store(&ts->done, 1);
        return txn_reply(req);
    }
    req->park_past_stop = true;
    if (http_suspend(req))
        return MHD_YES;
    return txn_reply(req);
}
