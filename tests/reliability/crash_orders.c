/*
 * crash_orders.c - the flash sale domain of the crash loop (see crash.h).
 *
 * A few items with a small stock and a pool of users per item, more users
 * than units, so items sell out and stay sold out for a while. Workers
 * place orders for random users of a random item (a user often tries
 * again: already_ordered), and now and then reset an item to a new random
 * stock. The first operation on an item creates it.
 *
 * Serialization, so that the model knows the exact state after each
 * answer:
 *   - an item's gate (a read-write lock preferring writers) is held across
 *     each request: orders take it shared, a reset exclusive. Every order
 *     answered therefore lies wholly before or after a reset;
 *   - per (item, user) at most one request is in flight (the user's busy
 *     flag; a worker that finds it busy picks again next time).
 *
 * Each reset names the item "crash-r<generation>", so after a restart the
 * item's name says which (if any) of the unanswered resets was applied. Per user the
 * model holds none, ordered (with the order_id, 0 if only an
 * already_ordered answer proved it) or in doubt.
 *
 * check_file: for every item in the file, stock >= 0, stock + sold =
 * initial_stock, number of orders = sold; no (item, user) twice; no order
 * without its item.
 * check_restart: the item's generation is the last acknowledged reset (or
 * the unanswered one); every user's order is read back (each acknowledged
 * one must be there with its order_id, each in-doubt one is resolved);
 * sold >= the acknowledged orders and sold = the orders found; and the
 * sold-out answer is right: a user without an order is refused with 409
 * sold_out exactly when the stock is 0 (otherwise the order is placed).
 *
 * Payment deadlines (the second part, "crash-pay<i>" items): PAY_ITEMS
 * items with a payment timeout of PAY_TIMEOUT_MS, created once and never
 * reset, with more users than units. A user with no live order orders; one
 * with a pending order pays (most of the time), cancels, or lets the
 * deadline pass (a look at the order instead); a cancelled user orders
 * again. Per user the model holds none, pending (or cancelled at its
 * pay_by meanwhile), paid (an acknowledged pay), cancelled, or in doubt.
 * Online: a paid order is never seen otherwise (a pay refused, a cancel
 * answered 200, a GET).
 * check_file: for every item, sold = its pending and paid orders (a unit
 * returned twice breaks it), no user with two live orders, and every
 * acknowledged payment is a paid row. check_restart: each user's order is
 * read back (acknowledged pays and cancels kept, doubts resolved), stock +
 * sold = the stock, sold <= the users with a live order (deadlines pass
 * during the reads), and every order
 * whose pay_by passed more than 1 s before the check (also while the
 * daemon was down) is cancelled within 1 s.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "crash.h"
#include "testutil.h"

#define ITEMS 4
#define USERS 64 /* per item; above STOCK_MAX so a sold-out item keeps new users */
#define STOCK_MIN 4
#define STOCK_MAX 40
#define RESET_ONE_IN 25
#define MAX_DOUBTS 8

enum { U_NONE, U_ORDERED, U_DOUBT };

typedef struct ord_user {
    int state;
    int64_t order_id; /* U_ORDERED: the order's id, 0 if unknown */
    bool busy;        /* a request for this user is in flight */
} ord_user_t;

typedef struct ord_item {
    pthread_rwlock_t gate; /* orders shared, resets exclusive, across the request */
    pthread_mutex_t lock;  /* guards the fields below (never held across a request) */
    unsigned gen;          /* generation of the last acknowledged reset, 0 = none */
    int64_t initial;       /* its stock */
    /* unanswered resets since then, in the order sent: each may have been
     * applied (several: a worker waiting for the gate sends its reset to a
     * daemon that has just died too) */
    unsigned doubt_gen[MAX_DOUBTS];
    int64_t doubt_initial[MAX_DOUBTS];
    int ndoubts;
    unsigned next_gen;
    ord_user_t users[USERS];
} ord_item_t;

#define PAY_ITEMS 2
#define PAY_USERS 48
#define PAY_STOCK 16
#define PAY_TIMEOUT_MS 1000
#define PAY_DEADLINE_SLACK_MS 1000 /* the contract: cancelled within 1 s */
#define PAY_ABANDON_ONE_IN 3       /* orders their user never pays nor cancels */

enum { P_NONE, P_PENDING, P_PAID, P_CANCELLED, P_DOUBT };

typedef struct pay_user {
    int state;
    int64_t order_id; /* of the state's order; 0 = none or unknown */
    bool busy;        /* a request for this user is in flight */
    bool abandon;     /* P_PENDING: only look at it until its pay_by passes */
} pay_user_t;

typedef struct pay_item {
    pthread_rwlock_t gate; /* user requests shared, a PUT (reset) exclusive */
    pthread_mutex_t lock;  /* guards the fields (never held across a request) */
    int created;           /* 0 no, 1 acknowledged, -1 in doubt */
    bool want_reset;       /* sold out (paid orders pile up): reset it */
    pay_user_t users[PAY_USERS];
} pay_item_t;

/* Figures of the payment part, printed when the model is destroyed. */
typedef struct pay_figures {
    uint64_t placed, paid, user_cancelled, seen_auto_cancelled;
    uint64_t paid_cancelled; /* paid orders found cancelled: must be 0 */
    uint64_t returned_twice; /* items whose sold is not its live orders: must be 0 */
    uint64_t late;           /* orders still pending 1 s after pay_by: must be 0 */
} pay_figures_t;

typedef struct ord_model {
    ord_item_t items[ITEMS];
    pay_item_t pay[PAY_ITEMS];
    pay_figures_t fig;
} ord_model_t;

static void count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

static void *ord_create(unsigned workers)
{
    (void)workers;
    ord_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* a reset must not starve behind a stream of orders */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    for (int i = 0; i < ITEMS; i++) {
        pthread_rwlock_init(&m->items[i].gate, &attr);
        pthread_mutex_init(&m->items[i].lock, NULL);
    }
    for (int i = 0; i < PAY_ITEMS; i++) {
        pthread_rwlock_init(&m->pay[i].gate, &attr);
        pthread_mutex_init(&m->pay[i].lock, NULL);
    }
    pthread_rwlockattr_destroy(&attr);
    return m;
}

static void ord_destroy(void *model)
{
    ord_model_t *m = model;
    const pay_figures_t *f = &m->fig;
    printf("crash: orders: payments: %" PRIu64 " orders placed, %" PRIu64 " paid, %" PRIu64
           " cancelled by their user, %" PRIu64 " seen cancelled at their pay_by; %" PRIu64
           " paid orders cancelled, %" PRIu64 " units returned twice, %" PRIu64
           " orders pending 1 s past pay_by\n",
           f->placed, f->paid, f->user_cancelled, f->seen_auto_cancelled, f->paid_cancelled,
           f->returned_twice, f->late);
    for (int i = 0; i < ITEMS; i++) {
        pthread_rwlock_destroy(&m->items[i].gate);
        pthread_mutex_destroy(&m->items[i].lock);
    }
    for (int i = 0; i < PAY_ITEMS; i++) {
        pthread_rwlock_destroy(&m->pay[i].gate);
        pthread_mutex_destroy(&m->pay[i].lock);
    }
    free(m);
}

/* An acknowledged reset deleted the item's orders. An order in doubt stays
 * in doubt: with several nodes, a killed node's last statements (sent to
 * PostgreSQL before it died, waiting there for the counter locks) may run
 * and commit after a reset another node answered; its client never saw it
 * end, so it may take effect after the reset. */
static void forget_orders(ord_item_t *it)
{
    for (int u = 0; u < USERS; u++) {
        if (it->users[u].state != U_DOUBT)
            it->users[u].state = U_NONE;
        it->users[u].order_id = 0;
    }
}

/* ------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------ */

static int reset_item(ord_item_t *it, int idx, rel_worker_t *w, rel_report_t *r)
{
    pthread_rwlock_wrlock(&it->gate);
    pthread_mutex_lock(&it->lock);
    unsigned gen = ++it->next_gen;
    unsigned had = it->gen;
    int doubt = it->ndoubts;
    pthread_mutex_unlock(&it->lock);
    int64_t stock = STOCK_MIN + (int64_t)(rel_rand(&w->rng) % (STOCK_MAX - STOCK_MIN + 1));
    char path[64], body[96];
    snprintf(path, sizeof path, "/v1/items/crash-item%d", idx);
    int n =
        snprintf(body, sizeof body, "{\"name\":\"crash-r%u\",\"stock\":%" PRId64 "}", gen, stock);
    rel_transport_t t = rel_request(w->client, "PUT", path, body, (size_t)n);
    long st = w->client->status;
    int rc = 0;
    pthread_mutex_lock(&it->lock);
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        if (it->ndoubts == MAX_DOUBTS) { /* keep the latest */
            memmove(it->doubt_gen, it->doubt_gen + 1, (MAX_DOUBTS - 1) * sizeof it->doubt_gen[0]);
            memmove(it->doubt_initial, it->doubt_initial + 1,
                    (MAX_DOUBTS - 1) * sizeof it->doubt_initial[0]);
            it->ndoubts--;
        }
        it->doubt_gen[it->ndoubts] = gen;
        it->doubt_initial[it->ndoubts++] = stock;
        rc = -1;
    } else if (st == 200 || st == 201) {
        count(&r->acked);
        int64_t version;
        if (rel_json_int(w->client, "version", &version) == 0)
            rel_note_version(version);
        if (st == 201 && had != 0 && doubt == 0) {
            count(&r->lost);
            rel_fail("orders",
                     "item %d: reset answered 201 (created): generation %u was "
                     "acknowledged",
                     idx, had);
        } else if (st == 200 && had == 0 && doubt == 0) {
            count(&r->violations);
            rel_fail("orders", "item %d: first reset answered 200 (existed)", idx);
        }
        it->gen = gen;
        it->initial = stock;
        it->ndoubts = 0;
        forget_orders(it);
    } else {
        count(&r->violations);
        rel_fail("orders", "PUT %s answered %ld %s", path, st, w->client->body);
    }
    pthread_mutex_unlock(&it->lock);
    pthread_rwlock_unlock(&it->gate);
    return rc;
}

static int place_order(ord_item_t *it, int idx, rel_worker_t *w, rel_report_t *r)
{
    int u = (int)(rel_rand(&w->rng) % USERS);
    pthread_rwlock_rdlock(&it->gate);
    pthread_mutex_lock(&it->lock);
    ord_user_t *us = &it->users[u];
    if (us->busy) {
        pthread_mutex_unlock(&it->lock);
        pthread_rwlock_unlock(&it->gate);
        return 0; /* another worker has this user: pick again next time */
    }
    us->busy = true;
    pthread_mutex_unlock(&it->lock);

    char path[64], body[48];
    snprintf(path, sizeof path, "/v1/items/crash-item%d/orders", idx);
    int n = snprintf(body, sizeof body, "{\"user_id\":\"u%d\"}", u);
    rel_transport_t t = rel_request(w->client, "POST", path, body, (size_t)n);
    rel_client_t *c = w->client;
    int rc = 0;

    pthread_mutex_lock(&it->lock);
    int before = us->state;
    bool known = it->ndoubts == 0; /* no unanswered reset: the model is exact */
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        if (before != U_ORDERED)
            us->state = U_DOUBT;
        rc = -1;
    } else if (c->status == 201) {
        count(&r->acked);
        int64_t id = 0;
        rel_json_int(c, "order_id", &id);
        if (known && before == U_ORDERED) {
            count(&r->violations);
            rel_fail("orders", "item %d user u%d: a second order %" PRId64 " (holds %" PRId64 ")",
                     idx, u, id, us->order_id);
        }
        if (id <= 0) {
            count(&r->violations);
            rel_fail("orders", "item %d user u%d: 201 without an order_id: %s", idx, u, c->body);
        }
        us->state = U_ORDERED;
        us->order_id = id;
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "already_ordered") == 0) {
        if (known && before == U_NONE) {
            count(&r->violations);
            rel_fail("orders", "item %d user u%d: already_ordered, but no order was placed", idx,
                     u);
        }
        if (before != U_ORDERED) {
            us->state = U_ORDERED;
            us->order_id = 0; /* the in-doubt order was applied; id read at restart */
        }
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "sold_out") == 0) {
        if (known && before == U_ORDERED) {
            count(&r->violations);
            rel_fail("orders",
                     "item %d user u%d: sold_out, but the user holds order %" PRId64
                     " (already_ordered must win)",
                     idx, u, us->order_id);
        }
        /* An in-doubt order stays in doubt: its COMMIT may still be on its
         * way through PostgreSQL when another node answers this one (the
         * node that sent it was killed a moment ago), and then commit
         * after this answer; its client never saw it end, so that is
         * allowed. */
    } else if (c->status == 404) {
        if (known && it->gen != 0) {
            count(&r->violations);
            rel_fail("orders", "item %d: order answered 404, generation %u acknowledged", idx,
                     it->gen);
        }
    } else {
        count(&r->violations);
        rel_fail("orders", "POST %s (u%d) answered %ld %s", path, u, c->status, c->body);
    }
    us->busy = false;
    pthread_mutex_unlock(&it->lock);
    pthread_rwlock_unlock(&it->gate);
    return rc;
}

/* ------------------------------------------------------------------------
 * Payment deadlines: operations
 * ------------------------------------------------------------------------ */

static int pay_state_of(const char *s)
{
    if (strcmp(s, "pending") == 0)
        return P_PENDING;
    if (strcmp(s, "paid") == 0)
        return P_PAID;
    if (strcmp(s, "cancelled") == 0)
        return P_CANCELLED;
    return -1;
}

/* A paid order (acknowledged) must never be seen otherwise. */
static void paid_seen_as(ord_model_t *m, int idx, int u, const pay_user_t *us, int seen, int64_t id,
                         const char *how, rel_report_t *r)
{
    if (us->state != P_PAID || seen == P_PAID || (us->order_id && id && id != us->order_id))
        return;
    count(&r->violations);
    count(&m->fig.paid_cancelled);
    rel_fail("orders", "pay item %d user u%d: paid order %" PRId64 " %s", idx, u, us->order_id,
             how);
}

/* PUT the item (create, or reset: every order deleted), under the gate
 * held exclusive. */
static int pay_reset(ord_model_t *m, pay_item_t *it, int idx, rel_worker_t *w, rel_report_t *r)
{
    (void)m;
    char path[64], body[128];
    snprintf(path, sizeof path, "/v1/items/crash-pay%d", idx);
    int n = snprintf(body, sizeof body,
                     "{\"name\":\"crash-pay\",\"stock\":%d,\"payment_timeout_ms\":%d}", PAY_STOCK,
                     PAY_TIMEOUT_MS);
    rel_transport_t t = rel_request(w->client, "PUT", path, body, (size_t)n);
    long st = w->client->status;
    pthread_mutex_lock(&it->lock);
    int rc = 0;
    if (t != REL_ANSWERED) { /* applied or not: every user is in doubt */
        count(&r->in_doubt);
        it->created = it->created == 1 ? 1 : -1;
        for (int u = 0; u < PAY_USERS; u++)
            it->users[u].state = P_DOUBT;
        rc = -1;
    } else if (st == 200 || st == 201) {
        count(&r->acked);
        it->created = 1;
        for (int u = 0; u < PAY_USERS; u++) /* an order in doubt may still commit after it */
            if (it->users[u].state != P_DOUBT)
                it->users[u] = (pay_user_t){P_NONE, 0, false, false};
        it->want_reset = false;
    } else {
        count(&r->violations);
        rel_fail("orders", "PUT %s answered %ld %s", path, st, w->client->body);
    }
    pthread_mutex_unlock(&it->lock);
    return rc;
}

/* POST .../orders for a user with no live order; *sold_out when refused
 * so. */
static int pay_order(ord_model_t *m, pay_user_t *us, int idx, int u, rel_worker_t *w,
                     rel_report_t *r, bool *sold_out)
{
    char path[64], body[48];
    snprintf(path, sizeof path, "/v1/items/crash-pay%d/orders", idx);
    int n = snprintf(body, sizeof body, "{\"user_id\":\"u%d\"}", u);
    rel_transport_t t = rel_request(w->client, "POST", path, body, (size_t)n);
    rel_client_t *c = w->client;
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        us->state = P_DOUBT;
        return -1;
    }
    if (c->status == 201) {
        count(&r->acked);
        count(&m->fig.placed);
        char state[16];
        rel_json_string(c, "state", state, sizeof state);
        if (strcmp(state, "pending") != 0) {
            count(&r->violations);
            rel_fail("orders", "pay item %d user u%d: a new order is %s", idx, u, state);
        }
        us->state = P_PENDING;
        us->abandon = rel_rand(&w->rng) % PAY_ABANDON_ONE_IN == 0;
        rel_json_int(c, "order_id", &us->order_id);
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "already_ordered") == 0) {
        if (us->state != P_DOUBT) {
            count(&r->violations);
            rel_fail("orders", "pay item %d user u%d: already_ordered, no live order known", idx,
                     u);
        }
        us->state = P_DOUBT; /* read back next time */
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "sold_out") == 0) {
        *sold_out = true;
    } else {
        count(&r->violations);
        rel_fail("orders", "POST %s (u%d) answered %ld %s", path, u, c->status, c->body);
    }
    return 0;
}

/* POST .../pay or .../cancel for a user whose order is pending or paid. */
static int pay_settle(ord_model_t *m, pay_user_t *us, int idx, int u, bool pay, rel_worker_t *w,
                      rel_report_t *r)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/items/crash-pay%d/orders/u%d/%s", idx, u,
             pay ? "pay" : "cancel");
    rel_transport_t t = rel_request(w->client, "POST", path, NULL, 0);
    rel_client_t *c = w->client;
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        if (us->state != P_PAID)
            us->state = P_DOUBT;
        return -1;
    }
    bool not_pending = c->status == 409 && strcmp(rel_problem_code(c), "order_not_pending") == 0;
    if (c->status == 200) {
        count(&r->acked);
        char state[16];
        int64_t id = 0;
        rel_json_string(c, "state", state, sizeof state);
        rel_json_int(c, "order_id", &id);
        int seen = pay_state_of(state);
        paid_seen_as(m, idx, u, us, seen, id,
                     pay ? "answered a pay with another state" : "cancelled by its user", r);
        if (seen != (pay ? P_PAID : P_CANCELLED)) {
            count(&r->violations);
            rel_fail("orders", "%s answered 200 with state %s", path, state);
        }
        if (pay && us->state == P_PENDING)
            count(&m->fig.paid);
        if (!pay)
            count(&m->fig.user_cancelled);
        us->state = seen;
        us->order_id = id;
    } else if (not_pending) {
        paid_seen_as(m, idx, u, us, pay ? P_CANCELLED : P_PAID, 0,
                     pay ? "refused as not pending (cancelled)" : "", r);
        if (pay) { /* a pay refused: the order was cancelled (at its pay_by) */
            if (us->state == P_PENDING)
                count(&m->fig.seen_auto_cancelled);
            us->state = P_CANCELLED;
        } else if (us->state == P_PENDING) {
            us->state = P_DOUBT; /* paid elsewhere? cancelled at pay_by? read it back */
        }
    } else {
        count(&r->violations);
        rel_fail("orders", "POST %s answered %ld %s", path, c->status, c->body);
    }
    return 0;
}

/* GET the user's order: resolve a doubt, or watch a pending one. */
static int pay_look(ord_model_t *m, pay_user_t *us, int idx, int u, rel_worker_t *w,
                    rel_report_t *r)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/items/crash-pay%d/orders/u%d", idx, u);
    rel_client_t *c = w->client;
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED)
        return -1;
    if (c->status == 404) {
        if (us->state != P_DOUBT && us->state != P_NONE) {
            count(&r->lost);
            rel_fail("orders", "pay item %d user u%d: order %" PRId64 " is gone", idx, u,
                     us->order_id);
        }
        us->state = P_NONE;
        us->order_id = 0;
        return 0;
    }
    char state[16];
    int64_t id = 0;
    rel_json_string(c, "state", state, sizeof state);
    rel_json_int(c, "order_id", &id);
    int seen = pay_state_of(state);
    if (c->status != 200 || seen < 0) {
        count(&r->violations);
        rel_fail("orders", "GET %s answered %ld %s", path, c->status, c->body);
        return 0;
    }
    paid_seen_as(m, idx, u, us, seen, id, "found cancelled", r);
    if (us->state == P_PENDING && seen == P_CANCELLED)
        count(&m->fig.seen_auto_cancelled);
    us->state = seen;
    us->order_id = id;
    return 0;
}

static int pay_step(ord_model_t *m, rel_worker_t *w, rel_report_t *r)
{
    int idx = (int)(rel_rand(&w->rng) % PAY_ITEMS);
    pay_item_t *it = &m->pay[idx];
    pthread_mutex_lock(&it->lock);
    bool exists = it->created == 1, reset = it->want_reset;
    pthread_mutex_unlock(&it->lock);
    if (!exists || reset) {
        pthread_rwlock_wrlock(&it->gate);
        int rc = pay_reset(m, it, idx, w, r);
        pthread_rwlock_unlock(&it->gate);
        return rc;
    }
    int u = (int)(rel_rand(&w->rng) % PAY_USERS);
    pay_user_t *us = &it->users[u];
    pthread_rwlock_rdlock(&it->gate);
    pthread_mutex_lock(&it->lock);
    if (us->busy) {
        pthread_mutex_unlock(&it->lock);
        pthread_rwlock_unlock(&it->gate);
        return 0;
    }
    us->busy = true;
    pay_user_t snap = *us; /* the worker owns the user until it clears busy */
    pthread_mutex_unlock(&it->lock);
    unsigned dice = (unsigned)(rel_rand(&w->rng) % 10);
    bool sold_out = false;
    int rc;
    if (snap.state == P_DOUBT)
        rc = pay_look(m, &snap, idx, u, w, r);
    else if (snap.state == P_NONE || snap.state == P_CANCELLED)
        rc = pay_order(m, &snap, idx, u, w, r, &sold_out);
    else if (snap.state == P_PENDING && (snap.abandon || dice < 3))
        rc = pay_look(m, &snap, idx, u, w, r); /* let the deadline come */
    else
        rc = pay_settle(m, &snap, idx, u, dice < 8, w, r);
    pthread_mutex_lock(&it->lock);
    snap.busy = false;
    *us = snap;
    int paid = 0;
    for (int v = 0; sold_out && v < PAY_USERS; v++)
        paid += it->users[v].state == P_PAID;
    if (paid >= PAY_STOCK) /* every unit paid: start the sale again */
        it->want_reset = true;
    pthread_mutex_unlock(&it->lock);
    pthread_rwlock_unlock(&it->gate);
    return rc;
}

static int ord_step(void *model, rel_worker_t *w, rel_report_t *r)
{
    ord_model_t *m = model;
    if (rel_rand(&w->rng) % 2 == 0)
        return pay_step(m, w, r);
    int idx = (int)(rel_rand(&w->rng) % ITEMS);
    ord_item_t *it = &m->items[idx];
    pthread_mutex_lock(&it->lock);
    bool exists = it->gen != 0;
    pthread_mutex_unlock(&it->lock);
    if (!exists || rel_rand(&w->rng) % RESET_ONE_IN == 0)
        return reset_item(it, idx, w, r);
    return place_order(it, idx, w, r);
}

/* ------------------------------------------------------------------------
 * Post-kill: the invariants on the file
 * ------------------------------------------------------------------------ */

/* sold counts the pending and paid orders (a cancelled order gave its unit
 * back): a unit returned twice, or never, shows here. */
static const char SQL_ITEMS[] =
    "SELECT i.id, i.stock, i.sold, i.initial_stock, "
    "(SELECT count(*) FROM orders o WHERE o.item_id = i.id AND o.state <> 'cancelled') "
    "FROM items i";
static const char SQL_DUPLICATES[] =
    "SELECT item_id, user_id, count(*) FROM orders WHERE state <> 'cancelled' "
    "GROUP BY item_id, user_id HAVING count(*) > 1";
static const char SQL_PAY_ORDERS[] =
    "SELECT item_id, user_id, order_id, state FROM orders WHERE item_id LIKE 'crash-pay%'";
static const char SQL_ORPHANS[] =
    "SELECT count(*) FROM orders WHERE item_id NOT IN (SELECT id FROM items)";

static int64_t col_int(const char *col)
{
    return col ? strtoll(col, NULL, 10) : 0;
}

typedef struct file_check {
    ord_model_t *m;
    rel_report_t *r;
} file_check_t;

static int check_item_row(void *cls, int ncols, const char *const *cols)
{
    file_check_t *fc = cls;
    rel_report_t *r = fc->r;
    if (ncols < 5)
        return 1;
    int64_t stock = col_int(cols[1]), sold = col_int(cols[2]);
    int64_t initial = col_int(cols[3]), orders = col_int(cols[4]);
    if (stock < 0 || stock + sold != initial || orders != sold) {
        r->violations++;
        if (orders != sold && cols[0] && strncmp(cols[0], "crash-pay", 9) == 0)
            fc->m->fig.returned_twice++;
        rel_fail("orders",
                 "file: item %s: stock %" PRId64 " sold %" PRId64 " initial_stock %" PRId64
                 " orders %" PRId64,
                 cols[0] ? cols[0] : "?", stock, sold, initial, orders);
    }
    return 0;
}

static int duplicate_row(void *cls, int ncols, const char *const *cols)
{
    rel_report_t *r = cls;
    r->violations++;
    const char *item = ncols > 0 && cols[0] ? cols[0] : "?";
    const char *user = ncols > 1 && cols[1] ? cols[1] : "?";
    rel_fail("orders", "file: item %s user %s holds %s orders", item, user,
             ncols > 2 && cols[2] ? cols[2] : "?");
    return 0;
}

/* An acknowledged payment is a paid row. */
static int pay_order_row(void *cls, int ncols, const char *const *cols)
{
    file_check_t *fc = cls;
    int idx = -1, u = -1;
    if (ncols < 4 || !cols[0] || !cols[1] || !cols[3] ||
        sscanf(cols[0], "crash-pay%d", &idx) != 1 || sscanf(cols[1], "u%d", &u) != 1 || idx < 0 ||
        idx >= PAY_ITEMS || u < 0 || u >= PAY_USERS)
        return 0;
    const pay_user_t *us = &fc->m->pay[idx].users[u];
    if (us->state == P_PAID && us->order_id == col_int(cols[2]) && strcmp(cols[3], "paid") != 0) {
        fc->r->violations++;
        fc->m->fig.paid_cancelled++;
        rel_fail("orders", "file: pay item %d user u%d: paid order %s is %s", idx, u, cols[2],
                 cols[3]);
    }
    return 0;
}

static void ord_check_file(void *model, dbread_t *db, rel_report_t *r)
{
    file_check_t fc = {model, r};
    if (dbread_query(db, SQL_ITEMS, 0, NULL, check_item_row, &fc) < 0 ||
        dbread_query(db, SQL_PAY_ORDERS, 0, NULL, pay_order_row, &fc) < 0 ||
        dbread_query(db, SQL_DUPLICATES, 0, NULL, duplicate_row, r) < 0) {
        r->violations++;
        rel_fail("orders", "file: %s", dbread_errmsg(db));
        return;
    }
    int64_t orphans = 0;
    if (dbread_int(db, SQL_ORPHANS, NULL, &orphans) != 0) {
        r->violations++;
        rel_fail("orders", "file: %s", dbread_errmsg(db));
    } else if (orphans != 0) {
        r->violations++;
        rel_fail("orders", "file: %" PRId64 " orders without their item", orphans);
    }
}

/* ------------------------------------------------------------------------
 * Post-restart
 * ------------------------------------------------------------------------ */

/* Read every user's order back: lost acknowledged orders, resolved doubts.
 * Returns the orders found; *acked_out = acknowledged orders beforehand. */
static int check_users(ord_item_t *it, int idx, bool exact, rel_client_t *c, rel_report_t *r,
                       int *acked_out, uint64_t *lost_out)
{
    int found = 0, acked = 0;
    for (int u = 0; u < USERS; u++) {
        ord_user_t *us = &it->users[u];
        char path[80];
        snprintf(path, sizeof path, "/v1/items/crash-item%d/orders/u%d", idx, u);
        if (us->state == U_ORDERED)
            acked++;
        if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED ||
            (c->status != 200 && c->status != 404)) {
            r->violations++;
            rel_fail("orders", "GET %s after restart: no usable answer (%ld)", path, c->status);
            continue;
        }
        if (c->status == 200) {
            int64_t id = 0;
            rel_json_int(c, "order_id", &id);
            found++;
            if (us->state == U_ORDERED && us->order_id != 0 && us->order_id != id) {
                r->lost++;
                (*lost_out)++;
                rel_fail("orders",
                         "item %d user u%d: order %" PRId64 " acknowledged, %" PRId64 " found", idx,
                         u, us->order_id, id);
            } else if (exact && us->state == U_NONE) {
                r->violations++;
                rel_fail("orders", "item %d user u%d: order %" PRId64 " nobody placed", idx, u, id);
            }
            us->state = U_ORDERED;
            us->order_id = id;
        } else {
            if (us->state == U_ORDERED) {
                r->lost++;
                (*lost_out)++;
                rel_fail("orders", "item %d user u%d: acknowledged order %" PRId64 " is gone", idx,
                         u, us->order_id);
            }
            us->state = U_NONE;
            us->order_id = 0;
        }
    }
    *acked_out = acked;
    return found;
}

/* A user without an order must be refused with sold_out exactly when the
 * stock is 0; with stock left the order is placed (and recorded). */
static void check_sold_out(ord_item_t *it, int idx, int64_t stock, rel_client_t *c, rel_report_t *r)
{
    int u = 0;
    while (u < USERS && it->users[u].state != U_NONE)
        u++;
    if (u == USERS)
        return;
    char path[64], body[48];
    snprintf(path, sizeof path, "/v1/items/crash-item%d/orders", idx);
    int n = snprintf(body, sizeof body, "{\"user_id\":\"u%d\"}", u);
    if (rel_request(c, "POST", path, body, (size_t)n) != REL_ANSWERED) {
        r->violations++;
        rel_fail("orders", "item %d: sold-out probe: no answer", idx);
        return;
    }
    bool sold_out = c->status == 409 && strcmp(rel_problem_code(c), "sold_out") == 0;
    if (stock == 0 && !sold_out) {
        r->violations++;
        rel_fail("orders", "item %d: stock 0, a new user got %ld %s", idx, c->status, c->body);
    } else if (stock > 0 && c->status != 201) {
        r->violations++;
        rel_fail("orders", "item %d: stock %" PRId64 ", a new user got %ld %s", idx, stock,
                 c->status, c->body);
    }
    if (c->status == 201) {
        r->acked++;
        int64_t id = 0;
        rel_json_int(c, "order_id", &id);
        it->users[u].state = U_ORDERED;
        it->users[u].order_id = id;
    }
}

static void check_item(ord_item_t *it, int idx, rel_client_t *c, rel_report_t *r)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/items/crash-item%d", idx);
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED ||
        (c->status != 200 && c->status != 404)) {
        r->violations++;
        rel_fail("orders", "GET %s after restart: no usable answer (%ld)", path, c->status);
        return;
    }
    if (c->status == 404) {
        if (it->gen != 0) {
            int acked = 0;
            for (int u = 0; u < USERS; u++)
                acked += it->users[u].state == U_ORDERED;
            r->lost += 1 + (uint64_t)acked;
            rel_fail("orders",
                     "item %d: gone, reset to generation %u and %d orders "
                     "acknowledged",
                     idx, it->gen, acked);
        }
        it->gen = 0;
        it->ndoubts = 0;
        forget_orders(it);
        return;
    }
    char name[64];
    int64_t stock = -1, sold = -1;
    unsigned seen = 0;
    rel_json_string(c, "name", name, sizeof name);
    rel_json_int(c, "stock", &stock);
    rel_json_int(c, "sold", &sold);
    if (sscanf(name, "crash-r%u", &seen) != 1 || stock < 0 || sold < 0) {
        r->violations++;
        rel_fail("orders", "GET %s after restart: %s", path, c->body);
        return;
    }
    bool exact = true;
    int applied = -1;
    for (int d = 0; d < it->ndoubts; d++)
        if (it->doubt_gen[d] == seen)
            applied = d;
    if (applied >= 0) {
        /* that unanswered reset was applied: every earlier order went with it */
        it->gen = seen;
        it->initial = it->doubt_initial[applied];
        forget_orders(it);
    } else if (seen != it->gen) {
        /* an older generation: the acknowledged reset is lost */
        exact = false;
        if (seen < it->gen) {
            r->lost++;
            rel_fail("orders", "item %d: generation %u acknowledged, %u found", idx, it->gen, seen);
        } else {
            r->violations++;
            rel_fail("orders", "item %d: generation %u found, not acknowledged nor in doubt", idx,
                     seen);
        }
    }
    it->ndoubts = 0;
    if (exact && stock + sold != it->initial) {
        r->violations++;
        rel_fail("orders",
                 "item %d: stock %" PRId64 " + sold %" PRId64 " != %" PRId64 " (generation %u)",
                 idx, stock, sold, it->initial, seen);
    }
    int acked;
    uint64_t lost = 0;
    int found = check_users(it, idx, exact, c, r, &acked, &lost);
    if (sold < acked && lost == 0) {
        r->violations++;
        rel_fail("orders", "item %d: sold %" PRId64 " below the %d acknowledged orders", idx, sold,
                 acked);
    }
    if (sold != found) {
        r->violations++;
        rel_fail("orders", "item %d: sold %" PRId64 ", %d orders found", idx, sold, found);
    }
    /* from now on the model is what the daemon holds */
    it->gen = seen;
    it->initial = stock + sold;
    if (it->next_gen < seen)
        it->next_gen = seen;
    check_sold_out(it, idx, stock, c, r);
}

/* ------------------------------------------------------------------------
 * Post-restart: payment deadlines
 * ------------------------------------------------------------------------ */

/* Read the user's order back against the model; the state found (P_NONE
 * for none), its pay_by in *pay_by (pending), -1 without a usable answer. */
static int pay_read_back(ord_model_t *m, pay_user_t *us, int idx, int u, rel_client_t *c,
                         rel_report_t *r, int64_t *pay_by)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/items/crash-pay%d/orders/u%d", idx, u);
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED ||
        (c->status != 200 && c->status != 404)) {
        r->violations++;
        rel_fail("orders", "GET %s after restart: no usable answer (%ld)", path, c->status);
        return -1;
    }
    if (c->status == 404) {
        if (us->state != P_NONE && us->state != P_DOUBT) {
            r->lost++;
            rel_fail("orders", "pay item %d user u%d: order %" PRId64 " is gone", idx, u,
                     us->order_id);
        }
        us->state = P_NONE;
        us->order_id = 0;
        return P_NONE;
    }
    char state[16];
    int64_t id = 0;
    rel_json_string(c, "state", state, sizeof state);
    rel_json_int(c, "order_id", &id);
    int seen = pay_state_of(state);
    *pay_by = 0;
    if (seen == P_PENDING)
        rel_json_int(c, "pay_by", pay_by);
    if (us->state == P_PAID && (seen != P_PAID || (us->order_id && id != us->order_id))) {
        r->violations++;
        m->fig.paid_cancelled++;
        rel_fail("orders", "pay item %d user u%d: paid order %" PRId64 " found as %" PRId64 " %s",
                 idx, u, us->order_id, id, state);
    } else if (us->state == P_CANCELLED && us->order_id == id && seen != P_CANCELLED) {
        r->lost++;
        rel_fail("orders", "pay item %d user u%d: cancelled order %" PRId64 " found %s", idx, u, id,
                 state);
    } else if (us->state == P_PENDING && (id < us->order_id || seen == P_PAID)) {
        r->violations++;
        rel_fail("orders",
                 "pay item %d user u%d: pending order %" PRId64 " found as %" PRId64
                 " %s (paid by nobody)",
                 idx, u, us->order_id, id, state);
    }
    if (us->state == P_PENDING && seen == P_CANCELLED)
        m->fig.seen_auto_cancelled++;
    us->state = seen;
    us->order_id = id;
    return seen;
}

/* Orders pending with pay_by more than 1 s before `checked_at` must be
 * cancelled: poll them for up to PAY_DEADLINE_SLACK_MS (the restart may
 * have come only just now). */
static void pay_check_late(ord_model_t *m, int idx, rel_client_t *c, rel_report_t *r,
                           const int64_t *pay_by, int64_t checked_at)
{
    int64_t until = testutil_wall_ms() + PAY_DEADLINE_SLACK_MS;
    for (int u = 0; u < PAY_USERS; u++) {
        pay_user_t *us = &m->pay[idx].users[u];
        if (us->state != P_PENDING || pay_by[u] == 0 ||
            pay_by[u] + PAY_DEADLINE_SLACK_MS > checked_at)
            continue;
        int64_t pb = pay_by[u];
        int seen = P_PENDING;
        while (seen == P_PENDING && testutil_wall_ms() < until) {
            struct timespec pause = {0, 20000000};
            nanosleep(&pause, NULL);
            seen = pay_read_back(m, us, idx, u, c, r, &pb);
        }
        if (seen == P_PENDING) {
            r->violations++;
            m->fig.late++;
            rel_fail("orders",
                     "pay item %d user u%d: order %" PRId64 " still pending %" PRId64
                     " ms after its pay_by",
                     idx, u, us->order_id, testutil_wall_ms() - pay_by[u]);
        }
    }
}

static void pay_check_item(ord_model_t *m, int idx, rel_client_t *c, rel_report_t *r)
{
    pay_item_t *it = &m->pay[idx];
    char path[64];
    snprintf(path, sizeof path, "/v1/items/crash-pay%d", idx);
    if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED ||
        (c->status != 200 && c->status != 404)) {
        r->violations++;
        rel_fail("orders", "GET %s after restart: no usable answer (%ld)", path, c->status);
        return;
    }
    if (c->status == 404) {
        if (it->created == 1) {
            r->lost++;
            rel_fail("orders", "pay item %d: gone", idx);
        }
        it->created = 0;
        return;
    }
    it->created = 1;
    int64_t stock = -1, sold = -1;
    rel_json_int(c, "stock", &stock);
    rel_json_int(c, "sold", &sold);
    if (stock < 0 || stock + sold != PAY_STOCK) {
        r->violations++;
        rel_fail("orders", "pay item %d: stock %" PRId64 " + sold %" PRId64 " != %d", idx, stock,
                 sold, PAY_STOCK);
    }
    int64_t checked_at = testutil_wall_ms(), pay_by[PAY_USERS];
    int live = 0;
    for (int u = 0; u < PAY_USERS; u++) {
        pay_by[u] = 0;
        int seen = pay_read_back(m, &it->users[u], idx, u, c, r, &pay_by[u]);
        live += seen == P_PENDING || seen == P_PAID;
    }
    /* Deadlines keep passing while the users are read one by one, which
     * only lowers sold: read it after them; it may not exceed the live
     * orders seen (exact equality, which also catches a unit returned
     * twice, is check_file's, on a database that stands still). */
    if (rel_request(c, "GET", path, NULL, 0) == REL_ANSWERED && c->status == 200)
        rel_json_int(c, "sold", &sold);
    if (sold > live) {
        r->violations++;
        rel_fail("orders", "pay item %d: sold %" PRId64 ", only %d users hold a live order", idx,
                 sold, live);
    }
    pay_check_late(m, idx, c, r, pay_by, checked_at);
}

static void ord_check_restart(void *model, rel_client_t *c, rel_report_t *r)
{
    ord_model_t *m = model;
    for (int i = 0; i < ITEMS; i++)
        check_item(&m->items[i], i, c, r);
    for (int i = 0; i < PAY_ITEMS; i++)
        pay_check_item(m, i, c, r);
}

const rel_domain_t rel_domain_orders = {
    .name = "orders",
    .weight = 1,
    .create = ord_create,
    .destroy = ord_destroy,
    .step = ord_step,
    .check_file = ord_check_file,
    .check_restart = ord_check_restart,
};
