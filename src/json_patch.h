/*
 * json_patch.h - JSON merge patch (RFC 7396) over stored bytes, with a
 * bound on nesting depth. Pure: no store, no HTTP (kv.c runs it inside a
 * write's transaction; fuzz/fuzz_merge_patch.c drives it directly).
 */
#ifndef SQLCACHED_JSON_PATCH_H
#define SQLCACHED_JSON_PATCH_H

#include <stddef.h>

#include <jansson.h>

#include "sqlcached.h"

/* Parse a merge patch: any JSON value (RFC 8259), nested at most
 * SQLCACHED_PATCH_DEPTH_MAX deep. On SQLCACHED_OK *out is a new reference
 * the caller drops (json_decref). Not JSON, or deeper:
 * SQLCACHED_INVALID_ARGUMENT. */
sqlcached_status_t json_patch_parse(const void *text, size_t len, json_t **out);

/* Apply patch to the stored document doc[0..dlen) (doc NULL: an absent
 * key, patched from {}). The document must be a JSON object, else
 * SQLCACHED_NOT_JSON. On SQLCACHED_OK *out is the result as compact JSON
 * text (malloc'd, NUL-terminated; the caller frees it) of *outlen bytes. */
sqlcached_status_t json_patch_apply(const void *doc, size_t dlen, const json_t *patch, char **out,
                                    size_t *outlen);

#endif
