/*
 * fuzz_route.c - the request router, path percent-decoding, key validation
 * and query-string decoding (src/http.c http_route, http_percent_decode,
 * http_text_ok; src/api_kv.c api_kv_parse_positive for ttl and limit).
 *
 * Input: "METHOD PATH[?QUERY]" as MHD would pass it (cut at the first NUL).
 */
#include <stdbool.h>

#include "api.h"
#include "fuzz.h"

static size_t count_params(const char *pattern)
{
    size_t n = 0;
    for (const char *p = pattern; *p; p++)
        n += *p == '{';
    return n;
}

static void check_route(const char *method, const char *path)
{
    http_match_t m;
    int rc = http_route(method, path, &m);
    FUZZ_CHECK(rc == 200 || rc == 404 || rc == 405 || rc == 400 || rc == 503);
    FUZZ_CHECK((rc == 404) == (m.route == NULL));
    if (rc == 200) {
        FUZZ_CHECK(strcmp(m.route->method, method) == 0);
        size_t np = count_params(m.route->pattern);
        for (size_t i = 0; i < HTTP_MAX_PARAMS; i++) {
            FUZZ_CHECK((i < np) == (m.params[i].data != NULL));
            if (!m.params[i].data)
                continue;
            /* decoding never grows a segment and keeps a terminating NUL */
            FUZZ_CHECK(m.params[i].len <= strlen(path));
            FUZZ_CHECK(m.params[i].data[m.params[i].len] == '\0');
            bool ok = http_text_ok(m.params[i].data, m.params[i].len, SQLCACHED_KEY_MAX);
            FUZZ_CHECK(!ok || (m.params[i].len >= 1 && m.params[i].len <= SQLCACHED_KEY_MAX &&
                               memchr(m.params[i].data, '\0', m.params[i].len) == NULL));
        }
    }
    if (rc == 405)
        FUZZ_CHECK(strcmp(m.route->method, method) != 0);
    http_match_free(&m);
}

/* name=value pairs separated by '&', each part percent-decoded with '+' as
 * a space, as http_query() does; ttl and limit go through the number parser. */
static void check_query(const char *q)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        const char *value = eq ? eq + 1 : q + n;
        size_t vn = (size_t)(q + n - value);
        size_t len;
        bool bad;
        char *v = http_percent_decode(value, vn, true, &len, &bad);
        FUZZ_CHECK(v || bad);
        if (v) {
            FUZZ_CHECK(len <= vn && v[len] == '\0');
            int64_t x = 0;
            if (api_kv_parse_positive(v, len, 1000, &x))
                FUZZ_CHECK(x >= 1 && x <= 1000);
            free(v);
        }
        q += n + (amp ? 1 : 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstring(data, size);
    char *sp = strchr(s, ' ');
    const char *method = "GET", *path = s;
    if (sp) {
        *sp = '\0';
        method = s;
        path = sp + 1;
    }
    char *query = strchr(path, '?');
    if (query)
        *query++ = '\0';
    check_route(method, path);
    if (query)
        check_query(query);
    free(s);
    return 0;
}
