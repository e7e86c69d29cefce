/*
 * json_text.h - small JSON texts written straight into one buffer, without
 * building a jansson tree first: the replies of the write path (PUT, PATCH,
 * incr), where the tree, its allocations and json_dumps() cost more than
 * the rest of the reply. The text is the one json_dumps(JSON_COMPACT) gives
 * for the same members in the same order (tests/test_json_text.c checks).
 *
 * Usage: json_text_t t; json_text_init(&t, estimate); then json_text_*
 * calls; json_text_take() hands the buffer over (the caller frees it) or
 * returns NULL if any step ran out of memory. Strings must be valid UTF-8
 * (as jansson requires); they are copied as they are, with `"`, `\` and
 * control characters escaped as jansson escapes them.
 */
#ifndef SQLCACHED_JSON_TEXT_H
#define SQLCACHED_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct json_text {
    char *buf;
    size_t len, cap;
    bool failed; /* out of memory at some step: json_text_take returns NULL */
} json_text_t;

/* Start an empty text with room for about `cap` bytes (it grows). */
void json_text_init(json_text_t *t, size_t cap);

/* Append n bytes as they are (punctuation: "{", ",", "}"...). */
void json_text_raw(json_text_t *t, const char *s, size_t n);

/* Append s (n bytes of UTF-8) as a quoted, escaped JSON string. */
void json_text_string(json_text_t *t, const char *s, size_t n);

/* Append a member name and its colon: "name": (name is plain ASCII). */
void json_text_name(json_text_t *t, const char *name);

/* Append a comma, then the member name and its colon: ,"name": (for every
 * member after an object's first). */
void json_text_member(json_text_t *t, const char *name);

/* Append v in decimal. */
void json_text_int(json_text_t *t, int64_t v);

/* Append true or false. */
void json_text_bool(json_text_t *t, bool b);

/* Append null. */
void json_text_null(json_text_t *t);

/* The NUL-terminated text (caller frees) and its length in *len; NULL (and
 * the buffer freed) if any step failed. */
char *json_text_take(json_text_t *t, size_t *len);

/* Write v in decimal into out (at least 21 bytes) and return its length;
 * no NUL is written. */
size_t json_text_format_int(char *out, int64_t v);

#endif
