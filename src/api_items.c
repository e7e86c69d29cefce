/*
 * api_items.c - HTTP handlers of the flash sale (/v1/items...).
 *
 * Item ids and user ids come from path segments (1..128 bytes of UTF-8
 * after percent-decoding) or, for an order, from the body's "user_id".
 * Bodies are JSON objects with exactly the members documented in
 * api/openapi.yaml: an unknown member, a missing one or a wrong type is 400
 * invalid_argument. Library outcomes become problems through
 * http_reply_problem / http_reply_status (the table in http.c).
 *
 * GET /v1/items/{id} answers X-Cache from the item's from_cache: the
 * library reads through the memory tier there once the tier is wired in.
 *
 * Payment deadline: an item shows payment_timeout_ms (null when orders are
 * final); an order shows its state, pay_by (while pending, else null) and
 * settled_at (when it was paid or cancelled, else null). POST .../pay and
 * .../cancel take no body (an empty one, or {}).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

#define ORDER_LIST_DEFAULT 100
#define ITEM_LIST_DEFAULT 100

/* A time or count that is 0 when absent, as JSON (null for 0). */
static json_t *int_or_null(int64_t v)
{
    return v > 0 ? json_integer(v) : json_null();
}

static json_t *item_json(const sqlcached_item_t *it)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:o}", "id", it->id, "name", it->name, "stock",
                     (json_int_t)it->stock, "sold", (json_int_t)it->sold, "version",
                     (json_int_t)it->version, "payment_timeout_ms",
                     int_or_null(it->payment_timeout_ms));
}

static json_t *order_json(const sqlcached_order_t *o)
{
    bool pending = o->state == SQLCACHED_ORDER_PENDING;
    return json_pack("{s:I, s:s, s:s, s:I, s:s, s:o, s:o}", "order_id", (json_int_t)o->order_id,
                     "item_id", o->item_id, "user_id", o->user_id, "created_at",
                     (json_int_t)o->created_at, "state", sqlcached_order_state_name(o->state),
                     "pay_by", int_or_null(pending ? o->pay_by : 0), "settled_at",
                     int_or_null(o->settled_at));
}

/* Percent-encode s for one path segment (unreserved characters stay). */
static void append_segment(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(out);
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 4 < cap; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

/* ------------------------------------------------------------------------
 * PUT /v1/items/{id}   body {"name": str, "stock": int}
 * ------------------------------------------------------------------------ */

/* Optional member "payment_timeout_ms": absent or null = 0 (orders final),
 * else SQLCACHED_PAYMENT_TIMEOUT_MIN_MS..MAX_MS; false after replying 400. */
static bool payment_timeout(http_request_t *req, json_t *body, int64_t *out)
{
    *out = 0;
    if (json_is_null(json_object_get(body, "payment_timeout_ms")))
        return true;
    return http_json_int(req, body, "payment_timeout_ms", true, 0, SQLCACHED_PAYMENT_TIMEOUT_MIN_MS,
                         SQLCACHED_PAYMENT_TIMEOUT_MAX_MS, out);
}

enum MHD_Result api_items_put(http_request_t *req)
{
    static const char *const members[] = {"name", "stock", "payment_timeout_ms", NULL};
    if (!http_param_text(req, 0, SQLCACHED_ITEM_ID_MAX, "item id"))
        return MHD_YES;
    json_t *body = http_body_object(req, false, members);
    const char *name = NULL;
    size_t name_len;
    int64_t stock, timeout;
    if (!body || !http_json_string(req, body, "name", SQLCACHED_ITEM_NAME_MAX, &name, &name_len) ||
        !http_json_int(req, body, "stock", false, 0, 0, SQLCACHED_STOCK_MAX, &stock) ||
        !payment_timeout(req, body, &timeout)) {
        json_decref(body);
        return MHD_YES;
    }
    sqlcached_item_t it;
    int created = 0;
    sqlcached_status_t st = sqlcached_item_put_payment(req->db, req->params[0].data, name, stock,
                                                       timeout, &it, &created);
    json_decref(body);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "the item was not written");
    return http_reply_json(req, created ? MHD_HTTP_CREATED : MHD_HTTP_OK, item_json(&it));
}

/* ------------------------------------------------------------------------
 * GET /v1/items/{id}
 * ------------------------------------------------------------------------ */

enum MHD_Result api_items_get(http_request_t *req)
{
    if (!http_param_text(req, 0, SQLCACHED_ITEM_ID_MAX, "item id"))
        return MHD_YES;
    sqlcached_item_t it;
    sqlcached_status_t st = sqlcached_item_get(req->db, req->params[0].data, &it);
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no such item");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot read the item");
    return http_reply_json_header(req, MHD_HTTP_OK, item_json(&it), "X-Cache",
                                  it.from_cache ? "HIT" : "MISS");
}

/* ------------------------------------------------------------------------
 * POST /v1/items/{id}/orders   body {"user_id": str}
 * ------------------------------------------------------------------------ */

static enum MHD_Result order_refused(http_request_t *req, sqlcached_status_t st)
{
    switch (st) {
    case SQLCACHED_NOT_FOUND:
        return http_reply_problem(req, "not_found", "no such item");
    case SQLCACHED_ALREADY_ORDERED:
        return http_reply_problem(req, "already_ordered",
                                  "this user already holds an order for this item");
    case SQLCACHED_SOLD_OUT:
        return http_reply_problem(req, "sold_out", "no stock left");
    case SQLCACHED_UNAVAILABLE:
        return http_reply_problem(req, "unavailable",
                                  "the item changed under every try; try again");
    default:
        return http_reply_status(req, st, "the order was not placed");
    }
}

enum MHD_Result api_items_order(http_request_t *req)
{
    static const char *const members[] = {"user_id", NULL};
    if (!http_param_text(req, 0, SQLCACHED_ITEM_ID_MAX, "item id"))
        return MHD_YES;
    json_t *body = http_body_object(req, false, members);
    const char *user = NULL;
    size_t user_len;
    if (!body || !http_json_string(req, body, "user_id", SQLCACHED_USER_ID_MAX, &user, &user_len)) {
        json_decref(body);
        return MHD_YES;
    }
    sqlcached_order_t o;
    sqlcached_status_t st = sqlcached_order_place(req->db, req->params[0].data, user, &o);
    json_decref(body);
    if (st != SQLCACHED_OK)
        return order_refused(req, st);
    char location[32 + 3 * (SQLCACHED_ITEM_ID_MAX + SQLCACHED_USER_ID_MAX)] = "/v1/items/";
    append_segment(location, sizeof location, o.item_id);
    strcat(location, "/orders/");
    append_segment(location, sizeof location, o.user_id);
    return http_reply_json_header(req, MHD_HTTP_CREATED, order_json(&o), MHD_HTTP_HEADER_LOCATION,
                                  location);
}

/* ------------------------------------------------------------------------
 * GET /v1/items/{id}/orders/{user_id}
 * ------------------------------------------------------------------------ */

enum MHD_Result api_items_order_get(http_request_t *req)
{
    if (!http_param_text(req, 0, SQLCACHED_ITEM_ID_MAX, "item id") ||
        !http_param_text(req, 1, SQLCACHED_USER_ID_MAX, "user id"))
        return MHD_YES;
    sqlcached_order_t o;
    sqlcached_status_t st =
        sqlcached_order_get(req->db, req->params[0].data, req->params[1].data, &o);
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no order of this user for this item");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot read the order");
    return http_reply_json(req, MHD_HTTP_OK, order_json(&o));
}

/* ------------------------------------------------------------------------
 * POST /v1/items/{id}/orders/{user_id}/pay and .../cancel (no body)
 * ------------------------------------------------------------------------ */

typedef sqlcached_status_t (*settle_fn)(sqlcached_t *db, const char *item_id, const char *user_id,
                                        sqlcached_order_t *out);

static enum MHD_Result settle(http_request_t *req, settle_fn fn)
{
    static const char *const members[] = {NULL};
    if (!http_param_text(req, 0, SQLCACHED_ITEM_ID_MAX, "item id") ||
        !http_param_text(req, 1, SQLCACHED_USER_ID_MAX, "user id"))
        return MHD_YES;
    json_t *body = http_body_object(req, true, members);
    if (!body)
        return MHD_YES;
    json_decref(body);
    sqlcached_order_t o;
    sqlcached_status_t st = fn(req->db, req->params[0].data, req->params[1].data, &o);
    switch (st) {
    case SQLCACHED_OK:
        return http_reply_json(req, MHD_HTTP_OK, order_json(&o));
    case SQLCACHED_NOT_FOUND:
        return http_reply_problem(req, "not_found", "no order of this user for this item");
    case SQLCACHED_ORDER_NOT_PENDING:
        return http_reply_problem(req, "order_not_pending",
                                  "the order is not pending (paid, cancelled, or past pay_by)");
    default:
        return http_reply_status(req, st, "the order was not changed");
    }
}

enum MHD_Result api_items_order_pay(http_request_t *req)
{
    return settle(req, sqlcached_order_pay);
}

enum MHD_Result api_items_order_cancel(http_request_t *req)
{
    return settle(req, sqlcached_order_cancel);
}

/* ------------------------------------------------------------------------
 * GET /v1/items/{id}/orders?limit=N&after=ORDER_ID
 * ------------------------------------------------------------------------ */

/* A whole string of decimal digits, min..max; false otherwise. */
static bool parse_digits(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || __builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, s[i] - '0', &v))
            return false;
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Query argument `name` as an integer in min..max (absent: *out untouched);
 * false after replying 400. */
static bool query_int(http_request_t *req, const char *name, int64_t min, int64_t max, int64_t *out)
{
    char *raw;
    size_t n;
    int rc = http_query(req, name, &raw, &n);
    bool ok = rc == 0 || (rc == 1 && parse_digits(raw, n, min, max, out));
    free(raw);
    if (!ok)
        http_reply_problem(req, "invalid_argument", "%s must be a whole number from %lld to %lld",
                           name, (long long)min, (long long)max);
    return ok;
}

static json_t *orders_json(const sqlcached_orders_t *page)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < page->count; i++)
        json_array_append_new(list, order_json(&page->orders[i]));
    json_t *next = page->has_more && page->count
                       ? json_integer(page->orders[page->count - 1].order_id)
                       : json_null();
    return json_pack("{s:o, s:o}", "orders", list, "next", next);
}

enum MHD_Result api_items_orders_list(http_request_t *req)
{
    int64_t limit = ORDER_LIST_DEFAULT, after = 0;
    if (!http_param_text(req, 0, SQLCACHED_ITEM_ID_MAX, "item id") ||
        !query_int(req, "limit", 1, SQLCACHED_LIST_LIMIT_MAX, &limit) ||
        !query_int(req, "after", 0, INT64_MAX, &after))
        return MHD_YES;
    sqlcached_orders_t *page = NULL;
    sqlcached_status_t st =
        sqlcached_order_list(req->db, req->params[0].data, after, (unsigned)limit, &page);
    if (st == SQLCACHED_NOT_FOUND)
        return http_reply_problem(req, "not_found", "no such item");
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot list the orders");
    json_t *body = orders_json(page);
    sqlcached_orders_free(page);
    return http_reply_json(req, MHD_HTTP_OK, body);
}

/* ------------------------------------------------------------------------
 * GET /v1/items?limit=N&after=ID
 * ------------------------------------------------------------------------ */

/* Query argument "after": absent or empty = NULL (from the first item),
 * else 1..SQLCACHED_ITEM_ID_MAX bytes of UTF-8 (*out is malloc'd); false
 * after replying 400 (also for a bad percent-escape). */
static bool query_after_id(http_request_t *req, char **out)
{
    size_t n;
    int rc = http_query(req, "after", out, &n);
    if (rc == 1 && n > 0 && n <= SQLCACHED_ITEM_ID_MAX && http_utf8_ok(*out, n))
        return true;
    free(*out);
    *out = NULL;
    if (rc == 0 || (rc == 1 && n == 0))
        return true;
    http_reply_problem(req, "invalid_argument",
                       "after must be an item id: 1 to %d bytes of UTF-8, percent-encoded",
                       SQLCACHED_ITEM_ID_MAX);
    return false;
}

static json_t *items_json(const sqlcached_items_t *page)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < page->count; i++)
        json_array_append_new(list, item_json(&page->items[i]));
    json_t *next = page->has_more && page->count ? json_string(page->items[page->count - 1].id)
                                                 : json_null();
    return json_pack("{s:o, s:o}", "items", list, "next", next);
}

enum MHD_Result api_items_list(http_request_t *req)
{
    int64_t limit = ITEM_LIST_DEFAULT;
    char *after = NULL;
    if (!query_int(req, "limit", 1, SQLCACHED_LIST_LIMIT_MAX, &limit) ||
        !query_after_id(req, &after))
        return MHD_YES;
    sqlcached_items_t *page = NULL;
    sqlcached_status_t st = sqlcached_item_list(req->db, after, (unsigned)limit, &page);
    free(after);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot list the items");
    json_t *body = items_json(page);
    sqlcached_items_free(page);
    return http_reply_json(req, MHD_HTTP_OK, body);
}
