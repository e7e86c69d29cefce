/*
 * fuzz_etag.c - the If-Match / If-None-Match parser (src/api_kv.c
 * api_kv_parse_etags) and the decimal parser under it
 * (api_kv_parse_positive), checked against strtoll.
 *
 * Input: a header value (cut at the first NUL, as MHD gives it).
 */
#include <errno.h>
#include <stdbool.h>

#include "api.h"
#include "fuzz.h"

static void check_list(const char *h, bool weak_matches)
{
    api_etag_list_t l;
    if (!api_kv_parse_etags(h, weak_matches, &l))
        return;
    FUZZ_CHECK(l.match.versions == l.versions);
    FUZZ_CHECK(l.match.count <= API_MAX_ETAGS);
    if (l.match.kind == SQLCACHED_MATCH_ANY) {
        FUZZ_CHECK(l.match.count == 0 && strchr(h, '*'));
        return;
    }
    FUZZ_CHECK(l.match.kind == SQLCACHED_MATCH_VERSIONS && l.match.count >= 1);
    for (size_t i = 0; i < l.match.count; i++)
        FUZZ_CHECK(l.versions[i] >= 1 || (!weak_matches && l.versions[i] == -1));
}

/* api_kv_parse_positive agrees with strtoll on the same digits. */
static void check_positive(const char *s)
{
    size_t n = strlen(s);
    int64_t v = 0;
    bool ok = api_kv_parse_positive(s, n, INT64_MAX, &v);
    bool digits = n >= 1 && n <= 19 && strspn(s, "0123456789") == n;
    if (!digits) {
        FUZZ_CHECK(!ok);
        return;
    }
    errno = 0;
    long long ref = strtoll(s, NULL, 10);
    bool ref_ok = errno == 0 && ref >= 1;
    FUZZ_CHECK(ok == ref_ok);
    if (ok)
        FUZZ_CHECK(v == ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *h = fuzz_cstring(data, size);
    check_list(h, false);
    check_list(h, true);
    check_positive(h);
    free(h);
    return 0;
}
