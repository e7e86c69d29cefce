/*
 * api_hotkeys.c - GET /v1/stats/hotkeys?limit=N: the keys read most often
 * recently (sqlcached_hotkeys), as JSON. A key that is valid UTF-8 is
 * answered as "key" (a JSON string), any other as "key_base64" (RFC 4648
 * base64 with padding). Keys sent over HTTP are UTF-8 (api_kv.c), so the
 * base64 form is for keys read through the library by its other users. The route
 * takes the admin token when one is set (keys are user data: http.c).
 */
#include <stdlib.h>

#include "api.h"

/* RFC 4648 base64 (with '=' padding) of n bytes, as a new JSON string;
 * NULL on allocation failure. */
static json_t *base64_json(const unsigned char *p, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    json_t *s = json_stringn(out, o);
    free(out);
    return s;
}

json_t *api_base64_json(const void *p, size_t n)
{
    return base64_json(p, n);
}

/* {"key" | "key_base64", "count", "error"}; NULL on allocation failure. */
static json_t *hotkey_json(const sqlcached_hotkey_t *k)
{
    bool text = http_utf8_ok(k->key, k->klen);
    json_t *key = text ? json_stringn(k->key, k->klen) : base64_json(k->key, k->klen);
    if (!key)
        return NULL;
    return json_pack("{s:o, s:I, s:I}", text ? "key" : "key_base64", key, "count",
                     (json_int_t)k->count, "error", (json_int_t)k->error);
}

json_t *api_hotkeys_json(const sqlcached_hotkeys_t *list)
{
    json_t *keys = json_array();
    for (size_t i = 0; keys && i < list->n; i++) {
        json_t *k = hotkey_json(&list->keys[i]);
        if (!k || json_array_append_new(keys, k) != 0) {
            json_decref(keys);
            keys = NULL;
        }
    }
    if (!keys)
        return NULL;
    return json_pack("{s:b, s:I, s:i, s:o}", "enabled", list->enabled, "half_life_ms",
                     (json_int_t)list->half_life_ms, "tracked", SQLCACHED_HOTKEYS_TRACKED, "keys",
                     keys);
}

enum MHD_Result api_stats_hotkeys(http_request_t *req)
{
    char *raw = NULL;
    size_t n = 0;
    int rc = http_query(req, "limit", &raw, &n);
    int64_t limit = 10;
    bool ok = rc == 0 ||
              (rc == 1 && api_kv_parse_positive(raw, n, SQLCACHED_HOTKEYS_LIMIT_MAX, &limit));
    free(raw);
    if (!ok)
        return http_reply_problem(req, "invalid_argument",
                                  "limit must be a whole number from 1 to %d",
                                  SQLCACHED_HOTKEYS_LIMIT_MAX);
    sqlcached_hotkeys_t *list = NULL;
    sqlcached_status_t st = sqlcached_hotkeys(req->db, (unsigned)limit, &list);
    if (st != SQLCACHED_OK)
        return http_reply_status(req, st, "cannot list the hot keys");
    json_t *doc = api_hotkeys_json(list);
    sqlcached_hotkeys_free(list);
    if (!doc)
        return http_reply_problem(req, "unavailable", "out of memory");
    return http_reply_json(req, MHD_HTTP_OK, doc);
}
