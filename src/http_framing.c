/*
 * http_framing.c - request head framing checks (see http_framing.h for the
 * rules and the RFC sections). Pure functions over byte strings: no
 * allocation, no state beyond the caller's http_framing_t.
 */
#include "http_framing.h"

#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool http_framing_is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(name, want, n) == 0;
}

const char *http_framing_target(const char *target, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c == ' ')
            return "space in the request target";
        if (c <= 0x20 || c >= 0x7f)
            return "control or non-ASCII byte in the request target";
    }
    return NULL;
}

void http_framing_init(http_framing_t *f, bool http10)
{
    memset(f, 0, sizeof *f);
    f->http10 = http10;
}

static void reject(http_framing_t *f, http_framing_verdict_t verdict, const char *detail)
{
    if (f->verdict != HTTP_FRAMING_OK)
        return;
    f->verdict = verdict;
    f->detail = detail;
}

/* field-value: VCHAR, obs-text, SP and HTAB (RFC 9110 5.5); a bare CR is
 * invalid too (RFC 9112 2.2). */
static bool value_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* uri-host [":" port] (RFC 9110 7.2): the bytes of reg-name, IPv4 and
 * IP-literal; may be empty. */
static bool host_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (c == '\0' || !strchr("-._~%!$&'()*+,;=:[]", c)))
            return false;
    }
    return true;
}

static bool digits_only(const char *v, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

/* What a Transfer-Encoding list holds (RFC 9112 6.1, 7). */
typedef struct codings {
    unsigned count;     /* non-empty elements */
    unsigned empty;     /* empty elements ("chunked," or ", chunked") */
    bool malformed;     /* a coding that is not a token, or chunked with parameters */
    bool chunked_early; /* chunked before the last coding */
    bool last_chunked;  /* the final coding is chunked */
    bool unknown;       /* a coding other than chunked */
} codings_t;

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_ows(**s))
        (*s)++, (*n)--;
    while (*n > 0 && is_ows((*s)[*n - 1]))
        (*n)--;
}

static void add_coding(codings_t *c, const char *e, size_t n)
{
    trim(&e, &n);
    if (n == 0) {
        c->empty++;
        return;
    }
    const char *semi = memchr(e, ';', n);
    size_t name_len = semi ? (size_t)(semi - e) : n;
    trim(&e, &name_len);
    bool chunked = name_is(e, name_len, "chunked");
    if (!http_framing_is_token(e, name_len) || (chunked && semi))
        c->malformed = true;
    if (c->count > 0 && c->last_chunked)
        c->chunked_early = true;
    c->unknown |= !chunked;
    c->last_chunked = chunked;
    c->count++;
}

static void check_transfer_encoding(http_framing_t *f, const char *v, size_t n)
{
    codings_t c = {0};
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || v[i] == ',') {
            add_coding(&c, v + start, i - start);
            start = i + 1;
        }
    }
    if (c.count == 0 || c.malformed)
        reject(f, HTTP_FRAMING_BAD, "malformed Transfer-Encoding");
    else if (!c.last_chunked || c.chunked_early)
        reject(f, HTTP_FRAMING_BAD, "chunked must be the final transfer coding, applied once");
    else if (c.unknown)
        reject(f, HTTP_FRAMING_UNSUPPORTED, "transfer coding not implemented (only chunked is)");
    else if (!name_is(v, n, "chunked"))
        reject(f, HTTP_FRAMING_BAD,
               "Transfer-Encoding must be exactly \"chunked\" (no whitespace or empty elements)");
}

void http_framing_field(http_framing_t *f, const char *name, size_t name_len, const char *value,
                        size_t value_len)
{
    if (f->verdict != HTTP_FRAMING_OK)
        return;
    if (!http_framing_is_token(name, name_len)) {
        reject(f, HTTP_FRAMING_BAD,
               "invalid header field name (whitespace before the colon, a folded line, "
               "or a byte that is not a token character)");
        return;
    }
    if (!value_ok(value, value_len)) {
        reject(f, HTTP_FRAMING_BAD, "control character in a header field value");
        return;
    }
    if (name_is(name, name_len, "Host")) {
        f->hosts++;
        if (!host_ok(value, value_len))
            reject(f, HTTP_FRAMING_BAD, "invalid Host");
    } else if (name_is(name, name_len, "Content-Length")) {
        f->content_lengths++;
        if (!digits_only(value, value_len))
            reject(f, HTTP_FRAMING_BAD, "Content-Length must be a decimal number");
    } else if (name_is(name, name_len, "Transfer-Encoding")) {
        f->transfer_encodings++;
        check_transfer_encoding(f, value, value_len);
    }
}

http_framing_verdict_t http_framing_finish(http_framing_t *f)
{
    if (f->hosts > 1)
        reject(f, HTTP_FRAMING_BAD, "more than one Host");
    else if (f->hosts == 0 && !f->http10)
        reject(f, HTTP_FRAMING_BAD, "an HTTP/1.1 request needs Host");
    if (f->content_lengths > 1 || f->transfer_encodings > 1 ||
        (f->content_lengths && f->transfer_encodings))
        reject(f, HTTP_FRAMING_BAD, "conflicting Content-Length or Transfer-Encoding");
    if (f->transfer_encodings && f->http10)
        reject(f, HTTP_FRAMING_BAD, "Transfer-Encoding in an HTTP/1.0 request");
    return f->verdict;
}
