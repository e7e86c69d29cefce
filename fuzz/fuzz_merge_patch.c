/*
 * fuzz_merge_patch.c - JSON merge patch (src/json_patch.c
 * json_patch_parse, json_patch_apply), as PATCH /v1/kv/{key} runs it.
 *
 * Input: the stored document, a NUL byte, then the patch (no NUL: the
 * whole input is the patch, applied to an absent key). Checks: a patch is
 * accepted only if nested at most SQLCACHED_PATCH_DEPTH_MAX deep; a result
 * is JSON; an object patch gives an object in which every non-null member
 * of the patch that is not an object is stored as given; applying the same
 * patch to the result changes nothing (merge patches are idempotent).
 */
#include <stdbool.h>

#include "json_patch.h"
#include "fuzz.h"

/* Nesting depth of j, counted without recursion deeper than limit + 1. */
static int depth(const json_t *j, int limit)
{
    if (!json_is_object(j) && !json_is_array(j))
        return 0;
    if (limit < 0)
        return 1;
    int d = 0;
    size_t i;
    const char *k;
    json_t *v;
    if (json_is_array(j)) {
        json_array_foreach (j, i, v) {
            int c = depth(v, limit - 1);
            d = c > d ? c : d;
        }
    } else {
        json_object_foreach ((json_t *)j, k, v) {
            int c = depth(v, limit - 1);
            d = c > d ? c : d;
        }
    }
    return d + 1;
}

static void check_members(const json_t *patch, const char *text)
{
    json_error_t err;
    json_t *result = json_loads(text, JSON_DECODE_ANY, &err);
    FUZZ_CHECK(result != NULL);
    if (json_is_object(patch)) {
        FUZZ_CHECK(json_is_object(result));
        const char *k;
        json_t *pv;
        json_object_foreach ((json_t *)patch, k, pv) {
            json_t *rv = json_object_get(result, k);
            if (json_is_null(pv))
                FUZZ_CHECK(rv == NULL);
            else if (!json_is_object(pv))
                FUZZ_CHECK(rv != NULL && json_equal(rv, pv));
            else
                FUZZ_CHECK(json_is_object(rv));
        }
    }
    json_decref(result);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    const void *doc = nul ? data : NULL;
    size_t dlen = nul ? (size_t)(nul - data) : 0;
    const uint8_t *p = nul ? nul + 1 : data;
    size_t plen = size - (size_t)(p - data);

    json_t *patch = NULL;
    sqlcached_status_t st = json_patch_parse(p, plen, &patch);
    FUZZ_CHECK(st == SQLCACHED_OK || st == SQLCACHED_INVALID_ARGUMENT);
    if (st != SQLCACHED_OK)
        return 0;
    FUZZ_CHECK(depth(patch, SQLCACHED_PATCH_DEPTH_MAX) <= SQLCACHED_PATCH_DEPTH_MAX);

    char *out = NULL;
    size_t olen = 0;
    st = json_patch_apply(doc, dlen, patch, &out, &olen);
    FUZZ_CHECK(st == SQLCACHED_OK || st == SQLCACHED_NOT_JSON);
    if (st == SQLCACHED_OK) {
        FUZZ_CHECK(out && strlen(out) == olen);
        check_members(patch, out);
        if (json_is_object(patch)) { /* idempotent */
            char *again = NULL;
            size_t alen = 0;
            FUZZ_CHECK(json_patch_apply(out, olen, patch, &again, &alen) == SQLCACHED_OK);
            FUZZ_CHECK(alen == olen && memcmp(again, out, olen) == 0);
            free(again);
        }
    } else {
        FUZZ_CHECK(out == NULL && doc != NULL);
    }
    free(out);
    json_decref(patch);
    return 0;
}
