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
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"

#define ITEMS 4
#define USERS 64      /* per item; above STOCK_MAX so a sold-out item keeps new users */
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

typedef struct ord_model {
    ord_item_t items[ITEMS];
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
    pthread_rwlockattr_destroy(&attr);
    return m;
}

static void ord_destroy(void *model)
{
    ord_model_t *m = model;
    for (int i = 0; i < ITEMS; i++) {
        pthread_rwlock_destroy(&m->items[i].gate);
        pthread_mutex_destroy(&m->items[i].lock);
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
    int n = snprintf(body, sizeof body, "{\"name\":\"crash-r%u\",\"stock\":%" PRId64 "}", gen,
                     stock);
    rel_transport_t t = rel_request(w->client, "PUT", path, body, (size_t)n);
    long st = w->client->status;
    int rc = 0;
    pthread_mutex_lock(&it->lock);
    if (t != REL_ANSWERED) {
        count(&r->in_doubt);
        if (it->ndoubts == MAX_DOUBTS) { /* keep the latest */
            memmove(it->doubt_gen, it->doubt_gen + 1,
                    (MAX_DOUBTS - 1) * sizeof it->doubt_gen[0]);
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
            rel_fail("orders", "item %d: reset answered 201 (created): generation %u was "
                     "acknowledged", idx, had);
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
            rel_fail("orders", "item %d user u%d: a second order %" PRId64 " (holds %" PRId64
                     ")", idx, u, id, us->order_id);
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
            rel_fail("orders", "item %d user u%d: already_ordered, but no order was placed",
                     idx, u);
        }
        if (before != U_ORDERED) {
            us->state = U_ORDERED;
            us->order_id = 0; /* the in-doubt order was applied; id read at restart */
        }
    } else if (c->status == 409 && strcmp(rel_problem_code(c), "sold_out") == 0) {
        if (known && before == U_ORDERED) {
            count(&r->violations);
            rel_fail("orders", "item %d user u%d: sold_out, but the user holds order %" PRId64
                     " (already_ordered must win)", idx, u, us->order_id);
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

static int ord_step(void *model, rel_worker_t *w, rel_report_t *r)
{
    ord_model_t *m = model;
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

static const char SQL_ITEMS[] =
    "SELECT i.id, i.stock, i.sold, i.initial_stock, "
    "(SELECT count(*) FROM orders o WHERE o.item_id = i.id) FROM items i";
static const char SQL_DUPLICATES[] =
    "SELECT item_id, user_id, count(*) FROM orders GROUP BY item_id, user_id "
    "HAVING count(*) > 1";
static const char SQL_ORPHANS[] =
    "SELECT count(*) FROM orders WHERE item_id NOT IN (SELECT id FROM items)";

static int64_t col_int(const char *col)
{
    return col ? strtoll(col, NULL, 10) : 0;
}

static int check_item_row(void *cls, int ncols, const char *const *cols)
{
    rel_report_t *r = cls;
    if (ncols < 5)
        return 1;
    int64_t stock = col_int(cols[1]), sold = col_int(cols[2]);
    int64_t initial = col_int(cols[3]), orders = col_int(cols[4]);
    if (stock < 0 || stock + sold != initial || orders != sold) {
        r->violations++;
        rel_fail("orders", "file: item %s: stock %" PRId64 " sold %" PRId64
                 " initial_stock %" PRId64 " orders %" PRId64, cols[0] ? cols[0] : "?", stock,
                 sold, initial, orders);
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

static void ord_check_file(void *model, dbread_t *db, rel_report_t *r)
{
    (void)model;
    if (dbread_query(db, SQL_ITEMS, 0, NULL, check_item_row, r) < 0 ||
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
                rel_fail("orders", "item %d user u%d: order %" PRId64 " acknowledged, %" PRId64
                         " found", idx, u, us->order_id, id);
            } else if (exact && us->state == U_NONE) {
                r->violations++;
                rel_fail("orders", "item %d user u%d: order %" PRId64 " nobody placed", idx, u,
                         id);
            }
            us->state = U_ORDERED;
            us->order_id = id;
        } else {
            if (us->state == U_ORDERED) {
                r->lost++;
                (*lost_out)++;
                rel_fail("orders", "item %d user u%d: acknowledged order %" PRId64 " is gone",
                         idx, u, us->order_id);
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
static void check_sold_out(ord_item_t *it, int idx, int64_t stock, rel_client_t *c,
                           rel_report_t *r)
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
            rel_fail("orders", "item %d: gone, reset to generation %u and %d orders "
                     "acknowledged", idx, it->gen, acked);
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
            rel_fail("orders", "item %d: generation %u acknowledged, %u found", idx, it->gen,
                     seen);
        } else {
            r->violations++;
            rel_fail("orders", "item %d: generation %u found, not acknowledged nor in doubt",
                     idx, seen);
        }
    }
    it->ndoubts = 0;
    if (exact && stock + sold != it->initial) {
        r->violations++;
        rel_fail("orders", "item %d: stock %" PRId64 " + sold %" PRId64 " != %" PRId64
                 " (generation %u)", idx, stock, sold, it->initial, seen);
    }
    int acked;
    uint64_t lost = 0;
    int found = check_users(it, idx, exact, c, r, &acked, &lost);
    if (sold < acked && lost == 0) {
        r->violations++;
        rel_fail("orders", "item %d: sold %" PRId64 " below the %d acknowledged orders", idx,
                 sold, acked);
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

static void ord_check_restart(void *model, rel_client_t *c, rel_report_t *r)
{
    ord_model_t *m = model;
    for (int i = 0; i < ITEMS; i++)
        check_item(&m->items[i], i, c, r);
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
