/*
 * http_framing.h - is a request head valid HTTP/1.1 framing? A pure check
 * (no libmicrohttpd, no I/O) of the request target and of the header
 * fields as the HTTP library parsed them, so that the daemon refuses, before
 * anything else, every head that a front end could frame differently than
 * we do (request smuggling, RFC 9112 sections 3, 5 and 6):
 *
 *   - the request target is visible ASCII (no space, control or 8-bit byte);
 *   - every field name is an RFC 9110 token (so "Content-Length :" with a
 *     space before the colon, or a name with a folded line merged into it,
 *     is refused); no field value holds a control character but HTAB;
 *   - HTTP/1.1 has exactly one Host, HTTP/1.0 at most one, and its value is
 *     a host[:port];
 *   - at most one Content-Length, of digits only; never together with
 *     Transfer-Encoding; no Transfer-Encoding in HTTP/1.0;
 *   - Transfer-Encoding: chunked must be the final coding and appear once
 *     (else 400); another coding before it is one we do not implement (501);
 *     and the only form the body decoder understands is the value exactly
 *     "chunked" (any letter case), so a valid-looking list with extra
 *     whitespace or empty elements is 400 too rather than a hang.
 *
 * Use: http_framing_init, http_framing_field for each header field in
 * order, then http_framing_finish. The detail strings are static.
 */
#ifndef SQLCACHED_HTTP_FRAMING_H
#define SQLCACHED_HTTP_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

typedef enum http_framing_verdict {
    HTTP_FRAMING_OK = 0,
    HTTP_FRAMING_BAD = 400,         /* not valid framing: 400, close */
    HTTP_FRAMING_UNSUPPORTED = 501, /* a transfer coding we do not implement */
} http_framing_verdict_t;

typedef struct http_framing {
    bool http10;                    /* HTTP/1.0 (else HTTP/1.1) */
    unsigned hosts;                 /* Host fields seen */
    unsigned content_lengths;       /* Content-Length fields seen */
    unsigned transfer_encodings;    /* Transfer-Encoding fields seen */
    http_framing_verdict_t verdict; /* the first problem found */
    const char *detail;             /* its description (static), NULL when OK */
} http_framing_t;

/* Start checking a head of the given version. Cannot fail. */
void http_framing_init(http_framing_t *f, bool http10);

/* One header field: name and value as bytes (the value without its leading
 * whitespace, as the library strips it). After the first problem the rest
 * is ignored. Cannot fail. */
void http_framing_field(http_framing_t *f, const char *name, size_t name_len, const char *value,
                        size_t value_len);

/* The verdict once every field was given (count rules: Host,
 * Content-Length, Transfer-Encoding); f->detail says why when not OK. */
http_framing_verdict_t http_framing_finish(http_framing_t *f);

/* NULL if the request target (len bytes) is visible ASCII, else a static
 * description of the problem. */
const char *http_framing_target(const char *target, size_t len);

/* True if s[0..n) is a non-empty RFC 9110 token. */
bool http_framing_is_token(const char *s, size_t n);

#endif
