/*
 * http_parse.c - the pure request parsing of the HTTP front: strict
 * percent-decoding, UTF-8 and token checks, JSON bodies and their members,
 * and routing a method and raw path to a row of the routing table
 * (http_routes, in http.c). Nothing here sees a connection or replies:
 * http.c's request helpers wrap these calls and answer 400 from their
 * http_error_t, and the unit tests and fuzz targets call them directly.
 * Declared in http.h ("pure parsing" and "request helpers").
 */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *http_percent_decode(const char *s, size_t n, bool plus_is_space, size_t *outlen, bool *bad)
{
    *bad = false;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                *bad = true;
                return NULL;
            }
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[j++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
        }
    }
    out[j] = '\0';
    *outlen = j;
    return out;
}

bool http_utf8_ok(const char *s, size_t n)
{
    return utf8_valid(s, n);
}

bool http_token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t n = la > lb ? la : lb;
    volatile unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
        diff |= ca ^ cb;
    }
    return diff == 0;
}

/* The problem code for a body jansson refused: syntax is invalid_json;
 * well-formed JSON of a shape the API never accepts (duplicate member,
 * \u0000 in a string, integer out of range, nesting too deep) is
 * invalid_argument, as api/openapi.yaml says. */
static const char *body_error_code(const json_error_t *err)
{
    switch (json_error_code(err)) {
    case json_error_out_of_memory:
        return "unavailable";
    case json_error_stack_overflow:
    case json_error_null_character:
    case json_error_null_byte_in_key:
    case json_error_duplicate_key:
    case json_error_numeric_overflow:
        return "invalid_argument";
    default:
        return "invalid_json";
    }
}

static const char *unknown_member(json_t *obj, const char *const members[])
{
    const char *name;
    json_t *value;
    json_object_foreach (obj, name, value) {
        bool known = false;
        for (int i = 0; members && members[i] && !known; i++)
            known = strcmp(name, members[i]) == 0;
        if (!known)
            return name;
    }
    return NULL;
}

static bool fail(http_error_t *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill err (when given) and return false. */
static bool fail(http_error_t *err, const char *code, const char *fmt, ...)
{
    if (!err)
        return false;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    return false;
}

json_t *http_parse_object(const char *body, size_t len, bool allow_empty,
                          const char *const members[], http_error_t *err)
{
    if (len == 0 && allow_empty)
        return json_object();
    json_error_t jerr;
    /* JSON_DECODE_ANY: a scalar ("1") is JSON of the wrong shape, not invalid JSON */
    json_t *obj = json_loadb(body ? body : "", body ? len : 0,
                             JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!obj) {
        fail(err, body_error_code(&jerr), "line %d, column %d: %s", jerr.line, jerr.column,
             jerr.text);
        return NULL;
    }
    const char *unknown = json_is_object(obj) ? unknown_member(obj, members) : NULL;
    if (!json_is_object(obj) || unknown) {
        if (unknown)
            fail(err, "invalid_argument", "unknown member \"%s\"", unknown);
        else
            fail(err, "invalid_argument", "the body must be a JSON object");
        json_decref(obj);
        return NULL;
    }
    return obj;
}

bool http_member_int(json_t *obj, const char *name, bool optional, int64_t dflt, int64_t min,
                     int64_t max, int64_t *out, http_error_t *err)
{
    json_t *v = json_object_get(obj, name);
    if (!v && optional) {
        *out = dflt;
        return true;
    }
    if (!v || !json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return fail(err, "invalid_argument", "\"%s\" must be an integer from %lld to %lld", name,
                    (long long)min, (long long)max);
    *out = json_integer_value(v);
    return true;
}

bool http_member_string(json_t *obj, const char *name, size_t max, const char **out, size_t *len,
                        http_error_t *err)
{
    json_t *v = json_object_get(obj, name);
    if (!v || !json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
        return fail(err, "invalid_argument", "\"%s\" must be a string of 1 to %zu bytes", name,
                    max);
    *out = json_string_value(v);
    *len = json_string_length(v);
    return true;
}

bool http_text_ok(const char *s, size_t n, size_t max)
{
    return n > 0 && n <= max && http_utf8_ok(s, n);
}

/* ------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------ */

/* Match a raw path against a pattern; on success fill the raw params (in
 * place in path; decode_params decodes them). A parameter ("{name}", a
 * whole segment of the pattern) matches the path's segment up to the next
 * '/' or the end, empty included; every other byte must be equal. One pass
 * over both strings: this runs for every row of the table on every request.
 * Returns 1 on match, 0 on no match. */
static int match_route(const char *pattern, const char *path, http_param_t *params)
{
    int np = 0;
    for (;;) {
        if (*pattern == '{') {
            if (np == HTTP_MAX_PARAMS)
                return 0;
            const char *start = path;
            while (*path && *path != '/')
                path++;
            params[np].data = (char *)start; /* raw for now */
            params[np].len = (size_t)(path - start);
            np++;
            while (*pattern && *pattern != '/')
                pattern++;
            continue;
        }
        if (*pattern != *path)
            return 0;
        if (*pattern == '\0')
            return 1;
        pattern++, path++;
    }
}

void http_match_free(http_match_t *m)
{
    for (int i = 0; i < HTTP_MAX_PARAMS; i++) {
        free(m->params[i].data);
        m->params[i] = (http_param_t){NULL, 0};
    }
}

/* Decode the raw params that match_route left in place into out. */
static int decode_params(http_match_t *out, const http_param_t *raw)
{
    for (int i = 0; i < HTTP_MAX_PARAMS && raw[i].data; i++) {
        bool bad;
        out->params[i].data =
            http_percent_decode(raw[i].data, raw[i].len, false, &out->params[i].len, &bad);
        if (!out->params[i].data)
            return bad ? 400 : 503;
    }
    return 200;
}

int http_route(const char *method, const char *path, http_match_t *out)
{
    memset(out, 0, sizeof *out);
    const http_route_t *path_match = NULL;
    for (size_t i = 0; i < http_route_count; i++) {
        http_param_t raw[HTTP_MAX_PARAMS] = {{0}};
        if (match_route(http_routes[i].pattern, path, raw) != 1)
            continue;
        if (!path_match)
            path_match = &http_routes[i];
        if (strcmp(http_routes[i].method, method) != 0)
            continue;
        out->route = &http_routes[i];
        return decode_params(out, raw);
    }
    out->route = path_match;
    return path_match ? 405 : 404;
}
