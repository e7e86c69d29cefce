/*
 * fuzz_parsers.c - the value parsers of src/config.c: sizes
 * (config_parse_size, checked against strtoull and the unit table),
 * durations and counts (config_parse_uint) and listen addresses
 * (config_parse_listen).
 *
 * Input: one byte choosing the parser, then the value (cut at the first
 * NUL, as a flag or a config value is).
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <strings.h>

#include "config.h"
#include "fuzz.h"

static void check_size(const char *s)
{
    size_t v = 0;
    if (config_parse_size(s, &v) != 0)
        return;
    FUZZ_CHECK(isdigit((unsigned char)s[0]));
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    FUZZ_CHECK(errno == 0);
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1ULL << 10;
    else if (*end == 'm' || *end == 'M')
        mult = 1ULL << 20;
    else if (*end == 'g' || *end == 'G')
        mult = 1ULL << 30;
    FUZZ_CHECK(v == n * mult && v / mult == n);
}

static void check_uint(const char *s, unsigned min, unsigned max)
{
    unsigned v = 0;
    if (config_parse_uint(s, min, max, &v) != 0)
        return;
    FUZZ_CHECK(v >= min && v <= max && isdigit((unsigned char)s[0]));
}

static void check_listen(const char *s)
{
    char host[64];
    uint16_t port = 0;
    memset(host, 'x', sizeof host);
    if (config_parse_listen(s, host, sizeof host, &port) != 0)
        return;
    size_t n = strnlen(host, sizeof host);
    FUZZ_CHECK(n >= 1 && n < sizeof host);
    FUZZ_CHECK(strchr(s, ':') != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *s = fuzz_cstring(data + 1, size - 1);
    switch (data[0] % 4) {
    case 0:
        check_size(s);
        break;
    case 1:
        check_uint(s, 1, 86400);
        break;
    case 2:
        check_uint(s, 0, 50);
        break;
    default:
        check_listen(s);
        break;
    }
    free(s);
    return 0;
}
