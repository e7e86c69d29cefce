/*
 * json_patch.c - JSON merge patch (RFC 7396) with a bounded depth.
 *
 * Depth: jansson bounds its own parser's recursion (JSON_PARSER_MAX_DEPTH,
 * 2048), which keeps any stored document from overflowing the stack; a
 * patch is refused beyond SQLCACHED_PATCH_DEPTH_MAX, checked by
 * depth_within(), whose recursion stops at that bound. The merge recurses
 * only into members of the patch that are objects, so its depth is the
 * patch's: bounded too (and checked again as it goes).
 *
 * The result is written compact, members in their order (jansson keeps
 * insertion order): members the patch adds come after the others.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json_patch.h"

/* Is j nested at most `left` levels (a scalar is 0, {} or [] is 1)? */
static bool depth_within(const json_t *j, int left)
{
    if (!json_is_object(j) && !json_is_array(j))
        return true;
    if (left <= 0)
        return false;
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach (j, i, v)
            if (!depth_within(v, left - 1))
                return false;
        return true;
    }
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)j, k, v)
        if (!depth_within(v, left - 1))
            return false;
    return true;
}

sqlcached_status_t json_patch_parse(const void *text, size_t len, json_t **out)
{
    *out = NULL;
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return SQLCACHED_INVALID_ARGUMENT;
    if (!depth_within(j, SQLCACHED_PATCH_DEPTH_MAX)) {
        json_decref(j);
        return SQLCACHED_INVALID_ARGUMENT;
    }
    *out = j;
    return SQLCACHED_OK;
}

/* RFC 7396 MergePatch(target, patch) for an object patch, in place on the
 * object target (owned by the caller). `left` bounds the recursion. */
static sqlcached_status_t merge_object(json_t *target, const json_t *patch, int left)
{
    if (left <= 0)
        return SQLCACHED_INVALID_ARGUMENT;
    const char *k;
    json_t *pv;
    json_object_foreach ((json_t *)patch, k, pv) {
        if (json_is_null(pv)) {
            json_object_del(target, k); /* absent: nothing to remove */
            continue;
        }
        if (!json_is_object(pv)) {
            if (json_object_set(target, k, pv) != 0) /* shares pv: read only */
                return SQLCACHED_NOMEM;
            continue;
        }
        json_t *tv = json_object_get(target, k);
        json_t *child = json_is_object(tv) ? json_incref(tv) : json_object();
        if (!child)
            return SQLCACHED_NOMEM;
        sqlcached_status_t st = merge_object(child, pv, left - 1);
        if (st == SQLCACHED_OK && json_object_set(target, k, child) != 0)
            st = SQLCACHED_NOMEM;
        json_decref(child);
        if (st != SQLCACHED_OK)
            return st;
    }
    return SQLCACHED_OK;
}

/* The stored document as an object (a new reference), {} when absent. */
static sqlcached_status_t load_target(const void *doc, size_t dlen, json_t **out)
{
    if (!doc) {
        *out = json_object();
        return *out ? SQLCACHED_OK : SQLCACHED_NOMEM;
    }
    json_error_t err;
    json_t *t = json_loadb(doc, dlen, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(t)) {
        json_decref(t);
        return SQLCACHED_NOT_JSON;
    }
    *out = t;
    return SQLCACHED_OK;
}

sqlcached_status_t json_patch_apply(const void *doc, size_t dlen, const json_t *patch, char **out,
                                    size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    json_t *target = NULL;
    sqlcached_status_t st = load_target(doc, dlen, &target);
    if (st != SQLCACHED_OK)
        return st;
    json_t *result = target;
    if (json_is_object(patch)) {
        st = merge_object(target, patch, SQLCACHED_PATCH_DEPTH_MAX);
    } else { /* RFC 7396: a patch that is not an object replaces the document */
        result = (json_t *)patch;
    }
    if (st == SQLCACHED_OK) {
        *out = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
        if (*out)
            *outlen = strlen(*out);
        else
            st = SQLCACHED_NOMEM;
    }
    json_decref(target);
    return st;
}
