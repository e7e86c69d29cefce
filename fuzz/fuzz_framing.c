/*
 * fuzz_framing.c - the request head framing checks (src/http_framing.c):
 * http_framing_target, http_framing_field and http_framing_finish, against
 * a plain restatement of the rules in http_framing.h.
 *
 * Input: one byte choosing the version (odd: HTTP/1.0), then the request
 * target up to the first '\n', then one header field per line, split at
 * its first ':' (a line without one is a field with an empty value), the
 * value's leading whitespace stripped as libmicrohttpd strips it. NUL
 * bytes end the input, as they end what MHD passes on.
 */
#include <stdbool.h>
#include <strings.h>

#include "fuzz.h"
#include "http_framing.h"

static bool all_visible(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static bool named(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(name, want, n) == 0;
}

typedef struct seen {
    unsigned hosts, cls, tes;
    bool te_exact;  /* the Transfer-Encoding value is exactly "chunked" */
    bool te_list;   /* it holds a ',' */
    bool bad_value; /* a control byte other than HTAB in some value */
    bool bad_name;  /* a name that is not a token */
    bool cl_digits; /* every Content-Length is digits only */
} seen_t;

static void note(seen_t *s, const char *name, size_t nl, const char *value, size_t vl)
{
    s->bad_name |= !http_framing_is_token(name, nl);
    for (size_t i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        s->bad_value |= (c < 0x20 && c != '\t') || c == 0x7f;
    }
    if (named(name, nl, "Host"))
        s->hosts++;
    if (named(name, nl, "Content-Length")) {
        s->cls++;
        for (size_t i = 0; i < vl; i++)
            s->cl_digits &= value[i] >= '0' && value[i] <= '9';
        s->cl_digits &= vl > 0;
    }
    if (named(name, nl, "Transfer-Encoding")) {
        s->tes++;
        s->te_exact = named(value, vl, "chunked");
        s->te_list |= memchr(value, ',', vl) != NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool http10 = data[0] & 1;
    char *s = fuzz_cstring(data + 1, size - 1);
    char *line = s, *nl = strchr(line, '\n');
    size_t tlen = nl ? (size_t)(nl - line) : strlen(line);
    const char *why = http_framing_target(line, tlen);
    FUZZ_CHECK((why == NULL) == all_visible(line, tlen));

    http_framing_t f;
    http_framing_init(&f, http10);
    seen_t seen = {.cl_digits = true};
    while (nl) {
        line = nl + 1;
        nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        const char *colon = memchr(line, ':', n);
        size_t name_len = colon ? (size_t)(colon - line) : n;
        const char *value = colon ? colon + 1 : line + n;
        while (value < line + n && (*value == ' ' || *value == '\t'))
            value++;
        size_t vl = (size_t)(line + n - value);
        http_framing_field(&f, line, name_len, value, vl);
        note(&seen, line, name_len, value, vl);
    }
    http_framing_verdict_t v = http_framing_finish(&f);
    FUZZ_CHECK(v == HTTP_FRAMING_OK || v == HTTP_FRAMING_BAD || v == HTTP_FRAMING_UNSUPPORTED);
    FUZZ_CHECK((v == HTTP_FRAMING_OK) == (f.detail == NULL));
    if (v == HTTP_FRAMING_OK) {
        FUZZ_CHECK(!seen.bad_name && !seen.bad_value);
        FUZZ_CHECK(http10 ? seen.hosts <= 1 : seen.hosts == 1);
        FUZZ_CHECK(seen.cls <= 1 && seen.tes <= 1 && !(seen.cls && seen.tes));
        FUZZ_CHECK(!seen.cls || seen.cl_digits);
        FUZZ_CHECK(!seen.tes || (seen.te_exact && !http10));
    }
    if (v == HTTP_FRAMING_UNSUPPORTED)
        FUZZ_CHECK(seen.tes >= 1 && seen.te_list);
    free(s);
    return 0;
}
