/*
 * history.c - see history.h.
 *
 * Per key, the writes with a version are sorted by completion time with a
 * running "largest version so far", and by version; the acknowledged
 * deletes are sorted by completion time with a running "latest invocation
 * so far", and by invocation time with a running "latest completion so
 * far". Each GET then costs a few binary searches. Indeterminate deletes
 * join the latter with an unbounded completion; indeterminate writes are
 * kept apart, and looked at only for a version no acknowledged write has.
 */
#include "history.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct key_index {
    const hop_t **wc;       /* versioned writes by completion */
    const hop_t **wc_max;   /* wc_max[i]: the largest version among wc[0..i] */
    const hop_t **wv;       /* versioned writes by version */
    const hop_t **dc;       /* acknowledged deletes by completion */
    int64_t *dc_max_invoke; /* latest invocation among dc[0..i] */
    const hop_t **di;       /* acknowledged and indeterminate deletes by invocation */
    int64_t *di_max_complete;
    const hop_t **wu; /* indeterminate writes */
    size_t nw, nd, ndi, nu;
} key_index_t;

static const char *const kind_names[] = {"GET", "PUT", "DELETE", "INCR"};

uint64_t history_violations(const history_report_t *r)
{
    return r->stale + r->resurrected + r->missing + r->phantom + r->future + r->wrong_value +
           r->version_order + r->not_monotonic + r->duplicate_version;
}

static int by_complete(const void *a, const void *b)
{
    const hop_t *x = *(const hop_t *const *)a, *y = *(const hop_t *const *)b;
    return (x->complete > y->complete) - (x->complete < y->complete);
}

static int by_invoke(const void *a, const void *b)
{
    const hop_t *x = *(const hop_t *const *)a, *y = *(const hop_t *const *)b;
    return (x->invoke > y->invoke) - (x->invoke < y->invoke);
}

static int by_version(const void *a, const void *b)
{
    const hop_t *x = *(const hop_t *const *)a, *y = *(const hop_t *const *)b;
    return (x->version > y->version) - (x->version < y->version);
}

/* How many of arr[0..n) (sorted by completion) completed before t. */
static size_t completed_before(const hop_t *const *arr, size_t n, int64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (arr[mid]->complete < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* How many of arr[0..n) (sorted by invocation) were invoked before t. */
static size_t invoked_before(const hop_t *const *arr, size_t n, int64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (arr[mid]->invoke < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const hop_t *find_version(const hop_t *const *wv, size_t n, int64_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (wv[mid]->version < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && wv[lo]->version == v ? wv[lo] : NULL;
}

static bool is_versioned_write(const hop_t *o)
{
    return (o->kind == HOP_PUT || o->kind == HOP_INCR) && o->result == HOP_OK;
}

static bool is_delete(const hop_t *o)
{
    return o->kind == HOP_DELETE && o->result == HOP_OK;
}

static bool is_unknown_delete(const hop_t *o)
{
    return o->kind == HOP_DELETE && o->result == HOP_UNKNOWN;
}

static bool is_unknown_write(const hop_t *o)
{
    return (o->kind == HOP_PUT || o->kind == HOP_INCR) && o->result == HOP_UNKNOWN;
}

/* When an operation's effect ends at the latest: an indeterminate one may
 * take effect at any time after its invocation. */
static int64_t effect_until(const hop_t *o)
{
    return o->result == HOP_UNKNOWN ? INT64_MAX : o->complete;
}

/* ------------------------------------------------------------------------
 * Building the per-key indexes
 * ------------------------------------------------------------------------ */

static void free_index(key_index_t *ix, unsigned nkeys)
{
    for (unsigned k = 0; ix && k < nkeys; k++) {
        free(ix[k].wc), free(ix[k].wc_max), free(ix[k].wv);
        free(ix[k].dc), free(ix[k].dc_max_invoke), free(ix[k].di), free(ix[k].di_max_complete);
        free(ix[k].wu);
    }
    free(ix);
}

static int alloc_key(key_index_t *x)
{
    size_t w = x->nw ? x->nw : 1, d = x->nd ? x->nd : 1, di = x->ndi ? x->ndi : 1;
    size_t u = x->nu ? x->nu : 1;
    x->wc = malloc(w * sizeof *x->wc);
    x->wc_max = malloc(w * sizeof *x->wc_max);
    x->wv = malloc(w * sizeof *x->wv);
    x->dc = malloc(d * sizeof *x->dc);
    x->di = malloc(di * sizeof *x->di);
    x->dc_max_invoke = malloc(d * sizeof *x->dc_max_invoke);
    x->di_max_complete = malloc(di * sizeof *x->di_max_complete);
    x->wu = malloc(u * sizeof *x->wu);
    return x->wc && x->wc_max && x->wv && x->dc && x->di && x->dc_max_invoke &&
                   x->di_max_complete && x->wu
               ? 0
               : -1;
}

static void sort_key(key_index_t *x)
{
    qsort(x->wc, x->nw, sizeof *x->wc, by_complete);
    qsort(x->wv, x->nw, sizeof *x->wv, by_version);
    qsort(x->dc, x->nd, sizeof *x->dc, by_complete);
    qsort(x->di, x->ndi, sizeof *x->di, by_invoke);
    for (size_t i = 0; i < x->nw; i++)
        x->wc_max[i] = i && x->wc_max[i - 1]->version > x->wc[i]->version ? x->wc_max[i - 1]
                                                                          : x->wc[i];
    for (size_t i = 0; i < x->nd; i++) {
        int64_t inv = x->dc[i]->invoke;
        x->dc_max_invoke[i] = i && x->dc_max_invoke[i - 1] > inv ? x->dc_max_invoke[i - 1] : inv;
    }
    for (size_t i = 0; i < x->ndi; i++) {
        int64_t comp = effect_until(x->di[i]);
        x->di_max_complete[i] = i && x->di_max_complete[i - 1] > comp ? x->di_max_complete[i - 1]
                                                                      : comp;
    }
}

static key_index_t *build_index(const hop_t *ops, size_t n, unsigned nkeys)
{
    key_index_t *ix = calloc(nkeys, sizeof *ix);
    if (!ix)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].key >= nkeys)
            continue;
        ix[ops[i].key].nw += is_versioned_write(&ops[i]);
        ix[ops[i].key].nd += is_delete(&ops[i]);
        ix[ops[i].key].ndi += is_delete(&ops[i]) || is_unknown_delete(&ops[i]);
        ix[ops[i].key].nu += is_unknown_write(&ops[i]);
    }
    for (unsigned k = 0; k < nkeys; k++) {
        if (alloc_key(&ix[k]) != 0) {
            free_index(ix, nkeys);
            return NULL;
        }
        ix[k].nw = ix[k].nd = ix[k].ndi = ix[k].nu = 0;
    }
    for (size_t i = 0; i < n; i++) {
        key_index_t *x = ops[i].key < nkeys ? &ix[ops[i].key] : NULL;
        if (x && is_versioned_write(&ops[i])) {
            x->wc[x->nw] = x->wv[x->nw] = &ops[i];
            x->nw++;
        } else if (x && is_delete(&ops[i])) {
            x->dc[x->nd++] = x->di[x->ndi++] = &ops[i];
        } else if (x && is_unknown_delete(&ops[i])) {
            x->di[x->ndi++] = &ops[i];
        } else if (x && is_unknown_write(&ops[i])) {
            x->wu[x->nu++] = &ops[i];
        }
    }
    for (unsigned k = 0; k < nkeys; k++)
        sort_key(&ix[k]);
    return ix;
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------ */

typedef struct printer {
    FILE *out;
    int budget;
} printer_t;

static void report_op(printer_t *p, const char *what, const hop_t *o, const hop_t *other)
{
    if (!p->out || p->budget-- <= 0)
        return;
    fprintf(p->out,
            "violation: %s: client %u %s key %u at node %u -> %s v%" PRId64 " value %" PRId64
            " [%" PRId64 " .. %" PRId64 " us]",
            what, o->client, kind_names[o->kind], o->key, o->node,
            o->result == HOP_OK ? "ok" : "absent", o->version, o->value, o->invoke / 1000,
            o->complete / 1000);
    if (other)
        fprintf(p->out,
                "; conflicting: client %u %s at node %u -> %s v%" PRId64 " value %" PRId64
                " [%" PRId64 " .. %" PRId64 " us]",
                other->client, kind_names[other->kind], other->node,
                other->result == HOP_OK ? "ok" : "absent", other->version, other->value,
                other->invoke / 1000, other->complete / 1000);
    fputc('\n', p->out);
}

/* Can g have read an indeterminate write (a PUT of its value, or an
 * increment, sent to this key before g completed)? */
static bool from_unknown_write(const key_index_t *x, const hop_t *g)
{
    for (size_t i = 0; i < x->nu; i++)
        if (x->wu[i]->invoke < g->complete &&
            (x->wu[i]->kind == HOP_INCR || x->wu[i]->value == g->value))
            return true;
    return false;
}

static void check_read_value(const key_index_t *x, const hop_t *g, const hop_t *wmax,
                             history_report_t *r, printer_t *p)
{
    const hop_t *w = find_version(x->wv, x->nw, g->version);
    if (!w && from_unknown_write(x, g)) {
        r->from_indeterminate++;
        if (wmax && g->version < wmax->version) {
            r->stale++;
            report_op(p, "stale read (a newer write was acknowledged before the GET)", g, wmax);
        }
        return;
    }
    if (!w) {
        r->phantom++;
        report_op(p, "version never written to this key", g, NULL);
        return;
    }
    if (w->value != g->value) {
        r->wrong_value++;
        report_op(p, "value differs from the write of that version", g, w);
    }
    if (w->invoke > g->complete) {
        r->future++;
        report_op(p, "read a write sent after the read completed", g, w);
    }
    if (wmax && g->version < wmax->version) {
        r->stale++;
        report_op(p, "stale read (a newer write was acknowledged before the GET)", g, wmax);
        return;
    }
    size_t nd = completed_before(x->dc, x->nd, g->invoke);
    if (nd && x->dc_max_invoke[nd - 1] > w->complete) {
        r->resurrected++;
        report_op(p, "read a value deleted before the GET was sent", g, w);
    }
}

static void check_read(const key_index_t *x, const hop_t *g, history_report_t *r, printer_t *p)
{
    size_t nw = completed_before(x->wc, x->nw, g->invoke);
    const hop_t *wmax = nw ? x->wc_max[nw - 1] : NULL;
    r->reads_checked++;
    if (g->result == HOP_OK) {
        check_read_value(x, g, wmax, r, p);
    } else if (g->result == HOP_ABSENT && wmax) {
        size_t nd = invoked_before(x->di, x->ndi, g->complete);
        if (!nd || x->di_max_complete[nd - 1] <= wmax->invoke) {
            r->missing++;
            report_op(p, "404 although a write was acknowledged before the GET", g, wmax);
        }
    }
}

/* Versions against real time, and no version given twice. */
static int check_versions(const hop_t *ops, size_t n, history_report_t *r, printer_t *p)
{
    size_t nw = 0;
    for (size_t i = 0; i < n; i++)
        nw += is_versioned_write(&ops[i]);
    const hop_t **wc = malloc((nw ? nw : 1) * sizeof *wc);
    int64_t *maxv = malloc((nw ? nw : 1) * sizeof *maxv);
    if (!wc || !maxv) {
        free(wc), free(maxv);
        return -1;
    }
    nw = 0;
    for (size_t i = 0; i < n; i++)
        if (is_versioned_write(&ops[i]))
            wc[nw++] = &ops[i];
    qsort(wc, nw, sizeof *wc, by_version);
    for (size_t i = 1; i < nw; i++)
        if (wc[i]->version == wc[i - 1]->version) {
            r->duplicate_version++;
            report_op(p, "version given to two writes", wc[i], wc[i - 1]);
        }
    qsort(wc, nw, sizeof *wc, by_complete);
    for (size_t i = 0; i < nw; i++)
        maxv[i] = i && maxv[i - 1] > wc[i]->version ? maxv[i - 1] : wc[i]->version;
    for (size_t i = 0; i < nw; i++) {
        size_t before = completed_before(wc, nw, wc[i]->invoke);
        r->writes_checked++;
        if (before && maxv[before - 1] >= wc[i]->version) {
            r->version_order++;
            report_op(p, "version not above one acknowledged before this write was sent", wc[i],
                      NULL);
        }
    }
    free(wc), free(maxv);
    return 0;
}

typedef struct seen {
    int64_t maxv;
    bool absent_since;   /* saw the key absent after seeing maxv */
    const hop_t *at_max; /* the operation that showed maxv */
    const hop_t *absent; /* the one that showed the key absent since */
} seen_t;

/* What each client saw of each key never goes back. */
static int check_clients(const hop_t *ops, size_t n, unsigned nkeys, history_report_t *r,
                         printer_t *p)
{
    uint32_t nclients = 0;
    for (size_t i = 0; i < n; i++)
        nclients = ops[i].client + 1 > nclients ? ops[i].client + 1 : nclients;
    seen_t *s = calloc((size_t)nclients * nkeys + 1, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const hop_t *o = &ops[i];
        if (o->key >= nkeys)
            continue;
        seen_t *e = &s[(size_t)o->client * nkeys + o->key];
        bool versioned = o->result == HOP_OK && o->kind != HOP_DELETE;
        bool absent = (o->kind == HOP_DELETE && o->result != HOP_ERROR && o->result != HOP_OTHER &&
                       o->result != HOP_UNKNOWN) ||
                      (o->kind == HOP_GET && o->result == HOP_ABSENT);
        if (versioned) {
            if (o->version < e->maxv || (o->version == e->maxv && e->absent_since) ||
                (o->kind != HOP_GET && o->version == e->maxv)) {
                r->not_monotonic++;
                report_op(p, "this client saw the key go back, after", o, e->at_max);
                if (e->absent_since)
                    report_op(p, "... and after it saw the key absent", o, e->absent);
            }
            if (o->version >= e->maxv) {
                e->maxv = o->version;
                e->at_max = o;
                e->absent_since = false;
            }
        } else if (absent) {
            e->absent_since = true;
            e->absent = o;
        }
    }
    free(s);
    return 0;
}

int history_check(const hop_t *ops, size_t n, unsigned nkeys, history_report_t *r, FILE *out,
                  int print)
{
    memset(r, 0, sizeof *r);
    printer_t p = {out, print};
    for (size_t i = 0; i < n; i++) {
        r->indeterminate += ops[i].result == HOP_UNKNOWN;
        if (ops[i].result != HOP_ERROR)
            continue;
        if (out && r->errors < 5)
            fprintf(out,
                    "error: client %u %s key %u at node %u [%" PRId64 " .. %" PRId64
                    " us] -> %s %d\n",
                    ops[i].client, kind_names[ops[i].kind], ops[i].key, ops[i].node,
                    ops[i].invoke / 1000, ops[i].complete / 1000,
                    ops[i].status ? "status" : "no answer, transport error",
                    ops[i].status ? (int)ops[i].status : (int)ops[i].transport_error);
        r->errors++;
    }
    key_index_t *ix = build_index(ops, n, nkeys);
    if (!ix)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (ops[i].kind == HOP_GET && ops[i].key < nkeys && ops[i].result != HOP_ERROR &&
            ops[i].result != HOP_UNKNOWN)
            check_read(&ix[ops[i].key], &ops[i], r, &p);
    free_index(ix, nkeys);
    if (check_versions(ops, n, r, &p) != 0 || check_clients(ops, n, nkeys, r, &p) != 0)
        return -1;
    return 0;
}
