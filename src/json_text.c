/*
 * json_text.c - JSON texts written straight into a growing buffer (see
 * json_text.h). Escaping follows jansson's dump of a string without flags:
 * `"` and `\` escaped with a backslash, \b \f \n \r \t by name, every other
 * byte below 0x20 as \u00XX; everything else, UTF-8 included, as it is.
 */
#include "json_text.h"

#include <stdlib.h>
#include <string.h>

static bool reserve(json_text_t *t, size_t extra)
{
    if (t->failed)
        return false;
    if (t->len + extra + 1 <= t->cap)
        return true;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < t->len + extra + 1)
        cap *= 2;
    char *grown = realloc(t->buf, cap);
    if (!grown) {
        t->failed = true;
        return false;
    }
    t->buf = grown;
    t->cap = cap;
    return true;
}

void json_text_init(json_text_t *t, size_t cap)
{
    t->buf = NULL;
    t->len = t->cap = 0;
    t->failed = false;
    reserve(t, cap);
}

void json_text_raw(json_text_t *t, const char *s, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

/* The escape of byte c, or NULL if it goes out as it is. */
static const char *escape_of(unsigned char c, char spare[7])
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson writes it */
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        break;
    }
    if (c >= 0x20)
        return NULL;
    memcpy(spare, "\\u00", 4);
    spare[4] = hex[c >> 4];
    spare[5] = hex[c & 15];
    spare[6] = '\0';
    return spare;
}

void json_text_string(json_text_t *t, const char *s, size_t n)
{
    if (!reserve(t, n + 2))
        return;
    t->buf[t->len++] = '"';
    size_t run = 0; /* bytes of s[i - run .. i) not yet copied */
    for (size_t i = 0; i < n; i++) {
        char spare[7];
        const char *esc = escape_of((unsigned char)s[i], spare);
        if (!esc) {
            run++;
            continue;
        }
        json_text_raw(t, s + i - run, run);
        json_text_raw(t, esc, strlen(esc));
        run = 0;
    }
    json_text_raw(t, s + n - run, run);
    json_text_raw(t, "\"", 1);
}

void json_text_name(json_text_t *t, const char *name)
{
    json_text_string(t, name, strlen(name));
    json_text_raw(t, ":", 1);
}

void json_text_member(json_text_t *t, const char *name)
{
    json_text_raw(t, ",", 1);
    json_text_name(t, name);
}

void json_text_bool(json_text_t *t, bool b)
{
    json_text_raw(t, b ? "true" : "false", b ? 4 : 5);
}

void json_text_null(json_text_t *t)
{
    json_text_raw(t, "null", 4);
}

size_t json_text_format_int(char *out, int64_t v)
{
    char tmp[21];
    size_t n = 0;
    /* the magnitude as unsigned: -INT64_MIN does not fit an int64_t */
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

void json_text_int(json_text_t *t, int64_t v)
{
    char digits[21];
    json_text_raw(t, digits, json_text_format_int(digits, v));
}

char *json_text_take(json_text_t *t, size_t *len)
{
    if (t->failed || !reserve(t, 0)) {
        free(t->buf);
        t->buf = NULL;
        *len = 0;
        return NULL;
    }
    t->buf[t->len] = '\0';
    *len = t->len;
    char *text = t->buf;
    t->buf = NULL;
    return text;
}
