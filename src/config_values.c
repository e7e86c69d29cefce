/*
 * config_values.c - the parsers of option values (sizes, HOST:PORT,
 * bounded decimals) and the display of --db with its password masked;
 * declared in config.h, used by config.c's option table, main.c and the
 * tests. Pure functions: no state, no I/O.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int config_parse_size(const char *s, size_t *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned long long mult = 1;
    const char *units[][2] = {{"", "1"},   {"K", "K"},   {"KB", "K"},  {"KiB", "K"},
                              {"M", "M"},  {"MB", "M"},  {"MiB", "M"}, {"G", "G"},
                              {"GB", "G"}, {"GiB", "G"}, {"B", "1"}};
    size_t i;
    for (i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i][0]) == 0)
            break;
    if (i == sizeof units / sizeof units[0])
        return -1;
    switch (units[i][1][0]) {
    case 'K':
        mult = 1ULL << 10;
        break;
    case 'M':
        mult = 1ULL << 20;
        break;
    case 'G':
        mult = 1ULL << 30;
        break;
    default:
        break;
    }
    if (n > SIZE_MAX / mult)
        return -1;
    *out = (size_t)(n * mult);
    return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl >= hostlen || parse_port(colon + 1, port) != 0)
        return -1;
    if (hl == 0)
        snprintf(host, hostlen, "127.0.0.1");
    else
        snprintf(host, hostlen, "%.*s", (int)hl, h);
    return 0;
}

int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || !isdigit((unsigned char)s[0]) || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Copy src[0..n) to the end of the string in buf (truncating). */
static void append(char *buf, size_t len, const char *src, size_t n)
{
    size_t used = strlen(buf);
    if (used + 1 >= len)
        return;
    if (n > len - used - 1)
        n = len - used - 1;
    memcpy(buf + used, src, n);
    buf[used + n] = '\0';
}

const char *config_db_display(const char *db, char *buf, size_t len)
{
    if (!len)
        return buf;
    buf[0] = '\0';
    const char *scheme_end = strstr(db, "://");
    if (strncmp(db, "postgres", 8) != 0 || !scheme_end) {
        append(buf, len, db, strlen(db));
        return buf;
    }
    const char *auth = scheme_end + 3;
    const char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    const char *colon = strchr(auth, ':');
    const char *p = db;
    if (at && (!slash || at < slash) && colon && colon < at) { /* user:password@ */
        append(buf, len, p, (size_t)(colon + 1 - p));
        append(buf, len, "***", 3);
        p = at;
    }
    for (const char *q; (q = strstr(p, "password=")) != NULL;) {
        if (q > db && q[-1] != '?' && q[-1] != '&') { /* not a parameter name */
            append(buf, len, p, (size_t)(q + 9 - p));
            p = q + 9;
            continue;
        }
        append(buf, len, p, (size_t)(q + 9 - p));
        append(buf, len, "***", 3);
        p = q + 9 + strcspn(q + 9, "&");
    }
    append(buf, len, p, strlen(p));
    return buf;
}
