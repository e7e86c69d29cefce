/*
 * fuzz_json_body.c - the JSON body parser and the member readers
 * (src/http.c http_parse_object, http_member_int, http_member_string), as
 * the handlers call them.
 *
 * Input: one byte choosing the handler's member list and allow_empty, then
 * the body bytes (any bytes, NUL included: a body is not a C string).
 */
#include <stdbool.h>

#include "http.h"
#include "fuzz.h"

typedef struct shape {
    const char *members[4];
    const char *ints[3];    /* members read as integers */
    const char *strings[3]; /* members read as strings */
} shape_t;

/* The bodies the API takes (and the ones the contract defines next). */
static const shape_t shapes[] = {
    {{"by", NULL}, {"by", NULL}, {NULL}},                       /* kv incr */
    {{"path", NULL}, {NULL}, {"path", NULL}},                   /* admin backup */
    {{"name", "stock", NULL}, {"stock", NULL}, {"name", NULL}}, /* items */
    {{"user_id", NULL}, {NULL}, {"user_id", NULL}},             /* orders */
    {{"owner", "ttl_ms", "wait_ms", NULL}, {"ttl_ms", "wait_ms", NULL}, {"owner", NULL}},
};

static void check_error(const http_error_t *err)
{
    FUZZ_CHECK(err->code != NULL);
    FUZZ_CHECK(strcmp(err->code, "invalid_json") == 0 ||
               strcmp(err->code, "invalid_argument") == 0 || strcmp(err->code, "unavailable") == 0);
    FUZZ_CHECK(memchr(err->detail, '\0', sizeof err->detail) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const shape_t *sh = &shapes[data[0] % (sizeof shapes / sizeof shapes[0])];
    bool allow_empty = data[0] & 0x80;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    http_error_t err = {0};
    json_t *obj = http_parse_object(body, len, allow_empty, sh->members, &err);
    if (!obj) {
        check_error(&err);
        return 0;
    }
    FUZZ_CHECK(json_is_object(obj));
    FUZZ_CHECK(len > 0 || allow_empty);
    for (int i = 0; sh->ints[i]; i++) {
        int64_t v;
        if (http_member_int(obj, sh->ints[i], true, 1, -1000, 1000, &v, &err))
            FUZZ_CHECK(v >= -1000 && v <= 1000);
        else
            check_error(&err);
    }
    for (int i = 0; sh->strings[i]; i++) {
        const char *s;
        size_t n;
        if (http_member_string(obj, sh->strings[i], 128, &s, &n, &err)) {
            FUZZ_CHECK(n >= 1 && n <= 128 && strlen(s) == n); /* NUL is refused at parse */
            FUZZ_CHECK(http_utf8_ok(s, n));
        } else {
            check_error(&err);
        }
    }
    json_decref(obj);
    return 0;
}
